//! The client over `std::net::UdpSocket`, blocking: [`get`] and [`put`].
//!
//! The request goes to the server's address (port 69 as a rule); the first
//! answer's port becomes the transfer's, and a datagram from any other port is
//! answered ERROR 5 (an ERROR is never answered) and ignored. The socket's read timeout wakes the loop for the
//! session's retransmissions, so a silent server ends the call with
//! [`TftpError::TimedOut`] after the session's tries.
//!
//! Each call binds a socket of its own, on a fresh port (its transfer ID), so a
//! late datagram of an earlier transfer never reaches a later one.
//!
//! A call returns as soon as the transfer's outcome is known: a get does not
//! wait out its dally (seconds of a blocking call for a courtesy), so a server
//! that missed the final ACK retransmits its last DATA to a closed port and
//! counts a timeout, though the file arrived whole.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration as StdDuration;

use super::ClientSession;
use super::packet::{ErrorCode, MAX_BLOCK_SIZE};
use super::{ClientConfig, ClientGet, ClientPut, TftpError, emit_error};
use crate::store::FileName;
use crate::time::Instant;
use crate::transfer::{FileSink, FileSource};

/// Why a blocking transfer failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StdError {
    /// The socket failed.
    Io(std::io::Error),
    /// The transfer failed.
    Tftp(TftpError),
}

impl core::fmt::Display for StdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Tftp(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StdError {}

impl From<std::io::Error> for StdError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads `name` from the server at `server` into `sink`; returns its size.
pub fn get<K: FileSink>(
    server: SocketAddr,
    name: FileName,
    config: ClientConfig,
    sink: K,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, StdError> {
    let mut session = ClientGet::new(name, config, sink, progress);
    drive(server, &config, &mut session)
}

/// Writes `source` to the server at `server` as `name`; returns its size.
pub fn put<F: FileSource>(
    server: SocketAddr,
    name: FileName,
    config: ClientConfig,
    source: F,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, StdError> {
    let mut session = ClientPut::new(name, config, source, progress);
    drive(server, &config, &mut session)
}

fn drive(
    server: SocketAddr,
    config: &ClientConfig,
    session: &mut dyn ClientSession,
) -> Result<u64, StdError> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    let block = usize::from(config.block_size.unwrap_or(512).min(MAX_BLOCK_SIZE));
    // A DATA, and at least what RFC 1350's 512-byte blocks take: a request with
    // its options, an OACK or an ERROR can be longer than a small block's DATA.
    let mut buf = vec![0u8; block.saturating_add(4).max(516)];
    let mut incoming = vec![0u8; block.saturating_add(5).max(517)];
    let start = std::time::Instant::now();
    let now =
        || Instant::from_micros(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    let mut peer: Option<SocketAddr> = None;
    loop {
        loop {
            let n = session.transmit(&mut buf, now());
            if n == 0 {
                break;
            }
            send_to(
                &socket,
                buf.get(..n).unwrap_or_default(),
                peer.unwrap_or(server),
            )?;
        }
        if let Some(outcome) = session.outcome() {
            return outcome.map_err(StdError::Tftp);
        }
        let wait = session
            .poll_timeout()
            .map_or(StdDuration::from_millis(100), |at| {
                StdDuration::from_micros(at.saturating_since(now()).total_micros())
            })
            .max(StdDuration::from_millis(1));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut incoming) {
            Ok((len, from)) => {
                let datagram = incoming.get(..len).unwrap_or_default();
                match peer {
                    None if from.ip() == server.ip() => {
                        peer = Some(from);
                        session.receive(datagram, now());
                    }
                    Some(p) if p == from => session.receive(datagram, now()),
                    // An ERROR from a wrong TID is not answered (RFC 1350).
                    _ if super::is_error(datagram) => {}
                    _ => {
                        let n = emit_error(&mut buf, ErrorCode::UnknownTid, "unknown transfer ID");
                        send_to(&socket, buf.get(..n).unwrap_or_default(), from)?;
                    }
                }
            }
            // A signal: a receive with a timeout is never restarted (even with
            // SA_RESTART), and the wait is counted again from the clock.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // ICMP port unreachable from an earlier send: the next packets tell.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
        let at = now();
        if session.poll_timeout().is_some_and(|due| at >= due) {
            session.handle_timeout(at);
        }
    }
}

/// Sends one datagram, again if a signal interrupted the call.
fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    loop {
        match socket.send_to(bytes, to) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other.map(drop),
        }
    }
}
