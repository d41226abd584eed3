#!/usr/bin/env python3
"""Writes everything bench/redirect.sh serves and runs, under WORK:

  files/            a release (tool/v1.0.0: three files of made-up bytes, SHA256SUMS and a
                    manifest.json with their real SHA-256), served by python3 -m http.server
                    as the origin and as both mirrors
  mirrordns/        config.toml (one [[redirect]] on the service, health interval 1 s) and
                    the zone it serves
  nginx/nginx.conf  one process, no access log, `return 302` on every path

usage: setup.py WORK REDIRECT_PORT DNS_PORT MONITOR_PORT ORIGIN_PORT M1_PORT M2_PORT NGINX_PORT
"""
import hashlib
import json
import os
import sys
import time

work = sys.argv[1]
rport, dport, mport, oport, m1, m2, nport = (int(x) for x in sys.argv[2:9])
VERSION = "v1.0.0"


def filler(seed, n):
    """Deterministic bytes, different per file (xorshift, as src/demo does)."""
    x = (seed * 0x9E3779B97F4A7C15 | 1) & (2**64 - 1)
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        out[i] = x & 0xFF
    return bytes(out)


rel = os.path.join(work, "files", "tool", VERSION)
os.makedirs(rel, exist_ok=True)
entries, sums = [], ""
for seed, (name, size) in enumerate(
    [("tool-linux-amd64.tar.gz", 96 << 10), ("tool-darwin-arm64.tar.gz", 64 << 10),
     ("tool-windows-amd64.zip", 64 << 10)], start=1):
    data = filler(seed, size)
    with open(os.path.join(rel, name), "wb") as f:
        f.write(data)
    h = hashlib.sha256(data).hexdigest()
    sums += f"{h}  {name}\n"
    entries.append({"path": name, "size": size, "sha256": h})
with open(os.path.join(rel, "SHA256SUMS"), "w") as f:
    f.write(sums)
entries.append({"path": "SHA256SUMS", "size": len(sums),
                "sha256": hashlib.sha256(sums.encode()).hexdigest()})
with open(os.path.join(rel, "manifest.json"), "w") as f:
    json.dump({"version": VERSION,
               "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "files": entries}, f, indent=1)

os.makedirs(os.path.join(work, "mirrordns"), exist_ok=True)
with open(os.path.join(work, "mirrordns", "example.com.zone"), "w") as f:
    f.write("""$ORIGIN example.com.
$TTL 3600
@           SOA   ns1 hostmaster 2026120301 3600 600 604800 300
            NS    ns1
ns1         A     192.0.2.53
www         A     192.0.2.100
""")
with open(os.path.join(work, "mirrordns", "config.toml"), "w") as f:
    f.write(f"""[server]
dns-listen = ["127.0.0.1:{dport}"]
http-listen = "127.0.0.1:{mport}"
zones = ["example.com.zone"]

[origin]
base-url = "http://127.0.0.1:{oport}/"
ipv4 = ["192.0.2.1"]

[health]
interval = "1s"
timeout = "2s"

[[service]]
name = "downloads.example.com"
policy = "regions"
ttl = 30
answers = 1
mirrors = ["m1", "m2"]
releases = ["tool/{VERSION}/manifest.json"]
[service.regions]
default = ["m1", "m2"]

[[mirror]]
name = "m1"
ipv4 = ["192.0.2.10"]
base-url = "http://127.0.0.1:{m1}/"
location = {{ lat = 50.1, lon = 8.7 }}

[[mirror]]
name = "m2"
ipv4 = ["192.0.2.11"]
base-url = "http://127.0.0.1:{m2}/"
location = {{ lat = 38.9, lon = -77.0 }}

[[redirect]]
service = "downloads.example.com"
listen = ["127.0.0.1:{rport}"]
""")

ng = os.path.join(work, "nginx")
os.makedirs(os.path.join(ng, "tmp"), exist_ok=True)
with open(os.path.join(ng, "nginx.conf"), "w") as f:
    # keepalive_requests: nginx closes a keep-alive connection after 1000 requests by
    # default (1.19.10+), which mirrordns does not do; raised so both keep their connections.
    f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {ng}/nginx.pid;
error_log {ng}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {ng}/tmp/body;
    proxy_temp_path {ng}/tmp/proxy;
    fastcgi_temp_path {ng}/tmp/fastcgi;
    keepalive_requests 1000000000;
    server {{
        listen 127.0.0.1:{nport};
        location / {{ return 302 http://127.0.0.1:9/$uri; }}
    }}
}}
""")
