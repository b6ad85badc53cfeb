//! Every smolsock service on one stack, as `tap_server` runs them, with every
//! buffer a `static`:
//!
//! | port | service | pool | socket buffers (rx + tx) | session memory |
//! |---|---|---:|---|---|
//! | tcp/7 | raw echo ([`Echo`]) | 1 | 2 KiB + 2 KiB | 1 KiB `recv` buffer |
//! | udp/7 | UDP echo ([`UdpEcho`]) | - | 4 datagrams / 2 KiB each way | one 1500-byte datagram |
//! | tcp/9000 | framed echo ([`StreamingEcho`], 4-byte big-endian header, bodies up to 64 KiB) | 2 | 2 KiB + 2 KiB | 512 B queue, no frame storage |
//! | tcp/80 | HTTP ([`HttpResponder`] + `StatusSite`, or `LiveSite` with `--features live`: `live.rs`) | 2 | 1 KiB + 512 | 1 KiB request, 3.6 KiB page (6 KiB live) |
//! | tcp/2121 | file transfer ([`TransferServer`]) to a [`RamStore`] | 2 | 2 KiB + 2 KiB | 1 KiB + 4 receive, 1 KiB + 4 staging |
//!
//! The library's sessions are used as they are; this module only gives them
//! memory and sockets, and keeps the counters the status page shows. The file
//! store (3 MiB, in `.store`, outside the 64 KiB budget: see `link/memory.x`) holds a
//! 1 MiB file and a second 1 MiB upload of the same name, which the store keeps
//! as a partial until it commits.
//!
//! The pools are small (one raw echo connection at a time); the listen backlog in
//! front of the stack (`main.rs`) holds a SYN that finds its pool busy until a
//! slot listens again, so clients beyond the pool wait their turn instead of
//! being refused.

use core::cell::Cell;
use core::fmt;
use core::mem::MaybeUninit;

use cortex_m::interrupt::Mutex;
use lan9118::Stats as LinkStats;
use smolsock::http::{HttpResponder, HttpStats};
use smolsock::net::{
    BacklogStats, ServerConfig, ServerError, ServerStats, Service, TcpServer, UdpEcho, UdpService,
    UdpStats,
};
use smolsock::session::{Echo, Session, StreamingEcho};
use smolsock::store::RamStore;
use smolsock::transfer::{SetupError, SharedStore, TransferServer, TransferStats, UploadLease};
use smolsock::wire::frame::HeaderFormat;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use static_cell::{ConstStaticCell, StaticCell};

use crate::live::{self, Site, Slots};

/// The primer's echo port, TCP and UDP.
pub const ECHO_PORT: u16 = 7;
/// Framed echo: `struct.pack('!I', len)` then the body.
pub const FRAMED_PORT: u16 = 9000;
/// The status page (or the live page).
pub const HTTP_PORT: u16 = 80;
/// File transfer (PROTOCOL.md).
pub const TRANSFER_PORT: u16 = 2121;

pub const ECHO_POOL: usize = 1;
pub const ECHO_RX: usize = 2048;
pub const ECHO_TX: usize = 2048;

pub const UDP_PACKETS: usize = 4;
pub const UDP_PAYLOAD: usize = 2048;
/// The largest datagram echoed: more than a 1500-byte Ethernet frame can carry.
pub const UDP_DATAGRAM_MAX: usize = 1500;

pub const FRAMED_POOL: usize = 2;
pub const FRAMED_RX: usize = 2048;
pub const FRAMED_TX: usize = 2048;
/// The largest framed-echo body: 64 KiB, as `tap_server`'s. No buffer holds a
/// frame: the echo sends each piece of a body back as it arrives.
pub const FRAMED_MAX_BODY: u32 = 64 * 1024;
/// The framed echo's queue per slot: header and body pieces on their way back
/// out, whatever the frame's size.
pub const FRAMED_QUEUE: usize = 512;
/// The framed echo's frames: a 4-byte big-endian length, bodies up to
/// [`FRAMED_MAX_BODY`] (checked when the firmware compiles).
const FRAMED_FORMAT: HeaderFormat = match HeaderFormat::NETWORK.with_max_len(FRAMED_MAX_BODY) {
    Ok(format) => format,
    Err(_) => panic!("FRAMED_MAX_BODY does not fit a 4-byte header"),
};

pub const HTTP_POOL: usize = 2;
pub const HTTP_RX: usize = 1024;
/// The responder renders the page into its own buffer and feeds the socket over
/// several polls, so the send buffer can stay small.
pub const HTTP_TX: usize = 512;
pub const HTTP_REQUEST_MAX: usize = 1024;
pub const HTTP_PAGE_MAX: usize = live::PAGE_MAX;

pub const TRANSFER_POOL: usize = 2;
pub const TRANSFER_RX: usize = 2048;
pub const TRANSFER_TX: usize = 2048;
/// Receive storage per slot: the largest body the server announces in HELLO_OK
/// is this minus the 4-byte header.
pub const TRANSFER_RECEIVE: usize = 1024 + 4;
/// Staging per slot: one outgoing frame, header included (a DATA frame: 4-byte
/// length, 9-byte DATA header, file bytes).
pub const TRANSFER_STAGING: usize = 1024 + 4;
/// Entries (files and partial uploads) the store holds.
pub const STORE_FILES: usize = 8;
/// Bytes of the store's arena: a 1 MiB file, a 1 MiB re-upload of it (a
/// partial until it commits), and room to spare.
pub const STORE_BYTES: usize = 3 * 1024 * 1024;

/// TCP sockets of all pools.
pub const TCP_SLOTS: usize = ECHO_POOL + FRAMED_POOL + HTTP_POOL + TRANSFER_POOL;
/// TCP sockets of all pools, plus the UDP socket.
pub const SOCKET_COUNT: usize = TCP_SLOTS + 1;

/// The deadlines that free a slot whatever its peer does (the library's: 20 s to
/// finish a handshake, 60 s idle, 20 s to finish closing), and Nagle on for the
/// raw echo (the other sessions ask for no delay, which turns it off for them).
const SERVER_CONFIG: ServerConfig = ServerConfig::DEFAULT;

pub type Store = RamStore<STORE_FILES, STORE_BYTES>;
type Shared = SharedStore<Store, [UploadLease; TRANSFER_POOL]>;
type Buffer = &'static mut [u8];
type FramedSession = StreamingEcho<Buffer>;
type HttpPage = HttpResponder<'static, Site<'static>, HTTP_REQUEST_MAX, HTTP_PAGE_MAX>;
type TransferSession = TransferServer<'static, Store, Buffer>;
pub type EchoServer = TcpServer<&'static mut Echo, ECHO_POOL>;
pub type UdpEchoService = UdpService<UdpEcho, UDP_DATAGRAM_MAX>;
pub type FramedServer = TcpServer<&'static mut FramedSession, FRAMED_POOL>;
pub type HttpServer = TcpServer<&'static mut HttpPage, HTTP_POOL>;
pub type TransferPool = TcpServer<&'static mut TransferSession, TRANSFER_POOL>;

/// A zeroed byte buffer in `.bss`.
macro_rules! buffer {
    ($name:ident, $len:expr) => {
        static $name: ConstStaticCell<[u8; $len]> = ConstStaticCell::new([0; $len]);
    };
}

buffer!(ECHO_RX_BUF, ECHO_POOL * ECHO_RX);
buffer!(ECHO_TX_BUF, ECHO_POOL * ECHO_TX);
buffer!(UDP_RX_PAYLOAD, UDP_PAYLOAD);
buffer!(UDP_TX_PAYLOAD, UDP_PAYLOAD);
buffer!(FRAMED_RX_BUF, FRAMED_POOL * FRAMED_RX);
buffer!(FRAMED_TX_BUF, FRAMED_POOL * FRAMED_TX);
buffer!(FRAMED_QUEUE_BUF, FRAMED_POOL * FRAMED_QUEUE);
buffer!(HTTP_RX_BUF, HTTP_POOL * HTTP_RX);
buffer!(HTTP_TX_BUF, HTTP_POOL * HTTP_TX);
buffer!(TRANSFER_RX_BUF, TRANSFER_POOL * TRANSFER_RX);
buffer!(TRANSFER_TX_BUF, TRANSFER_POOL * TRANSFER_TX);
buffer!(TRANSFER_RECEIVE_BUF, TRANSFER_POOL * TRANSFER_RECEIVE);
buffer!(TRANSFER_STAGING_BUF, TRANSFER_POOL * TRANSFER_STAGING);

static UDP_RX_META: StaticCell<[udp::PacketMetadata; UDP_PACKETS]> = StaticCell::new();
static UDP_TX_META: StaticCell<[udp::PacketMetadata; UDP_PACKETS]> = StaticCell::new();
// The sessions (HTTP's request and page, echo's `recv` buffer, the transfer's
// framing state, the framed echo's reader and frame deadline) live in statics
// of their own and the servers hold a pointer to each (a `&'static mut`):
// built in place, they never pass through the stack, and no code moves them.
static ECHO_SESSIONS: ConstStaticCell<[Echo; ECHO_POOL]> =
    ConstStaticCell::new([const { Echo::new() }; ECHO_POOL]);
static FRAMED_SESSIONS: StaticCell<[MaybeUninit<FramedSession>; FRAMED_POOL]> = StaticCell::new();
static HTTP_SESSIONS: StaticCell<[MaybeUninit<HttpPage>; HTTP_POOL]> = StaticCell::new();
static TRANSFER_SESSIONS: StaticCell<[MaybeUninit<TransferSession>; TRANSFER_POOL]> =
    StaticCell::new();
static ECHO: StaticCell<EchoServer> = StaticCell::new();
static UDP: StaticCell<UdpEchoService> = StaticCell::new();
static FRAMED: StaticCell<FramedServer> = StaticCell::new();
static SITE: StaticCell<Site<'static>> = StaticCell::new();
static HTTP: StaticCell<HttpServer> = StaticCell::new();
static TRANSFER: StaticCell<TransferPool> = StaticCell::new();

/// The file store, in its own region above the 64 KiB budget (`link/memory.x`).
///
/// Its initial value is all zero bytes (an empty `RamStore` is), so it costs no
/// flash: the section name starts with `.sbss.`, which makes it `NOBITS`, and
/// the compiler refuses the build should the value ever have a non-zero byte.
/// `link/memory.x` puts it, alone, in the `.store` output section of the STORE
/// region, `NOLOAD`: [`clear_store_region`] zeroes it before it is taken.
#[allow(unsafe_code)]
#[unsafe(link_section = ".sbss.store")]
static STORE: ConstStaticCell<Shared> = ConstStaticCell::new(SharedStore::new(
    RamStore::new(),
    [UploadLease::EMPTY; TRANSFER_POOL],
));

/// What the status page shows, refreshed after every poll. The page is rendered
/// through a plain function (the site wants a `'static` one here), which
/// reads this.
static LIVE: Mutex<Cell<Option<Counters>>> = Mutex::new(Cell::new(None));

/// Every service's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub echo: Pool,
    pub echo_bytes: u64,
    pub udp: UdpStats,
    pub framed: Pool,
    pub framed_frames: u64,
    pub framed_errors: u64,
    pub http: Pool,
    pub http_requests: HttpStats,
    pub transfer: Pool,
    pub transfer_stats: TransferStats,
    pub link: LinkStats,
    pub backlog: BacklogStats,
    pub uptime: Duration,
}

/// One pool's connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pool {
    pub slots: usize,
    pub open: usize,
    pub server: ServerStats,
}

impl Pool {
    fn of<S: Session, const N: usize>(server: &TcpServer<S, N>) -> Self {
        Self {
            slots: N,
            open: server.active(),
            server: *server.stats(),
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {} of {} open", self.server, self.open, self.slots)
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.http_requests;
        let l = &self.link;
        writeln!(
            f,
            "tcp/{ECHO_PORT}     echo         {}; {} B echoed",
            self.echo, self.echo_bytes
        )?;
        writeln!(f, "udp/{ECHO_PORT}     udp echo     {}", self.udp)?;
        writeln!(
            f,
            "tcp/{FRAMED_PORT}  framed echo  {}; {} frames echoed, {} broken streams",
            self.framed, self.framed_frames, self.framed_errors
        )?;
        writeln!(
            f,
            "tcp/{HTTP_PORT}    http         {}; {} requests: {} ok, {} client errors, \
             {} server errors, {} incomplete",
            self.http, h.requests, h.ok, h.client_errors, h.server_errors, h.incomplete
        )?;
        writeln!(
            f,
            "tcp/{TRANSFER_PORT}  transfer     {}; {}",
            self.transfer, self.transfer_stats
        )?;
        writeln!(
            f,
            "link      lan9118      {} frames in, {} out; rx errors {}, too long {}, \
             dropped {}; tx errors {}, dropped {}",
            l.rx_frames,
            l.tx_frames,
            l.rx_errors,
            l.rx_too_long,
            l.rx_dropped,
            l.tx_errors,
            l.tx_dropped
        )?;
        writeln!(f, "backlog   tcp          {}", self.backlog)?;
        writeln!(f, "uptime    {} s", self.uptime.secs())
    }
}

/// The title of the status page.
pub const TITLE: &str = "smolsock firmware";

/// The most bytes the counters' text takes, every counter at its largest (a
/// `u64` of 20 digits): what the status pages leave room for. The self-test
/// checks it.
#[cfg(any(feature = "selftest", feature = "live"))]
pub const STATUS_WIDEST: usize = 3456;

/// The status text of the HTTP page: the counters as of the last poll.
fn render_status(out: &mut dyn fmt::Write) -> fmt::Result {
    let counters = cortex_m::interrupt::free(|cs| LIVE.borrow(cs).get());
    write_status(counters.as_ref(), out)
}

/// The status text: `counters` (none yet: "starting"), and the stack's
/// high-water mark.
pub fn write_status(counters: Option<&Counters>, out: &mut dyn fmt::Write) -> fmt::Result {
    match counters {
        Some(counters) => write!(out, "{counters}")?,
        None => out.write_str("starting\n")?,
    }
    let (used, size) = crate::stack::high_water();
    writeln!(out, "stack     {used} B of {size} B used at most")
}

/// Zeroes the store's `NOLOAD` region, which nothing else initialises (on a real
/// board it holds whatever the RAM powered up with), so the `StaticCell` in it
/// starts unused. Call once, before [`AllServices::new`].
#[allow(unsafe_code)]
pub fn clear_store_region() {
    unsafe extern "C" {
        static mut __sstore: u32;
        static mut __estore: u32;
    }
    let start = core::ptr::addr_of_mut!(__sstore);
    let end = core::ptr::addr_of_mut!(__estore);
    let words = (end as usize).saturating_sub(start as usize) / 4;
    // SAFETY: `link/memory.x` defines `__sstore..__estore` as the `.store` output
    // section, word-aligned, inside the STORE region, and only `STORE` lives
    // there; nothing has referenced it yet (this runs once, at boot, before
    // `STORE` is taken), so no reference is invalidated.
    unsafe { core::ptr::write_bytes(start, 0, words) };
}

/// Every service on one stack; poll it and all run.
pub struct AllServices {
    pub echo: &'static mut EchoServer,
    pub udp: &'static mut UdpEchoService,
    pub framed: &'static mut FramedServer,
    pub http: &'static mut HttpServer,
    pub transfer: &'static mut TransferPool,
    pub store: &'static Shared,
    /// Every TCP slot's socket, for the live page (nothing without it).
    slots: Slots,
    started: Option<Instant>,
}

/// Why the services could not be built.
#[derive(Clone, Copy, Debug)]
pub enum SetupFailure {
    /// A static was taken already ([`AllServices::new`] runs once).
    Taken(&'static str),
    /// A session refused its buffers.
    Buffers(&'static str),
    /// A pool's sockets could not listen.
    Listen(u16, ServerError),
    /// The transfer server refused its buffers.
    Transfer(SetupError),
}

impl fmt::Display for SetupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Taken(what) => write!(f, "{what} taken twice"),
            Self::Buffers(what) => write!(f, "{what}: buffers too small"),
            Self::Listen(port, e) => write!(f, "tcp/{port}: {e}"),
            Self::Transfer(e) => write!(f, "tcp/{TRANSFER_PORT}: {e}"),
        }
    }
}

/// Splits a static buffer into `N` equal chunks.
fn chunks<const N: usize>(buffer: &'static mut [u8]) -> [&'static mut [u8]; N] {
    let len = buffer.len() / N;
    let mut rest = buffer;
    core::array::from_fn(|_| {
        let (chunk, tail) = core::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        chunk
    })
}

/// Builds `N` sessions with `make`, each straight into its place in `cell`.
fn place<S, const N: usize>(
    cell: &'static StaticCell<[MaybeUninit<S>; N]>,
    mut make: impl FnMut() -> Result<S, SetupFailure>,
) -> Result<[&'static mut S; N], SetupFailure> {
    let taken = SetupFailure::Taken("a pool's sessions");
    let mut places = cell
        .try_init([const { MaybeUninit::uninit() }; N])
        .ok_or(taken)?
        .iter_mut();
    try_array(|| Ok(places.next().ok_or(taken)?.write(make()?)))
}

/// `N` values from `make`, or the first error.
fn try_array<T, const N: usize>(
    mut make: impl FnMut() -> Result<T, SetupFailure>,
) -> Result<[T; N], SetupFailure> {
    let mut values = heapless::Vec::<T, N>::new();
    for _ in 0..N {
        if values.push(make()?).is_err() {
            return Err(SetupFailure::Taken("a pool's sessions"));
        }
    }
    values
        .into_array()
        .map_err(|_| SetupFailure::Taken("a pool's sessions"))
}

fn tcp_sockets<const N: usize>(
    sockets: &mut SocketSet<'static>,
    rx: &'static mut [u8],
    tx: &'static mut [u8],
) -> [SocketHandle; N] {
    let mut rx = chunks::<N>(rx).into_iter();
    let mut tx = chunks::<N>(tx).into_iter();
    core::array::from_fn(|_| {
        let rx = rx.next().unwrap_or_default();
        let tx = tx.next().unwrap_or_default();
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        // Acknowledge at once: with receive windows of a segment or two, a delayed
        // ACK (smoltcp waits 10 ms) would stall the sender on every segment. (The
        // sessions that ask for no delay get this from the pool too; the raw echo
        // does not ask.)
        socket.set_ack_delay(None);
        sockets.add(socket)
    })
}

/// The value in `cell`, taken (once), or [`SetupFailure::Taken`].
fn take<T>(
    cell: &'static ConstStaticCell<T>,
    what: &'static str,
) -> Result<&'static mut T, SetupFailure> {
    cell.try_take().ok_or(SetupFailure::Taken(what))
}

/// Puts `value` in `cell`, or [`SetupFailure::Taken`].
fn init<T>(
    cell: &'static StaticCell<T>,
    value: T,
    what: &'static str,
) -> Result<&'static mut T, SetupFailure> {
    cell.try_init(value).ok_or(SetupFailure::Taken(what))
}

/// A server on `port` over `handles`, listening, with the firmware's deadlines.
fn listen<S: Session, const N: usize>(
    sockets: &mut SocketSet<'static>,
    port: u16,
    handles: [SocketHandle; N],
    sessions: [S; N],
) -> Result<TcpServer<S, N>, SetupFailure> {
    TcpServer::new(sockets, port, handles, sessions)
        .map(|server| server.with_config(SERVER_CONFIG))
        .map_err(|e| SetupFailure::Listen(port, e))
}

impl AllServices {
    /// Adds every service's sockets to `sockets` and builds the services, every
    /// TCP socket listening; call once (each takes its statics). Fails if a
    /// static was taken already, a buffer is too small for its session, or a
    /// socket cannot listen.
    ///
    /// Not inlined: its temporaries then leave the stack before the poll loop
    /// starts, instead of staying in the loop's frame.
    #[inline(never)]
    pub fn new(sockets: &mut SocketSet<'static>) -> Result<Self, SetupFailure> {
        let echo_handles = tcp_sockets::<ECHO_POOL>(
            sockets,
            take(&ECHO_RX_BUF, "echo buffers")?,
            take(&ECHO_TX_BUF, "echo buffers")?,
        );
        let echo_sessions = take(&ECHO_SESSIONS, "echo sessions")?.each_mut();
        let mut slots = Slots::new();
        slots.note("echo", &echo_handles);
        let echo = listen(sockets, ECHO_PORT, echo_handles, echo_sessions)?;
        let echo = init(&ECHO, echo, "echo server")?;

        let udp_socket = udp::Socket::new(
            udp::PacketBuffer::new(
                &mut init(
                    &UDP_RX_META,
                    [udp::PacketMetadata::EMPTY; UDP_PACKETS],
                    "udp",
                )?[..],
                &mut take(&UDP_RX_PAYLOAD, "udp")?[..],
            ),
            udp::PacketBuffer::new(
                &mut init(
                    &UDP_TX_META,
                    [udp::PacketMetadata::EMPTY; UDP_PACKETS],
                    "udp",
                )?[..],
                &mut take(&UDP_TX_PAYLOAD, "udp")?[..],
            ),
        );
        let udp_handle = sockets.add(udp_socket);
        let udp = init(&UDP, UdpService::new(udp_handle, ECHO_PORT, UdpEcho), "udp")?;

        let framed_handles = tcp_sockets::<FRAMED_POOL>(
            sockets,
            take(&FRAMED_RX_BUF, "framed buffers")?,
            take(&FRAMED_TX_BUF, "framed buffers")?,
        );
        let mut queues =
            chunks::<FRAMED_POOL>(take(&FRAMED_QUEUE_BUF, "framed queues")?).into_iter();
        let framed_sessions = place(&FRAMED_SESSIONS, || {
            let queue = queues.next().ok_or(SetupFailure::Buffers("framed echo"))?;
            StreamingEcho::new(queue, FRAMED_FORMAT)
                .map_err(|_| SetupFailure::Buffers("framed echo"))
        })?;
        slots.note("framed echo", &framed_handles);
        let framed = listen(sockets, FRAMED_PORT, framed_handles, framed_sessions)?;
        let framed = init(&FRAMED, framed, "framed server")?;

        let site = init(&SITE, live::site(TITLE, &render_status), "site")?;
        let http_handles = tcp_sockets::<HTTP_POOL>(
            sockets,
            take(&HTTP_RX_BUF, "http buffers")?,
            take(&HTTP_TX_BUF, "http buffers")?,
        );
        slots.note("http", &http_handles);
        let site: &'static Site<'static> = site;
        let http_sessions = place(&HTTP_SESSIONS, || Ok(HttpResponder::new(site)))?;
        let http = listen(sockets, HTTP_PORT, http_handles, http_sessions)?;
        let http = init(&HTTP, http, "http server")?;

        let store: &'static Shared = take(&STORE, "file store")?;
        // The sessions hold the store as the unsized `SharedStore<_, [_]>`, which
        // counts its leases at run time.
        let shared: &'static SharedStore<Store> = store;
        let transfer_handles = tcp_sockets::<TRANSFER_POOL>(
            sockets,
            take(&TRANSFER_RX_BUF, "transfer buffers")?,
            take(&TRANSFER_TX_BUF, "transfer buffers")?,
        );
        let mut receive =
            chunks::<TRANSFER_POOL>(take(&TRANSFER_RECEIVE_BUF, "transfer buffers")?).into_iter();
        let mut staging =
            chunks::<TRANSFER_POOL>(take(&TRANSFER_STAGING_BUF, "transfer buffers")?).into_iter();
        let transfer_sessions = place(&TRANSFER_SESSIONS, || {
            let (Some(receive), Some(staging)) = (receive.next(), staging.next()) else {
                return Err(SetupFailure::Buffers("transfer"));
            };
            TransferServer::new(shared, receive, staging).map_err(SetupFailure::Transfer)
        })?;
        slots.note("transfer", &transfer_handles);
        let transfer = listen(sockets, TRANSFER_PORT, transfer_handles, transfer_sessions)?;
        let transfer = init(&TRANSFER, transfer, "transfer server")?;

        Ok(Self {
            echo,
            udp,
            framed,
            http,
            transfer,
            store,
            slots,
            started: None,
        })
    }

    /// Every service's counters now, with the driver's and the backlog's.
    pub fn counters(&self, link: LinkStats, backlog: BacklogStats, now: Instant) -> Counters {
        let mut framed_frames = 0u64;
        let mut framed_errors = 0u64;
        for echo in self.framed.sessions() {
            framed_frames = framed_frames.saturating_add(echo.frames);
            framed_errors = framed_errors.saturating_add(echo.errors);
        }
        let mut requests = HttpStats::default();
        for page in self.http.sessions() {
            requests.accumulate(page.stats());
        }
        Counters {
            echo: Pool::of(self.echo),
            echo_bytes: self
                .echo
                .sessions()
                .iter()
                .map(|echo| echo.bytes)
                .fold(0, u64::saturating_add),
            udp: *self.udp.stats(),
            framed: Pool::of(self.framed),
            framed_frames,
            framed_errors,
            http: Pool::of(self.http),
            http_requests: requests,
            transfer: Pool::of(self.transfer),
            transfer_stats: self.store.stats(),
            link,
            backlog,
            uptime: self.started.map_or(Duration::ZERO, |at| now - at),
        }
    }

    /// Publishes the counters to the status page, and every open connection's
    /// buffers to the live page.
    pub fn publish(
        &mut self,
        sockets: &SocketSet<'_>,
        link: LinkStats,
        backlog: BacklogStats,
        now: Instant,
    ) {
        self.started.get_or_insert(now);
        let counters = self.counters(link, backlog, now);
        cortex_m::interrupt::free(|cs| LIVE.borrow(cs).set(Some(counters)));
        self.slots.publish(sockets);
    }
}

impl Service for AllServices {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        self.echo.poll(sockets, now);
        self.udp.poll(sockets, now);
        self.framed.poll(sockets, now);
        self.http.poll(sockets, now);
        self.transfer.poll(sockets, now);
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        [
            self.echo.poll_at(sockets),
            self.udp.poll_at(sockets),
            self.framed.poll_at(sockets),
            self.http.poll_at(sockets),
            self.transfer.poll_at(sockets),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Where each service's RAM goes: name, socket and frame buffers (the byte
/// buffers above), and the service's own state (its server or UDP service and
/// its sessions, with the buffers they hold inline).
pub fn ram_use() -> [(&'static str, usize, usize); 5] {
    use core::mem::size_of;
    let meta = size_of::<udp::PacketMetadata>();
    [
        (
            "tcp/7 echo",
            ECHO_POOL * (ECHO_RX + ECHO_TX),
            size_of::<EchoServer>() + ECHO_POOL * size_of::<Echo>(),
        ),
        (
            "udp/7 echo",
            2 * (UDP_PAYLOAD + UDP_PACKETS * meta),
            size_of::<UdpEchoService>(),
        ),
        (
            "tcp/9000 framed echo",
            FRAMED_POOL * (FRAMED_RX + FRAMED_TX + FRAMED_QUEUE),
            size_of::<FramedServer>() + FRAMED_POOL * size_of::<FramedSession>(),
        ),
        (
            "tcp/80 http",
            HTTP_POOL * (HTTP_RX + HTTP_TX),
            size_of::<HttpServer>()
                + HTTP_POOL * size_of::<HttpPage>()
                + size_of::<Site<'static>>(),
        ),
        (
            "tcp/2121 transfer",
            TRANSFER_POOL * (TRANSFER_RX + TRANSFER_TX + TRANSFER_RECEIVE + TRANSFER_STAGING),
            size_of::<TransferPool>() + TRANSFER_POOL * size_of::<TransferSession>(),
        ),
    ]
}

/// Bytes of the file store (its arena, slots, leases and counters).
pub fn store_size() -> usize {
    core::mem::size_of::<Shared>()
}

/// One line per service, for the boot log.
pub fn describe(out: &mut dyn fmt::Write) -> fmt::Result {
    write!(
        out,
        "tcp/{ECHO_PORT} echo, udp/{ECHO_PORT} echo, tcp/{FRAMED_PORT} framed echo \
         (frames up to {} KiB), tcp/{HTTP_PORT} http, tcp/{TRANSFER_PORT} transfer \
         ({} KiB store), ping",
        FRAMED_MAX_BODY / 1024,
        STORE_BYTES / 1024
    )
}
