//! Artifact files, through `object_store`: a local folder (the default, [`local`]), an
//! S3-compatible bucket ([`s3`]), or memory in tests.
//!
//! Each artifact's file is kept under `artifacts/<artifact id>`. An upload is written straight
//! to that key but only becomes visible when it is finished: S3 completes its multipart upload,
//! the local folder renames its staging file. A refused upload is aborted, so nothing is kept,
//! and no server-side copy is ever made (S3 copies one object in one request up to 5 GiB only).
//! Files of older data folders, kept under `artifacts/<sha256>` and shared by artifacts of the
//! same content, are still read and deleted. [`cleanup`] removes what a crash left behind.

pub mod cleanup;
pub mod local;
pub mod s3;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};

use crate::store::ArtifactRow;

/// Which file: an artifact's id and the digest older data folders keyed it by.
#[derive(Debug, Clone, Copy)]
pub struct BlobRef<'a> {
    /// Artifact id.
    pub id: &'a str,
    /// SHA-256 of the file (hex).
    pub sha256: &'a str,
}

impl<'a> From<&'a ArtifactRow> for BlobRef<'a> {
    fn from(a: &'a ArtifactRow) -> Self {
        Self {
            id: &a.id,
            sha256: &a.sha256,
        }
    }
}

/// Size of one uploaded part (S3 wants at least 5 MiB but the last).
pub(crate) const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once during an upload.
const PARTS_IN_FLIGHT: usize = 4;

/// A blob store failure.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage could not be reached or refused the operation.
    #[error("artifact storage ({backend}) unavailable: {source}")]
    Unavailable {
        /// `local`, `s3` or `memory`.
        backend: &'static str,
        /// The underlying error.
        source: object_store::Error,
    },
    /// The file is not there.
    #[error("artifact file {key} not found in the {backend} storage")]
    NotFound {
        /// `local`, `s3` or `memory`.
        backend: &'static str,
        /// The key looked for.
        key: String,
    },
    /// An upload to this artifact id is already in progress on this server.
    #[error("an upload of artifact {0} is already in progress")]
    Busy(String),
}

/// The blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    backend: &'static str,
    /// Key prefix (S3 `s3://bucket/prefix`), empty or ending in `/`.
    prefix: String,
    /// Signs download URLs for devices (S3 only).
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// The local folder, whose crash leftovers `object_store` does not list.
    local_dir: Option<std::path::PathBuf>,
    /// Artifact ids with an upload in progress here.
    uploading: Arc<Mutex<HashSet<String>>>,
    /// Whether objects carry their content type (S3; a local folder keeps no attributes).
    typed: bool,
}

/// An upload in progress.
pub struct Upload {
    writer: WriteMultipart,
    reserved: Reserved,
}

/// A finished upload whose artifact row is not written yet; drop it once it is.
pub struct Committed(#[allow(dead_code)] Reserved);

/// An artifact id with an upload in progress; released when dropped.
struct Reserved {
    id: String,
    uploading: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Ok(mut set) = self.uploading.lock() {
            set.remove(&self.id);
        }
    }
}

impl Blobs {
    fn new(store: Arc<dyn ObjectStore>, backend: &'static str, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            store,
            backend,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            signer: None,
            local_dir: None,
            uploading: Arc::default(),
            typed: false,
        }
    }

    /// Blobs in memory (tests).
    pub fn memory() -> Self {
        Self::new(
            Arc::new(object_store::memory::InMemory::new()),
            "memory",
            "",
        )
    }

    /// Opens the storage a configuration names.
    pub fn open(location: &crate::config::BlobLocation) -> anyhow::Result<Self> {
        match location {
            crate::config::BlobLocation::Local(dir) => local::open(dir),
            crate::config::BlobLocation::S3(cfg) => s3::open(cfg),
        }
    }

    /// `local`, `s3` or `memory`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    fn path(&self, rest: &str) -> StorePath {
        StorePath::from(format!("{}{rest}", self.prefix))
    }

    fn artifact_key(&self, id: &str) -> StorePath {
        self.path(&format!("artifacts/{id}"))
    }

    fn error(&self, source: object_store::Error) -> BlobError {
        match source {
            object_store::Error::NotFound { path, .. } => BlobError::NotFound {
                backend: self.backend,
                key: path,
            },
            source => BlobError::Unavailable {
                backend: self.backend,
                source,
            },
        }
    }

    /// Starts the upload of artifact `id`'s file; invisible until [`Self::commit`].
    pub async fn start_upload(&self, id: &str) -> Result<Upload, BlobError> {
        let reserved = {
            let mut set = self
                .uploading
                .lock()
                .map_err(|_| BlobError::Busy(id.to_owned()))?;
            if !set.insert(id.to_owned()) {
                return Err(BlobError::Busy(id.to_owned()));
            }
            Reserved {
                id: id.to_owned(),
                uploading: self.uploading.clone(),
            }
        };
        let mut opts = object_store::PutMultipartOptions::default();
        if self.typed {
            // Served as is by S3 to devices: say what it is, as the server's own route does.
            opts.attributes.insert(
                object_store::Attribute::ContentType,
                "application/vnd.mender-artifact".into(),
            );
        }
        let upload = self
            .store
            .put_multipart_opts(&self.artifact_key(id), opts)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            reserved,
        })
    }

    /// Writes a chunk of an upload (waits while too many parts are in flight).
    pub async fn write(&self, upload: &mut Upload, chunk: &[u8]) -> Result<(), BlobError> {
        upload
            .writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|e| self.error(e))?;
        upload.writer.write(chunk);
        Ok(())
    }

    /// Finishes an upload: the file becomes visible under its artifact id. The orphan cleanup
    /// of this server leaves it alone while the returned guard lives (until its row is written).
    pub async fn commit(&self, upload: Upload) -> Result<Committed, BlobError> {
        upload.writer.finish().await.map_err(|e| self.error(e))?;
        Ok(Committed(upload.reserved))
    }

    /// Whether an upload of this artifact id is in progress (or committed without its row yet).
    pub(crate) fn is_uploading(&self, id: &str) -> bool {
        self.uploading.lock().map_or(true, |set| set.contains(id))
    }

    /// Drops an upload and whatever it wrote.
    pub async fn abort(&self, upload: Upload) {
        if let Err(e) = upload.writer.abort().await {
            tracing::warn!(artifact.id = %upload.reserved.id, error = %e, "could not abort an upload; the orphan cleanup removes it later");
        }
    }

    /// Deletes an artifact's file; `shared` tells whether another artifact has the same
    /// digest (then a file of an older data folder, kept under the digest, stays).
    pub async fn delete(&self, a: impl Into<BlobRef<'_>>, shared: bool) -> Result<(), BlobError> {
        let a = a.into();
        self.delete_key(&self.artifact_key(a.id)).await?;
        if !shared && is_sha256(a.sha256) {
            self.delete_key(&self.artifact_key(a.sha256)).await?;
        }
        Ok(())
    }

    async fn delete_key(&self, key: &StorePath) -> Result<(), BlobError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// A URL devices download the file from directly, valid for `expires_in` (S3 only; `None`
    /// for storage the server serves itself).
    pub async fn presigned_get(
        &self,
        a: impl Into<BlobRef<'_>>,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(
                axum::http::Method::GET,
                &self.artifact_key(a.into().id),
                expires_in,
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(Some(url.to_string()))
    }

    /// Streams a byte range of an artifact's file.
    pub async fn get(
        &self,
        a: impl Into<BlobRef<'_>>,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>, BlobError> {
        let opts = || GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let a = a.into();
        let r = match self.store.get_opts(&self.artifact_key(a.id), opts()).await {
            Err(object_store::Error::NotFound { .. }) if is_sha256(a.sha256) => {
                self.store
                    .get_opts(&self.artifact_key(a.sha256), opts())
                    .await
            }
            other => other,
        }
        .map_err(|e| self.error(e))?;
        let range = r.range.clone();
        match r.payload {
            // A local file: read it in large chunks (object_store's own stream reads 8 KiB at a
            // time, which caps a download far below what TLS on loopback can carry).
            GetResultPayload::File(file, path) => {
                use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(|source| {
                        self.error(object_store::Error::Generic {
                            store: "local",
                            source: format!("seeking {}: {source}", path.display()).into(),
                        })
                    })?;
                let reader = file.take(range.end - range.start);
                Ok(tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20)
                    .map(|r| {
                        r.map_err(|e| object_store::Error::Generic {
                            store: "local",
                            source: Box::new(e),
                        })
                    })
                    .boxed())
            }
            GetResultPayload::Stream(s) => Ok(s),
        }
    }
}

impl From<BlobError> for crate::error::ApiError {
    fn from(e: BlobError) -> Self {
        use axum::http::StatusCode;
        match e {
            BlobError::Unavailable { .. } => {
                tracing::warn!(error = %e, "artifact storage unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            BlobError::Busy(_) => Self::conflict(e.to_string()),
            BlobError::NotFound { .. } => Self::internal(e),
        }
    }
}

/// Whether a key's last part is a SHA-256 in hex (a file of an older data folder).
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row<'a>(id: &'a str, sha256: &'a str) -> BlobRef<'a> {
        BlobRef { id, sha256 }
    }

    async fn read_all(b: &Blobs, a: BlobRef<'_>, range: Option<Range<u64>>) -> Vec<u8> {
        let mut s = b.get(a, range).await.unwrap();
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_upload_is_invisible_until_committed_and_gone_when_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let b = local::open(dir.path()).unwrap();
        let a = row("a1", "");
        let mut up = b.start_upload("a1").await.unwrap();
        b.write(&mut up, &vec![7u8; 9 << 20]).await.unwrap();
        assert!(matches!(
            b.get(a, None).await,
            Err(BlobError::NotFound { .. })
        ));
        assert!(matches!(
            b.start_upload("a1").await,
            Err(BlobError::Busy(_))
        ));
        b.commit(up).await.unwrap();
        assert_eq!(read_all(&b, a, Some(3..6)).await, vec![7u8; 3]);

        let mut up = b.start_upload("a2").await.unwrap();
        b.write(&mut up, b"refused").await.unwrap();
        b.abort(up).await;
        assert!(b.get(row("a2", ""), None).await.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["a1".to_owned()], "only the committed file");
    }

    #[tokio::test]
    async fn files_of_older_data_folders_are_read_and_deleted_when_unshared() {
        let b = Blobs::memory();
        let sha = "ab".repeat(32);
        b.store
            .put(&b.artifact_key(&sha), b"old".to_vec().into())
            .await
            .unwrap();
        let a = row("id1", &sha);
        assert_eq!(read_all(&b, a, None).await, b"old");
        b.delete(a, true).await.unwrap();
        assert_eq!(read_all(&b, a, None).await, b"old", "shared: kept");
        b.delete(a, false).await.unwrap();
        assert!(b.get(a, None).await.is_err());
    }
}
