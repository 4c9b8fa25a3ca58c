//! Deployments (`/api/management/v1/deployments/deployments`).

use std::collections::BTreeMap;

use aloft_api::management::{
    Deployment, DeploymentPlan, DeploymentStatistics, DeviceDeployment, DeviceHistoryEntry,
    ErrorBody, NewDeployment, NewDynamicDeployment, NewGroupDeployment, NewPhase, RolloutOptions,
    StatusBody,
};
use aloft_api::time::parse_rfc3339;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::artifacts::artifact_json;
use super::{ApiJson, AppState, Page, UserAuth, check_uuid, created, paged, param, query_pairs};
use crate::domain::deployments::MAX_RETRIES;
use crate::domain::rollouts::Plan;
use crate::error::{ApiError, ApiResult};
use crate::service::deployments::{self, DeploymentView, RolloutView, Target};
use crate::service::plans;
use crate::store::{DeploymentQuery, DeploymentRow, DeviceDeploymentRow};
use crate::time::{rfc3339, rfc3339_opt};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(create_for_group))
        .routes(routes!(dry_run))
        .routes(routes!(create_dynamic))
        .routes(routes!(dry_run_dynamic))
        .routes(routes!(get_one))
        .routes(routes!(statistics))
        .routes(routes!(statistics_list))
        .routes(routes!(abort))
        .routes(routes!(devices_list))
        .routes(routes!(devices_all))
        .routes(routes!(device_ids))
        .routes(routes!(device_log))
        .routes(routes!(history, abort_device))
        .routes(routes!(reset_history))
}

/// A deployment with its statistics and summary, in Mender's shape.
pub(crate) fn deployment_json(v: &DeploymentView) -> Deployment {
    let (d, stats) = (&v.row, &v.stats);
    Deployment {
        id: d.id.clone(),
        name: d.name.clone(),
        artifact_name: d.artifact_name.clone(),
        created: rfc3339(d.created),
        finished: rfc3339_opt(d.finished),
        status: v.status,
        summary: Some(v.summary),
        kind: "software".into(),
        device_count: stats.device_count,
        max_devices: d
            .max_devices
            .or((stats.max_devices > 0).then_some(stats.max_devices)),
        filter: v.filter.clone(),
        groups: d.groups.clone(),
        artifacts: stats.artifacts.clone(),
        force_installation: d.force_installation,
        retries: d.retries,
        statistics: DeploymentStatistics {
            status: stats.by_status.clone(),
            total_size: stats.total_size,
        },
        phases: v
            .rollout
            .as_ref()
            .map(RolloutView::phases)
            .unwrap_or_default(),
        rollout: v.rollout.as_ref().map(RolloutView::info),
    }
}

/// The plan of a new deployment's `phases` and `rollout`, or why they are refused.
fn plan(phases: Option<&[NewPhase]>, options: Option<&RolloutOptions>) -> ApiResult<Option<Plan>> {
    Plan::parse(phases, options, parse_rfc3339).map_err(ApiError::bad_request)
}

async fn view(st: &AppState, row: DeploymentRow) -> ApiResult<Deployment> {
    Ok(deployment_json(&deployments::view(st.ctx(), row).await?))
}

/// Mender's `retries`, checked.
fn retries(given: Option<u32>) -> ApiResult<u32> {
    match given.unwrap_or(0) {
        n if n <= MAX_RETRIES => Ok(n),
        n => Err(ApiError::bad_request(format!(
            "retries must be 0 to {MAX_RETRIES}, not {n}"
        ))),
    }
}

fn check_names(name: &str, artifact: &str) -> ApiResult<()> {
    for (what, v) in [("name", name), ("artifact_name", artifact)] {
        if v.trim().is_empty() || v.len() > 4096 {
            return Err(ApiError::bad_request(format!(
                "{what} must have 1 to 4096 characters"
            )));
        }
    }
    Ok(())
}

async fn insert(st: &AppState, d: deployments::NewDeployment) -> ApiResult<Response> {
    let id = deployments::create(st.ctx(), d).await?;
    Ok(created(&format!(
        "./management/v1/deployments/deployments/{id}"
    )))
}

/// Most devices a deployment may name one by one.
const MAX_LISTED_DEVICES: usize = 10_000;

/// Create a deployment for devices, or for every accepted device.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments", tag = "deployments", security(("bearer" = [])),
    request_body = NewDeployment,
    responses((status = 201, description = "created; Location: ./management/v1/deployments/deployments/<id>"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<NewDeployment>,
) -> ApiResult<Response> {
    insert(&st, new_deployment(b)?).await
}

/// A create body as the service takes it, or why it is refused.
fn new_deployment(b: NewDeployment) -> ApiResult<deployments::NewDeployment> {
    check_names(&b.name, &b.artifact_name)?;
    let all = b.all_devices.unwrap_or(false);
    let target = match (b.devices, all) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "give either devices or all_devices, not both",
            ));
        }
        (None, false) => return Err(ApiError::bad_request("give devices or all_devices")),
        (Some(list), false) => {
            if list.len() > MAX_LISTED_DEVICES {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_LISTED_DEVICES} devices can be listed; deploy to a group or to all devices"
                )));
            }
            if list.iter().any(|d| d.is_empty() || d.len() > 128) {
                return Err(ApiError::bad_request("invalid device list"));
            }
            Target::Devices(list)
        }
        (None, true) => Target::All,
    };
    Ok(deployments::NewDeployment {
        name: b.name,
        artifact_name: b.artifact_name,
        target,
        force: b.force_installation.unwrap_or(false),
        retries: retries(b.retries)?,
        max_devices: None,
        plan: plan(b.phases.as_deref(), b.rollout.as_ref())?,
        expect_plan: b.expect_plan,
    })
}

/// A dry run: what this deployment would do, device by device, without creating it.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/plan", tag = "rollouts", security(("bearer" = [])),
    request_body = NewDeployment,
    responses((status = 200, body = DeploymentPlan), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn dry_run(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<NewDeployment>,
) -> ApiResult<axum::Json<DeploymentPlan>> {
    let d = new_deployment(b)?;
    Ok(axum::Json(plans::plan(st.ctx(), &d).await?))
}

/// Create a deployment for the accepted devices of a static group.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/group/{name}", tag = "deployments",
    security(("bearer" = [])), params(("name" = String, Path)), request_body = NewGroupDeployment,
    responses((status = 201, description = "created"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_for_group(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(group): Path<String>,
    ApiJson(b): ApiJson<NewGroupDeployment>,
) -> ApiResult<Response> {
    check_names(&b.name, &b.artifact_name)?;
    if b.devices.is_some() || b.all_devices.is_some() {
        return Err(ApiError::bad_request(
            "a group deployment takes neither devices nor all_devices",
        ));
    }
    super::inventory::check_group(&group)?;
    let plan = plan(b.phases.as_deref(), b.rollout.as_ref())?;
    insert(
        &st,
        deployments::NewDeployment {
            name: b.name,
            artifact_name: b.artifact_name,
            target: Target::Group(group),
            force: b.force_installation.unwrap_or(false),
            retries: retries(b.retries)?,
            max_devices: None,
            plan,
            expect_plan: b.expect_plan,
        },
    )
    .await
}

/// A dynamic deployment's body as the service takes it, or why it is refused.
async fn new_dynamic(
    st: &AppState,
    b: NewDynamicDeployment,
) -> ApiResult<deployments::NewDeployment> {
    check_names(&b.name, &b.artifact_name)?;
    if b.max_devices == Some(0) {
        return Err(ApiError::bad_request("max_devices must be at least 1"));
    }
    check_uuid(&b.filter_id)
        .map_err(|_| ApiError::bad_request("filter_id must be a saved filter's id"))?;
    let filter = crate::service::dynamic::find(st.ctx(), &b.filter_id)
        .await
        .map_err(|_| {
            ApiError::bad_request(format!("no saved filter has the id {:?}", b.filter_id))
        })?;
    Ok(deployments::NewDeployment {
        name: b.name,
        artifact_name: b.artifact_name,
        target: Target::Filter(filter),
        force: b.force_installation.unwrap_or(false),
        retries: retries(b.retries)?,
        max_devices: b.max_devices,
        plan: plan(b.phases.as_deref(), b.rollout.as_ref())?,
        expect_plan: b.expect_plan,
    })
}

/// Create a dynamic deployment: the accepted devices matching a saved filter now, and every
/// device that comes to match it while the deployment runs (Mender Enterprise's API).
#[utoipa::path(post, path = "/api/management/v2/deployments/deployments", tag = "deployments", security(("bearer" = [])),
    request_body = NewDynamicDeployment,
    responses((status = 201, description = "created; Location: ./management/v1/deployments/deployments/<id>"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_dynamic(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<NewDynamicDeployment>,
) -> ApiResult<Response> {
    let d = new_dynamic(&st, b).await?;
    insert(&st, d).await
}

/// A dry run of a dynamic deployment (the devices matching now; those over `max_devices`
/// are listed as left out).
#[utoipa::path(post, path = "/api/management/v2/deployments/deployments/plan", tag = "rollouts", security(("bearer" = [])),
    request_body = NewDynamicDeployment,
    responses((status = 200, body = DeploymentPlan), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn dry_run_dynamic(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<NewDynamicDeployment>,
) -> ApiResult<axum::Json<DeploymentPlan>> {
    let d = new_dynamic(&st, b).await?;
    Ok(axum::Json(plans::plan(st.ctx(), &d).await?))
}

/// List deployments.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments", tag = "deployments", security(("bearer" = [])),
    params(("status" = Option<String>, Query), ("type" = Option<String>, Query), ("search" = Option<String>, Query),
        ("created_before" = Option<i64>, Query), ("created_after" = Option<i64>, Query), ("sort" = Option<String>, Query),
        ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<Deployment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(State(st): State<AppState>, _u: UserAuth, uri: Uri) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let status = param(&q, "status").map(str::to_owned);
    if let Some(s) = &status
        && !matches!(
            s.as_str(),
            "pending" | "inprogress" | "finished" | "aborted"
        )
    {
        return Err(ApiError::bad_request(format!("invalid status {s:?}")));
    }
    let epoch = |name: &str| super::epoch_param(&q, name);
    let ascending = match param(&q, "sort") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("invalid sort {o:?}"))),
    };
    let only_software = match param(&q, "type") {
        None | Some("software") => true,
        Some("configuration") => false,
        Some(o) => return Err(ApiError::bad_request(format!("invalid type {o:?}"))),
    };
    let query = DeploymentQuery {
        status,
        search: param(&q, "search").map(str::to_owned),
        created_before: epoch("created_before")?.map(|b| b + 999_999),
        created_after: epoch("created_after")?,
        ascending,
        page: page.page,
        per_page: page.per_page,
    };
    let (rows, total) = if only_software {
        st.store.deployments(&query).await?
    } else {
        (Vec::new(), 0)
    };
    let items: Vec<Deployment> = deployments::views(st.ctx(), rows)
        .await?
        .iter()
        .map(deployment_json)
        .collect();
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &items,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

async fn find(st: &AppState, id: &str) -> ApiResult<DeploymentRow> {
    check_uuid(id)?;
    st.store
        .deployment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment not found"))
}

/// One deployment with statistics.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_one(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Deployment>> {
    check_uuid(&id)?;
    let v = deployments::find(st.ctx(), &id).await?;
    Ok(axum::Json(deployment_json(&v)))
}

/// Device counts per status (all 13 keys).
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/statistics", tag = "deployments",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = BTreeMap<String, u64>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn statistics(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<BTreeMap<String, u64>>> {
    find(&st, &id).await?;
    Ok(axum::Json(st.store.deployment_stats(&id).await?.by_status))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StatsRequest {
    deployment_ids: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct StatsItem {
    id: String,
    stats: BTreeMap<String, u64>,
}

/// Statistics of several deployments.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/statistics/list", tag = "deployments",
    security(("bearer" = [])), request_body = StatsRequest,
    responses((status = 200, body = Vec<StatsItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn statistics_list(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<StatsRequest>,
) -> ApiResult<axum::Json<Vec<StatsItem>>> {
    if b.deployment_ids.is_empty() || b.deployment_ids.len() > 100 {
        return Err(ApiError::bad_request("give 1 to 100 deployment ids"));
    }
    let mut out = Vec::new();
    for id in b.deployment_ids {
        check_uuid(&id)?;
        if st.store.deployment(&id).await?.is_some() {
            let stats = st.store.deployment_stats(&id).await?.by_status;
            out.push(StatsItem { id, stats });
        }
    }
    Ok(axum::Json(out))
}

/// Abort a deployment: devices not yet finished end `aborted`.
#[utoipa::path(put, path = "/api/management/v1/deployments/deployments/{id}/status", tag = "deployments",
    security(("bearer" = [])), params(("id" = String, Path)), request_body = StatusBody,
    responses((status = 204, description = "aborted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn abort(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<StatusBody>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    if b.status != "aborted" {
        return Err(ApiError::bad_request(
            "the only accepted status is \"aborted\"",
        ));
    }
    deployments::abort(st.ctx(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn device_items(
    st: &AppState,
    rows: &[DeviceDeploymentRow],
) -> ApiResult<Vec<DeviceDeployment>> {
    let mut cache: BTreeMap<String, Option<aloft_api::management::Artifact>> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let image = match &r.artifact_id {
            Some(a) => {
                if !cache.contains_key(a) {
                    let v = st.store.artifact(a).await?.as_ref().map(artifact_json);
                    cache.insert(a.clone(), v);
                }
                cache.get(a).cloned().flatten()
            }
            None => None,
        };
        out.push(DeviceDeployment {
            id: r.device_id.clone(),
            status: crate::service::stored(&r.status)?,
            substate: r.substate.clone(),
            created: rfc3339(r.created),
            started: rfc3339_opt(r.started),
            finished: rfc3339_opt(r.finished),
            log: r.has_log,
            image,
            phase: r.phase.saturating_add(1),
            retried: r.retried,
        });
    }
    Ok(out)
}

fn check_dd_status(s: Option<&str>) -> ApiResult<()> {
    match s {
        None => Ok(()),
        Some(s)
            if aloft_api::status::ALL.contains(&s)
                || matches!(s, "pause" | "active" | "finished") =>
        {
            Ok(())
        }
        Some(s) => Err(ApiError::bad_request(format!("invalid status {s:?}"))),
    }
}

/// The devices of a deployment, paged.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/devices/list", tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path), ("status" = Option<String>, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<DeviceDeployment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn devices_list(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    find(&st, &id).await?;
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let status = param(&q, "status");
    check_dd_status(status)?;
    let (rows, total) = st
        .store
        .device_deployments(&id, status, page.page, page.per_page)
        .await?;
    let items = device_items(&st, &rows).await?;
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &items,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

/// The devices of a deployment (unpaged; deprecated in Mender).
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/devices", tag = "deployments",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Vec<DeviceDeployment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn devices_all(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<DeviceDeployment>>> {
    find(&st, &id).await?;
    let (rows, _) = st.store.device_deployments(&id, None, 0, 0).await?;
    Ok(axum::Json(device_items(&st, &rows).await?))
}

/// The ids of the devices a deployment targets.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/device_list", tag = "deployments",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn device_ids(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<String>>> {
    find(&st, &id).await?;
    let (rows, _) = st.store.device_deployments(&id, None, 0, 0).await?;
    Ok(axum::Json(rows.into_iter().map(|r| r.device_id).collect()))
}

/// The log a device uploaded for a deployment.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/devices/{device_id}/log", tag = "deployments",
    security(("bearer" = [])), params(("id" = String, Path), ("device_id" = String, Path)),
    responses((status = 200, description = "the log", content_type = "text/plain", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn device_log(
    State(st): State<AppState>,
    _u: UserAuth,
    Path((id, device)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_uuid(&id)?;
    let log = st
        .store
        .log(&id, &device)
        .await?
        .ok_or_else(|| ApiError::not_found("no log for this device"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

/// A device's deployment history, newest first.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/devices/{device_id}", tag = "deployments",
    security(("bearer" = [])),
    params(("device_id" = String, Path), ("status" = Option<String>, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<DeviceHistoryEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn history(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(device): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 20)?;
    let status = param(&q, "status");
    check_dd_status(status)?;
    let (rows, total) = st
        .store
        .device_history(&device, status, page.page, page.per_page)
        .await?;
    let items = device_items(&st, &rows).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (r, item) in rows.iter().zip(items) {
        if let Some(d) = st.store.deployment(&r.deployment_id).await? {
            out.push(DeviceHistoryEntry {
                id: r.id.clone(),
                deployment: view(&st, d).await?,
                device: item,
            });
        }
    }
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &out,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

/// Abort every unfinished deployment of a device.
#[utoipa::path(delete, path = "/api/management/v1/deployments/deployments/devices/{device_id}", tag = "deployments",
    security(("bearer" = [])), params(("device_id" = String, Path)),
    responses((status = 204, description = "aborted"), (status = 401, body = ErrorBody)))]
async fn abort_device(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(device): Path<String>,
) -> ApiResult<StatusCode> {
    deployments::abort_device(st.ctx(), &device).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forget a device's finished deployments.
#[utoipa::path(delete, path = "/api/management/v1/deployments/deployments/devices/{device_id}/history", tag = "deployments",
    security(("bearer" = [])), params(("device_id" = String, Path)),
    responses((status = 204, description = "reset"), (status = 401, body = ErrorBody)))]
async fn reset_history(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(device): Path<String>,
) -> ApiResult<StatusCode> {
    deployments::reset_history(st.ctx(), &device).await?;
    Ok(StatusCode::NO_CONTENT)
}
