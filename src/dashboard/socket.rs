//! One open dashboard: a WebSocket on herald's own [`crate::ws`], as the edges' are.
//!
//! It is held to what the edges are held to: the server's outbox limits (a dashboard
//! that stops reading is dropped like any slow subscriber), a largest message
//! (`--max-message-size`, the size of a test event's data, with room for the command
//! around it), the shutdown signal, and a task tracked with the other connections.
//! The page sends small JSON commands; the answers go back on the same connection, the
//! updates and watched events arrive through its outbox.

use super::console::{self, TestEvent, Watcher};
use super::figures::namespace_of;
use super::Dashboard;
use crate::broker::Namespace;
use crate::outbox::Outbox;
use crate::ws::{self, Flow, Handler, Message};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::time::Instant;

/// What the page asks.
#[derive(Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    /// Show `channel`'s publications from now on (instead of the one watched before).
    Watch {
        namespace: String,
        channel: String,
    },
    Unwatch,
    /// Publish a test event on `channel`.
    Publish {
        namespace: String,
        channel: String,
        event: String,
        data: String,
    },
    /// The presence members of `channel`.
    Members {
        namespace: String,
        channel: String,
    },
}

/// An open dashboard.
struct Viewer {
    dashboard: Arc<Dashboard>,
    key: u64,
    watcher: Arc<Watcher>,
    watching: Option<(Namespace, String)>,
}

fn reply(body: serde_json::Value) -> Bytes {
    ws::frame::text(body.to_string().as_bytes())
}

fn error(message: impl Into<String>) -> Bytes {
    reply(json!({"type": "error", "message": message.into()}))
}

/// Run a dashboard's connection until it ends (refused at once past
/// [`super::MAX_VIEWERS`]).
pub async fn run(io: ws::WsStream, d: Arc<Dashboard>) {
    let c = d.state.config();
    let outbox = Arc::new(Outbox::new(c.outbox));
    // The hello first: from its registration on, the sampler may push updates.
    outbox.push(super::sampler::hello(&d));
    let Some(key) = d.add_viewer(outbox.clone()) else {
        let mut frames = vec![ws::frame::close(1013, "too many dashboards open")];
        let mut io = io;
        let _ = crate::net_write::write_all(&mut io, &mut frames).await;
        return;
    };
    let max_message = c.max_message_size.saturating_mul(2).max(64 * 1024);
    let shutdown = d.state.shutdown.clone();
    let viewer = Viewer {
        watcher: Arc::new(Watcher {
            id: crate::broker::next_subscriber_id(),
            outbox: outbox.clone(),
        }),
        dashboard: d,
        key,
        watching: None,
    };
    ws::drive(io, outbox, viewer, max_message, shutdown).await;
}

impl Viewer {
    fn unwatch(&mut self) {
        if let Some((ns, channel)) = self.watching.take() {
            let broker = &self.dashboard.state.broker;
            broker.stream_unsubscribe(&ns, channel.as_bytes(), self.watcher.id);
        }
    }

    fn command(&mut self, c: Command) -> Bytes {
        let d = self.dashboard.clone();
        match c {
            Command::Watch { namespace, channel } => {
                if let Err(e) = crate::edge_policy::check_channel_name(&channel) {
                    return error(format!("invalid channel name ({e:?})"));
                }
                self.unwatch();
                let ns = namespace_of(&namespace);
                let me: Arc<dyn crate::broker::StreamSubscriber> = self.watcher.clone();
                d.state.broker.stream_subscribe(&ns, channel.as_bytes(), me);
                self.watching = Some((ns, channel.clone()));
                reply(json!({"type": "watching", "namespace": namespace, "channel": channel}))
            }
            Command::Unwatch => {
                self.unwatch();
                reply(json!({"type": "watching", "channel": null}))
            }
            Command::Publish {
                namespace,
                channel,
                event,
                data,
            } => {
                let ev = TestEvent {
                    namespace: namespace_of(&namespace),
                    channel: &channel,
                    event: &event,
                    data: &data,
                };
                let max = d.state.config().max_message_size;
                match console::publish(&*d.state.broker, &ev, max) {
                    Ok(receivers) => {
                        tracing::info!(%namespace, %channel, %event, "dashboard published a test event");
                        reply(json!({"type": "published", "namespace": namespace,
                            "channel": channel, "event": event, "receivers": receivers}))
                    }
                    Err(e) => error(e),
                }
            }
            Command::Members { namespace, channel } => {
                let members = console::members(
                    &*d.state.presence,
                    d.pusher.as_ref(),
                    d.socketio.is_some(),
                    &namespace_of(&namespace),
                    &channel,
                );
                reply(json!({"type": "members", "namespace": namespace,
                    "channel": channel, "members": members}))
            }
        }
    }
}

impl Handler for Viewer {
    type Awaited = ();

    fn on_message(&mut self, msg: Message, out: &mut Vec<Bytes>) -> Flow {
        match msg {
            Message::Text(text) => {
                out.push(match serde_json::from_slice::<Command>(&text) {
                    Ok(c) => self.command(c),
                    Err(e) => error(format!("unknown command: {e}")),
                });
                Flow::Continue
            }
            Message::Binary(_) => Flow::Close(1003, "text only".into()),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Flow::Continue,
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        None
    }

    fn on_tick(&mut self, _out: &mut Vec<Bytes>) -> Flow {
        Flow::Continue
    }

    fn on_close(&mut self, _why: &str) {
        self.unwatch();
        self.dashboard.remove_viewer(self.key);
    }
}
