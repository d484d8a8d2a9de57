//! Group routes (GR §5, §6): 二十一 create, 二十三 grouplist, 二十四 groupinfo, 二十五 groupUpdateName,
//! 二十六 groupremark, 二十七 groupnickname, 二十八 groupDeleteOrQuit, 二十九 groupQrcode,
//! 三十五 groupDeleteUser, 三十六 groupInviteUser, 三十七 groupAddUserSet, 三十八 groupAgreeOrNo.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use super::auth::Auth;
use super::params::{In, Params};
use super::{ok, ApiResult};
use crate::services::groups::{self as svc, InviteRequest, Joined, QrRequest};
use crate::state::AppState;
use crate::store::groups::GroupField;

/// The positive integers of a `userIds` value (GR §5.1, GA13): a JSON array of numbers or numeric
/// strings (form arrays arrive as arrays), a comma-separated string, or a single value; anything
/// else is ignored.
fn user_ids(v: &Value, out: &mut Vec<i64>) {
    match v {
        Value::Number(n) => {
            let id = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= 9.0e15)
                    .map(|f| f as i64)
            });
            out.extend(id.filter(|i| *i > 0));
        }
        Value::String(s) => out.extend(
            s.split(',')
                .filter_map(|part| part.trim().parse::<i64>().ok())
                .filter(|i| *i > 0),
        ),
        Value::Array(items) => items.iter().for_each(|x| user_ids(x, out)),
        _ => {}
    }
}

/// API 二十一.
pub async fn create(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let raw = p.any("userIds", "userIds")?;
    let mut ids = Vec::new();
    user_ids(&raw, &mut ids);
    svc::create(&st, &auth.user, &ids).await?;
    Ok(ok("ok"))
}

/// API 二十三.
pub async fn list(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let page = p.page(30)?;
    Ok(ok(svc::list(&st, &auth.user, page).await?))
}

/// API 二十四.
pub async fn info(State(st): State<AppState>, _auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "群id").min(1).get()?;
    Ok(ok(svc::info(&st, id).await?))
}

/// API 二十五.
pub async fn rename(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Body, "id", "群id").min(1).get()?;
    let name = p.str(In::Body, "name", "群名称").len(1, 20).get()?;
    svc::owner_edit(&st, &auth.user, id, GroupField::Name, &name).await?;
    Ok(ok("ok"))
}

/// API 二十六.
pub async fn remark(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Body, "id", "群id").min(1).get()?;
    let remark = p.str(In::Body, "remark", "群公告").len(1, 500).get()?;
    svc::owner_edit(&st, &auth.user, id, GroupField::Remark, &remark).await?;
    Ok(ok("ok"))
}

/// API 二十七.
pub async fn nickname(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Body, "id", "群id").min(1).get()?;
    let nickname = p.str(In::Body, "nickname", "群昵称").len(1, 20).get()?;
    svc::set_nickname(&st, &auth.user, id, &nickname).await?;
    Ok(ok("ok"))
}

/// API 二十八.
pub async fn delete_or_quit(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Body, "id", "群id").min(1).get()?;
    svc::delete_or_quit(&st, &auth.user, id).await?;
    Ok(ok("ok"))
}

/// API 二十九: the PNG itself on success (no envelope), JSON envelopes on failure.
pub async fn qrcode(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let req = QrRequest {
        id: p.int(In::Path, "id", "群id或者个人id").min(1).get()?,
        platform: p.str(In::Query, "type", "平台类型").or(""),
        // GA19: longer than 512 counts as absent.
        http: p.str(In::Query, "http", "网址域名").len(1, 512).or(""),
        chat_type: p.str(In::Query, "chatType", "聊天类型").or(""),
    };
    let text = svc::qr_text(&st, &auth.user, &req).await?;
    let png = tokio::task::spawn_blocking(move || svc::qr_png(&text))
        .await
        .map_err(anyhow::Error::from)??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

/// API 三十五.
pub async fn delete_user(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let group_id = p.int(In::Body, "group_id", "群id").min(1).get()?;
    let user_id = p.int(In::Body, "user_id", "群成员id").min(1).get()?;
    svc::remove_member(&st, &auth.user, group_id, user_id).await?;
    Ok(ok("删除群成员成功"))
}

/// API 三十六.
pub async fn invite_user(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let req = InviteRequest {
        group_id: p.int(In::Body, "group_id", "群id").min(1).get()?,
        user_id: p.int(In::Body, "user_id", "用户id").min(1).get()?,
        inviteuser_id: p.int(In::Body, "inviteuser_id", "邀请人的用户id").or(0),
        desc: p
            .str(In::Body, "addGroupDesc", "加群说明或者邀请说明")
            .len(1, 500)
            .or(""),
    };
    Ok(ok(match svc::invite(&st, &auth.user, req).await? {
        Joined::Direct => "加群成功",
        Joined::Pending => "等待群主同意",
    }))
}

/// API 三十七.
pub async fn add_user_set(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let group_id = p.int(In::Body, "group_id", "群id").min(1).get()?;
    let mode = p
        .int(In::Body, "addGroupSet", "进群设置属性值")
        .min(0)
        .max(10)
        .get()?;
    svc::set_join_mode(&st, &auth.user, group_id, mode).await?;
    Ok(ok("设置成功"))
}

/// API 三十八.
pub async fn agree_or_no(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let group_id = p.int(In::Body, "group_id", "群id").min(1).get()?;
    let user_id = p.int(In::Body, "user_id", "进群的用户id").min(1).get()?;
    let decision = p
        .str(In::Body, "type", "同意或者拒绝")
        .one_of(&["agree", "no"])
        .get()?;
    svc::decide(&st, &auth.user, group_id, user_id, decision == "agree").await?;
    Ok(ok("处理成功"))
}
