//! The DNS side: wire parsing, the answer logic, response assembly, and the UDP/TCP listeners.
//!
//! `answer::handle` is the one function from query bytes to response bytes; the listeners in
//! `server` only move bytes and never decide anything about the answer.

pub mod answer;
pub mod message;
pub mod server;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters kept by the DNS path (read by the monitoring endpoint).
#[derive(Debug, Default)]
pub struct Stats {
    pub udp_queries: AtomicU64,
    pub tcp_queries: AtomicU64,
    pub ecs: AtomicU64,
    pub unknown_location: AtomicU64,
    pub truncated: AtomicU64,
    pub malformed: AtomicU64,
    pub dropped: AtomicU64,
    /// By rcode 0..=23 (BADVERS is 16); anything larger lands in the last slot.
    pub rcodes: [AtomicU64; 24],
}

impl Stats {
    pub fn count_rcode(&self, rcode: u16) {
        let i = (rcode as usize).min(self.rcodes.len() - 1);
        self.rcodes[i].fetch_add(1, Relaxed);
    }
}
