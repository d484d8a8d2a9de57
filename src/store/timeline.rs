//! Durable timelines (ARCHITECTURE "Messages: durable first, then pushed"; MR §6.2, GR GD8).
//! `im_entry` holds every message and notice once, with a gap-free `conv_seq` per conversation.
//! Individually addressed entries get one `im_inbox` row per recipient; group entries get none:
//! each member has a cursor (`im_group_cursor`) over the group's timeline instead.

use sqlx::FromRow;

use super::{Db, Tx};
use crate::args;

pub const KIND_CHAT: i64 = 1;
pub const KIND_NOTICE: i64 = 2;
pub const KIND_REVOKE: i64 = 3;

pub fn pair_key(a: i64, b: i64) -> String {
    format!("p:{}:{}", a.min(b), a.max(b))
}
pub fn group_key(group_id: i64) -> String {
    format!("g:{group_id}")
}
pub fn notice_key(user_id: i64) -> String {
    format!("n:{user_id}")
}

/// Who an entry is for.
#[derive(Debug, Clone)]
pub enum Recipients {
    /// One delivery row per user.
    Users(Vec<i64>),
    /// The group's members active at commit, through their cursors (no rows per member).
    Group(i64),
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub conv_key: String,
    pub msg_id: String,
    pub kind: i64,
    pub chat_type: &'static str,
    pub from_id: i64,
    pub to_id: i64,
    pub history: bool,
    pub client_msg_id: Option<String>,
    pub create_time: i64,
    pub body: String,
    pub recipients: Recipients,
    /// A chat message this entry revokes, marked in the same transaction (MR §5.3 step 8).
    pub revokes: Option<i64>,
}

/// What the commit assigned.
#[derive(Debug, Clone)]
pub struct Appended {
    pub entry_id: i64,
    pub conv_seq: i64,
}

/// Next sequence number of a conversation (locks its `im_conv` row until commit).
pub async fn next_seq(tx: &mut Tx, conv_key: &str) -> sqlx::Result<i64> {
    let done = tx
        .exec(
            "UPDATE `im_conv` SET `last_seq` = `last_seq` + 1 WHERE `conv_key` = ?",
            args![conv_key],
        )
        .await?;
    if done.rows == 0 {
        tx.exec(
            "INSERT INTO `im_conv` (`conv_key`,`last_seq`) VALUES (?, 1)",
            args![conv_key],
        )
        .await?;
        return Ok(1);
    }
    let (seq,): (i64,) = tx
        .opt(
            "SELECT `last_seq` FROM `im_conv` WHERE `conv_key` = ?",
            args![conv_key],
        )
        .await?
        .unwrap_or((1,));
    Ok(seq)
}

/// Current last sequence number of a conversation (0 when empty), locking it on MySQL.
pub async fn last_seq(tx: &mut Tx, conv_key: &str) -> sqlx::Result<i64> {
    let sql = format!(
        "SELECT `last_seq` FROM `im_conv` WHERE `conv_key` = ?{}",
        tx.for_update()
    );
    Ok(tx
        .opt::<(i64,)>(&sql, args![conv_key])
        .await?
        .map(|r| r.0)
        .unwrap_or(0))
}

/// The columns an append writes (after `id`, which the embedded batch path also sets), their
/// placeholders and their values.
const ENTRY_INSERT_COLS: &str =
    "`conv_key`,`conv_seq`,`msg_id`,`kind`,`chat_type`,`from_id`,`to_id`,\
`history`,`revoked`,`client_msg_id`,`create_time`,`body`";
const ENTRY_MARKS: &str = "?,?,?,?,?,?,?,?,0,?,?,?";

fn entry_args(a: &Append, seq: i64) -> Vec<super::Arg> {
    args![
        &a.conv_key,
        seq,
        &a.msg_id,
        a.kind,
        a.chat_type,
        a.from_id,
        a.to_id,
        a.history as i64,
        &a.client_msg_id,
        a.create_time,
        &a.body
    ]
}

/// Append one entry and its delivery rows in the caller's transaction.
pub async fn append(tx: &mut Tx, a: &Append) -> sqlx::Result<Appended> {
    let seq = next_seq(tx, &a.conv_key).await?;
    let sql = format!("INSERT INTO `im_entry` ({ENTRY_INSERT_COLS}) VALUES ({ENTRY_MARKS})");
    let entry_id = tx.exec(&sql, entry_args(a, seq)).await?.id;
    if let Some(target) = a.revokes {
        tx.exec(
            "UPDATE `im_entry` SET `revoked` = 1 WHERE `id` = ?",
            args![target],
        )
        .await?;
    }
    if let Recipients::Users(users) = &a.recipients {
        for u in users {
            tx.exec(
                "INSERT INTO `im_inbox` (`user_id`,`entry_id`,`delivered`) VALUES (?,?,0)",
                args![*u, entry_id],
            )
            .await?;
        }
    }
    Ok(Appended {
        entry_id,
        conv_seq: seq,
    })
}

/// A stored entry as delivery needs it.
#[derive(Debug, Clone, FromRow)]
pub struct EntryRow {
    pub id: i64,
    pub conv_key: String,
    pub conv_seq: i64,
    pub kind: i64,
    pub from_id: i64,
    pub to_id: i64,
    pub chat_type: String,
    pub body: String,
}

const ENTRY_COLS: &str =
    "e.`id`,e.`conv_key`,e.`conv_seq`,e.`kind`,e.`from_id`,e.`to_id`,e.`chat_type`,e.`body`";

/// Undelivered individually addressed entries of a user, oldest first.
pub async fn pending_inbox(db: &Db, user: i64) -> sqlx::Result<Vec<EntryRow>> {
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM `im_inbox` i JOIN `im_entry` e ON e.`id` = i.`entry_id` \
WHERE i.`user_id` = ? AND i.`delivered` = 0 ORDER BY i.`entry_id`"
    );
    db.all(&sql, args![user]).await
}

#[derive(Debug, Clone, FromRow)]
pub struct CursorRow {
    pub group_id: i64,
    pub conv_key: String,
    pub join_seq: i64,
    pub left_seq: Option<i64>,
    pub delivered_seq: i64,
}

/// Group cursors of a user that have entries beyond them.
pub async fn cursors_behind(db: &Db, user: i64) -> sqlx::Result<Vec<CursorRow>> {
    let sql = "SELECT c.`group_id`,c.`conv_key`,c.`join_seq`,c.`left_seq`,c.`delivered_seq` \
FROM `im_group_cursor` c JOIN `im_conv` v ON v.`conv_key` = c.`conv_key` \
WHERE c.`user_id` = ? AND v.`last_seq` > c.`delivered_seq` \
AND (c.`left_seq` IS NULL OR c.`left_seq` > c.`delivered_seq`)";
    db.all(sql, args![user]).await
}

/// Entries of a group timeline a member is owed beyond its cursor, in order (no echo of own chat
/// messages, MR §6.2 R7; only the membership interval, R8).
pub async fn group_entries_after(
    db: &Db,
    user: i64,
    c: &CursorRow,
    after: i64,
) -> sqlx::Result<Vec<EntryRow>> {
    let from = after.max(c.join_seq - 1);
    let to = c.left_seq.unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM `im_entry` e WHERE e.`conv_key` = ? AND e.`conv_seq` > ? AND e.`conv_seq` <= ? \
AND NOT (e.`kind` = 1 AND e.`from_id` = ?) ORDER BY e.`conv_seq`"
    );
    db.all(&sql, args![&c.conv_key, from, to, user]).await
}

/// Mark many (user, entry) delivery rows delivered in a few statements.
pub async fn confirm_inbox_pairs(tx: &mut Tx, pairs: &[(i64, i64)]) -> sqlx::Result<()> {
    for chunk in pairs.chunks(400) {
        let list = match tx {
            Tx::Sqlite(..) => format!("VALUES {}", vec!["(?,?)"; chunk.len()].join(",")),
            Tx::MySql(_) => vec!["(?,?)"; chunk.len()].join(","),
        };
        let sql = format!(
            "UPDATE `im_inbox` SET `delivered` = 1 WHERE `delivered` = 0 AND (`user_id`,`entry_id`) IN ({list})"
        );
        let a = chunk.iter().flat_map(|(u, e)| args![*u, *e]).collect();
        tx.exec(&sql, a).await?;
    }
    Ok(())
}

/// Advance many members' cursors of one group to `seq` (never backwards), a few statements in all.
pub async fn advance_cursors(
    tx: &mut Tx,
    group_id: i64,
    seq: i64,
    users: &[i64],
) -> sqlx::Result<()> {
    for chunk in users.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "UPDATE `im_group_cursor` SET `delivered_seq` = ? WHERE `group_id` = ? AND `delivered_seq` < ? AND `user_id` IN ({marks})"
        );
        let mut a = args![seq, group_id, seq];
        a.extend(chunk.iter().map(|u| super::Arg::Int(*u)));
        tx.exec(&sql, a).await?;
    }
    Ok(())
}

/// Everything of `user` up to entry id `seq` is delivered: inbox rows, and each group cursor up
/// to the last entry of that group at or below `seq` (within the membership; never backwards).
pub async fn confirm_upto(tx: &mut Tx, user: i64, seq: i64) -> sqlx::Result<()> {
    tx.exec(
        "UPDATE `im_inbox` SET `delivered` = 1 WHERE `user_id` = ? AND `delivered` = 0 AND `entry_id` <= ?",
        args![user, seq],
    )
    .await?;
    let sql = "SELECT c.`group_id`, MAX(e.`conv_seq`) FROM `im_group_cursor` c \
JOIN `im_entry` e ON e.`conv_key` = c.`conv_key` AND e.`conv_seq` > c.`delivered_seq` AND e.`id` <= ? \
WHERE c.`user_id` = ? GROUP BY c.`group_id`";
    let rows: Vec<(i64, Option<i64>)> = tx.all(sql, args![seq, user]).await?;
    for (group, top) in rows {
        let Some(top) = top else { continue };
        let sql = "UPDATE `im_group_cursor` SET `delivered_seq` = CASE WHEN `left_seq` IS NOT NULL AND `left_seq` < ? THEN `left_seq` ELSE ? END \
WHERE `user_id` = ? AND `group_id` = ? AND `delivered_seq` < ?";
        tx.exec(sql, args![top, top, user, group, top]).await?;
    }
    Ok(())
}

/// Open (or reopen) a member's cursor at the group's current end: they receive what follows.
pub async fn open_cursor(tx: &mut Tx, group_id: i64, user: i64) -> sqlx::Result<()> {
    let key = group_key(group_id);
    let last = last_seq(tx, &key).await?;
    // A re-join replaces the cursor: what the earlier membership still owed the member (entries
    // up to where it ended, beyond its delivered cursor) becomes individually addressed first,
    // so it is still delivered once, in commit order.
    let old: Option<(i64, Option<i64>, i64)> = tx
        .opt(
            "SELECT `join_seq`,`left_seq`,`delivered_seq` FROM `im_group_cursor` WHERE `group_id` = ? AND `user_id` = ?",
            args![group_id, user],
        )
        .await?;
    if let Some((join_seq, left_seq, delivered)) = old {
        let from = delivered.max(join_seq - 1);
        let to = left_seq.unwrap_or(last);
        if to > from {
            let sql = "INSERT INTO `im_inbox` (`user_id`,`entry_id`,`delivered`) SELECT ?, e.`id`, 0 FROM `im_entry` e \
WHERE e.`conv_key` = ? AND e.`conv_seq` > ? AND e.`conv_seq` <= ? AND NOT (e.`kind` = 1 AND e.`from_id` = ?)";
            tx.exec(sql, args![user, &key, from, to, user]).await?;
        }
    }
    tx.exec(
        "DELETE FROM `im_group_cursor` WHERE `group_id` = ? AND `user_id` = ?",
        args![group_id, user],
    )
    .await?;
    let sql = "INSERT INTO `im_group_cursor` (`group_id`,`user_id`,`conv_key`,`join_seq`,`left_seq`,`delivered_seq`,`read_seq`) \
VALUES (?,?,?,?,NULL,?,0)";
    tx.exec(sql, args![group_id, user, &key, last + 1, last])
        .await?;
    Ok(())
}

/// Close a member's cursor at the group's current end: they still get what was committed while
/// they were active (R8).
pub async fn close_cursor(tx: &mut Tx, group_id: i64, user: i64) -> sqlx::Result<()> {
    let last = last_seq(tx, &group_key(group_id)).await?;
    let sql = "UPDATE `im_group_cursor` SET `left_seq` = ? WHERE `group_id` = ? AND `user_id` = ? AND `left_seq` IS NULL";
    tx.exec(sql, args![last, group_id, user]).await?;
    Ok(())
}

/// Whether `from` has sent `to` at least one single-chat message (the `sendCount` rule, MR §5.1).
pub async fn has_sent(db: &Db, from: i64, to: i64) -> sqlx::Result<bool> {
    let sql = "SELECT `id` FROM `im_entry` WHERE `from_id` = ? AND `to_id` = ? AND `kind` = 1 AND `chat_type` = 'single' LIMIT 1";
    Ok(db.opt::<(i64,)>(sql, args![from, to]).await?.is_some())
}

/// A stored chat message by its uuid (revoke, MR §5.3).
#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub conv_key: String,
    pub conv_seq: i64,
    pub kind: i64,
    pub chat_type: String,
    pub from_id: i64,
    pub to_id: i64,
    pub revoked: i64,
    pub create_time: i64,
    pub body: String,
}

pub async fn chat_message(db: &Db, msg_id: &str) -> sqlx::Result<Option<MessageRow>> {
    let sql = "SELECT `id`,`conv_key`,`conv_seq`,`kind`,`chat_type`,`from_id`,`to_id`,`revoked`,`create_time`,`body` \
FROM `im_entry` WHERE `msg_id` = ? AND `kind` = 1 LIMIT 1";
    db.opt(sql, args![msg_id]).await
}

/// A message the same sender stored with this idempotency key in the last 24 h (MR §7.2).
pub async fn by_client_msg_id(
    db: &Db,
    from: i64,
    key: &str,
    since_ms: i64,
) -> sqlx::Result<Option<MessageRow>> {
    let sql = "SELECT `id`,`conv_key`,`conv_seq`,`kind`,`chat_type`,`from_id`,`to_id`,`revoked`,`create_time`,`body` \
FROM `im_entry` WHERE `from_id` = ? AND `client_msg_id` = ? AND `create_time` >= ? ORDER BY `id` LIMIT 1";
    db.opt(sql, args![from, key, since_ms]).await
}

/// Entries of a user with `id > since` (EXTENSION resume, MR §7.4): inbox rows and group entries.
pub async fn entries_since(
    db: &Db,
    user: i64,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<EntryRow>> {
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM `im_inbox` i JOIN `im_entry` e ON e.`id` = i.`entry_id` \
WHERE i.`user_id` = ? AND i.`entry_id` > ? ORDER BY i.`entry_id` LIMIT ?"
    );
    let mut rows: Vec<EntryRow> = db.all(&sql, args![user, since, limit]).await?;
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM `im_group_cursor` c JOIN `im_entry` e ON e.`conv_key` = c.`conv_key` \
WHERE c.`user_id` = ? AND e.`id` > ? AND e.`conv_seq` >= c.`join_seq` \
AND (c.`left_seq` IS NULL OR e.`conv_seq` <= c.`left_seq`) AND NOT (e.`kind` = 1 AND e.`from_id` = ?) \
ORDER BY e.`id` LIMIT ?"
    );
    rows.extend(
        db.all::<EntryRow>(&sql, args![user, since, user, limit])
            .await?,
    );
    rows.sort_by_key(|r| r.id);
    rows.truncate(limit as usize);
    Ok(rows)
}

/// Latest entry id that concerns a user (the `seq` of F7 `synced`).
pub async fn latest_seq(db: &Db, user: i64) -> sqlx::Result<i64> {
    let a: Option<(Option<i64>,)> = db
        .opt(
            "SELECT MAX(`entry_id`) FROM `im_inbox` WHERE `user_id` = ?",
            args![user],
        )
        .await?;
    let b: Option<(Option<i64>,)> = db
        .opt(
            "SELECT MAX(e.`id`) FROM `im_group_cursor` c JOIN `im_entry` e ON e.`conv_key` = c.`conv_key` \
WHERE c.`user_id` = ? AND e.`conv_seq` >= c.`join_seq` AND (c.`left_seq` IS NULL OR e.`conv_seq` <= c.`left_seq`)",
            args![user],
        )
        .await?;
    let a = a.and_then(|r| r.0).unwrap_or(0);
    let b = b.and_then(|r| r.0).unwrap_or(0);
    Ok(a.max(b))
}

/// One history item (EXTENSION MR §7.5).
#[derive(Debug, Clone, FromRow)]
pub struct HistoryRow {
    pub conv_seq: i64,
    pub revoked: i64,
    pub body: String,
}

/// A page of a conversation's history entries between exclusive bounds, ascending.
/// Without `after`, the newest page below `before`; with `after`, the oldest page above it.
pub async fn history(
    db: &Db,
    conv_key: &str,
    from_seq: i64,
    after: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<HistoryRow>> {
    let lo = after.unwrap_or(0).max(from_seq - 1);
    let hi = before.unwrap_or(i64::MAX);
    let order = if after.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT `conv_seq`,`revoked`,`body` FROM `im_entry` WHERE `conv_key` = ? AND `history` = 1 \
AND `conv_seq` > ? AND `conv_seq` < ? ORDER BY `conv_seq` {order} LIMIT ?"
    );
    let mut rows: Vec<HistoryRow> = db.all(&sql, args![conv_key, lo, hi, limit]).await?;
    rows.sort_by_key(|r| r.conv_seq);
    Ok(rows)
}

pub async fn read_seq(db: &Db, user: i64, conv_key: &str) -> sqlx::Result<i64> {
    let sql = "SELECT `read_seq` FROM `im_read_cursor` WHERE `user_id` = ? AND `conv_key` = ?";
    Ok(db
        .opt::<(i64,)>(sql, args![user, conv_key])
        .await?
        .map(|r| r.0)
        .unwrap_or(0))
}

/// Store `max(old, seq)` as the user's read cursor; returns the stored value.
pub async fn set_read_seq(db: &Db, user: i64, conv_key: &str, seq: i64) -> sqlx::Result<i64> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "{} INTO `im_read_cursor` (`user_id`,`conv_key`,`read_seq`) VALUES (?,?,0)",
        tx.insert_ignore()
    );
    tx.exec(&sql, args![user, conv_key]).await?;
    tx.exec(
        "UPDATE `im_read_cursor` SET `read_seq` = ? WHERE `user_id` = ? AND `conv_key` = ? AND `read_seq` < ?",
        args![seq, user, conv_key, seq],
    )
    .await?;
    let sql = "SELECT `read_seq` FROM `im_read_cursor` WHERE `user_id` = ? AND `conv_key` = ?";
    let v = tx
        .opt::<(i64,)>(sql, args![user, conv_key])
        .await?
        .map(|r| r.0)
        .unwrap_or(seq);
    tx.commit().await?;
    Ok(v)
}

/// The cursor of a member (any state) of a group, for history bounds.
pub async fn cursor_of(db: &Db, group_id: i64, user: i64) -> sqlx::Result<Option<CursorRow>> {
    let sql = "SELECT `group_id`,`conv_key`,`join_seq`,`left_seq`,`delivered_seq` FROM `im_group_cursor` \
WHERE `group_id` = ? AND `user_id` = ?";
    db.opt(sql, args![group_id, user]).await
}

/// What the embedded writer keeps between batches: the next entry id and the conversations' last
/// sequence numbers. It is the only writer of `im_entry`/`im_conv` in its process, so these stay
/// exact; they are updated only after a batch commits.
#[derive(Default)]
pub struct BatchState {
    pub next_id: Option<i64>,
    pub last_seq: std::collections::HashMap<String, i64>,
}

/// The SQLite fast path of `append` for a whole batch: explicit ids, in-memory sequence numbers,
/// multi-row inserts — a handful of statements per batch instead of four per entry. Returns what
/// each entry got and the state to keep once the batch has committed.
pub async fn append_batch(
    tx: &mut Tx,
    state: &BatchState,
    list: &[&Append],
) -> sqlx::Result<(Vec<Appended>, BatchState)> {
    let mut next_id = match state.next_id {
        Some(n) => n,
        None => {
            let max: Option<(Option<i64>,)> =
                tx.opt("SELECT MAX(`id`) FROM `im_entry`", args![]).await?;
            max.and_then(|m| m.0).unwrap_or(0) + 1
        }
    };
    let mut seqs: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let last = match seqs
            .get(&a.conv_key)
            .or_else(|| state.last_seq.get(&a.conv_key))
        {
            Some(s) => *s,
            None => tx
                .opt::<(i64,)>(
                    "SELECT `last_seq` FROM `im_conv` WHERE `conv_key` = ?",
                    args![&a.conv_key],
                )
                .await?
                .map(|r| r.0)
                .unwrap_or(0),
        };
        seqs.insert(a.conv_key.clone(), last + 1);
        out.push(Appended {
            entry_id: next_id,
            conv_seq: last + 1,
        });
        next_id += 1;
    }
    for chunk in list.iter().zip(&out).collect::<Vec<_>>().chunks(200) {
        let marks = vec![format!("(?,{ENTRY_MARKS})"); chunk.len()].join(",");
        let sql = format!("INSERT INTO `im_entry` (`id`,{ENTRY_INSERT_COLS}) VALUES {marks}");
        let mut a_ = Vec::with_capacity(chunk.len() * 12);
        for (a, ap) in chunk {
            a_.push(super::Arg::Int(ap.entry_id));
            a_.extend(entry_args(a, ap.conv_seq));
        }
        tx.exec(&sql, a_).await?;
    }
    let mut inbox: Vec<(i64, i64)> = Vec::new();
    for (a, ap) in list.iter().zip(&out) {
        if let Some(target) = a.revokes {
            tx.exec(
                "UPDATE `im_entry` SET `revoked` = 1 WHERE `id` = ?",
                args![target],
            )
            .await?;
        }
        if let Recipients::Users(users) = &a.recipients {
            inbox.extend(users.iter().map(|u| (*u, ap.entry_id)));
        }
    }
    for chunk in inbox.chunks(400) {
        let marks = vec!["(?,?,0)"; chunk.len()].join(",");
        let sql =
            format!("INSERT INTO `im_inbox` (`user_id`,`entry_id`,`delivered`) VALUES {marks}");
        let a_ = chunk.iter().flat_map(|(u, e)| args![*u, *e]).collect();
        tx.exec(&sql, a_).await?;
    }
    let convs: Vec<(&String, &i64)> = seqs.iter().collect();
    for chunk in convs.chunks(400) {
        let marks = vec!["(?,?)"; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO `im_conv` (`conv_key`,`last_seq`) VALUES {marks} \
ON CONFLICT(`conv_key`) DO UPDATE SET `last_seq` = excluded.`last_seq`"
        );
        let a_ = chunk
            .iter()
            .flat_map(|(k, s)| args![k.as_str(), **s])
            .collect();
        tx.exec(&sql, a_).await?;
    }
    let mut last_seq = state.last_seq.clone();
    last_seq.extend(seqs);
    Ok((
        out,
        BatchState {
            next_id: Some(next_id),
            last_seq,
        },
    ))
}

/// Whether any stored message or notice mentions `text` (a stored file's name, S10).
pub async fn mentions(db: &Db, text: &str) -> sqlx::Result<bool> {
    let pattern = format!("%{}%", super::like_escape(text));
    let sql = "SELECT `id` FROM `im_entry` WHERE `body` LIKE ? ESCAPE '!' LIMIT 1";
    Ok(db.opt::<(i64,)>(sql, args![pattern]).await?.is_some())
}
