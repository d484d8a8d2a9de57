//! The back office (issue 13): the console pages and `/admin/api` under one configurable prefix.
//! `Manager` is its own session extractor: a console cookie (HttpOnly, SameSite=Strict, Secure
//! behind TLS) or a manager bearer token; a cookie-borne POST must carry the session's CSRF token.
//! Chat tokens are never accepted here. Rules live in `services::admin` and the services it calls.

pub mod api;
pub mod pages;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::Error;
use crate::http::params::{text_of, Params, ParsedBody};
use crate::services::managers;
use crate::state::AppState;

pub use managers::Manager;

pub const COOKIE: &str = "imrs_admin";

/// The console and the admin API, nested under the configured prefix (`None` when turned off).
pub fn router(st: &AppState) -> Option<Router<AppState>> {
    let prefix = st.config.ops.admin_prefix.clone()?;
    let p = |path: &str| format!("{}{path}", prefix.trim_end_matches('/'));
    let mut r = Router::new()
        .route(&p("/api/login"), post(api::login))
        .route(&p("/api/logout"), post(api::logout))
        .route(&p("/api/stats"), get(api::stats))
        .route(&p("/api/users"), get(api::users).post(api::create_user))
        .route(&p("/api/users/{id}"), get(api::user))
        .route(&p("/api/users/{id}/edit"), post(api::edit_user))
        .route(&p("/api/users/{id}/password"), post(api::reset_password))
        .route(&p("/api/users/{id}/enable"), post(api::enable))
        .route(&p("/api/users/{id}/disable"), post(api::disable))
        .route(&p("/api/users/{id}/delete"), post(api::delete_user))
        .route(&p("/api/users/{id}/backlog"), get(api::backlog))
        .route(&p("/api/groups"), get(api::groups))
        .route(&p("/api/groups/{id}"), get(api::group))
        .route(&p("/api/groups/{id}/dissolve"), post(api::dissolve))
        .route(&p("/api/groups/{id}/rename"), post(api::rename_group))
        .route(&p("/api/messages"), get(api::messages))
        .route(&p("/api/messages/{id}/revoke"), post(api::revoke))
        .route(&p("/"), get(pages::dashboard))
        .route(&p("/login"), get(pages::login_form).post(pages::login))
        .route(&p("/logout"), post(pages::logout))
        .route(&p("/users"), get(pages::users))
        .route(&p("/users/create"), post(pages::create_user))
        .route(&p("/users/{id}"), get(pages::user))
        .route(&p("/users/{id}/{action}"), post(pages::user_action))
        .route(&p("/groups"), get(pages::groups))
        .route(&p("/groups/{id}"), get(pages::group))
        .route(&p("/groups/{id}/{action}"), post(pages::group_action))
        .route(&p("/messages"), get(pages::messages))
        .route(&p("/messages/{id}/revoke"), post(pages::revoke));
    if !p("").is_empty() {
        r = r.route(&p(""), get(pages::to_dashboard));
    }
    Some(r)
}

/// The prefix the console runs under.
pub fn prefix(st: &AppState) -> &str {
    st.config.ops.admin_prefix.as_deref().unwrap_or("/admin")
}

/// Why a request was refused before reaching its handler.
pub enum Refused {
    /// No valid session: pages go to the login form, the API answers 401.
    NoSession {
        page: bool,
        login: String,
    },
    /// A cookie-borne POST without the right CSRF token.
    Csrf,
    Internal(Error),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoSession { page: true, login } => Redirect::to(&login).into_response(),
            Refused::NoSession { page: false, .. } => {
                Error::Status(StatusCode::UNAUTHORIZED, "请先登录管理后台".into()).into_response()
            }
            Refused::Csrf => {
                Error::Status(StatusCode::FORBIDDEN, "CSRF 校验失败".into()).into_response()
            }
            Refused::Internal(e) => e.into_response(),
        }
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Refused> {
        let page = !parts.uri.path().contains("/api/");
        let login = format!("{}/login", prefix(st).trim_end_matches('/'));
        let (token, by_cookie) = match bearer(&parts.headers) {
            Some(t) => (t.to_string(), false),
            None => match cookie(&parts.headers, COOKIE) {
                Some(t) => (t.to_string(), true),
                None => return Err(Refused::NoSession { page, login }),
            },
        };
        let m = managers::by_token(&st.db, &token)
            .await
            .map_err(Refused::Internal)?
            .ok_or(Refused::NoSession { page, login })?;
        if by_cookie && parts.method == Method::POST {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .or_else(|| match parts.extensions.get::<ParsedBody>() {
                    Some(ParsedBody::Ok(b)) => b.get("csrf").map(text_of),
                    _ => None,
                })
                .unwrap_or_default();
            let ok: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), m.csrf.as_bytes()).into();
            if !ok {
                return Err(Refused::Csrf);
            }
        }
        Ok(m)
    }
}

/// A text field of the body (or query), trimmed of nothing; `None` when absent.
pub fn field(p: &Params, name: &str) -> Option<String> {
    p.body
        .get(name)
        .map(text_of)
        .or_else(|| p.query.get(name).cloned())
}

/// Whether the client reached us over TLS: only a trusted proxy's `X-Forwarded-Proto` counts.
pub fn secure(st: &AppState, parts_peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    let Some(peer) = parts_peer else { return false };
    st.config.trusted_proxies.iter().any(|n| n.contains(&peer))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The session cookie (or its removal when `token` is empty).
pub fn session_cookie(st: &AppState, token: &str, secure: bool) -> HeaderValue {
    let path = prefix(st);
    let max_age = if token.is_empty() {
        0
    } else {
        st.config.ops.admin_session_secs
    };
    let s = format!(
        "{COOKIE}={token}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("imrs_admin=; Max-Age=0"))
}

/// The TCP peer of a request.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
