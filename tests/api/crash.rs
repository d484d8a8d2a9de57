//! Tests that run the server binary as a child process. Crash safety (MR §6.2 R1, R2): the server
//! is killed with SIGKILL while messages are sent to an offline user, restarted on the same
//! database, and every message answered `ok` is delivered exactly once, in order. Operator commands
//! (`imrs admin ban`) reach the sockets of a running server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

pub struct Server {
    child: Child,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_binary(dir: &std::path::Path, database_url: &str) -> Server {
    start_binary_with(dir, database_url, &[]).await
}

/// The server binary on a free port, with extra environment.
pub async fn start_binary_with(
    dir: &std::path::Path,
    database_url: &str,
    env: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_imrs"))
        .env("IMRS_LISTEN", format!("127.0.0.1:{port}"))
        .env("IMRS_DATA_DIR", dir)
        .env("IMRS_DATABASE_URL", database_url)
        .env("IMRS_JWT_SECRET", "crash-test-secret")
        .env("IMRS_ARGON2_MEMORY_KIB", "64")
        .env("IMRS_PER_IP_LIMITS", "off")
        .env("IMRS_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start imrs");
    let server = Server {
        child,
        base: format!("127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("http://{}/", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("imrs did not start");
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Option<Value> {
    let mut req = http
        .post(format!("http://{base}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(5));
    if let Some(t) = token {
        req = req.header("token", t);
    }
    let r = req.send().await.ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.json::<Value>().await.ok().map(|v| v["data"].clone())
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_message() {
    let dir = std::env::temp_dir().join(format!("imrs-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = fresh_database(&dir).await;
    let http = reqwest::Client::new();
    let mut s1 = start_binary(&dir, &url).await;
    let reg = |name: &'static str| {
        let (http, base) = (http.clone(), s1.base.clone());
        async move {
            post(
                &http,
                &base,
                "/api/regChat",
                None,
                json!({"username": name, "password": "123456"}),
            )
            .await
            .expect("register")
        }
    };
    let a = reg("crashsnd").await;
    let b = reg("crashrcv").await;
    let (ta, tb) = (
        a["token"].as_str().expect("t").to_string(),
        b["token"].as_str().expect("t").to_string(),
    );
    let b_id = b["id"].as_i64().expect("id");
    let unlimited = UNLIMITED_USERSET;
    post(
        &http,
        &s1.base,
        "/api/chat/userset",
        Some(&tb),
        json!({"userset": unlimited}),
    )
    .await
    .expect("userset");

    // Send from several concurrent senders while the server is killed underneath them.
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(usize, String)>::new()));
    let mut senders = Vec::new();
    for lane in 0..4 {
        let (http, base, ta, acked) = (http.clone(), s1.base.clone(), ta.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let body = json!({"sendto_id": b_id, "chatType": "single", "type": "text",
                                  "data": {"data": format!("{lane}-{i}"), "dataType": false, "otherData": null}});
                match post(&http, &base, "/api/chat/socket/sendmessage", Some(&ta), body).await {
                    Some(m) => {
                        acked.lock().push((lane, m["id"].as_str().unwrap_or("").to_string()));
                    }
                    None => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    s1.child.kill().expect("SIGKILL");
    let _ = s1.child.wait();
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 10,
        "the senders got answers before the kill ({})",
        acked.len()
    );
    eprintln!(
        "crash test: {} sends acknowledged before SIGKILL",
        acked.len()
    );

    let mut s2 = start_binary(&dir, &url).await;
    let mut ws = Ws::open_url(&format!("ws://{}/ws?token={tb}", s2.base)).await;
    // Welcome + connect-time notices, then pull.
    while let Some(f) = ws.next_json(QUIET).await {
        assert_ne!(f["type"], json!("fail"), "token survived the restart: {f}");
    }
    post(
        &http,
        &s2.base,
        "/api/chat/chatGetmessageOffLine",
        Some(&tb),
        json!({}),
    )
    .await
    .expect("pull");
    let mut got: Vec<String> = Vec::new();
    while let Some(d) = ws.next_chat(Duration::from_secs(2)).await {
        got.push(d["id"].as_str().unwrap_or("").to_string());
    }
    let set: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "no message is delivered twice");
    for (_, id) in &acked {
        assert!(set.contains(id), "acknowledged message {id} was lost");
    }
    // Each sender's acknowledged messages arrive in the order they were acknowledged.
    let pos: std::collections::HashMap<&String, usize> =
        got.iter().enumerate().map(|(i, id)| (id, i)).collect();
    for lane in 0..4 {
        let lane_pos: Vec<usize> = acked
            .iter()
            .filter(|(l, _)| *l == lane)
            .map(|(_, id)| pos[id])
            .collect();
        assert!(
            lane_pos.windows(2).all(|w| w[0] < w[1]),
            "lane {lane} out of order"
        );
    }
    s2.child.kill().expect("stop");
    let _ = s2.child.wait();
}

#[tokio::test]
async fn admin_ban_from_the_cli_closes_the_live_sockets_of_a_running_server() {
    let dir = std::env::temp_dir().join(format!("imrs-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = fresh_database(&dir).await;
    let http = reqwest::Client::new();
    let server = start_binary(&dir, &url).await;
    let reg = post(
        &http,
        &server.base,
        "/api/regChat",
        None,
        json!({"username": "clibanned", "password": "123456"}),
    )
    .await
    .expect("register");
    let (id, token) = (
        reg["id"].as_i64().expect("id"),
        reg["token"].as_str().expect("token").to_string(),
    );
    let mut ws = Ws::open_url(&format!("ws://{}/ws?token={token}", server.base)).await;
    while ws.next_json(QUIET).await.is_some() {}
    let out = Command::new(env!("CARGO_BIN_EXE_imrs"))
        .args(["admin", "ban", &id.to_string()])
        .env("IMRS_DATA_DIR", &dir)
        .env("IMRS_DATABASE_URL", &url)
        .env("IMRS_JWT_SECRET", "crash-test-secret")
        .env("IMRS_LOG", "warn")
        .output()
        .expect("run imrs admin ban");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    let r = post(
        &http,
        &server.base,
        "/api/chat/userset",
        Some(&token),
        json!({"userset": "{}"}),
    )
    .await;
    assert!(r.is_none(), "the banned user's token is refused");
    let out = Command::new(env!("CARGO_BIN_EXE_imrs"))
        .args(["admin", "unban", &id.to_string()])
        .env("IMRS_DATA_DIR", &dir)
        .env("IMRS_DATABASE_URL", &url)
        .env("IMRS_JWT_SECRET", "crash-test-secret")
        .env("IMRS_LOG", "warn")
        .output()
        .expect("run imrs admin unban");
    assert!(out.status.success());
    let again = post(
        &http,
        &server.base,
        "/api/loginChat",
        None,
        json!({"username": "clibanned", "password": "123456"}),
    )
    .await;
    assert!(again.is_some(), "login works again after unban");
}
