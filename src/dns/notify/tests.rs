//! The NOTIFY decisions, transition by transition, with no network: time is an argument.

use super::*;
use crate::config::TsigAlgorithm;

fn zone_now(fingerprint: u64, serial: u32) -> ZoneNow {
    ZoneNow {
        origin: Name::from_text("example.com").unwrap(),
        serial,
        fingerprint,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ids() -> impl FnMut() -> u16 {
    let mut n = 100;
    move || {
        n += 1;
        n
    }
}

#[test]
fn backoff_doubles_from_one_second_up_to_a_minute() {
    let waits: Vec<u64> = (1..=MAX_TRIES).map(|a| backoff(a).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
}

#[test]
fn a_new_zone_is_due_now_and_retried_with_growing_gaps_then_given_up() {
    let t0 = Instant::now();
    let a = addr("192.0.2.54:53");
    let mut b = Book::default();
    b.plan(&[zone_now(1, 7)], &[a], t0, ids());
    let (sends, results) = b.due(t0);
    assert_eq!(sends.len(), 1);
    assert_eq!((sends[0].serial, sends[0].id), (7, 101));
    assert!(results.is_empty());
    // Nothing before the first retry's time.
    assert!(b.due(t0 + Duration::from_millis(999)).0.is_empty());
    let mut at = t0;
    let mut gaps = Vec::new();
    let mut timeouts = 0;
    while let Some(next) = b.next_wake() {
        gaps.push((next - at).as_secs());
        at = next;
        let (s, r) = b.due(at);
        timeouts += r.len();
        assert!(s.len() <= 1);
    }
    // Ten sends: nine gaps between them, and the wait after the last one before giving up.
    assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    assert_eq!(timeouts, MAX_TRIES as usize);
    let e = &b.entries[0];
    assert_eq!((e.attempts, e.acked), (MAX_TRIES, false));
    assert_eq!(e.last_result, Some(Outcome::Timeout));
}

#[test]
fn an_ack_from_the_address_with_the_id_ends_it_and_others_are_ignored() {
    let t0 = Instant::now();
    let (a, other) = (addr("192.0.2.54:53"), addr("192.0.2.55:53"));
    let mut b = Book::default();
    b.plan(&[zone_now(1, 7)], &[a, other], t0, ids());
    let (sends, _) = b.due(t0);
    assert_eq!(sends.len(), 2);
    let id = sends[0].id;
    // The right ID from the wrong address, and the wrong ID from the right one: nothing.
    assert_eq!(b.answer(other, id, |_| Outcome::Acked), None);
    assert_eq!(b.answer(a, id.wrapping_add(7), |_| Outcome::Acked), None);
    // A bad signature counts but does not end it.
    assert_eq!(b.answer(a, id, |_| Outcome::Error), Some(Outcome::Error));
    assert!(b.entries[0].next.is_some());
    assert_eq!(b.answer(a, id, |_| Outcome::Acked), Some(Outcome::Acked));
    assert!(b.entries[0].acked && b.entries[0].next.is_none());
    // Answered: its wait is not a timeout, and nothing more is sent to it.
    let (sends, results) = b.due(t0 + Duration::from_secs(1));
    assert_eq!(sends.iter().map(|s| s.addr).collect::<Vec<_>>(), [other]);
    assert_eq!(results, [Outcome::Timeout]);
    // A late duplicate is ignored.
    assert_eq!(b.answer(a, id, |_| Outcome::Acked), None);
}

#[test]
fn a_refusal_ends_it_unacknowledged() {
    let t0 = Instant::now();
    let a = addr("192.0.2.54:53");
    let mut b = Book::default();
    b.plan(&[zone_now(1, 7)], &[a], t0, ids());
    let id = b.due(t0).0[0].id;
    assert_eq!(
        b.answer(a, id, |_| Outcome::Refused),
        Some(Outcome::Refused)
    );
    assert!(!b.entries[0].acked);
    assert_eq!(b.next_wake(), None);
}

#[test]
fn a_newer_change_supersedes_the_one_being_retried_and_the_same_content_does_not() {
    let t0 = Instant::now();
    let a = addr("192.0.2.54:53");
    let mut b = Book::default();
    b.plan(&[zone_now(1, 7)], &[a], t0, ids());
    let old = b.due(t0).0[0].id;
    let t1 = t0 + Duration::from_millis(300);
    // The same content again (a health change elsewhere): nothing new.
    b.plan(&[zone_now(1, 7)], &[a], t1, ids());
    assert!(b.due(t1).0.is_empty());
    // New content: a new NOTIFY, due now, with the new serial and a new ID.
    let mut next = ids();
    next();
    next();
    b.plan(&[zone_now(2, 8)], &[a], t1, next);
    let (sends, results) = b.due(t1);
    assert_eq!(sends.len(), 1);
    assert_ne!(sends[0].id, old);
    assert_eq!(sends[0].serial, 8);
    assert!(results.is_empty(), "superseding is not a timeout");
    // An ack of the old one is not taken for the new one.
    assert_eq!(b.answer(a, old, |_| Outcome::Acked), None);
}

#[test]
fn secondaries_and_zones_no_longer_configured_are_dropped() {
    let t0 = Instant::now();
    let (a, c) = (addr("192.0.2.54:53"), addr("[2001:db8::54]:5353"));
    let mut b = Book::default();
    b.plan(&[zone_now(1, 7)], &[a, c], t0, ids());
    b.plan(&[zone_now(1, 7)], &[c], t0, ids());
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.entries[0].addr, c);
    b.plan(&[], &[c], t0, ids());
    assert!(b.entries.is_empty());
}

fn key(secret: u8) -> TsigKey {
    TsigKey {
        name: "xfr-key".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: vec![secret; 32],
    }
}

fn test_zone() -> Zone {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.com.zone");
    std::fs::write(
        &path,
        "$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 hostmaster 5 3600 600 604800 300\n  NS ns1\nns1 A 192.0.2.53\n",
    )
    .unwrap();
    Zone::load(&path).unwrap()
}

/// The NOTIFY as hickory reads it: opcode NOTIFY, AA, not a response, the question
/// `<zone> IN SOA`, and the SOA with the serial given (not the file's) in the answer.
#[test]
fn the_message_is_an_rfc_1996_notify_with_the_serial_given() {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::{RData, RecordType};
    let zone = test_zone();
    let (msg, mac) = message(&zone, 2_026_120_101, 0x1234, None, 1_800_000_000);
    assert!(mac.is_none());
    let m = Message::from_vec(&msg).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Query);
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].name().to_ascii(), "example.com.");
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("an SOA in the answer: {m:?}");
    };
    assert_eq!(soa.serial, 2_026_120_101);
    assert_eq!(soa.mname.to_ascii(), "ns1.example.com.");
}

/// An answer as a secondary sends it: the request's header with QR set, signed over the
/// request's MAC.
fn answer_to(req: &[u8], rcode: u8, signed_with: Option<(&TsigKey, &[u8])>) -> Vec<u8> {
    let qd_end = 12 + tsig::read_name(req, 12).unwrap().1 - 12 + 4;
    let mut out = req[..qd_end].to_vec();
    out[2] |= 0x80;
    out[3] = rcode;
    out[6..12].fill(0);
    if let Some((k, mac)) = signed_with {
        tsig::Signer::new(k, mac, unix_now()).sign(&mut out, 0, &[]);
    }
    out
}

#[test]
fn answers_are_judged_by_rcode_and_signature() {
    let zone = test_zone();
    let now = unix_now();
    let (k, wrong) = (key(9), key(1));
    let (req, mac) = message(&zone, 5, 77, Some(&k), now);
    let mac = mac.unwrap();
    let macs = vec![mac.clone()];
    // The request itself is not an answer.
    assert_eq!(judge(&req, Some(&k), &macs, now), None);
    let good = answer_to(&req, 0, Some((&k, &mac)));
    assert_eq!(
        judge(&good, Some(&k), &macs, now),
        Some((77, Outcome::Acked))
    );
    // Signed with another key, unsigned, or over another MAC: not an acknowledgement.
    let forged = answer_to(&req, 0, Some((&wrong, &mac)));
    assert_eq!(
        judge(&forged, Some(&k), &macs, now),
        Some((77, Outcome::Error))
    );
    let unsigned = answer_to(&req, 0, None);
    assert_eq!(
        judge(&unsigned, Some(&k), &macs, now),
        Some((77, Outcome::Error))
    );
    assert_eq!(
        judge(&good, Some(&k), &[vec![0; 32]], now),
        Some((77, Outcome::Error))
    );
    // NOTAUTH (a key the secondary does not know), signed or not: refused.
    let notauth = answer_to(&req, 9, None);
    assert_eq!(
        judge(&notauth, Some(&k), &macs, now),
        Some((77, Outcome::Refused))
    );
    // Without a key, NOERROR is enough.
    let (plain, _) = message(&zone, 5, 78, None, now);
    assert_eq!(
        judge(&answer_to(&plain, 0, None), None, &[], now),
        Some((78, Outcome::Acked))
    );
    // A query answer (opcode 0) is not a NOTIFY answer.
    let mut query = good.clone();
    query[2] &= 0x87;
    assert_eq!(judge(&query, Some(&k), &macs, now), None);
    // Truncated garbage.
    assert_eq!(judge(&good[..5], Some(&k), &macs, now), None);
    assert_eq!(
        judge(&good[..good.len() - 3], Some(&k), &macs, now),
        Some((77, Outcome::Error))
    );
}

#[test]
fn the_transfer_log_keeps_the_last_sixteen_per_zone() {
    let log = TransferLog::default();
    for i in 0..20u8 {
        log.record(
            b"\x07example\x03com\x00",
            TransferRecord {
                client: IpAddr::from([127, 0, 0, i]),
                at: SystemTime::now(),
                kind: "AXFR",
                from_serial: None,
                serial: 1,
            },
        );
    }
    let kept = log.of(b"\x07example\x03com\x00");
    assert_eq!(kept.len(), TRANSFERS_KEPT);
    assert_eq!(kept[0].client, IpAddr::from([127, 0, 0, 4]));
    assert!(log.of(b"\x07example\x03org\x00").is_empty());
}
