//! The streaming decoder: reads the delta once, front to back, rebuilds the target one window
//! at a time in memory, and hands a window on only after its digest matched.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::error::{DeltaError, Result, corrupt};
use crate::format::{self, Header, Op, Ops, Stream};
use crate::source::ReadAt;

/// Where verified windows of the target go (the inactive slot).
pub trait Sink {
    /// Stores window `index` (`data` belongs at `offset` of the target). Called in order, and
    /// only with bytes whose digest matched.
    fn window(&mut self, index: u64, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// A delta whose header was read and checked.
#[derive(Debug)]
pub struct Delta<R> {
    header: Header,
    reader: R,
}

impl<R: Read> Delta<R> {
    /// Reads the header from `reader` and checks its limits and digest.
    pub fn open(mut reader: R) -> Result<Self> {
        let header = format::read_header(&mut |n| read_n(&mut reader, n))?;
        Ok(Self { header, reader })
    }

    /// The header: sizes, the source's and target's digests, the windows.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Rebuilds the target from `source` into `sink`. Windows before `from_window` are
    /// decoded but neither verified nor written (a resumed apply). `progress` gets the target
    /// bytes done and the total.
    pub fn apply<S: ReadAt + ?Sized>(
        mut self,
        source: &S,
        sink: &mut dyn Sink,
        from_window: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let h = &self.header;
        let z = read_n(&mut self.reader, h.ops_len as usize)?;
        if <[u8; 32]>::from(Sha256::digest(&z)) != h.ops_sha256 {
            return Err(corrupt("operation list digest does not match"));
        }
        let raw = zstd::bulk::decompress(&z, h.ops_raw_len as usize)
            .map_err(|e| corrupt(format!("operation list does not decode: {e}")))?;
        drop(z);
        if raw.len() != h.ops_raw_len as usize {
            return Err(corrupt(
                "operation list length differs from the one announced",
            ));
        }
        let mut ops = Ops::new(&raw, h.target_blocks(), h.source_blocks());
        let mut streams = Streams {
            header: h,
            reader: &mut self.reader,
            next: 0,
            current: [Vec::new(), Vec::new()],
            pos: [0, 0],
        };
        let bs = h.block_size as usize;
        let ws = h.window_size as usize;
        let mut window = vec![0u8; ws];
        let mut whole = Sha256::new();
        let mut pending: Option<Op> = None;
        for index in 0..h.window_count() {
            let offset = index * u64::from(h.window_size);
            let len = usize::try_from((h.target_size - offset).min(ws as u64)).expect("≤ window");
            let padded = len.next_multiple_of(bs);
            let skip = index < from_window;
            let mut filled = 0usize;
            let mut used_source = false;
            while filled < padded {
                let op = match pending.take() {
                    Some(op) => op,
                    None => ops
                        .next()
                        .ok_or_else(|| corrupt("operations end before the target"))??,
                };
                let room = ((padded - filled) / bs) as u64;
                let n = op.blocks().min(room);
                let bytes = usize::try_from(n).expect("≤ window") * bs;
                let dst = &mut window[filled..filled + bytes];
                let src_at = |from: u64| from * u64::from(h.block_size);
                match op {
                    Op::Zero { .. } => dst.fill(0),
                    Op::Copy { from, .. } => {
                        if !skip {
                            read_source(source, src_at(from), dst)?;
                            used_source = true;
                        }
                    }
                    Op::Data { .. } => streams.take(Stream::Data, dst, false)?,
                    Op::Diff { from, .. } => {
                        if !skip {
                            read_source(source, src_at(from), dst)?;
                            used_source = true;
                        }
                        streams.take(Stream::Diff, dst, true)?;
                    }
                }
                if n < op.blocks() {
                    pending = Some(rest(op, n));
                }
                filled += bytes;
            }
            if skip {
                continue;
            }
            let data = &window[..len];
            if <[u8; 32]>::from(Sha256::digest(data))
                != h.windows[usize::try_from(index).expect("the header's windows are in memory")]
            {
                return Err(if used_source {
                    DeltaError::SourceMismatch {
                        window: index,
                        offset,
                    }
                } else {
                    corrupt(format!("window {index} does not match its digest"))
                });
            }
            whole.update(data);
            sink.window(index, offset, data)
                .map_err(|source| DeltaError::Sink {
                    window: index,
                    source,
                })?;
            progress(offset + len as u64, h.target_size);
        }
        if pending.is_some() || ops.next().is_some() {
            return Err(corrupt("operations go on after the target"));
        }
        ops.finish()?;
        streams.finish()?;
        if from_window == 0 && <[u8; 32]>::from(whole.finalize()) != h.target_sha256 {
            return Err(corrupt("the target's digest does not match its windows"));
        }
        Ok(())
    }
}

fn rest(op: Op, done: u64) -> Op {
    match op {
        Op::Zero { blocks } => Op::Zero {
            blocks: blocks - done,
        },
        Op::Data { blocks } => Op::Data {
            blocks: blocks - done,
        },
        Op::Copy { from, blocks } => Op::Copy {
            from: from + done,
            blocks: blocks - done,
        },
        Op::Diff { from, blocks } => Op::Diff {
            from: from + done,
            blocks: blocks - done,
        },
    }
}

fn read_source<S: ReadAt + ?Sized>(source: &S, offset: u64, dst: &mut [u8]) -> Result<()> {
    source
        .read_at(offset, dst)
        .map_err(|source| DeltaError::Source { offset, source })
}

/// The next `n` bytes of the delta. Memory grows with the bytes that arrive, not with what a
/// header announces.
fn read_n(r: &mut dyn Read, n: usize) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(n.min(1 << 20));
    r.take(n as u64)
        .read_to_end(&mut v)
        .map_err(DeltaError::Read)?;
    if v.len() < n {
        return Err(corrupt("the delta ends early"));
    }
    Ok(v)
}

/// The literal streams: the current decoded chunk of each, the next chunk read from the body
/// when one runs out.
struct Streams<'a> {
    header: &'a Header,
    reader: &'a mut dyn Read,
    next: usize,
    current: [Vec<u8>; 2],
    pos: [usize; 2],
}

impl Streams<'_> {
    /// Fills `dst` from stream `s` (adds, wrapping, when `add`).
    fn take(&mut self, s: Stream, dst: &mut [u8], add: bool) -> Result<()> {
        let i = s as usize;
        let mut done = 0;
        while done < dst.len() {
            if self.pos[i] == self.current[i].len() {
                self.load(s)?;
            }
            let avail = &self.current[i][self.pos[i]..];
            let n = avail.len().min(dst.len() - done);
            let out = &mut dst[done..done + n];
            if add {
                for (d, x) in out.iter_mut().zip(&avail[..n]) {
                    *d = d.wrapping_add(*x);
                }
            } else {
                out.copy_from_slice(&avail[..n]);
            }
            self.pos[i] += n;
            done += n;
        }
        Ok(())
    }

    fn load(&mut self, s: Stream) -> Result<()> {
        let chunk = self
            .header
            .chunks
            .get(self.next)
            .ok_or_else(|| corrupt("a literal stream ends early"))?;
        if chunk.stream != s {
            return Err(corrupt("chunks are out of order"));
        }
        if chunk.raw_len % self.header.block_size != 0 {
            return Err(corrupt("a chunk is not a whole number of blocks"));
        }
        self.next += 1;
        let i = s as usize;
        // Free the spent chunk before reading the next.
        self.current[i] = Vec::new();
        let z = read_n(self.reader, chunk.compressed_len as usize)?;
        if <[u8; 32]>::from(Sha256::digest(&z)) != chunk.sha256 {
            return Err(corrupt(format!(
                "chunk {} digest does not match",
                self.next - 1
            )));
        }
        let memlimit = u64::from(chunk.raw_len) + (4 << 20);
        self.current[i] = codec::decompress(&z, chunk.raw_len as usize, memlimit)
            .map_err(|e| corrupt(format!("chunk {} does not decode: {e}", self.next - 1)))?;
        self.pos[i] = 0;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.next != self.header.chunks.len()
            || (0..2).any(|i| self.pos[i] != self.current[i].len())
        {
            return Err(corrupt("literal data left over after the target"));
        }
        let mut one = [0u8; 1];
        match self.reader.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(corrupt("bytes after the end of the delta")),
            Err(e) => Err(DeltaError::Read(e)),
        }
    }
}
