//! The operations surface of the server binary in its own process (so that the process-wide
//! counters are this server's alone): `/metrics` moving with traffic, the JSON request log without
//! secrets, and `imrs admin …` acting through the running server or straight on the store.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::crash::start_binary_with;

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http.post(format!("http://{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.header("token", t);
    }
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> (i64, String) {
    let r = post(
        http,
        base,
        "/api/regChat",
        None,
        json!({"username": name, "password": "123456"}),
    )
    .await;
    (
        r["data"]["id"].as_i64().expect("id"),
        r["data"]["token"].as_str().expect("token").to_string(),
    )
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("http://{base}/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample line `name` (with its labels, exactly), or 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("imrs-ops-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

#[tokio::test]
async fn metrics_counters_rise_by_the_number_of_messages_sent() {
    let dir = dir();
    let url = fresh_database(&dir).await;
    let server = start_binary_with(&dir, &url, &[("IMRS_METRICS_TOKEN", "scrape-token")]).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (a, at) = register(&http, &base, "metrica").await;
    let (b, bt) = register(&http, &base, "metricb").await;
    let db = imrs::store::Db::connect(&url, &dir).await.expect("db");
    let now = imrs::time::now_db();
    for (u, f) in [(a, b), (b, a)] {
        db.exec(
            "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`,`create_time`,`update_time`) VALUES (?,?,'',?,?)",
            imrs::args![u, f, now, now],
        )
        .await
        .expect("friend row");
    }
    post(
        &http,
        &base,
        "/api/chat/userset",
        Some(&bt),
        json!({"userset": UNLIMITED_USERSET}),
    )
    .await;
    let mut ws = Ws::open_url(&format!("ws://{base}/ws?token={bt}")).await;
    while ws.next_json(QUIET).await.is_some() {}
    let before = scrape(&http, &base).await;
    assert_eq!(
        sample(&before, r#"imrs_open_sockets{kind="legacy"}"#),
        1.0,
        "{before}"
    );
    const N: usize = 7;
    for i in 0..N {
        let r = post(
            &http,
            &base,
            "/api/chat/socket/sendmessage",
            Some(&at),
            json!({"sendto_id": b, "chatType": "single", "type": "text",
                   "data": {"data": format!("m{i}"), "dataType": false, "otherData": null}}),
        )
        .await;
        assert_eq!(r["msg"], "ok", "{r}");
    }
    for _ in 0..N {
        ws.next_chat(WAIT).await.expect("delivered");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = scrape(&http, &base).await;
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(delta("imrs_messages_accepted_total"), N as f64, "{after}");
    assert_eq!(delta("imrs_messages_delivered_total"), N as f64, "{after}");
    assert_eq!(
        delta("imrs_delivery_latency_seconds_count"),
        N as f64,
        "{after}"
    );
    assert_eq!(
        delta(
            r#"imrs_http_requests_total{route="/api/chat/socket/sendmessage",method="POST",status="200"}"#
        ),
        N as f64,
        "{after}"
    );
    assert!(sample(&after, "imrs_writer_commit_seconds_count") >= N as f64);
    assert!(after.contains("imrs_writer_batch_size_bucket"), "{after}");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = scrape(&http, &base).await;
    assert_eq!(
        sample(&closed, r#"imrs_open_sockets{kind="legacy"}"#),
        0.0,
        "{closed}"
    );
}

#[tokio::test]
async fn json_request_logs_have_id_route_status_and_no_tokens() {
    let dir = dir();
    let url = fresh_database(&dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let log = dir.join("log.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imrs"))
        .env("IMRS_LISTEN", format!("127.0.0.1:{port}"))
        .env("IMRS_DATA_DIR", &dir)
        .env("IMRS_DATABASE_URL", &url)
        .env("IMRS_JWT_SECRET", "log-test-secret")
        .env("IMRS_ARGON2_MEMORY_KIB", "64")
        .env("IMRS_LOG", "info")
        .env("IMRS_LOG_FORMAT", "json")
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start imrs");
    let base = format!("127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("http://{base}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "imrs did not start");
    let (_, token) = register(&http, &base, "logged01").await;
    post(
        &http,
        &base,
        "/api/chat/userset",
        Some(&token),
        json!({"userset": "{}"}),
    )
    .await;
    let mut ws = Ws::open_url(&format!("ws://{base}/ws?token={token}")).await;
    while ws.next_json(QUIET).await.is_some() {}
    drop(ws);
    http.get(format!("http://{base}/api/chat/grouplist/1?token={token}"))
        .send()
        .await
        .expect("get");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(&token), "a token was logged:\n{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let req = lines
        .iter()
        .find(|l| l["span"]["route"] == "/api/chat/userset")
        .unwrap_or_else(|| panic!("no request line:\n{text}"));
    assert_eq!(req["fields"]["status"], 200, "{req}");
    assert!(req["fields"]["latency"].is_string(), "{req}");
    assert_eq!(req["span"]["id"].as_str().map(str::len), Some(36), "{req}");
    assert!(lines.iter().any(|l| l["span"]["route"] == "/ws"), "{text}");
}

fn cli(
    dir: &std::path::Path,
    url: &str,
    listen: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_imrs"))
        .arg("admin")
        .args(args)
        .env("IMRS_LISTEN", listen)
        .env("IMRS_DATA_DIR", dir)
        .env("IMRS_DATABASE_URL", url)
        .env("IMRS_JWT_SECRET", "crash-test-secret")
        .env("IMRS_ARGON2_MEMORY_KIB", "64")
        .env("IMRS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imrs admin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_user_commands_go_through_the_running_server_and_managers_are_kept_in_the_store() {
    let dir = dir();
    let url = fresh_database(&dir).await;
    let server = start_binary_with(&dir, &url, &[]).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    // Managers: add (password from stdin), list, passwd, remove; no default account.
    let (ok, out, _) = cli(&dir, &url, &base, &["manager", "list"], "");
    assert!(ok && !out.contains("boss"), "{out}");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["manager", "add", "boss", "--password-stdin"],
        "short\n",
    );
    assert!(!ok && err.contains("管理员密码至少8个字符"), "{err}");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["manager", "add", "boss", "--password-stdin"],
        "first-password\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["manager", "add", "boss"],
        "again-password\n",
    );
    assert!(!ok && err.contains("管理员已存在"), "{err}");
    let (ok, out, _) = cli(&dir, &url, &base, &["manager", "list"], "");
    assert!(ok && out.contains("boss"), "{out}");
    let login = |pw: &'static str| {
        let http = &http;
        let base = &base;
        async move {
            post(
                http,
                base,
                "/admin/api/login",
                None,
                json!({"name": "boss", "password": pw}),
            )
            .await
        }
    };
    assert_eq!(login("first-password").await["msg"], "ok");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["manager", "passwd", "boss", "--password-stdin"],
        "second-password\n",
    );
    assert!(ok, "{err}");
    assert_eq!(login("first-password").await["msg"], "fail");
    assert_eq!(login("second-password").await["msg"], "ok");

    // Users, through the running server.
    let (ok, out, err) = cli(
        &dir,
        &url,
        &base,
        &["create", "cliuser01", "--password-stdin"],
        "cli-pw-1\n",
    );
    assert!(ok, "{err}");
    assert!(err.contains("through the running server"), "{err}");
    assert!(out.contains("创建成功"), "{out}");
    let r = post(
        &http,
        &base,
        "/api/loginChat",
        None,
        json!({"username": "cliuser01", "password": "cli-pw-1"}),
    )
    .await;
    let id = r["data"]["id"].as_i64().expect("id");
    let token = r["data"]["token"].as_str().expect("token").to_string();
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["create", "cliuser01", "--password-stdin"],
        "x\n",
    );
    assert!(!ok && err.contains("即时通讯用户账号已存在"), "{err}");
    let (ok, out, _) = cli(&dir, &url, &base, &["list"], "");
    assert!(ok && out.contains("cliuser01"), "{out}");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["rename", &id.to_string(), "cliuser02"],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &dir,
        &url,
        &base,
        &["passwd", &id.to_string(), "--password-stdin"],
        "cli-pw-2\n",
    );
    assert!(ok, "{err}");
    let r = post(
        &http,
        &base,
        "/api/loginChat",
        None,
        json!({"username": "cliuser02", "password": "cli-pw-2"}),
    )
    .await;
    assert_eq!(r["msg"], "ok", "{r}");
    let token2 = r["data"]["token"].as_str().expect("token").to_string();
    assert_ne!(token, token2);
    let mut ws = Ws::open_url(&format!("ws://{base}/ws?token={token2}")).await;
    while ws.next_json(QUIET).await.is_some() {}
    let (ok, out, err) = cli(&dir, &url, &base, &["delete", &id.to_string()], "");
    assert!(ok && out.contains("删除成功"), "{out} {err}");
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    let (ok, _, err) = cli(&dir, &url, &base, &["delete", &id.to_string()], "");
    assert!(!ok && err.contains("该即时通讯用户不存在"), "{err}");
    let (ok, _, _) = cli(&dir, &url, &base, &["manager", "remove", "boss"], "");
    assert!(ok);
    assert_eq!(login("second-password").await["msg"], "fail");

    // With no server listening, the same commands act on the store directly.
    drop(server);
    let (ok, out, err) = cli(
        &dir,
        &url,
        &base,
        &["create", "offline01", "--password-stdin"],
        "pw-off-1\n",
    );
    assert!(ok && out.contains("创建成功"), "{out} {err}");
    assert!(!err.contains("through the running server"), "{err}");
    let (ok, out, _) = cli(&dir, &url, &base, &["list"], "");
    assert!(
        ok && out.contains("offline01") && !out.contains("cliuser02"),
        "{out}"
    );
}
