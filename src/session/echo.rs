//! Raw TCP echo: the primer's server loop, `data = conn.recv(1024)` then
//! `conn.sendall(data)`, as a [`Session`].
//!
//! It takes no more than its 1 KiB buffer has room for, so when the peer stops
//! reading, our send buffer fills, the echo buffer fills, we stop taking input, our
//! receive window closes and the peer's `send` blocks. That chain is TCP's
//! back-pressure, end to end, and nothing is ever dropped.

use super::{OutBuffer, Session, Status};
use crate::time::Instant;

/// The primer's `recv(1024)`.
pub const CHUNK: usize = 1024;

/// Echoes every byte back, through a buffer of [`CHUNK`] bytes.
#[derive(Clone, Debug)]
#[must_use = "a session does nothing unless an adapter runs it"]
pub struct Echo {
    out: OutBuffer<[u8; CHUNK]>,
    peer_done: bool,
    /// Bytes echoed, over every connection served.
    pub bytes: u64,
}

impl Echo {
    /// A new echo session.
    pub const fn new() -> Self {
        Self {
            out: OutBuffer::new([0; CHUNK]),
            peer_done: false,
            bytes: 0,
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Session for Echo {
    fn start(&mut self, _now: Instant) {
        self.out.clear();
        self.peer_done = false;
    }

    fn receive(&mut self, input: &[u8], _now: Instant) -> usize {
        let n = input.len().min(self.out.free());
        match input.get(..n).map(|bytes| self.out.push(bytes)) {
            Some(Ok(())) => n,
            _ => 0,
        }
    }

    fn receive_finished(&mut self, _now: Instant) {
        self.peer_done = true;
    }

    fn transmit(&mut self, space: &mut [u8], _now: Instant) -> usize {
        let n = self.out.drain_into(space);
        self.bytes = self.bytes.saturating_add(n as u64);
        n
    }

    fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    fn status(&self) -> Status {
        if self.peer_done && self.out.is_empty() {
            Status::Close
        } else {
            Status::Open
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::testing::{Exchange, run};

    #[test]
    fn every_byte_comes_back_in_order_through_any_split() {
        let input: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for (cut, space) in [(1, 1), (7, 3), (1500, 1024), (5000, 64), (3, 5000)] {
            let Exchange { output, status, .. } = run(&mut Echo::new(), &input, cut, space);
            assert_eq!(output, input, "cut {cut} space {space}");
            assert_eq!(status, Status::Close);
        }
    }

    #[test]
    fn a_full_buffer_takes_no_more_input() {
        let mut echo = Echo::new();
        echo.start(Instant::ZERO);
        assert_eq!(echo.receive(&[1; 3000], Instant::ZERO), CHUNK);
        assert_eq!(echo.receive(&[1; 10], Instant::ZERO), 0);
        let mut space = [0u8; 100];
        assert_eq!(echo.transmit(&mut space, Instant::ZERO), 100);
        assert_eq!(echo.receive(&[1; 3000], Instant::ZERO), 100);
        assert_eq!(echo.status(), Status::Open);
    }
}
