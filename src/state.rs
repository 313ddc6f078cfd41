//! The handles every part of herald shares: configuration, broker, the Redis key
//! prefixes RESP publications carry, the shutdown signal.
//!
//! A leaf: it imports the parts it holds and nothing imports it back except to read
//! them, so the edges and `server` (which starts them) never form a cycle through it.

use crate::broker::{Broker, MemoryBroker};
use crate::config::Config;
use crate::laravel::Prefixes;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Everything the edges share.
pub struct Shared {
    pub config: Config,
    /// Every publication passes through it (a trait object: one indirect call per
    /// publication, so that a Redis-backed broker can take its place).
    pub broker: Arc<dyn Broker>,
    /// The Redis key prefixes stripped from RESP publications' channel names.
    pub prefixes: Prefixes,
    /// Cancelled once, when the server begins to shut down.
    pub shutdown: CancellationToken,
    pub started: Instant,
}

pub type State = Arc<Shared>;

impl Shared {
    /// The shared state of a server that has not started listening yet.
    pub fn new(config: Config) -> State {
        Arc::new(Shared {
            broker: Arc::new(MemoryBroker::new()),
            prefixes: Prefixes::new(&config.redis_prefixes),
            config,
            shutdown: CancellationToken::new(),
            started: Instant::now(),
        })
    }
}
