//! The async adapter: any [`Session`] over any `embedded_io_async::{Read, Write}`
//! stream, such as embassy-net's `TcpSocket`, or tokio's `TcpStream` through
//! `embedded-io-adapters`. No allocation, no runtime: time comes from a [`Clock`]
//! the caller implements in a few lines.
//!
//! - [`run`] serves one connection with a session, to its end.
//! - [`Connection`] keeps a stream and its buffers across requests:
//!   [`Connection::run_request`] drives a client's [`Request`] until its outcome,
//!   and bytes read past one answer wait in the receive buffer for the next request.
//! - [`read_frame`] and [`write_frame`] move length-framed messages for code that
//!   wants frames over a stream without a session.
//! - [`DatagramSocket`]: a UDP socket, for the datagram sessions (TFTP's, in
//!   `tftp::asynch`), implemented in a few lines over embassy-net's `UdpSocket`
//!   or tokio's; [`recv_from_until`] waits for a datagram until a deadline on
//!   the [`Clock`].
//!
//! The adapter moves bytes and tells the session the time, nothing more: each turn
//! it hands the session what was read (what it does not take stays, as
//! back-pressure), writes what the session gives into the send buffer, flushes once
//! there is nothing more to send, and reads, racing each wait against the
//! session's [`poll_timeout`](Session::poll_timeout). Every turn either moves
//! bytes or waits. One stream is driven half duplex: a write finishes before the
//! next read, as in the primer's `recv` / `sendall` loop, and a peer that never
//! reads what it is sent can hold the session only until its deadline, and once
//! the session has closed, until the close timeout
//! ([`Connection::with_close_timeout`]).
//!
//! Once the session has nothing more to send, the adapter flushes before it reads
//! again ([`Flush::BeforeRead`]), so that a stream which buffers writes (a UART
//! driver, a USB serial port) sends the answer before the adapter waits for the
//! next request. embassy-net's `TcpSocket` needs no such flush (a write hands the
//! bytes to the stack, which sends them on its own), and its `flush` waits until
//! the peer has acknowledged every byte: against a peer that delays its ACKs, up
//! to 40 ms a turn. Give it [`Flush::AtEnd`] through
//! [`Connection::with_flush`], as below: it is flushed only once the session
//! closes. Every wait is raced against the session's deadline.
//!
//! Cancellation: a read, write or flush that loses the race to the deadline is
//! dropped, so the stream's `read`, `write` and `flush` must be side-effect-free on
//! cancel, as embassy-net's and `embedded-io-adapters`' tokio streams are. Dropping
//! a [`run`] or [`Connection::run_request`] future part way leaves the session
//! without its [`end`](Session::end) call (its next [`start`](Session::start)
//! forgets the connection anyway) and the stream in an unknown state, part of a
//! message perhaps written: the [`Connection`] takes no more requests
//! ([`Error::Ended`]), and the stream is to be closed.
//!
//! An embassy-net server for the framed echo, embassy-time as the clock:
//!
//! ```no_run
//! # // A stand-in for embassy-net and embassy-time with the same names and calls,
//! # // so that this example builds without them.
//! # mod embassy_time {
//! #     #[derive(Clone, Copy)]
//! #     pub struct Instant(u64);
//! #     impl Instant {
//! #         pub fn now() -> Self { Instant(0) }
//! #         pub fn as_micros(&self) -> u64 { self.0 }
//! #         pub const MAX: Instant = Instant(u64::MAX);
//! #         pub fn try_from_micros(micros: u64) -> Option<Self> { Some(Instant(micros)) }
//! #     }
//! #     pub struct Timer;
//! #     impl Timer {
//! #         pub async fn at(_at: Instant) {}
//! #     }
//! #     pub struct Duration;
//! #     impl Duration {
//! #         pub fn from_secs(_: u64) -> Self { Duration }
//! #     }
//! #     pub struct TimeoutError;
//! #     pub async fn with_timeout<F: core::future::Future>(_: Duration, f: F) -> Result<F::Output, TimeoutError> {
//! #         Ok(f.await)
//! #     }
//! # }
//! # mod embassy_net {
//! #     #[derive(Clone, Copy)]
//! #     pub struct Stack<'d>(core::marker::PhantomData<&'d ()>);
//! #     pub mod tcp {
//! #         #[derive(Debug)]
//! #         pub struct Error;
//! #         impl core::fmt::Display for Error {
//! #             fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result { f.write_str("reset") }
//! #         }
//! #         impl core::error::Error for Error {}
//! #         impl embedded_io_async::Error for Error {
//! #             fn kind(&self) -> embedded_io_async::ErrorKind { embedded_io_async::ErrorKind::ConnectionReset }
//! #         }
//! #         #[derive(PartialEq)]
//! #         pub enum State { Closed, Established }
//! #         pub struct TcpSocket<'a>(core::marker::PhantomData<&'a ()>);
//! #         impl<'a> TcpSocket<'a> {
//! #             pub fn new(_: super::Stack<'a>, _: &'a mut [u8], _: &'a mut [u8]) -> Self { TcpSocket(core::marker::PhantomData) }
//! #             pub async fn accept(&mut self, _port: u16) -> Result<(), Error> { Ok(()) }
//! #             pub fn set_timeout(&mut self, _: Option<crate::embassy_time::Duration>) {}
//! #             pub fn set_nagle_enabled(&mut self, _: bool) {}
//! #             pub fn state(&self) -> State { State::Established }
//! #             pub fn close(&mut self) {}
//! #             pub fn abort(&mut self) {}
//! #             pub async fn flush(&mut self) -> Result<(), Error> { Ok(()) }
//! #         }
//! #         impl embedded_io_async::ErrorType for TcpSocket<'_> { type Error = Error; }
//! #         impl embedded_io_async::Read for TcpSocket<'_> {
//! #             async fn read(&mut self, _: &mut [u8]) -> Result<usize, Error> { Ok(0) }
//! #         }
//! #         impl embedded_io_async::Write for TcpSocket<'_> {
//! #             async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> { Ok(buf.len()) }
//! #             async fn flush(&mut self) -> Result<(), Error> { Ok(()) }
//! #         }
//! #     }
//! # }
//! use embassy_net::{Stack, tcp::State, tcp::TcpSocket};
//! use embassy_time::{Duration as EmbassyDuration, with_timeout};
//! use smolsock::asynch::{Clock, Connection, End, Flush};
//! use smolsock::session::{Framed, FramedEcho, Session};
//! use smolsock::time::{Duration, Instant};
//! use smolsock::wire::frame::HeaderFormat;
//!
//! /// embassy-time as smolsock's clock.
//! struct EmbassyClock;
//!
//! impl Clock for EmbassyClock {
//!     fn now(&self) -> Instant {
//!         Instant::from_micros(embassy_time::Instant::now().as_micros())
//!     }
//!     async fn sleep_until(&self, at: Instant) {
//!         // A deadline past embassy-time's range (a session's "never") waits for good.
//!         let at = embassy_time::Instant::try_from_micros(at.total_micros());
//!         embassy_time::Timer::at(at.unwrap_or(embassy_time::Instant::MAX)).await
//!     }
//! }
//!
//! /// Serves the framed echo on tcp/9000, one connection after another (run one
//! /// such task per connection you want served at once).
//! async fn framed_echo_task(stack: Stack<'static>) -> ! {
//!     let (mut socket_rx, mut socket_tx) = ([0u8; 1024], [0u8; 1024]);
//!     let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
//!     let format = HeaderFormat::NETWORK.with_max_len(1020).unwrap();
//!     // 2 KiB of frame storage, for the life of the task.
//!     let mut session = Framed::new(FramedEcho::new(), [0u8; 1024], [0u8; 1024], format).unwrap();
//!     loop {
//!         let mut socket = TcpSocket::new(stack, &mut socket_rx, &mut socket_tx);
//!         // In SYN-RECEIVED the stack's timeout is the handshake's deadline: a
//!         // forged SYN holds the task 3 s (the timeout does not run in LISTEN).
//!         socket.set_timeout(Some(EmbassyDuration::from_secs(3)));
//!         socket.set_nagle_enabled(!session.no_delay());
//!         if socket.accept(9000).await.is_err() || socket.state() == State::Closed {
//!             continue;
//!         }
//!         socket.set_timeout(Some(EmbassyDuration::from_secs(60)));
//!         // embassy-net sends what is written on its own: flush only at the end.
//!         // No byte moving for 60 s (a silent peer, or one that reads nothing
//!         // while its stack acknowledges our window probes) ends the run.
//!         let end = Connection::new(&mut socket, &mut rx, &mut tx)
//!             .with_flush(Flush::AtEnd)
//!             .with_idle_timeout(Duration::from_secs(60))
//!             .run(&mut session, &EmbassyClock)
//!             .await;
//!         match end {
//!             Ok(End::Closed) => socket.close(),
//!             // A broken protocol, a deadline, or a stream error: reset.
//!             Ok(End::Aborted) | Err(_) => socket.abort(),
//!         }
//!         // Let the FIN (or RST) out before the socket goes, 5 s at most: a
//!         // peer that never acknowledges it gets a reset.
//!         if with_timeout(EmbassyDuration::from_secs(5), socket.flush()).await.is_err() {
//!             socket.abort();
//!         }
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The same clock for tokio (and its `TcpStream` behind
//! `embedded_io_adapters::tokio_1::FromTokio`), counting from when it was made (the
//! adapter's tests in `io-tests/` run over tokio with this clock):
//!
//! ```text
//! use smolsock::asynch::Clock;
//! use smolsock::time::Instant;
//!
//! struct TokioClock(tokio::time::Instant);
//!
//! impl Clock for TokioClock {
//!     fn now(&self) -> Instant {
//!         Instant::from_micros(self.0.elapsed().as_micros().try_into().unwrap_or(u64::MAX))
//!     }
//!     async fn sleep_until(&self, at: Instant) {
//!         match self.0.checked_add(std::time::Duration::from_micros(at.total_micros())) {
//!             Some(at) => tokio::time::sleep_until(at).await,
//!             None => std::future::pending().await,
//!         }
//!     }
//! }
//! ```

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use embedded_io_async::{Read, Write};

pub use crate::pump::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, End, Error, Flush, FrameError, StreamStats,
};
use crate::pump::{Did, Finish, Op, Pump, Turn};
use crate::session::{Request, Session};
use crate::time::{Duration, Instant};
use crate::wire::frame::{FrameReader, HeaderFormat, ReadError};

/// Where time comes from: the caller's clock and its timer.
///
/// The epoch is the clock's own (boot, the start of the program); sessions only
/// compare instants from the same clock. See the [module docs](self) for embassy-time
/// and tokio.
// The futures of a firmware's single-threaded executor need not be `Send`; for a
// concrete clock the compiler sees whether they are.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The time now.
    fn now(&self) -> Instant;

    /// Waits until [`now`](Self::now) has reached `at` (at once if it has).
    /// Returning earlier is harmless (the adapter waits again); a clock whose
    /// `sleep_until` returns at once without its time moving makes the adapter
    /// spin.
    async fn sleep_until(&self, at: Instant);
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }

    async fn sleep_until(&self, at: Instant) {
        (**self).sleep_until(at).await;
    }
}

/// Serves one connection: starts `session`, moves bytes between it and `io`
/// through the buffers `rx` and `tx` until the session closes or aborts, and ends
/// it. [`Session::start`] and [`Session::end`] are each called exactly once, also
/// when the stream fails.
///
/// `Ok(End::Closed)`: everything the session sent was written and flushed; close
/// the stream (embassy-net: `TcpSocket::close`, then `flush`). `Ok(End::Aborted)`:
/// reset it (`TcpSocket::abort`, then `flush`). The session decides when a
/// connection ends, so a peer that closes gets [`End::Closed`] once the session has
/// answered and agreed.
///
/// `rx` holds bytes read and not yet taken by the session; `tx` holds what the
/// session gave and the stream has not yet taken. Any sizes work (a few hundred
/// bytes is plenty; larger ones mean fewer, larger reads and writes), but neither
/// may be empty.
pub async fn run<S, T, C>(
    session: &mut S,
    io: &mut T,
    clock: &C,
    rx: &mut [u8],
    tx: &mut [u8],
) -> Result<End, Error<T::Error>>
where
    S: Session + ?Sized,
    T: Read + Write + ?Sized,
    C: Clock + ?Sized,
{
    Connection::new(io, rx, tx).run(session, clock).await
}

/// Runs one request over `io` until its outcome, as
/// [`Connection::run_request`]. Bytes read past the request's answer are dropped
/// with the buffers: for more than one request on a stream, keep a
/// [`Connection`].
pub async fn run_request<R, T, C>(
    request: &mut R,
    io: &mut T,
    clock: &C,
    rx: &mut [u8],
    tx: &mut [u8],
) -> Result<R::Output, Error<T::Error>>
where
    R: Request + ?Sized,
    T: Read + Write + ?Sized,
    C: Clock + ?Sized,
{
    Connection::new(io, rx, tx)
        .run_request(request, clock)
        .await
}

/// A stream with its receive and send buffers, for sessions and requests one
/// after another. Bytes read and not taken by one request (the start of the next
/// answer, read in the same piece) stay in the receive buffer for the next.
///
/// `T` is the stream itself or a `&mut` to it.
#[must_use = "a connection does nothing until a session or request is run on it"]
pub struct Connection<'b, T> {
    io: T,
    pump: Pump<'b>,
}

impl<'b, T: Read + Write> Connection<'b, T> {
    /// A connection over `io`, reading into `rx` and writing from `tx` (neither
    /// empty; see [`run`]).
    pub const fn new(io: T, rx: &'b mut [u8], tx: &'b mut [u8]) -> Self {
        Self {
            io,
            pump: Pump::new(rx, tx),
        }
    }

    /// Flushes the stream as `flush` says ([`Flush::BeforeRead`] unless set).
    pub fn with_flush(mut self, flush: Flush) -> Self {
        self.pump.set_flush(flush);
        self
    }

    /// Ends a run with [`Error::IdleTimeout`] once nothing has moved for
    /// `timeout`. Progress is a byte read, a flush done, writes that took
    /// all the session had to say or a kilobyte in all; and the time the
    /// session spends on work of its own (a deadline due again at once once
    /// handled: hashing a file before an upload) does not count as idle. A
    /// write of the few bytes a peer made room for is no progress, as with
    /// `TcpServer`'s idle timeout, however small the send buffer.
    /// A peer that sends nothing and reads nothing (its window shut, the answer
    /// stuck in the socket), or reads a byte at a time, then frees the
    /// connection, whatever its TCP stack keeps acknowledging. Unless set, a
    /// [`run`](Self::run) has [`DEFAULT_IDLE_TIMEOUT`] (60 s) and a
    /// [`run_request`](Self::run_request) none: a client's request keeps its
    /// own deadlines (a [`TransferClient`](crate::transfer::TransferClient)'s
    /// timeout for a silent server). [`Duration::MAX`] never comes, and leaves
    /// only the session's own deadlines and the stream's end to end it.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pump.set_idle_timeout(timeout);
        self
    }

    /// Ends a run with [`Error::CloseTimeout`] when a session that closed
    /// ([`Status::Close`](crate::session::Status::Close)) still has bytes to
    /// write or flush `timeout` after it closed, or after the last kilobyte
    /// written since: a peer that reads nothing more cannot hold the
    /// connection once the session is done with it, whatever deadlines the
    /// session dropped. [`DEFAULT_CLOSE_TIMEOUT`] (20 s) unless set. The last
    /// flush counts against it: with a stream whose `flush` waits for the
    /// peer's acknowledgements (embassy-net's `TcpSocket`), allow for a few
    /// retransmissions on a lossy link.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.pump.set_close_timeout(timeout);
        self
    }

    /// Runs `session` to its end, as [`run`]. The connection has then ended, and
    /// a later run gives [`Error::Ended`] at once (calling nothing on its session).
    pub async fn run<S, C>(&mut self, session: &mut S, clock: &C) -> Result<End, Error<T::Error>>
    where
        S: Session + ?Sized,
        C: Clock + ?Sized,
    {
        match self
            .drive(session, clock, false, |_| None::<core::convert::Infallible>)
            .await
        {
            Ok(Finish::Ended(end, _)) => Ok(end),
            Ok(Finish::Done(never)) => match never {},
            Err(e) => Err(e),
        }
    }

    /// Drives `request` until its [`outcome`](Request::outcome), and until every
    /// byte it sent was written and flushed.
    ///
    /// The request's [`start`](Session::start) is called first: the request
    /// begins, on the connection as it is (the peer may have closed already, and
    /// then the request hears [`receive_finished`](Session::receive_finished) at
    /// once). Its [`end`](Session::end) is called only when the connection is over:
    /// the request said [`Status::Close`](crate::session::Status::Close) or
    /// [`Status::Abort`](crate::session::Status::Abort) (the outcome says why, and
    /// [`is_open`](Self::is_open) is then false), or the stream failed. A request
    /// that gets its outcome with the connection still open leaves it open for the
    /// next one.
    ///
    /// Once its outcome is given, a request is offered no more input: what was read
    /// past its answer stays in the receive buffer ([`buffered`](Self::buffered))
    /// for the next request. A stream error while its last bytes are written is
    /// still an error (the peer may lack them), and ends the connection.
    pub async fn run_request<R, C>(
        &mut self,
        request: &mut R,
        clock: &C,
    ) -> Result<R::Output, Error<T::Error>>
    where
        R: Request + ?Sized,
        C: Clock + ?Sized,
    {
        match self.drive(request, clock, true, |r| r.outcome()).await? {
            Finish::Done(outcome) | Finish::Ended(_, Some(outcome)) => Ok(outcome),
            Finish::Ended(_, None) => Err(Error::NoOutcome),
        }
    }

    /// Reads and drops what the peer still sends, until it finishes sending,
    /// for at most the close timeout: the lingering close of RFC 9112 §9.6,
    /// as the blocking adapter's
    /// [`drain`][blocking-drain] (when that feature is
    /// on). Call it once a run ended [`End::Closed`] and the stream's sending
    /// half is closed, before the stream is dropped, where the stack resets a
    /// connection closed with input unread (Linux: a tokio `TcpStream` after
    /// its `shutdown`). embassy-net needs none: smoltcp never resets on close.
    ///
    /// `Ok(n)`: the peer finished; `n` bytes were dropped, those held for a
    /// next session included. [`Error::CloseTimeout`]: it had not finished
    /// within the close timeout ([`with_close_timeout`](Self::with_close_timeout))
    /// from the call. [`Error::Stalled`]: the receive buffer is empty. The
    /// connection takes no more sessions afterwards.
    ///
    #[cfg_attr(
        feature = "embedded-io",
        doc = "[blocking-drain]: crate::blocking::Connection::drain"
    )]
    #[cfg_attr(not(feature = "embedded-io"), doc = "[blocking-drain]: crate#features")]
    pub async fn drain<C: Clock + ?Sized>(&mut self, clock: &C) -> Result<u64, Error<T::Error>> {
        let (mut dropped, until) = self.pump.start_drain(clock.now());
        while !self.pump.peer_finished() {
            let now = clock.now();
            if now >= until {
                return Err(Error::CloseTimeout);
            }
            let space = self.pump.drain_space().ok_or(Error::Stalled)?;
            match select(self.io.read(space), alarm(clock, Some(until), now)).await {
                Either::First(Ok(n)) => dropped = dropped.saturating_add(self.pump.drained(n)),
                Either::First(Err(e)) => return Err(Error::Io(e)),
                Either::Second(()) => {}
            }
        }
        Ok(dropped)
    }

    /// Whether another session or request may run: no session closed or aborted
    /// the connection, the stream has not failed, and no run or request was
    /// dropped part way (a cancelled future leaves what it had not written
    /// yet, which must not go ahead of another request's bytes).
    pub fn is_open(&self) -> bool {
        self.pump.is_open()
    }

    /// Whether the peer has finished sending (a read returned 0).
    pub fn peer_finished(&self) -> bool {
        self.pump.peer_finished()
    }

    /// Bytes read and not yet taken, waiting for the next session or request.
    pub fn buffered(&self) -> &[u8] {
        self.pump.buffered()
    }

    /// Counters over every session and request this connection carried.
    pub fn stats(&self) -> &StreamStats {
        self.pump.stats()
    }

    /// The stream.
    pub fn io(&self) -> &T {
        &self.io
    }

    /// The stream, to set its options (or to close it).
    pub fn io_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Gives back the stream; bytes still buffered are dropped.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// The loop both runs share: until the session ends the connection, or
    /// `outcome` gives something and every byte is out.
    async fn drive<S, C, O, F>(
        &mut self,
        session: &mut S,
        clock: &C,
        request: bool,
        mut outcome: F,
    ) -> Result<Finish<O>, Error<T::Error>>
    where
        S: Session + ?Sized,
        C: Clock + ?Sized,
        F: FnMut(&mut S) -> Option<O>,
    {
        if !self.pump.is_open() {
            return Err(Error::Ended);
        }
        self.pump.start(session, clock.now(), request);
        let mut done = None;
        loop {
            let now = clock.now();
            let (io, deadline) =
                match self
                    .pump
                    .turn(session, now, &mut done, &mut outcome, &|| clock.now())
                {
                    Turn::Perform(io, deadline) => (io, deadline),
                    Turn::Again => continue,
                    Turn::Finished(finish) => return Ok(finish),
                    Turn::Failed(failure) => return Err(failure.into()),
                };
            match perform(&mut self.io, self.pump.op(io), clock, deadline, now).await {
                Ok(did) => self.pump.did(did, clock.now()),
                Err(e) => {
                    self.pump.end(session, clock.now());
                    return Err(e);
                }
            }
        }
    }
}

impl<T> core::fmt::Debug for Connection<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.pump.is_open())
            .field("buffered", &self.pump.buffered().len())
            .field("stats", self.pump.stats())
            .finish_non_exhaustive()
    }
}

/// Performs `op`, racing it against the deadline.
async fn perform<T, C>(
    io: &mut T,
    op: Op<'_>,
    clock: &C,
    deadline: Option<Instant>,
    now: Instant,
) -> Result<Did, Error<T::Error>>
where
    T: Read + Write + ?Sized,
    C: Clock + ?Sized,
{
    let alarm = alarm(clock, deadline, now);
    let raced = match op {
        Op::Write(bytes) => select(io.write(bytes), alarm)
            .await
            .map(|r| r.map(Did::Wrote)),
        Op::Flush => select(io.flush(), alarm)
            .await
            .map(|r| r.map(|()| Did::Flushed)),
        Op::Read(space) => select(io.read(space), alarm)
            .await
            .map(|r| r.map(Did::Read)),
        Op::Wait if deadline.is_none() => return Err(Error::Stalled),
        Op::Wait => {
            alarm.await;
            return Ok(Did::Alarm);
        }
    };
    match raced {
        Either::First(Ok(Did::Wrote(0))) => Err(Error::WriteZero),
        Either::First(Ok(did)) => Ok(did),
        Either::First(Err(e)) => Err(Error::Io(e)),
        Either::Second(()) => Ok(Did::Alarm),
    }
}

/// A datagram socket, bound already: what the datagram adapters (TFTP's) send
/// and receive through. smolsock defines it so that they need no network crate;
/// embassy-net's `UdpSocket` fits it in a few lines (its `send_to` and
/// `recv_from`, the endpoint as the address), as does tokio's.
///
/// `recv_from` must be cancel-safe (nothing is taken from the socket by a call
/// dropped before it completes): the adapters race it against their deadline.
/// embassy-net's and tokio's are.
// As for `Clock`: a firmware's single-threaded executor needs no `Send` futures.
#[allow(async_fn_in_trait)]
pub trait DatagramSocket {
    /// A peer's address and port.
    type Addr: Copy + PartialEq + core::fmt::Debug;
    /// Why a send or a receive failed.
    type Error: core::fmt::Debug;

    /// Sends `datagram` to `to`, whole. The adapters await it with no
    /// deadline of their own, so it must end in bounded time, sent or failed:
    /// embassy-net's waits while its send queue is full, which a datagram to a
    /// neighbour that never answers ARP keeps full for ever; wrap it in a
    /// timeout there (the embassy firmware's TFTP task gives it a second).
    async fn send_to(&mut self, datagram: &[u8], to: Self::Addr) -> Result<(), Self::Error>;

    /// Waits for a datagram and writes it into `buf`: its length and sender. A
    /// datagram longer than `buf` is an error, or cut to `buf`'s length (which
    /// the session then refuses as the wrong size or a bad packet).
    async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, Self::Addr), Self::Error>;

    /// Whether `a` and `b` are the same host (on any port): a TFTP server
    /// answers a request from a port of its own, on the same address.
    fn same_host(a: &Self::Addr, b: &Self::Addr) -> bool;
}

impl<D: DatagramSocket + ?Sized> DatagramSocket for &mut D {
    type Addr = D::Addr;
    type Error = D::Error;

    async fn send_to(&mut self, datagram: &[u8], to: Self::Addr) -> Result<(), Self::Error> {
        (**self).send_to(datagram, to).await
    }

    async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, Self::Addr), Self::Error> {
        (**self).recv_from(buf).await
    }

    fn same_host(a: &Self::Addr, b: &Self::Addr) -> bool {
        D::same_host(a, b)
    }
}

/// Waits for a datagram on `socket` until `deadline` (for ever without one):
/// `Ok(Some((len, from)))`, or `Ok(None)` once the deadline has passed on
/// `clock`. A deadline already past gives other tasks a turn, then `Ok(None)`
/// unless a datagram was waiting.
pub async fn recv_from_until<D, C>(
    socket: &mut D,
    buf: &mut [u8],
    clock: &C,
    deadline: Option<Instant>,
) -> Result<Option<(usize, D::Addr)>, D::Error>
where
    D: DatagramSocket + ?Sized,
    C: Clock + ?Sized,
{
    let now = clock.now();
    match select(socket.recv_from(buf), alarm(clock, deadline, now)).await {
        Either::First(received) => received.map(Some),
        Either::Second(()) => Ok(None),
    }
}

/// Completes at `deadline`; never without one. A deadline already due (a session
/// with work to do at once) only gives way to other tasks for a turn, so that the
/// adapter never spins without yielding.
pub(crate) async fn alarm<C: Clock + ?Sized>(clock: &C, deadline: Option<Instant>, now: Instant) {
    match deadline {
        None => core::future::pending().await,
        Some(at) if at <= now => yield_now().await,
        Some(at) => clock.sleep_until(at).await,
    }
}

/// Pending once (asking to be polled again at once), then ready.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

pub(crate) enum Either<A, B> {
    First(A),
    Second(B),
}

impl<A, B> Either<A, B> {
    fn map<C>(self, f: impl FnOnce(A) -> C) -> Either<C, B> {
        match self {
            Either::First(a) => Either::First(f(a)),
            Either::Second(b) => Either::Second(b),
        }
    }
}

/// Whichever of `a` and `b` completes first (`a` when both can); the other is
/// dropped.
pub(crate) async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::First(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(out));
        }
        Poll::Pending
    })
    .await
}

/// Reads until `reader` holds a whole frame, and gives it (`None`: the peer
/// finished sending, on a frame boundary). The frame stays valid until the reader
/// is next changed.
///
/// Bytes read past the frame stay in the reader for the next call, so frames that
/// arrive glued together or cut in pieces come out one by one. Cancel-safe if the
/// stream's `read` is: every byte read is already in the reader, so a call dropped
/// part way (raced against a timer) loses nothing.
///
/// ```
/// # async fn demo<T: embedded_io_async::Read + embedded_io_async::Write>(socket: &mut T)
/// # -> Result<(), smolsock::asynch::FrameError<T::Error>> {
/// use smolsock::asynch::{read_frame, write_frame};
/// use smolsock::wire::frame::{FrameReader, HeaderFormat};
///
/// let format = HeaderFormat::NETWORK.with_max_len(256).unwrap();
/// let mut reader = FrameReader::new([0u8; 260], format).unwrap();
/// write_frame(socket, format, b"hello").await?;
/// while let Some(frame) = read_frame(socket, &mut reader).await? {
///     // ... one whole frame, however the stream split or merged it
/// #   let _ = frame;
/// }
/// # Ok(()) }
/// ```
pub async fn read_frame<'r, T, B>(
    io: &mut T,
    reader: &'r mut FrameReader<B>,
) -> Result<Option<&'r [u8]>, FrameError<T::Error>>
where
    T: Read + ?Sized,
    B: AsRef<[u8]> + AsMut<[u8]>,
{
    loop {
        if reader.has_frame() {
            return Ok(reader.next_frame());
        }
        if let Some(error) = reader.error() {
            return Err(FrameError::Read(error));
        }
        let space = reader.receive_buffer();
        if space.is_empty() {
            // Full with no whole frame: storage smaller than a frame, which
            // `FrameReader` refuses to be built with. Reported, not looped on.
            return Err(FrameError::Read(ReadError::Truncated {
                received: reader.buffered(),
                expected: None,
            }));
        }
        match io.read(space).await {
            Ok(0) => {
                reader.finish()?;
                return Ok(None);
            }
            // The whole frames before an oversize header come first: the reader
            // keeps the error for the call after them.
            Ok(n) => {
                if let Err(error) = reader.commit(n)
                    && !reader.has_frame()
                {
                    return Err(FrameError::Read(error));
                }
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
}

/// Writes `body` as one frame in `format`: header, then body.
///
/// Not cancel-safe: dropped part way, it may leave part of a frame on the stream,
/// which the peer then reads as the start of one; close the stream after that.
pub async fn write_frame<T>(
    io: &mut T,
    format: HeaderFormat,
    body: &[u8],
) -> Result<(), FrameError<T::Error>>
where
    T: Write + ?Sized,
{
    let header = format.header(body.len())?;
    write_all(io, header.as_bytes()).await?;
    write_all(io, body).await
}

/// `write_all`, with a write that takes nothing an error instead of a panic.
async fn write_all<T: Write + ?Sized>(
    io: &mut T,
    mut bytes: &[u8],
) -> Result<(), FrameError<T::Error>> {
    while !bytes.is_empty() {
        match io.write(bytes).await {
            Ok(0) => return Err(FrameError::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}
