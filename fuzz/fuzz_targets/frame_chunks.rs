//! Feeds arbitrary bytes to a `BodyReader` in arbitrary pieces, with an arbitrary
//! header format, taking arbitrary amounts of each body piece, and checks what the
//! reader promises: no panic; every piece borrows the input right where it was
//! offered and stays inside its frame (`offset + len <= frame_len <= max`, ends the
//! frame exactly when it reaches `frame_len`, offsets continue where the last piece
//! taken stopped); the frames taken, re-encoded, are exactly the start of the input;
//! an oversize header stops the reader for good, at the header that caused it; the
//! end of the stream is clean or truncated by exactly the bytes left over; the
//! counters agree.
//!
//! Input layout: `mode, max_lo, max_hi, cut_count`, then `cut_count % 8 + 1` cut
//! bytes (low 7 bits: piece length - 1; high bit: the closure takes only
//! `piece length % 5` bytes of each piece this time, unless the call before took
//! nothing), then the stream itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::wire::body::BodyReader;
use smolsock::wire::frame::{ByteOrder, HeaderFormat, HeaderWidth, ReadError};

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, max_lo, max_hi, cut_count], rest)) = data.split_first_chunk() else {
        return;
    };
    let width = [HeaderWidth::U8, HeaderWidth::U16, HeaderWidth::U32][usize::from(mode % 3)];
    let order = if mode & 4 != 0 {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    let max_len = (u32::from(u16::from_le_bytes([max_lo, max_hi])) % 1025).min(width.max_len());
    let format = HeaderFormat::new(width, order, max_len).expect("max_len fits the width");
    let (cuts, stream) = rest.split_at((usize::from(cut_count % 8) + 1).min(rest.len()));
    let cuts: &[u8] = if cuts.is_empty() { &[0x7f] } else { cuts };

    let mut reader = BodyReader::new(format);
    // The frames taken so far, re-encoded as they arrive; the body of the open one.
    let mut out: Vec<u8> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut open: Option<usize> = None;
    let (mut frames, mut body_bytes) = (0u64, 0u64);

    let mut fed = 0;
    let mut cut = cuts.iter().cycle();
    let mut oversize = None;
    // After a call that consumed nothing, the next takes everything offered, so a
    // stingy closure cannot stall the loop.
    let mut stalled = false;
    while fed < stream.len() {
        let &c = cut.next().expect("cycle of a non-empty slice");
        let piece = &stream[fed..stream.len().min(fed + usize::from(c & 0x7f) + 1)];
        let stingy = c & 0x80 != 0 && !stalled;
        let mut pieces_offered = 0;
        let result = reader.feed(piece, |p| {
            pieces_offered += 1;
            // The piece is a slice of the input, not a copy.
            let start = p.bytes.as_ptr() as usize - piece.as_ptr() as usize;
            assert!(start + p.bytes.len() <= piece.len());
            assert!(p.frame_len <= max_len as usize);
            assert!(p.offset + p.bytes.len() <= p.frame_len);
            assert_eq!(p.ends_frame, p.offset + p.bytes.len() == p.frame_len);
            match open {
                Some(len) => assert_eq!(len, p.frame_len),
                None => {
                    open = Some(p.frame_len);
                    body.clear();
                }
            }
            assert_eq!(
                p.offset,
                body.len(),
                "pieces continue where the last stopped"
            );
            let n = if stingy {
                p.bytes.len().min(p.bytes.len() % 5)
            } else {
                p.bytes.len()
            };
            body.extend_from_slice(&p.bytes[..n]);
            if p.ends_frame && n == p.bytes.len() {
                let header = format.header(body.len()).expect("a piece's frame fits");
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(&body);
                assert_eq!(stream.get(..out.len()), Some(&out[..]), "frame {frames}");
                frames += 1;
                body_bytes += body.len() as u64;
                open = None;
            }
            n
        });
        match result {
            Ok(n) => {
                assert!(n <= piece.len());
                if n == 0 {
                    // Nothing consumed: the closure refused the first body byte.
                    assert!(pieces_offered > 0, "input refused with no piece offered");
                }
                fed += n;
                stalled = n == 0;
            }
            Err(error) => {
                oversize = Some(error);
                break;
            }
        }
    }

    if let Some(error) = oversize {
        let ReadError::Oversize { len, max } = error else {
            panic!("feed can only fail on an oversize header, got {error:?}");
        };
        assert_eq!(max, max_len);
        assert!(len > max);
        assert!(open.is_none(), "a bad header comes between frames");
        assert_eq!(format.decode(&stream[out.len()..]), Some(len));
        assert_eq!(reader.feed(&[0], |_| 0), Err(error));
        assert_eq!(reader.finish(), Err(error));
        assert_eq!(reader.error(), Some(error));
        assert_eq!(reader.stats().oversize, 1);
    } else {
        assert_eq!(fed, stream.len());
        assert_eq!(reader.stats().bytes, fed as u64);
        match reader.finish() {
            Ok(()) => {
                assert_eq!(out.len(), fed);
                assert!(open.is_none());
            }
            Err(ReadError::Truncated { received, expected }) => {
                assert!(received > 0);
                assert_eq!(out.len() + received, fed);
                let tail = &stream[out.len()..];
                match format.decode(tail) {
                    Some(len) => {
                        let total = format.header_len() + len as usize;
                        assert_eq!(expected, Some(total));
                        assert!(received < total);
                        assert_eq!(
                            received,
                            format.header_len() + body.len() * usize::from(open.is_some())
                        );
                    }
                    None => assert_eq!(expected, None),
                }
                assert_eq!(reader.stats().truncated, 1);
            }
            Err(error) => panic!("finish can only report truncation here, got {error:?}"),
        }
    }
    assert_eq!(reader.stats().frames, frames);
    assert_eq!(reader.stats().body_bytes, body_bytes);

    // After a reset the reader works again: a zero-length frame is a frame.
    reader.reset();
    let header = format.header(0).expect("zero fits any format");
    let mut empty = 0;
    assert_eq!(
        reader.feed(header.as_bytes(), |p| {
            assert!(p.bytes.is_empty() && p.ends_frame && p.frame_len == 0);
            empty += 1;
            0
        }),
        Ok(format.header_len())
    );
    assert_eq!(empty, 1);
    assert_eq!(reader.finish(), Ok(()));
});
