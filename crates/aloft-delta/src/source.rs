//! Random access to an image: a file (a slot, an image file) or bytes in memory.

use std::fs::File;
use std::io;

/// An image read at any offset. Reads past its end are zeros: a block-sized view of an image
/// whose size is not a multiple of the block size.
pub trait ReadAt {
    /// Fills `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = (self.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&self[start..start + n]);
        buf[n..].fill(0);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// A file limited to its first `size` bytes (a slot holds the image and maybe more).
#[derive(Debug)]
pub struct FileImage {
    file: File,
    size: u64,
}

impl FileImage {
    /// The first `size` bytes of `file`.
    #[must_use]
    pub fn new(file: File, size: u64) -> Self {
        Self { file, size }
    }
}

impl ReadAt for FileImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let avail = self.size.saturating_sub(offset);
        let n = usize::try_from(avail).unwrap_or(usize::MAX).min(buf.len());
        self.file.read_exact_at(&mut buf[..n], offset)?;
        buf[n..].fill(0);
        Ok(())
    }
}
