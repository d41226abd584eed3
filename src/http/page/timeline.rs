//! Each release's rollout: published, seen at the origin, verified mirror by mirror, ready
//! everywhere, or who it still waits for, by name. A release required by several services is
//! shown once, with the mirrors of all of them.

use std::fmt::Write;
use std::time::SystemTime;

use super::{ago, esc, span};
use crate::schema::{ReleaseView, RolloutMirrorView, Status};

struct Release<'a> {
    view: &'a ReleaseView,
    /// (mirror, its state, its reason)
    mirrors: Vec<(&'a RolloutMirrorView, &'a str, &'a str)>,
}

fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let (a, b) = (
        humantime::parse_rfc3339(from).ok()?,
        humantime::parse_rfc3339(to).ok()?,
    );
    Some(b.duration_since(a).map_or(0.0, |d| d.as_secs_f64()))
}

fn collect(s: &Status) -> Vec<Release<'_>> {
    let mut out: Vec<Release<'_>> = Vec::new();
    for svc in &s.services {
        for (view, rollout) in svc.releases.iter().zip(&svc.rollout) {
            let at = match out.iter().position(|r| r.view.path == view.path) {
                Some(i) => i,
                None => {
                    out.push(Release {
                        view,
                        mirrors: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let r = &mut out[at];
            for m in &rollout.mirrors {
                if r.mirrors.iter().any(|(x, _, _)| x.mirror == m.mirror) {
                    continue;
                }
                let (state, reason) = svc
                    .mirrors
                    .iter()
                    .find(|v| v.name == m.mirror)
                    .map_or(("unknown", ""), |v| (v.state.as_str(), v.reason.as_str()));
                r.mirrors.push((m, state, reason));
            }
        }
    }
    out
}

pub(super) fn render(h: &mut String, s: &Status, now: SystemTime) {
    let releases = collect(s);
    if releases.is_empty() {
        return;
    }
    h.push_str("<h2>Releases</h2>");
    for r in releases {
        let v = r.view;
        let _ = write!(
            h,
            "<section class=\"release\" data-release=\"{0}\"><b><code>{0}</code></b> {1}",
            esc(&v.path),
            esc(v.version.as_deref().unwrap_or("(not fetched yet)"))
        );
        if let Some(e) = &v.error {
            let _ = write!(h, " <span class=\"bad\">{}</span>", esc(e));
        }
        h.push_str("<ol class=\"tl\">");
        match &v.published {
            Some(p) => {
                let _ = write!(h, "<li>published {}</li>", ago(p, now));
            }
            None => h.push_str("<li>publication time not in the manifest</li>"),
        }
        // Lags and readiness count from when the content was seen to change.
        let start = v.changed_at.as_deref().or(v.published.as_deref());
        if let Some(c) = &v.changed_at
            && v.published.as_ref() != Some(c)
        {
            let _ = write!(h, "<li>seen at the origin {}</li>", ago(c, now));
        }
        let mut verified: Vec<(&str, &str)> = r
            .mirrors
            .iter()
            .filter_map(|(m, _, _)| Some((m.verified_at.as_deref()?, m.mirror.as_str())))
            .collect();
        verified.sort();
        for (at, mirror) in verified {
            let after = start
                .and_then(|st| seconds_between(st, at))
                .map(|d| format!(" ({} after)", span(d)))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<li class=\"done\" data-mirror=\"{0}\">{0} verified {1}{after}</li>",
                esc(mirror),
                ago(at, now)
            );
        }
        let holding: Vec<_> = r.mirrors.iter().filter(|(m, _, _)| m.holding_up).collect();
        match (&v.ready_at, v.waiting_seconds) {
            (Some(at), _) => {
                let _ = write!(
                    h,
                    "<li class=\"done\" id=\"ready\">ready everywhere {}{}</li>",
                    ago(at, now),
                    v.ready_after_seconds
                        .map(|d| format!(", {} after it changed", span(d)))
                        .unwrap_or_default()
                );
            }
            (None, waiting) => {
                let _ = write!(
                    h,
                    "<li class=\"hold\">not ready everywhere{}; ",
                    waiting
                        .map(|w| format!(" after {}", span(w)))
                        .unwrap_or_default()
                );
                if holding.is_empty() {
                    h.push_str("no mirror named yet (the origin not fetched)");
                } else {
                    h.push_str("held up by ");
                    for (i, (m, state, reason)) in holding.iter().enumerate() {
                        let _ = write!(
                            h,
                            "{}<b class=\"bad holding\" data-mirror=\"{1}\">{1}</b> ({2}{3}{4})",
                            if i > 0 { ", " } else { "" },
                            esc(&m.mirror),
                            state,
                            if reason.is_empty() { "" } else { ": " },
                            esc(reason)
                        );
                    }
                }
                h.push_str("</li>");
            }
        }
        h.push_str("</ol></section>");
    }
}
