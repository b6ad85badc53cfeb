//! The pool: see [`TcpServer`].

use core::fmt;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, tcp};
use smoltcp::wire::IpEndpoint;

use super::Service;
use super::pump::{HandleError, configure, discard, peer_finished, pump};
use crate::session::{Session, Status};
use crate::time::{Duration, Instant, sooner};

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum End {
    /// Both sides closed cleanly.
    Closed,
    /// The peer reset the connection (Python's `ConnectionResetError`), or it
    /// timed out in the stack.
    Reset,
    /// The peer was silent for longer than the idle timeout; the server reset it.
    IdleTimeout,
    /// The session asked for a reset ([`Status::Abort`]).
    Aborted,
    /// The peer did not finish closing within the close timeout; the server reset
    /// it. (A close waiting only for the ACK of our FIN, the peer's FIN in and
    /// every byte of ours acknowledged, ends [`Closed`](Self::Closed) then.)
    CloseTimeout,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Closed => "closed",
            End::Reset => "reset by peer",
            End::IdleTimeout => "idle timeout",
            End::Aborted => "aborted by the session",
            End::CloseTimeout => "close timed out",
        })
    }
}

/// Server-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that ended cleanly.
    pub closed: u64,
    /// Connections reset by the peer (or by the stack's own timeouts).
    pub resets: u64,
    /// Silent peers reset after the idle timeout.
    pub idle_timeouts: u64,
    /// Handshakes that did not complete in time (a peer gone after its SYN, a
    /// forged SYN).
    pub handshake_timeouts: u64,
    /// Peers that did not finish closing in time (not a close waiting only for
    /// the ACK of our FIN: that one is [`closed`](Self::closed)).
    pub close_timeouts: u64,
    /// Connections the session aborted (bad input, its own deadlines).
    pub aborted: u64,
    /// Bytes the peer sent after the session was done (or after
    /// [`TcpServer::close_all`]), read and dropped so that its FIN could get
    /// through.
    pub discarded: u64,
    /// Times a slot went back to listening: after each connection, after a
    /// handshake timeout ([`handshake_timeouts`](Self::handshake_timeouts)),
    /// and when a poll finds a listening slot's socket closed. That is a
    /// handshake the listen [`Backlog`](super::Backlog) evicted (which it
    /// counts in [`evictions`](super::BacklogStats::evictions)), or a
    /// connection established and reset between two polls, which smoltcp's
    /// socket shows alike and no other counter has: those are the relistens
    /// that are neither connections ended, handshake timeouts nor evictions.
    pub relistens: u64,
    /// Connections established but not yet accepted when
    /// [`TcpServer::close_all`] reset them.
    pub unaccepted: u64,
    /// Polls that found a slot's socket missing from the set given (a foreign or
    /// removed handle): the slot is skipped, never a panic.
    pub missing_sockets: u64,
}

/// One status line: the connections and how they ended. `discarded` and
/// `relistens` are left to the fields, and `missing_sockets`, which only a
/// program's mistake makes more than zero, is shown once it is.
impl fmt::Display for ServerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} closed, {} reset, {} aborted, timeouts: {} idle, {} handshake, \
             {} close; {} not accepted yet at close_all",
            self.accepted,
            self.closed,
            self.resets,
            self.aborted,
            self.idle_timeouts,
            self.handshake_timeouts,
            self.close_timeouts,
            self.unaccepted
        )?;
        if self.missing_sockets > 0 {
            write!(f, "; {} polls with a socket missing", self.missing_sockets)?;
        }
        Ok(())
    }
}

/// Settings of a [`TcpServer`]: the deadlines that free a slot whatever its peer does.
///
/// The deadlines are taken as given: a zero one passes at the first poll after
/// it starts (a zero handshake timeout refuses every client that takes longer
/// than a poll to complete its handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// A handshake that does not complete in this time frees its slot.
    ///
    /// smoltcp resends an unanswered SYN-ACK after 1, 3, 7, 15 and 31 s (its
    /// retransmission timeout starts at 1 s and doubles), so the deadline must
    /// come after the retransmissions it means to allow, with time for their
    /// answer: the default of 20 s (lwIP's `TCP_SYN_RCVD_TIMEOUT`) lets four of
    /// them go out, the last 5 s before it. Linux allows five
    /// (`tcp_synack_retries`) and gives up after 63 s. While a SYN waits for a
    /// slot, a [`Backlog`](super::Backlog) in front of the pool frees one
    /// sooner, by resetting a handshake: one whose peer never showed itself,
    /// at least 100 ms old (1 s while the hold queue has room and the waiting
    /// SYN's peer never showed itself either), else the oldest of those at least
    /// [`EVICT_ALIVE_AFTER`](super::EVICT_ALIVE_AFTER) (4 s) old whose peer
    /// did (it sent ARP or a neighbor solicitation, or completed a handshake
    /// before). With no SYN waiting, only this deadline frees a slot.
    pub handshake_timeout: Duration,
    /// A connection on which no byte moves for this long (none received, none
    /// sent, and not a KiB of the answer, or its rest, acknowledged by the
    /// peer) is reset, freeing its slot. `None` keeps silent peers forever (not
    /// advised: one can hold a slot).
    pub idle_timeout: Option<Duration>,
    /// After the server closes, the peer has this long to take what is queued
    /// and close too (its input is read and dropped meanwhile); each KiB it
    /// acknowledges (or the rest, when less) gives it this long again, so a
    /// slow reader gets its whole answer and a stalled one, or one taking a
    /// byte at a time, is reset. The default of 20 s (lwIP's
    /// `TCP_FIN_WAIT_TIMEOUT`) covers four retransmissions of a lost segment,
    /// ours or the peer's FIN (after 1, 3, 7 and 15 s).
    pub close_timeout: Duration,
    /// Nagle's algorithm on accepted sockets (smoltcp's default is on), unless the
    /// session asks for no delay ([`Session::no_delay`]).
    pub nagle: bool,
}

impl ServerConfig {
    /// Handshake 20 s, idle 60 s, close 20 s, Nagle on.
    pub const DEFAULT: Self = Self {
        handshake_timeout: Duration::from_secs(20),
        idle_timeout: Some(Duration::from_secs(60)),
        close_timeout: Duration::from_secs(20),
        nagle: true,
    };
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a [`TcpServer`] could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerError {
    /// A handle is no TCP socket of the set.
    Handle(HandleError),
    /// The same handle was given for two slots.
    DuplicateHandle,
    /// A socket refused to listen (port 0, or a socket already open).
    Listen(tcp::ListenError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Handle(e) => e.fmt(f),
            ServerError::DuplicateHandle => f.write_str("the same socket was given for two slots"),
            ServerError::Listen(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl core::error::Error for ServerError {}

impl From<HandleError> for ServerError {
    fn from(e: HandleError) -> Self {
        ServerError::Handle(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Not listening: the server was shut down.
    Idle,
    /// A RST is on its way out; listening now would cancel it.
    Aborting,
    /// Listening; `handshake_since` is when a SYN arrived and the handshake began.
    Listening {
        handshake_since: Option<(Instant, IpEndpoint)>,
    },
    Active {
        peer: IpEndpoint,
        /// When the connection last made progress: bytes from the peer, a new
        /// answer into an empty send buffer, or a KiB of the answer (or all
        /// that was queued) acknowledged.
        last_progress: Instant,
        told_finished: bool,
        /// The send buffer's fill after the last poll: less now is the peer
        /// acknowledging bytes, reading its answer.
        queued: u32,
        /// Bytes the peer acknowledged since the last progress.
        acked: u32,
    },
    /// We close: after [`TcpServer::close_all`] the session first hands out
    /// what it holds; then our FIN, and the peer takes what is queued and
    /// finishes closing, within the close timeout of the last progress.
    Closing(Closing),
}

/// [`TcpServer`]: Python's `socketserver`, on a fixed pool of smoltcp sockets.
///
/// smoltcp has no accept queue: a socket in `LISTEN` becomes the connection when a
/// SYN arrives. So `N` sockets listening on one port *are* `listen(N)`: up to `N`
/// connections are served at once.
///
/// Each socket (a *slot*) is paired with a [`Session`], the equivalent of
/// `socketserver.BaseRequestHandler`: [`start`](Session::start) when a connection
/// arrives, bytes both ways on every poll (the body of `handle()`),
/// [`end`](Session::end) when it ends, however it ends. When a connection ends the
/// slot listens again at once, with no wait for `TIME-WAIT`: the lesson of
/// `SO_REUSEADDR`.
///
/// No peer holds a slot by its good will alone. Every slot is freed by time:
///
/// | deadline | [`ServerConfig`] field | default | what it frees |
/// |---|---|---|---|
/// | handshake | `handshake_timeout` | 20 s | a SYN whose sender never completes the handshake |
/// | idle | `idle_timeout` | 60 s | a connection that moves no byte |
/// | close | `close_timeout` | 20 s | a connection we closed whose peer never closes (its input is read and dropped meanwhile), or never acknowledges our FIN (counted closed if the peer's FIN came and every byte was acknowledged) |
///
/// and the sessions keep deadlines of their own (a request head that trickles in
/// one byte at a time), through [`Session::poll_timeout`].
///
/// `N` sockets serving one port, each with its own [`Session`].
///
/// ```
/// use smoltcp::iface::{SocketSet, SocketStorage};
/// use smoltcp::socket::tcp;
/// use smolsock::net::TcpServer;
/// use smolsock::session::Echo;
///
/// let mut storage: [SocketStorage; 2] = Default::default();
/// let mut sockets = SocketSet::new(&mut storage[..]);
/// let mut bufs = [[0u8; 2048]; 4];
/// let [a, b, c, d] = &mut bufs;
/// let h1 = sockets.add(tcp::Socket::new(
///     tcp::SocketBuffer::new(&mut a[..]),
///     tcp::SocketBuffer::new(&mut b[..]),
/// ));
/// let h2 = sockets.add(tcp::Socket::new(
///     tcp::SocketBuffer::new(&mut c[..]),
///     tcp::SocketBuffer::new(&mut d[..]),
/// ));
/// // listen(2) on port 7: two clients at once.
/// let echo = TcpServer::new(&mut sockets, 7, [h1, h2], [Echo::new(), Echo::new()]).unwrap();
/// assert!(sockets.get::<tcp::Socket>(h1).is_listening());
/// assert_eq!(echo.active(), 0);
/// ```
#[must_use = "a server does nothing unless polled"]
pub struct TcpServer<S, const N: usize> {
    port: u16,
    config: ServerConfig,
    handles: [SocketHandle; N],
    /// Slot indices in the order of their handles, which is the order
    /// `SocketSet::iter_mut` yields sockets in: one walk pairs them.
    order: [usize; N],
    sessions: [S; N],
    states: [SlotState; N],
    stats: ServerStats,
}

impl<S: Session, const N: usize> TcpServer<S, N> {
    /// A server on `port` over the sockets `handles` of `sockets` (one per slot,
    /// each with its own buffers), serving each connection with its slot's
    /// session. Every socket listens when this returns.
    pub fn new(
        sockets: &mut SocketSet<'_>,
        port: u16,
        handles: [SocketHandle; N],
        sessions: [S; N],
    ) -> Result<Self, ServerError> {
        let mut order: [usize; N] = core::array::from_fn(|i| i);
        open_slots(sockets, port, &handles, &mut order)?;
        Ok(Self {
            port,
            config: ServerConfig::DEFAULT,
            handles,
            order,
            sessions,
            states: [SlotState::Listening {
                handshake_since: None,
            }; N],
            stats: ServerStats::default(),
        })
    }

    /// The same server with other settings.
    pub const fn with_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The port served (0 once [`close_all`](Self::close_all) was called).
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The settings.
    pub const fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The counters so far.
    pub const fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Connections open now (handshakes under way not counted).
    pub fn active(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, SlotState::Active { .. } | SlotState::Closing(_)))
            .count()
    }

    /// Slots waiting for a client: listening, with no handshake under way, or
    /// listening again at the next poll. None once [`close_all`](Self::close_all)
    /// stopped the pool listening.
    pub fn free_slots(&self) -> usize {
        let relistening = self.port != 0;
        self.states
            .iter()
            .filter(|s| match s {
                SlotState::Listening { handshake_since } => handshake_since.is_none(),
                SlotState::Aborting => relistening,
                _ => false,
            })
            .count()
    }

    /// The sessions, for reading their own counters.
    pub fn sessions(&self) -> &[S; N] {
        &self.sessions
    }

    /// The sessions, to change their settings.
    pub fn sessions_mut(&mut self) -> &mut [S; N] {
        &mut self.sessions
    }

    /// Stops listening and closes every connection gracefully: for a clean
    /// shutdown. Keep polling until [`active`](Self::active) is 0 or your
    /// patience ends.
    ///
    /// Each session takes no more input (what its peer sends from now on is
    /// read and dropped, counted in [`ServerStats::discarded`]) but still hands
    /// out what it holds, such as an echo's buffered bytes or the rest of an
    /// answer; the FIN follows once it has nothing more to send
    /// ([`Session::wants_transmit`] is `false`, or it gives nothing though
    /// offered the whole send buffer, empty), and a session that turns
    /// [`Status::Abort`] meanwhile is reset ([`End::Aborted`]). The
    /// close timeout bounds this as it bounds any close: a peer that takes
    /// nothing for that long is reset ([`End::CloseTimeout`]; [`End::Closed`]
    /// if all it owed was the ACK of our FIN), and each KiB it
    /// acknowledges gives it that long again, so a session whose output never
    /// ends runs for as long as its peer keeps reading. A connection
    /// established but not accepted yet is reset and counted in
    /// [`ServerStats::unaccepted`].
    pub fn close_all(&mut self, sockets: &mut SocketSet<'_>, now: impl Into<Instant>) {
        self.port = 0;
        let config = self.config;
        let cx = PollContext {
            port: 0,
            config: &config,
            now: now.into(),
        };
        self.for_each_slot(sockets, |mut slot, socket| {
            match *slot.state {
                SlotState::Active { .. } => {
                    *slot.state = closing_from(cx.now, socket);
                    slot.closing(socket, cx);
                }
                // No connection yet: drop the listener (and any handshake under
                // way, or connection not accepted yet, with a RST; a connection
                // is counted).
                SlotState::Listening { .. } => {
                    if socket.may_send() || socket.state() == tcp::State::CloseWait {
                        slot.stats.unaccepted = slot.stats.unaccepted.saturating_add(1);
                    }
                    socket.abort();
                    *slot.state = SlotState::Aborting;
                }
                SlotState::Idle | SlotState::Aborting | SlotState::Closing(_) => {}
            }
        });
    }

    /// Runs `f` on every slot whose socket is in `sockets`, walking the set once.
    fn for_each_slot<F>(&mut self, sockets: &mut SocketSet<'_>, mut f: F)
    where
        F: FnMut(Slot<'_, S>, &mut tcp::Socket<'_>),
    {
        let mut next = self.order.iter().copied().peekable();
        let mut seen = 0usize;
        for (handle, socket) in sockets.iter_mut() {
            while let Some(&index) = next.peek() {
                let Some(&slot_handle) = self.handles.get(index) else {
                    next.next();
                    continue;
                };
                if slot_handle > handle {
                    break;
                }
                next.next();
                if slot_handle < handle {
                    continue;
                }
                let (Some(state), Some(session), Some(tcp)) = (
                    self.states.get_mut(index),
                    self.sessions.get_mut(index),
                    tcp::Socket::downcast_mut(socket),
                ) else {
                    break;
                };
                seen = seen.saturating_add(1);
                f(
                    Slot {
                        state,
                        session,
                        stats: &mut self.stats,
                    },
                    tcp,
                );
                break;
            }
        }
        let missing = N.saturating_sub(seen);
        self.stats.missing_sockets = self.stats.missing_sockets.saturating_add(missing as u64);
    }
}

/// The bytes in the socket's send buffer (a `u32` keeps a slot's state small;
/// no buffer is near 4 GiB, and a larger count only reads as full).
fn send_queue(socket: &tcp::Socket<'_>) -> u32 {
    u32::try_from(socket.send_queue()).unwrap_or(u32::MAX)
}

/// What a peer must acknowledge of its answer to earn another close or idle
/// timeout: this many bytes, or all that is queued when less. A peer taking its
/// answer a byte at a time cannot hold a slot for a timeout per byte: at most
/// for one per KiB of the send buffer, and one more.
const ACK_PROGRESS: u32 = 1024;

/// The bytes the peer acknowledged since its last progress: `acked` until the
/// last poll, and what left the send buffer since (its fill was `queued`).
fn acknowledged(queued: u32, acked: u32, socket: &tcp::Socket<'_>) -> u32 {
    acked.saturating_add(queued.saturating_sub(send_queue(socket)))
}

/// Whether the peer took enough of its answer to count as progress: a KiB, or
/// all of it (the send buffer's fill is down to `fill`).
const fn took_enough(acked: u32, fill: u32) -> bool {
    acked >= ACK_PROGRESS || (acked > 0 && fill == 0)
}

/// A closing connection's progress, for its close timeout: `since` is when it
/// began to close or the peer last took a KiB of its answer (or the rest);
/// the peer has acknowledged `acked` bytes since then, and the send buffer
/// held `queued` at the last look. `TcpServer`'s closing slots and
/// `TcpSession` share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Closing {
    pub(super) since: Instant,
    queued: u32,
    acked: u32,
}

impl Closing {
    /// A placeholder for a connection not closing.
    pub(super) const NOT_YET: Self = Self {
        since: Instant::ZERO,
        queued: 0,
        acked: 0,
    };

    /// The connection begins to close at `now`.
    pub(super) fn new(now: Instant, socket: &tcp::Socket<'_>) -> Self {
        Self {
            since: now,
            queued: send_queue(socket),
            acked: 0,
        }
    }

    /// Counts what the peer acknowledged since the last look; the deadline
    /// counts from `now` again once it took enough, or when `progress` says
    /// it moved otherwise. Says whether it does.
    pub(super) fn look(&mut self, socket: &tcp::Socket<'_>, now: Instant, progress: bool) -> bool {
        self.acked = acknowledged(self.queued, self.acked, socket);
        self.queued = send_queue(socket);
        let moved = progress || took_enough(self.acked, self.queued);
        if moved {
            (self.since, self.acked) = (now, 0);
        }
        moved
    }

    /// The send buffer's fill now, after a session added to it.
    pub(super) fn requeue(&mut self, socket: &tcp::Socket<'_>) {
        self.queued = send_queue(socket);
    }
}

/// The state of a slot whose connection starts closing now.
fn closing_from(now: Instant, socket: &tcp::Socket<'_>) -> SlotState {
    SlotState::Closing(Closing::new(now, socket))
}

/// A closing slot's poll, before its session: the peer's acknowledgments
/// (enough of them put the close deadline off), and its input read and
/// dropped, counted. Returns whether the socket may still send (close_all has
/// not sent our FIN yet): the session is then to hand out what it holds.
///
/// This and [`closing_end`] are a closing slot's poll but for the session's
/// part: not generic, so one copy in flash serves every session type.
#[inline(never)]
fn closing_input(
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    stats: &mut ServerStats,
    state: &mut SlotState,
) -> bool {
    if let SlotState::Closing(closing) = state {
        closing.look(socket, now, false);
    }
    let dropped = discard(socket);
    stats.discarded = stats.discarded.saturating_add(dropped as u64);
    socket.may_send()
}

/// A closing slot's poll, after its session, whose word is `session`: `Close`
/// once it holds nothing more to send (our FIN then, if not sent yet), `Open`
/// while it still does, `Abort` to reset. Then how the connection ended, if it
/// did (the socket is aborted then).
#[inline(never)]
fn closing_end(
    socket: &mut tcp::Socket<'_>,
    cx: PollContext<'_>,
    state: &mut SlotState,
    session: Status,
) -> Option<End> {
    let SlotState::Closing(closing) = state else {
        return None;
    };
    // Room left in the send buffer is no sign the session is done: one that
    // writes only whole records leaves room and still holds some.
    if session == Status::Close && socket.may_send() {
        socket.close();
    }
    closing.requeue(socket);
    let end = if session == Status::Abort {
        End::Aborted
    } else if !socket.is_active() {
        // A clean close has the peer's FIN and every byte of ours acknowledged
        // (TIME-WAIT, or CLOSED from LAST-ACK). A reset, or the stack giving
        // up, ends it before the peer's FIN (as in FIN-WAIT-2) or with bytes
        // unacknowledged. With nothing left to read, the receive half tells
        // whether the FIN came (`Finished`), also after a reset that followed
        // it: no poll needs to have seen the states in between. (In LAST-ACK
        // with every byte acknowledged, a reset looks like the ACK of our FIN;
        // nothing was lost either way.) Only a TIME-WAIT that ran out before
        // this poll forgets the FIN: smoltcp then resets the socket itself,
        // which also forgets the port it listened on, where a peer's reset
        // keeps both. So a closed socket with no listening port went through
        // TIME-WAIT: clean. (The interface losing the connection's address
        // does the same, and is counted clean too: nothing else tells them
        // apart.)
        let time_wait_over =
            socket.state() == tcp::State::Closed && socket.listen_endpoint().port == 0;
        let fin = matches!(socket.peek(0), Err(tcp::RecvError::Finished)) || time_wait_over;
        if fin && socket.send_queue() == 0 {
            End::Closed
        } else {
            End::Reset
        }
    } else if cx.now >= closing.since.saturating_add(cx.config.close_timeout) {
        if awaits_only_fin_ack(socket) {
            End::Closed
        } else {
            End::CloseTimeout
        }
    } else {
        return None;
    };
    // Over, or out of time. TIME-WAIT would hold this socket for 10 s; the
    // next client needs it now (SO_REUSEADDR), so drop it.
    socket.abort();
    Some(end)
}

/// Whether all a close still waits for is the ACK of our FIN: the peer's FIN is
/// in (LAST-ACK, or CLOSING after both sides closed at once) and every byte of
/// ours is acknowledged. A close deadline that passes then loses nothing: the
/// peer has closed and has all we sent. Only its last ACK did not come (lost,
/// with the FINs we resent outliving its TIME-WAIT, or the peer gone), and no
/// TCP can make sure of that one: the close counts as clean, as a reset in
/// LAST-ACK does. (The pool has read and dropped the peer's input by then; a
/// [`TcpSession`](super::TcpSession) whose session left some unread loses it,
/// and checks that too.)
pub(crate) fn awaits_only_fin_ack(socket: &tcp::Socket<'_>) -> bool {
    matches!(socket.state(), tcp::State::LastAck | tcp::State::Closing) && socket.send_queue() == 0
}

/// [`TcpServer::new`]'s checks and listens, not generic, so that every pool
/// shares one copy: no two of `handles` alike and each a TCP socket of
/// `sockets` (else nothing listens), then each socket in LISTEN on `port` (if
/// one cannot, those before it are closed again). `order` gets the slots'
/// indices sorted by handle.
fn open_slots(
    sockets: &mut SocketSet<'_>,
    port: u16,
    handles: &[SocketHandle],
    order: &mut [usize],
) -> Result<(), ServerError> {
    order.sort_unstable_by_key(|&i| handles.get(i).copied());
    let sorted = order.iter().filter_map(|&i| handles.get(i));
    if sorted.clone().zip(sorted.skip(1)).any(|(a, b)| a == b) {
        return Err(ServerError::DuplicateHandle);
    }
    // Every handle is checked before any socket listens: a refused server
    // leaves the set as it was, not with sockets in LISTEN that nobody serves
    // (and that would refuse to listen again for the corrected server).
    for &handle in handles {
        super::pump::socket_mut::<tcp::Socket>(sockets, handle)
            .ok_or(ServerError::Handle(HandleError::NotFound))?;
    }
    for (i, &handle) in handles.iter().enumerate() {
        let socket = super::pump::socket_mut::<tcp::Socket>(sockets, handle)
            .ok_or(ServerError::Handle(HandleError::NotFound))?;
        if let Err(e) = socket.listen(port) {
            for &earlier in handles.iter().take(i) {
                if let Some(socket) = super::pump::socket_mut::<tcp::Socket>(sockets, earlier) {
                    socket.abort();
                }
            }
            return Err(ServerError::Listen(e));
        }
    }
    Ok(())
}

/// A listening slot whose socket is open but not connected: a handshake under
/// way is reset at its deadline, timed from its own SYN (a handshake with
/// another peer than the one timed is a new one: a RST sent the socket back to
/// LISTEN and a SYN took it, both between two polls); else the socket is back
/// in LISTEN (smoltcp returns there on a RST in SYN-RECEIVED). Not generic:
/// every pool shares it.
#[inline(never)]
fn watch_handshake(
    state: &mut SlotState,
    stats: &mut ServerStats,
    socket: &mut tcp::Socket<'_>,
    cx: PollContext<'_>,
    timed: Option<(Instant, IpEndpoint)>,
) {
    if socket.state() != tcp::State::SynReceived {
        *state = SlotState::Listening {
            handshake_since: None,
        };
        return;
    }
    let peer = socket.remote_endpoint();
    let since = timed
        .filter(|&(_, p)| Some(p) == peer)
        .map_or(cx.now, |(since, _)| since);
    if cx.now >= since.saturating_add(cx.config.handshake_timeout) {
        crate::macros::net_info!(
            "tcp/{}: handshake never completed, listening again",
            cx.port
        );
        socket.abort();
        stats.handshake_timeouts = stats.handshake_timeouts.saturating_add(1);
        *state = SlotState::Aborting;
    } else {
        *state = SlotState::Listening {
            handshake_since: peer.map(|p| (since, p)),
        };
    }
}

/// One slot's share of a server poll.
struct Slot<'a, S> {
    state: &'a mut SlotState,
    session: &'a mut S,
    stats: &'a mut ServerStats,
}

/// What a slot poll needs from the server.
#[derive(Clone, Copy)]
struct PollContext<'a> {
    port: u16,
    config: &'a ServerConfig,
    now: Instant,
}

impl<S: Session> Slot<'_, S> {
    fn run(&mut self, socket: &mut tcp::Socket<'_>, cx: PollContext<'_>) {
        match *self.state {
            SlotState::Idle => {}
            SlotState::Aborting if cx.port == 0 => *self.state = SlotState::Idle,
            SlotState::Aborting => self.listen(socket, cx),
            SlotState::Listening { handshake_since } => {
                if !socket.is_open() {
                    // The handshake was evicted by the backlog, or a connection
                    // came and went between two polls (reset once established;
                    // smoltcp's socket shows the two alike): listen again.
                    self.listen(socket, cx);
                } else if socket.may_send() || socket.state() == tcp::State::CloseWait {
                    self.accept(socket, cx);
                } else {
                    watch_handshake(self.state, self.stats, socket, cx, handshake_since);
                }
            }
            SlotState::Active {
                peer,
                last_progress,
                told_finished,
                queued,
                acked,
            } => {
                let acked = acknowledged(queued, acked, socket);
                self.serve(socket, cx, peer, last_progress, told_finished, acked);
            }
            SlotState::Closing(_) => self.closing(socket, cx),
        }
    }

    fn listen(&mut self, socket: &mut tcp::Socket<'_>, cx: PollContext<'_>) {
        if socket.is_open() {
            socket.abort();
            *self.state = SlotState::Aborting;
            return;
        }
        match socket.listen(cx.port) {
            Ok(()) => {
                *self.state = SlotState::Listening {
                    handshake_since: None,
                };
                self.stats.relistens = self.stats.relistens.saturating_add(1);
            }
            Err(e) => crate::macros::net_warn!("tcp/{}: cannot listen: {}", cx.port, e),
        }
    }

    fn accept(&mut self, socket: &mut tcp::Socket<'_>, cx: PollContext<'_>) {
        let Some(peer) = socket.remote_endpoint() else {
            return;
        };
        socket.set_nagle_enabled(cx.config.nagle);
        configure(&*self.session, socket);
        self.stats.accepted = self.stats.accepted.saturating_add(1);
        crate::macros::net_debug!("tcp/{}: accepted {}", cx.port, peer);
        self.session.start(cx.now);
        self.serve(socket, cx, peer, cx.now, false, 0);
    }

    fn serve(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        cx: PollContext<'_>,
        peer: IpEndpoint,
        last_progress: Instant,
        mut told_finished: bool,
        acked: u32,
    ) {
        let now = cx.now;
        if !socket.is_active() {
            // Reset by the peer, or the stack gave up retransmitting.
            self.end(End::Reset, cx);
            self.listen(socket, cx);
            return;
        }
        if self.session.poll_timeout().is_some_and(|at| now >= at) {
            self.session.handle_timeout(now);
        }
        // No segment comes or goes while the session is pumped: what leaves the
        // receive buffer is the peer's, what joins the send buffer the session's.
        let (waiting, queued) = (socket.recv_queue(), send_queue(socket));
        // Asked before the pump: the frame a session closes on is the peer's
        // progress, what it drops after is not.
        let dropping = self.session.drops_input();
        pump(self.session, socket, now);
        if !told_finished && peer_finished(socket) {
            told_finished = true;
            self.session.receive_finished(now);
            pump(self.session, socket, now);
        }
        // Bytes a session only drops (it is closing) are no sign of life.
        let received = if dropping {
            0
        } else {
            waiting.saturating_sub(socket.recv_queue())
        };
        let sent = send_queue(socket).saturating_sub(queued);
        // Progress: bytes from the peer, a new answer into an empty send buffer,
        // or the peer taking a KiB of its answer, or all of it. A session that
        // refills what the peer took a byte at a time is not progress: the peer
        // would hold the slot for as long as the answer lasts.
        let progress = received > 0 || (queued == 0 && sent > 0) || took_enough(acked, queued);
        let (last_progress, acked) = if progress {
            (now, 0)
        } else {
            (last_progress, acked)
        };
        match self.session.status() {
            Status::Abort => {
                socket.abort();
                self.end(End::Aborted, cx);
                *self.state = SlotState::Aborting;
            }
            Status::Close => {
                socket.close();
                *self.state = closing_from(now, socket);
                self.closing(socket, cx);
            }
            Status::Open => {
                if cx
                    .config
                    .idle_timeout
                    .is_some_and(|t| now >= last_progress.saturating_add(t))
                {
                    crate::macros::net_info!("tcp/{}: {} idle, resetting", cx.port, peer);
                    socket.abort();
                    self.end(End::IdleTimeout, cx);
                    *self.state = SlotState::Aborting;
                } else {
                    *self.state = SlotState::Active {
                        peer,
                        last_progress,
                        told_finished,
                        queued: send_queue(socket),
                        acked,
                    };
                }
            }
        }
    }

    /// We close: read and drop what the peer still sends so its FIN gets
    /// through, and free the slot once it has, or once the close timeout passes
    /// with the peer taking nothing (a peer still reading the answer is not cut
    /// off: each KiB it acknowledges, or the rest when less, puts the deadline
    /// off, as nginx's `send_timeout` does for any progress; so a peer taking
    /// a byte at a time is still reset, and none holds the slot for more than
    /// a timeout per KiB of the send buffer). After [`TcpServer::close_all`]
    /// the session first hands out what it holds, then our FIN follows.
    fn closing(&mut self, socket: &mut tcp::Socket<'_>, cx: PollContext<'_>) {
        // The peer's input is gone, so the session gives only what it holds.
        if closing_input(socket, cx.now, self.stats, self.state) {
            pump(self.session, socket, cx.now);
        }
        // Done once it says it has nothing to send, or gave nothing though
        // offered the whole send buffer, empty (the default `wants_transmit`
        // is always `true`).
        let session = match self.session.status() {
            Status::Abort => Status::Abort,
            _ if self.session.wants_transmit() && socket.send_queue() > 0 => Status::Open,
            _ => Status::Close,
        };
        if let Some(end) = closing_end(socket, cx, self.state, session) {
            self.end(end, cx);
            *self.state = SlotState::Aborting;
        }
    }

    fn end(&mut self, end: End, cx: PollContext<'_>) {
        let counter = match end {
            End::Closed => &mut self.stats.closed,
            End::Reset => &mut self.stats.resets,
            End::IdleTimeout => &mut self.stats.idle_timeouts,
            End::CloseTimeout => &mut self.stats.close_timeouts,
            End::Aborted => &mut self.stats.aborted,
        };
        *counter = counter.saturating_add(1);
        crate::macros::net_debug!("tcp/{}: connection {}", cx.port, end);
        self.session.end(cx.now);
        *self.state = SlotState::Idle;
    }
}

impl<S: Session, const N: usize> Service for TcpServer<S, N> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: smoltcp::time::Instant) {
        let config = self.config;
        let cx = PollContext {
            port: self.port,
            config: &config,
            now: now.into(),
        };
        self.for_each_slot(sockets, |mut slot, socket| slot.run(socket, cx));
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<smoltcp::time::Instant> {
        let config = &self.config;
        self.states
            .iter()
            .zip(self.sessions.iter())
            .filter_map(|(state, session)| match *state {
                SlotState::Active { last_progress, .. } => {
                    let idle = config.idle_timeout.map(|t| last_progress.saturating_add(t));
                    sooner(idle, session.poll_timeout())
                }
                SlotState::Closing(closing) => {
                    Some(closing.since.saturating_add(config.close_timeout))
                }
                SlotState::Listening {
                    handshake_since: Some((since, _)),
                } => Some(since.saturating_add(config.handshake_timeout)),
                // Listen again as soon as the RST is out.
                SlotState::Aborting => Some(Instant::ZERO),
                SlotState::Idle | SlotState::Listening { .. } => None,
            })
            .min()
            .map(smoltcp::time::Instant::from)
    }
}

impl<S, const N: usize> fmt::Debug for TcpServer<S, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("port", &self.port)
            .field("slots", &N)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
