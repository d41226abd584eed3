#!/usr/bin/env python3
"""Makes src/http/world.txt, the country outlines of the status page's map.

Sources (npm packages; neither is committed, only what this script makes of them):
  world-atlas 2.0.2        countries-110m.json: TopoJSON made from Natural Earth 1:110m
                           Admin 0 countries (public domain); the package is ISC-licensed.
  i18n-iso-countries 7.14.0  codes.json: ISO 3166-1 numeric -> alpha-2 (MIT).

Fetch and run (from the repository root):
  mkdir -p /tmp/mapsrc && cd /tmp/mapsrc
  npm pack world-atlas@2.0.2 i18n-iso-countries@7.14.0
  mkdir wa iic && tar xzf world-atlas-2.0.2.tgz -C wa && tar xzf i18n-iso-countries-7.14.0.tgz -C iic
  cd - && python3 contrib/map/make-world.py /tmp/mapsrc/wa/package/countries-110m.json \
      /tmp/mapsrc/iic/package/codes.json > src/http/world.txt

Output: header lines starting with '#', then one line per country: `XX <svg path d>` in a
1000 x 394 equirectangular frame (longitude -180..180, latitude 84..-58: Antarctica is left
out, to spend the height on where clients are). Coordinates are integers, each step about 0.36
degrees; outlines are simplified per shared arc (Douglas-Peucker), so that neighbours keep
a common border.
"""
import json
import sys

WIDTH = 1000
LAT_TOP, LAT_BOTTOM = 84.0, -58.0
K = WIDTH / 360.0
HEIGHT = round((LAT_TOP - LAT_BOTTOM) * K)
TOLERANCE = 0.5  # in output units

# Natural Earth shapes without an ISO 3166-1 numeric code in world-atlas. GeoIP databases
# place Kosovo in XK and the other two in the state they are part of by law, so they are
# shaded with it.
BY_NAME = {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}
SKIP = {"AQ"}


def project(lon, lat):
    lat = max(LAT_BOTTOM, min(LAT_TOP, lat))
    return (round((lon + 180.0) * K), round((LAT_TOP - lat) * K))


def decode_arcs(topo):
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            p = project(x * sx + tx, y * sy + ty)
            if not pts or pts[-1] != p:
                pts.append(p)
        arcs.append(simplify(pts))
    return arcs


def simplify(pts):
    if len(pts) < 3:
        return pts
    keep = [False] * len(pts)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        (ax, ay), (bx, by) = pts[a], pts[b]
        dx, dy = bx - ax, by - ay
        norm = (dx * dx + dy * dy) ** 0.5
        best, at = -1.0, -1
        for i in range(a + 1, b):
            px, py = pts[i]
            if norm == 0:
                d = ((px - ax) ** 2 + (py - ay) ** 2) ** 0.5
            else:
                d = abs(dy * (px - ax) - dx * (py - ay)) / norm
            if d > best:
                best, at = d, i
        if at >= 0 and best > TOLERANCE:
            keep[at] = True
            stack.append((a, at))
            stack.append((at, b))
    return [p for p, k in zip(pts, keep) if k]


def ring_points(ring, arcs):
    out = []
    for i in ring:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        out.extend(pts[1:] if out else pts)
    # A ring crossing the antimeridian (Russia, Fiji) jumps from one edge to the other: made
    # continuous, it runs past an edge, and is drawn a second time shifted by a world width.
    dedup = []
    shift = 0
    for x, y in out:
        if dedup:
            px = dedup[-1][0]
            while x + shift - px > WIDTH / 2:
                shift -= WIDTH
            while px - (x + shift) > WIDTH / 2:
                shift += WIDTH
        p = (x + shift, y)
        if not dedup or dedup[-1] != p:
            dedup.append(p)
    if len(dedup) > 1 and dedup[0] == dedup[-1]:
        dedup.pop()
    return dedup


def copies(pts):
    """The ring, and once more a world width over if it runs past an edge."""
    out = [pts]
    if max(x for x, _ in pts) > WIDTH:
        out.append([(x - WIDTH, y) for x, y in pts])
    if min(x for x, _ in pts) < 0:
        out.append([(x + WIDTH, y) for x, y in pts])
    return out


def path(polygons, arcs):
    d = []
    for poly in polygons:
        for ring in poly:
            whole = ring_points(ring, arcs)
            if len(whole) < 3:
                continue
            for pts in copies(whole):
                d.append(ring_path(pts))
    return "".join(d)


def ring_path(pts):
    """Absolute start, then relative steps: small numbers, the smallest text."""
    x, y = pts[0]
    seg = [f"M{x} {y}l"]
    for px, py in pts[1:]:
        seg.append(f"{px - x} {py - y}")
        x, y = px, py
    return " ".join(seg).replace(" -", "-") + "z"


def main():
    topo_path, codes_path = sys.argv[1], sys.argv[2]
    with open(topo_path) as f:
        topo = json.load(f)
    with open(codes_path) as f:
        alpha2 = {num: a2 for a2, _a3, num, *_ in json.load(f)}
    arcs = decode_arcs(topo)
    shapes = {}
    for g in topo["objects"]["countries"]["geometries"]:
        name = g.get("properties", {}).get("name", "")
        code = alpha2.get(g.get("id", "")) or BY_NAME.get(name)
        if code is None:
            sys.exit(f"no ISO 3166-1 alpha-2 code for {name!r} (id {g.get('id')})")
        if code in SKIP:
            continue
        polys = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        shapes.setdefault(code, []).append(path(polys, arcs))
    print("# Country outlines for the status page map (src/http/page/map.rs), made by")
    print("# contrib/map/make-world.py from the npm packages world-atlas 2.0.2 (countries-110m.json,")
    print("# ISC licence) and i18n-iso-countries 7.14.0 (codes.json, MIT licence).")
    print("# The shapes are Natural Earth 1:110m Admin 0 countries: public domain.")
    print(f"# viewBox 0 0 {WIDTH} {HEIGHT}; equirectangular, longitude -180..180, latitude {LAT_TOP:g}..{LAT_BOTTOM:g}")
    for code in sorted(shapes):
        d = "".join(shapes[code])
        if d:
            print(f"{code} {d}")


if __name__ == "__main__":
    main()
