//! A trace of what a connection's buffers did, for drawing the textbook picture:
//! segments and acknowledgements over time, how full each socket buffer was, and
//! the application's sends, reads and delivered frames beneath them.
//!
//! A trace is a stream of [`Record`]s (a time and an [`Event`]) that the code
//! under study hands to a [`TraceSink`] the caller owns:
//!
//! - segments and UDP datagrams, from the frames a runner puts on the wire or
//!   takes off it ([`SegmentCapture`], a packet-capture sink that parses with
//!   smoltcp's wire types; feature `smoltcp`);
//! - the socket buffers at each poll ([`sample`]; feature `smoltcp`);
//! - the application's sends, reads and frames: a session records its own when
//!   given a [`Probe`] ([`Traced`] around any session,
//!   [`Framed::traced`](crate::session::Framed::traced) and
//!   [`StreamingEcho::traced`](crate::session::StreamingEcho::traced) for the
//!   frames too), and
//!   the poll-loop adapter tells a traced session its socket's buffers at each
//!   poll; code of your own records [`Event::Send`], [`Event::Read`] and
//!   [`Event::Frame`] itself.
//!
//! Tracing is off unless a sink is given: `()` and `None` are sinks that record
//! nothing and say so ([`TraceSink::enabled`]), so a capture does not even parse
//! the frame. [`TraceRing`] keeps the last (or first) `N` records in fixed memory
//! and counts what it drops; under `std` a `Vec<Record>` keeps everything and
//! [`TraceWriter`] writes one line per record.
//!
//! A connection is named by its two ports ([`Conn`]), as seen from the side
//! that records: enough to tell apart the connections of one run, and small.
//! [`Tally`] adds up one connection's records into the numbers the streams
//! count themselves (frames, bytes, coalesced reads, split frames).
//!
#![cfg_attr(
    not(feature = "smoltcp"),
    doc = "[`SegmentCapture`]: crate#features\n[`sample`]: crate#features"
)]
#![cfg_attr(not(feature = "std"), doc = "[`TraceWriter`]: crate#features")]

#[cfg(feature = "smoltcp")]
mod capture;
mod probe;
mod ring;
#[cfg(feature = "std")]
mod writer;

#[cfg(feature = "smoltcp")]
pub(crate) use self::capture::levels;
#[cfg(all(feature = "smoltcp", feature = "std"))]
pub use self::capture::{CaptureFailure, PcapFile};
#[cfg(feature = "smoltcp")]
pub use self::capture::{SegmentCapture, sample};
pub use self::probe::{Levels, Probe, Recorder, Traced};
pub use self::ring::{TraceRing, WhenFull};
#[cfg(feature = "std")]
pub use self::writer::TraceWriter;

use core::fmt;

use crate::time::Instant;

/// One connection, by its ports: `local` is the side that records the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conn {
    /// The port of the side the event happened on.
    pub local: u16,
    /// The port of its peer.
    pub remote: u16,
}

impl Conn {
    /// The connection between `local` and `remote`.
    pub const fn new(local: u16, remote: u16) -> Self {
        Self { local, remote }
    }

    /// The same connection seen from the other end.
    pub const fn reversed(self) -> Self {
        Self {
            local: self.remote,
            remote: self.local,
        }
    }

    /// Whether `other` is this connection from either end.
    pub const fn same(self, other: Conn) -> bool {
        (self.local == other.local && self.remote == other.remote)
            || (self.local == other.remote && self.remote == other.local)
    }
}

/// The TCP flags of a [`Segment`], as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(pub u8);

impl Flags {
    /// FIN: the sender has no more data.
    pub const FIN: Self = Self(0x01);
    /// SYN: the first segment of each direction.
    pub const SYN: Self = Self(0x02);
    /// RST: the connection is reset.
    pub const RST: Self = Self(0x04);
    /// PSH: push the data to the application.
    pub const PSH: Self = Self(0x08);
    /// ACK: the acknowledgement number is valid.
    pub const ACK: Self = Self(0x10);

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags and `other`'s.
    #[must_use]
    pub const fn with(self, other: Flags) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::ACK, '.'),
        ];
        for (flag, name) in names {
            if self.contains(flag) {
                write!(f, "{name}")?;
            }
        }
        Ok(())
    }
}

/// One TCP segment on the wire, as a packet capture sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Segment {
    /// `local` sent it to `remote`.
    pub conn: Conn,
    /// The sequence number of its first byte: of the SYN if it has one, else of
    /// its first byte of payload, else (a bare FIN) of the FIN. A FIN after
    /// payload is at `seq + len`.
    pub seq: u32,
    /// The acknowledgement number (meaningful with [`Flags::ACK`]).
    pub ack: u32,
    /// Bytes of payload.
    pub len: u16,
    /// The window field as sent, before scaling.
    pub window: u16,
    /// The window scale option, on a SYN that carries one.
    pub window_scale: Option<u8>,
    /// SYN, FIN, RST, PSH, ACK.
    pub flags: Flags,
}

/// One UDP datagram on the wire, as a packet capture sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Datagram {
    /// `local` sent it to `remote`.
    pub conn: Conn,
    /// Bytes of payload.
    pub len: u16,
}

/// How full one end's socket buffers were, read at a poll.
///
/// smoltcp keeps the peer's window and the unacknowledged sequence number to
/// itself, so bytes in flight and the peer's window are read off the segments
/// instead ([`Segment::window`], `seq + len - ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Buffers {
    /// The end whose buffers these are.
    pub conn: Conn,
    /// Bytes in the send buffer: not yet sent, or sent and not yet acknowledged.
    pub send_queued: u32,
    /// The send buffer's size.
    pub send_capacity: u32,
    /// Bytes received and not yet read by the application.
    pub recv_queued: u32,
    /// The receive buffer's size; what is free of it is the window this end offers.
    pub recv_capacity: u32,
}

impl Buffers {
    /// The window this end offers: the free part of its receive buffer.
    pub const fn window(&self) -> u32 {
        self.recv_capacity.saturating_sub(self.recv_queued)
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A segment went on the wire.
    Segment(Segment),
    /// A UDP datagram went on the wire.
    Datagram(Datagram),
    /// One end's socket buffers at a poll.
    Buffers(Buffers),
    /// The application handed `bytes` to the stream (a `send`, or the part of it
    /// that fit).
    Send {
        /// The sending end.
        conn: Conn,
        /// Bytes taken.
        bytes: u32,
    },
    /// The application took `bytes` out of the socket in one read.
    Read {
        /// The reading end.
        conn: Conn,
        /// Bytes taken.
        bytes: u32,
    },
    /// A whole frame came out of the reader.
    Frame {
        /// The reading end.
        conn: Conn,
        /// Its body's length.
        body: u32,
        /// Its header's length (the bytes before the body on the stream).
        header: u8,
    },
}

impl Event {
    /// The connection the event belongs to, seen from the end it happened on.
    pub const fn conn(&self) -> Conn {
        match self {
            Self::Segment(s) => s.conn,
            Self::Datagram(d) => d.conn,
            Self::Buffers(b) => b.conn,
            Self::Send { conn, .. } | Self::Read { conn, .. } | Self::Frame { conn, .. } => *conn,
        }
    }
}

/// An event and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Record {
    /// When, on the runner's clock.
    pub at: Instant,
    /// What.
    pub event: Event,
}

impl Record {
    /// `event` at `at`.
    pub const fn new(at: Instant, event: Event) -> Self {
        Self { at, event }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.total_micros();
        let c = self.event.conn();
        write!(f, "{at} {}>{} ", c.local, c.remote)?;
        match self.event {
            Event::Segment(s) => {
                write!(
                    f,
                    "segment seq {} ack {} len {} win {} flags {}",
                    s.seq, s.ack, s.len, s.window, s.flags
                )?;
                match s.window_scale {
                    Some(scale) => write!(f, " wscale {scale}"),
                    None => Ok(()),
                }
            }
            Event::Datagram(d) => write!(f, "datagram len {}", d.len),
            Event::Buffers(b) => write!(
                f,
                "buffers send {}/{} recv {}/{}",
                b.send_queued, b.send_capacity, b.recv_queued, b.recv_capacity
            ),
            Event::Send { bytes, .. } => write!(f, "send {bytes}"),
            Event::Read { bytes, .. } => write!(f, "read {bytes}"),
            Event::Frame { body, header, .. } => write!(f, "frame {body} header {header}"),
        }
    }
}

/// Where a trace goes.
///
/// `()` and `None` record nothing; `&mut S` records into `S`; [`TraceRing`]
/// keeps records in fixed memory; under `std`, `Vec<Record>` and [`TraceWriter`].
///
#[cfg_attr(not(feature = "std"), doc = "[`TraceWriter`]: crate#features")]
pub trait TraceSink {
    /// Takes one record. Never fails: a sink that cannot keep it drops it (and
    /// counts it, if it counts).
    fn record(&mut self, record: Record);

    /// Whether records are kept at all; a producer may skip the work of making
    /// one when not.
    fn enabled(&self) -> bool {
        true
    }
}

/// No trace: nothing is recorded, nothing is made.
impl TraceSink for () {
    fn record(&mut self, _record: Record) {}

    fn enabled(&self) -> bool {
        false
    }
}

impl<S: TraceSink> TraceSink for Option<S> {
    fn record(&mut self, record: Record) {
        if let Some(sink) = self {
            sink.record(record);
        }
    }

    fn enabled(&self) -> bool {
        self.as_ref().is_some_and(TraceSink::enabled)
    }
}

impl<S: TraceSink + ?Sized> TraceSink for &mut S {
    fn record(&mut self, record: Record) {
        (**self).record(record);
    }

    fn enabled(&self) -> bool {
        (**self).enabled()
    }
}

#[cfg(feature = "std")]
impl TraceSink for std::vec::Vec<Record> {
    fn record(&mut self, record: Record) {
        self.push(record);
    }
}

/// One connection's records added up: what its streams count themselves.
///
/// Reads and frames are those of the end `conn` names; segments are counted
/// both ways. A frame is *split* if the bytes of more than one read made it; a
/// read is *coalesced* if it carried bytes of more than one frame (as
/// [`ReadStats`](crate::wire::frame::ReadStats) counts them).
///
/// Those two compare where the reads and the frames end in the stream, counted
/// from the first record given, so they hold only for records from the
/// connection's start: a slice or `Vec` of them all, or a
/// [`TraceRing`] that dropped none ([`dropped`](TraceRing::dropped) is 0). Once a ring has
/// dropped its oldest records, the first read and the first frame left begin
/// at different places in the stream, and the two counts mean nothing; every
/// other count is of the records given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tally {
    /// Sends by `conn.local`.
    pub sends: u64,
    /// Bytes of those sends.
    pub sent_bytes: u64,
    /// Reads by `conn.local`.
    pub reads: u64,
    /// Bytes of those reads.
    pub read_bytes: u64,
    /// Frames delivered to `conn.local`.
    pub frames: u64,
    /// Body bytes of those frames.
    pub body_bytes: u64,
    /// Reads that carried bytes of more than one frame.
    pub coalesced_reads: u64,
    /// Frames that took more than one read.
    pub split_frames: u64,
    /// Segments from `conn.local` to `conn.remote`.
    pub segments_out: u64,
    /// Segments from `conn.remote` to `conn.local`.
    pub segments_in: u64,
    /// UDP datagrams from `conn.local` to `conn.remote`.
    pub datagrams_out: u64,
    /// UDP datagrams from `conn.remote` to `conn.local`.
    pub datagrams_in: u64,
    /// Buffer samples of `conn.local`.
    pub samples: u64,
    /// Records whose time was earlier than the record before them.
    pub out_of_order: u64,
}

impl Tally {
    /// Adds up the records of `conn`. `records` is walked three times (it is
    /// cloned), so pass a cheap iterator such as a slice's or a ring's.
    pub fn of<'r, I>(records: I, conn: Conn) -> Self
    where
        I: Iterator<Item = &'r Record> + Clone,
    {
        let mut tally = Self::default();
        let mut last: Option<Instant> = None;
        for record in records.clone() {
            if last.is_some_and(|last| record.at < last) {
                tally.out_of_order = tally.out_of_order.saturating_add(1);
            }
            last = Some(record.at);
            match record.event {
                Event::Segment(s) if s.conn == conn => {
                    tally.segments_out = tally.segments_out.saturating_add(1);
                }
                Event::Segment(s) if s.conn == conn.reversed() => {
                    tally.segments_in = tally.segments_in.saturating_add(1);
                }
                Event::Datagram(d) if d.conn == conn => {
                    tally.datagrams_out = tally.datagrams_out.saturating_add(1);
                }
                Event::Datagram(d) if d.conn == conn.reversed() => {
                    tally.datagrams_in = tally.datagrams_in.saturating_add(1);
                }
                Event::Buffers(b) if b.conn == conn => {
                    tally.samples = tally.samples.saturating_add(1);
                }
                Event::Send { conn: c, bytes } if c == conn => {
                    tally.sends = tally.sends.saturating_add(1);
                    tally.sent_bytes = tally.sent_bytes.saturating_add(u64::from(bytes));
                }
                Event::Read { conn: c, bytes } if c == conn && bytes > 0 => {
                    tally.reads = tally.reads.saturating_add(1);
                    tally.read_bytes = tally.read_bytes.saturating_add(u64::from(bytes));
                }
                Event::Frame { conn: c, body, .. } if c == conn => {
                    tally.frames = tally.frames.saturating_add(1);
                    tally.body_bytes = tally.body_bytes.saturating_add(u64::from(body));
                }
                _ => {}
            }
        }
        let reads = stream_ends(records.clone(), conn, read_len);
        let frames = stream_ends(records, conn, frame_len);
        tally.coalesced_reads = spans_crossed(reads.clone(), frames.clone());
        tally.split_frames = spans_crossed(frames, reads);
        tally
    }
}

fn read_len(event: &Event) -> Option<u64> {
    match *event {
        Event::Read { bytes, .. } if bytes > 0 => Some(u64::from(bytes)),
        _ => None,
    }
}

fn frame_len(event: &Event) -> Option<u64> {
    match *event {
        Event::Frame { body, header, .. } => {
            Some(u64::from(body).saturating_add(u64::from(header)))
        }
        _ => None,
    }
}

/// The stream offsets where each of `conn`'s pieces (reads or frames) ends.
fn stream_ends<'r, I>(
    records: I,
    conn: Conn,
    len: fn(&Event) -> Option<u64>,
) -> impl Iterator<Item = u64> + Clone
where
    I: Iterator<Item = &'r Record> + Clone,
{
    records
        .filter(move |r| r.event.conn() == conn)
        .filter_map(move |r| len(&r.event))
        .scan(0u64, |end, n| {
            *end = end.saturating_add(n);
            Some(*end)
        })
}

/// How many spans of `spans` (given by their end offsets, each starting where
/// the one before ended) have an end of `cuts` strictly inside them.
fn spans_crossed(spans: impl Iterator<Item = u64>, cuts: impl Iterator<Item = u64>) -> u64 {
    let mut cuts = cuts.peekable();
    let (mut start, mut crossed) = (0u64, 0u64);
    for end in spans {
        while cuts.next_if(|&cut| cut <= start).is_some() {}
        if cuts.peek().is_some_and(|&cut| cut < end) {
            crossed = crossed.saturating_add(1);
        }
        start = end;
    }
    crossed
}

#[cfg(test)]
mod tests;
