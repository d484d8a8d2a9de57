//! Groups (GR §2–§10) end to end: the twelve endpoints with their exact texts, the notices each
//! member's socket receives, group messages over the timelines, QR codes decoded back to text,
//! races, the member cap, and one large group. The same tests run on SQLite and MariaDB.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::*;

const GROUP_ICON: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat/group.png";
const ALL_GROUP_COLS: &[&str] = &[
    "create_time",
    "id",
    "uuid",
    "user_id",
    "name",
    "avatar",
    "remark",
    "invite_confirm",
    "status",
    "order",
    "update_time",
];
const NOTICE_KEYS: &[&str] = &[
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
    "group",
];

// ---------------------------------------------------------------------------------------------
// helpers

#[derive(Clone)]
pub(crate) struct U {
    pub(crate) id: i64,
    pub(crate) token: String,
    pub(crate) name: String,
}

impl U {
    fn avatar(&self) -> String {
        format!("https://cdn.example/{}.png", self.name)
    }
}

/// A registered user whose avatar is `https://cdn.example/<name>.png`.
pub(crate) async fn user(app: &TestApp, name: &str) -> U {
    let (id, token, _) = app.register(name).await;
    app.state
        .db
        .exec(
            "UPDATE `user` SET `avatar` = ? WHERE `id` = ?",
            imrs::args![format!("https://cdn.example/{name}.png"), id],
        )
        .await
        .expect("set avatar");
    U {
        id,
        token,
        name: name.to_string(),
    }
}

pub(crate) async fn visitor(app: &TestApp) -> U {
    let d = app.visitor(&device_id()).await;
    U {
        id: d["id"].as_i64().expect("id"),
        token: d["token"].as_str().expect("token").to_string(),
        name: d["username"].as_str().expect("username").to_string(),
    }
}

/// `me`'s contact row ids, ordered by friend id.
async fn row_ids(app: &TestApp, me: i64) -> Vec<i64> {
    app.state
        .db
        .all::<(i64,)>(
            "SELECT `id` FROM `goodfriend` WHERE `user_id` = ? ORDER BY `friend_id`",
            imrs::args![me],
        )
        .await
        .expect("rows")
        .into_iter()
        .map(|r| r.0)
        .collect()
}

async fn newest_group(app: &TestApp, owner: i64) -> i64 {
    app.state
        .db
        .opt::<(i64,)>(
            "SELECT `id` FROM `group` WHERE `user_id` = ? ORDER BY `id` DESC LIMIT 1",
            imrs::args![owner],
        )
        .await
        .expect("query")
        .expect("a group")
        .0
}

/// `owner` befriends every member and creates a group with all of them; returns the group id.
pub(crate) async fn make_group(app: &TestApp, owner: &U, members: &[&U]) -> i64 {
    for m in members {
        app.befriend((owner.id, &owner.name), (m.id, &m.name)).await;
    }
    let rows = row_ids(app, owner.id).await;
    let mine: Vec<i64> = {
        let friends = app
            .state
            .db
            .all::<(i64, i64)>(
                "SELECT `id`,`friend_id` FROM `goodfriend` WHERE `user_id` = ?",
                imrs::args![owner.id],
            )
            .await
            .expect("rows");
        rows.into_iter()
            .filter(|r| {
                friends
                    .iter()
                    .any(|(id, f)| id == r && members.iter().any(|m| m.id == *f))
            })
            .collect()
    };
    let r = app
        .post(
            "/api/chat/group/create",
            Some(&owner.token),
            json!({ "userIds": mine }),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    newest_group(app, owner.id).await
}

pub(crate) async fn member_rows(app: &TestApp, gid: i64) -> Vec<(i64, i64)> {
    app.state
        .db
        .all::<(i64, i64)>(
            "SELECT `user_id`,`status` FROM `group_user` WHERE `group_id` = ? ORDER BY `id`",
            imrs::args![gid],
        )
        .await
        .expect("rows")
}

async fn mosaic(app: &TestApp, gid: i64) -> String {
    app.state
        .db
        .opt::<(String,)>(
            "SELECT `avatar` FROM `group` WHERE `id` = ?",
            imrs::args![gid],
        )
        .await
        .expect("query")
        .expect("group")
        .0
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.state
        .db
        .opt::<(i64,)>(&format!("SELECT COUNT(*) FROM `{table}`"), imrs::args![])
        .await
        .expect("count")
        .expect("a row")
        .0
}

pub(crate) async fn invite(app: &TestApp, who: &U, gid: i64, user_id: i64) -> Resp {
    app.post(
        "/api/chat/groupInviteUser",
        Some(&who.token),
        json!({"group_id": gid, "user_id": user_id, "inviteuser_id": who.id}),
    )
    .await
}

pub(crate) async fn set_mode(app: &TestApp, owner: &U, gid: i64, mode: i64) {
    let r = app
        .post(
            "/api/chat/groupAddUserSet",
            Some(&owner.token),
            json!({"group_id": gid, "addGroupSet": mode}),
        )
        .await;
    assert_eq!(r.ok(), &json!("设置成功"));
}

pub(crate) async fn decide(app: &TestApp, owner: &U, gid: i64, user_id: i64, kind: &str) -> Resp {
    app.post(
        "/api/chat/groupAgreeOrNo",
        Some(&owner.token),
        json!({"group_id": gid, "user_id": user_id, "type": kind}),
    )
    .await
}

pub(crate) async fn send_group(app: &TestApp, who: &U, gid: i64, text: &str) -> Resp {
    app.post(
        "/api/chat/socket/sendmessage",
        Some(&who.token),
        json!({"sendto_id": gid, "chatType": "group", "type": "text",
               "data": {"data": text, "dataType": false, "otherData": null}}),
    )
    .await
}

fn text(n: &Value) -> &str {
    n["data"]["data"]
        .as_str()
        .unwrap_or_else(|| panic!("text data: {n}"))
}

fn key_set(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set_of(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn without(keys: &[&str], drop: &[&str]) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| !drop.contains(k))
        .map(|k| k.to_string())
        .collect()
}

fn with(base: BTreeSet<String>, add: &[&str]) -> BTreeSet<String> {
    let mut s = base;
    s.extend(add.iter().map(|k| k.to_string()));
    s
}

fn local_slash(ms: &Value) -> String {
    let tz = imrs::time::parse_offset("+08:00").expect("offset");
    imrs::time::local_slash(ms.as_i64().expect("ms"), &tz)
}

/// GET the QR code with the token in the query, as the client's `<image src>` does.
async fn qr(
    app: &TestApp,
    who: &U,
    gid: i64,
    query: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let sep = if query.is_empty() { "" } else { "&" };
    let url = app.url(&format!(
        "/api/chat/groupQrcode/{gid}?token={}{sep}{query}",
        who.token
    ));
    let r = app.http.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body").to_vec())
}

fn decode_qr(png: &[u8]) -> String {
    let img = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("decodes").1
}

fn fail_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a JSON envelope")
}

// ---------------------------------------------------------------------------------------------
// API 二十一 create, 二十三 list, 二十四 info

#[tokio::test]
async fn create_sends_every_member_one_g_create_and_lists_the_group() {
    let app = spawn_app().await;
    let owner = user(&app, "owner1").await;
    let a = user(&app, "alice1").await;
    let b = user(&app, "bobby1").await;
    let c = user(&app, "carol1").await;
    // GD15: a NULL avatar occupies an empty slot, never the text `null`.
    app.state
        .db
        .exec(
            "UPDATE `user` SET `avatar` = NULL WHERE `id` = ?",
            imrs::args![b.id],
        )
        .await
        .expect("null avatar");
    let mut sockets = Vec::new();
    for u in [&owner, &a, &b, &c] {
        sockets.push(Ws::connect(&app, &u.token).await);
    }
    let gid = make_group(&app, &owner, &[&c, &a, &b]).await;

    let name = "owner1、alice1、bobby1、carol1";
    let mosaic_text = format!("{},{},,{}", owner.avatar(), a.avatar(), c.avatar());
    assert_eq!(mosaic(&app, gid).await, mosaic_text);
    assert_eq!(
        member_rows(&app, gid).await,
        vec![(owner.id, 1), (a.id, 1), (b.id, 1), (c.id, 1)],
        "creator first, then friends by id"
    );
    let mut ids = BTreeSet::new();
    for ws in sockets.iter_mut() {
        let n = ws.next_chat(WAIT).await.expect("G-create");
        assert_eq!(key_set(&n), set_of(NOTICE_KEYS), "{n}");
        assert_eq!(n["from_id"], json!(owner.id));
        assert_eq!(n["from_name"], "owner1");
        assert_eq!(n["from_avatar"], json!(owner.avatar()));
        assert_eq!(n["to_id"], json!(gid));
        assert_eq!(n["to_name"], name);
        assert_eq!(n["to_avatar"], json!(mosaic_text));
        assert_eq!(n["chatType"], "group");
        assert_eq!(n["type"], "systemNotice");
        assert_eq!(
            n["data"],
            json!({"data": "owner1创建了一个群，大家可以开始聊天了", "dataType": false, "otherData": null})
        );
        assert_eq!(n["options"], json!({}));
        assert_eq!(n["isremove"], json!(0));
        assert_eq!(key_set(&n["group"]), set_of(ALL_GROUP_COLS), "S1");
        assert_eq!(n["group"]["user_id"], json!(owner.id));
        assert_eq!(n["group"]["invite_confirm"], json!(0));
        assert_eq!(n["group"]["remark"], "");
        ids.insert(n["id"].as_str().expect("id").to_string());
        assert!(
            ws.drain_chats(QUIET).await.is_empty(),
            "exactly one G-create"
        );
    }
    assert_eq!(ids.len(), 1, "one notice object for every recipient");

    // API 二十三 for a member: the group with only my own row.
    let list = app.get("/api/chat/grouplist/1", Some(&b.token)).await;
    let items = list.ok().as_array().expect("array").clone();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(
        key_set(item),
        with(without(ALL_GROUP_COLS, &["update_time"]), &["group_users"])
    );
    assert_eq!(item["id"], json!(gid));
    assert_eq!(item["name"], name);
    assert_eq!(
        item["group_users"],
        json!([{"group_id": gid, "user_id": b.id, "nickname": "", "avatar": ""}])
    );

    // API 二十四: active rows with all columns but update_time, groupId and the user.
    let info = app
        .get(&format!("/api/chat/groupinfo/{gid}"), Some(&a.token))
        .await;
    let info = info.ok().clone();
    assert_eq!(
        key_set(&info),
        with(without(ALL_GROUP_COLS, &["update_time"]), &["group_users"])
    );
    let rows = info["group_users"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let member_keys = set_of(&[
        "create_time",
        "id",
        "group_id",
        "user_id",
        "nickname",
        "avatar",
        "status",
        "order",
        "groupId",
        "user",
    ]);
    for r in rows {
        assert_eq!(key_set(r), member_keys, "{r}");
        assert_eq!(
            key_set(&r["user"]),
            set_of(&["id", "username", "avatar", "nickname", "uuid", "role"])
        );
        assert_eq!(r["groupId"], json!(gid));
        assert_eq!(r["user"]["role"], "user");
    }
    assert_eq!(rows[0]["user"]["username"], "owner1");
    assert_eq!(
        rows[2]["user"]["avatar"], "",
        "NULL avatar is emitted as an empty string"
    );
}

#[tokio::test]
async fn create_refuses_foreign_rows_visitors_and_empty_lists() {
    let app = spawn_app().await;
    let owner = user(&app, "owner2").await;
    let a = user(&app, "alice2").await;
    let other = user(&app, "other2").await;
    app.befriend((other.id, "other2"), (a.id, "alice2")).await;
    let foreign = row_ids(&app, other.id).await;
    let create = |token: String, body: Value| {
        let app = &app;
        async move { app.post("/api/chat/group/create", Some(&token), body).await }
    };
    create(owner.token.clone(), json!({"userIds": foreign}))
        .await
        .fails(400, "请选择加入群聊的用户");
    create(owner.token.clone(), json!({}))
        .await
        .fails(422, "userIds不能为空");
    create(owner.token.clone(), json!({"userIds": ""}))
        .await
        .fails(422, "userIds不能为空");
    create(owner.token.clone(), json!({"userIds": []}))
        .await
        .fails(400, "请选择加入群聊的用户");
    let v = visitor(&app).await;
    create(v.token.clone(), json!({"userIds": [1]}))
        .await
        .fails(400, VISITOR_FORBIDDEN);
    // A disabled friend is not a usable member.
    app.befriend((owner.id, "owner2"), (a.id, "alice2")).await;
    app.state
        .db
        .exec(
            "UPDATE `user` SET `status` = 0 WHERE `id` = ?",
            imrs::args![a.id],
        )
        .await
        .expect("disable");
    let mine = row_ids(&app, owner.id).await;
    create(owner.token.clone(), json!({"userIds": mine}))
        .await
        .fails(400, "用户不存在，无法加入群聊");
    assert_eq!(count(&app, "group").await, 0, "nothing written");
}

#[tokio::test]
async fn create_accepts_every_userids_encoding() {
    let app = spawn_app().await;
    let owner = user(&app, "owner3").await;
    let a = user(&app, "alice3").await;
    let b = user(&app, "bobby3").await;
    app.befriend((owner.id, "owner3"), (a.id, "alice3")).await;
    app.befriend((owner.id, "owner3"), (b.id, "bobby3")).await;
    let rows = row_ids(&app, owner.id).await;
    let (r1, r2) = (rows[0].to_string(), rows[1].to_string());
    let bodies = [
        json!({"userIds": [rows[0], rows[1]]}),
        json!({"userIds": [r1, r2]}),
        json!({"userIds": format!("{r1},{r2}")}),
        json!({"userIds": rows[0]}),
    ];
    for body in bodies {
        app.post("/api/chat/group/create", Some(&owner.token), body)
            .await
            .ok();
    }
    for form in [
        vec![("userIds[]", r1.as_str()), ("userIds[]", r2.as_str())],
        vec![("userIds[0]", r1.as_str()), ("userIds[1]", r2.as_str())],
        vec![("userIds", r1.as_str()), ("userIds", r2.as_str())],
    ] {
        let r = app
            .post_form("/api/chat/group/create", Some(&owner.token), &form)
            .await;
        assert_eq!(r.ok(), &json!("ok"));
    }
    let sizes = app
        .state
        .db
        .all::<(i64,)>(
            "SELECT COUNT(*) FROM `group_user` GROUP BY `group_id` ORDER BY `group_id`",
            imrs::args![],
        )
        .await
        .expect("sizes");
    let sizes: Vec<i64> = sizes.into_iter().map(|r| r.0).collect();
    assert_eq!(sizes, vec![3, 3, 3, 2, 3, 3, 3]);
}

#[tokio::test]
async fn grouplist_pages_newest_first_and_treats_limit_zero_as_default() {
    let app = spawn_app().await;
    let owner = user(&app, "owner4").await;
    let a = user(&app, "alice4").await;
    let g1 = make_group(&app, &owner, &[&a]).await;
    let rows = row_ids(&app, owner.id).await;
    app.post(
        "/api/chat/group/create",
        Some(&owner.token),
        json!({ "userIds": rows }),
    )
    .await
    .ok();
    let g2 = newest_group(&app, owner.id).await;
    let ids = |r: Resp| -> Vec<i64> {
        r.ok()
            .as_array()
            .expect("array")
            .iter()
            .map(|g| g["id"].as_i64().expect("id"))
            .collect()
    };
    let get = |path: &'static str| app.get(path, Some(&a.token));
    assert_eq!(ids(get("/api/chat/grouplist/1?limit=1").await), vec![g2]);
    assert_eq!(ids(get("/api/chat/grouplist/2?limit=1").await), vec![g1]);
    assert_eq!(
        ids(get("/api/chat/grouplist/1?limit=0").await),
        vec![g2, g1]
    );
    assert_eq!(
        ids(get("/api/chat/grouplist/1?limit=abc").await),
        vec![g2, g1]
    );
    get("/api/chat/grouplist/abc")
        .await
        .fails(422, "页码 的值 `abc` 的类型不是 `int`");
    let stranger = user(&app, "stran4").await;
    assert_eq!(
        app.get("/api/chat/grouplist/1", Some(&stranger.token))
            .await
            .ok(),
        &json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// authorization matrix (§3)

#[tokio::test]
async fn owner_only_operations_are_refused_to_members_and_visitors() {
    let app = spawn_app().await;
    let owner = user(&app, "owner5").await;
    let a = user(&app, "alice5").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    let calls: Vec<(&str, Value, &str)> = vec![
        (
            "/api/chat/groupUpdateName",
            json!({"id": gid, "name": "新名字"}),
            "只有群主才能修改群名称",
        ),
        (
            "/api/chat/groupremark",
            json!({"id": gid, "remark": "公告"}),
            "只有群主才能修改群公告",
        ),
        (
            "/api/chat/groupAddUserSet",
            json!({"group_id": gid, "addGroupSet": 1}),
            "群不存在或者被封禁或者你无权操作",
        ),
        (
            "/api/chat/groupAgreeOrNo",
            json!({"group_id": gid, "user_id": a.id, "type": "agree"}),
            "群不存在或者被封禁或者你无权操作",
        ),
        (
            "/api/chat/groupDeleteUser",
            json!({"group_id": gid, "user_id": owner.id}),
            "只有群主才能操作",
        ),
    ];
    let v = visitor(&app).await;
    for (path, body, text) in &calls {
        app.post(path, Some(&a.token), body.clone())
            .await
            .fails(400, text);
        app.post(path, Some(&v.token), body.clone())
            .await
            .fails(400, VISITOR_FORBIDDEN);
    }
    app.post(
        "/api/chat/group/create",
        Some(&v.token),
        json!({"userIds": [1]}),
    )
    .await
    .fails(400, VISITOR_FORBIDDEN);

    // The six routes a visitor may call answer with their own rules.
    app.get("/api/chat/grouplist/1", Some(&v.token)).await.ok();
    app.get(&format!("/api/chat/groupinfo/{gid}"), Some(&v.token))
        .await
        .ok();
    app.post(
        "/api/chat/groupnickname",
        Some(&v.token),
        json!({"id": gid, "nickname": "游客"}),
    )
    .await
    .fails(400, "你不在该群聊中，无法修改昵称");
    app.post(
        "/api/chat/groupDeleteOrQuit",
        Some(&v.token),
        json!({"id": gid}),
    )
    .await
    .fails(400, "你不在该群聊中，操作失败");
    let (status, _, body) = qr(&app, &v, gid, "").await;
    assert_eq!(status, 400);
    assert_eq!(
        fail_body(&body),
        json!({"msg": "fail", "data": "群不存在或被封禁或者您不在该群聊中"})
    );
    assert_eq!(invite(&app, &v, gid, v.id).await.ok(), &json!("加群成功"));
    app.post(
        "/api/chat/groupnickname",
        Some(&v.token),
        json!({"id": gid, "nickname": "游客"}),
    )
    .await
    .ok();
    app.post(
        "/api/chat/groupDeleteOrQuit",
        Some(&v.token),
        json!({"id": gid}),
    )
    .await
    .ok();

    // Owner-side validation texts.
    let set = |v: Value| {
        app.post(
            "/api/chat/groupAddUserSet",
            Some(&owner.token),
            json!({"group_id": gid, "addGroupSet": v}),
        )
    };
    set(json!(11))
        .await
        .fails(422, "进群设置属性值 的数值 必须 大于等于 `0` 少于等于 `10`");
    set(json!("abc"))
        .await
        .fails(422, "进群设置属性值 的值 `abc` 的类型不是 `int`");
    assert_eq!(set(json!(0)).await.ok(), &json!("设置成功"));
    decide(&app, &owner, gid, a.id, "yes")
        .await
        .fails(422, "同意或者拒绝 的值 `yes` 必须在 [`agree`,`no`] 中");
    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid, "name": "一二三四五六七八九十一二三四五六七八九十一"}),
    )
    .await
    .fails(422, "群名称 的长度 必须 在 1 和 20 之间");
    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid}),
    )
    .await
    .fails(422, "群名称不能为空");
    app.post(
        "/api/chat/groupDeleteUser",
        Some(&owner.token),
        json!({"group_id": gid, "user_id": owner.id}),
    )
    .await
    .fails(400, "群主不能删除自己");
}

#[tokio::test]
async fn rename_and_remark_reach_active_members_only() {
    let app = spawn_app().await;
    let owner = user(&app, "owner6").await;
    let a = user(&app, "alice6").await;
    let x = user(&app, "xenia6").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    set_mode(&app, &owner, gid, 1).await;
    assert_eq!(
        invite(&app, &x, gid, x.id).await.ok(),
        &json!("等待群主同意")
    );
    let mut wo = Ws::connect(&app, &owner.token).await;
    let mut wa = Ws::connect(&app, &a.token).await;
    let mut wx = Ws::connect(&app, &x.token).await;
    app.offline(&owner.token).await.ok();
    app.offline(&a.token).await.ok();
    wo.drain_chats(QUIET).await;
    wa.drain_chats(QUIET).await;

    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid, "name": "技术交流群"}),
    )
    .await
    .ok();
    app.post(
        "/api/chat/groupremark",
        Some(&owner.token),
        json!({"id": gid, "remark": "本周五晚8点开会"}),
    )
    .await
    .ok();
    let s2 = with(set_of(ALL_GROUP_COLS), &["group_users"]);
    for ws in [&mut wo, &mut wa] {
        let got = ws.drain_chats(QUIET).await;
        assert_eq!(got.len(), 2, "{got:?}");
        let (rename, remark) = (&got[0], &got[1]);
        assert_eq!(text(rename), "群名称修改为：技术交流群");
        assert_eq!(rename["to_name"], "技术交流群");
        assert_eq!(rename["from_id"], json!(owner.id));
        assert_eq!(rename["from_name"], "owner6");
        assert_eq!(rename["from_avatar"], json!(owner.avatar()));
        assert_eq!(key_set(&rename["group"]), s2);
        assert_eq!(rename["group"]["name"], "技术交流群");
        assert_eq!(
            rename["group"]["group_users"],
            json!([{"group_id": gid, "user_id": owner.id, "nickname": "", "avatar": ""},
                   {"group_id": gid, "user_id": a.id, "nickname": "", "avatar": ""}]),
            "active rows only"
        );
        assert_eq!(text(remark), "[公告] \n\n 本周五晚8点开会");
        assert_eq!(remark["group"]["remark"], "本周五晚8点开会");
    }
    app.offline(&x.token).await.ok();
    assert!(
        wx.drain_chats(QUIET).await.is_empty(),
        "a pending applicant gets no announcement (GD9)"
    );
}

// ---------------------------------------------------------------------------------------------
// API 三十六 / 三十八: join modes

#[tokio::test]
async fn mode_0_invite_joins_directly_with_g_join_to_every_active_member() {
    let app = spawn_app().await;
    let owner = user(&app, "owner7").await;
    let a = user(&app, "alice7").await;
    let x = user(&app, "xenia7").await;
    let y = user(&app, "yvonn7").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    let mut wo = Ws::connect(&app, &owner.token).await;
    let mut wa = Ws::connect(&app, &a.token).await;
    let mut wx = Ws::connect(&app, &x.token).await;
    app.offline(&owner.token).await.ok();
    app.offline(&a.token).await.ok();
    wo.drain_chats(QUIET).await;
    wa.drain_chats(QUIET).await;
    let before = mosaic(&app, gid).await;

    // A member invites; the body's inviteuser_id is ignored (the inviter is the caller).
    let r = app
        .post(
            "/api/chat/groupInviteUser",
            Some(&a.token),
            json!({"group_id": gid, "user_id": x.id, "inviteuser_id": owner.id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("加群成功"));
    let s3_member = set_of(&["nickname", "avatar", "user_id", "status", "user"]);
    for ws in [&mut wo, &mut wa, &mut wx] {
        let n = ws.next_chat(WAIT).await.expect("G-join");
        assert_eq!(key_set(&n), set_of(NOTICE_KEYS));
        assert_eq!(text(&n), "[alice7]邀请 [xenia7] 加入了群聊");
        assert_eq!(n["from_name"], "加群申请提醒");
        assert_eq!(n["from_avatar"], GROUP_ICON);
        let from = n["from_id"].as_str().expect("string from_id");
        assert!(
            from.starts_with(&format!("redirect-applyAddGroup{gid}-{}-", x.id)),
            "{from}"
        );
        assert_eq!(n["to_id"], json!(gid));
        assert_eq!(n["to_avatar"], json!(before), "the mosaic before the join");
        assert_eq!(n["type"], "systemNotice");
        assert_eq!(
            key_set(&n["group"]),
            with(
                without(ALL_GROUP_COLS, &["order", "update_time"]),
                &["user", "group_users"]
            ),
            "S3"
        );
        assert_eq!(
            n["group"]["user"],
            json!({"username": "owner7", "nickname": "", "avatar": owner.avatar()})
        );
        let rows = n["group"]["group_users"].as_array().expect("rows");
        assert_eq!(rows.len(), 2, "rows before the insert");
        for r in rows {
            assert_eq!(key_set(r), s3_member);
        }
    }
    assert_eq!(
        mosaic(&app, gid).await,
        format!("{},{},{}", owner.avatar(), a.avatar(), x.avatar())
    );
    // Self-join (QR flow) with a sharer: no bracket prefix for a visitor sharer, but the member's
    // group nickname for a registered one.
    app.post(
        "/api/chat/groupnickname",
        Some(&a.token),
        json!({"id": gid, "nickname": "阿丽"}),
    )
    .await
    .ok();
    let r = app
        .post(
            "/api/chat/groupInviteUser",
            Some(&y.token),
            json!({"group_id": gid, "user_id": y.id, "inviteuser_id": a.id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("加群成功"));
    let n = wo.next_chat(WAIT).await.expect("G-join");
    assert_eq!(text(&n), "[阿丽]邀请 [yvonn7] 加入了群聊");
    invite(&app, &owner, gid, y.id)
        .await
        .fails(400, "用户已经在群里");
    invite(&app, &owner, gid, 999_999)
        .await
        .fails(400, "加群的用户不存在或已被封禁，无法加入群聊");
    invite(&app, &owner, 999_999, y.id)
        .await
        .fails(400, "群不存在或者被封禁");
}

#[tokio::test]
async fn mosaic_keeps_the_first_nine_active_members() {
    let app = spawn_app().await;
    let owner = user(&app, "owner8").await;
    let mut members = Vec::new();
    for i in 0..10 {
        members.push(user(&app, &format!("memb8{i}")).await);
    }
    let refs: Vec<&U> = members.iter().collect();
    let gid = make_group(&app, &owner, &refs[..5]).await;
    for m in &members[5..] {
        assert_eq!(
            invite(&app, &owner, gid, m.id).await.ok(),
            &json!("加群成功")
        );
    }
    let first_nine: Vec<String> = std::iter::once(&owner)
        .chain(members.iter())
        .take(9)
        .map(U::avatar)
        .collect();
    assert_eq!(mosaic(&app, gid).await, first_nine.join(","));
    // Removal always recomputes: the tenth member moves into the mosaic.
    let r = app
        .post(
            "/api/chat/groupDeleteUser",
            Some(&owner.token),
            json!({"group_id": gid, "user_id": members[0].id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("删除群成员成功"));
    let next: Vec<String> = std::iter::once(&owner)
        .chain(members[1..].iter())
        .take(9)
        .map(U::avatar)
        .collect();
    assert_eq!(mosaic(&app, gid).await, next.join(","));
}

#[tokio::test]
async fn mode_1_member_invite_waits_for_the_owner_and_approval_sends_g_join() {
    let app = spawn_app().await;
    let owner = user(&app, "owner9").await;
    let a = user(&app, "alice9").await;
    let b = user(&app, "bobby9").await;
    let x = user(&app, "xenia9").await;
    let gid = make_group(&app, &owner, &[&a, &b]).await;
    set_mode(&app, &owner, gid, 1).await;
    let mut wo = Ws::connect(&app, &owner.token).await;
    let mut wb = Ws::connect(&app, &b.token).await;
    app.offline(&owner.token).await.ok();
    app.offline(&b.token).await.ok();
    wo.drain_chats(QUIET).await;
    wb.drain_chats(QUIET).await;
    let before = mosaic(&app, gid).await;
    let x_uuid = app
        .state
        .db
        .opt::<(String,)>(
            "SELECT `uuid` FROM `user` WHERE `id` = ?",
            imrs::args![x.id],
        )
        .await
        .expect("uuid")
        .expect("row")
        .0;

    // A member invites, claiming the owner as inviter: no bypass (GD2).
    let r = app
        .post(
            "/api/chat/groupInviteUser",
            Some(&a.token),
            json!({"group_id": gid, "user_id": x.id, "inviteuser_id": owner.id, "addGroupDesc": "一起学习"}),
        )
        .await;
    assert_eq!(r.ok(), &json!("等待群主同意"));
    assert_eq!(member_rows(&app, gid).await.last(), Some(&(x.id, 2)));
    let n = wo.next_chat(WAIT).await.expect("G-apply");
    let sys = n["from_id"].as_str().expect("from_id").to_string();
    let ms = sys.rsplit('-').next().expect("ms").to_string();
    assert_eq!(sys, format!("redirect-applyAddGroup{gid}-{}-{ms}", x.id));
    assert_eq!(
        key_set(&n),
        with(set_of(NOTICE_KEYS), &["redirect", "msgidKey"])
    );
    assert_eq!(n["msgidKey"], json!(sys));
    assert_eq!(n["from_name"], "加群处理");
    assert_eq!(n["from_avatar"], GROUP_ICON);
    assert_eq!(n["to_id"], json!(owner.id));
    assert_eq!(n["to_name"], "owner9");
    assert_eq!(n["to_avatar"], json!(owner.avatar()));
    assert_eq!(n["chatType"], "single");
    assert_eq!(n["type"], "text");
    let gname = "owner9、alice9、bobby9";
    assert_eq!(
        text(&n),
        format!("请处理申请 [alice9]邀请 [xenia9] 加入了群[{gname}]")
    );
    let desc = json!({"addGroupUserType": "邀请进群", "inviteUser": "alice9 ",
        "addGroupTime": ms.parse::<i64>().expect("ms"), "addGroupDesc": "一起学习",
        "addGroupUserRole": "user", "msgidKey": sys});
    assert_eq!(n["redirect"]["desc"], desc);
    assert_eq!(n["redirect"]["type"], "navigateTo");
    let e = imrs::services::notices::encode_uri_component;
    let url = format!(
        "/pages/setpageInfo/setpageInfo?action=applyAddGroup&title=%E5%8A%A0%E7%BE%A4%E7%94%B3%E8%AF%B7&id={gid}&name={}&avatar={}&chatType=group&applyUserid={}&applyUsername=xenia9&applyUseruuid={x_uuid}&applyUseravatar={}&applydesc={}",
        e(gname),
        e(&before),
        x.id,
        e(&x.avatar()),
        e(&desc.to_string())
    );
    assert_eq!(n["redirect"]["url"], json!(url));
    assert_eq!(
        key_set(&n["group"]["group_users"][0]),
        set_of(&["nickname", "avatar", "user_id", "status", "user"])
    );
    assert!(
        wb.drain_chats(QUIET).await.is_empty(),
        "G-apply goes to the owner only"
    );

    // Pending: not a member for anything yet.
    let r = app
        .post(
            "/api/chat/groupInviteUser",
            Some(&a.token),
            json!({"group_id": gid, "user_id": x.id}),
        )
        .await;
    r.fails(400, "已申请加入群聊，正在等待群主同意");
    let info = app
        .get(&format!("/api/chat/groupinfo/{gid}"), Some(&x.token))
        .await;
    assert_eq!(info.ok()["group_users"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        app.get("/api/chat/grouplist/1", Some(&x.token)).await.ok(),
        &json!([])
    );
    send_group(&app, &x, gid, "hi")
        .await
        .fails(400, "您不在群里，无法发消息");

    // Approval.
    let mut wx = Ws::connect(&app, &x.token).await;
    assert_eq!(
        decide(&app, &owner, gid, x.id, "agree").await.ok(),
        &json!("处理成功")
    );
    for ws in [&mut wo, &mut wb, &mut wx] {
        let n = ws.next_chat(WAIT).await.expect("G-join");
        assert_eq!(text(&n), "[xenia9] 加入了群聊");
        assert_eq!(n["from_name"], "加群申请提醒");
        assert_eq!(n["to_avatar"], json!(before));
        assert_eq!(
            key_set(&n["group"]),
            with(
                without(ALL_GROUP_COLS, &["order", "update_time"]),
                &["group_users"]
            ),
            "S4"
        );
        let rows = n["group"]["group_users"].as_array().expect("rows");
        assert_eq!(rows.len(), 3, "active rows before the approval");
        assert_eq!(
            key_set(&rows[0]),
            set_of(&[
                "create_time",
                "id",
                "group_id",
                "user_id",
                "nickname",
                "avatar",
                "status",
                "groupId"
            ])
        );
        assert!(ws.drain_chats(QUIET).await.is_empty());
    }
    assert_eq!(mosaic(&app, gid).await, format!("{before},{}", x.avatar()));
    decide(&app, &owner, gid, x.id, "agree")
        .await
        .fails(400, "非法操作");

    // The owner's own invitation bypasses approval; a self-join applies on its own initiative.
    let y = user(&app, "yvonn9").await;
    let z = user(&app, "zelda9").await;
    assert_eq!(
        invite(&app, &owner, gid, y.id).await.ok(),
        &json!("加群成功")
    );
    wo.drain_chats(QUIET).await;
    let r = app
        .post(
            "/api/chat/groupInviteUser",
            Some(&z.token),
            json!({"group_id": gid, "user_id": z.id, "inviteuser_id": -1}),
        )
        .await;
    assert_eq!(r.ok(), &json!("等待群主同意"));
    let n = wo.next_chat(WAIT).await.expect("G-apply");
    assert_eq!(text(&n), format!("请处理申请 [zelda9] 加入了群[{gname}]"));
    assert_eq!(n["redirect"]["desc"]["addGroupUserType"], "用户自主进群");
    assert_eq!(n["redirect"]["desc"]["inviteUser"], "");
    // Rejection: the row goes, nobody is told, and the user may apply again.
    assert_eq!(
        decide(&app, &owner, gid, z.id, "no").await.ok(),
        &json!("处理成功")
    );
    assert!(wb
        .drain_chats(QUIET)
        .await
        .iter()
        .all(|n| !text(n).contains("zelda9")));
    assert_eq!(
        invite(&app, &z, gid, z.id).await.ok(),
        &json!("等待群主同意")
    );
}

#[tokio::test]
async fn mode_2_visitors_must_log_in_and_registered_users_join() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr10").await;
    let a = user(&app, "alic10").await;
    let x = user(&app, "xeni10").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    set_mode(&app, &owner, gid, 2).await;
    let mut wo = Ws::connect(&app, &owner.token).await;
    app.offline(&owner.token).await.ok();
    wo.drain_chats(QUIET).await;
    let v = visitor(&app).await;
    invite(&app, &v, gid, v.id)
        .await
        .fails(400, "请先登录再申请进群");
    invite(&app, &a, gid, v.id)
        .await
        .fails(400, "请先登录再申请进群");
    assert_eq!(invite(&app, &x, gid, x.id).await.ok(), &json!("加群成功"));
    let got = wo.drain_chats(QUIET).await;
    assert_eq!(got.len(), 1, "a G-join and no G-apply: {got:?}");
    assert_eq!(text(&got[0]), "[xeni10] 加入了群聊");
    assert_eq!(
        invite(&app, &owner, gid, v.id).await.ok(),
        &json!("加群成功")
    );
    let n = wo.next_chat(WAIT).await.expect("G-join");
    assert_eq!(text(&n), format!("[ownr10]邀请 [{}] 加入了群聊", v.name));
    // Modes 3–10 behave like 0.
    set_mode(&app, &owner, gid, 7).await;
    let y = user(&app, "yvon10").await;
    assert_eq!(invite(&app, &y, gid, y.id).await.ok(), &json!("加群成功"));
}

#[tokio::test]
async fn a_non_member_cannot_invite_and_a_disabled_applicant_cannot_be_approved() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr11").await;
    let a = user(&app, "alic11").await;
    let s = user(&app, "stra11").await;
    let x = user(&app, "xeni11").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    invite(&app, &s, gid, x.id)
        .await
        .fails(400, "你不在该群聊中，操作失败");
    set_mode(&app, &owner, gid, 1).await;
    assert_eq!(
        invite(&app, &x, gid, x.id).await.ok(),
        &json!("等待群主同意")
    );
    app.post(
        "/api/chat/groupnickname",
        Some(&x.token),
        json!({"id": gid, "nickname": "新人"}),
    )
    .await
    .fails(400, "你不在该群聊中，无法修改昵称");
    invite(&app, &x, gid, a.id)
        .await
        .fails(400, "你不在该群聊中，操作失败");
    let mut wa = Ws::connect(&app, &a.token).await;
    app.offline(&a.token).await.ok();
    wa.drain_chats(QUIET).await;
    app.state
        .db
        .exec(
            "UPDATE `user` SET `status` = 0 WHERE `id` = ?",
            imrs::args![x.id],
        )
        .await
        .expect("disable");
    decide(&app, &owner, gid, x.id, "agree")
        .await
        .fails(400, "用户不存在或者被封禁");
    assert_eq!(
        member_rows(&app, gid).await.len(),
        2,
        "the pending row is gone"
    );
    assert!(wa.drain_chats(QUIET).await.is_empty(), "no G-join");
}

// ---------------------------------------------------------------------------------------------
// removal, quit, dissolve

#[tokio::test]
async fn a_removed_member_can_no_longer_send_and_receives_nothing_after() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr12").await;
    let a = user(&app, "alic12").await;
    let b = user(&app, "bobb12").await;
    let gid = make_group(&app, &owner, &[&a, &b]).await;
    let mut wb = Ws::connect(&app, &b.token).await;
    app.offline(&b.token).await.ok();
    wb.drain_chats(QUIET).await;
    let r = app
        .post(
            "/api/chat/groupDeleteUser",
            Some(&owner.token),
            json!({"group_id": gid, "user_id": b.id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("删除群成员成功"));
    assert_eq!(
        mosaic(&app, gid).await,
        format!("{},{}", owner.avatar(), a.avatar())
    );
    send_group(&app, &b, gid, "还在吗")
        .await
        .fails(400, "您不在群里，无法发消息");
    send_group(&app, &a, gid, "after removal").await.ok();
    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid, "name": "新群名"}),
    )
    .await
    .ok();
    app.offline(&b.token).await.ok();
    assert!(
        wb.drain_chats(QUIET).await.is_empty(),
        "no notice of the removal, nothing afterwards"
    );
    // Removing someone who is not there is not an error.
    let r = app
        .post(
            "/api/chat/groupDeleteUser",
            Some(&owner.token),
            json!({"group_id": gid, "user_id": b.id}),
        )
        .await;
    assert_eq!(r.ok(), &json!("删除群成员成功"));
}

#[tokio::test]
async fn quit_notifies_the_owner_only() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr13").await;
    let a = user(&app, "alic13").await;
    let b = user(&app, "bobb13").await;
    let gid = make_group(&app, &owner, &[&a, &b]).await;
    let mosaic_before = mosaic(&app, gid).await;
    let mut wo = Ws::connect(&app, &owner.token).await;
    let mut wa = Ws::connect(&app, &a.token).await;
    app.offline(&owner.token).await.ok();
    app.offline(&a.token).await.ok();
    wo.drain_chats(QUIET).await;
    wa.drain_chats(QUIET).await;
    app.post(
        "/api/chat/groupnickname",
        Some(&b.token),
        json!({"id": gid, "nickname": "老二"}),
    )
    .await
    .ok();
    app.post(
        "/api/chat/groupDeleteOrQuit",
        Some(&b.token),
        json!({"id": gid}),
    )
    .await
    .ok();
    let n = wo.next_chat(WAIT).await.expect("G-quit");
    assert_eq!(key_set(&n), set_of(NOTICE_KEYS));
    assert_eq!(n["from_id"], json!(b.id));
    assert_eq!(n["from_name"], "老二");
    assert_eq!(n["chatType"], "group");
    assert_eq!(n["to_id"], json!(gid));
    assert_eq!(
        text(&n),
        format!("老二于 {} 已退出群聊", local_slash(&n["create_time"]))
    );
    assert_eq!(
        key_set(&n["group"]),
        with(without(ALL_GROUP_COLS, &["update_time"]), &["group_users"]),
        "S5"
    );
    let rows = n["group"]["group_users"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "every row before the quit");
    assert_eq!(
        key_set(&rows[2]),
        set_of(&[
            "create_time",
            "id",
            "group_id",
            "user_id",
            "nickname",
            "avatar",
            "status",
            "order",
            "groupId",
            "user"
        ])
    );
    assert_eq!(
        key_set(&rows[2]["user"]),
        set_of(&["id", "username", "avatar", "nickname"])
    );
    assert!(
        wa.drain_chats(QUIET).await.is_empty(),
        "other members hear nothing"
    );
    assert_eq!(
        mosaic(&app, gid).await,
        mosaic_before,
        "not recomputed on quit (GA10)"
    );
    send_group(&app, &b, gid, "x")
        .await
        .fails(400, "您不在群里，无法发消息");
}

#[tokio::test]
async fn dissolve_reaches_every_row_then_the_group_is_gone() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr14").await;
    let a = user(&app, "alic14").await;
    let x = user(&app, "xeni14").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    set_mode(&app, &owner, gid, 1).await;
    assert_eq!(
        invite(&app, &x, gid, x.id).await.ok(),
        &json!("等待群主同意")
    );
    let mut sockets = Vec::new();
    for u in [&owner, &a, &x] {
        let mut ws = Ws::connect(&app, &u.token).await;
        app.offline(&u.token).await.ok();
        ws.drain_chats(QUIET).await;
        sockets.push(ws);
    }
    let r = app
        .post(
            "/api/chat/groupDeleteOrQuit",
            Some(&owner.token),
            json!({"id": gid}),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    for ws in sockets.iter_mut() {
        let n = ws.next_chat(WAIT).await.expect("G-dissolve");
        assert_eq!(n["from_id"], json!(owner.id));
        assert_eq!(n["to_id"], json!(gid));
        assert_eq!(
            text(&n),
            format!("群主于 {} 解散了该群", local_slash(&n["create_time"]))
        );
        let rows = n["group"]["group_users"].as_array().expect("rows");
        assert_eq!(rows.len(), 3, "the pending applicant's row is included");
        assert!(ws.drain_chats(QUIET).await.is_empty());
    }
    assert!(member_rows(&app, gid).await.is_empty());
    app.post(
        "/api/chat/groupDeleteOrQuit",
        Some(&owner.token),
        json!({"id": gid}),
    )
    .await
    .fails(400, "群不存在");
    app.get(&format!("/api/chat/groupinfo/{gid}"), Some(&a.token))
        .await
        .fails(400, "群不存在或被封禁");
    assert_eq!(
        app.get("/api/chat/grouplist/1", Some(&a.token)).await.ok(),
        &json!([])
    );
    send_group(&app, &a, gid, "x")
        .await
        .fails(400, "群不存在或者已解散或者被封禁，无法发消息");
}

#[tokio::test]
async fn groupinfo_leaves_out_members_whose_user_is_gone() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr15").await;
    let a = user(&app, "alic15").await;
    let b = user(&app, "bobb15").await;
    let gid = make_group(&app, &owner, &[&a, &b]).await;
    app.state
        .db
        .exec("DELETE FROM `user` WHERE `id` = ?", imrs::args![b.id])
        .await
        .expect("hard delete");
    let info = app
        .get(&format!("/api/chat/groupinfo/{gid}"), Some(&a.token))
        .await;
    let ids: Vec<i64> = info.ok()["group_users"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["user_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![owner.id, a.id]);
}

// ---------------------------------------------------------------------------------------------
// group messages (MR §5.1 group branch, §6.2 R4, R8)

#[tokio::test]
async fn group_messages_reach_every_other_active_member_once_and_offline_ones_in_order() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr16").await;
    let a = user(&app, "alic16").await;
    let b = user(&app, "bobb16").await;
    let c = user(&app, "caro16").await;
    let gid = make_group(&app, &owner, &[&a, &b, &c]).await;
    let mut online = Vec::new();
    for u in [&owner, &a, &b] {
        let mut ws = Ws::connect(&app, &u.token).await;
        app.offline(&u.token).await.ok();
        ws.drain_chats(QUIET).await;
        online.push(ws);
    }
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            send_group(&app, &owner, gid, &format!("大家好{i}"))
                .await
                .ok()
                .clone(),
        );
    }
    let msg = &sent[0];
    assert_eq!(msg["chatType"], "group");
    assert_eq!(msg["to_id"], json!(gid));
    assert_eq!(msg["from_name"], "ownr16");
    let snapshot = &msg["group"];
    assert_eq!(
        key_set(snapshot),
        with(set_of(ALL_GROUP_COLS), &["group_users"])
    );
    let rows = snapshot["group_users"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(
            key_set(r),
            set_of(&["id", "group_id", "user_id", "nickname", "avatar", "status", "order"])
        );
    }
    assert!(online[0].drain_chats(QUIET).await.is_empty(), "no echo");
    for ws in &mut online[1..] {
        assert_eq!(
            ws.drain_chats(QUIET).await,
            sent,
            "each once, in order, byte-equal"
        );
    }
    let mut wc = Ws::connect(&app, &c.token).await;
    app.offline(&c.token).await.ok();
    let got = wc.drain_chats(QUIET).await;
    assert_eq!(got.len(), 4, "G-create then the three messages");
    assert_eq!(&got[1..], &sent[..]);
    app.offline(&c.token).await.ok();
    assert!(wc.drain_chats(QUIET).await.is_empty(), "never twice");
}

#[tokio::test]
async fn a_member_who_joins_later_never_receives_earlier_messages() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr17").await;
    let a = user(&app, "alic17").await;
    let x = user(&app, "xeni17").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    send_group(&app, &a, gid, "before").await.ok();
    assert_eq!(
        invite(&app, &owner, gid, x.id).await.ok(),
        &json!("加群成功")
    );
    let after = send_group(&app, &a, gid, "after").await.ok().clone();
    let mut wx = Ws::connect(&app, &x.token).await;
    app.offline(&x.token).await.ok();
    let got = wx.drain_chats(QUIET).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(text(&got[0]), "[ownr17]邀请 [xeni17] 加入了群聊");
    assert_eq!(got[1], after);
}

#[tokio::test]
async fn the_group_nickname_names_the_sender() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr18").await;
    let a = user(&app, "alic18").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    app.post(
        "/api/chat/groupnickname",
        Some(&a.token),
        json!({"id": gid, "nickname": "阿丽"}),
    )
    .await
    .ok();
    let m = send_group(&app, &a, gid, "hi").await.ok().clone();
    assert_eq!(m["from_name"], "阿丽");
    app.post(
        "/api/chat/groupnickname",
        Some(&a.token),
        json!({"id": gid, "nickname": "阿丽"}),
    )
    .await
    .ok();
}

// ---------------------------------------------------------------------------------------------
// QR codes (§6)

#[tokio::test]
async fn qr_codes_decode_to_the_exact_texts() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr19").await;
    let a = user(&app, "alic19").await;
    let s = user(&app, "stra19").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid, "name": "技术交流群"}),
    )
    .await
    .ok();

    let (status, headers, png) = qr(&app, &a, gid, "").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        decode_qr(&png),
        format!(r#"{{"id":{gid},"name":"技术交流群"}}"#)
    );
    let img = image::load_from_memory(&png).expect("png");
    assert_eq!(img.width() % 10, 0, "10 px modules");
    assert_eq!(
        ((img.width() / 10) - 8 - 17) % 4,
        0,
        "quiet zone of 4 modules"
    );

    let (_, _, png) = qr(
        &app,
        &a,
        gid,
        "type=H5&http=http%3A%2F%2Fh%2F&chatType=group",
    )
    .await;
    assert_eq!(
        decode_qr(&png),
        format!("http://h/#/pages/setpageInfo/setpageInfo?action=autoAddGroup&title=%E7%BE%A4%E4%BB%8B%E7%BB%8D&id={gid}&chatType=group&name=技术交流群")
    );
    // GD13: `&` in a raw slot is escaped.
    app.post(
        "/api/chat/groupUpdateName",
        Some(&owner.token),
        json!({"id": gid, "name": "a&b=c"}),
    )
    .await
    .ok();
    let (_, _, png) = qr(&app, &a, gid, "type=H5&http=http%3A%2F%2Fh%2F").await;
    assert!(decode_qr(&png).ends_with("&name=a%26b%3Dc"));

    let (status, _, body) = qr(&app, &s, gid, "").await;
    assert_eq!(status, 400);
    assert_eq!(
        fail_body(&body)["data"],
        "群不存在或被封禁或者您不在该群聊中"
    );

    // Personal codes (id = a user id).
    let (status, _, png) = qr(&app, &s, a.id, "chatType=single").await;
    assert_eq!(status, 200, "never 500 (GA17)");
    assert_eq!(
        decode_qr(&png),
        format!(r#"{{"id":{},"name":"alic19","chatType":"single"}}"#, a.id)
    );
    let (_, _, png) = qr(
        &app,
        &s,
        a.id,
        "type=H5&http=http%3A%2F%2F192.168.2.6%3A8081%2F&chatType=single",
    )
    .await;
    assert_eq!(
        decode_qr(&png),
        format!(
            "http://192.168.2.6:8081/#/pages/setpageInfo/setpageInfo?action=autoAddGroup&title={}&id={}&chatType=single&name=alic19&avatar={}",
            imrs::services::notices::encode_uri_component("加用户[alic19]为好友"),
            a.id,
            a.avatar()
        )
    );
    let (status, _, body) = qr(&app, &s, a.id, "type=H5&http=x&chatType=foo").await;
    assert_eq!(status, 404);
    assert_eq!(fail_body(&body), json!({"msg": "fail", "data": "404 错误"}));
    let (status, _, body) = qr(&app, &s, 999_999, "chatType=single").await;
    assert_eq!(status, 400);
    assert_eq!(fail_body(&body)["data"], "用户不存在或被封禁");
    // An `http` over 512 characters counts as absent: the JSON code.
    let long = "h".repeat(513);
    let (_, _, png) = qr(&app, &a, gid, &format!("type=H5&http={long}")).await;
    assert!(decode_qr(&png).starts_with('{'));
    let (status, _, body) = qr(&app, &a, 0, "").await;
    assert_eq!(status, 422);
    assert_eq!(
        fail_body(&body)["data"],
        "群id或者个人id 的数值 必须 在 1 和 10000000000000000 之间"
    );
}

// ---------------------------------------------------------------------------------------------
// races, limits

#[tokio::test]
async fn concurrent_identical_invites_make_one_row() {
    let app = spawn_app().await;
    let owner = user(&app, "ownr20").await;
    let a = user(&app, "alic20").await;
    let x = user(&app, "xeni20").await;
    let y = user(&app, "yvon20").await;
    let gid = make_group(&app, &owner, &[&a]).await;
    let answers: Vec<Resp> = join_all((0..4).map(|_| invite(&app, &owner, gid, x.id))).await;
    let mut texts: Vec<String> = answers
        .iter()
        .map(|r| r.body["data"].as_str().expect("text").to_string())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        vec![
            "加群成功",
            "用户已经在群里",
            "用户已经在群里",
            "用户已经在群里"
        ]
    );
    assert_eq!(
        member_rows(&app, gid)
            .await
            .iter()
            .filter(|r| r.0 == x.id)
            .count(),
        1
    );
    set_mode(&app, &owner, gid, 1).await;
    let answers: Vec<Resp> = join_all((0..4).map(|_| invite(&app, &a, gid, y.id))).await;
    let mut texts: Vec<String> = answers
        .iter()
        .map(|r| r.body["data"].as_str().expect("text").to_string())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        vec![
            "已申请加入群聊，正在等待群主同意",
            "已申请加入群聊，正在等待群主同意",
            "已申请加入群聊，正在等待群主同意",
            "等待群主同意"
        ]
    );
    assert_eq!(
        member_rows(&app, gid)
            .await
            .iter()
            .filter(|r| r.0 == y.id)
            .count(),
        1
    );

    // Concurrent approvals: one wins, one G-join.
    let mut wa = Ws::connect(&app, &a.token).await;
    app.offline(&a.token).await.ok();
    wa.drain_chats(QUIET).await;
    let answers: Vec<Resp> =
        join_all((0..3).map(|_| decide(&app, &owner, gid, y.id, "agree"))).await;
    let mut texts: Vec<String> = answers
        .iter()
        .map(|r| r.body["data"].as_str().expect("text").to_string())
        .collect();
    texts.sort();
    assert_eq!(texts, vec!["处理成功", "非法操作", "非法操作"]);
    let joins = wa.drain_chats(QUIET).await;
    assert_eq!(joins.len(), 1, "{joins:?}");
}

#[tokio::test]
async fn the_member_cap_is_enforced_by_create_invite_and_approval() {
    let app = spawn_with(|s| s.group_max_members = Some(3)).await;
    let owner = user(&app, "ownr21").await;
    let mut friends = Vec::new();
    for i in 0..3 {
        friends.push(user(&app, &format!("frnd2{i}")).await);
    }
    for f in &friends {
        app.befriend((owner.id, &owner.name), (f.id, &f.name)).await;
    }
    let rows = row_ids(&app, owner.id).await;
    app.post(
        "/api/chat/group/create",
        Some(&owner.token),
        json!({ "userIds": rows }),
    )
    .await
    .fails(400, "群成员已达上限");
    assert_eq!(count(&app, "group").await, 0, "nothing written");
    app.post(
        "/api/chat/group/create",
        Some(&owner.token),
        json!({ "userIds": &rows[..2] }),
    )
    .await
    .ok();
    let gid = newest_group(&app, owner.id).await;
    invite(&app, &owner, gid, friends[2].id)
        .await
        .fails(400, "群成员已达上限");
    // A pending row that predates a full group (e.g. a lowered cap) cannot be approved.
    let now = imrs::time::now_db();
    app.state
        .db
        .exec(
            "INSERT INTO `group_user` (`group_id`,`user_id`,`nickname`,`avatar`,`status`,`order`,`create_time`,`update_time`) VALUES (?,?,'','',2,50,?,?)",
            imrs::args![gid, friends[2].id, now, now],
        )
        .await
        .expect("pending row");
    decide(&app, &owner, gid, friends[2].id, "agree")
        .await
        .fails(400, "群成员已达上限");
}

#[tokio::test]
async fn self_joins_are_rate_limited_per_user() {
    let app = spawn_with(|s| s.group_join_limit = Some(1)).await;
    let owner = user(&app, "ownr22").await;
    let a = user(&app, "alic22").await;
    let x = user(&app, "xeni22").await;
    let g1 = make_group(&app, &owner, &[&a]).await;
    let rows = row_ids(&app, owner.id).await;
    app.post(
        "/api/chat/group/create",
        Some(&owner.token),
        json!({ "userIds": rows }),
    )
    .await
    .ok();
    let g2 = newest_group(&app, owner.id).await;
    assert_eq!(invite(&app, &x, g1, x.id).await.ok(), &json!("加群成功"));
    invite(&app, &x, g2, x.id)
        .await
        .fails(400, "请求过于频繁，请1个小时后再试");
    // Invitations of others are counted separately.
    let y = user(&app, "yvon22").await;
    assert_eq!(invite(&app, &x, g1, y.id).await.ok(), &json!("加群成功"));
}

// ---------------------------------------------------------------------------------------------
// one large group (GD8): one stored entry per message, each online member gets it once

#[tokio::test]
async fn a_message_to_a_large_group_is_stored_once_and_reaches_each_online_member_once() {
    const MEMBERS: usize = 2000;
    const ONLINE: usize = 200;
    let app = spawn_with(|s| {
        s.group_max_members = Some(MEMBERS as u64);
        s.group_snapshot_members = Some(MEMBERS as u64);
    })
    .await;
    let owner = user(&app, "bigown").await;
    let mut tx = app.state.db.begin().await.expect("tx");
    let gid = imrs::store::groups::insert_group(&mut tx, owner.id, "大群", "")
        .await
        .expect("group");
    imrs::store::groups::insert_member(&mut tx, gid, owner.id, 1)
        .await
        .expect("owner row");
    imrs::store::timeline::open_cursor(&mut tx, gid, owner.id)
        .await
        .expect("cursor");
    let mut tokens = Vec::new();
    for i in 1..MEMBERS {
        let username = format!("big{i:05}");
        let id = imrs::store::users::insert(
            &mut tx,
            &imrs::store::users::NewUser {
                username: &username,
                password_hash: "x",
                role: "user",
                device: None,
                stats: ["", "", "", ""],
                last_login: None,
            },
        )
        .await
        .expect("user");
        imrs::store::groups::insert_member(&mut tx, gid, id, 1)
            .await
            .expect("member row");
        imrs::store::timeline::open_cursor(&mut tx, gid, id)
            .await
            .expect("cursor");
        if tokens.len() < ONLINE {
            let issued = imrs::services::tokens::issue(&mut tx, &app.state.keys, id, "user", None)
                .await
                .expect("token");
            tokens.push(issued.token);
        }
    }
    tx.commit().await.expect("commit");

    let mut sockets = Vec::new();
    for chunk in tokens.chunks(50) {
        sockets.extend(join_all(chunk.iter().map(|t| Ws::connect(&app, t))).await);
    }
    let (entries, inbox) = (count(&app, "im_entry").await, count(&app, "im_inbox").await);
    let msg = send_group(&app, &owner, gid, "全体成员").await.ok().clone();
    assert_eq!(
        msg["group"]["group_users"].as_array().map(Vec::len),
        Some(MEMBERS)
    );
    let added = (
        count(&app, "im_entry").await - entries,
        count(&app, "im_inbox").await - inbox,
    );
    eprintln!(
        "rows added for one message to {MEMBERS} members: im_entry {}, im_inbox {}",
        added.0, added.1
    );
    assert_eq!(added, (1, 0), "one entry, no per-recipient rows");
    let got = join_all(sockets.iter_mut().map(|ws| async move {
        let mut ids = Vec::new();
        while let Some(d) = ws
            .next_chat(if ids.is_empty() { WAIT } else { QUIET })
            .await
        {
            ids.push(d["id"].clone());
        }
        ids
    }))
    .await;
    for ids in got {
        assert_eq!(
            ids,
            vec![msg["id"].clone()],
            "exactly once per online member"
        );
    }
}
