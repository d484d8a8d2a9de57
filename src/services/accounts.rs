//! Accounts (AF §6.1, §7.1, §8): registration, the login procedure, profile and settings, password
//! change, and operator actions. Visitors' signed endpoints are in `visitor.rs`.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::services::notices;
use crate::services::passwords::{self, Verified};
use crate::services::tokens::{self, Issued};
use crate::state::AppState;
use crate::store::tokens as token_store;
use crate::store::users::{self, NewUser, UserInfoRow, UserRow};
use crate::store::Tx;
use crate::time;

/// Role as emitted on the wire (AF §1 item 10): `visitor` stays, anything else is `user`.
pub fn wire_role(role: &str) -> &'static str {
    if role == "visitor" {
        "visitor"
    } else {
        "user"
    }
}

/// UserView (AF §5.5): every column but `password`, in the original's order, `role` = session role.
pub fn user_view(st: &AppState, u: &UserRow, session_role: &str) -> Map<String, Value> {
    let tz = &st.config.display_tz;
    let opt_iso = |t: &Option<chrono::NaiveDateTime>| t.as_ref().map(time::iso);
    let mut m = Map::new();
    m.insert("create_time".into(), json!(time::local(&u.create_time, tz)));
    m.insert("id".into(), json!(u.id));
    m.insert("uuid".into(), json!(u.uuid));
    m.insert("username".into(), json!(u.username));
    m.insert("nickname".into(), json!(u.nickname));
    m.insert("avatar".into(), json!(u.avatar_str()));
    m.insert("devicefingeruuid".into(), json!(u.devicefingeruuid));
    m.insert("uniplatform".into(), json!(u.uniplatform));
    m.insert("devicemodel".into(), json!(u.devicemodel));
    m.insert("deviceos".into(), json!(u.deviceos));
    m.insert("devicebrand".into(), json!(u.devicebrand));
    m.insert("mobile".into(), json!(u.mobile));
    m.insert("email".into(), json!(u.email));
    m.insert("status".into(), json!(u.status));
    m.insert("last_login".into(), json!(opt_iso(&u.last_login)));
    m.insert("last_login_ip".into(), json!(u.last_login_ip));
    m.insert("register_time".into(), json!(time::iso(&u.register_time)));
    m.insert("register_ip".into(), json!(u.register_ip));
    m.insert("is_deleted".into(), json!(u.is_deleted));
    m.insert("wechat_openid".into(), json!(u.wechat_openid));
    m.insert("qq_openid".into(), json!(u.qq_openid));
    m.insert("weibo_uid".into(), json!(u.weibo_uid));
    m.insert("role".into(), json!(wire_role(session_role)));
    m.insert("is_email_verified".into(), json!(u.is_email_verified));
    m.insert("is_mobile_verified".into(), json!(u.is_mobile_verified));
    m.insert("order".into(), json!(u.order));
    m.insert("update_time".into(), json!(time::iso(&u.update_time)));
    m.insert("userset".into(), json!(u.userset));
    m.insert("invite_confirm".into(), json!(u.invite_confirm));
    m
}

/// The `userinfo` object (AF §5.2), never `null`.
pub fn userinfo_view(info: Option<&UserInfoRow>) -> Value {
    match info {
        Some(i) => json!({
            "id": i.id, "gender": i.gender,
            "birthday": i.birthday.map(|d| d.format("%Y-%m-%d").to_string()),
            "bio": i.bio, "location": i.location, "website": i.website,
        }),
        None => {
            json!({"id": null, "gender": "unknown", "birthday": null, "bio": null, "location": null, "website": null})
        }
    }
}

/// What a login-type endpoint answers: UserView + `token`.
pub struct Session {
    pub view: Map<String, Value>,
    pub issued: Issued,
}

impl Session {
    pub fn into_json(self) -> Value {
        let mut v = self.view;
        v.insert("token".into(), json!(self.issued.token));
        Value::Object(v)
    }
}

/// Credentials for the login procedure.
pub enum Credential<'a> {
    Password(&'a str),
    /// `visitor_mode`: no password, session role forced to `visitor` (AF §6.1).
    VisitorMode,
    /// The account was created by this very call with the password given (API 一).
    JustRegistered,
}

/// The login procedure (AF §6.1). `device` binds the token (signed endpoints only).
pub async fn login(
    st: &AppState,
    username: &str,
    cred: Credential<'_>,
    device: Option<&str>,
    ip: IpAddr,
) -> Result<Session> {
    let user = users::by_username(&st.db, username)
        .await?
        .filter(|u| u.status == 1)
        .ok_or_else(|| Error::fail("账号不存在或者被禁用"))?;
    let mut rehash = None;
    if let Credential::Password(pw) = cred {
        // The failure is counted before the (slow) verify, so parallel guesses cannot pass the
        // limit: each takes a slot of the window, given back only when the password was right.
        let reserved = reserve_login_failure(st, &user, ip).await?;
        match passwords::verify(pw, &user.password, st.config.argon2_memory_kib).await? {
            Verified::Ok { rehash: r } => {
                reserved.release(st).await;
                rehash = r;
            }
            Verified::Bad => return Err(Error::fail("账户或密码错误")),
        }
    }
    let role = match cred {
        Credential::VisitorMode => "visitor",
        Credential::Password(_) | Credential::JustRegistered => wire_role(&user.role),
    };
    let mut tx = st.db.begin().await?;
    users::touch_login(&mut tx, user.id, rehash.as_deref()).await?;
    let issued = tokens::issue(&mut tx, &st.keys, user.id, role, device)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing the active token failed");
            Error::fail("登录失败")
        })?;
    tx.commit().await.map_err(|_| Error::fail("登录失败"))?;
    let fresh = users::by_id(&st.db, user.id).await?.unwrap_or(user);
    st.delivery
        .tokens_ended(fresh.id, &issued.ended, Some(notices::kick_frame(&fresh)));
    Ok(Session {
        view: user_view(st, &fresh, role),
        issued,
    })
}

fn per_ip(st: &AppState, limit: u64) -> u64 {
    if st.config.per_ip_limits {
        limit
    } else {
        0
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Failure slots taken before a password check (AF §9 D10); given back on success.
struct Reserved {
    keys: Vec<String>,
}

impl Reserved {
    async fn release(self, st: &AppState) {
        for k in &self.keys {
            st.limiter.release(k).await;
        }
    }
}

/// AF §9 D10: too many failures for the account or the address → `账户或密码错误`. Otherwise a
/// failure is counted now (the check that follows may fail), for the account and the address.
async fn reserve_login_failure(st: &AppState, user: &UserRow, ip: IpAddr) -> Result<Reserved> {
    let mut taken = Reserved { keys: Vec::new() };
    let limits = [
        (
            format!("loginfail:u:{}", user.id),
            st.config.login_fail_account_limit,
        ),
        (
            format!("loginfail:ip:{ip}"),
            per_ip(st, st.config.login_fail_ip_limit),
        ),
    ];
    for (key, limit) in limits {
        if limit == 0 {
            continue;
        }
        if !st.limiter.try_hit(&key, limit, HOUR).await {
            taken.release(st).await;
            return Err(Error::fail("账户或密码错误"));
        }
        taken.keys.push(key);
    }
    Ok(taken)
}

/// API 一. Registrations are limited per address (`IMRS_REG_IP_LIMIT`); the new account logs
/// in without verifying the password it was just given (one Argon2id hash per call, not two).
pub async fn register(
    st: &AppState,
    username: &str,
    password: &str,
    ip: IpAddr,
) -> Result<Session> {
    let limit = per_ip(st, st.config.reg_ip_limit);
    if !st
        .limiter
        .try_hit(&format!("reg:ip:{ip}"), limit, HOUR)
        .await
    {
        return Err(Error::fail("请求过于频繁，请1个小时后再试"));
    }
    if users::by_username(&st.db, username).await?.is_some() {
        return Err(Error::fail("该账号已存在，请换一个账号注册"));
    }
    let hash = passwords::hash(password, st.config.argon2_memory_kib).await?;
    let mut tx = st.db.begin().await?;
    create_user(&mut tx, username, &hash).await?;
    tx.commit().await?;
    login(st, username, Credential::JustRegistered, None, ip).await
}

/// Insert a registered user; a lost unique race answers like the pre-check (AF API 一 step 2).
pub async fn create_user(tx: &mut Tx, username: &str, hash: &str) -> Result<i64> {
    let new = NewUser {
        username,
        password_hash: hash,
        role: "user",
        device: None,
        stats: ["", "", "", ""],
        last_login: Some(time::now_db()),
    };
    users::insert(tx, &new).await.map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            Error::fail("该账号已存在，请换一个账号注册")
        } else {
            e.into()
        }
    })
}

/// API 三: the caller's token is retired; its sockets stay open and inert (AF D9, MR §3.3).
pub async fn logout(st: &AppState, user_id: i64, jti: &str) -> Result<()> {
    let mut tx = st.db.begin().await?;
    token_store::lock_session(&mut tx, user_id).await?;
    token_store::set_state(&mut tx, jti, token_store::RETIRED).await?;
    tx.commit().await?;
    st.delivery.token_retired(user_id, jti);
    Ok(())
}

/// API 四.
pub async fn search(st: &AppState, me: i64, keyword: &str) -> Result<Value> {
    let hits = users::search(&st.db, keyword, me, st.config.search_limit as i64).await?;
    Ok(Value::Array(
        hits.into_iter()
            .map(|h| {
                json!({"id": h.id, "username": h.username, "avatar": h.avatar.unwrap_or_default(),
                       "role": wire_role(&h.role), "uuid": h.uuid, "nickname": h.nickname})
            })
            .collect(),
    ))
}

/// API 十六: `null` for unknown or disabled uuids.
pub async fn public_profile(st: &AppState, uuid: &str) -> Result<Value> {
    let Some(u) = users::by_uuid(&st.db, uuid).await? else {
        return Ok(Value::Null);
    };
    let info = users::info(&st.db, u.id).await?;
    Ok(json!({
        "id": u.id, "uuid": u.uuid, "username": u.username, "nickname": u.nickname,
        "avatar": u.avatar_str(), "role": wire_role(&u.role), "userset": u.userset,
        "userinfo": userinfo_view(info.as_ref()),
    }))
}

/// API 十八: stored verbatim (readers tolerate anything, D20).
pub async fn save_userset(st: &AppState, me: i64, userset: &str) -> Result<()> {
    users::set_column(&st.db, me, "userset", Some(userset)).await?;
    Ok(())
}

/// Length in UTF-16 code units, as the original's handler counted (AF API 三十四).
fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// API 三十四.
pub async fn update_userinfo(
    st: &AppState,
    me: i64,
    field: &str,
    value: &str,
) -> Result<&'static str> {
    if users::by_id(&st.db, me).await?.is_none() {
        return Err(Error::fail("用户不存在，无法修改信息"));
    }
    let answer = match field {
        "username" => return Err(Error::fail("账号不可修改")),
        "nickname" => {
            if utf16_len(value) > 30 {
                return Err(Error::fail("昵称长度不能超过30个字符"));
            }
            users::set_column(&st.db, me, "nickname", Some(value)).await?;
            "修改昵称成功"
        }
        "avatar" => {
            if utf16_len(value) > 1000 {
                return Err(Error::fail("头像地址过长不能超过1000个字符"));
            }
            let ok = value.starts_with("http://")
                || value.starts_with("https://")
                || (value.starts_with('/') && !value.starts_with("//"));
            if !ok
                || value
                    .chars()
                    .any(|c| c.is_control() || c == '"' || c == '<' || c == '>')
            {
                return Err(Error::fail("头像地址不合法"));
            }
            users::set_column(&st.db, me, "avatar", Some(value)).await?;
            "头像更新成功"
        }
        "invite_confirm" => {
            let v = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| *f == 0.0 || *f == 1.0);
            let Some(v) = v else {
                return Err(Error::fail("添加我为好友设置值错误"));
            };
            users::set_int_column(&st.db, me, "invite_confirm", v as i64).await?;
            "设置成功"
        }
        _ => "",
    };
    st.delivery.mark_profile_edit(me, field);
    Ok(answer)
}

/// API 三十九.
pub async fn user_set_info(st: &AppState, me: i64, userid: i64) -> Result<Value> {
    let target = users::active_by_id(&st.db, userid)
        .await?
        .filter(|u| !u.is_visitor())
        .ok_or_else(|| Error::fail("用户不存在或者为游客，无法加为好友"))?;
    let rel = crate::store::friends::row(&st.db, target.id, me).await?;
    let isgoodfriend = rel.is_some();
    let status_ok = rel.as_ref().is_none_or(|r| r.isblack != 1 && r.status == 1);
    Ok(json!({
        "id": target.id, "userset": target.userset, "invite_confirm": target.invite_confirm,
        "uuid": target.uuid, "isgoodfriend": isgoodfriend, "isgoodfriend_status": status_ok,
    }))
}

/// setPassword.
pub async fn set_password(
    st: &AppState,
    me: &UserRow,
    session_role: &str,
    old: &str,
    new: &str,
    check: &str,
    ip: IpAddr,
) -> Result<()> {
    if new != check {
        return Err(Error::fail("新密码与确认新密码不一致"));
    }
    if session_role == "visitor" && !me.is_visitor() {
        return Err(Error::fail("您未登录，无法修改密码"));
    }
    let user = users::active_by_id(&st.db, me.id)
        .await?
        .ok_or_else(|| Error::fail("用户不存在，无法修改密码"))?;
    // Counted before the verify, like logins: parallel guesses cannot pass the limit.
    let key = format!("pwfail:u:{}", user.id);
    let limit = st.config.login_fail_account_limit;
    if !st.limiter.try_hit(&key, limit, HOUR).await {
        return Err(Error::fail("原始密码错误，无法修改密码"));
    }
    if let Verified::Bad =
        passwords::verify(old, &user.password, st.config.argon2_memory_kib).await?
    {
        st.limiter.hit(&format!("loginfail:ip:{ip}"), HOUR).await;
        return Err(Error::fail("原始密码错误，无法修改密码"));
    }
    if limit > 0 {
        st.limiter.release(&key).await;
    }
    let hash = passwords::hash(new, st.config.argon2_memory_kib).await?;
    users::set_column(&st.db, user.id, "password", Some(&hash)).await?;
    Ok(())
}

/// Operator disable/enable (AF §3.7, §8): disabling revokes every token and ends the user's sockets
/// with `你已被管理员禁用` + 4003 (on this node now; other processes apply the event, and
/// [`crate::wait_for_nodes`] waits until they have). Returns the event's id, `None` for an
/// unknown user.
pub async fn set_enabled(st: &AppState, user_id: i64, enabled: bool) -> Result<Option<i64>> {
    let mut tx = st.db.begin().await?;
    let Some(_) = users::by_id_tx(&mut tx, user_id).await? else {
        return Ok(None);
    };
    users::set_status(&mut tx, user_id, if enabled { 1 } else { 0 }).await?;
    if !enabled {
        token_store::lock_session(&mut tx, user_id).await?;
        token_store::revoke_all(&mut tx, user_id).await?;
    }
    // Running servers (other processes) apply it to their sockets and caches.
    let kind = if enabled { "enable" } else { "disable" };
    let event = crate::store::admin::record(&mut tx, user_id, kind).await?;
    tx.commit().await?;
    if !enabled {
        st.delivery.user_disabled(user_id);
    }
    Ok(Some(event))
}
