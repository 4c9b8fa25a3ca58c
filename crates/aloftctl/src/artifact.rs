//! `aloftctl artifact`: write, read, validate, sign and cat.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aloft_artifact::{
    ArtifactInfo, ArtifactReader, ArtifactWriter, DependValue, PayloadSource, PayloadType,
    ReadOptions, ReadSummary, SignMode, SignatureState, SoftwareVersioning, StateScript,
};
use anyhow::{Context as _, Result, bail};
use indicatif::ProgressBar;

use crate::cli::{ArtifactCommand, Versioning, WriteCommon, WriteKind};
use crate::key::{load_signing_key, load_verifying_keys};
use crate::progress;

pub(crate) fn run(command: ArtifactCommand) -> Result<()> {
    match command {
        ArtifactCommand::Write { kind } => write(*kind),
        ArtifactCommand::Read {
            artifact,
            keys,
            json,
            no_progress,
        } => read(&artifact, &keys, json, no_progress),
        ArtifactCommand::Validate {
            artifact,
            keys,
            no_progress,
        } => validate(&artifact, &keys, no_progress),
        ArtifactCommand::Sign {
            artifact,
            key,
            output,
            force,
        } => sign(&artifact, &key, output.as_deref(), force),
        ArtifactCommand::Cat {
            artifact,
            file,
            keys,
        } => cat(&artifact, &file, &keys),
    }
}

// ---- write ----

pub(crate) fn write(kind: WriteKind) -> Result<()> {
    let (common, mut writer) = match kind {
        WriteKind::RootfsImage {
            file,
            common,
            software,
            no_checksum_provide,
        } => {
            let mut w = writer_for(&common, PayloadType::RootfsImage);
            w.software = software_options(software);
            w.software.no_checksum_provide = no_checksum_provide;
            w.files.push(source(&file)?);
            (common, w)
        }
        WriteKind::ModuleImage {
            module_type,
            files,
            meta_data,
            common,
            software,
        } => {
            if module_type == "rootfs-image" {
                bail!("use `write rootfs-image` for root filesystem images");
            }
            let mut w = writer_for(&common, PayloadType::Module(module_type));
            w.software = software_options(software);
            for f in &files {
                w.files.push(source(f)?);
            }
            if let Some(path) = meta_data {
                let text = fs_err::read_to_string(&path)?;
                let value: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", path.display()))?;
                let serde_json::Value::Object(map) = value else {
                    bail!(
                        "{}: the top level of meta-data must be a JSON object",
                        path.display()
                    );
                };
                w.meta_data = Some(map);
            }
            (common, w)
        }
        WriteKind::BootstrapArtifact { common } => {
            let w = writer_for(&common, PayloadType::Empty);
            (common, w)
        }
    };
    writer.provides = parse_pairs(&common.provides, "--provides")?
        .into_iter()
        .collect();
    let mut depends: BTreeMap<String, DependValue> = BTreeMap::new();
    for (k, v) in parse_pairs(&common.depends, "--depends")? {
        let merged = match depends.remove(&k) {
            None => DependValue::One(v),
            Some(DependValue::One(old)) => DependValue::AnyOf(vec![old, v]),
            Some(DependValue::AnyOf(mut list)) => {
                list.push(v);
                DependValue::AnyOf(list)
            }
        };
        depends.insert(k, merged);
    }
    writer.depends = depends;
    for path in &common.scripts {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?
            .to_owned();
        aloft_artifact::check_script_name(&name)
            .map_err(anyhow::Error::msg)
            .with_context(|| path.display().to_string())?;
        let content = fs_err::read(path)?;
        writer.scripts.push(StateScript {
            name,
            content,
            sha256: [0; 32],
        });
    }
    if let Some(key) = &common.key {
        writer.signing_key = Some(load_signing_key(key)?);
    }
    if !writer.compression.mender_3_9_compatible() {
        tracing::warn!(
            "zstd artifacts cannot be read by mender-artifact 3.9 or the Mender 3.x client"
        );
    }
    writer.check()?;

    let total: u64 = writer.files.iter().map(|f| f.size).sum();
    let bar = progress::bytes(total, "writing", common.no_progress);
    writer.files = std::mem::take(&mut writer.files)
        .into_iter()
        .map(|f| PayloadSource {
            reader: Box::new(bar.wrap_read(f.reader)),
            ..f
        })
        .collect();
    let out = &common.output;
    let dir = parent_dir(out);
    writer.spool_dir = Some(dir.to_owned());
    let summary = write_atomically(out, |file| {
        writer
            .write(BufWriter::with_capacity(256 * 1024, file))
            .map_err(Into::into)
    })?;
    bar.finish_and_clear();
    let signed = summary
        .signature
        .map_or_else(|| "unsigned".to_owned(), |a| format!("signed, {a}"));
    tracing::info!(
        "wrote {} ({} bytes, {signed})",
        out.display(),
        summary.artifact_size
    );
    Ok(())
}

fn writer_for(common: &WriteCommon, payload_type: PayloadType) -> ArtifactWriter {
    let mut w = ArtifactWriter::new(&common.name, common.device_types.clone(), payload_type);
    w.group.clone_from(&common.group);
    w.depends_artifact_name.clone_from(&common.depends_names);
    w.depends_group.clone_from(&common.depends_groups);
    w.clears.clone_from(&common.clears);
    w.compression = common.compression.into();
    w.level = common.level;
    w.threads =
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    w.mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    w
}

fn software_options(s: Versioning) -> SoftwareVersioning {
    SoftwareVersioning {
        name: s.software_name,
        version: s.software_version,
        filesystem: s.software_filesystem,
        no_default_version: s.no_default_software_version,
        no_default_clears: s.no_default_clears_provides,
        no_checksum_provide: false,
    }
}

fn source(path: &Path) -> Result<PayloadSource> {
    PayloadSource::from_path(path)
        .with_context(|| format!("cannot use payload file {}", path.display()))
}

fn parse_pairs(items: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            item.split_once(':')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{flag} {item:?}: expected KEY:VALUE"))
        })
        .collect()
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `path` through a temporary file in the same directory, renamed into place only when
/// `f` succeeded: a failure never leaves a partial artifact behind.
pub(crate) fn write_atomically<T>(
    path: &Path,
    f: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".aloft-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let value = f(tmp.as_file_mut()).with_context(|| format!("cannot write {}", path.display()))?;
    let file = tmp.as_file();
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    set_readable(file)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(value)
}

#[cfg(unix)]
fn set_readable(file: &File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_readable(_: &File) -> Result<()> {
    Ok(())
}

// ---- read / validate / cat ----

fn open_input(path: &Path, quiet: bool) -> Result<(Box<dyn Read + Send>, ProgressBar)> {
    let file = fs_err::File::open(path)?;
    let len = file.metadata().map_or(0, |m| m.len());
    let bar = progress::bytes(len, "reading", quiet);
    let reader = io::BufReader::with_capacity(256 * 1024, file.into_parts().0);
    Ok((Box::new(bar.wrap_read(reader)), bar))
}

fn open_and_check(
    path: &Path,
    keys: &[PathBuf],
    quiet: bool,
) -> Result<(ArtifactInfo, ReadSummary)> {
    let options = ReadOptions {
        trusted_keys: load_verifying_keys(keys)?,
        ..ReadOptions::default()
    };
    let (input, bar) = open_input(path, quiet)?;
    let invalid = || format!("invalid artifact {}", path.display());
    let reader = ArtifactReader::open(input, &options).with_context(invalid)?;
    let info = reader.info().clone();
    let summary = reader.validate().with_context(invalid)?;
    bar.finish_and_clear();
    Ok((info, summary))
}

fn validate(path: &Path, keys: &[PathBuf], quiet: bool) -> Result<()> {
    let (info, _) = open_and_check(path, keys, quiet)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}: valid artifact {:?}, {}",
        path.display(),
        info.name,
        signature_line(&info.signature)
    )?;
    Ok(())
}

fn read(path: &Path, keys: &[PathBuf], json: bool, quiet: bool) -> Result<()> {
    let (info, summary) = open_and_check(path, keys, quiet || json)?;
    let mut out = io::stdout().lock();
    if json {
        let value = serde_json::json!({ "artifact": info, "data": summary });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    print_info(&mut out, &info, &summary)?;
    Ok(())
}

fn signature_line(s: &SignatureState) -> String {
    match s {
        SignatureState::Unsigned => "no signature".into(),
        SignatureState::NotVerified => "signed (not verified: give the public key with -k)".into(),
        SignatureState::Verified { algorithm, key } => {
            format!("signature verified: {algorithm}, key {key}")
        }
    }
}

fn print_info(out: &mut impl Write, info: &ArtifactInfo, summary: &ReadSummary) -> io::Result<()> {
    writeln!(out, "Artifact: {}", info.name)?;
    writeln!(out, "  Format: mender, version {}", info.format_version)?;
    writeln!(out, "  Signature: {}", signature_line(&info.signature))?;
    writeln!(
        out,
        "  Compatible devices: {}",
        info.device_types.join(", ")
    )?;
    if let Some(g) = &info.group {
        writeln!(out, "  Provides group: {g}")?;
    }
    if !info.depends_artifact_name.is_empty() {
        writeln!(
            out,
            "  Depends on one of artifact(s): {}",
            info.depends_artifact_name.join(", ")
        )?;
    }
    if !info.depends_group.is_empty() {
        writeln!(
            out,
            "  Depends on one of group(s): {}",
            info.depends_group.join(", ")
        )?;
    }
    writeln!(out, "  Header compression: {}", info.header_compression)?;
    writeln!(
        out,
        "  State scripts:{}",
        if info.scripts.is_empty() { " none" } else { "" }
    )?;
    for s in &info.scripts {
        writeln!(out, "    {} (sha256 {})", s.name, hex::encode(s.sha256))?;
    }
    for (i, p) in info.payloads.iter().enumerate() {
        writeln!(out, "Payload {i}:")?;
        writeln!(out, "  Type: {}", p.payload_type)?;
        write_map(out, "  Provides", &p.type_info.provides)?;
        write_map(out, "  Depends", &p.type_info.depends)?;
        match &p.type_info.clears {
            Some(c) => writeln!(out, "  Clears provides: {}", c.join(", "))?,
            None => writeln!(out, "  Clears provides: none")?,
        }
        match &p.meta_data {
            Some(m) => writeln!(out, "  Meta-data: {}", serde_json::Value::Object(m.clone()))?,
            None => writeln!(out, "  Meta-data: none")?,
        }
        if let Some(a) = &p.augment {
            writeln!(out, "  Augment (NOT covered by the signature):")?;
            writeln!(out, "    Type: {}", a.payload_type)?;
            for (k, v) in &a.type_info.provides {
                writeln!(out, "    Provides {k}: {v}")?;
            }
            for (k, v) in &a.type_info.depends {
                writeln!(out, "    Depends {k}: {v}")?;
            }
            if let Some(m) = &a.meta_data {
                writeln!(
                    out,
                    "    Meta-data: {}",
                    serde_json::Value::Object(m.clone())
                )?;
            }
        }
        if let Some(codec) = summary.data_compression.get(i) {
            writeln!(out, "  Data compression: {codec}")?;
        }
        let files: Vec<_> = summary.files.iter().filter(|f| f.payload == i).collect();
        writeln!(
            out,
            "  Files:{}",
            if files.is_empty() { " none" } else { "" }
        )?;
        for f in files {
            writeln!(
                out,
                "    name:     {}{}",
                f.name,
                if f.augment {
                    " (augment, unsigned)"
                } else {
                    ""
                }
            )?;
            writeln!(out, "    size:     {}", f.size)?;
            writeln!(out, "    checksum: {}", hex::encode(f.sha256))?;
        }
    }
    writeln!(out, "Artifact size: {} bytes", summary.artifact_size)
}

/// `TITLE: none`, or `TITLE:` followed by one indented `key: value` line per entry.
fn write_map<V: std::fmt::Display>(
    out: &mut impl Write,
    title: &str,
    map: &BTreeMap<String, V>,
) -> io::Result<()> {
    if map.is_empty() {
        return writeln!(out, "{title}: none");
    }
    writeln!(out, "{title}:")?;
    for (k, v) in map {
        writeln!(
            out,
            "{title_indent}  {k}: {v}",
            title_indent = &title[..title.len() - title.trim_start().len()]
        )?;
    }
    Ok(())
}

fn cat(path: &Path, name: &str, keys: &[PathBuf]) -> Result<()> {
    let options = ReadOptions {
        trusted_keys: load_verifying_keys(keys)?,
        ..ReadOptions::default()
    };
    let (input, _) = open_input(path, true)?;
    let invalid = || format!("invalid artifact {}", path.display());
    let reader = ArtifactReader::open(input, &options).with_context(invalid)?;
    let names: Vec<String> = reader
        .info()
        .payloads
        .iter()
        .flat_map(|p| p.files.iter().map(|f| f.name.clone()))
        .collect();
    if !names.iter().any(|n| n == name) {
        bail!(
            "{} has no payload file {name:?} (files: {})",
            path.display(),
            names.join(", ")
        );
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    reader
        .read_payloads(|file| {
            if file.name() == name {
                io::copy(file, &mut out)?;
            }
            Ok(())
        })
        .with_context(invalid)?;
    out.flush()?;
    Ok(())
}

// ---- sign ----

fn sign(path: &Path, key: &Path, output: Option<&Path>, force: bool) -> Result<()> {
    let key = load_signing_key(key)?;
    // Never put a signature on an artifact that is broken.
    open_and_check(path, &[], true)?;
    let output = output.unwrap_or(path);
    let input = fs_err::File::open(path)?;
    let mode = if force {
        SignMode::ReplaceSignature
    } else {
        SignMode::RefuseSigned
    };
    write_atomically(output, |file| {
        aloft_artifact::sign_artifact(io::BufReader::new(input), BufWriter::new(file), &key, mode)
            .with_context(|| format!("cannot sign {}", path.display()))
    })?;
    let mut err = io::stderr().lock();
    writeln!(err, "signed {} ({})", output.display(), key.algorithm())?;
    Ok(())
}
