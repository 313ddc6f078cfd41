//! Waiting before reconnecting to Redis: the backplane's connections and the cluster
//! presence's back off alike, doubling from [`FIRST`] up to [`MAX`].

use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const FIRST: Duration = Duration::from_millis(100);
pub const MAX: Duration = Duration::from_secs(5);

/// Wait `backoff` (or until `stop`), then double it up to [`MAX`]. False on `stop`.
pub async fn back_off(backoff: &mut Duration, stop: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX);
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}
