#!/usr/bin/env python3
"""Median tables for scripts/bench: reads <out>/results.tsv (portcullis side),
<out>/next-*/results.tsv (the Next.js peer's bench.sh) and <out>/memory.tsv;
prints markdown. Medians over rounds; every ratio is of medians."""
import csv
import glob
import os
import statistics
import sys

out = sys.argv[1]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


ours = rows(os.path.join(out, "results.tsv"))
nxt = []
for p in sorted(glob.glob(os.path.join(out, "next-*", "results.tsv"))):
    for r in rows(p):
        r["system"] = "next"
        r["body_bytes_per_resp"] = ""
        r["sock_errors"] = r.get("sock_errors", "0")
        nxt.append(r)
allrows = ours + nxt


def med(system, case, conns, field):
    vals = [float(r[field]) for r in allrows
            if r["system"] == system and r["case"] == case and r["conns"] == conns and r.get(field, "") != ""]
    return (statistics.median(vals), vals) if vals else (None, [])


def fmt(v, d=0):
    return "–" if v is None else f"{v:,.{d}f}"


def cpu_us(system, case, c):
    """Server CPU time per request (µs): median cores / median req/s."""
    cores = med(system, case, c, "server_cpu_cores")[0]
    rps = med(system, case, c, "rps")[0]
    return None if not cores or not rps else cores / rps * 1e6


def runs(vals):
    return " / ".join(f"{v:,.0f}" for v in vals)


def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"


conns_list = sorted({r["conns"] for r in ours}, key=int)
cases = []
for r in ours:
    if r["case"] not in cases:
        cases.append(r["case"])

print("Medians over rounds (each round: every case once). p50/p99 are uncorrected per-request")
print("latencies when wrk-raw is used; \"wrk p99\" is stock wrk's coordinated-omission-corrected p99.")
print()
if "echo" in cases:
    print("### echo: bare axum vs portcullis (same urlencoded parse)")
    print()
    print("| conns | bare axum req/s | portcullis req/s | portcullis/axum | bare p50 / p99 ms | portcullis p50 / p99 ms | portcullis wrk p99 ms | CPU cores bare / portcullis | CPU µs/req bare / portcullis | req/s per round (bare; portcullis) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in conns_list:
        b, bv = med("bare", "echo", c, "rps")
        p, pv = med("portcullis", "echo", c, "rps")
        print(f"| {c} | {fmt(b)} | {fmt(p)} | {ratio(p, b)} | "
              f"{fmt(med('bare','echo',c,'p50_ms')[0],2)} / {fmt(med('bare','echo',c,'p99_ms')[0],2)} | "
              f"{fmt(med('portcullis','echo',c,'p50_ms')[0],2)} / {fmt(med('portcullis','echo',c,'p99_ms')[0],2)} | "
              f"{fmt(med('portcullis','echo',c,'wrk_p99_ms')[0],2)} | "
              f"{fmt(med('bare','echo',c,'server_cpu_cores')[0],2)} / {fmt(med('portcullis','echo',c,'server_cpu_cores')[0],2)} | "
              f"{fmt(cpu_us('bare','echo',c),1)} / {fmt(cpu_us('portcullis','echo',c),1)} | "
              f"{runs(bv)}; {runs(pv)} |")
    print()
if "echo" in cases and any(r["system"] == "portcullis_h1" for r in ours):
    print("### HTTP/2 detection on the HTTP/1 path: portcullis echo (HTTP/1.1 + h2c) vs HTTP/1-only (`PORTCULLIS_HTTP2=off`)")
    print()
    print("| conns | HTTP/1-only req/s | with HTTP/2 req/s | with/without | p50 / p99 ms HTTP/1-only | p50 / p99 ms with HTTP/2 | CPU µs/req HTTP/1-only / with HTTP/2 | req/s per round (HTTP/1-only; with HTTP/2) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in conns_list:
        h, hv = med("portcullis_h1", "echo", c, "rps")
        p, pv = med("portcullis", "echo", c, "rps")
        print(f"| {c} | {fmt(h)} | {fmt(p)} | {ratio(p, h)} | "
              f"{fmt(med('portcullis_h1','echo',c,'p50_ms')[0],2)} / {fmt(med('portcullis_h1','echo',c,'p99_ms')[0],2)} | "
              f"{fmt(med('portcullis','echo',c,'p50_ms')[0],2)} / {fmt(med('portcullis','echo',c,'p99_ms')[0],2)} | "
              f"{fmt(cpu_us('portcullis_h1','echo',c),1)} / {fmt(cpu_us('portcullis','echo',c),1)} | "
              f"{runs(hv)}; {runs(pv)} |")
    print()
if "echo_h2" in cases:
    print("### echo over HTTP/2 (h2c, h2load, one stream per connection at a time)")
    print()
    print("| conns | portcullis HTTP/2 req/s | portcullis HTTP/1.1 req/s (wrk) | CPU µs/req HTTP/2 / HTTP/1.1 | req/s per round (HTTP/2) |")
    print("|---:|---:|---:|---:|---|")
    for c in conns_list:
        h2, h2v = med("portcullis", "echo_h2", c, "rps")
        h1 = med("portcullis", "echo", c, "rps")[0]
        print(f"| {c} | {fmt(h2)} | {fmt(h1)} | {fmt(cpu_us('portcullis','echo_h2',c),1)} / {fmt(cpu_us('portcullis','echo',c),1)} | {runs(h2v)} |")
    print()
for case, title in (("rename", "rename: authenticated projects.rename (demo, SQLite) vs Next.js renameProject"),
                    ("page", "page: GET /projects for a signed-in session, render cache on (Next.js: its dynamic page)"),
                    ("page_uncached", "page, uncached: the same with DEMO_RENDER_CACHE=off (Next.js: the same page run)")):
    if case not in cases:
        continue
    system = "demo_nocache" if case == "page_uncached" else "demo"
    peer_case = "page" if case == "page_uncached" else case
    print(f"### {title}")
    print()
    print("| conns | portcullis req/s | Next.js req/s | portcullis/Next | portcullis p50 / p99 ms | Next p50 / p99 ms | portcullis wrk p99 ms | resp bytes portcullis (body) / Next | CPU cores portcullis / Next | CPU µs/req portcullis / Next | ok/bad portcullis | req/s per round (portcullis; Next) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in conns_list:
        p, pv = med(system, case, c, "rps")
        n, nv = med("next", peer_case, c, "rps")
        ok = sum(int(r["ok"]) for r in ours if r["system"] == system and r["case"] == case and r["conns"] == c)
        bad = sum(int(r["bad"]) for r in ours if r["system"] == system and r["case"] == case and r["conns"] == c)
        print(f"| {c} | {fmt(p)} | {fmt(n)} | {ratio(p, n)} | "
              f"{fmt(med(system,case,c,'p50_ms')[0],2)} / {fmt(med(system,case,c,'p99_ms')[0],2)} | "
              f"{fmt(med('next',peer_case,c,'p50_ms')[0],2)} / {fmt(med('next',peer_case,c,'p99_ms')[0],2)} | "
              f"{fmt(med(system,case,c,'wrk_p99_ms')[0],2)} | "
              f"{fmt(med(system,case,c,'bytes_per_resp')[0])} ({fmt(med(system,case,c,'body_bytes_per_resp')[0])}) / {fmt(med('next',peer_case,c,'bytes_per_resp')[0])} | "
              f"{fmt(med(system,case,c,'server_cpu_cores')[0],2)} / {fmt(med('next',peer_case,c,'server_cpu_cores')[0],2)} | "
              f"{fmt(cpu_us(system,case,c),0)} / {fmt(cpu_us('next',peer_case,c),0)} | "
              f"{ok}/{bad} | {runs(pv)}; {runs(nv)} |")
    print()
mem = os.path.join(out, "memory.tsv")
if os.path.exists(mem):
    print("### server memory after all rounds")
    print()
    print("| server | RSS MiB | peak RSS (VmHWM) MiB |")
    print("|---|---:|---:|")
    for r in rows(mem):
        print(f"| {r['server']} | {int(r['rss_kb']) / 1024:.1f} | {int(r['hwm_kb']) / 1024:.1f} |")
    import re
    for p in sorted(glob.glob(os.path.join(out, "next-*", "summary.md"))):
        with open(p) as f:
            for line in f:
                m = re.search(r"after runs (\d+) MiB, peak \(VmHWM\) (\d+) MiB", line)
                if m:
                    print(f"| next.js ({os.path.basename(os.path.dirname(p))}, fresh server per round) | {m.group(1)} | {m.group(2)} |")
    print()
