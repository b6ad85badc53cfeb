//! Framing and connection handling joined to smoltcp sockets.
//!
//! This layer owns no memory of its own beyond small fixed state: socket buffers
//! belong to the caller's [`SocketSet`], and per-connection
//! frame buffers are const generics or caller slices.
//!
//! Writing follows Python's `sendall`: what does not fit in a socket's send buffer
//! stays where it is and goes out on a later poll. Nothing is ever dropped; a full
//! buffer is reported as [`SendError::WouldBlock`]: back-pressure, retry later.
//!
//! - [`FramedStream`]: length framing on one TCP socket (client or server side).
//! - [`StreamingFrames`]: the same framing with no frame storage: bodies go between
//!   the application and the socket rings in pieces, with no copy.
//! - [`TcpServer`]: `socketserver` on a pool of `N` sockets, with [`Handler`] and,
//!   through [`Framed`], [`FrameHandler`].
//! - [`TcpClient`] and [`PortAllocator`]: `connect` with a deadline, ephemeral ports.
//! - [`UdpService`]: datagrams with their boundaries, through a [`DatagramHandler`].

use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

/// A poll-driven piece of work on a set of sockets: a server, a client, a service.
///
/// Runners call [`Service::poll`] after every `Interface::poll`, and sleep no longer
/// than [`Service::poll_at`] allows.
pub trait Service {
    /// Does all the work that is pending now (reading, writing, timers) and returns.
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant);

    /// The earliest time this service needs to be polled again even if no packet
    /// arrives (for example an idle timeout), or `None` if it only reacts to traffic.
    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        None
    }
}

mod client;
mod server;
mod stream;
mod udp;

pub use client::{
    ClientState, ConnectError, EPHEMERAL_FIRST, EPHEMERAL_LAST, PortAllocator, TcpClient,
};
pub use server::{
    Connection, End, Flow, FrameHandler, FrameOut, Framed, Handler, ServerConfig, ServerStats,
    TcpServer,
};
pub use stream::{FrameTx, FramedStream, RecvError, SendError, StreamStats, StreamingFrames};
pub use udp::{DatagramHandler, UdpService, UdpStats};
