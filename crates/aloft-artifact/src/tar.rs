//! A minimal, strict tar reader and writer, sized for artifacts.
//!
//! Owns: the 512-byte block framing of the outer tar and of the inner header and data tars: USTAR
//! headers, the ustar `prefix` field, PAX `path`/`size` records, GNU long names and base-256 sizes
//! on read; USTAR with PAX records only where needed on write.
//!
//! Must not: allocate in proportion to untrusted sizes. Every metadata record (PAX, GNU long name)
//! is capped at [`MAX_META_RECORD`]; entry data is only ever streamed. It also never interprets
//! links or devices: it reports their kind and the artifact layer refuses them.
//!
//! Why not the `tar` crate: it buffers PAX and GNU long-name records without a bound and writes
//! GNU long names, which the Mender format must not contain.

use std::io::{self, Read, Write};

/// Size of one tar block.
pub(crate) const BLOCK: u64 = 512;
/// [`BLOCK`] as a buffer length.
const BLOCK_LEN: usize = 512;
/// Largest PAX or GNU long-name record we accept; real ones are a few hundred bytes.
pub(crate) const MAX_META_RECORD: u64 = 64 * 1024;
/// Largest size a ustar size field can hold (11 octal digits); bigger needs a PAX `size` record.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;

/// What an entry is, from its type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    Other(u8),
}

impl EntryKind {
    pub(crate) fn describe(self) -> String {
        match self {
            Self::File => "regular file".into(),
            Self::Directory => "directory".into(),
            Self::Symlink => "symbolic link".into(),
            Self::HardLink => "hard link".into(),
            Self::CharDevice => "character device".into(),
            Self::BlockDevice => "block device".into(),
            Self::Fifo => "fifo".into(),
            Self::Other(flag) => format!("entry of tar type {:?}", char::from(flag)),
        }
    }
}

/// One entry's header, after PAX and GNU extensions were applied.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) kind: EntryKind,
    pub(crate) mtime: u64,
}

/// Why a tar stream could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TarError {
    #[error("i/o error at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("corrupt tar header at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
}

/// Streaming tar reader: call [`TarReader::next_entry`], then read the entry's data through
/// [`Read`] (it reports end of file at the end of the entry).
pub(crate) struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    done: bool,
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// Bytes consumed from the underlying reader so far.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Skips what is left of the current entry and reads the next header. `Ok(None)` at the
    /// end-of-archive marker (two zero blocks); a stream that ends without it is truncated.
    pub(crate) fn next_entry(&mut self) -> Result<Option<EntryHeader>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pax_path: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        let mut gnu_name: Option<String> = None;
        loop {
            let offset = self.pos;
            let mut block = [0u8; BLOCK_LEN];
            self.fill(
                &mut block,
                "expected a tar header or the end-of-archive marker",
            )?;
            if block.iter().all(|&b| b == 0) {
                self.fill(&mut block, "end-of-archive marker is a single zero block")?;
                if !block.iter().all(|&b| b == 0) {
                    return Err(TarError::Corrupt {
                        offset: offset + BLOCK,
                        reason: "data after a zero block".into(),
                    });
                }
                if pax_path.is_some() || pax_size.is_some() || gnu_name.is_some() {
                    return Err(TarError::Corrupt {
                        offset,
                        reason: "extended header without an entry after it".into(),
                    });
                }
                self.done = true;
                return Ok(None);
            }
            check_checksum(&block, offset)?;
            let flag = block[156];
            let size = parse_size(&block[124..136], offset)?;
            match flag {
                b'x' | b'g' | b'L' | b'K' => {
                    let data = self.read_meta_record(size, offset)?;
                    match flag {
                        b'x' => apply_pax(&data, offset, &mut pax_path, &mut pax_size)?,
                        b'L' => gnu_name = Some(gnu_string(&data, offset)?),
                        // Global PAX records and GNU long link names carry nothing we use.
                        _ => {}
                    }
                }
                _ => {
                    let kind = match flag {
                        b'0' | 0 | b'7' => EntryKind::File,
                        b'5' => EntryKind::Directory,
                        b'1' => EntryKind::HardLink,
                        b'2' => EntryKind::Symlink,
                        b'3' => EntryKind::CharDevice,
                        b'4' => EntryKind::BlockDevice,
                        b'6' => EntryKind::Fifo,
                        other => EntryKind::Other(other),
                    };
                    let name = match (pax_path, gnu_name) {
                        (Some(p), _) | (None, Some(p)) => p,
                        (None, None) => ustar_name(&block, offset)?,
                    };
                    let size = pax_size.unwrap_or(size);
                    let data_size = match kind {
                        EntryKind::File | EntryKind::Other(_) => size,
                        // Links, devices, fifos and directories carry no data blocks.
                        _ => 0,
                    };
                    self.remaining = data_size;
                    self.padding = pad_len(data_size);
                    return Ok(Some(EntryHeader {
                        name,
                        size: data_size,
                        kind,
                        mtime: parse_octal(&block[136..148], offset, "mtime").unwrap_or(0),
                    }));
                }
            }
        }
    }

    /// Confirms that nothing but zero padding follows the end-of-archive marker (a writer may pad
    /// the archive to a record size), so bytes glued to the end are noticed.
    pub(crate) fn finish(&mut self) -> Result<(), TarError> {
        if !self.done {
            return Err(TarError::Corrupt {
                offset: self.pos,
                reason: "the archive does not end here".into(),
            });
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TarError::Io {
                        offset: self.pos,
                        source,
                    });
                }
            };
            if n == 0 {
                return Ok(());
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(TarError::Corrupt {
                    offset: self.pos,
                    reason: "data after the end-of-archive marker".into(),
                });
            }
            self.pos += n as u64;
        }
    }

    fn read_meta_record(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_META_RECORD {
            return Err(TarError::Corrupt {
                offset,
                reason: format!("extended header record of {size} bytes (limit {MAX_META_RECORD})"),
            });
        }
        let mut data = vec![0u8; usize::try_from(size).expect("capped above")];
        self.fill(&mut data, "extended header record")?;
        let mut pad = vec![0u8; usize::try_from(pad_len(size)).expect("below 512")];
        self.fill(&mut pad, "extended header padding")?;
        Ok(data)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let mut to_skip = self.remaining + self.padding;
        let mut buf = [0u8; 8192];
        while to_skip > 0 {
            let want = usize::try_from(to_skip.min(buf.len() as u64)).expect("small");
            self.fill(&mut buf[..want], "entry data")?;
            to_skip -= want as u64;
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), TarError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(TarError::Truncated {
                        offset: self.pos,
                        what,
                    });
                }
                Ok(n) => {
                    filled += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(TarError::Io {
                        offset: self.pos,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining.min(buf.len() as u64)).expect("small");
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "truncated at byte {}: {} bytes of entry data missing",
                    self.pos, self.remaining
                ),
            ));
        }
        self.pos += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn pad_len(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn check_checksum(block: &[u8; 512], offset: u64) -> Result<(), TarError> {
    let stored = parse_octal(&block[148..156], offset, "checksum")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b.cast_signed());
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(TarError::Corrupt {
            offset,
            reason: format!("header checksum {stored} does not match the computed {unsigned}"),
        })
    }
}

fn parse_octal(field: &[u8], offset: u64, what: &str) -> Result<u64, TarError> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|&b| b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let mut value: u64 = 0;
    for &b in &text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(TarError::Corrupt {
                offset,
                reason: format!("{what} field is not octal"),
            });
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| TarError::Corrupt {
                offset,
                reason: format!("{what} field overflows"),
            })?;
    }
    Ok(value)
}

fn parse_size(field: &[u8], offset: u64) -> Result<u64, TarError> {
    if field[0] & 0x80 != 0 {
        // GNU base-256: big-endian two's complement with the top bit of the first byte set.
        if field[0] & 0x40 != 0 {
            return Err(TarError::Corrupt {
                offset,
                reason: "negative size".into(),
            });
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .map(|v| v | u64::from(b))
                .ok_or_else(|| TarError::Corrupt {
                    offset,
                    reason: "size overflows".into(),
                })?;
        }
        return Ok(value);
    }
    parse_octal(field, offset, "size")
}

fn field_str(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn ustar_name(block: &[u8; 512], offset: u64) -> Result<String, TarError> {
    let name = field_str(&block[0..100]);
    // Only POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar  ") keeps other data there.
    let prefix = if &block[257..263] == b"ustar\0" {
        field_str(&block[345..500])
    } else {
        &[]
    };
    let mut full = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        full.extend_from_slice(prefix);
        full.push(b'/');
    }
    full.extend_from_slice(name);
    String::from_utf8(full).map_err(|_| TarError::Corrupt {
        offset,
        reason: "entry name is not UTF-8".into(),
    })
}

fn gnu_string(data: &[u8], offset: u64) -> Result<String, TarError> {
    String::from_utf8(field_str(data).to_vec()).map_err(|_| TarError::Corrupt {
        offset,
        reason: "long name is not UTF-8".into(),
    })
}

/// Parses PAX records (`"<len> <key>=<value>\n"`), keeping `path` and `size`.
fn apply_pax(
    data: &[u8],
    offset: u64,
    path: &mut Option<String>,
    size: &mut Option<u64>,
) -> Result<(), TarError> {
    let corrupt = |reason: &str| TarError::Corrupt {
        offset,
        reason: format!("PAX record: {reason}"),
    };
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| corrupt("no length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("bad length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(corrupt("length out of range"));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| corrupt("no '='"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => {
                let value =
                    String::from_utf8(value.to_vec()).map_err(|_| corrupt("path is not UTF-8"))?;
                *path = Some(value);
            }
            b"size" => {
                let value = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("bad size"))?;
                *size = Some(value);
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// Tar writer emitting USTAR headers (PAX records only for long names and sizes ≥ 8 GiB).
pub(crate) struct TarWriter<W> {
    inner: W,
    pos: u64,
}

/// Metadata the writer puts into a header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryMeta {
    pub(crate) mode: u32,
    pub(crate) mtime: u64,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, pos: 0 }
    }

    /// Writes a whole entry from memory.
    pub(crate) fn append(&mut self, name: &str, meta: EntryMeta, data: &[u8]) -> io::Result<()> {
        self.append_header(name, data.len() as u64, meta)?;
        self.write_data(data)?;
        self.pad(data.len() as u64)
    }

    /// Writes the header(s) for an entry whose `size` data bytes the caller writes next with
    /// [`TarWriter::write_data`], followed by [`TarWriter::pad`].
    pub(crate) fn append_header(
        &mut self,
        name: &str,
        size: u64,
        meta: EntryMeta,
    ) -> io::Result<()> {
        let (name_field, prefix_field, pax_path) = split_name(name);
        let pax_size = size > USTAR_MAX_SIZE;
        if pax_path || pax_size {
            let mut records = Vec::new();
            if pax_path {
                records.extend(pax_record("path", name));
            }
            if pax_size {
                records.extend(pax_record("size", &size.to_string()));
            }
            let pax_name = format!("PaxHeaders.0/{}", truncate(name_field, 87));
            let header = ustar_header(&pax_name, "", records.len() as u64, b'x', meta);
            self.write_data(&header)?;
            self.write_data(&records)?;
            self.pad(records.len() as u64)?;
        }
        let header = ustar_header(
            name_field,
            prefix_field,
            if pax_size { 0 } else { size },
            b'0',
            meta,
        );
        self.write_data(&header)
    }

    pub(crate) fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Pads entry data of `size` bytes to the block size.
    pub(crate) fn pad(&mut self, size: u64) -> io::Result<()> {
        let zeros = [0u8; BLOCK_LEN];
        self.write_data(&zeros[..usize::try_from(pad_len(size)).expect("below 512")])
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.write_data(&[0u8; 2 * BLOCK_LEN])?;
        Ok(self.inner)
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// Bytes an entry takes in a tar written by [`TarWriter`], headers and padding included.
#[cfg(test)]
fn entry_len(name: &str, size: u64) -> u64 {
    let (_, _, pax_path) = split_name(name);
    let mut records = 0u64;
    if pax_path {
        records += pax_record("path", name).len() as u64;
    }
    if size > USTAR_MAX_SIZE {
        records += pax_record("size", &size.to_string()).len() as u64;
    }
    let pax = if records > 0 {
        BLOCK + records + pad_len(records)
    } else {
        0
    };
    pax + BLOCK + size + pad_len(size)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits a name into ustar `name` and `prefix` fields; the flag says a PAX `path` is needed.
fn split_name(name: &str) -> (&str, &str, bool) {
    if name.len() <= 100 {
        return (name, "", false);
    }
    // Split at a '/' so that prefix ≤ 155 and the rest (non-empty) ≤ 100 bytes.
    for (i, _) in name.match_indices('/') {
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if prefix.len() <= 155 && !rest.is_empty() && rest.len() <= 100 {
            return (rest, prefix, false);
        }
    }
    (truncate(name, 100), "", true)
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // The length counts itself; iterate until the digit count is stable.
    let body = key.len() + value.len() + 3; // ' ' + '=' + '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn ustar_header(name: &str, prefix: &str, size: u64, flag: u8, meta: EntryMeta) -> [u8; 512] {
    let mut h = [0u8; 512];
    put(&mut h[0..100], name.as_bytes());
    put_octal(&mut h[100..108], u64::from(meta.mode & 0o7777));
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], meta.mtime.min(USTAR_MAX_SIZE));
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put(&mut h[265..297], b"root");
    put(&mut h[297..329], b"root");
    put_octal(&mut h[329..337], 0);
    put_octal(&mut h[337..345], 0);
    put(&mut h[345..500], prefix.as_bytes());
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    h
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    put(field, text.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> EntryMeta {
        EntryMeta {
            mode: 0o644,
            mtime: 1_700_000_000,
        }
    }

    fn roundtrip(entries: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        let mut w = TarWriter::new(Vec::new());
        for (name, data) in entries {
            w.append(name, meta(), data).unwrap();
        }
        let bytes = w.finish().unwrap();
        let expected_len: u64 = entries
            .iter()
            .map(|(n, d)| entry_len(n, d.len() as u64))
            .sum::<u64>()
            + 1024;
        assert_eq!(bytes.len() as u64, expected_len);
        let mut r = TarReader::new(bytes.as_slice());
        let mut out = Vec::new();
        while let Some(h) = r.next_entry().unwrap() {
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            assert_eq!(data.len() as u64, h.size);
            out.push((h.name, data));
        }
        r.finish().unwrap();
        out
    }

    #[test]
    fn short_prefixed_and_pax_names_survive() {
        let long_dir = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let long_flat = "x".repeat(130);
        let entries = vec![
            ("a", b"hello".to_vec()),
            (long_dir.as_str(), vec![7u8; 600]),
            (long_flat.as_str(), vec![]),
        ];
        let got = roundtrip(&entries);
        for ((n, d), (gn, gd)) in entries.iter().zip(&got) {
            assert_eq!(n, gn);
            assert_eq!(d, gd);
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for len in [1usize, 5, 90, 95, 96, 200, 995, 1000] {
            let rec = pax_record("path", &"p".repeat(len));
            let text = String::from_utf8(rec.clone()).unwrap();
            let n: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(n, rec.len());
        }
    }

    #[test]
    fn big_size_uses_pax_and_is_read_back() {
        let mut w = TarWriter::new(Vec::new());
        let size = 9 * 1024 * 1024 * 1024u64;
        w.append_header("big.img", size, meta()).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = TarReader::new(bytes.as_slice());
        let h = r.next_entry().unwrap().unwrap();
        assert_eq!(h.size, size);
        assert_eq!(h.name, "big.img");
    }

    #[test]
    fn oversized_pax_record_is_refused_without_allocating() {
        let h = ustar_header("PaxHeaders.0/x", "", 1 << 40, b'x', meta());
        let mut r = TarReader::new(&h[..]);
        let err = r.next_entry().unwrap_err();
        assert!(err.to_string().contains("extended header record"), "{err}");
    }

    #[test]
    fn missing_end_marker_is_truncation() {
        let mut w = TarWriter::new(Vec::new());
        w.append("a", meta(), b"x").unwrap();
        let bytes = w.finish().unwrap();
        let cut = &bytes[..1024];
        let mut r = TarReader::new(cut);
        r.next_entry().unwrap().unwrap();
        assert!(matches!(r.next_entry(), Err(TarError::Truncated { .. })));
    }

    #[test]
    fn gnu_base256_size_is_read() {
        let mut h = ustar_header("f", "", 0, b'0', meta());
        h[124..136].fill(0);
        h[124] = 0x80;
        h[135] = 5;
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut data = h.to_vec();
        data.extend_from_slice(&[1u8; 512]);
        data.extend_from_slice(&[0u8; 1024]);
        let mut r = TarReader::new(data.as_slice());
        assert_eq!(r.next_entry().unwrap().unwrap().size, 5);
    }
}
