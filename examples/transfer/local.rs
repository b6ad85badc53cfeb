//! The CLI's local files, as the crate's client sees them: a [`FileSource`] over a
//! file to upload, and a [`FileSink`] that downloads into `FILE.part` and gives it
//! its real name once the CRC-32 matched. Neither knows the protocol; the client
//! reads and writes them at offsets, one frame at a time.
//!
//! Both keep the last I/O error they met with its path, since the client's
//! [`LocalError`] only says which side failed: the CLI shows the path and the
//! operating system's reason.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use smolsock::store::FileStat;
use smolsock::transfer::{FileSink, FileSource, LocalError};
use smolsock::wire::crc32::Crc32;

/// An I/O error with the path it happened on.
#[derive(Debug)]
pub struct PathError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
    move |error| at_path(path, error)
}

fn at_path(path: &Path, error: io::Error) -> PathError {
    PathError {
        path: path.to_owned(),
        error,
    }
}

/// How far apart [`SourceFile::checksum`] keeps the CRC-32 of the file's first
/// bytes: a resumed upload then reads at most this much of its prefix again
/// on the open connection (a fraction of a second), however large the file.
pub const CHECKPOINT_EVERY: u64 = 16 << 20;

/// A file to upload, read at offsets. Its size is taken when it is opened.
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// `(at, CRC-32 of bytes 0..at)` every [`CHECKPOINT_EVERY`] bytes, from
    /// [`checksum`](Self::checksum).
    checkpoints: Vec<(u64, u32)>,
    error: Option<PathError>,
}

impl SourceFile {
    /// Opens `path`, a regular file.
    pub fn open(path: &Path) -> Result<Self, PathError> {
        let file = File::open(path).map_err(at(path))?;
        let meta = file.metadata().map_err(at(path))?;
        if !meta.is_file() {
            return Err(at(path)(io::Error::other("not a regular file")));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            size: meta.len(),
            checkpoints: Vec::new(),
            error: None,
        })
    }

    /// Reads the whole file for its CRC-32, telling `progress` how far it got,
    /// and keeps checkpoints on the way for a resume.
    ///
    /// Done before connecting: the client would otherwise hash the file on the
    /// open connection, sending nothing meanwhile, and a server resets a
    /// connection idle for its idle timeout (60 s by default), so a file too
    /// large to read in that time could never be uploaded.
    pub fn checksum(&mut self, mut progress: impl FnMut(u64, u64)) -> Result<u32, PathError> {
        let mut crc = Crc32::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        self.checkpoints.clear();
        while at < self.size {
            // Up to the next checkpoint at most, so each falls on a read's end.
            let to_checkpoint = CHECKPOINT_EVERY - at % CHECKPOINT_EVERY;
            let want = (self.size - at).min(to_checkpoint).min(buf.len() as u64) as usize;
            let n = self.read(at, &mut buf[..want]).map_err(|_| {
                self.error
                    .take()
                    .unwrap_or_else(|| at_path(&self.path, io::ErrorKind::Other.into()))
            })?;
            if n == 0 {
                let short = io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than its size");
                return Err(at_path(&self.path, short));
            }
            crc.update(&buf[..n]);
            at += n as u64;
            if at.is_multiple_of(CHECKPOINT_EVERY) {
                self.checkpoints.push((at, crc.finish()));
            }
            progress(at, self.size);
        }
        Ok(crc.finish())
    }

    /// The I/O error behind the last [`LocalError`], if any.
    pub fn take_error(&mut self) -> Option<PathError> {
        self.error.take()
    }
}

impl FileSource for SourceFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(at(&self.path)(e));
                    return Err(LocalError::Read);
                }
            }
        }
        Ok(filled)
    }

    fn crc_checkpoint(&mut self, len: u64) -> Option<(u64, u32)> {
        self.checkpoints
            .iter()
            .rev()
            .find(|(at, _)| *at <= len)
            .copied()
    }
}

/// Where a download is kept until its checksum matched: `FILE.part`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Where `get NAME [-o OUTPUT]` saves: NAME in the current directory, OUTPUT, or
/// NAME inside OUTPUT when that is a directory.
pub fn download_path(name: &str, output: Option<PathBuf>) -> PathBuf {
    match output {
        Some(dir) if dir.is_dir() => dir.join(name),
        Some(path) => path,
        None => PathBuf::from(name),
    }
}

/// Whether something (a file, a directory, even a dangling link) is at `path`.
fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// A download may write `path` only if nothing is there, or with `--force`.
pub fn check_target(path: &Path, force: bool) -> Result<(), String> {
    if force || !occupied(path) {
        return Ok(());
    }
    Err(format!(
        "{} already exists; pass --force to overwrite it",
        path.display()
    ))
}

/// A download into `FILE.part`, renamed to `FILE` once complete and checked.
///
/// The `.part` file is created when the first byte arrives (or, for an empty
/// file, when it is complete): a GET the server refuses (`NotFound`, say) leaves
/// nothing behind. A resumed download continues an existing `.part`; the client
/// asks for it through [`held`](FileSink::held) only with `--resume`. A `.part`
/// that is a symbolic link is neither followed nor replaced: the download
/// fails, whatever the link points to untouched. Nor is a `.part` that another
/// file replaced during the download renamed: only the file written is.
#[derive(Debug)]
pub struct PartFile {
    target: PathBuf,
    part: PathBuf,
    /// Whether `complete` may replace a file that appeared at `target` meanwhile.
    overwrite: bool,
    /// The open `.part`, once it exists for this download.
    file: Option<File>,
    /// What [`prepare_resume`](Self::prepare_resume) found, for `held`.
    prepared: Option<Result<(u64, u32), LocalError>>,
    error: Option<PathError>,
}

impl PartFile {
    /// A download that will be saved as `target`.
    pub fn new(target: &Path, overwrite: bool) -> Self {
        Self {
            target: target.to_owned(),
            part: partial_path(target),
            overwrite,
            file: None,
            prepared: None,
            error: None,
        }
    }

    /// Reads what an earlier attempt left in the `.part` now, before
    /// connecting, for the client's [`held`](FileSink::held) to answer at
    /// once: it asks on the open connection, which sends nothing meanwhile,
    /// and a server resets a connection idle for its idle timeout (60 s by
    /// default), which reading a large `.part` could outlast.
    pub fn prepare_resume(&mut self) {
        self.prepared = Some(self.read_held());
    }

    /// The `.part`'s length and CRC-32, the file kept open for the rest.
    fn read_held(&mut self) -> Result<(u64, u32), LocalError> {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.part);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(self.part_error(e, LocalError::Read)),
        };
        match length_and_crc(&file) {
            Ok(held) => {
                self.file = Some(file);
                Ok(held)
            }
            Err(e) => Err(self.part_error(e, LocalError::Read)),
        }
    }

    /// The I/O error behind the last [`LocalError`], if any.
    pub fn take_error(&mut self) -> Option<PathError> {
        self.error.take()
    }

    /// After a failed download: an empty `.part` is no use for a resume, so it
    /// goes (a download the server refused, or one whose checksum failed); one
    /// with bytes in stays for `get --resume`.
    pub fn discard_if_empty(&mut self) {
        self.file = None;
        if fs::symlink_metadata(&self.part).is_ok_and(|meta| meta.is_file() && meta.len() == 0) {
            let _ = fs::remove_file(&self.part);
        }
    }

    /// Keeps `e` (on the `.part`) for the message; gives `kind` to the client.
    fn part_error(&mut self, e: io::Error, kind: LocalError) -> LocalError {
        self.error = Some(at(&self.part)(e));
        kind
    }

    /// Keeps `e` (on the real name) for the message; gives `kind` to the client.
    fn target_error(&mut self, e: io::Error, kind: LocalError) -> LocalError {
        self.error = Some(at(&self.target)(e));
        kind
    }

    /// The `.part`, created empty if it is not open yet.
    fn open_fresh(&mut self) -> Result<&File, LocalError> {
        if self.file.is_none() {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.part);
            match opened {
                Ok(file) => self.file = Some(file),
                Err(e) => return Err(self.part_error(e, LocalError::Write)),
            }
        }
        self.file.as_ref().ok_or(LocalError::Write)
    }
}

/// The length and CRC-32 of what `file` holds.
fn length_and_crc(mut file: &File) -> io::Result<(u64, u32)> {
    let mut crc = Crc32::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok((len, crc.finish())),
            Ok(n) => {
                crc.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl FileSink for PartFile {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        match self.prepared.take() {
            Some(held) => held,
            None => self.read_held(),
        }
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        // Nothing on disk yet: the first write creates the .part empty anyway.
        let Some(file) = &self.file else {
            return Ok(());
        };
        file.set_len(0)
            .map_err(|e| self.part_error(e, LocalError::Write))
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        let file = self.open_fresh()?;
        let written = file.write_all_at(bytes, offset);
        written.map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::StorageFull {
                LocalError::NoSpace
            } else {
                LocalError::Write
            };
            self.part_error(e, kind)
        })
    }

    fn complete(&mut self, _stat: FileStat) -> Result<(), LocalError> {
        let file = self.open_fresh()?;
        let written = file.sync_all().and_then(|()| file.metadata());
        let written = written.map_err(|e| self.part_error(e, LocalError::Write))?;
        self.file = None;
        // The name is renamed, not the file written: only if it still is ours.
        let ours = fs::symlink_metadata(&self.part).is_ok_and(|there| {
            there.is_file() && there.dev() == written.dev() && there.ino() == written.ino()
        });
        if !ours {
            let e = io::Error::other("replaced during the download, which is lost");
            return Err(self.part_error(e, LocalError::Write));
        }
        if !self.overwrite && occupied(&self.target) {
            // Someone made the file while it downloaded: keep ours aside.
            let e = io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "appeared during the download, which is kept in {}; \
                     get --resume --force replaces it",
                    self.part.display()
                ),
            );
            return Err(self.target_error(e, LocalError::Write));
        }
        fs::rename(&self.part, &self.target).map_err(|e| self.target_error(e, LocalError::Write))
    }
}
