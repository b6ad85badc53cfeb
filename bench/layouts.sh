#!/usr/bin/env bash
# The in-process benchmark's ratios under several code layouts.
#
# Where the linker puts each function moves bench_inprocess's CPU-time ratios by
# several points, more than most changes worth measuring: the same source built
# in two directories (whose paths change the symbols' hashes, and so the order
# of the functions) gave framed / raw-nodelay 0.71 and 0.80 on one machine, and
# shuffled orders 0.76 to 0.82. This script links the benchmark with lld in its own
# section order (seed 0) and in shuffled orders (seeds 1..N-1), runs every layout
# of every checkout given in turn, one run each per pass, and prints each run's
# framed / raw-nodelay, streaming / raw-nodelay and by-hand / raw-nodelay (the
# median of its rounds; by-hand is "-" for builds that did not run it in each
# round), then each checkout's median over all its layouts: a comparison of two
# builds that no single layout decides.
#
#   bench/layouts.sh                                  # this checkout, 6 layouts
#   bench/layouts.sh -n 8 -p 2 . ../smolsock-old      # two checkouts, 8 layouts, 2 passes
#   bench/layouts.sh '../smolsock-old:--no-default-features --features std'
#
# A checkout may carry cargo arguments after a colon (features of an old build).
# Each checkout is built in its own target directory; only the benchmark is
# relinked per layout. Needs the rust-lld that rustup ships with the toolchain.
set -euo pipefail

layouts=6 passes=1 mib=32 rounds=9 case=mcu
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    echo "options: -n LAYOUTS ($layouts)  -p PASSES ($passes)  -m MIB ($mib)  -r ROUNDS ($rounds)  -c CASE ($case)"
}
while getopts "n:p:m:r:c:h" opt; do
    case $opt in
    n) layouts=$OPTARG ;;
    p) passes=$OPTARG ;;
    m) mib=$OPTARG ;;
    r) rounds=$OPTARG ;;
    c) case=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- "$here"

gcc_ld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"
if [ ! -x "$gcc_ld/ld.lld" ]; then
    echo "layouts.sh: no rust-lld at $gcc_ld (rustup's toolchains ship it)" >&2
    exit 1
fi
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT

names=()
for spec in "$@"; do
    dir=${spec%%:*}
    args=""
    [ "$dir" = "$spec" ] || args=${spec#*:}
    dir=$(cd "$dir" && pwd)
    name=$(basename "$dir")
    # Two checkouts of one name: the second is told apart by its place.
    [[ " ${names[*]-} " != *" $name "* ]] || name="$name-${#names[@]}"
    names+=("$name")
    for seed in $(seq 0 $((layouts - 1))); do
        order=()
        [ "$seed" = 0 ] || order=(-C "link-arg=-Wl,--shuffle-sections=.text.*=$seed")
        echo "building $name, layout $seed" >&2
        # shellcheck disable=SC2086 # the cargo arguments are words
        (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo rustc -q --release $args \
            --example bench_inprocess -- \
            -C "link-arg=-B$gcc_ld" -C link-arg=-fuse-ld=lld "${order[@]}")
        cp "$dir/target/release/examples/bench_inprocess" "$bins/$name.$seed"
    done
done

# One CPU, the same for every run, when there are several.
pin=()
if command -v taskset > /dev/null && [ "$(nproc)" -gt 1 ]; then
    pin=(taskset -c 1)
fi

results="$bins/results"
: > "$results"
printf '%-6s %-28s %8s %11s %9s\n' layout checkout framed streaming by-hand
for pass in $(seq "$passes"); do
    for seed in $(seq 0 $((layouts - 1))); do
        for name in "${names[@]}"; do
            row=$("${pin[@]}" "$bins/$name.$seed" --mib "$mib" --rounds "$rounds" --only "$case" |
                grep '| raw-nodelay ')
            framed=$(echo "$row" | awk -F'|' '{ split($9, a, " "); print a[1] }')
            streaming=$(echo "$row" | awk -F'|' '{ split($10, a, " "); print a[1] }')
            by_hand=$(echo "$row" | awk -F'|' '{ split($11, a, " "); print (a[1] == "") ? "-" : a[1] }')
            printf '%-6s %-28s %8s %11s %9s\n' "$seed" "$name" "$framed" "$streaming" "$by_hand"
            echo "$name $framed $streaming $by_hand" >> "$results"
        done
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median over $layouts layouts x $passes passes, $case case, --mib $mib --rounds $rounds:"
for name in "${names[@]}"; do
    framed=$(awk -v n="$name" '$1 == n { print $2 }' "$results" | median)
    streaming=$(awk -v n="$name" '$1 == n { print $3 }' "$results" | median)
    by_hand=$(awk -v n="$name" '$1 == n && $4 != "-" { print $4 }' "$results" | median)
    printf '  %-28s framed / raw-nodelay %.3f   streaming / raw-nodelay %.3f   by-hand / raw-nodelay %s\n' \
        "$name" "$framed" "$streaming" "${by_hand:--}"
done
