//! One second of the server's life as the chart shows it: the difference between two
//! readings of the process's counters.
//!
//! The counters ([`crate::metrics`], the broker's stats) only ever grow and are read
//! with relaxed loads from the sampler's task, never touched on the delivery path; a
//! sample is what grew between two readings, divided by the time between them. Pure,
//! so that the arithmetic is tested apart from the clock.

use crate::metrics::{HistogramSnapshot, REQUEST_BOUNDS};
use serde::Serialize;

/// The counters read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub published: u64,
    pub delivered: u64,
    pub slow_dropped: u64,
    pub auth: HistogramSnapshot,
    pub auth_refused: u64,
    pub recovered: u64,
}

impl Reading {
    /// The process's counters now, with `published` and `delivered` from the broker.
    pub fn now(published: u64, delivered: u64) -> Reading {
        use crate::metrics as m;
        Reading {
            published,
            delivered,
            slow_dropped: m::SLOW_CONSUMERS_DROPPED.get(),
            auth: m::AUTH_REQUEST_SECONDS.snapshot(),
            auth_refused: m::AUTH_REFUSED.get(),
            recovered: m::SOCKETIO_RECOVERED.get() + m::PUSHER_RESUMED.get(),
        }
    }
}

/// What happened between two readings: rates per second, and the auth requests that
/// ended in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Unix time of the later reading, in milliseconds.
    pub at_ms: u64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    /// Slow consumers disconnected in the interval (a count, not a rate).
    pub slow_dropped: u64,
    /// Auth-callback requests that ended in the interval, and how many of them refused.
    pub auth_requests: u64,
    pub auth_refused: u64,
    /// Their mean duration; None when there was none.
    pub auth_mean_ms: Option<f64>,
    /// The bound of the bucket the 95th percentile fell in (seconds' buckets in ms);
    /// None when there was none, `f64::INFINITY` shown as null past the last bound.
    pub auth_p95_ms: Option<f64>,
    pub recovered: u64,
}

impl Sample {
    /// What grew from `before` to `after`, `secs` seconds apart, ending at `at_ms`. A
    /// counter that went down (it cannot, but the sum of striped counters is read
    /// stripe by stripe) counts as no change.
    pub fn between(before: &Reading, after: &Reading, secs: f64, at_ms: u64) -> Sample {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let per_s = |a, b| match secs > 0.0 {
            true => d(a, b) as f64 / secs,
            false => 0.0,
        };
        let auth_requests = d(before.auth.count, after.auth.count);
        let auth_mean_ms = (auth_requests > 0).then(|| {
            d(before.auth.sum_micros, after.auth.sum_micros) as f64 / auth_requests as f64 / 1e3
        });
        let buckets: Vec<u64> = (before.auth.buckets.iter().zip(&after.auth.buckets))
            .map(|(a, b)| d(*a, *b))
            .collect();
        Sample {
            at_ms,
            published_per_s: per_s(before.published, after.published),
            delivered_per_s: per_s(before.delivered, after.delivered),
            slow_dropped: d(before.slow_dropped, after.slow_dropped),
            auth_requests,
            auth_refused: d(before.auth_refused, after.auth_refused),
            auth_mean_ms,
            auth_p95_ms: percentile_bound(&buckets, auth_requests, 0.95).filter(|b| b.is_finite()),
            recovered: d(before.recovered, after.recovered),
        }
    }
}

/// The upper bound, in milliseconds, of the bucket holding quantile `q` of `count`
/// observations spread over `buckets` (per bucket, not cumulative; the rest are past the
/// last bound: infinity). None with no observation.
pub fn percentile_bound(buckets: &[u64], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bound, n) in REQUEST_BOUNDS.iter().zip(buckets) {
        seen += n;
        if seen >= rank {
            return Some(bound * 1e3);
        }
    }
    Some(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_what_grew_per_second() {
        let before = Reading {
            published: 100,
            delivered: 1000,
            ..Reading::default()
        };
        let after = Reading {
            published: 300,
            delivered: 5000,
            slow_dropped: 2,
            recovered: 1,
            ..Reading::default()
        };
        let s = Sample::between(&before, &after, 2.0, 42);
        assert_eq!(s.published_per_s, 100.0);
        assert_eq!(s.delivered_per_s, 2000.0);
        assert_eq!((s.slow_dropped, s.recovered, s.at_ms), (2, 1, 42));
        assert_eq!(
            (s.auth_requests, s.auth_mean_ms, s.auth_p95_ms),
            (0, None, None)
        );
    }

    #[test]
    fn a_counter_read_lower_is_no_change_and_no_time_is_no_rate() {
        let before = Reading {
            published: 10,
            ..Reading::default()
        };
        let s = Sample::between(&before, &Reading::default(), 1.0, 0);
        assert_eq!(s.published_per_s, 0.0);
        let after = Reading {
            published: 20,
            ..Reading::default()
        };
        assert_eq!(
            Sample::between(&before, &after, 0.0, 0).published_per_s,
            0.0
        );
    }

    #[test]
    fn auth_latency_of_the_interval_only() {
        let mut before = Reading::default();
        before.auth.count = 5;
        before.auth.sum_micros = 5_000_000;
        before.auth.buckets[7] = 5; // five slow ones (<= 1 s) before the interval
        let mut after = before;
        after.auth.count = 5 + 20;
        after.auth.sum_micros = 5_000_000 + 20 * 3_000;
        after.auth.buckets[0] += 19; // <= 5 ms
        after.auth.buckets[2] += 1; // <= 25 ms
        after.auth_refused = 3;
        let s = Sample::between(&before, &after, 1.0, 0);
        assert_eq!(s.auth_requests, 20);
        assert_eq!(s.auth_refused, 3);
        assert_eq!(s.auth_mean_ms, Some(3.0));
        assert_eq!(s.auth_p95_ms, Some(5.0), "19 of 20 within 5 ms");
    }

    #[test]
    fn the_percentile_bucket() {
        let mut b = [0u64; REQUEST_BOUNDS.len()];
        b[1] = 50; // <= 10 ms
        b[4] = 50; // <= 100 ms
        assert_eq!(percentile_bound(&b, 100, 0.5), Some(10.0));
        assert_eq!(percentile_bound(&b, 100, 0.95), Some(100.0));
        assert_eq!(
            percentile_bound(&b, 101, 1.0),
            Some(f64::INFINITY),
            "one past 10 s"
        );
        assert_eq!(percentile_bound(&b, 0, 0.95), None);
    }
}
