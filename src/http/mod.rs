//! HTTP: turns requests into service calls and results into the envelope (AF §2). One file per
//! resource of the spec; no business rule lives here.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod friends;
pub mod groups;
pub mod media;
pub mod messaging;
pub mod ops;
pub mod params;

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::Error;
use crate::state::AppState;
use params::{form_to_map, ParsedBody};

/// `{"msg":"ok","data":…}` with HTTP 200 (AF §2.1).
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(json!({"msg": "ok", "data": data})).into_response()
}

pub type ApiResult = Result<Response, Error>;

pub fn router(state: AppState) -> Router {
    let chat = Router::new()
        .route("/api/chat/logout", post(accounts::logout))
        .route("/api/chat/searchUser", post(accounts::search))
        .route("/api/chat/userset", post(accounts::userset))
        .route("/api/chat/updateUserinfo", post(accounts::update_userinfo))
        .route(
            "/api/chat/getUserSetInfo",
            post(accounts::get_user_set_info),
        )
        .route("/api/chat/setPassword", post(accounts::set_password))
        .route("/api/chat/socket/sendmessage", post(messaging::send))
        .route("/api/chat/chatGetmessageOffLine", post(messaging::offline))
        .route("/api/chat/revokeMessage", post(messaging::revoke))
        .route("/api/chat/history/{chatType}/{id}", get(messaging::history))
        .route("/api/chat/readCursor", post(messaging::read_cursor))
        // friends (AF §7.2, §7.3)
        .route("/api/chat/applyfriend", post(friends::apply))
        .route(
            "/api/chat/listapplyfriend/{page}",
            get(friends::list_applications),
        )
        .route("/api/chat/handleapply/{id}", post(friends::handle))
        .route("/api/chat/autoAddFriendAndAgree", post(friends::auto_add))
        .route(
            "/api/chat/goodfriendlist/{page}",
            get(friends::contact_list),
        )
        .route(
            "/api/chat/getgoodfriendinfo/{id}",
            get(friends::friend_info),
        )
        .route(
            "/api/chat/setblackgoodfriend/{id}",
            post(friends::toggle_black),
        )
        .route(
            "/api/chat/setstargoodfriend/{id}",
            post(friends::toggle_star),
        )
        .route(
            "/api/chat/setmeOrfriendCanSee/{id}",
            post(friends::set_visibility),
        )
        .route("/api/chat/ismygoodfriend/{id}", post(friends::is_my_friend))
        .route("/api/chat/deletegoodfriend/{id}", post(friends::delete))
        .route(
            "/api/chat/isApplyfriend/{uuid}",
            post(friends::applied_to_me),
        )
        // groups (GR §5)
        .route("/api/chat/group/create", post(groups::create))
        .route("/api/chat/grouplist/{page}", get(groups::list))
        .route("/api/chat/groupinfo/{id}", get(groups::info))
        .route("/api/chat/groupUpdateName", post(groups::rename))
        .route("/api/chat/groupremark", post(groups::remark))
        .route("/api/chat/groupnickname", post(groups::nickname))
        .route("/api/chat/groupDeleteOrQuit", post(groups::delete_or_quit))
        .route("/api/chat/groupQrcode/{id}", get(groups::qrcode))
        .route("/api/chat/groupDeleteUser", post(groups::delete_user))
        .route("/api/chat/groupInviteUser", post(groups::invite_user))
        .route("/api/chat/groupAddUserSet", post(groups::add_user_set))
        .route("/api/chat/groupAgreeOrNo", post(groups::agree_or_no))
        // media (MR §5.4–§5.6); uploads are limited by the media settings, not the 2 MB default
        .route(
            "/api/chat/uploadStreamSingleToServerDiy/{diydir}",
            post(media::upload_diy).layer(DefaultBodyLimit::max(media::body_limit(&state))),
        )
        .route(
            "/api/chat/uploadAliyun",
            post(media::upload_aliyun).layer(DefaultBodyLimit::max(media::body_limit(&state))),
        )
        .route("/api/chat/getVideoScreenshot", post(media::screenshot))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    let public = Router::new()
        .route("/api/regChat", post(accounts::register))
        .route("/api/loginChat", post(accounts::login))
        .route("/api/visitorRegister", post(accounts::visitor_register))
        .route("/api/visitorregChat", post(accounts::visitor_reg_chat))
        .route("/api/visitorloginChat", post(accounts::visitor_login_chat))
        .route("/api/userinfo/{uuid}", get(accounts::public_profile))
        .route("/ws", get(crate::gateway::ws_handler))
        .route("/public/uploads/{*path}", get(media::public_file))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));

    let mut app = Router::new().merge(chat).merge(public);
    if let Some(back_office) = admin::router(&state) {
        app = app.merge(back_office);
    }
    let app = app
        .fallback(not_found)
        .method_not_allowed_fallback(not_found);
    ops::layers(app)
        .layer(middleware::from_fn_with_state(state.clone(), parse_body))
        .layer(cors(&state))
        .with_state(state)
}

async fn not_found() -> Error {
    Error::NotFound
}

fn cors(state: &AppState) -> CorsLayer {
    let origins = &state.config.cors_origins;
    let allow = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::HeaderName::from_static("token"),
            header::HeaderName::from_static("x-security-sign"),
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
}

/// Buffer and parse JSON/form bodies once (with the body limit) for `Params` and the token lookup;
/// multipart bodies are left to their handlers.
async fn parse_body(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/") || req.method() == Method::GET {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let parsed = match axum::body::to_bytes(body, st.config.body_limit).await {
        Err(_) => ParsedBody::TooLarge,
        Ok(bytes) => parse_bytes(&ctype, &bytes),
    };
    if matches!(parsed, ParsedBody::TooLarge) {
        return Error::TooLarge.into_response();
    }
    parts.extensions.insert(parsed);
    next.run(Request::from_parts(parts, Body::empty())).await
}

fn parse_bytes(ctype: &str, bytes: &Bytes) -> ParsedBody {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return ParsedBody::Ok(Default::default());
    }
    let looks_json = ctype.contains("json") || (!ctype.contains("form") && trimmed[0] == b'{');
    if looks_json {
        match serde_json::from_slice::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::Object(m)) => ParsedBody::Ok(m),
            _ => ParsedBody::Bad,
        }
    } else {
        match std::str::from_utf8(trimmed) {
            Ok(_) => ParsedBody::Ok(form_to_map(trimmed)),
            Err(_) => ParsedBody::Bad,
        }
    }
}

/// The client address of AF §4.3: the TCP peer, or — only behind a trusted proxy — the right-most
/// untrusted address of `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(client_ip(
            st,
            peer,
            parts.headers.get("x-forwarded-for"),
        )))
    }
}

pub fn client_ip(st: &AppState, peer: IpAddr, xff: Option<&HeaderValue>) -> IpAddr {
    let trusted = |ip: &IpAddr| st.config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let Some(list) = xff.and_then(|v| v.to_str().ok()) else {
        return peer;
    };
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer
}
