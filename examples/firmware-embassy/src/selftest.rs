//! The self-test (`--features selftest`): two embassy-net stacks in the
//! firmware, joined by the in-memory link of `link.rs`. The server stack has
//! the firmware's addresses and runs every service as the firmware does
//! ([`services::spawn_all`]); the client stack (192.168.69.2, fdaa::2) checks
//! each service through smolsock's own code where smolsock has a client: the
//! framed echo with `HeaderFormat::header` (the frames glued into one write)
//! and `asynch::read_frame`, the file transfer with `TransferClient` requests
//! on an `asynch::Connection`.
//!
//! Each check prints one line and has a deadline; the last line is
//! "selftest: N passed, M failed", and the firmware leaves QEMU through
//! semihosting with success only if every check passed. The LAN9118 is not
//! used: QEMU gives it a restricted user-mode network
//! (`-nic user,restrict=on,model=lan9118`), so that nothing can leave.

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{
    Config, ConfigV6, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr, Runner,
    Stack, StackResources, StaticConfigV4, StaticConfigV6,
};
use embassy_time::{Duration, with_timeout};
use smolsock::asynch::{self, Connection};
use smolsock::store::FileStat;
use smolsock::transfer::{FileSink, FileSource, LocalError, PutOptions, TransferClient};
use smolsock::wire::crc32::Crc32;
use smolsock::wire::frame::{FrameReader, HeaderFormat};
use smolsock::wire::transfer::FileName;
use static_cell::ConstStaticCell;

use crate::cost;
use crate::link::{self, End, Wire};
use crate::services::{self, ECHO_PORT, EmbassyClock, FRAMED_PORT, HTTP_PORT, TRANSFER_PORT};
use crate::{MAC_ADDRESS, SOCKETS, unwrap_spawn};

const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const SERVER_V4: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
const SERVER_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
const CLIENT_V4: Ipv4Address = Ipv4Address::new(192, 168, 69, 2);
/// Everyone on the two stacks' /24.
const SUBNET_BROADCAST: IpAddress = IpAddress::Ipv4(Ipv4Address::new(192, 168, 69, 255));
const CLIENT_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2);

/// Every check's deadline, in the emulated board's time.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Datagrams sent before the UDP check gives up (the first waits on ARP).
const UDP_TRIES: u32 = 5;
/// Connections tried before a client gives up: refused ones, 100 ms apart.
const CONNECT_TRIES: u32 = 20;
/// The raw echo's bytes.
const ECHO_BYTES: usize = 16 * 1024;
/// The glued frames: 50, bodies up to 160 bytes.
const FRAMES: usize = 50;
const FRAME_MAX: usize = 160;
/// The transfer's file: 256 KiB of a pattern.
const FILE_BYTES: u64 = 256 * 1024;
/// The client's frame storage (header included): the server's maximum body.
const TRANSFER_BUFFER: usize = 1024 + 4;

static SERVER_TO_CLIENT: Wire = Wire::new();
static CLIENT_TO_SERVER: Wire = Wire::new();
/// The services' sockets and the cost measurement's socket loop.
static SERVER_RESOURCES: ConstStaticCell<StackResources<{ SOCKETS + 1 }>> =
    ConstStaticCell::new(StackResources::new());
/// One TCP socket and one UDP socket at a time.
static CLIENT_RESOURCES: ConstStaticCell<StackResources<2>> =
    ConstStaticCell::new(StackResources::new());

/// Brings up both stacks, the services and the client; the client ends the run.
pub fn spawn(spawner: Spawner) {
    let (Some(server_resources), Some(client_resources)) =
        (SERVER_RESOURCES.try_take(), CLIENT_RESOURCES.try_take())
    else {
        crate::fatal("the stacks' resources were taken twice");
    };
    let seed = embassy_time::Instant::now().as_ticks();
    let (server, server_runner) = embassy_net::new(
        End::new(&SERVER_TO_CLIENT, &CLIENT_TO_SERVER, MAC_ADDRESS),
        config(SERVER_V4, SERVER_V6),
        server_resources,
        seed ^ 0x5eed,
    );
    let (client, client_runner) = embassy_net::new(
        End::new(&CLIENT_TO_SERVER, &SERVER_TO_CLIENT, CLIENT_MAC),
        config(CLIENT_V4, CLIENT_V6),
        client_resources,
        seed.rotate_left(32),
    );
    spawner.spawn(unwrap_spawn(link_task(server_runner)));
    spawner.spawn(unwrap_spawn(link_task(client_runner)));
    services::spawn_all(spawner, server);
    cost::spawn_plain_echo(spawner, server);
    spawner.spawn(unwrap_spawn(client_task(client)));
}

fn config(v4: Ipv4Address, v6: Ipv6Address) -> Config {
    let mut config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(v4, 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    config.ipv6 = ConfigV6::Static(StaticConfigV6 {
        address: Ipv6Cidr::new(v6, 64),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    config
}

#[embassy_executor::task(pool_size = 2)]
async fn link_task(mut runner: Runner<'static, End>) -> ! {
    runner.run().await
}

/// Tallies the checks and prints one line for each.
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(
        &mut self,
        name: &str,
        outcome: Result<Result<(), &'static str>, embassy_time::TimeoutError>,
    ) {
        match outcome {
            Ok(Ok(())) => {
                self.passed = self.passed.saturating_add(1);
                log::info!("selftest ok   {name}");
            }
            Ok(Err(why)) => {
                self.failed = self.failed.saturating_add(1);
                log::error!("selftest FAIL {name}: {why}");
            }
            Err(_) => {
                self.failed = self.failed.saturating_add(1);
                log::error!(
                    "selftest FAIL {name}: no answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                );
            }
        }
    }
}

#[embassy_executor::task]
async fn client_task(stack: Stack<'static>) -> ! {
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    let v4 = IpAddress::Ipv4(SERVER_V4);
    let v6 = IpAddress::Ipv6(SERVER_V6);
    tally.record(
        "udp/7: a datagram echoed over IPv4",
        with_timeout(CHECK_TIMEOUT, udp_echo(stack, v4)).await,
    );
    tally.record(
        "udp/7: a datagram echoed over IPv6",
        with_timeout(CHECK_TIMEOUT, udp_echo(stack, v6)).await,
    );
    tally.record(
        "udp/7: a datagram to the subnet's broadcast is echoed from our own address",
        with_timeout(CHECK_TIMEOUT, udp_echo(stack, SUBNET_BROADCAST)).await,
    );
    tally.record(
        "udp/7: a neighbour that never answers ARP does not wedge the echo",
        with_timeout(CHECK_TIMEOUT, udp_stuck_neighbour(stack, v4)).await,
    );
    tally.record(
        "tcp/7: 16 KiB echoed over IPv4",
        with_timeout(CHECK_TIMEOUT, tcp_echo(stack, v4)).await,
    );
    tally.record(
        "tcp/7: 16 KiB echoed over IPv6 on the next connection",
        with_timeout(CHECK_TIMEOUT, tcp_echo(stack, v6)).await,
    );
    tally.record(
        "tcp/9000: 50 frames glued in one write come back whole",
        with_timeout(CHECK_TIMEOUT, glued_frames(stack, v6)).await,
    );
    #[cfg(not(feature = "live"))]
    tally.record(
        "http: the status page fits with every counter at its largest",
        Ok(status_page_fits()),
    );
    tally.record(
        "tcp/80: GET /stats answers 200 with the counters",
        with_timeout(CHECK_TIMEOUT, http_get(stack, v4)).await,
    );
    tally.record(
        "tcp/2121: 256 KiB put (IPv4) and get (IPv6), CRC-32 checked",
        with_timeout(CHECK_TIMEOUT, transfer(stack, v4, v6)).await,
    );
    tally.record(
        "cost: 1 MiB echoed through each path, every byte checked",
        Ok(cost::measure(stack, v4).await),
    );
    log_link_drops();
    tally.record(
        "stack: high-water mark below the stack's size",
        Ok(stack_fits()),
    );
    log::info!("selftest: {} passed, {} failed", tally.passed, tally.failed);
    let exit = if tally.failed == 0 {
        cortex_m_semihosting::debug::EXIT_SUCCESS
    } else {
        cortex_m_semihosting::debug::EXIT_FAILURE
    };
    cortex_m_semihosting::debug::exit(exit);
    loop {
        embassy_time::Timer::after_secs(1).await;
    }
}

async fn udp_echo(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    echo_within(stack, server, b"a datagram through two stacks", UDP_TRIES)
        .await
        .map(|_| ())
}

/// Sends `message` to udp/7 of `server` from a port of its own until it comes
/// back, at most `tries` times, half a second apart: the tries it took.
async fn echo_within(
    stack: Stack<'static>,
    server: IpAddress,
    message: &[u8],
    tries: u32,
) -> Result<u32, &'static str> {
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    socket.bind(0).map_err(|_| "bind failed")?;
    let to = IpEndpoint::new(server, ECHO_PORT);
    let mut back = [0u8; 64];
    for attempt in 0..tries {
        socket
            .send_to(message, to)
            .await
            .map_err(|_| "send_to failed")?;
        if let Ok(Ok((len, _))) =
            with_timeout(Duration::from_millis(500), socket.recv_from(&mut back)).await
        {
            return if back.get(..len) == Some(message) {
                Ok(attempt)
            } else {
                Err("the echo differs")
            };
        }
    }
    Err("no echo")
}

/// A datagram to udp/7 from 192.168.69.9, an address nobody answers ARP for
/// (the client stack sends it from a socket bound to that address, which is
/// not one of its own, so it ignores the server's ARP requests for it): the
/// server's reply to it can never leave. Then an ordinary client
/// (192.168.69.2) must still get its echoes, tried for 20 s, well past the
/// service's 3 s send wait; its tries that waited to be read while the reply
/// was stuck must be counted as dropped when the queue is emptied.
async fn udp_stuck_neighbour(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    {
        let mut rx_meta = [PacketMetadata::EMPTY; 1];
        let mut tx_meta = [PacketMetadata::EMPTY; 1];
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        let mut ghost = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
        ghost
            .bind(IpEndpoint::new(
                IpAddress::Ipv4(Ipv4Address::new(192, 168, 69, 9)),
                4000,
            ))
            .map_err(|_| "ghost bind failed")?;
        ghost
            .send_to(b"from nobody", IpEndpoint::new(server, ECHO_PORT))
            .await
            .map_err(|_| "ghost send_to failed")?;
        ghost.flush().await;
        embassy_time::Timer::after_millis(200).await;
    }
    let tries = echo_within(stack, server, b"an ordinary client", 40)
        .await
        .map_err(
            |_| "no echo for 20 s after one datagram from a neighbour that never answers ARP",
        )?;
    let unread = crate::status::snapshot().udp.unread_dropped;
    log::info!("udp/7: echoed again after {tries} unanswered tries, {unread} dropped unread");
    if unread == 0 {
        return Err("the tries that waited to be read were dropped uncounted");
    }
    Ok(())
}

/// A TCP connection to `port`, with the given buffers.
///
/// embassy-net has no listen backlog: while a port's every task is busy, or
/// still closing its last connection, a SYN is answered with a reset. As a
/// client of the firmware should, this tries again after 100 ms, a bounded
/// number of times, and logs how often it was refused.
pub(crate) async fn connect<'a>(
    stack: Stack<'static>,
    server: IpAddress,
    port: u16,
    rx: &'a mut [u8],
    tx: &'a mut [u8],
) -> Result<TcpSocket<'a>, &'static str> {
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket.set_timeout(Some(Duration::from_secs(30)));
    for refused in 0..CONNECT_TRIES {
        match socket.connect(IpEndpoint::new(server, port)).await {
            Ok(()) => {
                if refused > 0 {
                    log::info!("tcp/{port}: connected after {refused} refusals");
                }
                return Ok(socket);
            }
            Err(_) => {
                socket.abort();
                let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
                embassy_time::Timer::after_millis(100).await;
            }
        }
    }
    Err("every connection refused")
}

/// Closes our side and waits, bounded, for the peer's FIN to be acknowledged.
async fn close(mut socket: TcpSocket<'_>) {
    socket.close();
    let _ = with_timeout(Duration::from_secs(5), socket.flush()).await;
}

async fn tcp_echo(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    use embedded_io_async::{Read, Write};
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let mut socket = connect(stack, server, ECHO_PORT, &mut rx, &mut tx).await?;
    let mut chunk = [0u8; 512];
    let mut back = [0u8; 512];
    let mut offset = 0usize;
    while offset < ECHO_BYTES {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = (offset.wrapping_add(i) % 251) as u8;
        }
        socket.write_all(&chunk).await.map_err(|_| "write failed")?;
        socket
            .read_exact(&mut back)
            .await
            .map_err(|_| "the echo ended early")?;
        if back != chunk {
            return Err("the echo differs");
        }
        offset = offset.saturating_add(chunk.len());
    }
    close(socket).await;
    Ok(())
}

/// Body `i` of the glued exchange: lengths 0 to 159, contents that differ.
fn frame_body(i: usize, out: &mut [u8; FRAME_MAX]) -> &[u8] {
    let len = (i * 37) % FRAME_MAX;
    for (j, byte) in out.iter_mut().take(len).enumerate() {
        *byte = (i as u8).wrapping_mul(31) ^ j as u8;
    }
    out.get(..len).unwrap_or_default()
}

async fn glued_frames(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    use embedded_io_async::Write;
    let format = HeaderFormat::NETWORK
        .with_max_len(FRAME_MAX as u32)
        .map_err(|_| "frame format")?;
    // Every frame, header and body, in one buffer, sent with one write.
    let mut glued = [0u8; FRAMES * (FRAME_MAX + 4)];
    let mut len = 0usize;
    let mut body = [0u8; FRAME_MAX];
    for i in 0..FRAMES {
        let body = frame_body(i, &mut body);
        let header = format.header(body.len()).map_err(|_| "header")?;
        for piece in [header.as_bytes(), body] {
            let end = len.saturating_add(piece.len());
            glued
                .get_mut(len..end)
                .ok_or("glued buffer too small")?
                .copy_from_slice(piece);
            len = end;
        }
    }
    let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
    let mut socket = connect(stack, server, FRAMED_PORT, &mut rx, &mut tx).await?;
    socket
        .write_all(glued.get(..len).unwrap_or_default())
        .await
        .map_err(|_| "write failed")?;
    let mut reader = FrameReader::new([0u8; FRAME_MAX + 4], format).map_err(|_| "frame storage")?;
    let mut expected = [0u8; FRAME_MAX];
    for i in 0..FRAMES {
        let frame = asynch::read_frame(&mut socket, &mut reader)
            .await
            .map_err(|_| "a broken frame")?
            .ok_or("closed before every frame came back")?;
        if frame != frame_body(i, &mut expected) {
            return Err("a frame came back changed");
        }
    }
    close(socket).await;
    Ok(())
}

async fn http_get(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    use embedded_io_async::Write;
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 512]);
    let mut socket = connect(stack, server, HTTP_PORT, &mut rx, &mut tx).await?;
    socket
        .write_all(b"GET /stats HTTP/1.1\r\nHost: firmware\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|_| "write failed")?;
    let mut page = [0u8; 4096];
    let mut len = 0usize;
    loop {
        let Some(space) = page.get_mut(len..).filter(|space| !space.is_empty()) else {
            return Err("the answer is over 4 KiB");
        };
        match socket.read(space).await {
            Ok(0) => break,
            Ok(n) => len = len.saturating_add(n),
            Err(_) => return Err("read failed"),
        }
    }
    close(socket).await;
    let page =
        core::str::from_utf8(page.get(..len).unwrap_or_default()).map_err(|_| "not UTF-8")?;
    if !page.starts_with("HTTP/1.1 200") {
        return Err("not 200 OK");
    }
    // The echoes before this one show on the page.
    if !(page.contains("frames echoed") && page.contains("requests:")) {
        return Err("no counters on the page");
    }
    Ok(())
}

#[cfg(not(feature = "live"))]
#[path = "../../firmware/src/widest.rs"]
mod widest;

/// The status page fits its buffer with every counter at its largest
/// ([`widest`](widest::widest)), and so does the counters' text the live
/// page's room is set for.
#[cfg(not(feature = "live"))]
fn status_page_fits() -> Result<(), &'static str> {
    use crate::live::PAGE_MAX;
    use crate::status::{Counters, STATUS_WIDEST, TITLE, write_status};
    let mut boot = heapless::String::<4096>::new();
    write_status(&Counters::ZERO, &lan9118::Stats::default(), 0, &mut boot)
        .map_err(|_| "the counters' text at boot is over 4 KiB")?;
    widest::status_page_fits(&boot, TITLE, PAGE_MAX, STATUS_WIDEST)
}

/// The transfer's file, made on the fly: `FILE_BYTES` of a pattern.
struct Pattern;

fn pattern_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(7) ^ (offset >> 9)) as u8
}

impl FileSource for Pattern {
    fn size(&self) -> u64 {
        FILE_BYTES
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let mut n = 0usize;
        for (at, byte) in (offset..FILE_BYTES).zip(buf.iter_mut()) {
            *byte = pattern_byte(at);
            n = n.saturating_add(1);
        }
        Ok(n)
    }
}

/// Checks each downloaded byte against the pattern as it arrives.
struct PatternCheck {
    received: u64,
    differs: bool,
    completed: Option<FileStat>,
}

impl FileSink for PatternCheck {
    fn restart(&mut self) -> Result<(), LocalError> {
        self.received = 0;
        self.differs = false;
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        for (at, byte) in (offset..).zip(bytes) {
            self.differs |= *byte != pattern_byte(at);
        }
        self.received = offset.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn complete(&mut self, stat: FileStat) -> Result<(), LocalError> {
        self.completed = Some(stat);
        Ok(())
    }
}

async fn transfer(
    stack: Stack<'static>,
    upload_to: IpAddress,
    download_from: IpAddress,
) -> Result<(), &'static str> {
    let mut crc = Crc32::new();
    let mut piece = [0u8; 256];
    let mut at = 0u64;
    while at < FILE_BYTES {
        let n = Pattern.read(at, &mut piece).map_err(|_| "pattern")?;
        crc.update(piece.get(..n).unwrap_or_default());
        at = at.saturating_add(n as u64);
    }
    let expected = FileStat {
        size: FILE_BYTES,
        crc: crc.finish(),
    };
    let name = FileName::new("selftest.bin").map_err(|_| "file name")?;
    let (mut receive, mut staging) = ([0u8; TRANSFER_BUFFER], [0u8; TRANSFER_BUFFER]);
    let mut client =
        TransferClient::new(&mut receive[..], &mut staging[..]).map_err(|_| "client buffers")?;
    let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
    let (mut io_rx, mut io_tx) = ([0u8; 512], [0u8; 512]);

    let socket = connect(stack, upload_to, TRANSFER_PORT, &mut rx, &mut tx).await?;
    let mut conn = Connection::new(socket, &mut io_rx, &mut io_tx);
    let options = PutOptions {
        resume: false,
        crc: Some(expected.crc),
    };
    let mut put = client.put(name, Pattern, options, |_, _| {});
    let stored = conn
        .run_request(&mut put, &EmbassyClock)
        .await
        .map_err(|_| "the upload's connection failed")?
        .map_err(|_| "the server refused the upload")?;
    drop(put);
    if stored != expected {
        return Err("the server stored another size or CRC-32");
    }
    close(conn.into_inner()).await;

    client.reset();
    let socket = connect(stack, download_from, TRANSFER_PORT, &mut rx, &mut tx).await?;
    let mut conn = Connection::new(socket, &mut io_rx, &mut io_tx);
    let mut sink = PatternCheck {
        received: 0,
        differs: false,
        completed: None,
    };
    let mut get = client.get(name, &mut sink, false, |_, _| {});
    let got = conn
        .run_request(&mut get, &EmbassyClock)
        .await
        .map_err(|_| "the download's connection failed")?
        .map_err(|_| "the server refused the download, or its CRC-32 did not match")?;
    drop(get);
    close(conn.into_inner()).await;
    if got != expected || sink.completed != Some(expected) || sink.received != FILE_BYTES {
        return Err("the download's size or CRC-32 differs");
    }
    if sink.differs {
        return Err("a downloaded byte differs");
    }
    log::info!(
        "selftest: {} KiB up and down, CRC-32 {:08x}",
        FILE_BYTES / 1024,
        expected.crc
    );
    Ok(())
}

/// A frame dropped by a full wire costs a retransmission, not a failure: shown,
/// not checked.
fn log_link_drops() {
    let dropped = SERVER_TO_CLIENT
        .dropped()
        .saturating_add(CLIENT_TO_SERVER.dropped());
    log::info!(
        "link: {dropped} frames dropped by a full wire (each holds {})",
        link::SLOTS
    );
}

fn stack_fits() -> Result<(), &'static str> {
    let (used, size) = crate::stack::high_water();
    log::info!("ram: stack high-water mark {used} B of {size} B");
    if used < size {
        Ok(())
    } else {
        Err("the stack reached the statics below it")
    }
}
