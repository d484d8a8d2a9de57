//! Groups (GR): the twelve group endpoints with their checks, notices and snapshots (§3–§6), and
//! the group rules messaging uses — display names and avatars, the S-msg snapshot, group sending
//! (MR §5.1 group branch) and the revoke checks (MR §5.3 steps 3–4).

use std::collections::HashMap;
use std::time::Duration;

use qrcode::bits::Bits;
use qrcode::{EcLevel, QrCode, Version};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::services::accounts::wire_role;
use crate::services::messaging::{check_rate, persist_chat, Outgoing, SendRequest};
use crate::services::notices::{self, encode_uri_component, text_data, GROUP_ICON};
use crate::services::Page;
use crate::state::AppState;
use crate::store::groups::{self, GroupField, GroupRow, MemberRow};
use crate::store::timeline::{self, group_key, Append, Recipients, KIND_NOTICE};
use crate::store::users::{self, UserRow};
use crate::store::Tx;
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
    // The sender's own active row proves the group has an active member (MR §5.1 steps 1–2).
    let mine = groups::member(&st.db, g.id, me.id)
        .await?
        .filter(|m| m.status == 1);
    let Some(mine) = mine else {
        return match groups::members_first(&st.db, g.id, 1).await?.is_empty() {
            true => Err(refused()),
            false => Err(Error::fail("您不在群里，无法发消息")),
        };
    };
    let mine = &mine;
    // S-msg lists the active members; beyond `group_snapshot_members` only the first ones (the
    // client reads only user_id/remark/invite_confirm of it; a 10,000-row list per message
    // would make fan-out cost O(members²) bytes).
    let cap = st.config.group_snapshot_members as i64;
    let active = groups::members_first(&st.db, g.id, cap).await?;
    check_rate(st, me.id).await?;
    let out = Outgoing {
        chat_type: "group",
        conv_key: group_key(g.id),
        from_name: gdn(mine, me),
        from_avatar: gav(mine, Some(me)),
        to_id: g.id,
        to_name: g.name.clone(),
        to_avatar: g.avatar.clone(),
        group: Some(snapshot_msg(st, &g, &active)),
        recipients: Recipients::Group(g.id),
    };
    persist_chat(st, me, req, client_id, out).await
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

// ----- the twelve endpoints (GR §5, §6) -----

const JOINED: &str = "用户已经在群里";
const APPLIED: &str = "已申请加入群聊，正在等待群主同意";
const NOT_OWNER_OR_GONE: &str = "群不存在或者被封禁或者你无权操作";

/// The step-4 text of API 三十六 for an existing member row of this status.
fn already_in(status: i64) -> Error {
    Error::fail(if status == 2 { APPLIED } else { JOINED })
}

/// A member row with every column, optionally without some keys, plus the ORM's `groupId` (GR §2.2).
fn member_json(st: &AppState, m: &MemberRow, skip: &[&str]) -> Map<String, Value> {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        if !skip.contains(&k) {
            o.insert(k.to_string(), v);
        }
    };
    put(
        "create_time",
        json!(time::local(&m.create_time, &st.config.display_tz)),
    );
    put("id", json!(m.id));
    put("group_id", json!(m.group_id));
    put("user_id", json!(m.user_id));
    put("nickname", json!(m.nickname));
    put("avatar", json!(m.avatar));
    put("status", json!(m.status));
    put("order", json!(m.order));
    put("update_time", json!(time::iso(&m.update_time)));
    o.insert("groupId".into(), json!(m.group_id));
    o
}

/// The users of these member rows by id; rows whose user is gone have no entry (GR §4.2, §5.3).
async fn users_of(st: &AppState, rows: &[MemberRow]) -> Result<HashMap<i64, UserRow>> {
    let ids: Vec<i64> = rows.iter().map(|m| m.user_id).collect();
    Ok(users::by_ids(&st.db, &ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect())
}

fn with_group_users(mut g: Map<String, Value>, rows: Vec<Value>) -> Value {
    g.insert("group_users".into(), Value::Array(rows));
    Value::Object(g)
}

/// S2: all group columns after the change; active rows as `{group_id, user_id, nickname, avatar}`.
fn snapshot_s2(
    st: &AppState,
    g: &GroupRow,
    active: &[MemberRow],
    users: &HashMap<i64, UserRow>,
) -> Value {
    let rows = active
        .iter()
        .filter(|m| users.contains_key(&m.user_id))
        .map(|m| json!({"group_id": m.group_id, "user_id": m.user_id, "nickname": m.nickname, "avatar": m.avatar}))
        .collect();
    with_group_users(group_json(st, g, &[]), rows)
}

/// S3: group without `order`/`update_time`, the owner as `user`, every member row before the join.
fn snapshot_s3(
    st: &AppState,
    g: &GroupRow,
    rows: &[MemberRow],
    users: &HashMap<i64, UserRow>,
    owner: Option<&UserRow>,
) -> Value {
    let brief = |u: &UserRow| json!({"username": u.username, "nickname": u.nickname, "avatar": u.avatar_str()});
    let mut m = group_json(st, g, &["order", "update_time"]);
    m.insert(
        "user".into(),
        owner
            .map(brief)
            .unwrap_or_else(|| json!({"username": "", "nickname": "", "avatar": ""})),
    );
    let rows = rows
        .iter()
        .filter_map(|r| {
            let u = users.get(&r.user_id)?;
            Some(
                json!({"nickname": r.nickname, "avatar": r.avatar, "user_id": r.user_id,
                        "status": r.status, "user": brief(u)}),
            )
        })
        .collect();
    with_group_users(m, rows)
}

/// S4: group without `order`/`update_time`; the active rows before the approval with `groupId`.
fn snapshot_s4(
    st: &AppState,
    g: &GroupRow,
    active: &[MemberRow],
    users: &HashMap<i64, UserRow>,
) -> Value {
    let rows = active
        .iter()
        .filter(|m| users.contains_key(&m.user_id))
        .map(|m| Value::Object(member_json(st, m, &["order", "update_time"])))
        .collect();
    with_group_users(group_json(st, g, &["order", "update_time"]), rows)
}

/// S5: group without `update_time`; every member row before the change, each with its `user`.
fn snapshot_s5(
    st: &AppState,
    g: &GroupRow,
    rows: &[MemberRow],
    users: &HashMap<i64, UserRow>,
) -> Value {
    let rows = rows
        .iter()
        .filter_map(|r| {
            let u = users.get(&r.user_id)?;
            let mut o = member_json(st, r, &["update_time"]);
            o.insert(
                "user".into(),
                json!({"id": u.id, "username": u.username, "avatar": u.avatar_str(), "nickname": u.nickname}),
            );
            Some(Value::Object(o))
        })
        .collect();
    with_group_users(group_json(st, g, &["update_time"]), rows)
}

/// Who a group notice shows as its sender.
struct Sender {
    id: Value,
    name: String,
    avatar: String,
}

impl Sender {
    fn member(m: &MemberRow, u: &UserRow) -> Sender {
        Sender {
            id: json!(u.id),
            name: gdn(m, u),
            avatar: gav(m, Some(u)),
        }
    }
    /// The system sender of join notices (GR §4.1).
    fn join_system(id: &str, name: &str) -> Sender {
        Sender {
            id: json!(id),
            name: name.to_string(),
            avatar: GROUP_ICON.to_string(),
        }
    }
}

/// A group notice (GR §4.1) addressed to the group with the given `to_avatar` and `to_name`.
fn group_notice(
    from: &Sender,
    g: &GroupRow,
    to_name: &str,
    to_avatar: &str,
    text: &str,
    now: i64,
    snapshot: Value,
) -> Value {
    notices::notice(&[
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("from_avatar", json!(from.avatar)),
        ("from_name", json!(from.name)),
        ("from_id", from.id.clone()),
        ("to_id", json!(g.id)),
        ("to_name", json!(to_name)),
        ("to_avatar", json!(to_avatar)),
        ("chatType", json!("group")),
        ("type", json!("systemNotice")),
        ("data", text_data(text)),
        ("options", json!({})),
        ("create_time", json!(now)),
        ("isremove", json!(0)),
        ("group", snapshot),
    ])
}

/// Append a group notice once to the group's timeline: every member active at commit receives it
/// through their cursor (GD8), or, for `Recipients::Users`, exactly those users.
async fn append_group_notice(
    st: &AppState,
    group_id: i64,
    notice: &Value,
    recipients: Recipients,
) -> Result<()> {
    st.delivery
        .append(Append {
            conv_key: group_key(group_id),
            msg_id: notice["id"].as_str().unwrap_or_default().to_string(),
            kind: KIND_NOTICE,
            chat_type: "group",
            from_id: notice["from_id"].as_i64().unwrap_or(0),
            to_id: group_id,
            history: true,
            client_msg_id: None,
            create_time: notice["create_time"].as_i64().unwrap_or_else(time::now_ms),
            body: notice.to_string(),
            recipients,
            revokes: None,
        })
        .await?;
    Ok(())
}

/// Recompute the mosaic (GR §2.4) in the caller's transaction; unchanged when nobody is active.
async fn recompute_mosaic(tx: &mut Tx, group_id: i64) -> Result<()> {
    let slots = groups::mosaic_slots(tx, group_id).await?;
    if slots.is_empty() {
        return Ok(());
    }
    let avatar = slots
        .into_iter()
        .map(|(member, user)| {
            if member.is_empty() {
                user.unwrap_or_default()
            } else {
                member
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    groups::set_field(tx, group_id, GroupField::Avatar, avatar).await?;
    Ok(())
}

/// The first `max` UTF-16 code units of `s`, never splitting a surrogate pair (GR §2.4).
fn truncate_utf16(s: &str, max: usize) -> String {
    let mut units = 0;
    s.chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= max
        })
        .collect()
}

/// API 二十一. `row_ids` are the caller's `goodfriend` row ids.
pub async fn create(st: &AppState, me: &UserRow, row_ids: &[i64]) -> Result<()> {
    let mut row_ids = row_ids.to_vec();
    row_ids.sort_unstable();
    row_ids.dedup();
    let mut candidates = groups::friend_ids_of_rows(&st.db, me.id, &row_ids).await?;
    if candidates.is_empty() {
        return Err(Error::fail("请选择加入群聊的用户"));
    }
    candidates.retain(|id| *id != me.id);
    candidates.sort_unstable();
    candidates.dedup();
    let mut others: Vec<UserRow> = users::by_ids(&st.db, &candidates)
        .await?
        .into_iter()
        .filter(|u| u.status == 1)
        .collect();
    if others.is_empty() {
        return Err(Error::fail("用户不存在，无法加入群聊"));
    }
    if 1 + others.len() as u64 > st.config.group_max_members {
        return Err(Error::fail("群成员已达上限"));
    }
    others.sort_by_key(|u| u.id);
    let all: Vec<&UserRow> = std::iter::once(me).chain(others.iter()).collect();
    let names: Vec<&str> = all.iter().map(|u| u.display_name()).collect();
    let name = truncate_utf16(&names.join("、"), 50);
    let avatar = all
        .iter()
        .take(9)
        .map(|u| u.avatar_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut tx = st.db.begin().await?;
    let gid = groups::insert_group(&mut tx, me.id, &name, &avatar).await?;
    for u in &all {
        groups::insert_member(&mut tx, gid, u.id, 1).await?;
        timeline::open_cursor(&mut tx, gid, u.id).await?;
    }
    let g = groups::by_id_tx(&mut tx, gid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("group {gid} vanished inside its own transaction"))?;
    tx.commit().await?;
    for u in &all {
        st.delivery.member_joined(gid, u.id);
    }
    let from = Sender {
        id: json!(me.id),
        name: me.display_name().to_string(),
        avatar: me.avatar_str().to_string(),
    };
    let text = format!("{}创建了一个群，大家可以开始聊天了", me.display_name());
    let notice = group_notice(
        &from,
        &g,
        &g.name,
        &g.avatar,
        &text,
        time::now_ms(),
        Value::Object(group_json(st, &g, &[])),
    );
    append_group_notice(st, gid, &notice, Recipients::Group(gid)).await
}

/// API 二十三.
pub async fn list(st: &AppState, me: &UserRow, page: Page) -> Result<Value> {
    let rows = groups::my_groups(&st.db, me.id, page.limit, page.offset).await?;
    let items = rows
        .into_iter()
        .map(|r| {
            let mine = json!({"group_id": r.group.id, "user_id": me.id,
                              "nickname": r.my_nickname, "avatar": r.my_avatar});
            with_group_users(group_json(st, &r.group, &["update_time"]), vec![mine])
        })
        .collect();
    Ok(Value::Array(items))
}

/// API 二十四 (no membership required, GA18).
pub async fn info(st: &AppState, id: i64) -> Result<Value> {
    let g = groups::by_id(&st.db, id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(|| Error::fail("群不存在或被封禁"))?;
    let active = groups::members(&st.db, id, true).await?;
    let users = users_of(st, &active).await?;
    let rows = active
        .iter()
        .filter_map(|m| {
            let u = users.get(&m.user_id)?;
            let mut o = member_json(st, m, &["update_time"]);
            o.insert(
                "user".into(),
                json!({"id": u.id, "username": u.username, "avatar": u.avatar_str(),
                       "nickname": u.nickname, "uuid": u.uuid, "role": wire_role(&u.role)}),
            );
            Some(Value::Object(o))
        })
        .collect();
    Ok(with_group_users(group_json(st, &g, &["update_time"]), rows))
}

/// APIs 二十五 / 二十六: an owner-only edit of `name` or `remark`, then G-rename / G-remark (S2)
/// to the active members.
pub async fn owner_edit(
    st: &AppState,
    me: &UserRow,
    id: i64,
    field: GroupField,
    value: &str,
) -> Result<()> {
    let denied = match field {
        GroupField::Name => "只有群主才能修改群名称",
        _ => "只有群主才能修改群公告",
    };
    let mut tx = st.db.begin().await?;
    groups::by_id_tx(&mut tx, id)
        .await?
        .filter(|g| g.status == 1 && g.user_id == me.id)
        .ok_or_else(|| Error::fail(denied))?;
    let mine = groups::member_tx(&mut tx, id, me.id)
        .await?
        .ok_or_else(|| Error::fail("无法通知群成员"))?;
    groups::set_field(&mut tx, id, field, value).await?;
    let g = groups::by_id_tx(&mut tx, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("group {id} vanished inside its own transaction"))?;
    let active = groups::members_tx(&mut tx, id, true).await?;
    tx.commit().await?;
    let users = users_of(st, &active).await?;
    let text = match field {
        GroupField::Name => format!("群名称修改为：{value}"),
        _ => format!("[公告] \n\n {value}"),
    };
    let notice = group_notice(
        &Sender::member(&mine, me),
        &g,
        &g.name,
        &g.avatar,
        &text,
        time::now_ms(),
        snapshot_s2(st, &g, &active, &users),
    );
    append_group_notice(st, id, &notice, Recipients::Group(id)).await
}

/// API 二十七 (the group's own status is not checked).
pub async fn set_nickname(st: &AppState, me: &UserRow, id: i64, nickname: &str) -> Result<()> {
    let denied = || Error::fail("你不在该群聊中，无法修改昵称");
    groups::member(&st.db, id, me.id)
        .await?
        .filter(|m| m.status == 1)
        .ok_or_else(denied)?;
    // Checked first: MySQL reports 0 affected rows when nothing changes.
    groups::set_member_nickname(&st.db, id, me.id, nickname).await?;
    Ok(())
}

/// API 二十八: the owner dissolves (G-dissolve to every member row), anyone else quits (G-quit to
/// the owner). Dissolving is soft: `status 0` and no member rows (GA11, GD7).
pub async fn delete_or_quit(st: &AppState, me: &UserRow, id: i64) -> Result<()> {
    let mut tx = st.db.begin().await?;
    let g = groups::by_id_tx(&mut tx, id)
        .await?
        .filter(|g| g.status != 0)
        .ok_or_else(|| Error::fail("群不存在"))?;
    let rows = groups::members_tx(&mut tx, id, false).await?;
    let mine = rows
        .iter()
        .find(|m| m.user_id == me.id)
        .cloned()
        .ok_or_else(|| Error::fail("你不在该群聊中，操作失败"))?;
    let dissolve = g.user_id == me.id;
    let left: Vec<i64> = if dissolve {
        groups::set_field(&mut tx, id, GroupField::Status, 0_i64).await?;
        groups::delete_members(&mut tx, id).await?;
        rows.iter()
            .filter(|m| m.status == 1)
            .map(|m| m.user_id)
            .collect()
    } else {
        groups::delete_member(&mut tx, id, me.id).await?;
        if mine.status == 1 {
            vec![me.id]
        } else {
            vec![]
        }
    };
    // Until the removal commits, the leaving members' entries of this group come from the
    // store (which knows where the membership ends), never live (R8).
    let leaving = Leaving::new(st, id, &left);
    for u in &left {
        timeline::close_cursor(&mut tx, id, *u).await?;
    }
    tx.commit().await?;
    leaving.committed();
    let users = users_of(st, &rows).await?;
    let now = time::now_ms();
    let at = time::local_slash(now, &st.config.display_tz);
    let from = Sender::member(&mine, me);
    let text = if dissolve {
        format!("群主于 {at} 解散了该群")
    } else {
        format!("{}于 {at} 已退出群聊", from.name)
    };
    let notice = group_notice(
        &from,
        &g,
        &g.name,
        &g.avatar,
        &text,
        now,
        snapshot_s5(st, &g, &rows, &users),
    );
    if dissolve {
        let everyone = rows.iter().map(|m| m.user_id).collect();
        append_group_notice(st, id, &notice, Recipients::Users(everyone)).await
    } else {
        notices::notify_user(st, g.user_id, &notice, true).await
    }
}

/// API 三十五: no notice to anyone (GA12); the mosaic is recomputed even when nothing was removed.
pub async fn remove_member(st: &AppState, me: &UserRow, group_id: i64, user_id: i64) -> Result<()> {
    let mut tx = st.db.begin().await?;
    groups::by_id_tx(&mut tx, group_id)
        .await?
        .filter(|g| g.status != 0 && g.user_id == me.id)
        .ok_or_else(|| Error::fail("只有群主才能操作"))?;
    if user_id == me.id {
        return Err(Error::fail("群主不能删除自己"));
    }
    let row = groups::member_tx(&mut tx, group_id, user_id).await?;
    let was_active = row.as_ref().is_some_and(|r| r.status == 1);
    let removed: &[i64] = if was_active { &[user_id] } else { &[] };
    let leaving = Leaving::new(st, group_id, removed);
    if row.is_some() {
        groups::delete_member(&mut tx, group_id, user_id).await?;
    }
    if was_active {
        timeline::close_cursor(&mut tx, group_id, user_id).await?;
    }
    recompute_mosaic(&mut tx, group_id).await?;
    tx.commit().await?;
    leaving.committed();
    Ok(())
}

/// Members being removed from a group by a transaction that has not committed yet: delivery is
/// told before the commit ([`crate::delivery::Delivery::member_leaving`]) and after it (`committed`,
/// or, if the transaction fails, on drop: they stay).
struct Leaving<'a> {
    st: &'a AppState,
    group: i64,
    users: Vec<i64>,
    done: bool,
}

impl<'a> Leaving<'a> {
    fn new(st: &'a AppState, group: i64, users: &[i64]) -> Leaving<'a> {
        for u in users {
            st.delivery.member_leaving(group, *u);
        }
        Leaving {
            st,
            group,
            users: users.to_vec(),
            done: false,
        }
    }

    fn committed(mut self) {
        self.done = true;
        for u in &self.users {
            self.st.delivery.member_left(self.group, *u);
        }
    }
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if !self.done {
            for u in &self.users {
                self.st.delivery.member_stays(self.group, *u);
            }
        }
    }
}

/// API 三十七.
pub async fn set_join_mode(st: &AppState, me: &UserRow, group_id: i64, mode: i64) -> Result<()> {
    let mut tx = st.db.begin().await?;
    groups::by_id_tx(&mut tx, group_id)
        .await?
        .filter(|g| g.status == 1 && g.user_id == me.id)
        .ok_or_else(|| Error::fail(NOT_OWNER_OR_GONE))?;
    groups::set_field(&mut tx, group_id, GroupField::InviteConfirm, mode).await?;
    tx.commit().await?;
    Ok(())
}

/// A validated API 三十六 request.
pub struct InviteRequest {
    pub group_id: i64,
    pub user_id: i64,
    pub inviteuser_id: i64,
    pub desc: String,
}

/// What API 三十六 answers on success.
pub enum Joined {
    Direct,
    Pending,
}

/// API 三十六 (§5.11): the effective inviter is the caller when inviting someone else, and only the
/// owner's own invitations bypass approval (GD2, GD3); checks, then one insert with the final status.
pub async fn invite(st: &AppState, me: &UserRow, req: InviteRequest) -> Result<Joined> {
    let mut tx = st.db.begin().await?;
    let g = groups::by_id_tx(&mut tx, req.group_id)
        .await?
        .filter(|g| g.status == 1)
        .ok_or_else(|| Error::fail("群不存在或者被封禁"))?;
    let before = groups::members_tx(&mut tx, g.id, false).await?;
    let active = |uid: i64| before.iter().find(|m| m.user_id == uid && m.status == 1);
    let self_join = req.user_id == me.id;
    let (inviter, owner_invite) = if self_join {
        let i = req.inviteuser_id;
        let row = if i > 0 && i != me.id { active(i) } else { None };
        (row.cloned(), false)
    } else {
        let mine = active(me.id).ok_or_else(|| Error::fail("你不在该群聊中，操作失败"))?;
        (Some(mine.clone()), me.id == g.user_id)
    };
    if let Some(r) = before.iter().find(|m| m.user_id == req.user_id) {
        return Err(already_in(r.status));
    }
    let joiner = users::active_by_id(&st.db, req.user_id)
        .await?
        .ok_or_else(|| Error::fail("加群的用户不存在或已被封禁，无法加入群聊"))?;
    if g.invite_confirm == 2 && !owner_invite && joiner.is_visitor() {
        return Err(Error::fail("请先登录再申请进群"));
    }
    if before.len() as u64 >= st.config.group_max_members {
        return Err(Error::fail("群成员已达上限"));
    }
    let (key, limit) = if self_join {
        (format!("group-join:{}", me.id), st.config.group_join_limit)
    } else {
        (
            format!("group-invite:{}", me.id),
            st.config.group_invite_limit,
        )
    };
    if !st
        .limiter
        .try_hit(&key, limit, Duration::from_secs(3600))
        .await
    {
        return Err(Error::fail("请求过于频繁，请1个小时后再试"));
    }
    let pending = g.invite_confirm == 1 && !owner_invite;
    let status = if pending { 2 } else { 1 };
    if groups::insert_member(&mut tx, g.id, joiner.id, status)
        .await?
        .is_none()
    {
        let existing = groups::member_tx(&mut tx, g.id, joiner.id).await?;
        return Err(already_in(existing.map(|r| r.status).unwrap_or(1)));
    }
    if !pending {
        timeline::open_cursor(&mut tx, g.id, joiner.id).await?;
        recompute_mosaic(&mut tx, g.id).await?;
    }
    tx.commit().await?;
    if !pending {
        st.delivery.member_joined(g.id, joiner.id);
    }

    let mut users = users_of(st, &before).await?;
    if !users.contains_key(&g.user_id) {
        if let Some(u) = users::by_id(&st.db, g.user_id).await? {
            users.insert(u.id, u);
        }
    }
    let inviter = inviter.and_then(|row| users.get(&row.user_id).map(|u| (row, u)));
    let prefix = match &inviter {
        Some((row, u)) if !u.is_visitor() => format!("[{}]邀请 ", gdn(row, u)),
        _ => String::new(),
    };
    let now = time::now_ms();
    let system_id = format!("redirect-applyAddGroup{}-{}-{now}", g.id, joiner.id);
    let owner = users.get(&g.user_id);
    let snapshot = snapshot_s3(st, &g, &before, &users, owner);
    let joined_text = format!("{prefix}[{}] 加入了群聊", joiner.display_name());
    if !pending {
        let from = Sender::join_system(&system_id, "加群申请提醒");
        let notice = group_notice(&from, &g, &g.name, &g.avatar, &joined_text, now, snapshot);
        append_group_notice(st, g.id, &notice, Recipients::Group(g.id)).await?;
        return Ok(Joined::Direct);
    }

    let desc = notices::notice(&[
        (
            "addGroupUserType",
            json!(if inviter.is_some() {
                "邀请进群"
            } else {
                "用户自主进群"
            }),
        ),
        ("inviteUser", json!(invite_user_text(&prefix))),
        ("addGroupTime", json!(now)),
        ("addGroupDesc", json!(req.desc)),
        ("addGroupUserRole", json!(wire_role(&joiner.role))),
        ("msgidKey", json!(system_id)),
    ]);
    let url = format!(
        "/pages/setpageInfo/setpageInfo?action=applyAddGroup&title=%E5%8A%A0%E7%BE%A4%E7%94%B3%E8%AF%B7\
&id={}&name={}&avatar={}&chatType=group&applyUserid={}&applyUsername={}&applyUseruuid={}\
&applyUseravatar={}&applydesc={}",
        g.id,
        encode_uri_component(&g.name),
        encode_uri_component(&g.avatar),
        joiner.id,
        raw_slot(joiner.display_name()),
        joiner.uuid,
        encode_uri_component(joiner.avatar_str()),
        encode_uri_component(&desc.to_string()),
    );
    let owner_row = before.iter().find(|m| m.user_id == g.user_id);
    let (to_name, to_avatar) = match (owner_row, owner) {
        (Some(m), Some(u)) => (gdn(m, u), gav(m, Some(u))),
        (None, Some(u)) => (u.display_name().to_string(), u.avatar_str().to_string()),
        (_, None) => (String::new(), String::new()),
    };
    let notice = notices::notice(&[
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("from_avatar", json!(GROUP_ICON)),
        ("from_name", json!("加群处理")),
        ("from_id", json!(system_id)),
        ("to_id", json!(g.user_id)),
        ("to_name", json!(to_name)),
        ("to_avatar", json!(to_avatar)),
        ("chatType", json!("single")),
        ("type", json!("text")),
        (
            "data",
            text_data(&format!(
                "请处理申请 {prefix}[{}] 加入了群[{}]",
                joiner.display_name(),
                g.name
            )),
        ),
        ("options", json!({})),
        ("create_time", json!(now)),
        ("isremove", json!(0)),
        ("group", snapshot),
        (
            "redirect",
            json!({"url": url, "type": "navigateTo", "desc": desc}),
        ),
        ("msgidKey", json!(system_id)),
    ]);
    notices::notify_user(st, g.user_id, &notice, false).await?;
    Ok(Joined::Pending)
}

/// `inviteUser` of the G-apply `desc`: the prefix without its first `[`, first `]` and first `邀请`
/// (GA7: the trailing space stays).
fn invite_user_text(prefix: &str) -> String {
    prefix
        .replacen('[', "", 1)
        .replacen(']', "", 1)
        .replacen("邀请", "", 1)
}

/// API 三十八: reject deletes the pending row silently; approve turns it active only if it is still
/// pending (GD6) and sends G-join (S4) to every active member.
pub async fn decide(
    st: &AppState,
    me: &UserRow,
    group_id: i64,
    user_id: i64,
    agree: bool,
) -> Result<()> {
    let mut tx = st.db.begin().await?;
    let g = groups::by_id_tx(&mut tx, group_id)
        .await?
        .filter(|g| g.status == 1 && g.user_id == me.id)
        .ok_or_else(|| Error::fail(NOT_OWNER_OR_GONE))?;
    let row = groups::member_tx(&mut tx, group_id, user_id)
        .await?
        .filter(|r| r.status == 2)
        .ok_or_else(|| Error::fail("非法操作"))?;
    let Some(joiner) = users::active_by_id(&st.db, user_id).await? else {
        groups::delete_member(&mut tx, group_id, user_id).await?;
        tx.commit().await?;
        return Err(Error::fail("用户不存在或者被封禁"));
    };
    if !agree {
        groups::delete_member(&mut tx, group_id, user_id).await?;
        tx.commit().await?;
        return Ok(());
    }
    let active = groups::members_tx(&mut tx, group_id, true).await?;
    if active.len() as u64 >= st.config.group_max_members {
        return Err(Error::fail("群成员已达上限"));
    }
    if !groups::change_member_status(&mut tx, row.id, 2, 1).await? {
        return Err(Error::fail("非法操作"));
    }
    timeline::open_cursor(&mut tx, group_id, user_id).await?;
    recompute_mosaic(&mut tx, group_id).await?;
    tx.commit().await?;
    st.delivery.member_joined(group_id, user_id);

    let users = users_of(st, &active).await?;
    let now = time::now_ms();
    let system_id = format!("redirect-applyAddGroup{}-{}-{now}", g.id, joiner.id);
    let notice = group_notice(
        &Sender::join_system(&system_id, "加群申请提醒"),
        &g,
        &g.name,
        &g.avatar,
        &format!("[{}] 加入了群聊", joiner.display_name()),
        now,
        snapshot_s4(st, &g, &active, &users),
    );
    append_group_notice(st, group_id, &notice, Recipients::Group(group_id)).await
}

/// A validated API 二十九 request.
pub struct QrRequest {
    pub id: i64,
    pub platform: String,
    pub http: String,
    pub chat_type: String,
}

/// GD13: percent-encode exactly `% & # = + ?` in values inserted raw into URLs.
fn raw_slot(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '#' => out.push_str("%23"),
            '=' => out.push_str("%3D"),
            '+' => out.push_str("%2B"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

/// The exact text a QR code of API 二十九 encodes (GR §6 step 3); `NotFound` for H5 codes of an
/// unknown `chatType`.
pub async fn qr_text(st: &AppState, me: &UserRow, req: &QrRequest) -> Result<String> {
    let chat_type = if req.chat_type.is_empty() {
        "group"
    } else {
        req.chat_type.as_str()
    };
    let h5 = req.platform == "H5" && !req.http.is_empty();
    let page = "#/pages/setpageInfo/setpageInfo?action=autoAddGroup";
    if chat_type == "group" {
        let refused = || Error::fail("群不存在或被封禁或者您不在该群聊中");
        let g = groups::by_id(&st.db, req.id)
            .await?
            .filter(|g| g.status == 1)
            .ok_or_else(refused)?;
        groups::member(&st.db, g.id, me.id)
            .await?
            .filter(|m| m.status == 1)
            .ok_or_else(refused)?;
        return Ok(if h5 {
            format!(
                "{}{page}&title=%E7%BE%A4%E4%BB%8B%E7%BB%8D&id={}&chatType=group&name={}",
                req.http,
                g.id,
                raw_slot(&g.name)
            )
        } else {
            json!({"id": g.id, "name": g.name}).to_string()
        });
    }
    let u = users::active_by_id(&st.db, req.id)
        .await?
        .ok_or_else(|| Error::fail("用户不存在或被封禁"))?;
    if !h5 {
        // GA17: the original crashed here.
        return Ok(json!({"id": u.id, "name": u.display_name(), "chatType": "single"}).to_string());
    }
    if chat_type != "single" {
        return Err(Error::NotFound);
    }
    Ok(format!(
        "{}{page}&title={}&id={}&chatType=single&name={}&avatar={}",
        req.http,
        encode_uri_component(&format!("加用户[{}]为好友", u.display_name())),
        u.id,
        raw_slot(u.display_name()),
        raw_slot(u.avatar_str()),
    ))
}

/// A QR code PNG (GR §6 step 4): byte mode without ECI, level M, the smallest version that fits,
/// 10 px modules, quiet zone of 4 modules. Texts beyond version 40-M fall back to level L.
pub fn qr_png(text: &str) -> Result<Vec<u8>> {
    let code = [EcLevel::M, EcLevel::L]
        .into_iter()
        .find_map(|ec| byte_mode_code(text.as_bytes(), ec))
        .ok_or_else(|| anyhow::anyhow!("QR text of {} bytes does not fit", text.len()))?;
    let img = code
        .render::<image::Luma<u8>>()
        .module_dimensions(10, 10)
        .quiet_zone(true)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(anyhow::Error::from)?;
    Ok(out.into_inner())
}

fn byte_mode_code(data: &[u8], ec: EcLevel) -> Option<QrCode> {
    (1..=40).find_map(|v| {
        let mut bits = Bits::new(Version::Normal(v));
        bits.push_byte_data(data).ok()?;
        bits.push_terminator(ec).ok()?;
        QrCode::with_bits(bits, ec).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_fifty_utf16_units_without_splitting_a_pair() {
        let s = "a".repeat(49) + "😀b";
        assert_eq!(truncate_utf16(&s, 50), "a".repeat(49));
        assert_eq!(truncate_utf16(&"、".repeat(60), 50).chars().count(), 50);
        assert_eq!(truncate_utf16("my06、老二", 50), "my06、老二");
    }

    #[test]
    fn raw_slots_escape_exactly_six_characters() {
        assert_eq!(
            raw_slot("a%b&c#d=e+f?g 中/:"),
            "a%25b%26c%23d%3De%2Bf%3Fg 中/:"
        );
    }

    #[test]
    fn invite_user_keeps_the_trailing_space() {
        assert_eq!(invite_user_text("[魂牵一梦]邀请 "), "魂牵一梦 ");
        assert_eq!(invite_user_text(""), "");
    }

    #[test]
    fn qr_images_use_ten_pixel_modules_and_a_four_module_quiet_zone() {
        let png = qr_png(r#"{"id":33,"name":"技术交流群"}"#).expect("png");
        let img = image::load_from_memory(&png).expect("decodes");
        let modules = img.width() / 10;
        assert_eq!(img.width() % 10, 0);
        assert_eq!(
            (modules - 8 - 17) % 4,
            0,
            "side = (17 + 4·version + 8) × 10"
        );
        assert_eq!(modules, 17 + 4 * 3 + 8, "35 bytes at level M fit version 3");
    }
}
