//! The error every handler returns, rendered as Mender's `{"error", "request_id"}` body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

tokio::task_local! {
    /// The id of the request being served (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The current request id, or a fresh one outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

/// An HTTP error: status, message, and for some answers extra JSON fields.
#[derive(Debug)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The message shown to the client.
    pub message: String,
    /// Extra top-level fields (`metadata` of artifact conflicts).
    pub extra: Option<serde_json::Value>,
    /// Seconds to send as `Retry-After` (429 answers).
    pub retry_after_secs: Option<u64>,
}

/// Result of a handler or service function.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extra: None,
            retry_after_secs: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 422.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    /// 429 with `Retry-After` (whole seconds, at least 1).
    pub fn too_many(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            retry_after_secs: Some(
                (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1),
            ),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
    /// 500; the detail is logged, the client sees only "internal error".
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(what) => Self::conflict(what),
            StoreError::Invalid(what) => Self::bad_request(what),
            StoreError::Rule(what) => Self::unprocessable(what),
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Self {
                    retry_after_secs: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the database is unavailable; try again",
                    )
                }
            }
            StoreError::Backend(e) => Self::internal(e),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match e {
            J::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ),
            J::BytesRejection(b) => Self::new(b.status(), b.body_text()),
            other => Self::bad_request(format!("malformed JSON body: {}", other.body_text())),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(format!("bad query: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(format!("bad path: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = request_id();
        if self.status.is_client_error() {
            tracing::debug!(http.status = self.status.as_u16(), error = %self.message, "request refused");
        }
        let mut body = json!({"error": self.message, "request_id": id});
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
            (self.extra, body.as_object_mut())
        {
            obj.extend(extra);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-men-requestid", v);
        }
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
