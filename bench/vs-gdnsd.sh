#!/usr/bin/env bash
# mirrordns side by side with gdnsd on the shared harness's geo job (../shared/bench): five
# mirrors by continent/country table, 1200 ECS /24s from every continent, server pinned to
# CPU 0, load generator on CPU 1, loopback only, every run time-bounded. Prints the harness's
# tables with ratios to gdnsd (QPS, QPS per server core, latency at a fixed rate, RSS, scopes),
# then the same ratios paired round by round (bench/paired.py: rounds won and a sign test),
# then bench/cycles.sh: both servers up at once and short loads alternating between them,
# pairs seconds apart rather than a minute (this VM drifts 20-40% within minutes), which is
# the comparison that settles QPS, CPU per query and p99 here.
#   ROUNDS=3 (alternating rounds)   THREADS=1 (server threads)   SECONDS_RUN=10
#   PAIRED_ROUNDS=12 (cycles.sh pairs per mix and rate; 0 skips it)
# The harness fetches GeoLite2-City from a package registry at run time (never committed) and
# installs gdnsd and dnsperf with apt.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS="${HARNESS:-$(cd ../shared/bench && pwd)}"
# The harness's mkqueries.py needs Debian's python3 (with python3-maxminddb), not a pyenv one.
export PATH="/usr/bin:$PATH"
cargo build --release --quiet
export MIRRORDNS_SRC="$PWD" MIRRORDNS_BIN="$PWD/target/release/mirrordns"
export MIRRORDNS_ARGS="--threads ${THREADS:-1}"
export RUN_ID="${RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}"
SERVERS="gdnsd mirrordns" ROUNDS="${ROUNDS:-3}" bash "$HARNESS/run-all.sh"
python3 bench/paired.py "${ANCHORS_WORK:-/tmp/geo-anchors}/results.tsv" "$RUN_ID-t${THREADS:-1}-r"
if [ "${PAIRED_ROUNDS:-12}" != 0 ] && [ "${THREADS:-1}" = 1 ]; then
  ROUNDS="${PAIRED_ROUNDS:-12}" SECONDS_RUN=3 bash bench/cycles.sh
fi
