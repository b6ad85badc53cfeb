//! What the examples share: the simulated link built from command-line numbers,
//! sockets with heap buffers (the examples run on a PC; firmware would use statics),
//! an optional packet capture file, a shared trace of the buffers and its
//! pictures (`svg`), and a transfer's progress bar.
//!
//! Each example uses its own subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod svg;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{
    BinaryBytes, HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState,
    ProgressStyle,
};

use smolsock::runner::sim::{FaultConfig, SimNet};
use smolsock::trace::{CaptureFailure, PcapFile, Record, SegmentCapture, TraceSink};
use smoltcp::phy::PcapSink;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};

/// The network every example runs on: the in-process link with an optional capture.
pub type Net<'s> = SimNet<'s, 64, Capture>;

/// The network with a trace: segments are read off the link's frames into the
/// trace (when there is one) and the frames go on to the capture.
pub type TracedNet<'s> = SimNet<'s, 64, SegmentCapture<Option<SharedTrace>, Capture>>;

/// One trace that the link and the applications on both hosts record into, in
/// the order things happen (one thread, one virtual clock).
#[derive(Clone, Debug, Default)]
pub struct SharedTrace(Rc<RefCell<Vec<Record>>>);

impl SharedTrace {
    /// Takes the records so far, leaving the trace empty.
    pub fn take(&self) -> Vec<Record> {
        self.0
            .try_borrow_mut()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.0.try_borrow().map_or(0, |r| r.len())
    }

    /// A copy of the records from index `from` on, leaving them in place.
    pub fn records_from(&self, from: usize) -> Vec<Record> {
        self.0
            .try_borrow()
            .map(|r| r.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }
}

impl TraceSink for SharedTrace {
    fn record(&mut self, record: Record) {
        // Nothing else holds the records while the run goes on; were they held,
        // the record would be dropped, not a panic.
        if let Ok(mut records) = self.0.try_borrow_mut() {
            records.push(record);
        }
    }
}

/// Where the link's frames go: a pcap file, or nowhere.
///
/// One type for both cases keeps the examples free of generics. A write that
/// fails (a full disk) stops the capture, and [`Capture::failure`] tells it.
pub struct Capture(Option<PcapFile<BufWriter<File>>>);

impl Capture {
    /// No capture.
    pub const fn none() -> Self {
        Self(None)
    }

    /// A capture into a new file at `path` (`None`: no capture).
    pub fn create(path: Option<&Path>) -> io::Result<Self> {
        Ok(Self(match path {
            Some(path) => Some(PcapFile::new(BufWriter::new(File::create(path)?))),
            None => None,
        }))
    }

    /// Whether frames are being written anywhere.
    pub const fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Where the first failed write of the file will be found, after the
    /// capture has moved into the net.
    pub fn failure(&self) -> CaptureFailure {
        self.0.as_ref().map(PcapFile::failure).unwrap_or_default()
    }
}

impl PcapSink for Capture {
    fn write(&mut self, data: &[u8]) {
        if let Some(file) = &mut self.0 {
            file.write(data);
        }
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.0 {
            file.flush();
        }
    }
}

/// The fault model of both directions: a one-way `delay` and `loss_per_mille`
/// frames lost in a thousand, otherwise a clean 1500-byte-MTU Ethernet.
pub const fn link(delay: Duration, loss_per_mille: u16) -> FaultConfig {
    FaultConfig::CLEAN
        .with_delay(delay)
        .with_loss(loss_per_mille)
}

/// A TCP socket with `rx` and `tx` bytes of buffer.
pub fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    )
}

/// A UDP socket holding up to `packets` datagrams and `bytes` of payload each way.
pub fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]);
    udp::Socket::new(buffer(), buffer())
}

/// `later - earlier` as a duration (zero if `later` is not later).
pub fn since(earlier: Instant, later: Instant) -> Duration {
    Duration::from_micros(
        u64::try_from(later.total_micros().saturating_sub(earlier.total_micros())).unwrap_or(0),
    )
}

/// A duration as milliseconds with one decimal, e.g. `61.0 ms`.
pub fn millis(d: Duration) -> String {
    let micros = d.total_micros();
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}

/// Whole percent, truncated as the primer does: `int(done / total * 100)`.
pub fn whole_percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        u64::try_from(u128::from(done) * 100 / u128::from(total)).unwrap_or(u64::MAX)
    }
}

/// Cells of the plain one-line bar that [`TransferBar::finish`] returns for a log
/// (the live bar fills the terminal's width).
const BAR_CELLS: u64 = 30;

/// A file transfer's progress bar on the simulated link.
///
/// It looks like the bar of `examples/transfer` (the Linux client): `put NAME`,
/// whole percent truncated as the primer does, `[=====>    ]`, bytes done of the
/// total, throughput and ETA. Throughput and ETA are in *virtual* time (the link's
/// clock, which [`clock`](Self::clock) passes in), since real time only measures
/// how fast the simulation runs.
///
/// The bar is drawn on stdout only when `draw` is set (stdout is a terminal), from
/// the first report on (before it the total is not known), and cleared when done;
/// [`finish`](Self::finish) then returns the same bar as one plain line, which is
/// all a log or a pipe gets.
pub struct TransferBar {
    bar: ProgressBar,
    /// Whether to draw, and whether the bar is drawn yet.
    draw: bool,
    shown: Cell<bool>,
    prefix: String,
    started: smoltcp::time::Instant,
    /// Virtual microseconds since `started`, read by the bar's rate and ETA keys.
    elapsed: Arc<AtomicU64>,
    /// The last `(done, total)` reported.
    last: Cell<(u64, u64)>,
    /// Reports so far, and whether `done` never went back nor passed `total`.
    reports: Cell<u64>,
    monotonic: Cell<bool>,
}

impl TransferBar {
    /// A bar for `action` (`put`, `get`) of `name`, starting at virtual time `now`.
    pub fn new(action: &str, name: &str, now: smoltcp::time::Instant, draw: bool) -> Self {
        let elapsed = Arc::new(AtomicU64::new(0));
        let (rate_clock, eta_clock) = (elapsed.clone(), elapsed.clone());
        let style = ProgressStyle::with_template(
            "{prefix} {whole_percent:>3}% [{wide_bar}] {bytes}/{total_bytes} {virtual_rate} ETA {virtual_eta}",
        )
        .expect("a valid template")
        .with_key(
            "whole_percent",
            |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}", whole_percent(state.pos(), state.len().unwrap_or(0)));
            },
        )
        .with_key(
            "virtual_rate",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let micros = rate_clock.load(Ordering::Relaxed);
                let _ = write!(w, "{}/s", BinaryBytes(per_second(state.pos(), micros)));
            },
        )
        .with_key(
            "virtual_eta",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let micros = eta_clock.load(Ordering::Relaxed);
                let rest = state.len().unwrap_or(0).saturating_sub(state.pos());
                let eta = match per_second(state.pos(), micros) {
                    0 => std::time::Duration::ZERO,
                    rate => std::time::Duration::from_secs_f64(rest as f64 / rate as f64),
                };
                let _ = write!(w, "{:#}", HumanDuration(eta));
            },
        )
        .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style);
        let prefix = format!("{action} {name}");
        bar.set_prefix(prefix.clone());
        Self {
            bar,
            draw,
            shown: Cell::new(false),
            prefix,
            started: now,
            elapsed,
            last: Cell::new((0, 0)),
            reports: Cell::new(0),
            monotonic: Cell::new(true),
        }
    }

    /// The transfer's progress callback: `done` of `total` bytes.
    pub fn update(&self, done: u64, total: u64) {
        let (before, _) = self.last.get();
        if done < before || done > total {
            self.monotonic.set(false);
        }
        self.last.set((done, total));
        self.reports.set(self.reports.get().saturating_add(1));
        self.bar.set_length(total);
        self.bar.set_position(done);
        if self.draw && !self.shown.replace(true) {
            self.bar.set_draw_target(ProgressDrawTarget::stdout());
        }
    }

    /// Tells the bar the virtual time, for its rate and ETA.
    pub fn clock(&self, now: smoltcp::time::Instant) {
        let micros = since(self.started, now).total_micros();
        self.elapsed.store(micros, Ordering::Relaxed);
    }

    /// How many times the transfer reported progress.
    pub fn reports(&self) -> u64 {
        self.reports.get()
    }

    /// Whether the reports never went back and never passed the total, and the
    /// last one was the whole file.
    pub fn complete_and_monotonic(&self) -> bool {
        let (done, total) = self.last.get();
        self.monotonic.get() && self.reports.get() > 0 && done == total
    }

    /// Clears the drawn bar and returns its final state as one line.
    pub fn finish(&self) -> String {
        self.bar.finish_and_clear();
        let (done, total) = self.last.get();
        let percent = whole_percent(done, total);
        let full = usize::try_from(whole_cells(done, total)).unwrap_or(0);
        let cells = usize::try_from(BAR_CELLS).unwrap_or(0);
        let mut bar = "=".repeat(full);
        if full < cells {
            bar.push('>');
            bar.push_str(&" ".repeat(cells - full - 1));
        }
        let micros = self.elapsed.load(Ordering::Relaxed);
        format!(
            "{} {percent:>3}% [{bar}] {}/{} {}/s in {} of virtual time",
            self.prefix,
            HumanBytes(done),
            HumanBytes(total),
            BinaryBytes(per_second(done, micros)),
            millis(smoltcp::time::Duration::from_micros(micros))
        )
    }
}

/// Filled cells of the bar for `done` of `total`.
fn whole_cells(done: u64, total: u64) -> u64 {
    match total {
        0 => BAR_CELLS,
        _ => u64::try_from(u128::from(done.min(total)) * u128::from(BAR_CELLS) / u128::from(total))
            .unwrap_or(BAR_CELLS),
    }
}

/// Bytes per second for `bytes` in `micros` (0 before any time has passed).
fn per_second(bytes: u64, micros: u64) -> u64 {
    match micros {
        0 => 0,
        _ => u64::try_from(u128::from(bytes) * 1_000_000 / u128::from(micros)).unwrap_or(u64::MAX),
    }
}
