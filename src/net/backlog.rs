//! The listen backlog: see [`Backlog`].

use core::cell::RefCell;

use crate::time::later;
use core::fmt;

use smoltcp::config::IFACE_MAX_ADDR_COUNT;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{AnySocket, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol,
    Ipv4Packet, Ipv6Packet, TcpPacket,
};

/// The longest frame a held SYN may be (Ethernet, IPv6 and TCP headers with options).
pub const HELD_SYN_LEN: usize = 160;

/// How long a held SYN is kept for replay.
pub const HOLD: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(2000);

/// How long a handshake is left alone before a held SYN may evict it. A real client
/// completes its handshake in one round trip; evicting younger ones reset real
/// clients of a burst (each replayed SYN's handshake was evicted by the next held
/// SYN before its ACK could arrive), while a forged SYN still holds a slot no
/// longer than this.
const EVICT_AFTER: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(100);

/// How long the handshake of a peer not known to be there is left alone before
/// a held SYN from another such peer may evict it, while the hold queue has
/// room: smoltcp's first SYN-ACK retransmission. Trading one unknown handshake
/// for another only churns: a client beyond a router never shows itself (its
/// router answers ARP), so a burst of them with a round trip over
/// [`EVICT_AFTER`] would each be evicted by the next one's SYN before its ACK
/// came back. A held SYN from a peer known to be there still evicts an unknown
/// handshake from [`EVICT_AFTER`] on, and so does any once the hold queue is
/// full: a burst fits in it, a flood fills it, and a flood's forged handshakes
/// must not hold the slots a second each while real SYNs are dropped.
const EVICT_FOR_UNKNOWN_AFTER: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(1);

/// How long the handshake of a peer known to be there (it sent us ARP, or
/// completed a handshake before) is left alone before a held SYN may evict it.
///
/// smoltcp, like Linux, resends an unanswered SYN-ACK after 1 s and 3 s: by 4 s
/// a live client on a lossy link has had three SYN-ACKs to answer, the last
/// with a second for its answer, and one that has not answered any is more
/// likely a peer that never will. A handshake is evicted only for a SYN that
/// waits with every slot of its port taken, oldest first; one from an address
/// that never showed itself goes first, from 100 ms on (from 1 s while the hold
/// queue has room and the SYN waiting is from such an address too). Linux prunes its SYN
/// queue in the same spirit: while it is more than half full of requests that
/// already needed a retransmission, a request's SYN-ACK goes out as few as
/// three times (0, 1 and 3 s), and the request expires at 7 s instead of 63 s.
/// Without this, a host that sends one ARP frame and one SYN per slot holds the
/// pool for the whole handshake timeout. A client's SYN retransmitted after
/// 3 s is still held at 4 s ([`HOLD`]), and gets the slot then.
pub const EVICT_ALIVE_AFTER: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(4);

/// What a [`Backlog`] has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BacklogStats {
    /// SYNs to a full port held back instead of refused.
    pub syns_held: u64,
    /// Held SYNs given to smoltcp once a socket listened.
    pub syns_replayed: u64,
    /// SYNs dropped: the hold queue was full, they waited past [`HOLD`] (the
    /// client retransmits), or a socket had their connection (copies of the SYN
    /// that opened it, read in the same poll).
    pub syns_dropped: u64,
    /// Half-open connections reset to make room for a held SYN.
    pub evictions: u64,
    /// Resets dropped because their sequence number was not the one expected.
    pub blind_resets_dropped: u64,
    /// Fragments of IP packets carrying TCP, dropped: a piece of a segment
    /// cannot be checked, and TCP does not need them (it sizes its segments to
    /// the path and forbids fragmenting them).
    pub fragments_dropped: u64,
    /// TCP segments for an address that is not the interface's own, dropped:
    /// another host's (flooded to us by a switch or a bridge), or a broadcast
    /// or multicast one, which TCP never uses (RFC 1122 §4.2.3.10) and smoltcp
    /// would take a SYN for, and reset the socket it took.
    pub foreign_dropped: u64,
}

impl fmt::Display for BacklogStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} SYNs held, {} replayed, {} dropped, {} evictions, {} blind resets dropped, \
             {} TCP fragments dropped, {} for other addresses dropped",
            self.syns_held,
            self.syns_replayed,
            self.syns_dropped,
            self.evictions,
            self.blind_resets_dropped,
            self.fragments_dropped,
            self.foreign_dropped
        )
    }
}

#[derive(Clone, Copy)]
struct HeldSyn {
    port: u16,
    /// The client: a retransmission of its SYN replaces the copy held.
    from: (IpAddress, u16),
    since: Instant,
    len: usize,
    frame: [u8; HELD_SYN_LEN],
}

/// One connection's receive sequence as our last ACK told the peer.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Tracked {
    local_port: u16,
    remote: IpAddress,
    remote_port: u16,
    /// The ACK number of the last segment we sent: the peer's RST must carry it.
    expected: u32,
    /// The ACK number of our SYN-ACK: the peer's ISN + 1. Only a SYN with that
    /// ISN is a retransmission of the one that opened the connection.
    opened_by: Option<u32>,
}

/// The state a [`Backlog`] keeps between packets.
struct State<const H: usize, const P: usize, const C: usize> {
    medium: Medium,
    held: heapless::Vec<HeldSyn, H>,
    /// Ports that got a backlog (a socket listened on them), and how many sockets
    /// listen now that no SYN has taken yet. A count, not a flag: one poll may
    /// replay several held SYNs, and each takes a listener; a SYN replayed with
    /// none left is refused by smoltcp with a RST.
    ports: heapless::Vec<(u16, usize), P>,
    /// Sockets in a handshake, since when they were first seen in it, and with whom.
    half_open: heapless::Vec<(SocketHandle, u16, Instant, Option<IpEndpoint>), C>,
    /// Peers that showed they exist: they sent us ARP, or completed a handshake.
    /// Their handshakes are evicted last, and only after [`EVICT_ALIVE_AFTER`]:
    /// see `sync`.
    alive: heapless::Vec<IpAddress, C>,
    tracked: heapless::Vec<Tracked, C>,
    /// The interface's addresses, as of the last `sync` (none while it has
    /// none, or takes any address): a TCP segment for any other is dropped.
    addrs: heapless::Vec<IpAddress, IFACE_MAX_ADDR_COUNT>,
    stats: BacklogStats,
}

/// A listen backlog in front of smoltcp: SYNs held back instead of refused, half-open
/// connections evicted oldest first, and blind resets dropped.
///
/// smoltcp has no accept queue: a SYN that finds no socket listening on its port is
/// answered with a RST, so a pool whose slots are all busy refuses a client that
/// merely reconnected a moment too soon. Linux instead *drops* a SYN its full
/// backlog cannot take, and the client's own SYN retransmission (after 1 s, then
/// 3 s, 7 s …) brings it back. [`Backlog`] does the same from outside smoltcp,
/// through a [`Device`] wrapped around the real one for each `Interface::poll`
/// ([`Backlog::device`]) and a look at the sockets just before it
/// ([`Backlog::sync`]):
///
/// - **A SYN to a full port is held, not refused.** The backlog keeps a copy (a SYN
///   is small) and hands smoltcp nothing for it, so no RST goes out. When the pool
///   has a listening socket again, the held SYN is replayed, and the client is
///   served without waiting for its own retransmission. A SYN held longer than
///   [`HOLD`] is dropped: the client has retransmitted by then. So is a held
///   copy of a SYN that a socket took in the same poll (a duplicate, or a
///   retransmission), once `sync` finds the socket with its connection:
///   replayed after that connection ended, it would hold the slot for a
///   handshake nobody completes.
/// - **A held SYN evicts the oldest half-open connection** on its port, as an OS's
///   SYN queue does: [`Backlog::sync`] resets the socket whose handshake has waited
///   longest (at least 100 ms), and the pool listens on it again. A flood of forged
///   SYNs from addresses that never answer then holds a slot only until the next
///   SYN arrives, and a real client, whose handshake completes in one round trip,
///   gets through. The handshake of a peer known to be there (it sent us ARP, or
///   completed a handshake before; for IPv6, a neighbor solicitation or
///   advertisement) is evicted last, and only once it is [`EVICT_ALIVE_AFTER`]
///   (4 s) old, after its SYN-ACK went out three times: a real client's slow
///   handshake is not cut short by the next SYN (a forged SYN from an address
///   on the link leaves smoltcp's socket slot silent for 1 s, as its ARP is never
///   answered, so those go first), and a host that answers ARP but never
///   completes its handshakes holds a slot no longer than that while SYNs wait.
///   A handshake is evicted only for a held SYN: with none waiting, a slow one
///   has until the server's handshake timeout. And one from a peer not known
///   to be there is evicted from 100 ms on for a SYN from a peer that is
///   (held SYNs from known peers are replayed first, and take the place of the
///   oldest unknown one when the hold queue is full), or once the hold queue
///   is full (a flood); for another unknown peer's SYN while the queue has
///   room (a burst), only after a second, smoltcp's first SYN-ACK
///   retransmission. Clients beyond a router never show themselves (their
///   router answers ARP): a burst of them with a long round trip is served,
///   not churned, each handshake evicted by the next SYN before its ACK could
///   come back.
/// - **A RST whose sequence number is not exactly the one expected is dropped**
///   (RFC 5961 §3.2). smoltcp 0.14 accepts any RST inside the receive window, so an
///   attacker who guesses the port pair can reset a connection by stepping through
///   the window. The backlog watches the ACK numbers we send, which are exactly
///   what a peer's RST must carry, and lets through only the RST that matches. (RFC
///   5961 also answers the others with a "challenge ACK"; the backlog cannot make
///   smoltcp send one. A real peer whose reset is dropped resets again on our next
///   segment, and the idle deadline frees the slot in any case.)
/// - **TCP for an address not the interface's own is dropped**, counted: a
///   SYN for another host (a switch flooding a frame it has not learned) would
///   be held and evict our handshakes, and one for a broadcast or multicast
///   address, which smoltcp takes, would use a listener up unseen. `sync` reads
///   the addresses from the interface (none are dropped while it has none, or
///   takes any address; IPv6 loopback, which smoltcp always takes, passes).
/// - **Fragments of TCP packets are dropped**, counted: a piece of a segment
///   cannot be checked, and TCP sets Don't Fragment and sizes its segments to
///   the path, so no real peer needs them. (smoltcp as this crate builds it
///   drops them anyway; one built to reassemble them would otherwise take a
///   stepped RST past the check in pieces.)
///
/// A port gets a backlog when a socket first listens on it (up to `P` ports) and
/// keeps it until [`forget`](Backlog::forget). The cost is fixed: `H` held SYNs of
/// at most [`HELD_SYN_LEN`] bytes, `P` ports, `C` connections watched.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use smoltcp::iface::{Interface, SocketSet};
/// use smoltcp::phy::Device;
/// use smolsock::net::{Backlog, Service};
///
/// /// One turn of a poll loop with a backlog in front of the stack.
/// fn turn<D: Device>(
///     iface: &mut Interface,
///     device: &mut D,
///     sockets: &mut SocketSet<'_>,
///     backlog: &mut Backlog<4, 4, 16>,
///     services: &mut dyn Service,
///     now: smoltcp::time::Instant,
/// ) {
///     backlog.sync(iface, sockets, now);
///     iface.poll(now, &mut backlog.device(device), sockets);
///     services.poll(sockets, now);
/// }
/// # let _ = turn::<smoltcp::phy::Loopback>;
/// // Room for 4 held SYNs, 4 ports and 16 connections, in fixed memory. `new` is
/// // `const`, but a backlog is not `Sync` (a `RefCell` inside): a device keeps it
/// // with its poll loop (or in a static cell it owns), not in a plain `static`.
/// let backlog: Backlog<4, 4, 16> = Backlog::new();
/// assert_eq!(backlog.stats().syns_held, 0);
/// # }
/// ```
///
/// `H` SYNs can be held at once, `P` ports have a backlog, `C` connections are
/// watched (for blind resets and half-open eviction; the oldest is forgotten when
/// more are open, and a connection not watched is not protected).
pub struct Backlog<const H: usize, const P: usize, const C: usize> {
    // Both tokens of a received frame need it, and smoltcp sends a reply from
    // inside the receive token's closure: each borrow is held only around the
    // backlog's own bookkeeping, never across a call into smoltcp.
    state: RefCell<State<H, P, C>>,
}

impl<const H: usize, const P: usize, const C: usize> Backlog<H, P, C> {
    /// An empty backlog.
    pub const fn new() -> Self {
        Self {
            state: RefCell::new(State {
                medium: Medium::Ethernet,
                held: heapless::Vec::new(),
                ports: heapless::Vec::new(),
                half_open: heapless::Vec::new(),
                alive: heapless::Vec::new(),
                tracked: heapless::Vec::new(),
                addrs: heapless::Vec::new(),
                stats: BacklogStats {
                    syns_held: 0,
                    syns_replayed: 0,
                    syns_dropped: 0,
                    evictions: 0,
                    blind_resets_dropped: 0,
                    fragments_dropped: 0,
                    foreign_dropped: 0,
                },
            }),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BacklogStats {
        self.state.try_borrow().map(|s| s.stats).unwrap_or_default()
    }

    /// `inner` with the backlog in front, for one `Interface::poll`.
    pub fn device<'a, D: Device>(&'a mut self, inner: &'a mut D) -> Gated<'a, D, H, P, C> {
        self.state.get_mut().medium = inner.capabilities().medium;
        Gated {
            inner,
            state: &self.state,
        }
    }

    /// How soon the loop should poll again for a held SYN to be replayed (a slot
    /// may free by time, with no frame to wake the loop): 10 ms while any is held.
    pub fn poll_delay(&self) -> Option<smoltcp::time::Duration> {
        let held = self.state.try_borrow().map(|s| !s.held.is_empty());
        held.unwrap_or(false)
            .then(|| smoltcp::time::Duration::from_millis(10))
    }

    /// Ends the backlog of `port` (a server shut down): its SYNs are refused by
    /// the stack again.
    pub fn forget(&mut self, port: u16) {
        let state = self.state.get_mut();
        state.ports.retain(|&(p, _)| p != port);
        state.drop_held(|h| h.port != port);
    }

    /// Looks at the interface and the sockets before each `Interface::poll`
    /// (after the services had theirs): the interface's addresses (a TCP
    /// segment for any other is dropped, counted), which ports have a socket
    /// listening, which handshakes are under way; drops the held SYNs whose
    /// connection a socket has, and evicts the oldest handshake on a port for
    /// which a SYN is still held.
    pub fn sync(&mut self, iface: &Interface, sockets: &mut SocketSet<'_>, now: Instant) {
        let state = self.state.get_mut();
        state.addrs.clear();
        // An interface that takes any address (smoltcp's `any_ip`) has no
        // foreign ones.
        if !iface.any_ip() {
            for cidr in iface.ip_addrs() {
                // The interface holds no more than this many.
                let _ = state.addrs.push(cidr.address());
            }
        }
        for entry in state.ports.iter_mut() {
            entry.1 = 0;
        }
        let mut seen: heapless::Vec<(SocketHandle, u16, Instant, Option<IpEndpoint>), C> =
            heapless::Vec::new();
        for (handle, socket) in sockets.iter() {
            let Some(socket) = tcp::Socket::downcast(socket) else {
                continue;
            };
            let port = socket.listen_endpoint().port;
            match socket.state() {
                tcp::State::Listen => match state.ports.iter_mut().find(|(p, _)| *p == port) {
                    Some(entry) => entry.1 = entry.1.saturating_add(1),
                    None => {
                        if state.ports.push((port, 1)).is_err() {
                            crate::macros::net_warn!("backlog: no room for port {}; raise P", port);
                        }
                    }
                },
                tcp::State::SynReceived => {
                    // The same handshake as before only with the same peer: a
                    // RST can put the socket back to LISTEN and a new SYN take
                    // it between two syncs.
                    let remote = socket.remote_endpoint();
                    let since = state
                        .half_open
                        .iter()
                        .find(|&&(h, p, _, r)| h == handle && p == port && r == remote)
                        .map_or(now, |&(_, _, since, _)| since);
                    let _ = seen.push((handle, port, since, remote));
                }
                _ => {
                    // A handshake just completed: its peer is there.
                    let completed = state.half_open.iter().find(|(h, ..)| *h == handle);
                    if let Some(&(.., Some(remote))) = completed
                        && socket.may_send()
                    {
                        state.remember_alive(remote.addr);
                    }
                }
            }
        }
        state.half_open = seen;
        // A connection that ended is watched no more: a SYN from its port is a
        // new connection (to hold while the pool is busy), not one of its own.
        state
            .tracked
            .retain(|t| has_connection(sockets, t.local_port, (t.remote, t.remote_port)));
        // A held SYN whose connection a socket has is a copy of the SYN that
        // opened it, read in the same poll, before the SYN-ACK made the
        // connection known. Replayed after the connection ended, it would hold
        // the slot for a handshake nobody completes. (Nor can a new connection
        // from the same port be replayed while the old one lives: smoltcp gives
        // a SYN to the first socket that takes it, maybe the old one. The
        // client's retransmission brings it back.)
        state.drop_held(|h| !has_connection(sockets, h.port, h.from));
        // A held SYN for a port with no listener: make room, oldest handshake first.
        let waiting: heapless::Vec<u16, P> = state
            .ports
            .iter()
            .filter(|&&(port, listening)| {
                listening == 0 && state.held.iter().any(|h| h.port == port)
            })
            .map(|&(port, _)| port)
            .collect();
        for port in waiting {
            // The handshake of a peer known to be there (it sent us ARP, or
            // completed a handshake before) only after `EVICT_ALIVE_AFTER`, and
            // only if no other will do. smoltcp silences a socket for 1 s when
            // its peer's address does not resolve, and the silence belongs to the
            // socket set's slot, not to the connection: a real client replayed into
            // a slot a forged SYN had just used gets its SYN-ACK up to 1 s late, and
            // a flood of 10 SYNs/s evicted its handshake long before. But a peer
            // that sent one ARP frame must not hold its slot for the whole
            // handshake timeout while SYNs wait. Unknown peers first, then the
            // oldest. (One loop: as a `filter` and a `min_by_key` this took 384 B
            // more of the poll-loop firmware's flash.)
            // For a SYN from a peer not known either, an unknown handshake
            // has a second (`EVICT_FOR_UNKNOWN_AFTER`) while the hold queue
            // has room; a known peer's SYN, which `replay` gives first, does
            // not wait that long, nor does a full queue.
            let unknown_grace = if state.holds_alive(port) || state.held.is_full() {
                EVICT_AFTER
            } else {
                EVICT_FOR_UNKNOWN_AFTER
            };
            let mut oldest: Option<(bool, Instant, SocketHandle)> = None;
            for &(handle, p, since, remote) in &state.half_open {
                let alive = remote.is_some_and(|r| state.alive.contains(&r.addr));
                let grace = if alive {
                    EVICT_ALIVE_AFTER
                } else {
                    unknown_grace
                };
                let first = oldest.is_none_or(|(a, s, _)| (alive, since) < (a, s));
                if p == port && now >= later(since, grace) && first {
                    oldest = Some((alive, since, handle));
                }
            }
            let oldest = oldest.map(|(.., handle)| handle);
            let Some(handle) = oldest else {
                continue;
            };
            if let Some(socket) = super::pump::socket_mut::<tcp::Socket>(sockets, handle) {
                crate::macros::net_debug!(
                    "backlog: tcp/{}: oldest handshake evicted for a new SYN",
                    port
                );
                socket.abort();
                state.half_open.retain(|(h, ..)| *h != handle);
                state.stats.evictions = state.stats.evictions.saturating_add(1);
            }
        }
    }
}

impl<const H: usize, const P: usize, const C: usize> Default for Backlog<H, P, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const H: usize, const P: usize, const C: usize> fmt::Debug for Backlog<H, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backlog")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A device with a [`Backlog`] in front, for one `Interface::poll`.
pub struct Gated<'a, D, const H: usize, const P: usize, const C: usize> {
    inner: &'a mut D,
    state: &'a RefCell<State<H, P, C>>,
}

impl<const H: usize, const P: usize, const C: usize> State<H, P, C> {
    /// What smoltcp should see of a received frame: `false` to hide it.
    #[inline(never)]
    fn admit(&mut self, frame: &[u8], now: Instant) -> bool {
        let segment = match Seen::of(self.medium, frame) {
            Seen::Segment(segment) => segment,
            Seen::Alive(sender) => {
                self.remember_alive(sender);
                return true;
            }
            Seen::TcpFragment => {
                // smoltcp as this crate builds it drops fragments; one built to
                // reassemble them would take a stepped RST in pieces past the check.
                self.stats.fragments_dropped = self.stats.fragments_dropped.saturating_add(1);
                return false;
            }
            Seen::Other => return true,
        };
        // Not for us: another host's, or a broadcast or multicast address,
        // where smoltcp would take a SYN's listener and then reset it. (Before
        // the first `sync`, no address is known and none is refused.)
        // (smoltcp takes IPv6 loopback whatever its addresses.)
        let loopback = matches!(segment.dst, IpAddress::Ipv6(dst) if dst.is_loopback());
        if !self.addrs.is_empty() && !self.addrs.contains(&segment.dst) && !loopback {
            self.stats.foreign_dropped = self.stats.foreign_dropped.saturating_add(1);
            return false;
        }
        // Only a SYN or a reset asks after the connection; the rest of the
        // traffic (almost every segment) passes without a look.
        if !segment.syn && !segment.rst {
            return true;
        }
        let known = self
            .tracked
            .iter()
            .find(|t| {
                t.local_port == segment.dst_port
                    && t.remote_port == segment.src_port
                    && t.remote == segment.src
                    && !(segment.syn
                        && t.opened_by
                            .is_some_and(|n| n != segment.seq.wrapping_add(1)))
            })
            .copied();
        // A SYN from a peer the stack already answered on this port (our SYN-ACK
        // went out, or the connection is open) is that connection's retransmission
        // or a duplicate, which smoltcp drops: it takes no listener. (Unless its
        // ISN is not the one our SYN-ACK acknowledged: then it is a new
        // connection from the same port, its old one closed by the ACK that came
        // just before it.) Held instead,
        // it would evict the half-open connection it belongs to (a client whose
        // SYN-ACK was lost, retransmitting its SYN) or another client's.
        if segment.syn && !segment.ack && known.is_none() {
            let listening = self.ports.iter_mut().find(|(p, _)| *p == segment.dst_port);
            match listening {
                Some((_, 0)) => {
                    self.hold(&segment, frame, now);
                    return false;
                }
                // This SYN takes a listener: a held one replayed in the same poll
                // must not count on it.
                Some((_, count)) => *count = count.saturating_sub(1),
                None => {}
            }
        }
        if segment.rst && known.is_some() {
            if known.is_some_and(|t| t.expected != segment.seq) {
                self.stats.blind_resets_dropped = self.stats.blind_resets_dropped.saturating_add(1);
                return false;
            }
            // The peer's reset ends the connection, as ours does: a SYN from its
            // port is a new connection from now on (a client that reset and
            // connected again at once, both in one poll), held if no socket
            // listens.
            self.forget(segment.dst_port, segment.src, segment.src_port);
        }
        true
    }

    /// Forgets the connection of our `local_port` with `remote`'s
    /// `remote_port`: it was reset.
    #[inline(never)]
    fn forget(&mut self, local_port: u16, remote: IpAddress, remote_port: u16) {
        self.tracked.retain(|t| {
            !(t.local_port == local_port && t.remote_port == remote_port && t.remote == remote)
        });
    }

    /// Notes a peer that showed it exists; the one noted longest ago makes room.
    fn remember_alive(&mut self, peer: IpAddress) {
        if self.alive.contains(&peer) {
            return;
        }
        if self.alive.is_full() && !self.alive.is_empty() {
            self.alive.remove(0);
        }
        let _ = self.alive.push(peer);
    }

    /// Whether a SYN from a peer known to be there waits for `port`.
    fn holds_alive(&self, port: u16) -> bool {
        self.held
            .iter()
            .any(|h| h.port == port && self.alive.contains(&h.from.0))
    }

    fn hold(&mut self, segment: &Segment, frame: &[u8], now: Instant) {
        let port = segment.dst_port;
        let from = (segment.src, segment.src_port);
        let mut held = HeldSyn {
            port,
            from,
            since: now,
            len: frame.len(),
            frame: [0; HELD_SYN_LEN],
        };
        let copied = held
            .frame
            .get_mut(..frame.len())
            .map(|dst| dst.copy_from_slice(frame));
        if copied.is_none() {
            self.stats.syns_dropped = self.stats.syns_dropped.saturating_add(1);
            return;
        }
        let again = self.held.iter().any(|h| h.port == port && h.from == from);
        if self.held.is_full() && !again && self.alive.contains(&from.0) {
            // A peer known to be there takes the place of the oldest SYN from
            // one that is not: a flood of forged SYNs cannot keep it out.
            let alive = &self.alive;
            if let Some(index) = self.held.iter().position(|h| !alive.contains(&h.from.0)) {
                self.held.remove(index);
                self.stats.syns_dropped = self.stats.syns_dropped.saturating_add(1);
            }
        }
        if self.held.is_full() && !again {
            self.stats.syns_dropped = self.stats.syns_dropped.saturating_add(1);
            return;
        }
        // A retransmission of a SYN already held replaces it.
        if let Some(same) = self
            .held
            .iter_mut()
            .find(|h| h.port == port && h.from == from)
        {
            *same = held;
            return;
        }
        let _ = self.held.push(held);
        self.stats.syns_held = self.stats.syns_held.saturating_add(1);
    }

    /// The next held SYN whose port takes SYNs again, one from a peer known to
    /// be there first, then the oldest; stale ones are dropped.
    fn replay(&mut self, now: Instant) -> Option<HeldSyn> {
        self.drop_held(|h| now >= h.since && now < later(h.since, HOLD));
        let (ports, alive) = (&mut self.ports, &self.alive);
        let open = |h: &HeldSyn| ports.iter().any(|&(p, count)| p == h.port && count > 0);
        let index = self
            .held
            .iter()
            .position(|h| open(h) && alive.contains(&h.from.0))
            .or_else(|| self.held.iter().position(open))?;
        let held = self.held.remove(index);
        // The replayed SYN takes a listener.
        if let Some((_, count)) = ports.iter_mut().find(|(p, _)| *p == held.port) {
            *count = count.saturating_sub(1);
        }
        self.stats.syns_replayed = self.stats.syns_replayed.saturating_add(1);
        Some(held)
    }

    /// Drops the held SYNs `keep` refuses, counted.
    fn drop_held(&mut self, keep: impl FnMut(&HeldSyn) -> bool) {
        let before = self.held.len();
        self.held.retain(keep);
        let dropped = before.saturating_sub(self.held.len());
        self.stats.syns_dropped = self.stats.syns_dropped.saturating_add(dropped as u64);
    }

    /// Puts back a SYN [`replay`](Self::replay) gave that could not go in (the
    /// device had no room to send the answer): it is replayed later, as if
    /// never taken.
    fn unreplay(&mut self, held: HeldSyn) {
        if let Some((_, count)) = self.ports.iter_mut().find(|(p, _)| *p == held.port) {
            *count = count.saturating_add(1);
        }
        self.stats.syns_replayed = self.stats.syns_replayed.saturating_sub(1);
        if self.held.insert(0, held).is_err() {
            self.stats.syns_dropped = self.stats.syns_dropped.saturating_add(1);
        }
    }

    /// Notes the ACK number of a segment we send.
    fn observe(&mut self, frame: &[u8]) {
        let Seen::Segment(segment) = Seen::of(self.medium, frame) else {
            return;
        };
        let key = |t: &Tracked| {
            t.local_port == segment.src_port
                && t.remote_port == segment.dst_port
                && t.remote == segment.dst
        };
        if segment.rst {
            // Our own reset: the connection is gone.
            self.forget(segment.src_port, segment.dst, segment.dst_port);
            return;
        }
        if !segment.ack {
            return;
        }
        let opened_by = segment.syn.then_some(segment.ack_number);
        if let Some(t) = self.tracked.iter_mut().find(|t| key(t)) {
            t.expected = segment.ack_number;
            if opened_by.is_some() {
                t.opened_by = opened_by;
            }
            return;
        }
        // Full: forget the connection watched longest.
        if self.tracked.is_full() && !self.tracked.is_empty() {
            self.tracked.remove(0);
        }
        let _ = self.tracked.push(Tracked {
            local_port: segment.src_port,
            remote: segment.dst,
            remote_port: segment.dst_port,
            expected: segment.ack_number,
            opened_by,
        });
    }
}

/// Whether a socket has the connection of `local_port` with `remote`.
fn has_connection(sockets: &SocketSet<'_>, local_port: u16, remote: (IpAddress, u16)) -> bool {
    sockets.iter().any(|(_, socket)| {
        tcp::Socket::downcast(socket).is_some_and(|socket| {
            !matches!(socket.state(), tcp::State::Closed | tcp::State::Listen)
                && socket
                    .local_endpoint()
                    .is_some_and(|e| e.port == local_port)
                && socket
                    .remote_endpoint()
                    .is_some_and(|e| (e.addr, e.port) == remote)
        })
    })
}

/// The TCP fields the backlog looks at.
struct Segment {
    src: IpAddress,
    dst: IpAddress,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack_number: u32,
    syn: bool,
    ack: bool,
    rst: bool,
}

impl Segment {
    /// The fields of a TCP segment whose header starts `tcp`.
    ///
    /// Always inlined: every frame in and out passes here, and as a call its
    /// two addresses went in and the segment came out through memory. Inlined,
    /// the poll-loop firmware spends about 1.9 instructions a byte less on its
    /// traffic (`examples/firmware-embassy/cost.sh`), and its flash is 16 B
    /// smaller.
    #[inline(always)]
    fn of(src: IpAddress, dst: IpAddress, tcp: &[u8]) -> Option<Segment> {
        let tcp = TcpPacket::new_checked(tcp).ok()?;
        Some(Segment {
            src,
            dst,
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number().0 as u32,
            ack_number: tcp.ack_number().0 as u32,
            syn: tcp.syn(),
            ack: tcp.ack(),
            // A reset smoltcp acts on: with SYN or FIN as well, it refuses the
            // segment, and the connection goes on.
            rst: tcp.rst() && !tcp.syn() && !tcp.fin(),
        })
    }
}

/// What the backlog makes of a frame, from one pass over its headers.
enum Seen {
    /// A whole TCP segment.
    Segment(Segment),
    /// A host that showed it is there (a forged SYN's source is not): the
    /// sender of an ARP packet, or of an IPv6 neighbor solicitation or
    /// advertisement (a duplicate-address probe, from `::`, names none).
    Alive(IpAddress),
    /// A fragment of an IP packet carrying TCP.
    TcpFragment,
    /// Anything else, or headers that cannot be walked to their end (smoltcp
    /// drops those too): passed on, never read as a segment.
    Other,
}

impl Seen {
    fn of(medium: Medium, frame: &[u8]) -> Seen {
        Self::parse(medium, frame).unwrap_or(Seen::Other)
    }

    fn parse(medium: Medium, frame: &[u8]) -> Option<Seen> {
        // The IP version smoltcp reads the packet as: the EtherType's on
        // Ethernet (a packet whose own version disagrees is dropped), the
        // packet's version on an IP medium.
        let (version, ip) = match medium {
            Medium::Ethernet => {
                let eth = EthernetFrame::new_checked(frame).ok()?;
                let payload = frame.get(EthernetFrame::<&[u8]>::header_len()..)?;
                match eth.ethertype() {
                    EthernetProtocol::Arp => return Self::arp(payload),
                    EthernetProtocol::Ipv4 => (4, payload),
                    EthernetProtocol::Ipv6 => (6, payload),
                    _ => return None,
                }
            }
            Medium::Ip => (frame.first()? >> 4, frame),
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        if ip.first()? >> 4 != version {
            return None;
        }
        match version {
            4 => Self::ipv4(ip),
            6 => Self::ipv6(ip),
            _ => None,
        }
    }

    fn arp(payload: &[u8]) -> Option<Seen> {
        let packet = ArpPacket::new_checked(payload).ok()?;
        match ArpRepr::parse(&packet).ok()? {
            ArpRepr::EthernetIpv4 {
                source_protocol_addr,
                ..
            } => Some(Seen::Alive(IpAddress::Ipv4(source_protocol_addr))),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn ipv4(ip: &[u8]) -> Option<Seen> {
        let packet = Ipv4Packet::new_checked(ip).ok()?;
        if packet.next_header() != IpProtocol::Tcp {
            return None;
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Some(Seen::TcpFragment);
        }
        let header = usize::from(packet.header_len());
        let total = usize::from(packet.total_len());
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        Segment::of(src.into(), dst.into(), ip.get(header..total)?).map(Seen::Segment)
    }

    /// Past a leading Hop-by-Hop header, the one extension header smoltcp 0.14
    /// goes past to reach TCP (it refuses the others), so that none carries a
    /// segment by the backlog unseen, and none that smoltcp would refuse is held;
    /// a Fragment header there is a fragment.
    fn ipv6(ip: &[u8]) -> Option<Seen> {
        let packet = Ipv6Packet::new_checked(ip).ok()?;
        let end = 40usize.checked_add(usize::from(packet.payload_len()))?;
        let payload = ip.get(40..end)?;
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        let mut next = packet.next_header();
        let mut at = 0usize;
        match next {
            // Neighbor discovery is sent with no extension header, and a hop
            // limit of 255 that no router could have passed on (RFC 4861 §7.1).
            IpProtocol::Icmpv6 => {
                let kind = *payload.first()?;
                let ndp = (kind == 135 || kind == 136) && packet.hop_limit() == 255;
                return (ndp && !src.is_unspecified()).then_some(Seen::Alive(src.into()));
            }
            IpProtocol::HopByHop => {
                let (&following, &units) = (payload.first()?, payload.get(1)?);
                next = IpProtocol::from(following);
                at = usize::from(units).saturating_add(1).saturating_mul(8);
            }
            _ => {}
        }
        match next {
            IpProtocol::Tcp => {
                Segment::of(src.into(), dst.into(), payload.get(at..)?).map(Seen::Segment)
            }
            IpProtocol::Ipv6Frag => payload
                .get(at)
                .is_some_and(|&inner| IpProtocol::from(inner) == IpProtocol::Tcp)
                .then_some(Seen::TcpFragment),
            _ => None,
        }
    }
}

impl<D: Device, const H: usize, const P: usize, const C: usize> Device for Gated<'_, D, H, P, C> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>, H, P, C>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>, H, P, C>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let held = self
            .state
            .try_borrow_mut()
            .ok()
            .and_then(|mut state| state.replay(timestamp));
        let state = self.state;
        if let Some(held) = held {
            // No room to send the SYN-ACK: the SYN waits for the next poll.
            let Some(tx) = self.inner.transmit(timestamp) else {
                if let Ok(mut state) = state.try_borrow_mut() {
                    state.unreplay(held);
                }
                return None;
            };
            return Some((
                RxToken {
                    source: Source::Held(held),
                    state,
                    now: timestamp,
                },
                TxToken { inner: tx, state },
            ));
        }
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            RxToken {
                source: Source::Device(rx),
                state,
                now: timestamp,
            },
            TxToken { inner: tx, state },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(TxToken {
            inner: tx,
            state: self.state,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

enum Source<R> {
    Device(R),
    Held(HeldSyn),
}

/// A received frame, filtered by the backlog.
pub struct RxToken<'a, R, const H: usize, const P: usize, const C: usize> {
    source: Source<R>,
    state: &'a RefCell<State<H, P, C>>,
    now: Instant,
}

/// A frame to send, watched by the backlog.
pub struct TxToken<'a, T, const H: usize, const P: usize, const C: usize> {
    inner: T,
    state: &'a RefCell<State<H, P, C>>,
}

impl<R: phy::RxToken, const H: usize, const P: usize, const C: usize> phy::RxToken
    for RxToken<'_, R, H, P, C>
{
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&[u8]) -> T,
    {
        match self.source {
            Source::Held(held) => f(held.frame.get(..held.len).unwrap_or_default()),
            Source::Device(rx) => {
                let (state, now) = (self.state, self.now);
                rx.consume(|frame| {
                    let admit = state
                        .try_borrow_mut()
                        .map(|mut state| state.admit(frame, now))
                        .unwrap_or(true);
                    // An empty frame is one smoltcp drops without a word.
                    if admit { f(frame) } else { f(&[]) }
                })
            }
        }
    }
}

impl<T: phy::TxToken, const H: usize, const P: usize, const C: usize> phy::TxToken
    for TxToken<'_, T, H, P, C>
{
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let state = self.state;
        self.inner.consume(len, |buf| {
            let result = f(buf);
            if let Ok(mut state) = state.try_borrow_mut() {
                state.observe(buf);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{ChecksumCapabilities, RxToken as _};
    use smoltcp::wire::{Ipv6Address, Ipv6Repr, TcpControl, TcpRepr, TcpSeqNumber};
    use std::vec::Vec;

    const US: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
    const PEER: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2);
    const PORT: u16 = 7;

    /// Our ACK on the connection of `PORT` with the peer's port 50000: it tells
    /// the peer the one sequence number its RST must carry, 1000.
    fn our_ack() -> Vec<u8> {
        segment(
            (US, PEER),
            (PORT, 50000),
            TcpControl::None,
            (1, Some(1000)),
            false,
        )
    }

    /// An IPv6 packet (medium IP) carrying a TCP segment with no payload, behind
    /// an empty Hop-by-Hop header if `hop_by_hop`.
    fn segment(
        (src, dst): (Ipv6Address, Ipv6Address),
        (src_port, dst_port): (u16, u16),
        control: TcpControl,
        (seq, ack): (u32, Option<u32>),
        hop_by_hop: bool,
    ) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port,
            dst_port,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 64240,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let mut body = vec![0; tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut body[..]),
            &IpAddress::Ipv6(src),
            &IpAddress::Ipv6(dst),
            &caps,
        );
        if hop_by_hop {
            // Next header TCP, 8 bytes long, a PadN option filling it.
            let mut ext = vec![6, 0, 1, 4, 0, 0, 0, 0];
            ext.extend_from_slice(&body);
            body = ext;
        }
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if hop_by_hop {
                IpProtocol::HopByHop
            } else {
                IpProtocol::Tcp
            },
            payload_len: body.len(),
            hop_limit: 64,
        };
        let mut frame = vec![0; ip.buffer_len()];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut frame[..]));
        frame.extend_from_slice(&body);
        frame
    }

    fn state(backlog: &mut Backlog<4, 4, 8>) -> &mut State<4, 4, 8> {
        let state = backlog.state.get_mut();
        state.medium = Medium::Ip;
        state
    }

    #[test]
    fn extension_headers_carry_no_segment_past_the_backlog() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        let now = Instant::ZERO;
        // Our ACK tells the peer the one sequence number its RST must carry.
        let ours = our_ack();
        for hop_by_hop in [false, true] {
            // (The exact reset below ends the connection: it is watched again.)
            state.observe(&ours);
            let stepped = segment(
                (PEER, US),
                (50000, PORT),
                TcpControl::Rst,
                (5000, None),
                hop_by_hop,
            );
            assert!(!state.admit(&stepped, now), "hop-by-hop {hop_by_hop}");
            let exact = segment(
                (PEER, US),
                (50000, PORT),
                TcpControl::Rst,
                (1000, None),
                hop_by_hop,
            );
            assert!(state.admit(&exact, now), "hop-by-hop {hop_by_hop}");
        }
        assert_eq!(state.stats.blind_resets_dropped, 2);
        // A SYN to a port with no listener left is held, behind the header too.
        state.ports.push((PORT, 0)).unwrap();
        let syn = segment((PEER, US), (50001, PORT), TcpControl::Syn, (77, None), true);
        assert!(!state.admit(&syn, now));
        assert_eq!(state.stats.syns_held, 1);
        // Behind a Destination Options header smoltcp refuses the packet: it is
        // passed on, not held to take a listener it would never use.
        let mut refused = segment((PEER, US), (50002, PORT), TcpControl::Syn, (78, None), true);
        refused[6] = 60;
        assert!(state.admit(&refused, now));
        assert_eq!(state.stats.syns_held, 1);
        // Headers that cannot be walked to their end are no segment: passed on
        // (smoltcp drops them too), never read as one.
        let mut cut = segment(
            (PEER, US),
            (50000, PORT),
            TcpControl::Rst,
            (5000, None),
            true,
        );
        cut[41] = 200;
        assert!(matches!(Seen::of(Medium::Ip, &cut), Seen::Other));
    }

    #[test]
    fn a_peer_reset_ends_its_connection_and_a_syn_from_its_port_is_a_new_one() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        let now = Instant::ZERO;
        state.ports.push((PORT, 0)).unwrap();
        let ours = our_ack();
        state.observe(&ours);
        // While the connection lives, a SYN from its port is its own (a
        // duplicate): passed on, not held.
        let syn = segment(
            (PEER, US),
            (50000, PORT),
            TcpControl::Syn,
            (77, None),
            false,
        );
        assert!(state.admit(&syn, now));
        assert_eq!(state.stats.syns_held, 0);
        // The peer resets it and connects again from the same port, both read
        // in one poll: the SYN is a new connection, held while no socket
        // listens, not refused.
        let reset = segment(
            (PEER, US),
            (50000, PORT),
            TcpControl::Rst,
            (1000, None),
            false,
        );
        assert!(state.admit(&reset, now));
        assert!(!state.admit(&syn, now));
        assert_eq!(state.stats.syns_held, 1);
    }

    #[test]
    fn a_reset_smoltcp_refuses_ends_no_connection_for_the_backlog() {
        // A RST with SYN or FIN as well, even with the expected sequence
        // number, is a segment smoltcp refuses: the connection goes on, and a
        // stepped reset after it is still dropped.
        for flag in [0x02u8, 0x01] {
            let mut backlog = Backlog::<4, 4, 8>::new();
            let state = state(&mut backlog);
            let now = Instant::ZERO;
            let ours = our_ack();
            state.observe(&ours);
            let mut odd = segment(
                (PEER, US),
                (50000, PORT),
                TcpControl::Rst,
                (1000, None),
                false,
            );
            odd[40 + 13] |= flag;
            TcpPacket::new_unchecked(&mut odd[40..])
                .fill_checksum(&IpAddress::Ipv6(PEER), &IpAddress::Ipv6(US));
            let parsed = TcpRepr::parse(
                &TcpPacket::new_checked(&odd[40..]).unwrap(),
                &IpAddress::Ipv6(PEER),
                &IpAddress::Ipv6(US),
                &ChecksumCapabilities::default(),
            );
            assert!(parsed.is_err(), "smoltcp takes flags {flag:#x}");
            state.admit(&odd, now);
            let stepped = segment(
                (PEER, US),
                (50000, PORT),
                TcpControl::Rst,
                (5000, None),
                false,
            );
            assert!(!state.admit(&stepped, now), "flags {flag:#x}");
            assert_eq!(state.stats.blind_resets_dropped, 1, "flags {flag:#x}");
        }
    }

    #[test]
    fn a_packet_is_read_as_the_version_its_ethertype_says() {
        let syn = segment(
            (PEER, US),
            (50000, PORT),
            TcpControl::Syn,
            (77, None),
            false,
        );
        let on_ethernet = |ethertype: u16| {
            let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(&syn);
            frame
        };
        assert!(matches!(
            Seen::of(Medium::Ethernet, &on_ethernet(0x86dd)),
            Seen::Segment(_)
        ));
        // IPv6 under IPv4's EtherType: smoltcp drops it, so it holds no
        // listener and drops no reset.
        assert!(matches!(
            Seen::of(Medium::Ethernet, &on_ethernet(0x0800)),
            Seen::Other
        ));
        assert!(matches!(Seen::of(Medium::Ip, &syn), Seen::Segment(_)));
    }

    /// A device that receives the frames of `incoming`, and has room to send
    /// only while `room`.
    struct Link {
        room: bool,
        incoming: Vec<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Link {
        fn new() -> Self {
            Self {
                room: true,
                incoming: Vec::new(),
                sent: Vec::new(),
            }
        }
    }

    /// An interface on `link` with our address, `US`.
    fn interface(link: &mut Link) -> Interface {
        use smoltcp::iface::Config;
        use smoltcp::wire::{HardwareAddress, IpCidr};
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), link, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv6(US), 64)).unwrap();
        });
        iface
    }

    struct Rx(Vec<u8>);
    struct Tx<'a>(&'a mut Vec<Vec<u8>>);

    impl phy::RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0; len];
            let result = f(&mut frame);
            self.0.push(frame);
            result
        }
    }

    impl Device for Link {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
            if self.incoming.is_empty() {
                return None;
            }
            Some((Rx(self.incoming.remove(0)), Tx(&mut self.sent)))
        }

        fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
            self.room.then_some(Tx(&mut self.sent))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = 1500;
            caps
        }
    }

    #[test]
    fn a_held_syn_the_device_has_no_room_to_answer_waits_for_the_next_poll() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        let now = Instant::ZERO;
        state.ports.push((PORT, 0)).unwrap();
        let syn = segment(
            (PEER, US),
            (50001, PORT),
            TcpControl::Syn,
            (77, None),
            false,
        );
        assert!(!state.admit(&syn, now));
        // A socket listens again, but the device cannot send the SYN-ACK now.
        state.ports[0].1 = 1;
        let mut link = Link {
            room: false,
            incoming: Vec::new(),
            sent: Vec::new(),
        };
        assert!(backlog.device(&mut link).receive(now).is_none());
        assert_eq!(backlog.stats().syns_replayed, 0, "not replayed yet");
        // The next poll, with room: the same SYN, whole.
        link.room = true;
        let mut gated = backlog.device(&mut link);
        let (rx, _tx) = gated.receive(now).unwrap();
        let replayed = rx.consume(|frame| frame.to_vec());
        assert_eq!(replayed, syn);
        let stats = backlog.stats();
        assert_eq!((stats.syns_replayed, stats.syns_dropped), (1, 0));
    }

    #[test]
    fn a_retransmission_read_with_the_replay_of_its_held_copy_is_dropped_not_replayed_later() {
        let mut link = Link::new();
        let mut iface = interface(&mut link);
        let mut sockets = SocketSet::new(Vec::new());
        let buffer = || tcp::SocketBuffer::new(vec![0; 1024]);
        let handle = sockets.add(tcp::Socket::new(buffer(), buffer()));
        let mut backlog = Backlog::<4, 4, 8>::new();
        let mut turn = |link: &mut Link, sockets: &mut SocketSet<'_>, ms: i64| {
            let now = Instant::from_millis(ms);
            backlog.sync(&iface, sockets, now);
            iface.poll(now, &mut backlog.device(link), sockets);
            backlog.stats()
        };
        let syn = segment(
            (PEER, US),
            (50001, PORT),
            TcpControl::Syn,
            (77, None),
            false,
        );
        // The port's only socket is busy: the SYN is held.
        sockets.get_mut::<tcp::Socket>(handle).listen(PORT).unwrap();
        turn(&mut link, &mut sockets, 0);
        sockets.get_mut::<tcp::Socket>(handle).abort();
        link.incoming.push(syn.clone());
        assert_eq!(turn(&mut link, &mut sockets, 10).syns_held, 1);
        // The socket listens again, and the client's retransmission arrives in
        // the poll that replays the copy held: the copy takes the listener, and
        // the retransmission is held, as the SYN-ACK has not gone out yet.
        sockets.get_mut::<tcp::Socket>(handle).listen(PORT).unwrap();
        link.incoming.push(syn);
        let stats = turn(&mut link, &mut sockets, 20);
        assert_eq!((stats.syns_held, stats.syns_replayed), (2, 1));
        let socket = sockets.get::<tcp::Socket>(handle);
        assert_eq!(socket.state(), tcp::State::SynReceived);
        // The next look at the sockets finds its connection, and drops it.
        assert_eq!(turn(&mut link, &mut sockets, 30).syns_dropped, 1);
        // The connection ends: nothing is replayed into the freed socket.
        sockets.get_mut::<tcp::Socket>(handle).abort();
        turn(&mut link, &mut sockets, 40);
        sockets.get_mut::<tcp::Socket>(handle).listen(PORT).unwrap();
        let stats = turn(&mut link, &mut sockets, 50);
        assert_eq!((stats.syns_replayed, stats.syns_dropped), (1, 1));
        assert!(sockets.get::<tcp::Socket>(handle).is_listening());
    }

    #[test]
    fn a_syn_for_another_host_is_neither_held_nor_counted_as_a_listener_s() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        state.addrs.push(IpAddress::Ipv6(US)).unwrap();
        let other = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 9);
        let syn = |dst, port| {
            segment(
                (PEER, dst),
                (port, PORT),
                TcpControl::Syn,
                (77, None),
                false,
            )
        };
        // Every slot busy: a SYN for us is held, one for another host is
        // dropped, counted, and evicts nothing.
        state.ports.push((PORT, 0)).unwrap();
        assert!(!state.admit(&syn(other, 50001), Instant::ZERO));
        assert!(!state.admit(&syn(US, 50002), Instant::ZERO));
        assert_eq!(state.stats.syns_held, 1);
        assert_eq!(state.held.len(), 1);
        // One slot listening: neither another host's SYN nor one to all nodes
        // (which smoltcp would take) takes it from ours.
        state.ports[0].1 = 1;
        let all_nodes = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert!(!state.admit(&syn(other, 50003), Instant::ZERO));
        assert!(!state.admit(&syn(all_nodes, 50005), Instant::ZERO));
        assert_eq!(state.ports[0].1, 1);
        assert!(state.admit(&syn(US, 50004), Instant::ZERO));
        assert_eq!(state.ports[0].1, 0);
        assert_eq!(state.stats.foreign_dropped, 3);
    }

    #[test]
    fn tcp_to_the_ipv6_loopback_address_is_admitted_as_smoltcp_takes_it() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        state.addrs.push(IpAddress::Ipv6(US)).unwrap();
        state.ports.push((PORT, 1)).unwrap();
        let lo = Ipv6Address::LOCALHOST;
        let syn = segment((lo, lo), (50000, PORT), TcpControl::Syn, (77, None), false);
        assert!(state.admit(&syn, Instant::ZERO));
        assert_eq!(state.stats.foreign_dropped, 0);
    }

    #[test]
    fn sync_learns_the_interface_s_addresses() {
        let mut link = Link::new();
        let mut iface = interface(&mut link);
        let mut backlog = Backlog::<4, 4, 8>::new();
        let mut sockets = SocketSet::new(Vec::new());
        backlog.sync(&iface, &mut sockets, Instant::ZERO);
        assert_eq!(state(&mut backlog).addrs.as_slice(), [IpAddress::Ipv6(US)]);
        iface.update_ip_addrs(|addrs| addrs.clear());
        backlog.sync(&iface, &mut sockets, Instant::ZERO);
        assert!(state(&mut backlog).addrs.is_empty());
    }

    #[test]
    fn fragments_of_tcp_packets_are_dropped_and_counted() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        let rst = segment(
            (PEER, US),
            (50000, PORT),
            TcpControl::Rst,
            (5000, None),
            false,
        );
        // IPv6: the same segment behind a Fragment header (more fragments), first
        // and behind a Hop-by-Hop header.
        let fragment = |hop_by_hop: bool| {
            let mut frame = rst[..40].to_vec();
            let mut ext = vec![6, 0, 0, 1, 0, 0, 0, 7];
            if hop_by_hop {
                ext.splice(0..0, [44, 0, 1, 4, 0, 0, 0, 0]);
                frame[6] = 0;
            } else {
                frame[6] = 44;
            }
            ext.extend_from_slice(&rst[40..]);
            let len = u16::from_be_bytes([frame[4], frame[5]]) + ext.len() as u16 - 20;
            frame[4..6].copy_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&ext);
            frame
        };
        assert!(!state.admit(&fragment(false), Instant::ZERO));
        assert!(!state.admit(&fragment(true), Instant::ZERO));
        // IPv4: more fragments, then a later piece.
        use smoltcp::wire::{Ipv4Address, Ipv4Repr};
        let ip = Ipv4Repr {
            src_addr: Ipv4Address::new(10, 0, 0, 2),
            dst_addr: Ipv4Address::new(10, 0, 0, 1),
            next_header: IpProtocol::Tcp,
            payload_len: 20,
            hop_limit: 64,
        };
        for (more, offset) in [(true, 0), (false, 24)] {
            let mut frame = vec![0; 40];
            let caps = ChecksumCapabilities::default();
            let mut packet = Ipv4Packet::new_unchecked(&mut frame[..]);
            ip.emit(&mut packet, &caps);
            packet.set_more_frags(more);
            packet.set_frag_offset(offset);
            packet.fill_checksum();
            assert!(!state.admit(&frame, Instant::ZERO), "{more} {offset}");
        }
        assert_eq!(state.stats.fragments_dropped, 4);
        // The whole segment is no fragment.
        assert!(state.admit(&rst, Instant::ZERO));
        assert_eq!(state.stats.fragments_dropped, 4);
    }

    #[test]
    fn forgetting_a_port_counts_the_syns_it_held_as_dropped() {
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        state.ports.push((PORT, 0)).unwrap();
        for port in [50001, 50002] {
            let syn = segment((PEER, US), (port, PORT), TcpControl::Syn, (77, None), false);
            assert!(!state.admit(&syn, Instant::ZERO));
        }
        backlog.forget(PORT);
        let stats = backlog.stats();
        assert_eq!((stats.syns_held, stats.syns_dropped), (2, 2));
    }

    #[test]
    fn a_known_peers_syn_too_long_to_hold_takes_no_held_syn_s_place() {
        // `hold`: a known peer's SYN takes the place of the oldest unknown one
        // when the queue is full, but a SYN too long to hold (a SYN with
        // data, over HELD_SYN_LEN) is dropped all the same: the unknown SYN
        // must not go for nothing.
        const KNOWN: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 3);
        let mut backlog = Backlog::<4, 4, 8>::new();
        let state = state(&mut backlog);
        let now = Instant::ZERO;
        state.ports.push((PORT, 0)).unwrap();
        for i in 0..4u16 {
            let syn = segment(
                (PEER, US),
                (50000 + i, PORT),
                TcpControl::Syn,
                (77, None),
                false,
            );
            assert!(!state.admit(&syn, now));
        }
        assert_eq!(state.held.len(), 4);
        state.remember_alive(IpAddress::Ipv6(KNOWN));
        let mut long = segment(
            (KNOWN, US),
            (40000, PORT),
            TcpControl::Syn,
            (9, None),
            false,
        );
        long.resize(HELD_SYN_LEN + 40, 0);
        let _ = state.admit(&long, now);
        assert_eq!(
            (state.held.len(), state.stats.syns_dropped),
            (4, 1),
            "an unknown peer's held SYN was dropped for a SYN that was not held"
        );
    }
}
