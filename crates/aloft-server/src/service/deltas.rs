//! Deltas the server makes: after a full rootfs-image artifact is stored, delta artifacts to it
//! from the releases most devices of its type run ([`Settings::delta_sources`](crate::http::Settings)),
//! when the server holds their full artifacts. It runs in the background, beside the upload; a
//! delta is stored through the same [`ingest`] path as an upload, so a failure leaves nothing.
//! The server holds no signing key: its deltas are unsigned (see ARCHITECTURE.md).

use anyhow::{Context as _, anyhow};
use futures::StreamExt as _;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::domain::artifacts::{DELTA_TYPE, payload_type};
use crate::http::AppState;
use crate::service::artifacts::{FileChunks, ingest};
use crate::store::ArtifactRow;

const ROOTFS: &str = "rootfs-image";

/// Starts making the deltas to `new` in the background, when it is a full rootfs image and
/// deltas are on.
pub fn after_upload(st: &AppState, new: &ArtifactRow) {
    if st.settings.delta_sources == 0 || payload_type(&new.updates) != Some(ROOTFS) {
        return;
    }
    let (st, new) = (st.clone(), new.clone());
    tokio::spawn(async move {
        match make_for(&st, &new).await {
            Ok(made) if made.is_empty() => {}
            Ok(made) => {
                tracing::info!(artifact.name = %new.name, deltas = made.len(), "deltas made");
            }
            Err(e) => {
                tracing::warn!(artifact.name = %new.name, error = %format!("{e:#}"), "deltas could not be made");
            }
        }
    });
}

/// Makes the deltas to `new` that are missing: from the full artifact of each of the
/// [`Settings::delta_sources`](crate::http::Settings) releases most of its device types' devices
/// run. Returns the delta artifacts stored.
pub async fn make_for(st: &AppState, new: &ArtifactRow) -> anyhow::Result<Vec<ArtifactRow>> {
    let mut made = Vec::new();
    for device_type in &new.device_types {
        let releases = st
            .store
            .fleet_releases(device_type, st.settings.delta_sources + 1)
            .await?;
        for (release, _) in releases
            .into_iter()
            .filter(|(r, _)| *r != new.name)
            .take(st.settings.delta_sources)
        {
            let olds = st.store.artifacts_for(&release, device_type).await?;
            let Some(old) = olds
                .iter()
                .find(|a| payload_type(&a.updates) == Some(ROOTFS))
            else {
                continue;
            };
            let Some(sum) = old.provides.get("rootfs-image.checksum") else {
                continue;
            };
            let have = st.store.artifacts_for(&new.name, device_type).await?;
            if have.iter().any(|a| {
                payload_type(&a.updates) == Some(DELTA_TYPE)
                    && a.depends.get("rootfs-image.checksum") == Some(&json!(sum))
            }) {
                continue;
            }
            made.push(
                make_one(st, old, new)
                    .await
                    .with_context(|| format!("from {}", old.name))?,
            );
        }
    }
    Ok(made)
}

/// One delta artifact from `old` to `new`, stored like an upload.
async fn make_one(
    st: &AppState,
    old: &ArtifactRow,
    new: &ArtifactRow,
) -> anyhow::Result<ArtifactRow> {
    let dir = tempfile::tempdir().context("a work folder")?;
    let (old_path, new_path, out) = (
        dir.path().join("old.mender"),
        dir.path().join("new.mender"),
        dir.path().join("delta.mender"),
    );
    fetch(st, old, &old_path).await?;
    fetch(st, new, &new_path).await?;
    let work = dir.path().to_owned();
    let target = out.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let open = |p: &std::path::Path| -> anyhow::Result<Box<dyn std::io::Read + Send>> {
            Ok(Box::new(std::io::BufReader::new(std::fs::File::open(p)?)))
        };
        let options = aloft_delta::artifact::MakeOptions {
            encode: aloft_delta::EncodeOptions::default(),
            read: aloft_artifact::ReadOptions::default(),
            signing_key: None,
            work_dir: &work,
        };
        let mut f = std::fs::File::create(&target)?;
        aloft_delta::artifact::make(
            open(&old_path)?,
            open(&new_path)?,
            options,
            &mut f,
            &mut |_, _, _| {},
        )?;
        f.sync_all()?;
        Ok(())
    })
    .await??;
    let file = tokio::fs::File::open(&out).await?;
    let description = format!("delta from {}, made by the server", old.name);
    ingest(st, FileChunks(file), None, description, None)
        .await
        .map_err(|e| anyhow!("storing the delta: {}", e.message))
}

/// An artifact's file from the blob store, into `path`.
async fn fetch(st: &AppState, a: &ArtifactRow, path: &std::path::Path) -> anyhow::Result<()> {
    let mut stream = st.blobs.get(a, None).await.map_err(|e| anyhow!("{e}"))?;
    let mut f = tokio::fs::File::create(path).await?;
    while let Some(chunk) = stream.next().await {
        f.write_all(&chunk?).await?;
    }
    f.flush().await?;
    Ok(())
}
