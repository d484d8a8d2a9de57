//! `user` and `user_info` rows (AF §5.1, §5.2).

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::{Db, Tx};
use crate::args;

pub const DEFAULT_AVATAR: &str =
    "https://thinkphp-all.oss-cn-hangzhou.aliyuncs.com/public/67b3001b2aedd.png";

/// A whole `user` row, columns in the order of the original's UserView (AF §5.5).
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub create_time: NaiveDateTime,
    pub id: i64,
    pub uuid: String,
    pub username: String,
    pub password: String,
    pub nickname: String,
    pub avatar: Option<String>,
    pub devicefingeruuid: Option<String>,
    pub uniplatform: Option<String>,
    pub devicemodel: Option<String>,
    pub deviceos: Option<String>,
    pub devicebrand: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub status: i64,
    pub last_login: Option<NaiveDateTime>,
    pub last_login_ip: Option<String>,
    pub register_time: NaiveDateTime,
    pub register_ip: Option<String>,
    pub is_deleted: i64,
    pub wechat_openid: Option<String>,
    pub qq_openid: Option<String>,
    pub weibo_uid: Option<String>,
    pub role: String,
    pub is_email_verified: i64,
    pub is_mobile_verified: i64,
    pub order: Option<i64>,
    pub update_time: NaiveDateTime,
    pub userset: Option<String>,
    pub invite_confirm: Option<i64>,
}

impl UserRow {
    pub fn is_visitor(&self) -> bool {
        self.role == "visitor"
    }
    /// `dn(u)`: nickname if non-empty, else username.
    pub fn display_name(&self) -> &str {
        if self.nickname.is_empty() {
            &self.username
        } else {
            &self.nickname
        }
    }
    /// Avatar as emitted: NULL becomes `""` (AF §1 item 11).
    pub fn avatar_str(&self) -> &str {
        self.avatar.as_deref().unwrap_or("")
    }
}

/// The `user_info` view embedded as `userinfo` (AF §5.2).
#[derive(Debug, Clone, FromRow)]
pub struct UserInfoRow {
    pub id: i64,
    pub gender: String,
    pub birthday: Option<chrono::NaiveDate>,
    pub bio: Option<String>,
    pub location: Option<String>,
    pub website: Option<String>,
}

pub(crate) const USER_COLS: &str = "`create_time`,`id`,`uuid`,`username`,`password`,`nickname`,`avatar`,\
`devicefingeruuid`,`uniplatform`,`devicemodel`,`deviceos`,`devicebrand`,`mobile`,`email`,`status`,\
`last_login`,`last_login_ip`,`register_time`,`register_ip`,`is_deleted`,`wechat_openid`,`qq_openid`,\
`weibo_uid`,`role`,`is_email_verified`,`is_mobile_verified`,`order`,`update_time`,`userset`,`invite_confirm`";

fn select(filter: &str) -> String {
    format!("SELECT {USER_COLS} FROM `user` WHERE {filter}")
}

pub async fn by_id(db: &Db, id: i64) -> sqlx::Result<Option<UserRow>> {
    let cache = db.cache();
    if let Some(row) = cache.and_then(|c| c.user(id)) {
        return Ok(Some(row));
    }
    let seen = cache.map(|c| c.generation());
    let sql = select("`id` = ?");
    let row: Option<UserRow> = db.opt(&sql, args![id]).await?;
    if let (Some(c), Some(seen), Some(r)) = (cache, seen, &row) {
        c.put_user(seen, r);
    }
    Ok(row)
}

/// Enabled user by id (`status = 1`).
pub async fn active_by_id(db: &Db, id: i64) -> sqlx::Result<Option<UserRow>> {
    Ok(by_id(db, id).await?.filter(|u| u.status == 1))
}

pub async fn by_uuid(db: &Db, uuid: &str) -> sqlx::Result<Option<UserRow>> {
    let sql = select("`uuid` = ? AND `status` = 1");
    db.opt(&sql, args![uuid]).await
}

/// Any user with this username (any role, any status); case-insensitive (AF A9).
pub async fn by_username(db: &Db, username: &str) -> sqlx::Result<Option<UserRow>> {
    let sql = select("`username` = ?");
    db.opt(&sql, args![username]).await
}

pub async fn by_username_tx(tx: &mut Tx, username: &str) -> sqlx::Result<Option<UserRow>> {
    let sql = select("`username` = ?");
    tx.opt(&sql, args![username]).await
}

/// The newest visitor row of a device (AF §7.1 API 十三: only `role = 'visitor'`, D3).
pub async fn visitor_by_device_tx(tx: &mut Tx, device: &str) -> sqlx::Result<Option<UserRow>> {
    let sql = select("`devicefingeruuid` = ? AND `role` = 'visitor' ORDER BY `id` DESC LIMIT 1");
    tx.opt(&sql, args![device]).await
}

pub async fn by_id_tx(tx: &mut Tx, id: i64) -> sqlx::Result<Option<UserRow>> {
    let sql = select("`id` = ?");
    tx.opt(&sql, args![id]).await
}

/// Users by id (any status); ids without a row are simply absent. Chunked to keep statements small.
pub async fn by_ids(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<UserRow>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = select(&format!("`id` IN ({marks})"));
        let args = chunk.iter().map(|id| super::Arg::Int(*id)).collect();
        out.extend(db.all::<UserRow>(&sql, args).await?);
    }
    Ok(out)
}

pub async fn info(db: &Db, user_id: i64) -> sqlx::Result<Option<UserInfoRow>> {
    let sql = "SELECT `id`,`gender`,`birthday`,`bio`,`location`,`website` FROM `user_info` WHERE `user_id` = ?";
    db.opt(sql, args![user_id]).await
}

/// Fields of a new `user` row; the rest take their column defaults.
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub device: Option<&'a str>,
    pub stats: [&'a str; 4],
    pub last_login: Option<NaiveDateTime>,
}

/// Insert a user and its `user_info` row in the caller's transaction (AF §9 D23).
pub async fn insert(tx: &mut Tx, u: &NewUser<'_>) -> sqlx::Result<i64> {
    let now = crate::time::now_db();
    let uuid = uuid::Uuid::new_v4().to_string();
    let sql = "INSERT INTO `user` (`uuid`,`username`,`password`,`role`,`devicefingeruuid`,`uniplatform`,\
`devicemodel`,`deviceos`,`devicebrand`,`status`,`last_login`,`register_time`,`create_time`,`update_time`) \
VALUES (?,?,?,?,?,?,?,?,?,1,?,?,?,?)";
    let id = tx
        .exec(
            sql,
            args![
                &uuid,
                u.username,
                u.password_hash,
                u.role,
                u.device,
                u.stats[0],
                u.stats[1],
                u.stats[2],
                u.stats[3],
                u.last_login,
                now,
                now,
                now
            ],
        )
        .await?
        .id;
    let sql = "INSERT INTO `user_info` (`user_id`,`create_time`,`update_time`) VALUES (?,?,?)";
    tx.exec(sql, args![id, now, now]).await?;
    Ok(id)
}

/// Upgrade a visitor row in place (AF API 十四).
pub async fn upgrade_visitor(tx: &mut Tx, id: i64, username: &str, hash: &str) -> sqlx::Result<()> {
    let now = crate::time::now_db();
    let sql = "UPDATE `user` SET `username` = ?, `password` = ?, `role` = 'user', `last_login` = ?, `update_time` = ? WHERE `id` = ?";
    tx.exec(sql, args![username, hash, now, now, id]).await?;
    Ok(())
}

/// Step 3 of the login procedure: `last_login = now` (and a new hash after a legacy verify).
pub async fn touch_login(
    tx: &mut Tx,
    id: i64,
    new_hash: Option<&str>,
) -> sqlx::Result<NaiveDateTime> {
    let now = crate::time::now_db();
    match new_hash {
        Some(h) => {
            let sql = "UPDATE `user` SET `last_login` = ?, `update_time` = ?, `password` = ? WHERE `id` = ?";
            tx.exec(sql, args![now, now, h, id]).await?;
        }
        None => {
            let sql = "UPDATE `user` SET `last_login` = ?, `update_time` = ? WHERE `id` = ?";
            tx.exec(sql, args![now, now, id]).await?;
        }
    }
    Ok(now)
}

/// Store the statistics fields that were sent; the others keep their value.
pub async fn set_stats(db: &Db, id: i64, stats: &[Option<String>; 4]) -> sqlx::Result<()> {
    let sql = "UPDATE `user` SET `uniplatform` = COALESCE(?, `uniplatform`), `devicemodel` = COALESCE(?, `devicemodel`), \
`deviceos` = COALESCE(?, `deviceos`), `devicebrand` = COALESCE(?, `devicebrand`) WHERE `id` = ?";
    db.exec(
        sql,
        args![
            stats[0].clone(),
            stats[1].clone(),
            stats[2].clone(),
            stats[3].clone(),
            id
        ],
    )
    .await?;
    Ok(())
}

/// Set one column (a fixed, code-chosen name) of a user row and refresh `update_time`.
pub async fn set_column(
    db: &Db,
    id: i64,
    column: &'static str,
    value: Option<&str>,
) -> sqlx::Result<()> {
    let sql = format!("UPDATE `user` SET `{column}` = ?, `update_time` = ? WHERE `id` = ?");
    db.exec(&sql, args![value, crate::time::now_db(), id])
        .await?;
    Ok(())
}

pub async fn set_int_column(
    db: &Db,
    id: i64,
    column: &'static str,
    value: i64,
) -> sqlx::Result<u64> {
    let sql = format!("UPDATE `user` SET `{column}` = ?, `update_time` = ? WHERE `id` = ?");
    Ok(db
        .exec(&sql, args![value, crate::time::now_db(), id])
        .await?
        .rows)
}

/// A search hit of API 四.
#[derive(Debug, FromRow)]
pub struct SearchHit {
    pub id: i64,
    pub username: String,
    pub avatar: Option<String>,
    pub role: String,
    pub uuid: String,
    pub nickname: String,
}

pub async fn search(db: &Db, keyword: &str, me: i64, limit: i64) -> sqlx::Result<Vec<SearchHit>> {
    let pattern = format!("%{}%", super::like_escape(keyword));
    let sql = "SELECT `id`,`username`,`avatar`,`role`,`uuid`,`nickname` FROM `user` \
WHERE `username` LIKE ? ESCAPE '!' AND `status` = 1 AND `role` <> 'visitor' AND `id` <> ? ORDER BY `id` LIMIT ?";
    db.all(sql, args![pattern, me, limit]).await
}

/// Every user, for `imrs admin list`.
pub async fn all(db: &Db) -> sqlx::Result<Vec<UserRow>> {
    let sql = select("1 = 1 ORDER BY `id`");
    db.all(&sql, args![]).await
}

/// Enable (1) or disable (0) a user.
pub async fn set_status(tx: &mut Tx, id: i64, status: i64) -> sqlx::Result<()> {
    let sql = "UPDATE `user` SET `status` = ?, `update_time` = ? WHERE `id` = ?";
    tx.exec(sql, args![status, crate::time::now_db(), id])
        .await?;
    Ok(())
}
