//! Puts `memory.x` where the linker finds it and links with cortex-m-rt's
//! `link.x`. Passing `-Tlink.x` here rather than in `.cargo/config.toml`'s
//! rustflags keeps it in effect when a `RUSTFLAGS` variable is set.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("memory.x is readable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
