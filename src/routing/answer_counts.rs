//! DNS answers served, by service, mirror (or the origin) and client continent.

use std::sync::Arc;

use super::{Answer, CONTINENTS};
use crate::config::Config;
use crate::metrics::Counters;

/// Answers served, by service, mirror (or the origin) and client continent, and per service
/// those that came from past the client's own list. Kept through reloads that leave the
/// service and mirror names alone, and carried over by name otherwise
/// ([`AnswerCounters::continue_from`]), so that they only ever grow.
#[derive(Debug)]
pub struct AnswerCounters {
    services: Vec<String>,
    mirrors: Vec<String>,
    /// [service][mirror, then the origin][continent], then [service] for fallthrough; sharded
    /// per thread.
    counts: Counters,
}

impl AnswerCounters {
    pub fn new(config: &Config) -> Self {
        let services: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
        let mirrors: Vec<String> = config.mirrors.iter().map(|m| m.name.clone()).collect();
        let n = services.len() * ((mirrors.len() + 1) * CONTINENTS.len() + 1);
        AnswerCounters {
            services,
            mirrors,
            counts: Counters::new(n),
        }
    }

    /// The counters for `config` after a reload: `old` itself when the service and mirror
    /// names are the same, else new ones holding `old`'s counts under the names that remain.
    /// An answer counted in `old` between the copy and the table swap is the only loss.
    pub fn continue_from(old: &Arc<AnswerCounters>, config: &Config) -> Arc<AnswerCounters> {
        let new = AnswerCounters::new(config);
        if new.services == old.services && new.mirrors == old.mirrors {
            return old.clone();
        }
        for (si, m, cont, v) in old.snapshot() {
            let Some(nsi) = new.services.iter().position(|s| *s == old.services[si]) else {
                continue;
            };
            let nm = match m {
                Some(m) => match new.mirrors.iter().position(|x| *x == old.mirrors[m]) {
                    Some(nm) => Some(nm),
                    None => continue,
                },
                None => None,
            };
            new.counts.add(new.slot(nsi, nm, cont), v);
        }
        for (si, name) in old.services.iter().enumerate() {
            if let Some(nsi) = new.services.iter().position(|s| s == name) {
                new.counts
                    .add(new.fallthrough_slot(nsi), old.fallthrough(si));
            }
        }
        Arc::new(new)
    }

    fn slot(&self, service: usize, mirror: Option<usize>, continent: usize) -> usize {
        let m = mirror.unwrap_or(self.mirrors.len());
        (service * (self.mirrors.len() + 1) + m) * CONTINENTS.len() + continent
    }

    fn fallthrough_slot(&self, service: usize) -> usize {
        self.services.len() * (self.mirrors.len() + 1) * CONTINENTS.len() + service
    }

    /// Counts one answer of service `si` from `ans` to a client on `continent`: one per
    /// mirror answered with (or the origin when no mirror is), and one fallthrough when the
    /// family's mirrors came from past the client's own list. The one place an answer is
    /// counted, for the fast and the full path alike.
    #[inline]
    pub fn record(&self, si: usize, ans: &Answer, v6: bool, continent: usize) {
        let (mirrors, past) = if v6 {
            (&ans.aaaa_mirrors, ans.aaaa_fallthrough)
        } else {
            (&ans.a_mirrors, ans.a_fallthrough)
        };
        if mirrors.is_empty() {
            self.counts.add(self.slot(si, None, continent), 1);
        }
        for &m in mirrors {
            self.counts.add(self.slot(si, Some(m), continent), 1);
        }
        if past {
            self.counts.add(self.fallthrough_slot(si), 1);
        }
    }

    /// Answers of service `si` that came from past the client's own list.
    pub fn fallthrough(&self, si: usize) -> u64 {
        self.counts.get(self.fallthrough_slot(si))
    }

    /// Non-zero counts as (service index, mirror index or None for origin, continent, count).
    pub fn snapshot(&self) -> Vec<(usize, Option<usize>, usize, u64)> {
        let per_service = (self.mirrors.len() + 1) * CONTINENTS.len();
        (0..self.services.len() * per_service)
            .filter_map(|i| {
                let v = self.counts.get(i);
                (v > 0).then(|| {
                    let s = i / per_service;
                    let m = (i % per_service) / CONTINENTS.len();
                    let cont = i % CONTINENTS.len();
                    (s, (m < self.mirrors.len()).then_some(m), cont, v)
                })
            })
            .collect()
    }
}
