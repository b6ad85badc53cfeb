//! # lan9118
//!
//! A `no_std` driver for the SMSC (now Microchip) LAN9118 Ethernet controller, as a
//! [smoltcp] [`Device`][smoltcp-device] for `Medium::Ethernet`.
//!
//! The LAN9118 is a MAC and PHY with its own FIFOs on a plain memory bus. It sits on
//! Arm's MPS2 boards, which QEMU emulates (`-machine mps2-an385` / `mps2-an386`, the
//! chip at `0x4020_0000`), so it is a good way to run a real driver and a real stack
//! under emulation, and the same driver runs on real hardware with this chip.
//!
//! - Two stacks: smoltcp's `phy::Device` (feature `smoltcp`, on by default) and
//!   embassy-net's `Driver` (`embassy::Device`, feature `embassy`), over the
//!   same register code.
//! - Programmed I/O only: no DMA, no interrupts needed (an RX interrupt can be
//!   switched on to sleep between frames; the embassy driver wakes its runner
//!   from it).
//! - No allocation: one RX and one TX frame buffer inside the driver, so the whole
//!   driver can be a `static`.
//! - No panics and no unbounded waits: bad frames are dropped and counted in
//!   [`Stats`], a dead chip gives an [`InitError`].
//! - All hardware access goes through the small [`Bus`] trait; [`Mmio`] is the
//!   memory-mapped implementation and the crate's only `unsafe`.
//!
//! ```no_run
//! use lan9118::{Config, Lan9118, Mmio};
//!
//! // SAFETY: on an MPS2 board (or QEMU's), the LAN9118 is at 0x4020_0000 and
//! // nothing else touches it.
//! let bus = unsafe { Mmio::new(0x4020_0000) };
//! let mut device = Lan9118::new(bus, Config::new([0x02, 0, 0, 0, 0, 0x01]));
//! device.init()?;
//! // `device` is now a `smoltcp::phy::Device`: hand it to `Interface::new` and
//! // `Interface::poll`.
//! # Ok::<(), lan9118::InitError>(())
//! ```
//!
//! Register names follow the datasheet; see [`regs`].
//!
//! [smoltcp]: https://docs.rs/smoltcp
#![cfg_attr(feature = "smoltcp", doc = "[smoltcp-device]: smoltcp::phy::Device")]
#![cfg_attr(
    not(feature = "smoltcp"),
    doc = "[smoltcp-device]: https://docs.rs/smoltcp/0.14/smoltcp/phy/trait.Device.html"
)]
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, missing_docs)]
// With neither stack, only the register code is used (init, counters, ids).
#![cfg_attr(not(any(feature = "smoltcp", feature = "embassy")), allow(dead_code))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod bus;
mod driver;
// Also built for the tests, so that plain `cargo test` covers it.
#[cfg(any(feature = "embassy", test))]
pub mod embassy;
pub mod regs;

#[cfg(test)]
mod fake_chip;

pub use bus::{Bus, Mmio};
pub use driver::{ChipId, Config, CsrError, InitError, Lan9118, MAX_FRAME_LEN, Stats};
#[cfg(feature = "smoltcp")]
pub use driver::{RxToken, TxToken};
