//! Device admission (`/api/management/v2/devauth`).

use aloft_api::management::{AuthSet, Count, Device, ErrorBody, PreauthRequest, StatusBody};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AppState, Page, UserAuth, created, param, query_pairs};
use crate::auth::{self, DeviceKey};
use crate::error::{ApiError, ApiResult};
use crate::service::stored;
use crate::store::DeviceRow;
use crate::throttle::ClientKey;
use crate::time::{rfc3339, rfc3339_opt};
use aloft_api::status::DeviceStatus;

/// Largest authentication request body.
pub(crate) const MAX_AUTH_REQUEST_BYTES: usize = 16 << 10;
/// Largest identity (its JSON text).
const MAX_IDENTITY_BYTES: usize = 4 << 10;
/// Largest public key (PEM); an RSA-8192 key is about 1.5 KiB.
const MAX_PUBKEY_BYTES: usize = 8 << 10;
/// Most auth sets (keys) one device may have; an operator deletes old ones to add more.
const MAX_AUTH_SETS: u64 = 16;

/// The size bounds of an identity and a key (413 beyond them).
pub(crate) fn check_admission_sizes(identity_json_len: usize, pubkey_len: usize) -> ApiResult<()> {
    let too_large = |what: &str, max: usize| {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} larger than {max} bytes"),
        ))
    };
    if identity_json_len > MAX_IDENTITY_BYTES {
        return too_large("identity data", MAX_IDENTITY_BYTES);
    }
    if pubkey_len > MAX_PUBKEY_BYTES {
        return too_large("public key", MAX_PUBKEY_BYTES);
    }
    Ok(())
}

/// Whether an unauthenticated auth request may add what it would add: a new key to a device
/// (at most [`MAX_AUTH_SETS`], 400 beyond) or a new device (new identities are rate-limited per
/// client and overall, 429 with `Retry-After` beyond). Known keys always pass.
pub(crate) async fn check_admission(
    st: &AppState,
    client: &ClientKey,
    identity_hash: &str,
    pubkey: &str,
) -> ApiResult<()> {
    let f = st.store.admission_footprint(identity_hash, pubkey).await?;
    if f.key_known {
        return Ok(());
    }
    if f.device_exists {
        if f.auth_sets >= MAX_AUTH_SETS {
            return Err(ApiError::bad_request(format!(
                "the device has {MAX_AUTH_SETS} auth sets already; an operator must delete one first"
            )));
        }
        return Ok(());
    }
    let t = &st.throttles;
    t.new_identity_client.take_both(
        client,
        (&t.new_identity_all, "all"),
        "too many new devices from this address or overall",
    )
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, preauthorize))
        .routes(routes!(search_devices))
        .routes(routes!(count_devices))
        .routes(routes!(get_device, decommission))
        .routes(routes!(delete_auth_set))
        .routes(routes!(get_auth_status, set_auth_status))
        .routes(routes!(revoke_token))
        .routes(routes!(max_devices))
}

/// The JSON of a device.
pub(crate) fn device_json(d: &DeviceRow) -> ApiResult<Device> {
    let status: DeviceStatus = stored(&d.status)?;
    Ok(Device {
        id: d.id.clone(),
        identity_data: d.identity.clone(),
        status,
        decommissioning: false,
        created_ts: rfc3339(d.created_ts),
        updated_ts: rfc3339(d.updated_ts),
        check_in_time: if status == DeviceStatus::Accepted {
            rfc3339_opt(d.check_in_time)
        } else {
            None
        },
        auth_sets: d
            .auth_sets
            .iter()
            .map(|a| {
                Ok(AuthSet {
                    id: a.id.clone(),
                    identity_data: d.identity.clone(),
                    pubkey: a.pubkey.clone(),
                    status: stored(&a.status)?,
                    ts: rfc3339(a.ts),
                })
            })
            .collect::<ApiResult<_>>()?,
    })
}

fn check_status(s: &str) -> ApiResult<()> {
    if s.parse::<DeviceStatus>()
        .is_ok_and(|s| s != DeviceStatus::Decommissioned)
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "unknown device status {s:?}"
        )))
    }
}

async fn list(
    st: &AppState,
    path: &str,
    statuses: Option<Vec<String>>,
    ids: Vec<String>,
    page: Page,
    query: &[(String, String)],
) -> ApiResult<Response> {
    if let Some(s) = &statuses {
        for x in s {
            check_status(x)?;
        }
    }
    let mut rows = st
        .store
        .devices(statuses.as_deref(), &ids, page.page, page.per_page + 1)
        .await?;
    // One extra row tells whether a next page exists (devauth sends no total count).
    let has_next = rows.len() as u64 > page.per_page;
    rows.truncate(usize::try_from(page.per_page).unwrap_or(usize::MAX));
    let body = rows
        .iter()
        .map(device_json)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = page.link(path, query, has_next).parse() {
        r.headers_mut().insert(axum::http::header::LINK, v);
    }
    Ok(r)
}

/// List devices by status and id.
#[utoipa::path(get, path = "/api/management/v2/devauth/devices", tag = "devauth", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "pending, accepted, rejected, preauthorized or noauth"),
        ("id" = Option<Vec<String>>, Query, description = "device ids"),
        ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<Device>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_devices(State(st): State<AppState>, _u: UserAuth, uri: Uri) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let statuses = param(&q, "status").map(|s| vec![s.to_owned()]);
    let ids: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.clone())
        .collect();
    list(&st, uri.path(), statuses, ids, page, &q).await
}

/// A string or a list of strings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Body of a device search.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Search {
    #[serde(default)]
    status: Option<OneOrMany>,
    #[serde(default)]
    id: Option<OneOrMany>,
}

/// Search devices by status and id.
#[utoipa::path(post, path = "/api/management/v2/devauth/devices/search", tag = "devauth", security(("bearer" = [])),
    params(("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)), request_body = Search,
    responses((status = 200, body = Vec<Device>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn search_devices(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
    ApiJson(s): ApiJson<Search>,
) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    list(
        &st,
        uri.path(),
        s.status.map(OneOrMany::into_vec),
        s.id.map(OneOrMany::into_vec).unwrap_or_default(),
        page,
        &q,
    )
    .await
}

/// Count devices, optionally of one status.
#[utoipa::path(get, path = "/api/management/v2/devauth/devices/count", tag = "devauth", security(("bearer" = [])),
    params(("status" = Option<String>, Query)),
    responses((status = 200, body = Count), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn count_devices(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
) -> ApiResult<axum::Json<Count>> {
    let q = query_pairs(&uri);
    let status = param(&q, "status");
    if let Some(s) = status {
        check_status(s)?;
    }
    Ok(axum::Json(Count {
        count: st.store.count_devices(status).await?,
    }))
}

/// Preauthorize a device by identity and key.
#[utoipa::path(post, path = "/api/management/v2/devauth/devices", tag = "devauth", security(("bearer" = [])),
    request_body = PreauthRequest,
    responses((status = 201, description = "created; Location: devices/<id>"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = Device, description = "the existing device")))]
async fn preauthorize(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(req): ApiJson<PreauthRequest>,
) -> ApiResult<Response> {
    let key = DeviceKey::parse(&req.pubkey).map_err(ApiError::bad_request)?;
    let (identity, hash) =
        auth::canonical_identity_value(req.identity_data).map_err(ApiError::bad_request)?;
    check_admission_sizes(identity.to_string().len(), key.pem.len())?;
    match crate::service::admission::preauthorize(st.ctx(), &hash, &identity, &key.pem, req.force)
        .await?
    {
        Ok(id) => Ok(created(&format!("devices/{id}"))),
        Err(existing) => {
            let d = st
                .store
                .device(&existing)
                .await?
                .ok_or_else(|| ApiError::conflict("device exists"))?;
            Ok((StatusCode::CONFLICT, axum::Json(device_json(&d)?)).into_response())
        }
    }
}

/// One device.
#[utoipa::path(get, path = "/api/management/v2/devauth/devices/{id}", tag = "devauth", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_device(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Device>> {
    let d = st
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    Ok(axum::Json(device_json(&d)?))
}

/// Decommission a device: it, its keys, tokens and inventory are deleted; its open
/// deployments end as `decommissioned`.
#[utoipa::path(delete, path = "/api/management/v2/devauth/devices/{id}", tag = "devauth", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "decommissioned"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn decommission(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if crate::service::admission::decommission(st.ctx(), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("device not found"))
    }
}

/// Remove one auth set of a device.
#[utoipa::path(delete, path = "/api/management/v2/devauth/devices/{id}/auth/{aid}", tag = "devauth",
    security(("bearer" = [])), params(("id" = String, Path), ("aid" = String, Path)),
    responses((status = 204, description = "removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_auth_set(
    State(st): State<AppState>,
    _u: UserAuth,
    Path((id, aid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    crate::service::admission::delete_auth_set(st.ctx(), &id, &aid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The status of one auth set.
#[utoipa::path(get, path = "/api/management/v2/devauth/devices/{id}/auth/{aid}/status", tag = "devauth",
    security(("bearer" = [])), params(("id" = String, Path), ("aid" = String, Path)),
    responses((status = 200, body = StatusBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_auth_status(
    State(st): State<AppState>,
    _u: UserAuth,
    Path((id, aid)): Path<(String, String)>,
) -> ApiResult<axum::Json<StatusBody>> {
    let d = st
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    let a = d
        .auth_sets
        .iter()
        .find(|a| a.id == aid)
        .ok_or_else(|| ApiError::not_found("authentication set not found"))?;
    Ok(axum::Json(StatusBody {
        status: a.status.clone(),
    }))
}

/// Accept, reject or reset an auth set.
#[utoipa::path(put, path = "/api/management/v2/devauth/devices/{id}/auth/{aid}/status", tag = "devauth",
    security(("bearer" = [])), params(("id" = String, Path), ("aid" = String, Path)), request_body = StatusBody,
    responses((status = 204, description = "changed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_auth_status(
    State(st): State<AppState>,
    _u: UserAuth,
    Path((id, aid)): Path<(String, String)>,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<StatusCode> {
    let status = body
        .status
        .parse::<aloft_api::status::AuthSetStatus>()
        .ok()
        .filter(|s| *s != aloft_api::status::AuthSetStatus::Preauthorized)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be accepted, rejected or pending, not {:?}",
                body.status
            ))
        })?;
    crate::service::admission::set_auth_status(st.ctx(), &id, &aid, status).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a device token by its id.
#[utoipa::path(delete, path = "/api/management/v2/devauth/tokens/{id}", tag = "devauth", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    // Only device tokens: a user token id here is "not found".
    if crate::service::admission::revoke_device_token(st.ctx(), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token not found"))
    }
}

/// `{"limit": 0}`: no device limit.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Limit {
    limit: u64,
}

/// The device limit (0: none).
#[utoipa::path(get, path = "/api/management/v2/devauth/limits/max_devices", tag = "devauth", security(("bearer" = [])),
    responses((status = 200, body = Limit), (status = 401, body = ErrorBody)))]
async fn max_devices(_u: UserAuth) -> axum::Json<Limit> {
    axum::Json(Limit { limit: 0 })
}
