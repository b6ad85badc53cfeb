//! Puts `link/memory.x` where the linker finds it (with the self-test's larger
//! regions under `--features selftest`, more RAM under `tftp` and `live`) and
//! links with cortex-m-rt's `link.x`. Passing `-Tlink.x` here rather than in
//! `.cargo/config.toml`'s rustflags keeps it in effect when a `RUSTFLAGS`
//! variable is set. The file is not at the package's root because the linker
//! looks for `memory.x` in its working directory (the package's root) before
//! the search path: there it would win over the self-test's.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut memory = fs::read_to_string("link/memory.x").expect("link/memory.x is readable");
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        // The self-test carries a second stack, a client and the link besides the
        // services: it gets 512 KiB of flash and 256 KiB of RAM (the board has
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
    let feature = |name: &str| env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    if !feature("SELFTEST") {
        // TFTP's task and two more sockets, and the live page's 4.6 KiB page
        // buffers, each leave the stack less than it uses (README): each gets
        // this build 8 KiB more RAM, and the file store moves up. TFTP also
        // overflows the 128 KiB of flash (by 2,596 B on 2026-12-07, README):
        // its builds get 8 KiB more flash, and 8 KiB more again with the live
        // page (138,232 B on 2026-12-07, 1,032 B short of 136 KiB: the room
        // is kept; the README has the figures).
        let more_ram = 8 * (u32::from(feature("TFTP")) + u32::from(feature("LIVE")));
        if more_ram > 0 {
            let ram = format!("LENGTH = {}K", 64 + more_ram);
            let store = format!(
                "ORIGIN = 0x{:08X}, LENGTH = {}K",
                0x2001_0000 + more_ram * 1024,
                4032 - more_ram
            );
            for (from, to) in [
                ("LENGTH = 64K", ram.as_str()),
                ("ORIGIN = 0x20010000, LENGTH = 4032K", store.as_str()),
            ] {
                edit(&mut memory, from, to);
            }
        }
        if feature("TFTP") {
            let flash = if feature("LIVE") {
                "LENGTH = 144K"
            } else {
                "LENGTH = 136K"
            };
            edit(&mut memory, "LENGTH = 128K", flash);
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
