//! Decode throughput of `FrameReader`, side by side with tokio-util's
//! `LengthDelimitedCodec` and a plain `copy_from_slice` of the same bytes.
//!
//! Each case is about 1 MiB of frames (16 B, 1 KiB or 64 KiB bodies, 4-byte
//! big-endian headers, 64 KiB maximum) fed in 1460-byte pieces, one TCP segment's
//! payload at Ethernet's MTU, as a socket's receive path would hand them over.
//! Every frame is handed to `black_box`, so nothing is optimised away.
//!
//! - `smolsock`: `FrameReader` over one maximum frame of storage (65 540 bytes),
//!   what a `Framed` session for 64 KiB frames holds: `feed` each piece, then
//!   `next_frame` until none is left.
//! - `tokio-util`: `LengthDelimitedCodec` with the same header and maximum: extend a
//!   `BytesMut` with each piece, then `decode` until it answers `None`, as
//!   `FramedRead` does.
//! - `memcpy`: the ceiling, the copies a reader that keeps every frame whole
//!   must make, to the places it makes them, with no framing around them: into
//!   65 540 bytes of storage, each byte of a frame longer than a piece at its
//!   offset in its frame (a piece that spans two frames is two copies), each
//!   piece of shorter frames whole at the front.
//! - `memcpy-packed`: the same pieces one after another, starting again at the
//!   front when the next does not fit, as the ceiling was first measured. The
//!   same bytes copied, to other places, and on some machines faster for that
//!   alone.
//!
//! ```sh
//! cargo bench --bench frame            # add -- --quick for a rough figure
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smolsock::wire::frame::{FrameReader, HeaderFormat, encode};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// Payload of one TCP segment at a 1500-byte MTU (IPv4, no TCP options).
const PIECE: usize = 1460;

/// Roughly how many bytes each case decodes per iteration.
const STREAM_LEN: usize = 1 << 20;

const FORMAT: HeaderFormat = HeaderFormat::NETWORK;

/// Frames of `body_len` bytes, back to back, about `STREAM_LEN` bytes in all.
fn stream(body_len: usize) -> Vec<u8> {
    let frame_len = FORMAT.header_len() + body_len;
    let frames = (STREAM_LEN / frame_len).max(1);
    let mut out = vec![0u8; frames * frame_len];
    for (i, frame) in out.chunks_exact_mut(frame_len).enumerate() {
        let body: Vec<u8> = (0..body_len).map(|j| (i + j) as u8).collect();
        encode(FORMAT, &body, frame).unwrap();
    }
    out
}

fn smolsock(reader: &mut FrameReader<Vec<u8>>, stream: &[u8]) -> usize {
    let mut frames = 0;
    for piece in stream.chunks(PIECE) {
        let mut piece = piece;
        while !piece.is_empty() {
            let taken = reader.feed(piece).unwrap();
            piece = &piece[taken..];
            while let Some(frame) = reader.next_frame() {
                black_box(frame);
                frames += 1;
            }
        }
    }
    frames
}

fn tokio_util(codec: &mut LengthDelimitedCodec, buf: &mut BytesMut, stream: &[u8]) -> usize {
    let mut frames = 0;
    for piece in stream.chunks(PIECE) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec.decode(buf).unwrap() {
            black_box(frame);
            frames += 1;
        }
    }
    frames
}

fn memcpy(storage: &mut [u8], stream: &[u8], frame_len: usize) {
    if frame_len <= PIECE {
        // Short frames: the reader copies each piece whole behind the few bytes
        // of a frame it holds, near the front of its storage.
        for piece in stream.chunks(PIECE) {
            storage[..piece.len()].copy_from_slice(piece);
            black_box(&mut *storage);
        }
        return;
    }
    // Frames longer than a piece: each byte goes where a reader that keeps each
    // frame whole puts it, at its offset in its frame (a piece that spans two
    // frames is two copies): the same copies to the same places, nothing else.
    let mut in_frame = 0;
    for piece in stream.chunks(PIECE) {
        let mut piece = piece;
        while !piece.is_empty() {
            let n = piece.len().min(frame_len - in_frame);
            storage[in_frame..in_frame + n].copy_from_slice(&piece[..n]);
            piece = &piece[n..];
            in_frame = (in_frame + n) % frame_len;
        }
        black_box(&mut *storage);
    }
}

/// The ceiling as first measured: the pieces copied one after another into the
/// storage, starting again at its front when the next one does not fit. The
/// same bytes as `memcpy`, to other places: kept beside it because the place
/// alone moves the figure (see docs/BENCHMARKS.md).
fn memcpy_packed(storage: &mut [u8], stream: &[u8]) {
    let mut at = 0;
    for piece in stream.chunks(PIECE) {
        if at + piece.len() > storage.len() {
            at = 0;
        }
        storage[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
        black_box(&mut *storage);
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    for (name, body_len) in [("16B", 16), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let bytes = stream(body_len);
        let frames = bytes.len() / (FORMAT.header_len() + body_len);
        group.throughput(Throughput::Bytes(bytes.len() as u64));

        group.bench_with_input(BenchmarkId::new("smolsock", name), &bytes, |b, bytes| {
            let mut reader = FrameReader::new(vec![0u8; FORMAT.max_frame_len()], FORMAT).unwrap();
            assert_eq!(smolsock(&mut reader, bytes), frames);
            b.iter(|| smolsock(&mut reader, bytes));
        });

        group.bench_with_input(BenchmarkId::new("tokio-util", name), &bytes, |b, bytes| {
            let mut codec = LengthDelimitedCodec::builder()
                .length_field_length(FORMAT.header_len())
                .big_endian()
                .max_frame_length(FORMAT.max_len() as usize)
                .new_codec();
            let mut buf = BytesMut::with_capacity(FORMAT.max_frame_len());
            assert_eq!(tokio_util(&mut codec, &mut buf, bytes), frames);
            b.iter(|| tokio_util(&mut codec, &mut buf, bytes));
        });

        group.bench_with_input(BenchmarkId::new("memcpy", name), &bytes, |b, bytes| {
            let mut storage = vec![0u8; FORMAT.max_frame_len()];
            let frame_len = FORMAT.header_len() + body_len;
            b.iter(|| memcpy(&mut storage, bytes, frame_len));
        });

        group.bench_with_input(
            BenchmarkId::new("memcpy-packed", name),
            &bytes,
            |b, bytes| {
                let mut storage = vec![0u8; FORMAT.max_frame_len()];
                b.iter(|| memcpy_packed(&mut storage, bytes));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
