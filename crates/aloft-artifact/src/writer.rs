//! The artifact writer.
//!
//! Owns: turning payload sources plus metadata into a canonical v3 artifact that
//! mender-artifact 3.9 accepts (zstd excepted): the default provides and clears that
//! mender-artifact adds, the name rules, the member order, optional signing.
//!
//! Each payload byte is read once: it is hashed while the data tar is compressed into an
//! anonymous spool file (the manifest, which comes first, needs the hashes and the outer tar
//! needs the compressed size). Memory stays flat whatever the payload size.
//! Must not: write augmented or multi-payload artifacts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::compression::{self, Compression, Encoder};
use crate::error::{ArtifactError, Result};
use crate::header::{
    self, DependValue, HeaderDependsOut, HeaderInfoOut, HeaderProvidesOut, PayloadRefOut,
    PayloadType, StateScript, TypeInfo, TypeInfoOut,
};
use crate::keys::{Algorithm, SigningKey};
use crate::manifest::Manifest;
use crate::tar::{EntryMeta, TarWriter};

/// A payload file's name and SHA-256.
type FileHash = (String, [u8; 32]);

/// Longest payload file name written (the C++ Mender client limits manifest paths to 100).
pub const MAX_FILE_NAME: usize = 90;

/// One payload file to write.
pub struct PayloadSource {
    /// Base name inside the artifact.
    pub name: String,
    /// Exact size; the reader must yield exactly this many bytes.
    pub size: u64,
    /// The content.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for PayloadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PayloadSource({:?}, {} bytes)", self.name, self.size)
    }
}

impl PayloadSource {
    /// A file on disk, stored under its base name.
    pub fn from_path(path: &Path) -> Result<Self> {
        let io_err = |e| ArtifactError::io(&path.display().to_string(), e);
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(ArtifactError::Invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            ArtifactError::Invalid(format!("{} has no usable file name", path.display()))
        })?;
        Ok(Self {
            name: name.to_owned(),
            size: meta.len(),
            reader: Box::new(file),
        })
    }

    /// Content from memory.
    pub fn from_bytes(name: &str, data: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            size: data.len() as u64,
            reader: Box::new(io::Cursor::new(data)),
        }
    }
}

/// The software-version provide that mender-artifact adds by default, and its options
/// (`--software-name`, `--software-version`, `--software-filesystem`, ...).
#[derive(Debug, Clone, Default)]
pub struct SoftwareVersioning {
    /// `--software-name N`: the key becomes `rootfs-image.N.version`.
    pub name: Option<String>,
    /// `--software-version V` (default: the artifact name).
    pub version: Option<String>,
    /// `--software-filesystem F`: the key becomes `F.version` or `F.N.version`.
    pub filesystem: Option<String>,
    /// `--no-default-software-version`: no version provide and no default clears.
    pub no_default_version: bool,
    /// `--no-default-clears-provides`.
    pub no_default_clears: bool,
    /// `--no-checksum-provide`: no `rootfs-image.checksum` for rootfs images.
    pub no_checksum_provide: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Bytes written in all.
    pub artifact_size: u64,
    /// The signature scheme, when signed.
    pub signature: Option<Algorithm>,
    /// Provides of the payload as written (defaults included).
    pub type_info: TypeInfo,
}

/// Builds one artifact. Fill the fields, then call [`ArtifactWriter::write`].
#[derive(Debug)]
pub struct ArtifactWriter {
    /// Artifact name.
    pub name: String,
    /// Compatible device types (at least one).
    pub device_types: Vec<String>,
    /// Artifact group provided.
    pub group: Option<String>,
    /// Install only over one of these artifact names.
    pub depends_artifact_name: Vec<String>,
    /// Install only over one of these groups.
    pub depends_group: Vec<String>,
    /// The payload type.
    pub payload_type: PayloadType,
    /// Payload files, in order.
    pub files: Vec<PayloadSource>,
    /// Extra type-info provides (they win over defaults).
    pub provides: BTreeMap<String, String>,
    /// Type-info depends.
    pub depends: BTreeMap<String, DependValue>,
    /// User clears patterns (put before the defaults).
    pub clears: Vec<String>,
    /// Module meta-data.
    pub meta_data: Option<Map<String, Value>>,
    /// Default software-version provides.
    pub software: SoftwareVersioning,
    /// State scripts.
    pub scripts: Vec<StateScript>,
    /// Codec for header and data.
    pub compression: Compression,
    /// Codec level (`None`: default).
    pub level: Option<i32>,
    /// Compression threads (zstd only).
    pub threads: u32,
    /// Sign with this key.
    pub signing_key: Option<SigningKey>,
    /// mtime of every entry (e.g. `SOURCE_DATE_EPOCH`); 0 by default, for reproducible output.
    pub mtime: u64,
    /// Where to spool the compressed data (default: the system temp directory).
    pub spool_dir: Option<PathBuf>,
}

impl ArtifactWriter {
    /// A writer with defaults: gzip, unsigned, no files.
    pub fn new(name: &str, device_types: Vec<String>, payload_type: PayloadType) -> Self {
        Self {
            name: name.to_owned(),
            device_types,
            group: None,
            depends_artifact_name: Vec::new(),
            depends_group: Vec::new(),
            payload_type,
            files: Vec::new(),
            provides: BTreeMap::new(),
            depends: BTreeMap::new(),
            clears: Vec::new(),
            meta_data: None,
            software: SoftwareVersioning::default(),
            scripts: Vec::new(),
            compression: Compression::Gzip,
            level: None,
            threads: 1,
            signing_key: None,
            mtime: 0,
            spool_dir: None,
        }
    }

    /// Checks every rule that does not need the payload content.
    pub fn check(&self) -> Result<()> {
        let invalid = ArtifactError::Invalid;
        header::check_label("artifact name", &self.name).map_err(invalid)?;
        if self.device_types.is_empty() {
            return Err(invalid("at least one device type is required".into()));
        }
        for d in &self.device_types {
            header::check_label("device type", d).map_err(invalid)?;
        }
        for g in self.group.iter().chain(&self.depends_group) {
            header::check_label("artifact group", g).map_err(invalid)?;
        }
        for n in &self.depends_artifact_name {
            header::check_label("depends artifact name", n).map_err(invalid)?;
        }
        match &self.payload_type {
            PayloadType::RootfsImage => {
                if self.files.len() != 1 {
                    return Err(invalid(format!(
                        "a rootfs-image needs exactly one file, got {}",
                        self.files.len()
                    )));
                }
                if self.meta_data.is_some() {
                    return Err(invalid("a rootfs-image carries no meta-data".into()));
                }
            }
            PayloadType::Module(t) => {
                if t.is_empty()
                    || t.len() > 256
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err(invalid(format!(
                        "module type {t:?} must be 1-256 of [A-Za-z0-9._-]"
                    )));
                }
            }
            PayloadType::Empty => {
                if !self.files.is_empty() || self.meta_data.is_some() || !self.scripts.is_empty() {
                    return Err(invalid(
                        "an empty (bootstrap) payload carries no files, meta-data or scripts"
                            .into(),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.files {
            header::check_file_name(&f.name).map_err(invalid)?;
            if f.name.len() > MAX_FILE_NAME {
                return Err(invalid(format!(
                    "payload file name {:?} is {} bytes; at most {MAX_FILE_NAME} keep it readable by every Mender client",
                    f.name,
                    f.name.len()
                )));
            }
            if !names.insert(&f.name) {
                return Err(invalid(format!("payload file {:?} is given twice", f.name)));
            }
        }
        for k in self.provides.keys() {
            check_key("provides", k, &header::RESERVED_PROVIDES)?;
        }
        for k in self.depends.keys() {
            check_key("depends", k, &header::RESERVED_DEPENDS)?;
        }
        if let Some(meta) = &self.meta_data {
            check_meta_data(meta)?;
        }
        let mut script_names = std::collections::HashSet::new();
        for s in &self.scripts {
            header::check_script_name(&s.name).map_err(invalid)?;
            if !script_names.insert(&s.name) {
                return Err(invalid(format!("state script {:?} is given twice", s.name)));
            }
        }
        Ok(())
    }

    /// Writes the artifact to `out` and returns what was written. Nothing is written to `out`
    /// before every payload was read and hashed, so a failure leaves `out` empty.
    pub fn write<W: Write>(mut self, out: W) -> Result<WriteSummary> {
        self.check()?;
        let suffix = self.compression.suffix();
        let spool = match &self.spool_dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
        .map_err(|e| ArtifactError::io("the spool file", e))?;

        // 1. Payload files → data tar → codec → spool, hashing on the way.
        let data_member = format!("data/0000.tar{suffix}");
        let files = std::mem::take(&mut self.files);
        let (hashes, mut spool) = self.spool_data(files, spool, &data_member)?;
        let spool_len = spool
            .seek(SeekFrom::End(0))
            .map_err(|e| ArtifactError::io("the spool file", e))?;
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| ArtifactError::io("the spool file", e))?;

        // 2. The header, which carries the checksum provide, so it comes after the data.
        let type_info = self.type_info(&hashes);
        let header_member = format!("header.tar{suffix}");
        let header_tar = self
            .header_tar(&type_info)
            .map_err(|e| ArtifactError::io(&header_member, e))?;
        let header = compression::compress(self.compression, &header_tar, self.level)
            .map_err(|e| ArtifactError::io(&header_member, e))?;

        // 3. The manifest, and its signature.
        let mut manifest = Manifest::default();
        for (name, sha) in &hashes {
            manifest
                .push(format!("data/0000/{name}"), *sha)
                .map_err(ArtifactError::Invalid)?;
        }
        manifest
            .push(header_member.clone(), crate::sha256(&header))
            .map_err(ArtifactError::Invalid)?;
        manifest
            .push("version".into(), crate::sha256(header::VERSION_3))
            .map_err(ArtifactError::Invalid)?;
        let manifest_bytes = manifest.to_bytes();
        let signature = self
            .signing_key
            .as_ref()
            .map(|k| (k.sign_manifest(&manifest_bytes), k.algorithm()));

        // 4. The outer tar.
        let meta = EntryMeta {
            mode: 0o644,
            mtime: self.mtime,
        };
        let counter = CountingWriter {
            inner: out,
            count: 0,
        };
        let mut tar = TarWriter::new(counter);
        let outer = |e| ArtifactError::io("the output", e);
        tar.append("version", meta, header::VERSION_3)
            .map_err(outer)?;
        tar.append("manifest", meta, &manifest_bytes)
            .map_err(outer)?;
        if let Some((sig, _)) = &signature {
            tar.append("manifest.sig", meta, sig.as_bytes())
                .map_err(outer)?;
        }
        tar.append(&header_member, meta, &header).map_err(outer)?;
        tar.append_header(&data_member, spool_len, meta)
            .map_err(outer)?;
        let copied = io::copy(&mut spool, tar.get_mut()).map_err(outer)?;
        if copied != spool_len {
            return Err(ArtifactError::Truncated {
                member: data_member,
                reason: "the spool file shrank".into(),
            });
        }
        tar.pad(spool_len).map_err(outer)?;
        let mut counter = tar.finish().map_err(outer)?;
        counter.flush().map_err(outer)?;
        Ok(WriteSummary {
            manifest,
            artifact_size: counter.count,
            signature: signature.map(|(_, a)| a),
            type_info,
        })
    }

    fn spool_data(
        &self,
        files: Vec<PayloadSource>,
        spool: File,
        member: &str,
    ) -> Result<(Vec<FileHash>, File)> {
        let err = |e| ArtifactError::io(member, e);
        let encoder = Encoder::new(
            self.compression,
            BufWriter::with_capacity(256 * 1024, spool),
            self.level,
            self.threads,
        )
        .map_err(err)?;
        let mut tar = TarWriter::new(encoder);
        let meta = EntryMeta {
            mode: 0o644,
            mtime: self.mtime,
        };
        let mut hashes = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        for mut source in files {
            tar.append_header(&source.name, source.size, meta)
                .map_err(err)?;
            let mut digest = Sha256::new();
            let mut left = source.size;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).expect("small");
                let n = match source.reader.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(ArtifactError::Invalid(format!(
                            "{} ended {left} bytes early (did it change while being written?)",
                            source.name
                        )));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ArtifactError::io(&source.name, e)),
                };
                digest.update(&buf[..n]);
                tar.write_data(&buf[..n]).map_err(err)?;
                left -= n as u64;
            }
            let mut probe = [0u8; 1];
            if source
                .reader
                .read(&mut probe)
                .map_err(|e| ArtifactError::io(&source.name, e))?
                != 0
            {
                return Err(ArtifactError::Invalid(format!(
                    "{} is longer than its stated size {} (did it change while being written?)",
                    source.name, source.size
                )));
            }
            tar.pad(source.size).map_err(err)?;
            hashes.push((source.name, digest.finalize().into()));
        }
        let encoder = tar.finish().map_err(err)?;
        let buffered = encoder.finish().map_err(err)?;
        let spool = buffered.into_inner().map_err(|e| err(e.into_error()))?;
        Ok((hashes, spool))
    }

    /// type-info with mender-artifact's defaults merged under the user's values.
    fn type_info(&self, hashes: &[FileHash]) -> TypeInfo {
        let sw = &self.software;
        let mut provides = BTreeMap::new();
        let mut clears: Vec<String> = self.clears.clone();
        let default_prefix = match &self.payload_type {
            PayloadType::Empty => None,
            PayloadType::RootfsImage => Some("rootfs-image".to_owned()),
            PayloadType::Module(t) => Some(format!("rootfs-image.{t}")),
        };
        if let Some(default_prefix) = default_prefix {
            if self.payload_type == PayloadType::RootfsImage
                && !sw.no_checksum_provide
                && let Some((_, sha)) = hashes.first()
            {
                provides.insert("rootfs-image.checksum".to_owned(), hex::encode(sha));
            }
            let prefix = match (&sw.filesystem, &sw.name) {
                (Some(f), Some(n)) => format!("{f}.{n}"),
                (Some(f), None) => f.clone(),
                (None, Some(n)) => format!("rootfs-image.{n}"),
                (None, None) => default_prefix,
            };
            if !sw.no_default_version {
                provides.insert(
                    format!("{prefix}.version"),
                    sw.version.clone().unwrap_or_else(|| self.name.clone()),
                );
                if !sw.no_default_clears {
                    let plain_rootfs = self.payload_type == PayloadType::RootfsImage
                        && sw.filesystem.is_none()
                        && sw.name.is_none();
                    if plain_rootfs {
                        clears.extend(
                            ["artifact_group", "rootfs_image_checksum", "rootfs-image.*"]
                                .map(String::from),
                        );
                    } else {
                        clears.push(format!("{prefix}.*"));
                    }
                }
            }
        }
        provides.extend(self.provides.clone());
        let mut seen = std::collections::HashSet::new();
        clears.retain(|c| seen.insert(c.clone()));
        TypeInfo {
            provides,
            depends: self.depends.clone(),
            clears: (!clears.is_empty()).then_some(clears),
        }
    }

    fn header_tar(&self, type_info: &TypeInfo) -> io::Result<Vec<u8>> {
        let info = HeaderInfoOut {
            payloads: vec![PayloadRefOut {
                kind: self.payload_type.as_str(),
            }],
            artifact_provides: HeaderProvidesOut {
                artifact_name: &self.name,
                artifact_group: self.group.as_deref(),
            },
            artifact_depends: HeaderDependsOut {
                artifact_name: &self.depends_artifact_name,
                device_type: &self.device_types,
                artifact_group: &self.depends_group,
            },
        };
        let type_info_out = TypeInfoOut {
            kind: self.payload_type.as_str(),
            info: type_info,
        };
        let file_meta = EntryMeta {
            mode: 0o644,
            mtime: self.mtime,
        };
        let mut tar = TarWriter::new(Vec::new());
        tar.append("header-info", file_meta, &serde_json::to_vec(&info)?)?;
        let mut scripts: Vec<&StateScript> = self.scripts.iter().collect();
        scripts.sort_by(|a, b| a.name.cmp(&b.name));
        for s in scripts {
            tar.append(
                &format!("scripts/{}", s.name),
                EntryMeta {
                    mode: 0o755,
                    mtime: self.mtime,
                },
                &s.content,
            )?;
        }
        tar.append(
            "headers/0000/type-info",
            file_meta,
            &serde_json::to_vec(&type_info_out)?,
        )?;
        match (&self.payload_type, &self.meta_data) {
            (PayloadType::RootfsImage, _) => {
                tar.append("headers/0000/meta-data", file_meta, b"")?;
            }
            (PayloadType::Module(_), Some(meta)) => {
                tar.append(
                    "headers/0000/meta-data",
                    file_meta,
                    &serde_json::to_vec(meta)?,
                )?;
            }
            _ => {}
        }
        tar.finish()
    }
}

fn check_key(what: &str, key: &str, reserved: &[&str]) -> Result<()> {
    if key.is_empty()
        || key.contains(':')
        || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ArtifactError::Invalid(format!(
            "{what} key {key:?} must be printable, without ':' or blanks"
        )));
    }
    if reserved.contains(&key) {
        return Err(ArtifactError::Invalid(format!(
            "{what} key {key:?} is set through its own option (name, device type, group), not as a {what} key"
        )));
    }
    Ok(())
}

/// The documented meta-data restriction: top-level values are strings, numbers, or lists of those.
fn check_meta_data(meta: &Map<String, Value>) -> Result<()> {
    for (k, v) in meta {
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        let ok = scalar(v) || matches!(v, Value::Array(items) if items.iter().all(scalar));
        if !ok {
            return Err(ArtifactError::Invalid(format!(
                "meta-data key {k:?}: values must be strings, numbers, booleans or lists of those"
            )));
        }
    }
    Ok(())
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
