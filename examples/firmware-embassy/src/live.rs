//! The HTTP site on tcp/80: by default [`StatusSite`](smolsock::http::StatusSite),
//! the counters; with `--features live`, [`LiveSite`](smolsock::http::LiveSite),
//! the same counters under a table of every open TCP connection with its socket
//! buffers drawn as bars, the page reloading itself every 2 s. `/stats` is the
//! counters as plain text in both.
//!
//! A page is rendered by an HTTP task, which cannot see the other tasks'
//! sockets: each TCP task notes its connection in its [`Row`] when it accepts
//! it, after every read and write, and every second while it waits for its
//! peer to send (so the send buffer's bar follows the peer's ACKs), and clears
//! it when the connection is gone. The page shows the table as of those notes.
//! Without the feature a `Row` is empty and noting is nothing: the default
//! build is as it was.
//!
//! The live page is a feature because it does not fit the default RAM budget:
//! its 4.6 KiB page buffers alone take 4,864 B more RAM than the default
//! build's, whose stack has about 1.3 KiB to spare (README).

#[cfg(not(feature = "live"))]
use embassy_net::tcp::TcpSocket;

#[cfg(not(feature = "live"))]
use crate::status::Service;

#[cfg(not(feature = "live"))]
pub use smolsock::http::StatusSite as Site;

/// The page buffer: `StatusSite`'s page around the counters (about 220 B with
/// the title) and the counters with every one at its largest
/// ([`STATUS_WIDEST`](crate::status::STATUS_WIDEST); the self-test checks
/// that the page fits).
#[cfg(not(feature = "live"))]
pub const PAGE_MAX: usize = 2240;

/// The site called `title`, whose counters `status` writes.
#[cfg(not(feature = "live"))]
pub fn site(
    title: &'static str,
    status: &'static dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result,
) -> Site<'static> {
    Site::new(title, status)
}

/// A TCP task's row on the live page: nothing without it.
#[cfg(not(feature = "live"))]
#[derive(Clone, Copy, Debug)]
pub struct Row;

#[cfg(not(feature = "live"))]
impl Row {
    /// The row of the `index`th TCP task, which serves `service`.
    pub const fn new(_service: Service, _index: usize) -> Self {
        Self
    }

    /// Nothing to note.
    #[inline(always)]
    pub fn note(self, _socket: &TcpSocket<'_>) {}

    /// Nothing to clear.
    #[inline(always)]
    pub fn clear(self) {}
}

#[cfg(feature = "live")]
pub use with_live::*;

#[cfg(feature = "live")]
use embassy_net::{IpAddress, IpEndpoint};

#[cfg(feature = "live")]
#[path = "../../firmware/src/peer.rs"]
mod peer;

#[cfg(feature = "live")]
mod with_live {
    use core::cell::Cell;
    use core::fmt;

    use critical_section::Mutex;
    use embassy_net::tcp::TcpSocket;
    use smolsock::http::Bars;
    pub use smolsock::http::LiveSite as Site;

    use super::IpEndpoint;
    use super::peer::Peer;
    use crate::services::TCP_SOCKETS;
    use crate::status::{STATUS_WIDEST, Service};

    /// How often the page reloads itself, in seconds.
    pub const REFRESH_SECS: u16 = 2;
    /// How often a task waiting for its peer notes its connection again.
    pub const REFRESH: embassy_time::Duration = embassy_time::Duration::from_secs(1);

    /// The page buffer: the page's head, style and table (about 690 B,
    /// `LiveSite::PAGE_OVERHEAD` at most), the title twice, a row for every TCP
    /// task ([`ROW_MAX`] each) and the counters with every one at its largest
    /// ([`STATUS_WIDEST`]; `/stats` shows them). A page that does not fit is
    /// answered with 500.
    pub const PAGE_MAX: usize = 4672;

    /// The most bytes a row takes here (`Bars::ROW_MAX` allows any name and
    /// buffer size): the services' names are 11 bytes at most, a peer 47 (an
    /// IPv6 address and port), a buffer 2,048 bytes.
    pub const ROW_MAX: usize = 240;

    /// What the page leaves the counters when every task has a connection, the
    /// title counted twice at up to 32 bytes.
    const COUNTERS_ROOM: usize = PAGE_MAX - Site::PAGE_OVERHEAD - 2 * 32 - TCP_SOCKETS * ROW_MAX;
    const _: () = assert!(
        COUNTERS_ROOM >= STATUS_WIDEST,
        "with every task serving, the live page leaves the counters too little room"
    );

    /// One open connection: its service, its peer and how full its socket
    /// buffers are (bytes held, capacity), as its task last noted them.
    #[derive(Clone, Copy, Debug)]
    struct Fill {
        service: Service,
        peer: IpEndpoint,
        receive: (u16, u16),
        send: (u16, u16),
    }

    /// Every TCP task's connection.
    static CONNECTIONS: Mutex<Cell<[Option<Fill>; TCP_SOCKETS]>> =
        Mutex::new(Cell::new([None; TCP_SOCKETS]));

    /// The site called `title`, whose counters `status` writes.
    pub fn site(
        title: &'static str,
        status: &'static dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
    ) -> Site<'static> {
        Site::new(title, status, &render_connections)
            .with_refresh(REFRESH_SECS)
            .with_max_rows(TCP_SOCKETS)
    }

    /// A row for each task with a connection.
    fn render_connections(bars: &mut Bars<'_>) -> fmt::Result {
        let slots = critical_section::with(|cs| CONNECTIONS.borrow(cs).get());
        let wide = |(held, capacity): (u16, u16)| (usize::from(held), usize::from(capacity));
        for f in slots.iter().flatten() {
            bars.connection(
                f.service.name(),
                &Peer(f.peer),
                wide(f.receive),
                wide(f.send),
            )?;
        }
        Ok(())
    }

    /// A TCP task's row on the page.
    #[derive(Clone, Copy, Debug)]
    pub struct Row {
        service: Service,
        index: usize,
    }

    impl Row {
        /// The row of the `index`th TCP task, which serves `service`.
        pub const fn new(service: Service, index: usize) -> Self {
            Self { service, index }
        }

        /// Notes the connection on `socket` as it is now.
        pub fn note(self, socket: &TcpSocket<'_>) {
            let narrow = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
            let fill = socket.remote_endpoint().map(|peer| Fill {
                service: self.service,
                peer,
                receive: (narrow(socket.recv_queue()), narrow(socket.recv_capacity())),
                send: (narrow(socket.send_queue()), narrow(socket.send_capacity())),
            });
            self.set(fill);
        }

        /// The task has no connection.
        pub fn clear(self) {
            self.set(None);
        }

        fn set(self, fill: Option<Fill>) {
            critical_section::with(|cs| {
                let cell = CONNECTIONS.borrow(cs);
                let mut rows = cell.get();
                if let Some(place) = rows.get_mut(self.index) {
                    *place = fill;
                }
                cell.set(rows);
            });
        }
    }
}
