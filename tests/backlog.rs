//! The listen backlog (`net::Backlog`) in the simulated network: what it changes for
//! a `TcpServer` pool, with the backlog on (the `SimConfig` default) and off.
//!
//! Every run is seeded and on virtual time: no test sleeps, and every loop is
//! bounded by a limit of virtual time. A capture sink (`Wire`) records each TCP
//! segment put on the wire, so the tests can look for RSTs, read sequence numbers,
//! and time SYNs. Run with `--nocapture` to see the figures.

mod common_sim;
use common_sim::{run_for, tcp_segment_frame};

use smolsock::net::{Service, TcpServer};
use smolsock::runner::sim::{
    CLIENT_MAC, CLIENT_V4, Direction, FaultConfig, SERVER_V4, SERVER_V6, SimConfig, SimNet,
};
use smolsock::session::{Echo, Session, Status};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::socket::{AnySocket, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

const SEED: u64 = 0x5eed;
const PORT: u16 = 7;
/// Socket buffers on both hosts: a 64 KiB receive window.
const BUFFER: usize = 64 * 1024;
/// A LAN: 1 ms one way, 10 Mbit/s.
const LINK: FaultConfig = FaultConfig::CLEAN
    .with_delay(Duration::from_millis(1))
    .with_bandwidth(10_000_000);

// ---------------------------------------------------------------------------
// The rig: a network whose sockets live in vectors, a capture of TCP segments.

type Net = SimNet<'static, 64, Wire>;

fn sim(backlog: bool) -> Net {
    sim_over(backlog, LINK)
}

fn sim_over(backlog: bool, link: FaultConfig) -> Net {
    let storage = || (0..8).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>();
    SimNet::<'static, 64>::new(
        SimConfig::new(SEED).with_faults(link).with_backlog(backlog),
        SocketSet::new(storage()),
        SocketSet::new(storage()),
    )
    .with_pcap(Wire::default())
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    )
}

/// A pool of `N` slots on `PORT`, one `S` each, listening.
fn pool<S: Session, const N: usize>(net: &mut Net, sessions: [S; N]) -> TcpServer<S, N> {
    let handles = core::array::from_fn(|_| net.server.sockets.add(tcp_socket()));
    TcpServer::new(&mut net.server.sockets, PORT, handles, sessions).unwrap()
}

fn echo_pool<const N: usize>(net: &mut Net) -> TcpServer<Echo, N> {
    pool(net, core::array::from_fn(|_| Echo::new()))
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One TCP segment as it went on the wire.
#[derive(Clone, Copy, Debug)]
struct Segment {
    at: Instant,
    from_server: bool,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    rst: bool,
    fin: bool,
}

/// A capture that keeps the TCP segments of every frame put on the wire, injected
/// ones included.
#[derive(Default)]
struct Wire(Vec<Segment>);

impl PcapSink for Wire {
    fn write(&mut self, _data: &[u8]) {}

    fn global_header(&mut self, _link_type: PcapLinkType) {}

    fn packet(&mut self, at: Instant, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let (src, payload) = match eth.ethertype() {
            EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
                Ok(ip) if ip.next_header() == IpProtocol::Tcp => {
                    (IpAddress::Ipv4(ip.src_addr()), ip.payload())
                }
                _ => return,
            },
            EthernetProtocol::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
                Ok(ip) if ip.next_header() == IpProtocol::Tcp => {
                    (IpAddress::Ipv6(ip.src_addr()), ip.payload())
                }
                _ => return,
            },
            _ => return,
        };
        let Ok(tcp) = TcpPacket::new_checked(payload) else {
            return;
        };
        self.0.push(Segment {
            at,
            from_server: src == SERVER_V4.into() || src == SERVER_V6.into(),
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number().0 as u32,
            ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
            syn: tcp.syn(),
            rst: tcp.rst(),
            fin: tcp.fin(),
        });
    }
}

impl Wire {
    /// What the server sent to the client's `port`.
    fn to_client(&self, port: u16) -> impl Iterator<Item = &Segment> {
        self.0
            .iter()
            .filter(move |s| s.from_server && s.dst_port == port)
    }

    /// RSTs the server sent to the client's `port`.
    fn resets_to(&self, port: u16) -> usize {
        self.to_client(port).filter(|s| s.rst).count()
    }

    /// When the client's `port` first sent a SYN.
    fn first_syn_from(&self, port: u16) -> Option<Instant> {
        self.0
            .iter()
            .find(|s| !s.from_server && s.src_port == port && s.syn)
            .map(|s| s.at)
    }

    /// The ACK number of the last segment the server sent to the client's `port`:
    /// the one sequence number a RST from the client must carry.
    fn last_ack_to(&self, port: u16) -> u32 {
        self.to_client(port).filter_map(|s| s.ack).last().unwrap()
    }
}

/// An Ethernet frame carrying one IPv4 TCP segment with no payload.
fn tcp_frame(
    (src_mac, src): (EthernetAddress, Ipv4Address),
    src_port: u16,
    control: TcpControl,
    seq: u32,
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port: PORT,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: if control == TcpControl::Syn { 64240 } else { 0 },
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    tcp_segment_frame(src_mac, src, &tcp)
}

// ---------------------------------------------------------------------------
// A client connection driven by hand: connect, send a message, read the echo,
// close.

struct EchoClient {
    handle: SocketHandle,
    server: IpAddress,
    port: u16,
    message: Vec<u8>,
    sent: usize,
    echo: Vec<u8>,
    connect_at: Option<Instant>,
    established_at: Option<Instant>,
    /// The socket closed before it was ever established (a RST to its SYN).
    refused: bool,
    /// Close once the whole echo is back (else keep the connection open).
    close_when_echoed: bool,
    closed: bool,
    /// The address to connect from: the interface's own, unless set.
    from: Option<IpAddress>,
}

impl EchoClient {
    fn new(net: &mut Net, port: u16) -> Self {
        Self::to(SERVER_V4.into(), net, port)
    }

    /// A client of the server's address `server`.
    fn to(server: IpAddress, net: &mut Net, port: u16) -> Self {
        Self {
            handle: net.client.sockets.add(tcp_socket()),
            server,
            port,
            message: format!("hello from port {port}").repeat(20).into_bytes(),
            sent: 0,
            echo: Vec::new(),
            connect_at: None,
            established_at: None,
            refused: false,
            close_when_echoed: true,
            closed: false,
            from: None,
        }
    }

    /// The same client, connecting from `from`.
    fn from(mut self, from: IpAddress) -> Self {
        self.from = Some(from);
        self
    }

    fn connect(&mut self, net: &mut Net) {
        let (socket, cx) = net
            .client
            .socket_and_context::<tcp::Socket>(self.handle)
            .unwrap();
        match self.from {
            Some(from) => socket.connect(cx, (self.server, PORT), (from, self.port)),
            None => socket.connect(cx, (self.server, PORT), self.port),
        }
        .unwrap();
        self.connect_at = Some(net.now());
    }

    /// Time from `connect` to ESTABLISHED.
    fn connect_time(&self) -> Option<Duration> {
        Some(self.established_at? - self.connect_at?)
    }

    fn poll(&mut self, net: &mut Net) {
        let now = net.now();
        let socket = net.client.sockets.get_mut::<tcp::Socket>(self.handle);
        if self.connect_at.is_none() || self.refused {
            return;
        }
        if self.established_at.is_none() {
            match socket.state() {
                tcp::State::SynSent => return,
                tcp::State::Closed => {
                    self.refused = true;
                    return;
                }
                _ => self.established_at = Some(now),
            }
        }
        if socket.can_send() && self.sent < self.message.len() {
            self.sent += socket.send_slice(&self.message[self.sent..]).unwrap();
        }
        while socket.can_recv() {
            socket
                .recv(|bytes| {
                    self.echo.extend_from_slice(bytes);
                    (bytes.len(), ())
                })
                .unwrap();
        }
        if self.close_when_echoed && !self.closed && self.echo.len() >= self.message.len() {
            socket.close();
            self.closed = true;
        }
    }

    fn echoed(&self) -> bool {
        self.echo == self.message
    }

    /// Echoed, closed by us, and the close is through (TIME-WAIT or gone).
    fn done(&self, net: &Net) -> bool {
        let state = net.client.sockets.get::<tcp::Socket>(self.handle).state();
        self.echoed() && self.closed && matches!(state, tcp::State::TimeWait | tcp::State::Closed)
    }

    /// Gives up on the connection, if it is not over.
    fn abort(&mut self, net: &mut Net) {
        let socket = net.client.sockets.get_mut::<tcp::Socket>(self.handle);
        socket.abort();
    }
}

// ---------------------------------------------------------------------------
// 1. A client that reconnects the moment it closed, on a pool of one slot.

struct Reconnect {
    second: EchoClient,
    /// RSTs the server sent to the second connection.
    resets: usize,
    /// From the second connection's first SYN on the wire to ESTABLISHED.
    syn_to_established: Option<Duration>,
}

fn quick_reconnect(backlog: bool) -> Reconnect {
    let mut net = sim(backlog);
    let mut server = echo_pool::<1>(&mut net);
    let mut first = EchoClient::new(&mut net, 49152);
    let mut second = EchoClient::new(&mut net, 49153);
    first.connect(&mut net);
    let _ = net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        first.poll(net);
        // The moment the client has closed the first, it opens the second.
        if first.closed && second.connect_at.is_none() {
            second.connect(net);
        }
        second.poll(net);
        (first.done(net) && (second.done(net) || second.refused)).then_some(())
    });
    assert!(first.done(&net), "the first connection was served");
    let syn = net.capture().first_syn_from(second.port).unwrap();
    Reconnect {
        resets: net.capture().resets_to(second.port),
        syn_to_established: second.established_at.map(|at| at - syn),
        second,
    }
}

#[test]
fn a_client_reconnecting_at_once_to_a_busy_pool_of_one_is_held_then_served() {
    let run = quick_reconnect(true);
    assert!(run.second.echoed(), "the second connection was served");
    assert_eq!(run.resets, 0, "the second connection was never reset");
    let took = run.syn_to_established.unwrap();
    println!("quick reconnect, pool of 1: second SYN to ESTABLISHED in {took}");
    // Served as soon as the slot is free again (a few round trips of 2 ms), not
    // after the client's SYN retransmission (1 s).
    assert!(took < ms(100), "took {took}");
}

#[test]
fn without_the_backlog_a_client_reconnecting_at_once_is_reset() {
    let run = quick_reconnect(false);
    assert!(run.second.refused, "the second connect was refused");
    assert!(!run.second.echoed());
    assert_eq!(run.resets, 1);
}

// ---------------------------------------------------------------------------
// 2. A burst of 4N clients at once on a pool of N.

/// Serves `4 × N` clients that all connect at once; returns the virtual time until
/// every one had its echo and closed, and the RSTs the server sent them.
fn burst<const N: usize>(backlog: bool, address: IpAddress) -> (Result<Duration, usize>, usize) {
    burst_over::<N>(backlog, address, LINK)
}

/// [`burst`] over `link`.
fn burst_over<const N: usize>(
    backlog: bool,
    address: IpAddress,
    link: FaultConfig,
) -> (Result<Duration, usize>, usize) {
    let mut net = sim_over(backlog, link);
    let mut server = echo_pool::<N>(&mut net);
    let mut clients: Vec<EchoClient> = (0..4 * N as u16)
        .map(|i| EchoClient::to(address, &mut net, 49152 + i))
        .collect();
    let start = net.now();
    for client in &mut clients {
        client.connect(&mut net);
    }
    let served = net.run_services(&mut server, &mut (), secs(30), |_, _, net| {
        for client in &mut clients {
            client.poll(net);
        }
        let settled = clients.iter().all(|c| c.done(net) || c.refused);
        settled.then(|| net.now() - start)
    });
    let resets = clients
        .iter()
        .map(|c| net.capture().resets_to(c.port))
        .sum();
    let unserved = clients.iter().filter(|c| !c.echoed()).count();
    println!(
        "burst of {} on a pool of {N} over {address} (backlog {}): {} | server: {} | backlog: {}",
        4 * N,
        if backlog { "on" } else { "off" },
        match served {
            Ok(took) if unserved == 0 => format!("all served in {took}"),
            _ => format!("{unserved} not served"),
        },
        server.stats(),
        net.server.backlog.stats(),
    );
    match served {
        Ok(took) if unserved == 0 => (Ok(took), resets),
        _ => (Err(unserved), resets),
    }
}

#[test]
fn a_burst_of_8_clients_on_a_pool_of_2_is_served_without_a_reset() {
    let (served, resets) = burst::<2>(true, SERVER_V4.into());
    assert_eq!(resets, 0);
    let took = served.unwrap();
    assert!(took < secs(3), "took {took}");
}

#[test]
fn a_burst_of_16_clients_on_a_pool_of_4_is_served_without_a_reset() {
    let (served, resets) = burst::<4>(true, SERVER_V4.into());
    assert_eq!(resets, 0);
    let took = served.unwrap();
    assert!(took < secs(3), "took {took}");
}

/// Over IPv6 the client sends no ARP: its neighbor solicitation tells the backlog
/// it is there.
#[test]
fn a_burst_of_8_clients_over_ipv6_on_a_pool_of_2_is_served_without_a_reset() {
    let (served, resets) = burst::<2>(true, SERVER_V6.into());
    assert_eq!(resets, 0);
    let took = served.unwrap();
    assert!(took < secs(3), "took {took}");
}

/// A handshake takes a round trip of 120 ms here, longer than a held SYN lets a
/// handshake wait before it evicts it: the client's neighbor solicitation shows
/// it is there, as ARP does over IPv4, so its handshakes are left alone.
#[test]
fn a_burst_over_ipv6_with_a_120_ms_round_trip_is_served_without_a_reset() {
    let far = LINK.with_delay(Duration::from_millis(60));
    for address in [SERVER_V6.into(), SERVER_V4.into()] {
        let (served, resets) = burst_over::<2>(true, address, far);
        assert_eq!(resets, 0, "{address}");
        let took = served.unwrap();
        assert!(took < secs(5), "{address}: took {took}");
    }
}

#[test]
fn without_the_backlog_a_burst_beyond_the_pool_is_reset() {
    let (served, resets) = burst::<2>(false, SERVER_V4.into());
    assert_eq!(served, Err(6), "only the pool's 2 are served");
    assert_eq!(resets, 6);
}

// ---------------------------------------------------------------------------
// 3. A SYN flood from spoofed addresses while a real client connects 20 times.

/// Forged SYNs at a fixed rate from 10.0.0.50..=10.0.0.250, addresses no host has:
/// the server's ARP for them goes unanswered, so its SYN-ACK never leaves and the
/// slot stays in SYN-RECEIVED.
struct Flood {
    next: Instant,
    every: Duration,
    sent: u32,
    /// The forged addresses' first three bytes.
    from: [u8; 3],
}

impl Flood {
    const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x66]);

    /// Injects every SYN due by now.
    fn fire(&mut self, net: &mut Net) {
        while net.now() >= self.next {
            let host = 50 + (self.sent % 201) as u8;
            let [a, b, c] = self.from;
            let src = (Self::MAC, Ipv4Address::new(a, b, c, host));
            let port = 1024 + (self.sent % 50_000) as u16;
            let frame = tcp_frame(
                src,
                port,
                TcpControl::Syn,
                self.sent.wrapping_mul(2_654_435_761),
            );
            net.inject_frame(Direction::ClientToServer, &frame);
            self.sent += 1;
            self.next += self.every;
        }
    }
}

/// No work of its own: the flood's timer, so the loop wakes for every SYN.
impl Service for Flood {
    fn poll(&mut self, _sockets: &mut SocketSet<'_>, _now: Instant) {}

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        Some(self.next)
    }
}

struct FloodRun {
    /// Each attempt's time from `connect` to ESTABLISHED, `None` if it never was.
    connects: Vec<Option<Duration>>,
    /// Attempts answered with a RST.
    refused: usize,
}

impl FloodRun {
    fn within(&self, limit: Duration) -> usize {
        let connected = self.connects.iter().flatten();
        connected.filter(|&&t| t <= limit).count()
    }

    fn worst(&self) -> Option<Duration> {
        self.connects.iter().flatten().max().copied()
    }
}

/// Floods a pool of `N` (from `phase` on, 10 SYNs a second) and after 5 s lets a
/// real client connect 20 times, one attempt a second (connect, echo, close), while
/// the flood goes on. An attempt not established within 10 s is given up.
fn connects_under_flood<const N: usize>(backlog: bool, phase: Duration) -> FloodRun {
    connects_under_flood_from::<N>(backlog, phase, [10, 0, 0], false)
}

/// [`connects_under_flood`], the forged SYNs from `from`.0-255 (beyond a
/// router unless 10.0.0), the real client beyond a router if `far`.
fn connects_under_flood_from<const N: usize>(
    backlog: bool,
    phase: Duration,
    from: [u8; 3],
    far: bool,
) -> FloodRun {
    let mut net = sim(backlog);
    let beyond = (from != [10, 0, 0] || far).then(|| beyond_a_router(&mut net));
    let mut server = echo_pool::<N>(&mut net);
    let mut flood = Flood {
        next: net.now() + phase,
        every: ms(100),
        sent: 0,
        from,
    };
    let mut run = FloodRun {
        connects: Vec::new(),
        refused: 0,
    };
    for i in 0..20 {
        let start = Instant::from_secs(5 + i64::from(i));
        let wait = Duration::from_micros((start - net.now()).total_micros());
        if net.now() < start {
            let _ = net.run_services(&mut server, &mut flood, wait, |_, flood, net| {
                flood.fire(net);
                None::<()>
            });
        }
        let mut client = EchoClient::new(&mut net, 50000 + i);
        if let Some(remote) = beyond.filter(|_| far) {
            client = client.from(remote.into());
        }
        client.connect(&mut net);
        let _ = net.run_services(&mut server, &mut flood, secs(10), |_, flood, net| {
            flood.fire(net);
            client.poll(net);
            (client.done(net) || client.refused).then_some(())
        });
        client.abort(&mut net);
        run.refused += usize::from(client.refused);
        run.connects.push(client.connect_time());
        net.client.sockets.remove(client.handle);
    }
    let times: Vec<String> = run
        .connects
        .iter()
        .map(|t| t.map_or("-".into(), |t| t.total_millis().to_string()))
        .collect();
    println!(
        "SYN flood at 10/s from {}.x on a pool of {N} (backlog {}, phase {phase}, client {}): \
         {} SYNs forged; {}/20 connected within 3 s, {} refused, worst {}; connect ms: {} | \
         server: {} | backlog: {}",
        from.map(|b| b.to_string()).join("."),
        if backlog { "on" } else { "off" },
        if far {
            "beyond a router"
        } else {
            "on the link"
        },
        flood.sent,
        run.within(secs(3)),
        run.refused,
        run.worst().map_or("-".into(), |t| t.to_string()),
        times.join(" "),
        server.stats(),
        net.server.backlog.stats(),
    );
    run
}

#[test]
fn under_a_syn_flood_a_real_client_still_connects_within_3_s() {
    // The client's attempts start on whole seconds: once in step with the forged
    // SYNs, once between them.
    for phase in [ms(0), ms(50)] {
        let run = connects_under_flood::<2>(true, phase);
        assert!(run.within(secs(3)) >= 19, "{:?}", run.connects);
        assert_eq!(run.refused, 0);
    }
}

#[test]
fn under_a_syn_flood_from_beyond_a_router_a_real_client_still_connects_within_3_s() {
    for phase in [ms(0), ms(50)] {
        let run = connects_under_flood_from::<2>(true, phase, [172, 16, 0], false);
        assert!(run.within(secs(3)) >= 19, "{:?}", run.connects);
        assert_eq!(run.refused, 0);
    }
}

#[test]
fn without_the_backlog_a_syn_flood_locks_a_real_client_out() {
    let run = connects_under_flood::<2>(false, ms(0));
    assert!(run.within(secs(3)) < 19, "{:?}", run.connects);
    assert!(run.refused > 0);
}

// ---------------------------------------------------------------------------
// 4. The server closes while the client keeps sending.

/// Hangs up as soon as anything arrives, and reads none of it.
struct HangUp {
    heard: bool,
}

impl Session for HangUp {
    fn start(&mut self, _now: smolsock::time::Instant) {
        self.heard = false;
    }

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        self.heard |= !input.is_empty();
        0
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, _space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        0
    }

    fn status(&self) -> Status {
        if self.heard {
            Status::Close
        } else {
            Status::Open
        }
    }
}

#[test]
fn a_slot_closed_on_a_peer_that_keeps_sending_is_freed_by_the_close_timeout() {
    let mut net = sim(true);
    let mut server = pool(&mut net, [HangUp { heard: false }]);
    let close_timeout = server.config().close_timeout;
    let limit = Duration::from_micros(close_timeout.total_micros()) + secs(5);
    let port = 49152;
    let client = net.client.sockets.add(tcp_socket());
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    socket.connect(cx, (SERVER_V4, PORT), port).unwrap();
    // The client sends and sends, and never reads or closes.
    let chunk = [0x5a; 1024];
    let mut sent = 0u64;
    let freed_at = net
        .run_services(&mut server, &mut (), limit, |server, _, net| {
            let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
            while socket.can_send() {
                sent += socket.send_slice(&chunk).unwrap() as u64;
            }
            let stats = server.stats();
            let ended = stats.closed + stats.close_timeouts;
            (stats.accepted == 1 && ended == 1 && server.active() == 0).then(|| net.now())
        })
        .unwrap();
    // The RST that freed the slot goes out on the next poll.
    run_for(&mut net, &mut server, &mut (), ms(100));
    let wire = net.capture();
    let closed_at = wire.to_client(port).find(|s| s.fin).unwrap().at;
    let freed_after = freed_at - closed_at;
    let stats = *server.stats();
    // Every byte the server received was read and dropped: the ACK number of the
    // RST that freed the slot is the client's ISN + 1 + that many bytes.
    let isn = wire.0.iter().find(|s| !s.from_server && s.syn).unwrap().seq;
    let reset = wire.to_client(port).find(|s| s.rst).unwrap();
    let received = reset.ack.unwrap().wrapping_sub(isn.wrapping_add(1));
    println!(
        "close with unread data: slot free {freed_after} after the server's FIN \
         (close timeout {close_timeout}); {} bytes discarded of {sent} sent | server: {stats}",
        stats.discarded
    );
    assert_eq!(
        stats.close_timeouts, 1,
        "the peer never closed: the timeout ended it"
    );
    assert_eq!(server.active(), 0);
    let close_timeout = Duration::from_micros(close_timeout.total_micros());
    assert!(freed_after >= close_timeout && freed_after < close_timeout + ms(100));
    assert!(
        stats.discarded > 1_000_000,
        "the client kept sending meanwhile"
    );
    assert_eq!(stats.discarded, u64::from(received));
    assert!(reset.at >= freed_at, "the slot was freed with a RST");
    assert_eq!(server.free_slots(), 1);
}

// ---------------------------------------------------------------------------
// 5. Blind resets stepped across the receive window.

struct BlindResets {
    net: Net,
    server: TcpServer<Echo, 1>,
    client: EchoClient,
    injected: u32,
}

/// An echo connection, then RSTs forged with the client's address and ports and
/// sequence numbers every 4000 across the window, the exact one left out.
fn blind_resets(backlog: bool) -> BlindResets {
    let mut net = sim(backlog);
    let mut server = echo_pool::<1>(&mut net);
    let mut client = EchoClient::new(&mut net, 49152);
    client.close_when_echoed = false;
    client.connect(&mut net);
    // Echo, and leave the connection open and quiet.
    net.run_services(&mut server, &mut (), secs(5), |_, _, net| {
        client.poll(net);
        client.echoed().then_some(())
    })
    .unwrap();
    run_for(&mut net, &mut server, &mut (), ms(100));
    let expected = net.capture().last_ack_to(client.port);
    let mut injected = 0;
    for step in (4000..BUFFER as u32).step_by(4000) {
        let frame = tcp_frame(
            (CLIENT_MAC, CLIENT_V4),
            client.port,
            TcpControl::Rst,
            expected.wrapping_add(step),
        );
        net.inject_frame(Direction::ClientToServer, &frame);
        injected += 1;
    }
    run_for(&mut net, &mut server, &mut (), ms(100));
    BlindResets {
        net,
        server,
        client,
        injected,
    }
}

#[test]
fn blind_resets_across_the_window_are_dropped_and_only_the_exact_one_resets() {
    let BlindResets {
        mut net,
        mut server,
        mut client,
        injected,
    } = blind_resets(true);
    assert_eq!(injected, 16);
    assert_eq!(net.server.backlog.stats().blind_resets_dropped, 16);
    assert_eq!(server.stats().resets, 0);
    // The connection survived: another echo goes through.
    client.message.extend_from_slice(b" and once more");
    net.run_services(&mut server, &mut (), secs(5), |_, _, net| {
        client.poll(net);
        client.echoed().then_some(())
    })
    .unwrap();
    // Only the exact sequence number resets it.
    run_for(&mut net, &mut server, &mut (), ms(100));
    let exact = net.capture().last_ack_to(client.port);
    let frame = tcp_frame((CLIENT_MAC, CLIENT_V4), client.port, TcpControl::Rst, exact);
    net.inject_frame(Direction::ClientToServer, &frame);
    net.run_services(&mut server, &mut (), ms(100), |server, _, _| {
        (server.stats().resets == 1).then_some(())
    })
    .unwrap();
    println!(
        "blind resets: {injected} stepped RSTs dropped, the exact one reset | server: {} | \
         backlog: {}",
        server.stats(),
        net.server.backlog.stats()
    );
    assert_eq!(server.active(), 0);
}

#[test]
fn without_the_backlog_a_stepped_blind_reset_kills_the_connection() {
    let run = blind_resets(false);
    assert_eq!(run.server.stats().resets, 1);
    assert_eq!(run.server.active(), 0);
}

// ---------------------------------------------------------------------------
// 6. A client that comes back from the port of a connection that ended.

#[test]
fn a_client_back_from_the_port_of_an_ended_connection_is_held_not_reset() {
    // The backlog watches each connection's ACK numbers; once one ends, a SYN
    // from its port is a new connection, to be held while the pool is busy,
    // not a retransmission of the old one's to pass to the stack (a RST).
    let mut net = sim(true);
    let mut server = echo_pool::<1>(&mut net);
    let mut first = EchoClient::new(&mut net, 49152);
    first.connect(&mut net);
    net.run_services(&mut server, &mut (), secs(10), |server, _, net| {
        first.poll(net);
        (first.done(net) && server.active() == 0).then_some(())
    })
    .unwrap();
    net.client.sockets.remove(first.handle);
    // Another client takes the one slot and keeps it a while.
    let mut holder = EchoClient::new(&mut net, 49160);
    holder.close_when_echoed = false;
    holder.connect(&mut net);
    net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        holder.poll(net);
        holder.echoed().then_some(())
    })
    .unwrap();
    // The first client comes back from the same port, and the holder leaves
    // a second later.
    let resets_before = net.capture().resets_to(49152);
    let mut again = EchoClient::new(&mut net, 49152);
    again.connect(&mut net);
    let leave_at = net.now() + secs(1);
    let served = net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        holder.poll(net);
        if net.now() >= leave_at && !holder.closed {
            net.client
                .sockets
                .get_mut::<tcp::Socket>(holder.handle)
                .close();
            holder.closed = true;
        }
        again.poll(net);
        (again.done(net) || again.refused).then_some(())
    });
    let resets = net.capture().resets_to(49152) - resets_before;
    println!(
        "back from an ended connection's port: served {:?}, refused {}, {resets} RSTs | backlog: {}",
        served.is_ok(),
        again.refused,
        net.server.backlog.stats()
    );
    assert!(!again.refused && resets == 0, "reset instead of held");
    assert!(again.echoed());
}

#[test]
fn a_client_that_resets_and_reconnects_from_its_port_at_once_is_held_not_reset() {
    // The reset and the new SYN reach the server in one poll: the reset ends the
    // connection there, so the SYN from its port is a new connection, held while
    // the pool's one slot is still being freed, not the old one's retransmission.
    // (A link with no delay delivers the two together.)
    let mut net = sim_over(true, FaultConfig::CLEAN);
    let mut server = echo_pool::<1>(&mut net);
    let mut first = EchoClient::new(&mut net, 49152);
    first.close_when_echoed = false;
    first.connect(&mut net);
    net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        first.poll(net);
        first.echoed().then_some(())
    })
    .unwrap();
    assert_eq!(server.active(), 1);
    let resets_before = net.capture().resets_to(49152);
    // In one client poll: the first connection's RST, then the new SYN.
    first.abort(&mut net);
    let mut again = EchoClient::new(&mut net, 49152);
    again.connect(&mut net);
    let served = net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        again.poll(net);
        (again.done(net) || again.refused).then_some(())
    });
    let resets = net.capture().resets_to(49152) - resets_before;
    println!(
        "reset and back from the same port at once: served {:?}, refused {}, {resets} RSTs | backlog: {} | {}",
        served.is_ok(),
        again.refused,
        net.server.backlog.stats(),
        server.stats()
    );
    assert!(!again.refused && resets == 0, "reset instead of held");
    assert!(again.echoed());
    assert_eq!(server.stats().resets, 1, "the first connection's end");
}

// ---------------------------------------------------------------------------
// 7. A burst of clients from beyond a router: they never ARP us themselves.

/// Makes the client host a router for 192.168.1.0/24, and the server route
/// everything off its link through it; gives the address a client beyond
/// that router connects from. Such a client never sends the server ARP (its
/// router, 10.0.0.2, does).
fn beyond_a_router(net: &mut Net) -> Ipv4Address {
    use smoltcp::wire::IpCidr;
    let remote = Ipv4Address::new(192, 168, 1, 2);
    net.client.iface.update_ip_addrs(|addrs| {
        addrs.retain(|a| matches!(a, IpCidr::Ipv4(_)));
        addrs.push(IpCidr::new(remote.into(), 24)).unwrap();
    });
    net.server
        .iface
        .routes_mut()
        .add_default_ipv4_route(CLIENT_V4)
        .unwrap();
    remote
}

#[test]
fn a_burst_from_beyond_a_router_with_a_120_ms_round_trip_is_served_without_a_reset() {
    // A 120 ms round trip, as from another continent.
    let far = LINK.with_delay(Duration::from_millis(60));
    let mut net = sim_over(true, far);
    let remote = beyond_a_router(&mut net);
    let mut server = echo_pool::<2>(&mut net);
    let mut clients: Vec<EchoClient> = (0..8u16)
        .map(|i| EchoClient::new(&mut net, 49152 + i).from(remote.into()))
        .collect();
    for client in &mut clients {
        client.connect(&mut net);
    }
    let _ = net.run_services(&mut server, &mut (), secs(30), |_, _, net| {
        for client in &mut clients {
            client.poll(net);
        }
        clients
            .iter()
            .all(|c| c.done(net) || c.refused)
            .then_some(())
    });
    let resets: usize = clients
        .iter()
        .map(|c| net.capture().resets_to(c.port))
        .sum();
    let unserved = clients.iter().filter(|c| !c.echoed()).count();
    println!(
        "far burst: {unserved} not served, {resets} RSTs | server: {} | backlog: {}",
        server.stats(),
        net.server.backlog.stats()
    );
    assert_eq!(resets, 0, "{unserved} not served");
    assert_eq!(unserved, 0);
}

#[test]
fn under_a_flood_from_beyond_a_router_a_client_beyond_it_still_connects_within_3_s() {
    // Nothing tells the real client from the forged SYNs: neither shows itself.
    for phase in [ms(0), ms(50)] {
        let run = connects_under_flood_from::<2>(true, phase, [172, 16, 0], true);
        assert!(run.within(secs(3)) >= 19, "{:?}", run.connects);
        assert_eq!(run.refused, 0);
    }
}

// ---------------------------------------------------------------------------
// A client that takes the last ACK of a close and reconnects from its port.

#[test]
fn a_client_acking_our_fin_and_reconnecting_from_its_port_at_once_is_held_not_reset() {
    // The server is in LAST-ACK on the pool's one slot; the client's ACK of its
    // FIN and the client's new SYN from the same port reach the server in one
    // poll. The ACK closes the connection there (no RST, so the backlog still
    // takes the SYN for one of that connection's), and the SYN finds no
    // listener: smoltcp refuses it with a RST.
    let mut net = sim_over(true, FaultConfig::CLEAN);
    let mut server = echo_pool::<1>(&mut net);
    let mut first = EchoClient::new(&mut net, 49152);
    first.connect(&mut net);
    let mut again = EchoClient::new(&mut net, 49152);
    let mut first_gone = false;
    let _ = net.run_services(&mut server, &mut (), secs(10), |_, _, net| {
        if !first_gone {
            if first.done(net) {
                // The first socket shares the port pair with the new one, and
                // smoltcp would hand it the new one's segments: it goes once
                // its ACK of the server's FIN has left.
                net.client.sockets.remove(first.handle);
                first_gone = true;
            } else {
                first.poll(net);
            }
        }
        // The server has closed its half (its FIN goes out with the next poll):
        // the client reconnects from the same port at once, as its ACK of that
        // FIN leaves.
        let last_ack = net
            .server
            .sockets
            .iter()
            .filter_map(|(_, s)| tcp::Socket::downcast(s))
            .any(|s| s.state() == tcp::State::LastAck);
        if last_ack && again.connect_at.is_none() {
            again.connect(net);
        }
        again.poll(net);
        again.established_at.map(|_| ())
    });
    let syn = net.capture().first_syn_from(49152).unwrap();
    let resets_after: Vec<_> = net
        .capture()
        .to_client(49152)
        .filter(|s| s.rst && s.at >= again.connect_at.unwrap())
        .copied()
        .collect();
    println!(
        "first SYN at {syn}; reconnect at {:?}, established {:?}, refused {} | SYNs: {:?} | RSTs after: {resets_after:?} | server: {} | backlog: {}",
        again.connect_at,
        again.established_at,
        again.refused,
        net.capture()
            .0
            .iter()
            .filter(|s| s.syn && !s.from_server)
            .map(|s| (s.at, s.seq))
            .collect::<Vec<_>>(),
        server.stats(),
        net.server.backlog.stats()
    );
    assert!(first.echoed());
    assert!(first_gone);
    assert!(
        resets_after.is_empty(),
        "the new SYN was refused with a RST"
    );
    let took = again.connect_time().unwrap();
    assert!(took < ms(100), "took {took}");
}
