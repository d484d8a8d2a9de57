//! Messaging (MR §5.1–§5.3, §7.2): sending, offline replay and revoke, on durable timelines.
//! Group sending and group revoke use the group rules of `groups.rs`.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::friends;
use crate::store::timeline::{self, pair_key, Append, Recipients, KIND_CHAT, KIND_REVOKE};
use crate::store::users::{self, UserRow};
use crate::time;

/// A validated send request (API 二十 or the websocket `send` frame).
pub struct SendRequest {
    pub sendto_id: i64,
    pub chat_type: String,
    pub msg_type: Value,
    pub data: Value,
    pub options: Option<Value>,
    pub client_msg_id: Option<String>,
}

/// `sendCount` of the recipient's settings for senders of this role (MR §5.1 step 2, MD16/MD17).
pub fn send_count(userset: Option<&str>, sender_is_visitor: bool) -> i64 {
    let part = if sender_is_visitor { "visitor" } else { "user" };
    let parsed: Option<Value> = userset.and_then(|s| serde_json::from_str(s).ok());
    let v = parsed
        .as_ref()
        .and_then(|v| v.get("chatset"))
        .and_then(|c| c.get(part));
    let raw = match v {
        Some(Value::Object(o)) => o.get("sendCount").cloned(),
        Some(other) => Some(other.clone()),
        None => None,
    };
    let n = match raw {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(0.0) => 0,
        Some(2.0) => 2,
        _ => 1,
    }
}

/// `options`: percent-decoded then JSON-parsed; anything else → `null` (MR §2.1).
pub fn parse_options(raw: Option<&Value>) -> Value {
    let Some(Value::String(s)) = raw else {
        return Value::Null;
    };
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8();
    match decoded {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn valid_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// API 二十 (and the websocket `send` frame): checks, persistence, answer. Returns the stored
/// message object and its `conv_seq`.
pub async fn send(st: &AppState, me: &UserRow, req: SendRequest) -> Result<(Value, i64)> {
    if let Value::String(t) = &req.msg_type {
        if st.config.reserved_types.iter().any(|r| r == t) {
            return Err(Error::fail("消息类型不合法"));
        }
    }
    let mut client_id = req.client_msg_id.clone().filter(|c| valid_client_id(c));
    // One send at a time per (sender, conversation): the rules that read what was sent before
    // (one message before friendship, MR §5.1; the idempotency key, §7.2) and the append that
    // changes it cannot interleave with a parallel send on this node. The unique key on
    // (from_id, client_msg_id) makes the key hold across nodes too.
    let _serial = st
        .locks
        .lock(&format!(
            "send:{}:{}:{}",
            me.id, req.chat_type, req.sendto_id
        ))
        .await;
    if let Some(key) = &client_id {
        let since = time::now_ms() - 24 * 3600 * 1000;
        match timeline::by_client_msg_id(&st.db, me.id, key, i64::MIN).await? {
            Some(m) if m.create_time >= since => return stored_answer(&m),
            // Older than 24 h: the key no longer dedupes; the new message is stored without it.
            Some(_) => client_id = None,
            None => {}
        }
    }
    let sent = match req.chat_type.as_str() {
        "group" => crate::services::groups::send(st, me, req, client_id.clone()).await,
        _ => send_single(st, me, req, client_id.clone()).await,
    };
    match (sent, &client_id) {
        // A parallel send with the same key (another conversation, or another node) won the
        // unique key: answer what it stored, as a repeat would be answered.
        (Err(Error::Internal(e)), Some(key)) if is_unique_violation(&e) => {
            match timeline::by_client_msg_id(&st.db, me.id, key, i64::MIN).await? {
                Some(m) => stored_answer(&m),
                None => Err(Error::Internal(e)),
            }
        }
        (sent, _) => sent,
    }
}

fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .any(crate::store::is_unique_violation)
}

/// The answer to a repeated idempotency key: the original stored message.
fn stored_answer(m: &timeline::MessageRow) -> Result<(Value, i64)> {
    let body: Value = serde_json::from_str(&m.body).map_err(anyhow::Error::from)?;
    Ok((body, m.conv_seq))
}

/// S6: the per-sender limit of accepted messages (single and group).
pub async fn check_rate(st: &AppState, me: i64) -> Result<()> {
    let ok = st
        .limiter
        .try_hit(
            &format!("send:{me}"),
            st.config.send_rate_limit,
            Duration::from_secs(3600),
        )
        .await;
    if ok {
        Ok(())
    } else {
        Err(Error::fail("请求过于频繁，请1个小时后再试"))
    }
}

async fn send_single(
    st: &AppState,
    me: &UserRow,
    req: SendRequest,
    client_id: Option<String>,
) -> Result<(Value, i64)> {
    let r = users::active_by_id(&st.db, req.sendto_id)
        .await?
        .ok_or_else(|| Error::fail("对方不存在或者被禁用，不能发消息"))?;
    let visitor = me.is_visitor();
    let count = send_count(r.userset.as_deref(), visitor);
    let rel = friends::row(&st.db, r.id, me.id).await?;
    let (black, system, login_first, friend_first) = if visitor {
        (
            "对方把你拉黑了，不能发消息",
            "系统把你们拉黑了，不能发消息",
            "你们不是好友关系，对方设置成：先登录才能发消息",
            "",
        )
    } else {
        (
            "对方把你拉黑了，不能发送消息",
            "系统把你们拉黑了，不能发送消息",
            "",
            "对方设置成：需要您先成为他的好友才能发消息",
        )
    };
    match &rel {
        Some(x) if x.isblack != 0 => return Err(Error::fail(black)),
        Some(x) if x.status != 1 => return Err(Error::fail(system)),
        Some(_) => {}
        None if count == 0 => {
            return Err(Error::fail(if visitor {
                login_first
            } else {
                friend_first
            }));
        }
        None if count == 1 && timeline::has_sent(&st.db, me.id, r.id).await? => {
            return Err(Error::fail("在成为好友之前，对方只允许向他发一条消息"));
        }
        None => {}
    }
    check_rate(st, me.id).await?;
    // Names: each side's remark for the other, else nickname, else username (MR §2.1).
    let (from_name, to_name) = if visitor {
        (me.display_name().to_string(), r.display_name().to_string())
    } else {
        let mine = friends::row(&st.db, me.id, r.id).await?;
        let remark = |row: &Option<friends::FriendRow>| {
            row.as_ref()
                .map(|x| x.nickname.clone())
                .filter(|n| !n.is_empty())
        };
        (
            remark(&rel).unwrap_or_else(|| me.display_name().to_string()),
            remark(&mine).unwrap_or_else(|| r.display_name().to_string()),
        )
    };
    // No echo: a message to oneself is stored but delivered to nobody (MR §6.2 R7, MA19).
    let recipients = if r.id == me.id { vec![] } else { vec![r.id] };
    let out = Outgoing {
        chat_type: "single",
        conv_key: pair_key(me.id, r.id),
        from_name,
        from_avatar: me.avatar_str().to_string(),
        to_id: r.id,
        to_name,
        to_avatar: r.avatar_str().to_string(),
        group: None,
        recipients: Recipients::Users(recipients),
    };
    persist_chat(st, me, req, client_id, out).await
}

/// How a chat message is addressed and shown (MR §2.1 single or group column).
pub struct Outgoing {
    pub chat_type: &'static str,
    pub conv_key: String,
    pub from_name: String,
    pub from_avatar: String,
    pub to_id: i64,
    pub to_name: String,
    pub to_avatar: String,
    /// The S-msg snapshot of a group message.
    pub group: Option<Value>,
    pub recipients: Recipients,
}

/// Build the message object of MR §2.1 and append it (committed before this returns); returns
/// the stored object, which is also the HTTP answer, and its `conv_seq`.
pub async fn persist_chat(
    st: &AppState,
    me: &UserRow,
    req: SendRequest,
    client_id: Option<String>,
    out: Outgoing,
) -> Result<(Value, i64)> {
    let create_time = time::now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("from_avatar".into(), json!(out.from_avatar));
    m.insert("from_name".into(), json!(out.from_name));
    m.insert("from_id".into(), json!(me.id));
    m.insert("to_id".into(), json!(out.to_id));
    m.insert("to_name".into(), json!(out.to_name));
    m.insert("to_avatar".into(), json!(out.to_avatar));
    m.insert("chatType".into(), json!(out.chat_type));
    m.insert("type".into(), req.msg_type);
    m.insert("data".into(), req.data);
    m.insert("options".into(), req.options.unwrap_or(Value::Null));
    m.insert("create_time".into(), json!(create_time));
    m.insert("isremove".into(), json!(0));
    if let Some(g) = out.group {
        m.insert("group".into(), g);
    }
    m.insert("sendUUid".into(), json!(me.uuid));
    let msg = Value::Object(m);
    let ap = st
        .delivery
        .append(Append {
            conv_key: out.conv_key,
            msg_id: id,
            kind: KIND_CHAT,
            chat_type: out.chat_type,
            from_id: me.id,
            to_id: out.to_id,
            history: true,
            client_msg_id: client_id,
            create_time,
            body: msg.to_string(),
            recipients: out.recipients,
            revokes: None,
        })
        .await?;
    crate::telemetry::message_accepted();
    Ok((msg, ap.conv_seq))
}

/// A validated revoke request (API 三十二).
pub struct RevokeRequest {
    pub to_id: i64,
    pub id: String,
    pub chat_type: String,
}

/// API 三十二.
pub async fn revoke(st: &AppState, me: &UserRow, req: RevokeRequest) -> Result<Value> {
    let group_sender = if req.chat_type == "group" {
        Some(crate::services::groups::revoke_sender(st, me, req.to_id).await?)
    } else {
        None
    };
    let msg = timeline::chat_message(&st.db, &req.id)
        .await?
        .filter(|m| m.from_id == me.id && m.chat_type == req.chat_type && m.to_id == req.to_id)
        .ok_or_else(|| Error::fail("消息不存在，无法撤回"))?;
    if time::now_ms() - msg.create_time > 300_000 {
        return Err(Error::fail("消息超过5分钟，不能撤回"));
    }
    let stored: Value = serde_json::from_str(&msg.body).map_err(anyhow::Error::from)?;
    let (from_avatar, from_name, text) = match &group_sender {
        Some((gav, gdn)) => (gav.clone(), gdn.clone(), format!("{gdn} 撤回了一条消息")),
        None => (
            me.avatar_str().to_string(),
            me.display_name().to_string(),
            format!("{}撤回了一条消息", me.display_name()),
        ),
    };
    let notice = json!({
        "id": req.id,
        "from_avatar": from_avatar,
        "from_name": from_name,
        "from_id": me.id,
        "to_id": msg.to_id,
        "to_name": stored.get("to_name").cloned().unwrap_or(json!("")),
        "to_avatar": stored.get("to_avatar").cloned().unwrap_or(json!("")),
        "chatType": req.chat_type,
        "type": "systemNotice",
        "actionType": "revoke",
        "data": crate::services::notices::text_data(&text),
        "options": {},
        "create_time": time::now_ms(),
        "isremove": 0,
        "group": null,
    });
    if msg.revoked != 0 {
        return Ok(notice);
    }
    let recipients = if group_sender.is_some() {
        Recipients::Group(msg.to_id)
    } else {
        Recipients::Users(vec![msg.to_id])
    };
    st.delivery
        .append(Append {
            conv_key: msg.conv_key.clone(),
            msg_id: req.id.clone(),
            kind: KIND_REVOKE,
            chat_type: if group_sender.is_some() {
                "group"
            } else {
                "single"
            },
            from_id: me.id,
            to_id: msg.to_id,
            history: true,
            client_msg_id: None,
            create_time: notice["create_time"].as_i64().unwrap_or_default(),
            body: notice.to_string(),
            recipients,
            revokes: Some(msg.id),
        })
        .await?;
    Ok(notice)
}

/// EXTENSION §7.5: a page of a conversation's history in the caller's view.
pub async fn history(
    st: &AppState,
    me: &UserRow,
    chat_type: &str,
    id: i64,
    after: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Value> {
    let limit = limit.clamp(1, 100);
    let (key, from_seq) = if chat_type == "group" {
        let active = crate::store::groups::member(&st.db, id, me.id)
            .await?
            .is_some_and(|m| m.status == 1);
        let cursor = timeline::cursor_of(&st.db, id, me.id).await?;
        match (active, cursor) {
            (true, Some(c)) => (c.conv_key, c.join_seq),
            _ => return Err(Error::fail("你不在该群聊中，操作失败")),
        }
    } else {
        (pair_key(me.id, id), 1)
    };
    let rows = timeline::history(&st.db, &key, from_seq, after, before, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let rows: Vec<_> = if has_more {
        if after.is_some() {
            rows.into_iter().take(limit as usize).collect()
        } else {
            rows.into_iter().skip(1).collect()
        }
    } else {
        rows
    };
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut message: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            if r.revoked != 0 {
                message["isremove"] = json!(1);
                message["data"] = json!("");
            }
            json!({"conv_seq": r.conv_seq, "message": message})
        })
        .collect();
    let read_seq = timeline::read_seq(&st.db, me.id, &key).await?;
    Ok(json!({"items": items, "has_more": has_more, "read_seq": read_seq}))
}

/// EXTENSION §7.6: advance my read cursor; a single chat's peer hears of it on proto-2 sockets.
pub async fn read_cursor(
    st: &AppState,
    me: &UserRow,
    chat_type: &str,
    id: i64,
    seq: i64,
) -> Result<Value> {
    let key = if chat_type == "group" {
        let active = crate::store::groups::member(&st.db, id, me.id)
            .await?
            .is_some_and(|m| m.status == 1);
        if !active {
            return Err(Error::fail("你不在该群聊中，操作失败"));
        }
        crate::store::timeline::group_key(id)
    } else {
        pair_key(me.id, id)
    };
    let stored = timeline::set_read_seq(&st.db, me.id, &key, seq).await?;
    if chat_type == "single" {
        let f = json!({"type": "read", "chatType": "single", "id": me.id, "conv_seq": stored});
        st.delivery
            .send_proto2(id, std::sync::Arc::from(f.to_string()));
    }
    Ok(json!({"read_seq": stored}))
}
