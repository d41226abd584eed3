#!/usr/bin/env bash
# CPU cost per query, mirrordns vs gdnsd: what the server spends per answered query (cycles
# and instructions, user and kernel, from hardware counters; or CPU time, user and system,
# where the machine has no counters), under the same dnsload job.
#
# Both servers run for the whole measurement, pinned to CPU 0 (an idle server costs nothing
# there), and short loads alternate between them: gdnsd, mirrordns, gdnsd, ... Throughput on
# this kind of VM drifts by 20-40% within minutes (other tenants), so a pair of loads a few
# seconds apart is the fairest comparison there is; the summary is the median of the
# per-pair ratios and how many pairs each server won.
# Each load also gives QPS, p99 latency, lost queries and answers that differ from the
# harness's table, so the same pairs compare throughput and latency.
#   ROUNDS=10 (pairs)   RATE="20000 max" (fixed QPS, and closed-loop saturation)
#   MIX="ecs noecs static" (the harness's query files)   SECONDS_RUN=3
# Needs a prior bench/vs-gdnsd.sh run, which leaves both servers' configs, the query files
# and dnsload under $ANCHORS_WORK. Loopback only; every load is time-bounded (dnsload -l).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${ANCHORS_WORK:-/tmp/geo-anchors}"
DNSLOAD="$WORK/target/release/dnsload"
MIXES="${MIX:-ecs noecs static}"
RUN="${SECONDS_RUN:-3}"
for f in "$DNSLOAD" "$WORK/mirrordns/config.toml" "$WORK/gdnsd/config" \
  $(for m in $MIXES; do echo "$WORK/q-$m.txt"; done); do
  [ -e "$f" ] || { echo "missing $f: run bench/vs-gdnsd.sh once first" >&2; exit 1; }
done
# `perf stat` succeeds even when a counter is missing; only the value it prints says so.
if command -v perf >/dev/null && perf stat -x, -e cycles true 2>&1 | grep -q '^[0-9]'; then
  COUNTERS=1
else
  COUNTERS=0
  echo "no hardware counters here: CPU time per query from /proc/PID/stat instead" >&2
fi
TICK=$(getconf CLK_TCK)
cargo build --release --quiet

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() {  # start NAME PORT: the server pinned to CPU 0; sets STARTED to its PID
  case "$1" in
    gdnsd) taskset -c 0 gdnsd -c "$WORK/gdnsd" start >/dev/null 2>&1 & ;;
    mirrordns) taskset -c 0 target/release/mirrordns serve --config "$WORK/mirrordns/config.toml" \
                 --threads 1 >/dev/null 2>&1 & ;;
  esac
  STARTED=$!
  PIDS+=("$STARTED")
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$2" @127.0.0.1 www.example.com >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "$1 did not answer on port $2" >&2
  exit 1
}

# measure NAME PID PORT RATE MIX: one line on stdout,
#   MIX NAME RATE QPS P99_US LOST MISMATCH USER KERNEL [USER_INSTR KERNEL_INSTR]
# USER and KERNEL per query: cycles with counters, nanoseconds of CPU time without.
measure() {
  local rate_arg=() window
  [ "$4" != max ] && rate_arg=(-Q "$4")
  window=$(awk -v r="$RUN" 'BEGIN { print r - 1 }')
  taskset -c 1 "$DNSLOAD" -p "$3" -d "$WORK/q-$5.txt" -l "$RUN" -q 100 "${rate_arg[@]}" \
    > /tmp/cycles-load.txt 2>&1 &
  local load=$!
  # Skip the first half second (ramp-up), sample one second less than the load runs.
  sleep 0.5
  local cost
  if [ "$COUNTERS" = 1 ]; then
    cost=$(perf stat -x, -e cycles:u,cycles:k,instructions:u,instructions:k -p "$2" -- sleep "$window" 2>&1 \
      | awk -F, '{ v[$3] = $1 } END { print v["cycles:u"], v["cycles:k"], v["instructions:u"], v["instructions:k"] }')
  else
    local before after
    before=$(cut -d' ' -f14,15 "/proc/$2/stat")
    sleep "$window"
    after=$(cut -d' ' -f14,15 "/proc/$2/stat")
    # Clock ticks (10 ms) to nanoseconds: at saturation a 2 s window resolves about 20 ns
    # per query, at 20,000 qps about 250 ns (read the fixed rate for latency, not cost).
    cost=$(echo "$before $after" | awk -v hz="$TICK" '{ print ($3 - $1) / hz * 1e9, ($4 - $2) / hz * 1e9 }')
  fi
  wait "$load"
  local load_out; load_out=$(cat /tmp/cycles-load.txt)
  field() { echo "$load_out" | grep -o "\b$1=[0-9.]*" | head -1 | cut -d= -f2; }
  local qps; qps=$(field qps)
  echo "$5 $1 $4 $qps $(field p99_us) $(field lost) $(field mismatch) $cost" \
    | awk -v w="$window" '{ t = $4 * w; printf "%s %s %s %.0f %s %s %s", $1, $2, $3, $4, $5, $6, $7
                           for (i = 8; i <= NF; i++) printf " %.0f", $i / t; print "" }'
}

start gdnsd 5301; GDNSD=$STARTED
start mirrordns 5307; MIRRORDNS=$STARTED
results=$(mktemp)
for round in $(seq 1 "${ROUNDS:-10}"); do
  for mix in $MIXES; do
    for rate in ${RATE:-20000 max}; do
      measure gdnsd "$GDNSD" 5301 "$rate" "$mix" | tee -a "$results"
      measure mirrordns "$MIRRORDNS" 5307 "$rate" "$mix" | tee -a "$results"
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
    p = [float(m[4]) / float(g[4]) for g, m in ps if float(g[4]) > 0]
    lost = f"{sum(int(g[5]) for g, _ in ps)}/{sum(int(m[5]) for _, m in ps)}"
    wrong = f"{sum(int(g[6]) for g, _ in ps)}/{sum(int(m[6]) for _, m in ps)}"
    gc = f"{med([float(g[7]) for g, _ in ps]):,.0f}+{med([float(g[8]) for g, _ in ps]):,.0f}"
    mc = f"{med([float(m[7]) for _, m in ps]):,.0f}+{med([float(m[8]) for _, m in ps]):,.0f}"
    # At a fixed rate both servers carry the rate: QPS is a check there, not a contest.
    qs = summary(q, lambda r: r > 1) if rate == "max" else f"{med(q):.3f} (fixed rate)"
    cs = summary(c, lambda r: r < 1)
    ps_ = summary(p, lambda r: r < 1)
    print(f"| {mix} | {rate} | {len(ps)} | {qs} | {cs} | {ps_} | {gc} | {mc} | {lost} | {wrong} |")
PY
