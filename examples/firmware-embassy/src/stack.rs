//! The main stack's high-water mark: cortex-m-rt's `paint-stack` fills the stack
//! with a pattern at reset; the deepest word no longer holding it is how far the
//! stack has grown. (Tasks keep their state in their pools' statics, not on
//! this stack; it serves the executor's polls and the interrupt handlers.)

use cortex_m_rt::STACK_PAINT_VALUE;

#[allow(unsafe_code)]
unsafe extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// Bytes of stack used at most so far, and the stack's size.
#[allow(unsafe_code)]
pub fn high_water() -> (usize, usize) {
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let size = top.saturating_sub(bottom);
    let mut untouched = 0usize;
    let mut address = bottom;
    while address < top {
        // SAFETY: `_stack_end.._stack_start` is the stack region cortex-m-rt's
        // linker script defines: mapped RAM, word aligned; reading it races
        // nothing (this code's own frames are near the top).
        let word = unsafe { core::ptr::read_volatile(address as *const u32) };
        if word != STACK_PAINT_VALUE {
            break;
        }
        untouched = untouched.saturating_add(4);
        address = address.saturating_add(4);
    }
    (size.saturating_sub(untouched), size)
}
