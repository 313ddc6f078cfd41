//! The shutdown signal, with how long connections get once it is given.
//!
//! Every connection task watches one token; when it is cancelled, a connection writes
//! what it owes and its protocol's goodbye, and has the grace period
//! (`--shutdown-grace-seconds`) for that. [`crate::server::Running::stopped`] waits that
//! long for them, then closes the rest. One value carries both, so no edge can pick a
//! bound of its own.

use std::ops::Deref;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    grace: Duration,
}

impl Shutdown {
    pub fn new(grace: Duration) -> Shutdown {
        Shutdown {
            token: CancellationToken::new(),
            grace,
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
}

/// The token itself: `cancel`, `cancelled`, `is_cancelled`.
impl Deref for Shutdown {
    type Target = CancellationToken;

    fn deref(&self) -> &CancellationToken {
        &self.token
    }
}
