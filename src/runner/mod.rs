//! Runners own an `Interface`, a `Device` and a `SocketSet`, and drive
//! `Interface::poll` plus the services.
//!
//! - [`sim`]: two stacks in one process joined by an in-memory link with a seeded
//!   fault model and a virtual clock. Deterministic; never sleeps; `no_std`.
//! - `tap` (feature `tap`, Linux): the Linux TAP device and runner, the only place
//!   with a real clock.

pub mod sim;
#[cfg(all(feature = "tap", target_os = "linux"))]
pub mod tap;
