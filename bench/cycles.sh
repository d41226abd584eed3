#!/usr/bin/env bash
# CPU cost per query, mirrordns vs gdnsd, from hardware counters: cycles and instructions
# (user and kernel) the server spends per answered query, under the same dnsload job.
# Throughput on this kind of VM swings by 15-25% between rounds; counters per query are
# steadier, so this is the per-core comparison to read next to bench/vs-gdnsd.sh.
#   ROUNDS=3 (alternating)   RATE="20000 max" (fixed QPS, and closed-loop saturation)
#   MIX=ecs (or noecs, static: which query file of the harness to send)
# Needs `perf` (linux-perf) with hardware counters, and a prior bench/vs-gdnsd.sh run, which
# leaves both servers' configs, the query files and dnsload under $ANCHORS_WORK.
# Loopback only; every load is time-bounded (dnsload -l).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${ANCHORS_WORK:-/tmp/geo-anchors}"
DNSLOAD="$WORK/target/release/dnsload"
QUERIES="$WORK/q-${MIX:-ecs}.txt"
for f in "$DNSLOAD" "$QUERIES" "$WORK/mirrordns/config.toml" "$WORK/gdnsd/config"; do
  [ -e "$f" ] || { echo "missing $f: run bench/vs-gdnsd.sh once first" >&2; exit 1; }
done
perf stat -e cycles true >/dev/null 2>&1 || { echo "perf has no hardware counters here" >&2; exit 1; }
cargo build --release --quiet

start() {  # start NAME -> PID on stdout, pinned to CPU 0
  case "$1" in
    gdnsd) taskset -c 0 gdnsd -c "$WORK/gdnsd" start >/dev/null 2>&1 & ;;
    mirrordns) taskset -c 0 target/release/mirrordns serve --config "$WORK/mirrordns/config.toml" \
                 --threads 1 >/dev/null 2>&1 & ;;
  esac
  local pid=$! port; port=$([ "$1" = gdnsd ] && echo 5301 || echo 5307)
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 www.example.com >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$pid $port"
}

measure() {  # measure NAME PID PORT RATE
  local rate_arg=() out
  [ "$4" != max ] && rate_arg=(-Q "$4")
  taskset -c 1 "$DNSLOAD" -p "$3" -d "$QUERIES" -l 8 -q 100 "${rate_arg[@]}" > /tmp/cycles-load.txt 2>&1 &
  local load=$!
  sleep 2
  out=$(perf stat -x, -e cycles:u,cycles:k,instructions:u,instructions:k -p "$2" -- sleep 5 2>&1)
  wait "$load"
  local qps; qps=$(sed -E 's/.*qps=([0-9.]+).*/\1/' /tmp/cycles-load.txt)
  echo "$out" | awk -F, -v q="$qps" -v n="$1" -v r="$4" '
    { v[$3] = $1 }
    END { t = q * 5; printf "%-9s rate=%-5s qps=%8.0f cycles/q user=%5.0f kernel=%6.0f total=%6.0f  instr/q user=%5.0f kernel=%6.0f\n",
          n, r, q, v["cycles:u"]/t, v["cycles:k"]/t, (v["cycles:u"]+v["cycles:k"])/t, v["instructions:u"]/t, v["instructions:k"]/t }'
}

for round in $(seq 1 "${ROUNDS:-3}"); do
  for name in gdnsd mirrordns; do
    read -r pid port < <(start "$name")
    for rate in ${RATE:-20000 max}; do
      measure "$name" "$pid" "$port" "$rate"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 1
  done
done
