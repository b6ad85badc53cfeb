//! Feeds arbitrary bytes to a `FrameReader` in arbitrary pieces, with an arbitrary
//! header format and storage, and checks what the reader promises: no panic; the
//! frames it yields, re-encoded, are exactly the start of the input; a reader with
//! no whole frame waiting always takes more bytes (never stuck); an oversize header
//! stops it for good, at the header that caused it; the end of the stream is clean
//! or truncated by exactly the bytes left over; the counters agree.
//!
//! Input layout: `mode, max_lo, max_hi, extra_room, cut_count`, then `cut_count % 8
//! + 1` cut bytes (low 7 bits: piece length - 1; high bit: fill through
//! `receive_buffer` + `commit` instead of `feed`), then the stream itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::wire::frame::{ByteOrder, FrameReader, HeaderFormat, HeaderWidth, ReadError};

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, max_lo, max_hi, extra_room, cut_count], rest)) = data.split_first_chunk()
    else {
        return;
    };
    let width = [HeaderWidth::U8, HeaderWidth::U16, HeaderWidth::U32][usize::from(mode % 3)];
    let order = if mode & 4 != 0 {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    // Small maximums keep frames completing and storage compacting often.
    let max_len = (u32::from(u16::from_le_bytes([max_lo, max_hi])) % 1025).min(width.max_len());
    let format = HeaderFormat::new(width, order, max_len).expect("max_len fits the width");
    // Take frames with `frame` + `consume` instead of `next_frame`.
    let peek = mode & 8 != 0;
    // Take frames only once the reader is full, so back-pressure is exercised.
    let lazy = mode & 16 != 0;
    let (cuts, stream) = rest.split_at((usize::from(cut_count % 8) + 1).min(rest.len()));
    let cuts: &[u8] = if cuts.is_empty() { &[0x7f] } else { cuts };

    let storage = vec![0u8; format.max_frame_len() + usize::from(extra_room)];
    let mut reader = FrameReader::new(storage, format).expect("storage holds one frame");
    let mut check = Check {
        format,
        stream,
        out: Vec::new(),
        frames: 0,
        body_bytes: 0,
    };

    let mut fed = 0;
    let mut cut = cuts.iter().cycle();
    let mut oversize = None;
    while fed < stream.len() {
        let &c = cut.next().expect("cycle of a non-empty slice");
        let piece = &stream[fed..stream.len().min(fed + usize::from(c & 0x7f) + 1)];
        let result = if c & 0x80 != 0 {
            let buf = reader.receive_buffer();
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            reader.commit(n).map(|()| n)
        } else {
            reader.feed(piece)
        };
        match result {
            Ok(n) => {
                assert!(n <= piece.len());
                fed += n;
                if n == 0 {
                    assert!(reader.has_frame(), "full with no whole frame: stuck");
                }
                if n == 0 || !lazy {
                    check.drain(&mut reader, peek);
                }
            }
            Err(error) => {
                oversize = Some(error);
                break;
            }
        }
    }
    check.drain(&mut reader, peek);

    if let Some(error) = oversize {
        let ReadError::Oversize { len, max } = error else {
            panic!("feed can only fail on an oversize header, got {error:?}");
        };
        assert_eq!(max, max_len);
        assert!(len > max);
        // The bad header starts right after the last good frame.
        assert_eq!(format.decode(&stream[check.out.len()..]), Some(len));
        // The reader stays stopped.
        assert_eq!(reader.feed(&[0]), Err(error));
        assert_eq!(reader.commit(1), Err(error));
        assert!(reader.receive_buffer().is_empty());
        assert_eq!(reader.finish(), Err(error));
        assert_eq!(reader.error(), Some(error));
        assert_eq!(reader.stats().oversize, 1);
    } else {
        assert_eq!(fed, stream.len());
        assert_eq!(reader.stats().bytes, fed as u64);
        match reader.finish() {
            Ok(()) => assert_eq!(check.out.len(), fed),
            Err(ReadError::Truncated { received, expected }) => {
                assert!(received > 0);
                assert_eq!(check.out.len() + received, fed);
                let tail = &stream[check.out.len()..];
                match format.decode(tail) {
                    Some(len) => {
                        let total = format.header_len() + len as usize;
                        assert_eq!(expected, Some(total));
                        assert!(received < total);
                    }
                    None => assert_eq!(expected, None),
                }
                assert_eq!(reader.stats().truncated, 1);
            }
            Err(error) => panic!("finish can only report truncation here, got {error:?}"),
        }
    }
    assert_eq!(reader.stats().frames, check.frames);
    assert_eq!(reader.stats().body_bytes, check.body_bytes);
    assert!(!reader.has_frame());

    // After a reset the reader works again: a zero-length frame is a frame.
    reader.reset();
    let header = format.header(0).expect("zero fits any format");
    assert_eq!(reader.feed(header.as_bytes()), Ok(format.header_len()));
    assert_eq!(reader.next_frame(), Some(&[][..]));
    assert_eq!(reader.finish(), Ok(()));
});

/// The frames taken so far, re-encoded, and what they must match.
struct Check<'a> {
    format: HeaderFormat,
    stream: &'a [u8],
    out: Vec<u8>,
    frames: u64,
    body_bytes: u64,
}

impl Check<'_> {
    /// Takes every whole frame and checks it re-encodes to the next bytes of the input.
    fn drain(&mut self, reader: &mut FrameReader<Vec<u8>>, peek: bool) {
        loop {
            let body = if peek {
                let Some(body) = reader.frame().map(<[u8]>::to_vec) else {
                    break;
                };
                assert_eq!(reader.frame(), Some(&body[..]), "frame() is idempotent");
                reader.consume();
                body
            } else {
                let Some(body) = reader.next_frame().map(<[u8]>::to_vec) else {
                    break;
                };
                body
            };
            assert!(body.len() <= self.format.max_len() as usize);
            let start = self.out.len();
            let header = self
                .format
                .header(body.len())
                .expect("a yielded frame fits");
            self.out.extend_from_slice(header.as_bytes());
            self.out.extend_from_slice(&body);
            assert_eq!(
                self.stream.get(start..self.out.len()),
                Some(&self.out[start..]),
                "frame {} does not re-encode to the input",
                self.frames
            );
            self.frames += 1;
            self.body_bytes += body.len() as u64;
        }
    }
}
