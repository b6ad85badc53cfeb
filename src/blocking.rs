//! The blocking adapter: any [`Session`] over any blocking
//! `embedded_io::{Read, Write}` stream, and with the `std` feature over `std::io`
//! streams such as `std::net::TcpStream` (through [`StdIo`]). It makes the same
//! decisions as [`asynch`][asynch] (the two share their logic) and only
//! waits differently.
//!
//! - [`run`] serves one connection with a session, to its end.
//! - [`Connection`] keeps a stream and its buffers across requests:
//!   [`Connection::run_request`] drives a client's [`Request`] until its outcome,
//!   and bytes read past one answer wait for the next request.
//! - [`read_frame`] and [`write_frame`] move length-framed messages.
//!
//! Deadlines come from the stream's own read timeout: set it (std:
//! `TcpStream::set_read_timeout`) to about the resolution the session's deadlines
//! need. A read that times out (`ErrorKind::TimedOut`; [`StdIo`] turns std's
//! `WouldBlock` into that) is not an error: the adapter reads the clock, calls
//! [`handle_timeout`](Session::handle_timeout) if the session's
//! [`poll_timeout`](Session::poll_timeout) has passed, and reads again. Without a
//! read timeout a deadline takes effect only when bytes arrive. A write that times
//! out (`set_write_timeout`) is retried the same way, so a peer that never reads
//! holds the session only until its deadline, and once the session has closed,
//! until the close timeout ([`Connection::with_close_timeout`]). The stream
//! must block: a
//! non-blocking one that times out at once makes the adapter spin.
//!
//! ```no_run
//! # #[cfg(feature = "std")]
//! # fn main() -> std::io::Result<()> {
//! use std::net::{Shutdown, TcpListener};
//! use std::time::Duration;
//!
//! use smolsock::blocking::{Connection, End, StdClock, StdIo};
//! use smolsock::session::{Framed, FramedEcho};
//! use smolsock::wire::frame::HeaderFormat;
//!
//! let format = HeaderFormat::NETWORK.with_max_len(1020).unwrap();
//! let mut session = Framed::new(FramedEcho::new(), [0u8; 1024], [0u8; 1024], format).unwrap();
//! let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
//! let clock = StdClock::new();
//! let listener = TcpListener::bind("127.0.0.1:9000")?;
//! for stream in listener.incoming() {
//!     let stream = stream?;
//!     stream.set_read_timeout(Some(Duration::from_millis(100)))?;
//!     stream.set_write_timeout(Some(Duration::from_millis(100)))?;
//!     stream.set_nodelay(true)?;
//!     // One client at a time: one that says nothing, or reads a byte at a
//!     // time, is let go after a minute.
//!     let mut conn = Connection::new(StdIo::new(&stream), &mut rx, &mut tx)
//!         .with_idle_timeout(smolsock::time::Duration::from_secs(60));
//!     match conn.run(&mut session, &clock) {
//!         Ok(End::Closed) => {
//!             // Our half closed, the client is read to its end before the
//!             // stream goes: closed with its input unread, Linux would reset
//!             // it and lose the end of the answer on its way.
//!             stream.shutdown(Shutdown::Write)?;
//!             let _ = conn.drain(&clock);
//!         }
//!         // Dropping the stream closes it; a reset would need SO_LINGER 0.
//!         Ok(End::Aborted) | Err(_) => {}
//!     }
//! }
//! # Ok(()) }
//! # #[cfg(not(feature = "std"))]
//! # fn main() {}
//! ```
//!
#![cfg_attr(feature = "embedded-io-async", doc = "[asynch]: crate::asynch")]
#![cfg_attr(not(feature = "embedded-io-async"), doc = "[asynch]: crate#features")]
#![cfg_attr(not(feature = "std"), doc = "[`StdIo`]: crate#features")]

use embedded_io::{Error as _, ErrorKind, Read, Write};

pub use crate::pump::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, End, Error, Flush, FrameError, StreamStats,
};
use crate::pump::{Did, Finish, Op, Pump, Turn};
use crate::session::{Request, Session};
use crate::time::{Duration, Instant};
use crate::wire::frame::{FrameReader, HeaderFormat, ReadError};

/// Where time comes from: the caller's clock.
pub trait Clock {
    /// The time now.
    fn now(&self) -> Instant;

    /// Blocks until [`now`](Self::now) has reached `at`. Called only when the
    /// session has nothing to do but wait for its deadline.
    fn sleep_until(&self, at: Instant);
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn sleep_until(&self, at: Instant) {
        (**self).sleep_until(at);
    }
}

/// The monotonic clock of std, counting from when it was made.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    epoch: std::time::Instant,
}

#[cfg(feature = "std")]
impl StdClock {
    /// A clock whose [`Instant::ZERO`] is now.
    pub fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for StdClock {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn sleep_until(&self, at: Instant) {
        let wait = at.saturating_since(self.now());
        std::thread::sleep(std::time::Duration::from_micros(wait.total_micros()));
    }
}

/// A `std::io` stream as an `embedded_io` one, for this adapter: `WouldBlock`
/// (what Linux gives when a read timeout passes) becomes `TimedOut`, and an
/// interrupted call is retried. `T` is for example `&TcpStream` or `TcpStream`.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct StdIo<T> {
    inner: T,
}

#[cfg(feature = "std")]
impl<T> StdIo<T> {
    /// Wraps `inner`.
    pub const fn new(inner: T) -> Self {
        Self { inner }
    }

    /// The stream.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The stream, to set its options.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

#[cfg(feature = "std")]
fn from_std<R>(mut call: impl FnMut() -> std::io::Result<R>) -> std::io::Result<R> {
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            other => return other,
        }
    }
}

#[cfg(feature = "std")]
impl<T> embedded_io::ErrorType for StdIo<T> {
    type Error = std::io::Error;
}

#[cfg(feature = "std")]
impl<T: std::io::Read> Read for StdIo<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        from_std(|| self.inner.read(buf))
    }
}

#[cfg(feature = "std")]
impl<T: std::io::Write> Write for StdIo<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        from_std(|| self.inner.write(buf))
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        from_std(|| self.inner.flush())
    }
}

/// Serves one connection: starts `session`, moves bytes between it and `io`
/// through the buffers `rx` and `tx` until the session closes or aborts, and ends
/// it. [`Session::start`] and [`Session::end`] are each called exactly once, also
/// when the stream fails.
///
/// `Ok(End::Closed)`: everything the session sent was written and flushed; close
/// the stream (std: `shutdown(Shutdown::Write)`, or drop it; run the session on
/// a [`Connection`] to [`drain`](Connection::drain) the peer's input first, as
/// Linux resets a socket closed with input unread). `Ok(End::Aborted)`: reset it. Neither `rx` nor `tx` may be empty; a few hundred bytes each is plenty.
pub fn run<S, T, C>(
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
    Connection::new(io, rx, tx).run(session, clock)
}

/// Runs one request over `io` until its outcome, as
/// [`Connection::run_request`]. Bytes read past the request's answer are dropped
/// with the buffers: for more than one request on a stream, keep a
/// [`Connection`].
pub fn run_request<R, T, C>(
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
    Connection::new(io, rx, tx).run_request(request, clock)
}

/// A stream with its receive and send buffers, for sessions and requests one
/// after another. Bytes read and not taken by one request stay in the receive
/// buffer for the next.
///
/// `T` is the stream itself or a `&mut` to it.
#[must_use = "a connection does nothing until a session or request is run on it"]
pub struct Connection<'b, T> {
    io: T,
    pump: Pump<'b>,
}

impl<'b, T: Read + Write> Connection<'b, T> {
    /// A connection over `io`, reading into `rx` and writing from `tx` (neither
    /// empty).
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
    /// `timeout`, as the async adapter's
    /// [`with_idle_timeout`][async-idle]
    /// (when that feature is on): a byte read, a flush, a kilobyte written or
    /// all the session had to say is progress, and the time the session
    /// spends on work of its own (a deadline due again at once once handled)
    /// is not idle; a write of the few bytes a slow
    /// reader made room for is not. It is seen when a read or a write returns:
    /// set the stream's read and write timeouts to about its resolution. A
    /// peer that sends nothing and reads nothing, or reads a byte at a time,
    /// then frees the connection. Unless set, a [`run`](Self::run) has
    /// [`DEFAULT_IDLE_TIMEOUT`] (60 s) and a [`run_request`](Self::run_request)
    /// none: a client's request keeps its own deadlines.
    /// [`Duration::MAX`] never comes, and leaves only the session's own
    /// deadlines and the stream's end to end it.
    ///
    #[cfg_attr(
        feature = "embedded-io-async",
        doc = "[async-idle]: crate::asynch::Connection::with_idle_timeout"
    )]
    #[cfg_attr(
        not(feature = "embedded-io-async"),
        doc = "[async-idle]: crate#features"
    )]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pump.set_idle_timeout(timeout);
        self
    }

    /// Ends a run with [`Error::CloseTimeout`] when a session that closed still
    /// has bytes to write or flush `timeout` after it closed, or after the last
    /// kilobyte written since, as the async adapter's
    /// [`with_close_timeout`][async-close]
    /// (when that feature is on). [`DEFAULT_CLOSE_TIMEOUT`] (20 s) unless set. The stream's own write
    /// timeout must be set for a blocked write to give way to it, as for every
    /// deadline here.
    ///
    #[cfg_attr(
        feature = "embedded-io-async",
        doc = "[async-close]: crate::asynch::Connection::with_close_timeout"
    )]
    #[cfg_attr(
        not(feature = "embedded-io-async"),
        doc = "[async-close]: crate#features"
    )]
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.pump.set_close_timeout(timeout);
        self
    }

    /// Runs `session` to its end, as [`run`]. The connection has then ended, and
    /// a later run gives [`Error::Ended`] at once (calling nothing on its session).
    pub fn run<S, C>(&mut self, session: &mut S, clock: &C) -> Result<End, Error<T::Error>>
    where
        S: Session + ?Sized,
        C: Clock + ?Sized,
    {
        match self.drive(session, clock, false, |_| None::<core::convert::Infallible>) {
            Ok(Finish::Ended(end, _)) => Ok(end),
            Ok(Finish::Done(never)) => match never {},
            Err(e) => Err(e),
        }
    }

    /// Drives `request` until its [`outcome`](Request::outcome), and until every
    /// byte it sent was written and flushed. `start` and `end` are called as
    /// [`asynch::Connection::run_request`][async-run-request]
    /// says (when that feature is on): `start` first, `end` only when the
    /// connection is over (the request closed or aborted it, or the stream failed).
    /// What was read past the request's answer stays for the next request.
    ///
    #[cfg_attr(
        feature = "embedded-io-async",
        doc = "[async-run-request]: crate::asynch::Connection::run_request"
    )]
    #[cfg_attr(
        not(feature = "embedded-io-async"),
        doc = "[async-run-request]: crate#features"
    )]
    pub fn run_request<R, C>(
        &mut self,
        request: &mut R,
        clock: &C,
    ) -> Result<R::Output, Error<T::Error>>
    where
        R: Request + ?Sized,
        C: Clock + ?Sized,
    {
        match self.drive(request, clock, true, |r| r.outcome())? {
            Finish::Done(outcome) | Finish::Ended(_, Some(outcome)) => Ok(outcome),
            Finish::Ended(_, None) => Err(Error::NoOutcome),
        }
    }

    /// Reads and drops what the peer still sends, until it finishes sending,
    /// for at most the close timeout: the lingering close of RFC 9112 §9.6.
    /// Call it once a run ended [`End::Closed`] and the stream's sending half
    /// is closed (std: `TcpStream::shutdown(Shutdown::Write)`), before the
    /// stream is dropped.
    ///
    /// Why: Linux, like most kernels, answers the close of a socket with
    /// input still unread (a pipelined request, a body the session ignored)
    /// with a reset, and the reset throws away what it had not sent yet: the
    /// end of the answer, when the peer reads slowly. A stream drained to the
    /// peer's end closes cleanly. (smoltcp, and so embassy-net, never resets
    /// on close: there, closing and flushing is enough.)
    ///
    /// `Ok(n)`: the peer finished; `n` bytes were dropped, those held for a
    /// next session included. [`Error::CloseTimeout`]: it had not finished
    /// within the close timeout ([`with_close_timeout`](Self::with_close_timeout))
    /// from the call, however much it sent. [`Error::Stalled`]: the receive
    /// buffer is empty, so nothing can be read. The connection takes no more
    /// sessions afterwards. As for every deadline here, the stream's read
    /// timeout must be set for a silent peer to give way to the close timeout.
    pub fn drain<C: Clock + ?Sized>(&mut self, clock: &C) -> Result<u64, Error<T::Error>> {
        let (mut dropped, until) = self.pump.start_drain(clock.now());
        while !self.pump.peer_finished() {
            if clock.now() >= until {
                return Err(Error::CloseTimeout);
            }
            let space = self.pump.drain_space().ok_or(Error::Stalled)?;
            match self.io.read(space) {
                Ok(n) => dropped = dropped.saturating_add(self.pump.drained(n)),
                Err(e) if again(&e) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(dropped)
    }

    /// Whether another session or request may run.
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

    fn drive<S, C, O, F>(
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
            match perform(&mut self.io, self.pump.op(io), clock, deadline, now) {
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

/// Whether a failed call is only the stream's timeout (or an interruption): try
/// again after looking at the clock.
fn again<E: embedded_io::Error>(e: &E) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// Performs `op`. A read is skipped while the deadline is due, so that work a
/// session wants done at once is not held up by a silent peer.
fn perform<T, C>(
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
    let due = deadline.is_some_and(|at| at <= now);
    let result = match op {
        Op::Write(bytes) => io.write(bytes).map(Did::Wrote),
        Op::Flush => io.flush().map(|()| Did::Flushed),
        Op::Read(_) if due => return Ok(Did::Alarm),
        Op::Read(space) => io.read(space).map(Did::Read),
        Op::Wait => {
            let Some(at) = deadline else {
                return Err(Error::Stalled);
            };
            if !due {
                clock.sleep_until(at);
            }
            return Ok(Did::Alarm);
        }
    };
    match result {
        Ok(Did::Wrote(0)) => Err(Error::WriteZero),
        Ok(did) => Ok(did),
        Err(e) if again(&e) => Ok(Did::Alarm),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Reads until `reader` holds a whole frame, and gives it (`None`: the peer
/// finished sending, on a frame boundary). Bytes read past the frame stay in the
/// reader for the next call. A read that times out gives `FrameError::Io` with
/// every byte read so far kept in the reader: call again to go on.
///
/// ```no_run
/// # #[cfg(feature = "std")]
/// # fn main() -> Result<(), smolsock::blocking::FrameError<std::io::Error>> {
/// use smolsock::blocking::{StdIo, read_frame, write_frame};
/// use smolsock::wire::frame::{FrameReader, HeaderFormat};
///
/// let stream = std::net::TcpStream::connect("127.0.0.1:9000").map_err(smolsock::blocking::FrameError::Io)?;
/// let mut io = StdIo::new(&stream);
/// let format = HeaderFormat::NETWORK.with_max_len(256).unwrap();
/// let mut reader = FrameReader::new([0u8; 260], format).unwrap();
/// write_frame(&mut io, format, b"hello")?;
/// if let Some(frame) = read_frame(&mut io, &mut reader)? {
///     assert_eq!(frame, b"hello");
/// }
/// # Ok(()) }
/// # #[cfg(not(feature = "std"))]
/// # fn main() {}
/// ```
pub fn read_frame<'r, T, B>(
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
        match io.read(space) {
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
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
}

/// Writes `body` as one frame in `format`: header, then body. A write that fails
/// part way leaves part of a frame on the stream: close it after an error.
pub fn write_frame<T>(
    io: &mut T,
    format: HeaderFormat,
    body: &[u8],
) -> Result<(), FrameError<T::Error>>
where
    T: Write + ?Sized,
{
    let header = format.header(body.len())?;
    write_all(io, header.as_bytes())?;
    write_all(io, body)
}

/// `write_all`, with a write that takes nothing an error instead of a panic.
fn write_all<T: Write + ?Sized>(io: &mut T, mut bytes: &[u8]) -> Result<(), FrameError<T::Error>> {
    while !bytes.is_empty() {
        match io.write(bytes) {
            Ok(0) => return Err(FrameError::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}
