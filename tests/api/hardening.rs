//! Hardening (issue 15): each test does the harmful thing — as an attacker or an unlucky user
//! would — against the real server, on SQLite and (with `IMRS_TEST_DATABASE_URL`) on MariaDB.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::groups::{decide, invite, make_group, send_group, set_mode, user, U};

const BANNED_HTTP: &str = "当前用户不存在或者已被禁用";
const BAD_TOKEN: &str = "Token 令牌不合法！";

/// A proto-2 socket, read up to its `synced` frame; returns it and the frames before `synced`.
async fn proto2(app: &TestApp, token: &str, since: Option<i64>) -> (Ws, Vec<Value>) {
    let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
    let mut ws = Ws::open_url(&format!(
        "ws://{}/ws?token={token}&proto=2{since}",
        app.addr
    ))
    .await;
    let mut got = Vec::new();
    loop {
        let f = ws
            .next_json(Duration::from_secs(20))
            .await
            .expect("frames up to synced");
        if f["type"] == "synced" {
            return (ws, got);
        }
        got.push(f);
    }
}

fn chats(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| {
            f["type"] == "singleChat"
                && f["data"]["type"] == "text"
                && f["data"]["from_id"].is_i64()
        })
        .cloned()
        .collect()
}

fn text_of(d: &Value) -> String {
    d["data"]["data"]
        .as_str()
        .or_else(|| d["data"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The next chat text frame of a legacy socket (skipping notices), waiting long enough for a
/// large frame.
async fn next_text(ws: &mut Ws) -> Option<Value> {
    loop {
        let d = ws.next_chat(Duration::from_secs(20)).await?;
        if d["type"] == "text" {
            return Some(d);
        }
    }
}

async fn send_json(app: &TestApp, token: &str, to: i64, data: Value) -> Resp {
    app.post(
        "/api/chat/socket/sendmessage",
        Some(token),
        json!({"sendto_id": to, "chatType": "single", "type": "text", "data": data}),
    )
    .await
}

// ----- 1. poison message -----------------------------------------------------------------------

/// A text just under the body limit is accepted, arrives whole on the legacy socket and on a
/// proto-2 socket, live and on replay, and what is sent after it arrives too.
#[tokio::test]
async fn a_message_just_under_the_body_limit_reaches_every_client_and_blocks_nothing() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("poison01").await;
    let (b, tb, _) = app.register("poison02").await;
    app.befriend((a, "poison01"), (b, "poison02")).await;
    // ~1,000,000 bytes of text (multi-byte characters too), the JSON body still under 1 MiB.
    let big: String = "长".repeat(1000) + &"x".repeat(1_000_000 - 3000);
    let body = json!({"sendto_id": b, "chatType": "single", "type": "text",
                      "data": {"data": big, "dataType": false, "otherData": null}});
    assert!(body.to_string().len() < 1024 * 1024);

    // Offline first: the entry waits, then is replayed whole on connect + pull.
    app.post("/api/chat/socket/sendmessage", Some(&ta), body.clone())
        .await
        .ok();
    app.send_text(&ta, b, "after the big one").await.ok();
    let mut wb = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    let first = next_text(&mut wb)
        .await
        .expect("the big message is replayed");
    assert_eq!(text_of(&first).len(), big.len());
    assert_eq!(text_of(&first), big);
    let second = next_text(&mut wb).await.expect("the next message");
    assert_eq!(text_of(&second), "after the big one");

    // Live, with a proto-2 socket open as well: both get it, and what follows.
    let (mut p2, _) = proto2(&app, &tb, None).await;
    app.post("/api/chat/socket/sendmessage", Some(&ta), body)
        .await
        .ok();
    app.send_text(&ta, b, "after the second big one").await.ok();
    let live = next_text(&mut wb).await.expect("live big message");
    assert_eq!(text_of(&live), big);
    assert_eq!(
        text_of(&next_text(&mut wb).await.expect("next")),
        "after the second big one"
    );
    let mut p2_texts = Vec::new();
    while p2_texts.len() < 2 {
        let f = p2
            .next_json(Duration::from_secs(20))
            .await
            .expect("proto-2 frames");
        if f["type"] == "singleChat" && f["data"]["type"] == "text" {
            p2_texts.push(text_of(&f["data"]));
        }
    }
    assert_eq!(
        p2_texts,
        vec![big.clone(), "after the second big one".into()]
    );

    // A reconnect replays nothing more: the socket was never dropped, everything was confirmed
    // (reading for a moment answers the confirming Pings).
    wb.drain_chats(Duration::from_millis(700)).await;
    drop(wb);
    let mut wb = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    let again = wb.drain_chats(Duration::from_millis(1500)).await;
    assert!(
        again.iter().all(|d| d["type"] != "text"),
        "replayed again after being delivered"
    );
}

/// A group message whose frame is larger than the body limit (big text + long names) is
/// delivered to every online member, and the default snapshot stays small.
#[tokio::test]
async fn group_frames_of_any_size_are_delivered_and_the_snapshot_is_bounded() {
    let app = spawn_with(|s| s.group_max_members = Some(200)).await;
    let owner = user(&app, "bigown01").await;
    let mut members = Vec::new();
    for i in 0..60 {
        members.push(user(&app, &format!("bigmem{i:02}")).await);
    }
    let refs: Vec<&U> = members.iter().collect();
    let gid = make_group(&app, &owner, &refs).await;
    // Long group nicknames (their maximum) for everyone.
    for m in members.iter().chain([&owner]) {
        let nick = "名".repeat(20);
        app.post(
            "/api/chat/groupnickname",
            Some(&m.token),
            json!({"id": gid, "nickname": nick}),
        )
        .await;
    }
    let mut sockets = Vec::new();
    for m in members.iter().take(10) {
        let mut ws = Ws::connect(&app, &m.token).await;
        app.offline(&m.token).await.ok();
        ws.drain_chats(QUIET).await;
        sockets.push(ws);
    }
    let big = "y".repeat(1_000_000);
    let r = app
        .post(
            "/api/chat/socket/sendmessage",
            Some(&owner.token),
            json!({"sendto_id": gid, "chatType": "group", "type": "text",
                   "data": {"data": big, "dataType": false, "otherData": null}}),
        )
        .await;
    let stored = r.ok().clone();
    let snapshot = &stored["group"];
    let rows = snapshot["group_users"].as_array().expect("group_users");
    assert!(
        rows.len() <= 20,
        "the default snapshot is bounded: {} rows",
        rows.len()
    );
    for k in ["user_id", "remark", "invite_confirm"] {
        assert!(snapshot.get(k).is_some(), "the client reads `{k}`");
    }
    send_group(&app, &owner, gid, "small after big").await.ok();
    for ws in &mut sockets {
        let d = next_text(ws).await.expect("big group frame");
        assert_eq!(text_of(&d).len(), big.len());
        let d = next_text(ws).await.expect("next group frame");
        assert_eq!(text_of(&d), "small after big");
    }
}

// ----- 2. bounded password hashing ---------------------------------------------------------------

/// 300 parallel wrong-password logins on one account: exactly the account limit is counted (and
/// verified), the others are refused before hashing, and the server keeps answering others.
#[tokio::test]
async fn parallel_bad_logins_cannot_pass_the_account_limit() {
    // Real Argon2 cost: the bound on concurrent hashes is what keeps memory in check.
    let app = spawn_with(|s| s.argon2_memory_kib = Some(19456)).await;
    let (victim, _, _) = app.register("victim01").await;
    let (_, other, _) = app.register("bystand1").await;
    let mut calls = Vec::new();
    for _ in 0..300 {
        let app_url = app.url("/api/loginChat");
        let http = app.http.clone();
        calls.push(tokio::spawn(async move {
            let r = http
                .post(app_url)
                .json(&json!({"username": "victim01", "password": "wrong-pass"}))
                .send()
                .await
                .expect("login");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body)
        }));
    }
    // Meanwhile another user's requests are answered.
    let r = app
        .post(
            "/api/chat/searchUser",
            Some(&other),
            json!({"keyword": "victim"}),
        )
        .await;
    r.ok();
    for c in calls {
        let (status, body) = c.await.expect("task");
        assert_eq!(
            (status, body),
            (400, json!({"msg": "fail", "data": "账户或密码错误"}))
        );
    }
    assert_eq!(
        app.state
            .limiter
            .count(&format!("loginfail:u:{victim}"))
            .await,
        20,
        "exactly the limit was counted"
    );
    // The limit holds: even the right password is refused for the rest of the hour.
    app.post(
        "/api/loginChat",
        None,
        json!({"username": "victim01", "password": "123456"}),
    )
    .await
    .fails(400, "账户或密码错误");
    // Another account is not affected.
    app.post(
        "/api/loginChat",
        None,
        json!({"username": "bystand1", "password": "123456"}),
    )
    .await
    .ok();
}

/// A right password gives its reserved failure back: 25 good logins never lock the account.
#[tokio::test]
async fn good_logins_do_not_count_as_failures() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("goodlog1").await;
    for _ in 0..25 {
        app.post(
            "/api/loginChat",
            None,
            json!({"username": "goodlog1", "password": "123456"}),
        )
        .await
        .ok();
    }
    assert_eq!(
        app.state.limiter.count(&format!("loginfail:u:{id}")).await,
        0
    );
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = spawn_with(|s| {
        s.per_ip_limits = Some("on".into());
        s.reg_ip_limit = Some(3);
    })
    .await;
    for i in 0..3 {
        app.register(&format!("regip{i:03}")).await;
    }
    app.post(
        "/api/regChat",
        None,
        json!({"username": "regip999", "password": "123456"}),
    )
    .await
    .fails(400, "请求过于频繁，请1个小时后再试");
}

// ----- 4. duplicate delivery race ----------------------------------------------------------------

/// 5 members each send 10 messages at once to a 10-member group with everyone online: every
/// member gets every message of the others exactly once, in each sender's order. Four rounds.
#[tokio::test]
async fn concurrent_group_senders_deliver_each_message_exactly_once() {
    let app = spawn_app().await;
    let owner = user(&app, "race0own").await;
    let mut members = Vec::new();
    for i in 0..9 {
        members.push(user(&app, &format!("race0m{i:02}")).await);
    }
    let refs: Vec<&U> = members.iter().collect();
    let gid = make_group(&app, &owner, &refs).await;
    let everyone: Vec<U> = std::iter::once(owner.clone()).chain(members).collect();
    let mut sockets = Vec::new();
    for u in &everyone {
        let mut ws = Ws::connect(&app, &u.token).await;
        app.offline(&u.token).await.ok();
        ws.drain_chats(QUIET).await;
        sockets.push(ws);
    }
    for round in 0..4 {
        let senders: Vec<U> = everyone.iter().take(5).cloned().collect();
        let mut tasks = Vec::new();
        for s in &senders {
            let (url, http, token, name) = (
                app.url("/api/chat/socket/sendmessage"),
                app.http.clone(),
                s.token.clone(),
                s.name.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let r = http
                        .post(&url)
                        .header("token", &token)
                        .json(&json!({"sendto_id": gid, "chatType": "group", "type": "text",
                                      "data": {"data": format!("{round}:{name}:{i}"), "dataType": false, "otherData": null}}))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(r.status().as_u16(), 200);
                }
            }));
        }
        for t in tasks {
            t.await.expect("sender");
        }
        for (k, ws) in sockets.iter_mut().enumerate() {
            let me = &everyone[k].name;
            let got: Vec<String> = ws
                .drain_chats(Duration::from_millis(1500))
                .await
                .iter()
                .filter(|d| d["type"] == "text")
                .map(text_of)
                .collect();
            let expected: usize = senders.iter().filter(|s| &s.name != me).count() * 10;
            let unique: HashSet<&String> = got.iter().collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "round {round}: {me} got a message twice: {got:?}"
            );
            assert_eq!(got.len(), expected, "round {round}: {me} got {got:?}");
            // Per sender, in order.
            let mut last: HashMap<String, i64> = HashMap::new();
            for t in &got {
                let parts: Vec<&str> = t.split(':').collect();
                let i: i64 = parts[2].parse().expect("index");
                let prev = last.insert(parts[1].to_string(), i).unwrap_or(-1);
                assert!(i > prev, "round {round}: {me} out of order: {got:?}");
            }
        }
    }
}

/// A group backlog larger than the socket queue, flushed in parts while the Pongs of the earlier
/// parts confirm them: every entry exactly once, in order; a reconnect replays nothing.
#[tokio::test]
async fn a_group_backlog_larger_than_the_queue_arrives_once_in_order() {
    let app = spawn_with(|s| s.ws_queue_frames = Some(16)).await;
    let owner = user(&app, "backlog0").await;
    let m = user(&app, "backlog1").await;
    let gid = make_group(&app, &owner, &[&m]).await;
    for i in 0..150 {
        send_group(&app, &owner, gid, &format!("b{i:03}"))
            .await
            .ok();
    }
    for round in 0..2 {
        let mut ws = Ws::connect(&app, &m.token).await;
        app.offline(&m.token).await.ok();
        let got: Vec<String> = ws
            .drain_chats(Duration::from_millis(1500))
            .await
            .iter()
            .filter(|d| d["type"] == "text")
            .map(text_of)
            .collect();
        if round == 0 {
            let expected: Vec<String> = (0..150).map(|i| format!("b{i:03}")).collect();
            assert_eq!(got, expected);
        } else {
            assert!(got.is_empty(), "replayed again: {got:?}");
        }
        // Give the last Pongs time to be persisted before reconnecting.
        ws.drain_chats(Duration::from_millis(700)).await;
    }
}

// ----- 5. proto-2 acks ---------------------------------------------------------------------------

#[tokio::test]
async fn a_proto2_ack_confirms_in_the_store_for_every_kind_of_socket() {
    let app = spawn_app().await;
    let owner = user(&app, "ackown01").await;
    let b = user(&app, "ackusr01").await;
    let gid = make_group(&app, &owner, &[&b]).await;
    for i in 0..3 {
        app.send_text(&owner.token, b.id, &format!("one{i}"))
            .await
            .ok();
        send_group(&app, &owner, gid, &format!("grp{i}")).await.ok();
    }
    let (mut p2, frames) = proto2(&app, &b.token, None).await;
    let got = chats(&frames);
    assert_eq!(
        got.iter().map(|f| text_of(&f["data"])).collect::<Vec<_>>(),
        vec!["one0", "grp0", "one1", "grp1", "one2", "grp2"]
    );
    let top = got
        .iter()
        .filter_map(|f| f["seq"].as_i64())
        .max()
        .expect("seq");
    p2.send_text(&json!({"type": "ack", "seq": top}).to_string())
        .await;
    // The ack is committed before the next frame is read: a ping answers after it.
    p2.send_text("ping").await;
    assert_eq!(p2.next_json(WAIT).await.expect("pong")["type"], "pong");
    drop(p2);
    // Without `since`, a proto-2 reconnect replays nothing…
    let (_p2, frames) = proto2(&app, &b.token, None).await;
    assert!(chats(&frames).is_empty(), "{frames:?}");
    // …and neither does a legacy socket.
    let mut ws = Ws::connect(&app, &b.token).await;
    app.offline(&b.token).await.ok();
    assert!(ws
        .drain_chats(QUIET)
        .await
        .iter()
        .all(|d| d["type"] != "text"));
}

// ----- 6. ended tokens on proto-2 ----------------------------------------------------------------

async fn ws_send(ws: &mut Ws, to: i64, cid: &str) -> Value {
    ws.send_text(
        &json!({"type":"send","cid":cid,"payload":{"sendto_id":to,"chatType":"single","type":"text",
                 "data":{"data":cid,"dataType":false,"otherData":null}}})
        .to_string(),
    )
    .await;
    loop {
        let f = ws.next_json(WAIT).await.expect("sendAck");
        if f["type"] == "sendAck" {
            return f;
        }
    }
}

fn refused(ack: &Value, text: &str) {
    assert_eq!(
        (
            ack["ok"].clone(),
            ack["status"].clone(),
            ack["data"].clone()
        ),
        (json!(false), json!(400), json!(text)),
        "{ack}"
    );
}

#[tokio::test]
async fn after_logout_a_proto2_socket_sends_nothing() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("endtok01").await;
    let (b, tb, _) = app.register("endtok02").await;
    app.befriend((a, "endtok01"), (b, "endtok02")).await;
    let (mut p2, _) = proto2(&app, &ta, None).await;
    assert_eq!(ws_send(&mut p2, b, "before").await["ok"], json!(true));
    app.post("/api/chat/logout", Some(&ta), json!({}))
        .await
        .ok();
    refused(&ws_send(&mut p2, b, "after-logout").await, BAD_TOKEN);
    // A socket opened with the retired token is inert: it cannot send either.
    let mut inert = Ws::open_url(&format!("ws://{}/ws?token={ta}&proto=2", app.addr)).await;
    refused(&ws_send(&mut inert, b, "inert").await, BAD_TOKEN);
    let mut wb = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    let texts: Vec<String> = wb
        .drain_chats(QUIET)
        .await
        .iter()
        .filter(|d| d["type"] == "text")
        .map(text_of)
        .collect();
    assert_eq!(texts, vec!["before"], "nothing sent after logout arrived");
}

#[tokio::test]
async fn a_kicked_proto2_socket_ends_even_with_a_full_queue_and_sends_nothing() {
    let app = spawn_with(|s| s.ws_queue_frames = Some(16)).await;
    let (a, _, _) = app.register("kickp201").await;
    let (b, tb, _) = app.register("kickp202").await;
    app.befriend((a, "kickp201"), (b, "kickp202")).await;
    let dev1 = device_id();
    let (sign, body) = signed_body(&dev1, json!({"username": "kickp201", "password": "123456"}));
    let t1 = app
        .post_signed("/api/visitorloginChat", Some(&sign), body)
        .await
        .ok()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let (mut p2, _) = proto2(&app, &t1, None).await;
    // The peer stops reading while large frames pile up: the socket's queue fills.
    let big = "z".repeat(200_000);
    for _ in 0..40 {
        send_json(
            &app,
            &tb,
            a,
            json!({"data": big, "dataType": false, "otherData": null}),
        )
        .await
        .ok();
    }
    // A login from another device kicks the token: the socket must end.
    let dev2 = device_id();
    let (sign, body) = signed_body(&dev2, json!({"username": "kickp201", "password": "123456"}));
    app.post_signed("/api/visitorloginChat", Some(&sign), body)
        .await
        .ok();
    let ended = p2.ended(Duration::from_secs(15)).await;
    assert_ne!(ended, Ended::Open, "the kicked socket is still open");
    // And a new socket of the revoked token is refused.
    let mut again = Ws::open_url(&format!("ws://{}/ws?token={t1}&proto=2", app.addr)).await;
    assert_eq!(
        again.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "Token 不合法"}))
    );
}

#[tokio::test]
async fn a_banned_users_proto2_socket_closes_and_nothing_more_is_sent() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("banp2001").await;
    let (b, tb, _) = app.register("banp2002").await;
    app.befriend((a, "banp2001"), (b, "banp2002")).await;
    let (mut p2, _) = proto2(&app, &ta, None).await;
    imrs::services::accounts::set_enabled(&app.state, a, false)
        .await
        .expect("ban");
    assert_eq!(
        p2.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    assert_eq!(p2.ended(WAIT).await, Ended::Close(4003));
    app.send_text(&ta, b, "after ban")
        .await
        .fails(400, BANNED_HTTP);
    let mut wb = Ws::connect(&app, &tb).await;
    app.offline(&tb).await.ok();
    assert!(wb
        .drain_chats(QUIET)
        .await
        .iter()
        .all(|d| d["type"] != "text"));
}

/// A ban revokes for good: after unban, the device's next visitorRegister must not turn the
/// banned token into a retired (inert, accepted) one.
#[tokio::test]
async fn visitor_register_does_not_revive_a_banned_token() {
    let app = spawn_app().await;
    let dev = device_id();
    let v = app.visitor(&dev).await;
    let (id, t1) = (
        v["id"].as_i64().expect("id"),
        v["token"].as_str().expect("token").to_string(),
    );
    imrs::services::accounts::set_enabled(&app.state, id, false)
        .await
        .expect("ban");
    imrs::services::accounts::set_enabled(&app.state, id, true)
        .await
        .expect("unban");
    let v2 = app.visitor(&dev).await;
    assert_ne!(v2["token"], json!(t1), "a new token is issued");
    let mut ws = Ws::open(&app, &t1).await;
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "Token 不合法"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4004));
    app.offline(&t1).await.fails(400, BAD_TOKEN);
}

// ----- 7. send rules under concurrency -----------------------------------------------------------

#[tokio::test]
async fn parallel_sends_with_one_idempotency_key_store_one_message() {
    let app = spawn_app().await;
    let (a, ta, _) = app.register("idemp001").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        let name = format!("idempr{i:02}");
        let (p, tp, _) = app.register(&name).await;
        app.befriend((a, "idemp001"), (p, &name)).await;
        peers.push((p, tp));
    }
    // 10 parallel repeats to one peer, and the same key to the two others at the same time.
    let mut tasks = Vec::new();
    for k in 0..12 {
        let to = if k < 10 { peers[0].0 } else { peers[k - 9].0 };
        let (url, http, token) = (
            app.url("/api/chat/socket/sendmessage"),
            app.http.clone(),
            ta.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(&url)
                .header("token", &token)
                .json(
                    &json!({"sendto_id": to, "chatType": "single", "type": "text",
                              "client_msg_id": "same-key-1",
                              "data": {"data": "once", "dataType": false, "otherData": null}}),
                )
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), 200);
            let v: Value = r.json().await.expect("json");
            v["data"]["id"].as_str().expect("id").to_string()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.expect("task"));
    }
    assert_eq!(ids.len(), 1, "every repeat answers the one stored message");
    let (n,): (i64,) = app
        .state
        .db
        .opt(
            "SELECT COUNT(*) FROM `im_entry` WHERE `from_id` = ? AND `kind` = 1",
            imrs::args![a],
        )
        .await
        .expect("count")
        .expect("row");
    assert_eq!(n, 1);
    let mut delivered = 0;
    for (_, tp) in &peers {
        let mut ws = Ws::connect(&app, tp).await;
        app.offline(tp).await.ok();
        delivered += ws
            .drain_chats(QUIET)
            .await
            .iter()
            .filter(|d| d["type"] == "text")
            .count();
    }
    assert_eq!(delivered, 1, "delivered once in all");
}

/// The "one message before friendship" rule holds in a 20-way race.
#[tokio::test]
async fn one_message_before_friendship_holds_under_a_parallel_burst() {
    let app = spawn_app().await;
    let (_, ta, _) = app.register("stranger").await;
    let (b, _, _) = app.register("strangee").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (url, http, token) = (
            app.url("/api/chat/socket/sendmessage"),
            app.http.clone(),
            ta.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(&url)
                .header("token", &token)
                .json(&json!({"sendto_id": b, "chatType": "single", "type": "text",
                              "data": {"data": format!("hi {i}"), "dataType": false, "otherData": null}}))
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            (status, v)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, v) = t.await.expect("task");
        if status == 200 {
            ok += 1;
        } else {
            assert_eq!(
                (status, v["data"].clone()),
                (400, json!("在成为好友之前，对方只允许向他发一条消息"))
            );
        }
    }
    assert_eq!(ok, 1);
}

// ----- 8. private secret file ---------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn the_generated_jwt_secret_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir().join(format!("imrs-secret-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&base).expect("dir");
    let dir = base.join("data");
    let url = fresh_database(&base).await;
    let settings = test_settings(&dir, url);
    let config = imrs::config::Config::defaults_with(|s| {
        settings(s);
        s.jwt_secret = None;
    })
    .expect("config");
    let app = start(config, dir.clone()).await;
    app.register("secret01").await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("jwt_secret")), 0o600);
    assert_eq!(mode(&dir), 0o700, "the data directory imrs created");
}

// ----- 9. a ban takes effect at once -------------------------------------------------------------

/// Run the `imrs` binary on the test server's store (asynchronously: the server runs on this
/// test's runtime and must keep serving meanwhile).
async fn imrs_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let url = app.state.config.database_url.clone();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_imrs"))
        .args(args)
        .env("IMRS_DATA_DIR", &app.data_dir)
        .env("IMRS_DATABASE_URL", url)
        .env("IMRS_JWT_SECRET", "test-secret")
        .env("IMRS_LOG", "warn")
        .output()
        .await
        .expect("run imrs")
}

/// Right after `imrs admin ban` returns (no sleep): HTTP, the handshake, a send to the user and
/// the approval of their group application all see the ban, with their own texts.
#[tokio::test]
async fn a_cli_ban_is_in_force_everywhere_when_the_command_returns() {
    let app = spawn_app().await;
    let owner = user(&app, "banown01").await;
    let m = user(&app, "banmem01").await;
    let x = user(&app, "banned01").await;
    app.befriend((owner.id, &owner.name), (x.id, &x.name)).await;
    let gid = make_group(&app, &owner, &[&m]).await;
    set_mode(&app, &owner, gid, 1).await;
    assert_eq!(
        invite(&app, &x, gid, x.id).await.ok(),
        &json!("等待群主同意")
    );
    // Warm every cache the checks read.
    app.post(
        "/api/chat/userset",
        Some(&x.token),
        json!({"userset": "{}"}),
    )
    .await
    .ok();
    app.send_text(&owner.token, x.id, "warm").await.ok();
    let mut ws = Ws::connect(&app, &x.token).await;
    app.offline(&x.token).await.ok();

    let out = imrs_cli(&app, &["admin", "ban", &x.id.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    app.post(
        "/api/chat/userset",
        Some(&x.token),
        json!({"userset": "{}"}),
    )
    .await
    .fails(400, BANNED_HTTP);
    let mut hs = Ws::open(&app, &x.token).await;
    assert_eq!(
        hs.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    app.send_text(&owner.token, x.id, "to the banned")
        .await
        .fails(400, "对方不存在或者被禁用，不能发消息");
    decide(&app, &owner, gid, x.id, "agree")
        .await
        .fails(400, "用户不存在或者被封禁");
    // The open socket got the ban too.
    loop {
        match ws.next_json(WAIT).await {
            Some(f) if f == json!({"msg": "fail", "data": "你已被管理员禁用"}) => break,
            Some(_) => continue,
            None => panic!("the open socket did not get the ban frame"),
        }
    }
    let out = imrs_cli(&app, &["admin", "unban", &x.id.to_string()]).await;
    assert!(out.status.success());
    app.post(
        "/api/loginChat",
        None,
        json!({"username": "banned01", "password": "123456"}),
    )
    .await
    .ok();
}

// ----- 10. commands leave a running server's files alone -----------------------------------------

#[tokio::test]
async fn admin_and_migrate_commands_leave_uploads_in_progress_alone() {
    let app = spawn_app().await;
    let staging = app.state.blobs.staging_dir().to_path_buf();
    let in_progress = staging.join("upload-in-progress");
    std::fs::write(&in_progress, b"half an upload").expect("staged file");
    let posters = app.data_dir.join("cache").join("posters");
    let poster_tmp = posters.join(".tmpPOSTER");
    std::fs::write(&poster_tmp, b"half a poster").expect("poster temp");
    for args in [&["admin", "list"][..], &["migrate"][..]] {
        let out = imrs_cli(&app, args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            in_progress.exists(),
            "`imrs {args:?}` removed a staged upload"
        );
        assert!(
            poster_tmp.exists(),
            "`imrs {args:?}` removed a poster in progress"
        );
    }
}

// ----- 11. group consistency ----------------------------------------------------------------------

/// A member who joins while their socket's handshake runs still gets the group's live entries.
#[tokio::test]
async fn a_join_during_the_handshake_is_in_the_fan_out() {
    let app = spawn_app().await;
    let owner = user(&app, "joinhs00").await;
    let first = user(&app, "joinhs01").await;
    let gid = make_group(&app, &owner, &[&first]).await;
    for i in 0..15 {
        let j = user(&app, &format!("joinhs{:02}", i + 10)).await;
        app.befriend((owner.id, &owner.name), (j.id, &j.name)).await;
        // Race the upgrade with the invitation.
        let url = app.ws_url(&j.token);
        let connect = tokio::spawn(async move { Ws::open_url(&url).await });
        invite(&app, &owner, gid, j.id).await.ok();
        let mut ws = connect.await.expect("connect");
        ws.drain_chats(QUIET).await;
        app.offline(&j.token).await.ok();
        ws.drain_chats(QUIET).await;
        send_group(&app, &owner, gid, &format!("live {i}"))
            .await
            .ok();
        let d = next_text(&mut ws).await.expect("live group entry");
        assert_eq!(text_of(&d), format!("live {i}"), "round {i}");
    }
}

/// Once a removal has answered, nothing sent afterwards reaches the removed member, live or
/// later; what was sent before still does.
#[tokio::test]
async fn a_removed_member_gets_nothing_sent_after_the_removal() {
    let app = spawn_app().await;
    let owner = user(&app, "remove00").await;
    let s = user(&app, "remove01").await;
    let m = user(&app, "remove02").await;
    let gid = make_group(&app, &owner, &[&s, &m]).await;
    let mut wm = Ws::connect(&app, &m.token).await;
    app.offline(&m.token).await.ok();
    wm.drain_chats(QUIET).await;
    // A steady stream from `s` while the owner removes `m`.
    let stream = {
        let (url, http, token) = (
            app.url("/api/chat/socket/sendmessage"),
            app.http.clone(),
            s.token.clone(),
        );
        tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0..60 {
                let r = http
                    .post(&url)
                    .header("token", &token)
                    .json(&json!({"sendto_id": gid, "chatType": "group", "type": "text",
                                  "data": {"data": format!("s{i}"), "dataType": false, "otherData": null}}))
                    .send()
                    .await
                    .expect("send");
                answered.push((i, std::time::Instant::now(), r.status().as_u16()));
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before_remove = std::time::Instant::now();
    app.post(
        "/api/chat/groupDeleteUser",
        Some(&owner.token),
        json!({"group_id": gid, "user_id": m.id}),
    )
    .await
    .ok();
    let removed_at = std::time::Instant::now();
    let answered = stream.await.expect("stream");
    let got: Vec<String> = wm
        .drain_chats(Duration::from_millis(800))
        .await
        .iter()
        .filter(|d| d["type"] == "text")
        .map(text_of)
        .collect();
    // Messages whose send was answered before the removal started were committed before it:
    // they arrive. Messages sent after the removal answered must not.
    let sent_after: HashSet<String> = answered
        .iter()
        .filter(|(_, t, _)| *t > removed_at)
        .map(|(i, _, _)| format!("s{i}"))
        .collect();
    let sent_before: Vec<String> = answered
        .iter()
        .filter(|(_, t, st)| *t < before_remove && *st == 200)
        .map(|(i, _, _)| format!("s{i}"))
        .collect();
    for t in &got {
        assert!(!sent_after.contains(t), "{t} reached the removed member");
    }
    for t in &sent_before {
        assert!(got.contains(t), "{t}, sent before the removal, is missing");
    }
    // Sent once the removal has answered: nothing.
    send_group(&app, &s, gid, "after").await.ok();
    assert!(wm
        .drain_chats(QUIET)
        .await
        .iter()
        .all(|d| d["type"] != "text"));
}

/// Re-joining keeps what the earlier membership still owed; what was sent while out is not sent.
#[tokio::test]
async fn a_rejoin_keeps_what_the_earlier_membership_still_owed() {
    let app = spawn_app().await;
    let owner = user(&app, "rejoin00").await;
    let m = user(&app, "rejoin01").await;
    let gid = make_group(&app, &owner, &[&m]).await;
    // `m` is offline: these wait for them.
    send_group(&app, &owner, gid, "owed 1").await.ok();
    send_group(&app, &owner, gid, "owed 2").await.ok();
    app.post(
        "/api/chat/groupDeleteUser",
        Some(&owner.token),
        json!({"group_id": gid, "user_id": m.id}),
    )
    .await
    .ok();
    send_group(&app, &owner, gid, "while out").await.ok();
    assert_eq!(
        invite(&app, &owner, gid, m.id).await.ok(),
        &json!("加群成功")
    );
    send_group(&app, &owner, gid, "after rejoin").await.ok();
    let mut ws = Ws::connect(&app, &m.token).await;
    app.offline(&m.token).await.ok();
    let got: Vec<String> = ws
        .drain_chats(Duration::from_millis(800))
        .await
        .iter()
        .filter(|d| d["type"] == "text")
        .map(text_of)
        .collect();
    assert_eq!(got, vec!["owed 1", "owed 2", "after rejoin"]);
    // Each once: a reconnect replays none of them.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = Ws::connect(&app, &m.token).await;
    app.offline(&m.token).await.ok();
    assert!(ws
        .drain_chats(QUIET)
        .await
        .iter()
        .all(|d| d["type"] != "text"));
}
