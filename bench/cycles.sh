#!/usr/bin/env bash
# CPU cost per query, mirrordns vs gdnsd: what the server spends per answered query (cycles
# and instructions, user and kernel, from hardware counters; or CPU time, user and system,
# from /proc/PID/stat where the machine has no counters), under the same dnsperf load.
#
# Both servers run for the whole measurement, pinned to CPU 0 (an idle server costs nothing
# there), and short loads alternate between them: gdnsd, mirrordns, gdnsd, ... Throughput on
# this kind of VM drifts by 20-40% within minutes (other tenants), so a pair of loads a few
# seconds apart is the fairest comparison there is; the summary is the median of the
# per-pair ratios and how many pairs each server won.
# Each load also gives QPS, lost queries and, at a fixed rate, p99; every answer of both
# servers is checked against the table once before (bench/geo/verify.py).
#   ROUNDS=10 (pairs)   RATE="20000 max" (fixed QPS, and closed-loop saturation)
#   MIX="ecs noecs static"   SECONDS_RUN=3
# Standalone it generates its own database, queries and configs (bench/geo/); run from
# bench/vs-gdnsd.sh it reuses that run's (GEO_WORK). Loopback only; every load is
# time-bounded; servers are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/geo/lib.sh
MIXES="${MIX:-ecs noecs static}"
RUN="${SECONDS_RUN:-3}"
# `perf stat` succeeds even when a counter is missing; only the value it prints says so.
if command -v perf >/dev/null && perf stat -x, -e cycles true 2>&1 | grep -q '^[0-9]'; then
  COUNTERS=1
else
  COUNTERS=0
  log "no hardware counters here: CPU time per query from /proc/PID/stat instead"
fi
geo_tools
cargo build --release --quiet

PIDS=()
OWN_WORK=""
cleanup() {
  [ "$BASHPID" = "$$" ] || return 0
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  [ -n "$OWN_WORK" ] && rm -rf "$OWN_WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "${GEO_WORK:-}" ] && [ -n "${GDNSD_PORT:-}" ] && [ -n "${MIRRORDNS_PORT:-}" ]; then
  log "reusing $GEO_WORK"
else
  OWN_WORK=$(mktemp -d /tmp/mirrordns-cycles.XXXXXX)
  geo_setup "$OWN_WORK"
fi

# measure NAME PID RATE MIX: one line on stdout,
#   MIX NAME RATE QPS P99_US LOST MISMATCH USER KERNEL [USER_INSTR KERNEL_INSTR]
# USER and KERNEL per query: cycles with counters, nanoseconds of CPU time without (from the
# whole load, which load() measures). P99 is "nan" at saturation (see load()); MISMATCH is 0:
# answers were checked before the loads.
measure() {
  local got
  if [ "$COUNTERS" = 1 ]; then
    # Counters over a window inside the load: skip the ramp-up, stop before the drain.
    local window; window=$(awk -v r="$RUN" 'BEGIN { print r - 1 }')
    ( sleep 0.5; perf stat -x, -e cycles:u,cycles:k,instructions:u,instructions:k -p "$2" \
        -- sleep "$window" 2> "$GEO_WORK/perf.txt" ) &
    local sampler=$!
    got=$(load "$1" "$2" "$4" "$3" "$RUN")
    wait "$sampler"
    local cost; cost=$(awk -F, '{ v[$3] = $1 } END {
      print v["cycles:u"], v["cycles:k"], v["instructions:u"], v["instructions:k"] }' "$GEO_WORK/perf.txt")
    echo "$got window=$window cost=\"$cost\""
  else
    got=$(load "$1" "$2" "$4" "$3" "$RUN")
    echo "$got"
  fi | python3 -c '
import shlex, sys
mix, name, rate = sys.argv[1:4]
kv = dict(p.split("=", 1) for p in shlex.split(sys.stdin.read()))
row = [mix, name, rate, kv["qps"], kv.get("p99_us", "nan"), kv["lost"], "0"]
if "cost" in kv:
    q = float(kv["qps"]) * float(kv["window"])
    row += [f"{float(x) / q:.0f}" if q else "nan" for x in kv["cost"].split()]
else:
    row += [kv["user_ns"], kv["kernel_ns"]]
print(" ".join(row))' "$4" "$1" "$3"
}

start_server gdnsd; GDNSD=$STARTED; PIDS+=("$GDNSD")
start_server mirrordns; MIRRORDNS=$STARTED; PIDS+=("$MIRRORDNS")
for name in gdnsd mirrordns; do
  check=$(python3 bench/geo/verify.py "$GEO_WORK" "$(port_of "$name")") \
    || die "$name answered wrongly: $check"
  log "$name: $check"
done
results=$(mktemp -p "$GEO_WORK" cycles.XXXXXX)
for round in $(seq 1 "${ROUNDS:-10}"); do
  for mix in $MIXES; do
    for rate in ${RATE:-20000 max}; do
      row=$(measure gdnsd "$GDNSD" "$rate" "$mix"); echo "$row" | tee -a "$results"
      row=$(measure mirrordns "$MIRRORDNS" "$rate" "$mix"); echo "$row" | tee -a "$results"
    done
  done
done >&2

# Pairs are consecutive gdnsd, mirrordns lines for one mix and rate.
python3 - "$results" "$COUNTERS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
unit = "cycles" if sys.argv[2] == "1" else "CPU ns"
pairs = {}
for g, m in zip(rows[0::2], rows[1::2]):
    pairs.setdefault((g[0], g[2]), []).append((g, m))
med = lambda xs: statistics.median(xs) if xs else float("nan")
cost = lambda r: float(r[7]) + float(r[8])

def summary(ratios, better):
    won = sum(better(r) for r in ratios)
    return f"{med(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}, {won}/{len(ratios)})"

print(f"\nmirrordns / gdnsd, paired loads seconds apart: median ratio (range, pairs mirrordns won)")
print(f"| mix | rate | pairs | QPS | {unit} per query (lower wins) | p99 (lower wins) "
      f"| gdnsd {unit}/q user+kernel | mirrordns {unit}/q | lost g/m | wrong answers g/m |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (mix, rate), ps in pairs.items():
    q = [float(m[3]) / float(g[3]) for g, m in ps if float(g[3]) > 0]
    c = [cost(m) / cost(g) for g, m in ps if cost(g) > 0]
    p = [float(m[4]) / float(g[4]) for g, m in ps if float(g[4]) > 0]  # nan at saturation
    lost = f"{sum(int(g[5]) for g, _ in ps)}/{sum(int(m[5]) for _, m in ps)}"
    wrong = f"{sum(int(g[6]) for g, _ in ps)}/{sum(int(m[6]) for _, m in ps)}"
    gc = f"{med([float(g[7]) for g, _ in ps]):,.0f}+{med([float(g[8]) for g, _ in ps]):,.0f}"
    mc = f"{med([float(m[7]) for _, m in ps]):,.0f}+{med([float(m[8]) for _, m in ps]):,.0f}"
    # At a fixed rate both servers carry the rate: QPS is a check there, not a contest.
    qs = summary(q, lambda r: r > 1) if rate == "max" else f"{med(q):.3f} (fixed rate)"
    cs = summary(c, lambda r: r < 1)
    ps_ = summary(p, lambda r: r < 1) if p else "-"
    print(f"| {mix} | {rate} | {len(ps)} | {qs} | {cs} | {ps_} | {gc} | {mc} | {lost} | {wrong} |")
PY
