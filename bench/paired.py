#!/usr/bin/env python3
"""Paired comparison of mirrordns with gdnsd, round by round, from the harness's results.

Usage: paired.py RESULTS_TSV RUN_PREFIX

The harness runs the servers in alternation (gdnsd, mirrordns, gdnsd, mirrordns, ...), so
each round's two measurements are minutes apart while the host's load drifts over the whole
run. Pairing them (one ratio per round) takes that drift out; the harness's own summary
divides medians taken over all rounds, which keeps it in. This prints both, plus how many
rounds mirrordns won and a two-sided sign test: with 8 rounds, 7 or 8 wins (or losses) is
p <= 0.07, so a "lead" shown here in fewer rounds than that is noise.
"""
import math
import statistics
import sys
from collections import defaultdict


def rows(path, prefix):
    for line in open(path):
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if kv.get("tag", "").startswith(prefix) and kv.get("tool") == "dnsload":
            yield kv


def sign_test(wins, n):
    """Two-sided p-value of `wins` out of `n` under a fair coin."""
    if n == 0:
        return float("nan")
    k = min(wins, n - wins)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def per_core(r):
    cores = float(r.get("server_cpu_cores") or 0)
    return float(r["qps"]) / cores if cores > 0 else float("nan")


def main():
    path, prefix = sys.argv[1], sys.argv[2]
    # (round, mix) -> server -> rows (REPS > 1 gives several per round: their median counts)
    by = defaultdict(lambda: defaultdict(list))
    for r in rows(path, prefix):
        mix = r["mix"]
        if r.get("args", "none").startswith("-Q"):
            mix = "latency"
        rnd = r["tag"].rsplit("-r", 1)[-1]
        by[(rnd, mix)][r["server"]].append(r)

    metrics = [
        ("QPS", ["noecs", "ecs", "static"], lambda r: float(r["qps"]), True),
        ("QPS per server core", ["noecs", "ecs", "static"], per_core, True),
        ("p99 at a fixed rate (lower wins)", ["latency"], lambda r: float(r["p99_us"]), False),
    ]
    print("\n### mirrordns / gdnsd, paired by round\n")
    print("| metric | mix | median of per-round ratios | range | rounds mirrordns won | sign test p | ratio of medians |")
    print("|---|---|---|---|---|---|---|")
    for name, mixes, value, higher_wins in metrics:
        for mix in mixes:
            ours, theirs, ratios = [], [], []
            for (rnd, m), servers in sorted(by.items()):
                if m != mix or "gdnsd" not in servers or "mirrordns" not in servers:
                    continue
                a = statistics.median(value(r) for r in servers["mirrordns"])
                b = statistics.median(value(r) for r in servers["gdnsd"])
                if a != a or b != b or b == 0:
                    continue
                ours.append(a)
                theirs.append(b)
                ratios.append(a / b)
            if not ratios:
                continue
            n = len(ratios)
            wins = sum(1 for x in ratios if (x > 1.0 if higher_wins else x < 1.0))
            print(f"| {name} | {mix} | {statistics.median(ratios):.3f} | "
                  f"{min(ratios):.2f}-{max(ratios):.2f} | {wins}/{n} | {sign_test(wins, n):.2f} | "
                  f"{statistics.median(ours) / statistics.median(theirs):.3f} |")
    ours = [r for s in by.values() for r in s.get("mirrordns", [])]
    lost = sum(int(r.get("lost", 0)) for r in ours)
    wrong = sum(int(r.get("mismatch", 0)) for r in ours)
    print(f"\nmirrordns over all rounds: {lost} lost, {wrong} answers different from the table")


if __name__ == "__main__":
    main()
