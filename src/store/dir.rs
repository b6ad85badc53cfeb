//! A file store in a directory on disk (`std`, Linux).
//!
//! A file `name` is the regular file `root/name`; its partial upload is the
//! hidden file `root/.name.part`. Valid [`FileName`]s never begin with `.` and never
//! hold a `/`, so the two cannot collide and neither can leave the root. Inside the
//! root, only regular files count: a symlink (even one planted by someone else
//! with shell access) is never followed; every file is opened with `O_NOFOLLOW`
//! and checked to be a regular file, so a link to `/etc/passwd` reads as "not
//! found" and is replaced, not written through. A hard link is a regular file
//! and is read as one (Linux's `fs.protected_hardlinks`, on by default, lets a
//! user link only a file they may read and write anyway), but the store never
//! writes into a file that has another name: a partial with a second link
//! (perhaps to a file outside the root, planted on its name) is started over
//! under a new file, never resumed or appended to, and the check is made on
//! the open file. Other entries (directories, files with names the protocol
//! refuses) are left alone and not listed.
//!
//! A commit syncs the partial to disk, then renames it over the real name, which
//! is atomic: readers see the old file or the new one, never half of one, even if
//! power fails in between.
//!
//! The store counts its bytes and entries when it opens and keeps the counts up to
//! date itself, so it assumes it is the only writer of its root and of the files
//! in it (a file with a second name elsewhere, written through that name, grows
//! behind the store's back).
//!
//! A listing reads the root's names once, when it starts (`next_entry(None)`),
//! and walks them sorted, the store's own commits and deletes kept in them
//! meanwhile; each entry is checked with a `stat` when its turn comes, so a file
//! removed behind the store's back is skipped.
//!
//! Versions ([`Storage::version`]) are kept in memory: a counter of the commits
//! since the store opened, and for each file committed since, the count at its
//! commit. A file found on disk at open has version 0 until it is replaced. The
//! file system's own stamps cannot do this job: modification times are as coarse
//! as the kernel's tick, and a delete frees an inode number that the next upload
//! may get again.

use super::{Entry, FileName, FileStat, Storage, StoreError, Upload};
use crate::wire::crc32::Crc32;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

/// Limits a [`DirStore`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirLimits {
    /// Bytes in all files and partial uploads together.
    pub max_total_bytes: u64,
    /// Bytes in one file.
    pub max_file_bytes: u64,
    /// Files and partial uploads together.
    pub max_files: u64,
}

impl DirLimits {
    /// 1 GiB in all, 1 GiB per file, 1024 files.
    pub const DEFAULT: Self = Self {
        max_total_bytes: 1 << 30,
        max_file_bytes: 1 << 30,
        max_files: 1024,
    };
}

impl Default for DirLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Files in a directory. See the module documentation for the layout on disk.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    limits: DirLimits,
    /// Bytes in our files and partials.
    used: u64,
    /// Our files and partials.
    entries: u64,
    /// Commits since the store opened: the last version handed out.
    commits: u64,
    /// The version of each file committed since the store opened.
    versions: HashMap<FileName, u64>,
    /// The CRC-32 of files whose bytes passed through the store (at commit) or
    /// were read once (at the first stat), with the length and modification time
    /// they had then: a file changed behind the store's back is read again.
    crcs: Mutex<HashMap<FileName, KnownCrc>>,
    /// The announced size of each partial and the CRC-32 of what it holds, for
    /// the uploads begun since the store opened: an [`Upload`] whose size or
    /// CRC differs was made for a partial started over since (or forged), and
    /// writes nothing.
    partials: HashMap<FileName, Current>,
    /// The names a listing walks, sorted: read from the directory when a
    /// listing starts, kept up to date by the store's own commits and deletes,
    /// dropped when a listing ends. Each call of a listing then costs a search
    /// and a `stat` (one more for each name gone behind the store's back), not
    /// a read of the whole directory.
    listing: Mutex<Option<Vec<FileName>>>,
    /// How often the names were read from the directory.
    #[cfg(test)]
    name_reads: std::sync::atomic::AtomicU64,
}

/// What an [`Upload`] must say to be the one for a partial as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Current {
    size: u64,
    crc: u32,
    stamp: u32,
}

impl Current {
    fn of(upload: &Upload) -> Self {
        Self {
            size: upload.size(),
            crc: upload.crc(),
            stamp: upload.stamp(),
        }
    }
}

/// A file's CRC-32, and what the file looked like when it was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KnownCrc {
    len: u64,
    modified: Option<SystemTime>,
    crc: u32,
}

const PARTIAL_PREFIX: &str = ".";
const PARTIAL_SUFFIX: &str = ".part";

/// Maps the operating system's refusals to the store's errors.
fn io_error(e: io::Error) -> StoreError {
    match e.raw_os_error() {
        // O_NOFOLLOW met a symlink: not one of our files.
        Some(libc::ELOOP) => return StoreError::NotFound,
        Some(libc::ENOSPC | libc::EDQUOT) => return StoreError::Full { free: 0 },
        Some(libc::ENAMETOOLONG | libc::EILSEQ) => return StoreError::InvalidName,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound,
        kind => StoreError::Io(kind),
    }
}

/// The stamps of uploads' begins, from one counter for every `DirStore` of the
/// process: a store opened again on a root gives no new begin the stamp of an
/// `Upload` from before (it would write to the partial as the new one), for
/// as long as the `u32` does not come round (2^32 begins).
static STAMPS: AtomicU32 = AtomicU32::new(0);

/// The next stamp for an upload's begin.
fn next_stamp() -> u32 {
    STAMPS.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

/// Whether the store may write into a file of the root (a partial): a regular
/// file (`meta` not following a symlink) with no name but this one. A second
/// link may be a file outside the root, planted on a partial's name to be
/// written through.
fn writable(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.nlink() <= 1
}

/// The length of `path` if it is a regular file; `None` if it is absent or
/// anything else (a symlink is not followed). The counts go by this: a file's
/// links can change behind the store's back (a backup hard-linking it).
fn regular_len(path: &Path) -> Result<Option<u64>, StoreError> {
    lstat_len(path, |meta| meta.file_type().is_file())
}

/// The length of `path` if the store may write into it ([`writable`]).
fn writable_len(path: &Path) -> Result<Option<u64>, StoreError> {
    lstat_len(path, writable)
}

fn lstat_len(path: &Path, counts: fn(&fs::Metadata) -> bool) -> Result<Option<u64>, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if counts(&meta) => Ok(Some(meta.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// Opens a regular file for reading without following a symlink, and without
/// blocking on a FIFO someone left in the root.
fn open_regular(path: &Path) -> Result<(File, u64), StoreError> {
    open_checked(path, false, |meta| meta.file_type().is_file())
}

/// Opens a partial for reading and writing, as [`open_regular`] does, if the
/// store may write into it ([`writable`], looked at before it is opened, so
/// that a file with another name is never opened for writing, and checked
/// again on the open file): what the store resumes, empties and commits.
/// `NotFound` if it is anything else, or if the system will not open it for
/// writing ([`refused_for_writing`]).
fn open_partial(path: &Path) -> Result<(File, u64), StoreError> {
    if writable_len(path)?.is_none() {
        return Err(StoreError::NotFound);
    }
    open_checked(path, true, writable)
}

/// Whether an open for writing failed because the system will not let this
/// file be written (a running program's, or one the store's user may only
/// read): a partial the store starts over instead.
fn refused_for_writing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::ETXTBSY)
    )
}

fn open_checked(
    path: &Path,
    write: bool,
    fits: fn(&fs::Metadata) -> bool,
) -> Result<(File, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if write && refused_for_writing(&e) {
                StoreError::NotFound
            } else {
                io_error(e)
            }
        })?;
    let meta = file.metadata().map_err(io_error)?;
    if !fits(&meta) {
        return Err(StoreError::NotFound);
    }
    Ok((file, meta.len()))
}

/// Empties the partial at `path` if the store may write into it
/// ([`open_partial`]); `false`, and nothing changed, if it may not.
fn empty_writable(path: &Path) -> Result<bool, StoreError> {
    match open_partial(path) {
        Ok((file, _)) => {
            file.set_len(0).map_err(io_error)?;
            Ok(true)
        }
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// CRC-32 of the first `len` bytes of `file`; `None` if it is shorter.
fn crc_of(file: &mut File, len: u64) -> Result<Option<u32>, StoreError> {
    let mut crc = Crc32::new();
    let mut buf = [0u8; 8192];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let chunk = buf.get_mut(..want).ok_or(StoreError::Inconsistent)?;
        let n = file.read(chunk).map_err(io_error)?;
        if n == 0 {
            return Ok(None);
        }
        crc.update(chunk.get(..n).ok_or(StoreError::Inconsistent)?);
        left = left.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(Some(crc.finish()))
}

impl DirStore {
    /// Opens the store in `root`, an existing directory, and counts the files and
    /// partial uploads already there against `limits` (an over-full directory
    /// opens; it just takes no more).
    pub fn open(root: impl AsRef<Path>, limits: DirLimits) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let meta = fs::metadata(&root).map_err(io_error)?;
        if !meta.is_dir() {
            return Err(StoreError::Io(io::ErrorKind::NotADirectory));
        }
        let mut store = Self {
            root,
            limits,
            used: 0,
            entries: 0,
            commits: 0,
            versions: HashMap::new(),
            crcs: Mutex::new(HashMap::new()),
            partials: HashMap::new(),
            listing: Mutex::new(None),
            #[cfg(test)]
            name_reads: std::sync::atomic::AtomicU64::new(0),
        };
        for entry in fs::read_dir(&store.root).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let Some(os_name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let ours = FileName::new(&os_name).is_ok() || Self::partial_of(&os_name).is_some();
            // DirEntry::metadata does not follow symlinks.
            let meta = entry.metadata().map_err(io_error)?;
            if ours && meta.file_type().is_file() {
                store.used = store.used.saturating_add(meta.len());
                store.entries = store.entries.saturating_add(1);
            }
        }
        Ok(store)
    }

    /// The directory the files are in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits it enforces.
    pub const fn limits(&self) -> DirLimits {
        self.limits
    }

    /// Bytes in files and partial uploads.
    pub const fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Files and partial uploads.
    pub const fn entries(&self) -> u64 {
        self.entries
    }

    /// The name whose partial upload `os_name` is, if it is one.
    fn partial_of(os_name: &str) -> Option<FileName> {
        let inner = os_name
            .strip_prefix(PARTIAL_PREFIX)?
            .strip_suffix(PARTIAL_SUFFIX)?;
        FileName::new(inner).ok()
    }

    fn file_path(&self, name: &FileName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// `NotFound` unless `upload` was made for the partial as it is: its size,
    /// CRC-32 and stamp the ones kept for the partial (another stamp is a begin
    /// since; another size, or other bytes at the same length, a forged `Upload`).
    fn check_current(&self, upload: &Upload) -> Result<(), StoreError> {
        if self.partials.get(upload.name()) == Some(&Current::of(upload)) {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    fn partial_path(&self, name: &FileName) -> PathBuf {
        self.root
            .join(format!("{PARTIAL_PREFIX}{name}{PARTIAL_SUFFIX}"))
    }

    fn free(&self) -> u64 {
        self.limits.max_total_bytes.saturating_sub(self.used)
    }

    fn check_room(&self, more: u64) -> Result<(), StoreError> {
        if self.used.saturating_add(more) > self.limits.max_total_bytes {
            Err(StoreError::Full { free: self.free() })
        } else {
            Ok(())
        }
    }

    /// Removes a regular file of ours and takes it off the counts.
    fn remove_counted(&mut self, path: &Path, len: u64) -> Result<(), StoreError> {
        fs::remove_file(path).map_err(io_error)?;
        self.used = self.used.saturating_sub(len);
        self.entries = self.entries.saturating_sub(1);
        Ok(())
    }
}

impl DirStore {
    /// The names of the regular files in the root that are valid file names,
    /// sorted.
    fn names(&self) -> Result<Vec<FileName>, StoreError> {
        #[cfg(test)]
        self.name_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.names_of(|file| FileName::new(file).ok())
    }

    /// The names of the partials in the root (regular files `.name.part`),
    /// sorted.
    fn partial_names(&self) -> Result<Vec<FileName>, StoreError> {
        self.names_of(|file| {
            let name = file.strip_prefix('.')?.strip_suffix(PARTIAL_SUFFIX)?;
            FileName::new(name).ok()
        })
    }

    /// What `name_of` makes of the names of the regular files in the root, those
    /// it makes something of, sorted.
    fn names_of(
        &self,
        name_of: impl Fn(&str) -> Option<FileName>,
    ) -> Result<Vec<FileName>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let Some(name) = entry.file_name().to_str().and_then(&name_of) else {
                continue;
            };
            // DirEntry::file_type does not follow symlinks (and needs an
            // `lstat` only where the file system does not say the type).
            match entry.file_type() {
                Ok(kind) if kind.is_file() => names.push(name),
                Ok(_) => {}
                // Deleted since read_dir saw it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Keeps the names a listing walks up to date: `name` is now a stored
    /// file, or no longer one.
    fn listed(&mut self, name: &FileName, stored: bool) {
        let listing = self
            .listing
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(names) = listing else {
            return;
        };
        match names.binary_search(name) {
            Ok(at) if !stored => {
                names.remove(at);
            }
            Err(at) if stored => names.insert(at, *name),
            _ => {}
        }
    }
}

impl Storage for DirStore {
    fn stat(&self, name: &FileName) -> Result<FileStat, StoreError> {
        let (mut file, size) = open_regular(&self.file_path(name))?;
        let modified = file.metadata().ok().and_then(|meta| meta.modified().ok());
        let mut crcs = self
            .crcs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = crcs.get(name)
            && known.len == size
            && known.modified == modified
            && modified.is_some()
        {
            return Ok(FileStat {
                size,
                crc: known.crc,
            });
        }
        let crc = crc_of(&mut file, size)?.ok_or(StoreError::Inconsistent)?;
        crcs.insert(
            *name,
            KnownCrc {
                len: size,
                modified,
                crc,
            },
        );
        Ok(FileStat { size, crc })
    }

    fn read(&self, name: &FileName, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let (file, size) = open_regular(&self.file_path(name))?;
        if offset > size {
            return Err(StoreError::BadOffset { expected: size });
        }
        let mut filled = 0usize;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            let at = offset.saturating_add(u64::try_from(filled).unwrap_or(u64::MAX));
            match file.read_at(rest, at) {
                Ok(0) => break,
                Ok(n) => filled = filled.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(filled)
    }

    fn crc_prefix(&self, name: &FileName, len: u64) -> Result<u32, StoreError> {
        let (mut file, size) = open_regular(&self.file_path(name))?;
        if len > size {
            return Err(StoreError::BadOffset { expected: size });
        }
        crc_of(&mut file, len)?.ok_or(StoreError::BadOffset { expected: size })
    }

    fn next_entry(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        let mut listing = self
            .listing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let names = match (after, listing.take()) {
            (Some(_), Some(names)) => names,
            // A listing starts (or finds no names read yet): read them now.
            _ => self.names()?,
        };
        let names = listing.insert(names);
        let from = after.map_or(0, |after| names.partition_point(|name| name <= after));
        for name in names.get(from..).unwrap_or_default() {
            // Gone, or no longer a regular file, since the names were read.
            if let Some(size) = regular_len(&self.file_path(name))? {
                return Ok(Some(Entry { name: *name, size }));
            }
        }
        // Done: the names are read again for the next listing, and meanwhile
        // commits and deletes keep nothing up to date.
        *listing = None;
        Ok(None)
    }

    fn version(&self, name: &FileName) -> Result<u64, StoreError> {
        regular_len(&self.file_path(name))?.ok_or(StoreError::NotFound)?;
        Ok(self.versions.get(name).copied().unwrap_or(0))
    }

    fn delete(&mut self, name: &FileName) -> Result<(), StoreError> {
        // Forgotten first: a file whose removal fails half way has changed anyway.
        self.versions.remove(name);
        self.partials.remove(name);
        self.crcs
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
        let mut found = false;
        for path in [self.file_path(name), self.partial_path(name)] {
            if let Some(len) = regular_len(&path)? {
                self.remove_counted(&path, len)?;
                found = true;
            }
        }
        if found {
            self.listed(name, false);
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    fn begin_upload(
        &mut self,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<Upload, StoreError> {
        if size > self.limits.max_file_bytes {
            return Err(StoreError::FileTooLarge {
                max: self.limits.max_file_bytes,
            });
        }
        let path = self.partial_path(name);
        let old = regular_len(&path)?;
        // A partial that would be resumed, and one that would but has another
        // name too, which is started over in its place: as a resume, it takes
        // no entry more.
        let in_place = resume && old.is_some_and(|held| held <= size);
        if let Some(held) = old.filter(|_| in_place) {
            self.check_room(size.saturating_sub(held))?;
            match open_partial(&path) {
                Ok((mut file, held)) => {
                    let crc = crc_of(&mut file, held)?.ok_or(StoreError::Inconsistent)?;
                    let upload = Upload::new(*name, size, held, crc).stamped(next_stamp());
                    self.partials.insert(*name, Current::of(&upload));
                    return Ok(upload);
                }
                // Another name, or not to be written: started over below.
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        // A new partial takes the old one's place: its entry and bytes count as
        // free. Both limits are checked before the old one goes, so a refused
        // begin keeps it; `Full` reports the room as the store stands.
        let (entries, used) = match old {
            Some(held) => (
                self.entries.saturating_sub(1),
                self.used.saturating_sub(held),
            ),
            None => (self.entries, self.used),
        };
        // The bytes first (`Storage::begin_upload`): `TooManyFiles` says the
        // bytes would fit.
        if used.saturating_add(size) > self.limits.max_total_bytes {
            return Err(StoreError::Full { free: self.free() });
        }
        if entries >= self.limits.max_files && !in_place {
            return Err(StoreError::TooManyFiles {
                max: self.limits.max_files,
            });
        }
        let emptied = match old {
            // Our own partial is emptied where it is: no new file has to be
            // made, which could fail (no room for one more, no descriptor left)
            // with the old bytes already gone.
            Some(held) if empty_writable(&path)? => {
                self.used = self.used.saturating_sub(held);
                true
            }
            // A partial with another name, or not to be written: only this
            // name goes.
            Some(held) => {
                self.remove_counted(&path, held)?;
                false
            }
            // Something else sits there (a planted symlink): unlink it, never
            // write through it.
            None => {
                if fs::symlink_metadata(&path).is_ok() {
                    fs::remove_file(&path).map_err(io_error)?;
                }
                false
            }
        };
        if !emptied {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_error)?;
            self.entries = self.entries.saturating_add(1);
        }
        let upload = Upload::new(*name, size, 0, 0).stamped(next_stamp());
        self.partials.insert(*name, Current::of(&upload));
        Ok(upload)
    }

    fn append(&mut self, upload: &mut Upload, data: &[u8]) -> Result<(), StoreError> {
        let more = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let path = self.partial_path(upload.name());
        // Not blocking on a FIFO someone left on the partial's name.
        let mut file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(io_error)?;
        let meta = file.metadata().map_err(io_error)?;
        if !writable(&meta) {
            return Err(StoreError::NotFound);
        }
        let held = meta.len();
        if held != upload.written() {
            return Err(StoreError::BadOffset { expected: held });
        }
        self.check_current(upload)?;
        if upload.written().saturating_add(more) > upload.size() {
            return Err(StoreError::TooMuchData {
                size: upload.size(),
            });
        }
        self.check_room(more)?;
        if let Err(e) = file.write_all(data) {
            // The partial keeps what it held before: cut off what did land. If
            // even that fails, count what is there, so the totals stay true, and
            // forget the partial: a resume reads its real length and CRC-32.
            if file.set_len(held).is_err() {
                let now = file.metadata().map_or(held, |meta| meta.len());
                self.used = self.used.saturating_add(now.saturating_sub(held));
                self.partials.remove(upload.name());
            }
            return Err(io_error(e));
        }
        self.used = self.used.saturating_add(more);
        upload.record(data);
        self.partials.insert(*upload.name(), Current::of(upload));
        Ok(())
    }

    fn commit(&mut self, upload: &Upload, crc: u32) -> Result<FileStat, StoreError> {
        let path = self.partial_path(upload.name());
        let (file, held) = open_partial(&path)?;
        self.check_current(upload)?;
        if held != upload.size() || upload.written() != held {
            return Err(StoreError::Incomplete {
                written: held,
                size: upload.size(),
            });
        }
        // Computed as the bytes were appended: no second pass over the file.
        let computed = upload.crc();
        if computed != crc {
            drop(file);
            self.partials.remove(upload.name());
            self.remove_counted(&path, held)?;
            return Err(StoreError::ChecksumMismatch { computed });
        }
        // Durable before visible: the rename must not publish unsynced bytes.
        file.sync_all().map_err(io_error)?;
        let modified = file.metadata().ok().and_then(|meta| meta.modified().ok());
        drop(file);
        let target = self.file_path(upload.name());
        let older = regular_len(&target)?;
        fs::rename(&path, &target).map_err(io_error)?;
        self.listed(upload.name(), true);
        self.partials.remove(upload.name());
        self.commits = self.commits.saturating_add(1);
        self.versions.insert(*upload.name(), self.commits);
        self.crcs
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                *upload.name(),
                KnownCrc {
                    len: held,
                    modified,
                    crc: computed,
                },
            );
        if let Some(older) = older {
            self.used = self.used.saturating_sub(older);
            self.entries = self.entries.saturating_sub(1);
        }
        // Persist the rename itself. The file is committed either way, so a
        // failure here is not the client's error.
        if let Ok(dir) = File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(FileStat {
            size: held,
            crc: computed,
        })
    }

    fn discard_upload(&mut self, name: &FileName) -> Result<(), StoreError> {
        self.partials.remove(name);
        let path = self.partial_path(name);
        match regular_len(&path)? {
            Some(held) => self.remove_counted(&path, held),
            None => Ok(()),
        }
    }

    /// Also the partials left on disk by an earlier run. Each call reads the
    /// directory: it is for a store out of room, not for every request.
    fn next_partial(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        let names = self.partial_names()?;
        let from = after.map_or(0, |after| names.partition_point(|name| name <= after));
        for name in names.get(from..).unwrap_or_default() {
            // Gone, or no longer a regular file, since the names were read.
            if let Some(size) = regular_len(&self.partial_path(name))? {
                return Ok(Some(Entry { name: *name, size }));
            }
        }
        Ok(None)
    }

    fn over_limits(&self) -> (u64, u64) {
        (
            self.used.saturating_sub(self.limits.max_total_bytes),
            self.entries.saturating_sub(self.limits.max_files),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, get, pattern, put};
    use super::*;
    use crate::wire::crc32::crc32;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    /// A fresh directory under the system's temp dir, removed when dropped (also
    /// when the test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "smolsock-dirstore-{}-{label}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn join(&self, part: &str) -> PathBuf {
            self.0.join(part)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn limits(total: u64, file: u64, files: u64) -> DirLimits {
        DirLimits {
            max_total_bytes: total,
            max_file_bytes: file,
            max_files: files,
        }
    }

    #[test]
    fn dir_store_keeps_the_storage_contract() {
        let parent = TempDir::new("contract");
        let n = std::cell::Cell::new(0);
        let open = |with: DirLimits| {
            n.set(n.get() + 1);
            let root = parent.join(&n.get().to_string());
            fs::create_dir(&root).unwrap();
            DirStore::open(&root, with).unwrap()
        };
        conformance::run_all(|| open(DirLimits::default()), || open(limits(100, 100, 4)));
    }

    #[test]
    fn a_partial_left_by_an_earlier_run_is_listed_and_can_be_discarded() {
        let dir = TempDir::new("old-partial");
        let mut store = DirStore::open(&dir.0, limits(100, 100, 4)).unwrap();
        let mut upload = store.begin_upload(&name("old.bin"), 50, false).unwrap();
        store.append(&mut upload, &pattern(30, 1)).unwrap();
        drop(store);
        // Not a partial: hidden files of other shapes, and a directory.
        fs::write(dir.join(".notes"), b"x").unwrap();
        fs::create_dir(dir.join(".dir.part")).unwrap();
        let mut store = DirStore::open(&dir.0, limits(100, 100, 4)).unwrap();
        let entry = store.next_partial(None).unwrap().unwrap();
        assert_eq!((entry.name, entry.size), (name("old.bin"), 30));
        assert_eq!(store.next_partial(Some(&entry.name)), Ok(None));
        store.discard_upload(&entry.name).unwrap();
        assert_eq!(store.next_partial(None), Ok(None));
        assert!(!dir.join(".old.bin.part").exists());
    }

    #[test]
    fn layout_on_disk_is_name_and_hidden_partial() {
        let dir = TempDir::new("layout");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        put(&mut store, "done.txt", b"done", 2);
        let mut upload = store.begin_upload(&name("half.bin"), 10, false).unwrap();
        store.append(&mut upload, b"12345").unwrap();
        assert_eq!(fs::read(dir.join("done.txt")).unwrap(), b"done");
        assert_eq!(fs::read(dir.join(".half.bin.part")).unwrap(), b"12345");
        assert!(!dir.join("half.bin").exists());
        // A restarted server finds the partial and the counts again.
        let reopened = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        assert_eq!((reopened.used_bytes(), reopened.entries()), (9, 2));
        let mut store = reopened;
        let resumed = store.begin_upload(&name("half.bin"), 10, true).unwrap();
        assert_eq!(resumed.resumed_from(), 5);
    }

    #[test]
    fn filling_to_the_total_limit_is_full() {
        let dir = TempDir::new("full");
        let mut store = DirStore::open(&dir.0, limits(100, 100, 10)).unwrap();
        put(&mut store, "a", &pattern(60, 1), 16);
        assert_eq!(
            store.begin_upload(&name("b"), 41, false),
            Err(StoreError::Full { free: 40 })
        );
        // Two uploads that each fitted when they began: the second to write runs out.
        let mut b = store.begin_upload(&name("b"), 30, false).unwrap();
        let mut c = store.begin_upload(&name("c"), 30, false).unwrap();
        store.append(&mut b, &pattern(30, 2)).unwrap();
        assert_eq!(
            store.append(&mut c, &pattern(30, 3)),
            Err(StoreError::Full { free: 10 })
        );
        assert_eq!(c.written(), 0);
        store.commit(&b, crc32(&pattern(30, 2))).unwrap();
        assert_eq!(store.used_bytes(), 90);
    }

    #[test]
    fn too_many_files_counts_partials() {
        let dir = TempDir::new("count");
        let mut store = DirStore::open(&dir.0, limits(1000, 1000, 2)).unwrap();
        put(&mut store, "a", b"1", 1);
        let _partial = store.begin_upload(&name("b"), 5, false).unwrap();
        assert_eq!(
            store.begin_upload(&name("c"), 1, false),
            Err(StoreError::TooManyFiles { max: 2 })
        );
        store.discard_upload(&name("b")).unwrap();
        put(&mut store, "c", b"3", 1);
        assert_eq!(store.entries(), 2);
    }

    #[test]
    fn a_refused_begin_leaves_the_partial_on_disk_as_it_was() {
        let dir = TempDir::new("refused");
        let mut store = DirStore::open(&dir.0, limits(100, 100, 4)).unwrap();
        put(&mut store, "a", &pattern(60, 1), 60);
        let mut partial = store.begin_upload(&name("p"), 30, false).unwrap();
        store.append(&mut partial, b"12345").unwrap();
        // 46 bytes in place of the partial's 5: one more than the store has.
        for resume in [false, true] {
            assert_eq!(
                store.begin_upload(&name("p"), 46, resume),
                Err(StoreError::Full { free: 35 })
            );
            assert_eq!((store.used_bytes(), store.entries()), (65, 2));
            assert_eq!(fs::read(dir.join(".p.part")).unwrap(), b"12345");
        }
        store.append(&mut partial, b"67890").unwrap();
        let started_over = store.begin_upload(&name("p"), 40, false).unwrap();
        assert_eq!(started_over.resumed_from(), 0);
        assert_eq!((store.used_bytes(), store.entries()), (60, 2));
    }

    /// A directory may hold more than its limits when the store opens: a begin
    /// that gives room back can still be refused, and keeps the partial then too.
    #[test]
    fn a_begin_refused_in_an_over_full_directory_keeps_the_partial() {
        let dir = TempDir::new("over-full");
        fs::write(dir.join("a"), pattern(150, 1)).unwrap();
        fs::write(dir.join(".p.part"), b"0123456789").unwrap();
        let mut store = DirStore::open(&dir.0, limits(100, 100, 4)).unwrap();
        assert_eq!(
            store.begin_upload(&name("p"), 5, true),
            Err(StoreError::Full { free: 0 })
        );
        let mut store = DirStore::open(&dir.0, limits(1000, 1000, 1)).unwrap();
        assert_eq!(
            store.begin_upload(&name("p"), 5, false),
            Err(StoreError::TooManyFiles { max: 1 })
        );
        assert_eq!((store.used_bytes(), store.entries()), (160, 2));
        assert_eq!(fs::read(dir.join(".p.part")).unwrap(), b"0123456789");
        store.delete(&name("a")).unwrap();
        let resumed = store.begin_upload(&name("p"), 20, true).unwrap();
        assert_eq!(
            (resumed.resumed_from(), resumed.resumed_crc()),
            (10, crc32(b"0123456789"))
        );
    }

    /// A directory holding `files` (names and lengths; `.NAME.part` for a
    /// partial) under `limits` is asked, through the shared store, for an upload
    /// of `size` bytes as `q` (resumed if `resume`): the answer, whether the
    /// partial `p` is still there, and how many partials gave way.
    fn give_way_in(
        files: &[(&str, usize)],
        limits: DirLimits,
        size: u64,
        resume: bool,
    ) -> (Result<(), StoreError>, bool, u64) {
        use crate::transfer::{SharedStore, UploadLease};
        let dir = TempDir::new("give-way");
        for &(file, len) in files {
            fs::write(dir.join(file), pattern(len, 1)).unwrap();
        }
        let owned = SharedStore::new(
            DirStore::open(&dir.0, limits).unwrap(),
            [UploadLease::EMPTY; 2],
        );
        let shared: &SharedStore<DirStore> = &owned;
        let answer = shared
            .with_store(|store| shared.begin_upload_in(store, &name("q"), size, resume))
            .unwrap();
        let kept = dir.join(".p.part").exists();
        (answer.map(drop), kept, shared.stats().partials_discarded)
    }

    /// Partials give way only if, together, they make the room the upload
    /// lacks: counting what a directory holds over its limits (it may open
    /// so), for bytes and entries both (a store refused for bytes first may be
    /// over its entries too), and the upload's own partial as an entry it
    /// frees (the upload takes its place).
    #[test]
    fn partials_give_way_only_if_together_they_make_the_room() {
        // Refused, and the partial kept.
        for (files, limits, size) in [
            // 150 B over a limit of 100: a 30 B partial cannot make room for 5.
            (&[("a", 150), (".p.part", 30)][..], limits(100, 100, 10), 5),
            // Three files over a limit of two: one partial cannot make an entry.
            (
                &[("a", 1), ("b", 1), ("c", 1), (".p.part", 30)],
                limits(1000, 1000, 2),
                1,
            ),
            // Over the entries, and refused for bytes first: the 45 B partial
            // would make the bytes, but not the entries.
            (
                &[("a", 50), ("b", 1), ("c", 1), (".p.part", 45)],
                limits(100, 100, 2),
                10,
            ),
        ] {
            let (answer, kept, discarded) = give_way_in(files, limits, size, false);
            assert!(answer.is_err(), "{files:?}: {answer:?}");
            assert_eq!((kept, discarded), (true, 0), "{files:?}: {answer:?}");
        }
        // Begun, the partial gone.
        for (files, limits, size, resume) in [
            // 10 B over, and a 30 B partial: a 5 B upload fits once it goes.
            (
                &[("a", 80), (".p.part", 30)][..],
                limits(100, 100, 10),
                5,
                false,
            ),
            // One file, `q`'s own partial and an idle one, a limit of two.
            (
                &[("a", 1), (".q.part", 1), (".p.part", 1)],
                limits(1000, 1000, 2),
                1,
                false,
            ),
            // Three entries over the limit, but a resume keeps its partial and
            // needs no entry: the bytes alone decide.
            (
                &[
                    ("a", 1),
                    ("b", 1),
                    ("c", 1),
                    (".p.part", 45),
                    (".q.part", 5),
                ],
                limits(60, 1000, 2),
                20,
                true,
            ),
        ] {
            let (answer, kept, discarded) = give_way_in(files, limits, size, resume);
            assert_eq!((answer, kept, discarded), (Ok(()), false, 1), "{files:?}");
        }
    }

    /// A FIFO left on a partial's name refuses the append at once, as every
    /// other open of the store does: it never waits for a reader. (Were the
    /// open to block, this test would hang; CI's time limit names it.)
    #[test]
    fn an_append_to_a_fifo_left_on_the_partials_name_fails_at_once() {
        let dir = TempDir::new("fifo");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let mut upload = store.begin_upload(&name("x"), 10, false).unwrap();
        let partial = dir.join(".x.part");
        fs::remove_file(&partial).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&partial)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(store.append(&mut upload, b"abc").is_err());
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused() {
        let dir = TempDir::new("large");
        let mut store = DirStore::open(&dir.0, limits(1000, 50, 10)).unwrap();
        assert_eq!(
            store.begin_upload(&name("big"), 51, false),
            Err(StoreError::FileTooLarge { max: 50 })
        );
        assert_eq!(store.entries(), 0);
        assert!(!dir.join(".big.part").exists());
    }

    #[test]
    fn open_refuses_a_missing_root_or_a_file() {
        let dir = TempDir::new("root");
        assert_eq!(
            DirStore::open(dir.join("absent"), DirLimits::default()).unwrap_err(),
            StoreError::NotFound
        );
        fs::write(dir.join("plain"), b"x").unwrap();
        assert_eq!(
            DirStore::open(dir.join("plain"), DirLimits::default()).unwrap_err(),
            StoreError::Io(io::ErrorKind::NotADirectory)
        );
    }

    #[test]
    fn symlinks_inside_the_root_are_never_followed() {
        let dir = TempDir::new("links");
        let outside = TempDir::new("outside");
        let secret = outside.join("secret");
        fs::write(&secret, b"do not leak").unwrap();
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        symlink(&secret, root.join("evil")).unwrap();
        symlink(&secret, root.join(".planted.part")).unwrap();
        symlink(&outside.0, root.join("outdir")).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        assert_eq!(store.entries(), 0, "links are not ours");

        assert_eq!(store.stat(&name("evil")), Err(StoreError::NotFound));
        assert_eq!(
            store.read(&name("evil"), 0, &mut [0u8; 16]),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.crc_prefix(&name("evil"), 0),
            Err(StoreError::NotFound)
        );
        assert_eq!(store.next_entry(None), Ok(None));
        assert_eq!(store.delete(&name("evil")), Err(StoreError::NotFound));

        // A resume over a planted partial link starts a fresh, real file.
        let mut upload = store.begin_upload(&name("planted"), 6, true).unwrap();
        assert_eq!(upload.resumed_from(), 0);
        store.append(&mut upload, b"mine!\n").unwrap();
        store.commit(&upload, crc32(b"mine!\n")).unwrap();

        // Uploading over the link replaces the link, not its target.
        put(&mut store, "evil", b"replaced", 3);
        assert_eq!(get(&store, "evil"), b"replaced");
        assert!(
            !fs::symlink_metadata(root.join("evil"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        assert_eq!(fs::read(&secret).unwrap(), b"do not leak");
        assert_eq!(fs::read_dir(&outside.0).unwrap().count(), 1);
    }

    #[test]
    fn a_hard_link_is_read_but_never_written_through() {
        let dir = TempDir::new("hard");
        let outside = dir.join("secret");
        fs::write(&outside, b"secret").unwrap();
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        fs::hard_link(&outside, root.join("linked")).unwrap();
        fs::hard_link(&outside, root.join(".x.part")).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        assert_eq!((store.entries(), store.used_bytes()), (2, 12));

        // A regular file to read, list and stat.
        assert_eq!(get(&store, "linked"), b"secret");
        assert_eq!(store.stat(&name("linked")).unwrap().crc, crc32(b"secret"));
        assert_eq!(
            store.next_entry(None),
            Ok(Some(Entry {
                name: name("linked"),
                size: 6
            }))
        );
        assert_eq!(
            store.next_partial(None),
            Ok(Some(Entry {
                name: name("x"),
                size: 6
            }))
        );

        // A resume over the linked partial starts a fresh file of its own: its
        // bytes are not taken for the upload's, nor written into.
        let mut upload = store.begin_upload(&name("x"), 8, true).unwrap();
        assert_eq!((upload.resumed_from(), upload.resumed_crc()), (0, 0));
        store.append(&mut upload, b"EVIL").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
        assert_eq!((store.entries(), store.used_bytes()), (2, 10));

        // A link put on the partial's name between two appends is refused, and
        // so is its commit.
        fs::remove_file(root.join(".x.part")).unwrap();
        fs::hard_link(&outside, root.join(".x.part")).unwrap();
        let appended = store.append(&mut upload, b"MORE");
        assert_eq!(appended, Err(StoreError::NotFound));
        assert_eq!(store.commit(&upload, 0), Err(StoreError::NotFound));
        assert_eq!(fs::read(&outside).unwrap(), b"secret");

        // Uploading over the link replaces the name, not the file behind it,
        // and so does a delete.
        put(&mut store, "linked", b"replaced", 3);
        assert_eq!(get(&store, "linked"), b"replaced");
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
        store.discard_upload(&name("x")).unwrap();
        fs::hard_link(&outside, root.join("again")).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        store.delete(&name("again")).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
        assert_eq!((store.entries(), store.used_bytes()), (1, 8));
    }

    /// A running copy of `sleep` at `path`, killed and waited for when
    /// dropped (also when the test fails).
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start(path: &Path) -> Self {
            use std::os::unix::fs::PermissionsExt;
            fs::copy("/bin/sleep", path).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
            // Another test's child may hold the copy open for a moment (a
            // fork between its open and its close): a few tries.
            for _ in 0..50 {
                match std::process::Command::new(path).arg("30").spawn() {
                    Ok(child) => return Self(child),
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => panic!("{}: {e}", path.display()),
                }
            }
            panic!("the copy of sleep would not start");
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A partial the system will not open for writing (a running program's)
    /// is started over, resumed or not, whether it has one name or two.
    #[test]
    fn a_partial_that_is_a_running_program_is_started_over() {
        let dir = TempDir::new("busy");
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        // One name: the link count lets it through, the open for writing not.
        let running = Sleeper::start(&root.join(".x.part"));
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        let held = fs::metadata(root.join(".x.part")).unwrap().len();
        let resumed = store.begin_upload(&name("x"), held + 6, true);
        drop(running);
        let mut upload = resumed.unwrap();
        assert_eq!(upload.resumed_from(), 0);
        store.append(&mut upload, b"fresh\n").unwrap();
        // Two names: the other one outside the root.
        let program = dir.join("sleeper");
        let running = Sleeper::start(&program);
        fs::hard_link(&program, root.join(".y.part")).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        let started = store.begin_upload(&name("y"), 6, false);
        drop(running);
        assert_eq!(started.map(|s| s.written()), Ok(0));
        assert_eq!(fs::read(&program).unwrap(), fs::read("/bin/sleep").unwrap());
    }

    /// A resume in a store over its entry limit, whose partial has another
    /// name, starts over in the partial's place, as the resume would have
    /// gone on: it takes no entry more.
    #[test]
    fn a_linked_partial_is_started_over_in_its_place() {
        let dir = TempDir::new("linked-over-full");
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a"), b"a").unwrap();
        fs::write(root.join("b"), b"b").unwrap();
        fs::write(dir.join("copy"), b"12345").unwrap();
        fs::hard_link(dir.join("copy"), root.join(".x.part")).unwrap();
        let mut store = DirStore::open(&root, limits(1000, 1000, 2)).unwrap();
        assert_eq!(store.entries(), 3);
        let mut upload = store.begin_upload(&name("x"), 6, true).unwrap();
        assert_eq!(upload.resumed_from(), 0);
        assert_eq!((store.entries(), store.used_bytes()), (3, 2));
        store.append(&mut upload, b"mine!\n").unwrap();
        store.commit(&upload, crc32(b"mine!\n")).unwrap();
        assert_eq!(get(&store, "x"), b"mine!\n");
        assert_eq!(fs::read(dir.join("copy")).unwrap(), b"12345");
        // Without resume it is a new partial's begin, which an over-full
        // store refuses.
        fs::hard_link(dir.join("copy"), root.join(".y.part")).unwrap();
        let mut store = DirStore::open(&root, limits(1000, 1000, 2)).unwrap();
        assert_eq!(
            store.begin_upload(&name("y"), 6, false),
            Err(StoreError::TooManyFiles { max: 2 })
        );
    }

    /// The byte and entry counts as a store opened on `root` now finds them.
    fn counted_at_open(root: &Path) -> (u64, u64) {
        let store = DirStore::open(root, DirLimits::default()).unwrap();
        (store.used_bytes(), store.entries())
    }

    #[test]
    fn the_counts_stay_true_when_a_files_links_change_behind_the_store() {
        let dir = TempDir::new("links-change");
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        let counts = |store: &DirStore| (store.used_bytes(), store.entries());

        // A backup links a stored file elsewhere; an upload then replaces it.
        put(&mut store, "a", &[1; 40], 16);
        fs::hard_link(root.join("a"), dir.join("backup-a")).unwrap();
        put(&mut store, "a", &[2; 40], 16);
        assert_eq!(counts(&store), counted_at_open(&root));

        // A file's other name goes: the store deletes it as it counted it.
        fs::hard_link(root.join("a"), dir.join("other")).unwrap();
        let mut store = DirStore::open(&root, DirLimits::default()).unwrap();
        fs::remove_file(dir.join("other")).unwrap();
        store.delete(&name("a")).unwrap();
        assert_eq!(counts(&store), counted_at_open(&root));

        // A partial linked elsewhere, then started over.
        let mut upload = store.begin_upload(&name("x"), 50, false).unwrap();
        store.append(&mut upload, &[3; 30]).unwrap();
        fs::hard_link(root.join(".x.part"), dir.join("copy")).unwrap();
        store.begin_upload(&name("x"), 10, false).unwrap();
        assert_eq!(counts(&store), counted_at_open(&root));
        assert_eq!(counts(&store), (0, 1));
    }

    #[test]
    fn an_upload_from_before_the_store_was_opened_again_writes_nothing() {
        let dir = TempDir::new("reopened");
        let mut first = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let mut stale = first.begin_upload(&name("g"), 6, false).unwrap();
        first.append(&mut stale, b"abc").unwrap();
        drop(first);
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let mut resumed = store.begin_upload(&name("g"), 6, true).unwrap();
        assert_eq!(store.append(&mut stale, b"XYZ"), Err(StoreError::NotFound));
        store.append(&mut resumed, b"def").unwrap();
        store.commit(&resumed, crc32(b"abcdef")).unwrap();
        assert_eq!(get(&store, "g"), b"abcdef");
    }

    #[test]
    fn a_stored_files_crc_is_kept_and_read_again_only_when_the_file_changed() {
        let dir = TempDir::new("crc-kept");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        put(&mut store, "f", b"abcd", 1);
        let path = dir.join("f");
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        // Bytes changed behind the store's back, length and time as they were: the
        // CRC kept at commit is what stat says, so stat did not read the file.
        fs::write(&path, b"wxyz").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(store.stat(&name("f")).unwrap().crc, crc32(b"abcd"));
        // A change that shows (another length, or another time): read again, once.
        fs::write(&path, b"wxyz!").unwrap();
        assert_eq!(store.stat(&name("f")).unwrap().crc, crc32(b"wxyz!"));
        // A file that was there before the store opened: read at its first stat.
        fs::write(dir.join("old"), b"old bytes").unwrap();
        assert_eq!(store.stat(&name("old")).unwrap().crc, crc32(b"old bytes"));
        // Deleted and made again with the same length: its own CRC.
        store.delete(&name("f")).unwrap();
        put(&mut store, "f", b"ABCDE", 1);
        assert_eq!(store.stat(&name("f")).unwrap().crc, crc32(b"ABCDE"));
    }

    /// Every entry a listing from the start gives, calling `between` with each
    /// name before asking for the next.
    fn list_with(
        store: &mut DirStore,
        mut between: impl FnMut(&mut DirStore, &str),
    ) -> Vec<String> {
        let mut listed = Vec::new();
        let mut after = None;
        while let Some(entry) = store.next_entry(after.as_ref()).unwrap() {
            listed.push(entry.name.as_str().to_owned());
            between(store, entry.name.as_str());
            after = Some(entry.name);
        }
        listed
    }

    #[test]
    fn a_listing_reads_the_directory_once() {
        let dir = TempDir::new("list-once");
        for i in 0..300 {
            fs::write(dir.join(&format!("f{i:03}")), b"x").unwrap();
        }
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let reads = |store: &DirStore| store.name_reads.load(Ordering::Relaxed);
        assert_eq!(list_with(&mut store, |_, _| {}).len(), 300);
        assert_eq!(reads(&store), 1, "one read of 300 names, not one per entry");
        assert!(
            store.listing.lock().unwrap().is_none(),
            "the names are dropped once the listing is done"
        );
        assert_eq!(list_with(&mut store, |_, _| {}).len(), 300);
        assert_eq!(reads(&store), 2, "each listing reads them again");
    }

    #[test]
    fn a_listing_sees_the_store_s_own_commits_and_deletes_as_it_goes() {
        let dir = TempDir::new("list-live");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        for file in ["b", "d", "f"] {
            put(&mut store, file, b"x", 1);
        }
        // At "b": "c" is committed (after it, so listed) and "a" (before it, so
        // not); at "d", "f" is deleted and "e" committed.
        let listed = list_with(&mut store, |store, at| match at {
            "b" => {
                put(store, "c", b"cc", 1);
                put(store, "a", b"a", 1);
            }
            "d" => {
                store.delete(&name("f")).unwrap();
                put(store, "e", b"e", 1);
            }
            _ => {}
        });
        assert_eq!(listed, ["b", "c", "d", "e"]);
        assert_eq!(list_with(&mut store, |_, _| {}), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_listing_skips_what_went_behind_the_store_s_back() {
        let dir = TempDir::new("list-gone");
        for file in ["a", "b", "c"] {
            fs::write(dir.join(file), b"x").unwrap();
        }
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        // At "a", "b" is removed and "c" replaced by a directory, by someone
        // else: neither is listed. A file that appeared meanwhile may be or
        // not (the contract: a file that stays put is listed exactly once).
        let listed = list_with(&mut store, |_, at| {
            if at == "a" {
                fs::remove_file(dir.join("b")).unwrap();
                fs::remove_file(dir.join("c")).unwrap();
                fs::create_dir(dir.join("c")).unwrap();
                fs::write(dir.join("d"), b"x").unwrap();
            }
        });
        assert!(listed == ["a"] || listed == ["a", "d"], "{listed:?}");
        assert_eq!(list_with(&mut store, |_, _| {}), ["a", "d"]);
    }

    #[test]
    fn foreign_entries_are_not_listed_or_counted() {
        let dir = TempDir::new("foreign");
        fs::create_dir(dir.join("subdir")).unwrap();
        fs::write(dir.join(".hidden"), b"hidden").unwrap();
        fs::write(dir.join("ok"), b"ok").unwrap();
        let store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        assert_eq!((store.used_bytes(), store.entries()), (2, 1));
        assert_eq!(
            store.next_entry(None),
            Ok(Some(Entry {
                name: name("ok"),
                size: 2
            }))
        );
        assert_eq!(store.next_entry(Some(&name("ok"))), Ok(None));
    }

    #[test]
    fn a_name_that_escapes_cannot_be_made() {
        for bad in [
            "../x",
            "..",
            ".",
            "a/b",
            "/etc/passwd",
            "x\\..\\y",
            "nul\0",
            ".x.part",
        ] {
            assert!(FileName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_checksum_leaves_no_file_on_disk() {
        let dir = TempDir::new("crc");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let mut upload = store.begin_upload(&name("x"), 4, false).unwrap();
        store.append(&mut upload, b"abcd").unwrap();
        assert_eq!(
            store.commit(&upload, 0),
            Err(StoreError::ChecksumMismatch {
                computed: crc32(b"abcd")
            })
        );
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
        assert_eq!((store.used_bytes(), store.entries()), (0, 0));
    }

    /// Sets this process's soft limit on `resource` to `value` (within the
    /// hard one); gives back the soft limit it had. (A macro: the resource's
    /// type is not the same in every libc.)
    macro_rules! set_limit {
        ($resource:expr, $value:expr) => {{
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `limit` is a valid `rlimit` for the call to fill and to read.
            assert_eq!(unsafe { libc::getrlimit($resource, &mut limit) }, 0);
            let before = limit.rlim_cur;
            limit.rlim_cur = libc::rlim_t::min($value, limit.rlim_max);
            // SAFETY: as above; the soft limit stays within the hard one.
            assert_eq!(unsafe { libc::setrlimit($resource, &limit) }, 0);
            before
        }};
    }

    /// Sets this process's soft limit on the size of a file it writes.
    #[allow(unsafe_code)]
    fn limit_file_size(bytes: libc::rlim_t) {
        set_limit!(libc::RLIMIT_FSIZE, bytes);
    }

    /// Sets this process's soft limit on its open files; gives back the one it had.
    #[allow(unsafe_code)]
    fn limit_open_files(files: libc::rlim_t) -> libc::rlim_t {
        set_limit!(libc::RLIMIT_NOFILE, files)
    }

    /// Runs this module's test `name` alone in a child process, and checks that
    /// it passed: `true` here, and `false` in the child, which goes on with the
    /// test's body. For tests that set limits, which hold for a whole process.
    fn ran_in_child(name: &str) -> bool {
        const CHILD: &str = "SMOLSOCK_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return false;
        }
        let test = format!("store::dir::tests::{name}");
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "the child process failed:\n{said}");
        assert!(said.contains("1 passed"), "the child ran no test:\n{said}");
        true
    }

    /// A begin that starts a partial over, and cannot open a file (no
    /// descriptor left), leaves the partial as it was.
    #[test]
    fn a_begin_that_cannot_open_a_file_keeps_the_partial() {
        if ran_in_child("a_begin_that_cannot_open_a_file_keeps_the_partial") {
            return;
        }
        let dir = TempDir::new("no-fd");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let mut upload = store.begin_upload(&name("f"), 6, false).unwrap();
        store.append(&mut upload, b"abc").unwrap();
        // The lowest free descriptor (the file is closed at once) as the
        // limit: no file can be opened.
        let lowest = File::open("/dev/null")
            .map(|file| file.as_raw_fd())
            .unwrap();
        let before = limit_open_files(libc::rlim_t::try_from(lowest).unwrap());
        let refused = store.begin_upload(&name("f"), 6, false);
        limit_open_files(before);
        assert!(matches!(refused, Err(StoreError::Io(_))), "{refused:?}");
        let resumed = store.begin_upload(&name("f"), 6, true).unwrap();
        assert_eq!((resumed.written(), store.used_bytes()), (3, 3));
        // Started over for good: the same file, emptied.
        let mut fresh = store.begin_upload(&name("f"), 6, false).unwrap();
        assert_eq!((fresh.written(), store.used_bytes()), (0, 0));
        store.append(&mut fresh, b"xyz123").unwrap();
        store.commit(&fresh, crc32(b"xyz123")).unwrap();
        assert_eq!(get(&store, "f"), b"xyz123");
        assert_eq!((store.used_bytes(), store.entries()), (6, 1));
    }

    /// A write the system stops part-way leaves the partial as it was: the same
    /// upload goes on once writes succeed again.
    #[test]
    #[allow(unsafe_code)]
    fn a_failed_write_leaves_the_partial_as_it_was() {
        // A file size limit holds for the whole process: the test runs itself
        // alone in a child process, which sets one.
        if ran_in_child("a_failed_write_leaves_the_partial_as_it_was") {
            return;
        }
        // SAFETY: ignoring SIGXFSZ makes a write past the limit fail with EFBIG
        // instead of ending the process; nothing else in it handles the signal.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let dir = TempDir::new("limit");
        let mut store = DirStore::open(&dir.0, DirLimits::default()).unwrap();
        let bytes = pattern(10_000, 3);
        let mut upload = store.begin_upload(&name("f"), 10_000, false).unwrap();
        store.append(&mut upload, &bytes[..4000]).unwrap();
        // The next write stops at 6000 bytes: 2000 of its 5000 land.
        limit_file_size(6000);
        let refused = store.append(&mut upload, &bytes[4000..9000]);
        limit_file_size(libc::RLIM_INFINITY);
        assert!(matches!(refused, Err(StoreError::Io(_))), "{refused:?}");
        assert_eq!(upload.written(), 4000);
        let partial = dir.join(".f.part");
        assert_eq!(fs::metadata(&partial).unwrap().len(), 4000);
        assert_eq!(store.used_bytes(), 4000);
        store.append(&mut upload, &bytes[4000..]).unwrap();
        store.commit(&upload, crc32(&bytes)).unwrap();
        assert_eq!(get(&store, "f"), bytes);
    }
}
