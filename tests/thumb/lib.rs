//! Every size `../memory/table.rs` pins for thumbv7em, checked by the compiler:
//! a row whose figure is not the type's size there fails to build, with
//! "expected an array with a size of PINNED, found one with a size of ACTUAL".
//! Built for thumbv7em-none-eabihf (`cargo build --target thumbv7em-none-eabihf`
//! in this directory); on another target the sizes differ and it is not built.
#![no_std]
#![cfg(all(target_arch = "arm", target_pointer_width = "32"))]

macro_rules! sizes {
    ($(($name:literal, $what:literal, $size:expr, $bits64:literal, $thumb:literal)),* $(,)?) => {
        $(const _: [(); $thumb] = [(); $size];)*
    };
}

include!("../memory/table.rs");
