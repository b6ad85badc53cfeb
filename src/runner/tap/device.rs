//! [`TapDevice`]: a smoltcp [`Device`] over a Linux TAP descriptor that survives
//! link trouble and does not allocate per frame.
//!
//! smoltcp's own `TunTapInterface` allocates a fresh `Vec` for every frame in both
//! directions and panics on any I/O error other than `WouldBlock`, so a server on it
//! dies the moment someone runs `ip link set tap0 down` (writes then fail with
//! `EIO`). This device reads into and writes from two buffers sized once from the
//! interface MTU, and turns every I/O error into a counted, logged, dropped frame:
//! the stack above sees a lossy link, which TCP already knows how to survive.

use core::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use log::{debug, info, warn};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium, PcapSink, PcapWriter, Tracer};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetFrame;

use super::sys;

/// The largest IP MTU a TAP interface takes (the kernel caps it at 65535).
const MAX_IP_MTU: usize = 65_535;

/// The smallest IP MTU a device takes (a smaller one is raised to it), as the
/// simulated link's (`runner::sim::MIN_MTU`): smoltcp's TCP takes its headers
/// (up to 60 bytes over IPv6) from the MTU unchecked, and Linux itself refuses
/// an MTU under 68.
const MIN_IP_MTU: usize = 128;

/// Frames a single `receive` call may skip (oversize or interrupted reads) before it
/// gives the stack a chance to run; the rest wait for the next poll.
const SKIPPED_READS_PER_RECEIVE: usize = 8;

/// Why [`TapDevice::open`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is empty, longer than 15 bytes or holds a NUL byte.
    InvalidName,
    /// `/dev/net/tun` could not be opened (missing, or no permission).
    Tun(io::Error),
    /// The kernel refused to attach to the TAP interface (`TUNSETIFF`): it is not a
    /// TAP device, is owned by another user, or creating it needs `CAP_NET_ADMIN`.
    Attach(io::Error),
    /// The interface's MTU could not be read (`SIOCGIFMTU`).
    Mtu(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName => f.write_str("invalid TAP interface name (1 to 15 bytes, no NUL)"),
            Self::Tun(e) => write!(f, "cannot open /dev/net/tun: {e}"),
            Self::Attach(e) => write!(
                f,
                "cannot attach to the TAP interface (TUNSETIFF): {e}; \
                 create it first with `sudo ./tap-setup.sh up`"
            ),
            Self::Mtu(e) => write!(f, "cannot read the interface MTU: {e}"),
        }
    }
}

impl core::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::InvalidName => None,
            Self::Tun(e) | Self::Attach(e) | Self::Mtu(e) => Some(e),
        }
    }
}

/// What a [`TapDevice`] has moved and what went wrong, since it was opened.
///
/// Plain counters that only grow (wrapping after 2^64), cheap enough to keep on
/// every frame; examples print them on exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Bytes in those frames, Ethernet header included.
    pub rx_bytes: u64,
    /// Frames the kernel accepted.
    pub tx_frames: u64,
    /// Bytes in those frames, Ethernet header included.
    pub tx_bytes: u64,
    /// Reads that failed with anything but "nothing to read" (`EAGAIN`, `EINTR`).
    pub rx_errors: u64,
    /// Writes that failed; the frame was dropped (e.g. `EIO` while the link is down).
    pub tx_errors: u64,
    /// Frames longer than the device's frame capacity (the MTU was raised after
    /// opening); dropped. Also counted in `rx_errors`.
    pub rx_oversize: u64,
    /// The kind of the most recent read or write error.
    pub last_error: Option<io::ErrorKind>,
    /// Its `errno`, when it came from the kernel (`EIO` is 5); many kinds, `EIO`'s
    /// among them, are only `Uncategorized` otherwise.
    pub last_os_error: Option<i32>,
}

impl fmt::Display for TapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx {} frames {} B, tx {} frames {} B, errors rx {} (oversize {}) tx {}",
            self.rx_frames,
            self.rx_bytes,
            self.tx_frames,
            self.tx_bytes,
            self.rx_errors,
            self.rx_oversize,
            self.tx_errors
        )?;
        match (self.last_os_error, self.last_error) {
            (Some(code), _) => write!(f, ", last error: {}", io::Error::from_raw_os_error(code)),
            (None, Some(kind)) => write!(f, ", last error: {kind}"),
            (None, None) => Ok(()),
        }
    }
}

impl TapStats {
    fn note_error(&mut self, error: &io::Error) {
        self.last_error = Some(error.kind());
        self.last_os_error = error.raw_os_error();
    }
}

/// A TAP interface opened from `/dev/net/tun`, as a smoltcp Ethernet [`Device`].
///
/// - No allocation per frame: one receive and one transmit buffer, each one
///   Ethernet frame of the interface MTU, live inside the device; the tokens
///   smoltcp gets borrow them.
/// - No panic: a failed read or write is logged (once per run of failures, at
///   `warn`), counted in [`TapStats`] and the frame dropped; the device keeps
///   working and recovers by itself when the link comes back.
/// - [`AsRawFd`]/[`AsFd`] and [`TapDevice::wait`] let a runner sleep until a frame
///   arrives.
///
/// ```no_run
/// use smolsock::runner::tap::TapDevice;
/// let device = TapDevice::open("tap0")?;
/// println!("{} frames of up to {} bytes", device.name(), device.frame_capacity());
/// # Ok::<(), smolsock::runner::tap::OpenError>(())
/// ```
#[derive(Debug)]
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    frame_capacity: usize,
    /// One byte longer than `frame_capacity`: the kernel cuts a frame that does not
    /// fit the read to the buffer's length (some kernels report the full length), so
    /// a read that fills this buffer completely reveals a frame that was too long.
    rx_buffer: Box<[u8]>,
    /// A `Vec` only so that it can grow if smoltcp ever asks for a longer frame than
    /// `frame_capacity`; it never does in practice.
    tx_buffer: Vec<u8>,
    stats: TapStats,
    /// Inside a run of failed reads or writes: log the first failure loudly and the
    /// recovery once, not every frame.
    rx_failing: bool,
    tx_failing: bool,
}

impl TapDevice {
    /// Attaches to the TAP interface `name` in the calling thread's network
    /// namespace, sizing its buffers from the interface MTU.
    ///
    /// A persistent interface made by `tap-setup.sh up` for the calling user needs no
    /// privileges; otherwise (or if `name` does not exist yet, when the kernel creates
    /// a temporary one) this needs `CAP_NET_ADMIN`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let fd = Self::attach(name)?;
        let ip_mtu = sys::interface_mtu(name).map_err(OpenError::Mtu)?;
        Ok(Self::with_fd(fd, name, ip_mtu))
    }

    /// Like [`TapDevice::open`] but with the IP MTU given instead of asked from the
    /// kernel (clamped to 128..=65535). Frames the kernel sends that are longer than
    /// `ip_mtu` plus the Ethernet header are dropped and counted.
    pub fn open_with_mtu(name: &str, ip_mtu: usize) -> Result<Self, OpenError> {
        let fd = Self::attach(name)?;
        Ok(Self::with_fd(fd, name, ip_mtu))
    }

    fn attach(name: &str) -> Result<OwnedFd, OpenError> {
        sys::open_tap(name).map_err(|failure| match failure {
            sys::OpenFailure::InvalidName => OpenError::InvalidName,
            sys::OpenFailure::Tun(e) => OpenError::Tun(e),
            sys::OpenFailure::Attach(e) => OpenError::Attach(e),
        })
    }

    fn with_fd(fd: OwnedFd, name: &str, ip_mtu: usize) -> Self {
        let frame_capacity = ip_mtu
            .clamp(MIN_IP_MTU, MAX_IP_MTU)
            .saturating_add(EthernetFrame::<&[u8]>::header_len());
        Self {
            fd,
            name: name.to_owned(),
            frame_capacity,
            rx_buffer: vec![0; frame_capacity.saturating_add(1)].into_boxed_slice(),
            tx_buffer: vec![0; frame_capacity],
            stats: TapStats::default(),
            rx_failing: false,
            tx_failing: false,
        }
    }

    /// The interface name this device is attached to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The longest Ethernet frame (header included) this device moves; smoltcp sees
    /// it as the device's `max_transmission_unit`.
    pub fn frame_capacity(&self) -> usize {
        self.frame_capacity
    }

    /// The counters so far.
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// Sleeps until a frame can be read or `timeout` passed (`None`: no limit).
    /// Returns early, without error, when a signal interrupts the wait; fails with
    /// `ENODEV` once the interface has been deleted, since this descriptor then never
    /// works again (a new interface of the same name needs a new device).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        sys::wait_readable(self.fd.as_fd(), timeout)
    }

    /// Reads frames until one fits the receive buffer; returns its length, or `None`
    /// when there is nothing (more) to read now.
    fn read_next(&mut self) -> Option<usize> {
        for _ in 0..SKIPPED_READS_PER_RECEIVE {
            let stats = &mut self.stats;
            match sys::read_frame(self.fd.as_fd(), &mut self.rx_buffer) {
                Ok(0) => return None,
                Ok(len) if len > self.frame_capacity => {
                    stats.rx_errors = stats.rx_errors.wrapping_add(1);
                    stats.rx_oversize = stats.rx_oversize.wrapping_add(1);
                    stats.note_error(&io::Error::from(io::ErrorKind::InvalidData));
                    warn!(
                        "tap {}: dropped a frame longer than {} bytes \
                         (was the MTU raised after opening?)",
                        self.name, self.frame_capacity
                    );
                }
                Ok(len) => {
                    stats.rx_frames = stats.rx_frames.wrapping_add(1);
                    stats.rx_bytes = stats.rx_bytes.wrapping_add(len as u64);
                    if self.rx_failing {
                        self.rx_failing = false;
                        info!("tap {}: reads work again", self.name);
                    }
                    return Some(len);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    stats.rx_errors = stats.rx_errors.wrapping_add(1);
                    stats.note_error(&e);
                    if self.rx_failing {
                        debug!("tap {}: read failed again: {e}", self.name);
                    } else {
                        self.rx_failing = true;
                        warn!(
                            "tap {}: read failed: {e}; retrying on later polls",
                            self.name
                        );
                    }
                    return None;
                }
            }
        }
        None
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Device for TapDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let len = self.read_next()?;
        let frame = self.rx_buffer.get(..len)?;
        let tx = TxToken {
            fd: self.fd.as_fd(),
            name: &self.name,
            buffer: &mut self.tx_buffer,
            stats: &mut self.stats,
            failing: &mut self.tx_failing,
        };
        Some((RxToken { frame }, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken {
            fd: self.fd.as_fd(),
            name: &self.name,
            buffer: &mut self.tx_buffer,
            stats: &mut self.stats,
            failing: &mut self.tx_failing,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_capacity();
        caps
    }
}

/// One received frame, borrowed from the device's receive buffer.
#[doc(hidden)]
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Permission to send one frame, built in the device's transmit buffer.
#[doc(hidden)]
pub struct TxToken<'a> {
    fd: BorrowedFd<'a>,
    name: &'a str,
    buffer: &'a mut Vec<u8>,
    stats: &'a mut TapStats,
    failing: &'a mut bool,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Self {
            fd,
            name,
            buffer,
            stats,
            failing,
        } = self;
        if buffer.len() < len {
            // smoltcp never asks for more than `max_transmission_unit`; if it ever
            // did, growing once beats a panic, and the frame still goes out.
            warn!(
                "tap {name}: growing the transmit buffer from {} to {len} bytes",
                buffer.len()
            );
            buffer.resize(len, 0);
        }
        let frame = buffer.get_mut(..len).unwrap_or_default();
        let result = f(frame);
        match sys::write_frame(fd, frame) {
            Ok(written) => {
                stats.tx_frames = stats.tx_frames.wrapping_add(1);
                stats.tx_bytes = stats.tx_bytes.wrapping_add(written as u64);
                if *failing {
                    *failing = false;
                    info!("tap {name}: writes work again");
                }
            }
            Err(e) => {
                stats.tx_errors = stats.tx_errors.wrapping_add(1);
                stats.note_error(&e);
                if *failing {
                    debug!("tap {name}: write failed again: {e}");
                } else {
                    *failing = true;
                    warn!(
                        "tap {name}: write failed: {e}; dropping frames until the link works again"
                    );
                }
            }
        }
        result
    }
}

/// A device that has a [`TapDevice`] at the bottom, so a runner can wait on its
/// descriptor and read its counters through any wrappers.
///
/// Implemented for [`TapDevice`] and for smoltcp's [`PcapWriter`] (packet capture)
/// and [`Tracer`] (logging each frame) around one.
pub trait TapBacked: Device {
    /// The TAP device underneath.
    fn tap(&self) -> &TapDevice;
}

impl TapBacked for TapDevice {
    fn tap(&self) -> &TapDevice {
        self
    }
}

impl<D: TapBacked, S: PcapSink> TapBacked for PcapWriter<D, S> {
    fn tap(&self) -> &TapDevice {
        self.get_ref().tap()
    }
}

impl<D: TapBacked> TapBacked for Tracer<D> {
    fn tap(&self) -> &TapDevice {
        self.get_ref().tap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_kernel_would_misread_is_refused_before_any_system_call() {
        // InvalidName comes before /dev/net/tun is opened, so this needs no privileges.
        assert!(matches!(TapDevice::open(""), Err(OpenError::InvalidName)));
        assert!(matches!(
            TapDevice::open("a-name-of-16-byt"),
            Err(OpenError::InvalidName)
        ));
        assert!(matches!(
            TapDevice::open_with_mtu("tap\0", 1500),
            Err(OpenError::InvalidName)
        ));
    }

    #[test]
    fn a_small_mtu_is_raised_so_that_a_connect_cannot_underflow_the_stack() {
        use crate::runner::tap::{TapConfig, TapRunner};
        use smoltcp::iface::SocketSet;
        use smoltcp::socket::tcp;
        use smoltcp::wire::Ipv4Address;
        use std::os::unix::net::UnixDatagram;

        // One end of a datagram pair stands in for the TAP descriptor, as
        // `open_with_mtu(name, 30)` would build the device.
        let (ours, _kernel) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let device = TapDevice::with_fd(OwnedFd::from(ours), "small0", 30);
        assert_eq!(device.frame_capacity(), 128 + 14);
        let mut runner =
            TapRunner::new(device, &TapConfig::DEFAULT, SocketSet::new(vec![])).unwrap();
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 1024]),
            tcp::SocketBuffer::new(vec![0; 1024]),
        );
        let remote = (Ipv4Address::new(192, 168, 69, 100), 7);
        socket
            .connect(runner.interface_mut().context(), remote, 49_152)
            .unwrap();
        runner.sockets_mut().add(socket);
        // smoltcp takes its headers from the MTU unchecked: below 40 bytes
        // (60 over IPv6) this poll's SYN underflowed.
        runner.poll(&mut []);
    }

    #[test]
    fn stats_show_the_errno_behind_an_uncategorized_error() {
        let mut stats = TapStats {
            tx_frames: 2,
            tx_errors: 1,
            ..TapStats::default()
        };
        assert!(!stats.to_string().contains("last error"));
        stats.note_error(&io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(stats.last_os_error, Some(libc::EIO));
        let text = stats.to_string();
        assert!(text.contains("tx 2 frames"), "{text}");
        assert!(text.contains("os error 5"), "{text}");
    }
}
