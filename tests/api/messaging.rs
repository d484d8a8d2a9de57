//! Websocket gateway and 1:1 messaging (MR §3, §5, §6).

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
