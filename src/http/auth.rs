//! Authentication of `/api/chat/*` (AF §3.2–§3.5): token transport, the ordered auth steps with
//! their texts, the retired-token exception of API 二十二, and the visitor whitelist matched on
//! exact route patterns (D21).

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::Error;
use crate::services::tokens::Claims;
use crate::state::AppState;
use crate::store::tokens::{self as token_store, ACTIVE, RETIRED};
use crate::store::users::{self, UserRow};
use params_helpers::token_from;

/// The authenticated caller: the fresh user row and the token's claims (session role).
#[derive(Clone)]
pub struct Auth {
    pub user: UserRow,
    pub claims: Claims,
    /// True only for a retired token on API 二十二 (answers `ok`, pushes nothing).
    pub retired: bool,
}

impl Auth {
    pub fn id(&self) -> i64 {
        self.user.id
    }
    /// Session role (`user` / `visitor`).
    pub fn role(&self) -> &str {
        &self.claims.role
    }
    pub fn is_visitor_session(&self) -> bool {
        self.claims.role == "visitor"
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<Auth>()
            .cloned()
            .ok_or_else(|| Error::fail("您没有权限访问即时通讯接口"))
    }
}

/// Routes a visitor-role token may call (AF §3.5, plus the EXTENSION routes of MR §7).
pub const VISITOR_WHITELIST: &[(&str, &str)] = &[
    ("POST", "/api/chat/socket/sendmessage"),
    ("POST", "/api/chat/chatGetmessageOffLine"),
    ("GET", "/api/chat/grouplist/{page}"),
    ("GET", "/api/chat/groupinfo/{id}"),
    ("POST", "/api/chat/groupnickname"),
    ("POST", "/api/chat/groupDeleteOrQuit"),
    ("GET", "/api/chat/groupQrcode/{id}"),
    ("POST", "/api/chat/uploadStreamSingleToServerDiy/{diydir}"),
    ("POST", "/api/chat/uploadAliyun"),
    ("POST", "/api/chat/getVideoScreenshot"),
    ("POST", "/api/chat/revokeMessage"),
    ("POST", "/api/chat/updateUserinfo"),
    ("POST", "/api/chat/groupInviteUser"),
    ("POST", "/api/chat/getUserSetInfo"),
    ("POST", "/api/chat/applyfriend"),
    ("POST", "/api/chat/autoAddFriendAndAgree"),
    ("POST", "/api/chat/ismygoodfriend/{id}"),
    ("POST", "/api/chat/userset"),
    ("POST", "/api/chat/deletegoodfriend/{id}"),
    ("GET", "/api/chat/history/{chatType}/{id}"),
    ("POST", "/api/chat/readCursor"),
];

pub const OFFLINE_ROUTE: &str = "/api/chat/chatGetmessageOffLine";

pub fn visitor_allowed(method: &Method, pattern: &str) -> bool {
    VISITOR_WHITELIST
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == pattern)
}

/// A multipart request without a token in the header or query: its handler authenticates with
/// the body's `token` text field (AF §3.2, uploads) through [`UploadAuth`].
#[derive(Clone)]
pub struct DeferredAuth {
    pub method: Method,
    pub pattern: String,
}

/// The caller of an upload route: already authenticated, or to be authenticated by the `token`
/// field of the multipart body.
pub enum UploadAuth {
    Ready,
    Deferred(DeferredAuth),
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for UploadAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        if parts.extensions.get::<Auth>().is_some() {
            return Ok(UploadAuth::Ready);
        }
        parts
            .extensions
            .get::<DeferredAuth>()
            .cloned()
            .map(UploadAuth::Deferred)
            .ok_or_else(|| Error::fail("您没有权限访问即时通讯接口"))
    }
}

impl DeferredAuth {
    /// Run the auth steps with the token found in the body.
    pub async fn check(&self, st: &AppState, token: Option<String>) -> Result<Auth, Error> {
        authenticate(st, token, &self.method, &self.pattern).await
    }
}

/// Middleware for every `/api/chat/*` route.
pub async fn require_token(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let token = token_from(&req);
    let method = req.method().clone();
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/"));
    if token.is_none() && multipart {
        req.extensions_mut()
            .insert(DeferredAuth { method, pattern });
        return next.run(req).await;
    }
    match authenticate(&st, token, &method, &pattern).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate(
    st: &AppState,
    token: Option<String>,
    method: &Method,
    pattern: &str,
) -> Result<Auth, Error> {
    let token = token.ok_or_else(|| Error::fail("您没有权限访问即时通讯接口"))?;
    let (user, claims, state) = resolve(st, &token).await.map_err(|e| match e {
        Resolve::Invalid => Error::fail("Token 令牌不合法！"),
        Resolve::Expired => Error::fail("Token已过期！请重新获取令牌"),
        Resolve::NoUser => Error::fail("当前用户不存在或者已被禁用"),
        Resolve::Store(e) => e.into(),
    })?;
    let retired = match state {
        ACTIVE => false,
        RETIRED if pattern == OFFLINE_ROUTE => true,
        _ => return Err(Error::fail("Token 令牌不合法！")),
    };
    if claims.role == "visitor" && !visitor_allowed(method, pattern) {
        return Err(Error::fail("您没有权限访问，请先注册或登录"));
    }
    Ok(Auth {
        user,
        claims,
        retired,
    })
}

pub enum Resolve {
    Invalid,
    Expired,
    NoUser,
    Store(sqlx::Error),
}

impl From<sqlx::Error> for Resolve {
    fn from(e: sqlx::Error) -> Self {
        Resolve::Store(e)
    }
}

/// Verify a token and load its user and state, in the order of AF §3.4: signature, then the user
/// (missing or disabled wins over the token state), then the state (returned for the caller to judge).
/// Shared with the websocket handshake (AF §3.6).
pub async fn resolve(st: &AppState, token: &str) -> Result<(UserRow, Claims, i64), Resolve> {
    let claims = st.keys.decode(token).ok_or(Resolve::Invalid)?;
    let ttl = st.config.token_ttl_secs;
    if ttl > 0 && chrono::Utc::now().timestamp() - claims.iat > ttl as i64 {
        return Err(Resolve::Expired);
    }
    let user = users::by_id(&st.db, claims.id)
        .await?
        .filter(|u| u.status != 0)
        .ok_or(Resolve::NoUser)?;
    let state = match token_store::get(&st.db, &claims.jti).await? {
        Some(row) if row.user_id == user.id => row.state,
        _ => token_store::REVOKED,
    };
    Ok((user, claims, state))
}

mod params_helpers {
    use super::*;
    use crate::http::params::{parse_query, ParsedBody};

    /// Header `token`, then query `token`, then body field `token`; the first non-empty one.
    pub fn token_from(req: &Request) -> Option<String> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        if let Some(t) = req
            .headers()
            .get("token")
            .and_then(|v| v.to_str().ok())
            .and_then(non_empty)
        {
            return Some(t);
        }
        if let Some(t) = parse_query(req.uri().query().unwrap_or(""))
            .get("token")
            .and_then(|s| non_empty(s))
        {
            return Some(t);
        }
        match req.extensions().get::<ParsedBody>() {
            Some(ParsedBody::Ok(m)) => match m.get("token") {
                Some(Value::String(s)) => non_empty(s),
                _ => None,
            },
            _ => None,
        }
    }
}
