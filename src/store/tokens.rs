//! Token records (AF §3.3, MR §3.3): every issued token with its device binding and state.

use sqlx::FromRow;

use super::{Db, Tx};
use crate::args;

pub const ACTIVE: i64 = 1;
pub const RETIRED: i64 = 2;
pub const REVOKED: i64 = 3;
/// Revoked by an operator (ban, delete): like `REVOKED` everywhere, but never retired again by a
/// later signed request of its device (a ban must not come back as an inert session).
pub const BANNED: i64 = 4;

#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub jti: String,
    pub user_id: i64,
    pub device_id: Option<String>,
    pub role: String,
    pub iat: i64,
    pub state: i64,
}

const COLS: &str = "`jti`,`user_id`,`device_id`,`role`,`iat`,`state`";

pub async fn get(db: &Db, jti: &str) -> sqlx::Result<Option<TokenRow>> {
    let cache = db.cache();
    if let Some(row) = cache.and_then(|c| c.token(jti)) {
        return Ok(Some(row));
    }
    let seen = cache.map(|c| c.generation());
    let row: Option<TokenRow> = db
        .opt(
            &format!("SELECT {COLS} FROM `im_token` WHERE `jti` = ?"),
            args![jti],
        )
        .await?;
    if let (Some(c), Some(seen), Some(r)) = (cache, seen, &row) {
        c.put_token(seen, r);
    }
    Ok(row)
}

/// Lock the user's session row (creating it) so that issuances for one user serialise.
pub async fn lock_session(tx: &mut Tx, user_id: i64) -> sqlx::Result<()> {
    let sql = format!(
        "{} INTO `im_session` (`user_id`,`jti`) VALUES (?, '')",
        tx.insert_ignore()
    );
    tx.exec(&sql, args![user_id]).await?;
    let sql = format!(
        "SELECT `jti` FROM `im_session` WHERE `user_id` = ?{}",
        tx.for_update()
    );
    tx.opt::<(String,)>(&sql, args![user_id]).await?;
    Ok(())
}

/// The user's active tokens (normally at most one).
pub async fn active_of(tx: &mut Tx, user_id: i64) -> sqlx::Result<Vec<TokenRow>> {
    let sql = format!("SELECT {COLS} FROM `im_token` WHERE `user_id` = ? AND `state` = 1");
    tx.all(&sql, args![user_id]).await
}

pub async fn active_of_db(db: &Db, user_id: i64) -> sqlx::Result<Option<TokenRow>> {
    let sql = format!("SELECT {COLS} FROM `im_token` WHERE `user_id` = ? AND `state` = 1 LIMIT 1");
    db.opt(&sql, args![user_id]).await
}

pub async fn insert(tx: &mut Tx, t: &TokenRow) -> sqlx::Result<()> {
    let sql = "INSERT INTO `im_token` (`jti`,`user_id`,`device_id`,`role`,`iat`,`state`) VALUES (?,?,?,?,?,?)";
    tx.exec(
        sql,
        args![&t.jti, t.user_id, &t.device_id, &t.role, t.iat, t.state],
    )
    .await?;
    tx.exec(
        "UPDATE `im_session` SET `jti` = ? WHERE `user_id` = ?",
        args![&t.jti, t.user_id],
    )
    .await?;
    Ok(())
}

pub async fn set_state(tx: &mut Tx, jti: &str, state: i64) -> sqlx::Result<()> {
    let sql = "UPDATE `im_token` SET `state` = ?, `end_time` = ? WHERE `jti` = ?";
    tx.exec(sql, args![state, crate::time::now_db(), jti])
        .await?;
    Ok(())
}

/// Every revoked token bound to `device` becomes retired (MR §3.3: the device moved on).
pub async fn retire_revoked_of_device(tx: &mut Tx, device: &str) -> sqlx::Result<()> {
    let sql = "UPDATE `im_token` SET `state` = 2 WHERE `device_id` = ? AND `state` = 3";
    tx.exec(sql, args![device]).await?;
    Ok(())
}

/// Revoke every token of a user for good (ban, delete: state `BANNED`, never retired again);
/// returns the ones that were still live.
pub async fn revoke_all(tx: &mut Tx, user_id: i64) -> sqlx::Result<Vec<TokenRow>> {
    let sql =
        format!("SELECT {COLS} FROM `im_token` WHERE `user_id` = ? AND `state` NOT IN (3, 4)");
    let rows: Vec<TokenRow> = tx.all(&sql, args![user_id]).await?;
    let sql = "UPDATE `im_token` SET `state` = 4, `end_time` = COALESCE(`end_time`, ?) WHERE `user_id` = ? AND `state` <> 4";
    tx.exec(sql, args![crate::time::now_db(), user_id]).await?;
    Ok(rows)
}

/// Forget ended tokens older than `days` (a token without a record counts as revoked).
pub async fn prune(db: &Db, days: u64) -> sqlx::Result<u64> {
    let cutoff = crate::time::now_db() - chrono::Duration::days(days as i64);
    let sql = "DELETE FROM `im_token` WHERE `state` <> 1 AND `end_time` < ?";
    Ok(db.exec(sql, args![cutoff]).await?.rows)
}
