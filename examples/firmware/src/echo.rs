//! TCP and UDP echo on port 7, written straight on smoltcp sockets.
//!
//! These are the firmware's stand-ins until it runs smolsock's own services; they
//! already have the same shape, a [`Service`] polled after every
//! `Interface::poll`, so swapping them is a change of constructors in `main.rs`.

use smolsock::net::Service;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;

/// Counters of an echo service.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoStats {
    /// TCP connections accepted.
    pub connections: u32,
    /// Datagrams echoed (UDP).
    pub datagrams: u32,
    /// Bytes echoed.
    pub bytes: u64,
    /// Datagrams that could not be echoed: too big for the scratch buffer, or the
    /// send buffer was full.
    pub dropped: u32,
}

/// Echoes every byte of a TCP connection back, then closes when the peer does.
///
/// One connection at a time (one socket); `S` is the scratch buffer that carries
/// bytes from the receive buffer to the send buffer.
#[derive(Debug)]
pub struct TcpEcho<const S: usize> {
    handle: SocketHandle,
    port: u16,
    connected: bool,
    scratch: [u8; S],
    stats: EchoStats,
}

impl<const S: usize> TcpEcho<S> {
    /// An echo service on `port` over a socket made from `rx` and `tx`, added to
    /// `sockets`.
    pub fn new<'a>(
        sockets: &mut SocketSet<'a>,
        rx: &'a mut [u8],
        tx: &'a mut [u8],
        port: u16,
    ) -> Self {
        let socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        Self {
            handle: sockets.add(socket),
            port,
            connected: false,
            scratch: [0; S],
            stats: EchoStats::default(),
        }
    }
}

impl<const S: usize> Service for TcpEcho<S> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if !socket.is_open() {
            if self.connected {
                self.connected = false;
                log::info!(
                    "tcp/{}: closed; {} connections, {} bytes echoed so far",
                    self.port,
                    self.stats.connections,
                    self.stats.bytes
                );
            }
            if let Err(error) = socket.listen(self.port) {
                log::warn!("tcp/{}: listen failed: {error}", self.port);
            }
            return;
        }
        if socket.is_active() && !self.connected {
            self.connected = true;
            self.stats.connections = self.stats.connections.wrapping_add(1);
            if let Some(peer) = socket.remote_endpoint() {
                log::info!("tcp/{}: connection from {peer}", self.port);
            }
        }
        // Move what fits from the receive buffer to the send buffer.
        while socket.can_recv() {
            let room = socket.send_capacity().saturating_sub(socket.send_queue());
            let Some(chunk) = self.scratch.get_mut(..room.min(S)) else {
                break;
            };
            if chunk.is_empty() {
                break;
            }
            let Ok(received) = socket.recv_slice(chunk) else {
                break;
            };
            let Some(data) = chunk.get(..received) else {
                break;
            };
            let Ok(sent) = socket.send_slice(data) else {
                break;
            };
            self.stats.bytes = self.stats.bytes.wrapping_add(sent as u64);
            if received == 0 {
                break;
            }
        }
        // The peer is done sending and everything is echoed: close our half.
        if !socket.may_recv() && socket.may_send() && socket.recv_queue() == 0 {
            socket.close();
        }
    }
}

/// Sends every datagram back to where it came from.
#[derive(Debug)]
pub struct UdpEcho<const S: usize> {
    handle: SocketHandle,
    port: u16,
    scratch: [u8; S],
    stats: EchoStats,
}

impl<const S: usize> UdpEcho<S> {
    /// An echo service on `port` over a socket made from the given buffers, added
    /// to `sockets`.
    pub fn new<'a>(
        sockets: &mut SocketSet<'a>,
        rx_meta: &'a mut [udp::PacketMetadata],
        rx_payload: &'a mut [u8],
        tx_meta: &'a mut [udp::PacketMetadata],
        tx_payload: &'a mut [u8],
        port: u16,
    ) -> Self {
        let socket = udp::Socket::new(
            udp::PacketBuffer::new(rx_meta, rx_payload),
            udp::PacketBuffer::new(tx_meta, tx_payload),
        );
        Self {
            handle: sockets.add(socket),
            port,
            scratch: [0; S],
            stats: EchoStats::default(),
        }
    }
}

impl<const S: usize> Service for UdpEcho<S> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if !socket.is_open() {
            if let Err(error) = socket.bind(self.port) {
                log::warn!("udp/{}: bind failed: {error}", self.port);
            }
            return;
        }
        while socket.can_recv() {
            match socket.recv_slice(&mut self.scratch) {
                Ok((len, meta)) => {
                    let sent = self
                        .scratch
                        .get(..len)
                        .map(|data| socket.send_slice(data, meta));
                    if let Some(Ok(())) = sent {
                        self.stats.datagrams = self.stats.datagrams.wrapping_add(1);
                        self.stats.bytes = self.stats.bytes.wrapping_add(len as u64);
                    } else {
                        self.stats.dropped = self.stats.dropped.wrapping_add(1);
                    }
                }
                Err(udp::RecvError::Truncated) => {
                    self.stats.dropped = self.stats.dropped.wrapping_add(1);
                }
                Err(_) => break,
            }
            log::debug!(
                "udp/{}: {} datagrams ({} bytes) echoed, {} dropped",
                self.port,
                self.stats.datagrams,
                self.stats.bytes,
                self.stats.dropped
            );
        }
    }
}
