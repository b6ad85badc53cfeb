//! Time as sessions see it: an [`Instant`] on the caller's clock and a
//! [`Duration`], both in microseconds, both saturating.
//!
//! Nothing in smolsock reads a clock. Adapters pass the time in: smoltcp's
//! `Instant` converts with `From` (feature `smoltcp`), and an embassy or std clock
//! gives microseconds since any start of its choosing. Arithmetic saturates instead
//! of overflowing, so a deadline computed from a peer's or a caller's duration can
//! never panic.
//!
//! Deadlines are instants on that clock, so it must not step back: a clock set
//! back by a minute postpones every deadline by a minute (none is lost, none
//! comes early). A monotonic clock (embassy-time's, std's `Instant`, a tick
//! counter) is what the adapters expect.

use core::fmt;

/// A point in time, in microseconds since an epoch of the caller's choosing (boot,
/// the start of a test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self { micros: 0 };

    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self { micros }
    }

    /// `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Self {
            micros: millis.saturating_mul(1000),
        }
    }

    /// `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            micros: secs.saturating_mul(1_000_000),
        }
    }

    /// Microseconds since the epoch.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// Whole milliseconds since the epoch.
    pub const fn total_millis(self) -> u64 {
        self.micros / 1000
    }

    /// `self + duration`, saturating at the end of time.
    #[must_use]
    pub const fn saturating_add(self, duration: Duration) -> Self {
        Self {
            micros: self.micros.saturating_add(duration.micros),
        }
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration {
            micros: self.micros.saturating_sub(earlier.micros),
        }
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self { micros: 0 };
    /// The longest span there is: a deadline this far off never comes.
    pub const MAX: Self = Self { micros: u64::MAX };

    /// `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Self { micros }
    }

    /// `millis` milliseconds (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Self {
            micros: millis.saturating_mul(1000),
        }
    }

    /// `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            micros: secs.saturating_mul(1_000_000),
        }
    }

    /// The span in microseconds.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// The span in whole milliseconds.
    pub const fn total_millis(self) -> u64 {
        self.micros / 1000
    }

    /// `self * n`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, n: u32) -> Self {
        Self {
            micros: self.micros.saturating_mul(n as u64),
        }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000 / 1000
        )
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros < 1000 {
            write!(f, "{}us", self.micros)
        } else if self.micros < 1_000_000 {
            write!(f, "{}ms", self.micros / 1000)
        } else {
            write!(
                f,
                "{}.{:03}s",
                self.micros / 1_000_000,
                self.micros % 1_000_000 / 1000
            )
        }
    }
}

#[cfg(feature = "smoltcp")]
mod smoltcp_time {
    use super::{Duration, Instant};

    /// smoltcp's instants before its epoch (negative) become [`Instant::ZERO`].
    impl From<smoltcp::time::Instant> for Instant {
        fn from(at: smoltcp::time::Instant) -> Self {
            Self::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
        }
    }

    /// Instants past smoltcp's `i64` range saturate at its end.
    impl From<Instant> for smoltcp::time::Instant {
        fn from(at: Instant) -> Self {
            Self::from_micros(i64::try_from(at.total_micros()).unwrap_or(i64::MAX))
        }
    }

    impl From<smoltcp::time::Duration> for Duration {
        fn from(d: smoltcp::time::Duration) -> Self {
            Self::from_micros(d.total_micros())
        }
    }

    impl From<Duration> for smoltcp::time::Duration {
        fn from(d: Duration) -> Self {
            Self::from_micros(d.total_micros())
        }
    }
}

/// How long `bytes` take at `rate` bytes per second (0 taken as 1): the time a
/// minimum rate allows them.
pub(crate) fn at_rate(bytes: u64, rate: u32) -> Duration {
    let millis = bytes
        .saturating_mul(1000)
        .checked_div(u64::from(rate.max(1)))
        .unwrap_or(u64::MAX);
    Duration::from_millis(millis)
}

/// The sooner of two optional times (or delays), `None` meaning never (no
/// limit).
pub(crate) fn sooner<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `start + duration` on smoltcp's clock, saturating instead of overflowing
/// (smoltcp's own `+` panics in debug builds near the end of `i64`).
#[cfg(feature = "smoltcp")]
pub(crate) fn later(
    start: smoltcp::time::Instant,
    duration: smoltcp::time::Duration,
) -> smoltcp::time::Instant {
    let micros = i64::try_from(duration.total_micros()).unwrap_or(i64::MAX);
    smoltcp::time::Instant::from_micros(start.total_micros().saturating_add(micros))
}

/// The time from `now` until `at` on smoltcp's clock, zero if `at` is already past.
#[cfg(feature = "smoltcp")]
#[cfg_attr(not(all(feature = "tap", target_os = "linux")), allow(dead_code))]
pub(crate) fn until(
    now: smoltcp::time::Instant,
    at: smoltcp::time::Instant,
) -> smoltcp::time::Duration {
    let micros = at.total_micros().saturating_sub(now.total_micros());
    smoltcp::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_saturates_instead_of_overflowing() {
        assert_eq!(
            Instant::from_micros(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(
            Instant::ZERO.saturating_add(Duration::from_millis(5)),
            Instant::from_millis(5)
        );
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
    }

    #[test]
    fn time_since_a_later_instant_is_zero() {
        assert_eq!(
            Instant::from_secs(1).saturating_since(Instant::from_secs(2)),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_secs(2).saturating_since(Instant::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[cfg(feature = "smoltcp")]
    #[test]
    fn smoltcp_instants_convert_both_ways_and_saturate() {
        let at = smoltcp::time::Instant::from_millis(1500);
        assert_eq!(Instant::from(at), Instant::from_millis(1500));
        assert_eq!(smoltcp::time::Instant::from(Instant::from(at)), at);
        assert_eq!(
            Instant::from(smoltcp::time::Instant::from_micros(-5)),
            Instant::ZERO
        );
        assert_eq!(
            smoltcp::time::Instant::from(Instant::from_micros(u64::MAX)),
            smoltcp::time::Instant::from_micros(i64::MAX)
        );
    }

    #[test]
    fn display_reads_as_seconds_and_milliseconds() {
        assert_eq!(Instant::from_millis(1500).to_string(), "1.500s");
        assert_eq!(Duration::from_millis(250).to_string(), "250ms");
        assert_eq!(Duration::from_micros(7).to_string(), "7us");
    }
}
