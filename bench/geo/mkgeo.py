#!/usr/bin/env python3
"""Everything the gdnsd comparison needs, made here, so the bench runs from a clone alone.

Usage: mkgeo.py OUTDIR GDNSD_PORT MIRRORDNS_PORT [THREADS]

Writes into OUTDIR:
  geo.mmdb                 a City-schema MaxMind DB of made-up networks on every continent
                           (no vendor database is fetched or committed)
  q-ecs.bin, q-noecs.bin,  dnsperf -B query files (2-byte length + wire message): per-query
  q-static.bin             ECS /24s from every continent; no ECS; a static name
  q-ecsdo.bin              the ECS mix with the DO bit set (bench/dnssec.sh)
  expected.tsv             ECS subnet and the A record the table gives it, for verify.py
  gdnsd/config, gdnsd/zones/example.com
  mirrordns/config.toml, mirrordns/example.com.zone

The region table (DC_FOR) is defined once, here, and rendered into both servers' config
languages, so both answer the same question. Standard library only: no pip, no apt module.
"""
import ipaddress
import os
import struct
import sys

MIRRORS = {  # name -> (answer, lat, lon)
    "us-east": ("192.0.2.10", 38.9, -77.0),
    "eu-west": ("192.0.2.11", 50.1, 8.7),
    "ap-south": ("192.0.2.12", 1.35, 103.8),
    "sa-east": ("192.0.2.13", -23.5, -46.6),
    "ap-northeast": ("192.0.2.14", 35.7, 139.7),
}
DEFAULT = "us-east"
BY_CONTINENT = {"NA": "us-east", "SA": "sa-east", "EU": "eu-west", "AF": "eu-west",
                "OC": "ap-south", "AN": "sa-east", "AS": "ap-south"}
# Country rules are only written under AS: gdnsd nests countries under their continent, and
# mirrordns's country table would otherwise also catch these codes on other continents.
BY_COUNTRY_IN_ASIA = {"JP": "ap-northeast", "KR": "ap-northeast", "CN": "ap-northeast",
                      "TW": "ap-northeast", "HK": "ap-northeast", "TR": "eu-west",
                      "IL": "eu-west", "AE": "eu-west", "SA": "eu-west"}

# Countries per continent with a rough centre; every country of BY_COUNTRY_IN_ASIA is here so
# the country rules are exercised. "SA" appears twice on purpose: Saudi Arabia under AS.
COUNTRIES = {
    "NA": [("US", 39, -98), ("CA", 56, -106), ("MX", 23, -102)],
    "SA": [("BR", -14, -51), ("AR", -38, -63), ("CL", -35, -71), ("CO", 4, -72)],
    "EU": [("DE", 51, 10), ("FR", 46, 2), ("GB", 55, -3), ("NL", 52, 5), ("PL", 52, 19)],
    "AF": [("ZA", -30, 25), ("NG", 9, 8), ("EG", 26, 30), ("KE", 0, 38)],
    "AS": [("JP", 36, 138), ("KR", 36, 128), ("CN", 35, 105), ("TW", 23, 121), ("HK", 22, 114),
           ("TR", 39, 35), ("IL", 31, 35), ("AE", 24, 54), ("SA", 24, 45), ("IN", 21, 78),
           ("SG", 1, 104), ("ID", -1, 113), ("TH", 15, 101)],
    "OC": [("AU", -25, 133), ("NZ", -41, 174)],
    "AN": [("AQ", -75, 0)],
}
SUBNETS = 1200


def dc_for(continent, country):
    if continent == "AS" and country in BY_COUNTRY_IN_ASIA:
        return BY_COUNTRY_IN_ASIA[country]
    return BY_CONTINENT.get(continent, DEFAULT)


class Rng:
    """xorshift64: the same database and queries on every machine and every run."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 7
        s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n


def public_slash8s():
    skip = {0, 10, 100, 127, 169, 172, 192, 198, 203}  # private, shared, test and loopback space
    return [a for a in range(1, 224) if a not in skip]


def networks(rng):
    """Non-overlapping /16s plus longer prefixes nested inside a quarter of them, placed on a
    different continent: gdnsd and mirrordns must both take the longest match, and the
    scopes they return then vary like a real database's do."""
    places = [(c, cc, lat, lon) for c, ccs in COUNTRIES.items() for cc, lat, lon in ccs]
    conts = list(COUNTRIES)
    out = []
    used = set()
    octets = public_slash8s()
    while len(out) < 3000:
        a, b = octets[rng.below(len(octets))], rng.below(256)
        if (a, b) in used:
            continue
        used.add((a, b))
        # Each continent gets about the same number of networks, whatever its country count.
        cont = conts[rng.below(len(conts))]
        cc, lat, lon = COUNTRIES[cont][rng.below(len(COUNTRIES[cont]))]
        out.append((ipaddress.ip_network(f"{a}.{b}.0.0/16"), (cont, cc, lat, lon)))
        if rng.below(4) == 0:
            plen = 18 + rng.below(7)
            inner = (b << 8 | rng.below(256)) >> (24 - plen) << (24 - plen)
            net = ipaddress.ip_network(f"{a}.{inner >> 8}.{inner & 255}.0/{plen}")
            out.append((net, places[rng.below(len(places))]))
    return out


# --- MaxMind DB writer (format 2.0: a binary search tree of 32-bit records, a data section of
# typed values, metadata after a marker). IPv6 tree with IPv4 at ::/96, as vendors ship it.

def ctrl(ty, size):
    if size < 29:
        first, extra = size, b""
    elif size < 285:
        first, extra = 29, bytes([size - 29])
    elif size < 65821:
        first, extra = 30, struct.pack(">H", size - 285)
    else:
        first, extra = 31, struct.pack(">I", size - 65821)[1:]
    if ty <= 7:
        return bytes([ty << 5 | first]) + extra
    return bytes([first, ty - 7]) + extra  # extended type: type 0 then type - 7


def enc(v):
    if isinstance(v, str):
        b = v.encode()
        return ctrl(2, len(b)) + b
    if isinstance(v, float):
        return ctrl(3, 8) + struct.pack(">d", v)
    if isinstance(v, tuple):  # (type, int): the format has several unsigned widths
        ty, n = v
        b = n.to_bytes(8, "big").lstrip(b"\0")
        return ctrl(ty, len(b)) + b
    if isinstance(v, dict):
        return ctrl(7, len(v)) + b"".join(enc(k) + enc(x) for k, x in v.items())
    if isinstance(v, list):
        return ctrl(11, len(v)) + b"".join(enc(x) for x in v)
    raise TypeError(v)


def u16(n):
    return (5, n)


def u32(n):
    return (6, n)


def u64(n):
    return (9, n)


def mmdb(nets):
    data = bytearray()
    offset_of = {}
    for _, place in nets:
        if place not in offset_of:
            cont, cc, lat, lon = place
            offset_of[place] = len(data)
            data += enc({"continent": {"code": cont}, "country": {"iso_code": cc},
                         "location": {"latitude": float(lat), "longitude": float(lon)}})
    # Nodes are [left, right]; a record is ("n", index), ("d", data offset) or None (empty).
    nodes = [[None, None]]
    # Shorter prefixes first: a longer one then splits the leaf it lands in, keeping the
    # shorter one's record on the sibling paths it does not cover.
    for net, place in sorted(nets, key=lambda x: x[0].prefixlen):
        addr = int(net.network_address)
        plen = 96 + net.prefixlen
        node = 0
        for depth in range(plen - 1):
            bit = (addr >> (127 - depth)) & 1 if depth >= 96 else 0
            rec = nodes[node][bit]
            if rec is None or rec[0] == "d":
                nodes.append([rec, rec])
                nodes[node][bit] = ("n", len(nodes) - 1)
            node = nodes[node][bit][1]
        bit = (addr >> (127 - (plen - 1))) & 1
        assert nodes[node][bit] is None or nodes[node][bit][0] == "d", "nested longer first"
        nodes[node][bit] = ("d", offset_of[place])
    count = len(nodes)
    tree = bytearray()
    for n in nodes:
        for rec in n:
            if rec is None:
                v = count
            elif rec[0] == "n":
                v = rec[1]
            else:
                v = count + 16 + rec[1]
            tree += struct.pack(">I", v)
    meta = enc({
        "binary_format_major_version": u16(2),
        "binary_format_minor_version": u16(0),
        "build_epoch": u64(1_700_000_000),
        "database_type": "mirrordns-Bench-City",
        "description": {"en": "made-up networks for bench/vs-gdnsd.sh"},
        "ip_version": u16(6),
        "languages": ["en"],
        "node_count": u32(count),
        "record_size": u16(32),
    })
    return bytes(tree) + b"\0" * 16 + bytes(data) + b"\xab\xcd\xefMaxMind.com" + meta


# --- DNS wire format for the query files.

def qname(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"


def query(name, ecs=None, dnssec_ok=False):
    opts = b""
    if ecs is not None:
        net = ipaddress.ip_network(ecs)
        addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
        body = struct.pack(">HBB", 1, net.prefixlen, 0) + addr
        opts = struct.pack(">HH", 8, len(body)) + body
    # ID 0: dnsperf writes its own; no RD (we query authoritative servers), one OPT RR.
    head = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 1)
    # The OPT TTL's flags hold DO (0x8000) for bench/dnssec.sh's signed mix.
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if dnssec_ok else 0, len(opts)) + opts
    return head + qname(name) + struct.pack(">HH", 1, 1) + opt


def stream(msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def longest_match(nets, ip):
    best = None
    for net, place in nets:
        if ip in net and (best is None or net.prefixlen > best[0].prefixlen):
            best = (net, place)
    return best


def subnets(rng, nets):
    """SUBNETS /24s, the same number from every continent, each inside a network of the DB."""
    per = {c: [] for c in COUNTRIES}
    for net, place in nets:
        per[place[0]].append(net)
    want = SUBNETS // len(per)
    out, seen = [], set()
    for i, cont in enumerate(per):
        n = want + (1 if i < SUBNETS % len(per) else 0)
        tries = 0
        while n > 0 and tries < 100_000:
            tries += 1
            net = per[cont][rng.below(len(per[cont]))]
            size = 1 << (24 - net.prefixlen)
            s24 = ipaddress.ip_network(
                (int(net.network_address) + (rng.below(size) << 8), 24))
            hit = longest_match(nets, s24.network_address)
            # A /24 under a nested network of another continent counts for that one instead.
            if s24 in seen or hit[1][0] != cont:
                continue
            seen.add(s24)
            out.append((s24, hit[1]))
            n -= 1
    return out


def gdnsd_config(port, threads, work):
    asia = "\n".join(f"            {cc} => [ {dc} ]" for cc, dc in BY_COUNTRY_IN_ASIA.items())
    conts = "\n".join(f"          {c} => [ {dc} ]" for c, dc in BY_CONTINENT.items() if c != "AS")
    dcmap = "\n".join(f"          {n} => {a}" for n, (a, _, _) in MIRRORS.items())
    return f"""# Written by bench/geo/mkgeo.py; the same table as mirrordns/config.toml.
options => {{
  listen => {{ 127.0.0.1:{port} => {{ udp_threads => {threads}, tcp_threads => 1 }} }}
  run_dir => {work}/gdnsd/run
  state_dir => {work}/gdnsd/state
  zones_default_ttl => 30
}}
plugins => {{
  geoip => {{
    maps => {{
      mirrors => {{
        geoip2_db => {work}/geo.mmdb
        datacenters => [ {" ".join(MIRRORS)} ]
        map => {{
          default => [ {DEFAULT} ]
{conts}
          AS => {{
            default => [ {BY_CONTINENT["AS"]} ]
{asia}
          }}
        }}
      }}
    }}
    resources => {{
      downloads => {{
        map => mirrors
        # gdnsd's built-in always-up type: mirrordns's mirrors are static here (no base-url),
        # so neither server probes anything.
        service_types => up
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
"""


ZONE_HEAD = """$ORIGIN example.com.
$TTL 30
@         SOA ns1 hostmaster ( 2026120301 3600 600 604800 30 )
@         NS  ns1
ns1       A   192.0.2.53
www       A   192.0.2.100
"""


def mirrordns_config(port):
    conts = "\n".join(f'{c} = ["{dc}"]' for c, dc in BY_CONTINENT.items())
    asia = "\n".join(f'{cc} = ["{dc}"]' for cc, dc in BY_COUNTRY_IN_ASIA.items())
    mirrors = "\n".join(
        f'[[mirror]]\nname = "{n}"\nipv4 = ["{a}"]\nlocation = {{ lat = {lat}, lon = {lon} }}'
        for n, (a, lat, lon) in MIRRORS.items())
    return f"""# Written by bench/geo/mkgeo.py; the same table as gdnsd/config.
[server]
dns-listen = ["127.0.0.1:{port}"]
zones = ["example.com.zone"]
http-listen = ""

[geo]
database = "../geo.mmdb"
watch = false

[[service]]
name = "downloads.example.com"
policy = "regions"
ttl = 30
answers = 1
mirrors = [{", ".join(f'"{n}"' for n in MIRRORS)}]
[service.regions]
default = ["{DEFAULT}"]
[service.regions.continent]
{conts}
# Only Asian countries have country rules (see gdnsd's map), and none of these codes is
# used for a network outside Asia by the generator, so the flat table means the same.
[service.regions.country]
{asia}

{mirrors}
"""


def main():
    out, gport, mport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = Rng(0x6D69_7272_6F72_646E)
    nets = networks(rng)
    # The flat country table of mirrordns equals gdnsd's nested one only if no non-Asian
    # network carries one of the Asian rule codes; "SA" the country is Saudi Arabia only.
    assert all(p[0] == "AS" for _, p in nets if p[1] in BY_COUNTRY_IN_ASIA)
    with open(os.path.join(out, "geo.mmdb"), "wb") as f:
        f.write(mmdb(nets))
    subs = subnets(rng, nets)
    with open(os.path.join(out, "expected.tsv"), "w") as f:
        for s24, (cont, cc, _, _) in subs:
            f.write(f"{s24}\t{MIRRORS[dc_for(cont, cc)][0]}\t{cont}\t{cc}\n")
    name = "downloads.example.com"
    files = {
        "ecs": [query(name, str(s)) for s, _ in subs],
        "ecsdo": [query(name, str(s), dnssec_ok=True) for s, _ in subs],
        "noecs": [query(name)],
        "static": [query("www.example.com")],
    }
    for mix, msgs in files.items():
        with open(os.path.join(out, f"q-{mix}.bin"), "wb") as f:
            f.write(stream(msgs))
    for d in ("gdnsd/zones", "gdnsd/run", "gdnsd/state", "mirrordns"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    with open(os.path.join(out, "gdnsd/config"), "w") as f:
        f.write(gdnsd_config(gport, threads, out))
    with open(os.path.join(out, "gdnsd/zones/example.com"), "w") as f:
        f.write(ZONE_HEAD + "downloads 30 DYNA geoip!downloads\n")
    with open(os.path.join(out, "mirrordns/config.toml"), "w") as f:
        f.write(mirrordns_config(mport))
    with open(os.path.join(out, "mirrordns/example.com.zone"), "w") as f:
        f.write(ZONE_HEAD)
    conts = sorted({p[0] for _, p in subs})
    print(f"{len(nets)} networks, {len(subs)} ECS /24s from {' '.join(conts)}", file=sys.stderr)


if __name__ == "__main__":
    main()
