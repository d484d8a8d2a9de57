//! The console pages: server-rendered HTML (maud templates compiled into the binary, every value
//! escaped), one small inline script for the dashboard's live refresh, forms that post back with
//! the session's CSRF token and redirect (303) with a one-line result.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use super::api::{self, paging, user_filter};
use super::{cookie, field, prefix, secure, session_cookie, Manager, Peer};
use crate::error::Error;
use crate::http::params::Params;
use crate::http::ClientIp;
use crate::services::{admin, managers};
use crate::state::AppState;
use crate::store::admin as admin_store;
use crate::telemetry::Sample;

const LOGIN_COOKIE: &str = "imrs_admin_login";

const CSS: &str = "
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1d2430;background:#f4f6f9}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header a,header button{color:#fff;text-decoration:none;background:none;border:0;font:inherit;cursor:pointer;padding:.2rem .3rem}
header a:focus,header button:focus,a:focus,button:focus,input:focus,select:focus{outline:3px solid #f5a623;outline-offset:1px}
header .brand{font-weight:700;margin-right:auto}main{padding:1rem;max-width:1100px;margin:0 auto}
h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.7rem}
.card{background:#fff;border-radius:6px;padding:.7rem;box-shadow:0 1px 2px #0002}.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e7ee;vertical-align:top;word-break:break-word}
.wrap{overflow-x:auto}form.inline{display:inline}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #b8c1cf;border-radius:4px;max-width:100%}
button{background:#1f6feb;color:#fff;border-color:#1f6feb;cursor:pointer}button.danger{background:#c62828;border-color:#c62828}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.4rem 0}.row label{display:flex;flex-direction:column;font-size:.85rem}
.flash{padding:.5rem .7rem;border-radius:4px;margin-bottom:.8rem}.ok{background:#e3f6e8}.err{background:#fde8e8}
.chart{background:#fff;border-radius:6px;padding:.5rem;margin:.5rem 0}.chart svg{width:100%;height:140px}
.muted{color:#5b6778;font-size:.85rem}img.av{width:32px;height:32px;border-radius:4px;object-fit:cover}
@media(max-width:600px){th.opt,td.opt{display:none}main{padding:.6rem}}
";

fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// An HTML answer with the console's security headers (no framing, no caching, a CSP that runs
/// only this page's own inline script).
fn html_response(markup: Markup, nonce: &str) -> Response {
    let csp = format!(
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut res = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn url(st: &AppState, path: &str) -> String {
    format!("{}{path}", prefix(st).trim_end_matches('/'))
}

fn page(st: &AppState, m: Option<&Manager>, title: &str, p: &Params, body: Markup) -> Response {
    let n = nonce();
    let flash_ok = field(p, "ok");
    let flash_err = field(p, "err");
    let markup = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · imrs 管理后台" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    span.brand { "imrs 管理后台" }
                    @if let Some(m) = m {
                        nav aria-label="主菜单" {
                            a href=(url(st, "/")) { "仪表盘" }
                            a href=(url(st, "/users")) { "用户" }
                            a href=(url(st, "/groups")) { "群组" }
                            a href=(url(st, "/messages")) { "消息" }
                        }
                        span.muted style="color:#cfd8e3" { (m.name) }
                        form.inline method="post" action=(url(st, "/logout")) {
                            input type="hidden" name="csrf" value=(m.csrf);
                            button #logout type="submit" { "退出" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(t) = flash_ok { p.flash.ok role="status" { (t) } }
                    @if let Some(t) = flash_err { p.flash.err role="alert" { (t) } }
                    (body)
                }
                @if title == "仪表盘" {
                    script nonce=(n) { (PreEscaped(dashboard_js(&url(st, "/api/stats")))) }
                }
            }
        }
    };
    html_response(markup, &n)
}

/// Back to `back` (a console path) with a result line.
fn done(st: &AppState, back: &str, result: Result<&str, Error>) -> Response {
    let base = url(st, "");
    let back = if back.starts_with(&base) && !back.starts_with("//") && !back.contains("://") {
        back.split('?').next().unwrap_or(back).to_string()
    } else {
        url(st, "/")
    };
    let (k, v) = match result {
        Ok(t) => ("ok", t.to_string()),
        Err(e) => ("err", e.status_and_text().1.into_owned()),
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(k, &v)
        .finish();
    Redirect::to(&format!("{back}?{q}")).into_response()
}

fn csrf_input(m: &Manager) -> Markup {
    html! { input type="hidden" name="csrf" value=(m.csrf); }
}

fn avatar(a: &str) -> Markup {
    let safe = a.starts_with("https://")
        || a.starts_with("http://")
        || (a.starts_with('/') && !a.starts_with("//"));
    html! { @if safe { img.av src=(a) alt=""; } }
}

fn pager(st: &AppState, path: &str, p: &Params, page: i64, limit: i64, total: i64) -> Markup {
    let pages = ((total + limit - 1) / limit).max(1);
    let link = |n: i64| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for k in ["q", "role", "status"] {
            if let Some(v) = field(p, k) {
                s.append_pair(k, &v);
            }
        }
        s.append_pair("page", &n.to_string());
        format!("{}?{}", url(st, path), s.finish())
    };
    html! {
        nav.row aria-label="分页" {
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "上一页" } }
            span.muted { "第 " (page) " / " (pages) " 页，共 " (total) " 条" }
            @if page < pages { a href=(link(page + 1)) rel="next" { "下一页" } }
        }
    }
}

// ----- login -----

pub async fn to_dashboard(State(st): State<AppState>) -> Response {
    Redirect::to(&url(&st, "/")).into_response()
}

pub async fn login_form(
    State(st): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let token = nonce();
    let body = html! {
        form method="post" action=(url(&st, "/login")) {
            input type="hidden" name="csrf" value=(token);
            div.row { label { "管理员" input #name name="name" autocomplete="username" required autofocus; } }
            div.row { label { "密码" input #password name="password" type="password" autocomplete="current-password" required; } }
            div.row { button #login type="submit" { "登录" } }
        }
    };
    let mut res = page(&st, None, "登录", &p, body);
    let c = format!(
        "{LOGIN_COOKIE}={token}; Path={}; Max-Age=1800; HttpOnly; SameSite=Strict{}",
        prefix(&st),
        if secure(&st, peer, &headers) {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The login form posts a token that must match its own cookie (login CSRF).
pub async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Peer(peer): Peer,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let sent = field(&p, "csrf").unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if sent.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            expected.as_bytes(),
        ))
    {
        return (StatusCode::FORBIDDEN, "CSRF 校验失败").into_response();
    }
    let name = field(&p, "name").unwrap_or_default();
    let password = field(&p, "password").unwrap_or_default();
    match managers::login(&st, &name, &password, ip).await {
        Ok((token, _)) => {
            let mut res = Redirect::to(&url(&st, "/")).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&st, &token, secure(&st, peer, &headers)),
            );
            res
        }
        Err(e) => done(&st, &url(&st, "/login"), Err(e)),
    }
}

pub async fn logout(
    State(st): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    m: Manager,
) -> Response {
    let _ = managers::logout(&st.db, &m).await;
    let mut res = Redirect::to(&url(&st, "/login")).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(&st, "", secure(&st, peer, &headers)),
    );
    res
}

// ----- dashboard -----

fn chart(id: &str, label: &str, points: &[(i64, f64)]) -> Markup {
    html! {
        figure.chart {
            figcaption { (label) " " span.muted id=(format!("{id}-now")) { (points.last().map(|p| p.1).unwrap_or(0.0)) } }
            svg viewBox="0 0 600 140" preserveAspectRatio="none" role="img" aria-label=(label) {
                line x1="0" y1="135" x2="600" y2="135" stroke="#b8c1cf" stroke-width="1" {}
                polyline id=(id) fill="none" stroke="#1f6feb" stroke-width="2" points=(polyline(points));
            }
        }
    }
}

/// SVG points for values over time (x: the samples in order, y: scaled to the largest value).
fn polyline(points: &[(i64, f64)]) -> String {
    let max = points.iter().map(|p| p.1).fold(1.0_f64, f64::max);
    let n = points.len().max(2) - 1;
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * 600.0 / n as f64,
                135.0 - p.1 / max * 130.0
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn dashboard_js(stats_url: &str) -> String {
    let u = serde_json::to_string(stats_url).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"(function(){{
var U={u};
function pts(v){{var m=Math.max(1,Math.max.apply(null,v)),n=Math.max(1,v.length-1);
return v.map(function(y,i){{return (i*600/n).toFixed(1)+','+(135-y/m*130).toFixed(1)}}).join(' ')}}
function tick(){{fetch(U,{{credentials:'same-origin'}}).then(function(r){{return r.json()}}).then(function(j){{
if(j.msg!=='ok')return;var d=j.data,c=d.counts;
for(var k in c){{var e=document.getElementById('c-'+k);if(e)e.textContent=c[k]}}
var s=document.getElementById('c-open_sockets');if(s)s.textContent=d.open_sockets;
var h=d.history;while(h.length<60)h.unshift({{messages:0,sockets:0}});
var m=h.map(function(x){{return x.messages}}),o=h.map(function(x){{return x.sockets}});
document.getElementById('chart-messages').setAttribute('points',pts(m));
document.getElementById('chart-sockets').setAttribute('points',pts(o));
document.getElementById('chart-messages-now').textContent=m[m.length-1];
document.getElementById('chart-sockets-now').textContent=o[o.length-1];
}}).catch(function(){{}})}}
setInterval(tick,10000);
}})();"#
    )
}

pub async fn dashboard(
    State(st): State<AppState>,
    m: Manager,
    p: Params,
) -> Result<Response, Error> {
    let s = api::stats_json(&st).await?;
    let c = &s["counts"];
    let mut history: Vec<Sample> = crate::telemetry::history();
    // A young process has few minutes: the charts still span the last hour.
    while history.len() < 60 {
        let at = history.first().map(|h| h.at - 60_000).unwrap_or(0);
        history.insert(
            0,
            Sample {
                at,
                messages: 0,
                sockets: 0,
            },
        );
    }
    let msgs: Vec<(i64, f64)> = history.iter().map(|h| (h.at, h.messages as f64)).collect();
    let socks: Vec<(i64, f64)> = history.iter().map(|h| (h.at, h.sockets as f64)).collect();
    let card = |id: &str, label: &str, v: &Value| {
        html! {
            div.card { span.muted { (label) } b id=(format!("c-{id}")) { (v) } }
        }
    };
    let body = html! {
        section.cards aria-label="概况" {
            (card("users", "注册用户", &c["users"]))
            (card("visitors", "游客", &c["visitors"]))
            (card("disabled", "已禁用", &c["disabled"]))
            (card("open_sockets", "在线连接", &s["open_sockets"]))
            (card("groups", "群组", &c["groups"]))
            (card("messages_today", "今日消息", &c["messages_today"]))
            (card("messages_last_hour", "最近一小时消息", &c["messages_last_hour"]))
        }
        h2 { "最近 6 小时（每分钟，保存在本进程内存中）" }
        (chart("chart-messages", "每分钟消息数", &msgs))
        (chart("chart-sockets", "在线连接数", &socks))
        p.muted { "每 10 秒自动刷新。" }
    };
    Ok(page(&st, Some(&m), "仪表盘", &p, body))
}

// ----- users -----

pub async fn users(State(st): State<AppState>, m: Manager, p: Params) -> Result<Response, Error> {
    let (pg, limit) = paging(&p);
    let f = user_filter(&p);
    let (rows, total) = admin_store::users_page(&st.db, &f, limit, (pg - 1) * limit).await?;
    let sel = |v: Option<String>, want: &str| v.as_deref() == Some(want);
    let body = html! {
        form.row method="get" action=(url(&st, "/users")) role="search" {
            label { "搜索（用户名、昵称、id、uuid）" input #q name="q" value=(f.q.clone().unwrap_or_default()); }
            label { "角色" select name="role" {
                option value="" { "全部" }
                option value="user" selected[sel(field(&p, "role"), "user")] { "用户" }
                option value="visitor" selected[sel(field(&p, "role"), "visitor")] { "游客" }
            } }
            label { "状态" select name="status" {
                option value="" { "全部" }
                option value="1" selected[sel(field(&p, "status"), "1")] { "启用" }
                option value="0" selected[sel(field(&p, "status"), "0")] { "禁用" }
            } }
            button #search type="submit" { "查找" }
        }
        div.wrap { table {
            thead { tr { th { "id" } th.opt { "头像" } th { "用户名" } th { "昵称" } th.opt { "角色" } th { "状态" } th.opt { "连接" } } }
            tbody {
                @for u in &rows {
                    tr {
                        td { (u.id) }
                        td.opt { (avatar(u.avatar_str())) }
                        td { a href=(url(&st, &format!("/users/{}", u.id))) { (u.username) } }
                        td { (u.nickname) }
                        td.opt { (u.role) }
                        td { @if u.status == 1 { "启用" } @else { "禁用" } }
                        td.opt { (st.delivery.open_sockets(u.id)) }
                    }
                }
            }
        } }
        (pager(&st, "/users", &p, pg, limit, total))
        h2 { "创建用户" }
        form.row method="post" action=(url(&st, "/users/create")) {
            (csrf_input(&m))
            label { "用户名" input #new-username name="username" required maxlength="50"; }
            label { "密码" input #new-password name="password" type="password" required autocomplete="new-password"; }
            label { "头像（可选）" input name="avatar" type="url"; }
            button #create type="submit" { "创建" }
        }
    };
    Ok(page(&st, Some(&m), "用户", &p, body))
}

pub async fn create_user(State(st): State<AppState>, _: Manager, p: Params) -> Response {
    let r = admin::create_user(
        &st,
        &field(&p, "username").unwrap_or_default(),
        &field(&p, "password").unwrap_or_default(),
        field(&p, "avatar").as_deref(),
    )
    .await;
    match r {
        Ok(id) => done(&st, &url(&st, &format!("/users/{id}")), Ok("创建成功")),
        Err(e) => done(&st, &url(&st, "/users"), Err(e)),
    }
}

pub async fn user(
    State(st): State<AppState>,
    m: Manager,
    Path(id): Path<i64>,
    p: Params,
) -> Result<Response, Error> {
    let v = match api::user_detail(&st, id).await {
        Ok(v) => v,
        Err(e) => return Ok(done(&st, &url(&st, "/users"), Err(e))),
    };
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let backlog = api::backlog_json(&st, id).await?;
    let msgs = admin_store::messages_of_user(&st.db, id, 20).await?;
    let act = |a: &str| url(&st, &format!("/users/{id}/{a}"));
    let enabled = v["status"].as_i64() == Some(1);
    let body = html! {
        div.wrap { table { tbody {
            tr { th { "id" } td { (id) } }
            tr { th { "uuid" } td { (s("uuid")) } }
            tr { th { "用户名" } td #username { (s("username")) } }
            tr { th { "昵称" } td #nickname { (s("nickname")) } }
            tr { th { "头像" } td { (avatar(&s("avatar"))) " " span.muted { (s("avatar")) } } }
            tr { th { "角色" } td { (s("role")) } }
            tr { th { "状态" } td #status { @if enabled { "启用" } @else { "禁用" } } }
            tr { th { "在线连接" } td #sockets { (v["sockets"]) } }
            tr { th { "设备" } td { (s("devicefingeruuid")) " " (s("devicemodel")) " " (s("deviceos")) } }
            tr { th { "注册 / 最近登录" } td { (s("create_time")) " / " (s("last_login")) " " (s("last_login_ip")) } }
        } } }
        h2 { "操作" }
        div.row {
            @if enabled {
                form.inline method="post" action=(act("disable")) { (csrf_input(&m)) button #disable.danger type="submit" { "禁用" } }
            } @else {
                form.inline method="post" action=(act("enable")) { (csrf_input(&m)) button #enable type="submit" { "启用" } }
            }
        }
        form.row method="post" action=(act("edit")) {
            (csrf_input(&m))
            label { "用户名" input name="username" value=(s("username")) maxlength="50"; }
            label { "昵称" input #edit-nickname name="nickname" value=(s("nickname")); }
            label { "头像" input name="avatar" value=(s("avatar")); }
            button #save type="submit" { "保存" }
        }
        form.row method="post" action=(act("password")) {
            (csrf_input(&m))
            label { "新密码" input #reset-password name="password" type="password" required autocomplete="new-password"; }
            button #reset type="submit" { "重置密码" }
        }
        form.row method="post" action=(act("delete")) {
            (csrf_input(&m))
            label { span { input #confirm-delete type="checkbox" name="confirm" value="yes" required; " 确认删除（解散其拥有的群）" } }
            button #delete.danger type="submit" { "删除用户" }
        }
        h2 { "好友" }
        div.wrap { table { tbody {
            @for f in v["friends"].as_array().into_iter().flatten() {
                tr { td { a href=(url(&st, &format!("/users/{}", f["id"]))) { (f["username"].as_str().unwrap_or("")) } } td { (f["nickname"].as_str().unwrap_or("")) } td { @if f["isblack"] == 1 { "黑名单" } } }
            }
        } } }
        h2 { "群组" }
        div.wrap { table { tbody {
            @for g in v["groups"].as_array().into_iter().flatten() {
                tr { td { a href=(url(&st, &format!("/groups/{}", g["id"]))) { (g["name"].as_str().unwrap_or("")) } } td { @if g["owner"] == true { "群主" } @else if g["status"] == 1 { "成员" } @else { "待审核" } } }
            }
        } } }
        h2 { "最近消息" }
        (message_table(&st, &m, &msgs, &url(&st, &format!("/users/{id}"))))
        h2 { "离线待投递（" (backlog.as_array().map(Vec::len).unwrap_or(0)) "）" }
        div.wrap { table { tbody {
            @for e in backlog.as_array().into_iter().flatten() {
                tr { td { (e["entry"]) } td { (e["chatType"].as_str().unwrap_or("")) } td { (e["from_id"]) } td { (preview(&e["body"])) } }
            }
        } } }
    };
    Ok(page(&st, Some(&m), "用户详情", &p, body))
}

pub async fn user_action(
    State(st): State<AppState>,
    _: Manager,
    Path((id, action)): Path<(i64, String)>,
    p: Params,
) -> Response {
    let back = url(&st, &format!("/users/{id}"));
    let r = match action.as_str() {
        "enable" => admin::set_enabled(&st, id, true).await.map(|_| "已启用"),
        "disable" => admin::set_enabled(&st, id, false).await.map(|_| "已禁用"),
        "edit" => admin::edit_user(&st, id, api::edit_of(&p))
            .await
            .map(|_| "修改成功"),
        "password" => admin::reset_password(&st, id, &field(&p, "password").unwrap_or_default())
            .await
            .map(|_| "修改成功"),
        "delete" => {
            if field(&p, "confirm").as_deref() != Some("yes") {
                Err(Error::fail("请勾选确认删除"))
            } else {
                return done(
                    &st,
                    &url(&st, "/users"),
                    admin::delete_user(&st, id).await.map(|_| "删除成功"),
                );
            }
        }
        _ => Err(Error::NotFound),
    };
    done(&st, &back, r)
}

// ----- groups -----

pub async fn groups(State(st): State<AppState>, m: Manager, p: Params) -> Result<Response, Error> {
    let (pg, limit) = paging(&p);
    let q = field(&p, "q");
    let (rows, total) =
        admin_store::groups_page(&st.db, q.as_deref(), limit, (pg - 1) * limit).await?;
    let body = html! {
        form.row method="get" action=(url(&st, "/groups")) role="search" {
            label { "搜索（群名、id）" input #q name="q" value=(q.clone().unwrap_or_default()); }
            button #search type="submit" { "查找" }
        }
        div.wrap { table {
            thead { tr { th { "id" } th { "群名" } th { "群主" } th { "成员" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.group.id) }
                        td { a href=(url(&st, &format!("/groups/{}", r.group.id))) { (r.group.name) } }
                        td { a href=(url(&st, &format!("/users/{}", r.group.user_id))) { (r.group.user_id) } }
                        td { (r.members) }
                    }
                }
            }
        } }
        (pager(&st, "/groups", &p, pg, limit, total))
    };
    Ok(page(&st, Some(&m), "群组", &p, body))
}

pub async fn group(
    State(st): State<AppState>,
    m: Manager,
    Path(id): Path<i64>,
    p: Params,
) -> Result<Response, Error> {
    let g = match api::group_detail(&st, id).await {
        Ok(g) => g,
        Err(e) => return Ok(done(&st, &url(&st, "/groups"), Err(e))),
    };
    let msgs =
        admin_store::messages_of_conv(&st.db, &crate::store::timeline::group_key(id), 20).await?;
    let act = |a: &str| url(&st, &format!("/groups/{id}/{a}"));
    let body = html! {
        p { "群名：" strong #group-name { (g["name"].as_str().unwrap_or("")) } "　群主："
            a href=(url(&st, &format!("/users/{}", g["owner"]))) { (g["owner"]) } }
        form.row method="post" action=(act("rename")) {
            (csrf_input(&m))
            label { "新群名" input #group-rename name="name" value=(g["name"].as_str().unwrap_or("")) maxlength="50" required; }
            button #rename type="submit" { "修改群名" }
        }
        form.row method="post" action=(act("dissolve")) {
            (csrf_input(&m))
            label { span { input #confirm-dissolve type="checkbox" name="confirm" value="yes" required; " 确认解散" } }
            button #dissolve.danger type="submit" { "解散群" }
        }
        h2 { "成员" }
        div.wrap { table {
            thead { tr { th { "用户" } th { "群昵称" } th { "状态" } } }
            tbody {
                @for mb in g["members"].as_array().into_iter().flatten() {
                    tr {
                        td { a href=(url(&st, &format!("/users/{}", mb["user_id"]))) { (mb["username"].as_str().unwrap_or("?")) } }
                        td { (mb["nickname"].as_str().unwrap_or("")) }
                        td { @if mb["status"] == 1 { "成员" } @else { "待审核" } }
                    }
                }
            }
        } }
        h2 { "最近消息" }
        (message_table(&st, &m, &msgs, &url(&st, &format!("/groups/{id}"))))
    };
    Ok(page(&st, Some(&m), "群详情", &p, body))
}

pub async fn group_action(
    State(st): State<AppState>,
    _: Manager,
    Path((id, action)): Path<(i64, String)>,
    p: Params,
) -> Response {
    match action.as_str() {
        "rename" => {
            let r = admin::rename_group(&st, id, &field(&p, "name").unwrap_or_default()).await;
            done(
                &st,
                &url(&st, &format!("/groups/{id}")),
                r.map(|_| "修改成功"),
            )
        }
        "dissolve" if field(&p, "confirm").as_deref() == Some("yes") => {
            let r = admin::dissolve_group(&st, id).await;
            done(&st, &url(&st, "/groups"), r.map(|_| "已解散"))
        }
        "dissolve" => done(
            &st,
            &url(&st, &format!("/groups/{id}")),
            Err(Error::fail("请勾选确认解散")),
        ),
        _ => Error::NotFound.into_response(),
    }
}

// ----- messages -----

fn preview(body: &Value) -> String {
    let d = &body["data"];
    let text = match d {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("data")
            .map(crate::http::params::text_of)
            .unwrap_or_default(),
        other => other.to_string(),
    };
    text.chars().take(200).collect()
}

fn message_table(
    st: &AppState,
    m: &Manager,
    rows: &[admin_store::MessageListRow],
    back: &str,
) -> Markup {
    html! {
        div.wrap { table {
            thead { tr { th { "时间" } th { "类型" } th { "发送者" } th { "接收者/群" } th { "内容" } th { "" } } }
            tbody {
                @for r in rows {
                    @let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                    tr {
                        td.muted { (crate::time::local_slash(r.create_time, &st.config.display_tz)) }
                        td { (r.chat_type) " " (body["type"].as_str().unwrap_or("")) }
                        td { a href=(url(st, &format!("/users/{}", r.from_id))) { (body["from_name"].as_str().unwrap_or("")) } }
                        td { (r.to_id) " " (body["to_name"].as_str().unwrap_or("")) }
                        td.msg { (preview(&body)) }
                        td {
                            @if r.revoked != 0 { span.muted { "已撤回" } }
                            @else {
                                form.inline method="post" action=(url(st, &format!("/messages/{}/revoke", r.msg_id))) {
                                    (csrf_input(m))
                                    input type="hidden" name="back" value=(back);
                                    button.danger.revoke type="submit" data-id=(r.msg_id) { "撤回" }
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

pub async fn messages(
    State(st): State<AppState>,
    m: Manager,
    p: Params,
) -> Result<Response, Error> {
    let rows = api::message_list(&st, &p).await?;
    let v = |k: &str| field(&p, k).unwrap_or_default();
    let body = html! {
        form.row method="get" action=(url(&st, "/messages")) role="search" {
            label { "用户 id" input name="user" inputmode="numeric" value=(v("user")); }
            label { "群 id" input name="group" inputmode="numeric" value=(v("group")); }
            label { "单聊 a" input name="a" inputmode="numeric" value=(v("a")); }
            label { "单聊 b" input name="b" inputmode="numeric" value=(v("b")); }
            button type="submit" { "查看" }
        }
        (message_table(&st, &m, &rows, &url(&st, "/messages")))
    };
    Ok(page(&st, Some(&m), "消息", &p, body))
}

pub async fn revoke(
    State(st): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    p: Params,
) -> Response {
    let back = field(&p, "back").unwrap_or_else(|| url(&st, "/messages"));
    let r = admin::revoke_message(&st, &m.name, &id)
        .await
        .map(|_| "已撤回");
    done(&st, &back, r)
}
