//! The encoder: matches every target block against the whole source, at the file system's
//! block size, and compresses what is left.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher as _};
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use crate::error::{DeltaError, Result};
use crate::format::{self, Chunk, Header, MAX_CHUNK, MAX_WINDOW, Op, Stream};
use crate::source::ReadAt;
use crate::{codec, ext4};

/// A target block is sent as a difference against a source block only when at least this
/// share of its bytes (in percent) are the same. Measured on Debian image pairs: differences
/// of blocks less alike compress worse than the blocks themselves do among the new data (the
/// compressor finds their likes there), so only nearly identical blocks take this path.
const DIFF_SAME_PERCENT: usize = 99;

/// How the executable filter is chosen for the data stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The x86 branch filter on data chunks that hold an ELF header, none elsewhere.
    Auto,
    /// No filter.
    None,
    /// The x86 branch filter (BCJ) on every data chunk.
    X86,
    /// The ARM64 branch filter on every data chunk.
    Arm64,
}

/// Knobs of the encoder; [`EncodeOptions::default`] is what `aloftctl` uses.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Block size; `None` takes the ext2/3/4 block size of the target, or 4 KiB.
    pub block_size: Option<u32>,
    /// The verified window (1 MiB).
    pub window_size: u32,
    /// Decoded bytes per literal chunk (8 MiB): the decoder holds one per stream. Larger
    /// chunks compress better and decode with more memory.
    pub chunk_size: u32,
    /// xz preset of the literal chunks (0–9).
    pub preset: u32,
    /// Threads compressing chunks (0: one per core).
    pub threads: usize,
    /// The data stream's filter.
    pub filter: Filter,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            block_size: None,
            window_size: 1 << 20,
            chunk_size: 8 << 20,
            preset: 9,
            threads: 0,
            filter: Filter::Auto,
        }
    }
}

/// What a delta is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Block size used.
    pub block_size: u32,
    /// Target blocks of zeros.
    pub zero_blocks: u64,
    /// Target blocks copied from the source.
    pub copy_blocks: u64,
    /// Target blocks sent as differences against a source block.
    pub diff_blocks: u64,
    /// Target blocks sent as new data.
    pub data_blocks: u64,
    /// Bytes of the compressed operation list.
    pub ops_bytes: u64,
    /// Compressed bytes of the data stream.
    pub data_bytes: u64,
    /// Compressed bytes of the diff stream.
    pub diff_bytes: u64,
    /// Bytes of the whole delta.
    pub total_bytes: u64,
}

/// Where the encoder is, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading and indexing the source.
    Index,
    /// Matching the target.
    Match,
    /// Compressing the literal chunks.
    Compress,
}

/// Makes the delta that turns the source (`source_size` bytes of `source`) into the target
/// (`target_size` bytes read from `target`) and writes it to `out`. The source is read at
/// random; the target once, in order. `progress` gets the phase, its work done and total.
#[allow(clippy::too_many_lines)]
pub fn encode<S: ReadAt + ?Sized>(
    source: &S,
    source_size: u64,
    target: &mut dyn Read,
    target_size: u64,
    options: &EncodeOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Stats> {
    if target_size == 0 || target_size > format::MAX_IMAGE || source_size > format::MAX_IMAGE {
        return Err(DeltaError::Input("image size out of range".into()));
    }
    let window = options.window_size;
    if !(4096..=MAX_WINDOW).contains(&window) || !window.is_power_of_two() {
        return Err(DeltaError::Input(format!(
            "window size {window} must be a power of two from 4 KiB to 16 MiB"
        )));
    }
    // The first window tells the block size.
    let mut buf = vec![0u8; window as usize];
    let first = read_up_to(target, &mut buf, target_size).map_err(DeltaError::Target)?;
    let bs = match options.block_size {
        Some(b) => b,
        None => ext4::block_size(&buf[..first]).unwrap_or(ext4::GENERIC_BLOCK),
    };
    if !bs.is_power_of_two()
        || !(512..=format::MAX_BLOCK).contains(&bs)
        || !window.is_multiple_of(bs)
    {
        return Err(DeltaError::Input(format!(
            "block size {bs} must be a power of two from 512 to 64 KiB, dividing the window"
        )));
    }
    let chunk = options.chunk_size - options.chunk_size % bs;
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(DeltaError::Input(format!(
            "chunk size must be from one block to {MAX_CHUNK} bytes"
        )));
    }
    let bsu = bs as usize;
    if (first as u64) < target_size.min(u64::from(window)) {
        return Err(DeltaError::Input(format!(
            "the target ended at {first} of {target_size} bytes"
        )));
    }

    // Index: the first source block of each content, and the source's digest.
    let source_blocks = source_size.div_ceil(u64::from(bs));
    let mut index: HashMap<u64, u64> = HashMap::new();
    // Close blocks: the first source block with the same first half, or second half.
    let mut halves: HashMap<u64, u64> = HashMap::new();
    let mut source_hash = Sha256::new();
    let mut sbuf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < source_size {
        let n = usize::try_from((source_size - at).min(sbuf.len() as u64)).expect("≤ 1 MiB");
        let part = &mut sbuf[..n.next_multiple_of(bsu)];
        source
            .read_at(at, part)
            .map_err(|source| DeltaError::Source { offset: at, source })?;
        source_hash.update(&part[..n]);
        for (i, block) in part.chunks_exact(bsu).enumerate() {
            if !is_zero(block) {
                let no = at / u64::from(bs) + i as u64;
                index.entry(hash(block)).or_insert(no);
                let (a, b) = halves_of(block);
                halves.entry(a).or_insert(no);
                halves.entry(b).or_insert(no);
            }
        }
        at += n as u64;
        progress(Phase::Index, at, source_size);
    }

    // Match the target, window by window.
    let mut ops: Vec<Op> = Vec::new();
    let mut windows = Vec::new();
    let mut target_hash = Sha256::new();
    let mut streams: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    // For each stream, the target block at which each of its chunks is first needed.
    let mut needs: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut stats = Stats {
        block_size: bs,
        ..Stats::default()
    };
    let mut cand = vec![0u8; bsu];
    let mut done = 0u64;
    let mut filled = first;
    let mut block_no = 0u64;
    loop {
        let data = &mut buf[..filled];
        target_hash.update(&*data);
        windows.push(Sha256::digest(&*data).into());
        let padded = filled.next_multiple_of(bsu);
        buf[filled..padded].fill(0);
        for block in buf[..padded].chunks_exact(bsu) {
            let op = choose(
                block,
                block_no,
                &ops,
                source,
                source_blocks,
                (&index, &halves),
                &mut cand,
            )?;
            let stream = match op {
                Op::Zero { .. } => {
                    stats.zero_blocks += 1;
                    None
                }
                Op::Copy { .. } => {
                    stats.copy_blocks += 1;
                    None
                }
                Op::Data { .. } => {
                    stats.data_blocks += 1;
                    Some((Stream::Data, None))
                }
                Op::Diff { .. } => {
                    stats.diff_blocks += 1;
                    Some((Stream::Diff, Some(&cand)))
                }
            };
            if let Some((s, base)) = stream {
                let v = &mut streams[s as usize];
                if v.len().is_multiple_of(chunk as usize) {
                    needs[s as usize].push(block_no);
                }
                match base {
                    None => v.extend_from_slice(block),
                    Some(base) => v.extend(
                        block
                            .iter()
                            .zip(base.iter())
                            .map(|(t, s)| t.wrapping_sub(*s)),
                    ),
                }
            }
            push(&mut ops, op);
            block_no += 1;
        }
        done += filled as u64;
        progress(Phase::Match, done, target_size);
        if done == target_size {
            break;
        }
        filled = read_up_to(target, &mut buf, target_size - done).map_err(DeltaError::Target)?;
        if filled == 0 {
            return Err(DeltaError::Input(format!(
                "the target ended at {done} of {target_size} bytes"
            )));
        }
    }
    let mut extra = [0u8; 1];
    if target.read(&mut extra).map_err(DeltaError::Target)? != 0 {
        return Err(DeltaError::Input(format!(
            "the target is longer than {target_size} bytes"
        )));
    }

    // Compress the operations and the chunks; list the chunks in the order they are needed.
    let ops_raw = format::encode_ops(&ops);
    let ops_z = zstd::bulk::compress(&ops_raw, 19).map_err(DeltaError::Codec)?;
    let mut order: Vec<(u64, Stream, usize)> = Vec::new();
    for s in [Stream::Data, Stream::Diff] {
        for (k, need) in needs[s as usize].iter().enumerate() {
            order.push((*need, s, k));
        }
    }
    order.sort_by_key(|(need, s, _)| (*need, *s as u8));
    let jobs: Vec<(Stream, &[u8])> = order
        .iter()
        .map(|(_, s, k)| {
            let v = &streams[*s as usize];
            let start = k * chunk as usize;
            (*s, &v[start..(start + chunk as usize).min(v.len())])
        })
        .collect();
    let compressed = compress_all(&jobs, options, progress)?;
    let chunks: Vec<Chunk> = jobs
        .iter()
        .zip(&compressed)
        .map(|((s, raw), z)| Chunk {
            stream: *s,
            compressed_len: u32::try_from(z.len()).expect("a chunk is at most 16 MiB"),
            raw_len: u32::try_from(raw.len()).expect("a chunk is at most 16 MiB"),
            sha256: Sha256::digest(z).into(),
        })
        .collect();
    for (c, z) in chunks.iter().zip(&compressed) {
        match c.stream {
            Stream::Data => stats.data_bytes += z.len() as u64,
            Stream::Diff => stats.diff_bytes += z.len() as u64,
        }
    }
    let too_big = |_| DeltaError::Input("the operation list is larger than 16 MiB".into());
    let header = Header {
        block_size: bs,
        window_size: window,
        source_size,
        target_size,
        source_sha256: source_hash.finalize().into(),
        target_sha256: target_hash.finalize().into(),
        ops_len: u32::try_from(ops_z.len()).map_err(too_big)?,
        ops_raw_len: u32::try_from(ops_raw.len()).map_err(too_big)?,
        ops_sha256: Sha256::digest(&ops_z).into(),
        windows,
        chunks,
    };
    if header.ops_raw_len > format::MAX_OPS {
        return Err(DeltaError::Input(
            "the operation list is larger than 16 MiB".into(),
        ));
    }
    let head = header.to_bytes();
    out.write_all(&head).map_err(DeltaError::Write)?;
    out.write_all(&ops_z).map_err(DeltaError::Write)?;
    for z in &compressed {
        out.write_all(z).map_err(DeltaError::Write)?;
    }
    out.flush().map_err(DeltaError::Write)?;
    stats.ops_bytes = ops_z.len() as u64;
    stats.total_bytes = head.len() as u64 + header.body_len();
    Ok(stats)
}

/// The operation for one target block: zeros, a copy (continuing the previous one first), a
/// difference against a close source block (left in `cand`), or new data.
fn choose<S: ReadAt + ?Sized>(
    block: &[u8],
    block_no: u64,
    ops: &[Op],
    source: &S,
    source_blocks: u64,
    (index, halves): (&HashMap<u64, u64>, &HashMap<u64, u64>),
    cand: &mut [u8],
) -> Result<Op> {
    if is_zero(block) {
        return Ok(Op::Zero { blocks: 1 });
    }
    let bs = block.len() as u64;
    let read = |at: u64, buf: &mut [u8]| {
        source
            .read_at(at * bs, buf)
            .map_err(|source| DeltaError::Source {
                offset: at * bs,
                source,
            })
    };
    let next = match ops.last() {
        Some(Op::Copy { from, blocks } | Op::Diff { from, blocks }) => Some(from + blocks),
        _ => None,
    }
    .filter(|n| *n < source_blocks);
    if let Some(n) = next {
        read(n, cand)?;
        if cand == block {
            return Ok(Op::Copy { from: n, blocks: 1 });
        }
    }
    if let Some(&at) = index.get(&hash(block)) {
        read(at, cand)?;
        if cand == block {
            return Ok(Op::Copy {
                from: at,
                blocks: 1,
            });
        }
    }
    // A close block: where the previous run continues, the same place in the source, or a
    // block with one half the same.
    let (a, b) = halves_of(block);
    let same_place = Some(block_no).filter(|b| *b < source_blocks);
    let candidates = [
        next,
        same_place,
        halves.get(&a).copied(),
        halves.get(&b).copied(),
    ];
    for (i, at) in candidates.iter().enumerate() {
        let Some(at) = *at else { continue };
        if candidates[..i].contains(&Some(at)) {
            continue;
        }
        read(at, cand)?;
        let same = block
            .iter()
            .zip(cand.iter())
            .filter(|(a, b)| a == b)
            .count();
        if same * 100 >= block.len() * DIFF_SAME_PERCENT && !is_zero(cand) {
            return Ok(Op::Diff {
                from: at,
                blocks: 1,
            });
        }
    }
    Ok(Op::Data { blocks: 1 })
}

/// Appends one block's operation, merging it into the previous run where it continues it.
fn push(ops: &mut Vec<Op>, op: Op) {
    let merged = match (ops.last_mut(), op) {
        (Some(Op::Zero { blocks }), Op::Zero { .. })
        | (Some(Op::Data { blocks }), Op::Data { .. }) => {
            *blocks += 1;
            true
        }
        (Some(Op::Copy { from, blocks }), Op::Copy { from: f, .. })
        | (Some(Op::Diff { from, blocks }), Op::Diff { from: f, .. })
            if *from + *blocks == f =>
        {
            *blocks += 1;
            true
        }
        _ => false,
    };
    if !merged {
        ops.push(op);
    }
}

fn compress_all(
    jobs: &[(Stream, &[u8])],
    options: &EncodeOptions,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Vec<Vec<u8>>> {
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        options.threads
    };
    let total: u64 = jobs.iter().map(|(_, raw)| raw.len() as u64).sum();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<io::Result<Vec<u8>>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()).max(1) {
            let tx = tx.clone();
            let (next, results) = (&next, &results);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((stream, raw)) = jobs.get(i) else {
                        break;
                    };
                    let z = compress_chunk(*stream, raw, options);
                    results.lock().expect("no panics while held")[i] = Some(z);
                    let _ = tx.send(raw.len() as u64);
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for n in rx {
            done += n;
            progress(Phase::Compress, done, total);
        }
    });
    results
        .into_inner()
        .expect("no panics while held")
        .into_iter()
        .map(|r| r.expect("every job ran").map_err(DeltaError::Codec))
        .collect()
}

fn compress_chunk(stream: Stream, raw: &[u8], options: &EncodeOptions) -> io::Result<Vec<u8>> {
    let dict = u32::try_from(raw.len()).unwrap_or(MAX_CHUNK).max(4096);
    let branch = match (stream, options.filter) {
        (Stream::Diff, _) | (Stream::Data, Filter::None) => codec::Branch::None,
        (Stream::Data, Filter::X86) => codec::Branch::X86,
        (Stream::Data, Filter::Arm64) => codec::Branch::Arm64,
        // Chunks with executables in them (an ELF header) take the branch filter: on other
        // data it costs little, on code it saves several percent.
        (Stream::Data, Filter::Auto) => {
            if raw.windows(4).any(|w| w == b"\x7fELF") {
                codec::Branch::X86
            } else {
                codec::Branch::None
            }
        }
    };
    codec::compress(raw, options.preset, dict, branch)
}

/// Reads until `buf` is full or `limit` bytes were read (or the input ends).
fn read_up_to(r: &mut dyn Read, buf: &mut [u8], limit: u64) -> io::Result<usize> {
    let want = usize::try_from(limit).unwrap_or(usize::MAX).min(buf.len());
    let mut got = 0;
    while got < want {
        match r.read(&mut buf[got..want]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(crate) fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

/// Keys of a block's two halves (apart from whole-block keys).
fn halves_of(block: &[u8]) -> (u64, u64) {
    let (first, second) = block.split_at(block.len() / 2);
    let key = |tag: u8, half: &[u8]| {
        let mut h = DefaultHasher::new();
        h.write_u8(tag);
        h.write(half);
        h.finish()
    };
    (key(1, first), key(2, second))
}

fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}
