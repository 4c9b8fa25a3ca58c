//! Artifacts and releases (`/api/management/v1/deployments/artifacts`, `.../releases`).
//!
//! An upload is streamed into [`crate::service::artifacts::ingest`]; storage that cannot be
//! reached answers 503. After a full rootfs artifact, the server makes deltas to it in the
//! background ([`crate::service::deltas`]).

use std::collections::BTreeMap;

use aloft_api::management::{
    Artifact, ArtifactFormat, ArtifactUpdate, DownloadLink, ErrorBody, ReleaseV1, Update,
};
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    ApiJson, AppState, Page, Settings, UserAuth, check_uuid, created, paged, param, query_pairs,
};
use crate::error::{ApiError, ApiResult};
use crate::store::{ArtifactQuery, ArtifactRow};
use crate::time::rfc3339;

pub(super) fn routes(settings: &Settings) -> OpenApiRouter<AppState> {
    let limit =
        usize::try_from(settings.max_artifact_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    OpenApiRouter::new()
        .routes(routes!(upload, list_all))
        .layer(DefaultBodyLimit::max(limit))
        .routes(routes!(list_paged))
        .routes(routes!(get_artifact, update_artifact, delete_artifact))
        .routes(routes!(download_link))
        .routes(routes!(storage_limits))
        .routes(routes!(releases_v1))
        .routes(routes!(releases_v1_list))
        .routes(routes!(releases_v2))
}

/// The JSON of an artifact.
pub(crate) fn artifact_json(a: &ArtifactRow) -> Artifact {
    let updates: Vec<Update> = serde_json::from_value(a.updates.clone()).unwrap_or_default();
    Artifact {
        id: a.id.clone(),
        name: a.name.clone(),
        description: a.description.clone(),
        device_types_compatible: a.device_types.clone(),
        info: ArtifactFormat {
            format: "mender".into(),
            version: a.format_version,
        },
        signed: a.signed,
        updates,
        artifact_provides: a.provides.clone(),
        artifact_depends: a.depends.clone(),
        clears_artifact_provides: a.clears.clone(),
        size: a.size,
        modified: rfc3339(a.modified),
    }
}

/// Upload an artifact (multipart: optional `size`, `description`, `artifact_id`, then `artifact`).
#[utoipa::path(post, path = "/api/management/v1/deployments/artifacts", tag = "artifacts", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "parts size?, description?, artifact_id?, artifact"),
    responses((status = 201, description = "stored; Location: ./management/v1/deployments/artifacts/<id>"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, description = "the artifact storage cannot be reached; nothing was stored", body = ErrorBody)))]
async fn upload(
    State(st): State<AppState>,
    _u: UserAuth,
    version: axum::http::Version,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut mp = mp.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a multipart/form-data body: {}", e.body_text()),
        )
    })?;
    let mut description = String::new();
    let mut size = None;
    let mut id = None;
    loop {
        let field = mp.next_field().await.map_err(|e| {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        })?;
        let Some(field) = field else {
            return Err(ApiError::bad_request("the request has no artifact part"));
        };
        match field.name().unwrap_or_default() {
            "size" => {
                let t = text_part(field, "size", 64).await?;
                size = Some(
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| ApiError::bad_request("size must be a number"))?,
                );
            }
            "description" => {
                description = text_part(field, "description", 4096).await?;
            }
            "artifact_id" => {
                let t = text_part(field, "artifact_id", 64).await?;
                check_uuid(t.trim())?;
                id = Some(t.trim().to_lowercase());
            }
            "artifact" => {
                let row = match crate::service::artifacts::ingest(&st, field, size, description, id)
                    .await
                {
                    Ok(row) => row,
                    // The rest of the body may be unread (storage down, too large): say that the
                    // connection closes, so that the client does not send its next request on it.
                    Err(e) => {
                        let mut resp = e.into_response();
                        if version < axum::http::Version::HTTP_2 {
                            resp.headers_mut().insert(
                                axum::http::header::CONNECTION,
                                axum::http::HeaderValue::from_static("close"),
                            );
                        }
                        return Ok(resp);
                    }
                };
                tracing::info!(artifact.id = %row.id, artifact.name = %row.name, size_bytes = row.size, "artifact uploaded");
                crate::service::deltas::after_upload(&st, &row);
                return Ok(created(&format!(
                    "./management/v1/deployments/artifacts/{}",
                    row.id
                )));
            }
            _ => {}
        }
    }
}

/// A text part, refused as soon as it grows past `max` bytes (never read whole first).
async fn text_part(mut field: Field<'_>, name: &str, max: usize) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::bad_request(format!(
                "{name} longer than {max} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request(format!("{name} is not UTF-8")))
}

fn artifact_query(q: &[(String, String)]) -> ApiResult<ArtifactQuery> {
    let sort = match param(q, "sort").unwrap_or("name:asc") {
        "name:asc" | "name" => ("name".to_owned(), false),
        "name:desc" => ("name".to_owned(), true),
        "modified:asc" | "modified" => ("modified".to_owned(), false),
        "modified:desc" => ("modified".to_owned(), true),
        other => return Err(ApiError::bad_request(format!("invalid sort {other:?}"))),
    };
    Ok(ArtifactQuery {
        name: param(q, "name").map(str::to_owned),
        description: param(q, "description").map(str::to_owned),
        device_type: param(q, "device_type").map(str::to_owned),
        sort,
        page: 0,
        per_page: 0,
    })
}

/// All artifacts (no paging; deprecated in Mender, kept for older tools).
#[utoipa::path(get, path = "/api/management/v1/deployments/artifacts", tag = "artifacts", security(("bearer" = [])),
    params(("name" = Option<String>, Query), ("description" = Option<String>, Query), ("device_type" = Option<String>, Query)),
    responses((status = 200, body = Vec<Artifact>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_all(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
) -> ApiResult<axum::Json<Vec<Artifact>>> {
    let q = query_pairs(&uri);
    let (rows, _) = st.store.artifacts(&artifact_query(&q)?).await?;
    Ok(axum::Json(rows.iter().map(artifact_json).collect()))
}

/// Artifacts, paged.
#[utoipa::path(get, path = "/api/management/v1/deployments/artifacts/list", tag = "artifacts", security(("bearer" = [])),
    params(("name" = Option<String>, Query), ("description" = Option<String>, Query), ("device_type" = Option<String>, Query),
        ("sort" = Option<String>, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<Artifact>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_paged(State(st): State<AppState>, _u: UserAuth, uri: Uri) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let mut query = artifact_query(&q)?;
    query.page = page.page;
    query.per_page = page.per_page;
    let (rows, total) = st.store.artifacts(&query).await?;
    let items: Vec<Artifact> = rows.iter().map(artifact_json).collect();
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &items,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

async fn find(st: &AppState, id: &str) -> ApiResult<ArtifactRow> {
    check_uuid(id)?;
    st.store
        .artifact(id)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact not found"))
}

/// One artifact.
#[utoipa::path(get, path = "/api/management/v1/deployments/artifacts/{id}", tag = "artifacts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Artifact), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_artifact(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Artifact>> {
    Ok(axum::Json(artifact_json(&find(&st, &id).await?)))
}

/// Change an artifact's description (until it was deployed).
#[utoipa::path(put, path = "/api/management/v1/deployments/artifacts/{id}", tag = "artifacts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ArtifactUpdate,
    responses((status = 204, description = "changed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_artifact(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ArtifactUpdate>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    if b.description.len() > 4096 {
        return Err(ApiError::bad_request(
            "description longer than 4096 characters",
        ));
    }
    st.store
        .set_artifact_description(&id, &b.description)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete an artifact (409 while an active deployment uses it).
#[utoipa::path(delete, path = "/api/management/v1/deployments/artifacts/{id}", tag = "artifacts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_artifact(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let a = find(&st, &id).await?;
    let shared = st.store.delete_artifact(&id).await?;
    // The row is gone: a file that cannot be deleted now is an orphan the cleanup removes.
    if let Err(e) = st.blobs.delete(&a, shared).await {
        tracing::warn!(artifact.id = %id, error = %e, "artifact file not deleted; the orphan cleanup removes it");
    }
    tracing::info!(artifact.id = %id, "artifact deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A pre-signed download link, usable without authorization until it expires.
#[utoipa::path(get, path = "/api/management/v1/deployments/artifacts/{id}/download", tag = "artifacts",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = DownloadLink), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn download_link(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<DownloadLink>> {
    let a = find(&st, &id).await?;
    let host = super::device::request_host(&headers);
    let (uri, expire) = super::device::download_link(&st, &a, host.as_deref()).await?;
    Ok(axum::Json(DownloadLink { uri, expire }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct StorageLimit {
    limit: u64,
    usage: u64,
}

/// Storage use (no limit).
#[utoipa::path(get, path = "/api/management/v1/deployments/limits/storage", tag = "artifacts", security(("bearer" = [])),
    responses((status = 200, body = StorageLimit), (status = 401, body = ErrorBody)))]
async fn storage_limits(
    State(st): State<AppState>,
    _u: UserAuth,
) -> ApiResult<axum::Json<StorageLimit>> {
    let (rows, _) = st
        .store
        .artifacts(&ArtifactQuery {
            page: 0,
            ..ArtifactQuery::default()
        })
        .await?;
    // Each artifact has its own file (older data folders shared files of equal content).
    let usage = rows.iter().map(|a| a.size).sum();
    Ok(axum::Json(StorageLimit { limit: 0, usage }))
}

async fn releases(st: &AppState, q: &[(String, String)]) -> ApiResult<Vec<ReleaseV1>> {
    let mut query = artifact_query(&[])?;
    query.device_type = param(q, "device_type").map(str::to_owned);
    let (rows, _) = st.store.artifacts(&query).await?;
    let mut by_name: BTreeMap<String, Vec<ArtifactRow>> = BTreeMap::new();
    for r in rows {
        by_name.entry(r.name.clone()).or_default().push(r);
    }
    let name = param(q, "name");
    let update_type = param(q, "update_type");
    let mut out: Vec<ReleaseV1> = by_name
        .into_iter()
        .filter(|(n, _)| name.is_none_or(|want| n.contains(want)))
        .filter(|(_, arts)| {
            update_type.is_none_or(|t| {
                arts.iter()
                    .any(|a| a.updates.to_string().contains(&format!("\"type\":\"{t}\"")))
            })
        })
        .map(|(n, arts)| ReleaseV1 {
            name: n,
            modified: rfc3339(arts.iter().map(|a| a.modified).max().unwrap_or_default()),
            artifacts_count: arts.len() as u64,
            artifacts: arts.iter().map(artifact_json).collect(),
            tags: Vec::new(),
            notes: String::new(),
        })
        .collect();
    match param(q, "sort").unwrap_or("name:asc") {
        "name:desc" => out.sort_by(|a, b| b.name.cmp(&a.name)),
        "modified:asc" => out.sort_by(|a, b| a.modified.cmp(&b.modified)),
        "modified:desc" => out.sort_by(|a, b| b.modified.cmp(&a.modified)),
        "artifacts_count:asc" => out.sort_by_key(|r| r.artifacts_count),
        "artifacts_count:desc" => out.sort_by_key(|r| std::cmp::Reverse(r.artifacts_count)),
        _ => {}
    }
    Ok(out)
}

/// Releases (artifacts grouped by name), unpaged.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/releases", tag = "releases", security(("bearer" = [])),
    params(("name" = Option<String>, Query), ("device_type" = Option<String>, Query)),
    responses((status = 200, body = Vec<ReleaseV1>), (status = 401, body = ErrorBody)))]
async fn releases_v1(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
) -> ApiResult<axum::Json<Vec<ReleaseV1>>> {
    Ok(axum::Json(releases(&st, &query_pairs(&uri)).await?))
}

fn page_of<T: Clone>(items: &[T], page: super::Page) -> Vec<T> {
    let start =
        usize::try_from((page.page - 1).saturating_mul(page.per_page)).unwrap_or(usize::MAX);
    items
        .iter()
        .skip(start)
        .take(usize::try_from(page.per_page).unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// Releases, paged.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/releases/list", tag = "releases", security(("bearer" = [])),
    params(("name" = Option<String>, Query), ("device_type" = Option<String>, Query), ("update_type" = Option<String>, Query),
        ("sort" = Option<String>, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, body = Vec<ReleaseV1>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn releases_v1_list(
    State(st): State<AppState>,
    _u: UserAuth,
    uri: Uri,
) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let all = releases(&st, &q).await?;
    let total = all.len() as u64;
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &page_of(&all, page),
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}

/// Releases with lower-case keys (v2).
#[utoipa::path(get, path = "/api/management/v2/deployments/deployments/releases", tag = "releases", security(("bearer" = [])),
    params(("name" = Option<String>, Query), ("device_type" = Option<String>, Query), ("update_type" = Option<String>, Query),
        ("sort" = Option<String>, Query), ("page" = Option<u64>, Query), ("per_page" = Option<u64>, Query)),
    responses((status = 200, description = "releases"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn releases_v2(State(st): State<AppState>, _u: UserAuth, uri: Uri) -> ApiResult<Response> {
    let q = query_pairs(&uri);
    let page = Page::parse(param(&q, "page"), param(&q, "per_page"), 500)?;
    let all = releases(&st, &q).await?;
    let total = all.len() as u64;
    let items: Vec<Value> = page_of(&all, page)
        .into_iter()
        .map(|r| json!({"name": r.name, "modified": r.modified, "artifacts": r.artifacts, "artifacts_count": r.artifacts_count, "tags": r.tags, "notes": r.notes}))
        .collect();
    let has_next = page.page.saturating_mul(page.per_page) < total;
    Ok(paged(
        &items,
        total,
        Some(page.link(uri.path(), &q, has_next)),
    ))
}
