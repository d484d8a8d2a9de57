//! Websocket gateway and 1:1 messaging (MR §3, §5, §6).

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn online_delivery_sends_the_exact_message_once_and_no_echo() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("alice1").await;
    let (b, tb, _) = app.register("bobby1").await;
    app.befriend((a, "alice1"), (b, "bobby1")).await;
    let mut wa = Ws::connect(&app, &ta).await;
    let mut wb = Ws::connect(&app, &tb).await;
    let r = app.send_text(&ta, b, "你好，阿祖").await;
    let msg = r.ok().clone();
    assert_eq!(msg["to_id"], json!(b));
    assert_eq!(msg["options"], json!(null));
    assert_eq!(
        msg["data"],
        json!({"data": "你好，阿祖", "dataType": false, "otherData": null})
    );
    let got = wb.next_chat(WAIT).await.expect("delivered");
    assert_eq!(got, msg, "the frame's data equals the HTTP answer");
    assert!(wb.drain_chats(QUIET).await.is_empty(), "delivered once");
    assert!(
        wa.drain_chats(QUIET).await.is_empty(),
        "no echo to the sender"
    );
}

#[tokio::test]
async fn offline_messages_arrive_on_pull_in_order_exactly_once() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("alice2").await;
    let (b, tb, _) = app.register("bobby2").await;
    app.befriend((a, "alice2"), (b, "bobby2")).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.send_text(&ta, b, &format!("m{i}")).await.ok()["id"].clone());
    }
    let mut wb = Ws::connect(&app, &tb).await;
    assert!(
        wb.drain_chats(QUIET).await.is_empty(),
        "nothing is pushed on connect"
    );
    assert_eq!(app.offline(&tb).await.ok(), &json!("ok"));
    let got: Vec<_> = wb
        .drain_chats(QUIET)
        .await
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(got, ids);
    app.offline(&tb).await.ok();
    assert!(
        wb.drain_chats(QUIET).await.is_empty(),
        "a second pull pushes nothing"
    );
}

#[tokio::test]
async fn handshake_without_token_gets_the_fail_frame_and_close_4004() {
    let app = spawn_app().await;
    let mut ws = Ws::open_url(&format!("ws://{}/ws", app.addr)).await;
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg":"fail","data":"缺少 token 参数"}))
    );
    let mut ws = Ws::open(&app, "garbage").await;
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg":"fail","data":"Token 不合法"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4004));
}

/// Log `username` in through the signed `visitorloginChat` on `device`: a device-bound token.
async fn login_on(app: &TestApp, username: &str, device: &str) -> String {
    let (sign, body) = signed_body(device, json!({"username": username, "password": "123456"}));
    let r = app
        .post_signed("/api/visitorloginChat", Some(&sign), body)
        .await;
    r.ok()["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn login_from_another_device_kicks_the_old_sockets_without_a_close_frame() {
    let app = spawn_app().await;
    let (a, _, _) = app.register("kicked1").await;
    let (dev1, dev2) = (device_id(), device_id());
    let t1 = login_on(&app, "kicked1", &dev1).await;
    let mut old = Ws::connect(&app, &t1).await;
    let mut newest = Ws::connect(&app, &t1).await;
    let _t2 = login_on(&app, "kicked1", &dev2).await;
    let kick = newest
        .next_chat(WAIT)
        .await
        .expect("kick frame on the newest socket");
    assert_eq!(kick["from_id"], json!(format!("redirect-forceLogout-{a}")));
    assert_eq!(kick["from_name"], "账号异地登录");
    assert_eq!(
        kick["data"]["data"],
        "你的账号在其他设备登录了，您当前设备会下线"
    );
    assert_eq!(kick["redirect"], json!(null));
    assert_eq!(newest.ended(WAIT).await, Ended::Abnormal);
    assert_eq!(
        old.ended(WAIT).await,
        Ended::Abnormal,
        "every socket of the token is dropped, no kick frame"
    );
    let mut again = Ws::open(&app, &t1).await;
    assert_eq!(
        again.next_json(WAIT).await,
        Some(json!({"msg":"fail","data":"Token 不合法"}))
    );
    assert_eq!(again.ended(WAIT).await, Ended::Close(4004));
    app.offline(&t1).await.fails(400, "Token 令牌不合法！");
}

#[tokio::test]
async fn same_device_login_leaves_the_old_socket_open_and_inert() {
    let app = spawn_app().await;
    let (a, _, _) = app.register("samedev1").await;
    let (b, tb, _) = app.register("samedev2").await;
    app.befriend((a, "samedev1"), (b, "samedev2")).await;
    let dev = device_id();
    let t1 = login_on(&app, "samedev1", &dev).await;
    let mut old = Ws::connect(&app, &t1).await;
    let t2 = login_on(&app, "samedev1", &dev).await;
    let mut new = Ws::connect(&app, &t2).await;
    app.send_text(&tb, a, "hi").await.ok();
    assert_eq!(
        app.offline(&t1).await.ok(),
        &json!("ok"),
        "a retired token's 二十二 answers ok"
    );
    assert!(
        new.next_chat(WAIT).await.is_some(),
        "the new session receives"
    );
    assert!(
        old.drain_chats(QUIET).await.is_empty(),
        "the inert socket receives nothing"
    );
    assert_eq!(old.ended(QUIET).await, Ended::Open);
    app.post("/api/chat/searchUser", Some(&t1), json!({"keyword":"x"}))
        .await
        .fails(400, "Token 令牌不合法！");
    // Reconnecting with the retired token opens an inert socket: no welcome, never closed.
    let mut inert = Ws::open(&app, &t1).await;
    assert_eq!(inert.next_json(QUIET).await, None);
    assert_eq!(inert.ended(QUIET).await, Ended::Open);
}

#[tokio::test]
async fn logout_keeps_sockets_open_and_inert() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("logout01").await;
    let (_b, tb, _) = app.register("logout02").await;
    let mut ws = Ws::connect(&app, &ta).await;
    app.post("/api/chat/logout", Some(&ta), json!({}))
        .await
        .ok();
    app.post("/api/chat/userset", Some(&tb), json!({"userset": "{}"}))
        .await
        .ok();
    app.send_text(&tb, a, "after logout").await.ok();
    assert!(ws.drain_chats(QUIET).await.is_empty());
    assert_eq!(ws.ended(QUIET).await, Ended::Open);
    assert_eq!(app.offline(&ta).await.ok(), &json!("ok"));
}

#[tokio::test]
async fn ban_sends_the_fail_frame_and_closes_with_4003() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("banned01").await;
    let mut ws = Ws::connect(&app, &ta).await;
    imrs::services::accounts::set_enabled(&app.state, a, false)
        .await
        .expect("ban");
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg":"fail","data":"你已被管理员禁用"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    let mut again = Ws::open(&app, &ta).await;
    assert_eq!(
        again.next_json(WAIT).await,
        Some(json!({"msg":"fail","data":"你已被管理员禁用"}))
    );
    assert_eq!(again.ended(WAIT).await, Ended::Close(4004));
}

#[tokio::test]
async fn graceful_shutdown_drops_legacy_sockets_without_a_close_frame() {
    let mut app = spawn_app().await;
    let (_a, ta, _) = app.register("shutdn01").await;
    let mut ws = Ws::connect(&app, &ta).await;
    app.state.delivery.shutdown();
    assert_eq!(ws.ended(WAIT).await, Ended::Abnormal);
    app.task.take();
}

#[tokio::test]
async fn pings_are_answered_and_bad_frames_ignored_while_oversized_frames_drop_only_that_socket() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("frames01").await;
    let (b, tb, _) = app.register("frames02").await;
    app.befriend((a, "frames01"), (b, "frames02")).await;
    let mut ws = Ws::connect(&app, &ta).await;
    ws.send_text("ping").await;
    assert_eq!(ws.next_json(WAIT).await.expect("pong")["type"], "pong");
    ws.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(ws.next_json(WAIT).await.expect("pong")["type"], "pong");
    ws.send_text(&format!(r#"{{"type":"ping","token":"{ta}"}}"#))
        .await;
    assert_eq!(ws.next_json(WAIT).await.expect("pong")["type"], "pong");
    ws.send_text(r#"{"type":"ping","token":"garbage"}"#).await;
    for junk in ["{", "[1,2]", r#"{"type":"whatever"}"#, "null", "\u{0}"] {
        ws.send_text(junk).await;
    }
    assert_eq!(
        ws.next_json(QUIET).await,
        None,
        "no reply to a bad-token ping or junk"
    );
    assert_eq!(ws.ended(QUIET).await, Ended::Open);
    let mut wb = Ws::connect(&app, &tb).await;
    ws.send_text(&"x".repeat(70 * 1024)).await;
    assert_eq!(
        ws.ended(WAIT).await,
        Ended::Abnormal,
        "oversized frame: dropped without Close"
    );
    app.send_text(&ta, b, "still fine").await.ok();
    assert!(
        wb.next_chat(WAIT).await.is_some(),
        "other users are unaffected"
    );
}

#[tokio::test]
async fn only_the_newest_socket_of_a_token_receives_and_the_older_takes_over_when_it_closes() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("sock0001").await;
    let (b, tb, _) = app.register("sock0002").await;
    app.befriend((a, "sock0001"), (b, "sock0002")).await;
    let mut s1 = Ws::connect(&app, &tb).await;
    let mut s2 = Ws::connect(&app, &tb).await;
    app.send_text(&ta, b, "one").await.ok();
    assert_eq!(
        s2.next_chat(WAIT).await.expect("newest")["data"]["data"],
        "one"
    );
    // Reading on answers the server's Ping: the entry is confirmed on s2.
    assert!(s2.drain_chats(QUIET).await.is_empty());
    assert!(s1.drain_chats(QUIET).await.is_empty(), "never both");
    drop(s2);
    tokio::time::sleep(QUIET).await;
    app.send_text(&ta, b, "two").await.ok();
    assert_eq!(
        s1.next_chat(WAIT).await.expect("older takes over")["data"]["data"],
        "two"
    );
}

#[tokio::test]
async fn an_offline_pull_that_races_the_handshake_is_not_lost() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("race0001").await;
    let (b, tb, _) = app.register("race0002").await;
    app.befriend((a, "race0001"), (b, "race0002")).await;
    let id = app.send_text(&ta, b, "queued").await.ok()["id"].clone();
    // The pull comes first: owed to the token and run when its socket registers.
    app.offline(&tb).await.ok();
    let mut ws = Ws::connect(&app, &tb).await;
    let got = ws.drain_chats(QUIET).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], id);
}

#[tokio::test]
async fn an_entry_whose_socket_ends_unconfirmed_is_written_again_and_a_confirmed_one_never() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("confirm1").await;
    let (b, tb, _) = app.register("confirm2").await;
    app.befriend((a, "confirm1"), (b, "confirm2")).await;
    // Socket 1 reads the frame (and so answers the server's Ping): confirmed.
    let mut s1 = Ws::connect(&app, &tb).await;
    let first = app.send_text(&ta, b, "confirmed").await.ok()["id"].clone();
    assert_eq!(s1.next_chat(WAIT).await.expect("live")["id"], first);
    assert!(s1.drain_chats(QUIET).await.is_empty());
    drop(s1);
    // Socket 2 never reads after connecting: its entry stays unconfirmed and is replayed later.
    let s2 = Ws::connect(&app, &tb).await;
    let second = app.send_text(&ta, b, "unconfirmed").await.ok()["id"].clone();
    tokio::time::sleep(QUIET).await;
    drop(s2);
    tokio::time::sleep(QUIET).await;
    let mut s3 = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    let got: Vec<_> = s3
        .drain_chats(QUIET)
        .await
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(got, vec![second], "only the unconfirmed entry comes back");
}

#[tokio::test]
async fn send_count_rules_give_their_exact_texts() {
    let app = spawn_app().await;
    let (r, tr, _) = app.register("recv0001").await;
    let (_s, ts, _) = app.register("send0001").await;
    let visitor = app.visitor(&device_id()).await;
    let tv = visitor["token"].as_str().expect("token").to_string();
    let set = |c: &str| json!({"userset": format!(r#"{{"chatset":{{"visitor":{{"sendCount":{c},"needFollow":false}},"user":{{"sendCount":{c},"needFollow":false}}}}}}"#)});
    app.post("/api/chat/userset", Some(&tr), set("0"))
        .await
        .ok();
    app.send_text(&ts, r, "x")
        .await
        .fails(400, "对方设置成：需要您先成为他的好友才能发消息");
    app.send_text(&tv, r, "x")
        .await
        .fails(400, "你们不是好友关系，对方设置成：先登录才能发消息");
    app.post("/api/chat/userset", Some(&tr), set(r#""0""#))
        .await
        .ok();
    app.send_text(&ts, r, "x")
        .await
        .fails(400, "对方设置成：需要您先成为他的好友才能发消息");
    app.post("/api/chat/userset", Some(&tr), set("1"))
        .await
        .ok();
    app.send_text(&ts, r, "first").await.ok();
    app.send_text(&ts, r, "second")
        .await
        .fails(400, "在成为好友之前，对方只允许向他发一条消息");
    app.send_text(&tv, r, "first").await.ok();
    app.send_text(&tv, r, "second")
        .await
        .fails(400, "在成为好友之前，对方只允许向他发一条消息");
    app.post(
        "/api/chat/userset",
        Some(&tr),
        json!({"userset": "not json at all"}),
    )
    .await
    .ok();
    let (_s2, ts2, _) = app.register("send0002").await;
    app.send_text(&ts2, r, "defaults apply").await.ok();
    app.post("/api/chat/userset", Some(&tr), set("2"))
        .await
        .ok();
    app.send_text(&ts, r, "unlimited").await.ok();
}

#[tokio::test]
async fn blacklist_and_system_block_refuse_with_their_texts() {
    let app = spawn_app().await;
    let (r, _tr, _) = app.register("black001").await;
    let (s, ts, _) = app.register("black002").await;
    app.befriend((r, "black001"), (s, "black002")).await;
    let db = &app.state.db;
    db.exec(
        "UPDATE `goodfriend` SET `isblack` = 1 WHERE `user_id` = ? AND `friend_id` = ?",
        imrs::args![r, s],
    )
    .await
    .expect("black");
    app.send_text(&ts, r, "x")
        .await
        .fails(400, "对方把你拉黑了，不能发送消息");
    db.exec("UPDATE `goodfriend` SET `isblack` = 0, `status` = 0 WHERE `user_id` = ? AND `friend_id` = ?", imrs::args![r, s])
        .await
        .expect("status");
    app.send_text(&ts, r, "x")
        .await
        .fails(400, "系统把你们拉黑了，不能发送消息");
}

#[tokio::test]
async fn send_validation_and_reserved_types() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("valid001").await;
    let p = |b: serde_json::Value| app.post("/api/chat/socket/sendmessage", Some(&ta), b);
    p(json!({})).await.fails(422, "接收人/群的id值不能为空");
    p(json!({"sendto_id":"abc"}))
        .await
        .fails(422, "接收人/群的id值 的值 `abc` 的类型不是 `int`");
    p(json!({"sendto_id":0})).await.fails(
        422,
        "接收人/群的id值 的数值 必须 在 1 和 10000000000000000 之间",
    );
    p(json!({"sendto_id":a,"chatType":"x"}))
        .await
        .fails(422, "接收类型 的值 `x` 必须在 [`single`,`group`] 中");
    p(json!({"sendto_id":a,"chatType":"single"}))
        .await
        .fails(422, "消息类型不能为空");
    p(json!({"sendto_id":a,"chatType":"single","type":"text","data":null}))
        .await
        .fails(422, "消息内容不能为空");
    p(json!({"sendto_id":a,"chatType":"single","type":"systemNotice","data":"x"}))
        .await
        .fails(400, "消息类型不合法");
    p(json!({"sendto_id":999999,"chatType":"single","type":"text","data":"x"}))
        .await
        .fails(400, "对方不存在或者被禁用，不能发消息");
    // Form posts keep `data` as text and `options` percent-decoded JSON; self-sends are stored, not echoed.
    let r = app
        .post_form(
            "/api/chat/socket/sendmessage",
            Some(&ta),
            &[
                ("sendto_id", &a.to_string()),
                ("chatType", "single"),
                ("type", "text"),
                ("data", r#"{"data":"hi","dataType":false,"otherData":null}"#),
                ("options", "%7B%7D"),
            ],
        )
        .await;
    let m = r.ok();
    assert_eq!(
        m["data"],
        json!(r#"{"data":"hi","dataType":false,"otherData":null}"#)
    );
    assert_eq!(m["options"], json!({}));
    assert_eq!(m["to_id"], json!(a));
}

#[tokio::test]
async fn revoke_by_sender_within_the_window_notifies_the_other_side() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("revoke01").await;
    let (b, tb, _) = app.register("revoke02").await;
    app.befriend((a, "revoke01"), (b, "revoke02")).await;
    let mut wb = Ws::connect(&app, &tb).await;
    let m = app.send_text(&ta, b, "oops").await.ok().clone();
    assert_eq!(wb.next_chat(WAIT).await.expect("message")["id"], m["id"]);
    let body = json!({"to_id": b, "to_name": "revoke02[游客]".repeat(5), "to_avatar": "", "id": m["id"],
                      "chatType": "single", "create_time": 1});
    let n = app
        .post("/api/chat/revokeMessage", Some(&ta), body.clone())
        .await
        .ok()
        .clone();
    assert_eq!(n["id"], m["id"]);
    assert_eq!(n["type"], "systemNotice");
    assert_eq!(n["actionType"], "revoke");
    assert_eq!(n["data"]["data"], "revoke01撤回了一条消息");
    assert_eq!(n["group"], json!(null));
    assert_eq!(n["to_name"], m["to_name"]);
    assert_eq!(wb.next_chat(WAIT).await.expect("revoke notice"), n);
    // Again: 200 with the notice, nothing delivered.
    app.post("/api/chat/revokeMessage", Some(&ta), body)
        .await
        .ok();
    assert!(wb.drain_chats(QUIET).await.is_empty());
    // History shows it revoked.
    let h = app
        .get(&format!("/api/chat/history/single/{a}"), Some(&tb))
        .await;
    let items = h.ok()["items"].as_array().expect("items").clone();
    assert_eq!(items[0]["message"]["isremove"], json!(1));
    assert_eq!(items[0]["message"]["data"], json!(""));
}

#[tokio::test]
async fn revoke_by_someone_else_or_too_late_is_refused() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("revoke11").await;
    let (b, tb, _) = app.register("revoke12").await;
    app.befriend((a, "revoke11"), (b, "revoke12")).await;
    let m = app.send_text(&ta, b, "mine").await.ok().clone();
    let body = json!({"to_id": b, "id": m["id"], "chatType": "single", "create_time": 1});
    app.post(
        "/api/chat/revokeMessage",
        Some(&tb),
        json!({"to_id": a, "id": m["id"], "chatType": "single", "create_time": 1}),
    )
    .await
    .fails(400, "消息不存在，无法撤回");
    app.post(
        "/api/chat/revokeMessage",
        Some(&ta),
        json!({"to_id": b, "id": "nope", "chatType": "single", "create_time": 1}),
    )
    .await
    .fails(400, "消息不存在，无法撤回");
    app.post(
        "/api/chat/revokeMessage",
        Some(&ta),
        json!({"to_id": b, "chatType": "single", "create_time": 1}),
    )
    .await
    .fails(422, "消息uuid不能为空");
    let old = imrs::time::now_ms() - 301_000;
    app.state
        .db
        .exec(
            "UPDATE `im_entry` SET `create_time` = ? WHERE `msg_id` = ?",
            imrs::args![old, m["id"].as_str().expect("id")],
        )
        .await
        .expect("age it");
    app.post("/api/chat/revokeMessage", Some(&ta), body)
        .await
        .fails(400, "消息超过5分钟，不能撤回");
}

#[tokio::test]
async fn idempotency_key_stores_once_and_history_pages() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("idem0001").await;
    let (b, tb, _) = app.register("idem0002").await;
    app.befriend((a, "idem0001"), (b, "idem0002")).await;
    let body = json!({"sendto_id": b, "chatType": "single", "type": "text", "data": "once", "client_msg_id": "c-1"});
    let m1 = app
        .post("/api/chat/socket/sendmessage", Some(&ta), body.clone())
        .await
        .ok()
        .clone();
    let m2 = app
        .post("/api/chat/socket/sendmessage", Some(&ta), body)
        .await
        .ok()
        .clone();
    assert_eq!(m1, m2, "the same stored message");
    for i in 0..4 {
        app.send_text(&ta, b, &format!("h{i}")).await.ok();
    }
    let page = app
        .get(&format!("/api/chat/history/single/{a}?limit=2"), Some(&tb))
        .await
        .ok()
        .clone();
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["conv_seq"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(page["has_more"], json!(true));
    let older = app
        .get(
            &format!("/api/chat/history/single/{a}?limit=10&before=4"),
            Some(&tb),
        )
        .await
        .ok()
        .clone();
    assert_eq!(older["items"].as_array().map(|a| a.len()), Some(3));
    let r = app
        .post(
            "/api/chat/readCursor",
            Some(&tb),
            json!({"chatType":"single","id":a,"conv_seq":4}),
        )
        .await;
    assert_eq!(r.ok()["read_seq"], json!(4));
    let r = app
        .post(
            "/api/chat/readCursor",
            Some(&tb),
            json!({"chatType":"single","id":a,"conv_seq":2}),
        )
        .await;
    assert_eq!(r.ok()["read_seq"], json!(4), "never backwards");
}

#[tokio::test]
async fn proto2_sockets_send_with_ack_and_resume_from_a_cursor() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("proto201").await;
    let (b, tb, _) = app.register("proto202").await;
    app.befriend((a, "proto201"), (b, "proto202")).await;
    let mut wa = Ws::open_url(&format!("ws://{}/ws?token={ta}&proto=2", app.addr)).await;
    // welcome + notices + synced
    loop {
        let f = wa.next_json(WAIT).await.expect("frames");
        if f["type"] == "synced" {
            break;
        }
    }
    wa.send_text(&json!({"type":"send","cid":"k1","payload":{"sendto_id":b,"chatType":"single","type":"text","data":"via ws"}}).to_string()).await;
    let ack = wa.next_json(WAIT).await.expect("sendAck");
    assert_eq!(ack["type"], "sendAck");
    assert_eq!(ack["ok"], json!(true));
    assert_eq!(ack["data"]["data"], "via ws");
    wa.send_text(
        &json!({"type":"send","cid":"k2","payload":{"sendto_id":b,"chatType":"nope"}}).to_string(),
    )
    .await;
    let nack = wa.next_json(WAIT).await.expect("sendAck");
    assert_eq!(
        (nack["ok"].clone(), nack["status"].clone()),
        (json!(false), json!(422))
    );
    let mut wb = Ws::open_url(&format!("ws://{}/ws?token={tb}&proto=2&since=0", app.addr)).await;
    let mut got = None;
    loop {
        let f = wb.next_json(WAIT).await.expect("frames");
        if f["type"] == "singleChat" && f["data"]["data"] == "via ws" {
            assert!(f["seq"].as_i64().is_some() && f["conv_seq"] == json!(1));
            got = Some(f.clone());
        }
        if f["type"] == "synced" {
            break;
        }
    }
    assert!(got.is_some(), "resume replays entries after `since`");
}

#[tokio::test]
async fn upgrades_over_the_per_user_rate_are_delayed_never_refused() {
    let app = spawn_with(|s| s.ws_user_upgrades = Some(1)).await;
    let (_, token, _) = app.register("throttle1").await;
    let _first = Ws::connect(&app, &token).await;
    // Over the limit: the 101 comes later, but it comes, followed by the normal connect sequence.
    let mut second = Ws::connect(&app, &token).await;
    assert_eq!(second.ended(QUIET).await, Ended::Open);
}

#[tokio::test]
async fn a_backlog_larger_than_the_socket_queue_arrives_whole_in_order_once() {
    let app = spawn_with(|s| s.ws_queue_frames = Some(16)).await;
    let (a, ta, _) = app.register("backlog1").await;
    let (b, tb, _) = app.register("backlog2").await;
    app.befriend((a, "backlog1"), (b, "backlog2")).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(app.send_text(&ta, b, &format!("b{i}")).await.ok()["id"].clone());
    }
    let mut ws = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    let got: Vec<_> = ws
        .drain_chats(Duration::from_secs(2))
        .await
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(got.len(), ids.len(), "every queued message arrives");
    assert_eq!(got, ids, "in order, each once");
    // Live messages after the backlog still arrive.
    app.send_text(&ta, b, "after").await.ok();
    assert_eq!(
        ws.next_chat(WAIT).await.expect("live")["data"]["data"],
        "after"
    );
}

#[tokio::test]
async fn a_peer_that_answered_pings_and_went_silent_is_dropped_without_a_close_frame() {
    let app = spawn_with(|s| {
        s.ws_ping_secs = Some(3);
        s.ws_dead_secs = Some(4);
    })
    .await;
    let (_, token, _) = app.register("silent01").await;
    let mut ws = Ws::connect(&app, &token).await;
    // Read for a while: the client answers the server's protocol Ping (heartbeat at 3 s).
    let _ = ws.next_json(Duration::from_millis(3500)).await;
    // Then go silent (nothing read, so nothing answered) for longer than the dead-peer timeout.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(ws.ended(WAIT).await, Ended::Abnormal);
}

#[tokio::test]
async fn a_peer_that_never_answered_a_ping_is_not_dropped_for_silence() {
    let app = spawn_with(|s| {
        s.ws_ping_secs = Some(3);
        s.ws_dead_secs = Some(4);
    })
    .await;
    let (_, token, _) = app.register("silent02").await;
    let mut ws = Ws::connect(&app, &token).await;
    // Never read: no Pong ever reaches the server.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(ws.ended(Duration::from_millis(500)).await, Ended::Open);
}
