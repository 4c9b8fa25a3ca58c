//! The GRUB environment block, as `grub-editenv` and GRUB's `load_env`/`save_env` keep it.
//!
//! Format: the signature line `# GRUB Environment Block\n`, optional comment lines (`#...`),
//! one `name=value\n` line per variable, with `\` escaping a backslash or a newline in the
//! value, and `#` padding up to the block size (1024 bytes as created; an existing block keeps
//! its size, since GRUB's `save_env` rewrites the file's blocks in place).
//!
//! [`GrubEnv::store`] replaces the file atomically (temporary file, fsync, rename, fsync of the
//! folder), as `grub-editenv` does: right for a journalled `/boot`. On FAT a rename is not
//! atomic, so an ESP keeps a redundant pair instead ([`super::grub_pair`]), whose copies are
//! rewritten in place (`GrubEnv::rewrite`) as GRUB's own `save_env` does.

use std::path::{Path, PathBuf};

use super::{EnvError, EnvStore, Result, Vars, io_err, replace_file, rewrite_file};

/// The first line of every environment block.
const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";
/// Size of a new block.
pub const DEFAULT_SIZE: usize = 1024;
/// Largest block read.
const MAX_SIZE: u64 = 1024 * 1024;

/// A GRUB environment block file.
#[derive(Debug, Clone)]
pub struct GrubEnv {
    path: PathBuf,
}

impl GrubEnv {
    /// The block at `path` (created on the first store if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<Vec<u8>>> {
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.path)(e)),
            Ok(m) if m.len() > MAX_SIZE => {
                return Err(EnvError::Invalid {
                    path: self.path.clone(),
                    reason: format!("{} bytes is too large for an environment block", m.len()),
                });
            }
            Ok(_) => {}
        }
        let data = std::fs::read(&self.path).map_err(io_err(&self.path))?;
        if !data.starts_with(SIGNATURE) {
            return Err(EnvError::Invalid {
                path: self.path.clone(),
                reason: "the GRUB environment block signature is missing".into(),
            });
        }
        Ok(Some(data))
    }

    /// The variables, or `None` when the file is missing.
    pub(super) fn load_existing(&self) -> Result<Option<Vars>> {
        Ok(self.read()?.map(|data| decode(&data[SIGNATURE.len()..])))
    }

    /// The block for `vars`, as large as the existing block (at least [`DEFAULT_SIZE`]).
    fn block(&self, vars: &Vars) -> Result<Vec<u8>> {
        let size = self
            .read()?
            .map_or(DEFAULT_SIZE, |d| d.len().max(DEFAULT_SIZE));
        encode(vars, size, &self.path)
    }

    /// Stores `vars` by rewriting the existing block in place (one durable write; a missing or
    /// smaller file is replaced instead). The file's clusters, size and place on the
    /// filesystem stay as they are, so a FAT ESP's allocation is never touched; a power cut
    /// may tear the block, which is why only a lock-guarded copy is written this way. A block
    /// torn by an earlier cut (its signature gone) is overwritten whole: that is its repair.
    pub(super) fn rewrite(&self, vars: &Vars) -> Result<()> {
        let size = match std::fs::metadata(&self.path) {
            Ok(m) if m.len() <= MAX_SIZE => usize::try_from(m.len()).unwrap_or(DEFAULT_SIZE),
            _ => DEFAULT_SIZE,
        };
        rewrite_file(
            &self.path,
            &encode(vars, size.max(DEFAULT_SIZE), &self.path)?,
        )
    }
}

impl EnvStore for GrubEnv {
    /// A missing file reads as an empty environment, as GRUB's `load_env` treats it.
    fn load(&self) -> Result<Vars> {
        Ok(self.load_existing()?.unwrap_or_default())
    }

    fn store(&self, vars: &Vars) -> Result<()> {
        replace_file(&self.path, &self.block(vars)?)
    }
}

fn decode(body: &[u8]) -> Vars {
    let mut vars = Vars::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest[0] == b'#' {
            // A comment or the padding: skip to the end of the line.
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => rest = &rest[i + 1..],
                None => break,
            }
            continue;
        }
        let Some(eq) = rest.iter().position(|&b| b == b'=' || b == b'\n') else {
            break;
        };
        if rest[eq] == b'\n' {
            rest = &rest[eq + 1..];
            continue;
        }
        let name = String::from_utf8_lossy(&rest[..eq]).into_owned();
        let mut value = Vec::new();
        let mut i = eq + 1;
        let mut ended = false;
        while i < rest.len() {
            match rest[i] {
                b'\\' if i + 1 < rest.len() => {
                    value.push(rest[i + 1]);
                    i += 2;
                }
                b'\n' => {
                    ended = true;
                    i += 1;
                    break;
                }
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        if !ended {
            break; // an unterminated last line is not a variable (GRUB ignores it too)
        }
        if !name.is_empty() {
            vars.insert(name, String::from_utf8_lossy(&value).into_owned());
        }
        rest = &rest[i..];
    }
    vars
}

fn encode(vars: &Vars, size: usize, path: &Path) -> Result<Vec<u8>> {
    let mut block = SIGNATURE.to_vec();
    for (name, value) in vars {
        if name.is_empty() || name.starts_with('#') || name.contains(['=', '\n', '\\', '\0']) {
            return Err(EnvError::BadVariable {
                name: name.clone(),
                reason: "GRUB names must be non-empty, not start with '#', without '=', '\\', newline or NUL".into(),
            });
        }
        block.extend_from_slice(name.as_bytes());
        block.push(b'=');
        for b in value.bytes() {
            if b == b'\\' || b == b'\n' {
                block.push(b'\\');
            }
            block.push(b);
        }
        block.push(b'\n');
    }
    if block.len() > size {
        return Err(EnvError::TooLarge {
            path: path.to_owned(),
            needed: block.len(),
            capacity: size,
        });
    }
    block.resize(size, b'#');
    Ok(block)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_variables_round_trip(vars in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,20}", "(?s).{0,40}", 0..10)) {
            let vars: Vars = vars.into_iter().filter(|(_, v)| !v.contains('\0')).collect();
            if let Ok(block) = encode(&vars, 4096, Path::new("x")) {
                prop_assert_eq!(block.len(), 4096);
                prop_assert_eq!(decode(&block[SIGNATURE.len()..]), vars);
            }
        }
    }

    #[test]
    fn missing_file_is_empty_and_a_store_creates_1024_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let env = GrubEnv::new(dir.path().join("grubenv"));
        assert!(env.load().unwrap().is_empty());
        env.update(&mut |v| {
            v.insert("mender_boot_part".into(), "3".into());
        })
        .unwrap();
        assert_eq!(std::fs::metadata(env.path()).unwrap().len(), 1024);
        assert_eq!(env.load().unwrap()["mender_boot_part"], "3");
    }

    #[test]
    fn a_file_without_the_signature_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grubenv");
        std::fs::write(&path, "mender_boot_part=2\n").unwrap();
        assert!(matches!(
            GrubEnv::new(&path).load(),
            Err(EnvError::Invalid { .. })
        ));
    }
}
