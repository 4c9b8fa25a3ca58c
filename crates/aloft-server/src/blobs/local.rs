//! The local folder backend (the default: `DATA/blobs`).
//!
//! `object_store` writes an upload to a staging file `<key>#<n>` beside its key and renames it
//! when finished. A process killed mid-upload leaves that file behind, and `object_store`'s
//! listing hides it, so `stale_staging_files` finds them for the orphan cleanup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Blobs;

/// Blobs in a local folder (made when missing).
pub fn open(dir: &Path) -> anyhow::Result<Blobs> {
    use anyhow::Context as _;
    fs_err::create_dir_all(dir.join("artifacts"))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .with_context(|| format!("opening the blob folder {}", dir.display()))?;
    let mut blobs = Blobs::new(Arc::new(store), "local", "");
    blobs.local_dir = Some(dir.to_owned());
    Ok(blobs)
}

/// Whether a file name is one of `object_store`'s staging files (`name#digits`).
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Staging files under `dir` last written more than `age` ago.
pub(crate) fn stale_staging_files(dir: &Path, age: Duration) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let path = e.path();
            if meta.is_dir() {
                stack.push(path);
            } else if is_staging_name(&e.file_name().to_string_lossy())
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|d| d >= age)
            {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_staging_name;

    #[test]
    fn staging_names() {
        for (name, want) in [
            ("0b5e#1", true),
            ("0b5e#12", true),
            ("0b5e", false),
            ("0b5e#", false),
            ("0b5e#x1", false),
        ] {
            assert_eq!(is_staging_name(name), want, "{name}");
        }
    }
}
