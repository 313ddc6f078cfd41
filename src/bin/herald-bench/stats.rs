//! Counting what arrived, latency on sampled connections, and a process's CPU and RSS.

use hdrhistogram::Histogram;
use herald::metrics::Counter;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared by every connection of one subscriber process.
pub struct Tally {
    pub received: Counter,
    pub warm: Counter,
    pub gaps: Counter,
    pub closed: Counter,
    pub errors: Mutex<Vec<String>>,
    latency_us: Mutex<Histogram<u64>>,
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            received: Counter::new(),
            warm: Counter::new(),
            gaps: Counter::new(),
            closed: Counter::new(),
            errors: Mutex::new(Vec::new()),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()),
        }
    }

    pub fn note_error(&self, e: &str) {
        let mut errs = self.errors.lock();
        if errs.len() < 5 {
            errs.push(e.to_string());
        }
    }

    pub fn record_latency(&self, sent_us: u64) {
        let lat = now_us().saturating_sub(sent_us).max(1);
        let _ = self.latency_us.lock().record(lat);
    }

    pub fn histogram(&self) -> Histogram<u64> {
        self.latency_us.lock().clone()
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// One subscriber process's result, sent to the coordinator as a JSON line.
#[derive(Serialize, Deserialize, Default)]
pub struct SubReport {
    pub connected: u64,
    pub failed: u64,
    pub received: u64,
    /// Warm-up deliveries: not in `received`, but the server and the bench did the work.
    #[serde(default)]
    pub warm: u64,
    pub gaps: u64,
    pub closed: u64,
    pub errors: Vec<String>,
    /// hdrhistogram's V2 serialisation, base64.
    pub latency: String,
    /// This process's CPU time from READY (connections made) to the end.
    pub cpu_ms: u64,
}

/// CPU time (user + system, ms) and RSS (KiB) of a process, from /proc.
pub fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Linux reports CPU in clock ticks of 1/100 s.
    Some((ticks * 10, rss))
}
