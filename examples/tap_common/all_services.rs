//! Every smolsock service on one stack, wired the way firmware would run them:
//! tcp/7 raw echo, udp/7 UDP echo, tcp/9000 framed echo (`struct.pack('!I', n)`
//! headers), tcp/80 HTTP with a live status page (it reloads itself and draws
//! each connection's socket buffers as bars, above the counters), and tcp/2121 file
//! transfer (`PROTOCOL.md`) from a directory on disk.
//!
//! Shared by `examples/tap_server.rs` and `tests/tap_services.rs` (through
//! `#[path]`), so the tests against the Linux kernel drive exactly the wiring a
//! newcomer runs. It lives beside the examples, not in the library, because it
//! allocates: pool sizes and buffer sizes are command-line flags here, so each
//! service is a `Vec` of one-slot [`TcpServer`]s (N one-slot servers on a port
//! behave as one N-slot server: smoltcp gives a SYN to whichever socket listens,
//! and the runner's listen backlog holds a SYN while none does) and every buffer
//! is a `Vec` made once at startup, never per packet. Firmware does the same with
//! const pool sizes and `static` buffers.
//!
//! Every connection's session sits in a [`Logged`] wrapper, which logs each
//! connection as it comes and goes.

// Each program that includes this file uses a different part of it.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, info};
use smolsock::http::{Bars, HttpResponder, HttpStats, LiveSite, Site};
use smolsock::net::{
    BacklogStats, DatagramHandler, End, ServerConfig, ServerError, ServerStats, Service, TcpServer,
    TftpServer, UdpEcho, UdpService, UdpStats,
};
use smolsock::runner::tap::{RunError, StopReport, TapBacked, TapRunner, TapStats};
use smolsock::session::{CHUNK, Echo, Framed, FramedEcho, FramedStats, Session, Status};
use smolsock::store::{DirLimits, DirStore, StoreError};
use smolsock::tftp::TftpStats;
use smolsock::transfer::{SetupError, SharedStore, TransferServer, TransferStats, UploadLease};
use smolsock::wire::frame::{FormatError, HeaderFormat};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// The primer's echo port, for TCP and UDP alike.
pub const ECHO_PORT: u16 = 7;
/// The framed echo: 4-byte big-endian length, then the body.
pub const FRAMED_PORT: u16 = 9000;
/// The status page.
pub const HTTP_PORT: u16 = 80;
/// File transfer (`PROTOCOL.md`).
pub const TRANSFER_PORT: u16 = 2121;
/// TFTP, from the same store as the file transfer.
pub const TFTP_PORT: u16 = smolsock::tftp::PORT;
/// TFTP transfers at once.
pub const TFTP_POOL: usize = 4;
/// The largest TFTP datagram: a 1468-byte block and its header, what fits a
/// 1500-byte Ethernet MTU over IPv4 (smoltcp here does not fragment).
pub const TFTP_DATAGRAM_MAX: usize = 1472;
/// The TAP link's MTU: IPv6 transfers get blocks 20 bytes smaller than IPv4's.
pub const TFTP_MTU: u16 = 1500;
/// Datagrams each TFTP socket can queue each way.
pub const TFTP_QUEUE: usize = 16;

/// The most transfer connections served at once: the store keeps one upload lease
/// per slot in a fixed array (a few dozen bytes each).
pub const TRANSFER_POOL_MAX: usize = 16;

/// The largest UDP datagram echoed. An Ethernet frame (MTU 1500) carries at most
/// 1472 bytes of UDP payload over IPv4 and 1452 over IPv6, and smoltcp here does
/// not reassemble IP fragments, so 1500 holds anything the link can deliver.
pub const UDP_DATAGRAM_MAX: usize = 1500;
/// Datagrams the UDP socket queues in each direction.
pub const UDP_QUEUE: usize = 8;
/// The longest HTTP request head accepted (a browser sends about 500 bytes).
pub const HTTP_REQUEST_MAX: usize = 2048;
/// The largest page the status site renders: the live page's head, up to
/// [`LIVE_ROWS`] connections with their buffer bars and the counters. (The plain
/// status page of the firmware fits in 2 KiB.)
pub const HTTP_PAGE_MAX: usize = 8192;
/// Connections drawn on the live status page; more are counted in one line.
pub const LIVE_ROWS: usize = 16;
/// Seconds between two reloads of the live status page.
pub const LIVE_REFRESH_SECS: u16 = 2;

/// Pool sizes, buffer sizes and limits of [`AllServices`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicesConfig {
    /// Raw echo connections served at once (0: no raw echo).
    pub echo_pool: usize,
    /// Framed echo connections served at once (0: no framed echo).
    pub framed_pool: usize,
    /// HTTP connections served at once (0: no HTTP).
    pub http_pool: usize,
    /// File transfer connections served at once, at most [`TRANSFER_POOL_MAX`]
    /// (0: no file transfer).
    pub transfer_pool: usize,
    /// Each TCP socket's receive buffer: the most the peer may send unread (the
    /// TCP window).
    pub rx_buf: usize,
    /// Each TCP socket's send buffer: the most queued for the peer, unacknowledged.
    pub tx_buf: usize,
    /// The largest framed-echo body; each framed slot keeps two frames of this
    /// plus the 4-byte header: one to gather a frame in, one to queue its echo
    /// while the socket is full.
    pub max_frame: u32,
    /// The largest transfer frame body the server accepts (announced in HELLO_OK,
    /// at least 128), and the largest it sends; each transfer slot keeps this plus
    /// 4 bytes of frame storage and as much again to stage the frame it sends.
    pub transfer_frame: u32,
    /// A TCP connection that moves no byte for this long is reset, freeing its slot.
    pub idle_timeout: Option<Duration>,
}

impl ServicesConfig {
    /// Four echo and framed slots, two HTTP slots, two transfer slots, 4 KiB
    /// socket buffers, frames up to 64 KiB (the transfer protocol's default too), a
    /// 60 s idle timeout.
    pub const DEFAULT: Self = Self {
        echo_pool: 4,
        framed_pool: 4,
        http_pool: 2,
        transfer_pool: 2,
        rx_buf: 4096,
        tx_buf: 4096,
        max_frame: 64 * 1024,
        transfer_frame: smolsock::wire::transfer::DEFAULT_MAX_BODY,
        idle_timeout: Some(Duration::from_secs(60)),
    };

    /// The memory these settings take, by kind.
    pub fn memory(&self) -> Memory {
        let tcp_sockets = self
            .echo_pool
            .saturating_add(self.framed_pool)
            .saturating_add(self.http_pool)
            .saturating_add(self.transfer_pool);
        // A framed slot's receive storage and send queue: a whole frame each.
        let frame_storage = (self.max_frame as usize)
            .saturating_add(4)
            .saturating_mul(2);
        let transfer_frame = (self.transfer_frame as usize).saturating_add(4);
        Memory {
            tcp_sockets,
            socket_buffers: tcp_sockets
                .saturating_mul(self.rx_buf.saturating_add(self.tx_buf))
                .saturating_add(UDP_QUEUE.saturating_mul(UDP_DATAGRAM_MAX).saturating_mul(2))
                .saturating_add(
                    (TFTP_POOL + 1)
                        .saturating_mul(TFTP_QUEUE)
                        .saturating_mul(TFTP_DATAGRAM_MAX)
                        .saturating_mul(2),
                ),
            frame_storage: self
                .framed_pool
                .saturating_mul(frame_storage)
                .saturating_add(self.transfer_pool.saturating_mul(transfer_frame)),
            handler_buffers: self
                .echo_pool
                .saturating_mul(CHUNK)
                .saturating_add(
                    self.http_pool
                        .saturating_mul(HTTP_REQUEST_MAX.saturating_add(HTTP_PAGE_MAX)),
                )
                .saturating_add(UDP_DATAGRAM_MAX)
                .saturating_add(self.transfer_pool.saturating_mul(transfer_frame)),
        }
    }
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What [`ServicesConfig`] allocates at startup: all the memory the services ever use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// TCP sockets (one per slot).
    pub tcp_sockets: usize,
    /// Bytes of socket buffers (TCP rx + tx per slot, the UDP queues).
    pub socket_buffers: usize,
    /// Bytes of frame storage (the framed echo's both sides, and the transfer's
    /// receive side).
    pub frame_storage: usize,
    /// Bytes inside the handlers (echo chunks, HTTP request and page, UDP datagram,
    /// the transfer's staging buffers).
    pub handler_buffers: usize,
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} TCP sockets + {} UDP sockets: {} KiB socket buffers, {} KiB frame storage, \
             {} KiB handler buffers",
            self.tcp_sockets,
            TFTP_POOL + 2,
            self.socket_buffers / 1024,
            self.frame_storage / 1024,
            self.handler_buffers / 1024
        )
    }
}

/// One service's pool of TCP slots, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Slots in the pool (`listen(N)`).
    pub slots: usize,
    /// Connections open now.
    pub open: usize,
    /// Accepted, closed, reset... summed over the slots.
    pub server: ServerStats,
}

impl PoolCounters {
    fn of<S: Session>(pool: &[Slot<S>]) -> Self {
        let mut sum = Self {
            slots: pool.len(),
            ..Self::default()
        };
        for slot in pool {
            let (s, t) = (&mut sum.server, slot.server.stats());
            for (total, count) in [
                (&mut s.accepted, t.accepted),
                (&mut s.closed, t.closed),
                (&mut s.resets, t.resets),
                (&mut s.idle_timeouts, t.idle_timeouts),
                (&mut s.handshake_timeouts, t.handshake_timeouts),
                (&mut s.close_timeouts, t.close_timeouts),
                (&mut s.aborted, t.aborted),
                (&mut s.discarded, t.discarded),
                (&mut s.relistens, t.relistens),
                (&mut s.missing_sockets, t.missing_sockets),
            ] {
                *total = total.saturating_add(count);
            }
            sum.open = sum.open.saturating_add(slot.server.active());
        }
        sum
    }
}

impl fmt::Display for PoolCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {} of {} open", self.server, self.open, self.slots)
    }
}

/// Every service's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// tcp/7 connections.
    pub echo: PoolCounters,
    /// Bytes the raw echo sent back.
    pub echo_bytes: u64,
    /// udp/7.
    pub udp: UdpStats,
    /// tcp/9000 connections.
    pub framed: PoolCounters,
    /// tcp/9000 bytes and frames, both directions.
    pub framed_stream: FramedStats,
    /// Frames the framed echo sent back.
    pub framed_echoed: u64,
    /// Framed streams that broke (oversize header, cut mid-frame).
    pub framed_errors: u64,
    /// tcp/80 connections.
    pub http: PoolCounters,
    /// tcp/80 requests and answers.
    pub http_requests: HttpStats,
    /// tcp/2121 connections.
    pub transfer: PoolCounters,
    /// tcp/2121 sessions, uploads, downloads, listings, errors.
    pub transfer_ops: TransferStats,
    /// tcp/2121 bytes and frames, both directions.
    pub transfer_stream: FramedStats,
    /// TFTP on udp/69: every transfer's counters, summed.
    pub tftp: TftpStats,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.http_requests;
        writeln!(
            f,
            "tcp/{ECHO_PORT}    echo         {}; {} B echoed",
            self.echo, self.echo_bytes
        )?;
        writeln!(f, "udp/{ECHO_PORT}    udp echo     {}", self.udp)?;
        writeln!(
            f,
            "tcp/{FRAMED_PORT} framed echo  {}; {} frames echoed, {} broken streams",
            self.framed, self.framed_echoed, self.framed_errors
        )?;
        writeln!(f, "                      {}", self.framed_stream)?;
        writeln!(
            f,
            "tcp/{HTTP_PORT}   http         {}; {} requests: {} ok, {} client errors, \
             {} server errors, {} incomplete",
            self.http, h.requests, h.ok, h.client_errors, h.server_errors, h.incomplete
        )?;
        writeln!(f, "tcp/{TRANSFER_PORT} transfer     {}", self.transfer)?;
        writeln!(f, "                      {}", self.transfer_ops)?;
        writeln!(f, "                      {}", self.transfer_stream)?;
        writeln!(f, "udp/{TFTP_PORT}   tftp         {}", self.tftp)
    }
}

/// The counters the status page shows, refreshed by the serving loop after every
/// poll. `Cell`s, because the page is rendered through a shared reference while
/// the services that own the counters are being polled.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Every service, as of the last poll.
    pub services: Cell<Counters>,
    /// The TAP device's frames and errors, when running on TAP.
    pub link: Cell<Option<TapStats>>,
    /// The listen backlog in front of the stack (SYNs held for a full pool), when
    /// the runner has one.
    pub backlog: Cell<Option<BacklogStats>>,
    /// Every open TCP connection and its buffers, as of the last poll (the list
    /// keeps its room from poll to poll).
    pub connections: RefCell<Vec<ConnectionFill>>,
}

/// One connection on the live status page: how full its socket buffers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionFill {
    /// The service's name.
    pub service: &'static str,
    /// The client.
    pub peer: IpEndpoint,
    /// Bytes received and not yet read, and the receive buffer's size.
    pub receive: (usize, usize),
    /// Bytes not yet sent or not yet acknowledged, and the send buffer's size.
    pub send: (usize, usize),
}

impl LiveCounters {
    /// The status text: one line per service, then the link and the backlog.
    pub fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{}", self.services.get())?;
        if let Some(link) = self.link.get() {
            writeln!(out, "link         tap          {link}")?;
        }
        match self.backlog.get() {
            Some(backlog) => writeln!(out, "backlog      tcp          {backlog}"),
            None => Ok(()),
        }
    }

    /// The live page's rows: one per open connection.
    pub fn write_connections(&self, bars: &mut Bars<'_>) -> fmt::Result {
        let Ok(connections) = self.connections.try_borrow() else {
            return Ok(());
        };
        for c in connections.iter() {
            // std's form: an IPv6 address in brackets before its port (smoltcp
            // writes none, and `fdaa::100:8080` is an address of its own).
            let peer = std::net::SocketAddr::new(c.peer.addr.into(), c.peer.port);
            bars.connection(c.service, &peer, c.receive, c.send)?;
        }
        Ok(())
    }
}

/// A [`Session`] that logs each connection's start and end at `info`, and
/// passes every call on to the session inside.
///
/// A session is told neither its peer nor how its connection ended, so the pool
/// around it tells the wrapper: the socket's peer before each poll
/// ([`set_peer`](Self::set_peer)), and how the connection that ended during the
/// poll ended ([`log_end`](Self::log_end), from the pool's counters).
pub struct Logged<S> {
    service: &'static str,
    port: u16,
    /// The peer of the slot's socket, as it was before the pool's poll.
    peer: Option<IpEndpoint>,
    /// The peer of the connection being served (or, once `ended`, last served).
    serving: Option<IpEndpoint>,
    /// The connection ended; its end is not logged yet.
    ended: bool,
    inner: S,
}

impl<S> Logged<S> {
    /// `inner`, logged as `service` on `port`.
    pub const fn new(service: &'static str, port: u16, inner: S) -> Self {
        Self {
            service,
            port,
            peer: None,
            serving: None,
            ended: false,
            inner,
        }
    }

    /// The session inside.
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    /// The peer of the socket the session serves, as the pool sees it now.
    pub fn set_peer(&mut self, peer: Option<IpEndpoint>) {
        self.peer = peer;
    }

    /// Logs the end of the connection that ended since the last call, if one did.
    pub fn log_end(&mut self, end: End) {
        if core::mem::take(&mut self.ended) {
            let peer = Self::shown(self.serving.take());
            info!("tcp/{} {}: {peer} {end}", self.port, self.service);
        }
    }

    /// The peer, as it is shown in the log.
    fn shown(peer: Option<IpEndpoint>) -> String {
        peer.map_or_else(|| "a peer".to_owned(), |peer| peer.to_string())
    }
}

impl<S: Session> Session for Logged<S> {
    fn start(&mut self, now: smolsock::time::Instant) {
        info!(
            "tcp/{} {}: {} connected",
            self.port,
            self.service,
            Self::shown(self.peer)
        );
        self.serving = self.peer;
        self.ended = false;
        self.inner.start(now);
    }

    fn receive(&mut self, input: &[u8], now: smolsock::time::Instant) -> usize {
        self.inner.receive(input, now)
    }

    fn receive_finished(&mut self, now: smolsock::time::Instant) {
        self.inner.receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: smolsock::time::Instant) -> usize {
        self.inner.transmit(space, now)
    }

    fn poll_timeout(&self) -> Option<smolsock::time::Instant> {
        self.inner.poll_timeout()
    }

    fn handle_timeout(&mut self, now: smolsock::time::Instant) {
        self.inner.handle_timeout(now);
    }

    fn status(&self) -> Status {
        self.inner.status()
    }

    fn end(&mut self, now: smolsock::time::Instant) {
        // How it ended is the pool's to say: logged by `log_end` after its poll.
        self.ended = true;
        self.inner.end(now);
    }

    fn no_delay(&self) -> bool {
        self.inner.no_delay()
    }

    fn drops_input(&self) -> bool {
        self.inner.drops_input()
    }
}

/// A [`DatagramHandler`] that logs each datagram at `debug` (UDP has no
/// connections to log, and a flood at `info` would bury everything else).
pub struct LoggedDatagrams<H>(pub H);

impl<H: DatagramHandler> DatagramHandler for LoggedDatagrams<H> {
    fn on_datagram(&mut self, buf: &mut [u8], len: usize, from: IpEndpoint) -> Option<usize> {
        debug!("udp/{ECHO_PORT} udp echo: {len} B from {from}");
        self.0.on_datagram(buf, len, from)
    }
}

/// One slot of a service: a one-slot server on its own socket, its session
/// logged.
pub struct Slot<S> {
    handle: SocketHandle,
    server: TcpServer<Logged<S>, 1>,
}

impl<S: Session> Slot<S> {
    /// A slot serving `port` on the socket `handle` (listening at once), its
    /// session logged as `service`.
    fn new(
        sockets: &mut SocketSet<'_>,
        (service, port): (&'static str, u16),
        handle: SocketHandle,
        session: S,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        let logged = Logged::new(service, port, session);
        let server = TcpServer::new(sockets, port, [handle], [logged])?.with_config(config);
        Ok(Self { handle, server })
    }

    /// The session, for its counters.
    fn session(&self) -> &S {
        let [logged] = self.server.sessions();
        logged.inner()
    }
}

/// How the one connection of a one-slot server that ended between two readings
/// of its counters ended.
fn end_between(before: &ServerStats, after: &ServerStats) -> Option<End> {
    [
        (before.closed, after.closed, End::Closed),
        (before.resets, after.resets, End::Reset),
        (before.idle_timeouts, after.idle_timeouts, End::IdleTimeout),
        (before.aborted, after.aborted, End::Aborted),
        (
            before.close_timeouts,
            after.close_timeouts,
            End::CloseTimeout,
        ),
    ]
    .into_iter()
    .find(|(before, after, _)| after > before)
    .map(|(_, _, end)| end)
}

impl<S: Session> Service for Slot<S> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let peer = sockets
            .iter()
            .find(|(handle, _)| *handle == self.handle)
            .and_then(|(_, socket)| tcp::Socket::downcast(socket))
            .and_then(tcp::Socket::remote_endpoint);
        let [logged] = self.server.sessions_mut();
        logged.set_peer(peer);
        let before = *self.server.stats();
        self.server.poll(sockets, now);
        if let Some(end) = end_between(&before, self.server.stats()) {
            let [logged] = self.server.sessions_mut();
            logged.log_end(end);
        }
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        self.server.poll_at(sockets)
    }
}

type EchoSlot = Slot<Echo>;
type FramedSlot = Slot<Framed<FramedEcho, Vec<u8>, Vec<u8>>>;
type HttpPage<'a> = HttpResponder<'a, dyn Site + 'a, HTTP_REQUEST_MAX, HTTP_PAGE_MAX>;
type HttpSlot<'a> = Slot<HttpPage<'a>>;
type TransferSlot<'a> = Slot<TransferServer<'a, DirStore, Vec<u8>>>;

/// The directory the transfer service serves, shared by its slots, with one
/// upload lease per possible slot.
pub type TransferStore = SharedStore<DirStore, [UploadLease; TRANSFER_POOL_MAX]>;

/// Opens `root` (created if missing) as the transfer service's store.
pub fn open_transfer_store(root: &Path) -> Result<TransferStore, ServeError> {
    std::fs::create_dir_all(root).map_err(|e| ServeError::Root(e.kind()))?;
    let store = DirStore::open(root, DirLimits::DEFAULT).map_err(ServeError::Store)?;
    Ok(SharedStore::new(
        store,
        [UploadLease::EMPTY; TRANSFER_POOL_MAX],
    ))
}

/// Every service on one stack, as one [`Service`]: poll it and all of them run.
pub struct AllServices<'a> {
    echo: Vec<EchoSlot>,
    udp: UdpService<LoggedDatagrams<UdpEcho>, UDP_DATAGRAM_MAX>,
    framed: Vec<FramedSlot>,
    http: Vec<HttpSlot<'a>>,
    transfer: Vec<TransferSlot<'a>>,
    tftp: Box<TftpServer<'a, DirStore, TFTP_POOL, TFTP_DATAGRAM_MAX>>,
    transfer_store: &'a TransferStore,
    live: &'a LiveCounters,
}

impl<'a> AllServices<'a> {
    /// Adds every service's sockets to `sockets` (allocating all their buffers now)
    /// and builds the services, every TCP socket listening; `site` is the HTTP
    /// status page, which should show `live`, refreshed after every poll, and
    /// `transfer_store` the directory the file transfer serves. Fails only if
    /// `config.max_frame` is not a valid frame length, `config.transfer_frame` is
    /// under 128, `config.transfer_pool` is over [`TRANSFER_POOL_MAX`], or a
    /// socket cannot listen.
    pub fn new(
        config: &ServicesConfig,
        sockets: &mut SocketSet<'_>,
        site: &'a (dyn Site + 'a),
        live: &'a LiveCounters,
        transfer_store: &'a TransferStore,
    ) -> Result<Self, ServeError> {
        if config.transfer_pool > TRANSFER_POOL_MAX {
            return Err(ServeError::TransferPool(config.transfer_pool));
        }
        let format = HeaderFormat::NETWORK
            .with_max_len(config.max_frame)
            .map_err(ServeError::Frame)?;
        let stream = ServerConfig {
            idle_timeout: config.idle_timeout.map(Into::into),
            ..ServerConfig::DEFAULT
        };
        // The framed echo, the HTTP responder and the transfer server ask for no
        // delay (`Session::no_delay`): the server turns Nagle and delayed ACK off
        // on each of their connections.
        let tcp_socket = |sockets: &mut SocketSet<'_>| {
            sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; config.rx_buf]),
                tcp::SocketBuffer::new(vec![0; config.tx_buf]),
            ))
        };
        let echo = (0..config.echo_pool)
            .map(|_| {
                let handle = tcp_socket(sockets);
                Slot::new(sockets, ("echo", ECHO_PORT), handle, Echo::new(), stream)
            })
            .collect::<Result<_, _>>()
            .map_err(ServeError::Server)?;
        let framed = (0..config.framed_pool)
            .map(|_| {
                let storage = || vec![0u8; format.max_frame_len()];
                let session = Framed::new(FramedEcho::new(), storage(), storage(), format)
                    .map_err(ServeError::Frame)?;
                let handle = tcp_socket(sockets);
                Slot::new(
                    sockets,
                    ("framed echo", FRAMED_PORT),
                    handle,
                    session,
                    stream,
                )
                .map_err(ServeError::Server)
            })
            .collect::<Result<_, _>>()?;
        let http = (0..config.http_pool)
            .map(|_| {
                let handle = tcp_socket(sockets);
                Slot::new(
                    sockets,
                    ("http", HTTP_PORT),
                    handle,
                    HttpPage::new(site),
                    stream,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(ServeError::Server)?;
        // The store is `SharedStore<_, [_; N]>`; each slot holds it as the
        // unsized `SharedStore<_, [_]>` that counts its leases at run time.
        let shared: &'a SharedStore<DirStore> = transfer_store;
        // Frames up to `transfer_frame` both ways: the receive storage and the
        // staging buffer each hold one, header included.
        let frame = (config.transfer_frame as usize).saturating_add(4);
        let transfer = (0..config.transfer_pool)
            .map(|_| {
                let session = TransferServer::new(shared, vec![0u8; frame], vec![0u8; frame])
                    .map_err(ServeError::Transfer)?;
                let handle = tcp_socket(sockets);
                Slot::new(
                    sockets,
                    ("transfer", TRANSFER_PORT),
                    handle,
                    session,
                    stream,
                )
                .map_err(ServeError::Server)
            })
            .collect::<Result<_, _>>()?;
        let udp_buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_QUEUE],
                vec![0; UDP_QUEUE * UDP_DATAGRAM_MAX],
            )
        };
        let udp_handle = sockets.add(udp::Socket::new(udp_buffer(), udp_buffer()));
        let udp = UdpService::new(udp_handle, ECHO_PORT, LoggedDatagrams(UdpEcho));
        // TFTP serves the transfer's directory: the same files, the same name
        // checks, the same leases (a name being uploaded one way is busy the other).
        let tftp_buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; TFTP_QUEUE],
                vec![0; TFTP_QUEUE * TFTP_DATAGRAM_MAX],
            )
        };
        let mut tftp_socket = || sockets.add(udp::Socket::new(tftp_buffer(), tftp_buffer()));
        let tftp_listen = tftp_socket();
        let tftp_slots = [(); TFTP_POOL].map(|()| tftp_socket());
        let tftp = Box::new(
            TftpServer::new(
                tftp_listen,
                tftp_slots,
                shared,
                smolsock::tftp::ServerConfig {
                    max_block_size: smolsock::tftp::ServerConfig::block_size_for(TFTP_DATAGRAM_MAX),
                    ..smolsock::tftp::ServerConfig::DEFAULT
                },
            )
            .with_mtu(TFTP_MTU),
        );
        Ok(Self {
            echo,
            udp,
            framed,
            http,
            transfer,
            tftp,
            transfer_store,
            live,
        })
    }

    /// Every service's counters now.
    pub fn counters(&self) -> Counters {
        let mut framed_stream = FramedStats::default();
        let (mut framed_echoed, mut framed_errors) = (0u64, 0u64);
        for slot in &self.framed {
            let framed = slot.session();
            framed_stream.accumulate(&framed.stats());
            framed_echoed = framed_echoed.saturating_add(framed.handler().frames);
            framed_errors = framed_errors.saturating_add(framed.handler().errors);
        }
        let mut http_requests = HttpStats::default();
        for slot in &self.http {
            http_requests.accumulate(slot.session().stats());
        }
        let mut transfer_stream = FramedStats::default();
        for slot in &self.transfer {
            transfer_stream.accumulate(&slot.session().framed_stats());
        }
        Counters {
            echo: PoolCounters::of(&self.echo),
            echo_bytes: self
                .echo
                .iter()
                .map(|slot| slot.session().bytes)
                .fold(0, u64::saturating_add),
            udp: *self.udp.stats(),
            framed: PoolCounters::of(&self.framed),
            framed_stream,
            framed_echoed,
            framed_errors,
            http: PoolCounters::of(&self.http),
            http_requests,
            transfer: PoolCounters::of(&self.transfer),
            transfer_ops: self.transfer_store.stats(),
            transfer_stream,
            tftp: self.tftp.stats(),
        }
    }

    /// Notes every open TCP connection's buffers for the live page.
    fn note_connections(&self, sockets: &SocketSet<'_>) {
        let Ok(mut list) = self.live.connections.try_borrow_mut() else {
            return;
        };
        list.clear();
        let echo = self.echo.iter().map(|s| ("echo", s.handle));
        let framed = self.framed.iter().map(|s| ("framed echo", s.handle));
        let http = self.http.iter().map(|s| ("http", s.handle));
        let transfer = self.transfer.iter().map(|s| ("transfer", s.handle));
        for (service, handle) in echo.chain(framed).chain(http).chain(transfer) {
            let socket = sockets.get::<tcp::Socket>(handle);
            if let Some(peer) = socket.remote_endpoint() {
                list.push(ConnectionFill {
                    service,
                    peer,
                    receive: (socket.recv_queue(), socket.recv_capacity()),
                    send: (socket.send_queue(), socket.send_capacity()),
                });
            }
        }
    }

    fn each_mut(&mut self) -> impl Iterator<Item = &mut dyn Service> {
        let echo = self.echo.iter_mut().map(|s| s as &mut dyn Service);
        let framed = self.framed.iter_mut().map(|s| s as &mut dyn Service);
        let http = self.http.iter_mut().map(|s| s as &mut dyn Service);
        let transfer = self.transfer.iter_mut().map(|s| s as &mut dyn Service);
        echo.chain(core::iter::once(&mut self.udp as &mut dyn Service))
            .chain(framed)
            .chain(http)
            .chain(transfer)
            .chain(core::iter::once(&mut *self.tftp as &mut dyn Service))
    }

    fn each(&self) -> impl Iterator<Item = &dyn Service> {
        let echo = self.echo.iter().map(|s| s as &dyn Service);
        let framed = self.framed.iter().map(|s| s as &dyn Service);
        let http = self.http.iter().map(|s| s as &dyn Service);
        let transfer = self.transfer.iter().map(|s| s as &dyn Service);
        echo.chain(core::iter::once(&self.udp as &dyn Service))
            .chain(framed)
            .chain(http)
            .chain(transfer)
            .chain(core::iter::once(&*self.tftp as &dyn Service))
    }
}

impl Service for AllServices<'_> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        for service in self.each_mut() {
            service.poll(sockets, now);
        }
        self.live.services.set(self.counters());
        self.note_connections(sockets);
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        self.each()
            .filter_map(|service| service.poll_at(sockets))
            .min()
    }
}

/// How a [`serve`] run ended.
#[derive(Clone, Copy, Debug)]
pub struct ServeReport {
    /// How the connections open at the stop were closed.
    pub stop: StopReport,
    /// Every service's counters at the end.
    pub counters: Counters,
    /// The TAP device's counters at the end.
    pub link: TapStats,
    /// The listen backlog's counters at the end (`None`: the runner had none).
    pub backlog: Option<BacklogStats>,
}

impl fmt::Display for ServeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.counters)?;
        writeln!(f, "link         tap          {}", self.link)?;
        if let Some(backlog) = self.backlog {
            writeln!(f, "backlog      tcp          {backlog}")?;
        }
        write!(f, "at stop: {}", self.stop)
    }
}

/// Why [`serve`] ended early.
#[derive(Debug)]
pub enum ServeError {
    /// `max_frame` is not a valid frame length.
    Frame(FormatError),
    /// `transfer_frame` is too small for the transfer protocol.
    Transfer(SetupError),
    /// `transfer_pool` is over [`TRANSFER_POOL_MAX`].
    TransferPool(usize),
    /// The transfer directory cannot be created.
    Root(std::io::ErrorKind),
    /// The transfer directory cannot be opened as a store.
    Store(StoreError),
    /// A service's socket cannot listen.
    Server(ServerError),
    /// The TAP device failed (deleted, or its descriptor unusable).
    Run(RunError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "bad --max-frame: {e}"),
            Self::Transfer(e) => write!(f, "bad --transfer-frame: {e}"),
            Self::TransferPool(n) => {
                write!(f, "--transfer-pool {n} is over {TRANSFER_POOL_MAX}")
            }
            Self::Root(kind) => write!(f, "cannot create the --root directory: {kind}"),
            Self::Store(e) => write!(f, "cannot open the --root directory: {e}"),
            Self::Server(e) => write!(f, "cannot start a service: {e}"),
            Self::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs every service on `runner` until `stop` is set, then closes the
/// connections gracefully and reports.
///
/// The file transfer serves the directory `transfer_root`, created if missing.
/// `ready` is called once the services have been polled once (every port is
/// listening). Between polls the loop sleeps until the next frame or timer, but no
/// longer than `stop_check`, so an idle server costs no CPU and still notices
/// `stop` soon.
pub fn serve<D: TapBacked>(
    runner: &mut TapRunner<'_, D>,
    config: &ServicesConfig,
    transfer_root: &Path,
    stop_check: Duration,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<ServeReport, ServeError> {
    let transfer_store = open_transfer_store(transfer_root)?;
    let live = LiveCounters::default();
    let status = |out: &mut dyn fmt::Write| live.write(out);
    let connections = |bars: &mut Bars<'_>| live.write_connections(bars);
    let site = LiveSite::new("smolsock tap_server", &status, &connections)
        .with_refresh(LIVE_REFRESH_SECS)
        .with_max_rows(LIVE_ROWS);
    let mut services =
        AllServices::new(config, runner.sockets_mut(), &site, &live, &transfer_store)?;
    let mut ready = Some(ready);
    while !stop.load(Ordering::Relaxed) {
        let delay = runner.poll(&mut [&mut services]);
        live.link.set(Some(runner.tap_stats()));
        live.backlog.set(runner.backlog_stats());
        if let Some(ready) = ready.take() {
            ready();
        }
        let delay = delay.map_or(stop_check, |d| d.min(stop_check));
        runner.wait(Some(delay)).map_err(ServeError::Run)?;
    }
    info!("stopping: closing connections");
    let stop = runner.shutdown().map_err(ServeError::Run)?;
    Ok(ServeReport {
        stop,
        counters: services.counters(),
        link: runner.tap_stats(),
        backlog: runner.backlog_stats(),
    })
}
