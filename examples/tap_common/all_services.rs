//! Every smolsock service on one stack, wired the way firmware would run them:
//! tcp/7 raw echo, udp/7 UDP echo, tcp/9000 framed echo (`struct.pack('!I', n)`
//! headers), tcp/80 HTTP with a status page of live counters, and tcp/2121 file
//! transfer (`PROTOCOL.md`) from a directory on disk.
//!
//! Shared by `examples/tap_server.rs` and `tests/tap_services.rs` (through
//! `#[path]`), so the tests against the Linux kernel drive exactly the wiring a
//! newcomer runs. It lives beside the examples, not in the library, because it
//! allocates: pool sizes and buffer sizes are command-line flags here, so each
//! service is a `Vec` of one-slot [`TcpServer`]s (N one-slot servers on a port
//! behave as one N-slot server: smoltcp gives a SYN to whichever socket listens)
//! and every buffer is a `Vec` made once at startup, never per packet. Firmware
//! does the same with const pool sizes and `static` buffers.

// Each program that includes this file uses a different part of it.
#![allow(dead_code)]

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, info};
use smolsock::net::{
    Connection, DatagramHandler, End, Flow, Framed, Handler, ServerConfig, ServerStats, Service,
    StreamStats, TcpServer, UdpService, UdpStats,
};
use smolsock::runner::tap::{RunError, StopReport, TapBacked, TapRunner, TapStats};
use smolsock::service::echo::Echo;
use smolsock::service::framed_echo::FramedEcho;
use smolsock::service::http::{HttpResponder, HttpStats, StatusSite};
use smolsock::service::transfer::{
    SetupError, SharedStore, TransferServer, TransferStats, UploadLease,
};
use smolsock::service::udp_echo::UdpEcho;
use smolsock::store::{DirLimits, DirStore, StoreError};
use smolsock::wire::frame::{FormatError, HeaderFormat};
use smoltcp::iface::SocketSet;
use smoltcp::socket::{tcp, udp};
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
/// The largest page the status site renders.
pub const HTTP_PAGE_MAX: usize = 4096;

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
    /// The largest framed-echo body; each framed slot keeps this plus the 4-byte
    /// header of frame storage.
    pub max_frame: u32,
    /// The largest transfer frame body the server accepts (announced in HELLO_OK,
    /// at least 128); each transfer slot keeps this plus 4 bytes of frame storage
    /// and as much again to stage the frame it sends.
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
        let frame_storage = (self.max_frame as usize).saturating_add(4);
        let transfer_body = self.transfer_frame as usize;
        Memory {
            tcp_sockets,
            socket_buffers: tcp_sockets
                .saturating_mul(self.rx_buf.saturating_add(self.tx_buf))
                .saturating_add(UDP_QUEUE.saturating_mul(UDP_DATAGRAM_MAX).saturating_mul(2)),
            frame_storage: self
                .framed_pool
                .saturating_mul(frame_storage)
                .saturating_add(
                    self.transfer_pool
                        .saturating_mul(transfer_body.saturating_add(4)),
                ),
            handler_buffers: self
                .echo_pool
                .saturating_mul(smolsock::service::echo::CHUNK)
                .saturating_add(
                    self.http_pool
                        .saturating_mul(HTTP_REQUEST_MAX.saturating_add(HTTP_PAGE_MAX)),
                )
                .saturating_add(UDP_DATAGRAM_MAX)
                .saturating_add(self.transfer_pool.saturating_mul(transfer_body)),
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
    /// Bytes of frame storage (framed echo, and the transfer's receive side).
    pub frame_storage: usize,
    /// Bytes inside the handlers (echo chunks, HTTP request and page, UDP datagram,
    /// the transfer's staging buffers).
    pub handler_buffers: usize,
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} TCP sockets + 1 UDP socket: {} KiB socket buffers, {} KiB frame storage, \
             {} KiB handler buffers",
            self.tcp_sockets,
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
    fn of<H: Handler>(pool: &[TcpServer<H, 1>]) -> Self {
        let mut sum = Self {
            slots: pool.len(),
            ..Self::default()
        };
        for server in pool {
            let (s, t) = (&mut sum.server, server.stats());
            s.accepted = s.accepted.saturating_add(t.accepted);
            s.closed = s.closed.saturating_add(t.closed);
            s.resets = s.resets.saturating_add(t.resets);
            s.idle_timeouts = s.idle_timeouts.saturating_add(t.idle_timeouts);
            s.aborted = s.aborted.saturating_add(t.aborted);
            s.relistens = s.relistens.saturating_add(t.relistens);
            sum.open = sum.open.saturating_add(server.active());
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
    pub framed_stream: StreamStats,
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
    pub transfer_stream: StreamStats,
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
        writeln!(f, "                      {}", self.transfer_stream)
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
}

impl LiveCounters {
    /// The status text: one line per service, then the link.
    pub fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{}", self.services.get())?;
        match self.link.get() {
            Some(link) => writeln!(out, "link         tap          {link}"),
            None => Ok(()),
        }
    }
}

/// A [`Handler`] that logs each connection's start and end at `info`.
pub struct Logged<H> {
    service: &'static str,
    port: u16,
    peer: Option<IpEndpoint>,
    inner: H,
}

impl<H> Logged<H> {
    /// `inner`, logged as `service` on `port`.
    pub const fn new(service: &'static str, port: u16, inner: H) -> Self {
        Self {
            service,
            port,
            peer: None,
            inner,
        }
    }

    /// The handler inside.
    pub const fn inner(&self) -> &H {
        &self.inner
    }
}

impl<H: Handler> Handler for Logged<H> {
    fn setup(&mut self, peer: IpEndpoint, now: Instant) {
        info!("tcp/{} {}: {peer} connected", self.port, self.service);
        self.peer = Some(peer);
        self.inner.setup(peer, now);
    }

    fn configure_socket(&mut self, socket: &mut tcp::Socket<'_>) {
        self.inner.configure_socket(socket);
    }

    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        self.inner.on_data(conn)
    }

    fn finish(&mut self, end: End) {
        if let Some(peer) = self.peer.take() {
            info!("tcp/{} {}: {peer} {end}", self.port, self.service);
        }
        self.inner.finish(end);
    }

    fn wants_to_send(&self) -> bool {
        self.inner.wants_to_send()
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

type EchoSlot = TcpServer<Logged<Echo>, 1>;
type FramedSlot = TcpServer<Logged<Framed<FramedEcho, Vec<u8>>>, 1>;
type HttpPage<'a> = HttpResponder<'a, StatusSite<'a>, HTTP_REQUEST_MAX, HTTP_PAGE_MAX>;
type HttpSlot<'a> = TcpServer<Logged<HttpPage<'a>>, 1>;
type TransferSlot<'a> = TcpServer<Logged<TransferServer<'a, DirStore, Vec<u8>>>, 1>;

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
    transfer_store: &'a TransferStore,
    live: &'a LiveCounters,
}

impl<'a> AllServices<'a> {
    /// Adds every service's sockets to `sockets` (allocating all their buffers now)
    /// and builds the services; `site` is the HTTP status page, which should show
    /// `live`, refreshed after every poll, and `transfer_store` the directory the
    /// file transfer serves. Fails only if `config.max_frame` is not a valid frame
    /// length, `config.transfer_frame` is under 128, or `config.transfer_pool` is
    /// over [`TRANSFER_POOL_MAX`].
    pub fn new(
        config: &ServicesConfig,
        sockets: &mut SocketSet<'_>,
        site: &'a StatusSite<'a>,
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
            idle_timeout: config.idle_timeout,
            ..ServerConfig::DEFAULT
        };
        // The framed echo and the transfer server set their own socket options on
        // each connection (Nagle and delayed ACK off: `FramedStream::configure`).
        let mut tcp_socket = || {
            sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; config.rx_buf]),
                tcp::SocketBuffer::new(vec![0; config.tx_buf]),
            ))
        };
        let echo = (0..config.echo_pool)
            .map(|_| {
                TcpServer::new(
                    ECHO_PORT,
                    [tcp_socket()],
                    [Logged::new("echo", ECHO_PORT, Echo::new())],
                )
                .with_config(stream)
            })
            .collect();
        let framed = (0..config.framed_pool)
            .map(|_| {
                let storage = vec![0u8; format.max_frame_len()];
                let handler = Framed::new(FramedEcho::new(), storage, format)?;
                Ok(TcpServer::new(
                    FRAMED_PORT,
                    [tcp_socket()],
                    [Logged::new("framed echo", FRAMED_PORT, handler)],
                )
                .with_config(stream))
            })
            .collect::<Result<_, FormatError>>()
            .map_err(ServeError::Frame)?;
        let http = (0..config.http_pool)
            .map(|_| {
                TcpServer::new(
                    HTTP_PORT,
                    [tcp_socket()],
                    [Logged::new("http", HTTP_PORT, HttpPage::new(site))],
                )
                .with_config(stream)
            })
            .collect();
        // The store is `SharedStore<_, [_; N]>`; each slot holds it as the
        // unsized `SharedStore<_, [_]>` that counts its leases at run time.
        let shared: &'a SharedStore<DirStore> = transfer_store;
        let body = config.transfer_frame as usize;
        let transfer = (0..config.transfer_pool)
            .map(|_| {
                let receive = vec![0u8; body.saturating_add(4)];
                let handler = TransferServer::new(shared, receive, vec![0u8; body])?;
                Ok(TcpServer::new(
                    TRANSFER_PORT,
                    [tcp_socket()],
                    [Logged::new("transfer", TRANSFER_PORT, handler)],
                )
                .with_config(stream))
            })
            .collect::<Result<_, SetupError>>()
            .map_err(ServeError::Transfer)?;
        let udp_buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_QUEUE],
                vec![0; UDP_QUEUE * UDP_DATAGRAM_MAX],
            )
        };
        let udp_handle = sockets.add(udp::Socket::new(udp_buffer(), udp_buffer()));
        let udp = UdpService::new(udp_handle, ECHO_PORT, LoggedDatagrams(UdpEcho));
        Ok(Self {
            echo,
            udp,
            framed,
            http,
            transfer,
            transfer_store,
            live,
        })
    }

    /// Every service's counters now.
    pub fn counters(&self) -> Counters {
        let mut framed_stream = StreamStats::default();
        let (mut framed_echoed, mut framed_errors) = (0u64, 0u64);
        for server in &self.framed {
            for slot in server.handlers() {
                let framed = slot.inner();
                framed_stream.accumulate(&framed.stats());
                framed_echoed = framed_echoed.saturating_add(framed.handler().frames);
                framed_errors = framed_errors.saturating_add(framed.handler().errors);
            }
        }
        let mut http_requests = HttpStats::default();
        for server in &self.http {
            for slot in server.handlers() {
                http_requests.accumulate(slot.inner().stats());
            }
        }
        let mut transfer_stream = StreamStats::default();
        for server in &self.transfer {
            for slot in server.handlers() {
                transfer_stream.accumulate(&slot.inner().stream_stats());
            }
        }
        Counters {
            echo: PoolCounters::of(&self.echo),
            echo_bytes: self
                .echo
                .iter()
                .flat_map(|server| server.handlers())
                .map(|slot| slot.inner().bytes)
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
    }
}

impl Service for AllServices<'_> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        for service in self.each_mut() {
            service.poll(sockets, now);
        }
        self.live.services.set(self.counters());
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
}

impl fmt::Display for ServeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.counters)?;
        writeln!(f, "link         tap          {}", self.link)?;
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
    let site = StatusSite::new("smolsock tap_server", &status);
    let mut services =
        AllServices::new(config, runner.sockets_mut(), &site, &live, &transfer_store)?;
    let mut ready = Some(ready);
    while !stop.load(Ordering::Relaxed) {
        let delay = runner.poll(&mut [&mut services]);
        live.link.set(Some(runner.tap_stats()));
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
    })
}
