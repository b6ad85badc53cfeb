//! A peer as `std` writes it, for the live page's rows: an IPv6 address in
//! brackets before its port (smoltcp writes none). Both firmwares use this
//! file, each with its own stack's `IpAddress` and `IpEndpoint` in scope of
//! the module that includes it.

use core::fmt;

use super::{IpAddress, IpEndpoint};

/// `peer` written as `192.168.69.100:40878` or `[fdaa::100]:40878`.
pub struct Peer(pub IpEndpoint);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.addr {
            IpAddress::Ipv4(address) => write!(f, "{address}:{}", self.0.port),
            IpAddress::Ipv6(address) => write!(f, "[{address}]:{}", self.0.port),
        }
    }
}
