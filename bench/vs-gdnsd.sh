#!/usr/bin/env bash
# mirrordns side by side with gdnsd on the same geo job, from a clone of this repository alone:
# five mirrors by a continent/country table, a generated City database (bench/geo/mkgeo.py:
# made-up networks on every continent; no vendor database is fetched or committed) and 1200
# ECS /24s from every continent. gdnsd and dnsperf come from Debian (installed when missing,
# without starting gdnsd's service). Server pinned to CPU 0, dnsperf to CPU 1, 127.0.0.1 on a
# free port, every run time-bounded, servers stopped by PID, scratch files in a mktemp dir.
#
# Each round starts each server once (the order alternates between rounds, so neither always
# gets the machine first), checks every answer against the table (bench/geo/verify.py), then
# measures QPS at saturation for each mix (no ECS / ECS / static name), the server's CPU over
# each load (/proc/PID/stat: QPS per server core and CPU per query), latency at a fixed rate
# with ECS, and RSS. bench/paired.py then prints medians with ratios mirrordns / gdnsd and the
# same ratios paired round by round (rounds won, sign test). Finally bench/cycles.sh runs
# both servers at once with loads alternating seconds apart, the comparison that settles
# things on a machine whose speed drifts within minutes.
#   ROUNDS=3   SECONDS_RUN=10   LAT_RATE=20000   THREADS=1 (server threads)
#   PAIRED_ROUNDS=12 (cycles.sh pairs; 0 skips it)   KEEP_WORK=1 keeps the scratch dir
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/geo/lib.sh
ROUNDS="${ROUNDS:-3}"
SECONDS_RUN="${SECONDS_RUN:-10}"
LAT_RATE="${LAT_RATE:-20000}"
RUN_ID="${RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}"

geo_tools
cargo build --release --quiet
WORK=$(mktemp -d /tmp/mirrordns-vs-gdnsd.XXXXXX)
PID=""
cleanup() {
  # Subshells (command substitutions) can run this trap too on a signal: only the main shell
  # owns the server and the scratch dir.
  [ "$BASHPID" = "$$" ] || return 0
  stop_pid "$PID"
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
geo_setup "$WORK"
RESULTS="$WORK/results.txt"
log "run $RUN_ID: $ROUNDS rounds, ${SECONDS_RUN}s loads, gdnsd :$GDNSD_PORT, mirrordns :$MIRRORDNS_PORT"

for round in $(seq 1 "$ROUNDS"); do
  order="gdnsd mirrordns"
  [ $((round % 2)) = 0 ] && order="mirrordns gdnsd"
  for name in $order; do
    start_server "$name"; PID=$STARTED
    check=$(python3 bench/geo/verify.py "$WORK" "$(port_of "$name")") \
      || die "$name answered wrongly: $check"
    base="run=$RUN_ID round=$round server=$name"
    # Assignments, not echo arguments: set -e only sees a failed load that way.
    for mix in noecs ecs static; do
      got=$(load "$name" "$PID" "$mix" max "$SECONDS_RUN")
      echo "$base mix=$mix rate=max $got" >> "$RESULTS"
    done
    got=$(load "$name" "$PID" ecs "$LAT_RATE" "$SECONDS_RUN")
    echo "$base mix=ecs rate=$LAT_RATE $got rss_kb=$(rss_kb "$PID") $check" >> "$RESULTS"
    tail -4 "$RESULTS" >&2
    stop_pid "$PID"; PID=""
  done
done

python3 bench/paired.py "$RESULTS"
if [ "${KEEP_WORK:-0}" = 1 ]; then cp "$RESULTS" "$WORK/results-$RUN_ID.txt"; fi
if [ "${PAIRED_ROUNDS:-12}" != 0 ] && [ "$THREADS" = 1 ]; then
  # cycles.sh reuses this run's database, queries and configs (same ports: ours are stopped).
  GEO_WORK="$WORK" GDNSD_PORT="$GDNSD_PORT" MIRRORDNS_PORT="$MIRRORDNS_PORT" \
    ROUNDS="${PAIRED_ROUNDS:-12}" SECONDS_RUN=3 bash bench/cycles.sh
fi
