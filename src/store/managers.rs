//! Manager accounts of the back office (`im_manager`) and their sessions (`im_manager_session`):
//! console cookies and API bearer tokens, kept as SHA-256 digests with their CSRF token and expiry.

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::Db;
use crate::args;

#[derive(Debug, Clone, FromRow)]
pub struct ManagerRow {
    pub id: i64,
    pub name: String,
    pub password: String,
    pub create_time: NaiveDateTime,
    pub last_login: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub manager_id: i64,
    pub csrf: String,
    pub expires_ms: i64,
}

const COLS: &str = "`id`,`name`,`password`,`create_time`,`last_login`";

pub async fn by_name(db: &Db, name: &str) -> sqlx::Result<Option<ManagerRow>> {
    let sql = format!("SELECT {COLS} FROM `im_manager` WHERE `name` = ?");
    db.opt(&sql, args![name]).await
}

pub async fn by_id(db: &Db, id: i64) -> sqlx::Result<Option<ManagerRow>> {
    let sql = format!("SELECT {COLS} FROM `im_manager` WHERE `id` = ?");
    db.opt(&sql, args![id]).await
}

pub async fn all(db: &Db) -> sqlx::Result<Vec<ManagerRow>> {
    let sql = format!("SELECT {COLS} FROM `im_manager` ORDER BY `id`");
    db.all(&sql, args![]).await
}

pub async fn insert(db: &Db, name: &str, hash: &str) -> sqlx::Result<i64> {
    let sql = "INSERT INTO `im_manager` (`name`,`password`,`create_time`) VALUES (?, ?, ?)";
    Ok(db
        .exec(sql, args![name, hash, crate::time::now_db()])
        .await?
        .id)
}

pub async fn set_password(db: &Db, id: i64, hash: &str) -> sqlx::Result<u64> {
    let sql = "UPDATE `im_manager` SET `password` = ? WHERE `id` = ?";
    Ok(db.exec(sql, args![hash, id]).await?.rows)
}

pub async fn touch_login(db: &Db, id: i64) -> sqlx::Result<()> {
    let sql = "UPDATE `im_manager` SET `last_login` = ? WHERE `id` = ?";
    db.exec(sql, args![crate::time::now_db(), id]).await?;
    Ok(())
}

/// Remove a manager and end their sessions.
pub async fn delete(db: &Db, id: i64) -> sqlx::Result<u64> {
    let mut tx = db.begin().await?;
    tx.exec(
        "DELETE FROM `im_manager_session` WHERE `manager_id` = ?",
        args![id],
    )
    .await?;
    let n = tx
        .exec("DELETE FROM `im_manager` WHERE `id` = ?", args![id])
        .await?
        .rows;
    tx.commit().await?;
    Ok(n)
}

pub async fn insert_session(
    db: &Db,
    token_hash: &str,
    manager_id: i64,
    csrf: &str,
    expires_ms: i64,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO `im_manager_session` (`token_hash`,`manager_id`,`csrf`,`expires_ms`,`create_time`) \
VALUES (?, ?, ?, ?, ?)";
    db.exec(
        sql,
        args![
            token_hash,
            manager_id,
            csrf,
            expires_ms,
            crate::time::now_db()
        ],
    )
    .await?;
    Ok(())
}

pub async fn session(db: &Db, token_hash: &str) -> sqlx::Result<Option<SessionRow>> {
    let sql =
        "SELECT `manager_id`,`csrf`,`expires_ms` FROM `im_manager_session` WHERE `token_hash` = ?";
    db.opt(sql, args![token_hash]).await
}

pub async fn delete_session(db: &Db, token_hash: &str) -> sqlx::Result<()> {
    let sql = "DELETE FROM `im_manager_session` WHERE `token_hash` = ?";
    db.exec(sql, args![token_hash]).await?;
    Ok(())
}

/// Forget sessions past their expiry.
pub async fn prune_sessions(db: &Db, now_ms: i64) -> sqlx::Result<u64> {
    let sql = "DELETE FROM `im_manager_session` WHERE `expires_ms` < ?";
    Ok(db.exec(sql, args![now_ms]).await?.rows)
}
