# Shared by every script under bench/; source it, do not run it.

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install PKG...: installs Debian packages. A package that ships a service (gdnsd, nginx)
# would start it; a policy-rc.d answering 101 stops that. Ours is removed afterwards only if
# there was none before, so a machine's own policy is left as it was.
apt_install() {
  [ $# -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "needs $*: run as root or install them first"
  local made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made=1
  fi
  log "apt-get install $*"
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@"; } >&2 || rc=$?
  [ "$made" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install $* failed"
}

stop_pid() {  # stop_pid PID: TERM, then KILL after 10 s; only that PID
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
