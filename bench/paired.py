#!/usr/bin/env python3
"""Summary of bench/vs-gdnsd.sh: medians per server with ratios mirrordns / gdnsd, then the
same ratios paired round by round.

Usage: paired.py RESULTS [RUN_ID]   (RESULTS: key=value lines, one per load)

Each round starts each server in turn, so a round's two measurements are a minute apart
while the host's load drifts over the whole run. Pairing them (one ratio per round) takes
that drift out; a ratio of medians over all rounds keeps it in. The paired table also gives
how many rounds mirrordns won and a two-sided sign test: with 8 rounds, 7 or 8 wins (or
losses) is p <= 0.07, so a "lead" shown in fewer rounds than that is noise.
"""
import math
import statistics
import sys
from collections import defaultdict


def rows(path, run):
    for line in open(path):
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if kv and (run is None or kv.get("run") == run):
            yield kv


def sign_test(wins, n):
    """Two-sided p-value of `wins` out of `n` under a fair coin."""
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def val(key):
    def get(r):
        try:
            return float(r[key])
        except (KeyError, ValueError):
            return float("nan")
    return get


def per_core(r):
    cores = val("cpu_cores")(r)
    return val("qps")(r) / cores if cores > 0 else float("nan")


def cpu_ns(r):
    return val("user_ns")(r) + val("kernel_ns")(r)


# (label, mix, rate kind, value, higher wins)
METRICS = [
    ("QPS", "noecs", "max", val("qps"), True),
    ("QPS", "ecs", "max", val("qps"), True),
    ("QPS", "static", "max", val("qps"), True),
    ("QPS per server core", "noecs", "max", per_core, True),
    ("QPS per server core", "ecs", "max", per_core, True),
    ("QPS per server core", "static", "max", per_core, True),
    ("server CPU ns per query", "ecs", "max", cpu_ns, False),
    ("p50 µs at fixed rate", "ecs", "fixed", val("p50_us"), False),
    ("p99 µs at fixed rate", "ecs", "fixed", val("p99_us"), False),
    ("RSS KiB", "ecs", "fixed", val("rss_kb"), False),
]


def main():
    path = sys.argv[1]
    run = sys.argv[2] if len(sys.argv) > 2 else None
    # (round, mix, kind) -> server -> [rows]
    by = defaultdict(lambda: defaultdict(list))
    for r in rows(path, run):
        kind = "max" if r.get("rate") == "max" else "fixed"
        by[(r["round"], r["mix"], kind)][r["server"]].append(r)
    rates = {r["rate"] for s in by.values() for rs in s.values() for r in rs} - {"max"}

    print(f"\n### mirrordns / gdnsd (fixed rate: {', '.join(sorted(rates)) or '-'} QPS)\n")
    print("| metric | mix | gdnsd (median) | mirrordns (median) | ratio of medians "
          "| median of per-round ratios | range | rounds mirrordns won | sign test p |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, mix, kind, value, higher in METRICS:
        g_all, m_all, ratios = [], [], []
        for (rnd, m, k), servers in sorted(by.items()):
            if m != mix or k != kind:
                continue
            g = [value(r) for r in servers.get("gdnsd", []) if value(r) == value(r)]
            o = [value(r) for r in servers.get("mirrordns", []) if value(r) == value(r)]
            g_all += g
            m_all += o
            if g and o and statistics.median(g) > 0:
                ratios.append(statistics.median(o) / statistics.median(g))
        if not g_all or not m_all:
            continue
        gm, mm = statistics.median(g_all), statistics.median(m_all)
        n = len(ratios)
        wins = sum(1 for x in ratios if (x > 1 if higher else x < 1))
        paired = (f"{statistics.median(ratios):.3f} | {min(ratios):.2f}-{max(ratios):.2f} | "
                  f"{wins}/{n} | {sign_test(wins, n):.2f}") if n else "- | - | - | -"
        print(f"| {label} | {mix} | {gm:,.0f} | {mm:,.0f} | "
              f"{mm / gm if gm else float('nan'):.3f} | {paired} |")

    print()
    for server in ("gdnsd", "mirrordns"):
        rs = [r for s in by.values() for r in s.get(server, [])]
        lost = sum(int(float(r.get("lost", 0))) for r in rs)
        wrong = sum(int(r.get("wrong", 0)) for r in rs)
        scopes = sorted({r["scope_median"] for r in rs if "scope_median" in r})
        print(f"{server}: {lost} queries lost over all loads; {wrong} wrong answers in the "
              f"table checks; median ECS scope {' '.join(scopes) or '-'}")


if __name__ == "__main__":
    main()
