//! Artifacts and releases (`/api/management/v1/deployments/artifacts`, `.../releases`).
//!
//! An upload is streamed once: each chunk goes both to the blob store (under a temporary key)
//! and, through a bounded channel, to the artifact library validating it on a blocking
//! thread. Only when the whole file was accepted is the blob renamed to its digest and the
//! metadata row written; anything else deletes the temporary blob, so a refused or cut upload
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::io::Read;

use aloft_api::management::{
    Artifact, ArtifactFormat, ArtifactUpdate, DownloadLink, ErrorBody, ReleaseV1, TypeInfo, Update,
    UpdateFile,
};
use aloft_artifact::{ArtifactReader, ReadOptions, SignatureState};
use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    ApiJson, AppState, Page, Settings, UserAuth, check_uuid, created, paged, param, query_pairs,
};
use crate::error::{ApiError, ApiResult};
use crate::store::{ArtifactQuery, ArtifactRow, StoreError};
use crate::time::{now_us, rfc3339};

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

/// Feeds the validator thread the chunks of the upload, hashing them on the way.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
    sha: Sha256,
    total: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf[..n].copy_from_slice(&chunk);
        self.sha.update(&chunk);
        self.total += n as u64;
        Ok(n)
    }
}

/// Validates an artifact (checksums, signature structure, header) and describes it.
fn check_artifact<R: Read + Send>(reader: R, now: i64) -> Result<ArtifactRow, String> {
    let rd = ArtifactReader::open(reader, &ReadOptions::default())
        .map_err(|e| aloft_artifact::error_chain(&e))?;
    let info = rd.info().clone();
    let summary = rd.validate().map_err(|e| aloft_artifact::error_chain(&e))?;
    let mut depends: BTreeMap<String, Value> = BTreeMap::new();
    depends.insert("device_type".into(), json!(info.device_types));
    if !info.depends_artifact_name.is_empty() {
        depends.insert("artifact_name".into(), json!(info.depends_artifact_name));
    }
    if !info.depends_group.is_empty() {
        depends.insert("artifact_group".into(), json!(info.depends_group));
    }
    let mut clears = Vec::new();
    let mut updates = Vec::new();
    let date = rfc3339(now);
    for (i, p) in info.payloads.iter().enumerate() {
        for (k, v) in &p.type_info.depends {
            depends.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
        }
        clears.extend(p.type_info.clears.clone().unwrap_or_default());
        updates.push(Update {
            type_info: TypeInfo {
                kind: p.payload_type.as_str().map(str::to_owned),
            },
            meta_data: p.meta_data.clone().map_or_else(|| json!({}), Value::Object),
            files: summary
                .files
                .iter()
                .filter(|f| f.payload == i && !f.augment)
                .map(|f| UpdateFile {
                    name: f.name.clone(),
                    checksum: hex::encode(f.sha256),
                    size: f.size,
                    date: date.clone(),
                })
                .collect(),
        });
    }
    Ok(ArtifactRow {
        id: String::new(),
        name: info.name.clone(),
        description: String::new(),
        device_types: info.device_types.clone(),
        depends,
        provides: info.provides(),
        clears,
        updates: serde_json::to_value(&updates).unwrap_or(Value::Null),
        format_version: info.format_version,
        signed: info.signature != SignatureState::Unsigned,
        size: summary.artifact_size,
        sha256: String::new(),
        modified: now,
    })
}

/// Streams the `artifact` part to storage while validating it; returns the stored row.
async fn ingest(
    st: &AppState,
    mut field: Field<'_>,
    declared_size: Option<u64>,
    description: String,
    id: Option<String>,
) -> ApiResult<ArtifactRow> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let now = now_us();
    let validator = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
            sha: Sha256::new(),
            total: 0,
        };
        let result = check_artifact(&mut reader, now);
        // Read whatever follows the last member (tar padding), so the digest covers the file.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        (result, hex::encode(reader.sha.finalize()), reader.total)
    });
    let mut upload = st.blobs.start_upload().await.map_err(ApiError::internal)?;
    let max = st.settings.max_artifact_bytes;
    let mut received: u64 = 0;
    let mut failure: Option<ApiError> = None;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > max {
                    failure = Some(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("artifact larger than {max} bytes"),
                    ));
                    break;
                }
                if let Err(e) = st.blobs.write(&mut upload, &chunk).await {
                    failure = Some(ApiError::internal(e));
                    break;
                }
                if tx.send(chunk).await.is_err() {
                    break; // the validator stopped: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(ApiError::bad_request(format!(
                    "upload interrupted: {}",
                    e.body_text()
                )));
                break;
            }
        }
    }
    drop(tx);
    let (result, sha256, validated_bytes) = validator.await.map_err(ApiError::internal)?;
    let outcome = match (failure, result) {
        (Some(e), _) => Err(e),
        (None, Err(msg)) => Err(ApiError::bad_request(format!("invalid artifact: {msg}"))),
        (None, Ok(_)) if declared_size.is_some_and(|s| s != received) => {
            Err(ApiError::bad_request(format!(
                "the artifact has {received} bytes, the size part said {}",
                declared_size.unwrap_or_default()
            )))
        }
        (None, Ok(_)) if validated_bytes != received => {
            Err(ApiError::bad_request("the artifact has data after its end"))
        }
        (None, Ok(mut row)) => {
            row.id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            row.description = description;
            row.sha256 = sha256;
            row.size = received;
            Ok(row)
        }
    };
    let row = match outcome {
        Ok(row) => row,
        Err(e) => {
            st.blobs.abort(upload).await;
            return Err(e);
        }
    };
    st.blobs
        .commit(upload, &row.sha256)
        .await
        .map_err(ApiError::internal)?;
    match st.store.insert_artifact(&row).await {
        Ok(()) => Ok(row),
        Err(e) => {
            // The blob may be shared with an artifact of the same content: delete only if not.
            if !st.store.blob_in_use(&row.sha256).await.unwrap_or(true) {
                let _ = st.blobs.delete(&row.sha256).await;
            }
            Err(match e {
                StoreError::Conflict(dt) => {
                    let mut err = ApiError::conflict(
                        "An artifact with the same name has conflicting depends (an artifact with the same name and depends already exists)",
                    );
                    err.extra = Some(json!({"metadata": {"conflict": {"device_type": dt}}}));
                    err
                }
                other => other.into(),
            })
        }
    }
}

/// Upload an artifact (multipart: optional `size`, `description`, `artifact_id`, then `artifact`).
#[utoipa::path(post, path = "/api/management/v1/deployments/artifacts", tag = "artifacts", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "parts size?, description?, artifact_id?, artifact"),
    responses((status = 201, description = "stored; Location: ./management/v1/deployments/artifacts/<id>"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn upload(
    State(st): State<AppState>,
    _u: UserAuth,
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
                let t = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(e.body_text()))?;
                size = Some(
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| ApiError::bad_request("size must be a number"))?,
                );
            }
            "description" => {
                description = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(e.body_text()))?;
                if description.len() > 4096 {
                    return Err(ApiError::bad_request(
                        "description longer than 4096 characters",
                    ));
                }
            }
            "artifact_id" => {
                let t = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(e.body_text()))?;
                check_uuid(t.trim())?;
                id = Some(t.trim().to_lowercase());
            }
            "artifact" => {
                let row = ingest(&st, field, size, description, id).await?;
                tracing::info!(artifact.id = %row.id, artifact.name = %row.name, size_bytes = row.size, "artifact uploaded");
                return Ok(created(&format!(
                    "./management/v1/deployments/artifacts/{}",
                    row.id
                )));
            }
            _ => {}
        }
    }
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
    if !shared {
        st.blobs
            .delete(&a.sha256)
            .await
            .map_err(ApiError::internal)?;
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
    let (uri, expire) = super::device::download_link(&st, &a.id, host.as_deref());
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
    let mut seen = std::collections::BTreeSet::new();
    let usage = rows
        .iter()
        .filter(|a| seen.insert(a.sha256.clone()))
        .map(|a| a.size)
        .sum();
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
