//! Length-prefixed framing: the cure for TCP's "sticky packets".
//!
//! TCP carries a byte stream with no message boundaries: two small sends can arrive
//! in one read, and one large send can take several. The receiver cannot know where
//! a message ends unless the sender tells it. Here every message (a *frame*) is sent
//! as a fixed-width length header followed by that many bytes of *body*:
//!
//! ```text
//! +--------+--------+--------+--------+--------+-- ... --+
//! |   body length (HeaderFormat)      |   body (length bytes)  |
//! +--------+--------+--------+--------+--------+-- ... --+
//! ```
//!
//! With the default [`HeaderFormat::NETWORK`] (4 bytes, big endian, like Python's
//! `struct.pack('!I', n)`), the body `hi` travels as `00 00 00 02 68 69`.
//!
//! - [`FrameReader`] turns bytes that arrive in any split into whole frames, over
//!   storage of fixed size; it takes only what it has room for, so the rest waits in
//!   the socket's receive buffer (back-pressure, not loss).
//! - [`FrameWriter`] turns a frame into header + body in as many pieces as the
//!   send space allows, and remembers how far it got (`sendall`, without blocking).

use core::fmt;

/// How many bytes the length header takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderWidth {
    /// One byte: bodies up to 255 bytes.
    U8,
    /// Two bytes: bodies up to 65 535 bytes.
    U16,
    /// Four bytes: bodies up to 4 GiB - 1 (4 GiB - 5 on a 32-bit target, where
    /// a whole frame's length must fit a `usize`: [`HeaderFormat::new`]).
    U32,
}

impl HeaderWidth {
    /// The header's size in bytes.
    pub const fn size(self) -> usize {
        match self {
            HeaderWidth::U8 => 1,
            HeaderWidth::U16 => 2,
            HeaderWidth::U32 => 4,
        }
    }

    /// The largest body length this width can express.
    pub const fn max_len(self) -> u32 {
        match self {
            HeaderWidth::U8 => u8::MAX as u32,
            HeaderWidth::U16 => u16::MAX as u32,
            HeaderWidth::U32 => u32::MAX,
        }
    }
}

/// The byte order of the length header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ByteOrder {
    /// Most significant byte first: "network order", Python's `'!'` and `'>'`.
    Big,
    /// Least significant byte first: Python's native `'<'` on x86 and Arm.
    Little,
}

/// The shape of the length header and the largest body a peer may announce.
///
/// ```
/// use smolsock::wire::frame::{ByteOrder, HeaderFormat, HeaderWidth};
///
/// // Python: struct.pack('!I', len(body)) + body, frames up to 64 KiB.
/// assert_eq!(HeaderFormat::NETWORK.header_len(), 4);
/// assert_eq!(HeaderFormat::NETWORK.max_len(), 64 * 1024);
///
/// // A 2-byte little-endian header for bodies up to 512 bytes.
/// let small = HeaderFormat::new(HeaderWidth::U16, ByteOrder::Little, 512).unwrap();
/// assert_eq!(small.header(300).unwrap().as_bytes(), &[0x2c, 0x01]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeaderFormat {
    width: HeaderWidth,
    order: ByteOrder,
    max_len: u32,
}

/// The default maximum body length of the presets: 64 KiB.
pub const DEFAULT_MAX_LEN: u32 = 64 * 1024;

impl HeaderFormat {
    /// 4 bytes, big endian, bodies up to 64 KiB: Python's `struct.pack('!I', n)`.
    /// The default, and what every smolsock service speaks.
    pub const NETWORK: Self = Self {
        width: HeaderWidth::U32,
        order: ByteOrder::Big,
        max_len: DEFAULT_MAX_LEN,
    };

    /// 4 bytes, little endian, bodies up to 64 KiB: the primer's classic
    /// `struct.pack('i', n)`, which uses the machine's native order (little endian
    /// on x86 and Arm), so Python code from tutorials interoperates unchanged.
    pub const STRUCT_PACK_I: Self = Self {
        width: HeaderWidth::U32,
        order: ByteOrder::Little,
        max_len: DEFAULT_MAX_LEN,
    };

    /// A header of `width` bytes in `order`, accepting bodies up to `max_len` bytes.
    ///
    /// Fails if `max_len` cannot be expressed in `width` bytes, or if a whole
    /// frame of it, header included, could not be counted in a `usize`: on a
    /// 32-bit target a 4-byte header's bodies go up to 2^32 - 5 bytes.
    pub const fn new(
        width: HeaderWidth,
        order: ByteOrder,
        max_len: u32,
    ) -> Result<Self, FormatError> {
        let whole = usize::MAX.saturating_sub(width.size());
        let limit = if width.max_len() as usize > whole {
            whole as u32
        } else {
            width.max_len()
        };
        if max_len > limit {
            return Err(FormatError::MaxLenTooLarge { max_len, limit });
        }
        Ok(Self {
            width,
            order,
            max_len,
        })
    }

    /// The same header with another maximum body length.
    pub const fn with_max_len(self, max_len: u32) -> Result<Self, FormatError> {
        Self::new(self.width, self.order, max_len)
    }

    /// The header's width.
    pub const fn width(&self) -> HeaderWidth {
        self.width
    }

    /// The header's byte order.
    pub const fn order(&self) -> ByteOrder {
        self.order
    }

    /// The header's size in bytes.
    pub const fn header_len(&self) -> usize {
        self.width.size()
    }

    /// The largest body a frame may carry.
    pub const fn max_len(&self) -> u32 {
        self.max_len
    }

    /// The most bytes one frame takes on the wire: header plus the largest body.
    /// A [`FrameReader`] needs at least this much storage.
    pub const fn max_frame_len(&self) -> usize {
        // u32 fits usize on every target smoltcp supports (16-bit targets aside).
        self.header_len().saturating_add(self.max_len as usize)
    }

    /// The header announcing a body of `body_len` bytes.
    pub fn header(&self, body_len: usize) -> Result<Header, WriteError> {
        self.header_inline(body_len)
    }

    /// [`header`](Self::header), for the writer's loop to have in line (the
    /// callers of `header` are better off with a call).
    #[inline]
    pub(crate) fn header_inline(&self, body_len: usize) -> Result<Header, WriteError> {
        let len = u32::try_from(body_len)
            .ok()
            .filter(|len| *len <= self.max_len)
            .ok_or(WriteError::TooLarge {
                len: body_len,
                max: self.max_len,
            })?;
        let n = self.header_len();
        // The value fits in `n` bytes (checked against max_len, which fits the
        // width), so the bytes left out are zeros.
        let (bytes, start) = match self.order {
            ByteOrder::Big => (len.to_be_bytes(), 4usize.saturating_sub(n)),
            ByteOrder::Little => (len.to_le_bytes(), 0),
        };
        Ok(Header {
            bytes,
            start: start as u8,
            len: n as u8,
        })
    }

    /// Reads the body length from the first [`header_len`](Self::header_len) bytes
    /// of `bytes`, or `None` if there are fewer. Does not check the maximum.
    #[inline]
    pub fn decode(&self, bytes: &[u8]) -> Option<u32> {
        // One fixed-size load per case: a copy of `header_len()` bytes would be a
        // call to `memcpy`, and the reader decodes a header several times per frame.
        Some(match (self.width, self.order) {
            (HeaderWidth::U8, _) => u32::from(*bytes.first()?),
            (HeaderWidth::U16, ByteOrder::Big) => u16::from_be_bytes(*bytes.first_chunk()?).into(),
            (HeaderWidth::U16, ByteOrder::Little) => {
                u16::from_le_bytes(*bytes.first_chunk()?).into()
            }
            (HeaderWidth::U32, ByteOrder::Big) => u32::from_be_bytes(*bytes.first_chunk()?),
            (HeaderWidth::U32, ByteOrder::Little) => u32::from_le_bytes(*bytes.first_chunk()?),
        })
    }

    /// [`decode`](Self::decode) that also gives the bytes after the header.
    #[inline]
    pub(crate) fn split<'a>(&self, bytes: &'a [u8]) -> Option<(u32, &'a [u8])> {
        Some(match (self.width, self.order) {
            (HeaderWidth::U8, _) => {
                let (first, rest) = bytes.split_first()?;
                (u32::from(*first), rest)
            }
            (HeaderWidth::U16, order) => {
                let (head, rest) = bytes.split_first_chunk()?;
                let len = match order {
                    ByteOrder::Big => u16::from_be_bytes(*head),
                    ByteOrder::Little => u16::from_le_bytes(*head),
                };
                (len.into(), rest)
            }
            (HeaderWidth::U32, order) => {
                let (head, rest) = bytes.split_first_chunk()?;
                let len = match order {
                    ByteOrder::Big => u32::from_be_bytes(*head),
                    ByteOrder::Little => u32::from_le_bytes(*head),
                };
                (len, rest)
            }
        })
    }
}

impl Default for HeaderFormat {
    fn default() -> Self {
        Self::NETWORK
    }
}

/// An encoded length header: 1, 2 or 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; 4],
    start: u8,
    len: u8,
}

impl Header {
    /// No header at all: what a writer holds before its first frame.
    pub const EMPTY: Header = Header {
        bytes: [0; 4],
        start: 0,
        len: 0,
    };

    /// The header's bytes, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        let start = usize::from(self.start);
        self.bytes
            .get(start..start.saturating_add(usize::from(self.len)))
            .unwrap_or(&[])
    }
}

impl Header {
    /// Writes the whole header at the front of `out` with one fixed-size store (a
    /// copy of `len` bytes would be a call to `memcpy`); `false`, and nothing
    /// written, if `out` is shorter.
    pub(crate) fn put(&self, out: &mut [u8]) -> bool {
        let start = usize::from(self.start);
        match self.len {
            4 => match out.first_chunk_mut::<4>() {
                Some(dst) => *dst = self.bytes,
                None => return false,
            },
            2 => match (out.first_chunk_mut::<2>(), self.bytes.get(start..)) {
                (Some(dst), Some(src)) => match src.first_chunk::<2>() {
                    Some(src) => *dst = *src,
                    None => return false,
                },
                _ => return false,
            },
            1 => match (out.first_mut(), self.bytes.get(start)) {
                (Some(dst), Some(src)) => *dst = *src,
                _ => return false,
            },
            _ => return self.len == 0,
        }
        true
    }
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A [`HeaderFormat`] or [`FrameReader`] that cannot be built as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// The maximum body length does not fit in the header's width (or, on a
    /// 32-bit target, leaves no room to count the header with it).
    MaxLenTooLarge {
        /// The maximum asked for.
        max_len: u32,
        /// The largest the width can express (on this target).
        limit: u32,
    },
    /// The reader's storage cannot hold one frame of the maximum length.
    StorageTooSmall {
        /// The storage given.
        capacity: usize,
        /// Header plus maximum body.
        needed: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::MaxLenTooLarge { max_len, limit } => {
                write!(
                    f,
                    "maximum body length {max_len} does not fit the header (limit {limit})"
                )
            }
            FormatError::StorageTooSmall { capacity, needed } => write!(
                f,
                "frame storage of {capacity} bytes cannot hold a whole frame of {needed} bytes"
            ),
        }
    }
}

impl core::error::Error for FormatError {}

/// Why a [`FrameReader`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadError {
    /// A header announced a body longer than the maximum. The bytes after it can no
    /// longer be trusted to be frame boundaries, so the reader takes no more input
    /// until [`FrameReader::reset`]; the connection should be closed.
    Oversize {
        /// The body length the header announced.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The stream ended inside a frame: `received` of the frame's `expected` bytes
    /// (header included) had arrived; `expected` is `None` if the header itself was cut.
    Truncated {
        /// Bytes of the unfinished frame that arrived.
        received: usize,
        /// Header plus body length, if the header was complete.
        expected: Option<usize>,
    },
    /// The peer stopped inside a frame: `received` of the frame's `expected`
    /// bytes had arrived when the session's deadline for it passed (a peer
    /// trickling a frame, or gone silent in its middle). Like
    /// [`Truncated`](Self::Truncated), it ends the stream; the connection
    /// should be closed.
    Stalled {
        /// Bytes of the unfinished frame that arrived.
        received: usize,
        /// Header plus body length, if the header was complete.
        expected: Option<usize>,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Oversize { len, max } => {
                write!(
                    f,
                    "frame header announces {len} bytes, more than the maximum {max}"
                )
            }
            ReadError::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "stream ended inside a frame ({received} of {expected} bytes)"
            ),
            ReadError::Truncated {
                received,
                expected: None,
            } => write!(f, "stream ended inside a frame header ({received} bytes)"),
            ReadError::Stalled {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "peer stalled inside a frame ({received} of {expected} bytes)"
            ),
            ReadError::Stalled {
                received,
                expected: None,
            } => write!(f, "peer stalled inside a frame header ({received} bytes)"),
        }
    }
}

impl core::error::Error for ReadError {}

/// Why a [`FrameWriter`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WriteError {
    /// The body is longer than the header can express or the maximum allows.
    TooLarge {
        /// The body's length.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A different frame is half written: finish it first (pass the same body again).
    Busy {
        /// The body length of the frame in progress.
        in_progress: usize,
    },
    /// A body-filling closure ([`FrameWriter::write_with`]) claimed to have written
    /// more bytes than the space it was given. Nothing that call wrote was counted,
    /// not even header bytes: the frame stays where it was, so the next call writes
    /// the same place again.
    Overrun {
        /// The count the closure returned.
        claimed: usize,
        /// The space it was given.
        space: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::TooLarge { len, max } => {
                write!(f, "frame body of {len} bytes is over the maximum {max}")
            }
            WriteError::Busy { in_progress } => {
                write!(f, "a frame of {in_progress} bytes is still being written")
            }
            WriteError::Overrun { claimed, space } => write!(
                f,
                "body closure claimed {claimed} bytes written into {space} bytes of space"
            ),
        }
    }
}

impl core::error::Error for WriteError {}

/// What a [`FrameReader`] has seen, for people studying how TCP splits and merges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadStats {
    /// Reads: calls to [`FrameReader::feed`] or [`FrameReader::commit`] with bytes.
    pub reads: u64,
    /// Bytes taken in, headers included.
    pub bytes: u64,
    /// Whole frames found.
    pub frames: u64,
    /// Body bytes of the whole frames found.
    pub body_bytes: u64,
    /// Reads that carried bytes of more than one frame (sticky packets, case one);
    /// an oversize header that stopped the reader is a frame's.
    pub coalesced_reads: u64,
    /// Frames whose bytes took more than one read (sticky packets, case two).
    pub split_frames: u64,
    /// Headers that announced more than the maximum.
    pub oversize: u64,
    /// Streams that ended inside a frame.
    pub truncated: u64,
    /// Streams whose peer stalled inside a frame past its deadline.
    pub stalled: u64,
    /// Bytes a session read and dropped after its stream broke (a stall) or
    /// its handler closed it (and those it held then, counted in
    /// [`bytes`](Self::bytes) as they came), so that the connection could
    /// still close cleanly.
    pub discarded: u64,
}

impl ReadStats {
    /// Counts a stream stopped inside a frame, the peer having ended it or
    /// (`stalled`) stalled: the error, with the frame's received and expected
    /// lengths.
    pub(crate) fn stopped(
        &mut self,
        stalled: bool,
        received: usize,
        expected: Option<usize>,
    ) -> ReadError {
        if stalled {
            self.stalled = self.stalled.saturating_add(1);
            ReadError::Stalled { received, expected }
        } else {
            self.truncated = self.truncated.saturating_add(1);
            ReadError::Truncated { received, expected }
        }
    }

    /// Counts `n` bytes a session dropped after the stream broke.
    pub(crate) fn count_discarded(&mut self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.discarded = self.discarded.saturating_add(n);
    }

    /// Adds `other`'s counters to these (for a pool's totals), saturating.
    pub fn accumulate(&mut self, other: &ReadStats) {
        self.reads = self.reads.saturating_add(other.reads);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.frames = self.frames.saturating_add(other.frames);
        self.body_bytes = self.body_bytes.saturating_add(other.body_bytes);
        self.coalesced_reads = self.coalesced_reads.saturating_add(other.coalesced_reads);
        self.split_frames = self.split_frames.saturating_add(other.split_frames);
        self.oversize = self.oversize.saturating_add(other.oversize);
        self.truncated = self.truncated.saturating_add(other.truncated);
        self.stalled = self.stalled.saturating_add(other.stalled);
        self.discarded = self.discarded.saturating_add(other.discarded);
    }

    /// Nothing seen yet: `Default`, usable in a `const fn`.
    pub const ZERO: Self = Self {
        reads: 0,
        bytes: 0,
        frames: 0,
        body_bytes: 0,
        coalesced_reads: 0,
        split_frames: 0,
        oversize: 0,
        truncated: 0,
        stalled: 0,
        discarded: 0,
    };
}

/// A streaming frame decoder over storage of fixed size.
///
/// `B` is the storage: an array (`[u8; N]`, so the capacity is part of the type), a
/// caller's `&mut [u8]` (which can be `static` on a microcontroller), or anything
/// else that is `AsRef<[u8]> + AsMut<[u8]>`. It must hold at least one frame of the
/// maximum length ([`HeaderFormat::max_frame_len`]). Extra room lets one read take
/// in several small frames at once.
///
/// Bytes go in with [`feed`](Self::feed) (copying from a slice, e.g. inside
/// smoltcp's `tcp::Socket::recv` closure) or with
/// [`receive_buffer`](Self::receive_buffer) + [`commit`](Self::commit) (filling the
/// storage directly). Whole frames come out with [`next_frame`](Self::next_frame),
/// or [`frame`](Self::frame) + [`consume`](Self::consume) to keep a frame in place
/// while its reply is written. The reader never takes more than it has room for.
///
/// ```
/// use smolsock::wire::frame::{FrameReader, HeaderFormat};
///
/// let mut reader = FrameReader::new([0u8; 64], HeaderFormat::NETWORK.with_max_len(32).unwrap()).unwrap();
/// // Two frames, "hi" and "", glued together and cut in the middle of a header.
/// let stream = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0];
/// reader.feed(&stream[..7]).unwrap();
/// assert_eq!(reader.next_frame(), Some(&b"hi"[..]));
/// assert_eq!(reader.next_frame(), None);
/// reader.feed(&stream[7..]).unwrap();
/// assert_eq!(reader.next_frame(), Some(&b""[..]));
/// assert_eq!(reader.stats().coalesced_reads, 1);
/// ```
pub struct FrameReader<B> {
    storage: B,
    format: HeaderFormat,
    /// Start of the first whole frame not yet consumed.
    head: usize,
    /// End of the whole frames found; the frame being assembled starts here.
    scan: usize,
    /// End of the bytes received.
    end: usize,
    /// Header plus body of the frame being assembled at `scan`, once its header
    /// has arrived; 0 before. Lets a read that does not complete it skip the scan.
    pending_total: usize,
    /// Set once a header was oversize: no more input until reset.
    poisoned: Option<ReadError>,
    stats: ReadStats,
}

impl<const N: usize> FrameReader<[u8; N]> {
    /// A reader whose storage is an array inside it, so it can be a `static` or sit
    /// in a struct with its capacity in the type.
    pub const fn new_array(format: HeaderFormat) -> Result<Self, FormatError> {
        if N < format.max_frame_len() {
            return Err(FormatError::StorageTooSmall {
                capacity: N,
                needed: format.max_frame_len(),
            });
        }
        Ok(Self::with_storage_unchecked([0; N], format))
    }
}

impl<B> FrameReader<B> {
    const fn with_storage_unchecked(storage: B, format: HeaderFormat) -> Self {
        Self {
            storage,
            format,
            head: 0,
            scan: 0,
            end: 0,
            pending_total: 0,
            poisoned: None,
            stats: ReadStats::ZERO,
        }
    }

    /// The header format this reader expects.
    pub const fn format(&self) -> HeaderFormat {
        self.format
    }

    /// The counters so far.
    pub const fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The error that stopped the reader: an oversize header, or a frame cut
    /// short by the end of the stream ([`finish`](Self::finish)).
    pub const fn error(&self) -> Option<ReadError> {
        self.poisoned
    }

    /// Gives back the storage.
    pub fn into_storage(self) -> B {
        self.storage
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> FrameReader<B> {
    /// A reader over `storage`, which must hold at least one whole frame of the
    /// maximum length.
    pub fn new(storage: B, format: HeaderFormat) -> Result<Self, FormatError> {
        let capacity = storage.as_ref().len();
        if capacity < format.max_frame_len() {
            return Err(FormatError::StorageTooSmall {
                capacity,
                needed: format.max_frame_len(),
            });
        }
        Ok(Self::with_storage_unchecked(storage, format))
    }

    /// The storage's size in bytes.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Bytes held: whole frames not yet consumed plus the frame being assembled.
    pub fn buffered(&self) -> usize {
        self.end.saturating_sub(self.head)
    }

    /// Whether a whole frame is waiting to be taken.
    pub fn has_frame(&self) -> bool {
        self.head < self.scan
    }

    /// Whether bytes of an unfinished frame are held (the stream is mid-frame).
    pub fn is_mid_frame(&self) -> bool {
        self.scan < self.end
    }

    /// The bytes held of the unfinished frame, header first: empty at a frame
    /// boundary. A session looks here to learn, before the frame is whole, how long
    /// it will be and what its first body bytes say (a message type, say). After
    /// an oversize header, these are that header and whatever followed it.
    pub fn unfinished(&self) -> &[u8] {
        self.storage
            .as_ref()
            .get(self.scan..self.end)
            .unwrap_or_default()
    }

    /// Copies as many bytes of `data` as there is room for, and returns how many it
    /// took. The rest is the caller's to keep (in a socket's receive buffer, it just
    /// stays there). Returns `Ok(0)` when full: take frames out first.
    ///
    /// An oversize header stops the reader with [`ReadError::Oversize`]; the
    /// whole frames that came before it, in this call's bytes too, can still be
    /// taken ([`next_frame`](Self::next_frame)), and should be, before the error
    /// is acted on.
    ///
    /// Inside smoltcp's receive closure:
    ///
    /// ```
    /// # #[cfg(feature = "smoltcp")] {
    /// use smoltcp::socket::tcp;
    /// use smolsock::wire::frame::{FrameReader, ReadError};
    ///
    /// /// Moves what fits from the socket into the reader; the rest stays queued.
    /// fn pull(socket: &mut tcp::Socket<'_>, reader: &mut FrameReader<[u8; 1028]>) -> Result<usize, ReadError> {
    ///     socket
    ///         .recv(|bytes| match reader.feed(bytes) {
    ///             Ok(n) => (n, Ok(n)),
    ///             Err(e) => (0, Err(e)),
    ///         })
    ///         .unwrap_or(Ok(0))
    /// }
    /// # }
    /// ```
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, ReadError> {
        // The common case in a stream of large frames, kept small enough to
        // inline: the frame being assembled has its header already, the whole
        // frame fits where it is, and `data` does not complete it. One copy,
        // counted as a read that touched one frame, as `commit` would count it.
        let held = self.end.saturating_sub(self.scan);
        if self.poisoned.is_none()
            && self.pending_total != 0
            && self.scan.saturating_add(self.pending_total) <= self.capacity()
            && data.len() < self.pending_total.saturating_sub(held)
            && !data.is_empty()
        {
            let end = self.end.saturating_add(data.len());
            if let Some(space) = self.storage.as_mut().get_mut(self.end..end) {
                space.copy_from_slice(data);
                self.end = end;
                self.stats.reads = self.stats.reads.saturating_add(1);
                self.stats.bytes = self.stats.bytes.saturating_add(data.len() as u64);
                return Ok(data.len());
            }
        }
        self.feed_slow(data)
    }

    /// [`feed`](Self::feed) in general.
    #[inline(never)]
    fn feed_slow(&mut self, data: &[u8]) -> Result<usize, ReadError> {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let n = copy_prefix(data, self.receive_buffer());
        self.commit(n)?;
        Ok(n)
    }

    /// Like [`feed`](Self::feed), but each whole frame that lies in `input` goes to
    /// `take` where it is, with no copy: `take` returns `true` once it has dealt
    /// with the frame, or `false` to leave it (and everything after it) to the
    /// storage, as `feed` would. A frame held in part from an earlier read is first
    /// completed from `input` (only its missing bytes are copied) and offered to
    /// `take` from the storage; whole frames held and not yet taken keep their
    /// turn, and `input` then goes to the storage behind them. The bytes after the
    /// last whole frame go to the storage. Returns how many bytes of `input` were
    /// taken; the counters are those of one read. On an error (an oversize
    /// header), the whole frames before it have been handed to `take` already.
    ///
    /// ```
    /// use smolsock::wire::frame::{FrameReader, HeaderFormat};
    ///
    /// let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
    /// let mut reader = FrameReader::<[u8; 12]>::new_array(format).unwrap();
    /// let mut seen = Vec::new();
    /// let mut take = |frame: &[u8]| {
    ///     seen.push(frame.to_vec());
    ///     true
    /// };
    /// // Two whole frames and the start of a third, in one read.
    /// let input = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 1, b'!', 0, 0];
    /// assert_eq!(reader.feed_in_place(&input, &mut take).unwrap(), input.len());
    /// assert_eq!(reader.buffered(), 2); // the third frame's first header bytes
    /// // The rest of the third frame, then a fourth.
    /// let input = [0, 3, b'y', b'o', b'u', 0, 0, 0, 1, b'?'];
    /// assert_eq!(reader.feed_in_place(&input, &mut take).unwrap(), input.len());
    /// assert_eq!(seen, [&b"hi"[..], b"!", b"you", b"?"]);
    /// assert_eq!((reader.stats().reads, reader.stats().split_frames), (2, 1));
    /// ```
    pub fn feed_in_place<F: FnMut(&[u8]) -> bool>(
        &mut self,
        input: &[u8],
        mut take: F,
    ) -> Result<usize, ReadError> {
        self.feed_in_place_until(
            input,
            |frame| {
                if take(frame) { Took::Yes } else { Took::No }
            },
        )
    }

    /// [`feed_in_place`](Self::feed_in_place) whose `take` may also say a
    /// frame was the last it takes ([`Took::Last`]): the read ends right after
    /// it, the rest of the input neither stored nor scanned (nor counted), and
    /// the count returned ends there.
    pub(crate) fn feed_in_place_until<F: FnMut(&[u8]) -> Took>(
        &mut self,
        input: &[u8],
        mut take: F,
    ) -> Result<usize, ReadError> {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let mut read = Read::default();
        let result = self.take_in_place(input, &mut take, &mut read);
        // Plain adds, here and for the counters of the frames this call takes
        // and stores: these u64 counters start at zero and never pass the bytes
        // fed in all (the reads: the calls), so none can come near 2^64 (16 EiB
        // fed, or as many calls).
        if read.taken > 0 {
            self.stats.reads = self.stats.reads.wrapping_add(1);
            if read.touched > 1 {
                self.stats.coalesced_reads = self.stats.coalesced_reads.wrapping_add(1);
            }
        }
        result.map(|()| read.taken)
    }

    fn take_in_place<F: FnMut(&[u8]) -> Took>(
        &mut self,
        input: &[u8],
        take: &mut F,
        read: &mut Read,
    ) -> Result<(), ReadError> {
        let header_len = self.format.header_len();
        if self.head != self.end {
            if self.head != self.scan {
                // Whole frames wait to be taken: the input queues behind them.
                return self.fill(input, read);
            }
            if self.complete_held(input, read, header_len) {
                // The frame held is whole, and the storage holds it only.
                let body_start = self.head.saturating_add(header_len);
                let body = self.storage.as_ref().get(body_start..self.scan);
                let took = body.map_or(Took::No, &mut *take);
                if took == Took::No {
                    let rest = input.get(read.taken..).unwrap_or_default();
                    return self.fill(rest, read);
                }
                // `consume`, which empties the storage.
                self.head = 0;
                self.scan = 0;
                self.end = 0;
                if took == Took::Last {
                    return Ok(());
                }
            } else if self.complete_held_slow(input, take, read, header_len)? != Took::Yes {
                return Ok(());
            }
        }
        let (mut frames, mut body_bytes, mut bytes) = (0u64, 0u64, 0u64);
        let mut last = false;
        loop {
            let rest = input.get(read.taken..).unwrap_or_default();
            // No whole header, an oversize one (the storage refuses and counts
            // it), or a frame cut by the end of the input: to the storage.
            let Some(len) = self
                .format
                .decode(rest)
                .filter(|&len| len <= self.format.max_len)
            else {
                break;
            };
            let total = header_len.saturating_add(len as usize);
            let Some(body) = rest.get(header_len..total) else {
                break;
            };
            let took = take(body);
            if took == Took::No {
                break;
            }
            read.taken = read.taken.saturating_add(total);
            read.touched = read.touched.saturating_add(1);
            frames = frames.wrapping_add(1);
            body_bytes = body_bytes.wrapping_add(u64::from(len));
            bytes = bytes.wrapping_add(total as u64);
            if took == Took::Last {
                last = true;
                break;
            }
        }
        let stats = &mut self.stats;
        stats.frames = stats.frames.wrapping_add(frames);
        stats.body_bytes = stats.body_bytes.wrapping_add(body_bytes);
        stats.bytes = stats.bytes.wrapping_add(bytes);
        if last {
            return Ok(());
        }
        let rest = input.get(read.taken..).unwrap_or_default();
        if self.end == 0 && self.pending_total == 0 && self.poisoned.is_none() {
            self.fill_empty(rest, read)
        } else {
            self.fill(rest, read)
        }
    }

    /// [`fill`](Self::fill) into empty storage, the usual place of the frame the
    /// end of the input cut: nothing to move first, and, once its header is in,
    /// its length is all the scan has to learn.
    #[inline(always)]
    fn fill_empty(&mut self, data: &[u8], read: &mut Read) -> Result<(), ReadError> {
        let n = data.len().min(self.capacity());
        let (Some(src), Some(dst)) = (data.get(..n), self.storage.as_mut().get_mut(..n)) else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        dst.copy_from_slice(src);
        self.end = n;
        // A plain add (see `feed_in_place`).
        self.stats.bytes = self.stats.bytes.wrapping_add(n as u64);
        read.taken = read.taken.saturating_add(n);
        let total = self
            .format
            .decode(src)
            .filter(|&len| len <= self.format.max_len)
            .map(|len| self.format.header_len().saturating_add(len as usize));
        match total {
            // A frame begun: its header checked, its end not in yet.
            Some(total) if n < total => {
                self.pending_total = total;
                read.touched = read.touched.saturating_add(1);
                Ok(())
            }
            _ => self.scan_frames(0, &mut read.touched),
        }
    }

    /// The usual way a frame held in part ends: its header is in (its length
    /// known, `pending_total`), it fits where it lies, and `input` has the rest.
    /// Then its missing bytes are copied and it is counted as whole, as
    /// [`fill`](Self::fill) would count it, and `true`; else nothing changes.
    #[inline(always)]
    fn complete_held(&mut self, input: &[u8], read: &mut Read, header_len: usize) -> bool {
        let total = self.pending_total;
        let frame_end = self.scan.saturating_add(total);
        let need = frame_end.saturating_sub(self.end);
        let (Some(chunk), Some(space)) = (
            input.get(..need),
            self.storage.as_mut().get_mut(self.end..frame_end),
        ) else {
            return false;
        };
        if total == 0 || need == 0 {
            return false;
        }
        space.copy_from_slice(chunk);
        self.end = frame_end;
        self.scan = frame_end;
        self.pending_total = 0;
        // Plain adds (see `feed_in_place`).
        let stats = &mut self.stats;
        stats.bytes = stats.bytes.wrapping_add(need as u64);
        // Begun in an earlier read.
        stats.split_frames = stats.split_frames.wrapping_add(1);
        stats.frames = stats.frames.wrapping_add(1);
        let len = total.saturating_sub(header_len);
        stats.body_bytes = stats.body_bytes.wrapping_add(len as u64);
        read.taken = read.taken.saturating_add(need);
        read.touched = 1;
        true
    }

    /// A frame held in part that [`complete_held`](Self::complete_held) could
    /// not complete: its header cut, the input short of its end, or the storage
    /// to be moved first. Completes it with its missing bytes only, as far as
    /// there are, and offers it: [`Took::Yes`] if it was taken (the input's
    /// whole frames are next), else the input is dealt with ([`Took::Last`]:
    /// it was taken, and the read ends there).
    #[inline(never)]
    fn complete_held_slow<F: FnMut(&[u8]) -> Took>(
        &mut self,
        input: &[u8],
        take: &mut F,
        read: &mut Read,
        header_len: usize,
    ) -> Result<Took, ReadError> {
        read.touched = 1;
        while !self.has_frame() {
            let held = self.end.saturating_sub(self.scan);
            let pending = self.storage.as_ref().get(self.scan..self.end);
            let need = match pending.and_then(|bytes| self.format.decode(bytes)) {
                Some(len) => header_len.saturating_add(len as usize),
                None => header_len,
            }
            .saturating_sub(held);
            if need == 0 {
                break; // cannot be while no frame is whole; never loop on it
            }
            let rest = input.get(read.taken..).unwrap_or_default();
            let chunk = rest.get(..need.min(rest.len())).unwrap_or_default();
            let before = read.taken;
            // Only the held frame's bytes: one frame touched, even when its
            // header turns out oversize.
            let filled = self.fill(chunk, read);
            read.touched = 1;
            filled?;
            if read.taken.saturating_sub(before) < need {
                return Ok(Took::No); // the input, or the storage, ran out
            }
        }
        let took = self.frame().map_or(Took::No, &mut *take);
        if took == Took::No {
            let rest = input.get(read.taken..).unwrap_or_default();
            self.fill(rest, read)?;
            return Ok(Took::No);
        }
        self.consume();
        Ok(took)
    }

    /// Copies what fits of `data` into the storage and finds the frames it
    /// completes, as part of `read`; the caller counts the read itself.
    fn fill(&mut self, data: &[u8], read: &mut Read) -> Result<(), ReadError> {
        let n = copy_prefix(data, self.receive_buffer());
        let n = n.min(self.capacity().saturating_sub(self.end));
        if n == 0 {
            return Ok(());
        }
        let read_start = self.end;
        self.end = self.end.saturating_add(n);
        self.stats.bytes = self.stats.bytes.saturating_add(n as u64);
        read.taken = read.taken.saturating_add(n);
        self.scan_frames(read_start, &mut read.touched)
    }

    /// The free storage to fill next (for example with `tcp::Socket::recv_slice`),
    /// after which [`commit`](Self::commit) says how much was written. Empty when the
    /// reader is full or stopped.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if self.poisoned.is_some() {
            return &mut [];
        }
        self.make_room();
        let end = self.end;
        self.storage.as_mut().get_mut(end..).unwrap_or(&mut [])
    }

    /// Accepts `n` bytes written at the start of [`receive_buffer`](Self::receive_buffer)
    /// and finds the frames they complete. `n` beyond the free room is clamped.
    /// As with [`feed`](Self::feed), the whole frames before an oversize header
    /// can still be taken after the error.
    pub fn commit(&mut self, n: usize) -> Result<(), ReadError> {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let room = self.capacity().saturating_sub(self.end);
        let n = n.min(room);
        if n == 0 {
            return Ok(());
        }
        let read_start = self.end;
        self.end = self.end.saturating_add(n);
        self.stats.reads = self.stats.reads.saturating_add(1);
        self.stats.bytes = self.stats.bytes.saturating_add(n as u64);
        let mut touched = 0;
        let scanned = self.scan_frames(read_start, &mut touched);
        if touched > 1 {
            self.stats.coalesced_reads = self.stats.coalesced_reads.saturating_add(1);
        }
        scanned
    }

    /// The whole frame at the front, left in place until [`consume`](Self::consume).
    pub fn frame(&self) -> Option<&[u8]> {
        let (body_start, body_end) = self.front_frame()?;
        self.storage.as_ref().get(body_start..body_end)
    }

    /// Drops the frame at the front (the one [`frame`](Self::frame) showed).
    pub fn consume(&mut self) {
        if let Some((_, body_end)) = self.front_frame() {
            self.head = body_end;
            self.rewind_if_empty();
        }
    }

    /// Takes the frame at the front. The slice stays valid until the reader is
    /// next changed.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        let (body_start, body_end) = self.front_frame()?;
        self.head = body_end;
        self.rewind_if_empty();
        self.storage.as_ref().get(body_start..body_end)
    }

    /// Says the stream has ended (the peer closed). `Ok` if it ended on a frame
    /// boundary; [`ReadError::Truncated`] (counted once, however often this is
    /// asked: it stops the reader) if a frame was cut short. Whole frames already
    /// found can still be taken.
    pub fn finish(&mut self) -> Result<(), ReadError> {
        self.stop_mid_frame(false)
    }

    /// Says the peer has stopped inside a frame for longer than the session
    /// allows it. `Ok` on a frame boundary; [`ReadError::Stalled`] (counted
    /// once: it stops the reader) if a frame is unfinished. Whole frames
    /// already found can still be taken.
    pub fn stall(&mut self) -> Result<(), ReadError> {
        self.stop_mid_frame(true)
    }

    /// Counts `n` bytes a session dropped after the stream broke.
    pub(crate) fn count_discarded(&mut self, n: usize) {
        self.stats.count_discarded(n);
    }

    /// Drops every byte held (whole frames and the one being assembled),
    /// counted as discarded: the session will take no more frames.
    pub(crate) fn drop_held(&mut self) {
        self.count_discarded(self.end.saturating_sub(self.head));
        self.empty_storage();
    }

    /// The stream stops inside a frame, the peer having ended it or (`stalled`)
    /// stalled: the error, counted and kept; `Ok` on a frame boundary.
    fn stop_mid_frame(&mut self, stalled: bool) -> Result<(), ReadError> {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let received = self.end.saturating_sub(self.scan);
        if received == 0 {
            return Ok(());
        }
        let expected = self
            .storage
            .as_ref()
            .get(self.scan..self.end)
            .and_then(|bytes| self.format.decode(bytes))
            .map(|len| (len as usize).saturating_add(self.format.header_len()));
        let error = self.stats.stopped(stalled, received, expected);
        self.poisoned = Some(error);
        Err(error)
    }

    /// Forgets all bytes held and any error, to start a new stream. Counters stay.
    pub fn reset(&mut self) {
        self.empty_storage();
        self.poisoned = None;
    }

    /// Forgets every byte the storage holds.
    fn empty_storage(&mut self) {
        self.head = 0;
        self.scan = 0;
        self.end = 0;
        self.pending_total = 0;
    }

    /// The body range of the whole frame at `head`, if there is one.
    fn front_frame(&self) -> Option<(usize, usize)> {
        if self.head >= self.scan {
            return None;
        }
        let bytes = self.storage.as_ref().get(self.head..self.scan)?;
        let len = self.format.decode(bytes)? as usize;
        let body_start = self.head.checked_add(self.format.header_len())?;
        let body_end = body_start.checked_add(len)?;
        (body_end <= self.scan).then_some((body_start, body_end))
    }

    /// Walks the frames that the bytes from `read_start` on have completed, and
    /// adds to `touched` how many frames those bytes touched (for the coalesced
    /// counter), an oversize header's included: the frames before it count
    /// even when it stops the reader.
    fn scan_frames(&mut self, read_start: usize, touched: &mut u32) -> Result<(), ReadError> {
        // The frame being assembled is still short of its length, known from its
        // header: the bytes just read touched that one frame, and nothing else
        // changes. (The header was checked against the maximum when it arrived.)
        if self.pending_total != 0 && self.end.saturating_sub(self.scan) < self.pending_total {
            *touched = touched.saturating_add(1);
            return Ok(());
        }
        self.pending_total = 0;
        let header_len = self.format.header_len();
        let mut frames_in_read = 0u32;
        while let Some(pending) = self.storage.as_ref().get(self.scan..self.end) {
            if pending.is_empty() {
                break;
            }
            let Some(len) = self.format.decode(pending) else {
                frames_in_read = frames_in_read.saturating_add(1);
                break;
            };
            if len > self.format.max_len {
                let error = ReadError::Oversize {
                    len,
                    max: self.format.max_len,
                };
                self.poisoned = Some(error);
                self.stats.oversize = self.stats.oversize.saturating_add(1);
                *touched = touched.saturating_add(frames_in_read).saturating_add(1);
                return Err(error);
            }
            let total = header_len.saturating_add(len as usize);
            frames_in_read = frames_in_read.saturating_add(1);
            if pending.len() < total {
                self.pending_total = total;
                break;
            }
            if self.scan < read_start {
                self.stats.split_frames = self.stats.split_frames.saturating_add(1);
            }
            self.scan = self.scan.saturating_add(total);
            self.stats.frames = self.stats.frames.saturating_add(1);
            self.stats.body_bytes = self.stats.body_bytes.saturating_add(u64::from(len));
        }
        *touched = touched.saturating_add(frames_in_read);
        Ok(())
    }

    /// Once everything held is consumed, starts again at the front of the storage.
    fn rewind_if_empty(&mut self) {
        if self.head == self.end {
            self.head = 0;
            self.scan = 0;
            self.end = 0;
            self.pending_total = 0;
        }
    }

    /// Moves held bytes to the front when the frame being assembled would not fit
    /// after them. Lazy on purpose: each frame is moved at most once, and only its
    /// first few bytes, since whole frames are normally consumed before more arrive.
    fn make_room(&mut self) {
        if self.head == 0 {
            return;
        }
        let capacity = self.capacity();
        let needed = match self
            .storage
            .as_ref()
            .get(self.scan..self.end)
            .and_then(|bytes| self.format.decode(bytes))
        {
            Some(len) => self.format.header_len().saturating_add(len as usize),
            None => self.format.header_len(),
        };
        if self.end < capacity && self.scan.saturating_add(needed) <= capacity {
            return;
        }
        let (head, end) = (self.head, self.end);
        self.storage.as_mut().copy_within(head..end, 0);
        self.scan = self.scan.saturating_sub(head);
        self.end = end.saturating_sub(head);
        self.head = 0;
    }
}

/// What a [`FrameReader::feed_in_place_until`] closure did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Took {
    /// Left it: it, and what follows, wait in the storage.
    No,
    /// Took it: the next frame is offered.
    Yes,
    /// Took it, and takes no more: the read ends after it.
    Last,
}

/// One read through [`FrameReader::feed_in_place`]: bytes of the input taken so
/// far, and how many frames they touched.
#[derive(Default)]
struct Read {
    taken: usize,
    touched: u32,
}

impl<B> fmt::Debug for FrameReader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("format", &self.format)
            .field("head", &self.head)
            .field("scan", &self.scan)
            .field("end", &self.end)
            .field("poisoned", &self.poisoned)
            .field("stats", &self.stats)
            .finish()
    }
}

/// What a [`FrameWriter`] has sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriteStats {
    /// Whole frames written.
    pub frames: u64,
    /// Body bytes of the whole frames written.
    pub body_bytes: u64,
    /// Bytes written, headers included.
    pub bytes: u64,
    /// Frames that took more than one write: the space ran out, or a body's
    /// filler (a `write_with` closure, a [`FrameSource::fill`]) gave less than
    /// the space it was offered.
    pub split_frames: u64,
    /// Writes that found no space at all (back-pressure).
    pub blocked_writes: u64,
    /// Frames refused as too large.
    pub too_large: u64,
}

impl WriteStats {
    /// Adds `other`'s counters to these (for a pool's totals), saturating.
    pub fn accumulate(&mut self, other: &WriteStats) {
        self.frames = self.frames.saturating_add(other.frames);
        self.body_bytes = self.body_bytes.saturating_add(other.body_bytes);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.split_frames = self.split_frames.saturating_add(other.split_frames);
        self.blocked_writes = self.blocked_writes.saturating_add(other.blocked_writes);
        self.too_large = self.too_large.saturating_add(other.too_large);
    }
}

/// How far one [`FrameWriter::write`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Bytes put in the output this call.
    pub written: usize,
    /// Whether the whole frame is now out.
    pub complete: bool,
}

/// A sender's frames, written in place one after another by
/// [`FrameWriter::write_frames`]: as many as the output holds in one call.
///
/// The source is asked for the length of its next frame, then for that frame's
/// body bytes, and is told when the frame is written whole; then it is asked for
/// the next. A sensor streaming samples, or a file going out in fixed-size
/// frames, is a source: no body is held anywhere but where the source keeps it.
pub trait FrameSource {
    /// The body length of the next frame, or `None` while there is none to send.
    /// Until that frame is [`sent`](Self::sent), asking again must give the same
    /// length: while it is half written, another length, or `None`, is refused
    /// with [`WriteError::Busy`]. The writer can check only the length, so the
    /// source that began a frame must be the one that finishes it; a frame
    /// begun by [`FrameWriter::write_with`] or [`FrameWriter::write`] is not a
    /// source's to finish, nor the other way round (both refused with `Busy`).
    fn next_len(&mut self) -> Option<usize>;

    /// Writes body bytes `offset..` of the current frame into `space` (never
    /// longer than the rest of its body) and returns how many it wrote. Writing
    /// fewer than `space` holds means the frame waits for more: the call stops
    /// there, and the next one asks from where this one stopped. Claiming more
    /// than `space` is refused with [`WriteError::Overrun`].
    fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize;

    /// The current frame is written whole: [`next_len`](Self::next_len) is now
    /// about the next one.
    fn sent(&mut self);
}

/// Why [`FrameWriter::write_frames`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BatchEnd {
    /// The source has no frame to send: everything it gave is written whole.
    Drained,
    /// The output is full, or the source wrote less than the space it was given;
    /// a frame may be half written, and the next call goes on with it.
    Blocked,
    /// The source's next frame was refused (too large for the format, another
    /// length while one is half written, or a `fill` claiming more than its
    /// space); nothing of that call's part of it counts. The frames before it
    /// were written.
    Refused(WriteError),
}

/// What one [`FrameWriter::write_frames`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Batch {
    /// Bytes put in the output, headers included.
    pub written: usize,
    /// Frames written whole (each one [`sent`](FrameSource::sent)).
    pub frames: usize,
    /// Why it stopped.
    pub end: BatchEnd,
}

/// Writes frames into whatever send space there is, remembering its place.
///
/// The writer holds no copy of the body: the caller passes the same body on every
/// call until the frame is complete (for an echo, the frame still sitting in the
/// [`FrameReader`]). This is Python's `sendall` without blocking: each call puts out
/// as much as fits and the frame is never dropped or reordered.
///
/// Only the body's length is checked from call to call (it is in the header
/// already sent): a body whose bytes changed between two calls goes out as the
/// part already written followed by the rest of the new one, a frame neither
/// body was. Holding the body unchanged is the caller's part, as keeping a
/// buffer unchanged until `sendall` returns is in Python. Where it cannot be
/// promised (an answer made again after a wait), use a session
/// ([`session::Framed`](crate::session::Framed)): it takes each frame whole in
/// one call, into the send space and its own queue, so no caller can splice
/// two.
///
/// ```
/// use smolsock::wire::frame::{FrameWriter, HeaderFormat};
///
/// let mut writer = FrameWriter::new(HeaderFormat::NETWORK);
/// let mut space = [0u8; 4];
/// let first = writer.write(b"hello", &mut space).unwrap();
/// assert_eq!((first.written, first.complete), (4, false));
/// assert_eq!(space, [0, 0, 0, 5]);
/// let rest = writer.write(b"hello", &mut space).unwrap();
/// assert_eq!((rest.written, rest.complete), (4, false));
/// assert_eq!(&space, b"hell");
/// assert!(writer.write(b"hello", &mut space).unwrap().complete);
/// ```
#[derive(Clone, Debug)]
pub struct FrameWriter {
    format: HeaderFormat,
    header: Header,
    /// Body length of the frame in progress.
    body_len: usize,
    /// Bytes of the frame in progress already out, header included.
    sent: usize,
    in_progress: bool,
    /// The frame in progress was begun by [`write_frames`](Self::write_frames):
    /// only a source finishes it, and a source finishes no other.
    by_source: bool,
    stats: WriteStats,
}

impl FrameWriter {
    /// A writer of frames in `format`.
    pub const fn new(format: HeaderFormat) -> Self {
        Self {
            format,
            header: Header::EMPTY,
            body_len: 0,
            sent: 0,
            in_progress: false,
            by_source: false,
            stats: WriteStats {
                frames: 0,
                body_bytes: 0,
                bytes: 0,
                split_frames: 0,
                blocked_writes: 0,
                too_large: 0,
            },
        }
    }

    /// The header format written.
    pub const fn format(&self) -> HeaderFormat {
        self.format
    }

    /// The counters so far.
    pub const fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// Whether a frame is half written.
    pub const fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// The refusal the next frame, of `next` body bytes (`None`: no frame),
    /// would meet when there is room, said without beginning it (for a sender
    /// that finds no room at all): over the maximum (counted, as
    /// [`begin`](Self::begin) counts it), or not the frame half written
    /// (`by_source`: offered by a [`FrameSource`], else by `send_with`).
    #[inline]
    pub(crate) fn refusal(&mut self, next: Option<usize>, by_source: bool) -> Option<WriteError> {
        if self.in_progress {
            return (self.by_source != by_source || next != Some(self.body_len)).then_some(
                WriteError::Busy {
                    in_progress: self.body_len,
                },
            );
        }
        let body_len = next?;
        let max = self.format.max_len();
        if u32::try_from(body_len).is_ok_and(|len| len <= max) {
            return None;
        }
        self.stats.too_large = self.stats.too_large.saturating_add(1);
        Some(WriteError::TooLarge { len: body_len, max })
    }

    /// Bytes of the frame in progress still to go out, header included.
    pub fn remaining(&self) -> usize {
        if !self.in_progress {
            return 0;
        }
        self.frame_len().saturating_sub(self.sent)
    }

    /// Writes the next bytes of the frame carrying `body` into `out`.
    ///
    /// Starts the frame if none is in progress. Call again with the same body until
    /// [`Progress::complete`]. A body of another length while a frame is in
    /// progress is refused with [`WriteError::Busy`].
    pub fn write(&mut self, body: &[u8], out: &mut [u8]) -> Result<Progress, WriteError> {
        self.begin(body.len())?;
        Ok(self.write_begun(body, out))
    }

    /// Writes the next bytes of a frame whose `body_len`-byte body is produced in
    /// place: the header first, then `fill(offset, space)` writes body bytes from
    /// `offset` (in the body) into `space` and returns how many it wrote. `space` is
    /// never longer than the body still owed, so a frame can never get more bytes
    /// than its header announced; a closure claiming more than `space` is refused
    /// with [`WriteError::Overrun`] (its bytes are not counted), and one that writes
    /// fewer simply leaves the rest for the next call.
    ///
    /// Like [`write`](Self::write), call again with the same `body_len` until
    /// [`Progress::complete`]; the writer remembers the offset. A frame that is
    /// never completed stays [`in_progress`](Self::in_progress), and
    /// [`finish`](Self::finish) reports it.
    ///
    /// ```
    /// use smolsock::wire::frame::{FrameWriter, HeaderFormat};
    ///
    /// // A 6-byte body produced on the fly, into 5 bytes of space per call.
    /// let mut writer = FrameWriter::new(HeaderFormat::NETWORK);
    /// let mut wire = Vec::new();
    /// loop {
    ///     let mut space = [0u8; 5];
    ///     let progress = writer
    ///         .write_with(6, &mut space, |offset, body| {
    ///             for (i, byte) in body.iter_mut().enumerate() {
    ///                 *byte = b'a' + (offset + i) as u8;
    ///             }
    ///             body.len()
    ///         })
    ///         .unwrap();
    ///     wire.extend_from_slice(&space[..progress.written]);
    ///     if progress.complete {
    ///         break;
    ///     }
    /// }
    /// assert_eq!(wire, b"\0\0\0\x06abcdef");
    /// assert_eq!(writer.finish(), Ok(()));
    /// ```
    pub fn write_with<F>(
        &mut self,
        body_len: usize,
        out: &mut [u8],
        fill: F,
    ) -> Result<Progress, WriteError>
    where
        F: FnMut(usize, &mut [u8]) -> usize,
    {
        self.begin(body_len)?;
        self.write_begun_with(out, fill)
    }

    /// Writes the frames of `source` into `out`, one after another, until `out`
    /// is full, the source has none left, or its `fill` writes short: several
    /// small frames in one piece of send space.
    ///
    /// A frame half written when `out` fills goes on at the next call, as with
    /// [`write_with`](Self::write_with). With no room left for a frame's first
    /// byte, the source is only asked whether it has one ([`BatchEnd::Blocked`]
    /// if so, [`BatchEnd::Drained`] if not); a frame is never begun without a
    /// byte of it written, so a caller that stops there owes nothing.
    ///
    /// ```
    /// use smolsock::wire::frame::{BatchEnd, ByteOrder, FrameSource, FrameWriter, HeaderFormat, HeaderWidth};
    ///
    /// /// Three readings of a sensor, each a 2-byte frame.
    /// struct Readings {
    ///     values: [u16; 3],
    ///     next: usize,
    /// }
    ///
    /// impl FrameSource for Readings {
    ///     fn next_len(&mut self) -> Option<usize> {
    ///         (self.next < self.values.len()).then_some(2)
    ///     }
    ///     fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
    ///         let bytes = self.values[self.next].to_be_bytes();
    ///         let n = space.len();
    ///         space.copy_from_slice(&bytes[offset..offset + n]);
    ///         n
    ///     }
    ///     fn sent(&mut self) {
    ///         self.next += 1;
    ///     }
    /// }
    ///
    /// let mut readings = Readings { values: [1, 2, 0x0304], next: 0 };
    /// let format = HeaderFormat::new(HeaderWidth::U8, ByteOrder::Big, 255).unwrap();
    /// let mut writer = FrameWriter::new(format);
    /// // Room for two frames and a half: the third goes on in the next space.
    /// let mut out = [0u8; 8];
    /// let batch = writer.write_frames(&mut out, &mut readings);
    /// assert_eq!((batch.written, batch.frames, batch.end), (8, 2, BatchEnd::Blocked));
    /// assert_eq!(out, [2, 0, 1, 2, 0, 2, 2, 3]);
    /// let batch = writer.write_frames(&mut out, &mut readings);
    /// assert_eq!((batch.written, batch.frames, batch.end), (1, 1, BatchEnd::Drained));
    /// assert_eq!(out[0], 4);
    /// assert_eq!(writer.finish(), Ok(()));
    /// ```
    pub fn write_frames<S: FrameSource + ?Sized>(
        &mut self,
        out: &mut [u8],
        source: &mut S,
    ) -> Batch {
        let mut batch = Batch {
            written: 0,
            frames: 0,
            end: BatchEnd::Blocked,
        };
        // A frame half written from an earlier call must be the source's own,
        // and the source must still say so (its length, once); it goes on first.
        if self.in_progress {
            let next = source.next_len();
            if !self.by_source || next != Some(self.body_len) {
                batch.end = BatchEnd::Refused(WriteError::Busy {
                    in_progress: self.body_len,
                });
                return batch;
            }
            if out.is_empty() {
                self.count_blocked(out);
                return batch;
            }
            // As `write_begun_with`: the header's bytes still owed (usually none),
            // then body bytes from the source.
            let header_len = usize::from(self.header.len);
            let mut written = 0;
            if self.sent < header_len
                && let Some(pending) = self.header.as_bytes().get(self.sent..)
            {
                written = copy_prefix(pending, out);
            }
            let offset = self.sent.saturating_add(written).saturating_sub(header_len);
            let space = out.get_mut(written..).unwrap_or_default();
            let room = space.len().min(self.body_len.saturating_sub(offset));
            let claimed = match space.get_mut(..room) {
                Some(space) if room > 0 => source.fill(offset, space),
                _ => 0,
            };
            if claimed > room {
                // Nothing of this call's part counts; the bytes out before are
                // still owed.
                self.forget_unstarted();
                batch.end = BatchEnd::Refused(WriteError::Overrun {
                    claimed,
                    space: room,
                });
                return batch;
            }
            // At most `out.len()`.
            batch.written = written.wrapping_add(claimed);
            if !self.advance(batch.written).complete {
                // `out` is full, or the source had no more bytes yet.
                return batch;
            }
            batch.frames = 1;
            source.sent();
        }
        // Then each new frame is asked for. The counters of the frames written
        // whole here are kept in locals and added once: none can overflow, each
        // being at most `out.len()` (every frame takes at least a byte of it).
        let mut bytes = 0usize;
        let mut frames = 0u64;
        let mut body_bytes = 0u64;
        loop {
            let space = out.get_mut(batch.written..).unwrap_or_default();
            let Some(len) = source.next_len() else {
                batch.end = BatchEnd::Drained;
                break;
            };
            if space.is_empty() {
                // No room for a byte of it: not begun, so nothing is owed; a frame
                // that could never go is refused now all the same.
                if let Some(error) = self.refusal(Some(len), true) {
                    batch.end = BatchEnd::Refused(error);
                } else {
                    self.count_blocked(out);
                }
                break;
            }
            // `begin`, with no frame in progress.
            if let Err(error) = self.start(len) {
                batch.end = BatchEnd::Refused(error);
                break;
            }
            self.by_source = true;
            if !self.header.put(space) {
                // Room for only the first bytes of the header: they go, and the
                // frame is owed.
                let written = copy_prefix(self.header.as_bytes(), space);
                batch.written = batch.written.wrapping_add(written);
                self.advance(written);
                break;
            }
            // The whole header went in one store; the body goes straight after it.
            let header_len = usize::from(self.header.len);
            let body_space = space.get_mut(header_len..).unwrap_or_default();
            let room = body_space.len().min(len);
            let claimed = match body_space.get_mut(..room) {
                // An empty body, or no room after the header: nothing to ask for.
                Some(body) if room > 0 => source.fill(0, body),
                _ => 0,
            };
            if claimed > room {
                // Nothing of it counts, not even the header: not owed.
                self.forget_unstarted();
                batch.end = BatchEnd::Refused(WriteError::Overrun {
                    claimed,
                    space: room,
                });
                break;
            }
            // The frame's bytes here: at most `space.len()`.
            let written = header_len.wrapping_add(claimed);
            self.sent = written;
            bytes = bytes.wrapping_add(written);
            batch.written = batch.written.wrapping_add(written);
            if claimed < len {
                // `out` is full, or the source had no more bytes yet.
                break;
            }
            // Written whole in one call: not split.
            self.in_progress = false;
            frames = frames.wrapping_add(1);
            body_bytes = body_bytes.wrapping_add(len as u64);
            batch.frames = batch.frames.wrapping_add(1);
            source.sent();
        }
        // Plain adds: these u64 counters grow by at most `out.len()` a call, so
        // none can come near 2^64 (16 EiB written).
        let stats = &mut self.stats;
        stats.bytes = stats.bytes.wrapping_add(bytes as u64);
        stats.frames = stats.frames.wrapping_add(frames);
        stats.body_bytes = stats.body_bytes.wrapping_add(body_bytes);
        batch
    }

    /// Says the caller has no more frames to write: `Ok` on a frame boundary,
    /// [`WriteError::Busy`] if a frame is half written (its header announced bytes
    /// that never came). The writer is left as it was.
    pub fn finish(&self) -> Result<(), WriteError> {
        if self.in_progress {
            return Err(WriteError::Busy {
                in_progress: self.body_len,
            });
        }
        Ok(())
    }

    /// Starts a frame with a body of `body_len` bytes, unless one of that length is
    /// already in progress: the checks of [`write`](Self::write), made once before
    /// the copying, so a caller inside a socket's `send` closure has nothing to fail.
    pub(crate) fn begin(&mut self, body_len: usize) -> Result<(), WriteError> {
        if self.in_progress {
            if body_len != self.body_len || self.by_source {
                return Err(WriteError::Busy {
                    in_progress: self.body_len,
                });
            }
            return Ok(());
        }
        self.start(body_len)
    }

    /// [`begin`](Self::begin) with no frame in progress.
    #[inline]
    fn start(&mut self, body_len: usize) -> Result<(), WriteError> {
        self.header = self.format.header_inline(body_len).inspect_err(|_| {
            self.stats.too_large = self.stats.too_large.saturating_add(1);
        })?;
        self.body_len = body_len;
        self.sent = 0;
        self.in_progress = true;
        self.by_source = false;
        Ok(())
    }

    /// Writes the next bytes of the frame [`begin`](Self::begin) started, whose body
    /// is `body`. With no frame in progress, writes nothing and says it is complete.
    pub(crate) fn write_begun(&mut self, body: &[u8], out: &mut [u8]) -> Progress {
        if !self.in_progress {
            return Progress {
                written: 0,
                complete: true,
            };
        }
        if out.is_empty() {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
            return Progress {
                written: 0,
                complete: false,
            };
        }

        // `sent` counts through the header and then the body, as on the wire.
        let header_len = usize::from(self.header.len);
        let mut written = 0;
        if self.sent == 0 && self.header.put(out) {
            written = header_len;
        } else if self.sent < header_len
            && let Some(pending) = self.header.as_bytes().get(self.sent..)
        {
            written = copy_prefix(pending, out);
        }
        let body_from = self.sent.saturating_add(written).saturating_sub(header_len);
        if let (Some(pending), Some(space)) = (body.get(body_from..), out.get_mut(written..)) {
            written = written.saturating_add(copy_prefix(pending, space));
        }
        self.advance(written)
    }

    /// [`write_with`](Self::write_with) after [`begin`](Self::begin): the header's
    /// next bytes, then body bytes from `fill`. With no frame in progress, writes
    /// nothing and says it is complete.
    pub(crate) fn write_begun_with<F>(
        &mut self,
        out: &mut [u8],
        mut fill: F,
    ) -> Result<Progress, WriteError>
    where
        F: FnMut(usize, &mut [u8]) -> usize,
    {
        if !self.in_progress {
            return Ok(Progress {
                written: 0,
                complete: true,
            });
        }
        if out.is_empty() {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
            return Ok(Progress {
                written: 0,
                complete: false,
            });
        }
        let header_len = usize::from(self.header.len);
        let mut written = 0;
        if self.sent == 0 && self.header.put(out) {
            written = header_len;
        } else if self.sent < header_len
            && let Some(pending) = self.header.as_bytes().get(self.sent..)
        {
            written = copy_prefix(pending, out);
        }
        let offset = self.sent.saturating_add(written).saturating_sub(header_len);
        let owed = self.body_len.saturating_sub(offset);
        let mut overrun = None;
        if let Some(space) = out.get_mut(written..) {
            let space_len = space.len().min(owed);
            if let Some(space) = space.get_mut(..space_len) {
                // An empty body, or no room after the header: nothing to ask for.
                if !space.is_empty() {
                    let claimed = fill(offset, space);
                    if claimed > space_len {
                        overrun = Some(WriteError::Overrun {
                            claimed,
                            space: space_len,
                        });
                    } else {
                        written = written.saturating_add(claimed);
                    }
                }
            }
        }
        // Nothing of a call with an overrun counts, not even header bytes, so the
        // caller has nothing to commit and the next call writes the same bytes again.
        match overrun {
            Some(error) => Err(error),
            None => Ok(self.advance(written)),
        }
    }

    /// Counts a write that found no space at all (not one that filled it).
    fn count_blocked(&mut self, out: &[u8]) {
        if out.is_empty() {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
        }
    }

    /// Counts `written` more bytes of the frame in progress as out.
    fn advance(&mut self, written: usize) -> Progress {
        self.sent = self.sent.saturating_add(written);
        self.stats.bytes = self.stats.bytes.saturating_add(written as u64);
        let complete = self.sent >= self.frame_len();
        if complete {
            self.in_progress = false;
            self.stats.frames = self.stats.frames.saturating_add(1);
            self.stats.body_bytes = self.stats.body_bytes.saturating_add(self.body_len as u64);
            if written < self.frame_len() {
                self.stats.split_frames = self.stats.split_frames.saturating_add(1);
            }
        }
        Progress { written, complete }
    }

    /// Forgets the frame in progress if none of its bytes went out yet: the
    /// caller may then start any frame, or finish.
    pub(crate) fn forget_unstarted(&mut self) {
        if self.in_progress && self.sent == 0 {
            self.reset();
        }
    }

    /// Abandons the frame in progress (for example when the connection is gone).
    pub fn reset(&mut self) {
        self.in_progress = false;
        self.by_source = false;
        self.sent = 0;
        self.body_len = 0;
    }

    fn frame_len(&self) -> usize {
        usize::from(self.header.len).saturating_add(self.body_len)
    }
}

/// Copies as much of `src` as fits into the front of `dst`; returns the count.
#[inline]
fn copy_prefix(src: &[u8], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    if let (Some(dst), Some(src)) = (dst.get_mut(..n), src.get(..n)) {
        dst.copy_from_slice(src);
    }
    n
}

/// Encodes one whole frame into `out` and returns its length: a convenience for
/// tests and hosts that build a message in a buffer before sending it.
pub fn encode(format: HeaderFormat, body: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let header = format.header(body.len()).map_err(EncodeError::Frame)?;
    let header = header.as_bytes();
    let total = header.len().saturating_add(body.len());
    let available = out.len();
    let dst = out.get_mut(..total).ok_or(EncodeError::BufferTooSmall {
        needed: total,
        available,
    })?;
    let (dst_header, dst_body) = dst.split_at_mut(header.len());
    dst_header.copy_from_slice(header);
    dst_body.copy_from_slice(body);
    Ok(total)
}

/// Why [`encode`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame itself was refused.
    Frame(WriteError),
    /// The output buffer is too small for header plus body.
    BufferTooSmall {
        /// Header plus body.
        needed: usize,
        /// The buffer's length.
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Frame(e) => e.fmt(f),
            EncodeError::BufferTooSmall { needed, available } => {
                write!(f, "frame needs {needed} bytes, buffer has {available}")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::macros::bounded_while_let;

    fn fmt(width: HeaderWidth, order: ByteOrder, max: u32) -> HeaderFormat {
        HeaderFormat::new(width, order, max).unwrap()
    }

    /// A 600-byte reader; the format's maximum is lowered to fit if needed.
    fn reader(format: HeaderFormat) -> FrameReader<[u8; 600]> {
        let max = format.max_len().min((600 - format.header_len()) as u32);
        FrameReader::new([0; 600], format.with_max_len(max).unwrap()).unwrap()
    }

    fn collect<B: AsRef<[u8]> + AsMut<[u8]>>(r: &mut FrameReader<B>, out: &mut Vec<Vec<u8>>) {
        bounded_while_let!(Some(f) = r.next_frame() => {
            out.push(f.to_vec());
        });
    }

    #[test]
    fn header_fixtures_for_every_width_and_order() {
        let cases: &[(HeaderWidth, ByteOrder, usize, &[u8])] = &[
            (HeaderWidth::U8, ByteOrder::Big, 0xab, &[0xab]),
            (HeaderWidth::U8, ByteOrder::Little, 0xab, &[0xab]),
            (HeaderWidth::U16, ByteOrder::Big, 0x1234, &[0x12, 0x34]),
            (HeaderWidth::U16, ByteOrder::Little, 0x1234, &[0x34, 0x12]),
            (HeaderWidth::U32, ByteOrder::Big, 0x0102_0304, &[1, 2, 3, 4]),
            (
                HeaderWidth::U32,
                ByteOrder::Little,
                0x0102_0304,
                &[4, 3, 2, 1],
            ),
        ];
        for &(width, order, len, bytes) in cases {
            let f = fmt(width, order, width.max_len());
            assert_eq!(
                f.header(len).unwrap().as_bytes(),
                bytes,
                "{width:?} {order:?}"
            );
            assert_eq!(f.decode(bytes), Some(len as u32), "{width:?} {order:?}");
            assert_eq!(f.decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    #[test]
    fn network_preset_matches_python_struct_pack_network_order() {
        // struct.pack('!I', 5) == b'\x00\x00\x00\x05'
        assert_eq!(
            HeaderFormat::NETWORK.header(5).unwrap().as_bytes(),
            &[0, 0, 0, 5]
        );
        // struct.pack('i', 5) == b'\x05\x00\x00\x00' on x86 and Arm
        assert_eq!(
            HeaderFormat::STRUCT_PACK_I.header(5).unwrap().as_bytes(),
            &[5, 0, 0, 0]
        );
        assert_eq!(HeaderFormat::default(), HeaderFormat::NETWORK);
    }

    #[test]
    fn format_refuses_a_maximum_the_width_cannot_express() {
        assert_eq!(
            HeaderFormat::new(HeaderWidth::U8, ByteOrder::Big, 256),
            Err(FormatError::MaxLenTooLarge {
                max_len: 256,
                limit: 255
            })
        );
        assert!(HeaderFormat::new(HeaderWidth::U16, ByteOrder::Big, 65_535).is_ok());
        // A whole frame of the largest 4-byte body is counted in a usize here;
        // on a 32-bit target the limit is 2^32 - 5 (the thumb size check
        // builds that case).
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            HeaderFormat::new(HeaderWidth::U32, ByteOrder::Big, u32::MAX)
                .map(|format| format.max_frame_len()),
            Ok(u32::MAX as usize + 4)
        );
    }

    #[test]
    fn reader_refuses_storage_smaller_than_one_frame() {
        let f = fmt(HeaderWidth::U16, ByteOrder::Big, 100);
        assert_eq!(
            FrameReader::new([0u8; 101], f).err(),
            Some(FormatError::StorageTooSmall {
                capacity: 101,
                needed: 102
            })
        );
        assert!(FrameReader::new([0u8; 102], f).is_ok());
        assert!(FrameReader::<[u8; 101]>::new_array(f).is_err());
        let mut slice = [0u8; 102];
        assert!(FrameReader::new(&mut slice[..], f).is_ok());
    }

    #[test]
    fn one_byte_at_a_time_yields_each_frame_once() {
        let f = HeaderFormat::NETWORK.with_max_len(100).unwrap();
        let mut stream = Vec::new();
        for body in [&b"hello"[..], b"", b"world!"] {
            stream.extend_from_slice(f.header(body.len()).unwrap().as_bytes());
            stream.extend_from_slice(body);
        }
        let mut r = reader(f);
        let mut frames = Vec::new();
        for b in &stream {
            assert_eq!(r.feed(core::slice::from_ref(b)), Ok(1));
            collect(&mut r, &mut frames);
        }
        assert_eq!(frames, [b"hello".to_vec(), vec![], b"world!".to_vec()]);
        assert_eq!(r.stats().frames, 3);
        // Every frame took several one-byte reads, none carried two frames.
        assert_eq!(r.stats().split_frames, 3);
        assert_eq!(r.stats().coalesced_reads, 0);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn many_frames_in_one_read_are_counted_as_coalesced() {
        let f = HeaderFormat::NETWORK;
        let mut stream = Vec::new();
        for i in 0..10u8 {
            stream.extend_from_slice(&[0, 0, 0, 1, i]);
        }
        let mut r = reader(f);
        assert_eq!(r.feed(&stream), Ok(50));
        let mut frames = Vec::new();
        collect(&mut r, &mut frames);
        assert_eq!(frames.len(), 10);
        assert!(frames.iter().enumerate().all(|(i, f)| f == &[i as u8]));
        assert_eq!(r.stats().coalesced_reads, 1);
        assert_eq!(r.stats().split_frames, 0);
        assert_eq!(r.stats().reads, 1);
    }

    #[test]
    fn a_header_cut_in_two_is_joined() {
        let f = fmt(HeaderWidth::U16, ByteOrder::Little, 1000);
        let mut r = reader(f);
        r.feed(&[3]).unwrap();
        assert!(r.next_frame().is_none());
        assert!(r.is_mid_frame());
        r.feed(&[0, b'a', b'b', b'c']).unwrap();
        assert_eq!(r.next_frame(), Some(&b"abc"[..]));
        assert_eq!(r.stats().split_frames, 1);
    }

    #[test]
    fn zero_length_frames_are_frames() {
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(r.next_frame(), Some(&b""[..]));
        assert_eq!(r.next_frame(), Some(&b""[..]));
        assert_eq!(r.next_frame(), None);
    }

    #[test]
    fn maximum_length_frame_fits_exactly_in_minimal_storage() {
        let f = fmt(HeaderWidth::U8, ByteOrder::Big, 255);
        let mut r = FrameReader::new([0u8; 256], f).unwrap();
        let mut stream = vec![255u8];
        stream.extend((0..255).map(|i| i as u8));
        stream.extend_from_slice(&[1, 42]);
        // Only the first frame fits; the reader takes exactly that much.
        assert_eq!(r.feed(&stream), Ok(256));
        assert_eq!(
            r.feed(&stream[256..]),
            Ok(0),
            "full: back-pressure, not loss"
        );
        assert_eq!(r.next_frame().map(<[u8]>::len), Some(255));
        assert_eq!(r.feed(&stream[256..]), Ok(2));
        assert_eq!(r.next_frame(), Some(&[42u8][..]));
    }

    #[test]
    fn a_read_of_whole_frames_then_an_oversize_header_is_counted_coalesced_on_every_path() {
        let f = fmt(HeaderWidth::U16, ByteOrder::Big, 10);
        let oversize = Some(ReadError::Oversize { len: 11, max: 10 });
        // Two whole frames, or one, then a header announcing 11 bytes: each
        // read carried bytes of more than one frame, the refused one included.
        for input in [&[0, 1, b'x', 0, 1, b'y', 0, 11][..], &[0, 1, b'x', 0, 11]] {
            let frames = (input.len() - 2) as u64 / 3;
            let mut fed = reader(f);
            assert_eq!(fed.feed(input).err(), oversize);
            let mut committed = reader(f);
            let n = copy_prefix(input, committed.receive_buffer());
            assert_eq!(committed.commit(n).err(), oversize);
            let mut in_place = reader(f);
            assert_eq!(in_place.feed_in_place(input, |_| true).err(), oversize);
            // In place behind a frame waiting in the storage (`take` refused
            // it), where the input goes through the storage too.
            let mut behind = reader(f);
            assert_eq!(behind.feed_in_place(&[0, 1, b'w'], |_| false), Ok(3));
            let before = *behind.stats();
            assert_eq!(behind.feed_in_place(input, |_| true).err(), oversize);
            for (path, r, base) in [
                ("feed", &fed, ReadStats::ZERO),
                ("commit", &committed, ReadStats::ZERO),
                ("in place", &in_place, ReadStats::ZERO),
                ("in place, behind a frame", &behind, before),
            ] {
                let stats = r.stats();
                assert_eq!(
                    (
                        stats.reads - base.reads,
                        stats.frames - base.frames,
                        stats.coalesced_reads - base.coalesced_reads,
                        stats.oversize - base.oversize,
                    ),
                    (1, frames, 1, 1),
                    "{path}, {} frames: {stats:?}",
                    frames
                );
            }
        }
    }

    #[test]
    fn a_header_cut_between_reads_and_found_oversize_is_one_frame_on_every_path() {
        let f = fmt(HeaderWidth::U16, ByteOrder::Big, 10);
        let oversize = Some(ReadError::Oversize { len: 11, max: 10 });
        let (first, second) = (&[0u8][..], &[11u8][..]);
        let mut fed = reader(f);
        assert_eq!(fed.feed(first), Ok(1));
        assert_eq!(fed.feed(second).err(), oversize);
        let mut in_place = reader(f);
        assert_eq!(in_place.feed_in_place(first, |_| true), Ok(1));
        assert_eq!(in_place.feed_in_place(second, |_| true).err(), oversize);
        for (path, r) in [("feed", &fed), ("in place", &in_place)] {
            let s = r.stats();
            assert_eq!(
                (s.reads, s.coalesced_reads, s.oversize),
                (2, 0, 1),
                "{path}: {s:?}"
            );
        }
    }

    #[test]
    fn oversize_header_is_an_error_and_stops_the_reader_until_reset() {
        let f = fmt(HeaderWidth::U16, ByteOrder::Big, 10);
        let mut r = reader(f);
        // A good frame, then a header announcing 11 bytes.
        assert_eq!(
            r.feed(&[0, 1, b'x', 0, 11, 1, 2]),
            Err(ReadError::Oversize { len: 11, max: 10 })
        );
        assert_eq!(r.stats().oversize, 1);
        // The frame before the bad header is still good.
        assert_eq!(r.next_frame(), Some(&b"x"[..]));
        assert_eq!(
            r.feed(&[0, 0]),
            Err(ReadError::Oversize { len: 11, max: 10 })
        );
        assert!(r.receive_buffer().is_empty());
        assert_eq!(r.error(), Some(ReadError::Oversize { len: 11, max: 10 }));
        assert_eq!(r.unfinished(), &[0, 11, 1, 2]);
        r.reset();
        assert_eq!(r.feed(&[0, 0]), Ok(2));
        assert_eq!(r.next_frame(), Some(&b""[..]));
    }

    #[test]
    fn the_unfinished_frame_shows_its_bytes_so_far() {
        let mut r = reader(HeaderFormat::NETWORK);
        assert_eq!(r.unfinished(), b"");
        r.feed(&[0, 0, 0, 1, b'a', 0, 0]).unwrap();
        assert_eq!(r.unfinished(), &[0, 0]);
        r.feed(&[0, 3, b'x']).unwrap();
        assert_eq!(r.unfinished(), &[0, 0, 0, 3, b'x']);
        assert_eq!(r.next_frame(), Some(&b"a"[..]));
        r.feed(b"yz").unwrap();
        assert_eq!(r.unfinished(), b"");
        assert_eq!(r.next_frame(), Some(&b"xyz"[..]));
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_truncated_not_clean() {
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0, 0, 3, b'a']).unwrap();
        assert_eq!(
            r.finish(),
            Err(ReadError::Truncated {
                received: 5,
                expected: Some(7)
            })
        );
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0]).unwrap();
        assert_eq!(
            r.finish(),
            Err(ReadError::Truncated {
                received: 2,
                expected: None
            })
        );
        assert_eq!(r.stats().truncated, 1);
        // Asked again, as an adapter called once more after the end may: the
        // same answer, the one cut stream counted once, and the reader stopped.
        let cut = Err(ReadError::Truncated {
            received: 2,
            expected: None,
        });
        assert_eq!(r.finish(), cut);
        assert_eq!(r.stats().truncated, 1);
        assert_eq!(r.error(), cut.err());
        assert_eq!(r.feed(&[0]), cut.map(|()| 0));
        // A whole frame before the cut is still there to take.
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0, 0, 1, b'a', 0, 0]).unwrap();
        assert!(r.finish().is_err());
        assert_eq!(r.next_frame(), Some(&b"a"[..]));
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0, 0, 1, b'a']).unwrap();
        assert_eq!(
            r.finish(),
            Ok(()),
            "a whole frame waiting is not truncation"
        );
        assert_eq!(r.next_frame(), Some(&b"a"[..]));
    }

    #[test]
    fn frame_stays_in_place_until_consumed() {
        let mut r = reader(HeaderFormat::NETWORK);
        r.feed(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 1, b'!']).unwrap();
        assert_eq!(r.frame(), Some(&b"hi"[..]));
        assert_eq!(r.frame(), Some(&b"hi"[..]));
        r.consume();
        assert_eq!(r.frame(), Some(&b"!"[..]));
        r.consume();
        assert_eq!(r.frame(), None);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn receive_buffer_and_commit_fill_storage_directly() {
        let mut r = reader(HeaderFormat::NETWORK);
        let buf = r.receive_buffer();
        assert_eq!(buf.len(), 600);
        buf[..6].copy_from_slice(&[0, 0, 0, 2, b'o', b'k']);
        r.commit(6).unwrap();
        assert_eq!(r.next_frame(), Some(&b"ok"[..]));
        // Committing more than the free room is clamped, never out of bounds.
        r.commit(10_000).unwrap();
        assert_eq!(r.buffered(), 600);
    }

    #[test]
    fn storage_is_compacted_when_the_next_frame_would_not_fit() {
        let f = fmt(HeaderWidth::U8, ByteOrder::Big, 8);
        let mut r = FrameReader::new([0u8; 12], f).unwrap();
        // Frame of 6, then the start of a frame of 8 that only fits after compaction.
        assert_eq!(r.feed(&[5, 1, 2, 3, 4, 5, 8, 1, 2]), Ok(9));
        assert_eq!(r.next_frame(), Some(&[1, 2, 3, 4, 5][..]));
        assert_eq!(r.feed(&[3, 4, 5, 6, 7, 8]), Ok(6));
        assert_eq!(r.next_frame(), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
    }

    #[test]
    fn writer_puts_out_header_and_body_in_any_space() {
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let body = b"abcdef";
        let mut wire = Vec::new();
        let mut calls = 0;
        loop {
            let mut space = [0u8; 3];
            let p = w.write(body, &mut space).unwrap();
            wire.extend_from_slice(&space[..p.written]);
            calls += 1;
            if p.complete {
                break;
            }
        }
        assert_eq!(wire, [0, 0, 0, 6, b'a', b'b', b'c', b'd', b'e', b'f']);
        assert_eq!(calls, 4);
        assert_eq!(w.stats().split_frames, 1);
        assert!(!w.in_progress());
        // Whole frame in one go.
        let mut space = [0u8; 16];
        let p = w.write(b"xy", &mut space).unwrap();
        assert_eq!(
            p,
            Progress {
                written: 6,
                complete: true
            }
        );
        assert_eq!(w.stats().frames, 2);
    }

    #[test]
    fn writer_counts_no_space_as_back_pressure() {
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        assert_eq!(
            w.write(b"x", &mut []).unwrap(),
            Progress {
                written: 0,
                complete: false
            }
        );
        assert_eq!(w.stats().blocked_writes, 1);
        assert_eq!(w.remaining(), 5);
    }

    #[test]
    fn writer_refuses_too_large_and_a_different_body_mid_frame() {
        let f = fmt(HeaderWidth::U8, ByteOrder::Big, 4);
        let mut w = FrameWriter::new(f);
        assert_eq!(
            w.write(&[0; 5], &mut [0; 10]),
            Err(WriteError::TooLarge { len: 5, max: 4 })
        );
        assert_eq!(w.stats().too_large, 1);
        let mut space = [0u8; 2];
        w.write(b"abc", &mut space).unwrap();
        assert_eq!(
            w.write(b"ab", &mut space),
            Err(WriteError::Busy { in_progress: 3 })
        );
        w.reset();
        assert!(w.write(b"ab", &mut [0; 3]).unwrap().complete);
        // A u8 header can never express 256 even if asked.
        let wide = fmt(HeaderWidth::U8, ByteOrder::Big, 255);
        assert!(wide.header(256).is_err());
    }

    #[test]
    fn encode_writes_a_whole_frame_or_says_why_not() {
        let mut out = [0u8; 8];
        assert_eq!(encode(HeaderFormat::NETWORK, b"hi", &mut out), Ok(6));
        assert_eq!(&out[..6], &[0, 0, 0, 2, b'h', b'i']);
        assert_eq!(
            encode(HeaderFormat::NETWORK, b"hello", &mut out),
            Err(EncodeError::BufferTooSmall {
                needed: 9,
                available: 8
            })
        );
    }

    /// A source of the bodies in `frames`, one after another; `short` makes
    /// `fill` write at most that many bytes per call.
    pub(crate) struct Bodies<'a> {
        pub(crate) frames: &'a [&'a [u8]],
        pub(crate) next: usize,
        pub(crate) short: Option<usize>,
        /// What `next_len` says instead, for one frame: `(frame, len)`.
        pub(crate) lie: Option<(usize, usize)>,
        /// Claim one byte more than the space, for frame `n`.
        pub(crate) overrun: Option<usize>,
    }

    impl<'a> Bodies<'a> {
        pub(crate) fn new(frames: &'a [&'a [u8]]) -> Self {
            Self {
                frames,
                next: 0,
                short: None,
                lie: None,
                overrun: None,
            }
        }
    }

    impl FrameSource for Bodies<'_> {
        fn next_len(&mut self) -> Option<usize> {
            match self.lie {
                Some((frame, len)) if frame == self.next => Some(len),
                _ => self.frames.get(self.next).map(|body| body.len()),
            }
        }

        fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
            let body = self.frames[self.next];
            let n = space.len().min(self.short.unwrap_or(usize::MAX));
            space[..n].copy_from_slice(&body[offset..offset + n]);
            if self.overrun == Some(self.next) {
                return space.len() + 1;
            }
            n
        }

        fn sent(&mut self) {
            self.next += 1;
        }
    }

    /// The bytes of `bodies` framed one by one with `write`.
    pub(crate) fn framed_one_by_one(format: HeaderFormat, bodies: &[&[u8]]) -> Vec<u8> {
        let mut w = FrameWriter::new(format);
        let mut wire = Vec::new();
        for body in bodies {
            let mut out = vec![0u8; body.len() + 4];
            let p = w.write(body, &mut out).unwrap();
            assert!(p.complete);
            wire.extend_from_slice(&out[..p.written]);
        }
        wire
    }

    #[test]
    fn write_frames_puts_several_frames_in_one_space_and_goes_on_where_it_stopped() {
        let bodies: [&[u8]; 4] = [b"one", b"", b"three", b"four!"];
        let whole = framed_one_by_one(HeaderFormat::NETWORK, &bodies);
        let mut source = Bodies::new(&bodies);
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        // 7 + 4 + 9 + 9 bytes: the first space takes two frames and part of the third.
        let mut out = [0u8; 14];
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!(
            batch,
            Batch {
                written: 14,
                frames: 2,
                end: BatchEnd::Blocked
            }
        );
        assert!(w.in_progress(), "the third frame is half written");
        assert_eq!(source.next, 2);
        let mut rest = [0u8; 64];
        let batch = w.write_frames(&mut rest, &mut source);
        assert_eq!(
            batch,
            Batch {
                written: 15,
                frames: 2,
                end: BatchEnd::Drained
            }
        );
        assert_eq!([&out[..], &rest[..15]].concat(), whole);
        assert_eq!(w.finish(), Ok(()));
        let stats = w.stats();
        assert_eq!((stats.frames, stats.split_frames), (4, 1));
        assert_eq!(stats.bytes, whole.len() as u64);
    }

    #[test]
    fn write_frames_full_on_a_frame_boundary_begins_nothing() {
        let bodies: [&[u8]; 2] = [b"abcd", b"efgh"];
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        // Exactly the first frame: the source is only asked whether it has more.
        let mut source = Bodies::new(&bodies);
        let mut out = [0u8; 8];
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!((batch.frames, batch.end), (1, BatchEnd::Blocked));
        assert!(!w.in_progress(), "no frame is owed");
        // The last frame, exactly: nothing is left to send.
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!((batch.frames, batch.end), (1, BatchEnd::Drained));
        // No space at all: asked, not begun.
        let mut source = Bodies::new(&bodies);
        let batch = w.write_frames(&mut [], &mut source);
        assert_eq!((batch.written, batch.end), (0, BatchEnd::Blocked));
        assert!(!w.in_progress());
        assert_eq!(w.finish(), Ok(()));
        let batch = w.write_frames(&mut [], &mut Bodies::new(&[]));
        assert_eq!(batch.end, BatchEnd::Drained);
    }

    #[test]
    fn write_frames_stops_where_the_source_writes_short() {
        let bodies: [&[u8]; 2] = [b"0123456789", b"ab"];
        let whole = framed_one_by_one(HeaderFormat::NETWORK, &bodies);
        let mut source = Bodies::new(&bodies);
        source.short = Some(3);
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let mut wire = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 20, "every call writes something");
            let mut out = [0u8; 64];
            let batch = w.write_frames(&mut out, &mut source);
            wire.extend_from_slice(&out[..batch.written]);
            if batch.end == BatchEnd::Drained {
                break;
            }
            assert_eq!(batch.end, BatchEnd::Blocked);
            assert!(
                batch.written < out.len(),
                "room was left: the source stopped"
            );
        }
        assert_eq!(wire, whole);
        assert!(calls > 3);
    }

    #[test]
    fn write_frames_refuses_a_bad_frame_after_writing_the_ones_before() {
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        let bodies: [&[u8]; 3] = [b"ok", b"far too long", b"ok"];
        let mut source = Bodies::new(&bodies);
        let mut w = FrameWriter::new(format);
        let mut out = [0u8; 64];
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!(batch.written, 6, "the first frame counts");
        assert_eq!(batch.frames, 1);
        assert_eq!(
            batch.end,
            BatchEnd::Refused(WriteError::TooLarge { len: 12, max: 8 })
        );
        assert!(!w.in_progress());
        assert_eq!(w.stats().too_large, 1);

        // Another length while a frame is half written.
        let bodies: [&[u8]; 1] = [b"abcdef"];
        let mut source = Bodies::new(&bodies);
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let batch = w.write_frames(&mut out[..6], &mut source);
        assert_eq!(batch.end, BatchEnd::Blocked);
        source.lie = Some((0, 3));
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!(batch.written, 0);
        assert_eq!(
            batch.end,
            BatchEnd::Refused(WriteError::Busy { in_progress: 6 })
        );
        assert!(w.in_progress(), "the half-written frame is still owed");
        // A source that forgot it: nothing of another frame goes in its place.
        let batch = w.write_frames(&mut out, &mut Bodies::new(&[]));
        assert_eq!(
            (batch.written, batch.end),
            (0, BatchEnd::Refused(WriteError::Busy { in_progress: 6 }))
        );
        source.lie = None;
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!((batch.written, batch.end), (4, BatchEnd::Drained));

        // A fill claiming more than its space: a new frame is not owed...
        let bodies: [&[u8]; 2] = [b"ab", b"cd"];
        let mut source = Bodies::new(&bodies);
        source.overrun = Some(1);
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!((batch.written, batch.frames), (6, 1));
        assert!(matches!(
            batch.end,
            BatchEnd::Refused(WriteError::Overrun { .. })
        ));
        assert!(!w.in_progress());
        assert_eq!(w.finish(), Ok(()));
        // ...and one half written stays owed.
        let bodies: [&[u8]; 1] = [b"abcdef"];
        let mut source = Bodies::new(&bodies);
        let batch = w.write_frames(&mut out[..6], &mut source);
        assert_eq!(batch.end, BatchEnd::Blocked);
        source.overrun = Some(0);
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!(batch.written, 0);
        assert!(matches!(
            batch.end,
            BatchEnd::Refused(WriteError::Overrun { .. })
        ));
        assert!(w.in_progress());
    }

    #[test]
    fn write_frames_finishes_only_the_frames_a_source_began() {
        // A frame begun by `write` is not a source's to finish, even one of
        // the same length: its bytes would be spliced into it.
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let mut out = [0u8; 6];
        let p = w.write(b"AAAAAA", &mut out).unwrap();
        assert_eq!((p.written, p.complete), (6, false));
        let bodies: [&[u8]; 1] = [b"BBBBBB"];
        let mut source = Bodies::new(&bodies);
        let mut rest = [0u8; 64];
        let batch = w.write_frames(&mut rest, &mut source);
        assert_eq!(batch.written, 0);
        assert_eq!(
            batch.end,
            BatchEnd::Refused(WriteError::Busy { in_progress: 6 })
        );
        assert_eq!(source.next, 0);
        // The frame's own body finishes it.
        let p = w.write(b"AAAAAA", &mut rest).unwrap();
        assert_eq!((p.written, p.complete), (4, true));

        // Nor the other way round.
        let mut source = Bodies::new(&bodies);
        let batch = w.write_frames(&mut out, &mut source);
        assert_eq!(batch.end, BatchEnd::Blocked);
        assert_eq!(
            w.write(b"CCCCCC", &mut rest),
            Err(WriteError::Busy { in_progress: 6 })
        );
        let fill = |_: usize, space: &mut [u8]| space.len();
        assert_eq!(
            w.write_with(6, &mut rest, fill),
            Err(WriteError::Busy { in_progress: 6 })
        );
        let batch = w.write_frames(&mut rest, &mut source);
        assert_eq!((batch.written, batch.end), (4, BatchEnd::Drained));
        assert_eq!(&rest[..4], b"BBBB");
    }

    #[test]
    fn write_frames_asks_the_source_once_even_for_a_frame_not_its_own() {
        /// Counts how often it is asked for its next length.
        struct Asked(usize);
        impl FrameSource for Asked {
            fn next_len(&mut self) -> Option<usize> {
                self.0 += 1;
                Some(6)
            }
            fn fill(&mut self, _: usize, space: &mut [u8]) -> usize {
                space.len()
            }
            fn sent(&mut self) {}
        }
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        w.write(b"AAAAAA", &mut [0u8; 6]).unwrap();
        let mut source = Asked(0);
        let batch = w.write_frames(&mut [0u8; 64], &mut source);
        assert_eq!(
            batch.end,
            BatchEnd::Refused(WriteError::Busy { in_progress: 6 })
        );
        assert_eq!(source.0, 1);
    }

    #[test]
    fn write_frames_into_no_space_is_a_blocked_write() {
        let bodies: [&[u8]; 1] = [b"abcdef"];
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let mut source = Bodies::new(&bodies);
        assert_eq!(w.write_frames(&mut [], &mut source).end, BatchEnd::Blocked);
        assert_eq!(w.stats().blocked_writes, 1);
        // Half written, then no space again.
        let mut out = [0u8; 5];
        assert_eq!(w.write_frames(&mut out, &mut source).end, BatchEnd::Blocked);
        assert_eq!(w.stats().blocked_writes, 1, "a space filled is not blocked");
        assert_eq!(w.write_frames(&mut [], &mut source).end, BatchEnd::Blocked);
        assert_eq!(w.stats().blocked_writes, 2);
        // Nothing to send is not back-pressure.
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let batch = w.write_frames(&mut [], &mut Bodies::new(&[]));
        assert_eq!(batch.end, BatchEnd::Drained);
        assert_eq!(w.stats().blocked_writes, 0);
        // Nor is a frame that could never go: it is refused, as with room.
        let format = HeaderFormat::NETWORK.with_max_len(4).unwrap();
        let mut w = FrameWriter::new(format);
        let batch = w.write_frames(&mut [], &mut Bodies::new(&bodies));
        assert_eq!(
            batch.end,
            BatchEnd::Refused(WriteError::TooLarge { len: 6, max: 4 })
        );
        assert_eq!((w.stats().too_large, w.stats().blocked_writes), (1, 0));
    }

    pub(crate) mod props {
        use super::*;
        use proptest::prelude::*;

        /// Any header format: every width, both byte orders, a maximum the width
        /// can express (kept under 300 so frames stay small).
        pub(crate) fn any_format() -> impl Strategy<Value = HeaderFormat> {
            (0..3usize, any::<bool>(), 0u32..300).prop_map(|(w, big, max)| {
                let width = [HeaderWidth::U8, HeaderWidth::U16, HeaderWidth::U32][w];
                let order = if big {
                    ByteOrder::Big
                } else {
                    ByteOrder::Little
                };
                HeaderFormat::new(width, order, max.min(width.max_len())).unwrap()
            })
        }

        /// `feed_in_place` as it was before a frame held in part was completed
        /// in line: every completion through `fill`, `frame` and `consume`. The
        /// model the fast path is checked against.
        fn feed_in_place_model<B: AsRef<[u8]> + AsMut<[u8]>, F: FnMut(&[u8]) -> bool>(
            r: &mut FrameReader<B>,
            input: &[u8],
            mut take: F,
        ) -> Result<usize, ReadError> {
            if let Some(error) = r.poisoned {
                return Err(error);
            }
            let mut read = Read::default();
            let result = take_in_place_model(r, input, &mut take, &mut read);
            if read.taken > 0 {
                r.stats.reads = r.stats.reads.saturating_add(1);
                if read.touched > 1 {
                    r.stats.coalesced_reads = r.stats.coalesced_reads.saturating_add(1);
                }
            }
            result.map(|()| read.taken)
        }

        fn take_in_place_model<B: AsRef<[u8]> + AsMut<[u8]>, F: FnMut(&[u8]) -> bool>(
            r: &mut FrameReader<B>,
            input: &[u8],
            take: &mut F,
            read: &mut Read,
        ) -> Result<(), ReadError> {
            let header_len = r.format.header_len();
            if r.head != r.end {
                if r.head != r.scan {
                    return r.fill(input, read);
                }
                read.touched = 1;
                while !r.has_frame() {
                    let held = r.end.saturating_sub(r.scan);
                    let pending = r.storage.as_ref().get(r.scan..r.end);
                    let need = match pending.and_then(|bytes| r.format.decode(bytes)) {
                        Some(len) => header_len.saturating_add(len as usize),
                        None => header_len,
                    }
                    .saturating_sub(held);
                    if need == 0 {
                        break;
                    }
                    let rest = input.get(read.taken..).unwrap_or_default();
                    let chunk = rest.get(..need.min(rest.len())).unwrap_or_default();
                    let before = read.taken;
                    // One frame touched, even when its header is oversize.
                    let filled = r.fill(chunk, read);
                    read.touched = 1;
                    filled?;
                    if read.taken.saturating_sub(before) < need {
                        return Ok(());
                    }
                }
                let taken = r.frame().is_some_and(&mut *take);
                if !taken {
                    let rest = input.get(read.taken..).unwrap_or_default();
                    return r.fill(rest, read);
                }
                r.consume();
            }
            let (mut frames, mut body_bytes, mut bytes) = (0u64, 0u64, 0u64);
            loop {
                let rest = input.get(read.taken..).unwrap_or_default();
                let Some(len) = r.format.decode(rest).filter(|&len| len <= r.format.max_len) else {
                    break;
                };
                let total = header_len.saturating_add(len as usize);
                let Some(body) = rest.get(header_len..total) else {
                    break;
                };
                if !take(body) {
                    break;
                }
                read.taken = read.taken.saturating_add(total);
                read.touched = read.touched.saturating_add(1);
                frames = frames.saturating_add(1);
                body_bytes = body_bytes.saturating_add(u64::from(len));
                bytes = bytes.saturating_add(total as u64);
            }
            r.stats.frames = r.stats.frames.saturating_add(frames);
            r.stats.body_bytes = r.stats.body_bytes.saturating_add(body_bytes);
            r.stats.bytes = r.stats.bytes.saturating_add(bytes);
            let rest = input.get(read.taken..).unwrap_or_default();
            r.fill(rest, read)
        }

        /// `write_frames` as it was written first, on `begin` and
        /// `write_begun_with` for every frame: the model the fast loop is checked
        /// against, counter for counter.
        fn write_frames_model<S: FrameSource + ?Sized>(
            w: &mut FrameWriter,
            out: &mut [u8],
            source: &mut S,
        ) -> Batch {
            let mut batch = Batch {
                written: 0,
                frames: 0,
                end: BatchEnd::Blocked,
            };
            // A frame half written from an earlier call must be the source's own,
            // and the source must still say so (its length, once); then each new
            // frame is asked for.
            let mut first = true;
            loop {
                let space = out.get_mut(batch.written..).unwrap_or_default();
                if first || !w.in_progress {
                    first = false;
                    let next = source.next_len();
                    if w.in_progress {
                        if !w.by_source || next != Some(w.body_len) {
                            batch.end = BatchEnd::Refused(WriteError::Busy {
                                in_progress: w.body_len,
                            });
                            return batch;
                        }
                    } else {
                        let Some(len) = next else {
                            batch.end = BatchEnd::Drained;
                            return batch;
                        };
                        if space.is_empty() {
                            // No room for a byte of it: not begun, so nothing is owed;
                            // a frame that could never go is refused now all the same.
                            if let Some(error) = w.refusal(Some(len), true) {
                                batch.end = BatchEnd::Refused(error);
                            } else {
                                w.count_blocked(out);
                            }
                            return batch;
                        }
                        if let Err(error) = w.begin(len) {
                            batch.end = BatchEnd::Refused(error);
                            return batch;
                        }
                        w.by_source = true;
                    }
                }
                if space.is_empty() {
                    w.count_blocked(out);
                    return batch;
                }
                match w.write_begun_with(space, |offset, body| source.fill(offset, body)) {
                    Ok(progress) => {
                        batch.written = batch.written.saturating_add(progress.written);
                        if !progress.complete {
                            // `out` is full, or the source had no more bytes yet.
                            return batch;
                        }
                        batch.frames = batch.frames.saturating_add(1);
                        source.sent();
                    }
                    Err(error) => {
                        // Nothing of this call's part counts: a frame none of whose
                        // bytes went out is not owed.
                        w.forget_unstarted();
                        batch.end = BatchEnd::Refused(error);
                        return batch;
                    }
                }
            }
        }

        /// What a scripted source was asked and answered.
        #[derive(Clone, Debug, PartialEq, Eq)]
        enum Asked {
            NextLen(Option<usize>),
            Fill(usize, usize, usize),
            Sent,
        }

        /// A source that plays a script: its frames' lengths (`None`: nothing to
        /// send for now), and what each `fill` does (write all of its space, half,
        /// nothing, or claim a byte more than it had).
        #[derive(Clone, Debug)]
        struct Script {
            lens: Vec<Option<usize>>,
            next: usize,
            fills: Vec<u8>,
            filled: usize,
            asked: Vec<Asked>,
        }

        impl FrameSource for Script {
            fn next_len(&mut self) -> Option<usize> {
                let len = self.lens.get(self.next).copied().flatten();
                self.asked.push(Asked::NextLen(len));
                len
            }
            fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
                for (k, byte) in space.iter_mut().enumerate() {
                    *byte = (self.next * 31 + offset + k) as u8;
                }
                let mode = self.fills[self.filled % self.fills.len()];
                self.filled += 1;
                let n = match mode {
                    0 => space.len(),
                    1 => space.len() / 2,
                    2 => 0,
                    _ => space.len() + 1,
                };
                self.asked.push(Asked::Fill(offset, space.len(), n));
                n
            }
            fn sent(&mut self) {
                self.asked.push(Asked::Sent);
                self.next += 1;
            }
        }

        proptest! {
            /// The fast loop against the model: for any frames (some too large,
            /// some not ready), any sizes of space, a source that writes all,
            /// part, nothing or too much, and frames begun by `write_with`, a
            /// changed length or a `reset` in between, both write the same bytes,
            /// return the same batches, ask the source the same things, and keep
            /// the same counters and state after every call.
            #[test]
            fn write_frames_matches_the_model_counter_for_counter(
                format in any_format(),
                lens in prop::collection::vec(prop::option::weighted(0.9, 0usize..320), 0..16),
                fills in prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 1, 2, 3]), 1..12),
                steps in prop::collection::vec((0u8..10, 0usize..700), 1..40),
            ) {
                let script = Script { lens, next: 0, fills, filled: 0, asked: Vec::new() };
                let (mut fast, mut model) = (FrameWriter::new(format), FrameWriter::new(format));
                let (mut fast_src, mut model_src) = (script.clone(), script);
                for (kind, size) in steps {
                    match kind {
                        // A frame begun by `write_with` (the source may not finish it).
                        0 => {
                            let mut a = vec![0xAAu8; size % 20];
                            let mut b = a.clone();
                            let fill = |_: usize, space: &mut [u8]| space.len();
                            prop_assert_eq!(
                                fast.write_with(size % 9, &mut a, fill),
                                model.write_with(size % 9, &mut b, fill)
                            );
                            prop_assert_eq!(a, b);
                        }
                        1 => {
                            fast.reset();
                            model.reset();
                        }
                        // The source changes its mind about the frame it is on.
                        2 => {
                            for src in [&mut fast_src, &mut model_src] {
                                if let Some(Some(len)) = src.lens.get_mut(src.next) {
                                    *len += 1;
                                }
                            }
                        }
                        // A frame not ready for now becomes ready.
                        3 => {
                            for src in [&mut fast_src, &mut model_src] {
                                if let Some(len @ None) = src.lens.get_mut(src.next) {
                                    *len = Some(size % 50);
                                }
                            }
                        }
                        _ => {
                            let mut a = vec![0xAAu8; size];
                            let mut b = a.clone();
                            let got = fast.write_frames(&mut a, &mut fast_src);
                            let want = write_frames_model(&mut model, &mut b, &mut model_src);
                            prop_assert_eq!(got, want);
                            prop_assert_eq!(a, b);
                        }
                    }
                    prop_assert_eq!(&fast_src.asked, &model_src.asked);
                    prop_assert_eq!(fast.stats(), model.stats());
                    prop_assert_eq!(fast.remaining(), model.remaining());
                    prop_assert_eq!(fast.finish(), model.finish());
                    prop_assert_eq!(format!("{fast:?}"), format!("{model:?}"));
                }
            }

            /// Whatever the frames and however the stream is cut, the reader yields
            /// exactly the frames written, in order, once each.
            #[test]
            fn any_split_yields_exactly_the_frames_written(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
                cuts in prop::collection::vec(1usize..700, 1..50),
                extra_room in 0usize..400,
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max); b }).collect();
                let mut stream = Vec::new();
                let mut w = FrameWriter::new(format);
                for body in &bodies {
                    let mut out = vec![0u8; body.len() + 4];
                    let p = w.write(body, &mut out).unwrap();
                    prop_assert!(p.complete);
                    stream.extend_from_slice(&out[..p.written]);
                }
                let storage = vec![0u8; format.max_frame_len() + extra_room];
                let mut r = FrameReader::new(storage, format).unwrap();
                let mut got = Vec::new();
                let mut pos = 0;
                let mut cut = cuts.iter().cycle();
                while pos < stream.len() {
                    let piece = &stream[pos..(pos + cut.next().unwrap()).min(stream.len())];
                    let mut off = 0;
                    while off < piece.len() {
                        let n = r.feed(&piece[off..]).unwrap();
                        off += n;
                        collect(&mut r, &mut got);
                    }
                    pos += piece.len();
                }
                prop_assert_eq!(r.finish(), Ok(()));
                prop_assert_eq!(&got, &bodies);
                prop_assert_eq!(r.stats().frames, bodies.len() as u64);
            }

            /// The counters of any split equal those counted from the reads
            /// themselves: a read touches every frame (header included) it holds
            /// a byte of, a frame is split when no single read holds all of it.
            #[test]
            fn counters_are_those_of_the_reads(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
                cuts in prop::collection::vec(1usize..700, 1..50),
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max); b }).collect();
                let mut stream = Vec::new();
                let mut frames = Vec::new();
                for body in &bodies {
                    let mut out = vec![0u8; body.len() + 4];
                    let n = encode(format, body, &mut out).unwrap();
                    frames.push((stream.len(), stream.len() + n));
                    stream.extend_from_slice(&out[..n]);
                }
                let mut r = FrameReader::new(vec![0u8; format.max_frame_len()], format).unwrap();
                let mut reads = Vec::new();
                let mut got = Vec::new();
                let (mut pos, mut cut) = (0, cuts.iter().cycle());
                while pos < stream.len() {
                    let end = (pos + cut.next().unwrap()).min(stream.len());
                    let n = r.feed(&stream[pos..end]).unwrap();
                    if n > 0 {
                        reads.push((pos, pos + n));
                    }
                    pos += n;
                    collect(&mut r, &mut got);
                }
                let touched = |(a, b): (usize, usize)| {
                    frames.iter().filter(|&&(start, end)| start < b && end > a).count()
                };
                let coalesced = reads.iter().filter(|&&read| touched(read) > 1).count();
                let split = frames
                    .iter()
                    .filter(|&&(start, end)| !reads.iter().any(|&(a, b)| a <= start && end <= b))
                    .count();
                let stats = r.stats();
                prop_assert_eq!(&got, &bodies);
                prop_assert_eq!(stats.reads, reads.len() as u64);
                prop_assert_eq!(stats.coalesced_reads, coalesced as u64);
                prop_assert_eq!(stats.split_frames, split as u64);
                prop_assert_eq!(stats.frames, bodies.len() as u64);
                prop_assert_eq!(stats.bytes, stream.len() as u64);
            }

            /// Taking frames in place, with some left to the storage, yields the
            /// same frames in the same order, and the same frame and byte counts,
            /// as feeding every byte through the storage.
            #[test]
            fn in_place_yields_what_the_storage_yields(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
                cuts in prop::collection::vec(1usize..700, 1..50),
                refuse_every in 1usize..5,
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max); b }).collect();
                let mut stream = Vec::new();
                for body in &bodies {
                    let mut out = vec![0u8; body.len() + 4];
                    let n = encode(format, body, &mut out).unwrap();
                    stream.extend_from_slice(&out[..n]);
                }
                let mut r = FrameReader::new(vec![0u8; format.max_frame_len()], format).unwrap();
                let mut got: Vec<Vec<u8>> = Vec::new();
                let mut offers = 0usize;
                let mut pos = 0;
                let mut cut = cuts.iter().cycle();
                while pos < stream.len() {
                    let piece = &stream[pos..(pos + cut.next().unwrap()).min(stream.len())];
                    let mut off = 0;
                    // Each round takes a byte at least: the storage is emptied in between.
                    for _ in 0..=piece.len() {
                        if off == piece.len() { break; }
                        let n = r.feed_in_place(&piece[off..], |frame| {
                            offers += 1;
                            if offers.is_multiple_of(refuse_every) { return false; }
                            got.push(frame.to_vec());
                            true
                        }).unwrap();
                        off += n;
                        collect(&mut r, &mut got);
                    }
                    prop_assert_eq!(off, piece.len());
                    pos += piece.len();
                }
                prop_assert_eq!(r.finish(), Ok(()));
                prop_assert_eq!(&got, &bodies);
                prop_assert_eq!(r.stats().frames, bodies.len() as u64);
                prop_assert_eq!(r.stats().bytes, stream.len() as u64);
                let body_bytes: usize = bodies.iter().map(Vec::len).sum();
                prop_assert_eq!(r.stats().body_bytes, body_bytes as u64);
            }

            /// `feed_in_place` against the model: for any format, frames (some
            /// with oversize headers), reads cut anywhere, frames refused by
            /// `take` and left to the storage, frames taken out of the storage
            /// now and then, and storage larger than a frame (so held bytes
            /// lie past its front and must sometimes move), both return the
            /// same, offer the same frames, and keep the same counters and
            /// state after every call.
            #[test]
            fn feed_in_place_matches_the_model_counter_for_counter(
                format in any_format(),
                bodies in prop::collection::vec((0usize..320, any::<u8>()), 0..16),
                oversize in prop::option::weighted(0.1, 0usize..16),
                cuts in prop::collection::vec(0usize..700, 1..40),
                refuse in prop::collection::vec(any::<bool>(), 1..8),
                drain_every in prop::option::of(1usize..4),
                extra in 0usize..40,
            ) {
                let max = format.max_len() as usize;
                let mut stream = Vec::new();
                for (i, &(len, byte)) in bodies.iter().enumerate() {
                    let body = vec![byte; len.min(max)];
                    let mut out = vec![0u8; body.len() + 4];
                    let n = encode(format, &body, &mut out).unwrap();
                    stream.extend_from_slice(&out[..n]);
                    if oversize == Some(i) && max < format.width().max_len() as usize {
                        let header = format.header(max).unwrap();
                        let mut bytes = header.as_bytes().to_vec();
                        // One over the maximum: the reader stops there.
                        let over = u64::try_from(max).unwrap() + 1;
                        let width = bytes.len();
                        let be = over.to_be_bytes();
                        let le = over.to_le_bytes();
                        match format.order() {
                            ByteOrder::Big => bytes.copy_from_slice(&be[8 - width..]),
                            ByteOrder::Little => bytes.copy_from_slice(&le[..width]),
                        }
                        stream.extend_from_slice(&bytes);
                    }
                }
                let storage = vec![0u8; format.max_frame_len() + extra];
                let mut fast = FrameReader::new(storage.clone(), format).unwrap();
                let mut model = FrameReader::new(storage, format).unwrap();
                let (mut fast_got, mut model_got) = (Vec::new(), Vec::new());
                let (mut fast_offers, mut model_offers) = (0usize, 0usize);
                let mut pos = 0;
                for (call, &cut) in cuts.iter().cycle().take(400).enumerate() {
                    if pos >= stream.len() {
                        break;
                    }
                    let piece = &stream[pos..(pos + cut).min(stream.len())];
                    let a = fast.feed_in_place(piece, |frame| {
                        fast_offers += 1;
                        let taken = !refuse[fast_offers % refuse.len()];
                        if taken { fast_got.push(frame.to_vec()); }
                        taken
                    });
                    let b = feed_in_place_model(&mut model, piece, |frame| {
                        model_offers += 1;
                        let taken = !refuse[model_offers % refuse.len()];
                        if taken { model_got.push(frame.to_vec()); }
                        taken
                    });
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(fast_offers, model_offers);
                    prop_assert_eq!(&fast_got, &model_got);
                    prop_assert_eq!(fast.pending_total, model.pending_total);
                    prop_assert_eq!(format!("{fast:?}"), format!("{model:?}"));
                    prop_assert_eq!(fast.unfinished(), model.unfinished());
                    if a.is_err() {
                        break;
                    }
                    pos += a.unwrap();
                    if drain_every.is_some_and(|every| call % every == 0) {
                        collect(&mut fast, &mut fast_got);
                        collect(&mut model, &mut model_got);
                    } else if a == Ok(0) {
                        // Full of frames refused: make room to go on.
                        collect(&mut fast, &mut fast_got);
                        collect(&mut model, &mut model_got);
                    }
                }
                prop_assert_eq!(fast.finish(), model.finish());
                prop_assert_eq!(format!("{fast:?}"), format!("{model:?}"));
            }

            /// A writer fed arbitrary small spaces produces the same bytes as one
            /// big write.
            #[test]
            fn writer_output_does_not_depend_on_space(
                body in prop::collection::vec(any::<u8>(), 0..300),
                spaces in prop::collection::vec(0usize..50, 1..40)
                    .prop_filter("some space", |s| s.iter().any(|&n| n > 0)),
            ) {
                let format = HeaderFormat::NETWORK;
                let mut whole = vec![0u8; body.len() + 4];
                let n = encode(format, &body, &mut whole).unwrap();
                let mut w = FrameWriter::new(format);
                let mut wire = Vec::new();
                for space in spaces.iter().cycle().take(10_000) {
                    let mut out = vec![0u8; *space];
                    let p = w.write(&body, &mut out).unwrap();
                    wire.extend_from_slice(&out[..p.written]);
                    if p.complete { break; }
                }
                prop_assert_eq!(&wire[..], &whole[..n]);
            }

            /// However the output is cut, a batch writer puts out exactly the
            /// bytes of the frames written one by one, and never writes nothing
            /// while there is room and a frame to send.
            #[test]
            fn write_frames_in_any_spaces_equals_framing_one_by_one(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..30),
                spaces in prop::collection::vec(0usize..700, 1..40),
                short in prop::option::of(1usize..50),
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|mut b| { b.truncate(max); b }).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                let whole = super::super::tests::framed_one_by_one(format, &refs);
                let mut source = super::super::tests::Bodies::new(&refs);
                source.short = short;
                let mut w = FrameWriter::new(format);
                let mut wire = Vec::new();
                // Some space has room, so each round of the spaces writes at
                // least a byte until the source is drained: the loop ends.
                let mut spaces = spaces;
                spaces[0] = spaces[0].max(1);
                let mut space = spaces.iter().cycle();
                for _ in 0..(whole.len() + 1) * spaces.len() + 1 {
                    let mut out = vec![0u8; *space.next().unwrap()];
                    let batch = w.write_frames(&mut out, &mut source);
                    wire.extend_from_slice(&out[..batch.written]);
                    if batch.end == BatchEnd::Drained {
                        break;
                    }
                    prop_assert_eq!(batch.end, BatchEnd::Blocked);
                }
                prop_assert_eq!(&wire, &whole);
                prop_assert_eq!(source.next, bodies.len());
                prop_assert_eq!(w.finish(), Ok(()));
                prop_assert_eq!(w.stats().frames, bodies.len() as u64);
            }

            /// Storage larger than a frame, the input fed by any mix of `feed`,
            /// `receive_buffer` + `commit` and `feed_in_place` (its frames
            /// refused now and then), frames taken now and then: exactly the
            /// frames, once each, in order.
            #[test]
            fn any_mix_of_reads_with_storage_to_spare_yields_exactly_the_frames(
                format in any_format(),
                bodies in prop::collection::vec((0usize..300, any::<u8>()), 0..20),
                cuts in prop::collection::vec(1usize..700, 1..50),
                refuse in prop::collection::vec(any::<bool>(), 1..8),
                drain in prop::collection::vec(any::<bool>(), 1..8),
                extra in 0usize..400,
                use_feed in prop::collection::vec(0u8..4, 1..8),
            ) {
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> = bodies.iter().enumerate().map(|(i, &(len, b))| (0..len.min(max)).map(|k| b.wrapping_add((i * 7 + k) as u8)).collect()).collect();
                let mut stream = Vec::new();
                for body in &bodies {
                    let mut out = vec![0u8; body.len() + 4];
                    let n = encode(format, body, &mut out).unwrap();
                    stream.extend_from_slice(&out[..n]);
                }
                let mut r = FrameReader::new(vec![0u8; format.max_frame_len() + extra], format).unwrap();
                let mut got: Vec<Vec<u8>> = Vec::new();
                let mut offers = 0usize;
                let (mut pos, mut call) = (0usize, 0usize);
                let mut cut = cuts.iter().cycle();
                let mut stuck = 0;
                while pos < stream.len() {
                    let piece = &stream[pos..(pos + cut.next().unwrap()).min(stream.len())];
                    let mode = use_feed[call % use_feed.len()];
                    let n = if mode == 0 {
                        r.feed(piece).unwrap()
                    } else if mode == 1 {
                        let buf = r.receive_buffer();
                        let k = piece.len().min(buf.len());
                        buf[..k].copy_from_slice(&piece[..k]);
                        r.commit(k).unwrap();
                        k
                    } else {
                        r.feed_in_place(piece, |frame| {
                            offers += 1;
                            if refuse[offers % refuse.len()] { return false; }
                            got.push(frame.to_vec());
                            true
                        }).unwrap()
                    };
                    pos += n;
                    if drain[call % drain.len()] || n == 0 {
                        if let Some(f) = r.frame() { got.push(f.to_vec()); r.consume(); }
                        if drain[(call + 1) % drain.len()] { collect(&mut r, &mut got); }
                    }
                    if n == 0 { stuck += 1; prop_assert!(stuck < 1000); } else { stuck = 0; }
                    call += 1;
                }
                collect(&mut r, &mut got);
                prop_assert_eq!(r.finish(), Ok(()));
                prop_assert_eq!(&got, &bodies);
                prop_assert_eq!(r.stats().frames, bodies.len() as u64);
                prop_assert_eq!(r.stats().bytes, stream.len() as u64);
            }

            /// Random bytes never panic, whatever the format and storage.
            #[test]
            fn random_bytes_never_panic(
                format in any_format(),
                bytes in prop::collection::vec(any::<u8>(), 0..2000),
                piece in 1usize..300,
            ) {
                let mut r = FrameReader::new(vec![0u8; format.max_frame_len()], format).unwrap();
                for chunk in bytes.chunks(piece) {
                    let _ = r.feed(chunk);
                    bounded_while_let!(Some(_) = r.next_frame() => {});
                }
                let _ = r.finish();
            }
        }
    }
}
