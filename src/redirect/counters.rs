//! What the redirector counts for the process's life: every response by status code and
//! every refusal by reason. Downloads are counted per config, in
//! [`crate::routing::download_counts`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::request::Reject;

/// Status codes counted one by one; anything else is counted as "other".
pub const CODES: [u16; 10] = [200, 302, 400, 404, 405, 410, 414, 421, 500, 503];

/// For the process's life: responses by status code and refusals by reason.
#[derive(Debug, Default)]
pub struct RedirectStats {
    /// Indexed like [`CODES`], then "other".
    responses: [AtomicU64; CODES.len() + 1],
    rejected: [AtomicU64; Reject::ALL.len()],
    /// Connections closed to make room at `max-connections` (the one idle longest).
    pub evictions: AtomicU64,
    /// Connections closed for sitting idle past `idle-timeout` (no request, or a response
    /// the client did not read).
    pub idle_closed: AtomicU64,
    /// Connections closed because a request head was still incomplete `idle-timeout` after
    /// the previous response (or the accept): a head trickling in, slowloris.
    pub header_timeouts: AtomicU64,
    /// Connections closed after a 400 or 431 for a request head that could not be read.
    pub malformed: AtomicU64,
}

impl RedirectStats {
    pub fn response(&self, code: u16) {
        let i = CODES.iter().position(|c| *c == code).unwrap_or(CODES.len());
        self.responses[i].fetch_add(1, Relaxed);
    }

    pub fn reject(&self, r: Reject) {
        if let Some(i) = Reject::ALL.iter().position(|x| *x == r) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// (code label, count) for every code, "other" last.
    pub fn responses(&self) -> Vec<(String, u64)> {
        CODES
            .iter()
            .map(|c| c.to_string())
            .chain(std::iter::once("other".to_string()))
            .zip(self.responses.iter().map(|a| a.load(Relaxed)))
            .collect()
    }

    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        Reject::ALL
            .iter()
            .map(|r| r.as_str())
            .zip(self.rejected.iter().map(|a| a.load(Relaxed)))
            .collect()
    }
}
