#!/usr/bin/env bash
# What signing costs mirrordns (issue #20), from a clone of this repository alone: the geo job
# of bench/vs-gdnsd.sh (generated City database, five mirrors, 1200 ECS /24s from every
# continent) with the zone signed by a key made here (`mirrordns keygen`, ECDSA P-256).
#
# Each round starts the signed server once, checks every answer (bench/geo/verify.py), then
# loads it at saturation with the ECS mix without DO and with DO, alternating which goes first,
# and takes QPS per server core for both from the server's CPU time (/proc/PID/stat): the
# ratio DO / no DO in the same round is the target (>= 0.9). Signatures are made when the
# table is built, so the DO answer costs a copy of one RRSIG, not a signature.
#
# Memory: the same config with and without [dnssec], each after the same loads, plus a second
# service with the `nearest` policy and two answers per client (one candidate list per distinct
# location of the database, so many more answer sets to sign than the regions table has): the
# VmRSS difference is what the signatures cost.
#
# Sizes: the largest signed answers (geo A with DO, NXDOMAIN, NODATA) must fit 1232 bytes.
#   ROUNDS=3   SECONDS_RUN=8   KEEP_WORK=1 keeps the scratch dir
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=1
source bench/geo/lib.sh
ROUNDS="${ROUNDS:-3}"
SECONDS_RUN="${SECONDS_RUN:-8}"

geo_tools
cargo build --release --quiet
WORK=$(mktemp -d /tmp/mirrordns-dnssec.XXXXXX)
PID=""
cleanup() {
  [ "$BASHPID" = "$$" ] || return 0
  stop_pid "$PID"
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
geo_setup "$WORK"
CONF="$WORK/mirrordns/config.toml"
# A second service, answered by distance: many candidate lists, two answers each.
python3 - "$CONF" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
names = re.findall(r'^name = "([a-z]+-[a-z]+)"$', text, re.M)
service = (
    '\n[[service]]\nname = "nearest.example.com"\npolicy = "nearest"\nttl = 30\nanswers = 2\n'
    f'mirrors = [{", ".join(chr(34) + n + chr(34) for n in names)}]\n'
)
# Services go before the first mirror so that TOML tables stay where they belong.
i = text.index("[[mirror]]")
open(path, "w").write(text[:i] + service + "\n" + text[i:])
PY
cp "$CONF" "$WORK/mirrordns/unsigned.toml"
key=$(target/release/mirrordns keygen example.com --dir "$WORK/mirrordns" | head -1)
printf '\n[dnssec]\nkeys = ["%s"]\n' "$(basename "$key")" >> "$CONF"
target/release/mirrordns check -c "$CONF" >&2 || die "signed config does not check"
RESULTS="$WORK/results.txt"
PORT=$MIRRORDNS_PORT

start_with() { start_server mirrordns "$1"; PID=$STARTED; }

# Bytes of the answer to `dig ARGS` with DO, and its flags line (TC must not be set).
size_of() {
  local out
  out=$(dig +dnssec +norec +bufsize=1232 +time=2 +tries=1 -p "$PORT" @127.0.0.1 "$@")
  grep -q ' tc[ ;]' <<<"$(grep '^;; flags' <<<"$out")" && die "truncated at 1232: $*"
  awk '/MSG SIZE/ { print $NF }' <<<"$out"
}

for round in $(seq 1 "$ROUNDS"); do
  start_with "$CONF"
  check=$(python3 bench/geo/verify.py "$WORK" "$PORT") || die "signed answers wrong: $check"
  order="ecs ecsdo"
  [ $((round % 2)) = 0 ] && order="ecsdo ecs"
  for mix in $order; do
    got=$(load mirrordns "$PID" "$mix" max "$SECONDS_RUN")
    echo "round=$round config=signed mix=$mix $got" >> "$RESULTS"
  done
  echo "round=$round config=signed rss_kb=$(rss_kb "$PID")" >> "$RESULTS"
  if [ "$round" = 1 ]; then
    {
      echo "size geo_a_do=$(size_of downloads.example.com A +subnet=81.2.69.0/24)"
      echo "size nearest_a_do=$(size_of nearest.example.com A +subnet=81.2.69.0/24)"
      echo "size nxdomain_do=$(size_of no-such-name.example.com A)"
      echo "size nodata_do=$(size_of www.example.com TXT)"
      echo "size service_nodata_do=$(size_of downloads.example.com TXT)"
      echo "size dnskey_do=$(size_of example.com DNSKEY)"
    } >> "$RESULTS"
  fi
  tail -3 "$RESULTS" >&2
  stop_pid "$PID"; PID=""
  start_with "$WORK/mirrordns/unsigned.toml"
  got=$(load mirrordns "$PID" ecs max "$SECONDS_RUN")
  got=$(load mirrordns "$PID" ecsdo max "$SECONDS_RUN")
  echo "round=$round config=unsigned rss_kb=$(rss_kb "$PID")" >> "$RESULTS"
  stop_pid "$PID"; PID=""
done

python3 - "$RESULTS" <<'PY'
import re, statistics, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1])
        if l.startswith("round=")]
med = statistics.median
rounds = sorted({r["round"] for r in rows if "round" in r})
def pick(rnd, cfg, mix=None):
    for r in rows:
        if r.get("round") == rnd and r.get("config") == cfg and r.get("mix") == mix:
            return r
per_core = lambda r: float(r["qps"]) / float(r["cpu_cores"])
ratios, qdo, qno = [], [], []
for rnd in rounds:
    a, b = pick(rnd, "signed", "ecs"), pick(rnd, "signed", "ecsdo")
    ratios.append(per_core(b) / per_core(a))
    qno.append(per_core(a)); qdo.append(per_core(b))
    for r in (a, b):
        if float(r["lost"]) > 0:
            print(f"WARNING: round {rnd} {r['mix']}: {r['lost']} queries lost")
signed = [float(r["rss_kb"]) for r in rows if r.get("config") == "signed" and "rss_kb" in r and "mix" not in r]
unsigned = [float(r["rss_kb"]) for r in rows if r.get("config") == "unsigned" and "rss_kb" in r]
print(f"{len(rounds)} rounds (signed zone; ECS mix, 1200 /24s; queries per server core-second)")
print(f"  without DO: {med(qno):,.0f}   with DO: {med(qdo):,.0f}")
print(f"  DO / no DO per core, by round: {' '.join(f'{x:.2f}' for x in ratios)}; median {med(ratios):.2f} (target >= 0.9)")
print(f"  VmRSS signed {med(signed)/1024:.1f} MiB, unsigned {med(unsigned)/1024:.1f} MiB: "
      f"signatures cost {(med(signed) - med(unsigned))/1024:.2f} MiB (target < 10 MiB)")
for l in open(sys.argv[1]):
    if l.startswith("size "):
        k, v = l.split()[1].split("=")
        print(f"  {k}: {v} bytes{'  (OVER 1232)' if int(v) > 1232 else ''}")
PY
