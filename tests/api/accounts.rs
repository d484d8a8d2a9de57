//! Accounts, visitors and authentication (AF §2–§7.1, §9, §11): the real server over HTTP, with
//! the spec's exact texts and statuses. The same tests run on SQLite and MariaDB.

use futures::future::join_all;
use serde_json::{json, Map, Value};

use crate::common::*;

const PW: &str = "123456";
/// SHA-256 hex of `123456`, the legacy hash of AF §5.7.
const LEGACY_123456: &str = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92";
/// The §4.1 test-vector device.
const VECTOR_DEVICE: &str = "8d1a344c-bf16-5425-adbc-d12f49cfa332";

const TOKEN_INVALID: &str = "Token 令牌不合法！";
const NO_TOKEN: &str = "您没有权限访问即时通讯接口";
const USER_GONE: &str = "当前用户不存在或者已被禁用";
const TOO_MANY: &str = "请求过于频繁，请1个小时后再试";
const NO_ACCOUNT: &str = "账号不存在或者被禁用";
const BAD_PASSWORD: &str = "账户或密码错误";
const TAKEN: &str = "该账号已存在，请换一个账号注册";

/// UserView + token, in the order of AF §5.5 / §6.1.
const USER_VIEW_KEYS: &[&str] = &[
    "create_time",
    "id",
    "uuid",
    "username",
    "nickname",
    "avatar",
    "devicefingeruuid",
    "uniplatform",
    "devicemodel",
    "deviceos",
    "devicebrand",
    "mobile",
    "email",
    "status",
    "last_login",
    "last_login_ip",
    "register_time",
    "register_ip",
    "is_deleted",
    "wechat_openid",
    "qq_openid",
    "weibo_uid",
    "role",
    "is_email_verified",
    "is_mobile_verified",
    "order",
    "update_time",
    "userset",
    "invite_confirm",
    "token",
];

// ---------------------------------------------------------------------------------------------
// helpers

fn token_of(d: &Value) -> String {
    d["token"].as_str().expect("token").to_string()
}

fn id_of(d: &Value) -> i64 {
    d["id"].as_i64().expect("id")
}

async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    app.post(
        "/api/loginChat",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn logout(app: &TestApp, token: &str) -> Resp {
    app.post("/api/chat/logout", Some(token), json!({})).await
}

/// API 二十二 (`chatGetmessageOffLine`).
async fn offline(app: &TestApp, token: &str) -> Resp {
    app.post("/api/chat/chatGetmessageOffLine", Some(token), json!({}))
        .await
}

/// A harmless authenticated call allowed to users and visitors alike.
async fn probe(app: &TestApp, token: &str) -> Resp {
    app.post(
        "/api/chat/userset",
        Some(token),
        json!({"userset": "{\"chatset\":{}}"}),
    )
    .await
}

/// Sign `extra` for `device` with the given timestamp (AF §4.1).
fn sign_at(device: &str, ts: i64, mut extra: Value) -> (String, Value) {
    let sign = imrs::services::visitor::signature(device, &ts.to_string(), SALT);
    extra["deviceId"] = json!(device);
    extra["timestamp"] = json!(ts);
    (sign, extra)
}

/// A freshly signed request to one of the three signed endpoints.
async fn signed(app: &TestApp, path: &str, device: &str, extra: Value) -> Resp {
    let (sign, body) = signed_body(device, extra);
    app.post_signed(path, Some(&sign), body).await
}

async fn visitor_login(app: &TestApp, device: &str, username: &str, password: &str) -> Resp {
    signed(
        app,
        "/api/visitorloginChat",
        device,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn visitor_reg(app: &TestApp, device: &str, username: &str, password: &str) -> Resp {
    signed(
        app,
        "/api/visitorregChat",
        device,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn visitor_register(app: &TestApp, device: &str) -> Resp {
    signed(app, "/api/visitorRegister", device, json!({})).await
}

/// A device id whose first 8 characters are `prefix`.
fn device_with_prefix(prefix: &str) -> String {
    assert_eq!(prefix.len(), 8);
    format!("{prefix}{}", &device_id()[8..])
}

/// The claims of a token, verified as HS256 with the test secret.
fn claims(token: &str) -> Map<String, Value> {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(b"test-secret"),
        &v,
    )
    .expect("an HS256 JWT signed with the configured secret")
    .claims
}

fn sign_claims(c: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        c,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64URL
            .iter()
            .position(|&b| b == c)
            .unwrap_or_else(|| panic!("not base64url: {c}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=n {
            out.push(B64URL[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The stored state of a token: 1 active, 2 retired, 3 revoked.
async fn token_state(app: &TestApp, token: &str) -> i64 {
    let jti = claims(token)["jti"].as_str().expect("jti").to_string();
    app.state
        .db
        .opt::<(i64,)>(
            "SELECT `state` FROM `im_token` WHERE `jti` = ?",
            imrs::args![jti],
        )
        .await
        .expect("query")
        .expect("a token record")
        .0
}

async fn column(app: &TestApp, column: &str, id: i64) -> Option<String> {
    let sql = format!("SELECT `{column}` FROM `user` WHERE `id` = ?");
    app.state
        .db
        .opt::<(Option<String>,)>(&sql, imrs::args![id])
        .await
        .expect("query")
        .expect("a user row")
        .0
}

async fn count_users(app: &TestApp, username: &str) -> i64 {
    app.state
        .db
        .opt::<(i64,)>(
            "SELECT COUNT(*) FROM `user` WHERE `username` = ?",
            imrs::args![username],
        )
        .await
        .expect("query")
        .expect("a count")
        .0
}

async fn exec(app: &TestApp, sql: &str, args: Vec<imrs::store::Arg>) {
    app.state.db.exec(sql, args).await.expect("statement");
}

async fn ban(app: &TestApp, id: i64, enabled: bool) {
    let found = imrs::services::accounts::set_enabled(&app.state, id, enabled)
        .await
        .expect("set_enabled");
    assert!(found.is_some());
}

async fn set_user_info(app: &TestApp, token: &str, field: &str, value: Value) -> Resp {
    app.post(
        "/api/chat/updateUserinfo",
        Some(token),
        json!({"fieldname": field, "fieldValue": value}),
    )
    .await
}

async fn user_set_info(app: &TestApp, token: &str, userid: Value) -> Resp {
    app.post(
        "/api/chat/getUserSetInfo",
        Some(token),
        json!({"userid": userid}),
    )
    .await
}

async fn search(app: &TestApp, token: &str, keyword: &str) -> Vec<String> {
    let r = app
        .post(
            "/api/chat/searchUser",
            Some(token),
            json!({"keyword": keyword}),
        )
        .await;
    r.ok()
        .as_array()
        .expect("an array")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_string())
        .collect()
}

async fn raw(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn is_iso_ms(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok() && s.len() == 24
    })
}

// ---------------------------------------------------------------------------------------------
// API 一 / 二: register and log in

#[tokio::test]
async fn register_answers_the_user_view_in_the_original_key_order_with_a_token() {
    let app = spawn_app().await;
    let d = app
        .post(
            "/api/regChat",
            None,
            json!({"username": "my01", "password": PW}),
        )
        .await
        .ok()
        .clone();
    assert_eq!(keys(&d), USER_VIEW_KEYS);
    assert!(d.get("password").is_none());
    assert!(id_of(&d) > 0);
    assert_eq!(d["username"], "my01");
    assert_eq!(d["role"], "user");
    assert_eq!(d["nickname"], "");
    assert_eq!(d["avatar"], DEFAULT_AVATAR);
    assert_eq!(d["status"], 1);
    assert_eq!(d["devicefingeruuid"], Value::Null);
    assert_eq!(d["userset"], Value::Null);
    assert_eq!(d["invite_confirm"], 0);
    assert_eq!(d["order"], 50);
    assert_eq!(d["is_deleted"], 0);
    let uuid = d["uuid"].as_str().expect("uuid");
    let parsed = uuid::Uuid::parse_str(uuid).expect("a uuid");
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(uuid, uuid.to_lowercase());
    assert!(is_iso_ms(&d["last_login"]), "fresh last_login: {d}");
    assert!(!token_of(&d).is_empty());
}

#[tokio::test]
async fn register_renders_create_time_in_the_display_zone_and_other_times_in_iso_utc() {
    let app = spawn_app().await;
    let (_, _, d) = app.register("my01").await;
    assert!(is_iso_ms(&d["register_time"]), "{d}");
    assert!(is_iso_ms(&d["update_time"]), "{d}");
    let create = chrono::NaiveDateTime::parse_from_str(
        d["create_time"].as_str().expect("create_time"),
        "%Y-%m-%d %H:%M:%S",
    )
    .expect("YYYY-MM-DD HH:mm:ss");
    let register = chrono::NaiveDateTime::parse_from_str(
        d["register_time"].as_str().expect("register_time"),
        "%Y-%m-%dT%H:%M:%S%.3fZ",
    )
    .expect("iso");
    let diff = (create - register).num_seconds();
    assert!(
        (8 * 3600 - 2..=8 * 3600 + 2).contains(&diff),
        "create_time is +08:00 local, register_time UTC: {d}"
    );
}

#[tokio::test]
async fn login_answers_the_user_view_with_a_fresh_token() {
    let app = spawn_app().await;
    let (id, first, _) = app.register("my01").await;
    let d = login(&app, "my01", PW).await.ok().clone();
    assert_eq!(keys(&d), USER_VIEW_KEYS);
    assert_eq!(id_of(&d), id);
    assert_eq!(d["role"], "user");
    assert!(d.get("password").is_none());
    assert!(is_iso_ms(&d["last_login"]));
    assert_ne!(token_of(&d), first);
}

#[tokio::test]
async fn register_with_a_taken_username_answers_already_exists() {
    let app = spawn_app().await;
    app.register("my01").await;
    app.post(
        "/api/regChat",
        None,
        json!({"username": "my01", "password": "abcdef"}),
    )
    .await
    .fails(400, TAKEN);
}

#[tokio::test]
async fn register_with_a_visitors_or_a_disabled_users_name_answers_already_exists() {
    let app = spawn_app().await;
    let v = app.visitor(&device_id()).await;
    app.post(
        "/api/regChat",
        None,
        json!({"username": v["username"], "password": PW}),
    )
    .await
    .fails(400, TAKEN);
    let (id, _, _) = app.register("gone01").await;
    ban(&app, id, false).await;
    app.post(
        "/api/regChat",
        None,
        json!({"username": "gone01", "password": PW}),
    )
    .await
    .fails(400, TAKEN);
}

#[tokio::test]
async fn register_with_a_taken_username_in_another_case_answers_already_exists() {
    let app = spawn_app().await;
    app.register("my01").await;
    app.post(
        "/api/regChat",
        None,
        json!({"username": "MY01", "password": PW}),
    )
    .await
    .fails(400, TAKEN);
}

#[tokio::test]
async fn login_matches_the_username_case_insensitively() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("my01").await;
    let d = login(&app, "MY01", PW).await.ok().clone();
    assert_eq!(id_of(&d), id);
    assert_eq!(d["username"], "my01");
}

#[tokio::test]
async fn register_validates_username_and_password_with_the_valparams_texts() {
    let app = spawn_app().await;
    let reg = |u: Value, p: Value| {
        let app = &app;
        async move {
            let mut body = json!({});
            if !u.is_null() {
                body["username"] = u;
            }
            if !p.is_null() {
                body["password"] = p;
            }
            app.post("/api/regChat", None, body).await
        }
    };
    let user_len = "账号 的长度 必须 在 4 和 20 之间";
    reg(json!("abc"), json!(PW)).await.fails(422, user_len);
    reg(json!("a".repeat(21)), json!(PW))
        .await
        .fails(422, user_len);
    reg(json!("my01"), Value::Null)
        .await
        .fails(422, "密码不能为空");
    reg(json!("my01"), json!(""))
        .await
        .fails(422, "密码不能为空");
    reg(Value::Null, json!(PW)).await.fails(422, "账号不能为空");
    reg(json!("my01"), json!("12345"))
        .await
        .fails(422, "密码 的长度 必须 在 6 和 20 之间");
    reg(json!("my01"), json!("1".repeat(21)))
        .await
        .fails(422, "密码 的长度 必须 在 6 和 20 之间");
    // The first failing parameter in table order is the one reported.
    reg(json!("abc"), Value::Null).await.fails(422, user_len);
    // Limits are inclusive.
    reg(json!("abcd"), json!("123456")).await.ok();
    reg(json!("b".repeat(20)), json!("1".repeat(20))).await.ok();
}

#[tokio::test]
async fn register_and_login_accept_form_encoded_bodies() {
    let app = spawn_app().await;
    let d = app
        .post_form(
            "/api/regChat",
            None,
            &[("username", "form01"), ("password", PW)],
        )
        .await
        .ok()
        .clone();
    assert_eq!(d["username"], "form01");
    let d2 = app
        .post_form(
            "/api/loginChat",
            None,
            &[("username", "form01"), ("password", PW)],
        )
        .await
        .ok()
        .clone();
    assert_eq!(id_of(&d2), id_of(&d));
    app.post_form(
        "/api/loginChat",
        None,
        &[("username", "form01"), ("password", "wrong1")],
    )
    .await
    .fails(400, BAD_PASSWORD);
    app.post_form("/api/regChat", None, &[("username", "abc")])
        .await
        .fails(422, "账号 的长度 必须 在 4 和 20 之间");
}

#[tokio::test]
async fn json_numbers_are_accepted_as_username_and_password_text() {
    let app = spawn_app().await;
    let d = app
        .post(
            "/api/regChat",
            None,
            json!({"username": 12345678, "password": 123456}),
        )
        .await
        .ok()
        .clone();
    assert_eq!(d["username"], "12345678");
    login(&app, "12345678", "123456").await.ok();
}

#[tokio::test]
async fn login_with_a_wrong_password_answers_account_or_password_wrong() {
    let app = spawn_app().await;
    app.register("my01").await;
    login(&app, "my01", "654321").await.fails(400, BAD_PASSWORD);
}

#[tokio::test]
async fn login_with_an_unknown_account_answers_account_missing_or_disabled() {
    let app = spawn_app().await;
    login(&app, "nobody01", PW).await.fails(400, NO_ACCOUNT);
}

#[tokio::test]
async fn login_is_refused_after_the_failed_attempt_limit_even_with_the_right_password() {
    let app = spawn_with(|s| s.login_fail_account_limit = Some(3)).await;
    app.register("my01").await;
    app.register("my02").await;
    for _ in 0..3 {
        login(&app, "my01", "wrong1").await.fails(400, BAD_PASSWORD);
    }
    login(&app, "my01", PW).await.fails(400, BAD_PASSWORD);
    // The limit is per account (per-IP limits are off in this rig).
    login(&app, "my02", PW).await.ok();
}

#[tokio::test]
async fn login_failures_per_ip_are_limited_when_per_ip_limits_are_on() {
    let app = spawn_with(|s| {
        s.per_ip_limits = Some("on".into());
        s.login_fail_ip_limit = Some(2);
    })
    .await;
    app.register("my01").await;
    app.register("my02").await;
    login(&app, "my01", "wrong1").await.fails(400, BAD_PASSWORD);
    login(&app, "my02", "wrong1").await.fails(400, BAD_PASSWORD);
    login(&app, "my02", PW).await.fails(400, BAD_PASSWORD);
}

#[tokio::test]
async fn a_stored_role_other_than_visitor_logs_in_as_user() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("boss01").await;
    exec(
        &app,
        "UPDATE `user` SET `role` = 'admin' WHERE `id` = ?",
        imrs::args![id],
    )
    .await;
    let d = login(&app, "boss01", PW).await.ok().clone();
    assert_eq!(d["role"], "user");
    assert_eq!(claims(&token_of(&d))["role"], "user");
}

// ---------------------------------------------------------------------------------------------
// Token model (AF §3.2–§3.4)

#[tokio::test]
async fn a_second_login_invalidates_the_first_token_and_logout_invalidates_the_second() {
    let app = spawn_app().await;
    app.register("my01").await;
    let first = token_of(login(&app, "my01", PW).await.ok());
    let second = token_of(login(&app, "my01", PW).await.ok());
    logout(&app, &first).await.fails(400, TOKEN_INVALID);
    assert_eq!(logout(&app, &second).await.ok(), &json!(true));
    logout(&app, &second).await.fails(400, TOKEN_INVALID);
    probe(&app, &second).await.fails(400, TOKEN_INVALID);
}

#[tokio::test]
async fn a_replaced_undevised_token_is_revoked_and_a_logged_out_one_retired() {
    let app = spawn_app().await;
    let (_, first, _) = app.register("my01").await;
    let second = token_of(login(&app, "my01", PW).await.ok());
    assert_eq!(
        token_state(&app, &first).await,
        3,
        "replaced from no device"
    );
    assert_eq!(token_state(&app, &second).await, 1);
    logout(&app, &second).await.ok();
    assert_eq!(token_state(&app, &second).await, 2, "logout retires");
}

#[tokio::test]
async fn a_logged_out_token_answers_ok_on_offline_messages_and_invalid_elsewhere() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    logout(&app, &token).await.ok();
    let r = offline(&app, &token).await;
    assert_eq!(
        (r.status, &r.body),
        (200, &json!({"msg": "ok", "data": "ok"}))
    );
    probe(&app, &token).await.fails(400, TOKEN_INVALID);
    logout(&app, &token).await.fails(400, TOKEN_INVALID);
}

#[tokio::test]
async fn a_revoked_token_answers_token_invalid_on_offline_messages() {
    let app = spawn_app().await;
    app.register("my01").await;
    let (a, b) = (device_id(), device_id());
    let ta = token_of(visitor_login(&app, &a, "my01", PW).await.ok());
    visitor_login(&app, &b, "my01", PW).await.ok();
    offline(&app, &ta).await.fails(400, TOKEN_INVALID);
    // A token replaced by an unsigned login is revoked too.
    let (_, first, _) = app.register("my02").await;
    login(&app, "my02", PW).await.ok();
    offline(&app, &first).await.fails(400, TOKEN_INVALID);
}

#[tokio::test]
async fn a_banned_users_retired_token_answers_user_gone_on_offline_messages() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    logout(&app, &token).await.ok();
    ban(&app, id, false).await;
    offline(&app, &token).await.fails(400, USER_GONE);
}

#[tokio::test]
async fn garbage_tokens_answer_token_invalid_never_500() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let c = claims(&token);
    let forged = sign_claims(&Value::Object(c.clone()), b"another-secret");
    let none_alg = format!(
        "{}.{}.",
        b64url_encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64url_encode(Value::Object(c.clone()).to_string().as_bytes())
    );
    let missing_claims = sign_claims(&json!({"id": id}), b"test-secret");
    let long = "x".repeat(8000);
    for bad in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        forged.as_str(),
        none_alg.as_str(),
        missing_claims.as_str(),
        &token[..token.len() - 2],
        long.as_str(),
    ] {
        let r = logout(&app, bad).await;
        r.fails(400, TOKEN_INVALID);
    }
    // The real token is unaffected.
    probe(&app, &token).await.ok();
}

#[tokio::test]
async fn a_validly_signed_token_without_a_record_is_refused() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let mut c = claims(&token);
    c.insert("jti".into(), json!("0123456789abcdef0123456789abcdef"));
    let unknown_jti = sign_claims(&Value::Object(c), b"test-secret");
    probe(&app, &unknown_jti).await.fails(400, TOKEN_INVALID);
    // A token for a user that does not exist answers step 4's text (checked before the state).
    let ghost = sign_claims(
        &json!({"id": id + 1000, "role": "user", "iat": 1, "jti": "feedfacefeedfacefeedfacefeedface"}),
        b"test-secret",
    );
    probe(&app, &ghost).await.fails(400, USER_GONE);
}

#[tokio::test]
async fn missing_token_answers_no_permission_for_the_im_api() {
    let app = spawn_app().await;
    app.post("/api/chat/logout", None, json!({}))
        .await
        .fails(400, NO_TOKEN);
    app.post("/api/chat/logout", Some(""), json!({}))
        .await
        .fails(400, NO_TOKEN);
    app.post("/api/chat/searchUser", None, json!({"keyword": "my"}))
        .await
        .fails(400, NO_TOKEN);
    app.post("/api/chat/logout?token=", None, json!({"token": ""}))
        .await
        .fails(400, NO_TOKEN);
}

#[tokio::test]
async fn token_is_read_from_the_query_and_from_the_body_field() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    let r = app
        .post(
            &format!("/api/chat/userset?token={token}"),
            None,
            json!({"userset": "{}x"}),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    let r = app
        .post(
            "/api/chat/userset",
            None,
            json!({"userset": "{}y", "token": token}),
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    let r = app
        .post_form(
            "/api/chat/userset",
            None,
            &[("userset", "{}z"), ("token", &token)],
        )
        .await;
    assert_eq!(r.ok(), &json!("ok"));
    assert_eq!(logout(&app, &token).await.ok(), &json!(true));
}

#[tokio::test]
async fn the_token_header_wins_over_query_and_body() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    app.post(
        &format!("/api/chat/logout?token={token}"),
        Some("garbage"),
        json!({"token": token}),
    )
    .await
    .fails(400, TOKEN_INVALID);
    app.post(
        "/api/chat/logout?token=garbage",
        None,
        json!({"token": token}),
    )
    .await
    .fails(400, TOKEN_INVALID);
}

#[tokio::test]
async fn jwt_payload_holds_only_id_role_iat_jti() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).expect("JSON header");
    assert_eq!(header["alg"], "HS256");
    let payload: Value = serde_json::from_slice(&b64url_decode(parts[1])).expect("JSON payload");
    let mut k = keys(&payload);
    k.sort_unstable();
    assert_eq!(k, ["iat", "id", "jti", "role"], "{payload}");
    assert_eq!(payload["id"], id);
    assert_eq!(payload["role"], "user");
    assert!(payload["iat"].is_i64());
    assert!(!payload["jti"].as_str().expect("jti").is_empty());
    assert!(
        !token.contains('+') && !token.contains('/') && !token.contains('='),
        "URL-safe"
    );
    // Verified with the configured secret.
    assert_eq!(claims(&token)["id"], id);
}

#[tokio::test]
async fn concurrent_logins_leave_exactly_one_active_token() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("my01").await;
    let answers = join_all((0..6).map(|_| login(&app, "my01", PW))).await;
    let tokens: Vec<String> = answers.iter().map(|r| token_of(r.ok())).collect();
    let mut working = 0;
    for t in &tokens {
        if probe(&app, t).await.status == 200 {
            working += 1;
        }
    }
    assert_eq!(working, 1, "exactly one of the concurrent tokens is active");
    let active = app
        .state
        .db
        .opt::<(i64,)>(
            "SELECT COUNT(*) FROM `im_token` WHERE `user_id` = ? AND `state` = 1",
            imrs::args![id],
        )
        .await
        .expect("query")
        .expect("count")
        .0;
    assert_eq!(active, 1);
}

#[tokio::test]
async fn concurrent_registrations_of_one_username_create_one_account() {
    let app = spawn_app().await;
    let names = ["race01", "RACE01", "race01", "Race01", "race01", "rAce01"];
    let answers = join_all(
        names
            .iter()
            .map(|n| app.post("/api/regChat", None, json!({"username": n, "password": PW}))),
    )
    .await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1);
    for r in answers.iter().filter(|r| r.status != 200) {
        r.fails(400, TAKEN);
    }
    assert_eq!(count_users(&app, "race01").await, 1);
}

#[tokio::test]
async fn an_expired_token_answers_token_expired() {
    let app = spawn_with(|s| s.token_ttl_secs = Some(1)).await;
    let (_, token, _) = app.register("my01").await;
    probe(&app, &token).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    probe(&app, &token)
        .await
        .fails(400, "Token已过期！请重新获取令牌");
}

#[tokio::test]
async fn visitor_register_never_answers_an_expired_token() {
    let app = spawn_with(|s| s.token_ttl_secs = Some(1)).await;
    let device = device_id();
    let first = app.visitor(&device).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let again = app.visitor(&device).await;
    assert_eq!(again["id"], first["id"]);
    assert_ne!(again["token"], first["token"]);
    probe(&app, &token_of(&again)).await.ok();
}

// ---------------------------------------------------------------------------------------------
// Legacy passwords (AF §5.7, D1)

#[tokio::test]
async fn legacy_sha256_password_logs_in_and_is_rehashed_to_argon2id() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("old01").await;
    exec(
        &app,
        "UPDATE `user` SET `password` = ? WHERE `id` = ?",
        imrs::args![LEGACY_123456, id],
    )
    .await;
    let d = login(&app, "old01", PW).await.ok().clone();
    assert_eq!(id_of(&d), id);
    let stored = column(&app, "password", id).await.expect("password");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    // And the new hash verifies.
    login(&app, "old01", PW).await.ok();
}

#[tokio::test]
async fn legacy_sha256_password_with_a_wrong_password_is_refused_and_kept() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("old01").await;
    exec(
        &app,
        "UPDATE `user` SET `password` = ? WHERE `id` = ?",
        imrs::args![LEGACY_123456, id],
    )
    .await;
    login(&app, "old01", "654321")
        .await
        .fails(400, BAD_PASSWORD);
    assert_eq!(
        column(&app, "password", id).await.as_deref(),
        Some(LEGACY_123456)
    );
}

#[tokio::test]
async fn set_password_verifies_a_legacy_old_password() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("old01").await;
    exec(
        &app,
        "UPDATE `user` SET `password` = ? WHERE `id` = ?",
        imrs::args![LEGACY_123456, id],
    )
    .await;
    app.post(
        "/api/chat/setPassword",
        Some(&token),
        json!({"oldpassword": PW, "newpassword": "abcdef", "checknewpassword": "abcdef"}),
    )
    .await
    .ok();
    let stored = column(&app, "password", id).await.expect("password");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    login(&app, "old01", "abcdef").await.ok();
}

#[tokio::test]
async fn a_visitor_account_logging_in_with_a_password_gets_a_visitor_session() {
    let app = spawn_app().await;
    let v = app.visitor(&device_id()).await;
    exec(
        &app,
        "UPDATE `user` SET `password` = ? WHERE `id` = ?",
        imrs::args![LEGACY_123456, id_of(&v)],
    )
    .await;
    let d = login(&app, v["username"].as_str().expect("username"), PW)
        .await
        .ok()
        .clone();
    assert_eq!(d["id"], v["id"]);
    assert_eq!(d["role"], "visitor");
    let t = token_of(&d);
    assert_eq!(claims(&t)["role"], "visitor");
    app.post("/api/chat/searchUser", Some(&t), json!({"keyword": "my"}))
        .await
        .fails(400, VISITOR_FORBIDDEN);
}

#[tokio::test]
async fn registration_stores_argon2id() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("new01").await;
    let stored = column(&app, "password", id).await.expect("password");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

// ---------------------------------------------------------------------------------------------
// Visitors (AF §4, API 十三 十四 十五)

#[tokio::test]
async fn visitor_register_creates_a_visitor_named_after_the_device() {
    let app = spawn_app().await;
    let r = signed(
        &app,
        "/api/visitorRegister",
        VECTOR_DEVICE,
        json!({"uniplatform": "web", "devicemodel": "PC", "deviceos": "windows", "devicebrand": "acme"}),
    )
    .await;
    let d = r.ok().clone();
    assert_eq!(keys(&d), USER_VIEW_KEYS);
    assert!(d.get("password").is_none());
    assert_eq!(d["username"], "VIS8d1a344c");
    assert_eq!(d["role"], "visitor");
    assert_eq!(d["devicefingeruuid"], VECTOR_DEVICE);
    assert_eq!(d["uniplatform"], "web");
    assert_eq!(d["devicemodel"], "PC");
    assert_eq!(d["deviceos"], "windows");
    assert_eq!(d["devicebrand"], "acme");
    assert_eq!(d["avatar"], DEFAULT_AVATAR);
    assert_eq!(d["status"], 1);
    assert!(is_iso_ms(&d["last_login"]));
    let c = claims(&token_of(&d));
    assert_eq!(c["role"], "visitor");
    assert_eq!(c["id"], d["id"]);
    assert_eq!(
        column(&app, "role", id_of(&d)).await.as_deref(),
        Some("visitor")
    );
    // The visitor's password is never a 6-digit number (D10).
    let hash = column(&app, "password", id_of(&d)).await.expect("password");
    assert!(hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn visitor_register_twice_returns_the_same_visitor_and_token() {
    let app = spawn_app().await;
    let device = device_id();
    let first = app.visitor(&device).await;
    for _ in 0..9 {
        let again = app.visitor(&device).await;
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["token"], first["token"]);
        assert_eq!(again["role"], "visitor");
    }
    assert_eq!(token_state(&app, &token_of(&first)).await, 1);
    probe(&app, &token_of(&first)).await.ok();
}

#[tokio::test]
async fn concurrent_visitor_registers_for_one_device_share_one_visitor_and_token_uncounted() {
    let app = spawn_with(|s| s.visitor_device_limit = Some(2)).await;
    let device = device_id();
    let answers = join_all((0..10).map(|_| visitor_register(&app, &device))).await;
    let first = answers[0].ok().clone();
    for a in &answers {
        let d = a.ok();
        assert_eq!(d["id"], first["id"]);
        assert_eq!(d["token"], first["token"]);
    }
    let prefix = format!("VIS{}%", &device[..8]);
    let n = app
        .state
        .db
        .opt::<(i64,)>(
            "SELECT COUNT(*) FROM `user` WHERE `username` LIKE ?",
            imrs::args![prefix],
        )
        .await
        .expect("query")
        .expect("count")
        .0;
    assert_eq!(n, 1, "one visitor row");
    // Only the creation counted: one more counted call fits under the limit of 2 …
    visitor_login(&app, &device, "nobody01", PW)
        .await
        .fails(400, NO_ACCOUNT);
    // … and then the device is at its limit.
    visitor_register(&app, &device).await.fails(400, TOO_MANY);
}

#[tokio::test]
async fn repeated_visitor_registers_are_not_counted_and_the_31st_counted_call_is_refused() {
    let app = spawn_app().await; // default limit: 30 per device per hour
    let device = device_id();
    let v = app.visitor(&device).await; // counted: 1
    for _ in 0..10 {
        assert_eq!(app.visitor(&device).await["token"], v["token"]);
    }
    for _ in 0..29 {
        // counted: 2 … 30
        visitor_login(&app, &device, "nobody01", PW)
            .await
            .fails(400, NO_ACCOUNT);
    }
    visitor_login(&app, &device, "nobody01", PW)
        .await
        .fails(400, TOO_MANY);
    visitor_register(&app, &device).await.fails(400, TOO_MANY);
    // Another device is unaffected.
    app.visitor(&device_id()).await;
}

#[tokio::test]
async fn visitor_register_again_stores_the_new_statistics() {
    let app = spawn_app().await;
    let device = device_id();
    let d = signed(
        &app,
        "/api/visitorRegister",
        &device,
        json!({"uniplatform": "web", "devicemodel": "PC", "deviceos": "windows", "devicebrand": "acme"}),
    )
    .await
    .ok()
    .clone();
    signed(
        &app,
        "/api/visitorRegister",
        &device,
        json!({"uniplatform": "app", "devicemodel": "iPhone 15", "deviceos": "ios", "devicebrand": "apple"}),
    )
    .await
    .ok();
    let id = id_of(&d);
    assert_eq!(
        column(&app, "uniplatform", id).await.as_deref(),
        Some("app")
    );
    assert_eq!(
        column(&app, "devicemodel", id).await.as_deref(),
        Some("iPhone 15")
    );
    assert_eq!(column(&app, "deviceos", id).await.as_deref(), Some("ios"));
    assert_eq!(
        column(&app, "devicebrand", id).await.as_deref(),
        Some("apple")
    );
}

#[tokio::test]
async fn visitor_register_ignores_out_of_range_optional_statistics() {
    let app = spawn_app().await;
    let d = signed(
        &app,
        "/api/visitorRegister",
        &device_id(),
        json!({"uniplatform": "w", "devicemodel": "m".repeat(51), "deviceos": "ios"}),
    )
    .await
    .ok()
    .clone();
    assert_eq!(d["uniplatform"], "");
    assert_eq!(d["devicemodel"], "");
    assert_eq!(d["deviceos"], "ios");
    assert_eq!(d["devicebrand"], "");
}

#[tokio::test]
async fn visitor_register_signs_the_timestamp_text_as_received() {
    let app = spawn_app().await;
    let device = device_id();
    let ts = chrono::Utc::now().timestamp_millis();
    // Form body: every value is text.
    let ts_text = ts.to_string();
    let sign = imrs::services::visitor::signature(&device, &ts_text, SALT);
    let (status, body) = raw(app
        .http
        .post(app.url("/api/visitorRegister"))
        .header("X-Security-Sign", &sign)
        .form(&[
            ("deviceId", device.as_str()),
            ("timestamp", ts_text.as_str()),
        ])
        .send()
        .await
        .expect("request"))
    .await;
    assert_eq!((status, &body["msg"]), (200, &json!("ok")), "{body}");
    let first_token = body["data"]["token"].clone();
    // JSON string timestamp with leading zeros: signed over exactly that text.
    let padded = format!("00{ts}");
    let sign = imrs::services::visitor::signature(&device, &padded, SALT);
    let r = app
        .post_signed(
            "/api/visitorRegister",
            Some(&sign),
            json!({"deviceId": device, "timestamp": padded}),
        )
        .await;
    assert_eq!(r.ok()["token"], first_token);
    // The same request signed over the normalised number text is not the same signature.
    let sign = imrs::services::visitor::signature(&device, &ts.to_string(), SALT);
    app.post_signed(
        "/api/visitorRegister",
        Some(&sign),
        json!({"deviceId": device, "timestamp": padded}),
    )
    .await
    .fails(400, "非法签名");
}

#[tokio::test]
async fn visitor_register_without_signature_header_answers_illegal_access() {
    let app = spawn_app().await;
    let (_, body) = signed_body(&device_id(), json!({}));
    app.post_signed("/api/visitorRegister", None, body.clone())
        .await
        .fails(400, "非法访问");
    app.post_signed("/api/visitorRegister", Some(""), body)
        .await
        .fails(400, "非法访问");
    // The header is checked before validation.
    app.post_signed("/api/visitorRegister", None, json!({}))
        .await
        .fails(400, "非法访问");
    for path in ["/api/visitorregChat", "/api/visitorloginChat"] {
        app.post_signed(path, None, json!({"username": "abc"}))
            .await
            .fails(400, "非法访问");
    }
}

#[tokio::test]
async fn visitor_register_with_a_bad_signature_answers_illegal_signature() {
    let app = spawn_app().await;
    let device = device_id();
    let (sign, body) = signed_body(&device, json!({}));
    app.post_signed(
        "/api/visitorRegister",
        Some(&sign.to_uppercase()),
        body.clone(),
    )
    .await
    .fails(400, "非法签名");
    app.post_signed("/api/visitorRegister", Some("deadbeef"), body.clone())
        .await
        .fails(400, "非法签名");
    // Signed for another device.
    let (other, _) = signed_body(&device_id(), json!({}));
    app.post_signed("/api/visitorRegister", Some(&other), body.clone())
        .await
        .fails(400, "非法签名");
    // Signed with another salt.
    let ts = body["timestamp"].to_string();
    let salted = imrs::services::visitor::signature(&device, &ts, "another-salt");
    app.post_signed("/api/visitorRegister", Some(&salted), body.clone())
        .await
        .fails(400, "非法签名");
    app.post_signed("/api/visitorRegister", Some(&sign), body)
        .await
        .ok();
}

#[tokio::test]
async fn visitor_register_with_a_timestamp_six_minutes_old_or_ahead_answers_expired() {
    let app = spawn_app().await;
    let device = device_id();
    let now = chrono::Utc::now().timestamp_millis();
    for ts in [now - 6 * 60_000, now + 6 * 60_000] {
        let (sign, body) = sign_at(&device, ts, json!({}));
        app.post_signed("/api/visitorRegister", Some(&sign), body)
            .await
            .fails(400, "请求已过期");
    }
    for path in ["/api/visitorregChat", "/api/visitorloginChat"] {
        let (sign, body) = sign_at(
            &device,
            now - 6 * 60_000,
            json!({"username": "my01", "password": PW}),
        );
        app.post_signed(path, Some(&sign), body)
            .await
            .fails(400, "请求已过期");
    }
    // Within five minutes either way is fresh.
    for ts in [now - 4 * 60_000, now + 4 * 60_000] {
        let (sign, body) = sign_at(&device, ts, json!({}));
        app.post_signed("/api/visitorRegister", Some(&sign), body)
            .await
            .ok();
    }
}

#[tokio::test]
async fn visitor_register_with_a_37_character_or_non_word_id_answers_invalid_identifier() {
    let app = spawn_app().await;
    let long = format!("{}a", device_id());
    assert_eq!(long.len(), 37);
    let dotted = format!("{}.{}", &device_id()[..8], &device_id()[9..]);
    assert_eq!(dotted.len(), 36);
    for device in [long.as_str(), dotted.as_str()] {
        visitor_register(&app, device).await.fails(400, "无效标识");
    }
    visitor_login(&app, &long, "my01", PW)
        .await
        .fails(400, "无效标识");
    // Underscores and any letters are word characters.
    let word = "ABCDEFGH_abcdefgh_0123456789-zzzzzzz";
    assert_eq!(word.len(), 36);
    assert_eq!(app.visitor(word).await["username"], "VISABCDEFGH");
}

#[tokio::test]
async fn visitor_register_with_a_35_or_201_character_id_fails_validation() {
    let app = spawn_app().await;
    let text = "设备指纹 的长度 必须 在 36 和 200 之间";
    let short = device_id()[..35].to_string();
    visitor_register(&app, &short).await.fails(422, text);
    let long = "a".repeat(201);
    visitor_register(&app, &long).await.fails(422, text);
}

#[tokio::test]
async fn visitor_register_validates_device_and_timestamp_before_the_signature() {
    let app = spawn_app().await;
    let device = device_id();
    app.post_signed("/api/visitorRegister", Some("bad"), json!({"timestamp": 1}))
        .await
        .fails(422, "设备指纹不能为空");
    app.post_signed(
        "/api/visitorRegister",
        Some("bad"),
        json!({"deviceId": device}),
    )
    .await
    .fails(422, "时间戳不能为空");
    app.post_signed(
        "/api/visitorRegister",
        Some("bad"),
        json!({"deviceId": device, "timestamp": "abc"}),
    )
    .await
    .fails(422, "时间戳 的值 `abc` 的类型不是 `int`");
}

#[tokio::test]
async fn visitor_login_chat_validates_its_table_before_the_signature() {
    let app = spawn_app().await;
    let device = device_id();
    let (_, body) = signed_body(&device, json!({"password": PW}));
    app.post_signed("/api/visitorloginChat", Some("bad"), body)
        .await
        .fails(422, "账号不能为空");
    let (_, body) = signed_body(&device, json!({"username": "my01"}));
    app.post_signed("/api/visitorregChat", Some("bad"), body)
        .await
        .fails(422, "密码不能为空");
    app.post_signed(
        "/api/visitorregChat",
        Some("bad"),
        json!({"username": "my01", "password": PW}),
    )
    .await
    .fails(422, "设备指纹不能为空");
}

#[tokio::test]
async fn device_limit_refuses_every_signed_request_after_the_limit() {
    let app = spawn_with(|s| s.visitor_device_limit = Some(3)).await;
    let device = device_id();
    visitor_reg(&app, &device, "lim01", PW).await.ok(); // 1: registrations count
    visitor_reg(&app, &device, "lim01", PW)
        .await
        .fails(400, TAKEN); // 2: failed registrations count too
    visitor_login(&app, &device, "lim01", "wrong1")
        .await
        .fails(400, BAD_PASSWORD); // 3: failed logins count
    visitor_login(&app, &device, "lim01", PW)
        .await
        .fails(400, TOO_MANY);
    visitor_register(&app, &device).await.fails(400, TOO_MANY);
    visitor_reg(&app, &device, "lim02", PW)
        .await
        .fails(400, TOO_MANY);
    // Other devices and the unsigned login are unaffected.
    app.visitor(&device_id()).await;
    login(&app, "lim01", PW).await.ok();
}

#[tokio::test]
async fn the_device_limit_window_is_fixed_from_the_first_counted_request() {
    let app = spawn_with(|s| {
        s.visitor_device_limit = Some(2);
        s.visitor_window_secs = Some(3);
    })
    .await;
    let device = device_id();
    visitor_login(&app, &device, "nobody01", PW)
        .await
        .fails(400, NO_ACCOUNT); // window starts: t0
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    visitor_login(&app, &device, "nobody01", PW)
        .await
        .fails(400, NO_ACCOUNT); // t0 + 2 s: at the limit
    visitor_register(&app, &device).await.fails(400, TOO_MANY);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // t0 + 3.5 s: the fixed window is over (a window re-armed at t0 + 2 s would still run).
    app.visitor(&device).await;
}

#[tokio::test]
async fn successful_visitor_logins_are_not_counted() {
    let app = spawn_with(|s| s.visitor_device_limit = Some(2)).await;
    app.register("okay01").await;
    let device = device_id();
    for _ in 0..5 {
        visitor_login(&app, &device, "okay01", PW).await.ok();
    }
    visitor_login(&app, &device, "okay01", "wrong1")
        .await
        .fails(400, BAD_PASSWORD);
    visitor_login(&app, &device, "okay01", PW).await.ok();
}

#[tokio::test]
async fn per_ip_request_limit_refuses_signed_requests_over_the_limit() {
    let app = spawn_with(|s| {
        s.per_ip_limits = Some("on".into());
        s.visitor_ip_requests = Some(3);
    })
    .await;
    let known = device_id();
    app.visitor(&known).await;
    app.visitor(&device_id()).await;
    app.visitor(&known).await;
    visitor_register(&app, &device_id())
        .await
        .fails(400, TOO_MANY);
    visitor_register(&app, &known).await.fails(400, TOO_MANY);
    visitor_login(&app, &known, "nobody01", PW)
        .await
        .fails(400, TOO_MANY);
}

#[tokio::test]
async fn per_ip_creation_limit_refuses_new_visitors_but_not_known_ones() {
    let app = spawn_with(|s| {
        s.per_ip_limits = Some("on".into());
        s.visitor_ip_creations = Some(2);
    })
    .await;
    let first = device_id();
    let v = app.visitor(&first).await;
    app.visitor(&device_id()).await;
    visitor_register(&app, &device_id())
        .await
        .fails(400, TOO_MANY);
    assert_eq!(app.visitor(&first).await["token"], v["token"]);
}

#[tokio::test]
async fn per_ip_limits_are_off_when_switched_off() {
    let app = spawn_with(|s| {
        s.per_ip_limits = Some("off".into());
        s.visitor_ip_creations = Some(1);
        s.visitor_ip_requests = Some(1);
    })
    .await;
    for _ in 0..3 {
        app.visitor(&device_id()).await;
    }
}

#[tokio::test]
async fn visitor_token_is_refused_on_user_only_routes() {
    let app = spawn_app().await;
    let v = app.visitor(&device_id()).await;
    let t = token_of(&v);
    app.post("/api/chat/searchUser", Some(&t), json!({"keyword": "my"}))
        .await
        .fails(400, VISITOR_FORBIDDEN);
    logout(&app, &t).await.fails(400, VISITOR_FORBIDDEN);
    app.post(
        "/api/chat/setPassword",
        Some(&t),
        json!({"oldpassword": "x", "newpassword": "abcdef", "checknewpassword": "abcdef"}),
    )
    .await
    .fails(400, VISITOR_FORBIDDEN);
}

#[tokio::test]
async fn visitor_token_may_save_settings_edit_profile_and_read_user_set_info() {
    let app = spawn_app().await;
    let (uid, _, _) = app.register("host01").await;
    let v = app.visitor(&device_id()).await;
    let t = token_of(&v);
    assert_eq!(probe(&app, &t).await.ok(), &json!("ok"));
    assert_eq!(
        user_set_info(&app, &t, json!(uid)).await.ok()["id"],
        json!(uid)
    );
    assert_eq!(
        set_user_info(&app, &t, "nickname", json!("游客甲"))
            .await
            .ok(),
        &json!("修改昵称成功")
    );
}

#[tokio::test]
async fn visitor_reg_chat_upgrades_the_visitor_in_place() {
    let app = spawn_app().await;
    let device = device_id();
    let v = app.visitor(&device).await;
    let d = visitor_reg(&app, &device, "newbie01", "abcdef")
        .await
        .ok()
        .clone();
    assert_eq!(keys(&d), USER_VIEW_KEYS);
    assert_eq!(d["id"], v["id"]);
    assert_eq!(d["uuid"], v["uuid"]);
    assert_eq!(d["username"], "newbie01");
    assert_eq!(d["role"], "user");
    assert_eq!(d["devicefingeruuid"], json!(device));
    assert_eq!(claims(&token_of(&d))["role"], "user");
    assert_eq!(
        column(&app, "role", id_of(&v)).await.as_deref(),
        Some("user")
    );
    probe(&app, &token_of(&d)).await.ok();
    // The account can log in with its new password.
    let l = login(&app, "newbie01", "abcdef").await.ok().clone();
    assert_eq!(l["id"], v["id"]);
    assert_eq!(l["role"], "user");
}

#[tokio::test]
async fn after_an_upgrade_the_old_visitor_token_is_retired_and_the_device_gets_a_new_visitor() {
    let app = spawn_app().await;
    let device = device_id();
    let v = app.visitor(&device).await;
    let old = token_of(&v);
    let d = visitor_reg(&app, &device, "newbie01", "abcdef")
        .await
        .ok()
        .clone();
    let account = token_of(&d);
    probe(&app, &old).await.fails(400, TOKEN_INVALID);
    assert_eq!(token_state(&app, &old).await, 2, "same device: retired");
    // The retired visitor token is quiet, never `Token 令牌不合法！`, on API 二十二 (AF §11 item 6).
    let r = offline(&app, &old).await;
    assert_eq!(
        (r.status, &r.body),
        (200, &json!({"msg": "ok", "data": "ok"}))
    );

    // visitorRegister never logs into the upgraded account (D3): a new visitor appears.
    let v2 = app.visitor(&device).await;
    assert_ne!(v2["id"], v["id"]);
    assert_eq!(v2["role"], "visitor");
    assert_eq!(v2["username"], json!(format!("VIS{}", &device[..8])));
    assert_ne!(v2["token"], json!(account));
    // … and the new account stays logged in.
    probe(&app, &account).await.ok();
    assert_eq!(token_state(&app, &account).await, 1);
}

#[tokio::test]
async fn visitor_reg_chat_on_a_device_without_a_visitor_creates_a_new_account() {
    let app = spawn_app().await;
    let d = visitor_reg(&app, &device_id(), "fresh01", PW)
        .await
        .ok()
        .clone();
    assert_eq!(d["role"], "user");
    assert_eq!(d["username"], "fresh01");
    assert_eq!(d["devicefingeruuid"], Value::Null);
    login(&app, "fresh01", PW).await.ok();
    // Its profile row exists.
    let p = app
        .get(
            &format!("/api/userinfo/{}", d["uuid"].as_str().expect("uuid")),
            None,
        )
        .await;
    assert!(p.ok()["userinfo"]["id"].is_i64());
}

#[tokio::test]
async fn visitor_reg_chat_with_a_taken_username_answers_already_exists_and_keeps_the_visitor() {
    let app = spawn_app().await;
    app.register("taken01").await;
    let device = device_id();
    let v = app.visitor(&device).await;
    visitor_reg(&app, &device, "TAKEN01", PW)
        .await
        .fails(400, TAKEN);
    let id = id_of(&v);
    assert_eq!(column(&app, "role", id).await.as_deref(), Some("visitor"));
    assert_eq!(
        column(&app, "username", id).await,
        v["username"].as_str().map(String::from)
    );
    probe(&app, &token_of(&v)).await.ok();
}

#[tokio::test]
async fn visitor_reg_chat_never_takes_over_a_registered_account_of_the_device() {
    let app = spawn_app().await;
    let device = device_id();
    app.visitor(&device).await;
    let alice = visitor_reg(&app, &device, "alice01", "111111")
        .await
        .ok()
        .clone();
    let bob = visitor_reg(&app, &device, "bob01", "222222")
        .await
        .ok()
        .clone();
    assert_ne!(bob["id"], alice["id"]);
    assert_eq!(bob["devicefingeruuid"], Value::Null);
    let a = login(&app, "alice01", "111111").await.ok().clone();
    assert_eq!(a["id"], alice["id"]);
    assert_eq!(a["username"], "alice01");
}

#[tokio::test]
async fn visitor_login_chat_with_the_right_password_works_and_a_wrong_one_fails() {
    let app = spawn_app().await;
    let (id, _, _) = app.register("carol01").await;
    let device = device_id();
    let d = visitor_login(&app, &device, "carol01", PW)
        .await
        .ok()
        .clone();
    assert_eq!(keys(&d), USER_VIEW_KEYS);
    assert_eq!(id_of(&d), id);
    assert_eq!(d["role"], "user");
    // The device is not linked to the account.
    assert_eq!(d["devicefingeruuid"], Value::Null);
    probe(&app, &token_of(&d)).await.ok();
    visitor_login(&app, &device, "carol01", "wrong1")
        .await
        .fails(400, BAD_PASSWORD);
    visitor_login(&app, &device, "nobody01", PW)
        .await
        .fails(400, NO_ACCOUNT);
}

#[tokio::test]
async fn visitor_username_collisions_get_a_numbered_suffix() {
    let app = spawn_app().await;
    app.register("VIS12345678").await;
    let a = app.visitor(&device_with_prefix("12345678")).await;
    assert_eq!(a["username"], "VIS12345678_2");
    let b = app.visitor(&device_with_prefix("12345678")).await;
    assert_eq!(b["username"], "VIS12345678_3");
    // Case-insensitive, like every username comparison.
    app.register("vis87654321").await;
    let c = app.visitor(&device_with_prefix("87654321")).await;
    assert_eq!(c["username"], "VIS87654321_2");
    // Two devices sharing their first 8 characters.
    let d1 = app.visitor(&device_with_prefix("abcdef01")).await;
    let d2 = app.visitor(&device_with_prefix("abcdef01")).await;
    assert_eq!(d1["username"], "VISabcdef01");
    assert_eq!(d2["username"], "VISabcdef01_2");
    assert_ne!(d1["id"], d2["id"]);
}

#[tokio::test]
async fn concurrent_visitors_of_devices_sharing_a_prefix_get_distinct_usernames() {
    let app = spawn_app().await;
    let devices: Vec<String> = (0..6).map(|_| device_with_prefix("cafe0123")).collect();
    let answers = join_all(devices.iter().map(|d| visitor_register(&app, d))).await;
    let mut names: Vec<String> = answers
        .iter()
        .map(|r| r.ok()["username"].as_str().expect("username").to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"VIScafe0123".to_string()));
    assert!(names.iter().all(|n| n.starts_with("VIScafe0123")));
}

#[tokio::test]
async fn a_login_again_on_the_same_device_retires_the_old_token() {
    let app = spawn_app().await;
    app.register("dave01").await;
    let device = device_id();
    let t1 = token_of(visitor_login(&app, &device, "dave01", PW).await.ok());
    let t2 = token_of(visitor_login(&app, &device, "dave01", PW).await.ok());
    probe(&app, &t1).await.fails(400, TOKEN_INVALID);
    assert_eq!(token_state(&app, &t1).await, 2);
    probe(&app, &t2).await.ok();
    assert_eq!(token_state(&app, &t2).await, 1);
}

#[tokio::test]
async fn a_login_from_another_device_revokes_the_old_token() {
    let app = spawn_app().await;
    app.register("dave01").await;
    let (a, b) = (device_id(), device_id());
    let ta = token_of(visitor_login(&app, &a, "dave01", PW).await.ok());
    let tb = token_of(visitor_login(&app, &b, "dave01", PW).await.ok());
    probe(&app, &ta).await.fails(400, TOKEN_INVALID);
    assert_eq!(token_state(&app, &ta).await, 3);
    probe(&app, &tb).await.ok();
    // An unsigned login (no device) revokes a device-bound token too.
    let tc = token_of(login(&app, "dave01", PW).await.ok());
    assert_eq!(token_state(&app, &tb).await, 3);
    assert_eq!(token_state(&app, &tc).await, 1);
}

#[tokio::test]
async fn a_signed_success_on_a_device_retires_its_revoked_leftovers() {
    let app = spawn_app().await;
    app.register("dave01").await;
    let (a, b) = (device_id(), device_id());
    let ta = token_of(visitor_login(&app, &a, "dave01", PW).await.ok());
    visitor_login(&app, &b, "dave01", PW).await.ok();
    assert_eq!(token_state(&app, &ta).await, 3);
    // Device A moves on to a visitor identity: its leftover token goes quiet.
    app.visitor(&a).await;
    assert_eq!(token_state(&app, &ta).await, 2);
    probe(&app, &ta).await.fails(400, TOKEN_INVALID);
    offline(&app, &ta).await.ok();
}

#[tokio::test]
async fn a_banned_visitor_device_answers_account_missing_or_disabled() {
    let app = spawn_app().await;
    let device = device_id();
    let v = app.visitor(&device).await;
    ban(&app, id_of(&v), false).await;
    visitor_register(&app, &device).await.fails(400, NO_ACCOUNT);
    // Registering from the device refuses before changing anything.
    visitor_reg(&app, &device, "escape01", PW)
        .await
        .fails(400, NO_ACCOUNT);
    assert_eq!(count_users(&app, "escape01").await, 0);
    assert_eq!(
        column(&app, "username", id_of(&v)).await,
        v["username"].as_str().map(String::from)
    );
    assert_eq!(
        column(&app, "role", id_of(&v)).await.as_deref(),
        Some("visitor")
    );
}

// ---------------------------------------------------------------------------------------------
// API 十六: public profile

#[tokio::test]
async fn userinfo_answers_the_public_fields_in_order() {
    let app = spawn_app().await;
    let (id, token, d) = app.register("my01").await;
    let userset = r#"{"chatset":{"visitor":{"sendCount":0,"needFollow":false},"user":{"sendCount":0,"needFollow":false}}}"#;
    app.post(
        "/api/chat/userset",
        Some(&token),
        json!({"userset": userset}),
    )
    .await
    .ok();
    set_user_info(&app, &token, "nickname", json!("魂牵一梦"))
        .await
        .ok();
    let uuid = d["uuid"].as_str().expect("uuid");
    // Public: a garbage token is not even read.
    let p = app
        .get(&format!("/api/userinfo/{uuid}"), Some("garbage"))
        .await
        .ok()
        .clone();
    assert_eq!(
        keys(&p),
        ["id", "uuid", "username", "nickname", "avatar", "role", "userset", "userinfo"]
    );
    assert_eq!(p["id"], id);
    assert_eq!(p["uuid"], uuid);
    assert_eq!(p["username"], "my01");
    assert_eq!(p["nickname"], "魂牵一梦");
    assert_eq!(p["avatar"], DEFAULT_AVATAR);
    assert_eq!(p["role"], "user");
    assert_eq!(p["userset"], userset);
    let info = &p["userinfo"];
    assert_eq!(
        keys(info),
        ["id", "gender", "birthday", "bio", "location", "website"]
    );
    assert!(info["id"].is_i64());
    assert_eq!(info["gender"], "unknown");
    assert_eq!(info["location"], Value::Null);
    exec(
        &app,
        "UPDATE `user_info` SET `location` = ? WHERE `user_id` = ?",
        imrs::args!["武汉", id],
    )
    .await;
    let p = app.get(&format!("/api/userinfo/{uuid}"), None).await;
    assert_eq!(p.ok()["userinfo"]["location"], "武汉");
}

#[tokio::test]
async fn userinfo_of_a_visitor_shows_role_visitor() {
    let app = spawn_app().await;
    let v = app.visitor(&device_id()).await;
    let p = app
        .get(
            &format!("/api/userinfo/{}", v["uuid"].as_str().expect("uuid")),
            None,
        )
        .await
        .ok()
        .clone();
    assert_eq!(p["role"], "visitor");
    assert_eq!(p["userset"], Value::Null);
    assert!(p["userinfo"].is_object());
}

#[tokio::test]
async fn userinfo_of_an_unknown_uuid_is_null() {
    let app = spawn_app().await;
    let r = app
        .get(&format!("/api/userinfo/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(
        (r.status, &r.body),
        (200, &json!({"msg": "ok", "data": null}))
    );
}

#[tokio::test]
async fn userinfo_with_a_wrong_length_uuid_fails_validation() {
    let app = spawn_app().await;
    let text = "uuid值 的长度 必须 在 36 和 36 之间";
    app.get("/api/userinfo/abc", None).await.fails(422, text);
    app.get(&format!("/api/userinfo/{}0", uuid::Uuid::new_v4()), None)
        .await
        .fails(422, text);
}

#[tokio::test]
async fn userinfo_without_a_profile_row_with_admin_role_and_null_avatar_is_normalised() {
    let app = spawn_app().await;
    let (id, _, d) = app.register("legacy01").await;
    exec(
        &app,
        "DELETE FROM `user_info` WHERE `user_id` = ?",
        imrs::args![id],
    )
    .await;
    exec(
        &app,
        "UPDATE `user` SET `role` = 'admin', `avatar` = NULL WHERE `id` = ?",
        imrs::args![id],
    )
    .await;
    let p = app
        .get(
            &format!("/api/userinfo/{}", d["uuid"].as_str().expect("uuid")),
            None,
        )
        .await
        .ok()
        .clone();
    assert_eq!(
        p["userinfo"],
        json!({"id": null, "gender": "unknown", "birthday": null, "bio": null, "location": null, "website": null})
    );
    assert_eq!(p["role"], "user");
    assert_eq!(p["avatar"], "");
    // The login view normalises the same way.
    let l = login(&app, "legacy01", PW).await.ok().clone();
    assert_eq!(l["avatar"], "");
    assert_eq!(l["role"], "user");
}

// ---------------------------------------------------------------------------------------------
// API 十八: userset

#[tokio::test]
async fn userset_stores_any_text_verbatim() {
    let app = spawn_app().await;
    let (id, token, d) = app.register("my01").await;
    let (_, other, _) = app.register("my02").await;
    for text in [r#"{"chatset":{"visitor":1,"user":2}}"#, "not json at all"] {
        let r = app
            .post("/api/chat/userset", Some(&token), json!({"userset": text}))
            .await;
        assert_eq!(r.ok(), &json!("ok"));
        assert_eq!(column(&app, "userset", id).await.as_deref(), Some(text));
        let p = app
            .get(
                &format!("/api/userinfo/{}", d["uuid"].as_str().expect("uuid")),
                None,
            )
            .await;
        assert_eq!(p.ok()["userset"], text);
        assert_eq!(
            user_set_info(&app, &other, json!(id)).await.ok()["userset"],
            text
        );
    }
}

#[tokio::test]
async fn userset_validates_its_length() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let post = |v: Value| {
        let (app, token) = (&app, &token);
        async move {
            app.post("/api/chat/userset", Some(token), json!({"userset": v}))
                .await
        }
    };
    post(Value::Null).await.fails(422, "用户设置不能为空");
    post(json!("")).await.fails(422, "用户设置不能为空");
    post(json!("x"))
        .await
        .fails(422, "用户设置 的长度 必须 在 2 和 10000000 之间");
    post(json!("a".repeat(65_536)))
        .await
        .fails(422, "用户设置 的长度 必须 在 2 和 65535 之间");
    // The column holds 65 535 bytes on MySQL: the limit counts bytes.
    post(json!("中".repeat(21_846)))
        .await
        .fails(422, "用户设置 的长度 必须 在 2 和 65535 之间");
    post(json!("a".repeat(65_535))).await.ok();
    assert_eq!(
        column(&app, "userset", id).await.map(|s| s.len()),
        Some(65_535)
    );
}

// ---------------------------------------------------------------------------------------------
// API 三十四: updateUserinfo

#[tokio::test]
async fn update_userinfo_refuses_to_change_the_username() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    set_user_info(&app, &token, "username", json!("other01"))
        .await
        .fails(400, "账号不可修改");
    assert_eq!(column(&app, "username", id).await.as_deref(), Some("my01"));
}

#[tokio::test]
async fn update_userinfo_sets_the_nickname_up_to_30_utf16_units() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let too_long = "昵称长度不能超过30个字符";
    assert_eq!(
        set_user_info(&app, &token, "nickname", json!("a".repeat(30)))
            .await
            .ok(),
        &json!("修改昵称成功")
    );
    set_user_info(&app, &token, "nickname", json!("a".repeat(31)))
        .await
        .fails(400, too_long);
    // Emoji outside the BMP count two UTF-16 units each.
    set_user_info(&app, &token, "nickname", json!("😀".repeat(16)))
        .await
        .fails(400, too_long);
    set_user_info(&app, &token, "nickname", json!("😀".repeat(15)))
        .await
        .ok();
    assert_eq!(column(&app, "nickname", id).await, Some("😀".repeat(15)));
    set_user_info(&app, &token, "nickname", json!("魂牵一梦"))
        .await
        .ok();
    let l = login(&app, "my01", PW).await.ok().clone();
    assert_eq!(l["nickname"], "魂牵一梦");
}

#[tokio::test]
async fn update_userinfo_sets_http_and_relative_avatars() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    for url in [
        "https://example.com/a.png",
        "http://example.com/b.png",
        "/public/uploads/Diy/avatars/20250718/c.png",
    ] {
        assert_eq!(
            set_user_info(&app, &token, "avatar", json!(url)).await.ok(),
            &json!("头像更新成功")
        );
        assert_eq!(column(&app, "avatar", id).await.as_deref(), Some(url));
    }
    let exactly = format!("https://x.example/{}", "a".repeat(1000 - 18));
    assert_eq!(exactly.encode_utf16().count(), 1000);
    set_user_info(&app, &token, "avatar", json!(exactly))
        .await
        .ok();
}

#[tokio::test]
async fn update_userinfo_rejects_non_url_and_overlong_avatars() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    for bad in [
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "ftp://example.com/a.png",
        "avatar.png",
    ] {
        set_user_info(&app, &token, "avatar", json!(bad))
            .await
            .fails(400, "头像地址不合法");
    }
    let long = format!("https://x.example/{}", "a".repeat(1001 - 18));
    set_user_info(&app, &token, "avatar", json!(long))
        .await
        .fails(400, "头像地址过长不能超过1000个字符");
    assert_eq!(
        column(&app, "avatar", id).await.as_deref(),
        Some(DEFAULT_AVATAR)
    );
}

#[tokio::test]
async fn update_userinfo_accepts_invite_confirm_values_equal_to_0_or_1() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let (_, other, _) = app.register("my02").await;
    for (value, stored) in [
        (json!("1"), 1),
        (json!(0), 0),
        (json!(1), 1),
        (json!("0"), 0),
        (json!("1.0"), 1),
        (json!("0.0"), 0),
    ] {
        assert_eq!(
            set_user_info(&app, &token, "invite_confirm", value.clone())
                .await
                .ok(),
            &json!("设置成功"),
            "{value}"
        );
        assert_eq!(
            user_set_info(&app, &other, json!(id)).await.ok()["invite_confirm"],
            json!(stored),
            "{value}"
        );
    }
}

#[tokio::test]
async fn update_userinfo_rejects_other_invite_confirm_values() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    let (_, other, _) = app.register("my02").await;
    for bad in [
        json!(2),
        json!("2"),
        json!("-1"),
        json!("abc"),
        json!("0.5"),
        json!("NaN"),
    ] {
        set_user_info(&app, &token, "invite_confirm", bad)
            .await
            .fails(400, "添加我为好友设置值错误");
    }
    assert_eq!(
        user_set_info(&app, &other, json!(id)).await.ok()["invite_confirm"],
        json!(0)
    );
}

#[tokio::test]
async fn update_userinfo_with_an_unknown_field_changes_nothing_and_answers_empty() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    for field in ["email", "password", "role", "status"] {
        assert_eq!(
            set_user_info(&app, &token, field, json!("x@example.com"))
                .await
                .ok(),
            &json!(""),
            "{field}"
        );
    }
    assert_eq!(column(&app, "email", id).await, None);
    assert_eq!(column(&app, "role", id).await.as_deref(), Some("user"));
    login(&app, "my01", PW).await.ok();
}

#[tokio::test]
async fn update_userinfo_validates_its_parameters() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    app.post(
        "/api/chat/updateUserinfo",
        Some(&token),
        json!({"fieldValue": "x"}),
    )
    .await
    .fails(422, "修改类型不能为空");
    app.post(
        "/api/chat/updateUserinfo",
        Some(&token),
        json!({"fieldname": "f".repeat(31), "fieldValue": "x"}),
    )
    .await
    .fails(422, "修改类型 的长度 必须 在 1 和 30 之间");
    app.post(
        "/api/chat/updateUserinfo",
        Some(&token),
        json!({"fieldname": "nickname", "fieldValue": ""}),
    )
    .await
    .fails(422, "修改结果不能为空");
}

// ---------------------------------------------------------------------------------------------
// API 三十九: getUserSetInfo

#[tokio::test]
async fn get_user_set_info_answers_the_settings_of_a_registered_user() {
    let app = spawn_app().await;
    let (id, _, d) = app.register("host01").await;
    let (_, me, _) = app.register("guest01").await;
    let r = user_set_info(&app, &me, json!(id)).await;
    let data = r.ok();
    assert_eq!(
        keys(data),
        [
            "id",
            "userset",
            "invite_confirm",
            "uuid",
            "isgoodfriend",
            "isgoodfriend_status"
        ]
    );
    assert_eq!(
        data,
        &json!({"id": id, "userset": null, "invite_confirm": 0, "uuid": d["uuid"],
                "isgoodfriend": false, "isgoodfriend_status": true})
    );
    // A numeric string is an int too.
    assert_eq!(
        user_set_info(&app, &me, json!(id.to_string())).await.ok()["id"],
        json!(id)
    );
}

#[tokio::test]
async fn get_user_set_info_reports_friendship_from_the_targets_side() {
    let app = spawn_app().await;
    let (host, _, _) = app.register("host01").await;
    let (me, token, _) = app.register("guest01").await;
    let now = imrs::time::now_db();
    // My own contact row for the host does not count.
    exec(
        &app,
        "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`create_time`,`update_time`) VALUES (?,?,?,?)",
        imrs::args![me, host, now, now],
    )
    .await;
    let d = user_set_info(&app, &token, json!(host)).await.ok().clone();
    assert_eq!(
        (&d["isgoodfriend"], &d["isgoodfriend_status"]),
        (&json!(false), &json!(true))
    );
    // The host has me as a friend.
    exec(
        &app,
        "INSERT INTO `goodfriend` (`user_id`,`friend_id`,`create_time`,`update_time`) VALUES (?,?,?,?)",
        imrs::args![host, me, now, now],
    )
    .await;
    let d = user_set_info(&app, &token, json!(host)).await.ok().clone();
    assert_eq!(
        (&d["isgoodfriend"], &d["isgoodfriend_status"]),
        (&json!(true), &json!(true))
    );
    // … but blacklisted me.
    exec(
        &app,
        "UPDATE `goodfriend` SET `isblack` = 1 WHERE `user_id` = ? AND `friend_id` = ?",
        imrs::args![host, me],
    )
    .await;
    let d = user_set_info(&app, &token, json!(host)).await.ok().clone();
    assert_eq!(
        (&d["isgoodfriend"], &d["isgoodfriend_status"]),
        (&json!(true), &json!(false))
    );
    // … or the row is disabled by the system.
    exec(
        &app,
        "UPDATE `goodfriend` SET `isblack` = 0, `status` = 0 WHERE `user_id` = ? AND `friend_id` = ?",
        imrs::args![host, me],
    )
    .await;
    let d = user_set_info(&app, &token, json!(host)).await.ok().clone();
    assert_eq!(
        (&d["isgoodfriend"], &d["isgoodfriend_status"]),
        (&json!(true), &json!(false))
    );
}

#[tokio::test]
async fn get_user_set_info_refuses_visitor_unknown_and_disabled_targets() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("guest01").await;
    let (banned, _, _) = app.register("banned01").await;
    ban(&app, banned, false).await;
    let v = app.visitor(&device_id()).await;
    let text = "用户不存在或者为游客，无法加为好友";
    for target in [v["id"].clone(), json!(banned), json!(banned + 1000)] {
        user_set_info(&app, &token, target).await.fails(400, text);
    }
}

#[tokio::test]
async fn get_user_set_info_treats_other_stored_roles_as_registered() {
    let app = spawn_app().await;
    let (admin, _, _) = app.register("boss01").await;
    let (_, token, _) = app.register("guest01").await;
    exec(
        &app,
        "UPDATE `user` SET `role` = 'admin' WHERE `id` = ?",
        imrs::args![admin],
    )
    .await;
    // AF §5.1: any stored role other than `visitor` is a registered account.
    assert_eq!(
        user_set_info(&app, &token, json!(admin)).await.ok()["id"],
        json!(admin)
    );
}

#[tokio::test]
async fn get_user_set_info_validates_userid() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("guest01").await;
    app.post("/api/chat/getUserSetInfo", Some(&token), json!({}))
        .await
        .fails(422, "用户id不能为空");
    user_set_info(&app, &token, json!("abc"))
        .await
        .fails(422, "用户id 的值 `abc` 的类型不是 `int`");
    user_set_info(&app, &token, json!(0))
        .await
        .fails(422, "用户id 的数值 必须 在 1 和 10000000000000000 之间");
}

// ---------------------------------------------------------------------------------------------
// setPassword

async fn set_password(app: &TestApp, token: &str, old: &str, new: &str, check: &str) -> Resp {
    app.post(
        "/api/chat/setPassword",
        Some(token),
        json!({"oldpassword": old, "newpassword": new, "checknewpassword": check}),
    )
    .await
}

#[tokio::test]
async fn set_password_with_a_mismatched_confirmation_fails() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    set_password(&app, &token, PW, "abcdef", "abcdeg")
        .await
        .fails(400, "新密码与确认新密码不一致");
    login(&app, "my01", PW).await.ok();
}

#[tokio::test]
async fn set_password_with_a_wrong_old_password_fails() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    set_password(&app, &token, "wrong1", "abcdef", "abcdef")
        .await
        .fails(400, "原始密码错误，无法修改密码");
    login(&app, "my01", PW).await.ok();
}

#[tokio::test]
async fn set_password_changes_the_password_and_keeps_the_token() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("my01").await;
    assert_eq!(
        set_password(&app, &token, PW, "abcdef", "abcdef")
            .await
            .ok(),
        &json!("修改密码成功")
    );
    probe(&app, &token).await.ok();
    let stored = column(&app, "password", id).await.expect("password");
    assert!(stored.starts_with("$argon2id$"));
    login(&app, "my01", PW).await.fails(400, BAD_PASSWORD);
    login(&app, "my01", "abcdef").await.ok();
}

#[tokio::test]
async fn set_password_requires_a_6_to_20_character_new_password() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    let text = "新密码 的长度 必须 在 6 和 20 之间";
    set_password(&app, &token, PW, "12345", "12345")
        .await
        .fails(422, text);
    let long = "1".repeat(21);
    set_password(&app, &token, PW, &long, &long)
        .await
        .fails(422, text);
    app.post(
        "/api/chat/setPassword",
        Some(&token),
        json!({"newpassword": "abcdef", "checknewpassword": "abcdef"}),
    )
    .await
    .fails(422, "原始密码不能为空");
    app.post(
        "/api/chat/setPassword",
        Some(&token),
        json!({"oldpassword": PW, "newpassword": "abcdef"}),
    )
    .await
    .fails(422, "确认新密码不能为空");
    login(&app, "my01", PW).await.ok();
}

#[tokio::test]
async fn set_password_is_limited_after_repeated_wrong_old_passwords() {
    let app = spawn_with(|s| s.login_fail_account_limit = Some(3)).await;
    let (_, token, _) = app.register("my01").await;
    for _ in 0..3 {
        set_password(&app, &token, "wrong1", "abcdef", "abcdef")
            .await
            .fails(400, "原始密码错误，无法修改密码");
    }
    set_password(&app, &token, PW, "abcdef", "abcdef")
        .await
        .fails(400, "原始密码错误，无法修改密码");
    login(&app, "my01", PW).await.ok();
}

// ---------------------------------------------------------------------------------------------
// API 四: searchUser

#[tokio::test]
async fn search_finds_substrings_case_insensitively_in_id_order() {
    let app = spawn_app().await;
    let (_, me, _) = app.register("searcher").await;
    app.register("alice01").await;
    app.register("Alice02").await;
    app.register("bob01").await;
    app.register("xALICEx").await;
    assert_eq!(
        search(&app, &me, "alice").await,
        ["alice01", "Alice02", "xALICEx"]
    );
    assert_eq!(search(&app, &me, "LICE0").await, ["alice01", "Alice02"]);
    assert!(search(&app, &me, "zzz").await.is_empty());
    let r = app
        .post("/api/chat/searchUser", Some(&me), json!({"keyword": "bob"}))
        .await;
    let item = &r.ok()[0];
    assert_eq!(
        keys(item),
        ["id", "username", "avatar", "role", "uuid", "nickname"]
    );
    assert_eq!(item["role"], "user");
    assert_eq!(item["avatar"], DEFAULT_AVATAR);
    assert_eq!(item["nickname"], "");
}

#[tokio::test]
async fn search_excludes_me_visitors_and_disabled_users() {
    let app = spawn_app().await;
    let (_, me, _) = app.register("alice00").await;
    app.register("alice01").await;
    let (banned, _, _) = app.register("alice02").await;
    ban(&app, banned, false).await;
    assert_eq!(search(&app, &me, "alice").await, ["alice01"]);
    app.visitor(&device_id()).await;
    app.register("VISfan01").await;
    assert_eq!(search(&app, &me, "VIS").await, ["VISfan01"]);
    // A stored role other than visitor is a registered account, emitted as user.
    let (admin, _, _) = app.register("alice03").await;
    exec(
        &app,
        "UPDATE `user` SET `role` = 'admin', `avatar` = NULL WHERE `id` = ?",
        imrs::args![admin],
    )
    .await;
    let r = app
        .post(
            "/api/chat/searchUser",
            Some(&me),
            json!({"keyword": "alice03"}),
        )
        .await;
    assert_eq!(r.ok()[0]["role"], "user");
    assert_eq!(r.ok()[0]["avatar"], "");
}

#[tokio::test]
async fn search_treats_percent_and_underscore_literally() {
    let app = spawn_app().await;
    let (_, me, _) = app.register("searcher").await;
    app.register("abxcd").await;
    assert!(search(&app, &me, "%").await.is_empty());
    assert!(search(&app, &me, "_").await.is_empty());
    assert!(search(&app, &me, "b_c").await.is_empty());
    app.register("ab_cd").await;
    app.register("50%off").await;
    app.register("50xoff").await;
    app.register("hey!you").await;
    assert_eq!(search(&app, &me, "b_c").await, ["ab_cd"]);
    assert_eq!(search(&app, &me, "%").await, ["50%off"]);
    assert_eq!(search(&app, &me, "0%o").await, ["50%off"]);
    assert_eq!(search(&app, &me, "!").await, ["hey!you"]);
    assert_eq!(search(&app, &me, "!y").await, ["hey!you"]);
}

#[tokio::test]
async fn search_matches_usernames_not_nicknames() {
    let app = spawn_app().await;
    let (_, me, _) = app.register("searcher").await;
    let (_, t, _) = app.register("plain01").await;
    set_user_info(&app, &t, "nickname", json!("zebra"))
        .await
        .ok();
    assert!(search(&app, &me, "zebra").await.is_empty());
    let r = app
        .post(
            "/api/chat/searchUser",
            Some(&me),
            json!({"keyword": "plain"}),
        )
        .await;
    assert_eq!(r.ok()[0]["nickname"], "zebra");
}

#[tokio::test]
async fn search_results_are_capped() {
    let app = spawn_with(|s| s.search_limit = Some(2)).await;
    let (_, me, _) = app.register("searcher").await;
    for name in ["cap01", "cap02", "cap03"] {
        app.register(name).await;
    }
    assert_eq!(search(&app, &me, "cap").await, ["cap01", "cap02"]);
}

#[tokio::test]
async fn search_validates_the_keyword() {
    let app = spawn_app().await;
    let (_, me, _) = app.register("searcher").await;
    app.post("/api/chat/searchUser", Some(&me), json!({}))
        .await
        .fails(422, "搜索关键词不能为空");
    app.post(
        "/api/chat/searchUser",
        Some(&me),
        json!({"keyword": "k".repeat(51)}),
    )
    .await
    .fails(422, "搜索关键词 的长度 必须 在 1 和 50 之间");
}

// ---------------------------------------------------------------------------------------------
// Ban (AF §3.7)

#[tokio::test]
async fn a_banned_user_is_refused_everywhere_and_can_log_in_after_unban() {
    let app = spawn_app().await;
    let (id, token, d) = app.register("my01").await;
    ban(&app, id, false).await;
    probe(&app, &token).await.fails(400, USER_GONE);
    logout(&app, &token).await.fails(400, USER_GONE);
    login(&app, "my01", PW).await.fails(400, NO_ACCOUNT);
    visitor_login(&app, &device_id(), "my01", PW)
        .await
        .fails(400, NO_ACCOUNT);
    let uuid = d["uuid"].as_str().expect("uuid");
    assert_eq!(
        app.get(&format!("/api/userinfo/{uuid}"), None).await.ok(),
        &Value::Null
    );
    assert_eq!(
        token_state(&app, &token).await,
        imrs::store::tokens::BANNED,
        "the ban revokes the token for good"
    );
    ban(&app, id, true).await;
    let fresh = token_of(login(&app, "my01", PW).await.ok());
    probe(&app, &fresh).await.ok();
    // The token the ban revoked stays dead.
    probe(&app, &token).await.fails(400, TOKEN_INVALID);
}

// ---------------------------------------------------------------------------------------------
// Envelope, CORS, command line

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_404() {
    let app = spawn_app().await;
    let (_, token, d) = app.register("my01").await;
    app.get("/api/nothing", None).await.fails(404, "404 错误");
    app.post("/api/nothing", None, json!({}))
        .await
        .fails(404, "404 错误");
    app.get("/api/regChat", None).await.fails(404, "404 错误");
    app.get("/api/chat/logout", Some(&token))
        .await
        .fails(404, "404 错误");
    let uuid = d["uuid"].as_str().expect("uuid");
    app.post(&format!("/api/userinfo/{uuid}"), None, json!({}))
        .await
        .fails(404, "404 错误");
    // Paths are matched exactly.
    app.post(
        "/api/regchat",
        None,
        json!({"username": "my02", "password": PW}),
    )
    .await
    .fails(404, "404 错误");
}

#[tokio::test]
async fn malformed_json_answers_400_with_a_fail_envelope() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("my01").await;
    for (path, tok) in [("/api/regChat", None), ("/api/chat/userset", Some(&token))] {
        let mut req = app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(r#"{"username": "my02", "#);
        if let Some(t) = tok {
            req = req.header("token", t);
        }
        let (status, body) = raw(req.send().await.expect("request")).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["msg"], "fail");
        assert!(
            body["data"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
    }
    // A JSON body that is not an object is malformed too.
    let (status, body) = raw(app
        .http
        .post(app.url("/api/regChat"))
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .expect("request"))
    .await;
    assert_eq!((status, &body["msg"]), (400, &json!("fail")), "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413() {
    let app = spawn_with(|s| s.body_limit = Some(1024)).await;
    app.post(
        "/api/regChat",
        None,
        json!({"username": "my01", "password": PW, "pad": "x".repeat(2000)}),
    )
    .await
    .fails(413, "request entity too large");
    app.post_form(
        "/api/loginChat",
        None,
        &[("username", "my01"), ("pad", &"x".repeat(2000))],
    )
    .await
    .fails(413, "request entity too large");
    // Under the limit works.
    app.register("my01").await;
}

#[tokio::test]
async fn cors_preflight_allows_the_client_headers() {
    let app = spawn_app().await;
    let r = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/chat/searchUser"))
        .header("Origin", "http://localhost:8080")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "token,x-security-sign,content-type",
        )
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "{}", r.status());
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    assert_eq!(h("access-control-allow-origin"), "*");
    let allowed = h("access-control-allow-headers");
    for header in ["token", "x-security-sign", "content-type"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    let methods = h("access-control-allow-methods");
    assert!(
        methods.contains("post") && methods.contains("get"),
        "{methods}"
    );
    assert!(
        h("access-control-allow-credentials").is_empty(),
        "no cookies"
    );
    // Actual requests carry the origin header too.
    let r = app
        .http
        .post(app.url("/api/loginChat"))
        .header("Origin", "http://localhost:8080")
        .json(&json!({"username": "nobody01", "password": PW}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
}

#[test]
fn help_lists_the_main_environment_variables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imrs"))
        .arg("--help")
        .output()
        .expect("run imrs --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "IMRS_LISTEN",
        "IMRS_DATA_DIR",
        "IMRS_DATABASE_URL",
        "IMRS_JWT_SECRET",
        "IMRS_VISITOR_SALT",
    ] {
        assert!(text.contains(var), "{var} missing from --help:\n{text}");
    }
}
