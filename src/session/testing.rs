//! Drives a session over bytes alone, for the sessions' own tests.

use super::{Session, Status};
use crate::time::Instant;

/// What came of a run.
pub(crate) struct Exchange {
    /// Every byte the session transmitted.
    pub output: Vec<u8>,
    /// Its status at the end.
    pub status: Status,
}

/// Starts `session`, offers `input` in pieces of at most `cut` bytes with send
/// spaces of `space` bytes, then the end of the stream, until the session closes,
/// aborts, or a whole round moves nothing.
pub(crate) fn run<S: Session>(session: &mut S, input: &[u8], cut: usize, space: usize) -> Exchange {
    let now = Instant::ZERO;
    session.start(now);
    let (mut output, mut taken, mut finished) = (Vec::new(), 0, false);
    let mut buf = vec![0u8; space];
    // Each round takes input, sends, or ends: far more rounds than the input
    // has bytes is a session that never stops.
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        assert!(
            rounds <= 10 * input.len() + 10_000,
            "the session still going after {rounds} rounds"
        );
        let end = (taken + cut).min(input.len());
        let took = session.receive(&input[taken..end], now);
        taken += took;
        // As the adapters do: no send space for a session that wants none.
        let sent = if session.wants_transmit() {
            session.transmit(&mut buf, now)
        } else {
            0
        };
        output.extend_from_slice(&buf[..sent]);
        if taken == input.len() && !finished {
            finished = true;
            session.receive_finished(now);
            continue;
        }
        let status = session.status();
        if status != Status::Open || (took == 0 && sent == 0) {
            // One more round: a session may have work that only a transmit with
            // nothing received reveals (if it says so).
            let sent = if session.wants_transmit() {
                session.transmit(&mut buf, now)
            } else {
                0
            };
            output.extend_from_slice(&buf[..sent]);
            if sent == 0 || session.status() != Status::Open {
                assert_eq!(taken, input.len(), "the session stopped taking input");
                return Exchange {
                    output,
                    status: session.status(),
                };
            }
        }
    }
}
