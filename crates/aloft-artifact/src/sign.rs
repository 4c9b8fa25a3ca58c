//! Adding or replacing `manifest.sig` in an existing artifact, without rebuilding it.
//!
//! Owns: the streaming member copy. The signature covers only `manifest`, so every other member
//! is copied byte for byte and a new `manifest.sig` goes right after `manifest`.
//! Must not: change any covered byte; judge the payload (callers validate before signing).

use std::io::{self, Read, Write};

use crate::error::{ArtifactError, Result};
use crate::keys::SigningKey;
use crate::tar::{EntryKind, EntryMeta, TarReader, TarWriter};

/// What to do with an artifact that is already signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    /// Refuse, as `mender-artifact sign` does without `-f`.
    RefuseSigned,
    /// Replace the old signature.
    ReplaceSignature,
}

/// Copies the artifact from `input` to `output`, signed with `key`.
pub fn sign_artifact<R: Read, W: Write>(
    input: R,
    output: W,
    key: &SigningKey,
    mode: SignMode,
) -> Result<()> {
    let mut reader = TarReader::new(input);
    let mut writer = TarWriter::new(output);
    let out_err = |e| ArtifactError::io("the output", e);
    let mut manifest_seen = false;
    let mut index = 0usize;
    while let Some(entry) = reader
        .next_entry()
        .map_err(|e| ArtifactError::tar("the artifact", e))?
    {
        if entry.kind != EntryKind::File {
            return Err(ArtifactError::UnsafeEntry {
                member: "the artifact".into(),
                name: entry.name,
                reason: format!("{} members are not allowed", entry.kind.describe()),
            });
        }
        let expected = match index {
            0 => Some("version"),
            1 => Some("manifest"),
            _ => None,
        };
        if let Some(name) = expected
            && entry.name != name
        {
            return Err(ArtifactError::Structure(format!(
                "expected member {name:?}, found {:?}",
                entry.name
            )));
        }
        index += 1;
        let meta = EntryMeta {
            mode: 0o644,
            mtime: entry.mtime,
        };
        if entry.name == "manifest.sig" {
            if mode == SignMode::RefuseSigned {
                return Err(ArtifactError::Invalid(
                    "the artifact is already signed (replace the signature with --force)".into(),
                ));
            }
            continue;
        }
        if entry.name == "manifest" {
            let limit = crate::Limits::default().max_manifest;
            if entry.size > limit {
                return Err(ArtifactError::TooLarge {
                    what: "manifest".into(),
                    size: entry.size,
                    limit,
                });
            }
            let mut manifest = Vec::new();
            reader
                .read_to_end(&mut manifest)
                .map_err(|e| ArtifactError::io("manifest", e))?;
            crate::Manifest::parse(&manifest).map_err(|source| ArtifactError::Manifest {
                member: "manifest",
                source,
            })?;
            writer
                .append("manifest", meta, &manifest)
                .map_err(out_err)?;
            let signature = key.sign_manifest(&manifest);
            writer
                .append("manifest.sig", meta, signature.as_bytes())
                .map_err(out_err)?;
            manifest_seen = true;
            continue;
        }
        writer
            .append_header(&entry.name, entry.size, meta)
            .map_err(out_err)?;
        let copied = io::copy(&mut reader, writer.get_mut())
            .map_err(|e| ArtifactError::io(&entry.name, e))?;
        writer.pad(copied).map_err(out_err)?;
    }
    reader
        .finish()
        .map_err(|e| ArtifactError::tar("the artifact", e))?;
    if !manifest_seen {
        return Err(ArtifactError::Structure("no manifest to sign".into()));
    }
    writer.finish().map_err(out_err)?.flush().map_err(out_err)
}
