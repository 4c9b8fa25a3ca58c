//! Storing an artifact: an upload is streamed once. Each chunk goes both to the blob store (an
//! upload under the artifact's id, invisible until finished: S3 multipart parts or a local
//! staging file) and, through a bounded channel, to the artifact library validating it on a
//! blocking thread. Only when the whole file was accepted is the upload finished and the
//! metadata row written; anything else aborts it, so a refused or cut upload leaves nothing
//! behind. The same path stores what a user uploads and the deltas the server makes.

use std::collections::BTreeMap;
use std::io::Read;

use aloft_api::management::{TypeInfo, Update, UpdateFile};
use aloft_artifact::{ArtifactReader, ReadOptions, SignatureState};
use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::store::{ArtifactRow, StoreError};
use crate::time::{now_us, rfc3339};

/// Where the bytes of an artifact come from, chunk by chunk.
pub trait Chunks: Send {
    /// The next chunk; `None` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>> + Send;
}

impl Chunks for Field<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.chunk().await.map_err(|e| e.body_text())
    }
}

/// A file on disk, read in 1 MiB chunks.
pub struct FileChunks(pub tokio::fs::File);

impl Chunks for FileChunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 1 << 20];
        let n = self.0.read(&mut buf).await.map_err(|e| e.to_string())?;
        buf.truncate(n);
        Ok((n > 0).then(|| Bytes::from(buf)))
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
pub async fn ingest(
    st: &AppState,
    mut field: impl Chunks,
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
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if st.store.artifact(&id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "an artifact with id {id} exists"
        )));
    }
    let mut upload = st.blobs.start_upload(&id).await?;
    let max = st.settings.max_artifact_bytes;
    let mut received: u64 = 0;
    let mut failure: Option<ApiError> = None;
    loop {
        match field.next_chunk().await {
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
                    failure = Some(e.into());
                    break;
                }
                if tx.send(chunk).await.is_err() {
                    break; // the validator stopped: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(ApiError::bad_request(format!("upload interrupted: {e}")));
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
            row.id = id;
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
    // Held until the row is written, so that this server's orphan cleanup leaves the file alone.
    let _committed = st.blobs.commit(upload).await?;
    match st.store.insert_artifact(&row).await {
        Ok(()) => Ok(row),
        Err(e) => {
            // The file is this upload's own (keyed by the new id): nobody else refers to it.
            if let Err(e) = st.blobs.delete(&row, true).await {
                tracing::warn!(artifact.id = %row.id, error = %e, "could not delete the file of a refused artifact; the orphan cleanup removes it");
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
