#!/usr/bin/env bash
# The in-process benchmark's ratios under several code layouts.
#
# Where the linker puts each function moves bench_inprocess's CPU-time ratios by
# several points, more than most changes worth measuring: the same source built
# in two directories (whose paths change the symbols' hashes, and so the order
# of the functions) gave framed / raw-nodelay 0.71 and 0.80 on one machine, and
# shuffled orders 0.76 to 0.85. This script links the benchmark with lld in its
# own section order (layout 0, which need not be the order of a plain `cargo
# build`) and in shuffled orders (layouts 1..N-1), runs every layout of every
# checkout given in turn, one run each per pass, and prints each run's framed /
# raw-nodelay, streaming / raw-nodelay and by-hand / raw-nodelay (the median of
# its rounds; "-" for a column the build does not print: by-hand ran in each
# round only from 2026-12-06), then each checkout's median over all its
# layouts: a comparison of two builds that no single layout decides.
#
#   bench/layouts.sh                                  # this checkout, 6 layouts
#   bench/layouts.sh -n 8 -p 2 . ../smolsock-old      # two checkouts, 8 layouts, 2 passes
#   bench/layouts.sh '../smolsock-old:--no-default-features --features std'
#
# A checkout may carry cargo arguments after a colon (features of an old build).
# Each checkout's benchmark is built in its own target/layouts directory (the
# first time, with its dependencies) and rebuilt per layout. Needs the rust-lld
# that rustup ships with the toolchain.
set -euo pipefail
export LC_ALL=C

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
for count in "$layouts" "$passes" "$mib" "$rounds"; do
    if ! [[ $count =~ ^[1-9][0-9]*$ ]]; then
        echo "layouts.sh: -n, -p, -m and -r take a whole number from 1 ($count)" >&2
        exit 2
    fi
done
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
    base=$(basename "$dir" | tr -c '[:alnum:]._\n-' '_')
    # Checkouts of one name are told apart by their place in the list.
    name=$base
    while [[ " ${names[*]-} " == *" $name "* ]]; do
        name="$base-${#names[@]}"
        base=$name
    done
    names+=("$name")
    for seed in $(seq 0 $((layouts - 1))); do
        order=()
        [ "$seed" = 0 ] || order=(-C "link-arg=-Wl,--shuffle-sections=.text.*=$seed")
        echo "building $name, layout $seed" >&2
        # shellcheck disable=SC2086 # the cargo arguments are words
        (cd "$dir" && CARGO_TARGET_DIR="$dir/target/layouts" cargo rustc -q --release $args \
            --example bench_inprocess -- \
            -C "link-arg=-B$gcc_ld" -C link-arg=-fuse-ld=lld "${order[@]}")
        cp "$dir/target/layouts/release/examples/bench_inprocess" "$bins/$name.$seed"
    done
done

# One CPU, the same for every run: the last this script may use, when it may
# use several.
pin=()
if command -v taskset > /dev/null && [ "$(nproc)" -gt 1 ]; then
    cpu=$(taskset -pc $$ | sed 's/.*: //' | tr ',-' '\n\n' | tail -n 1)
    pin=(taskset -c "$cpu")
fi

# The three ratios of the raw-nodelay row, found by their columns' names ("-"
# for a column the build lacks).
ratios() {
    awk -F'|' '
        NR == 1 {
            for (i = 1; i <= NF; i++) {
                name = $i
                gsub(/ /, "", name)
                column[name] = i
            }
        }
        $2 ~ /^ raw-nodelay / {
            rows++
            line = ""
            split("framed/this streaming/this by-hand/this", wanted, " ")
            for (k = 1; k <= 3; k++) {
                value = "-"
                if (wanted[k] in column) {
                    split($(column[wanted[k]]), cell, " ")
                    if (cell[1] != "") value = cell[1]
                }
                line = line (k > 1 ? " " : "") value
            }
            print line
        }
        END { if (rows != 1) exit 1 }'
}

results="$bins/results"
: > "$results"
printf '%-4s %-6s %-28s %8s %11s %9s\n' pass layout checkout framed streaming by-hand
for pass in $(seq "$passes"); do
    for seed in $(seq 0 $((layouts - 1))); do
        for name in "${names[@]}"; do
            if ! row=$("${pin[@]}" "$bins/$name.$seed" --mib "$mib" --rounds "$rounds" --only "$case" |
                ratios); then
                echo "layouts.sh: $name's benchmark gave no single raw-nodelay row for case '$case'" >&2
                exit 1
            fi
            read -r framed streaming by_hand <<< "$row"
            printf '%-4s %-6s %-28s %8s %11s %9s\n' "$pass" "$seed" "$name" "$framed" "$streaming" "$by_hand"
            echo "$name $framed $streaming $by_hand" >> "$results"
        done
    done
done

# The median of the numbers on standard input ("-" when there are none).
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "-"
        else printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
# The median of column `$2` of checkout `$1`'s results.
median_of() { awk -v n="$1" -v k="$2" '$1 == n && $k != "-" { print $k }' "$results" | median; }
echo "median over $layouts layouts x $passes passes, $case case, --mib $mib --rounds $rounds:"
for name in "${names[@]}"; do
    printf '  %-28s framed / raw-nodelay %s   streaming / raw-nodelay %s   by-hand / raw-nodelay %s\n' \
        "$name" "$(median_of "$name" 2)" "$(median_of "$name" 3)" "$(median_of "$name" 4)"
done
