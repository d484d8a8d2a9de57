//! The SQL of `imrs import-redis` (spec LT3): existence checks for idempotency and the group
//! cursors that make each member receive exactly what the original had queued for them. The
//! entries themselves go through `store::timeline::append`, like live messages.

use std::collections::HashSet;

use super::super::{Arg, Db, Tx};
use crate::args;

fn marks(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// Which of `ids` are rows of `table` (`user` or `group`).
pub async fn existing_ids(db: &Db, table: &str, ids: &[i64]) -> sqlx::Result<HashSet<i64>> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT `id` FROM `{}` WHERE `id` IN ({})",
            table.replace('`', ""),
            marks(chunk.len())
        );
        let rows: Vec<(i64,)> = db
            .all(&sql, chunk.iter().map(|i| Arg::Int(*i)).collect())
            .await?;
        out.extend(rows.into_iter().map(|r| r.0));
    }
    Ok(out)
}

/// Whether an entry with this message id and kind exists (in this conversation when given).
pub async fn entry_exists(
    db: &Db,
    msg_id: &str,
    kind: i64,
    conv_key: Option<&str>,
) -> sqlx::Result<bool> {
    let found: Option<(i64,)> = match conv_key {
        Some(k) => {
            db.opt(
                "SELECT `id` FROM `im_entry` WHERE `msg_id` = ? AND `kind` = ? AND `conv_key` = ? LIMIT 1",
                args![msg_id, kind, k],
            )
            .await?
        }
        None => {
            db.opt(
                "SELECT `id` FROM `im_entry` WHERE `msg_id` = ? AND `kind` = ? LIMIT 1",
                args![msg_id, kind],
            )
            .await?
        }
    };
    Ok(found.is_some())
}

/// The stored chat message with this id (entry id, conversation), seen from inside the import's
/// transaction.
pub async fn chat_entry(tx: &mut Tx, msg_id: &str) -> sqlx::Result<Option<(i64, String)>> {
    tx.opt(
        "SELECT `id`,`conv_key` FROM `im_entry` WHERE `msg_id` = ? AND `kind` = 1 ORDER BY `id` LIMIT 1",
        args![msg_id],
    )
    .await
}

/// Open cursors of a group: (user, delivered_seq).
pub async fn open_cursors(tx: &mut Tx, group_id: i64) -> sqlx::Result<Vec<(i64, i64)>> {
    tx.all(
        "SELECT `user_id`,`delivered_seq` FROM `im_group_cursor` WHERE `group_id` = ? AND `left_seq` IS NULL ORDER BY `user_id`",
        args![group_id],
    )
    .await
}

pub async fn set_delivered(tx: &mut Tx, group_id: i64, user: i64, seq: i64) -> sqlx::Result<()> {
    tx.exec(
        "UPDATE `im_group_cursor` SET `delivered_seq` = ? WHERE `group_id` = ? AND `user_id` = ?",
        args![seq, group_id, user],
    )
    .await?;
    Ok(())
}
