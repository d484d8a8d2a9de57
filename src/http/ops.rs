//! Operations endpoints (issue 13): `/healthz` (the process answers), `/readyz` (the store answers
//! and the node is not draining), `/metrics` (Prometheus text, behind a bearer token), and the
//! per-request log line and counters.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::services::managers;
use crate::state::AppState;

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    let draining = *st.delivery.shutdown_signal().borrow();
    let db = crate::store::admin::latest(&st.db).await.is_ok();
    // Cluster mode: the node must also receive the bus (Redis reachable).
    let bus = st.delivery.cluster().is_none_or(|b| b.connected());
    let status = if db && bus && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if status == StatusCode::OK { "ok" } else { "unavailable" },
                      "database": db, "bus": bus, "draining": draining});
    (status, axum::Json(body)).into_response()
}

/// `Authorization: Bearer <IMRS_METRICS_TOKEN>` or a manager's API token.
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let by_token = st
        .config
        .ops
        .metrics_token
        .as_ref()
        .is_some_and(|t| bool::from(t.expose_secret().as_bytes().ct_eq(bearer.as_bytes())));
    let allowed = by_token
        || (!bearer.is_empty() && matches!(managers::by_token(&st.db, bearer).await, Ok(Some(_))));
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need a bearer token\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

/// Count each answered request by its route pattern (never the raw path, which carries ids) and
/// status.
pub async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let t = Instant::now();
    let res = next.run(req).await;
    crate::telemetry::http_request(&route, method.as_str(), res.status().as_u16(), t.elapsed());
    res
}

/// The span of one request: request id, method and route pattern (the query string, where
/// `/ws?token=` carries a token, and the headers are never recorded).
pub fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .unwrap_or("unmatched");
    tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
}

/// The request-id, trace (one line per answered request) and counter layers.
pub fn layers<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::{DefaultOnResponse, TraceLayer};
    let trace = TraceLayer::new_for_http()
        .make_span_with(request_span)
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Millis),
        );
    router
        .layer(axum::middleware::from_fn(observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
