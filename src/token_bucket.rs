//! A token bucket: a burst, then a steady rate. It bounds how fast one connection may
//! make the server work on its behalf (ask the app to authorize a channel, subscribe to
//! a channel, which in a cluster costs Redis round trips) without refusing what real
//! pages do in a burst (a reconnect subscribing to every channel again at once).

use std::time::Instant;

/// A bucket's size and how many tokens come back per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// 0: no limit.
    pub burst: u32,
    pub per_second: u32,
}

/// One connection's bucket: the tokens left and when they were counted (None: full).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket(Option<(f64, Instant)>);

impl Rate {
    /// Take a token from `bucket` at `now`; false if it has none left (nothing is taken).
    pub fn take(self, bucket: &mut Bucket, now: Instant) -> bool {
        if self.burst == 0 {
            return true;
        }
        let burst = f64::from(self.burst);
        let (tokens, since) = bucket.0.unwrap_or((burst, now));
        let back = f64::from(self.per_second) * now.saturating_duration_since(since).as_secs_f64();
        let tokens = (tokens + back).min(burst);
        let granted = tokens >= 1.0;
        bucket.0 = Some((if granted { tokens - 1.0 } else { tokens }, now));
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let rate = Rate {
            burst: 3,
            per_second: 2,
        };
        let (mut bucket, t) = (Bucket::default(), Instant::now());
        let taken: Vec<bool> = (0..4).map(|_| rate.take(&mut bucket, t)).collect();
        assert_eq!(taken, [true, true, true, false]);
        let half = t + Duration::from_millis(500);
        assert!(rate.take(&mut bucket, half), "one back after half a second");
        assert!(!rate.take(&mut bucket, half));
        let later = half + Duration::from_secs(60);
        let taken = (0..4).filter(|_| rate.take(&mut bucket, later)).count();
        assert_eq!(taken, 3, "never more than the burst");
        let off = Rate {
            burst: 0,
            per_second: 0,
        };
        assert!((0..1000).all(|_| off.take(&mut bucket, t)), "0: no limit");
    }
}
