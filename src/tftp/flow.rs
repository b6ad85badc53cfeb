//! The two halves of every TFTP transfer, whoever runs them: the [`Sender`] of
//! DATA (a server's RRQ, a client's put) and the [`Receiver`] of DATA (a
//! server's WRQ, a client's get). Both count blocks as `u64` and put only the low
//! 16 bits on the wire, so a file of more than 65535 blocks rolls over to 0.
//!
//! Neither reads a clock: they keep a deadline from the `now` they are given.

use super::TftpError;
use super::packet::{DATA_HEADER_LEN, emit_data_header};
use crate::time::{Duration, Instant};

/// The block number on the wire of block `n` (counting from 1): its low 16 bits.
pub(super) const fn wire_block(n: u64) -> u16 {
    (n & 0xffff) as u16
}

/// Where a block starts in the file.
pub(super) fn block_offset(n: u64, block_size: u16) -> u64 {
    n.saturating_sub(1).saturating_mul(u64::from(block_size))
}

/// Writes the DATA datagram of block `position` into `buf`: its header, then `len`
/// body bytes from `read` (which returns how many it wrote). Returns the
/// datagram's length and the bytes `read` wrote; the caller decides what a short
/// read means.
pub(super) fn data_block<E: From<TftpError>>(
    buf: &mut [u8],
    position: u64,
    len: usize,
    read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(usize, usize), E> {
    let end = DATA_HEADER_LEN
        .checked_add(len)
        .ok_or(TftpError::BufferTooSmall)?;
    let datagram = buf.get_mut(..end).ok_or(TftpError::BufferTooSmall)?;
    emit_data_header(datagram, wire_block(position)).map_err(|_| TftpError::BufferTooSmall)?;
    let read = read(datagram.get_mut(DATA_HEADER_LEN..).unwrap_or_default())?;
    Ok((end, read))
}

/// The retransmission timer both halves share: a deadline and the tries left.
///
/// Once armed it stays armed: a try counts when its deadline passes, whether or
/// not the adapter could send anything since, so a transfer whose packets never
/// leave (a socket whose queue is held up) still ends after its tries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timer {
    pub timeout: Duration,
    pub max_tries: u8,
    pub tries: u8,
    pub deadline: Option<Instant>,
    /// A try was counted and nothing has been sent again since.
    resend_due: bool,
    /// Times the peer's repeats started the tries again since its last
    /// progress (see [`repeated`](Self::repeated)).
    repeats: u8,
}

impl Timer {
    pub const fn new(timeout: Duration, max_tries: u8) -> Self {
        Self {
            timeout,
            max_tries,
            tries: 0,
            deadline: None,
            resend_due: false,
            repeats: 0,
        }
    }

    /// Something was sent at `now`: wait a timeout for the answer.
    pub fn arm(&mut self, now: Instant) {
        self.deadline = Some(now.saturating_add(self.timeout));
    }

    /// Arms the timer unless a deadline is set: an answer to a repeat (the
    /// ACK that a duplicate DATA asks for again) does not put off the deadline,
    /// or a peer repeating itself would hold the transfer for ever.
    pub fn arm_unless_armed(&mut self, now: Instant) {
        if self.deadline.is_none() {
            self.arm(now);
        }
    }

    /// The peer moved the transfer on: every try is available again.
    pub const fn progress(&mut self) {
        self.tries = 0;
        self.resend_due = false;
        self.repeats = 0;
    }

    /// The sender resent the last block received at `now`: it missed our ACK,
    /// so its tries for the next block have not begun, and ours must not run
    /// out before them. They start again (a timeout from now), up to
    /// `max_tries` times between two progresses (a sender resends a block no
    /// more often), so a peer repeating itself still ends the transfer.
    pub fn repeated(&mut self, now: Instant) {
        if self.repeats < self.max_tries {
            self.repeats = self.repeats.saturating_add(1);
            self.tries = 0;
            self.resend_due = false;
            self.arm(now);
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|at| now >= at)
    }

    /// The deadline passed at `now`: `true` if one more try is allowed (and
    /// counts it). The next deadline is a timeout from `now` either way, so the
    /// next try counts even if nothing can be sent meanwhile.
    pub fn retry(&mut self, now: Instant) -> bool {
        self.arm(now);
        if self.tries >= self.max_tries {
            return false;
        }
        self.tries = self.tries.saturating_add(1);
        self.resend_due = true;
        true
    }

    /// A packet goes out: `true` if it is the first since a try was counted (a
    /// retransmission, to be counted when it is sent, not when it is due).
    pub const fn resent(&mut self) -> bool {
        core::mem::replace(&mut self.resend_due, false)
    }
}

/// What an ACK did to a [`Sender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acked {
    /// It acknowledged blocks sent and not yet acknowledged.
    Progress,
    /// Every block is acknowledged: the transfer is complete.
    Complete,
    /// A duplicate, or a block never sent: ignored (a duplicate ACK never
    /// triggers a retransmission, so there is no Sorcerer's Apprentice storm).
    Ignored,
}

/// The sending half: which blocks are in flight, which come next.
///
/// Position 0 is the OACK when options were acknowledged (sent alone, answered by
/// ACK 0); positions from 1 are data blocks. `last` is the final block, shorter
/// than `block_size` (possibly empty).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sender {
    pub block_size: u16,
    pub window: u16,
    pub size: u64,
    /// The first position not yet acknowledged.
    pub base: u64,
    /// The next position to send.
    pub next: u64,
    /// One past the highest position ever sent: an ACK up to it is valid even
    /// after a rewind (it may have been on its way).
    pub sent_top: u64,
    pub last: u64,
}

impl Sender {
    /// A sender of `size` bytes; `oack` if position 0 (the OACK) goes first.
    pub fn new(size: u64, block_size: u16, window: u16, oack: bool) -> Self {
        // `sent_top` starts at the first position: nothing sent yet.
        let block_size = block_size.max(1);
        let start = if oack { 0 } else { 1 };
        Self {
            block_size,
            window: window.max(1),
            size,
            base: start,
            next: start,
            sent_top: start,
            last: size
                .checked_div(u64::from(block_size))
                .unwrap_or(size)
                .saturating_add(1),
        }
    }

    /// The position to send now, if the window allows one more.
    pub fn next_position(&self) -> Option<u64> {
        let top = if self.base == 0 {
            0
        } else {
            self.base
                .saturating_add(u64::from(self.window))
                .saturating_sub(1)
                .min(self.last)
        };
        (self.next <= top).then_some(self.next)
    }

    /// The position was sent.
    pub fn sent(&mut self) {
        self.next = self.next.saturating_add(1);
        self.sent_top = self.sent_top.max(self.next);
    }

    /// The bytes of block `n`: (offset, length).
    pub fn block(&self, n: u64) -> (u64, usize) {
        let offset = block_offset(n, self.block_size);
        let len = self
            .size
            .saturating_sub(offset)
            .min(u64::from(self.block_size));
        (offset, usize::try_from(len).unwrap_or(0))
    }

    /// An ACK of wire block `block` arrived.
    pub fn on_ack(&mut self, block: u16) -> Acked {
        // The one position in flight (base..next) with these low 16 bits.
        let ahead = u64::from(block.wrapping_sub(wire_block(self.base)));
        let acked = self.base.saturating_add(ahead);
        if acked >= self.sent_top {
            return Acked::Ignored;
        }
        self.base = acked.saturating_add(1);
        // RFC 7440: after an ACK inside the window, go on from the block after it.
        self.next = self.base;
        if self.base > self.last {
            Acked::Complete
        } else {
            Acked::Progress
        }
    }

    /// The deadline passed: send again from the first unacknowledged position.
    pub fn rewind(&mut self) {
        self.next = self.base;
    }

    /// Bytes acknowledged so far.
    pub fn done_bytes(&self) -> u64 {
        block_offset(self.base, self.block_size).min(self.size)
    }
}

/// What a DATA did to a [`Receiver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// The next block in order: store its bytes. `last` if it ends the file.
    InOrder { last: bool },
    /// A block already received (an ACK of ours was lost, or the network
    /// duplicated it): nothing to store.
    Duplicate,
    /// A block past the next one: one before it was lost.
    Gap,
    /// Longer than a block: no peer of this transfer sends that.
    TooLong,
}

/// The receiving half: how many blocks are in, when to acknowledge.
#[derive(Clone, Copy, Debug)]
pub(super) struct Receiver {
    pub block_size: u16,
    pub window: u16,
    /// Blocks received in order.
    pub received: u64,
    /// Bytes received in order.
    pub bytes: u64,
    /// Blocks received since the last ACK.
    since_ack: u16,
    /// An ACK of `received` is due.
    pub ack_due: bool,
    /// The last block arrived.
    pub complete: bool,
}

impl Receiver {
    pub fn new(block_size: u16, window: u16) -> Self {
        Self {
            block_size: block_size.max(1),
            window: window.max(1),
            received: 0,
            bytes: 0,
            since_ack: 0,
            ack_due: false,
            complete: false,
        }
    }

    /// Classifies a DATA of wire block `block` with `len` bytes.
    pub fn classify(&self, block: u16, len: usize) -> Received {
        if len > usize::from(self.block_size) {
            return Received::TooLong;
        }
        let expected = wire_block(self.received.saturating_add(1));
        if self.complete || block != expected {
            // Within the last 32768 blocks behind: an old one; otherwise ahead.
            let behind = wire_block(self.received).wrapping_sub(block);
            return if behind < 0x8000 {
                Received::Duplicate
            } else {
                Received::Gap
            };
        }
        Received::InOrder {
            last: len < usize::from(self.block_size),
        }
    }

    /// The block that [`classify`](Self::classify) called in order was stored.
    pub fn accept(&mut self, len: usize, last: bool) {
        self.received = self.received.saturating_add(1);
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        self.since_ack = self.since_ack.saturating_add(1);
        self.complete = last;
        if last || self.since_ack >= self.window {
            self.ack_due = true;
        }
    }

    /// The ACK of `received` goes out now.
    pub fn acked(&mut self) {
        self.ack_due = false;
        self.since_ack = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_rolls_block_numbers_over_past_65535() {
        let mut s = Sender::new(70_000 * 8, 8, 1, false);
        s.base = 65535;
        s.next = 65535;
        s.sent_top = 65535;
        assert_eq!(wire_block(s.next_position().unwrap()), 65535);
        s.sent();
        assert_eq!(s.on_ack(65535), Acked::Progress);
        assert_eq!(wire_block(s.next_position().unwrap()), 0);
        s.sent();
        assert_eq!(s.on_ack(65535), Acked::Ignored);
        assert_eq!(s.on_ack(0), Acked::Progress);
        assert_eq!(s.base, 65537);
    }

    #[test]
    fn a_duplicate_ack_never_moves_the_sender() {
        let mut s = Sender::new(100, 10, 4, false);
        for _ in 0..4 {
            s.sent();
        }
        assert_eq!(s.next_position(), None);
        assert_eq!(s.on_ack(2), Acked::Progress);
        assert_eq!((s.base, s.next), (3, 3));
        assert_eq!(s.on_ack(2), Acked::Ignored);
        assert_eq!(s.on_ack(1), Acked::Ignored);
        assert_eq!(s.on_ack(9), Acked::Ignored);
        assert_eq!((s.base, s.next), (3, 3));
    }

    #[test]
    fn a_receiver_tells_duplicates_from_gaps_across_the_roll_over() {
        let mut r = Receiver::new(8, 1);
        r.received = 65535;
        assert_eq!(r.classify(0, 8), Received::InOrder { last: false });
        assert_eq!(r.classify(65535, 8), Received::Duplicate);
        assert_eq!(r.classify(1, 8), Received::Gap);
        r.accept(8, false);
        assert_eq!(r.classify(1, 3), Received::InOrder { last: true });
        assert_eq!(r.classify(0, 8), Received::Duplicate);
    }

    #[test]
    fn a_receiver_refuses_a_data_longer_than_a_block_wherever_it_falls() {
        let r = Receiver::new(8, 1);
        for block in [0, 1, 2, 40000] {
            assert_eq!(r.classify(block, 9), Received::TooLong);
        }
        assert_eq!(r.classify(1, 8), Received::InOrder { last: false });
    }
}
