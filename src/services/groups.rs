//! Groups (GR): the group rules used by messaging — group display names and avatars, the S-msg
//! snapshot, group sending (MR §5.1 group branch) and the revoke checks (MR §5.3 steps 3–4).

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::services::messaging::{check_rate, SendRequest};
use crate::state::AppState;
use crate::store::groups::{self, GroupRow, MemberRow};
use crate::store::timeline::{group_key, Append, Recipients, KIND_CHAT};
use crate::store::users::{self, UserRow};
use crate::time;

/// `gdn(m)`: group nickname, else `dn(user)`.
pub fn gdn(m: &MemberRow, u: &UserRow) -> String {
    if m.nickname.is_empty() {
        u.display_name().to_string()
    } else {
        m.nickname.clone()
    }
}

/// `gav(m)`: member avatar, else the user's avatar (`''` when NULL).
pub fn gav(m: &MemberRow, u: Option<&UserRow>) -> String {
    if m.avatar.is_empty() {
        u.map(|u| u.avatar_str().to_string()).unwrap_or_default()
    } else {
        m.avatar.clone()
    }
}

/// The group columns of GR §2.1 as JSON, optionally without some keys.
pub fn group_json(st: &AppState, g: &GroupRow, skip: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !skip.contains(&k) {
            m.insert(k.to_string(), v);
        }
    };
    put(
        "create_time",
        json!(time::local(&g.create_time, &st.config.display_tz)),
    );
    put("id", json!(g.id));
    put("uuid", json!(g.uuid));
    put("user_id", json!(g.user_id));
    put("name", json!(g.name));
    put("avatar", json!(g.avatar));
    put("remark", json!(g.remark));
    put("invite_confirm", json!(g.invite_confirm));
    put("status", json!(g.status));
    put("order", json!(g.order));
    put("update_time", json!(time::iso(&g.update_time)));
    m
}

/// S-msg (MR §2.3): every group column plus the active member rows with seven fields.
pub fn snapshot_msg(st: &AppState, g: &GroupRow, active: &[MemberRow]) -> Value {
    let mut m = group_json(st, g, &[]);
    let rows: Vec<Value> = active
        .iter()
        .map(|r| {
            json!({"id": r.id, "group_id": r.group_id, "user_id": r.user_id, "nickname": r.nickname,
                   "avatar": r.avatar, "status": r.status, "order": r.order})
        })
        .collect();
    m.insert("group_users".into(), Value::Array(rows));
    Value::Object(m)
}

/// MR §5.1 group branch.
pub async fn send(
    st: &AppState,
    me: &UserRow,
    req: SendRequest,
    client_id: Option<String>,
) -> Result<(Value, i64)> {
    let refused = || Error::fail("群不存在或者已解散或者被封禁，无法发消息");
    let g = groups::by_id(&st.db, req.sendto_id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(refused)?;
    let active = groups::members(&st.db, g.id, true).await?;
    if active.is_empty() {
        return Err(refused());
    }
    let mine = active
        .iter()
        .find(|m| m.user_id == me.id)
        .ok_or_else(|| Error::fail("您不在群里，无法发消息"))?;
    check_rate(st, me.id).await?;
    let create_time = time::now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("from_avatar".into(), json!(gav(mine, Some(me))));
    m.insert("from_name".into(), json!(gdn(mine, me)));
    m.insert("from_id".into(), json!(me.id));
    m.insert("to_id".into(), json!(g.id));
    m.insert("to_name".into(), json!(g.name));
    m.insert("to_avatar".into(), json!(g.avatar));
    m.insert("chatType".into(), json!("group"));
    m.insert("type".into(), req.msg_type);
    m.insert("data".into(), req.data);
    m.insert("options".into(), req.options.unwrap_or(Value::Null));
    m.insert("create_time".into(), json!(create_time));
    m.insert("isremove".into(), json!(0));
    m.insert("group".into(), snapshot_msg(st, &g, &active));
    m.insert("sendUUid".into(), json!(me.uuid));
    let msg = Value::Object(m);
    let ap = st
        .delivery
        .append(Append {
            conv_key: group_key(g.id),
            msg_id: id,
            kind: KIND_CHAT,
            chat_type: "group",
            from_id: me.id,
            to_id: g.id,
            history: true,
            client_msg_id: client_id,
            create_time,
            body: msg.to_string(),
            recipients: Recipients::Group(g.id),
            revokes: None,
        })
        .await?;
    Ok((msg, ap.conv_seq))
}

/// MR §5.3 steps 3–4: the group must exist and the caller have a member row; returns the caller's
/// group avatar and display name for the revoke notice.
pub async fn revoke_sender(st: &AppState, me: &UserRow, group_id: i64) -> Result<(String, String)> {
    groups::by_id(&st.db, group_id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(|| Error::fail("群不存在"))?;
    let m = groups::member(&st.db, group_id, me.id)
        .await?
        .ok_or_else(|| Error::fail("你不在该群聊中，操作失败"))?;
    let fresh = users::by_id(&st.db, me.id)
        .await?
        .unwrap_or_else(|| me.clone());
    Ok((gav(&m, Some(&fresh)), gdn(&m, &fresh)))
}
