//! An Ethernet link in memory, for the self-test: two `embassy-net-driver`
//! ends joined by two queues of frames, one each way, so that two embassy-net
//! stacks in one firmware talk as if over a cable.
//!
//! Each [`Wire`] carries frames one way and holds up to [`SLOTS`] of them. An end
//! sends only while its outgoing wire has room (`transmit` says so, and wakes
//! the sender again once the far end takes a frame). The one exception is the
//! reply the stack may send while it processes a received frame (the transmit
//! token that comes with the receive token): with no room it is dropped and
//! counted, as a cable drops a frame, and TCP sends it again. Refusing the
//! receive until there is room instead would let two full wires wait on each
//! other for ever.

use core::cell::RefCell;
use core::task::Context;

use critical_section::Mutex;
use embassy_net::driver::{Capabilities, Driver, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;
use heapless::{Deque, Vec};

/// The largest Ethernet frame, header included (no FCS): what the LAN9118 takes.
pub const MAX_FRAME: usize = 1514;
/// Frames each wire holds.
pub const SLOTS: usize = 8;

type Frame = Vec<u8, MAX_FRAME>;

/// Frames on their way from one end to the other.
pub struct Wire {
    frames: Mutex<RefCell<Deque<Frame, SLOTS>>>,
    /// Frames dropped because the wire was full.
    dropped: Mutex<RefCell<u64>>,
    /// The receiving end, waiting for a frame.
    arrived: AtomicWaker,
    /// The sending end, waiting for room.
    room: AtomicWaker,
}

impl Wire {
    /// An empty wire.
    pub const fn new() -> Self {
        Self {
            frames: Mutex::new(RefCell::new(Deque::new())),
            dropped: Mutex::new(RefCell::new(0)),
            arrived: AtomicWaker::new(),
            room: AtomicWaker::new(),
        }
    }

    /// Frames dropped so far because the wire was full.
    pub fn dropped(&self) -> u64 {
        critical_section::with(|cs| *self.dropped.borrow_ref(cs))
    }

    fn has_room(&self) -> bool {
        critical_section::with(|cs| !self.frames.borrow_ref(cs).is_full())
    }

    fn pop(&self) -> Option<Frame> {
        let frame = critical_section::with(|cs| self.frames.borrow_ref_mut(cs).pop_front());
        if frame.is_some() {
            self.room.wake();
        }
        frame
    }

    fn push(&self, frame: Frame) {
        critical_section::with(|cs| {
            if self.frames.borrow_ref_mut(cs).push_back(frame).is_err() {
                let mut dropped = self.dropped.borrow_ref_mut(cs);
                *dropped = dropped.saturating_add(1);
            }
        });
        self.arrived.wake();
    }
}

/// One end of the link: sends on `out`, receives from `into`.
pub struct End {
    out: &'static Wire,
    into: &'static Wire,
    mac: [u8; 6],
}

impl End {
    /// The end with address `mac` that sends on `out` and receives from `into`;
    /// the other end is `End::new(into, out, ...)`.
    pub const fn new(out: &'static Wire, into: &'static Wire, mac: [u8; 6]) -> Self {
        Self { out, into, mac }
    }
}

/// A frame taken off the wire.
pub struct RxToken {
    frame: Frame,
}

impl embassy_net::driver::RxToken for RxToken {
    fn consume<R, F>(mut self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        f(&mut self.frame)
    }
}

/// The right to put one frame on a wire.
pub struct TxToken {
    wire: &'static Wire,
}

impl embassy_net::driver::TxToken for TxToken {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = Frame::new();
        // The stack never asks for more than the MTU it was given.
        let _ = frame.resize(len.min(MAX_FRAME), 0);
        let result = f(&mut frame);
        self.wire.push(frame);
        result
    }
}

impl Driver for End {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.into.arrived.register(cx.waker());
        let frame = self.into.pop()?;
        Some((RxToken { frame }, TxToken { wire: self.out }))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
        self.out.room.register(cx.waker());
        self.out.has_room().then_some(TxToken { wire: self.out })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
