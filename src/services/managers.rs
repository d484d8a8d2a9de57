//! Manager accounts of the back office (issue 13): separate from chat users, Argon2id passwords,
//! no default account. Sessions are random tokens (a cookie in the console, a bearer token for the
//! API and the CLI) kept as SHA-256 digests, each with its CSRF token and an expiry.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::services::passwords::{self, Verified};
use crate::state::AppState;
use crate::store::managers::{self as store, ManagerRow};
use crate::store::Db;

/// The acting manager of a session; `id` 0 is the local CLI (it can reach the store anyway).
#[derive(Debug, Clone)]
pub struct Manager {
    pub id: i64,
    pub name: String,
    pub csrf: String,
    /// Digest of the session token (to end it at logout).
    pub session: String,
}

pub const CLI_MANAGER: i64 = 0;

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A manager name: 1–50 characters, no spaces or control characters.
pub fn check_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 50 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::fail("管理员名称须为1到50个字符，不含空白"));
    }
    Ok(())
}

pub fn check_password(pw: &str) -> Result<()> {
    if pw.chars().count() < 8 {
        return Err(Error::fail("管理员密码至少8个字符"));
    }
    Ok(())
}

pub async fn add(db: &Db, memory_kib: u32, name: &str, password: &str) -> Result<i64> {
    check_name(name)?;
    check_password(password)?;
    if store::by_name(db, name).await?.is_some() {
        return Err(Error::fail("管理员已存在"));
    }
    let hash = passwords::hash(password, memory_kib).await?;
    store::insert(db, name, &hash).await.map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            Error::fail("管理员已存在")
        } else {
            e.into()
        }
    })
}

pub async fn set_password(db: &Db, memory_kib: u32, name: &str, password: &str) -> Result<()> {
    check_password(password)?;
    let m = store::by_name(db, name)
        .await?
        .ok_or_else(|| Error::fail("管理员不存在"))?;
    let hash = passwords::hash(password, memory_kib).await?;
    store::set_password(db, m.id, &hash).await?;
    Ok(())
}

pub async fn remove(db: &Db, name: &str) -> Result<()> {
    let m = store::by_name(db, name)
        .await?
        .ok_or_else(|| Error::fail("管理员不存在"))?;
    store::delete(db, m.id).await?;
    Ok(())
}

pub async fn list(db: &Db) -> Result<Vec<ManagerRow>> {
    Ok(store::all(db).await?)
}

/// A new session: (token, csrf). The token is shown once and never stored.
pub async fn open_session(db: &Db, manager_id: i64, ttl_secs: u64) -> Result<(String, String)> {
    let token = random_hex();
    let csrf = random_hex();
    let expires = crate::time::now_ms() + (ttl_secs as i64) * 1000;
    store::insert_session(db, &digest(&token), manager_id, &csrf, expires).await?;
    Ok((token, csrf))
}

/// Check a name and password (login attempts are limited per name and per address, failures
/// answer one text) and open a session.
pub async fn login(
    st: &AppState,
    name: &str,
    password: &str,
    ip: std::net::IpAddr,
) -> Result<(String, String)> {
    const TEXT: &str = "管理员名称或密码错误";
    let window = std::time::Duration::from_secs(900);
    let keys = [format!("mgrfail:n:{name}"), format!("mgrfail:ip:{ip}")];
    for (k, limit) in keys.iter().zip([10, 30]) {
        if st.limiter.count(k).await >= limit {
            return Err(Error::fail("登录尝试过多，请稍后再试"));
        }
    }
    let found = store::by_name(&st.db, name).await?;
    // A missing name costs the same hash work as a wrong password.
    let stored = found
        .as_ref()
        .map(|m| m.password.as_str())
        .unwrap_or("$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Jx1m8NF6dBqhOYbYv4Y0Q");
    let ok = matches!(
        passwords::verify(password, stored, st.config.argon2_memory_kib).await?,
        Verified::Ok { .. }
    );
    let Some(m) = found.filter(|_| ok) else {
        for k in &keys {
            st.limiter.hit(k, window).await;
        }
        return Err(Error::fail(TEXT));
    };
    store::touch_login(&st.db, m.id).await?;
    open_session(&st.db, m.id, st.config.ops.admin_session_secs).await
}

/// The manager of a live session token, if any.
pub async fn by_token(db: &Db, token: &str) -> Result<Option<Manager>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let d = digest(token);
    let Some(s) = store::session(db, &d).await? else {
        return Ok(None);
    };
    if s.expires_ms < crate::time::now_ms() {
        store::delete_session(db, &d).await?;
        return Ok(None);
    }
    let name = if s.manager_id == CLI_MANAGER {
        "cli".to_string()
    } else {
        match store::by_id(db, s.manager_id).await? {
            Some(m) => m.name,
            None => return Ok(None),
        }
    };
    Ok(Some(Manager {
        id: s.manager_id,
        name,
        csrf: s.csrf,
        session: d,
    }))
}

pub async fn logout(db: &Db, m: &Manager) -> Result<()> {
    store::delete_session(db, &m.session).await?;
    Ok(())
}
