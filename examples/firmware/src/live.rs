//! The HTTP site on tcp/80: by default `StatusSite`, the counters; with
//! `--features live`, `LiveSite`, the same counters under a table of every
//! open TCP connection with its socket buffers drawn as bars, the page
//! reloading itself every 2 s. `/stats` is the counters as plain text in both.
//! The rows are read from the sockets after every poll ([`Slots::publish`]).
//!
//! The live page is a feature because it does not fit the default budget: it
//! takes about 4.4 KB more flash (the page's markup and its rendering), and the
//! default build has a few bytes left (README).

#[cfg(not(feature = "live"))]
use core::fmt;

#[cfg(feature = "live")]
pub use smolsock::http::LiveSite as Site;
#[cfg(not(feature = "live"))]
pub use smolsock::http::StatusSite as Site;
#[cfg(not(feature = "live"))]
use smoltcp::iface::{SocketHandle, SocketSet};

/// The page buffer: `StatusSite`'s page around the counters (about 210 B with
/// the title) and the counters with every one at its largest
/// ([`STATUS_WIDEST`](crate::services::STATUS_WIDEST); the self-test checks
/// that the page fits).
#[cfg(not(feature = "live"))]
pub const PAGE_MAX: usize = 3712;

/// The site called `title`, whose counters `status` writes.
#[cfg(not(feature = "live"))]
pub fn site(
    title: &'static str,
    status: &'static dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
) -> Site<'static> {
    Site::new(title, status)
}

/// Nothing to note without the live page.
#[cfg(not(feature = "live"))]
#[derive(Debug)]
pub struct Slots;

#[cfg(not(feature = "live"))]
impl Slots {
    /// Nothing.
    pub const fn new() -> Self {
        Self
    }

    /// Nothing to note.
    #[allow(clippy::unused_self)]
    #[inline(always)]
    pub fn note(&mut self, _service: &'static str, _handles: &[SocketHandle]) {}

    /// Nothing to publish.
    #[allow(clippy::unused_self)]
    #[inline(always)]
    pub fn publish(&self, _sockets: &SocketSet<'_>) {}
}

#[cfg(feature = "live")]
pub use with_live::*;

#[cfg(feature = "live")]
use smoltcp::wire::{IpAddress, IpEndpoint};

#[cfg(feature = "live")]
#[path = "peer.rs"]
mod peer;

#[cfg(feature = "live")]
mod with_live {
    use core::cell::Cell;
    use core::fmt;

    use cortex_m::interrupt::Mutex;
    use smolsock::http::Bars;
    use smoltcp::iface::{SocketHandle, SocketSet};
    use smoltcp::socket::tcp;

    use super::peer::Peer;
    use super::{IpEndpoint, Site};
    use crate::services::{STATUS_WIDEST, TCP_SLOTS};

    /// How often the live page reloads itself, in seconds.
    pub const REFRESH_SECS: u16 = 2;

    /// The page buffer: the page's head, style and table (about 690 B,
    /// `LiveSite::PAGE_OVERHEAD` at most), the title twice, a row for every TCP
    /// slot ([`ROW_MAX`] each) and the counters with every one at its largest
    /// ([`STATUS_WIDEST`]; `/stats` shows them, 1,419 B at boot). A page that
    /// does not fit is answered with 500.
    pub const PAGE_MAX: usize = 6144;

    /// The most bytes a row takes here (`Bars::ROW_MAX` allows any name and
    /// buffer size): the services' names are 11 bytes at most, a peer 47 (an
    /// IPv6 address and port), a buffer 2,048 bytes.
    pub const ROW_MAX: usize = 240;

    /// What the page leaves the counters when every slot has a connection,
    /// the title counted twice at up to 32 bytes: room for them with every
    /// counter at its largest.
    const COUNTERS_ROOM: usize = PAGE_MAX - Site::PAGE_OVERHEAD - 2 * 32 - TCP_SLOTS * ROW_MAX;
    const _: () = assert!(
        COUNTERS_ROOM >= STATUS_WIDEST,
        "with every slot in use, the live page leaves the counters too little room"
    );

    /// One open connection: its service, its peer and how full its socket
    /// buffers are (bytes held, capacity), as of the last poll.
    #[derive(Clone, Copy, Debug)]
    struct Fill {
        service: &'static str,
        peer: IpEndpoint,
        receive: (u16, u16),
        send: (u16, u16),
    }

    /// Every TCP slot's connection as of the last poll, for the page.
    static CONNECTIONS: Mutex<Cell<[Option<Fill>; TCP_SLOTS]>> =
        Mutex::new(Cell::new([None; TCP_SLOTS]));

    /// The site called `title`, whose counters `status` writes.
    pub fn site(
        title: &'static str,
        status: &'static dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
    ) -> Site<'static> {
        Site::new(title, status, &render_connections)
            .with_refresh(REFRESH_SECS)
            .with_max_rows(TCP_SLOTS)
    }

    /// A row for each TCP slot with a connection, as of the last poll.
    fn render_connections(bars: &mut Bars<'_>) -> fmt::Result {
        let slots = cortex_m::interrupt::free(|cs| CONNECTIONS.borrow(cs).get());
        let wide = |(held, capacity): (u16, u16)| (usize::from(held), usize::from(capacity));
        for f in slots.iter().flatten() {
            bars.connection(f.service, &Peer(f.peer), wide(f.receive), wide(f.send))?;
        }
        Ok(())
    }

    /// Every TCP slot's socket and its service's name.
    #[derive(Debug)]
    pub struct Slots {
        slots: heapless::Vec<(&'static str, SocketHandle), TCP_SLOTS>,
    }

    impl Slots {
        /// No socket noted yet.
        pub const fn new() -> Self {
            Self {
                slots: heapless::Vec::new(),
            }
        }

        /// Notes the sockets of `service`'s pool.
        pub fn note(&mut self, service: &'static str, handles: &[SocketHandle]) {
            for &handle in handles {
                // TCP_SLOTS counts every pool's sockets: there is room.
                let _ = self.slots.push((service, handle));
            }
        }

        /// Publishes every open connection's buffers to the page.
        pub fn publish(&self, sockets: &SocketSet<'_>) {
            let narrow = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
            let mut fills = [None; TCP_SLOTS];
            for (fill, &(service, handle)) in fills.iter_mut().zip(&self.slots) {
                let socket = sockets.get::<tcp::Socket>(handle);
                *fill = socket.remote_endpoint().map(|peer| Fill {
                    service,
                    peer,
                    receive: (narrow(socket.recv_queue()), narrow(socket.recv_capacity())),
                    send: (narrow(socket.send_queue()), narrow(socket.send_capacity())),
                });
            }
            cortex_m::interrupt::free(|cs| CONNECTIONS.borrow(cs).set(fills));
        }
    }
}
