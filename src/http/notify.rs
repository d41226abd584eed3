//! NOTIFY and zone transfers in `/status` and `/metrics`: what the NOTIFY task sent to each
//! secondary and what came of it, and which secondaries transferred each zone.

use crate::dns::notify::Outcome;
use crate::metrics::Exposition;
use crate::monitor::Monitor;
use crate::schema::{NotifyView, TransferView};
use crate::zone::Zone;

use super::status::time;

/// The zone's last NOTIFY to each secondary.
pub fn views(m: &Monitor, zone: &Zone) -> Vec<NotifyView> {
    m.notify()
        .entries()
        .into_iter()
        .filter(|e| e.origin == zone.origin)
        .map(|e| NotifyView {
            address: e.addr.to_string(),
            serial: e.serial,
            at: e.last_sent.map(time),
            acknowledged: e.acked,
            attempts: e.attempts,
            last_result: e.last_result.map(|r| r.as_str().to_string()),
        })
        .collect()
}

/// The zone's last transfers, oldest first.
pub fn transfers(m: &Monitor, zone: &Zone) -> Vec<TransferView> {
    m.stats()
        .transfers
        .of(zone.origin.wire())
        .into_iter()
        .map(|t| TransferView {
            client: t.client.to_string(),
            at: time(t.at),
            kind: t.kind.to_string(),
            from_serial: t.from_serial,
            serial: t.serial,
        })
        .collect()
}

pub fn metrics(e: &mut Exposition, m: &Monitor) {
    const NAME: &str = "mirrordns_dns_notify_total";
    e.family(
        NAME,
        "counter",
        "NOTIFY sends to secondaries, by result: acked, refused (an rcode other than NOERROR), timeout (no answer before the next send or giving up), error (not sent, or the answer's TSIG did not verify).",
    );
    for o in Outcome::ALL {
        e.sample(NAME, &[("result", o.as_str())], m.notify().get(o) as f64);
    }
}
