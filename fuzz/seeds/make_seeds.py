#!/usr/bin/env python3
"""Writes the committed seed corpus for the `answer` fuzz target: ordinary and odd queries,
EDNS with ECS and cookies, and a zone transfer request signed with the target's TSIG key."""
import base64, hashlib, hmac, os, struct, time

OUT = os.path.join(os.path.dirname(__file__), "answer")
KEY = base64.b64decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")


def name(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qname, qtype, options=None, flags=0x0100, qid=0x1234, extra=b"", arcount=None):
    ar = (1 if options is not None else 0) + (1 if extra else 0) if arcount is None else arcount
    p = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, ar) + name(qname) + struct.pack(">HH", qtype, 1)
    if options is not None:
        rdata = b"".join(struct.pack(">HH", c, len(d)) + d for c, d in options)
        p += b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(rdata)) + rdata
    return p + extra


def tsig_signed(msg, qid):
    """Appends a TSIG record (hmac-sha256, key "k") to `msg`, as RFC 8945 4.3 describes."""
    alg = name("hmac-sha256")
    t = int(time.time())
    variables = name("k") + struct.pack(">HI", 255, 0) + alg + t.to_bytes(6, "big") + struct.pack(">HHH", 300, 0, 0)
    mac = hmac.new(KEY, msg + variables, hashlib.sha256).digest()
    rdata = alg + t.to_bytes(6, "big") + struct.pack(">HH", 300, len(mac)) + mac + struct.pack(">HHH", qid, 0, 0)
    rr = name("k") + struct.pack(">HHIH", 250, 255, 0, len(rdata)) + rdata
    m = bytearray(msg + rr)
    m[10:12] = struct.pack(">H", struct.unpack(">H", msg[10:12])[0] + 1)
    return bytes(m)


seeds = {
    "a": query("downloads.example.com", 1),
    "aaaa_edns": query("downloads.example.com", 28, []),
    "ecs_v4": query("downloads.example.com", 1, [(8, bytes([0, 1, 24, 0, 81, 2, 69]))]),
    "ecs_v6": query("cdn.example.com", 28, [(8, bytes([0, 2, 32, 0, 0x2a, 0x02, 0x0c, 0x7c]))]),
    "ecs_zero": query("cdn.example.com", 1, [(8, bytes([0, 1, 0, 0]))]),
    "cookie_client": query("www.example.com", 1, [(10, bytes(range(8)))]),
    "cookie_both": query("www.example.com", 1, [(10, bytes(range(24)))]),
    "ecs_cookie": query("downloads.example.com", 255, [(8, bytes([0, 1, 20, 0, 1, 0, 16])), (10, bytes(range(8)))]),
    "nx": query("nope.example.com", 1, []),
    "mx": query("example.com", 15),
    "soa": query("example.com", 6),
    "any": query("example.com", 255, []),
    "outside": query("example.org", 1),
    "chaos": query("version.bind", 16)[:-2] + struct.pack(">H", 3),
    "notify": query("example.com", 6, flags=0x2000),
    "response": query("example.com", 1, flags=0x8000),
    "axfr": query("example.com", 252),
    "ixfr": query("example.com", 251),
}
seeds["axfr_tsig"] = tsig_signed(query("example.com", 252, qid=0x4242), 0x4242)
seeds["ixfr_tsig"] = tsig_signed(query("example.com", 251, qid=0x4343), 0x4343)

os.makedirs(OUT, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(OUT, k), "wb") as f:
        f.write(v)
print(f"{len(seeds)} seeds in {OUT}")
