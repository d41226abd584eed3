//! The mirror table: each mirror once (in the order services first list them), its health,
//! and a column per service saying whether that service routes to it now.

use std::fmt::Write;
use std::time::SystemTime;

use super::{ago, color, esc, span};
use crate::schema::{MirrorView, Status};

pub(super) fn render(h: &mut String, s: &Status, now: SystemTime) {
    let mut rows: Vec<&MirrorView> = Vec::new();
    for svc in &s.services {
        for m in &svc.mirrors {
            if !rows.iter().any(|r| r.name == m.name) {
                rows.push(m);
            }
        }
    }
    h.push_str(
        "<h2>Mirrors</h2><div class=\"scroll\"><table id=\"mirrors\"><tr><th>mirror</th><th>state</th><th>reason</th>\
         <th>lag</th><th>verified</th><th>last probe</th><th>latency</th>",
    );
    for svc in &s.services {
        // Long service names break at their dots rather than widening the table.
        let _ = write!(
            h,
            "<th>routable for {}</th>",
            esc(&svc.name).replace('.', ".<wbr>")
        );
    }
    h.push_str("</tr>");
    for m in rows {
        let state = super::shown_state(s, &m.name, m.state.as_str());
        let _ = write!(
            h,
            "<tr data-mirror=\"{0}\"><td>{0}</td><td class=\"state\" style=\"color:{1}\">{2}</td><td class=\"reason\">{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7}</td>",
            esc(&m.name),
            color(state),
            state,
            esc(&m.reason),
            if m.lag_seconds > 0.0 {
                span(m.lag_seconds)
            } else {
                "-".into()
            },
            esc(&m.verified_versions.join(", ")),
            m.last_probe
                .as_deref()
                .map_or_else(|| "-".to_string(), |t| ago(t, now)),
            m.latency_ms
                .map(|l| format!("{l:.1} ms"))
                .unwrap_or_else(|| "-".into())
        );
        for svc in &s.services {
            let cell = match svc.mirrors.iter().find(|x| x.name == m.name) {
                Some(x) if x.routable => "yes",
                Some(_) => "<span class=\"bad\">no</span>",
                None => "&mdash;",
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");
}
