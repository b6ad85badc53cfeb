//! Boots each firmware in QEMU and talks to it over a TAP device, as Linux
//! programs talk to `tap_server`: the poll-loop firmware (`examples/firmware`)
//! and the embassy firmware (`examples/firmware-embassy`). Every check is
//! written once, for a [`Firmware`]; [`on_both!`] makes one test of it per
//! firmware (`poll_loop::NAME` and `embassy::NAME`).
//!
//! Each test builds its firmware, makes a network namespace of its own with
//! `tap0` in it (192.168.69.100/24, fdaa::100/64), starts QEMU inside it with the
//! board's LAN9118 joined to `tap0`, waits for the firmware's "listening" line,
//! and then, from a thread that entered the namespace, checks services as
//! `tests/tap_services.rs` and `tests/tap_examples.rs` check `tap_server`:
//!
//! - every service: ping, UDP echo, TCP echo (with the primer's client,
//!   `host_client echo`, and a plain socket), framed echo with 50 glued
//!   messages, HTTP GET (curl, and a plain socket), and a 1 MiB upload and
//!   download through the transfer protocol with the CRC-32 checked, over IPv4
//!   and IPv6;
//! - the raw echo's pool of one, a connection opened as soon as the last one
//!   closed: a 300 KB echo right after a first echo, an IPv6 echo right after an
//!   IPv4 one, 40 connections one after the other;
//! - more clients than the pool holds, each firmware as its README documents:
//!   the poll loop holds their SYNs in its listen backlog and serves them in
//!   turn (a refused connection fails it at once); embassy-net has no backlog,
//!   so a client past its task pool is refused at once with a reset, and served
//!   once a task listens again. Connecting right after a close may also be
//!   refused on the embassy firmware (its task is still closing the last
//!   connection): there a refused connection is tried again 100 ms later, a
//!   bounded number of times;
//! - the deadlines that free a slot whatever its peer does: a peer that says
//!   nothing and one that sends and never reads (its stack still acknowledging
//!   the firmware's probes) are each ended by the firmware's idle timeout, about
//!   a minute in, and the pools then serve the next client;
//! - the framed echo's 64 KiB frames, echoed piece by piece with no frame
//!   storage: a 60 KB frame whole, a frame of the maximum, and a header over it
//!   answered with a reset;
//! - each firmware's self-test (`run.sh --selftest`), which needs no network;
//! - the embassy firmware's `--features tftp` build (TFTP on udp/69, over the
//!   RAM budget and so not the default): a put with smolsock's std client and a
//!   get with curl over IPv4, a get with the std client over IPv6, every byte
//!   checked; and, after one read requested from an address on the link that
//!   no one owns (a forged datagram, whose DATA can never leave), gets with the
//!   std client and curl once that transfer has ended by its own retries;
//! - each firmware's `--features live` build (the live page on tcp/80, over the
//!   default budget and so not the default): with an echo connection open over
//!   IPv4 and a framed echo one over IPv6, `/` is HTML that reloads itself, has
//!   a row with its buffers for each of them, and shows the counters `/stats`
//!   shows.
//!
//! After each test the firmware's stack must not have reached its floor. On the
//! way the tests print throughput and echo latency (run with `--nocapture` to see
//! them; `examples/firmware-embassy/compare.sh` makes a table of them); QEMU
//! emulates the CPU, so those figures only compare the firmwares, and nothing is
//! asserted about time: every wait is bounded (socket timeouts, a bounded number
//! of tries) and only fails a test when it runs out. QEMU is killed and the
//! namespace deleted on every path out, failures included (drop guards).
//! Nothing is ever created in the host's namespace, and traffic only goes to
//! addresses inside the test's namespace.
//!
//! Needs root (CAP_NET_ADMIN), `qemu-system-arm` and the `thumbv7em-none-eabihf`
//! target, so it is `#[ignore]`d; CI runs it with `--include-ignored`.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::fs::File;
use std::io::ErrorKind;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use smolsock::wire::crc32::crc32;
use smolsock::wire::transfer::FileName;

/// The Linux `transfer` CLI's protocol code (PROTOCOL.md over `std::net`).
#[allow(dead_code)]
#[path = "oracle/transfer_client.rs"]
mod cli;

#[path = "common/examples.rs"]
mod examples;
#[path = "common/scratch.rs"]
mod scratch;
use scratch::{ScratchDir, file_bytes};

const FIRMWARE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
const FIRMWARE_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
const ECHO_PORT: u16 = 7;
const FRAMED_PORT: u16 = 9000;
const HTTP_PORT: u16 = 80;
const TRANSFER_PORT: u16 = 2121;
/// The firmware's largest framed-echo body (`services.rs`), as `tap_server`'s.
const FRAMED_MAX_BODY: usize = 64 * 1024;
/// The bodies of the glued and the bulk framed exchanges: up to 1 KiB each.
const SMALL_BODY: usize = 1024;
/// The line the firmware logs once its services are up.
const READY_LINE: &str = "listening:";
/// How often, and how far apart, the test looks for the ready line: 60 s at most.
const BOOT_POLLS: u32 = 600;
const BOOT_POLL_EVERY: Duration = Duration::from_millis(100);
/// Every socket operation gives up after this long (a hang, not a slow link:
/// QEMU on a busy machine can be slow).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries for operations that may race the first ARP or neighbour discovery.
const TRIES: u32 = 10;
/// Tries for a TCP connection that timed out (each try waits `IO_TIMEOUT`, over
/// several SYN retransmissions). A refused connection is not tried again.
const CONNECT_TRIES: u32 = 3;
/// Tries (`BOOT_POLL_EVERY` apart) for the status page to show what a test waits
/// for: 30 s at most.
const STATUS_POLLS: u32 = 300;

/// How long the firmwares let a connection sit with no progress (their
/// `services.rs`), and how long a test waits for them to end one: three times
/// that, so a slow QEMU does not fail it and a firmware that never ends it does.
const FIRMWARE_IDLE: Duration = Duration::from_secs(60);
const IDLE_WAIT: Duration = Duration::from_secs(3 * 60);
/// The socket buffers of a peer that never reads: small, so that every buffer
/// between it and the firmware fills after a few tens of kilobytes.
const STUCK_BUFFER: libc::c_int = 16 * 1024;

/// Tries for a connection the embassy firmware refused (its task busy or still
/// closing the last connection), 100 ms apart: 3 s at most.
const REFUSED_TRIES: u32 = 30;
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// An address on the firmware's link that no one owns: the firmware's ARP
/// requests for it go unanswered.
const NO_ONES_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 77);
/// How long the embassy firmware's TFTP sockets wait for room before a datagram
/// counts as lost (`SEND_WAIT` in `examples/firmware-embassy/src/tftp.rs`).
const TFTP_SEND_WAIT: Duration = Duration::from_secs(1);

/// The two firmwares: the same board, addresses, ports and status page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Firmware {
    /// `examples/firmware`: smoltcp polled in a loop, smolsock's pools with a
    /// listen backlog in front of the stack.
    PollLoop,
    /// `examples/firmware-embassy`: embassy-executor and embassy-net, one task
    /// per connection, no listen backlog.
    Embassy,
}

/// Which build of a firmware: its services, or its self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Services,
    SelfTest,
    /// The services with TFTP (`--features tftp`; the embassy firmware only).
    Tftp,
    /// The services with the live page on tcp/80 (`--features live`).
    Live,
}

impl Firmware {
    /// Its package's folder.
    fn dir(self) -> PathBuf {
        let folder = match self {
            Self::PollLoop => "examples/firmware",
            Self::Embassy => "examples/firmware-embassy",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join(folder)
    }

    /// Where a build lands: the services where run.sh builds them, each
    /// self-test apart, so that builds in parallel never overwrite each
    /// other's ELF.
    fn target_dir(self, variant: Variant) -> PathBuf {
        let dir = match (self, variant) {
            (Self::PollLoop, Variant::Services) => "target/firmware",
            (Self::PollLoop, Variant::SelfTest) => "target/firmware-selftest",
            (Self::Embassy, Variant::Services) => "target/firmware-embassy",
            (Self::Embassy, Variant::SelfTest) => "target/firmware-embassy-selftest",
            (Self::PollLoop, Variant::Tftp) => "target/firmware-tftp",
            (Self::Embassy, Variant::Tftp) => "target/firmware-embassy-tftp",
            (Self::PollLoop, Variant::Live) => "target/firmware-live",
            (Self::Embassy, Variant::Live) => "target/firmware-embassy-live",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
    }

    fn elf(self, variant: Variant) -> PathBuf {
        let name = match self {
            Self::PollLoop => "smolsock-firmware",
            Self::Embassy => "smolsock-firmware-embassy",
        };
        self.target_dir(variant)
            .join("thumbv7em-none-eabihf/release")
            .join(name)
    }

    /// The title of its status page.
    fn title(self) -> &'static str {
        match self {
            Self::PollLoop => "smolsock firmware",
            Self::Embassy => "smolsock embassy firmware",
        }
    }

    /// A short name, for namespaces and figures.
    fn tag(self) -> &'static str {
        match self {
            Self::PollLoop => "poll",
            Self::Embassy => "embassy",
        }
    }

    /// Whether a SYN that finds every slot of its port busy waits in a listen
    /// backlog (the poll loop) or is refused with a reset (embassy-net).
    fn holds_syns(self) -> bool {
        matches!(self, Self::PollLoop)
    }
}

/// Runs a command to completion and fails the test, with its output, if it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `--remap-path-prefix` flags `examples/firmware/cargo-remap.sh` gives
/// the firmware builds, in the same order (so that a build here and one by
/// run.sh share their artifacts): CARGO_HOME to `cargo-home`, crates.io's
/// registry folder to `crates.io`, the repository's root to `smolsock`, the
/// shortest prefix first (rustc applies the last that matches). The panic
/// locations in `.rodata` then carry no path of this machine, and the
/// firmware's size does not grow with the paths of the checkout and of cargo's
/// home.
fn remap_flags() -> Vec<String> {
    const CRATES_IO_DIR: &str = "index.crates.io-1949cf8c6b5b557f";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let cargo_home = std::env::current_dir()
        .expect("a working directory")
        .join(cargo_home);
    let mut pairs = Vec::new();
    // Cargo uses CARGO_HOME as given: both spellings of a symlinked one.
    for from in [Some(cargo_home.clone()), cargo_home.canonicalize().ok()]
        .into_iter()
        .flatten()
    {
        let from = from.display();
        pairs.push(format!("{from}=cargo-home"));
        pairs.push(format!("{from}/registry/src/{CRATES_IO_DIR}=crates.io"));
    }
    pairs.push(format!("{}=smolsock", root.display()));
    let mut seen = std::collections::HashSet::new();
    pairs.retain(|pair| seen.insert(pair.clone()));
    pairs.sort_by_key(|pair| pair.rfind('=').expect("FROM=TO"));
    pairs
        .into_iter()
        .map(|pair| format!("--remap-path-prefix={pair}"))
        .collect()
}

/// `flags` as a cargo `--config` value for the firmware's target (a TOML array).
fn rustflags_config(flags: &[String]) -> String {
    let quoted: Vec<String> = flags
        .iter()
        .map(|flag| format!("\"{}\"", flag.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!(
        "target.thumbv7em-none-eabihf.rustflags=[{}]",
        quoted.join(", ")
    )
}

/// Builds a firmware with its release (size) profile, its source paths
/// remapped as run.sh remaps them ([`remap_flags`]).
fn build_firmware(firmware: Firmware, variant: Variant) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("--config")
        .arg(rustflags_config(&remap_flags()))
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(firmware.target_dir(variant));
    match variant {
        Variant::SelfTest => {
            command.args(["--features", "selftest"]);
        }
        Variant::Tftp => {
            command.args(["--features", "tftp"]);
        }
        Variant::Live => {
            command.args(["--features", "live"]);
        }
        Variant::Services => {}
    }
    let status = command
        .current_dir(firmware.dir())
        // The firmware's own .cargo/config.toml decides the target, the target
        // directory and the linker script; variables meant for the host build
        // must not override them (nor the remapping flags: cargo ignores
        // `--config` rustflags when one of the RUSTFLAGS variables is set).
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the {firmware:?} firmware did not build");
    let elf = firmware.elf(variant);
    assert!(elf.is_file(), "no firmware at {}", elf.display());
}

/// A network namespace with `tap0` configured as the Linux side of the link;
/// deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    /// A namespace for the test `tag`: tests run in parallel, each in its own.
    fn create(tag: &str) -> Self {
        let name = format!("smolsock-fw-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        // From here on, dropping `namespace` deletes it, whatever fails next.
        let namespace = Self { name };
        let name = namespace.name.as_str();
        run(
            "ip",
            &[
                "netns", "exec", name, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap",
            ],
        );
        run("ip", &["-n", name, "link", "set", "lo", "up"]);
        run("ip", &["-n", name, "link", "set", "tap0", "up"]);
        run(
            "ip",
            &[
                "-n",
                name,
                "addr",
                "add",
                "192.168.69.100/24",
                "dev",
                "tap0",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                name,
                "addr",
                "add",
                "fdaa::100/64",
                "dev",
                "tap0",
                "nodad",
            ],
        );
        namespace
    }

    /// Runs `work` on a thread that has entered the namespace (`setns` changes
    /// the namespace of the calling thread only) and returns what it returns.
    fn run_inside<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        let worker = thread::spawn(move || {
            let namespace = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: `setns` with a valid namespace file descriptor that stays
            // open for the call; it only changes this thread's network namespace.
            let result = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
            work()
        });
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(deleted, Ok(status) if status.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// QEMU running the firmware inside a namespace; killed (by its pid) on drop.
struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Qemu {
    fn boot(namespace: &Namespace, firmware: Firmware, variant: Variant) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", namespace.name));
        let stdout = File::create(&log).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let elf = firmware.elf(variant);
        // `ip netns exec` execs QEMU, so the child's pid is QEMU's.
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace.name, "qemu-system-arm"])
            .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-nic", "tap,ifname=tap0,script=no,downscript=no"])
            .arg("-kernel")
            .arg(&elf)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("qemu-system-arm starts (is it installed?)");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits, a bounded number of times, for the firmware to say it is up.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        for _ in 0..BOOT_POLLS {
            if self.log().contains(READY_LINE) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("QEMU exited early ({status})"));
            }
            thread::sleep(BOOT_POLL_EVERY);
        }
        Err("the firmware never logged that it was listening".into())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // Kills exactly the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends one ICMP echo request through a raw socket and waits for the reply.
fn ping_v4(target: Ipv4Addr, ident: u16, seq: u16) -> Result<(), String> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: a valid socket, a valid `timeval` and its exact size.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(format!("SO_RCVTIMEO: {}", std::io::Error::last_os_error()));
    }

    let payload = b"smolsock firmware ping";
    let mut request = vec![8u8, 0, 0, 0];
    request.extend_from_slice(&ident.to_be_bytes());
    request.extend_from_slice(&seq.to_be_bytes());
    request.extend_from_slice(payload);
    let checksum = internet_checksum(&request);
    request[2..4].copy_from_slice(&checksum.to_be_bytes());

    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(target.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(format!("sendto: {}", std::io::Error::last_os_error()));
    }
    // A raw socket sees every ICMP packet in the namespace; skip all but ours.
    for _ in 0..16 {
        let mut reply = [0u8; 1500];
        // SAFETY: the buffer is valid for its length.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                0,
            )
        };
        let Ok(received) = usize::try_from(received) else {
            return Err(format!(
                "no echo reply: {}",
                std::io::Error::last_os_error()
            ));
        };
        let packet = &reply[..received];
        let header_len = usize::from(packet.first().copied().unwrap_or(0) & 0x0F) * 4;
        let Some(icmp) = packet.get(header_len..) else {
            continue;
        };
        let is_ours = icmp.len() >= 8
            && icmp[0] == 0
            && icmp[4..6] == ident.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes();
        if is_ours {
            return if &icmp[8..] == payload {
                Ok(())
            } else {
                Err("echo reply with another payload".into())
            };
        }
    }
    Err("no matching echo reply".into())
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_echo(server: IpAddr) -> Result<(), String> {
    let local: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let server = SocketAddr::new(server, ECHO_PORT);
    for attempt in 0..TRIES {
        let message = format!("datagram {attempt} to {server}");
        socket
            .send_to(message.as_bytes(), server)
            .map_err(|e| e.to_string())?;
        let mut buffer = [0u8; 1500];
        // The first datagrams may wait on ARP or neighbour discovery; a late
        // echo of an earlier attempt is skipped.
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            if from == server && &buffer[..len] == message.as_bytes() {
                return Ok(());
            }
        }
    }
    Err(format!("no UDP echo from {server} after {TRIES} tries"))
}

/// Connects, with read and write timeouts set.
///
/// The firmwares' pools are small. On the poll loop a SYN that finds its pool
/// busy waits in the listen backlog until a slot frees: the connect then takes
/// longer, but is never refused, so a refusal fails at once. On the embassy
/// firmware a SYN that finds no task listening is refused (its README): tried
/// again after [`REFUSED_PAUSE`], [`REFUSED_TRIES`] times. A timeout is tried
/// again, a bounded number of times, on both.
fn connect(firmware: Firmware, server: SocketAddr) -> Result<TcpStream, String> {
    let mut last_error = String::new();
    let (mut timeouts, mut refusals) = (0, 0);
    while timeouts < CONNECT_TRIES {
        match TcpStream::connect_timeout(&server, IO_TIMEOUT) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                stream
                    .set_write_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                refusals += 1;
                if firmware.holds_syns() {
                    return Err(format!(
                        "{server} refused the connection (a RST to our SYN)"
                    ));
                }
                if refusals >= REFUSED_TRIES {
                    return Err(format!("{server} refused {refusals} connections in a row"));
                }
                thread::sleep(REFUSED_PAUSE);
            }
            Err(error) => {
                timeouts += 1;
                last_error = error.to_string();
            }
        }
    }
    Err(format!(
        "cannot connect to {server} in {CONNECT_TRIES} tries: {last_error}"
    ))
}

/// Sends `len` bytes, reads them all back, closes our side and expects the
/// firmware to close its side. Returns the time it took.
fn tcp_echo(firmware: Firmware, server: IpAddr, len: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let stream = connect(firmware, SocketAddr::new(server, ECHO_PORT))?;
    echo_through(stream, len)?;
    Ok(started.elapsed())
}

/// Sends `len` bytes through a connected tcp/7 stream, reads them all back,
/// closes our side and expects the firmware to close its side.
fn echo_through(mut stream: TcpStream, len: usize) -> Result<(), String> {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();

    // Write on another thread so neither side's buffers can fill up and stall
    // both directions.
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let to_send = data.clone();
    let sending = thread::spawn(move || -> Result<(), String> {
        writer
            .write_all(&to_send)
            .map_err(|e| format!("write: {e}"))?;
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))
    });
    let mut echoed = Vec::with_capacity(len);
    let read = stream.read_to_end(&mut echoed);
    sending
        .join()
        .map_err(|_| "writer panicked".to_string())??;
    read.map_err(|e| format!("read after {} bytes: {e}", echoed.len()))?;
    if echoed != data {
        return Err(format!("echoed {} bytes, not the {len} sent", echoed.len()));
    }
    Ok(())
}

/// Two peers that would hold a slot for ever if only they decided: one that
/// connects to the framed echo and says nothing, and one that sends to the raw
/// echo and never reads, so that the echo fills its window and the firmware's
/// send buffer while the peer's stack still acknowledges every probe. Each must
/// be ended by the firmware (a FIN or a reset) about a minute later, by its
/// idle timeout; then both pools serve the next client.
fn idle_peers_lose_their_slots(firmware: Firmware, server: IpAddr) -> Result<(), String> {
    let silent = connect(firmware, SocketAddr::new(server, FRAMED_PORT))?;
    let mut stuck = connect(firmware, SocketAddr::new(server, ECHO_PORT))?;
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        set_int_option(&stuck, option, STUCK_BUFFER)?;
    }
    let started = Instant::now();
    let sent = fill_until_blocked(&mut stuck)?;
    eprintln!("firmware: the non-reading peer's writes blocked after {sent} bytes");
    let silent_ended = thread::spawn(move || ended_by_peer(silent, started));
    let stuck_ended = reset_by_peer(stuck, started)?;
    let silent_ended = silent_ended
        .join()
        .map_err(|_| "the silent peer's thread panicked".to_string())??;
    eprintln!(
        "firmware: the silent peer was ended after {silent_ended:?}, the non-reading one \
         after {stuck_ended:?} (idle timeout {FIRMWARE_IDLE:?})"
    );
    // Both slots serve again.
    tcp_echo(firmware, server, 1000)?;
    framed_echo(firmware, server, &fifty_bodies())?;
    Ok(())
}

/// Sets an integer socket option at `SOL_SOCKET`.
fn set_int_option(
    stream: &TcpStream,
    option: libc::c_int,
    value: libc::c_int,
) -> Result<(), String> {
    // SAFETY: a valid socket, a valid `c_int` and its exact size.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(format!(
            "setsockopt {option}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Writes to the echo without reading until a write blocks (every buffer on
/// the way is full); returns how many bytes went out. Fails if writes never
/// block: the echo would then be reading without answering.
fn fill_until_blocked(stream: &mut TcpStream) -> Result<usize, String> {
    const LIMIT: usize = 16 * 1024 * 1024;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let chunk = [0x5au8; 4096];
    let mut sent = 0;
    while sent < LIMIT {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(sent);
            }
            Err(e) => return Err(format!("write after {sent} bytes: {e}")),
        }
    }
    Err(format!(
        "{LIMIT} bytes written to an echo that was never read: no back-pressure"
    ))
}

/// Waits, reading, until the firmware ends a connection on which we say
/// nothing: a FIN or a reset. Returns how long after `since` it came.
fn ended_by_peer(mut stream: TcpStream, since: Instant) -> Result<Duration, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    until_ended(since, "a peer that said nothing", || {
        match stream.read(&mut byte) {
            Ok(0) => Ok(true),
            Ok(_) => Err("the framed echo sent bytes nobody asked for".into()),
            Err(e) => ended_by(&e, "silent peer: read"),
        }
    })
}

/// Waits until the firmware resets a connection whose peer never reads: a
/// write then fails with a reset or a broken pipe (it blocks while the
/// connection lives, its buffers full). Returns how long after `since`.
fn reset_by_peer(mut stream: TcpStream, since: Instant) -> Result<Duration, String> {
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    until_ended(since, "a peer that never read", || {
        match stream.write_all(&[0x5a]) {
            Ok(()) => Ok(false),
            Err(e) => ended_by(&e, "non-reading peer: write"),
        }
    })
}

/// Pokes a connection (each poke waits at most a second) until `poke` says
/// the firmware ended it, for at most [`IDLE_WAIT`]; returns how long after
/// `since` the end came.
fn until_ended(
    since: Instant,
    peer: &str,
    mut poke: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    while since.elapsed() < IDLE_WAIT {
        if poke()? {
            return Ok(since.elapsed());
        }
    }
    Err(format!("{peer} still held its slot after {IDLE_WAIT:?}"))
}

/// What a failed read or write says of the connection: still there (it timed
/// out), ended by the firmware (reset, or a broken pipe after one), or broken
/// otherwise.
fn ended_by(error: &std::io::Error, what: &str) -> Result<bool, String> {
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Ok(false),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Ok(true),
        _ => Err(format!("{what}: {error}")),
    }
}

/// A length-framed message as the framed echo expects it: `struct.pack('!I', n)`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Sends `bodies` as frames glued into one write, reads every frame back and
/// checks each came back whole and in order. Returns the time it took and the
/// number of reads the answers needed.
fn framed_echo(
    firmware: Firmware,
    server: IpAddr,
    bodies: &[Vec<u8>],
) -> Result<(Duration, usize), String> {
    let mut stream = connect(firmware, SocketAddr::new(server, FRAMED_PORT))?;
    let glued: Vec<u8> = bodies.iter().flat_map(|body| frame(body)).collect();
    let started = Instant::now();
    // The echo comes back while we still send: write on another thread.
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sending = thread::spawn(move || writer.write_all(&glued));
    let mut pending = Vec::new();
    let mut reads = 0;
    let mut chunk = [0u8; 4096];
    for (i, body) in bodies.iter().enumerate() {
        loop {
            if pending.len() >= 4 {
                let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
                if pending.len() >= 4 + len as usize {
                    break;
                }
            }
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("frame {i}: read: {e}"))?;
            if n == 0 {
                return Err(format!("closed after {i} of {} frames", bodies.len()));
            }
            reads += 1;
            pending.extend_from_slice(&chunk[..n]);
        }
        let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if pending[4..4 + len] != body[..] {
            return Err(format!(
                "frame {i}: {len} bytes back, not the {} sent",
                body.len()
            ));
        }
        pending.drain(..4 + len);
    }
    let took = started.elapsed();
    sending
        .join()
        .map_err(|_| "writer panicked".to_string())?
        .map_err(|e| format!("write: {e}"))?;
    if !pending.is_empty() {
        return Err(format!("{} bytes more than the frames sent", pending.len()));
    }
    Ok((took, reads))
}

/// Fifty frames of lengths 0 to 1,024 with distinct contents.
fn fifty_bodies() -> Vec<Vec<u8>> {
    (0..50usize)
        .map(|i| {
            let len = (i * 97) % (SMALL_BODY + 1);
            (0..len).map(|j| (i * 31 + j) as u8).collect()
        })
        .collect()
}

/// GET `path` with curl; returns the body. curl is what CI installs; a missing
/// curl fails the test rather than skipping the check.
fn curl_get(url: &str) -> Result<String, String> {
    curl(url, &[])
}

/// curl `url` with `flags` besides the usual ones; returns its output.
fn curl(url: &str, flags: &[&str]) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30", "-g"])
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl {url}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("curl {url}: not UTF-8: {e}"))
}

/// GET `path` over a plain socket; returns the status line and the body.
fn raw_get(firmware: Firmware, server: IpAddr, path: &str) -> Result<(String, String), String> {
    let mut stream = connect(firmware, SocketAddr::new(server, HTTP_PORT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: firmware\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {answer:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The number in front of `suffix` on the status page's line for `service`.
fn counter(page: &str, service: &str, suffix: &str) -> Option<u64> {
    let line = page.lines().find(|line| line.starts_with(service))?;
    let before = &line[..line.find(suffix)?];
    before.split_whitespace().last()?.parse().ok()
}

/// Uploads `data` as `name` through `upload_to`, downloads it back through
/// `download_from`, and checks size, CRC-32 and every byte. Returns the upload
/// and download times.
fn transfer_round_trip(
    firmware: Firmware,
    upload_to: IpAddr,
    download_from: IpAddr,
    name: &str,
    data: &[u8],
) -> Result<(Duration, Duration), String> {
    let dir = ScratchDir::new("fw-transfer");
    let source = dir.join("source");
    std::fs::write(&source, data).map_err(|e| e.to_string())?;
    let name = FileName::new(name).map_err(|e| e.to_string())?;
    let expected_crc = crc32(data);

    let stream = connect(firmware, SocketAddr::new(upload_to, TRANSFER_PORT))?;
    let started = Instant::now();
    let mut conn = cli::Connection::open(stream).map_err(|e| format!("HELLO: {e}"))?;
    let mut file = File::open(&source).map_err(|e| e.to_string())?;
    let put = conn
        .put(name, &mut file, false, &mut |_, _| {})
        .map_err(|e| format!("PUT: {e}"))?;
    let upload = started.elapsed();
    if put.size != data.len() as u64 || put.crc != expected_crc {
        return Err(format!(
            "PUT_DONE for {} bytes, CRC {:08x}; sent {} bytes, CRC {expected_crc:08x}",
            put.size,
            put.crc,
            data.len()
        ));
    }
    drop(conn);

    let stream = connect(firmware, SocketAddr::new(download_from, TRANSFER_PORT))?;
    let target = dir.join("downloaded");
    let started = Instant::now();
    let mut conn = cli::Connection::open(stream).map_err(|e| format!("HELLO: {e}"))?;
    // `get` checks the whole file's CRC-32 against GET_READY's.
    let got = conn
        .get(name, &target, false, &mut |_, _| {})
        .map_err(|e| format!("GET: {e}"))?;
    let download = started.elapsed();
    let back = std::fs::read(&target).map_err(|e| e.to_string())?;
    if got.crc != expected_crc || back.len() != data.len() || back != data {
        return Err(format!(
            "downloaded {} bytes, CRC {:08x}; uploaded {} bytes, CRC {expected_crc:08x}",
            back.len(),
            crc32(&back),
            data.len()
        ));
    }
    Ok((upload, download))
}

/// Round trips of a 32-byte message on one tcp/7 connection: p50, p99 and the
/// whole run's time.
fn echo_latency(
    firmware: Firmware,
    server: IpAddr,
    rounds: usize,
) -> Result<(Duration, Duration, Duration), String> {
    let mut stream = connect(firmware, SocketAddr::new(server, ECHO_PORT))?;
    let whole = Instant::now();
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let message = [0x5au8; 32];
    let mut back = [0u8; 32];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        stream.write_all(&message).map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut back)
            .map_err(|e| format!("read: {e}"))?;
        times.push(started.elapsed());
        if back != message {
            return Err("the echo differs".into());
        }
    }
    let whole = whole.elapsed();
    times.sort();
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    Ok((at(50), at(99), whole))
}

fn kib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / 1024.0 / took.as_secs_f64().max(1e-9)
}

/// Builds `host_client` (the primer's client) as the test itself was built, once.
fn host_client() -> PathBuf {
    examples::example(&["host_client"], "host_client")
}

/// Runs `host_client ARGS` (in the caller's namespace) to its end; its stdout.
/// It checks every echo itself and exits with failure on a difference.
fn run_host_client(program: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run host_client: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "host_client {args:?}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

fn check_all(firmware: Firmware) -> Result<(), String> {
    let host_client = host_client();
    let v4 = IpAddr::V4(FIRMWARE_V4);
    let v6 = IpAddr::V6(FIRMWARE_V6);
    udp_echo(v4).map_err(|e| format!("UDP echo over IPv4: {e}"))?;
    // The primer's client first: its connection follows none on tcp/7.
    let out = run_host_client(&host_client, &["echo", "--size", "5000"])?;
    if !out.contains("echo 1 complete") {
        return Err(format!("host_client echo did not complete:\n{out}"));
    }
    let mut pinged = Err(String::new());
    for seq in 0..3 {
        pinged = ping_v4(FIRMWARE_V4, 0x5353, seq);
        if pinged.is_ok() {
            break;
        }
    }
    pinged.map_err(|e| format!("ping over IPv4: {e}"))?;
    let took =
        tcp_echo(firmware, v4, 256 * 1024).map_err(|e| format!("TCP echo over IPv4: {e}"))?;
    let echo_bulk = kib_per_s(256 * 1024, took);
    eprintln!("figure: tcp/7 echo, 256 KiB over IPv4: {took:.2?} ({echo_bulk:.0} KiB/s each way)");
    // A second connection to the same port: the socket listens again.
    tcp_echo(firmware, v4, 1000).map_err(|e| format!("second TCP connection: {e}"))?;
    udp_echo(v6).map_err(|e| format!("UDP echo over IPv6: {e}"))?;
    let took = tcp_echo(firmware, v6, 64 * 1024).map_err(|e| format!("TCP echo over IPv6: {e}"))?;
    eprintln!("firmware: 64 KiB TCP echo over IPv6 in {took:?}");

    let bodies = fifty_bodies();
    for server in [v4, v6] {
        let (_, reads) = framed_echo(firmware, server, &bodies)
            .map_err(|e| format!("framed echo to {server}: {e}"))?;
        eprintln!("firmware: 50 glued frames echoed whole to {server} in {reads} reads");
    }
    let bulk: Vec<Vec<u8>> = (0..256).map(|i| file_bytes(SMALL_BODY, i + 1)).collect();
    let (took, _) =
        framed_echo(firmware, v4, &bulk).map_err(|e| format!("framed echo bulk: {e}"))?;
    let framed_bulk = kib_per_s(256 * SMALL_BODY, took);
    eprintln!(
        "figure: tcp/9000 framed echo, 256 frames of 1 KiB: {took:.2?} ({framed_bulk:.0} KiB/s each way)"
    );

    let page = curl_get("http://192.168.69.1/").map_err(|e| format!("HTTP over IPv4: {e}"))?;
    if !page.contains(&format!("<h1>{}</h1>", firmware.title())) {
        return Err(format!("the home page has no title:\n{page}"));
    }
    let frames = counter(&page, "tcp/9000", "frames echoed");
    if frames < Some(2 * 50 + 256) {
        return Err(format!(
            "the status page shows {frames:?} frames echoed, not the {} sent:\n{page}",
            2 * 50 + 256
        ));
    }
    let stats = curl_get("http://[fdaa::1]/stats").map_err(|e| format!("HTTP over IPv6: {e}"))?;
    let before = counter(&stats, "tcp/80", "requests:")
        .ok_or_else(|| format!("no request counter on /stats:\n{stats}"))?;
    let (status, body) = raw_get(firmware, v4, "/stats").map_err(|e| format!("raw GET: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /stats: {status}"));
    }
    // The counters are live: the page shows them as of the poll before it was
    // rendered, so one request (the curl above) more than the last page showed.
    let now = counter(&body, "tcp/80", "requests:");
    if now != Some(before + 1) {
        return Err(format!(
            "requests counted {now:?} after {before}, not one more:\n{body}"
        ));
    }
    let (status, _) = raw_get(firmware, v6, "/nowhere").map_err(|e| format!("raw GET: {e}"))?;
    if !status.starts_with("HTTP/1.1 404") {
        return Err(format!("GET /nowhere: {status}, not 404"));
    }

    let data = file_bytes(1024 * 1024, 7);
    let (up, down) = transfer_round_trip(firmware, v4, v6, "one-mib.bin", &data)
        .map_err(|e| format!("1 MiB transfer (up IPv4, down IPv6): {e}"))?;
    let (first_up, first_down) = (kib_per_s(data.len(), up), kib_per_s(data.len(), down));
    eprintln!(
        "figure: tcp/2121 1 MiB upload (IPv4) {up:.2?} ({:.0} KiB/s), download (IPv6) {down:.2?} ({:.0} KiB/s)",
        kib_per_s(data.len(), up),
        kib_per_s(data.len(), down)
    );
    // The same name again, other bytes: the store keeps the old file until the
    // new one commits, which needs room for both.
    let data = file_bytes(1024 * 1024, 8);
    let (up, down) = transfer_round_trip(firmware, v6, v4, "one-mib.bin", &data)
        .map_err(|e| format!("1 MiB re-upload (up IPv6, down IPv4): {e}"))?;
    eprintln!(
        "figure: tcp/2121 1 MiB upload (IPv6) {up:.2?} ({:.0} KiB/s), download (IPv4) {down:.2?} ({:.0} KiB/s)",
        kib_per_s(data.len(), up),
        kib_per_s(data.len(), down)
    );

    let rounds = 200;
    let (p50, p99, whole) =
        echo_latency(firmware, v4, rounds).map_err(|e| format!("echo latency: {e}"))?;
    eprintln!("figure: tcp/7 echo of 32 B, {rounds} round trips: p50 {p50:.2?}, p99 {p99:.2?}");
    let stack = status_counter(firmware, v4, "stack", "B of")?;
    // One line for compare.sh: the figures of this firmware, side by side with
    // the other's.
    println!(
        "figures: {} echo_round_trips_per_s={:.0} echo_kib_per_s={echo_bulk:.0} \
         framed_kib_per_s={framed_bulk:.0} upload_kib_per_s={first_up:.0} \
         download_kib_per_s={first_down:.0} stack_high_water={stack}",
        firmware.tag(),
        rounds as f64 / whole.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// Echo connections to the pool of one, each opened as soon as the one before
/// has closed (its slot may still be closing: the SYN waits in the backlog):
/// `(server, bytes)` each.
fn echoes_back_to_back(firmware: Firmware, steps: &[(IpAddr, usize)]) -> Result<(), String> {
    for (i, &(server, len)) in steps.iter().enumerate() {
        let took = tcp_echo(firmware, server, len).map_err(|e| {
            format!(
                "echo {} of {}, {len} B to {server}: {e}",
                i + 1,
                steps.len()
            )
        })?;
        if len >= 64 * 1024 {
            eprintln!(
                "figure: tcp/7 echo, {} KiB to {server} right after another connection: {took:.2?}",
                len / 1024
            );
        }
    }
    eprintln!(
        "firmware: {} echo connections one after the other",
        steps.len()
    );
    Ok(())
}

/// `clients` echo clients at once on the pool of one: the first holds the slot
/// while the others connect (their SYNs wait in the listen backlog, which the
/// status page shows), then each is served in turn, `len` bytes each way.
fn concurrent_echoes(server: IpAddr, clients: usize, len: usize) -> Result<(), String> {
    let firmware = Firmware::PollLoop;
    let address = SocketAddr::new(server, ECHO_PORT);
    let held_before = status_counter(firmware, server, "backlog", "SYNs held")?;
    let mut first = connect(firmware, address)?;
    // Served: the slot is this client's now.
    first.write_all(b"first").map_err(|e| e.to_string())?;
    let mut back = [0u8; 5];
    first
        .read_exact(&mut back)
        .map_err(|e| format!("first client: {e}"))?;
    let waiting: Vec<_> = (1..clients)
        .map(|_| {
            thread::spawn(move || {
                connect(firmware, address).and_then(|stream| echo_through(stream, len))
            })
        })
        .collect();
    // Bounded wait until the firmware holds every other client's SYN.
    let others = (clients - 1) as u64;
    let mut held = held_before;
    for _ in 0..STATUS_POLLS {
        held = status_counter(firmware, server, "backlog", "SYNs held")?;
        if held >= held_before + others {
            break;
        }
        thread::sleep(BOOT_POLL_EVERY);
    }
    if held < held_before + others {
        return Err(format!(
            "{} SYNs held while the first client had the slot, not {others}",
            held - held_before
        ));
    }
    // The first one leaves; the others are served, one at a time.
    first
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("first client: {e}"))?;
    let mut rest = Vec::new();
    first
        .read_to_end(&mut rest)
        .map_err(|e| format!("first client: {e}"))?;
    for (i, client) in waiting.into_iter().enumerate() {
        client
            .join()
            .map_err(|_| "a client thread panicked".to_string())?
            .map_err(|e| format!("client {} of {clients}: {e}", i + 2))?;
    }
    eprintln!("firmware: {clients} echo clients at once on a pool of one, served in turn");
    Ok(())
}

/// `clients` echo clients at once on the embassy firmware's pool of one: while
/// the first holds the task, every other is refused at once (a RST to its SYN:
/// embassy-net has no listen backlog), and the status page counts nothing for
/// them; once the first has gone, the next connection is served.
fn clients_refused_past_the_task_pool(
    server: IpAddr,
    clients: usize,
    len: usize,
) -> Result<(), String> {
    let address = SocketAddr::new(server, ECHO_PORT);
    let mut first = connect(Firmware::Embassy, address)?;
    first.write_all(b"first").map_err(|e| e.to_string())?;
    let mut back = [0u8; 5];
    first
        .read_exact(&mut back)
        .map_err(|e| format!("first client: {e}"))?;
    for i in 1..clients {
        match TcpStream::connect_timeout(&address, IO_TIMEOUT) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {}
            Err(error) => {
                return Err(format!(
                    "client {} of {clients}: {error}, not refused",
                    i + 1
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "client {} of {clients} connected while the one task was busy",
                    i + 1
                ));
            }
        }
    }
    // The first still has its echo: the refusals touched nothing of it.
    first.write_all(b"again").map_err(|e| e.to_string())?;
    first
        .read_exact(&mut back)
        .map_err(|e| format!("first client after the refusals: {e}"))?;
    if &back != b"again" {
        return Err("the first client's echo changed".into());
    }
    first
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("first client: {e}"))?;
    let mut rest = Vec::new();
    first
        .read_to_end(&mut rest)
        .map_err(|e| format!("first client: {e}"))?;
    // The task listens again: served (after a refusal or two while it closes).
    tcp_echo(Firmware::Embassy, server, len).map_err(|e| format!("after the first left: {e}"))?;
    eprintln!(
        "firmware: {} of {clients} clients refused at once while the one task was busy, \
         the next served once it was free",
        clients - 1
    );
    Ok(())
}

/// More echo clients than the pool of one holds, as each firmware documents.
fn clients_past_the_pool(firmware: Firmware) -> Result<(), String> {
    match firmware {
        Firmware::PollLoop => concurrent_echoes(v4(), 4, 16 * 1024),
        Firmware::Embassy => clients_refused_past_the_task_pool(v4(), 4, 16 * 1024),
    }
}

/// Frames of up to the maximum, one per connection and glued, then a header
/// over the maximum, which the firmware answers with a reset.
fn large_frames(firmware: Firmware, v4: IpAddr, v6: IpAddr) -> Result<(), String> {
    let sixty = vec![file_bytes(60_000, 60)];
    let (took, reads) =
        framed_echo(firmware, v6, &sixty).map_err(|e| format!("a 60 KB frame over IPv6: {e}"))?;
    eprintln!("figure: tcp/9000 one 60 KB frame over IPv6: {took:.2?}, {reads} reads");
    let glued = vec![
        file_bytes(FRAMED_MAX_BODY, 61),
        Vec::new(),
        file_bytes(60_000, 62),
        b"after".to_vec(),
    ];
    framed_echo(firmware, v4, &glued).map_err(|e| format!("frames of the maximum, glued: {e}"))?;

    let mut stream = connect(firmware, SocketAddr::new(v4, FRAMED_PORT))?;
    let header = u32::try_from(FRAMED_MAX_BODY + 1).map_err(|e| e.to_string())?;
    stream
        .write_all(&header.to_be_bytes())
        .map_err(|e| format!("oversize header: {e}"))?;
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(0) => Err("a header over the maximum: closed, not reset".into()),
        Ok(n) => Err(format!(
            "a header over the maximum: {n} bytes back, not a reset"
        )),
        Err(e) => Err(format!("a header over the maximum: {e}, not a reset")),
    }
}

/// The number in front of `suffix` on `service`'s line of `/stats`.
fn status_counter(
    firmware: Firmware,
    server: IpAddr,
    service: &str,
    suffix: &str,
) -> Result<u64, String> {
    let (status, body) =
        raw_get(firmware, server, "/stats").map_err(|e| format!("GET /stats: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /stats: {status}"));
    }
    counter(&body, service, suffix)
        .ok_or_else(|| format!("no {service:?} counter {suffix:?} on /stats:\n{body}"))
}

/// After a test's traffic, the stack's painted floor must still be there: a stack
/// that reached its bottom has run into the statics below it.
fn stack_fits(firmware: Firmware) -> Result<(), String> {
    let (_, stats) = raw_get(firmware, IpAddr::V4(FIRMWARE_V4), "/stats")
        .map_err(|e| format!("last GET /stats: {e}"))?;
    eprintln!("firmware: /stats at the end:\n{stats}");
    let used = counter(&stats, "stack", "B of");
    let size = stats
        .lines()
        .find(|line| line.starts_with("stack"))
        .and_then(|line| line.split("B of").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    match (used, size) {
        (Some(used), Some(size)) if used < size => Ok(()),
        _ => Err(format!(
            "the stack used {used:?} of {size:?} bytes: it may have overflowed"
        )),
    }
}

/// Boots `firmware` in a namespace of its own, runs `check` on a thread inside
/// it, then checks the stack; fails the test with the firmware's log if either
/// fails.
fn on_firmware(
    firmware: Firmware,
    tag: &str,
    check: impl FnOnce() -> Result<(), String> + Send + 'static,
) {
    on_build(firmware, Variant::Services, tag, check);
}

/// [`on_firmware`] for a given build of the firmware.
fn on_build(
    firmware: Firmware,
    variant: Variant,
    tag: &str,
    check: impl FnOnce() -> Result<(), String> + Send + 'static,
) {
    let started = Instant::now();
    build_firmware(firmware, variant);
    eprintln!("firmware: {firmware:?} built in {:?}", started.elapsed());

    // Declared in this order so QEMU is killed before its namespace goes.
    let namespace = Namespace::create(&format!("{}-{tag}", firmware.tag()));
    let mut qemu = Qemu::boot(&namespace, firmware, variant);
    let booted = Instant::now();
    let outcome = qemu.wait_until_ready().and_then(|()| {
        eprintln!("firmware: ready {:?} after QEMU started", booted.elapsed());
        namespace.run_inside(move || check().and_then(|()| stack_fits(firmware)))
    });
    if let Err(why) = outcome {
        panic!("{why}\n--- {firmware:?} firmware log ---\n{}", qemu.log());
    }
    eprintln!("firmware: whole test {:?}", started.elapsed());
}

/// Builds `firmware`'s self-test, runs it under QEMU with no network (a
/// restricted user-mode peer for the LAN9118, so that QEMU does not warn of a
/// NIC with no peer) and expects every check to pass.
fn selftest(firmware: Firmware) {
    build_firmware(firmware, Variant::SelfTest);
    let log = std::env::temp_dir().join(format!(
        "smolsock-fw-selftest-{}-{}.log",
        firmware.tag(),
        std::process::id()
    ));
    let stdout = File::create(&log).expect("log file");
    let stderr = stdout.try_clone().expect("log file");
    let mut child = Command::new("qemu-system-arm")
        .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-nic", "user,restrict=on,model=lan9118"])
        .arg("-kernel")
        .arg(firmware.elf(Variant::SelfTest))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("qemu-system-arm starts (is it installed?)");
    // The self-test exits QEMU itself; a hang is killed after a bounded wait.
    let mut status = None;
    for _ in 0..BOOT_POLLS {
        if let Ok(Some(exited)) = child.try_wait() {
            status = Some(exited);
            break;
        }
        thread::sleep(BOOT_POLL_EVERY);
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    eprintln!("{output}");
    let passed = status.is_some_and(|status| status.success());
    assert!(
        passed,
        "{firmware:?} self-test failed ({status:?}):\n{output}"
    );
    assert!(output.contains("passed, 0 failed"), "{output}");
    assert!(!output.contains("has no peer"), "QEMU warned:\n{output}");
}

fn v4() -> IpAddr {
    IpAddr::V4(FIRMWARE_V4)
}

fn v6() -> IpAddr {
    IpAddr::V6(FIRMWARE_V6)
}

/// One `#[test]` per firmware for each check: `poll_loop::NAME` and
/// `embassy::NAME`, each `#[ignore]`d with the given reason.
macro_rules! on_both {
    ($(
        $(#[doc = $doc:literal])*
        #[ignore = $why:literal]
        fn $name:ident($firmware:ident) $body:block
    )*) => {
        mod poll_loop {
            use super::*;
            $(
                $(#[doc = $doc])*
                #[test]
                #[ignore = $why]
                fn $name() {
                    let $firmware = Firmware::PollLoop;
                    $body
                }
            )*
        }

        mod embassy {
            use super::*;
            $(
                $(#[doc = $doc])*
                #[test]
                #[ignore = $why]
                fn $name() {
                    let $firmware = Firmware::Embassy;
                    $body
                }
            )*
        }
    };
}

on_both! {
    /// Every service over IPv4 and IPv6, with the figures.
    #[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
    fn serves_every_service_over_ipv4_and_ipv6(firmware) {
        on_firmware(firmware, "all", move || check_all(firmware));
    }

    /// Connections to the pool of one, each opened as soon as the last closed:
    /// 300 KB after a first echo, IPv6 after IPv4, then 40 in a row.
    #[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
    fn echoes_on_connections_opened_right_after_the_last_closed(firmware) {
        on_firmware(firmware, "again", move || {
            echoes_back_to_back(firmware, &[(v4(), 1000), (v4(), 300_000)])?;
            echoes_back_to_back(firmware, &[(v4(), 1000), (v6(), 64 * 1024), (v4(), 1000)])?;
            let steps: Vec<(IpAddr, usize)> = (0..40)
                .map(|i| (if i % 2 == 0 { v4() } else { v6() }, 100 + 37 * i))
                .collect();
            echoes_back_to_back(firmware, &steps)
        });
    }

    /// 4 echo clients at once on a pool of one: held and served in turn (poll
    /// loop), or the extra ones refused at once and the next served once the
    /// task is free (embassy).
    #[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
    fn four_echo_clients_on_a_pool_of_one_as_documented(firmware) {
        on_firmware(firmware, "pool", move || clients_past_the_pool(firmware));
    }

    /// 64 KiB frames echoed whole with no frame storage; a header over it reset.
    #[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
    fn echoes_64_kib_frames_whole_with_no_frame_storage(firmware) {
        on_firmware(firmware, "large", move || large_frames(firmware, v4(), v6()));
    }

    /// A peer that says nothing and one that never reads each lose their slot
    /// to the idle timeout, and the pools serve again.
    #[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
    fn frees_the_slots_of_a_silent_and_a_non_reading_peer(firmware) {
        on_firmware(firmware, "idle", move || idle_peers_lose_their_slots(firmware, v4()));
    }

    /// The `--features live` build: `/` draws a row for each open connection
    /// and shows the counters `/stats` shows.
    #[ignore = "needs CAP_NET_ADMIN, qemu-system-arm and curl: boots the firmware in a namespace"]
    fn serves_the_live_page_with_a_row_per_connection(firmware) {
        on_build(firmware, Variant::Live, "live", move || live_page(firmware));
    }

    /// The firmware's own self-test, with no network.
    #[ignore = "needs qemu-system-arm: runs the firmware's self-test under emulation"]
    fn selftest_passes_under_qemu(firmware) {
        selftest(firmware);
    }
}

/// GET `url` with curl; returns the `Content-Type` and the body.
fn curl_get_typed(url: &str) -> Result<(String, String), String> {
    let text = curl(url, &["--write-out", "\n%{content_type}"])?;
    let (body, content_type) = text
        .rsplit_once('\n')
        .ok_or_else(|| format!("curl {url}: no content type after the body"))?;
    Ok((content_type.to_string(), body.to_string()))
}

/// The counters of the live page: the text of its `<pre>`, unescaped.
fn live_counters(page: &str) -> Result<String, String> {
    let start = page
        .find("<pre>\n")
        .ok_or_else(|| format!("no counters on the live page:\n{page}"))?;
    let rest = &page[start + "<pre>\n".len()..];
    let end = rest
        .find("</pre>")
        .ok_or_else(|| format!("the counters never end:\n{page}"))?;
    Ok(rest[..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&"))
}

/// The line of `service` in the counters `text`.
fn counter_line<'t>(text: &'t str, service: &str) -> Result<&'t str, String> {
    text.lines()
        .find(|line| line.starts_with(service))
        .ok_or_else(|| format!("no {service:?} line in:\n{text}"))
}

/// The live page (`--features live`) with two connections held open: an echo
/// over IPv4 and a framed echo over IPv6, each used once so that its task or
/// slot serves it. `/` must be HTML with a meta refresh, a row for each of
/// them (service, our address and port, both buffers with the capacities the
/// firmware gives them), and the counters `/stats` shows.
///
/// The counters are compared across three requests made one after the
/// other: `/stats`, `/`, `/stats`. Between them only HTTP traffic moves:
/// the two connections held open are idle (each echoed all it was sent and
/// read it back before the first request), nothing else talks to the
/// firmware. So the echo, UDP, framed echo and transfer lines (pool counters,
/// connections open, bytes and frames echoed) are the same on all three; the
/// link's frame counts, the uptime and the stack's high-water mark move with
/// the HTTP requests and are not compared. The HTTP line moves by exactly one
/// request per page: each page counts the requests before it, not itself
/// (as `serves_every_service_over_ipv4_and_ipv6` checks for `/stats`).
fn live_page(firmware: Firmware) -> Result<(), String> {
    let mut echo = connect(firmware, SocketAddr::new(v4(), ECHO_PORT))?;
    echo.write_all(b"live")
        .map_err(|e| format!("echo write: {e}"))?;
    let mut back = [0u8; 4];
    echo.read_exact(&mut back)
        .map_err(|e| format!("echo read: {e}"))?;
    if &back != b"live" {
        return Err(format!("echoed {back:?}, not \"live\""));
    }
    let mut framed = connect(firmware, SocketAddr::new(v6(), FRAMED_PORT))?;
    framed
        .write_all(&frame(b"live"))
        .map_err(|e| format!("framed write: {e}"))?;
    let mut back = [0u8; 8];
    framed
        .read_exact(&mut back)
        .map_err(|e| format!("framed read: {e}"))?;
    if back[..] != frame(b"live")[..] {
        return Err(format!("framed echo sent back {back:?}"));
    }
    let echo_peer = echo.local_addr().map_err(|e| e.to_string())?;
    let framed_peer = framed.local_addr().map_err(|e| e.to_string())?;

    let (_, before) = curl_get_typed("http://192.168.69.1/stats")?;
    let (content_type, page) = curl_get_typed("http://192.168.69.1/")?;
    let (stats_type, after) = curl_get_typed("http://[fdaa::1]/stats")?;
    eprintln!("firmware: the live page:\n{page}");
    if !content_type.starts_with("text/html") || !stats_type.starts_with("text/plain") {
        return Err(format!(
            "content types {content_type:?} for / and {stats_type:?} for /stats"
        ));
    }
    if !page.starts_with("<!doctype html>") || !page.trim_end().ends_with("</html>") {
        return Err(format!("/ is not a whole HTML page:\n{page}"));
    }
    if !page.contains("<meta http-equiv=\"refresh\" content=\"2\">") {
        return Err(format!("/ does not reload itself every 2 s:\n{page}"));
    }
    if !page.contains(&format!("<h1>{}</h1>", firmware.title())) {
        return Err(format!("/ has not the firmware's title:\n{page}"));
    }
    // Our side of each connection, as the firmware sees its peer; both
    // buffers are 2 KiB for either service.
    for (service, peer) in [("echo", echo_peer), ("framed echo", framed_peer)] {
        let cells = format!("<tr><td>{service}</td><td>{peer}</td>");
        let row = page
            .lines()
            .find(|line| line.starts_with(&cells))
            .ok_or_else(|| format!("no row {cells:?} on the live page:\n{page}"))?;
        if row.matches("<span class=\"b\">").count() != 2
            || row.matches("/2048 B</td>").count() != 2
        {
            return Err(format!(
                "the {service} row has not its two 2 KiB buffers: {row}"
            ));
        }
    }
    // And the HTTP connection the page itself came on.
    if !page.contains("<tr><td>http</td><td>192.168.69.100:") {
        return Err(format!("no row for the page's own connection:\n{page}"));
    }

    let shown = live_counters(&page)?;
    for service in ["tcp/7 ", "udp/7 ", "tcp/9000 ", "tcp/2121 "] {
        let lines = [
            counter_line(&before, service)?,
            counter_line(&shown, service)?,
            counter_line(&after, service)?,
        ];
        if lines[0] != lines[1] || lines[1] != lines[2] {
            return Err(format!(
                "{service}differs between /stats, / and /stats:\n{}\n{}\n{}",
                lines[0], lines[1], lines[2]
            ));
        }
    }
    if !counter_line(&shown, "tcp/7 ")?.contains("1 of 1 open") {
        return Err(format!("the page does not count the open echo:\n{shown}"));
    }
    let requests = |text: &str| {
        counter(text, "tcp/80", "requests:")
            .ok_or_else(|| format!("no request counter in:\n{text}"))
    };
    let (first, shown_requests, last) = (requests(&before)?, requests(&shown)?, requests(&after)?);
    if shown_requests != first + 1 || last != shown_requests + 1 {
        return Err(format!(
            "requests counted {first}, then {shown_requests} on the page, then {last}: \
             not one more each time"
        ));
    }
    for name in ["link", "uptime", "stack"] {
        counter_line(&shown, name)?;
    }
    drop((echo, framed));
    Ok(())
}

/// Puts `data` as `name` with smolsock's std client. The first datagram may
/// race ARP: a put that fails is tried again, a bounded number of times.
fn tftp_put(server: SocketAddr, name: FileName, data: &[u8]) -> Result<(), String> {
    use smolsock::tftp::{ClientConfig, std_net};
    let mut put = Err("never tried".to_string());
    for _ in 0..TRIES {
        put = std_net::put(server, name, ClientConfig::DEFAULT, data, |_, _| {})
            .map_err(|e| format!("std put: {e}"));
        if put.is_ok() {
            break;
        }
    }
    if put? != data.len() as u64 {
        return Err("std put: wrong size".into());
    }
    Ok(())
}

/// Puts a file with smolsock's std client and gets it back with curl over IPv4,
/// then with the std client over IPv6 (a window of 4), every byte checked. The
/// first datagram may race ARP: a put that times out is tried again, a bounded
/// number of times.
fn tftp_round_trip() -> Result<(), String> {
    use smolsock::tftp::{ClientConfig, std_net};
    use smolsock::transfer::SliceSink;
    let data: Vec<u8> = (0..100_000usize).map(|i| (i * 7 + i / 251) as u8).collect();
    let name = FileName::new("boot.img").map_err(|e| e.to_string())?;
    tftp_put(SocketAddr::new(v4(), 69), name, &data)?;
    let started = Instant::now();
    let dir = ScratchDir::new("fw-tftp");
    let local = dir.join("boot.img");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&local)
        .arg("tftp://192.168.69.1/boot.img")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl tftp get: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let back = std::fs::read(&local).map_err(|e| e.to_string())?;
    if back != data {
        return Err(format!("curl got {} bytes, not the file", back.len()));
    }
    let mut into = vec![0u8; data.len()];
    let config = ClientConfig {
        window: Some(4),
        ..ClientConfig::DEFAULT
    };
    let got = std_net::get(
        SocketAddr::new(v6(), 69),
        name,
        config,
        SliceSink::new(&mut into),
        |_, _| {},
    )
    .map_err(|e| format!("std get over IPv6: {e}"))?;
    if got != data.len() as u64 || into != data {
        return Err(format!("std get over IPv6: {got} bytes, not the file"));
    }
    eprintln!(
        "tftp: two gets of {} B (curl, IPv4; std, IPv6) in {:?}",
        data.len(),
        started.elapsed()
    );
    Ok(())
}

/// The embassy firmware's TFTP build: a put and gets with the std client and
/// curl, over IPv4 and IPv6.
#[test]
#[ignore = "needs CAP_NET_ADMIN, qemu-system-arm and curl: boots the firmware in a namespace"]
fn embassy_serves_tftp_from_its_store() {
    on_build(Firmware::Embassy, Variant::Tftp, "tftp", tftp_round_trip);
}

/// How long a read by a peer that never answers ARP holds the firmware's one
/// TFTP transfer, from its request: the first DATA, `max_tries`
/// retransmissions, then the ERROR it gives up with, each a step after the one
/// before (`ServerConfig::DEFAULT`, which the firmware serves with). A step is
/// the server's timeout, or the send wait when that is longer: a send behind
/// the datagram to the stuck peer waits it out before the next timeout is
/// looked at. 7 s with a 1 s timeout, 5 tries and a 1 s send wait.
fn stuck_transfer_span() -> Duration {
    tftp_step() * (u32::from(smolsock::tftp::ServerConfig::DEFAULT.max_tries) + 2)
}

/// The firmware's TFTP retransmission timeout, or its send wait when that is
/// longer: how far apart the sends of a transfer behind a stuck datagram are.
fn tftp_step() -> Duration {
    let timeout = smolsock::tftp::ServerConfig::DEFAULT.timeout;
    Duration::from_micros(timeout.total_micros()).max(TFTP_SEND_WAIT)
}

/// Sends `payload` in a UDP datagram from `from`, an address this host does not
/// have, to `to`: through a raw socket that writes the IPv4 header itself
/// (`IPPROTO_RAW` implies `IP_HDRINCL`). The kernel routes it by its
/// destination, out of `tap0`.
fn send_forged_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Result<(), String> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    let udp_len = u16::try_from(8 + payload.len()).map_err(|_| "payload too long")?;
    let total_len = udp_len.checked_add(20).ok_or("payload too long")?;
    let mut packet = vec![0x45, 0]; // IPv4, a 20-byte header; no TOS
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0]); // no ID (the kernel fills it), DF
    packet.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, the checksum below
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // no UDP checksum, which IPv4 allows
    packet.extend_from_slice(payload);

    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    match usize::try_from(sent) {
        Ok(sent) if sent == packet.len() => Ok(()),
        Ok(sent) => Err(format!("sendto: {sent} of {} bytes", packet.len())),
        Err(_) => Err(format!("sendto: {}", std::io::Error::last_os_error())),
    }
}

/// One read requested from an address on the link that no one owns, then reads
/// as usual. The firmware answers the forged request from its transfer socket
/// (on the forged transfer's own port) and ARPs for the address, in vain: the
/// stack keeps that DATA at the head of the socket's one-datagram send queue
/// for good, and every later send on the socket would wait behind it unless
/// the firmware's wrapper empties the queue (a send that times out closes the
/// socket and binds it again; so does the next transfer, on its new port).
///
/// A file is put first (the first datagram may race ARP: a bounded number of
/// tries, as in [`tftp_round_trip`]), and a get right after the forged request
/// must be refused busy: the forged transfer holds the server. Once that
/// transfer has had time to end by its own retries ([`stuck_transfer_span`]
/// from the forged request), a get with smolsock's std client, and then one
/// with curl, must bring the file back, every byte checked. A get still
/// refused busy (a slow QEMU) is tried again a step later, a bounded number of
/// times.
fn tftp_after_a_read_by_no_one() -> Result<(), String> {
    use smolsock::tftp::packet::ErrorCode;
    use smolsock::tftp::std_net::StdError;
    use smolsock::tftp::{ClientConfig, TftpError, std_net};
    use smolsock::transfer::SliceSink;

    let data = file_bytes(20_000, 69);
    let name = FileName::new("stuck.img").map_err(|e| e.to_string())?;
    let server = SocketAddr::new(v4(), 69);
    tftp_put(server, name, &data)?;

    let mut into = vec![0u8; data.len()];
    let mut get = || {
        into.fill(0);
        let got = std_net::get(
            server,
            name,
            ClientConfig::DEFAULT,
            SliceSink::new(&mut into),
            |_, _| {},
        );
        (got, into == data)
    };
    let busy = |got: &Result<u64, StdError>| {
        matches!(
            got,
            Err(StdError::Tftp(TftpError::Peer(ErrorCode::NotDefined)))
        )
    };

    let mut request = vec![0, 1]; // RRQ
    request.extend_from_slice(b"stuck.img\0octet\0");
    send_forged_udp(
        SocketAddrV4::new(NO_ONES_V4, 4077),
        SocketAddrV4::new(FIRMWARE_V4, 69),
        &request,
    )?;
    let forged = Instant::now();
    let (got, _) = get();
    if !busy(&got) {
        return Err(format!(
            "a get right after the forged request: {got:?}, not the busy ERROR \
             (did the forged request reach the firmware?)"
        ));
    }

    // No sooner: a get before the forged transfer has ended is refused busy.
    thread::sleep(stuck_transfer_span().saturating_sub(forged.elapsed()));
    let mut outcome = Err("never tried".to_string());
    for _ in 0..TRIES {
        let (got, whole) = get();
        if busy(&got) {
            outcome = Err("refused busy".into());
            thread::sleep(tftp_step());
            continue;
        }
        outcome = match got {
            Ok(size) if size == data.len() as u64 && whole => Ok(()),
            Ok(size) => Err(format!("{size} bytes, not the file")),
            Err(e) => Err(e.to_string()),
        };
        break;
    }
    outcome.map_err(|e| {
        format!(
            "std get {:?} after the forged request: {e} (do sends on the transfer \
             socket wait behind the DATA to {NO_ONES_V4}?)",
            forged.elapsed()
        )
    })?;
    eprintln!(
        "tftp: the std get after the forged request done {:?} after it",
        forged.elapsed()
    );

    let dir = ScratchDir::new("fw-tftp-stuck");
    let local = dir.join("stuck.img");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&local)
        .arg("tftp://192.168.69.1/stuck.img")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl tftp get after the std get: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let back = std::fs::read(&local).map_err(|e| e.to_string())?;
    if back != data {
        return Err(format!("curl got {} bytes, not the file", back.len()));
    }
    Ok(())
}

/// The embassy firmware's TFTP build after a read requested from an address
/// that never answers ARP: the transfer socket serves the next reads.
#[test]
#[ignore = "needs CAP_NET_ADMIN, qemu-system-arm and curl: boots the firmware in a namespace"]
fn embassy_tftp_serves_again_after_a_read_by_no_one() {
    on_build(
        Firmware::Embassy,
        Variant::Tftp,
        "tftp-stuck",
        tftp_after_a_read_by_no_one,
    );
}
