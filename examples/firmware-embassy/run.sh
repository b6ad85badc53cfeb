#!/usr/bin/env bash
# Builds the embassy firmware with the size profile and boots it in QEMU
# (mps2-an386), its LAN9118 joined to a TAP device: the same flags, addresses
# and QEMU command as examples/firmware/run.sh (the poll-loop firmware).
#
#   examples/firmware-embassy/run.sh                     # on tap0 in this namespace
#   examples/firmware-embassy/run.sh --netns smolsock    # on tap0 inside namespace "smolsock"
#   examples/firmware-embassy/run.sh --tap tap1          # another TAP device
#   examples/firmware-embassy/run.sh --build-only        # build and print the sizes
#   examples/firmware-embassy/run.sh --selftest          # checks without a network, exit status
#   examples/firmware-embassy/run.sh --live              # with the live page on tcp/80
#
# The TAP device must exist already (this script never creates one): make it with
# `./tap-setup.sh up --netns smolsock`, and the firmware answers at 192.168.69.1
# and fdaa::1: tcp/7 and udp/7 echo, tcp/9000 framed echo, tcp/80 HTTP,
# tcp/2121 file transfer, ping.
# --selftest runs two embassy-net stacks inside the firmware over a link in
# memory, the services on one and a client on the other, prints one line per
# check and "N passed, M failed", and exits with QEMU's status (0: all passed).
# It builds into target/firmware-embassy-selftest, apart from the services.
# --live builds with `--features live` (tcp/80 serves the live page: every open
# connection's buffers as bars above the counters; 8 KiB more RAM than the
# budget, README) into target/firmware-embassy-live, apart from the default.
# Needs: rustup target thumbv7em-none-eabihf, qemu-system-arm; for the sizes,
# llvm-size or arm-none-eabi-size, and llvm-nm for RAM by static (optional).
set -euo pipefail

tap=tap0
netns=
selftest=false
build_only=false
live=false
while [ $# -gt 0 ]; do
    case "$1" in
        --tap) tap="${2:?--tap needs a device name}"; shift 2 ;;
        --netns) netns="${2:?--netns needs a namespace name}"; shift 2 ;;
        --selftest) selftest=true; shift ;;
        --build-only) build_only=true; shift ;;
        --live) live=true; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# cargo_remap: cargo with the source paths remapped to fixed names, so that the
# sizes do not depend on where the checkout or cargo's home is
# (examples/firmware/cargo-remap.sh).
# shellcheck source=examples/firmware/cargo-remap.sh
source "$here/../firmware/cargo-remap.sh"

qemu=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic
      -semihosting-config enable=on,target=native)

if $selftest; then
    # Another program (a second stack, a client, more RAM: build.rs), built
    # apart so that it never replaces the services' ELF.
    cargo_remap build --release --features selftest --target-dir ../../target/firmware-embassy-selftest
    elf="$here/../../target/firmware-embassy-selftest/thumbv7em-none-eabihf/release/smolsock-firmware-embassy"
    if $build_only; then
        exit 0
    fi
    # The self-test leaves the LAN9118 alone, but QEMU warns about a NIC with no
    # peer: give it a user-mode one that is restricted, so nothing can leave.
    exec "${qemu[@]}" -nic user,restrict=on,model=lan9118 -kernel "$elf"
fi

target=firmware-embassy
features=()
if $live; then
    target=firmware-embassy-live
    features=(--features live --target-dir "../../target/$target")
fi
cargo_remap build --release "${features[@]}"
elf="$here/../../target/$target/thumbv7em-none-eabihf/release/smolsock-firmware-embassy"

size_tool=
for candidate in llvm-size rust-size arm-none-eabi-size; do
    if command -v "$candidate" >/dev/null 2>&1; then
        size_tool="$candidate"
        break
    fi
done
if [ -n "$size_tool" ]; then
    "$size_tool" -A "$elf" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit|\.store) ' || true
    "$size_tool" -B "$elf"
else
    echo "run.sh: no llvm-size or arm-none-eabi-size found; sizes not shown" >&2
fi
# RAM by static: the task pools hold each service's buffers and sessions.
if command -v llvm-nm >/dev/null 2>&1; then
    echo "statics in RAM, bytes (the largest last):"
    llvm-nm -S --size-sort -C "$elf" | while read -r _ size kind name; do
        case "$kind" in
            b|B|d|D) printf '%9d  %s\n' "$((16#$size))" "${name%::h*}" ;;
        esac
    done | awk '$1 >= 64'
fi

if $build_only; then
    exit 0
fi

in_netns=()
if [ -n "$netns" ]; then
    in_netns=(ip netns exec "$netns")
fi
# QEMU would create a missing TAP device itself; refuse instead, so the device
# always lives where the user put it.
if ! "${in_netns[@]}" ip link show "$tap" >/dev/null 2>&1; then
    echo "run.sh: no TAP device $tap${netns:+ in namespace $netns}; create it first" >&2
    exit 1
fi
exec "${in_netns[@]}" "${qemu[@]}" \
    -nic "tap,ifname=$tap,script=no,downscript=no" -kernel "$elf"
