#!/usr/bin/env bash
# CI: build the Debian package, check what is in it, install it on this machine (as root, with
# a policy-rc.d that keeps its service from starting), use it as installed, remove it (the
# conffiles stay), reinstall it (an edited conffile is kept), purge it and check that nothing
# is left. Run on a throwaway machine only (CI's): it installs and purges the `mirrordns`
# package and user. Loopback only: no server is started; the only network use is cargo
# installing cargo-deb from crates.io when it is missing. Exits non-zero on any problem.
#
# DEB_PROFILE (default dev): the cargo profile of the packaged binary. CI packages the debug
# binary that `cargo test` already built (seconds instead of a 10+ minute release build on two
# cores); the package is the same but for the binary. cargo-deb warns that the dev profile is
# meant for releases only; `DEB_PROFILE=release bash .ci/deb.sh` checks the real one.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

CARGO_DEB_VERSION=3.8.0
PKG=mirrordns
UNIT=mirrordns.service

fail() {
  echo "deb: FAILED: $*" >&2
  exit 1
}
ok() { echo "deb: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs and purges the package)"

# A tool the check needs: under CI (which installs the tools) a missing one fails; elsewhere
# that part is skipped, and said so.
have() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  [ -z "${CI:-}" ] || fail "$1 is not installed (apt-get install $2)"
  echo "deb: skipped: $1 is not installed (apt-get install $2)"
  return 1
}

# --- the policy-rc.d guard, and leaving the machine as it was ---------------------------
# Installing must not start the service. A policy-rc.d that answers 101 (forbidden) is what
# deb-systemd-invoke asks; an existing one is moved aside for the run and put back after.
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
restore_policy() {
  rm -f "$POLICY"
  if [ -n "$policy_backup" ]; then mv "$policy_backup" "$POLICY"; fi
}
purge_if_installed() {
  if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'ok installed\|config-files'; then
    dpkg --purge "$PKG" >/dev/null
  fi
}
cleanup() {
  status=$?
  if [ "$status" != 0 ]; then purge_if_installed || true; fi
  restore_policy
  exit "$status"
}
if [ -e "$POLICY" ]; then
  policy_backup=$(mktemp /usr/sbin/policy-rc.d.deb-sh.XXXXXX)
  mv "$POLICY" "$policy_backup"
fi
trap cleanup EXIT
printf '#!/bin/sh\n# deb.sh: no service starts while the package is tested.\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

# A package left by an interrupted run of this script goes first, so that a run starts clean.
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'ok installed\|config-files'; then
  echo "deb: purging the $PKG package left by an earlier run"
  dpkg --purge "$PKG" >/dev/null
fi

# --- build ---------------------------------------------------------------------------------
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  t=$SECONDS
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
  echo "deb: installed cargo-deb $CARGO_DEB_VERSION in $((SECONDS - t)) s"
fi
profile=${DEB_PROFILE:-dev}
case "$profile" in dev | debug) bin=target/debug/mirrordns ;; *) bin=target/$profile/mirrordns ;; esac
t=$SECONDS
rm -f target/debian/"$PKG"_*.deb
DEB_PROFILE=$profile bash contrib/debian/build-deb.sh
deb=$(ls target/debian/"$PKG"_*.deb)
echo "deb: built $deb ($(du -h "$deb" | cut -f1)) in $((SECONDS - t)) s"

# --- what is in it ---------------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')
unit_path=""
for p in /usr/lib/systemd/system/$UNIT /lib/systemd/system/$UNIT; do
  if grep -qx "$p" <<<"$contents"; then unit_path=$p; fi
done
[ -n "$unit_path" ] || fail "no $UNIT in the package"
for f in /usr/bin/mirrordns /etc/mirrordns/mirrordns.toml /etc/mirrordns/zones/example.com.zone \
  /usr/share/man/man1/mirrordns.1.gz /usr/share/man/man1/mirrordns-serve.1.gz \
  /usr/share/bash-completion/completions/mirrordns /usr/share/zsh/vendor-completions/_mirrordns \
  /usr/share/fish/vendor_completions.d/mirrordns.fish /usr/share/doc/mirrordns/README.md \
  /usr/share/doc/mirrordns/docs/operations.md /usr/share/doc/mirrordns/copyright \
  /usr/share/doc/mirrordns/contrib/prometheus/alerts.yml \
  /usr/share/doc/mirrordns/contrib/grafana/mirrordns.json; do
  grep -qx "$f" <<<"$contents" || fail "$f is not in the package"
done
ok "dpkg-deb -c: binary, unit ($unit_path), config and zone, man pages, completions, docs"
# A man page for every command the binary has (the list comes from the binary's own help).
while read -r cmd; do
  grep -qx "/usr/share/man/man1/mirrordns-$cmd.1.gz" <<<"$contents" \
    || fail "no man page for \`mirrordns $cmd\`"
done < <("$bin" --help \
  | awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}' | grep -vx help)
ok "a man page for every command"

unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$unit_path")
grep -qx 'ExecStart=/usr/bin/mirrordns serve --config /etc/mirrordns/mirrordns.toml' <<<"$unit" \
  || fail "the unit does not run /usr/bin/mirrordns"
! grep -q /usr/local <<<"$unit" || fail "the unit names /usr/local"
config=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/mirrordns/mirrordns.toml)
grep -qx 'zones = \["zones/example.com.zone"\]' <<<"$config" \
  || fail "the packaged config does not name zones/example.com.zone"
ok "unit runs /usr/bin/mirrordns; config names its zone beside it"

info=$(dpkg-deb -I "$deb")
ctl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctl"
printf '/etc/mirrordns/mirrordns.toml\n/etc/mirrordns/zones/example.com.zone\n' \
  | diff - "$ctl/conffiles" >/dev/null || fail "conffiles: $(cat "$ctl/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$ctl/$s" ] || fail "no executable $s in the package"
done
grep -q '^ Depends:.*adduser' <<<"$info" || fail "Depends lacks adduser"
grep -q 'adduser --quiet --system' "$ctl/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-invoke' "$ctl/postinst" || fail "postinst does not start through deb-systemd-invoke"
grep -q 'deb-systemd-invoke stop' "$ctl/prerm" || fail "prerm does not stop the service"
grep -q 'deb-systemd-helper purge' "$ctl/postrm" || fail "postrm does not purge the unit's state"
# The DEBHELPER mark is replaced wherever it appears, comments included: it must be gone.
! grep -q '#DEBHELPER#' "$ctl"/post* "$ctl/prerm" || fail "a DEBHELPER mark was left"
ok "dpkg-deb -I: conffiles (2), postinst/prerm/postrm with the systemd snippets, Depends: adduser"

if have shellcheck shellcheck; then
  # Our scripts as written, strictly; as packaged (with cargo-deb's snippets), warnings and up.
  shellcheck contrib/debian/postinst contrib/debian/prerm contrib/debian/postrm \
    contrib/debian/build-deb.sh .ci/deb.sh
  shellcheck --shell=sh --severity=warning "$ctl/postinst" "$ctl/prerm" "$ctl/postrm"
  ok "shellcheck: maintainer scripts (source and packaged), build-deb.sh, deb.sh"
fi
rm -rf "$ctl"

# --- install ---------------------------------------------------------------------------------
t=$SECONDS
dpkg -i "$deb" >/dev/null
echo "deb: dpkg -i in $((SECONDS - t)) s"
[ -x /usr/bin/mirrordns ] || fail "/usr/bin/mirrordns missing"
/usr/bin/mirrordns --version | grep -q '^mirrordns ' || fail "mirrordns --version"
pw=$(getent passwd mirrordns) || fail "no mirrordns user"
uid=$(cut -d: -f3 <<<"$pw")
[ "$uid" -lt 1000 ] || fail "mirrordns is not a system user (uid $uid)"
[ "$(cut -d: -f7 <<<"$pw")" = /usr/sbin/nologin ] || fail "mirrordns has a login shell"
getent group mirrordns >/dev/null || fail "no mirrordns group"
[ "$(stat -c '%U:%G %a' /var/lib/mirrordns)" = "mirrordns:mirrordns 750" ] \
  || fail "/var/lib/mirrordns: $(stat -c '%U:%G %a' /var/lib/mirrordns)"
[ -f "$unit_path" ] || fail "$unit_path not installed"
ok "installed: /usr/bin/mirrordns, system user and group mirrordns (uid $uid), /var/lib/mirrordns mirrordns:mirrordns 750, $unit_path"
if pgrep -u mirrordns >/dev/null; then fail "a process runs as mirrordns: policy-rc.d was not obeyed"; fi
ok "no service started (policy-rc.d)"
# deb-systemd-helper enabled it (its symlink and its record), which systemd follows at boot.
[ -L /etc/systemd/system/multi-user.target.wants/$UNIT ] || fail "$UNIT is not enabled"
[ -e /var/lib/systemd/deb-systemd-helper-enabled/$UNIT.dsh-also ] \
  || fail "deb-systemd-helper has no record of $UNIT"
ok "the unit is enabled through deb-systemd-helper (starts at the next boot)"

out=$(/usr/bin/mirrordns check --config /etc/mirrordns/mirrordns.toml 2>&1) || fail "check as root: $out"
[ "$out" = ok ] || fail "check as root printed: $out"
out=$(runuser -u mirrordns -- /usr/bin/mirrordns check --config /etc/mirrordns/mirrordns.toml 2>&1) \
  || fail "check as the mirrordns user: $out"
ok "mirrordns check --config /etc/mirrordns/mirrordns.toml: ok (as root and as the service's user)"

if have systemd-analyze systemd; then
  # Checks the unit's syntax and that the binary it names exists; no systemd needs to run.
  out=$(systemd-analyze verify "$unit_path" 2>&1) || fail "systemd-analyze verify: $out"
  ok "systemd-analyze verify $unit_path"
fi
if have man man-db; then
  page=$(MANPAGER=cat MANWIDTH=100 man mirrordns 2>&1) || fail "man mirrordns: $page"
  grep -q 'mirrordns-serve(1)' <<<"$page" || fail "man mirrordns lists no commands"
  page=$(MANPAGER=cat MANWIDTH=100 man mirrordns-check 2>&1) || fail "man mirrordns-check: $page"
  ok "man mirrordns, man mirrordns-check"
fi
out=$(bash -c 'source /usr/share/bash-completion/completions/mirrordns && complete -p mirrordns' 2>&1) \
  || fail "bash completion: $out"
ok "bash completion loads: $out"

# --- remove: conffiles, user and state stay; reinstall keeps an edited conffile ----------------
echo '# edited by deb.sh' >>/etc/mirrordns/mirrordns.toml
dpkg -r "$PKG" >/dev/null
[ ! -e /usr/bin/mirrordns ] || fail "remove left /usr/bin/mirrordns"
[ ! -e "$unit_path" ] || fail "remove left $unit_path"
grep -q '^# edited by deb.sh' /etc/mirrordns/mirrordns.toml || fail "remove did not keep the conffile"
getent passwd mirrordns >/dev/null || fail "remove deleted the user"
[ -d /var/lib/mirrordns ] || fail "remove deleted /var/lib/mirrordns"
ok "dpkg -r: binary and unit gone; conffiles, user and /var/lib/mirrordns kept"
dpkg -i "$deb" >/dev/null
grep -q '^# edited by deb.sh' /etc/mirrordns/mirrordns.toml || fail "reinstall replaced the edited conffile"
out=$(/usr/bin/mirrordns check --config /etc/mirrordns/mirrordns.toml 2>&1) || fail "check after reinstall: $out"
ok "reinstall keeps the edited conffile, and check still passes"

# --- purge: nothing left ---------------------------------------------------------------------
echo '{}' >/var/lib/mirrordns/state.json # what the server writes there
dpkg --purge "$PKG" >/dev/null
left=()
for p in /etc/mirrordns /var/lib/mirrordns /usr/bin/mirrordns "$unit_path" \
  /etc/systemd/system/multi-user.target.wants/$UNIT \
  /var/lib/systemd/deb-systemd-helper-enabled/$UNIT.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/$UNIT \
  /usr/share/man/man1/mirrordns.1.gz /usr/share/bash-completion/completions/mirrordns \
  /usr/share/doc/mirrordns; do
  if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
done
if getent passwd mirrordns >/dev/null; then left+=("user mirrordns"); fi
if getent group mirrordns >/dev/null; then left+=("group mirrordns"); fi
if dpkg-query -W "$PKG" >/dev/null 2>&1; then left+=("dpkg's record of $PKG"); fi
[ ${#left[@]} = 0 ] || fail "purge left: ${left[*]}"
ok "dpkg --purge: no /etc/mirrordns, /var/lib/mirrordns, user, group, binary, unit or its state"

echo "deb: all checks passed in $((SECONDS - started)) s"
