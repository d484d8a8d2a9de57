//! The one error type of the API and its mapping to the envelope of spec AF §2:
//! business failures 400, validation 422, unknown routes 404, oversized bodies 413,
//! unexpected errors 500 with a generic text (never internal details).

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A business failure: HTTP 400 with the user-visible text.
    #[error("{0}")]
    Fail(Cow<'static, str>),
    /// A validation failure (AF §2.3): HTTP 422 with the first failing parameter's message.
    #[error("{0}")]
    Invalid(String),
    /// Unknown route (AF §2.6).
    #[error("404 错误")]
    NotFound,
    /// Request body over the configured limit (MR §1 item 5).
    #[error("request entity too large")]
    TooLarge,
    /// Any other status with a text of its own (e.g. upload limits).
    #[error("{1}")]
    Status(StatusCode, String),
    /// Unexpected: logged with context, answered with a generic text.
    #[error("internal: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn fail(text: impl Into<Cow<'static, str>>) -> Self {
        Error::Fail(text.into())
    }

    pub fn status_and_text(&self) -> (StatusCode, Cow<'_, str>) {
        match self {
            Error::Fail(t) => (StatusCode::BAD_REQUEST, Cow::Borrowed(t.as_ref())),
            Error::Invalid(t) => (StatusCode::UNPROCESSABLE_ENTITY, Cow::Borrowed(t.as_str())),
            Error::NotFound => (StatusCode::NOT_FOUND, Cow::Borrowed("404 错误")),
            Error::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Cow::Borrowed("request entity too large"),
            ),
            Error::Status(s, t) => (*s, Cow::Borrowed(t.as_str())),
            Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Cow::Borrowed("Internal Server Error"),
            ),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        crate::telemetry::store_error();
        Error::Internal(anyhow::Error::new(e))
    }
}

/// `{"msg":"fail","data":<text>}` with the given status.
pub fn fail_response(status: StatusCode, text: &str) -> Response {
    let body = serde_json::json!({"msg": "fail", "data": text});
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        let (status, text) = self.status_and_text();
        fail_response(status, &text)
    }
}
