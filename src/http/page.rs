//! `GET /`: a server-rendered status page an on-call person can read at a glance. No
//! JavaScript and nothing fetched from elsewhere; it refreshes itself every 10 seconds.
//!
//! From the top: warnings (a client group answered from past its list, a fallback in force),
//! a world map of what the live routing table answers ([`map`]), a form for `/lookup`, each
//! release's rollout ([`timeline`]), the services, the mirrors once with a column per service
//! ([`mirrors`]), and the redirectors. Everything but the map comes from the `/status`
//! document; the map needs the table itself, which `/status` does not carry per country.

mod map;
mod mirrors;
mod timeline;

use std::fmt::Write;
use std::time::SystemTime;

use crate::routing::RoutingTable;
use crate::schema::Status;

pub(crate) fn esc(s: &str) -> String {
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

/// A mirror's state as the page shows it: "drained" while an on-call drain is in force, which
/// the probes' state does not show (the mirror is still probed), so that a person looking at
/// the dots or the table sees why it is out.
fn shown_state<'a>(s: &Status, mirror: &str, state: &'a str) -> &'a str {
    let drained =
        s.admin.mirrors.iter().any(|a| {
            a.in_force && a.mirror == mirror && a.action == crate::schema::AdminAction::Drain
        });
    if drained { "drained" } else { state }
}

/// A `/status` time as "N s ago" (or min, h, days), the exact time on hover. A time that does
/// not parse is shown as it is.
fn ago(t: &str, now: SystemTime) -> String {
    let Ok(at) = humantime::parse_rfc3339(t) else {
        return esc(t);
    };
    let (secs, future) = match now.duration_since(at) {
        Ok(d) => (d.as_secs(), false),
        Err(e) => (e.duration().as_secs(), true),
    };
    let span = span(secs as f64);
    let text = if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    };
    format!("<time datetime=\"{0}\" title=\"{0}\">{text}</time>", esc(t))
}

/// A duration as a person reads it: seconds up to 2 minutes, then minutes, hours, days.
fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1em;color:#1f2328;max-width:1300px}\
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.2em 0 .4em}\
.scroll{overflow-x:auto;margin:.5em 0 1em}\
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.state{font-weight:600}.bad{color:#cf222e;font-weight:600}code{font-size:13px}\
.warn{background:#fff1e5;border:2px solid #cf222e;border-radius:6px;padding:.5em .8em;margin:.5em 0}\
.warn p{margin:.2em 0}\
nav a{margin-right:.8em;display:inline-block}nav a.on{font-weight:700;text-decoration:none;color:#1f2328}\
svg.map{width:100%;max-width:1100px;height:auto;background:#eaf2f8;border:1px solid #d0d7de;display:block}\
.legend{display:flex;flex-wrap:wrap;gap:.3em 1em;margin:.4em 0;padding:0;list-style:none}\
.sw{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.3em;border:1px solid #8c959f}\
.dot{border-radius:50%}\
form{margin:.5em 0 1em}form input,form select,form button{font:inherit;margin:.2em .4em .2em 0}\
ol.tl{list-style:none;padding:0;margin:.3em 0 1em}ol.tl li{padding:.15em 0 .15em .8em;border-left:3px solid #d0d7de}\
ol.tl li.done{border-color:#1a7f37}.tl li,.warn p{overflow-wrap:anywhere}td.reason{min-width:14em;overflow-wrap:anywhere}table.nw td,table.nw th{white-space:nowrap}ol.tl li.hold{border-color:#cf222e}\
";

/// Renders the page. `service`: the service whose answers the map shows (`?service=NAME`;
/// the first one when absent or unknown). `table` is the one `s` was built from.
pub fn render(s: &Status, table: &RoutingTable, service: Option<&str>, now: SystemTime) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>mirrordns status</title><style>{STYLE}</style></head><body><h1>mirrordns {}</h1>",
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
        ago(&s.config.loaded_at, now),
        s.routing.generation,
        ago(&s.routing.swapped_at, now),
        s.dns.queries
    );
    warnings(&mut h, s, now);
    map::render(&mut h, s, table, service);
    lookup_form(&mut h, s, service);
    timeline::render(&mut h, s, now);
    services(&mut h, s);
    mirrors::render(&mut h, s, now);
    redirects(&mut h, s, now);
    h.push_str("<p><a href=\"/status\">/status</a> &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/readyz\">/readyz</a></p></body></html>\n");
    h
}

/// What needs someone now, above everything else: clients answered by a fallback or from
/// past their own list, and a rejected reload.
fn warnings(h: &mut String, s: &Status, now: SystemTime) {
    let mut lines = Vec::new();
    for svc in &s.services {
        if let Some(f) = &svc.fallback_in_force {
            lines.push(format!(
                "<b>{}</b>: no mirror is routable; every client is answered by the fallback <b>{}</b>.",
                esc(&svc.name),
                esc(f)
            ));
        }
        if svc.fallthrough_lists > 0 {
            lines.push(format!(
                "<b>{}</b>: every mirror listed for {} is out; they are answered from past their list.",
                esc(&svc.name),
                plural(svc.fallthrough_lists, "client group", "client groups")
            ));
        }
    }
    if let Some(e) = &s.config.last_reload_error {
        lines.push(format!(
            "Last reload rejected {}: <code>{}</code>",
            ago(&e.at, now),
            esc(&e.error)
        ));
    }
    if lines.is_empty() {
        return;
    }
    h.push_str("<div class=\"warn\" role=\"alert\" id=\"warnings\">");
    for l in lines {
        let _ = write!(h, "<p>&#9888; {l}</p>");
    }
    h.push_str("</div>");
}

/// `/lookup` takes `ip` and an optional `name` (the service); the map's service is preselected.
fn lookup_form(h: &mut String, s: &Status, chosen: Option<&str>) {
    h.push_str(
        "<form action=\"/lookup\" method=\"get\" id=\"lookup\"><label>Why this answer? client address \
         <input name=\"ip\" required placeholder=\"81.2.69.1\" size=\"18\"></label><label> for \
         <select name=\"name\">",
    );
    for svc in &s.services {
        let on = if chosen == Some(svc.name.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(h, "<option{on}>{}</option>", esc(&svc.name));
    }
    h.push_str("</select></label> <button type=\"submit\">Look up</button></form>");
}

fn services(h: &mut String, s: &Status) {
    h.push_str(
        "<h2>Services</h2><div class=\"scroll\"><table class=\"nw\"><tr><th>service</th><th>policy</th><th>ttl</th>\
         <th>answers</th><th>fallback</th><th>now</th><th>answered from past their list</th></tr>",
    );
    for svc in &s.services {
        let now = match (&svc.fallback_in_force, svc.fallthrough_lists) {
            (Some(f), _) => format!("<span class=\"bad\">fallback {} in force</span>", esc(f)),
            (None, 0) => "mirrors".to_string(),
            (None, n) => format!(
                "<span class=\"bad\">{} past their list</span>",
                plural(n, "client group", "client groups")
            ),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{now}</td><td>{} answers since start</td></tr>",
            esc(&svc.name),
            esc(&svc.policy),
            svc.ttl,
            svc.answers,
            esc(&svc.fallback),
            svc.fallthrough_answers
        );
    }
    h.push_str("</table></div>");
}

/// The download redirectors: where `latest` points, and downloads by release and by mirror.
fn redirects(h: &mut String, s: &Status, now: SystemTime) {
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
                    ago(since, now)
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
            let _ = write!(
                h,
                "<div class=\"scroll\"><table><tr><th>{title}</th><th>downloads</th></tr>"
            );
            for c in rows {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&c.name),
                    c.count
                );
            }
            h.push_str("</table></div>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_read_as_ago_with_the_exact_time_on_hover() {
        let at = "2026-12-01T09:00:00.000Z";
        let t = humantime::parse_rfc3339(at).unwrap();
        assert_eq!(
            ago(at, t + Duration::from_secs(42)),
            "<time datetime=\"2026-12-01T09:00:00.000Z\" title=\"2026-12-01T09:00:00.000Z\">42 s ago</time>"
        );
        assert!(ago(at, t + Duration::from_secs(600)).contains(">10 min ago<"));
        assert!(ago(at, t + Duration::from_secs(3 * 3600)).contains(">3 h ago<"));
        assert!(ago(at, t - Duration::from_secs(5)).contains(">in 5 s<"));
        assert_eq!(ago("<never>", t), "&lt;never&gt;");
    }
}
