//! Every smolsock service on one userspace TCP/IP stack over a TAP device, the way
//! firmware would run them:
//!
//! | port     | service                                                      |
//! |----------|--------------------------------------------------------------|
//! | tcp/7    | raw echo: what you send comes back                           |
//! | udp/7    | UDP echo: each datagram comes back whole                     |
//! | tcp/9000 | framed echo: 4-byte big-endian length + body, frames whole   |
//! | tcp/80   | HTTP: a status page with live counters (`/` and `/stats`)    |
//! | tcp/2121 | file transfer (`PROTOCOL.md`) from `--root DIR`              |
//! | udp/69   | TFTP (RFC 1350 and options) from the same `--root DIR`       |
//!
//! ```text
//! sudo ./tap-setup.sh up                       # once: tap0, Linux side 192.168.69.100
//! cargo run --example tap_server               # the stack is 192.168.69.1 / fdaa::1
//! cargo run --example host_client -- echo hi   # in another terminal
//! cargo run --example transfer -- put FILE      # file transfer to tcp/2121
//! ```
//!
//! Each connection is logged (`RUST_LOG=debug` for more, `RUST_LOG=trace` for
//! smoltcp's own view); Ctrl-C closes the connections gracefully, prints every
//! counter and exits 0. All memory is allocated at startup, none per packet.

#[path = "tap_common/all_services.rs"]
mod all_services;

use std::error::Error;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use clap::builder::TypedValueParser as _;
use smolsock::runner::tap::{TapBacked, TapConfig, TapDevice, TapRunner};
use smolsock::trace::PcapFile;
use smoltcp::iface::SocketSet;
use smoltcp::phy::{PcapMode, PcapWriter};
use smoltcp::time::Duration;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

use all_services::{
    ECHO_PORT, FRAMED_PORT, HTTP_PORT, ServicesConfig, TFTP_DATAGRAM_MAX, TFTP_POOL, TFTP_PORT,
    TRANSFER_POOL_MAX, TRANSFER_PORT, serve,
};

/// Where the file transfer keeps its files unless `--root` says otherwise.
const DEFAULT_ROOT: &str = "smolsock-files";

/// Set by Ctrl-C (SIGINT) or SIGTERM; the serving loop checks it between polls.
static STOP: AtomicBool = AtomicBool::new(false);

/// An address setting that may be switched off with `none`.
#[derive(Clone, Copy, Debug)]
struct Setting<T>(Option<T>);

impl<T: FromStr> FromStr for Setting<T> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|value| Self(Some(value)))
            .map_err(|_| format!("{s:?} is not a valid address (or 'none')"))
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Every smolsock service on a userspace TCP/IP stack over a TAP device",
    after_help = "Create the TAP device first: sudo ./tap-setup.sh up\n\
                  Then try each service from Linux: cargo run --example host_client -- --help\n\
                  Files: cargo run --example transfer -- put FILE (ls, get, stat, rm)\n\
                  Log level: RUST_LOG=debug (default info)."
)]
struct Args {
    /// The TAP interface to run on (made by tap-setup.sh).
    #[arg(long, default_value = "tap0")]
    tap: String,
    /// The stack's IPv4 address and prefix, or 'none'.
    #[arg(long, default_value = "192.168.69.1/24")]
    ipv4: Setting<Ipv4Cidr>,
    /// The stack's IPv6 address and prefix, or 'none'.
    #[arg(long, default_value = "fdaa::1/64")]
    ipv6: Setting<Ipv6Cidr>,
    /// Where IPv4 packets for other networks go, or 'none'.
    #[arg(long, default_value = "192.168.69.100")]
    gateway4: Setting<Ipv4Address>,
    /// Where IPv6 packets for other networks go, or 'none'.
    #[arg(long, default_value = "fdaa::100")]
    gateway6: Setting<Ipv6Address>,
    /// Raw echo (tcp/7) connections served at once; a SYN beyond them waits in the
    /// listen backlog (held, not refused) until a slot frees. 0: off.
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.echo_pool)]
    echo_pool: usize,
    /// Framed echo (tcp/9000) connections served at once. 0: off.
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.framed_pool)]
    framed_pool: usize,
    /// HTTP (tcp/80) connections served at once. 0: off.
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.http_pool)]
    http_pool: usize,
    /// File transfer (tcp/2121) connections served at once, at most 16. 0: off.
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.transfer_pool,
          value_parser = clap::value_parser!(u8).range(..=TRANSFER_POOL_MAX as i64)
              .map(usize::from))]
    transfer_pool: usize,
    /// The directory the file transfer serves, created if missing (the default is
    /// in the current directory). An upload appears under its name only once its
    /// CRC-32 matched; until then it is the hidden .NAME.part.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Receive buffer of each TCP socket, in bytes (the TCP window).
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.rx_buf,
          value_parser = clap::value_parser!(u32).range(64..).map(|n| n as usize))]
    rx_buf: usize,
    /// Send buffer of each TCP socket, in bytes.
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.tx_buf,
          value_parser = clap::value_parser!(u32).range(64..).map(|n| n as usize))]
    tx_buf: usize,
    /// Largest framed-echo body, in bytes (each framed slot keeps two frames of
    /// this + 4 bytes: one gathering, one going out).
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.max_frame)]
    max_frame: u32,
    /// Largest file transfer frame body, in bytes, at least 128 (each transfer slot
    /// keeps two frames of this + 4 bytes: one received, one staged to send).
    #[arg(long, default_value_t = ServicesConfig::DEFAULT.transfer_frame,
          value_parser = clap::value_parser!(u32).range(128..))]
    transfer_frame: u32,
    /// Seconds a TCP connection may stay silent before it is reset. 0: never.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Write every frame on the link to this pcap file (open it in Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

impl Args {
    fn tap_config(&self) -> TapConfig {
        TapConfig {
            ipv4: self.ipv4.0,
            ipv6: self.ipv6.0,
            ipv4_gateway: self.gateway4.0,
            ipv6_gateway: self.gateway6.0,
            ..TapConfig::DEFAULT
        }
    }

    fn services_config(&self) -> ServicesConfig {
        ServicesConfig {
            echo_pool: self.echo_pool,
            framed_pool: self.framed_pool,
            http_pool: self.http_pool,
            transfer_pool: self.transfer_pool,
            rx_buf: self.rx_buf,
            tx_buf: self.tx_buf,
            max_frame: self.max_frame,
            transfer_frame: self.transfer_frame,
            // Saturating: smoltcp's `from_secs` overflows past 584,942 years.
            idle_timeout: (self.idle_timeout > 0)
                .then(|| Duration::from_micros(self.idle_timeout.saturating_mul(1_000_000))),
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("tap_server: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    // A first Ctrl-C (or SIGTERM) asks for a graceful stop; a second one, for the
    // impatient, exits at once.
    on_interrupt()?;
    let config = args.tap_config();
    let device = TapDevice::open(&args.tap)?;
    match &args.pcap {
        Some(path) => {
            let file =
                File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let capture = PcapFile::new(BufWriter::new(file));
            let failure = capture.failure();
            let device = PcapWriter::new(device, capture, PcapMode::Both);
            println!("capturing every frame to {}", path.display());
            serve_on(
                TapRunner::new(device, &config, SocketSet::new(vec![]))?,
                args,
            )?;
            match failure.take() {
                Some(e) => Err(format!("cannot write {}: {e}", path.display()).into()),
                None => Ok(()),
            }
        }
        None => serve_on(
            TapRunner::new(device, &config, SocketSet::new(vec![]))?,
            args,
        ),
    }
}

fn serve_on<D: TapBacked>(mut runner: TapRunner<'_, D>, args: &Args) -> Result<(), Box<dyn Error>> {
    let config = args.services_config();
    let tap = args.tap_config();
    let ready = || {
        let at = |cidr: Option<String>| cidr.unwrap_or_else(|| "-".into());
        println!(
            "smolsock on {}: IPv4 {}, IPv6 {}",
            args.tap,
            at(tap.ipv4.map(|c| c.address().to_string())),
            at(tap.ipv6.map(|c| c.address().to_string())),
        );
        println!(
            "  tcp/{ECHO_PORT} echo ({} slots), udp/{ECHO_PORT} udp echo, \
             tcp/{FRAMED_PORT} framed echo ({} slots, frames up to {} B), \
             tcp/{HTTP_PORT} http ({} slots)",
            config.echo_pool, config.framed_pool, config.max_frame, config.http_pool
        );
        println!(
            "  tcp/{TRANSFER_PORT} file transfer ({} slots, frames up to {} B) from {}",
            config.transfer_pool,
            config.transfer_frame,
            args.root.display()
        );
        println!(
            "  udp/{TFTP_PORT} tftp ({TFTP_POOL} transfers, blocks up to {} B) from the same directory",
            TFTP_DATAGRAM_MAX - 4
        );
        println!("  memory: {}", config.memory());
        println!("  Ctrl-C stops.");
    };
    let report = serve(
        &mut runner,
        &config,
        &args.root,
        tap.stop_check,
        &STOP,
        ready,
    )?;
    println!("\ncounters:\n{report}");
    Ok(())
}

/// The signal handler: only what is safe in one (an atomic, `write`, `_exit`).
extern "C" fn interrupted(_signal: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        const MESSAGE: &[u8] = b"tap_server: second interrupt, exiting without closing\n";
        // SAFETY: `write` and `_exit` are async-signal-safe; the buffer is static.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(130);
        }
    }
}

/// Sends SIGINT and SIGTERM to [`interrupted`].
fn on_interrupt() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `interrupted` only touches an atomic and calls async-signal-safe
        // functions, and `sigaction` gets a zeroed, then filled, struct.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_timeout(seconds: &str) -> Option<Duration> {
        let args = Args::try_parse_from(["tap_server", "--idle-timeout", seconds]).unwrap();
        args.services_config().idle_timeout
    }

    #[test]
    fn the_idle_timeout_is_in_seconds_and_saturates() {
        assert_eq!(idle_timeout("0"), None, "never");
        assert_eq!(idle_timeout("60"), Some(Duration::from_secs(60)));
        let longest = Some(Duration::from_micros(u64::MAX));
        assert_eq!(idle_timeout("18446744073710"), longest, "not wrapped");
        assert_eq!(idle_timeout("18446744073709551615"), longest);
    }
}
