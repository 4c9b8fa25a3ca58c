//! The delta's bytes: the header, the operations and their encodings. Pure: no I/O.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! "ALOFTDL1"
//! block_size u32, window_size u32, source_size u64, target_size u64
//! source_sha256 [32], target_sha256 [32]
//! ops: compressed_len u32, raw_len u32, sha256 [32]
//! windows: count u32, then count × sha256 [32]        (the target, window by window)
//! chunks: count u32, then count × (stream u8, compressed_len u32, raw_len u32, sha256 [32])
//! header_sha256 [32]                                   (of everything above)
//! body: the ops (zstd), then the chunks in the order listed (xz each, independently decodable)
//! ```
//!
//! The operations cover the target's blocks in order; each names a run of blocks. The chunks
//! are listed in the order the decoder first needs them, so it reads the body once, front to
//! back, and holds at most one chunk per stream.

use sha2::{Digest as _, Sha256};

use crate::error::{Result, corrupt};

pub(crate) const MAGIC: &[u8; 8] = b"ALOFTDL1";
/// The largest block size accepted.
pub const MAX_BLOCK: u32 = 64 << 10;
/// The largest window accepted (the decoder holds one).
pub const MAX_WINDOW: u32 = 16 << 20;
/// The largest decoded chunk accepted (the decoder holds one per stream).
pub const MAX_CHUNK: u32 = 16 << 20;
/// The largest decoded operation list accepted.
pub const MAX_OPS: u32 = 16 << 20;
/// The largest image accepted (2^48 bytes).
pub const MAX_IMAGE: u64 = 1 << 48;

/// The literal streams: new bytes, and differences against a source block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Target bytes as they are.
    Data = 0,
    /// Target minus source, byte by byte (wrapping), for blocks close to a source block.
    Diff = 1,
}

/// One entry of the chunk table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The stream it continues.
    pub stream: Stream,
    /// Its size in the body.
    pub compressed_len: u32,
    /// Its size decoded.
    pub raw_len: u32,
    /// SHA-256 of its bytes in the body.
    pub sha256: [u8; 32],
}

/// The header of a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The block size every operation counts in.
    pub block_size: u32,
    /// The size of a verified window (a multiple of `block_size`).
    pub window_size: u32,
    /// Bytes of the source image.
    pub source_size: u64,
    /// Bytes of the target image.
    pub target_size: u64,
    /// SHA-256 of the whole source image (its `rootfs-image.checksum`).
    pub source_sha256: [u8; 32],
    /// SHA-256 of the whole target image.
    pub target_sha256: [u8; 32],
    /// Size of the compressed operation list in the body.
    pub ops_len: u32,
    /// Size of the decoded operation list.
    pub ops_raw_len: u32,
    /// SHA-256 of the compressed operation list.
    pub ops_sha256: [u8; 32],
    /// SHA-256 of each window of the target.
    pub windows: Vec<[u8; 32]>,
    /// The chunks of the literal streams, in body order.
    pub chunks: Vec<Chunk>,
}

impl Header {
    /// The digest that names the target window by window: SHA-256 of the window size, the
    /// target size and the window digests. A signed header carries it, so a delta made later
    /// without the key can still only rebuild the signed image.
    #[must_use]
    pub fn windows_digest(&self) -> [u8; 32] {
        windows_digest(self.window_size, self.target_size, &self.windows)
    }

    /// Number of windows the target has.
    #[must_use]
    pub fn window_count(&self) -> u64 {
        self.target_size.div_ceil(u64::from(self.window_size))
    }

    /// Number of blocks the target has.
    #[must_use]
    pub fn target_blocks(&self) -> u64 {
        self.target_size.div_ceil(u64::from(self.block_size))
    }

    /// Number of blocks the source has.
    #[must_use]
    pub fn source_blocks(&self) -> u64 {
        self.source_size.div_ceil(u64::from(self.block_size))
    }

    /// Bytes of the body (ops and chunks).
    #[must_use]
    pub fn body_len(&self) -> u64 {
        u64::from(self.ops_len)
            + self
                .chunks
                .iter()
                .map(|c| u64::from(c.compressed_len))
                .sum::<u64>()
    }

    /// The header's bytes, its own digest last.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(200 + 32 * self.windows.len() + 41 * self.chunks.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.window_size.to_le_bytes());
        b.extend_from_slice(&self.source_size.to_le_bytes());
        b.extend_from_slice(&self.target_size.to_le_bytes());
        b.extend_from_slice(&self.source_sha256);
        b.extend_from_slice(&self.target_sha256);
        b.extend_from_slice(&self.ops_len.to_le_bytes());
        b.extend_from_slice(&self.ops_raw_len.to_le_bytes());
        b.extend_from_slice(&self.ops_sha256);
        b.extend_from_slice(
            &u32::try_from(self.windows.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for w in &self.windows {
            b.extend_from_slice(w);
        }
        b.extend_from_slice(
            &u32::try_from(self.chunks.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for c in &self.chunks {
            b.push(c.stream as u8);
            b.extend_from_slice(&c.compressed_len.to_le_bytes());
            b.extend_from_slice(&c.raw_len.to_le_bytes());
            b.extend_from_slice(&c.sha256);
        }
        let digest: [u8; 32] = Sha256::digest(&b).into();
        b.extend_from_slice(&digest);
        b
    }
}

/// See [`Header::windows_digest`].
#[must_use]
pub fn windows_digest(window_size: u32, target_size: u64, windows: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"aloft-delta windows v1");
    h.update(window_size.to_le_bytes());
    h.update(target_size.to_le_bytes());
    for w in windows {
        h.update(w);
    }
    h.finalize().into()
}

/// Reads a header from `read`, which returns the next `n` bytes. Checks every limit and the
/// header's own digest.
pub(crate) fn read_header(read: &mut dyn FnMut(usize) -> Result<Vec<u8>>) -> Result<Header> {
    let mut all = Vec::new();
    let mut take = |n: usize, all: &mut Vec<u8>| -> Result<Vec<u8>> {
        let v = read(n)?;
        all.extend_from_slice(&v);
        Ok(v)
    };
    let magic = take(8, &mut all)?;
    if magic != MAGIC {
        return Err(corrupt("not an aloft delta (bad magic)"));
    }
    let fixed = take(4 + 4 + 8 + 8 + 32 + 32 + 4 + 4 + 32 + 4, &mut all)?;
    let mut c = Cursor(&fixed);
    let block_size = c.u32();
    let window_size = c.u32();
    let source_size = c.u64();
    let target_size = c.u64();
    let source_sha256 = c.hash();
    let target_sha256 = c.hash();
    let ops_len = c.u32();
    let ops_raw_len = c.u32();
    let ops_sha256 = c.hash();
    let window_count = c.u32();
    if !block_size.is_power_of_two() || !(512..=MAX_BLOCK).contains(&block_size) {
        return Err(corrupt(format!("block size {block_size} out of range")));
    }
    if window_size == 0 || window_size > MAX_WINDOW || window_size % block_size != 0 {
        return Err(corrupt(format!(
            "window size {window_size} is not a multiple of the block size up to {MAX_WINDOW}"
        )));
    }
    if source_size > MAX_IMAGE || target_size > MAX_IMAGE || target_size == 0 {
        return Err(corrupt("image size out of range"));
    }
    if ops_raw_len > MAX_OPS || ops_len > MAX_OPS {
        return Err(corrupt("operation list too large"));
    }
    if u64::from(window_count) != target_size.div_ceil(u64::from(window_size)) {
        return Err(corrupt("window count does not match the target size"));
    }
    let raw = take(32 * window_count as usize, &mut all)?;
    let windows = raw
        .chunks_exact(32)
        .map(|w| w.try_into().expect("32 bytes"))
        .collect();
    let count = u32::from_le_bytes(take(4, &mut all)?.try_into().expect("4 bytes"));
    // A chunk holds at least one block: more chunks than target blocks is nonsense.
    if u64::from(count) > 2 * target_size.div_ceil(u64::from(block_size)) {
        return Err(corrupt("too many chunks"));
    }
    let raw = take(41 * count as usize, &mut all)?;
    let mut chunks = Vec::new();
    for e in raw.chunks_exact(41) {
        let mut c = Cursor(&e[1..]);
        let stream = match e[0] {
            0 => Stream::Data,
            1 => Stream::Diff,
            s => return Err(corrupt(format!("unknown stream {s}"))),
        };
        let chunk = Chunk {
            stream,
            compressed_len: c.u32(),
            raw_len: c.u32(),
            sha256: c.hash(),
        };
        if chunk.raw_len == 0 || chunk.raw_len > MAX_CHUNK || chunk.compressed_len > MAX_CHUNK {
            return Err(corrupt("chunk size out of range"));
        }
        chunks.push(chunk);
    }
    let expected: [u8; 32] = Sha256::digest(&all).into();
    let digest = read(32)?;
    if digest != expected {
        return Err(corrupt("header digest does not match"));
    }
    Ok(Header {
        block_size,
        window_size,
        source_size,
        target_size,
        source_sha256,
        target_sha256,
        ops_len,
        ops_raw_len,
        ops_sha256,
        windows,
        chunks,
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        a.try_into().expect("length checked by the caller")
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn hash(&mut self) -> [u8; 32] {
        self.take()
    }
}

/// What one run of target blocks is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Blocks of zeros.
    Zero {
        /// How many blocks.
        blocks: u64,
    },
    /// Blocks copied from the source, from block `from` on.
    Copy {
        /// First source block.
        from: u64,
        /// How many blocks.
        blocks: u64,
    },
    /// Blocks taken from the data stream.
    Data {
        /// How many blocks.
        blocks: u64,
    },
    /// Source blocks from `from` on, plus the diff stream's bytes (wrapping, byte by byte).
    Diff {
        /// First source block.
        from: u64,
        /// How many blocks.
        blocks: u64,
    },
}

impl Op {
    /// Blocks the operation covers.
    #[must_use]
    pub fn blocks(self) -> u64 {
        match self {
            Op::Zero { blocks }
            | Op::Copy { blocks, .. }
            | Op::Data { blocks }
            | Op::Diff { blocks, .. } => blocks,
        }
    }
}

/// Encodes operations: a kind byte, the count, and for source operations the start as a
/// signed distance from where the previous source operation ended (runs continue nearby).
#[must_use]
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 4);
    let mut cursor = 0u64;
    for op in ops {
        match *op {
            Op::Zero { blocks } => {
                out.push(0);
                varint(&mut out, blocks);
            }
            Op::Data { blocks } => {
                out.push(2);
                varint(&mut out, blocks);
            }
            Op::Copy { from, blocks } | Op::Diff { from, blocks } => {
                out.push(if matches!(op, Op::Copy { .. }) { 1 } else { 3 });
                varint(&mut out, blocks);
                #[allow(clippy::cast_possible_wrap)]
                let delta = from.wrapping_sub(cursor) as i64;
                varint(&mut out, zigzag(delta));
                cursor = from + blocks;
            }
        }
    }
    out
}

/// Decodes what [`encode_ops`] wrote, checking that the runs cover exactly `target_blocks`
/// blocks and read only the `source_blocks` the source has.
pub fn decode_ops(bytes: &[u8], target_blocks: u64, source_blocks: u64) -> Result<Vec<Op>> {
    let mut it = Ops::new(bytes, target_blocks, source_blocks);
    let ops = it.by_ref().collect::<Result<Vec<_>>>()?;
    it.finish()?;
    Ok(ops)
}

/// The operations of an encoded list, one at a time (a hostile list cannot make the decoder
/// hold more than its bytes). [`Ops::finish`] checks, at the end, that they covered the target.
#[derive(Debug)]
pub struct Ops<'a> {
    bytes: &'a [u8],
    at: usize,
    cursor: u64,
    covered: u64,
    target_blocks: u64,
    source_blocks: u64,
}

impl<'a> Ops<'a> {
    /// The operations of `bytes`, for a target and a source of so many blocks.
    #[must_use]
    pub fn new(bytes: &'a [u8], target_blocks: u64, source_blocks: u64) -> Self {
        Self {
            bytes,
            at: 0,
            cursor: 0,
            covered: 0,
            target_blocks,
            source_blocks,
        }
    }

    /// Whether the operations covered exactly the target.
    pub fn finish(&self) -> Result<()> {
        if self.at != self.bytes.len() || self.covered != self.target_blocks {
            return Err(corrupt("operations do not cover the whole target"));
        }
        Ok(())
    }

    fn op(&mut self) -> Result<Op> {
        let (bytes, at) = (self.bytes, &mut self.at);
        let kind = bytes[*at];
        *at += 1;
        let blocks = read_varint(bytes, at)?;
        if blocks == 0 {
            return Err(corrupt("an operation of zero blocks"));
        }
        self.covered = self
            .covered
            .checked_add(blocks)
            .filter(|c| *c <= self.target_blocks)
            .ok_or_else(|| corrupt("operations cover more than the target"))?;
        Ok(match kind {
            0 => Op::Zero { blocks },
            2 => Op::Data { blocks },
            1 | 3 => {
                let delta = unzigzag(read_varint(bytes, at)?);
                #[allow(clippy::cast_sign_loss)]
                let from = self.cursor.wrapping_add(delta as u64);
                self.cursor = from
                    .checked_add(blocks)
                    .filter(|e| *e <= self.source_blocks)
                    .ok_or_else(|| corrupt("an operation reads past the source"))?;
                if kind == 1 {
                    Op::Copy { from, blocks }
                } else {
                    Op::Diff { from, blocks }
                }
            }
            k => return Err(corrupt(format!("unknown operation {k}"))),
        })
    }
}

impl Iterator for Ops<'_> {
    type Item = Result<Op>;

    fn next(&mut self) -> Option<Result<Op>> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            // Nothing after an error.
            self.at = self.bytes.len();
            self.covered = u64::MAX;
        }
        Some(op)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| corrupt("operation list cut short"))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("an over-long number in the operation list"))
}

#[allow(clippy::cast_sign_loss)]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[allow(clippy::cast_possible_wrap)]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_refuse_what_does_not_fit() {
        let ops = vec![
            Op::Zero { blocks: 3 },
            Op::Copy {
                from: 1000,
                blocks: 5,
            },
            Op::Diff { from: 2, blocks: 1 },
            Op::Data { blocks: 300 },
            Op::Copy { from: 0, blocks: 1 },
        ];
        let bytes = encode_ops(&ops);
        assert_eq!(decode_ops(&bytes, 310, 1005).unwrap(), ops);
        // Each case: target blocks, source blocks, what the error says.
        let cases: [(u64, u64, &str); 3] = [
            (309, 1005, "cover more than the target"),
            (311, 1005, "do not cover the whole target"),
            (310, 1004, "past the source"),
        ];
        for (target, source, says) in cases {
            let e = decode_ops(&bytes, target, source).unwrap_err().to_string();
            assert!(e.contains(says), "{target} {source}: {e}");
        }
        let e = decode_ops(&bytes[..bytes.len() - 1], 310, 1005).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        assert!(decode_ops(&[7, 1], 1, 1).is_err());
        assert!(decode_ops(&[0, 0], 1, 1).is_err());
    }

    #[test]
    fn zigzag_round_trips_both_signs() {
        for v in [0i64, 1, -1, 12345, -12345, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
