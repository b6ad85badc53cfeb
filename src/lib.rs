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
//! Each protocol is written once, as a sans-IO [`session::Session`]: bytes in, bytes
//! out, time passed in. Thin adapters run the same sessions three ways:
//!
//! | way of running | module | feature |
//! |---|---|---|
//! | smoltcp's poll loop (bare metal, RTIC) | [`net`]: [`net::TcpServer`], [`net::TcpSession`] | `smoltcp` (default) |
//! | embassy-net, tokio: `embedded_io_async::{Read, Write}` | `asynch` | `embedded-io-async` |
//! | std and blocking `embedded_io::{Read, Write}` | `blocking` | `embedded-io` (with `std` for `std::net`) |
//!
//! ## On smoltcp's poll loop
//!
//! A pool of two framed-echo connections on port 9000 (`listen(2)`), and a client
//! that sends one frame; here the two hosts are joined by the in-process simulated
//! link, on a real device the loop polls the `Interface` and the pool the same way.
//!
//! ```
//! # #[cfg(all(feature = "smoltcp", feature = "std"))] {
//! use smoltcp::iface::{SocketSet, SocketStorage};
//! use smoltcp::socket::tcp;
//! use smoltcp::time::Duration;
//! use smolsock::net::{Service, TcpServer, TcpSession};
//! use smolsock::runner::sim::{SERVER_V4, SimConfig, SimNet};
//! use smolsock::session::{Framed, FramedEcho};
//! use smolsock::wire::frame::HeaderFormat;
//!
//! fn socket() -> tcp::Socket<'static> {
//!     tcp::Socket::new(
//!         tcp::SocketBuffer::new(vec![0; 2048]),
//!         tcp::SocketBuffer::new(vec![0; 2048]),
//!     )
//! }
//! let format = HeaderFormat::NETWORK.with_max_len(1024)?;
//! let echo = || Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format);
//!
//! let mut net: SimNet = SimNet::new(
//!     SimConfig::new(1),
//!     SocketSet::new(vec![SocketStorage::EMPTY, SocketStorage::EMPTY]),
//!     SocketSet::new(vec![SocketStorage::EMPTY]),
//! );
//! let slots = [net.server.sockets.add(socket()), net.server.sockets.add(socket())];
//! let mut server = TcpServer::new(&mut net.server.sockets, 9000, slots, [echo()?, echo()?])?;
//!
//! // The client: a framed connection with no handler, on its own socket.
//! let handle = net.client.sockets.add(socket());
//! if let Some((socket, cx)) = net.client.socket_and_context::<tcp::Socket>(handle) {
//!     socket.connect(cx, (SERVER_V4, 9000), 49152)?;
//! }
//! let mut client = TcpSession::new(handle, Framed::new((), [0u8; 1028], [0u8; 1028], format)?);
//! client.session_mut().send(b"hello")?;
//!
//! let echoed = net.run_until(Duration::from_secs(5), |net| {
//!     let now = net.now();
//!     server.poll(&mut net.server.sockets, now);
//!     client.poll(&mut net.client.sockets, now).ok()?;
//!     client.session_mut().recv().map(<[u8]>::to_vec)
//! })?;
//! assert_eq!(echoed, b"hello");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## On embassy-net
//!
//! embassy-net's `TcpSocket` is an `embedded_io_async` stream, so a task serves
//! each connection with an [`asynch::Connection`] and a [`Clock`] of six lines
//! on `embassy_time` (see the module). Generic over the stream, the task is:
//!
//! ```
//! # #[cfg(feature = "embedded-io-async")] {
//! use embedded_io_async::{Read, Write};
//! use smolsock::asynch::{self, Clock, Connection, End, Flush};
//! use smolsock::session::{Framed, FramedEcho};
//! use smolsock::wire::frame::HeaderFormat;
//!
//! /// Serves one accepted connection; `Ok(true)` if it ended cleanly (then
//! /// `socket.close()`), `Ok(false)` if it must be reset (`socket.abort()`).
//! async fn serve<T: Read + Write>(socket: &mut T, clock: &impl Clock) -> Result<bool, asynch::Error<T::Error>> {
//!     let format = HeaderFormat::NETWORK.with_max_len(1024).expect("1 KiB fits");
//!     let mut echo = Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format).expect("room for a frame");
//!     let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
//!     // embassy-net sends what is written on its own, and its `flush` waits for
//!     // the peer's ACKs: flush only at the end. (A stream that holds written bytes
//!     // until flushed, a UART driver say, keeps the default, `Flush::BeforeRead`.)
//!     // No byte moving for 60 s (a silent peer, or one that reads nothing) ends
//!     // it: the default idle timeout, which `with_idle_timeout` changes.
//!     let mut conn = Connection::new(socket, &mut rx, &mut tx).with_flush(Flush::AtEnd);
//!     Ok(conn.run(&mut echo, clock).await? == End::Closed)
//! }
//! # }
//! ```
//!
//! ## On std
//!
//! The same sessions over `std::net::TcpStream`, blocking: a client that stores a
//! file on a transfer server (the `transfer` example is this, with a progress bar).
//!
//! ```no_run
//! # #[cfg(all(feature = "std", feature = "embedded-io"))] {
//! use std::net::TcpStream;
//! use smolsock::blocking::{Connection, StdClock, StdIo};
//! use smolsock::store::FileName;
//! use smolsock::transfer::{PutOptions, TransferClient};
//!
//! let stream = TcpStream::connect("192.168.69.1:2121")?;
//! stream.set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
//! let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
//! let mut conn = Connection::new(StdIo::new(&stream), &mut rx, &mut tx);
//! let mut client = TransferClient::new(vec![0u8; 65_540], vec![0u8; 65_540])?;
//! let data = b"boot ok\n".repeat(1000);
//! let mut put = client.put(FileName::new("boot.log")?, &data[..], PutOptions::RESUME, |done, total| {
//!     eprint!("\r{done}/{total}");
//! });
//! let stored = conn.run_request(&mut put, &StdClock::new())??;
//! println!("stored {} bytes, crc {:08x}", stored.size, stored.crc);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layers
//!
//! Data flows down and back up, never sideways:
//!
//! | layer | what lives there |
//! |---|---|
//! | runners | [`runner`]: the in-process simulated link (`smoltcp`), the Linux TAP runner (`tap`) |
//! | adapters | [`net`] (smoltcp poll loop), [`asynch`] (embedded-io-async), [`blocking`] (embedded-io, `std::io`) |
//! | sessions | [`session`] (echo, length framing), [`http`] (the HTTP responder), [`transfer`] (the file transfer server and client), [`tftp`] (TFTP transfers, server and client) |
//! | codecs | [`wire`]: frame headers, [`wire::frame::FrameReader`], [`wire::body::BodyReader`], HTTP request heads, transfer messages, CRC-32; [`tftp::packet`]: TFTP packets |
//! | storage | [`store`]: the `Storage` trait, `RamStore`, `DirStore` (`std`) |
//!
//! Codecs and sessions know nothing of smoltcp, clocks or I/O, so they are tested
//! on bytes alone and build without smoltcp (an embassy-net firmware links one
//! stack, embassy's own).
//!
//! ## Features
//!
//! | feature | default | what it turns on |
//! |---|---|---|
//! | `smoltcp` | yes | [`net`] and [`runner::sim`]: the poll-loop adapter (TFTP's `TftpServer` and `TftpClient` too), the listen backlog, the simulated link; `trace::SegmentCapture` |
//! | `std` | yes | `DirStore` (files on disk, Unix), `tftp::std_net` (TFTP over `std::net`), `trace::TraceWriter`, `trace::PcapFile` (with `smoltcp`), `blocking::StdIo` (with `embedded-io`) |
//! | `tap` | yes | the Linux TAP device and runner (turns on `std`, `smoltcp` and `log` on every OS; the device and runner themselves are Linux only) |
//! | `log` | yes | smolsock's log lines through the `log` crate |
//! | `defmt` | no | `defmt::Format` for errors and counters, and the log lines through `defmt` |
//! | `embedded-io-async` | yes | `asynch`: sessions over `embedded_io_async` streams (embassy-net, tokio); `tftp::asynch`, TFTP over any datagram socket |
//! | `embedded-io` | yes | `blocking`: sessions over `embedded_io` streams, and `std::io` ones with `std` |
//!
//! For a microcontroller: `default-features = false` plus what the firmware needs,
//! e.g. `features = ["smoltcp"]` on a poll loop, `["embedded-io-async"]` on
//! embassy-net.
//!
//! [smoltcp]: https://docs.rs/smoltcp
// Built without a feature, the links to what it turns on go to the table above.
#![cfg_attr(feature = "embedded-io-async", doc = "[`Clock`]: crate::asynch::Clock")]
#![cfg_attr(
    not(feature = "embedded-io-async"),
    doc = "[`Clock`]: crate#features\n[`asynch`]: crate#features\n[`asynch::Connection`]: crate#features"
)]
#![cfg_attr(not(feature = "embedded-io"), doc = "[`blocking`]: crate#features")]
#![cfg_attr(
    not(feature = "smoltcp"),
    doc = "[`net`]: crate#features\n[`net::TcpServer`]: crate#features\n[`net::TcpSession`]: crate#features\n[`runner`]: crate#features\n[`runner::sim`]: crate#features"
)]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]
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

mod macros;
mod name;

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
pub mod tftp;
pub mod time;
pub mod trace;
pub mod transfer;
pub mod wire;

// The README's Rust examples, compiled and run as doctests.
#[cfg(all(
    doctest,
    feature = "std",
    feature = "smoltcp",
    feature = "embedded-io",
    feature = "embedded-io-async"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
