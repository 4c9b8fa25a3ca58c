//! The streaming artifact reader.
//!
//! Owns: the member order of the outer tar, the trust chain (version → manifest → signature →
//! header → payload files), and handing payload files to a consumer as verified-at-end streams.
//! Must not: buffer payload data, parse anything the signature does not yet cover, or decide
//! whether a device should install the artifact.

use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};

use crate::Limits;
use crate::compression::{self, Compression};
use crate::error::{ArtifactError, Result};
use crate::header::{
    self, ArtifactInfo, Augment, FileRef, PayloadHeader, PayloadType, SignatureState,
};
use crate::keys::{self, VerifyingKey};
use crate::manifest::Manifest;
use crate::tar::{EntryHeader, EntryKind, TarReader};

/// How to read an artifact.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Trusted public keys. When any is given, the artifact must be signed by one of them;
    /// when none is, a signature is reported as [`SignatureState::NotVerified`].
    pub trusted_keys: Vec<VerifyingKey>,
    /// Size limits.
    pub limits: Limits,
}

/// A streaming reader positioned after the header, before the payload data.
pub struct ArtifactReader<R> {
    tar: TarReader<R>,
    info: ArtifactInfo,
    /// The first member after the header(s), already read from the stream.
    pending: Option<EntryHeader>,
    limits: Limits,
}

/// One payload file as it was read and verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// Payload index.
    pub payload: usize,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Verified SHA-256 of the content.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
    /// From the unsigned augment part.
    pub augment: bool,
}

/// What [`ArtifactReader::read_payloads`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadSummary {
    /// Every payload file, in artifact order.
    pub files: Vec<FileSummary>,
    /// Compression of each `data/NNNN.tar*` member.
    #[serde(serialize_with = "ser_codecs")]
    pub data_compression: Vec<Compression>,
    /// Total bytes of the artifact.
    pub artifact_size: u64,
}

fn ser_codecs<S: serde::Serializer>(
    v: &[Compression],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// A payload file handed to the consumer: read it to the end. Reading the last byte checks the
/// SHA-256 against the manifest; on mismatch `read` fails with an [`io::ErrorKind::InvalidData`]
/// error (and [`ArtifactReader::read_payloads`] fails with [`ArtifactError::Checksum`]).
pub struct PayloadFile<'a> {
    name: String,
    path: String,
    size: u64,
    payload: usize,
    augment: bool,
    expected: [u8; 32],
    inner: &'a mut dyn Read,
    hasher: Sha256,
    read: u64,
    outcome: Option<std::result::Result<[u8; 32], [u8; 32]>>,
}

impl PayloadFile<'_> {
    /// Base name of the file.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Size in bytes (from the tar header).
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Index of the payload the file belongs to.
    pub fn payload_index(&self) -> usize {
        self.payload
    }
    /// Whether the file comes from the unsigned augment part.
    pub fn is_augment(&self) -> bool {
        self.augment
    }
    /// The SHA-256 the content must have (from the manifest).
    pub fn expected_sha256(&self) -> [u8; 32] {
        self.expected
    }
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn mismatch(&self, actual: &[u8; 32]) -> ArtifactError {
        ArtifactError::Checksum {
            path: self.path.clone(),
            expected: hex::encode(self.expected),
            actual: hex::encode(actual),
        }
    }

    /// Reads the rest, so the checksum is checked.
    fn drain(&mut self) -> Result<[u8; 32]> {
        let mut buf = vec![0u8; CHUNK_SIZE];
        while self
            .read(&mut buf)
            .map_err(|e| ArtifactError::io(&self.path, e))?
            > 0
        {}
        match self.outcome {
            Some(Ok(d)) => Ok(d),
            Some(Err(d)) => Err(self.mismatch(&d)),
            None => unreachable!("copy reads to the end"),
        }
    }
}

impl Read for PayloadFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.outcome {
            Some(Ok(_)) => return Ok(0),
            Some(Err(d)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    self.mismatch(&d),
                ));
            }
            None => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.read += n as u64;
            return Ok(n);
        }
        let digest: [u8; 32] = self.hasher.finalize_reset().into();
        if digest == self.expected {
            self.outcome = Some(Ok(digest));
            Ok(0)
        } else {
            self.outcome = Some(Err(digest));
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                self.mismatch(&digest),
            ))
        }
    }
}

/// The consumer's error type.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

impl<R: Read + Send> ArtifactReader<R> {
    /// Reads and verifies everything up to the payload data.
    pub fn open(reader: R, options: &ReadOptions) -> Result<Self> {
        let limits = options.limits;
        let mut tar = TarReader::new(reader);
        let outer = "the artifact";

        let entry = next_member(&mut tar)?.ok_or_else(|| structure("empty artifact"))?;
        expect_name(&entry, "version")?;
        let version_raw = read_member(&mut tar, &entry, limits.max_version)?;

        let entry = next_member(&mut tar)?.ok_or_else(|| truncated(outer, "no manifest"))?;
        expect_name(&entry, "manifest")?;
        let manifest_raw = read_member(&mut tar, &entry, limits.max_manifest)?;
        let manifest =
            Manifest::parse(&manifest_raw).map_err(|source| ArtifactError::Manifest {
                member: "manifest",
                source,
            })?;
        check_digest(&manifest, "version", &version_raw)?;
        let format_version = header::parse_version(&version_raw)?;

        let mut entry = next_member(&mut tar)?.ok_or_else(|| truncated(outer, "no header"))?;
        let signature = if entry.name == "manifest.sig" {
            let sig_text = read_member(&mut tar, &entry, limits.max_signature)?;
            let state = if options.trusted_keys.is_empty() {
                SignatureState::NotVerified
            } else {
                let sig = keys::decode_signature(&sig_text)?;
                let i = keys::verify_with_any(&options.trusted_keys, &manifest_raw, &sig)?;
                let key = &options.trusted_keys[i];
                SignatureState::Verified {
                    algorithm: key.algorithm(),
                    key: key.fingerprint(),
                }
            };
            entry = next_member(&mut tar)?.ok_or_else(|| truncated(outer, "no header"))?;
            state
        } else if options.trusted_keys.is_empty() {
            SignatureState::Unsigned
        } else {
            return Err(ArtifactError::SignatureMissing);
        };
        // From here on, the manifest is trusted (or no trust was asked for).

        let manifest_augment = if entry.name == "manifest-augment" && format_version == 3 {
            let raw = read_member(&mut tar, &entry, limits.max_manifest)?;
            let m = Manifest::parse(&raw).map_err(|source| ArtifactError::Manifest {
                member: "manifest-augment",
                source,
            })?;
            entry = next_member(&mut tar)?.ok_or_else(|| truncated(outer, "no header"))?;
            Some(m)
        } else {
            None
        };

        let Some(("header", header_codec)) = Compression::split_member_name(&entry.name) else {
            return Err(structure(format!(
                "expected header.tar[.gz|.xz|.zst], found {:?}",
                entry.name
            )));
        };
        let parsed =
            read_header_member(&mut tar, &entry, &manifest, format_version, false, &limits)?;

        let mut pending = next_member(&mut tar)?;
        let augment_parsed = match (&manifest_augment, &pending) {
            (Some(m), Some(e))
                if e.name == format!("header-augment.tar{}", header_codec.suffix()) =>
            {
                let e = pending.take().expect("matched");
                let p = read_header_member(&mut tar, &e, m, format_version, true, &limits)?;
                pending = next_member(&mut tar)?;
                Some(p)
            }
            (Some(_), _) => {
                return Err(structure(
                    "manifest-augment without a matching header-augment",
                ));
            }
            (None, Some(e)) if e.name.starts_with("header-augment") => {
                return Err(structure("header-augment without manifest-augment"));
            }
            _ => None,
        };
        if let Some(e) = &pending
            && !e.name.starts_with("data/")
        {
            return Err(structure(format!(
                "unexpected member {:?} after the header",
                e.name
            )));
        }

        let info = build_info(
            parsed,
            augment_parsed.as_ref(),
            manifest,
            manifest_augment,
            signature,
            header_codec,
        )?;
        Ok(Self {
            tar,
            info,
            pending,
            limits,
        })
    }

    /// Everything before the payload data, verified.
    pub fn info(&self) -> &ArtifactInfo {
        &self.info
    }

    /// Streams every payload file to `consume`, in artifact order, then checks that every file
    /// the manifests list was seen and that the artifact ends properly.
    ///
    /// `consume` should read the file to its end; whatever it leaves is read (and hashed) after
    /// it returns. Decompression runs on a second thread while `consume` works on this one.
    pub fn read_payloads<F>(mut self, mut consume: F) -> Result<ReadSummary>
    where
        F: FnMut(&mut PayloadFile<'_>) -> std::result::Result<(), ConsumerError>,
    {
        let mut summary = ReadSummary::default();
        let mut seen_payloads = HashSet::new();
        let mut seen_paths: HashSet<String> = HashSet::new();
        while let Some(entry) = self.pending.take() {
            let (index, codec) = data_member(&entry, self.info.payloads.len())?;
            if !seen_payloads.insert(index) {
                return Err(structure(format!("{} appears twice", entry.name)));
            }
            if entry.kind != EntryKind::File {
                return Err(structure(format!("{} is not a regular file", entry.name)));
            }
            summary.data_compression.push(codec);
            self.read_data_member(
                &entry.name,
                index,
                codec,
                &mut consume,
                &mut summary,
                &mut seen_paths,
            )?;
            self.pending = next_member(&mut self.tar)?;
            if let Some(e) = &self.pending
                && !e.name.starts_with("data/")
            {
                return Err(structure(format!(
                    "unexpected member {:?} after the data",
                    e.name
                )));
            }
        }
        self.tar
            .finish()
            .map_err(|e| ArtifactError::tar("the artifact", e))?;
        summary.artifact_size = self.tar.position();
        let missing: Vec<String> = self
            .info
            .payloads
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.files
                    .iter()
                    .map(move |f| format!("data/{i:04}/{}", f.name))
            })
            .filter(|path| !seen_paths.contains(path))
            .collect();
        if !missing.is_empty() {
            return Err(ArtifactError::MissingFiles { paths: missing });
        }
        Ok(summary)
    }

    /// Reads all payloads, discarding the content: checks structure and every checksum.
    pub fn validate(self) -> Result<ReadSummary> {
        // The reader drains (and checks) whatever the consumer leaves.
        self.read_payloads(|_| Ok(()))
    }

    fn read_data_member<F>(
        &mut self,
        member: &str,
        index: usize,
        codec: Compression,
        consume: &mut F,
        summary: &mut ReadSummary,
        seen_paths: &mut HashSet<String>,
    ) -> Result<()>
    where
        F: FnMut(&mut PayloadFile<'_>) -> std::result::Result<(), ConsumerError>,
    {
        let decoder_limits = self.limits.decoder();
        let payload = &self.info.payloads[index];
        let manifest = &self.info.manifest;
        let manifest_augment = self.info.manifest_augment.as_ref();
        let tar = &mut self.tar;
        std::thread::scope(|scope| {
            // Decompression runs on its own thread; the inner tar, hashing and the consumer here.
            let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS);
            // Buffers travel back for reuse, so memory stays at CHUNKS + 2 buffers.
            let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(CHUNKS + 2);
            let pump = scope.spawn(move || -> io::Result<()> {
                let mut decoded = compression::decoder(codec, tar, decoder_limits)?;
                loop {
                    let mut chunk = free_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK_SIZE]);
                    chunk.resize(CHUNK_SIZE, 0);
                    let n = match read_full(&mut decoded, &mut chunk) {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    chunk.truncate(n);
                    if tx.send(Ok(chunk)).is_err() {
                        return Ok(()); // the reader side stopped
                    }
                }
            });
            let mut inner = TarReader::new(ChannelReader {
                rx,
                free: free_tx,
                current: Vec::new(),
                pos: 0,
            });
            let result = read_inner_tar(
                member,
                index,
                payload,
                manifest,
                manifest_augment,
                &mut inner,
                consume,
                summary,
                seen_paths,
            );
            drop(inner); // unblocks the pump if we stopped early
            let pumped = pump
                .join()
                .map_err(|_| structure("decompression thread panicked"))?;
            result?;
            pumped.map_err(|e| ArtifactError::io(member, e))
        })
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn read_inner_tar<F, R: Read>(
    member: &str,
    index: usize,
    payload: &PayloadHeader,
    manifest: &Manifest,
    manifest_augment: Option<&Manifest>,
    inner: &mut TarReader<R>,
    consume: &mut F,
    summary: &mut ReadSummary,
    seen_paths: &mut HashSet<String>,
) -> Result<()>
where
    F: FnMut(&mut PayloadFile<'_>) -> std::result::Result<(), ConsumerError>,
{
    while let Some(entry) = inner
        .next_entry()
        .map_err(|e| ArtifactError::tar(member, e))?
    {
        let unsafe_entry = |reason: String| ArtifactError::UnsafeEntry {
            member: member.to_owned(),
            name: entry.name.clone(),
            reason,
        };
        if entry.kind != EntryKind::File {
            return Err(unsafe_entry(format!(
                "{} entries are not allowed in payload data",
                entry.kind.describe()
            )));
        }
        if entry.name.contains('/')
            || entry.name.starts_with('.') && entry.name.trim_matches('.').is_empty()
        {
            return Err(unsafe_entry(
                "payload files must be plain names, without directories".into(),
            ));
        }
        header::check_file_name(&entry.name).map_err(unsafe_entry)?;
        if payload.payload_type == PayloadType::Empty {
            return Err(structure(format!(
                "the empty payload {index:04} carries a file {:?}",
                entry.name
            )));
        }
        let path = format!("data/{index:04}/{}", entry.name);
        let (expected, augment) = match (
            manifest.get(&path),
            manifest_augment.and_then(|m| m.get(&path)),
        ) {
            (Some(h), _) => (*h, false),
            (None, Some(h)) => (*h, true),
            (None, None) => return Err(ArtifactError::ChecksumMissing { path }),
        };
        if !seen_paths.insert(path.clone()) {
            return Err(structure(format!("{path} appears twice")));
        }
        let mut file = PayloadFile {
            name: entry.name.clone(),
            path: path.clone(),
            size: entry.size,
            payload: index,
            augment,
            expected,
            inner: &mut *inner,
            hasher: Sha256::new(),
            read: 0,
            outcome: None,
        };
        if let Err(source) = consume(&mut file) {
            // A checksum failure seen by the consumer is reported as what it is.
            if let Some(Err(d)) = file.outcome {
                return Err(file.mismatch(&d));
            }
            if let Some(e) = source.downcast_ref::<io::Error>()
                && (e.get_ref().is_some_and(
                    <dyn std::error::Error + std::marker::Send + std::marker::Sync + 'static>::is::<
                        ArtifactError,
                    >,
                ) || e.kind() == io::ErrorKind::UnexpectedEof)
            {
                let e = source.downcast::<io::Error>().expect("checked");
                return Err(ArtifactError::io(member, *e));
            }
            return Err(ArtifactError::Consumer { file: path, source });
        }
        let sha256 = file.drain()?;
        summary.files.push(FileSummary {
            payload: index,
            name: entry.name,
            size: entry.size,
            sha256,
            augment,
        });
    }
    inner.finish().map_err(|e| ArtifactError::tar(member, e))
}

/// Decompressed chunks in flight between the two threads.
const CHUNKS: usize = 4;
/// Size of one decompressed chunk: 64 KiB keeps a device install near 5 MiB of RSS; larger
/// chunks buy a few percent of speed on big validations (bench/RESULTS.md).
const CHUNK_SIZE: usize = 64 * 1024;

/// Reads from the decompression thread's chunks.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    free: mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    if used.capacity() > 0 {
                        let _ = self.free.try_send(used);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn structure(msg: impl Into<String>) -> ArtifactError {
    ArtifactError::Structure(msg.into())
}

fn truncated(member: &str, reason: &str) -> ArtifactError {
    ArtifactError::Truncated {
        member: member.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Next outer member; only regular files may appear at the top level.
fn next_member<R: Read>(tar: &mut TarReader<R>) -> Result<Option<EntryHeader>> {
    let entry = tar
        .next_entry()
        .map_err(|e| ArtifactError::tar("the artifact", e))?;
    if let Some(e) = &entry
        && e.kind != EntryKind::File
    {
        return Err(ArtifactError::UnsafeEntry {
            member: "the artifact".into(),
            name: e.name.clone(),
            reason: format!("{} members are not allowed", e.kind.describe()),
        });
    }
    Ok(entry)
}

fn expect_name(entry: &EntryHeader, name: &str) -> Result<()> {
    if entry.name == name {
        Ok(())
    } else {
        Err(structure(format!(
            "expected member {name:?}, found {:?}",
            entry.name
        )))
    }
}

fn read_member<R: Read>(tar: &mut TarReader<R>, entry: &EntryHeader, cap: u64) -> Result<Vec<u8>> {
    if entry.size > cap {
        return Err(ArtifactError::TooLarge {
            what: entry.name.clone(),
            size: entry.size,
            limit: cap,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
    tar.read_to_end(&mut buf)
        .map_err(|e| ArtifactError::io(&entry.name, e))?;
    Ok(buf)
}

fn check_digest(manifest: &Manifest, path: &str, content: &[u8]) -> Result<()> {
    let expected = manifest
        .get(path)
        .ok_or_else(|| ArtifactError::ChecksumMissing {
            path: path.to_owned(),
        })?;
    let actual = crate::sha256(content);
    if &actual == expected {
        Ok(())
    } else {
        Err(ArtifactError::Checksum {
            path: path.to_owned(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        })
    }
}

/// Buffers a (compressed) header member, checks it against `manifest`, then parses it.
fn read_header_member<R: Read>(
    tar: &mut TarReader<R>,
    entry: &EntryHeader,
    manifest: &Manifest,
    format_version: u32,
    augment: bool,
    limits: &Limits,
) -> Result<header::ParsedHeader> {
    let (_, codec) = Compression::split_member_name(&entry.name).expect("caller matched the name");
    let compressed = read_member(tar, entry, limits.max_header_compressed)?;
    check_digest(manifest, &entry.name, &compressed)?;
    let decoded = compression::decoder(codec, compressed.as_slice(), limits.decoder())
        .map_err(|e| ArtifactError::io(&entry.name, e))?;
    let capped = CapReader {
        inner: decoded,
        left: limits.max_header_uncompressed,
        limit: limits.max_header_uncompressed,
        member: entry.name.clone(),
    };
    header::parse_header_tar(&entry.name, capped, format_version, augment, limits)
}

/// Fails once more than `left` bytes were read: the guard against decompression bombs.
struct CapReader<R> {
    inner: R,
    left: u64,
    limit: u64,
    member: String,
}

impl<R: Read> Read for CapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            return Err(io::Error::other(ArtifactError::TooLarge {
                what: format!("{} (decompressed)", self.member),
                size: self.limit + 1,
                limit: self.limit,
            }));
        }
        let want = usize::try_from(self.left.min(buf.len() as u64)).expect("small");
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn data_member(entry: &EntryHeader, payloads: usize) -> Result<(usize, Compression)> {
    let bad = || structure(format!("invalid data member name {:?}", entry.name));
    let (stem, codec) = Compression::split_member_name(&entry.name).ok_or_else(bad)?;
    let index = stem
        .strip_prefix("data/")
        .and_then(header::parse_index)
        .ok_or_else(bad)?;
    if index >= payloads {
        return Err(structure(format!(
            "{} has no payload in header-info",
            entry.name
        )));
    }
    Ok((index, codec))
}

fn build_info(
    parsed: header::ParsedHeader,
    augment: Option<&header::ParsedHeader>,
    manifest: Manifest,
    manifest_augment: Option<Manifest>,
    signature: SignatureState,
    header_compression: Compression,
) -> Result<ArtifactInfo> {
    let mut payloads = Vec::new();
    for (index, payload_type) in parsed.payload_types.iter().enumerate() {
        let prefix = format!("data/{index:04}/");
        let files_of = |m: &Manifest, augment: bool| -> Vec<FileRef> {
            m.entries()
                .iter()
                .filter_map(|e| {
                    e.path.strip_prefix(&prefix).map(|name| FileRef {
                        name: name.to_owned(),
                        sha256: e.sha256,
                        augment,
                    })
                })
                .collect()
        };
        let mut files = files_of(&manifest, false);
        if let Some(m) = &manifest_augment {
            files.extend(files_of(m, true));
        }
        for f in &files {
            header::check_file_name(&f.name).map_err(|reason| ArtifactError::UnsafeEntry {
                member: "manifest".into(),
                name: format!("{prefix}{}", f.name),
                reason,
            })?;
        }
        if let Some(Some(v2_files)) = parsed.files_v2.get(index) {
            let listed: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            if let Some(missing) = v2_files.iter().find(|f| !listed.contains(&f.as_str())) {
                return Err(ArtifactError::ChecksumMissing {
                    path: format!("{prefix}{missing}"),
                });
            }
        }
        match payload_type {
            PayloadType::RootfsImage if files.len() != 1 => {
                return Err(structure(format!(
                    "a rootfs-image payload needs exactly one file, the manifest lists {}",
                    files.len()
                )));
            }
            PayloadType::Empty if !files.is_empty() => {
                return Err(structure("the manifest lists files for an empty payload"));
            }
            _ => {}
        }
        let augment = augment.map(|a| Augment {
            payload_type: a
                .payload_types
                .get(index)
                .cloned()
                .unwrap_or(PayloadType::Empty),
            type_info: a
                .type_infos
                .get(index)
                .cloned()
                .flatten()
                .unwrap_or_default(),
            meta_data: a.meta_data.get(index).cloned().flatten(),
        });
        payloads.push(PayloadHeader {
            payload_type: payload_type.clone(),
            type_info: parsed.type_infos[index].clone().unwrap_or_default(),
            meta_data: parsed.meta_data[index].clone(),
            files,
            augment,
        });
    }
    // Every data line must belong to a payload.
    for m in std::iter::once(&manifest).chain(manifest_augment.as_ref()) {
        for e in m.entries() {
            if let Some(rest) = e.path.strip_prefix("data/") {
                let ok = rest.split_once('/').is_some_and(|(i, _)| {
                    header::parse_index(i).is_some_and(|i| i < payloads.len())
                });
                if !ok {
                    return Err(structure(format!(
                        "manifest entry {} does not belong to any payload",
                        e.path
                    )));
                }
            } else if !(e.path == "version"
                || e.path.starts_with("header.tar")
                || e.path.starts_with("header-augment.tar"))
            {
                return Err(structure(format!(
                    "manifest entry {} names no member of an artifact",
                    e.path
                )));
            }
        }
    }
    Ok(ArtifactInfo {
        format_version: parsed.format_version,
        name: parsed.name,
        group: parsed.group,
        device_types: parsed.device_types,
        depends_artifact_name: parsed.depends_artifact_name,
        depends_group: parsed.depends_group,
        scripts: parsed.scripts,
        payloads,
        signature,
        header_compression,
        manifest,
        manifest_augment,
    })
}
