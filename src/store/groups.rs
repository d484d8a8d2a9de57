//! `group` and `group_user` rows (GR §2): reads for the endpoints and for messaging, and the
//! membership writes, each in the caller's transaction so cursor changes commit with them.

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::{Arg, Db, Tx};
use crate::{args, time};

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

pub(crate) const GROUP_COLS: &str = "`create_time`,`id`,`uuid`,`user_id`,`name`,`avatar`,`remark`,`invite_confirm`,`status`,`order`,`update_time`";
const GROUP_COLS_G: &str =
    "g.`create_time`,g.`id`,g.`uuid`,g.`user_id`,g.`name`,g.`avatar`,g.`remark`,\
g.`invite_confirm`,g.`status`,g.`order`,g.`update_time`";
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

/// A group I am an active member of, with my own member row's display fields (API 二十三).
#[derive(Debug, Clone, FromRow)]
pub struct MyGroupRow {
    #[sqlx(flatten)]
    pub group: GroupRow,
    pub my_nickname: String,
    pub my_avatar: String,
}

/// Groups (status 1) where `user_id` is an active member, id descending, one page.
pub async fn my_groups(
    db: &Db,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<MyGroupRow>> {
    let sql = format!(
        "SELECT {GROUP_COLS_G}, gu.`nickname` AS `my_nickname`, gu.`avatar` AS `my_avatar` FROM `group_user` gu \
JOIN `group` g ON g.`id` = gu.`group_id` WHERE gu.`user_id` = ? AND gu.`status` = 1 AND g.`status` = 1 \
ORDER BY g.`id` DESC LIMIT ? OFFSET ?"
    );
    db.all(&sql, args![user_id, limit, offset]).await
}

/// `friend_id`s of the caller's own usable contact rows among `row_ids` (API 二十一 step 2, GD1).
pub async fn friend_ids_of_rows(db: &Db, owner: i64, row_ids: &[i64]) -> sqlx::Result<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in row_ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT `friend_id` FROM `goodfriend` WHERE `user_id` = ? AND `status` = 1 AND `isblack` = 0 \
AND `id` IN ({marks}) ORDER BY `id`"
        );
        let mut a = args![owner];
        a.extend(chunk.iter().map(|id| Arg::Int(*id)));
        out.extend(db.all::<(i64,)>(&sql, a).await?.into_iter().map(|r| r.0));
    }
    Ok(out)
}

/// Insert a group (status 1, join mode 0, fresh uuid); returns its id.
pub async fn insert_group(tx: &mut Tx, owner: i64, name: &str, avatar: &str) -> sqlx::Result<i64> {
    let now = time::now_db();
    let uuid = uuid::Uuid::new_v4().to_string();
    let sql = "INSERT INTO `group` (`uuid`,`user_id`,`name`,`avatar`,`remark`,`invite_confirm`,`status`,`order`,\
`create_time`,`update_time`) VALUES (?,?,?,?,'',0,1,50,?,?)";
    Ok(tx
        .exec(sql, args![&uuid, owner, name, avatar, now, now])
        .await?
        .id)
}

/// Insert a member row; `None` when the user already has a row in this group (UNIQUE key).
pub async fn insert_member(
    tx: &mut Tx,
    group_id: i64,
    user_id: i64,
    status: i64,
) -> sqlx::Result<Option<i64>> {
    let now = time::now_db();
    let sql = format!(
        "{} INTO `group_user` (`group_id`,`user_id`,`nickname`,`avatar`,`status`,`order`,`create_time`,`update_time`) \
VALUES (?,?,'','',?,50,?,?)",
        tx.insert_ignore()
    );
    let done = tx
        .exec(&sql, args![group_id, user_id, status, now, now])
        .await?;
    Ok((done.rows == 1).then_some(done.id))
}

/// Number of member rows of a group, of any status, or only active ones.
pub async fn count_members(tx: &mut Tx, group_id: i64, active_only: bool) -> sqlx::Result<i64> {
    let filter = if active_only { " AND `status` = 1" } else { "" };
    let sql = format!("SELECT COUNT(*) FROM `group_user` WHERE `group_id` = ?{filter}");
    Ok(tx
        .opt::<(i64,)>(&sql, args![group_id])
        .await?
        .map(|r| r.0)
        .unwrap_or(0))
}

/// Change a member row's status only if it still has `from` (the conditional approval of GD6).
pub async fn change_member_status(
    tx: &mut Tx,
    member_id: i64,
    from: i64,
    to: i64,
) -> sqlx::Result<bool> {
    let sql =
        "UPDATE `group_user` SET `status` = ?, `update_time` = ? WHERE `id` = ? AND `status` = ?";
    let done = tx
        .exec(sql, args![to, time::now_db(), member_id, from])
        .await?;
    Ok(done.rows == 1)
}

pub async fn delete_member(tx: &mut Tx, group_id: i64, user_id: i64) -> sqlx::Result<u64> {
    let sql = "DELETE FROM `group_user` WHERE `group_id` = ? AND `user_id` = ?";
    Ok(tx.exec(sql, args![group_id, user_id]).await?.rows)
}

pub async fn delete_members(tx: &mut Tx, group_id: i64) -> sqlx::Result<u64> {
    let sql = "DELETE FROM `group_user` WHERE `group_id` = ?";
    Ok(tx.exec(sql, args![group_id]).await?.rows)
}

/// An updatable text/int column of `group`; `update_time` is refreshed with it.
#[derive(Debug, Clone, Copy)]
pub enum GroupField {
    Name,
    Remark,
    Avatar,
    InviteConfirm,
    Status,
}

impl GroupField {
    fn column(self) -> &'static str {
        match self {
            GroupField::Name => "name",
            GroupField::Remark => "remark",
            GroupField::Avatar => "avatar",
            GroupField::InviteConfirm => "invite_confirm",
            GroupField::Status => "status",
        }
    }
}

pub async fn set_field(
    tx: &mut Tx,
    group_id: i64,
    field: GroupField,
    value: impl Into<Arg>,
) -> sqlx::Result<()> {
    let sql = format!(
        "UPDATE `group` SET `{}` = ?, `update_time` = ? WHERE `id` = ?",
        field.column()
    );
    tx.exec(
        &sql,
        vec![value.into(), Arg::from(time::now_db()), Arg::Int(group_id)],
    )
    .await?;
    Ok(())
}

/// Set my group nickname on my active member row; false when there is none (API 二十七).
pub async fn set_member_nickname(
    db: &Db,
    group_id: i64,
    user_id: i64,
    nickname: &str,
) -> sqlx::Result<bool> {
    let sql = "UPDATE `group_user` SET `nickname` = ?, `update_time` = ? \
WHERE `group_id` = ? AND `user_id` = ? AND `status` = 1";
    let done = db
        .exec(sql, args![nickname, time::now_db(), group_id, user_id])
        .await?;
    Ok(done.rows >= 1)
}

/// The mosaic slots (GR §2.4): member avatar and user avatar (NULL or missing user → `None`) of the
/// first nine active members by member row id.
pub async fn mosaic_slots(
    tx: &mut Tx,
    group_id: i64,
) -> sqlx::Result<Vec<(String, Option<String>)>> {
    let sql = "SELECT gu.`avatar`, u.`avatar` FROM `group_user` gu LEFT JOIN `user` u ON u.`id` = gu.`user_id` \
WHERE gu.`group_id` = ? AND gu.`status` = 1 ORDER BY gu.`id` LIMIT 9";
    tx.all(sql, args![group_id]).await
}

/// The first `limit` active member rows of a group, by id.
pub async fn members_first(db: &Db, group_id: i64, limit: i64) -> sqlx::Result<Vec<MemberRow>> {
    let sql = format!(
        "SELECT {MEMBER_COLS} FROM `group_user` WHERE `group_id` = ? AND `status` = 1 ORDER BY `id` LIMIT ?"
    );
    db.all(&sql, args![group_id, limit]).await
}
