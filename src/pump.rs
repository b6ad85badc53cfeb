//! What the stream adapters ([`crate::asynch`], [`crate::blocking`]) share: the
//! buffers between a session and a stream, the decision of which I/O comes next,
//! their errors and their counters.
//!
//! [`Pump`] is sans-IO too. Each turn ([`Pump::turn`]) it hands the session what
//! was read, tells it the time and collects what it wants sent, then names one
//! operation for the adapter to perform ([`Io`], its buffers lent by [`Pump::op`]):
//! write, flush, read, or wait for the session's deadline; or it says the drive is
//! over. The adapter performs the operation (awaiting, or blocking) and reports
//! what came of it ([`Did`]). So both adapters make the same decisions, and differ
//! only in how they wait.

use core::fmt;

use crate::session::{Session, Status};
use crate::time::{Duration, Instant, sooner};
use crate::wire::frame::{ReadError, WriteError};

/// How a connection ended when its session stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum End {
    /// The session said [`Status::Close`]: everything it sent was written and
    /// flushed. An `embedded-io` stream cannot close its sending half, so the
    /// caller does: embassy-net's `TcpSocket::close` (FIN) then `flush`, or
    /// `TcpStream::shutdown(Shutdown::Write)` in std, or just dropping the stream.
    /// Where the stack resets a socket closed with input unread (Linux, so std
    /// and tokio streams), the adapter's `Connection::drain` then reads the
    /// peer to its end, so that the reset cannot cut the answer.
    Closed,
    /// The session said [`Status::Abort`]: reset the connection, for example with
    /// embassy-net's `TcpSocket::abort` followed by `flush`. What the session had
    /// still queued was dropped, as a reset drops it anyway.
    Aborted,
}

/// When the stream adapters flush the stream.
///
/// A write hands bytes to the stream; a flush waits until the stream has sent
/// them on. What a flush costs depends on the stream, so the caller chooses:
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Flush {
    /// Whenever the session has nothing more to send, before the next read: an
    /// answer leaves before the adapter waits for the next request. Right for
    /// any stream, needed for one that holds written bytes until flushed (a
    /// buffered writer, a UART or USB serial driver).
    #[default]
    BeforeRead,
    /// Only once the session closes, and when a request is done. For a stream
    /// that sends what is written on its own, such as embassy-net's `TcpSocket`,
    /// whose `flush` waits until the peer has acknowledged every byte: a peer that
    /// delays its ACKs (Linux holds the ACK of a lone small segment up to 40 ms)
    /// would make every turn wait that long.
    AtEnd,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Closed => "closed",
            End::Aborted => "aborted",
        })
    }
}

/// Why a stream adapter stopped driving a session. `E` is the stream's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The stream failed (the peer reset the connection, the link went down).
    Io(E),
    /// The stream's `write` accepted none of a non-empty buffer, which its trait
    /// forbids: it can take no more.
    WriteZero,
    /// The session can never move again: it took none of a full receive buffer (or
    /// the peer has finished sending), had nothing to send, and set no deadline.
    /// A session that keeps its promise (take input or have output) never gets
    /// here, nor does one with a deadline.
    Stalled,
    /// The connection had already ended (closed, reset or broken by a stream
    /// error), or a run or request on it was dropped part way, leaving the
    /// stream in an unknown state: open a new one.
    Ended,
    /// A request's connection ended and the request gave no outcome, which
    /// [`Request`](crate::session::Request) promises it does.
    NoOutcome,
    /// Nothing moved for the connection's idle timeout: no byte read, no
    /// flush, no kilobyte written nor all the session had to say, besides
    /// the time the session spent on work of its own; the peer silent, or reading
    /// nothing or a byte at a time (either adapter's
    /// `Connection::with_idle_timeout`).
    IdleTimeout,
    /// The session closed, and the peer did not take what it still had to send
    /// within the close timeout (either adapter's
    /// `Connection::with_close_timeout`, [`DEFAULT_CLOSE_TIMEOUT`] unless set):
    /// a kilobyte written, or the rest, counts as progress. Reset the
    /// connection; the peer lacks the end of the answer.
    CloseTimeout,
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "stream error: {e}"),
            Error::WriteZero => f.write_str("the stream accepted no bytes of a write"),
            Error::Stalled => f.write_str(
                "the session neither takes input nor has output, and waits for no deadline",
            ),
            Error::Ended => f.write_str("the connection has already ended"),
            Error::NoOutcome => f.write_str("the request ended without an outcome"),
            Error::IdleTimeout => f.write_str("nothing moved for the idle timeout"),
            Error::CloseTimeout => {
                f.write_str("the peer did not take the last bytes within the close timeout")
            }
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: embedded_io::Error + 'static> embedded_io::Error for Error<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Error::Io(e) => e.kind(),
            Error::WriteZero => embedded_io::ErrorKind::WriteZero,
            Error::Ended => embedded_io::ErrorKind::NotConnected,
            Error::IdleTimeout | Error::CloseTimeout => embedded_io::ErrorKind::TimedOut,
            Error::Stalled | Error::NoOutcome => embedded_io::ErrorKind::Other,
        }
    }
}

/// Why reading or writing a frame over a stream failed. `E` is the stream's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError<E> {
    /// The stream failed.
    Io(E),
    /// The frames broke: an oversize header, or a frame cut short by the peer's
    /// close ([`ReadError::Truncated`]).
    Read(ReadError),
    /// The frame cannot be sent: its body is over the format's maximum.
    Write(WriteError),
    /// The stream's `write` accepted none of a non-empty buffer.
    WriteZero,
}

impl<E: fmt::Display> fmt::Display for FrameError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "stream error: {e}"),
            FrameError::Read(e) => write!(f, "{e}"),
            FrameError::Write(e) => write!(f, "{e}"),
            FrameError::WriteZero => f.write_str("the stream accepted no bytes of a write"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for FrameError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Read(e) => Some(e),
            FrameError::Write(e) => Some(e),
            FrameError::WriteZero => None,
        }
    }
}

impl<E> From<ReadError> for FrameError<E> {
    fn from(e: ReadError) -> Self {
        FrameError::Read(e)
    }
}

impl<E> From<WriteError> for FrameError<E> {
    fn from(e: WriteError) -> Self {
        FrameError::Write(e)
    }
}

/// What a connection over a stream has seen: plain counters, over every session
/// or request it carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamStats {
    /// Reads that returned bytes.
    pub reads: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Writes that took bytes.
    pub writes: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Flushes that completed.
    pub flushes: u64,
    /// Turns that ended with received bytes the session had not taken, offered
    /// again until it took or sent nothing more: back-pressure, the rest waited
    /// in the receive buffer.
    pub held_back: u64,
    /// Deadlines that passed ([`Session::handle_timeout`] calls).
    pub timeouts: u64,
}

impl StreamStats {
    /// Nothing seen yet.
    pub const ZERO: Self = Self {
        reads: 0,
        bytes_in: 0,
        writes: 0,
        bytes_out: 0,
        flushes: 0,
        held_back: 0,
        timeouts: 0,
    };
}

impl fmt::Display for StreamStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes in ({} reads, {} held back), {} bytes out ({} writes, {} flushes), {} timeouts",
            self.bytes_in,
            self.reads,
            self.held_back,
            self.bytes_out,
            self.writes,
            self.flushes,
            self.timeouts,
        )
    }
}

/// The I/O a [`Pump`] wants performed next.
pub(crate) enum Op<'a> {
    /// Write (some of) these bytes.
    Write(&'a [u8]),
    /// Flush what was written: nothing more is to be sent for now.
    Flush,
    /// Read into this (never empty) space.
    Read(&'a mut [u8]),
    /// Nothing can move until the session's deadline.
    Wait,
}

/// The operation a turn decided on; [`Pump::op`] lends the buffers for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Io {
    Write,
    Flush,
    Read,
    Wait,
}

/// What [`Pump::plan`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Perform this, then report with [`Pump::did`].
    Io(Io),
    /// The session stopped; for [`End::Closed`] everything is written and flushed.
    Done(End),
    /// A request is done and everything it sent is out.
    Idle,
}

/// Why [`Pump::turn`] ended a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// See [`Error::IdleTimeout`].
    IdleTimeout,
    /// See [`Error::CloseTimeout`].
    CloseTimeout,
    /// See [`Error::Stalled`].
    Stalled,
}

impl<E> From<Failure> for Error<E> {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::IdleTimeout => Error::IdleTimeout,
            Failure::CloseTimeout => Error::CloseTimeout,
            Failure::Stalled => Error::Stalled,
        }
    }
}

/// What an adapter's drive loop does after a [`Pump::turn`].
pub(crate) enum Turn<O> {
    /// Perform [`Pump::op`] of this, racing the deadline, and report with
    /// [`Pump::did`].
    Perform(Io, Option<Instant>),
    /// Turn again.
    Again,
    /// The drive is over: a request's outcome, or the connection's end.
    Finished(Finish<O>),
    /// The pump ended the connection and the session with it.
    Failed(Failure),
}

/// What came of an [`Op`].
pub(crate) enum Did {
    Wrote(usize),
    Flushed,
    /// `Read(0)`: the peer finished sending.
    Read(usize),
    /// The deadline came first, or the adapter gave way to other tasks.
    Alarm,
}

/// How a connection's drive of one session or request ended.
pub(crate) enum Finish<O> {
    /// The request is done and the connection stays open.
    Done(O),
    /// The session ended the connection (with a request's outcome, if it gave one).
    Ended(End, Option<O>),
}

/// Whether the connection can carry another session or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Open,
    /// A session or request is being driven. A drive dropped part way (its
    /// future cancelled) leaves the connection so: the bytes it had not written
    /// yet, or a part of one, would go ahead of the next request's.
    Driven,
    Ended,
}

/// How long a session that closed has, unless the caller sets another, to get
/// what it still has to send out to a peer that takes nothing: the default of
/// `TcpServer`'s close timeout (`ServerConfig::close_timeout`). 20 s, as lwIP's
/// `TCP_FIN_WAIT_TIMEOUT`: TCP sends a lost segment again after 1, 3, 7 and
/// 15 s, so a peer on a lossy link may take that long to acknowledge a byte.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection may move nothing before a run (a session's, as a
/// server's) ends, unless the caller sets another: the default of
/// `TcpServer`'s idle timeout (`ServerConfig::idle_timeout`), 60 s. A peer that
/// connects and says nothing, or reads nothing, cannot hold a connection (and
/// the task or thread serving it) for longer; a session whose peer may rightly
/// be silent longer sets its own, or `Duration::MAX` for none. A request (a
/// client's) has none unless set: it keeps its own deadlines.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes written that count as progress for the idle timeout even while the
/// session has more to send (`TcpServer` counts a kilobyte acknowledged).
const WRITE_PROGRESS: usize = 1024;

/// What the idle timeout counts as progress: a read, a flush, a kilobyte
/// written, or a write that took all the session had to say (seen at the next
/// turn, when it gives nothing more). A write of the few bytes a slow reader
/// made room for is not, however small the buffers.
#[derive(Clone, Copy, Debug)]
struct Idle {
    /// The timeout in effect for the run or request under way: the caller's,
    /// or the default.
    timeout: Option<Duration>,
    /// `timeout` is the caller's.
    chosen: bool,
    last_progress: Instant,
    /// Bytes written since the last progress.
    written: usize,
    /// The last write took all the session had handed out.
    emptied: bool,
}

impl Idle {
    fn progress(&mut self, now: Instant) {
        self.last_progress = now;
        self.written = 0;
    }
}

/// The close timeout and since when it counts.
#[derive(Clone, Copy, Debug)]
struct Closing {
    timeout: Duration,
    /// The session closed with bytes still to go, at this time or before, and
    /// the last progress since was made then.
    since: Option<Instant>,
}

/// The receive and send buffers of one connection and where each stands.
pub(crate) struct Pump<'b> {
    rx: &'b mut [u8],
    /// Received bytes not yet taken by a session are `rx[rx_start..rx_end]`; they
    /// stay for the next session or request on the connection.
    rx_start: usize,
    rx_end: usize,
    tx: &'b mut [u8],
    /// Bytes the session handed out and the stream has not yet taken.
    tx_start: usize,
    tx_end: usize,
    /// The idle timeout and what counts against it.
    idle: Idle,
    closing: Closing,
    /// Bytes were written since the last flush.
    unflushed: bool,
    flush: Flush,
    /// A read returned 0: the peer finished sending.
    eof: bool,
    /// The current session was told so.
    finished: bool,
    life: Life,
    stats: StreamStats,
}

impl<'b> Pump<'b> {
    pub(crate) const fn new(rx: &'b mut [u8], tx: &'b mut [u8]) -> Self {
        Self {
            rx,
            rx_start: 0,
            rx_end: 0,
            tx,
            tx_start: 0,
            tx_end: 0,
            idle: Idle {
                timeout: Some(DEFAULT_IDLE_TIMEOUT),
                chosen: false,
                last_progress: Instant::ZERO,
                written: 0,
                emptied: false,
            },
            closing: Closing {
                timeout: DEFAULT_CLOSE_TIMEOUT,
                since: None,
            },
            unflushed: false,
            flush: Flush::BeforeRead,
            eof: false,
            finished: false,
            life: Life::Open,
            stats: StreamStats::ZERO,
        }
    }

    /// When to flush from now on.
    pub(crate) fn set_flush(&mut self, flush: Flush) {
        self.flush = flush;
    }

    /// Whether another session or request may run.
    pub(crate) fn is_open(&self) -> bool {
        self.life == Life::Open
    }

    /// `session` (a `request`, or a session run to its end) begins on this
    /// connection, at `now`, and is driven until a turn says it finished or
    /// failed. Unless the caller chose one, a run has the default idle timeout
    /// and a request none.
    pub(crate) fn start<S: Session + ?Sized>(
        &mut self,
        session: &mut S,
        now: Instant,
        request: bool,
    ) {
        if !self.idle.chosen {
            self.idle.timeout = (!request).then_some(DEFAULT_IDLE_TIMEOUT);
        }
        session.start(now);
        self.life = Life::Driven;
        self.finished = false;
        self.idle.progress(now);
        self.idle.emptied = false;
        self.closing.since = None;
    }

    /// Sets the close timeout (see `Connection::with_close_timeout`).
    pub(crate) fn set_close_timeout(&mut self, timeout: Duration) {
        self.closing.timeout = timeout;
    }

    /// When the close timeout passes, once the session closed with bytes still
    /// to go: `timeout` after that, or after the last progress since.
    fn close_at(&self) -> Option<Instant> {
        let closing = &self.closing;
        closing
            .since
            .map(|since| since.saturating_add(closing.timeout))
    }

    /// Sets the idle timeout of the runs and requests to come (see
    /// `Connection::with_idle_timeout`): `Duration::MAX` is none.
    pub(crate) fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle.timeout = (timeout != Duration::MAX).then_some(timeout);
        self.idle.chosen = true;
    }

    /// When the idle timeout passes, if one is set: `timeout` after the last
    /// progress.
    pub(crate) fn idle_at(&self) -> Option<Instant> {
        let idle = &self.idle;
        idle.timeout
            .map(|timeout| idle.last_progress.saturating_add(timeout))
    }

    /// The connection is over at `now` (closed, reset or broken): `session` ends
    /// with it, and nothing more runs on it.
    pub(crate) fn end<S: Session + ?Sized>(&mut self, session: &mut S, now: Instant) {
        session.end(now);
        self.life = Life::Ended;
        self.tx_start = 0;
        self.tx_end = 0;
    }

    pub(crate) fn buffered(&self) -> &[u8] {
        self.rx.get(self.rx_start..self.rx_end).unwrap_or_default()
    }

    pub(crate) fn peer_finished(&self) -> bool {
        self.eof
    }

    pub(crate) fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Gives the session its due: a passed deadline, the bytes held (unless
    /// `input` is false: a request that is done gets no more), the end of the
    /// input, and room for what it wants to send. `clock` reads the time
    /// again, to measure work the session does at once.
    pub(crate) fn advance<S: Session + ?Sized>(
        &mut self,
        session: &mut S,
        now: Instant,
        input: bool,
        clock: &dyn Fn() -> Instant,
    ) {
        // Whether the session gives bytes to send in this turn.
        let mut gave = false;
        if session.poll_timeout().is_some_and(|at| at <= now) {
            self.stats.timeouts = self.stats.timeouts.saturating_add(1);
            session.handle_timeout(now);
            // Due again at once: the session is busy with work of its own
            // (hashing a file before an upload), which no byte from the peer
            // could speed up. The time that work took is not the peer idling;
            // only that time: a session due again that does nothing still
            // idles out.
            if session.poll_timeout().is_some_and(|at| at <= now) {
                let spent = clock().saturating_since(now);
                self.idle.last_progress = self.idle.last_progress.saturating_add(spent);
            }
        }
        // Input the session left is offered again once it took or sent something
        // (taking fewer is back-pressure, relieved by a transmit), before any
        // read: the peer may be waiting for an answer to bytes already here.
        // Every round but the last moves at least one byte, so this ends.
        loop {
            let mut moved = 0usize;
            if input {
                let held = self.rx.get(self.rx_start..self.rx_end).unwrap_or_default();
                if !held.is_empty() {
                    let taken = session.receive(held, now).min(held.len());
                    moved = taken;
                    self.rx_start = self.rx_start.saturating_add(taken);
                    if self.rx_start >= self.rx_end {
                        self.rx_start = 0;
                        self.rx_end = 0;
                    }
                }
                if self.eof && self.rx_start == self.rx_end && !self.finished {
                    self.finished = true;
                    session.receive_finished(now);
                }
            }
            if self.tx_start >= self.tx_end {
                self.tx_start = 0;
                self.tx_end = 0;
            }
            if let Some(space) = self.tx.get_mut(self.tx_end..).filter(|s| !s.is_empty()) {
                let n = session.transmit(space, now).min(space.len());
                gave |= n > 0;
                self.tx_end = self.tx_end.saturating_add(n);
                moved = moved.saturating_add(n);
            }
            if !input || moved == 0 || self.rx_start == self.rx_end {
                break;
            }
        }
        if input && self.rx_start < self.rx_end {
            self.stats.held_back = self.stats.held_back.saturating_add(1);
        }
        if core::mem::take(&mut self.idle.emptied) && !gave {
            self.idle.progress(now);
        }
    }

    /// One turn of an adapter's drive loop, at `now`: ends the connection whose
    /// idle timeout has passed, gives the session its due
    /// ([`advance`](Self::advance)), asks `outcome` for a request's outcome until
    /// it gives one (kept in `done`), and decides what comes next
    /// ([`plan`](Self::plan)).
    pub(crate) fn turn<S, O, F>(
        &mut self,
        session: &mut S,
        now: Instant,
        done: &mut Option<O>,
        outcome: &mut F,
        clock: &dyn Fn() -> Instant,
    ) -> Turn<O>
    where
        S: Session + ?Sized,
        F: FnMut(&mut S) -> Option<O>,
    {
        let idle_at = self.idle_at();
        if idle_at.is_some_and(|at| now >= at) {
            self.end(session, now);
            return Turn::Failed(Failure::IdleTimeout);
        }
        self.advance(session, now, done.is_none(), clock);
        if done.is_none() {
            *done = outcome(session);
        }
        let own = session.poll_timeout();
        let plan = self.plan(session, done.is_none());
        // Closed with bytes still to go (the session may hold no deadline of its
        // own any more): from now on the close timeout counts, and only while
        // they are still to go (a write and flush that finished in time are
        // the end of the connection, whenever this turn comes).
        if matches!(plan, Plan::Io(_)) && session.status() == Status::Close {
            let since = *self.closing.since.get_or_insert(now);
            if now >= since.saturating_add(self.closing.timeout) {
                self.end(session, now);
                return Turn::Failed(Failure::CloseTimeout);
            }
        }
        match plan {
            // A session that can never move again is stalled now, not at the
            // idle timeout: its own deadline is the only one that could move it.
            Plan::Io(Io::Wait) if own.is_none() => {
                self.end(session, now);
                Turn::Failed(Failure::Stalled)
            }
            Plan::Io(io) => Turn::Perform(io, sooner(sooner(own, idle_at), self.close_at())),
            Plan::Done(end) => {
                self.end(session, now);
                let done = done.take().or_else(|| outcome(session));
                Turn::Finished(Finish::Ended(end, done))
            }
            Plan::Idle => match done.take() {
                Some(done) => {
                    self.life = Life::Open;
                    Turn::Finished(Finish::Done(done))
                }
                None => Turn::Again,
            },
        }
    }

    /// The next thing to do, after [`advance`](Self::advance). `input` false: the
    /// request is done, so once its bytes are out the turn is [`Plan::Idle`]
    /// instead of a read.
    pub(crate) fn plan<S: Session + ?Sized>(&mut self, session: &S, input: bool) -> Plan {
        let pending = self.tx_start < self.tx_end;
        let status = session.status();
        match status {
            Status::Abort => return Plan::Done(End::Aborted),
            Status::Close if !pending && !self.unflushed => return Plan::Done(End::Closed),
            Status::Open | Status::Close => {}
        }
        if pending {
            return Plan::Io(Io::Write);
        }
        // Nothing more to send for now: make sure a buffering stream sends it
        // before we wait for the answer, or, if the caller says its stream sends
        // on its own, only before the session's end or a request's outcome.
        if self.unflushed && (self.flush == Flush::BeforeRead || !input || status == Status::Close)
        {
            return Plan::Io(Io::Flush);
        }
        if !input {
            return Plan::Idle;
        }
        if !self.eof {
            if self.rx_end >= self.rx.len() && self.rx_start > 0 {
                // Move the bytes held to the front, to read after them.
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end = self.rx_end.saturating_sub(self.rx_start);
                self.rx_start = 0;
            }
            if self.rx_end < self.rx.len() {
                return Plan::Io(Io::Read);
            }
        }
        Plan::Io(Io::Wait)
    }

    /// The operation `io` with the buffers it works on: the bytes waiting to be
    /// written, or the free space to read into. A write with nothing to write or
    /// a read with no room (which [`plan`](Self::plan) never decides) is a
    /// [`Op::Wait`].
    pub(crate) fn op(&mut self, io: Io) -> Op<'_> {
        match io {
            Io::Write => match self.tx.get(self.tx_start..self.tx_end) {
                Some(bytes) if !bytes.is_empty() => Op::Write(bytes),
                _ => Op::Wait,
            },
            Io::Read => match self.rx.get_mut(self.rx_end..) {
                Some(space) if !space.is_empty() => Op::Read(space),
                _ => Op::Wait,
            },
            Io::Flush => Op::Flush,
            Io::Wait => Op::Wait,
        }
    }

    /// A drain of what the peer still sends begins at `now` (the adapters'
    /// `Connection::drain`): the connection takes no more sessions, and the
    /// bytes held for the next one are dropped. Gives their number and when
    /// the drain must stop (the close timeout from now).
    pub(crate) fn start_drain(&mut self, now: Instant) -> (u64, Instant) {
        self.life = Life::Ended;
        let held = self.rx_end.saturating_sub(self.rx_start);
        self.rx_start = 0;
        self.rx_end = 0;
        (held as u64, now.saturating_add(self.closing.timeout))
    }

    /// The space a drain reads into (and drops): the whole receive buffer;
    /// `None` if it is empty (a connection made against the rule), as no read
    /// could then tell the peer's end.
    pub(crate) fn drain_space(&mut self) -> Option<&mut [u8]> {
        Some(&mut *self.rx).filter(|space| !space.is_empty())
    }

    /// Counts a drain's read of `n` bytes (0: the peer finished), and gives
    /// back how many it dropped.
    pub(crate) fn drained(&mut self, n: usize) -> u64 {
        if n == 0 {
            self.eof = true;
            return 0;
        }
        let n = n.min(self.rx.len()) as u64;
        self.stats.reads = self.stats.reads.saturating_add(1);
        self.stats.bytes_in = self.stats.bytes_in.saturating_add(n);
        n
    }

    /// Records what came of the last [`Op`], at `now`.
    pub(crate) fn did(&mut self, did: Did, now: Instant) {
        match did {
            Did::Wrote(n) => {
                let n = n.min(self.tx_end.saturating_sub(self.tx_start));
                self.tx_start = self.tx_start.saturating_add(n);
                self.unflushed = true;
                self.stats.writes = self.stats.writes.saturating_add(1);
                self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
                let idle = &mut self.idle;
                idle.written = idle.written.saturating_add(n);
                // After the close, a kilobyte written or the rest of what the
                // session gave restarts the close timeout: the flush gets a
                // whole one.
                if (idle.written >= WRITE_PROGRESS || self.tx_start >= self.tx_end)
                    && let Some(since) = &mut self.closing.since
                {
                    *since = now;
                }
                if idle.written >= WRITE_PROGRESS {
                    idle.progress(now);
                } else {
                    // All written: progress if the session has no more to say,
                    // which the next `advance` tells.
                    idle.emptied = self.tx_start >= self.tx_end;
                }
            }
            Did::Flushed => {
                self.unflushed = false;
                self.stats.flushes = self.stats.flushes.saturating_add(1);
                self.idle.progress(now);
            }
            Did::Read(0) => {
                self.eof = true;
                self.idle.progress(now);
            }
            Did::Read(n) => {
                self.idle.progress(now);
                // A stream that says it read more than the space it was lent
                // breaks its trait: only the space can hold bytes.
                let n = n.min(self.rx.len().saturating_sub(self.rx_end));
                self.rx_end = self.rx_end.saturating_add(n);
                self.stats.reads = self.stats.reads.saturating_add(1);
                self.stats.bytes_in = self.stats.bytes_in.saturating_add(n as u64);
            }
            Did::Alarm => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Echo;

    /// A plan with the buffers of its operation.
    enum Step<'a> {
        Io(Op<'a>),
        Done(End),
        Idle,
    }

    impl Pump<'_> {
        /// [`Pump::plan`], then [`Pump::op`] for I/O, as a drive loop does.
        fn next<S: Session + ?Sized>(&mut self, session: &S, input: bool) -> Step<'_> {
            match self.plan(session, input) {
                Plan::Io(io) => Step::Io(self.op(io)),
                Plan::Done(end) => Step::Done(end),
                Plan::Idle => Step::Idle,
            }
        }
    }

    #[test]
    fn bytes_the_session_leaves_stay_for_the_next_turn_and_the_read_goes_after_them() {
        let (mut rx, mut tx) = ([0u8; 8], [0u8; 4]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        let mut echo = Echo::new();
        echo.start(Instant::ZERO);
        let Step::Io(Op::Read(space)) = pump.next(&echo, true) else {
            panic!("an idle connection reads");
        };
        space[..6].copy_from_slice(b"abcdef");
        pump.did(Did::Read(6), Instant::ZERO);
        pump.advance(&mut echo, Instant::ZERO, true, &|| Instant::ZERO);
        assert_eq!(pump.buffered(), b"");
        // The echo's bytes go out four at a time, through the 4-byte send buffer.
        let Step::Io(Op::Write(bytes)) = pump.next(&echo, true) else {
            panic!("a write");
        };
        assert_eq!(bytes, b"abcd");
        pump.did(Did::Wrote(4), Instant::ZERO);
        pump.did(Did::Read(0), Instant::ZERO);
        pump.advance(&mut echo, Instant::ZERO, true, &|| Instant::ZERO);
        let Step::Io(Op::Write(bytes)) = pump.next(&echo, true) else {
            panic!("a write");
        };
        assert_eq!(bytes, b"ef");
        pump.did(Did::Wrote(2), Instant::ZERO);
        pump.advance(&mut echo, Instant::ZERO, true, &|| Instant::ZERO);
        assert!(matches!(pump.next(&echo, true), Step::Io(Op::Flush)));
        pump.did(Did::Flushed, Instant::ZERO);
        assert!(matches!(pump.next(&echo, true), Step::Done(End::Closed)));
        assert_eq!(pump.stats().bytes_out, 6);
    }

    #[test]
    fn a_read_said_longer_than_its_space_counts_only_the_space() {
        let (mut rx, mut tx) = ([0u8; 8], [0u8; 4]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        pump.did(Did::Read(100), Instant::ZERO);
        assert_eq!(pump.buffered().len(), 8);
        assert_eq!((pump.stats().reads, pump.stats().bytes_in), (1, 8));
    }

    /// Takes nothing, sends nothing, and counts its ends.
    #[derive(Default)]
    struct Mute {
        deadline: Option<Instant>,
        ended: usize,
    }

    impl Session for Mute {
        fn start(&mut self, _: Instant) {}
        fn receive(&mut self, _: &[u8], _: Instant) -> usize {
            0
        }
        fn receive_finished(&mut self, _: Instant) {}
        fn transmit(&mut self, _: &mut [u8], _: Instant) -> usize {
            0
        }
        fn status(&self) -> Status {
            Status::Open
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }
        fn end(&mut self, _: Instant) {
            self.ended += 1;
        }
    }

    #[test]
    fn a_turn_reads_then_fails_a_stalled_session_and_an_idle_connection() {
        let never = |_: &mut Mute| None::<()>;
        // A full buffer the session will not take, and no deadline: stalled.
        let (mut rx, mut tx) = ([0u8; 2], [0u8; 2]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        let mut mute = Mute::default();
        pump.start(&mut mute, Instant::ZERO, false);
        let turn = pump.turn(&mut mute, Instant::ZERO, &mut None, &mut { never }, &|| {
            Instant::ZERO
        });
        // Waiting for input, until the default idle timeout at the latest.
        let idle_at = Instant::ZERO.saturating_add(DEFAULT_IDLE_TIMEOUT);
        assert!(matches!(turn, Turn::Perform(Io::Read, Some(at)) if at == idle_at));
        assert!(matches!(pump.op(Io::Read), Op::Read(space) if space.len() == 2));
        pump.did(Did::Read(2), Instant::ZERO);
        let turn = pump.turn(&mut mute, Instant::ZERO, &mut None, &mut { never }, &|| {
            Instant::ZERO
        });
        assert!(matches!(turn, Turn::Failed(Failure::Stalled)));
        assert_eq!(mute.ended, 1);
        assert!(!pump.is_open());

        // The same with a deadline waits for it, until the idle timeout passes.
        let (mut rx, mut tx) = ([0u8; 2], [0u8; 2]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        pump.set_idle_timeout(Duration::from_secs(5));
        let far = Instant::from_secs(60);
        let mut mute = Mute {
            deadline: Some(far),
            ended: 0,
        };
        pump.start(&mut mute, Instant::ZERO, false);
        pump.did(Did::Read(2), Instant::ZERO);
        let turn = pump.turn(&mut mute, Instant::ZERO, &mut None, &mut { never }, &|| {
            Instant::ZERO
        });
        assert!(matches!(turn, Turn::Perform(Io::Wait, Some(at)) if at == Instant::from_secs(5)));
        let turn = pump.turn(
            &mut mute,
            Instant::from_secs(5),
            &mut None,
            &mut { never },
            &|| Instant::ZERO,
        );
        assert!(matches!(turn, Turn::Failed(Failure::IdleTimeout)));
        assert_eq!(mute.ended, 1);
        assert!(!pump.is_open());
    }

    #[test]
    fn a_full_receive_buffer_is_compacted_before_the_next_read() {
        let (mut rx, mut tx) = ([0u8; 4], [0u8; 0]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        /// Takes one byte, then nothing; sends nothing.
        struct Sip;
        impl Session for Sip {
            fn start(&mut self, _: Instant) {}
            fn receive(&mut self, input: &[u8], _: Instant) -> usize {
                usize::from(input == b"wxyz")
            }
            fn receive_finished(&mut self, _: Instant) {}
            fn transmit(&mut self, _: &mut [u8], _: Instant) -> usize {
                0
            }
            fn status(&self) -> Status {
                Status::Open
            }
        }
        let Step::Io(Op::Read(space)) = pump.next(&Sip, true) else {
            panic!("a read");
        };
        space.copy_from_slice(b"wxyz");
        pump.did(Did::Read(4), Instant::ZERO);
        pump.advance(&mut Sip, Instant::ZERO, true, &|| Instant::ZERO);
        assert_eq!(pump.buffered(), b"xyz");
        let Step::Io(Op::Read(space)) = pump.next(&Sip, true) else {
            panic!("a read after the bytes held");
        };
        assert_eq!(space.len(), 1);
        assert_eq!(pump.buffered(), b"xyz");
        assert_eq!(pump.stats().held_back, 1);
    }

    #[test]
    fn input_taken_in_part_is_offered_again_before_the_next_read() {
        /// Takes at most four bytes per offer and digests them in `transmit`;
        /// answers "ok" and closes once it has twelve.
        #[derive(Default)]
        struct Sip {
            held: usize,
            got: usize,
            answered: bool,
            offers: usize,
        }
        impl Session for Sip {
            fn start(&mut self, _: Instant) {}
            fn receive(&mut self, input: &[u8], _: Instant) -> usize {
                self.offers += 1;
                if self.held > 0 {
                    return 0;
                }
                self.held = input.len().min(4);
                self.held
            }
            fn receive_finished(&mut self, _: Instant) {}
            fn transmit(&mut self, space: &mut [u8], _: Instant) -> usize {
                self.got += core::mem::take(&mut self.held);
                if self.got >= 12 && !self.answered && space.len() >= 2 {
                    space[..2].copy_from_slice(b"ok");
                    self.answered = true;
                    return 2;
                }
                0
            }
            fn status(&self) -> Status {
                if self.answered {
                    Status::Close
                } else {
                    Status::Open
                }
            }
        }
        let (mut rx, mut tx) = ([0u8; 16], [0u8; 4]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        let mut sip = Sip::default();
        let Step::Io(Op::Read(space)) = pump.next(&sip, true) else {
            panic!("a read");
        };
        space[..12].copy_from_slice(b"0123456789ab");
        pump.did(Did::Read(12), Instant::ZERO);
        pump.advance(&mut sip, Instant::ZERO, true, &|| Instant::ZERO);
        // The whole request was taken in this turn, and the answer comes before
        // any read: the peer waits for it and sends nothing more.
        assert_eq!((sip.got, pump.buffered()), (12, &b""[..]));
        let Step::Io(Op::Write(bytes)) = pump.next(&sip, true) else {
            panic!("the answer, not a read");
        };
        assert_eq!(bytes, b"ok");
        assert_eq!(pump.stats().held_back, 0);
        // Four bytes an offer, one offer a round, three rounds.
        assert_eq!(sip.offers, 3);
    }

    #[test]
    fn a_session_that_refuses_a_full_buffer_and_sends_nothing_waits() {
        let (mut rx, mut tx) = ([0u8; 2], [0u8; 2]);
        let mut pump = Pump::new(&mut rx, &mut tx);
        let mut mute = Mute::default();
        pump.did(Did::Read(2), Instant::ZERO);
        pump.advance(&mut mute, Instant::ZERO, true, &|| Instant::ZERO);
        assert!(matches!(pump.next(&mute, true), Step::Io(Op::Wait)));
    }
}
