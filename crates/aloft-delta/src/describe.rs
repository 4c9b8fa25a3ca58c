//! What a delta artifact's signed `meta-data` says about its delta, and the check that the
//! delta read is that one.

use serde_json::{Map, Value, json};

use crate::error::{DeltaError, Result};
use crate::format::Header;

/// The delta as the signed header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// SHA-256 of the source image (the `rootfs-image.checksum` devices must run).
    pub source_sha256: [u8; 32],
    /// SHA-256 of the target image (the `rootfs-image.checksum` it provides).
    pub target_sha256: [u8; 32],
    /// [`Header::windows_digest`] of the target.
    pub windows_digest: [u8; 32],
    /// Bytes of the target image.
    pub target_size: u64,
    /// Bytes of the source image.
    pub source_size: u64,
}

impl Description {
    /// The description of a delta from its header.
    #[must_use]
    pub fn of(h: &Header) -> Self {
        Self {
            source_sha256: h.source_sha256,
            target_sha256: h.target_sha256,
            windows_digest: h.windows_digest(),
            target_size: h.target_size,
            source_size: h.source_size,
        }
    }

    /// Adds the description to a payload's `meta-data`, as flat keys (Mender's meta-data holds
    /// no nested objects) under the [`crate::META_KEY`] prefix.
    pub fn to_meta(&self, meta: &mut Map<String, Value>) {
        let k = |name: &str| format!("{}.{name}", crate::META_KEY);
        meta.insert(k("source_sha256"), json!(hex(&self.source_sha256)));
        meta.insert(k("target_sha256"), json!(hex(&self.target_sha256)));
        meta.insert(k("windows_sha256"), json!(hex(&self.windows_digest)));
        meta.insert(k("source_size"), json!(self.source_size));
        meta.insert(k("target_size"), json!(self.target_size));
    }

    /// Reads the description from a payload's `meta-data`.
    pub fn from_meta(meta: Option<&Map<String, Value>>) -> Result<Self> {
        let bad = |what: &str| {
            DeltaError::Corrupt(format!(
                "the delta's meta-data has no valid {}.{what}",
                crate::META_KEY
            ))
        };
        let empty = Map::new();
        let m = meta.unwrap_or(&empty);
        let get = |k: &str| m.get(&format!("{}.{k}", crate::META_KEY));
        let digest = |k: &str| -> Result<[u8; 32]> {
            get(k)
                .and_then(Value::as_str)
                .and_then(unhex)
                .ok_or_else(|| bad(k))
        };
        let size = |k: &str| get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        Ok(Self {
            source_sha256: digest("source_sha256")?,
            target_sha256: digest("target_sha256")?,
            windows_digest: digest("windows_sha256")?,
            source_size: size("source_size")?,
            target_size: size("target_size")?,
        })
    }

    /// Checks that `h` is the delta this describes.
    pub fn check(&self, h: &Header) -> Result<()> {
        let of = Self::of(h);
        if of.target_sha256 != self.target_sha256
            || of.windows_digest != self.windows_digest
            || of.target_size != self.target_size
        {
            return Err(DeltaError::WrongTarget(
                "its windows differ from the signed description".into(),
            ));
        }
        if of.source_sha256 != self.source_sha256 || of.source_size != self.source_size {
            return Err(DeltaError::WrongTarget(
                "its source differs from the signed description".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_and_refuse_what_is_missing() {
        let d = Description {
            source_sha256: [1; 32],
            target_sha256: [2; 32],
            windows_digest: [3; 32],
            target_size: 10,
            source_size: 9,
        };
        let mut meta = Map::new();
        d.to_meta(&mut meta);
        assert_eq!(Description::from_meta(Some(&meta)).unwrap(), d);
        for k in [
            "source_sha256",
            "target_sha256",
            "windows_sha256",
            "source_size",
            "target_size",
        ] {
            let mut m = meta.clone();
            m.remove(&format!("aloft-delta.{k}"));
            let e = Description::from_meta(Some(&m)).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        assert!(Description::from_meta(None).is_err());
        let mut m = meta.clone();
        m.insert("aloft-delta.target_sha256".into(), json!("zz".repeat(32)));
        assert!(Description::from_meta(Some(&m)).is_err());
    }
}
