//! Dynamic groups: saved inventory filters (`/api/management/v2/inventory/filters`, Mender
//! Enterprise's paths and shapes).

use aloft_api::management::{DeviceInventory, ErrorBody, NewSavedFilter, SavedFilter};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inventory::load;
use super::{ApiJson, AppState, Page, UserAuth, check_uuid, created, paged, param, query_pairs};
use crate::error::ApiResult;
use crate::service::dynamic;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, delete))
        .routes(routes!(members))
}

/// Save a filter: a dynamic group. Its name is unique.
#[utoipa::path(post, path = "/api/management/v2/inventory/filters", tag = "inventory", security(("bearer" = [])),
    request_body = NewSavedFilter,
    responses((status = 201, description = "created; Location: ./filters/<id>"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<NewSavedFilter>,
) -> ApiResult<Response> {
    let f = dynamic::create(st.ctx(), b).await?;
    Ok(created(&format!("./filters/{}", f.id)))
}

/// Every saved filter, by name.
#[utoipa::path(get, path = "/api/management/v2/inventory/filters", tag = "inventory", security(("bearer" = [])),
    responses((status = 200, body = Vec<SavedFilter>), (status = 401, body = ErrorBody)))]
async fn list(State(st): State<AppState>, _u: UserAuth) -> ApiResult<axum::Json<Vec<SavedFilter>>> {
    Ok(axum::Json(dynamic::list(st.ctx()).await?))
}

/// One saved filter.
#[utoipa::path(get, path = "/api/management/v2/inventory/filters/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SavedFilter), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_one(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SavedFilter>> {
    check_uuid(&id)?;
    Ok(axum::Json(dynamic::find(st.ctx(), &id).await?))
}

/// Delete a saved filter. Dynamic deployments that follow it keep their copy of its terms.
#[utoipa::path(delete, path = "/api/management/v2/inventory/filters/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    check_uuid(&id)?;
    dynamic::delete(st.ctx(), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The devices a saved filter matches now (any admission status), with `X-Total-Count`.
#[utoipa::path(get, path = "/api/management/v2/inventory/filters/{id}/search", tag = "inventory", security(("bearer" = [])),
    params(("id" = String, Path), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<DeviceInventory>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn members(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    check_uuid(&id)?;
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let f = dynamic::find(st.ctx(), &id).await?;
    let mut query = dynamic::members_query(&f);
    query.page = page.page;
    query.per_page = page.per_page;
    let (ids, total) = st.store.search_inventory(&query).await?;
    Ok(paged(&load(&st, &ids).await?, total, None))
}
