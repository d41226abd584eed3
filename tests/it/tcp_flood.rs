//! TCP connection floods over real loopback sockets: idle and half-sent connections from many
//! source addresses (127.0.0.0/8 is all loopback on Linux, so each client socket binds its own
//! address) must not lock a real client out. At a cap the server closes the connection idle
//! longest, and counts it in `/metrics`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::config::ServerSection;
use crate::common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_CONNECTIONS: usize = 1000;
const PER_CLIENT: usize = 3;
/// Flood source addresses; at `PER_CLIENT` each that is 1,500 connections, half again the cap,
/// while no address exceeds its own cap.
const FLOOD_ADDRS: usize = 500;

/// The test holds both ends of every connection: about 2,600 descriptors at the peak.
fn raise_fd_limit() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct for this process only.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = rl.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
    assert!(
        rl.rlim_cur >= 4096,
        "RLIMIT_NOFILE hard limit {} is too low for this test",
        rl.rlim_max
    );
}

fn config() -> String {
    format!(
        "{}\n{MIRRORS}",
        ServerSection {
            tcp_max_connections: Some(MAX_CONNECTIONS),
            tcp_max_per_client: Some(PER_CLIENT),
            tcp_idle_timeout: Some("60s"),
            ..ServerSection::default()
        }
    )
}

fn flood_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200 + 1) as u8)
}

/// A blocking client socket bound to `from`, left non-blocking once connected so that its
/// state can be read without waiting.
fn connect_std(from: Ipv4Addr, to: SocketAddr) -> std::net::TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from.into(), 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    let s: std::net::TcpStream = s.into();
    s.set_nonblocking(true).unwrap();
    s
}

/// True once the server closed the connection (end of stream, or a reset).
fn closed(mut s: &std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent bytes on an idle connection"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Opens `PER_CLIENT` connections from each flood address: a third send nothing, a third half
/// a length prefix, a third a prefix announcing 40 bytes and only 10 of them.
fn open_flood(to: SocketAddr) -> Vec<std::net::TcpStream> {
    let mut conns = Vec::with_capacity(FLOOD_ADDRS * PER_CLIENT);
    for i in 0..FLOOD_ADDRS {
        for k in 0..PER_CLIENT {
            let mut s = connect_std(flood_ip(i), to);
            let partial: &[u8] = match k {
                0 => &[],
                1 => &[0],
                _ => &[0, 40, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0],
            };
            s.write_all(partial).unwrap();
            conns.push(s);
        }
    }
    conns
}

async fn metric(ts: &TestServer, key: &str) -> f64 {
    mirrordns::health::http::install_crypto();
    let url = format!("http://{}/metrics", ts.server.http_addr().unwrap());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {key}"))
}

const EVICT_GLOBAL: &str = "mirrordns_dns_tcp_evictions_total{reason=\"max-connections\"}";
const EVICT_CLIENT: &str = "mirrordns_dns_tcp_evictions_total{reason=\"max-per-client\"}";

/// Waits until the server counted `evictions` for the global cap (it accepts some time after
/// the client's connect returns) and each is seen closed by its client. Evictions only ever
/// pick flood connections here: they are older than any other.
async fn settled(ts: &TestServer, flood: &[std::net::TcpStream], evictions: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let evicted = metric(ts, EVICT_GLOBAL).await as usize;
        let shut = flood.iter().filter(|s| closed(s)).count();
        if evicted >= evictions && evicted == shut {
            assert_eq!(evicted, evictions, "evictions for the global cap");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{evicted} evictions counted, {shut} flood connections closed, {evictions} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one query for www.example.com over TCP from `from`; returns the connection (still
/// open) and how long the answer took, connect included.
async fn ask(from: Ipv4Addr, to: SocketAddr) -> (tokio::net::TcpStream, Duration) {
    let started = Instant::now();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let q = query("www.example.com.", RecordType::A, None, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    let exchange = async {
        let mut s = sock.connect(to).await?;
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>((s, buf))
    };
    let (s, buf) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer from {from} within 5 s"))
        .unwrap_or_else(|e| panic!("query from {from}: {e}"));
    let took = started.elapsed();
    let m = Message::from_vec(&buf).expect("answer parses");
    assert_eq!(addrs(&m), ["192.0.2.100"], "{m:?}");
    (s, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_addresses_do_not_lock_out_a_client() {
    raise_fd_limit();
    let ts = start(&config(), ZONE, None).await;
    let to = ts.addr;

    let opened = Instant::now();
    let flood = tokio::task::spawn_blocking(move || open_flood(to))
        .await
        .unwrap();
    let open_time = opened.elapsed();
    // Asked at once, while the server may still be accepting (and evicting) the flood's
    // backlog; this connection stays open to the end, so it takes one more flood connection.
    let (during, took_during) = ask(Ipv4Addr::new(127, 2, 0, 2), to).await;
    assert!(
        took_during < Duration::from_secs(1),
        "answered after {took_during:?}"
    );
    // Every connection beyond the cap evicted one: none was refused.
    let evicted = FLOOD_ADDRS * PER_CLIENT + 1 - MAX_CONNECTIONS;
    settled(&ts, &flood, evicted).await;
    let settle_time = opened.elapsed();
    // The longest idle went first: the newest connections are all still open.
    let n = flood.len();
    for (j, s) in flood[n - 200..].iter().enumerate() {
        assert!(
            !closed(s),
            "flood connection {} of {n} was closed",
            n - 200 + j
        );
    }

    // A client from another address is answered at once, whatever is held open.
    let (newcomer, took) = ask(Ipv4Addr::new(127, 2, 0, 1), to).await;
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    eprintln!(
        "flood: {n} connections opened from {FLOOD_ADDRS} addresses in {open_time:?}; \
         a new client asking right then answered in {took_during:?}; \
         {MAX_CONNECTIONS} held and {evicted} evicted after {settle_time:?}; \
         then a new client answered in {took:?}"
    );

    // One client at its own cap: a new connection from it is answered and closes that
    // client's own longest-idle connection, not anyone else's. The newcomer stays open, so
    // each of these three evicts one more flood connection.
    let client = Ipv4Addr::new(127, 3, 0, 1);
    let mut own = Vec::new();
    for _ in 0..PER_CLIENT {
        own.push(
            tokio::task::spawn_blocking(move || connect_std(client, to))
                .await
                .unwrap(),
        );
        // Distinct idle clocks, so that "oldest" is well defined.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let evicted = evicted + 1 + PER_CLIENT;
    settled(&ts, &flood, evicted).await;
    assert_eq!(metric(&ts, EVICT_CLIENT).await, 0.0);
    let (_fourth, took) = ask(client, to).await;
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    eprintln!("per-client: a fourth connection from one address answered in {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !closed(&own[0]) {
        assert!(
            Instant::now() < deadline,
            "the client's oldest connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!closed(&own[1]) && !closed(&own[2]));
    assert_eq!(metric(&ts, EVICT_CLIENT).await, 1.0);
    // Nobody else's connection was closed.
    settled(&ts, &flood, evicted).await;
    drop((during, newcomer));
    ts.server.shutdown().await;
}
