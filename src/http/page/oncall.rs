//! On-call actions in force (from the admin-state file or, with `[cluster]`, from
//! `mirrordns admin`), and the cluster: Redis, the peers, what was shared.

use std::fmt::Write;
use std::time::SystemTime;

use super::{ago, esc};
use crate::schema::{AdminAction, AdminSourceView, Status};

fn source(s: &AdminSourceView, now: SystemTime) -> String {
    match s {
        AdminSourceView::File => "admin-state file".to_string(),
        AdminSourceView::Cluster { by, at } => {
            format!("cluster, by {} {}", esc(by), ago(at, now))
        }
    }
}

fn until(u: &Option<String>, now: SystemTime) -> String {
    u.as_deref()
        .map(|u| ago(u, now))
        .unwrap_or_else(|| "until cleared".into())
}

/// Every entry, with where it comes from; those not in force (expired) are left out.
pub(super) fn actions(h: &mut String, s: &Status, now: SystemTime) {
    let a = &s.admin;
    let mut rows = Vec::new();
    for e in a.mirrors.iter().filter(|e| e.in_force) {
        let what = match e.action {
            AdminAction::Drain => "drain",
            AdminAction::ForceUp => "force-up",
        };
        rows.push((what, esc(&e.mirror), &e.until, &e.reason, &e.source));
    }
    for e in a.blocks.iter().filter(|e| e.in_force) {
        rows.push(("block", esc(&e.version), &e.until, &e.reason, &e.source));
    }
    for e in a.pins.iter().filter(|e| e.in_force) {
        let target = format!(
            "{} &rarr; <code>{}</code>",
            esc(&e.service),
            esc(&e.release)
        );
        rows.push(("pin", target, &e.until, &e.reason, &e.source));
    }
    if rows.is_empty() && a.error.is_none() {
        return;
    }
    h.push_str("<h2 id=\"oncall\">On-call actions</h2>");
    if let Some(e) = &a.error {
        let _ = write!(
            h,
            "<p class=\"bad\">Admin-state file rejected {}: <code>{}</code> (the previous entries stay in force)</p>",
            ago(&e.at, now),
            esc(&e.error)
        );
    }
    if rows.is_empty() {
        return;
    }
    h.push_str(
        "<div class=\"scroll\"><table><tr><th>action</th><th>on</th><th>ends</th><th>reason</th><th>from</th></tr>",
    );
    for (what, target, u, reason, src) in rows {
        let _ = write!(
            h,
            "<tr><td class=\"state\">{what}</td><td>{target}</td><td>{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
            until(u, now),
            esc(reason.as_deref().unwrap_or("")),
            source(src, now)
        );
    }
    h.push_str("</table></div>");
}

/// The cluster, with `[cluster]`.
pub(super) fn cluster(h: &mut String, s: &Status, now: SystemTime) {
    let Some(c) = &s.cluster else {
        return;
    };
    let _ = write!(
        h,
        "<h2 id=\"cluster\">Cluster</h2><p>this instance <b>{}</b> &middot; Redis <code>{}</code> {} &middot; \
         {} peer results adopted, {} not used, {} published, {} lock waits</p>",
        esc(&c.name),
        esc(&c.redis),
        if c.connected {
            "<span class=\"state\" style=\"color:#1a7f37\">connected</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">unreachable{}: verifying alone</span>",
                c.down_since
                    .as_deref()
                    .map(|d| format!(" since {}", ago(d, now)))
                    .unwrap_or_default()
            )
        },
        c.results_adopted,
        c.results_not_adopted,
        c.results_published,
        c.lock_waits
    );
    if !c.peers.is_empty() {
        h.push_str("<p>peers heard from: ");
        for (i, p) in c.peers.iter().enumerate() {
            let _ = write!(
                h,
                "{}{} ({}, {})",
                if i > 0 { ", " } else { "" },
                esc(&p.name),
                esc(&p.version),
                ago(&p.last_seen, now)
            );
        }
        h.push_str("</p>");
    }
    for e in &c.admin_errors {
        let _ = write!(
            h,
            "<p class=\"bad\">cluster entry not applied: <code>{}</code></p>",
            esc(e)
        );
    }
}
