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
//! | [`service`] | echo, framed echo, UDP echo, HTTP |
//! | [`net`] | [`net::FramedStream`], [`net::StreamingFrames`], [`net::TcpServer`], [`net::UdpService`], [`net::TcpClient`] |
//! | [`session`], [`transfer`] | sans-IO sessions: framed echo, the file transfer server and client |
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

#[cfg(feature = "smoltcp")]
pub mod net;
#[cfg(feature = "smoltcp")]
pub mod runner;
#[cfg(feature = "smoltcp")]
pub mod service;
pub mod session;
pub mod store;
pub mod time;
pub mod transfer;
pub mod wire;
