//! Every smolsock service as embassy tasks, one task per connection:
//!
//! | port | service | tasks | socket buffers (rx + tx) | adapter buffers | session memory |
//! |---|---|---:|---|---|---|
//! | tcp/7 | raw echo ([`Echo`]) | 1 | 2 KiB + 2 KiB | 128 + 128 | 1 KiB `recv` buffer |
//! | udp/7 | UDP echo | 1 | 4 datagrams / 2 KiB each way | - | one 1500-byte datagram |
//! | tcp/9000 | framed echo ([`StreamingEcho`], bodies up to 64 KiB) | 2 | 2 KiB + 2 KiB | 128 + 128 | 512 B queue |
//! | tcp/80 | HTTP ([`HttpResponder`] + `StatusSite`, or `LiveSite` with `--features live`: `live.rs`) | 2 | 1 KiB + 512 | 128 + 128 | 1 KiB request, 2.2 KiB page (4.6 KiB live) |
//! | tcp/2121 | file transfer ([`TransferServer`]) to a [`RamStore`] | 2 | 2 KiB + 2 KiB | 256 + 256 | 1 KiB + 4 receive, 1 KiB + 4 staging |
//!
//! The sizes are the poll-loop firmware's; the adapter buffers are what
//! `smolsock::asynch::Connection` moves bytes through. Each task keeps its buffers and
//! its session in its own state, which lives in its task pool's `static`: the
//! pools are the RAM of the services.
//!
//! Every TCP service is the same loop ([`serve`]): a `TcpSocket` on the task's
//! buffers accepts one connection, an `asynch::Connection` serves it with the session to
//! its end, the socket closes (or resets) and goes, and the next `accept`
//! listens again. UDP echo is the one service without a smolsock session:
//! smolsock's datagram handlers (`net::UdpEcho`) are part of its smoltcp
//! poll-loop adapter, which this firmware does not link, and an echo is one
//! `recv_from` and one `send_to`.

use core::fmt;

use embassy_executor::Spawner;
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, RecvError, UdpSocket};
use embassy_time::{Duration, with_timeout};
use smolsock::asynch::{Clock, Connection, End, Flush};
use smolsock::http::HttpResponder;
use smolsock::session::{Echo, Session, Status, StreamingEcho};
use smolsock::store::RamStore;
use smolsock::time::Instant;
use smolsock::trace::Levels;
use smolsock::transfer::{SharedStore, TransferServer, UploadLease};
use smolsock::wire::frame::HeaderFormat;
use static_cell::{ConstStaticCell, StaticCell};

use crate::live::{self, Row, Site};
use crate::status::{self, Service};
use crate::unwrap_spawn;

/// The primer's echo port, TCP and UDP.
pub const ECHO_PORT: u16 = 7;
/// Framed echo: `struct.pack('!I', len)` then the body.
pub const FRAMED_PORT: u16 = 9000;
/// The status page.
pub const HTTP_PORT: u16 = 80;
/// File transfer (PROTOCOL.md).
pub const TRANSFER_PORT: u16 = 2121;

pub const ECHO_POOL: usize = 1;
pub const FRAMED_POOL: usize = 2;
pub const HTTP_POOL: usize = 2;
pub const TRANSFER_POOL: usize = 2;
/// The TCP sockets the tasks hold, one each.
pub const TCP_SOCKETS: usize = ECHO_POOL + FRAMED_POOL + HTTP_POOL + TRANSFER_POOL;

const STREAM_RX: usize = 2048;
const STREAM_TX: usize = 2048;
const HTTP_RX: usize = 1024;
const HTTP_TX: usize = 512;
/// What the `asynch::Connection` reads into and writes from.
const IO: usize = 128;
const TRANSFER_IO: usize = 256;

const UDP_PACKETS: usize = 4;
const UDP_PAYLOAD: usize = 2048;
/// The largest datagram echoed: more than a 1500-byte Ethernet frame can carry.
const UDP_DATAGRAM_MAX: usize = 1500;
/// How long a UDP echo reply may take to leave before the send queue is emptied.
const UDP_SEND_WAIT: Duration = Duration::from_secs(3);

/// The largest framed-echo body: 64 KiB, as `tap_server`'s.
pub const FRAMED_MAX_BODY: u32 = 64 * 1024;
const FRAMED_QUEUE: usize = 512;
const FRAMED_FORMAT: HeaderFormat = match HeaderFormat::NETWORK.with_max_len(FRAMED_MAX_BODY) {
    Ok(format) => format,
    Err(_) => panic!("FRAMED_MAX_BODY does not fit a 4-byte header"),
};

const HTTP_REQUEST_MAX: usize = 1024;
const HTTP_PAGE_MAX: usize = live::PAGE_MAX;
/// Receive storage and staging per transfer connection (header included).
const TRANSFER_RECEIVE: usize = 1024 + 4;
const TRANSFER_STAGING: usize = 1024 + 4;
const STORE_FILES: usize = 8;
/// A 1 MiB file, a 1 MiB re-upload of it, and room to spare.
pub const STORE_BYTES: usize = 3 * 1024 * 1024;

/// The deadlines: a handshake that does not complete in 3 s is reset by the
/// stack (the poll loop allows 20 s, but there a backlog frees a half-open
/// slot for a waiting SYN; here a half-open handshake holds its task, and a
/// forged SYN would hold it that long); a connection on which no byte moves
/// for 60 s (the peer silent, or reading nothing while its stack acknowledges
/// our probes) ends by the adapter's idle timeout, and one whose peer sends no
/// segment for that long by the stack's, as in the poll loop; a close gets 5 s
/// to be acknowledged (the poll loop's 20 s would hold the task as long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const IDLE_TIMEOUT: Duration = Duration::from_secs(IDLE_SECS);
const IDLE_SECS: u64 = 60;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(CLOSE_SECS);
const CLOSE_SECS: u64 = 5;

pub type Store = RamStore<STORE_FILES, STORE_BYTES>;
type Shared = SharedStore<Store, [UploadLease; TRANSFER_POOL]>;
type HttpPage = HttpResponder<'static, Site<'static>, HTTP_REQUEST_MAX, HTTP_PAGE_MAX>;

/// The file store, in its own region above the 64 KiB budget (`link/memory.x`),
/// shared by the transfer tasks. All zero bytes when empty, so `.sbss.store`
/// is `NOBITS`; [`clear_store_region`] zeroes the `NOLOAD` region at boot.
#[allow(unsafe_code)]
#[unsafe(link_section = ".sbss.store")]
static STORE: ConstStaticCell<Shared> = ConstStaticCell::new(SharedStore::new(
    RamStore::new(),
    [UploadLease::EMPTY; TRANSFER_POOL],
));

static SITE: StaticCell<Site<'static>> = StaticCell::new();

/// embassy-time as smolsock's clock: microseconds since boot.
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        Instant::from_micros(embassy_time::Instant::now().as_micros())
    }

    async fn sleep_until(&self, at: Instant) {
        // A deadline past embassy-time's range (a session's "never") waits for good.
        let at = embassy_time::Instant::try_from_micros(at.total_micros());
        embassy_time::Timer::at(at.unwrap_or(embassy_time::Instant::MAX)).await;
    }
}

/// Zeroes the store's `NOLOAD` region, which nothing else initialises, so the
/// `ConstStaticCell` in it starts untaken. Call once, at boot, before
/// [`spawn_all`].
#[allow(unsafe_code)]
pub fn clear_store_region() {
    unsafe extern "C" {
        static mut __sstore: u32;
        static mut __estore: u32;
    }
    let start = core::ptr::addr_of_mut!(__sstore);
    let end = core::ptr::addr_of_mut!(__estore);
    let words = (end as usize).saturating_sub(start as usize) / 4;
    // SAFETY: `link/memory.x` makes `__sstore..__estore` the `.store` output section,
    // word aligned, in the STORE region where only `STORE` lives; nothing has
    // referenced it yet (this runs once, before `STORE` is taken).
    unsafe { core::ptr::write_bytes(start, 0, words) };
}

/// Spawns every service's tasks on `stack`.
pub fn spawn_all(spawner: Spawner, stack: Stack<'static>) {
    let Some(store) = STORE.try_take() else {
        crate::fatal("the file store was taken twice");
    };
    let store: &'static Shared = store;
    let site: &'static Site<'static> = SITE.init(live::site(status::TITLE, &status::render));
    for slot in 0..ECHO_POOL {
        spawner.spawn(unwrap_spawn(echo_task(stack, slot)));
    }
    spawner.spawn(unwrap_spawn(udp_echo_task(stack)));
    for slot in 0..FRAMED_POOL {
        spawner.spawn(unwrap_spawn(framed_task(stack, slot)));
    }
    for slot in 0..HTTP_POOL {
        spawner.spawn(unwrap_spawn(http_task(stack, slot, site)));
    }
    for slot in 0..TRANSFER_POOL {
        let row = Row::new(
            Service::Transfer,
            ECHO_POOL + FRAMED_POOL + HTTP_POOL + slot,
        );
        spawner.spawn(unwrap_spawn(transfer_task(stack, row, store)));
    }
    status::set_slots([ECHO_POOL, FRAMED_POOL, HTTP_POOL, TRANSFER_POOL]);
    #[cfg(feature = "tftp")]
    crate::tftp::spawn(spawner, stack, store);
}

#[embassy_executor::task(pool_size = ECHO_POOL)]
async fn echo_task(stack: Stack<'static>, slot: usize) -> ! {
    let (mut rx, mut tx) = ([0u8; STREAM_RX], [0u8; STREAM_TX]);
    let (mut io_rx, mut io_tx) = ([0u8; IO], [0u8; IO]);
    let mut session = Echo::new();
    let buffers = Buffers {
        socket_rx: &mut rx,
        socket_tx: &mut tx,
        io_rx: &mut io_rx,
        io_tx: &mut io_tx,
    };
    serve(
        stack,
        ECHO_PORT,
        Service::Echo,
        Row::new(Service::Echo, slot),
        buffers,
        &mut session,
        |echo| {
            status::update(|c| c.echo_bytes[slot] = echo.bytes);
        },
    )
    .await
}

#[embassy_executor::task(pool_size = FRAMED_POOL)]
async fn framed_task(stack: Stack<'static>, slot: usize) -> ! {
    let (mut rx, mut tx) = ([0u8; STREAM_RX], [0u8; STREAM_TX]);
    let (mut io_rx, mut io_tx) = ([0u8; IO], [0u8; IO]);
    let mut queue = [0u8; FRAMED_QUEUE];
    let Ok(mut session) = StreamingEcho::new(&mut queue[..], FRAMED_FORMAT) else {
        crate::fatal("framed echo: queue too small");
    };
    let buffers = Buffers {
        socket_rx: &mut rx,
        socket_tx: &mut tx,
        io_rx: &mut io_rx,
        io_tx: &mut io_tx,
    };
    serve(
        stack,
        FRAMED_PORT,
        Service::Framed,
        Row::new(Service::Framed, ECHO_POOL + slot),
        buffers,
        &mut session,
        |echo| {
            status::update(|c| c.framed[slot] = (echo.frames, echo.errors));
        },
    )
    .await
}

#[embassy_executor::task(pool_size = HTTP_POOL)]
async fn http_task(stack: Stack<'static>, slot: usize, site: &'static Site<'static>) -> ! {
    let (mut rx, mut tx) = ([0u8; HTTP_RX], [0u8; HTTP_TX]);
    let (mut io_rx, mut io_tx) = ([0u8; IO], [0u8; IO]);
    let mut session: HttpPage = HttpResponder::new(site);
    let buffers = Buffers {
        socket_rx: &mut rx,
        socket_tx: &mut tx,
        io_rx: &mut io_rx,
        io_tx: &mut io_tx,
    };
    serve(
        stack,
        HTTP_PORT,
        Service::Http,
        Row::new(Service::Http, ECHO_POOL + FRAMED_POOL + slot),
        buffers,
        &mut session,
        |page| {
            status::update(|c| c.http[slot] = *page.stats());
        },
    )
    .await
}

#[embassy_executor::task(pool_size = TRANSFER_POOL)]
async fn transfer_task(stack: Stack<'static>, row: Row, store: &'static Shared) -> ! {
    let (mut rx, mut tx) = ([0u8; STREAM_RX], [0u8; STREAM_TX]);
    let (mut io_rx, mut io_tx) = ([0u8; TRANSFER_IO], [0u8; TRANSFER_IO]);
    let (mut receive, mut staging) = ([0u8; TRANSFER_RECEIVE], [0u8; TRANSFER_STAGING]);
    // The sessions hold the store as the unsized `SharedStore<_, [_]>`.
    let shared: &'static SharedStore<Store> = store;
    let Ok(mut session) = TransferServer::new(shared, &mut receive[..], &mut staging[..]) else {
        crate::fatal("transfer: buffers too small");
    };
    let buffers = Buffers {
        socket_rx: &mut rx,
        socket_tx: &mut tx,
        io_rx: &mut io_rx,
        io_tx: &mut io_tx,
    };
    serve(
        stack,
        TRANSFER_PORT,
        Service::Transfer,
        row,
        buffers,
        &mut session,
        |_| {
            status::update(|c| c.transfer = shared.stats());
        },
    )
    .await
}

#[embassy_executor::task]
async fn udp_echo_task(stack: Stack<'static>) -> ! {
    let mut rx_meta = [PacketMetadata::EMPTY; UDP_PACKETS];
    let mut tx_meta = [PacketMetadata::EMPTY; UDP_PACKETS];
    let (mut rx_payload, mut tx_payload) = ([0u8; UDP_PAYLOAD], [0u8; UDP_PAYLOAD]);
    let mut datagram = [0u8; UDP_DATAGRAM_MAX];
    let mut socket = UdpSocket::new(
        stack,
        &mut rx_meta,
        &mut rx_payload,
        &mut tx_meta,
        &mut tx_payload,
    );
    if socket.bind(ECHO_PORT).is_err() {
        crate::fatal("udp/7: bind failed");
    }
    loop {
        let (len, from) = match socket.recv_from(&mut datagram).await {
            Ok(received) => received,
            Err(RecvError::Truncated) => {
                status::update(|c| c.udp.oversize += 1);
                continue;
            }
        };
        status::update(|c| {
            c.udp.datagrams_in += 1;
            c.udp.bytes_in += len as u64;
        });
        let Some(reply) = datagram.get(..len) else {
            continue;
        };
        // smoltcp keeps a datagram whose neighbour never answers at the head of
        // the send queue for ever, and every reply queued behind it. Each reply
        // gets 3 s to leave (three ARP tries); then the queue is emptied by
        // closing and binding the socket again, as the poll loop's service
        // does. Closing also drops the datagrams that wait to be read (their
        // senders, as any UDP peer, ask again): they are read off and counted.
        // To the sender's endpoint alone: the rest of `from` is the address the
        // datagram came to, which smoltcp would answer from, a broadcast or
        // multicast one included (RFC 1122 forbids that as a source).
        let to = from.endpoint;
        let outcome = match with_timeout(UDP_SEND_WAIT, socket.send_to(reply, to)).await {
            Ok(Ok(())) => with_timeout(UDP_SEND_WAIT, socket.flush())
                .await
                .map_err(|_| true),
            // Not queued (no route, too large): nothing holds the queue.
            Ok(Err(_)) => Err(false),
            Err(_) => Err(true),
        };
        match outcome {
            Ok(()) => status::update(|c| {
                c.udp.datagrams_out += 1;
                c.udp.bytes_out += len as u64;
            }),
            Err(stuck) => {
                if stuck {
                    let mut unread = 0;
                    while socket.may_recv() {
                        let _ = socket.recv_from(&mut datagram).await;
                        unread += 1;
                    }
                    status::update(|c| c.udp.unread_dropped += unread);
                    socket.close();
                    if socket.bind(ECHO_PORT).is_err() {
                        crate::fatal("udp/7: bind again failed");
                    }
                }
                status::update(|c| c.udp.send_errors += 1);
            }
        }
    }
}

/// The memory of one TCP connection outside its session.
struct Buffers<'a> {
    socket_rx: &'a mut [u8],
    socket_tx: &'a mut [u8],
    io_rx: &'a mut [u8],
    io_tx: &'a mut [u8],
}

/// Serves `port` with `session`, one connection after another, for ever;
/// `publish` sees the session after every step, for the status page, and `row`
/// shows the connection on the live page.
async fn serve<S: Session>(
    stack: Stack<'static>,
    port: u16,
    service: Service,
    row: Row,
    buffers: Buffers<'_>,
    session: &mut S,
    publish: impl Fn(&S),
) -> ! {
    let Buffers {
        socket_rx,
        socket_tx,
        io_rx,
        io_tx,
    } = buffers;
    loop {
        let mut socket = TcpSocket::new(stack, &mut *socket_rx, &mut *socket_tx);
        // In SYN-RECEIVED the stack's timeout is the handshake's deadline (a
        // forged SYN holds the task that long); it does not run in LISTEN.
        socket.set_timeout(Some(HANDSHAKE_TIMEOUT));
        socket.set_nagle_enabled(!session.no_delay());
        if socket.accept(port).await.is_err() {
            // Only a socket already in use or port 0 fail here: neither happens.
            log::warn!("tcp/{port}: accept failed");
            embassy_time::Timer::after_secs(1).await;
            continue;
        }
        if socket.state() == embassy_net::tcp::State::Closed {
            // The handshake never completed: listen again.
            log::debug!("tcp/{port}: handshake timed out");
            continue;
        }
        socket.set_timeout(Some(IDLE_TIMEOUT));
        status::update(|c| c.pool_mut(service).open += 1);
        row.note(&socket);
        let mut live = Live {
            session: &mut *session,
            publish: &publish,
        };
        // embassy-net sends what is written on its own, and its `flush` waits
        // until the peer has acknowledged every byte: flushing before each read
        // made an echo wait a round trip per piece (against Linux, which holds
        // the ACK of a lone small segment up to 40 ms, a 256 KiB echo took 12 s).
        // The end still waits for every byte and the FIN (`flush` after `close`).
        #[cfg(feature = "live")]
        let stream = Noted {
            socket: &mut socket,
            row,
        };
        #[cfg(not(feature = "live"))]
        let stream = &mut socket;
        let end = Connection::new(stream, &mut *io_rx, &mut *io_tx)
            .with_flush(Flush::AtEnd)
            .with_idle_timeout(smolsock::time::Duration::from_secs(IDLE_SECS))
            .with_close_timeout(smolsock::time::Duration::from_secs(CLOSE_SECS))
            .run(&mut live, &EmbassyClock)
            .await;
        let closed = matches!(end, Ok(End::Closed));
        if closed {
            socket.close();
        } else {
            // A broken protocol, a deadline, or a reset stream.
            socket.abort();
        }
        // Let the FIN (or RST) out before the socket goes; a peer that never
        // acknowledges the FIN gets a reset after CLOSE_TIMEOUT.
        if with_timeout(CLOSE_TIMEOUT, socket.flush()).await.is_err() {
            socket.abort();
            let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
        }
        row.clear();
        status::update(|c| {
            let pool = c.pool_mut(service);
            pool.open = pool.open.saturating_sub(1);
            if closed {
                pool.closed += 1;
            } else {
                pool.aborted += 1;
            }
        });
    }
}

/// The socket as the live page's `Connection` sees it: reads and writes are
/// the socket's, and after each the connection is noted on its row; a read
/// that waits is dropped and begun again every `live::REFRESH`, to note the
/// buffers meanwhile (the peer's ACKs empty the send buffer). `TcpSocket::read`
/// takes no byte until it returns them, so a dropped read loses none.
#[cfg(feature = "live")]
struct Noted<'s, 'a> {
    socket: &'s mut TcpSocket<'a>,
    row: Row,
}

#[cfg(feature = "live")]
impl embedded_io_async::ErrorType for Noted<'_, '_> {
    type Error = embassy_net::tcp::Error;
}

#[cfg(feature = "live")]
impl embedded_io_async::Read for Noted<'_, '_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        loop {
            let read = with_timeout(live::REFRESH, self.socket.read(buf)).await;
            self.row.note(self.socket);
            if let Ok(read) = read {
                return read;
            }
        }
    }
}

#[cfg(feature = "live")]
impl embedded_io_async::Write for Noted<'_, '_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let written = self.socket.write(buf).await;
        self.row.note(self.socket);
        written
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.socket.flush().await
    }
}

/// A session that shows its counters to the status page as it runs: every call
/// goes to the session, and after those that move bytes, `publish` sees it.
struct Live<'a, S, F> {
    session: &'a mut S,
    publish: &'a F,
}

impl<S: Session, F: Fn(&S)> Session for Live<'_, S, F> {
    fn start(&mut self, now: Instant) {
        self.session.start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        let taken = self.session.receive(input, now);
        (self.publish)(self.session);
        taken
    }

    fn receive_finished(&mut self, now: Instant) {
        self.session.receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        let written = self.session.transmit(space, now);
        (self.publish)(self.session);
        written
    }

    fn wants_transmit(&self) -> bool {
        self.session.wants_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    fn status(&self) -> Status {
        self.session.status()
    }

    fn end(&mut self, now: Instant) {
        self.session.end(now);
        (self.publish)(self.session);
    }

    fn no_delay(&self) -> bool {
        self.session.no_delay()
    }

    fn drops_input(&self) -> bool {
        self.session.drops_input()
    }

    fn observe(&mut self, levels: Levels, now: Instant) {
        self.session.observe(levels, now);
    }
}

/// The boot log's list of services.
pub struct Describe;

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcp/{ECHO_PORT} echo x{ECHO_POOL}, udp/{ECHO_PORT} echo, tcp/{FRAMED_PORT} framed \
             echo x{FRAMED_POOL} (frames up to {} KiB), tcp/{HTTP_PORT} http x{HTTP_POOL}, \
             tcp/{TRANSFER_PORT} transfer x{TRANSFER_POOL} ({} KiB store), ping",
            FRAMED_MAX_BODY / 1024,
            STORE_BYTES / 1024
        )
    }
}
