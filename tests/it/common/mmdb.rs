//! A small MaxMind DB writer for tests: an IPv6 tree (IPv4 under ::/96) with 32-bit records
//! and City-schema records (continent code, country ISO code, latitude/longitude).
//!
//! Written from the format spec (MaxMind DB File Format 2.0) so that tests never need a vendor
//! database.

use std::net::IpAddr;

use ipnet::IpNet;

/// One network's record. Absent fields are left out of the record entirely.
#[derive(Debug, Clone, Default)]
pub struct Place {
    pub continent: Option<&'static str>,
    pub country: Option<&'static str>,
    pub coords: Option<(f64, f64)>,
}

pub fn place(continent: &'static str, country: &'static str, lat: f64, lon: f64) -> Place {
    Place {
        continent: Some(continent),
        country: Some(country),
        coords: Some((lat, lon)),
    }
}

enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65536 {
        let v = (size - 285) as u16;
        (30, v.to_be_bytes().to_vec())
    } else {
        let v = (size - 65821) as u32;
        (31, v.to_be_bytes()[1..].to_vec())
    };
    if ty <= 7 {
        out.push((ty << 5) | first);
    } else {
        out.push(first);
        out.push(ty - 7);
    }
    out.extend(extra);
}

fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            control(out, 3, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(n) => uint(out, 5, *n as u64),
        Value::U32(n) => uint(out, 6, *n as u64),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(out, &Value::Str(k.clone()));
                encode(out, v);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for i in items {
                encode(out, i);
            }
        }
    }
}

fn uint(out: &mut Vec<u8>, ty: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn record(p: &Place) -> Value {
    let mut m = Vec::new();
    if let Some(c) = p.continent {
        m.push((
            "continent".into(),
            Value::Map(vec![("code".into(), Value::Str(c.into()))]),
        ));
    }
    if let Some(c) = p.country {
        m.push((
            "country".into(),
            Value::Map(vec![("iso_code".into(), Value::Str(c.into()))]),
        ));
    }
    if let Some((lat, lon)) = p.coords {
        m.push((
            "location".into(),
            Value::Map(vec![
                ("latitude".into(), Value::Double(lat)),
                ("longitude".into(), Value::Double(lon)),
            ]),
        ));
    }
    Value::Map(m)
}

const EMPTY: u32 = u32::MAX;

/// Builds a City-schema MMDB holding `networks`. Nested networks are allowed; the longer
/// prefix wins for addresses inside it.
pub fn build(networks: &[(&str, Place)]) -> Vec<u8> {
    let mut nets: Vec<(IpNet, &Place)> = networks
        .iter()
        .map(|(n, p)| (n.parse::<IpNet>().expect("test network"), p))
        .collect();
    nets.sort_by_key(|(n, _)| bits_prefix(n).1);
    // Data section: one record per network (tests are small; no dedup needed).
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, p) in &nets {
        offsets.push(data.len() as u32);
        encode(&mut data, &record(p));
    }
    // Tree: nodes of two records; EMPTY until finalised; leaf values tagged by LEAF bit.
    const LEAF: u64 = 1 << 40;
    let mut nodes: Vec<[u64; 2]> = vec![[EMPTY as u64; 2]];
    for (i, (net, _)) in nets.iter().enumerate() {
        let (addr, plen) = bits_prefix(net);
        let mut node = 0usize;
        for depth in 0..plen {
            let bit = ((addr >> (127 - depth)) & 1) as usize;
            if depth + 1 == plen {
                // Paint the whole subtree under this record with the new leaf.
                paint(&mut nodes, node, bit, LEAF | offsets[i] as u64);
                break;
            }
            let next = nodes[node][bit];
            if next & LEAF != 0 || next == EMPTY as u64 {
                nodes.push([next, next]);
                let id = (nodes.len() - 1) as u64;
                nodes[node][bit] = id;
                node = id as usize;
            } else {
                node = next as usize;
            }
        }
    }
    let node_count = nodes.len() as u32;
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v: u32 = if *r == EMPTY as u64 {
                node_count
            } else if r & LEAF != 0 {
                node_count + 16 + (r & !LEAF) as u32
            } else {
                *r as u32
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let meta = Value::Map(vec![
        ("binary_format_major_version".into(), Value::U16(2)),
        ("binary_format_minor_version".into(), Value::U16(0)),
        ("build_epoch".into(), Value::U64(1_700_000_000)),
        (
            "database_type".into(),
            Value::Str("mirrordns-Test-City".into()),
        ),
        (
            "description".into(),
            Value::Map(vec![("en".into(), Value::Str("test database".into()))]),
        ),
        ("ip_version".into(), Value::U16(6)),
        (
            "languages".into(),
            Value::Array(vec![Value::Str("en".into())]),
        ),
        ("node_count".into(), Value::U32(node_count)),
        ("record_size".into(), Value::U16(32)),
    ]);
    encode(&mut out, &meta);
    out
}

/// Sets record `bit` of `node` to `leaf`, replacing leaves in any subtree already below it.
fn paint(nodes: &mut Vec<[u64; 2]>, node: usize, bit: usize, leaf: u64) {
    const LEAF: u64 = 1 << 40;
    let cur = nodes[node][bit];
    if cur & LEAF != 0 || cur == EMPTY as u64 {
        nodes[node][bit] = leaf;
    } else {
        let child = cur as usize;
        paint(nodes, child, 0, leaf);
        paint(nodes, child, 1, leaf);
    }
}

/// (address as 128 bits, prefix length in the IPv6 tree).
fn bits_prefix(n: &IpNet) -> (u128, usize) {
    match n {
        IpNet::V4(v4) => (
            u32::from(v4.network()) as u128,
            96 + v4.prefix_len() as usize,
        ),
        IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len() as usize),
    }
}

/// Sanity check against the real reader.
pub fn lookup_country(db: &[u8], ip: IpAddr) -> Option<String> {
    let r = maxminddb::Reader::from_source(db.to_vec()).ok()?;
    let res = r.lookup(ip).ok()?;
    let city: maxminddb::geoip2::City = res.decode().ok()??;
    city.country.iso_code.map(str::to_owned)
}

/// A database the size of a real city database's IPv4 part, made up: `n` consecutive /24s
/// from 1.0.0.0, each placed in one of 2,000 cities spread over the globe (neighbours differ,
/// so nothing merges). Reloading it costs what reloading GeoLite2-City costs in kind: a walk
/// of millions of networks and a compile of many locations.
pub fn many_networks(n: u32) -> Vec<u8> {
    const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];
    const COUNTRIES: [&str; 7] = ["ZA", "AQ", "JP", "DE", "US", "AU", "BR"];
    let names: Vec<String> = (0..n)
        .map(|i| {
            let a = 0x0100_0000u32 + (i << 8);
            format!("{}/24", std::net::Ipv4Addr::from(a))
        })
        .collect();
    let places: Vec<(&str, Place)> = names
        .iter()
        .enumerate()
        .map(|(i, net)| {
            let city = (i * 7919) % 2000;
            let k = city % 7;
            let lat = (city as f64 * 0.089) % 170.0 - 85.0;
            let lon = (city as f64 * 0.377) % 360.0 - 180.0;
            (net.as_str(), place(CONTINENTS[k], COUNTRIES[k], lat, lon))
        })
        .collect();
    build(&places)
}
