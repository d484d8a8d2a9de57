//! Cluster mode (issue 12): two `imrs` node processes sharing one MariaDB database and one private
//! `redis-server`, spoken to over real HTTP and websockets. They run on the MariaDB pass (a
//! shared database is what a cluster is); on the SQLite pass they say so and return.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private redis-server on a free port (no persistence), killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    async fn start() -> Redis {
        let port = free_port();
        let mut r = Redis { child: None, port };
        r.restart().await;
        r
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.base, path)
    }
    fn ws(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.base)
    }
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    redis: Redis,
    db: String,
    dir: std::path::PathBuf,
    nodes: Vec<Node>,
    http: reqwest::Client,
}

/// Two nodes on a fresh MariaDB database and a private Redis, or `None` on the SQLite pass.
async fn cluster(n: usize) -> Option<Cluster> {
    let Some(_) = mysql_base() else {
        eprintln!(
            "cluster tests run on the MariaDB pass (IMRS_TEST_DATABASE_URL): skipped on SQLite"
        );
        return None;
    };
    let dir = std::env::temp_dir().join(format!("imrs-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = fresh_database(&dir).await;
    let redis = Redis::start().await;
    let mut c = Cluster {
        redis,
        db,
        dir,
        nodes: Vec::new(),
        http: reqwest::Client::new(),
    };
    for i in 0..n {
        let node = c.start_node(&format!("node{i}")).await;
        c.nodes.push(node);
    }
    Some(c)
}

impl Cluster {
    async fn start_node(&self, name: &str) -> Node {
        let port = free_port();
        let data = self.dir.join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_imrs"))
            .env("IMRS_LISTEN", format!("127.0.0.1:{port}"))
            .env("IMRS_DATA_DIR", &data)
            .env("IMRS_DATABASE_URL", &self.db)
            .env("IMRS_REDIS_URL", self.redis.url())
            .env("IMRS_NODE_ID", name)
            .env("IMRS_JWT_SECRET", "cluster-test-secret")
            .env("IMRS_ARGON2_MEMORY_KIB", "64")
            .env("IMRS_PER_IP_LIMITS", "off")
            .env("IMRS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start imrs");
        let node = Node {
            child,
            base: format!("127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            if self.http.get(node.url("/")).send().await.is_ok() {
                // Give the bus subscription a moment.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {name} did not start");
    }

    async fn post(
        &self,
        node: usize,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.nodes[node].url(path))
            .json(&body)
            .timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.header("token", t);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, node: usize, path: &str, token: Option<&str>, body: Value) -> Value {
        let (status, v) = self.post(node, path, token, body).await;
        assert_eq!(
            (status, v["msg"].as_str()),
            (200, Some("ok")),
            "{path}: {v}"
        );
        v["data"].clone()
    }

    async fn register(&self, node: usize, name: &str) -> (i64, String) {
        let d = self
            .ok(
                node,
                "/api/regChat",
                None,
                json!({"username": name, "password": "123456"}),
            )
            .await;
        (
            d["id"].as_i64().expect("id"),
            d["token"].as_str().expect("token").into(),
        )
    }

    /// Friends both ways (rows written straight into the shared database).
    async fn befriend(&self, a: (i64, &str), b: (i64, &str)) {
        let now = imrs::time::now_db();
        for (u, f) in [(a.0, b.0), (b.0, a.0)] {
            self.sql(
                "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`,`create_time`,`update_time`) VALUES (?,?,'',?,?)",
                imrs::args![u, f, now, now],
            )
            .await;
        }
    }

    async fn store(&self) -> imrs::store::Db {
        imrs::store::Db::connect(&self.db, &self.dir)
            .await
            .expect("the shared database")
    }

    async fn sql(&self, sql: &str, args: Vec<imrs::store::Arg>) {
        let db = self.store().await;
        db.exec(sql, args).await.expect("statement");
        db.close().await;
    }

    /// `owner` creates a group with these friends (API 二十一); returns its id.
    async fn group(&self, owner: (i64, &str), members: &[i64]) -> i64 {
        let db = self.store().await;
        let rows: Vec<(i64, i64)> = db
            .all(
                "SELECT `id`,`friend_id` FROM `goodfriend` WHERE `user_id` = ?",
                imrs::args![owner.0],
            )
            .await
            .expect("rows");
        let ids: Vec<i64> = rows
            .iter()
            .filter(|(_, f)| members.contains(f))
            .map(|(id, _)| *id)
            .collect();
        self.ok(
            0,
            "/api/chat/group/create",
            Some(owner.1),
            json!({"userIds": ids}),
        )
        .await;
        let (gid,): (i64,) = db
            .opt(
                "SELECT `id` FROM `group` WHERE `user_id` = ? ORDER BY `id` DESC LIMIT 1",
                imrs::args![owner.0],
            )
            .await
            .expect("query")
            .expect("a group");
        db.close().await;
        gid
    }

    /// API 十五 (`visitorloginChat`) for `username` from a new device; returns the token.
    async fn device_login(&self, node: usize, username: &str) -> String {
        let (sign, body) = signed_body(
            &device_id(),
            json!({"username": username, "password": "123456"}),
        );
        let r = self
            .http
            .post(self.nodes[node].url("/api/visitorloginChat"))
            .header("X-Security-Sign", sign)
            .json(&body)
            .send()
            .await
            .expect("login")
            .json::<Value>()
            .await
            .expect("json");
        r["data"]["token"].as_str().expect("token").to_string()
    }

    async fn send(
        &self,
        node: usize,
        token: &str,
        to: i64,
        chat: &str,
        text: &str,
    ) -> (u16, Value) {
        self.post(
            node,
            "/api/chat/socket/sendmessage",
            Some(token),
            json!({"sendto_id": to, "chatType": chat, "type": "text",
                   "data": {"data": text, "dataType": false, "otherData": null}}),
        )
        .await
    }

    async fn connect(&self, node: usize, token: &str) -> Ws {
        let mut ws = Ws::open_url(&self.nodes[node].ws(token)).await;
        while ws.next_json(QUIET).await.is_some() {}
        self.ok(
            node,
            "/api/chat/chatGetmessageOffLine",
            Some(token),
            json!({}),
        )
        .await;
        ws
    }
}

fn texts(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|d| d["type"] == "text" && d["from_id"].is_i64())
        .map(|d| d["data"]["data"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn cross_node_single_and_group_delivery_arrive_live_and_in_order() {
    let Some(c) = cluster(2).await else { return };
    let (a, ta) = c.register(0, "clusa001").await;
    let (b, tb) = c.register(1, "clusb001").await;
    let (m, tm) = c.register(0, "clusm001").await;
    c.befriend((a, &ta), (b, &tb)).await;
    c.befriend((a, &ta), (m, &tm)).await;
    let mut wb = c.connect(1, &tb).await;
    let mut wm = c.connect(0, &tm).await;
    wb.drain_chats(QUIET).await;
    wm.drain_chats(QUIET).await;
    for i in 0..30 {
        let (s, v) = c.send(0, &ta, b, "single", &format!("one {i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    let got = texts(&wb.drain_chats(Duration::from_millis(1500)).await);
    let expected: Vec<String> = (0..30).map(|i| format!("one {i}")).collect();
    assert_eq!(got, expected, "node 0 → node 1, live, in order");

    // A group with members on both nodes.
    let gid = c.group((a, &ta), &[b, m]).await;
    wb.drain_chats(QUIET).await;
    wm.drain_chats(QUIET).await;
    for i in 0..20 {
        let (s, v) = c.send(1, &tb, gid, "group", &format!("grp {i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    let expected: Vec<String> = (0..20).map(|i| format!("grp {i}")).collect();
    assert_eq!(
        texts(&wm.drain_chats(Duration::from_millis(1500)).await),
        expected,
        "a member on the other node"
    );
    assert!(texts(&wb.drain_chats(QUIET).await).is_empty(), "no echo");
}

#[tokio::test]
async fn kick_logout_ban_and_offline_pull_act_across_nodes() {
    let Some(c) = cluster(2).await else { return };
    let (a, ta) = c.register(0, "kickxa01").await;
    let (b, _) = c.register(0, "kickxb01").await;
    // b logs in from device 1 and holds a socket on node 1.
    let t1 = c.device_login(0, "kickxb01").await;
    c.befriend((a, &ta), (b, &t1)).await;

    // chatGetmessageOffLine on node 0 flushes the socket held by node 1.
    c.send(0, &ta, b, "single", "queued").await;
    let mut w1 = Ws::open_url(&c.nodes[1].ws(&t1)).await;
    while w1.next_json(QUIET).await.is_some() {}
    c.ok(0, "/api/chat/chatGetmessageOffLine", Some(&t1), json!({}))
        .await;
    let got = texts(&w1.drain_chats(Duration::from_millis(1000)).await);
    assert_eq!(
        got,
        vec!["queued"],
        "an offline pull on node 0 writes to node 1's socket"
    );

    // A login from another device on node 0 kicks the socket on node 1: notice, no Close frame.
    let t2 = c.device_login(0, "kickxb01").await;
    let kick = w1.next_chat(WAIT).await.expect("kick notice");
    assert_eq!(kick["from_name"], "账号异地登录", "{kick}");
    assert_eq!(w1.ended(WAIT).await, Ended::Abnormal);

    // Logout on node 1 makes the socket on node 0 inert: nothing more is delivered to it.
    let mut w2 = Ws::open_url(&c.nodes[0].ws(&t2)).await;
    while w2.next_json(QUIET).await.is_some() {}
    c.ok(1, "/api/chat/logout", Some(&t2), json!({})).await;
    c.send(1, &ta, b, "single", "after logout").await;
    assert!(texts(&w2.drain_chats(Duration::from_millis(800)).await).is_empty());

    // A ban (imrs admin ban) closes every socket on every node with 4003 before it returns.
    let t3 = c.device_login(1, "kickxb01").await;
    let mut on0 = Ws::open_url(&c.nodes[0].ws(&t3)).await;
    let mut on1 = Ws::open_url(&c.nodes[1].ws(&t3)).await;
    while on0.next_json(QUIET).await.is_some() {}
    while on1.next_json(QUIET).await.is_some() {}
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imrs"))
        .args(["admin", "ban", &b.to_string()])
        .env("IMRS_DATA_DIR", c.dir.join("cli"))
        .env("IMRS_DATABASE_URL", &c.db)
        .env("IMRS_JWT_SECRET", "cluster-test-secret")
        .env("IMRS_LOG", "warn")
        .output()
        .await
        .expect("imrs admin ban");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 0..2 {
        let (s, v) = c
            .post(n, "/api/chat/userset", Some(&t3), json!({"userset": "{}"}))
            .await;
        assert_eq!(
            (s, v["data"].clone()),
            (400, json!("当前用户不存在或者已被禁用"))
        );
    }
    for ws in [&mut on0, &mut on1] {
        assert_eq!(
            ws.next_json(WAIT).await,
            Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
        );
        assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    }
}

#[tokio::test]
async fn the_login_failure_limit_is_shared_by_the_nodes() {
    let Some(c) = cluster(2).await else { return };
    c.register(0, "sharedl1").await;
    for i in 0..20 {
        let (s, v) = c
            .post(
                i % 2,
                "/api/loginChat",
                None,
                json!({"username": "sharedl1", "password": "wrong-one"}),
            )
            .await;
        assert_eq!((s, v["data"].clone()), (400, json!("账户或密码错误")));
    }
    // Ten failures on each node: together the limit of 20 is reached on both.
    for n in 0..2 {
        let (s, v) = c
            .post(
                n,
                "/api/loginChat",
                None,
                json!({"username": "sharedl1", "password": "123456"}),
            )
            .await;
        assert_eq!(
            (s, v["data"].clone()),
            (400, json!("账户或密码错误")),
            "node {n}"
        );
    }
}

/// SIGKILL the node holding the recipient's socket while a stream arrives: the recipient
/// reconnects to the other node, and every message answered `ok` arrives, in order; a message
/// arrives twice only if the killed node had written it before it died unconfirmed.
#[tokio::test]
async fn a_node_crash_loses_nothing_acknowledged() {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let (a, ta) = c.register(0, "crasha01").await;
    let (b, tb) = c.register(0, "crashb01").await;
    c.befriend((a, &ta), (b, &tb)).await;
    let mut wb = c.connect(1, &tb).await;
    wb.drain_chats(QUIET).await;
    let sender = {
        let (url, http, ta) = (
            c.nodes[0].url("/api/chat/socket/sendmessage"),
            c.http.clone(),
            ta.clone(),
        );
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..200 {
                let r = http
                    .post(&url)
                    .header("token", &ta)
                    .json(&json!({"sendto_id": b, "chatType": "single", "type": "text",
                                  "data": {"data": format!("m{i:03}"), "dataType": false, "otherData": null}}))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status().as_u16() == 200 {
                        acked.push(format!("m{i:03}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        if let Some(d) = wb.next_chat(Duration::from_millis(100)).await {
            before.push(d);
        }
    }
    c.nodes[1].kill9();
    let acked = sender.await.expect("sender");
    let mut wb = c.connect(0, &tb).await;
    let after = wb.drain_chats(Duration::from_millis(1500)).await;
    let before = texts(&before);
    let after = texts(&after);
    assert!(
        !before.is_empty(),
        "the stream had started on the killed node"
    );
    let all: Vec<String> = before.iter().chain(after.iter()).cloned().collect();
    let seen: HashSet<&String> = all.iter().collect();
    for m in &acked {
        assert!(seen.contains(m), "{m} was acknowledged and never arrived");
    }
    // In order on each socket; a repeat only of what the killed node had written.
    let mut sorted = before.clone();
    sorted.sort();
    assert_eq!(before, sorted);
    let mut sorted = after.clone();
    sorted.sort();
    assert_eq!(after, sorted);
    let mut count: HashMap<&String, usize> = HashMap::new();
    for m in &all {
        *count.entry(m).or_default() += 1;
    }
    for (m, n) in count {
        assert!(
            n == 1 || (n == 2 && before.contains(m)),
            "{m} arrived {n} times"
        );
    }
}

/// Redis killed during traffic and restarted 3 s later: local delivery goes on meanwhile, the
/// nodes reconnect by themselves, and what crossed nodes while the bus was down is delivered
/// from the store once it is back.
#[tokio::test]
async fn a_redis_restart_loses_nothing_and_delivery_resumes() {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let (a, ta) = c.register(0, "redisa01").await;
    let (b, tb) = c.register(0, "redisb01").await;
    let (l, tl) = c.register(0, "redisl01").await;
    c.befriend((a, &ta), (b, &tb)).await;
    c.befriend((a, &ta), (l, &tl)).await;
    let mut remote = c.connect(1, &tb).await;
    let mut local = c.connect(0, &tl).await;
    remote.drain_chats(QUIET).await;
    local.drain_chats(QUIET).await;
    c.send(0, &ta, b, "single", "r0").await;
    c.redis.kill();
    for i in 1..6 {
        let (s, v) = c.send(0, &ta, b, "single", &format!("r{i}")).await;
        assert_eq!(s, 200, "sending goes on without Redis: {v}");
        let (s, _) = c.send(0, &ta, l, "single", &format!("l{i}")).await;
        assert_eq!(s, 200);
    }
    assert_eq!(
        texts(&local.drain_chats(Duration::from_millis(800)).await),
        vec!["l1", "l2", "l3", "l4", "l5"],
        "delivery on one node goes on while Redis is down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.redis.restart().await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < 6 && tokio::time::Instant::now() < deadline {
        got.extend(texts(&remote.drain_chats(Duration::from_millis(500)).await));
    }
    assert_eq!(got, vec!["r0", "r1", "r2", "r3", "r4", "r5"]);
    // And the bus works again, live.
    c.send(0, &ta, b, "single", "r6").await;
    assert_eq!(
        texts(&remote.drain_chats(Duration::from_millis(1500)).await),
        vec!["r6"]
    );
}
