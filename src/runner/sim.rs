//! The in-process network: two smoltcp stacks joined by a simulated Ethernet link,
//! in one thread, with a seeded fault model and a virtual clock.
//!
//! A [`SimNet`] owns two [`Host`]s, `server` (10.0.0.1, fd00::1) and `client`
//! (10.0.0.2, fd00::2), each an [`Interface`] plus the [`SocketSet`] you hand in, and
//! the two directions of the link between them. Frames cross as Ethernet frames, so
//! ARP and neighbour discovery happen as on a real wire and a capture opens in
//! Wireshark. Each direction can lose, duplicate, reorder, delay and rate-limit
//! frames and has an MTU ([`FaultConfig`]); everything random comes from the seed in
//! [`SimConfig`], so the same seed gives the same run, bit for bit, on any machine.
//!
//! Time is virtual: [`SimNet::advance`] jumps straight to the next moment something
//! can happen (a frame arrives, a stack's timer fires), so a retransmission timeout
//! of seconds costs a handful of polls and tests never sleep. Memory is fixed: each
//! direction holds `SLOTS` frames of up to [`MAX_FRAME_LEN`] bytes (a full queue
//! tail-drops), nothing allocates and nothing panics, so the same code runs as a
//! firmware self-test on a microcontroller (choose a small `SLOTS` there: each slot
//! costs about 1.5 KiB per direction).
//!
//! ```
//! use smoltcp::iface::{SocketSet, SocketStorage};
//! use smoltcp::socket::tcp;
//! use smoltcp::time::Duration;
//! use smolsock::runner::sim::{FaultConfig, SimConfig, SimNet, SERVER_V4};
//!
//! // Everything the stacks use is the caller's: on a microcontroller these are statics.
//! let (mut server_rx, mut server_tx) = ([0u8; 4096], [0u8; 4096]);
//! let (mut client_rx, mut client_tx) = ([0u8; 4096], [0u8; 4096]);
//! let mut server_storage = [SocketStorage::EMPTY; 1];
//! let mut client_storage = [SocketStorage::EMPTY; 1];
//!
//! // A lossy link (10 % loss, duplicates, reordering, MTU 576), seeded with 7.
//! let mut net: SimNet = SimNet::new(
//!     SimConfig::new(7).with_faults(FaultConfig::ROUGH),
//!     SocketSet::new(&mut server_storage[..]),
//!     SocketSet::new(&mut client_storage[..]),
//! );
//! let listener = net.server.sockets.add(tcp::Socket::new(
//!     tcp::SocketBuffer::new(&mut server_rx[..]),
//!     tcp::SocketBuffer::new(&mut server_tx[..]),
//! ));
//! let conn = net.client.sockets.add(tcp::Socket::new(
//!     tcp::SocketBuffer::new(&mut client_rx[..]),
//!     tcp::SocketBuffer::new(&mut client_tx[..]),
//! ));
//! net.server.sockets.get_mut::<tcp::Socket>(listener).listen(7)?;
//! if let Some((socket, cx)) = net.client.socket_and_context::<tcp::Socket>(conn) {
//!     socket.connect(cx, (SERVER_V4, 7), 49152)?;
//! }
//!
//! // Poll, look, jump to the next event; give up after 30 s of virtual time.
//! let connected_at = net.run_until(Duration::from_secs(30), |net| {
//!     let socket = net.server.sockets.get::<tcp::Socket>(listener);
//!     (socket.state() == tcp::State::Established).then(|| net.now())
//! })?;
//! println!("connected at {connected_at}\n{}", net.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To record the traffic, add a capture: `SimNet::new(..).with_pcap(sink)` takes any
//! smoltcp [`PcapSink`]. Under `std`, give it a `trace::PcapFile` over a
//! `BufWriter<File>`, which stops at a write error (smoltcp's own sink for a plain
//! `std::io::Write` panics on one, a full disk). Without one the capture type is
//! [`NoCapture`], which compiles to nothing.

mod config;
mod link;
mod rng;
#[cfg(test)]
mod tests;

use core::fmt;

use smoltcp::iface::{Config, Context, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::socket::AnySocket;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv6Address};

pub use self::config::{FaultConfig, MAX_MTU, MIN_MTU, SimConfig};
use self::link::{Link, Port, duration_micros};
pub use self::link::{LinkStats, MAX_FRAME_LEN, SimStats};
use self::rng::derive_seed;
use crate::net::{Backlog, Service};
use crate::time::sooner;

/// The server's IPv4 address.
pub const SERVER_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
/// The client's IPv4 address.
pub const CLIENT_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// Prefix length of the IPv4 link (10.0.0.0/24).
pub const V4_PREFIX_LEN: u8 = 24;
/// The server's IPv6 address (unique local).
pub const SERVER_V6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The client's IPv6 address (unique local).
pub const CLIENT_V6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// Prefix length of the IPv6 link (fd00::/64).
pub const V6_PREFIX_LEN: u8 = 64;
/// The server's MAC address (locally administered, unicast).
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// The client's MAC address (locally administered, unicast).
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);

/// Salts that give each consumer of the seed its own stream.
const SALT_SERVER_IFACE: u64 = 1;
const SALT_CLIENT_IFACE: u64 = 2;
const SALT_SERVER_TO_CLIENT: u64 = 3;
const SALT_CLIENT_TO_SERVER: u64 = 4;

/// How many server-then-client passes one [`SimNet::poll`] makes at most while frames
/// are still due at the current instant (a zero-delay exchange settles in a few).
const MAX_POLL_PASSES: usize = 32;

/// How many times in a row [`SimNet::advance`] may find work due "now" before it
/// steps to the next future event anyway, so a stack that keeps asking to be polled
/// at once cannot freeze virtual time.
const STALL_LIMIT: u32 = 1024;

/// One direction of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Direction {
    /// Frames the server sends.
    ServerToClient,
    /// Frames the client sends.
    ClientToServer,
}

/// The capture of a [`SimNet`] without one: every call is empty and inlines away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoCapture;

impl PcapSink for NoCapture {
    fn write(&mut self, _data: &[u8]) {}

    fn global_header(&mut self, _link_type: PcapLinkType) {}

    fn packet(&mut self, _timestamp: Instant, _packet: &[u8]) {}
}

/// One end of the link: a smoltcp interface and the sockets it serves.
///
/// Both fields are public so the borrow checker lets you hold a socket and the
/// interface's context at once (`net.client.sockets.get_mut(..)` next to
/// `net.client.iface.context()`), which `tcp::Socket::connect` needs.
pub struct Host<'s> {
    /// The host's stack, with its MAC address and its IPv4 and IPv6 address.
    pub iface: Interface,
    /// The sockets the caller handed in; add and look up sockets here.
    pub sockets: SocketSet<'s>,
    /// The listen backlog in front of the stack (used if [`SimConfig::backlog`]).
    pub backlog: HostBacklog,
}

/// The backlog each simulated host has: 8 held SYNs, 8 ports, 64 connections.
pub type HostBacklog = Backlog<8, 8, 64>;

impl<'s> Host<'s> {
    /// The socket `handle` as a `T` together with the interface context, as
    /// `tcp::Socket::connect` wants them; `None` if `handle` is not a `T` of this host
    /// (where `SocketSet::get_mut` would panic).
    pub fn socket_and_context<T: AnySocket<'s>>(
        &mut self,
        handle: SocketHandle,
    ) -> Option<(&mut T, &mut Context)> {
        let socket = self
            .sockets
            .iter_mut()
            .find(|(h, _)| *h == handle)
            .and_then(|(_, socket)| T::downcast_mut(socket))?;
        Some((socket, self.iface.context()))
    }

    /// The interface context, for socket calls that need it.
    pub fn context(&mut self) -> &mut Context {
        self.iface.context()
    }
}

impl fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("ip_addrs", &self.iface.ip_addrs())
            .field("sockets", &self.sockets.iter().count())
            .finish()
    }
}

/// A run loop gave up: its limit of virtual time passed before its condition held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SimTimeout {
    /// The virtual time the loop was given.
    pub limit: Duration,
    /// The virtual time when it gave up.
    pub now: Instant,
}

impl fmt::Display for SimTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition not met within {} of virtual time (now {})",
            self.limit, self.now
        )
    }
}

impl core::error::Error for SimTimeout {}

/// No service: for [`SimNet::run_services`] when only one side runs one.
impl Service for () {
    fn poll(&mut self, _sockets: &mut SocketSet<'_>, _now: Instant) {}
}

/// Two smoltcp hosts on a simulated Ethernet link with a virtual clock.
///
/// `SLOTS` is how many frames each direction holds in flight (each slot is one
/// [`MAX_FRAME_LEN`]-byte frame, so about 1.5 KiB per slot per direction); `P` is the
/// packet capture, [`NoCapture`] unless [`with_pcap`](Self::with_pcap) set one.
/// Write the type as `SimNet` (64 slots) or `SimNet<'_, 8>` on a small target.
pub struct SimNet<'s, const SLOTS: usize = 64, P = NoCapture> {
    /// The host at 10.0.0.1 / fd00::1.
    pub server: Host<'s>,
    /// The host at 10.0.0.2 / fd00::2.
    pub client: Host<'s>,
    server_to_client: Link<SLOTS>,
    client_to_server: Link<SLOTS>,
    staging: [u8; MAX_FRAME_LEN],
    capture: P,
    now: Instant,
    config: SimConfig,
    /// The frame sizes each interface was built for (smoltcp reads them only once).
    server_max_frame: usize,
    client_max_frame: usize,
    stalled: u32,
}

impl<'s, const SLOTS: usize> SimNet<'s, SLOTS, NoCapture> {
    /// Builds both hosts at virtual time zero, each serving the given socket set.
    ///
    /// Each interface's `Config::random_seed` is derived from `config.seed` (smoltcp's
    /// default of 0 would make TCP initial sequence numbers predictable). The MTU of
    /// each direction becomes the MTU its sender's device advertises.
    pub fn new(
        config: SimConfig,
        server_sockets: SocketSet<'s>,
        client_sockets: SocketSet<'s>,
    ) -> Self {
        let now = Instant::from_micros_const(0);
        let mut server_to_client = Link::new(
            config.server_to_client,
            derive_seed(config.seed, SALT_SERVER_TO_CLIENT),
        );
        let mut client_to_server = Link::new(
            config.client_to_server,
            derive_seed(config.seed, SALT_CLIENT_TO_SERVER),
        );
        let mut staging = [0; MAX_FRAME_LEN];
        let server_max_frame = config.server_to_client.max_frame_len();
        let client_max_frame = config.client_to_server.max_frame_len();
        let server_iface = new_iface(
            SERVER_MAC,
            derive_seed(config.seed, SALT_SERVER_IFACE),
            (SERVER_V4, SERVER_V6),
            &mut Port {
                outgoing: &mut server_to_client,
                incoming: &mut client_to_server,
                capture: &mut NoCapture,
                staging: &mut staging,
                now,
                max_frame_len: server_max_frame,
            },
        );
        let client_iface = new_iface(
            CLIENT_MAC,
            derive_seed(config.seed, SALT_CLIENT_IFACE),
            (CLIENT_V4, CLIENT_V6),
            &mut Port {
                outgoing: &mut client_to_server,
                incoming: &mut server_to_client,
                capture: &mut NoCapture,
                staging: &mut staging,
                now,
                max_frame_len: client_max_frame,
            },
        );
        Self {
            server: Host {
                iface: server_iface,
                sockets: server_sockets,
                backlog: Backlog::new(),
            },
            client: Host {
                iface: client_iface,
                sockets: client_sockets,
                backlog: Backlog::new(),
            },
            server_to_client,
            client_to_server,
            staging,
            capture: NoCapture,
            now,
            config,
            server_max_frame,
            client_max_frame,
            stalled: 0,
        }
    }
}

/// A host's interface at virtual time zero: its MAC, a seed of its own, its addresses.
fn new_iface<const SLOTS: usize>(
    mac: EthernetAddress,
    random_seed: u64,
    (v4, v6): (Ipv4Address, Ipv6Address),
    port: &mut Port<'_, SLOTS, NoCapture>,
) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = random_seed;
    let mut iface = Interface::new(config, port, port.now);
    iface.update_ip_addrs(|addrs| {
        // smoltcp holds at least two addresses per interface (its default), so
        // neither push can fail; were the limit lowered, the host would simply
        // lack that address and its traffic would not be answered.
        let _ = addrs.push(IpCidr::new(v4.into(), V4_PREFIX_LEN));
        let _ = addrs.push(IpCidr::new(v6.into(), V6_PREFIX_LEN));
    });
    iface
}

impl<'s, const SLOTS: usize, P: PcapSink> SimNet<'s, SLOTS, P> {
    /// The same network, recording every frame put on the wire into `sink` from now
    /// on (libpcap format, Ethernet link type, virtual timestamps from 1970-01-01).
    ///
    /// The capture is what the senders transmitted, as `tcpdump` on each sending
    /// interface would see it: lost frames and frames dropped for size or a full
    /// queue are in it, duplicates made by the link are not, and the order is send
    /// order. Under `std`, [`PcapFile`][pcap-file] writes into any
    /// `std::io::Write` and stops at a write error (smoltcp's own sink for an
    /// `io::Write`, which this takes too, panics on one: a full disk). Wrap
    /// files in a `BufWriter`: the sink is flushed per frame.
    ///
    #[cfg_attr(feature = "std", doc = "[pcap-file]: crate::trace::PcapFile")]
    #[cfg_attr(not(feature = "std"), doc = "[pcap-file]: crate#features")]
    pub fn with_pcap<Q: PcapSink>(self, mut sink: Q) -> SimNet<'s, SLOTS, Q> {
        sink.global_header(PcapLinkType::Ethernet);
        SimNet {
            server: self.server,
            client: self.client,
            server_to_client: self.server_to_client,
            client_to_server: self.client_to_server,
            staging: self.staging,
            capture: sink,
            now: self.now,
            config: self.config,
            server_max_frame: self.server_max_frame,
            client_max_frame: self.client_max_frame,
            stalled: self.stalled,
        }
    }

    /// The capture sink.
    pub const fn capture(&self) -> &P {
        &self.capture
    }

    /// The capture sink, to flush or drain it.
    pub const fn capture_mut(&mut self) -> &mut P {
        &mut self.capture
    }

    /// The current virtual time; it starts at zero, never goes backwards, and
    /// stops at [`MAX_TIME`].
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// The configuration the network was built with (fault changes made later with
    /// [`set_faults`](Self::set_faults) are reported by [`faults`](Self::faults)).
    pub const fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The counters of both directions.
    pub const fn stats(&self) -> SimStats {
        SimStats {
            server_to_client: self.server_to_client.stats(),
            client_to_server: self.client_to_server.stats(),
        }
    }

    /// The counters of one direction.
    pub const fn link_stats(&self, direction: Direction) -> LinkStats {
        self.link(direction).stats()
    }

    /// The fault model one direction applies now.
    pub const fn faults(&self, direction: Direction) -> FaultConfig {
        self.link(direction).faults()
    }

    /// Changes one direction's fault model from now on; frames already in flight keep
    /// their fate. The random stream carries on, so a run stays reproducible.
    ///
    /// The stacks keep the MTU they were built with (smoltcp reads it once): lowering
    /// `mtu` here makes a path-MTU black hole, where full-size frames are dropped and
    /// counted in [`LinkStats::dropped_mtu`].
    pub const fn set_faults(&mut self, direction: Direction, faults: FaultConfig) {
        self.link_mut(direction).set_faults(faults);
    }

    /// How many frames one direction holds right now (at most `SLOTS`).
    pub const fn in_flight(&self, direction: Direction) -> usize {
        self.link(direction).in_flight()
    }

    /// Puts a raw Ethernet frame on the wire as if its sender had transmitted it now:
    /// it is captured, counted and goes through the fault model like any other
    /// (a frame longer than the MTU allows is dropped and counted). Useful to show
    /// a stack garbage, or a frame no well-behaved stack would send.
    pub fn inject_frame(&mut self, direction: Direction, frame: &[u8]) {
        let now = self.now;
        let link = match direction {
            Direction::ServerToClient => &mut self.server_to_client,
            Direction::ClientToServer => &mut self.client_to_server,
        };
        link.transmit(frame, now, &mut self.capture);
    }

    /// Polls both interfaces at the current virtual time: the server, then the client,
    /// and again while frames sent in the meantime are already due (a link without
    /// delay settles within one call). Returns whether any socket may have changed.
    pub fn poll(&mut self) -> PollResult {
        let mut result = PollResult::None;
        for _ in 0..MAX_POLL_PASSES {
            if self.poll_host(Direction::ServerToClient) == PollResult::SocketStateChanged {
                result = PollResult::SocketStateChanged;
            }
            if self.poll_host(Direction::ClientToServer) == PollResult::SocketStateChanged {
                result = PollResult::SocketStateChanged;
            }
            if !self.server_to_client.has_due(self.now) && !self.client_to_server.has_due(self.now)
            {
                break;
            }
        }
        result
    }

    /// Moves the clock to the next moment something can happen and returns it: the
    /// earliest of the next frame delivery, either interface's `poll_at`, either
    /// listen backlog's next step (a held SYN), `hint` (for example a service's
    /// own timer), and `now + max_idle_step`; never past [`MAX_TIME`].
    ///
    /// If something is due now the clock stays (call [`poll`](Self::poll) again),
    /// up to 1024 calls in a row: then it moves on to the next moment after now,
    /// so that work that stays due (a socket that never sends what it says it
    /// will) cannot stop virtual time. Time never goes backwards, so a `hint` in
    /// the past counts as "now".
    pub fn advance(&mut self, hint: Option<Instant>) -> Instant {
        self.advance_within(hint, None)
    }

    /// Repeats `poll`, `until(self)`, `advance` until `until` returns `Some`, or fails
    /// once `limit` of virtual time has passed (`until` is still asked at the limit).
    pub fn run_until<R>(
        &mut self,
        limit: Duration,
        mut until: impl FnMut(&mut Self) -> Option<R>,
    ) -> Result<R, SimTimeout> {
        let deadline = self.deadline(limit);
        loop {
            self.poll();
            if let Some(result) = until(self) {
                return Ok(result);
            }
            if self.now >= deadline {
                return Err(SimTimeout {
                    limit,
                    now: self.now,
                });
            }
            self.advance_within(None, Some(deadline));
        }
    }

    /// Lets the network run for `duration` of virtual time (timers fire, frames
    /// cross) and stops exactly at `now + duration`.
    pub fn run_for(&mut self, duration: Duration) {
        // A condition that never holds ends in the timeout, which is the point here.
        let _ = self.run_until(duration, |_| None::<()>);
    }

    /// Like [`run_until`](Self::run_until), and polls a service on each host after
    /// every interface poll: `server` with the server's sockets, `client` with the
    /// client's (`&mut ()` is "no service"). Their `poll_at` times are honoured when
    /// advancing the clock.
    pub fn run_services<S, C, R>(
        &mut self,
        server: &mut S,
        client: &mut C,
        limit: Duration,
        mut until: impl FnMut(&mut S, &mut C, &mut Self) -> Option<R>,
    ) -> Result<R, SimTimeout>
    where
        S: Service + ?Sized,
        C: Service + ?Sized,
    {
        let deadline = self.deadline(limit);
        loop {
            self.poll();
            server.poll(&mut self.server.sockets, self.now);
            client.poll(&mut self.client.sockets, self.now);
            if let Some(result) = until(server, client, self) {
                return Ok(result);
            }
            if self.now >= deadline {
                return Err(SimTimeout {
                    limit,
                    now: self.now,
                });
            }
            let hint = sooner(
                server.poll_at(&self.server.sockets),
                client.poll_at(&self.client.sockets),
            );
            self.advance_within(hint, Some(deadline));
        }
    }

    fn deadline(&self, limit: Duration) -> Instant {
        add_micros(self.now, duration_micros(limit))
    }

    const fn link(&self, direction: Direction) -> &Link<SLOTS> {
        match direction {
            Direction::ServerToClient => &self.server_to_client,
            Direction::ClientToServer => &self.client_to_server,
        }
    }

    const fn link_mut(&mut self, direction: Direction) -> &mut Link<SLOTS> {
        match direction {
            Direction::ServerToClient => &mut self.server_to_client,
            Direction::ClientToServer => &mut self.client_to_server,
        }
    }

    /// Polls the host that sends in `direction`.
    fn poll_host(&mut self, direction: Direction) -> PollResult {
        let (host, outgoing, incoming, max_frame_len) = match direction {
            Direction::ServerToClient => (
                &mut self.server,
                &mut self.server_to_client,
                &mut self.client_to_server,
                self.server_max_frame,
            ),
            Direction::ClientToServer => (
                &mut self.client,
                &mut self.client_to_server,
                &mut self.server_to_client,
                self.client_max_frame,
            ),
        };
        let mut port = Port {
            outgoing,
            incoming,
            capture: &mut self.capture,
            staging: &mut self.staging,
            now: self.now,
            max_frame_len,
        };
        if self.config.backlog {
            host.backlog.sync(&host.iface, &mut host.sockets, self.now);
            host.iface.poll(
                self.now,
                &mut host.backlog.device(&mut port),
                &mut host.sockets,
            )
        } else {
            host.iface.poll(self.now, &mut port, &mut host.sockets)
        }
    }

    fn advance_within(&mut self, hint: Option<Instant>, deadline: Option<Instant>) -> Instant {
        let now = self.now;
        let idle = add_micros(now, duration_micros(self.config.max_idle_step).max(1));
        let candidates = [
            self.server_to_client.next_delivery(),
            self.client_to_server.next_delivery(),
            self.server.iface.poll_at(now, &self.server.sockets),
            self.client.iface.poll_at(now, &self.client.sockets),
            // A held SYN is replayed, or a handshake evicted for it, by time.
            self.backlog_poll_at(&self.server),
            self.backlog_poll_at(&self.client),
            hint,
        ];
        let mut next = candidates
            .iter()
            .flatten()
            .fold(idle, |next, &at| next.min(at.max(now)));
        if next <= now {
            self.stalled = self.stalled.saturating_add(1);
            if self.stalled > STALL_LIMIT {
                crate::macros::net_debug!("sim: work due now for {} steps, moving on", STALL_LIMIT);
                next = candidates
                    .iter()
                    .flatten()
                    .filter(|&&at| at > now)
                    .fold(idle, |next, &at| next.min(at));
                self.stalled = 0;
            }
        } else {
            self.stalled = 0;
        }
        if let Some(deadline) = deadline {
            next = next.min(deadline.max(now));
        }
        // Time stops at its end: what is due later never comes.
        next = next.min(MAX_TIME.max(now));
        self.now = next;
        next
    }

    /// When the backlog of `host` asks to be polled (a held SYN waits).
    fn backlog_poll_at(&self, host: &Host<'s>) -> Option<Instant> {
        let delay = host.backlog.poll_delay().filter(|_| self.config.backlog)?;
        Some(add_micros(self.now, duration_micros(delay)))
    }
}

impl<const SLOTS: usize, P> fmt::Debug for SimNet<'_, SLOTS, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet")
            .field("now", &self.now)
            .field("config", &self.config)
            .field("server_to_client", &self.server_to_client.stats())
            .field("client_to_server", &self.client_to_server.stats())
            .finish_non_exhaustive()
    }
}

fn add_micros(at: Instant, micros: i64) -> Instant {
    let end = MAX_TIME.total_micros();
    Instant::from_micros_const(at.total_micros().saturating_add(micros).min(end))
}

/// The end of virtual time: 2^32 s (136 years) after its start. A pcap's
/// timestamps end there, and smoltcp, whose timers add to the time they are
/// given, is far from the end of its own clock.
pub const MAX_TIME: Instant = Instant::from_micros_const(u32::MAX as i64 * 1_000_000);
