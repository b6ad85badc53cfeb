//! The driver as an [`embassy_net_driver::Driver`], for embassy-net (feature
//! `embassy`), on the same register code as the smoltcp device.
//!
//! embassy-net polls the driver from its runner task and sleeps when the driver
//! has nothing: the driver must wake that task when a frame arrives. The LAN9118
//! raises its IRQ pin while a received frame waits (`INT_STS.RSFL`); the board
//! routes the pin to an interrupt line (on QEMU's `mps2-an385`/`mps2-an386`,
//! external interrupt 13 of the NVIC). The split of work:
//!
//! - The interrupt handler masks its line (so a level-triggered pin that stays
//!   high does not re-enter the handler for ever) and calls
//!   [`State::on_interrupt`], which wakes the runner through an `AtomicWaker`.
//!   It touches no chip register: the bus stays the driver's alone.
//! - [`Device`]'s `receive` registers the runner's waker, clears the chip's
//!   interrupt status, then reads a frame. Only when none waits does it unmask
//!   the line again, through the board's [`InterruptLine`]. A frame that lands
//!   after the status was cleared raises the pin anew; if the line is still
//!   masked then, the interrupt stays pending and is taken as soon as it is
//!   unmasked, so no frame is left sleeping in the FIFO.
//! - Transmitting needs no interrupt: the driver hands out a TX token when the
//!   TX FIFO has room for a whole frame (QEMU sends each frame as it is pushed,
//!   so it always has). When the FIFO is that full, `transmit` asks to be polled
//!   again at once rather than wait for the TX interrupt: at wire speed the FIFO
//!   drains within a frame time.
//!
//! The link is reported up once [`Lan9118::init`] has succeeded (the PHY is not
//! polled; QEMU's link is always up).
//!
//! The driver's counters live inside the driver, which embassy-net's runner
//! owns; [`State::stats`] keeps a copy, refreshed at every `receive` and
//! `transmit` call, for a status page in another task. Each refresh first adds
//! the frames the chip dropped itself ([`Lan9118::collect_chip_drops`]).

use core::cell::Cell;
use core::fmt;
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::waitqueue::AtomicWaker;

use crate::bus::Bus;
use crate::driver::{Lan9118, MAX_FRAME_LEN, Stats, Transmitter};

/// Unmasks the interrupt line the LAN9118's IRQ pin drives; the board implements
/// it (on a Cortex-M, `NVIC::unmask` of the line's number).
pub trait InterruptLine {
    /// Lets the line interrupt again; its handler masked it.
    fn unmask(&mut self);
}

/// What the interrupt handler and the driver share: the runner's waker, and a
/// copy of the driver's counters. Meant to be a `static` (`State::new` is
/// `const`).
pub struct State {
    waker: AtomicWaker,
    stats: Mutex<CriticalSectionRawMutex, Cell<Stats>>,
}

impl State {
    /// Nothing registered, counters at zero.
    pub const fn new() -> Self {
        Self {
            waker: AtomicWaker::new(),
            stats: Mutex::new(Cell::new(Stats {
                rx_frames: 0,
                tx_frames: 0,
                rx_errors: 0,
                rx_too_long: 0,
                rx_dropped: 0,
                tx_errors: 0,
                tx_dropped: 0,
            })),
        }
    }

    /// Call from the Ethernet interrupt's handler, once it has masked the line:
    /// wakes the task that polls the driver.
    pub fn on_interrupt(&self) {
        self.waker.wake();
    }

    /// The driver's counters as of its last `receive` or `transmit`, the chip's
    /// own drops included.
    pub fn stats(&self) -> Stats {
        self.stats.lock(Cell::get)
    }

    fn publish(&self, stats: Stats) {
        self.stats.lock(|cell| cell.set(stats));
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A LAN9118 as embassy-net's driver: the [`Lan9118`] (initialised, or its
/// link reports down and it moves no frame), the [`State`] its interrupt handler
/// wakes, and the board's [`InterruptLine`].
pub struct Device<'a, B: Bus, L: InterruptLine> {
    device: &'a mut Lan9118<B>,
    state: &'a State,
    line: L,
}

impl<B: Bus + fmt::Debug, L: InterruptLine> fmt::Debug for Device<'_, B, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("device", &self.device)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'a, B: Bus, L: InterruptLine> Device<'a, B, L> {
    /// Switches the chip's RX interrupt on and unmasks `line`; from here on the
    /// handler of `line` must call [`State::on_interrupt`] on `state`.
    pub fn new(device: &'a mut Lan9118<B>, state: &'a State, mut line: L) -> Self {
        device.enable_rx_interrupt();
        line.unmask();
        Self {
            device,
            state,
            line,
        }
    }

    /// The driver inside.
    pub fn inner(&mut self) -> &mut Lan9118<B> {
        self.device
    }

    /// Copies the driver's counters into the [`State`], the frames the chip
    /// dropped itself collected first (one register read, once the chip is up).
    fn publish(&mut self) {
        if self.device.is_ready() {
            self.device.collect_chip_drops();
        }
        self.state.publish(*self.device.stats());
    }
}

/// A received frame, in the driver's RX buffer.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        f(self.frame)
    }
}

/// The right to send one frame.
#[derive(Debug)]
pub struct TxToken<'a, B: Bus> {
    transmitter: Transmitter<'a, B>,
}

impl<B: Bus> embassy_net_driver::TxToken for TxToken<'_, B> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.transmitter.send(len, f)
    }
}

impl<B: Bus, L: InterruptLine> embassy_net_driver::Driver for Device<'_, B, L> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, B>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.publish();
        if !self.device.is_ready() {
            return None;
        }
        self.state.waker.register(cx.waker());
        // Clear the event before looking: a frame from now on raises it again.
        self.device.acknowledge_interrupts();
        let Some((frame, transmitter)) = self.device.next_frame() else {
            self.line.unmask();
            return None;
        };
        Some((RxToken { frame }, TxToken { transmitter }))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
        self.publish();
        let ready = self.device.is_ready();
        let token = self
            .device
            .transmitter()
            .map(|transmitter| TxToken { transmitter });
        if token.is_none() && ready {
            // The TX FIFO drains at wire speed: look again on the next turn.
            cx.waker().wake_by_ref();
        }
        token
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        if self.device.is_ready() {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.max_transmission_unit = MAX_FRAME_LEN;
        capabilities
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.device.config().mac_address)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use embassy_net_driver::{Driver as _, RxToken as _, TxToken as _};

    use super::*;
    use crate::driver::Config;
    use crate::fake_chip::FakeChip;
    use crate::regs;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

    /// Counts how often it is woken.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountingWaker {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Counts how often the driver unmasks the line.
    #[derive(Default)]
    struct Line(std::cell::Cell<usize>);

    impl InterruptLine for &Line {
        fn unmask(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// A line nobody watches.
    struct NoLine;

    impl InterruptLine for NoLine {
        fn unmask(&mut self) {}
    }

    fn ready_driver() -> Lan9118<FakeChip> {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new(MAC));
        driver.init().unwrap();
        driver
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 5 + 1) as u8).collect()
    }

    #[test]
    fn new_switches_the_rx_interrupt_on_and_unmasks_the_line() {
        let mut driver = ready_driver();
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let chip = device.inner().bus_mut();
        assert_eq!(
            chip.int_en,
            regs::int::RSFL,
            "interrupt on a received frame"
        );
        assert_ne!(chip.irq_cfg & regs::irq_cfg::IRQ_EN, 0);
        assert_eq!(line.0.get(), 1);
    }

    #[test]
    fn a_waiting_frame_is_handed_up_whole_and_mutable_with_the_status_cleared() {
        let mut driver = ready_driver();
        driver.bus_mut().queue_frame(&frame(61));
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (_counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let (rx, _tx) = device.receive(&mut cx).expect("a frame waits");
        let got = rx.consume(|bytes| {
            bytes[0] ^= 0xFF; // embassy-net may work on the frame in place
            bytes.to_vec()
        });
        let mut expected = frame(61);
        expected[0] ^= 0xFF;
        assert_eq!(got, expected);
        let chip = device.inner().bus_mut();
        assert_eq!(chip.int_sts, 0, "the RX event was acknowledged");
        assert!(chip.rx_data.is_empty(), "CRC words consumed");
        assert_eq!(
            line.0.get(),
            1,
            "not unmasked again while frames are handed up"
        );
    }

    #[test]
    fn nothing_waiting_unmasks_the_line_and_the_interrupt_wakes_the_runner() {
        let mut driver = ready_driver();
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(device.receive(&mut cx).is_none());
        assert_eq!(counter.count(), 0, "no busy polling while idle");
        // A frame arrives: the handler masks the line and calls on_interrupt.
        device.inner().bus_mut().queue_frame(&frame(60));
        state.on_interrupt();
        assert_eq!(counter.count(), 1);
        assert!(device.receive(&mut cx).is_some());
        assert_eq!(line.0.get(), 2, "once at new, once when the FIFO was empty");
    }

    #[test]
    fn the_reply_token_of_a_receive_sends_through_the_fifo() {
        let mut driver = ready_driver();
        driver.bus_mut().queue_frame(&frame(60));
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (_counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let (rx, tx) = device.receive(&mut cx).unwrap();
        let request = rx.consume(|bytes| bytes.to_vec());
        tx.consume(request.len(), |buffer| buffer.copy_from_slice(&request));
        let sent = &device.inner().bus_mut().sent;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].bytes, request);
    }

    #[test]
    fn transmit_sends_and_a_full_fifo_asks_to_be_polled_again() {
        let mut driver = ready_driver();
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let tx = device.transmit(&mut cx).expect("an empty FIFO has room");
        tx.consume(5, |buffer| buffer.copy_from_slice(&[1, 2, 3, 4, 5]));
        assert_eq!(device.inner().bus_mut().sent[0].bytes, [1, 2, 3, 4, 5]);
        assert_eq!(counter.count(), 0);

        device.inner().bus_mut().tx_free = 1000;
        assert!(device.transmit(&mut cx).is_none());
        assert_eq!(counter.count(), 1, "woken to try again");
    }

    #[test]
    fn before_init_the_link_is_down_and_no_frame_moves() {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new(MAC));
        driver.bus_mut().queue_frame(&frame(60));
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(device.link_state(&mut cx) == LinkState::Down);
        assert!(device.receive(&mut cx).is_none());
        assert!(device.transmit(&mut cx).is_none());
        assert_eq!(counter.count(), 0, "a dead chip is not polled in a loop");
    }

    #[test]
    fn capabilities_address_and_link_after_init() {
        let mut driver = ready_driver();
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (_counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(device.link_state(&mut cx) == LinkState::Up);
        assert_eq!(device.capabilities().max_transmission_unit, MAX_FRAME_LEN);
        assert_eq!(device.hardware_address(), HardwareAddress::Ethernet(MAC));
    }

    #[test]
    fn the_state_keeps_a_copy_of_the_counters_for_other_tasks() {
        let mut driver = ready_driver();
        driver.bus_mut().queue_frame(&frame(60));
        let state = State::new();
        let line = Line::default();
        let mut device = Device::new(&mut driver, &state, &line);
        let (_counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let (rx, _tx) = device.receive(&mut cx).unwrap();
        rx.consume(|_| ());
        assert_eq!(state.stats().rx_frames, 0, "published at the next call");
        let _ = device.transmit(&mut cx);
        assert_eq!(state.stats().rx_frames, 1);
    }

    #[test]
    fn chip_drops_reach_the_published_counters() {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new([2, 0, 0, 0, 0, 1]));
        driver.init().unwrap();
        driver.bus_mut().rx_drop = 3;
        let state = State::new();
        let mut device = Device::new(&mut driver, &state, NoLine);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..3 {
            let _ = device.receive(&mut cx);
            let _ = device.transmit(&mut cx);
        }
        assert_eq!(state.stats().rx_dropped, 3);
    }
}
