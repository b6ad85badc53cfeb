#!/usr/bin/env python3
"""The hot code of a run: the 64-byte lines of code that run again and again.

Reads a callgrind profile taken with instruction-level counts
(`valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=FILE ...`) and
counts the distinct 64-byte lines of code holding an instruction executed at
least MIN times (each instruction executed once costs one `Ir`). With MIN about
the number of loop turns that do the work, these are the lines the loop needs
in the instruction cache on every turn. Prints their number and size, then the
functions with the most of them.

    bench/hot_lines.py framed.cg 8000
    bench/hot_lines.py framed.cg 8000 --top 40
"""

import argparse
import collections
import re
import sys

LINE = 64


def positions(token, previous):
    """An address as callgrind writes it: absolute, relative, or the same."""
    if token == "*":
        return previous
    if token.startswith("0x"):
        return int(token, 16)
    if token[0] in "+-":
        step = int(token[1:], 16) if token[1:].startswith("0x") else int(token[1:])
        return previous + step if token[0] == "+" else previous - step
    return int(token)


def read(path):
    """The cost of each instruction (object, address), and the function of each."""
    names = {}
    cost = collections.Counter()
    function_of = {}
    function = obj = None
    objects = {}
    address = 0
    after_call = False
    named = re.compile(r"^(c?fn|c?ob)=\((\d+)\)(?: (.*))?$")
    with open(path, encoding="utf-8", errors="replace") as profile:
        if not profile.readline().startswith("# callgrind format"):
            sys.exit(f"{path}: not a callgrind profile")
        for line in profile:
            line = line.rstrip("\n")
            if line.startswith("positions:") and "instr" not in line.split():
                sys.exit(f"{path}: no instruction-level counts (take it with --dump-instr=yes)")
            match = named.match(line)
            if match:
                kind, key, name = match.groups()
                table = objects if kind.endswith("ob") else names
                if name:
                    table[key] = name
                if kind == "fn":
                    function = names.get(key)
                elif kind == "ob":
                    obj = objects.get(key)
                continue
            if line.startswith("calls="):
                # The next cost line is the call's inclusive cost, not the caller's own.
                after_call = True
                continue
            if not line or line[0] not in "0123456789+-*":
                continue
            fields = line.split()
            try:
                address = positions(fields[0], address)
            except ValueError:
                sys.exit(f"{path}: cannot read the position of {line!r}")
            if after_call:
                after_call = False
                continue
            if len(fields) >= 3:
                cost[(obj, address)] += int(fields[2])
                function_of[(obj, address)] = function
    if not cost:
        sys.exit(f"{path}: no instruction-level counts (take it with --dump-instr=yes)")
    return cost, function_of


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="callgrind output taken with --dump-instr=yes")
    parser.add_argument("min", type=int, help="executions that make an instruction hot")
    parser.add_argument("--top", type=int, default=20, help="functions to list")
    args = parser.parse_args()
    cost, function_of = read(args.profile)
    lines = set()
    by_function = collections.defaultdict(set)
    for (obj, address), executed in cost.items():
        if executed >= args.min:
            key = (obj, address // LINE)
            lines.add(key)
            by_function[function_of[(obj, address)] or "?"].add(key)
    print(f"{len(lines)} hot lines of {LINE} bytes ({len(lines) * LINE} bytes), "
          f"instructions executed at least {args.min} times")
    ranked = sorted(by_function.items(), key=lambda item: (-len(item[1]), item[0]))
    for name, held in ranked[: args.top]:
        print(f"{len(held):6}  {name}")


if __name__ == "__main__":
    main()
