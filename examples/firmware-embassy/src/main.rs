//! smolsock's firmware on embassy, for QEMU's `mps2-an386` board (Cortex-M4,
//! LAN9118 Ethernet): the services of `examples/firmware` (the poll loop), on
//! the same addresses and ports, as embassy tasks.
//!
//! - **Executor**: embassy-executor in thread mode; it sleeps (`wfe`) while no
//!   task is ready.
//! - **Network**: embassy-net 0.9 (its own smoltcp 0.13) over the `lan9118`
//!   crate's embassy driver, woken from the LAN9118's interrupt (NVIC line 13).
//! - **Time**: embassy-time over the `cmsdk-timer` driver: CMSDK APB TIMER0 free
//!   running as the clock, TIMER1 (NVIC line 9) as the alarm, 1 MHz ticks.
//! - **Services**: one task per connection, `pool_size` tasks per port, each
//!   running a smolsock session through `smolsock::asynch::run` over its
//!   `TcpSocket` (see `services.rs`).
//! - **TFTP** (`--features tftp`) on udp/69 from the same file store, one
//!   transfer at a time, through `smolsock::tftp::asynch` (see `tftp.rs`).
//! - **Self-test** (`--features selftest`, `run.sh --selftest`): the services on
//!   one embassy-net stack, a client checking them on another, joined by a link
//!   in memory (see `selftest.rs`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]
// The self-test build brings up two stacks over a link in memory instead of the
// LAN9118: the board's driver and its stack are left unused there.
#![cfg_attr(feature = "selftest", allow(unused_imports, dead_code))]

#[cfg(feature = "selftest")]
mod cost;
#[cfg(feature = "selftest")]
mod link;
mod live;
mod logger;
#[cfg(feature = "selftest")]
mod selftest;
mod services;
mod stack;
mod status;
#[cfg(feature = "tftp")]
mod tftp;

use cmsdk_timer::{ApbTimer, TimeDriver};
use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use embassy_executor::Executor;
use embassy_net::{
    Config, ConfigV6, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr, Runner, Stack, StackResources,
    StaticConfigV4, StaticConfigV6,
};
use lan9118::embassy::{Device, InterruptLine, State};
use lan9118::{Config as DeviceConfig, Lan9118, Mmio};
use panic_semihosting as _;
use static_cell::{ConstStaticCell, StaticCell};

/// The clock of the MPS2 FPGA images' peripherals (and of QEMU's model).
const TIMER_HZ: u64 = 25_000_000;
/// CMSDK APB TIMER0: the clock, free running, no interrupt.
const CLOCK_TIMER_BASE: usize = 0x4000_0000;
/// CMSDK APB TIMER1: the alarm, on NVIC line 9.
const ALARM_TIMER_BASE: usize = 0x4000_1000;
const ALARM_IRQ: u16 = 9;
/// Where the MPS2 boards map the LAN9118, and its NVIC line on the AN385/AN386
/// images (QEMU's `hw/arm/mps2.c`).
const LAN9118_BASE: usize = 0x4020_0000;
const ETHERNET_IRQ: u16 = 13;

/// A locally administered unicast address, the poll-loop firmware's.
const MAC_ADDRESS: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// Sockets of the stack: every TCP task's one, the UDP echo's, and TFTP's.
#[cfg(not(feature = "tftp"))]
const SOCKETS: usize = services::TCP_SOCKETS + 1;
#[cfg(feature = "tftp")]
const SOCKETS: usize = services::TCP_SOCKETS + 1 + tftp::SOCKETS;

// SAFETY: on the MPS2 boards these are CMSDK APB timers, and nothing else in
// the firmware touches them.
#[allow(unsafe_code)]
mod time {
    use super::*;
    embassy_time_driver::time_driver_impl!(static TIME: TimeDriver = TimeDriver::new(
        unsafe { ApbTimer::new(CLOCK_TIMER_BASE) },
        unsafe { ApbTimer::new(ALARM_TIMER_BASE) },
        TIMER_HZ,
    ));

    pub fn driver() -> &'static TimeDriver {
        &TIME
    }
}

/// The Ethernet interrupt's handler and the driver share this.
static ETHERNET: State = State::new();

#[cfg(not(feature = "selftest"))]
static DEVICE: StaticCell<Lan9118<Mmio>> = StaticCell::new();
#[cfg(not(feature = "selftest"))]
static RESOURCES: ConstStaticCell<StackResources<SOCKETS>> =
    ConstStaticCell::new(StackResources::new());
static EXECUTOR: StaticCell<Executor> = StaticCell::new();

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 9 and 13 are valid external interrupt numbers on this NVIC.
#[allow(unsafe_code)]
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Unmasks the LAN9118's line for the driver.
struct EthernetLine;

impl InterruptLine for EthernetLine {
    fn unmask(&mut self) {
        // SAFETY: the handler it lets run touches only the NVIC mask and the
        // driver's `State` (an AtomicWaker): no critical section is broken.
        #[allow(unsafe_code)]
        unsafe {
            NVIC::unmask(Irq(ETHERNET_IRQ));
        }
    }
}

/// The embassy-net driver.
type Net = Device<'static, Mmio, EthernetLine>;

/// Every interrupt without a handler of its own lands here (there is no device
/// crate): the alarm timer's and the Ethernet controller's.
///
/// cortex-m-rt makes this handler an `unsafe fn` (it may be entered for any
/// interrupt); it touches the NVIC mask, the time driver (in a critical
/// section) and an AtomicWaker.
#[allow(unsafe_code)]
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == ALARM_IRQ as i16 {
        time::driver().on_alarm_interrupt();
    } else if irqn == ETHERNET_IRQ as i16 {
        // The pin stays high until the driver clears the chip's status: mask the
        // line until then (the driver unmasks it once the FIFO is empty).
        NVIC::mask(Irq(ETHERNET_IRQ));
        ETHERNET.on_interrupt();
    }
}

#[entry]
fn main() -> ! {
    logger::init(log::LevelFilter::Info);
    log::info!(
        "smolsock embassy firmware {} on mps2-an386",
        env!("CARGO_PKG_VERSION")
    );
    time::driver().start();
    // SAFETY: the alarm's handler only wakes timers, in a critical section.
    #[allow(unsafe_code)]
    unsafe {
        NVIC::unmask(Irq(ALARM_IRQ));
    }
    services::clear_store_region();
    #[cfg(not(feature = "selftest"))]
    status::log_ram_use::<SOCKETS>();
    #[cfg(feature = "selftest")]
    run_counting_sleep();
    #[cfg(not(feature = "selftest"))]
    let executor = EXECUTOR.init(Executor::new());
    #[cfg(not(feature = "selftest"))]
    let (stack, runner) = new_stack(new_device());
    #[cfg(not(feature = "selftest"))]
    executor.run(move |spawner| {
        spawner.spawn(unwrap_spawn(net_task(runner)));
        services::spawn_all(spawner, stack);
        log::info!(
            "listening: 192.168.69.1/24 fdaa::1/64, {}",
            services::Describe
        );
    })
}

/// The self-test's executor: embassy's thread-mode loop (poll the tasks, then
/// `wfe` until a task is woken), which also adds up the time spent in `wfe`
/// for the cost measurement (`cost.rs`).
#[cfg(feature = "selftest")]
fn run_counting_sleep() -> ! {
    use embassy_executor::raw;
    static RAW: StaticCell<raw::Executor> = StaticCell::new();
    // The context `Executor::new` gives its raw executor (`usize::MAX`): with
    // it, embassy-executor's Cortex-M pender answers a wake with `sev`, which
    // ends the `wfe` below.
    let context = core::ptr::without_provenance_mut(usize::MAX);
    let executor: &'static raw::Executor = RAW.init(raw::Executor::new(context));
    selftest::spawn(executor.spawner());
    loop {
        // SAFETY: `poll` is called from this one thread-mode loop only, never
        // reentrantly, on an executor in a static.
        #[allow(unsafe_code)]
        unsafe {
            executor.poll();
        }
        let asleep = embassy_time::Instant::now();
        cortex_m::asm::wfe();
        cost::add_idle(asleep.elapsed());
    }
}

/// The driver, built in its static and initialised.
///
/// This and [`new_stack`] are not inlined: the values they build pass through
/// their own stack frames (3 KiB for the driver's frame buffers, the stack's
/// interface), which are gone once they return, instead of staying in the
/// frame of `main`, under the executor, for ever.
#[cfg(not(feature = "selftest"))]
#[inline(never)]
fn new_device() -> &'static mut Lan9118<Mmio> {
    // SAFETY: on the MPS2 boards the LAN9118's registers are here, and this
    // `Mmio` is the only thing in the firmware that touches them.
    #[allow(unsafe_code)]
    let bus = unsafe { Mmio::new(LAN9118_BASE) };
    let device = DEVICE.init_with(|| Lan9118::new(bus, DeviceConfig::new(MAC_ADDRESS)));
    if let Err(error) = device.init() {
        log::error!("lan9118: {error}");
        fatal("Ethernet controller did not come up");
    }
    let chip = device.chip_id();
    log::info!("lan9118: chip {:#06x} rev {} up", chip.id, chip.revision);
    device
}

/// embassy-net on `device`, with the poll-loop firmware's addresses.
#[cfg(not(feature = "selftest"))]
#[inline(never)]
fn new_stack(device: &'static mut Lan9118<Mmio>) -> (Stack<'static>, Runner<'static, Net>) {
    let seed = random_seed(device.free_running_counter());
    let net = Device::new(device, &ETHERNET, EthernetLine);
    let mut config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 1), 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    config.ipv6 = ConfigV6::Static(StaticConfigV6 {
        address: Ipv6Cidr::new(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1), 64),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let Some(resources) = RESOURCES.try_take() else {
        fatal("the stack's resources were taken twice");
    };
    embassy_net::new(net, config, resources, seed)
}

/// A spawn token, or a fatal error: a pool too small for what `main` spawns.
pub fn unwrap_spawn<T>(token: Result<T, embassy_executor::SpawnError>) -> T {
    match token {
        Ok(token) => token,
        Err(_) => fatal("a task pool is full"),
    }
}

/// Moves frames between the driver and the stack, for ever.
#[cfg(not(feature = "selftest"))]
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Net>) -> ! {
    runner.run().await
}

/// A seed that differs from boot to boot, for TCP initial sequence numbers and
/// ephemeral ports: the LAN9118's 25 MHz free-running counter (how long the
/// host took to get here varies per boot) and the clock's time,
/// mixed with the MAC address by splitmix64. On real hardware, take it from the
/// MCU's TRNG instead.
#[cfg(not(feature = "selftest"))]
fn random_seed(free_run_now: u32) -> u64 {
    let mut mac = [0u8; 8];
    for (slot, byte) in mac.iter_mut().zip(MAC_ADDRESS) {
        *slot = byte;
    }
    let mixed = u64::from(free_run_now)
        ^ embassy_time::Instant::now().as_ticks().rotate_left(17)
        ^ u64::from_le_bytes(mac).rotate_left(41);
    let mut z = mixed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reports a fatal error and stops: QEMU exits with failure, a real board halts.
pub fn fatal(why: &str) -> ! {
    log::error!("fatal: {why}");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
