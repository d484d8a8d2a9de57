//! Account routes (AF §7.1): 一 二 三 四 十三 十四 十五 十六 十八 三十四 三十九 and setPassword.

use axum::extract::State;
use axum::http::HeaderMap;

use super::auth::Auth;
use super::params::{text_of, In, Params};
use super::{ok, ApiResult, ClientIp};
use crate::error::Error;
use crate::services::accounts::{self, Credential};
use crate::services::visitor::{self, Signed};
use crate::state::AppState;

fn credentials(p: &Params) -> Result<(String, String), Error> {
    let username = p.str(In::Body, "username", "账号").len(4, 20).get()?;
    let password = p.str(In::Body, "password", "密码").len(6, 20).get()?;
    Ok((username, password))
}

/// API 一.
pub async fn register(State(st): State<AppState>, ClientIp(ip): ClientIp, p: Params) -> ApiResult {
    let (username, password) = credentials(&p)?;
    Ok(ok(accounts::register(&st, &username, &password, ip)
        .await?
        .into_json()))
}

/// API 二.
pub async fn login(State(st): State<AppState>, ClientIp(ip): ClientIp, p: Params) -> ApiResult {
    let (username, password) = credentials(&p)?;
    let s = accounts::login(&st, &username, Credential::Password(&password), None, ip).await?;
    Ok(ok(s.into_json()))
}

/// API 三.
pub async fn logout(State(st): State<AppState>, auth: Auth) -> ApiResult {
    accounts::logout(&st, auth.id(), &auth.claims.jti).await?;
    Ok(ok(true))
}

/// API 四.
pub async fn search(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let keyword = p.str(In::Body, "keyword", "搜索关键词").len(1, 50).get()?;
    Ok(ok(accounts::search(&st, auth.id(), &keyword).await?))
}

/// Steps 1–6 of AF §4.2 for the three signed endpoints; `extra` validates the endpoint's own
/// parameters that come before `deviceId` in its table.
async fn signed(
    st: &AppState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    p: &Params,
    extra: impl FnOnce(&Params) -> Result<(), Error>,
) -> Result<Signed, Error> {
    let sign = headers
        .get("x-security-sign")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::fail("非法访问"))?
        .to_string();
    extra(p)?;
    let device_id = p.str(In::Body, "deviceId", "设备指纹").len(36, 200).get()?;
    let timestamp = p.int(In::Body, "timestamp", "时间戳").get()?;
    let ts_text = p
        .raw(In::Body, "timestamp")
        .map(|v| text_of(&v))
        .unwrap_or_default();
    visitor::check_signature(st, &sign, &device_id, &ts_text, timestamp)?;
    let s = Signed { device_id, ip };
    visitor::check_limits(st, &s).await?;
    Ok(s)
}

/// API 十三.
pub async fn visitor_register(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let s = signed(&st, &headers, ip, &p, |_| Ok(())).await?;
    // Only the statistics fields that were sent (and valid) are stored.
    let stats = [
        p.str(In::Body, "uniplatform", "平台类型").len(2, 50).opt(),
        p.str(In::Body, "devicemodel", "设备型号").len(1, 50).opt(),
        p.str(In::Body, "deviceos", "操作系统").len(1, 50).opt(),
        p.str(In::Body, "devicebrand", "设备品牌").len(1, 50).opt(),
    ];
    Ok(ok(visitor::visitor_register(&st, &s, stats)
        .await?
        .into_json()))
}

/// API 十四.
pub async fn visitor_reg_chat(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let s = signed(&st, &headers, ip, &p, |p| credentials(p).map(|_| ())).await?;
    let (username, password) = credentials(&p)?;
    Ok(ok(visitor::visitor_reg_chat(&st, &s, &username, &password)
        .await?
        .into_json()))
}

/// API 十五.
pub async fn visitor_login_chat(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let s = signed(&st, &headers, ip, &p, |p| credentials(p).map(|_| ())).await?;
    let (username, password) = credentials(&p)?;
    Ok(ok(visitor::visitor_login_chat(
        &st, &s, &username, &password,
    )
    .await?
    .into_json()))
}

/// API 十六.
pub async fn public_profile(State(st): State<AppState>, p: Params) -> ApiResult {
    let uuid = p.str(In::Path, "uuid", "uuid值").len(36, 36).get()?;
    Ok(ok(accounts::public_profile(&st, &uuid).await?))
}

/// API 十八.
pub async fn userset(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let v = p.str(In::Body, "userset", "用户设置").min_len(2).get()?;
    if v.len() > 65_535 {
        return Err(Error::Invalid(
            "用户设置 的长度 必须 在 2 和 65535 之间".into(),
        ));
    }
    accounts::save_userset(&st, auth.id(), &v).await?;
    Ok(ok("ok"))
}

/// API 三十四.
pub async fn update_userinfo(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let field = p.str(In::Body, "fieldname", "修改类型").len(1, 30).get()?;
    let value = p.str(In::Body, "fieldValue", "修改结果").min_len(1).get()?;
    Ok(ok(accounts::update_userinfo(
        &st,
        auth.id(),
        &field,
        &value,
    )
    .await?))
}

/// API 三十九.
pub async fn get_user_set_info(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let userid = p.int(In::Body, "userid", "用户id").min(1).get()?;
    Ok(ok(accounts::user_set_info(&st, auth.id(), userid).await?))
}

/// setPassword (no API number).
pub async fn set_password(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    p: Params,
) -> ApiResult {
    let old = p.str(In::Body, "oldpassword", "原始密码").get()?;
    let new = p.str(In::Body, "newpassword", "新密码").len(6, 20).get()?;
    let check = p.str(In::Body, "checknewpassword", "确认新密码").get()?;
    accounts::set_password(&st, &auth.user, auth.role(), &old, &new, &check, ip).await?;
    Ok(ok("修改密码成功"))
}
