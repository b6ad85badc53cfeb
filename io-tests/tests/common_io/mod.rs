//! What the stream adapter tests share: sessions and a request made to pin one
//! behaviour each, and framed test data.
//!
//! Everything here is test scaffolding: it may allocate and unwrap freely.

#![allow(dead_code)]

use smolsock::session::{Request, Session, Status};
use smolsock::time::{Duration, Instant};
use smolsock::wire::frame::{HeaderFormat, encode};

/// `bodies` as frames in `format`, one after another.
pub fn frames(format: HeaderFormat, bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for body in bodies {
        let mut buf = vec![0u8; body.len() + format.header_len()];
        let n = encode(format, body, &mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
    }
    stream
}

/// Forty bodies of every length from 0 to 100 bytes (some twice), each of one byte
/// value.
pub fn bodies() -> Vec<Vec<u8>> {
    (0..40u8).map(|i| vec![i; (i as usize * 7) % 101]).collect()
}

/// `len` bytes that are not all alike.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Wraps a session with an idle deadline: once `idle` passes with no byte
/// received, the connection is aborted. Counts the adapter's calls.
pub struct Idle<S> {
    pub inner: S,
    pub idle: Duration,
    pub last: Instant,
    pub timed_out: bool,
    pub timeouts: u32,
    pub starts: u32,
    pub ends: u32,
}

impl<S> Idle<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            last: Instant::ZERO,
            timed_out: false,
            timeouts: 0,
            starts: 0,
            ends: 0,
        }
    }
}

impl<S: Session> Session for Idle<S> {
    fn start(&mut self, now: Instant) {
        self.starts += 1;
        self.last = now;
        self.timed_out = false;
        self.inner.start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        let n = self.inner.receive(input, now);
        if n > 0 {
            self.last = now;
        }
        n
    }

    fn receive_finished(&mut self, now: Instant) {
        self.inner.receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        self.inner.transmit(space, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.last.saturating_add(self.idle))
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now >= self.last.saturating_add(self.idle) {
            self.timeouts += 1;
            self.timed_out = true;
        }
    }

    fn status(&self) -> Status {
        if self.timed_out {
            Status::Abort
        } else {
            self.inner.status()
        }
    }

    fn end(&mut self, now: Instant) {
        self.ends += 1;
        self.inner.end(now);
    }
}

/// Has `chores` pieces of work to do with no byte from the peer (a file to hash
/// before an upload): its deadline is due at once until they are done. Then it
/// sends `done` and closes.
pub struct Chores {
    pub left: u32,
    pub sent: bool,
}

impl Session for Chores {
    fn start(&mut self, _: Instant) {}

    fn receive(&mut self, _: &[u8], _: Instant) -> usize {
        0
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, space: &mut [u8], _: Instant) -> usize {
        if self.left > 0 || self.sent || space.len() < 4 {
            return 0;
        }
        self.sent = true;
        space[..4].copy_from_slice(b"done");
        4
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.left > 0).then_some(Instant::ZERO)
    }

    fn handle_timeout(&mut self, _: Instant) {
        self.left = self.left.saturating_sub(1);
    }

    fn status(&self) -> Status {
        if self.sent {
            Status::Close
        } else {
            Status::Open
        }
    }
}

/// Takes nothing, sends nothing, sets no deadline: a session that broke its word.
pub struct Deaf {
    pub ends: u32,
}

impl Session for Deaf {
    fn start(&mut self, _: Instant) {}

    fn receive(&mut self, _: &[u8], _: Instant) -> usize {
        0
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, _: &mut [u8], _: Instant) -> usize {
        0
    }

    fn status(&self) -> Status {
        Status::Open
    }

    fn end(&mut self, _: Instant) {
        self.ends += 1;
    }
}

/// A client's request: sends `question`, then takes exactly `answer_len` bytes as
/// the answer (and not one more). If the peer finishes first, the outcome is the
/// bytes that came, as an error, and the connection closes.
pub struct Ask {
    pub question: Vec<u8>,
    pub answer_len: usize,
    pub sent: usize,
    pub answer: Vec<u8>,
    pub cut: bool,
    pub outcome: Option<Result<Vec<u8>, Vec<u8>>>,
    pub starts: u32,
    pub ends: u32,
}

impl Ask {
    pub fn new(question: &[u8], answer_len: usize) -> Self {
        Self {
            question: question.to_vec(),
            answer_len,
            sent: 0,
            answer: Vec::new(),
            cut: false,
            outcome: None,
            starts: 0,
            ends: 0,
        }
    }
}

impl Session for Ask {
    fn start(&mut self, _: Instant) {
        self.starts += 1;
    }

    fn receive(&mut self, input: &[u8], _: Instant) -> usize {
        let n = input.len().min(self.answer_len - self.answer.len());
        self.answer.extend_from_slice(&input[..n]);
        if self.answer.len() == self.answer_len && self.outcome.is_none() && !self.cut {
            self.outcome = Some(Ok(self.answer.clone()));
        }
        n
    }

    fn receive_finished(&mut self, _: Instant) {
        if self.answer.len() < self.answer_len {
            self.cut = true;
            self.outcome = Some(Err(self.answer.clone()));
        }
    }

    fn transmit(&mut self, space: &mut [u8], _: Instant) -> usize {
        let rest = &self.question[self.sent..];
        let n = rest.len().min(space.len());
        space[..n].copy_from_slice(&rest[..n]);
        self.sent += n;
        n
    }

    fn status(&self) -> Status {
        if self.cut {
            Status::Close
        } else {
            Status::Open
        }
    }

    fn end(&mut self, _: Instant) {
        self.ends += 1;
    }
}

impl Request for Ask {
    type Output = Result<Vec<u8>, Vec<u8>>;

    fn outcome(&mut self) -> Option<Self::Output> {
        self.outcome.take()
    }
}

/// Takes at most four bytes an offer, refusing more until `transmit` has
/// digested them; answers "ok" and closes once it has twelve. Back-pressure
/// as the `Session` trait describes it: the adapter must offer the rest again
/// after the transmit, not wait for the peer (which waits for the answer).
#[derive(Default)]
pub struct Sip {
    pub held: usize,
    pub got: usize,
    pub answered: bool,
}

impl Session for Sip {
    fn start(&mut self, _: Instant) {}

    fn receive(&mut self, input: &[u8], _: Instant) -> usize {
        if self.held > 0 {
            return 0;
        }
        self.held = input.len().min(4);
        self.held
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, space: &mut [u8], _: Instant) -> usize {
        self.got += core::mem::take(&mut self.held);
        if self.got >= 12 && !self.answered && space.len() >= 2 {
            space[..2].copy_from_slice(b"ok");
            self.answered = true;
            return 2;
        }
        0
    }

    fn status(&self) -> Status {
        if self.answered {
            Status::Close
        } else {
            Status::Open
        }
    }
}

/// A session with one long answer and nothing to read: `left` bytes, then it
/// closes.
pub struct Firehose {
    pub left: usize,
}

impl Session for Firehose {
    fn start(&mut self, _: Instant) {}

    fn receive(&mut self, input: &[u8], _: Instant) -> usize {
        input.len()
    }

    fn receive_finished(&mut self, _: Instant) {}

    fn transmit(&mut self, space: &mut [u8], _: Instant) -> usize {
        let n = space.len().min(self.left);
        space[..n].fill(b'x');
        self.left -= n;
        n
    }

    fn status(&self) -> Status {
        if self.left == 0 {
            Status::Close
        } else {
            Status::Open
        }
    }
}
