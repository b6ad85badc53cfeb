#!/usr/bin/env bash
# The two firmwares side by side: the poll loop (examples/firmware) and embassy
# (examples/firmware-embassy), both built with the same size profile.
#
#   examples/firmware-embassy/compare.sh               # sizes, RAM by component, figures
#   examples/firmware-embassy/compare.sh --sizes-only  # no QEMU, no root
#
# Prints Markdown tables:
# - flash (vector table + .text + .rodata + .data) and RAM (.data + .bss) of
#   each ELF, and how far the embassy firmware is from the poll loop's;
# - RAM by component, from each static's size (llvm-nm): stack resources,
#   socket buffers, sessions, task pools, the rest; the file store (.store) is
#   left out, as from the budget;
# - unless --sizes-only: echo round trips per second, bulk echo (tcp/7, 256 KiB)
#   and framed echo (tcp/9000, 256 frames of 1 KiB) throughput, 1 MiB upload
#   and download throughput over tap0, and the stack's high-water mark from /stats after that
#   traffic. These come from the kernel-side suite (tests/firmware.rs, test
#   serves_every_service_over_ipv4_and_ipv6 for each firmware, one after the
#   other), which boots each firmware under QEMU in a network namespace of its
#   own and prints a "figures:" line. Needs root and qemu-system-arm.
#
# Exits with status 1 if the embassy firmware misses a target: at most 128 KiB
# of flash and 64 KiB of RAM (statics, and statics with the stack's high-water
# mark), within 25 % of the poll loop's flash and statics.
#
# QEMU emulates the CPU: these figures compare the two firmwares on the same
# machine and nothing more; they say nothing of a real board.
# Needs: rustup target thumbv7em-none-eabihf, llvm-size and llvm-nm.
set -euo pipefail

sizes_only=false
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes-only) sizes_only=true; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
poll_elf="$root/target/firmware/thumbv7em-none-eabihf/release/smolsock-firmware"
embassy_elf="$root/target/firmware-embassy/thumbv7em-none-eabihf/release/smolsock-firmware-embassy"

# As run.sh builds them: the source paths remapped to fixed names, so that the
# sizes do not depend on where the checkout or cargo's home is.
# shellcheck source=examples/firmware/cargo-remap.sh
source "$root/examples/firmware/cargo-remap.sh"
(cd "$root/examples/firmware" && cargo_remap build --release --quiet)
(cd "$here" && cargo_remap build --release --quiet)

# Bytes of section $2 in ELF $1 (0 if absent).
section() {
    llvm-size -A "$1" | awk -v name="$2" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

# Statics in RAM of ELF $1 as "bytes name" lines (the file store left out).
statics() {
    llvm-nm -S -C "$1" | while read -r _ size kind name; do
        case "$kind" in
            b|B|d|D) printf '%d %s\n' "$((16#$size))" "${name%::h*}" ;;
        esac
    done | grep -v '::STORE$' || true
}

# The component of static $1 (a Rust path): the same names in both firmwares
# where they exist.
component() {
    case "$1" in
        *::DEVICE|*::INTERFACE|*::SOCKET_STORAGE|*::SOCKET_SET|*::BACKLOG|*::RESOURCES|*::ETHERNET|*::EXECUTOR|*::net_task::POOL)
            echo "stack resources" ;;
        *_task::POOL) echo "task pools" ;;
        *::SITE|*::LIVE|*::SERVICES) echo "the rest" ;;
        *_RX_BUF|*_TX_BUF|*_PAYLOAD|*_META) echo "socket buffers" ;;
        *::services::*) echo "sessions" ;;
        *) echo "the rest" ;;
    esac
}

declare -A flash ram stat
for fw in poll embassy; do
    if [ "$fw" = poll ]; then elf="$poll_elf"; else elf="$embassy_elf"; fi
    vt=$(section "$elf" .vector_table)
    text=$(section "$elf" .text)
    rodata=$(section "$elf" .rodata)
    data=$(section "$elf" .data)
    bss=$(section "$elf" .bss)
    flash[$fw]=$((vt + text + rodata + data))
    ram[$fw]=$((data + bss))
    stat[$fw.text]=$((vt + text))
    stat[$fw.rodata]=$rodata
    stat[$fw.data]=$data
    stat[$fw.bss]=$bss
    for c in "stack resources" "socket buffers" "sessions" "task pools" "the rest"; do
        stat[$fw.$c]=0
    done
    while read -r bytes name; do
        c=$(component "$name")
        stat[$fw.$c]=$((stat[$fw.$c] + bytes))
    done < <(statics "$elf")
    # Padding between statics counts with the rest.
    listed=0
    for c in "stack resources" "socket buffers" "sessions" "task pools" "the rest"; do
        listed=$((listed + stat[$fw.$c]))
    done
    stat[$fw.the rest]=$((stat[$fw.the rest] + ram[$fw] - listed))
done

percent() { # change from $1 to $2, in %
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f %%", (b - a) * 100 / a }'
}
kib() { awk -v n="$1" 'BEGIN { printf "%.1f KiB", n / 1024 }'; }

echo "## Sizes ($(date -u +%Y-%m-%d), $(rustc --version | cut -d' ' -f1-2), opt-level s, fat LTO)"
echo
echo "| | poll loop | embassy | change |"
echo "|---|---:|---:|---:|"
echo "| vector table + .text | ${stat[poll.text]} | ${stat[embassy.text]} | $(percent "${stat[poll.text]}" "${stat[embassy.text]}") |"
echo "| .rodata | ${stat[poll.rodata]} | ${stat[embassy.rodata]} | $(percent "${stat[poll.rodata]}" "${stat[embassy.rodata]}") |"
echo "| .data | ${stat[poll.data]} | ${stat[embassy.data]} | |"
echo "| .bss (file store excluded) | ${stat[poll.bss]} | ${stat[embassy.bss]} | $(percent "${stat[poll.bss]}" "${stat[embassy.bss]}") |"
echo "| **flash** (vector table + .text + .rodata + .data) | ${flash[poll]} ($(kib "${flash[poll]}")) | ${flash[embassy]} ($(kib "${flash[embassy]}")) | $(percent "${flash[poll]}" "${flash[embassy]}") |"
echo "| **RAM** (.data + .bss) | ${ram[poll]} ($(kib "${ram[poll]}")) | ${ram[embassy]} ($(kib "${ram[embassy]}")) | $(percent "${ram[poll]}" "${ram[embassy]}") |"
echo
echo "## RAM by component, bytes (file store excluded)"
echo
echo "| component | poll loop | embassy |"
echo "|---|---:|---:|"
# embassy keeps a connection's socket buffers and session in its task's state.
inside() { if [ "$1" -eq 0 ]; then echo "in the task pools"; else echo "$1"; fi; }
echo "| stack resources: driver, interface, socket slots, backlog; executor, runner | ${stat[poll.stack resources]} | ${stat[embassy.stack resources]} |"
echo "| socket buffers | ${stat[poll.socket buffers]} | $(inside "${stat[embassy.socket buffers]}") |"
echo "| sessions and servers | ${stat[poll.sessions]} | $(inside "${stat[embassy.sessions]}") |"
echo "| task pools: socket buffers, adapter buffers, sessions, futures | ${stat[poll.task pools]} | ${stat[embassy.task pools]} |"
echo "| status page, logger, padding | ${stat[poll.the rest]} | ${stat[embassy.the rest]} |"
echo "| **.data + .bss** | **${ram[poll]}** | **${ram[embassy]}** |"
echo
# The targets: embassy at most 128 KiB of flash and 64 KiB of RAM, and within
# 25 % of the poll loop's.
verdict() { if [ "$1" -le "$2" ]; then echo met; else echo MISSED; fi; }
# Exit status 1 if any target is missed (CI runs --sizes-only).
missed=false
check() { if [ "$1" -gt "$2" ]; then missed=true; fi; }
check "${flash[embassy]}" 131072
check "${flash[embassy]}" $((flash[poll] * 5 / 4))
check "${ram[embassy]}" 65536
check "${ram[embassy]}" $((ram[poll] * 5 / 4))
echo "- embassy flash ≤ 128 KiB: $(verdict "${flash[embassy]}" 131072);" \
     "within 25 % of the poll loop's: $(verdict "${flash[embassy]}" $((flash[poll] * 5 / 4)))"
echo "- embassy RAM (statics) ≤ 64 KiB: $(verdict "${ram[embassy]}" 65536);" \
     "within 25 % of the poll loop's: $(verdict "${ram[embassy]}" $((ram[poll] * 5 / 4)))"

if $sizes_only; then
    if $missed; then exit 1; fi
    exit 0
fi

echo
echo "## Over tap0 under QEMU (compares the two firmwares, nothing more)"
echo
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
(cd "$root" && cargo test --quiet --test firmware -- --include-ignored --nocapture \
    --test-threads 1 serves_every_service_over_ipv4_and_ipv6) >"$log" 2>&1 || {
    cat "$log" >&2
    echo "compare.sh: the firmware tests failed" >&2
    exit 1
}
# "figures: TAG key=value ..." per firmware.
figure() { sed -n "s/^figures: $1 .*$2=\([0-9]*\).*/\1/p" "$log"; }
echo "| figure | poll loop | embassy |"
echo "|---|---:|---:|"
echo "| tcp/7 echo round trips per second (32 B, one connection, 200 in a row) | $(figure poll echo_round_trips_per_s) | $(figure embassy echo_round_trips_per_s) |"
echo "| tcp/7 echo of 256 KiB on one connection, KiB/s each way | $(figure poll echo_kib_per_s) | $(figure embassy echo_kib_per_s) |"
echo "| tcp/9000 framed echo, 256 frames of 1 KiB, KiB/s each way | $(figure poll framed_kib_per_s) | $(figure embassy framed_kib_per_s) |"
echo "| tcp/2121 1 MiB upload, KiB/s (IPv4) | $(figure poll upload_kib_per_s) | $(figure embassy upload_kib_per_s) |"
echo "| tcp/2121 1 MiB download, KiB/s (IPv6) | $(figure poll download_kib_per_s) | $(figure embassy download_kib_per_s) |"
echo "| stack high-water mark after that traffic, B (/stats) | $(figure poll stack_high_water) | $(figure embassy stack_high_water) |"
for fw in poll embassy; do
    if [ "$fw" = poll ]; then ram_fw=${ram[poll]}; else ram_fw=${ram[embassy]}; fi
    s=$(figure "$fw" stack_high_water)
    if [ -z "$s" ]; then
        echo "compare.sh: no figures from the $fw firmware's test" >&2
        exit 1
    fi
    echo "- $fw: statics + stack high-water mark $((ram_fw + s)) B, ≤ 64 KiB: $(verdict $((ram_fw + s)) 65536)"
    check $((ram_fw + s)) 65536
done
if $missed; then exit 1; fi
