//! Every size `../memory/table.rs` pins for thumbv7em, checked by the compiler:
//! a row whose figure is not the type's size there fails to build, with
//! "expected an array with a size of PINNED, found one with a size of ACTUAL".
//! Built for thumbv7em-none-eabihf (`cargo build --target thumbv7em-none-eabihf`
//! in this directory); on another target the sizes differ and it is not built.
//! It also checks, the same way, the largest frame a 4-byte header allows here.
#![no_std]
#![cfg(all(target_arch = "arm", target_pointer_width = "32"))]

macro_rules! sizes {
    ($(($name:literal, $what:literal, $size:expr, $bits64:literal, $thumb:literal)),* $(,)?) => {
        $(const _: [(); $thumb] = [(); $size];)*
    };
}

include!("../memory/table.rs");

// A whole frame, header included, is counted in a usize: on this 32-bit target
// a 4-byte header's largest body is 2^32 - 5 bytes, so that no frame length
// saturates.
const _: () = {
    use smolsock::wire::frame::{ByteOrder, FormatError, HeaderFormat, HeaderWidth};
    assert!(matches!(
        HeaderFormat::new(HeaderWidth::U32, ByteOrder::Big, u32::MAX),
        Err(FormatError::MaxLenTooLarge {
            limit: 0xFFFF_FFFB,
            ..
        })
    ));
    assert!(HeaderFormat::new(HeaderWidth::U32, ByteOrder::Big, 0xFFFF_FFFB).is_ok());
};
