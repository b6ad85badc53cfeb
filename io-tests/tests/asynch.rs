//! The async adapter end to end: the echoes over an in-memory duplex whose reads
//! and writes move a few bytes at a time (splits and back-pressure everywhere),
//! over tokio's TCP on 127.0.0.1 through `embedded-io-adapters`, deadlines on a
//! virtual clock, requests that leave bytes for the next one, and the framed
//! helpers.
//!
//! No test reads the wall clock: a peer that closes ends every exchange, and the
//! virtual clock jumps to the deadline whenever the adapter waits for it.

mod common_io;

mod tokio_clock;
use tokio_clock::TokioClock;

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use common_io::{Ask, Chores, Deaf, Firehose, Idle, Sip, bodies, frames, pattern};
use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use smolsock::asynch::{
    self, Clock, Connection, End, Error, Flush, FrameError, read_frame, write_frame,
};
use smolsock::session::{Echo, Framed, FramedEcho, Session, Status, StreamingEcho};
use smolsock::store::{FileName, RamStore};
use smolsock::time::{Duration, Instant};
use smolsock::transfer::{
    ClientError, FileSource, LocalError, PutOptions, SharedStore, SliceSink, TransferClient,
    TransferServer, UploadLease,
};
use smolsock::wire::crc32::crc32;
use smolsock::wire::frame::{FrameReader, HeaderFormat, ReadError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One direction of the duplex: a bounded byte queue with the wakers of the task
/// waiting to read it and the one waiting to write it.
#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// The writer finished: once empty, reads give 0.
    finished: bool,
    /// The reader is gone: writes fail.
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

type Shared = Arc<Mutex<Queue>>;

/// The reading end of a [`Queue`], taking at most `chunk` bytes a read.
struct ReadHalf {
    queue: Shared,
    chunk: usize,
}

/// The writing end of a [`Queue`], giving at most `chunk` bytes a write.
struct WriteHalf {
    queue: Shared,
    chunk: usize,
}

/// One end of the duplex.
struct Duplex {
    rx: ReadHalf,
    tx: WriteHalf,
}

/// Two ends joined by queues of `capacity` bytes each way; reads and writes
/// move at most `chunk` bytes at a time.
fn duplex(capacity: usize, chunk: usize) -> (Duplex, Duplex) {
    let queue = || {
        Arc::new(Mutex::new(Queue {
            capacity,
            ..Queue::default()
        }))
    };
    let (ab, ba) = (queue(), queue());
    let end = |rx: &Shared, tx: &Shared| Duplex {
        rx: ReadHalf {
            queue: rx.clone(),
            chunk,
        },
        tx: WriteHalf {
            queue: tx.clone(),
            chunk,
        },
    };
    (end(&ba, &ab), end(&ab, &ba))
}

impl ErrorType for ReadHalf {
    type Error = ErrorKind;
}

impl ErrorType for WriteHalf {
    type Error = ErrorKind;
}

impl ErrorType for Duplex {
    type Error = ErrorKind;
}

impl Read for ReadHalf {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        poll_fn(|cx| {
            let mut q = self.queue.lock().unwrap();
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if q.bytes.is_empty() {
                if q.finished {
                    return Poll::Ready(Ok(0));
                }
                q.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk).min(q.bytes.len());
            for (dst, src) in buf.iter_mut().zip(q.bytes.drain(..n)) {
                *dst = src;
            }
            if let Some(w) = q.writer.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Write for WriteHalf {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        poll_fn(|cx| {
            let mut q = self.queue.lock().unwrap();
            if q.reader_gone {
                return Poll::Ready(Err(ErrorKind::BrokenPipe));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let room = q.capacity - q.bytes.len();
            if room == 0 {
                q.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk).min(room);
            q.bytes.extend(&buf[..n]);
            if let Some(w) = q.reader.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl WriteHalf {
    /// The peer's reads give 0 once it has read everything.
    fn finish(&self) {
        let mut q = self.queue.lock().unwrap();
        q.finished = true;
        if let Some(w) = q.reader.take() {
            w.wake();
        }
    }

    async fn write_all_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self.write(bytes).await.unwrap();
            bytes = &bytes[n..];
        }
    }
}

impl ReadHalf {
    async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match self.read(&mut buf).await.unwrap() {
                0 => return out,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }
}

impl Drop for ReadHalf {
    fn drop(&mut self) {
        let mut q = self.queue.lock().unwrap();
        q.reader_gone = true;
        if let Some(w) = q.writer.take() {
            w.wake();
        }
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Read for Duplex {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.rx.read(buf).await
    }
}

impl Write for Duplex {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.tx.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.tx.flush().await
    }
}

/// Virtual time: stands still until the adapter waits for a deadline, then jumps
/// to it.
#[derive(Default)]
struct VirtualClock {
    now: Cell<Instant>,
    sleeps: Cell<u32>,
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }

    async fn sleep_until(&self, at: Instant) {
        self.sleeps.set(self.sleeps.get() + 1);
        if at > self.now.get() {
            self.now.set(at);
        }
    }
}

/// Serves `session` on one end of a duplex while a client on the other end
/// writes `input` (then finishes) and reads everything back, concurrently. On
/// tokio's paused clock (`start_paused`), time passes only when no task can go
/// on: the client is never slow, and the sessions' frame deadlines never come.
async fn exchange<S: Session>(
    session: &mut S,
    input: &[u8],
    (capacity, chunk): (usize, usize),
    (rx, tx): (usize, usize),
) -> (Result<End, Error<ErrorKind>>, Vec<u8>) {
    let (mut server, client) = duplex(capacity, chunk);
    let Duplex {
        rx: mut client_rx,
        tx: mut client_tx,
    } = client;
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut rx, mut tx) = (vec![0u8; rx], vec![0u8; tx]);
    let serve = async {
        let end = asynch::run(session, &mut server, &clock, &mut rx, &mut tx).await;
        drop(server);
        end
    };
    let send = async {
        client_tx.write_all_bytes(input).await;
        client_tx.finish();
    };
    let (end, (), output) = tokio::join!(serve, send, client_rx.read_to_end());
    (end, output)
}

/// (queue capacity, chunk) for the duplex and (rx, tx) for the adapter: from a
/// byte at a time to roomy.
const SHAPES: [((usize, usize), (usize, usize)); 5] = [
    ((1, 1), (1, 1)),
    ((3, 2), (7, 5)),
    ((16, 16), (3, 200)),
    ((64, 7), (512, 512)),
    ((4096, 4096), (1500, 1500)),
];

#[tokio::test(start_paused = true)]
async fn framed_echo_gives_back_every_frame_through_any_split() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let input = frames(format, &bodies());
    for (pipe, buffers) in SHAPES {
        let mut session = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
        let (end, output) = exchange(&mut session, &input, pipe, buffers).await;
        assert_eq!(end, Ok(End::Closed), "{pipe:?} {buffers:?}");
        assert!(output == input, "{pipe:?} {buffers:?}");
        assert_eq!(session.handler().frames, 40);
    }
}

/// Request and answer in lockstep, ten times: with `Flush::BeforeRead` the
/// adapter flushes after every answer, with `Flush::AtEnd` once, at the close; the
/// client gets every answer either way. (Tokio's clock is paused: a server that
/// held an answer back would leave both sides waiting, and the minute's bound
/// below then passes at once, in tokio's time.)
#[tokio::test(start_paused = true)]
async fn flush_at_end_flushes_once_and_every_answer_still_arrives() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    for (flush, expected) in [(Flush::BeforeRead, 10..=11), (Flush::AtEnd, 1..=1)] {
        let (mut server, client) = duplex(256, 256);
        let Duplex {
            rx: mut client_rx,
            tx: mut client_tx,
        } = client;
        let clock = VirtualClock::default();
        let (mut rx, mut tx) = ([0u8; 128], [0u8; 128]);
        let mut session = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
        let serve = async {
            let done = {
                // This clock ends every wait at once: no idle timeout.
                let mut conn = Connection::new(&mut server, &mut rx, &mut tx)
                    .with_flush(flush)
                    .with_idle_timeout(Duration::MAX);
                let end = conn.run(&mut session, &clock).await;
                (end, conn.stats().flushes)
            };
            drop(server);
            done
        };
        let talk = async {
            for i in 0..10u8 {
                let request = frames(format, &[vec![i; 20]]);
                client_tx.write_all_bytes(&request).await;
                let mut answer = vec![0u8; request.len()];
                let mut got = 0;
                while got < answer.len() {
                    let n = client_rx.read(&mut answer[got..]).await.unwrap();
                    assert!(n > 0, "{flush:?}: the server closed before answer {i}");
                    got += n;
                }
                assert_eq!(answer, request, "{flush:?}: answer {i}");
            }
            client_tx.finish();
            client_rx.read_to_end().await
        };
        let both = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            tokio::join!(serve, talk)
        });
        let ((end, flushes), rest) = both
            .await
            .unwrap_or_else(|_| panic!("{flush:?}: an answer never came"));
        assert_eq!(end, Ok(End::Closed), "{flush:?}");
        assert!(rest.is_empty(), "{flush:?}: {} bytes more", rest.len());
        assert!(expected.contains(&flushes), "{flush:?}: {flushes} flushes");
    }
}

#[tokio::test(start_paused = true)]
async fn echo_gives_back_every_byte_in_order() {
    let input = pattern(5000);
    for (pipe, buffers) in SHAPES {
        let mut session = Echo::new();
        let (end, output) = exchange(&mut session, &input, pipe, buffers).await;
        assert_eq!(end, Ok(End::Closed), "{pipe:?} {buffers:?}");
        assert!(output == input, "{pipe:?} {buffers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_echo_gives_back_frames_larger_than_every_buffer() {
    let format = HeaderFormat::NETWORK;
    let input = frames(format, &[vec![], pattern(3000), vec![7], vec![]]);
    for (pipe, buffers) in SHAPES {
        let mut session = StreamingEcho::new([0u8; 16], format).unwrap();
        let (end, output) = exchange(&mut session, &input, pipe, buffers).await;
        assert_eq!(end, Ok(End::Closed), "{pipe:?} {buffers:?}");
        assert!(output == input, "{pipe:?} {buffers:?}");
        assert_eq!(session.frames, 4);
    }
}

#[tokio::test]
async fn a_session_that_cannot_keep_up_leaves_bytes_in_the_receive_buffer() {
    // One read brings 3000 bytes; the echo's 1 KiB takes a third of them, and
    // the rest waits in the receive buffer until it has sent some back. Nothing
    // is lost.
    let input = pattern(3000);
    let (mut server, client) = duplex(4096, 4096);
    let Duplex {
        rx: mut client_rx,
        tx: mut client_tx,
    } = client;
    client_tx.write_all_bytes(&input).await;
    client_tx.finish();
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 4096], [0u8; 16]);
    let mut session = Echo::new();
    let mut conn = Connection::new(&mut server, &mut rx, &mut tx);
    let serve = async {
        let end = conn.run(&mut session, &clock).await;
        // The stream stays borrowed: finish its sending half by hand.
        conn.io_mut().tx.finish();
        (end, *conn.stats())
    };
    let ((end, stats), output) = tokio::join!(serve, client_rx.read_to_end());
    assert_eq!(end, Ok(End::Closed));
    assert!(output == input);
    assert_eq!(stats.reads, 1);
    assert!(stats.held_back >= 2, "{stats}");
    assert_eq!(stats.bytes_out, 3000);
}

#[tokio::test]
async fn a_silent_peer_meets_the_sessions_deadline() {
    let (mut server, client) = duplex(64, 64);
    let Duplex {
        rx: mut client_rx,
        tx: mut client_tx,
    } = client;
    // Sent before the server starts; then the client says nothing and keeps the
    // connection open.
    client_tx.write_all_bytes(b"hi").await;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let mut session = Idle::new(Echo::new(), Duration::from_secs(5));
    let end = asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx).await;
    assert_eq!(end, Ok(End::Aborted));
    assert_eq!(clock.now(), Instant::from_secs(5));
    assert_eq!((session.timeouts, session.starts, session.ends), (1, 1, 1));
    drop(server);
    assert_eq!(client_rx.read_to_end().await, b"hi");
}

#[tokio::test]
async fn input_taken_in_part_is_offered_again_before_the_next_read() {
    let (mut server, client) = duplex(64, 64);
    let Duplex {
        rx: mut client_rx,
        tx: mut client_tx,
    } = client;
    // The whole request, then the client waits for the answer with the
    // connection open.
    client_tx.write_all_bytes(b"0123456789ab").await;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut session = Idle::new(Sip::default(), Duration::from_secs(5));
    let end = asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx).await;
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(clock.now(), Instant::ZERO, "answered with no wait");
    assert_eq!(session.inner.got, 12);
    drop(server);
    assert_eq!(client_rx.read_to_end().await, b"ok");
}

#[tokio::test]
async fn work_due_at_once_is_done_without_a_byte_from_the_peer() {
    let (mut server, client) = duplex(64, 64);
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let mut session = Chores {
        left: 100,
        sent: false,
    };
    // The client stays silent and never closes.
    let end = asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx).await;
    assert_eq!(end, Ok(End::Closed));
    assert_eq!(clock.sleeps.get(), 0, "due at once means no sleep");
    drop(server);
    let Duplex {
        rx: mut client_rx, ..
    } = client;
    assert_eq!(client_rx.read_to_end().await, b"done");
}

#[tokio::test]
async fn a_session_that_takes_nothing_and_sends_nothing_is_reported_not_waited_on() {
    let (mut server, client) = duplex(64, 64);
    let Duplex {
        tx: mut client_tx, ..
    } = client;
    client_tx.write_all_bytes(b"0123456789").await;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 4], [0u8; 4]);
    let mut session = Deaf { ends: 0 };
    let end = asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx).await;
    assert_eq!(end, Err(Error::Stalled));
    assert_eq!(session.ends, 1);
}

#[tokio::test]
async fn a_broken_stream_is_a_typed_error_and_the_session_still_ends() {
    let (mut server, client) = duplex(64, 64);
    let Duplex {
        rx: client_rx,
        tx: mut client_tx,
    } = client;
    client_tx.write_all_bytes(b"abc").await;
    drop((client_rx, client_tx));
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 16]);
    let mut session = Idle::new(Echo::new(), Duration::MAX);
    let end = asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx).await;
    assert_eq!(end, Err(Error::Io(ErrorKind::BrokenPipe)));
    assert_eq!((session.starts, session.ends), (1, 1));
}

#[tokio::test]
async fn bytes_past_one_answer_wait_for_the_next_request() {
    let (mut client, server) = duplex(64, 64);
    let Duplex {
        rx: mut server_rx,
        tx: mut server_tx,
    } = server;
    // Both answers arrive in one read.
    server_tx.write_all_bytes(b"AAAABBBB").await;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 32], [0u8; 32]);
    let mut conn = Connection::new(&mut client, &mut rx, &mut tx);
    let mut first = Ask::new(b"1?", 4);
    assert_eq!(
        conn.run_request(&mut first, &clock).await,
        Ok(Ok(b"AAAA".to_vec()))
    );
    assert_eq!(conn.buffered(), b"BBBB");
    assert_eq!(conn.stats().reads, 1);
    let mut second = Ask::new(b"2?", 4);
    assert_eq!(
        conn.run_request(&mut second, &clock).await,
        Ok(Ok(b"BBBB".to_vec()))
    );
    assert!(conn.is_open());
    // A request that gets its outcome with the connection open is not ended.
    assert_eq!(
        (first.starts, first.ends, second.starts, second.ends),
        (1, 0, 1, 0)
    );
    drop(client);
    assert_eq!(server_rx.read_to_end().await, b"1?2?");
}

#[tokio::test]
async fn a_request_that_closes_the_connection_ends_it_and_gives_its_outcome() {
    let (mut client, server) = duplex(64, 64);
    let Duplex {
        tx: mut server_tx, ..
    } = server;
    server_tx.write_all_bytes(b"AA").await;
    server_tx.finish();
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 32], [0u8; 32]);
    let mut conn = Connection::new(&mut client, &mut rx, &mut tx);
    let mut cut = Ask::new(b"?", 4);
    assert_eq!(
        conn.run_request(&mut cut, &clock).await,
        Ok(Err(b"AA".to_vec()))
    );
    assert_eq!((cut.starts, cut.ends), (1, 1));
    assert!(!conn.is_open());
    assert!(conn.peer_finished());
    let mut next = Ask::new(b"?", 4);
    assert_eq!(conn.run_request(&mut next, &clock).await, Err(Error::Ended));
    assert_eq!((next.starts, next.ends), (0, 0));
}

#[tokio::test]
async fn frames_cross_a_byte_at_a_time_and_the_end_is_reported() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let (mut a, mut b) = duplex(2, 1);
    let send = async {
        for body in bodies() {
            write_frame(&mut a, format, &body).await.unwrap();
        }
        drop(a);
    };
    let receive = async {
        let mut reader = FrameReader::new([0u8; 104], format).unwrap();
        let mut got = Vec::new();
        while let Some(frame) = read_frame(&mut b, &mut reader).await.unwrap() {
            got.push(frame.to_vec());
        }
        got
    };
    let ((), got) = tokio::join!(send, receive);
    assert_eq!(got, bodies());
}

#[tokio::test]
async fn a_whole_frame_read_with_an_oversize_header_after_it_comes_before_the_error() {
    // A good frame, then the header of one over the maximum, in one read: the
    // frame is not lost to the error.
    let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
    let (mut a, mut b) = duplex(64, 64);
    a.write_all(&[0, 0, 0, 2, b'o', b'k', 0, 0, 0, 9])
        .await
        .unwrap();
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert_eq!(
        read_frame(&mut b, &mut reader).await,
        Ok(Some(&b"ok"[..])),
        "the whole frame before the error"
    );
    assert!(matches!(
        read_frame(&mut b, &mut reader).await,
        Err(FrameError::Read(ReadError::Oversize { len: 9, max: 8 }))
    ));
}

#[tokio::test]
async fn read_frame_reports_oversize_and_truncated_frames() {
    let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
    let (mut a, mut b) = duplex(64, 64);
    a.write_all(&[0, 0, 0, 9]).await.unwrap();
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    assert!(matches!(
        read_frame(&mut b, &mut reader).await,
        Err(FrameError::Read(ReadError::Oversize { len: 9, max: 8 }))
    ));
    let mut reader = FrameReader::new([0u8; 12], format).unwrap();
    a.write_all(&[0, 0, 0, 2, b'o', b'k', 0, 0, 0, 3, b'x'])
        .await
        .unwrap();
    drop(a);
    assert_eq!(
        read_frame(&mut b, &mut reader).await.unwrap(),
        Some(&b"ok"[..])
    );
    assert!(matches!(
        read_frame(&mut b, &mut reader).await,
        Err(FrameError::Read(ReadError::Truncated {
            received: 5,
            expected: Some(7)
        }))
    ));
    assert!(matches!(
        write_frame(&mut b, format, &[0; 9]).await,
        Err(FrameError::Write(_))
    ));
}

/// A session served over tokio's TCP by the adapter, in a task of its own, with a
/// plain tokio client writing and reading at once.
async fn over_tcp<S>(session: S, input: Vec<u8>) -> (End, Vec<u8>, S)
where
    S: Session + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut session = session;
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(session.no_delay()).unwrap();
        let mut io = FromTokio::new(stream);
        let clock = TokioClock(tokio::time::Instant::now());
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
        let end = asynch::run(&mut session, &mut io, &clock, &mut rx, &mut tx)
            .await
            .unwrap();
        if end == End::Closed {
            io.inner_mut().shutdown().await.unwrap();
        }
        (end, session)
    });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&input).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut output = Vec::new();
    // Far more than any exchange on loopback takes: a server that stops
    // answering fails the test here.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read.read_to_end(&mut output),
    )
    .await
    .expect("nothing read for 30 s")
    .unwrap();
    writer.await.unwrap();
    let (end, session) = server.await.unwrap();
    (end, output, session)
}

#[tokio::test]
async fn framed_echo_over_tokio_tcp() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(bodies());
    }
    let input = frames(format, &all);
    let session = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
    let (end, output, session) = over_tcp(session, input.clone()).await;
    assert_eq!(end, End::Closed);
    assert!(output == input);
    assert_eq!(session.handler().frames, 2000);
}

#[tokio::test]
async fn echo_over_tokio_tcp() {
    let input = pattern(200_000);
    let (end, output, _) = over_tcp(Echo::new(), input.clone()).await;
    assert_eq!(end, End::Closed);
    assert!(output == input);
}

#[tokio::test]
async fn streaming_echo_over_tokio_tcp() {
    let format = HeaderFormat::NETWORK;
    let input = frames(format, &[pattern(60_000), vec![], pattern(50_000)]);
    let session = StreamingEcho::new([0u8; 64], format).unwrap();
    let (end, output, session) = over_tcp(session, input.clone()).await;
    assert_eq!(end, End::Closed);
    assert!(output == input);
    assert_eq!(session.frames, 3);
}

// ---------------------------------------------------------------------------
// A whole file transfer: the crate's own client and server, both on this adapter

/// A file that can be read only up to `fail_at`: an upload cut short on the
/// client's side.
struct CutShort<'a> {
    data: &'a [u8],
    fail_at: u64,
}

impl FileSource for CutShort<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        if offset >= self.fail_at {
            return Err(LocalError::Read);
        }
        let from = &self.data[offset as usize..];
        let n = from.len().min(buf.len());
        buf[..n].copy_from_slice(&from[..n]);
        Ok(n)
    }
}

type Store = SharedStore<RamStore<4, 32_768>, [UploadLease; 1]>;

/// Serves one connection of the transfer protocol on `io` and drives `client`
/// operations through `ops` on `peer`, at once; the server ends when the client's
/// side is dropped.
async fn serve_one<T, F>(store: &Store, io: T, peer: T, ops: F)
where
    T: Read + Write,
    F: AsyncFnOnce(&mut Connection<'_, T>, &TokioClock),
{
    let clock = TokioClock(tokio::time::Instant::now());
    let serve = async {
        let mut io = io;
        let mut session = TransferServer::new(store, vec![0u8; 4100], vec![0u8; 4100]).unwrap();
        let (mut rx, mut tx) = ([0u8; 700], [0u8; 700]);
        let _ = asynch::run(&mut session, &mut io, &clock, &mut rx, &mut tx).await;
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; 900], [0u8; 300]);
        let mut conn = Connection::new(peer, &mut rx, &mut tx);
        ops(&mut conn, &clock).await;
        // Dropping the connection ends the stream: the server sees the end.
        drop(conn);
    };
    tokio::join!(serve, client);
}

async fn whole_transfer<T: Read + Write>(connect: &mut impl AsyncFnMut() -> (T, T)) {
    // On the heap: a future holding it would otherwise be copied about the stack.
    let store: Box<Store> = Box::new(SharedStore::new(RamStore::new(), [UploadLease::EMPTY]));
    let store = &*store;
    let data = pattern(30_000);
    let name = FileName::new("boot.img").unwrap();
    let mut client = TransferClient::new(vec![0u8; 4100], vec![0u8; 4100]).unwrap();

    // An upload cut short at 12,000 bytes: the server keeps the whole DATA frames.
    let (server, peer) = connect().await;
    serve_one(store, server, peer, async |conn, clock| {
        let source = CutShort {
            data: &data,
            fail_at: 12_000,
        };
        // The CRC given up front, so the client reads the file only to send it.
        let options = PutOptions {
            resume: false,
            crc: Some(crc32(&data)),
        };
        let mut put = client.put(name, source, options, |_, _| {});
        let outcome = conn.run_request(&mut put, clock).await.unwrap();
        assert_eq!(outcome, Err(ClientError::Local(LocalError::Read)));
    })
    .await;
    assert!(store.stats().bytes_in > 0, "no DATA reached the server");

    // A new connection resumes it, then stat, list, get (resumed too), delete.
    client.reset();
    let (server, peer) = connect().await;
    serve_one(store, server, peer, async |conn, clock| {
        let mut put = client.put(name, &data[..], PutOptions::RESUME, |_, _| {});
        let stored = conn.run_request(&mut put, clock).await.unwrap().unwrap();
        assert_eq!(stored.size, data.len() as u64);

        let mut stat = client.stat(name);
        let stat = conn.run_request(&mut stat, clock).await.unwrap().unwrap();
        assert_eq!(stat, stored);

        let mut names = Vec::new();
        let mut list = client.list(|entry| names.push(entry.name));
        assert_eq!(
            conn.run_request(&mut list, clock).await.unwrap().unwrap(),
            1
        );
        assert_eq!(names, [name]);

        let mut back = vec![0u8; data.len()];
        let mut sink = SliceSink::new(&mut back);
        let mut get = client.get(name, &mut sink, false, |_, _| {});
        let got = conn.run_request(&mut get, clock).await.unwrap().unwrap();
        assert_eq!(got, stored);
        assert!(sink.is_complete());
        assert!(sink.data() == &data[..]);

        let mut delete = client.delete(name);
        conn.run_request(&mut delete, clock).await.unwrap().unwrap();
        let mut stat = client.stat(name);
        let gone = conn.run_request(&mut stat, clock).await.unwrap();
        assert!(matches!(gone, Err(ClientError::Refused { .. })), "{gone:?}");
    })
    .await;
    let stats = store.stats();
    assert_eq!((stats.uploads_resumed, stats.uploads_done), (1, 1));
    assert_eq!(stats.downloads_done, 1);
}

#[tokio::test]
async fn a_whole_transfer_with_a_resume_over_an_in_memory_duplex() {
    for (capacity, chunk) in [(64, 7), (4096, 4096)] {
        whole_transfer(&mut async || duplex(capacity, chunk)).await;
    }
}

#[tokio::test]
async fn a_whole_transfer_with_a_resume_over_tokio_tcp() {
    whole_transfer(&mut async || {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        server.set_nodelay(true).unwrap();
        client.set_nodelay(true).unwrap();
        (FromTokio::new(server), FromTokio::new(client))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_nothing_or_says_nothing_ends_the_run_at_the_idle_timeout() {
    // Its TCP stack may keep acknowledging (zero-window probes), but no byte
    // moves: the connection is freed by time, not by the peer's good will.
    for sends in [3000, 0] {
        let (mut server, client) = duplex(256, 256);
        let Duplex {
            rx: _client_rx,
            tx: mut client_tx,
        } = client;
        let clock = TokioClock(tokio::time::Instant::now());
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
        let mut session = Echo::new();
        let idle = Duration::from_secs(60);
        let mut conn = Connection::new(&mut server, &mut rx, &mut tx).with_idle_timeout(idle);
        // More than the way back holds (or nothing), and it never reads: the
        // echo stalls on a full stream, or waits for input that never comes.
        let peer = async {
            client_tx.write_all_bytes(&pattern(sends)).await;
            std::future::pending::<()>().await
        };
        // Bounded, should the deadline not fire: two minutes of virtual time.
        let run = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            tokio::select! {
                end = conn.run(&mut session, &clock) => end,
                () = peer => unreachable!("the peer never finishes"),
            }
        });
        let end = run.await.expect("the run ended by its idle timeout");
        assert_eq!(end, Err(Error::IdleTimeout), "sends {sends}");
        // Timed from the last byte that moved, early on.
        let took = clock.now();
        assert!(
            took >= Instant::ZERO.saturating_add(idle)
                && took
                    < Instant::ZERO
                        .saturating_add(idle)
                        .saturating_add(Duration::from_secs(1)),
            "sends {sends}: ended at {took:?}"
        );
        assert_eq!(conn.run(&mut session, &clock).await, Err(Error::Ended));
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_ends_a_run_at_the_default_idle_timeout() {
    // No idle timeout set, and a session with no deadline of its own: the
    // default frees the connection.
    let (mut server, client) = duplex(256, 256);
    let _client = client;
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let mut session = Echo::new();
    // Bounded, should the deadline not fire: ten minutes of virtual time.
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        asynch::run(&mut session, &mut server, &clock, &mut rx, &mut tx),
    )
    .await
    .expect("the run ended by the default idle timeout");
    assert_eq!(end, Err(Error::IdleTimeout));
    assert_eq!(
        clock.now(),
        Instant::ZERO.saturating_add(asynch::DEFAULT_IDLE_TIMEOUT)
    );
    assert_eq!(asynch::DEFAULT_IDLE_TIMEOUT, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_takes_a_byte_at_a_time_ends_the_run_at_the_idle_timeout() {
    // Each byte it takes makes room for one more: a write of it is no progress,
    // or a long answer would hold the connection for hours. A byte every 30 s
    // through 512-byte buffers; and 2.5 B/s through 128-byte ones, which the
    // peer empties now and then while the session always has more.
    for (buffers, gap) in [(512, 30_000), (128, 400)] {
        let (mut server, client) = duplex(256, 256);
        let Duplex {
            rx: mut client_rx,
            tx: _client_tx,
        } = client;
        let clock = TokioClock(tokio::time::Instant::now());
        let (mut rx, mut tx) = (vec![0u8; buffers], vec![0u8; buffers]);
        let mut session = Firehose { left: 1 << 20 };
        let idle = Duration::from_secs(60);
        let mut conn = Connection::new(&mut server, &mut rx, &mut tx).with_idle_timeout(idle);
        let peer = async {
            // The way back fills first; then a byte at a time.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut byte = [0u8; 1];
            loop {
                assert_eq!(client_rx.read(&mut byte).await.unwrap(), 1);
                tokio::time::sleep(std::time::Duration::from_millis(gap)).await;
            }
        };
        // Bounded, should the deadline not fire: ten minutes of virtual time.
        let run = tokio::time::timeout(std::time::Duration::from_secs(600), async {
            tokio::select! {
                end = conn.run(&mut session, &clock) => end,
                () = peer => unreachable!("the peer never finishes"),
            }
        });
        let end = run.await.expect("the run ended by its idle timeout");
        assert_eq!(end, Err(Error::IdleTimeout), "buffers {buffers}");
        // No progress since the start: the first write took less than a KiB.
        let took = clock.now();
        assert!(
            took >= Instant::ZERO.saturating_add(idle)
                && took < Instant::ZERO.saturating_add(Duration::from_secs(61)),
            "buffers {buffers}: ended at {took:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_pushing_small_messages_to_a_reader_is_not_idle() {
    // A message of 100 bytes every 20 s, read at once: each is all the session
    // has to say, so each is progress, though far from a kilobyte a minute.
    // (Flushed only at the end, as embassy-net's sockets are: no flush counts.)
    // Through a 512-byte buffer, and one of exactly a message: filling it is
    // not having more to say.
    for buffer in [512, 100] {
        let (mut server, client) = duplex(4096, 4096);
        let Duplex {
            rx: mut client_rx,
            tx: _client_tx,
        } = client;
        let clock = TokioClock(tokio::time::Instant::now());
        let (mut rx, mut tx) = ([0u8; 512], vec![0u8; buffer]);
        let mut session = Ticker {
            every: Duration::from_secs(20),
            next: Instant::ZERO,
            left: 10,
        };
        let mut conn = Connection::new(&mut server, &mut rx, &mut tx)
            .with_flush(Flush::AtEnd)
            .with_idle_timeout(Duration::from_secs(60));
        let reader = async {
            let mut buf = [0u8; 256];
            let mut got = 0;
            while got < 1000 {
                match client_rx.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got += n,
                }
            }
            got
        };
        let run = tokio::time::timeout(std::time::Duration::from_secs(600), async {
            tokio::join!(conn.run(&mut session, &clock), reader)
        });
        let (end, got) = run.await.expect("the ticker ends");
        assert!(end.is_ok(), "buffer {buffer}: {end:?} after {got} bytes");
        assert_eq!(got, 1000, "buffer {buffer}");
    }
}

/// Sends `left` messages of 100 bytes, one every `every`, then closes.
struct Ticker {
    every: Duration,
    next: Instant,
    left: usize,
}

impl Session for Ticker {
    fn start(&mut self, now: Instant) {
        self.next = now;
    }

    fn receive(&mut self, input: &[u8], _: Instant) -> usize {
        input.len()
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        if self.left == 0 || now < self.next || space.len() < 100 {
            return 0;
        }
        space[..100].fill(b't');
        self.left -= 1;
        self.next = now.saturating_add(self.every);
        100
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.left > 0).then_some(self.next)
    }

    fn handle_timeout(&mut self, _: Instant) {}

    fn status(&self) -> Status {
        if self.left == 0 {
            Status::Close
        } else {
            Status::Open
        }
    }
}

#[tokio::test]
async fn a_stalled_session_is_reported_at_once_with_an_idle_timeout_set() {
    // The idle timeout does not stand in for a deadline the session has not:
    // one that takes nothing, sends nothing and waits for nothing is stalled now.
    let (mut server, client) = duplex(64, 64);
    let Duplex {
        tx: mut client_tx, ..
    } = client;
    client_tx.write_all_bytes(b"0123456789").await;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 4], [0u8; 4]);
    let mut session = Deaf { ends: 0 };
    let end = Connection::new(&mut server, &mut rx, &mut tx)
        .with_idle_timeout(Duration::from_secs(60))
        .run(&mut session, &clock)
        .await;
    assert_eq!(end, Err(Error::Stalled));
    assert_eq!(clock.now(), Instant::ZERO, "no time passed");
}

#[tokio::test]
async fn a_peer_that_takes_nothing_after_the_close_is_let_go_at_the_close_timeout() {
    // The peer reads nothing: 16 bytes fit the stream, the rest wait for ever.
    // The session has closed with no deadline of its own, and no idle timeout
    // is set.
    let (mut server, _client) = duplex(16, 16);
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 128]);
    let mut session = Firehose { left: 100 };
    let mut conn = Connection::new(&mut server, &mut rx, &mut tx);
    assert_eq!(
        conn.run(&mut session, &clock).await,
        Err(Error::CloseTimeout)
    );
    assert_eq!(
        clock.now(),
        Instant::ZERO.saturating_add(asynch::DEFAULT_CLOSE_TIMEOUT)
    );
    assert!(!conn.is_open());
    assert_eq!(conn.stats().bytes_out, 16);
}

#[tokio::test]
async fn a_request_dropped_part_way_leaves_the_connection_unusable() {
    let (mut client, server) = duplex(4, 4);
    let Duplex {
        rx: mut server_rx, ..
    } = server;
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    // This clock ends every wait at once: no idle timeout.
    let mut conn = Connection::new(&mut client, &mut rx, &mut tx).with_idle_timeout(Duration::MAX);
    // The peer reads nothing yet: 4 of the 32 bytes fit the stream, the write
    // of the rest waits, and the caller gives up (a timeout around the request).
    let mut first = Ask::new(&[b'A'; 32], 1);
    {
        let request = std::pin::pin!(conn.run_request(&mut first, &clock));
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert!(request.poll(&mut cx).is_pending());
    }
    // What it had not written would go ahead of the next request's bytes.
    assert!(!conn.is_open());
    let mut second = Ask::new(b"BB", 1);
    assert_eq!(
        conn.run_request(&mut second, &clock).await,
        Err(Error::Ended)
    );
    assert_eq!((second.starts, second.ends), (0, 0));
    drop(client);
    assert_eq!(server_rx.read_to_end().await, b"AAAA");
}

/// A server over tokio's TCP whose session closes with the client's bytes
/// unread, the client reading only once the server is done, its 512 KiB
/// answer waiting in the sockets' buffers: the server drains the client to
/// its end after its half-close. Gives what the client received, whether its
/// read failed, and what the drain dropped.
#[tokio::test]
async fn a_drained_close_delivers_the_whole_answer_over_tokio_tcp() {
    const ANSWER: usize = 512 * 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, server_ended) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut io = FromTokio::new(stream);
        let clock = TokioClock(tokio::time::Instant::now());
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 4096]);
        let mut conn = Connection::new(&mut io, &mut rx, &mut tx);
        let end = conn.run(&mut Firehose { left: ANSWER }, &clock).await;
        assert!(matches!(end, Ok(End::Closed)), "{end:?}");
        conn.io_mut().inner_mut().shutdown().await.unwrap();
        ended.send(()).unwrap();
        conn.drain(&clock).await.unwrap()
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&[b'?'; 3000]).await.unwrap();
    // A server that failed drops the sender: the test fails here, not hangs.
    server_ended.await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    drop(stream);
    assert_eq!(answer.len(), ANSWER);
    assert_eq!(server.await.unwrap(), 3000);
}

#[tokio::test]
async fn drain_reads_the_peer_to_its_end_and_counts_what_it_dropped() {
    // All sent before the drain begins: the virtual clock would jump to the
    // drain's deadline at the first read that has to wait.
    let (mut server, mut client) = duplex(128, 7);
    client.tx.write_all_bytes(&[5u8; 100]).await;
    client.tx.finish();
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 32], [0u8; 32]);
    let mut conn = Connection::new(&mut server, &mut rx, &mut tx);
    assert_eq!(conn.drain(&clock).await, Ok(100));
    assert_eq!(conn.stats().reads, 15);
    assert!(conn.peer_finished());
    assert!(!conn.is_open());
    assert_eq!(conn.stats().bytes_in, 100);
    assert_eq!(clock.now(), Instant::ZERO);
}

#[tokio::test]
async fn drain_of_a_silent_peer_ends_at_the_close_timeout() {
    let (mut server, _client) = duplex(16, 16);
    let clock = VirtualClock::default();
    let (mut rx, mut tx) = ([0u8; 32], [0u8; 32]);
    let mut conn =
        Connection::new(&mut server, &mut rx, &mut tx).with_close_timeout(Duration::from_secs(3));
    assert_eq!(conn.drain(&clock).await, Err(Error::CloseTimeout));
    assert_eq!(clock.now(), Instant::from_secs(3));
    assert_eq!(clock.sleeps.get(), 1);
}

#[tokio::test]
async fn a_silent_transfer_server_gets_the_clients_own_timeout_verdict() {
    // A request has no idle timeout unless one is set: the client's own
    // timeout for a silent server gives the verdict, not the adapter.
    let (mut client_end, server_end) = duplex(4096, 4096);
    let _server_end = server_end; // connected, never answers
    let clock = VirtualClock::default();
    let mut client = TransferClient::new(vec![0u8; 4100], vec![0u8; 4100]).unwrap();
    let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
    let mut conn = Connection::new(&mut client_end, &mut rx, &mut tx);
    let mut stat = client.stat(FileName::new("absent.bin").unwrap());
    let outcome = conn.run_request(&mut stat, &clock).await;
    assert_eq!(outcome, Ok(Err(ClientError::Timeout)), "at {}", clock.now());
}

#[tokio::test(start_paused = true)]
async fn a_client_told_to_wait_two_minutes_is_not_cut_at_the_default_idle_timeout() {
    let store: Box<Store> = Box::new(SharedStore::new(RamStore::new(), [UploadLease::EMPTY]));
    let (client_end, mut server_end) = duplex(4096, 4096);
    let clock = TokioClock(tokio::time::Instant::now());
    let serve = async {
        // Busy for 90 s (checking a large partial, say), then answers.
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        let mut session = TransferServer::new(&*store, vec![0u8; 4100], vec![0u8; 4100]).unwrap();
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
        let _ = asynch::run(&mut session, &mut server_end, &clock, &mut rx, &mut tx).await;
    };
    let ask = async {
        let mut client_end = client_end;
        let mut client = TransferClient::new(vec![0u8; 4100], vec![0u8; 4100])
            .unwrap()
            .with_timeout(Some(Duration::from_secs(120)));
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
        let mut conn = Connection::new(&mut client_end, &mut rx, &mut tx);
        let mut stat = client.stat(FileName::new("absent.bin").unwrap());
        conn.run_request(&mut stat, &clock).await
    };
    let ((), outcome) = tokio::join!(serve, ask);
    assert!(
        matches!(outcome, Ok(Err(ClientError::Refused { .. }))),
        "{outcome:?} at {}",
        clock.now()
    );
}
