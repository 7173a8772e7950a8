#!/usr/bin/env python3
"""criterion_rows.py LOG: one JSON row per criterion benchmark in a `cargo bench` output.

Criterion prints `name  time: [low estimate high]` (the name on a line of its own when long);
the row keeps the three figures in nanoseconds.
"""
import json
import re
import sys

UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"^(?P<name>\S.*?)?\s*time:\s+\[(?P<v>[^\]]+)\]")


def main():
    name = None
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = TIME.match(line)
        if m:
            if m.group("name"):
                name = m.group("name").strip()
            parts = m.group("v").split()
            if name and len(parts) == 6:
                ns = [round(float(parts[i]) * UNIT[parts[i + 1]], 3) for i in (0, 2, 4)]
                print(json.dumps({"target": "criterion", "scenario": "hot-path", "kind": "criterion",
                                  "name": name, "low_ns": ns[0], "ns": ns[1], "high_ns": ns[2]}))
            name = None
        elif line and not line[0].isspace() and " " not in line.strip() and not line.startswith(("Benchmarking", "Found", "Gnuplot")):
            name = line.strip()


if __name__ == "__main__":
    main()
