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
//! up to five minutes, as Pusher does, before giving it up.
//!
//! Anyone may subscribe to a public channel and leave again, so occupancy must not be
//! able to flood the queue. `channel_occupied` and `channel_vacated` are held back for
//! a short delay (as Pusher debounces): a channel occupied and vacated within it, or
//! vacated and occupied again, sends neither. Any other event about a channel whose
//! `channel_occupied` is held sends that first, so each channel's events stay in order.
//! And the queue is bounded in two: `member_added` and `member_removed`, which an app
//! needs to know who is online, may fill all of it, every other event only half, so
//! churn never crowds them out. Events past the bound are dropped, counted and logged.
//!
//! On shutdown every connection leaves its channels, which makes the `member_removed`
//! and `channel_vacated` events an app needs to mark its users offline; the server
//! waits a few seconds for them to be [`delivered`] before the process exits, so a
//! restart does not leave users online in the app's records. Each event not yet
//! posted is a [`Pending`], which holds a token of one tracker: that wait is the
//! tracker's, not a count polled.

use super::signature::hmac_hex;
use crate::config::{WebhookConfig, WebhookLimits};
use crate::metrics;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

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

    /// `member_added` and `member_removed`: never crowded out of a queue by other events.
    fn is_member(&self) -> bool {
        matches!(self.name, "member_added" | "member_removed")
    }

    fn is_occupancy(&self) -> bool {
        matches!(self.name, "channel_occupied" | "channel_vacated")
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

/// Every app's webhook events not yet posted, one token each. Closed from the start:
/// it tracks no task, and its `wait` resolves whenever no event is left.
static DELIVERIES: LazyLock<TaskTracker> = LazyLock::new(|| {
    let tracker = TaskTracker::new();
    tracker.close();
    tracker
});

/// An event held, queued or being posted. While it exists it is counted on /metrics
/// and shutdown waits for it; it goes when it is posted, given up, dropped or cancelled
/// by its opposite occupancy event.
#[derive(Serialize)]
#[serde(transparent)]
struct Pending {
    event: Event,
    #[serde(skip)]
    _delivery: TaskTrackerToken,
}

impl Pending {
    fn new(event: Event) -> Self {
        metrics::WEBHOOK_EVENTS_PENDING.inc();
        Pending {
            event,
            _delivery: DELIVERIES.token(),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        metrics::WEBHOOK_EVENTS_PENDING.dec();
    }
}

/// One configured URL: the events it wants, the queue of its task, and its held
/// occupancy events.
struct Target {
    wants: Vec<&'static str>,
    queue: mpsc::Sender<Pending>,
    /// Queued events other than member events (shared with the sending task).
    others: Arc<AtomicUsize>,
    /// How many of those the queue may hold: half of it.
    others_max: usize,
    /// None when occupancy events are sent at once (no delay, or not wanted).
    held: Option<Held>,
}

/// Occupancy events waiting for their delay to pass.
struct Held {
    delay: Duration,
    state: Mutex<HeldState>,
    /// Told when the first event is held into an empty queue.
    wake: Notify,
}

#[derive(Default)]
struct HeldState {
    /// The held event of each channel, with its number.
    by_channel: HashMap<Box<str>, (Pending, u64)>,
    /// Held events' numbers in the order they fall due (every delay is the same).
    due: VecDeque<(Instant, Box<str>, u64)>,
    next: u64,
}

impl Target {
    /// A URL's target and the receiving end of its queue; when it holds occupancy
    /// events, the task that lets them go runs until `stop`.
    fn new(
        wants: Vec<&'static str>,
        limits: WebhookLimits,
        stop: &CancellationToken,
    ) -> (Arc<Target>, mpsc::Receiver<Pending>) {
        let (queue, rx) = mpsc::channel(limits.queue);
        let holds = !limits.occupancy_delay.is_zero()
            && wants
                .iter()
                .any(|w| matches!(*w, "channel_occupied" | "channel_vacated"));
        let target = Arc::new(Target {
            wants,
            queue,
            others: Arc::default(),
            others_max: limits.queue / 2,
            held: holds.then(|| Held {
                delay: limits.occupancy_delay,
                state: Mutex::default(),
                wake: Notify::new(),
            }),
        });
        if holds {
            tokio::spawn(release_held(target.clone(), stop.clone()));
        }
        (target, rx)
    }

    /// Hand `event` over: held, queued, or let go of as its occupancy dictates.
    fn offer(&self, event: &Event) {
        match &self.held {
            Some(held) if event.is_occupancy() => self.hold(held, event),
            _ if !self.wants.contains(&event.name) => {}
            Some(held) => {
                // Something happened on a channel whose occupied is held: the occupancy
                // is real, and goes first.
                let mut st = held.state.lock();
                let channel = event.channel.as_str();
                if st
                    .by_channel
                    .get(channel)
                    .is_some_and(|(p, _)| p.event.name == "channel_occupied")
                {
                    let (occupied, _) = st.by_channel.remove(channel).unwrap();
                    self.release(occupied);
                }
                drop(st);
                self.enqueue(Pending::new(event.clone()));
            }
            None => self.enqueue(Pending::new(event.clone())),
        }
    }

    /// Hold an occupancy event for the delay, or cancel it with the opposite one of its
    /// channel held. Both kinds are held whichever this URL wants, so that an occupied
    /// is only ever cancelled by its own channel's vacated, and the other way round.
    fn hold(&self, held: &Held, event: &Event) {
        let mut st = held.state.lock();
        if st.by_channel.remove(event.channel.as_str()).is_some() {
            metrics::WEBHOOK_EVENTS_COALESCED.add(2);
            return;
        }
        let n = st.next;
        st.next += 1;
        let channel: Box<str> = event.channel.as_str().into();
        st.due
            .push_back((Instant::now() + held.delay, channel.clone(), n));
        st.by_channel
            .insert(channel, (Pending::new(event.clone()), n));
        if st.due.len() == 1 {
            held.wake.notify_one();
        }
    }

    /// A held event whose delay passed, or that another event of its channel let go.
    /// Called with the held state locked, so that it is queued before anything later.
    fn release(&self, pending: Pending) {
        if self.wants.contains(&pending.event.name) {
            self.enqueue(pending);
        }
    }

    /// Queue an event for posting; never waits.
    fn enqueue(&self, pending: Pending) {
        let member = pending.event.is_member();
        if !member && self.others.fetch_add(1, Ordering::AcqRel) >= self.others_max {
            self.others.fetch_sub(1, Ordering::AcqRel);
            return dropped(&pending.event);
        }
        if let Err(e) = self.queue.try_send(pending) {
            if !member {
                self.others.fetch_sub(1, Ordering::AcqRel);
            }
            dropped(&e.into_inner().event);
        }
    }
}

/// Count and log an event that found its queue full.
fn dropped(event: &Event) {
    metrics::WEBHOOK_EVENTS_DROPPED.inc();
    // The first drop, then one line per thousand: an app down for minutes must not
    // flood the log.
    let dropped = metrics::WEBHOOK_EVENTS_DROPPED.get();
    if dropped % 1000 == 1 {
        tracing::warn!(
            dropped,
            event = event.name,
            channel = %event.channel,
            "webhook queue full: events dropped (see --webhook-queue)"
        );
    }
}

/// Let go of each held event when its delay has passed; of all of them at `stop`.
async fn release_held(target: Arc<Target>, stop: CancellationToken) {
    let held = target.held.as_ref().expect("only started for held events");
    loop {
        let stopping = stop.is_cancelled();
        let next = {
            let mut st = held.state.lock();
            let now = Instant::now();
            while st
                .due
                .front()
                .is_some_and(|(at, _, _)| stopping || *at <= now)
            {
                let (_, channel, n) = st.due.pop_front().unwrap();
                if st.by_channel.get(&channel).is_some_and(|(_, m)| *m == n) {
                    let (pending, _) = st.by_channel.remove(&channel).unwrap();
                    target.release(pending);
                }
            }
            st.due.front().map(|(at, _, _)| *at)
        };
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => held.wake.notified().await,
            }
        };
        if stopping {
            return;
        }
        tokio::select! {
            _ = wait => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// An app's webhooks (none when it configures none).
#[derive(Default)]
pub struct Webhooks {
    targets: Vec<Arc<Target>>,
    /// Stops the tasks that release held events when the app goes.
    _stop: Option<DropGuard>,
}

impl Webhooks {
    /// Start one sending task per URL (and one releasing its held occupancy events). Must
    /// run inside the tokio runtime when `configs` is not empty. `ca_file`: the app's
    /// private CA, if it has one.
    pub fn start(
        configs: &[WebhookConfig],
        signer: &Arc<Signer>,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        if configs.is_empty() {
            return Ok(Webhooks::default());
        }
        let http = crate::app_http::client(REQUEST_TIMEOUT, ca_file)?;
        let stop = CancellationToken::new();
        let targets = configs
            .iter()
            .map(|c| {
                let (target, rx) = Target::new(c.wanted(), c.limits, &stop);
                let sender = Sender {
                    http: http.clone(),
                    url: c.url.clone(),
                    signer: signer.clone(),
                    others: target.others.clone(),
                };
                tokio::spawn(sender.run(rx));
                target
            })
            .collect();
        Ok(Webhooks {
            targets,
            _stop: Some(stop.drop_guard()),
        })
    }

    /// Whether any URL wants events named `name`: callers skip building events no one
    /// wants.
    pub fn wants(&self, name: &str) -> bool {
        self.targets.iter().any(|t| t.wants.contains(&name))
    }

    /// Hand `event` to every URL that wants it; never waits.
    pub fn emit(&self, event: Event) {
        for target in &self.targets {
            target.offer(&event);
        }
    }
}

/// Resolves once every app's webhook events made so far have been posted (or given up,
/// or dropped); those made meanwhile are waited for too.
pub async fn delivered() {
    DELIVERIES.wait().await
}

/// Webhook events of every app still held, queued or being posted.
pub fn pending() -> usize {
    DELIVERIES.len()
}

/// The body Pusher posts.
#[derive(Serialize)]
struct Payload<'a> {
    time_ms: u128,
    events: &'a [Pending],
}

/// Who signs an app's webhooks: its key and secret, as they are now (a reload may rotate
/// the secret: requests from then on are signed with the new one).
pub struct Signer(parking_lot::RwLock<(String, String)>);

impl Signer {
    pub fn new(key: &str, secret: &str) -> Arc<Signer> {
        Arc::new(Signer(parking_lot::RwLock::new((
            key.into(),
            secret.into(),
        ))))
    }

    pub fn set(&self, key: &str, secret: &str) {
        *self.0.write() = (key.into(), secret.into());
    }
}

/// The task that posts one URL's events.
struct Sender {
    http: reqwest::Client,
    url: String,
    signer: Arc<Signer>,
    /// Its target's count of queued events other than member events.
    others: Arc<AtomicUsize>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let others = batch.iter().filter(|p| !p.event.is_member()).count();
            self.others.fetch_sub(others, Ordering::AcqRel);
            let time_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let body = serde_json::to_vec(&Payload {
                time_ms,
                events: &batch,
            })
            .expect("events serialise");
            self.post(body, batch.len()).await;
            batch.clear();
        }
    }

    /// Post one body until it is taken or the retry time is over.
    async fn post(&self, body: Vec<u8>, events: usize) {
        let (key, signature) = {
            let signer = self.signer.0.read();
            (signer.0.clone(), hmac_hex(&signer.1, &body))
        };
        let started = Instant::now();
        let mut wait = FIRST_RETRY;
        loop {
            let sent = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", &key)
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
    use crate::config::EVENT_TYPES;

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

    /// A target wanting every event, and what its queue holds now.
    fn target(queue: usize, delay: Duration) -> (Arc<Target>, mpsc::Receiver<Pending>) {
        let limits = WebhookLimits {
            queue,
            occupancy_delay: delay,
        };
        Target::new(EVENT_TYPES.to_vec(), limits, &CancellationToken::new())
    }

    fn queued(rx: &mut mpsc::Receiver<Pending>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| format!("{} {}", p.event.name, p.event.channel))
            .collect()
    }

    #[tokio::test]
    async fn occupancy_within_the_delay_sends_nothing() {
        let (t, mut rx) = target(100, Duration::from_millis(100));
        let coalesced = metrics::WEBHOOK_EVENTS_COALESCED.get();
        t.offer(&Event::channel_occupied("flap"));
        t.offer(&Event::channel_vacated("flap"));
        assert!(metrics::WEBHOOK_EVENTS_COALESCED.get() >= coalesced + 2);
        // Another event of a held channel lets its occupied go first.
        t.offer(&Event::channel_occupied("presence-r"));
        t.offer(&Event::member_added("presence-r", "7"));
        assert_eq!(
            queued(&mut rx),
            ["channel_occupied presence-r", "member_added presence-r"]
        );
        // Occupied for longer than the delay: sent, then vacated and occupied again
        // within it: neither.
        t.offer(&Event::channel_occupied("stays"));
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(first.unwrap().unwrap().event.channel, "stays");
        t.offer(&Event::channel_vacated("stays"));
        t.offer(&Event::channel_occupied("stays"));
        t.offer(&Event::channel_occupied("marker"));
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(next.unwrap().unwrap().event.channel, "marker");
        assert!(queued(&mut rx).is_empty(), "nothing about flap or stays");
    }

    #[tokio::test]
    async fn a_url_that_wants_only_vacated_still_coalesces_by_pairs() {
        let limits = WebhookLimits {
            queue: 100,
            occupancy_delay: Duration::from_millis(50),
        };
        let stop = CancellationToken::new();
        let (t, mut rx) = Target::new(vec!["channel_vacated"], limits, &stop);
        t.offer(&Event::channel_occupied("a"));
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            // The occupied falls due unsent (unwanted); the vacated after it is real.
            tokio::time::sleep(Duration::from_millis(100)).await;
            t.offer(&Event::channel_vacated("a"));
            rx.recv().await
        });
        assert_eq!(sent.await.unwrap().unwrap().event.name, "channel_vacated");
    }

    #[tokio::test]
    async fn members_are_never_crowded_out_by_other_events() {
        let _serial = COUNTERS.lock().await;
        let (t, mut rx) = target(4, Duration::ZERO);
        let dropped = metrics::WEBHOOK_EVENTS_DROPPED.get();
        for i in 0..10 {
            t.offer(&Event::channel_occupied(&format!("churn.{i}")));
        }
        assert!(metrics::WEBHOOK_EVENTS_DROPPED.get() >= dropped + 8);
        t.offer(&Event::member_removed("presence-r", "1"));
        t.offer(&Event::member_removed("presence-r", "2"));
        t.offer(&Event::member_removed("presence-r", "3"));
        assert_eq!(
            queued(&mut rx),
            [
                "channel_occupied churn.0",
                "channel_occupied churn.1",
                "member_removed presence-r",
                "member_removed presence-r",
            ]
        );
    }

    /// The tests that read the process-wide webhook counters run one at a time.
    static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[test]
    fn no_targets_want_nothing_and_emit_is_a_no_op() {
        let _serial = COUNTERS.blocking_lock();
        // No runtime here: with no URL, start spawns no task.
        let hooks = Webhooks::start(&[], &Signer::new("k", "s"), None).unwrap();
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

    #[test]
    fn a_posted_body_carries_the_events_alone() {
        let events = [Pending::new(Event::member_added("presence-r", "7"))];
        let body = serde_json::to_string(&Payload {
            time_ms: 1,
            events: &events,
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"time_ms":1,"events":[{"name":"member_added","channel":"presence-r","user_id":"7"}]}"#
        );
    }

    #[tokio::test]
    async fn delivered_waits_for_every_event_not_yet_posted() {
        use futures_util::FutureExt;
        let _serial = COUNTERS.lock().await;
        let before = pending();
        let first = Pending::new(Event::channel_vacated("a"));
        let second = Pending::new(Event::member_removed("presence-r", "7"));
        assert!(pending() >= before + 2);
        let mut done = std::pin::pin!(delivered());
        assert!((&mut done).now_or_never().is_none(), "two are pending");
        drop(first);
        assert!((&mut done).now_or_never().is_none(), "one is pending");
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("delivered once none is left");
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
        const QUEUE: usize = 10_000;
        let hook = WebhookConfig {
            url: format!("http://{}/webhook", app.local_addr().unwrap()),
            event_types: vec![],
            limits: WebhookLimits {
                queue: QUEUE,
                occupancy_delay: Duration::ZERO,
            },
        };
        let hooks = Webhooks::start(&[hook], &Signer::new("k", "s"), None).unwrap();
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
            // Member events may fill the whole queue (others only half of it).
            for i in 0..QUEUE + 1000 {
                hooks.emit(Event::member_added("presence-c", &i.to_string()));
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
            hooks.emit(Event::member_removed("presence-c", &i.to_string()));
        }
        assert_eq!(dropped() - before, 1050);
    }
}
