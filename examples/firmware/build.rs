//! Puts `link/memory.x` where the linker finds it (with the self-test's larger
//! regions under `--features selftest`, the live page's under `--features
//! live`) and links with cortex-m-rt's `link.x`. Passing `-Tlink.x` here rather
//! than in `.cargo/config.toml`'s rustflags keeps it in effect when a
//! `RUSTFLAGS` variable is set. The file is not at the package's root because
//! the linker looks for `memory.x` in its working directory (the package's
//! root) before the search path: there it would win over the self-test's.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut memory = fs::read_to_string("link/memory.x").expect("link/memory.x is readable");
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        // The self-test carries two stacks, clients and the cost measurement's
        // buffers: it gets 512 KiB of flash and 256 KiB of RAM (the board has
        // 4 MiB of each); the file store moves up. The budget is the services'.
        for (from, to) in [
            ("LENGTH = 128K", "LENGTH = 512K"),
            ("LENGTH = 64K", "LENGTH = 256K"),
            (
                "ORIGIN = 0x20010000, LENGTH = 4032K",
                "ORIGIN = 0x20040000, LENGTH = 3840K",
            ),
        ] {
            edit(&mut memory, from, to);
        }
    }
    if env::var_os("CARGO_FEATURE_LIVE").is_some()
        && env::var_os("CARGO_FEATURE_SELFTEST").is_none()
    {
        // The live page's markup and rendering do not fit the 128 KiB of flash,
        // and its 6 KiB page buffers leave the stack too little of the 64 KiB
        // (README): this build gets 8 KiB more of each; the file store moves up.
        for (from, to) in [
            ("LENGTH = 128K", "LENGTH = 136K"),
            ("LENGTH = 64K", "LENGTH = 72K"),
            (
                "ORIGIN = 0x20010000, LENGTH = 4032K",
                "ORIGIN = 0x20012000, LENGTH = 4024K",
            ),
        ] {
            edit(&mut memory, from, to);
        }
    }
    fs::write(out.join("memory.x"), memory).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=link/memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Replaces `from` with `to` in `memory`, which must contain it.
fn edit(memory: &mut String, from: &str, to: &str) {
    assert!(memory.contains(from), "memory.x has no {from:?}");
    *memory = memory.replace(from, to);
}
