//! The poll-loop adapter: sessions on smoltcp sockets, for bare loops and RTIC.
//!
//! Everything here is poll-driven with no async: `poll(&mut self, sockets, now)`
//! does all pending work and returns. This layer owns no memory of its own beyond
//! small fixed state: socket buffers belong to the caller's [`SocketSet`], and a
//! session's buffers are const generics or caller slices. No handle can make it
//! panic: a handle that is not in the set given is an error or a counter.
//!
//! - [`TcpServer`]: `socketserver` on a pool of `N` sockets, one
//!   [`Session`](crate::session::Session) per slot, every slot freed by time.
//! - [`TcpSession`]: one session on one socket, for clients and hand-written loops.
//! - [`TcpClient`] and [`PortAllocator`]: `connect` with a deadline, ephemeral ports.
//! - [`StreamingFrames`]: length framing with no frame storage: bodies go between
//!   the application and the socket rings in pieces, with no copy, and small
//!   frames several to a socket call.
//! - [`UdpService`]: datagrams with their boundaries, through a [`DatagramHandler`].
//! - [`TftpServer`]: TFTP on udp/69, a fixed pool of transfers, each on its own port;
//!   [`TftpClient`]: a client transfer on one socket.

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

mod backlog;
mod client;
mod pump;
mod server;
mod stream;
mod tftp;
mod udp;

pub use backlog::{Backlog, BacklogStats, EVICT_ALIVE_AFTER, Gated, HELD_SYN_LEN, HOLD};
pub use client::{
    ClientState, ConnectError, EPHEMERAL_FIRST, EPHEMERAL_LAST, PortAllocator, TcpClient,
};
pub use pump::{HandleError, TcpSession};
pub use server::{End, ServerConfig, ServerError, ServerStats, TcpServer};
pub use stream::{RecvError, SendError, StreamStats, StreamingFrames};
pub use tftp::{TftpClient, TftpServer};
pub use udp::{DatagramHandler, UdpEcho, UdpService, UdpStats};
