//! The deadline `Framed` and `StreamingEcho` hold a peer to for each frame it
//! begins, on the sessions alone, in virtual time: a frame left unfinished
//! behind frames that waited, and a frame begun in the read that ends another.

use smolsock::session::{Framed, FramedEcho, Session, Status, StreamingEcho};
use smolsock::time::{Duration, Instant};
use smolsock::wire::frame::{HeaderFormat, ReadError};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Runs `s` from `from` to `until`, a second a step, firing its deadline as a
/// runner does, the peer silent all along.
fn run_silent<S: Session>(s: &mut S, from: Instant, until: Instant) {
    let mut now = from;
    while now <= until {
        if s.poll_timeout().is_some_and(|at| now >= at) {
            s.handle_timeout(now);
        }
        now = now.saturating_add(Duration::from_secs(1));
    }
}

/// The stall of a frame whose first bytes came at `t1`, the peer silent after.
fn assert_stalled_at_the_frame_timeout<S: Session>(
    s: &mut S,
    error: impl Fn(&S) -> Option<ReadError>,
    t1: Instant,
) {
    run_silent(s, t1, Instant::from_secs(3600));
    assert!(
        matches!(error(s), Some(ReadError::Stalled { .. })),
        "an hour silent inside a frame: error {:?}, poll_timeout {:?}, status {:?}",
        error(s),
        s.poll_timeout(),
        s.status()
    );
}

#[test]
fn a_frame_begun_behind_a_frame_the_application_took_stalls_when_the_peer_goes_silent() {
    // A whole frame and half the next header in one read; the application
    // takes the frame at its own pace, and the peer then owes the next one.
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let mut f = Framed::new((), [0u8; 104], [0u8; 104], format).unwrap();
    f.start(Instant::ZERO);
    let mut input = frame(b"hi");
    input.extend_from_slice(&[0, 0]);
    let t1 = Instant::from_secs(1);
    assert_eq!(f.receive(&input, t1), input.len());
    assert_eq!(
        f.poll_timeout(),
        None,
        "the frame waits: the peer owes nothing"
    );
    assert_eq!(f.recv(), Some(&b"hi"[..]));
    assert_stalled_at_the_frame_timeout(&mut f, |f| f.error(), t1);
}

#[test]
fn a_frame_begun_behind_frames_that_waited_for_the_echo_stalls_when_the_peer_goes_silent() {
    // The echo of a first frame fills the queue; a second frame, whole, and
    // the start of a third arrive in the same read and wait for room. Once
    // the answers are out, the third frame is owed.
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let mut f = Framed::new(FramedEcho::new(), [0u8; 104], [0u8; 104], format).unwrap();
    f.start(Instant::ZERO);
    let mut input = frame(&[1u8; 100]);
    input.extend(frame(b"b"));
    input.extend_from_slice(&[0, 0, 0]);
    let t1 = Instant::from_secs(1);
    assert_eq!(f.receive(&input, t1), input.len());
    let mut space = [0u8; 4096];
    // Two echoes to send: a session that never stops fails here.
    let rounds = (0..100)
        .take_while(|_| f.transmit(&mut space, t1) > 0)
        .count();
    assert!(rounds < 100, "still sending after 100 calls");
    assert_eq!(f.handler().frames, 2);
    assert_eq!(f.status(), Status::Open);
    assert_stalled_at_the_frame_timeout(&mut f, |f| f.error(), t1);
}

#[test]
fn a_frame_begun_in_the_read_that_ends_the_last_earns_only_its_own_bytes() {
    // Its first two bytes arrive with the end of a 2004-byte frame: 60 s, and
    // 4 ms for its own two bytes, not 4 s more for the other frame's.
    let format = HeaderFormat::NETWORK.with_max_len(2000).unwrap();
    let mut input = frame(&[7u8; 2000]);
    input.extend_from_slice(&[0, 0]);
    let t1 = Instant::from_secs(1);
    let expected = Some(Instant::from_millis(61_004));

    let mut f = Framed::new(FramedEcho::new(), [0u8; 2004], [0u8; 2004], format).unwrap();
    f.start(Instant::ZERO);
    assert_eq!(f.receive(&input, t1), input.len());
    let mut s = StreamingEcho::new([0u8; 4096], format).unwrap();
    s.start(Instant::ZERO);
    assert_eq!(s.receive(&input, t1), input.len());
    assert_eq!((f.poll_timeout(), s.poll_timeout()), (expected, expected));
}
