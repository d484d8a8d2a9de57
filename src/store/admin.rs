//! Operator events (`im_admin_event`): what `imrs admin` changed, for running servers to apply to
//! their sockets and caches.

use super::groups::{GroupField, GroupRow, GROUP_COLS};
use super::users::{UserRow, USER_COLS};
use super::{Db, Tx};
use crate::args;

/// Record an operator event; returns its id (running nodes report the ids they applied).
pub async fn record(tx: &mut Tx, user_id: i64, kind: &str) -> sqlx::Result<i64> {
    let sql = "INSERT INTO `im_admin_event` (`user_id`,`kind`,`create_time`) VALUES (?, ?, ?)";
    Ok(tx
        .exec(sql, args![user_id, kind, crate::time::now_db()])
        .await?
        .id)
}

/// The id of the newest event (0 when none).
pub async fn latest(db: &Db) -> sqlx::Result<i64> {
    let row: Option<(Option<i64>,)> = db
        .opt("SELECT MAX(`id`) FROM `im_admin_event`", args![])
        .await?;
    Ok(row.and_then(|r| r.0).unwrap_or(0))
}

/// Events after `id`, oldest first: (id, user, kind).
pub async fn after(db: &Db, id: i64) -> sqlx::Result<Vec<(i64, i64, String)>> {
    let sql = "SELECT `id`,`user_id`,`kind` FROM `im_admin_event` WHERE `id` > ? ORDER BY `id`";
    db.all(sql, args![id]).await
}

// ----- back office reads and the delete cascade (issue 13) -----

/// What the dashboard counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    pub users: i64,
    pub visitors: i64,
    pub disabled: i64,
    pub groups: i64,
    pub messages_today: i64,
    pub messages_last_hour: i64,
}

async fn count(db: &Db, sql: &str, args: Vec<super::Arg>) -> sqlx::Result<i64> {
    Ok(db.opt::<(i64,)>(sql, args).await?.map(|r| r.0).unwrap_or(0))
}

/// `day_start_ms`: start of today (display time zone), `hour_ago_ms`: now − 1 h.
pub async fn counts(db: &Db, day_start_ms: i64, hour_ago_ms: i64) -> sqlx::Result<Counts> {
    let users = "SELECT COUNT(*) FROM `user` WHERE `role` <> 'visitor' AND `is_deleted` = 0";
    let visitors = "SELECT COUNT(*) FROM `user` WHERE `role` = 'visitor' AND `is_deleted` = 0";
    let disabled = "SELECT COUNT(*) FROM `user` WHERE `status` = 0 AND `is_deleted` = 0";
    let groups = "SELECT COUNT(*) FROM `group` WHERE `status` = 1";
    let since = "SELECT COUNT(*) FROM `im_entry` WHERE `kind` = 1 AND `create_time` >= ?";
    Ok(Counts {
        users: count(db, users, args![]).await?,
        visitors: count(db, visitors, args![]).await?,
        disabled: count(db, disabled, args![]).await?,
        groups: count(db, groups, args![]).await?,
        messages_today: count(db, since, args![day_start_ms]).await?,
        messages_last_hour: count(db, since, args![hour_ago_ms]).await?,
    })
}

/// Filters of the users page.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Matches username or nickname (substring), or id / uuid (exact).
    pub q: Option<String>,
    pub role: Option<String>,
    pub status: Option<i64>,
}

fn user_where(f: &UserFilter) -> (String, Vec<super::Arg>) {
    let mut sql = String::from("`is_deleted` = 0");
    let mut a = args![];
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let like = format!("%{}%", super::like_escape(q));
        sql.push_str(
            " AND (`username` LIKE ? ESCAPE '!' OR `nickname` LIKE ? ESCAPE '!' OR `uuid` = ? OR `id` = ?)",
        );
        a.extend(args![&like, &like, q, q.parse::<i64>().unwrap_or(-1)]);
    }
    if let Some(r) = &f.role {
        sql.push_str(" AND `role` = ?");
        a.extend(args![r]);
    }
    if let Some(s) = f.status {
        sql.push_str(" AND `status` = ?");
        a.extend(args![s]);
    }
    (sql, a)
}

/// One page of users, id descending, and the number of matches.
pub async fn users_page(
    db: &Db,
    f: &UserFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<UserRow>, i64)> {
    let (filter, mut a) = user_where(f);
    let total = count(
        db,
        &format!("SELECT COUNT(*) FROM `user` WHERE {filter}"),
        a.clone(),
    )
    .await?;
    a.extend(args![limit, offset]);
    let sql = format!(
        "SELECT {USER_COLS} FROM `user` WHERE {filter} ORDER BY `id` DESC LIMIT ? OFFSET ?"
    );
    Ok((db.all(&sql, a).await?, total))
}

/// A group with its number of active members.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupListRow {
    #[sqlx(flatten)]
    pub group: GroupRow,
    pub members: i64,
}

/// One page of live groups (name substring or exact id), id descending, and the number of matches.
pub async fn groups_page(
    db: &Db,
    q: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<GroupListRow>, i64)> {
    let mut filter = String::from("g.`status` = 1");
    let mut a = args![];
    if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
        filter.push_str(" AND (g.`name` LIKE ? ESCAPE '!' OR g.`id` = ?)");
        a.extend(args![
            format!("%{}%", super::like_escape(q)),
            q.parse::<i64>().unwrap_or(-1)
        ]);
    }
    let total = count(
        db,
        &format!("SELECT COUNT(*) FROM `group` g WHERE {filter}"),
        a.clone(),
    )
    .await?;
    let cols = GROUP_COLS
        .replace('`', "")
        .split(',')
        .map(|c| format!("g.`{c}`"))
        .collect::<Vec<_>>()
        .join(",");
    a.extend(args![limit, offset]);
    let sql = format!(
        "SELECT {cols}, (SELECT COUNT(*) FROM `group_user` gu WHERE gu.`group_id` = g.`id` AND gu.`status` = 1) AS `members` \
FROM `group` g WHERE {filter} ORDER BY g.`id` DESC LIMIT ? OFFSET ?"
    );
    Ok((db.all(&sql, a).await?, total))
}

/// A user's contacts: (friend id, username, nickname, blacklisted).
pub async fn friends_of(db: &Db, user: i64) -> sqlx::Result<Vec<(i64, String, String, i64)>> {
    let sql = "SELECT u.`id`, u.`username`, u.`nickname`, f.`isblack` FROM `goodfriend` f \
JOIN `user` u ON u.`id` = f.`friend_id` WHERE f.`user_id` = ? ORDER BY u.`id` LIMIT 500";
    db.all(sql, args![user]).await
}

/// A user's memberships: (group id, group name, member status, owner?).
pub async fn groups_of(db: &Db, user: i64) -> sqlx::Result<Vec<(i64, String, i64, i64)>> {
    let sql = "SELECT g.`id`, g.`name`, gu.`status`, CASE WHEN g.`user_id` = gu.`user_id` THEN 1 ELSE 0 END \
FROM `group_user` gu JOIN `group` g ON g.`id` = gu.`group_id` WHERE gu.`user_id` = ? AND g.`status` = 1 ORDER BY g.`id` LIMIT 500";
    db.all(sql, args![user]).await
}

/// A stored chat message for moderation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageListRow {
    pub msg_id: String,
    pub chat_type: String,
    pub from_id: i64,
    pub to_id: i64,
    pub revoked: i64,
    pub create_time: i64,
    pub body: String,
}

const MSG_COLS: &str = "`msg_id`,`chat_type`,`from_id`,`to_id`,`revoked`,`create_time`,`body`";

/// The newest chat messages sent by or to a user (single chats) or sent by them (groups).
pub async fn messages_of_user(db: &Db, user: i64, limit: i64) -> sqlx::Result<Vec<MessageListRow>> {
    let sql = format!(
        "SELECT {MSG_COLS} FROM `im_entry` WHERE `kind` = 1 AND (`from_id` = ? OR (`chat_type` = 'single' AND `to_id` = ?)) \
ORDER BY `id` DESC LIMIT ?"
    );
    db.all(&sql, args![user, user, limit]).await
}

/// The newest chat messages of one timeline (`conv_key`).
pub async fn messages_of_conv(
    db: &Db,
    conv_key: &str,
    limit: i64,
) -> sqlx::Result<Vec<MessageListRow>> {
    let sql = format!("SELECT {MSG_COLS} FROM `im_entry` WHERE `kind` = 1 AND `conv_key` = ? ORDER BY `id` DESC LIMIT ?");
    db.all(&sql, args![conv_key, limit]).await
}

/// The newest chat messages of the whole service.
pub async fn recent_messages(db: &Db, limit: i64) -> sqlx::Result<Vec<MessageListRow>> {
    let sql =
        format!("SELECT {MSG_COLS} FROM `im_entry` WHERE `kind` = 1 ORDER BY `id` DESC LIMIT ?");
    db.all(&sql, args![limit]).await
}

/// Rename a user (the unique key answers a lost race).
pub async fn set_username(tx: &mut Tx, id: i64, username: &str) -> sqlx::Result<()> {
    let sql = "UPDATE `user` SET `username` = ?, `update_time` = ? WHERE `id` = ?";
    tx.exec(sql, args![username, crate::time::now_db(), id])
        .await?;
    Ok(())
}

/// AF §8 delete, soft: `status = 0, is_deleted = 1` (every API path treats it as absent).
pub async fn mark_deleted(tx: &mut Tx, id: i64) -> sqlx::Result<()> {
    let sql = "UPDATE `user` SET `status` = 0, `is_deleted` = 1, `update_time` = ? WHERE `id` = ?";
    tx.exec(sql, args![crate::time::now_db(), id]).await?;
    Ok(())
}

/// GR GD7 on user deletion: the live groups the user owns are dissolved silently (status 0, no
/// member rows) and the user's other member rows are deleted; delivery cursors close. Returns
/// (group, user) pairs whose membership ended, for the live fan-out index.
pub async fn drop_user_groups(tx: &mut Tx, user: i64) -> sqlx::Result<Vec<(i64, i64)>> {
    let owned: Vec<(i64,)> = tx
        .all(
            "SELECT `id` FROM `group` WHERE `user_id` = ? AND `status` = 1",
            args![user],
        )
        .await?;
    let mut ended = Vec::new();
    for (g,) in owned {
        let members = super::groups::members_tx(tx, g, false).await?;
        super::groups::set_field(tx, g, GroupField::Status, 0_i64).await?;
        super::groups::delete_members(tx, g).await?;
        for m in members {
            super::timeline::close_cursor(tx, g, m.user_id).await?;
            ended.push((g, m.user_id));
        }
    }
    let joined: Vec<(i64,)> = tx
        .all(
            "SELECT `group_id` FROM `group_user` WHERE `user_id` = ?",
            args![user],
        )
        .await?;
    for (g,) in joined {
        super::groups::delete_member(tx, g, user).await?;
        super::timeline::close_cursor(tx, g, user).await?;
        ended.push((g, user));
    }
    Ok(ended)
}

/// A running node has applied every operator event up to `seen` (its heartbeat, at `now_ms`).
pub async fn node_seen(db: &Db, node: &str, seen: i64, now_ms: i64) -> sqlx::Result<()> {
    let done = db
        .exec(
            "UPDATE `im_node` SET `admin_event_seen` = ?, `seen_at` = ? WHERE `node_id` = ?",
            args![seen, now_ms, node],
        )
        .await?;
    if done.rows == 0 {
        db.exec(
            "INSERT INTO `im_node` (`node_id`,`admin_event_seen`,`seen_at`) VALUES (?,?,?)",
            args![node, seen, now_ms],
        )
        .await?;
    }
    Ok(())
}

/// A node stops: nobody waits for it any more.
pub async fn node_gone(db: &Db, node: &str) -> sqlx::Result<()> {
    db.exec("DELETE FROM `im_node` WHERE `node_id` = ?", args![node])
        .await?;
    Ok(())
}

/// Nodes alive since `alive_since_ms` that have not applied event `event` yet.
pub async fn nodes_behind(db: &Db, event: i64, alive_since_ms: i64) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = db
        .all(
            "SELECT `node_id` FROM `im_node` WHERE `admin_event_seen` < ? AND `seen_at` >= ?",
            args![event, alive_since_ms],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
