# Shared by bench/vs-gdnsd.sh and bench/cycles.sh; source it, do not run it.
# Everything here talks to 127.0.0.1 only, bounds every wait, and stops servers by the PID
# it started them with.
#   SERVER_CPU=0  LOAD_CPU=1  THREADS=1  OUTSTANDING=100

SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
THREADS="${THREADS:-1}"
OUTSTANDING="${OUTSTANDING:-100}"
HERE_GEO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TICK=$(getconf CLK_TCK)
source "$HERE_GEO/../lib.sh"

# Installs gdnsd and dnsperf (Debian packages) when missing (apt_install keeps gdnsd's
# service from starting).
geo_tools() {
  local need=()
  command -v gdnsd >/dev/null || need+=(gdnsd)
  command -v dnsperf >/dev/null || need+=(dnsperf)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v python3 >/dev/null || need+=(python3)
  apt_install "${need[@]}"
}

# A port free for both UDP and TCP on 127.0.0.1 (both servers listen on both).
free_port() {
  python3 - <<'PY'
import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        u.close(); t.close()
    print(port); break
else:
    raise SystemExit("no free port")
PY
}

# geo_setup WORK: ports, database, query files and both configs under WORK.
geo_setup() {
  GEO_WORK="$1"
  GDNSD_PORT=$(free_port)
  MIRRORDNS_PORT=$(free_port)
  [ "$GDNSD_PORT" != "$MIRRORDNS_PORT" ] || MIRRORDNS_PORT=$(free_port)
  python3 "$HERE_GEO/mkgeo.py" "$GEO_WORK" "$GDNSD_PORT" "$MIRRORDNS_PORT" "$THREADS" >&2
  gdnsd -c "$GEO_WORK/gdnsd" checkconf > "$GEO_WORK/gdnsd/checkconf.log" 2>&1 \
    || die "gdnsd checkconf: $(tail -3 "$GEO_WORK/gdnsd/checkconf.log")"
  target/release/mirrordns check -c "$GEO_WORK/mirrordns/config.toml" >&2 \
    || die "mirrordns check failed"
}

port_of() { [ "$1" = gdnsd ] && echo "$GDNSD_PORT" || echo "$MIRRORDNS_PORT"; }

# start_server NAME [CONFIG]: pinned to SERVER_CPU, foreground (no daemon fork, so $! is the
# server); sets STARTED. The caller records it for its cleanup trap. CONFIG (mirrordns only)
# replaces the generated config.toml.
start_server() {
  case "$1" in
    gdnsd) taskset -c "$SERVER_CPU" gdnsd -c "$GEO_WORK/gdnsd" start \
             > "$GEO_WORK/gdnsd.log" 2>&1 & ;;
    mirrordns) taskset -c "$SERVER_CPU" target/release/mirrordns serve \
                 -c "${2:-$GEO_WORK/mirrordns/config.toml}" --threads "$THREADS" \
                 > "$GEO_WORK/mirrordns.log" 2>&1 & ;;
  esac
  STARTED=$!
  local port; port=$(port_of "$1")
  for _ in $(seq 1 240); do
    kill -0 "$STARTED" 2>/dev/null || die "$1 exited: $(tail -3 "$GEO_WORK/$1.log")"
    if dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 www.example.com A 2>/dev/null \
        | grep -q 192.0.2.100; then
      return 0
    fi
    sleep 0.25
  done
  die "$1 did not answer on 127.0.0.1:$port within 60 s"
}

# utime and stime of the whole process (every thread), in clock ticks. The command name can
# hold spaces, so fields are counted after its closing parenthesis.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }

# load NAME PID MIX RATE SECONDS: one dnsperf run pinned to LOAD_CPU against 127.0.0.1, and
# the server's CPU over it. RATE is a QPS, or "max" for closed-loop saturation
# (OUTSTANDING in flight). Prints key=value fields:
#   qps completed lost avg_us cpu_cores user_ns kernel_ns (CPU per completed query)
#   and at a fixed rate p50_us p99_us max_us (from dnsperf -v, one line per answer; too slow
#   to print at saturation, where the load generator would become the bottleneck)
load() {
  local name="$1" pid="$2" mix="$3" rate="$4" secs="$5"
  local out="$GEO_WORK/load-$name.txt" args=()
  [ "$rate" != max ] && args=(-Q "$rate" -v)
  local before after
  before=$(cpu_ticks "$pid")
  # -t 1: a lost query is given up after 1 s, so the drain after -l is short; `timeout` is the
  # backstop should dnsperf itself hang.
  timeout $((secs + 20)) taskset -c "$LOAD_CPU" dnsperf -B -d "$GEO_WORK/q-$mix.bin" \
    -s 127.0.0.1 -p "$(port_of "$name")" -l "$secs" -t 1 -c 1 -T 1 -q "$OUTSTANDING" \
    "${args[@]}" > "$out" 2>&1 || die "dnsperf failed against $name: $(tail -3 "$out")"
  after=$(cpu_ticks "$pid")
  python3 - "$out" "$before" "$after" "$TICK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
b, a, hz = sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
num = lambda pat: float(re.search(pat, text).group(1))
done = num(r"Queries completed:\s+(\d+)")
run = num(r"Run time \(s\):\s+([\d.]+)")
user, kern = ((int(a[i]) - int(b[i])) / hz for i in (0, 1))
qps = num(r"Queries per second:\s+([\d.]+)")
lost = num(r"Queries lost:\s+(\d+)")
avg = num(r"Average Latency \(s\):\s+([\d.]+)")
f = {"qps": f"{qps:.0f}", "completed": f"{done:.0f}", "lost": f"{lost:.0f}",
     "avg_us": f"{avg * 1e6:.0f}",
     "cpu_cores": f"{(user + kern) / run:.3f}",
     "user_ns": f"{user / done * 1e9:.0f}" if done else "nan",
     "kernel_ns": f"{kern / done * 1e9:.0f}" if done else "nan"}
lat = sorted(float(x) for x in re.findall(r"^> \S+ .* ([\d.]+)$", text, re.M))
if lat:
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
    f.update(p50_us=f"{pick(0.50):.0f}", p99_us=f"{pick(0.99):.0f}", max_us=f"{lat[-1] * 1e6:.0f}")
print(" ".join(f"{k}={v}" for k, v in f.items()))
PY
}
