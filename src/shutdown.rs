//! The shutdown signal, with how long connections get once it is given.
//!
//! Every connection task watches one token; when it is cancelled, a connection writes
//! what it owes and its protocol's goodbye, and has the grace period
//! (`--shutdown-grace-seconds`) for that. [`crate::server::Running::stopped`] waits that
//! long for them, then closes the rest. One value carries both, so no edge can pick a
//! bound of its own.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    grace: Duration,
    /// Set when a connection's last write was given up at the end of its grace period.
    cut: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new(grace: Duration) -> Shutdown {
        Shutdown {
            token: CancellationToken::new(),
            grace,
            cut: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How long connections get once shutdown begins.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The latest a connection that sees shutdown now may finish its last write.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.grace
    }

    /// A connection's last write did not finish by its deadline and was given up: the
    /// connection was cut, not drained (its task may still end inside the server's own
    /// wait, which starts a moment later).
    pub fn cut_one(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Whether any connection was cut at its deadline.
    pub fn any_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

/// The token itself: `cancel`, `cancelled`, `is_cancelled`.
impl Deref for Shutdown {
    type Target = CancellationToken;

    fn deref(&self) -> &CancellationToken {
        &self.token
    }
}
