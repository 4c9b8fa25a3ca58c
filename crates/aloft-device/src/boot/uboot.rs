//! The U-Boot environment, as U-Boot and libubootenv (`fw_printenv`, `fw_setenv`) keep it.
//!
//! Format of one copy of `size` bytes: CRC-32 (IEEE, little-endian) of the data area; for a
//! redundant pair, a flags byte; then the data area: `name=value\0` entries, an empty entry
//! (`\0`) at the end, padding (0xff here; readers ignore it, the CRC covers it).
//!
//! Redundant pairs use incremental flags: a write goes to the copy that is **not** active,
//! with flags one higher (wrapping), so the active copy stays intact until the new one is
//! complete. The active copy on read follows U-Boot: the only copy with a valid CRC, or of two
//! valid ones the newer (255 → 0 wraps; else the higher flags; equal flags: the first).
//!
//! Locations come from an `fw_env.config` file: one line per copy,
//! `<device or file> <offset> <size> [<sector size> [<sectors>]]`, numbers in C notation
//! (`0x4000`, `16384`).
//!
//! Power cuts: a redundant pair is always safe. A single copy that is a whole regular file is
//! replaced atomically (temporary file, fsync, rename); a single copy inside a larger file or a
//! block device is written in place and is not safe against a cut during that write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{EnvError, EnvStore, Result, Vars, io_err, replace_file};

/// Largest environment copy accepted (real ones are 8 KiB to 1 MiB).
const MAX_SIZE: u64 = 16 * 1024 * 1024;

/// One copy's place on a device or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Device or file.
    pub path: PathBuf,
    /// Byte offset of the copy.
    pub offset: u64,
    /// Size of the copy, header included.
    pub size: usize,
}

/// A U-Boot environment: one copy, or a redundant pair.
#[derive(Debug, Clone)]
pub struct UbootEnv {
    copies: Vec<Location>,
}

/// One copy as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copy {
    flags: u8,
    vars: Vars,
}

impl UbootEnv {
    /// Locations from an `fw_env.config` file (device paths as written there, like
    /// libubootenv: relative ones are relative to the working directory).
    pub fn from_config(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|source| EnvError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::new(parse_config(&text, path)?).map_err(|e| match e {
            EnvError::Config { reason, .. } => EnvError::Config {
                path: path.to_owned(),
                line: 0,
                reason,
            },
            other => other,
        })
    }

    /// An environment at one location, or two (a redundant pair) of the same size.
    pub fn new(copies: Vec<Location>) -> Result<Self> {
        let config_err = |reason: &str| EnvError::Config {
            path: PathBuf::new(),
            line: 0,
            reason: reason.into(),
        };
        match copies.as_slice() {
            [_] => {}
            [a, b] if a.size == b.size => {}
            [_, _] => {
                return Err(config_err(
                    "the two copies of a redundant environment differ in size",
                ));
            }
            _ => return Err(config_err("expected one or two environment locations")),
        }
        for c in &copies {
            if c.path.to_string_lossy().starts_with("/dev/mtd") {
                return Err(config_err(
                    "MTD flash devices (erase before write) are not supported yet",
                ));
            }
        }
        Ok(Self { copies })
    }

    /// Whether this is a redundant pair.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }

    fn header_len(&self) -> usize {
        if self.is_redundant() { 5 } else { 4 }
    }

    fn read_copy(&self, loc: &Location) -> Result<Option<Copy>> {
        let mut buf = vec![0u8; loc.size];
        let mut f = File::open(&loc.path).map_err(io_err(&loc.path))?;
        f.seek(SeekFrom::Start(loc.offset))
            .map_err(io_err(&loc.path))?;
        f.read_exact(&mut buf).map_err(io_err(&loc.path))?;
        let stored = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
        let data = &buf[self.header_len()..];
        if crc32fast::hash(data) != stored {
            return Ok(None);
        }
        let flags = if self.is_redundant() { buf[4] } else { 0 };
        Ok(Some(Copy {
            flags,
            vars: decode(data),
        }))
    }

    /// Reads every copy; returns the index of the active one and its content.
    fn active(&self) -> Result<Option<(usize, Copy)>> {
        let copies: Vec<Option<Copy>> = self
            .copies
            .iter()
            .map(|l| self.read_copy(l))
            .collect::<Result<_>>()?;
        Ok(match copies.as_slice() {
            [Some(a)] | [Some(a), None] => Some((0, a.clone())),
            [None, Some(b)] => Some((1, b.clone())),
            [Some(a), Some(b)] => {
                let second_newer = match (a.flags, b.flags) {
                    (255, 0) => true,
                    (0, 255) => false,
                    (fa, fb) => fb > fa,
                };
                if second_newer {
                    Some((1, b.clone()))
                } else {
                    Some((0, a.clone()))
                }
            }
            _ => None,
        })
    }

    fn write_copy(&self, loc: &Location, image: &[u8]) -> Result<()> {
        let whole_file = !self.is_redundant()
            && loc.offset == 0
            && std::fs::metadata(&loc.path)
                .is_ok_and(|m| m.is_file() && m.len() == loc.size as u64);
        if whole_file {
            return replace_file(&loc.path, image);
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&loc.path)
            .map_err(io_err(&loc.path))?;
        f.seek(SeekFrom::Start(loc.offset))
            .map_err(io_err(&loc.path))?;
        f.write_all(image).map_err(io_err(&loc.path))?;
        f.sync_all().map_err(io_err(&loc.path))
    }
}

impl EnvStore for UbootEnv {
    fn load(&self) -> Result<Vars> {
        match self.active()? {
            Some((_, copy)) => Ok(copy.vars),
            None => Err(EnvError::Invalid {
                path: self.copies[0].path.clone(),
                reason: format!(
                    "no copy of the U-Boot environment has a valid CRC ({} checked)",
                    self.copies.len()
                ),
            }),
        }
    }

    fn store(&self, vars: &Vars) -> Result<()> {
        let (target, flags) = match (self.is_redundant(), self.active()?) {
            (false, _) => (0, 0),
            (true, Some((active, copy))) => (1 - active, copy.flags.wrapping_add(1)),
            (true, None) => (1, 0),
        };
        let loc = &self.copies[target];
        let mut image = Vec::with_capacity(loc.size);
        image.extend_from_slice(&[0u8; 4]);
        if self.is_redundant() {
            image.push(flags);
        }
        let data = encode(vars, loc.size - self.header_len(), &loc.path)?;
        image[..4].copy_from_slice(&crc32fast::hash(&data).to_le_bytes());
        image.extend_from_slice(&data);
        self.write_copy(loc, &image)
    }
}

/// Parses the entries of a data area (up to the empty entry).
fn decode(data: &[u8]) -> Vars {
    let mut vars = Vars::new();
    for entry in data.split(|&b| b == 0) {
        if entry.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(entry);
        if let Some((name, value)) = text.split_once('=')
            && !name.is_empty()
        {
            vars.insert(name.to_owned(), value.to_owned());
        }
    }
    vars
}

/// A data area of exactly `capacity` bytes.
fn encode(vars: &Vars, capacity: usize, path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(capacity);
    for (name, value) in vars {
        let bad = |reason: &str| EnvError::BadVariable {
            name: name.clone(),
            reason: reason.into(),
        };
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(bad("names must be non-empty, without '=' or NUL"));
        }
        if value.contains('\0') {
            return Err(bad("values cannot contain NUL"));
        }
        data.extend_from_slice(name.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data.push(0);
    if data.len() > capacity {
        return Err(EnvError::TooLarge {
            path: path.to_owned(),
            needed: data.len(),
            capacity,
        });
    }
    data.resize(capacity, 0xff);
    Ok(data)
}

/// Parses `fw_env.config` text.
pub fn parse_config(text: &str, path: &Path) -> Result<Vec<Location>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| EnvError::Config {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, offset, size, ..] = fields.as_slice() else {
            return Err(err("expected `<device> <offset> <size>`".into()));
        };
        let offset = parse_number(offset)
            .ok_or_else(|| err(format!("offset {offset:?} is not a number")))?;
        let size =
            parse_number(size).ok_or_else(|| err(format!("size {size:?} is not a number")))?;
        if !(16..=MAX_SIZE).contains(&size) {
            return Err(err(format!(
                "environment size {size} is out of range (16 bytes to {MAX_SIZE})"
            )));
        }
        out.push(Location {
            path: PathBuf::from(device),
            offset,
            size: usize::try_from(size).map_err(|_| err("size does not fit memory".into()))?,
        });
    }
    Ok(out)
}

/// A number in C notation: `0x` hex, leading `0` octal, else decimal.
fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_file(dir: &Path, redundant: bool) -> UbootEnv {
        let file = dir.join("env.bin");
        std::fs::write(&file, vec![0xffu8; 0x8000]).unwrap();
        let mut copies = vec![Location {
            path: file.clone(),
            offset: 0,
            size: 0x4000,
        }];
        if redundant {
            copies.push(Location {
                path: file,
                offset: 0x4000,
                size: 0x4000,
            });
        }
        UbootEnv::new(copies).unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn blank_medium_has_no_valid_copy() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_file(dir.path(), true);
        assert!(matches!(env.load(), Err(EnvError::Invalid { .. })));
    }

    #[test]
    fn redundant_writes_alternate_and_survive_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_file(dir.path(), true);
        env.store(&vars(&[("a", "1")])).unwrap();
        env.store(&vars(&[("a", "2")])).unwrap();
        let (active, copy) = env.active().unwrap().unwrap();
        assert_eq!(copy.vars["a"], "2");
        // Tear the next write: the inactive copy is half written when the power goes.
        let torn = &env.copies[1 - active];
        let mut f = OpenOptions::new().write(true).open(&torn.path).unwrap();
        f.seek(SeekFrom::Start(torn.offset + 100)).unwrap();
        f.write_all(&[0x42; 200]).unwrap();
        assert_eq!(
            env.load().unwrap()["a"],
            "2",
            "the active copy is untouched"
        );
    }

    #[test]
    fn flags_wrap_from_255_to_0() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_file(dir.path(), true);
        for i in 0..300 {
            env.store(&vars(&[("n", &i.to_string())])).unwrap();
            assert_eq!(env.load().unwrap()["n"], i.to_string());
        }
    }

    #[test]
    fn too_many_variables_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_file(dir.path(), false);
        env.store(&vars(&[("keep", "me")])).unwrap();
        let big = vars(&[("x", &"y".repeat(0x4000))]);
        assert!(matches!(env.store(&big), Err(EnvError::TooLarge { .. })));
        assert_eq!(env.load().unwrap()["keep"], "me");
    }

    #[test]
    fn config_lines_parse_like_libubootenv() {
        let locs = parse_config(
            "# comment\n/dev/mmcblk0 0x400000 0x4000\n/dev/mmcblk0 4210688 16384 0x200 1\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(locs[0].offset, 0x40_0000);
        assert_eq!(locs[1].offset, 4_210_688);
        assert_eq!(locs[1].size, 0x4000);
        assert!(parse_config("/dev/x 0x0\n", Path::new("c")).is_err());
        assert!(parse_config("/dev/x 0 0xffffffffff\n", Path::new("c")).is_err());
    }
}
