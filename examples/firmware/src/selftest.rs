//! Checks that need no network, run under QEMU with `--features selftest`.
//!
//! Each check prints one line; the firmware then leaves QEMU through semihosting
//! with success only if every check passed, so a script or a test can use QEMU's
//! exit status. More checks go in [`CHECKS`].
//!
//! Besides the board (LAN9118 registers, SysTick), one check runs two smoltcp
//! stacks inside the firmware, joined by smolsock's in-process link
//! (`runner::sim`, which is `no_std`) with loss, duplication and reordering:
//! smolsock's raw echo and the streaming framed echo the firmware serves on one
//! stack (each host of the link has a listen backlog in front of it), a client on
//! the other (a framed connection, `Framed` with no handler, on a `TcpSession`),
//! all in statics, in virtual time.

use lan9118::{Lan9118, Mmio};
use smolsock::net::{Service, TcpServer, TcpSession};
use smolsock::runner::sim::{FaultConfig, SERVER_V4, SERVER_V6, SimConfig, SimNet};
use smolsock::session::{Echo, Framed, SendError, StreamingEcho};
use smolsock::wire::frame::HeaderFormat;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use static_cell::{ConstStaticCell, StaticCell};

use crate::clock::Clock;

/// What a check may use.
pub struct Board<'a> {
    /// The initialised Ethernet controller.
    pub device: &'a mut Lan9118<Mmio>,
    /// The running millisecond clock.
    pub clock: &'a mut Clock,
    /// The MAC address the firmware configured.
    pub mac_address: [u8; 6],
    /// The debug blocks, for the DWT cycle counter.
    pub dcb: cortex_m::peripheral::DCB,
    pub dwt: cortex_m::peripheral::DWT,
}

type Check = fn(&mut Board<'_>) -> Result<(), &'static str>;

/// Every check, by name.
const CHECKS: &[(&str, Check)] = &[
    ("lan9118: ID_REV names a LAN9118", chip_id),
    ("lan9118: BYTE_TEST reads 0x87654321", byte_test),
    ("lan9118: MAC address reads back", mac_readback),
    ("lan9118: free-running counter advances", free_run_advances),
    ("clock: SysTick milliseconds advance", clock_advances),
    (
        "sim: echo and 20 frames between two stacks over a lossy in-process link",
        two_stacks,
    ),
    (
        "dwt: the cycle counter, counting or not (logged)",
        cycle_counter,
    ),
    (
        "cost: 1 MiB echoed through each path, every byte checked",
        cost,
    ),
    #[cfg(not(feature = "live"))]
    (
        "http: the status page fits with every counter at its largest",
        status_page_fits,
    ),
    ("stack: high-water mark below the stack's size", stack_fits),
];

/// Runs every check and says whether all passed.
pub fn run(board: &mut Board<'_>) -> bool {
    let mut failures = 0u32;
    for (name, check) in CHECKS {
        match check(board) {
            Ok(()) => log::info!("selftest ok   {name}"),
            Err(why) => {
                failures = failures.saturating_add(1);
                log::error!("selftest FAIL {name}: {why}");
            }
        }
    }
    log::info!(
        "selftest: {} passed, {} failed",
        CHECKS.len().saturating_sub(failures as usize),
        failures
    );
    failures == 0
}

fn chip_id(board: &mut Board<'_>) -> Result<(), &'static str> {
    let chip = board.device.chip_id();
    log::info!("ID_REV: chip {:#06x} revision {}", chip.id, chip.revision);
    if chip.id == 0x0118 {
        Ok(())
    } else {
        Err("not 0x0118")
    }
}

fn byte_test(board: &mut Board<'_>) -> Result<(), &'static str> {
    if board.device.byte_test() == lan9118::regs::BYTE_TEST_VALUE {
        Ok(())
    } else {
        Err("wrong value: bus width or byte order")
    }
}

fn mac_readback(board: &mut Board<'_>) -> Result<(), &'static str> {
    match board.device.read_mac_address() {
        Ok(mac) if mac == board.mac_address => Ok(()),
        Ok(_) => Err("ADDRL/ADDRH hold another address"),
        Err(_) => Err("MAC CSR access timed out"),
    }
}

fn free_run_advances(board: &mut Board<'_>) -> Result<(), &'static str> {
    let first = board.device.free_running_counter();
    let advanced = (0..100_000).any(|_| board.device.free_running_counter() != first);
    if advanced {
        Ok(())
    } else {
        Err("FREE_RUN is stuck")
    }
}

fn clock_advances(board: &mut Board<'_>) -> Result<(), &'static str> {
    let start = board.clock.now();
    // A bounded wait: sleep until SysTick wakes us, at most a few hundred times.
    for _ in 0..500 {
        cortex_m::asm::wfi();
        if (board.clock.now() - start).total_millis() >= 3 {
            return Ok(());
        }
    }
    Err("SysTick never advanced 3 ms")
}

/// Logs whether the DWT cycle counter counts; passes either way (QEMU does
/// not model it), so the cost figures say what they are measured in.
fn cycle_counter(board: &mut Board<'_>) -> Result<(), &'static str> {
    let counts = crate::cost::cycle_counter_counts(&mut board.dcb, &mut board.dwt);
    if counts {
        log::info!("dwt: CYCCNT counts");
    } else {
        log::info!("dwt: CYCCNT does not count here; the cost is emulated time (-icount)");
    }
    Ok(())
}

fn cost(board: &mut Board<'_>) -> Result<(), &'static str> {
    crate::cost::measure(board.device)
}

/// The status page fits its buffer with every counter at its largest
/// ([`widest`](crate::widest::widest)), and so does the counters' text the
/// live page's room is set for.
#[cfg(not(feature = "live"))]
fn status_page_fits(_board: &mut Board<'_>) -> Result<(), &'static str> {
    use crate::services::{Counters, HTTP_PAGE_MAX, STATUS_WIDEST, TITLE, write_status};
    // The counters at boot, but for the ones shown only once they are not 0
    // (polls with a socket missing): those at their largest already.
    let mut counters = Counters::default();
    for pool in [
        &mut counters.echo,
        &mut counters.framed,
        &mut counters.http,
        &mut counters.transfer,
    ] {
        pool.server.missing_sockets = u64::MAX;
    }
    counters.udp.missing_socket = u64::MAX;
    let mut boot = heapless::String::<4096>::new();
    write_status(Some(&counters), &mut boot)
        .map_err(|_| "the counters' text at boot is over 4 KiB")?;
    crate::widest::status_page_fits(&boot, TITLE, HTTP_PAGE_MAX, STATUS_WIDEST)
}

/// Checks the stack never reached the bottom of its region (after the other
/// checks: the two stacks' run is the deepest).
fn stack_fits(_board: &mut Board<'_>) -> Result<(), &'static str> {
    let (used, size) = crate::stack::high_water();
    log::info!("ram: stack high-water mark {used} B of {size} B");
    if used < size {
        Ok(())
    } else {
        Err("the stack reached the statics below it")
    }
}

/// Frames each direction of the in-process link holds (about 1.5 KiB each).
const SIM_SLOTS: usize = 2;
const SIM_BUFFER: usize = 1024;
/// The client's largest frame body: its framed connection keeps one frame each
/// way. The server's echo keeps none, whatever the size.
const SIM_MAX_BODY: u32 = 1024;
/// The server's streaming echo queue: smaller than most frames it echoes.
const SIM_QUEUE: usize = 256;
const SIM_FRAMES: usize = 20;
const ECHO_MESSAGE: &[u8] = b"two stacks, one firmware";

type Buffer = &'static mut [u8];
type FramedServer = TcpServer<StreamingEcho<Buffer>, 1>;
type FramedClient = TcpSession<Framed<(), Buffer, Buffer>>;

static SERVER_SOCKETS: StaticCell<[SocketStorage<'static>; 2]> = StaticCell::new();
static CLIENT_SOCKETS: StaticCell<[SocketStorage<'static>; 2]> = StaticCell::new();
/// rx and tx of two server sockets and two client sockets.
static SOCKET_BUFFERS: ConstStaticCell<[[u8; SIM_BUFFER]; 8]> =
    ConstStaticCell::new([[0; SIM_BUFFER]; 8]);
static SERVER_QUEUE: ConstStaticCell<[u8; SIM_QUEUE]> = ConstStaticCell::new([0; SIM_QUEUE]);
/// The client's frame storage: one frame received, one queued to send.
static CLIENT_FRAMES: ConstStaticCell<[[u8; SIM_MAX_BODY as usize + 4]; 2]> =
    ConstStaticCell::new([[0; SIM_MAX_BODY as usize + 4]; 2]);
static ECHO: StaticCell<TcpServer<Echo, 1>> = StaticCell::new();
static FRAMED: StaticCell<FramedServer> = StaticCell::new();
static CLIENT: StaticCell<FramedClient> = StaticCell::new();

/// The server side: both services, polled as one.
struct Servers {
    echo: &'static mut TcpServer<Echo, 1>,
    framed: &'static mut FramedServer,
}

impl Service for Servers {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
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

/// Body `i` of the framed exchange: lengths up to 1,000, contents that differ.
fn sim_body(i: usize, out: &mut [u8; 1024]) -> &[u8] {
    let len = (i * 53 + 1) % 1000;
    for (j, byte) in out.iter_mut().take(len).enumerate() {
        *byte = (i as u8).wrapping_mul(31) ^ j as u8;
    }
    out.get(..len).unwrap_or_default()
}

fn tcp_socket(rx: &'static mut [u8], tx: &'static mut [u8]) -> tcp::Socket<'static> {
    tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx))
}

/// The client's side of the framed exchange: frames sent, frames back and checked.
struct FramedProgress {
    sent: usize,
    back: usize,
    failure: Option<&'static str>,
}

impl FramedProgress {
    /// Sends what fits, moves bytes, takes the frames back; again while that
    /// moves anything (a frame taken frees room for the next one to arrive).
    fn step(&mut self, client: &mut FramedClient, sockets: &mut SocketSet<'_>, now: Instant) {
        let mut body = [0u8; 1024];
        let mut expected = [0u8; 1024];
        loop {
            let before = (self.sent, self.back);
            while self.sent < SIM_FRAMES {
                match client.session_mut().send(sim_body(self.sent, &mut body)) {
                    Ok(()) => self.sent += 1,
                    Err(SendError::WouldBlock) => break,
                    Err(_) => {
                        self.failure = Some("a frame over the client's maximum");
                        return;
                    }
                }
            }
            if client.poll(sockets, now).is_err() {
                self.failure = Some("no client socket");
                return;
            }
            while let Some(frame) = client.session_mut().recv() {
                if frame != sim_body(self.back, &mut expected) {
                    self.failure = Some("a frame came back changed");
                }
                self.back += 1;
            }
            if (self.sent, self.back) == before {
                return;
            }
        }
    }
}

fn two_stacks(board: &mut Board<'_>) -> Result<(), &'static str> {
    let taken = "statics already taken";
    let [b0, b1, b2, b3, b4, b5, b6, b7] = SOCKET_BUFFERS.try_take().ok_or(taken)?.each_mut();
    let server_sockets = SocketSet::new(
        &mut SERVER_SOCKETS
            .try_init([SocketStorage::EMPTY; 2])
            .ok_or(taken)?[..],
    );
    let client_sockets = SocketSet::new(
        &mut CLIENT_SOCKETS
            .try_init([SocketStorage::EMPTY; 2])
            .ok_or(taken)?[..],
    );
    // 5 % loss, 2 % duplication, 2 % reordering, 1 ms each way; seeded from the
    // clock, so each boot takes another path through the faults.
    let faults = FaultConfig::CLEAN
        .with_loss(50)
        .with_duplication(20)
        .with_reordering(20)
        .with_delay(Duration::from_millis(1));
    let seed =
        board.clock.now().total_millis() as u64 ^ u64::from(board.device.free_running_counter());
    log::info!("sim: seed {seed}");
    // The two hosts (their interfaces, the link's frame slots, a listen backlog
    // each: 22 KiB) live in this function's frame, not in a static: a value
    // this large passes through the stack on its way into a static anyway, so a
    // static would cost its size twice. The last check sees how deep it went.
    let mut net: SimNet<'static, SIM_SLOTS> = SimNet::new(
        SimConfig::new(seed).with_faults(faults),
        server_sockets,
        client_sockets,
    );
    let net = &mut net;

    let format = HeaderFormat::NETWORK
        .with_max_len(SIM_MAX_BODY)
        .map_err(|_| "frame format")?;
    let echo_handle = net.server.sockets.add(tcp_socket(b0, b1));
    let framed_handle = net.server.sockets.add(tcp_socket(b2, b3));
    let echo = TcpServer::new(&mut net.server.sockets, 7, [echo_handle], [Echo::new()])
        .map_err(|_| "the echo server did not listen")?;
    let echo = ECHO.try_init(echo).ok_or(taken)?;
    // The firmware's framed echo: 64 KiB frames through a queue of 256 bytes.
    let streaming = StreamingEcho::new(
        &mut SERVER_QUEUE.try_take().ok_or(taken)?[..],
        HeaderFormat::NETWORK,
    )
    .map_err(|_| "framed echo queue")?;
    let framed = TcpServer::new(&mut net.server.sockets, 9000, [framed_handle], [streaming])
        .map_err(|_| "the framed echo server did not listen")?;
    let framed = FRAMED.try_init(framed).ok_or(taken)?;
    let mut servers = Servers { echo, framed };

    let client_echo = net.client.sockets.add(tcp_socket(b4, b5));
    let client_framed = net.client.sockets.add(tcp_socket(b6, b7));
    connect(net, client_echo, (SERVER_V4, 7).into(), 49152)?;
    connect(net, client_framed, (SERVER_V6, 9000).into(), 49153)?;
    let [receive, send] = CLIENT_FRAMES.try_take().ok_or(taken)?.each_mut();
    let session = Framed::new((), &mut receive[..], &mut send[..], format)
        .map_err(|_| "client frame storage")?;
    let client = CLIENT
        .try_init(TcpSession::new(client_framed, session))
        .ok_or(taken)?;

    let mut echo_sent = false;
    let mut echo_back = [0u8; ECHO_MESSAGE.len()];
    let mut echo_len = 0;
    let mut framed = FramedProgress {
        sent: 0,
        back: 0,
        failure: None,
    };
    let outcome = net.run_services(
        &mut servers,
        &mut (),
        Duration::from_secs(120),
        |_, _, net| {
            let now = net.now();
            let socket = net.client.sockets.get_mut::<tcp::Socket>(client_echo);
            if !echo_sent && socket.may_send() {
                echo_sent = socket.send_slice(ECHO_MESSAGE) == Ok(ECHO_MESSAGE.len());
            }
            if let Some(rest) = echo_back.get_mut(echo_len..) {
                echo_len += socket.recv_slice(rest).unwrap_or(0);
            }
            framed.step(client, &mut net.client.sockets, now);
            let done = echo_len == ECHO_MESSAGE.len() && framed.back == SIM_FRAMES;
            (done || framed.failure.is_some()).then_some(())
        },
    );
    let stats = net.stats();
    log::info!("sim: {stats}");
    outcome.map_err(|_| "no echo or not every frame within 120 s of virtual time")?;
    if let Some(why) = framed.failure {
        return Err(why);
    }
    if echo_back != ECHO_MESSAGE {
        return Err("the echo came back changed");
    }
    let [streaming] = servers.framed.sessions();
    if streaming.frames != SIM_FRAMES as u64 {
        return Err("the server counted another number of frames");
    }
    log::info!(
        "sim: echo and {SIM_FRAMES} frames back at {} of virtual time",
        net.now()
    );
    Ok(())
}

fn connect(
    net: &mut SimNet<'static, SIM_SLOTS>,
    handle: SocketHandle,
    to: smoltcp::wire::IpEndpoint,
    local_port: u16,
) -> Result<(), &'static str> {
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(handle)
        .ok_or("no client socket")?;
    socket
        .connect(cx, to, local_port)
        .map_err(|_| "connect failed")
}
