#!/usr/bin/env python3
"""bench/redirect.sh's table: medians per server over the rounds, side by side, ratios
mirrordns / nginx (the median of the per-round ratios, which the verdicts use: a round's two
servers ran minutes apart at most, so a machine that drifts cancels out better; and the ratio
of the medians), against the targets of issue #19: requests per server core >= 0.8x nginx's,
p99 at a fixed rate <= 2x nginx's, RSS flat over the long run.

usage: summary.py RESULTS
"""
import statistics
import sys
from collections import defaultdict

rows = []
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    if f:
        rows.append(f)

by = defaultdict(list)  # (server, kind) -> rows
for r in rows:
    by[(r["server"], r["kind"])].append(r)


def med(server, kind, key):
    v = [float(r[key]) for r in by[(server, kind)] if key in r]
    return statistics.median(v) if v else float("nan")


def per_round(kind, key):
    """Ratio mirrordns / nginx of the same round, for every round that has both."""
    n = {r["round"]: float(r[key]) for r in by[("nginx", kind)]}
    m = {r["round"]: float(r[key]) for r in by[("mirrordns", kind)]}
    return [m[k] / n[k] for k in sorted(n, key=int) if k in m and n[k]]


def fmt(x, unit=""):
    if x != x:
        return "-"
    if unit == "k":
        return f"{x / 1000:.1f}k"
    if unit == "us":
        return f"{x:.0f} µs" if x < 10000 else f"{x / 1000:.1f} ms"
    if unit == "MiB":
        return f"{x / 1024:.1f} MiB"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


lines = [
    ("requests/s at saturation", "max", "rps", "k", False),
    ("server CPU cores used at saturation", "max", "cores", "", False),
    ("requests per server core-second", "max", "per_core", "k", True),
    ("p50 at saturation", "max", "p50_us", "us", False),
    ("p99 at saturation", "max", "p99_us", "us", False),
    ("bytes per response (headers + body)", "max", "resp_bytes", "", False),
    ("paced: requests/s", "paced", "rps", "k", False),
    ("paced: server CPU cores", "paced", "cores", "", False),
    ("paced: p50", "paced", "p50_us", "us", False),
    ("paced: p99", "paced", "p99_us", "us", True),
    ("paced: p99.9", "paced", "p999_us", "us", False),
    ("paced: max", "paced", "max_us", "us", False),
    ("RSS after the rounds' loads", "paced", "rss_kb", "MiB", False),
]
n_rounds = len(by[("nginx", "max")])
print(f"\n{n_rounds} rounds; medians (ratio = mirrordns / nginx)\n")
print("| | nginx | mirrordns | ratio (median of per-round) | ratio of medians | per-round ratios |")
print("|---|---|---|---|---|---|")
for label, kind, key, unit, _ in lines:
    n, m = med("nginx", kind, key), med("mirrordns", kind, key)
    pr = per_round(kind, key)
    pm = statistics.median(pr) if pr else float("nan")
    print(f"| {label} | {fmt(n, unit)} | {fmt(m, unit)} | {pm:.2f} | "
          f"{m / n if n else float('nan'):.2f} | {' '.join(f'{x:.2f}' for x in pr)} |")
errs = sum(int(r.get("errors", 0)) for r in rows)
idle = [float(r["idle_cpu_ms"]) for r in by[("mirrordns", "max")] if "idle_cpu_ms" in r]
print(f"\nwrk errors (connect/read/write/timeout/status>=400), all runs: {errs}")
if idle:
    print(f"mirrordns CPU while idle (health probes every 1 s): "
          f"{statistics.median(idle):.0f} ms per s (counted in its CPU time above)")

print()
rss = {}
for server in ("nginx", "mirrordns"):
    for r in by[(server, "rss")]:
        series = [int(x) for x in r["rss_series_kb"].split(",") if x]
        rss[server] = (int(r["rss_start_kb"]), series, int(r["requests"]), int(r["secs"]))
        print(f"{server}: {int(r['requests']):,} requests in {r['secs']} s, VmRSS kB at start "
              f"{r['rss_start_kb']}, after each chunk: {' '.join(map(str, series))}")

print("\nTargets (issue #19):")
def verdict(label, kind, key, ok):
    pr = per_round(kind, key)
    if not pr:
        return
    r = statistics.median(pr)
    print(f"- {label}: {r:.2f}, median of per-round ratios ({'met' if ok(r) else 'NOT met'}; "
          f"by round {' '.join(f'{x:.2f}' for x in pr)}; ratio of the medians "
          f"{med('mirrordns', kind, key) / med('nginx', kind, key):.2f})")


verdict("requests per server core >= 0.8x nginx", "max", "per_core", lambda r: r >= 0.8)
verdict("p99 at a fixed rate <= 2x nginx", "paced", "p99_us", lambda r: r <= 2)
if "mirrordns" in rss:
    start, series, req, _ = rss["mirrordns"]
    first, last, top = series[0], series[-1], max(series)
    grow = last - first
    flat = last <= first * 1.05 + 512
    print(f"- RSS flat over {req:,} requests: after the first chunk {first} kB, at the end "
          f"{last} kB ({grow:+d} kB, {grow / first * 100:+.1f} %), peak {top} kB "
          f"({'flat' if flat else 'NOT flat'}: the end within 5 % + 512 kB of the first chunk)")
    half = series[len(series) // 2]
    print(f"  over the second half of the run (from {half} kB): {last - half:+d} kB")
    if "nginx" in rss:
        n_last = rss["nginx"][1][-1]
        print(f"  nginx at the end of its run: {n_last} kB; ratio {last / n_last:.2f}")
