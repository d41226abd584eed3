//! Authoritative behaviour for static zone data, over real UDP and TCP.

use crate::common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

fn config() -> String {
    format!(
        "{}\n[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\"]\n{MIRRORS}",
        server_section()
    )
}

async fn both(ts: &TestServer, q: &[u8]) -> hickory_proto::op::Message {
    let u = udp(ts.addr, q).await;
    let t = tcp(ts.addr, q).await;
    assert_eq!(u.answers, t.answers, "UDP and TCP answers differ");
    assert_eq!(u.metadata.response_code, t.metadata.response_code);
    u
}

#[tokio::test]
async fn static_records_are_authoritative_and_echo_case() {
    let ts = start(&config(), ZONE, None).await;
    // Built by hand: the sender's case must survive byte for byte.
    let m = both(&ts, &raw_query("WwW.ExAmPle.CoM", 1, &[])).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative, "AA set");
    assert!(!m.metadata.recursion_available, "RA clear");
    assert_eq!(addrs(&m), ["192.0.2.100"]);
    assert_eq!(m.answers[0].name.to_string(), "WwW.ExAmPle.CoM.");
    assert_eq!(m.queries[0].name().to_string(), "WwW.ExAmPle.CoM.");
    assert_eq!(m.answers[0].ttl, 3600);

    let m = both(
        &ts,
        &query("www.example.com.", RecordType::AAAA, Some(1232), None),
    )
    .await;
    assert_eq!(addrs(&m), ["2001:db8::100"]);
}

#[tokio::test]
async fn common_types() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(&ts, &query("example.com.", RecordType::MX, None, None)).await;
    match &m.answers[0].data {
        RData::MX(mx) => assert_eq!(
            (mx.preference, mx.exchange.to_string().as_str()),
            (10, "mail.example.com.")
        ),
        other => panic!("expected MX, got {other:?}"),
    }
    // The exchange's address rides along in the additional section.
    assert!(
        m.additionals
            .iter()
            .any(|r| r.name.to_string() == "mail.example.com.")
    );

    let m = both(&ts, &query("example.com.", RecordType::TXT, None, None)).await;
    assert!(matches!(&m.answers[0].data, RData::TXT(t) if t.to_string().contains("v=spf1")));

    let m = both(&ts, &query("example.com.", RecordType::CAA, None, None)).await;
    assert!(matches!(&m.answers[0].data, RData::CAA(_)));

    let m = both(
        &ts,
        &query("_https._tcp.example.com.", RecordType::SRV, None, None),
    )
    .await;
    assert!(matches!(&m.answers[0].data, RData::SRV(s) if s.port == 443));

    let m = both(&ts, &query("example.com.", RecordType::SOA, None, None)).await;
    assert!(matches!(&m.answers[0].data, RData::SOA(s) if s.serial == 2026112701));

    let m = both(&ts, &query("example.com.", RecordType::NS, None, None)).await;
    assert_eq!(m.answers.len(), 2);
    // Glue for every name server target, not only the first.
    let glue: Vec<String> = m.additionals.iter().map(|r| r.name.to_string()).collect();
    assert!(glue.contains(&"ns1.example.com.".to_string()), "{glue:?}");
    assert!(glue.contains(&"ns2.example.com.".to_string()), "{glue:?}");
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(&ts, &query("nope.example.com.", RecordType::A, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // RFC 2308: negative TTL is min(SOA TTL, MINIMUM).
    assert_eq!(m.authorities[0].ttl, 300);

    let m = both(&ts, &query("www.example.com.", RecordType::MX, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    let m = both(&ts, &query("a.b.example.com.", RecordType::A, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // A geo service name has no MX: NODATA.
    let m = both(
        &ts,
        &query("downloads.example.com.", RecordType::MX, None, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn cnames_are_followed_inside_the_zone() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(
        &ts,
        &query("releases.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&m), ["192.0.2.100"]);

    // Into a geo service.
    let m = both(&ts, &query("get.example.com.", RecordType::A, None, None)).await;
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&m), ["192.0.2.10"]);

    // Out of the zone: the CNAME alone.
    let m = both(&ts, &query("away.example.com.", RecordType::A, None, None)).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);

    // A loop ends; the server still answers.
    let m = both(&ts, &query("loop1.example.com.", RecordType::A, None, None)).await;
    assert!(!m.answers.is_empty());

    // Asking for the CNAME itself.
    let m = both(
        &ts,
        &query("releases.example.com.", RecordType::CNAME, None, None),
    )
    .await;
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn delegations_are_referrals_with_glue() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(
        &ts,
        &query("host.lab.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative, "referrals are not authoritative");
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
    assert_eq!(m.authorities[0].name.to_string(), "lab.example.com.");
    assert_eq!(m.additionals[0].name.to_string(), "ns.lab.example.com.");
    // DS at the cut is the parent's: NODATA, authoritative.
    let m = both(&ts, &query("lab.example.com.", RecordType::DS, None, None)).await;
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn wildcards_are_expanded() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(
        &ts,
        &query("anything.docs.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.101"]);
    assert_eq!(m.answers[0].name.to_string(), "anything.docs.example.com.");
    let m = both(
        &ts,
        &query("a.b.docs.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.101"]);
    let m = both(
        &ts,
        &query("x.docs.example.com.", RecordType::TXT, None, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn refused_notimp_formerr_and_any() {
    let ts = start(&config(), ZONE, None).await;
    let m = both(&ts, &query("www.example.org.", RecordType::A, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);

    let m = both(&ts, &query("example.com.", RecordType::AXFR, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // RFC 8482: ANY gets one RRset, not everything.
    let m = both(&ts, &query("example.com.", RecordType::ANY, None, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let types: std::collections::HashSet<_> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "{types:?}");

    // NOTIFY opcode -> NOTIMP.
    let mut q = query("example.com.", RecordType::SOA, None, None);
    q[2] = (q[2] & 0x87) | (4 << 3);
    let r = udp_raw(ts.addr, &q).await.expect("answer");
    assert_eq!(rcode(&r), 4);

    // Two questions -> FORMERR.
    let mut q = query("example.com.", RecordType::SOA, None, None);
    q[5] = 2;
    let r = udp_raw(ts.addr, &q).await.expect("answer");
    assert_eq!(rcode(&r), 1);

    // A response (QR set) is never answered; the next query still is.
    let mut q = query("example.com.", RecordType::SOA, None, None);
    q[2] |= 0x80;
    assert!(udp_raw(ts.addr, &q).await.is_none());
    // Garbage shorter than a header: dropped.
    assert!(udp_raw(ts.addr, &[1, 2, 3]).await.is_none());
    let m = udp(
        ts.addr,
        &query("www.example.com.", RecordType::A, None, None),
    )
    .await;
    assert_eq!(addrs(&m), ["192.0.2.100"]);

    // EDNS version 1 -> BADVERS (extended rcode 16).
    let mut q = raw_query("www.example.com", 1, &[]);
    let n = q.len();
    q[n - 5] = 1; // version byte of the OPT TTL
    let r = udp_raw(ts.addr, &q).await.expect("answer");
    let m = hickory_proto::op::Message::from_vec(&r).unwrap();
    // 16 is BADVERS for OPT (hickory names the shared code BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
}

#[tokio::test]
async fn truncation_then_tcp_retry() {
    // A big TXT set that cannot fit in 512 bytes.
    let mut zone = ZONE.to_string();
    for i in 0..20 {
        zone.push_str(&format!("big TXT \"{}\"\n", format!("{i:02}").repeat(30)));
    }
    let ts = start(&config(), &zone, None).await;
    let q = query("big.example.com.", RecordType::TXT, None, None);
    let m = udp(ts.addr, &q).await;
    assert!(m.metadata.truncation, "TC set over UDP without EDNS");
    assert!(m.answers.is_empty());
    let raw = udp_raw(ts.addr, &q).await.unwrap();
    assert!(raw.len() <= 512);
    // With EDNS 4096 the server still caps at its udp-payload-max of 1232.
    let q = query("big.example.com.", RecordType::TXT, Some(4096), None);
    let raw = udp_raw(ts.addr, &q).await.unwrap();
    assert!(raw.len() <= 1232, "{}", raw.len());
    // TCP carries it all.
    let m = tcp(ts.addr, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 20);
}
