//! What a trace costs: one TCP transfer on smoltcp's loopback device (Ethernet,
//! 1500-byte MTU), run four ways in turn, and the rate of each.
//!
//! ```sh
//! cargo run --release --example trace_cost               # 64 MiB, 5 rounds
//! cargo run --release --example trace_cost -- --mib 16 --rounds 3
//! ```
//!
//! - *no trace*: the device alone, as an application without tracing has it;
//! - *hooks into ()*: the device alone, with a buffer sample of both sockets after
//!   every poll and a record of every send and read, all into `()`: what the
//!   hooks cost when the trace is off (nothing: `()` says it is off, and no
//!   record is made);
//! - *capture into ()*: the same, and the device behind smoltcp's `PcapWriter`
//!   with a `SegmentCapture<()>`: the capture layer itself (on the simulated link
//!   a capture is always there, `NoCapture` by default, so there this costs
//!   nothing more);
//! - *trace on*: the same into two `TraceRing<4096>` (segments; samples, sends
//!   and reads), dropping the oldest: every segment parsed, every record kept
//!   until the ring wraps.
//!
//! The sender and receiver only advance their socket rings, as smoltcp's loopback
//! benchmark does, so the stack and the trace are all there is to measure. The
//! table shows the fastest round of each (wall time; the least disturbed by other
//! work on the machine) and its ratio to *no trace*.

use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use clap::Parser;
use smolsock::trace::{self, Conn, Event, Record, SegmentCapture, TraceRing, TraceSink, WhenFull};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Loopback, Medium, PcapMode, PcapWriter};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

const PORT: u16 = 9000;
const LOCAL_PORT: u16 = 49152;
const SOCKET_BUFFER: usize = 64 * 1024;
/// Records each ring holds.
const RING: usize = 4096;

#[derive(Parser, Debug)]
#[command(about = "The cost of smolsock's trace on an in-process TCP transfer")]
struct Options {
    /// MiB moved per run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    mib: u64,
    /// Rounds of the four runs; the fastest of each counts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
}

/// smoltcp's loopback with an Ethernet MTU, so segments have their usual size.
struct Ethernet(Loopback);

impl Device for Ethernet {
    type RxToken<'a> = <Loopback as Device>::RxToken<'a>;
    type TxToken<'a> = <Loopback as Device>::TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.0.receive(now)
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.0.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.0.capabilities();
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Run {
    elapsed: Duration,
    /// Records kept and dropped by the rings (zero without).
    kept: usize,
    dropped: u64,
}

/// Moves `total` bytes from one socket to the other over `device`, recording
/// samples, sends and reads into `app` when `sample` is set.
fn transfer<D: Device>(
    device: &mut D,
    app: &mut impl TraceSink,
    sample: bool,
    total: u64,
) -> Result<Duration, String> {
    let config = Config::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
    let mut iface = Interface::new(config, device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8));
    });
    let socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        )
    };
    let mut sockets = SocketSet::new(Vec::with_capacity(2));
    let server: SocketHandle = sockets.add(socket());
    let client: SocketHandle = sockets.add(socket());
    sockets
        .get_mut::<tcp::Socket>(server)
        .listen(PORT)
        .map_err(|e| e.to_string())?;
    sockets
        .get_mut::<tcp::Socket>(client)
        .connect(
            iface.context(),
            (IpAddress::v4(127, 0, 0, 1), PORT),
            LOCAL_PORT,
        )
        .map_err(|e| e.to_string())?;
    let (to_server, to_client) = (Conn::new(LOCAL_PORT, PORT), Conn::new(PORT, LOCAL_PORT));
    let bytes = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let started = WallClock::now();
    let mut received = 0u64;
    // Every poll moves data once the handshake is done; the bound only stops a
    // run that would not.
    for _ in 0..(total / 64).max(100_000) {
        if received >= total {
            return Ok(started.elapsed());
        }
        let now = Instant::now();
        iface.poll(now, device, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(server);
        while socket.can_recv() {
            let n = socket
                .recv(|buffer| (buffer.len(), buffer.len()))
                .map_err(|e| e.to_string())?;
            received += n as u64;
            if sample {
                let read = Event::Read {
                    conn: to_client,
                    bytes: bytes(n),
                };
                app.record(Record::new(now.into(), read));
            }
        }
        if sample {
            trace::sample(socket, now, app);
        }
        let socket = sockets.get_mut::<tcp::Socket>(client);
        while socket.can_send() {
            let n = socket
                .send(|buffer| (buffer.len(), buffer.len()))
                .map_err(|e| e.to_string())?;
            if sample {
                let send = Event::Send {
                    conn: to_server,
                    bytes: bytes(n),
                };
                app.record(Record::new(now.into(), send));
            }
        }
        if sample {
            trace::sample(socket, now, app);
        }
    }
    Err(format!("only {received} of {total} bytes moved"))
}

fn no_trace(total: u64) -> Result<Run, String> {
    let mut device = Ethernet(Loopback::new(Medium::Ethernet));
    let elapsed = transfer(&mut device, &mut (), false, total)?;
    Ok(Run {
        elapsed,
        kept: 0,
        dropped: 0,
    })
}

fn hooks_off(total: u64) -> Result<Run, String> {
    let mut device = Ethernet(Loopback::new(Medium::Ethernet));
    let elapsed = transfer(&mut device, &mut (), true, total)?;
    Ok(Run {
        elapsed,
        kept: 0,
        dropped: 0,
    })
}

fn trace_off(total: u64) -> Result<Run, String> {
    let lower = Ethernet(Loopback::new(Medium::Ethernet));
    let mut device = PcapWriter::new(lower, SegmentCapture::new(()), PcapMode::TxOnly);
    let elapsed = transfer(&mut device, &mut (), true, total)?;
    Ok(Run {
        elapsed,
        kept: 0,
        dropped: 0,
    })
}

fn trace_on(total: u64) -> Result<Run, String> {
    let lower = Ethernet(Loopback::new(Medium::Ethernet));
    let mut segments: TraceRing<RING> = TraceRing::new(WhenFull::DropOldest);
    let mut app: TraceRing<RING> = TraceRing::new(WhenFull::DropOldest);
    let capture = SegmentCapture::new(&mut segments);
    let mut device = PcapWriter::new(lower, capture, PcapMode::TxOnly);
    let elapsed = transfer(&mut device, &mut app, true, total)?;
    drop(device);
    Ok(Run {
        elapsed,
        kept: app.len() + segments.len(),
        dropped: app.dropped() + segments.dropped(),
    })
}

fn rate(total: u64, elapsed: Duration) -> f64 {
    total as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

fn measure(options: &Options) -> Result<String, String> {
    let total = options.mib * 1024 * 1024;
    type Path = fn(u64) -> Result<Run, String>;
    let paths: [(&str, Path); 4] = [
        ("no trace", no_trace),
        ("hooks into ()", hooks_off),
        ("capture into ()", trace_off),
        ("trace on, rings", trace_on),
    ];
    let mut best: [Option<Run>; 4] = [None; 4];
    for _ in 0..options.rounds {
        for (slot, (_, path)) in best.iter_mut().zip(paths) {
            let run = path(total)?;
            if slot.is_none_or(|b| run.elapsed < b.elapsed) {
                *slot = Some(run);
            }
        }
    }
    let base = best[0].map_or(Duration::ZERO, |r| r.elapsed);
    let mut out = format!(
        "{} MiB over smoltcp's loopback (MTU 1500, {} KiB socket buffers), fastest of {} rounds:\n\
         {:<16} | {:>9} | {:>13} | {}\n",
        options.mib,
        SOCKET_BUFFER / 1024,
        options.rounds,
        "path",
        "MiB/s",
        "time / none",
        "records"
    );
    for ((name, _), run) in paths.iter().zip(best) {
        let Some(run) = run else { continue };
        let records = if run.kept == 0 {
            "-".to_string()
        } else {
            format!(
                "{} kept, {} dropped (segments, samples, sends, reads)",
                run.kept, run.dropped
            )
        };
        out.push_str(&format!(
            "{name:<16} | {:>9.0} | {:>12.2}x | {records}\n",
            rate(total, run.elapsed),
            run.elapsed.as_secs_f64() / base.as_secs_f64().max(1e-9)
        ));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let options = Options::parse();
    match measure(&options) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trace_cost failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_moves_the_bytes_and_the_trace_sees_every_segment() {
        let total = 4 * 1024 * 1024;
        no_trace(total).unwrap();
        hooks_off(total).unwrap();
        trace_off(total).unwrap();
        let on = trace_on(total).unwrap();
        // 4 MiB in 1460-byte segments, and their ACKs.
        assert!(on.kept as u64 + on.dropped > total / 1460, "{on:?}");
    }

    #[test]
    fn the_table_has_a_row_per_path() {
        let table = measure(&Options { mib: 1, rounds: 1 }).unwrap();
        for name in [
            "no trace",
            "hooks into ()",
            "capture into ()",
            "trace on, rings",
        ] {
            assert!(table.contains(name), "{table}");
        }
    }
}
