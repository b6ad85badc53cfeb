//! Boots the firmware (`examples/firmware`) in QEMU and talks to it over a TAP
//! device, as Linux programs talk to `tap_server`.
//!
//! The test builds the firmware, makes a network namespace of its own with `tap0`
//! in it (192.168.69.100/24, fdaa::100/64), starts QEMU inside it with the board's
//! LAN9118 joined to `tap0`, waits for the firmware's "listening" line, and then,
//! from a thread that entered the namespace, checks ping, UDP and TCP echo over
//! IPv4 and IPv6. QEMU is killed and the namespace deleted on every path out,
//! failures included (drop guards). Nothing is ever created in the host's
//! namespace, and traffic only goes to addresses inside the test's namespace.
//!
//! Needs root (CAP_NET_ADMIN), `qemu-system-arm` and the `thumbv7em-none-eabihf`
//! target, so it is `#[ignore]`d; CI runs it with `--include-ignored`.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const FIRMWARE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
const FIRMWARE_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
const ECHO_PORT: u16 = 7;
/// The line the firmware logs once its services are up.
const READY_LINE: &str = "listening:";
/// How often, and how far apart, the test looks for the ready line: 60 s at most.
const BOOT_POLLS: u32 = 600;
const BOOT_POLL_EVERY: Duration = Duration::from_millis(100);
/// Every socket operation gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries for operations that may race the first ARP or neighbour discovery.
const TRIES: u32 = 10;

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/firmware")
}

/// Where the firmware lands: the normal build in `target/firmware` (as run.sh
/// builds it), the self-test build apart in `target/firmware-selftest`, so the
/// two tests can build in parallel without overwriting each other's ELF.
fn firmware_elf(variant: Variant) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(variant.target_dir())
        .join("thumbv7em-none-eabihf/release/smolsock-firmware")
}

#[derive(Clone, Copy)]
enum Variant {
    Services,
    SelfTest,
}

impl Variant {
    fn target_dir(self) -> &'static str {
        match self {
            Self::Services => "target/firmware",
            Self::SelfTest => "target/firmware-selftest",
        }
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

/// Builds the firmware with its release (size) profile.
fn build_firmware(variant: Variant) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(variant.target_dir());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(&target_dir);
    if let Variant::SelfTest = variant {
        command.args(["--features", "selftest"]);
    }
    let status = command
        .current_dir(firmware_dir())
        // The firmware's own .cargo/config.toml decides the target, the target
        // directory and the linker script; variables meant for the host build
        // must not override them.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the firmware did not build");
    let elf = firmware_elf(variant);
    assert!(elf.is_file(), "no firmware at {}", elf.display());
}

/// A network namespace with `tap0` configured as the Linux side of the link;
/// deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create() -> Self {
        let name = format!("smolsock-fw-{}", std::process::id());
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
    fn boot(namespace: &Namespace) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", namespace.name));
        let stdout = File::create(&log).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let elf = firmware_elf(Variant::Services);
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

fn connect(server: SocketAddr) -> Result<TcpStream, String> {
    let mut last_error = String::new();
    for _ in 0..TRIES {
        match TcpStream::connect_timeout(&server, IO_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                last_error = error.to_string();
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Err(format!("cannot connect to {server}: {last_error}"))
}

/// Sends `len` bytes, reads them all back, closes our side and expects the
/// firmware to close its side. Returns the time it took.
fn tcp_echo(server: IpAddr, len: usize) -> Result<Duration, String> {
    let server = SocketAddr::new(server, ECHO_PORT);
    let started = Instant::now();
    let mut stream = connect(server)?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
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
    Ok(started.elapsed())
}

fn check_all() -> Result<(), String> {
    let v4 = IpAddr::V4(FIRMWARE_V4);
    let v6 = IpAddr::V6(FIRMWARE_V6);
    udp_echo(v4).map_err(|e| format!("UDP echo over IPv4: {e}"))?;
    let mut pinged = Err(String::new());
    for seq in 0..3 {
        pinged = ping_v4(FIRMWARE_V4, 0x5353, seq);
        if pinged.is_ok() {
            break;
        }
    }
    pinged.map_err(|e| format!("ping over IPv4: {e}"))?;
    let took = tcp_echo(v4, 256 * 1024).map_err(|e| format!("TCP echo over IPv4: {e}"))?;
    eprintln!("firmware: 256 KiB TCP echo over IPv4 in {took:?}");
    // A second connection to the same port: the socket listens again.
    tcp_echo(v4, 1000).map_err(|e| format!("second TCP connection: {e}"))?;
    udp_echo(v6).map_err(|e| format!("UDP echo over IPv6: {e}"))?;
    let took = tcp_echo(v6, 64 * 1024).map_err(|e| format!("TCP echo over IPv6: {e}"))?;
    eprintln!("firmware: 64 KiB TCP echo over IPv6 in {took:?}");
    Ok(())
}

#[test]
#[ignore = "needs CAP_NET_ADMIN and qemu-system-arm: boots the firmware in a namespace"]
fn firmware_in_qemu_answers_ping_udp_and_tcp_echo_over_ipv4_and_ipv6() {
    let started = Instant::now();
    build_firmware(Variant::Services);
    eprintln!("firmware: built in {:?}", started.elapsed());

    // Declared in this order so QEMU is killed before its namespace goes.
    let namespace = Namespace::create();
    let mut qemu = Qemu::boot(&namespace);
    let booted = Instant::now();
    let outcome = qemu.wait_until_ready().and_then(|()| {
        eprintln!("firmware: ready {:?} after QEMU started", booted.elapsed());
        namespace.run_inside(check_all)
    });
    if let Err(why) = outcome {
        panic!("{why}\n--- firmware log ---\n{}", qemu.log());
    }
    eprintln!("firmware: whole test {:?}", started.elapsed());
}

#[test]
#[ignore = "needs qemu-system-arm: runs the firmware's self-test under emulation"]
fn firmware_selftest_passes_under_qemu() {
    build_firmware(Variant::SelfTest);
    let log = std::env::temp_dir().join(format!("smolsock-fw-selftest-{}.log", std::process::id()));
    let stdout = File::create(&log).expect("log file");
    let stderr = stdout.try_clone().expect("log file");
    let mut child = Command::new("qemu-system-arm")
        .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .args([
            "-semihosting-config",
            "enable=on,target=native",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(firmware_elf(Variant::SelfTest))
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
    let passed = status.is_some_and(|status| status.success());
    assert!(passed, "self-test failed ({status:?}):\n{output}");
    assert!(output.contains("passed, 0 failed"), "{output}");
}
