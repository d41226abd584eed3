//! DNSSEC in `/status` and `/metrics`: keys, signature expiry and counts, from the table's
//! signatures.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Exposition;
use crate::routing::RoutingTable;
use crate::schema::{KeyView, ReloadError, SigningView, ZoneSigningView};
use crate::zone::Zone;

use super::status::time;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

/// A zone's signing view, when it is signed.
pub fn zone_view(table: &RoutingTable, zone: &Zone) -> Option<ZoneSigningView> {
    let sg = table.dnssec.as_ref()?;
    let due = sg.zone_due(&zone.origin)?;
    let now = SystemTime::now();
    let expires = at(due.expiration as u64);
    Some(ZoneSigningView {
        keys: sg
            .signer
            .keys()
            .iter()
            .filter(|k| k.owner == zone.origin)
            .map(|k| KeyView {
                tag: k.tag,
                algorithm: k.algorithm,
                role: if k.is_ksk() { "KSK" } else { "ZSK" }.to_string(),
                file: k.file.display().to_string(),
            })
            .collect(),
        expires_at: time(expires),
        expires_in_seconds: seconds_until(expires, now),
        refresh_at: time(at(due.refresh_at)),
    })
}

fn seconds_until(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The signing counts, with `[dnssec]`.
pub fn view(table: &RoutingTable) -> Option<SigningView> {
    let st = &table.dnssec.as_ref()?.signer.stats;
    let last = st.last_error.lock().unwrap_or_else(|e| e.into_inner());
    Some(SigningView {
        signatures_made: st.made.load(Relaxed),
        signatures_reused: st.reused.load(Relaxed),
        failures: st.failed.load(Relaxed),
        last_error: last.as_ref().map(|(t, e)| ReloadError {
            at: time(*t),
            error: e.clone(),
        }),
    })
}

pub fn metrics(e: &mut Exposition, table: &RoutingTable) {
    let Some(sg) = table.dnssec.as_ref() else {
        return;
    };
    let now = SystemTime::now();
    e.family(
        "mirrordns_dnssec_signature_expiry_seconds",
        "gauge",
        "Seconds until the soonest-expiring signature served for the zone (geo answers included).",
    );
    for z in table.zones.zones() {
        if let Some(d) = sg.zone_due(&z.origin) {
            let zone = z.origin.to_string();
            e.sample(
                "mirrordns_dnssec_signature_expiry_seconds",
                &[("zone", zone.as_str())],
                seconds_until(at(d.expiration as u64), now),
            );
        }
    }
    let st = &sg.signer.stats;
    for (name, help, v) in [
        (
            "mirrordns_dnssec_signatures_total",
            "RRSIGs made (at load, for new geo answers, and at refresh).",
            &st.made,
        ),
        (
            "mirrordns_dnssec_signatures_reused_total",
            "RRsets whose signatures a routing table build took from the cache instead of signing.",
            &st.reused,
        ),
        (
            "mirrordns_dnssec_signing_failures_total",
            "RRsets that could not be signed (the previous signatures are kept while valid).",
            &st.failed,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], v.load(Relaxed) as f64);
    }
}
