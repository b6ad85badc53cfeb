//! Moving a session's bytes to and from one smoltcp TCP socket: the whole of the
//! poll-loop adapter's data path.
//!
//! Bytes go straight between the socket's rings and the session, with no copy of
//! the adapter's own: [`tcp::Socket::recv`] hands the session the receive ring,
//! and [`tcp::Socket::send`] hands it the free part of the send ring.

use core::fmt;
use core::task::Poll;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, tcp};

use super::server::{Closing, ServerConfig, awaits_only_fin_ack};
use crate::session::{Request, Session, Status};
use crate::time::{Duration, Instant, sooner};
use crate::trace::levels;

/// The socket behind a handle, if the handle is of this set and of type `T`.
///
/// `SocketSet::get_mut` panics on a foreign handle; the adapter never does.
pub(crate) fn socket_mut<'b, 'a: 'b, T: AnySocket<'a>>(
    sockets: &'b mut SocketSet<'a>,
    handle: SocketHandle,
) -> Option<&'b mut T> {
    sockets
        .iter_mut()
        .find(|(h, _)| *h == handle)
        .and_then(|(_, socket)| T::downcast_mut(socket))
}

/// Why a socket handle could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HandleError {
    /// No socket of the right type has this handle in this set (a handle from
    /// another set, a removed socket, or a UDP socket given for a TCP one).
    NotFound,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::NotFound => {
                f.write_str("no socket of that type has this handle in the set")
            }
        }
    }
}

impl core::error::Error for HandleError {}

/// Moves bytes between `session` and `socket` until neither side can move more;
/// returns how many moved.
///
/// The ring hands out at most two pieces each way (before and after its wrap), so
/// each direction asks again only while the session took or gave all it was
/// offered. The two directions go round again while input is left in the ring
/// and the round moved something: a session that answered or consumed what it held
/// may take more now (an echo whose storage was full).
///
/// The session is told the socket's buffers before and after
/// ([`Session::observe`]), for a trace.
pub(crate) fn pump<S: Session + ?Sized>(
    session: &mut S,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
) {
    session.observe(levels(socket), now);
    pump_both(session, socket, now);
    session.observe(levels(socket), now);
}

/// [`pump`] for a poll that may well find nothing to do (most polls of an open
/// connection): the session is told the buffers before and after, as `pump`
/// tells it, and the out-of-line rounds run only if one could move a byte,
/// with input in the ring or something the session wants to send that the ring
/// has room for (asked after the first `observe`, which may have given it
/// something to send).
#[inline(always)]
fn pump_unless_idle<S: Session + ?Sized>(
    session: &mut S,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
) {
    session.observe(levels(socket), now);
    if socket.can_recv() || can_transmit(session, socket) {
        pump_rounds(session, socket, now);
    }
    session.observe(levels(socket), now);
}

/// [`pump_both`] out of line, for [`pump_unless_idle`]: the poll it is
/// inlined into stays small.
#[inline(never)]
fn pump_rounds<S: Session + ?Sized>(session: &mut S, socket: &mut tcp::Socket<'_>, now: Instant) {
    pump_both(session, socket, now);
}

/// Whether the session may be asked for bytes: the socket may send, its send
/// buffer has room, and the session has something to say.
#[inline(always)]
fn can_transmit<S: Session + ?Sized>(session: &S, socket: &tcp::Socket<'_>) -> bool {
    socket.may_send() && socket.send_queue() < socket.send_capacity() && session.wants_transmit()
}

/// [`pump`], giving back how many bytes moved: for a session that has closed
/// its half, the bytes the peer sent, which count for the close timeout. (A
/// function of its own: the count costs the usual polls nothing.)
fn pump_counted<S: Session + ?Sized>(
    session: &mut S,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
) -> usize {
    session.observe(levels(socket), now);
    let moved = pump_both(session, socket, now);
    session.observe(levels(socket), now);
    moved
}

#[inline]
fn pump_both<S: Session + ?Sized>(
    session: &mut S,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
) -> usize {
    let mut moved = 0usize;
    loop {
        let mut round = 0usize;
        while socket.can_recv() {
            let (n, whole) = socket
                .recv(|input| {
                    let n = session.receive(input, now).min(input.len());
                    (n, (n, n == input.len()))
                })
                .unwrap_or((0, false));
            round = round.saturating_add(n);
            if !whole || n == 0 {
                break;
            }
        }
        // A full send buffer takes nothing: the session is not asked.
        if can_transmit(session, socket) {
            loop {
                let (n, whole) = socket
                    .send(|space| {
                        let n = session.transmit(space, now).min(space.len());
                        (n, (n, n == space.len()))
                    })
                    .unwrap_or((0, false));
                round = round.saturating_add(n);
                if !whole || n == 0 {
                    break;
                }
            }
        }
        moved = moved.saturating_add(round);
        if round == 0 || !socket.can_recv() {
            return moved;
        }
    }
}

/// Whether the peer has closed its sending half and every byte it sent was read.
pub(crate) fn peer_finished(socket: &tcp::Socket<'_>) -> bool {
    !socket.may_recv() && socket.recv_queue() == 0 && socket.state() != tcp::State::Listen
}

/// Reads and drops whatever the peer still sends; returns how many bytes.
pub(crate) fn discard(socket: &mut tcp::Socket<'_>) -> usize {
    let mut dropped = 0usize;
    while socket.can_recv() {
        let n = socket.recv(|input| (input.len(), input.len())).unwrap_or(0);
        if n == 0 {
            break;
        }
        dropped = dropped.saturating_add(n);
    }
    dropped
}

/// Sets the socket options a session asks for: with [`Session::no_delay`], Nagle
/// and delayed ACK off.
///
/// - Nagle off: a session writes each answer whole, and Nagle would hold back the
///   tail of one longer than a segment until the peer's (delayed) ACK of the
///   segment before: 40 ms per request against Linux.
/// - Delayed ACK off (smoltcp's `ack_delay`, 10 ms by default): a peer that writes
///   header and body in two sends with Nagle on (Python's `send(header);
///   send(body)`) holds the body until the header is acknowledged, 10 ms per
///   request. In bulk transfer smoltcp still acknowledges every segment it gets.
pub(crate) fn configure<S: Session + ?Sized>(session: &S, socket: &mut tcp::Socket<'_>) {
    if session.no_delay() {
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
    }
}

/// A session on one TCP socket of a [`SocketSet`], for clients and hand-written
/// loops: [`poll`](Self::poll) moves its bytes and applies its status.
///
/// ```
/// use smoltcp::iface::{SocketSet, SocketStorage};
/// use smoltcp::socket::tcp;
/// use smolsock::net::TcpSession;
/// use smolsock::session::{Framed, FramedEcho, Status};
/// use smolsock::wire::frame::HeaderFormat;
///
/// let mut storage: [SocketStorage; 1] = Default::default();
/// let mut sockets = SocketSet::new(&mut storage[..]);
/// let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
/// let handle = sockets.add(tcp::Socket::new(
///     tcp::SocketBuffer::new(&mut rx[..]),
///     tcp::SocketBuffer::new(&mut tx[..]),
/// ));
/// let format = HeaderFormat::NETWORK.with_max_len(256).unwrap();
/// let echo = Framed::new(FramedEcho::new(), [0u8; 260], [0u8; 260], format).unwrap();
/// let mut conn = TcpSession::new(handle, echo);
/// // Not connected yet: nothing moves, nothing fails.
/// let now = smoltcp::time::Instant::ZERO;
/// assert_eq!(conn.poll(&mut sockets, now), Ok(Status::Open));
/// ```
#[derive(Debug)]
#[must_use = "a session does nothing unless polled"]
pub struct TcpSession<S> {
    handle: SocketHandle,
    session: S,
    started: bool,
    told_finished: bool,
    ended: bool,
    /// The connection ended while the session still had it open, or after it
    /// said `Close` with bytes the peer never acknowledged or before the
    /// peer's FIN (a reset), or the close timeout passed with more missing
    /// than the ACK of our FIN.
    lost: bool,
    close_timeout: Duration,
    /// Since the session said `Close` (or found the socket gone with bytes
    /// left to read): its deadline, and the peer's progress.
    closing: Closing,
    /// The session has said `Close`, or the socket is gone with bytes left:
    /// `closing` counts.
    is_closing: bool,
    /// Bytes the session received since the peer's last progress while
    /// closing (after a half-close it may still be answering).
    received: usize,
}

/// What a peer must send a session that closed its half to earn another close
/// timeout: a peer sending a byte at a time cannot hold the socket for a
/// timeout per byte.
const RECEIVE_PROGRESS: usize = 1024;

impl<S: Session> TcpSession<S> {
    /// `session` on the socket `handle`. The session starts when the socket is
    /// first seen connected.
    pub const fn new(handle: SocketHandle, session: S) -> Self {
        Self {
            handle,
            session,
            started: false,
            told_finished: false,
            ended: false,
            lost: false,
            close_timeout: ServerConfig::DEFAULT.close_timeout,
            closing: Closing::NOT_YET,
            received: 0,
            is_closing: false,
        }
    }

    /// The same, with another close timeout: once the session has said
    /// [`Status::Close`], the connection must end within `timeout` of that, or
    /// of the peer's last progress since (a kilobyte, or the rest, of ours
    /// acknowledged, or a kilobyte of its own received: after a half-close it
    /// may still be answering), or it is reset and [`poll`](Self::poll) says
    /// [`Status::Abort`] (or the session's [`Status::Close`] if only the ACK of
    /// our FIN was missing, the peer's FIN in, every byte of ours acknowledged
    /// and every byte of the peer's read). 20 s unless set,
    /// as [`ServerConfig::close_timeout`]: a peer that never acknowledges our
    /// last bytes or FIN, or never sends its own FIN (smoltcp keeps FIN-WAIT-2
    /// for ever), cannot hold the socket.
    pub const fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The socket's handle.
    pub const fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// The session.
    pub const fn session(&self) -> &S {
        &self.session
    }

    /// The session, to change it or give it work.
    pub fn session_mut(&mut self) -> &mut S {
        &mut self.session
    }

    /// The session, taken back.
    pub fn into_session(self) -> S {
        self.session
    }

    /// Makes the next connection on the socket a new one for the session.
    pub fn reset(&mut self) {
        self.started = false;
        self.told_finished = false;
        self.ended = false;
        self.lost = false;
        self.is_closing = false;
    }

    /// Whether the connection is over: closed both ways, reset or aborted. The
    /// session was told ([`Session::end`]); only [`reset`](Self::reset) makes the
    /// socket's next connection a new one for it.
    pub const fn is_ended(&self) -> bool {
        self.ended
    }

    /// Moves the session's bytes and applies its status: a FIN once it says
    /// [`Status::Close`], a RST on [`Status::Abort`]. Returns the status: the
    /// session's, or [`Status::Abort`] once the connection was lost, so a loop
    /// that runs while it reads [`Status::Open`] ends. A connection is lost when
    /// it ends while the session has it open (the peer reset it, or the socket
    /// timed out; bytes still to be read then get the close timeout to be
    /// taken), after the session said [`Status::Close`] but before the
    /// peer acknowledged every byte or sent its FIN, or when it has not ended by the close
    /// timeout ([`with_close_timeout`](Self::with_close_timeout); the socket
    /// is then reset) unless all it still waited for was the ACK of our FIN
    /// (the peer's FIN in, every byte of ours acknowledged and every byte of
    /// the peer's read: nothing was lost).
    /// Before the socket is first connected it is
    /// [`Status::Open`]: a refused connect is the client's to report
    /// ([`TcpClient`](crate::net::TcpClient)). So poll the session in the same
    /// pass as the client's poll that first says `Connected`, before the
    /// interface is polled again: a connection reset in between is closed
    /// before the session ever saw it open, and the session stays `Open`.
    ///
    /// Fails only if `handle` is no TCP socket of `sockets`.
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: impl Into<Instant>,
    ) -> Result<Status, HandleError> {
        let now = now.into();
        let socket =
            socket_mut::<tcp::Socket>(sockets, self.handle).ok_or(HandleError::NotFound)?;
        Ok(self.poll_socket(socket, now))
    }

    pub(crate) fn poll_socket(&mut self, socket: &mut tcp::Socket<'_>, now: Instant) -> Status {
        if !self.started {
            if !socket.may_send() {
                return Status::Open;
            }
            self.started = true;
            configure(&self.session, socket);
            self.session.start(now);
        }
        if self.ended {
            return self.ended_status();
        }
        if self.is_closing {
            self.poll_closing(socket, now)
        } else {
            self.poll_connected::<false>(socket, now)
        }
    }

    /// [`poll_connected`](Self::poll_connected) of a session that has closed
    /// its half, out of line: an open connection's poll counts nothing for
    /// the close timeout.
    #[inline(never)]
    fn poll_closing(&mut self, socket: &mut tcp::Socket<'_>, now: Instant) -> Status {
        self.poll_connected::<true>(socket, now)
    }

    /// A poll of a started connection; `CLOSING`: the session has said
    /// `Close` before, and what the peer sends counts for the close timeout.
    #[inline(always)]
    fn poll_connected<const CLOSING: bool>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Status {
        if self.session.poll_timeout().is_some_and(|at| now >= at) {
            self.session.handle_timeout(now);
        }
        // Once the session has closed, what moves is only what the peer sends:
        // its progress, unless the session only drops it.
        let received = if CLOSING {
            // Asked before the pump: what a session took before it began to
            // drop is the peer's progress.
            let dropping = self.session.drops_input();
            let received = pump_counted(&mut self.session, socket, now);
            if dropping { 0 } else { received }
        } else {
            pump_unless_idle(&mut self.session, socket, now);
            0
        };
        // A reset leaves the socket CLOSED with nothing to read, which
        // `peer_finished` cannot tell from a clean end: the session would take a
        // reset for the peer's FIN (a framed stream "ending on a frame boundary",
        // a request completing). A FIN puts the socket in CLOSE-WAIT, CLOSING or
        // TIME-WAIT, where a poll sees it before it can reach CLOSED.
        if !self.told_finished && peer_finished(socket) && socket.state() != tcp::State::Closed {
            self.told_finished = true;
            self.session.receive_finished(now);
            pump(&mut self.session, socket, now);
        }
        let status = self.session.status();
        // A socket in TIME-WAIT (or closed) may still hold bytes that arrived with
        // the peer's FIN, more than the session could take in this poll: the
        // connection is over only once they are read, or they would never reach
        // the session (an ended session is no longer pumped).
        let gone = !socket.is_active() && !socket.can_recv();
        match status {
            Status::Open => {
                if !socket.is_active() {
                    return self.gone_poll(socket, now, gone);
                }
            }
            // Our FIN goes out once the send buffer drains; the peer may still send
            // (a half-close) and the session still receives. A connection that
            // ends with bytes unacknowledged was reset (or the stack gave up):
            // a clean close cannot, its FIN coming after them.
            Status::Close => return self.close_poll(socket, now, gone, received),
            Status::Abort => {
                socket.abort();
                self.end(now);
            }
        }
        status
    }

    /// Whether the close timeout has passed: counting from now if the session
    /// has only just said `Close`, else from then or from the peer's last
    /// progress: a KiB (or the rest) of ours acknowledged, or a KiB of its
    /// own received, `received` in this poll (a half-close: the peer may still
    /// be answering). Once closed, the socket takes no more bytes, so its send
    /// buffer only drains.
    fn close_timed_out(&mut self, socket: &tcp::Socket<'_>, now: Instant, received: usize) -> bool {
        if !self.is_closing {
            self.is_closing = true;
            self.closing = Closing::new(now, socket);
            self.received = 0;
        }
        self.received = self.received.saturating_add(received);
        if self
            .closing
            .look(socket, now, self.received >= RECEIVE_PROGRESS)
        {
            self.received = 0;
        }
        now >= self.closing.since.saturating_add(self.close_timeout)
    }

    /// A poll of a session still open on a socket that is no longer active
    /// (reset, or timed out): lost at once if nothing is left to read. Bytes
    /// left that the session did not take (its output, which would make room,
    /// can no longer be sent; or its application holds it back) get the close
    /// timeout, counted from the first such poll, to be taken; then the
    /// connection is lost, those bytes with it.
    #[cold]
    #[inline(never)]
    fn gone_poll(&mut self, socket: &mut tcp::Socket<'_>, now: Instant, gone: bool) -> Status {
        if gone || self.close_timed_out(socket, now, 0) {
            self.lost = true;
            self.end(now);
            return Status::Abort;
        }
        Status::Open
    }

    /// A poll of a session that said `Close`: our FIN, once the send buffer
    /// drains; the end of the connection (`gone`), lost if bytes were left
    /// unacknowledged; or a reset at the close timeout. The peer may still
    /// send (a half-close), and the session still receives.
    // Out of line: polls of an open connection, the common case, stay lean.
    #[inline(never)]
    fn close_poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        gone: bool,
        received: usize,
    ) -> Status {
        socket.close();
        if gone {
            // Clean: every byte of ours acknowledged and the peer's FIN in
            // (`Finished` on the receive half, also after a reset that
            // followed the FIN). A reset before it, as in FIN-WAIT-2, is not,
            // as `TcpServer` counts it.
            let fin = matches!(socket.peek(0), Err(tcp::RecvError::Finished));
            self.lost = socket.send_queue() > 0 || !fin;
            self.end(now);
        } else if self.close_timed_out(socket, now, received) {
            // Only the ACK of our FIN missing loses nothing: the peer closed and
            // has every byte of ours, unless the session left some of the
            // peer's unread, which go with the socket.
            self.lost = socket.can_recv() || !awaits_only_fin_ack(socket);
            socket.abort();
            self.end(now);
        }
        self.ended_status()
    }

    fn ended_status(&self) -> Status {
        if self.lost {
            Status::Abort
        } else {
            self.session.status()
        }
    }

    fn end(&mut self, now: Instant) {
        if !self.ended {
            self.ended = true;
            self.session.end(now);
        }
    }

    /// When [`poll`](Self::poll) is due even with no traffic.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.started && !self.ended {
            let close_at = self
                .is_closing
                .then(|| self.closing.since.saturating_add(self.close_timeout));
            sooner(self.session.poll_timeout(), close_at)
        } else {
            None
        }
    }
}

impl<R: Request> TcpSession<R> {
    /// Drives a request: `Ready` with its outcome once done.
    pub fn poll_request(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: impl Into<Instant>,
    ) -> Result<Poll<R::Output>, HandleError> {
        self.poll(sockets, now)?;
        Ok(match self.session.outcome() {
            Some(output) => Poll::Ready(output),
            None => Poll::Pending,
        })
    }
}
