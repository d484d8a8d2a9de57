//! `goodfriend` and `goodfriendapply` rows (AF §5.3, §5.4).

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::Db;
use crate::args;

#[derive(Debug, Clone, FromRow)]
pub struct FriendRow {
    pub id: i64,
    pub user_id: i64,
    pub friend_id: i64,
    pub nickname: String,
    pub friendlookme: i64,
    pub melookfriend: i64,
    pub ismystarfriend: i64,
    pub isblack: i64,
    pub status: i64,
    pub order: Option<i64>,
    pub create_time: NaiveDateTime,
    pub update_time: NaiveDateTime,
}

pub const FRIEND_COLS: &str =
    "`id`,`user_id`,`friend_id`,`nickname`,`friendlookme`,`melookfriend`,\
`ismystarfriend`,`isblack`,`status`,`order`,`create_time`,`update_time`";

/// `owner`'s row for `friend` ("friend is in owner's contacts"), if any.
pub async fn row(db: &Db, owner: i64, friend: i64) -> sqlx::Result<Option<FriendRow>> {
    let sql =
        format!("SELECT {FRIEND_COLS} FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?");
    db.opt(&sql, args![owner, friend]).await
}
