//! The world map: every country shaded by the mirror the live routing table answers its
//! clients with, mirrors as dots at their configured locations coloured by state.
//!
//! The rule (docs/monitoring.md): a country's IPv4 networks, as the geo data places them
//! (the client map counted them per candidate list when it was compiled), each get their
//! list's current answer; the country takes the mirror answering first for most of its
//! addresses (A, or AAAA for a list with no IPv4 mirror). So a drained or failed mirror's
//! countries turn to whoever the table answers with now. Outlines: `world.txt`, made by
//! `contrib/map/make-world.py` from Natural Earth (public domain).

use std::collections::HashMap;
use std::fmt::Write;

use super::{color, esc};
use crate::geo::Code;
use crate::routing::{Answer, ServiceRoute};
use crate::schema::{ServiceView, Status};

/// `XX <path>` lines after `#` comments; the frame is the script's (its header says so).
const WORLD: &str = include_str!("../world.txt");
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 394.0;
const LAT_TOP: f64 = 84.0;
const NO_DATA: &str = "#d0d4d9";
const ORIGIN: &str = "#24292f";
const NOTHING: &str = "#ffffff";

/// What a client network gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shade {
    Mirror(usize),
    /// The origin's addresses (fallback `origin`).
    Origin,
    /// SERVFAIL, or an empty answer.
    Nothing,
}

fn shade_of(a: &Answer) -> Shade {
    match (a.a_mirrors.first(), a.aaaa_mirrors.first()) {
        (Some(&m), _) | (None, Some(&m)) => Shade::Mirror(m),
        _ if !a.servfail && (!a.a.is_empty() || !a.aaaa.is_empty()) => Shade::Origin,
        _ => Shade::Nothing,
    }
}

/// Per country: the shade most of its IPv4 addresses get, and their share of its addresses.
fn countries(route: &ServiceRoute) -> HashMap<Code, (Shade, f64)> {
    let mut out = HashMap::new();
    let shares = &route.map.countries;
    let mut i = 0;
    while i < shares.len() {
        let country = shares[i].country;
        let mut sums: Vec<(Shade, u64)> = Vec::new();
        let mut total = 0u64;
        while i < shares.len() && shares[i].country == country {
            let c = shares[i];
            i += 1;
            let Some(answer) = route.answers.get(c.list as usize) else {
                continue;
            };
            let shade = shade_of(answer);
            total = total.saturating_add(c.addresses);
            match sums.iter_mut().find(|(s, _)| *s == shade) {
                Some((_, n)) => *n = n.saturating_add(c.addresses),
                None => sums.push((shade, c.addresses)),
            }
        }
        // Ties go to the shade seen first, the lower list id: stable from one render to the next.
        if let Some(&(shade, n)) = sums.iter().rev().max_by_key(|(_, n)| *n) {
            out.insert(country, (shade, n as f64 / total.max(1) as f64));
        }
    }
    out
}

/// A mirror's colour on the map, by its position in the service: distinct hues for the first
/// ten, then hues around the circle by the golden angle.
fn mirror_colour(pos: usize) -> String {
    const FIRST: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f",
        "#e15759", "#bab0ac",
    ];
    match FIRST.get(pos) {
        Some(c) => (*c).to_string(),
        None => format!("hsl({:.0},55%,60%)", (pos as f64 * 137.508) % 360.0),
    }
}

fn project(lat: f64, lon: f64) -> (f64, f64) {
    let k = WIDTH / 360.0;
    ((lon + 180.0) * k, ((LAT_TOP - lat) * k).clamp(0.0, HEIGHT))
}

pub(super) fn render(
    h: &mut String,
    s: &Status,
    table: &crate::routing::RoutingTable,
    chosen: Option<&str>,
) {
    let si = chosen
        .and_then(|c| s.services.iter().position(|v| v.name == c))
        .unwrap_or(0);
    let (Some(view), Some(route), Some(service)) = (
        s.services.get(si),
        table.services.get(si),
        table.config.services.get(si),
    ) else {
        return;
    };
    if service.name != view.name {
        // The table is not the one the status was built from: no map rather than a wrong one.
        return;
    }
    h.push_str("<h2>Answers by country</h2><nav id=\"services\">Service: ");
    for (i, v) in s.services.iter().enumerate() {
        let _ = write!(
            h,
            "<a href=\"/?service={0}\"{1}>{0}</a>",
            esc(&v.name),
            if i == si { " class=\"on\"" } else { "" }
        );
    }
    h.push_str("</nav>");
    let cfg = &table.config;
    let colour_of = |m: usize| -> String {
        service
            .mirrors
            .iter()
            .position(|&x| x == m)
            .map(mirror_colour)
            .unwrap_or_else(|| NO_DATA.to_string())
    };
    let name_of = |sh: Shade| -> String {
        match sh {
            Shade::Mirror(m) => cfg
                .mirrors
                .get(m)
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            Shade::Origin => "origin".into(),
            Shade::Nothing => "no answer".into(),
        }
    };
    let fill_of = |sh: Shade| -> String {
        match sh {
            Shade::Mirror(m) => colour_of(m),
            Shade::Origin => ORIGIN.into(),
            Shade::Nothing => NOTHING.into(),
        }
    };
    let by_country = countries(route);
    let mut drawn: Vec<Code> = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let _ = write!(
        h,
        "<svg class=\"map\" id=\"map\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Which mirror each country's clients get for {}\"><g stroke=\"#fff\" stroke-width=\".4\">",
        esc(&view.name)
    );
    for line in WORLD.lines().filter(|l| !l.starts_with('#')) {
        let Some((cc, d)) = line.split_once(' ') else {
            continue;
        };
        let code = Code::parse_country(cc);
        match code.and_then(|c| by_country.get(&c).map(|x| (c, x))) {
            Some((c, &(shade, share))) => {
                drawn.push(c);
                let name = name_of(shade);
                *counts.entry(name.clone()).or_default() += 1;
                let _ = write!(
                    h,
                    "<path data-cc=\"{cc}\" data-answer=\"{0}\" fill=\"{1}\" d=\"{d}\"><title>{cc}: {0} ({2:.0}% of its IPv4 addresses)</title></path>",
                    esc(&name),
                    fill_of(shade),
                    share * 100.0
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<path data-cc=\"{cc}\" fill=\"{NO_DATA}\" d=\"{d}\"><title>{cc}: no data</title></path>"
                );
            }
        }
    }
    h.push_str("</g><g stroke-width=\"2\">");
    for &mi in &service.mirrors {
        let Some(m) = cfg.mirrors.get(mi) else {
            continue;
        };
        let Some((lat, lon)) = m.location else {
            continue;
        };
        let state = state_of(s, view, &m.name);
        let (x, y) = project(lat, lon);
        let _ = write!(
            h,
            "<circle data-mirror=\"{0}\" data-state=\"{1}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{2}\" stroke=\"{3}\"><title>{0}: {1}</title></circle>",
            esc(&m.name),
            state,
            color(state),
            colour_of(mi)
        );
    }
    h.push_str("</g></svg><ul class=\"legend\" id=\"legend\">");
    for &mi in &service.mirrors {
        let Some(m) = cfg.mirrors.get(mi) else {
            continue;
        };
        let state = state_of(s, view, &m.name);
        let _ = write!(
            h,
            "<li data-mirror=\"{0}\" data-colour=\"{1}\"><span class=\"sw\" style=\"background:{1}\"></span>{0} \
             <span class=\"sw dot\" style=\"background:{2}\"></span>{3} &middot; {4}</li>",
            esc(&m.name),
            colour_of(mi),
            color(state),
            state,
            super::plural(
                counts.get(&m.name).copied().unwrap_or(0),
                "country",
                "countries"
            )
        );
    }
    for (name, fill) in [("origin", ORIGIN), ("no answer", NOTHING)] {
        if let Some(n) = counts.get(name) {
            let _ = write!(
                h,
                "<li data-answer=\"{name}\"><span class=\"sw\" style=\"background:{fill}\"></span>{name} &middot; {}</li>",
                super::plural(*n, "country", "countries")
            );
        }
    }
    let _ = write!(
        h,
        "<li><span class=\"sw\" style=\"background:{NO_DATA}\"></span>no client networks in the geo data</li></ul>"
    );
    let mut hidden: Vec<(&Code, &(Shade, f64))> = by_country
        .iter()
        .filter(|(c, _)| !drawn.contains(c))
        .collect();
    if !hidden.is_empty() {
        hidden.sort_by_key(|(c, _)| **c);
        h.push_str("<p id=\"undrawn\">Too small to draw at this scale: ");
        for (i, (c, (shade, _))) in hidden.iter().enumerate() {
            let _ = write!(
                h,
                "{}{c} &rarr; {}",
                if i > 0 { ", " } else { "" },
                esc(&name_of(*shade))
            );
        }
        h.push_str("</p>");
    }
}

fn state_of<'a>(s: &Status, view: &'a ServiceView, mirror: &str) -> &'a str {
    let state = view
        .mirrors
        .iter()
        .find(|m| m.name == mirror)
        .map_or("unknown", |m| m.state.as_str());
    super::shown_state(s, mirror, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outline_is_a_country_code_and_a_closed_path() {
        let mut n = 0;
        for line in WORLD.lines().filter(|l| !l.starts_with('#')) {
            let (cc, d) = line.split_once(' ').expect("code and path");
            assert!(Code::parse_country(cc).is_some(), "{cc}");
            assert!(d.starts_with('M') && d.ends_with('z'), "{cc}");
            n += 1;
        }
        assert!(n > 150, "{n} countries");
    }

    #[test]
    fn an_answer_is_shaded_by_its_first_mirror_else_origin_else_nothing() {
        let mut a = Answer {
            a_mirrors: vec![3, 1],
            aaaa_mirrors: vec![2],
            ..Answer::default()
        };
        assert_eq!(shade_of(&a), Shade::Mirror(3));
        a.a_mirrors.clear();
        assert_eq!(shade_of(&a), Shade::Mirror(2));
        let origin = Answer {
            a: vec![[192, 0, 2, 1]],
            ..Answer::default()
        };
        assert_eq!(shade_of(&origin), Shade::Origin);
        let servfail = Answer {
            servfail: true,
            ..Answer::default()
        };
        assert_eq!(shade_of(&servfail), Shade::Nothing);
        assert_eq!(shade_of(&Answer::default()), Shade::Nothing);
    }
}
