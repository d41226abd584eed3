//! Shared by the integration tests: start the real server on an ephemeral loopback port, and
//! talk to it over real UDP and TCP sockets with hickory-proto messages.

pub mod broken_files;
pub mod cluster;
pub mod config;
pub mod mirrors;
pub mod mmdb;
pub mod process;
pub mod redirect;
pub mod release;
pub mod resolver;
pub mod scrape;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use mirrordns::daemon::Server;
use mirrordns::load::Loaded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const ZONE: &str = r#"$ORIGIN example.com.
$TTL 3600
@           SOA   ns1 hostmaster 2026112701 3600 600 604800 300
            NS    ns1
            NS    ns2
            MX    10 mail
            TXT   "v=spf1 mx -all"
            CAA   0 issue "letsencrypt.org"
ns1         A     192.0.2.53
            AAAA  2001:db8::53
ns2         A     198.51.100.53
mail        A     192.0.2.25
www         A     192.0.2.100
            AAAA  2001:db8::100
releases    CNAME www
get         CNAME downloads
loop1       CNAME loop2
loop2       CNAME loop1
away        CNAME www.example.org.
_https._tcp SRV   10 5 443 www
*.docs      A     192.0.2.101
deep.a.b    TXT   "deep"
lab         NS    ns.lab
ns.lab      A     192.0.2.200
"#;

/// Mirrors in every test config: five regions with known coordinates and addresses.
pub const MIRRORS: &str = r#"
[[mirror]]
name = "us-east"
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8::10"]
location = { lat = 38.9, lon = -77.0 }
[[mirror]]
name = "eu-west"
ipv4 = ["192.0.2.11"]
ipv6 = ["2001:db8::11"]
location = { lat = 50.1, lon = 8.7 }
[[mirror]]
name = "ap-south"
ipv4 = ["192.0.2.12"]
location = { lat = 1.35, lon = 103.8 }
[[mirror]]
name = "sa-east"
ipv4 = ["192.0.2.13"]
location = { lat = -23.5, lon = -46.6 }
[[mirror]]
name = "ap-northeast"
ipv4 = ["192.0.2.14"]
ipv6 = ["2001:db8::14"]
location = { lat = 35.7, lon = 139.7 }
"#;

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mirrordns.toml")
    }
}

/// Writes the config, the zone and an optional MMDB,
/// then starts the server through the same entry point as `mirrordns serve`.
pub async fn start(config: &str, zone: &str, mmdb: Option<Vec<u8>>) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_files(&dir, config, zone, mmdb);
    let loaded = Loaded::from_file(&path).unwrap_or_else(|p| panic!("config should load:\n{p}"));
    let server = Server::start(loaded).await.expect("server starts");
    let addr = server.dns_addrs()[0];
    TestServer { server, addr, dir }
}

pub fn write_files(
    dir: &tempfile::TempDir,
    config: &str,
    zone: &str,
    mmdb: Option<Vec<u8>>,
) -> PathBuf {
    let d = dir.path();
    std::fs::write(d.join("example.com.zone"), zone).unwrap();
    if let Some(db) = mmdb {
        std::fs::write(d.join("geo.mmdb"), db).unwrap();
    }
    let path = d.join("mirrordns.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A config header listening on an ephemeral loopback port.
pub fn server_section() -> String {
    config::ServerSection::default().to_string()
}

/// A query message; `ecs` adds an EDNS Client Subnet option, `edns` an OPT record.
pub fn query(name: &str, rtype: RecordType, edns: Option<u16>, ecs: Option<(&str, u8)>) -> Vec<u8> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if edns.is_some() || ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(edns.unwrap_or(1232));
        if let Some((addr, prefix)) = ecs {
            let ip: IpAddr = addr.parse().unwrap();
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(ip, prefix, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

pub async fn udp_raw(addr: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(q, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn tcp_raw(addr: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

pub async fn udp(addr: SocketAddr, q: &[u8]) -> Message {
    let r = udp_raw(addr, q).await.expect("UDP answer within 2 s");
    Message::from_vec(&r).expect("answer parses")
}

pub async fn tcp(addr: SocketAddr, q: &[u8]) -> Message {
    let r = tcp_raw(addr, q).await.expect("TCP answer within 2 s");
    Message::from_vec(&r).expect("answer parses")
}

/// Addresses in the answer section, as text.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The ECS option of a response: (address, source prefix, scope prefix).
pub fn ecs(m: &Message) -> Option<(IpAddr, u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// A raw query with a hand-made OPT record holding `options` (code, data).
pub fn raw_query(name: &str, qtype: u16, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    query_bytes(name, qtype, 1, Some((1232, [0; 4], options)))
}

/// An OPT record: payload size, the four TTL bytes (extended rcode, version, flags), options
/// as (code, data).
pub type OptSpec<'a> = (u16, [u8; 4], &'a [(u16, Vec<u8>)]);

/// A query with every part the answer path looks at chosen: class, and an OPT record or none.
pub fn query_bytes(name: &str, qtype: u16, class: u16, opt: Option<OptSpec<'_>>) -> Vec<u8> {
    let mut p = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        opt.is_some() as u8,
    ];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&class.to_be_bytes());
    if let Some((payload, ttl, options)) = opt {
        let mut rdata = Vec::new();
        for (code, data) in options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        p.push(0);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&ttl);
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
    }
    p
}

/// The rcode of a raw response (header bits plus the OPT's extended bits are not combined).
pub fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0F
}

/// The A answer for `downloads.example.com` to a client in 81.2.69.0/24 (via ECS), the
/// "London" client most tests place with an override or database entry.
pub async fn london(addr: SocketAddr) -> Vec<String> {
    addrs(&udp(addr, &london_query()).await)
}

/// Places 81.2.69.0/24, where [`london_query`] comes from, in London.
pub const LONDON_OVERRIDE: &str = "[[geo.override]]\nnetwork = \"81.2.69.0/24\"\nlocation = { lat = 51.5, lon = -0.13, country = \"GB\", continent = \"EU\" }\n";

/// The query behind [`london`].
pub fn london_query() -> Vec<u8> {
    query(
        "downloads.example.com.",
        hickory_proto::rr::RecordType::A,
        Some(1232),
        Some(("81.2.69.0", 24)),
    )
}

/// True if `cmd` runs. Only for an optional part of a test (the rest runs anyway); under CI,
/// which installs every tool, a missing one is a failure.
pub fn installed(cmd: &str, arg: &str, package: &str) -> bool {
    if std::process::Command::new(cmd).arg(arg).output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{}",
        missing(cmd, package)
    );
    eprintln!("{cmd} is not installed; leaving that part out (apt-get install {package})");
    false
}

/// For tests that need an outside tool: they are `#[ignore]`d, so that `cargo test` on a
/// machine without the tool shows them as ignored rather than passed, and run with
/// `cargo test -- --ignored` (CI, after installing the tools). Then a missing tool fails.
pub fn require(cmd: &str, arg: &str, package: &str) {
    if std::process::Command::new(cmd).arg(arg).output().is_err() {
        panic!("{}", missing(cmd, package));
    }
}

pub fn missing(cmd: &str, package: &str) -> String {
    format!("this test needs {cmd}: apt-get install {package} (see .ci/run)")
}

/// A loopback port free for both UDP and TCP right now (for servers started as a process,
/// which pick their port from the config).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A geo config: London (81.2.64.0/19) nearest eu-west, Tokyo (1.0.16.0/20) nearest
/// ap-northeast, everyone else us-east; `answers` addresses per answer; `tail` appended.
pub fn geo_config(answers: usize, tail: &str) -> String {
    format!(
        r#"{}
[[geo.override]]
network = "81.2.64.0/19"
location = {{ lat = 51.5, lon = -0.13, country = "GB", continent = "EU" }}
[[geo.override]]
network = "1.0.16.0/20"
location = {{ lat = 35.7, lon = 139.7, country = "JP", continent = "AS" }}
[[service]]
name = "downloads.example.com"
answers = {answers}
mirrors = ["us-east", "eu-west", "ap-northeast"]
{MIRRORS}
{tail}"#,
        server_section()
    )
}
