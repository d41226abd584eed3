#!/usr/bin/env python3
"""Correctness before speed: asks a server on 127.0.0.1:PORT every ECS subnet of
expected.tsv, plus the no-ECS and static queries, and compares the A record with the table.

Usage: verify.py WORKDIR PORT
Prints one line: `checked=N wrong=N unanswered=N scope_median=/N`, and exits 1 if any answer
is wrong or missing: dnsperf counts answers, not what they say, so a fast wrong server would
otherwise win. Loopback only; each query waits at most 1 s, 3 tries.
"""
import socket
import statistics
import struct
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from mkgeo import query  # noqa: E402  (one encoder for the load and the check)


def skip_name(msg, i):
    # Bounded: a name has at most 128 labels; a pointer ends it.
    for _ in range(128):
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n
    raise ValueError("name too long")


def parse(msg):
    """(first A record or None, ECS scope or None)."""
    _, _, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    i = 12
    for _ in range(qd):
        i = skip_name(msg, i) + 4
    a, scope = None, None
    for k in range(an + ns + ar):
        i = skip_name(msg, i)
        ty, _, _, ln = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        rd = msg[i:i + ln]
        if k < an and ty == 1 and ln == 4 and a is None:
            a = socket.inet_ntoa(rd)
        if ty == 41:
            j = 0
            while j + 4 <= len(rd):
                code, olen = struct.unpack(">HH", rd[j:j + 4])
                if code == 8 and olen >= 4:
                    scope = rd[j + 7]
                j += 4 + olen
        i += ln
    return a, scope


def ask(sock, port, msg, qid):
    msg = struct.pack(">H", qid) + msg[2:]
    for _ in range(3):
        sock.sendto(msg, ("127.0.0.1", port))
        try:
            while True:
                data, _ = sock.recvfrom(4096)
                if data[:2] == msg[:2]:
                    return data
        except socket.timeout:
            continue
    return None


def main():
    work, port = sys.argv[1], int(sys.argv[2])
    cases = []
    for line in open(f"{work}/expected.tsv"):
        subnet, want = line.split("\t")[:2]
        cases.append((query("downloads.example.com", subnet), want))
    # Without ECS the source is 127.0.0.1, which is in no network: the default mirror.
    cases.append((query("downloads.example.com"), "192.0.2.10"))
    cases.append((query("www.example.com"), "192.0.2.100"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    wrong = unanswered = 0
    scopes = []
    for n, (msg, want) in enumerate(cases):
        data = ask(sock, port, msg, n & 0xFFFF)
        if data is None:
            unanswered += 1
            continue
        a, scope = parse(data)
        if a != want:
            wrong += 1
            if wrong <= 3:
                print(f"wrong: case {n} got {a} want {want}", file=sys.stderr)
        if scope is not None and n < len(cases) - 2:
            scopes.append(scope)
    med = f"/{statistics.median(scopes):.0f}" if scopes else "none"
    print(f"checked={len(cases)} wrong={wrong} unanswered={unanswered} scope_median={med}")
    sys.exit(1 if wrong or unanswered else 0)


if __name__ == "__main__":
    main()
