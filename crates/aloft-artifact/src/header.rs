//! The artifact's metadata: `version`, `header-info`, `type-info`, `meta-data`, state scripts,
//! and the parser of the (decompressed) `header.tar` / `header-augment.tar`.
//!
//! Owns: the JSON schemas of format versions 2 and 3 (strict where mender-artifact 3.9 is strict,
//! tolerant where it is tolerant), the name rules shared by reader and writer, and the model
//! ([`ArtifactInfo`], [`PayloadHeader`], [`TypeInfo`]) that callers inspect before any payload
//! byte is read. Must not: read payload data or decide installability on a device.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Limits;
use crate::error::ArtifactError;
use crate::keys::Algorithm;
use crate::manifest::Manifest;
use crate::tar::{EntryKind, TarReader};

/// The `version` member.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    format: String,
    version: u32,
}

/// Canonical `version` bytes for format version 3, as mender-artifact writes them.
pub(crate) const VERSION_3: &[u8] = br#"{"format":"mender","version":3}"#;

/// Parses `version`; returns the format version (2 or 3).
pub(crate) fn parse_version(bytes: &[u8]) -> Result<u32, ArtifactError> {
    let v: VersionFile = serde_json::from_slice(bytes)
        .map_err(|e| ArtifactError::Version(format!("not a valid version file: {e}")))?;
    if v.format != "mender" {
        return Err(ArtifactError::Version(format!(
            "format {:?} is not \"mender\"",
            v.format
        )));
    }
    match v.version {
        2 | 3 => Ok(v.version),
        1 => Err(ArtifactError::Version(
            "format version 1 is no longer supported".into(),
        )),
        n => Err(ArtifactError::Version(format!(
            "unsupported format version {n} (2 and 3 are known)"
        ))),
    }
}

/// What a payload installs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// No payload: a bootstrap artifact that only sets provides.
    Empty,
    /// A root filesystem image for the inactive A/B slot.
    RootfsImage,
    /// Handled by the Update Module of this name.
    Module(String),
}

impl PayloadType {
    /// The type string used in `header-info` (`None` for an empty payload).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Empty => None,
            Self::RootfsImage => Some("rootfs-image"),
            Self::Module(name) => Some(name),
        }
    }

    fn from_json(kind: Option<&str>) -> Result<Self, String> {
        match kind {
            None => Ok(Self::Empty),
            Some("") => Err("empty payload type".into()),
            Some("rootfs-image") => Ok(Self::RootfsImage),
            Some(other) => Ok(Self::Module(other.to_owned())),
        }
    }
}

impl std::fmt::Display for PayloadType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str().unwrap_or("(empty)"))
    }
}

impl Serialize for PayloadType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_str().serialize(s)
    }
}

/// A depends value: one string, or a list of which the device's value must be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DependValue {
    /// Must equal.
    One(String),
    /// Must be one of.
    AnyOf(Vec<String>),
}

impl std::fmt::Display for DependValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(v) => f.write_str(v),
            Self::AnyOf(v) => write!(f, "one of [{}]", v.join(", ")),
        }
    }
}

/// `headers/NNNN/type-info`: per-payload provides, depends and clears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    /// Keys this payload sets in the device's stored provides.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        rename = "artifact_provides"
    )]
    pub provides: BTreeMap<String, String>,
    /// Keys that must match the device's stored provides.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        rename = "artifact_depends"
    )]
    pub depends: BTreeMap<String, DependValue>,
    /// Patterns of stored provides to drop on install (`*` wildcard).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "clears_artifact_provides"
    )]
    pub clears: Option<Vec<String>>,
}

/// `type-info` as stored: nulls allowed, unknown keys ignored (as 3.9 does).
#[derive(Deserialize)]
struct TypeInfoFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    artifact_provides: Option<BTreeMap<String, String>>,
    #[serde(default)]
    artifact_depends: Option<BTreeMap<String, DependValue>>,
    #[serde(default)]
    clears_artifact_provides: Option<Vec<String>>,
}

/// A state script shipped inside the artifact (`scripts/<name>` in the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateScript {
    /// `<State>_<Enter|Leave|Error>_<NN>[_name]`.
    pub name: String,
    /// The script itself.
    #[serde(skip)]
    pub content: Vec<u8>,
    /// SHA-256 of the content, for display.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
}

/// An unsigned override of a payload's header, from `header-augment.tar*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Augment {
    /// The payload type the augment header names.
    #[serde(rename = "type")]
    pub payload_type: PayloadType,
    /// Augment provides, depends, clears.
    pub type_info: TypeInfo,
    /// Augment meta-data.
    pub meta_data: Option<Map<String, Value>>,
}

/// A payload file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRef {
    /// Base name inside `data/NNNN.tar*`.
    pub name: String,
    /// SHA-256 of the file content, from the manifest.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
    /// Listed in `manifest-augment`, so not covered by the signature.
    pub augment: bool,
}

/// One payload's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadHeader {
    /// From `header-info` (the authoritative type; type-info's own field is ignored when empty).
    #[serde(rename = "type")]
    pub payload_type: PayloadType,
    /// Provides, depends and clears of this payload.
    pub type_info: TypeInfo,
    /// `meta-data` JSON object, if present and not empty.
    pub meta_data: Option<Map<String, Value>>,
    /// Payload files listed in the manifest(s), in manifest order.
    pub files: Vec<FileRef>,
    /// Augment override (unsigned), if the artifact has one.
    pub augment: Option<Augment>,
}

/// The signature state of an artifact after its header was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum SignatureState {
    /// No `manifest.sig`.
    Unsigned,
    /// Signed, but no trusted key was given, so not checked.
    NotVerified,
    /// Verified with a trusted key.
    Verified {
        /// The scheme.
        algorithm: Algorithm,
        /// Fingerprint of the key that verified it.
        key: String,
    },
}

/// Everything in an artifact before its payload data: what [`crate::ArtifactReader::open`]
/// returns once the signature and header checksums were verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    /// 2 or 3.
    pub format_version: u32,
    /// `artifact_provides.artifact_name`.
    pub name: String,
    /// `artifact_provides.artifact_group`.
    pub group: Option<String>,
    /// `artifact_depends.device_type`.
    pub device_types: Vec<String>,
    /// `artifact_depends.artifact_name`: install only over one of these.
    pub depends_artifact_name: Vec<String>,
    /// `artifact_depends.artifact_group`.
    pub depends_group: Vec<String>,
    /// State scripts, sorted by name.
    pub scripts: Vec<StateScript>,
    /// The payloads (exactly one).
    pub payloads: Vec<PayloadHeader>,
    /// Signature state.
    pub signature: SignatureState,
    /// Compression of `header.tar*`.
    #[serde(serialize_with = "ser_display")]
    pub header_compression: crate::Compression,
    /// The signed manifest.
    pub manifest: Manifest,
    /// The unsigned augment manifest, if any.
    pub manifest_augment: Option<Manifest>,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl ArtifactInfo {
    /// Merged provides of the whole artifact (header-info plus every payload's type-info), as a
    /// device stores them after install.
    pub fn provides(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        all.insert("artifact_name".to_owned(), self.name.clone());
        if let Some(g) = &self.group {
            all.insert("artifact_group".to_owned(), g.clone());
        }
        for p in &self.payloads {
            all.extend(p.type_info.provides.clone());
        }
        all
    }
}

// ---- header-info schemas ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderInfoV3 {
    payloads: Vec<PayloadRef>,
    artifact_provides: HeaderProvides,
    #[serde(default)]
    artifact_depends: Option<HeaderDepends>,
}

#[derive(Deserialize)]
struct PayloadRef {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderProvides {
    artifact_name: String,
    #[serde(default)]
    artifact_group: Option<String>,
}

#[derive(Deserialize)]
struct HeaderDepends {
    #[serde(default)]
    artifact_name: Option<Vec<String>>,
    device_type: Vec<String>,
    #[serde(default)]
    artifact_group: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct HeaderInfoV2 {
    artifact_name: String,
    updates: Vec<PayloadRef>,
    device_types_compatible: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesV2 {
    files: Vec<String>,
}

/// Serialisable `header-info` (v3) in mender-artifact's key order.
#[derive(Serialize)]
pub(crate) struct HeaderInfoOut<'a> {
    pub(crate) payloads: Vec<PayloadRefOut<'a>>,
    pub(crate) artifact_provides: HeaderProvidesOut<'a>,
    pub(crate) artifact_depends: HeaderDependsOut<'a>,
}

#[derive(Serialize)]
pub(crate) struct PayloadRefOut<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct HeaderProvidesOut<'a> {
    pub(crate) artifact_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_group: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct HeaderDependsOut<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) artifact_name: &'a [String],
    pub(crate) device_type: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) artifact_group: &'a [String],
}

/// Serialisable `type-info` in mender-artifact's key order.
#[derive(Serialize)]
pub(crate) struct TypeInfoOut<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: Option<&'a str>,
    #[serde(flatten)]
    pub(crate) info: &'a TypeInfo,
}

// ---- name rules ----

/// Keys that belong to `header-info` and must not appear in a type-info.
pub(crate) const RESERVED_PROVIDES: [&str; 2] = ["artifact_name", "artifact_group"];
/// Depends keys that belong to `header-info`.
pub(crate) const RESERVED_DEPENDS: [&str; 3] = ["artifact_name", "device_type", "artifact_group"];

/// Checks a payload file name: `[A-Za-z0-9_.,-]+`, not `.` or `..` (no directories).
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("payload file name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | '-')))
    {
        return Err(format!(
            "payload file name {name:?} contains {c:?} (allowed: letters, digits, '_', '.', ',', '-')"
        ));
    }
    Ok(())
}

/// The states whose scripts an artifact may carry.
pub const SCRIPT_STATES: [&str; 6] = [
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactCommit",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactFailure",
];

/// Checks a state script name strictly:
/// `<State>_<Enter|Leave|Error>_<NN>[_<text without blanks or '/'>]`.
pub fn check_script_name(name: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "state script name {name:?} must look like <State>_<Enter|Leave|Error>_<NN>[_name] \
             with State one of {}",
            SCRIPT_STATES.join(", ")
        )
    };
    let mut parts = name.splitn(4, '_');
    let (Some(state), Some(action), Some(nn)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let ok = SCRIPT_STATES.contains(&state)
        && matches!(action, "Enter" | "Leave" | "Error")
        && nn.len() == 2
        && nn.bytes().all(|b| b.is_ascii_digit())
        && parts.next().is_none_or(|rest| {
            !rest.is_empty()
                && !rest
                    .chars()
                    .any(|c| c.is_whitespace() || c == '/' || c.is_control())
        });
    if ok { Ok(()) } else { Err(bad()) }
}

/// Checks a name, device type or group: 1–256 bytes, printable, no white space.
pub fn check_label(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 256 {
        return Err(format!("{what} must be 1 to 256 bytes long"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what} {value:?} contains white space or control characters"
        ));
    }
    Ok(())
}

// ---- header tar parsing ----

fn json<T: serde::de::DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, ArtifactError> {
    serde_json::from_slice(bytes).map_err(|e| ArtifactError::Header {
        file: file.to_owned(),
        reason: e.to_string(),
    })
}

fn header_err(file: &str, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::Header {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// The raw pieces of one header tar.
pub(crate) struct ParsedHeader {
    pub(crate) format_version: u32,
    pub(crate) name: String,
    pub(crate) group: Option<String>,
    pub(crate) device_types: Vec<String>,
    pub(crate) depends_artifact_name: Vec<String>,
    pub(crate) depends_group: Vec<String>,
    pub(crate) payload_types: Vec<PayloadType>,
    pub(crate) type_infos: Vec<Option<TypeInfo>>,
    pub(crate) meta_data: Vec<Option<Map<String, Value>>>,
    /// v2 only: `headers/NNNN/files`.
    pub(crate) files_v2: Vec<Option<Vec<String>>>,
    pub(crate) scripts: Vec<StateScript>,
}

/// Parses a decompressed header tar. `member` names it in errors; `augment` forbids scripts.
pub(crate) fn parse_header_tar<R: Read>(
    member: &str,
    reader: R,
    format_version: u32,
    augment: bool,
    limits: &Limits,
) -> Result<ParsedHeader, ArtifactError> {
    let mut tar = TarReader::new(reader);
    let tar_err = |e| ArtifactError::tar(member, e);
    let first = tar
        .next_entry()
        .map_err(tar_err)?
        .ok_or_else(|| header_err(member, "empty header"))?;
    if first.name != "header-info" || first.kind != EntryKind::File {
        return Err(header_err(
            member,
            format!("first entry is {:?}, expected header-info", first.name),
        ));
    }
    let info_bytes = read_capped(&mut tar, member, "header-info", first.size, limits.max_json)?;
    let mut parsed = if format_version == 3 {
        let info: HeaderInfoV3 = json("header-info", &info_bytes)?;
        let depends = info.artifact_depends.ok_or_else(|| {
            header_err(
                "header-info",
                "artifact_depends.device_type is missing: no device could install it",
            )
        })?;
        ParsedHeader {
            format_version,
            name: info.artifact_provides.artifact_name,
            group: info.artifact_provides.artifact_group,
            device_types: depends.device_type,
            depends_artifact_name: depends.artifact_name.unwrap_or_default(),
            depends_group: depends.artifact_group.unwrap_or_default(),
            payload_types: payload_types(&info.payloads)?,
            type_infos: Vec::new(),
            meta_data: Vec::new(),
            files_v2: Vec::new(),
            scripts: Vec::new(),
        }
    } else {
        let info: HeaderInfoV2 = json("header-info", &info_bytes)?;
        ParsedHeader {
            format_version,
            name: info.artifact_name,
            group: None,
            device_types: info.device_types_compatible,
            depends_artifact_name: Vec::new(),
            depends_group: Vec::new(),
            payload_types: payload_types(&info.updates)?,
            type_infos: Vec::new(),
            meta_data: Vec::new(),
            files_v2: Vec::new(),
            scripts: Vec::new(),
        }
    };
    if parsed.device_types.is_empty() {
        return Err(header_err(
            "header-info",
            "the list of device types is empty",
        ));
    }
    if parsed.payload_types.len() != 1 {
        return Err(header_err(
            "header-info",
            format!(
                "{} payloads; exactly one is supported",
                parsed.payload_types.len()
            ),
        ));
    }
    let count = parsed.payload_types.len();
    parsed.type_infos = vec![None; count];
    parsed.meta_data = vec![None; count];
    parsed.files_v2 = vec![None; count];
    let mut past_scripts = false;
    while let Some(entry) = tar.next_entry().map_err(tar_err)? {
        if entry.kind == EntryKind::Directory {
            past_scripts = true;
            continue;
        }
        if entry.kind != EntryKind::File {
            return Err(ArtifactError::UnsafeEntry {
                member: member.to_owned(),
                name: entry.name,
                reason: format!("{} entries are not allowed", entry.kind.describe()),
            });
        }
        if let Some(script) = entry.name.strip_prefix("scripts/") {
            if augment || past_scripts {
                return Err(header_err(
                    member,
                    format!("unexpected entry {:?}", entry.name),
                ));
            }
            if script.is_empty() || script.contains('/') || script == "." || script == ".." {
                return Err(ArtifactError::UnsafeEntry {
                    member: member.to_owned(),
                    name: entry.name,
                    reason: "state script names must be plain file names".into(),
                });
            }
            if parsed.scripts.iter().any(|s| s.name == script) {
                return Err(header_err(
                    member,
                    format!("state script {script:?} appears twice"),
                ));
            }
            let content = read_capped(
                &mut tar,
                member,
                &entry.name,
                entry.size,
                limits.max_header_uncompressed,
            )?;
            parsed.scripts.push(StateScript {
                name: script.to_owned(),
                sha256: crate::sha256(&content),
                content,
            });
            continue;
        }
        past_scripts = true;
        let bad_entry = || header_err(member, format!("unexpected entry {:?}", entry.name));
        let rest = entry.name.strip_prefix("headers/").ok_or_else(bad_entry)?;
        let (bucket, file) = rest.split_once('/').ok_or_else(bad_entry)?;
        let index = parse_index(bucket)
            .filter(|&i| i < count)
            .ok_or_else(bad_entry)?;
        let bytes = read_capped(&mut tar, member, &entry.name, entry.size, limits.max_json)?;
        let empty_payload = parsed.payload_types[index] == PayloadType::Empty;
        match file {
            "type-info" => {
                if parsed.type_infos[index].is_some() {
                    return Err(header_err(member, format!("{} appears twice", entry.name)));
                }
                parsed.type_infos[index] = Some(parse_type_info(
                    &entry.name,
                    &bytes,
                    &parsed.payload_types[index],
                )?);
            }
            "meta-data" if !empty_payload => {
                if parsed.meta_data[index].is_some() {
                    return Err(header_err(member, format!("{} appears twice", entry.name)));
                }
                parsed.meta_data[index] = parse_meta_data(&entry.name, &bytes)?;
            }
            "files" if format_version == 2 => {
                let files: FilesV2 = json(&entry.name, &bytes)?;
                parsed.files_v2[index] = Some(files.files);
            }
            _ => return Err(bad_entry()),
        }
    }
    tar.finish().map_err(tar_err)?;
    for (i, t) in parsed.type_infos.iter().enumerate() {
        if t.is_none() && format_version == 3 {
            return Err(header_err(
                member,
                format!("headers/{i:04}/type-info is missing"),
            ));
        }
    }
    parsed.scripts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(parsed)
}

fn payload_types(refs: &[PayloadRef]) -> Result<Vec<PayloadType>, ArtifactError> {
    refs.iter()
        .map(|p| {
            PayloadType::from_json(p.kind.as_deref()).map_err(|e| header_err("header-info", e))
        })
        .collect()
}

/// Parses a four-digit payload index (`0000`).
pub(crate) fn parse_index(s: &str) -> Option<usize> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_type_info(
    file: &str,
    bytes: &[u8],
    payload_type: &PayloadType,
) -> Result<TypeInfo, ArtifactError> {
    let raw: TypeInfoFile = json(file, bytes)?;
    match (raw.kind.as_deref(), payload_type.as_str()) {
        // mender-artifact 3.9 writes "" for rootfs-image; a missing type is fine too.
        (None | Some(""), _) => {}
        (Some(a), Some(b)) if a == b => {}
        (Some(a), b) => {
            return Err(header_err(
                file,
                format!(
                    "type {a:?} does not match the payload type {:?} in header-info",
                    b.unwrap_or("null")
                ),
            ));
        }
    }
    let info = TypeInfo {
        provides: raw.artifact_provides.unwrap_or_default(),
        depends: raw.artifact_depends.unwrap_or_default(),
        clears: raw.clears_artifact_provides,
    };
    if let Some(k) = info
        .provides
        .keys()
        .find(|k| RESERVED_PROVIDES.contains(&k.as_str()))
    {
        return Err(header_err(
            file,
            format!("provides key {k:?} belongs in header-info"),
        ));
    }
    if let Some(k) = info
        .depends
        .keys()
        .find(|k| RESERVED_DEPENDS.contains(&k.as_str()))
    {
        return Err(header_err(
            file,
            format!("depends key {k:?} belongs in header-info"),
        ));
    }
    Ok(info)
}

fn parse_meta_data(file: &str, bytes: &[u8]) -> Result<Option<Map<String, Value>>, ArtifactError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match json::<Value>(file, bytes)? {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(header_err(
            file,
            "the top level of meta-data must be a JSON object",
        )),
    }
}

fn read_capped<R: Read>(
    tar: &mut TarReader<R>,
    member: &str,
    name: &str,
    size: u64,
    cap: u64,
) -> Result<Vec<u8>, ArtifactError> {
    if size > cap {
        return Err(ArtifactError::TooLarge {
            what: format!("{member}: {name}"),
            size,
            limit: cap,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    tar.read_to_end(&mut buf)
        .map_err(|e| ArtifactError::io(member, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_follow_the_state_pattern() {
        for ok in [
            "ArtifactInstall_Enter_00",
            "ArtifactCommit_Leave_99_check-db",
            "ArtifactFailure_Error_10_a.sh",
        ] {
            check_script_name(ok).unwrap();
        }
        for bad in [
            "Download_Enter_00",
            "ArtifactInstall_Enter_0",
            "ArtifactInstall_Begin_00",
            "ArtifactInstall_Enter_00_",
            "ArtifactInstall_Enter_00_a b",
            "x",
        ] {
            assert!(check_script_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_refuse_paths_and_odd_characters() {
        check_file_name("rootfs-v1.ext4").unwrap();
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a b", "ä"] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_file_rules() {
        assert_eq!(parse_version(VERSION_3).unwrap(), 3);
        assert_eq!(
            parse_version(b"{\n \"format\": \"mender\",\n \"version\": 2\n}").unwrap(),
            2
        );
        for bad in [
            &br#"{"format":"mender","version":1}"#[..],
            br#"{"format":"mender","version":4}"#,
            br#"{"format":"other","version":3}"#,
            br#"{"format":"mender","version":3,"x":1}"#,
        ] {
            assert!(parse_version(bad).is_err());
        }
    }
}
