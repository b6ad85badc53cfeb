//! The registers of a CMSDK APB timer, and the embassy-time driver on two of
//! them.

use core::cell::RefCell;
use core::task::Waker;

use critical_section::Mutex;
use embassy_time_queue_utils::Queue;

use crate::ticks::{self, Extended};

/// `CTRL`: bit 0 enables the counter, bit 3 its interrupt.
const CTRL: usize = 0x00;
/// `VALUE`: the counter, counting down at the timer clock.
const VALUE: usize = 0x04;
/// `RELOAD`: loaded into `VALUE` on reaching zero, and when written.
const RELOAD: usize = 0x08;
/// `INTSTATUS` / `INTCLEAR`: bit 0, write 1 to clear.
const INTSTATUS: usize = 0x0C;

const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_IRQ_ENABLE: u32 = 1 << 3;

/// One CMSDK APB timer, by its base address.
#[derive(Debug)]
pub struct ApbTimer {
    base: usize,
}

impl ApbTimer {
    /// The timer whose registers are at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be a CMSDK APB timer's register block, and nothing else may
    /// use that timer.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: a timer's registers, ours alone; the offsets
        // are the constants above, aligned and inside the block.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Counts down from `0xFFFF_FFFF` for ever, wrapping, without interrupts.
    fn start_free_running(&self) {
        self.write(CTRL, 0);
        self.write(INTSTATUS, 1);
        // Writing RELOAD loads VALUE too.
        self.write(RELOAD, u32::MAX);
        self.write(CTRL, CTRL_ENABLE);
    }

    fn value(&self) -> u32 {
        self.read(VALUE)
    }

    /// Interrupts once, `cycles` (at least 1) from now. With `RELOAD` at 0 the
    /// counter stays at 0 after it fires, so it fires once.
    fn start_one_shot(&self, cycles: u32) {
        self.write(CTRL, 0);
        self.write(INTSTATUS, 1);
        self.write(RELOAD, 0);
        self.write(VALUE, cycles.max(1));
        self.write(CTRL, CTRL_ENABLE | CTRL_IRQ_ENABLE);
    }

    /// Stops the counter and clears its interrupt.
    fn stop(&self) {
        self.write(CTRL, 0);
        self.write(INTSTATUS, 1);
    }
}

struct Inner {
    running: bool,
    counter: Extended,
    queue: Queue,
}

/// embassy-time's driver: a free-running timer as the clock, a one-shot timer as
/// the alarm. Put it in the `static` of `embassy_time_driver::time_driver_impl!`,
/// call [`start`](Self::start) at boot, and [`on_alarm_interrupt`](Self::on_alarm_interrupt)
/// from the alarm timer's interrupt handler.
pub struct TimeDriver {
    clock: ApbTimer,
    alarm: ApbTimer,
    cycles_per_tick: u32,
    inner: Mutex<RefCell<Inner>>,
}

impl core::fmt::Debug for TimeDriver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TimeDriver")
            .field("clock", &self.clock)
            .field("alarm", &self.alarm)
            .field("cycles_per_tick", &self.cycles_per_tick)
            .finish_non_exhaustive()
    }
}

impl TimeDriver {
    /// The clock on `clock`, the alarm on `alarm`, both counting at `timer_hz`;
    /// ticks at embassy-time's `TICK_HZ`, which must divide `timer_hz` (checked
    /// at compile time in a `static`).
    pub const fn new(clock: ApbTimer, alarm: ApbTimer, timer_hz: u64) -> Self {
        Self {
            clock,
            alarm,
            cycles_per_tick: ticks::cycles_per_tick(timer_hz, embassy_time_driver::TICK_HZ),
            inner: Mutex::new(RefCell::new(Inner {
                running: false,
                counter: Extended::new(u32::MAX),
                queue: Queue::new(),
            })),
        }
    }

    /// Starts the clock (time 0 is now) and the alarm. Enable the alarm's
    /// interrupt line afterwards.
    pub fn start(&self) {
        critical_section::with(|cs| {
            let mut inner = self.inner.borrow_ref_mut(cs);
            self.clock.start_free_running();
            self.alarm.stop();
            inner.counter = Extended::new(self.clock.value());
            inner.running = true;
            self.arm(&mut inner);
        });
    }

    /// The alarm timer interrupted: wakes the timers that are due and sets the
    /// next alarm.
    pub fn on_alarm_interrupt(&self) {
        critical_section::with(|cs| {
            let mut inner = self.inner.borrow_ref_mut(cs);
            self.alarm.stop();
            if inner.running {
                self.arm(&mut inner);
            }
        });
    }

    fn now_cycles(&self, inner: &mut Inner) -> u64 {
        if !inner.running {
            return 0;
        }
        inner.counter.advance(self.clock.value())
    }

    /// Wakes what is due and loads the alarm for the earliest timer left (or for
    /// [`ticks::MAX_ALARM_CYCLES`] ahead, to keep reading the clock).
    fn arm(&self, inner: &mut Inner) {
        loop {
            let now = self.now_cycles(inner);
            let next = inner
                .queue
                .next_expiration(ticks::ticks(now, self.cycles_per_tick));
            if let Some(delay) = ticks::alarm_delay(now, next, self.cycles_per_tick) {
                self.alarm.start_one_shot(delay);
                return;
            }
        }
    }
}

impl embassy_time_driver::Driver for TimeDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| {
            let now = self.now_cycles(&mut self.inner.borrow_ref_mut(cs));
            ticks::ticks(now, self.cycles_per_tick)
        })
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut inner = self.inner.borrow_ref_mut(cs);
            if inner.queue.schedule_wake(at, waker) && inner.running {
                self.arm(&mut inner);
            }
        });
    }
}
