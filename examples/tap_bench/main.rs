//! TAP performance: smolsock on a TAP link against the Linux kernel, beside the
//! baselines, all in one run.
//!
//! ```text
//! sudo ./tap-setup.sh up --netns smolbench
//! cargo build --release --example tap_bench
//! sudo ip netns exec smolbench target/release/examples/tap_bench
//! sudo ./tap-setup.sh down --netns smolbench
//! ```
//!
//! The stack runs in this process on `tap0` (192.168.69.1); the kernel peers are
//! threads of the same process using `std::net`, so the whole process must be in
//! the namespace that holds `tap0` (and its `lo` up, for the kernel-to-kernel row).
//!
//! - bulk: the shape of smoltcp's `examples/benchmark.rs` (64 KiB socket buffers,
//!   the kernel writing to tcp/1235 or reading from tcp/1234), raw (the stack only
//!   advances its rings) and framed (a `session::Framed` connection on a
//!   `TcpSession`, 64 KiB frames, on 1237/1236),
//!   on smolsock's `TapDevice` and, raw only, on smoltcp's `TunTapInterface`.
//! - rr: 64-byte frames through the framed echo, one request outstanding, beside
//!   the same client against a kernel echo on loopback.
//! - transfer: upload and download through the file transfer server (RAM store,
//!   directory store) with the tests' independent client (`tests/oracle`), and
//!   beside them the disk's own speed for the same bytes in the directory
//!   store's directory.
//! - scale: 1, 4, 16, 64 (and on request 128, 256) clients against a framed echo
//!   pool of that size, with the time per round of the poll loop spent in
//!   smoltcp's `Interface::poll` and in the server's poll (both walk every socket).
//! - tftp: upload and download through `net::TftpServer` (RAM store) with
//!   `tftp::std_net`'s client, blocks of 512 and 1428 bytes, windows of 1, 8 and
//!   32. (Blocks of 8192 would need IP fragmentation, which this smoltcp build
//!   does not do: a 1500-byte MTU carries 1468 at most.)
//!
//! Every row checks that every byte arrived; a row that did not is an error.

#[allow(dead_code)]
#[path = "../../tests/oracle/transfer_client.rs"]
mod protocol;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use clap::{Parser, ValueEnum};
use smolsock::net::{Service, TcpServer, TcpSession, TftpServer};
use smolsock::runner::tap::TapDevice;
use smolsock::session::{Framed, FramedEcho, SendError};
use smolsock::store::{DirLimits, DirStore, RamStore, Storage};
use smolsock::transfer::{SharedStore, TransferServer, UploadLease};
use smolsock::wire::frame::HeaderFormat;
use smolsock::wire::transfer::FileName;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, Medium, TunTapInterface};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// The stack's address on the TAP link (tap-setup.sh's defaults).
const STACK_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// Socket buffers, as in smoltcp's benchmark.rs (64 KiB less one byte: the largest
/// window without window scaling).
const SOCKET_BUFFER: usize = 65_535;
/// Frame bodies of the framed bulk rows: `HeaderFormat::NETWORK`'s maximum.
const FRAME: usize = 65_536;
/// Frame storage for a 64 KiB frame and its header.
const FRAME_STORAGE: usize = FRAME + 4;
/// The kernel side's read and write size, as in benchmark.rs.
const CLIENT_CHUNK: usize = 1_000_000;
/// Arena of the RAM store: the largest transfer it takes.
const RAM_ARENA: usize = 100 << 20;
/// Ports: benchmark.rs's two, then the framed pair.
const PORT_KERNEL_READS: u16 = 1234;
const PORT_KERNEL_WRITES: u16 = 1235;
const PORT_FRAMED_KERNEL_READS: u16 = 1236;
const PORT_FRAMED_KERNEL_WRITES: u16 = 1237;
const PORT_ECHO: u16 = 9000;
const PORT_SCALE: u16 = 9100;
const PORT_TRANSFER: u16 = 2121;
/// The TFTP rows' block sizes and windows.
const TFTP_BLOCKS: [u16; 2] = [512, 1428];
const TFTP_WINDOWS: [u16; 3] = [1, 8, 32];
/// The TFTP server's datagram buffer: the largest block that fits the MTU.
const TFTP_DATAGRAM: usize = 1472;
/// Arena of the TFTP rows' RAM store: the largest file they move.
const TFTP_ARENA: usize = 16 << 20;

/// Which parts to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Bulk transfer, raw vs framed, both devices.
    Bulk,
    /// Request/response latency.
    Rr,
    /// File transfer.
    Transfer,
    /// Concurrent clients.
    Scale,
    /// TFTP block sizes and windows.
    Tftp,
}

/// TAP benchmarks: smolsock against the Linux kernel over a TAP link. Run inside
/// the namespace `sudo ./tap-setup.sh up --netns NAME` made.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// The TAP interface (in this process's network namespace).
    #[arg(long, default_value = "tap0")]
    pub tap: String,
    /// Bytes each bulk row moves (rounded up to whole 64 KiB frames).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub bulk_bytes: u64,
    /// Times each bulk row runs; the table shows the median.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Round trips of the request/response rows.
    #[arg(long, default_value_t = 20_000)]
    pub round_trips: usize,
    /// Bytes of the file uploaded and downloaded (at most 100 MiB for the RAM store).
    #[arg(long, default_value_t = 100 << 20)]
    pub transfer_bytes: u64,
    /// Body bytes of each request/response and scale frame.
    #[arg(long, default_value_t = 64)]
    pub echo_bytes: usize,
    /// Echo clients write header and body in two sends (Python's
    /// `send(header); send(body)`) instead of one.
    #[arg(long)]
    pub split_writes: bool,
    /// Round trips of each scale row, shared among its clients (at least 50 each).
    #[arg(long, default_value_t = 20_000)]
    pub scale_round_trips: usize,
    /// Bytes of the file each TFTP row uploads and downloads (at most 16 MiB).
    #[arg(long, default_value_t = 4 << 20)]
    pub tftp_bytes: u64,
    /// Pool sizes of the scale rows (1, 4, 16, 64, 128 or 256).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub scale: Vec<usize>,
    /// Parts to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Also check every byte of every framed bulk frame (costs CPU on both sides).
    #[arg(long)]
    pub verify: bool,
    /// Where the transfer rows keep their files (default: the system's temp dir).
    #[arg(long)]
    pub temp_dir: Option<PathBuf>,
}

impl Args {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let _ = env_logger::builder()
        .filter_level(log::LevelFilter::Warn)
        .parse_default_env()
        .try_init();
    match run(&args) {
        Ok(report) => {
            print!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tap_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A failure that stops the benchmark: nothing to measure.
#[derive(Debug)]
pub struct BenchError(String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

fn fail<T>(what: impl Into<String>) -> Result<T, BenchError> {
    Err(BenchError(what.into()))
}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        BenchError(e.to_string())
    }
}

// ---------------------------------------------------------------------------
// The report

/// One bulk row.
#[derive(Clone, Debug)]
pub struct BulkRow {
    /// `TapDevice` or `TunTapInterface`.
    pub device: &'static str,
    /// What moves and how.
    pub mode: BulkMode,
    /// Bytes the row had to move (frame bodies for framed rows).
    pub expected: u64,
    /// Bytes that arrived, counted by the receiver.
    pub arrived: u64,
    /// Median over the repeats.
    pub seconds: f64,
}

impl BulkRow {
    fn gbps(&self) -> f64 {
        gbps(self.expected, self.seconds)
    }
}

/// The four bulk cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkMode {
    /// Kernel writes, the stack only advances its receive ring.
    RawKernelWrites,
    /// Kernel reads, the stack only advances its send ring.
    RawKernelReads,
    /// Kernel writes 64 KiB frames, the stack takes them whole with `Framed::recv`.
    FramedKernelWrites,
    /// The stack sends 64 KiB frames with `Framed::send`, the kernel reads them.
    FramedKernelReads,
}

impl BulkMode {
    fn port(self) -> u16 {
        match self {
            Self::RawKernelWrites => PORT_KERNEL_WRITES,
            Self::RawKernelReads => PORT_KERNEL_READS,
            Self::FramedKernelWrites => PORT_FRAMED_KERNEL_WRITES,
            Self::FramedKernelReads => PORT_FRAMED_KERNEL_READS,
        }
    }

    fn kernel_writes(self) -> bool {
        matches!(self, Self::RawKernelWrites | Self::FramedKernelWrites)
    }

    fn framed(self) -> bool {
        matches!(self, Self::FramedKernelWrites | Self::FramedKernelReads)
    }

    fn label(self) -> &'static str {
        match self {
            Self::RawKernelWrites => "kernel writes, raw",
            Self::RawKernelReads => "kernel reads, raw",
            Self::FramedKernelWrites => "kernel writes, framed",
            Self::FramedKernelReads => "kernel reads, framed",
        }
    }
}

/// One request/response row.
#[derive(Clone, Debug)]
pub struct RrRow {
    /// Who answers.
    pub peer: &'static str,
    /// Latency figures.
    pub latency: Latency,
}

/// Round trips and their latency.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Round trips completed (each reply checked byte for byte).
    pub round_trips: usize,
    /// Round trips expected.
    pub expected: usize,
    /// Wall time from the first request to the last reply (of all clients).
    pub seconds: f64,
    /// Median round trip.
    pub p50: StdDuration,
    /// 99th percentile.
    pub p99: StdDuration,
    /// Slowest.
    pub max: StdDuration,
}

impl Latency {
    fn from_samples(mut samples: Vec<StdDuration>, expected: usize, seconds: f64) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or_default()
        };
        Self {
            round_trips: samples.len(),
            expected,
            seconds,
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn per_second(&self) -> f64 {
        self.round_trips as f64 / self.seconds.max(1e-9)
    }

    /// No Nagle or delayed-ACK stall: the 99th percentile within 5x the median.
    fn no_stall(&self) -> bool {
        self.p99 <= self.p50 * 5
    }
}

/// One file transfer row.
#[derive(Clone, Debug)]
pub struct TransferRow {
    /// `RamStore` or `DirStore`.
    pub store: &'static str,
    /// Upload or download.
    pub upload: bool,
    /// File size.
    pub bytes: u64,
    /// Bytes that arrived with the CRC-32 both sides agree on.
    pub arrived: u64,
    /// Wall time of the operation (HELLO to PUT_DONE, or to the last DATA
    /// received, written and checksummed: the client's own `fsync` of the file
    /// it downloaded is the client's disk, not the transfer, and is logged apart).
    pub seconds: f64,
}

/// The disk under the directory store, for the same bytes in the same writes.
#[derive(Clone, Copy, Debug)]
pub struct DiskRow {
    /// File size.
    pub bytes: u64,
    /// Writing it in 64 KiB writes, then `fsync`, as the store commits.
    pub write_seconds: f64,
    /// Reading it back in 64 KiB reads (from the page cache, as a GET right
    /// after the PUT reads it).
    pub read_seconds: f64,
}

/// Where a driven run spent the stack's thread: `Interface::poll` (smoltcp walks
/// every socket) and the service's poll (the server walks every slot).
#[derive(Clone, Copy, Debug, Default)]
pub struct DriveStats {
    /// Rounds of the poll loop.
    pub polls: u64,
    /// Time in `Interface::poll`, all rounds.
    pub stack: std::time::Duration,
    /// Time in the service's poll, all rounds.
    pub service: std::time::Duration,
}

impl DriveStats {
    /// Microseconds per round in the stack and in the service.
    pub fn per_poll_us(&self) -> (f64, f64) {
        let polls = self.polls.max(1) as f64;
        (
            self.stack.as_secs_f64() * 1e6 / polls,
            self.service.as_secs_f64() * 1e6 / polls,
        )
    }
}

/// One TFTP row.
#[derive(Clone, Debug)]
pub struct TftpRow {
    /// `blksize`.
    pub block: u16,
    /// `windowsize`.
    pub window: u16,
    /// Upload or download.
    pub upload: bool,
    /// File size.
    pub bytes: u64,
    /// Bytes that arrived, byte for byte the ones sent.
    pub arrived: u64,
    /// Wall time from the request to the last ACK.
    pub seconds: f64,
}

/// One scale row.
#[derive(Clone, Debug)]
pub struct ScaleRow {
    /// Clients, and slots in the pool.
    pub clients: usize,
    /// All clients' round trips.
    pub latency: Latency,
    /// The stack thread's poll loop during the row.
    pub drive: DriveStats,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Body bytes of the echo frames.
    pub echo_bytes: usize,
    /// Whether echo clients wrote header and body in two sends.
    pub split_writes: bool,
    /// Bulk rows.
    pub bulk: Vec<BulkRow>,
    /// Request/response rows.
    pub rr: Vec<RrRow>,
    /// File transfer rows.
    pub transfer: Vec<TransferRow>,
    /// Scale rows.
    pub scale: Vec<ScaleRow>,
    /// TFTP rows.
    pub tftp: Vec<TftpRow>,
    /// The disk beside the transfer rows.
    pub disk: Option<DiskRow>,
}

impl Report {
    /// Whether every row moved everything it had to.
    pub fn complete(&self) -> bool {
        self.bulk.iter().all(|r| r.arrived == r.expected)
            && self
                .rr
                .iter()
                .all(|r| r.latency.round_trips == r.latency.expected)
            && self.transfer.iter().all(|r| r.arrived == r.bytes)
            && self.tftp.iter().all(|r| r.arrived == r.bytes)
            && self
                .scale
                .iter()
                .all(|r| r.latency.round_trips == r.latency.expected)
    }

    fn bulk_gbps(&self, device: &str, mode: BulkMode) -> Option<f64> {
        self.bulk
            .iter()
            .find(|r| r.device == device && r.mode == mode)
            .map(BulkRow::gbps)
    }
}

fn gbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds.max(1e-9) / 1e9
}

fn micros(d: StdDuration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.0} %", a / b * 100.0),
        _ => "-".into(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.bulk.is_empty() {
            writeln!(f, "bulk over TAP, kernel as peer, 64 KiB socket buffers")?;
            writeln!(
                f,
                "| device | direction | raw Gbps | framed Gbps | framed / raw | bytes each |"
            )?;
            writeln!(f, "|---|---|---:|---:|---:|---:|")?;
            for device in ["TapDevice", "TunTapInterface"] {
                for (raw, framed, label) in [
                    (
                        BulkMode::RawKernelWrites,
                        BulkMode::FramedKernelWrites,
                        "kernel writes",
                    ),
                    (
                        BulkMode::RawKernelReads,
                        BulkMode::FramedKernelReads,
                        "kernel reads",
                    ),
                ] {
                    let r = self.bulk_gbps(device, raw);
                    let fr = self.bulk_gbps(device, framed);
                    if r.is_none() && fr.is_none() {
                        continue;
                    }
                    let bytes = self
                        .bulk
                        .iter()
                        .find(|row| row.device == device && (row.mode == raw || row.mode == framed))
                        .map_or(0, |row| row.expected);
                    writeln!(
                        f,
                        "| {device} | {label} | {} | {} | {} | {bytes} |",
                        r.map_or("-".into(), |g| format!("{g:.2}")),
                        fr.map_or("-".into(), |g| format!("{g:.2}")),
                        ratio(fr, r),
                    )?;
                }
            }
            for (mode, label) in [
                (BulkMode::RawKernelWrites, "kernel writes"),
                (BulkMode::RawKernelReads, "kernel reads"),
            ] {
                let ours = self.bulk_gbps("TapDevice", mode);
                let theirs = self.bulk_gbps("TunTapInterface", mode);
                if ours.is_some() && theirs.is_some() {
                    writeln!(
                        f,
                        "raw, {label}: TapDevice / TunTapInterface = {}",
                        ratio(ours, theirs)
                    )?;
                }
            }
            writeln!(f)?;
        }
        if !self.rr.is_empty() {
            writeln!(
                f,
                "request/response: {}-byte frames{}, one outstanding, defaults everywhere",
                self.echo_bytes,
                if self.split_writes {
                    " (header and body in two sends)"
                } else {
                    ""
                }
            )?;
            writeln!(
                f,
                "| echo server | round trips | per second | p50 us | p99 us | max us | p99 / p50 | no stall (p99 <= 5 x p50) |"
            )?;
            writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---|")?;
            for row in &self.rr {
                let l = &row.latency;
                writeln!(
                    f,
                    "| {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
                    row.peer,
                    l.round_trips,
                    l.per_second(),
                    micros(l.p50),
                    micros(l.p99),
                    micros(l.max),
                    micros(l.p99) / micros(l.p50).max(1e-9),
                    if l.no_stall() { "yes" } else { "NO" }
                )?;
            }
            if let [ours, kernel, ..] = &self.rr[..] {
                writeln!(
                    f,
                    "smolsock over TAP / kernel loopback: {} of the round trips per second",
                    ratio(
                        Some(ours.latency.per_second()),
                        Some(kernel.latency.per_second())
                    )
                )?;
            }
            writeln!(f)?;
        }
        if !self.transfer.is_empty() {
            writeln!(f, "file transfer over TAP, 64 KiB frames")?;
            writeln!(
                f,
                "| store | operation | bytes | seconds | MB/s | Gbps | vs raw TAP (same direction) |"
            )?;
            writeln!(f, "|---|---|---:|---:|---:|---:|---:|")?;
            for row in &self.transfer {
                let g = gbps(row.bytes, row.seconds);
                let raw = self.bulk_gbps(
                    "TapDevice",
                    if row.upload {
                        BulkMode::RawKernelWrites
                    } else {
                        BulkMode::RawKernelReads
                    },
                );
                writeln!(
                    f,
                    "| {} | {} | {} | {:.3} | {:.0} | {g:.2} | {} |",
                    row.store,
                    if row.upload { "upload" } else { "download" },
                    row.bytes,
                    row.seconds,
                    row.bytes as f64 / row.seconds.max(1e-9) / 1e6,
                    ratio(Some(g), raw)
                )?;
            }
            if let Some(disk) = &self.disk {
                writeln!(
                    f,
                    "the disk under the DirStore, the same bytes in 64 KiB pieces: write + fsync {:.3} s ({:.2} Gbps), read {:.3} s ({:.2} Gbps)",
                    disk.write_seconds,
                    gbps(disk.bytes, disk.write_seconds),
                    disk.read_seconds,
                    gbps(disk.bytes, disk.read_seconds)
                )?;
            }
            writeln!(f)?;
        }
        if !self.tftp.is_empty() {
            writeln!(
                f,
                "TFTP over TAP (RAM store), smolsock's std client against net::TftpServer"
            )?;
            writeln!(
                f,
                "| blksize | windowsize | operation | bytes | seconds | MB/s |"
            )?;
            writeln!(f, "|---:|---:|---|---:|---:|---:|")?;
            for row in &self.tftp {
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {:.3} | {:.1} |",
                    row.block,
                    row.window,
                    if row.upload { "upload" } else { "download" },
                    row.bytes,
                    row.seconds,
                    row.bytes as f64 / row.seconds.max(1e-9) / 1e6,
                )?;
            }
            writeln!(f)?;
        }
        if !self.scale.is_empty() {
            writeln!(
                f,
                "scale: N clients, {}-byte framed echo, one outstanding each, pool of N",
                self.echo_bytes
            )?;
            writeln!(
                f,
                "| clients | round trips | per second | payload MB/s (both ways) | p50 us | p99 us | max us | polls | stack us/poll | server us/poll |"
            )?;
            writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
            for row in &self.scale {
                let l = &row.latency;
                let (stack_us, server_us) = row.drive.per_poll_us();
                writeln!(
                    f,
                    "| {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.0} | {} | {:.2} | {:.2} |",
                    row.clients,
                    l.round_trips,
                    l.per_second(),
                    l.per_second() * (2 * self.echo_bytes) as f64 / 1e6,
                    micros(l.p50),
                    micros(l.p99),
                    micros(l.max),
                    row.drive.polls,
                    stack_us,
                    server_us
                )?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "every byte arrived: {}",
            if self.complete() { "yes" } else { "NO" }
        )
    }
}

// ---------------------------------------------------------------------------
// The stack and its loop

/// What the loop needs of a device beyond smoltcp's `Device`: sleeping until a
/// frame arrives.
trait Wait {
    fn wait_for(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Frames (in, out) so far, if the device counts them.
    fn frames(&self) -> Option<(u64, u64)> {
        None
    }
}

impl Wait for TapDevice {
    fn wait_for(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.wait(timeout)
    }

    fn frames(&self) -> Option<(u64, u64)> {
        let stats = self.stats();
        Some((stats.rx_frames, stats.tx_frames))
    }
}

impl Wait for TunTapInterface {
    fn wait_for(&self, timeout: Option<Duration>) -> io::Result<()> {
        phy::wait(self.as_raw_fd(), timeout)
    }
}

/// The interface, the device and the sockets; one loop for both devices, so the
/// rows differ only by the device.
struct Stack<D> {
    iface: Interface,
    device: D,
    sockets: SocketSet<'static>,
}

impl<D: Device + Wait> Stack<D> {
    fn new(mut device: D, tap: &str) -> Self {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        ])));
        config.random_seed = seed();
        let mut iface = Interface::new(config, &mut device, Instant::now());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(STACK_V4), 24));
        });
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(192, 168, 69, 100));
        wait_link_up(tap);
        Self {
            iface,
            device,
            sockets: SocketSet::new(vec![]),
        }
    }

    fn add_udp(&mut self, datagrams: usize, max: usize) -> SocketHandle {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; datagrams],
                vec![0; datagrams * max],
            )
        };
        self.sockets.add(udp::Socket::new(buffer(), buffer()))
    }

    fn add_tcp(&mut self) -> SocketHandle {
        self.sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        ))
    }

    /// Polls the interface and `service` until `done` says so, sleeping in
    /// between until the next frame or timer (as `TapRunner::run` does).
    fn drive<S: Service>(
        &mut self,
        service: &mut S,
        mut done: impl FnMut(&S) -> bool,
    ) -> io::Result<DriveStats> {
        let mut stats = DriveStats::default();
        loop {
            let now = Instant::now();
            let polled = StdInstant::now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let served = StdInstant::now();
            service.poll(&mut self.sockets, now);
            stats.polls += 1;
            stats.stack += served.duration_since(polled);
            stats.service += served.elapsed();
            if done(service) {
                return Ok(stats);
            }
            let mut delay = self
                .iface
                .poll_delay(now, &self.sockets)
                .unwrap_or(Duration::from_millis(20))
                .min(Duration::from_millis(20));
            if let Some(at) = service.poll_at(&self.sockets) {
                delay = delay.min(if at > now { at - now } else { Duration::ZERO });
            }
            if delay > Duration::ZERO {
                self.device.wait_for(Some(delay))?;
            }
        }
    }

    /// Resets every socket, sends the resets and removes them all.
    fn clear(&mut self) {
        for (_, socket) in self.sockets.iter_mut() {
            if let smoltcp::socket::Socket::Tcp(tcp) = socket {
                tcp.abort();
            }
        }
        self.iface
            .poll(Instant::now(), &mut self.device, &mut self.sockets);
        let handles: Vec<_> = self.sockets.iter().map(|(h, _)| h).collect();
        for handle in handles {
            self.sockets.remove(handle);
        }
    }
}

/// A seed for smoltcp's sequence numbers and ports; any varying number does here.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Waits (at most 5 s) until the kernel has the link up: frames it sends before
/// are dropped, which would cost a SYN retransmission (1 s) in the first row.
fn wait_link_up(tap: &str) {
    let path = format!("/sys/class/net/{tap}/operstate");
    for _ in 0..500 {
        if fs::read_to_string(&path).is_ok_and(|s| s.trim() == "up") {
            return;
        }
        thread::sleep(StdDuration::from_millis(10));
    }
    log::warn!("{path} is not 'up' after 5 s; going on");
}

/// Raises its flag when dropped: a client thread's end, even by a panic, so that
/// the stack's loop waiting for it ends.
struct Raised(Arc<AtomicBool>);

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Connects, retrying a refused or lost attempt for a while (the stack may not
/// listen yet). Reads and writes give up after 30 s without a byte: a stalled
/// stack fails the run instead of holding it.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut last = None;
    for _ in 0..100 {
        match TcpStream::connect_timeout(&addr, StdDuration::from_secs(5)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(StdDuration::from_secs(30)))?;
                stream.set_write_timeout(Some(StdDuration::from_secs(30)))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
        thread::sleep(StdDuration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| io::Error::other("connect failed")))
}

fn stack_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(STACK_V4, port))
}

// ---------------------------------------------------------------------------
// Bulk

/// The byte at `offset` of every framed bulk stream's bodies.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// A framed connection with no handler: whole frames in (`recv`) and out (`send`).
type FramedConn = Framed<(), Vec<u8>, Vec<u8>>;

/// The stack's side of one bulk row, on one socket.
struct BulkServer {
    handle: SocketHandle,
    mode: BulkMode,
    /// Frames (or, raw, bytes) still to move.
    left: u64,
    /// Bytes received (kernel-writes rows).
    arrived: u64,
    done_at: Option<StdInstant>,
    /// The framed rows' connection on the socket; it sets its own socket options
    /// (Nagle and delayed ACK off) when a connection starts.
    conn: TcpSession<FramedConn>,
    body: Vec<u8>,
    verify: bool,
    bad_frames: u64,
}

impl BulkServer {
    fn new(handle: SocketHandle, mode: BulkMode, bytes: u64, verify: bool) -> Self {
        let frames = bytes / FRAME as u64;
        let storage = || vec![0; FRAME_STORAGE];
        let framed = Framed::new((), storage(), storage(), HeaderFormat::NETWORK)
            .expect("storage holds one frame");
        Self {
            handle,
            mode,
            left: if mode.framed() { frames } else { bytes },
            arrived: 0,
            done_at: None,
            conn: TcpSession::new(handle, framed),
            body: (0..FRAME).map(pattern).collect(),
            verify,
            bad_frames: 0,
        }
    }

    /// Moves the framed connection's bytes between its session and the socket.
    fn poll_conn(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        self.conn
            .poll(sockets, now)
            .expect("the row's socket is in the set");
    }

    fn finished(&mut self) {
        if self.left == 0 && self.done_at.is_none() {
            self.done_at = Some(StdInstant::now());
        }
    }
}

impl Service for BulkServer {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        // The peer is done (a previous run of this row): finish the close so the
        // socket can listen again.
        if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 {
            socket.close();
        }
        if !socket.is_open() {
            socket
                .listen(self.mode.port())
                .expect("a closed socket listens");
            // The next connection is a new one for the framed session.
            self.conn.reset();
            return;
        }
        if matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived) {
            return;
        }
        match self.mode {
            // benchmark.rs's tcp:1234: only advance the send ring.
            BulkMode::RawKernelReads => {
                while socket.can_send() && self.left > 0 {
                    let left = usize::try_from(self.left).unwrap_or(usize::MAX);
                    let n = socket
                        .send(|b| {
                            let n = b.len().min(left);
                            (n, n)
                        })
                        .unwrap_or(0);
                    self.left -= n as u64;
                    if n == 0 {
                        break;
                    }
                }
            }
            // benchmark.rs's tcp:1235: only advance the receive ring.
            BulkMode::RawKernelWrites => {
                while socket.can_recv() && self.left > 0 {
                    let left = usize::try_from(self.left).unwrap_or(usize::MAX);
                    let n = socket
                        .recv(|b| {
                            let n = b.len().min(left);
                            (n, n)
                        })
                        .unwrap_or(0);
                    self.left -= n as u64;
                    self.arrived += n as u64;
                    if n == 0 {
                        break;
                    }
                }
            }
            // The session starts on the first poll that finds the socket connected
            // (and forgets whatever was queued before): poll, then queue.
            BulkMode::FramedKernelReads => {
                self.poll_conn(sockets, now);
                // Not while the socket cannot send (the last run's connection still
                // closing): the session has not started on this connection yet,
                // and its start would drop what was queued.
                if !sockets.get::<tcp::Socket>(self.handle).may_send() {
                    return;
                }
                loop {
                    let before = self.left;
                    while self.left > 0 {
                        match self.conn.session_mut().send(&self.body) {
                            Ok(()) => self.left -= 1,
                            Err(SendError::WouldBlock) => break,
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                    self.poll_conn(sockets, now);
                    if self.left == before {
                        break;
                    }
                }
            }
            BulkMode::FramedKernelWrites => {
                self.poll_conn(sockets, now);
                loop {
                    let before = self.left;
                    while self.left > 0 {
                        let Some(frame) = self.conn.session_mut().recv() else {
                            break;
                        };
                        if frame.len() != FRAME || (self.verify && frame != &self.body[..]) {
                            self.bad_frames += 1;
                        }
                        self.arrived += frame.len() as u64;
                        self.left -= 1;
                    }
                    if let Some(e) = self.conn.session().error() {
                        panic!("recv: {e}");
                    }
                    // Taking a frame made room in the reader: take in more.
                    self.poll_conn(sockets, now);
                    if self.left == before {
                        break;
                    }
                }
            }
        }
        self.finished();
    }
}

/// The kernel's side of one bulk row; returns when it started (after connect),
/// when it finished and, for the reading side, the bytes that arrived.
fn bulk_client(
    mode: BulkMode,
    bytes: u64,
    verify: bool,
) -> io::Result<(StdInstant, StdInstant, u64)> {
    let mut stream = connect(stack_addr(mode.port()))?;
    let start = StdInstant::now();
    let mut moved = 0u64;
    match mode {
        BulkMode::RawKernelWrites => {
            let buffer = vec![0u8; CLIENT_CHUNK];
            while moved < bytes {
                let n = (bytes - moved).min(CLIENT_CHUNK as u64) as usize;
                moved += stream.write(&buffer[..n])? as u64;
            }
        }
        BulkMode::RawKernelReads => {
            let mut buffer = vec![0u8; CLIENT_CHUNK];
            while moved < bytes {
                let n = (bytes - moved).min(CLIENT_CHUNK as u64) as usize;
                match stream.read(&mut buffer[..n])? {
                    0 => break,
                    n => moved += n as u64,
                }
            }
        }
        BulkMode::FramedKernelWrites => {
            // 16 frames per write, header and body together.
            let mut frames = Vec::with_capacity(16 * FRAME_STORAGE);
            for _ in 0..16 {
                frames.extend_from_slice(&(FRAME as u32).to_be_bytes());
                frames.extend((0..FRAME).map(pattern));
            }
            let total = bytes / FRAME as u64 * FRAME_STORAGE as u64;
            while moved < total {
                let n = (total - moved).min(frames.len() as u64) as usize;
                stream.write_all(&frames[..n])?;
                moved += n as u64;
            }
        }
        BulkMode::FramedKernelReads => {
            let mut buffer = vec![0u8; CLIENT_CHUNK];
            let mut parser = FrameCounter::default();
            let total = bytes / FRAME as u64 * FRAME_STORAGE as u64;
            let mut read = 0u64;
            while read < total {
                let n = (total - read).min(CLIENT_CHUNK as u64) as usize;
                match stream.read(&mut buffer[..n])? {
                    0 => break,
                    n => {
                        parser.feed(&buffer[..n], verify);
                        read += n as u64;
                    }
                }
            }
            if parser.bad > 0 {
                return Err(io::Error::other(format!(
                    "{} bad frames arrived",
                    parser.bad
                )));
            }
            moved = parser.body_bytes;
        }
    }
    Ok((start, StdInstant::now(), moved))
}

/// Walks a stream of 64 KiB frames in any pieces, counting body bytes and
/// checking headers (and, with `verify`, every body byte).
#[derive(Default)]
struct FrameCounter {
    header: [u8; 4],
    header_len: usize,
    body_left: usize,
    body_at: usize,
    body_bytes: u64,
    bad: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8], verify: bool) {
        while !bytes.is_empty() {
            if self.body_left == 0 {
                self.header[self.header_len] = bytes[0];
                self.header_len += 1;
                bytes = &bytes[1..];
                if self.header_len == 4 {
                    let len = u32::from_be_bytes(self.header) as usize;
                    if len != FRAME {
                        self.bad += 1;
                    }
                    self.header_len = 0;
                    self.body_left = len;
                    self.body_at = 0;
                }
                continue;
            }
            let n = self.body_left.min(bytes.len());
            if verify
                && bytes[..n]
                    .iter()
                    .enumerate()
                    .any(|(i, b)| *b != pattern(self.body_at + i))
            {
                self.bad += 1;
            }
            self.body_left -= n;
            self.body_at += n;
            self.body_bytes += n as u64;
            bytes = &bytes[n..];
        }
    }
}

/// Runs `modes` on `device`, `repeat` times each; the row keeps the median time.
fn bulk_rows<D: Device + Wait>(
    device: D,
    name: &'static str,
    modes: &[BulkMode],
    args: &Args,
) -> Result<Vec<BulkRow>, BenchError> {
    let bytes = args.bulk_bytes.div_ceil(FRAME as u64).max(1) * FRAME as u64;
    let mut stack = Stack::new(device, &args.tap);
    let handles: Vec<_> = modes.iter().map(|_| stack.add_tcp()).collect();
    // Repeats outermost, so raw and framed take turns and share whatever else
    // the machine is doing.
    let mut times = vec![Vec::new(); modes.len()];
    let mut arrived = vec![bytes; modes.len()];
    for _ in 0..args.repeat.max(1) {
        for (i, (&mode, &handle)) in modes.iter().zip(&handles).enumerate() {
            let mut server = BulkServer::new(handle, mode, bytes, args.verify);
            let frames_before = stack.device.frames();
            let client_done = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&client_done);
            let verify = args.verify;
            let client = thread::spawn(move || {
                let _done = Raised(flag);
                bulk_client(mode, bytes, verify)
            });
            stack.drive(&mut server, |_| client_done.load(Ordering::SeqCst))?;
            let (start, client_end, client_moved) = client
                .join()
                .map_err(|_| BenchError("bulk client panicked".into()))??;
            // The kernel writer finishes before its last bytes are in; keep
            // polling until the stack has them all.
            if mode.kernel_writes() {
                let deadline = StdInstant::now() + StdDuration::from_secs(30);
                stack.drive(&mut server, |s| s.left == 0 || StdInstant::now() > deadline)?;
            }
            let end = match server.done_at {
                Some(at) if mode.kernel_writes() => at.max(client_end),
                _ => client_end,
            };
            if server.bad_frames > 0 {
                return fail(format!(
                    "{name} {}: {} bad frames arrived",
                    mode.label(),
                    server.bad_frames
                ));
            }
            let moved = if mode.kernel_writes() {
                server.arrived
            } else {
                client_moved
            };
            arrived[i] = arrived[i].min(moved);
            let seconds = end.duration_since(start).as_secs_f64();
            let frames = match (frames_before, stack.device.frames()) {
                (Some((rx0, tx0)), Some((rx1, tx1))) => {
                    format!(" ({} frames in, {} out)", rx1 - rx0, tx1 - tx0)
                }
                _ => String::new(),
            };
            eprintln!(
                "  {name:<15} {:<22} {:.2} Gbps{frames}",
                mode.label(),
                gbps(bytes, seconds)
            );
            times[i].push(seconds);
        }
    }
    let rows = modes
        .iter()
        .zip(times.iter_mut())
        .zip(arrived)
        .map(|((&mode, times), arrived)| {
            times.sort_by(f64::total_cmp);
            BulkRow {
                device: name,
                mode,
                expected: bytes,
                arrived,
                seconds: times[times.len() / 2],
            }
        })
        .collect();
    stack.clear();
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Request/response and scale

/// A framed echo slot: `session::FramedEcho` in a `session::Framed`, as
/// `tap_server` serves it on tcp/9000, with every default (`ServerConfig::DEFAULT`).
type EchoSlot = Framed<FramedEcho, Vec<u8>, Vec<u8>>;

fn echo_pool<const N: usize>(
    sockets: &mut SocketSet<'_>,
    port: u16,
    handles: Vec<SocketHandle>,
) -> Result<TcpServer<EchoSlot, N>, BenchError> {
    let handles: [SocketHandle; N] = handles.try_into().expect("one socket per slot");
    let sessions = core::array::from_fn(|_| {
        let storage = || vec![0u8; FRAME_STORAGE];
        Framed::new(
            FramedEcho::new(),
            storage(),
            storage(),
            HeaderFormat::NETWORK,
        )
        .expect("storage holds one frame")
    });
    TcpServer::new(sockets, port, handles, sessions)
        .map_err(|e| BenchError(format!("tcp/{port}: {e}")))
}

/// What one echo client measured.
struct EchoRun {
    samples: Vec<StdDuration>,
    start: StdInstant,
    end: StdInstant,
}

/// The primer's framed client with the kernel's default socket options: each
/// request (header and body) in one `write`, then `read_exact` of the reply,
/// which must be the request itself. `barrier` lines clients up after connecting.
fn echo_client(
    addr: SocketAddr,
    split: bool,
    body: usize,
    rounds: usize,
    barrier: Option<Arc<Barrier>>,
) -> io::Result<EchoRun> {
    let stream = connect(addr);
    if let Some(barrier) = &barrier {
        barrier.wait();
    }
    let mut stream = stream?;
    stream.set_read_timeout(Some(StdDuration::from_secs(30)))?;
    let mut frame = vec![0u8; 4 + body];
    frame[..4].copy_from_slice(&(body as u32).to_be_bytes());
    for (i, b) in frame[4..].iter_mut().enumerate() {
        *b = pattern(i);
    }
    let mut reply = vec![0u8; 4 + body];
    let mut samples = Vec::with_capacity(rounds);
    let start = StdInstant::now();
    for i in 0..rounds {
        let stamp = (i as u64).to_be_bytes();
        let n = body.min(8);
        frame[4..4 + n].copy_from_slice(&stamp[..n]);
        let sent = StdInstant::now();
        if split {
            stream.write_all(&frame[..4])?;
            stream.write_all(&frame[4..])?;
        } else {
            stream.write_all(&frame)?;
        }
        stream.read_exact(&mut reply)?;
        samples.push(sent.elapsed());
        if reply != frame {
            return Err(io::Error::other(format!("round trip {i}: wrong echo")));
        }
    }
    Ok(EchoRun {
        samples,
        start,
        end: StdInstant::now(),
    })
}

/// A kernel framed echo on loopback for one connection: reads header and body,
/// writes them back in one `write`.
fn kernel_echo() -> io::Result<(SocketAddr, thread::JoinHandle<io::Result<()>>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        let mut frame = vec![0u8; FRAME_STORAGE];
        loop {
            if let Err(e) = stream.read_exact(&mut frame[..4]) {
                return if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
            if len > FRAME {
                return Err(io::Error::other("oversize frame"));
            }
            stream.read_exact(&mut frame[4..4 + len])?;
            stream.write_all(&frame[..4 + len])?;
        }
    });
    Ok((addr, server))
}

/// `clients` echo clients at once against `server`, driven by `stack`.
fn run_echo_clients<D: Device + Wait, S: Service>(
    stack: &mut Stack<D>,
    server: &mut S,
    addr: SocketAddr,
    clients: usize,
    (split, body): (bool, usize),
    rounds: usize,
) -> Result<(Latency, DriveStats), BenchError> {
    let finished = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let finished = Arc::clone(&finished);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let result = echo_client(addr, split, body, rounds, Some(barrier));
                finished.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();
    let drive = stack.drive(server, |_| finished.load(Ordering::SeqCst) == clients)?;
    Ok((latency_of(threads, clients * rounds)?, drive))
}

fn latency_of(
    threads: Vec<thread::JoinHandle<io::Result<EchoRun>>>,
    expected: usize,
) -> Result<Latency, BenchError> {
    let mut samples = Vec::with_capacity(expected);
    let mut span: Option<(StdInstant, StdInstant)> = None;
    for thread in threads {
        let run = thread
            .join()
            .map_err(|_| BenchError("echo client panicked".into()))??;
        samples.extend(run.samples);
        span = Some(match span {
            None => (run.start, run.end),
            Some((a, b)) => (a.min(run.start), b.max(run.end)),
        });
    }
    let seconds = span.map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64());
    Ok(Latency::from_samples(samples, expected, seconds))
}

fn rr_rows(stack: &mut Stack<TapDevice>, args: &Args) -> Result<Vec<RrRow>, BenchError> {
    let handle = stack.add_tcp();
    let mut server = echo_pool::<1>(&mut stack.sockets, PORT_ECHO, vec![handle])?;
    let (ours, _) = run_echo_clients(
        stack,
        &mut server,
        stack_addr(PORT_ECHO),
        1,
        (args.split_writes, args.echo_bytes),
        args.round_trips,
    )?;
    eprintln!(
        "  smolsock framed echo: {:.0} round trips/s, p50 {:.1} us, p99 {:.1} us",
        ours.per_second(),
        micros(ours.p50),
        micros(ours.p99)
    );
    drop(server);
    stack.clear();

    let (addr, echo) = kernel_echo()?;
    let (split, body, rounds) = (args.split_writes, args.echo_bytes, args.round_trips);
    let client = thread::spawn(move || echo_client(addr, split, body, rounds, None));
    let kernel = latency_of(vec![client], args.round_trips)?;
    echo.join()
        .map_err(|_| BenchError("kernel echo panicked".into()))??;
    eprintln!(
        "  kernel echo (lo):     {:.0} round trips/s, p50 {:.1} us, p99 {:.1} us",
        kernel.per_second(),
        micros(kernel.p50),
        micros(kernel.p99)
    );
    Ok(vec![
        RrRow {
            peer: "smolsock framed echo over TAP",
            latency: ours,
        },
        RrRow {
            peer: "kernel echo on loopback",
            latency: kernel,
        },
    ])
}

fn scale_row<const N: usize>(
    stack: &mut Stack<TapDevice>,
    args: &Args,
) -> Result<ScaleRow, BenchError> {
    let handles = (0..N).map(|_| stack.add_tcp()).collect();
    let mut server = echo_pool::<N>(&mut stack.sockets, PORT_SCALE, handles)?;
    let rounds = (args.scale_round_trips / N).max(50);
    let (latency, drive) = run_echo_clients(
        stack,
        &mut server,
        stack_addr(PORT_SCALE),
        N,
        (args.split_writes, args.echo_bytes),
        rounds,
    )?;
    drop(server);
    stack.clear();
    let (stack_us, server_us) = drive.per_poll_us();
    eprintln!(
        "  {N:>3} clients: {:.0} round trips/s, p99 {:.1} us; per poll {stack_us:.1} us in the stack, {server_us:.2} us in the server",
        latency.per_second(),
        micros(latency.p99)
    );
    Ok(ScaleRow {
        clients: N,
        latency,
        drive,
    })
}

// ---------------------------------------------------------------------------
// File transfer

/// Writes `bytes` of a varied pattern to `path`.
fn make_file(path: &Path, bytes: u64) -> io::Result<()> {
    let mut file = io::BufWriter::new(File::create(path)?);
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while written < bytes {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        written += n as u64;
    }
    file.flush()
}

/// The disk in `dir`: `bytes` written in 64 KiB writes and synced, as the
/// directory store writes and commits an upload, then read back.
fn disk_row(dir: &Path, bytes: u64) -> io::Result<DiskRow> {
    let path = dir.join("disk.bin");
    let chunk = vec![0x5Au8; 64 * 1024];
    let start = StdInstant::now();
    let mut file = File::create(&path)?;
    let mut written = 0u64;
    while written < bytes {
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        written += n as u64;
    }
    file.sync_all()?;
    drop(file);
    let write_seconds = start.elapsed().as_secs_f64();
    let start = StdInstant::now();
    let mut file = File::open(&path)?;
    let mut buf = vec![0u8; 64 * 1024];
    while file.read(&mut buf)? > 0 {}
    let read_seconds = start.elapsed().as_secs_f64();
    fs::remove_file(&path)?;
    Ok(DiskRow {
        bytes,
        write_seconds,
        read_seconds,
    })
}

/// Where an operation's time went, from the client's progress callbacks.
fn phases(marks: &[StdInstant], start: StdInstant, end: StdInstant) -> String {
    let first = marks.first().copied().unwrap_or(start);
    let last = marks.last().copied().unwrap_or(end);
    format!(
        "{:.3} s before the first DATA, {:.3} s of DATA, {:.3} s after the last",
        (first - start).as_secs_f64(),
        (last - first).as_secs_f64(),
        (end - last).as_secs_f64()
    )
}

/// Upload `source` to a transfer server over `store`, then download it again.
fn transfer_pair<S: Storage>(
    stack: &mut Stack<TapDevice>,
    store: S,
    label: &'static str,
    source: &Path,
    download: &Path,
) -> Result<[TransferRow; 2], BenchError> {
    let bytes = fs::metadata(source)?.len();
    let shared = SharedStore::new(store, [UploadLease::EMPTY; 1]);
    let handle = stack.add_tcp();
    // 64 KiB frames both ways: the receive storage and the staging buffer each
    // hold one, header included.
    let slot = TransferServer::new(&shared, vec![0u8; FRAME_STORAGE], vec![0u8; FRAME_STORAGE])
        .map_err(|e| BenchError(e.to_string()))?;
    let mut server = TcpServer::new(&mut stack.sockets, PORT_TRANSFER, [handle], [slot])
        .map_err(|e| BenchError(format!("tcp/{PORT_TRANSFER}: {e}")))?;
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let (source, download) = (source.to_owned(), download.to_owned());
    let client = thread::spawn(move || {
        let _done = Raised(flag);
        (|| -> Result<_, BenchError> {
            let err = |e: protocol::Error| BenchError(format!("transfer: {e}"));
            let name = FileName::new("bench.bin").map_err(|e| BenchError(e.to_string()))?;
            let stream = connect(stack_addr(PORT_TRANSFER))?;
            let mut conn = protocol::Connection::open(stream).map_err(err)?;
            let mut file = File::open(&source)?;
            let start = StdInstant::now();
            let mut marks: Vec<StdInstant> = Vec::new();
            let up = conn
                .put(name, &mut file, false, &mut |_, _| {
                    marks.push(StdInstant::now())
                })
                .map_err(err)?;
            let uploaded = StdInstant::now();
            log::info!("upload: {}", phases(&marks, start, uploaded));
            marks.clear();
            let down = conn
                .get(name, &download, false, &mut |_, _| {
                    marks.push(StdInstant::now())
                })
                .map_err(err)?;
            let end = StdInstant::now();
            log::info!("download: {}", phases(&marks, uploaded, end));
            // To the last DATA, written and checksummed; what follows is the
            // client's fsync of its copy and the rename.
            let end = marks.last().copied().unwrap_or(end);
            let got = fs::metadata(&download)?.len();
            fs::remove_file(&download)?;
            Ok((up, uploaded - start, down, got, end - uploaded))
        })()
    });
    stack.drive(&mut server, |_| done.load(Ordering::SeqCst))?;
    let (up, up_time, down, got, down_time) = client
        .join()
        .map_err(|_| BenchError("transfer client panicked".into()))??;
    drop(server);
    stack.clear();
    let stored = shared.stats();
    eprintln!(
        "  {label}: upload {:.2} Gbps, download {:.2} Gbps",
        gbps(bytes, up_time.as_secs_f64()),
        gbps(bytes, down_time.as_secs_f64())
    );
    Ok([
        TransferRow {
            store: label,
            upload: true,
            bytes,
            arrived: if up.size == bytes { stored.bytes_in } else { 0 },
            seconds: up_time.as_secs_f64(),
        },
        TransferRow {
            store: label,
            upload: false,
            bytes,
            arrived: if down.size == bytes { got } else { 0 },
            seconds: down_time.as_secs_f64(),
        },
    ])
}

fn transfer_rows(
    stack: &mut Stack<TapDevice>,
    args: &Args,
    dir: &Path,
) -> Result<Vec<TransferRow>, BenchError> {
    let source = dir.join("source.bin");
    let download = dir.join("download.bin");
    make_file(&source, args.transfer_bytes)?;
    let mut rows = Vec::new();
    if args.transfer_bytes <= RAM_ARENA as u64 {
        // On this thread's (large) stack: a 100 MiB arena is no `static` and
        // no heap value (it would be built on the stack first anyway).
        let mut ram = RamStore::<2, RAM_ARENA>::new();
        rows.extend(transfer_pair(
            stack, &mut ram, "RamStore", &source, &download,
        )?);
    } else {
        eprintln!("  RamStore: skipped, the file is larger than its {RAM_ARENA}-byte arena");
    }
    let root = dir.join("store");
    fs::create_dir_all(&root)?;
    let store = DirStore::open(&root, DirLimits::DEFAULT).map_err(|e| BenchError(e.to_string()))?;
    rows.extend(transfer_pair(stack, store, "DirStore", &source, &download)?);
    Ok(rows)
}

/// TFTP: every block size and window, up and down, with a RAM store.
fn tftp_rows(stack: &mut Stack<TapDevice>, args: &Args) -> Result<Vec<TftpRow>, BenchError> {
    use smolsock::tftp::{ClientConfig, ServerConfig, std_net};
    use smolsock::transfer::SliceSink;

    let bytes = args.tftp_bytes;
    let len = usize::try_from(bytes).unwrap_or(usize::MAX);
    if len > TFTP_ARENA / 2 {
        return fail(format!("--tftp-bytes: at most {}", TFTP_ARENA / 2));
    }
    let data: Arc<Vec<u8>> = Arc::new((0..len).map(pattern).collect());
    let shared = SharedStore::new(RamStore::<2, TFTP_ARENA>::new(), [UploadLease::EMPTY; 1]);
    let mut rows = Vec::new();
    for block in TFTP_BLOCKS {
        for window in TFTP_WINDOWS {
            let listen = stack.add_udp(4, TFTP_DATAGRAM);
            let slot = stack.add_udp(64, TFTP_DATAGRAM);
            let config = ServerConfig {
                max_window: 32,
                ..ServerConfig::DEFAULT
            };
            let mut server = TftpServer::<_, 1, TFTP_DATAGRAM>::new(
                listen,
                [slot],
                &shared,
                ServerConfig {
                    max_block_size: ServerConfig::block_size_for(TFTP_DATAGRAM),
                    ..config
                },
            )
            .with_mtu(1500);
            let done = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&done);
            let sent = Arc::clone(&data);
            let client = thread::spawn(move || {
                let _done = Raised(flag);
                (|| -> Result<_, BenchError> {
                    let err = |e: std_net::StdError| BenchError(format!("tftp: {e}"));
                    let name = FileName::new("bench.bin").map_err(|e| BenchError(e.to_string()))?;
                    let config = ClientConfig {
                        block_size: Some(block),
                        window: Some(window),
                        ..ClientConfig::DEFAULT
                    };
                    let server = stack_addr(smolsock::tftp::PORT);
                    let start = StdInstant::now();
                    let up =
                        std_net::put(server, name, config, &sent[..], |_, _| {}).map_err(err)?;
                    let uploaded = StdInstant::now();
                    let mut into = vec![0u8; sent.len()];
                    let down =
                        std_net::get(server, name, config, SliceSink::new(&mut into), |_, _| {})
                            .map_err(err)?;
                    let end = StdInstant::now();
                    let same = if into == *sent { down } else { 0 };
                    Ok((up, uploaded - start, same, end - uploaded))
                })()
            });
            // The server's last dally ends by time; the rows only wait for the client.
            stack.drive(&mut server, |_| done.load(Ordering::SeqCst))?;
            let (up, up_time, down, down_time) = client
                .join()
                .map_err(|_| BenchError("tftp client panicked".into()))??;
            stack.clear();
            let stored = shared
                .with_store(|s| {
                    let name = FileName::new("bench.bin").ok()?;
                    let size = s.stat(&name).ok()?.size;
                    s.delete(&name).ok()?;
                    Some(size)
                })
                .flatten();
            eprintln!(
                "  blksize {block}, windowsize {window}: upload {:.1} MB/s, download {:.1} MB/s",
                bytes as f64 / up_time.as_secs_f64().max(1e-9) / 1e6,
                bytes as f64 / down_time.as_secs_f64().max(1e-9) / 1e6
            );
            let row = |upload, arrived, seconds: StdDuration| TftpRow {
                block,
                window,
                upload,
                bytes,
                arrived,
                seconds: seconds.as_secs_f64(),
            };
            rows.push(row(true, if stored == Some(up) { up } else { 0 }, up_time));
            rows.push(row(false, down, down_time));
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// The run

/// Runs the parts `args` asks for and returns the tables. Call it from a thread
/// inside the namespace that holds the TAP interface.
pub fn run(args: &Args) -> Result<Report, BenchError> {
    let args = args.clone();
    // The RAM store's arena lives on this thread's stack (twice, in a debug build).
    thread::Builder::new()
        .name("tap_bench".into())
        .stack_size(2 * RAM_ARENA + (64 << 20))
        .spawn(move || run_here(&args))?
        .join()
        .map_err(|_| BenchError("the benchmark thread panicked".into()))?
}

fn run_here(args: &Args) -> Result<Report, BenchError> {
    if args.echo_bytes > FRAME {
        return fail(format!("--echo-bytes: at most {FRAME}"));
    }
    let mut report = Report {
        echo_bytes: args.echo_bytes,
        split_writes: args.split_writes,
        ..Report::default()
    };
    let open = |tap: &str| TapDevice::open(tap).map_err(|e| BenchError(e.to_string()));
    if args.runs(Part::Bulk) {
        eprintln!(
            "bulk ({} bytes a row, {} run(s)):",
            args.bulk_bytes,
            args.repeat.max(1)
        );
        report.bulk.extend(bulk_rows(
            open(&args.tap)?,
            "TapDevice",
            &[
                BulkMode::RawKernelWrites,
                BulkMode::FramedKernelWrites,
                BulkMode::RawKernelReads,
                BulkMode::FramedKernelReads,
            ],
            args,
        )?);
        let tuntap = TunTapInterface::new(&args.tap, Medium::Ethernet)
            .map_err(|e| BenchError(format!("smoltcp's TunTapInterface: {e}")))?;
        report.bulk.extend(bulk_rows(
            tuntap,
            "TunTapInterface",
            &[BulkMode::RawKernelWrites, BulkMode::RawKernelReads],
            args,
        )?);
    }
    if !(args.runs(Part::Rr)
        || args.runs(Part::Transfer)
        || args.runs(Part::Scale)
        || args.runs(Part::Tftp))
    {
        return Ok(report);
    }
    let mut stack = Stack::new(open(&args.tap)?, &args.tap);
    if args.runs(Part::Rr) {
        eprintln!("request/response ({} round trips):", args.round_trips);
        report.rr = rr_rows(&mut stack, args)?;
    }
    if args.runs(Part::Transfer) {
        eprintln!("file transfer ({} bytes):", args.transfer_bytes);
        let base = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("tap_bench-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let rows = transfer_rows(&mut stack, args, &dir);
        let disk = rows
            .as_ref()
            .ok()
            .map(|_| disk_row(&dir, args.transfer_bytes));
        let _ = fs::remove_dir_all(&dir);
        report.transfer = rows?;
        report.disk = disk.transpose()?;
    }
    if args.runs(Part::Scale) {
        eprintln!("scale ({} round trips a row):", args.scale_round_trips);
        for &n in &args.scale {
            report.scale.push(match n {
                1 => scale_row::<1>(&mut stack, args)?,
                4 => scale_row::<4>(&mut stack, args)?,
                16 => scale_row::<16>(&mut stack, args)?,
                64 => scale_row::<64>(&mut stack, args)?,
                128 => scale_row::<128>(&mut stack, args)?,
                256 => scale_row::<256>(&mut stack, args)?,
                other => {
                    return fail(format!("--scale {other}: pick 1, 4, 16, 64, 128 or 256"));
                }
            });
        }
    }
    if args.runs(Part::Tftp) {
        eprintln!("tftp ({} bytes a row):", args.tftp_bytes);
        report.tftp = tftp_rows(&mut stack, args)?;
    }
    Ok(report)
}
