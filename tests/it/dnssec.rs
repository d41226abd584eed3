//! Signed answers as a client sees them, over real sockets: RRSIGs over the geo answer for
//! each client subnet (checked here with hickory-proto's verifier), none without DO, DNSKEY,
//! NXDOMAIN, NODATA and wildcard proofs, sizes within 1232 bytes. Also the helpers of the
//! other DNSSEC tests: keys made in the test, a geo config, DO queries, RRSIG checks.
//! Validation by real resolvers is in `dnssec_validate`; the zone as transferred, signature
//! refresh and re-signing after a health change in `dnssec_zone`.

use std::net::SocketAddr;
use std::path::PathBuf;

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_proto::dnssec::{Algorithm, PublicKeyBuf, Verifier};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use mirrordns::dnssec::keys::{self, Key};

use crate::common::*;

/// Key files made in the test, and the keys as the server loads them.
pub struct Keys {
    /// Holds the files while the test runs.
    _dir: tempfile::TempDir,
    pub files: Vec<PathBuf>,
    pub keys: Vec<Key>,
}

impl Keys {
    /// One CSK (flags 257, algorithm 13), or a KSK and a ZSK when `split`.
    pub fn new(split: bool) -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let zone = mirrordns::zone::Name::from_text("example.com").unwrap();
        let mut files = vec![keys::generate(&zone, 13, true, dir.path()).unwrap()];
        if split {
            files.push(keys::generate(&zone, 13, false, dir.path()).unwrap());
        }
        let keys = files.iter().map(|f| keys::load(f).unwrap()).collect();
        Keys {
            _dir: dir,
            files,
            keys,
        }
    }

    /// The `[dnssec]` section naming the key files, with more lines after `keys`.
    pub fn section(&self, extra: &str) -> String {
        let list: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{:?}", f.to_str().unwrap()))
            .collect();
        format!("\n[dnssec]\nkeys = [{}]\n{extra}", list.join(", "))
    }

    /// The key the parent's DS points at.
    pub fn ksk(&self) -> &Key {
        self.keys.iter().find(|k| k.is_ksk()).expect("a KSK")
    }

    /// "example.com. IN DS TAG 13 2 HEX", as `mirrordns ds` prints it.
    pub fn ds(&self) -> String {
        self.ksk().ds_text()
    }

    /// A delv anchor file's text for the KSK's DS.
    pub fn delv_anchor(&self) -> String {
        let ds = self.ds();
        let f: Vec<&str> = ds.split_whitespace().collect();
        format!(
            "trust-anchors {{ {} static-ds {} {} {} \"{}\"; }};\n",
            f[0], f[3], f[4], f[5], f[6]
        )
    }
}

pub use crate::common::geo_config;

/// A query with EDNS (payload 1232), DO as given, and an ECS option if `ecs`.
pub fn dnssec_query(name: &str, rtype: RecordType, dnssec_ok: bool, ecs: Option<&str>) -> Vec<u8> {
    let mut m = Message::new(0x2b2b, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    if let Some(subnet) = ecs {
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            subnet.parse().unwrap(),
            24,
            0,
        )));
    }
    m.set_edns(e);
    m.to_vec().unwrap()
}

pub fn rrsig(r: &Record) -> Option<&RRSIG> {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s),
        _ => None,
    }
}

fn dnskey(r: &Record) -> Option<&DNSKEY> {
    match &r.data {
        RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k),
        _ => None,
    }
}

/// The RRSIGs in `section` covering `rtype`.
pub fn sigs_over(section: &[Record], rtype: RecordType) -> Vec<&RRSIG> {
    section
        .iter()
        .filter_map(rrsig)
        .filter(|s| s.input().type_covered == rtype)
        .collect()
}

/// The records of `section` other than RRSIGs, of `rtype` at `owner`.
fn set_of<'a>(section: &'a [Record], owner: &Name, rtype: RecordType) -> Vec<&'a Record> {
    section
        .iter()
        .filter(|r| &r.name == owner && r.record_type() == rtype)
        .collect()
}

/// Checks every RRSIG of the message with the zone's DNSKEYs (found by key tag): the set it
/// covers at its owner is in the same section, and the signature verifies over that set.
/// Returns how many were checked.
pub fn verify_all(m: &Message, dnskeys: &[DNSKEY]) -> usize {
    let mut n = 0;
    for section in [&m.answers, &m.authorities] {
        for r in section.iter() {
            let Some(sig) = rrsig(r) else { continue };
            let input = sig.input();
            let key = dnskeys
                .iter()
                .find(|k| k.calculate_key_tag().unwrap() == input.key_tag)
                .unwrap_or_else(|| panic!("no DNSKEY with tag {}", input.key_tag));
            let set = set_of(section, &r.name, input.type_covered);
            assert!(!set.is_empty(), "RRSIG with no set: {r}");
            key.verify_rrsig(&r.name, DNSClass::IN, sig, set.into_iter())
                .unwrap_or_else(|e| panic!("{r} does not verify: {e}\n{m}"));
            n += 1;
        }
    }
    n
}

/// The zone's DNSKEYs as the test made them (not as the server says).
pub fn our_dnskeys(keys: &Keys) -> Vec<DNSKEY> {
    keys.keys
        .iter()
        .map(|k| {
            let public = PublicKeyBuf::new(k.dnskey[4..].to_vec(), Algorithm::from_u8(k.algorithm));
            DNSKEY::with_flags(k.flags, public)
        })
        .collect()
}

pub async fn ask(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    dnssec_ok: bool,
    ecs: Option<&str>,
) -> (Message, usize) {
    let raw = udp_raw(addr, &dnssec_query(name, rtype, dnssec_ok, ecs))
        .await
        .expect("UDP answer within 2 s");
    (Message::from_vec(&raw).expect("answer parses"), raw.len())
}
/// True if the NSEC at `owner` (next name `next`) covers `name`: strictly between the two in
/// canonical order, the last NSEC's next name being the apex.
fn covers(owner: &Name, next: &Name, name: &Name) -> bool {
    let apex = Name::from_ascii("example.com.").unwrap();
    owner < name && (name < next || *next == apex)
}

/// The NSEC records of a section: (owner, next name, types).
fn nsecs(section: &[Record]) -> Vec<(Name, Name, Vec<RecordType>)> {
    section
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some((
                r.name.clone(),
                n.next_domain_name().clone(),
                n.type_bit_maps().collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Every RRset of the section has an RRSIG over it at its owner.
fn assert_all_signed(section: &[Record], what: &str) {
    for r in section.iter().filter(|r| rrsig(r).is_none()) {
        let signed = section.iter().any(|s| {
            s.name == r.name && rrsig(s).is_some_and(|g| g.input().type_covered == r.record_type())
        });
        assert!(signed, "{what}: {r} has no RRSIG");
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[tokio::test]
async fn geo_answers_dnskey_and_denials_are_signed_with_do_only() {
    let keys = Keys::new(false);
    let key = &keys.keys[0];
    let ours = our_dnskeys(&keys);
    let ts = start(&geo_config(1, &keys.section("")), ZONE, None).await;
    let dl = "downloads.example.com.";

    // Two client subnets, two mirrors, each answer signed over exactly its own set.
    let mut answers = Vec::new();
    for (subnet, want) in [("81.2.69.0", "192.0.2.11"), ("1.0.16.0", "192.0.2.14")] {
        let (m, _) = ask(ts.addr, dl, RecordType::A, true, Some(subnet)).await;
        assert_eq!(addrs(&m), [want], "the mirror for {subnet}");
        assert!(m.edns.as_ref().unwrap().flags().dnssec_ok, "DO echoed");
        assert_eq!(m.answers.len(), 2, "the A record and its RRSIG:\n{m}");
        let sigs = sigs_over(&m.answers, RecordType::A);
        assert_eq!(sigs.len(), 1, "{m}");
        let s = sigs[0].input();
        assert_eq!(s.num_labels, 3);
        assert_eq!(s.signer_name, name("example.com."));
        assert_eq!(s.key_tag, key.tag);
        assert_eq!(s.algorithm, Algorithm::ECDSAP256SHA256);
        assert_eq!(
            s.original_ttl, m.answers[0].ttl,
            "original TTL is the set's"
        );
        assert!(m.answers.iter().all(|r| r.name == name(dl)));
        assert_eq!(verify_all(&m, &ours), 1, "the signature verifies");
        answers.push(m);
    }
    // London's signature does not verify over Tokyo's set: the check above can fail.
    let london_sig = rrsig(&answers[0].answers[1]).unwrap();
    let tokyo_a = &answers[1].answers[0];
    assert!(
        ours[0]
            .verify_rrsig(&name(dl), DNSClass::IN, london_sig, [tokyo_a].into_iter())
            .is_err(),
        "a signature over one subnet's answer is not valid for another's"
    );

    // Without DO: the same answer, no RRSIG, DO clear in the OPT.
    let (m, _) = ask(ts.addr, dl, RecordType::A, false, Some("81.2.69.0")).await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    assert!(m.answers.iter().all(|r| rrsig(r).is_none()), "{m}");
    assert!(!m.edns.as_ref().unwrap().flags().dnssec_ok);
    let (m, _) = ask(ts.addr, "www.example.com.", RecordType::A, false, None).await;
    assert_eq!(m.answers.len(), 1, "no RRSIG without DO:\n{m}");

    // DNSKEY at the apex, with DO or not; signed with DO.
    for dnssec_ok in [false, true] {
        let (m, _) = ask(ts.addr, "example.com.", RecordType::DNSKEY, dnssec_ok, None).await;
        let served: Vec<&DNSKEY> = m.answers.iter().filter_map(dnskey).collect();
        assert_eq!(
            served,
            ours.iter().collect::<Vec<_>>(),
            "DO={dnssec_ok}: {m}"
        );
        assert_eq!(
            sigs_over(&m.answers, RecordType::DNSKEY).len(),
            dnssec_ok as usize
        );
        if dnssec_ok {
            assert_eq!(verify_all(&m, &ours), 1);
        }
    }

    // NXDOMAIN: the SOA, an NSEC covering the name and one covering the wildcard, all signed.
    let (m, _) = ask(ts.addr, "nope.example.com.", RecordType::A, true, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    assert_eq!(
        set_of(&m.authorities, &name("example.com."), RecordType::SOA).len(),
        1
    );
    let proofs = nsecs(&m.authorities);
    for n in ["nope.example.com.", "*.example.com."] {
        assert!(
            proofs.iter().any(|(o, next, _)| covers(o, next, &name(n))),
            "no NSEC covers {n}:\n{m}"
        );
    }
    assert_all_signed(&m.authorities, "NXDOMAIN");
    assert!(verify_all(&m, &ours) >= 2);

    // A wildcard expansion: signed as `*.docs` (labels 3), with the NSEC proving that no
    // closer name exists.
    let (m, _) = ask(ts.addr, "x.docs.example.com.", RecordType::A, true, None).await;
    assert_eq!(addrs(&m), ["192.0.2.101"]);
    let sigs = sigs_over(&m.answers, RecordType::A);
    assert_eq!(sigs.len(), 1, "{m}");
    assert_eq!(sigs[0].input().num_labels, 3, "the wildcard's labels");
    let proofs = nsecs(&m.authorities);
    assert!(
        proofs
            .iter()
            .any(|(o, next, _)| covers(o, next, &name("x.docs.example.com."))),
        "no NSEC covers the expanded name:\n{m}"
    );
    assert_all_signed(&m.authorities, "wildcard");
    assert_eq!(verify_all(&m, &ours), 2);

    // NODATA: the SOA and the NSEC at the name, whose types leave out the one asked for.
    let (m, _) = ask(ts.addr, "www.example.com.", RecordType::TXT, true, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let proofs = nsecs(&m.authorities);
    let at = proofs
        .iter()
        .find(|(o, ..)| *o == name("www.example.com."))
        .unwrap_or_else(|| panic!("no NSEC at www:\n{m}"));
    assert!(at.2.contains(&RecordType::A) && !at.2.contains(&RecordType::TXT));
    assert_all_signed(&m.authorities, "NODATA");
    assert!(verify_all(&m, &ours) >= 2);
    ts.server.shutdown().await;
}

#[tokio::test]
async fn the_biggest_signed_answers_fit_1232_bytes() {
    for split in [false, true] {
        let keys = Keys::new(split);
        let ours = our_dnskeys(&keys);
        let ts = start(&geo_config(2, &keys.section("")), ZONE, None).await;
        let asks = [
            ("downloads.example.com.", RecordType::A, Some("81.2.69.0")),
            (
                "downloads.example.com.",
                RecordType::AAAA,
                Some("81.2.69.0"),
            ),
            ("downloads.example.com.", RecordType::AAAA, Some("1.0.16.0")),
            ("downloads.example.com.", RecordType::TXT, Some("81.2.69.0")),
            ("nope.example.com.", RecordType::A, None),
            ("zzz.x.docs.example.com.", RecordType::A, None),
            ("www.example.com.", RecordType::TXT, None),
            ("example.com.", RecordType::DNSKEY, None),
            ("example.com.", RecordType::ANY, None),
        ];
        for (n, rtype, ecs) in asks {
            let (m, len) = ask(ts.addr, n, rtype, true, ecs).await;
            let what = format!("{n} {rtype} (split keys: {split})");
            assert!(!m.metadata.truncation, "{what} truncated at 1232:\n{m}");
            assert!(len <= 1232, "{what}: {len} bytes");
            eprintln!("{what}: {len} bytes");
            assert!(verify_all(&m, &ours) >= 1, "{what} is signed:\n{m}");
            if (rtype == RecordType::A || rtype == RecordType::AAAA) && n.starts_with("down") {
                assert_eq!(addrs(&m).len(), 2, "{what}: two mirrors:\n{m}");
            }
        }
        ts.server.shutdown().await;
    }
}

#[tokio::test]
async fn referrals_carry_the_signed_ds_or_the_proof_there_is_none() {
    let keys = Keys::new(false);
    let ours = our_dnskeys(&keys);
    // `lab` is delegated without a DS; `secure` with one.
    let zone = format!(
        "{ZONE}secure NS ns.secure\nns.secure A 192.0.2.201\nsecure DS 60485 13 2 {}\n",
        "D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A"
    );
    let ts = start(&geo_config(1, &keys.section("")), &zone, None).await;
    let (m, _) = ask(
        ts.addr,
        "www.secure.example.com.",
        RecordType::A,
        true,
        None,
    )
    .await;
    assert!(!m.metadata.authoritative, "a referral:\n{m}");
    let types: Vec<RecordType> = m.authorities.iter().map(|r| r.record_type()).collect();
    assert!(
        types.contains(&RecordType::NS) && types.contains(&RecordType::DS),
        "{m}"
    );
    assert_eq!(
        sigs_over(&m.authorities, RecordType::DS).len(),
        1,
        "the DS is signed:\n{m}"
    );
    assert_eq!(verify_all(&m, &ours), 1, "{m}");
    let (m, _) = ask(ts.addr, "www.lab.example.com.", RecordType::A, true, None).await;
    let proofs = nsecs(&m.authorities);
    let [(owner, _, types)] = &proofs[..] else {
        panic!("one NSEC proving lab has no DS:\n{m}");
    };
    assert_eq!(owner, &name("lab.example.com."));
    assert!(
        !types.contains(&RecordType::DS) && types.contains(&RecordType::NS),
        "{m}"
    );
    assert_eq!(verify_all(&m, &ours), 1, "the NSEC is signed:\n{m}");
    // Without DO, the referral is as it always was.
    let (m, _) = ask(
        ts.addr,
        "www.secure.example.com.",
        RecordType::A,
        false,
        None,
    )
    .await;
    assert!(
        m.authorities
            .iter()
            .all(|r| r.record_type() == RecordType::NS),
        "{m}"
    );
    ts.server.shutdown().await;
}
