#!/usr/bin/env bash
# Builds the Debian package: target/debian/mirrordns_<version>-1_<arch>.deb.
#
#   bash contrib/debian/build-deb.sh            # release build (what to ship)
#   DEB_PROFILE=dev bash contrib/debian/build-deb.sh   # the debug binary `cargo test` built
#                                                # (CI's packaging check; cargo-deb warns)
#
# Needs cargo-deb (cargo install cargo-deb --locked --version 3.8.0). The packaged files that
# are not in the repository as they are get made here, under target/deb-assets, from the
# binary and the repository's own files, so that nothing is kept twice:
# - man pages and completions: `mirrordns man --dir` and `mirrordns completions`;
# - /etc/mirrordns/mirrordns.toml: config/mirrordns.toml with its zone path made relative to
#   /etc/mirrordns (the zone is installed as /etc/mirrordns/zones/example.com.zone);
# - the systemd unit: contrib/mirrordns.service with the binary in /usr/bin.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=${DEB_PROFILE:-release}
case "$profile" in
  dev | debug) profile=dev; dir=debug ;;
  *) dir=$profile ;;
esac
target=${CARGO_TARGET_DIR:-target}

cargo build --locked --profile "$profile" --bin mirrordns
bin="$target/$dir/mirrordns"

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions" "$assets/systemd"

"$bin" man --dir "$assets/man"
# Debian installs man pages compressed; -n leaves the time out, so a rebuild is identical.
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/mirrordns"
"$bin" completions zsh >"$assets/completions/_mirrordns"
"$bin" completions fish >"$assets/completions/mirrordns.fish"

# Each edit must have happened: a changed source file fails here, not in a silent package.
sed 's|^zones = \["\.\./zones/example\.com\.zone"\]|zones = ["zones/example.com.zone"]|' \
  config/mirrordns.toml >"$assets/mirrordns.toml"
grep -q '^zones = \["zones/example.com.zone"\]' "$assets/mirrordns.toml" \
  || { echo "build-deb: config/mirrordns.toml has no zones line to adapt" >&2; exit 1; }
sed 's|/usr/local/bin/mirrordns|/usr/bin/mirrordns|g' contrib/mirrordns.service \
  >"$assets/systemd/mirrordns.service"
if grep -q /usr/local "$assets/systemd/mirrordns.service" \
  || ! grep -q '^ExecStart=/usr/bin/mirrordns serve' "$assets/systemd/mirrordns.service"; then
  echo "build-deb: contrib/mirrordns.service: unexpected paths" >&2
  exit 1
fi

# Stripped: the release profile keeps line tables for backtraces in development; a package
# for servers ships without them (add --dbgsym for a separate symbols package).
cargo deb --no-build --locked --strip --profile "$profile"
