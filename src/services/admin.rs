//! Operator actions of the back office and the CLI (AF §8, issue 13): create, edit, reset
//! password, delete (soft, with the groups of GR GD7, one transaction), dissolve and rename groups
//! through the owner's own service calls, and the operator revoke (MR §5.3 frame). Enable/disable
//! is `accounts::set_enabled`, the same call as `imrs admin ban`.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::services::{accounts, groups as group_rules, notices, passwords};
use crate::state::AppState;
use crate::store::groups::{self, GroupField};
use crate::store::timeline::{self, Append, Recipients, KIND_REVOKE};
use crate::store::tokens as token_store;
use crate::store::users;
use crate::{store, time};

const MISSING: &str = "该即时通讯用户不存在";

/// AF §8 create: `username` and `password` required, `avatar` optional; the `user_info` row too.
pub async fn create_user(
    st: &AppState,
    username: &str,
    password: &str,
    avatar: Option<&str>,
) -> Result<i64> {
    let username = username.trim();
    if username.is_empty() || username.chars().count() > 50 {
        return Err(Error::fail("用户名须为1到50个字符"));
    }
    if password.is_empty() {
        return Err(Error::fail("密码不能为空"));
    }
    if users::by_username(&st.db, username).await?.is_some() {
        return Err(Error::fail("即时通讯用户账号已存在"));
    }
    let hash = passwords::hash(password, st.config.argon2_memory_kib).await?;
    let mut tx = st.db.begin().await?;
    let id = accounts::create_user(&mut tx, username, &hash)
        .await
        .map_err(|e| match e {
            Error::Fail(_) => Error::fail("即时通讯用户账号已存在"),
            e => e,
        })?;
    tx.commit().await?;
    if let Some(a) = avatar.map(str::trim).filter(|a| !a.is_empty()) {
        set_avatar(st, id, a).await?;
    }
    Ok(id)
}

/// What an edit changes; `None` fields stay as they are (AF §8 update).
#[derive(Debug, Default)]
pub struct UserEdit {
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub password: Option<String>,
}

pub async fn edit_user(st: &AppState, id: i64, e: UserEdit) -> Result<()> {
    let u = users::by_id(&st.db, id)
        .await?
        .filter(|u| u.is_deleted == 0)
        .ok_or_else(|| Error::fail(MISSING))?;
    let taken = "该即时通讯用户账号已经存在，不能修改成该即时通讯用户账号";
    if let Some(name) = e
        .username
        .as_deref()
        .map(str::trim)
        .filter(|n| *n != u.username)
    {
        if name.is_empty() || name.chars().count() > 50 {
            return Err(Error::fail("用户名须为1到50个字符"));
        }
        if users::by_username(&st.db, name)
            .await?
            .is_some_and(|o| o.id != id)
        {
            return Err(Error::fail(taken));
        }
        let mut tx = st.db.begin().await?;
        store::admin::set_username(&mut tx, id, name)
            .await
            .map_err(|e| {
                if store::is_unique_violation(&e) {
                    Error::fail(taken)
                } else {
                    e.into()
                }
            })?;
        tx.commit().await?;
    }
    if let Some(n) = e.nickname.filter(|n| *n != u.nickname) {
        if n.encode_utf16().count() > 30 {
            return Err(Error::fail("昵称长度不能超过30个字符"));
        }
        users::set_column(&st.db, id, "nickname", Some(&n)).await?;
    }
    if let Some(a) = e.avatar.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        if Some(a) != u.avatar.as_deref() {
            set_avatar(st, id, a).await?;
        }
    }
    if let Some(pw) = e.password.filter(|p| !p.is_empty()) {
        reset_password(st, id, &pw).await?;
    }
    Ok(())
}

/// The avatar rule of API 三十四 (an http(s) or site-relative URL without markup characters).
async fn set_avatar(st: &AppState, id: i64, a: &str) -> Result<()> {
    let ok = (a.starts_with("http://")
        || a.starts_with("https://")
        || (a.starts_with('/') && !a.starts_with("//")))
        && a.encode_utf16().count() <= 1000
        && !a
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '<' | '>'));
    if !ok {
        return Err(Error::fail("头像地址不合法"));
    }
    users::set_column(&st.db, id, "avatar", Some(a)).await?;
    Ok(())
}

/// A new password (Argon2id); the user's sessions stay as they are.
pub async fn reset_password(st: &AppState, id: i64, password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::fail("密码不能为空"));
    }
    users::by_id(&st.db, id)
        .await?
        .filter(|u| u.is_deleted == 0)
        .ok_or_else(|| Error::fail(MISSING))?;
    let hash = passwords::hash(password, st.config.argon2_memory_kib).await?;
    users::set_column(&st.db, id, "password", Some(&hash)).await?;
    Ok(())
}

/// AF §8 delete, in one transaction: the row is marked deleted (`status 0, is_deleted 1`), every
/// token revoked, owned groups dissolved silently and other memberships removed (GR GD7); the
/// user's sockets get `你已被管理员禁用` + 4003 like a ban.
pub async fn delete_user(st: &AppState, id: i64) -> Result<()> {
    let mut tx = st.db.begin().await?;
    users::by_id_tx(&mut tx, id)
        .await?
        .filter(|u| u.is_deleted == 0)
        .ok_or_else(|| Error::fail(MISSING))?;
    store::admin::mark_deleted(&mut tx, id).await?;
    token_store::lock_session(&mut tx, id).await?;
    token_store::revoke_all(&mut tx, id).await?;
    let ended = store::admin::drop_user_groups(&mut tx, id).await?;
    store::admin::record(&mut tx, id, "disable").await?;
    tx.commit().await?;
    st.delivery.user_disabled(id);
    for (g, u) in ended {
        st.delivery.member_left(g, u);
    }
    Ok(())
}

/// Enable or disable (the CLI's `ban`/`unban`).
/// Returns once every running node has applied it (the effect is immediate everywhere).
pub async fn set_enabled(st: &AppState, id: i64, enabled: bool) -> Result<()> {
    match accounts::set_enabled(st, id, enabled).await? {
        Some(event) => {
            if !crate::wait_for_nodes(&st.db, event, std::time::Duration::from_secs(10)).await {
                tracing::warn!(
                    user = id,
                    "a running node has not applied the change within 10 s"
                );
            }
            Ok(())
        }
        None => Err(Error::fail(MISSING)),
    }
}

async fn live_group(st: &AppState, id: i64) -> Result<(groups::GroupRow, users::UserRow)> {
    let g = groups::by_id(&st.db, id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(|| Error::fail("群不存在"))?;
    let owner = users::by_id(&st.db, g.user_id)
        .await?
        .ok_or_else(|| Error::fail("群主不存在"))?;
    Ok((g, owner))
}

/// Dissolve a group as its owner would (API 二十八: G-dissolve to every member, GD7).
pub async fn dissolve_group(st: &AppState, id: i64) -> Result<()> {
    let (_, owner) = live_group(st, id).await?;
    group_rules::delete_or_quit(st, &owner, id).await
}

/// Rename a group as its owner would (API 二十五: G-rename to the members).
pub async fn rename_group(st: &AppState, id: i64, name: &str) -> Result<()> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return Err(Error::fail("群名称须为1到50个字符"));
    }
    let (_, owner) = live_group(st, id).await?;
    group_rules::owner_edit(st, &owner, id, GroupField::Name, name).await
}

/// Operator revoke of any chat message: the N-revoke of MR §5.3 built from the stored message,
/// with the operator as the revoking name, to the same recipients as a sender's revoke (single:
/// the receiver; group: every active member). No 5-minute rule. Answers the notice.
pub async fn revoke_message(st: &AppState, operator: &str, msg_id: &str) -> Result<Value> {
    let msg = timeline::chat_message(&st.db, msg_id)
        .await?
        .ok_or_else(|| Error::fail("消息不存在，无法撤回"))?;
    let stored: Value = serde_json::from_str(&msg.body).map_err(anyhow::Error::from)?;
    let now = time::now_ms();
    let notice = json!({
        "id": msg_id,
        "from_avatar": stored.get("from_avatar").cloned().unwrap_or(json!("")),
        "from_name": "管理员",
        "from_id": msg.from_id,
        "to_id": msg.to_id,
        "to_name": stored.get("to_name").cloned().unwrap_or(json!("")),
        "to_avatar": stored.get("to_avatar").cloned().unwrap_or(json!("")),
        "chatType": msg.chat_type,
        "type": "systemNotice",
        "actionType": "revoke",
        "data": notices::text_data("管理员撤回了一条消息"),
        "options": {},
        "create_time": now,
        "isremove": 0,
        "group": null,
        "operator": operator,
    });
    if msg.revoked != 0 {
        return Ok(notice);
    }
    let group = msg.chat_type == "group";
    st.delivery
        .append(Append {
            conv_key: msg.conv_key.clone(),
            msg_id: msg_id.to_string(),
            kind: KIND_REVOKE,
            chat_type: if group { "group" } else { "single" },
            from_id: msg.from_id,
            to_id: msg.to_id,
            history: true,
            client_msg_id: None,
            create_time: now,
            body: notice.to_string(),
            recipients: if group {
                Recipients::Group(msg.to_id)
            } else {
                Recipients::Users(vec![msg.to_id])
            },
            revokes: Some(msg.id),
        })
        .await?;
    Ok(notice)
}
