//! UDP echo: the primer's `recvfrom(1024)` + `sendto(data, addr)`, boundaries kept.

use smoltcp::wire::IpEndpoint;

use crate::net::DatagramHandler;

/// Sends every datagram back to its sender, unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpEcho;

impl DatagramHandler for UdpEcho {
    fn on_datagram(&mut self, _buf: &mut [u8], len: usize, _from: IpEndpoint) -> Option<usize> {
        Some(len)
    }
}
