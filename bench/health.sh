#!/usr/bin/env bash
# Health measurements: streaming verification throughput of a 1 GiB file served on loopback
# vs sha256sum on the same file, peak memory while verifying, and the time from a mirror going
# down to DNS answers moving away with the default settings. Loopback only; bounded.
#   VERIFY_MIB=1024 (file size)   FAILOVER=0 (skip the ~30 s failover run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench health 2>&1 | grep -E '^(verify|peak|mirror down)'
