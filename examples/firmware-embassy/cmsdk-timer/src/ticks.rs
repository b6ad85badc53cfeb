//! The driver's arithmetic, free of registers: a 32-bit down-counter extended to
//! 64 bits, and the alarm's delay.

/// The furthest ahead the alarm is set, in timer cycles: a quarter of the
/// counter's period, so that alarm interrupts read the counter well within
/// every wrap even when nothing is due (2³⁰ cycles: 43 s at 25 MHz).
pub const MAX_ALARM_CYCLES: u32 = 1 << 30;

/// A 32-bit down-counter that wraps (`0` reloads `0xFFFF_FFFF`), extended to a
/// 64-bit count of cycles since it started.
///
/// Each [`advance`](Self::advance) adds the cycles since the previous reading,
/// counted modulo 2³², so the count is exact if readings are less than 2³²
/// cycles apart; a gap of 2³² or more loses whole periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extended {
    last: u32,
    cycles: u64,
}

impl Extended {
    /// Zero cycles, the counter at `start` (`0xFFFF_FFFF` right after it was
    /// loaded).
    pub const fn new(start: u32) -> Self {
        Self {
            last: start,
            cycles: 0,
        }
    }

    /// Takes a reading of the counter; returns the cycles since it started.
    pub const fn advance(&mut self, reading: u32) -> u64 {
        // A down-counter: what it lost since the last reading is how far it ran.
        let elapsed = self.last.wrapping_sub(reading);
        self.last = reading;
        self.cycles = self.cycles.saturating_add(elapsed as u64);
        self.cycles
    }

    /// Cycles counted so far, as of the last reading.
    pub const fn cycles(&self) -> u64 {
        self.cycles
    }
}

/// Whole ticks in `cycles`.
pub const fn ticks(cycles: u64, cycles_per_tick: u32) -> u64 {
    cycles / cycles_per_tick as u64
}

/// What to load the one-shot alarm with, in cycles, for it to fire at tick
/// `at` when `now` cycles have passed: at least 1 (a timer loaded with 0 never
/// fires), at most [`MAX_ALARM_CYCLES`] (a later `at`, `u64::MAX` for "no timer",
/// gets an early alarm that only reads the clock). `None` if `at` has come.
pub const fn alarm_delay(now: u64, at: u64, cycles_per_tick: u32) -> Option<u32> {
    let target = at.saturating_mul(cycles_per_tick as u64);
    if target <= now {
        return None;
    }
    let delay = target - now;
    if delay >= MAX_ALARM_CYCLES as u64 {
        Some(MAX_ALARM_CYCLES)
    } else {
        Some(delay as u32)
    }
}

/// The cycles per tick for a timer clocked at `timer_hz` and a tick rate of
/// `tick_hz`; panics (at compile time, in a `const`) unless it is a whole
/// number, so that ticks are exact.
pub const fn cycles_per_tick(timer_hz: u64, tick_hz: u64) -> u32 {
    assert!(
        tick_hz > 0 && timer_hz.is_multiple_of(tick_hz),
        "the tick rate must divide the timer clock"
    );
    let ratio = timer_hz / tick_hz;
    assert!(
        ratio > 0 && ratio <= u32::MAX as u64,
        "tick rate out of range"
    );
    ratio as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MHZ_25: u32 = 25;

    #[test]
    fn counting_down_from_the_load_value_counts_up_cycles() {
        let mut counter = Extended::new(u32::MAX);
        assert_eq!(counter.advance(u32::MAX), 0);
        assert_eq!(counter.advance(u32::MAX - 1000), 1000);
        assert_eq!(counter.advance(u32::MAX - 1500), 1500);
        assert_eq!(counter.cycles(), 1500);
    }

    #[test]
    fn a_wrap_through_zero_keeps_counting() {
        let mut counter = Extended::new(u32::MAX);
        counter.advance(10);
        let before = counter.cycles();
        // 10 → 0 is 10 cycles, 0 → 0xFFFF_FFFF one more (the reload), then 5.
        assert_eq!(counter.advance(u32::MAX - 5), before + 16);
    }

    #[test]
    fn many_periods_read_twice_each_add_up_to_64_bits() {
        let mut counter = Extended::new(u32::MAX);
        let step = (1u64 << 31) - 7; // under a period apart, odd so it drifts
        let mut expected = 0u64;
        // 10,000 steps: well past 2^32 cycles and many wraps.
        for _ in 0..10_000 {
            expected += step;
            let reading = u32::MAX.wrapping_sub(expected as u32);
            assert_eq!(counter.advance(reading), expected);
        }
        assert!(expected > 1 << 44);
    }

    #[test]
    fn the_same_reading_twice_adds_nothing() {
        let mut counter = Extended::new(u32::MAX);
        counter.advance(12345);
        let at = counter.cycles();
        assert_eq!(counter.advance(12345), at, "time never runs backwards");
    }

    #[test]
    fn a_gap_of_a_whole_period_is_lost_which_is_why_the_alarm_is_capped() {
        let mut counter = Extended::new(u32::MAX);
        counter.advance(u32::MAX - 100);
        // 2^32 cycles later the counter reads the same again: nothing counted.
        assert_eq!(counter.advance(u32::MAX - 100), 100);
        const { assert!((MAX_ALARM_CYCLES as u64) < (1u64 << 32) / 2) };
    }

    #[test]
    fn near_the_top_of_64_bits_the_count_saturates_instead_of_wrapping() {
        let mut counter = Extended {
            last: 100,
            cycles: u64::MAX - 10,
        };
        assert_eq!(counter.advance(0), u64::MAX);
    }

    #[test]
    fn ticks_are_whole_microseconds_at_25_mhz() {
        assert_eq!(cycles_per_tick(25_000_000, 1_000_000), MHZ_25);
        assert_eq!(ticks(24, MHZ_25), 0);
        assert_eq!(ticks(25, MHZ_25), 1);
        assert_eq!(ticks(25_000_000, MHZ_25), 1_000_000);
    }

    #[test]
    #[should_panic(expected = "divide")]
    fn a_tick_rate_that_does_not_divide_the_clock_is_refused() {
        cycles_per_tick(25_000_000, 32_768);
    }

    #[test]
    fn the_alarm_counts_cycles_to_the_tick() {
        // Now: 1,000 cycles (tick 40). Alarm at tick 41 = 1,025 cycles.
        assert_eq!(alarm_delay(1_000, 41, MHZ_25), Some(25));
        assert_eq!(alarm_delay(1_000, 400, MHZ_25), Some(9_000));
    }

    #[test]
    fn an_alarm_due_now_or_past_is_none() {
        assert_eq!(alarm_delay(1_000, 40, MHZ_25), None);
        assert_eq!(alarm_delay(1_025, 41, MHZ_25), None);
        assert_eq!(alarm_delay(1_024, 41, MHZ_25), Some(1));
    }

    #[test]
    fn a_far_or_absent_alarm_is_capped() {
        assert_eq!(alarm_delay(0, u64::MAX, MHZ_25), Some(MAX_ALARM_CYCLES));
        let far = (u64::from(MAX_ALARM_CYCLES) + 1_000) / 25;
        assert_eq!(alarm_delay(0, far, MHZ_25), Some(MAX_ALARM_CYCLES));
    }
}
