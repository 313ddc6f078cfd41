//! The dashboard's clock: once a second, read the counters into the ring of samples,
//! and, while dashboards are open, gather the figures and push one update to each.
//!
//! One task for all dashboards: the update is encoded once and its bytes shared by
//! every viewer's outbox (a viewer that cannot keep up is dropped by its outbox's
//! limits, as any slow subscriber). Locks are held only to push a sample or to copy the
//! list of outboxes.

use super::sample::{Reading, Sample};
use super::Dashboard;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);

fn unix_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

fn reading(d: &Dashboard) -> Reading {
    let stats = d.state.broker.stats();
    Reading::now(stats.published.get(), stats.delivered.get())
}

/// Sample until shutdown.
pub async fn run(d: Arc<Dashboard>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let (mut before, mut at) = (reading(&d), Instant::now());
    loop {
        tokio::select! {
            _ = d.state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (now, after) = (Instant::now(), reading(&d));
        let sample = Sample::between(&before, &after, (now - at).as_secs_f64(), unix_ms());
        (before, at) = (after, now);
        d.samples.lock().push(sample);
        if d.viewer_count() > 0 {
            d.broadcast(update(&d, &sample));
        }
    }
}

/// `{"type":"tick","sample":…,"figures":…}` as one WebSocket frame.
fn update(d: &Dashboard, sample: &Sample) -> Bytes {
    let figures = d.sources().figures();
    let body = serde_json::json!({"type": "tick", "sample": sample, "figures": figures});
    crate::ws::frame::text(body.to_string().as_bytes())
}

/// `{"type":"hello",…}`: what a dashboard gets on connecting: the samples so far, the
/// namespaces it can pick, and the figures now.
pub fn hello(d: &Dashboard) -> Bytes {
    let samples: Vec<Sample> = d.samples.lock().iter().copied().collect();
    let c = d.state.config();
    let body = serde_json::json!({
        "type": "hello",
        "version": env!("CARGO_PKG_VERSION"),
        "interval_ms": EVERY.as_millis() as u64,
        "history": super::HISTORY,
        "samples": samples,
        "namespaces": d.namespaces(),
        "cluster": c.cluster.is_some(),
        "edges": {"socketio": d.socketio.is_some(), "pusher": d.pusher.is_some()},
        "figures": d.sources().figures(),
    });
    crate::ws::frame::text(body.to_string().as_bytes())
}
