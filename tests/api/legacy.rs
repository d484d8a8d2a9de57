//! Taking over the original (issue 16, spec LT): its MariaDB fixtures and its Redis are loaded
//! with the real `mysql` and `redis-cli` clients, the real `imrs migrate` and `imrs import-redis`
//! binaries upgrade and import them, and the server is then checked over HTTP and websocket only.
//! MariaDB only: on the SQLite pass these tests return at once with a note.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use imrs::config::Config;
use serde_json::{json, Value};

use crate::common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy");

/// Connection parts of `IMRS_TEST_DATABASE_URL` for the mysql client.
struct My {
    base: String,
    args: Vec<String>,
}

fn my() -> Option<My> {
    let Some(base) = mysql_base() else {
        eprintln!(
            "note: legacy takeover tests need MariaDB (IMRS_TEST_DATABASE_URL); skipped on SQLite"
        );
        return None;
    };
    let u = url::Url::parse(&base).expect("IMRS_TEST_DATABASE_URL is a URL");
    let mut args = vec![
        format!("-h{}", u.host_str().unwrap_or("127.0.0.1")),
        format!("-P{}", u.port().unwrap_or(3306)),
        format!("-u{}", u.username()),
        "--default-character-set=utf8mb4".to_string(),
    ];
    if let Some(p) = u.password() {
        args.push(format!("-p{p}"));
    }
    Some(My { base, args })
}

impl My {
    /// Run the mysql client on `db` with `input` on stdin; panics with its stderr on failure.
    fn run(&self, db: Option<&str>, extra: &[&str], input: &str) -> String {
        let mut c = Command::new("mysql");
        c.args(&self.args).args(extra);
        if let Some(db) = db {
            c.arg(db);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mysql client (mariadb-client) is installed");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("write sql");
        }
        let out = child.wait_with_output().expect("mysql runs");
        assert!(
            out.status.success(),
            "mysql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn query(&self, db: &str, sql: &str) -> String {
        self.run(Some(db), &["-N", "-B"], sql)
    }

    /// A new empty database; returns (name, url).
    fn create(&self) -> (String, String) {
        let name = format!("imrs_lt_{}", uuid::Uuid::new_v4().simple());
        self.run(
            None,
            &[],
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"),
        );
        let url = format!("{}/{name}", self.base.trim_end_matches('/'));
        (name, url)
    }

    /// A new database holding the original's schema and data (`early` selects the early install).
    fn load_original(&self, early: bool) -> (String, String) {
        let (name, url) = self.create();
        let (schema, data) = if early {
            ("original-schema-early.sql", "original-data-early.sql")
        } else {
            ("original-schema.sql", "original-data.sql")
        };
        for f in [schema, data] {
            let text = std::fs::read_to_string(Path::new(FIXTURES).join(f)).expect("fixture");
            // Older clients reject mariadb-dump's sandbox line; the server ignores it anyway.
            let text = text
                .strip_prefix("/*M!999999\\- enable the sandbox mode */ \n")
                .unwrap_or(&text);
            self.run(Some(&name), &[], text);
        }
        (name, url)
    }

    /// Everything `information_schema` says about the tables (no comments, no counters).
    fn schema(&self, db: &str) -> String {
        self.query(
            db,
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1;
SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME
  FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2;
SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE
  FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2, 3;
SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS
  WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2;",
        )
    }

    /// Every row of every table but sqlx's bookkeeping (its times differ per run), plus the
    /// recorded migrations without their times.
    fn data(&self, db: &str) -> String {
        let tables = self.query(
            db,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> '_sqlx_migrations' ORDER BY 1",
        );
        let mut out = String::new();
        for t in tables.lines() {
            out.push_str(&format!("== {t}\n"));
            let rows = self.query(db, &format!("SELECT * FROM `{t}`"));
            let mut rows: Vec<&str> = rows.lines().collect();
            rows.sort();
            out.push_str(&rows.join("\n"));
            out.push('\n');
        }
        out.push_str(&self.query(
            db,
            "SELECT IF(COUNT(*) > 0, 'x', '') FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_sqlx_migrations'",
        ));
        out
    }

    fn migrations(&self, db: &str) -> String {
        self.query(
            db,
            "SELECT version, description, success, HEX(checksum) FROM _sqlx_migrations ORDER BY version",
        )
    }
}

/// A private redis-server on a free port, stopped when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let r = Redis { child, port };
        for _ in 0..100 {
            if r.cli(&["PING"]).trim() == "PONG" {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn load_fixture(&self) {
        let file =
            std::fs::File::open(Path::new(FIXTURES).join("original-redis.txt")).expect("fixture");
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .stdin(file)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success());
    }

    /// Every key with its type, TTL presence and content: what "never changes Redis" compares.
    fn dump(&self) -> String {
        let mut keys: Vec<String> = self.cli(&["--scan"]).lines().map(String::from).collect();
        keys.sort();
        let mut out = String::new();
        for k in keys {
            let kind = self.cli(&["TYPE", &k]);
            let v = if kind.trim() == "list" {
                self.cli(&["LRANGE", &k, "0", "-1"])
            } else {
                self.cli(&["GET", &k])
            };
            out.push_str(&format!("{k} {kind}{v}\n"));
        }
        out
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imrs-lt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Run the real `imrs` binary on `url`.
fn imrs(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = temp_dir();
    Command::new(env!("CARGO_BIN_EXE_imrs"))
        .args(args)
        .env("IMRS_DATABASE_URL", url)
        .env("IMRS_DATA_DIR", &dir)
        .env("IMRS_JWT_SECRET", "test-secret")
        .env("IMRS_LISTEN", "127.0.0.1:0")
        .env("IMRS_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("imrs runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "imrs failed: {t}");
    t
}

/// Start the server on an existing (upgraded) database.
async fn serve(url: &str) -> TestApp {
    let dir = temp_dir();
    let base = test_settings(&dir, url.to_string());
    let config = Config::defaults_with(base).expect("config");
    start(config, dir).await
}

/// The twelve users of the fixtures: (id, username, password).
const USERS: [(i64, &str, &str); 12] = [
    (1, "my01", "123456"),
    (2, "my02", "654321"),
    (3, "my03", "abc123"),
    (4, "my04", "qwerty88"),
    (5, "my05", "密码abc123"),
    (6, "my06", "Pa$$w0rd!"),
    (7, "banned01", "111111"),
    (8, "VIS5f0c2e7a", "482913"),
    (9, "my09", "hello2025"),
    (10, "my10", "000000"),
    (11, "my11", "iloveyou"),
    (12, "my12", "zxcvbn12"),
];

async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    app.post(
        "/api/loginChat",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Friend ids of the contact list of `token`.
async fn contacts(app: &TestApp, token: &str) -> Vec<i64> {
    let d = app
        .get("/api/chat/goodfriendlist/1", Some(token))
        .await
        .ok()
        .clone();
    let mut out: Vec<i64> = d["rows"]["newList"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .flat_map(|g| g["list"].as_array().cloned().unwrap_or_default())
                .filter_map(|i| i["friend_id"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Everything the fixtures' README lists, checked through the API of the upgraded server.
async fn check_takeover(app: &TestApp, early: bool) {
    // Every legacy user logs in with their legacy password, and again after the rehash.
    let mut tokens = std::collections::HashMap::new();
    let mut views = std::collections::HashMap::new();
    for (id, username, password) in USERS {
        if early && id == 8 {
            continue;
        }
        let r = login(app, username, password).await;
        if id == 7 {
            r.fails(400, "账号不存在或者被禁用");
            continue;
        }
        if id == 8 {
            // A visitor never logs in with a password; its device does (below).
            continue;
        }
        let d = r.ok().clone();
        assert_eq!(d["id"], json!(id), "{username}: {d}");
        let again = login(app, username, password).await.ok().clone();
        assert_eq!(again["id"], json!(id), "{username} after the rehash");
        login(app, username, "wrong-password")
            .await
            .fails(400, "账户或密码错误");
        tokens.insert(id, again["token"].as_str().expect("token").to_string());
        views.insert(id, again);
    }
    let t = |id: i64| tokens[&id].clone();
    // The legacy wall-clock times, as the original's client showed them.
    let me = &views[&1];
    assert_eq!(me["create_time"], json!("2025-09-01 10:12:33"), "{me}");
    assert_eq!(me["register_time"], json!("2025-09-01T02:12:33.000Z"));
    assert_eq!(me["nickname"], json!("张三"));
    let my10 = &views[&10];
    assert_eq!(my10["mobile"], json!("13800138000"));
    assert_eq!(my10["email"], json!("my10@example.com"));
    assert_eq!(my10["is_mobile_verified"], json!(1));
    let my11 = &views[&11];
    if !early {
        assert_eq!(my11["invite_confirm"], json!(1));
        assert_eq!(
            my11["userset"],
            json!(
                r#"{"chatset":{"visitor":{"sendCount":0,"needFollow":false},"user":{"sendCount":2,"needFollow":false}}}"#
            )
        );
        assert_eq!(me["devicefingeruuid"], Value::Null, "'' became NULL");
    }

    // Friend lists (duplicates merged: user 4 once).
    let c1 = contacts(app, &t(1)).await;
    assert_eq!(c1.iter().filter(|f| **f == 4).count(), 1, "{c1:?}");
    for f in [2, 3, 4, 9] {
        assert!(c1.contains(&f), "user 1's contacts {c1:?} lack {f}");
    }
    let c2 = contacts(app, &t(2)).await;
    for f in [1, 3, 10] {
        assert!(c2.contains(&f), "user 2's contacts {c2:?} lack {f}");
    }
    assert_eq!(
        contacts(app, &t(11)).await,
        vec![1],
        "one-sided row 16 kept"
    );
    // Stars and blacklist flags.
    let star = app
        .post("/api/chat/ismygoodfriend/2", Some(&t(1)), json!({}))
        .await
        .ok()
        .clone();
    assert_eq!(
        (star["ismystarfriend"].clone(), star["nickname"].clone()),
        (json!(1), json!("小李"))
    );
    app.post("/api/chat/ismygoodfriend/1", Some(&t(3)), json!({}))
        .await
        .fails(400, "不是好友");
    let black = app
        .get("/api/chat/getgoodfriendinfo/1", Some(&t(3)))
        .await
        .ok()
        .clone();
    assert_eq!(black["nickname"], json!("张三"));
    let four = app
        .post("/api/chat/ismygoodfriend/4", Some(&t(1)), json!({}))
        .await
        .ok()
        .clone();
    assert_eq!(
        four["id"],
        json!(5),
        "the lowest id of the duplicates is kept"
    );
    assert_eq!(four["nickname"], json!("赵老师"));
    let disabled_pair = app
        .post("/api/chat/ismygoodfriend/12", Some(&t(2)), json!({}))
        .await
        .ok()
        .clone();
    assert_eq!(disabled_pair["status"], json!(0));
    let see = app
        .post("/api/chat/ismygoodfriend/10", Some(&t(2)), json!({}))
        .await
        .ok()
        .clone();
    assert_eq!(see["melookfriend"], json!(0));
    // The friend's profile keeps user_info (birthday a DATE of the local date part).
    let info = app
        .get("/api/chat/getgoodfriendinfo/2", Some(&t(1)))
        .await
        .ok()
        .clone();
    let ui = &info["friendinfo"]["userinfo"];
    assert_eq!(ui["birthday"], json!("1995-06-15"), "{info}");
    assert_eq!(ui["bio"], json!("热爱生活，喜欢爬山"));
    assert_eq!(ui["gender"], json!("female"));

    // Applications to user 1 (ids 1, 2, 3, 5, 6, 8, 10, 13; one pending) with legacy times.
    let apps = app
        .get("/api/chat/listapplyfriend/1", Some(&t(1)))
        .await
        .ok()
        .clone();
    assert_eq!(apps["pendingCount"], json!(1), "{apps}");
    let mut app_ids: Vec<i64> = apps["alldata"]
        .as_array()
        .expect("alldata")
        .iter()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    app_ids.sort();
    assert_eq!(app_ids, vec![1, 2, 3, 5, 6, 8, 10, 13], "{apps}");
    let a13 = apps["alldata"]
        .as_array()
        .expect("alldata")
        .iter()
        .find(|a| a["id"] == json!(13))
        .expect("application 13")
        .clone();
    assert_eq!(a13["create_time"], json!("2025-10-05 21:20:00"), "{a13}");
    assert_eq!(a13["status"], json!("pending"));
    assert_eq!(a13["nickname"], json!("我是钱七，想加你好友"));

    // Groups and members.
    let g1 = app
        .get("/api/chat/groupinfo/1", Some(&t(1)))
        .await
        .ok()
        .clone();
    assert_eq!(g1["name"], json!("技术交流群"), "{g1}");
    assert_eq!(g1["create_time"], json!("2025-09-15 10:00:00"), "{g1}");
    assert_eq!(g1["remark"], json!("欢迎大家，禁止发广告"));
    let members = |g: &Value| -> Vec<i64> {
        let mut m: Vec<i64> = g["group_users"]
            .as_array()
            .expect("group_users")
            .iter()
            .filter_map(|u| u["user_id"].as_i64())
            .collect();
        m.sort();
        m
    };
    assert_eq!(
        members(&g1),
        vec![1, 2, 3, 9],
        "inactive user 12 is no member"
    );
    let g2 = app
        .get("/api/chat/groupinfo/2", Some(&t(2)))
        .await
        .ok()
        .clone();
    assert_eq!(
        members(&g2),
        vec![1, 2, 4, 10],
        "the duplicate of user 4 merged: {g2}"
    );
    assert_eq!(g2["invite_confirm"], json!(1));
    assert_eq!(g2["remark"], json!(""));
    let groups = app
        .get("/api/chat/grouplist/1", Some(&t(1)))
        .await
        .ok()
        .clone();
    let gids: Vec<i64> = groups
        .as_array()
        .expect("group list")
        .iter()
        .filter_map(|g| g["id"].as_i64())
        .collect();
    assert!(gids.contains(&1) && gids.contains(&2), "{groups}");

    // The imported offline queues arrive once each, in the original order.
    let expect: [(i64, &[&str]); 3] = [
        (
            1,
            &[
                "ad3e2f6b-bd27-44f6-b947-8461c79b5bcc",
                "4d061adc-80a3-46dc-b2dc-6c5ba498c036",
                "48100f31-c589-433e-907d-beea57d5401d",
                "c8ad932b-fb67-44d0-997e-6aff011199e8",
                "568dd1b4-fd8f-49d9-be97-a68dfeb2e7cf",
                "568dd1b4-fd8f-49d9-be97-a68dfeb2e7cf",
                "8f870911-f3f8-45db-9d33-15e5864322af",
            ],
        ),
        (
            9,
            &[
                "e85c1dfc-40a2-45f2-817a-a4f1c0fa88fa",
                "4e748dae-bb20-4aea-b226-ad80dd1c10fb",
                "48100f31-c589-433e-907d-beea57d5401d",
            ],
        ),
        (
            3,
            &[
                "f820bbe5-fbe8-43c1-90fc-8ca6af96d55e",
                "c7f2e77f-80f1-4297-802c-0f607c14eb22",
            ],
        ),
    ];
    for (user, want) in expect {
        let mut ws = Ws::connect(app, &t(user)).await;
        app.offline(&t(user)).await.ok();
        let got = ws.drain_chats(QUIET).await;
        assert_eq!(ids(&got), want, "user {user}: {got:?}");
        if user == 1 {
            assert_eq!(got[0]["data"]["data"], json!("在吗？周末一起爬山"));
            assert_eq!(got[0]["from_name"], json!("小李"));
            assert_eq!(got[5]["actionType"], json!("revoke"));
            assert_eq!(got[3]["from_id"], json!("redirect-applyFriend-5"));
        }
        app.offline(&t(user)).await.ok();
        assert!(ws.drain_chats(QUIET).await.is_empty(), "user {user}: once");
    }
    let mut ws2 = Ws::connect(app, &t(2)).await;
    app.offline(&t(2)).await.ok();
    assert!(
        ws2.drain_chats(QUIET).await.is_empty(),
        "user 2 got the group message live in the original"
    );
    // Entry 4 of user 1's queue ends revoked.
    let h = app
        .get("/api/chat/history/single/4", Some(&t(1)))
        .await
        .ok()
        .clone();
    let revoked = h["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| {
            i["message"]["id"] == json!("568dd1b4-fd8f-49d9-be97-a68dfeb2e7cf")
                && i["message"]["type"] == json!("text")
        })
        .expect("the revoked message in the history")
        .clone();
    assert_eq!(revoked["message"]["isremove"], json!(1), "{h}");
    // Group history works for legacy members (their cursors exist).
    app.get("/api/chat/history/group/1", Some(&t(9))).await.ok();

    // Group messages reach legacy members; a dissolved group still refuses.
    let mut ws9 = Ws::connect(app, &t(9)).await;
    app.post(
        "/api/chat/socket/sendmessage",
        Some(&t(3)),
        json!({"sendto_id": 1, "chatType": "group", "type": "text",
               "data": {"data": "接管之后的第一条", "dataType": false, "otherData": null}}),
    )
    .await
    .ok();
    let live = ws9.next_chat(WAIT).await.expect("group message to user 9");
    assert_eq!(live["data"]["data"], json!("接管之后的第一条"));
    // 1:1 between legacy users works too.
    app.send_text(&t(1), 9, "老朋友你好").await.ok();
    assert_eq!(
        ws9.next_chat(WAIT).await.expect("1:1")["data"]["data"],
        json!("老朋友你好")
    );

    // New registrations (without a device id, twice) and new visitors work on the upgraded schema.
    let (a, _, _) = app.register("newcomer1").await;
    let (b, _, _) = app.register("newcomer2").await;
    assert!(a > 12 && b > a);
    let v = app.visitor(&device_id()).await;
    assert_eq!(v["role"], json!("visitor"));
    assert!(v["id"].as_i64().expect("id") > b);
    if !early {
        // The original's visitor logs in by its device as that same user.
        let v8 = app.visitor("5f0c2e7a-1d4b-5e8f-9a3c-7b6d5e4f3a21").await;
        assert_eq!(v8["id"], json!(8), "{v8}");
        // The upgraded visitor (user 9) logs in through the visitor login with its device.
        let (sign, body) = signed_body(
            "c0ffee00-2b7d-5c1e-8f4a-9e3d2c1b0a99",
            json!({"username": "my09", "password": "hello2025"}),
        );
        let d = app
            .post_signed("/api/visitorloginChat", Some(&sign), body)
            .await
            .ok()
            .clone();
        assert_eq!(d["id"], json!(9));
        // A visitor request from that device never reaches the registered account (AF D3): it
        // gets a visitor of its own, although the device id is on user 9's row too.
        let other = app.visitor("c0ffee00-2b7d-5c1e-8f4a-9e3d2c1b0a99").await;
        assert_eq!(other["role"], json!("visitor"));
        assert_ne!(other["id"], json!(9));
    }
}

/// Load, upgrade and import one variant; returns (db name, url, redis).
fn take_over(m: &My, early: bool) -> (String, String, Redis) {
    let (name, url) = m.load_original(early);
    let redis = Redis::start();
    redis.load_fixture();
    let out = ok(imrs(&url, &["migrate"], &[]));
    assert!(out.contains("migrations applied"), "{out}");
    let out = ok(imrs(
        &url,
        &["import-redis", "--redis-url", &redis.url()],
        &[],
    ));
    assert!(
        out.contains("imported: 11 entries (7 single, 1 group, 2 notices, 1 revokes)"),
        "{out}"
    );
    (name, url, redis)
}

#[tokio::test]
async fn the_full_original_is_taken_over_with_every_row_and_queued_message() {
    let Some(m) = my() else { return };
    let (name, url) = m.load_original(false);
    let redis = Redis::start();
    redis.load_fixture();
    let redis_before = redis.dump();
    let original_schema = m.schema(&name);
    let original_data = m.data(&name);

    // serve refuses the original's database and changes nothing.
    let out = imrs(&url, &["serve"], &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("back up") && t.contains("imrs migrate --dry-run"),
        "{t}"
    );
    // The dry run plans and merges, and changes nothing either.
    let plan = ok(imrs(&url, &["migrate", "--dry-run"], &[]));
    assert!(plan.contains("full install"), "{plan}");
    assert!(
        plan.contains(
            "duplicates merged (lowest id kept): goodfriend 1, group_user 1, user_info 0"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("RENAME TABLE `user` TO `user__old`"),
        "{plan}"
    );
    assert_eq!(m.schema(&name), original_schema);
    assert_eq!(m.data(&name), original_data);
    // import-redis refuses before the upgrade.
    let out = imrs(&url, &["import-redis", "--redis-url", &redis.url()], &[]);
    assert!(!out.status.success() && text(&out).contains("imrs migrate"));

    let out = ok(imrs(&url, &["migrate"], &[]));
    assert!(out.contains("migrations applied"), "{out}");
    assert_eq!(m.query(&name, "SELECT COUNT(*) FROM goodfriend"), "17\n");
    assert_eq!(m.query(&name, "SELECT COUNT(*) FROM group_user"), "12\n");
    assert_eq!(
        m.query(&name, "SELECT COUNT(*) FROM im_group_cursor"),
        "11\n",
        "one cursor per active membership"
    );
    let dry = ok(imrs(
        &url,
        &["import-redis", "--redis-url", &redis.url(), "--dry-run"],
        &[],
    ));
    assert!(dry.contains("would import: 11 entries"), "{dry}");
    assert_eq!(m.query(&name, "SELECT COUNT(*) FROM im_entry"), "0\n");
    let out = ok(imrs(
        &url,
        &["import-redis", "--redis-url", &redis.url()],
        &[],
    ));
    assert!(
        out.contains("imported: 11 entries (7 single, 1 group, 2 notices, 1 revokes)"),
        "{out}"
    );
    assert!(out.contains("group copies merged: 1"), "{out}");
    assert!(
        out.contains("tokens 6") && out.contains("presence 2"),
        "{out}"
    );
    assert_eq!(redis.dump(), redis_before, "Redis is never changed");

    // A second migrate and a second import change nothing.
    let schema = m.schema(&name);
    let data = m.data(&name);
    ok(imrs(&url, &["migrate"], &[]));
    let again = ok(imrs(
        &url,
        &["import-redis", "--redis-url", &redis.url()],
        &[],
    ));
    assert!(again.contains("imported: 0 entries"), "{again}");
    assert!(again.contains("already imported: 11"), "{again}");
    assert_eq!(m.schema(&name), schema);
    assert_eq!(m.data(&name), data);

    let app = serve(&url).await;
    check_takeover(&app, false).await;
    // The legacy hash was replaced on login (one-way).
    assert!(m
        .query(&name, "SELECT password FROM `user` WHERE id = 1")
        .starts_with("$argon2id$"));
}

#[tokio::test]
async fn the_early_original_is_taken_over_too() {
    let Some(m) = my() else { return };
    let (name, url) = m.load_original(true);
    let plan = ok(imrs(&url, &["migrate", "--dry-run"], &[]));
    assert!(plan.contains("early install"), "{plan}");
    assert!(plan.contains("goodfriend 1, group_user 1"), "{plan}");
    m.run(None, &[], &format!("DROP DATABASE `{name}`;"));
    let (_, url, _redis) = take_over(&m, true);
    let app = serve(&url).await;
    check_takeover(&app, true).await;
}

#[tokio::test]
async fn an_upgraded_database_has_exactly_the_schema_of_imrs_migrations() {
    let Some(m) = my() else { return };
    let (fresh, fresh_url) = m.create();
    ok(imrs(&fresh_url, &["migrate"], &[]));
    let want = m.schema(&fresh);
    for early in [false, true] {
        let (name, url) = m.load_original(early);
        ok(imrs(&url, &["migrate"], &[]));
        assert_eq!(m.schema(&name), want, "early = {early}");
        assert_eq!(m.migrations(&name), m.migrations(&fresh));
    }
    // An imrs from before the takeover support tried its migrations on the original's database
    // and left a failed (dirty) 0001 row behind: the upgrade repairs it.
    let (name, url) = m.load_original(false);
    m.run(
        Some(&name),
        &[],
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
  installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
  checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (1, 'init', FALSE, x'00', -1);",
    );
    assert!(!imrs(&url, &["serve"], &[]).status.success());
    ok(imrs(&url, &["migrate"], &[]));
    assert_eq!(m.schema(&name), want);
    assert_eq!(m.migrations(&name), m.migrations(&fresh));
}

#[tokio::test]
async fn an_upgrade_interrupted_at_any_step_resumes_to_the_same_result() {
    let Some(m) = my() else { return };
    let (reference, url) = m.load_original(false);
    ok(imrs(&url, &["migrate"], &[]));
    let want_schema = m.schema(&reference);
    let want_data = m.data(&reference);
    // Several single interruptions, then one database interrupted again and again.
    let chains: [&[usize]; 7] = [
        &[1],
        &[2],
        &[3],
        &[20],
        &[28],
        &[29],
        &[4, 6, 9, 16, 19, 22, 27, 29],
    ];
    for chain in chains {
        let (name, url) = m.load_original(false);
        for n in chain {
            let out = imrs(
                &url,
                &["migrate"],
                &[("IMRS_MIGRATE_EXIT_AFTER_STEP", &n.to_string())],
            );
            assert_eq!(out.status.code(), Some(3), "step {n}: {}", text(&out));
            assert!(text(&out).contains(&format!("stopped after step {n}")));
            // Part-way, the server still refuses to start.
            assert!(!imrs(&url, &["serve"], &[]).status.success());
        }
        ok(imrs(&url, &["migrate"], &[]));
        assert_eq!(m.schema(&name), want_schema, "interrupted at {chain:?}");
        assert_eq!(m.data(&name), want_data, "interrupted at {chain:?}");
    }
}

#[tokio::test]
async fn legacy_times_are_converted_from_the_configured_zone() {
    let Some(m) = my() else { return };
    let (name, url) = m.load_original(false);
    ok(imrs(
        &url,
        &["migrate"],
        &[("IMRS_LEGACY_TIMEZONE", "-05:00")],
    ));
    assert_eq!(
        m.query(
            &name,
            "SELECT create_time, last_login FROM `user` WHERE id = 1"
        ),
        "2025-09-01 15:12:33\t2025-10-06 01:30:00\n"
    );
    assert_eq!(
        m.query(&name, "SELECT birthday FROM user_info WHERE user_id = 2"),
        "1995-06-15\n",
        "a birthday is a date, never shifted"
    );
}

#[tokio::test]
async fn an_upgrade_killed_at_random_moments_resumes_to_the_same_result() {
    let Some(m) = my() else { return };
    let (reference, url) = m.load_original(true);
    ok(imrs(&url, &["migrate"], &[]));
    let want = (m.schema(&reference), m.data(&reference));
    for delay_ms in [5, 40, 80, 120, 160, 200, 260] {
        let (name, url) = m.load_original(true);
        let dir = temp_dir();
        let mut child = Command::new(env!("CARGO_BIN_EXE_imrs"))
            .arg("migrate")
            .env("IMRS_DATABASE_URL", &url)
            .env("IMRS_DATA_DIR", &dir)
            .env("IMRS_JWT_SECRET", "test-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("imrs runs");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SIGKILL: no cleanup of any kind.
        let _ = child.kill();
        let _ = child.wait();
        ok(imrs(&url, &["migrate"], &[]));
        assert_eq!(
            (m.schema(&name), m.data(&name)),
            want,
            "killed after {delay_ms} ms"
        );
    }
}

#[tokio::test]
async fn unknown_schemas_are_refused_and_left_alone() {
    let Some(m) = my() else { return };
    // SequelizeMeta with tables imrs does not know.
    let (name, url) = m.create();
    m.run(
        Some(&name),
        &[],
        "CREATE TABLE `SequelizeMeta` (`name` varchar(255) NOT NULL PRIMARY KEY);
CREATE TABLE `user` (`id` int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, `login` varchar(20));",
    );
    let before = (m.schema(&name), m.data(&name));
    let out = imrs(&url, &["migrate"], &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("refusing to touch it") && t.contains("`user` lacks column(s) uuid"),
        "{t}"
    );
    assert!(!imrs(&url, &["serve"], &[]).status.success());
    assert_eq!((m.schema(&name), m.data(&name)), before);
    // imrs's table names without either migration table.
    let (name, url) = m.create();
    m.run(
        Some(&name),
        &[],
        "CREATE TABLE `goodfriend` (`id` int PRIMARY KEY);",
    );
    let before = m.schema(&name);
    let out = imrs(&url, &["migrate"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("neither imrs's _sqlx_migrations nor the original's SequelizeMeta"));
    assert_eq!(m.schema(&name), before);
}

#[tokio::test]
async fn malformed_queue_entries_are_reported_and_skipped() {
    let Some(m) = my() else { return };
    let (_, url, redis) = take_over(&m, false);
    redis.cli(&["RPUSH", "chat_getmessage_2", "not json", "{\"id\":\"x\"}"]);
    redis.cli(&[
        "RPUSH",
        "chat_getmessage_2",
        r#"{"id":"0d0e0f10-0000-4000-8000-000000000001","from_avatar":"","from_name":"张三","from_id":1,"to_id":2,"to_name":"李四","to_avatar":"","chatType":"single","type":"text","data":{"data":"迟到的一条","dataType":false,"otherData":null},"options":{},"create_time":1759680000000,"isremove":0}"#,
    ]);
    redis.cli(&["SET", "chat_getmessage_abc", "x"]);
    let out = ok(imrs(
        &url,
        &["import-redis", "--redis-url", &redis.url()],
        &[],
    ));
    assert!(out.contains("imported: 1 entries (1 single"), "{out}");
    assert!(out.contains("3 malformed"), "{out}");
    assert!(out.contains("chat_getmessage_2[0]: not JSON"), "{out}");
    let app = serve(&url).await;
    let tk = login(&app, "my02", "654321").await.ok()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let mut ws = Ws::connect(&app, &tk).await;
    app.offline(&tk).await.ok();
    let got = ws.drain_chats(QUIET).await;
    assert_eq!(ids(&got), ["0d0e0f10-0000-4000-8000-000000000001"]);
}

/// `cargo test --test api legacy_upgrade_of_100k_users -- --ignored --nocapture` with
/// `IMRS_TEST_DATABASE_URL`: the upgrade's duration on 100,000 users (plus one user_info row
/// each, two friendship rows each, 1,000 groups of 100 members).
#[tokio::test]
#[ignore]
async fn legacy_upgrade_of_100k_users_timing() {
    let Some(m) = my() else { return };
    let (name, url) = m.create();
    let schema =
        std::fs::read_to_string(Path::new(FIXTURES).join("original-schema.sql")).expect("fixture");
    let schema = schema
        .strip_prefix("/*M!999999\\- enable the sandbox mode */ \n")
        .unwrap_or(&schema);
    m.run(Some(&name), &[], schema);
    let started = std::time::Instant::now();
    m.run(
        Some(&name),
        &[],
        "SET FOREIGN_KEY_CHECKS=0;
INSERT INTO `user` (`id`,`uuid`,`username`,`password`,`nickname`,`devicefingeruuid`,`userset`,`create_time`,`update_time`,`register_time`)
  SELECT seq, CAST(UUID() AS CHAR), CONCAT('u', seq), SHA2('123456', 256), CONCAT('用户', seq), IF(seq = 1, '', CAST(UUID() AS CHAR)), '', NOW(), NOW(), NOW() FROM seq_1_to_100000;
INSERT INTO `user_info` (`id`,`user_id`) SELECT seq, seq FROM seq_1_to_100000;
INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`) SELECT seq, seq % 100000 + 1, '' FROM seq_1_to_100000;
INSERT INTO `goodfriend` (`user_id`,`friend_id`,`nickname`) SELECT seq % 100000 + 1, seq, '' FROM seq_1_to_100000;
INSERT INTO `goodfriendapply` (`user_id`,`friend_id`,`status`) SELECT seq, seq % 100000 + 1, 'agree' FROM seq_1_to_100000;
INSERT INTO `group` (`id`,`uuid`,`user_id`,`name`) SELECT seq, CAST(UUID() AS CHAR), seq, CONCAT('群', seq) FROM seq_1_to_1000;
INSERT INTO `group_user` (`group_id`,`user_id`) SELECT (seq - 1) % 1000 + 1, seq FROM seq_1_to_100000;
SET FOREIGN_KEY_CHECKS=1;",
    );
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    let started = std::time::Instant::now();
    let out = ok(imrs(&url, &["migrate"], &[]));
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{out}");
    eprintln!("UPGRADE OF 100,000 USERS: {secs:.1} s");
    assert_eq!(m.query(&name, "SELECT COUNT(*) FROM `user`"), "100000\n");
    assert_eq!(
        m.query(&name, "SELECT COUNT(*) FROM im_group_cursor"),
        "100000\n"
    );
}
