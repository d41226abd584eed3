//! TSIG time checks (RFC 8945 5.2.3): a request signed with the right key by a client whose
//! clock is off by more than the fudge gets NOTAUTH with BADTIME, no data, and a response
//! signed over the request's MAC, carrying the request's time and, in Other Data, the server's
//! clock, so the client can tell its own clock is wrong. Requests are signed here with `ring`'s
//! HMAC, and the server's signatures checked with it, independently of the server's HMAC.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use ring::hmac;

const KEY: &str = "3q2+7wAAAAAREiIzRFVmd4iZqrvM3e7/AAAAAAAAAAA=";
/// `KEY`, decoded.
const KEY_BYTES: [u8; 32] = [
    0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0x11, 0x12, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99,
    0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
];
const KEY_NAME: &[u8] = b"\x07xfr-key\x00";
const ALGORITHM: &[u8] = b"\x0bhmac-sha256\x00";
const CLASS_ANY: u16 = 255;
const TYPE_TSIG: u16 = 250;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mac(parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &KEY_BYTES);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// TSIG variables (RFC 8945 4.3.3): key name, class, TTL, algorithm, time, fudge, error,
/// other length and data.
fn variables(time: u64, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = KEY_NAME.to_vec();
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(ALGORITHM);
    v.extend_from_slice(&time.to_be_bytes()[2..]);
    v.extend_from_slice(&300u16.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// `www.example.com A` signed as of `time`: (the request, its MAC).
fn signed_query(id: u16, time: u64) -> (Vec<u8>, Vec<u8>) {
    let mut msg = id.to_be_bytes().to_vec();
    msg.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    let m = mac(&[&msg, &variables(time, 0, &[])]);
    let mut rdata = ALGORITHM.to_vec();
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&300u16.to_be_bytes());
    rdata.extend_from_slice(&(m.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&m);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    msg[11] = 1;
    msg.extend_from_slice(KEY_NAME);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(&rdata);
    (msg, m)
}

/// A response's TSIG record, read from the end of the message.
struct Tsig {
    /// Where the record starts: everything before it is what was signed.
    at: usize,
    time: u64,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Skips a (possibly compressed) name.
fn skip_name(b: &[u8], mut at: usize) -> usize {
    loop {
        let len = b[at] as usize;
        if len & 0xc0 == 0xc0 {
            return at + 2;
        }
        at += 1 + len;
        if len == 0 {
            return at;
        }
    }
}

/// Walks every record and returns the last one, which must be a TSIG.
fn tsig_of(resp: &[u8]) -> Tsig {
    let mut at = 12;
    for _ in 0..be16(resp, 4) {
        at = skip_name(resp, at) + 4;
    }
    let records = be16(resp, 6) + be16(resp, 8) + be16(resp, 10);
    assert!(records > 0, "no records: {resp:?}");
    let mut last = at;
    for _ in 0..records {
        last = at;
        let fixed = skip_name(resp, at);
        at = fixed + 10 + be16(resp, fixed + 8) as usize;
    }
    assert_eq!(at, resp.len(), "records end where the message ends");
    let fixed = skip_name(resp, last);
    assert_eq!(&resp[last..fixed], KEY_NAME);
    assert_eq!(be16(resp, fixed), TYPE_TSIG, "the last record is the TSIG");
    let r = fixed + 10;
    assert_eq!(&resp[r..r + ALGORITHM.len()], ALGORITHM);
    let mut p = r + ALGORITHM.len();
    let time = resp[p..p + 6].iter().fold(0u64, |t, b| t << 8 | *b as u64);
    p += 8;
    let mac_len = be16(resp, p) as usize;
    let mac = resp[p + 2..p + 2 + mac_len].to_vec();
    p += 2 + mac_len;
    let other_len = be16(resp, p + 4) as usize;
    Tsig {
        at: last,
        time,
        mac,
        original_id: be16(resp, p),
        error: be16(resp, p + 2),
        other: resp[p + 6..p + 6 + other_len].to_vec(),
    }
}

/// Checks the response's MAC (RFC 8945 4.3.1: request MAC, response without its TSIG, TSIG
/// variables) with our own HMAC.
fn assert_signed_over(resp: &[u8], t: &Tsig, request_mac: &[u8]) {
    let mut unsigned = resp[..t.at].to_vec();
    unsigned[..2].copy_from_slice(&t.original_id.to_be_bytes());
    let ar = be16(&unsigned, 10) - 1;
    unsigned[10..12].copy_from_slice(&ar.to_be_bytes());
    let want = mac(&[
        &(request_mac.len() as u16).to_be_bytes(),
        request_mac,
        &unsigned,
        &variables(t.time, t.error, &t.other),
    ]);
    assert_eq!(t.mac, want, "the response's MAC checks out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_clock_off_by_an_hour_gets_badtime_with_the_server_time() {
    let config = format!(
        "{}[transfer]\nallow = [\"127.0.0.1\"]\n[transfer.tsig]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{KEY}\"\n",
        server_section()
    );
    let ts = start(&config, ZONE, None).await;

    // Just inside the fudge (300 s) is still in time. First: RFC 8945 5.2.3 lets a server
    // refuse a request older than one it has already seen from the key.
    let (q, qmac) = signed_query(0x3333, now() - 290);
    let resp = udp_raw(ts.addr, &q).await.expect("an answer");
    assert_eq!(resp[3] & 0x0f, 0, "NOERROR inside the fudge");
    assert_signed_over(&resp, &tsig_of(&resp), &qmac);

    // In time: answered and signed, as a control for the signing above.
    let t0 = now();
    let (q, qmac) = signed_query(0x1111, t0);
    for resp in [udp_raw(ts.addr, &q).await, tcp_raw(ts.addr, &q).await] {
        let resp = resp.expect("an answer");
        assert_eq!(resp[3] & 0x0f, 0, "NOERROR");
        assert_eq!(be16(&resp, 6), 1, "one answer");
        let t = tsig_of(&resp);
        assert_eq!(t.error, 0);
        assert_signed_over(&resp, &t, &qmac);
    }

    // An hour behind, and an hour ahead: NOTAUTH, BADTIME, no data, signed, our clock.
    for skew in [-3600i64, 3600] {
        let sent = now().saturating_add_signed(skew);
        let (q, qmac) = signed_query(0x2222, sent);
        for resp in [udp_raw(ts.addr, &q).await, tcp_raw(ts.addr, &q).await] {
            let resp = resp.expect("an answer");
            assert_eq!(&resp[..2], &[0x22, 0x22]);
            assert_eq!(resp[3] & 0x0f, 9, "NOTAUTH (skew {skew})");
            assert_eq!(be16(&resp, 6) + be16(&resp, 8), 0, "no data");
            let t = tsig_of(&resp);
            assert_eq!(t.error, 18, "BADTIME");
            assert_eq!(t.time, sent, "the request's time, so the client can verify");
            assert_eq!(t.other.len(), 6, "the server's time");
            let server = t.other.iter().fold(0u64, |s, b| s << 8 | *b as u64);
            assert!(server.abs_diff(now()) <= 5, "server time {server}");
            assert_signed_over(&resp, &t, &qmac);
        }
    }
}
