//! Friends (AF §7.2, §7.3, API 十七, §9 D13–D16, §11 checks 7–11): friend requests, the contact
//! list, black/star/visibility, deletion, the friend notices and their interplay with messaging.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::*;

const ALREADY_APPLIED: &str = "您已经申请过了，请勿重复申请";
const HANDLED: &str = "申请不存在或已处理";
const NOT_FOUND_OR_BLACK: &str = "好友不存在或者被拉黑，无法操作";
const FRIENDS_TEXT: &str = "我们已经是好友了，可以开始聊天了";
const GROUP_ICON: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat/group.png";

// ---------------------------------------------------------------------------------------------
// helpers

/// A registered user: id, token, uuid.
struct U {
    id: i64,
    token: String,
    uuid: String,
}

async fn user(app: &TestApp, name: &str) -> U {
    let (id, token, d) = app.register(name).await;
    U {
        id,
        token,
        uuid: d["uuid"].as_str().expect("uuid").to_string(),
    }
}

async fn apply(app: &TestApp, from: &U, to: i64, note: &str) -> Resp {
    app.post(
        "/api/chat/applyfriend",
        Some(&from.token),
        json!({"friend_id": to, "nickname": note}),
    )
    .await
}

async fn applications(app: &TestApp, who: &U, query: &str) -> Value {
    app.get(
        &format!("/api/chat/listapplyfriend/{query}"),
        Some(&who.token),
    )
    .await
    .ok()
    .clone()
}

async fn handle(app: &TestApp, who: &U, id: i64, status: &str, remark: &str) -> Resp {
    app.post(
        &format!("/api/chat/handleapply/{id}"),
        Some(&who.token),
        json!({"nickname": remark, "status": status}),
    )
    .await
}

/// The id of the newest application addressed to `who`.
async fn newest_application(app: &TestApp, who: &U) -> i64 {
    applications(app, who, "1").await["alldata"][0]["id"]
        .as_i64()
        .expect("an application")
}

/// `a` applies, `b` agrees with `remark` (AF §7.2, the client's flow).
async fn make_friends(app: &TestApp, a: &U, b: &U, remark: &str) {
    apply(app, a, b.id, "").await.ok();
    let id = newest_application(app, b).await;
    handle(app, b, id, "agree", remark).await.ok();
}

async fn contacts(app: &TestApp, who: &U, query: &str) -> Value {
    app.get(
        &format!("/api/chat/goodfriendlist/{query}"),
        Some(&who.token),
    )
    .await
    .ok()
    .clone()
}

async fn post_id(app: &TestApp, who: &U, route: &str, id: i64) -> Resp {
    app.post(
        &format!("/api/chat/{route}/{id}"),
        Some(&who.token),
        json!({}),
    )
    .await
}

async fn count(app: &TestApp, sql: &str, args: Vec<imrs::store::Arg>) -> i64 {
    app.state
        .db
        .opt::<(i64,)>(sql, args)
        .await
        .expect("count query")
        .map_or(0, |r| r.0)
}

async fn friend_rows(app: &TestApp, owner: i64, friend: i64) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?",
        imrs::args![owner, friend],
    )
    .await
}

async fn application_rows(app: &TestApp, a: i64, b: i64) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM `goodfriendapply` WHERE (`user_id` = ? AND `friend_id` = ?) OR (`user_id` = ? AND `friend_id` = ?)",
        imrs::args![a, b, b, a],
    )
    .await
}

async fn set_nickname(app: &TestApp, who: &U, nickname: &str) {
    app.post(
        "/api/chat/updateUserinfo",
        Some(&who.token),
        json!({"fieldname": "nickname", "fieldValue": nickname}),
    )
    .await
    .ok();
}

async fn set_userset(app: &TestApp, who: &U, user_send_count: i64) {
    let userset = json!({"chatset": {
        "visitor": {"sendCount": 0, "needFollow": false},
        "user": {"sendCount": user_send_count, "needFollow": false}}})
    .to_string();
    app.post(
        "/api/chat/userset",
        Some(&who.token),
        json!({"userset": userset}),
    )
    .await
    .ok();
}

/// Every `singleChat` notice a user receives on its socket, live and on replay.
async fn received(app: &TestApp, ws: &mut Ws, who: &U) -> Vec<Value> {
    let mut got = ws.drain_chats(QUIET).await;
    app.offline(&who.token).await.ok();
    got.extend(ws.drain_chats(QUIET).await);
    got
}

// ---------------------------------------------------------------------------------------------
// the whole flow (§11 check 7)

#[tokio::test]
async fn apply_list_handle_contact_list_and_info_flow() {
    let app = spawn_app().await;
    let a = user(&app, "my01").await;
    let b = user(&app, "my02").await;
    set_nickname(&app, &a, "魂牵一梦").await;
    let note = "我是my01,加你为好友，请通过一下";
    assert_eq!(apply(&app, &a, b.id, note).await.ok(), &json!("ok"));

    let list = applications(&app, &b, "1").await;
    assert_eq!(list["pendingCount"], json!(1));
    let item = &list["alldata"][0];
    assert_eq!(
        keys(item),
        [
            "create_time",
            "id",
            "user_id",
            "friend_id",
            "nickname",
            "friendlookme",
            "melookfriend",
            "ismystarfriend",
            "isblack",
            "status",
            "order",
            "update_time",
            "userId",
            "user"
        ]
    );
    assert_eq!(item["user_id"], json!(a.id));
    assert_eq!(item["userId"], json!(a.id));
    assert_eq!(item["friend_id"], json!(b.id));
    assert_eq!(item["nickname"], json!(note));
    assert_eq!(item["status"], json!("pending"));
    assert_eq!(item["order"], json!(50));
    assert_eq!(
        item["user"],
        json!({"id": a.id, "username": "my01", "avatar": DEFAULT_AVATAR,
               "nickname": "魂牵一梦", "uuid": a.uuid})
    );
    let ct = item["create_time"].as_str().expect("create_time");
    assert_eq!(ct.len(), 19, "YYYY-MM-DD HH:mm:ss: {ct}");
    assert!(item["update_time"]
        .as_str()
        .expect("iso")
        .ends_with(".000Z"));
    let apply_id = item["id"].as_i64().expect("id");

    let mine = app
        .post(
            &format!("/api/chat/isApplyfriend/{}", a.uuid),
            Some(&b.token),
            json!({}),
        )
        .await;
    assert_eq!(
        mine.ok(),
        &json!({"id": apply_id, "user_id": a.id, "friend_id": b.id, "nickname": note,
                "friendlookme": 1, "melookfriend": 1, "ismystarfriend": 0, "isblack": 0,
                "status": "pending", "userId": a.id})
    );

    assert_eq!(
        handle(&app, &b, apply_id, "agree", "好友魂牵一梦")
            .await
            .ok(),
        &json!("ok")
    );
    assert_eq!(friend_rows(&app, a.id, b.id).await, 1);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
    handle(&app, &b, apply_id, "agree", "")
        .await
        .fails(400, HANDLED);
    handle(&app, &b, apply_id, "refuse", "")
        .await
        .fails(400, HANDLED);

    let list = applications(&app, &b, "1").await;
    assert_eq!(list["pendingCount"], json!(0));
    assert_eq!(list["alldata"][0]["status"], json!("agree"));
    apply(&app, &a, b.id, "").await.fails(400, ALREADY_APPLIED);
    app.post(
        &format!("/api/chat/isApplyfriend/{}", a.uuid),
        Some(&b.token),
        json!({}),
    )
    .await
    .fails(400, "用户申请信息不存在");

    // b's contact list: the remark is the name (the API 八 example).
    let c = contacts(&app, &b, "1").await;
    assert_eq!(
        c,
        json!({"count": 1, "rows": {"newList": [{"title": "H", "list": [{
            "id": c["rows"]["newList"][0]["list"][0]["id"], "beizhu": "好友魂牵一梦",
            "username": "my01", "avatar": DEFAULT_AVATAR, "friend_nickname": "魂牵一梦",
            "friend_id": a.id, "name": "好友魂牵一梦", "uuid": a.uuid}]}],
            "indexList": ["H"], "total": 1}})
    );
    let row_id = c["rows"]["newList"][0]["list"][0]["id"]
        .as_i64()
        .expect("row id");
    // a's row for b carries b's nickname (empty), so the name falls back to the username.
    let c = contacts(&app, &a, "1").await;
    let item = &c["rows"]["newList"][0]["list"][0];
    assert_eq!(
        (item["beizhu"].clone(), item["name"].clone()),
        (json!(""), json!("my02"))
    );
    assert_eq!(c["rows"]["indexList"], json!(["M"]));

    let info = app
        .get(
            &format!("/api/chat/getgoodfriendinfo/{}", a.id),
            Some(&b.token),
        )
        .await;
    assert_eq!(
        info.ok(),
        &json!({"id": row_id, "user_id": b.id, "friend_id": a.id, "nickname": "好友魂牵一梦",
                "friendinfo": {"id": a.id, "username": "my01", "avatar": DEFAULT_AVATAR,
                    "nickname": "魂牵一梦", "role": "user", "status": 1,
                    "userinfo": info.ok()["friendinfo"]["userinfo"].clone()}})
    );
    assert_eq!(
        keys(&info.ok()["friendinfo"]["userinfo"]),
        ["id", "gender", "birthday", "bio", "location", "website"]
    );

    let is = post_id(&app, &b, "ismygoodfriend", a.id).await;
    assert_eq!(
        is.ok(),
        &json!({"id": row_id, "user_id": b.id, "friend_id": a.id, "nickname": "好友魂牵一梦",
                "friendlookme": 1, "melookfriend": 1, "ismystarfriend": 0, "isblack": 0,
                "status": 1})
    );
}

#[tokio::test]
async fn three_users_refuse_ignore_and_agree_independently() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let c = user(&app, "carol").await;
    apply(&app, &a, b.id, "a to b").await.ok();
    apply(&app, &c, b.id, "c to b").await.ok();
    apply(&app, &a, c.id, "a to c").await.ok();

    let list = applications(&app, &b, "1").await;
    assert_eq!(list["pendingCount"], json!(2));
    let notes: Vec<_> = list["alldata"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["nickname"].clone())
        .collect();
    assert_eq!(notes, [json!("c to b"), json!("a to b")], "newest first");
    let from_c = list["alldata"][0]["id"].as_i64().expect("id");
    let from_a = list["alldata"][1]["id"].as_i64().expect("id");

    // b cannot handle c's application to someone else, nor a's to c.
    let a_to_c = newest_application(&app, &c).await;
    handle(&app, &b, a_to_c, "agree", "")
        .await
        .fails(400, HANDLED);

    handle(&app, &b, from_a, "refuse", "").await.ok();
    handle(&app, &b, from_c, "pending", "").await.ok();
    assert_eq!(
        applications(&app, &b, "1").await["pendingCount"],
        json!(1),
        "pending is a no-op"
    );
    handle(&app, &b, from_c, "agree", "卡罗").await.ok();
    handle(&app, &c, a_to_c, "ignore", "").await.ok();

    let statuses: Vec<_> = applications(&app, &b, "1").await["alldata"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("agree"), json!("refuse")]);
    assert_eq!(
        applications(&app, &c, "1").await["alldata"][0]["status"],
        json!("ignore")
    );

    assert_eq!(contacts(&app, &b, "1").await["count"], json!(1));
    assert_eq!(contacts(&app, &c, "1").await["count"], json!(1));
    assert_eq!(
        contacts(&app, &a, "1").await,
        json!({"count": 0, "rows": []})
    );
    assert_eq!(
        friend_rows(&app, a.id, b.id).await + friend_rows(&app, b.id, a.id).await,
        0
    );

    // Refused and ignored applications do not block a new one.
    apply(&app, &a, b.id, "again").await.ok();
    apply(&app, &a, c.id, "again").await.ok();
    assert_eq!(applications(&app, &b, "1").await["pendingCount"], json!(1));
}

// ---------------------------------------------------------------------------------------------
// refusals and validation

#[tokio::test]
async fn every_refusal_has_its_text() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let off = user(&app, "offuser").await;
    imrs::services::accounts::set_enabled(&app.state, off.id, false)
        .await
        .expect("disable");

    apply(&app, &a, a.id, "")
        .await
        .fails(400, "不能添加自己为好友");
    apply(&app, &a, 99_999, "")
        .await
        .fails(400, "添加的好友不存在");
    apply(&app, &a, off.id, "")
        .await
        .fails(400, "添加的好友不存在");
    let auto = |to: i64| {
        app.post(
            "/api/chat/autoAddFriendAndAgree",
            Some(&a.token),
            json!({"friend_id": to}),
        )
    };
    auto(a.id).await.fails(400, "不能添加自己为好友");
    auto(99_999).await.fails(400, "添加的好友不存在");
    auto(off.id).await.fails(400, "添加的好友不存在");
    apply(&app, &a, b.id, "").await.ok();
    apply(&app, &a, b.id, "").await.fails(400, ALREADY_APPLIED);
    auto(b.id).await.fails(400, ALREADY_APPLIED);

    handle(&app, &b, 99_999, "agree", "")
        .await
        .fails(400, HANDLED);
    let id = newest_application(&app, &b).await;
    handle(&app, &a, id, "agree", "").await.fails(400, HANDLED);

    app.get(
        &format!("/api/chat/getgoodfriendinfo/{}", b.id),
        Some(&a.token),
    )
    .await
    .fails(400, "好友不存在");
    post_id(&app, &a, "setblackgoodfriend", b.id)
        .await
        .fails(400, "好友不存在");
    post_id(&app, &a, "setstargoodfriend", b.id)
        .await
        .fails(400, NOT_FOUND_OR_BLACK);
    app.post(
        &format!("/api/chat/setmeOrfriendCanSee/{}", b.id),
        Some(&a.token),
        json!({"friendlookme": 0, "melookfriend": 1}),
    )
    .await
    .fails(400, NOT_FOUND_OR_BLACK);
    post_id(&app, &a, "ismygoodfriend", b.id)
        .await
        .fails(400, "不是好友");
    post_id(&app, &a, "deletegoodfriend", b.id)
        .await
        .fails(400, "不是好友关系，无权操作");

    let unknown = uuid::Uuid::new_v4();
    app.post(
        &format!("/api/chat/isApplyfriend/{unknown}"),
        Some(&a.token),
        json!({}),
    )
    .await
    .fails(400, "用户不存在");
    app.post(
        &format!("/api/chat/isApplyfriend/{}", off.uuid),
        Some(&a.token),
        json!({}),
    )
    .await
    .fails(400, "用户不存在");
    app.post(
        &format!("/api/chat/isApplyfriend/{}", b.uuid),
        Some(&a.token),
        json!({}),
    )
    .await
    .fails(400, "用户申请信息不存在");
}

#[tokio::test]
async fn validation_failures_use_the_exact_valparams_texts() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let t = Some(a.token.as_str());
    let post = |path: &'static str, body: Value| app.post(path, t, body);

    post("/api/chat/applyfriend", json!({}))
        .await
        .fails(422, "我申请添加的好友id不能为空");
    post("/api/chat/applyfriend", json!({"friend_id": ""}))
        .await
        .fails(422, "我申请添加的好友id不能为空");
    post("/api/chat/applyfriend", json!({"friend_id": "x1"}))
        .await
        .fails(422, "我申请添加的好友id 的值 `x1` 的类型不是 `int`");
    post("/api/chat/applyfriend", json!({"friend_id": 0}))
        .await
        .fails(
            422,
            "我申请添加的好友id 的数值 必须 在 1 和 10000000000000000 之间",
        );
    post("/api/chat/autoAddFriendAndAgree", json!({"friend_id": -1}))
        .await
        .fails(
            422,
            "我申请添加的好友id 的数值 必须 在 1 和 10000000000000000 之间",
        );

    post("/api/chat/handleapply/0", json!({"status": "agree"}))
        .await
        .fails(422, "申请表的id 的数值 必须 在 1 和 10000000000000000 之间");
    post("/api/chat/handleapply/abc", json!({"status": "agree"}))
        .await
        .fails(422, "申请表的id 的值 `abc` 的类型不是 `int`");
    post("/api/chat/handleapply/1", json!({"status": "yes"}))
        .await
        .fails(
            422,
            "处理状态 的值 `yes` 必须在 [`pending`,`refuse`,`agree`,`ignore`] 中",
        );
    post("/api/chat/handleapply/1", json!({"nickname": "x"}))
        .await
        .fails(422, "处理状态不能为空");

    post(
        "/api/chat/setmeOrfriendCanSee/1",
        json!({"friendlookme": 2, "melookfriend": 1}),
    )
    .await
    .fails(422, "朋友是否可以看我的动态 的值 `2` 必须在 [`0`,`1`] 中");
    post(
        "/api/chat/setmeOrfriendCanSee/1",
        json!({"friendlookme": 1}),
    )
    .await
    .fails(
        422,
        "我的朋友圈是否出现朋友的信息（我是否看朋友的动态）不能为空",
    );
    post(
        "/api/chat/setmeOrfriendCanSee/0",
        json!({"friendlookme": 1, "melookfriend": 1}),
    )
    .await
    .fails(422, "朋友id 的数值 必须 在 1 和 10000000000000000 之间");
    for route in ["setblackgoodfriend", "setstargoodfriend"] {
        app.post(&format!("/api/chat/{route}/0"), t, json!({}))
            .await
            .fails(422, "好友id 的数值 必须 在 1 和 10000000000000000 之间");
    }
    for route in ["ismygoodfriend", "deletegoodfriend"] {
        app.post(&format!("/api/chat/{route}/x"), t, json!({}))
            .await
            .fails(422, "朋友id 的值 `x` 的类型不是 `int`");
    }
    app.get("/api/chat/getgoodfriendinfo/0", t)
        .await
        .fails(422, "好友id 的数值 必须 在 1 和 10000000000000000 之间");
    app.get("/api/chat/goodfriendlist/0", t)
        .await
        .fails(422, "页码 的数值 必须 在 1 和 10000000000000000 之间");
    app.get("/api/chat/listapplyfriend/abc", t)
        .await
        .fails(422, "页码 的值 `abc` 的类型不是 `int`");
    app.post("/api/chat/isApplyfriend/short", t, json!({}))
        .await
        .fails(422, "uuid值 的长度 必须 在 36 和 36 之间");

    // Optional notes out of range are not a 422: the default '' is used (AF A22).
    let long = "长".repeat(51);
    apply(&app, &a, b.id, &long).await.ok();
    assert_eq!(
        applications(&app, &b, "1").await["alldata"][0]["nickname"],
        json!("")
    );
    // A form post with a string id works like the JSON number.
    let c = user(&app, "carol").await;
    let r = app
        .post_form(
            "/api/chat/applyfriend",
            t,
            &[("friend_id", &c.id.to_string()), ("nickname", "hi")],
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
}

// ---------------------------------------------------------------------------------------------
// pagination (§6.3, D26)

#[tokio::test]
async fn paging_limits_fall_back_to_the_defaults() {
    let app = spawn_app().await;
    let me = user(&app, "target").await;
    let mut ids = Vec::new();
    for i in 0..11 {
        let u = user(&app, &format!("appl{i:02}")).await;
        apply(&app, &u, me.id, &format!("n{i}")).await.ok();
        ids.push(u.id);
    }
    let len = |v: &Value| v["alldata"].as_array().expect("array").len();
    for q in ["1", "1?limit=0", "1?limit=-3", "1?limit=abc", "1?limit=1.5"] {
        let v = applications(&app, &me, q).await;
        assert_eq!(len(&v), 10, "{q}");
        assert_eq!(
            v["pendingCount"],
            json!(11),
            "pendingCount counts all pages"
        );
    }
    assert_eq!(len(&applications(&app, &me, "2").await), 1);
    assert_eq!(len(&applications(&app, &me, "3?limit=4").await), 3);
    assert_eq!(len(&applications(&app, &me, "4?limit=4").await), 0);
    assert_eq!(
        len(&applications(&app, &me, "99999999999?limit=99999999999").await),
        0
    );
    let first = applications(&app, &me, "1?limit=3").await;
    assert_eq!(
        first["alldata"][0]["user_id"],
        json!(ids[10]),
        "newest first"
    );
    assert_eq!(first["alldata"][1]["user_id"], json!(ids[9]));

    // Contact list: default 2000, the same fallbacks, an empty page is `rows: []`.
    for item in first["alldata"].as_array().expect("array").iter().take(3) {
        let id = item["id"].as_i64().expect("id");
        handle(&app, &me, id, "agree", "").await.ok();
    }
    for q in ["1", "1?limit=0", "1?limit=-1", "1?limit=abc"] {
        assert_eq!(contacts(&app, &me, q).await["count"], json!(3), "{q}");
    }
    assert_eq!(contacts(&app, &me, "2?limit=2").await["count"], json!(1));
    assert_eq!(
        contacts(&app, &me, "3?limit=2").await,
        json!({"count": 0, "rows": []})
    );
}

// ---------------------------------------------------------------------------------------------
// contact list grouping (§11 check 8, D16)

#[tokio::test]
async fn contact_list_groups_names_by_initial_with_hash_last() {
    let app = spawn_app().await;
    let me = user(&app, "lister").await;
    assert_eq!(
        contacts(&app, &me, "1").await,
        json!({"count": 0, "rows": []})
    );
    let remarks = ["张三", "li", "9", "(x"];
    for (i, remark) in remarks.iter().enumerate() {
        let f = user(&app, &format!("friend{i}")).await;
        make_friends(&app, &f, &me, remark).await;
    }
    let c = contacts(&app, &me, "1").await;
    assert_eq!(c["count"], json!(4));
    let rows = &c["rows"];
    assert_eq!(rows["indexList"], json!(["L", "Z", "#"]));
    assert_eq!(rows["total"], json!(3), "total is the number of groups");
    let titles: Vec<_> = rows["newList"]
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["title"].clone())
        .collect();
    assert_eq!(titles, [json!("L"), json!("Z"), json!("#")]);
    let names = |i: usize| -> Vec<Value> {
        rows["newList"][i]["list"]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x["name"].clone())
            .collect()
    };
    assert_eq!(names(0), [json!("li")]);
    assert_eq!(names(1), [json!("张三")]);
    assert_eq!(
        names(2),
        [json!("9"), json!("(x")],
        "row order inside a group"
    );
    assert_eq!(
        keys(&rows["newList"][0]["list"][0]),
        [
            "id",
            "beizhu",
            "username",
            "avatar",
            "friend_nickname",
            "friend_id",
            "name",
            "uuid"
        ]
    );

    // A friend whose user row is gone is skipped instead of breaking the list.
    let gone = rows["newList"][1]["list"][0]["friend_id"]
        .as_i64()
        .expect("id");
    app.state
        .db
        .exec("DELETE FROM `user` WHERE `id` = ?", imrs::args![gone])
        .await
        .expect("delete user");
    let c = contacts(&app, &me, "1").await;
    assert_eq!(c["count"], json!(3));
    assert_eq!(c["rows"]["indexList"], json!(["L", "#"]));
    assert_eq!(c["rows"]["total"], json!(2));
}

#[tokio::test]
async fn contact_names_fall_back_from_remark_to_nickname_to_username() {
    let app = spawn_app().await;
    let me = user(&app, "lister").await;
    let nick = user(&app, "zzzuser").await;
    set_nickname(&app, &nick, "Apple").await;
    let plain = user(&app, "bare").await;
    make_friends(&app, &nick, &me, "").await;
    make_friends(&app, &plain, &me, "").await;
    let c = contacts(&app, &me, "1").await;
    assert_eq!(c["rows"]["indexList"], json!(["A", "B"]));
    assert_eq!(c["rows"]["newList"][0]["list"][0]["name"], json!("Apple"));
    assert_eq!(c["rows"]["newList"][1]["list"][0]["name"], json!("bare"));
    // The applicant's row for me carries my nickname at agreement time.
    set_nickname(&app, &me, "我的昵称").await;
    let d = user(&app, "dave").await;
    make_friends(&app, &d, &me, "").await;
    let c = contacts(&app, &d, "1").await;
    assert_eq!(
        c["rows"]["newList"][0]["list"][0]["beizhu"],
        json!("我的昵称")
    );
}

// ---------------------------------------------------------------------------------------------
// concurrency (§9 D13, §11 check 7)

#[tokio::test]
async fn concurrent_agrees_create_exactly_one_friendship() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    apply(&app, &a, b.id, "").await.ok();
    let id = newest_application(&app, &b).await;
    let results = join_all((0..4).map(|_| handle(&app, &b, id, "agree", ""))).await;
    let oks = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(oks, 1, "exactly one decision wins");
    for r in results.iter().filter(|r| r.status != 200) {
        r.fails(400, HANDLED);
    }
    assert_eq!(friend_rows(&app, a.id, b.id).await, 1);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
}

#[tokio::test]
async fn concurrent_decisions_of_different_kinds_leave_one_status() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    apply(&app, &a, b.id, "").await.ok();
    let id = newest_application(&app, &b).await;
    let results = join_all(
        ["agree", "refuse", "ignore", "agree"]
            .into_iter()
            .map(|s| handle(&app, &b, id, s, "")),
    )
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
    let status = applications(&app, &b, "1").await["alldata"][0]["status"].clone();
    let friends = friend_rows(&app, a.id, b.id).await + friend_rows(&app, b.id, a.id).await;
    assert_eq!(
        friends,
        if status == json!("agree") { 2 } else { 0 },
        "{status}"
    );
}

#[tokio::test]
async fn concurrent_applications_create_one_pending_row() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let results = join_all((0..5).map(|_| apply(&app, &a, b.id, "tap"))).await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
    for r in results.iter().filter(|r| r.status != 200) {
        r.fails(400, ALREADY_APPLIED);
    }
    assert_eq!(application_rows(&app, a.id, b.id).await, 1);

    // Auto-add taps in parallel: one application, one friendship.
    let c = user(&app, "carol").await;
    let results = join_all((0..5).map(|_| {
        app.post(
            "/api/chat/autoAddFriendAndAgree",
            Some(&a.token),
            json!({"friend_id": c.id}),
        )
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
    assert_eq!(application_rows(&app, a.id, c.id).await, 1);
    assert_eq!(friend_rows(&app, a.id, c.id).await, 1);
    assert_eq!(friend_rows(&app, c.id, a.id).await, 1);
}

#[tokio::test]
async fn crossing_agree_and_auto_add_leave_one_row_per_direction() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    apply(&app, &a, b.id, "").await.ok();
    let id = newest_application(&app, &b).await;
    // b agrees to a's application while also auto-adding a: both create the same two rows.
    let agree = handle(&app, &b, id, "agree", "");
    let auto = app.post(
        "/api/chat/autoAddFriendAndAgree",
        Some(&b.token),
        json!({"friend_id": a.id}),
    );
    let (r1, r2) = tokio::join!(agree, auto);
    assert_eq!(
        (r1.status, r2.status),
        (200, 200),
        "{} {}",
        r1.body,
        r2.body
    );
    assert_eq!(friend_rows(&app, a.id, b.id).await, 1);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
}

// ---------------------------------------------------------------------------------------------
// black / star / visibility (§11 check 9, A24)

#[tokio::test]
async fn blacklist_star_and_visibility_change_only_my_row() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    let mine = |field: &'static str| {
        let app = &app;
        let a = &a;
        let b = &b;
        async move { post_id(app, a, "ismygoodfriend", b.id).await.ok()[field].clone() }
    };

    assert_eq!(
        post_id(&app, &a, "setstargoodfriend", b.id).await.ok(),
        &json!("ok")
    );
    assert_eq!(mine("ismystarfriend").await, json!(1));
    post_id(&app, &a, "setstargoodfriend", b.id).await.ok();
    assert_eq!(mine("ismystarfriend").await, json!(0));

    let vis_path = format!("/api/chat/setmeOrfriendCanSee/{}", b.id);
    let vis = |f: i64, m: i64| {
        app.post(
            &vis_path,
            Some(&a.token),
            json!({"friendlookme": f, "melookfriend": m}),
        )
    };
    assert_eq!(vis(0, 1).await.ok(), &json!("ok"));
    assert_eq!(
        (mine("friendlookme").await, mine("melookfriend").await),
        (json!(0), json!(1))
    );
    vis(0, 1).await.ok();
    vis(1, 0).await.ok();
    assert_eq!(
        (mine("friendlookme").await, mine("melookfriend").await),
        (json!(1), json!(0))
    );

    assert_eq!(
        post_id(&app, &a, "setblackgoodfriend", b.id).await.ok(),
        &json!("ok")
    );
    post_id(&app, &a, "ismygoodfriend", b.id)
        .await
        .fails(400, "不是好友");
    post_id(&app, &a, "setstargoodfriend", b.id)
        .await
        .fails(400, NOT_FOUND_OR_BLACK);
    vis(1, 1).await.fails(400, NOT_FOUND_OR_BLACK);
    // Blacklisted friends stay in the contact list and keep their profile (A24).
    assert_eq!(contacts(&app, &a, "1").await["count"], json!(1));
    app.get(
        &format!("/api/chat/getgoodfriendinfo/{}", b.id),
        Some(&a.token),
    )
    .await
    .ok();
    // b's row is untouched.
    let theirs = post_id(&app, &b, "ismygoodfriend", a.id).await;
    assert_eq!(theirs.ok()["isblack"], json!(0));
    assert_eq!(theirs.ok()["friendlookme"], json!(1));

    post_id(&app, &a, "setblackgoodfriend", b.id).await.ok();
    assert_eq!(mine("isblack").await, json!(0), "toggled twice → 0");
    assert_eq!(mine("melookfriend").await, json!(0), "other flags kept");
}

// ---------------------------------------------------------------------------------------------
// delete (§11 check 10, D15)

#[tokio::test]
async fn delete_removes_both_rows_and_every_application() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    apply(&app, &b, a.id, "reverse").await.ok();
    assert_eq!(application_rows(&app, a.id, b.id).await, 2);
    let r = post_id(&app, &b, "deletegoodfriend", a.id).await;
    assert_eq!(r.ok(), &json!("删除好友成功"));
    assert_eq!(friend_rows(&app, a.id, b.id).await, 0);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 0);
    assert_eq!(application_rows(&app, a.id, b.id).await, 0);
    post_id(&app, &a, "ismygoodfriend", b.id)
        .await
        .fails(400, "不是好友");
    post_id(&app, &a, "deletegoodfriend", b.id)
        .await
        .fails(400, "不是好友关系，无权操作");
    assert_eq!(
        applications(&app, &b, "1").await,
        json!({"alldata": [], "pendingCount": 0})
    );
    // They can start again.
    make_friends(&app, &a, &b, "").await;
    assert_eq!(friend_rows(&app, a.id, b.id).await, 1);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
}

#[tokio::test]
async fn concurrent_deletes_from_both_sides_succeed_once() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    let (ra, rb) = tokio::join!(
        post_id(&app, &a, "deletegoodfriend", b.id),
        post_id(&app, &b, "deletegoodfriend", a.id)
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} {}", ra.body, rb.body);
    for r in [ra, rb].iter().filter(|r| r.status == 400) {
        r.fails(400, "不是好友关系，无权操作");
    }
    assert_eq!(
        friend_rows(&app, a.id, b.id).await + friend_rows(&app, b.id, a.id).await,
        0
    );
}

#[tokio::test]
async fn delete_works_from_a_one_sided_row() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    app.state
        .db
        .exec(
            "DELETE FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?",
            imrs::args![b.id, a.id],
        )
        .await
        .expect("one-sided");
    post_id(&app, &b, "deletegoodfriend", a.id)
        .await
        .fails(400, "不是好友关系，无权操作");
    post_id(&app, &a, "deletegoodfriend", b.id).await.ok();
    assert_eq!(friend_rows(&app, a.id, b.id).await, 0);
}

// ---------------------------------------------------------------------------------------------
// auto-add (§11 check 11, D14)

#[tokio::test]
async fn auto_add_needs_invite_confirm_0_and_befriends_in_one_step() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let auto = |to: i64, note: &str| {
        app.post(
            "/api/chat/autoAddFriendAndAgree",
            Some(&a.token),
            json!({"friend_id": to, "nickname": note}),
        )
    };
    app.post(
        "/api/chat/updateUserinfo",
        Some(&b.token),
        json!({"fieldname": "invite_confirm", "fieldValue": 1}),
    )
    .await
    .ok();
    auto(b.id, "")
        .await
        .fails(400, "需要对方审核，不能自动加对方为好友");
    app.state
        .db
        .exec(
            "UPDATE `user` SET `invite_confirm` = NULL WHERE `id` = ?",
            imrs::args![b.id],
        )
        .await
        .expect("null");
    auto(b.id, "")
        .await
        .fails(400, "需要对方审核，不能自动加对方为好友");
    app.post(
        "/api/chat/updateUserinfo",
        Some(&b.token),
        json!({"fieldname": "invite_confirm", "fieldValue": 0}),
    )
    .await
    .ok();

    let mut wa = Ws::connect(&app, &a.token).await;
    let mut wb = Ws::connect(&app, &b.token).await;
    let note = "我是alice[平台注册用户],系统自动加为你好友的";
    assert_eq!(auto(b.id, note).await.ok(), &json!("ok"));
    assert_eq!(friend_rows(&app, a.id, b.id).await, 1);
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
    let list = applications(&app, &b, "1").await;
    assert_eq!(list["pendingCount"], json!(0));
    assert_eq!(list["alldata"][0]["status"], json!("agree"));
    assert_eq!(list["alldata"][0]["nickname"], json!(note));
    auto(b.id, "").await.fails(400, ALREADY_APPLIED);

    // No N-apply; each side gets its own N-friends copy.
    let got_b = received(&app, &mut wb, &b).await;
    let got_a = received(&app, &mut wa, &a).await;
    assert_eq!(got_b.len(), 1, "{got_b:?}");
    assert_eq!(got_a.len(), 1, "{got_a:?}");
    assert_eq!(
        (got_b[0]["from_id"].clone(), got_b[0]["to_id"].clone()),
        (json!(a.id), json!(b.id))
    );
    assert_eq!(got_b[0]["to_name"], json!("bobby"));
    assert_eq!(
        (got_a[0]["from_id"].clone(), got_a[0]["to_id"].clone()),
        (json!(b.id), json!(a.id))
    );
    assert_eq!(got_a[0]["type"], json!("systemNotice"));
}

#[tokio::test]
async fn auto_add_failure_rolls_back_the_application() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let db = &app.state.db;
    // Inject a failure after the application insert: the friendship table is missing.
    db.exec(
        "ALTER TABLE `goodfriend` RENAME TO `goodfriend_off`",
        vec![],
    )
    .await
    .expect("rename");
    let auto = || {
        app.post(
            "/api/chat/autoAddFriendAndAgree",
            Some(&a.token),
            json!({"friend_id": b.id}),
        )
    };
    auto().await.fails(400, "系统异常，请稍后再试");
    db.exec(
        "ALTER TABLE `goodfriend_off` RENAME TO `goodfriend`",
        vec![],
    )
    .await
    .expect("rename back");
    assert_eq!(
        application_rows(&app, a.id, b.id).await,
        0,
        "no junk application"
    );
    assert_eq!(auto().await.ok(), &json!("ok"), "a retry is not blocked");
    assert_eq!(friend_rows(&app, b.id, a.id).await, 1);
}

#[tokio::test]
async fn agree_failure_rolls_back_the_decision() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    apply(&app, &a, b.id, "").await.ok();
    let id = newest_application(&app, &b).await;
    let db = &app.state.db;
    db.exec(
        "ALTER TABLE `goodfriend` RENAME TO `goodfriend_off`",
        vec![],
    )
    .await
    .expect("rename");
    handle(&app, &b, id, "agree", "")
        .await
        .fails(400, "系统异常，请稍后再试");
    db.exec(
        "ALTER TABLE `goodfriend_off` RENAME TO `goodfriend`",
        vec![],
    )
    .await
    .expect("rename back");
    assert_eq!(applications(&app, &b, "1").await["pendingCount"], json!(1));
    handle(&app, &b, id, "agree", "").await.ok();
}

// ---------------------------------------------------------------------------------------------
// visitors (§3.5, §11 check 5)

#[tokio::test]
async fn visitor_token_walks_the_friend_whitelist() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    let v = app.visitor(&device_id()).await;
    let vt = v["token"].as_str().expect("token").to_string();
    let vid = v["id"].as_i64().expect("id");
    let vt = Some(vt.as_str());

    let r = app
        .post("/api/chat/applyfriend", vt, json!({"friend_id": a.id}))
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    let r = app
        .post(
            "/api/chat/autoAddFriendAndAgree",
            vt,
            json!({"friend_id": b.id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    let r = app
        .post(&format!("/api/chat/ismygoodfriend/{}", b.id), vt, json!({}))
        .await;
    assert_eq!(r.ok()["friend_id"], json!(b.id));
    app.post(&format!("/api/chat/ismygoodfriend/{}", a.id), vt, json!({}))
        .await
        .fails(400, "不是好友");
    let r = app
        .post(
            &format!("/api/chat/deletegoodfriend/{}", b.id),
            vt,
            json!({}),
        )
        .await;
    assert_eq!(r.ok(), &json!("删除好友成功"));

    for path in [
        "/api/chat/listapplyfriend/1",
        "/api/chat/goodfriendlist/1",
        "/api/chat/getgoodfriendinfo/1",
    ] {
        app.get(path, vt).await.fails(400, VISITOR_FORBIDDEN);
    }
    let posts = [
        "/api/chat/handleapply/1".to_string(),
        "/api/chat/setblackgoodfriend/1".to_string(),
        "/api/chat/setstargoodfriend/1".to_string(),
        "/api/chat/setmeOrfriendCanSee/1".to_string(),
        format!("/api/chat/isApplyfriend/{}", a.uuid),
    ];
    for path in &posts {
        app.post(
            path,
            vt,
            json!({"status": "agree", "friendlookme": 1, "melookfriend": 1}),
        )
        .await
        .fails(400, VISITOR_FORBIDDEN);
    }

    // The visitor is an ordinary applicant for the user it asked.
    let list = applications(&app, &a, "1").await;
    assert_eq!(list["alldata"][0]["user_id"], json!(vid));
    let id = list["alldata"][0]["id"].as_i64().expect("id");
    handle(&app, &a, id, "agree", "").await.ok();
    assert_eq!(friend_rows(&app, vid, a.id).await, 1);
}

// ---------------------------------------------------------------------------------------------
// notices (§6.2, §7.2)

#[tokio::test]
async fn apply_notice_reaches_an_online_target_live_with_the_exact_fields() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    set_nickname(&app, &a, "爱丽丝").await;
    let mut wb = Ws::connect(&app, &b.token).await;
    apply(&app, &a, b.id, "").await.ok();
    let n = wb.next_chat(WAIT).await.expect("N-apply");
    assert_eq!(
        keys(&n),
        [
            "id",
            "from_avatar",
            "from_name",
            "from_id",
            "to_id",
            "to_name",
            "to_avatar",
            "chatType",
            "type",
            "data",
            "redirect",
            "options",
            "create_time",
            "isremove",
            "msgidKey"
        ]
    );
    let from = format!("redirect-applyFriend-{}", a.id);
    assert_eq!(n["from_id"], json!(from));
    assert_eq!(n["msgidKey"], json!(from));
    assert_eq!(n["from_name"], json!("好友申请提醒"));
    assert_eq!(n["from_avatar"], json!(GROUP_ICON));
    assert_eq!(n["to_id"], json!(b.id));
    assert_eq!(n["to_name"], json!("bobby"));
    assert_eq!(n["to_avatar"], json!(DEFAULT_AVATAR));
    assert_eq!(
        (n["chatType"].clone(), n["type"].clone()),
        (json!("single"), json!("text"))
    );
    assert_eq!(
        n["data"],
        json!({"data": "用户[爱丽丝]申请添加您为好友，请尽快处理", "dataType": false, "otherData": null})
    );
    assert_eq!(
        n["redirect"],
        json!({"url": "/pages/applyMyfriend/applyMyfriend", "type": "navigateTo"})
    );
    assert_eq!(
        (n["options"].clone(), n["isremove"].clone()),
        (json!({}), json!(0))
    );
    assert!(n["create_time"].as_i64().expect("ms") > 1_600_000_000_000);
    assert_eq!(n["id"].as_str().expect("uuid").len(), 36);
    assert!(
        received(&app, &mut wb, &b).await.is_empty(),
        "delivered once, not again on replay"
    );
}

#[tokio::test]
async fn apply_notice_waits_for_an_offline_target_and_arrives_on_replay() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    apply(&app, &a, b.id, "").await.ok();
    let mut wb = Ws::connect(&app, &b.token).await;
    let got = received(&app, &mut wb, &b).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["from_id"],
        json!(format!("redirect-applyFriend-{}", a.id))
    );
    assert_eq!(
        got[0]["data"]["data"],
        json!("用户[alice]申请添加您为好友，请尽快处理")
    );
}

#[tokio::test]
async fn agree_sends_each_side_only_its_own_copy() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    set_nickname(&app, &b, "鲍勃").await;
    apply(&app, &a, b.id, "").await.ok();
    let mut wa = Ws::connect(&app, &a.token).await;
    let mut wb = Ws::connect(&app, &b.token).await;
    received(&app, &mut wb, &b).await;
    let id = newest_application(&app, &b).await;
    handle(&app, &b, id, "agree", "老A").await.ok();

    let got_a = received(&app, &mut wa, &a).await;
    let got_b = received(&app, &mut wb, &b).await;
    assert_eq!((got_a.len(), got_b.len()), (1, 1), "{got_a:?} {got_b:?}");
    let (na, nb) = (&got_a[0], &got_b[0]);
    let order = [
        "id",
        "from_avatar",
        "from_name",
        "from_id",
        "to_id",
        "to_name",
        "to_avatar",
        "chatType",
        "type",
        "data",
        "options",
        "create_time",
        "isremove",
    ];
    assert_eq!(keys(na), order);
    assert_eq!(keys(nb), order);
    let data = json!({"data": FRIENDS_TEXT, "dataType": false, "otherData": null});
    // To the applicant: from the approver, addressed with the approver's remark.
    assert_eq!(
        (
            na["from_id"].clone(),
            na["from_name"].clone(),
            na["to_id"].clone(),
            na["to_name"].clone()
        ),
        (json!(b.id), json!("鲍勃"), json!(a.id), json!("老A"))
    );
    // To the approver: from the applicant (shown with the remark).
    assert_eq!(
        (
            nb["from_id"].clone(),
            nb["from_name"].clone(),
            nb["to_id"].clone(),
            nb["to_name"].clone()
        ),
        (json!(a.id), json!("老A"), json!(b.id), json!("鲍勃"))
    );
    for n in [na, nb] {
        assert_eq!(n["data"], data);
        assert_eq!(
            (n["chatType"].clone(), n["type"].clone()),
            (json!("single"), json!("systemNotice"))
        );
        assert_eq!(
            (n["from_avatar"].clone(), n["to_avatar"].clone()),
            (json!(DEFAULT_AVATAR), json!(DEFAULT_AVATAR))
        );
    }
    assert_eq!(na["create_time"], nb["create_time"]);

    // refuse / ignore notify nobody.
    let c = user(&app, "carol").await;
    apply(&app, &c, b.id, "").await.ok();
    received(&app, &mut wb, &b).await;
    let id = newest_application(&app, &b).await;
    handle(&app, &b, id, "refuse", "").await.ok();
    assert!(received(&app, &mut wb, &b).await.is_empty());
}

#[tokio::test]
async fn friend_notices_queue_for_offline_users() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    let mut wa = Ws::connect(&app, &a.token).await;
    let got = received(&app, &mut wa, &a).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["data"], json!(FRIENDS_TEXT));
    assert_eq!(got[0]["from_id"], json!(b.id));
}

// ---------------------------------------------------------------------------------------------
// messaging interplay (MR §5.1 rules read the friend rows)

#[tokio::test]
async fn after_delete_sending_follows_the_recipients_send_count() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    set_userset(&app, &b, 0).await;
    app.send_text(&a.token, b.id, "as friends").await.ok();
    post_id(&app, &a, "deletegoodfriend", b.id).await.ok();
    app.send_text(&a.token, b.id, "after delete")
        .await
        .fails(400, "对方设置成：需要您先成为他的好友才能发消息");
    set_userset(&app, &b, 1).await;
    app.send_text(&a.token, b.id, "one more")
        .await
        .fails(400, "在成为好友之前，对方只允许向他发一条消息");
    set_userset(&app, &b, 2).await;
    app.send_text(&a.token, b.id, "unlimited").await.ok();
}

#[tokio::test]
async fn a_blacklisted_sender_cannot_send() {
    let app = spawn_app().await;
    let a = user(&app, "alice").await;
    let b = user(&app, "bobby").await;
    make_friends(&app, &a, &b, "").await;
    post_id(&app, &b, "setblackgoodfriend", a.id).await.ok();
    app.send_text(&a.token, b.id, "hi")
        .await
        .fails(400, "对方把你拉黑了，不能发送消息");
    app.send_text(&b.token, a.id, "b may still write")
        .await
        .ok();
    post_id(&app, &b, "setblackgoodfriend", a.id).await.ok();
    app.send_text(&a.token, b.id, "hi again").await.ok();
}
