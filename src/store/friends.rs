//! `goodfriend` and `goodfriendapply` rows (AF §5.3, §5.4).

use chrono::NaiveDateTime;
use sqlx::FromRow;

use super::{Db, Tx};
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
    let cache = db.cache();
    if let Some(hit) = cache.and_then(|c| c.friend(owner, friend)) {
        return Ok(hit);
    }
    let seen = cache.map(|c| c.generation());
    let sql =
        format!("SELECT {FRIEND_COLS} FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?");
    let row: Option<FriendRow> = db.opt(&sql, args![owner, friend]).await?;
    if let (Some(c), Some(seen)) = (cache, seen) {
        c.put_friend(seen, owner, friend, &row);
    }
    Ok(row)
}

/// Whether the user has at least one normal, not blacklisted contact (connect-time notice N2).
pub async fn has_contact(db: &Db, owner: i64) -> sqlx::Result<bool> {
    let sql = "SELECT `id` FROM `goodfriend` WHERE `user_id` = ? AND `status` = 1 AND `isblack` = 0 LIMIT 1";
    Ok(db.opt::<(i64,)>(sql, args![owner]).await?.is_some())
}

/// A `goodfriendapply` row ("friend request": `user_id` asks `friend_id`).
#[derive(Debug, Clone, FromRow)]
pub struct ApplyRow {
    pub id: i64,
    pub user_id: i64,
    pub friend_id: i64,
    pub nickname: String,
    pub friendlookme: i64,
    pub melookfriend: i64,
    pub ismystarfriend: i64,
    pub isblack: i64,
    pub status: String,
    pub order: Option<i64>,
    pub create_time: NaiveDateTime,
    pub update_time: NaiveDateTime,
}

const APPLY_COLS: &str = "a.`id`,a.`user_id`,a.`friend_id`,a.`nickname`,a.`friendlookme`,\
a.`melookfriend`,a.`ismystarfriend`,a.`isblack`,a.`status`,a.`order`,a.`create_time`,a.`update_time`";

/// An application to me with its applicant (API 六).
#[derive(Debug, Clone, FromRow)]
pub struct ApplyWithUser {
    #[sqlx(flatten)]
    pub apply: ApplyRow,
    pub applicant_username: String,
    pub applicant_avatar: Option<String>,
    pub applicant_nickname: String,
    pub applicant_uuid: String,
}

/// One contact of the contact list (API 八): my row joined with the friend's user.
#[derive(Debug, Clone, FromRow)]
pub struct ContactRow {
    pub id: i64,
    pub beizhu: String,
    pub friend_id: i64,
    pub username: String,
    pub avatar: Option<String>,
    pub friend_nickname: String,
    pub uuid: String,
}

async fn row_tx(tx: &mut Tx, owner: i64, friend: i64) -> sqlx::Result<Option<FriendRow>> {
    let sql = format!(
        "SELECT {FRIEND_COLS} FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?{}",
        tx.for_update()
    );
    tx.opt(&sql, args![owner, friend]).await
}

/// Both directions between `a` and `b`, locked on MySQL in index order (so that two deletions
/// of the same pair from either side cannot deadlock).
pub async fn pair_rows_tx(tx: &mut Tx, a: i64, b: i64) -> sqlx::Result<Vec<FriendRow>> {
    let sql = format!(
        "SELECT {FRIEND_COLS} FROM `goodfriend` WHERE (`user_id` = ? AND `friend_id` = ?) \
OR (`user_id` = ? AND `friend_id` = ?) ORDER BY `user_id`{}",
        tx.for_update()
    );
    tx.all(&sql, args![a, b, b, a]).await
}

/// Serialise the friend-request writes of one applicant (AF §9 D13): the applicant's `user` row is
/// locked on MySQL; SQLite's single writer already serialises write transactions.
pub async fn lock_applicant(tx: &mut Tx, user_id: i64) -> sqlx::Result<()> {
    let sql = format!("SELECT `id` FROM `user` WHERE `id` = ?{}", tx.for_update());
    tx.opt::<(i64,)>(&sql, args![user_id]).await?;
    Ok(())
}

/// True when `from` has a `pending` or `agree` application to `to`. Called after
/// `lock_applicant`, so the answer holds until commit.
pub async fn has_open_application(tx: &mut Tx, from: i64, to: i64) -> sqlx::Result<bool> {
    let sql = "SELECT `id` FROM `goodfriendapply` WHERE `user_id` = ? AND `friend_id` = ? \
AND `status` IN ('pending','agree') LIMIT 1";
    Ok(tx.opt::<(i64,)>(sql, args![from, to]).await?.is_some())
}

pub async fn insert_application(
    tx: &mut Tx,
    from: i64,
    to: i64,
    nickname: &str,
    status: &str,
) -> sqlx::Result<i64> {
    let now = crate::time::now_db();
    let sql = "INSERT INTO `goodfriendapply` (`user_id`,`friend_id`,`nickname`,`status`,`create_time`,`update_time`) \
VALUES (?,?,?,?,?,?)";
    Ok(tx
        .exec(sql, args![from, to, nickname, status, now, now])
        .await?
        .id)
}

/// The pending application `id` addressed to `me`.
pub async fn pending_application(db: &Db, id: i64, me: i64) -> sqlx::Result<Option<ApplyRow>> {
    let sql = format!(
        "SELECT {APPLY_COLS} FROM `goodfriendapply` a WHERE a.`id` = ? AND a.`friend_id` = ? AND a.`status` = 'pending'"
    );
    db.opt(&sql, args![id, me]).await
}

/// The oldest pending application from `applicant` to `me` (API 十七).
pub async fn pending_from(db: &Db, applicant: i64, me: i64) -> sqlx::Result<Option<ApplyRow>> {
    let sql = format!(
        "SELECT {APPLY_COLS} FROM `goodfriendapply` a WHERE a.`user_id` = ? AND a.`friend_id` = ? \
AND a.`status` = 'pending' ORDER BY a.`id` LIMIT 1"
    );
    db.opt(&sql, args![applicant, me]).await
}

/// Decide a pending application addressed to `me`: changes it only while it is still `pending`
/// (AF §9 D13); returns whether it changed.
pub async fn decide_application(tx: &mut Tx, id: i64, me: i64, status: &str) -> sqlx::Result<bool> {
    let sql = "UPDATE `goodfriendapply` SET `status` = ?, `update_time` = ? \
WHERE `id` = ? AND `friend_id` = ? AND `status` = 'pending'";
    let done = tx
        .exec(sql, args![status, crate::time::now_db(), id, me])
        .await?;
    Ok(done.rows > 0)
}

/// Insert `owner → friend` unless it exists (the unique key decides under concurrency); an
/// existing row is left unchanged, `isblack` included.
pub async fn insert_friend_if_absent(
    tx: &mut Tx,
    owner: i64,
    friend: i64,
    nickname: &str,
) -> sqlx::Result<()> {
    let now = crate::time::now_db();
    let sql = format!(
        "{} INTO `goodfriend` (`user_id`,`friend_id`,`nickname`,`create_time`,`update_time`) VALUES (?,?,?,?,?)",
        tx.insert_ignore()
    );
    tx.exec(&sql, args![owner, friend, nickname, now, now])
        .await?;
    Ok(())
}

/// Applications addressed to `me`, newest first, each with its (existing) applicant.
pub async fn applications_to(
    db: &Db,
    me: i64,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<ApplyWithUser>> {
    let sql = format!(
        "SELECT {APPLY_COLS},u.`username` AS `applicant_username`,u.`avatar` AS `applicant_avatar`,\
u.`nickname` AS `applicant_nickname`,u.`uuid` AS `applicant_uuid` \
FROM `goodfriendapply` a JOIN `user` u ON u.`id` = a.`user_id` \
WHERE a.`friend_id` = ? ORDER BY a.`id` DESC LIMIT ? OFFSET ?"
    );
    db.all(&sql, args![me, limit, offset]).await
}

/// Pending applications addressed to `me` whose applicant still exists.
pub async fn pending_count(db: &Db, me: i64) -> sqlx::Result<i64> {
    let sql = "SELECT COUNT(*) FROM `goodfriendapply` a JOIN `user` u ON u.`id` = a.`user_id` \
WHERE a.`friend_id` = ? AND a.`status` = 'pending'";
    Ok(db.opt::<(i64,)>(sql, args![me]).await?.map_or(0, |r| r.0))
}

/// My contacts in row order, friends whose user row is gone left out (AF §9 D16).
pub async fn contacts(db: &Db, me: i64, offset: i64, limit: i64) -> sqlx::Result<Vec<ContactRow>> {
    let sql = "SELECT g.`id`,g.`nickname` AS `beizhu`,g.`friend_id`,u.`username`,u.`avatar`,\
u.`nickname` AS `friend_nickname`,u.`uuid` \
FROM `goodfriend` g JOIN `user` u ON u.`id` = g.`friend_id` \
WHERE g.`user_id` = ? ORDER BY g.`id` LIMIT ? OFFSET ?";
    db.all(sql, args![me, limit, offset]).await
}

/// Toggle `isblack` on my row (1 → 0, anything else → 1); false when I have no row.
pub async fn toggle_black(db: &Db, me: i64, friend: i64) -> sqlx::Result<bool> {
    let sql = "UPDATE `goodfriend` SET `isblack` = CASE WHEN `isblack` = 1 THEN 0 ELSE 1 END, \
`update_time` = ? WHERE `user_id` = ? AND `friend_id` = ?";
    let done = db
        .exec(sql, args![crate::time::now_db(), me, friend])
        .await?;
    Ok(done.rows > 0)
}

/// Toggle `ismystarfriend` on my non-blacklisted row (0 → 1, anything else → 0).
pub async fn toggle_star(db: &Db, me: i64, friend: i64) -> sqlx::Result<bool> {
    let sql = "UPDATE `goodfriend` SET `ismystarfriend` = CASE WHEN `ismystarfriend` = 0 THEN 1 ELSE 0 END, \
`update_time` = ? WHERE `user_id` = ? AND `friend_id` = ? AND `isblack` = 0";
    let done = db
        .exec(sql, args![crate::time::now_db(), me, friend])
        .await?;
    Ok(done.rows > 0)
}

/// Set both moments flags on my non-blacklisted row; false when there is no such row.
pub async fn set_visibility(
    db: &Db,
    me: i64,
    friend: i64,
    friendlookme: i64,
    melookfriend: i64,
) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let found = row_tx(&mut tx, me, friend)
        .await?
        .is_some_and(|r| r.isblack == 0);
    if found {
        let sql =
            "UPDATE `goodfriend` SET `friendlookme` = ?, `melookfriend` = ?, `update_time` = ? \
WHERE `user_id` = ? AND `friend_id` = ?";
        tx.exec(
            sql,
            args![
                friendlookme,
                melookfriend,
                crate::time::now_db(),
                me,
                friend
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Both directions of a friendship and every application between the two users, in the
/// caller's transaction (AF §9 D15).
pub async fn delete_friendship(tx: &mut Tx, a: i64, b: i64) -> sqlx::Result<()> {
    let sql = "DELETE FROM `goodfriend` WHERE (`user_id` = ? AND `friend_id` = ?) OR (`user_id` = ? AND `friend_id` = ?)";
    tx.exec(sql, args![a, b, b, a]).await?;
    let sql = "DELETE FROM `goodfriendapply` WHERE (`user_id` = ? AND `friend_id` = ?) OR (`user_id` = ? AND `friend_id` = ?)";
    tx.exec(sql, args![a, b, b, a]).await?;
    Ok(())
}
