//! Friend routes (AF §7.2, §7.3): 五 六 七 八 九 十 十一 十二 十七 十九 三十三 四十.

use axum::extract::State;

use super::auth::Auth;
use super::params::{In, Params};
use super::{ok, ApiResult};
use crate::services::friends;
use crate::state::AppState;

const STATUSES: &[&str] = &["pending", "refuse", "agree", "ignore"];

/// API 五.
pub async fn apply(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let friend_id = p
        .int(In::Body, "friend_id", "我申请添加的好友id")
        .min(1)
        .get()?;
    let note = p
        .str(In::Body, "nickname", "我的昵称或者说明")
        .len(1, 50)
        .or("");
    friends::apply(&st, &auth.user, friend_id, &note).await?;
    Ok(ok("ok"))
}

/// API 六.
pub async fn list_applications(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let page = p.page(10)?;
    Ok(ok(friends::list_applications(&st, &auth.user, page).await?))
}

/// API 七.
pub async fn handle(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "申请表的id").min(1).get()?;
    let remark = p.str(In::Body, "nickname", "好友备注").len(1, 50).or("");
    let status = p
        .str(In::Body, "status", "处理状态")
        .one_of(STATUSES)
        .get()?;
    friends::handle(&st, &auth.user, id, &remark, &status).await?;
    Ok(ok("ok"))
}

/// API 四十.
pub async fn auto_add(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let friend_id = p
        .int(In::Body, "friend_id", "我申请添加的好友id")
        .min(1)
        .get()?;
    let note = p.str(In::Body, "nickname", "说明").len(1, 50).or("");
    friends::auto_add(&st, &auth.user, friend_id, &note).await?;
    Ok(ok("ok"))
}

/// API 八.
pub async fn contact_list(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let page = p.page(2000)?;
    Ok(ok(friends::contact_list(&st, &auth.user, page).await?))
}

/// API 九.
pub async fn friend_info(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "好友id").min(1).get()?;
    Ok(ok(friends::friend_info(&st, &auth.user, id).await?))
}

/// API 十.
pub async fn toggle_black(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "好友id").min(1).get()?;
    friends::toggle_black(&st, &auth.user, id).await?;
    Ok(ok("ok"))
}

/// API 十一.
pub async fn toggle_star(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "好友id").min(1).get()?;
    friends::toggle_star(&st, &auth.user, id).await?;
    Ok(ok("ok"))
}

/// API 十二.
pub async fn set_visibility(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "朋友id").min(1).get()?;
    let friendlookme = p
        .int(In::Body, "friendlookme", "朋友是否可以看我的动态")
        .one_of(&[0, 1])
        .get()?;
    let melookfriend = p
        .int(
            In::Body,
            "melookfriend",
            "我的朋友圈是否出现朋友的信息（我是否看朋友的动态）",
        )
        .one_of(&[0, 1])
        .get()?;
    friends::set_visibility(&st, &auth.user, id, friendlookme, melookfriend).await?;
    Ok(ok("ok"))
}

/// API 十九.
pub async fn is_my_friend(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "朋友id").min(1).get()?;
    Ok(ok(friends::is_my_friend(&st, &auth.user, id).await?))
}

/// API 三十三.
pub async fn delete(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let id = p.int(In::Path, "id", "朋友id").min(1).get()?;
    friends::delete(&st, &auth.user, id).await?;
    Ok(ok("删除好友成功"))
}

/// API 十七.
pub async fn applied_to_me(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult {
    let uuid = p.str(In::Path, "uuid", "uuid值").len(36, 36).get()?;
    Ok(ok(friends::applied_to_me(&st, &auth.user, &uuid).await?))
}
