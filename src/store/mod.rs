//! File storage: the [`Storage`] trait and its two stores. A store knows files,
//! not protocols; the transfer server maps its errors to the protocol's answers.
//!
//! The transfer server runs over any [`Storage`]. It never sees paths or memory
//! addresses, only [`FileName`]s, which never begin with `.` and never hold `/`,
//! `\` or a control character, so no request can reach outside a store.
//!
//! An upload goes to a *partial* entry that nobody can list, stat or download. It
//! becomes the file only in [`Storage::commit`], after the store has checked that
//! every announced byte arrived and that their CRC-32 is the announced one, so a
//! client that disconnects or lies about the size leaves no corrupt file behind. A
//! partial outlives its connection: a later [`Storage::begin_upload`] with `resume`
//! continues it. Partials count against a store's limits like files do.
//!
//! Every commit gives the file a new [`version`](Storage::version), so a reader
//! that reads a file one piece at a time (a download, one frame per call) can tell
//! that the file was replaced or deleted between two pieces, instead of handing on
//! the start of one version and the rest of another.
//!
//! - [`RamStore`]: `no_std`, heapless, every file in one fixed byte arena; for
//!   firmware and tests.
//! - `DirStore` (feature `std`, Unix): a directory on disk, partials under hidden
//!   names.

#[cfg(test)]
mod conformance;
#[cfg(all(feature = "std", unix))]
mod dir;
mod ram;

#[cfg(all(feature = "std", unix))]
pub use dir::{DirLimits, DirStore};
pub use ram::RamStore;

pub use crate::name::{FileName, MAX_NAME_LEN, NameError};

use crate::wire::crc32::Crc32;
use core::fmt;

/// Size and checksum of a stored file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileStat {
    /// Bytes in the file.
    pub size: u64,
    /// CRC-32 (zlib) of the whole file.
    pub crc: u32,
}

/// One file of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// The file's name.
    pub name: FileName,
    /// Bytes in the file.
    pub size: u64,
}

/// An upload in progress: which partial it writes, how big the file will be and
/// how many bytes are in.
///
/// [`Storage::begin_upload`] hands it out, [`Storage::append`] advances it and
/// [`Storage::commit`] finishes it. It is a plain value the server keeps in its
/// connection state; a store checks it against the partial it holds (its
/// length, CRC-32 and [`stamp`](Self::stamp)), so a stale `Upload`, from
/// before the latest begin of its partial, gets an error, never wrong bytes in
/// a file. Dropping it keeps the partial for a later resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Upload {
    name: FileName,
    size: u64,
    written: u64,
    resumed_from: u64,
    resumed_crc: u32,
    /// CRC-32 of the `written` bytes, kept as they pass.
    crc: u32,
    /// The store's mark of the begin that made it.
    stamp: u32,
}

impl Upload {
    /// An upload of `name`, `size` bytes in all, whose partial already holds
    /// `resumed_from` bytes with CRC-32 `resumed_crc`. For [`Storage`]
    /// implementations.
    pub const fn new(name: FileName, size: u64, resumed_from: u64, resumed_crc: u32) -> Self {
        Self {
            name,
            size,
            written: resumed_from,
            resumed_from,
            resumed_crc,
            crc: resumed_crc,
            stamp: 0,
        }
    }

    /// The same upload, marked with `stamp`: a number its store gives each
    /// [`begin_upload`](Storage::begin_upload) and checks at each append and
    /// commit, so that an `Upload` from an earlier begin of the same partial
    /// (one that started over, or was resumed since) is refused even where its
    /// length and CRC-32 are the partial's. For [`Storage`] implementations.
    #[must_use]
    pub const fn stamped(mut self, stamp: u32) -> Self {
        self.stamp = stamp;
        self
    }

    /// The mark its store gave it at its begin ([`stamped`](Self::stamped); 0
    /// when none).
    pub const fn stamp(&self) -> u32 {
        self.stamp
    }

    /// The file being uploaded.
    pub const fn name(&self) -> &FileName {
        &self.name
    }

    /// The whole file's size, as announced.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Bytes the partial holds now: the offset the next DATA must carry.
    pub const fn written(&self) -> u64 {
        self.written
    }

    /// Bytes still to come.
    pub const fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.written)
    }

    /// Every announced byte is in: time to [`commit`](Storage::commit).
    pub const fn is_complete(&self) -> bool {
        self.written >= self.size
    }

    /// Bytes the partial held when the upload began (PUT_READY's `offset`).
    pub const fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// CRC-32 of those bytes (PUT_READY's `prefix_crc`; 0 when there were none).
    pub const fn resumed_crc(&self) -> u32 {
        self.resumed_crc
    }

    /// CRC-32 of every byte the partial holds, the resumed prefix included,
    /// computed as the bytes were recorded: at the end, the whole file's.
    pub const fn crc(&self) -> u32 {
        self.crc
    }

    /// Records `data` as stored: the written count and the CRC-32 go on over it.
    /// For [`Storage`] implementations, after they wrote the bytes.
    pub fn record(&mut self, data: &[u8]) {
        let mut crc = Crc32::resume(self.crc);
        crc.update(data);
        self.crc = crc.finish();
        self.written = self
            .written
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
    }
}

/// Why a storage operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// No such file, or no such partial upload: none, or not the one an
    /// [`Upload`] was made for (begun again or removed since, or the `Upload`
    /// forged): its size, CRC-32 or stamp not the partial's.
    NotFound,
    /// The bytes do not fit in the store's total capacity.
    Full {
        /// Bytes still free.
        free: u64,
    },
    /// The store holds as many entries (files and partial uploads) as it may.
    TooManyFiles {
        /// The limit.
        max: u64,
    },
    /// A file over the store's size limit.
    FileTooLarge {
        /// The largest file the store accepts.
        max: u64,
    },
    /// The store cannot hold this name (its file system refused it).
    InvalidName,
    /// An offset that is not where the data is: reading past the end of a file
    /// (`expected` is its size), or appending to a partial that holds a different
    /// number of bytes than the [`Upload`] says (`expected` is what it holds).
    BadOffset {
        /// The offset that would have been valid.
        expected: u64,
    },
    /// Appending beyond the upload's announced size.
    TooMuchData {
        /// The announced size.
        size: u64,
    },
    /// Committing before every announced byte is in.
    Incomplete {
        /// Bytes the partial holds.
        written: u64,
        /// The announced size.
        size: u64,
    },
    /// The partial's bytes do not have the announced CRC-32. The store has deleted
    /// the partial: no bad data is kept.
    ChecksumMismatch {
        /// The CRC-32 of what the store held.
        computed: u32,
    },
    /// The store's own bookkeeping disagrees with itself (a bug, never input).
    Inconsistent,
    /// The operating system refused an operation.
    #[cfg(feature = "std")]
    Io(std::io::ErrorKind),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such file"),
            Self::Full { free } => write!(f, "store full ({free} bytes free)"),
            Self::TooManyFiles { max } => write!(f, "too many files (limit {max})"),
            Self::FileTooLarge { max } => write!(f, "file too large (limit {max} bytes)"),
            Self::InvalidName => f.write_str("the store cannot hold this name"),
            Self::BadOffset { expected } => write!(f, "bad offset (expected {expected})"),
            Self::TooMuchData { size } => write!(f, "more data than the announced {size} bytes"),
            Self::Incomplete { written, size } => {
                write!(f, "upload incomplete ({written} of {size} bytes)")
            }
            Self::ChecksumMismatch { computed } => {
                write!(
                    f,
                    "checksum mismatch (stored bytes have CRC-32 {computed:08x})"
                )
            }
            Self::Inconsistent => f.write_str("store bookkeeping inconsistent"),
            #[cfg(feature = "std")]
            Self::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}

impl core::error::Error for StoreError {}

// Written by hand because `std::io::ErrorKind` has no `defmt::Format`.
#[cfg(feature = "defmt")]
impl defmt::Format for StoreError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::NotFound => defmt::write!(f, "NotFound"),
            Self::Full { free } => defmt::write!(f, "Full {{ free: {=u64} }}", free),
            Self::TooManyFiles { max } => defmt::write!(f, "TooManyFiles {{ max: {=u64} }}", max),
            Self::FileTooLarge { max } => defmt::write!(f, "FileTooLarge {{ max: {=u64} }}", max),
            Self::InvalidName => defmt::write!(f, "InvalidName"),
            Self::BadOffset { expected } => {
                defmt::write!(f, "BadOffset {{ expected: {=u64} }}", expected)
            }
            Self::TooMuchData { size } => defmt::write!(f, "TooMuchData {{ size: {=u64} }}", size),
            Self::Incomplete { written, size } => defmt::write!(
                f,
                "Incomplete {{ written: {=u64}, size: {=u64} }}",
                written,
                size
            ),
            Self::ChecksumMismatch { computed } => {
                defmt::write!(f, "ChecksumMismatch {{ computed: {=u32:08x} }}", computed)
            }
            Self::Inconsistent => defmt::write!(f, "Inconsistent"),
            #[cfg(feature = "std")]
            Self::Io(kind) => defmt::write!(f, "Io({})", defmt::Debug2Format(kind)),
        }
    }
}

/// Where the transfer server keeps files.
///
/// Every method is fallible with a [`StoreError`] and none may panic. Reads see
/// only committed files; partial uploads are reached only through [`Upload`].
pub trait Storage {
    /// Size and CRC-32 of a committed file.
    fn stat(&self, name: &FileName) -> Result<FileStat, StoreError>;

    /// Copies bytes of a committed file, from `offset` on, into `buf`; returns how
    /// many. Fills `buf` unless the file ends first, so the caller can fill one
    /// frame per call. At the end of the file it returns 0; an `offset` past the
    /// end is [`StoreError::BadOffset`] with the file's size.
    fn read(&self, name: &FileName, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;

    /// CRC-32 of the first `len` bytes of a committed file (GET_READY's
    /// `prefix_crc`). `len` past the end is [`StoreError::BadOffset`] with the
    /// file's size; a missing file is [`StoreError::NotFound`], even for `len` 0.
    ///
    /// The provided version reads through [`read`](Self::read) with a 256-byte
    /// buffer on the stack; a store that can do better overrides it.
    fn crc_prefix(&self, name: &FileName, len: u64) -> Result<u32, StoreError> {
        // An empty read finds out whether the file exists, even for `len` 0.
        self.read(name, 0, &mut [])?;
        let mut crc = Crc32::new();
        let mut buf = [0u8; 256];
        let mut offset = 0u64;
        while offset < len {
            let left = len.saturating_sub(offset);
            let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
            let chunk = buf.get_mut(..want).ok_or(StoreError::Inconsistent)?;
            let n = self.read(name, offset, chunk)?;
            if n == 0 {
                return Err(StoreError::BadOffset { expected: offset });
            }
            crc.update(chunk.get(..n).ok_or(StoreError::Inconsistent)?);
            offset = offset.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        }
        Ok(crc.finish())
    }

    /// The committed file whose name comes next after `after` in byte order (the
    /// first one for `None`), or `None` when there is no more.
    ///
    /// A listing is a loop of calls, each passing the name the last one returned;
    /// the caller keeps nothing else between calls, can pause whenever the send
    /// buffer is full, and is given every file that stays put meanwhile exactly
    /// once.
    fn next_entry(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError>;

    /// The version of a committed file: a number that changes whenever the file
    /// does. Every [`commit`](Self::commit) gives the file under its name a version
    /// it has never had while the store is open, even after a delete and a new
    /// upload of the same name, for as long as the store's counter does not come
    /// round again ([`RamStore`]'s is a `u32` that its begins use too); reads,
    /// listings and partial uploads leave it alone.
    /// [`StoreError::NotFound`] when no file is committed under `name`.
    ///
    /// A reader that must hand on one version whole, reading it a piece at a time,
    /// notes the version with its first read and checks it before every later one.
    fn version(&self, name: &FileName) -> Result<u64, StoreError>;

    /// Removes a committed file and any partial upload of that name.
    /// [`StoreError::NotFound`] if there was neither.
    fn delete(&mut self, name: &FileName) -> Result<(), StoreError>;

    /// Opens the partial entry for an upload of `size` bytes to `name`.
    ///
    /// With `resume`, a partial of this name holding at most `size` bytes is kept,
    /// and the [`Upload`] reports how many bytes it holds and their CRC-32 (the
    /// client sends from there). Otherwise any partial of this name is emptied.
    /// A committed file of the same name stays readable, unchanged, until
    /// [`commit`](Self::commit) replaces it.
    ///
    /// Fails with [`StoreError::FileTooLarge`], [`StoreError::Full`] or
    /// [`StoreError::TooManyFiles`] (a new partial is one more entry; one in the
    /// place of an old partial is not), checked in that order: `TooManyFiles`
    /// means the bytes would fit. The room an old partial of this name takes counts as
    /// free for the new size, but the partial is emptied or resized only once the
    /// request fits: after any of these errors the store is as it was, the partial
    /// and its bytes included, and `Full`'s `free` is the bytes free with the
    /// partial still there.
    ///
    /// The store does not know about connections: the caller must not run two
    /// uploads of one name at once (the server answers the second `Busy`).
    fn begin_upload(
        &mut self,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<Upload, StoreError>;

    /// Appends `data` to the upload's partial and advances `upload`.
    ///
    /// Fails, storing nothing, with [`StoreError::TooMuchData`] when `data` would
    /// go past the announced size, [`StoreError::BadOffset`] when the partial does
    /// not hold `upload.written()` bytes, [`StoreError::NotFound`] when the partial
    /// is gone, or [`StoreError::Full`]. After an error the partial keeps what it
    /// held before; the caller ends the upload.
    fn append(&mut self, upload: &mut Upload, data: &[u8]) -> Result<(), StoreError>;

    /// Makes the partial the file under its name, replacing any older file, once
    /// it holds exactly the announced size and the CRC-32 of its bytes is `crc`.
    ///
    /// The store checks both itself: the size it holds, and the CRC-32 computed as
    /// the bytes were appended (never by reading the file again). On
    /// [`StoreError::ChecksumMismatch`] it deletes the partial; on
    /// [`StoreError::Incomplete`] it keeps it. Returns what was stored.
    fn commit(&mut self, upload: &Upload, crc: u32) -> Result<FileStat, StoreError>;

    /// Deletes the partial upload of `name`, if there is one. Idempotent.
    ///
    /// To keep a partial for a later resume, do nothing: drop the [`Upload`].
    fn discard_upload(&mut self, name: &FileName) -> Result<(), StoreError>;

    /// The partial upload whose name comes next after `after` in byte order
    /// (the first one for `None`), with the room it takes (its `size`: the bytes
    /// it holds, or a store that reserves an upload's announced size, those),
    /// or `None` when there is no more. The transfer server asks it when an
    /// upload finds no room, to discard partials no upload holds (left by
    /// clients that went away) and so make room.
    ///
    /// The provided version finds none: a store that cannot list its partials
    /// keeps them until they are resumed, replaced or deleted.
    fn next_partial(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        let _ = after;
        Ok(None)
    }

    /// The bytes and the entries the store holds beyond its limits (a
    /// directory already over them when it was opened), which must go before
    /// an upload finds room: `Full`'s `free` is 0 then, however far over. The
    /// transfer server counts them before it discards partials to make room,
    /// so that none goes for an upload refused all the same.
    ///
    /// The provided version says none: a store that never holds more than its
    /// limits.
    fn over_limits(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A store the server borrows works like one it owns.
impl<S: Storage + ?Sized> Storage for &mut S {
    fn stat(&self, name: &FileName) -> Result<FileStat, StoreError> {
        (**self).stat(name)
    }

    fn read(&self, name: &FileName, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        (**self).read(name, offset, buf)
    }

    fn crc_prefix(&self, name: &FileName, len: u64) -> Result<u32, StoreError> {
        (**self).crc_prefix(name, len)
    }

    fn next_entry(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        (**self).next_entry(after)
    }

    fn version(&self, name: &FileName) -> Result<u64, StoreError> {
        (**self).version(name)
    }

    fn delete(&mut self, name: &FileName) -> Result<(), StoreError> {
        (**self).delete(name)
    }

    fn begin_upload(
        &mut self,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<Upload, StoreError> {
        (**self).begin_upload(name, size, resume)
    }

    fn append(&mut self, upload: &mut Upload, data: &[u8]) -> Result<(), StoreError> {
        (**self).append(upload, data)
    }

    fn commit(&mut self, upload: &Upload, crc: u32) -> Result<FileStat, StoreError> {
        (**self).commit(upload, crc)
    }

    fn discard_upload(&mut self, name: &FileName) -> Result<(), StoreError> {
        (**self).discard_upload(name)
    }

    fn next_partial(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        (**self).next_partial(after)
    }

    fn over_limits(&self) -> (u64, u64) {
        (**self).over_limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_tracks_progress() {
        let name = FileName::new("f").unwrap();
        let mut upload = Upload::new(name, 10, 4, 0x1234);
        assert_eq!((upload.written(), upload.remaining()), (4, 6));
        assert!(!upload.is_complete());
        upload.record(b"abcdef");
        assert!(upload.is_complete());
        assert_eq!(upload.remaining(), 0);
        assert_eq!((upload.resumed_from(), upload.resumed_crc()), (4, 0x1234));
        assert_eq!(upload.name().as_str(), "f");
    }

    #[test]
    fn an_upload_checksums_its_bytes_as_they_pass() {
        let name = FileName::new("f").unwrap();
        let whole = b"0123456789";
        let mut upload = Upload::new(name, 10, 4, crate::wire::crc32::crc32(&whole[..4]));
        upload.record(&whole[4..7]);
        upload.record(&whole[7..]);
        assert_eq!(upload.crc(), crate::wire::crc32::crc32(whole));
    }
}
