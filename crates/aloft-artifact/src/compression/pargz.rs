//! Parallel gzip writer producing one ordinary gzip member, the way pigz does.
//!
//! The input is cut into blocks; workers deflate each block as raw deflate primed with the last
//! 32 KiB of the block before it (so the ratio barely changes) and end it with a sync flush
//! (byte-aligned, not final). Concatenated in order, the pieces form one deflate stream; the
//! block CRCs are combined into the member's CRC. Any gzip reader, also one that stops after
//! the first member, reads the result.
//!
//! Memory: at most `workers` blocks queued, `workers` in progress, and the reorder buffer of
//! finished blocks waiting for an earlier one: a few MiB.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

/// Uncompressed bytes per block.
const BLOCK_SIZE: usize = 1 << 20;
/// One capacity for every buffer: a block, or its deflated form (deflate's worst case is a few
/// bytes per 16 KiB over the input size), so no buffer ever grows.
const BUFFER_CAPACITY: usize = BLOCK_SIZE + BLOCK_SIZE / 64 + 1024;
/// Deflate's window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 * 1024;

/// Buffers are recycled instead of freed: a steady set keeps peak memory flat (freeing and
/// re-allocating 1 MiB blocks makes glibc's heap grow across threads).
/// Buffers kept for reuse; more than the pipeline ever holds at once.
const MAX_POOLED: usize = 16;

#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// A buffer of [`BUFFER_CAPACITY`], whether for a block or its deflated form.
    fn get(&self) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        buf.clear();
        buf.reserve_exact(BUFFER_CAPACITY);
        buf
    }

    fn put(&self, buf: Vec<u8>) {
        if let Ok(mut p) = self.0.lock()
            && p.len() < MAX_POOLED
        {
            p.push(buf);
        }
    }
}

struct Job {
    seq: u64,
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    deflated: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// A [`Write`] that gzips with several threads; call [`ParallelGzEncoder::finish`] at the end.
pub(crate) struct ParallelGzEncoder<W> {
    pool: Pool,
    block: Vec<u8>,
    tail: Vec<u8>,
    seq: u64,
    jobs: Option<mpsc::SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzEncoder<W> {
    pub(crate) fn new(inner: W, level: u32, workers: u32) -> Self {
        let workers = workers.max(1) as usize;
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(workers);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let pool = Pool::default();
        let handles = (0..workers)
            .map(|_| {
                let jobs_rx = Arc::clone(&jobs_rx);
                let done_tx = done_tx.clone();
                let pool = pool.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match jobs_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let mut crc = crc32fast::Hasher::new();
                        crc.update(&job.data);
                        let deflated = deflate_block(&job, level, pool.get());
                        let len = job.data.len() as u64;
                        pool.put(job.data);
                        let done = Done {
                            seq: job.seq,
                            deflated,
                            crc,
                            len,
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(done_tx);
        let writer_pool = pool.clone();
        let writer = std::thread::spawn(move || collect(inner, &done_rx, &writer_pool));
        Self {
            block: pool.get(),
            pool,
            tail: Vec::new(),
            seq: 0,
            jobs: Some(jobs_tx),
            workers: handles,
            writer: Some(writer),
        }
    }

    fn send_block(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, self.pool.get());
        let dictionary = std::mem::take(&mut self.tail);
        self.tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.seq,
            data,
            dictionary,
            last,
        };
        self.seq += 1;
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))?;
        jobs.send(job).map_err(|_| self.writer_error())
    }

    fn writer_error(&mut self) -> io::Error {
        // The writer thread stopped early: its own error says why.
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("parallel gzip writer stopped"),
        }
    }

    /// Compresses what is left, writes the gzip trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.send_block(true)?;
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("gzip worker panicked"))?;
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("parallel gzip writer stopped")),
        }
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK_SIZE - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_SIZE {
            self.send_block(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deflate_block(job: &Job, level: u32, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !job.dictionary.is_empty() {
        c.set_dictionary(&job.dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut input = job.data.as_slice();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(c.total_in() - before).expect("bounded by the block");
        input = &input[consumed..];
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and zlib did not run out of room.
            _ if !job.last && input.is_empty() && room_left => return Ok(out),
            _ => {}
        }
    }
}

/// Writes the gzip header, the blocks in order, and the trailer.
fn collect<W: Write>(mut out: W, done: &mpsc::Receiver<Done>, pool: &Pool) -> io::Result<W> {
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown), as flate2's GzBuilder writes it.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let mut crc = crc32fast::Hasher::new();
    let mut len: u64 = 0;
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for d in done {
        waiting.insert(d.seq, d);
        while let Some(d) = waiting.remove(&next) {
            let deflated = d.deflated?;
            out.write_all(&deflated)?;
            pool.put(deflated);
            crc.combine(&d.crc);
            len += d.len;
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("a gzip block was lost"));
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "gzip stores the length modulo 2^32"
    )]
    out.write_all(&(len as u32).to_le_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn output_is_one_gzip_member_any_reader_decodes() {
        // Compressible and incompressible stretches, crossing several blocks, odd write sizes.
        let mut data = Vec::new();
        let mut x: u32 = 1;
        for i in 0..3_500_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push(if (i / 100_000) % 2 == 0 {
                u8::try_from(i % 7).unwrap()
            } else {
                x.to_be_bytes()[1]
            });
        }
        let mut enc = ParallelGzEncoder::new(Vec::new(), 6, 2);
        for piece in data.chunks(77_777) {
            enc.write_all(piece).unwrap();
        }
        let gz = enc.finish().unwrap();
        // The single-member decoder would stop early if this were several members.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data, "round trip differs");
        let sequential =
            super::super::compress(super::super::Compression::Gzip, &data, Some(6)).unwrap();
        assert!(
            gz.len() < sequential.len() * 102 / 100,
            "{} vs {}",
            gz.len(),
            sequential.len()
        );
    }

    #[test]
    fn empty_input_is_a_valid_gzip() {
        let gz = ParallelGzEncoder::new(Vec::new(), 6, 2).finish().unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
