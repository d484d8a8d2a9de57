//! Shared test helpers: every test starts the real server on port 0 with a fresh database
//! (SQLite in a temp directory, or a fresh MariaDB database when `IMRS_TEST_DATABASE_URL` is set)
//! and speaks HTTP/websocket to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;

use imrs::config::{Config, Settings};
use imrs::state::AppState;
use serde_json::{json, Value};

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

static WARN: Once = Once::new();

/// Base URL of MariaDB for tests (`mysql://user:pass@host:port`), if configured.
pub fn mysql_base() -> Option<String> {
    let url = std::env::var("IMRS_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty());
    if url.is_none() {
        WARN.call_once(|| {
            eprintln!("!!! IMRS_TEST_DATABASE_URL is not set: this run tests SQLite only, NOT MariaDB !!!")
        });
    }
    url
}

/// A fresh database URL for one test: a new MariaDB database, or a new SQLite file.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match mysql_base() {
        Some(base) => {
            use sqlx::Connection;
            let name = format!("imrs_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::MySqlConnection::connect(&base)
                .await
                .expect("MariaDB reachable");
            sqlx::query(&format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            ))
            .execute(&mut conn)
            .await
            .expect("create test database");
            format!("{}/{name}", base.trim_end_matches('/'))
        }
        None => format!("sqlite://{}", dir.join("imrs.db").display()),
    }
}

pub fn test_settings(dir: &std::path::Path, database_url: String) -> impl FnOnce(&mut Settings) {
    let dir = dir.to_path_buf();
    move |s: &mut Settings| {
        s.listen = Some("127.0.0.1:0".into());
        s.data_dir = Some(dir);
        s.database_url = Some(database_url);
        s.jwt_secret = Some("test-secret".into());
        s.argon2_memory_kib = Some(64);
        s.per_ip_limits = Some("off".into());
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Start a server whose settings `f` may change.
pub async fn spawn_with(f: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = std::env::temp_dir().join(format!("imrs-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = fresh_database(&dir).await;
    let base = test_settings(&dir, url);
    let config = Config::defaults_with(|s| {
        base(s);
        f(s);
    })
    .expect("config");
    start(config, dir).await
}

pub async fn start(config: Config, dir: PathBuf) -> TestApp {
    let app = imrs::App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        addr,
        state,
        http: reqwest::Client::new(),
        data_dir: dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Resp {
    /// `data` of an ok envelope (asserts status 200 and msg ok).
    pub fn ok(&self) -> &Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {} {}",
            self.status, self.body
        );
        assert_eq!(self.body["msg"], "ok", "{}", self.body);
        &self.body["data"]
    }
    /// Asserts a fail envelope with this status and text.
    pub fn fails(&self, status: u16, text: &str) {
        assert_eq!(
            (
                self.status,
                self.body["msg"].as_str(),
                self.body["data"].as_str()
            ),
            (status, Some("fail"), Some(text)),
            "body: {}",
            self.body
        );
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={}", self.addr, token)
    }

    async fn resp(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body }
    }

    /// POST a JSON body, with the token header when given.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.header("token", t);
        }
        Self::resp(req.send().await.expect("request")).await
    }

    /// POST a form body.
    pub async fn post_form(&self, path: &str, token: Option<&str>, form: &[(&str, &str)]) -> Resp {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(t) = token {
            req = req.header("token", t);
        }
        Self::resp(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.header("token", t);
        }
        Self::resp(req.send().await.expect("request")).await
    }

    /// POST with extra headers and a raw JSON body.
    pub async fn post_signed(&self, path: &str, sign: Option<&str>, body: Value) -> Resp {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(s) = sign {
            req = req.header("X-Security-Sign", s);
        }
        Self::resp(req.send().await.expect("request")).await
    }

    /// Register a user; returns (id, token, whole data).
    pub async fn register(&self, username: &str) -> (i64, String, Value) {
        let r = self
            .post(
                "/api/regChat",
                None,
                json!({"username": username, "password": "123456"}),
            )
            .await;
        let d = r.ok().clone();
        (
            d["id"].as_i64().expect("id"),
            d["token"].as_str().expect("token").to_string(),
            d,
        )
    }

    /// A visitor for `device` through API 十三; returns the answer's data.
    pub async fn visitor(&self, device: &str) -> Value {
        let (sign, body) = signed_body(device, json!({}));
        self.post_signed("/api/visitorRegister", Some(&sign), body)
            .await
            .ok()
            .clone()
    }
}

pub const VISITOR_FORBIDDEN: &str = "您没有权限访问，请先注册或登录";
pub const DEFAULT_AVATAR: &str =
    "https://thinkphp-all.oss-cn-hangzhou.aliyuncs.com/public/67b3001b2aedd.png";
/// A `userset` that lets anyone send any number of messages (`sendCount` 2).
pub const UNLIMITED_USERSET: &str = r#"{"chatset":{"visitor":{"sendCount":2,"needFollow":false},"user":{"sendCount":2,"needFollow":false}}}"#;

/// The keys of a JSON object, in order (field-order checks against the spec).
pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

pub const SALT: &str = "45ncashdaksh2!#@3nxjdas*_259";

/// Sign a visitor request body for `device` with a fresh timestamp (AF §4.1).
pub fn signed_body(device: &str, mut extra: Value) -> (String, Value) {
    let ts = chrono::Utc::now().timestamp_millis();
    let sign = imrs::services::visitor::signature(device, &ts.to_string(), SALT);
    extra["deviceId"] = json!(device);
    extra["timestamp"] = json!(ts);
    (sign, extra)
}

/// A 36-character device id unique to this call.
pub fn device_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ----- websocket helpers -----

use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    pub inner: WsStream,
}

/// How a socket ended, as the client sees it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// A Close frame with this code.
    Close(u16),
    /// The connection ended without a Close frame (the client reports 1006).
    Abnormal,
    /// Still open after the wait.
    Open,
}

impl Ws {
    /// Open `/ws?token=…` (raw: nothing is read yet).
    pub async fn open(app: &TestApp, token: &str) -> Ws {
        Self::open_url(&app.ws_url(token)).await
    }

    pub async fn open_url(url: &str) -> Ws {
        let (inner, resp) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket upgrade");
        assert_eq!(resp.status().as_u16(), 101);
        Ws { inner }
    }

    /// Open and read the connect sequence up to its last connect-time notice.
    pub async fn connect(app: &TestApp, token: &str) -> Ws {
        let mut ws = Self::open(app, token).await;
        let first = ws
            .next_json(Duration::from_secs(5))
            .await
            .expect("welcome frame");
        assert_eq!(
            first["type"], "system",
            "first frame must be the welcome: {first}"
        );
        loop {
            let f = ws
                .next_json(Duration::from_secs(5))
                .await
                .expect("connect notices");
            let from = f["data"]["from_id"].as_str().unwrap_or("").to_string();
            if from.starts_with("redirect-AskAndAnswerSet-")
                || from.starts_with("redirect-visitorLogin-")
            {
                break;
            }
        }
        ws
    }

    /// Next text frame as JSON (skipping server `{"type":"ping"}`), or None after `wait`.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).unwrap_or(Value::String(t.to_string()));
                    if v == json!({"type": "ping"}) {
                        continue;
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next `singleChat` frame's `data`.
    pub async fn next_chat(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let f = self.next_json(wait).await?;
            if f["type"] == "singleChat" {
                return Some(f["data"].clone());
            }
        }
    }

    /// Every `singleChat` data that arrives until `quiet` passes with nothing.
    pub async fn drain_chats(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(d) = self.next_chat(quiet).await {
            out.push(d);
        }
        out
    }

    pub async fn send_text(&mut self, t: &str) {
        self.inner
            .send(Message::Text(t.into()))
            .await
            .expect("send");
    }

    /// Read until the connection ends (or `wait` passes) and report how it ended.
    pub async fn ended(&mut self, wait: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return Ended::Open,
                Ok(None) => return Ended::Abnormal,
                Ok(Some(Err(_))) => return Ended::Abnormal,
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Ended::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

pub const QUIET: Duration = Duration::from_millis(400);
pub const WAIT: Duration = Duration::from_secs(5);

impl TestApp {
    /// Make `a` and `b` friends in both directions through the API (apply + agree).
    pub async fn befriend(&self, a: (i64, &str), b: (i64, &str)) {
        let db = &self.state.db;
        let now = imrs::time::now_db();
        for (u, f) in [(a.0, b.0), (b.0, a.0)] {
            db.exec(
                "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`,`create_time`,`update_time`) VALUES (?,?,'',?,?)",
                imrs::args![u, f, now, now],
            )
            .await
            .expect("friend row");
        }
    }

    pub async fn send_text(&self, token: &str, to: i64, text: &str) -> Resp {
        self.post(
            "/api/chat/socket/sendmessage",
            Some(token),
            json!({"sendto_id": to, "chatType": "single", "type": "text",
                   "data": {"data": text, "dataType": false, "otherData": null}}),
        )
        .await
    }

    pub async fn offline(&self, token: &str) -> Resp {
        self.post("/api/chat/chatGetmessageOffLine", Some(token), json!({}))
            .await
    }
}
