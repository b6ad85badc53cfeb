//! TFTP over TAP against Debian's stock clients: `tap_server` (the example
//! binary, `--root` a scratch directory) runs inside a network namespace of the
//! test's own, and curl, tftp-hpa's `tftp` and `atftp` run in the same namespace
//! with `ip netns exec`. Each gets and puts files of 0 bytes, exactly one block,
//! one block and one byte, and 3 MiB, compared byte for byte with what went in;
//! a name that climbs out of the directory is refused. Then smolsock's own std
//! client against tftp-hpa's `in.tftpd`, run inside the namespace too.
//!
//! Needs root and the packages `curl tftp-hpa atftp tftpd-hpa`; ignored by
//! default (`cargo test --test tap_tftp -- --include-ignored`).
#![cfg(feature = "std")]

#[path = "common/netns.rs"]
mod netns;

#[path = "common/examples.rs"]
mod examples;
#[path = "common/scratch.rs"]
mod scratch;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netns::NetNs;
use scratch::{ScratchDir, file_bytes};

/// The stack's address inside the namespace.
const SERVER: &str = "192.168.69.1";

/// Bounds the wait for the server's banner: only there so a broken build fails
/// instead of hanging.
const BANNER_WAIT: Duration = Duration::from_secs(60);

/// A few MiB.
const BIG: usize = 3 * 1024 * 1024;

/// `target/<profile>/examples/tap_server`, built once per test process.
fn tap_server() -> PathBuf {
    examples::example(&["tap_server"], "tap_server")
}

/// A program of ours (by pid) that is killed and reaped on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `tap_server --root ROOT` in `ns`; returns once it serves.
fn start_server(ns: &NetNs, root: &Path) -> Process {
    let mut child = ns
        .command(tap_server())
        .arg("--root")
        .arg(root)
        .env(
            "RUST_LOG",
            "info,smolsock::tftp=debug,smolsock::net::tftp=debug",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tap_server starts");
    let log = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            eprintln!("tap_server log: {line}");
        }
    });
    let (lines, banner) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("tap_server: {line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let server = Process(child);
    let mut seen = Vec::new();
    loop {
        let line = banner
            .recv_timeout(BANNER_WAIT)
            .unwrap_or_else(|e| panic!("tap_server did not start ({e}): {seen:?}"));
        let done = line.contains("Ctrl-C stops.");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|line| line.contains("udp/69 tftp")),
        "the banner names TFTP: {seen:?}"
    );
    ns.wait_for_carrier();
    server
}

/// Runs a client in `ns` to its end; its output.
fn run(ns: &NetNs, program: &str, args: &[&str]) -> Output {
    let output = ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} does not run: {e} (apt-get install curl tftp-hpa atftp tftpd-hpa)")
        });
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn run_ok(ns: &NetNs, program: &str, args: &[&str]) {
    let output = run(ns, program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({})",
        output.status
    );
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

/// How a stock client gets and puts, with a block size of `block`.
struct Client {
    name: &'static str,
    block: usize,
    get: fn(local: &str, remote: &str) -> (String, Vec<String>),
    put: fn(local: &str, remote: &str) -> (String, Vec<String>),
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// curl getting (`-o`) or putting (`-T`) `local` as `remote`, blocks of `block`.
fn curl(direction: &str, local: &str, remote: &str, block: usize) -> (String, Vec<String>) {
    let url = format!("tftp://{SERVER}/{remote}");
    let block = block.to_string();
    // Bounded: curl's own TFTP timeout is an hour.
    let args = [
        "-sS",
        "--max-time",
        "120",
        "--tftp-blksize",
        &block,
        direction,
        local,
        &url,
    ];
    ("curl".into(), strings(&args))
}

fn curl_get(local: &str, remote: &str, block: usize) -> (String, Vec<String>) {
    curl("-o", local, remote, block)
}

fn curl_put(local: &str, remote: &str, block: usize) -> (String, Vec<String>) {
    curl("-T", local, remote, block)
}

fn atftp(dir: &str, local: &str, remote: &str, options: &[&str]) -> (String, Vec<String>) {
    let mut args = strings(&[dir, "-l", local, "-r", remote]);
    for option in options {
        args.push("--option".into());
        args.push((*option).into());
    }
    args.push(SERVER.into());
    ("atftp".into(), args)
}

const CLIENTS: [Client; 5] = [
    Client {
        name: "curl, blksize 512",
        block: 512,
        get: |l, r| curl_get(l, r, 512),
        put: |l, r| curl_put(l, r, 512),
    },
    Client {
        name: "curl, blksize 1428",
        block: 1428,
        get: |l, r| curl_get(l, r, 1428),
        put: |l, r| curl_put(l, r, 1428),
    },
    Client {
        name: "tftp-hpa, binary mode",
        block: 512,
        get: |l, r| {
            (
                "tftp".into(),
                strings(&["-m", "binary", SERVER, "-c", "get", r, l]),
            )
        },
        put: |l, r| {
            (
                "tftp".into(),
                strings(&["-m", "binary", SERVER, "-c", "put", l, r]),
            )
        },
    },
    Client {
        name: "atftp, blksize 1428",
        block: 1428,
        get: |l, r| atftp("-g", l, r, &["blksize 1428"]),
        put: |l, r| atftp("-p", l, r, &["blksize 1428"]),
    },
    Client {
        name: "atftp, blksize 1428 and windowsize 8",
        block: 1428,
        get: |l, r| atftp("-g", l, r, &["blksize 1428", "windowsize 8"]),
        put: |l, r| atftp("-p", l, r, &["blksize 1428", "windowsize 8"]),
    },
];

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn stock_clients_get_and_put_every_edge_size_byte_for_byte() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-tftp-root");
    let work = ScratchDir::new("tap-tftp-work");
    let _server = start_server(&ns, root.path());
    for (c, client) in CLIENTS.iter().enumerate() {
        for (s, size) in [0, client.block, client.block + 1, BIG]
            .into_iter()
            .enumerate()
        {
            eprintln!("--- {}: {size} bytes", client.name);
            let data = file_bytes(size, (c * 10 + s) as u64 + 1);
            let name = format!("c{c}-s{s}.bin");
            let source = work.join(&format!("up-{name}"));
            std::fs::write(&source, &data).unwrap();
            // put: the file lands in --root, whole.
            let (program, args) = (client.put)(source.to_str().unwrap(), &name);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_ok(&ns, &program, &args);
            assert_same_file(&root.join(&name), &data);
            // get: it comes back, whole.
            let target = work.join(&format!("down-{name}"));
            let (program, args) = (client.get)(target.to_str().unwrap(), &name);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_ok(&ns, &program, &args);
            assert_same_file(&target, &data);
        }
    }
    // No partial left behind: only the files put.
    let names = std::fs::read_dir(root.path()).unwrap().count();
    assert_eq!(names, CLIENTS.len() * 4);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn a_name_that_climbs_out_of_the_directory_is_refused_and_netascii_is_explained() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-tftp-root");
    let work = ScratchDir::new("tap-tftp-work");
    std::fs::write(root.join("inside.txt"), b"inside\n").unwrap();
    let _server = start_server(&ns, root.path());
    let out = work.join("out");
    let out = out.to_str().unwrap();
    for name in ["../etc/passwd", "/etc/passwd", "..", "sub/inside.txt"] {
        let output = run(
            &ns,
            "tftp",
            &["-m", "binary", SERVER, "-c", "get", name, out],
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("Error code 2"), "{name}: {text}");
    }
    let upload = work.join("up");
    std::fs::write(&upload, b"x").unwrap();
    let output = run(
        &ns,
        "tftp",
        &[
            "-m",
            "binary",
            SERVER,
            "-c",
            "put",
            upload.to_str().unwrap(),
            "../escaped",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("Error code 2"), "{text}");
    assert!(!root.path().parent().unwrap().join("escaped").exists());
    // tftp-hpa asks for netascii unless told otherwise: the answer says what to do.
    let output = run(&ns, "tftp", &[SERVER, "-c", "get", "inside.txt", out]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("octet"), "{text}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn the_std_client_gets_and_puts_against_tftp_hpas_server() {
    use smolsock::store::FileName;
    use smolsock::tftp::{ClientConfig, std_net};
    use smolsock::transfer::SliceSink;

    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-tftpd-root");
    let data = file_bytes(BIG + 1, 77);
    std::fs::write(root.join("served.bin"), &data).unwrap();
    // in.tftpd on the namespace's loopback, in the foreground, creating files.
    let child = ns
        .command("in.tftpd")
        .args([
            "--foreground",
            "--address",
            "127.0.0.1:6969",
            "--create",
            "--permissive",
        ])
        .args(["--user", "root", "--secure"])
        .arg(root.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("in.tftpd runs (apt-get install tftpd-hpa)");
    let _tftpd = Process(child);
    let server: std::net::SocketAddr = "127.0.0.1:6969".parse().unwrap();
    let configs = [
        ClientConfig::DEFAULT,
        ClientConfig {
            block_size: Some(1428),
            window: Some(8),
            ..ClientConfig::DEFAULT
        },
    ];
    let results = ns
        .spawn(move || {
            let mut results = Vec::new();
            for (i, config) in configs.into_iter().enumerate() {
                // in.tftpd may still be starting: a few tries for the first get.
                let mut into = vec![0u8; BIG + 1];
                let mut got = None;
                for _ in 0..20 {
                    let mut reports = 0u64;
                    let outcome = std_net::get(
                        server,
                        FileName::new("served.bin").unwrap(),
                        config,
                        SliceSink::new(&mut into),
                        |_, _| reports += 1,
                    );
                    if let Ok(size) = outcome {
                        got = Some((size, reports));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let name = format!("put-{i}.bin");
                let put = std_net::put(
                    server,
                    FileName::new(&name).unwrap(),
                    config,
                    &into[..],
                    |_, _| {},
                );
                results.push((got, into.clone(), put.map_err(|e| e.to_string())));
            }
            results
        })
        .join()
        .unwrap();
    for (i, (got, into, put)) in results.into_iter().enumerate() {
        let (size, reports) = got.expect("the get succeeded");
        assert_eq!(size, (BIG + 1) as u64);
        assert!(reports > 0);
        assert!(into == data, "config {i}: the bytes differ");
        assert_eq!(put, Ok((BIG + 1) as u64));
        assert_same_file(&root.join(&format!("put-{i}.bin")), &data);
    }
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn over_ipv6_a_block_that_would_not_fit_the_mtu_is_granted_smaller() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let root = ScratchDir::new("tap-tftp-root");
    let work = ScratchDir::new("tap-tftp-work");
    let _server = start_server(&ns, root.path());
    // 1468 fits 1500 bytes over IPv4, not over IPv6: the server grants 1448.
    let data = file_bytes(200_000, 6);
    let source = work.join("v6.bin");
    std::fs::write(&source, &data).unwrap();
    let url = "tftp://[fdaa::1]/v6.bin";
    let put = [
        "-sS",
        "--tftp-blksize",
        "1468",
        "-T",
        source.to_str().unwrap(),
        url,
    ];
    run_ok(&ns, "curl", &put);
    assert_same_file(&root.join("v6.bin"), &data);
    let target = work.join("v6-back.bin");
    let get = [
        "-sS",
        "--tftp-blksize",
        "1468",
        "-o",
        target.to_str().unwrap(),
        url,
    ];
    run_ok(&ns, "curl", &get);
    assert_same_file(&target, &data);
}
