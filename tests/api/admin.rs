//! The back office and operations surface (issue 13): health, metrics, manager sessions, the admin
//! API's actions (AF §8 texts, disable/delete reaching live sockets, GR GD7, operator revoke), the
//! console's escaping, and every way in without a valid manager session being refused.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

pub const MANAGER: &str = "boss";
pub const MANAGER_PW: &str = "correct-horse-battery";

/// Add the test manager to the app's store.
pub async fn add_manager(app: &TestApp) {
    imrs::services::managers::add(&app.state.db, 64, MANAGER, MANAGER_PW)
        .await
        .expect("add manager");
}

/// A manager API session: the bearer token.
pub async fn manager_token(app: &TestApp) -> String {
    add_manager(app).await;
    let r = app
        .post(
            "/admin/api/login",
            None,
            json!({"name": MANAGER, "password": MANAGER_PW}),
        )
        .await;
    r.ok()["token"].as_str().expect("token").to_string()
}

async fn call(app: &TestApp, method: &str, path: &str, bearer: &str, body: Value) -> Resp {
    let url = app.url(path);
    let req = if method == "GET" {
        app.http.get(url)
    } else {
        app.http.post(url).json(&body)
    };
    let r = req.bearer_auth(bearer).send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn aget(app: &TestApp, path: &str, bearer: &str) -> Resp {
    call(app, "GET", path, bearer, json!({})).await
}

async fn apost(app: &TestApp, path: &str, bearer: &str, body: Value) -> Resp {
    call(app, "POST", path, bearer, body).await
}

async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    app.post(
        "/api/loginChat",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

/// `owner` and `member` become friends and `owner` creates a group with `member`.
pub async fn group_of_two(app: &TestApp, owner: (i64, &str, &str), member: (i64, &str)) -> i64 {
    let known = imrs::store::friends::row(&app.state.db, owner.0, member.0)
        .await
        .expect("q");
    if known.is_none() {
        app.befriend((owner.0, owner.1), (member.0, member.1)).await;
    }
    let rows = app
        .state
        .db
        .all::<(i64,)>(
            "SELECT `id` FROM `goodfriend` WHERE `user_id` = ? AND `friend_id` = ?",
            imrs::args![owner.0, member.0],
        )
        .await
        .expect("rows");
    let ids: Vec<i64> = rows.into_iter().map(|r| r.0).collect();
    let r = app
        .post(
            "/api/chat/group/create",
            Some(owner.2),
            json!({ "userIds": ids }),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    app.state
        .db
        .opt::<(i64,)>(
            "SELECT `id` FROM `group` WHERE `user_id` = ? ORDER BY `id` DESC LIMIT 1",
            imrs::args![owner.0],
        )
        .await
        .expect("query")
        .expect("a group")
        .0
}

/// The next chat frame whose text contains `text` (earlier backlog frames are skipped).
pub async fn chat_containing(ws: &mut Ws, text: &str) -> Value {
    loop {
        let n = ws
            .next_chat(WAIT)
            .await
            .unwrap_or_else(|| panic!("no frame with {text}"));
        if n["data"]["data"].as_str().unwrap_or("").contains(text) {
            return n;
        }
    }
}

/// Make `who` accept any number of messages from anyone.
pub async fn unlimited(app: &TestApp, token: &str) {
    app.post(
        "/api/chat/userset",
        Some(token),
        json!({ "userset": UNLIMITED_USERSET }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})));
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["database"], true);
    assert_eq!(r.body["draining"], false);
}

#[tokio::test]
async fn requests_carry_a_request_id() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.expect("req");
    let id = r.headers().get("x-request-id").expect("x-request-id");
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn metrics_need_the_metrics_token_or_a_manager_token() {
    let app = spawn_with(|s| s.metrics_token = Some("scrape-me".into())).await;
    let (_, chat_token, _) = app.register("metricsuser").await;
    let status = |t: Option<String>| {
        let app = &app;
        async move {
            let mut req = app.http.get(app.url("/metrics"));
            if let Some(t) = t {
                req = req.bearer_auth(t);
            }
            req.send().await.expect("req").status().as_u16()
        }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some("wrong".into())).await, 401);
    assert_eq!(status(Some(chat_token.clone())).await, 401);
    let r = app
        .http
        .get(app.url("/metrics"))
        .header("token", &chat_token)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(status(Some("scrape-me".into())).await, 200);
    let m = manager_token(&app).await;
    let r = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&m)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.expect("text");
    assert!(text.contains("imrs_http_requests_total"), "{text}");
    assert!(
        text.contains(r#"route="/api/regChat""#),
        "routes are labelled by pattern: {text}"
    );
}

#[tokio::test]
async fn manager_login_refuses_bad_passwords_and_is_rate_limited() {
    let app = spawn_app().await;
    add_manager(&app).await;
    let bad = |pw: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/admin/api/login",
                None,
                json!({"name": MANAGER, "password": pw}),
            )
            .await
        }
    };
    bad("nope").await.fails(400, "管理员名称或密码错误");
    let r = app
        .post(
            "/admin/api/login",
            None,
            json!({"name": "nobody", "password": "x"}),
        )
        .await;
    r.fails(400, "管理员名称或密码错误");
    for _ in 0..9 {
        bad("nope").await;
    }
    // After ten failures even the right password waits.
    let r = app
        .post(
            "/admin/api/login",
            None,
            json!({"name": MANAGER, "password": MANAGER_PW}),
        )
        .await;
    r.fails(400, "登录尝试过多，请稍后再试");
}

/// Every console page and API call of the back office.
fn admin_routes(uid: i64, gid: i64) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = [
        "/admin/",
        "/admin/users",
        "/admin/groups",
        "/admin/messages",
        "/admin/api/stats",
        "/admin/api/users",
        "/admin/api/groups",
        "/admin/api/messages",
    ]
    .iter()
    .map(|p| ("GET", p.to_string()))
    .collect();
    v.push(("GET", format!("/admin/users/{uid}")));
    v.push(("GET", format!("/admin/groups/{gid}")));
    v.push(("GET", format!("/admin/api/users/{uid}")));
    v.push(("GET", format!("/admin/api/users/{uid}/backlog")));
    v.push(("GET", format!("/admin/api/groups/{gid}")));
    for a in ["edit", "password", "enable", "disable", "delete"] {
        v.push(("POST", format!("/admin/api/users/{uid}/{a}")));
        v.push(("POST", format!("/admin/users/{uid}/{a}")));
    }
    for a in ["dissolve", "rename"] {
        v.push(("POST", format!("/admin/api/groups/{gid}/{a}")));
        v.push(("POST", format!("/admin/groups/{gid}/{a}")));
    }
    v.push(("POST", "/admin/api/users".into()));
    v.push(("POST", "/admin/users/create".into()));
    v.push(("POST", "/admin/api/messages/x/revoke".into()));
    v.push(("POST", "/admin/messages/x/revoke".into()));
    v.push(("POST", "/admin/api/logout".into()));
    v.push(("POST", "/admin/logout".into()));
    v
}

async fn refused(
    app: &TestApp,
    method: &str,
    path: &str,
    set: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = app.url(path);
    let req = if method == "GET" {
        client.get(url)
    } else {
        client.post(url).form(&[
            ("password", "hacked123"),
            ("name", "x"),
            ("username", "x"),
            ("confirm", "yes"),
        ])
    };
    let r = set(req).send().await.expect("request");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.text().await.unwrap_or_default();
    if path.starts_with("/admin/api/") {
        assert_eq!(status, 401, "{method} {path}: {body}");
    } else {
        assert!(
            (status == 303 && location == "/admin/login") || status == 403,
            "{method} {path} must be refused, got {status} {location} {body}"
        );
    }
}

#[tokio::test]
async fn every_admin_page_and_call_refuses_missing_chat_forged_and_expired_sessions() {
    let app = spawn_app().await;
    let (uid, chat_token, _) = app.register("victim01").await;
    let (mid, _, _) = app.register("victim02").await;
    let owner_token = login(&app, "victim01", "123456").await.ok()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let gid = group_of_two(&app, (uid, "victim01", &owner_token), (mid, "victim02")).await;
    add_manager(&app).await;
    let m = imrs::store::managers::by_name(&app.state.db, MANAGER)
        .await
        .expect("q")
        .expect("manager");
    let (expired, _) = imrs::services::managers::open_session(&app.state.db, m.id, 0)
        .await
        .expect("session");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let chat = chat_token.clone();
    for (method, path) in admin_routes(uid, gid) {
        refused(&app, method, &path, |r| r).await;
        refused(&app, method, &path, |r| r.header("token", &chat)).await;
        refused(&app, method, &path, |r| r.bearer_auth(&chat)).await;
        refused(&app, method, &path, |r| {
            r.header("cookie", format!("imrs_admin={chat}"))
        })
        .await;
        refused(&app, method, &path, |r| {
            r.header(
                "cookie",
                "imrs_admin=0000000000000000000000000000000000000000000000000000000000000000",
            )
        })
        .await;
        refused(&app, method, &path, |r| r.bearer_auth(&expired)).await;
        refused(&app, method, &path, |r| {
            r.header("cookie", format!("imrs_admin={expired}"))
        })
        .await;
    }
    // Nothing changed.
    let u = imrs::store::users::by_id(&app.state.db, uid)
        .await
        .expect("q")
        .expect("user");
    assert_eq!(
        (u.status, u.is_deleted, u.username.as_str()),
        (1, 0, "victim01")
    );
    login(&app, "victim01", "123456").await.ok();
    let g = imrs::store::groups::by_id(&app.state.db, gid)
        .await
        .expect("q")
        .expect("group");
    assert_eq!(g.status, 1);
}

/// Log in through the console's form like a browser: (session cookie, CSRF token of the pages).
async fn console_login(app: &TestApp, client: &reqwest::Client) -> (String, String) {
    let r = client
        .get(app.url("/admin/login"))
        .send()
        .await
        .expect("form");
    let login_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("imrs_admin_login="))
        .expect("login cookie")
        .to_string();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let lc = login_cookie.split(';').next().expect("pair").to_string();
    let html = r.text().await.expect("html");
    let csrf = hidden_csrf(&html);
    // Without the login cookie the form is refused (login CSRF).
    let r = client
        .post(app.url("/admin/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", MANAGER),
            ("password", MANAGER_PW),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
    let r = client
        .post(app.url("/admin/login"))
        .header("cookie", &lc)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", MANAGER),
            ("password", MANAGER_PW),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("imrs_admin="))
        .expect("session cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: no Secure flag");
    let cookie = session.split(';').next().expect("pair").to_string();
    let html = client
        .get(app.url("/admin/users"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    (cookie, hidden_csrf(&html))
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    let len = html[at..].find('"').expect("end of value");
    html[at..at + len].to_string()
}

#[tokio::test]
async fn a_cookie_post_without_the_csrf_token_is_refused_and_with_it_works() {
    let app = spawn_app().await;
    let (uid, _, _) = app.register("csrfuser").await;
    add_manager(&app).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, csrf) = console_login(&app, &client).await;
    let path = app.url(&format!("/admin/users/{uid}/disable"));
    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let r = client
            .post(&path)
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 403);
    }
    // The JSON API refuses a cookie-borne POST without the header as well.
    let r = client
        .post(app.url(&format!("/admin/api/users/{uid}/disable")))
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
    login(&app, "csrfuser", "123456").await.ok();
    let r = client
        .post(&path)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 303);
    login(&app, "csrfuser", "123456")
        .await
        .fails(400, "账号不存在或者被禁用");
    // Logging out ends the session.
    let r = client
        .post(app.url("/admin/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status().as_u16(), 303);
    let r = client
        .get(app.url("/admin/users"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status().as_u16(), 303);
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_a_trusted_tls_proxy() {
    let app = spawn_with(|s| s.trusted_proxies = Some("127.0.0.1".into())).await;
    add_manager(&app).await;
    let r = app
        .http
        .get(app.url("/admin/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("form");
    let c = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(c.contains("; Secure"), "{c}");
}

#[tokio::test]
async fn create_edit_reset_and_delete_users_with_the_original_texts() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let r = apost(
        &app,
        "/admin/api/users",
        &t,
        json!({"username": "made01", "password": "pw-made01"}),
    )
    .await;
    let id = r.ok()["id"].as_i64().expect("id");
    assert_eq!(r.ok()["text"], "创建成功");
    apost(
        &app,
        "/admin/api/users",
        &t,
        json!({"username": "made01", "password": "x"}),
    )
    .await
    .fails(400, "即时通讯用户账号已存在");
    let info = imrs::store::users::info(&app.state.db, id)
        .await
        .expect("q");
    assert!(info.is_some(), "the user_info row is created too");
    login(&app, "made01", "pw-made01").await.ok();
    app.register("taken01").await;
    apost(
        &app,
        &format!("/admin/api/users/{id}/edit"),
        &t,
        json!({"username": "taken01"}),
    )
    .await
    .fails(
        400,
        "该即时通讯用户账号已经存在，不能修改成该即时通讯用户账号",
    );
    let r = apost(
        &app,
        &format!("/admin/api/users/{id}/edit"),
        &t,
        json!({"username": "renamed01", "nickname": "新名字"}),
    )
    .await;
    assert_eq!(r.ok(), "修改成功");
    apost(
        &app,
        "/admin/api/users/999999/edit",
        &t,
        json!({"nickname": "x"}),
    )
    .await
    .fails(400, "该即时通讯用户不存在");
    apost(
        &app,
        &format!("/admin/api/users/{id}/password"),
        &t,
        json!({"password": "brand-new-pw"}),
    )
    .await
    .ok();
    login(&app, "renamed01", "pw-made01")
        .await
        .fails(400, "账户或密码错误");
    login(&app, "renamed01", "brand-new-pw").await.ok();
    let r = aget(&app, "/admin/api/users?q=renamed", &t).await;
    assert_eq!(r.ok()["total"], 1, "{}", r.body);
    assert_eq!(r.ok()["list"][0]["nickname"], "新名字");
    let r = aget(&app, &format!("/admin/api/users?q={id}"), &t).await;
    let ids: Vec<i64> = r.ok()["list"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["id"].as_i64())
        .collect();
    assert!(ids.contains(&id), "search by id: {ids:?}");
    let r = apost(
        &app,
        &format!("/admin/api/users/{id}/delete"),
        &t,
        json!({}),
    )
    .await;
    assert_eq!(r.ok(), "删除成功");
    login(&app, "renamed01", "brand-new-pw")
        .await
        .fails(400, "账号不存在或者被禁用");
    let r = aget(&app, "/admin/api/users?q=renamed", &t).await;
    assert_eq!(r.ok()["total"], 0);
    apost(&app, "/admin/api/users/abc/delete", &t, json!({}))
        .await
        .fails(400, "id 不合法");
}

#[tokio::test]
async fn disabling_closes_the_open_socket_with_4003_at_once_and_enabling_lets_them_back() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (id, token, _) = app.register("live01").await;
    let mut ws = Ws::connect(&app, &token).await;
    apost(
        &app,
        &format!("/admin/api/users/{id}/disable"),
        &t,
        json!({}),
    )
    .await
    .ok();
    assert_eq!(
        ws.next_json(WAIT).await,
        Some(json!({"msg": "fail", "data": "你已被管理员禁用"}))
    );
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    app.post("/api/chat/userset", Some(&token), json!({"userset": "{}"}))
        .await
        .fails(400, "当前用户不存在或者已被禁用");
    apost(
        &app,
        &format!("/admin/api/users/{id}/enable"),
        &t,
        json!({}),
    )
    .await
    .ok();
    app.post("/api/chat/userset", Some(&token), json!({"userset": "{}"}))
        .await;
    login(&app, "live01", "123456").await.ok();
}

#[tokio::test]
async fn deleting_a_user_dissolves_their_groups_and_removes_their_memberships() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (a, at, _) = app.register("owner01").await;
    let (b, bt, _) = app.register("member01").await;
    let (c, _, _) = app.register("member02").await;
    let owned = group_of_two(&app, (a, "owner01", &at), (b, "member01")).await;
    let joined = group_of_two(&app, (b, "member01", &bt), (a, "owner01")).await;
    app.befriend((b, "member01"), (c, "member02")).await;
    let mut ws = Ws::connect(&app, &at).await;
    apost(&app, &format!("/admin/api/users/{a}/delete"), &t, json!({}))
        .await
        .ok();
    assert_eq!(ws.ended(WAIT).await, Ended::Close(4003));
    let g = imrs::store::groups::by_id(&app.state.db, owned)
        .await
        .expect("q")
        .expect("row");
    assert_eq!(g.status, 0, "the owned group is dissolved");
    assert!(imrs::store::groups::members(&app.state.db, owned, false)
        .await
        .expect("q")
        .is_empty());
    let left: Vec<i64> = imrs::store::groups::members(&app.state.db, joined, false)
        .await
        .expect("q")
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(left, vec![b], "the deleted user's membership is gone");
    // The other members' lists still work.
    app.get("/api/chat/grouplist/1", Some(&bt)).await.ok();
    app.get("/api/chat/goodfriendlist/1", Some(&bt)).await.ok();
}

#[tokio::test]
async fn groups_are_listed_renamed_and_dissolved_through_the_owners_rules() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (a, at, _) = app.register("gowner01").await;
    let (b, bt, _) = app.register("gmember01").await;
    let gid = group_of_two(&app, (a, "gowner01", &at), (b, "gmember01")).await;
    let r = aget(&app, "/admin/api/groups", &t).await;
    assert_eq!(r.ok()["total"], 1);
    assert_eq!(r.ok()["list"][0]["members"], 2);
    let r = aget(&app, &format!("/admin/api/groups/{gid}"), &t).await;
    assert_eq!(r.ok()["members"].as_array().map(Vec::len), Some(2));
    let mut ws = Ws::connect(&app, &bt).await;
    apost(
        &app,
        &format!("/admin/api/groups/{gid}/rename"),
        &t,
        json!({"name": "运营改名"}),
    )
    .await
    .ok();
    chat_containing(&mut ws, "运营改名").await;
    apost(
        &app,
        &format!("/admin/api/groups/{gid}/dissolve"),
        &t,
        json!({}),
    )
    .await
    .ok();
    chat_containing(&mut ws, "解散了该群").await;
    apost(
        &app,
        &format!("/admin/api/groups/{gid}/dissolve"),
        &t,
        json!({}),
    )
    .await
    .fails(400, "群不存在");
    let r = aget(&app, "/admin/api/groups", &t).await;
    assert_eq!(r.ok()["total"], 0);
}

#[tokio::test]
async fn an_operator_revoke_sends_the_revoke_frame_to_the_receiver() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (a, at, _) = app.register("sender01").await;
    let (b, bt, _) = app.register("receiver01").await;
    app.befriend((a, "sender01"), (b, "receiver01")).await;
    unlimited(&app, &bt).await;
    let mut ws = Ws::connect(&app, &bt).await;
    let sent = app.send_text(&at, b, "要撤回的话").await;
    let msg_id = sent.ok()["id"].as_str().expect("id").to_string();
    ws.next_chat(WAIT).await.expect("the message");
    let r = aget(&app, &format!("/admin/api/messages?user={a}"), &t).await;
    assert_eq!(r.ok()[0]["id"], msg_id.as_str());
    let r = apost(
        &app,
        &format!("/admin/api/messages/{msg_id}/revoke"),
        &t,
        json!({}),
    )
    .await;
    assert_eq!(r.ok()["actionType"], "revoke");
    let f = ws.next_chat(WAIT).await.expect("revoke frame");
    assert_eq!(
        (
            &f["id"],
            &f["actionType"],
            &f["type"],
            &f["from_id"],
            &f["to_id"],
            &f["chatType"]
        ),
        (
            &json!(msg_id),
            &json!("revoke"),
            &json!("systemNotice"),
            &json!(a),
            &json!(b),
            &json!("single")
        )
    );
    assert_eq!(f["from_name"], "管理员");
    assert_eq!(f["operator"], MANAGER);
    let r = aget(&app, &format!("/admin/api/messages?a={a}&b={b}"), &t).await;
    assert_eq!(r.ok()[0]["revoked"], true);
    apost(&app, "/admin/api/messages/no-such-id/revoke", &t, json!({}))
        .await
        .fails(400, "消息不存在，无法撤回");
}

#[tokio::test]
async fn the_offline_backlog_of_a_user_is_listed() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (a, at, _) = app.register("bsender01").await;
    let (b, bt, _) = app.register("boffline01").await;
    app.befriend((a, "bsender01"), (b, "boffline01")).await;
    unlimited(&app, &bt).await;
    for i in 0..3 {
        app.send_text(&at, b, &format!("offline {i}")).await.ok();
    }
    let r = aget(&app, &format!("/admin/api/users/{b}/backlog"), &t).await;
    let texts: Vec<&str> = r
        .ok()
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["body"]["data"]["data"].as_str())
        .collect();
    assert_eq!(texts, vec!["offline 0", "offline 1", "offline 2"]);
}

#[tokio::test]
async fn user_controlled_values_are_escaped_in_the_console() {
    let app = spawn_app().await;
    add_manager(&app).await;
    let (a, at, _) = app.register("xss01").await;
    app.post(
        "/api/chat/updateUserinfo",
        Some(&at),
        json!({"fieldname": "nickname", "fieldValue": "<script>alert(1)</script>"}),
    )
    .await
    .ok();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, _) = console_login(&app, &client).await;
    for path in ["/admin/users".to_string(), format!("/admin/users/{a}")] {
        let r = client
            .get(app.url(&path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
        let html = r.text().await.expect("html");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert(1)"), "{html}");
    }
}

#[tokio::test]
async fn the_console_can_be_moved_or_turned_off() {
    let app = spawn_with(|s| s.admin_prefix = Some("/ops-console".into())).await;
    let t = manager_token_at(&app, "/ops-console").await;
    let r = aget(&app, "/ops-console/api/stats", &t).await;
    assert!(r.ok()["counts"]["users"].is_number());
    assert_eq!(app.get("/admin/api/stats", None).await.status, 404);
    let off = spawn_with(|s| s.admin = Some("off".into())).await;
    assert_eq!(off.get("/admin/login", None).await.status, 404);
    assert_eq!(
        off.post("/admin/api/login", None, json!({})).await.status,
        404
    );
}

async fn manager_token_at(app: &TestApp, prefix: &str) -> String {
    add_manager(app).await;
    let r = app
        .post(
            &format!("{prefix}/api/login"),
            None,
            json!({"name": MANAGER, "password": MANAGER_PW}),
        )
        .await;
    r.ok()["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn the_dashboard_counts_users_groups_and_messages() {
    let app = spawn_app().await;
    let t = manager_token(&app).await;
    let (a, at, _) = app.register("dash01").await;
    let (b, bt, _) = app.register("dash02").await;
    app.befriend((a, "dash01"), (b, "dash02")).await;
    unlimited(&app, &bt).await;
    app.send_text(&at, b, "hi").await.ok();
    app.visitor(&device_id()).await;
    let r = aget(&app, "/admin/api/stats", &t).await;
    let c = &r.ok()["counts"];
    assert_eq!((&c["users"], &c["visitors"]), (&json!(2), &json!(1)));
    assert_eq!(c["messages_today"], 1);
    assert_eq!(c["messages_last_hour"], 1);
    assert!(r.ok()["history"].as_array().is_some_and(|h| !h.is_empty()));
}
