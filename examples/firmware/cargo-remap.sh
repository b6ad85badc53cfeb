#!/usr/bin/env bash
# Runs cargo for a firmware with the source paths it compiles in made
# independent of where the repository and cargo's home are: the firmware's
# sizes, and so whether it fits its flash, then no longer grow with those paths
# (what is left: a few bytes of alignment padding, examples/firmware/README.md).
#
#   examples/firmware/cargo-remap.sh build --release             # in a firmware's folder
#   examples/firmware/cargo-remap.sh run --release --features selftest
#
# run.sh, compare.sh and cost.sh source this file for `cargo_remap`, which
# takes cargo's arguments; tests/firmware.rs passes the same flags.
#
# Why: a panic's location (`.rodata`) carries its source file's path, and cargo
# hands rustc absolute paths for smolsock and lan9118 (path dependencies outside
# the firmware's workspace) and for the registry's crates ($CARGO_HOME/registry/
# src/index.crates.io-.../smoltcp-0.14.0/...). So a plain `cargo build` grows by
# a byte per character of those paths for every panic location in the firmware,
# and a checkout at a long path, or a long CARGO_HOME, overflowed the 128 KiB.
# rustc's --remap-path-prefix (stable) rewrites them to fixed names:
#
#   the repository's root                          -> smolsock
#   $CARGO_HOME/registry/src/index.crates.io-HASH  -> crates.io
#   $CARGO_HOME (other registries, git checkouts)  -> cargo-home
#
# (the longest prefix that matches wins). The core library's paths are fixed
# already (/rustc/COMMIT/library/...), and the firmware's own files are relative.
# The names apply to the debug info too: a debugger finds the sources with, in
# gdb, `set substitute-path smolsock /path/to/the/checkout` (likewise crates.io).
#
# The flags go in as `--config target.thumbv7em-none-eabihf.rustflags=[...]`,
# which cargo joins with the same key from any .cargo/config.toml. A RUSTFLAGS
# or CARGO_ENCODED_RUSTFLAGS variable would make cargo ignore those keys, so when
# one is set, the flags are appended to it instead. A `build.rustflags` of your
# own cargo config is ignored by cargo whenever a target's rustflags are set,
# these included: put such flags under [target.thumbv7em-none-eabihf] instead.
# Not on stable Rust (1.95): -Zlocation-detail=none and Cargo's trim-paths.

# The registry's folder for crates.io: cargo names it after a hash of the index
# URL that has stayed the same since cargo 1.85 (the firmwares need 1.91).
CRATES_IO_DIR=index.crates.io-1949cf8c6b5b557f

# The --remap-path-prefix flags, one per line, the shortest FROM first (rustc
# applies the last that matches). tests/firmware.rs makes the same list.
remap_flags() {
    local root cargo_home pairs=() pair from
    # (CDPATH unset: with it, `cd` to a relative path prints where it went.)
    root="$(CDPATH='' cd -- "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
    cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    case "$cargo_home" in
        /*) ;;
        *) cargo_home="$PWD/$cargo_home" ;;
    esac
    # Cargo uses CARGO_HOME as given and the checkout's physical path (from the
    # working directory): remap both spellings of a symlinked CARGO_HOME.
    for from in "$cargo_home" "$(CDPATH='' cd -- "$cargo_home" 2>/dev/null && pwd -P)"; do
        [ -n "$from" ] || continue
        pairs+=("$from=cargo-home" "$from/registry/src/$CRATES_IO_DIR=crates.io")
    done
    pairs+=("$root=smolsock")
    # Sorted by the length of FROM (the names have no "="), duplicates dropped.
    printf '%s\n' "${pairs[@]}" | awk '!seen[$0]++ { print match($0, /=[^=]*$/) "\t" $0 }' \
        | sort -n -s -k1,1 | cut -f2- | while IFS= read -r pair; do
            printf -- '--remap-path-prefix=%s\n' "$pair"
        done
}

# cargo "$@" with the remapping flags for the firmware's target.
cargo_remap() {
    local flags=() flag toml=
    while IFS= read -r flag; do flags+=("$flag"); done < <(remap_flags)
    if [ -n "${CARGO_ENCODED_RUSTFLAGS+set}" ] || [ -n "${RUSTFLAGS+set}" ]; then
        local encoded="${CARGO_ENCODED_RUSTFLAGS-}" sep=$'\x1f' words=() word
        if [ -z "${CARGO_ENCODED_RUSTFLAGS+set}" ]; then
            read -r -a words <<<"$RUSTFLAGS"
            for word in "${words[@]}"; do encoded="${encoded:+$encoded$sep}$word"; done
        fi
        for flag in "${flags[@]}"; do encoded="${encoded:+$encoded$sep}$flag"; done
        env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS="$encoded" cargo "$@"
        return
    fi
    for flag in "${flags[@]}"; do
        flag="${flag//\\/\\\\}"
        toml="${toml:+$toml, }\"${flag//\"/\\\"}\""
    done
    cargo --config "target.thumbv7em-none-eabihf.rustflags=[$toml]" "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        ""|-h|--help) sed -n '2,/^# Not on stable/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    esac
    cargo_remap "$@"
fi
