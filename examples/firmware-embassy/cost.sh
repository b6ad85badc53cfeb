#!/usr/bin/env bash
# What a byte costs on the emulated Cortex-M4, for both firmwares: runs each
# firmware's self-test (examples/firmware and examples/firmware-embassy, built
# with --features selftest) under QEMU with -icount shift=0,sleep=on, and
# prints one Markdown table of the "cost:" lines they log.
#
#   examples/firmware-embassy/cost.sh
#
# Each self-test echoes 1 MiB between two stacks inside the firmware (no TAP,
# no root), once per path: a socket loop with no smolsock (the stack's share),
# the raw echo of tcp/7, and the framed echo of tcp/9000 in 1 KiB and in
# 64 KiB frames, each as the firmware serves it. With -icount shift=0 the core
# runs one instruction per nanosecond of emulated time and a sleeping core's
# time jumps ahead (sleep=on), so the runs are deterministic and the busy
# nanoseconds are instructions. QEMU counts instructions, not cycles: it does
# not model the DWT cycle counter (the poll-loop self-test reads it; QEMU logs
# "Read of unassigned area of PPB" and it stays 0), nor caches, wait states or
# the M4's pipeline. A real board's cycles per instruction are 1 or more.
#
# "instructions/B" counts everything the core did while the echo ran: both
# stacks, the link in memory, the client making and checking every byte, the
# server. "smolsock's share" is a path's figure less the socket loop's.
# "asleep" (embassy) is the emulated time the core slept waiting on a timer.
# Needs: rustup target thumbv7em-none-eabihf, qemu-system-arm.
set -euo pipefail

case "${1:-}" in
    "") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    *) echo "cost.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
poll_elf="$root/target/firmware-selftest/thumbv7em-none-eabihf/release/smolsock-firmware"
embassy_elf="$root/target/firmware-embassy-selftest/thumbv7em-none-eabihf/release/smolsock-firmware-embassy"

# The same target directories and flags as tests/firmware.rs, apart from the
# services' (cargo_remap: examples/firmware/cargo-remap.sh).
# shellcheck source=examples/firmware/cargo-remap.sh
source "$root/examples/firmware/cargo-remap.sh"
(cd "$root/examples/firmware" && cargo_remap build --release --quiet --features selftest \
    --target-dir ../../target/firmware-selftest)
(cd "$here" && cargo_remap build --release --quiet --features selftest \
    --target-dir ../../target/firmware-embassy-selftest)

qemu=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic
      -semihosting-config enable=on,target=native
      -nic user,restrict=on,model=lan9118
      -icount shift=0,sleep=on)

poll_log="$(mktemp)"
embassy_log="$(mktemp)"
trap 'rm -f "$poll_log" "$embassy_log"' EXIT
# -d guest_errors,unimp: QEMU says so when the firmware touches the DWT.
for fw in poll embassy; do
    if [ "$fw" = poll ]; then elf="$poll_elf"; log="$poll_log"; else elf="$embassy_elf"; log="$embassy_log"; fi
    if ! "${qemu[@]}" -d guest_errors,unimp -kernel "$elf" >"$log" 2>&1; then
        cat "$log" >&2
        echo "cost.sh: the $fw self-test failed" >&2
        exit 1
    fi
done

# "cost: NAME: ... in N ns of emulated time ..." -> N for path NAME.
# (Path names hold slashes: the sed commands use | instead.)
ns() { sed -n "s|^.*cost: $2: .* in \([0-9]*\) ns of emulated time.*|\1|p" "$1"; }
asleep() { sed -n "s|^.*cost: $1: .*asleep \([0-9]*\) us.*|\1|p" "$embassy_log"; }
per_byte() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1048576 }'; }
share() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f (%+.0f %%)", (a - b) / 1048576, (a - b) * 100 / b }'; }
millis() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

base="stack only (a socket loop, no smolsock)"
echo "## Instructions per byte echoed, 1 MiB per path ($(date -u +%Y-%m-%d))"
echo
echo "\`examples/firmware-embassy/cost.sh\`: each firmware's self-test under"
echo "\`${qemu[*]}\`"
echo "($(qemu-system-arm --version | head -n 1), $(rustc --version | cut -d' ' -f1-2))."
echo
echo "| path | poll loop | smolsock's share | embassy | smolsock's share | embassy asleep, ms |"
echo "|---|---:|---:|---:|---:|---:|"
for path in "$base" "tcp/7 raw echo (session::Echo)" \
    "tcp/9000 framed echo, 1 KiB frames" "tcp/9000 framed echo, 64 KiB frames"; do
    p=$(ns "$poll_log" "$path")
    e=$(ns "$embassy_log" "$path")
    if [ -z "$p" ] || [ -z "$e" ]; then
        echo "cost.sh: no figure for \"$path\"" >&2
        exit 1
    fi
    if [ "$path" = "$base" ]; then
        ps="-"; es="-"
    else
        ps=$(share "$p" "$(ns "$poll_log" "$base")")
        es=$(share "$e" "$(ns "$embassy_log" "$base")")
    fi
    echo "| $path | $(per_byte "$p") | $ps | $(per_byte "$e") | $es | $(millis "$(asleep "$path")") |"
done
echo
grep -h -E "dwt: CYCCNT read|unassigned area of PPB: offset 0x1004" "$poll_log" | sort -u | sed 's/^/    /'
