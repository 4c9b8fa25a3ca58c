//! Delta artifacts (feature `artifact`): from two rootfs-image artifacts, a Mender v3
//! artifact with one [`crate::PAYLOAD_TYPE`] payload. It has the new release's name, device
//! types, state scripts and provides (with the new image's `rootfs-image.checksum`), depends
//! on the old image's checksum, and describes the delta in its signed `meta-data`.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Seek as _, Write};
use std::path::Path;

use aloft_artifact::{
    ArtifactError, ArtifactInfo, ArtifactReader, ArtifactWriter, Compression, DependValue,
    PayloadSource, PayloadType, ReadOptions, SigningKey, SoftwareVersioning,
};

use crate::describe::hex;
use crate::{Delta, DeltaError, Description, EncodeOptions, FileImage, Phase, Stats};

/// The payload file's name inside a delta artifact.
pub const PAYLOAD_FILE: &str = "rootfs.aldelta";

/// Why a delta artifact could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MakeError {
    /// An input artifact is invalid (or its signature is not one of the trusted keys).
    #[error("the {which} artifact is invalid")]
    Input {
        /// `old` or `new`.
        which: &'static str,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// An input is not a rootfs-image artifact with one image.
    #[error("the {0} artifact is not a rootfs-image artifact with one image")]
    NotRootfs(&'static str),
    /// The new artifact's `rootfs-image.checksum` is not its image's digest.
    #[error("the new artifact's rootfs-image.checksum is not the digest of its image")]
    Checksum,
    /// Encoding failed.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Writing the delta artifact failed.
    #[error("cannot write the delta artifact")]
    Output(#[source] ArtifactError),
    /// A spool file in the work folder could not be used.
    #[error("cannot use a work file in {path}")]
    Spool {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Made {
    /// The delta's make-up.
    pub stats: Stats,
    /// Bytes of the delta artifact.
    pub artifact_size: u64,
    /// The new release's name.
    pub name: String,
}

/// How to make it.
#[derive(Debug)]
pub struct MakeOptions<'a> {
    /// The encoder's knobs.
    pub encode: EncodeOptions,
    /// Keys the inputs must be signed with (none: any).
    pub read: ReadOptions,
    /// Signs the delta artifact.
    pub signing_key: Option<SigningKey>,
    /// Where the old image and the delta are spooled (beside the output, ideally).
    pub work_dir: &'a Path,
}

fn rootfs(info: &ArtifactInfo, which: &'static str) -> Result<(), MakeError> {
    match info.payloads.as_slice() {
        [p] if p.payload_type == PayloadType::RootfsImage && p.files.len() == 1 => Ok(()),
        _ => Err(MakeError::NotRootfs(which)),
    }
}

/// Makes the delta artifact from the `old` and `new` rootfs-image artifacts into `out`.
pub fn make(
    old: Box<dyn Read + Send>,
    new: Box<dyn Read + Send>,
    options: MakeOptions<'_>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Made, MakeError> {
    let dir = options.work_dir;
    let spool = |source| MakeError::Spool {
        path: dir.display().to_string(),
        source,
    };
    let input = |which| move |source| MakeError::Input { which, source };
    // The old image, on disk for random access.
    let old = ArtifactReader::open(old, &options.read).map_err(input("old"))?;
    rootfs(old.info(), "old")?;
    let mut old_image = tempfile::tempfile_in(dir).map_err(spool)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut old_image);
        old.read_payloads(|file| {
            io::copy(file, &mut w)?;
            Ok(())
        })
        .map_err(input("old"))?;
        w.flush().map_err(spool)?;
    }
    let source_size = old_image.metadata().map_err(spool)?.len();
    let source = FileImage::new(old_image, source_size);

    // The new image, streamed into the encoder.
    let new = ArtifactReader::open(new, &options.read).map_err(input("new"))?;
    let info = new.info().clone();
    rootfs(&info, "new")?;
    let mut delta = tempfile::tempfile_in(dir).map_err(spool)?;
    let mut stats = None;
    let mut failed = None;
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut delta);
        let read = new.read_payloads(|file| {
            let size = file.size();
            match crate::encode(
                &source,
                source_size,
                file,
                size,
                &options.encode,
                &mut w,
                progress,
            ) {
                Ok(s) => stats = Some(s),
                Err(e) => {
                    failed = Some(e);
                    return Err("the delta could not be made".into());
                }
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        read.map_err(input("new"))?;
        w.flush().map_err(spool)?;
    }
    let stats = stats.ok_or(MakeError::NotRootfs("new"))?;
    delta.rewind().map_err(spool)?;
    let header = Delta::open(BufReader::new(&mut delta))?.header().clone();
    let payload = &info.payloads[0];
    if payload
        .type_info
        .provides
        .get("rootfs-image.checksum")
        .is_some_and(|sum| *sum != hex(&header.target_sha256))
    {
        return Err(MakeError::Checksum);
    }

    let mut w = ArtifactWriter::new(
        &info.name,
        info.device_types.clone(),
        PayloadType::Module(crate::PAYLOAD_TYPE.to_owned()),
    );
    w.group.clone_from(&info.group);
    w.depends_artifact_name
        .clone_from(&info.depends_artifact_name);
    w.depends_group.clone_from(&info.depends_group);
    // The same provides as the full artifact, so server and device choose between the two
    // as between any two artifacts of one release.
    w.provides = payload.type_info.provides.clone();
    w.provides
        .insert("rootfs-image.checksum".into(), hex(&header.target_sha256));
    w.clears = payload.type_info.clears.clone().unwrap_or_default();
    let mut depends: BTreeMap<String, DependValue> = payload.type_info.depends.clone();
    depends.insert(
        "rootfs-image.checksum".into(),
        DependValue::One(hex(&header.source_sha256)),
    );
    w.depends = depends;
    let mut meta = payload.meta_data.clone().unwrap_or_default();
    Description::of(&header).to_meta(&mut meta);
    w.meta_data = Some(meta);
    w.software = SoftwareVersioning {
        no_default_version: true,
        no_default_clears: true,
        no_checksum_provide: true,
        ..SoftwareVersioning::default()
    };
    w.scripts.clone_from(&info.scripts);
    // The delta is compressed already.
    w.compression = Compression::None;
    w.mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    w.signing_key = options.signing_key;
    delta.rewind().map_err(spool)?;
    let size = delta.metadata().map_err(spool)?.len();
    w.files.push(PayloadSource {
        name: PAYLOAD_FILE.into(),
        size,
        reader: Box::new(BufReader::with_capacity(1 << 20, delta)),
    });
    w.spool_dir = Some(dir.to_owned());
    let written = w
        .write(BufWriter::with_capacity(256 * 1024, out))
        .map_err(MakeError::Output)?;
    Ok(Made {
        stats,
        artifact_size: written.artifact_size,
        name: info.name,
    })
}
