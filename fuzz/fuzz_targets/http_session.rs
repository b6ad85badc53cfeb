//! Feeds arbitrary bytes to the HTTP responder session, in pieces and at times the
//! input picks, and checks what the session promises: no panic; every byte taken,
//! before and after the answer; a close at the end; and either no answer (the peer
//! closed mid head) or exactly one whole `HTTP/1.1` response, whose
//! `Content-Length` is the length of the body that follows (or of none, for HEAD).
//!
//! Input layout: `shape, gap`, then the stream. `shape`'s low nibble is the piece
//! length - 1, its high nibble the send space in 16-byte steps (plus one byte);
//! `gap` is the time between pieces in 50 ms steps, so the 5 s head deadline
//! passes in some runs and not in others.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::http::{HttpResponder, StatusSite};
use smolsock::session::{Session, Status};
use smolsock::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&[shape, gap], stream)) = data.split_first_chunk() else {
        return;
    };
    let cut = usize::from(shape & 0x0f) + 1;
    let space = usize::from(shape >> 4) * 16 + 1;
    let gap = Duration::from_millis(u64::from(gap) * 50);
    let status = |w: &mut dyn core::fmt::Write| w.write_str("fuzzing");
    let site = StatusSite::new("fuzz", &status);
    let mut http = HttpResponder::<_, 128, 512>::new(&site);
    let mut now = Instant::ZERO;
    http.start(now);
    let (mut out, mut buf) = (Vec::new(), vec![0u8; space]);
    let mut drain = |http: &mut HttpResponder<_, 128, 512>, now| loop {
        let n = http.transmit(&mut buf, now);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    };
    for piece in stream.chunks(cut) {
        if http.poll_timeout().is_some_and(|at| at <= now) {
            http.handle_timeout(now);
        }
        assert_eq!(http.receive(piece, now), piece.len());
        drain(&mut http, now);
        now = now.saturating_add(gap);
    }
    http.receive_finished(now);
    drain(&mut http, now);
    assert_eq!(http.status(), Status::Close);
    assert_eq!(http.stats().bytes_in, stream.len() as u64);
    assert_eq!(http.stats().bytes_out, out.len() as u64);

    if out.is_empty() {
        return;
    }
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = core::str::from_utf8(&out[..head_end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let body = out.len() - head_end;
    assert!(body == length || body == 0, "{head}: {body} bytes of body");
});
