//! How the driver reaches the chip's registers.
//!
//! The driver only ever reads or writes one 32-bit register at a byte offset from
//! the chip's base, so that is the whole [`Bus`] trait. [`Mmio`] is the real thing:
//! volatile accesses to a memory-mapped chip, and the only `unsafe` in this crate.
//! Tests implement [`Bus`] with a model of the chip; a board whose LAN9118 sits
//! behind a 16-bit bus, or a port expander, can implement it too.

/// Access to the chip's 32-bit registers, by byte offset from its base address.
///
/// Offsets are the constants of [`regs`](crate::regs). Reads of the FIFO ports pop a
/// word, so a `Bus` must not cache or merge accesses.
pub trait Bus {
    /// Reads the 32-bit register at `offset`.
    fn read(&mut self, offset: u32) -> u32;
    /// Writes `value` to the 32-bit register at `offset`.
    fn write(&mut self, offset: u32, value: u32);
}

impl<B: Bus + ?Sized> Bus for &mut B {
    fn read(&mut self, offset: u32) -> u32 {
        (**self).read(offset)
    }

    fn write(&mut self, offset: u32, value: u32) {
        (**self).write(offset, value);
    }
}

/// A LAN9118 mapped into the address space, accessed with volatile 32-bit loads
/// and stores.
///
/// The base is kept as an address, not a pointer, so an `Mmio` can live in a
/// `static` (it is `Send` and `Sync`); it is only turned into a pointer at each
/// access.
#[derive(Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The chip at `base`, for example `0x4020_0000` on Arm's MPS2 boards (and
    /// QEMU's `mps2-an385`/`mps2-an386`).
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118's 256-byte register window, mapped
    /// as device memory, and nothing else may access that window while this `Mmio`
    /// (or the driver that owns it) is in use: reads of the FIFO ports have side
    /// effects.
    #[allow(unsafe_code)]
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// The base address this `Mmio` was made with.
    pub const fn base(&self) -> usize {
        self.base
    }

    fn register(&self, offset: u32) -> *mut u32 {
        // Offsets above the 256-byte window are masked so that a bad offset cannot
        // reach memory outside the chip (the chip decodes only 8 address bits).
        let offset = (offset & 0xFC) as usize;
        self.base.wrapping_add(offset) as *mut u32
    }
}

impl Bus for Mmio {
    #[allow(unsafe_code)]
    fn read(&mut self, offset: u32) -> u32 {
        let register = self.register(offset);
        // SAFETY: `Mmio::new`'s contract says `base` is the chip's register window,
        // exclusively ours; `register` keeps the offset inside that window and
        // 4-byte aligned.
        unsafe { core::ptr::read_volatile(register) }
    }

    #[allow(unsafe_code)]
    fn write(&mut self, offset: u32, value: u32) {
        let register = self.register(offset);
        // SAFETY: as in `read`: an aligned register inside the window that
        // `Mmio::new`'s caller promised is the chip's and ours alone.
        unsafe { core::ptr::write_volatile(register, value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_reads_and_writes_the_word_at_base_plus_offset() {
        let mut window = [0u32; 64];
        window[0x50 / 4] = 0x0118_0001;
        // SAFETY (test): the window is a live, aligned, exclusively borrowed array.
        #[allow(unsafe_code)]
        let mut bus = unsafe { Mmio::new(window.as_mut_ptr() as usize) };
        assert_eq!(bus.read(0x50), 0x0118_0001);
        bus.write(0x70, 0xDEAD_BEEF);
        assert_eq!(window[0x70 / 4], 0xDEAD_BEEF);
    }

    #[test]
    fn mmio_keeps_offsets_inside_the_register_window() {
        let mut window = [0u32; 64];
        // SAFETY (test): as above.
        #[allow(unsafe_code)]
        let mut bus = unsafe { Mmio::new(window.as_mut_ptr() as usize) };
        bus.write(0x1_0004, 7);
        assert_eq!(window[1], 7);
    }
}
