//! [`TftpServer`]: TFTP on udp/69 over smoltcp's poll loop.
//!
//! One UDP socket listens on port 69 for requests. Each request gets a transfer
//! slot of a fixed pool: the slot's own socket is bound to a fresh port (the
//! server's transfer ID, RFC 1350) for that transfer alone, and every later
//! packet of it goes between that port and the client's. A datagram that reaches
//! a slot's port from any other address or port is answered ERROR 5 (unknown
//! transfer ID; an ERROR is never answered) and otherwise ignored; a request that finds every slot taken is
//! answered with an ERROR saying so, never met with silence. A slot whose upload
//! is complete and that only repeats its last ACK for a while (in case the client
//! missed it) gives way to a new request when no slot is free. A request from the
//! address and port of a running transfer is a repeat of it (counted, and
//! ignored) only if it is the same request (by its CRC-32); another one means the
//! client has left that transfer (a get whose final ACK was lost, the client
//! asking for its next file from the same port), which ends there, and the new
//! one takes the slot on a fresh port, out of reach of the old one's late
//! packets.
//!
//! The sessions are [`ServerTransfer`]s over a [`SharedStore`], the same store a
//! transfer service may serve. Every slot is freed by time: a client that stops
//! answering is retransmitted to a bounded number of times, then its transfer
//! ends. A datagram goes to a socket only when its send queue has room for one of
//! the largest, and one the socket still refuses (smoltcp needs a second packet
//! slot where its ring wraps, which no query of the socket shows) is kept in a
//! buffer of the adapter's and goes first at the next poll, its session sending
//! nothing else meanwhile. It is kept until the session's timer fires (the
//! session then sends again what is still due), in the server for one
//! retransmission timeout at most (the one granted to the client), and one
//! datagram at a time: only another slot's datagram refused meanwhile is lost
//! to a full buffer, as one on the wire can be, and sent again by its session's
//! timer. The session's timers run all the same, so a transfer whose datagrams
//! cannot leave (smoltcp keeps a datagram queued while its neighbour is
//! unresolved, and one that never answers ARP holds it there) still ends after
//! its tries. Such a
//! datagram goes when the slot's socket is bound again for its next transfer, and
//! one held on port 69 for as long as a silent client is given is dropped with
//! whatever else is queued there, so it cannot silence the server's refusals.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use super::Service;
use super::pump::socket_mut;
use crate::store::Storage;
use crate::tftp::Listened;
use crate::tftp::packet::ErrorCode;
use crate::tftp::{
    ClientSession, FIRST_TID, PORT, ServerConfig, ServerTransfer, TftpStats, in_tid_range, next_tid,
};
use crate::transfer::SharedStore;

/// Whether `socket` can take a datagram of `max` bytes now: an empty ring that
/// holds one (smoltcp starts it afresh at its beginning), or one with room for
/// two (one may go to padding where the ring wraps).
fn room(socket: &udp::Socket<'_>, max: usize) -> bool {
    let capacity = socket.payload_send_capacity();
    socket.can_send()
        && if socket.send_queue() == 0 {
            capacity >= max
        } else {
            capacity.saturating_sub(socket.send_queue()) >= max.saturating_mul(2)
        }
}

/// An ERROR this adapter sends of its own (a refusal) is written here, not into
/// the adapter's buffer, which may hold a datagram waiting for room: the
/// longest message, 58 bytes, with its 4-byte header and NUL.
const ERROR_BUF: usize = 64;

/// A datagram a session handed out that its socket did not take: `len` bytes
/// for `to`, from slot `slot` (a server's; 0 for a client), since `since`.
#[derive(Clone, Copy, Debug)]
struct Pending {
    len: usize,
    to: IpEndpoint,
    slot: usize,
    since: crate::time::Instant,
}

/// An adapter's datagram buffers: the one a session writes its next datagram
/// into, and the one where the datagram a socket refused is kept until it goes.
struct Kept<const BUF: usize> {
    scratch: [u8; BUF],
    bytes: [u8; BUF],
    pending: Option<Pending>,
}

impl<const BUF: usize> Kept<BUF> {
    const EMPTY: Self = Self {
        scratch: [0; BUF],
        bytes: [0; BUF],
        pending: None,
    };

    /// Whether slot `slot` keeps a datagram.
    fn holds(&self, slot: usize) -> bool {
        self.pending.is_some_and(|held| held.slot == slot)
    }

    /// Forgets slot `slot`'s datagram, if it keeps one.
    fn forget(&mut self, slot: usize) {
        if self.holds(slot) {
            self.pending = None;
        }
    }

    /// Forgets slot `slot`'s datagram if it was kept `limit` or longer.
    fn expire(
        &mut self,
        slot: usize,
        now: crate::time::Instant,
        limit: crate::time::Duration,
    ) -> bool {
        let expired = self
            .pending
            .is_some_and(|held| held.slot == slot && now.saturating_since(held.since) >= limit);
        if expired {
            self.pending = None;
        }
        expired
    }

    /// Sends slot `slot`'s datagram, if it keeps one; whether it keeps none any
    /// more.
    fn flush(&mut self, slot: usize, socket: &mut udp::Socket<'_>) -> bool {
        if let Some(held) = self.pending
            && held.slot == slot
            && send(socket, &self.bytes, held.len, held.to)
        {
            self.pending = None;
        }
        !self.holds(slot)
    }

    /// Keeps the `len` bytes in the scratch buffer, slot `slot`'s datagram for
    /// `to`, unless a datagram is kept already: then it is lost, as one on the
    /// wire can be.
    fn keep(&mut self, slot: usize, len: usize, to: IpEndpoint, now: crate::time::Instant) {
        match (self.bytes.get_mut(..len), self.scratch.get(..len)) {
            (Some(into), Some(datagram)) if self.pending.is_none() => {
                into.copy_from_slice(datagram);
                self.pending = Some(Pending {
                    len,
                    to,
                    slot,
                    since: now,
                });
            }
            _ => crate::macros::net_warn!("tftp: to {}: not sent: buffer full", to),
        }
    }
}

/// What the poll loop asks of a TFTP session, a server's transfer or a client's.
trait Datagrams {
    fn poll_timeout(&self) -> Option<crate::time::Instant>;
    fn handle_timeout(&mut self, now: crate::time::Instant);
    fn transmit(&mut self, buf: &mut [u8], now: crate::time::Instant) -> usize;
}

impl<S: Storage> Datagrams for ServerTransfer<'_, S> {
    fn poll_timeout(&self) -> Option<crate::time::Instant> {
        ServerTransfer::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: crate::time::Instant) {
        ServerTransfer::handle_timeout(self, now);
    }
    fn transmit(&mut self, buf: &mut [u8], now: crate::time::Instant) -> usize {
        ServerTransfer::transmit(self, buf, now)
    }
}

impl<C: ClientSession> Datagrams for C {
    fn poll_timeout(&self) -> Option<crate::time::Instant> {
        ClientSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: crate::time::Instant) {
        ClientSession::handle_timeout(self, now);
    }
    fn transmit(&mut self, buf: &mut [u8], now: crate::time::Instant) -> usize {
        ClientSession::transmit(self, buf, now)
    }
}

/// Sends an ERROR to `to` if the socket has room; nothing else comes of it (a
/// refusal needs no answer, and is never retransmitted).
fn send_error(socket: &mut udp::Socket<'_>, to: IpEndpoint, code: ErrorCode, message: &str) {
    let mut buf = [0u8; ERROR_BUF];
    let n = crate::tftp::emit_error(&mut buf, code, message);
    if n > 0 && room(socket, n) {
        let _ = socket.send_slice(buf.get(..n).unwrap_or_default(), to);
    }
}

/// Answers a datagram from `from`, not the transfer's peer, with ERROR 5,
/// unless it was an ERROR itself (`was_error`): an ERROR is never answered
/// (RFC 1350).
fn refuse_tid(socket: &mut udp::Socket<'_>, was_error: bool, from: IpEndpoint) {
    if !was_error {
        send_error(socket, from, ErrorCode::UnknownTid, "unknown transfer ID");
    }
}

/// Sends `buf`'s first `len` bytes to `to`; `false` if the socket's ring had
/// no room after all (the datagram is still to be sent). Any other failure
/// (unaddressable) drops it: the transfer's own timer ends the transfer.
fn send(socket: &mut udp::Socket<'_>, buf: &[u8], len: usize, to: IpEndpoint) -> bool {
    match socket.send_slice(buf.get(..len).unwrap_or_default(), to) {
        Ok(()) => true,
        Err(udp::SendError::BufferFull) => false,
        Err(e) => {
            crate::macros::net_warn!("tftp: to {}: not sent: {}", to, e);
            true
        }
    }
}

/// Fires the session's timer if it is due, then, unless slot `slot` holds a
/// datagram its socket refused, sends what the session has to `to` (through
/// `kept`'s scratch buffer) while the socket has room for a datagram of `BUF`
/// bytes. Without
/// room nothing is taken from the session; its timer still counts its tries.
///
/// A datagram the socket refuses all the same is kept (`kept`) and goes first
/// next time, until the session's timer fires: the session then sends again
/// what is still due (or gives up). One datagram is kept at a time; another
/// slot's refused meanwhile is lost, as a datagram on the wire is, and its
/// session's timer sends it again.
fn fire_and_send<D: Datagrams, const BUF: usize>(
    session: &mut D,
    socket: &mut udp::Socket<'_>,
    kept: &mut Kept<BUF>,
    slot: usize,
    now: Instant,
    to: IpEndpoint,
) {
    let now = crate::time::Instant::from(now);
    if session.poll_timeout().is_some_and(|at| now >= at) {
        session.handle_timeout(now);
        kept.forget(slot);
    }
    if !kept.flush(slot, socket) {
        return;
    }
    while room(socket, BUF) {
        let n = session.transmit(&mut kept.scratch, now);
        if n == 0 {
            break;
        }
        if !send(socket, &kept.scratch, n, to) {
            kept.keep(slot, n, to, now);
            break;
        }
    }
}

/// One transfer slot: its socket, its port, its client.
struct Slot<'s, S> {
    handle: SocketHandle,
    port: u16,
    peer: Option<IpEndpoint>,
    /// The CRC-32 of the request that began the transfer: a repeat of it is a
    /// duplicate, another request from the same port a new transfer.
    request: u32,
    /// The set of this poll lacks the socket: no request is given to the
    /// slot, and its transfer is ended.
    missing: bool,
    transfer: ServerTransfer<'s, S>,
}

/// TFTP on port 69, with `N` transfers at once, each with datagrams of up to
/// `BUF` bytes (`blksize` up to `BUF - 4`).
///
/// The caller adds `N + 1` UDP sockets to its set (one listening, one per slot),
/// each with send and receive buffers of at least `BUF` payload bytes, and polls
/// the server after every `Interface::poll`. A transfer with a window of `W`
/// blocks (RFC 7440) sends and takes a window in one poll with `W × BUF`; with
/// less, it waits for room to send, and a datagram that finds the receive buffer
/// full is dropped by smoltcp and sent again by the peer. A handle that is not
/// in the set polled (of another set) is never a panic: that socket's work is
/// skipped and counted ([`missing_sockets`](Self::missing_sockets)); a slot so
/// found ends its transfer and takes no request until a poll finds its socket.
///
/// Port 69 is bound on the first poll, as a [`UdpService`](crate::net::UdpService)
/// binds its port: UDP has no handshake a late bind could break, so a request
/// before it finds the port closed, and the client's retry finds it open.
#[must_use = "a server does nothing unless polled"]
pub struct TftpServer<'s, S, const N: usize, const BUF: usize> {
    listen: SocketHandle,
    /// The largest block granted: the buffer's and the configuration's.
    max_block: u16,
    /// The link's MTU, if the caller said (no block is granted that would need
    /// IP fragmentation).
    mtu: Option<u16>,
    slots: [Slot<'s, S>; N],
    /// The datagram being sent, and a slot's datagram its socket refused.
    kept: Kept<BUF>,
    next_port: u16,
    /// Since when port 69's send queue has not been empty.
    queued_since: Option<crate::time::Instant>,
    /// What happens at port 69 and at the slots' ports, outside any transfer.
    stats: TftpStats,
    /// Sockets found missing from the set polled, one a poll each.
    missing_sockets: u64,
}

impl<'s, S: Storage, const N: usize, const BUF: usize> TftpServer<'s, S, N, BUF> {
    /// A server with the listening socket `listen` and one socket per slot in
    /// `slots`, serving `shared`; the block size granted is at most `BUF - 4`
    /// and `config.max_block_size`.
    pub fn new(
        listen: SocketHandle,
        slots: [SocketHandle; N],
        shared: &'s SharedStore<S>,
        config: ServerConfig,
    ) -> Self {
        let config = ServerConfig {
            max_block_size: config.max_block_size.min(ServerConfig::block_size_for(BUF)),
            ..config
        };
        Self {
            listen,
            max_block: config.max_block_size,
            mtu: None,
            slots: slots.map(|handle| Slot {
                handle,
                port: 0,
                peer: None,
                request: 0,
                missing: false,
                transfer: ServerTransfer::new(shared, config),
            }),
            kept: Kept::EMPTY,
            next_port: FIRST_TID,
            queued_since: None,
            stats: TftpStats::default(),
            missing_sockets: 0,
        }
    }

    /// Grants no block that makes a datagram longer than `mtu` with its IP and
    /// UDP headers (20 + 8 bytes over IPv4, 40 + 8 over IPv6): smoltcp sends
    /// no fragments, so a larger block could never leave.
    pub const fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// A poll found a socket of the server's missing from the set: counted
    /// (the caller's mistake, which nothing here can mend).
    #[cold]
    fn count_missing_socket(&mut self) {
        self.missing_sockets = self.missing_sockets.saturating_add(1);
    }

    /// The largest block a transfer with `peer` is granted.
    fn max_block_for(&self, peer: &IpEndpoint) -> u16 {
        let headers: u16 = match peer.addr {
            smoltcp::wire::IpAddress::Ipv4(_) => 20 + 8 + 4,
            smoltcp::wire::IpAddress::Ipv6(_) => 40 + 8 + 4,
        };
        self.mtu.map_or(self.max_block, |mtu| {
            self.max_block.min(mtu.saturating_sub(headers))
        })
    }

    /// Every counter: the listener's and every slot's transfers', summed.
    pub fn stats(&self) -> TftpStats {
        let mut sum = self.stats;
        for slot in &self.slots {
            sum.accumulate(slot.transfer.stats());
        }
        sum
    }

    /// Sockets found missing from the set polled (handles of another set),
    /// one a poll each: what they were to do did not happen. Only a caller's
    /// mistake makes these, so they are kept apart from the transfers'
    /// counters.
    pub const fn missing_sockets(&self) -> u64 {
        self.missing_sockets
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.transfer.is_active())
            .count()
    }

    /// A port for a new transfer, used by no other slot.
    fn fresh_port(&mut self, now: Instant) -> u16 {
        let mut port = next_tid(self.next_port, now.total_micros().unsigned_abs());
        for _ in 0..=N {
            if !self
                .slots
                .iter()
                .any(|s| s.peer.is_some() && s.port == port)
            {
                break;
            }
            port = in_tid_range(port.wrapping_add(1));
        }
        self.next_port = port;
        port
    }

    fn serve_requests(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(socket) = socket_mut::<udp::Socket>(sockets, self.listen) else {
            self.count_missing_socket();
            return;
        };
        if !socket.is_open()
            && let Err(e) = socket.bind(PORT)
        {
            crate::macros::net_warn!("udp/{}: cannot bind: {}", PORT, e);
            return;
        }
        // Only ERRORs go out from port 69, and the interface has just sent what
        // it could: what is still queued waits for a neighbour.
        let held = if socket.send_queue() == 0 {
            self.queued_since = None;
            false
        } else {
            // Held up for as long as a transfer gives a silent client.
            let config = self
                .slots
                .first()
                .map_or(ServerConfig::DEFAULT, |slot| *slot.transfer.config());
            let limit = config
                .timeout
                .saturating_mul(u32::from(config.max_tries).saturating_add(1));
            let now = crate::time::Instant::from(now);
            let since = *self.queued_since.get_or_insert(now);
            now.saturating_since(since) >= limit
        };
        // Bounded: at most one pass over what is queued now.
        // Bounded: at most one pass over what is queued now. Each request is
        // read where it lies (not into the buffer, which may hold a slot's
        // datagram), and a refusal sent once it has been read.
        for _ in 0..64 {
            let refusal = match socket.recv() {
                Ok((request, meta)) => self.take_request(request, meta.endpoint, now),
                Err(_) => break,
            };
            if let Some((to, code, message)) = refusal {
                send_error(socket, to, code, message);
            }
        }
        if held && socket.recv_queue() == 0 {
            // A neighbour that never answered holds the queue: the ERRORs in it
            // go (each was counted when it was refused), so later ones can.
            crate::macros::net_debug!("udp/{}: send queue held up, emptied", PORT);
            socket.close();
            self.queued_since = None;
            if let Err(e) = socket.bind(PORT) {
                crate::macros::net_warn!("udp/{}: cannot bind: {}", PORT, e);
            }
        }
    }

    /// A datagram to port 69 from `from`: a transfer begun in a slot, a repeat
    /// of a running one's request (ignored), or the ERROR to answer it with.
    fn take_request(
        &mut self,
        request: &[u8],
        from: IpEndpoint,
        now: Instant,
    ) -> Option<(IpEndpoint, ErrorCode, &'static str)> {
        if let Listened::Stray { answer } = Listened::of(request) {
            self.stats.malformed = self.stats.malformed.saturating_add(1);
            let (code, message) = Listened::STRAY;
            return answer.then_some((from, code, message));
        }
        let crc = crate::wire::crc32::crc32(request);
        // A slot whose socket this poll lacks is ending its transfer: no
        // request, repeated or new, is taken for it.
        let running = self.slots.iter().position(|s| {
            s.peer == Some(from)
                && !s.missing
                && s.transfer.is_active()
                && !s.transfer.is_dallying()
        });
        if running
            .and_then(|i| self.slots.get(i))
            .is_some_and(|s| s.request == crc)
        {
            // The client repeated its request: its transfer is running. (A
            // client whose upload is done may ask again from the same port: a
            // bootloader's next file.)
            self.stats.duplicates = self.stats.duplicates.saturating_add(1);
            return None;
        }
        // Another request from the port of a running transfer: the client
        // has left that one, which gives its slot (and a new port, so that
        // its late datagrams never reach the new transfer). Else a free
        // slot, else one that only repeats a finished upload's last ACK.
        let free = running
            .or_else(|| {
                self.slots
                    .iter()
                    .position(|s| !s.transfer.is_active() && !s.missing)
            })
            .or_else(|| {
                self.slots
                    .iter()
                    .position(|s| s.transfer.is_dallying() && !s.missing)
            });
        let Some(index) = free else {
            self.stats.pool_full = self.stats.pool_full.saturating_add(1);
            crate::macros::net_debug!("tftp: {} refused: every slot busy", from);
            return Some((
                from,
                ErrorCode::NotDefined,
                "server busy: every transfer slot is taken, try again later",
            ));
        };
        // What the slot kept for its last transfer goes with it.
        self.kept.forget(index);
        let port = self.fresh_port(now);
        let max_block = self.max_block_for(&from);
        if let Some(slot) = self.slots.get_mut(index) {
            slot.port = port;
            slot.peer = Some(from);
            slot.request = crc;
            crate::macros::net_debug!("tftp: request from {}, served from port {}", from, port);
            slot.transfer.set_max_block_size(max_block);
            slot.transfer.start(request, now.into());
        }
        None
    }

    fn serve_slot(&mut self, index: usize, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let Some(socket) = socket_mut::<udp::Socket>(sockets, slot.handle) else {
            // Its transfer can go no further: ended (counted as failed), so
            // that the slot is free and its deadline gone.
            if slot.peer.take().is_some() {
                slot.transfer.end(now.into());
            }
            // Nor does it keep the server's one held datagram.
            self.kept.forget(index);
            self.count_missing_socket();
            return;
        };
        let Some(peer) = slot.peer else {
            return;
        };
        if socket.endpoint().port != slot.port {
            socket.close();
            if let Err(e) = socket.bind(slot.port) {
                crate::macros::net_warn!("tftp: cannot bind port {}: {}", slot.port, e);
                slot.transfer.end(now.into());
            }
        }
        for _ in 0..64 {
            // Read where it lies, whatever its length: a DATA longer than the
            // buffer is the session's to refuse (ERROR 4), not to lose.
            let (from, was_error) = match socket.recv() {
                Ok((datagram, meta)) if meta.endpoint == peer => {
                    slot.transfer.receive(datagram, now.into());
                    continue;
                }
                Ok((datagram, meta)) => (meta.endpoint, crate::tftp::is_error(datagram)),
                Err(_) => break,
            };
            self.stats.wrong_tid = self.stats.wrong_tid.saturating_add(1);
            crate::macros::net_debug!(
                "tftp: port {}: datagram from {}, not {}",
                slot.port,
                from,
                peer
            );
            refuse_tid(socket, was_error, from);
        }
        // A datagram held for a retransmission timeout has had the time its
        // session would give it: it goes (a session that wants it sent again
        // sends it again), so that no slot keeps the one place to hold one
        // longer, whatever its state (a dallying upload's timer is its dally,
        // which repeats of the last DATA put off).
        let timeout = slot.transfer.timeout();
        if self.kept.expire(index, now.into(), timeout) {
            crate::macros::net_debug!("tftp: {}: a datagram held too long dropped", peer);
        }
        fire_and_send(&mut slot.transfer, socket, &mut self.kept, index, now, peer);
        let holds = self.kept.holds(index);
        if !slot.transfer.is_active() {
            // Freed: the port closes, and a late packet to it gets ICMP's answer.
            if let Some(outcome) = slot.transfer.outcome() {
                match outcome {
                    Ok(bytes) => crate::macros::net_info!("tftp: {}: done, {} B", peer, bytes),
                    Err(e) => crate::macros::net_info!("tftp: {}: failed: {}", peer, e),
                }
            }
            // Its last datagram may still wait for the peer's neighbour entry;
            // the port stays until it leaves, or until the slot's next transfer
            // binds the socket again (which empties its queues).
            // What it holds (a last ERROR, say) goes first.
            if socket.send_queue() == 0 && !holds {
                socket.close();
                slot.peer = None;
            }
        }
    }
}

impl<S: Storage, const N: usize, const BUF: usize> Service for TftpServer<'_, S, N, BUF> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        // A request goes only to a slot whose socket this set has.
        for slot in &mut self.slots {
            slot.missing = socket_mut::<udp::Socket>(sockets, slot.handle).is_none();
        }
        self.serve_requests(sockets, now);
        // The slot whose datagram is held goes first, so the others can send.
        let first = self.kept.pending.map_or(0, |held| held.slot);
        for index in (first..N).chain(0..first) {
            self.serve_slot(index, sockets, now);
        }
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| slot.transfer.poll_timeout())
            .min()
            .map(Into::into)
    }
}

/// A TFTP client transfer ([`ClientGet`](crate::tftp::ClientGet) or
/// [`ClientPut`](crate::tftp::ClientPut)) on one smoltcp UDP socket, as a
/// [`Service`]: the request goes to `server` (port 69 as a rule), everything
/// after it to the port that answered; a datagram from any other port is
/// answered ERROR 5 (an ERROR is never answered) and ignored. Datagrams are up
/// to `BUF` bytes (`blksize` up
/// to `BUF - 4`).
///
/// [`outcome`](Self::outcome) is there as soon as the transfer is over; a get
/// then dallies (it acknowledges a repeated last DATA again for a while), so
/// keep polling until [`is_done`](Self::is_done) to let the server end clean.
/// The socket closes then, once what it queued has left.
///
/// Its socket's send buffer must hold a datagram of `BUF` bytes (one is
/// enough, and a packet slot), and its receive buffer one of the server's
/// DATA: with less send room, the first poll ends the transfer with
/// [`BufferTooSmall`](crate::tftp::TftpError::BufferTooSmall), and with a
/// `local_port` of 0, which cannot be bound, with
/// [`Unbound`](crate::tftp::TftpError::Unbound). A handle that is not in the
/// set polled (of another set) ends it with
/// [`SocketMissing`](crate::tftp::TftpError::SocketMissing), never a panic.
///
/// The first poll binds the socket afresh, which empties its queues of what an
/// earlier transfer left there: a late datagram of the last transfer on this
/// port is counted in [`stats`](Self::stats) as from a wrong port and dropped,
/// never taken for this one's.
#[must_use = "a client does nothing unless polled"]
pub struct TftpClient<C, const BUF: usize> {
    handle: SocketHandle,
    local_port: u16,
    server: IpEndpoint,
    bound: bool,
    peer: Option<IpEndpoint>,
    session: C,
    outcome: Option<Result<u64, crate::tftp::TftpError>>,
    /// A poll found the socket missing from its set: the transfer is over
    /// ([`TftpError::SocketMissing`](crate::tftp::TftpError::SocketMissing)),
    /// and the handle is never used again (another socket may be given it).
    lost_socket: bool,
    /// The datagram being sent, and the one the socket refused.
    kept: Kept<BUF>,
    stats: TftpStats,
}

impl<C: ClientSession, const BUF: usize> TftpClient<C, BUF> {
    /// `session` on the UDP socket `handle`, bound to `local_port` on the first
    /// poll, talking to `server`.
    pub const fn new(
        handle: SocketHandle,
        local_port: u16,
        server: IpEndpoint,
        session: C,
    ) -> Self {
        Self {
            handle,
            local_port,
            server,
            bound: false,
            peer: None,
            session,
            outcome: None,
            lost_socket: false,
            kept: Kept::EMPTY,
            stats: TftpStats::ZERO,
        }
    }

    /// The outcome once the transfer is over: the file's size, or why not.
    pub const fn outcome(&self) -> Option<Result<u64, crate::tftp::TftpError>> {
        self.outcome
    }

    /// Whether the session has nothing more to do: its outcome is in and a
    /// get's dally is over (or it never began, or ended, because its socket
    /// could not be used).
    pub fn is_done(&self) -> bool {
        self.outcome.is_some() && (!self.bound || self.lost_socket || self.session.is_done())
    }

    /// The server's transfer port, once it answered.
    pub const fn peer(&self) -> Option<IpEndpoint> {
        self.peer
    }

    /// The session (its sink, its progress).
    pub const fn session(&self) -> &C {
        &self.session
    }

    /// What the adapter saw outside the session: datagrams from a wrong port.
    pub const fn stats(&self) -> &TftpStats {
        &self.stats
    }
}

impl<C: ClientSession, const BUF: usize> Service for TftpClient<C, BUF> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        if self.lost_socket {
            return;
        }
        let Some(socket) = socket_mut::<udp::Socket>(sockets, self.handle) else {
            // Not in this set: the transfer cannot go on, and ends with an
            // error, never a wait for a socket that will not come.
            self.lost_socket = true;
            if self.outcome.is_none() {
                self.outcome = Some(Err(crate::tftp::TftpError::SocketMissing));
            }
            return;
        };
        if self.is_done() {
            // A held datagram (a get's last ACK, say) goes before the socket closes.
            if self.kept.flush(0, socket) && socket.is_open() && socket.send_queue() == 0 {
                socket.close();
            }
            return;
        }
        if !self.bound
            && (socket.packet_send_capacity() == 0 || socket.payload_send_capacity() < BUF)
        {
            // It could never send a datagram of the transfer, not even the
            // request, and so never time out either.
            self.outcome = Some(Err(crate::tftp::TftpError::BufferTooSmall));
            return;
        }
        if !self.bound || !socket.is_open() {
            // Afresh: nothing an earlier user of the socket queued is taken as
            // this transfer's (what waits is counted and dropped), nor holds up
            // its sends.
            for _ in 0..64 {
                match socket.recv_slice(&mut self.kept.scratch) {
                    Ok(_) | Err(udp::RecvError::Truncated) => {
                        self.stats.wrong_tid = self.stats.wrong_tid.saturating_add(1);
                    }
                    Err(udp::RecvError::Exhausted) => break,
                }
            }
            socket.close();
            // What the socket was to send went with it; a datagram held here
            // is the session's to send again when its timer says so.
            self.kept.forget(0);
            if let Err(e) = socket.bind(self.local_port) {
                crate::macros::net_warn!(
                    "tftp client: cannot bind port {}: {}",
                    self.local_port,
                    e
                );
                // Port 0: the transfer cannot begin, and ends here.
                if !self.bound {
                    self.outcome = Some(Err(crate::tftp::TftpError::Unbound));
                }
                return;
            }
            self.bound = true;
        }
        for _ in 0..64 {
            // Read where it lies, whatever its length: a DATA longer than the
            // buffer is the session's to refuse (ERROR 4), not to lose.
            let (from, was_error) = match socket.recv() {
                Ok((datagram, meta)) => {
                    let from = meta.endpoint;
                    let ours = match self.peer {
                        None if from.addr == self.server.addr => {
                            self.peer = Some(from);
                            true
                        }
                        Some(peer) => peer == from,
                        None => false,
                    };
                    if ours {
                        self.session.receive(datagram, now.into());
                        continue;
                    }
                    (from, crate::tftp::is_error(datagram))
                }
                Err(_) => break,
            };
            self.stats.wrong_tid = self.stats.wrong_tid.saturating_add(1);
            refuse_tid(socket, was_error, from);
        }
        let to = self.peer.unwrap_or(self.server);
        fire_and_send(&mut self.session, socket, &mut self.kept, 0, now, to);
        if let Some(outcome) = self.session.outcome() {
            self.outcome = Some(outcome);
        }
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        if self.lost_socket {
            return None;
        }
        self.session.poll_timeout().map(Into::into)
    }
}
