//! One direction of the simulated Ethernet link, and the `phy::Device` each host sees.
//!
//! A [`Link`] is a fixed array of frame slots plus the fault model's state (its random
//! stream, when the wire is next free, counters). A [`Port`] borrows a host's outgoing
//! and incoming links for the length of one `Interface::poll`, so the interfaces never
//! hold references into the simulation between polls.

use core::fmt;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium, PcapSink};
use smoltcp::time::{Duration, Instant};

use super::config::FaultConfig;
use super::rng::SplitMix64;

/// The largest Ethernet frame a slot holds: 1500 bytes of IP MTU plus the 14-byte header.
pub const MAX_FRAME_LEN: usize = 1514;

/// Counters of one direction of the link; plain integers that only grow.
///
/// Every frame offered to the link is counted in `sent` and then ends in exactly one
/// of `delivered`, `lost`, `dropped_mtu`, `dropped_queue_full`, or is still in flight;
/// each extra copy made by duplication adds one to `duplicated` and then ends the
/// same way. `reordered` counts deliveries of a frame after one sent later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct LinkStats {
    /// Frames the sender put on the wire.
    pub sent: u64,
    /// Frames (copies included) handed to the receiver.
    pub delivered: u64,
    /// Frames lost on the wire.
    pub lost: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Frames delivered after a frame that was sent after them.
    pub reordered: u64,
    /// Frames dropped because they were longer than the MTU allows.
    pub dropped_mtu: u64,
    /// Frames (or copies) tail-dropped because every slot was taken.
    pub dropped_queue_full: u64,
    /// Bytes of the frames in `sent`.
    pub bytes_sent: u64,
    /// Bytes of the frames in `delivered`.
    pub bytes_delivered: u64,
}

impl LinkStats {
    /// Column titles matching the [`Display`](fmt::Display) line.
    pub const TABLE_HEADER: &'static str =
        "   sent  deliv   lost    dup  reord    mtu   full   bytes_sent  bytes_deliv";
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7}{:>7}{:>7}{:>7}{:>7}{:>7}{:>7}{:>13}{:>13}",
            self.sent,
            self.delivered,
            self.lost,
            self.duplicated,
            self.reordered,
            self.dropped_mtu,
            self.dropped_queue_full,
            self.bytes_sent,
            self.bytes_delivered
        )
    }
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct SimStats {
    /// Frames the server sent.
    pub server_to_client: LinkStats,
    /// Frames the client sent.
    pub client_to_server: LinkStats,
}

impl fmt::Display for SimStats {
    /// A three-line table: the header, then `s->c` and `c->s` rows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dir {}", LinkStats::TABLE_HEADER)?;
        writeln!(f, "s>c {}", self.server_to_client)?;
        write!(f, "c>s {}", self.client_to_server)
    }
}

/// One frame in flight.
#[derive(Clone, Copy)]
struct Slot {
    frame: [u8; MAX_FRAME_LEN],
    len: usize,
    /// Virtual time (µs) from which the receiver may take it.
    deliver_at: i64,
    /// Order in which frames entered the wire; breaks ties and detects reordering.
    seq: u64,
    occupied: bool,
}

impl Slot {
    const EMPTY: Self = Self {
        frame: [0; MAX_FRAME_LEN],
        len: 0,
        deliver_at: 0,
        seq: 0,
        occupied: false,
    };

    fn bytes(&self) -> &[u8] {
        self.frame.get(..self.len).unwrap_or(&[])
    }
}

/// One direction of the link: frames in flight and the fault model's state.
pub(crate) struct Link<const SLOTS: usize> {
    slots: [Slot; SLOTS],
    in_flight: usize,
    faults: FaultConfig,
    rng: SplitMix64,
    /// Virtual time (µs) at which the wire finishes serialising what it has.
    wire_free_at: i64,
    /// Latest delivery time given to an in-order frame; jitter never goes below it.
    last_in_order_delivery: i64,
    next_seq: u64,
    highest_delivered_seq: Option<u64>,
    stats: LinkStats,
}

impl<const SLOTS: usize> Link<SLOTS> {
    pub(crate) const fn new(faults: FaultConfig, seed: u64) -> Self {
        Self {
            slots: [Slot::EMPTY; SLOTS],
            in_flight: 0,
            faults,
            rng: SplitMix64::new(seed),
            wire_free_at: 0,
            last_in_order_delivery: 0,
            next_seq: 0,
            highest_delivered_seq: None,
            stats: LinkStats {
                sent: 0,
                delivered: 0,
                lost: 0,
                duplicated: 0,
                reordered: 0,
                dropped_mtu: 0,
                dropped_queue_full: 0,
                bytes_sent: 0,
                bytes_delivered: 0,
            },
        }
    }

    pub(crate) const fn stats(&self) -> LinkStats {
        self.stats
    }

    pub(crate) const fn faults(&self) -> FaultConfig {
        self.faults
    }

    pub(crate) const fn set_faults(&mut self, faults: FaultConfig) {
        self.faults = faults;
    }

    pub(crate) const fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The earliest time a frame can be taken by the receiver, if any is in flight.
    pub(crate) fn next_delivery(&self) -> Option<Instant> {
        self.next_due_slot()
            .and_then(|i| self.slots.get(i))
            .map(|slot| Instant::from_micros_const(slot.deliver_at))
    }

    /// Index of the frame the receiver gets next: earliest delivery, then send order.
    fn next_due_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.occupied)
            .min_by_key(|(_, slot)| (slot.deliver_at, slot.seq))
            .map(|(i, _)| i)
    }

    /// Index of the frame the receiver may take at `now`, if one is due.
    fn due_slot(&self, now: Instant) -> Option<usize> {
        let i = self.next_due_slot()?;
        let slot = self.slots.get(i)?;
        (slot.deliver_at <= now.total_micros()).then_some(i)
    }

    pub(crate) fn has_due(&self, now: Instant) -> bool {
        self.due_slot(now).is_some()
    }

    /// Hands the frame in slot `index` to `f` and frees the slot.
    fn deliver<R>(&mut self, index: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let Some(slot) = self.slots.get_mut(index) else {
            return f(&[]);
        };
        slot.occupied = false;
        self.in_flight = self.in_flight.saturating_sub(1);
        let stats = &mut self.stats;
        stats.delivered = stats.delivered.saturating_add(1);
        stats.bytes_delivered = stats.bytes_delivered.saturating_add(slot.len as u64);
        match self.highest_delivered_seq {
            Some(highest) if slot.seq < highest => {
                stats.reordered = stats.reordered.saturating_add(1);
            }
            _ => self.highest_delivered_seq = Some(slot.seq),
        }
        f(slot.bytes())
    }

    /// Puts one frame on the wire: capture, then MTU, queue, bandwidth, loss, delay,
    /// reordering and duplication, in the order [`FaultConfig`] documents.
    pub(crate) fn transmit<P: PcapSink>(&mut self, frame: &[u8], now: Instant, capture: &mut P) {
        capture.packet(now, frame);
        let len = frame.len() as u64;
        self.stats.sent = self.stats.sent.saturating_add(1);
        self.stats.bytes_sent = self.stats.bytes_sent.saturating_add(len);

        if frame.len() > self.faults.max_frame_len() || frame.len() > MAX_FRAME_LEN {
            crate::macros::net_trace!("sim: {} byte frame over the MTU dropped", frame.len());
            self.stats.dropped_mtu = self.stats.dropped_mtu.saturating_add(1);
            return;
        }
        if self.in_flight >= SLOTS {
            crate::macros::net_trace!("sim: queue full, frame tail-dropped");
            self.stats.dropped_queue_full = self.stats.dropped_queue_full.saturating_add(1);
            return;
        }

        let now_us = now.total_micros();
        let start = self.wire_free_at.max(now_us);
        let done = start.saturating_add(self.serialisation_micros(len));
        self.wire_free_at = done;

        if self.rng.chance(self.faults.loss_per_mille) {
            crate::macros::net_trace!("sim: frame lost");
            self.stats.lost = self.stats.lost.saturating_add(1);
            return;
        }
        let reorder = self.rng.chance(self.faults.reorder_per_mille);
        let duplicate = self.rng.chance(self.faults.duplicate_per_mille);

        let deliver_at = self.arrival(done, reorder);
        self.enqueue(frame, deliver_at);

        if duplicate {
            self.stats.duplicated = self.stats.duplicated.saturating_add(1);
            if self.in_flight >= SLOTS {
                self.stats.dropped_queue_full = self.stats.dropped_queue_full.saturating_add(1);
            } else {
                // The copy follows the frame onto the wire: its own serialisation.
                let copy_done = done.saturating_add(self.serialisation_micros(len));
                self.wire_free_at = copy_done;
                let copy_at = self.arrival(copy_done, false);
                self.enqueue(frame, copy_at);
            }
        }
    }

    /// Microseconds the wire needs for `len` bytes at the configured bandwidth,
    /// rounded up so a busy wire never gets faster than configured.
    fn serialisation_micros(&self, len: u64) -> i64 {
        let Some(bps) = self.faults.bandwidth_bps else {
            return 0;
        };
        let bits = u128::from(len).saturating_mul(8_000_000);
        let micros = bits.div_ceil(u128::from(bps.get()));
        i64::try_from(micros).unwrap_or(i64::MAX)
    }

    /// When a frame whose last bit left at `done` reaches the receiver.
    fn arrival(&mut self, done: i64, reorder: bool) -> i64 {
        let jitter = self.rng.up_to(self.faults.jitter.total_micros());
        let travel = self.faults.delay.total_micros().saturating_add(jitter);
        let natural = done.saturating_add(micros_i64(travel));
        // Jitter never reorders: no frame arrives in line before one sent earlier.
        let in_line = natural.max(self.last_in_order_delivery);
        self.last_in_order_delivery = in_line;
        if reorder {
            // Held back from there, and out of line: the frames behind it do
            // not wait for it.
            in_line.saturating_add(micros_i64(self.faults.reorder_hold.total_micros()))
        } else {
            in_line
        }
    }

    /// Stores `frame` in a free slot; the caller has checked there is one.
    fn enqueue(&mut self, frame: &[u8], deliver_at: i64) {
        let seq = self.next_seq;
        let Some(slot) = self.slots.iter_mut().find(|slot| !slot.occupied) else {
            self.stats.dropped_queue_full = self.stats.dropped_queue_full.saturating_add(1);
            return;
        };
        let Some(dst) = slot.frame.get_mut(..frame.len()) else {
            self.stats.dropped_mtu = self.stats.dropped_mtu.saturating_add(1);
            return;
        };
        dst.copy_from_slice(frame);
        slot.len = frame.len();
        slot.deliver_at = deliver_at;
        slot.seq = seq;
        slot.occupied = true;
        self.next_seq = seq.wrapping_add(1);
        self.in_flight = self.in_flight.saturating_add(1);
    }
}

fn micros_i64(micros: u64) -> i64 {
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// What one host's interface sees as its Ethernet device during one poll.
pub(crate) struct Port<'a, const SLOTS: usize, P> {
    pub(crate) outgoing: &'a mut Link<SLOTS>,
    pub(crate) incoming: &'a mut Link<SLOTS>,
    pub(crate) capture: &'a mut P,
    /// Where the interface writes a frame before the fault model sees it; one is
    /// enough for the whole simulation because hosts are polled one at a time.
    pub(crate) staging: &'a mut [u8; MAX_FRAME_LEN],
    pub(crate) now: Instant,
    /// The MTU this host's interface was built with; smoltcp reads the capabilities
    /// once, in `Interface::new`, so later fault changes must not alter the answer.
    pub(crate) max_frame_len: usize,
}

impl<const SLOTS: usize, P: PcapSink> phy::Device for Port<'_, SLOTS, P> {
    type RxToken<'a>
        = RxToken<'a, SLOTS>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, SLOTS, P>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let index = self.incoming.due_slot(self.now)?;
        let rx = RxToken {
            link: &mut *self.incoming,
            index,
        };
        let tx = TxToken {
            link: &mut *self.outgoing,
            capture: &mut *self.capture,
            staging: &mut *self.staging,
            now: self.now,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        // Always accept: a full queue is the link's business (tail drop), as on a
        // real NIC whose driver does not know about congestion further along.
        Some(TxToken {
            link: &mut *self.outgoing,
            capture: &mut *self.capture,
            staging: &mut *self.staging,
            now: self.now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame_len;
        caps.max_burst_size = None;
        // Compute and verify every checksum, as a real NIC without offload would.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// A frame ready to be taken from the incoming link.
pub(crate) struct RxToken<'a, const SLOTS: usize> {
    link: &'a mut Link<SLOTS>,
    index: usize,
}

impl<const SLOTS: usize> phy::RxToken for RxToken<'_, SLOTS> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        self.link.deliver(self.index, f)
    }
}

/// Room for one frame on the outgoing link.
pub(crate) struct TxToken<'a, const SLOTS: usize, P> {
    link: &'a mut Link<SLOTS>,
    capture: &'a mut P,
    staging: &'a mut [u8; MAX_FRAME_LEN],
    now: Instant,
}

impl<const SLOTS: usize, P: PcapSink> phy::TxToken for TxToken<'_, SLOTS, P> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the advertised MTU (at most 1514 bytes);
        // should it, the closure gets the whole staging area and the frame is cut there.
        let len = len.min(MAX_FRAME_LEN);
        let result = f(self.staging.get_mut(..len).unwrap_or_default());
        let frame = self.staging.get(..len).unwrap_or_default();
        self.link.transmit(frame, self.now, self.capture);
        result
    }
}

/// Converts a smoltcp duration to signed microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    micros_i64(d.total_micros())
}
