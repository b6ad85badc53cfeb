//! How deep the stack has ever been: its high-water mark.
//!
//! cortex-m-rt's `paint-stack` feature fills the stack region (from `_stack_end`,
//! just above `.bss`, up to the top of RAM) with a fixed pattern before `main`.
//! Words the program has used no longer hold the pattern, so counting the
//! untouched words from the bottom tells how much stack the firmware needed,
//! which is the part of the RAM budget `llvm-size` cannot show.

use cortex_m_rt::STACK_PAINT_VALUE;

// The linker script defines these; only their addresses mean anything.
#[allow(unsafe_code)]
unsafe extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// Bytes of stack used so far, and the stack's size.
#[allow(unsafe_code)]
pub fn high_water() -> (usize, usize) {
    // Taking the address of an extern static reads nothing, so it needs no unsafe.
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let size = top.saturating_sub(bottom);
    let mut untouched = 0usize;
    let mut address = bottom;
    while address < top {
        // SAFETY: `address` is word-aligned (the linker script asserts
        // `_stack_end % 4 == 0`) and inside the RAM between `_stack_end` and
        // `_stack_start`, which is the stack region: mapped and readable. The
        // stack below the current stack pointer is not aliased by any reference.
        let word = unsafe { core::ptr::read_volatile(address as *const u32) };
        if word != STACK_PAINT_VALUE {
            break;
        }
        untouched = untouched.saturating_add(4);
        address = address.saturating_add(4);
    }
    (size.saturating_sub(untouched), size)
}
