//! The CLI's tests: its helpers without a network, then every command end to end
//! against smolsock's `TransferServer` on 127.0.0.1 (the blocking adapter in a
//! thread, over a `DirStore` in a scratch directory). Every wait is bounded by a
//! socket timeout or the client's own; nothing measures time.

use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use smolsock::blocking::End;
use smolsock::store::{DirLimits, DirStore};
use smolsock::transfer::{
    FileSink, FileSource, LocalError, SharedStore, TransferServer, TransferStats, UploadLease,
};
use smolsock::wire::crc32::{Crc32, crc32};

use super::local::{CHECKPOINT_EVERY, partial_path};
use super::progress::{Fitted, SPARE_COLUMNS, TermLike, fit_prefix, whole_percent};
use super::*;

// ---------------------------------------------------------------------------
// Helpers

/// A directory of its own under the system's temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "smolsock-transfer-cli-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes that are not all alike, so that a misplaced chunk shows.
fn file_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A terminal that keeps what is drawn on it.
#[derive(Debug)]
struct Recorder {
    width: u16,
    text: Mutex<String>,
}

impl Recorder {
    fn new(width: u16) -> Arc<Self> {
        Arc::new(Self {
            width,
            text: Mutex::new(String::new()),
        })
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Every stretch of text between carriage returns and newlines: what one
    /// redraw put on one line.
    fn lines(&self) -> Vec<String> {
        self.text()
            .split(['\r', '\n'])
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn push(&self, s: &str) {
        self.text.lock().unwrap().push_str(s);
    }
}

impl TermLike for Recorder {
    fn width(&self) -> u16 {
        self.width
    }

    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.push(s);
        self.push("\n");
        Ok(())
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.push(s);
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.push("\r");
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

fn columns(line: &str) -> usize {
    line.chars().count()
}

// ---------------------------------------------------------------------------
// Without a network

#[test]
fn percent_is_truncated_like_the_primer() {
    assert_eq!(whole_percent(0, 0), 100);
    assert_eq!(whole_percent(999, 1000), 99);
    assert_eq!(whole_percent(1000, 1000), 100);
    assert_eq!(whole_percent(1, 3), 33);
    assert_eq!(whole_percent(u64::MAX - 1, u64::MAX), 99);
}

#[test]
fn counts_are_plural_except_for_one() {
    assert_eq!(count(0, "file"), "0 files");
    assert_eq!(count(1, "file"), "1 file");
    assert_eq!(count(2, "file"), "2 files");
    assert_eq!(count(11, "file"), "11 files");
}

#[test]
fn every_command_and_flag_parses() {
    let parse = |argv: &[&str]| Args::try_parse_from(argv).map(|args| args.command);
    assert!(matches!(
        parse(&["transfer", "put", "a.bin", "--name", "b.bin", "--resume"]),
        Ok(Command::Put { resume: true, name: Some(n), .. }) if n == "b.bin"
    ));
    assert!(matches!(
        parse(&["transfer", "get", "a.bin", "-o", "x", "--resume", "--force"]),
        Ok(Command::Get {
            resume: true,
            force: true,
            output: Some(_),
            ..
        })
    ));
    assert!(matches!(
        parse(&["transfer", "get", "a.bin"]),
        Ok(Command::Get {
            resume: false,
            force: false,
            output: None,
            ..
        })
    ));
    assert!(matches!(
        parse(&["transfer", "ls"]),
        Ok(Command::Ls {
            max_entries: 65_536
        })
    ));
    assert!(matches!(
        parse(&["transfer", "stat", "a"]),
        Ok(Command::Stat { .. })
    ));
    assert!(matches!(
        parse(&["transfer", "rm", "a"]),
        Ok(Command::Rm { .. })
    ));
    let args = Args::try_parse_from(["transfer", "ls", "--to", "10.0.0.1:2121"]).unwrap();
    assert_eq!(args.to, "10.0.0.1:2121");
}

#[test]
fn a_download_goes_to_name_output_or_name_inside_an_output_directory() {
    let dir = ScratchDir::new("paths");
    assert_eq!(download_path("a.bin", None), PathBuf::from("a.bin"));
    let file = dir.join("copy.bin");
    assert_eq!(download_path("a.bin", Some(file.clone())), file);
    assert_eq!(
        download_path("a.bin", Some(dir.0.clone())),
        dir.join("a.bin")
    );
    assert_eq!(partial_path(&file), dir.join("copy.bin.part"));
}

#[test]
fn an_existing_file_is_not_overwritten_without_force() {
    let dir = ScratchDir::new("target");
    let path = dir.join("a.bin");
    assert_eq!(check_target(&path, false), Ok(()));
    std::fs::write(&path, b"mine").unwrap();
    let refused = check_target(&path, false).unwrap_err();
    assert!(
        refused.contains("already exists") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(check_target(&path, true), Ok(()));
    // A dangling link is something too: following it would write elsewhere.
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink(dir.join("nowhere"), &link).unwrap();
    assert!(check_target(&link, false).is_err());
}

#[test]
fn a_refused_download_leaves_no_part_file() {
    let dir = ScratchDir::new("refused");
    let target = dir.join("nosuch.bin");
    // As the client does: restart before GET (held with --resume), then ERROR.
    let mut sink = PartFile::new(&target, false);
    sink.restart().unwrap();
    sink.discard_if_empty();
    let mut resumed = PartFile::new(&target, false);
    assert_eq!(resumed.held(), Ok((0, 0)));
    resumed.discard_if_empty();
    assert!(!partial_path(&target).exists());
    assert!(!target.exists());
}

#[test]
fn a_part_file_is_made_by_the_first_byte_resumed_and_renamed_when_complete() {
    let dir = ScratchDir::new("part");
    let target = dir.join("a.bin");
    let part = partial_path(&target);
    let mut sink = PartFile::new(&target, false);
    sink.restart().unwrap();
    assert!(!part.exists());
    sink.write(0, b"hello, ").unwrap();
    assert_eq!(std::fs::read(&part).unwrap(), b"hello, ");
    drop(sink);

    // A later attempt resumes from what the first left.
    let mut sink = PartFile::new(&target, false);
    assert_eq!(sink.held(), Ok((7, crc32(b"hello, "))));
    sink.write(7, b"world\n").unwrap();
    let stat = FileStat {
        size: 13,
        crc: crc32(b"hello, world\n"),
    };
    sink.complete(stat).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"hello, world\n");
    assert!(!part.exists());
}

#[test]
fn a_failed_checksum_leaves_no_part_file_but_a_cut_download_keeps_its_bytes() {
    let dir = ScratchDir::new("mismatch");
    let target = dir.join("a.bin");
    let part = partial_path(&target);
    let mut sink = PartFile::new(&target, false);
    sink.write(0, b"corrupt").unwrap();
    // The client forgets a download whose CRC-32 failed.
    sink.restart().unwrap();
    sink.discard_if_empty();
    assert!(!part.exists());

    let mut sink = PartFile::new(&target, false);
    sink.write(0, b"half").unwrap();
    sink.discard_if_empty();
    assert_eq!(
        std::fs::read(&part).unwrap(),
        b"half",
        "kept for get --resume"
    );
}

#[test]
fn an_empty_file_completes_without_a_byte() {
    let dir = ScratchDir::new("empty");
    let target = dir.join("empty");
    let mut sink = PartFile::new(&target, false);
    sink.restart().unwrap();
    sink.complete(FileStat { size: 0, crc: 0 }).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"");
    assert!(!partial_path(&target).exists());
}

#[test]
fn a_file_that_appears_during_the_download_is_kept_unless_forced() {
    let dir = ScratchDir::new("appeared");
    let target = dir.join("a.bin");
    let stat = FileStat {
        size: 3,
        crc: crc32(b"new"),
    };
    let mut sink = PartFile::new(&target, false);
    sink.write(0, b"new").unwrap();
    std::fs::write(&target, b"theirs").unwrap();
    assert_eq!(sink.complete(stat), Err(LocalError::Write));
    let error = sink.take_error().unwrap().to_string();
    assert!(error.contains("a.bin.part"), "{error}");
    assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
    assert_eq!(std::fs::read(partial_path(&target)).unwrap(), b"new");

    let mut forced = PartFile::new(&target, true);
    assert_eq!(forced.held(), Ok((3, crc32(b"new"))));
    forced.complete(stat).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
}

#[test]
fn a_prepared_resume_is_what_held_answers_on_the_open_connection() {
    let dir = ScratchDir::new("prepared");
    let target = dir.join("a.bin");
    std::fs::write(partial_path(&target), b"hello, ").unwrap();
    let mut sink = PartFile::new(&target, false);
    sink.prepare_resume();
    // Read before connecting: what happens to the file after is not read again.
    std::fs::write(partial_path(&target), b"HELLO, world").unwrap();
    assert_eq!(sink.held(), Ok((7, crc32(b"hello, "))));
    // Once only: a second ask reads the file as it is.
    assert_eq!(sink.held(), Ok((12, crc32(b"HELLO, world"))));
}

#[test]
fn a_part_file_that_is_a_link_is_not_followed() {
    let dir = ScratchDir::new("part-link");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let target = dir.join("a.bin");
    std::os::unix::fs::symlink(&victim, partial_path(&target)).unwrap();
    let mut sink = PartFile::new(&target, false);
    assert_eq!(sink.write(0, b"download"), Err(LocalError::Write));
    let error = sink.take_error().unwrap().to_string();
    assert!(error.contains("a.bin.part"), "{error}");
    let mut resumed = PartFile::new(&target, false);
    assert_eq!(resumed.held(), Err(LocalError::Read));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(partial_path(&target))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn a_part_file_replaced_during_the_download_is_not_given_the_real_name() {
    let dir = ScratchDir::new("part-swapped");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let target = dir.join("a.bin");
    let stat = FileStat {
        size: 8,
        crc: crc32(b"download"),
    };
    // By a link, then by a file of someone else's.
    for replace in [
        &(|part: &Path, victim: &Path| std::os::unix::fs::symlink(victim, part).unwrap())
            as &dyn Fn(&Path, &Path),
        &|part: &Path, _: &Path| std::fs::write(part, b"someone else's").unwrap(),
    ] {
        let mut sink = PartFile::new(&target, false);
        sink.write(0, b"download").unwrap();
        std::fs::remove_file(partial_path(&target)).unwrap();
        replace(&partial_path(&target), &victim);
        assert_eq!(sink.complete(stat), Err(LocalError::Write));
        let error = sink.take_error().unwrap().to_string();
        assert!(error.contains("a.bin.part: replaced"), "{error}");
        assert!(std::fs::symlink_metadata(&target).is_err(), "no a.bin");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        std::fs::remove_file(partial_path(&target)).unwrap();
    }
}

#[test]
fn a_source_file_s_checksum_keeps_checkpoints_for_a_resume() {
    let dir = ScratchDir::new("checkpoints");
    let path = dir.join("big.bin");
    // Sparse: two checkpoints' worth of zeros and five bytes more.
    let size = 2 * CHECKPOINT_EVERY + 5;
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let mut source = SourceFile::open(&path).unwrap();
    assert_eq!(source.crc_checkpoint(CHECKPOINT_EVERY), None, "none yet");
    let mut reported = Vec::new();
    let crc = source
        .checksum(|done, total| reported.push((done, total)))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut expected = Crc32::new();
    let mut crc_at = Vec::new();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64);
        expected.update(&zeros[..n as usize]);
        at += n;
        crc_at.push((at, expected.finish()));
    }
    assert_eq!(crc, expected.finish());
    assert_eq!(reported.last(), Some(&(size, size)));
    let crc_of = |len: u64| crc_at.iter().find(|(at, _)| *at == len).unwrap().1;
    assert_eq!(source.crc_checkpoint(CHECKPOINT_EVERY - 1), None);
    assert_eq!(
        source.crc_checkpoint(CHECKPOINT_EVERY + 100),
        Some((CHECKPOINT_EVERY, crc_of(CHECKPOINT_EVERY)))
    );
    assert_eq!(
        source.crc_checkpoint(size),
        Some((2 * CHECKPOINT_EVERY, crc_of(2 * CHECKPOINT_EVERY)))
    );
}

#[test]
fn a_source_file_reads_at_offsets_and_ends_cleanly() {
    let dir = ScratchDir::new("source");
    let path = dir.join("s.bin");
    std::fs::write(&path, b"hello, world\n").unwrap();
    let mut source = SourceFile::open(&path).unwrap();
    assert_eq!(source.size(), 13);
    let mut buf = [0u8; 5];
    assert_eq!(source.read(7, &mut buf), Ok(5));
    assert_eq!(&buf, b"world");
    assert_eq!(source.read(12, &mut buf), Ok(1));
    assert_eq!(source.read(13, &mut buf), Ok(0));
    let missing = SourceFile::open(&dir.join("nope")).unwrap_err().to_string();
    assert!(missing.contains("nope"), "{missing}");
    assert!(SourceFile::open(&dir.0).is_err(), "a directory is no file");
}

#[test]
fn a_long_prefix_is_shortened_to_leave_the_bar_room() {
    assert_eq!(fit_prefix("put big.bin", 99), "put big.bin");
    let long = format!("put {}", "n".repeat(64));
    let fitted = fit_prefix(&long, 99);
    assert!(fitted.ends_with('…'));
    assert_eq!(columns(&fitted), 99 - 55 - 10);
    // However narrow the terminal, the name keeps a few characters.
    assert_eq!(columns(&fit_prefix(&long, 20)), 12);
}

/// Draws a whole transfer of `total` bytes on a terminal `width` columns wide.
fn draw_transfer(width: u16, name: &str, total: u64, ok: bool) -> Arc<Recorder> {
    let term = Recorder::new(width);
    let display = Display::Terminal(term.clone());
    let mut bar = Bar::new(&display, "get", name);
    assert_eq!(term.text(), "", "nothing drawn before the size is known");
    for step in 0..=8 {
        bar.update(total / 2 + step * (total / 16), total);
    }
    bar.finish(ok);
    term
}

#[test]
fn the_bar_fills_the_terminal_less_one_column_and_ends_its_line() {
    for name in ["big.bin", &"x".repeat(64)] {
        let term = draw_transfer(100, name, 3 << 30, true);
        let lines = term.lines();
        let last = lines.last().expect("the bar was drawn");
        assert!(last.contains("100% ["), "{last:?}");
        assert!(last.contains("3.00 GiB/3.00 GiB"), "{last:?}");
        for line in &lines {
            assert_eq!(columns(line), 100 - usize::from(SPARE_COLUMNS), "{line:?}");
        }
        assert!(
            term.text().ends_with('\n'),
            "what follows starts on its own line"
        );
    }
}

#[test]
fn a_failed_transfer_leaves_the_bar_where_it_stopped() {
    let term = draw_transfer(80, "big.bin", 1 << 20, false);
    let last = term.lines().pop().unwrap();
    assert!(last.contains("100% ["), "{last:?}");
    let term = Recorder::new(80);
    let mut bar = Bar::new(&Display::Terminal(term.clone()), "put", "big.bin");
    bar.update(0, 1000);
    bar.update(250, 1000);
    bar.finish(false);
    let last = term.lines().pop().unwrap();
    assert!(last.contains(" 25% ["), "not 100 %: {last:?}");
    // A transfer that failed before the server answered draws nothing.
    let term = Recorder::new(80);
    Bar::new(&Display::Terminal(term.clone()), "put", "big.bin").finish(false);
    assert_eq!(term.text(), "");
}

#[test]
fn fitted_reports_one_column_less() {
    let term: Arc<dyn TermLike> = Recorder::new(100);
    assert_eq!(Fitted(term).width(), 99);
}

// ---------------------------------------------------------------------------
// End to end, on 127.0.0.1

/// Client timeouts for the tests: generous, only there so a broken server fails
/// the test instead of hanging it.
const SILENCE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(50);

/// smolsock's transfer server in a thread, one connection after another, over a
/// directory.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: mpsc::Receiver<TransferStats>,
}

impl TestServer {
    fn start(root: &Path) -> Self {
        Self::start_with(root, || {})
    }

    /// A server that calls `on_accept` as each connection comes in, before it
    /// reads a byte of it.
    fn start_with(root: &Path, mut on_accept: impl FnMut() + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (done, stats) = mpsc::channel();
        let (root, stopping) = (root.to_owned(), Arc::clone(&stop));
        thread::spawn(move || {
            let store = DirStore::open(&root, DirLimits::DEFAULT).unwrap();
            let shared = SharedStore::new(store, [UploadLease::EMPTY; 1]);
            let clock = StdClock::new();
            let (mut rx, mut tx) = (vec![0u8; 16_384], vec![0u8; 16_384]);
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                on_accept();
                stream.set_nodelay(true).unwrap();
                stream.set_read_timeout(Some(TICK)).unwrap();
                stream.set_write_timeout(Some(TICK)).unwrap();
                let mut session =
                    TransferServer::new(&shared, vec![0; FRAME], vec![0; FRAME]).unwrap();
                let mut io = StdIo::new(&stream);
                if let Ok(End::Closed) =
                    blocking::run(&mut session, &mut io, &clock, &mut rx, &mut tx)
                {
                    let _ = stream.shutdown(Shutdown::Write);
                }
            }
            let _ = done.send(shared.stats());
        });
        Self { addr, stop, stats }
    }

    fn remote(&self) -> Remote {
        Remote {
            addr: self.addr.to_string(),
            silence: SILENCE,
            tick: TICK,
        }
    }

    /// The CLI with `args` (and `--to` this server): its stdout, or its error.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        self.cli_on(&Display::Hidden, args)
    }

    fn cli_on(&self, display: &Display, args: &[&str]) -> Result<String, String> {
        let addr = self.addr.to_string();
        let mut argv = vec!["transfer"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--to", &addr]);
        let args = Args::try_parse_from(argv).unwrap();
        let mut remote = self.remote();
        remote.addr = args.to;
        let mut out = Vec::new();
        run(args.command, &remote, display, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn ok(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("transfer {args:?} failed: {e}"))
    }

    fn err(&self, args: &[&str]) -> String {
        match self.cli(args) {
            Ok(out) => panic!("transfer {args:?} succeeded: {out}"),
            Err(e) => e,
        }
    }

    /// Ends the server (after the connection it serves) and gives its counters.
    fn stop(self) -> TransferStats {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; the server sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
        self.stats
            .recv_timeout(Duration::from_secs(60))
            .expect("the server thread ended")
    }
}

/// An upload source that fails from `fail_at` on: a client cut off mid-upload.
struct FailingSource<'a> {
    data: &'a [u8],
    fail_at: usize,
}

impl FileSource for FailingSource<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let offset = offset as usize;
        if offset >= self.fail_at {
            return Err(LocalError::Read);
        }
        let n = buf.len().min(self.fail_at - offset);
        buf[..n].copy_from_slice(&self.data[offset..offset + n]);
        Ok(n)
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn every_command_against_transfer_server_on_loopback() {
    let root = ScratchDir::new("root");
    let work = ScratchDir::new("work");
    let server = TestServer::start(&root.0);

    // put: the file lands in the server's directory, whole, in several frames.
    const BIG: usize = 300_000;
    let big = file_bytes(BIG, 0x5eed);
    let big_crc = crc32(&big);
    let big_path = work.join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    let out = server.ok(&["put", path_arg(&big_path)]);
    assert_eq!(
        out,
        format!("stored {BIG} bytes; CRC-32 {big_crc:08x}: match\n")
    );
    assert_eq!(std::fs::read(root.join("big.bin")).unwrap(), big);
    let small = b"one small file\n";
    let small_path = work.join("notes.txt");
    std::fs::write(&small_path, small).unwrap();
    let out = server.ok(&["put", path_arg(&small_path), "--name", "n.txt"]);
    assert!(
        out.starts_with(&format!("stored {} bytes", small.len())),
        "{out}"
    );

    // ls and stat.
    let out = server.ok(&["ls"]);
    assert_eq!(
        out,
        format!("{BIG:>12}  big.bin\n{:>12}  n.txt\n2 files\n", small.len())
    );
    let out = server.ok(&["stat", "big.bin"]);
    assert_eq!(out, format!("big.bin: {BIG} bytes, CRC-32 {big_crc:08x}\n"));

    // get: byte for byte, no .part left.
    let back = work.join("back.bin");
    let out = server.ok(&["get", "big.bin", "-o", path_arg(&back)]);
    assert_eq!(
        out,
        format!(
            "received {BIG} bytes; CRC-32 {big_crc:08x}: match\nsaved as {}\n",
            back.display()
        )
    );
    assert_eq!(std::fs::read(&back).unwrap(), big);
    assert!(!partial_path(&back).exists());

    // get refuses to replace a file unless --force, and asks nothing of the server.
    std::fs::write(&back, b"mine").unwrap();
    let refused = server.err(&["get", "big.bin", "-o", path_arg(&back)]);
    assert!(
        refused.contains("already exists") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"mine");
    server.ok(&["get", "big.bin", "-o", path_arg(&back), "--force"]);
    assert_eq!(std::fs::read(&back).unwrap(), big);

    // -o DIR saves NAME inside it.
    let inside = ScratchDir::new("inside");
    let out = server.ok(&["get", "n.txt", "-o", path_arg(&inside.0)]);
    assert!(
        out.ends_with(&format!("saved as {}\n", inside.join("n.txt").display())),
        "{out}"
    );
    assert_eq!(std::fs::read(inside.join("n.txt")).unwrap(), small);

    // A file the server does not have: its code is shown, and no .part is made.
    let nosuch = work.join("nosuch.bin");
    let missing = server.err(&["get", "nosuch.bin", "-o", path_arg(&nosuch)]);
    assert!(
        missing.contains("no such file") && missing.contains("code 0x07"),
        "{missing}"
    );
    assert!(
        !partial_path(&nosuch).exists(),
        "an empty nosuch.bin.part was left"
    );
    assert!(!nosuch.exists());
    let missing = server.err(&["get", "nosuch.bin", "-o", path_arg(&nosuch), "--resume"]);
    assert!(missing.contains("code 0x07"), "{missing}");
    assert!(!partial_path(&nosuch).exists());

    // get --resume continues a local partial that is a prefix of the file...
    let half = BIG / 2;
    let resumed = work.join("resumed.bin");
    std::fs::write(partial_path(&resumed), &big[..half]).unwrap();
    let out = server.ok(&["get", "big.bin", "-o", path_arg(&resumed), "--resume"]);
    assert!(
        out.starts_with(&format!("resumed at byte {half}\nreceived {BIG} bytes")),
        "{out}"
    );
    assert_eq!(std::fs::read(&resumed).unwrap(), big);
    assert!(!partial_path(&resumed).exists());

    // ...and starts over when it is not.
    let stale = work.join("stale.bin");
    let mut wrong = big[..half].to_vec();
    wrong[half / 2] ^= 0xff;
    std::fs::write(partial_path(&stale), &wrong).unwrap();
    let out = server.ok(&["get", "big.bin", "-o", path_arg(&stale), "--resume"]);
    assert!(!out.contains("resumed"), "{out}");
    assert_eq!(std::fs::read(&stale).unwrap(), big);

    // rm: gone from the directory and from ls, which now counts one file.
    let out = server.ok(&["rm", "big.bin"]);
    assert_eq!(out, "deleted big.bin\n");
    assert!(!root.join("big.bin").exists());
    assert_eq!(
        server.ok(&["ls"]),
        format!("{:>12}  n.txt\n1 file\n", small.len())
    );
    // A listing longer than --max-entries is refused.
    let long = server.err(&["ls", "--max-entries", "0"]);
    assert!(long.contains("listing longer than 0 entries"), "{long}");
    let missing = server.err(&["stat", "big.bin"]);
    assert!(missing.contains("code 0x07"), "{missing}");
    let missing = server.err(&["rm", "big.bin"]);
    assert!(missing.contains("code 0x07"), "{missing}");

    // An upload cut off after CUT bytes (its source fails there; the client
    // gives up and the connection closes) leaves the server a hidden partial...
    const CUT: usize = 200_000;
    {
        let (connection, mut client) = Connection::open(&server.remote()).unwrap();
        let source = FailingSource {
            data: &big,
            fail_at: CUT,
        };
        let options = PutOptions {
            resume: false,
            crc: Some(big_crc),
        };
        let mut put = client.put(
            FileName::new("big.bin").unwrap(),
            source,
            options,
            |_, _| {},
        );
        assert!(matches!(
            connection.run(&mut put),
            Err(Failure::Client(ClientError::Local(LocalError::Read), _))
        ));
    }
    // (The server serves connections in turn: once ls is answered, it is done
    // with the cut one.)
    assert!(
        server.ok(&["ls"]).ends_with("1 file\n"),
        "a partial is not listed"
    );
    let partial = root.join(".big.bin.part");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), CUT as u64);
    // ...which put --resume finishes, sending only the rest.
    let out = server.ok(&["put", path_arg(&big_path), "--resume"]);
    assert_eq!(
        out,
        format!("resumed at byte {CUT}\nstored {BIG} bytes; CRC-32 {big_crc:08x}: match\n")
    );
    assert_eq!(std::fs::read(root.join("big.bin")).unwrap(), big);
    assert!(!partial.exists());

    // An upload with the bar on a terminal: drawn, never wider than it, and
    // the results still on their own lines.
    let term = Recorder::new(100);
    let out = server
        .cli_on(
            &Display::Terminal(term.clone()),
            &["put", path_arg(&big_path), "--name", "again.bin"],
        )
        .unwrap();
    assert!(out.starts_with(&format!("stored {BIG} bytes")), "{out}");
    let lines = term.lines();
    assert!(
        lines.last().unwrap().starts_with("put again.bin 100% ["),
        "{lines:?}"
    );
    assert!(lines.iter().all(|line| columns(line) < 100), "{lines:?}");

    let stats = server.stop();
    assert_eq!(
        (
            stats.uploads,
            stats.uploads_resumed,
            stats.uploads_done,
            stats.uploads_abandoned
        ),
        (5, 1, 4, 1),
        "{stats}"
    );
    // The resume sent only what was missing: big.bin whole twice, in two parts
    // once, and n.txt.
    assert_eq!(stats.bytes_in, (3 * BIG + small.len()) as u64, "{stats}");
}

#[test]
fn the_final_rate_counts_only_what_moved() {
    // A download resumed at its very end moved nothing: 0 B/s, not the file's
    // size over a few microseconds.
    let term = Recorder::new(100);
    let mut bar = Bar::new(&Display::Terminal(term.clone()), "get", "big.bin");
    bar.update(1 << 30, 1 << 30);
    bar.finish(true);
    let last = term.lines().pop().unwrap();
    assert!(last.contains("1.00 GiB/1.00 GiB 0 B/s ETA"), "{last:?}");
}

#[test]
fn put_takes_the_file_s_crc_before_it_connects() {
    // The client must not read the whole file on the open connection: it sends
    // nothing meanwhile, and a server resets a connection idle for its idle
    // timeout, which a large file outlasts. Changing the file as the server
    // accepts shows when the CRC was taken: before, so the bytes sent no
    // longer match it and the server stores nothing.
    let (root, work) = (ScratchDir::new("crc-root"), ScratchDir::new("crc-work"));
    let path = work.join("f.bin");
    std::fs::write(&path, file_bytes(3000, 5)).unwrap();
    let changed = path.clone();
    let server = TestServer::start_with(&root.0, move || {
        std::fs::write(&changed, file_bytes(3000, 6)).unwrap();
    });
    let error = server.err(&["put", path_arg(&path)]);
    assert!(error.to_lowercase().contains("checksum"), "{error}");
    assert!(!root.join("f.bin").exists());
    server.stop();
}

#[test]
fn a_download_into_a_linked_part_file_fails_and_leaves_its_target_alone() {
    let (root, work) = (ScratchDir::new("link-root"), ScratchDir::new("link-work"));
    std::fs::write(root.join("f.bin"), file_bytes(5000, 7)).unwrap();
    let server = TestServer::start(&root.0);
    let victim = work.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let target = work.join("f.bin");
    std::os::unix::fs::symlink(&victim, partial_path(&target)).unwrap();
    for args in [
        &["get", "f.bin", "-o", path_arg(&target)][..],
        &["get", "f.bin", "-o", path_arg(&target), "--resume"][..],
    ] {
        let error = server.err(args);
        assert!(error.contains("f.bin.part"), "{args:?}: {error}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{args:?}");
        assert!(!target.exists(), "{args:?}");
    }
    server.stop();
}

#[test]
fn a_part_file_swapped_for_a_link_after_a_prepared_resume_is_not_renamed() {
    let (root, work) = (ScratchDir::new("swap-root"), ScratchDir::new("swap-work"));
    let data = file_bytes(5000, 7);
    std::fs::write(root.join("f.bin"), &data).unwrap();
    let victim = work.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let target = work.join("f.bin");
    let part = partial_path(&target);
    std::fs::write(&part, &data[..1000]).unwrap();
    let (swapped, linked_to) = (part.clone(), victim.clone());
    // The .part is read before connecting; the server swaps it as it accepts.
    let server = TestServer::start_with(&root.0, move || {
        if std::fs::symlink_metadata(&swapped).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&swapped).unwrap();
            std::os::unix::fs::symlink(&linked_to, &swapped).unwrap();
        }
    });
    let error = server.err(&["get", "f.bin", "-o", path_arg(&target), "--resume"]);
    assert!(error.contains("replaced during the download"), "{error}");
    assert!(std::fs::symlink_metadata(&target).is_err(), "no f.bin");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    server.stop();
}
