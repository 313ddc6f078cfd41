//! The handles every part of herald shares: configuration, broker, the Redis key
//! prefixes RESP publications carry, presence, the shutdown signal and the connections
//! it waits for.
//!
//! A leaf: it imports the parts it holds and nothing imports it back except to read
//! them, so the edges and `server` (which starts them) never form a cycle through it.

use crate::broker::{Broker, MemoryBroker, RedisBroker};
use crate::config::Config;
use crate::health::Health;
use crate::laravel::Prefixes;
use crate::presence::{MemoryPresence, Presence};
use crate::shutdown::Shutdown;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::task::TaskTracker;

/// Everything the edges share.
pub struct Shared {
    /// The configuration in force: SIGHUP swaps in what reloads ([`Config::reloaded`]).
    config: ArcSwap<Config>,
    /// Every publication passes through it (a trait object: one indirect call per
    /// publication, so that a Redis-backed broker can take its place).
    pub broker: Arc<dyn Broker>,
    /// The Redis key prefixes stripped from RESP publications' channel names.
    pub prefixes: Prefixes,
    /// Who is present on which presence channel, for both edges and Pusher's watchlists.
    pub presence: Arc<dyn Presence>,
    /// Cancelled once, when the server begins to shut down.
    pub shutdown: Shutdown,
    /// Every connection's task (RESP, HTTP, an upgraded WebSocket's, a polling
    /// session's): spawned here, so that shutdown can wait for them to say goodbye.
    pub connections: TaskTracker,
    pub started: Instant,
    /// The parts `/healthz` asks whether they are degraded (each listener registers one).
    pub health: Health,
}

pub type State = Arc<Shared>;

impl Shared {
    /// The configuration in force now (read where it is used, so that what a reload
    /// changes applies from the next use on).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Put `config` in force (a reload).
    pub fn set_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// The shared state of a server that has not started listening yet.
    /// With `--cluster`, the broker joins the other nodes through Redis (its tasks are
    /// spawned here, so this runs inside the runtime) and `/healthz` watches it.
    pub fn new(config: Config) -> State {
        let shutdown = Shutdown::new(config.shutdown_grace);
        let health = Health::default();
        let local = MemoryBroker::with_history(config.history);
        let presence: Arc<dyn Presence> = match &config.cluster {
            Some(url) => {
                let (presence, link) = crate::presence::start_cluster(
                    url,
                    crate::config::without_credentials(url),
                    config.cluster_node_ttl,
                    (*shutdown).clone(),
                );
                health.register("presence", link);
                presence
            }
            None => Arc::new(MemoryPresence::default()),
        };
        let broker: Arc<dyn Broker> = match &config.cluster {
            Some(url) => {
                let broker = RedisBroker::start(
                    url,
                    local,
                    config.recovery_limits.window,
                    (*shutdown).clone(),
                );
                health.register("backplane", broker.health());
                broker
            }
            None => Arc::new(local),
        };
        Arc::new(Shared {
            broker,
            prefixes: Prefixes::new(&config.redis_prefixes),
            shutdown,
            config: ArcSwap::from_pointee(config),
            presence,
            connections: TaskTracker::new(),
            started: Instant::now(),
            health,
        })
    }
}
