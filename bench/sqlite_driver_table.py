#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md from `scripts/profile-sqlite-driver`
(Ir/op, c=1 and c=16 reports) and criterion's output of
`cargo bench -p portcullis-bench --bench sqlite_driver` (medians).
usage: bench/sqlite_driver_table.py [$CARGO_TARGET_DIR]"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", "target")
DRIVERS = ["any", "sqlite", "deadpool_sqlite", "blocking", "inline"]
LABEL = {
    "any": "sqlx `AnyPool` (today)",
    "sqlite": "sqlx `SqlitePool` (typed)",
    "deadpool_sqlite": "rusqlite + deadpool-sqlite (`interact`)",
    "blocking": "rusqlite + deadpool unmanaged + `spawn_blocking`",
    "inline": "rusqlite inline, no runtime (floor)",
}

ir = {}
for conc in (1, 16):
    path = os.path.join(root, "profile", "sqlite_driver", f"report-c{conc}.txt")
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) == 4 and f[3].isdigit():
                ir[(f[0], f[1], conc)] = int(f[3])


def median_us(stmt, driver, conc):
    p = os.path.join(root, "criterion", f"sqlite_driver_{stmt}", driver, f"c{conc}", "new", "estimates.json")
    if not os.path.exists(p):
        return None
    return json.load(open(p))["median"]["point_estimate"] / 1e3


def fmt(v, unit=""):
    if v is None:
        return "–"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:,.1f}{unit}"


def ratio(v, base):
    return "–" if v is None or not base else f"{v / base:.2f}×"


for stmt in ("rename", "stamp", "list"):
    print(f"\n**{stmt}**\n")
    print("| driver | Ir/op c=1 | Ir/op c=16 | median µs c=1 | median µs c=16 | Ir ratio to Any (c=1 / c=16) | µs ratio to Any (c=1 / c=16) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = {c: ir.get(("any", stmt, c)) for c in (1, 16)}
    tbase = {c: median_us(stmt, "any", c) for c in (1, 16)}
    for d in DRIVERS:
        i = {c: ir.get((d, stmt, c)) for c in (1, 16)}
        t = {c: median_us(stmt, d, c) for c in (1, 16)}
        print(f"| {LABEL[d]} | {fmt(i[1])} | {fmt(i[16])} | {fmt(t[1])} | {fmt(t[16])} "
              f"| {ratio(i[1], base[1])} / {ratio(i[16], base[16])} "
              f"| {ratio(t[1], tbase[1])} / {ratio(t[16], tbase[16])} |")
