//! Incremental zone transfers (RFC 1995): after a change, a secondary asking with the serial
//! it holds gets only the differences, by dig (a real client) and by NSD (a real secondary,
//! in notify.rs); over UDP an IXFR gets the current SOA alone.

use std::process::Command;

use hickory_proto::rr::{RData, RecordType};

use crate::common::mirrors::monitoring;
use crate::common::*;

const SERIAL: u32 = 2026112701;

fn config() -> String {
    format!(
        "{}[[service]]\nname = \"downloads.example.com\"\nmirrors = [\"us-east\", \"eu-west\"]\n[transfer]\nallow = [\"127.0.0.1/32\"]\n{MIRRORS}",
        server_section()
    )
}

/// The zone at `serial` with `mail` moved to a new address and one more name.
fn changed(serial: u32, step: u8) -> String {
    format!(
        "{}fresh{step}      A     192.0.2.{}\n",
        ZONE.replace(&SERIAL.to_string(), &serial.to_string())
            .replace("192.0.2.25", &format!("192.0.2.{}", 30 + step)),
        70 + step
    )
}

/// dig's transfer output for `kind` (`AXFR` or `IXFR=N`): (owner, type, data) per record.
async fn dig_transfer(port: u16, kind: &str) -> Vec<(String, String, String)> {
    let args: Vec<String> = [
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "example.com.",
        kind,
        "+nocmd",
        "+nocomments",
        "+nostats",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("dig").args(&args).output().expect("dig runs")
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[3].to_string(), f[4..].join(" "))
        })
        .collect()
}

/// The serial of an SOA line's data.
fn serial(data: &str) -> u32 {
    data.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn soa_serials(recs: &[(String, String, String)]) -> Vec<u32> {
    recs.iter()
        .filter(|r| r.1 == "SOA")
        .map(|r| serial(&r.2))
        .collect()
}

async fn incremental_count(ts: &TestServer) -> String {
    monitoring(&ts.server, "/metrics")
        .await
        .lines()
        .find(|l| l.starts_with("mirrordns_dns_transfers_incremental_total "))
        .unwrap_or("none")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig (dnsutils); `cargo test -- --ignored` runs it, as CI does"]
async fn ixfr_sends_the_differences_since_the_client_serial() {
    require("dig", "-v", "dnsutils");
    let ts = start(&config(), ZONE, None).await;
    let port = ts.addr.port();
    let zone_file = ts.dir.path().join("example.com.zone");
    let full = dig_transfer(port, "AXFR").await;
    assert!(full.len() > 10, "{full:?}");

    // One change: mail's address moves, fresh1 appears.
    std::fs::write(&zone_file, changed(SERIAL + 1, 1)).unwrap();
    ts.server.reload().await.unwrap();
    let inc = dig_transfer(port, &format!("IXFR={SERIAL}")).await;
    assert_eq!(
        soa_serials(&inc),
        [SERIAL + 1, SERIAL, SERIAL + 1, SERIAL + 1],
        "new SOA, old SOA, removals, new SOA, additions, new SOA:\n{inc:?}"
    );
    let at = |what: &(String, String, String)| inc.iter().position(|r| r == what).unwrap();
    let old_mail = ("mail.example.com.".into(), "A".into(), "192.0.2.25".into());
    let new_mail = ("mail.example.com.".into(), "A".into(), "192.0.2.31".into());
    let fresh = (
        "fresh1.example.com.".into(),
        "A".into(),
        "192.0.2.71".into(),
    );
    assert!(at(&old_mail) > 1 && at(&old_mail) < 3, "removed:\n{inc:?}");
    assert!(at(&new_mail) > 3 && at(&fresh) > 3, "added:\n{inc:?}");
    assert_eq!(inc.len(), 7, "only the change:\n{inc:?}");
    assert_eq!(
        incremental_count(&ts).await,
        "mirrordns_dns_transfers_incremental_total 1"
    );
    // /status shows which serial the secondary held and which it got.
    let st: serde_json::Value =
        serde_json::from_str(&monitoring(&ts.server, "/status").await).unwrap();
    let last = st["zones"][0]["transfers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["kind"], &last["from_serial"], &last["serial"]),
        (&"IXFR".into(), &SERIAL.into(), &(SERIAL + 1).into()),
        "{last}"
    );

    // Up to date: the SOA alone. Unknown serial: the whole zone.
    let same = dig_transfer(port, &format!("IXFR={}", SERIAL + 1)).await;
    assert_eq!(soa_serials(&same), [SERIAL + 1], "{same:?}");
    assert_eq!(same.len(), 1);
    let unknown = dig_transfer(port, "IXFR=7").await;
    assert_eq!(
        unknown.len(),
        full.len() + 1,
        "the whole new zone:\n{unknown:?}"
    );
    assert_ne!(unknown[1].1, "SOA", "AXFR form");

    // A second change: a client two versions behind gets both steps, in order.
    std::fs::write(&zone_file, changed(SERIAL + 2, 2)).unwrap();
    ts.server.reload().await.unwrap();
    let two = dig_transfer(port, &format!("IXFR={SERIAL}")).await;
    assert_eq!(
        soa_serials(&two),
        [
            SERIAL + 2,
            SERIAL,
            SERIAL + 1,
            SERIAL + 1,
            SERIAL + 2,
            SERIAL + 2
        ],
        "{two:?}"
    );
    ts.server.shutdown().await;
}

#[tokio::test]
async fn ixfr_over_udp_gets_the_current_soa_alone() {
    let ts = start(&config(), ZONE, None).await;
    let m = udp(
        ts.addr,
        &query("example.com.", RecordType::IXFR, None, None),
    )
    .await;
    assert!(m.metadata.authoritative, "{m}");
    let soas: Vec<u32> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .collect();
    assert_eq!(soas, [SERIAL], "{m}");
    assert_eq!(m.answers.len(), 1);
    // Not a zone apex: refused as before.
    let m = udp(
        ts.addr,
        &query("www.example.com.", RecordType::IXFR, None, None),
    )
    .await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::Refused
    );
    ts.server.shutdown().await;
}
