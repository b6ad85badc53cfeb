//! Length framing as a session: the cure for sticky packets, with no socket.
//!
//! [`Framed`] gathers whole frames in a [`FrameReader`] and hands each to a
//! [`FrameHandler`], which answers through a [`FrameOut`]. Every answer is a whole
//! frame or nothing: it goes straight into the caller's send space as far as it
//! fits there (one copy, as `sendall` from the receive storage) and the rest into
//! the session's own [`OutBuffer`], or, if the queue has no room for that rest, it
//! is refused with [`SendError::WouldBlock`] and the handler is offered the same
//! frame again later. Once taken, a frame's bytes belong to the session: none is
//! written from a body the caller could change in between.
//!
//! [`StreamingEcho`] is the framed echo with no frame storage at all: headers and
//! body pieces go back out as they arrive, so a frame can be larger than any buffer
//! the device has.
//!
//! Both hold the peer to a deadline for each frame it begins: the frame must
//! arrive whole within [`DEFAULT_FRAME_TIMEOUT`] of its first byte, plus a
//! second per [`DEFAULT_FRAME_MIN_RATE`] bytes of it received (`with_frame_timeout`
//! sets both). A peer that trickles a frame, a byte just often enough to keep a
//! pool's idle timeout away, or goes silent inside one, breaks the stream with
//! [`ReadError::Stalled`], counted in [`ReadStats::stalled`], and the session
//! closes; what the peer still sends is read and dropped (counted in
//! [`ReadStats::discarded`]), so that the close ends cleanly. So is what
//! follows a frame whose handler said [`Flow::Close`].
//!
//! While whole frames wait for a `Framed` handler (the application, or the peer
//! not taking the answers), the clock waits, and starts once they are taken: the
//! pool's idle and close deadlines judge a peer that does not read. The
//! streaming echo holds a frame back only while the peer leaves its echo
//! untaken, and its deadline runs on; so does `Framed`'s under the stream
//! adapters ([`asynch`](crate::asynch), [`blocking`](crate::blocking)), which
//! read nothing while a write waits: there a peer that takes none of the
//! answers for the frame timeout, with a frame of its own half sent, is
//! stalled.

use core::fmt;

use super::out::{Full, OutRef};
use super::{OutBuffer, Session, Status};
use crate::time::{Duration, Instant, at_rate};
use crate::trace::{Levels, Recorder};
use crate::wire::body::BodyReader;
use crate::wire::frame::{
    FormatError, FrameReader, HeaderFormat, ReadError, ReadStats, Took, WriteStats,
};

/// How long a peer has for a frame once it has sent its first byte, before the
/// time its bytes earn at [`DEFAULT_FRAME_MIN_RATE`]: as long as a pool lets a
/// connection be idle ([`ServerConfig::DEFAULT`][server-config]),
/// which a frame's bytes may spend waiting for the network's retransmissions.
///
#[cfg_attr(
    feature = "smoltcp",
    doc = "[server-config]: crate::net::ServerConfig::DEFAULT"
)]
#[cfg_attr(not(feature = "smoltcp"), doc = "[server-config]: crate#features")]
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// The bytes of a frame a peer must send per second, on average, once the
/// [`DEFAULT_FRAME_TIMEOUT`] has passed: each 500 bytes of the frame received
/// buy another second.
pub const DEFAULT_FRAME_MIN_RATE: u32 = 500;

/// The deadline of the frame the peer is sending: its first byte's time, plus
/// the timeout, plus a second per `min_rate` bytes of it received since.
#[derive(Clone, Copy, Debug)]
struct FrameClock {
    timeout: Duration,
    min_rate: u32,
    /// Inside a frame, behind whole frames that wait to be taken: the session
    /// holds the stream back, and the frame's clock starts once they are gone.
    paused: bool,
    /// When the frame the peer owes began.
    began: Instant,
    /// Its deadline for the bytes of it received so far, none on a frame
    /// boundary or while paused: worked out once a read, so that a poll only
    /// compares.
    due: Option<Instant>,
}

impl FrameClock {
    const DEFAULT: Self = Self {
        timeout: DEFAULT_FRAME_TIMEOUT,
        min_rate: DEFAULT_FRAME_MIN_RATE,
        paused: false,
        began: Instant::ZERO,
        due: None,
    };

    /// After a read: `held`, the bytes of the unfinished frame received (0 on
    /// a boundary); `waiting`, whole frames wait to be taken; `same_frame`, no
    /// frame ended in the read. A timeout of [`Duration::MAX`] never comes.
    #[inline]
    fn track(&mut self, held: usize, waiting: bool, same_frame: bool, now: Instant) {
        self.paused = waiting && held > 0;
        if held == 0 || waiting || self.timeout == Duration::MAX {
            self.due = None;
            return;
        }
        // A frame begun in this read, or owed again after a pause.
        if !same_frame || self.due.is_none() {
            self.began = now;
        }
        self.run(held);
    }

    fn run(&mut self, held: usize) {
        let earned = at_rate(u64::try_from(held).unwrap_or(u64::MAX), self.min_rate);
        let due = self
            .began
            .saturating_add(self.timeout)
            .saturating_add(earned);
        self.due = Some(due);
    }

    /// When the unfinished frame must be whole; at once (to start its clock)
    /// if it was paused and no frame waits any more.
    fn deadline(&self, waiting: bool) -> Option<Instant> {
        if self.paused {
            (!waiting).then_some(Instant::ZERO)
        } else {
            self.due
        }
    }

    /// At `now`: whether the frame is past its deadline (the clock stops);
    /// a paused frame no longer behind waiting frames starts its clock.
    fn expired(&mut self, held: usize, waiting: bool, now: Instant) -> bool {
        if self.paused {
            if !waiting {
                self.paused = false;
                self.began = now;
                self.run(held);
            }
            false
        } else if self.due.is_some_and(|due| now >= due) {
            self.due = None;
            true
        } else {
            false
        }
    }
}

/// What a [`FrameHandler`] wants after a frame, or after [`FrameHandler::on_idle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Flow {
    /// Carry on. (For [`FrameHandler::on_frame`]: the frame is dealt with.)
    Continue,
    /// Back-pressure: the reply was refused ([`SendError::WouldBlock`]). The same
    /// frame is offered again once the session has sent more.
    Wait,
    /// Close the connection gracefully (FIN once every frame queued is out).
    /// The frames the peer sent after this one, and what it still sends until
    /// its own FIN, are read and dropped (counted in
    /// [`ReadStats::discarded`]).
    Close,
    /// Reset the connection at once (RST): for peers that broke the protocol.
    Abort,
}

impl Flow {
    /// The flow after a reply: done, or wait for room.
    pub fn from_send(result: Result<(), SendError>) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(SendError::WouldBlock) => Flow::Wait,
            Err(SendError::TooLarge { .. }) => Flow::Abort,
            Err(SendError::Closed) => Flow::Close,
        }
    }
}

/// Why [`FrameOut::send`] sent nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The whole frame does not fit yet: nothing of it was sent. Back-pressure;
    /// return [`Flow::Wait`] and the frame is offered again.
    WouldBlock,
    /// The body is over the frame format's maximum: it can never be sent.
    TooLarge {
        /// The body's length.
        len: usize,
        /// The format's maximum.
        max: u32,
    },
    /// The session is closing or closed (its own [`Framed::close`], a
    /// handler's `Close`, the peer's end, or a broken stream): no frame can be
    /// queued any more.
    Closed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::WouldBlock => f.write_str("no room for the frame yet"),
            SendError::TooLarge { len, max } => {
                write!(f, "frame body of {len} bytes is over the maximum {max}")
            }
            SendError::Closed => f.write_str("the framed session is closed for sending"),
        }
    }
}

impl core::error::Error for SendError {}

/// Per-connection behaviour for a length-framed protocol: sees whole frames.
pub trait FrameHandler {
    /// A connection begins; forget the last one.
    fn start(&mut self, _now: Instant) {}

    /// A whole frame arrived: answer through `out`. Return [`Flow::Wait`] when a
    /// reply was refused with [`SendError::WouldBlock`] and nothing of the answer
    /// was sent: the same frame comes back later. A handler that answers one frame
    /// with several must remember which it already sent.
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow;

    /// Called whenever the session may send, no frame waits and
    /// [`wants_to_send`](Self::wants_to_send) says so: for handlers that send on
    /// their own initiative (a download streaming a file).
    fn on_idle(&mut self, _out: &mut FrameOut<'_>) -> Flow {
        Flow::Continue
    }

    /// The stream broke: an oversize header (the connection is then reset), or a
    /// frame cut short by the peer's close (it is then closed).
    fn on_error(&mut self, _error: ReadError) {}

    /// Whether the handler has frames to send of its own (from
    /// [`on_idle`](Self::on_idle)), also after the peer finished. A handler that
    /// sends from `on_idle` says `true` while it has more.
    fn wants_to_send(&self) -> bool {
        false
    }
}

/// No handler: whole frames wait in the session until the application takes them
/// with [`Framed::recv`], and it sends with [`Framed::send`]. This is the framed
/// connection of a client, or of any code that reads frames at its own pace.
impl FrameHandler for () {
    fn on_frame(&mut self, _frame: &[u8], _out: &mut FrameOut<'_>) -> Flow {
        Flow::Wait
    }
}

/// The sending side of a framed connection, as a [`FrameHandler`] sees it.
pub struct FrameOut<'a> {
    format: HeaderFormat,
    queue: OutRef<'a>,
    /// The caller's send space not used yet, while the queue is empty.
    direct: &'a mut [u8],
    direct_used: usize,
    stats: &'a mut WriteStats,
    now: Instant,
    /// The session may still send: not after its own close.
    open: bool,
}

impl FrameOut<'_> {
    /// Sends `body` as one frame: all of it, or nothing
    /// ([`SendError::WouldBlock`]; [`SendError::Closed`] once the application
    /// has closed the session, whose frames the handler is still given).
    ///
    /// While nothing is queued, the frame goes straight into the caller's send
    /// space as far as it fits there, and only the rest is copied into the
    /// session's queue, to follow it.
    pub fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        if !self.open {
            return Err(SendError::Closed);
        }
        let direct_free = self.direct.len().saturating_sub(self.direct_used);
        let total = self.format.header_len().saturating_add(body.len());
        if !self.queue.is_empty() || direct_free == 0 || total <= direct_free {
            return self.send_with(body.len(), |space| space.copy_from_slice(body));
        }
        let header = self.header(body.len())?;
        let rest = total.saturating_sub(direct_free);
        let free = self.queue.free();
        if rest > free {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
            return Err(SendError::WouldBlock);
        }
        // Nothing can fail from here on: the frame is taken whole.
        let start = self.direct_used;
        let header_len = header.as_bytes().len();
        if let Some(space) = self.direct.get_mut(start..) {
            if header.put(space) {
                let tail = space.get_mut(header_len..).unwrap_or_default();
                copy_joined(&[], body, 0, tail);
            } else {
                copy_joined(header.as_bytes(), body, 0, space);
            }
        }
        self.direct_used = self.direct.len();
        let _ = self.queue.append_with(rest, |space| {
            copy_joined(header.as_bytes(), body, direct_free, space);
        });
        self.count(body.len(), total);
        self.stats.split_frames = self.stats.split_frames.saturating_add(1);
        Ok(())
    }

    /// Sends a frame of `len` body bytes that `fill` writes in place (it gets a
    /// slice of exactly `len` bytes): all of it, or nothing.
    pub fn send_with<F: FnOnce(&mut [u8])>(
        &mut self,
        len: usize,
        fill: F,
    ) -> Result<(), SendError> {
        if !self.open {
            return Err(SendError::Closed);
        }
        let header = self.header(len)?;
        let header_len = header.as_bytes().len();
        let total = header_len.saturating_add(len);
        let write = |space: &mut [u8]| {
            let (head, body) = space.split_at_mut(header_len);
            if !header.put(head) {
                head.copy_from_slice(header.as_bytes());
            }
            fill(body);
        };
        let direct_free = self.direct.len().saturating_sub(self.direct_used);
        if self.queue.is_empty() && total <= direct_free {
            let end = self.direct_used.saturating_add(total);
            if let Some(space) = self.direct.get_mut(self.direct_used..end) {
                write(space);
                self.direct_used = end;
            }
        } else if let Err(Full { .. }) = self.queue.append_with(total, write) {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
            return Err(SendError::WouldBlock);
        }
        self.count(len, total);
        Ok(())
    }

    /// The header for a body of `len` bytes, or [`SendError::TooLarge`] (counted).
    fn header(&mut self, len: usize) -> Result<crate::wire::frame::Header, SendError> {
        self.format.header(len).map_err(|_| {
            self.stats.too_large = self.stats.too_large.saturating_add(1);
            SendError::TooLarge {
                len,
                max: self.format.max_len(),
            }
        })
    }

    fn count(&mut self, body_len: usize, total: usize) {
        // Plain adds: these u64 counters start at zero, are added to only here,
        // and never pass the bytes of the frames written in all, each once (the
        // frames: the calls), so none can come near 2^64 (16 EiB written, or as
        // many frames).
        self.stats.frames = self.stats.frames.wrapping_add(1);
        self.stats.body_bytes = self.stats.body_bytes.wrapping_add(body_len as u64);
        self.stats.bytes = self.stats.bytes.wrapping_add(total as u64);
    }

    /// The largest body that [`send`](Self::send) takes now.
    pub fn space(&self) -> usize {
        if !self.open {
            return 0;
        }
        let free = if self.queue.is_empty() {
            self.queue
                .free()
                .max(self.direct.len().saturating_sub(self.direct_used))
        } else {
            self.queue.free()
        };
        free.saturating_sub(self.format.header_len())
            .min(self.max_len())
    }

    /// The largest body a frame may carry.
    pub fn max_len(&self) -> usize {
        self.format.max_len() as usize
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// Fills `dst` with the bytes of `head` followed by `tail`, from byte `skip` of the
/// two joined; stops at the end of either.
fn copy_joined(head: &[u8], tail: &[u8], skip: usize, dst: &mut [u8]) {
    let from_head = head.get(skip..).unwrap_or_default();
    let n = from_head.len().min(dst.len());
    let (first, rest) = dst.split_at_mut(n);
    if n > 0 {
        first.copy_from_slice(from_head.get(..n).unwrap_or_default());
    }
    let tail = tail
        .get(skip.saturating_sub(head.len())..)
        .unwrap_or_default();
    let m = tail.len().min(rest.len());
    if let (Some(dst), Some(src)) = (rest.get_mut(..m), tail.get(..m)) {
        dst.copy_from_slice(src);
    }
}

/// What a framed session has seen: frames and bytes in and out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FramedStats {
    /// The receiving side.
    pub read: ReadStats,
    /// The sending side; `blocked_writes` counts replies refused for lack of
    /// room, `split_frames` frames that went partly straight into the socket's
    /// send space and partly through the queue.
    pub write: WriteStats,
}

impl FramedStats {
    /// Adds `other`'s counters to these (for a pool's totals).
    pub fn accumulate(&mut self, other: &FramedStats) {
        self.read.accumulate(&other.read);
        self.write.accumulate(&other.write);
    }
}

impl fmt::Display for FramedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames in ({} bytes, {} reads, {} coalesced, {} split), {} frames out ({} bytes, {} refused for room)",
            self.read.frames,
            self.read.bytes,
            self.read.reads,
            self.read.coalesced_reads,
            self.read.split_frames,
            self.write.frames,
            self.write.bytes,
            self.write.blocked_writes,
        )
    }
}

/// What a [`Framed`] session is doing with its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// The handler said [`Flow::Close`], or the stream ended: close once the
    /// queue is out.
    Closing,
    Aborted,
}

/// A length-framed connection: frames in through storage `R`, answers out through
/// a queue over storage `T`, a [`FrameHandler`] `H` in between.
///
/// Both storages must hold one frame of the format's maximum
/// ([`HeaderFormat::max_frame_len`]): `R` to gather it, `T` so that any answer can
/// wait there whole while the socket is full.
///
/// ```
/// use smolsock::session::{Framed, FramedEcho, Session, Status};
/// use smolsock::time::Instant;
/// use smolsock::wire::frame::HeaderFormat;
///
/// let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
/// let mut echo = Framed::new(FramedEcho::new(), [0u8; 20], [0u8; 20], format).unwrap();
/// let now = Instant::ZERO;
/// echo.start(now);
/// // Two frames glued together ("sticky"), cut in the middle of the second.
/// let input = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 3, b'y', b'o'];
/// assert_eq!(echo.receive(&input, now), input.len());
/// let mut space = [0u8; 64];
/// let n = echo.transmit(&mut space, now);
/// assert_eq!(&space[..n], &[0, 0, 0, 2, b'h', b'i']);
/// echo.receive(b"u", now);
/// let n = echo.transmit(&mut space, now);
/// assert_eq!(&space[..n], &[0, 0, 0, 3, b'y', b'o', b'u']);
/// echo.receive_finished(now);
/// assert_eq!(echo.status(), Status::Close);
/// ```
///
/// Traced ([`traced`](Self::traced)), it records each read, each send into the
/// socket, each frame it delivers to the handler (or to [`recv`](Self::recv))
/// and the buffers its adapter reports; untraced (`P = ()`, the default) none of
/// that is made, and the session is no larger.
#[must_use = "a session does nothing unless an adapter runs it"]
pub struct Framed<H, R, T, P = ()> {
    handler: H,
    reader: FrameReader<R>,
    out: OutBuffer<T>,
    write: WriteStats,
    phase: Phase,
    peer_done: bool,
    /// The end of the peer's stream was checked for a cut frame.
    end_checked: bool,
    /// The handler closed the connection: what the peer still sends is read
    /// and dropped.
    dropping: bool,
    error: Option<ReadError>,
    clock: FrameClock,
    probe: P,
}

impl<H: FrameHandler, R: AsRef<[u8]> + AsMut<[u8]>, T: AsRef<[u8]> + AsMut<[u8]>> Framed<H, R, T> {
    /// `handler` behind frames in `format`, received into `receive` and queued for
    /// sending in `send`. Fails if either cannot hold a frame of the maximum.
    pub fn new(handler: H, receive: R, send: T, format: HeaderFormat) -> Result<Self, FormatError> {
        let needed = format.max_frame_len();
        let len = send.as_ref().len();
        if len < needed {
            return Err(FormatError::StorageTooSmall {
                capacity: len,
                needed,
            });
        }
        Ok(Self {
            handler,
            reader: FrameReader::new(receive, format)?,
            out: OutBuffer::new(send),
            write: WriteStats::default(),
            phase: Phase::Open,
            peer_done: false,
            end_checked: false,
            dropping: false,
            error: None,
            clock: FrameClock::DEFAULT,
            probe: (),
        })
    }

    /// The same session, recording into `probe` (a [`Probe`](crate::trace::Probe)
    /// naming this end's connection and the sink).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use smolsock::session::{Framed, FramedEcho, Session};
    /// use smolsock::time::Instant;
    /// use smolsock::trace::{Conn, Probe, Tally};
    /// use smolsock::wire::frame::HeaderFormat;
    ///
    /// let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
    /// let conn = Conn::new(7, 40000);
    /// let echo = Framed::new(FramedEcho::new(), [0u8; 20], [0u8; 20], format).unwrap();
    /// let mut echo = echo.traced(Probe::new(conn, Vec::new()));
    /// let now = Instant::ZERO;
    /// echo.start(now);
    /// // Two frames in one read: one read, two frames, the read coalesced.
    /// echo.receive(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 2, b'y', b'o'], now);
    /// let tally = Tally::of(echo.probe().sink().iter(), conn);
    /// assert_eq!((tally.reads, tally.frames, tally.coalesced_reads), (1, 2, 1));
    /// # }
    /// ```
    pub fn traced<P: Recorder>(self, probe: P) -> Framed<H, R, T, P> {
        Framed {
            handler: self.handler,
            reader: self.reader,
            out: self.out,
            write: self.write,
            phase: self.phase,
            peer_done: self.peer_done,
            end_checked: self.end_checked,
            dropping: self.dropping,
            clock: self.clock,
            error: self.error,
            probe,
        }
    }
}

impl<H: FrameHandler, R: AsRef<[u8]> + AsMut<[u8]>, T: AsRef<[u8]> + AsMut<[u8]>, P: Recorder>
    Framed<H, R, T, P>
{
    /// The same session with another deadline for each frame the peer sends:
    /// whole within `timeout` of its first byte, plus a second per `min_rate`
    /// bytes of it received (0 taken as 1), or the stream breaks with
    /// [`ReadError::Stalled`]. [`DEFAULT_FRAME_TIMEOUT`] and
    /// [`DEFAULT_FRAME_MIN_RATE`] unless set; a `timeout` of [`Duration::MAX`]
    /// turns the deadline off (a peer can then hold the connection as long as
    /// it keeps whatever runs the session from timing it out).
    pub const fn with_frame_timeout(mut self, timeout: Duration, min_rate: u32) -> Self {
        self.clock.timeout = timeout;
        self.clock.min_rate = min_rate;
        self
    }

    /// What the session records into.
    pub const fn probe(&self) -> &P {
        &self.probe
    }

    /// What the session records into, to drain it.
    pub const fn probe_mut(&mut self) -> &mut P {
        &mut self.probe
    }

    /// The frame handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The frame handler, to change its settings.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The frame format.
    pub fn format(&self) -> HeaderFormat {
        self.reader.format()
    }

    /// Counters over every connection this session served.
    pub fn stats(&self) -> FramedStats {
        FramedStats {
            read: *self.reader.stats(),
            write: self.write,
        }
    }

    /// The error that broke the current connection's stream, if one did.
    pub fn error(&self) -> Option<ReadError> {
        self.error
    }

    /// Takes the next whole frame that arrived, if there is one (with a handler of
    /// `()`; a real handler is offered each frame first).
    ///
    /// Once the peer has finished and its last frame was taken, the session closes
    /// (or reports a frame cut short, [`error`](Self::error)).
    pub fn recv(&mut self) -> Option<&[u8]> {
        if !self.reader.has_frame() {
            self.check_end();
            return None;
        }
        let header = self.reader.format().header_len();
        let frame = self.reader.next_frame()?;
        // Taken between polls: at the time of the last thing recorded.
        let at = self.probe.last();
        self.probe.frame(at, frame.len(), header);
        Some(frame)
    }

    /// Queues `body` as one frame: all of it, or nothing ([`SendError::WouldBlock`]
    /// while the queue has no room for it; the adapter empties the queue into the
    /// socket). Once the session is closing or closed, [`SendError::Closed`].
    pub fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        self.send_via(body, &mut []).map(|_| ())
    }

    /// Sends `body` as one frame, straight into `space` (a socket's free send
    /// space) as far as it fits there when nothing is queued before it, and the
    /// rest into the queue; all of it, or nothing. Returns the bytes written into
    /// `space`: the caller hands them to the socket, and the adapter sends the
    /// rest from the queue. Traced, the bytes written into `space` are a send.
    /// Refused as [`send`](Self::send) refuses.
    pub fn send_via(&mut self, body: &[u8], space: &mut [u8]) -> Result<usize, SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        let mut out = FrameOut {
            format: self.reader.format(),
            queue: self.out.as_out_ref(),
            direct: space,
            direct_used: 0,
            stats: &mut self.write,
            now: Instant::ZERO,
            open: true,
        };
        out.send(body)?;
        let direct = out.direct_used;
        // The bytes written into `space` go to the socket with no `transmit`: a
        // send, between polls, at the time of the last thing recorded.
        let at = self.probe.last();
        self.probe.sent(at, direct);
        Ok(direct)
    }

    /// Whether every frame sent has been handed to the adapter.
    pub fn is_flushed(&self) -> bool {
        self.out.is_empty()
    }

    /// Closes the sending half once every frame queued is out (`shutdown(SHUT_WR)`):
    /// the session's status becomes [`Status::Close`] then. Frames are never cut.
    /// The receiving half stays open: the frames the peer still sends go to the
    /// handler (or wait for [`recv`](Self::recv)) as before, and a handler's
    /// sends are refused ([`SendError::Closed`]). A handler that holds frames
    /// back ([`Flow::Wait`]) after the close has them offered again on each
    /// transmit only while the connection lasts: the status is
    /// [`Status::Close`] all the while, so an adapter ends the connection once
    /// the peer has finished, and frames still held then are not offered
    /// again (take them before, or use [`recv`](Self::recv): frames left for
    /// it stay in the session after the connection ends).
    ///
    /// This is the half-close of a connection on
    #[cfg_attr(feature = "smoltcp", doc = "[`TcpSession`](crate::net::TcpSession)")]
    #[cfg_attr(not(feature = "smoltcp"), doc = "`TcpSession`")]
    /// or a stream adapter. A pool
    #[cfg_attr(feature = "smoltcp", doc = "([`TcpServer`](crate::net::TcpServer))")]
    #[cfg_attr(not(feature = "smoltcp"), doc = "(`TcpServer`)")]
    /// reads and drops what a peer sends once its slot's session has closed,
    /// so that the slot frees as soon as the peer's FIN is in.
    pub fn close(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::Closing;
        }
    }

    /// Offers the frames held, then the idle hook, writing answers straight into
    /// `direct` while the queue is empty; returns the bytes written there.
    fn serve(&mut self, direct: &mut [u8], now: Instant) -> usize {
        // Until the handler closes (the loop ends there) or aborts.
        let delivers = self.delivers();
        let mut out = FrameOut {
            format: self.reader.format(),
            queue: self.out.as_out_ref(),
            direct,
            direct_used: 0,
            stats: &mut self.write,
            now,
            open: self.phase == Phase::Open,
        };
        let mut closed = false;
        while delivers && self.phase != Phase::Aborted {
            let flow = match self.reader.frame() {
                Some(frame) => {
                    let (len, flow) = (frame.len(), self.handler.on_frame(frame, &mut out));
                    if flow != Flow::Wait {
                        self.probe.frame(now, len, out.format.header_len());
                    }
                    flow
                }
                // Closed by the application: frames only, no idle hook.
                None if !out.open || !self.handler.wants_to_send() => break,
                None => {
                    let flow = self.handler.on_idle(&mut out);
                    if flow == Flow::Continue {
                        break;
                    }
                    flow
                }
            };
            match flow {
                Flow::Continue => self.reader.consume(),
                Flow::Wait => break,
                // The frame (if one was offered) is dealt with, as in `receive`.
                Flow::Close => {
                    self.reader.consume();
                    self.phase = Phase::Closing;
                    closed = true;
                    break;
                }
                Flow::Abort => {
                    self.reader.consume();
                    self.phase = Phase::Aborted;
                }
            }
        }
        let used = out.direct_used;
        if closed {
            self.handler_closed();
        }
        used
    }

    /// Once the peer has finished: a frame it cut short is an error, in any
    /// phase (after our own close too, the answers being read to the end); an
    /// open session closes once every whole frame was answered or taken, unless
    /// the handler has more to say.
    fn check_end(&mut self) {
        if !self.end_pending() || !self.check_finish() {
            return;
        }
        // Open, every whole frame answered or taken (`end_pending` says so).
        if self.phase == Phase::Open && !self.handler.wants_to_send() {
            self.phase = Phase::Closing;
        }
    }

    /// The peer's end, checked once: a frame it cut short is reported, and
    /// `false` given back.
    fn check_finish(&mut self) -> bool {
        if !self.end_checked {
            self.end_checked = true;
            if let Err(error) = self.reader.finish() {
                self.broke(error);
                return false;
            }
        }
        true
    }

    /// Whether whole frames go to the handler: while open, and after the
    /// application's own close (a half-close) until the handler closes, the
    /// stream breaks or the peer's end was dealt with.
    fn delivers(&self) -> bool {
        match self.phase {
            Phase::Open => true,
            Phase::Closing => !self.dropping && self.error.is_none(),
            Phase::Aborted => false,
        }
    }

    /// Whole frames are held that the handler (or [`recv`](Self::recv)) is
    /// still to take.
    fn holds_frames(&self) -> bool {
        self.delivers() && self.reader.has_frame()
    }

    /// Whether [`check_end`](Self::check_end) has something to do. While open,
    /// the end waits for the whole frames held (a handler answers them, and
    /// would not after an error); once closing they are never answered, and a
    /// frame cut after them is reported at once.
    fn end_pending(&self) -> bool {
        self.peer_done
            && match self.phase {
                Phase::Aborted => false,
                // After our own close, as while open: once the whole frames
                // held are taken (a cut frame after them is reported then).
                Phase::Closing => !self.end_checked && !self.holds_frames(),
                Phase::Open => {
                    !self.reader.has_frame() && (!self.end_checked || !self.handler.wants_to_send())
                }
            }
    }

    /// The handler said [`Flow::Close`]: the frames held are never offered,
    /// and what the peer still sends is read and dropped, so that its FIN
    /// reaches the adapter and the close ends cleanly.
    fn handler_closed(&mut self) {
        self.phase = Phase::Closing;
        self.dropping = true;
        self.reader.drop_held();
    }

    fn broke(&mut self, error: ReadError) {
        if self.error.is_none() {
            self.error = Some(error);
            self.handler.on_error(error);
        }
        self.phase = match error {
            // The bytes after an oversize header are not frames.
            ReadError::Oversize { .. } => Phase::Aborted,
            _ if self.phase == Phase::Aborted => Phase::Aborted,
            _ => Phase::Closing,
        };
    }
}

impl<H: FrameHandler, R: AsRef<[u8]> + AsMut<[u8]>, T: AsRef<[u8]> + AsMut<[u8]>, P: Recorder>
    Session for Framed<H, R, T, P>
{
    // Frames queued before the connection started (a client's first request)
    // stay queued: the queue is emptied when a connection ends, not when one begins.
    fn start(&mut self, now: Instant) {
        self.reader.reset();
        self.phase = Phase::Open;
        self.peer_done = false;
        self.end_checked = false;
        self.dropping = false;
        self.error = None;
        self.clock.paused = false;
        self.clock.due = None;
        self.handler.start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        // After the application's close the peer may still send frames, which
        // the handler is still given (a half-close: the answers to what was
        // sent); its own sends are refused.
        if self.phase == Phase::Aborted {
            return 0;
        }
        if self.drops_input() {
            // The stream broke (a stall), or the handler closed: what the peer
            // still sends is no frame anyone takes, and is read and dropped so
            // that the close ends cleanly.
            self.reader.count_discarded(input.len());
            return input.len();
        }
        // Whole frames that lie in the input go to the handler where they are,
        // with no copy; their answers go to the queue. A frame the handler cannot
        // answer yet, and a frame cut by the end of the input, go to the storage.
        let format = self.reader.format();
        let delivering = self.delivers();
        let open = self.phase == Phase::Open;
        let (handler, phase, probe) = (&mut self.handler, &mut self.phase, &mut self.probe);
        let mut out = FrameOut {
            format,
            queue: self.out.as_out_ref(),
            direct: &mut [],
            direct_used: 0,
            stats: &mut self.write,
            now,
            open,
        };
        let stats = self.reader.stats();
        let (before, frames_before) = (stats.bytes, stats.frames);
        let mut closed = false;
        // A frame the handler closes (or aborts) on is the read's last: what
        // follows is no frame anyone takes, and is not scanned.
        let fed = self.reader.feed_in_place_until(input, |frame| {
            if !delivering {
                return Took::No;
            }
            let took = match handler.on_frame(frame, &mut out) {
                Flow::Continue => Took::Yes,
                Flow::Wait => Took::No,
                Flow::Close => {
                    *phase = Phase::Closing;
                    closed = true;
                    Took::Last
                }
                Flow::Abort => {
                    *phase = Phase::Aborted;
                    Took::Last
                }
            };
            if took != Took::No {
                probe.frame(now, frame.len(), format.header_len());
            }
            took
        });
        let mut n = match fed {
            Ok(n) => n,
            Err(error) => {
                self.broke(error);
                taken_before(before, self.reader.stats().bytes, input.len())
            }
        };
        // The trace's read is what the reader took: the rest is dropped.
        self.probe.read(now, n);
        if closed && self.phase == Phase::Closing {
            // What followed the closing frame, not taken.
            self.handler_closed();
            self.reader.count_discarded(input.len().saturating_sub(n));
            n = input.len();
        }
        // Whole frames waiting for the handler hold the stream back: the
        // peer owes nothing while they wait.
        let same_frame = self.reader.stats().frames == frames_before;
        let (held, waiting) = (self.reader.unfinished().len(), self.reader.has_frame());
        self.clock.track(held, waiting, same_frame, now);
        n
    }

    fn receive_finished(&mut self, _now: Instant) {
        self.peer_done = true;
        self.check_end();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Open {
            return None;
        }
        self.clock.deadline(self.reader.has_frame())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (held, waiting) = (self.reader.unfinished().len(), self.reader.has_frame());
        if self.phase == Phase::Open
            && self.clock.expired(held, waiting, now)
            && let Err(error) = self.reader.stall()
        {
            self.broke(error);
        }
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        let queued = self.out.drain_into(space);
        if !self.out.is_empty() {
            self.probe.sent(now, queued);
            return queued;
        }
        let direct = space.get_mut(queued..).unwrap_or_default();
        let mut used = queued.saturating_add(self.serve(direct, now));
        // An answer written in place by its handler (`send_with`) that did not fit
        // whole went to the queue: its head fills what is left of the space.
        used = used.saturating_add(
            self.out
                .drain_into(space.get_mut(used..).unwrap_or_default()),
        );
        self.check_end();
        self.probe.sent(now, used);
        used
    }

    fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
            || match self.phase {
                Phase::Open => self.reader.has_frame() || self.handler.wants_to_send(),
                // Closed by the application: frames still go to the handler.
                Phase::Closing => self.holds_frames(),
                Phase::Aborted => false,
            }
            // The application took the last frame after the peer finished: the
            // next transmit closes (with nothing to send).
            || self.end_pending()
    }

    fn status(&self) -> Status {
        match self.phase {
            Phase::Aborted => Status::Abort,
            Phase::Closing if self.out.is_empty() => Status::Close,
            Phase::Open | Phase::Closing => Status::Open,
        }
    }

    /// What was still queued cannot reach this peer any more. A peer that
    /// had finished (its FIN read) with its end not yet checked, behind frames
    /// a waiting handler held, has it checked now: a frame it cut short is
    /// reported, never lost with the connection.
    fn end(&mut self, _now: Instant) {
        self.out.clear();
        if self.peer_done && self.phase != Phase::Aborted {
            self.check_finish();
        }
    }

    fn no_delay(&self) -> bool {
        true
    }

    fn drops_input(&self) -> bool {
        self.phase == Phase::Closing && (self.dropping || self.error.is_some())
    }

    fn observe(&mut self, levels: Levels, now: Instant) {
        self.probe.buffers(now, levels);
    }
}

impl<H, R, T, P> fmt::Debug for Framed<H, R, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("phase", &self.phase)
            .field("queued", &self.out.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Sends each frame back whole: the framed echo of tcp/9000.
#[derive(Clone, Copy, Debug, Default)]
pub struct FramedEcho {
    /// Frames echoed, over every connection served.
    pub frames: u64,
    /// Streams that broke (oversize, truncated or stalled frames).
    pub errors: u64,
}

impl FramedEcho {
    /// A new framed echo handler.
    pub const fn new() -> Self {
        Self {
            frames: 0,
            errors: 0,
        }
    }
}

impl FrameHandler for FramedEcho {
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
        let flow = Flow::from_send(out.send(frame));
        if flow == Flow::Continue {
            self.frames = self.frames.saturating_add(1);
        }
        flow
    }

    fn on_error(&mut self, error: ReadError) {
        crate::macros::net_info!("framed echo: stream error: {}", error);
        self.errors = self.errors.saturating_add(1);
    }
}

/// The framed echo with no frame storage: each header and body piece goes back out
/// as it arrives, through a queue over storage `T` of any size of at least a
/// header and a byte. Frames up to the format's maximum (64 KiB with a 16-bit
/// header, 4 GiB with a 32-bit one) cost no more RAM than the queue.
///
/// ```
/// use smolsock::session::{Session, StreamingEcho};
/// use smolsock::time::Instant;
/// use smolsock::wire::frame::HeaderFormat;
///
/// // A 16-byte queue echoes a 1000-byte frame.
/// let mut echo = StreamingEcho::new([0u8; 16], HeaderFormat::NETWORK).unwrap();
/// let now = Instant::ZERO;
/// echo.start(now);
/// let mut frame = vec![0, 0, 0x03, 0xe8];
/// frame.extend((0..1000u32).map(|i| i as u8));
/// let (mut fed, mut back) = (0, Vec::new());
/// while back.len() < frame.len() {
///     fed += echo.receive(&frame[fed..], now);
///     let mut space = [0u8; 10];
///     let n = echo.transmit(&mut space, now);
///     back.extend_from_slice(&space[..n]);
/// }
/// assert_eq!(back, frame);
/// ```
///
/// Traced ([`traced`](Self::traced)), it records each read, each send and each
/// frame as its last byte arrives; untraced (`P = ()`, the default) it makes no
/// record and is no larger.
#[derive(Clone, Debug)]
#[must_use = "a session does nothing unless an adapter runs it"]
pub struct StreamingEcho<T, P = ()> {
    reader: BodyReader,
    out: OutBuffer<T>,
    /// The current frame's header went back out already.
    header_echoed: bool,
    phase: Phase,
    peer_done: bool,
    error: Option<ReadError>,
    clock: FrameClock,
    /// Frames echoed whole, over every connection served.
    pub frames: u64,
    /// Streams that broke (oversize, truncated or stalled frames).
    pub errors: u64,
    probe: P,
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StreamingEcho<T> {
    /// An echo of frames in `format` through a queue over `send`. Fails unless
    /// `send` holds a header and at least one body byte.
    pub fn new(send: T, format: HeaderFormat) -> Result<Self, FormatError> {
        let needed = format.header_len().saturating_add(1);
        let len = send.as_ref().len();
        if len < needed {
            return Err(FormatError::StorageTooSmall {
                capacity: len,
                needed,
            });
        }
        Ok(Self {
            reader: BodyReader::new(format),
            out: OutBuffer::new(send),
            header_echoed: false,
            phase: Phase::Open,
            peer_done: false,
            error: None,
            clock: FrameClock::DEFAULT,
            frames: 0,
            errors: 0,
            probe: (),
        })
    }

    /// The same echo, recording into `probe` (a [`Probe`](crate::trace::Probe)
    /// naming this end's connection and the sink).
    pub fn traced<P: Recorder>(self, probe: P) -> StreamingEcho<T, P> {
        StreamingEcho {
            reader: self.reader,
            out: self.out,
            header_echoed: self.header_echoed,
            phase: self.phase,
            peer_done: self.peer_done,
            error: self.error,
            clock: self.clock,
            frames: self.frames,
            errors: self.errors,
            probe,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, P: Recorder> StreamingEcho<T, P> {
    /// The same echo with another deadline for each frame the peer sends, as
    /// [`Framed::with_frame_timeout`] sets it.
    pub const fn with_frame_timeout(mut self, timeout: Duration, min_rate: u32) -> Self {
        self.clock.timeout = timeout;
        self.clock.min_rate = min_rate;
        self
    }

    /// What the echo records into.
    pub const fn probe(&self) -> &P {
        &self.probe
    }

    /// What the echo records into, to drain it.
    pub const fn probe_mut(&mut self) -> &mut P {
        &mut self.probe
    }

    /// The receiving counters over every connection served.
    pub fn stats(&self) -> &ReadStats {
        self.reader.stats()
    }

    /// The error that broke the current connection's stream, if one did.
    pub fn error(&self) -> Option<ReadError> {
        self.error
    }

    fn broke(&mut self, error: ReadError) {
        if self.error.is_none() {
            self.error = Some(error);
            self.errors = self.errors.saturating_add(1);
            crate::macros::net_info!("framed echo: stream error: {}", error);
        }
        self.phase = match error {
            ReadError::Oversize { .. } => Phase::Aborted,
            _ => Phase::Closing,
        };
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, P: Recorder> Session for StreamingEcho<T, P> {
    fn start(&mut self, _now: Instant) {
        self.reader.reset();
        self.out.clear();
        self.header_echoed = false;
        self.phase = Phase::Open;
        self.peer_done = false;
        self.error = None;
        self.clock.paused = false;
        self.clock.due = None;
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        if self.phase != Phase::Open {
            if self.drops_input() {
                // The stream broke (a stall): what the peer still sends is
                // read and dropped so that the close ends cleanly.
                self.reader.count_discarded(input.len());
                return input.len();
            }
            return 0;
        }
        // What goes out is what came in, header for header and byte for byte, but a
        // header goes out with its first body piece, perhaps one read later. Feeding
        // no more than the free room less one header means every piece fits whole.
        let format = self.reader.format();
        let header_len = format.header_len();
        let limit = self.out.free().saturating_sub(header_len);
        let input = input.get(..limit.min(input.len())).unwrap_or_default();
        let (out, header_echoed, frames, probe) = (
            &mut self.out,
            &mut self.header_echoed,
            &mut self.frames,
            &mut self.probe,
        );
        let stats = self.reader.stats();
        let (before, frames_before) = (stats.bytes, stats.frames);
        let fed = self.reader.feed(input, |piece| {
            if !*header_echoed {
                let pushed = format
                    .header(piece.frame_len)
                    .map(|header| out.push(header.as_bytes()));
                if !matches!(pushed, Ok(Ok(()))) {
                    return 0;
                }
                *header_echoed = true;
            }
            if out.push(piece.bytes).is_err() {
                return 0;
            }
            if piece.ends_frame {
                *header_echoed = false;
                *frames = frames.saturating_add(1);
                probe.frame(now, piece.frame_len, header_len);
            }
            piece.bytes.len()
        });
        let n = match fed {
            Ok(n) => n,
            Err(error) => {
                self.broke(error);
                taken_before(before, self.reader.stats().bytes, input.len())
            }
        };
        // An echo the peer does not take holds its frame back too: the
        // deadline runs on.
        let same_frame = self.reader.stats().frames == frames_before;
        let held = self.reader.unfinished_len();
        self.clock.track(held, false, same_frame, now);
        self.probe.read(now, n);
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Open {
            return None;
        }
        // Never paused: the echo holds no whole frame back.
        self.clock.due
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|due| now >= due) {
            self.clock.due = None;
            if let Err(error) = self.reader.stall() {
                self.broke(error);
            }
        }
    }

    fn receive_finished(&mut self, _now: Instant) {
        self.peer_done = true;
        if self.phase == Phase::Open {
            match self.reader.finish() {
                Ok(()) => self.phase = Phase::Closing,
                Err(error) => self.broke(error),
            }
        }
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        let n = self.out.drain_into(space);
        self.probe.sent(now, n);
        n
    }

    fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    fn status(&self) -> Status {
        match self.phase {
            Phase::Aborted => Status::Abort,
            Phase::Closing if self.out.is_empty() => Status::Close,
            Phase::Open | Phase::Closing => Status::Open,
        }
    }

    fn no_delay(&self) -> bool {
        true
    }

    fn drops_input(&self) -> bool {
        self.phase == Phase::Closing && self.error.is_some()
    }

    fn observe(&mut self, levels: Levels, now: Instant) {
        self.probe.buffers(now, levels);
    }
}

/// What a reader that stopped at an error took of an input of `len` bytes (the
/// frames ahead of an oversize header, and the header): its byte count went
/// from `before` to `after`. One copy for every session type.
#[inline(never)]
fn taken_before(before: u64, after: u64, len: usize) -> usize {
    usize::try_from(after.saturating_sub(before)).map_or(len, |n| n.min(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::bounded_while_let;
    use crate::session::testing::{Exchange, run};
    use crate::wire::frame::encode;

    fn frames(bodies: &[&[u8]], format: HeaderFormat) -> Vec<u8> {
        let mut stream = Vec::new();
        for body in bodies {
            let mut buf = vec![0u8; body.len() + 4];
            let n = encode(format, body, &mut buf).unwrap();
            stream.extend_from_slice(&buf[..n]);
        }
        stream
    }

    /// Answers each frame with two frames made afresh on every offer, of a letter
    /// that changes from one offer to the next: the shape of a handler whose
    /// answer changes while it waits for room.
    struct Changing {
        offers: u8,
    }

    impl FrameHandler for Changing {
        fn on_frame(&mut self, _frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
            self.offers += 1;
            let body = [b'A' + self.offers % 26; 8];
            if out.send(&body).is_err() {
                return Flow::Wait;
            }
            Flow::from_send(out.send(&body))
        }
    }

    #[test]
    fn a_reply_that_changes_while_it_waits_goes_out_whole_never_spliced() {
        // The old splice: AAAA half written, then BBBB offered for the same frame,
        // put AABB on the wire. Here a frame is sent whole or not at all, so the
        // wire holds whole frames of one letter each, whatever the send spaces.
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        let mut s = Framed::new(Changing { offers: 0 }, [0u8; 12], [0u8; 12], format).unwrap();
        let now = Instant::ZERO;
        s.start(now);
        assert_eq!(s.receive(&frames(&[b"q", b"r"], format), now), 10);
        let mut wire = Vec::new();
        for space in [3, 5, 1, 7, 2, 64, 64, 64] {
            let mut buf = vec![0u8; space];
            let n = s.transmit(&mut buf, now);
            wire.extend_from_slice(&buf[..n]);
        }
        assert!(s.handler().offers > 2, "some replies had to wait");
        // Whole frames only (this handler re-sends its first frame on every offer,
        // as its documentation warns; a real one remembers what it sent).
        assert!(
            wire.len() >= 4 * 12 && wire.len() % 12 == 0,
            "{} bytes",
            wire.len()
        );
        let mut reader = FrameReader::new([0u8; 12], format).unwrap();
        for frame in wire.chunks(12) {
            reader.feed(frame).unwrap();
            let body = reader.next_frame().unwrap();
            assert!(body.iter().all(|&b| b == body[0]), "spliced frame {body:?}");
        }
    }

    #[test]
    fn send_via_writes_what_fits_and_queues_the_rest_or_takes_nothing() {
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let mut s = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
        let now = Instant::ZERO;
        s.start(now);
        assert!(!s.wants_transmit());
        let mut space = [0u8; 6];
        assert_eq!(s.send_via(b"0123456789", &mut space), Ok(6));
        assert_eq!(&space, &[0, 0, 0, 10, b'0', b'1']);
        assert!(!s.is_flushed() && s.wants_transmit());
        // 8 bytes wait; a frame of 20 does not fit beside them: refused whole.
        let mut more = [0xaa; 4];
        assert_eq!(s.send_via(&[7; 16], &mut more), Err(SendError::WouldBlock));
        assert_eq!(more, [0xaa; 4]);
        assert_eq!(s.stats().write.blocked_writes, 1);
        let mut rest = [0u8; 32];
        let n = s.transmit(&mut rest, now);
        assert_eq!(&rest[..n], b"23456789");
        assert!(s.is_flushed() && !s.wants_transmit());
        assert_eq!(s.stats().write.frames, 1);
        assert_eq!(s.stats().write.bytes, 14);
        // Six bytes went straight out, eight through the queue: one split frame.
        assert_eq!(s.stats().write.split_frames, 1);
        // A frame that fits whole is no split.
        let mut whole = [0u8; 8];
        assert_eq!(s.send_via(b"ok", &mut whole), Ok(6));
        assert_eq!(s.stats().write.split_frames, 1);
    }

    /// One poll of an adapter: a transmit only while the session wants one.
    fn poll(s: &mut Framed<(), [u8; 20], [u8; 20]>, now: Instant) -> Vec<u8> {
        let mut space = [0u8; 64];
        let n = if s.wants_transmit() {
            s.transmit(&mut space, now)
        } else {
            0
        };
        space[..n].to_vec()
    }

    #[test]
    fn a_plain_connection_closes_once_the_frame_that_came_with_the_fin_is_taken() {
        // The server's answer and its FIN arrive in one poll; the application takes
        // the answer after that poll. Its taking it must lead to the close, though
        // nothing is left to send, or the connection sits in CLOSE-WAIT.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        for take_until_none in [false, true] {
            let mut s = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
            s.start(now);
            assert_eq!(s.receive(&frames(&[b"hi"], format), now), 6);
            s.receive_finished(now);
            assert_eq!(poll(&mut s, now), b"");
            assert_eq!(s.status(), Status::Open, "the answer is not taken yet");
            assert_eq!(s.recv(), Some(&b"hi"[..]));
            if take_until_none {
                // The usual `while let Some(frame) = recv()`: its last call closes.
                assert_eq!(s.recv(), None);
                assert_eq!(s.status(), Status::Close);
            }
            // The next poll of the adapter closes in any case.
            assert!(s.wants_transmit() || take_until_none);
            assert_eq!(poll(&mut s, now), b"");
            assert_eq!(s.status(), Status::Close);
            assert!(!s.wants_transmit(), "nothing more to do");
            assert_eq!(s.error(), None);
        }
    }

    /// Answers the first frame and closes.
    struct AnswerAndClose;

    impl FrameHandler for AnswerAndClose {
        fn on_frame(&mut self, _frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
            match out.send(b"bye") {
                Ok(()) => Flow::Close,
                Err(_) => Flow::Wait,
            }
        }
    }

    #[test]
    fn after_a_handlers_close_what_the_peer_sent_and_still_sends_is_read_and_dropped() {
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        for one_read in [true, false] {
            let mut s = Framed::new(AnswerAndClose, [0u8; 40], [0u8; 20], format).unwrap();
            s.start(now);
            // A frame, answered with a close; another the handler will never
            // see; then one cut by the peer's FIN: 13 bytes after the first
            // frame, whether they come with it or after it.
            let mut input = frames(&[b"hi", b"more"], format);
            input.extend_from_slice(&[0, 0, 0, 5, b'x']);
            if one_read {
                assert_eq!(s.receive(&input, now), input.len());
            } else {
                assert_eq!(s.receive(&input[..3], now), 3);
                assert_eq!(s.receive(&input[3..], now), input.len() - 3);
            }
            s.receive_finished(now);
            let mut space = [0u8; 64];
            let n = s.transmit(&mut space, now);
            assert_eq!(&space[..n], &[0, 0, 0, 3, b'b', b'y', b'e']);
            // One frame found and taken (6 bytes), 13 bytes dropped, however
            // the reads split them.
            let read = s.stats().read;
            assert_eq!(
                (read.frames, read.bytes, read.discarded),
                (1, 6, 13),
                "{read:?}"
            );
            // Nothing is a frame any more: nothing is cut.
            assert_eq!((s.error(), read.truncated), (None, 0));
            assert_eq!(s.status(), Status::Close);
            assert!(!s.wants_transmit(), "nothing more to do");
            // And whatever else comes is taken.
            assert_eq!(s.receive(&[1, 2, 3], now), 3);
            assert_eq!(s.stats().read.discarded, 16);
        }
    }

    #[test]
    fn a_traced_close_records_what_its_reader_counts_however_the_reads_split() {
        // The closing frame "hi" and a 7-byte frame after it, in one read or
        // in two. The reader counts 6 bytes read either way, no coalesced
        // read, 7 dropped; the trace's tally should say what the reader counts.
        use crate::trace::{Conn, Probe, Tally};
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let conn = Conn::new(7, 40000);
        let now = Instant::ZERO;
        let mut input = frames(&[b"hi"], format);
        input.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
        for one_read in [false, true] {
            let mut s = Framed::new(AnswerAndClose, [0u8; 40], [0u8; 20], format)
                .unwrap()
                .traced(Probe::new(conn, Vec::new()));
            s.start(now);
            if one_read {
                assert_eq!(s.receive(&input, now), input.len());
            } else {
                assert_eq!(s.receive(&input[..6], now), 6);
                assert_eq!(s.receive(&input[6..], now), input.len() - 6);
            }
            let read = s.stats().read;
            assert_eq!((read.bytes, read.discarded), (6, 7), "one_read={one_read}");
            let tally = Tally::of(s.probe().sink().iter(), conn);
            assert_eq!(
                (tally.reads, tally.read_bytes, tally.coalesced_reads),
                (read.reads, read.bytes, read.coalesced_reads),
                "one_read={one_read}"
            );
        }
    }

    #[test]
    fn an_oversize_header_after_a_handlers_close_is_dropped_not_an_error() {
        // Whether it comes in the closing frame's read or after it, what
        // follows the close is never scanned: the close stays graceful.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        for one_read in [false, true] {
            let mut s = Framed::new(AnswerAndClose, [0u8; 40], [0u8; 20], format).unwrap();
            s.start(now);
            let mut input = frames(&[b"hi"], format);
            input.extend_from_slice(&[0, 0, 1, 0, b'x']); // 256 > 16: oversize
            if one_read {
                assert_eq!(s.receive(&input, now), input.len());
            } else {
                assert_eq!(s.receive(&input[..6], now), 6);
                assert_eq!(s.receive(&input[6..], now), input.len() - 6);
            }
            assert!(s.drops_input(), "one_read={one_read}");
            let mut space = [0u8; 64];
            let n = s.transmit(&mut space, now);
            assert_eq!(
                &space[..n],
                &[0, 0, 0, 3, b'b', b'y', b'e'],
                "one_read={one_read}"
            );
            assert_eq!(s.status(), Status::Close, "one_read={one_read}");
            let read = s.stats().read;
            assert_eq!(
                (read.oversize, read.discarded),
                (0, 5),
                "one_read={one_read}"
            );
            assert_eq!(s.error(), None);
        }
    }

    #[test]
    fn after_our_own_close_the_frames_still_come_by_recv_also_after_the_peers_end() {
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        let mut s = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
        s.start(now);
        s.close();
        let input = frames(&[b"ok", b"go"], format);
        assert_eq!(s.receive(&input, now), input.len());
        s.receive_finished(now);
        let mut got = Vec::new();
        bounded_while_let!(Some(f) = s.recv() => { got.push(f.to_vec()); });
        assert_eq!(got, [b"ok".to_vec(), b"go".to_vec()]);
        assert_eq!(s.status(), Status::Close);
    }

    /// Keeps every frame it is given and answers each, keeping what the send
    /// said; waits (back-pressure of its own) while `waiting`.
    struct Answering {
        frames: Vec<Vec<u8>>,
        sends: Vec<Result<(), SendError>>,
        waiting: bool,
    }

    /// A started session with an `Answering` handler.
    fn answering(
        format: HeaderFormat,
        waiting: bool,
        now: Instant,
    ) -> Framed<Answering, [u8; 20], [u8; 20]> {
        let handler = Answering {
            frames: Vec::new(),
            sends: Vec::new(),
            waiting,
        };
        let mut s = Framed::new(handler, [0u8; 20], [0u8; 20], format).unwrap();
        s.start(now);
        s
    }

    impl FrameHandler for Answering {
        fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
            if self.waiting {
                return Flow::Wait;
            }
            self.frames.push(frame.to_vec());
            self.sends.push(out.send(b"re"));
            Flow::Continue
        }
    }

    #[test]
    fn after_our_own_close_the_handler_is_still_given_the_peers_frames_and_cannot_answer() {
        // shutdown(SHUT_WR), then the answers read to the end, through a handler:
        // each frame reaches it, however the reads split, also after the peer's
        // end, and its sends are refused as closed; nothing is dropped.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        let input = frames(&[b"ok", b"go", b"end"], format);
        for cut in 0..=input.len() {
            for waiting in [false, true] {
                let mut s = answering(format, waiting, now);
                s.close();
                let (first, second) = input.split_at(cut);
                assert_eq!(s.receive(first, now), first.len());
                assert_eq!(s.receive(second, now), second.len());
                s.receive_finished(now);
                // A handler that waited takes the frames held once it can.
                s.handler_mut().waiting = false;
                let mut space = [0u8; 64];
                for _ in 0..4 {
                    if s.wants_transmit() {
                        assert_eq!(s.transmit(&mut space, now), 0, "nothing goes out");
                    }
                }
                let what = format!("cut at {cut}, waiting {waiting}");
                let handler = s.handler();
                assert_eq!(
                    handler.frames,
                    [b"ok".to_vec(), b"go".to_vec(), b"end".to_vec()],
                    "{what}"
                );
                assert_eq!(handler.sends, [Err(SendError::Closed); 3], "{what}");
                assert_eq!(s.stats().read.discarded, 0, "{what}");
                assert!(!s.wants_transmit(), "{what}");
                assert_eq!(s.status(), Status::Close, "{what}");
            }
        }
    }

    #[test]
    fn after_our_own_close_frames_held_before_a_cut_one_still_reach_the_handler() {
        // The peer ends inside a frame, after whole ones a waiting handler
        // holds: they are given first, then the cut is reported, as while open.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        for close_first in [false, true] {
            let mut s = answering(format, true, now);
            if close_first {
                s.close();
            }
            let mut input = frames(&[b"ok", b"go"], format);
            input.extend_from_slice(&[0, 0, 0, 5, b'x']);
            assert_eq!(s.receive(&input, now), input.len());
            s.receive_finished(now);
            s.handler_mut().waiting = false;
            let mut space = [0u8; 64];
            for _ in 0..4 {
                if s.wants_transmit() {
                    s.transmit(&mut space, now);
                }
            }
            let what = format!("close first {close_first}");
            assert_eq!(
                s.handler().frames,
                [b"ok".to_vec(), b"go".to_vec()],
                "{what}"
            );
            assert!(
                matches!(s.error(), Some(ReadError::Truncated { .. })),
                "{what}: {:?}",
                s.error()
            );
        }
    }

    #[test]
    fn a_frame_cut_behind_frames_a_waiting_handler_holds_is_reported_when_the_connection_ends() {
        // After our close the status is Close, so an adapter ends the
        // connection at the peer's FIN even while the handler still waits:
        // the cut frame is reported then, once.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        let mut s = answering(format, true, now);
        s.close();
        let mut input = frames(&[b"ok", b"go"], format);
        input.extend_from_slice(&[0, 0, 0, 5, b'x']);
        assert_eq!(s.receive(&input, now), input.len());
        s.receive_finished(now);
        assert_eq!(s.status(), Status::Close);
        assert_eq!(s.error(), None, "not before the held frames are offered");
        s.end(now);
        assert!(
            matches!(s.error(), Some(ReadError::Truncated { .. })),
            "{:?}",
            s.error()
        );
        s.end(now);
        assert_eq!(s.stats().read.truncated, 1);
    }

    #[test]
    fn a_frame_cut_by_the_peer_after_our_own_close_is_an_error_counted_once() {
        // shutdown(SHUT_WR), then the answers read to the end: a cut answer is
        // reported as after no close, and counted once however often polled.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        for close_first in [false, true] {
            for frame_held in [false, true] {
                let mut s = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
                s.start(now);
                if close_first {
                    s.close();
                }
                let mut input = if frame_held {
                    frames(&[b"ok"], format)
                } else {
                    Vec::new()
                };
                input.extend_from_slice(&[0, 0, 0, 5, b'x']);
                assert_eq!(s.receive(&input, now), input.len());
                s.receive_finished(now);
                for _ in 0..3 {
                    let _ = poll(&mut s, now);
                    bounded_while_let!(Some(_) = s.recv() => {});
                }
                let what = format!("close first {close_first}, a frame held {frame_held}");
                assert!(
                    matches!(
                        s.error(),
                        Some(ReadError::Truncated {
                            received: 5,
                            expected: Some(9)
                        })
                    ),
                    "{what}: {:?}",
                    s.error()
                );
                assert_eq!(s.stats().read.truncated, 1, "{what}");
                assert_eq!(s.status(), Status::Close, "{what}");
            }
        }
    }

    #[test]
    fn a_plain_connection_gets_every_frame_whole_through_any_cut() {
        // No handler: every frame waits in the storage for `recv`, also those that
        // lie whole in the input and those completed from a frame held in part.
        let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
        let bodies: Vec<Vec<u8>> = (0..60usize)
            .map(|i| vec![i as u8; (i * 137) % 8000])
            .collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let stream = frames(&refs, format);
        for cut in [1, 536, 1460, 2920, 9000] {
            let mut s = Framed::new((), vec![0u8; 8196], vec![0u8; 8196], format).unwrap();
            s.start(Instant::ZERO);
            let (mut got, mut pos) = (Vec::new(), 0);
            for _ in 0..stream.len() {
                let end = (pos + cut).min(stream.len());
                pos += s.receive(&stream[pos..end], Instant::ZERO);
                bounded_while_let!(Some(frame) = s.recv() => {
                    got.push(frame.to_vec());
                });
                if pos == stream.len() {
                    break;
                }
            }
            assert_eq!(got, bodies, "cut {cut}");
            assert_eq!(s.stats().read.frames, 60);
        }
    }

    #[test]
    fn framed_echo_returns_every_frame_through_any_split_and_space() {
        let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
        let bodies: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; (i as usize * 7) % 101]).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let stream = frames(&refs, format);
        for (cut, space) in [(1, 1), (3, 200), (104, 104), (1000, 7), (5000, 5000)] {
            let mut s = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
            let Exchange { output, status, .. } = run(&mut s, &stream, cut, space);
            assert_eq!(output, stream, "cut {cut} space {space}");
            assert_eq!(status, Status::Close);
            assert_eq!(s.handler().frames, 40);
        }
    }

    #[test]
    fn an_oversize_header_aborts_and_is_counted() {
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        let mut s = Framed::new(FramedEcho::new(), [0u8; 12], [0u8; 12], format).unwrap();
        s.start(Instant::ZERO);
        s.receive(&[0, 0, 1, 0, 1, 2], Instant::ZERO);
        assert_eq!(s.status(), Status::Abort);
        assert_eq!(s.handler().errors, 1);
        assert!(matches!(
            s.error(),
            Some(ReadError::Oversize { len: 256, .. })
        ));
    }

    #[test]
    fn a_read_that_ends_in_an_oversize_header_says_what_it_took() {
        // A whole frame, then a header over the maximum, in one read: both
        // sessions took all ten bytes, and say so to the adapter and the trace.
        use crate::trace::{Conn, Probe, Tally};
        let format = HeaderFormat::NETWORK.with_max_len(10).unwrap();
        let conn = Conn::new(7, 40000);
        let input = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 11];
        let mut echo = StreamingEcho::new([0u8; 64], format)
            .unwrap()
            .traced(Probe::new(conn, Vec::new()));
        echo.start(Instant::ZERO);
        assert_eq!(echo.receive(&input, Instant::ZERO), input.len());
        let tally = Tally::of(echo.probe().sink().iter(), conn);
        assert_eq!((tally.read_bytes, echo.stats().bytes), (10, 10));
        assert_eq!(echo.status(), Status::Abort);
        let mut framed = Framed::new(FramedEcho::new(), [0u8; 14], [0u8; 14], format)
            .unwrap()
            .traced(Probe::new(conn, Vec::new()));
        framed.start(Instant::ZERO);
        assert_eq!(framed.receive(&input, Instant::ZERO), input.len());
        let tally = Tally::of(framed.probe().sink().iter(), conn);
        assert_eq!((tally.read_bytes, framed.stats().read.bytes), (10, 10));
        assert_eq!(framed.status(), Status::Abort);
    }

    #[test]
    fn a_frame_cut_by_the_close_is_reported_and_the_rest_still_answered() {
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        let mut s = Framed::new(FramedEcho::new(), [0u8; 24], [0u8; 12], format).unwrap();
        let mut input = frames(&[b"ok"], format);
        input.extend_from_slice(&[0, 0, 0, 5, b'x']);
        let Exchange { output, status, .. } = run(&mut s, &input, 100, 100);
        assert_eq!(output, frames(&[b"ok"], format));
        assert_eq!(status, Status::Close);
        assert!(matches!(s.error(), Some(ReadError::Truncated { .. })));
    }

    /// Waits on its first offer, then says `Close` (the frame dealt with),
    /// counting the offers.
    struct WaitThenClose {
        offers: u32,
    }

    impl FrameHandler for WaitThenClose {
        fn on_frame(&mut self, _frame: &[u8], _out: &mut FrameOut<'_>) -> Flow {
            self.offers += 1;
            if self.offers == 1 {
                Flow::Wait
            } else {
                Flow::Close
            }
        }
    }

    #[test]
    fn a_frame_closed_on_from_the_storage_is_not_delivered_again() {
        // The same frame, answered `Close` where it lies in the input, is
        // consumed (recv gives nothing more); answered `Close` from the storage
        // (after a `Wait`), it must be consumed the same way, not handed out a
        // second time by `recv`.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        let input = frames(&[b"bye"], format);
        // In place: Close on the first offer.
        let mut s = Framed::new(WaitThenClose { offers: 1 }, [0u8; 20], [0u8; 20], format).unwrap();
        s.start(now);
        assert_eq!(s.receive(&input, now), input.len());
        assert_eq!(s.recv(), None, "in place: the frame closed on is gone");
        // From the storage: Wait, then Close at the next transmit.
        let mut s = Framed::new(WaitThenClose { offers: 0 }, [0u8; 20], [0u8; 20], format).unwrap();
        s.start(now);
        assert_eq!(s.receive(&input, now), input.len());
        let mut space = [0u8; 64];
        assert_eq!(s.transmit(&mut space, now), 0);
        assert_eq!(s.handler().offers, 2);
        assert_eq!(
            s.recv(),
            None,
            "from the storage: the frame closed on came back"
        );
    }

    #[test]
    fn a_send_after_close_is_refused_as_closed_not_as_back_pressure() {
        // `WouldBlock` says "no room yet, try again": after `close` (or once the
        // peer finished and its last frame was taken) the frame can never go,
        // however empty the queue, so a caller retrying on `WouldBlock` spins.
        let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
        let now = Instant::ZERO;
        let mut s = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
        s.start(now);
        s.close();
        assert!(s.is_flushed());
        assert_eq!(s.status(), Status::Close);
        let refused = s.send(b"late");
        assert!(refused.is_err(), "nothing may be queued after the close");
        assert_ne!(
            refused,
            Err(SendError::WouldBlock),
            "a closed session says it is closed"
        );
    }

    #[test]
    fn storage_smaller_than_a_frame_is_refused() {
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        assert!(Framed::new(FramedEcho::new(), [0u8; 12], [0u8; 11], format).is_err());
        assert!(Framed::new(FramedEcho::new(), [0u8; 11], [0u8; 12], format).is_err());
        assert!(StreamingEcho::new([0u8; 4], HeaderFormat::NETWORK).is_err());
    }

    #[test]
    fn streaming_echo_returns_frames_larger_than_its_queue() {
        let format = HeaderFormat::NETWORK;
        let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        let bodies: [&[u8]; 4] = [b"", &big, b"x", b""];
        let stream = frames(&bodies, format);
        for (cut, space) in [(1, 1), (1500, 1024), (9, 5), (100_000, 100_000)] {
            let mut s = StreamingEcho::new([0u8; 5], format).unwrap();
            let Exchange { output, status, .. } = run(&mut s, &stream, cut, space);
            assert!(output == stream, "cut {cut} space {space}");
            assert_eq!(status, Status::Close);
            assert_eq!(s.frames, 4);
        }
    }

    #[test]
    fn streaming_echo_aborts_on_oversize() {
        let format = HeaderFormat::NETWORK.with_max_len(10).unwrap();
        let mut s = StreamingEcho::new([0u8; 8], format).unwrap();
        s.start(Instant::ZERO);
        s.receive(&[0, 0, 0, 11], Instant::ZERO);
        assert_eq!(s.status(), Status::Abort);
        assert_eq!(s.errors, 1);
    }

    /// Feeds `pieces` (each at its time in milliseconds) to `s`, sending its
    /// answers away at once, and fires its deadline as a runner would, up to
    /// `until` ms: the time the stream stalled, if it did.
    fn stalls_at<S: Session>(s: &mut S, pieces: &[(u64, &[u8])], until: u64) -> Option<u64> {
        let mut space = [0u8; 4096];
        s.start(Instant::ZERO);
        let fire = |s: &mut S, before: u64| {
            let due = s
                .poll_timeout()
                .filter(|due| due.total_millis() <= before)?;
            s.handle_timeout(due);
            assert_ne!(s.status(), Status::Open, "a deadline passed, nothing done");
            Some(due.total_millis())
        };
        for &(at, bytes) in pieces {
            if let Some(stalled) = fire(s, at) {
                return Some(stalled);
            }
            let now = Instant::from_millis(at);
            let mut rest = bytes;
            // Each round takes a byte at least, its answer sent away.
            for _ in 0..=bytes.len() {
                let n = s.receive(rest, now);
                bounded_while_let!(1.. = s.transmit(&mut space, now) => {});
                rest = &rest[n..];
            }
            assert!(rest.is_empty(), "at {at} ms");
        }
        fire(s, until)
    }

    /// A 2000-byte body under the network header, cut into `piece`-byte reads
    /// `gap` ms apart, the first at 1 s.
    fn trickled(piece: usize, gap: u64) -> Vec<(u64, Vec<u8>)> {
        let stream = frames(&[&[7u8; 2000]], HeaderFormat::NETWORK);
        (1000..)
            .step_by(gap as usize)
            .zip(stream.chunks(piece).map(<[u8]>::to_vec))
            .collect()
    }

    fn framed_echo() -> Framed<FramedEcho, [u8; 2004], [u8; 2004]> {
        let format = HeaderFormat::NETWORK.with_max_len(2000).unwrap();
        Framed::new(FramedEcho::new(), [0u8; 2004], [0u8; 2004], format).unwrap()
    }

    fn streaming_echo() -> StreamingEcho<[u8; 64]> {
        StreamingEcho::new([0u8; 64], HeaderFormat::NETWORK.with_max_len(2000).unwrap()).unwrap()
    }

    #[test]
    fn a_frame_trickled_slower_than_the_minimum_rate_stalls() {
        // 100 bytes every 5 s: the first 60 s are free, then each 100 bytes
        // buy 200 ms; 20 B/s falls behind at once.
        let pieces = trickled(100, 5000);
        let pieces: Vec<(u64, &[u8])> = pieces.iter().map(|(at, b)| (*at, &b[..])).collect();
        let mut framed = framed_echo();
        let mut streaming = streaming_echo();
        for stalled in [
            stalls_at(&mut framed, &pieces, 60_000),
            stalls_at(&mut streaming, &pieces, 60_000),
        ] {
            // Begun at 1 s; by 61 s, 1300 bytes received: 1 + 60 + 2.6 s.
            assert_eq!(stalled, Some(63_600));
        }
        let expected = Some(ReadError::Stalled {
            received: 1300,
            expected: Some(2004),
        });
        assert_eq!((framed.error(), streaming.error()), (expected, expected));
        assert_eq!(
            (framed.stats().read.stalled, streaming.stats().stalled),
            (1, 1)
        );
        assert_eq!((framed.handler().errors, streaming.errors), (1, 1));
        assert_eq!(
            (framed.status(), streaming.status()),
            (Status::Close, Status::Close)
        );
    }

    #[test]
    fn a_frame_sent_slowly_but_above_the_minimum_rate_arrives() {
        // 1000 bytes every 1.9 s (526 B/s), and the frame's 2004 bytes arrive.
        let pieces = trickled(1000, 1900);
        let pieces: Vec<(u64, &[u8])> = pieces.iter().map(|(at, b)| (*at, &b[..])).collect();
        let mut framed = framed_echo();
        let mut streaming = streaming_echo();
        assert_eq!(stalls_at(&mut framed, &pieces, 600_000), None);
        assert_eq!(stalls_at(&mut streaming, &pieces, 600_000), None);
        assert_eq!((framed.handler().frames, streaming.frames), (1, 1));
        // Between frames the peer owes nothing: no deadline.
        assert_eq!(
            (framed.poll_timeout(), streaming.poll_timeout()),
            (None, None)
        );
    }

    #[test]
    fn a_peer_silent_inside_a_header_stalls_at_the_frame_timeout() {
        // A whole frame, then half a header at 2 s: 60 s, and 4 ms for its
        // two bytes.
        let pieces: [(u64, &[u8]); 2] = [(1000, &[0, 0, 0, 2, b'h', b'i']), (2000, &[0, 0])];
        let mut framed = framed_echo();
        let mut streaming = streaming_echo();
        assert_eq!(stalls_at(&mut framed, &pieces, 120_000), Some(62_004));
        assert_eq!(stalls_at(&mut streaming, &pieces, 120_000), Some(62_004));
        let expected = Some(ReadError::Stalled {
            received: 2,
            expected: None,
        });
        assert_eq!((framed.error(), streaming.error()), (expected, expected));
    }

    #[test]
    fn a_frame_timeout_of_duration_max_never_comes() {
        let pieces: [(u64, &[u8]); 1] = [(1000, &[0, 0, 0, 5, b'h'])];
        let mut framed = framed_echo().with_frame_timeout(Duration::MAX, 500);
        let mut streaming = streaming_echo().with_frame_timeout(Duration::MAX, 500);
        assert_eq!(stalls_at(&mut framed, &pieces, u64::MAX), None);
        assert_eq!(stalls_at(&mut streaming, &pieces, u64::MAX), None);
        assert_eq!(
            (framed.poll_timeout(), streaming.poll_timeout()),
            (None, None)
        );
        // And another timeout is the one kept.
        let mut framed = framed_echo().with_frame_timeout(Duration::from_secs(2), 500);
        assert_eq!(stalls_at(&mut framed, &pieces, 60_000), Some(3_010));
    }

    #[test]
    fn the_frame_clock_waits_while_whole_frames_wait_for_the_handler() {
        // Two frames of 1500 bytes and the head of a third in one read, nothing
        // sent: the first echo fills the queue, the second frame waits for
        // room, and the third's clock waits with it.
        let mut echo = framed_echo();
        echo.start(Instant::ZERO);
        let bodies: [&[u8]; 3] = [&[1; 1500], &[2; 1500], &[3; 1500]];
        let mut stream = frames(&bodies, HeaderFormat::NETWORK);
        stream.truncate(2 * 1504 + 10);
        assert_eq!(echo.receive(&stream, Instant::from_secs(1)), stream.len());
        assert!(echo.reader.has_frame());
        assert_eq!(echo.poll_timeout(), None);
        // Once the answers have gone, the third frame's clock starts: due at
        // once, to be started by the runner's next turn, from then (its 10
        // bytes earn 20 ms), and it runs on with the bytes that come.
        let mut space = [0u8; 4096];
        let now = Instant::from_secs(100);
        bounded_while_let!(1.. = echo.transmit(&mut space, now) => {});
        assert_eq!(echo.handler().frames, 2);
        assert_eq!(echo.poll_timeout(), Some(Instant::ZERO));
        echo.handle_timeout(now);
        assert_eq!(echo.status(), Status::Open);
        assert_eq!(echo.poll_timeout(), Some(Instant::from_millis(160_020)));
        assert_eq!(echo.receive(&[3], now), 1);
        assert_eq!(echo.poll_timeout(), Some(Instant::from_millis(160_022)));
    }

    mod properties {
        use super::*;
        use crate::trace::{Conn, Probe, Tally};
        use crate::wire::frame::ReadStats;
        use proptest::test_runner::TestCaseError;

        /// A trace's tally says what the reader counted, every frame sent, and
        /// every byte the session gave.
        fn agrees(
            tally: &Tally,
            read: &ReadStats,
            frames: usize,
            sent: usize,
        ) -> Result<(), TestCaseError> {
            prop_assert_eq!(tally.reads, read.reads);
            prop_assert_eq!(tally.read_bytes, read.bytes);
            prop_assert_eq!(tally.frames, frames as u64);
            prop_assert_eq!(tally.body_bytes, read.body_bytes);
            prop_assert_eq!(tally.coalesced_reads, read.coalesced_reads);
            prop_assert_eq!(tally.split_frames, read.split_frames);
            prop_assert_eq!(tally.sent_bytes, sent as u64);
            Ok(())
        }
        use crate::wire::frame::tests::props::any_format;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the split of the input and the size of each send space,
            /// both echoes give back exactly the frames that went in.
            #[test]
            fn echoes_give_back_the_stream_through_any_split(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
                cut in 1usize..300,
                space in 1usize..300,
                queue in 5usize..64,
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max.min(199)); b }).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                let mut stream = Vec::new();
                for body in &refs {
                    let mut buf = vec![0u8; body.len() + 4];
                    let n = encode(format, body, &mut buf).unwrap();
                    stream.extend_from_slice(&buf[..n]);
                }
                let limit = format.with_max_len(max.min(199) as u32).unwrap();
                let frame = limit.max_frame_len();
                let mut framed = Framed::new(FramedEcho::new(), vec![0u8; frame], vec![0u8; frame], limit).unwrap();
                let got = run(&mut framed, &stream, cut, space);
                prop_assert_eq!(&got.output, &stream);
                prop_assert_eq!(got.status, Status::Close);
                let mut streaming = StreamingEcho::new(vec![0u8; queue.max(format.header_len() + 1)], format).unwrap();
                let got = run(&mut streaming, &stream, cut, space);
                prop_assert_eq!(&got.output, &stream);
                prop_assert_eq!(got.status, Status::Close);
            }

            /// Traced, each echo's records add up to its reader's own counters
            /// and to the bytes it gave, whatever the split: frames answered where
            /// they lay and frames that waited in the storage (a small send space
            /// makes the echo wait) are each recorded once.
            #[test]
            fn a_traced_session_records_what_its_reader_counts(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
                cut in 1usize..300,
                space in 1usize..300,
                queue in 5usize..64,
            ) {
                let max = format.max_len() as usize;
                let limit = format.with_max_len(max.min(199) as u32).unwrap();
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max.min(199)); b }).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                let stream = frames(&refs, limit);
                let frame = limit.max_frame_len();
                let conn = Conn::new(7, 40000);
                let mut framed = Framed::new(FramedEcho::new(), vec![0u8; frame], vec![0u8; frame], limit)
                    .unwrap()
                    .traced(Probe::new(conn, Vec::new()));
                let got = run(&mut framed, &stream, cut, space);
                prop_assert_eq!(&got.output, &stream);
                let read = framed.stats().read;
                let tally = Tally::of(framed.probe().sink().iter(), conn);
                agrees(&tally, &read, bodies.len(), got.output.len())?;
                prop_assert_eq!(tally.frames, read.frames);
                prop_assert_eq!(tally.out_of_order, 0);
                // The streaming echo the same way, through a queue of any size.
                let queue = vec![0u8; queue.max(limit.header_len() + 1)];
                let mut streaming = StreamingEcho::new(queue, limit)
                    .unwrap()
                    .traced(Probe::new(conn, Vec::new()));
                let got = run(&mut streaming, &stream, cut, space);
                prop_assert_eq!(&got.output, &stream);
                let tally = Tally::of(streaming.probe().sink().iter(), conn);
                agrees(&tally, streaming.stats(), bodies.len(), got.output.len())?;
            }
        }
    }
}
