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
use crate::store::DeviceRow;
use crate::time::{now_us, rfc3339, rfc3339_opt};

const STATUSES: [&str; 5] = ["pending", "accepted", "rejected", "preauthorized", "noauth"];

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
pub(crate) fn device_json(d: &DeviceRow) -> Device {
    Device {
        id: d.id.clone(),
        identity_data: d.identity.clone(),
        status: d.status.clone(),
        decommissioning: false,
        created_ts: rfc3339(d.created_ts),
        updated_ts: rfc3339(d.updated_ts),
        check_in_time: if d.status == "accepted" {
            rfc3339_opt(d.check_in_time)
        } else {
            None
        },
        auth_sets: d
            .auth_sets
            .iter()
            .map(|a| AuthSet {
                id: a.id.clone(),
                identity_data: d.identity.clone(),
                pubkey: a.pubkey.clone(),
                status: a.status.clone(),
                ts: rfc3339(a.ts),
            })
            .collect(),
    }
}

fn check_status(s: &str) -> ApiResult<()> {
    if STATUSES.contains(&s) {
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
    let body: Vec<Device> = rows.iter().map(device_json).collect();
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
    match st
        .store
        .preauthorize(&hash, &identity, &key.pem, req.force, now_us())
        .await?
    {
        Ok(id) => Ok(created(&format!("devices/{id}"))),
        Err(existing) => {
            let d = st
                .store
                .device(&existing)
                .await?
                .ok_or_else(|| ApiError::conflict("device exists"))?;
            Ok((StatusCode::CONFLICT, axum::Json(device_json(&d))).into_response())
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
    Ok(axum::Json(device_json(&d)))
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
    let gone = st.store.decommission(&id, now_us()).await?;
    st.events.publish(
        "device",
        serde_json::json!({"id": id, "status": "decommissioned"}),
    );
    st.caches.revoked();
    if gone {
        tracing::info!(device.id = %id, "device decommissioned");
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
    st.store.delete_auth_set(&id, &aid, now_us()).await?;
    st.caches.revoked();
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
    if !matches!(body.status.as_str(), "accepted" | "rejected" | "pending") {
        return Err(ApiError::bad_request(format!(
            "status must be accepted, rejected or pending, not {:?}",
            body.status
        )));
    }
    st.store
        .set_auth_status(&id, &aid, &body.status, now_us())
        .await?;
    st.caches.revoked();
    st.events.publish(
        "device",
        serde_json::json!({"id": id, "status": body.status}),
    );
    tracing::info!(device.id = %id, auth_set.id = %aid, status = %body.status, "auth set status changed");
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
    match st.store.use_token(&id, now_us()).await? {
        Some(t) if t.kind == crate::store::TokenKind::Device => {
            st.store.delete_token(&id, None).await?;
            st.caches.revoked();
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found("token not found")),
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
