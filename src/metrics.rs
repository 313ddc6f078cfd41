//! Process-wide counters: what INFO, `/metrics` and the logs report.
//!
//! Counters are bumped on hot paths (every command, every publication) by every core
//! and read rarely, so each is striped: a thread adds to its own cache line and a read
//! sums the lines. One shared atomic would bounce its line between the cores on every
//! bump (measured: the publication counters were most of `Broker::publish`'s own time
//! under pipelined `PUBLISH` on two workers). Gauges change per connection: plain atomics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 8;

#[repr(align(64))]
struct Stripe(AtomicU64);

pub struct Counter([Stripe; STRIPES]);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

impl Counter {
    pub const fn new() -> Self {
        Counter([const { Stripe(AtomicU64::new(0)) }; STRIPES])
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        let i = STRIPE.with(|i| *i);
        self.0[i].0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Upper bounds (seconds) of a request's [`Histogram`]: from 5 ms to 10 s, as
/// Prometheus's client libraries default to.
pub const REQUEST_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of a delivery's [`Histogram`]: from 100 µs to 10 s.
const DELIVERY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The most buckets a [`Histogram`] has.
const MAX_BUCKETS: usize = 16;

/// One thread's share of a histogram: its buckets, then the sum (µs) and the count.
#[repr(align(64))]
struct HistogramStripe([AtomicU64; MAX_BUCKETS + 2]);

/// A Prometheus histogram of durations: a count per bucket, the sum and the count.
/// Striped like [`Counter`]: one that every write of every connection observes must not
/// bounce a shared line between the cores.
pub struct Histogram {
    bounds: &'static [f64],
    stripes: [HistogramStripe; STRIPES],
}

impl Histogram {
    /// `bounds`: the buckets' upper bounds in seconds, ascending, at most [`MAX_BUCKETS`].
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            stripes: [const { HistogramStripe([const { AtomicU64::new(0) }; MAX_BUCKETS + 2]) };
                STRIPES],
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let stripe = &self.stripes[STRIPE.with(|i| *i)].0;
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            stripe[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        stripe[MAX_BUCKETS].fetch_add(micros, Ordering::Relaxed);
        stripe[MAX_BUCKETS + 1].fetch_add(1, Ordering::Relaxed);
    }

    /// How long it has been since `since`, if there is one.
    pub fn observe_since(&self, since: Option<std::time::Instant>) {
        if let Some(at) = since {
            self.observe(at.elapsed());
        }
    }

    /// Slot `i` summed over the stripes.
    fn total(&self, i: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[i].load(Ordering::Relaxed))
            .sum()
    }

    /// What it holds now: observations per bucket of its bounds (not cumulative; past
    /// the last bound they are only in `count`), their sum in microseconds, their count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.total(i)),
            sum_micros: self.total(MAX_BUCKETS),
            count: self.total(MAX_BUCKETS + 1),
        }
    }

    /// Its text exposition under `name`.
    fn render(&self, name: &str, out: &mut String) {
        out.push_str(&format!("# TYPE {name} histogram\n"));
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.total(i);
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        let count = self.total(MAX_BUCKETS + 1);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        let sum = self.total(MAX_BUCKETS) as f64 / 1e6;
        out.push_str(&format!("{name}_sum {sum}\n{name}_count {count}\n"));
    }
}

/// A [`Histogram`] read at one moment ([`Histogram::snapshot`]): `buckets` in the order of
/// its bounds (those past them, 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; MAX_BUCKETS],
    pub sum_micros: u64,
    pub count: u64,
}

/// Requests to the app's `--auth-endpoint`, by how long each took (answered or not).
pub static AUTH_REQUEST_SECONDS: Histogram = Histogram::new(REQUEST_BOUNDS);

/// Writes to connections (WebSocket, RESP subscriber, long-polling response), by how long
/// the oldest publication frame they carried waited since its publication began to be
/// delivered on this node ([`crate::outbox`] stamps it).
pub static DELIVERY_SECONDS: Histogram = Histogram::new(DELIVERY_BOUNDS);
/// Requests to the app's `--auth-endpoint` that did not authorize the channel (refused,
/// unreachable, timed out, or an unusable answer).
pub static AUTH_REFUSED: Counter = Counter::new();

/// One labelled family: `name{label="value"} v` per row.
pub fn render_labelled(
    name: &str,
    kind: &str,
    label: &str,
    rows: &[(String, u64)],
    out: &mut String,
) {
    out.push_str(&format!("# TYPE {name} {kind}\n"));
    for (value, v) in rows {
        let value = value.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{name}{{{label}=\"{value}\"}} {v}\n"));
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// A gauge that goes up and down (open connections).
pub struct Gauge(AtomicU64);

impl Gauge {
    pub const fn new() -> Self {
        Gauge(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Self::new()
    }
}

/// Subscribers disconnected because their outbox overflowed (any protocol).
pub static SLOW_CONSUMERS_DROPPED: Counter = Counter::new();
/// Connections accepted on the RESP port since start.
pub static RESP_CONNECTIONS_TOTAL: Counter = Counter::new();
/// RESP connections open now.
pub static RESP_CONNECTIONS: Gauge = Gauge::new();
/// RESP connections refused because maxclients was reached.
pub static RESP_REJECTED: Counter = Counter::new();
/// RESP commands processed.
pub static RESP_COMMANDS: Counter = Counter::new();
/// socket.io WebSocket connections open now.
pub static SOCKETIO_WS_CONNECTIONS: Gauge = Gauge::new();
/// Pusher WebSocket connections open now (every app).
pub static PUSHER_CONNECTIONS: Gauge = Gauge::new();

/// The protocols `herald_connections` and `herald_protocol_deliveries_total` are labelled
/// with, in [`PROTOCOL_DELIVERIES`]' order.
pub const PROTOCOLS: [&str; 3] = ["socketio", "pusher", "resp"];
/// Deliveries (a publication's frame queued for one connection), by protocol.
pub static PROTOCOL_DELIVERIES: [Counter; 3] = [const { Counter::new() }; 3];

/// `herald_connections{protocol}` and `herald_protocol_deliveries_total{protocol}`.
pub fn render_protocols(out: &mut String) {
    let open = [
        SOCKETIO_WS_CONNECTIONS.get() + SOCKETIO_POLLING_SESSIONS.get(),
        PUSHER_CONNECTIONS.get(),
        RESP_CONNECTIONS.get(),
    ];
    let rows = |values: &mut dyn Iterator<Item = u64>| -> Vec<(String, u64)> {
        PROTOCOLS
            .iter()
            .map(|p| p.to_string())
            .zip(values)
            .collect()
    };
    render_labelled(
        "herald_connections",
        "gauge",
        "protocol",
        &rows(&mut open.into_iter()),
        out,
    );
    let delivered = &mut PROTOCOL_DELIVERIES.iter().map(Counter::get);
    let name = "herald_protocol_deliveries_total";
    render_labelled(name, "counter", "protocol", &rows(delivered), out);
}
/// socket.io sessions on long-polling (not, or not yet, upgraded to WebSocket): many of
/// them for long means something between browsers and herald blocks WebSocket.
pub static SOCKETIO_POLLING_SESSIONS: Gauge = Gauge::new();
/// Publications that were not a Laravel envelope and so were not sent to WebSocket clients.
pub static NON_LARAVEL_PAYLOADS: Counter = Counter::new();

/// Pusher webhook requests the app's server took (2xx).
pub static WEBHOOKS_SENT: Counter = Counter::new();
/// Pusher webhook requests given up after five minutes of retries.
pub static WEBHOOKS_FAILED: Counter = Counter::new();
/// Webhook events dropped because their URL's queue was full.
pub static WEBHOOK_EVENTS_DROPPED: Counter = Counter::new();
/// Occupancy webhook events not sent because the channel was occupied and vacated (or
/// vacated and occupied again) within the delay: each such pair counts two.
pub static WEBHOOK_EVENTS_COALESCED: Counter = Counter::new();
/// Webhook events held, queued or being posted (shutdown waits a little for them).
pub static WEBHOOK_EVENTS_PENDING: Gauge = Gauge::new();
/// HTTP connections that ended before a whole request (counted instead of logged).
pub static HTTP_CONNECTION_ERRORS: Counter = Counter::new();
/// HTTP and WebSocket connections open now (upgraded ones included).
pub static HTTP_CONNECTIONS: Gauge = Gauge::new();
/// HTTP connections refused at `--max-connections` or `--max-connections-per-ip`.
pub static HTTP_REFUSED: Counter = Counter::new();
/// HTTP requests cut off for being too slow: a request head, a request body, or a
/// response the client did not read, past its deadline.
pub static HTTP_TIMEOUTS: Counter = Counter::new();

/// TLS handshakes that failed or timed out (an untrusted certificate, a plain-text
/// client on a TLS port, a client that never finished), on either port.
pub static TLS_HANDSHAKE_FAILURES: Counter = Counter::new();
/// Times the certificates were read again (SIGHUP), and times that failed.
pub static TLS_RELOADS: Counter = Counter::new();
pub static TLS_RELOAD_FAILURES: Counter = Counter::new();
/// Configurations read again and applied (SIGHUP), and ones refused (the running one kept).
pub static CONFIG_RELOADS: Counter = Counter::new();
pub static CONFIG_RELOAD_FAILURES: Counter = Counter::new();

/// socket.io subscriptions given the app's recent refusal again without asking it.
pub static AUTH_REFUSALS_REUSED: Counter = Counter::new();
/// socket.io subscriptions refused with 431: `auth.headers` over the count or size caps.
pub static AUTH_HEADERS_TOO_LARGE: Counter = Counter::new();
/// socket.io subscriptions refused with 429: the connection's auth token bucket was empty.
pub static AUTH_RATE_LIMITED: Counter = Counter::new();
/// WebSocket subscriptions (socket.io and Pusher) refused with 429: the connection's
/// subscribe token bucket was empty (`--subscribe-burst`, `--subscribe-rate`).
pub static SUBSCRIBE_RATE_LIMITED: Counter = Counter::new();
/// socket.io subscriptions refused with 503: no turn among the auth requests in flight.
pub static AUTH_BUSY: Counter = Counter::new();
/// Engine.IO handshakes refused: too many sessions had not sent their CONNECT yet.
pub static SOCKETIO_HANDSHAKES_REFUSED: Counter = Counter::new();

/// socket.io sessions recovered (connection state recovery).
pub static SOCKETIO_RECOVERED: Counter = Counter::new();
/// socket.io recoveries refused: the client's offset (or a channel's history) no longer
/// reaches back to what it missed.
pub static SOCKETIO_RECOVERY_TOO_OLD: Counter = Counter::new();
/// socket.io recoveries refused: the session's window was over.
pub static SOCKETIO_RECOVERY_WINDOW_OVER: Counter = Counter::new();
/// socket.io recoveries refused: no session kept under that private id.
pub static SOCKETIO_RECOVERY_UNKNOWN_PID: Counter = Counter::new();
/// Events replayed to recovered socket.io sessions.
pub static SOCKETIO_REPLAYED: Counter = Counter::new();
/// Open socket.io sessions closed because their client came back on a new connection
/// with their private id (then recovered like any kept session).
pub static SOCKETIO_RECOVERY_TAKEN_OVER: Counter = Counter::new();
/// socket.io sessions that dropped uncleanly but could not be kept (--recovery-max-sessions).
pub static SOCKETIO_RECOVERY_NOT_KEPT: Counter = Counter::new();
/// socket.io sessions kept for recovery now.
pub static SOCKETIO_RECOVERY_SESSIONS: Gauge = Gauge::new();
/// Pusher channels resumed after an unclean disconnect (`herald:resumed`).
pub static PUSHER_RESUMED: Counter = Counter::new();
/// Events replayed to resumed Pusher channels.
pub static PUSHER_REPLAYED: Counter = Counter::new();
/// Why a Pusher channel resumption is refused (`herald:resume_failed`'s `reason`, the
/// label of `herald_pusher_resume_refused_total`), in `pusher::resume::Reason`'s order.
pub const PUSHER_RESUME_REASONS: [&str; 5] =
    ["too_old", "window_over", "unknown", "late", "disabled"];
/// Pusher channel resumptions refused, by reason ([`PUSHER_RESUME_REASONS`]).
pub static PUSHER_RESUME_REFUSED: [Counter; 5] = [const { Counter::new() }; 5];
/// Closed Pusher connections forgotten before their window ended, at
/// `--pusher-resume-sessions`.
pub static PUSHER_RESUME_EVICTED: Counter = Counter::new();
/// Closed Pusher connections kept for resuming now.
pub static PUSHER_RESUME_KEPT: Gauge = Gauge::new();
/// Open Pusher connections closed because their client resumed on a new one.
pub static PUSHER_RESUME_TAKEN_OVER: Counter = Counter::new();

/// Prometheus text exposition of the counters above, then of `extra` (counters that
/// belong to one server's state, such as its broker's).
pub fn render(extra: &[(&str, &str, u64)]) -> String {
    let rows: [(&str, &str, u64); 17] = [
        (
            "herald_slow_consumers_dropped_total",
            "counter",
            SLOW_CONSUMERS_DROPPED.get(),
        ),
        (
            "herald_resp_connections_total",
            "counter",
            RESP_CONNECTIONS_TOTAL.get(),
        ),
        ("herald_resp_connections", "gauge", RESP_CONNECTIONS.get()),
        ("herald_resp_rejected_total", "counter", RESP_REJECTED.get()),
        ("herald_resp_commands_total", "counter", RESP_COMMANDS.get()),
        (
            "herald_ws_connections",
            "gauge",
            SOCKETIO_WS_CONNECTIONS.get() + PUSHER_CONNECTIONS.get(),
        ),
        (
            "herald_socketio_polling_sessions",
            "gauge",
            SOCKETIO_POLLING_SESSIONS.get(),
        ),
        (
            "herald_non_laravel_payloads_total",
            "counter",
            NON_LARAVEL_PAYLOADS.get(),
        ),
        ("herald_webhooks_sent_total", "counter", WEBHOOKS_SENT.get()),
        (
            "herald_webhooks_failed_total",
            "counter",
            WEBHOOKS_FAILED.get(),
        ),
        (
            "herald_webhook_events_dropped_total",
            "counter",
            WEBHOOK_EVENTS_DROPPED.get(),
        ),
        (
            "herald_webhook_events_coalesced_total",
            "counter",
            WEBHOOK_EVENTS_COALESCED.get(),
        ),
        (
            "herald_webhook_events_pending",
            "gauge",
            WEBHOOK_EVENTS_PENDING.get(),
        ),
        (
            "herald_http_connection_errors_total",
            "counter",
            HTTP_CONNECTION_ERRORS.get(),
        ),
        ("herald_http_connections", "gauge", HTTP_CONNECTIONS.get()),
        (
            "herald_http_connections_refused_total",
            "counter",
            HTTP_REFUSED.get(),
        ),
        ("herald_http_timeouts_total", "counter", HTTP_TIMEOUTS.get()),
    ];
    let tls = [
        (
            "herald_tls_handshake_failures_total",
            "counter",
            TLS_HANDSHAKE_FAILURES.get(),
        ),
        ("herald_tls_reloads_total", "counter", TLS_RELOADS.get()),
        (
            "herald_tls_reload_failures_total",
            "counter",
            TLS_RELOAD_FAILURES.get(),
        ),
        (
            "herald_config_reloads_total",
            "counter",
            CONFIG_RELOADS.get(),
        ),
        (
            "herald_config_reload_failures_total",
            "counter",
            CONFIG_RELOAD_FAILURES.get(),
        ),
    ];
    let auth_shield = [
        (
            "herald_auth_refusals_reused_total",
            "counter",
            AUTH_REFUSALS_REUSED.get(),
        ),
        (
            "herald_auth_headers_too_large_total",
            "counter",
            AUTH_HEADERS_TOO_LARGE.get(),
        ),
        (
            "herald_auth_rate_limited_total",
            "counter",
            AUTH_RATE_LIMITED.get(),
        ),
        ("herald_auth_busy_total", "counter", AUTH_BUSY.get()),
        (
            "herald_subscribe_rate_limited_total",
            "counter",
            SUBSCRIBE_RATE_LIMITED.get(),
        ),
        ("herald_auth_refused_total", "counter", AUTH_REFUSED.get()),
        (
            "herald_socketio_handshakes_refused_total",
            "counter",
            SOCKETIO_HANDSHAKES_REFUSED.get(),
        ),
    ];
    let recovery = [
        (
            "herald_socketio_recovered_total",
            "counter",
            SOCKETIO_RECOVERED.get(),
        ),
        (
            "herald_socketio_replayed_total",
            "counter",
            SOCKETIO_REPLAYED.get(),
        ),
        (
            "herald_socketio_recovery_sessions",
            "gauge",
            SOCKETIO_RECOVERY_SESSIONS.get(),
        ),
        (
            "herald_socketio_recovery_sessions_not_kept_total",
            "counter",
            SOCKETIO_RECOVERY_NOT_KEPT.get(),
        ),
        (
            "herald_socketio_recovery_taken_over_total",
            "counter",
            SOCKETIO_RECOVERY_TAKEN_OVER.get(),
        ),
        (
            "herald_pusher_resumed_total",
            "counter",
            PUSHER_RESUMED.get(),
        ),
        (
            "herald_pusher_replayed_total",
            "counter",
            PUSHER_REPLAYED.get(),
        ),
        (
            "herald_pusher_resume_evicted_total",
            "counter",
            PUSHER_RESUME_EVICTED.get(),
        ),
        (
            "herald_pusher_resume_sessions",
            "gauge",
            PUSHER_RESUME_KEPT.get(),
        ),
        (
            "herald_pusher_resume_taken_over_total",
            "counter",
            PUSHER_RESUME_TAKEN_OVER.get(),
        ),
    ];
    let mut s = String::new();
    for &(name, kind, v) in rows
        .iter()
        .chain(&tls)
        .chain(&auth_shield)
        .chain(&recovery)
        .chain(extra)
    {
        s.push_str(&format!("# TYPE {name} {kind}\n{name} {v}\n"));
    }
    s.push_str("# TYPE herald_socketio_recoveries_refused_total counter\n");
    for (reason, n) in [
        ("too_old", &SOCKETIO_RECOVERY_TOO_OLD),
        ("window_over", &SOCKETIO_RECOVERY_WINDOW_OVER),
        ("unknown_pid", &SOCKETIO_RECOVERY_UNKNOWN_PID),
    ] {
        s.push_str(&format!(
            "herald_socketio_recoveries_refused_total{{reason=\"{reason}\"}} {}\n",
            n.get()
        ));
    }
    AUTH_REQUEST_SECONDS.render("herald_auth_request_seconds", &mut s);
    DELIVERY_SECONDS.render("herald_delivery_seconds", &mut s);
    s.push_str("# TYPE herald_pusher_resume_refused_total counter\n");
    for (reason, n) in PUSHER_RESUME_REASONS.iter().zip(&PUSHER_RESUME_REFUSED) {
        let n = n.get();
        s.push_str(&format!(
            "herald_pusher_resume_refused_total{{reason=\"{reason}\"}} {n}\n"
        ));
    }
    s
}
