//! Visitor identity and the signed endpoints (AF §4, API 十三 十四 十五): the `X-Security-Sign`
//! signature, the ordered checks, the per-device and per-IP limits, and device-bound tokens.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::services::accounts::{self, Credential, Session};
use crate::services::passwords;
use crate::state::AppState;
use crate::store::tokens as token_store;
use crate::store::users::{self, NewUser};
use crate::time;

const TOO_MANY: &str = "请求过于频繁，请1个小时后再试";

/// `sha256_hex("deviceId=<d>&salt=<s>&timestamp=<t>APP_SECRET")` (AF §4.1).
pub fn signature(device_id: &str, timestamp: &str, salt: &str) -> String {
    let text = format!("deviceId={device_id}&salt={salt}&timestamp={timestamp}APP_SECRET");
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A signed request that passed steps 1–5 of AF §4.2.
pub struct Signed {
    pub device_id: String,
    pub ip: IpAddr,
}

/// Steps 3–5 of AF §4.2 (step 1 — the header — and step 2 — validation — are the caller's).
pub fn check_signature(
    st: &AppState,
    sign: &str,
    device_id: &str,
    timestamp_text: &str,
    timestamp: i64,
) -> Result<()> {
    let expected = signature(device_id, timestamp_text, &st.config.visitor_salt);
    if !bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        return Err(Error::fail("非法签名"));
    }
    if (time::now_ms() - timestamp).abs() > 300_000 {
        return Err(Error::fail("请求已过期"));
    }
    let valid = device_id.len() == 36
        && device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::fail("无效标识"));
    }
    Ok(())
}

fn window(st: &AppState) -> Duration {
    Duration::from_secs(st.config.visitor_window_secs)
}

fn device_key(device: &str) -> String {
    format!("chat_visitor_reg:{device}")
}

/// Step 6: refused while the device is at its limit; per-IP request limit (AF §4.3).
pub async fn check_limits(st: &AppState, s: &Signed) -> Result<()> {
    let lim = st.config.visitor_device_limit;
    if lim > 0 && st.limiter.count(&device_key(&s.device_id)).await >= lim {
        return Err(Error::fail(TOO_MANY));
    }
    if st.config.per_ip_limits
        && !st
            .limiter
            .try_hit(
                &format!("visitor:ip:{}", s.ip),
                st.config.visitor_ip_requests,
                Duration::from_secs(3600),
            )
            .await
    {
        return Err(Error::fail(TOO_MANY));
    }
    Ok(())
}

async fn count_device(st: &AppState, device: &str) {
    st.limiter.hit(&device_key(device), window(st)).await;
}

/// API 十三.
pub async fn visitor_register(
    st: &AppState,
    s: &Signed,
    stats: [Option<String>; 4],
) -> Result<Session> {
    // Calls for one device are serialised: concurrent first calls create one visitor (AF API 十三).
    let _guard = st.locks.lock(&format!("visitor:{}", s.device_id)).await;
    let mut tx = st.db.begin().await?;
    let found = users::visitor_by_device_tx(&mut tx, &s.device_id).await?;
    drop(tx);
    let session = match found {
        Some(v) => {
            if v.status != 1 {
                return Err(Error::fail("账号不存在或者被禁用"));
            }
            let session = match reuse_device_token(st, &v, &s.device_id).await? {
                Some(session) => session,
                None => {
                    accounts::login(
                        st,
                        &v.username,
                        Credential::VisitorMode,
                        Some(&s.device_id),
                        s.ip,
                    )
                    .await?
                }
            };
            users::set_stats(&st.db, v.id, &stats).await?;
            session
        }
        None => {
            if st.config.per_ip_limits
                && st.config.visitor_ip_creations > 0
                && st.limiter.count(&format!("visitor:create:{}", s.ip)).await
                    >= st.config.visitor_ip_creations
            {
                return Err(Error::fail(TOO_MANY));
            }
            count_device(st, &s.device_id).await;
            st.limiter
                .hit(
                    &format!("visitor:create:{}", s.ip),
                    Duration::from_secs(3600),
                )
                .await;
            let given = |i: usize| stats[i].as_deref().unwrap_or("");
            let username =
                create_visitor(st, &s.device_id, [given(0), given(1), given(2), given(3)]).await?;
            accounts::login(
                st,
                &username,
                Credential::VisitorMode,
                Some(&s.device_id),
                s.ip,
            )
            .await?
        }
    };
    retire_device_leftovers(st, &s.device_id).await?;
    Ok(session)
}

/// The visitor's active token, if it is bound to this device: answered again instead of a new one.
async fn reuse_device_token(
    st: &AppState,
    v: &users::UserRow,
    device: &str,
) -> Result<Option<Session>> {
    let Some(row) = token_store::active_of_db(&st.db, v.id).await? else {
        return Ok(None);
    };
    if row.device_id.as_deref() != Some(device) || row.role != "visitor" {
        return Ok(None);
    }
    // An expired token is never handed out again (AF §3.3): issue a fresh one instead.
    let ttl = st.config.token_ttl_secs;
    if ttl > 0 && chrono::Utc::now().timestamp() - row.iat > ttl as i64 {
        return Ok(None);
    }
    let mut tx = st.db.begin().await?;
    users::touch_login(&mut tx, v.id, None).await?;
    tx.commit().await?;
    let fresh = users::by_id(&st.db, v.id)
        .await?
        .unwrap_or_else(|| v.clone());
    let token = st.keys.token_of(&row);
    Ok(Some(Session {
        view: accounts::user_view(st, &fresh, "visitor"),
        issued: crate::services::tokens::Issued {
            token,
            row,
            ended: Vec::new(),
        },
    }))
}

/// Create the device's visitor row: `VIS` + 8 characters of the id, suffixed until free (D24).
async fn create_visitor(st: &AppState, device: &str, stats: [&str; 4]) -> Result<String> {
    let mut secret = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let hash = passwords::hash(&hex::encode(secret), st.config.argon2_memory_kib).await?;
    let base = format!("VIS{}", &device[..8]);
    let name = |n: u32| {
        if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        }
    };
    let mut n = 1;
    loop {
        let mut tx = st.db.begin().await?;
        while users::by_username_tx(&mut tx, &name(n)).await?.is_some() {
            n += 1;
        }
        let username = name(n);
        let new = NewUser {
            username: &username,
            password_hash: &hash,
            role: "visitor",
            device: Some(device),
            stats,
            last_login: Some(time::now_db()),
        };
        match users::insert(&mut tx, &new).await {
            Ok(_) => {
                tx.commit().await?;
                return Ok(username);
            }
            // Another device took the name between the check and the insert: next suffix.
            Err(e) if crate::store::is_unique_violation(&e) => n += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// After a signed endpoint succeeded for a device, its revoked leftovers become retired (MR §3.3).
async fn retire_device_leftovers(st: &AppState, device: &str) -> Result<()> {
    let mut tx = st.db.begin().await?;
    token_store::retire_revoked_of_device(&mut tx, device).await?;
    tx.commit().await?;
    Ok(())
}

/// API 十四.
pub async fn visitor_reg_chat(
    st: &AppState,
    s: &Signed,
    username: &str,
    password: &str,
) -> Result<Session> {
    count_device(st, &s.device_id).await;
    let _guard = st.locks.lock(&format!("visitor:{}", s.device_id)).await;
    if users::by_username(&st.db, username).await?.is_some() {
        return Err(Error::fail("该账号已存在，请换一个账号注册"));
    }
    let hash = passwords::hash(password, st.config.argon2_memory_kib).await?;
    let mut tx = st.db.begin().await?;
    match users::visitor_by_device_tx(&mut tx, &s.device_id).await? {
        Some(v) if v.status != 1 => return Err(Error::fail("账号不存在或者被禁用")),
        Some(v) => {
            users::upgrade_visitor(&mut tx, v.id, username, &hash)
                .await
                .map_err(|e| {
                    if crate::store::is_unique_violation(&e) {
                        Error::fail("该账号已存在，请换一个账号注册")
                    } else {
                        e.into()
                    }
                })?;
        }
        None => {
            accounts::create_user(&mut tx, username, &hash).await?;
        }
    }
    tx.commit().await?;
    let session = accounts::login(
        st,
        username,
        Credential::Password(password),
        Some(&s.device_id),
        s.ip,
    )
    .await?;
    retire_device_leftovers(st, &s.device_id).await?;
    Ok(session)
}

/// API 十五.
pub async fn visitor_login_chat(
    st: &AppState,
    s: &Signed,
    username: &str,
    password: &str,
) -> Result<Session> {
    match accounts::login(
        st,
        username,
        Credential::Password(password),
        Some(&s.device_id),
        s.ip,
    )
    .await
    {
        Ok(session) => {
            retire_device_leftovers(st, &s.device_id).await?;
            Ok(session)
        }
        Err(e) => {
            count_device(st, &s.device_id).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vector() {
        assert_eq!(
            signature(
                "8d1a344c-bf16-5425-adbc-d12f49cfa332",
                "1752835449008",
                crate::config::CLIENT_VISITOR_SALT
            ),
            "a5b40139b65b13cf214d05c27dece58ebe840d888b12272f0ccd15ea72e68998"
        );
    }
}
