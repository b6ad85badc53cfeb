//! What a byte costs on the emulated core (self-test build only): 1 MiB echoed
//! between the two embassy-net stacks of the self-test, over the link in memory
//! (`link.rs`), once per path:
//!
//! | path | server |
//! |---|---|
//! | stack only | a task looping on its `TcpSocket`, no smolsock: `read`, `write_all` |
//! | tcp/7 raw echo | the firmware's task: `session::Echo` through `asynch::run` |
//! | tcp/9000 1 KiB frames | the firmware's task: `session::StreamingEcho` (512-byte queue) through `asynch::run` |
//! | tcp/9000 64 KiB frames | the same, frames of the largest size |
//!
//! The buffers are the services' (2 KiB + 2 KiB per socket; embassy-net 0.9
//! keeps smoltcp's 10 ms delayed ACK on every socket). The client, a
//! `TcpSocket` on the other stack, writes the stream (frame headers included,
//! for the framed paths) straight into its send buffer (`write_with`) and
//! checks every byte that comes back in its receive buffer (`read_with`), the
//! two halves joined in one task.
//!
//! The cost is emulated time, in embassy-time's microseconds (25 cycles of the
//! CMSDK timer). Under `qemu-system-arm -icount shift=0,sleep=on` the core runs
//! one instruction per nanosecond, and time spent asleep (`wfe`, nothing to
//! do until a timer) jumps ahead without instructions. The self-test's
//! executor loop (`main.rs`) adds up the time asleep ([`add_idle`]): the busy
//! time (elapsed less asleep) is the instructions, and the time asleep is what
//! the path waited on timers (a delayed ACK, a retransmission).

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Poll;

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, Instant, with_timeout};

use crate::selftest::connect;
use crate::services::{ECHO_PORT, FRAMED_PORT};
use crate::unwrap_spawn;

#[path = "../../firmware/src/cost_stream.rs"]
mod stream;
use stream::{PAYLOAD, Stream};
/// The services' socket buffers (`services.rs`).
const BUFFER: usize = 2048;
/// The socket loop's port, on the server stack.
pub const PLAIN_PORT: u16 = 7007;
/// Each path's deadline, in emulated time.
const LIMIT: Duration = Duration::from_secs(300);

/// Microseconds the core slept in `wfe` since boot (thread mode only).
static IDLE_MICROS: AtomicU32 = AtomicU32::new(0);

/// Adds a stretch of sleep; called by the self-test's executor loop.
pub fn add_idle(slept: Duration) {
    let micros = u32::try_from(slept.as_micros()).unwrap_or(u32::MAX);
    IDLE_MICROS.store(
        IDLE_MICROS.load(Ordering::Relaxed).wrapping_add(micros),
        Ordering::Relaxed,
    );
}

fn idle_micros() -> u32 {
    IDLE_MICROS.load(Ordering::Relaxed)
}

/// One measured path.
struct Path {
    name: &'static str,
    port: u16,
    /// Frame bodies of this length (a 4-byte big-endian header each), or none.
    frame: Option<u32>,
}

const PATHS: [Path; 4] = [
    Path {
        name: "stack only (a socket loop, no smolsock)",
        port: PLAIN_PORT,
        frame: None,
    },
    Path {
        name: "tcp/7 raw echo (session::Echo)",
        port: ECHO_PORT,
        frame: None,
    },
    Path {
        name: "tcp/9000 framed echo, 1 KiB frames",
        port: FRAMED_PORT,
        frame: Some(1024),
    },
    Path {
        name: "tcp/9000 framed echo, 64 KiB frames",
        port: FRAMED_PORT,
        frame: Some(64 * 1024),
    },
];

/// Spawns the socket loop on the server stack.
pub fn spawn_plain_echo(spawner: embassy_executor::Spawner, stack: Stack<'static>) {
    spawner.spawn(unwrap_spawn(plain_echo_task(stack)));
}

/// An echo with no library: read what came, write it back, on one
/// `TcpSocket` with the services' buffers; one connection after another.
#[embassy_executor::task]
async fn plain_echo_task(stack: Stack<'static>) -> ! {
    let (mut rx, mut tx) = ([0u8; BUFFER], [0u8; BUFFER]);
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.set_timeout(Some(Duration::from_secs(60)));
        if socket.accept(PLAIN_PORT).await.is_err() {
            embassy_time::Timer::after_secs(1).await;
            continue;
        }
        let mut piece = [0u8; 512];
        loop {
            let n = match socket.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut rest = piece.get(..n).unwrap_or_default();
            while !rest.is_empty() {
                match socket.write(rest).await {
                    Ok(0) | Err(_) => break,
                    Ok(wrote) => rest = rest.get(wrote..).unwrap_or_default(),
                }
            }
        }
        socket.close();
        let _ = with_timeout(Duration::from_secs(5), socket.flush()).await;
    }
}

/// Echoes 1 MiB through each path and logs what it cost; fails if a byte
/// comes back changed or a path does not finish in time.
pub async fn measure(stack: Stack<'static>, server: IpAddress) -> Result<(), &'static str> {
    for path in &PATHS {
        let (mut rx, mut tx) = ([0u8; BUFFER], [0u8; BUFFER]);
        let mut socket = connect(stack, server, path.port, &mut rx, &mut tx).await?;
        let started = Instant::now();
        let idle_before = idle_micros();
        match with_timeout(LIMIT, echo(&mut socket, path.frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("a path did not finish within 300 s"),
        }
        let elapsed = started.elapsed().as_micros();
        let idle = u64::from(idle_micros().wrapping_sub(idle_before));
        let busy_ns = elapsed.saturating_sub(idle).saturating_mul(1000);
        let per_byte_tenths = busy_ns * 10 / PAYLOAD;
        log::info!(
            "cost: {}: {} B of payload ({} B on the wire each way) in {} ns of emulated time \
             awake, {}.{} ns/B; asleep {} us",
            path.name,
            PAYLOAD,
            Stream::len(path.frame),
            busy_ns,
            per_byte_tenths / 10,
            per_byte_tenths % 10,
            idle,
        );
        socket.abort();
        let _ = with_timeout(Duration::from_secs(1), socket.flush()).await;
    }
    Ok(())
}

/// Sends the stream and checks it back, both at once.
async fn echo(socket: &mut TcpSocket<'_>, frame: Option<u32>) -> Result<(), &'static str> {
    let total = Stream::len(frame);
    let (mut reader, mut writer) = socket.split();
    let send = async {
        let mut out = Stream::new(frame);
        let mut sent = 0u64;
        while sent < total {
            let wrote = writer
                .write_with(|space| {
                    let n = space.len().min((total - sent) as usize);
                    out.fill(space.get_mut(..n).unwrap_or_default());
                    (n, n)
                })
                .await
                .map_err(|_| "the connection broke while sending")?;
            sent = sent.saturating_add(wrote as u64);
        }
        Ok(())
    };
    let check = async {
        let mut back = Stream::new(frame);
        let mut received = 0u64;
        let mut differs = false;
        while received < total {
            let read = reader
                .read_with(|data| {
                    differs |= !back.check(data);
                    (data.len(), data.len())
                })
                .await
                .map_err(|_| "the connection broke before every byte came back")?;
            if read == 0 {
                return Err("the echo ended early");
            }
            received = received.saturating_add(read as u64);
        }
        if differs {
            Err("a byte came back changed")
        } else {
            Ok(())
        }
    };
    let (sent, checked) = join(send, check).await;
    sent.and(checked)
}

/// Both futures to completion, polled in turn.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            out_a = Some(out);
        }
        if out_b.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            out_b = Some(out);
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                out_a = a;
                out_b = b;
                Poll::Pending
            }
        }
    })
    .await
}
