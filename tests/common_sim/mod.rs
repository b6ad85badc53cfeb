//! The rig the service tests share: a simulated network whose sockets live in
//! vectors (so nothing borrows from the test's stack frame), servers that listen
//! before the first client speaks, and client drivers that run as a
//! [`Service`] on the client host so `SimNet::run_services` can drive them.
//!
//! Everything here is test scaffolding: it may allocate and unwrap freely.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};

use smolsock::net::{
    ClientState, End, PortAllocator, RecvError, ServerConfig, ServerStats, Service, TcpClient,
    TcpServer, TcpSession,
};
use smolsock::runner::sim::{FaultConfig, SimConfig, SimNet};
use smolsock::session::{Framed, Session, Status};
use smolsock::wire::frame::HeaderFormat;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::PcapSink;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// The simulated network every test runs on; its sockets own their memory.
pub type Net = SimNet<'static, 64, Capture>;

/// A packet capture when `SMOLSOCK_PCAP` names a directory (one file per seed,
/// `seed-N.pcap`, for Wireshark or tshark), else nothing.
pub struct Capture(Option<BufWriter<File>>);

impl Capture {
    fn from_env(seed: u64) -> Self {
        Capture(std::env::var_os("SMOLSOCK_PCAP").map(|dir| {
            let path = std::path::Path::new(&dir).join(format!("seed-{seed}.pcap"));
            BufWriter::new(File::create(path).unwrap())
        }))
    }
}

impl PcapSink for Capture {
    fn write(&mut self, data: &[u8]) {
        if let Some(file) = &mut self.0 {
            file.write_all(data).unwrap();
        }
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.0 {
            Write::flush(file).unwrap();
        }
    }
}

/// Frames of up to 1 KiB: the size the framed echo service is built for.
pub const MAX_FRAME: u32 = 1024;

/// The header format of every framed test: 4-byte big-endian length, 1 KiB bodies.
pub fn format() -> HeaderFormat {
    HeaderFormat::NETWORK.with_max_len(MAX_FRAME).unwrap()
}

/// A network seeded with `seed`, `faults` both ways, room for the given sockets.
pub fn sim(seed: u64, faults: FaultConfig, server_sockets: usize, client_sockets: usize) -> Net {
    sim_with(
        SimConfig::new(seed).with_faults(faults),
        server_sockets,
        client_sockets,
    )
}

/// A network built from `config`, room for the given sockets.
pub fn sim_with(config: SimConfig, server_sockets: usize, client_sockets: usize) -> Net {
    let storage = |n: usize| (0..n).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>();
    SimNet::<'static, 64>::new(
        config,
        SocketSet::new(storage(server_sockets)),
        SocketSet::new(storage(client_sockets)),
    )
    .with_pcap(Capture::from_env(config.seed))
}

/// A TCP socket with `rx` and `tx` bytes of buffer.
pub fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    )
}

/// A UDP socket holding `packets` datagrams of `payload` bytes in all, each way.
pub fn udp_socket(packets: usize, payload: usize) -> udp::Socket<'static> {
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; payload]);
    udp::Socket::new(buffer(), buffer())
}

/// A `TcpServer` on `port` of the server host over `N` fresh sockets of `rx`/`tx`
/// bytes. It listens from construction: a client's first SYN finds it ready.
pub fn serve<S: Session, const N: usize>(
    net: &mut Net,
    port: u16,
    (rx, tx): (usize, usize),
    sessions: [S; N],
    config: ServerConfig,
) -> TcpServer<S, N> {
    let handles = core::array::from_fn(|_| net.server.sockets.add(tcp_socket(rx, tx)));
    TcpServer::new(&mut net.server.sockets, port, handles, sessions)
        .unwrap()
        .with_config(config)
}

/// The server settings of the tests: Nagle off, and an idle timeout of 5 min;
/// the handshake and close deadlines at their defaults (20 s each).
///
/// Not the default 60 s of idle: on the rough link smoltcp doubles its
/// retransmission timeout after every lost retransmission, up to 60 s, and only a
/// clean round trip brings it down again. With socket buffers of a segment or two
/// (no fast retransmit) a few losses in a row stall a live connection for a
/// minute, which a 60 s idle timeout takes for a silent peer. Tests that pin a
/// deadline set their own.
pub const SERVER: ServerConfig = ServerConfig {
    idle_timeout: Some(smolsock::time::Duration::from_secs(300)),
    nagle: false,
    ..ServerConfig::DEFAULT
};

/// [`SERVER`] with handshake and close deadlines as patient as its idle one, for
/// the rough link.
///
/// smoltcp retransmits a lost SYN-ACK or FIN after its backed-off timeout (1 s,
/// 2 s, 4 s … up to 60 s), so on 10 % loss a handshake or a close can take longer
/// than the defaults (20 s each) with a live peer at the other end; the tests of
/// an exact exchange would see a reset where they check for a clean close. The
/// tests that pin those deadlines use [`SERVER`].
pub const PATIENT: ServerConfig = ServerConfig {
    handshake_timeout: smolsock::time::Duration::from_secs(60),
    close_timeout: smolsock::time::Duration::from_secs(300),
    ..SERVER
};

/// A session that remembers when each connection began and ended, around another.
///
/// The pool does not tell a session how its connection ended: that is in the
/// server's counters ([`ends`]).
pub struct Recording<S> {
    /// The session doing the work.
    pub inner: S,
    /// Every `start`.
    pub starts: Vec<smolsock::time::Instant>,
    /// Every `end`.
    pub ends: Vec<smolsock::time::Instant>,
}

impl<S> Recording<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            starts: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl<S: Session> Session for Recording<S> {
    fn start(&mut self, now: smolsock::time::Instant) {
        self.starts.push(now);
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

    fn wants_transmit(&self) -> bool {
        self.inner.wants_transmit()
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
        self.ends.push(now);
        self.inner.end(now);
    }

    fn no_delay(&self) -> bool {
        self.inner.no_delay()
    }

    fn drops_input(&self) -> bool {
        self.inner.drops_input()
    }
}

/// How the server's connections ended, from its counters, in a fixed order
/// (closed, reset, idle timeout, aborted, close timeout; not in time order).
///
/// Checks on the way that the recording sessions were told of exactly as many
/// ends, one per connection, and that each slot started no fewer connections than
/// it ended.
pub fn ends<S: Session, const N: usize>(server: &TcpServer<Recording<S>, N>) -> Vec<End> {
    let stats: &ServerStats = server.stats();
    let counted = [
        (End::Closed, stats.closed),
        (End::Reset, stats.resets),
        (End::IdleTimeout, stats.idle_timeouts),
        (End::Aborted, stats.aborted),
        (End::CloseTimeout, stats.close_timeouts),
    ];
    let ends: Vec<End> = counted
        .iter()
        .flat_map(|&(end, n)| std::iter::repeat_n(end, n as usize))
        .collect();
    let told: usize = server.sessions().iter().map(|s| s.ends.len()).sum();
    assert_eq!(told, ends.len(), "sessions told of an end: {ends:?}");
    for (slot, session) in server.sessions().iter().enumerate() {
        assert!(session.ends.len() <= session.starts.len(), "slot {slot}");
    }
    ends
}

/// What a test client does on its connection once it is established.
pub trait Driver {
    /// Sends and receives what it can now, on the socket `handle` of `sockets`.
    fn drive(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle, now: Instant);
    /// Whether it has everything it wanted.
    fn done(&self) -> bool;
    /// Closes its sending half (FIN), once what it queued is out.
    fn close(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle) {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.may_send() {
            socket.close();
        }
    }
    /// A new connection begins on the socket: forget the last one.
    fn connecting(&mut self) {}
}

/// A TCP client on a socket of the client host, running a [`Driver`].
pub struct Client<D> {
    pub handle: SocketHandle,
    pub tcp: TcpClient,
    pub driver: D,
    /// Close (FIN) as soon as the driver is done, as a real client would: a done
    /// client left open is an idle peer, and the server resets it in time.
    pub close_when_done: bool,
}

impl<D: Driver> Client<D> {
    /// A client on a new socket of `rx`/`tx` bytes with a 30 s connect timeout
    /// (a rough link can lose a SYN or SYN-ACK several times in a row, and
    /// smoltcp doubles its retransmission timeout each time).
    pub fn new(net: &mut Net, (rx, tx): (usize, usize), driver: D) -> Self {
        Self {
            handle: net.client.sockets.add(tcp_socket(rx, tx)),
            tcp: TcpClient::new(Duration::from_secs(30)),
            driver,
            close_when_done: false,
        }
    }

    /// The same client, closing once its driver is done.
    pub fn closing_when_done(mut self) -> Self {
        self.close_when_done = true;
        self
    }

    /// Starts connecting to `remote` from a port of `ports`.
    pub fn connect(
        &mut self,
        net: &mut Net,
        remote: impl Into<IpEndpoint>,
        ports: &mut PortAllocator<16>,
    ) {
        let now = net.now();
        let (socket, cx) = net
            .client
            .socket_and_context::<tcp::Socket>(self.handle)
            .unwrap();
        self.tcp.connect(cx, socket, remote, ports, now).unwrap();
        self.driver.connecting();
    }

    pub fn state(&self) -> ClientState {
        self.tcp.state()
    }

    pub fn socket<'n>(&self, net: &'n mut Net) -> &'n mut tcp::Socket<'static> {
        net.client.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    pub fn done(&self) -> bool {
        self.driver.done()
    }
}

impl<D: Driver> Service for Client<D> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if self.tcp.poll(socket, now) == ClientState::Connected {
            self.driver.drive(sockets, self.handle, now);
            if self.close_when_done && self.driver.done() {
                self.driver.close(sockets, self.handle);
            }
        }
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        self.tcp.poll_at()
    }
}

/// Several clients polled as one service.
pub struct Clients<D>(pub Vec<Client<D>>);

impl<D: Driver> Service for Clients<D> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        for client in &mut self.0 {
            client.poll(sockets, now);
        }
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        self.0.iter().filter_map(|c| c.poll_at(sockets)).min()
    }
}

/// `recv(1024)` + `sendall` from the client side: sends `data`, collects the echo.
#[derive(Default)]
pub struct RawEcho {
    pub data: Vec<u8>,
    pub sent: usize,
    pub back: Vec<u8>,
}

impl RawEcho {
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }
}

impl Driver for RawEcho {
    fn drive(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle, _now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.may_send() {
            self.sent += socket.send_slice(&self.data[self.sent..]).unwrap_or(0);
        }
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
            self.back.extend_from_slice(&buf[..n]);
        }
    }

    fn done(&self) -> bool {
        self.back.len() >= self.data.len()
    }
}

/// The framed connection of a test client: no handler, whole frames in and out.
pub type FramedConn = Framed<(), Vec<u8>, Vec<u8>>;

/// A framed client: sends `frames` in order, collects what comes back.
pub struct FramedPeer {
    /// The connection, until the first poll puts it on its socket.
    idle: Option<FramedConn>,
    /// The connection on its socket.
    conn: Option<TcpSession<FramedConn>>,
    pub frames: Vec<Vec<u8>>,
    pub sent: usize,
    pub got: Vec<Vec<u8>>,
    /// While false the client takes no frame (a peer that never reads): they
    /// wait in its reader, then in its socket, and its receive window closes.
    pub reading: bool,
    /// Shut the send side (FIN) once every frame is queued.
    pub half_close: bool,
    /// How the receiving side ended, if it did: `Finished` when the server closed
    /// cleanly on a frame boundary and every frame was taken.
    pub end: Option<RecvError>,
}

impl FramedPeer {
    pub fn new(frames: Vec<Vec<u8>>) -> Self {
        let storage = || vec![0; MAX_FRAME as usize + 4];
        Self {
            idle: Some(Framed::new((), storage(), storage(), format()).unwrap()),
            conn: None,
            frames,
            sent: 0,
            got: Vec::new(),
            reading: true,
            half_close: false,
            end: None,
        }
    }

    /// The framed connection (its counters, its error).
    pub fn framed(&self) -> &FramedConn {
        match (&self.conn, &self.idle) {
            (Some(conn), _) => conn.session(),
            (None, Some(idle)) => idle,
            (None, None) => unreachable!("the connection is in one place or the other"),
        }
    }

    /// Queues frames, moves bytes, takes frames, until a round moves nothing.
    fn exchange(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> Status {
        let conn = self.conn.as_mut().unwrap();
        // The session starts on the first poll that sees the socket connected, and
        // `start` forgets whatever was queued before it: poll before queueing.
        conn.poll(sockets, now).unwrap();
        loop {
            let (sent, got) = (self.sent, self.got.len());
            while let Some(frame) = self.frames.get(self.sent) {
                if conn.session_mut().send(frame).is_err() {
                    break;
                }
                self.sent += 1;
            }
            if self.half_close && self.sent == self.frames.len() {
                conn.session_mut().close();
            }
            let status = conn.poll(sockets, now).unwrap();
            while self.reading {
                match conn.session_mut().recv() {
                    Some(frame) => self.got.push(frame.to_vec()),
                    None => break,
                }
                // A peer that never stops sending fails the test instead of
                // holding it in this loop.
                assert!(self.got.len() <= 100_000, "over 100,000 frames taken");
            }
            if (self.sent, self.got.len()) == (sent, got) {
                return status;
            }
        }
    }
}

impl Driver for FramedPeer {
    fn drive(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle, now: Instant) {
        if self.conn.is_none() {
            self.conn = Some(TcpSession::new(handle, self.idle.take().unwrap()));
        }
        let status = self.exchange(sockets, now);
        if self.end.is_some() || !self.reading {
            return;
        }
        let error = self.framed().error();
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        // The states the peer's FIN puts us in: a reset leaves the socket closed.
        let fin = matches!(
            socket.state(),
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::Closing
                | tcp::State::TimeWait
        );
        let peer_finished = fin && socket.recv_queue() == 0;
        // Once the server's FIN is read and every frame taken, the session checks
        // the stream ended on a frame boundary and closes (our FIN, as a polite
        // client does); a frame cut short is its error.
        self.end = match (error, status) {
            (Some(error), _) => Some(RecvError::Frame(error)),
            (None, Status::Close) if peer_finished => Some(RecvError::Finished),
            (None, Status::Abort) => Some(RecvError::NotConnected),
            _ => None,
        };
    }

    fn done(&self) -> bool {
        self.got.len() >= self.frames.len()
    }

    fn close(&mut self, _sockets: &mut SocketSet<'_>, _handle: SocketHandle) {
        // The FIN goes once every frame queued is out, on the next poll.
        match (&mut self.conn, &mut self.idle) {
            (Some(conn), _) => conn.session_mut().close(),
            (None, Some(idle)) => idle.close(),
            (None, None) => {}
        }
    }

    fn connecting(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.reset();
        }
    }
}

/// An HTTP client: sends the request one piece per poll, reads until the server
/// closes, then closes too.
pub struct HttpGet {
    pub pieces: Vec<Vec<u8>>,
    pub next: usize,
    pub response: Vec<u8>,
    pub closed: bool,
}

impl HttpGet {
    pub fn new(pieces: Vec<Vec<u8>>) -> Self {
        Self {
            pieces,
            next: 0,
            response: Vec::new(),
            closed: false,
        }
    }
}

impl Driver for HttpGet {
    fn drive(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle, _now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if let Some(piece) = self.pieces.get(self.next)
            && socket.may_send()
            && socket.send_capacity() - socket.send_queue() >= piece.len()
        {
            socket.send_slice(piece).unwrap();
            self.next += 1;
        }
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
            self.response.extend_from_slice(&buf[..n]);
        }
        if !socket.may_recv() && !self.closed {
            socket.close();
            self.closed = true;
        }
    }

    fn done(&self) -> bool {
        self.closed
    }
}

/// `count` frames of sizes that cover the edges (empty, one byte, the maximum) and
/// contents that tell them apart (index and offset in every byte).
pub fn frames(count: usize, max: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = match i % 7 {
                0 => 0,
                1 => 1,
                2 => max,
                _ => (i * 397 + 13) % (max + 1),
            };
            (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
        })
        .collect()
}

/// `len` bytes with a pattern that does not repeat at any power-of-two period.
pub fn bytes(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A UDP client that sends `datagrams` to `server` and waits for their echoes,
/// `window` at a time, sending a datagram again after `retry` without its echo
/// (the link may lose either copy). Each datagram starts with its index (two
/// bytes, big endian), so echoes may come back in any order; every datagram
/// received must be one it sent, whole.
pub struct UdpWindow {
    pub handle: SocketHandle,
    pub local_port: u16,
    pub server: IpEndpoint,
    pub datagrams: Vec<Vec<u8>>,
    pub window: usize,
    pub retry: Duration,
    pub echoed: Vec<bool>,
    pub last_sent: Vec<Option<Instant>>,
    pub sends: usize,
    /// Echoes of datagrams already echoed once (link duplicates, our retries).
    pub repeats: usize,
    /// Anything received that was not one of ours, whole.
    pub strays: Vec<Vec<u8>>,
}

impl UdpWindow {
    /// Numbers each of `payloads` in front and sends them from port 40000.
    pub fn new(net: &mut Net, server: impl Into<IpEndpoint>, payloads: Vec<Vec<u8>>) -> Self {
        let datagrams: Vec<Vec<u8>> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d = (i as u16).to_be_bytes().to_vec();
                d.extend_from_slice(&p);
                d
            })
            .collect();
        let n = datagrams.len();
        Self {
            handle: net.client.sockets.add(udp_socket(16, 16 * 1024)),
            local_port: 40_000,
            server: server.into(),
            datagrams,
            window: 4,
            retry: Duration::from_millis(50),
            echoed: vec![false; n],
            last_sent: vec![None; n],
            sends: 0,
            repeats: 0,
            strays: Vec::new(),
        }
    }

    pub fn done(&self) -> bool {
        self.echoed.iter().all(|&e| e)
    }
}

impl Service for UdpWindow {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if !socket.is_open() {
            socket.bind(self.local_port).unwrap();
        }
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = socket.recv_slice(&mut buf) {
            let got = &buf[..n];
            let index = got
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            match index {
                Some(i) if self.datagrams.get(i).is_some_and(|d| d == got) => {
                    if self.echoed[i] {
                        self.repeats += 1;
                    }
                    self.echoed[i] = true;
                }
                _ => self.strays.push(got.to_vec()),
            }
        }
        let first = self
            .echoed
            .iter()
            .position(|&e| !e)
            .unwrap_or(self.echoed.len());
        let last = (first + self.window).min(self.datagrams.len());
        for i in first..last {
            let due = self.last_sent[i].is_none_or(|at| now >= at + self.retry);
            if !self.echoed[i] && due && socket.send_slice(&self.datagrams[i], self.server).is_ok()
            {
                self.last_sent[i] = Some(now);
                self.sends += 1;
            }
        }
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        self.last_sent
            .iter()
            .zip(&self.echoed)
            .filter(|(_, echoed)| !**echoed)
            .filter_map(|(at, _)| at.map(|at| at + self.retry))
            .min()
    }
}

/// A UDP client that sends `datagrams` to `server` as fast as its send buffer
/// takes them, with no retries, and keeps every datagram that comes back.
pub struct UdpBurst {
    pub handle: SocketHandle,
    pub local_port: u16,
    pub server: IpEndpoint,
    pub datagrams: Vec<Vec<u8>>,
    pub sent: usize,
    pub got: Vec<Vec<u8>>,
}

impl UdpBurst {
    pub fn new(net: &mut Net, server: impl Into<IpEndpoint>, datagrams: Vec<Vec<u8>>) -> Self {
        Self {
            handle: net.client.sockets.add(udp_socket(32, 32 * 1024)),
            local_port: 40_001,
            server: server.into(),
            datagrams,
            sent: 0,
            got: Vec::new(),
        }
    }
}

impl Service for UdpBurst {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if !socket.is_open() {
            socket.bind(self.local_port).unwrap();
        }
        while let Some(datagram) = self.datagrams.get(self.sent) {
            if socket.send_slice(datagram, self.server).is_err() {
                break;
            }
            self.sent += 1;
        }
        let mut buf = vec![0u8; 4096];
        while let Ok((n, _)) = socket.recv_slice(&mut buf) {
            self.got.push(buf[..n].to_vec());
        }
    }
}

/// Two different client services polled as one.
pub struct Pair<A, B>(pub A, pub B);

impl<A: Service, B: Service> Service for Pair<A, B> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        self.0.poll(sockets, now);
        self.1.poll(sockets, now);
    }

    fn poll_at(&self, sockets: &SocketSet<'_>) -> Option<Instant> {
        [self.0.poll_at(sockets), self.1.poll_at(sockets)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The MAC address forged frames come from: no host of the simulation has it.
pub const FORGED_MAC: smoltcp::wire::EthernetAddress =
    smoltcp::wire::EthernetAddress([0x02, 0, 0, 0, 0, 0x63]);

/// An Ethernet frame from `src_mac` to the server carrying an IPv4 packet from
/// `src` of `protocol` with `payload_len` bytes, which `emit` writes.
fn ipv4_frame(
    src_mac: smoltcp::wire::EthernetAddress,
    src: smoltcp::wire::Ipv4Address,
    protocol: smoltcp::wire::IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    use smolsock::runner::sim::{SERVER_MAC, SERVER_V4};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, EthernetRepr, Ipv4Packet, Ipv4Repr};
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: SERVER_V4,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: SERVER_MAC,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + payload_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    emit(packet.payload_mut());
    buf
}

/// `segment` from `src_mac` and `src` to the server, as an Ethernet frame.
pub fn tcp_segment_frame(
    src_mac: smoltcp::wire::EthernetAddress,
    src: smoltcp::wire::Ipv4Address,
    segment: &smoltcp::wire::TcpRepr<'_>,
) -> Vec<u8> {
    use smolsock::runner::sim::SERVER_V4;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, TcpPacket};
    ipv4_frame(
        src_mac,
        src,
        IpProtocol::Tcp,
        segment.buffer_len(),
        |bytes| {
            segment.emit(
                &mut TcpPacket::new_unchecked(bytes),
                &src.into(),
                &SERVER_V4.into(),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// A UDP datagram from `src`:`src_port` to the server's `dst_port`, as an
/// Ethernet frame from [`FORGED_MAC`]: for forging traffic from an address
/// nobody on the link answers for (or one with no route back).
pub fn forged_udp(
    src: smoltcp::wire::Ipv4Address,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    use smolsock::runner::sim::SERVER_V4;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, UdpPacket, UdpRepr};
    let udp = UdpRepr { src_port, dst_port };
    let len = udp.header_len() + payload.len();
    ipv4_frame(FORGED_MAC, src, IpProtocol::Udp, len, |bytes| {
        udp.emit(
            &mut UdpPacket::new_unchecked(bytes),
            &src.into(),
            &SERVER_V4.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An ARP frame from `ip` at [`FORGED_MAC`] to the server: a request
/// (broadcast, asking for the server: a host that is there) or a reply (`ip`
/// is at `FORGED_MAC`: a neighbour that never answered now does, and what
/// waited for it leaves).
pub fn forged_arp(
    operation: smoltcp::wire::ArpOperation,
    ip: smoltcp::wire::Ipv4Address,
) -> Vec<u8> {
    use smolsock::runner::sim::{SERVER_MAC, SERVER_V4};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr,
    };
    let (target_hardware_addr, dst_addr) = match operation {
        ArpOperation::Reply => (SERVER_MAC, SERVER_MAC),
        _ => (EthernetAddress([0; 6]), EthernetAddress::BROADCAST),
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: FORGED_MAC,
        source_protocol_addr: ip,
        target_hardware_addr,
        target_protocol_addr: SERVER_V4,
    };
    let eth = EthernetRepr {
        src_addr: FORGED_MAC,
        dst_addr,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// A SYN for the server's tcp/`port` from `src` (an address no host on the
/// link answers for), as an Ethernet frame from [`FORGED_MAC`]: a half-open
/// handshake that can never complete.
pub fn forged_syn(src: smoltcp::wire::Ipv4Address, src_port: u16, port: u16) -> Vec<u8> {
    forged_segment(src, src_port, port, smoltcp::wire::TcpControl::Syn, 1000)
}

/// A segment with no payload from `src`:`src_port` (at [`FORGED_MAC`]) to the
/// server's `port`, with `control` and sequence number `seq`.
pub fn forged_segment(
    src: smoltcp::wire::Ipv4Address,
    src_port: u16,
    port: u16,
    control: smoltcp::wire::TcpControl,
    seq: u32,
) -> Vec<u8> {
    use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};
    let repr = TcpRepr {
        src_port,
        dst_port: port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    tcp_segment_frame(FORGED_MAC, src, &repr)
}

/// Runs both services for `time`, whatever happens meanwhile.
pub fn run_for<const SLOTS: usize, P: PcapSink, S: Service + ?Sized, C: Service + ?Sized>(
    net: &mut SimNet<'static, SLOTS, P>,
    server: &mut S,
    client: &mut C,
    time: Duration,
) {
    net.run_services(server, client, time, |_, _, _| None::<()>)
        .unwrap_err();
}
