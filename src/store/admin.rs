//! Operator events (`im_admin_event`): what `imrs admin` changed, for running servers to apply to
//! their sockets and caches.

use super::{Db, Tx};
use crate::args;

pub async fn record(tx: &mut Tx, user_id: i64, kind: &str) -> sqlx::Result<()> {
    let sql = "INSERT INTO `im_admin_event` (`user_id`,`kind`,`create_time`) VALUES (?, ?, ?)";
    tx.exec(sql, args![user_id, kind, crate::time::now_db()])
        .await?;
    Ok(())
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
