//! The `manifest` (and `manifest-augment`) member: one `<sha256 hex>  <path>\n` line per
//! covered file.
//!
//! Owns: exact parsing (lower-case hex, two spaces, LF line ends, the final one included, no
//! duplicates) and canonical writing. Must not: decide which paths are required; the reader does.

use std::collections::HashMap;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ManifestError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed manifest, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestEntry {
    /// Path: `version`, `header.tar.gz`, `data/0000/<name>`, ...
    pub path: String,
    /// SHA-256 of the covered bytes.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
}

impl Manifest {
    /// Parses manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError {
            line: 0,
            reason: "not UTF-8".into(),
        })?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(ManifestError {
                line: text.lines().count(),
                reason: "the last line has no line feed".into(),
            });
        }
        let mut manifest = Self::default();
        for (i, line) in text.split_terminator('\n').enumerate() {
            let err = |reason: &str| ManifestError {
                line: i + 1,
                reason: reason.into(),
            };
            if line.is_empty() {
                // mender-artifact 3.9 skips blank lines; newer clients refuse them. We never write them.
                continue;
            }
            if line.contains('\r') {
                return Err(err("carriage return in line (line ends must be LF only)"));
            }
            let (hash, path) = line
                .split_once("  ")
                .ok_or_else(|| err("expected `<sha256>  <path>` with two spaces"))?;
            if hash.len() != 64
                || !hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(err("checksum is not 64 lower-case hex digits"));
            }
            if path.is_empty() || path.chars().any(char::is_whitespace) {
                return Err(err("path is empty or contains white space"));
            }
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(hash, &mut sha256).map_err(|_| err("bad hex"))?;
            manifest
                .push(path.to_owned(), sha256)
                .map_err(|reason| err(&reason))?;
        }
        Ok(manifest)
    }

    /// Adds a line; refuses a duplicate path.
    pub fn push(&mut self, path: String, sha256: [u8; 32]) -> Result<(), String> {
        if self.index.contains_key(&path) {
            return Err(format!("duplicate entry for {path:?}"));
        }
        self.index.insert(path.clone(), self.entries.len());
        self.entries.push(ManifestEntry { path, sha256 });
        Ok(())
    }

    /// The checksum listed for `path`.
    pub fn get(&self, path: &str) -> Option<&[u8; 32]> {
        self.index.get(path).map(|&i| &self.entries[i].sha256)
    }

    /// All lines, in file order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Canonical bytes: one LF-terminated line per entry, in insertion order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&hex::encode(e.sha256));
            out.push_str("  ");
            out.push_str(&e.path);
            out.push('\n');
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "742af81f79c9aa068bf636fd843efc2638b2d43c62e4a1226f680405e590a5e4  data/0000/file-a.txt\n\
                        96bcd965947569404798bcbdb614f103db5a004eb6e364cfc162c146890ea35b  version\n";

    #[test]
    fn parses_and_writes_back_identically() {
        let m = Manifest::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.entries().len(), 2);
        assert!(m.get("version").is_some());
        assert_eq!(m.to_bytes(), GOOD.as_bytes());
    }

    #[test]
    fn refuses_what_mender_refuses() {
        let cases = [
            GOOD.trim_end().to_owned(),
            GOOD.replace('\n', "\r\n"),
            GOOD.replace("  data", " data"),
            GOOD.replace("742af", "742AF"),
            format!("{GOOD}{}", GOOD.lines().next().unwrap().to_owned() + "\n"),
            GOOD.replace("  version", "  ver sion"),
        ];
        for case in cases {
            assert!(
                Manifest::parse(case.as_bytes()).is_err(),
                "accepted {case:?}"
            );
        }
    }
}
