//! The live dashboard at `/dashboard`: what this herald is doing, updated every second
//! over a WebSocket, and a debug console. Off unless `--dashboard-token` is set.
//!
//! An operator at an edge box with no internet must be able to see connections by
//! protocol and app, channels, presence, the publication and delivery rates, slow
//! consumers, the auth callback, webhooks and recoveries, without a metrics stack. So
//! the page and its script are in the binary ([`assets`]), and the figures come from
//! what herald already counts: one sampler task reads the counters once a second into a
//! ring of [`HISTORY`] samples ([`sampler`]), and only while a dashboard is open does it
//! gather the rest ([`figures`]) and push one encoded update to each open dashboard's
//! outbox. Nothing here runs on the delivery path but the console's watcher, a
//! subscriber like any edge ([`console`]).
//!
//! - [`token`]: who may see it (constant-time, a cookie after the first visit).
//! - [`routes()`]: the page, its assets and the WebSocket, behind the token.
//! - [`nodes`]: with `--cluster`, every node's summary, asked through the backplane.
//! - [`socket`]: one open dashboard: herald's own WebSocket ([`crate::ws`]) with the
//!   limits the other edges have, and the console's commands.

mod assets;
mod console;
mod figures;
mod nodes;
mod ring;
mod routes;
mod sample;
mod sampler;
mod socket;
mod token;

use crate::outbox::Outbox;
use crate::pusher::apps::Apps;
use crate::socketio;
use crate::state::State;
use parking_lot::Mutex;
use ring::Ring;
use sample::Sample;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use routes::routes;

/// Seconds of samples kept for the chart (five minutes).
pub const HISTORY: usize = 300;

/// Dashboards open at once; past it a new one is refused (503).
pub const MAX_VIEWERS: usize = 16;

/// The dashboard of one running herald.
pub struct Dashboard {
    state: State,
    socketio: Option<Arc<socketio::Edge>>,
    pusher: Option<Arc<Apps>>,
    token: token::Token,
    /// The last [`HISTORY`] seconds, written by the sampler once a second.
    samples: Mutex<Ring<Sample>>,
    /// Each open dashboard's outbox, by its key: where updates are pushed.
    viewers: Mutex<HashMap<u64, Arc<Outbox>>>,
    next_viewer: AtomicU64,
    /// This node's name (host and process id) and an id of this run, for the cluster's
    /// list of nodes.
    node: String,
    run: u32,
}

impl Dashboard {
    /// The dashboard, its sampler started (it ends at shutdown); None without a token.
    fn start(
        state: &State,
        socketio: Option<Arc<socketio::Edge>>,
        pusher: Option<Arc<Apps>>,
    ) -> Option<Arc<Dashboard>> {
        let config = state.config();
        let token = config.dashboard_token.as_deref()?;
        let d = Arc::new(Dashboard {
            state: state.clone(),
            socketio,
            pusher,
            token: token::Token::new(token),
            samples: Mutex::new(Ring::new(HISTORY)),
            viewers: Mutex::default(),
            next_viewer: AtomicU64::new(1),
            node: nodes::node_name(),
            run: rand::random(),
        });
        tokio::spawn(sampler::run(d.clone()));
        if let Some(cluster) = state.broker.cluster() {
            let answerer = Arc::new(nodes::NodeAnswerer(Arc::downgrade(&d)));
            cluster.answer_topic(nodes::TOPIC, answerer);
            tokio::spawn(nodes::run(d.clone()));
        }
        tracing::info!("dashboard on /dashboard (open /dashboard?token=…)");
        Some(d)
    }

    /// Register an open dashboard's outbox; its key, or None at [`MAX_VIEWERS`].
    fn add_viewer(&self, outbox: Arc<Outbox>) -> Option<u64> {
        let mut viewers = self.viewers.lock();
        if viewers.len() >= MAX_VIEWERS {
            return None;
        }
        let key = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        viewers.insert(key, outbox);
        Some(key)
    }

    fn remove_viewer(&self, key: u64) {
        self.viewers.lock().remove(&key);
    }

    /// Push `frame` to every open dashboard (the list copied, the lock released first).
    fn broadcast(&self, frame: bytes::Bytes) {
        let viewers: Vec<Arc<Outbox>> = self.viewers.lock().values().cloned().collect();
        for outbox in viewers {
            outbox.push(frame.clone());
        }
    }

    fn viewer_count(&self) -> usize {
        self.viewers.lock().len()
    }

    /// What the figures are read from now.
    fn sources(&self) -> figures::Sources<'_> {
        figures::Sources {
            broker: &*self.state.broker,
            socketio: self.socketio.as_ref(),
            pusher: self.pusher.as_ref(),
            started: self.state.started,
            dashboards: self.viewer_count(),
        }
    }

    /// The namespaces the console can pick: `default`, then each other Pusher app's id.
    fn namespaces(&self) -> Vec<String> {
        let mut out = vec![figures::DEFAULT_NAMESPACE.to_string()];
        let apps = self.pusher.as_ref().map(|a| a.all());
        for app in apps.iter().flat_map(|a| a.iter()) {
            let label = figures::namespace_label(&app.namespace);
            if !out.iter().any(|n| n == label) {
                out.push(label.to_string());
            }
        }
        out
    }
}
