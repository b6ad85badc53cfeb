//! Where a client's file bytes come from and go to: [`FileSource`] for uploads,
//! [`FileSink`] for downloads, read and written one frame at a time at explicit
//! offsets, so a file in flash, on an SD card or in RAM all work.

use core::fmt;

use crate::store::FileStat;

/// Why a local file could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LocalError {
    /// The source could not be read.
    Read,
    /// The source ended before the size it announced.
    SourceShort {
        /// Where it ended.
        at: u64,
    },
    /// The sink could not be written.
    Write,
    /// The sink has no room for the file.
    NoSpace,
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read => f.write_str("local file could not be read"),
            Self::SourceShort { at } => write!(f, "local file ended early, at {at}"),
            Self::Write => f.write_str("local file could not be written"),
            Self::NoSpace => f.write_str("no room for the file"),
        }
    }
}

impl core::error::Error for LocalError {}

/// Where an upload's bytes come from: a file of fixed size, read at offsets.
pub trait FileSource {
    /// The file's size in bytes; it must not change during the upload.
    fn size(&self) -> u64;

    /// Copies bytes from `offset` on into `buf` and returns how many. Fills `buf`
    /// unless the file ends first.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError>;

    /// A CRC-32 of the file's first bytes that the source already knows, to
    /// check a resumed upload's prefix with less reading: `(at, crc)`, `crc`
    /// being the CRC-32 of bytes `0..at`, for some `at` no greater than `len`.
    /// The client then reads only `at..len` of the file to check the `len`
    /// bytes the server holds. The default knows none, and the client reads
    /// them all.
    ///
    /// The client checks the prefix on the open connection, which sends
    /// nothing meanwhile, and a server resets a connection that stays idle
    /// for long (smolsock's after 60 s by default): a source of several
    /// gigabytes on a slow disk should keep checkpoints from an earlier pass
    /// over the file (the one that computed its whole CRC-32, say), every few
    /// tens of megabytes. An answer with `at` above `len` is not used.
    fn crc_checkpoint(&mut self, len: u64) -> Option<(u64, u32)> {
        let _ = len;
        None
    }
}

/// A file in memory (RAM or memory-mapped flash).
impl FileSource for &[u8] {
    fn size(&self) -> u64 {
        u64::try_from(self.len()).unwrap_or(u64::MAX)
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|offset| self.get(offset..))
            .unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl<T: FileSource + ?Sized> FileSource for &mut T {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        (**self).read(offset, buf)
    }

    fn crc_checkpoint(&mut self, len: u64) -> Option<(u64, u32)> {
        (**self).crc_checkpoint(len)
    }
}

/// Where a download's bytes go: written in order, kept aside until the checksum
/// matched, so a failed download never looks like a good file.
pub trait FileSink {
    /// How many bytes an earlier attempt left, and their CRC-32, for a resumed
    /// download. The default holds nothing.
    ///
    /// The client asks once the connection is open, and sends nothing until
    /// this returns, while a server resets a connection that stays idle for
    /// long (smolsock's after 60 s by default): a sink that must read
    /// gigabytes to answer should compute the answer before connecting and
    /// return it from here.
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        Ok((0, 0))
    }

    /// Forgets every byte held: the download starts again from 0 (or failed).
    fn restart(&mut self) -> Result<(), LocalError>;

    /// Appends `bytes`; `offset` is always the number of bytes held so far.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError>;

    /// Every byte is in and the CRC-32 matched: make the file real.
    fn complete(&mut self, _stat: FileStat) -> Result<(), LocalError> {
        Ok(())
    }
}

impl<T: FileSink + ?Sized> FileSink for &mut T {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        (**self).held()
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        (**self).restart()
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        (**self).write(offset, bytes)
    }

    fn complete(&mut self, stat: FileStat) -> Result<(), LocalError> {
        (**self).complete(stat)
    }
}

/// A [`FileSink`] into a caller's buffer: a config file fetched into RAM.
///
/// What it holds survives a failed attempt, so fetching again with resume
/// continues where the last one stopped.
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
    complete: bool,
}

impl<'a> SliceSink<'a> {
    /// An empty sink over `buf`; the file may be as long as `buf`.
    pub const fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            complete: false,
        }
    }

    /// The bytes received so far.
    pub fn data(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Whether a download finished with a matching checksum.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

impl FileSink for SliceSink<'_> {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        let len = u64::try_from(self.len).unwrap_or(u64::MAX);
        Ok((len, crate::wire::crc32::crc32(self.data())))
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        self.len = 0;
        self.complete = false;
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        if usize::try_from(offset).ok() != Some(self.len) {
            return Err(LocalError::Write);
        }
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(LocalError::NoSpace)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(LocalError::NoSpace)?
            .copy_from_slice(bytes);
        self.len = end;
        self.complete = false;
        Ok(())
    }

    fn complete(&mut self, _stat: FileStat) -> Result<(), LocalError> {
        self.complete = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::crc32::crc32;

    #[test]
    fn a_slice_reads_at_any_offset_and_ends_cleanly() {
        let mut file: &[u8] = b"hello, world\n";
        assert_eq!(file.size(), 13);
        let mut buf = [0u8; 5];
        assert_eq!(file.read(7, &mut buf), Ok(5));
        assert_eq!(&buf, b"world");
        assert_eq!(file.read(12, &mut buf), Ok(1));
        assert_eq!(file.read(13, &mut buf), Ok(0));
        assert_eq!(file.read(u64::MAX, &mut buf), Ok(0));
    }

    #[test]
    fn a_slice_sink_keeps_what_arrived_for_a_resume_and_refuses_overflow() {
        let mut buf = [0u8; 8];
        let mut sink = SliceSink::new(&mut buf);
        sink.write(0, b"abc").unwrap();
        assert_eq!(sink.held(), Ok((3, crc32(b"abc"))));
        assert_eq!(sink.write(5, b"x"), Err(LocalError::Write));
        assert_eq!(sink.write(3, b"defghi"), Err(LocalError::NoSpace));
        sink.write(3, b"defgh").unwrap();
        sink.complete(FileStat { size: 8, crc: 0 }).unwrap();
        assert!(sink.is_complete());
        assert_eq!(sink.data(), b"abcdefgh");
        sink.restart().unwrap();
        assert_eq!((sink.data(), sink.is_complete()), (&b""[..], false));
    }
}
