//! The sticky-packet lab: the primer's two ways TCP glues messages together, and its
//! two cures, measured side by side on the in-process network (no root, no setup).
//!
//! ```text
//! cargo run --release --example sticky_lab
//! cargo run --release --example sticky_lab -- --messages 50 --delay-ms 5 --loss 50 --pcap lab.pcap
//! cargo run --release --example sticky_lab -- --svg pictures   # one SVG per case
//! ```
//!
//! TCP carries a stream of bytes, not messages: what one `send` wrote can come out
//! of the other end merged with its neighbours, or cut in pieces. The lab sends the
//! same messages four ways over a link with a chosen delay and counts what the
//! reader sees. Everything runs on virtual time from one seed, so the same flags
//! print the same numbers on any machine.

mod ack;
#[path = "../common/mod.rs"]
mod common;

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ack::{AckReceiver, AckSender};
use clap::Parser;
use smolsock::net::{ClientState, PortAllocator, Service, TcpClient};
use smolsock::runner::sim::{SERVER_V4, SimConfig, SimNet};
use smolsock::session::{Framed, SendError, Session};
use smolsock::trace::{self, Conn, Event, Record, SegmentCapture, TraceSink};
use smolsock::wire::frame::{HeaderFormat, ReadStats};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use common::{Capture, SharedTrace, TracedNet, link, millis, since, svg, tcp_socket};

/// The naive reader's `recv(1024)`.
const RECV_SIZE: usize = 1024;
/// Time between two sends of the application in "quick succession".
const SEND_GAP: Duration = Duration::from_millis(1);
/// The large message of case 2, longer than one `recv(1024)`.
const BIG_LEN: usize = 3000;
/// The first port used; each case gets the next one, so a capture can be filtered
/// case by case (`tcp.port == 5003`).
const FIRST_PORT: u16 = 5001;
/// Socket buffers on both sides: room for the large message and many small ones.
const SOCKET_BUFFER: usize = 16 * 1024;
/// Largest message body the framed and acknowledged cases accept.
const MAX_MESSAGE: u32 = 4096;
/// The length header of the framed and acknowledged cases (`HeaderFormat::NETWORK`).
const HEADER_LEN: usize = 4;
/// How many reads of each naive case are printed in full.
const READS_SHOWN: usize = 4;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    about = "Sticky packets (粘包) on smoltcp: how TCP merges and cuts messages, and the two cures",
    long_about = None
)]
struct Options {
    /// How many small messages to send (cases 1, 3 and 4).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    messages: u32,
    /// One-way delay of the link in milliseconds; a round trip (RTT) is twice
    /// this. At most 5 s: each case's handshake must fit its connect deadline
    /// (from 8 s on, none does).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    delay_ms: u64,
    /// Seed of the link's randomness and of both TCP stacks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every frame on the link to FILE (pcap, for Wireshark or tshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Frames lost on the link, per mille (100 = 10 %), in both directions.
    #[arg(long, value_name = "PERMILLE", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1000))]
    loss: u16,
    /// Draw each case's connection into DIR (created if missing), one SVG per
    /// case: segments, ACKs and window over time, the buffers, and the sends,
    /// reads and frames.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
}

impl Options {
    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    fn rtt(&self) -> Duration {
        Duration::from_millis(self.delay_ms.saturating_mul(2))
    }
}

/// How a case puts messages on the wire and takes them off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// Each message is `send` as is; the reader loops on `recv(1024)`.
    Naive,
    /// A 4-byte length before each message (a [`Framed`] session); the reader takes
    /// whole frames.
    Framed,
    /// Length, wait for the peer to echo it, then the body (`ack.rs`, for study).
    Acked,
}

/// One run of the lab: which messages, sent how.
struct Case {
    label: &'static str,
    /// The case's picture's file name, without `.svg`.
    slug: &'static str,
    method: Method,
    nagle: bool,
    /// Time between the application's sends (zero: all ready at once).
    gap: Duration,
    messages: Vec<Vec<u8>>,
}

/// What one case measured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    label: &'static str,
    slug: &'static str,
    port: u16,
    messages: Vec<Vec<u8>>,
    /// Reads that returned bytes (for the framed case: the frame reader's count).
    reads: u64,
    /// Messages that came out of one read (naive) or one frame, exactly.
    intact: usize,
    /// From the first send to the last byte read.
    elapsed: Duration,
    /// The naive reader's reads, with their time since the first send.
    naive_reads: Vec<(Duration, Vec<u8>)>,
    /// The framed reader's counters.
    frame_stats: Option<ReadStats>,
    /// The connection, client to server (the way the messages went).
    conn: Conn,
    /// The case's trace, from the handshake to the close (empty without one).
    trace: Vec<Record>,
}

/// Every case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    small_nagle: Outcome,
    small_no_nagle: Outcome,
    big: Outcome,
    framed_small: Outcome,
    framed_big: Outcome,
    acked: Outcome,
    framed_baseline: Outcome,
}

impl Report {
    fn rows(&self) -> [&Outcome; 7] {
        [
            &self.small_nagle,
            &self.small_no_nagle,
            &self.big,
            &self.framed_small,
            &self.framed_big,
            &self.acked,
            &self.framed_baseline,
        ]
    }
}

/// The small messages: `<msg 1>`, `<msg 2>`, ... so merges are easy to see.
fn small_messages(count: u32) -> Vec<Vec<u8>> {
    (1..=count)
        .map(|i| format!("<msg {i}>").into_bytes())
        .collect()
}

/// Case 2's traffic: a 3000-byte message, then a 10-byte one.
fn big_then_small() -> Vec<Vec<u8>> {
    let head = b"<3000-byte message ";
    let mut big = head.to_vec();
    big.extend((0..BIG_LEN - head.len() - 1).map(|i| b"0123456789"[i % 10]));
    big.push(b'>');
    vec![big, b"<small 10>".to_vec()]
}

/// Runs every case on one network, one connection each, and measures them.
fn run_lab(options: &Options, capture: Capture) -> Result<Report, Box<dyn Error>> {
    let trace = options.svg.is_some().then(SharedTrace::default);
    run_lab_traced(options, capture, trace)
}

/// [`run_lab`], recording each case into `trace` if there is one.
fn run_lab_traced(
    options: &Options,
    capture: Capture,
    trace: Option<SharedTrace>,
) -> Result<Report, Box<dyn Error>> {
    let mut server_storage = [SocketStorage::EMPTY; 1];
    let mut client_storage = [SocketStorage::EMPTY; 1];
    let faults = link(options.delay(), options.loss);
    let mut net: TracedNet = SimNet::new(
        SimConfig::new(options.seed).with_faults(faults),
        SocketSet::new(&mut server_storage[..]),
        SocketSet::new(&mut client_storage[..]),
    )
    .with_pcap(SegmentCapture::with_capture(trace.clone(), capture));
    let mut lab = Lab {
        net: &mut net,
        ports: PortAllocator::new(options.seed),
        next_port: FIRST_PORT,
        limit: run_limit(options),
        trace,
    };
    let small = small_messages(options.messages);
    let big = big_then_small();
    let all_at_once = Duration::from_micros(0);
    let mut run = |(label, slug), method, nagle, gap, messages: &Vec<Vec<u8>>| {
        let messages = messages.clone();
        lab.run(Case {
            label,
            slug,
            method,
            nagle,
            gap,
            messages,
        })
    };
    use Method::{Acked, Framed, Naive};
    Ok(Report {
        small_nagle: run(
            ("1  small sends, Nagle on", "1-nagle"),
            Naive,
            true,
            SEND_GAP,
            &small,
        )?,
        small_no_nagle: run(
            ("1' small sends, Nagle off", "1-no-nagle"),
            Naive,
            false,
            SEND_GAP,
            &small,
        )?,
        big: run(
            ("2  3000 B + 10 B", "2-big-send"),
            Naive,
            true,
            SEND_GAP,
            &big,
        )?,
        framed_small: run(
            ("3a framing, small sends", "3a-framing-small"),
            Framed,
            true,
            SEND_GAP,
            &small,
        )?,
        framed_big: run(
            ("3b framing, 3000 B + 10 B", "3b-framing-big"),
            Framed,
            true,
            SEND_GAP,
            &big,
        )?,
        acked: run(
            ("4  ack'd length, all at once", "4-acked-length"),
            Acked,
            false,
            all_at_once,
            &small,
        )?,
        framed_baseline: run(
            ("4' framing, all at once", "4-framing-all-at-once"),
            Framed,
            false,
            all_at_once,
            &small,
        )?,
    })
}

/// The virtual time a case may take before the lab gives up: generous, since a
/// lossy link with the acknowledged cure needs several round trips per message.
fn run_limit(options: &Options) -> Duration {
    let per_message = options.rtt() + Duration::from_secs(2);
    Duration::from_secs(600) + per_message * options.messages
}

/// The network and what carries over from case to case.
struct Lab<'n, 's> {
    net: &'n mut TracedNet<'s>,
    ports: PortAllocator,
    next_port: u16,
    limit: Duration,
    /// Where the cases are recorded, if anywhere.
    trace: Option<SharedTrace>,
}

impl Lab<'_, '_> {
    /// Connects a fresh client to a fresh server socket, sends the case's messages,
    /// reads them back out, closes, and says what the reader saw.
    fn run(&mut self, case: Case) -> Result<Outcome, Box<dyn Error>> {
        let port = self.next_port;
        self.next_port += 1;
        if let Some(trace) = &self.trace {
            trace.take();
        }
        let (server, client) = self.connect(port, case.nagle)?;
        let client_port = self
            .net
            .client
            .sockets
            .get::<tcp::Socket>(client)
            .local_endpoint()
            .map_or(0, |e| e.port);
        let conn = Conn::new(client_port, port);
        let format = HeaderFormat::NETWORK.with_max_len(MAX_MESSAGE)?;
        let (writer, reader) = match case.method {
            Method::Naive => (Writer::Raw { offset: 0 }, Reader::Naive),
            Method::Framed => (
                Writer::Framed(Box::new(framed_connection(format.max_frame_len(), format)?)),
                // Room for two whole frames, so one read can carry several.
                Reader::Framed(Box::new(framed_connection(
                    2 * format.max_frame_len(),
                    format,
                )?)),
            ),
            Method::Acked => (
                Writer::Acked(AckSender::new(format)),
                Reader::Acked(
                    AckReceiver::new(vec![0; MAX_MESSAGE as usize], format)
                        .ok_or("message storage too small")?,
                ),
            ),
        };
        let mut sender = Sender {
            socket: client,
            messages: &case.messages,
            gap: case.gap,
            writer,
            next: 0,
            start: None,
            last_poll: Instant::ZERO,
            error: None,
            trace: self.trace.clone(),
            conn,
        };
        let expected_bytes = case.messages.iter().map(Vec::len).sum();
        let mut receiver = Receiver {
            socket: server,
            expected_messages: case.messages.len(),
            expected_bytes,
            reader,
            received: Vec::new(),
            received_bytes: 0,
            reads: 0,
            done_at: None,
            error: None,
            trace: self.trace.clone(),
            conn: conn.reversed(),
        };
        let result = self.net.run_services(
            &mut receiver,
            &mut sender,
            self.limit,
            |receiver, sender, net| {
                if let Some(error) = receiver.error.take().or_else(|| sender.error.take()) {
                    return Some(Err(error));
                }
                // The case's time ends with the last message read; the run goes on
                // until its bytes are acknowledged too, so that the trace (and its
                // picture) sees the sender's buffer empty.
                let sent = net.client.sockets.get::<tcp::Socket>(sender.socket);
                let acknowledged = sent.send_queue() == 0;
                receiver.done_at.filter(|_| acknowledged).map(Ok)
            },
        );
        let done_at = match result {
            Ok(Ok(at)) => at,
            Ok(Err(error)) => return Err(format!("{}: {error}", case.label).into()),
            Err(timeout) => return Err(format!("{}: {timeout}", case.label).into()),
        };
        self.close(server, client);
        let start = sender.start.unwrap_or(Instant::ZERO);
        let mut outcome = receiver.outcome(case, port, start, done_at);
        outcome.conn = conn;
        outcome.trace = self
            .trace
            .as_ref()
            .map(SharedTrace::take)
            .unwrap_or_default();
        Ok(outcome)
    }

    /// A listening server socket and a client socket connected to it.
    fn connect(
        &mut self,
        port: u16,
        nagle: bool,
    ) -> Result<(SocketHandle, SocketHandle), Box<dyn Error>> {
        let net = &mut *self.net;
        let mut socket = tcp_socket(SOCKET_BUFFER, SOCKET_BUFFER);
        socket.set_nagle_enabled(nagle);
        socket.listen(port)?;
        let server = net.server.sockets.add(socket);
        let mut socket = tcp_socket(SOCKET_BUFFER, SOCKET_BUFFER);
        socket.set_nagle_enabled(nagle);
        let client = net.client.sockets.add(socket);
        let mut tcp_client = TcpClient::new(Duration::from_secs(30));
        let now = net.now();
        let (socket, cx) = net
            .client
            .socket_and_context::<tcp::Socket>(client)
            .ok_or("no client socket")?;
        tcp_client.connect(cx, socket, (SERVER_V4, port), &mut self.ports, now)?;
        net.run_until(Duration::from_secs(60), |net| {
            let now = net.now();
            let state = tcp_client.poll(net.client.sockets.get_mut::<tcp::Socket>(client), now);
            let accepted = net.server.sockets.get::<tcp::Socket>(server).may_send();
            match state {
                ClientState::Connected if accepted => Some(Ok(())),
                ClientState::Failed(e) => Some(Err(e)),
                _ => None,
            }
        })??;
        Ok((server, client))
    }

    /// Closes both ends (the client first, as the primer's client does), lets the
    /// FINs cross, and frees the sockets for the next case.
    fn close(&mut self, server: SocketHandle, client: SocketHandle) {
        let net = &mut *self.net;
        net.client.sockets.get_mut::<tcp::Socket>(client).close();
        // A lost FIN is retransmitted; a few seconds of virtual time cover it, and a
        // connection that still lingers is simply dropped with its socket.
        let _ = net.run_until(Duration::from_secs(30), |net| {
            let socket = net.server.sockets.get_mut::<tcp::Socket>(server);
            if socket.state() == tcp::State::CloseWait {
                socket.close();
            }
            let server_done = !socket.is_active();
            let client_state = net.client.sockets.get::<tcp::Socket>(client).state();
            let client_done = matches!(client_state, tcp::State::TimeWait | tcp::State::Closed);
            (server_done && client_done).then_some(())
        });
        net.server.sockets.remove(server);
        net.client.sockets.remove(client);
    }
}

/// A framed connection with no handler: the application sends and takes frames.
type FramedConnection = Framed<(), Vec<u8>, Vec<u8>>;

/// The lab drives its sessions by hand; they keep no deadline, so any time does.
const SESSION_TIME: smolsock::time::Instant = smolsock::time::Instant::ZERO;

/// A started framed connection of `format`, receiving into `receive` bytes of
/// storage, with room to queue one frame.
fn framed_connection(
    receive: usize,
    format: HeaderFormat,
) -> Result<FramedConnection, Box<dyn Error>> {
    let frame = format.max_frame_len();
    let mut connection = Framed::new((), vec![0; receive.max(frame)], vec![0; frame], format)?;
    connection.start(SESSION_TIME);
    Ok(connection)
}

/// Moves the frames `stream` has queued into the socket's send buffer.
fn drain(stream: &mut FramedConnection, socket: &mut tcp::Socket<'_>) -> Result<(), String> {
    loop {
        let n = socket
            .send(|space| {
                let n = stream.transmit(space, SESSION_TIME);
                (n, n)
            })
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// How the sender puts a message into the socket.
enum Writer {
    /// `sendall(message)`.
    Raw { offset: usize },
    /// `send(message)`: a 4-byte length, then the message, whole or not at all.
    Framed(Box<FramedConnection>),
    /// Length, wait for the acknowledgement, then the message.
    Acked(AckSender),
}

/// The client's application: sends message `i` at `start + i × gap`.
struct Sender<'m> {
    socket: SocketHandle,
    messages: &'m [Vec<u8>],
    gap: Duration,
    writer: Writer,
    /// The next message to send.
    next: usize,
    /// When the connection was first seen established: the case's time zero.
    start: Option<Instant>,
    last_poll: Instant,
    error: Option<String>,
    trace: Option<SharedTrace>,
    /// The connection, from this end.
    conn: Conn,
}

/// Records `event` at `now` into `trace`, if there is one.
fn note(trace: &mut Option<SharedTrace>, now: Instant, event: Event) {
    trace.record(Record::new(now.into(), event));
}

impl Sender<'_> {
    fn due(&self, start: Instant, index: usize) -> Instant {
        start + self.gap * u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Puts as much of `body` into the socket as fits; `true` once it is all in.
    /// Each send is recorded into `trace`: the bytes the socket took (raw), a
    /// whole frame with its header (framed), a whole message with its length.
    fn write(
        writer: &mut Writer,
        socket: &mut tcp::Socket<'_>,
        body: &[u8],
        trace: &mut Option<SharedTrace>,
        (conn, now): (Conn, Instant),
    ) -> Result<bool, String> {
        let mut sent = |bytes: usize| {
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            note(trace, now, Event::Send { conn, bytes });
        };
        match writer {
            Writer::Raw { offset } => {
                let n = socket
                    .send_slice(&body[*offset..])
                    .map_err(|e| e.to_string())?;
                if n > 0 {
                    sent(n);
                }
                *offset += n;
                let done = *offset == body.len();
                if done {
                    *offset = 0;
                }
                Ok(done)
            }
            Writer::Framed(stream) => {
                // What is queued goes first; a frame is queued whole or not at all.
                drain(stream, socket)?;
                let queued = match stream.send(body) {
                    Ok(()) => {
                        sent(HEADER_LEN + body.len());
                        true
                    }
                    Err(SendError::WouldBlock) => false,
                    Err(e) => return Err(e.to_string()),
                };
                drain(stream, socket)?;
                Ok(queued)
            }
            Writer::Acked(sender) => loop {
                let progress = socket
                    .send(|space| match sender.write(body, space) {
                        Ok(p) => (p.written, Ok(p)),
                        Err(e) => (0, Err(e)),
                    })
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if progress.complete {
                    sent(HEADER_LEN + body.len());
                    break Ok(true);
                }
                // Nothing written: waiting for the acknowledgement, or the buffer is full.
                if progress.written == 0 {
                    break Ok(false);
                }
            },
        }
    }
}

impl Service for Sender<'_> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        self.last_poll = now;
        let socket = sockets.get_mut::<tcp::Socket>(self.socket);
        trace::sample(socket, now, &mut self.trace);
        if !socket.may_send() {
            return;
        }
        let start = *self.start.get_or_insert(now);
        if let Writer::Acked(sender) = &mut self.writer {
            while socket.can_recv() {
                let taken = socket.recv(|acks| match sender.on_receive(acks) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match taken {
                    Ok(Ok(0)) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return self.error = Some(e.to_string()),
                    Err(e) => return self.error = Some(e.to_string()),
                }
            }
        }
        while let Some(body) = self.messages.get(self.next) {
            if now < self.due(start, self.next) {
                break;
            }
            let at = (self.conn, now);
            match Self::write(&mut self.writer, socket, body, &mut self.trace, at) {
                Ok(true) => self.next += 1,
                Ok(false) => break,
                Err(e) => return self.error = Some(e),
            }
        }
        trace::sample(socket, now, &mut self.trace);
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        // Wake for the next scheduled send; a send that waits for buffer space or an
        // acknowledgement is woken by the traffic instead.
        let due = self.due(self.start?, self.next);
        (self.next < self.messages.len() && due > self.last_poll).then_some(due)
    }
}

/// How the server side reads.
enum Reader {
    /// `recv(1024)` in a loop, each read kept as it came.
    Naive,
    /// Whole frames out of a [`Framed`] session.
    Framed(Box<FramedConnection>),
    /// Read a length, acknowledge it, read the body.
    Acked(AckReceiver<Vec<u8>>),
}

/// The server's application: reads until every byte or message has arrived.
struct Receiver {
    socket: SocketHandle,
    expected_messages: usize,
    expected_bytes: usize,
    reader: Reader,
    /// Naive: each read's bytes and time. Otherwise: each whole message.
    received: Vec<(Instant, Vec<u8>)>,
    received_bytes: usize,
    reads: u64,
    done_at: Option<Instant>,
    error: Option<String>,
    trace: Option<SharedTrace>,
    /// The connection, from this end.
    conn: Conn,
}

impl Receiver {
    fn read(&mut self, socket: &mut tcp::Socket<'_>, now: Instant) -> Result<(), String> {
        let conn = self.conn;
        let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let read = |trace: &mut Option<SharedTrace>, n: usize| {
            note(
                trace,
                now,
                Event::Read {
                    conn,
                    bytes: size(n),
                },
            );
        };
        let delivered = |trace: &mut Option<SharedTrace>, n: usize| {
            let header = HEADER_LEN as u8;
            note(
                trace,
                now,
                Event::Frame {
                    conn,
                    body: size(n),
                    header,
                },
            );
        };
        match &mut self.reader {
            Reader::Naive => {
                let mut buf = [0u8; RECV_SIZE];
                while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
                    read(&mut self.trace, n);
                    self.reads += 1;
                    self.received_bytes += n;
                    self.received.push((now, buf[..n].to_vec()));
                }
            }
            Reader::Framed(stream) => loop {
                let mut taken = 0;
                if socket.can_recv() {
                    taken = socket
                        .recv(|bytes| {
                            let n = stream.receive(bytes, SESSION_TIME);
                            (n, n)
                        })
                        .map_err(|e| e.to_string())?;
                    if taken > 0 {
                        read(&mut self.trace, taken);
                    }
                }
                let mut frames = 0;
                while let Some(frame) = stream.recv() {
                    delivered(&mut self.trace, frame.len());
                    self.received_bytes += frame.len();
                    self.received.push((now, frame.to_vec()));
                    frames += 1;
                }
                if let Some(e) = stream.error() {
                    return Err(e.to_string());
                }
                if taken == 0 && frames == 0 {
                    break;
                }
            },
            Reader::Acked(receiver) => loop {
                let mut progress = false;
                if socket.can_recv() {
                    let taken = socket
                        .recv(|bytes| match receiver.feed(bytes) {
                            Ok(n) => (n, Ok(n)),
                            Err(e) => (0, Err(e)),
                        })
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    if taken > 0 {
                        read(&mut self.trace, taken);
                        self.reads += 1;
                        progress = true;
                    }
                }
                if receiver.ack_pending() {
                    let written = socket
                        .send(|space| {
                            let n = receiver.write_ack(space);
                            (n, n)
                        })
                        .map_err(|e| e.to_string())?;
                    progress |= written > 0;
                }
                if let Some(message) = receiver.next_message() {
                    delivered(&mut self.trace, message.len());
                    self.received_bytes += message.len();
                    self.received.push((now, message.to_vec()));
                    progress = true;
                }
                if !progress {
                    break;
                }
            },
        }
        Ok(())
    }

    fn outcome(self, case: Case, port: u16, start: Instant, done_at: Instant) -> Outcome {
        let slug = case.slug;
        let (reads, intact, naive_reads, frame_stats) = match &self.reader {
            Reader::Naive => {
                let naive_reads: Vec<_> = self
                    .received
                    .iter()
                    .map(|(at, bytes)| (since(start, *at), bytes.clone()))
                    .collect();
                let intact = intact_reads(&naive_reads, &case.messages);
                (self.reads, intact, naive_reads, None)
            }
            Reader::Framed(stream) => {
                let stats = stream.stats().read;
                (
                    stats.reads,
                    self.whole_messages(&case.messages),
                    Vec::new(),
                    Some(stats),
                )
            }
            Reader::Acked(_) => (
                self.reads,
                self.whole_messages(&case.messages),
                Vec::new(),
                None,
            ),
        };
        Outcome {
            label: case.label,
            slug,
            port,
            messages: case.messages,
            reads,
            intact,
            elapsed: since(start, done_at),
            naive_reads,
            frame_stats,
            conn: self.conn.reversed(),
            trace: Vec::new(),
        }
    }

    /// Messages received exactly as sent, in their place.
    fn whole_messages(&self, messages: &[Vec<u8>]) -> usize {
        self.received
            .iter()
            .zip(messages)
            .filter(|((_, got), sent)| got == *sent)
            .count()
    }
}

impl Service for Receiver {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.socket);
        // Before the reads: what arrived; after: what the application left.
        trace::sample(socket, now, &mut self.trace);
        if let Err(e) = self.read(socket, now) {
            self.error = Some(e);
        }
        trace::sample(socket, now, &mut self.trace);
        let done = match self.reader {
            Reader::Naive => self.received_bytes >= self.expected_bytes,
            Reader::Framed(_) | Reader::Acked(_) => self.received.len() >= self.expected_messages,
        };
        if done && self.done_at.is_none() {
            self.done_at = Some(now);
        }
    }
}

/// The byte offset where each message starts, and one past the last.
fn boundaries(messages: &[Vec<u8>]) -> Vec<usize> {
    let mut at = 0;
    let mut bounds = vec![0];
    for m in messages {
        at += m.len();
        bounds.push(at);
    }
    bounds
}

/// Reads that returned exactly one message: both ends on a message boundary, and
/// no boundary inside.
fn intact_reads(reads: &[(Duration, Vec<u8>)], messages: &[Vec<u8>]) -> usize {
    let bounds = boundaries(messages);
    let mut start = 0;
    let mut intact = 0;
    for (_, bytes) in reads {
        let end = start + bytes.len();
        if let Ok(i) = bounds.binary_search(&start)
            && bounds.get(i + 1) == Some(&end)
        {
            intact += 1;
        }
        start = end;
    }
    intact
}

/// What a read at `start..start + len` of the stream holds, in message terms:
/// `msg 1 bytes 0..1024 of 3000`, `msg 2-20`, `msg 1 bytes 2920..3000 + msg 2`.
fn describe(start: usize, len: usize, messages: &[Vec<u8>]) -> String {
    let bounds = boundaries(messages);
    let end = start + len;
    let mut parts: Vec<String> = Vec::new();
    // A run of whole messages, 1-based: (first, last).
    let mut run: Option<(usize, usize)> = None;
    let flush = |run: &mut Option<(usize, usize)>, parts: &mut Vec<String>| {
        if let Some((first, last)) = run.take() {
            parts.push(if first == last {
                format!("msg {first}")
            } else {
                format!("msg {first}-{last}")
            });
        }
    };
    for (i, pair) in bounds.windows(2).enumerate() {
        let (m_start, m_end) = (pair[0], pair[1]);
        let (from, to) = (start.max(m_start), end.min(m_end));
        if from >= to {
            continue;
        }
        let number = i + 1;
        if from == m_start && to == m_end {
            run = match run {
                Some((first, _)) => Some((first, number)),
                None => Some((number, number)),
            };
        } else {
            flush(&mut run, &mut parts);
            parts.push(format!(
                "msg {number} bytes {}..{} of {}",
                from - m_start,
                to - m_start,
                m_end - m_start
            ));
        }
    }
    flush(&mut run, &mut parts);
    parts.join(" + ")
}

/// `bytes` as printable text; a long read shows its start and its end, where the
/// glued-on pieces are.
fn preview(bytes: &[u8]) -> String {
    const HEAD: usize = 28;
    const TAIL: usize = 22;
    let text: Vec<char> = bytes.escape_ascii().to_string().chars().collect();
    if text.len() <= HEAD + TAIL + 3 {
        return format!("\"{}\"", String::from_iter(&text));
    }
    let head = String::from_iter(&text[..HEAD]);
    let tail = String::from_iter(&text[text.len() - TAIL..]);
    format!("\"{head}...{tail}\"")
}

/// The naive reader's first reads, one line each.
fn show_reads(out: &mut String, outcome: &Outcome) {
    let mut offset = 0;
    for (i, (at, bytes)) in outcome.naive_reads.iter().enumerate() {
        if i < READS_SHOWN {
            let _ = writeln!(
                out,
                "    read {:>2} at {:>9}: {:>4} B = {}\n{:>27}{}",
                i + 1,
                millis(*at),
                bytes.len(),
                describe(offset, bytes.len(), &outcome.messages),
                "",
                preview(bytes)
            );
        }
        offset += bytes.len();
    }
    if outcome.naive_reads.len() > READS_SHOWN {
        let _ = writeln!(
            out,
            "    ... {} more reads",
            outcome.naive_reads.len() - READS_SHOWN
        );
    }
}

/// `count noun`, with an `s` unless `count` is 1.
fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn show_frame_stats(out: &mut String, traffic: &str, outcome: &Outcome) {
    if let Some(s) = outcome.frame_stats {
        let _ = writeln!(
            out,
            "  {traffic}: {}/{} messages whole, {} out of {}; {} carried several frames \
             (coalesced), {} took several reads (split)",
            outcome.intact,
            outcome.messages.len(),
            plural(s.frames, "frame"),
            plural(s.reads, "read"),
            plural(s.coalesced_reads, "read"),
            plural(s.split_frames, "frame"),
        );
    }
}

/// Everything the lab prints: the four parts, then the table.
fn render(options: &Options, report: &Report) -> String {
    let mut out = String::new();
    let n = options.messages;
    let delay = millis(options.delay());
    let rtt = millis(options.rtt());
    let _ = writeln!(
        out,
        "Sticky packets on smoltcp: link delay {delay} each way (RTT {rtt}), loss {} per mille, seed {}.\n\
         TCP carries bytes, not messages; each case below sends messages one way and counts what the reader gets.\n",
        options.loss, options.seed
    );

    let _ = writeln!(
        out,
        "Part 1. {n} small sends, {} apart, with Nagle's algorithm on: while a segment waits for its ACK \
         (one RTT, plus the receiver's 10 ms delayed ACK), Nagle holds later small sends back and sends \
         them together. The reader loops on recv(1024).",
        millis(SEND_GAP)
    );
    let one = &report.small_nagle;
    let _ = writeln!(
        out,
        "  {} messages sent, {} reads seen:",
        one.messages.len(),
        one.reads
    );
    show_reads(&mut out, one);
    let off = &report.small_no_nagle;
    let why = if off.reads >= off.messages.len() as u64 {
        "Here the reader was quick enough to see each segment alone, but TCP promises no boundaries: \
         a slower reader, a loss or a full window merges them again."
    } else {
        "They merged even so: TCP promises no boundaries, and a loss, a slow reader or a full window \
         glues segments together."
    };
    let _ = writeln!(
        out,
        "  The same with Nagle off: {} for {} messages. {why}\n",
        plural(off.reads, "read"),
        off.messages.len()
    );

    let _ = writeln!(
        out,
        "Part 2. One {BIG_LEN}-byte send, then a 10-byte send. The reader's recv(1024) takes at most 1024 bytes \
         a call, so the big message comes out in pieces. Its last piece is shorter than a segment: Nagle holds it \
         until the segments before it are acknowledged, the 10-byte send joins it meanwhile, and the two come out \
         glued in one read (with no delay on the link the acknowledgement comes first, and they stay apart)."
    );
    show_reads(&mut out, &report.big);
    let _ = writeln!(
        out,
        "  {} of {} messages came out of a read of their own.\n",
        report.big.intact,
        report.big.messages.len()
    );

    let _ = writeln!(
        out,
        "Part 3. The cure by length framing (the primer's struct.pack, in network order): each message goes \
         out as a 4-byte length and the body (a Framed session); the reader cuts the stream back into frames \
         (FrameReader), whatever TCP merged or split. Same traffic as parts 1 and 2, Nagle on. A read is \
         a piece of the socket's receive ring: a frame that the ring's end cuts in two counts as split too."
    );
    show_frame_stats(&mut out, "small sends", &report.framed_small);
    show_frame_stats(&mut out, "3000 B + 10 B", &report.framed_big);
    let _ = writeln!(out);

    let acked = &report.acked;
    let framed = &report.framed_baseline;
    let extra = acked
        .elapsed
        .total_micros()
        .checked_sub(framed.elapsed.total_micros());
    let _ = writeln!(
        out,
        "Part 4. The cure by acknowledged length (ack.rs, kept for study): send the length alone, wait until the peer \
         echoes it, then send the body. The reader always knows what comes next, at one extra round trip \
         per message. All {n} messages are ready at once; Nagle off on both sides (it would add more waits).\n  \
         length framing:      {} for {} messages\n  \
         acknowledged length: {} for {} messages",
        millis(framed.elapsed),
        framed.messages.len(),
        millis(acked.elapsed),
        acked.messages.len(),
    );
    if let Some(extra) = extra.filter(|&extra| extra > 0) {
        let _ = writeln!(
            out,
            "  the acknowledgements cost {} = {} per message; one RTT is {rtt}",
            millis(Duration::from_micros(extra)),
            millis(Duration::from_micros(extra / u64::from(n))),
        );
    }
    if options.loss > 0 {
        let _ = writeln!(
            out,
            "  (with loss, retransmission timeouts of a second or more come on top and can swamp this \
             comparison; --loss 0 shows the round trips alone)"
        );
    }
    let _ = writeln!(out);

    out.push_str(&table(report));
    out
}

/// The summary: one row per case.
fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} | {:>13} | {:>10} | {:>15} | {:>12} | {:>4}",
        "case", "messages sent", "reads seen", "messages intact", "virtual time", "port"
    );
    let _ = writeln!(
        out,
        "{:-<30}-+-{:->13}-+-{:->10}-+-{:->15}-+-{:->12}-+-{:->4}",
        "", "", "", "", "", ""
    );
    for row in report.rows() {
        let _ = writeln!(
            out,
            "{:<30} | {:>13} | {:>10} | {:>15} | {:>12} | {:>4}",
            row.label,
            row.messages.len(),
            row.reads,
            format!("{}/{}", row.intact, row.messages.len()),
            millis(row.elapsed),
            row.port
        );
    }
    out.push_str(
        "virtual time: from the first send to the last message read. port: the case's connection \
         in a capture (tcp.port == N).\n",
    );
    out
}

/// The command line that made this run, as it would be typed.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut line = String::from("cargo run --release --example sticky_lab");
    if !args.is_empty() {
        line.push_str(" -- ");
        line.push_str(&args.join(" "));
    }
    line
}

/// Draws every case into `dir` as `SLUG.svg`; returns the files written.
fn write_pictures(
    dir: &std::path::Path,
    report: &Report,
    command: &str,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for row in report.rows() {
        let title = format!("sticky_lab case {}", row.label);
        let (picture, _) = svg::render(&row.trace, row.conn, &title, command);
        let path = dir.join(format!("{}.svg", row.slug));
        std::fs::write(&path, picture)?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> ExitCode {
    env_logger::init();
    let options = Options::parse();
    let capture = match Capture::create(options.pcap.as_deref()) {
        Ok(capture) => capture,
        Err(e) => {
            eprintln!("cannot create the capture file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let capture_failure = capture.failure();
    match run_lab(&options, capture) {
        Ok(report) => {
            print!("{}", render(&options, &report));
            if let Some(dir) = &options.svg {
                match write_pictures(dir, &report, &command_line()) {
                    Ok(files) => println!(
                        "\n{} pictures written to {} (one per case).",
                        files.len(),
                        dir.display()
                    ),
                    Err(e) => {
                        eprintln!("cannot write the pictures: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if let Some(path) = &options.pcap {
                if let Some(e) = capture_failure.take() {
                    eprintln!("cannot write the capture file {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!(
                    "\nCapture written to {} (case on tcp port {FIRST_PORT} and up, see the last column).",
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sticky_lab failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("sticky_lab").chain(args.iter().copied()))
    }

    fn lab(args: &[&str]) -> (Options, Report) {
        let options = options(args);
        let report = run_lab(&options, Capture::none()).unwrap();
        (options, report)
    }

    #[test]
    fn small_sends_with_nagle_come_out_in_fewer_reads_than_messages() {
        let (_, report) = lab(&[]);
        let one = &report.small_nagle;
        assert_eq!(one.messages.len(), 20);
        assert!(one.reads < 20, "{} reads", one.reads);
        assert!(one.intact < 20);
        let joined: Vec<u8> = one
            .naive_reads
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert_eq!(
            joined,
            one.messages.concat(),
            "merged, but every byte in order"
        );
    }

    #[test]
    fn a_send_larger_than_recv_comes_out_in_1024_byte_pieces_glued_to_the_next() {
        let (_, report) = lab(&[]);
        let reads = &report.big.naive_reads;
        assert_eq!(reads[0].1.len(), 1024);
        assert!(reads.len() >= 3);
        assert!(reads.last().unwrap().1.ends_with(b"<small 10>"));
        assert_eq!(
            report.big.intact, 0,
            "the small message is glued to the big one's tail"
        );
        // Each read before the glued one took all the buffer held (the last of
        // them less than 1024): no piece of the big message waited there. The
        // tail was held back by Nagle, and went out with the small send.
        let (glued, before) = reads.split_last().unwrap();
        assert!(glued.1.len() > 10 && glued.1.len() < 1024);
        assert!(before.last().unwrap().1.len() < 1024);
        // With no delay, the acknowledgement comes before the small send: the
        // tail goes alone, and the small message comes out in a read of its own.
        let (_, quick) = lab(&["--delay-ms", "0"]);
        assert_eq!(quick.big.intact, 1);
        assert_eq!(quick.big.naive_reads.last().unwrap().1, b"<small 10>");
    }

    #[test]
    fn a_link_delay_no_handshake_fits_is_refused_on_the_command_line() {
        let parse = |delay| Options::try_parse_from(["sticky_lab", "--delay-ms", delay]);
        assert!(parse("5000").is_ok());
        assert!(parse("8000").is_err());
    }

    #[test]
    fn framing_delivers_every_message_whole_and_counts_merges_and_splits() {
        let (_, report) = lab(&[]);
        for outcome in [
            &report.framed_small,
            &report.framed_big,
            &report.framed_baseline,
        ] {
            assert_eq!(outcome.intact, outcome.messages.len(), "{}", outcome.label);
            let stats = outcome.frame_stats.unwrap();
            assert_eq!(stats.frames, outcome.messages.len() as u64);
            assert!(stats.reads > 0);
        }
        assert!(report.framed_small.frame_stats.unwrap().coalesced_reads > 0);
        assert!(report.framed_big.frame_stats.unwrap().split_frames > 0);
    }

    #[test]
    fn acknowledged_length_costs_about_one_round_trip_per_message() {
        let (options, report) = lab(&["--messages", "30", "--delay-ms", "10"]);
        assert_eq!(report.acked.intact, 30);
        let extra =
            report.acked.elapsed.total_micros() - report.framed_baseline.elapsed.total_micros();
        let expected = 30 * options.rtt().total_micros();
        assert!(
            extra * 10 >= expected * 9 && extra * 10 <= expected * 11,
            "extra {extra} µs, expected about {expected} µs"
        );
    }

    #[test]
    fn the_same_seed_prints_the_same_numbers() {
        let args = ["--loss", "50", "--seed", "9"];
        let (options, first) = lab(&args);
        let (_, second) = lab(&args);
        assert_eq!(render(&options, &first), render(&options, &second));
        // The cures still deliver every message whole over the lossy link.
        assert_eq!(first.framed_small.intact, first.framed_small.messages.len());
        assert_eq!(first.acked.intact, first.acked.messages.len());
    }

    #[test]
    fn the_capture_is_a_pcap_file_with_every_frame() {
        let path = std::env::temp_dir().join(format!("sticky_lab_{}.pcap", std::process::id()));
        let options = options(&["--messages", "5"]);
        let capture = Capture::create(Some(&path)).unwrap();
        run_lab(&options, capture).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // libpcap's magic number, then one 16-byte record header per frame at least.
        assert_eq!(bytes[..4], 0xa1b2_c3d4u32.to_le_bytes());
        assert!(
            bytes.len() > 24 + 7 * 3 * (16 + 54),
            "{} bytes",
            bytes.len()
        );
    }

    fn traced_lab(args: &[&str]) -> Report {
        let trace = Some(SharedTrace::default());
        run_lab_traced(&options(args), Capture::none(), trace).unwrap()
    }

    /// Elements of the picture whose class has `token`.
    fn count_class(doc: &roxmltree::Document<'_>, token: &str) -> usize {
        doc.descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.split(' ').any(|t| t == token))
            })
            .count()
    }

    #[test]
    fn the_trace_adds_up_to_the_readers_own_counters() {
        let report = traced_lab(&[]);
        for outcome in [
            &report.framed_small,
            &report.framed_big,
            &report.framed_baseline,
        ] {
            let stats = outcome.frame_stats.unwrap();
            let tally = trace::Tally::of(outcome.trace.iter(), outcome.conn.reversed());
            assert_eq!(
                (
                    tally.reads,
                    tally.read_bytes,
                    tally.frames,
                    tally.body_bytes,
                    tally.coalesced_reads,
                    tally.split_frames
                ),
                (
                    stats.reads,
                    stats.bytes,
                    stats.frames,
                    stats.body_bytes,
                    stats.coalesced_reads,
                    stats.split_frames
                ),
                "{}",
                outcome.label
            );
        }
        assert!(report.framed_small.frame_stats.unwrap().coalesced_reads > 0);
        assert!(report.framed_big.frame_stats.unwrap().split_frames > 0);
        for outcome in report.rows() {
            let bytes: usize = outcome.messages.iter().map(Vec::len).sum();
            let reader = trace::Tally::of(outcome.trace.iter(), outcome.conn.reversed());
            let sender = trace::Tally::of(outcome.trace.iter(), outcome.conn);
            assert_eq!(reader.reads, outcome.reads, "{}", outcome.label);
            assert_eq!(
                reader.out_of_order, 0,
                "{}: events in time order",
                outcome.label
            );
            assert!(sender.segments_out > 0 && sender.segments_in > 0);
            assert!(sender.samples > 0 && reader.samples > 0);
            if outcome.frame_stats.is_none() && outcome.label.starts_with(['1', '2']) {
                assert_eq!(reader.read_bytes, bytes as u64, "{}", outcome.label);
                assert_eq!(sender.sent_bytes, bytes as u64, "{}", outcome.label);
            } else {
                let headers = (HEADER_LEN * outcome.messages.len()) as u64;
                assert_eq!(reader.body_bytes, bytes as u64, "{}", outcome.label);
                assert_eq!(
                    sender.sent_bytes,
                    bytes as u64 + headers,
                    "{}",
                    outcome.label
                );
            }
        }
    }

    #[test]
    fn without_svg_nothing_is_recorded() {
        let (_, report) = lab(&["--messages", "3"]);
        assert!(report.rows().iter().all(|row| row.trace.is_empty()));
    }

    #[test]
    fn each_picture_is_xml_and_draws_what_the_trace_holds() {
        let report = traced_lab(&["--loss", "50", "--seed", "3"]);
        for outcome in report.rows() {
            let (picture, drawn) = svg::render(&outcome.trace, outcome.conn, outcome.label, "test");
            let doc = roxmltree::Document::parse(&picture)
                .unwrap_or_else(|e| panic!("{}: not XML: {e}", outcome.label));
            let reader = trace::Tally::of(outcome.trace.iter(), outcome.conn.reversed());
            let sender = trace::Tally::of(outcome.trace.iter(), outcome.conn);
            let data_segments = outcome
                .trace
                .iter()
                .filter(|r| match r.event {
                    Event::Segment(s) => {
                        s.conn == outcome.conn
                            && (s.len > 0
                                || s.flags.contains(trace::Flags::SYN)
                                || s.flags.contains(trace::Flags::FIN))
                    }
                    _ => false,
                })
                .count();
            assert_eq!(
                count_class(&doc, "segment"),
                data_segments,
                "{}",
                outcome.label
            );
            assert_eq!(drawn.segments, data_segments);
            assert_eq!(count_class(&doc, "ack") as u64, sender.segments_in);
            assert_eq!(count_class(&doc, "send") as u64, sender.sends);
            assert_eq!(
                count_class(&doc, "read") as u64,
                reader.reads,
                "{}",
                outcome.label
            );
            assert_eq!(count_class(&doc, "frame") as u64, reader.frames);
            assert_eq!(count_class(&doc, "coalesced"), drawn.coalesced);
            if let Some(stats) = outcome.frame_stats {
                assert_eq!(
                    drawn.coalesced as u64, stats.coalesced_reads,
                    "{}",
                    outcome.label
                );
                assert_eq!(drawn.split as u64, stats.split_frames, "{}", outcome.label);
                assert_eq!(count_class(&doc, "split") as u64, stats.split_frames);
            }
        }
        // The naive cases mark what the primer describes.
        let (_, nagle) = svg::render(&report.small_nagle.trace, report.small_nagle.conn, "", "");
        assert!(nagle.coalesced > 0, "several sends came out of one read");
        let (_, big) = svg::render(&report.big.trace, report.big.conn, "", "");
        assert!(big.split > 0, "the big send spilled into several reads");
    }

    #[test]
    fn svg_writes_one_picture_per_case() {
        let dir = std::env::temp_dir().join(format!("sticky_lab_svg_{}", std::process::id()));
        let report = traced_lab(&["--messages", "4"]);
        let files = write_pictures(&dir, &report, "cargo run --example sticky_lab").unwrap();
        assert_eq!(files.len(), 7);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(text.contains("cargo run --example sticky_lab"));
            roxmltree::Document::parse(&text).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The pictures in docs/img are what the command beside them draws today: a
    /// change to the lab or the renderer that alters them must commit them again.
    #[test]
    fn the_committed_pictures_are_what_their_command_draws() {
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
        let dir = std::env::temp_dir().join(format!("sticky_lab_docs_{}", std::process::id()));
        let report = traced_lab(&["--svg", "docs/img"]);
        let command = "cargo run --release --example sticky_lab -- --svg docs/img";
        let files = write_pictures(&dir, &report, command).unwrap();
        for file in &files {
            let name = file.file_name().unwrap();
            let fresh = std::fs::read_to_string(file).unwrap();
            let kept = std::fs::read_to_string(committed.join(name))
                .unwrap_or_else(|e| panic!("docs/img/{} is not committed: {e}", name.display()));
            assert!(
                fresh == kept,
                "docs/img/{} differs from what `{command}` draws now: run it and commit the pictures",
                name.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    #[test]
    fn describe_names_whole_messages_and_pieces() {
        let messages = big_then_small();
        assert_eq!(describe(0, 1024, &messages), "msg 1 bytes 0..1024 of 3000");
        assert_eq!(
            describe(2920, 90, &messages),
            "msg 1 bytes 2920..3000 of 3000 + msg 2"
        );
        let small = small_messages(5);
        assert_eq!(describe(0, 7, &small), "msg 1");
        assert_eq!(describe(7, 28, &small), "msg 2-5");
    }
}
