//! The console in a real browser: Debian's Chromium driven over WebDriver (chromedriver started
//! here on a free port). Log in with the keyboard, find a user, disable them while their websocket
//! is open (4003), enable, reset a password and log in with it over the API, create and delete a
//! user, dissolve a group, revoke a message (the receiver's socket gets the revoke frame), see a
//! `<script>` nickname as text. Every page is photographed into `target/admin-screenshots/`.
//! Without chromedriver the test says so and passes, except in CI (`CI=true`), where it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::admin::{add_manager, group_of_two, unlimited, MANAGER, MANAGER_PW};
use crate::common::*;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    let candidates = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("admin-screenshots")
}

async fn start_browser() -> Option<(Driver, Client, tempfile::TempDir)> {
    let Some(path) = chromedriver() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromedriver is missing in CI: install chromium and chromium-driver"
        );
        eprintln!("!!! chromedriver not found: the browser test of the console was SKIPPED !!!");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut opts = json!({ "args": args });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        opts["binary"] = json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".into(), opts);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(c) = ClientBuilder::new(http)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            return Some((driver, c, profile));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a browser");
}

async fn shot(c: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn css(c: &Client, sel: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(sel))
        .await
        .unwrap_or_else(|e| panic!("{sel}: {e}"))
}

/// Click `sel` and wait until the next document has loaded (every console action navigates).
async fn click_and_wait(c: &Client, sel: &str) {
    c.execute("window.__before_click = true;", vec![])
        .await
        .expect("mark page");
    css(c, sel).await.click().await.expect("click");
    wait_new_page(c).await;
}

async fn wait_new_page(c: &Client) {
    for _ in 0..200 {
        let v = c
            .execute(
                "return window.__before_click === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await;
        if matches!(v, Ok(Value::Bool(true))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page did not change");
}

async fn text_of(c: &Client, sel: &str) -> String {
    css(c, sel).await.text().await.expect("text")
}

async fn flash(c: &Client) -> String {
    text_of(c, ".flash").await
}

async fn api_login(app: &TestApp, username: &str, password: &str) -> Resp {
    app.post(
        "/api/loginChat",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

#[tokio::test]
async fn the_console_runs_the_service_from_a_real_browser() {
    let Some((_driver, c, _profile)) = start_browser().await else {
        return;
    };
    let app = spawn_app().await;
    add_manager(&app).await;
    let (alice, alice_token, _) = app.register("alice01").await;
    let (bob, bob_token, _) = app.register("bob01").await;
    app.befriend((alice, "alice01"), (bob, "bob01")).await;
    unlimited(&app, &bob_token).await;
    let evil = "<script>window.__x=1</script>";
    app.post(
        "/api/chat/updateUserinfo",
        Some(&bob_token),
        json!({"fieldname": "nickname", "fieldValue": evil}),
    )
    .await
    .ok();
    let gid = group_of_two(&app, (alice, "alice01", &alice_token), (bob, "bob01")).await;
    let base = app.url("/admin");

    // Login with the keyboard only.
    c.goto(&format!("{base}/")).await.expect("goto");
    css(&c, "#name")
        .await
        .send_keys(MANAGER)
        .await
        .expect("type");
    shot(&c, "01-login").await;
    let keys = format!(
        "{}{MANAGER_PW}{}",
        char::from(Key::Tab),
        char::from(Key::Enter)
    );
    css(&c, "#name").await.send_keys(&keys).await.expect("type");
    css(&c, "#c-users").await;
    assert_eq!(text_of(&c, "#c-users").await, "2");
    shot(&c, "02-dashboard").await;

    // Find a user.
    c.goto(&format!("{base}/users")).await.expect("users");
    css(&c, "#q").await.send_keys("alice").await.expect("type");
    click_and_wait(&c, "#search").await;
    shot(&c, "03-users-search").await;
    c.find(Locator::LinkText("alice01"))
        .await
        .expect("alice in the results")
        .click()
        .await
        .expect("open");
    assert_eq!(text_of(&c, "#username").await, "alice01");
    shot(&c, "04-user").await;

    // Disable while her socket is open: 4003 at once; enable again.
    let mut ws = Ws::connect(&app, &alice_token).await;
    click_and_wait(&c, "#disable").await;
    assert_eq!(flash(&c).await, "已禁用");
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    api_login(&app, "alice01", "123456")
        .await
        .fails(400, "账号不存在或者被禁用");
    click_and_wait(&c, "#enable").await;
    assert_eq!(flash(&c).await, "已启用");
    assert_eq!(text_of(&c, "#status").await, "启用");

    // Reset her password and log in with it over the API.
    css(&c, "#reset-password")
        .await
        .send_keys("browser-pw-1")
        .await
        .expect("type");
    click_and_wait(&c, "#reset").await;
    assert_eq!(flash(&c).await, "修改成功");
    api_login(&app, "alice01", "browser-pw-1").await.ok();
    let alice_token = api_login(&app, "alice01", "browser-pw-1").await.ok()["token"]
        .as_str()
        .expect("token")
        .to_string();

    // The stored <script> nickname is shown as text and never runs.
    c.goto(&format!("{base}/users/{bob}")).await.expect("bob");
    assert_eq!(text_of(&c, "#nickname").await, evil);
    let ran = c
        .execute("return window.__x === undefined;", vec![])
        .await
        .expect("script");
    assert_eq!(ran, Value::Bool(true), "the nickname's script ran");
    shot(&c, "05-user-script-nickname").await;

    // Create a user, log in as them, delete them.
    c.goto(&format!("{base}/users")).await.expect("users");
    css(&c, "#new-username")
        .await
        .send_keys("created01")
        .await
        .expect("type");
    css(&c, "#new-password")
        .await
        .send_keys("created-pw")
        .await
        .expect("type");
    click_and_wait(&c, "#create").await;
    assert_eq!(flash(&c).await, "创建成功");
    assert_eq!(text_of(&c, "#username").await, "created01");
    api_login(&app, "created01", "created-pw").await.ok();
    css(&c, "#confirm-delete")
        .await
        .click()
        .await
        .expect("confirm");
    click_and_wait(&c, "#delete").await;
    assert_eq!(flash(&c).await, "删除成功");
    api_login(&app, "created01", "created-pw")
        .await
        .fails(400, "账号不存在或者被禁用");

    // Revoke a message: the receiver's socket gets the revoke frame.
    let mut bob_ws = Ws::connect(&app, &bob_token).await;
    let sent = app.send_text(&alice_token, bob, "moderate me").await;
    let msg_id = sent.ok()["id"].as_str().expect("id").to_string();
    bob_ws.next_chat(WAIT).await.expect("the message");
    c.goto(&format!("{base}/messages?user={alice}"))
        .await
        .expect("messages");
    shot(&c, "06-messages").await;
    click_and_wait(&c, &format!("button.revoke[data-id='{msg_id}']")).await;
    assert_eq!(flash(&c).await, "已撤回");
    let f = loop {
        let f = bob_ws.next_chat(WAIT).await.expect("revoke frame");
        if f["actionType"] == "revoke" {
            break f;
        }
    };
    assert_eq!(f["id"], json!(msg_id));

    // Groups: list, open, dissolve.
    c.goto(&format!("{base}/groups")).await.expect("groups");
    shot(&c, "07-groups").await;
    c.goto(&format!("{base}/groups/{gid}"))
        .await
        .expect("group");
    shot(&c, "08-group").await;
    css(&c, "#confirm-dissolve")
        .await
        .click()
        .await
        .expect("confirm");
    click_and_wait(&c, "#dissolve").await;
    assert_eq!(flash(&c).await, "已解散");
    let g = imrs::store::groups::by_id(&app.state.db, gid)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(g.status, 0);
    crate::admin::chat_containing(&mut bob_ws, "解散").await;

    // Readable on a phone.
    c.set_window_size(390, 844).await.expect("resize");
    c.goto(&format!("{base}/users")).await.expect("users");
    shot(&c, "09-users-phone").await;
    c.goto(&format!("{base}/")).await.expect("dashboard");
    shot(&c, "10-dashboard-phone").await;
    let width: Value = c
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .expect("width");
    assert!(
        width.as_i64().unwrap_or(9999) <= 400,
        "no sideways scrolling: {width}"
    );

    // Log out: the console asks for a login again.
    click_and_wait(&c, "#logout").await;
    css(&c, "#name").await;
    c.close().await.expect("close");
}
