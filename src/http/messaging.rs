//! Messaging routes (MR §5.1–§5.3): API 二十 sendmessage, 二十二 chatGetmessageOffLine, 三十二
//! revokeMessage.

use axum::extract::State;
use axum::http::HeaderMap;

use super::auth::Auth;
use super::params::{In, Params};
use super::{ok, ApiResult};
use crate::error::Error;
use crate::services::messaging::{self, parse_options, RevokeRequest, SendRequest};
use crate::state::AppState;

/// Validate API 二十's parameters in table order.
pub fn send_request(p: &Params, client_msg_id: Option<String>) -> Result<SendRequest, Error> {
    let sendto_id = p
        .int(In::Body, "sendto_id", "接收人/群的id值")
        .min(1)
        .get()?;
    let chat_type = p
        .str(In::Body, "chatType", "接收类型")
        .one_of(&["single", "group"])
        .get()?;
    let msg_type = p.any("type", "消息类型")?;
    let data = p.any("data", "消息内容")?;
    let options = Some(parse_options(p.body.get("options")));
    let body_key = p.str(In::Body, "client_msg_id", "client_msg_id").opt();
    Ok(SendRequest {
        sendto_id,
        chat_type,
        msg_type,
        data,
        options,
        client_msg_id: body_key.or(client_msg_id),
    })
}

/// API 二十.
pub async fn send(
    State(st): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let header_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let req = send_request(&p, header_key)?;
    let (msg, _) = messaging::send(&st, &auth.user, req).await?;
    Ok(ok(msg))
}

/// API 二十二: pushes pending entries over the caller's socket; the answer is always `ok`.
pub async fn offline(State(st): State<AppState>, auth: Auth) -> ApiResult {
    if !auth.retired {
        st.delivery.replay(auth.id(), &auth.claims.jti).await;
    }
    Ok(ok("ok"))
}

/// API 三十二.
pub async fn revoke(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let to_id = p.int(In::Body, "to_id", "接收者id或者群id").min(1).get()?;
    let id = p.str(In::Body, "id", "消息uuid").get()?;
    let chat_type = p
        .str(In::Body, "chatType", "聊天类型")
        .one_of(&["single", "group"])
        .get()?;
    p.int(In::Body, "create_time", "消息发送时间").get()?;
    let notice = messaging::revoke(
        &st,
        &auth.user,
        RevokeRequest {
            to_id,
            id,
            chat_type,
        },
    )
    .await?;
    Ok(ok(notice))
}

/// EXTENSION §7.5 `GET /api/chat/history/:chatType/:id`.
pub async fn history(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let chat_type = p
        .str(In::Path, "chatType", "聊天类型")
        .one_of(&["single", "group"])
        .get()?;
    let id = p.int(In::Path, "id", "id").min(1).get()?;
    let before = p.int(In::Query, "before", "before").min(0).opt();
    let after = p.int(In::Query, "after", "after").min(0).opt();
    let limit = p.int(In::Query, "limit", "limit").min(1).or(30);
    let page = messaging::history(&st, &auth.user, &chat_type, id, after, before, limit).await?;
    Ok(ok(page))
}

/// EXTENSION §7.6 `POST /api/chat/readCursor`.
pub async fn read_cursor(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let chat_type = p
        .str(In::Body, "chatType", "聊天类型")
        .one_of(&["single", "group"])
        .get()?;
    let id = p.int(In::Body, "id", "id").min(1).get()?;
    let seq = p.int(In::Body, "conv_seq", "conv_seq").min(0).get()?;
    Ok(ok(messaging::read_cursor(
        &st, &auth.user, &chat_type, id, seq,
    )
    .await?))
}
