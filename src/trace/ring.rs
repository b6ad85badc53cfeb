//! A trace in fixed memory: the last (or the first) `N` records.

use heapless::Deque;

use super::{Record, TraceSink};

/// What a full [`TraceRing`] does with a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WhenFull {
    /// Keep the newest: the oldest record makes room (a flight recorder).
    DropOldest,
    /// Keep the oldest: the new record is dropped (the start of a run, whole).
    Stop,
}

/// A [`TraceSink`] holding up to `N` records in place, with no allocation; when
/// full it drops a record as [`WhenFull`] says and counts it. `N` must be at
/// least 1 (a ring of 0 does not compile).
///
/// ```
/// use smolsock::time::Instant;
/// use smolsock::trace::{Conn, Event, Record, TraceRing, TraceSink, WhenFull};
///
/// let mut ring: TraceRing<2> = TraceRing::new(WhenFull::DropOldest);
/// for bytes in 1..=3 {
///     let send = Event::Send { conn: Conn::new(49152, 9000), bytes };
///     ring.record(Record::new(Instant::from_millis(u64::from(bytes)), send));
/// }
/// assert_eq!((ring.len(), ring.dropped()), (2, 1));
/// assert_eq!(ring.iter().next().map(|r| r.at), Some(Instant::from_millis(2)));
/// ```
#[derive(Debug, Clone)]
pub struct TraceRing<const N: usize> {
    records: Deque<Record, N>,
    when_full: WhenFull,
    dropped: u64,
}

impl<const N: usize> TraceRing<N> {
    /// An empty ring that, once full, does as `when_full` says.
    pub const fn new(when_full: WhenFull) -> Self {
        Self {
            records: Deque::new(),
            when_full,
            dropped: 0,
        }
    }

    /// The records held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Record> + Clone {
        let (front, back) = self.records.as_slices();
        front.iter().chain(back)
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records dropped because the ring was full.
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every record held; the count of dropped ones stays.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

impl<const N: usize> TraceSink for TraceRing<N> {
    fn record(&mut self, record: Record) {
        if self.records.is_full() {
            self.dropped = self.dropped.saturating_add(1);
            match self.when_full {
                WhenFull::Stop => return,
                WhenFull::DropOldest => {
                    self.records.pop_front();
                }
            }
        }
        // Room was made above; were it not, the record is dropped all the same.
        if self.records.push_back(record).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}
