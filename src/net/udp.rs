//! [`UdpService`]: datagrams in, datagrams out, boundaries kept.
//!
//! UDP is the primer's other socket type: no connection, no ordering, no
//! retransmission, but each `sendto` arrives (if it arrives) as exactly one
//! `recvfrom`, never glued to another. The service binds one smoltcp UDP socket
//! and hands each datagram to a [`DatagramHandler`] together with the sender's
//! address; the handler may answer in place.
//!
//! Fixed memory has two edges here, and neither loses data silently: a datagram
//! larger than the service's buffer is dropped *and counted* as oversize (the
//! primer's `recvfrom(1024)` would cut it), and a reply that finds the send buffer
//! full is kept and sent on a later poll before any new datagram is read.
//!
//! The link has an edge of its own, which smoltcp keeps quiet: it does not
//! fragment, so a datagram longer than the link carries (its IP MTU less 28
//! bytes of headers over IPv4, 48 over IPv6) is dropped on the way out,
//! uncounted, and one longer than the socket's receive payload ring on the way
//! in. Tell the service the link's IP MTU ([`UdpService::with_link_mtu`]): it
//! then refuses a reply too long for the link itself, counted in
//! [`UdpStats::send_errors`], and says at bind (a warning in the log) when the
//! socket's receive ring cannot hold a datagram as long as the link carries,
//! so that `oversize` would miss some. An echo never needs it on a link of
//! one MTU both ways: its replies are the length of what came in.
//!
//! One socket serves every peer, and smoltcp sends its queue in order: a reply
//! that can never leave (its address answers no neighbour discovery, or has no
//! route; a forged source does both) would hold every reply behind it for ever.
//! When the queue holds datagrams (empty ones too) and has sent none of them for
//! 3 s, the service empties it and counts it in [`UdpStats::stuck_flushes`].
//! Emptying it closes the socket, which drops the datagrams still waiting to be
//! read too: they are read off first and counted in [`UdpStats::unread_dropped`].

use core::fmt;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use super::Service;
use crate::time::later;

/// How long the socket's send queue may hold replies without sending any before
/// they are dropped. smoltcp retries neighbour discovery once a second, so this
/// leaves a slow neighbour three tries.
const STUCK_AFTER: Duration = Duration::from_secs(3);

/// Per-datagram behaviour.
pub trait DatagramHandler {
    /// A datagram of `len` bytes from `from` is at the front of `buf` (whose full
    /// length is the service's buffer). Write a reply into `buf` (in place) and
    /// return its length, or `None` to send nothing.
    ///
    /// A length over `buf.len()` is a bug in the handler: the service sends
    /// nothing (never a reply cut to the buffer), logs it and counts it in
    /// [`UdpStats::send_errors`].
    fn on_datagram(&mut self, buf: &mut [u8], len: usize, from: IpEndpoint) -> Option<usize>;
}

/// Counters of a [`UdpService`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpStats {
    /// Datagrams received whole.
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Replies handed to the socket to send, those a stuck flush later drops
    /// included.
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Datagrams larger than the buffer, dropped (not cut).
    pub oversize: u64,
    /// Replies that found the send buffer full and waited: each counted once,
    /// however many polls it waits.
    pub send_full: u64,
    /// Replies that could not be sent at all (too big for the socket, or for
    /// the link ([`UdpService::with_link_mtu`]), or a length from the handler
    /// over the buffer). A reply with no route back is
    /// queued, and dropped with the queue in a stuck flush
    /// ([`stuck_flushes`](Self::stuck_flushes)).
    pub send_errors: u64,
    /// Times the send queue held datagrams (of any size, empty ones too) and
    /// sent none of them for 3 s, and was emptied, dropping the replies in it
    /// (and the datagrams waiting to be read): a reply to an address that never
    /// answers neighbour discovery, or has no route back. smoltcp tells how many
    /// bytes its queue holds, not how many datagrams, so the replies dropped
    /// are not counted one by one.
    pub stuck_flushes: u64,
    /// Datagrams received that were waiting to be read when a stuck flush
    /// closed the socket, dropped unanswered (their senders, as any UDP peer,
    /// ask again).
    pub unread_dropped: u64,
    /// Polls that found the socket missing from the set given (a foreign or
    /// removed handle): nothing done, never a panic.
    pub missing_socket: u64,
    /// Polls that could not bind the socket to the port (port 0): nothing
    /// served. Logged once per run of them.
    pub bind_errors: u64,
}

/// One status line: every counter, and `missing_socket`, which only a
/// program's mistake makes more than zero, once it is.
impl fmt::Display for UdpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in: {} datagrams / {} B, out: {} / {} B, {} oversize, {} send-buffer-full, \
             {} send errors, {} stuck flushes ({} unread dropped), {} polls unbound",
            self.datagrams_in,
            self.bytes_in,
            self.datagrams_out,
            self.bytes_out,
            self.oversize,
            self.send_full,
            self.send_errors,
            self.stuck_flushes,
            self.unread_dropped,
            self.bind_errors
        )?;
        if self.missing_socket > 0 {
            write!(f, ", {} polls without its socket", self.missing_socket)?;
        }
        Ok(())
    }
}

/// The most payload a datagram carries over a link of IP MTU `mtu`: less the
/// IPv4 (20 bytes) or IPv6 (40) header and UDP's own 8.
fn link_payload(mtu: u16, v4: bool) -> usize {
    usize::from(mtu).saturating_sub(if v4 { 28 } else { 48 })
}

/// A reply in the buffer, waiting for send space.
#[derive(Clone, Copy)]
struct Pending {
    len: usize,
    to: IpEndpoint,
    /// Already counted in [`UdpStats::send_full`].
    waited: bool,
}

/// A send queue that holds datagrams, as the last poll left it.
#[derive(Clone, Copy)]
struct QueueWatch {
    /// Its payload bytes.
    bytes: usize,
    /// Every datagram slot taken.
    full: bool,
    /// Since when the stack has sent none of it.
    since: Instant,
}

/// What a UDP socket's send queue shows of itself, if it holds anything: its
/// payload bytes, and whether every datagram slot is taken. smoltcp does not
/// tell how many datagrams it holds, so a queue of empty datagrams shows only
/// once they take every slot, or once a reply of one byte or more is queued
/// behind them.
fn queued(socket: &udp::Socket<'_>) -> Option<(usize, bool)> {
    let (bytes, full) = (socket.send_queue(), !socket.can_send());
    (bytes > 0 || full).then_some((bytes, full))
}

/// A UDP port served by a [`DatagramHandler`], with a datagram buffer of `MAX` bytes.
#[must_use = "a service does nothing unless polled"]
pub struct UdpService<H, const MAX: usize> {
    handle: SocketHandle,
    port: u16,
    handler: H,
    buf: [u8; MAX],
    pending: Option<Pending>,
    /// While the socket's send queue holds datagrams.
    queue_watch: Option<QueueWatch>,
    stats: UdpStats,
    /// The last poll found the socket bound (or bound it): a bind error after
    /// it is logged again.
    bound: bool,
    /// The link's IP MTU, if told (an IP MTU fits 16 bits).
    link_mtu: Option<u16>,
}

impl<H: DatagramHandler, const MAX: usize> UdpService<H, MAX> {
    /// A service on `port` over the UDP socket `handle`; it binds on the first poll.
    ///
    /// Not at construction, as `TcpServer` listens: `new` is a `const fn` that
    /// sees no socket set (a service can be built in a `static`), and UDP has
    /// no handshake a late bind could break. A datagram that comes before the
    /// first poll finds the port closed (smoltcp answers ICMP port unreachable),
    /// as one a moment before the device started would, and the client's next
    /// try finds it open. Poll once after adding the socket to be bound before
    /// any traffic.
    pub const fn new(handle: SocketHandle, port: u16, handler: H) -> Self {
        Self {
            handle,
            port,
            handler,
            buf: [0; MAX],
            pending: None,
            queue_watch: None,
            stats: UdpStats {
                datagrams_in: 0,
                bytes_in: 0,
                datagrams_out: 0,
                bytes_out: 0,
                oversize: 0,
                send_full: 0,
                send_errors: 0,
                stuck_flushes: 0,
                unread_dropped: 0,
                missing_socket: 0,
                bind_errors: 0,
            },
            bound: false,
            link_mtu: None,
        }
    }

    /// The same, told the IP MTU of the link its datagrams go over (the
    /// interface's device's `capabilities().ip_mtu()`): a reply longer than
    /// the link carries (`ip_mtu` less 28 bytes to an IPv4 peer, 48 to an IPv6
    /// one), which smoltcp would drop unseen, is refused here, logged and
    /// counted in [`UdpStats::send_errors`]; and a socket whose receive payload
    /// ring holds less than `ip_mtu` less 28 bytes is warned of at bind (a
    /// longer datagram would be dropped by smoltcp before the service could
    /// count it oversize).
    pub const fn with_link_mtu(mut self, ip_mtu: u16) -> Self {
        self.link_mtu = Some(ip_mtu);
        self
    }

    /// The counters so far.
    pub const fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// The port served.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The handler.
    pub const fn handler(&self) -> &H {
        &self.handler
    }

    /// Sends the pending reply; `false` if it must wait for space.
    fn flush(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        let Some(Pending { len, to, waited }) = self.pending else {
            return true;
        };
        let reply = self.buf.get(..len).unwrap_or(&[]);
        let v4 = matches!(to.addr, smoltcp::wire::IpAddress::Ipv4(_));
        if let Some(carried) = self.link_mtu.map(|mtu| link_payload(mtu, v4))
            && len > carried
        {
            crate::macros::net_warn!(
                "udp/{}: reply of {} bytes to {} not sent: the link carries {}",
                self.port,
                len,
                to,
                carried
            );
            self.stats.send_errors = self.stats.send_errors.saturating_add(1);
            self.pending = None;
            return true;
        }
        match socket.send_slice(reply, to) {
            Ok(()) => {
                self.stats.datagrams_out = self.stats.datagrams_out.saturating_add(1);
                self.stats.bytes_out = self.stats.bytes_out.saturating_add(len as u64);
            }
            Err(udp::SendError::BufferFull) if len <= socket.payload_send_capacity() => {
                if !waited {
                    self.stats.send_full = self.stats.send_full.saturating_add(1);
                    self.pending = Some(Pending {
                        len,
                        to,
                        waited: true,
                    });
                }
                return false;
            }
            Err(e) => {
                crate::macros::net_warn!("udp/{}: reply to {} not sent: {}", self.port, to, e);
                self.stats.send_errors = self.stats.send_errors.saturating_add(1);
            }
        }
        self.pending = None;
        true
    }
}

impl<H: DatagramHandler, const MAX: usize> UdpService<H, MAX> {
    /// Empties the socket's send queue if it has sent nothing for `STUCK_AFTER`.
    fn unstick(&mut self, socket: &mut udp::Socket<'_>, now: Instant) {
        let watch = queued(socket).map(|(bytes, full)| {
            let since = match self.queue_watch {
                // Only the stack touches the queue between polls: fewer bytes
                // than the last poll left, or a slot freed, means it sent some.
                Some(left) if bytes >= left.bytes && (full || !left.full) => left.since,
                _ => now,
            };
            QueueWatch { bytes, full, since }
        });
        if watch.is_some_and(|watch| now >= later(watch.since, STUCK_AFTER)) {
            crate::macros::net_warn!(
                "udp/{}: replies stuck for {}, dropped",
                self.port,
                STUCK_AFTER
            );
            // smoltcp cannot drop one queued datagram: closing drops them all,
            // and the datagrams waiting to be read with them, counted first.
            while socket.recv().is_ok() {
                self.stats.unread_dropped = self.stats.unread_dropped.saturating_add(1);
            }
            socket.close();
            self.stats.stuck_flushes = self.stats.stuck_flushes.saturating_add(1);
            self.queue_watch = None;
        } else {
            self.queue_watch = watch;
        }
    }
}

impl<H: DatagramHandler, const MAX: usize> Service for UdpService<H, MAX> {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(socket) = super::pump::socket_mut::<udp::Socket>(sockets, self.handle) else {
            // A foreign or removed handle: counted, never a panic.
            self.stats.missing_socket = self.stats.missing_socket.saturating_add(1);
            return;
        };
        self.unstick(socket, now);
        if !socket.is_open()
            && let Err(e) = socket.bind(self.port)
        {
            if self.bound || self.stats.bind_errors == 0 {
                crate::macros::net_warn!("udp/{}: cannot bind: {}", self.port, e);
            }
            self.stats.bind_errors = self.stats.bind_errors.saturating_add(1);
            self.bound = false;
            return;
        }
        if !self.bound
            && let Some(carried) = self.link_mtu.map(|mtu| link_payload(mtu, true))
            && socket.payload_recv_capacity() < carried
        {
            crate::macros::net_warn!(
                "udp/{}: the socket's receive ring ({} B) cannot hold a datagram \
                 as long as the link carries ({} B): longer ones go uncounted",
                self.port,
                socket.payload_recv_capacity(),
                carried
            );
        }
        self.bound = true;
        while self.flush(socket) {
            let (len, from) = match socket.recv_slice(&mut self.buf) {
                Ok((len, meta)) => (len, meta.endpoint),
                Err(udp::RecvError::Truncated) => {
                    // smoltcp dropped it: it does not fit our buffer. Count it.
                    self.stats.oversize = self.stats.oversize.saturating_add(1);
                    crate::macros::net_warn!(
                        "udp/{}: datagram over {} bytes dropped",
                        self.port,
                        MAX
                    );
                    continue;
                }
                Err(udp::RecvError::Exhausted) => break,
            };
            self.stats.datagrams_in = self.stats.datagrams_in.saturating_add(1);
            self.stats.bytes_in = self.stats.bytes_in.saturating_add(len as u64);
            self.pending = match self.handler.on_datagram(&mut self.buf, len, from) {
                Some(reply) if reply > MAX => {
                    crate::macros::net_warn!(
                        "udp/{}: reply to {} not sent: {} bytes claimed, the buffer holds {}",
                        self.port,
                        from,
                        reply,
                        MAX
                    );
                    self.stats.send_errors = self.stats.send_errors.saturating_add(1);
                    None
                }
                reply => reply.map(|len| Pending {
                    len,
                    to: from,
                    waited: false,
                }),
            };
        }
        // What this poll leaves queued: the next poll sees whether the stack sent any.
        self.queue_watch = queued(socket).map(|(bytes, full)| QueueWatch {
            bytes,
            full,
            since: self.queue_watch.map_or(now, |watch| watch.since),
        });
    }

    fn poll_at(&self, _sockets: &SocketSet<'_>) -> Option<Instant> {
        self.queue_watch
            .map(|watch| later(watch.since, STUCK_AFTER))
    }
}

/// UDP echo, the primer's `recvfrom(1024)` + `sendto(data, addr)`: every datagram
/// goes back to its sender whole, boundaries kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpEcho;

impl DatagramHandler for UdpEcho {
    fn on_datagram(&mut self, _buf: &mut [u8], len: usize, _from: IpEndpoint) -> Option<usize> {
        Some(len)
    }
}
