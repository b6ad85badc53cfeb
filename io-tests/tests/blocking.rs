//! The blocking adapter end to end: the echoes over `std::net::TcpStream` on
//! 127.0.0.1 with the server in a thread, a real read timeout that lets a
//! session's deadline pass, and over a scripted stream: deadlines on a fake clock,
//! work due at once, requests that leave bytes for the next one, the framed
//! helpers.
//!
//! No test asserts on the wall clock; every exchange ends with the peer closing,
//! and a scripted peer that stays silent gives up after a bounded number of reads.

mod common_io;

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

/// How long a client here waits for a byte before the test fails: far more
/// than any exchange on loopback takes, far less than CI's limit.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

use common_io::{Ask, Chores, Deaf, Firehose, Idle, Sip, bodies, frames, pattern};
use embedded_io::{ErrorKind, ErrorType, Read, Write};
use smolsock::blocking::{
    self, Clock, Connection, End, Error, FrameError, StdClock, StdIo, read_frame, write_frame,
};
use smolsock::session::{Echo, Framed, FramedEcho, Session, StreamingEcho};
use smolsock::time::{Duration, Instant};
use smolsock::wire::frame::{FrameReader, HeaderFormat, ReadError};

/// Time that moves only when told to.
#[derive(Default)]
struct FakeClock {
    now: Cell<Instant>,
    sleeps: Cell<u32>,
}

impl FakeClock {
    fn advance(&self, by: Duration) {
        self.now.set(self.now.get().saturating_add(by));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.now.get()
    }

    fn sleep_until(&self, at: Instant) {
        self.sleeps.set(self.sleeps.get() + 1);
        if at > self.now.get() {
            self.now.set(at);
        }
    }
}

/// A peer that sends `input` in reads of at most `chunk` bytes, then either
/// finishes (reads give 0) or stays silent: each read then times out, as a
/// stream with a read timeout does, and `step` passes on the clock. It gives up
/// with a reset after 1000 silent reads, so no test can hang on it.
struct Script<'c> {
    input: VecDeque<u8>,
    chunk: usize,
    silent: bool,
    clock: &'c FakeClock,
    step: Duration,
    output: Vec<u8>,
    reads: u32,
    timeouts: u32,
}

impl<'c> Script<'c> {
    fn new(input: &[u8], chunk: usize, silent: bool, clock: &'c FakeClock) -> Self {
        Self {
            input: input.iter().copied().collect(),
            chunk,
            silent,
            clock,
            step: Duration::from_secs(1),
            output: Vec::new(),
            reads: 0,
            timeouts: 0,
        }
    }
}

impl ErrorType for Script<'_> {
    type Error = ErrorKind;
}

impl Read for Script<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.reads += 1;
        if self.input.is_empty() {
            if !self.silent {
                return Ok(0);
            }
            if self.timeouts == 1000 {
                return Err(ErrorKind::ConnectionReset);
            }
            self.timeouts += 1;
            self.clock.advance(self.step);
            return Err(ErrorKind::TimedOut);
        }
        let n = buf.len().min(self.chunk).min(self.input.len());
        for (dst, src) in buf.iter_mut().zip(self.input.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for Script<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let n = buf.len().min(self.chunk);
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// A session served over std TCP by the adapter in a thread of its own, with a
/// client writing (in another thread) and reading at once.
fn over_tcp<S: Session + Send + 'static>(session: S, input: Vec<u8>) -> (End, Vec<u8>, S) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let mut session = session;
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(session.no_delay()).unwrap();
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
        let end = blocking::run(
            &mut session,
            &mut StdIo::new(&stream),
            &StdClock::new(),
            &mut rx,
            &mut tx,
        )
        .unwrap();
        if end == End::Closed {
            stream.shutdown(Shutdown::Write).unwrap();
        }
        (end, session)
    });
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut write = stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        write.write_all(&input).unwrap();
        write.shutdown(Shutdown::Write).unwrap();
    });
    let mut output = Vec::new();
    (&stream).read_to_end(&mut output).unwrap();
    writer.join().unwrap();
    let (end, session) = server.join().unwrap();
    (end, output, session)
}

#[test]
fn framed_echo_over_std_tcp() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(bodies());
    }
    let input = frames(format, &all);
    let session = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
    let (end, output, session) = over_tcp(session, input.clone());
    assert_eq!(end, End::Closed);
    assert!(output == input);
    assert_eq!(session.handler().frames, 2000);
}

#[test]
fn echo_over_std_tcp() {
    let input = pattern(200_000);
    let (end, output, _) = over_tcp(Echo::new(), input.clone());
    assert_eq!(end, End::Closed);
    assert!(output == input);
}

#[test]
fn streaming_echo_over_std_tcp() {
    let format = HeaderFormat::NETWORK;
    let input = frames(format, &[pattern(60_000), vec![], pattern(50_000)]);
    let session = StreamingEcho::new([0u8; 64], format).unwrap();
    let (end, output, session) = over_tcp(session, input.clone());
    assert_eq!(end, End::Closed);
    assert!(output == input);
    assert_eq!(session.frames, 3);
}

#[test]
fn a_read_timeout_lets_the_deadline_of_a_silent_peer_pass_over_std_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // std reports the timeout as WouldBlock on Linux: StdIo makes it TimedOut.
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(5)))
            .unwrap();
        let mut session = Idle::new(Echo::new(), Duration::from_millis(50));
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        let end = blocking::run(
            &mut session,
            &mut StdIo::new(&stream),
            &StdClock::new(),
            &mut rx,
            &mut tx,
        );
        (end, session.timeouts, session.ends)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"hi").unwrap();
    let mut back = [0u8; 2];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hi");
    // Silent now, with the connection open, until the server gives up on us.
    let (end, timeouts, ends) = server.join().unwrap();
    assert!(matches!(end, Ok(End::Aborted)), "{end:?}");
    assert_eq!((timeouts, ends), (1, 1));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn a_silent_peer_meets_the_sessions_deadline() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"hi", 64, true, &clock);
    let mut session = Idle::new(Echo::new(), Duration::from_secs(5));
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let end = blocking::run(&mut session, &mut peer, &clock, &mut rx, &mut tx);
    assert_eq!(end, Ok(End::Aborted));
    assert_eq!(clock.now(), Instant::from_secs(5));
    assert_eq!(peer.timeouts, 5);
    assert_eq!(peer.output, b"hi");
    assert_eq!((session.timeouts, session.starts, session.ends), (1, 1, 1));
}

#[test]
fn input_taken_in_part_is_offered_again_before_the_next_read() {
    let clock = FakeClock::default();
    // The whole request in one read; then the peer waits, each read timing out.
    let mut peer = Script::new(b"0123456789ab", 64, true, &clock);
    let mut session = Sip::default();
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let end = blocking::run(&mut session, &mut peer, &clock, &mut rx, &mut tx);
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(
        peer.timeouts, 0,
        "no read waited while the request was here"
    );
    assert_eq!(peer.output, b"ok");
    assert_eq!(session.got, 12);
}

#[test]
fn work_due_at_once_is_done_without_reading_the_peer() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"", 64, true, &clock);
    let mut session = Chores {
        left: 100,
        sent: false,
    };
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let end = blocking::run(&mut session, &mut peer, &clock, &mut rx, &mut tx);
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(peer.output, b"done");
    assert_eq!((peer.reads, clock.sleeps.get()), (0, 0));
}

#[test]
fn a_session_that_takes_nothing_and_sends_nothing_is_reported_not_waited_on() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"0123456789", 64, true, &clock);
    let mut session = Deaf { ends: 0 };
    let (mut rx, mut tx) = ([0u8; 4], [0u8; 4]);
    let end = blocking::run(&mut session, &mut peer, &clock, &mut rx, &mut tx);
    assert_eq!(end, Err(Error::Stalled));
    assert_eq!(session.ends, 1);
}

#[test]
fn a_stream_error_ends_the_session_once() {
    let clock = FakeClock::default();
    // Silent for good: after 1000 timed-out reads, the script resets.
    let mut peer = Script::new(b"x", 64, true, &clock);
    let mut session = Idle::new(Echo::new(), Duration::MAX);
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    // No idle timeout (`Duration::MAX`): only the reset ends the run.
    let end = Connection::new(&mut peer, &mut rx, &mut tx)
        .with_idle_timeout(Duration::MAX)
        .run(&mut session, &clock);
    assert_eq!(end, Err(Error::Io(ErrorKind::ConnectionReset)));
    assert_eq!((session.starts, session.ends), (1, 1));
    assert_eq!(peer.output, b"x");
}

#[test]
fn bytes_past_one_answer_wait_for_the_next_request() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"AAAABBBB", 64, false, &clock);
    let (mut rx, mut tx) = ([0u8; 32], [0u8; 32]);
    let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
    let mut first = Ask::new(b"1?", 4);
    assert_eq!(
        conn.run_request(&mut first, &clock),
        Ok(Ok(b"AAAA".to_vec()))
    );
    assert_eq!(conn.buffered(), b"BBBB");
    let mut second = Ask::new(b"2?", 4);
    assert_eq!(
        conn.run_request(&mut second, &clock),
        Ok(Ok(b"BBBB".to_vec()))
    );
    assert!(conn.is_open());
    assert_eq!(conn.stats().reads, 1);
    assert_eq!(
        (first.starts, first.ends, second.starts, second.ends),
        (1, 0, 1, 0)
    );
    // The peer finished: the third request hears so and closes the connection.
    let mut third = Ask::new(b"3?", 4);
    assert_eq!(conn.run_request(&mut third, &clock), Ok(Err(Vec::new())));
    assert!(!conn.is_open());
    assert_eq!((third.starts, third.ends), (1, 1));
    assert_eq!(
        conn.run_request(&mut Ask::new(b"4?", 4), &clock),
        Err(Error::Ended)
    );
    assert_eq!(peer.output, b"1?2?3?");
}

#[test]
fn frames_cross_a_byte_at_a_time_and_the_end_is_reported() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let clock = FakeClock::default();
    let mut sender = Script::new(b"", 1, false, &clock);
    for body in bodies() {
        write_frame(&mut sender, format, &body).unwrap();
    }
    assert_eq!(sender.output, frames(format, &bodies()));
    let mut receiver = Script::new(&sender.output, 1, false, &clock);
    let mut reader = FrameReader::new([0u8; 104], format).unwrap();
    let mut got = Vec::new();
    while let Some(frame) = read_frame(&mut receiver, &mut reader).unwrap() {
        got.push(frame.to_vec());
    }
    assert_eq!(got, bodies());
}

#[test]
fn a_whole_frame_read_with_an_oversize_header_after_it_comes_before_the_error() {
    // A good frame, then the header of one over the maximum, in one read: the
    // frame is not lost to the error.
    let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
    let clock = FakeClock::default();
    let mut peer = Script::new(&[0, 0, 0, 2, b'o', b'k', 0, 0, 0, 9], 64, false, &clock);
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert_eq!(
        read_frame(&mut peer, &mut reader),
        Ok(Some(&b"ok"[..])),
        "the whole frame before the error"
    );
    assert_eq!(
        read_frame(&mut peer, &mut reader),
        Err(FrameError::Read(ReadError::Oversize { len: 9, max: 8 }))
    );
}

#[test]
fn read_frame_reports_timeouts_oversize_and_truncated_frames() {
    let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
    let clock = FakeClock::default();
    // A timeout mid-frame keeps what was read: the next call finishes the frame.
    let mut peer = Script::new(&[0, 0, 0, 2, b'o'], 64, true, &clock);
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert_eq!(
        read_frame(&mut peer, &mut reader),
        Err(FrameError::Io(ErrorKind::TimedOut))
    );
    peer.input.push_back(b'k');
    assert_eq!(read_frame(&mut peer, &mut reader), Ok(Some(&b"ok"[..])));

    let mut peer = Script::new(&[0, 0, 0, 9], 64, false, &clock);
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert_eq!(
        read_frame(&mut peer, &mut reader),
        Err(FrameError::Read(ReadError::Oversize { len: 9, max: 8 }))
    );

    let mut peer = Script::new(&[0, 0, 0, 3, b'x'], 64, false, &clock);
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert_eq!(
        read_frame(&mut peer, &mut reader),
        Err(FrameError::Read(ReadError::Truncated {
            received: 5,
            expected: Some(7)
        }))
    );
    assert!(matches!(
        write_frame(&mut peer, format, &[0; 9]),
        Err(FrameError::Write(_))
    ));
}

/// A peer that says nothing and reads `per_write` bytes at a time: each read
/// times out after `read_wait`, each write takes up to `per_write` bytes after
/// `write_wait` (none: it times out), both on the fake clock. It gives up with
/// a reset after 1000 calls, so no test can hang.
struct Trickle<'c> {
    clock: &'c FakeClock,
    read_wait: Duration,
    write_wait: Duration,
    per_write: usize,
    calls: u32,
    taken: usize,
}

impl ErrorType for Trickle<'_> {
    type Error = ErrorKind;
}

impl<'c> Trickle<'c> {
    fn new(
        clock: &'c FakeClock,
        read_wait: Duration,
        write_wait: Duration,
        per_write: usize,
    ) -> Self {
        Self {
            clock,
            read_wait,
            write_wait,
            per_write,
            calls: 0,
            taken: 0,
        }
    }

    fn call(&mut self, wait: Duration) -> Result<(), ErrorKind> {
        self.calls += 1;
        if self.calls > 1000 {
            return Err(ErrorKind::ConnectionReset);
        }
        self.clock.advance(wait);
        Ok(())
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.call(self.read_wait)?;
        Err(ErrorKind::TimedOut)
    }
}

impl Write for Trickle<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.call(self.write_wait)?;
        if self.per_write == 0 {
            return Err(ErrorKind::TimedOut);
        }
        let n = buf.len().min(self.per_write);
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

#[test]
fn a_silent_peer_ends_the_run_at_the_idle_timeout() {
    // The echo has no deadline of its own: without the idle timeout (set, or
    // the default) only the peer's reset after 1000 reads would end this.
    for (idle, ends_at) in [
        (Some(Duration::from_secs(30)), Duration::from_secs(30)),
        (None, blocking::DEFAULT_IDLE_TIMEOUT),
    ] {
        let clock = FakeClock::default();
        let mut peer = Trickle::new(&clock, Duration::from_secs(1), Duration::ZERO, 1);
        let mut session = Echo::new();
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
        if let Some(idle) = idle {
            conn = conn.with_idle_timeout(idle);
        }
        let end = conn.run(&mut session, &clock);
        assert_eq!(end, Err(Error::IdleTimeout), "{idle:?}");
        assert_eq!(
            clock.now(),
            Instant::ZERO.saturating_add(ends_at),
            "{idle:?}"
        );
    }
}

#[test]
fn a_peer_taking_a_byte_at_a_time_ends_the_run_at_the_idle_timeout() {
    // A byte every 30 s: each write moves, but none is progress.
    let clock = FakeClock::default();
    let mut peer = Trickle::new(&clock, Duration::from_secs(1), Duration::from_secs(30), 1);
    let mut session = Firehose { left: 1 << 20 };
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 128]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx)
        .with_idle_timeout(Duration::from_secs(60))
        .run(&mut session, &clock);
    assert_eq!(end, Err(Error::IdleTimeout));
    assert_eq!(peer.taken, 2, "two bytes, a minute");
    assert_eq!(clock.now(), Instant::from_secs(60));
}

#[test]
fn a_peer_that_takes_nothing_after_the_close_is_let_go_at_the_close_timeout() {
    // The session hands out its last bytes and closes, with no deadline left of
    // its own: only the close timeout (20 s unless set, before the default
    // idle timeout's 60) ends this before the peer's reset after 1000 calls.
    for (timeout, ends_at) in [(None, 20), (Some(Duration::from_secs(2)), 2)] {
        let clock = FakeClock::default();
        let mut peer = Trickle::new(&clock, Duration::from_secs(1), Duration::from_secs(1), 0);
        let mut session = Firehose { left: 100 };
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 128]);
        let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
        if let Some(timeout) = timeout {
            conn = conn.with_close_timeout(timeout);
        }
        let end = conn.run(&mut session, &clock);
        assert!(!conn.is_open());
        assert_eq!(end, Err(Error::CloseTimeout));
        assert_eq!(clock.now(), Instant::from_secs(ends_at));
    }
}

#[test]
fn a_peer_taking_a_kilobyte_every_few_seconds_gets_all_after_the_close() {
    // 5000 bytes, 1024 every 4 s: each kilobyte written restarts the close timeout.
    let clock = FakeClock::default();
    let mut peer = Trickle::new(&clock, Duration::from_secs(1), Duration::from_secs(4), 1024);
    let mut session = Firehose { left: 5000 };
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 8192]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx).run(&mut session, &clock);
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(peer.taken, 5000);
    assert_eq!(clock.now(), Instant::from_secs(20));
}

/// A peer that reads `per_write` bytes a write, each after `write_wait`, and
/// whose flush takes `flush_wait`, on the fake clock; it sends nothing.
struct SlowFlush<'c> {
    clock: &'c FakeClock,
    write_wait: Duration,
    per_write: usize,
    flush_wait: Duration,
    taken: usize,
    flushed: bool,
}

impl ErrorType for SlowFlush<'_> {
    type Error = ErrorKind;
}

impl Read for SlowFlush<'_> {
    fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
        self.clock.advance(Duration::from_secs(1));
        Err(ErrorKind::TimedOut)
    }
}

impl Write for SlowFlush<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.clock.advance(self.write_wait);
        let n = buf.len().min(self.per_write);
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.clock.advance(self.flush_wait);
        self.flushed = true;
        Ok(())
    }
}

#[test]
fn the_rest_written_after_the_close_gives_the_flush_a_whole_close_timeout() {
    // 1024 B at 4 s, the other 476 at 8 s, the flush done at 12 s: 4 s after
    // the rest, though 8 s after the last kilobyte.
    let clock = FakeClock::default();
    let mut peer = SlowFlush {
        clock: &clock,
        write_wait: Duration::from_secs(4),
        per_write: 1024,
        flush_wait: Duration::from_secs(4),
        taken: 0,
        flushed: false,
    };
    let mut session = Firehose { left: 1500 };
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 8192]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx).run(&mut session, &clock);
    assert_eq!((peer.taken, peer.flushed), (1500, true));
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(clock.now(), Instant::from_secs(12));
}

#[test]
fn a_flush_that_completed_late_is_the_end_not_a_close_timeout() {
    // The stream blocks in its flush past the close timeout, then succeeds:
    // every byte is out, and that is the end of the connection.
    let clock = FakeClock::default();
    let mut peer = SlowFlush {
        clock: &clock,
        write_wait: Duration::ZERO,
        per_write: 1024,
        flush_wait: Duration::from_secs(6),
        taken: 0,
        flushed: false,
    };
    let mut session = Firehose { left: 100 };
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 8192]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx).run(&mut session, &clock);
    assert_eq!((peer.taken, peer.flushed), (100, true));
    assert_eq!(end, Ok(End::Closed));
}

/// How much of a 512 KiB answer a client gets from a server that closes with
/// the client's bytes unread (the session never reads them), the client
/// reading only once the server is done: the answer waits in the two sockets'
/// buffers. `drain`: the server reads the client to its end after its
/// half-close, before the socket goes. Gives the bytes received, whether the
/// client's read failed, and the server's drain.
fn answer_after_the_close(drain: bool) -> (usize, bool, Option<u64>) {
    const ANSWER: usize = 512 * 1024;
    let unread = vec![b'?'; 3000];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, server_ended) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let tick = Some(std::time::Duration::from_millis(10));
        stream.set_read_timeout(tick).unwrap();
        stream.set_write_timeout(tick).unwrap();
        let clock = StdClock::new();
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 4096]);
        let mut conn = Connection::new(StdIo::new(&stream), &mut rx, &mut tx);
        let end = conn.run(&mut Firehose { left: ANSWER }, &clock);
        assert!(matches!(end, Ok(End::Closed)), "{end:?}");
        stream.shutdown(Shutdown::Write).unwrap();
        if !drain {
            drop(stream);
            ended.send(()).unwrap();
            return None;
        }
        // The client reads, and closes, only once told.
        ended.send(()).unwrap();
        Some(conn.drain(&clock).unwrap())
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(&unread).unwrap();
    // A server that failed drops the sender: the test fails here, not hangs.
    server_ended.recv().unwrap();
    let (mut got, mut buf) = (0, [0u8; 65_536]);
    let failed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("nothing read for {READ_TIMEOUT:?}")
            }
            Err(_) => break true,
        }
    };
    drop(stream);
    let drained = server.join().unwrap();
    if let Some(drained) = drained {
        assert_eq!(drained, unread.len() as u64);
    }
    assert!(got <= ANSWER);
    (got, failed, drained)
}

#[test]
fn a_close_with_input_unread_is_reset_and_cuts_the_answer_over_std_tcp() {
    // What `drain` is for: Linux resets the socket closed with the client's
    // bytes unread, and the reset drops the part of the answer not yet sent.
    let (got, failed, _) = answer_after_the_close(false);
    assert!(failed, "the client read {got} bytes and a clean end");
    assert!(got < 512 * 1024, "{got}");
}

#[test]
fn a_drained_close_delivers_the_whole_answer_over_std_tcp() {
    let (got, failed, drained) = answer_after_the_close(true);
    assert!(!failed);
    assert_eq!(got, 512 * 1024);
    assert_eq!(drained, Some(3000));
}

#[test]
fn drain_reads_the_peer_to_its_end_and_counts_what_it_dropped() {
    let clock = FakeClock::default();
    let mut peer = Script::new(&[7u8; 100], 30, false, &clock);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
    assert_eq!(
        conn.run(&mut Firehose { left: 10 }, &clock),
        Ok(End::Closed)
    );
    assert_eq!(conn.drain(&clock), Ok(100));
    assert!(conn.peer_finished());
    assert!(!conn.is_open());
    assert_eq!(conn.stats().bytes_in, 100);
    // Finished already: nothing more is read.
    assert_eq!(conn.drain(&clock), Ok(0));
    assert_eq!(clock.now(), Instant::ZERO);
    assert_eq!(peer.output, [b'x'; 10]);
}

#[test]
fn drain_drops_the_bytes_held_for_a_next_request_too() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"answer+more", 64, false, &clock);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
    let mut ask = Ask::new(b"q", 6);
    assert_eq!(
        conn.run_request(&mut ask, &clock),
        Ok(Ok(b"answer".to_vec()))
    );
    assert_eq!(conn.buffered(), b"+more");
    assert_eq!(conn.drain(&clock), Ok(5));
    assert!(conn.buffered().is_empty());
    assert_eq!(
        conn.run(&mut Firehose { left: 1 }, &clock),
        Err(Error::Ended)
    );
}

#[test]
fn drain_of_a_silent_peer_ends_at_the_close_timeout() {
    let clock = FakeClock::default();
    // Each read times out, a second passing; the script resets after 1000.
    let mut peer = Script::new(&[], 8, true, &clock);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut conn =
        Connection::new(&mut peer, &mut rx, &mut tx).with_close_timeout(Duration::from_secs(3));
    assert_eq!(conn.drain(&clock), Err(Error::CloseTimeout));
    assert_eq!(clock.now(), Instant::from_secs(3));
    assert_eq!(peer.timeouts, 3);
}

/// A peer that never stops sending: each read gives a full buffer and 100 ms
/// pass. After `left` reads it finishes, so a drain with no limit of its own
/// ends too, and the test sees it.
struct Chatter<'c> {
    clock: &'c FakeClock,
    left: u32,
}

impl ErrorType for Chatter<'_> {
    type Error = ErrorKind;
}

impl Read for Chatter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.left == 0 {
            return Ok(0);
        }
        self.left -= 1;
        self.clock.advance(Duration::from_millis(100));
        buf.fill(b'!');
        Ok(buf.len())
    }
}

impl Write for Chatter<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

#[test]
fn drain_of_a_peer_that_never_stops_sending_ends_at_the_close_timeout() {
    let clock = FakeClock::default();
    let mut peer = Chatter {
        clock: &clock,
        left: 10_000,
    };
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut conn =
        Connection::new(&mut peer, &mut rx, &mut tx).with_close_timeout(Duration::from_secs(5));
    assert_eq!(conn.drain(&clock), Err(Error::CloseTimeout));
    assert_eq!(clock.now(), Instant::from_secs(5));
    assert_eq!(conn.stats().bytes_in, 50 * 64);
    assert_eq!(peer.left, 10_000 - 50);
}

#[test]
fn drain_without_a_receive_buffer_is_stalled_not_finished() {
    let clock = FakeClock::default();
    let mut peer = Script::new(b"unread", 8, false, &clock);
    let (mut rx, mut tx) = ([0u8; 0], [0u8; 8]);
    let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
    assert_eq!(conn.drain(&clock), Err(Error::Stalled));
    assert!(!conn.peer_finished());
}

/// [`Chores`] whose every piece of work takes a second on `clock`: hashing a
/// file before it says anything.
struct Hashing<'c> {
    chores: Chores,
    clock: &'c FakeClock,
}

impl Session for Hashing<'_> {
    fn start(&mut self, now: Instant) {
        self.chores.start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        self.chores.receive(input, now)
    }

    fn receive_finished(&mut self, now: Instant) {
        self.chores.receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        self.chores.transmit(space, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.chores.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.clock.advance(Duration::from_secs(1));
        self.chores.handle_timeout(now);
    }

    fn status(&self) -> smolsock::session::Status {
        self.chores.status()
    }
}

#[test]
fn local_work_longer_than_the_idle_timeout_is_not_idleness() {
    // 100 s of work due at once with an idle timeout of 10 s: the peer has
    // nothing to do meanwhile, and the session is busy, not stalled.
    let clock = FakeClock::default();
    let mut peer = Script::new(b"", 64, true, &clock);
    let mut session = Hashing {
        chores: Chores {
            left: 100,
            sent: false,
        },
        clock: &clock,
    };
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx)
        .with_idle_timeout(Duration::from_secs(10))
        .run(&mut session, &clock);
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(peer.output, b"done");
    assert_eq!(clock.now(), Instant::from_secs(100));
}

/// Due at once for ever, and doing nothing about it: a broken session.
struct AlwaysDue;

impl Session for AlwaysDue {
    fn start(&mut self, _: Instant) {}

    fn receive(&mut self, input: &[u8], _: Instant) -> usize {
        input.len()
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, _: &mut [u8], _: Instant) -> usize {
        0
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::ZERO)
    }

    fn handle_timeout(&mut self, _: Instant) {}

    fn status(&self) -> smolsock::session::Status {
        smolsock::session::Status::Open
    }
}

/// Time that passes by half a second at every reading, and fails the test an
/// hour in.
struct Ticking(Cell<Instant>);

impl Clock for Ticking {
    fn now(&self) -> Instant {
        let now = self.0.get().saturating_add(Duration::from_millis(500));
        assert!(now < Instant::from_secs(3600), "still running an hour in");
        self.0.set(now);
        now
    }

    fn sleep_until(&self, at: Instant) {
        if at > self.0.get() {
            self.0.set(at);
        }
    }
}

#[test]
fn a_session_due_again_that_does_nothing_still_idles_out() {
    // Only the time the work takes is credited: a session whose deadline
    // stays due while its handler does nothing is ended by the idle timeout.
    let clock = Ticking(Cell::new(Instant::ZERO));
    let fake = FakeClock::default();
    let mut peer = Script::new(b"", 64, true, &fake);
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let end = Connection::new(&mut peer, &mut rx, &mut tx)
        .with_idle_timeout(Duration::from_secs(10))
        .run(&mut AlwaysDue, &clock);
    assert_eq!(end, Err(Error::IdleTimeout));
}

#[test]
fn a_request_has_no_idle_timeout_unless_one_is_set() {
    // A silent peer: the request (no deadline of its own) waits on, until the
    // peer's reset after 1000 reads (1000 s), unless an idle timeout is set.
    for (idle, expected, at) in [
        (None, Err(Error::Io(ErrorKind::ConnectionReset)), 1000),
        (Some(30), Err(Error::IdleTimeout), 30),
    ] {
        let clock = FakeClock::default();
        let mut peer = Trickle::new(&clock, Duration::from_secs(1), Duration::ZERO, 64);
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        let mut conn = Connection::new(&mut peer, &mut rx, &mut tx);
        if let Some(idle) = idle {
            conn = conn.with_idle_timeout(Duration::from_secs(idle));
        }
        let mut ask = Ask::new(b"ping", 4);
        let outcome = conn.run_request(&mut ask, &clock);
        assert_eq!(outcome.map(|_| ()), expected, "idle {idle:?}");
        assert!(
            clock.now() >= Instant::from_secs(at - 1) && clock.now() <= Instant::from_secs(at + 1),
            "idle {idle:?}: ended at {}",
            clock.now()
        );
    }
}
