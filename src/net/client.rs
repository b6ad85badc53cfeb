//! [`TcpClient`]: `connect` with a timeout, and the ephemeral ports smoltcp lacks.
//!
//! smoltcp's `tcp::Socket::connect` needs the caller to pick the local port. Picking
//! the same port again too soon is a classic bug: if the last connection from it is
//! still in `TIME-WAIT` at either end, the new SYN is answered with a RST or an ACK
//! for the old connection. [`PortAllocator`] hands out ports from the IANA dynamic
//! range in turn, starting at a random point, never one within a quarantine (by
//! default 60 s, Linux's `TIME-WAIT`) of its going out, nor one among the last
//! ones released within a quarantine. A connection that can outlive the
//! quarantine must give its port back when it ends ([`TcpClient::release`], or
//! the client's next `connect`), or the port may come round again while the
//! connection, or its `TIME-WAIT`, still holds it.

use core::fmt;

use smoltcp::iface::Context;

use crate::time::later;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// The first port of the IANA dynamic range (RFC 6335).
pub const EPHEMERAL_FIRST: u16 = 49_152;
/// The last port of the IANA dynamic range.
pub const EPHEMERAL_LAST: u16 = 65_535;

/// How many blocks the range is cut into, for when their ports last went out.
const BLOCKS: usize = 16;

/// Ports in a block (the range's 16,384 by [`BLOCKS`]).
const BLOCK_PORTS: u16 = 1024;

/// Ephemeral local ports that are not reused while they may be in `TIME-WAIT`.
///
/// Ports go out in turn, so a port comes back only after the whole range
/// (16,384 ports) has gone out since. The range is cut into 16 blocks of 1,024,
/// and the allocator keeps when a port of each last went out: it goes on into a
/// block only a quarantine after that ([`allocate`](Self::allocate) gives `None`
/// meanwhile, which takes more than 273 connections a second with the default
/// 60 s). So no port comes back within a quarantine of going out, whatever the
/// rate. `Q` is how many released ports it also remembers, for a port whose
/// connection outlived its quarantine ([`release`](Self::release) it when the
/// connection ends: until then only its going out counts); when it is full the oldest is
/// forgotten, counted in [`forgotten`](Self::forgotten) if its quarantine had
/// not passed. `Q` is at least 1 (heapless's deque has no room of 0: a
/// `PortAllocator<0>` does not build).
#[derive(Clone, Debug)]
pub struct PortAllocator<const Q: usize = 16> {
    next: u16,
    quarantine: Duration,
    released: heapless::Deque<(u16, Instant), Q>,
    /// When a port of each block last went out,
    last_out: [Instant; BLOCKS],
    /// if its bit is set here: a bit per block.
    went_out: u16,
    forgotten: u64,
}

/// Whether less than `quarantine` has passed from `at` to `now`: counted as a
/// difference, so that it holds at either end of the clock (where `at` plus the
/// quarantine would saturate), and a `now` before `at` counts as none passed.
fn within(at: Instant, now: Instant, quarantine: Duration) -> bool {
    let passed = now.total_micros().saturating_sub(at.total_micros());
    u64::try_from(passed).map_or(true, |passed| passed < quarantine.total_micros())
}

/// The block of `port`, of the range.
const fn block_of(port: u16) -> usize {
    (port.saturating_sub(EPHEMERAL_FIRST) / BLOCK_PORTS) as usize
}

/// The bit of `block` in `PortAllocator::went_out` (none past the 16th).
const fn block_bit(block: usize) -> u16 {
    match 1u16.checked_shl(block as u32) {
        Some(bit) => bit,
        None => 0,
    }
}

impl<const Q: usize> PortAllocator<Q> {
    /// An allocator starting at a port derived from `seed` (use the same randomness
    /// as the interface's `random_seed`, so ports differ across reboots).
    pub const fn new(seed: u64) -> Self {
        // 16 384 ports; the offset is below that, so the sum stays in range.
        let span = (EPHEMERAL_LAST as u64)
            .saturating_sub(EPHEMERAL_FIRST as u64)
            .saturating_add(1);
        let offset = match seed.checked_rem(span) {
            Some(offset) => offset as u16,
            None => 0,
        };
        Self {
            next: EPHEMERAL_FIRST.saturating_add(offset),
            quarantine: Duration::from_secs(60),
            released: heapless::Deque::new(),
            last_out: [Instant::ZERO; BLOCKS],
            // No port went out yet.
            went_out: 0,
            forgotten: 0,
        }
    }

    /// Released ports forgotten before their quarantine passed (more than `Q`
    /// released within a quarantine).
    pub const fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// The same allocator with another quarantine for released ports.
    pub const fn with_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// The next free port, or `None` while the block the cursor comes to had a
    /// port out less than a quarantine ago (the range went round faster), or
    /// every port is quarantined.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        for _ in 0..span {
            let port = self.next;
            let block = block_of(port);
            if port
                .saturating_sub(EPHEMERAL_FIRST)
                .is_multiple_of(BLOCK_PORTS)
            {
                // Into a block whose ports went out last at `last_out`, at the
                // latest: wait until the quarantine of the last one passed.
                let last = self.last_out.get(block).copied()?;
                if self.went_out & block_bit(block) != 0 && within(last, now, self.quarantine) {
                    return None;
                }
            }
            self.next = if port == EPHEMERAL_LAST {
                EPHEMERAL_FIRST
            } else {
                port.saturating_add(1)
            };
            let quarantined = self
                .released
                .iter()
                .any(|&(p, at)| p == port && within(at, now, self.quarantine));
            if !quarantined {
                if let Some(last) = self.last_out.get_mut(block) {
                    *last = now;
                }
                self.went_out |= block_bit(block);
                return Some(port);
            }
        }
        None
    }

    /// Gives `port` back; it is not handed out again for the quarantine.
    pub fn release(&mut self, port: u16, now: Instant) {
        if self.released.is_full()
            && let Some((_, at)) = self.released.pop_front()
            && within(at, now, self.quarantine)
        {
            self.forgotten = self.forgotten.saturating_add(1);
        }
        // Cannot fail: one slot was just freed if it was full.
        let _ = self.released.push_back((port, now));
    }
}

/// Why a connection attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectError {
    /// No answer (or no SYN-ACK) within the connect timeout.
    Timeout,
    /// The peer answered with a RST: nothing listens there, or its backlog is full.
    Refused,
    /// The remote address or port is unusable (unspecified, port 0), or the
    /// interface has no address to reach it from. A remote with no route is
    /// not refused here: its SYN goes nowhere, and the attempt ends in
    /// [`Timeout`](Self::Timeout).
    Unaddressable,
    /// The socket is already connected or connecting.
    InvalidState,
    /// Every ephemeral port is quarantined.
    NoFreePort,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectError::Timeout => "connection timed out",
            ConnectError::Refused => "connection refused",
            ConnectError::Unaddressable => "address unusable",
            ConnectError::InvalidState => "socket already in use",
            ConnectError::NoFreePort => "no free ephemeral port",
        })
    }
}

impl core::error::Error for ConnectError {}

/// The state of a [`TcpClient`]'s connection attempt. The client follows the
/// handshake only: once `Connected`, the connection's end (the peer's close,
/// a reset, a deadline) is its session's to report, through
/// [`TcpSession::poll`](super::TcpSession::poll), polled first in the same pass
/// as the client's poll that said `Connected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientState {
    /// Not connected.
    Idle,
    /// SYN sent, waiting for the handshake until the deadline.
    Connecting,
    /// Established: send and receive. It stays so whatever becomes of the
    /// connection.
    Connected,
    /// The attempt failed.
    Failed(ConnectError),
}

/// A TCP client: `connect(addr)` with a deadline, on a socket of the caller's.
///
/// ```
/// use smoltcp::iface::Interface;
/// use smoltcp::socket::tcp;
/// use smoltcp::time::{Duration, Instant};
/// use smolsock::net::{ClientState, ConnectError, PortAllocator, TcpClient};
///
/// /// Starts a connection to 10.0.0.1:7, then call `client.poll` after each
/// /// interface poll until it says `Connected` or `Failed`.
/// fn start(
///     iface: &mut Interface,
///     socket: &mut tcp::Socket<'_>,
///     ports: &mut PortAllocator,
///     now: Instant,
/// ) -> Result<TcpClient, ConnectError> {
///     let mut client = TcpClient::new(Duration::from_secs(3));
///     client.connect(iface.context(), socket, (smoltcp::wire::Ipv4Address::new(10, 0, 0, 1), 7), ports, now)?;
///     assert_eq!(client.state(), ClientState::Connecting);
///     Ok(client)
/// }
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a client connects only when polled"]
pub struct TcpClient {
    timeout: Duration,
    deadline: Instant,
    local_port: u16,
    state: ClientState,
}

impl TcpClient {
    /// A client whose connection attempts give up after `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: Instant::ZERO,
            local_port: 0,
            state: ClientState::Idle,
        }
    }

    /// The current state, as of the last [`poll`](Self::poll).
    pub const fn state(&self) -> ClientState {
        self.state
    }

    /// The local port in use (0 before the first connect).
    pub const fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Starts connecting `socket` to `remote` from a fresh ephemeral port. A socket
    /// left in `TIME-WAIT` or closed by an earlier connection is reused: its old
    /// port goes back to `ports`' quarantine.
    pub fn connect<const Q: usize>(
        &mut self,
        cx: &mut Context,
        socket: &mut tcp::Socket<'_>,
        remote: impl Into<IpEndpoint>,
        ports: &mut PortAllocator<Q>,
        now: Instant,
    ) -> Result<(), ConnectError> {
        match socket.state() {
            tcp::State::Closed => {}
            tcp::State::TimeWait => socket.abort(),
            _ => return Err(ConnectError::InvalidState),
        }
        self.release(ports, now);
        // From here on the last connection is gone: a refusal is this attempt's,
        // and the state says so.
        let attempt = ports
            .allocate(now)
            .ok_or(ConnectError::NoFreePort)
            .and_then(|port| {
                socket.connect(cx, remote.into(), port).map_err(|e| {
                    ports.release(port, now);
                    match e {
                        tcp::ConnectError::InvalidState => ConnectError::InvalidState,
                        _ => ConnectError::Unaddressable,
                    }
                })?;
                Ok(port)
            });
        let local_port = attempt.inspect_err(|&e| self.state = ClientState::Failed(e))?;
        self.local_port = local_port;
        self.deadline = later(now, self.timeout);
        self.state = ClientState::Connecting;
        Ok(())
    }

    /// Checks the handshake: `Connected` once established, `Failed(Refused)` on
    /// a RST, `Failed(Timeout)` past the deadline (the socket is then aborted).
    /// A socket that smoltcp closes by itself before the deadline (its own
    /// timeout, [`tcp::Socket::set_timeout`], set shorter than this client's)
    /// is reported `Refused` too: smoltcp does not say why it closed; leave the
    /// socket's timeout unset while connecting.
    pub fn poll(&mut self, socket: &mut tcp::Socket<'_>, now: Instant) -> ClientState {
        if self.state == ClientState::Connecting {
            self.state = match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived if now >= self.deadline => {
                    socket.abort();
                    ClientState::Failed(ConnectError::Timeout)
                }
                tcp::State::SynSent | tcp::State::SynReceived => ClientState::Connecting,
                tcp::State::Closed => ClientState::Failed(ConnectError::Refused),
                _ => ClientState::Connected,
            };
        }
        self.state
    }

    /// When [`poll`](Self::poll) must run again even with no traffic (the deadline).
    pub fn poll_at(&self) -> Option<Instant> {
        (self.state == ClientState::Connecting).then_some(self.deadline)
    }

    /// Gives the connection's port back to `ports` once the connection has
    /// ended (its session ended, or the socket is closed or in `TIME-WAIT`):
    /// the port is then quarantined from `now` on. [`connect`](Self::connect)
    /// does it for the connection before; a client that does not connect
    /// again, or one made afresh for each connection, must, whenever its
    /// connection can outlive the quarantine: until it is released, the
    /// allocator counts only from when the port went out, and hands it out
    /// again once the range has gone round. A second call does nothing.
    pub fn release<const Q: usize>(&mut self, ports: &mut PortAllocator<Q>, now: Instant) {
        if self.local_port != 0 {
            ports.release(self.local_port, now);
            self.local_port = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_allocator_gives_a_port_at_any_instant() {
        // Nothing went out yet: no block waits, even before smoltcp's epoch.
        for micros in [i64::MIN, -1, 0, i64::MAX] {
            let mut ports = PortAllocator::<4>::new(0);
            let now = Instant::from_micros(micros);
            assert!(ports.allocate(now).is_some(), "no port at {now}");
        }
    }

    #[test]
    fn no_port_comes_back_within_its_quarantine_at_the_end_of_the_clock() {
        // Where the quarantine's end would be past the clock's.
        let quarantine = Duration::from_secs(60);
        let mut ports = PortAllocator::<4>::new(0).with_quarantine(quarantine);
        let first_out = Instant::from_micros(i64::MAX) - Duration::from_secs(30);
        let first = ports.allocate(first_out).unwrap();
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        for _ in 1..span {
            ports.allocate(first_out).unwrap();
        }
        ports.release(first, first_out);
        let end = Instant::from_micros(i64::MAX);
        assert_eq!(ports.allocate(end), None, "30 s after {first} went out");
        assert_eq!(ports.forgotten(), 0);
    }

    #[test]
    fn no_port_comes_back_within_its_quarantine_at_a_high_connect_rate() {
        use std::collections::HashMap;
        // A connection a millisecond: the range goes round in 16.4 s, and the
        // cursor waits at each block for a quarantine since its ports last went
        // out. No port comes back within a quarantine of being handed out.
        let quarantine = Duration::from_secs(60);
        let mut ports = PortAllocator::<16>::new(0).with_quarantine(quarantine);
        let mut handed_at: HashMap<u16, Instant> = HashMap::new();
        let mut previous: Option<u16> = None;
        let (mut handed, mut refused) = (0u32, 0u32);
        for ms in 0..80_000i64 {
            let now = Instant::from_millis(ms);
            if let Some(port) = previous.take() {
                ports.release(port, now);
            }
            let Some(port) = ports.allocate(now) else {
                refused += 1;
                continue;
            };
            handed += 1;
            if let Some(&at) = handed_at.get(&port) {
                assert!(
                    now >= at + quarantine,
                    "port {port} handed out at {at} and at {now}"
                );
            }
            handed_at.insert(port, now);
            previous = Some(port);
        }
        // Refused from 16.4 s to 61 s (the first block's last port went out at
        // 1.023 s), then again past 77.4 s.
        assert_eq!(refused, (61_023 - 16_384) + (80_000 - 77_407));
        assert_eq!(handed, 80_000 - refused);
        assert!(ports.forgotten() > 0, "16 remembered of thousands released");
    }

    #[test]
    fn ports_come_in_turn_from_the_dynamic_range() {
        let mut ports = PortAllocator::<4>::new(u64::from(EPHEMERAL_LAST - EPHEMERAL_FIRST));
        let now = Instant::ZERO;
        assert_eq!(ports.allocate(now), Some(EPHEMERAL_LAST));
        assert_eq!(ports.allocate(now), Some(EPHEMERAL_FIRST), "wraps around");
        assert_eq!(ports.allocate(now), Some(EPHEMERAL_FIRST + 1));
    }

    #[test]
    fn a_released_port_is_not_reused_during_quarantine() {
        let mut ports = PortAllocator::<4>::new(0).with_quarantine(Duration::from_secs(60));
        let t0 = Instant::ZERO;
        let first = ports.allocate(t0).unwrap();
        // All the way round the range within a quarantine: the cursor waits at
        // the first block, whose other ports went out at 10 s, until 70 s.
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        for _ in 0..span - 1 {
            assert!(ports.allocate(t0 + Duration::from_secs(10)).is_some());
        }
        assert_eq!(ports.allocate(t0 + Duration::from_secs(69)), None);
        // The first port's connection was long: released at 50 s, it is still
        // quarantined at 71 s, and skipped.
        ports.release(first, t0 + Duration::from_secs(50));
        assert_eq!(
            ports.allocate(t0 + Duration::from_secs(71)),
            Some(first + 1)
        );
        // Round again, after its quarantine: the first port is free.
        for _ in 0..span - 2 {
            assert!(ports.allocate(t0 + Duration::from_secs(200)).is_some());
        }
        assert_eq!(ports.allocate(t0 + Duration::from_secs(200)), None);
        assert_eq!(ports.allocate(t0 + Duration::from_secs(300)), Some(first));
    }

    #[test]
    fn a_burst_at_the_end_of_a_slow_pass_brings_no_port_back_within_its_quarantine() {
        // One port at 0 s, the rest of the range at 59 s: at 60 s the first
        // block's ports went out a second ago.
        let quarantine = Duration::from_secs(60);
        let mut ports = PortAllocator::<16>::new(0).with_quarantine(quarantine);
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        let mut last_use = std::collections::HashMap::new();
        let mut hand = |ports: &mut PortAllocator<16>, now: Instant| {
            let port = ports.allocate(now)?;
            ports.release(port, now);
            Some((port, last_use.insert(port, now)))
        };
        hand(&mut ports, Instant::ZERO).unwrap();
        for _ in 1..span {
            hand(&mut ports, Instant::from_secs(59)).unwrap();
        }
        let mut given = 0;
        for secs in [60, 90, 118, 119, 120] {
            let now = Instant::from_secs(secs);
            for _ in 0..100 {
                if let Some((port, before)) = hand(&mut ports, now) {
                    given += 1;
                    let before = before.unwrap();
                    assert!(
                        now >= before + quarantine,
                        "port {port} used at {before} and at {now}"
                    );
                }
            }
        }
        assert_eq!(given, 200, "from 119 s on");
    }

    #[test]
    fn different_seeds_start_at_different_ports() {
        let a = PortAllocator::<1>::new(1).allocate(Instant::ZERO);
        let b = PortAllocator::<1>::new(2).allocate(Instant::ZERO);
        assert_ne!(a, b);
    }
}
