//! Inventory: attributes over scopes, tags and static groups (`/api/management/v1/inventory`,
//! `/api/management/v2/inventory`).

use aloft_api::management::{Attribute, DeviceInventory, ErrorBody, GroupBody, Tag};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AppState, Page, UserAuth, paged, param, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::service::inventory;
use crate::store::{AttrRow, DeviceRow, Filter, InventoryQuery};
use crate::time::rfc3339;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(get_device, clear_device))
        .routes(routes!(replace_tags, merge_tags))
        .routes(routes!(get_group, set_group))
        .routes(routes!(leave_group))
        .routes(routes!(list_groups))
        .routes(routes!(delete_group))
        .routes(routes!(
            group_devices,
            add_group_devices,
            remove_group_devices
        ))
        .routes(routes!(search_v2))
        .routes(routes!(filter_attributes))
}

use crate::domain::filters::{self as filter_rules, MAX_QUERY_VALUES, SCOPES};

/// All attributes of a device over every scope.
pub(crate) fn inventory_json(d: &DeviceRow, attrs: &[AttrRow]) -> DeviceInventory {
    let mut out = Vec::new();
    if let Value::Object(id) = &d.identity {
        for (k, v) in id {
            out.push(attr(k, v.clone(), "identity"));
        }
    }
    out.push(attr("status", json!(d.status), "identity"));
    for a in attrs.iter().filter(|a| a.scope == "inventory") {
        out.push(attr(&a.name, a.value.clone(), "inventory"));
    }
    if let Some(g) = &d.group {
        out.push(attr("group", json!(g), "system"));
    }
    out.push(attr("created_ts", json!(rfc3339(d.created_ts)), "system"));
    out.push(attr(
        "updated_ts",
        json!(rfc3339(d.inventory_ts.unwrap_or(d.updated_ts))),
        "system",
    ));
    if let Some(c) = d.check_in_time {
        out.push(attr("check_in_time", json!(rfc3339(c)), "system"));
    }
    for a in attrs.iter().filter(|a| a.scope == "tags") {
        out.push(Attribute {
            name: a.name.clone(),
            value: a.value.clone(),
            scope: "tags".into(),
            description: a.description.clone(),
            timestamp: Some(rfc3339(a.ts)),
        });
    }
    DeviceInventory {
        id: d.id.clone(),
        updated_ts: Some(rfc3339(d.inventory_ts.unwrap_or(d.updated_ts))),
        attributes: out,
    }
}

fn attr(name: &str, value: Value, scope: &str) -> Attribute {
    Attribute {
        name: name.to_owned(),
        value,
        scope: scope.to_owned(),
        description: None,
        timestamp: None,
    }
}

pub(super) async fn load(st: &AppState, ids: &[String]) -> ApiResult<Vec<DeviceInventory>> {
    let page = st.store.inventory_of(ids).await?;
    Ok(page
        .iter()
        .map(|(d, attrs)| inventory_json(d, attrs))
        .collect())
}

fn split_scope(key: &str) -> (String, String) {
    match key.split_once('/') {
        Some((s, a)) if SCOPES.contains(&s) => (s.to_owned(), a.to_owned()),
        _ => ("inventory".to_owned(), key.to_owned()),
    }
}

/// The predicates and size bounds of a query (beyond them a database refuses it with an
/// internal error).
fn check_query(q: &InventoryQuery) -> ApiResult<()> {
    filter_rules::check(&q.filters).map_err(ApiError::bad_request)?;
    if q.ids.len() > MAX_QUERY_VALUES {
        return Err(ApiError::bad_request(format!(
            "too many device ids (at most {MAX_QUERY_VALUES})"
        )));
    }
    if q.text.as_ref().is_some_and(|t| t.len() > 1024) {
        return Err(ApiError::bad_request("search text longer than 1024 bytes"));
    }
    Ok(())
}

/// v1 list filters from the query string.
pub(crate) fn v1_query(q: &[(String, String)], page: Page) -> ApiResult<InventoryQuery> {
    let mut out = InventoryQuery {
        page: page.page,
        per_page: page.per_page,
        ..InventoryQuery::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "page" | "per_page" => {}
            "group" => {
                check_group(v)?;
                out.group = Some(v.clone());
            }
            "has_group" => {
                out.has_group = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad_request("has_group must be true or false")),
                });
            }
            "sort" => {
                let (attr, dir) = v.split_once(':').unwrap_or((v, "desc"));
                let desc = match dir {
                    "desc" => true,
                    "asc" => false,
                    _ => return Err(ApiError::bad_request("sort direction must be asc or desc")),
                };
                let (s, a) = split_scope(attr);
                out.sort = Some((s, a, desc));
            }
            _ => {
                if k.is_empty() {
                    continue;
                }
                let (scope, attribute) = split_scope(k);
                let raw = v.strip_prefix("eq:").unwrap_or(v);
                // A value that parses as a number also matches numeric attributes.
                let value = match raw.parse::<f64>() {
                    Ok(n) if n.is_finite() => json!([raw, n]),
                    _ => json!([raw]),
                };
                out.filters.push(Filter {
                    scope,
                    attribute,
                    op: "$in".into(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// List devices with their inventory; every other query parameter is an equality filter
/// `[scope/]attribute=[eq:]value`.
#[utoipa::path(get, path = "/api/management/v1/inventory/devices", tag = "inventory", security(("bearer" = [])),
    params(("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query), ("sort" = Option<String>, Query),
        ("has_group" = Option<bool>, Query), ("group" = Option<String>, Query)),
    responses((status = 200, body = Vec<DeviceInventory>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_devices(State(st): State<AppState>, _u: UserAuth, uri: Uri) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let query = v1_query(&q, page)?;
    check_query(&query)?;
    let (ids, total) = st.store.search_inventory(&query).await?;
    let items = load(&st, &ids).await?;
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &items,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

fn etag_of(attrs: &[AttrRow]) -> String {
    let mut h = Sha256::new();
    for a in attrs.iter().filter(|a| a.scope == "tags") {
        h.update(a.name.as_bytes());
        h.update([0]);
        h.update(a.value.to_string().as_bytes());
        h.update([0]);
        h.update(a.description.as_deref().unwrap_or_default().as_bytes());
        h.update([1]);
    }
    format!("\"{}\"", &hex::encode(h.finalize())[..16])
}

/// One device's inventory; `ETag` changes when its tags change.
#[utoipa::path(get, path = "/api/management/v1/inventory/devices/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DeviceInventory), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_device(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = st
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    let attrs = st.store.attributes(&id).await?;
    let mut r = axum::Json(inventory_json(&d, &attrs)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag_of(&attrs)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// Clear the device-reported attributes (identity, tags and group stay).
#[utoipa::path(delete, path = "/api/management/v1/inventory/devices/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "cleared"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn clear_device(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if inventory::clear(st.ctx(), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("device not found"))
    }
}

async fn tags(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
    tags: Vec<Tag>,
    replace: bool,
) -> ApiResult<StatusCode> {
    if tags.len() > 100 {
        return Err(ApiError::bad_request("too many tags (at most 100)"));
    }
    for t in &tags {
        if t.name.is_empty() || t.name.len() > 1024 || t.value.len() > 4096 {
            return Err(ApiError::bad_request(
                "tag names need 1 to 1024 characters, values at most 4096",
            ));
        }
    }
    if let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let attrs = st.store.attributes(id).await?;
        if want != etag_of(&attrs) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "ETag does not match",
            ));
        }
    }
    let rows: Vec<_> = tags
        .into_iter()
        .map(|t| (t.name, t.value, t.description))
        .collect();
    inventory::put_tags(st.ctx(), id, &rows, replace).await?;
    Ok(StatusCode::OK)
}

/// Replace a device's tags.
#[utoipa::path(put, path = "/api/management/v1/inventory/devices/{id}/tags", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = Vec<Tag>,
    responses((status = 200, description = "set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn replace_tags(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(t): ApiJson<Vec<Tag>>,
) -> ApiResult<StatusCode> {
    tags(&st, &id, &headers, t, true).await
}

/// Add or update tags.
#[utoipa::path(patch, path = "/api/management/v1/inventory/devices/{id}/tags", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = Vec<Tag>,
    responses((status = 200, description = "set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn merge_tags(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(t): ApiJson<Vec<Tag>>,
) -> ApiResult<StatusCode> {
    tags(&st, &id, &headers, t, false).await
}

/// Checks a static group name.
pub(crate) fn check_group(name: &str) -> ApiResult<()> {
    if aloft_api::management::is_group_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid group name {name:?}: use letters, digits, '-' and '_'"
        )))
    }
}

/// A device's group.
#[utoipa::path(get, path = "/api/management/v1/inventory/devices/{id}/group", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = GroupBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_group(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<GroupBody>> {
    let d = st
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    Ok(axum::Json(GroupBody { group: d.group }))
}

/// Move a device into a group.
#[utoipa::path(put, path = "/api/management/v1/inventory/devices/{id}/group", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = GroupBody,
    responses((status = 204, description = "moved"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_group(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<GroupBody>,
) -> ApiResult<StatusCode> {
    let g = b
        .group
        .ok_or_else(|| ApiError::bad_request("group is required"))?;
    check_group(&g)?;
    if inventory::set_group(st.ctx(), &id, &g).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("device not found"))
    }
}

/// Take a device out of its group.
#[utoipa::path(delete, path = "/api/management/v1/inventory/devices/{id}/group/{name}", tag = "inventory",
    security(("bearer" = [])), params(("id" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn leave_group(
    State(st): State<AppState>,
    _u: UserAuth,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let n = inventory::remove_from_group(st.ctx(), &name, Some(&[id])).await?;
    if n == 0 {
        return Err(ApiError::not_found("the device is not in this group"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Group names.
#[utoipa::path(get, path = "/api/management/v1/inventory/groups", tag = "inventory", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "only groups with devices of this status (accepted)")),
    responses((status = 200, body = Vec<String>), (status = 401, body = ErrorBody)))]
async fn list_groups(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
) -> ApiResult<axum::Json<Vec<String>>> {
    let q = query_pairs(&uri);
    let accepted = param(&q, "status") == Some("accepted");
    Ok(axum::Json(st.store.groups(accepted).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Updated {
    updated_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_count: Option<u64>,
}

/// Dissolve a group.
#[utoipa::path(delete, path = "/api/management/v1/inventory/groups/{name}", tag = "inventory", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Updated), (status = 401, body = ErrorBody)))]
async fn delete_group(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Updated>> {
    let n = inventory::remove_from_group(st.ctx(), &name, None).await?;
    Ok(axum::Json(Updated {
        updated_count: n,
        matched_count: None,
    }))
}

/// The ids of a group's devices.
#[utoipa::path(get, path = "/api/management/v1/inventory/groups/{name}/devices", tag = "inventory", security(("bearer" = [])),
    params(("name" = String, Path), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn group_devices(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(name): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let query = InventoryQuery {
        group: Some(name),
        page: page.page,
        per_page: page.per_page,
        ..InventoryQuery::default()
    };
    let (ids, total) = st.store.search_inventory(&query).await?;
    if total == 0 {
        return Err(ApiError::not_found("group not found"));
    }
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &ids,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

/// Add devices to a group.
#[utoipa::path(patch, path = "/api/management/v1/inventory/groups/{name}/devices", tag = "inventory", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = Vec<String>,
    responses((status = 200, body = Updated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn add_group_devices(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(name): Path<String>,
    ApiJson(ids): ApiJson<Vec<String>>,
) -> ApiResult<axum::Json<Updated>> {
    check_group(&name)?;
    if ids.is_empty() || ids.len() > 10_000 {
        return Err(ApiError::bad_request("give 1 to 10000 device ids"));
    }
    let (u, m) = inventory::add_to_group(st.ctx(), &name, &ids).await?;
    Ok(axum::Json(Updated {
        updated_count: u,
        matched_count: Some(m),
    }))
}

/// Remove devices from a group.
#[utoipa::path(delete, path = "/api/management/v1/inventory/groups/{name}/devices", tag = "inventory", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = Vec<String>,
    responses((status = 200, body = Updated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn remove_group_devices(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(name): Path<String>,
    ApiJson(ids): ApiJson<Vec<String>>,
) -> ApiResult<axum::Json<Updated>> {
    let n = inventory::remove_from_group(st.ctx(), &name, Some(&ids)).await?;
    Ok(axum::Json(Updated {
        updated_count: n,
        matched_count: None,
    }))
}

/// One v2 filter.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SearchFilter {
    scope: String,
    attribute: String,
    #[serde(rename = "type")]
    op: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    value: Value,
}

/// One v2 sort criterion.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SearchSort {
    scope: String,
    attribute: String,
    #[serde(default)]
    order: Option<String>,
}

/// An attribute selector.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Selector {
    scope: String,
    attribute: String,
}

/// Body of `POST /api/management/v2/inventory/filters/search`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct SearchBody {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    per_page: Option<u64>,
    #[serde(default)]
    filters: Vec<SearchFilter>,
    #[serde(default)]
    sort: Vec<SearchSort>,
    #[serde(default)]
    attributes: Vec<Selector>,
    #[serde(default)]
    device_ids: Vec<String>,
    #[serde(default)]
    text: Option<String>,
}

/// Search devices by inventory filters.
#[utoipa::path(post, path = "/api/management/v2/inventory/filters/search", tag = "inventory", security(("bearer" = [])),
    request_body = SearchBody,
    responses((status = 200, body = Vec<DeviceInventory>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn search_v2(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<SearchBody>,
) -> ApiResult<Response> {
    let page = Page::parse(
        b.page.map(|p| p.to_string()).as_deref(),
        b.per_page.map(|p| p.to_string()).as_deref(),
        500,
    )?;
    let filters = b
        .filters
        .into_iter()
        .map(|f| Filter {
            scope: f.scope,
            attribute: f.attribute,
            op: f.op,
            value: f.value,
        })
        .collect();
    let sort = b.sort.into_iter().next().map(|s| {
        let desc = s.order.as_deref() != Some("asc");
        (s.scope, s.attribute, desc)
    });
    let query = InventoryQuery {
        filters,
        ids: b.device_ids,
        sort,
        text: b.text,
        page: page.page,
        per_page: page.per_page,
        ..InventoryQuery::default()
    };
    check_query(&query)?;
    let (ids, total) = st.store.search_inventory(&query).await?;
    let mut items = load(&st, &ids).await?;
    if !b.attributes.is_empty() {
        for i in &mut items {
            i.attributes.retain(|a| {
                b.attributes
                    .iter()
                    .any(|s| s.scope == a.scope && s.attribute == a.name)
            });
        }
    }
    Ok(paged(&items, total, None))
}

#[derive(Serialize, utoipa::ToSchema)]
struct AttributeName {
    name: String,
    scope: String,
    count: u64,
}

/// Attribute names in use, with how many of the sampled devices have each.
#[utoipa::path(get, path = "/api/management/v2/inventory/filters/attributes", tag = "inventory", security(("bearer" = [])),
    responses((status = 200, body = Vec<AttributeName>), (status = 401, body = ErrorBody)))]
async fn filter_attributes(
    State(st): State<AppState>,
    _u: UserAuth,
) -> ApiResult<axum::Json<Vec<AttributeName>>> {
    // Sample the newest 500 devices.
    let q = InventoryQuery {
        page: 1,
        per_page: 500,
        sort: Some(("system".into(), "created_ts".into(), true)),
        ..InventoryQuery::default()
    };
    let (ids, _) = st.store.search_inventory(&q).await?;
    let mut counts: std::collections::BTreeMap<(String, String), u64> =
        std::collections::BTreeMap::new();
    for i in load(&st, &ids).await? {
        for a in i.attributes {
            *counts.entry((a.scope, a.name)).or_default() += 1;
        }
    }
    let mut out: Vec<_> = counts
        .into_iter()
        .map(|((scope, name), count)| AttributeName { name, scope, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    out.truncate(500);
    Ok(axum::Json(out))
}
