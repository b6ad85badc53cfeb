//! In-process TCP throughput: smoltcp's own loopback benchmark beside smolsock's
//! framing, in the same run, with the ratio.
//!
//! The raw baseline has the shape of smoltcp's `examples/loopback_benchmark.rs`: one
//! interface on a `phy::Loopback` (Ethernet medium, 127.0.0.1), a listening and a
//! connecting TCP socket, and after each `iface.poll` the receiver and the sender
//! only advance their rings (`recv(|b| (b.len(), b.len()))`, `send(|b| (b.len(),
//! ()))`), with the wall clock as smoltcp's time. The framed path is the same
//! stack with a [`Framed`] session on each socket, driven by `TcpSession::poll` as
//! an application would: the sender writes whole frames of a real body with
//! `send_via`, straight into the send ring as far as it fits there and the rest
//! through the session's queue; the receiver's `FrameHandler` takes each whole
//! frame (in place in the receive ring when it lies there whole, else from the
//! session's storage) and checks its length and sequence number. The streaming
//! path is the same stack with a `StreamingFrames` on each socket: the sender
//! writes each frame's header and then fills its body in place in the send ring,
//! as many frames as the ring takes to a call (`send_frames`), the receiver takes each body in the pieces it sits in the receive
//! ring (`recv_pieces`) and checks every piece's frame length and offset, where
//! each frame ends, and its sequence number. Like the raw sender, which leaves the
//! ring's bytes as they are, the streaming sender writes only the 8-byte sequence
//! number and leaves the rest of the body as it is (`--verify` writes and checks a
//! full pattern, as the framed path's body).
//!
//! ```sh
//! cargo run --release --example bench_inprocess              # both cases, 5 rounds
//! cargo run --release --example bench_inprocess -- --help
//! # one path alone, for a profiler; instruction counts do not depend on the load:
//! valgrind --tool=callgrind target/release/examples/bench_inprocess --mib 16 --rounds 1 --only mcu --path framed
//! ```
//!
//! Each round runs the five paths back to back (raw as smoltcp has it, raw with
//! the socket options a session sets, by-hand, framed, streaming); the table
//! gives the median rate of each path and the median, lowest and highest ratios
//! of framed, streaming and by-hand to each of the first three (by-hand not to
//! itself) within a round.
//! Rates are per second of the thread's CPU time, not wall time: everything runs
//! on one thread, so this is the cost of the transfer even on a machine shared
//! with other work (wall time is shown beside it).
//!
//! By-hand is the least any framing costs on this stack, the floor under the
//! other two: the raw path's two closures writing and parsing 4-byte headers and
//! checking each frame's length and sequence number by hand, with no counters,
//! no back-pressure from the application and one header format.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use clap::Parser;
use smolsock::net::{RecvError, SendError, StreamingFrames, TcpSession};
use smolsock::session::{
    Flow, FrameHandler, FrameOut, Framed, SendError as FrameSendError, Status,
};
#[cfg(test)]
use smolsock::trace::Tally;
use smolsock::trace::{Conn, Probe, Recorder, TraceRing, WhenFull};
use smolsock::wire::frame::{FrameSource, HeaderFormat};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// Ethernet header bytes on top of the IP MTU (smoltcp's Ethernet MTU counts them).
const ETHERNET_HEADER_LEN: usize = 14;

/// `phy::Loopback`'s MTU, used when a case asks for none.
const LOOPBACK_MTU: usize = 65535;

const MIB: f64 = 1024.0 * 1024.0;

const PORT: u16 = 1234;
const LOCAL_PORT: u16 = 65000;

#[derive(Parser, Debug)]
#[command(about = "In-process throughput: smoltcp's loopback benchmark beside smolsock's framing")]
struct Options {
    /// MiB moved per run.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Rounds of the five paths per case (the table shows medians).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Check every byte of every frame, not only its length and sequence number
    /// (not by-hand, which checks only those).
    #[arg(long)]
    verify: bool,
    /// Run only the case whose name contains this (e.g. `mcu`).
    #[arg(long)]
    only: Option<String>,
    /// Run one path alone (raw, raw-nodelay, by-hand, framed or streaming), for a
    /// profiler (`perf record`, `valgrind --tool=callgrind`); prints its rate only.
    #[arg(long, value_parser = PATHS)]
    path: Option<String>,
    /// Measure the sessions' trace instead: the framed path untraced and traced,
    /// in each round.
    #[arg(long, conflicts_with = "path")]
    trace: bool,
}

/// One configuration of the stack and the frames.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    /// Each socket's receive and transmit buffer, bytes.
    socket_buffer: usize,
    /// IP MTU; `None` is the loopback's own (65535 bytes of Ethernet frame).
    ip_mtu: Option<usize>,
    /// Frame body length.
    frame_len: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "64k",
        socket_buffer: 64 * 1024,
        ip_mtu: None,
        frame_len: 64 * 1024,
    },
    Case {
        name: "mcu",
        socket_buffer: 2 * 1024,
        ip_mtu: Some(1500),
        frame_len: 1024,
    },
];

impl Case {
    fn describe(&self) -> String {
        let mtu = match self.ip_mtu {
            Some(mtu) => format!("MTU {mtu}"),
            None => format!("MTU {}", LOOPBACK_MTU - ETHERNET_HEADER_LEN),
        };
        format!(
            "{} KiB buffers, {mtu}, {} frames",
            self.socket_buffer / 1024,
            size(self.frame_len)
        )
    }

    fn format(&self) -> HeaderFormat {
        // The frame is as large as the format allows: the receiver needs exactly
        // one frame of storage.
        let max = u32::try_from(self.frame_len).expect("frame length fits u32");
        HeaderFormat::NETWORK
            .with_max_len(max)
            .expect("frame length fits a 4-byte header")
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// `phy::Loopback` with another MTU.
struct MtuLoopback {
    inner: Loopback,
    mtu: usize,
    /// Packets handed to the stack.
    packets: u64,
}

impl Device for MtuLoopback {
    type RxToken<'a> = <Loopback as Device>::RxToken<'a>;
    type TxToken<'a> = <Loopback as Device>::TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let tokens = self.inner.receive(now);
        self.packets += u64::from(tokens.is_some());
        tokens
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// One interface on a loopback with two connected TCP sockets, as in smoltcp's example.
struct Stack {
    iface: Interface,
    device: MtuLoopback,
    sockets: SocketSet<'static>,
    server: SocketHandle,
    client: SocketHandle,
    polls: u64,
    /// What the receiver had seen at the last poll, and the polls since it
    /// last changed.
    progress: u64,
    still: u64,
    /// The time of the last poll.
    now: Instant,
}

/// Polls in a row with nothing new received after which a run is stopped: 10
/// to 20 s of spinning, where smoltcp's timers hold a run up for milliseconds.
const STALL_POLLS: u64 = 200_000_000;

impl Stack {
    fn connected(case: &Case, configure: fn(&mut tcp::Socket<'_>)) -> Result<Self, String> {
        let mut device = MtuLoopback {
            inner: Loopback::new(Medium::Ethernet),
            mtu: case
                .ip_mtu
                .map_or(LOOPBACK_MTU, |mtu| mtu + ETHERNET_HEADER_LEN),
            packets: 0,
        };
        let config = Config::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
        let mut iface = Interface::new(config, &mut device, Instant::now());
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
                .expect("room for one address");
        });
        let socket = || {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; case.socket_buffer]),
                tcp::SocketBuffer::new(vec![0; case.socket_buffer]),
            );
            configure(&mut socket);
            socket
        };
        let mut sockets = SocketSet::new(Vec::with_capacity(2));
        let server = sockets.add(socket());
        let client = sockets.add(socket());
        sockets
            .get_mut::<tcp::Socket>(server)
            .listen(PORT)
            .map_err(|e| format!("listen: {e}"))?;
        sockets
            .get_mut::<tcp::Socket>(client)
            .connect(
                iface.context(),
                (IpAddress::v4(127, 0, 0, 1), PORT),
                LOCAL_PORT,
            )
            .map_err(|e| format!("connect: {e}"))?;
        let mut stack = Self {
            iface,
            device,
            sockets,
            server,
            client,
            polls: 0,
            progress: 0,
            still: 0,
            now: Instant::now(),
        };
        for _ in 0..100 {
            stack.poll();
            let established =
                |h| stack.sockets.get::<tcp::Socket>(h).state() == tcp::State::Established;
            if established(stack.server) && established(stack.client) {
                return Ok(stack);
            }
        }
        Err("the handshake did not complete".into())
    }

    fn poll(&mut self) {
        self.polls += 1;
        self.now = Instant::now();
        self.iface
            .poll(self.now, &mut self.device, &mut self.sockets);
    }

    /// [`poll`](Self::poll) in a transfer whose receiver has seen `progress`
    /// (bytes or frames) so far: a run whose progress stands still for
    /// [`STALL_POLLS`] polls in a row does not move, and ends with an error
    /// instead of spinning. (Nagle's algorithm and delayed ACKs leave a run
    /// waiting on smoltcp's timers, on this machine's clock, for a few
    /// hundred thousand polls at most.)
    fn poll_moving(&mut self, progress: u64) -> Result<(), String> {
        if progress != self.progress {
            self.progress = progress;
            self.still = 0;
        } else {
            self.still += 1;
            if self.still >= STALL_POLLS {
                return Err(format!(
                    "{} polls in a row with nothing new received: nothing moves",
                    self.still
                ));
            }
        }
        self.poll();
        Ok(())
    }
}

/// CPU time this thread has used. The stack, both sockets and both applications
/// run on this one thread, so it is the cost of the transfer even when other
/// processes share the cores (wall time is then mostly time spent waiting).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid, exclusive pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is always there on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A wall-clock and a CPU-time stopwatch started together.
struct Stopwatch {
    wall: WallClock,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: WallClock::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// (wall, cpu) since the start.
    fn read(&self) -> (Duration, Duration) {
        (self.wall.elapsed(), thread_cpu_time() - self.cpu)
    }
}

/// A transfer being timed: the stopwatches, and the stack's counters at the start.
struct Timing {
    stopwatch: Stopwatch,
    polls: u64,
    packets: u64,
}

impl Timing {
    fn start(stack: &Stack) -> Self {
        Self {
            stopwatch: Stopwatch::start(),
            polls: stack.polls,
            packets: stack.device.packets,
        }
    }

    /// The run, `bytes` of payload in `frames` frames having arrived.
    fn finish(self, stack: &Stack, bytes: u64, frames: f64) -> Run {
        let (elapsed, cpu) = self.stopwatch.read();
        Run {
            bytes,
            frames,
            elapsed,
            cpu,
            polls: stack.polls - self.polls,
            packets: stack.device.packets - self.packets,
        }
    }
}

/// What one run moved.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Payload bytes received (frame bodies for the framed path).
    bytes: u64,
    /// Frames received (for the raw path: `bytes` divided by the frame length).
    frames: f64,
    /// Wall-clock time of the transfer.
    elapsed: Duration,
    /// CPU time of the transfer.
    cpu: Duration,
    /// `iface.poll` calls and packets through the loopback during the transfer.
    polls: u64,
    packets: u64,
}

impl Run {
    /// Payload bytes per second of CPU time.
    fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.cpu.as_secs_f64()
    }

    /// Payload bytes per second of wall-clock time.
    fn bytes_per_wall_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// smoltcp's loopback benchmark: move at least `total` bytes, touching none of them,
/// with the sockets as `configure` leaves them.
fn raw(case: &Case, total: u64, configure: fn(&mut tcp::Socket<'_>)) -> Result<Run, String> {
    let mut stack = Stack::connected(case, configure)?;
    let mut received = 0u64;
    let timing = Timing::start(&stack);
    while received < total {
        stack.poll_moving(received)?;
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.server);
        while socket.can_recv() {
            let n = socket
                .recv(|buffer| (buffer.len(), buffer.len()))
                .map_err(|e| format!("recv: {e}"))?;
            received += n as u64;
        }
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.client);
        while socket.can_send() {
            socket
                .send(|buffer| (buffer.len(), ()))
                .map_err(|e| format!("send: {e}"))?;
        }
    }
    Ok(timing.finish(&stack, received, received as f64 / case.frame_len as f64))
}

/// The body of frame `seq`: a fixed pattern with the sequence number in front.
fn stamp(body: &mut [u8], seq: u64) {
    let seq = seq.to_le_bytes();
    let n = body.len().min(seq.len());
    body[..n].copy_from_slice(&seq[..n]);
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 1) as u8).collect()
}

/// A framed connection, each side's storage one frame of the case's maximum,
/// recording into `P` (nothing, for `()`).
type FramedConn<H, P = ()> = TcpSession<Framed<H, Vec<u8>, Vec<u8>, P>>;

fn framed_conn<H: FrameHandler, P: Recorder>(
    handle: SocketHandle,
    handler: H,
    format: HeaderFormat,
    probe: P,
) -> Result<FramedConn<H, P>, String> {
    let storage = || vec![0u8; format.max_frame_len()];
    let session =
        Framed::new(handler, storage(), storage(), format).map_err(|e| format!("framed: {e}"))?;
    Ok(TcpSession::new(handle, session.traced(probe)))
}

/// The receiving application: takes each whole frame as the session finds it, and
/// checks its length and sequence number (every byte with `--verify`).
struct Checker {
    frame_len: usize,
    verify: bool,
    expected: Vec<u8>,
    got: u64,
    wrong: Option<String>,
}

impl FrameHandler for Checker {
    fn on_frame(&mut self, frame: &[u8], _out: &mut FrameOut<'_>) -> Flow {
        if frame.len() != self.frame_len {
            self.wrong = Some(format!("frame {}: {} bytes", self.got, frame.len()));
            return Flow::Abort;
        }
        // The sequence number is checked on every frame, the rest on request.
        let in_order = match frame.first_chunk::<8>() {
            Some(seq) => *seq == self.got.to_le_bytes(),
            None => true,
        };
        if self.verify {
            stamp(&mut self.expected, self.got);
        }
        if !in_order || (self.verify && frame != &self.expected[..]) {
            self.wrong = Some(format!("frame {} is not the one sent", self.got));
            return Flow::Abort;
        }
        black_box(frame);
        self.got += 1;
        Flow::Continue
    }
}

/// The same transfer through `Framed` sessions: whole frames of `case.frame_len`
/// bytes. The sender writes each frame straight into the send ring with
/// `send_via` as far as it fits there, the rest into the session's queue, which
/// the pump (`TcpSession::poll`) empties into the ring; the receiver's pump feeds
/// the ring into the frame storage, and its handler takes each whole frame.
fn framed(case: &Case, total: u64, verify: bool) -> Result<Run, String> {
    let stack = Stack::connected(case, StreamingFrames::configure)?;
    framed_on(stack, case, total, verify, (), ()).map(|(run, ..)| run)
}

/// Records each ring of a traced run holds.
const RING: usize = 4096;

/// What a traced run's rings kept and dropped.
#[derive(Clone, Copy, Debug, Default)]
struct Records {
    kept: usize,
    dropped: u64,
}

/// The framed path with both sessions traced (`Framed::traced`): each read, send,
/// frame, and the socket's buffers before and after each poll, each session into
/// a ring of `RING` records that drops the oldest.
fn framed_traced(case: &Case, total: u64, verify: bool) -> Result<(Run, Records), String> {
    let stack = Stack::connected(case, StreamingFrames::configure)?;
    // On the heap, and lent to the sessions: each ring holds 4096 records.
    let ring = || Box::new(TraceRing::<RING>::new(WhenFull::DropOldest));
    let (mut rx_ring, mut tx_ring) = (ring(), ring());
    let rx = Probe::new(Conn::new(PORT, LOCAL_PORT), &mut *rx_ring);
    let tx = Probe::new(Conn::new(LOCAL_PORT, PORT), &mut *tx_ring);
    let (run, ..) = framed_on(stack, case, total, verify, rx, tx)?;
    let records = [&rx_ring, &tx_ring]
        .into_iter()
        .fold(Records::default(), |r, ring| Records {
            kept: r.kept + ring.len(),
            dropped: r.dropped + ring.dropped(),
        });
    Ok((run, records))
}

/// A framed run and its two connections, receiving and sending.
type FramedRun<P, Q> = (Run, FramedConn<Checker, P>, FramedConn<(), Q>);

/// The framed transfer on `stack`, the receiving session recording into
/// `rx_probe` and the sending one into `tx_probe`; gives back both sessions.
fn framed_on<P: Recorder, Q: Recorder>(
    mut stack: Stack,
    case: &Case,
    total: u64,
    verify: bool,
    rx_probe: P,
    tx_probe: Q,
) -> Result<FramedRun<P, Q>, String> {
    let format = case.format();
    let checker = Checker {
        frame_len: case.frame_len,
        verify,
        expected: pattern(case.frame_len),
        got: 0,
        wrong: None,
    };
    let (mut rx, mut tx) = (
        framed_conn(stack.server, checker, format, rx_probe)?,
        framed_conn(stack.client, (), format, tx_probe)?,
    );
    // Both sockets are connected: the first poll starts each session.
    rx.poll(&mut stack.sockets, stack.now)
        .map_err(|e| format!("poll: {e}"))?;
    tx.poll(&mut stack.sockets, stack.now)
        .map_err(|e| format!("poll: {e}"))?;
    let frames = total.div_ceil(case.frame_len as u64);
    let mut body = pattern(case.frame_len);
    let mut sent = 0u64;
    stamp(&mut body, 0);
    let timing = Timing::start(&stack);
    while rx.session().handler().got < frames {
        stack.poll_moving(rx.session().handler().got)?;
        let now = stack.now;
        let status = rx
            .poll(&mut stack.sockets, now)
            .map_err(|e| format!("poll: {e}"))?;
        if let Some(wrong) = &rx.session().handler().wrong {
            return Err(wrong.clone());
        }
        if let Some(e) = rx.session().error() {
            return Err(format!("recv: {e}"));
        }
        if status != Status::Open {
            return Err("the sender closed early".into());
        }
        loop {
            // A frame still queued goes first (the pump), also after the last one
            // was handed over, and the next one waits while the ring has no room.
            if !tx.session().is_flushed() {
                tx.poll(&mut stack.sockets, now)
                    .map_err(|e| format!("poll: {e}"))?;
                if !tx.session().is_flushed() {
                    break;
                }
            }
            if sent >= frames {
                break;
            }
            let socket = stack.sockets.get_mut::<tcp::Socket>(stack.client);
            let session = tx.session_mut();
            let result = socket
                .send(|space| match session.send_via(&body, space) {
                    Ok(direct) => (direct, Ok(())),
                    Err(e) => (0, Err(e)),
                })
                .map_err(|e| format!("send: {e}"))?;
            match result {
                Ok(()) => {
                    sent += 1;
                    stamp(&mut body, sent);
                    // Part of that frame waits in the session's queue: the
                    // space it was offered is full, and the next poll's pump
                    // moves the rest (another try now would find no room).
                    if !tx.session().is_flushed() {
                        break;
                    }
                }
                Err(FrameSendError::WouldBlock) => break,
                Err(e) => return Err(format!("send_via: {e}")),
            }
        }
    }
    let got = rx.session().handler().got;
    let run = timing.finish(&stack, got * case.frame_len as u64, got as f64);
    Ok((run, rx, tx))
}

/// Byte `offset` of the body of frame `seq`: its sequence number (little endian)
/// in the first 8 bytes, then the pattern of `pattern`.
fn body_byte(seq: u64, offset: usize) -> u8 {
    match seq.to_le_bytes().get(offset) {
        Some(&byte) => byte,
        None => (offset * 7 + 1) as u8,
    }
}

/// Writes bytes `offset..` of frame `seq`'s body into `space`, in place: the
/// sequence number only, or (`whole`) every byte.
fn fill_body(seq: u64, offset: usize, space: &mut [u8], whole: bool) {
    // The usual piece starts the body with room for the whole sequence number.
    if !whole
        && offset == 0
        && let Some(head) = space.first_chunk_mut::<8>()
    {
        *head = seq.to_le_bytes();
        return;
    }
    let end = if whole {
        space.len()
    } else {
        8usize.saturating_sub(offset).min(space.len())
    };
    for (i, byte) in space[..end].iter_mut().enumerate() {
        *byte = body_byte(seq, offset + i);
    }
}

/// The streaming sender's frames: `frames` bodies of `frame_len` bytes, each
/// stamped with its sequence number in place ([`fill_body`]).
struct Stamped {
    sent: u64,
    frames: u64,
    frame_len: usize,
    verify: bool,
}

impl FrameSource for Stamped {
    fn next_len(&mut self) -> Option<usize> {
        (self.sent < self.frames).then_some(self.frame_len)
    }

    fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
        fill_body(self.sent, offset, space, self.verify);
        space.len()
    }

    fn sent(&mut self) {
        self.sent += 1;
    }
}

/// The same transfer through `StreamingFrames`: bodies filled in place in the send
/// ring and taken in pieces from the receive ring, no copy besides smoltcp's own.
fn streaming(case: &Case, total: u64, verify: bool) -> Result<Run, String> {
    let mut stack = Stack::connected(case, StreamingFrames::configure)?;
    let format = case.format();
    let (mut rx, mut tx) = (StreamingFrames::new(format), StreamingFrames::new(format));
    let frames = total.div_ceil(case.frame_len as u64);
    let mut source = Stamped {
        sent: 0,
        frames,
        frame_len: case.frame_len,
        verify,
    };
    // Frames taken whole, body bytes of frame `got` taken so far, and the first
    // piece found wrong: (frame, piece length, offset, frame length, expected offset).
    let (mut got, mut taken) = (0u64, 0usize);
    let mut wrong: Option<(u64, usize, usize, usize, usize)> = None;
    let timing = Timing::start(&stack);
    while got < frames {
        stack.poll_moving(got)?;
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.server);
        // One call takes all the ring holds (both of its pieces) unless the
        // closure stops early, which it does only at a wrong piece.
        let result = rx.recv_pieces(socket, |piece| {
            let end = piece.offset + piece.bytes.len();
            // The sequence number is checked on every frame, the rest on request.
            let in_place = match piece.bytes.first_chunk::<8>() {
                // The usual piece holds the whole sequence number.
                Some(seq) if piece.offset == 0 && !verify => *seq == got.to_le_bytes(),
                _ => {
                    let checked = if verify {
                        piece.bytes.len()
                    } else {
                        8usize.saturating_sub(piece.offset).min(piece.bytes.len())
                    };
                    piece.bytes[..checked]
                        .iter()
                        .enumerate()
                        .all(|(i, &byte)| byte == body_byte(got, piece.offset + i))
                }
            };
            if !in_place
                || piece.frame_len != case.frame_len
                || piece.offset != taken
                || piece.ends_frame != (end == case.frame_len)
            {
                wrong = Some((got, piece.bytes.len(), piece.offset, piece.frame_len, taken));
                return 0;
            }
            black_box(piece.bytes);
            taken = end;
            if piece.ends_frame {
                got += 1;
                taken = 0;
            }
            piece.bytes.len()
        });
        if let Some((frame, len, offset, frame_len, expected)) = wrong {
            return Err(format!(
                "frame {frame}: piece of {len} bytes at {offset} of {frame_len}, \
                 expected at {expected} of {} with the frame's own bytes",
                case.frame_len
            ));
        }
        match result {
            Ok(_) => {}
            Err(RecvError::Finished) => return Err("the sender closed early".into()),
            Err(e) => return Err(format!("recv_pieces: {e}")),
        }
        // As many frames as the ring takes, several to a `send` where they fit.
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.client);
        match tx.send_frames(socket, &mut source) {
            Ok(()) | Err(SendError::WouldBlock) => {}
            Err(e) => return Err(format!("send_frames: {e}")),
        }
    }
    Ok(timing.finish(&stack, got * case.frame_len as u64, got as f64))
}

/// The least any framing can cost on this stack: the raw path's closures
/// writing and parsing 4-byte headers by hand, with the streaming path's checks
/// (each frame's length and sequence number) and none of its generality (no
/// counters, no back-pressure from the application, one header format). Each
/// round runs it beside the others; alone (`--path by-hand`) it puts a floor
/// under the instruction counts.
fn by_hand(case: &Case, total: u64) -> Result<Run, String> {
    let mut stack = Stack::connected(case, StreamingFrames::configure)?;
    let frame_len = case.frame_len;
    let header = u32::try_from(frame_len)
        .expect("frame length fits u32")
        .to_be_bytes();
    let frames = total.div_ceil(frame_len as u64);
    // Sender: frames sent, and bytes of the current one (header included) out.
    let (mut sent, mut sent_at) = (0u64, 0usize);
    // Receiver: frames taken, the header being gathered, the place in the body.
    let (mut got, mut held, mut head) = (0u64, 0usize, [0u8; 4]);
    let mut body: Option<usize> = None;
    let mut wrong = false;
    let timing = Timing::start(&stack);
    while got < frames {
        stack.poll_moving(got)?;
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.server);
        while socket.can_recv() {
            let read = socket.recv(|ring| {
                let mut at = 0;
                while at < ring.len() {
                    let Some(offset) = body else {
                        let len = if held == 0 && ring.len() - at >= 4 {
                            at += 4;
                            u32::from_be_bytes(ring[at - 4..at].try_into().unwrap())
                        } else {
                            head[held] = ring[at];
                            (held, at) = (held + 1, at + 1);
                            if held < 4 {
                                continue;
                            }
                            held = 0;
                            u32::from_be_bytes(head)
                        };
                        wrong |= len as usize != frame_len;
                        body = Some(0);
                        continue;
                    };
                    let n = (frame_len - offset).min(ring.len() - at);
                    let piece = &ring[at..at + n];
                    let seq = got.to_le_bytes();
                    wrong |= match piece.first_chunk::<8>() {
                        Some(first) if offset == 0 => *first != seq,
                        _ => piece
                            .iter()
                            .zip(seq.get(offset..).unwrap_or_default())
                            .any(|(a, b)| a != b),
                    };
                    black_box(piece);
                    at += n;
                    body = Some(offset + n);
                    if offset + n == frame_len {
                        body = None;
                        got += 1;
                    }
                }
                (ring.len(), ())
            });
            read.map_err(|e| format!("recv: {e}"))?;
        }
        if wrong {
            return Err(format!("frame {got} is not the one sent"));
        }
        let socket = stack.sockets.get_mut::<tcp::Socket>(stack.client);
        while socket.can_send() && sent < frames {
            let written = socket.send(|ring| {
                let mut at = 0;
                while at < ring.len() && sent < frames {
                    // Header and sequence number: the first 12 bytes of the frame.
                    let seq = sent.to_le_bytes();
                    let stamp = 12usize.saturating_sub(sent_at).min(ring.len() - at);
                    if sent_at == 0 && stamp == 12 {
                        ring[at..at + 4].copy_from_slice(&header);
                        ring[at + 4..at + 12].copy_from_slice(&seq);
                    } else {
                        for (i, byte) in ring[at..at + stamp].iter_mut().enumerate() {
                            let k = sent_at + i;
                            *byte = if k < 4 { header[k] } else { seq[k - 4] };
                        }
                    }
                    let n = (4 + frame_len - sent_at).min(ring.len() - at);
                    at += n;
                    sent_at += n;
                    if sent_at == 4 + frame_len {
                        sent_at = 0;
                        sent += 1;
                    }
                }
                (at, ())
            });
            written.map_err(|e| format!("send: {e}"))?;
        }
    }
    Ok(timing.finish(&stack, got * frame_len as u64, got as f64))
}

/// The paths measured, in the order each round runs them.
const PATHS: [&str; 5] = ["raw", "raw-nodelay", "by-hand", "framed", "streaming"];

/// The paths compared with each baseline: framed, streaming and by-hand.
const FRAMING: [usize; 3] = [3, 4, 2];

/// The baselines: raw, raw-nodelay and by-hand (the first three of `PATHS`).
const BASELINES: usize = 3;

/// The medians of several rounds of one case, one per path of `PATHS`.
struct Row {
    case: Case,
    runs: [Run; 5],
    /// framed, streaming and by-hand / baseline (raw, raw-nodelay, by-hand) of
    /// each round: median, lowest, highest; `ratios[framing][baseline]`.
    ratios: [[Option<(f64, f64, f64)>; BASELINES]; FRAMING.len()],
}

/// The run in the middle by rate (of an even number of runs, the faster of the
/// two in the middle: a run is not averaged).
fn median(runs: &mut [Run]) -> Run {
    runs.sort_by(|a, b| a.bytes_per_sec().total_cmp(&b.bytes_per_sec()));
    runs[runs.len() / 2]
}

/// Median, lowest and highest.
fn spread(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    let (&lowest, &highest) = (values.first()?, values.last()?);
    let middle = values.len() / 2;
    let median = match values.len() % 2 {
        0 => (values[middle - 1] + values[middle]) / 2.0,
        _ => values[middle],
    };
    Some((median, lowest, highest))
}

/// The row of one case; `None` when `--path` ran a single path (its rate printed).
fn measure(case: &Case, options: &Options) -> Result<Option<Row>, String> {
    let total = options.mib * 1024 * 1024;
    let mut runs: [Vec<Run>; 5] = Default::default();
    let mut ratios: [[Vec<f64>; BASELINES]; FRAMING.len()] = Default::default();
    for _ in 0..options.rounds.max(1) {
        if let Some(path) = options.path.as_deref() {
            let run = match path {
                "raw" => raw(case, total, |_| {})?,
                "raw-nodelay" => raw(case, total, StreamingFrames::configure)?,
                "framed" => framed(case, total, options.verify)?,
                "by-hand" => by_hand(case, total)?,
                _ => streaming(case, total, options.verify)?,
            };
            println!(
                "{}: {path} {:.0} MB/s of CPU time",
                case.describe(),
                run.bytes_per_sec() / 1e6
            );
            continue;
        }
        // The paths of one round run back to back, so their ratio is the figure
        // least disturbed by whatever else the machine is doing.
        let round = [
            raw(case, total, |_| {})?,
            raw(case, total, StreamingFrames::configure)?,
            by_hand(case, total)?,
            framed(case, total, options.verify)?,
            streaming(case, total, options.verify)?,
        ];
        for (ratios, framing) in ratios.iter_mut().zip(FRAMING) {
            for (baseline, ratios) in ratios.iter_mut().enumerate() {
                // By-hand is not compared with itself.
                if baseline != framing {
                    let ratio = round[framing].bytes_per_sec() / round[baseline].bytes_per_sec();
                    ratios.push(ratio);
                }
            }
        }
        for (runs, run) in runs.iter_mut().zip(round) {
            runs.push(run);
        }
    }
    if options.path.is_some() {
        return Ok(None);
    }
    Ok(Some(Row {
        case: *case,
        runs: runs.map(|mut runs| median(&mut runs)),
        ratios: ratios.map(|ratios| ratios.map(|mut ratios| spread(&mut ratios))),
    }))
}

/// The trace's three settings on the framed path, as `--trace` runs them.
const TRACE_PATHS: [&str; 2] = ["off", "on, rings"];

/// One case's rows of the trace table: the median rate of each setting, its
/// median (lowest, highest) ratio to *off* within a round, and what the rings kept.
fn measure_trace(case: &Case, options: &Options) -> Result<String, String> {
    use std::fmt::Write;
    let total = options.mib * 1024 * 1024;
    let mut runs: [Vec<Run>; 2] = Default::default();
    let mut ratios: [Vec<f64>; 2] = Default::default();
    let mut records = Records::default();
    for _ in 0..options.rounds.max(1) {
        let off = framed(case, total, options.verify)?;
        let (on, kept) = framed_traced(case, total, options.verify)?;
        records = kept;
        for ((runs, ratios), run) in runs.iter_mut().zip(&mut ratios).zip([off, on]) {
            ratios.push(off.bytes_per_sec() / run.bytes_per_sec());
            runs.push(run);
        }
    }
    let mut out = String::new();
    for ((name, runs), ratios) in TRACE_PATHS.iter().zip(&mut runs).zip(&mut ratios) {
        let (median_ratio, low, high) = spread(ratios).expect("a round at least");
        let kept = if *name == "on, rings" {
            format!(
                "{} kept, {} dropped (each session's reads, sends, frames, buffers)",
                records.kept, records.dropped
            )
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{:<40} | {:<12} | {:>6.0} | {:>5.2}x ({low:.2}-{high:.2}) | {kept}",
            case.describe(),
            name,
            median(runs).bytes_per_sec() / 1e6,
            median_ratio
        );
    }
    Ok(out)
}

/// The trace table around its rows.
fn render_trace(rows: &str, options: &Options) -> String {
    format!(
        "{:<40} | {:<12} | {:>6} | {:>18} | records\n{rows}\
         {} MiB per run, {} rounds; MB/s are medians of CPU-time rates; time / off is the \
         median (lowest-highest) within a round.\noff: the framed path, Framed sessions \
         untraced (Framed<H, R, T>, whose recorder is ()); on, rings: both sessions traced \
         (Framed::traced), each into a TraceRing<{RING}> that drops the oldest. Segments \
         are traced by a capture in front of the device: examples/trace_cost.rs.\n",
        "case (framed path)",
        "trace",
        "MB/s",
        "time / off",
        options.mib,
        options.rounds.max(1)
    )
}

fn render(rows: &[Row], options: &Options) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} | {:<11} | {:>6} | {:>6} | {:>9} | {:>9} | {:>9} | {:>8} | {:>19} | {:>19} | {:>19}",
        "case",
        "path",
        "MB/s",
        "Gbit/s",
        "frames/s",
        "wall MB/s",
        "polls/MiB",
        "pkts/MiB",
        "framed/this",
        "streaming/this",
        "by-hand/this"
    );
    for row in rows {
        for (i, (path, run)) in PATHS.iter().zip(&row.runs).enumerate() {
            let bps = run.bytes_per_sec();
            let ratio = |framing: usize| match row.ratios[framing].get(i).copied().flatten() {
                Some((median, low, high)) => format!("{median:.2} ({low:.2}-{high:.2})"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<40} | {:<11} | {:>6.0} | {:>6.2} | {:>9.0} | {:>9.0} | {:>9.1} | {:>8.1} | {:>19} | {:>19} | {:>19}",
                row.case.describe(),
                path,
                bps / 1e6,
                bps * 8.0 / 1e9,
                run.frames / run.cpu.as_secs_f64(),
                run.bytes_per_wall_sec() / 1e6,
                run.polls as f64 * MIB / run.bytes as f64,
                run.packets as f64 * MIB / run.bytes as f64,
                ratio(0),
                ratio(1),
                ratio(2)
            );
        }
    }
    let _ = writeln!(
        out,
        "{} MiB per run, {} rounds; rates are medians; framed/this, streaming/this and \
         by-hand/this are the median (lowest-highest) of that path / this path within each \
         round.\nraw: smoltcp's loopback_benchmark (socket defaults, Nagle on); raw-nodelay: \
         the same with a session's socket options (Nagle and delayed ACK off); by-hand: \
         raw-nodelay with 4-byte headers written and parsed by hand in its closures, the \
         least framing costs; framed: Framed sessions (send_via into the send ring, a \
         FrameHandler taking each frame); streaming: StreamingFrames send_frames/recv_pieces \
         (bodies filled and taken in place).\nRates are per second of \
         CPU time of the one thread that runs everything (wall MB/s beside); MB = 10^6 bytes \
         of payload (frame bodies for the framing paths); raw frames/s = payload / frame length.",
        options.mib,
        options.rounds.max(1)
    );
    out
}

fn main() -> ExitCode {
    let options = Options::parse();
    let mut rows = Vec::new();
    let mut trace_rows = String::new();
    for case in CASES
        .iter()
        .filter(|c| options.only.as_deref().is_none_or(|o| c.name.contains(o)))
    {
        if options.trace {
            match measure_trace(case, &options) {
                Ok(rows) => trace_rows.push_str(&rows),
                Err(e) => {
                    eprintln!("bench_inprocess: {}: {e}", case.describe());
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        match measure(case, &options) {
            Ok(row) => rows.extend(row),
            Err(e) => {
                eprintln!("bench_inprocess: {}: {e}", case.describe());
                return ExitCode::FAILURE;
            }
        }
    }
    if !rows.is_empty() {
        print!("{}", render(&rows, &options));
    }
    if !trace_rows.is_empty() {
        print!("{}", render_trace(&trace_rows, &options));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both cases' code paths with tiny sizes: every frame arrives, whole, in order.
    #[test]
    fn tiny_transfers_arrive_exact() {
        for case in &CASES {
            let small = Case {
                frame_len: case.frame_len.min(1000),
                ..*case
            };
            let total: u64 = 64 * 1024;
            let frames = total.div_ceil(small.frame_len as u64);
            // Every framing path checks each frame's length and sequence number;
            // framed and streaming every byte of its body too (`verify`), and
            // streaming each piece's offset and where the frame ends.
            for run in [
                by_hand(&small, total).unwrap(),
                framed(&small, total, true).unwrap(),
                streaming(&small, total, true).unwrap(),
            ] {
                assert_eq!(run.frames as u64, frames);
                assert_eq!(run.bytes, frames * small.frame_len as u64);
            }
            assert!(raw(&small, total, |_| {}).unwrap().bytes >= total);
        }
    }

    #[test]
    fn the_table_has_every_path_and_the_ratios() {
        let options = Options::parse_from(["bench_inprocess", "--mib", "1", "--rounds", "1"]);
        let case = Case {
            frame_len: 512,
            ..CASES[1]
        };
        let row = measure(&case, &options).unwrap().unwrap();
        let table = render(&[row], &options);
        assert_eq!(table.lines().count(), 1 + PATHS.len() + 3, "{table}");
        for path in PATHS {
            assert!(table.contains(&format!("| {path:<11} |")), "{table}");
        }
        // The ratio cells of each path's row: framed, streaming and by-hand / it,
        // against the three baselines only, and by-hand not against itself.
        let filled = |path: &str| -> Vec<bool> {
            let row = table
                .lines()
                .find(|line| line.contains(&format!("| {path:<11} |")))
                .unwrap();
            row.split('|')
                .skip(8)
                .map(|cell| !cell.trim().is_empty())
                .collect()
        };
        assert_eq!(filled("raw-nodelay"), [true, true, true], "{table}");
        assert_eq!(filled("by-hand"), [true, true, false], "{table}");
        assert_eq!(filled("framed"), [false, false, false], "{table}");
    }

    #[test]
    fn a_spread_is_median_lowest_highest_and_none_of_nothing() {
        assert_eq!(spread(&mut [0.9, 0.7, 0.8]), Some((0.8, 0.7, 0.9)));
        assert_eq!(spread(&mut [4.0, 1.0, 3.0, 2.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(&mut []), None);
    }

    /// The framed path traced into growing sinks: what each session recorded adds
    /// up to its own counters, and the poll loop sampled the buffers.
    #[test]
    fn the_traced_framed_path_records_what_its_sessions_count() {
        let case = Case {
            frame_len: 1000,
            ..CASES[1]
        };
        let total: u64 = 256 * 1024;
        let stack = Stack::connected(&case, StreamingFrames::configure).unwrap();
        let (to_rx, to_tx) = (Conn::new(PORT, LOCAL_PORT), Conn::new(LOCAL_PORT, PORT));
        let probes = (Probe::new(to_rx, Vec::new()), Probe::new(to_tx, Vec::new()));
        let (run, rx, tx) = framed_on(stack, &case, total, true, probes.0, probes.1).unwrap();
        let frames = total.div_ceil(1000);
        assert_eq!(run.frames as u64, frames);
        let rx_tally = Tally::of(rx.session().probe().sink().iter(), to_rx);
        let read = rx.session().stats().read;
        assert_eq!(rx_tally.frames, frames);
        assert_eq!(
            (rx_tally.reads, rx_tally.read_bytes, rx_tally.body_bytes),
            (read.reads, read.bytes, read.body_bytes)
        );
        assert_eq!(
            (rx_tally.coalesced_reads, rx_tally.split_frames),
            (read.coalesced_reads, read.split_frames)
        );
        // 2 KiB rings and 1004-byte frames: frames are split across reads.
        assert!(rx_tally.split_frames > 0, "{rx_tally:?}");
        let tx_tally = Tally::of(tx.session().probe().sink().iter(), to_tx);
        assert_eq!(tx_tally.sent_bytes, frames * 1004);
        assert!(rx_tally.samples > 0 && tx_tally.samples > 0);
        assert_eq!((rx_tally.out_of_order, tx_tally.out_of_order), (0, 0));
    }

    #[test]
    fn the_trace_table_has_a_row_per_setting() {
        let options =
            Options::parse_from(["bench_inprocess", "--trace", "--mib", "1", "--rounds", "1"]);
        let case = Case {
            frame_len: 512,
            ..CASES[1]
        };
        let table = render_trace(&measure_trace(&case, &options).unwrap(), &options);
        for name in TRACE_PATHS {
            assert!(table.contains(&format!("| {name:<12} |")), "{table}");
        }
        assert!(table.contains("kept"), "{table}");
    }
}
