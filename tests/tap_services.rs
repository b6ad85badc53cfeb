//! tap_server's services against the Linux kernel's own TCP/IP stack: the very
//! wiring of `examples/tap_common/all_services.rs` (raw echo, UDP echo, framed
//! echo, HTTP status page, file transfer) runs on a `TapRunner` on a thread inside a network
//! namespace of the test's own, and the clients are kernel sockets (`std::net`,
//! `curl`) in the same namespace. Nothing touches the host's network; each
//! namespace is deleted at the end, also when a test fails.
//!
//! They need root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), so they are ignored by
//! default; run them with `cargo test --test tap_services -- --include-ignored`.
#![cfg(feature = "std")]

#[path = "common/netns.rs"]
mod netns;

#[path = "common/scratch.rs"]
mod scratch;

#[path = "../examples/tap_common/all_services.rs"]
mod all_services;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use smolsock::http::StatusSite;
use smolsock::net::BacklogStats;
use smolsock::runner::tap::{TapConfig, TapRunner, TapStats};
use smolsock::wire::frame::{FrameReader, HeaderFormat};
use smoltcp::iface::SocketSet;
use smoltcp::socket::Socket;

use all_services::{
    AllServices, ECHO_PORT, FRAMED_PORT, HTTP_PORT, LiveCounters, ServeError, ServeReport,
    ServicesConfig, TFTP_DATAGRAM_MAX, TFTP_POOL, TFTP_QUEUE, TRANSFER_POOL_MAX, UDP_DATAGRAM_MAX,
    UDP_QUEUE, open_transfer_store, serve,
};
use netns::{NetNs, reset_on_close, retry};
use scratch::ScratchDir;

const STACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 69, 1));
const STACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1));
const LINUX_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 69, 100));
const LINUX_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100));

/// Bounds on every wait for the real network: generous, only there so a broken
/// stack fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const RETRIES: usize = 50;

/// The primer's `recv(1024)`.
const RECV_SIZE: usize = 1024;

// ---------------------------------------------------------------------------
// The server

/// `all_services::serve` on a thread inside a namespace; stopped on drop so a
/// failing test does not leave it running.
struct RunningServer {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<ServeReport, ServeError>>,
    thread: Option<JoinHandle<()>>,
    /// The file transfer's directory; after `thread`, so it goes once the server has.
    _root: ScratchDir,
}

impl RunningServer {
    /// Opens `tap0` inside `ns` and serves every service with `config`; returns once
    /// every port listens and the kernel has the link up.
    fn start(ns: &NetNs, config: ServicesConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let root = ScratchDir::new("tap-services");
        let thread_root = root.path().to_owned();
        let thread = ns.spawn(move || {
            // RUST_LOG=info shows each connection of a failing test.
            let _ = env_logger::builder().is_test(true).try_init();
            let tap = TapConfig::default();
            let mut runner = TapRunner::open(netns::TAP, &tap, SocketSet::new(vec![]))
                .unwrap_or_else(|e| panic!("cannot start the stack: {e}"));
            let result = serve(
                &mut runner,
                &config,
                &thread_root,
                tap.stop_check,
                &thread_stop,
                || {
                    let _ = ready_tx.send(());
                },
            );
            let _ = done_tx.send(result);
        });
        ready_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the server thread did not start (see its panic above)");
        ns.wait_for_carrier();
        Self {
            stop,
            done,
            thread: Some(thread),
            _root: root,
        }
    }

    /// Stops the server (graceful close) and returns its final counters.
    fn stop(mut self) -> ServeReport {
        self.stop.store(true, Ordering::SeqCst);
        let result = self
            .done
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not return after stop was set");
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let report = result.unwrap_or_else(|e| panic!("the server failed: {e}"));
        eprintln!("server counters:\n{report}");
        report
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Kernel-side helpers

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = retry("connect to the stack", RETRIES, RETRY_PAUSE, || {
        TcpStream::connect_timeout(&addr, IO_TIMEOUT)
    });
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// `recv(len(buf))`, again if a signal interrupted it (std's `read` does not retry,
/// unlike `read_exact`; a stopped-and-continued process sees `EINTR` on sockets
/// with a timeout even without signal handlers).
fn recv(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => return result.unwrap(),
        }
    }
}

/// The primer's TCP client, word for word: connect, send, recv(1024), close.
fn primer_echo_client(addr: SocketAddr, message: &[u8]) {
    let mut stream = connect(addr);
    let sent = stream.write(message).unwrap();
    assert_eq!(sent, message.len());
    let mut buf = [0u8; RECV_SIZE];
    let n = recv(&mut stream, &mut buf);
    assert_eq!(&buf[..n], message);
    drop(stream);
}

/// One round trip on an open echo connection.
fn echo_round(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
}

/// `struct.pack('!I', len(body)) + body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut framed = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    framed
}

/// Reads whole frames with `recv(1024)` and a frame reader until `count` are in
/// or the stream ends; the reader finds the boundaries however TCP cut the bytes.
fn read_frames(stream: &mut TcpStream, count: usize, max_len: u32) -> Vec<Vec<u8>> {
    let format = HeaderFormat::NETWORK.with_max_len(max_len).unwrap();
    let mut reader = FrameReader::new(vec![0u8; format.max_frame_len()], format).unwrap();
    let mut frames = Vec::new();
    let mut buf = [0u8; RECV_SIZE];
    let mut reads = 0usize;
    while frames.len() < count {
        let n = recv(stream, &mut buf);
        assert!(n > 0, "the stream ended after {} frames", frames.len());
        reads += 1;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let taken = reader.feed(rest).unwrap();
            rest = &rest[taken..];
            while let Some(frame) = reader.next_frame() {
                frames.push(frame.to_vec());
                assert!(frames.len() <= 1_000_000, "over a million frames read");
            }
        }
    }
    eprintln!(
        "{count} frames in {reads} recv({RECV_SIZE}) calls, {} of them carrying more than one frame",
        reader.stats().coalesced_reads
    );
    frames
}

/// Sends `frames` back to back on a clone of `stream` from another thread while
/// this one reads them back, so neither direction's buffers can fill and stall.
fn framed_echo_exchange(stream: &mut TcpStream, frames: &[Vec<u8>], max_len: u32) {
    let mut writer = stream.try_clone().unwrap();
    let to_send: Vec<Vec<u8>> = frames.iter().map(|body| frame(body)).collect();
    let sender = std::thread::spawn(move || {
        for framed in to_send {
            writer.write_all(&framed).unwrap();
        }
    });
    let back = read_frames(stream, frames.len(), max_len);
    sender.join().unwrap();
    assert_eq!(back.len(), frames.len());
    for (i, (back, sent)) in back.iter().zip(frames).enumerate() {
        assert!(back == sent, "frame {i} came back different");
    }
}

/// A UDP socket bound on the Linux side that has had one echo back from the stack
/// (the first datagrams may wait for ARP or neighbor discovery on either side).
fn warm_udp_socket(local: IpAddr, stack: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((local, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut attempt = 0u32;
    retry("a first UDP echo", 20, Duration::ZERO, || {
        attempt += 1;
        socket.send_to(format!("warm-up {attempt}").as_bytes(), stack)?;
        let (len, from) = socket.recv_from(&mut buf)?;
        assert_eq!(from, stack);
        assert!(buf[..len].starts_with(b"warm-up "));
        Ok::<(), std::io::Error>(())
    });
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// The next datagram that is not a late warm-up echo.
fn recv_datagram(socket: &UdpSocket, from: SocketAddr) -> Vec<u8> {
    let mut buf = [0u8; 65_536];
    loop {
        let (len, sender) = match socket.recv_from(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result.unwrap(),
        };
        assert_eq!(sender, from);
        if !buf[..len].starts_with(b"warm-up ") {
            return buf[..len].to_vec();
        }
    }
}

/// `HTTP/1.1 200 OK` and the body, from curl run inside the namespace, or from a
/// raw HTTP/1.1 client over `std::net` where curl is not installed.
fn http_get(ns: &NetNs, url_host: &str, addr: SocketAddr, path: &str) -> (String, String) {
    let curl = Command::new("ip")
        .args(["netns", "exec", ns.name(), "curl", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    let response = if curl {
        let url = format!("http://{url_host}{path}");
        let output = netns::run_ok(Command::new("ip").args([
            "netns",
            "exec",
            ns.name(),
            "curl",
            "--silent",
            "--show-error",
            "--include",
            "--globoff",
            "--max-time",
            "10",
            "--retry",
            "3",
            "--retry-connrefused",
            &url,
        ]));
        String::from_utf8(output.stdout).unwrap()
    } else {
        eprintln!("curl is not installed: using a raw HTTP/1.1 client");
        let mut stream = connect(addr);
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {url_host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "{response}");
    (status, body.to_owned())
}

/// The status page's text (`GET /stats`) from a raw HTTP/1.1 client.
fn fetch_status() -> String {
    let mut stream = connect(SocketAddr::new(STACK_V4, HTTP_PORT));
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: 192.168.69.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

/// The line of the status text that starts with `prefix`.
fn status_line<'a>(status: &'a str, prefix: &str) -> &'a str {
    status
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{status}"))
}

// ---------------------------------------------------------------------------
// Tests without a network

#[test]
fn every_buffer_is_allocated_once_when_the_services_are_built() {
    let config = ServicesConfig {
        echo_pool: 1,
        framed_pool: 2,
        http_pool: 3,
        transfer_pool: 2,
        rx_buf: 1000,
        tx_buf: 500,
        max_frame: 100,
        transfer_frame: 200,
        ..ServicesConfig::DEFAULT
    };
    let live = LiveCounters::default();
    let status = |out: &mut dyn std::fmt::Write| live.write(out);
    let site = StatusSite::new("test", &status);
    let root = ScratchDir::new("alloc");
    let store = open_transfer_store(root.path()).unwrap();
    let mut sockets = SocketSet::new(vec![]);
    let services = AllServices::new(&config, &mut sockets, &site, &live, &store).unwrap();
    let tcp: Vec<_> = sockets
        .iter()
        .filter_map(|(_, socket)| match socket {
            Socket::Tcp(tcp) => Some((tcp.recv_capacity(), tcp.send_capacity())),
            _ => None,
        })
        .collect();
    assert_eq!(tcp, vec![(1000, 500); 8]);
    assert_eq!(
        sockets.iter().count(),
        9 + 1 + TFTP_POOL,
        "8 TCP sockets, 1 UDP echo socket, TFTP's listening socket and its pool"
    );
    let memory = config.memory();
    assert_eq!(memory.tcp_sockets, 8);
    assert_eq!(
        memory.socket_buffers,
        8 * 1500
            + 2 * UDP_QUEUE * UDP_DATAGRAM_MAX
            + 2 * (1 + TFTP_POOL) * TFTP_QUEUE * TFTP_DATAGRAM_MAX
    );
    // Framed echo: two frames of 100 + 4 per slot (one gathering, one going out);
    // transfer: 200 + 4 of receive storage per slot.
    assert_eq!(memory.frame_storage, 2 * 2 * 104 + 2 * 204);
    let counters = services.counters();
    assert_eq!(
        (
            counters.echo.slots,
            counters.framed.slots,
            counters.http.slots,
            counters.transfer.slots
        ),
        (1, 2, 3, 2)
    );
    // The memory report counts the transfer's staging buffers (one frame, header
    // included, per slot) among the handler buffers.
    let without_transfer = ServicesConfig {
        transfer_pool: 0,
        ..config
    }
    .memory();
    assert_eq!(
        memory.handler_buffers - without_transfer.handler_buffers,
        2 * 204
    );
}

#[test]
fn transfer_settings_the_protocol_or_the_lease_array_cannot_take_are_refused() {
    let live = LiveCounters::default();
    let status = |out: &mut dyn std::fmt::Write| live.write(out);
    let site = StatusSite::new("test", &status);
    let root = ScratchDir::new("refused");
    let store = open_transfer_store(root.path()).unwrap();
    let build = |config: ServicesConfig| {
        let mut sockets = SocketSet::new(vec![]);
        AllServices::new(&config, &mut sockets, &site, &live, &store).map(|_| ())
    };
    let too_many = ServicesConfig {
        transfer_pool: TRANSFER_POOL_MAX + 1,
        ..ServicesConfig::DEFAULT
    };
    assert!(
        matches!(build(too_many), Err(ServeError::TransferPool(n)) if n == TRANSFER_POOL_MAX + 1)
    );
    let most = ServicesConfig {
        transfer_pool: TRANSFER_POOL_MAX,
        transfer_frame: 128,
        ..ServicesConfig::DEFAULT
    };
    assert!(build(most).is_ok());
    let tiny_frames = ServicesConfig {
        transfer_frame: 127,
        ..ServicesConfig::DEFAULT
    };
    assert!(matches!(build(tiny_frames), Err(ServeError::Transfer(_))));
}

#[test]
fn the_transfer_directory_is_created_when_missing() {
    let scratch = ScratchDir::new("root");
    let root = scratch.join("files/inside");
    assert!(!root.exists());
    let store = open_transfer_store(&root).unwrap();
    assert!(root.is_dir());
    assert_eq!(store.stats().sessions, 0);
}

#[test]
fn status_text_has_a_line_per_service_and_the_link_and_backlog_once_known() {
    let live = LiveCounters::default();
    let mut text = String::new();
    live.write(&mut text).unwrap();
    for prefix in [
        "tcp/7 ",
        "udp/7 ",
        "tcp/9000 ",
        "tcp/80 ",
        "tcp/2121 ",
        "udp/69 ",
    ] {
        status_line(&text, prefix);
    }
    assert!(!text.contains("link"), "{text}");
    assert!(!text.contains("backlog"), "{text}");
    live.link.set(Some(TapStats {
        rx_frames: 12,
        ..TapStats::default()
    }));
    live.backlog.set(Some(BacklogStats {
        syns_held: 3,
        ..BacklogStats::default()
    }));
    let mut text = String::new();
    live.write(&mut text).unwrap();
    assert!(
        status_line(&text, "link ").contains("rx 12 frames"),
        "{text}"
    );
    assert!(
        status_line(&text, "backlog ").contains("3 SYNs held"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Tests against the kernel

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn raw_echo_answers_the_primers_client_over_ipv4_and_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let server = RunningServer::start(&ns, ServicesConfig::DEFAULT);
    ns.enter_current_thread().unwrap();
    primer_echo_client(SocketAddr::new(STACK_V4, ECHO_PORT), b"hello, smoltcp");
    primer_echo_client(SocketAddr::new(STACK_V6, ECHO_PORT), b"hello over IPv6");
    let report = server.stop();
    assert_eq!(report.counters.echo.server.accepted, 2);
    assert_eq!(report.counters.echo_bytes, 14 + 15);
    assert_eq!(report.stop.aborted, 0);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn framed_echo_returns_fifty_back_to_back_messages_whole_over_ipv4_and_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let server = RunningServer::start(&ns, ServicesConfig::DEFAULT);
    ns.enter_current_thread().unwrap();
    // Small messages of differing lengths, one empty: 50 sends in quick
    // succession, which TCP is free to glue together (the primer's sticky packets).
    let messages: Vec<Vec<u8>> = (0..50usize)
        .map(|i| match i {
            25 => Vec::new(),
            _ => format!("message {i}: {}", "x".repeat(i % 7)).into_bytes(),
        })
        .collect();
    for stack in [STACK_V4, STACK_V6] {
        let mut stream = connect(SocketAddr::new(stack, FRAMED_PORT));
        framed_echo_exchange(&mut stream, &messages, 64 * 1024);
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "bytes after the last frame: {rest:?}");
    }
    let report = server.stop();
    assert_eq!(report.counters.framed_echoed, 100);
    assert_eq!(report.counters.framed_stream.read.frames, 100);
    assert_eq!(report.counters.framed_errors, 0);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn a_one_mib_frame_passes_through_two_kib_socket_buffers() {
    if !netns::has_cap_net_admin() {
        return;
    }
    const MIB: u32 = 1024 * 1024;
    let ns = NetNs::create();
    let config = ServicesConfig {
        framed_pool: 1,
        rx_buf: 2048,
        tx_buf: 2048,
        max_frame: MIB,
        ..ServicesConfig::DEFAULT
    };
    let server = RunningServer::start(&ns, config);
    ns.enter_current_thread().unwrap();
    let body: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut stream = connect(SocketAddr::new(STACK_V4, FRAMED_PORT));
    framed_echo_exchange(&mut stream, std::slice::from_ref(&body), MIB);
    drop(stream);
    let report = server.stop();
    let stream = report.counters.framed_stream;
    assert_eq!(stream.read.frames, 1);
    assert_eq!(stream.write.frames, 1);
    assert_eq!(stream.write.body_bytes, u64::from(MIB));
    // A 2 KiB window: the megabyte came in at least 512 pieces. The echo was
    // queued whole in the session's send storage and went out through the 2 KiB
    // send buffer as it drained (the client above got every byte): no answer
    // was ever refused for room.
    assert!(stream.read.reads >= 512, "{stream}");
    assert_eq!(stream.write.blocked_writes, 0, "{stream}");
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn udp_echo_keeps_datagram_boundaries_over_ipv4_and_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let server = RunningServer::start(&ns, ServicesConfig::DEFAULT);
    ns.enter_current_thread().unwrap();
    let datagrams: Vec<Vec<u8>> = [1usize, 3, 100, 1000, 1400, 7]
        .iter()
        .enumerate()
        .map(|(i, &len)| vec![b'a' + i as u8; len])
        .collect();
    for (local, stack) in [(LINUX_V4, STACK_V4), (LINUX_V6, STACK_V6)] {
        let stack = SocketAddr::new(stack, ECHO_PORT);
        let socket = warm_udp_socket(local, stack);
        // All sent before any is read: each still comes back alone and whole.
        for datagram in &datagrams {
            socket.send_to(datagram, stack).unwrap();
        }
        for datagram in &datagrams {
            assert_eq!(&recv_datagram(&socket, stack), datagram);
        }
    }
    let report = server.stop();
    let udp = report.counters.udp;
    assert!(udp.datagrams_in >= 14, "{udp}");
    assert_eq!(udp.datagrams_in, udp.datagrams_out, "{udp}");
    assert_eq!(udp.oversize + udp.send_errors, 0, "{udp}");
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn http_get_from_curl_shows_live_counters_of_every_service() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let server = RunningServer::start(&ns, ServicesConfig::DEFAULT);
    ns.enter_current_thread().unwrap();
    primer_echo_client(SocketAddr::new(STACK_V4, ECHO_PORT), b"count me");
    let mut stream = connect(SocketAddr::new(STACK_V4, FRAMED_PORT));
    framed_echo_exchange(&mut stream, &[b"one".to_vec(), b"two".to_vec()], 1024);
    drop(stream);
    let stack_udp = SocketAddr::new(STACK_V4, ECHO_PORT);
    warm_udp_socket(LINUX_V4, stack_udp);

    let http_v4 = SocketAddr::new(STACK_V4, HTTP_PORT);
    let (status, stats) = http_get(&ns, "192.168.69.1", http_v4, "/stats");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let echo = status_line(&stats, "tcp/7 ");
    assert!(
        echo.contains("1 accepted") && echo.contains("8 B echoed"),
        "{echo}"
    );
    let framed = status_line(&stats, "tcp/9000 ");
    assert!(framed.contains("2 frames echoed"), "{framed}");
    let udp = status_line(&stats, "udp/7 ");
    assert!(!udp.contains("in: 0 datagrams"), "{udp}");
    let link = status_line(&stats, "link ");
    assert!(
        link.contains("rx ") && !link.contains("rx 0 frames"),
        "{link}"
    );
    // The listen backlog in front of the stack had nothing to hold.
    let backlog = status_line(&stats, "backlog ");
    assert!(backlog.contains("0 SYNs held"), "{backlog}");
    let transfer = status_line(&stats, "tcp/2121 ");
    assert!(transfer.contains("0 of 2 open"), "{transfer}");

    // The HTML page, over IPv6.
    let http_v6 = SocketAddr::new(STACK_V6, HTTP_PORT);
    let (status, page) = http_get(&ns, "[fdaa::1]", http_v6, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("<h1>smolsock tap_server</h1>"), "{page}");
    assert!(page.contains("tcp/80 "), "{page}");
    let (status, _) = http_get(&ns, "192.168.69.1", http_v4, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let report = server.stop();
    let http = report.counters.http_requests;
    assert_eq!((http.requests, http.ok, http.client_errors), (3, 2, 1));
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn clients_beyond_the_pool_wait_in_the_backlog_and_are_served_when_a_slot_frees() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let config = ServicesConfig {
        echo_pool: 2,
        ..ServicesConfig::DEFAULT
    };
    let server = RunningServer::start(&ns, config);
    ns.enter_current_thread().unwrap();
    let echo = SocketAddr::new(STACK_V4, ECHO_PORT);
    let mut first = connect(echo);
    echo_round(&mut first, b"first");
    let mut second = connect(echo);
    echo_round(&mut second, b"second");

    // listen(2): both slots are busy. The listen backlog in front of the stack
    // holds a third SYN instead of refusing it (Linux drops a SYN its full
    // backlog cannot take): the third client's connect waits, and its SYN is not
    // answered while no slot is free. The status page shows when the SYN is held.
    let waiting = std::thread::spawn(move || TcpStream::connect_timeout(&echo, IO_TIMEOUT));
    retry(
        "the backlog to hold the third SYN",
        RETRIES,
        RETRY_PAUSE,
        || {
            let status = fetch_status();
            let line = status_line(&status, "backlog ").to_owned();
            if line.contains(" 0 SYNs held") {
                Err(line)
            } else {
                Ok(())
            }
        },
    );
    assert!(
        !waiting.is_finished(),
        "the third client got an answer while both slots were busy"
    );
    // The two served are not disturbed.
    echo_round(&mut first, b"first again");
    echo_round(&mut second, b"second again");

    // One leaves; its slot listens again and the client waiting is served.
    drop(first);
    let mut third = waiting
        .join()
        .unwrap()
        .expect("the waiting client is served once a slot frees");
    third.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    third.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    echo_round(&mut third, b"third, after waiting");
    echo_round(&mut second, b"second, still");

    let report = server.stop();
    assert_eq!(report.counters.echo.server.accepted, 3);
    assert_eq!(report.counters.echo.slots, 2);
    let backlog = report.backlog.expect("the runner has a listen backlog");
    assert!(
        backlog.syns_held >= 1 && backlog.syns_replayed >= 1,
        "{backlog}"
    );
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn a_client_killed_mid_frame_frees_its_slot_for_the_next_client() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let config = ServicesConfig {
        framed_pool: 1,
        ..ServicesConfig::DEFAULT
    };
    let server = RunningServer::start(&ns, config);
    ns.enter_current_thread().unwrap();
    let framed = SocketAddr::new(STACK_V4, FRAMED_PORT);
    let whole = frame(&[0x5a; 100]);

    // Half a frame: the header announces 100 bytes, 50 follow.
    let mut killed = connect(framed);
    killed.write_all(&whole[..54]).unwrap();
    // The only slot is taken: another client's SYN waits in the listen backlog
    // (held, not refused) until the slot frees.
    let waiting = std::thread::spawn(move || TcpStream::connect_timeout(&framed, IO_TIMEOUT));
    // Wait until the server has taken the connection on (not only the stack):
    // a connection opened and reset within one poll of the interface would never
    // reach the server as a connection.
    retry(
        "the server to serve the half frame's connection",
        RETRIES,
        RETRY_PAUSE,
        || {
            let status = fetch_status();
            let line = status_line(&status, "tcp/9000 ").to_owned();
            if line.contains("1 of 1 open") {
                Ok(())
            } else {
                Err(line)
            }
        },
    );
    assert!(
        !waiting.is_finished(),
        "the waiting client got an answer while the only slot was busy"
    );
    // The client dies: the kernel resets the connection, and the slot serves
    // the client that waited.
    reset_on_close(&killed);
    drop(killed);

    let mut next = waiting
        .join()
        .unwrap()
        .expect("the waiting client is served once the slot frees");
    next.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    next.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    framed_echo_exchange(&mut next, &[vec![0x5a; 100]], 1024);
    next.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    next.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(next);

    // A client that closes cleanly mid-frame: the server closes too and serves on.
    let mut cut = connect(framed);
    cut.write_all(&whole[..54]).unwrap();
    cut.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    cut.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no echo of a cut frame: {rest:?}");
    drop(cut);

    let mut last = connect(framed);
    framed_echo_exchange(&mut last, &[b"still serving".to_vec()], 1024);
    drop(last);

    let report = server.stop();
    let counters = report.counters;
    assert_eq!(counters.framed.server.accepted, 4, "{}", counters.framed);
    assert_eq!(counters.framed.server.resets, 1, "{}", counters.framed);
    assert_eq!(counters.framed_errors, 1);
    assert_eq!(counters.framed_stream.read.truncated, 1);
    assert_eq!(counters.framed_echoed, 2);
}

/// Whether every tag opened is closed, in order (void elements aside).
fn balanced_html(html: &str) -> bool {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        let Some(end) = rest[at..].find('>') else {
            return false;
        };
        let tag = &rest[at + 1..at + end];
        rest = &rest[at + end + 1..];
        let name = tag
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap_or("");
        if tag.starts_with('!') || name == "meta" {
            continue;
        }
        if tag.starts_with('/') {
            if open.pop() != Some(name) {
                return false;
            }
        } else {
            open.push(name);
        }
    }
    open.is_empty()
}

#[test]
fn the_live_page_with_every_row_taken_and_long_counters_is_html_and_fits_its_buffer() {
    use all_services::{ConnectionFill, HTTP_PAGE_MAX, LIVE_REFRESH_SECS, LIVE_ROWS};
    use smolsock::http::{Bars, LiveSite, Site};
    use smoltcp::wire::IpEndpoint;

    let live = LiveCounters::default();
    live.link.set(Some(TapStats::default()));
    live.backlog.set(Some(BacklogStats::default()));
    let peer = IpEndpoint::new(
        Ipv6Addr::new(
            0xfdaa, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0x100,
        )
        .into(),
        65535,
    );
    let wide = ConnectionFill {
        service: "framed echo",
        peer,
        receive: (65_536, 65_536),
        send: (12_345, 65_536),
    };
    live.connections.replace(vec![wide; LIVE_ROWS + 5]);
    // Every counter as a 13-digit number: a server up for a long time.
    let mut zeros = String::new();
    live.write(&mut zeros).unwrap();
    let mut long = String::new();
    let mut in_number = false;
    for c in zeros.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                long.push_str("1000000000000");
            }
            in_number = true;
        } else {
            long.push(c);
            in_number = false;
        }
    }
    let status = |out: &mut dyn std::fmt::Write| out.write_str(&long);
    let connections = |bars: &mut Bars<'_>| live.write_connections(bars);
    let site = LiveSite::new("smolsock tap_server", &status, &connections)
        .with_refresh(LIVE_REFRESH_SECS)
        .with_max_rows(LIVE_ROWS);
    let mut page = heapless::String::<HTTP_PAGE_MAX>::new();
    assert_eq!(
        site.render("/", &mut page),
        Some(Ok("text/html; charset=utf-8")),
        "the page fits {HTTP_PAGE_MAX} bytes"
    );
    assert!(balanced_html(&page), "{page}");
    assert_eq!(page.matches("class=\"b\"").count(), 2 * LIVE_ROWS);
    assert!(page.contains("and 5 more."));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
    assert!(page.contains("width:100%") && page.contains("width:18%"));
    // An IPv6 peer in brackets before its port, as std writes it.
    assert!(page.contains("<td>[fdaa:ffff:ffff:ffff:ffff:ffff:ffff:100]:65535</td>"));
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn the_live_page_draws_an_open_connection_as_bars_and_reloads_itself() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let server = RunningServer::start(&ns, ServicesConfig::DEFAULT);
    ns.enter_current_thread().unwrap();
    // An echo connection left open: the page shows it, with its buffers.
    let mut open = connect(SocketAddr::new(STACK_V4, ECHO_PORT));
    open.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    open.read_exact(&mut echoed).unwrap();
    let mut stream = connect(SocketAddr::new(STACK_V6, HTTP_PORT));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: [fdaa::1]\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, page) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(page.contains("<meta http-equiv=\"refresh\""), "{page}");
    assert!(balanced_html(page), "{page}");
    let echo_row = page
        .lines()
        .find(|line| line.starts_with("<tr><td>echo</td>"))
        .unwrap_or_else(|| panic!("no row for the open echo connection in {page}"));
    assert!(echo_row.contains("192.168.69.100:"), "{echo_row}");
    assert_eq!(echo_row.matches("class=\"b\"").count(), 2, "{echo_row}");
    // The page's own connection is on it too, and the counters below.
    assert!(page.contains("<tr><td>http</td>"), "{page}");
    assert!(status_line(page, "tcp/7 ").contains("1 accepted"), "{page}");
    drop(open);
    server.stop();
}

/// A trace the server's thread records into and the test reads afterwards.
#[derive(Clone, Default)]
struct ThreadTrace(Arc<std::sync::Mutex<Vec<smolsock::trace::Record>>>);

impl smolsock::trace::TraceSink for ThreadTrace {
    fn record(&mut self, record: smolsock::trace::Record) {
        if let Ok(mut records) = self.0.lock() {
            records.push(record);
        }
    }
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn the_tap_runner_shows_every_segment_to_a_segment_capture() {
    use smolsock::runner::tap::TapDevice;
    use smolsock::trace::{Event, Flags, SegmentCapture};
    use smoltcp::phy::{PcapMode, PcapWriter};

    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let trace = ThreadTrace::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let root = ScratchDir::new("tap-trace");
    let (thread_trace, thread_stop, thread_root) =
        (trace.clone(), Arc::clone(&stop), root.path().to_owned());
    let thread = ns.spawn(move || {
        let tap = TapConfig::default();
        let device = TapDevice::open(netns::TAP).unwrap();
        let capture = SegmentCapture::new(thread_trace);
        let device = PcapWriter::new(device, capture, PcapMode::Both);
        let mut runner = TapRunner::new(device, &tap, SocketSet::new(vec![])).unwrap();
        let served = serve(
            &mut runner,
            &ServicesConfig::DEFAULT,
            &thread_root,
            tap.stop_check,
            &thread_stop,
            || {
                let _ = ready_tx.send(());
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
        let _ = done_tx.send(());
        served
    });
    ready_rx.recv_timeout(IO_TIMEOUT).unwrap();
    ns.wait_for_carrier();
    ns.enter_current_thread().unwrap();
    let messages: Vec<Vec<u8>> = (0..20usize).map(|i| vec![b'x'; i * 50]).collect();
    let mut stream = connect(SocketAddr::new(STACK_V4, FRAMED_PORT));
    let client_port = stream.local_addr().unwrap().port();
    framed_echo_exchange(&mut stream, &messages, 64 * 1024);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    stop.store(true, Ordering::SeqCst);
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not return after stop was set");
    thread.join().unwrap().unwrap();

    let records = trace.0.lock().unwrap().clone();
    let to_server = smolsock::trace::Conn::new(client_port, FRAMED_PORT);
    let segments: Vec<_> = records
        .iter()
        .filter_map(|r| match r.event {
            Event::Segment(s) if s.conn.same(to_server) => Some(s),
            _ => None,
        })
        .collect();
    let sent: u64 = messages.iter().map(|m| 4 + m.len() as u64).sum();
    for direction in [to_server, to_server.reversed()] {
        let ours: Vec<_> = segments.iter().filter(|s| s.conn == direction).collect();
        let syn = ours
            .iter()
            .find(|s| s.flags.contains(Flags::SYN))
            .unwrap_or_else(|| panic!("no SYN from port {}", direction.local));
        let fin = ours
            .iter()
            .find(|s| s.flags.contains(Flags::FIN))
            .unwrap_or_else(|| panic!("no FIN from port {}", direction.local));
        // The FIN comes right after the last byte: every byte went by.
        let bytes = fin.seq.wrapping_sub(syn.seq).wrapping_sub(1);
        assert_eq!(u64::from(bytes), sent, "from port {}", direction.local);
        let payload: u64 = ours.iter().map(|s| u64::from(s.len)).sum();
        assert!(payload >= sent, "from port {}", direction.local);
    }
}
