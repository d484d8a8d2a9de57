//! Operator events (`im_admin_event`): what `imrs admin` changed, for running servers to apply to
//! their sockets and caches.

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
