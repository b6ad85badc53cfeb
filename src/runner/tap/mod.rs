//! The Linux TAP runner: the whole TCP/IP stack in userspace on a TAP link, with
//! the Linux kernel's own stack on the other side of it.
//!
//! - [`TapDevice`]: a smoltcp Ethernet [`Device`](smoltcp::phy::Device) over
//!   `/dev/net/tun` that allocates nothing per frame and never panics: I/O errors
//!   (the link went down) are logged, counted in [`TapStats`] and survived.
//! - [`TapRunner`]: owns the interface (addresses and routes from [`TapConfig`]),
//!   the device and the sockets, drives the [`Service`](crate::net::Service)s, sleeps
//!   until the next frame or timer, and on stop closes TCP connections gracefully.
//!
//! This is the only place in smolsock that reads a clock (the monotonic one, as
//! the time since the runner started), and
//! besides the CRC-32's processor instructions the only place with `unsafe` code
//! (the system calls, in a private `sys` module).
//! Create the interface first with `sudo ./tap-setup.sh up`; the defaults here match
//! that script (the stack is 192.168.69.1 and fdaa::1, Linux is .100 and ::100).

mod device;
mod stack;
mod sys;

pub use device::{OpenError, TapBacked, TapDevice, TapStats};
pub use stack::{RunError, SetupError, StopReport, TapConfig, TapRunner};
