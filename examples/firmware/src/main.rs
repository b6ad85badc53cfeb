//! smolsock's firmware for QEMU's `mps2-an386` board (Cortex-M4, LAN9118 Ethernet).
//!
//! The Linux side of `tap0` reaches it at 192.168.69.1 and fdaa::1, as it reaches
//! the `tap_server` demo: the same stack, the same addresses, here on an emulated
//! microcontroller with every buffer a `static` and no allocator.
//!
//! The main loop is the whole runtime: poll the interface, poll each
//! [`Service`], and when smoltcp has nothing to do before the next millisecond,
//! sleep (`wfi`) until SysTick or the Ethernet controller's interrupt wakes the
//! core. A listen [`Backlog`] sits between the driver and the stack: a SYN that
//! finds every socket of its pool busy is held (not answered with a RST, as
//! smoltcp would) and handed to the stack once a slot listens again, so pools of
//! one serve every client in turn.
//!
//! Porting to a real board with a LAN9118 means changing the constants below
//! (base address, IRQ number, core clock) and `link/memory.x`; a board with another
//! Ethernet controller swaps the `lan9118` driver for its own `phy::Device`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod clock;
#[cfg(feature = "selftest")]
mod cost;
mod live;
mod logger;
#[cfg(feature = "selftest")]
mod selftest;
mod services;
mod stack;
#[cfg(all(feature = "selftest", not(feature = "live")))]
mod widest;

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use lan9118::{Config as DeviceConfig, Lan9118, Mmio, Stats};
use panic_semihosting as _;
use smolsock::net::{Backlog, Service};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use static_cell::{ConstStaticCell, StaticCell};

use crate::clock::Clock;
use crate::services::{AllServices, SOCKET_COUNT};

/// The core clock of the MPS2 FPGA images (and of QEMU's model), for SysTick.
const CORE_HZ: u32 = 25_000_000;
/// Where the MPS2 boards map the LAN9118.
const LAN9118_BASE: usize = 0x4020_0000;
/// The LAN9118's line on the NVIC of the AN385/AN386 images.
const ETHERNET_IRQ: u16 = 13;

/// A locally administered unicast address.
const MAC_ADDRESS: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const IPV4: IpCidr = IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24);
const IPV6: IpCidr = IpCidr::new(IpAddress::v6(0xfdaa, 0, 0, 0, 0, 0, 0, 1), 64);

// Every buffer is a `static`, taken once, so the RAM the firmware needs is all
// in `.bss`, visible to `llvm-size`, and fixed at link time (the services' own
// are in `services.rs`). Statics whose initial value is not all zeros (the
// driver holds its base address, an empty socket slot is not zero bytes) are
// filled in at run time with `StaticCell::init`; in a `ConstStaticCell` they
// would land in `.data` and cost their size in flash as well.
static DEVICE: StaticCell<Lan9118<Mmio>> = StaticCell::new();
static SOCKET_STORAGE: StaticCell<[SocketStorage<'static>; SOCKET_COUNT]> = StaticCell::new();
static SOCKET_SET: StaticCell<SocketSet<'static>> = StaticCell::new();
static INTERFACE: StaticCell<Interface> = StaticCell::new();
static SERVICES: StaticCell<AllServices> = StaticCell::new();
/// The listen backlog: its empty value is all zero bytes, so it is in `.bss`.
static BACKLOG: ConstStaticCell<ListenBacklog> = ConstStaticCell::new(Backlog::new());

/// Room for 4 held SYNs (a held SYN is a copy of at most 160 bytes), 8 ports
/// (the firmware serves 4) and 16 connections watched for blind resets (the
/// pools have 7 sockets).
type ListenBacklog = Backlog<4, 8, 16>;

/// Set by the Ethernet interrupt, cleared by the main loop before it sleeps.
static ETHERNET_EVENT: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy)]
struct EthernetIrq;

// SAFETY: 13 is a valid external interrupt number on this NVIC.
#[allow(unsafe_code)]
unsafe impl InterruptNumber for EthernetIrq {
    fn number(self) -> u16 {
        ETHERNET_IRQ
    }
}

/// Every interrupt without a handler of its own lands here; the Ethernet one is
/// masked (the main loop acknowledges it at the chip, then unmasks it) and wakes
/// the main loop.
///
/// cortex-m-rt makes this handler an `unsafe fn` (it may be entered for any
/// interrupt); it touches only the NVIC mask and an atomic.
#[allow(unsafe_code)]
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == ETHERNET_IRQ as i16 {
        NVIC::mask(EthernetIrq);
        ETHERNET_EVENT.store(true, Ordering::Release);
    }
}

#[entry]
fn main() -> ! {
    logger::init(log::LevelFilter::Info);
    log::info!(
        "smolsock firmware {} on mps2-an386",
        env!("CARGO_PKG_VERSION")
    );
    let Some(core) = cortex_m::Peripherals::take() else {
        fatal("core peripherals already taken");
    };
    // Read before SysTick starts: how far it had counted is part of the seed.
    let systick_at_boot = cortex_m::peripheral::SYST::get_current();
    let mut clock = Clock::start(core.SYST, CORE_HZ);

    let device = new_device();
    let free_run_at_boot = device.free_running_counter();
    if let Err(error) = device.init() {
        log::error!("lan9118: {error}");
        fatal("Ethernet controller did not come up");
    }
    let chip = device.chip_id();
    log::info!("lan9118: chip {:#06x} rev {} up", chip.id, chip.revision);
    let seed = random_seed(device, free_run_at_boot, systick_at_boot);
    log::info!("random seed {seed:#018x}");

    #[cfg(feature = "selftest")]
    {
        let mut board = selftest::Board {
            device,
            clock: &mut clock,
            mac_address: MAC_ADDRESS,
            dcb: core.DCB,
            dwt: core.DWT,
        };
        let passed = selftest::run(&mut board);
        debug::exit(if passed {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        park();
    }

    #[cfg(not(feature = "selftest"))]
    serve(device, &mut clock, seed)
}

/// The driver, built in its static.
///
/// This and [`new_stack`] are not inlined: the values they build pass through
/// their own stack frames (3 KiB for the driver's frame buffers, 3 KiB for the
/// socket slots), which are gone once they return, instead of staying in the
/// frames of `main` and `serve` under the poll loop for ever.
#[inline(never)]
fn new_device() -> &'static mut Lan9118<Mmio> {
    // SAFETY: on the MPS2 boards the LAN9118's registers are at this address, and
    // this `Mmio` is the only thing in the firmware that touches them.
    #[allow(unsafe_code)]
    let bus = unsafe { Mmio::new(LAN9118_BASE) };
    DEVICE.init(Lan9118::new(bus, DeviceConfig::new(MAC_ADDRESS)))
}

/// The interface, with its addresses, and the socket set, both in statics.
#[inline(never)]
fn new_stack(
    device: &mut Lan9118<Mmio>,
    now: Instant,
    seed: u64,
) -> (&'static mut Interface, &'static mut SocketSet<'static>) {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(MAC_ADDRESS)));
    config.random_seed = seed;
    let iface = INTERFACE.init(Interface::new(config, device, now));
    iface.update_ip_addrs(|addrs| {
        for cidr in [IPV4, IPV6] {
            if addrs.push(cidr).is_err() {
                log::warn!("no room for address {cidr}");
            }
        }
    });
    let storage = SOCKET_STORAGE.init([SocketStorage::EMPTY; SOCKET_COUNT]);
    (iface, SOCKET_SET.init(SocketSet::new(&mut storage[..])))
}

/// Brings up the interface and the services, then runs the poll loop forever.
#[cfg_attr(feature = "selftest", allow(dead_code))]
fn serve(device: &'static mut Lan9118<Mmio>, clock: &mut Clock, seed: u64) -> ! {
    let (iface, sockets) = new_stack(device, clock.now(), seed);
    let sockets = &mut *sockets;
    services::clear_store_region();
    let services = match AllServices::new(sockets) {
        Ok(all) => SERVICES.init(all),
        Err(why) => {
            log::error!("services: {why}");
            fatal("the services did not start");
        }
    };
    let Some(backlog) = BACKLOG.try_take() else {
        fatal("the backlog was taken twice");
    };
    services.publish(sockets, *device.stats(), backlog.stats(), clock.now());

    log_ram_use();
    device.enable_rx_interrupt();
    // The addresses written out, as the embassy firmware's banner has them:
    // formatting `IPV6` would link `Ipv6Addr`'s 1.2 KB formatter for this line.
    log::info!("listening: 192.168.69.1/24 fdaa::1/64, {}", Describe);

    let mut stats_logged = (Instant::ZERO, *device.stats());
    loop {
        // Clear the chip's event first: a frame that arrives from here on raises
        // the interrupt again and cuts the coming sleep short.
        device.acknowledge_interrupts();
        let now = clock.now();
        // The backlog looks at the sockets before each interface poll: which
        // ports have a socket listening (a SYN for a port with none is held),
        // which handshakes are under way.
        backlog.sync(iface, sockets, now);
        iface.poll(now, &mut backlog.device(device), sockets);
        services.poll(sockets, now);
        // What the services just wrote leaves now, not after the next sleep, and
        // a SYN held for a slot that just listened again is handed to the stack.
        backlog.sync(iface, sockets, now);
        iface.poll(now, &mut backlog.device(device), sockets);
        // The frames the chip dropped itself, so the published counters have them.
        device.collect_chip_drops();
        services.publish(sockets, *device.stats(), backlog.stats(), now);
        log_driver_stats(device, now, &mut stats_logged);
        if !idle_until_next_event(iface, services, backlog, sockets, now) {
            continue;
        }
        sleep();
    }
}

/// The boot log's list of services.
struct Describe;

impl core::fmt::Display for Describe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        services::describe(f)
    }
}

/// Logs the driver's counters every few seconds, when they changed.
fn log_driver_stats(device: &Lan9118<Mmio>, now: Instant, logged: &mut (Instant, Stats)) {
    const EVERY: Duration = Duration::from_secs(10);
    if now < logged.0 + EVERY {
        return;
    }
    let stats = *device.stats();
    if stats != logged.1 {
        let (stack_used, stack_size) = stack::high_water();
        log::info!(
            "lan9118: rx_frames: {}, tx_frames: {}, rx_errors: {}, rx_too_long: {}, \
             rx_dropped: {}, tx_errors: {}, tx_dropped: {}",
            stats.rx_frames,
            stats.tx_frames,
            stats.rx_errors,
            stats.rx_too_long,
            stats.rx_dropped,
            stats.tx_errors,
            stats.tx_dropped
        );
        log::info!("ram: stack high-water mark {stack_used} B of {stack_size} B");
    }
    *logged = (now, stats);
}

/// Whether nothing is due before the next SysTick, so the core may sleep: not
/// the stack, not a service, not the backlog (which wants a poll soon while it
/// holds a SYN, for a slot that frees by time with no frame to wake the loop).
fn idle_until_next_event(
    iface: &mut Interface,
    services: &dyn Service,
    backlog: &ListenBacklog,
    sockets: &SocketSet<'_>,
    now: Instant,
) -> bool {
    let due = [
        iface.poll_at(now, sockets),
        services.poll_at(sockets),
        backlog.poll_delay().map(|delay| now + delay),
    ]
    .into_iter()
    .flatten()
    .min();
    due.is_none_or(|at| at > now)
}

/// Sleeps until an interrupt: SysTick within a millisecond, or the Ethernet
/// controller as soon as a frame arrives.
fn sleep() {
    // SAFETY: unmasking only lets `DefaultHandler` run, which shares nothing but
    // an atomic flag with this code.
    #[allow(unsafe_code)]
    unsafe {
        NVIC::unmask(EthernetIrq);
    }
    // With interrupts held off, an event that lands between the check and `wfi`
    // still wakes `wfi` (it wakes on a pending interrupt), so none is missed.
    cortex_m::interrupt::free(|_| {
        if !ETHERNET_EVENT.swap(false, Ordering::AcqRel) {
            cortex_m::asm::wfi();
        }
    });
}

/// A seed that differs from boot to boot, for TCP initial sequence numbers and
/// ephemeral ports.
///
/// Under QEMU nothing is truly random, but the LAN9118's 25 MHz free-running
/// counter and SysTick's current value depend on how long the host took to get
/// here, which varies per boot; the MAC address keeps two boards apart. They are
/// mixed with splitmix64. On real hardware, take it from the MCU's TRNG instead.
fn random_seed(device: &mut Lan9118<Mmio>, free_run_at_boot: u32, systick_at_boot: u32) -> u64 {
    let free_run_now = device.free_running_counter();
    let mut mac = [0u8; 8];
    for (slot, byte) in mac.iter_mut().zip(MAC_ADDRESS) {
        *slot = byte;
    }
    let mixed = (u64::from(free_run_at_boot) << 32 | u64::from(free_run_now))
        ^ u64::from(systick_at_boot).rotate_left(17)
        ^ u64::from_le_bytes(mac).rotate_left(41);
    splitmix64(mixed)
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Prints where the RAM goes, component by component (the README's table).
fn log_ram_use() {
    use core::mem::size_of;
    let driver = size_of::<Lan9118<Mmio>>();
    let interface = size_of::<Interface>();
    let socket_set = SOCKET_COUNT * size_of::<SocketStorage<'static>>();
    let backlog = size_of::<ListenBacklog>();
    // One line for the four: each log call costs flash, which the budget lacks.
    log::info!(
        "ram: driver (2 frame buffers) {driver} B, interface {interface} B, \
         listen backlog {backlog} B, socket set {SOCKET_COUNT} slots x {} B = {socket_set} B",
        size_of::<SocketStorage<'static>>()
    );
    let mut total = driver + interface + backlog + socket_set;
    for (name, buffers, state) in services::ram_use() {
        log::info!("ram: {name}: socket and frame buffers {buffers} B, service state {state} B");
        total += buffers + state;
    }
    let (stack_used, _) = stack::high_water();
    log::info!("ram: total of the above {total} B; stack so far {stack_used} B");
    log::info!(
        "ram: file store {} B in .store (outside the budget)",
        services::store_size()
    );
}

/// Reports a fatal error and stops: QEMU exits with failure, a real board halts.
fn fatal(why: &str) -> ! {
    log::error!("fatal: {why}");
    debug::exit(debug::EXIT_FAILURE);
    park()
}

fn park() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
