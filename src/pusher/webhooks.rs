//! Pusher webhooks: telling the app's server what happened on its channels.
//!
//! Pusher (and Soketi) POST `{"time_ms", "events": [...]}` to each URL an app
//! configures, signed with `X-Pusher-Key` and `X-Pusher-Signature` (HMAC-SHA256 hex of
//! the body with the app secret), which the Pusher SDKs' `webhook()` helpers verify.
//! Apps use them to learn that a channel became occupied or vacated, that a user joined
//! or left a presence channel, what client events were sent, that a cache channel
//! had nothing cached for a subscriber, and (apps with subscription counts) how many
//! connections a channel has.
//!
//! Events are queued per URL, never on the path of a connection: a connection hands an
//! event over with a non-blocking send and goes on. One task per URL posts what is
//! queued, everything waiting at that moment in one request (Pusher's batch webhooks),
//! and retries a failed request (no answer, or not 2xx) with exponential backoff for
//! up to five minutes, as Pusher does, before giving it up. Events past a full queue
//! are dropped and counted rather than holding memory without bound.
//!
//! On shutdown every connection leaves its channels, which makes the `member_removed`
//! and `channel_vacated` events an app needs to mark its users offline; the server
//! waits a few seconds for [`pending`] to reach zero before the process exits, so a
//! restart does not leave users online in the app's records.

use super::signature::hmac_hex;
use crate::config::WebhookConfig;
use crate::metrics;
use serde::Serialize;
use serde_json::value::RawValue;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// The event names Pusher defines, as `event_types` in the configuration names them.
pub const EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Events waiting for one URL; past this they are dropped and counted.
const QUEUE: usize = 10_000;
/// The most events one request carries.
const BATCH: usize = 100;
/// How long a failed request is retried.
const RETRY_FOR: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One webhook event, serialised as Pusher's.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<usize>,
}

impl Event {
    fn about(name: &'static str, channel: &str) -> Self {
        Event {
            name,
            channel: channel.into(),
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
            subscription_count: None,
        }
    }

    pub fn channel_occupied(channel: &str) -> Self {
        Self::about("channel_occupied", channel)
    }

    pub fn channel_vacated(channel: &str) -> Self {
        Self::about("channel_vacated", channel)
    }

    pub fn member_added(channel: &str, user_id: &str) -> Self {
        Event {
            user_id: Some(user_id.into()),
            ..Self::about("member_added", channel)
        }
    }

    pub fn member_removed(channel: &str, user_id: &str) -> Self {
        Event {
            user_id: Some(user_id.into()),
            ..Self::about("member_removed", channel)
        }
    }

    pub fn cache_miss(channel: &str) -> Self {
        Self::about("cache_miss", channel)
    }

    pub fn subscription_count(channel: &str, count: usize) -> Self {
        Event {
            subscription_count: Some(count),
            ..Self::about("subscription_count", channel)
        }
    }

    /// `data` as Pusher gives it: a string stays that string, anything else is its JSON
    /// text. `user_id` only on presence channels.
    pub fn client_event(
        channel: &str,
        event: &str,
        data: Option<&RawValue>,
        socket_id: &str,
        user_id: Option<&str>,
    ) -> Self {
        let data = data.map(|d| {
            serde_json::from_str::<String>(d.get()).unwrap_or_else(|_| d.get().to_string())
        });
        Event {
            event: Some(event.into()),
            data,
            socket_id: Some(socket_id.into()),
            user_id: user_id.map(Into::into),
            ..Self::about("client_event", channel)
        }
    }
}

/// One configured URL: the events it wants and the queue of its task.
struct Target {
    wants: Vec<&'static str>,
    queue: mpsc::Sender<Event>,
}

/// An app's webhooks (none when it configures none).
#[derive(Default)]
pub struct Webhooks {
    targets: Vec<Target>,
}

impl Webhooks {
    /// Start one sending task per URL. Must run inside the tokio runtime when `configs`
    /// is not empty. `ca_file`: the app's private CA, if it has one.
    pub fn start(
        configs: &[WebhookConfig],
        key: &str,
        secret: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        if configs.is_empty() {
            return Ok(Webhooks::default());
        }
        let http = crate::app_http::client(REQUEST_TIMEOUT, ca_file)?;
        let targets = configs
            .iter()
            .map(|c| {
                let (queue, rx) = mpsc::channel(QUEUE);
                let sender = Sender {
                    http: http.clone(),
                    url: c.url.clone(),
                    key: key.into(),
                    secret: secret.into(),
                };
                tokio::spawn(sender.run(rx));
                Target {
                    wants: c.wanted(),
                    queue,
                }
            })
            .collect();
        Ok(Webhooks { targets })
    }

    /// Whether any URL wants events named `name`: callers skip building events no one
    /// wants.
    pub fn wants(&self, name: &str) -> bool {
        self.targets.iter().any(|t| t.wants.contains(&name))
    }

    /// Queue `event` for every URL that wants it; never waits.
    pub fn emit(&self, event: Event) {
        for target in self
            .targets
            .iter()
            .filter(|t| t.wants.contains(&event.name))
        {
            if target.queue.try_send(event.clone()).is_ok() {
                metrics::WEBHOOK_EVENTS_PENDING.inc();
            } else {
                metrics::WEBHOOK_EVENTS_DROPPED.inc();
                // The first drop, then one line per thousand: an app down for minutes
                // must not flood the log.
                let dropped = metrics::WEBHOOK_EVENTS_DROPPED.get();
                if dropped % 1000 == 1 {
                    tracing::warn!(
                        dropped,
                        event = event.name,
                        channel = %event.channel,
                        "webhook queue full: events dropped"
                    );
                }
            }
        }
    }
}

/// Webhook events of every app still queued or being posted.
pub fn pending() -> u64 {
    metrics::WEBHOOK_EVENTS_PENDING.get()
}

/// The body Pusher posts.
#[derive(Serialize)]
struct Payload<'a> {
    time_ms: u128,
    events: &'a [Event],
}

/// The task that posts one URL's events.
struct Sender {
    http: reqwest::Client,
    url: String,
    key: String,
    secret: String,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Event>) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let time_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let body = serde_json::to_vec(&Payload {
                time_ms,
                events: &batch,
            })
            .expect("events serialise");
            self.post(body, batch.len()).await;
            metrics::WEBHOOK_EVENTS_PENDING.sub(batch.len() as u64);
            batch.clear();
        }
    }

    /// Post one body until it is taken or the retry time is over.
    async fn post(&self, body: Vec<u8>, events: usize) {
        let signature = hmac_hex(&self.secret, &body);
        let started = Instant::now();
        let mut wait = FIRST_RETRY;
        loop {
            let sent = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", &self.key)
                .header("X-Pusher-Signature", &signature)
                .body(body.clone())
                .send()
                .await;
            let why = match sent {
                Ok(res) if res.status().is_success() => {
                    metrics::WEBHOOKS_SENT.inc();
                    return;
                }
                Ok(res) => format!("answered {}", res.status()),
                Err(e) => format!("unreachable: {e}"),
            };
            if started.elapsed() + wait > RETRY_FOR {
                metrics::WEBHOOKS_FAILED.inc();
                tracing::error!(url = %self.url, events, "webhook given up after retrying: {why}");
                return;
            }
            tracing::warn!(url = %self.url, "webhook {why}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn events_serialise_as_pushers() {
        let json = |e: &Event| serde_json::to_string(e).unwrap();
        assert_eq!(
            json(&Event::channel_occupied("orders")),
            r#"{"name":"channel_occupied","channel":"orders"}"#
        );
        assert_eq!(
            json(&Event::subscription_count("feed", 12)),
            r#"{"name":"subscription_count","channel":"feed","subscription_count":12}"#
        );
        assert_eq!(
            json(&Event::member_removed("presence-room", "7")),
            r#"{"name":"member_removed","channel":"presence-room","user_id":"7"}"#
        );
        // Pusher's own example: object data arrives as its JSON text.
        let data = raw(r#"{"data":1234}"#);
        assert_eq!(
            json(&Event::client_event(
                "private-test_channel",
                "client-my_event",
                Some(&data),
                "34718.5367461",
                None
            )),
            r#"{"name":"client_event","channel":"private-test_channel","event":"client-my_event","data":"{\"data\":1234}","socket_id":"34718.5367461"}"#
        );
        let text = raw(r#""typing""#);
        let e = Event::client_event("presence-r", "client-t", Some(&text), "1.2", Some("u"));
        assert_eq!(e.data.as_deref(), Some("typing"));
        assert_eq!(e.user_id.as_deref(), Some("u"));
    }

    /// The tests that read the process-wide webhook counters run one at a time.
    static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[test]
    fn no_targets_want_nothing_and_emit_is_a_no_op() {
        let _serial = COUNTERS.blocking_lock();
        // No runtime here: with no URL, start spawns no task.
        let hooks = Webhooks::start(&[], "k", "s", None).unwrap();
        let (queued, dropped) = (pending(), metrics::WEBHOOK_EVENTS_DROPPED.get());
        for name in EVENT_TYPES {
            assert!(!hooks.wants(name));
            hooks.emit(Event::about(name, "x"));
        }
        assert_eq!(pending(), queued, "nothing queued");
        assert_eq!(
            metrics::WEBHOOK_EVENTS_DROPPED.get(),
            dropped,
            "nothing dropped"
        );
    }

    /// A log sink for one test: what `tracing` wrote while it was the default.
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_url_that_never_answers_fills_its_queue_then_events_are_dropped_counted_and_logged() {
        let _serial = COUNTERS.lock().await;
        // Takes the connection and never answers.
        let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = WebhookConfig {
            url: format!("http://{}/webhook", app.local_addr().unwrap()),
            event_types: vec![],
        };
        let hooks = Webhooks::start(&[hook], "k", "s", None).unwrap();
        let dropped = || metrics::WEBHOOK_EVENTS_DROPPED.get();
        let log = Log::default();
        let logger = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let before = dropped();
        // This test's runtime has one thread and nothing below awaits: the sending task
        // has not run yet, so the queue takes exactly QUEUE events.
        tracing::subscriber::with_default(logger, || {
            for i in 0..QUEUE + 1000 {
                hooks.emit(Event::channel_occupied(&format!("c{i}")));
            }
        });
        assert_eq!(dropped() - before, 1000);
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("webhook queue full: events dropped"),
            "the drop was logged: {log:?}"
        );
        // The sender takes one batch and posts it; the app never answers. The queue has
        // room for that batch again and no more.
        let (_held, _) = tokio::time::timeout(Duration::from_secs(10), app.accept())
            .await
            .expect("the webhook request was sent")
            .unwrap();
        for i in 0..BATCH + 50 {
            hooks.emit(Event::channel_vacated(&format!("c{i}")));
        }
        assert_eq!(dropped() - before, 1050);
    }
}
