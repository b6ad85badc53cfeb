//! # smolsock
//!
//! The socket programming primer, done on [smoltcp] in `no_std` with fixed memory.
//!
//! smolsock teaches and packages what a first socket course covers (TCP and UDP
//! servers and clients, buffers, the "sticky packet" problem and its cure by length
//! framing, a socketserver-style pool, file transfer with a progress bar) for a stack
//! that has no operating system under it. Every buffer has a capacity fixed at compile
//! time or handed in by the caller, nothing allocates, and nothing panics on input
//! from the network or the caller: errors are small typed enums.
//!
//! ## Layers
//!
//! Data flows down and back up through the layers, never sideways:
//!
//! | layer | what lives there |
//! |---|---|
//! | [`runner`] | the in-process simulated link, the Linux TAP runner (`std`) |
//! | [`session`], [`http`], [`transfer`] | sans-IO sessions (bytes in, bytes out, time passed in, no smoltcp): echo, length framing, the HTTP responder, the file transfer server and client |
//! | [`net`] | the smoltcp poll-loop adapter: [`net::TcpServer`], [`net::TcpSession`], [`net::UdpService`], [`net::TcpClient`], [`net::StreamingFrames`], [`net::Backlog`] |
//! | [`wire`] | sans-IO codecs: frame headers, [`wire::frame::FrameReader`], HTTP request lines, transfer messages |
//!
//! The [`wire`] layer knows nothing of smoltcp, time or I/O, so it is tested on bytes
//! alone. Everything above it is poll-driven: `poll(&mut self, sockets, now)` does
//! all pending work and returns, with time always passed in.
//!
//! ## Features
//!
//! - `std` (default): the Linux TAP device and runner, the on-disk file store.
//!   Build for a microcontroller with `--no-default-features`.
//! - `defmt`: `defmt::Format` for errors and counters.
//! - `embedded-io-async`: the async adapter, module `asynch`: any session over an
//!   `embedded_io_async::{Read, Write}` stream (embassy-net's `TcpSocket`, tokio's
//!   `TcpStream` through `embedded-io-adapters`), with deadlines from a `Clock` you
//!   implement in a few lines; client requests on a kept-open `Connection`; framed
//!   `read_frame` / `write_frame`. No smoltcp, no allocation:
//!   `--no-default-features --features embedded-io-async` builds for a
//!   microcontroller beside embassy-net's own stack.
//! - `embedded-io`: the same, blocking, module `blocking`: over
//!   `embedded_io::{Read, Write}`, and with `std` over `std::io` streams
//!   (`blocking::StdIo`, `blocking::StdClock`), deadlines through the stream's
//!   read timeout.
//!
//! [smoltcp]: https://docs.rs/smoltcp
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code, missing_docs)]
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

#[cfg(feature = "embedded-io-async")]
pub mod asynch;
#[cfg(feature = "embedded-io")]
pub mod blocking;
pub mod http;
#[cfg(feature = "smoltcp")]
pub mod net;
#[cfg(any(feature = "embedded-io-async", feature = "embedded-io"))]
mod pump;
#[cfg(feature = "smoltcp")]
pub mod runner;
pub mod session;
pub mod store;
pub mod time;
pub mod transfer;
pub mod wire;
