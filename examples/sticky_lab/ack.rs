//! The primer's first cure for sticky packets: length, acknowledgement, body.
//!
//! Before each message the sender sends its length alone; the receiver answers by
//! echoing that length back (the acknowledgement), and only then does the sender
//! send the body, without a header. The receiver always knows how many bytes to
//! read next, so messages never glue together, at the price of one extra round trip
//! per message. It is here for study, beside `smolsock::wire::frame`, so the cost
//! of that round trip can be measured (the `sticky_lab` example does).
//!
//! ```text
//! sender                          receiver
//!   | -- 00 00 00 05 ------------->  |   length (a frame header)
//!   | <------------- 00 00 00 05 --  |   acknowledgement: the same bytes
//!   | -- 68 65 6c 6c 6f ---------->  |   body "hello"
//! ```
//!
//! Both halves are sans-IO like the rest of [`smolsock::wire`]: bytes in, bytes out.

// Kept whole for study: the lab uses most of it, its tests the rest.
#![allow(dead_code)]

use core::fmt;

use smolsock::wire::frame::{Header, HeaderFormat, Progress, ReadError, WriteError};

/// Why an acknowledged-length exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AckError {
    /// The receiver's side: a length over the maximum, or a stream cut mid-message.
    Read(ReadError),
    /// The sender's side: a body the header cannot announce, or a new body while
    /// another is in progress.
    Write(WriteError),
    /// The acknowledgement did not repeat the length that was sent.
    WrongAck {
        /// The length sent.
        sent: u32,
        /// The length acknowledged.
        acked: u32,
    },
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::Read(e) => e.fmt(f),
            AckError::Write(e) => e.fmt(f),
            AckError::WrongAck { sent, acked } => {
                write!(f, "sent length {sent} but the peer acknowledged {acked}")
            }
        }
    }
}

impl core::error::Error for AckError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendState {
    Idle,
    /// Header bytes already out.
    Length {
        sent: usize,
    },
    /// Acknowledgement bytes received so far.
    AwaitAck {
        got: usize,
        ack: [u8; 4],
    },
    /// Body bytes already out.
    Body {
        sent: usize,
    },
}

/// The sending half: length, wait for the acknowledgement, then the body.
#[derive(Clone, Debug)]
pub struct AckSender {
    format: HeaderFormat,
    header: Header,
    body_len: usize,
    state: SendState,
    /// Messages whose body went out completely.
    pub messages: u64,
}

impl AckSender {
    /// A sender announcing lengths in `format`.
    pub const fn new(format: HeaderFormat) -> Self {
        Self {
            format,
            header: Header::EMPTY,
            body_len: 0,
            state: SendState::Idle,
            messages: 0,
        }
    }

    /// Whether the sender is waiting for the peer's acknowledgement.
    pub fn awaiting_ack(&self) -> bool {
        matches!(self.state, SendState::AwaitAck { .. })
    }

    /// Whether a message is in progress.
    pub fn in_progress(&self) -> bool {
        self.state != SendState::Idle
    }

    /// Writes the next bytes for the message `body` into `out`: its length first,
    /// then (once acknowledged) the body. Writes nothing while the acknowledgement
    /// is awaited. Call again with the same body until [`Progress::complete`].
    pub fn write(&mut self, body: &[u8], out: &mut [u8]) -> Result<Progress, AckError> {
        if self.state == SendState::Idle {
            self.header = self.format.header(body.len()).map_err(AckError::Write)?;
            self.body_len = body.len();
            self.state = SendState::Length { sent: 0 };
        } else if body.len() != self.body_len {
            return Err(AckError::Write(WriteError::Busy {
                in_progress: self.body_len,
            }));
        }
        let (pending, sent) = match self.state {
            SendState::Length { sent } => (self.header.as_bytes(), sent),
            SendState::Body { sent } => (body, sent),
            SendState::Idle | SendState::AwaitAck { .. } => {
                return Ok(Progress {
                    written: 0,
                    complete: false,
                });
            }
        };
        let rest = pending.get(sent..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        let sent = sent.saturating_add(n);
        let done = sent >= pending.len();
        let mut complete = false;
        self.state = match self.state {
            SendState::Length { .. } if done => SendState::AwaitAck {
                got: 0,
                ack: [0; 4],
            },
            SendState::Length { .. } => SendState::Length { sent },
            SendState::Body { .. } if done => {
                complete = true;
                self.messages = self.messages.saturating_add(1);
                SendState::Idle
            }
            _ => SendState::Body { sent },
        };
        Ok(Progress {
            written: n,
            complete,
        })
    }

    /// Takes acknowledgement bytes from the peer and returns how many it used.
    /// Bytes that arrive when no acknowledgement is awaited are left alone (0).
    pub fn on_receive(&mut self, input: &[u8]) -> Result<usize, AckError> {
        let SendState::AwaitAck { got, mut ack } = self.state else {
            return Ok(0);
        };
        let want = self.format.header_len();
        let n = want.saturating_sub(got).min(input.len());
        if let (Some(dst), Some(src)) = (ack.get_mut(got..got.saturating_add(n)), input.get(..n)) {
            dst.copy_from_slice(src);
        }
        let got = got.saturating_add(n);
        if got < want {
            self.state = SendState::AwaitAck { got, ack };
            return Ok(n);
        }
        let acked = self.format.decode(&ack).unwrap_or(u32::MAX);
        let sent = self
            .format
            .decode(self.header.as_bytes())
            .unwrap_or(u32::MAX);
        if acked != sent {
            self.state = SendState::Idle;
            return Err(AckError::WrongAck { sent, acked });
        }
        self.state = SendState::Body { sent: 0 };
        Ok(n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    /// Header bytes received so far.
    Length {
        got: usize,
        raw: [u8; 4],
    },
    /// Acknowledgement bytes already out, for a message of `len` bytes.
    Ack {
        sent: usize,
        len: usize,
    },
    /// Body bytes received so far.
    Body {
        got: usize,
        len: usize,
    },
    /// A whole message of `len` bytes is in storage.
    Ready {
        len: usize,
    },
    Failed(ReadError),
}

/// The receiving half: read a length, acknowledge it, read exactly that many bytes.
///
/// `B` is the message storage, which must hold the largest body the format allows.
#[derive(Debug)]
pub struct AckReceiver<B> {
    format: HeaderFormat,
    storage: B,
    state: RecvState,
    /// Messages received whole.
    pub messages: u64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> AckReceiver<B> {
    /// A receiver over `storage`; `None` if it cannot hold a body of the maximum length.
    pub fn new(storage: B, format: HeaderFormat) -> Option<Self> {
        (storage.as_ref().len() >= format.max_len() as usize).then_some(Self {
            format,
            storage,
            state: RecvState::Length {
                got: 0,
                raw: [0; 4],
            },
            messages: 0,
        })
    }

    /// Takes bytes from the peer and returns how many it used: header bytes while
    /// a length is expected, body bytes once the length was acknowledged. Takes
    /// nothing while the acknowledgement is not yet written or a message waits.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, AckError> {
        match self.state {
            RecvState::Length { got, mut raw } => {
                let want = self.format.header_len();
                let n = want.saturating_sub(got).min(input.len());
                if let (Some(dst), Some(src)) =
                    (raw.get_mut(got..got.saturating_add(n)), input.get(..n))
                {
                    dst.copy_from_slice(src);
                }
                let got = got.saturating_add(n);
                self.state = if got < want {
                    RecvState::Length { got, raw }
                } else {
                    let len = self.format.decode(&raw).unwrap_or(u32::MAX);
                    if len > self.format.max_len() {
                        let error = ReadError::Oversize {
                            len,
                            max: self.format.max_len(),
                        };
                        self.state = RecvState::Failed(error);
                        return Err(AckError::Read(error));
                    }
                    RecvState::Ack {
                        sent: 0,
                        len: len as usize,
                    }
                };
                Ok(n)
            }
            RecvState::Body { got, len } => {
                let n = len.saturating_sub(got).min(input.len());
                let dst = self.storage.as_mut().get_mut(got..got.saturating_add(n));
                if let (Some(dst), Some(src)) = (dst, input.get(..n)) {
                    dst.copy_from_slice(src);
                }
                let got = got.saturating_add(n);
                self.state = if got >= len {
                    self.messages = self.messages.saturating_add(1);
                    RecvState::Ready { len }
                } else {
                    RecvState::Body { got, len }
                };
                Ok(n)
            }
            RecvState::Failed(e) => Err(AckError::Read(e)),
            RecvState::Ack { .. } | RecvState::Ready { .. } => Ok(0),
        }
    }

    /// Writes the pending acknowledgement (if any) into `out`; returns the count.
    pub fn write_ack(&mut self, out: &mut [u8]) -> usize {
        let RecvState::Ack { sent, len } = self.state else {
            return 0;
        };
        let Ok(header) = self.format.header(len) else {
            return 0;
        };
        let rest = header.as_bytes().get(sent..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        let sent = sent.saturating_add(n);
        self.state = if sent >= header.as_bytes().len() {
            if len == 0 {
                self.messages = self.messages.saturating_add(1);
                RecvState::Ready { len }
            } else {
                RecvState::Body { got: 0, len }
            }
        } else {
            RecvState::Ack { sent, len }
        };
        n
    }

    /// Whether an acknowledgement is waiting to be written.
    pub fn ack_pending(&self) -> bool {
        matches!(self.state, RecvState::Ack { .. })
    }

    /// Takes the whole message, if one arrived. The slice is valid until the next call.
    pub fn next_message(&mut self) -> Option<&[u8]> {
        let RecvState::Ready { len } = self.state else {
            return None;
        };
        self.state = RecvState::Length {
            got: 0,
            raw: [0; 4],
        };
        self.storage.as_ref().get(..len)
    }

    /// Says the stream has ended: `Ok` between messages, `Truncated` inside one.
    pub fn finish(&self) -> Result<(), AckError> {
        let (received, expected) = match self.state {
            RecvState::Length { got: 0, .. } | RecvState::Ready { .. } => return Ok(()),
            RecvState::Failed(e) => return Err(AckError::Read(e)),
            RecvState::Length { got, .. } => (got, None),
            RecvState::Ack { len, .. } => (self.format.header_len(), Some(len)),
            RecvState::Body { got, len } => {
                (got.saturating_add(self.format.header_len()), Some(len))
            }
        };
        Err(AckError::Read(ReadError::Truncated {
            received,
            expected: expected.map(|len| len.saturating_add(self.format.header_len())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs sender and receiver against each other through `chunk`-byte pieces and
    /// returns the messages received and the number of ack round trips.
    fn exchange(bodies: &[&[u8]], chunk: usize) -> (Vec<Vec<u8>>, usize) {
        let format = HeaderFormat::NETWORK.with_max_len(64).unwrap();
        let mut tx = AckSender::new(format);
        let mut rx = AckReceiver::new([0u8; 64], format).unwrap();
        let (mut got, mut acks) = (Vec::new(), 0);
        for body in bodies {
            // Bounded: every round moves a byte at least, or the exchange has
            // stalled.
            for round in 0.. {
                assert!(
                    round <= 4 * (body.len() + 8),
                    "no progress after {round} rounds"
                );
                let mut wire = vec![0u8; chunk];
                let p = tx.write(body, &mut wire).unwrap();
                let mut off = 0;
                while off < p.written {
                    let fed = rx.feed(&wire[off..p.written]).unwrap();
                    assert!(fed > 0, "the receiver took nothing");
                    off += fed;
                    if let Some(m) = rx.next_message() {
                        got.push(m.to_vec());
                    }
                }
                // The receiver answers with the acknowledgement, in pieces too.
                let mut ack = vec![0u8; chunk];
                loop {
                    let n = rx.write_ack(&mut ack);
                    if n == 0 {
                        break;
                    }
                    acks += 1;
                    let mut used = 0;
                    while used < n {
                        let taken = tx.on_receive(&ack[used..n]).unwrap();
                        assert!(taken > 0, "the sender took nothing of the ack");
                        used += taken;
                    }
                }
                if let Some(m) = rx.next_message() {
                    got.push(m.to_vec());
                }
                if p.complete {
                    break;
                }
            }
        }
        (got, acks)
    }

    #[test]
    fn messages_arrive_whole_after_one_acknowledgement_each() {
        let bodies: [&[u8]; 3] = [b"hello", b"sticky", b"packets"];
        for chunk in [1, 3, 64] {
            let (got, acks) = exchange(&bodies, chunk);
            assert_eq!(got, bodies.map(<[u8]>::to_vec), "chunk {chunk}");
            assert!(acks >= 3, "one acknowledgement per message at least");
        }
    }

    #[test]
    fn nothing_of_the_body_goes_out_before_the_ack() {
        let mut tx = AckSender::new(HeaderFormat::NETWORK);
        let mut out = [0u8; 16];
        let p = tx.write(b"abc", &mut out).unwrap();
        assert_eq!(&out[..p.written], &[0, 0, 0, 3]);
        assert!(tx.awaiting_ack());
        assert_eq!(tx.write(b"abc", &mut out).unwrap().written, 0);
        assert_eq!(tx.on_receive(&[0, 0, 0, 3, 9]), Ok(4));
        let p = tx.write(b"abc", &mut out).unwrap();
        assert_eq!(&out[..p.written], b"abc");
        assert!(p.complete);
    }

    #[test]
    fn a_wrong_acknowledgement_is_an_error() {
        let mut tx = AckSender::new(HeaderFormat::NETWORK);
        tx.write(b"abc", &mut [0; 8]).unwrap();
        assert_eq!(
            tx.on_receive(&[0, 0, 0, 4]),
            Err(AckError::WrongAck { sent: 3, acked: 4 })
        );
    }

    #[test]
    fn receiver_refuses_an_oversize_length_and_reports_truncation() {
        let format = HeaderFormat::NETWORK.with_max_len(8).unwrap();
        let mut rx = AckReceiver::new([0u8; 8], format).unwrap();
        assert_eq!(
            rx.feed(&[0, 0, 0, 9]),
            Err(AckError::Read(ReadError::Oversize { len: 9, max: 8 }))
        );
        let mut rx = AckReceiver::new([0u8; 8], format).unwrap();
        rx.feed(&[0, 0, 0, 2]).unwrap();
        assert_eq!(rx.feed(b"x"), Ok(0), "no body before the ack is written");
        assert_eq!(rx.write_ack(&mut [0; 4]), 4);
        rx.feed(b"x").unwrap();
        assert_eq!(
            rx.finish(),
            Err(AckError::Read(ReadError::Truncated {
                received: 5,
                expected: Some(6)
            }))
        );
        assert!(AckReceiver::new([0u8; 7], format).is_none());
    }

    #[test]
    fn zero_length_messages_complete_on_the_ack() {
        let (got, _) = exchange(&[b"", b"x", b""], 8);
        assert_eq!(got, [vec![], b"x".to_vec(), vec![]]);
    }
}
