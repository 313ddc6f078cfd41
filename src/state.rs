//! The handles every part of herald shares: configuration, broker, the Laravel
//! broadcasts, presence, the shutdown signal and the connections it waits for.
//!
//! A leaf: it imports the parts it holds and nothing imports it back except to read
//! them, so the edges and `server` (which starts them) never form a cycle through it.

use crate::broker::Broker;
use crate::config::Config;
use crate::laravel::Broadcasts;
use crate::presence::{MemoryPresence, Presence};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything the edges share.
pub struct Shared {
    pub config: Config,
    pub broker: Arc<Broker>,
    /// Laravel broadcasts for the WebSocket edges, decoded once per publication.
    pub broadcasts: Arc<Broadcasts>,
    /// Who is present on which presence channel, for both edges and Pusher's watchlists.
    pub presence: Arc<dyn Presence>,
    /// Cancelled once, when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Every connection's task (RESP, HTTP, an upgraded WebSocket's, a polling
    /// session's): spawned here, so that shutdown can wait for them to say goodbye.
    pub connections: TaskTracker,
    pub started: Instant,
}

pub type State = Arc<Shared>;

impl Shared {
    /// The shared state of a server that has not started listening yet.
    pub fn new(config: Config) -> State {
        let broker = Arc::new(Broker::new());
        let broadcasts = Arc::new(Broadcasts::new(&config.redis_prefixes));
        broker.add_tap(broadcasts.clone());
        Arc::new(Shared {
            config,
            broker,
            broadcasts,
            presence: Arc::new(MemoryPresence::default()),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            started: Instant::now(),
        })
    }
}
