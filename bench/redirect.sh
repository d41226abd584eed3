#!/usr/bin/env bash
# The download redirector side by side with nginx's `return 302` (issue #19), from a clone of
# this repository alone. wrk and nginx-light come from Debian (installed when missing, behind
# a policy-rc.d so the distribution's nginx service never starts; we run nginx ourselves on
# our own config: one process, no access log, stopped by PID). mirrordns redirects to mirrors
# that really verified a real release: bench/redirect/setup.py writes a release with real
# SHA-256s, and python3 -m http.server serves it as the origin and two mirrors. Everything on
# 127.0.0.1 on free ports, servers pinned to CPU 0 and wrk to CPU 1, every run time-bounded,
# processes stopped by the PID they were started with, scratch files in a mktemp dir.
#
# Each round starts each server once (the order alternates between rounds) and runs on it:
#   max   wrk -t1 -cCONNS for SECONDS_RUN s, keep-alive, on the file URL (the redirect path):
#         requests/s, and the server's CPU time over the run (utime+stime of the whole process
#         from /proc/PID/stat), hence requests per server-core-second;
#   paced the same URL at about LAT_RATE requests/s (plain wrk has no fixed rate: LAT_CONNS
#         connections each wait LAT_DELAY_MS after every response, wrk's delay() hook), for
#         p50/p99 without the server saturated;
# then one RSS run per server: TOTAL requests at saturation in chunks of CHUNK_SECS, VmRSS
# after each chunk. bench/redirect/summary.py prints both servers side by side with the
# ratios mirrordns / nginx against the targets.
#   ROUNDS=3  SECONDS_RUN=10  CONNS=50  LAT_CONNS=20  LAT_DELAY_MS=2 (about 10k/s)
#   TOTAL=1000000 (10000000 is the issue's RSS target; 0 skips the RSS runs)  CHUNK_SECS=20
#   SERVER_CPU=0  LOAD_CPU=1  KEEP_WORK=1 keeps the scratch dir
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_RUN="${SECONDS_RUN:-10}"
CONNS="${CONNS:-50}"
LAT_CONNS="${LAT_CONNS:-20}"
LAT_DELAY_MS="${LAT_DELAY_MS:-2}"
TOTAL="${TOTAL:-1000000}"
CHUNK_SECS="${CHUNK_SECS:-20}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
RUN_ID="${RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}"
FILE_PATH="tool/v1.0.0/tool-linux-amd64.tar.gz"
TICK=$(getconf CLK_TCK)
source bench/lib.sh

# wrk and nginx-light when missing (apt_install keeps nginx's service from starting).
tools() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v python3 >/dev/null || need+=(python3)
  command -v curl >/dev/null || need+=(curl)
  apt_install "${need[@]}"
}

free_ports() {  # free_ports N: N distinct free TCP ports on 127.0.0.1 (UDP too: DNS uses both)
  python3 - "$1" <<'PY'
import socket, sys
want, got, held = int(sys.argv[1]), [], []
while len(got) < want:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); continue
    held += [t, u]; got.append(port)
print(" ".join(map(str, got)))
PY
}

HELPERS=()  # the origin's and mirrors' file servers, stopped by PID on exit
SERVER=""   # the server under test now
cleanup() {
  [ "$BASHPID" = "$$" ] || return 0
  local p
  stop_pid "$SERVER"
  for p in "${HELPERS[@]}"; do stop_pid "$p"; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
port_of() { [ "$1" = nginx ] && echo "$NGINX_PORT" || echo "$REDIRECT_PORT"; }
url_of() { echo "http://127.0.0.1:$(port_of "$1")/$FILE_PATH"; }

# The /status view: the server ready (first probe round done) and both mirrors verified.
mirrordns_ready() {
  curl -s -m 2 "http://127.0.0.1:$MON_PORT/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
m = {x["name"]: x for x in s["services"][0]["mirrors"]}
ok = s["ready"] and all(x["state"] == "ready" and x["routable"] for x in m.values())
print("ready" if ok else "waiting: " + ", ".join(k + " " + v["state"] for k, v in m.items()))'
}

# start_server NAME: pinned to SERVER_CPU, in the foreground (no daemon fork, so $! is the
# server); sets STARTED once it answers the file URL with a 302 to where it should.
start_server() {
  case "$1" in
    nginx) taskset -c "$SERVER_CPU" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" \
             > "$WORK/nginx.log" 2>&1 & ;;
    # One tokio worker: the runtime sizes itself on the CPUs it may run on (one, by taskset);
    # --threads 1 is the DNS UDP workers, idle here.
    mirrordns) taskset -c "$SERVER_CPU" target/release/mirrordns serve \
                 -c "$WORK/mirrordns/config.toml" --threads 1 \
                 > "$WORK/mirrordns.log" 2>&1 & ;;
  esac
  STARTED=$!
  SERVER=$STARTED
  local want="http://127.0.0.1:9//$FILE_PATH" loc=""
  [ "$1" = mirrordns ] && want="http://127.0.0.1:$M1_PORT/$FILE_PATH"
  local st=""
  for _ in $(seq 1 240); do
    kill -0 "$STARTED" 2>/dev/null || die "$1 exited: $(tail -3 "$WORK/$1.log")"
    if [ "$1" = mirrordns ]; then
      st=$(mirrordns_ready 2>/dev/null) || st="no /status yet"
      [ "$st" = ready ] || { sleep 0.25; continue; }
    fi
    loc=$(curl -s -o /dev/null -m 2 -I -w '%{http_code} %{redirect_url}' "$(url_of "$1")" || true)
    [ "$loc" = "302 $want" ] && return 0
    sleep 0.25
  done
  die "$1 did not answer 302 $want within 60 s (last: '$loc'; $st)"
}

# wrk_run NAME PID CONNS SECS [DELAY_MS]: one wrk run pinned to LOAD_CPU; prints the WRK line
# fields plus the server's CPU over the run: cpu_s, cores (CPU s per wall s), per_core
# (requests per server CPU second).
wrk_run() {
  local name="$1" pid="$2" conns="$3" secs="$4" pause="${5:-0}" out="$WORK/wrk.txt"
  local before after t0 t1
  before=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  WRK_DELAY_MS="$pause" timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" \
    -d"${secs}s" --timeout 5s -s bench/redirect/wrk.lua "$(url_of "$name")" > "$out" 2>&1 \
    || die "wrk failed against $name: $(tail -3 "$out")"
  after=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  local line; line=$(grep '^WRK ' "$out") || die "no WRK line from wrk: $(tail -3 "$out")"
  python3 - "$line" "$before" "$after" "$t0" "$t1" "$TICK" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
b, a, t0, t1, hz = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
cpu = (a - b) / hz
req = int(f["requests"])
errs = sum(int(v) for k, v in f.items() if k.startswith("err_"))
print(" ".join(f"{k}={v}" for k, v in f.items()),
      f"errors={errs} cpu_s={cpu:.2f} cores={cpu / (t1 - t0):.3f}",
      f"per_core={req / cpu:.0f}" if cpu else "per_core=nan",
      f"resp_bytes={int(f['bytes']) / max(req, 1):.0f}")
PY
}

# idle_cpu PID SECS: the server's own CPU while nothing loads it (mirrordns probes its
# mirrors every second), in CPU ms per wall second.
idle_cpu() {
  local b a; b=$(cpu_ticks "$1"); sleep "$2"; a=$(cpu_ticks "$1")
  echo $(( (a - b) * 1000 / TICK / $2 ))
}

tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet
WORK=$(mktemp -d /tmp/mirrordns-redirect.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM
read -r REDIRECT_PORT DNS_PORT MON_PORT ORIGIN_PORT M1_PORT M2_PORT NGINX_PORT <<< "$(free_ports 7)"
python3 bench/redirect/setup.py "$WORK" "$REDIRECT_PORT" "$DNS_PORT" "$MON_PORT" \
  "$ORIGIN_PORT" "$M1_PORT" "$M2_PORT" "$NGINX_PORT"
target/release/mirrordns check -c "$WORK/mirrordns/config.toml" > "$WORK/check.log" 2>&1 \
  || die "mirrordns check: $(tail -5 "$WORK/check.log")"
# The origin and both mirrors serve the same release, on CPU 1 with wrk (idle during loads
# once verified; mirrordns re-checks them every second, cheaply).
for p in "$ORIGIN_PORT" "$M1_PORT" "$M2_PORT"; do
  taskset -c "$LOAD_CPU" python3 -m http.server --bind 127.0.0.1 --directory "$WORK/files" "$p" \
    > "$WORK/http-$p.log" 2>&1 &
  HELPERS+=("$!")
done
RESULTS="$WORK/results.txt"
log "run $RUN_ID: wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $("$NGINX" -v 2>&1 | sed 's/.*: //'),"\
" $ROUNDS rounds of ${SECONDS_RUN}s, -c$CONNS at saturation, paced -c$LAT_CONNS" \
  "delay ${LAT_DELAY_MS}ms; nginx :$NGINX_PORT, mirrordns :$REDIRECT_PORT" \
  "(mirrors :$M1_PORT :$M2_PORT, monitor :$MON_PORT)"

for round in $(seq 1 "$ROUNDS"); do
  order="nginx mirrordns"
  [ $((round % 2)) = 0 ] && order="mirrordns nginx"
  for name in $order; do
    start_server "$name"; pid=$STARTED
    extra=""
    [ "$name" = mirrordns ] && extra="idle_cpu_ms=$(idle_cpu "$pid" 3)"
    base="run=$RUN_ID round=$round server=$name"
    # Warm-up (connections, allocator), not recorded.
    wrk_run "$name" "$pid" "$CONNS" 2 > /dev/null
    got=$(wrk_run "$name" "$pid" "$CONNS" "$SECONDS_RUN")
    echo "$base kind=max conns=$CONNS $got rss_kb=$(rss_kb "$pid") $extra" >> "$RESULTS"
    got=$(wrk_run "$name" "$pid" "$LAT_CONNS" "$SECONDS_RUN" "$LAT_DELAY_MS")
    echo "$base kind=paced conns=$LAT_CONNS delay_ms=$LAT_DELAY_MS $got rss_kb=$(rss_kb "$pid")" \
      >> "$RESULTS"
    tail -2 "$RESULTS" >&2
    stop_pid "$pid"; SERVER=""
  done
done

# RSS over TOTAL requests: one server at a time, saturating, VmRSS after every chunk.
if [ "$TOTAL" != 0 ]; then
  for name in mirrordns nginx; do
    start_server "$name"; pid=$STARTED
    start_rss=$(rss_kb "$pid"); done_req=0; chunk=0; series=""; t0=$(date +%s)
    log "$name: $TOTAL requests for the RSS run (VmRSS $start_rss kB at start)"
    while [ "$done_req" -lt "$TOTAL" ]; do
      chunk=$((chunk + 1))
      got=$(wrk_run "$name" "$pid" "$CONNS" "$CHUNK_SECS")
      req=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<< "$got")
      errs=$(sed 's/.* errors=\([0-9]*\).*/\1/' <<< "$got")
      [ "$errs" = 0 ] || die "$name: $errs errors in the RSS run: $got"
      done_req=$((done_req + req))
      series="$series${series:+,}$(rss_kb "$pid")"
      log "$name: $done_req requests, VmRSS $(rss_kb "$pid") kB"
    done
    echo "run=$RUN_ID server=$name kind=rss requests=$done_req secs=$(( $(date +%s) - t0 ))" \
      "rss_start_kb=$start_rss rss_series_kb=$series" >> "$RESULTS"
    stop_pid "$pid"; SERVER=""
  done
fi

python3 bench/redirect/summary.py "$RESULTS"
if [ "${KEEP_WORK:-0}" = 1 ]; then cp "$RESULTS" "$WORK/results-$RUN_ID.txt"; fi
