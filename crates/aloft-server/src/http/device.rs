//! The device API, exactly as the Mender client 3.4 uses it: authentication, inventory,
//! `next`, status, log and the pre-signed artifact download.

use std::collections::BTreeMap;

use aloft_api::device::{
    ArtifactSource, AuthRequest, DeploymentInstructions, DeploymentLog, InstallControl,
    InstructionArtifact, InventoryAttribute, NextRequestV2, StatusReport,
};
use aloft_api::management::ErrorBody;
use aloft_api::status::DeviceDeploymentStatus;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AppState, DeviceAuth, check_uuid, devauth};
use crate::auth::{self, DeviceKey};
use crate::error::{ApiError, ApiResult};
use crate::service::{admission, scheduling};
use crate::store::ArtifactRow;
use crate::time::{now_us, rfc3339};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth_request))
        .routes(routes!(put_inventory, patch_inventory))
        .routes(routes!(next_v2))
        .routes(routes!(next_v1_post, next_v1_get))
        .routes(routes!(put_status))
        .routes(routes!(put_log))
        .routes(routes!(download))
}

/// Authenticate a device: 200 with a bare JWT once accepted, 401 while pending or rejected.
#[utoipa::path(post, path = "/api/devices/v1/authentication/auth_requests", tag = "device",
    request_body = AuthRequest,
    params(("X-MEN-Signature" = String, Header, description = "base64 signature of the raw body")),
    responses((status = 200, description = "the device token", content_type = "application/jwt", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many new devices; see Retry-After")))]
async fn auth_request(
    State(st): State<AppState>,
    client: crate::throttle::ClientKey,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if body.len() > devauth::MAX_AUTH_REQUEST_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "authentication request larger than {} bytes",
                devauth::MAX_AUTH_REQUEST_BYTES
            ),
        ));
    }
    let req: AuthRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed authentication request: {e}")))?;
    devauth::check_admission_sizes(req.id_data.len(), req.pubkey.len())?;
    let sig = headers
        .get("x-men-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("missing request signature header X-MEN-Signature"))?;
    let key = DeviceKey::parse(&req.pubkey).map_err(ApiError::bad_request)?;
    key.verify(&body, sig)
        .map_err(|e| ApiError::unauthorized(format!("signature verification failed: {e}")))?;
    let (identity, hash) = auth::canonical_identity(&req.id_data).map_err(ApiError::bad_request)?;
    devauth::check_admission(&st, &client, &hash, &key.pem).await?;
    let admission = admission::authenticate(
        st.ctx(),
        &st.keys,
        st.settings.device_token_secs,
        &hash,
        &identity,
        &key.pem,
    )
    .await?;
    let (device_id, token) = match admission {
        admission::Admission::Token { device_id, token } => (device_id, token),
        admission::Admission::Refused { device_id, status } => {
            tracing::info!(device.id = %device_id, device.status = %status, "device not admitted");
            return Err(ApiError::unauthorized("unauthorized"));
        }
    };
    tracing::info!(device.id = %device_id, "device authenticated");
    Ok(([(header::CONTENT_TYPE, "application/jwt")], token).into_response())
}

fn check_attributes(attrs: &[InventoryAttribute]) -> ApiResult<Vec<(String, Value)>> {
    if attrs.len() > 1024 {
        return Err(ApiError::bad_request("too many attributes (at most 1024)"));
    }
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for a in attrs {
        if a.name.is_empty() || a.name.len() > 1024 {
            return Err(ApiError::bad_request(
                "attribute names must have 1 to 1024 characters",
            ));
        }
        let ok = match &a.value {
            Value::String(_) | Value::Number(_) => true,
            Value::Array(items) => {
                items.iter().all(Value::is_string) || items.iter().all(Value::is_number)
            }
            _ => false,
        };
        if !ok {
            return Err(ApiError::bad_request(format!(
                "attribute {:?}: the value must be a string, a number, or a list of strings or of numbers",
                a.name
            )));
        }
        out.insert(a.name.clone(), a.value.clone());
    }
    Ok(out.into_iter().collect())
}

/// Replace the device's inventory attributes.
#[utoipa::path(put, path = "/api/devices/v1/inventory/device/attributes", tag = "device",
    request_body = Vec<InventoryAttribute>, security(("bearer" = [])),
    responses((status = 200, description = "stored"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_inventory(
    State(st): State<AppState>,
    dev: DeviceAuth,
    ApiJson(attrs): ApiJson<Vec<InventoryAttribute>>,
) -> ApiResult<StatusCode> {
    let attrs = check_attributes(&attrs)?;
    crate::service::inventory::report(st.ctx(), &dev.device_id, &attrs, true).await?;
    Ok(StatusCode::OK)
}

/// Add or update inventory attributes.
#[utoipa::path(patch, path = "/api/devices/v1/inventory/device/attributes", tag = "device",
    request_body = Vec<InventoryAttribute>, security(("bearer" = [])),
    responses((status = 200, description = "stored"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn patch_inventory(
    State(st): State<AppState>,
    dev: DeviceAuth,
    ApiJson(attrs): ApiJson<Vec<InventoryAttribute>>,
) -> ApiResult<StatusCode> {
    let attrs = check_attributes(&attrs)?;
    crate::service::inventory::report(st.ctx(), &dev.device_id, &attrs, false).await?;
    Ok(StatusCode::OK)
}

/// Hands the device its next deployment, if any, as Mender's instructions.
async fn next_deployment(
    st: &AppState,
    device_id: &str,
    provides: &BTreeMap<String, String>,
    host: Option<&str>,
    waits: bool,
) -> ApiResult<Option<DeploymentInstructions>> {
    let Some(a) = scheduling::next(st.ctx(), device_id, provides, waits).await? else {
        return Ok(None);
    };
    let aloft = a.install.map(|i| InstallControl {
        install: i.policy,
        hold: i.hold.map(|h| h.text(rfc3339)),
        until: i
            .hold
            .and_then(crate::domain::rollouts::Hold::until)
            .map(rfc3339),
    });
    let (uri, expire) = download_link(st, &a.artifact, host).await?;
    Ok(Some(DeploymentInstructions {
        id: a.deployment_id,
        artifact: InstructionArtifact {
            id: a.artifact.id,
            artifact_name: a.artifact.name,
            source: ArtifactSource { uri, expire },
            device_types_compatible: vec![a.device_type],
        },
        aloft,
    }))
}

/// A pre-signed download URL for an artifact and its RFC 3339 expiry: straight from S3 when
/// the files are there, else this server's HMAC-signed route.
pub(crate) async fn download_link(
    st: &AppState,
    artifact: &ArtifactRow,
    host: Option<&str>,
) -> ApiResult<(String, String)> {
    let secs = st.settings.download_link_secs;
    let expire = now_us() / 1_000_000 + secs;
    let lifetime = std::time::Duration::from_secs(secs.unsigned_abs());
    if let Some(url) = st.blobs.presigned_get(artifact, lifetime).await? {
        return Ok((url, rfc3339(expire * 1_000_000)));
    }
    let artifact_id = &artifact.id;
    let sig = st.keys.url_signature(artifact_id, expire);
    let base = st
        .settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", host.unwrap_or("localhost")));
    Ok((
        format!(
            "{}/api/devices/v1/deployments/download/artifacts/{artifact_id}?x-men-expire={expire}&x-men-signature={sig}",
            base.trim_end_matches('/')
        ),
        rfc3339(expire * 1_000_000),
    ))
}

/// The host the request was sent to (for download links without a configured public URL).
pub(crate) fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
}

fn instructions_response(i: Option<DeploymentInstructions>) -> Response {
    match i {
        Some(i) => axum::Json(i).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Ask for the next deployment (protocol v2, with the device's provides).
#[utoipa::path(post, path = "/api/devices/v2/deployments/device/deployments/next", tag = "device",
    request_body = NextRequestV2, security(("bearer" = [])),
    responses((status = 200, body = DeploymentInstructions), (status = 204, description = "nothing to do"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn next_v2(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NextRequestV2>,
) -> ApiResult<Response> {
    let host = request_host(&headers);
    let i = next_deployment(
        &st,
        &dev.device_id,
        &req.device_provides,
        host.as_deref(),
        req.aloft_install_control,
    )
    .await?;
    Ok(instructions_response(i))
}

/// Ask for the next deployment (v1, flat provides).
#[utoipa::path(post, path = "/api/devices/v1/deployments/device/deployments/next", tag = "device",
    request_body = BTreeMap<String, String>, security(("bearer" = [])),
    responses((status = 200, body = DeploymentInstructions), (status = 204, description = "nothing to do"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn next_v1_post(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    ApiJson(provides): ApiJson<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let host = request_host(&headers);
    let i = next_deployment(&st, &dev.device_id, &provides, host.as_deref(), false).await?;
    Ok(instructions_response(i))
}

/// Query of the v1 `GET next`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct NextQuery {
    /// Installed artifact.
    artifact_name: String,
    /// Device type.
    device_type: String,
}

/// Ask for the next deployment (v1 GET).
#[utoipa::path(get, path = "/api/devices/v1/deployments/device/deployments/next", tag = "device",
    params(NextQuery), security(("bearer" = [])),
    responses((status = 200, body = DeploymentInstructions), (status = 204, description = "nothing to do"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn next_v1_get(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    q: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let provides = BTreeMap::from([
        ("artifact_name".to_owned(), q.artifact_name),
        ("device_type".to_owned(), q.device_type),
    ]);
    let host = request_host(&headers);
    let i = next_deployment(&st, &dev.device_id, &provides, host.as_deref(), false).await?;
    Ok(instructions_response(i))
}

/// Report the device's progress; 409 tells it the deployment was aborted.
#[utoipa::path(put, path = "/api/devices/v1/deployments/device/deployments/{id}/status", tag = "device",
    params(("id" = String, Path, description = "deployment id")), request_body = StatusReport,
    security(("bearer" = [])),
    responses((status = 204, description = "recorded"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn put_status(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<StatusReport>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    let status = report.status.parse::<DeviceDeploymentStatus>().ok();
    let report = status
        .and_then(|s| scheduling::Report::from_status(s, report.substate))
        .ok_or_else(|| ApiError::bad_request(format!("unknown status {:?}", report.status)))?;
    match scheduling::report(st.ctx(), &id, &dev.device_id, report).await? {
        scheduling::Ack::Recorded => Ok(StatusCode::NO_CONTENT),
        scheduling::Ack::Aborted => Err(ApiError::conflict("deployment aborted")),
    }
}

/// Upload the log of a failed deployment.
#[utoipa::path(put, path = "/api/devices/v1/deployments/device/deployments/{id}/log", tag = "device",
    params(("id" = String, Path, description = "deployment id")), request_body = DeploymentLog,
    security(("bearer" = [])),
    responses((status = 204, description = "stored"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_log(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Path(id): Path<String>,
    ApiJson(log): ApiJson<DeploymentLog>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    let mut text = String::new();
    for m in &log.messages {
        text.push_str(&m.timestamp);
        text.push(' ');
        text.push_str(&m.level);
        text.push_str(": ");
        text.push_str(&m.message);
        if !m.message.ends_with('\n') {
            text.push('\n');
        }
    }
    scheduling::put_log(st.ctx(), &id, &dev.device_id, &text).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The query of a pre-signed download link.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct DownloadQuery {
    /// UNIX seconds.
    #[serde(rename = "x-men-expire")]
    expire: i64,
    /// HMAC of artifact id and expiry.
    #[serde(rename = "x-men-signature")]
    signature: String,
}

/// Download an artifact through a pre-signed link (no `Authorization`); supports `Range` and
/// `If-Range`.
#[utoipa::path(get, path = "/api/devices/v1/deployments/download/artifacts/{id}", tag = "device",
    params(("id" = String, Path, description = "artifact id"), DownloadQuery),
    responses((status = 200, description = "the artifact", content_type = "application/vnd.mender-artifact"),
        (status = 206, description = "a range of it"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<DownloadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    if q.expire < now_us() / 1_000_000 {
        return Err(ApiError::forbidden("the download link expired"));
    }
    if !st.keys.check_url(&id, q.expire, &q.signature) {
        return Err(ApiError::forbidden("bad download link signature"));
    }
    let a = st
        .store
        .artifact(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact not found"))?;
    serve_blob(&st, &a, &headers).await
}

/// Serves an artifact file with `Range`/`If-Range` support.
pub(crate) async fn serve_blob(
    st: &AppState,
    a: &ArtifactRow,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let etag = format!("\"{}\"", a.sha256);
    let size = a.size;
    let range_allowed = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_allowed => {
            if let Ok(r) = parse_range(r, size) {
                r
            } else {
                let mut resp =
                    ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                        .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        }
        _ => None,
    };
    let stream = st
        .blobs
        .get(a, range.clone())
        .await?
        .map(|r| r.map_err(std::io::Error::other));
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.mender-artifact"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    match range {
        Some(r) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        None => {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(resp)
}

/// Parses a single `bytes=` range against a size: `Ok(None)` means "the whole file" (a form we
/// do not serve partially, like several ranges), `Err` means unsatisfiable.
fn parse_range(value: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    // A number too large for u64 is clamped (the range then ends at the file's end).
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        Ok(s.parse().unwrap_or(u64::MAX))
    };
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size)
        }
        (s, "") => (num(s)?, size),
        (s, e) => {
            let s = num(s)?;
            let e = num(e)?;
            if e < s {
                return Err(());
            }
            (s, e.saturating_add(1).min(size))
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some(start..end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), Ok(Some(10..100)));
        assert_eq!(parse_range("bytes=10-19", 100), Ok(Some(10..20)));
        assert_eq!(parse_range("bytes=90-200", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        // Ends beyond u64 are clamped; a start beyond the file is unsatisfiable.
        let huge = "99999999999999999999999";
        assert_eq!(
            parse_range(&format!("bytes=10-{huge}"), 100),
            Ok(Some(10..100))
        );
        assert_eq!(
            parse_range(&format!("bytes=-{huge}"), 100),
            Ok(Some(0..100))
        );
        assert_eq!(parse_range(&format!("bytes={huge}-"), 100), Err(()));
        assert_eq!(parse_range("bytes=+5-9", 100), Err(()));
    }
}
