//! What the dashboard shows besides the chart: the state of this node at one moment.
//!
//! Gathered once a second, only while someone watches, from what the edges and the
//! broker already keep: the gauges and counters of [`crate::metrics`], each Pusher app's
//! connection count and channels, the socket.io edge's sessions and rooms, the RESP
//! registries. Each listing walks its map one shard at a time under that shard's read
//! lock (as `PUBSUB CHANNELS` and the HTTP API's channel query do), never on the
//! delivery path; the channel table is cut to the busiest [`MAX_CHANNELS`].

use crate::broker::{Broker, Namespace};
use crate::metrics as m;
use crate::pusher::apps::Apps;
use crate::socketio;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most channels one update lists (the busiest); the total is always given.
pub const MAX_CHANNELS: usize = 200;

/// The namespace a dashboard names `Default` by.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A namespace as the dashboard names it: `default`, or a Pusher app's id.
pub fn namespace_label(ns: &Namespace) -> &str {
    match ns {
        Namespace::Default => DEFAULT_NAMESPACE,
        Namespace::App(id) => id,
    }
}

/// The namespace a dashboard label names.
pub fn namespace_of(label: &str) -> Namespace {
    match label {
        DEFAULT_NAMESPACE | "" => Namespace::Default,
        id => Namespace::App(id.into()),
    }
}

#[derive(Serialize, serde::Deserialize, Default, Debug)]
pub struct Connections {
    pub socketio: usize,
    /// Of which on long-polling.
    pub socketio_polling: u64,
    pub pusher: usize,
    pub resp: u64,
    /// Dashboards open now (this one included).
    pub dashboard: usize,
}

#[derive(Serialize, Debug)]
pub struct AppRow {
    pub id: String,
    pub namespace: String,
    pub connections: usize,
    pub channels: usize,
}

/// One channel's subscriptions on each protocol (RESP: `SUBSCRIBE`rs of that exact name).
#[derive(Serialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub namespace: String,
    pub channel: String,
    pub socketio: usize,
    pub pusher: usize,
    pub resp: usize,
}

impl ChannelRow {
    fn total(&self) -> usize {
        self.socketio + self.pusher + self.resp
    }
}

#[derive(Serialize, Debug)]
pub struct Auth {
    /// Requests to `--auth-endpoint` since start, their mean, and those refused.
    pub requests: u64,
    pub mean_ms: Option<f64>,
    pub refused: u64,
    /// Subscriptions refused before asking the app (the auth shield).
    pub refusals_reused: u64,
    pub rate_limited: u64,
    pub busy: u64,
    pub headers_too_large: u64,
}

#[derive(Serialize, Debug)]
pub struct Webhooks {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub coalesced: u64,
}

#[derive(Serialize, Debug)]
pub struct Recovery {
    pub socketio_recovered: u64,
    pub socketio_replayed: u64,
    pub socketio_refused: u64,
    pub socketio_kept: u64,
    pub pusher_resumed: u64,
    pub pusher_replayed: u64,
    pub pusher_refused: u64,
    pub pusher_kept: u64,
}

/// Everything but the chart, at one moment.
#[derive(Serialize, Debug)]
pub struct Figures {
    pub uptime_s: u64,
    pub published: u64,
    pub delivered: u64,
    pub slow_consumers_dropped: u64,
    pub connections: Connections,
    pub apps: Vec<AppRow>,
    /// Channels with a subscriber on this node, all protocols.
    pub channel_count: usize,
    /// The busiest of them, most subscriptions first.
    pub channels: Vec<ChannelRow>,
    pub auth: Auth,
    pub webhooks: Webhooks,
    pub recovery: Recovery,
}

/// The parts figures are read from.
pub struct Sources<'a> {
    pub broker: &'a dyn Broker,
    pub socketio: Option<&'a Arc<socketio::Edge>>,
    pub pusher: Option<&'a Arc<Apps>>,
    pub started: std::time::Instant,
    pub dashboards: usize,
}

impl Sources<'_> {
    pub fn figures(&self) -> Figures {
        let mut channels: BTreeMap<(String, String), ChannelRow> = BTreeMap::new();
        let mut connections = Connections {
            socketio_polling: m::SOCKETIO_POLLING_SESSIONS.get(),
            resp: m::RESP_CONNECTIONS.get(),
            dashboard: self.dashboards,
            ..Connections::default()
        };
        if let Some(edge) = self.socketio {
            let (sessions, rooms) = edge.census();
            connections.socketio = sessions;
            for (name, n) in rooms {
                row(&mut channels, DEFAULT_NAMESPACE, name).socketio += n;
            }
        }
        let mut apps = Vec::new();
        for app in self.pusher.map(|a| a.all()).iter().flat_map(|a| a.iter()) {
            let ns = namespace_label(&app.namespace).to_string();
            let occupied = app.channels.occupied("");
            for name in &occupied {
                row(&mut channels, &ns, name.clone()).pusher += app.channels.subscriptions(name);
            }
            let count = app.connection_count();
            connections.pusher += count;
            apps.push(AppRow {
                id: app.config().id.clone(),
                namespace: ns,
                connections: count,
                channels: occupied.len(),
            });
        }
        for name in self.broker.channels(None) {
            let n = self.broker.numsub(&name);
            let name = String::from_utf8_lossy(&name).into_owned();
            row(&mut channels, DEFAULT_NAMESPACE, name).resp += n;
        }
        let channel_count = channels.len();
        let mut channels: Vec<ChannelRow> = channels.into_values().collect();
        busiest(&mut channels, MAX_CHANNELS);

        let auth = m::AUTH_REQUEST_SECONDS.snapshot();
        let stats = self.broker.stats();
        Figures {
            uptime_s: self.started.elapsed().as_secs(),
            published: stats.published.get(),
            delivered: stats.delivered.get(),
            slow_consumers_dropped: m::SLOW_CONSUMERS_DROPPED.get(),
            connections,
            apps,
            channel_count,
            channels,
            auth: Auth {
                requests: auth.count,
                mean_ms: (auth.count > 0).then(|| auth.sum_micros as f64 / auth.count as f64 / 1e3),
                refused: m::AUTH_REFUSED.get(),
                refusals_reused: m::AUTH_REFUSALS_REUSED.get(),
                rate_limited: m::AUTH_RATE_LIMITED.get(),
                busy: m::AUTH_BUSY.get(),
                headers_too_large: m::AUTH_HEADERS_TOO_LARGE.get(),
            },
            webhooks: Webhooks {
                pending: m::WEBHOOK_EVENTS_PENDING.get(),
                sent: m::WEBHOOKS_SENT.get(),
                failed: m::WEBHOOKS_FAILED.get(),
                dropped: m::WEBHOOK_EVENTS_DROPPED.get(),
                coalesced: m::WEBHOOK_EVENTS_COALESCED.get(),
            },
            recovery: Recovery {
                socketio_recovered: m::SOCKETIO_RECOVERED.get(),
                socketio_replayed: m::SOCKETIO_REPLAYED.get(),
                socketio_refused: m::SOCKETIO_RECOVERY_TOO_OLD.get()
                    + m::SOCKETIO_RECOVERY_WINDOW_OVER.get()
                    + m::SOCKETIO_RECOVERY_UNKNOWN_PID.get(),
                socketio_kept: m::SOCKETIO_RECOVERY_SESSIONS.get(),
                pusher_resumed: m::PUSHER_RESUMED.get(),
                pusher_replayed: m::PUSHER_REPLAYED.get(),
                pusher_refused: m::PUSHER_RESUME_REFUSED.iter().map(|c| c.get()).sum(),
                pusher_kept: m::PUSHER_RESUME_KEPT.get(),
            },
        }
    }
}

/// The row of `channel` in `ns`, made if new.
fn row<'a>(
    rows: &'a mut BTreeMap<(String, String), ChannelRow>,
    ns: &str,
    channel: String,
) -> &'a mut ChannelRow {
    let key = (ns.to_string(), channel);
    let row = rows.entry(key.clone()).or_default();
    (row.namespace, row.channel) = key;
    row
}

/// Keep the `max` rows with the most subscriptions, most first (then by name).
fn busiest(rows: &mut Vec<ChannelRow>, max: usize) {
    rows.sort_by(|a, b| {
        (b.total().cmp(&a.total()))
            .then_with(|| (&a.namespace, &a.channel).cmp(&(&b.namespace, &b.channel)))
    });
    rows.truncate(max);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ns: &str, channel: &str, socketio: usize, pusher: usize) -> ChannelRow {
        ChannelRow {
            namespace: ns.into(),
            channel: channel.into(),
            socketio,
            pusher,
            resp: 0,
        }
    }

    #[test]
    fn the_busiest_channels_first() {
        let mut rows = vec![
            row("default", "b", 1, 0),
            row("default", "a", 1, 0),
            row("shop", "big", 2, 3),
            row("default", "c", 0, 2),
        ];
        busiest(&mut rows, 3);
        let names: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
        assert_eq!(names, ["big", "c", "a"]);
    }

    #[test]
    fn namespaces_by_label_and_back() {
        assert_eq!(namespace_of("default"), Namespace::Default);
        assert_eq!(namespace_of("shop"), Namespace::App("shop".into()));
        assert_eq!(namespace_label(&namespace_of("shop")), "shop");
    }
}
