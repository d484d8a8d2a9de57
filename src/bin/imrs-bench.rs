//! `imrs-bench`: the load generator (issue "benchmarks"). It seeds users through the store, starts
//! the `imrs` server and a bare websocket relay (the baseline) as child processes on loopback,
//! opens websocket connections from several 127.0.0.x source addresses, sends over HTTP or the
//! websocket extension, and prints one JSON report. Every run is bounded in count and time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const SECRET: &str = "imrs-bench-secret";

#[derive(Parser)]
#[command(
    name = "imrs-bench",
    about = "Load generator for imrs, with a bare websocket relay as baseline"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios and print a JSON report
    Run(RunArgs),
    /// The baseline: a bare websocket relay (no auth, no storage), used as a child process
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Small, fast settings for CI (under a minute)
    #[arg(long)]
    quick: bool,
    /// Scenarios: idle, one2one, latency, fanout (comma-separated) or all
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Idle connection steps (comma-separated); `max` = up to the open-file ceiling
    #[arg(long, default_value = "1000,10000,max")]
    idle: String,
    /// Sender/receiver pairs for 1:1 runs
    #[arg(long, default_value_t = 64)]
    pairs: usize,
    /// Seconds per throughput/latency run
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Send path for 1:1: http (API 二十) or ws (EXTENSION send frame)
    #[arg(long, default_value = "http")]
    send: String,
    /// Group sizes for fan-out (members), comma-separated
    #[arg(long, default_value = "1000,10000")]
    members: String,
    /// Online members per fan-out run (0 = all members)
    #[arg(long, default_value_t = 0)]
    online: usize,
    /// Messages per fan-out run
    #[arg(long, default_value_t = 20)]
    fanout_messages: usize,
    /// Database: empty = SQLite in a temp dir; or mysql://user:pass@127.0.0.1:3306 (a fresh database is created)
    #[arg(long, default_value = "")]
    mysql: String,
    /// Path of the imrs server binary (default: next to this binary)
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_nofile();
    match Cli::parse().cmd {
        Cmd::Relay { listen } => relay(&listen).await,
        Cmd::Run(args) => {
            let report = run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn raise_nofile() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

fn nofile() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map(|(s, _)| s)
        .unwrap_or(1024)
}

// ---------------------------------------------------------------- baseline relay

/// Clients connect to `/?id=<n>`; a text frame `{"to":k,…}` is forwarded verbatim to client k and
/// answered with `ack` to the sender (one message in flight per sender, like an HTTP send).
// The handshake callback's error type is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn relay(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("{}", listener.local_addr()?);
    type Peers = Arc<Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<Message>>>>;
    let peers: Peers = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        let peers = peers.clone();
        tokio::spawn(async move {
            let mut id = 0u64;
            let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                      resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                if let Some(q) = req.uri().query() {
                    id = q.trim_start_matches("id=").parse().unwrap_or(0);
                }
                Ok(resp)
            };
            let Ok(ws) =
                tokio_tungstenite::accept_hdr_async_with_config(stream, cb, Some(small_ws())).await
            else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
            peers.lock().insert(id, tx.clone());
            let writer = tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(t) = &msg {
                    let to = serde_json::from_str::<Value>(t.as_str())
                        .ok()
                        .and_then(|v| v["to"].as_u64())
                        .unwrap_or(u64::MAX);
                    if let Some(peer) = peers.lock().get(&to) {
                        let _ = peer.send(msg.clone());
                    }
                    let _ = tx.send(Message::Text("ack".into()));
                }
            }
            peers.lock().remove(&id);
            writer.abort();
        });
    }
}

fn small_ws() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 4096;
    c.write_buffer_size = 0;
    c.max_message_size = Some(1 << 20);
    c
}

// ---------------------------------------------------------------- processes

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name(name))
}

async fn wait_port(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{addr} did not start")
}

async fn start_server(args: &RunArgs, dir: &std::path::Path, db_url: &str) -> anyhow::Result<Proc> {
    let bin = args
        .server_bin
        .clone()
        .map_or_else(|| sibling("imrs"), Ok)?;
    let port = free_port()?;
    let child = Command::new(&bin)
        .env("IMRS_LISTEN", format!("127.0.0.1:{port}"))
        .env("IMRS_DATA_DIR", dir)
        .env("IMRS_DATABASE_URL", db_url)
        .env("IMRS_JWT_SECRET", SECRET)
        .env("IMRS_PER_IP_LIMITS", "off")
        .env("IMRS_SEND_RATE_LIMIT", "0")
        .env("IMRS_ARGON2_MEMORY_KIB", "64")
        .env("IMRS_GROUP_MAX_MEMBERS", "100000")
        .env("IMRS_WS_QUEUE_FRAMES", "4096")
        .env("IMRS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_port(addr).await?;
    Ok(Proc { child, addr })
}

async fn start_relay() -> anyhow::Result<Proc> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["relay", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_port(addr).await?;
    Ok(Proc { child, addr })
}

// ---------------------------------------------------------------- seeding through the store

struct Seeded {
    tokens: Vec<(i64, String)>,
}

/// Create `n` users (with active tokens) directly in the store, fast.
async fn seed_users(db: &imrs::store::Db, n: usize, prefix: &str) -> anyhow::Result<Seeded> {
    let keys = imrs::services::tokens::Keys::new(SECRET.as_bytes());
    let now = imrs::time::now_db();
    let iat = chrono::Utc::now().timestamp();
    let unlimited = r#"{"chatset":{"visitor":{"sendCount":2,"needFollow":false},"user":{"sendCount":2,"needFollow":false}}}"#;
    let mut tokens = Vec::with_capacity(n);
    for chunk_start in (0..n).step_by(500) {
        let end = (chunk_start + 500).min(n);
        let mut tx = db.begin().await?;
        for i in chunk_start..end {
            let sql = "INSERT INTO `user` (`uuid`,`username`,`password`,`role`,`status`,`userset`,`last_login`,`register_time`,`create_time`,`update_time`) VALUES (?,?,'-','user',1,?,?,?,?,?)";
            let id = tx
                .exec(
                    sql,
                    imrs::args![
                        uuid::Uuid::new_v4().to_string(),
                        format!("{prefix}{i}"),
                        unlimited,
                        now,
                        now,
                        now,
                        now
                    ],
                )
                .await?
                .id;
            let jti = uuid::Uuid::new_v4().simple().to_string();
            tx.exec(
                "INSERT INTO `im_token` (`jti`,`user_id`,`device_id`,`role`,`iat`,`state`) VALUES (?,?,NULL,'user',?,1)",
                imrs::args![&jti, id, iat],
            )
            .await?;
            tx.exec(
                "INSERT INTO `im_session` (`user_id`,`jti`) VALUES (?,?)",
                imrs::args![id, &jti],
            )
            .await?;
            let claims = imrs::services::tokens::Claims {
                id,
                role: "user".into(),
                iat,
                jti,
            };
            tokens.push((id, keys.encode(&claims)));
        }
        tx.commit().await?;
    }
    Ok(Seeded { tokens })
}

async fn befriend(db: &imrs::store::Db, a: i64, b: i64) -> anyhow::Result<()> {
    let now = imrs::time::now_db();
    let mut tx = db.begin().await?;
    for (u, f) in [(a, b), (b, a)] {
        tx.exec(
            "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`,`create_time`,`update_time`) VALUES (?,?,'',?,?)",
            imrs::args![u, f, now, now],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn seed_group(db: &imrs::store::Db, members: &[i64]) -> anyhow::Result<i64> {
    let now = imrs::time::now_db();
    let mut tx = db.begin().await?;
    let gid = tx
        .exec(
            "INSERT INTO `group` (`uuid`,`user_id`,`name`,`avatar`,`remark`,`create_time`,`update_time`) VALUES (?,?,'bench','','',?,?)",
            imrs::args![uuid::Uuid::new_v4().to_string(), members[0], now, now],
        )
        .await?
        .id;
    let key = format!("g:{gid}");
    for m in members {
        tx.exec(
            "INSERT INTO `group_user` (`group_id`,`user_id`,`nickname`,`avatar`,`status`,`create_time`,`update_time`) VALUES (?,?,'','',1,?,?)",
            imrs::args![gid, *m, now, now],
        )
        .await?;
        tx.exec(
            "INSERT INTO `im_group_cursor` (`group_id`,`user_id`,`conv_key`,`join_seq`,`left_seq`,`delivered_seq`,`read_seq`) VALUES (?,?,?,1,NULL,0,0)",
            imrs::args![gid, *m, &key],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(gid)
}

// ---------------------------------------------------------------- clients

type Ws = WebSocketStream<TcpStream>;

static NEXT_SRC: AtomicUsize = AtomicUsize::new(0);

/// Connect from 127.0.0.2..=127.0.0.9 in turn so that tens of thousands of sockets fit.
async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let n = NEXT_SRC.fetch_add(1, Ordering::Relaxed);
    let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % 8) as u8));
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let stream = sock.connect(addr).await?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(small_ws())).await?;
    Ok(ws)
}

/// A receiving client: reads frames (answering Pings), counts `singleChat` frames and records the
/// latency carried in `data.data` (`"t:<ns since start>"`).
fn spawn_reader(
    mut ws: Ws,
    start: Instant,
    delivered: Arc<AtomicU64>,
    lat: Arc<Mutex<Vec<u64>>>,
    last_seen: Option<Arc<Mutex<HashMap<String, u64>>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let s = t.as_str();
            if !s.starts_with(r#"{"type":"singleChat""#) {
                continue;
            }
            let now = start.elapsed().as_micros() as u64;
            if let Some(pos) = s.find("\"t:") {
                let digits: String = s[pos + 3..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(sent) = digits.parse::<u64>() {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    match &last_seen {
                        Some(map) => {
                            let mut m = map.lock();
                            let e = m.entry(digits).or_insert(0);
                            *e = (*e).max(now);
                        }
                        None => lat.lock().push(now.saturating_sub(sent)),
                    }
                }
            }
        }
    })
}

fn percentiles(v: &mut [u64]) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    json!({"p50_ms": p(0.50), "p90_ms": p(0.90), "p99_ms": p(0.99), "max_ms": p(1.0), "samples": v.len()})
}

// ---------------------------------------------------------------- scenarios

async fn run(args: RunArgs) -> anyhow::Result<Value> {
    let mut a = args.clone();
    if a.quick {
        a.idle = "200".into();
        a.pairs = 8;
        a.seconds = 2;
        a.members = "200".into();
        a.fanout_messages = 5;
    }
    let scenarios: Vec<String> = if a.scenario == "all" {
        vec![
            "idle".into(),
            "one2one".into(),
            "latency".into(),
            "fanout".into(),
        ]
    } else {
        a.scenario.split(',').map(String::from).collect()
    };
    let dir = std::env::temp_dir().join(format!("imrs-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let db_url = if a.mysql.is_empty() {
        format!("sqlite://{}", dir.join("imrs.db").display())
    } else {
        use sqlx::Connection;
        let name = format!("imrs_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::MySqlConnection::connect(&a.mysql).await?;
        sqlx::query(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .execute(&mut c)
            .await?;
        format!("{}/{name}", a.mysql.trim_end_matches('/'))
    };
    let db = imrs::store::Db::connect(&db_url, &dir).await?;
    db.migrate().await?;
    let mut report = serde_json::Map::new();
    report.insert(
        "machine".into(),
        json!({"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
               "nofile": nofile(), "backend": if a.mysql.is_empty() { "sqlite" } else { "mysql" },
               "quick": a.quick}),
    );
    let started = Instant::now();
    for s in &scenarios {
        let v = match s.as_str() {
            "idle" => idle(&a, &db, &dir, &db_url).await.context("idle")?,
            "one2one" => one2one(&a, &db, &dir, &db_url, None)
                .await
                .context("one2one")?,
            "latency" => {
                let max = one2one(&a, &db, &dir, &db_url, None).await?;
                let rate = max["imrs"]["delivered_per_s"].as_f64().unwrap_or(100.0) / 2.0;
                let mut half = one2one(&a, &db, &dir, &db_url, Some(rate.max(1.0))).await?;
                half["target_rate_per_s"] = json!(rate);
                half
            }
            "fanout" => fanout(&a, &db, &dir, &db_url).await.context("fanout")?,
            other => bail!("unknown scenario {other}"),
        };
        eprintln!("imrs-bench: scenario {s} done");
        report.insert(s.clone(), v);
    }
    report.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Value::Object(report))
}

/// Idle connections: RSS per connection at each step, for imrs and the relay.
async fn idle(
    a: &RunArgs,
    db: &imrs::store::Db,
    dir: &std::path::Path,
    url: &str,
) -> anyhow::Result<Value> {
    let ceiling = nofile().saturating_sub(500) as usize;
    let steps: Vec<usize> = a
        .idle
        .split(',')
        .filter_map(|s| {
            if s == "max" {
                Some(ceiling)
            } else {
                s.parse().ok()
            }
        })
        .map(|n: usize| n.min(ceiling))
        .collect();
    let most = steps.iter().copied().max().unwrap_or(0);
    let users = seed_users(
        db,
        most,
        &format!(
            "idle{}_",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..6)
                .unwrap_or("x")
        ),
    )
    .await?;
    let mut out = Vec::new();
    for target in ["imrs", "relay"] {
        let proc = if target == "imrs" {
            start_server(a, dir, url).await?
        } else {
            start_relay().await?
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = proc.rss_kib();
        let mut conns: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let mut errors = 0usize;
        for &step in &steps {
            let deadline = Instant::now() + Duration::from_secs(120);
            while conns.len() < step && Instant::now() < deadline {
                let i = conns.len();
                let path = if target == "imrs" {
                    format!("/ws?token={}", users.tokens[i].1)
                } else {
                    format!("/?id={i}")
                };
                match connect(proc.addr, &path).await {
                    Ok(ws) => conns.push(spawn_reader(
                        ws,
                        Instant::now(),
                        Arc::default(),
                        Arc::default(),
                        None,
                    )),
                    Err(_) => {
                        errors += 1;
                        if errors > 50 {
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = proc.rss_kib();
            let held = conns.iter().filter(|c| !c.is_finished()).count();
            out.push(json!({"target": target, "requested": step, "held": held, "rss_kib": rss,
                            "baseline_rss_kib": base, "errors": errors,
                            "kib_per_conn": if held > 0 { (rss.saturating_sub(base)) as f64 / held as f64 } else { 0.0 }}));
        }
        for c in conns {
            c.abort();
        }
    }
    Ok(json!({"ceiling": ceiling, "steps": out}))
}

/// 1:1 throughput (flat out, `rate` = None) or latency at a fixed total rate, imrs vs the relay.
async fn one2one(
    a: &RunArgs,
    db: &imrs::store::Db,
    dir: &std::path::Path,
    url: &str,
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    let pairs = a.pairs;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let users = seed_users(db, pairs * 2, &format!("p{}_", &tag[..6])).await?;
    for p in 0..pairs {
        befriend(db, users.tokens[2 * p].0, users.tokens[2 * p + 1].0).await?;
    }
    let mut out = serde_json::Map::new();
    for target in ["imrs", "relay"] {
        let proc = if target == "imrs" {
            start_server(a, dir, url).await?
        } else {
            start_relay().await?
        };
        let start = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for p in 0..pairs {
            let path = if target == "imrs" {
                format!("/ws?token={}", users.tokens[2 * p + 1].1)
            } else {
                format!("/?id={}", 2 * p + 1)
            };
            readers.push(spawn_reader(
                connect(proc.addr, &path).await?,
                start,
                delivered.clone(),
                lat.clone(),
                None,
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let run_for = Duration::from_secs(a.seconds);
        let t0 = Instant::now();
        let mut senders = Vec::new();
        for p in 0..pairs {
            let (sent, errors) = (sent.clone(), errors.clone());
            let (from, to) = (users.tokens[2 * p].clone(), users.tokens[2 * p + 1].0);
            let addr = proc.addr;
            let mode = if target == "relay" {
                "relay".to_string()
            } else {
                a.send.clone()
            };
            let interval = rate.map(|r| Duration::from_secs_f64(pairs as f64 / r));
            let to_relay = 2 * p + 1;
            senders.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut ws = match mode.as_str() {
                    "relay" => connect(addr, &format!("/?id={}", 2 * p)).await.ok(),
                    "ws" => connect(addr, &format!("/ws?token={}&proto=2", from.1)).await.ok(),
                    _ => None,
                };
                let mut n = 0u64;
                let mut next = Instant::now();
                while t0.elapsed() < run_for {
                    if let Some(iv) = interval {
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep(next - now).await;
                        }
                        next += iv;
                    }
                    let stamp = format!("t:{}", start.elapsed().as_micros());
                    let ok = match (mode.as_str(), ws.as_mut()) {
                        ("relay", Some(ws)) => {
                            let frame = json!({"type": "singleChat", "data": {"data": stamp}, "to": to_relay}).to_string();
                            ws.send(Message::Text(frame.into())).await.is_ok() && wait_text(ws, "ack").await
                        }
                        ("ws", Some(ws)) => {
                            n += 1;
                            let frame = json!({"type": "send", "cid": format!("c{p}-{n}"), "payload": {"sendto_id": to,
                                "chatType": "single", "type": "text", "data": {"data": stamp, "dataType": false, "otherData": null}}});
                            ws.send(Message::Text(frame.to_string().into())).await.is_ok() && wait_text(ws, "sendAck").await
                        }
                        _ => {
                            let body = json!({"sendto_id": to, "chatType": "single", "type": "text",
                                "data": {"data": stamp, "dataType": false, "otherData": null}});
                            matches!(http.post(format!("http://{addr}/api/chat/socket/sendmessage"))
                                .header("token", &from.1).json(&body).send().await, Ok(r) if r.status().is_success())
                        }
                    };
                    if ok {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        for s in senders {
            let _ = s.await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let total_sent = sent.load(Ordering::Relaxed);
        let grace = Instant::now() + Duration::from_secs(5);
        while delivered.load(Ordering::Relaxed) < total_sent && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let d = delivered.load(Ordering::Relaxed);
        let rss = proc.rss_kib();
        for r in readers {
            r.abort();
        }
        let mut l = lat.lock().clone();
        out.insert(target.into(), json!({
            "send_path": if target == "relay" { "ws" } else { a.send.as_str() },
            "pairs": pairs, "seconds": elapsed, "sent": total_sent, "delivered": d,
            "sent_per_s": total_sent as f64 / elapsed, "delivered_per_s": d as f64 / elapsed,
            "errors": errors.load(Ordering::Relaxed), "server_rss_kib": rss, "latency": percentiles(&mut l),
        }));
    }
    let ratio = out["imrs"]["delivered_per_s"].as_f64().unwrap_or(0.0)
        / out["relay"]["delivered_per_s"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1e-9);
    out.insert("ratio_imrs_to_relay".into(), json!(ratio));
    Ok(Value::Object(out))
}

async fn wait_text(ws: &mut Ws, prefix_or_type: &str) -> bool {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            let s = t.as_str();
            if s == prefix_or_type || s.contains(&format!("\"type\":\"{prefix_or_type}\"")) {
                return true;
            }
        }
    }
    false
}

/// One message to a group: time from the send to the last online member's receipt.
async fn fanout(
    a: &RunArgs,
    db: &imrs::store::Db,
    dir: &std::path::Path,
    url: &str,
) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for size in a.members.split(',').filter_map(|s| s.parse::<usize>().ok()) {
        let online = if a.online == 0 {
            size
        } else {
            a.online.min(size)
        };
        let online = online.min(nofile().saturating_sub(500) as usize);
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let users = seed_users(db, size, &format!("g{}_", &tag[..6])).await?;
        let ids: Vec<i64> = users.tokens.iter().map(|t| t.0).collect();
        let gid = seed_group(db, &ids).await?;
        let proc = start_server(a, dir, url).await?;
        let start = Instant::now();
        let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let delivered = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        // Member 0 sends; members 1..=online are connected.
        for t in users.tokens.iter().skip(1).take(online) {
            let ws = connect(proc.addr, &format!("/ws?token={}", t.1)).await?;
            readers.push(spawn_reader(
                ws,
                start,
                delivered.clone(),
                Arc::default(),
                Some(seen.clone()),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let http = reqwest::Client::new();
        let mut per_msg = Vec::new();
        let mut errors = 0;
        let expected = readers.len() as u64;
        for _ in 0..a.fanout_messages {
            let before = delivered.load(Ordering::Relaxed);
            let sent_at = start.elapsed().as_micros() as u64;
            let stamp = format!("t:{sent_at}");
            let body = json!({"sendto_id": gid, "chatType": "group", "type": "text",
                              "data": {"data": stamp, "dataType": false, "otherData": null}});
            let ok = matches!(http.post(format!("http://{}/api/chat/socket/sendmessage", proc.addr))
                .header("token", &users.tokens[0].1).json(&body).send().await, Ok(r) if r.status().is_success());
            if !ok {
                errors += 1;
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while delivered.load(Ordering::Relaxed) < before + expected && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let last = seen.lock().get(&sent_at.to_string()).copied().unwrap_or(0);
            per_msg.push(last.saturating_sub(sent_at));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rss = proc.rss_kib();
        let d = delivered.load(Ordering::Relaxed);
        for r in readers {
            r.abort();
        }
        let rows: Option<(i64,)> = db
            .opt("SELECT COUNT(*) FROM `im_inbox` WHERE `entry_id` IN (SELECT `id` FROM `im_entry` WHERE `conv_key` = ?)", imrs::args![format!("g:{gid}")])
            .await
            .ok()
            .flatten();
        results.push(
            json!({"members": size, "online": expected, "messages": a.fanout_messages,
            "delivered": d, "expected": expected * a.fanout_messages as u64, "errors": errors,
            "inbox_rows_for_group_messages": rows.map(|r| r.0), "server_rss_kib": rss,
            "to_last_member": percentiles(&mut per_msg)}),
        );
    }
    Ok(json!(results))
}
