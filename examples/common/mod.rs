//! What the examples share: the simulated link built from command-line numbers,
//! sockets with heap buffers (the examples run on a PC; firmware would use statics),
//! and an optional packet capture file.
//!
//! Each example uses its own subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use smolsock::runner::sim::{FaultConfig, SimNet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};

/// The network every example runs on: the in-process link with an optional capture.
pub type Net<'s> = SimNet<'s, 64, Capture>;

/// Where the link's frames go: a pcap file, or nowhere.
///
/// One type for both cases keeps the examples free of generics: `SimNet::with_pcap`
/// takes any `io::Write`, and without a file the bytes are simply discarded.
pub struct Capture(Option<BufWriter<File>>);

impl Capture {
    /// No capture.
    pub const fn none() -> Self {
        Self(None)
    }

    /// A capture into a new file at `path` (`None`: no capture).
    pub fn create(path: Option<&Path>) -> io::Result<Self> {
        Ok(Self(match path {
            Some(path) => Some(BufWriter::new(File::create(path)?)),
            None => None,
        }))
    }

    /// Whether frames are being written anywhere.
    pub const fn is_on(&self) -> bool {
        self.0.is_some()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(file) => file.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// The fault model of both directions: a one-way `delay` and `loss_per_mille`
/// frames lost in a thousand, otherwise a clean 1500-byte-MTU Ethernet.
pub const fn link(delay: Duration, loss_per_mille: u16) -> FaultConfig {
    FaultConfig::CLEAN
        .with_delay(delay)
        .with_loss(loss_per_mille)
}

/// A TCP socket with `rx` and `tx` bytes of buffer.
pub fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    )
}

/// A UDP socket holding up to `packets` datagrams and `bytes` of payload each way.
pub fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]);
    udp::Socket::new(buffer(), buffer())
}

/// `later - earlier` as a duration (zero if `later` is not later).
pub fn since(earlier: Instant, later: Instant) -> Duration {
    Duration::from_micros(
        u64::try_from(later.total_micros().saturating_sub(earlier.total_micros())).unwrap_or(0),
    )
}

/// A duration as milliseconds with one decimal, e.g. `61.0 ms`.
pub fn millis(d: Duration) -> String {
    let micros = d.total_micros();
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}
