//! [`StreamingFrames`]: length framing straight between the application and one
//! smoltcp TCP socket's rings, with no frame storage.
//!
//! The framing state of one connection is a [`BodyReader`] and a [`FrameWriter`];
//! the socket stays in the caller's `SocketSet` and is passed in on each call.
//! Reading hands the application each body in the pieces it sits in the receive
//! ring; writing lets the application write each body straight into the send ring.
//! For whole frames with an answer owned by the session, see
//! [`Framed`](crate::session::Framed) on a [`TcpSession`](super::TcpSession).

use core::fmt;

use smoltcp::socket::tcp;

use crate::wire::body::{BodyPiece, BodyReader};
use crate::wire::frame::{
    BatchEnd, FrameSource, FrameWriter, HeaderFormat, ReadError, ReadStats, WriteError, WriteStats,
};

/// Why a frame could not be received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecvError {
    /// The peer closed its side cleanly and every frame has been taken: the
    /// framed equivalent of Python's `recv` returning `b''`.
    Finished,
    /// The socket is not in a state to receive (not connected, or reset).
    NotConnected,
    /// A header announced more than the maximum, or the stream ended mid-frame.
    Frame(ReadError),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Finished => f.write_str("peer closed the stream"),
            RecvError::NotConnected => f.write_str("socket is not connected"),
            RecvError::Frame(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RecvError {}

impl From<ReadError> for RecvError {
    fn from(e: ReadError) -> Self {
        RecvError::Frame(e)
    }
}

/// Why a frame could not be sent (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The send buffer is full, or the body's `fill` wrote less than the space
    /// it had: back-pressure. What fitted is queued; if that was part of the
    /// frame, call again with the same body after the next poll (if none of it
    /// fitted, no frame is owed). Nothing was dropped.
    WouldBlock,
    /// The socket cannot send (not connected, or already closed for sending).
    NotConnected,
    /// The frame was refused: over the maximum, or another frame is half written.
    Frame(WriteError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::WouldBlock => {
                f.write_str("no room for the frame now, try again after the next poll")
            }
            SendError::NotConnected => f.write_str("socket cannot send"),
            SendError::Frame(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SendError {}

impl From<WriteError> for SendError {
    fn from(e: WriteError) -> Self {
        SendError::Frame(e)
    }
}

/// Counters of one framed connection: everything the reader and writer saw, plus
/// how often the socket's send buffer pushed back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamStats {
    /// The receiving side: frames, bytes, coalesced reads, split frames, oversize, truncated.
    pub read: ReadStats,
    /// The sending side: frames, bytes, frames split across writes.
    pub write: WriteStats,
    /// Sends that found the socket's send buffer full (back-pressure).
    pub send_full: u64,
}

impl StreamStats {
    /// Adds another connection's counters to these (for a server's totals).
    pub fn accumulate(&mut self, other: &StreamStats) {
        self.read.accumulate(&other.read);
        self.write.accumulate(&other.write);
        self.send_full = self.send_full.saturating_add(other.send_full);
    }
}

impl fmt::Display for StreamStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, w) = (&self.read, &self.write);
        write!(
            f,
            "in: {} frames / {} B in {} reads ({} coalesced, {} split), {} oversize, {} truncated; \
             out: {} frames / {} B ({} split), {} send-buffer-full",
            r.frames,
            r.bytes,
            r.reads,
            r.coalesced_reads,
            r.split_frames,
            r.oversize,
            r.truncated,
            w.frames,
            w.bytes,
            w.split_frames,
            self.send_full
        )
    }
}

/// The sending half: a [`FrameWriter`] plus the count of times the socket pushed
/// back.
#[derive(Clone, Debug)]
struct FrameTx {
    writer: FrameWriter,
    send_full: u64,
}

impl FrameTx {
    /// A sender of frames in `format`.
    pub const fn new(format: HeaderFormat) -> Self {
        Self {
            writer: FrameWriter::new(format),
            send_full: 0,
        }
    }

    /// Whether a frame is half written and waiting for send space.
    pub const fn pending(&self) -> bool {
        self.writer.in_progress()
    }

    /// The writer's counters.
    pub const fn stats(&self) -> &WriteStats {
        self.writer.stats()
    }

    /// Times the socket's send buffer was full.
    pub const fn send_full(&self) -> u64 {
        self.send_full
    }

    /// Sends a frame of `len` body bytes that `fill` writes straight into the send
    /// ring: see [`StreamingFrames::send_with`].
    pub fn send_with<F>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        len: usize,
        mut fill: F,
    ) -> Result<(), SendError>
    where
        F: FnMut(usize, &mut [u8]) -> usize,
    {
        if !socket.may_send() {
            return Err(SendError::NotConnected);
        }
        // A full ring takes nothing: said before any work (a sender that writes
        // until it is told to wait meets this once a poll), unless the frame
        // could never go.
        if !socket.can_send() {
            if let Some(error) = self.writer.refusal(Some(len), false) {
                return Err(SendError::Frame(error));
            }
            self.send_full = self.send_full.saturating_add(1);
            return Err(SendError::WouldBlock);
        }
        self.writer.begin(len)?;
        // As in `send`: two rounds for the two pieces of the ring, and a plain
        // count out of the closure (an error waits beside it). A full ring is not
        // asked at all: with small frames that is one `send` call in two.
        let mut refused = None;
        for _ in 0..2 {
            if !socket.can_send() {
                break;
            }
            let writer = &mut self.writer;
            let written = socket
                .send(|space| match writer.write_begun_with(space, &mut fill) {
                    Ok(progress) => (progress.written, progress.written),
                    Err(error) => {
                        refused = Some(error);
                        (0, 0)
                    }
                })
                .map_err(|_| SendError::NotConnected)?;
            if let Some(error) = refused {
                self.writer.forget_unstarted();
                return Err(SendError::Frame(error));
            }
            if !self.writer.in_progress() {
                return Ok(());
            }
            if written == 0 {
                break;
            }
        }
        // `fill` may also have had no more bytes yet; only a full ring is back-pressure.
        if !socket.can_send() {
            self.send_full = self.send_full.saturating_add(1);
        }
        // A frame none of whose bytes went out is not owed: the next call may
        // send another, and a close need not wait for it.
        self.writer.forget_unstarted();
        Err(SendError::WouldBlock)
    }

    /// Sends the frames of `source` while the ring takes them, several to a
    /// `send` call: see [`StreamingFrames::send_frames`].
    pub fn send_frames<S: FrameSource + ?Sized>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        source: &mut S,
    ) -> Result<(), SendError> {
        if !socket.may_send() {
            return Err(SendError::NotConnected);
        }
        // Frames go into a ring with room; on a full one (most polls of a busy
        // sender) the source is only asked for its next frame's length.
        if socket.can_send()
            && let Some(result) = self.send_rounds(socket, source)
        {
            return result;
        }
        self.ring_full(source)
    }

    /// [`send_frames`](Self::send_frames) on a ring with room: `None` once it
    /// is full.
    #[inline(never)]
    fn send_rounds<S: FrameSource + ?Sized>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        source: &mut S,
    ) -> Option<Result<(), SendError>> {
        // Two rounds for the two pieces of the ring; the second only when the
        // first was filled to its end.
        for round in 0..2 {
            if round > 0 && !socket.can_send() {
                break;
            }
            let writer = &mut self.writer;
            let sent = socket
                .send(|space| {
                    let batch = writer.write_frames(space, source);
                    (batch.written, (batch, batch.written == space.len()))
                })
                .map_err(|_| SendError::NotConnected);
            let (batch, full) = match sent {
                Ok(sent) => sent,
                Err(error) => return Some(Err(error)),
            };
            match batch.end {
                BatchEnd::Drained => return Some(Ok(())),
                BatchEnd::Refused(error) => return Some(Err(SendError::Frame(error))),
                BatchEnd::Blocked if !full => return Some(Err(SendError::WouldBlock)),
                BatchEnd::Blocked => {}
            }
        }
        None
    }

    /// [`send_frames`](Self::send_frames) on a full ring: nothing is owed
    /// unless a frame is half written, a source with nothing to send has
    /// nothing to wait for, and a frame that could never go is refused now.
    fn ring_full<S: FrameSource + ?Sized>(&mut self, source: &mut S) -> Result<(), SendError> {
        let next = source.next_len();
        if next.is_none() && !self.writer.in_progress() {
            return Ok(());
        }
        if let Some(error) = self.writer.refusal(next, true) {
            return Err(SendError::Frame(error));
        }
        // A plain add: one a call, so never near 2^64.
        self.send_full = self.send_full.wrapping_add(1);
        Err(SendError::WouldBlock)
    }

    /// Closes the sending half once every frame is queued, never mid-frame.
    pub fn close(&mut self, socket: &mut tcp::Socket<'_>) -> Result<(), SendError> {
        // Never cut a frame short: its tail is still in the caller's buffer.
        self.writer.finish()?;
        socket.close();
        Ok(())
    }

    /// Abandons a half-written frame (the connection is gone).
    pub fn reset(&mut self) {
        self.writer.reset();
    }
}

/// Length framing on a smoltcp TCP socket with no frame storage at all: bodies go
/// between the application and the socket's rings in pieces, with no copy.
///
/// [`Framed`](crate::session::Framed) gathers each received frame whole (one copy, and RAM for the
/// largest frame) and sends from a body the caller holds whole. This type keeps only
/// a [`BodyReader`] (the header being assembled and the place in the body) and a
/// sender:
///
/// - [`recv_pieces`](Self::recv_pieces) hands each body to a closure in the pieces
///   it sits in the receive ring, inside `tcp::Socket::recv`;
/// - [`send_with`](Self::send_with) writes the header, then lets a closure write
///   the body straight into the send ring, inside `tcp::Socket::send`;
/// - [`send_frames`](Self::send_frames) does the same for a stream of frames from
///   a [`FrameSource`], as many to a `send` as the ring takes.
///
/// A frame can then be larger than any buffer the device has (file data from flash
/// to the ring), and a 64 KiB frame moves through 64 KiB socket buffers with no
/// copy besides smoltcp's own.
///
/// ```
/// use smoltcp::socket::tcp;
/// use smolsock::net::{RecvError, SendError, StreamingFrames};
/// use smolsock::wire::frame::HeaderFormat;
///
/// /// Sends `image` (in flash, say) as one frame: bytes go from it straight into
/// /// the send ring. `Ok(false)` while it is still going out: call again.
/// fn send_image(
///     frames: &mut StreamingFrames,
///     socket: &mut tcp::Socket<'_>,
///     image: &[u8],
/// ) -> Result<bool, SendError> {
///     let sent = frames.send_with(socket, image.len(), |offset, space| {
///         let n = space.len();
///         space.copy_from_slice(&image[offset..offset + n]);
///         n
///     });
///     match sent {
///         Ok(()) => Ok(true),
///         Err(SendError::WouldBlock) => Ok(false),
///         Err(e) => Err(e),
///     }
/// }
///
/// /// Adds up the bytes of every frame as it arrives, with no frame buffer.
/// fn checksum(
///     frames: &mut StreamingFrames,
///     socket: &mut tcp::Socket<'_>,
///     sum: &mut u32,
/// ) -> Result<usize, RecvError> {
///     frames.recv_pieces(socket, |piece| {
///         for &byte in piece.bytes {
///             *sum = sum.wrapping_add(u32::from(byte));
///         }
///         piece.bytes.len()
///     })
/// }
///
/// let frames = StreamingFrames::new(HeaderFormat::NETWORK);
/// assert_eq!(frames.stats().read.frames, 0);
/// ```
#[derive(Clone, Debug)]
pub struct StreamingFrames {
    reader: BodyReader,
    tx: FrameTx,
}

impl StreamingFrames {
    /// A stream whose frames use `format`.
    pub const fn new(format: HeaderFormat) -> Self {
        Self {
            reader: BodyReader::new(format),
            tx: FrameTx::new(format),
        }
    }

    /// Sets the socket options a framed connection wants: Nagle and delayed ACK
    /// off, so that a peer waiting for a whole frame never waits on a timer (see
    /// [`Session::no_delay`](crate::session::Session::no_delay)).
    pub fn configure(socket: &mut tcp::Socket<'_>) {
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
    }

    /// The header format.
    pub const fn format(&self) -> HeaderFormat {
        self.reader.format()
    }

    /// The counters so far.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            read: *self.reader.stats(),
            write: *self.tx.stats(),
            send_full: self.tx.send_full(),
        }
    }

    /// Offers the frames waiting in the socket's receive ring to `take`, body piece
    /// by body piece, straight from the ring; returns how many bytes left the ring
    /// (headers and the body bytes taken).
    ///
    /// `take` returns how many bytes of the piece it took. Taking fewer (for example
    /// when the application's own output is full) stops here, and the rest stays in
    /// the socket: back-pressure, and TCP's window tells the peer to slow down. The
    /// next call offers it again, as the next piece of the same frame. A piece of a
    /// zero-length frame is empty and taken as soon as it is offered.
    ///
    /// `Ok(0)`: nothing to read now. `Err(RecvError::Finished)`: the peer closed
    /// cleanly on a frame boundary and everything was taken. A stream that ended
    /// mid-frame gives [`ReadError::Truncated`], an oversize header
    /// [`ReadError::Oversize`] (either stops the reader until
    /// [`reset`](Self::reset), and is counted once; close the connection).
    pub fn recv_pieces<F>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        take: F,
    ) -> Result<usize, RecvError>
    where
        F: FnMut(BodyPiece<'_>) -> usize,
    {
        if let Some(error) = self.reader.error() {
            return Err(error.into());
        }
        // An empty ring (most polls): nothing to take, unless the stream has ended.
        if !socket.can_recv() {
            return self.recv_end(socket).map(|()| 0);
        }
        self.recv_rounds(socket, take)
    }

    /// [`recv_pieces`](Self::recv_pieces) on a ring with bytes in it.
    #[inline(never)]
    fn recv_rounds<F>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        mut take: F,
    ) -> Result<usize, RecvError>
    where
        F: FnMut(BodyPiece<'_>) -> usize,
    {
        let mut total = 0usize;
        // The receive ring hands out at most two contiguous pieces (before and after
        // its wrap), so two rounds take all there is.
        for _ in 0..2 {
            if !socket.can_recv() {
                break;
            }
            let reader = &mut self.reader;
            let bytes_before = reader.stats().bytes;
            let mut failed = None;
            let (consumed, offered) = socket
                .recv(|ring| {
                    if let Err(error) = reader.feed(ring, &mut take) {
                        failed = Some(error);
                    }
                    // Counted by the reader even when it fails: an oversize header
                    // leaves the ring with the frames before it.
                    let consumed = reader.stats().bytes.saturating_sub(bytes_before) as usize;
                    (consumed, (consumed, ring.len()))
                })
                .map_err(|_| RecvError::NotConnected)?;
            total = total.saturating_add(consumed);
            if let Some(error) = failed {
                return Err(error.into());
            }
            // `take` stopped early, or there was nothing to take.
            if consumed < offered || consumed == 0 {
                return Ok(total);
            }
        }
        if total == 0 {
            self.recv_end(socket)?;
        }
        Ok(total)
    }

    /// After a receive that took nothing: `Ok` unless the ring is empty and the
    /// peer will send no more (a clean end, or a truncation).
    #[inline]
    fn recv_end(&mut self, socket: &tcp::Socket<'_>) -> Result<(), RecvError> {
        if socket.may_recv() || socket.recv_queue() > 0 {
            return Ok(());
        }
        self.reader.finish()?;
        Err(match socket.state() {
            tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait => RecvError::Finished,
            _ => RecvError::NotConnected,
        })
    }

    /// Whether the stream is inside a received frame (a header or body not all taken).
    pub const fn is_mid_frame(&self) -> bool {
        self.reader.is_mid_frame()
    }

    /// Sends a frame of `len` body bytes that `fill` writes straight into the send
    /// ring, like `sendall` without blocking.
    ///
    /// The header goes first; then `fill(offset, space)` writes body bytes from
    /// `offset` (in the body) into `space` (a piece of the send ring, never longer
    /// than the body still owed) and returns how many it wrote. `Ok(())` once the
    /// whole frame is queued; [`SendError::WouldBlock`] when the ring is full, or
    /// `fill` wrote less than the space it had. If some of the frame went out,
    /// the rest is owed: call again with the same `len` after the next poll, and
    /// `fill` is asked for the body from where it stopped. If none of it went out,
    /// nothing is owed, and the next call may send any frame. Nothing is dropped,
    /// and a frame never gets more or fewer bytes than its header announced: a
    /// `fill` claiming more than `space` is refused with [`WriteError::Overrun`]
    /// (nothing of that piece is queued; a piece before it, at the ring's end,
    /// stays queued, and the rest of the frame is owed), a frame of another
    /// length while one is
    /// owed with [`WriteError::Busy`], and [`close`](Self::close) waits for an owed
    /// frame to be finished.
    pub fn send_with<F>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        len: usize,
        fill: F,
    ) -> Result<(), SendError>
    where
        F: FnMut(usize, &mut [u8]) -> usize,
    {
        self.tx.send_with(socket, len, fill)
    }

    /// Sends the frames of `source`, one after another, straight into the send
    /// ring: as many as it takes, several in one `send` of the socket where they
    /// fit, so that small frames cost about what the bytes do.
    ///
    /// Each frame is produced in place as with [`send_with`](Self::send_with):
    /// its header, then its body from [`FrameSource::fill`]; the source is told
    /// each frame that is queued whole ([`FrameSource::sent`]). `Ok(())` once the
    /// source has nothing more to send ([`FrameSource::next_len`] gave `None`):
    /// every frame it gave is queued whole. [`SendError::WouldBlock`] when the
    /// ring is full or the source's `fill` wrote less than its space: call again
    /// after the next poll, and a frame half written goes on where it stopped.
    /// A frame the source offers that cannot be sent (over the maximum, another
    /// length while one is half written, a `fill` claiming more than its space)
    /// is refused with [`SendError::Frame`]; the frames before it are queued.
    /// A frame that [`send_with`](Self::send_with) began is not the source's to
    /// finish (refused with [`WriteError::Busy`]), nor the other way round. On
    /// a ring already full the source is only asked for the next frame's length:
    /// `Ok` if it has none, a refusal if that frame could never go, else
    /// `WouldBlock`.
    ///
    /// ```
    /// use smoltcp::socket::tcp;
    /// use smolsock::net::{SendError, StreamingFrames};
    /// use smolsock::wire::frame::FrameSource;
    ///
    /// /// Temperature samples, each sent as an 8-byte frame: its time and value.
    /// struct Samples<'a> {
    ///     queue: &'a [(u32, f32)],
    /// }
    ///
    /// impl FrameSource for Samples<'_> {
    ///     fn next_len(&mut self) -> Option<usize> {
    ///         (!self.queue.is_empty()).then_some(8)
    ///     }
    ///     fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
    ///         let (time, value) = self.queue[0];
    ///         let mut frame = [0u8; 8];
    ///         frame[..4].copy_from_slice(&time.to_be_bytes());
    ///         frame[4..].copy_from_slice(&value.to_be_bytes());
    ///         let n = space.len();
    ///         space.copy_from_slice(&frame[offset..offset + n]);
    ///         n
    ///     }
    ///     fn sent(&mut self) {
    ///         self.queue = &self.queue[1..];
    ///     }
    /// }
    ///
    /// /// Sends what it can of `samples`; returns how many are queued whole (the
    /// /// next call gets the rest, whose first may be half written: it goes on).
    /// fn send_samples(
    ///     frames: &mut StreamingFrames,
    ///     socket: &mut tcp::Socket<'_>,
    ///     samples: &[(u32, f32)],
    /// ) -> Result<usize, SendError> {
    ///     let mut source = Samples { queue: samples };
    ///     match frames.send_frames(socket, &mut source) {
    ///         Ok(()) | Err(SendError::WouldBlock) => {}
    ///         Err(e) => return Err(e),
    ///     }
    ///     Ok(samples.len() - source.queue.len())
    /// }
    /// # let _ = send_samples;
    /// ```
    pub fn send_frames<S: FrameSource + ?Sized>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        source: &mut S,
    ) -> Result<(), SendError> {
        self.tx.send_frames(socket, source)
    }

    /// Whether a frame is half written and waiting for send space.
    pub const fn send_pending(&self) -> bool {
        self.tx.pending()
    }

    /// Closes the sending half (`shutdown(SHUT_WR)`) once the frame in progress is
    /// finished: a frame half written is refused with [`WriteError::Busy`], so a
    /// close never cuts a frame.
    pub fn close(&mut self, socket: &mut tcp::Socket<'_>) -> Result<(), SendError> {
        self.tx.close(socket)
    }

    /// Forgets all framing state, to reuse the stream for a new connection.
    /// Counters stay.
    pub fn reset(&mut self) {
        self.reader.reset();
        self.tx.reset();
    }
}
