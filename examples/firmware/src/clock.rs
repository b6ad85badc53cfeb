//! A monotonic millisecond clock from SysTick, for smoltcp's `Instant`.
//!
//! SysTick is in every Cortex-M, so this part ports to any board unchanged: only
//! the core clock frequency differs. The exception counts milliseconds in a 32-bit
//! atomic; [`Clock::now`] widens it to 64 bits by adding up the wrapping
//! differences, so the clock never runs backwards even after 49 days.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use smoltcp::time::Instant;

static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since [`Clock::start`].
#[derive(Debug)]
pub struct Clock {
    last_ticks: u32,
    millis: u64,
}

impl Clock {
    /// Starts SysTick interrupting every millisecond, counting core clock cycles
    /// at `core_hz`.
    pub fn start(mut syst: SYST, core_hz: u32) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload((core_hz / 1000).saturating_sub(1));
        syst.clear_current();
        syst.enable_counter();
        syst.enable_interrupt();
        Self {
            last_ticks: TICKS.load(Ordering::Relaxed),
            millis: 0,
        }
    }

    /// The time now.
    pub fn now(&mut self) -> Instant {
        let ticks = TICKS.load(Ordering::Relaxed);
        let elapsed = ticks.wrapping_sub(self.last_ticks);
        self.last_ticks = ticks;
        self.millis = self.millis.saturating_add(u64::from(elapsed));
        Instant::from_millis(i64::try_from(self.millis).unwrap_or(i64::MAX))
    }
}
