//! An [embassy-time] driver on two Arm CMSDK APB timers, the timers of the MPS2
//! boards (QEMU's `mps2-an385`/`mps2-an386`: TIMER0 at `0x4000_0000` on
//! interrupt 8, TIMER1 at `0x4000_1000` on interrupt 9, both clocked at 25 MHz).
//!
//! - **The clock** is the first timer, free running: a 32-bit down-counter that
//!   reloads `0xFFFF_FFFF` and so wraps every 2³² cycles (172 s at 25 MHz). Each
//!   reading is extended to 64 bits by adding the cycles since the last reading
//!   ([`ticks::Extended`]), which is exact as long as readings are less than 2³²
//!   cycles apart. The alarm guarantees that: it is never set further than
//!   [`ticks::MAX_ALARM_CYCLES`] (2³⁰ cycles, 43 s at 25 MHz) ahead, and every
//!   alarm interrupt takes a reading. No wrap interrupt, no race between an
//!   overflow count and the counter.
//! - **The tick** is embassy-time's `TICK_HZ` (1 MHz by default): a whole number
//!   of timer cycles (25 at 25 MHz, checked when the driver's `static` is
//!   built), so ticks are exact, not rounded.
//! - **The alarm** is the second timer, one shot: loaded with the cycles until
//!   the earliest timer of embassy's queue, it interrupts on reaching zero; the
//!   board's handler calls [`TimeDriver::on_alarm_interrupt`], which wakes the
//!   expired timers and sets the next alarm.
//!
//! The arithmetic is in [`ticks`], pure functions tested on the host; the
//! registers are reached only through [`ApbTimer`].
//!
//! [embassy-time]: https://docs.rs/embassy-time
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

mod driver;
pub mod ticks;

pub use driver::{ApbTimer, TimeDriver};
