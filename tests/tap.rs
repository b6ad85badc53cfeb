//! The TAP device and runner against the Linux kernel's own TCP/IP stack, each test
//! in a network namespace of its own (see `common/netns.rs`), plus `tap-setup.sh`.
//!
//! The services here are a few lines on raw smoltcp sockets, written in the test, so
//! these tests pin the device and the runner alone.
//!
//! They need root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), so they are ignored by
//! default; run them with `cargo test --test tap -- --include-ignored`.
#![cfg(all(feature = "tap", target_os = "linux"))]

#[path = "common/netns.rs"]
mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use smolsock::net::{BacklogStats, Service, TcpServer};
use smolsock::runner::tap::{RunError, StopReport, TapConfig, TapRunner, TapStats};
use smolsock::session::Echo;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;

use netns::{NetNs, NetNsGuard, retry};

const STACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 69, 1));
const STACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1));
const LINUX_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 69, 100));
const LINUX_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100));
const ECHO_PORT: u16 = 7;

/// Bounds on every wait for the real network: generous, only there so a broken
/// stack fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const RETRIES: usize = 50;

// ---------------------------------------------------------------------------
// Tiny services on raw smoltcp sockets

/// UDP echo on port 7: every datagram goes back to its sender, whole.
struct UdpEcho {
    handle: SocketHandle,
}

impl UdpEcho {
    fn add(sockets: &mut SocketSet<'static>) -> Self {
        let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 16384]);
        let handle = sockets.add(udp::Socket::new(buffer(), buffer()));
        Self { handle }
    }
}

impl Service for UdpEcho {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if !socket.is_open() {
            socket.bind(ECHO_PORT).unwrap();
        }
        let mut datagram = [0u8; 2048];
        while socket.can_send() {
            let Ok((len, meta)) = socket.recv_slice(&mut datagram) else {
                break;
            };
            socket.send_slice(&datagram[..len], meta).unwrap();
        }
    }
}

/// TCP echo on port 7: echoes what fits in the send buffer, closes when the peer
/// has closed and everything is echoed, then listens again.
struct TcpEcho {
    handle: SocketHandle,
}

impl TcpEcho {
    fn add(sockets: &mut SocketSet<'static>) -> Self {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        Self {
            handle: sockets.add(socket),
        }
    }
}

impl Service for TcpEcho {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if !socket.is_open() {
            socket.listen(ECHO_PORT).unwrap();
        }
        let mut chunk = [0u8; 4096];
        while socket.can_recv() {
            let room = socket.send_capacity() - socket.send_queue();
            if room == 0 {
                break;
            }
            let len = socket.recv_slice(&mut chunk[..room]).unwrap();
            socket.send_slice(&chunk[..len]).unwrap();
        }
        if !socket.may_recv() && socket.may_send() {
            socket.close();
        }
    }
}

/// Sends a UDP datagram to the Linux side (port 9, discard) each time the test asks,
/// and reports when smoltcp has handed all of them to the device: a way to make the
/// stack write while the link is down.
struct UdpBeacon {
    handle: SocketHandle,
    requested: Arc<AtomicUsize>,
    queued: usize,
    flushed: Arc<AtomicUsize>,
}

impl Service for UdpBeacon {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if !socket.is_open() {
            socket.bind(9999).unwrap();
        }
        while self.queued < self.requested.load(Ordering::SeqCst) && socket.can_send() {
            socket
                .send_slice(
                    b"beacon",
                    (smoltcp::wire::IpAddress::v4(192, 168, 69, 100), 9),
                )
                .unwrap();
            self.queued += 1;
        }
        if socket.send_queue() == 0 {
            self.flushed.store(self.queued, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------
// The stack on its own thread inside the namespace

/// What the stack thread hands back when `run` returns.
struct Finished {
    result: Result<StopReport, RunError>,
    stats: TapStats,
    backlog: Option<BacklogStats>,
}

impl Finished {
    /// The report of a run that ended by the stop flag.
    fn report(&self) -> StopReport {
        match &self.result {
            Ok(report) => *report,
            Err(e) => panic!("the runner failed: {e}"),
        }
    }
}

/// A `TapRunner` serving on a thread inside a namespace; stopped on drop so a
/// failing test does not leave the thread running.
struct RunningStack {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Finished>,
    thread: Option<JoinHandle<()>>,
}

impl RunningStack {
    /// Opens `tap0` inside `ns` on a new thread, adds the services `setup` makes and
    /// runs them until stopped. Returns once the device is open and serving.
    fn start<F>(ns: &NetNs, config: TapConfig, setup: F) -> Self
    where
        F: FnOnce(&mut SocketSet<'static>) -> Vec<Box<dyn Service>> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = ns.spawn(move || {
            // RUST_LOG=debug shows the device's and smoltcp's logs of a failing test.
            let _ = env_logger::builder().is_test(true).try_init();
            let mut runner = TapRunner::open(netns::TAP, &config, SocketSet::new(vec![]))
                .unwrap_or_else(|e| panic!("cannot start the stack: {e}"));
            let mut services = setup(runner.sockets_mut());
            let mut services: Vec<&mut dyn Service> = services
                .iter_mut()
                .map(|s| &mut **s as &mut dyn Service)
                .collect();
            ready_tx.send(()).unwrap();
            let result = runner.run(&mut services, &thread_stop);
            let _ = done_tx.send(Finished {
                result,
                stats: runner.tap_stats(),
                backlog: runner.backlog_stats(),
            });
        });
        ready_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the stack thread did not start (see its panic above)");
        ns.wait_for_carrier();
        Self {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Sets the stop flag and waits (bounded) for `run` to return.
    fn stop(self) -> Finished {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits (bounded) for `run` to return, without asking it to.
    fn join(mut self) -> Finished {
        let finished = self
            .done
            .recv_timeout(Duration::from_secs(30))
            .expect("the runner did not return after stop was set");
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        finished
    }
}

impl Drop for RunningStack {
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

/// The primer's TCP client: send, receive the echo, close.
fn tcp_echo_exchange(addr: SocketAddr, message: &[u8]) {
    let mut stream = connect(addr);
    stream.write_all(message).unwrap();
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, message);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected bytes after the echo: {rest:?}");
}

fn udp_echo_exchange(local: IpAddr, stack: IpAddr) {
    let socket = UdpSocket::bind((local, 0)).unwrap();
    let from_stack = SocketAddr::new(stack, ECHO_PORT);
    let mut buffer = [0u8; 2048];
    // The first datagram may wait for neighbor discovery on either side; send
    // numbered warm-ups until one comes back (bounded), and ignore late copies.
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut attempt = 0u32;
    retry("a first UDP echo", 20, Duration::ZERO, || {
        attempt += 1;
        socket.send_to(format!("warm-up {attempt}").as_bytes(), from_stack)?;
        let (len, from) = socket.recv_from(&mut buffer)?;
        assert_eq!(from, from_stack);
        assert!(buffer[..len].starts_with(b"warm-up "));
        Ok::<(), std::io::Error>(())
    });
    // Three datagrams in a row come back as three, boundaries kept.
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let messages: [&[u8]; 3] = [b"one", b"two two", b"three three three"];
    for message in messages {
        socket.send_to(message, from_stack).unwrap();
    }
    for message in messages {
        let len = loop {
            let (len, from) = socket.recv_from(&mut buffer).unwrap();
            assert_eq!(from, from_stack);
            if !buffer[..len].starts_with(b"warm-up ") {
                break len;
            }
        };
        assert_eq!(&buffer[..len], message);
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn udp_echo_answers_a_kernel_socket_over_ipv4() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(UdpEcho::add(sockets))]
    });
    ns.enter_current_thread().unwrap();
    udp_echo_exchange(LINUX_V4, STACK_V4);
    let finished = stack.stop();
    assert!(finished.stats.rx_frames >= 3 && finished.stats.tx_frames >= 3);
    assert_eq!(finished.stats.rx_errors + finished.stats.tx_errors, 0);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn udp_echo_answers_a_kernel_socket_over_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(UdpEcho::add(sockets))]
    });
    ns.enter_current_thread().unwrap();
    udp_echo_exchange(LINUX_V6, STACK_V6);
    stack.stop();
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tcp_echo_serves_a_kernel_stream_send_recv_close_over_ipv4_and_ipv6() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(TcpEcho::add(sockets))]
    });
    ns.enter_current_thread().unwrap();
    tcp_echo_exchange(SocketAddr::new(STACK_V4, ECHO_PORT), b"hello, smoltcp");
    // The echo socket listens again after each connection.
    tcp_echo_exchange(SocketAddr::new(STACK_V6, ECHO_PORT), b"hello over IPv6");
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tcp_echo_exchange(SocketAddr::new(STACK_V4, ECHO_PORT), &large);
    let finished = stack.stop();
    // The last connection may still be finishing its close; none needs a reset.
    assert_eq!(finished.report().aborted, 0);
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn runner_survives_link_down_and_serves_again_after_link_up() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let requested = Arc::new(AtomicUsize::new(0));
    let flushed = Arc::new(AtomicUsize::new(0));
    let (beacon_requested, beacon_flushed) = (Arc::clone(&requested), Arc::clone(&flushed));
    let stack = RunningStack::start(&ns, TapConfig::default(), move |sockets| {
        let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 512]);
        let beacon = UdpBeacon {
            handle: sockets.add(udp::Socket::new(buffer(), buffer())),
            requested: beacon_requested,
            queued: 0,
            flushed: beacon_flushed,
        };
        vec![Box::new(TcpEcho::add(sockets)), Box::new(beacon)]
    });
    ns.enter_current_thread().unwrap();
    let echo = SocketAddr::new(STACK_V4, ECHO_PORT);
    tcp_echo_exchange(echo, b"before");

    ns.set_link(false);
    // Make the stack write while the link is down: the kernel refuses (EIO).
    requested.store(3, Ordering::SeqCst);
    retry(
        "beacons handed to the device",
        RETRIES,
        RETRY_PAUSE,
        || match flushed.load(Ordering::SeqCst) {
            3 => Ok(()),
            n => Err(n),
        },
    );

    ns.set_link(true);
    // Link down may have dropped addresses (IPv6) and routes; put back what is missing.
    ns.setup_tap();
    ns.wait_for_carrier();
    tcp_echo_exchange(echo, b"after the link came back");
    tcp_echo_exchange(SocketAddr::new(STACK_V6, ECHO_PORT), b"and over IPv6");

    let finished = stack.stop();
    eprintln!("device counters: {}", finished.stats);
    assert!(
        finished.stats.tx_errors >= 1,
        "writes while the link was down should have failed and been counted: {}",
        finished.stats
    );
    assert_eq!(
        finished.stats.last_os_error,
        Some(libc::EIO),
        "{}",
        finished.stats
    );
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn run_ends_with_an_error_instead_of_spinning_when_the_interface_is_deleted() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(TcpEcho::add(sockets))]
    });
    ns.ip(&["link", "del", "dev", netns::TAP]);
    let finished = stack.join();
    match finished.result {
        Err(RunError::Wait(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}"),
        other => panic!("expected a wait error, got {other:?}"),
    }
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn frames_longer_than_the_buffer_are_dropped_and_counted() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    // The device sizes its buffers from the MTU at open (1500); raising the MTU
    // afterwards makes the kernel send frames that do not fit.
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(UdpEcho::add(sockets))]
    });
    ns.ip(&["link", "set", "dev", netns::TAP, "mtu", "9000"]);
    ns.enter_current_thread().unwrap();
    udp_echo_exchange(LINUX_V4, STACK_V4);
    let socket = UdpSocket::bind((LINUX_V4, 0)).unwrap();
    socket
        .send_to(&[0x55; 4000], (STACK_V4, ECHO_PORT))
        .unwrap();
    // A small datagram after the big one still comes back: the device lives on.
    udp_echo_exchange(LINUX_V4, STACK_V4);
    let finished = stack.stop();
    assert_eq!(finished.stats.rx_oversize, 1, "{}", finished.stats);
    assert_eq!(finished.stats.last_error, Some(ErrorKind::InvalidData));
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn stop_closes_open_connections_gracefully_and_the_namespace_is_removed() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let name = ns.name().to_owned();
    let stack = RunningStack::start(&ns, TapConfig::default(), |sockets| {
        vec![Box::new(TcpEcho::add(sockets))]
    });
    let client = ns.spawn(|| {
        let mut stream = connect(SocketAddr::new(STACK_V4, ECHO_PORT));
        stream.write_all(b"ping").unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).unwrap();
        stream
    });
    let mut stream = client.join().unwrap();

    let finished = std::thread::scope(|scope| {
        // The stack closes first: the kernel sees end of stream and closes too.
        let reader = scope.spawn(move || {
            let mut rest = Vec::new();
            let result = stream.read_to_end(&mut rest);
            drop(stream);
            (result.map_err(|e| e.kind()), rest)
        });
        let finished = stack.stop();
        let (result, rest) = reader.join().unwrap();
        assert_eq!(
            result,
            Ok(0),
            "the stack's FIN reads as a clean end of stream"
        );
        assert!(rest.is_empty());
        finished
    });
    assert_eq!(
        finished.report(),
        StopReport {
            closed: 1,
            aborted: 0
        }
    );

    drop(ns);
    assert!(
        !netns::list_namespaces().contains(&name),
        "namespace {name} is still there"
    );
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn stop_resets_connections_still_open_after_the_grace_time() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let config = TapConfig {
        close_grace: smoltcp::time::Duration::from_millis(300),
        ..TapConfig::default()
    };
    let stack = RunningStack::start(&ns, config, |sockets| vec![Box::new(TcpEcho::add(sockets))]);
    ns.enter_current_thread().unwrap();
    // A client that never closes its side.
    let mut stream = connect(SocketAddr::new(STACK_V4, ECHO_PORT));
    stream.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).unwrap();

    let finished = stack.stop();
    assert_eq!(
        finished.report(),
        StopReport {
            closed: 0,
            aborted: 1
        }
    );
    // The reset reached the kernel: the socket is dead for writing.
    let error = retry(
        "a write to fail after the reset",
        RETRIES,
        RETRY_PAUSE,
        || match stream.write(b"x") {
            Ok(n) => Err(n),
            Err(e) => Ok(e.kind()),
        },
    );
    assert!(
        matches!(error, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------
// tap-setup.sh

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tap_setup_up_is_idempotent_status_reports_and_down_removes_everything() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let guard = NetNsGuard::new(netns::unique_name());
    let name = guard.name();

    let first = netns::tap_setup(&["up", "--netns", name]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    assert!(stdout_of(&first).contains("created TAP tap0"));
    let second = netns::tap_setup(&["up", "--netns", name]);
    assert!(second.status.success(), "{}", stderr_of(&second));
    assert!(
        stdout_of(&second).contains("already exists"),
        "{}",
        stdout_of(&second)
    );

    let status = netns::tap_setup(&["status", "--netns", name]);
    assert!(status.status.success(), "{}", stderr_of(&status));
    let text = stdout_of(&status);
    for expected in [
        "interface: tap0",
        &format!("namespace: {name}"),
        "type:      tap",
        "owner:     uid 0",
        "192.168.69.100/24",
        "fdaa::100/64",
    ] {
        assert!(
            text.contains(expected),
            "status lacks {expected:?}:\n{text}"
        );
    }
    // Twice `up` gave each address once.
    assert_eq!(text.matches("192.168.69.100/24").count(), 1, "{text}");

    let down = netns::tap_setup(&["down", "--netns", name]);
    assert!(down.status.success(), "{}", stderr_of(&down));
    assert!(!netns::list_namespaces().iter().any(|n| n == name));
    let again = netns::tap_setup(&["down", "--netns", name]);
    assert!(
        again.status.success(),
        "down twice is fine: {}",
        stderr_of(&again)
    );
    let gone = netns::tap_setup(&["status", "--netns", name]);
    assert!(!gone.status.success());
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tap_setup_overrides_name_and_addresses() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let guard = NetNsGuard::new(netns::unique_name());
    let name = guard.name();
    let up = netns::tap_setup(&[
        "up",
        "--netns",
        name,
        "--name",
        "smol1",
        "--ipv4",
        "10.9.8.7/24",
        "--ipv6",
        "none",
        "--user",
        "nobody",
    ]);
    assert!(up.status.success(), "{}", stderr_of(&up));
    let status = stdout_of(&netns::tap_setup(&[
        "status", "--netns", name, "--name", "smol1",
    ]));
    assert!(status.contains("10.9.8.7/24"), "{status}");
    assert!(!status.contains("fdaa::100"), "{status}");
    assert!(status.contains("(nobody)"), "{status}");

    // An IPv6 address of one's own, and no IPv4.
    let up = netns::tap_setup(&[
        "up",
        "--netns",
        name,
        "--name",
        "smol2",
        "--ipv4",
        "none",
        "--ipv6",
        "fdbb::7/64",
    ]);
    assert!(up.status.success(), "{}", stderr_of(&up));
    let status = stdout_of(&netns::tap_setup(&[
        "status", "--netns", name, "--name", "smol2",
    ]));
    assert!(status.contains("fdbb::7/64"), "{status}");
    assert!(!status.contains("192.168.69.100"), "{status}");
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tap_setup_refuses_a_name_taken_by_a_device_that_is_not_a_tap() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let guard = NetNsGuard::new(netns::unique_name());
    let name = guard.name();
    netns::run_ok(Command::new("ip").args(["netns", "add", name]));
    // A TUN device (layer 3) and a veth pair, both named like our TAP would be.
    netns::run_ok(
        Command::new("ip").args(["-n", name, "tuntap", "add", "name", "tap0", "mode", "tun"]),
    );
    netns::run_ok(Command::new("ip").args([
        "-n", name, "link", "add", "tap1", "type", "veth", "peer", "name", "peer1",
    ]));
    let tun = netns::tap_setup(&["up", "--netns", name]);
    assert!(!tun.status.success());
    assert!(stderr_of(&tun).contains("not a TAP"), "{}", stderr_of(&tun));
    let veth = netns::tap_setup(&["up", "--netns", name, "--name", "tap1"]);
    assert!(!veth.status.success());
    assert!(
        stderr_of(&veth).contains("not a TAP"),
        "{}",
        stderr_of(&veth)
    );
    // `down` will not remove someone else's device either.
    let down = netns::tap_setup(&["down", "--netns", name, "--name", "tap1"]);
    assert!(!down.status.success());
    netns::run_ok(Command::new("ip").args(["-n", name, "link", "show", "dev", "tap1"]));
}

#[test]
fn tap_setup_explains_missing_root_and_missing_ip() {
    // As root, `setpriv` drops to nobody; without root the check applies as it is.
    let script = netns::tap_setup_script();
    let not_root = if netns::is_privileged() {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&script)
            .args(["up", "--netns", "smolsock-test-never-created"])
            .output()
            .expect("cannot run setpriv")
    } else {
        Command::new(&script)
            .args(["up", "--netns", "smolsock-test-never-created"])
            .output()
            .unwrap()
    };
    assert!(!not_root.status.success());
    assert!(
        stderr_of(&not_root).contains("must be run as root"),
        "{}",
        stderr_of(&not_root)
    );

    // With an empty PATH the script finds no `ip` (bash itself is called by path).
    let empty = std::env::temp_dir().join(format!("smolsock-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let no_ip = Command::new("/bin/bash")
        .arg(&script)
        .arg("status")
        .env("PATH", &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    assert!(!no_ip.status.success());
    assert!(
        stderr_of(&no_ip).contains("'ip' not found"),
        "{}",
        stderr_of(&no_ip)
    );

    // In a namespace of its own name: were the name ever let through, nothing
    // would be made in the host's.
    let bad = Command::new(&script)
        .args([
            "up",
            "--name",
            "name-far-too-long",
            "--netns",
            "smolsock-never-made",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr_of(&bad).contains("invalid interface name"),
        "{}",
        stderr_of(&bad)
    );
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn tap_setup_explains_a_missing_dev_net_tun() {
    if !netns::has_cap_net_admin() {
        return;
    }
    // A private mount namespace (nothing propagates back to the host's) where an
    // empty tmpfs hides /dev/net, as on a machine without the tun module.
    let script = netns::tap_setup_script();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none /dev/net && exec "$0" up --netns "$1""#)
        .arg(&script)
        .arg("smolsock-test-never-created")
        .output()
        .expect("cannot run unshare");
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("/dev/net/tun is missing")
            && stderr_of(&output).contains("modprobe tun"),
        "{}",
        stderr_of(&output)
    );
    // It stopped before creating anything.
    assert!(
        !netns::list_namespaces()
            .iter()
            .any(|n| n == "smolsock-test-never-created")
    );
}

// ---------------------------------------------------------------------------
// The listen backlog against the kernel's clients

/// A pool of `N` echo sessions on port 7, as `tap_server` and the firmware run.
fn echo_pool<const N: usize>(sockets: &mut SocketSet<'static>) -> Vec<Box<dyn Service>> {
    let handles: [SocketHandle; N] = std::array::from_fn(|_| {
        sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        ))
    });
    let sessions: [Echo; N] = std::array::from_fn(|_| Echo::new());
    vec![Box::new(
        TcpServer::new(sockets, ECHO_PORT, handles, sessions).unwrap(),
    )]
}

/// One connect, never retried: a refusal (RST) is the failure these tests look for.
fn echo_once(addr: SocketAddr, message: &[u8]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(30))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(message)?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed)?;
    assert_eq!(echoed, message);
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(())
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn a_pool_of_one_serves_a_client_that_reconnects_at_once_every_time() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), echo_pool::<1>);
    ns.enter_current_thread().unwrap();
    // Warm up neighbour discovery and the first connection (bounded retries).
    tcp_echo_exchange(SocketAddr::new(STACK_V4, ECHO_PORT), b"warm-up");
    // Each connection starts the moment the last one is closed by the client,
    // while the pool's one slot may still be finishing that close: never refused.
    for round in 0..20u32 {
        let addr = if round % 2 == 0 { STACK_V4 } else { STACK_V6 };
        let message = format!("round {round}");
        echo_once(SocketAddr::new(addr, ECHO_PORT), message.as_bytes())
            .unwrap_or_else(|e| panic!("round {round} to {addr}: {e}"));
    }
    let finished = stack.stop();
    finished.report();
    let backlog = finished.backlog.expect("the backlog is on by default");
    println!("quick reconnects on a pool of one: {backlog}");
}

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace and a TAP device"]
fn a_burst_of_four_times_the_pool_is_served_with_none_refused() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let stack = RunningStack::start(&ns, TapConfig::default(), echo_pool::<2>);
    ns.enter_current_thread().unwrap();
    tcp_echo_exchange(SocketAddr::new(STACK_V4, ECHO_PORT), b"warm-up");
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..8u32)
        .map(|i| {
            ns.spawn(move || {
                let message = vec![i as u8; 50_000];
                echo_once(SocketAddr::new(STACK_V4, ECHO_PORT), &message)
                    .map_err(|e| format!("client {i}: {e}"))
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap().unwrap();
    }
    println!("8 clients on a pool of 2 served in {:?}", started.elapsed());
    let finished = stack.stop();
    finished.report();
    let backlog = finished.backlog.expect("the backlog is on by default");
    assert!(
        backlog.syns_held > 0,
        "a burst past the pool holds SYNs: {backlog}"
    );
}
