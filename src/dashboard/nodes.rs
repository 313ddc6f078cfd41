//! With `--cluster`, every node's figures: the dashboard asks the cluster the way the Pusher
//! HTTP API does ([`crate::broker::Cluster::ask`]), on its own topic, and each node with the
//! dashboard on answers a summary of its own (connections by protocol, channels, rates,
//! totals) from what its dashboard already holds.
//!
//! Asked every [`EVERY`], only while a dashboard is open on the asking node; a node that
//! took the question but did not answer in time is counted as missing, and a node whose
//! dashboard is off (its answer is not a summary) as silent, never made up.

use super::figures::Connections;
use super::Dashboard;
use crate::broker::Answerer;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The dashboard's questions begin with it.
pub const TOPIC: &[u8] = b"herald-dashboard:";
/// How often the nodes are asked while a dashboard is open.
pub const EVERY: Duration = Duration::from_secs(2);

/// One node's answer.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Summary {
    /// Host name and process id, and an id of this run (which node is the asker's own).
    pub node: String,
    pub run: u32,
    pub uptime_s: u64,
    pub connections: Connections,
    pub channel_count: usize,
    pub published: u64,
    pub delivered: u64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    pub slow_consumers_dropped: u64,
    pub webhooks_pending: u64,
}

/// The name a node goes by on the dashboard: its host and process id.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "herald".into());
    format!("{host}/{}", std::process::id())
}

impl Dashboard {
    /// This node's summary now.
    fn summary(&self) -> Summary {
        let f = self.sources().figures();
        let last = self
            .samples
            .lock()
            .iter()
            .last()
            .copied()
            .unwrap_or_default();
        Summary {
            node: self.node.clone(),
            run: self.run,
            uptime_s: f.uptime_s,
            connections: f.connections,
            channel_count: f.channel_count,
            published: f.published,
            delivered: f.delivered,
            published_per_s: last.published_per_s,
            delivered_per_s: last.delivered_per_s,
            slow_consumers_dropped: f.slow_consumers_dropped,
            webhooks_pending: f.webhooks.pending,
        }
    }
}

/// Answers the cluster's dashboard questions on this node.
pub struct NodeAnswerer(pub Weak<Dashboard>);

impl Answerer for NodeAnswerer {
    fn answer(&self, _question: &[u8]) -> Bytes {
        let summary = self.0.upgrade().map(|d| d.summary()).unwrap_or_default();
        serde_json::to_vec(&summary)
            .expect("a summary serializes")
            .into()
    }
}

/// Ask every node for its summary every [`EVERY`] while a dashboard is open here, and push
/// `{"type":"nodes","nodes":[…],"missing":n,"silent":n}` to each; until shutdown.
pub async fn run(d: Arc<Dashboard>) {
    let Some(cluster) = d.state.broker.cluster() else {
        return;
    };
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = d.state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if d.viewer_count() == 0 {
            continue;
        }
        let question = Bytes::from([TOPIC, b"nodes"].concat());
        let body = match cluster.ask(question).await {
            Ok(answers) => {
                let mut nodes: Vec<Summary> = (answers.answers.iter())
                    .filter_map(|a| serde_json::from_slice(a).ok())
                    .filter(|s: &Summary| !s.node.is_empty())
                    .collect();
                nodes.sort_by(|a, b| a.node.cmp(&b.node));
                let silent = answers.answers.len() - nodes.len();
                serde_json::json!({"type": "nodes", "nodes": nodes, "me": d.run,
                    "missing": answers.missing, "silent": silent})
            }
            Err(_) => serde_json::json!({"type": "nodes", "nodes": [], "me": d.run,
                "error": "the other nodes cannot be asked: the backplane (Redis) is unreachable"}),
        };
        d.broadcast(crate::ws::frame::text(body.to_string().as_bytes()));
    }
}
