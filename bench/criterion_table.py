#!/usr/bin/env python3
"""ns/byte table from criterion's output of `cargo bench --bench decoders`.
usage: bench/criterion_table.py [$CARGO_TARGET_DIR/criterion]"""
import glob
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
rows = []
for bench in glob.glob(os.path.join(root, "*", "*", "*", "new", "benchmark.json")):
    d = os.path.dirname(bench)
    with open(bench) as f:
        b = json.load(f)
    with open(os.path.join(d, "estimates.json")) as f:
        e = json.load(f)
    tp = (b.get("throughput") or {}).get("Bytes")
    mean = e["mean"]["point_estimate"]
    rows.append((b["group_id"], b["function_id"] or "", int(b["value_str"] or 0), tp, mean))
rows.sort()
print("| group | variant | n | input bytes | time per input | ns/byte |")
print("|---|---|---:|---:|---:|---:|")
for g, fn, n, tp, mean in rows:
    t = f"{mean / 1e6:.3f} ms" if mean >= 1e6 else f"{mean / 1e3:.2f} µs"
    nsb = f"{mean / tp:.3f}" if tp else "–"
    print(f"| {g} | {fn} | {n:,} | {tp:,} | {t} | {nsb} |")
