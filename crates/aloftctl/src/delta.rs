//! `aloftctl delta`: make a delta from two releases, apply one, show one.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aloft_artifact::{ArtifactReader, ReadOptions};
use aloft_delta::artifact::MakeOptions;
use aloft_delta::{Delta, Description, EncodeOptions, FileImage, Phase, Sink};
use anyhow::{Context as _, Result, bail};
use indicatif::ProgressBar;

use crate::artifact::write_atomically;
use crate::cli::DeltaCommand;
use crate::key::{load_signing_key, load_verifying_keys};
use crate::progress;

pub(crate) fn run(command: DeltaCommand) -> Result<()> {
    match command {
        DeltaCommand::Make {
            from,
            to,
            output,
            key,
            verify_keys,
            block_size,
            threads,
            no_progress,
        } => {
            let options = EncodeOptions {
                block_size,
                threads,
                ..EncodeOptions::default()
            };
            make(
                &Inputs {
                    from,
                    to,
                    output,
                    key,
                    verify_keys,
                    no_progress,
                },
                &options,
            )
        }
        DeltaCommand::Apply {
            from,
            delta,
            output,
            verify_keys,
            no_progress,
        } => apply(&from, &delta, &output, &verify_keys, no_progress),
        DeltaCommand::Show { delta, json } => show(&delta, json),
    }
}

struct Inputs {
    from: PathBuf,
    to: PathBuf,
    output: PathBuf,
    key: Option<PathBuf>,
    verify_keys: Vec<PathBuf>,
    no_progress: bool,
}

/// Whether `path` is an artifact (a tar whose first member is `version`), not an image.
fn is_artifact(path: &Path) -> Result<bool> {
    let mut head = [0u8; 512];
    let mut f = fs_err::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got == 512 && &head[257..262] == b"ustar" && head.starts_with(b"version\0"))
}

fn read_options(keys: &[PathBuf]) -> Result<ReadOptions> {
    Ok(ReadOptions {
        trusted_keys: load_verifying_keys(keys)?,
        ..ReadOptions::default()
    })
}

fn open_artifact(path: &Path, keys: &[PathBuf]) -> Result<ArtifactReader<Box<dyn Read + Send>>> {
    let file = fs_err::File::open(path)?.into_parts().0;
    let input: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(256 * 1024, file));
    ArtifactReader::open(input, &read_options(keys)?)
        .with_context(|| format!("invalid artifact {}", path.display()))
}

/// One bar through the encoder's phases.
fn phase_bar(no_progress: bool) -> (ProgressBar, impl FnMut(Phase, u64, u64)) {
    let bar = progress::bytes(0, "indexing the old image", no_progress);
    let b = bar.clone();
    let mut last = None;
    let update = move |phase: Phase, done: u64, total: u64| {
        if last != Some(phase) {
            last = Some(phase);
            b.set_message(match phase {
                Phase::Index => "indexing the old image",
                Phase::Match => "matching the new image",
                Phase::Compress => "compressing",
            });
            b.set_length(total);
        }
        b.set_position(done);
    };
    (bar, update)
}

fn make(i: &Inputs, options: &EncodeOptions) -> Result<()> {
    let (a, b) = (is_artifact(&i.from)?, is_artifact(&i.to)?);
    if a != b {
        bail!("--from and --to must both be artifacts, or both images");
    }
    let (bar, mut progress) = phase_bar(i.no_progress);
    if !a {
        if i.key.is_some() {
            bail!(
                "a bare delta cannot be signed: make it from two artifacts to get a signed delta artifact"
            );
        }
        let source = fs_err::File::open(&i.from)?;
        let source_size = source.metadata()?.len();
        let source = FileImage::new(source.into_parts().0, source_size);
        let target = fs_err::File::open(&i.to)?;
        let target_size = target.metadata()?.len();
        let mut target = BufReader::with_capacity(1 << 20, target);
        let stats = write_atomically(&i.output, |f| {
            let mut out = BufWriter::with_capacity(1 << 20, f);
            let stats = aloft_delta::encode(
                &source,
                source_size,
                &mut target,
                target_size,
                options,
                &mut out,
                &mut progress,
            )?;
            out.flush()?;
            Ok(stats)
        })?;
        bar.finish_and_clear();
        tracing::info!(
            "wrote {} ({} bytes): {}",
            i.output.display(),
            stats.total_bytes,
            summary(&stats)
        );
        return Ok(());
    }

    let dir = crate::artifact::parent_dir(&i.output);
    let input = |path: &Path| -> Result<Box<dyn Read + Send>> {
        let file = fs_err::File::open(path)?.into_parts().0;
        Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
    };
    let options = MakeOptions {
        encode: options.clone(),
        read: read_options(&i.verify_keys)?,
        signing_key: i.key.as_deref().map(load_signing_key).transpose()?,
        work_dir: dir,
    };
    let (old, new) = (input(&i.from)?, input(&i.to)?);
    let made = write_atomically(&i.output, |f| {
        Ok(aloft_delta::artifact::make(
            old,
            new,
            options,
            f,
            &mut progress,
        )?)
    })?;
    bar.finish_and_clear();
    tracing::info!(
        "wrote {} ({} bytes; {} in the delta: {})",
        i.output.display(),
        made.artifact_size,
        made.stats.total_bytes,
        summary(&made.stats)
    );
    Ok(())
}

fn summary(s: &aloft_delta::Stats) -> String {
    format!(
        "{}-byte blocks: {} copied, {} zero, {} diff, {} new; {} bytes of new data, {} of differences",
        s.block_size,
        s.copy_blocks,
        s.zero_blocks,
        s.diff_blocks,
        s.data_blocks,
        s.data_bytes,
        s.diff_bytes
    )
}

/// Writes verified windows into a file at their offsets.
struct FileSink<'a>(&'a File);

impl Sink for FileSink<'_> {
    fn window(&mut self, _index: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        self.0.write_all_at(data, offset)
    }
}

fn apply(
    from: &Path,
    delta: &Path,
    output: &Path,
    keys: &[PathBuf],
    no_progress: bool,
) -> Result<()> {
    let source = fs_err::File::open(from)?;
    let source_size = source.metadata()?.len();
    let source = FileImage::new(source.into_parts().0, source_size);
    let run = |input: &mut dyn Read, described: Option<&Description>| -> Result<()> {
        let d = Delta::open(input)?;
        if let Some(desc) = described {
            desc.check(d.header())?;
        }
        let bar = progress::bytes(d.header().target_size, "applying", no_progress);
        write_atomically(output, |f| {
            f.set_len(d.header().target_size)?;
            d.apply(&source, &mut FileSink(f), 0, &mut |done, _| {
                bar.set_position(done);
            })?;
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(())
    };
    if is_artifact(delta)? {
        let reader = open_artifact(delta, keys)?;
        let info = reader.info().clone();
        let payload = match info.payloads.as_slice() {
            [p] if p.payload_type.as_str() == Some(aloft_delta::PAYLOAD_TYPE) => p,
            _ => bail!("{} is not a delta artifact", delta.display()),
        };
        let description = Description::from_meta(payload.meta_data.as_ref())?;
        reader
            .read_payloads(|file| {
                run(file, Some(&description)).map_err(|e| format!("{e:#}"))?;
                Ok(())
            })
            .with_context(|| format!("cannot apply {}", delta.display()))?;
    } else {
        let mut f = BufReader::with_capacity(1 << 20, fs_err::File::open(delta)?);
        run(&mut f, None)?;
    }
    tracing::info!("wrote {}", output.display());
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // a percentage for people
fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn show(delta: &Path, json: bool) -> Result<()> {
    let header = if is_artifact(delta)? {
        let reader = open_artifact(delta, &[])?;
        let mut header = None;
        reader.read_payloads(|file| {
            header = Some(
                Delta::open(&mut *file)
                    .map_err(|e| e.to_string())?
                    .header()
                    .clone(),
            );
            io::copy(file, &mut io::sink())?;
            Ok(())
        })?;
        header.context("the artifact has no payload")?
    } else {
        Delta::open(BufReader::new(fs_err::File::open(delta)?))?
            .header()
            .clone()
    };
    let size = fs_err::metadata(delta)?.len();
    let mut out = io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "source_sha256": hex::encode(header.source_sha256),
            "source_size": header.source_size,
            "target_sha256": hex::encode(header.target_sha256),
            "target_size": header.target_size,
            "windows_sha256": hex::encode(header.windows_digest()),
            "block_size": header.block_size,
            "window_size": header.window_size,
            "chunks": header.chunks.len(),
            "bytes": size,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "Delta {}", delta.display())?;
        writeln!(
            out,
            "  Source: {} bytes, sha256 {}",
            header.source_size,
            hex::encode(header.source_sha256)
        )?;
        writeln!(
            out,
            "  Target: {} bytes, sha256 {}",
            header.target_size,
            hex::encode(header.target_sha256)
        )?;
        writeln!(
            out,
            "  Windows: {} of {} bytes, digest {}",
            header.window_count(),
            header.window_size,
            hex::encode(header.windows_digest())
        )?;
        writeln!(
            out,
            "  Blocks: {} bytes; {} literal chunks",
            header.block_size,
            header.chunks.len()
        )?;
        writeln!(
            out,
            "  Size: {size} bytes ({:.2}% of the target)",
            percent(size, header.target_size)
        )?;
    }
    Ok(())
}
