//! Friends (AF §7.2, §7.3 and API 十七): friend requests (`goodfriendapply`), the friendship rows
//! (`goodfriend`), the contact list with its initial grouping, the N-apply / N-friends notices
//! (§6.2), and the race fixes of §9 D13–D16.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::services::accounts::{userinfo_view, wire_role};
use crate::services::notices::{self, notice, text_data, GROUP_ICON};
use crate::services::pinyin::initial_of;
use crate::services::Page;
use crate::state::AppState;
use crate::store::friends::{self, ApplyRow, ContactRow, FriendRow};
use crate::store::users::{self, UserRow};
use crate::time;

const SYSTEM_ERROR: &str = "系统异常，请稍后再试";
const ALREADY_APPLIED: &str = "您已经申请过了，请勿重复申请";
const HANDLED: &str = "申请不存在或已处理";
const NOT_FOUND_OR_BLACK: &str = "好友不存在或者被拉黑，无法操作";
const FRIENDS_TEXT: &str = "我们已经是好友了，可以开始聊天了";

/// Rules 1–2 of API 五 / 四十: the target, an enabled user of any role other than me.
async fn target(st: &AppState, me: &UserRow, friend_id: i64) -> Result<UserRow> {
    if friend_id == me.id {
        return Err(Error::fail("不能添加自己为好友"));
    }
    users::active_by_id(&st.db, friend_id)
        .await?
        .ok_or_else(|| Error::fail("添加的好友不存在"))
}

/// Why a transaction body stopped: the business refusal it chose, or a store error.
enum TxError {
    Refused(&'static str),
    Store(sqlx::Error),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    /// API 七 and 四十 answer a rolled-back store failure with `系统异常，请稍后再试`; elsewhere
    /// it is an unexpected error (500).
    fn into_error(self, what: &str, system_error_text: bool) -> Error {
        match self {
            TxError::Refused(text) => Error::fail(text),
            TxError::Store(e) if system_error_text => {
                tracing::error!(error = %e, "{what} rolled back");
                Error::fail(SYSTEM_ERROR)
            }
            TxError::Store(e) => e.into(),
        }
    }
}

/// Deliver a notice after commit. The change is already committed, so a delivery failure is
/// logged rather than turned into a failure the client would retry.
async fn deliver(st: &AppState, to: i64, n: &Value, history: bool) {
    if let Err(e) = notices::notify_user(st, to, n, history).await {
        tracing::error!(error = %e, to, "friend notice not stored");
    }
}

/// API 五.
pub async fn apply(st: &AppState, me: &UserRow, friend_id: i64, note: &str) -> Result<()> {
    let friend = target(st, me, friend_id).await?;
    let result: std::result::Result<(), TxError> = async {
        let mut tx = st.db.begin().await?;
        friends::lock_applicant(&mut tx, me.id).await?;
        if friends::has_open_application(&mut tx, me.id, friend.id).await? {
            return Err(TxError::Refused(ALREADY_APPLIED));
        }
        friends::insert_application(&mut tx, me.id, friend.id, note, "pending").await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    result.map_err(|e| e.into_error("applyfriend", false))?;
    deliver(st, friend.id, &apply_notice(me, &friend), false).await;
    Ok(())
}

/// N-apply (AF §7.2): to the target, queued, not recorded in history.
fn apply_notice(me: &UserRow, friend: &UserRow) -> Value {
    let from_id = format!("redirect-applyFriend-{}", me.id);
    notice(&[
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("from_avatar", json!(GROUP_ICON)),
        ("from_name", json!("好友申请提醒")),
        ("from_id", json!(from_id)),
        ("to_id", json!(friend.id)),
        ("to_name", json!(friend.display_name())),
        ("to_avatar", json!(friend.avatar_str())),
        ("chatType", json!("single")),
        ("type", json!("text")),
        (
            "data",
            text_data(&format!(
                "用户[{}]申请添加您为好友，请尽快处理",
                me.display_name()
            )),
        ),
        (
            "redirect",
            json!({"url": "/pages/applyMyfriend/applyMyfriend", "type": "navigateTo"}),
        ),
        ("options", json!({})),
        ("create_time", json!(time::now_ms())),
        ("isremove", json!(0)),
        ("msgidKey", json!(from_id)),
    ])
}

/// One side of a conversation as shown in a notice: id, name, avatar.
struct Party<'a> {
    id: i64,
    name: &'a str,
    avatar: &'a str,
}

/// N-friends (AF §7.2): `from` tells `to` that they are friends now.
fn friends_notice(from: &Party, to: &Party, create_time: i64) -> Value {
    notice(&[
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("from_avatar", json!(from.avatar)),
        ("from_name", json!(from.name)),
        ("from_id", json!(from.id)),
        ("to_id", json!(to.id)),
        ("to_name", json!(to.name)),
        ("to_avatar", json!(to.avatar)),
        ("chatType", json!("single")),
        ("type", json!("systemNotice")),
        ("data", text_data(FRIENDS_TEXT)),
        ("options", json!({})),
        ("create_time", json!(create_time)),
        ("isremove", json!(0)),
    ])
}

/// N-friends to `other` and N-friends′ to me, each recipient only its own copy (distinct ids).
async fn announce_friendship(st: &AppState, me: &UserRow, other: &UserRow, other_name: &str) {
    let now = time::now_ms();
    let mine = Party {
        id: me.id,
        name: me.display_name(),
        avatar: me.avatar_str(),
    };
    let theirs = Party {
        id: other.id,
        name: other_name,
        avatar: other.avatar_str(),
    };
    deliver(st, other.id, &friends_notice(&mine, &theirs, now), true).await;
    deliver(st, me.id, &friends_notice(&theirs, &mine, now), true).await;
}

/// Insert both directions if absent, lower `user_id` first so that two transactions creating the
/// same pair on MySQL take the unique-key locks in the same order.
async fn insert_pair(
    tx: &mut crate::store::Tx,
    (a, a_remark): (i64, &str),
    (b, b_remark): (i64, &str),
) -> sqlx::Result<()> {
    let mut rows = [(a, b, a_remark), (b, a, b_remark)];
    rows.sort_by_key(|r| r.0);
    for (owner, friend, remark) in rows {
        friends::insert_friend_if_absent(tx, owner, friend, remark).await?;
    }
    Ok(())
}

/// API 六.
pub async fn list_applications(st: &AppState, me: &UserRow, page: Page) -> Result<Value> {
    let rows = friends::applications_to(&st.db, me.id, page.offset, page.limit).await?;
    let pending = friends::pending_count(&st.db, me.id).await?;
    let tz = &st.config.display_tz;
    let alldata: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let a = &r.apply;
            let mut m = Map::new();
            m.insert("create_time".into(), json!(time::local(&a.create_time, tz)));
            apply_fields(&mut m, a);
            m.insert("order".into(), json!(a.order));
            m.insert("update_time".into(), json!(time::iso(&a.update_time)));
            m.insert("userId".into(), json!(a.user_id));
            m.insert(
                "user".into(),
                json!({
                    "id": a.user_id, "username": r.applicant_username,
                    "avatar": r.applicant_avatar.unwrap_or_default(),
                    "nickname": r.applicant_nickname, "uuid": r.applicant_uuid,
                }),
            );
            Value::Object(m)
        })
        .collect();
    Ok(json!({"alldata": alldata, "pendingCount": pending}))
}

/// The ApplyRow columns from `id` to `status` (AF §5.5).
fn apply_fields(m: &mut Map<String, Value>, a: &ApplyRow) {
    m.insert("id".into(), json!(a.id));
    m.insert("user_id".into(), json!(a.user_id));
    m.insert("friend_id".into(), json!(a.friend_id));
    m.insert("nickname".into(), json!(a.nickname));
    m.insert("friendlookme".into(), json!(a.friendlookme));
    m.insert("melookfriend".into(), json!(a.melookfriend));
    m.insert("ismystarfriend".into(), json!(a.ismystarfriend));
    m.insert("isblack".into(), json!(a.isblack));
    m.insert("status".into(), json!(a.status));
}

/// API 七. `remark` is my remark for the applicant (`''` when not given).
pub async fn handle(
    st: &AppState,
    me: &UserRow,
    id: i64,
    remark: &str,
    status: &str,
) -> Result<()> {
    let apply = friends::pending_application(&st.db, id, me.id)
        .await?
        .ok_or_else(|| Error::fail(HANDLED))?;
    if status == "pending" {
        return Ok(());
    }
    let agree = status == "agree";
    let result: std::result::Result<(), TxError> = async {
        let mut tx = st.db.begin().await?;
        if !friends::decide_application(&mut tx, apply.id, me.id, status).await? {
            return Err(TxError::Refused(HANDLED));
        }
        if agree {
            insert_pair(&mut tx, (me.id, remark), (apply.user_id, &me.nickname)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    result.map_err(|e| e.into_error("handleapply", true))?;
    if agree {
        if let Some(applicant) = users::by_id(&st.db, apply.user_id).await? {
            let name = if remark.is_empty() {
                applicant.display_name()
            } else {
                remark
            };
            announce_friendship(st, me, &applicant, name).await;
        }
    }
    Ok(())
}

/// API 四十.
pub async fn auto_add(st: &AppState, me: &UserRow, friend_id: i64, note: &str) -> Result<()> {
    let friend = target(st, me, friend_id).await?;
    if friend.invite_confirm != Some(0) {
        return Err(Error::fail("需要对方审核，不能自动加对方为好友"));
    }
    let result: std::result::Result<(), TxError> = async {
        let mut tx = st.db.begin().await?;
        friends::lock_applicant(&mut tx, me.id).await?;
        if friends::has_open_application(&mut tx, me.id, friend.id).await? {
            return Err(TxError::Refused(ALREADY_APPLIED));
        }
        friends::insert_application(&mut tx, me.id, friend.id, note, "agree").await?;
        insert_pair(&mut tx, (me.id, ""), (friend.id, &me.nickname)).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    result.map_err(|e| e.into_error("autoAddFriendAndAgree", true))?;
    announce_friendship(st, me, &friend, friend.display_name()).await;
    Ok(())
}

/// API 八.
pub async fn contact_list(st: &AppState, me: &UserRow, page: Page) -> Result<Value> {
    let rows = friends::contacts(&st.db, me.id, page.offset, page.limit).await?;
    if rows.is_empty() {
        return Ok(json!({"count": 0, "rows": []}));
    }
    let count = rows.len();
    Ok(json!({"count": count, "rows": group_by_initial(rows)}))
}

fn contact_item(r: ContactRow) -> (char, Value) {
    let name = [&r.beizhu, &r.friend_nickname]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or(&r.username)
        .clone();
    let initial = initial_of(&name);
    let item = json!({
        "id": r.id, "beizhu": r.beizhu, "username": r.username,
        "avatar": r.avatar.unwrap_or_default(), "friend_nickname": r.friend_nickname,
        "friend_id": r.friend_id, "name": name, "uuid": r.uuid,
    });
    (initial, item)
}

/// sort-word 1.0.7's grouping: groups in order of first appearance, stably sorted by title code
/// point, `#` moved to the end; `total` is the number of groups.
fn group_by_initial(rows: Vec<ContactRow>) -> Value {
    let mut groups: Vec<(char, Vec<Value>)> = Vec::new();
    for (initial, item) in rows.into_iter().map(contact_item) {
        match groups.iter_mut().find(|g| g.0 == initial) {
            Some(g) => g.1.push(item),
            None => groups.push((initial, vec![item])),
        }
    }
    groups.sort_by_key(|g| (g.0 == '#', g.0));
    let index_list: Vec<String> = groups.iter().map(|g| g.0.to_string()).collect();
    let total = groups.len();
    let new_list: Vec<Value> = groups
        .into_iter()
        .map(|(title, list)| json!({"title": title.to_string(), "list": list}))
        .collect();
    json!({"newList": new_list, "indexList": index_list, "total": total})
}

/// API 九. A row whose friend user is gone counts as no friend.
pub async fn friend_info(st: &AppState, me: &UserRow, friend_id: i64) -> Result<Value> {
    let not_found = || Error::fail("好友不存在");
    let row = friends::row(&st.db, me.id, friend_id)
        .await?
        .ok_or_else(not_found)?;
    let friend = users::by_id(&st.db, friend_id)
        .await?
        .ok_or_else(not_found)?;
    let info = users::info(&st.db, friend.id).await?;
    Ok(json!({
        "id": row.id, "user_id": row.user_id, "friend_id": row.friend_id, "nickname": row.nickname,
        "friendinfo": {
            "id": friend.id, "username": friend.username, "avatar": friend.avatar_str(),
            "nickname": friend.nickname, "role": wire_role(&friend.role), "status": friend.status,
            "userinfo": userinfo_view(info.as_ref()),
        },
    }))
}

/// API 十.
pub async fn toggle_black(st: &AppState, me: &UserRow, friend_id: i64) -> Result<()> {
    if friends::toggle_black(&st.db, me.id, friend_id).await? {
        Ok(())
    } else {
        Err(Error::fail("好友不存在"))
    }
}

/// API 十一.
pub async fn toggle_star(st: &AppState, me: &UserRow, friend_id: i64) -> Result<()> {
    if friends::toggle_star(&st.db, me.id, friend_id).await? {
        Ok(())
    } else {
        Err(Error::fail(NOT_FOUND_OR_BLACK))
    }
}

/// API 十二.
pub async fn set_visibility(
    st: &AppState,
    me: &UserRow,
    friend_id: i64,
    friendlookme: i64,
    melookfriend: i64,
) -> Result<()> {
    if friends::set_visibility(&st.db, me.id, friend_id, friendlookme, melookfriend).await? {
        Ok(())
    } else {
        Err(Error::fail(NOT_FOUND_OR_BLACK))
    }
}

/// API 十九: my non-blacklisted row for the user.
pub async fn is_my_friend(st: &AppState, me: &UserRow, friend_id: i64) -> Result<Value> {
    let row = friends::row(&st.db, me.id, friend_id)
        .await?
        .filter(|r| r.isblack == 0)
        .ok_or_else(|| Error::fail("不是好友"))?;
    Ok(friend_row_view(&row))
}

fn friend_row_view(r: &FriendRow) -> Value {
    json!({
        "id": r.id, "user_id": r.user_id, "friend_id": r.friend_id, "nickname": r.nickname,
        "friendlookme": r.friendlookme, "melookfriend": r.melookfriend,
        "ismystarfriend": r.ismystarfriend, "isblack": r.isblack, "status": r.status,
    })
}

/// API 三十三: both rows and every application between the two, in one transaction; no notice.
pub async fn delete(st: &AppState, me: &UserRow, friend_id: i64) -> Result<()> {
    let mut tx = st.db.begin().await?;
    let rows = friends::pair_rows_tx(&mut tx, me.id, friend_id).await?;
    if !rows.iter().any(|r| r.user_id == me.id) {
        return Err(Error::fail("不是好友关系，无权操作"));
    }
    friends::delete_friendship(&mut tx, me.id, friend_id).await?;
    tx.commit().await?;
    Ok(())
}

/// API 十七: the oldest pending application of the user `uuid` to me.
pub async fn applied_to_me(st: &AppState, me: &UserRow, uuid: &str) -> Result<Value> {
    let applicant = users::by_uuid(&st.db, uuid)
        .await?
        .ok_or_else(|| Error::fail("用户不存在"))?;
    let a = friends::pending_from(&st.db, applicant.id, me.id)
        .await?
        .ok_or_else(|| Error::fail("用户申请信息不存在"))?;
    let mut m = Map::new();
    apply_fields(&mut m, &a);
    m.insert("userId".into(), json!(a.user_id));
    Ok(Value::Object(m))
}
