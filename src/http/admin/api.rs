//! `/admin/api/…`: the JSON side of the back office, used by the console's live refresh, by scripts
//! with a manager bearer token and by the CLI. Answers use the client API's envelope.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{field, Manager};
use crate::error::Error;
use crate::http::params::Params;
use crate::http::{ok, ApiResult, ClientIp};
use crate::services::{admin, managers};
use crate::state::AppState;
use crate::store::admin::{self as admin_store, MessageListRow, UserFilter};
use crate::store::users::UserRow;
use crate::store::{groups as group_store, timeline, users};
use crate::time;

fn required(p: &Params, name: &str, text: &'static str) -> Result<String, Error> {
    field(p, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::fail(text))
}

/// `page` (1-based) and `limit` (1–100, default 20) of a list.
pub fn paging(p: &Params) -> (i64, i64) {
    let page = field(p, "page")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let limit = field(p, "limit")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    (page, limit)
}

pub fn user_filter(p: &Params) -> UserFilter {
    UserFilter {
        q: field(p, "q").filter(|q| !q.trim().is_empty()),
        role: field(p, "role").filter(|r| r == "user" || r == "visitor"),
        status: field(p, "status").and_then(|s| match s.as_str() {
            "1" | "enabled" => Some(1),
            "0" | "disabled" => Some(0),
            _ => None,
        }),
    }
}

pub fn user_json(st: &AppState, u: &UserRow) -> Value {
    json!({
        "id": u.id, "uuid": u.uuid, "username": u.username, "nickname": u.nickname,
        "avatar": u.avatar_str(), "role": u.role, "status": u.status,
        "create_time": time::local(&u.create_time, &st.config.display_tz),
        "last_login": u.last_login.as_ref().map(|t| time::local(t, &st.config.display_tz)),
        "sockets": st.delivery.open_sockets(u.id),
    })
}

pub fn message_json(m: &MessageListRow) -> Value {
    let body: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
    json!({
        "id": m.msg_id, "chatType": m.chat_type, "from_id": m.from_id, "to_id": m.to_id,
        "from_name": body.get("from_name"), "type": body.get("type"),
        "data": body.get("data"), "create_time": m.create_time, "revoked": m.revoked != 0,
    })
}

fn id_of(raw: &str) -> Result<i64, Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Error::fail("id 不合法"))
}

pub async fn login(State(st): State<AppState>, ClientIp(ip): ClientIp, p: Params) -> ApiResult {
    let name = required(&p, "name", "请输入管理员名称")?;
    let password = required(&p, "password", "请输入密码")?;
    let (token, csrf) = managers::login(&st, &name, &password, ip).await?;
    Ok(ok(
        json!({"token": token, "csrf": csrf, "expires_in": st.config.ops.admin_session_secs}),
    ))
}

pub async fn logout(State(st): State<AppState>, m: Manager) -> ApiResult {
    managers::logout(&st.db, &m).await?;
    Ok(ok("ok"))
}

/// Start of today in the display time zone, as Unix ms.
fn day_start_ms(st: &AppState) -> i64 {
    let now = chrono::Utc::now().with_timezone(&st.config.display_tz);
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(st.config.display_tz).single())
        .map(|d| d.timestamp_millis())
        .unwrap_or(0)
}

pub async fn stats_json(st: &AppState) -> Result<Value, Error> {
    let now = time::now_ms();
    let counts = admin_store::counts(&st.db, day_start_ms(st), now - 3_600_000).await?;
    Ok(json!({
        "counts": counts,
        "open_sockets": crate::telemetry::open_sockets(),
        "history": crate::telemetry::history(),
    }))
}

pub async fn stats(State(st): State<AppState>, _: Manager) -> ApiResult {
    Ok(ok(stats_json(&st).await?))
}

pub async fn users(State(st): State<AppState>, _: Manager, p: Params) -> ApiResult {
    let (page, limit) = paging(&p);
    let (rows, total) =
        admin_store::users_page(&st.db, &user_filter(&p), limit, (page - 1) * limit).await?;
    let list: Vec<Value> = rows.iter().map(|u| user_json(&st, u)).collect();
    Ok(ok(
        json!({"total": total, "page": page, "limit": limit, "list": list}),
    ))
}

pub async fn user_detail(st: &AppState, id: i64) -> Result<Value, Error> {
    let u = users::by_id(&st.db, id)
        .await?
        .filter(|u| u.is_deleted == 0)
        .ok_or_else(|| Error::fail("该即时通讯用户不存在"))?;
    let friends: Vec<Value> = admin_store::friends_of(&st.db, id)
        .await?
        .into_iter()
        .map(|(id, username, nickname, black)| {
            json!({"id": id, "username": username, "nickname": nickname, "isblack": black})
        })
        .collect();
    let groups: Vec<Value> = admin_store::groups_of(&st.db, id)
        .await?
        .into_iter()
        .map(|(id, name, status, owner)| {
            json!({"id": id, "name": name, "status": status, "owner": owner == 1})
        })
        .collect();
    let mut v = user_json(st, &u);
    v["devicefingeruuid"] = json!(u.devicefingeruuid);
    v["deviceos"] = json!(u.deviceos);
    v["devicemodel"] = json!(u.devicemodel);
    v["last_login_ip"] = json!(u.last_login_ip);
    v["friends"] = json!(friends);
    v["groups"] = json!(groups);
    Ok(v)
}

pub async fn user(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    Ok(ok(user_detail(&st, id_of(&id)?).await?))
}

pub async fn create_user(State(st): State<AppState>, _: Manager, p: Params) -> ApiResult {
    let username = required(&p, "username", "用户名不能为空")?;
    let password = required(&p, "password", "密码不能为空")?;
    let id = admin::create_user(&st, &username, &password, field(&p, "avatar").as_deref()).await?;
    Ok(ok(json!({"id": id, "text": "创建成功"})))
}

pub fn edit_of(p: &Params) -> admin::UserEdit {
    admin::UserEdit {
        username: field(p, "username").filter(|v| !v.trim().is_empty()),
        nickname: field(p, "nickname"),
        avatar: field(p, "avatar").filter(|v| !v.trim().is_empty()),
        password: field(p, "password").filter(|v| !v.is_empty()),
    }
}

pub async fn edit_user(
    State(st): State<AppState>,
    _: Manager,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult {
    admin::edit_user(&st, id_of(&id)?, edit_of(&p)).await?;
    Ok(ok("修改成功"))
}

pub async fn reset_password(
    State(st): State<AppState>,
    _: Manager,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult {
    let pw = required(&p, "password", "密码不能为空")?;
    admin::reset_password(&st, id_of(&id)?, &pw).await?;
    Ok(ok("修改成功"))
}

pub async fn enable(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    admin::set_enabled(&st, id_of(&id)?, true).await?;
    Ok(ok("已启用"))
}

pub async fn disable(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    admin::set_enabled(&st, id_of(&id)?, false).await?;
    Ok(ok("已禁用"))
}

pub async fn delete_user(
    State(st): State<AppState>,
    _: Manager,
    Path(id): Path<String>,
) -> ApiResult {
    admin::delete_user(&st, id_of(&id)?).await?;
    Ok(ok("删除成功"))
}

pub async fn backlog_json(st: &AppState, id: i64) -> Result<Value, Error> {
    let pending = st.delivery.pending(id).await?;
    Ok(Value::Array(
        pending
            .into_iter()
            .take(500)
            .map(|(e, _)| {
                let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
                json!({"entry": e.id, "conv_key": e.conv_key, "kind": e.kind, "chatType": e.chat_type,
                       "from_id": e.from_id, "to_id": e.to_id, "body": body})
            })
            .collect(),
    ))
}

pub async fn backlog(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    Ok(ok(backlog_json(&st, id_of(&id)?).await?))
}

pub async fn groups(State(st): State<AppState>, _: Manager, p: Params) -> ApiResult {
    let (page, limit) = paging(&p);
    let q = field(&p, "q");
    let (rows, total) =
        admin_store::groups_page(&st.db, q.as_deref(), limit, (page - 1) * limit).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.group.id, "name": r.group.name, "owner": r.group.user_id,
                        "avatar": r.group.avatar, "members": r.members})
        })
        .collect();
    Ok(ok(
        json!({"total": total, "page": page, "limit": limit, "list": list}),
    ))
}

pub async fn group_detail(st: &AppState, id: i64) -> Result<Value, Error> {
    let g = group_store::by_id(&st.db, id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(|| Error::fail("群不存在"))?;
    let members = group_store::members(&st.db, id, false).await?;
    let ids: Vec<i64> = members.iter().map(|m| m.user_id).collect();
    let us = users::by_ids(&st.db, &ids).await?;
    let list: Vec<Value> = members
        .iter()
        .map(|m| {
            let u = us.iter().find(|u| u.id == m.user_id);
            json!({"user_id": m.user_id, "nickname": m.nickname, "status": m.status,
                   "username": u.map(|u| u.username.as_str()), "user_nickname": u.map(|u| u.nickname.as_str())})
        })
        .collect();
    Ok(
        json!({"id": g.id, "name": g.name, "owner": g.user_id, "avatar": g.avatar,
              "remark": g.remark, "members": list}),
    )
}

pub async fn group(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    Ok(ok(group_detail(&st, id_of(&id)?).await?))
}

pub async fn dissolve(State(st): State<AppState>, _: Manager, Path(id): Path<String>) -> ApiResult {
    admin::dissolve_group(&st, id_of(&id)?).await?;
    Ok(ok("ok"))
}

pub async fn rename_group(
    State(st): State<AppState>,
    _: Manager,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult {
    let name = required(&p, "name", "群名称不能为空")?;
    admin::rename_group(&st, id_of(&id)?, &name).await?;
    Ok(ok("ok"))
}

/// Messages of `user=<id>`, of `group=<id>`, of the pair `a=<id>&b=<id>`, or the newest overall.
pub async fn message_list(st: &AppState, p: &Params) -> Result<Vec<MessageListRow>, Error> {
    let limit = field(p, "limit")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    let num = |k: &str| field(p, k).and_then(|v| v.trim().parse::<i64>().ok());
    Ok(if let Some(u) = num("user") {
        admin_store::messages_of_user(&st.db, u, limit).await?
    } else if let Some(g) = num("group") {
        admin_store::messages_of_conv(&st.db, &timeline::group_key(g), limit).await?
    } else if let (Some(a), Some(b)) = (num("a"), num("b")) {
        admin_store::messages_of_conv(&st.db, &timeline::pair_key(a, b), limit).await?
    } else {
        admin_store::recent_messages(&st.db, limit).await?
    })
}

pub async fn messages(State(st): State<AppState>, _: Manager, p: Params) -> ApiResult {
    let rows = message_list(&st, &p).await?;
    Ok(ok(rows.iter().map(message_json).collect::<Vec<_>>()))
}

pub async fn revoke(State(st): State<AppState>, m: Manager, Path(id): Path<String>) -> ApiResult {
    if id.is_empty() || id.len() > 64 {
        return Err(Error::Status(
            StatusCode::BAD_REQUEST,
            "消息不存在，无法撤回".into(),
        ));
    }
    Ok(ok(admin::revoke_message(&st, &m.name, &id).await?))
}
