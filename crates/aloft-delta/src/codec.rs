//! The literal chunks' codec: an xz stream (LZMA2, optionally after a branch filter), one per
//! chunk, so each decodes alone and in bounded memory.

use std::io;

use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

/// A branch filter applied before LZMA2.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Branch {
    None,
    X86,
    Arm64,
}

fn lz(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

pub(crate) fn compress(raw: &[u8], preset: u32, dict: u32, branch: Branch) -> io::Result<Vec<u8>> {
    let mut opts = LzmaOptions::new_preset(preset.min(9)).map_err(lz)?;
    opts.dict_size(dict);
    let mut filters = Filters::new();
    match branch {
        Branch::None => {}
        Branch::X86 => {
            filters.x86();
        }
        Branch::Arm64 => {
            filters.arm64();
        }
    }
    filters.lzma2(&opts);
    let mut s = Stream::new_stream_encoder(&filters, Check::None).map_err(lz)?;
    let mut out = Vec::with_capacity(raw.len() / 3 + 1024);
    loop {
        let before = s.total_in();
        let input = &raw[usize::try_from(before).expect("in memory")..];
        if out.capacity() == out.len() {
            out.reserve(1 << 16);
        }
        match s.process_vec(input, &mut out, Action::Finish).map_err(lz)? {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::GetCheck | Status::MemNeeded => {}
        }
    }
}

/// Decodes one chunk of exactly `raw_len` bytes, with at most `memlimit` bytes of decoder
/// state.
pub(crate) fn decompress(z: &[u8], raw_len: usize, memlimit: u64) -> io::Result<Vec<u8>> {
    let mut s = Stream::new_stream_decoder(memlimit, 0).map_err(lz)?;
    let mut out = Vec::with_capacity(raw_len);
    loop {
        let at = usize::try_from(s.total_in()).expect("in memory");
        let before = out.len();
        let status = s
            .process_vec(&z[at..], &mut out, Action::Finish)
            .map_err(lz)?;
        if status == Status::StreamEnd {
            break;
        }
        if out.len() == raw_len {
            // Full, but the stream is not over: it holds more than announced.
            let mut one = Vec::with_capacity(1);
            let at = usize::try_from(s.total_in()).expect("in memory");
            match s
                .process_vec(&z[at..], &mut one, Action::Finish)
                .map_err(lz)?
            {
                Status::StreamEnd if one.is_empty() => break,
                _ => return Err(lz("a chunk decodes to more than announced")),
            }
        }
        if out.len() == before && usize::try_from(s.total_in()).expect("in memory") == at {
            return Err(lz("a chunk is cut short"));
        }
    }
    if out.len() != raw_len || usize::try_from(s.total_in()).expect("in memory") != z.len() {
        return Err(lz("a chunk's length differs from the one announced"));
    }
    Ok(out)
}
