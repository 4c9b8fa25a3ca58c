//! The artifact download: to a spool file, resumed where it stopped, after a cut connection,
//! a stall, a 5xx, or a restart of the daemon (power cut, reboot, kill).
//!
//! The spool holds a prefix of the artifact; `download.json` beside it records which
//! deployment it belongs to, the server's `ETag` and size, and how many bytes are on disk for
//! sure (the spool is synced before the offset is written, and cut back to it at start). A
//! resumed request carries `Range` and `If-Range`: a server whose file changed answers the
//! whole file, and the spool starts over rather than splicing two files. Nothing here checks
//! the artifact itself: the install reads the spool through the artifact library, which
//! verifies every byte before it reaches a slot.
//!
//! Must not: keep more than one buffer of the body in memory; report a complete download
//! whose size differs from the server's.

use std::fs::File;
use std::io::{Read, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How to download.
#[derive(Debug, Clone)]
pub struct Options {
    /// A connection without a byte for this long is given up and resumed on a new one.
    pub stall_timeout: Duration,
    /// Bytes per second, if limited.
    pub rate_limit: Option<u64>,
    /// Attempts in a row without a new byte before the download fails.
    pub max_failures: u32,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Trusted certificates (the server's, for downloads from the server's own host).
    pub trusted_certs: Option<PathBuf>,
    /// The largest artifact accepted: more announced or sent fails the download and removes
    /// the spool.
    pub max_size: u64,
    /// Lowest average speed (bytes per second) over each `stall_timeout`; slower counts as a
    /// stall (0: no limit).
    pub min_rate: u64,
    /// Whether a plain `http://` link may be used at all.
    pub allow_plain_http: bool,
}

/// What `download.json` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The deployment the spool belongs to.
    pub deployment: String,
    /// The server's `ETag` of the file.
    pub etag: Option<String>,
    /// The file's size, once known.
    pub total: Option<u64>,
    /// Bytes on disk for sure.
    pub offset: u64,
    /// How often the server's file changed under us.
    pub restarts: u32,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The artifact's size.
    pub size: u64,
    /// Bytes received over the network by this call.
    pub fetched: u64,
    /// Where this call started (non-zero when it resumed an earlier download).
    pub resumed_from: u64,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The server refused the download (an expired link, a missing file).
    #[error("the server answered {status} to the download")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The file changed on the server more than once, or its size does not fit.
    #[error("the artifact changed on the server during the download: {0}")]
    Changed(String),
    /// Too many attempts in a row brought nothing.
    #[error("the download failed {attempts} times in a row without progress; last: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The artifact is larger than this device can take.
    #[error(
        "the artifact is too large for this device: {size} bytes, at most {limit} fit (the larger slot, or the data folder's free space less its reserve)"
    )]
    TooLarge {
        /// Its size (announced, or received so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A link this device must not use.
    #[error("refused the download link: {0}")]
    Insecure(String),
    /// The caller stopped it (the deployment was aborted).
    #[error("download stopped: {0}")]
    Cancelled(String),
    /// The spool could not be written.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        what: what.to_owned(),
        source,
    }
}

/// The spool and its record for a data folder.
#[derive(Debug, Clone)]
pub struct Spool {
    /// The artifact prefix.
    pub file: PathBuf,
    /// Its record.
    pub record: PathBuf,
}

impl Spool {
    /// The spool of the daemon in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            file: dir.join("artifact.part"),
            record: dir.join("download.json"),
        }
    }

    /// The record, if any.
    pub fn partial(&self) -> Partial {
        aloft_device::state::load(&self.record).unwrap_or_default()
    }

    /// Removes the spool and its record.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.record);
        let _ = std::fs::remove_file(&self.file);
    }

    fn save(&self, partial: &Partial) -> Result<(), DownloadError> {
        aloft_device::state::save(&self.record, partial).map_err(|e| DownloadError::Io {
            what: "cannot record the download's progress".into(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

/// The largest artifact a device takes: the configured maximum, else the larger slot (rootfs
/// devices); and never more than fits in the data folder (its free space plus what is already
/// spooled, less the reserve that keeps the state files and the final report writable).
pub fn size_limit(
    configured: Option<u64>,
    largest_slot: Option<u64>,
    free: u64,
    spooled: u64,
    reserve: u64,
) -> u64 {
    let fits = (free + spooled).saturating_sub(reserve);
    configured.or(largest_slot).map_or(fits, |l| l.min(fits))
}

/// `Content-Range: bytes a-b/total` → (a, total).
fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.parse().ok()?, total))
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Downloads `url` into `spool` for `deployment`, resuming what an earlier call left.
/// `progress(bytes, total)` is called about every 64 KiB; an `Err` from it stops the download.
pub fn download(
    url: &str,
    spool: &Spool,
    deployment: &str,
    options: &Options,
    progress: &mut dyn FnMut(u64, Option<u64>) -> Result<(), String>,
) -> Result<Done, DownloadError> {
    let tls = aloft_device::fetch::tls_config(options.trusted_certs.as_deref()).map_err(|e| {
        DownloadError::Io {
            what: "cannot set up TLS for the download".into(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !https && !options.allow_plain_http {
        return Err(DownloadError::Insecure(
            "a plain http:// link (allow_plain_http = true in [daemon] allows it)".into(),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        // A download that began on https never continues on http (a redirect to it fails).
        .https_only(https)
        .http_status_as_error(false)
        .user_agent(concat!("aloft/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(options.stall_timeout))
        .timeout_per_read(Some(options.stall_timeout))
        .build()
        .into();

    let mut partial = spool.partial();
    if partial.deployment != deployment {
        partial = Partial {
            deployment: deployment.to_owned(),
            ..Partial::default()
        };
        let _ = std::fs::remove_file(&spool.file);
    }
    if let Some(dir) = spool.file.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create the download folder"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&spool.file)
        .map_err(io("cannot open the download spool"))?;
    let on_disk = file.metadata().map_err(io("cannot read the spool"))?.len();
    if on_disk < partial.offset {
        // The record is ahead of the file (it should not be): trust the file.
        partial.offset = on_disk;
    }
    // Bytes after the recorded offset may not have reached the disk intact: drop them.
    file.set_len(partial.offset)
        .map_err(io("cannot cut the spool back"))?;
    file.seek(SeekFrom::Start(partial.offset))
        .map_err(io("cannot seek the spool"))?;
    spool.save(&partial)?;
    let resumed_from = partial.offset;
    if resumed_from > 0 {
        tracing::info!(offset = resumed_from, total = ?partial.total, "resuming the download");
    }

    let too_large = |size: u64| {
        spool.remove();
        DownloadError::TooLarge {
            size,
            limit: options.max_size,
        }
    };
    if let Some(total) = partial.total.filter(|&t| t > options.max_size) {
        return Err(too_large(total));
    }
    let mut fetched = 0u64;
    let mut failures = 0u32;
    let mut last_error = String::new();
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if partial.total == Some(partial.offset) && partial.offset > 0 {
            break;
        }
        if failures > 0 {
            if failures >= options.max_failures.max(1) {
                return Err(DownloadError::GaveUp {
                    attempts: failures,
                    last: last_error,
                });
            }
            let wait = crate::daemon::backoff(failures, options.max_backoff);
            tracing::warn!(error = %last_error, offset = partial.offset, retry_in = ?wait, "download interrupted; resuming");
            std::thread::sleep(wait);
        }
        let mut request = agent.get(url);
        if partial.offset > 0 {
            request = request.header("Range", format!("bytes={}-", partial.offset));
            if let Some(etag) = &partial.etag {
                request = request.header("If-Range", etag);
            }
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::RequireHttpsOnly(to)) => {
                return Err(DownloadError::Insecure(format!(
                    "the https download was redirected to plain http ({to})"
                )));
            }
            Err(e) => {
                failures += 1;
                last_error = e.to_string();
                continue;
            }
        };
        let status = response.status().as_u16();
        let etag = header(&response, "etag");
        match status {
            200 => {
                if partial.offset > 0 {
                    // If-Range said the file changed (or Range is not supported): start over.
                    partial.restarts += 1;
                    if partial.restarts > 1 {
                        return Err(DownloadError::Changed(
                            "the server sent the whole file again twice".into(),
                        ));
                    }
                    tracing::warn!(
                        "the server sent the whole artifact again (it changed, or it ignores Range): starting over"
                    );
                    partial.offset = 0;
                    file.set_len(0).map_err(io("cannot empty the spool"))?;
                    file.seek(SeekFrom::Start(0))
                        .map_err(io("cannot seek the spool"))?;
                }
                partial.etag = etag;
                partial.total = response.body().content_length();
            }
            206 => {
                let range = header(&response, "content-range")
                    .as_deref()
                    .and_then(content_range);
                let Some((start, total)) = range else {
                    failures += 1;
                    last_error = "a 206 without a usable Content-Range".into();
                    continue;
                };
                if start != partial.offset {
                    failures += 1;
                    last_error = format!("asked for byte {}, got {start}", partial.offset);
                    continue;
                }
                if let (Some(known), Some(total)) = (partial.total, total)
                    && known != total
                {
                    return Err(DownloadError::Changed(format!(
                        "its size went from {known} to {total} bytes"
                    )));
                }
                if let (Some(known), Some(now)) = (&partial.etag, &etag)
                    && known != now
                {
                    return Err(DownloadError::Changed(format!(
                        "its ETag went from {known} to {now}"
                    )));
                }
                partial.total = partial.total.or(total);
            }
            416 if partial.total == Some(partial.offset) => break,
            301 | 302 | 303 | 307 | 308 => {
                return Err(DownloadError::Insecure(format!(
                    "a redirect ({status}) that this download cannot follow safely"
                )));
            }
            408 | 425 | 429 | 500..=599 => {
                failures += 1;
                last_error = format!("the server answered {status}");
                continue;
            }
            _ => return Err(DownloadError::Refused { status }),
        }
        if let Some(total) = partial.total.filter(|&t| t > options.max_size) {
            return Err(too_large(total));
        }
        spool.save(&partial)?;

        let mut reader = response.body_mut().as_reader();
        let mut progressed = false;
        let mut slow = false;
        let (mut window_start, mut window_bytes) = (Instant::now(), 0u64);
        let mut since_sync = 0u64;
        let mut last_sync = Instant::now();
        let outcome: Result<(), String> = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e.to_string()),
            };
            let n = match partial.total {
                // Never more than the announced size.
                Some(total) => n.min(usize::try_from(total - partial.offset).unwrap_or(n)),
                None => n,
            };
            if partial.offset + n as u64 > options.max_size {
                return Err(too_large(partial.offset + n as u64));
            }
            file.write_all(&buf[..n])
                .map_err(io("cannot write the download spool"))?;
            partial.offset += n as u64;
            fetched += n as u64;
            since_sync += n as u64;
            progressed = true;
            if since_sync >= 1 << 20 || last_sync.elapsed() >= Duration::from_secs(2) {
                file.sync_data().map_err(io("cannot sync the spool"))?;
                spool.save(&partial)?;
                since_sync = 0;
                last_sync = Instant::now();
            }
            progress(partial.offset, partial.total).map_err(DownloadError::Cancelled)?;
            window_bytes += n as u64;
            let window = window_start.elapsed();
            if options.min_rate > 0 && window >= options.stall_timeout {
                if window_bytes < options.min_rate.saturating_mul(window.as_secs().max(1)) {
                    slow = true;
                    break Err(format!(
                        "slower than {} bytes/s for {} s ({window_bytes} bytes)",
                        options.min_rate,
                        window.as_secs()
                    ));
                }
                (window_start, window_bytes) = (Instant::now(), 0);
            }
            if let Some(rate) = options.rate_limit {
                #[allow(clippy::cast_precision_loss)]
                let due = Duration::from_secs_f64(fetched as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if partial.total == Some(partial.offset) {
                break Ok(());
            }
        };
        file.sync_data().map_err(io("cannot sync the spool"))?;
        spool.save(&partial)?;
        // A trickle makes progress, yet counts as a failure: it would hold the deployment
        // forever otherwise.
        if progressed && !slow {
            failures = 0;
        }
        match outcome {
            Ok(()) if partial.total.is_none_or(|t| t == partial.offset) => {
                if partial.total.is_none() {
                    partial.total = Some(partial.offset);
                    spool.save(&partial)?;
                }
                break;
            }
            Ok(()) => {
                failures += 1;
                last_error = format!(
                    "the connection closed at byte {} of {}",
                    partial.offset,
                    partial.total.unwrap_or_default()
                );
            }
            Err(e) => {
                failures += 1;
                last_error = e;
            }
        }
    }
    file.sync_all().map_err(io("cannot sync the spool"))?;
    Ok(Done {
        size: partial.offset,
        fetched,
        resumed_from,
    })
}

/// Opens a finished spool for reading.
pub fn open(spool: &Spool) -> Result<File, DownloadError> {
    File::open(&spool.file).map_err(io("cannot open the downloaded artifact"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_limit_is_the_smallest_bound() {
        const M: u64 = 1 << 20;
        // (configured, largest slot, free, spooled, reserve) → limit
        let cases = [
            ((None, None, 100 * M, 0, 8 * M), 92 * M),
            ((None, Some(64 * M), 100 * M, 0, 8 * M), 64 * M),
            ((None, Some(64 * M), 40 * M, 0, 8 * M), 32 * M),
            ((None, Some(64 * M), 40 * M, 20 * M, 8 * M), 52 * M),
            ((Some(10 * M), Some(64 * M), 100 * M, 0, 8 * M), 10 * M),
            ((Some(500 * M), None, 100 * M, 0, 8 * M), 92 * M),
            ((None, None, 4 * M, 0, 8 * M), 0),
        ];
        for ((configured, slot, free, spooled, reserve), want) in cases {
            assert_eq!(
                size_limit(configured, slot, free, spooled, reserve),
                want,
                "{configured:?} {slot:?} {free} {spooled} {reserve}"
            );
        }
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(content_range("bytes x-9/20"), None);
        assert_eq!(content_range("items 0-1/2"), None);
    }
}
