//! `group` and `group_user` rows (GR §2).

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::{Db, Tx};
use crate::args;

#[derive(Debug, Clone, FromRow)]
pub struct GroupRow {
    pub create_time: NaiveDateTime,
    pub id: i64,
    pub uuid: String,
    pub user_id: i64,
    pub name: String,
    pub avatar: String,
    pub remark: String,
    pub invite_confirm: i64,
    pub status: i64,
    pub order: i64,
    pub update_time: NaiveDateTime,
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub create_time: NaiveDateTime,
    pub id: i64,
    pub group_id: i64,
    pub user_id: i64,
    pub nickname: String,
    pub avatar: String,
    pub status: i64,
    pub order: i64,
    pub update_time: NaiveDateTime,
}

const GROUP_COLS: &str = "`create_time`,`id`,`uuid`,`user_id`,`name`,`avatar`,`remark`,`invite_confirm`,`status`,`order`,`update_time`";
const MEMBER_COLS: &str =
    "`create_time`,`id`,`group_id`,`user_id`,`nickname`,`avatar`,`status`,`order`,`update_time`";

pub async fn by_id(db: &Db, id: i64) -> sqlx::Result<Option<GroupRow>> {
    db.opt(
        &format!("SELECT {GROUP_COLS} FROM `group` WHERE `id` = ?"),
        args![id],
    )
    .await
}

pub async fn by_id_tx(tx: &mut Tx, id: i64) -> sqlx::Result<Option<GroupRow>> {
    let sql = format!(
        "SELECT {GROUP_COLS} FROM `group` WHERE `id` = ?{}",
        tx.for_update()
    );
    tx.opt(&sql, args![id]).await
}

/// Member rows of a group ordered by id; only `status = 1` when `active_only`.
pub async fn members(db: &Db, group_id: i64, active_only: bool) -> sqlx::Result<Vec<MemberRow>> {
    let filter = if active_only { " AND `status` = 1" } else { "" };
    let sql = format!(
        "SELECT {MEMBER_COLS} FROM `group_user` WHERE `group_id` = ?{filter} ORDER BY `id`"
    );
    db.all(&sql, args![group_id]).await
}

pub async fn members_tx(
    tx: &mut Tx,
    group_id: i64,
    active_only: bool,
) -> sqlx::Result<Vec<MemberRow>> {
    let filter = if active_only { " AND `status` = 1" } else { "" };
    let sql = format!(
        "SELECT {MEMBER_COLS} FROM `group_user` WHERE `group_id` = ?{filter} ORDER BY `id`"
    );
    tx.all(&sql, args![group_id]).await
}

pub async fn member(db: &Db, group_id: i64, user_id: i64) -> sqlx::Result<Option<MemberRow>> {
    let sql =
        format!("SELECT {MEMBER_COLS} FROM `group_user` WHERE `group_id` = ? AND `user_id` = ?");
    db.opt(&sql, args![group_id, user_id]).await
}

pub async fn member_tx(
    tx: &mut Tx,
    group_id: i64,
    user_id: i64,
) -> sqlx::Result<Option<MemberRow>> {
    let sql =
        format!("SELECT {MEMBER_COLS} FROM `group_user` WHERE `group_id` = ? AND `user_id` = ?");
    tx.opt(&sql, args![group_id, user_id]).await
}

/// Groups (status 1) where the user has an active membership.
pub async fn active_group_ids(db: &Db, user_id: i64) -> sqlx::Result<Vec<i64>> {
    let sql = "SELECT gu.`group_id` FROM `group_user` gu JOIN `group` g ON g.`id` = gu.`group_id` \
WHERE gu.`user_id` = ? AND gu.`status` = 1 AND g.`status` = 1 ORDER BY gu.`group_id`";
    Ok(db
        .all::<(i64,)>(sql, args![user_id])
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}
