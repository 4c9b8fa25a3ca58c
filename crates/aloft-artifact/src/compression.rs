//! Compression of the `header.tar*` and `data/NNNN.tar*` members, chosen by file-name suffix.
//!
//! Owns: the suffix ↔ codec table, decoders with memory limits, encoders with fixed metadata
//! (gzip MTIME 0) so output is reproducible. Must not: look inside the tar it (de)compresses.

mod pargz;

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A member compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Plain tar (`.tar`).
    None,
    /// gzip (`.tar.gz`); the default, as in mender-artifact.
    #[default]
    Gzip,
    /// xz (`.tar.xz`), which mender-artifact calls `lzma`.
    Xz,
    /// zstd (`.tar.zst`); mender-artifact 3.9 cannot read it, 3.10.1 and later can.
    Zstd,
}

impl Compression {
    /// All codecs, in the order `none, gzip, xz, zstd`.
    pub const ALL: [Compression; 4] = [Self::None, Self::Gzip, Self::Xz, Self::Zstd];

    /// The suffix after `.tar` in member names (`""`, `".gz"`, `".xz"`, `".zst"`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
        }
    }

    /// Splits `<stem>.tar<suffix>` into the stem and the codec.
    pub fn split_member_name(name: &str) -> Option<(&str, Compression)> {
        for c in [Self::Gzip, Self::Xz, Self::Zstd, Self::None] {
            if let Some(stem) = name
                .strip_suffix(c.suffix())
                .and_then(|n| n.strip_suffix(".tar"))
            {
                return Some((stem, c));
            }
        }
        None
    }

    /// Whether mender-artifact 3.9 (and so every Mender client) can read this codec.
    pub fn mender_3_9_compatible(self) -> bool {
        self != Self::Zstd
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "gzip" | "gz" => Ok(Self::Gzip),
            "xz" | "lzma" => Ok(Self::Xz),
            "zstd" | "zst" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown compression {other:?} (expected none, gzip, xz or zstd)"
            )),
        }
    }
}

/// Memory ceilings for decoders, so a hostile stream cannot make us allocate without bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecoderLimits {
    /// xz decoder memory; mender-artifact 3.9 writes 64 MiB dictionaries (65 MiB to decode).
    pub(crate) xz_memlimit: u64,
    /// log2 of the largest zstd window accepted.
    pub(crate) zstd_window_log_max: u32,
}

/// A decompressing reader for `codec` over `inner`.
pub(crate) fn decoder<'a, R: Read + 'a>(
    codec: Compression,
    inner: R,
    limits: DecoderLimits,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Compression::None => Box::new(inner),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(64 * 1024, inner),
        )),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                limits.xz_memlimit,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(
                io::BufReader::with_capacity(64 * 1024, inner),
                stream,
            ))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(inner)?;
            d.window_log_max(limits.zstd_window_log_max)?;
            Box::new(d)
        }
    })
}

/// zstd level when none is given: at this level, on a Debian rootfs image, the artifact is about
/// three quarters of mender-artifact's gzip size in well under half its time (bench/RESULTS.md).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// zstd multi-thread job size: 2 MiB keeps peak memory near 26 MiB with two workers, where
/// the default (4 × window) needs over 60 MiB.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// A compressing writer; [`Encoder::finish`] flushes the codec trailer and returns the sink.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(pargz::ParallelGzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// `threads` > 1 compresses gzip and zstd on that many threads.
    /// `level` overrides the codec's default (gzip 6, xz 6, zstd [`ZSTD_DEFAULT_LEVEL`]).
    pub(crate) fn new(
        codec: Compression,
        inner: W,
        level: Option<i32>,
        threads: u32,
    ) -> io::Result<Self> {
        Ok(match codec {
            Compression::None => Self::None(inner),
            Compression::Gzip => {
                let level = u32::try_from(level.unwrap_or(6).clamp(0, 9)).expect("clamped");
                if threads > 1 {
                    return Ok(Self::ParallelGzip(pargz::ParallelGzEncoder::new(
                        inner, level, threads,
                    )));
                }
                Self::Gzip(
                    flate2::GzBuilder::new()
                        .mtime(0)
                        .write(inner, flate2::Compression::new(level)),
                )
            }
            Compression::Xz => {
                let preset = u32::try_from(level.unwrap_or(6).clamp(0, 9)).expect("clamped");
                Self::Xz(liblzma::write::XzEncoder::new(inner, preset))
            }
            Compression::Zstd => {
                let mut e =
                    zstd::stream::write::Encoder::new(inner, level.unwrap_or(ZSTD_DEFAULT_LEVEL))?;
                if threads > 1 {
                    e.multithread(threads)?;
                    // Small jobs keep the workers' buffers (and so peak memory) small.
                    e.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                e.include_checksum(true)?;
                Self::Zstd(e)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Self::None(w) => Ok(w),
            Self::Gzip(e) => e.finish(),
            Self::ParallelGzip(e) => e.finish(),
            Self::Xz(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::None(w) => w.write(buf),
            Self::Gzip(e) => e.write(buf),
            Self::ParallelGzip(e) => e.write(buf),
            Self::Xz(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::None(w) => w.flush(),
            Self::Gzip(e) => e.flush(),
            Self::ParallelGzip(e) => e.flush(),
            Self::Xz(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
        }
    }
}

/// Compresses `data` in memory (header tars are small).
pub(crate) fn compress(codec: Compression, data: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
    let mut e = Encoder::new(codec, Vec::new(), level, 1)?;
    e.write_all(data)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecoderLimits = DecoderLimits {
        xz_memlimit: 128 << 20,
        zstd_window_log_max: 27,
    };

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in Compression::ALL {
            let packed = compress(c, &data, None).unwrap();
            let mut out = Vec::new();
            decoder(c, packed.as_slice(), LIMITS)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c}");
        }
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut packed = compress(Compression::Gzip, b"first ", None).unwrap();
        packed.extend(compress(Compression::Gzip, b"second", None).unwrap());
        let mut out = String::new();
        decoder(Compression::Gzip, packed.as_slice(), LIMITS)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");
    }

    #[test]
    fn member_names_split_by_suffix() {
        assert_eq!(
            Compression::split_member_name("header.tar.gz"),
            Some(("header", Compression::Gzip))
        );
        assert_eq!(
            Compression::split_member_name("data/0000.tar"),
            Some(("data/0000", Compression::None))
        );
        assert_eq!(
            Compression::split_member_name("data/0000.tar.zst"),
            Some(("data/0000", Compression::Zstd))
        );
        assert_eq!(Compression::split_member_name("header.tgz"), None);
    }
}
