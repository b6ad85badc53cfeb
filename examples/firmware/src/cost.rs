//! What a byte costs on the emulated core (self-test build only): 1 MiB echoed
//! between two smoltcp stacks in this firmware, over smolsock's in-process
//! link with no loss and no delay, once per path:
//!
//! | path | server |
//! |---|---|
//! | stack only | a loop on the socket, no smolsock: `recv_slice`, `send_slice` |
//! | tcp/7 raw echo | the firmware's: `session::Echo` in a `TcpServer` |
//! | tcp/9000 1 KiB frames | the firmware's: `session::StreamingEcho` (512-byte queue) in a `TcpServer` |
//! | tcp/9000 64 KiB frames | the same, frames of the largest size |
//!
//! The buffers are the services' (2 KiB + 2 KiB per socket, delayed ACK off).
//! The client, a plain socket on the other stack, writes the stream (frame
//! headers included, for the framed paths) straight into its send buffer and
//! checks every byte that comes back in its receive buffer.
//!
//! The cost is the emulated time the echo took, read from the LAN9118's 25 MHz
//! free-running counter (40 ns a tick). Under `qemu-system-arm -icount
//! shift=0` the core runs one instruction per nanosecond of emulated time, so
//! the nanoseconds are instructions. QEMU does not model the DWT cycle counter
//! (the check below reads it and says so), and counts no cycles: the figure is
//! instructions, both stacks, the link, the client and the server together.
//! The core never sleeps here (the link runs in its own virtual time), so every
//! nanosecond is an instruction. Without `-icount` the figures are host time.

use cortex_m::peripheral::{DCB, DWT};
use lan9118::{Lan9118, Mmio};
use smolsock::net::{Service, TcpServer};
use smolsock::runner::sim::{SERVER_V4, SimConfig, SimNet};
use smolsock::session::{Echo, StreamingEcho};
use smolsock::wire::frame::HeaderFormat;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use static_cell::{ConstStaticCell, StaticCell};

#[path = "cost_stream.rs"]
mod stream;
use stream::{PAYLOAD, Stream};

/// The services' socket buffers and the framed echo's queue (`services.rs`).
const BUFFER: usize = 2048;
const QUEUE: usize = 512;
/// Frames each direction of the link holds: the embassy self-test's link has 8.
const SLOTS: usize = 8;
/// Nanoseconds per tick of the LAN9118's free-running counter (25 MHz).
const NS_PER_TICK: u64 = 40;
const PLAIN_PORT: u16 = 7007;
const ECHO_PORT: u16 = 7;
const FRAMED_PORT: u16 = 9000;
/// Each path's deadline, in the link's virtual time.
const LIMIT: Duration = Duration::from_secs(120);

type Buffer = &'static mut [u8];
type FramedServer = TcpServer<StreamingEcho<Buffer>, 2>;

/// Server: the plain echo, the raw echo, two framed slots; client: one per path.
static SERVER_SOCKETS: StaticCell<[SocketStorage<'static>; 4]> = StaticCell::new();
static CLIENT_SOCKETS: StaticCell<[SocketStorage<'static>; 4]> = StaticCell::new();
/// rx and tx of 4 server and 4 client sockets.
static BUFFERS: ConstStaticCell<[[u8; BUFFER]; 16]> = ConstStaticCell::new([[0; BUFFER]; 16]);
static QUEUES: ConstStaticCell<[[u8; QUEUE]; 2]> = ConstStaticCell::new([[0; QUEUE]; 2]);
static ECHO: StaticCell<TcpServer<Echo, 1>> = StaticCell::new();
static FRAMED: StaticCell<FramedServer> = StaticCell::new();

/// One measured path.
struct Path {
    name: &'static str,
    port: u16,
    /// Frame bodies of this length (a 4-byte big-endian header each), or none.
    frame: Option<u32>,
}

const PATHS: [Path; 4] = [
    Path {
        name: "stack only (a socket loop, no smolsock)",
        port: PLAIN_PORT,
        frame: None,
    },
    Path {
        name: "tcp/7 raw echo (session::Echo)",
        port: ECHO_PORT,
        frame: None,
    },
    Path {
        name: "tcp/9000 framed echo, 1 KiB frames",
        port: FRAMED_PORT,
        frame: Some(1024),
    },
    Path {
        name: "tcp/9000 framed echo, 64 KiB frames",
        port: FRAMED_PORT,
        frame: Some(64 * 1024),
    },
];

/// Says whether the DWT's cycle counter counts: enabled, then read around a
/// loop. QEMU's M-profile model reads 0 there (the write to enable it goes
/// nowhere); on a real Cortex-M4 it counts.
pub fn cycle_counter_counts(dcb: &mut DCB, dwt: &mut DWT) -> bool {
    dcb.enable_trace();
    dwt.enable_cycle_counter();
    let before = DWT::cycle_count();
    let mut spin = 0u32;
    for i in 0..1000u32 {
        spin = core::hint::black_box(spin.wrapping_add(i));
    }
    let after = DWT::cycle_count();
    log::info!("dwt: CYCCNT read {before}, then {after} after a 1,000-step loop");
    after != before
}

/// The server side: a socket loop on one port, smolsock's servers on the others.
struct Servers {
    plain: SocketHandle,
    echo: &'static mut TcpServer<Echo, 1>,
    framed: &'static mut FramedServer,
}

impl Service for Servers {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.plain);
        if !socket.is_open() {
            let _ = socket.listen(PLAIN_PORT);
        }
        // What fits the send buffer, through a piece of stack: the loop a
        // socket echo without a library would be.
        let mut piece = [0u8; 512];
        while socket.can_recv() && socket.can_send() {
            let room = socket.send_capacity().saturating_sub(socket.send_queue());
            let want = room.min(piece.len());
            let Some(space) = piece.get_mut(..want) else {
                break;
            };
            let n = socket.recv_slice(space).unwrap_or(0);
            if n == 0 {
                break;
            }
            let _ = socket.send_slice(piece.get(..n).unwrap_or_default());
        }
        self.echo.poll(sockets, now);
        self.framed.poll(sockets, now);
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        match (self.echo.poll_at(sockets), self.framed.poll_at(sockets)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn socket(rx: &'static mut [u8], tx: &'static mut [u8]) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    socket.set_ack_delay(None);
    socket
}

/// Echoes 1 MiB through each path and logs what it cost; fails if a byte
/// comes back changed or a path does not finish.
pub fn measure(device: &mut Lan9118<Mmio>) -> Result<(), &'static str> {
    let taken = "statics already taken";
    let buffers = BUFFERS.try_take().ok_or(taken)?;
    let mut buffers = buffers.iter_mut().map(|b| &mut b[..]);
    let mut next = || buffers.next().ok_or("too few buffers");
    let server_sockets = SocketSet::new(
        &mut SERVER_SOCKETS
            .try_init([SocketStorage::EMPTY; 4])
            .ok_or(taken)?[..],
    );
    let client_sockets = SocketSet::new(
        &mut CLIENT_SOCKETS
            .try_init([SocketStorage::EMPTY; 4])
            .ok_or(taken)?[..],
    );
    // A clean link: no loss, no delay; the seed only picks sequence numbers.
    let mut net: SimNet<'static, SLOTS> =
        SimNet::new(SimConfig::new(0x5eed), server_sockets, client_sockets);
    let net = &mut net;

    let plain = net.server.sockets.add(socket(next()?, next()?));
    net.server
        .sockets
        .get_mut::<tcp::Socket>(plain)
        .listen(PLAIN_PORT)
        .map_err(|_| "the plain echo did not listen")?;
    let echo_handle = net.server.sockets.add(socket(next()?, next()?));
    let framed_handles = [
        net.server.sockets.add(socket(next()?, next()?)),
        net.server.sockets.add(socket(next()?, next()?)),
    ];
    let echo = TcpServer::new(
        &mut net.server.sockets,
        ECHO_PORT,
        [echo_handle],
        [Echo::new()],
    )
    .map_err(|_| "the echo server did not listen")?;
    let [q0, q1] = QUEUES.try_take().ok_or(taken)?.each_mut();
    let format = HeaderFormat::NETWORK
        .with_max_len(64 * 1024)
        .map_err(|_| "frame format")?;
    let sessions = [
        StreamingEcho::new(&mut q0[..], format).map_err(|_| "queue")?,
        StreamingEcho::new(&mut q1[..], format).map_err(|_| "queue")?,
    ];
    let framed = TcpServer::new(
        &mut net.server.sockets,
        FRAMED_PORT,
        framed_handles,
        sessions,
    )
    .map_err(|_| "the framed echo server did not listen")?;
    let mut servers = Servers {
        plain,
        echo: ECHO.try_init(echo).ok_or(taken)?,
        framed: FRAMED.try_init(framed).ok_or(taken)?,
    };

    for (i, path) in PATHS.iter().enumerate() {
        let client = net.client.sockets.add(socket(next()?, next()?));
        let local_port = 49152u16.saturating_add(i as u16);
        let (s, cx) = net
            .client
            .socket_and_context::<tcp::Socket>(client)
            .ok_or("no client socket")?;
        s.connect(cx, (SERVER_V4, path.port), local_port)
            .map_err(|_| "connect failed")?;
        net.run_services(
            &mut servers,
            &mut (),
            Duration::from_secs(5),
            |_, _, net| {
                let s = net.client.sockets.get::<tcp::Socket>(client);
                s.may_send().then_some(())
            },
        )
        .map_err(|_| "no connection within 5 s of virtual time")?;

        let total = Stream::len(path.frame);
        let mut out = Stream::new(path.frame);
        let mut back = Stream::new(path.frame);
        let (mut sent, mut received, mut differs) = (0u64, 0u64, false);
        let started_at = net.now();
        let start = device.free_running_counter();
        net.run_services(&mut servers, &mut (), LIMIT, |_, _, net| {
            let s = net.client.sockets.get_mut::<tcp::Socket>(client);
            if sent < total {
                let wrote = s.send(|space| {
                    let n = space.len().min((total - sent) as usize);
                    out.fill(space.get_mut(..n).unwrap_or_default());
                    (n, n)
                });
                sent = sent.saturating_add(wrote.unwrap_or(0) as u64);
            }
            let read = s.recv(|data| {
                differs |= !back.check(data);
                (data.len(), data.len())
            });
            received = received.saturating_add(read.unwrap_or(0) as u64);
            (received >= total || differs).then_some(())
        })
        .map_err(|_| "the echo did not finish within 120 s of virtual time")?;
        let ticks = device.free_running_counter().wrapping_sub(start);
        if differs {
            return Err("a byte came back changed");
        }
        let ns = u64::from(ticks) * NS_PER_TICK;
        let per_byte_tenths = ns * 10 / PAYLOAD;
        log::info!(
            "cost: {}: {} B of payload ({} B on the wire each way) in {} ns of emulated time, \
             {}.{} ns/B; the link's virtual time {}",
            path.name,
            PAYLOAD,
            total,
            ns,
            per_byte_tenths / 10,
            per_byte_tenths % 10,
            net.now() - started_at,
        );
        net.client.sockets.get_mut::<tcp::Socket>(client).abort();
        net.run_services(&mut servers, &mut (), Duration::from_secs(1), |_, _, _| {
            None::<()>
        })
        .ok();
    }
    Ok(())
}
