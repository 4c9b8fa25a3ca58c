//! The HTTP layer: one module per resource, thin handlers over the store and services, and the
//! middleware every request passes (request id, metrics, tracing, panic catching).

pub mod artifacts;
pub mod deployments;
pub mod devauth;
pub mod device;
pub mod events;
pub mod filters;
pub mod inventory;
pub mod ops;
pub mod rollouts;
pub mod ui;
pub mod useradm;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{AUD_DEVICE, AUD_MANAGEMENT, Keys};
use crate::blobs::Blobs;
use crate::error::{ApiError, ApiResult, REQUEST_ID};
use crate::store::{Store, TokenKind};

/// Server settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL devices and tools reach the server at (`https://host:port`), used in download
    /// links; without it, links use the `Host` the request came to.
    pub public_url: Option<String>,
    /// Lifetime of device tokens.
    pub device_token_secs: i64,
    /// Lifetime of login tokens.
    pub session_token_secs: i64,
    /// Lifetime of download links.
    pub download_link_secs: i64,
    /// Largest accepted artifact.
    pub max_artifact_bytes: u64,
    /// Largest JSON body.
    pub max_json_bytes: usize,
    /// After a full rootfs artifact is uploaded, deltas to it are made from this many of the
    /// releases most devices of its type run (0: none).
    pub delta_sources: usize,
    /// Tests only: the rollout clock may be moved forward (`PUT /api/management/v1/test/clock`).
    pub movable_clock: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_url: None,
            device_token_secs: 7 * 24 * 3600,
            session_token_secs: 7 * 24 * 3600,
            download_link_secs: 24 * 3600,
            max_artifact_bytes: 10 << 30,
            max_json_bytes: 4 << 20,
            delta_sources: 3,
            movable_clock: false,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Metadata.
    pub store: Arc<dyn Store>,
    /// Artifact files.
    pub blobs: Blobs,
    /// Token and URL keys.
    pub keys: Arc<Keys>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Hot-path caches (device tokens, idle devices).
    pub caches: Arc<crate::cache::Caches>,
    /// Prometheus exposition.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Live events for the management side.
    pub events: crate::events::Events,
    /// Rate limits (logins, new device identities), per process.
    pub throttles: Arc<crate::throttle::Throttles>,
    /// Event-stream tickets already used, per process.
    pub tickets: Arc<events::Tickets>,
    /// The rollout clock.
    pub clock: Arc<crate::time::Clock>,
}

impl AppState {
    /// What the services work with.
    pub fn ctx(&self) -> crate::service::Ctx<'_> {
        crate::service::Ctx {
            store: &*self.store,
            caches: &self.caches,
            events: &self.events,
            clock: &self.clock,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "aloft-server", description = "Mender-compatible device and management APIs of aloft"),
    modifiers(&Security),
    components(schemas(aloft_api::management::ErrorBody))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let comps = openapi.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        comps.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The whole application: routes, `OpenAPI` document and middleware.
pub fn app(state: AppState) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(device::routes())
        .merge(useradm::routes())
        .merge(devauth::routes())
        .merge(inventory::routes())
        .merge(filters::routes())
        .merge(artifacts::routes(&state.settings))
        .merge(deployments::routes())
        .merge(rollouts::routes())
        .merge(ops::routes())
        .merge(events::routes())
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_json_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.settings.max_json_bytes,
            observe,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .with_state(state)
}

/// Request id, access log and metrics around every request. Small bodies are read whole before
/// the handler runs, so that a request refused early (401 before its body was looked at) still
/// leaves the connection clean for the client's next request.
async fn observe(
    axum::extract::State(json_limit): axum::extract::State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let id = req
        .headers()
        .get("x-men-requestid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    // Everything but multipart uploads (streamed to storage) is small: read it whole first.
    let streamed = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    // HTTP/2 carries the host in the URI (`:authority`), HTTP/1.1 in `Host`: make both look
    // alike for the handlers that build absolute links.
    let mut req = req;
    if !req.headers().contains_key(axum::http::header::HOST)
        && let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(axum::http::header::HOST, v);
    }
    let too_large = || {
        REQUEST_ID.scope(id.clone(), async {
            let mut r = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {json_limit} bytes, or cut"),
            )
            .into_response();
            // The body was not read: the connection cannot carry another request.
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            r
        })
    };
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if !streamed && announced.is_some_and(|n| n > json_limit as u64) {
        // Refused from its announced length, before a byte of it is read.
        return too_large().await;
    }
    let req = if streamed {
        req
    } else {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, json_limit).await {
            Ok(bytes) => Request::from_parts(parts, axum::body::Body::from(bytes)),
            Err(_) => return too_large().await,
        }
    };
    let start = Instant::now();
    let span = tracing::info_span!("request", request.id = %id, http.method = %method, http.route = %route);
    let mut resp = REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(next.run(req), span.clone()),
        )
        .await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-men-requestid", v);
    }
    // Every label takes values from a fixed set: a client cannot grow the exposition.
    let labels = [
        ("method", method_label(&method).to_owned()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("aloft_http_requests_total", &labels).increment(1);
    metrics::histogram!("aloft_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    let _g = span.enter();
    if status >= 500 {
        tracing::error!(
            http.status = status,
            duration_ms = elapsed.as_millis(),
            "request failed"
        );
    } else {
        tracing::debug!(
            http.status = status,
            duration_ms = elapsed.as_millis(),
            "request served"
        );
    }
    resp
}

/// The `method` label: the standard methods by name, anything a client invented as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A JSON body, with Mender-style errors (400 malformed, 415 wrong type, 413 too large).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// The bearer token of the `Authorization` header. Only that header: a token in a cookie would
/// be sent by the browser on cross-site requests too (CSRF).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let t = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then(|| t.to_owned())
}

/// An authenticated device (device API).
pub struct DeviceAuth {
    /// Device id.
    pub device_id: String,
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token =
            bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing device token"))?;
        let now = crate::time::now_us();
        if let Some(device_id) = state.caches.device_token(&token, now) {
            return Ok(Self { device_id });
        }
        let epoch = state.caches.revocation_epoch();
        let claims = state
            .keys
            .verify(&token, AUD_DEVICE)
            .map_err(ApiError::unauthorized)?;
        match state.store.use_token(&claims.jti, now).await? {
            Some(t) if t.kind == TokenKind::Device && t.subject == claims.sub => {}
            _ => return Err(ApiError::unauthorized("token revoked")),
        }
        state.caches.remember_device_token(
            &token,
            &claims.sub,
            claims.exp.saturating_mul(1_000_000),
            epoch,
        );
        Ok(Self {
            device_id: claims.sub,
        })
    }
}

/// An authenticated user (management API).
pub struct UserAuth {
    /// User id.
    pub user_id: String,
    /// The token's id (logout revokes it).
    pub jti: String,
}

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token =
            bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing token"))?;
        Self::from_token(state, &token).await
    }
}

impl UserAuth {
    /// Checks a management token (signature, audience, expiry, and its row).
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state
            .keys
            .verify(token, AUD_MANAGEMENT)
            .map_err(ApiError::unauthorized)?;
        let now = crate::time::now_us();
        match state.store.use_token(&claims.jti, now).await? {
            Some(t)
                if matches!(t.kind, TokenKind::Session | TokenKind::Pat)
                    && t.subject == claims.sub => {}
            _ => return Err(ApiError::unauthorized("token revoked")),
        }
        Ok(Self {
            user_id: claims.sub,
            jti: claims.jti,
        })
    }
}

/// `page` and `per_page`, validated as Mender does.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// 1-based page.
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

impl Page {
    /// Parses the two parameters from optional strings.
    pub fn parse(page: Option<&str>, per_page: Option<&str>, max: u64) -> ApiResult<Self> {
        let num = |name: &str, v: Option<&str>, default: u64, max: u64| -> ApiResult<u64> {
            match v {
                None => Ok(default),
                Some(s) => match s.parse::<u64>() {
                    Ok(n) if n >= 1 && n <= max => Ok(n),
                    _ => Err(ApiError::bad_request(format!(
                        "invalid {name} value: {s:?}"
                    ))),
                },
            }
        };
        Ok(Self {
            page: num("page", page, 1, u64::MAX / 1024)?,
            per_page: num("per_page", per_page, 20, max)?,
        })
    }

    /// The `Link` header value for a list at `path` with `query` (without page parameters).
    pub fn link(&self, path: &str, query: &[(String, String)], has_next: bool) -> String {
        let url = |p: u64| {
            let mut q: Vec<String> = query
                .iter()
                .filter(|(k, _)| k != "page" && k != "per_page")
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect();
            q.push(format!("page={p}"));
            q.push(format!("per_page={}", self.per_page));
            format!("<{path}?{}>", q.join("&"))
        };
        let mut parts = vec![format!("{}; rel=\"first\"", url(1))];
        if self.page > 1 {
            parts.push(format!("{}; rel=\"prev\"", url(self.page - 1)));
        }
        if has_next {
            parts.push(format!("{}; rel=\"next\"", url(self.page + 1)));
        }
        parts.join(", ")
    }
}

/// Percent-encodes a query component.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A 201 with an empty body and a `Location`.
pub fn created(location: &str) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    r
}

/// JSON with `X-Total-Count` and optionally `Link`.
pub fn paged<T: serde::Serialize>(items: &T, total: u64, link: Option<String>) -> Response {
    let mut r = axum::Json(items).into_response();
    r.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(axum::http::header::LINK, l);
    }
    r
}

/// Checks that a path id is a UUID (the deployments service insists).
pub fn check_uuid(id: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ApiError::bad_request("ID is not a valid UUID"))
}

/// Every query pair, in order and decoded (for filters and `Link` headers).
pub fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A time filter given in UNIX seconds, as UNIX microseconds.
pub fn epoch_param(pairs: &[(String, String)], name: &str) -> ApiResult<Option<i64>> {
    param(pairs, name)
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .ok_or_else(|| ApiError::bad_request(format!("{name} must be UNIX seconds")))
        })
        .transpose()
}

/// The first value of a query parameter.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_validated() {
        assert!(Page::parse(Some("0"), None, 500).is_err());
        assert!(Page::parse(None, Some("501"), 500).is_err());
        assert!(Page::parse(Some("x"), None, 500).is_err());
        let p = Page::parse(Some("2"), Some("5"), 500).unwrap();
        assert_eq!((p.page, p.per_page), (2, 5));
        let link = p.link("/a", &[("tags/site".into(), "oslo".into())], true);
        assert!(
            link.contains("</a?tags/site=oslo&page=1&per_page=5>; rel=\"first\""),
            "{link}"
        );
        assert!(link.contains("rel=\"prev\"") && link.contains("page=3"));
    }

    #[test]
    fn method_labels_are_bounded() {
        for (method, label) in [
            ("GET", "GET"),
            ("DELETE", "DELETE"),
            ("PATCH", "PATCH"),
            ("BREW", "other"),
            ("get", "other"),
            ("X-7f3a", "other"),
        ] {
            let m = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&m), label, "{method}");
        }
    }

    #[test]
    fn query_decoding() {
        let uri: axum::http::Uri = "/x?a=1&b=%41%2&c=d+e&f".parse().unwrap();
        let q = query_pairs(&uri);
        assert_eq!(q[1], ("b".into(), "A%2".into()));
        assert_eq!(q[2], ("c".into(), "d e".into()));
        assert_eq!(q[3], ("f".into(), String::new()));
    }
}
