//! [`TcpServer`]: Python's `socketserver`, on a fixed pool of smoltcp sockets.
//!
//! smoltcp has no accept queue: a socket in `LISTEN` becomes the connection when a
//! SYN arrives. So `N` sockets listening on one port *are* `listen(N)`: up to `N`
//! connections are served at once, and a SYN finding no listening socket is refused
//! by the stack with a RST, never left hanging.
//!
//! Each socket (a *slot*) is paired with a [`Handler`], the equivalent of
//! `socketserver.BaseRequestHandler`: [`setup`](Handler::setup) when a connection
//! arrives, [`on_data`](Handler::on_data) whenever it can make progress (the body of
//! `handle()`), [`finish`](Handler::finish) when it ends, however it ends. When a
//! connection ends the slot listens again at once, with no wait for `TIME-WAIT`:
//! the lesson of `SO_REUSEADDR`.
//!
//! One misbehaving peer never stalls the others: every slot is polled every time,
//! handlers never block, and a peer that stays silent (or never reads) past the
//! idle timeout is reset to free its slot.
//!
//! For length-framed protocols, [`Framed`] turns a [`FrameHandler`] (which sees
//! whole frames via [`on_frame`](FrameHandler::on_frame)) into a [`Handler`].

use core::fmt;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use super::Service;
use super::stream::{FrameTx, FramedStream, RecvError, SendError, StreamStats};
use crate::time::later;
use crate::wire::frame::{FormatError, HeaderFormat, ReadError};

/// What a handler wants after doing its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Flow {
    /// Carry on. (For [`FrameHandler::on_frame`]: the frame is dealt with.)
    Continue,
    /// Back-pressure: the reply does not fit yet. For
    /// [`FrameHandler::on_frame`], the same frame is offered again on a later poll.
    Wait,
    /// Close the connection gracefully (FIN after what is queued).
    Close,
    /// Reset the connection at once (RST): for peers that broke the protocol.
    Abort,
}

impl Flow {
    /// The flow for the result of a send: done, wait for space, or give up.
    pub fn from_send(result: Result<(), SendError>) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(SendError::WouldBlock) => Flow::Wait,
            Err(SendError::NotConnected) => Flow::Close,
            Err(SendError::Frame(_)) => Flow::Abort,
        }
    }
}

/// How a connection ended, as told to [`Handler::finish`].
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
    /// The handler asked for a reset ([`Flow::Abort`]).
    Aborted,
    /// The peer did not finish closing within the idle timeout; the server reset it.
    CloseTimeout,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Closed => "closed",
            End::Reset => "reset by peer",
            End::IdleTimeout => "idle timeout",
            End::Aborted => "aborted by handler",
            End::CloseTimeout => "close timed out",
        })
    }
}

/// One accepted connection, as a [`Handler`] sees it: `self.request` of
/// `socketserver`, with counters.
pub struct Connection<'a, 's> {
    socket: &'a mut tcp::Socket<'s>,
    peer: IpEndpoint,
    now: Instant,
    moved: usize,
}

impl<'a, 's> Connection<'a, 's> {
    /// The peer's address and port.
    pub fn peer(&self) -> IpEndpoint {
        self.peer
    }

    /// The time of this poll.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Reads up to `buf.len()` bytes (Python's `recv(len(buf))`); 0 if none waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.socket.recv_slice(buf).unwrap_or(0);
        self.moved = self.moved.saturating_add(n);
        n
    }

    /// Queues as much of `data` as fits in the send buffer and returns how much:
    /// Python's `send`. Loop over later polls for `sendall`.
    pub fn send(&mut self, data: &[u8]) -> usize {
        let n = self.socket.send_slice(data).unwrap_or(0);
        self.moved = self.moved.saturating_add(n);
        n
    }

    /// Free bytes in the send buffer.
    pub fn send_space(&self) -> usize {
        self.socket
            .send_capacity()
            .saturating_sub(self.socket.send_queue())
    }

    /// Bytes waiting in the receive buffer.
    pub fn recv_waiting(&self) -> usize {
        self.socket.recv_queue()
    }

    /// Whether the peer has closed its sending side and everything it sent was read.
    pub fn peer_finished(&self) -> bool {
        !self.socket.may_recv() && self.socket.recv_queue() == 0
    }

    /// The socket itself, for anything the methods above do not cover.
    pub fn socket(&mut self) -> &mut tcp::Socket<'s> {
        self.socket
    }

    /// Counts bytes moved through [`socket`](Self::socket) directly, so the idle
    /// timer knows the connection is alive.
    pub fn mark_progress(&mut self, bytes: usize) {
        self.moved = self.moved.saturating_add(bytes);
    }
}

/// Per-connection behaviour: `socketserver.BaseRequestHandler`, poll-driven.
///
/// A server keeps one handler per slot and reuses it: `setup` must reset any state
/// left from the previous connection.
pub trait Handler {
    /// A connection arrived from `peer`.
    fn setup(&mut self, _peer: IpEndpoint, _now: Instant) {}

    /// Sets the socket options this protocol wants on a connection just
    /// accepted, after [`ServerConfig`]'s. [`Framed`] (and the transfer server)
    /// call [`FramedStream::configure`]: Nagle and delayed ACK off. A handler
    /// that wraps another must pass this on, as every other hook.
    fn configure_socket(&mut self, _socket: &mut tcp::Socket<'_>) {}

    /// The connection may have data to read or room to write: do what can be done
    /// now, without waiting, and say how to go on. Called on every poll while the
    /// connection is open; return [`Flow::Close`] to close it.
    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow;

    /// The connection ended; the slot will listen again.
    fn finish(&mut self, _end: End) {}

    /// Whether the handler still has bytes to write once the peer has finished
    /// sending. The server closes a half-closed connection only when this is false
    /// and the send buffer has drained.
    fn wants_to_send(&self) -> bool {
        false
    }
}

/// A handler behind a `&mut` serves like the handler itself, every hook included:
/// a firmware keeps each handler in a `static` and gives the server
/// `&'static mut` references to them.
impl<H: Handler + ?Sized> Handler for &mut H {
    fn setup(&mut self, peer: IpEndpoint, now: Instant) {
        (**self).setup(peer, now);
    }

    fn configure_socket(&mut self, socket: &mut tcp::Socket<'_>) {
        (**self).configure_socket(socket);
    }

    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        (**self).on_data(conn)
    }

    fn finish(&mut self, end: End) {
        (**self).finish(end);
    }

    fn wants_to_send(&self) -> bool {
        (**self).wants_to_send()
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
    /// Silent peers reset after the idle timeout, handshakes that never
    /// completed (a peer gone after its SYN, a forged SYN) included.
    pub idle_timeouts: u64,
    /// Connections the handler aborted (bad input).
    pub aborted: u64,
    /// Times a slot went back to listening.
    pub relistens: u64,
}

impl fmt::Display for ServerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} closed, {} reset, {} idle timeouts, {} aborted",
            self.accepted, self.closed, self.resets, self.idle_timeouts, self.aborted
        )
    }
}

/// Settings of a [`TcpServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// A connection that moves no byte for this long is reset, freeing its slot;
    /// so is a handshake that does not complete in this time.
    /// `None` keeps silent peers forever (not advised: one can hold a slot).
    pub idle_timeout: Option<Duration>,
    /// Nagle's algorithm on accepted sockets (smoltcp's default is on). A handler
    /// may then set its own options ([`Handler::configure_socket`]): framed
    /// handlers turn Nagle off whatever this says.
    pub nagle: bool,
}

impl ServerConfig {
    /// Idle timeout 60 s, Nagle on.
    pub const DEFAULT: Self = Self {
        idle_timeout: Some(Duration::from_secs(60)),
        nagle: true,
    };
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Not listening: before the first poll, or after a connection ended.
    Idle,
    /// A RST is on its way out; listening now would cancel it.
    Aborting,
    /// Listening; `handshake_since` is when a SYN arrived and the handshake began.
    Listening { handshake_since: Option<Instant> },
    Active {
        peer: IpEndpoint,
        last_progress: Instant,
    },
    /// We closed; waiting for the peer to finish closing.
    Closing { since: Instant },
}

/// `N` sockets serving one port, each with its own [`Handler`].
///
/// ```
/// use smoltcp::iface::{SocketSet, SocketStorage};
/// use smoltcp::socket::tcp;
/// use smoltcp::time::Instant;
/// use smolsock::net::{Service, TcpServer};
/// use smolsock::service::echo::Echo;
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
/// // listen(2) on port 7: two clients at once, a third gets a RST.
/// let mut echo = TcpServer::new(7, [h1, h2], [Echo::new(), Echo::new()]);
/// echo.poll(&mut sockets, Instant::ZERO);
/// assert!(sockets.get::<tcp::Socket>(h1).is_listening());
/// ```
pub struct TcpServer<H, const N: usize> {
    port: u16,
    config: ServerConfig,
    handles: [SocketHandle; N],
    handlers: [H; N],
    states: [SlotState; N],
    stats: ServerStats,
}

impl<H: Handler, const N: usize> TcpServer<H, N> {
    /// A server on `port` over the sockets `handles` (one per slot, each with its
    /// own buffers) and their `handlers`. Sockets start listening on the first poll.
    pub const fn new(port: u16, handles: [SocketHandle; N], handlers: [H; N]) -> Self {
        Self {
            port,
            config: ServerConfig::DEFAULT,
            handles,
            handlers,
            states: [SlotState::Idle; N],
            stats: ServerStats {
                accepted: 0,
                closed: 0,
                resets: 0,
                idle_timeouts: 0,
                aborted: 0,
                relistens: 0,
            },
        }
    }

    /// The same server with other settings.
    pub const fn with_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The port served.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The counters so far.
    pub const fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, SlotState::Active { .. } | SlotState::Closing { .. }))
            .count()
    }

    /// The handlers, for reading their own counters.
    pub fn handlers(&self) -> &[H; N] {
        &self.handlers
    }

    /// Closes every connection gracefully (FIN after what is queued) and stops
    /// listening: for a clean shutdown. Keep polling until [`active`](Self::active)
    /// is 0 or your patience ends.
    pub fn close_all(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        for (handle, state) in self.handles.iter().zip(self.states.iter_mut()) {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            match state {
                SlotState::Active { .. } => {
                    socket.close();
                    *state = SlotState::Closing { since: now };
                }
                // No connection yet: drop the listener (and any handshake under
                // way, with a RST), or the slot would try to listen on port 0.
                SlotState::Listening { .. } => {
                    socket.abort();
                    *state = SlotState::Aborting;
                }
                SlotState::Idle | SlotState::Aborting | SlotState::Closing { .. } => {}
            }
        }
        self.port = 0;
    }
}

/// One slot's share of a server poll.
struct SlotPoll<'a, H> {
    port: u16,
    config: &'a ServerConfig,
    stats: &'a mut ServerStats,
    handler: &'a mut H,
    state: &'a mut SlotState,
    now: Instant,
}

impl<H: Handler> SlotPoll<'_, H> {
    fn run(&mut self, socket: &mut tcp::Socket<'_>) {
        match *self.state {
            SlotState::Idle | SlotState::Aborting if self.port == 0 => {}
            SlotState::Aborting => *self.state = SlotState::Idle,
            SlotState::Idle => self.listen(socket),
            SlotState::Listening { handshake_since } => {
                if !socket.is_open() {
                    // The handshake failed (RST in SYN-RECEIVED): listen again.
                    self.listen(socket);
                } else if socket.may_send() || socket.state() == tcp::State::CloseWait {
                    self.accept(socket);
                } else if socket.state() == tcp::State::SynReceived {
                    self.handshake(socket, handshake_since.unwrap_or(self.now));
                } else {
                    // Back in LISTEN (smoltcp returns there on a RST in SYN-RECEIVED).
                    *self.state = SlotState::Listening {
                        handshake_since: None,
                    };
                }
            }
            SlotState::Active {
                peer,
                last_progress,
            } => self.serve(socket, peer, last_progress),
            SlotState::Closing { since } => {
                if !socket.is_active() || socket.state() == tcp::State::TimeWait {
                    // Our FIN is acknowledged. TIME-WAIT would hold this socket for
                    // 10 s; the next client needs it now (SO_REUSEADDR), so drop it.
                    socket.abort();
                    self.end(End::Closed);
                    *self.state = SlotState::Aborting;
                } else if self
                    .config
                    .idle_timeout
                    .is_some_and(|t| self.now >= later(since, t))
                {
                    socket.abort();
                    self.end(End::CloseTimeout);
                    *self.state = SlotState::Aborting;
                }
            }
        }
    }

    fn listen(&mut self, socket: &mut tcp::Socket<'_>) {
        if socket.is_open() {
            socket.abort();
            *self.state = SlotState::Aborting;
            return;
        }
        match socket.listen(self.port) {
            Ok(()) => {
                *self.state = SlotState::Listening {
                    handshake_since: None,
                };
                self.stats.relistens = self.stats.relistens.saturating_add(1);
            }
            Err(e) => log::warn!("tcp/{}: cannot listen: {e}", self.port),
        }
    }

    /// A handshake under way since `since`. smoltcp retransmits its SYN-ACK for
    /// ever, so a peer that vanished after its SYN (or a forged source address)
    /// would hold the slot for good: past the idle timeout the slot gives up.
    fn handshake(&mut self, socket: &mut tcp::Socket<'_>, since: Instant) {
        if self
            .config
            .idle_timeout
            .is_some_and(|t| self.now >= later(since, t))
        {
            log::info!(
                "tcp/{}: handshake never completed, listening again",
                self.port
            );
            socket.abort();
            self.stats.idle_timeouts = self.stats.idle_timeouts.saturating_add(1);
            *self.state = SlotState::Aborting;
        } else {
            *self.state = SlotState::Listening {
                handshake_since: Some(since),
            };
        }
    }

    fn accept(&mut self, socket: &mut tcp::Socket<'_>) {
        let Some(peer) = socket.remote_endpoint() else {
            return;
        };
        socket.set_nagle_enabled(self.config.nagle);
        self.handler.configure_socket(socket);
        self.stats.accepted = self.stats.accepted.saturating_add(1);
        log::debug!("tcp/{}: accepted {peer}", self.port);
        self.handler.setup(peer, self.now);
        self.serve(socket, peer, self.now);
    }

    fn serve(&mut self, socket: &mut tcp::Socket<'_>, peer: IpEndpoint, last_progress: Instant) {
        if !socket.is_active() {
            // Reset by the peer, or the stack gave up retransmitting.
            self.end(End::Reset);
            self.listen(socket);
            return;
        }
        let mut conn = Connection {
            socket,
            peer,
            now: self.now,
            moved: 0,
        };
        let flow = self.handler.on_data(&mut conn);
        let moved = conn.moved;
        let last_progress = if moved > 0 { self.now } else { last_progress };
        *self.state = SlotState::Active {
            peer,
            last_progress,
        };
        match flow {
            Flow::Abort => {
                socket.abort();
                self.end(End::Aborted);
                *self.state = SlotState::Aborting;
                return;
            }
            Flow::Close => {
                socket.close();
                *self.state = SlotState::Closing { since: self.now };
                return;
            }
            Flow::Continue | Flow::Wait => {}
        }
        // Half-closed by the peer and nothing more to say: close our side too.
        let peer_done = !socket.may_recv() && socket.recv_queue() == 0;
        if peer_done && moved == 0 && socket.send_queue() == 0 && !self.handler.wants_to_send() {
            socket.close();
            *self.state = SlotState::Closing { since: self.now };
        } else if self
            .config
            .idle_timeout
            .is_some_and(|t| self.now >= later(last_progress, t))
        {
            log::info!("tcp/{}: {peer} idle, resetting", self.port);
            socket.abort();
            self.end(End::IdleTimeout);
            *self.state = SlotState::Aborting;
        }
    }

    fn end(&mut self, end: End) {
        let counter = match end {
            End::Closed => &mut self.stats.closed,
            End::Reset => &mut self.stats.resets,
            End::IdleTimeout | End::CloseTimeout => &mut self.stats.idle_timeouts,
            End::Aborted => &mut self.stats.aborted,
        };
        *counter = counter.saturating_add(1);
        log::debug!("tcp/{}: connection {end}", self.port);
        self.handler.finish(end);
        *self.state = SlotState::Idle;
    }
}

impl<H: Handler, const N: usize> Service for TcpServer<H, N> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let slots = self
            .handles
            .iter()
            .zip(self.handlers.iter_mut())
            .zip(self.states.iter_mut());
        for ((handle, handler), state) in slots {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            SlotPoll {
                port: self.port,
                config: &self.config,
                stats: &mut self.stats,
                handler,
                state,
                now,
            }
            .run(socket);
        }
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        let timeout = self.config.idle_timeout;
        self.states
            .iter()
            .filter_map(|state| match *state {
                SlotState::Active { last_progress, .. } => timeout.map(|t| later(last_progress, t)),
                SlotState::Closing { since } => timeout.map(|t| later(since, t)),
                SlotState::Listening {
                    handshake_since: Some(since),
                } => timeout.map(|t| later(since, t)),
                // Listen again as soon as the RST is out.
                SlotState::Idle | SlotState::Aborting if self.port != 0 => Some(Instant::ZERO),
                SlotState::Idle | SlotState::Aborting | SlotState::Listening { .. } => None,
            })
            .min()
    }
}

/// Per-connection behaviour for a length-framed protocol: sees whole frames.
pub trait FrameHandler {
    /// A connection arrived from `peer`; reset any state from the last one.
    fn setup(&mut self, _peer: IpEndpoint, _now: Instant) {}

    /// A whole frame arrived. Reply through `out`. Return [`Flow::Wait`] if the
    /// reply does not fit yet: the same frame is offered again on a later poll
    /// (pass the same reply body to [`FrameOut::send`], which remembers how far it got).
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_, '_>) -> Flow;

    /// Called on every poll once no frame is waiting: for handlers that send on
    /// their own initiative (a download streaming a file).
    fn on_idle(&mut self, _out: &mut FrameOut<'_, '_>) -> Flow {
        Flow::Continue
    }

    /// The stream broke: an oversize header (the connection is then reset), or a
    /// frame cut short by the peer's close.
    fn on_error(&mut self, _error: ReadError) {}

    /// The connection ended.
    fn finish(&mut self, _end: End) {}

    /// Whether the handler still has frames to send after the peer finished.
    fn wants_to_send(&self) -> bool {
        false
    }
}

/// The sending side of a framed connection, as a [`FrameHandler`] sees it.
pub struct FrameOut<'a, 's> {
    socket: &'a mut tcp::Socket<'s>,
    tx: &'a mut FrameTx,
    peer: IpEndpoint,
    now: Instant,
}

impl FrameOut<'_, '_> {
    /// Sends `body` as one frame, `sendall`-style (see [`FramedStream::send_frame`]).
    pub fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        self.tx.send(self.socket, body)
    }

    /// Sends `body` only if the whole frame fits now (see [`FramedStream::try_send_frame`]).
    pub fn try_send(&mut self, body: &[u8]) -> Result<(), SendError> {
        self.tx.try_send(self.socket, body)
    }

    /// Free bytes in the socket's send buffer.
    pub fn send_space(&self) -> usize {
        self.socket
            .send_capacity()
            .saturating_sub(self.socket.send_queue())
    }

    /// Whether a frame is half written (a [`send`](Self::send) returned `WouldBlock`).
    pub fn send_pending(&self) -> bool {
        self.tx.pending()
    }

    /// The largest body a frame may carry.
    pub fn max_len(&self) -> usize {
        self.tx.format().max_len() as usize
    }

    /// The peer's address and port.
    pub fn peer(&self) -> IpEndpoint {
        self.peer
    }

    /// The time of this poll.
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// Adapts a [`FrameHandler`] to a [`Handler`]: owns the connection's
/// [`FramedStream`] (frame storage `B`) and feeds the handler whole frames.
pub struct Framed<F, B> {
    handler: F,
    stream: FramedStream<B>,
    broken: bool,
}

impl<F: FrameHandler, B: AsRef<[u8]> + AsMut<[u8]>> Framed<F, B> {
    /// `handler` behind frames in `format`, received into `storage`.
    pub fn new(handler: F, storage: B, format: HeaderFormat) -> Result<Self, FormatError> {
        Ok(Self {
            handler,
            stream: FramedStream::new(storage, format)?,
            broken: false,
        })
    }

    /// The frame handler.
    pub fn handler(&self) -> &F {
        &self.handler
    }

    /// Counters of every connection this slot has served, the current one included.
    pub fn stats(&self) -> StreamStats {
        self.stream.stats()
    }
}

impl<F: FrameHandler, B: AsRef<[u8]> + AsMut<[u8]>> Handler for Framed<F, B> {
    fn setup(&mut self, peer: IpEndpoint, now: Instant) {
        self.stream.reset();
        self.broken = false;
        self.handler.setup(peer, now);
    }

    fn configure_socket(&mut self, socket: &mut tcp::Socket<'_>) {
        FramedStream::<B>::configure(socket);
    }

    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        let peer = conn.peer;
        let now = conn.now;
        let before = self.stream.stats();
        let flow = loop {
            let socket = &mut *conn.socket;
            let fill = if self.stream.has_frame() {
                Ok(0)
            } else {
                self.stream.fill(socket)
            };
            if let Err(error) = fill {
                break self.broke(error);
            }
            let (reader, tx) = self.stream.split();
            let mut out = FrameOut {
                socket,
                tx,
                peer,
                now,
            };
            let Some(frame) = reader.frame() else {
                // No whole frame: the peer may have ended the stream mid-frame.
                if out.socket.may_recv() || out.socket.recv_queue() > 0 {
                    break self.handler.on_idle(&mut out);
                }
                let finish = reader.finish();
                let flow = self.handler.on_idle(&mut out);
                if let Err(error) = finish {
                    break self.broke(RecvError::Frame(error));
                }
                break flow;
            };
            match self.handler.on_frame(frame, &mut out) {
                Flow::Continue => reader.consume(),
                other => break other,
            }
        };
        let after = self.stream.stats();
        conn.mark_progress(
            usize::try_from(
                after
                    .read
                    .bytes
                    .saturating_sub(before.read.bytes)
                    .saturating_add(after.write.bytes.saturating_sub(before.write.bytes)),
            )
            .unwrap_or(usize::MAX),
        );
        flow
    }

    fn finish(&mut self, end: End) {
        self.handler.finish(end);
    }

    fn wants_to_send(&self) -> bool {
        // A frame still held is a reply still owed: the handler said Wait on it.
        self.stream.send_pending() || self.stream.has_frame() || self.handler.wants_to_send()
    }
}

impl<F: FrameHandler, B: AsRef<[u8]> + AsMut<[u8]>> Framed<F, B> {
    /// A broken stream: tell the handler once, reset on oversize (the bytes that
    /// follow are not frames), let a truncated stream close.
    fn broke(&mut self, error: RecvError) -> Flow {
        match error {
            RecvError::Frame(e) => {
                if !self.broken {
                    self.broken = true;
                    self.handler.on_error(e);
                }
                match e {
                    ReadError::Oversize { .. } => Flow::Abort,
                    _ => Flow::Close,
                }
            }
            RecvError::Finished | RecvError::NotConnected => Flow::Close,
        }
    }
}
