//! The counters the status page shows, shared by every task.
//!
//! Each task writes its own part (its slot's session counters, its pool's open
//! connections) through [`update`], and the HTTP tasks read a copy through
//! [`render`]; a `critical_section` mutex around a `RefCell` is all the sharing
//! needs on one core. The driver's counters come from its `State`, kept by the
//! driver itself.

use core::cell::RefCell;
use core::fmt;

use critical_section::Mutex;
use smolsock::http::HttpStats;
use smolsock::transfer::TransferStats;

use crate::services::{
    ECHO_POOL, ECHO_PORT, FRAMED_POOL, FRAMED_PORT, HTTP_POOL, HTTP_PORT, TRANSFER_POOL,
    TRANSFER_PORT,
};

/// The TCP services, to name their pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Echo,
    Framed,
    Http,
    Transfer,
}

impl Service {
    /// Its name on the live page.
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Framed => "framed echo",
            Self::Http => "http",
            Self::Transfer => "transfer",
        }
    }
}

/// One pool's connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pool {
    pub slots: usize,
    pub open: usize,
    pub closed: u64,
    pub aborted: u64,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} closed, {} reset; {} of {} open",
            self.closed, self.aborted, self.open, self.slots
        )
    }
}

/// The UDP echo's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Udp {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub oversize: u64,
    pub send_errors: u64,
    /// Datagrams that waited to be read when a stuck send queue was emptied.
    pub unread_dropped: u64,
}

/// Every service's counters.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    pub pools: [Pool; 4],
    pub echo_bytes: [u64; ECHO_POOL],
    pub udp: Udp,
    /// Frames echoed and broken streams, per slot.
    pub framed: [(u64, u64); FRAMED_POOL],
    pub http: [HttpStats; HTTP_POOL],
    pub transfer: TransferStats,
}

impl Counters {
    pub const ZERO: Self = Self {
        pools: [Pool {
            slots: 0,
            open: 0,
            closed: 0,
            aborted: 0,
        }; 4],
        echo_bytes: [0; ECHO_POOL],
        udp: Udp {
            datagrams_in: 0,
            bytes_in: 0,
            datagrams_out: 0,
            bytes_out: 0,
            oversize: 0,
            send_errors: 0,
            unread_dropped: 0,
        },
        framed: [(0, 0); FRAMED_POOL],
        http: [HttpStats::ZERO; HTTP_POOL],
        transfer: TransferStats::ZERO,
    };

    /// The pool of `service`.
    pub fn pool_mut(&mut self, service: Service) -> &mut Pool {
        let [echo, framed, http, transfer] = &mut self.pools;
        match service {
            Service::Echo => echo,
            Service::Framed => framed,
            Service::Http => http,
            Service::Transfer => transfer,
        }
    }
}

static LIVE: Mutex<RefCell<Counters>> = Mutex::new(RefCell::new(Counters::ZERO));

/// Changes the counters.
pub fn update(f: impl FnOnce(&mut Counters)) {
    critical_section::with(|cs| f(&mut LIVE.borrow_ref_mut(cs)));
}

/// Records the pools' sizes: echo, framed, HTTP, transfer.
pub fn set_slots(slots: [usize; 4]) {
    update(|c| {
        for (pool, n) in c.pools.iter_mut().zip(slots) {
            pool.slots = n;
        }
    });
}

/// The counters now.
pub fn snapshot() -> Counters {
    critical_section::with(|cs| *LIVE.borrow_ref(cs))
}

/// The title of the status page.
pub const TITLE: &str = "smolsock embassy firmware";

/// The most bytes the counters' text takes, every counter at its largest (a
/// `u64` of 20 digits): what the status pages leave room for. The self-test
/// checks it.
#[cfg(any(feature = "selftest", feature = "live"))]
pub const STATUS_WIDEST: usize = 1984;

/// The status text of the HTTP page: the counters now.
pub fn render(out: &mut dyn fmt::Write) -> fmt::Result {
    let uptime = embassy_time::Instant::now().as_secs();
    write_status(&snapshot(), &crate::ETHERNET.stats(), uptime, out)
}

/// The status text of `c`, the link's counters `l` and `uptime` seconds, and
/// the stack's high-water mark.
pub fn write_status(
    c: &Counters,
    l: &lan9118::Stats,
    uptime: u64,
    out: &mut dyn fmt::Write,
) -> fmt::Result {
    let [echo, framed, http, transfer] = c.pools;
    let echoed = c.echo_bytes.iter().fold(0u64, |a, b| a.saturating_add(*b));
    writeln!(
        out,
        "tcp/{ECHO_PORT}     echo         {echo}; {echoed} B echoed"
    )?;
    let u = &c.udp;
    writeln!(
        out,
        "udp/{ECHO_PORT}     udp echo     {} datagrams ({} B) in, {} ({} B) out; \
         {} oversize, {} send errors, {} unread dropped",
        u.datagrams_in,
        u.bytes_in,
        u.datagrams_out,
        u.bytes_out,
        u.oversize,
        u.send_errors,
        u.unread_dropped
    )?;
    let (frames, broken) = c.framed.iter().fold((0u64, 0u64), |(f, b), (f2, b2)| {
        (f.saturating_add(*f2), b.saturating_add(*b2))
    });
    writeln!(
        out,
        "tcp/{FRAMED_PORT}  framed echo  {framed}; {frames} frames echoed, {broken} broken streams"
    )?;
    let mut h = HttpStats::default();
    for slot in &c.http {
        h.accumulate(slot);
    }
    writeln!(
        out,
        "tcp/{HTTP_PORT}    http         {http}; {} requests: {} ok, {} client errors, \
         {} server errors, {} incomplete",
        h.requests, h.ok, h.client_errors, h.server_errors, h.incomplete
    )?;
    writeln!(
        out,
        "tcp/{TRANSFER_PORT}  transfer     {transfer}; {}",
        c.transfer
    )?;
    writeln!(
        out,
        "link      lan9118      {} frames in, {} out; rx errors {}, too long {}, \
         dropped {}; tx errors {}, dropped {}",
        l.rx_frames,
        l.tx_frames,
        l.rx_errors,
        l.rx_too_long,
        l.rx_dropped,
        l.tx_errors,
        l.tx_dropped
    )?;
    writeln!(out, "uptime    {uptime} s")?;
    let (used, size) = crate::stack::high_water();
    writeln!(out, "stack     {used} B of {size} B used at most")
}

/// Logs where the RAM goes that `size_of` can see (the task pools, which hold
/// the services' buffers and sessions, are listed by `run.sh --build-only`).
pub fn log_ram_use<const SOCKETS: usize>() {
    use core::mem::size_of;
    log::info!(
        "ram: driver (2 frame buffers) {} B",
        size_of::<lan9118::Lan9118<lan9118::Mmio>>()
    );
    log::info!(
        "ram: embassy-net resources ({SOCKETS} sockets, interface) {} B",
        size_of::<embassy_net::StackResources<SOCKETS>>()
    );
    log::info!(
        "ram: file store {} B in .store (outside the budget)",
        size_of::<
            smolsock::transfer::SharedStore<
                crate::services::Store,
                [smolsock::transfer::UploadLease; TRANSFER_POOL],
            >,
        >()
    );
}
