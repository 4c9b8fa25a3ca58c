//! The orphan cleanup: files no artifact refers to, left by a crash between writing a file and
//! writing its row, or by a process killed mid-upload (a local staging file, an upload of an
//! older version under `uploads/`). Only files older than the orphan age are touched, so an
//! upload in progress is never taken for an orphan. `crate::server` runs it as a job that one
//! replica claims per interval (`crate::cluster::every`); deletes are idempotent anyway.
//! Unfinished S3 multipart uploads are invisible to listing; a bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) removes them (see docs/server-config.md).

use std::time::Duration;

use futures::TryStreamExt as _;

use super::{Blobs, is_sha256};
use crate::store::Store;

/// What one run removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Files deleted.
    pub deleted: usize,
}

/// Whether the file under `artifacts/<name>` has no artifact any more.
async fn is_orphan(store: &dyn Store, name: &str) -> anyhow::Result<bool> {
    Ok(if is_sha256(name) {
        !store.blob_in_use(name).await?
    } else {
        store.artifact(name).await?.is_none()
    })
}

impl Blobs {
    /// Deletes the orphans older than `age`.
    pub async fn clean_orphans(&self, store: &dyn Store, age: Duration) -> anyhow::Result<Cleaned> {
        let mut cleaned = Cleaned::default();
        let cutoff = unix_now().saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
        for dir in ["artifacts", "uploads"] {
            let prefix = self.path(dir);
            let objects: Vec<_> = self
                .store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            for o in objects
                .into_iter()
                .filter(|o| o.last_modified.timestamp() <= cutoff)
            {
                let name = o.location.filename().unwrap_or_default().to_owned();
                if self.is_uploading(&name) {
                    continue;
                }
                if dir == "uploads" || is_orphan(store, &name).await? {
                    self.delete_key(&o.location).await?;
                    tracing::info!(blob.key = %o.location, "orphan artifact file deleted");
                    cleaned.deleted += 1;
                }
            }
        }
        if let Some(dir) = &self.local_dir {
            for path in super::local::stale_staging_files(dir, age) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(blob.path = %path.display(), "unfinished upload deleted");
                        cleaned.deleted += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(blob.path = %path.display(), error = %e, "cannot delete an unfinished upload");
                    }
                }
            }
        }
        Ok(cleaned)
    }
}

fn unix_now() -> i64 {
    crate::time::now_us() / 1_000_000
}
