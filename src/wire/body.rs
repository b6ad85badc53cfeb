//! Frames a piece at a time: bodies go between the input and the application with
//! no copy and no frame-sized buffer.
//!
//! [`FrameReader`](super::frame::FrameReader) gathers each frame whole in its own
//! storage: one copy of every byte, and RAM for the largest frame. [`BodyReader`]
//! holds only the header being assembled (at most 4 bytes) and its place in the body
//! being read; each body comes out in the pieces the input arrived in, as
//! [`BodyPiece`]s that borrow the input (on a socket, its receive ring). A frame can
//! then be larger than any buffer the device has.
//!
//! The sending side is [`FrameWriter::write_with`](super::frame::FrameWriter::write_with):
//! header, then a body the caller writes straight into the output space.

use crate::wire::frame::{HeaderFormat, ReadError, ReadStats};

/// Part of a frame's body, borrowed from the input that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPiece<'a> {
    /// The body bytes.
    pub bytes: &'a [u8],
    /// The body length of the frame this piece belongs to (from its header).
    pub frame_len: usize,
    /// Where `bytes` start in the frame's body.
    pub offset: usize,
    /// Whether `bytes` run to the end of the body: taking all of them completes the
    /// frame. A zero-length frame is one empty piece with this set.
    pub ends_frame: bool,
}

/// The body being read: its length and how much of it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Body {
    len: u32,
    taken: u32,
}

/// A streaming frame decoder that keeps no frame: bodies come out in pieces.
///
/// Bytes go in with [`feed`](Self::feed), which consumes headers itself and hands
/// each run of body bytes to the caller's closure as a [`BodyPiece`]. The closure
/// returns how many bytes of the piece it took; taking fewer stops the feed there,
/// and the rest is the caller's to keep (in a socket's receive ring it just stays,
/// which is back-pressure, not loss). A piece of a zero-length frame is empty, so
/// it is always taken whole when offered.
///
/// An oversize header is [`ReadError::Oversize`], counted, and stops the reader
/// until [`reset`](Self::reset), as with `FrameReader`. [`finish`](Self::finish) at
/// the end of the stream tells a clean end from a truncated frame.
///
/// ```
/// use smolsock::wire::body::BodyReader;
/// use smolsock::wire::frame::HeaderFormat;
///
/// let mut reader = BodyReader::new(HeaderFormat::NETWORK);
/// let mut pieces = Vec::new();
/// // "hello" cut in two reads, then an empty frame.
/// for input in [&[0, 0, 0, 5, b'h', b'e'][..], &[b'l', b'l', b'o', 0, 0, 0, 0]] {
///     let taken = reader.feed(input, |piece| {
///         pieces.push((piece.offset, piece.bytes.to_vec(), piece.ends_frame));
///         piece.bytes.len()
///     });
///     assert_eq!(taken, Ok(input.len()));
/// }
/// assert_eq!(
///     pieces,
///     [(0, b"he".to_vec(), false), (2, b"llo".to_vec(), true), (0, vec![], true)]
/// );
/// assert_eq!(reader.stats().frames, 2);
/// assert_eq!(reader.finish(), Ok(()));
/// ```
#[derive(Clone, Debug)]
pub struct BodyReader {
    format: HeaderFormat,
    header: [u8; 4],
    /// Header bytes held; zero while a body is being read.
    header_held: u8,
    body: Option<Body>,
    poisoned: Option<ReadError>,
    stats: ReadStats,
}

impl BodyReader {
    /// A reader of frames in `format`.
    pub const fn new(format: HeaderFormat) -> Self {
        Self {
            format,
            header: [0; 4],
            header_held: 0,
            body: None,
            poisoned: None,
            stats: ReadStats::ZERO,
        }
    }

    /// The header format this reader expects.
    pub const fn format(&self) -> HeaderFormat {
        self.format
    }

    /// The counters so far. `reads` counts calls to [`feed`](Self::feed) with
    /// bytes; `body_bytes` counts the bodies of whole frames.
    pub const fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The error that stopped the reader: an oversize header, or a frame cut
    /// short by the end of the stream ([`finish`](Self::finish)).
    pub const fn error(&self) -> Option<ReadError> {
        self.poisoned
    }

    /// Whether the stream is inside a frame (part of a header, or a body not all
    /// taken).
    pub const fn is_mid_frame(&self) -> bool {
        self.header_held > 0 || self.body.is_some()
    }

    /// Bytes of the unfinished frame received so far, header included: 0 on a
    /// frame boundary.
    pub fn unfinished_len(&self) -> usize {
        match self.body {
            Some(body) => self.format.header_len().saturating_add(body.taken as usize),
            None => usize::from(self.header_held),
        }
    }

    /// The frame being read: its body length and how many body bytes were taken.
    pub fn current_frame(&self) -> Option<(usize, usize)> {
        self.body
            .map(|body| (body.len as usize, body.taken as usize))
    }

    /// Consumes headers from `input` and offers its body bytes to `take`, piece by
    /// piece; returns how many bytes of `input` were consumed (headers and the body
    /// bytes taken).
    ///
    /// `take` returns how many bytes of the piece it took (more than offered counts
    /// as all). Taking fewer stops here: the bytes not consumed are offered again,
    /// as the same frame's next piece, on the next call.
    pub fn feed<'a, F>(&mut self, input: &'a [u8], mut take: F) -> Result<usize, ReadError>
    where
        F: FnMut(BodyPiece<'a>) -> usize,
    {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        if input.is_empty() {
            return Ok(0);
        }
        let was_mid_frame = self.is_mid_frame();
        // The call's state and counts are kept here and written back once, at the
        // end. None of the counts can overflow: `started` (frames whose header
        // began in this input, each taking at least one of its bytes) is at most
        // `input.len()`, `frames` one more (the frame in progress when the call
        // began), and `body_bytes` at most `input.len()` plus that first frame's
        // length (a u32).
        let mut rest = input;
        let mut body = self.body;
        let mut started = 0usize;
        let mut frames = 0u64;
        let mut body_bytes = 0u64;
        let mut split = false;
        let format = self.format;
        // A header cut by the end of the last input is gathered first.
        let mut gathering = self.header_held > 0;
        let result = loop {
            let Some(Body { len, taken }) = body else {
                if rest.is_empty() {
                    break Ok(());
                }
                // The usual case: the whole header lies in the input, read where it
                // is; else its bytes are gathered until it is whole.
                let whole = if gathering {
                    None
                } else {
                    started = started.wrapping_add(1);
                    format.split(rest)
                };
                let len = match whole {
                    Some((len, after)) => {
                        rest = after;
                        len
                    }
                    None => match self.gather_header(&mut rest) {
                        Some(len) => {
                            gathering = false;
                            len
                        }
                        None => break Ok(()),
                    },
                };
                if len > format.max_len() {
                    let error = ReadError::Oversize {
                        len,
                        max: format.max_len(),
                    };
                    self.poisoned = Some(error);
                    self.stats.oversize = self.stats.oversize.saturating_add(1);
                    break Err(error);
                }
                body = Some(Body { len, taken: 0 });
                continue;
            };
            // `taken <= len` always: a frame leaves `body` once it is all taken.
            let owed = len.wrapping_sub(taken) as usize;
            let n = owed.min(rest.len());
            if n == 0 && owed > 0 {
                break Ok(());
            }
            let (bytes, after) = rest.split_at_checked(n).unwrap_or((rest, &[]));
            let got = take(BodyPiece {
                bytes,
                frame_len: len as usize,
                offset: taken as usize,
                ends_frame: n == owed,
            })
            .min(n);
            if got < owed {
                // `take` stopped early, or the input ran out inside the body
                // (`got == n == rest.len()`): either way the call is over.
                // `got < owed = len - taken`, so the sum fits the u32 length.
                rest = rest.get(got..).unwrap_or_default();
                body = Some(Body {
                    len,
                    taken: taken.wrapping_add(got as u32),
                });
                break Ok(());
            }
            // All of the body taken: `got == owed == n`.
            rest = after;
            body = None;
            frames = frames.wrapping_add(1);
            body_bytes = body_bytes.wrapping_add(u64::from(len));
            // A frame is split when its first bytes came in an earlier call: it
            // was in progress when this one began, which only the first frame
            // completed here can be.
            split |= started == 0;
        };
        self.body = body;
        let consumed = input.len().wrapping_sub(rest.len());
        // Plain adds: these u64 counters start at zero and none passes the bytes
        // fed in all (a body is counted once all its bytes were fed) or the
        // calls, so none can come near 2^64 (16 EiB fed, or as many calls).
        let stats = &mut self.stats;
        stats.reads = stats.reads.wrapping_add(1);
        stats.bytes = stats.bytes.wrapping_add(consumed as u64);
        stats.frames = stats.frames.wrapping_add(frames);
        stats.body_bytes = stats.body_bytes.wrapping_add(body_bytes);
        if split {
            stats.split_frames = stats.split_frames.wrapping_add(1);
        }
        // Frames whose bytes this read touched: more than one is a coalesced read.
        if started.wrapping_add(usize::from(was_mid_frame)) > 1 {
            stats.coalesced_reads = stats.coalesced_reads.wrapping_add(1);
        }
        result.map(|()| consumed)
    }

    /// Gathers the header being read from the front of `rest` (the rare case: it
    /// was cut between inputs), moving `rest` past the bytes taken; its body
    /// length once it is whole.
    #[cold]
    fn gather_header(&mut self, rest: &mut &[u8]) -> Option<u32> {
        let header_len = self.format.header_len();
        let held = usize::from(self.header_held);
        let dst = self.header.get_mut(held..header_len).unwrap_or(&mut []);
        let n = dst.len().min(rest.len());
        if let (Some(dst), Some(src)) = (dst.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        *rest = rest.get(n..).unwrap_or_default();
        let held = held.saturating_add(n);
        if held < header_len {
            self.header_held = held as u8;
            return None;
        }
        self.header_held = 0;
        Some(self.format.decode(&self.header).unwrap_or(0))
    }

    /// Says the stream has ended (the peer closed). `Ok` if it ended on a frame
    /// boundary; [`ReadError::Truncated`] (counted once, however often this is
    /// asked: it stops the reader) if a header or body was cut short; the
    /// oversize error if the reader was stopped.
    pub fn finish(&mut self) -> Result<(), ReadError> {
        self.stop_mid_frame(false)
    }

    /// Says the peer has stopped inside a frame for longer than the session
    /// allows it. `Ok` on a frame boundary; [`ReadError::Stalled`] (counted
    /// once: it stops the reader) if a header or body is unfinished.
    pub fn stall(&mut self) -> Result<(), ReadError> {
        self.stop_mid_frame(true)
    }

    /// Counts `n` bytes a session dropped after the stream broke.
    pub(crate) fn count_discarded(&mut self, n: usize) {
        self.stats.count_discarded(n);
    }

    /// The stream stops inside a frame, the peer having ended it or (`stalled`)
    /// stalled: the error, counted and kept; `Ok` on a frame boundary.
    fn stop_mid_frame(&mut self, stalled: bool) -> Result<(), ReadError> {
        if let Some(error) = self.poisoned {
            return Err(error);
        }
        let header_len = self.format.header_len();
        let (received, expected) = match self.body {
            Some(body) => (
                header_len.saturating_add(body.taken as usize),
                Some(header_len.saturating_add(body.len as usize)),
            ),
            None if self.header_held > 0 => (usize::from(self.header_held), None),
            None => return Ok(()),
        };
        let error = self.stats.stopped(stalled, received, expected);
        self.poisoned = Some(error);
        Err(error)
    }

    /// Forgets the frame in progress and any error, to start a new stream.
    /// Counters stay.
    pub fn reset(&mut self) {
        self.header_held = 0;
        self.body = None;
        self.poisoned = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{ByteOrder, FrameWriter, HeaderWidth};

    /// A piece as owned values: (frame length, offset, bytes, ends the frame).
    type Owned = (usize, usize, Vec<u8>, bool);

    fn own(piece: BodyPiece<'_>) -> Owned {
        (
            piece.frame_len,
            piece.offset,
            piece.bytes.to_vec(),
            piece.ends_frame,
        )
    }

    /// Feeds `input` whole, taking every piece; returns the pieces.
    fn feed_all(reader: &mut BodyReader, input: &[u8]) -> Vec<Owned> {
        let mut pieces = Vec::new();
        let n = reader
            .feed(input, |piece| {
                pieces.push(own(piece));
                piece.bytes.len()
            })
            .unwrap();
        assert_eq!(n, input.len());
        pieces
    }

    #[test]
    fn pieces_borrow_the_input_and_carry_length_offset_and_end() {
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        let input = [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'x'];
        let mut starts = Vec::new();
        let n = r
            .feed(&input, |piece| {
                starts.push(piece.bytes.as_ptr());
                piece.bytes.len()
            })
            .unwrap();
        assert_eq!(n, input.len());
        // No copy: each piece points into the input.
        assert_eq!(starts, [&input[4] as *const u8, &input[11] as *const u8]);
        assert_eq!(r.current_frame(), Some((2, 1)));
        assert_eq!(feed_all(&mut r, b"y"), [(2, 1, b"y".to_vec(), true)]);
        assert_eq!(r.stats().frames, 2);
        assert_eq!(r.stats().body_bytes, 5);
        assert_eq!(r.stats().bytes, 13);
        assert_eq!(r.stats().coalesced_reads, 1);
        assert_eq!(r.stats().split_frames, 1);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_header_cut_in_two_is_joined() {
        let f = HeaderFormat::new(HeaderWidth::U16, ByteOrder::Little, 1000).unwrap();
        let mut r = BodyReader::new(f);
        assert!(feed_all(&mut r, &[3]).is_empty());
        assert!(r.is_mid_frame());
        assert_eq!(
            feed_all(&mut r, &[0, b'a', b'b', b'c']),
            [(3, 0, b"abc".to_vec(), true)]
        );
        assert_eq!(r.stats().split_frames, 1);
        assert!(!r.is_mid_frame());
    }

    #[test]
    fn zero_length_frames_are_empty_final_pieces() {
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        assert_eq!(
            feed_all(&mut r, &[0, 0, 0, 0, 0, 0, 0, 0]),
            [(0, 0, vec![], true), (0, 0, vec![], true)]
        );
        assert_eq!(r.stats().frames, 2);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn taking_fewer_bytes_stops_and_the_rest_is_offered_again() {
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        let input = [0, 0, 0, 4, 1, 2, 3, 4, 0, 0, 0, 1, 9];
        let mut seen = Vec::new();
        // Take two bytes, then stop.
        let n = r
            .feed(&input, |piece| {
                seen.push(own(piece));
                2
            })
            .unwrap();
        assert_eq!(n, 6, "header + the two bytes taken");
        assert_eq!(seen, [(4, 0, vec![1, 2, 3, 4], true)]);
        assert_eq!(feed_all(&mut r, &input[n..]).len(), 2);
        assert_eq!(r.stats().frames, 2);
        // Taking nothing consumes nothing of the body.
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        assert_eq!(r.feed(&input, |_| 0), Ok(4));
        assert_eq!(r.current_frame(), Some((4, 0)));
    }

    #[test]
    fn oversize_header_is_an_error_and_stops_the_reader_until_reset() {
        let f = HeaderFormat::new(HeaderWidth::U16, ByteOrder::Big, 10).unwrap();
        let mut r = BodyReader::new(f);
        let mut pieces = Vec::new();
        assert_eq!(
            r.feed(&[0, 1, b'x', 0, 11, 1, 2], |p| {
                pieces.push(own(p));
                p.bytes.len()
            }),
            Err(ReadError::Oversize { len: 11, max: 10 })
        );
        // The frame before the bad header was delivered.
        assert_eq!(pieces, [(1, 0, b"x".to_vec(), true)]);
        assert_eq!(r.stats().oversize, 1);
        assert_eq!(
            r.feed(&[0, 0], |_| 0),
            Err(ReadError::Oversize { len: 11, max: 10 })
        );
        assert_eq!(r.finish(), Err(ReadError::Oversize { len: 11, max: 10 }));
        assert_eq!(r.error(), Some(ReadError::Oversize { len: 11, max: 10 }));
        r.reset();
        assert_eq!(feed_all(&mut r, &[0, 0]), [(0, 0, vec![], true)]);
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_truncated_not_clean() {
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        feed_all(&mut r, &[0, 0, 0, 3, b'a']);
        assert_eq!(
            r.finish(),
            Err(ReadError::Truncated {
                received: 5,
                expected: Some(7)
            })
        );
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        feed_all(&mut r, &[0, 0]);
        assert_eq!(
            r.finish(),
            Err(ReadError::Truncated {
                received: 2,
                expected: None
            })
        );
        assert_eq!(r.stats().truncated, 1);
        // Asked again, as a poll loop may before it acts: the same answer, the
        // one cut stream counted once, and the reader stopped.
        let cut = Err(ReadError::Truncated {
            received: 2,
            expected: None,
        });
        assert_eq!(r.finish(), cut);
        assert_eq!(r.stats().truncated, 1);
        assert_eq!(r.error(), cut.err());
        assert_eq!(r.feed(&[0], |_| 0), cut.map(|()| 0));
        r.reset();
        assert_eq!(r.finish(), Ok(()));
        // Bytes left in the input (not taken) do not count as received.
        let mut r = BodyReader::new(HeaderFormat::NETWORK);
        assert_eq!(r.feed(&[0, 0, 0, 2, b'a', b'b'], |_| 0), Ok(4));
        assert_eq!(
            r.finish(),
            Err(ReadError::Truncated {
                received: 4,
                expected: Some(6)
            })
        );
    }

    #[test]
    fn write_with_fills_the_body_in_place_and_never_more_than_announced() {
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let mut offsets = Vec::new();
        let mut out = [0xffu8; 16];
        let p = w
            .write_with(3, &mut out, |offset, space| {
                offsets.push((offset, space.len()));
                space.fill(b'z');
                space.len()
            })
            .unwrap();
        assert_eq!((p.written, p.complete), (7, true));
        assert_eq!(&out[..8], &[0, 0, 0, 3, b'z', b'z', b'z', 0xff]);
        assert_eq!(offsets, [(0, 3)], "space is clipped to the body owed");
        assert_eq!(w.finish(), Ok(()));
    }

    #[test]
    fn write_with_refuses_a_closure_that_claims_too_much() {
        let mut w = FrameWriter::new(HeaderFormat::NETWORK);
        let mut out = [0u8; 6];
        assert_eq!(
            w.write_with(5, &mut out, |_, space| space.len() + 1),
            Err(WriteError::Overrun {
                claimed: 3,
                space: 2
            })
        );
        // Nothing counted, not even the header: the next call starts over.
        assert_eq!(w.stats().bytes, 0);
        let p = w.write_with(5, &mut out, |_, space| space.len()).unwrap();
        assert_eq!((p.written, p.complete), (6, false));
        assert_eq!(&out[..4], &[0, 0, 0, 5]);
        // A caller who stops early is told the frame is unfinished.
        assert_eq!(w.finish(), Err(WriteError::Busy { in_progress: 5 }));
        // A frame of another length is refused while this one is owed.
        assert_eq!(
            w.write_with(4, &mut out, |_, s| s.len()),
            Err(WriteError::Busy { in_progress: 5 })
        );
        let p = w.write_with(5, &mut out, |offset, space| {
            assert_eq!((offset, space.len()), (2, 3));
            3
        });
        assert!(p.unwrap().complete);
        assert_eq!(w.stats().split_frames, 1);
    }

    #[test]
    fn write_with_refuses_a_length_over_the_maximum() {
        let f = HeaderFormat::NETWORK.with_max_len(10).unwrap();
        let mut w = FrameWriter::new(f);
        assert_eq!(
            w.write_with(11, &mut [0; 32], |_, s| s.len()),
            Err(WriteError::TooLarge { len: 11, max: 10 })
        );
        assert!(!w.in_progress());
    }

    /// `feed` as it was written first: one step of the loop per header or piece,
    /// every counter updated as it goes. The model the fast loop is checked
    /// against, counter for counter.
    fn feed_model<'a, F>(
        r: &mut BodyReader,
        input: &'a [u8],
        mut take: F,
    ) -> Result<usize, ReadError>
    where
        F: FnMut(BodyPiece<'a>) -> usize,
    {
        if let Some(error) = r.poisoned {
            return Err(error);
        }
        if input.is_empty() {
            return Ok(0);
        }
        let header_len = r.format.header_len();
        let mut frames_in_read = u32::from(r.is_mid_frame());
        let mut began_here = false;
        let mut consumed = 0usize;
        let result = loop {
            let Some(rest) = input.get(consumed..) else {
                break Ok(());
            };
            let Some(body) = r.body else {
                if rest.is_empty() {
                    break Ok(());
                }
                if r.header_held == 0 {
                    frames_in_read = frames_in_read.saturating_add(1);
                    began_here = true;
                }
                let whole = (r.header_held == 0)
                    .then(|| r.format.decode(rest))
                    .flatten();
                let len = if let Some(len) = whole {
                    consumed = consumed.saturating_add(header_len);
                    len
                } else {
                    let held = usize::from(r.header_held);
                    let dst = r.header.get_mut(held..header_len).unwrap_or(&mut []);
                    let n = dst.len().min(rest.len());
                    if let (Some(dst), Some(src)) = (dst.get_mut(..n), rest.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    consumed = consumed.saturating_add(n);
                    let held = held.saturating_add(n);
                    if held < header_len {
                        r.header_held = held as u8;
                        break Ok(());
                    }
                    r.header_held = 0;
                    r.format.decode(&r.header).unwrap_or(0)
                };
                if len > r.format.max_len() {
                    let error = ReadError::Oversize {
                        len,
                        max: r.format.max_len(),
                    };
                    r.poisoned = Some(error);
                    r.stats.oversize = r.stats.oversize.saturating_add(1);
                    break Err(error);
                }
                r.body = Some(Body { len, taken: 0 });
                continue;
            };
            let owed = body.len.saturating_sub(body.taken) as usize;
            let n = owed.min(rest.len());
            if n == 0 && owed > 0 {
                break Ok(());
            }
            let bytes = rest.get(..n).unwrap_or(&[]);
            let taken = take(BodyPiece {
                bytes,
                frame_len: body.len as usize,
                offset: body.taken as usize,
                ends_frame: n == owed,
            })
            .min(n);
            consumed = consumed.saturating_add(taken);
            let body = Body {
                len: body.len,
                taken: body.taken.saturating_add(taken as u32),
            };
            if body.taken >= body.len {
                r.body = None;
                r.stats.frames = r.stats.frames.saturating_add(1);
                r.stats.body_bytes = r.stats.body_bytes.saturating_add(u64::from(body.len));
                if !began_here {
                    r.stats.split_frames = r.stats.split_frames.saturating_add(1);
                }
            } else {
                r.body = Some(body);
            }
            if taken < n {
                break Ok(());
            }
        };
        r.stats.reads = r.stats.reads.saturating_add(1);
        r.stats.bytes = r.stats.bytes.saturating_add(consumed as u64);
        if frames_in_read > 1 {
            r.stats.coalesced_reads = r.stats.coalesced_reads.saturating_add(1);
        }
        result.map(|()| consumed)
    }

    /// Everything a reader shows: its counters, the frame in progress, whether it
    /// is mid-frame, its error, and the header bytes it holds.
    fn seen(
        r: &BodyReader,
    ) -> (
        ReadStats,
        Option<(usize, usize)>,
        bool,
        Option<ReadError>,
        u8,
    ) {
        (
            *r.stats(),
            r.current_frame(),
            r.is_mid_frame(),
            r.error(),
            r.header_held,
        )
    }

    use crate::wire::frame::ReadStats;

    use crate::wire::frame::WriteError;

    mod props {
        use super::*;
        use crate::wire::frame::tests::props::any_format;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the frames, however `write_with` gets its space and however
            /// the stream is cut and taken, the pieces join into exactly the frames
            /// written, with the right lengths, offsets and ends.
            #[test]
            fn any_split_gives_pieces_that_join_into_the_frames(
                format in any_format(),
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
                spaces in prop::collection::vec(1usize..100, 1..20),
                cuts in prop::collection::vec(1usize..700, 1..50),
                takes in prop::collection::vec(0usize..400, 0..30),
                last_take in 1usize..400,
            ) {
                // A take of 0 consumes nothing; ending the cycle on a take of at least
                // 1 makes every round of it move the stream on.
                let mut takes = takes;
                takes.push(last_take);
                let max = format.max_len() as usize;
                let bodies: Vec<Vec<u8>> =
                    bodies.into_iter().map(|mut b| { b.truncate(max); b }).collect();
                let mut stream = Vec::new();
                let mut w = FrameWriter::new(format);
                let mut space = spaces.iter().cycle();
                for body in &bodies {
                    loop {
                        let mut out = vec![0u8; *space.next().unwrap()];
                        let p = w
                            .write_with(body.len(), &mut out, |offset, space| {
                                let n = space.len();
                                space.copy_from_slice(&body[offset..offset + n]);
                                n
                            })
                            .unwrap();
                        stream.extend_from_slice(&out[..p.written]);
                        if p.complete { break; }
                    }
                }
                prop_assert_eq!(w.finish(), Ok(()));

                let mut r = BodyReader::new(format);
                let mut got: Vec<Vec<u8>> = Vec::new();
                let mut open = false;
                let mut pos = 0;
                let mut cut = cuts.iter().cycle();
                let mut take = takes.iter().cycle();
                while pos < stream.len() {
                    let end = (pos + cut.next().unwrap()).min(stream.len());
                    // Feed this piece until it is all consumed, the closure taking
                    // an arbitrary amount each time.
                    let mut stalled = 0;
                    while pos < end {
                        let mut checks = Ok(());
                        let n = r.feed(&stream[pos..end], |piece| {
                            if !open {
                                got.push(Vec::new());
                                open = true;
                            }
                            let index = got.len() - 1;
                            let expected = bodies.get(index).map(Vec::len);
                            let frame = got.last_mut().unwrap();
                            if Some(piece.frame_len) != expected
                                || piece.offset != frame.len()
                                || piece.ends_frame != (piece.offset + piece.bytes.len() == piece.frame_len)
                            {
                                checks = Err(format!("bad piece {piece:?} for frame {index}"));
                            }
                            let n = (*take.next().unwrap()).min(piece.bytes.len());
                            frame.extend_from_slice(&piece.bytes[..n]);
                            if piece.ends_frame && n == piece.bytes.len() {
                                open = false;
                            }
                            n
                        }).unwrap();
                        prop_assert_eq!(checks, Ok(()));
                        pos += n;
                        // One whole cycle of takes always moves the stream on.
                        stalled = if n == 0 { stalled + 1 } else { 0 };
                        prop_assert!(stalled <= takes.len(), "feed made no progress");
                    }
                }
                prop_assert!(!open);
                prop_assert_eq!(r.finish(), Ok(()));
                prop_assert_eq!(&got, &bodies);
                prop_assert_eq!(r.stats().frames, bodies.len() as u64);
                prop_assert_eq!(r.stats().bytes, stream.len() as u64);
            }

            /// The fast loop against the model: any stream (frames, or bytes at
            /// random, oversize headers and all), cut anywhere, taken in any
            /// amounts, gives the same results, the same pieces, and the same
            /// counters and state after every call, and the same end.
            #[test]
            fn feed_matches_the_model_counter_for_counter(
                format in any_format(),
                bodies in prop::collection::vec(0usize..300, 0..12),
                noise in prop::collection::vec(any::<u8>(), 0..40),
                noise_at in any::<prop::sample::Index>(),
                cuts in prop::collection::vec(1usize..400, 1..40),
                takes in prop::collection::vec(0usize..400, 1..30),
            ) {
                // Frames of the format (bodies cut to its maximum), with a run of
                // random bytes put somewhere among them.
                let max = format.max_len() as usize;
                let mut stream = Vec::new();
                let mut w = FrameWriter::new(format);
                for (i, &len) in bodies.iter().enumerate() {
                    let len = len.min(max);
                    let mut out = vec![0u8; format.header_len() + len];
                    let p = w.write_with(len, &mut out, |offset, space| {
                        for (k, byte) in space.iter_mut().enumerate() {
                            *byte = (i * 31 + offset + k) as u8;
                        }
                        space.len()
                    }).unwrap();
                    stream.extend_from_slice(&out[..p.written]);
                }
                let at = noise_at.index(stream.len() + 1);
                stream.splice(at..at, noise.iter().copied());

                let mut fast = BodyReader::new(format);
                let mut model = BodyReader::new(format);
                let mut cut = cuts.iter().cycle();
                let (mut fast_takes, mut model_takes) = (takes.iter().cycle(), takes.iter().cycle());
                let mut pos = 0;
                while pos < stream.len() {
                    let end = (pos + cut.next().unwrap()).min(stream.len());
                    let input = &stream[pos..end];
                    // An empty input first: nothing happens, to both alike.
                    let empty: &[u8] = &[];
                    prop_assert_eq!(fast.feed(empty, |_| 0), feed_model(&mut model, empty, |_| 0));
                    prop_assert_eq!(seen(&fast), seen(&model));
                    let mut off = 0;
                    let mut calls = 0;
                    // Then the piece, fed until it is all consumed, the stream
                    // stops, or the takes stall it.
                    loop {
                        let (mut fast_pieces, mut model_pieces) = (Vec::new(), Vec::new());
                        let got = fast.feed(&input[off..], |piece| {
                            fast_pieces.push(own(piece));
                            *fast_takes.next().unwrap()
                        });
                        let want = feed_model(&mut model, &input[off..], |piece| {
                            model_pieces.push(own(piece));
                            *model_takes.next().unwrap()
                        });
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(&fast_pieces, &model_pieces);
                        prop_assert_eq!(seen(&fast), seen(&model));
                        calls += 1;
                        match got {
                            Ok(n) => off += n,
                            Err(_) => {
                                // Stopped: both start over on the next piece.
                                fast.reset();
                                model.reset();
                                break;
                            }
                        }
                        if off == input.len() || calls > takes.len() + 2 {
                            break;
                        }
                    }
                    pos = end;
                }
                prop_assert_eq!(fast.finish(), model.finish());
                prop_assert_eq!(seen(&fast), seen(&model));
            }

            /// Random bytes never panic, and every piece stays inside its frame.
            #[test]
            fn random_bytes_never_panic(
                format in any_format(),
                bytes in prop::collection::vec(any::<u8>(), 0..2000),
                piece in 1usize..300,
                take in 0usize..50,
            ) {
                let mut r = BodyReader::new(format);
                for chunk in bytes.chunks(piece) {
                    let mut off = 0;
                    while off < chunk.len() {
                        match r.feed(&chunk[off..], |p| {
                            assert!(p.offset + p.bytes.len() <= p.frame_len);
                            assert!(p.frame_len <= format.max_len() as usize);
                            take.max(1)
                        }) {
                            Ok(n) => off += n,
                            Err(_) => break,
                        }
                    }
                }
                let _ = r.finish();
            }
        }
    }
}
