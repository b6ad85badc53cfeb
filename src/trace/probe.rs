//! A session's own events: what it took, what it gave, the frames it delivered
//! and the buffers its adapter reported, recorded for one end of a connection.

use super::{Buffers, Conn, Event, Record, TraceSink};
use crate::session::{Request, Session, Status};
use crate::time::Instant;

/// How full a socket's buffers are, as an adapter sees them at a poll
/// ([`Session::observe`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Levels {
    /// The socket's connection, as its ports (`local` is this end), when the
    /// adapter knows it: a [`Probe`] then records under these ports, so a
    /// server's slot is traced as whichever connection it serves.
    pub conn: Option<Conn>,
    /// Bytes in the send buffer: not yet sent, or sent and not yet acknowledged.
    pub send_queued: u32,
    /// The send buffer's size.
    pub send_capacity: u32,
    /// Bytes received and not yet read.
    pub recv_queued: u32,
    /// The receive buffer's size.
    pub recv_capacity: u32,
}

impl Levels {
    /// The same levels as a [`Buffers`] record of `conn`.
    pub const fn of(self, conn: Conn) -> Buffers {
        Buffers {
            conn,
            send_queued: self.send_queued,
            send_capacity: self.send_capacity,
            recv_queued: self.recv_queued,
            recv_capacity: self.recv_capacity,
        }
    }
}

/// Where a session records its events: `()` records nothing and costs nothing;
/// a [`Probe`] records into a [`TraceSink`] for one end of a connection.
pub trait Recorder {
    /// Whether anything is recorded; when not, no event is even made.
    fn recording(&self) -> bool;

    /// Records the event `make` builds for this end's connection, at `at`.
    fn note(&mut self, at: Instant, make: impl FnOnce(Conn) -> Event);

    /// The latest time of the events noted, for one that happens between
    /// polls (a frame the application takes with no clock at hand).
    fn last(&self) -> Instant {
        Instant::ZERO
    }

    /// `bytes` handed to the stream (into the socket).
    fn sent(&mut self, at: Instant, bytes: usize) {
        if bytes > 0 {
            let bytes = clamp(bytes);
            self.note(at, |conn| Event::Send { conn, bytes });
        }
    }

    /// `bytes` taken out of the stream in one read.
    fn read(&mut self, at: Instant, bytes: usize) {
        if bytes > 0 {
            let bytes = clamp(bytes);
            self.note(at, |conn| Event::Read { conn, bytes });
        }
    }

    /// A whole frame of `body` bytes behind a `header` of that many bytes.
    fn frame(&mut self, at: Instant, body: usize, header: usize) {
        let (body, header) = (clamp(body), u8::try_from(header).unwrap_or(u8::MAX));
        self.note(at, |conn| Event::Frame { conn, body, header });
    }

    /// The socket's buffers, as the adapter saw them.
    fn buffers(&mut self, at: Instant, levels: Levels) {
        self.note(at, |conn| {
            Event::Buffers(levels.of(levels.conn.unwrap_or(conn)))
        });
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// No trace: nothing is made or recorded.
impl Recorder for () {
    #[inline(always)]
    fn recording(&self) -> bool {
        false
    }

    #[inline(always)]
    fn note(&mut self, _at: Instant, _make: impl FnOnce(Conn) -> Event) {}
}

impl<R: Recorder + ?Sized> Recorder for &mut R {
    fn recording(&self) -> bool {
        (**self).recording()
    }

    fn note(&mut self, at: Instant, make: impl FnOnce(Conn) -> Event) {
        (**self).note(at, make);
    }

    fn last(&self) -> Instant {
        (**self).last()
    }

    fn buffers(&mut self, at: Instant, levels: Levels) {
        (**self).buffers(at, levels);
    }
}

/// A sink, and the end of a connection whose events go into it.
///
/// A session does not know its ports (it has no socket): the caller names the
/// connection, as the sink's other records (segments, from a capture) name it.
/// On smoltcp's poll loop the adapter tells the session its socket's ports at
/// each poll ([`Levels::conn`]), and the probe records under those from then on:
/// a server's slot, which serves one connection after another, is traced as
/// whichever it serves (name it `Conn::new(port, 0)` until then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe<K> {
    conn: Conn,
    sink: K,
    last: Instant,
}

impl<K: TraceSink> Probe<K> {
    /// Records into `sink` as the end `conn` (`local` is this end's port).
    pub const fn new(conn: Conn, sink: K) -> Self {
        Self {
            conn,
            sink,
            last: Instant::ZERO,
        }
    }

    /// The connection recorded for.
    pub const fn conn(&self) -> Conn {
        self.conn
    }

    /// The sink.
    pub const fn sink(&self) -> &K {
        &self.sink
    }

    /// The sink, to drain it.
    pub const fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// The sink, taken back.
    pub fn into_sink(self) -> K {
        self.sink
    }
}

impl<K: TraceSink> Recorder for Probe<K> {
    #[inline]
    fn recording(&self) -> bool {
        self.sink.enabled()
    }

    #[inline]
    fn note(&mut self, at: Instant, make: impl FnOnce(Conn) -> Event) {
        if self.sink.enabled() {
            self.last = self.last.max(at);
            self.sink.record(Record::new(at, make(self.conn)));
        }
    }

    fn last(&self) -> Instant {
        self.last
    }

    fn buffers(&mut self, at: Instant, levels: Levels) {
        if let Some(conn) = levels.conn {
            self.conn = conn;
        }
        self.note(at, |conn| Event::Buffers(levels.of(conn)));
    }
}

/// Any session, recording what its adapter did with it: each
/// [`receive`](Session::receive) that took bytes is a read, each
/// [`transmit`](Session::transmit) that gave bytes a send (into the socket), and
/// each [`observe`](Session::observe) a sample of the socket's buffers.
///
/// For the frames of a framed connection as well, trace the [`Framed`] session
/// itself ([`Framed::traced`]), which records all of these and each frame it
/// delivers.
///
/// [`Framed`]: crate::session::Framed
/// [`Framed::traced`]: crate::session::Framed::traced
///
/// ```
/// use smolsock::session::{Echo, Session};
/// use smolsock::time::Instant;
/// use smolsock::trace::{Conn, Probe, Record, Tally, TraceRing, Traced, WhenFull};
///
/// let conn = Conn::new(7, 40000);
/// let ring: TraceRing<16> = TraceRing::new(WhenFull::DropOldest);
/// let mut echo = Traced::new(Echo::new(), Probe::new(conn, ring));
/// let now = Instant::ZERO;
/// echo.start(now);
/// assert_eq!(echo.receive(b"hello", now), 5);
/// let mut space = [0u8; 64];
/// assert_eq!(echo.transmit(&mut space, now), 5);
/// let tally = Tally::of(echo.probe().sink().iter(), conn);
/// assert_eq!((tally.reads, tally.read_bytes, tally.sends, tally.sent_bytes), (1, 5, 1, 5));
/// ```
#[derive(Debug)]
#[must_use = "a session does nothing unless an adapter drives it"]
pub struct Traced<S, P> {
    session: S,
    probe: P,
}

impl<S, P> Traced<S, P> {
    /// `session`, recorded into `probe`.
    pub const fn new(session: S, probe: P) -> Self {
        Self { session, probe }
    }

    /// The session inside.
    pub const fn session(&self) -> &S {
        &self.session
    }

    /// The session inside, to give it work.
    pub const fn session_mut(&mut self) -> &mut S {
        &mut self.session
    }

    /// The probe.
    pub const fn probe(&self) -> &P {
        &self.probe
    }

    /// The probe, to drain its sink.
    pub const fn probe_mut(&mut self) -> &mut P {
        &mut self.probe
    }

    /// The session and the probe, taken back.
    pub fn into_parts(self) -> (S, P) {
        (self.session, self.probe)
    }
}

impl<S: Session, P: Recorder> Session for Traced<S, P> {
    fn start(&mut self, now: Instant) {
        self.session.start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        let n = self.session.receive(input, now);
        self.probe.read(now, n);
        n
    }

    fn receive_finished(&mut self, now: Instant) {
        self.session.receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        let n = self.session.transmit(space, now);
        self.probe.sent(now, n);
        n
    }

    fn wants_transmit(&self) -> bool {
        self.session.wants_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    fn status(&self) -> Status {
        self.session.status()
    }

    fn end(&mut self, now: Instant) {
        self.session.end(now);
    }

    fn no_delay(&self) -> bool {
        self.session.no_delay()
    }

    fn drops_input(&self) -> bool {
        self.session.drops_input()
    }

    fn observe(&mut self, levels: Levels, now: Instant) {
        self.probe.buffers(now, levels);
        self.session.observe(levels, now);
    }
}

impl<S: Request, P: Recorder> Request for Traced<S, P> {
    type Output = S::Output;

    fn outcome(&mut self) -> Option<Self::Output> {
        self.session.outcome()
    }
}
