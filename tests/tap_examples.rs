//! The examples a newcomer runs, program against program over TAP: `tap_server`
//! (the example binary, `--root` a scratch directory) runs inside a network
//! namespace of the test's own, and the Linux-side clients run with `ip netns exec`
//! in the same namespace, over the kernel's sockets:
//!
//! - the file transfer CLI (`examples/transfer`) uploads, downloads, lists, stats,
//!   deletes and resumes. Every byte is checked: the file in the server's
//!   directory, the file downloaded, and the CRC-32 the client prints, against a
//!   CRC-32 computed here bit by bit;
//! - `host_client` talks to every other service, as TAP.md shows;
//! - headless Chromium (Debian's `chromium`) draws the lab's SVG pictures and
//!   tap_server's live page to PNG; the pictures must not be blank, and the
//!   page's counters must be those `/stats` gives.
//!
//! The three example binaries are built on first use (`cargo build --example ...`,
//! same profile and target directory as this test). The tests need root
//! (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), so they are ignored by default; run them
//! with `cargo test --test tap_examples -- --include-ignored`.
#![cfg(feature = "std")]

#[path = "common/netns.rs"]
mod netns;

#[path = "common/examples.rs"]
mod examples;
#[path = "common/scratch.rs"]
mod scratch;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use smolsock::wire::transfer::{
    DATA_HEADER_LEN, FileName, Message, PROTOCOL_VERSION, emit_data_header,
};

use netns::{NetNs, reset_on_close, retry};
use scratch::{ScratchDir, file_bytes};

/// The transfer server's address as the client is told it.
const SERVER_V4: &str = "192.168.69.1:2121";
const SERVER_V6: &str = "[fdaa::1]:2121";

/// Bounds on every wait: generous, only there so a broken stack fails the test
/// instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const RETRIES: usize = 100;

/// A few MiB: 48 DATA frames of the protocol's default size.
const BIG: usize = 3 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The example binaries

/// `target/<profile>/examples/<name>`, built with the others the tests run.
fn example(name: &str) -> PathBuf {
    examples::example(
        &["tap_server", "transfer", "host_client", "sticky_lab"],
        name,
    )
}

/// `ip netns exec NS <program> <args>`.
/// An example client in the namespace, run to the end.
fn client(ns: &NetNs, name: &str, args: &[&str]) -> Output {
    let output = ns
        .command(example(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("the {name} example does not run: {e}"));
    eprintln!(
        "$ {name} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// [`client`] that must succeed; its stdout.
fn client_ok(ns: &NetNs, name: &str, args: &[&str]) -> String {
    let output = client(ns, name, args);
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({})",
        output.status
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The `transfer` CLI in the namespace, run to the end.
fn transfer(ns: &NetNs, args: &[&str]) -> Output {
    client(ns, "transfer", args)
}

/// [`transfer`] that must succeed; its stdout.
fn transfer_ok(ns: &NetNs, args: &[&str]) -> String {
    client_ok(ns, "transfer", args)
}

/// `tap_server` running in a namespace; killed on drop if the test did not stop it.
struct ServerProcess {
    child: Child,
    stdout: mpsc::Receiver<String>,
    /// Its log (stderr) so far, line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `tap_server --root ROOT` in `ns` and returns once it says it serves
    /// and the kernel has the link up.
    fn start(ns: &NetNs, root: &Path) -> Self {
        Self::start_with(ns, root, &[])
    }

    /// [`start`](Self::start) with more flags.
    fn start_with(ns: &NetNs, root: &Path, flags: &[&str]) -> Self {
        let mut child = ns
            .command(example("tap_server"))
            .arg("--root")
            .arg(root)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tap_server starts");
        // Its log, through this process's (captured) stderr: shown if a test fails.
        let pipe = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("tap_server log: {line}");
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let (lines, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("tap_server: {line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let server = Self { child, stdout, log };
        let mut banner = Vec::new();
        loop {
            let line = server
                .stdout
                .recv_timeout(IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("tap_server did not start ({e}): {banner:?}"));
            let done = line.contains("Ctrl-C stops.");
            banner.push(line);
            if done {
                break;
            }
        }
        assert!(
            banner
                .iter()
                .any(|line| line.contains("tcp/2121 file transfer")
                    && line.contains(&root.display().to_string())),
            "the banner names the transfer service and its directory: {banner:?}"
        );
        ns.wait_for_carrier();
        // `ip netns exec` execs the program in its own place: the child is
        // tap_server itself, so signals and CPU times below are its own.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", server.child.id()))
            .expect("tap_server is running");
        assert_eq!(comm.trim(), "tap_server");
        server
    }

    /// Whether a line of its log so far contains every one of `parts`.
    fn logged(&self, parts: &[&str]) -> bool {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    }

    /// User plus system CPU time so far, in clock ticks (`/proc/PID/stat`).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("tap_server is running");
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Ctrl-C: a graceful stop. Returns the exit status and everything printed
    /// after the banner (the counters).
    fn interrupt(mut self) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid we spawned and have not waited for yet.
        let result = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(result, 0, "kill: {}", std::io::Error::last_os_error());
        let mut report = String::new();
        // Until it closes its stdout by exiting.
        loop {
            match self.stdout.recv_timeout(IO_TIMEOUT) {
                Ok(line) => {
                    report.push_str(&line);
                    report.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("tap_server did not exit after Ctrl-C:\n{report}")
                }
            }
        }
        let status = self.child.wait().expect("tap_server is our child");
        (status, report)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Checks

/// CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320), bit by bit:
/// written here so the check does not trust the crate's own table.
fn zlib_crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_reference_crc_is_zlibs() {
    // zlib.crc32(b"123456789") == 0xcbf43926, the check value of CRC-32/ISO-HDLC.
    assert_eq!(zlib_crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(zlib_crc32(b""), 0);
}

fn assert_same_file(path: &Path, expected: &[u8]) {
    let actual =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        actual.len(),
        expected.len(),
        "{} has the wrong size",
        path.display()
    );
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{} differs from byte {at} on", path.display());
    }
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// A client that stops half way, in the test's own hands

/// Writes one frame: `struct.pack('!I', len)` and the message.
fn send_message(stream: &mut TcpStream, message: &Message<'_>) {
    let mut frame = vec![0u8; 4 + message.buffer_len()];
    let len = message.emit(&mut frame[4..]).unwrap();
    frame[..4].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    stream.write_all(&frame[..4 + len]).unwrap();
}

/// Reads one frame's body.
fn recv_body(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// Begins uploading `name` (`data` in all) as PROTOCOL.md says and sends DATA
/// frames for the first `cut` bytes only; returns the connection, still open.
/// Call from inside the namespace.
fn upload_part(name: &str, data: &[u8], cut: usize) -> TcpStream {
    let addr: SocketAddr = SERVER_V4.parse().unwrap();
    let mut stream = retry("connect to tcp/2121", RETRIES, RETRY_PAUSE, || {
        TcpStream::connect_timeout(&addr, IO_TIMEOUT)
    });
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    send_message(
        &mut stream,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            max_body: 65_536,
        },
    );
    let max_body = match Message::parse(&recv_body(&mut stream)).unwrap() {
        Message::HelloOk { version, max_body } if version == PROTOCOL_VERSION => max_body,
        other => panic!("HELLO answered with {other:?}"),
    };
    send_message(
        &mut stream,
        &Message::Put {
            name: FileName::new(name).unwrap(),
            size: u64::try_from(data.len()).unwrap(),
            crc: zlib_crc32(data),
            resume: false,
        },
    );
    match Message::parse(&recv_body(&mut stream)).unwrap() {
        Message::PutReady { offset: 0, .. } => {}
        other => panic!("PUT answered with {other:?}"),
    }
    let chunk = max_body as usize - DATA_HEADER_LEN;
    let mut offset = 0;
    while offset < cut {
        let piece = &data[offset..cut.min(offset + chunk)];
        let mut frame = vec![0u8; 4 + DATA_HEADER_LEN + piece.len()];
        frame[..4].copy_from_slice(
            &u32::try_from(DATA_HEADER_LEN + piece.len())
                .unwrap()
                .to_be_bytes(),
        );
        emit_data_header(&mut frame[4..], u64::try_from(offset).unwrap()).unwrap();
        frame[4 + DATA_HEADER_LEN..].copy_from_slice(piece);
        stream.write_all(&frame).unwrap();
        offset += piece.len();
    }
    stream
}

/// The file bytes the transfer server has stored so far, from its status line
/// ("..., 1048576 B in, 0 partials discarded; downloads ...").
fn stored_bytes(status: &str) -> u64 {
    let lines = transfer_lines(status);
    lines
        .split(" B in")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'B in' count in:\n{lines}"))
}

/// `GET /stats` from the status page on tcp/80. Call from inside the namespace.
fn status_text() -> String {
    let mut stream = TcpStream::connect_timeout(&"192.168.69.1:80".parse().unwrap(), IO_TIMEOUT)
        .expect("the status page answers");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: 192.168.69.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The transfer lines of a status text or exit report: the `tcp/2121` line and
/// the two below it.
fn transfer_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with("tcp/2121 "))
        .unwrap_or_else(|| panic!("no tcp/2121 line in:\n{text}"));
    lines[at..lines.len().min(at + 3)].join("\n")
}

// ---------------------------------------------------------------------------
// Tests against the kernel

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn the_linux_client_puts_and_gets_three_mib_through_tap_server_byte_for_byte() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-transfer-root");
    let work = ScratchDir::new("tap-transfer-work");
    let server = ServerProcess::start(&ns, root.path());

    let big = file_bytes(BIG, 0x5eed);
    let big_crc = zlib_crc32(&big);
    let big_path = work.join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    let small = b"one small file\n";
    let small_path = work.join("notes.txt");
    std::fs::write(&small_path, small).unwrap();

    // put, over IPv4: the file lands in --root under its name, whole.
    let out = transfer_ok(&ns, &["put", big_path.to_str().unwrap(), "--to", SERVER_V4]);
    assert!(
        out.contains(&format!("stored {BIG} bytes; CRC-32 {big_crc:08x}: match")),
        "{out}"
    );
    assert!(!out.contains("resumed"), "{out}");
    assert_same_file(&root.join("big.bin"), &big);
    let out = transfer_ok(
        &ns,
        &[
            "put",
            small_path.to_str().unwrap(),
            "--name",
            "n.txt",
            "--to",
            SERVER_V4,
        ],
    );
    assert!(
        out.contains(&format!("stored {} bytes", small.len())),
        "{out}"
    );
    assert_eq!(
        names_in(root.path()),
        ["big.bin", "n.txt"],
        "no partial left"
    );

    // get, over IPv6: the copy matches byte for byte, and no .part is left behind.
    let back = work.join("back.bin");
    let out = transfer_ok(
        &ns,
        &[
            "get",
            "big.bin",
            "-o",
            back.to_str().unwrap(),
            "--to",
            SERVER_V6,
        ],
    );
    assert!(
        out.contains(&format!(
            "received {BIG} bytes; CRC-32 {big_crc:08x}: match"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("saved as {}", back.display())),
        "{out}"
    );
    assert_same_file(&back, &big);
    assert!(!work.join("back.bin.part").exists());

    // ls and stat.
    let out = transfer_ok(&ns, &["ls", "--to", SERVER_V4]);
    let listed: Vec<Vec<&str>> = out
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert!(
        listed.contains(&vec![&BIG.to_string()[..], "big.bin"]),
        "{out}"
    );
    assert!(
        listed.contains(&vec![&small.len().to_string()[..], "n.txt"]),
        "{out}"
    );
    assert!(out.contains("2 files"), "{out}");
    let out = transfer_ok(&ns, &["stat", "big.bin", "--to", SERVER_V4]);
    assert!(
        out.contains(&format!("big.bin: {BIG} bytes, CRC-32 {big_crc:08x}")),
        "{out}"
    );

    // rm: gone from the directory, from ls, and stat says so.
    let out = transfer_ok(&ns, &["rm", "big.bin", "--to", SERVER_V4]);
    assert!(out.contains("deleted big.bin"), "{out}");
    assert_eq!(names_in(root.path()), ["n.txt"]);
    let out = transfer_ok(&ns, &["ls", "--to", SERVER_V4]);
    assert!(
        !out.contains("big.bin") && out.contains("1 file\n"),
        "{out}"
    );
    let missing = transfer(&ns, &["stat", "big.bin", "--to", SERVER_V4]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("code 0x"),
        "the server's error code is shown: {err}"
    );

    // Ctrl-C: tap_server exits 0 and reports the transfer's counters.
    let (status, report) = server.interrupt();
    assert!(
        status.success(),
        "tap_server exited with {status}:\n{report}"
    );
    let counters = transfer_lines(&report);
    for expected in [
        // put, put, get, ls, stat, rm, ls, stat
        "8 accepted".to_owned(),
        "uploads: 2 begun (0 resumed), 2 done".to_owned(),
        // No download was stopped by a change of the file (`ERROR Changed`).
        format!("downloads: 1 begun, 1 done, 0 changed, {BIG} B out"),
        "deletes: 1".to_owned(),
    ] {
        assert!(
            counters.contains(&expected),
            "no {expected:?} in:\n{counters}"
        );
    }
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn an_interrupted_upload_stays_hidden_and_put_resume_finishes_it_as_get_resume_does() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-resume-root");
    let work = ScratchDir::new("tap-resume-work");
    let server = ServerProcess::start(&ns, root.path());
    ns.enter_current_thread().unwrap();

    let big = file_bytes(BIG, 0xfeed);
    let big_crc = zlib_crc32(&big);
    let big_path = work.join("big.bin");
    std::fs::write(&big_path, &big).unwrap();

    // A client sends the first MiB and, once the server has stored it, dies. When
    // the server has seen the connection go, nothing is visible under the name,
    // only the hidden partial.
    const CUT: usize = 1024 * 1024;
    let cut = upload_part("big.bin", &big, CUT);
    retry(
        "the server to store the first MiB",
        RETRIES,
        RETRY_PAUSE,
        || match stored_bytes(&status_text()) {
            n if n == CUT as u64 => Ok(()),
            n => Err(n),
        },
    );
    reset_on_close(&cut);
    drop(cut);
    retry(
        "the server to end the cut upload",
        RETRIES,
        RETRY_PAUSE,
        || {
            let lines = transfer_lines(&status_text());
            if lines.contains("0 of 2 open") && lines.contains("1 abandoned") {
                Ok(())
            } else {
                Err(lines)
            }
        },
    );
    assert_eq!(names_in(root.path()), [".big.bin.part"]);
    let partial = std::fs::metadata(root.join(".big.bin.part")).unwrap().len();
    assert_eq!(partial, CUT as u64, "every whole DATA frame stored is kept");
    let out = transfer_ok(&ns, &["ls", "--to", SERVER_V4]);
    assert!(out.contains("0 files"), "a partial is not listed: {out}");
    assert!(
        !transfer(&ns, &["stat", "big.bin", "--to", SERVER_V4])
            .status
            .success()
    );

    // put --resume sends only the rest, and the whole file checks out.
    let out = transfer_ok(
        &ns,
        &[
            "put",
            big_path.to_str().unwrap(),
            "--resume",
            "--to",
            SERVER_V4,
        ],
    );
    assert!(
        out.contains(&format!("resumed at byte {partial}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("stored {BIG} bytes; CRC-32 {big_crc:08x}: match")),
        "{out}"
    );
    assert_eq!(names_in(root.path()), ["big.bin"]);
    assert_same_file(&root.join("big.bin"), &big);

    // get --resume continues a local partial that matches the server's prefix...
    let back = work.join("back.bin");
    let half = BIG / 2;
    std::fs::write(work.join("back.bin.part"), &big[..half]).unwrap();
    let out = transfer_ok(
        &ns,
        &[
            "get",
            "big.bin",
            "-o",
            back.to_str().unwrap(),
            "--resume",
            "--to",
            SERVER_V4,
        ],
    );
    assert!(out.contains(&format!("resumed at byte {half}\n")), "{out}");
    assert!(
        out.contains(&format!("CRC-32 {big_crc:08x}: match")),
        "{out}"
    );
    assert_same_file(&back, &big);

    // ...and starts over when the local partial is not a prefix of the file.
    let stale = work.join("stale.bin");
    let mut wrong = big[..half].to_vec();
    wrong[half / 2] ^= 0xff;
    std::fs::write(work.join("stale.bin.part"), &wrong).unwrap();
    let out = transfer_ok(
        &ns,
        &[
            "get",
            "big.bin",
            "-o",
            stale.to_str().unwrap(),
            "--resume",
            "--to",
            SERVER_V4,
        ],
    );
    assert!(!out.contains("resumed"), "{out}");
    assert!(
        out.contains(&format!("CRC-32 {big_crc:08x}: match")),
        "{out}"
    );
    assert_same_file(&stale, &big);

    let (status, report) = server.interrupt();
    assert!(
        status.success(),
        "tap_server exited with {status}:\n{report}"
    );
    let counters = transfer_lines(&report);
    assert!(
        counters.contains("uploads: 2 begun (1 resumed), 1 done, 1 abandoned"),
        "{counters}"
    );
    // The resume sent only what was missing.
    let bytes_in = format!("{BIG} B in");
    assert!(
        counters.contains(&bytes_in),
        "no {bytes_in:?} in:\n{counters}"
    );
}

/// `host_client framed` prints each frame's `sendall` before the frame it gets
/// back, and every header both in hex and in decimal, agreeing:
/// `sendall(header 00 00 00 12 (= 18 bytes) + ...)`, `recv frame 0: header ...`.
fn framed_trace_reads_in_order(out: &str) {
    let (mut sent, mut received) = (0usize, 0usize);
    for line in out.lines() {
        let header = if let Some(rest) = line.strip_prefix("sendall(") {
            sent += 1;
            rest
        } else if let Some(rest) = line.strip_prefix("recv frame ") {
            assert!(
                received < sent,
                "frame {received} shown before its sendall: {out}"
            );
            received += 1;
            rest.split_once(": ").map_or("", |(_, rest)| rest)
        } else {
            continue;
        };
        // "header 00 00 00 12 (= 18 bytes)"
        let fields: Vec<&str> = header.split(' ').take(7).collect();
        assert!(
            fields.len() == 7 && fields[0] == "header" && fields[5] == "(=",
            "no header in {line:?}"
        );
        let hex = fields[1..5].concat();
        let from_hex = u32::from_str_radix(&hex, 16).unwrap();
        let decimal: u32 = fields[6].parse().unwrap();
        assert_eq!(
            from_hex, decimal,
            "the header's hex and decimal differ: {line:?}"
        );
    }
    assert!(sent > 0 && received > 0, "no frame traced: {out}");
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn host_client_talks_to_every_service_of_tap_server_over_ipv4_and_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-host-client-root");
    let pcap = root.join("link.pcap");
    let server = ServerProcess::start_with(&ns, root.path(), &["--pcap", pcap.to_str().unwrap()]);
    let host_client = |args: &[&str]| client_ok(&ns, "host_client", args);

    // host_client checks every echo itself and exits 1 on a difference.
    let out = host_client(&["echo", "hello"]);
    assert!(out.contains("recv(1024) -> 5 bytes: \"hello\""), "{out}");
    // Each connection is logged as it comes and goes (RUST_LOG=info).
    retry(
        "tap_server to log the connection",
        RETRIES,
        RETRY_PAUSE,
        || {
            let seen = server.logged(&["tcp/7 echo: 192.168.69.100:", "connected"])
                && server.logged(&["tcp/7 echo: 192.168.69.100:", "closed"]);
            if seen { Ok(()) } else { Err("not yet") }
        },
    );
    let out = host_client(&["echo", "--size", "5000"]);
    assert!(
        out.contains("-> 5000 bytes") && out.contains("echo 1 complete"),
        "{out}"
    );
    let out = host_client(&["echo", "--ipv6", "over IPv6"]);
    assert!(out.contains("echo 1 complete"), "{out}");
    let out = host_client(&["udp", "--count", "3"]);
    assert!(out.contains("3 sent"), "{out}");
    let out = host_client(&["udp", "--ipv6", "--count", "3"]);
    assert!(out.contains("3 sent"), "{out}");
    let out = host_client(&["framed", "--count", "50"]);
    assert!(
        out.contains("all 50 frames came back whole and in order"),
        "{out}"
    );
    framed_trace_reads_in_order(&out);
    let out = host_client(&["framed", "--size", "60000", "--ipv6"]);
    assert!(out.contains("the frame came back whole"), "{out}");
    framed_trace_reads_in_order(&out);
    let out = host_client(&["http", "/stats"]);
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("(Content-Length "), "{out}");
    for service in [
        "tcp/7 ",
        "udp/7 ",
        "tcp/9000 ",
        "tcp/80 ",
        "tcp/2121 ",
        "link ",
        "backlog ",
    ] {
        assert!(
            out.contains(service),
            "no {service:?} line on the page:\n{out}"
        );
    }

    // A connection still open at Ctrl-C is closed gracefully: the client reads
    // the end of the stream (FIN), not a reset.
    ns.enter_current_thread().unwrap();
    let mut open = retry("connect to tcp/7", RETRIES, RETRY_PAUSE, || {
        TcpStream::connect_timeout(&"192.168.69.1:7".parse().unwrap(), IO_TIMEOUT)
    });
    open.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    open.read_exact(&mut back).unwrap();
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        open.read_to_end(&mut rest).map(|_| rest)
    });

    let (status, report) = server.interrupt();
    assert!(
        status.success(),
        "tap_server exited with {status}:\n{report}"
    );
    assert!(report.contains("counters:"), "{report}");
    let end = reader.join().unwrap();
    assert!(
        end.as_ref().is_ok_and(Vec::is_empty),
        "the open connection ended with {end:?}"
    );
    assert!(
        report.contains("at stop: 1 connection(s) closed, 0 reset"),
        "{report}"
    );

    // --pcap: a classic pcap file (magic a1b2c3d4, Ethernet) with the echoes in it.
    let capture = std::fs::read(&pcap).unwrap();
    assert!(capture.len() > 24, "{} bytes of capture", capture.len());
    assert_eq!(capture[..4], 0xa1b2_c3d4u32.to_le_bytes());
    assert_eq!(
        u32::from_le_bytes(capture[20..24].try_into().unwrap()),
        1,
        "LINKTYPE_ETHERNET"
    );
    assert!(
        capture.windows(10).any(|w| w == b"still here"),
        "the echo is in the capture"
    );
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn an_idle_tap_server_sleeps_instead_of_spinning() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-idle-root");
    let server = ServerProcess::start(&ns, root.path());
    // Some work first, so the measurement covers a server that has served.
    client_ok(&ns, "host_client", &["echo", "warm"]);
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = server.cpu_ticks() - before;
    eprintln!("idle for 2 s: {used} ticks of CPU ({ticks_per_second} per second)");
    // A loop that polls without sleeping burns the whole 2 s (2 * ticks_per_second
    // ticks); one that sleeps until the next frame or timer wakes a few times a
    // second for microseconds. A tenth of the time is a wide margin.
    assert!(
        used * 10 < 2 * ticks_per_second,
        "tap_server used {used} ticks of CPU in 2 s of idling ({ticks_per_second} per second)"
    );
    let (status, _) = server.interrupt();
    assert!(status.success());
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tap_server_takes_the_stack_addresses_from_its_flags() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-addresses-root");
    let server = ServerProcess::start_with(
        &ns,
        root.path(),
        &["--ipv4", "192.168.69.7/24", "--ipv6", "fdaa::7/64"],
    );
    let out = client_ok(
        &ns,
        "host_client",
        &["echo", "--to", "192.168.69.7", "seven"],
    );
    assert!(out.contains("echo 1 complete"), "{out}");
    let out = client_ok(
        &ns,
        "host_client",
        &["echo", "--to", "fdaa::7", "seven, v6"],
    );
    assert!(out.contains("echo 1 complete"), "{out}");
    let out = transfer_ok(&ns, &["ls", "--to", "192.168.69.7:2121"]);
    assert!(out.contains("0 files"), "{out}");
    // The default address is not the stack's any more: nobody answers there.
    let missed = client(&ns, "host_client", &["echo", "--to", "192.168.69.1", "one"]);
    assert!(!missed.status.success());
    let (status, _) = server.interrupt();
    assert!(status.success());
}

// ---------------------------------------------------------------------------
// A real browser: headless Chromium (Debian's `chromium`)

/// Runs headless Chromium on `url` with `flags` (in `ns` if given, else here)
/// and returns its stdout. Each run has a profile directory of its own, so runs
/// in parallel tests do not share one. Chromium runs as root here, which needs
/// `--no-sandbox`.
fn chromium(ns: Option<&NetNs>, url: &str, flags: &[&str]) -> String {
    let profile = ScratchDir::new("chromium-profile");
    // Bounded by coreutils' `timeout`: a page that never loads fails the test
    // (status 124) instead of holding it.
    let mut command = match ns {
        Some(ns) => ns.command("timeout"),
        None => std::process::Command::new("timeout"),
    };
    let output = command
        .args(["--kill-after=10", "120", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1000,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("chromium does not run ({e}): apt-get install chromium"));
    assert!(
        output.status.success(),
        "chromium {flags:?} {url} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Chromium's screenshot of `url`, decoded: (width, height, RGBA pixels).
fn screenshot(ns: Option<&NetNs>, url: &str, png: &Path) -> (u32, u32, Vec<u8>) {
    chromium(ns, url, &[&format!("--screenshot={}", png.display())]);
    let file = std::fs::File::open(png).unwrap_or_else(|e| panic!("no screenshot of {url}: {e}"));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0u8; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    pixels.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Rgba, "{url}");
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{url}");
    (info.width, info.height, pixels)
}

/// What a screenshot shows, in numbers: the share of pixels that differ from the
/// most common colour (the background), and how many colours there are.
struct Rendering {
    drawn: f64,
    colours: usize,
}

impl Rendering {
    fn of(pixels: &[u8]) -> Self {
        let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
        for px in pixels.chunks_exact(4) {
            *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
        }
        let total = pixels.len() / 4;
        let background = counts.values().copied().max().unwrap_or(0);
        Self {
            drawn: (total - background) as f64 / total.max(1) as f64,
            colours: counts.len(),
        }
    }
}

/// Whether `rgb` appears in at least `min` pixels.
fn has_colour(pixels: &[u8], rgb: [u8; 3], min: usize) -> bool {
    pixels.chunks_exact(4).filter(|px| px[..3] == rgb).count() >= min
}

#[test]
#[ignore = "needs chromium (Debian's package): renders the lab's SVG pictures"]
fn chromium_draws_the_labs_pictures() {
    let dir = ScratchDir::new("lab-svg");
    let output = std::process::Command::new(example("sticky_lab"))
        .arg("--svg")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("sticky_lab runs");
    assert!(output.status.success(), "sticky_lab --svg failed");
    let mut pictures: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "svg"))
        .collect();
    pictures.sort();
    // One picture per case: Nagle merging small sends, a big send spilling into
    // the next read, length framing, the acknowledged-length cure (and variants).
    let names: Vec<String> = pictures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for case in [
        "1-nagle.svg",
        "2-big-send.svg",
        "3a-framing-small.svg",
        "4-acked-length.svg",
    ] {
        assert!(names.iter().any(|n| n == case), "no {case} among {names:?}");
    }
    for svg in &pictures {
        let png = svg.with_extension("png");
        let url = format!("file://{}", svg.display());
        let (width, height, pixels) = screenshot(None, &url, &png);
        assert_eq!((width, height), (1000, 700), "{url}");
        let seen = Rendering::of(&pixels);
        eprintln!(
            "{}: {:.1} % drawn, {} colours",
            svg.display(),
            seen.drawn * 100.0,
            seen.colours
        );
        // Plot areas, axes, labels, segments and lanes cover much of the window
        // in many colours; a picture Chromium could not draw is one colour.
        assert!(seen.drawn > 0.10, "{url} renders almost blank");
        assert!(
            seen.colours > 8,
            "{url} renders in {} colours",
            seen.colours
        );
        // The data segments' blue (`#4a7ab8` in the SVG's legend and lines).
        assert!(
            has_colour(&pixels, [0x4a, 0x7a, 0xb8], 20),
            "{url}: no segment drawn"
        );
    }
}

/// The counter lines of a status text, but for those that change with each
/// request: the HTTP service's own, the link's frame counts, and the listen
/// backlog's, which holds a request's SYN when the browser still keeps both
/// HTTP slots.
fn steady_counters(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| {
            !line.starts_with("tcp/80 ")
                && !line.starts_with("link ")
                && !line.starts_with("backlog ")
        })
        .map(|line| {
            // The page escapes what it shows; undo the few escapes a counter line may have.
            line.replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        })
        .collect()
}

#[test]
#[ignore = "needs CAP_NET_ADMIN and chromium: renders tap_server's live page in a namespace"]
fn chromium_renders_the_live_page_and_its_counters_are_the_stats() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-browser-root");
    let server = ServerProcess::start(&ns, root.path());
    // Some traffic to count, and an echo connection left open: a row with bars.
    client_ok(&ns, "host_client", &["echo", "counted"]);
    client_ok(&ns, "host_client", &["framed", "--count", "2"]);
    ns.enter_current_thread().unwrap();
    let mut open = retry("the echo service", RETRIES, RETRY_PAUSE, || {
        TcpStream::connect_timeout(&"192.168.69.1:7".parse().unwrap(), IO_TIMEOUT)
    });
    open.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    open.read_exact(&mut echoed).unwrap();

    // What Chromium made of the page (its DOM after loading), then /stats.
    let dom = chromium(Some(&ns), "http://192.168.69.1/", &["--dump-dom"]);
    let stats = status_text();
    assert!(dom.contains("<h1>smolsock tap_server</h1>"), "{dom}");
    assert!(dom.contains("http-equiv=\"refresh\""), "{dom}");
    let echo_row = dom
        .lines()
        .find(|line| line.contains("<td>echo</td>"))
        .unwrap_or_else(|| panic!("no row for the open echo connection in {dom}"));
    assert!(echo_row.contains("192.168.69.100:"), "{echo_row}");
    let pre = dom
        .split_once("<pre>")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(counters, _)| counters)
        .unwrap_or_else(|| panic!("no counters on the page: {dom}"));
    let (on_page, served) = (steady_counters(pre), steady_counters(&stats));
    assert!(on_page.len() >= 5, "{on_page:?}");
    assert_eq!(on_page, served, "the page's counters are not /stats'");
    assert!(
        pre.lines().any(|line| line.trim().starts_with("backlog ")),
        "no backlog line on the page: {pre}"
    );
    let echo = on_page
        .iter()
        .find(|line| line.starts_with("tcp/7 "))
        .unwrap_or_else(|| panic!("no tcp/7 line: {on_page:?}"));
    assert!(echo.contains("2 accepted"), "{echo}");

    // What it looks like: drawn, with the bars' frames (`#789`) and background (`#eef`).
    let png = root.join("live.png");
    let (_, _, pixels) = screenshot(Some(&ns), "http://192.168.69.1/", &png);
    let seen = Rendering::of(&pixels);
    eprintln!(
        "live page: {:.1} % drawn, {} colours",
        seen.drawn * 100.0,
        seen.colours
    );
    assert!(seen.drawn > 0.02, "the live page renders almost blank");
    assert!(has_colour(&pixels, [0xee, 0xee, 0xff], 50), "no bar drawn");
    assert!(
        has_colour(&pixels, [0x77, 0x88, 0x99], 20),
        "no bar frame drawn"
    );
    drop(open);
    let (status, _) = server.interrupt();
    assert!(status.success());
}
