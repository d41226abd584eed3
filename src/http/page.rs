//! `GET /`: a server-rendered status page an on-call person can read at a glance. No
//! JavaScript; it refreshes itself every 10 seconds.

use std::fmt::Write;

use crate::schema::Status;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(state: &str) -> &'static str {
    match state {
        "ready" => "#1a7f37",
        "verifying" | "unknown" => "#9a6700",
        "lagging" => "#bc4c00",
        "drained" => "#57606a",
        _ => "#cf222e",
    }
}

pub fn render(s: &Status) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>mirrordns status</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328}}\
         table{{border-collapse:collapse;margin:.5em 0 1.5em}}th,td{{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}}\
         th{{background:#f6f8fa}}.state{{font-weight:600}}.bad{{color:#cf222e;font-weight:600}}code{{font-size:13px}}\
         </style></head><body><h1>mirrordns {}</h1>",
        esc(&s.version)
    );
    let _ = write!(
        h,
        "<p>{} &middot; config generation {} loaded {} &middot; routing table generation {} swapped {} &middot; {} DNS queries</p>",
        if s.ready {
            "<span class=\"state\" style=\"color:#1a7f37\">ready</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">not ready: waiting for {}</span>",
                esc(&s.waiting_for.join("; "))
            )
        },
        s.config.generation,
        esc(&s.config.loaded_at),
        s.routing.generation,
        esc(&s.routing.swapped_at),
        s.dns.queries
    );
    if let Some(e) = &s.config.last_reload_error {
        let _ = write!(
            h,
            "<p class=\"bad\">Last reload rejected at {}: <code>{}</code></p>",
            esc(&e.at),
            esc(&e.error)
        );
    }
    for svc in &s.services {
        let _ = write!(
            h,
            "<h2>{}</h2><p>policy {}, ttl {}, {} per answer, fallback {}",
            esc(&svc.name),
            esc(&svc.policy),
            svc.ttl,
            svc.answers,
            esc(&svc.fallback)
        );
        if let Some(f) = &svc.fallback_in_force {
            let _ = write!(
                h,
                " &mdash; <span class=\"bad\">no mirror routable: answering by fallback {f}</span>"
            );
        }
        if svc.fallthrough_lists > 0 {
            let _ = write!(
                h,
                " &mdash; <span class=\"bad\">every mirror listed for {} client group{} is out: \
                 answering them from past their list</span>",
                svc.fallthrough_lists,
                if svc.fallthrough_lists == 1 { "" } else { "s" }
            );
        }
        if svc.fallthrough_answers > 0 {
            let _ = write!(
                h,
                " &middot; {} answers from past the client's list so far",
                svc.fallthrough_answers
            );
        }
        h.push_str("</p>");
        if !svc.releases.is_empty() {
            h.push_str("<table><tr><th>release</th><th>version</th><th>published</th><th>ready everywhere</th><th>error</th></tr>");
            for r in &svc.releases {
                let ready = match (&r.ready_at, r.waiting_seconds) {
                    (Some(at), _) => format!(
                        "{} ({:.0} s)",
                        esc(at),
                        r.ready_after_seconds.unwrap_or(0.0)
                    ),
                    (None, Some(w)) => format!("<span class=\"bad\">waiting {w:.0} s</span>"),
                    _ => "-".into(),
                };
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.path),
                    esc(r.version.as_deref().unwrap_or("-")),
                    esc(r.published.as_deref().unwrap_or("-")),
                    ready,
                    esc(r.error.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</table>");
        }
        h.push_str("<table><tr><th>mirror</th><th>state</th><th>routable</th><th>reason</th><th>lag</th><th>verified</th><th>last probe</th><th>latency</th></tr>");
        for m in &svc.mirrors {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"state\" style=\"color:{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.name),
                color(m.state.as_str()),
                m.state.as_str(),
                if m.routable { "yes" } else { "no" },
                esc(&m.reason),
                if m.lag_seconds > 0.0 {
                    format!("{:.0} s", m.lag_seconds)
                } else {
                    "-".into()
                },
                esc(&m.verified_versions.join(", ")),
                esc(m.last_probe.as_deref().unwrap_or("-")),
                m.latency_ms
                    .map(|l| format!("{l:.1} ms"))
                    .unwrap_or_else(|| "-".into())
            );
        }
        h.push_str("</table>");
    }
    redirects(&mut h, s);
    h.push_str("<p><a href=\"/status\">/status</a> &middot; <a href=\"/metrics\">/metrics</a> &middot; <code>/lookup?ip=ADDR</code></p></body></html>\n");
    h
}

/// The download redirectors: where `latest` points, and downloads by release and by mirror.
fn redirects(h: &mut String, s: &Status) {
    for r in &s.redirects {
        let _ = write!(
            h,
            "<h2>Redirector for {}</h2><p>HTTP {} &middot; HTTPS {} &middot; {} files &middot; {} withdrawn &middot; {} partial range requests</p>",
            esc(&r.service),
            esc(&r.listen.join(", ")),
            if r.tls_listen.is_empty() {
                "-".to_string()
            } else {
                esc(&r.tls_listen.join(", "))
            },
            r.files,
            r.withdrawn_files,
            r.partial_requests
        );
        if let Some(l) = &r.latest {
            let _ = match (&l.version, &l.since) {
                (Some(v), Some(since)) => write!(
                    h,
                    "<p><code>/{}/</code> &rarr; {} (<code>{}</code>) since {}</p>",
                    esc(&l.alias),
                    esc(v),
                    esc(l.release.as_deref().unwrap_or("")),
                    esc(since)
                ),
                _ => write!(
                    h,
                    "<p class=\"bad\"><code>/{}/</code>: no release is verified on every live mirror yet</p>",
                    esc(&l.alias)
                ),
            };
        }
        for (title, rows) in [
            ("release", &r.downloads_by_release),
            ("mirror", &r.downloads_by_mirror),
        ] {
            let _ = write!(h, "<table><tr><th>{title}</th><th>downloads</th></tr>");
            for c in rows {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&c.name),
                    c.count
                );
            }
            h.push_str("</table>");
        }
    }
}
