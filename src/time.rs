//! Saturating arithmetic on smoltcp's time types.
//!
//! `Instant + Duration` in smoltcp overflows (and panics in debug builds) near the
//! end of `i64` microseconds; timers built from peer-controlled or configured
//! durations use these instead.

use smoltcp::time::{Duration, Instant};

/// `start + duration`, saturating instead of overflowing.
pub(crate) fn later(start: Instant, duration: Duration) -> Instant {
    let micros = i64::try_from(duration.total_micros()).unwrap_or(i64::MAX);
    Instant::from_micros(start.total_micros().saturating_add(micros))
}

/// The time from `now` until `at`, zero if `at` is already past.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn until(now: Instant, at: Instant) -> Duration {
    let micros = at.total_micros().saturating_sub(now.total_micros());
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_overflowing() {
        assert_eq!(
            later(Instant::from_micros(i64::MAX - 1), Duration::from_secs(1)),
            Instant::from_micros(i64::MAX)
        );
        assert_eq!(
            later(Instant::ZERO, Duration::from_millis(5)),
            Instant::from_millis(5)
        );
    }

    #[test]
    fn until_is_zero_for_the_past() {
        assert_eq!(
            until(Instant::from_secs(2), Instant::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            until(Instant::from_secs(1), Instant::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}
