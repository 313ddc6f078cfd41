//! `recover`: does any event get lost or duplicated when clients' connections are cut
//! under a steady publication rate, and they recover as real clients do?
//!
//! N clients subscribe (client i to `bench.{i mod C}`), the publisher publishes at a
//! fixed rate, and the bench drops M client connections, spread over the run: a TCP
//! reset (no close frame, no FIN), or with `--drop silent` nothing at all (the client
//! walks away from a connection the server still holds, as a phone changing networks). Each dropped client waits as its
//! library would (socket.io-client's reconnection delay, randomised ±50%), reconnects and
//! recovers:
//! - `sio4`: socket.io-client ≥ 4.6's connection state recovery. The client keeps the
//!   CONNECT reply's `pid` and the last string argument of every event (herald's offset,
//!   `herald:offset` right after CONNECT included), reconnects with
//!   `40{"pid":…,"offset":…}`, takes the events before the CONNECT reply as the replay and
//!   counts the session recovered when the reply has its old `sid` and `pid`; then it
//!   re-subscribes, as Echo ≥ 2.1.6 does (a no-op for herald).
//! - `pusher`: what `examples/pusher-recovery/herald-recovery.js` does on pusher-js:
//!   count the channel's events, send `herald:resume` with the previous socket id and
//!   the count before re-subscribing, take the events up to `herald:resumed` as the
//!   replay (or a `herald:resume_failed` reason).
//!
//! Every publication carries its channel's sequence number (`seq`, 0, 1, …; no warm-up:
//! every publication is checked), so each client's [`Ledger`] says exactly what it lost
//! (a number it never received), received twice, or received after a later one. The
//! server's history memory (`herald_history_bytes`) is sampled from /metrics during the
//! run, with its recovery counters before and after.

use crate::client::{connect_answer, echo_subscribe, number_after, Conn, Protocol};
use crate::net::{self, find};
use crate::publisher::{self, Sent};
use crate::stats::{now_us, proc_usage};
use crate::{AppArgs, PubArgs, SubArgs};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    sub: SubArgs,
    #[command(flatten)]
    publish: PubArgs,
    #[command(flatten)]
    app: AppArgs,
    /// Connections reset in total, spread evenly over the run (client k mod N at the
    /// k-th reset), ending early enough for every client to be back before the end.
    #[arg(long, default_value_t = 1000)]
    forced_reconnects: usize,
    /// A dropped client's wait before reconnecting, in ms, randomised ±50% as
    /// socket.io-client's `reconnectionDelay` (1000) and `randomizationFactor` (0.5).
    #[arg(long, default_value_t = 1000)]
    reconnect_delay_ms: u64,
    /// How a connection is dropped.
    #[arg(long, value_enum, default_value = "rst")]
    drop: Cut,
    /// PIDs of the server process(es), for CPU and RSS.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Label for the report.
    #[arg(long, default_value = "server")]
    label: String,
}

/// How the bench drops a client's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cut {
    /// A TCP reset: the server learns at once that the connection broke.
    Rst,
    /// The client walks away and the server is told nothing (a phone that changed
    /// networks): the old connection stays open, unread, until the run ends.
    Silent,
}

/// What one client received of its channel, by sequence number.
#[derive(Default)]
pub struct Ledger {
    /// Bit `s` set: sequence number `s` was received.
    seen: Vec<u64>,
    highest: Option<u64>,
    pub received: u64,
    /// A number received a second time.
    pub duplicated: u64,
    /// A number received after a higher one (a gap that filled late).
    pub out_of_order: u64,
}

impl Ledger {
    /// Note sequence number `seq`; false if it had been received before.
    pub fn record(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return false;
        }
        self.seen[word] |= bit;
        self.received += 1;
        if self.highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(seq));
        true
    }

    /// Numbers below `published` never received: the gaps that never filled.
    pub fn lost(&self, published: u64) -> u64 {
        let full = (published / 64) as usize;
        let mut have: u64 = self
            .seen
            .iter()
            .take(full)
            .map(|w| w.count_ones() as u64)
            .sum();
        let rest = published % 64;
        if rest > 0 {
            if let Some(w) = self.seen.get(full) {
                have += (w & ((1u64 << rest) - 1)).count_ones() as u64;
            }
        }
        published - have
    }
}

/// What happened to one client over the run.
#[derive(Default)]
pub struct Outcome {
    pub ledger: Ledger,
    /// Connections reset by the bench.
    pub drops: u64,
    pub recovered: u64,
    /// Recoveries refused, by reason (socket.io says none: `new_session`).
    pub refused: BTreeMap<String, u64>,
    /// Events received as a replay (before the CONNECT reply; up to `herald:resumed`).
    pub replayed: u64,
    /// Reconnection attempts that failed (the client tries again after its delay).
    pub reconnect_failures: u64,
    /// Subscribed when the run ended.
    pub back: bool,
    pub errors: Vec<String>,
    live_us: Vec<u64>,
    replay_us: Vec<u64>,
}

impl Outcome {
    fn refuse(&mut self, reason: &str) {
        *self.refused.entry(reason.to_string()).or_default() += 1;
    }

    fn note_error(&mut self, e: &str) {
        if self.errors.len() < 3 {
            self.errors.push(e.to_string());
        }
    }

    /// A bench event: its sequence number in the ledger, its latency in the live or
    /// the replay histogram.
    fn deliver(&mut self, p: &[u8], replay: bool) {
        let Some(seq) = number_after(p, b"seq") else {
            return self.note_error("a bench event without seq");
        };
        self.ledger.record(seq);
        let latency = number_after(p, b"ts").map(|ts| now_us().saturating_sub(ts).max(1));
        if replay {
            self.replayed += 1;
            self.replay_us.extend(latency);
        } else {
            self.live_us.extend(latency);
        }
    }
}

/// What a client of one protocol does on each connection: handshake, recover when it
/// has something to recover, subscribe; then handle each message.
trait Recovering {
    fn path(&self) -> String;
    async fn establish(&mut self, c: &mut Conn, out: &mut Outcome) -> Result<(), String>;
    /// One message after `establish`: the reply to send, if any.
    fn handle(&mut self, p: &[u8], out: &mut Outcome) -> Result<Option<String>, String>;
}

/// socket.io-client ≥ 4.6 with recovery, under Echo ≥ 2.1.6 (which re-subscribes).
struct Sio {
    channel: String,
    sid: Option<String>,
    pid: Option<String>,
    offset: Option<String>,
}

/// The last argument of an event packet when it is a string: socket.io-client's
/// `_lastOffset` (`42["bench","bench.1",{…},"1a-7"]` → `1a-7`).
pub fn last_string_arg(p: &[u8]) -> Option<&str> {
    let body = p.strip_suffix(b"\"]")?;
    let start = body.iter().rposition(|b| *b == b'"')? + 1;
    std::str::from_utf8(&body[start..]).ok()
}

/// The `sid` and `pid` of a CONNECT reply `40{"sid":…,"pid":…}`.
pub fn connect_ids(p: &[u8]) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(p.get(2..)?).ok()?;
    let id = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    Some((id("sid")?, id("pid")))
}

impl Sio {
    fn event(&mut self, p: &[u8], out: &mut Outcome, replay: bool) {
        if let Some(o) = last_string_arg(p) {
            self.offset = Some(o.to_string());
        }
        if p.starts_with(br#"42["bench","#) {
            out.deliver(p, replay);
        }
    }
}

impl Recovering for Sio {
    fn path(&self) -> String {
        "/socket.io/?EIO=4&transport=websocket".into()
    }

    async fn establish(&mut self, c: &mut Conn, out: &mut Outcome) -> Result<(), String> {
        let open = c.next_text().await?;
        if !open.starts_with(b"0{") {
            return Err(format!("bad open: {}", String::from_utf8_lossy(&open)));
        }
        let resuming = self.pid.is_some();
        let connect = match &self.pid {
            Some(pid) => {
                let mut auth = serde_json::json!({ "pid": pid });
                if let Some(o) = &self.offset {
                    auth["offset"] = o.as_str().into();
                }
                format!("40{auth}")
            }
            None => "40".into(),
        };
        c.send(&connect).await?;
        loop {
            let p = c.next_text().await?;
            if &p[..] == b"2" {
                c.send("3").await?;
            } else if let Some(answer) = connect_answer(&p) {
                answer?;
                let (sid, pid) =
                    connect_ids(&p).ok_or_else(|| format!("bad CONNECT reply {p:?}"))?;
                if resuming {
                    if pid == self.pid && Some(&sid) == self.sid.as_ref() {
                        out.recovered += 1;
                    } else {
                        out.refuse("new_session");
                    }
                }
                (self.sid, self.pid) = (Some(sid), pid);
                break;
            } else if p.starts_with(b"42") {
                // Before the CONNECT reply: the replay.
                self.event(&p, out, true);
            }
        }
        c.send(&echo_subscribe(&self.channel)).await
    }

    fn handle(&mut self, p: &[u8], out: &mut Outcome) -> Result<Option<String>, String> {
        if p == b"2" {
            return Ok(Some("3".into()));
        }
        if p.starts_with(b"42") {
            self.event(p, out, false);
        } else if p.starts_with(b"44") || p.starts_with(b"41") {
            return Err(format!("socket.io: {}", String::from_utf8_lossy(p)));
        }
        Ok(None)
    }
}

/// pusher-js with `examples/pusher-recovery/herald-recovery.js`, one channel.
struct Pusher {
    channel: String,
    app_key: String,
    previous: Option<String>,
    /// The snippet's `seen[channel]`: its count and flags, once the channel has had a
    /// message.
    seen: bool,
    received: u64,
    resumed: bool,
    resuming: bool,
    subscribed: bool,
}

impl Pusher {
    fn new(channel: String, app_key: String) -> Self {
        Pusher {
            channel,
            app_key,
            previous: None,
            seen: false,
            received: 0,
            resumed: false,
            resuming: false,
            subscribed: false,
        }
    }

    /// The snippet's `state_change` to `connected`: `herald:resume` to send, if any.
    fn connected(&mut self, socket_id: String) -> Option<String> {
        let ask = match (&self.previous, self.seen) {
            (Some(prev), true) => {
                let msg = serde_json::json!({
                    "event": "herald:resume",
                    "data": {
                        "socket_id": prev,
                        "channels": { &self.channel: { "received": self.received, "resumed": self.resumed } },
                    },
                });
                self.resuming = true;
                self.resumed = false;
                Some(msg.to_string())
            }
            _ => None,
        };
        self.previous = Some(socket_id);
        ask
    }
}

/// A Pusher message's `data`, decoded when it is a JSON-encoded string (as pusher-js does).
fn pusher_data(v: &serde_json::Value) -> serde_json::Value {
    match v.get("data") {
        Some(serde_json::Value::String(s)) => {
            serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
        }
        Some(d) => d.clone(),
        None => serde_json::Value::Null,
    }
}

impl Recovering for Pusher {
    fn path(&self) -> String {
        format!(
            "/app/{}?protocol=7&client=herald-bench&version=1",
            self.app_key
        )
    }

    async fn establish(&mut self, c: &mut Conn, out: &mut Outcome) -> Result<(), String> {
        let first = c.next_text().await?;
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap_or_default();
        if v["event"] != "pusher:connection_established" {
            return Err(format!("bad open: {}", String::from_utf8_lossy(&first)));
        }
        let socket_id = pusher_data(&v)["socket_id"]
            .as_str()
            .ok_or("connection_established without socket_id")?
            .to_string();
        if let Some(resume) = self.connected(socket_id) {
            c.send(&resume).await?;
        }
        self.subscribed = false;
        let sub =
            serde_json::json!({"event": "pusher:subscribe", "data": {"channel": &self.channel}});
        c.send(&sub.to_string()).await?;
        while !self.subscribed {
            let p = c.next_text().await?;
            if let Some(reply) = self.handle(&p, out)? {
                c.send(&reply).await?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, p: &[u8], out: &mut Outcome) -> Result<Option<String>, String> {
        // Bench events are most messages: found without parsing.
        if find(&p[..p.len().min(64)], br#""event":"bench""#).is_some() {
            self.seen = true;
            self.received += 1;
            out.deliver(p, self.resuming);
            return Ok(None);
        }
        let v: serde_json::Value =
            serde_json::from_slice(p).map_err(|e| format!("bad Pusher message: {e}"))?;
        let event = v["event"].as_str().unwrap_or_default();
        match event {
            "pusher:ping" => return Ok(Some(r#"{"event":"pusher:pong","data":{}}"#.into())),
            "pusher:error" => return Err(format!("pusher:error {}", pusher_data(&v))),
            "herald:resumed" | "herald:resume_failed" => {
                let data = pusher_data(&v);
                if data["channel"] == self.channel.as_str() {
                    let ok = event == "herald:resumed";
                    (self.resuming, self.resumed, self.received) = (false, ok, 0);
                    if ok {
                        out.recovered += 1;
                    } else {
                        out.refuse(data["reason"].as_str().unwrap_or("?"));
                    }
                }
            }
            "pusher_internal:subscription_succeeded" if v["channel"] == self.channel.as_str() => {
                self.seen = true;
                if !self.resuming {
                    (self.received, self.resumed) = (0, false);
                }
                self.subscribed = true;
            }
            "pusher:subscription_error" => return Err(format!("subscription_error {v}")),
            _ => {}
        }
        Ok(None)
    }
}

/// What every client shares: where to connect, when to drop, when to stop.
#[derive(Clone)]
struct Ctx {
    server: SocketAddr,
    source: IpAddr,
    reconnect_delay: Duration,
    drop: Arc<Notify>,
    how: Cut,
    /// Connections dropped silently, kept open until the run ends.
    abandoned: Arc<parking_lot::Mutex<Vec<Conn>>>,
    stop: CancellationToken,
}

/// socket.io-client's first reconnection wait: the delay randomised ±50%.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Open a connection and bring it to the subscribed state, within 15 s.
async fn open<P: Recovering>(p: &mut P, ctx: &Ctx, out: &mut Outcome) -> Result<Conn, String> {
    let attempt = async {
        let io = net::Stream::Plain(net::connect(ctx.source, ctx.server).await?);
        let mut c = Conn::websocket(io, ctx.server, &p.path()).await?;
        p.establish(&mut c, out).await?;
        Ok(c)
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .map_err(|_| "handshake, recovery or subscribe timed out".to_string())?
}

/// One client for the whole run: connect, receive, and after every drop (the bench's
/// or the server's) wait and reconnect, until the run stops.
async fn client<P: Recovering>(
    mut p: P,
    ctx: Ctx,
    ready: tokio::sync::oneshot::Sender<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Outcome {
    let mut out = Outcome::default();
    // The first connection is made under the connect gate, the reconnections are not.
    let mut ready = Some((ready, permit));
    loop {
        let conn = tokio::select! {
            _ = ctx.stop.cancelled() => return out,
            c = open(&mut p, &ctx, &mut out) => c,
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                out.note_error(&e);
                if let Some((r, _)) = ready.take() {
                    let _ = r.send(false);
                    return out;
                }
                out.reconnect_failures += 1;
                tokio::select! {
                    _ = ctx.stop.cancelled() => return out,
                    _ = tokio::time::sleep(jitter(ctx.reconnect_delay)) => continue,
                }
            }
        };
        if let Some((r, _)) = ready.take() {
            let _ = r.send(true);
        }
        out.back = true;
        loop {
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => return out,
                _ = ctx.drop.notified() => {
                    match ctx.how {
                        Cut::Rst => conn.reset(),
                        Cut::Silent => ctx.abandoned.lock().push(conn),
                    }
                    out.drops += 1;
                    break;
                }
                r = conn.next_text() => {
                    let reply = r.and_then(|t| p.handle(&t, &mut out));
                    match reply {
                        Ok(None) => {}
                        Ok(Some(reply)) => if let Err(e) = conn.send(&reply).await {
                            out.note_error(&e);
                            break;
                        },
                        Err(e) => {
                            out.note_error(&e);
                            break;
                        }
                    }
                }
            }
        }
        out.back = false;
        tokio::select! {
            _ = ctx.stop.cancelled() => return out,
            _ = tokio::time::sleep(jitter(ctx.reconnect_delay)) => {}
        }
    }
}

/// /metrics as name (with labels) → value.
async fn metrics(server: SocketAddr) -> Result<BTreeMap<String, f64>, String> {
    let mut io = TcpStream::connect(server)
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    io.write_all(&net::request("GET", "/metrics", server, "", b""))
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    let r = net::response(&mut io, &mut BytesMut::new()).await?;
    if r.status != 200 {
        return Err(format!("metrics: {}", r.excerpt()));
    }
    Ok(parse_metrics(&String::from_utf8_lossy(&r.body)))
}

fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

const HISTORY_BYTES: &str = "herald_history_bytes";

/// Sample `herald_history_bytes` every 250 ms until `stop`: its largest value.
async fn watch_history(server: SocketAddr, stop: CancellationToken) -> Option<f64> {
    let mut max: Option<f64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return max,
            _ = tick.tick() => {}
        }
        if let Ok(m) = metrics(server).await {
            if let Some(b) = m.get(HISTORY_BYTES) {
                max = Some(max.map_or(*b, |x| x.max(*b)));
            }
        }
    }
}

/// Reset `m` connections evenly over `span` from now, client k mod N at the k-th.
async fn dropper(drops: Vec<Arc<Notify>>, m: usize, span: Duration) {
    let start = tokio::time::Instant::now();
    for k in 0..m {
        tokio::time::sleep_until(start + span.mul_f64(k as f64 / m as f64)).await;
        drops[k % drops.len()].notify_one();
    }
}

pub async fn run(a: RecoverArgs) {
    let RecoverArgs {
        sub,
        publish,
        app,
        forced_reconnects,
        reconnect_delay_ms,
        drop: how,
        server_pids,
        label,
    } = a;
    let abandoned = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let reconnect_delay = Duration::from_millis(reconnect_delay_ms);
    let duration = Duration::from_secs(publish.duration);
    // The last reset leaves time for the slowest reconnection (1.5 × the delay) and its
    // replay before the publisher stops.
    let Some(span) = duration.checked_sub(reconnect_delay.mul_f64(1.5) + Duration::from_secs(2))
    else {
        eprintln!("herald-bench: --duration must exceed 1.5 × --reconnect-delay-ms + 2 s");
        std::process::exit(2);
    };
    let usage = |pids: &[u32]| -> (u64, u64) {
        pids.iter()
            .filter_map(|p| proc_usage(*p))
            .fold((0, 0), |a, u| (a.0 + u.0, a.1 + u.1))
    };
    let before = metrics(sub.server).await.unwrap_or_else(|e| {
        eprintln!("[{label}] no /metrics: {e}");
        BTreeMap::new()
    });
    let stop = CancellationToken::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(sub.connect_concurrency));
    let mut clients = Vec::new();
    let mut drops = Vec::new();
    let mut readies = Vec::new();
    let t0 = Instant::now();
    for i in 0..sub.connections {
        let channel = format!("bench.{}", i % sub.channels);
        let ctx = Ctx {
            server: sub.server,
            source: IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + (i % sub.sources.max(1) as usize) as u8,
            )),
            reconnect_delay,
            drop: Arc::new(Notify::new()),
            how,
            abandoned: abandoned.clone(),
            stop: stop.clone(),
        };
        drops.push(ctx.drop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = gate.clone();
        let (protocol, key) = (sub.protocol, app.app_key.clone());
        clients.push(tokio::spawn(async move {
            let permit = gate
                .acquire_owned()
                .await
                .expect("the gate is never closed");
            match protocol {
                Protocol::Sio4 => {
                    let p = Sio {
                        channel,
                        sid: None,
                        pid: None,
                        offset: None,
                    };
                    client(p, ctx, tx, permit).await
                }
                Protocol::Pusher => client(Pusher::new(channel, key), ctx, tx, permit).await,
                other => {
                    let mut out = Outcome::default();
                    out.note_error(&format!(
                        "recover: no recovery in --protocol {}",
                        other.name()
                    ));
                    let _ = tx.send(false);
                    out
                }
            }
        }));
        readies.push(rx);
    }
    let (mut connected, mut failed) = (0u64, 0u64);
    for r in readies {
        match r.await {
            Ok(true) => connected += 1,
            _ => failed += 1,
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    eprintln!("[{label}] subscribers ready: {connected} connected, {failed} failed");
    // Let the last subscriptions land before the first publication.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu_before, rss_idle) = usage(&server_pids);
    let history_stop = CancellationToken::new();
    let history = tokio::spawn(watch_history(sub.server, history_stop.clone()));
    let plan = publisher::Plan {
        // Every publication is checked: no warm-up.
        warmup: Duration::ZERO,
        ..crate::plan(
            &publish,
            &app,
            publish.api.or(Some(sub.server)),
            sub.channels,
        )
    };
    let (sent, ()) = tokio::join!(
        publisher::run(&plan),
        dropper(drops, forced_reconnects, span)
    );
    let sent = sent.unwrap_or_else(|e| Sent {
        per_channel: vec![0; sub.channels],
        failed: 0,
        errors: vec![e],
    });
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_after, rss_end) = usage(&server_pids);
    stop.cancel();
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.unwrap_or_default());
    }
    history_stop.cancel();
    let history_max = history.await.ok().flatten();
    drop(abandoned);
    let after = metrics(sub.server).await.unwrap_or_default();
    for e in &sent.errors {
        eprintln!("[{label}] publish error: {e}");
    }
    report(Report {
        label,
        sub: &sub,
        publish: &publish,
        forced_reconnects,
        reconnect_delay_ms,
        how,
        sent: &sent,
        outcomes: &outcomes,
        connected,
        failed,
        connect_secs,
        history: (history_max, after.get(HISTORY_BYTES).copied()),
        server: recovery_counters(sub.protocol, &before, &after),
        server_cpu_ms: cpu_after.saturating_sub(cpu_before),
        rss: (rss_idle, rss_end),
    });
}

/// The server's recovery counters of `protocol`'s edge over the run (after − before),
/// and the history's evictions.
fn recovery_counters(
    protocol: Protocol,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let edge = match protocol {
        Protocol::Pusher => "herald_pusher_",
        _ => "herald_socketio_",
    };
    after
        .iter()
        .filter(|(k, _)| {
            (k.starts_with(edge)
                && ["recover", "resume", "replayed"]
                    .iter()
                    .any(|w| k.contains(w))
                && !k.ends_with("_sessions"))
                || k.starts_with("herald_history_evicted")
        })
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

struct Report<'a> {
    label: String,
    sub: &'a SubArgs,
    publish: &'a PubArgs,
    forced_reconnects: usize,
    reconnect_delay_ms: u64,
    how: Cut,
    sent: &'a Sent,
    outcomes: &'a [Outcome],
    connected: u64,
    failed: u64,
    connect_secs: f64,
    /// `herald_history_bytes`: the largest sampled during the run, and at the end.
    history: (Option<f64>, Option<f64>),
    server: BTreeMap<String, f64>,
    server_cpu_ms: u64,
    /// Server RSS (KiB) before publishing and at the end.
    rss: (u64, u64),
}

fn report(r: Report<'_>) {
    let hist = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
    let (mut live, mut replay) = (hist(), hist());
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let (mut expected, mut received, mut lost, mut duplicated, mut out_of_order) = (0, 0, 0, 0, 0);
    let (mut drops, mut recovered, mut replayed, mut reconnect_failures, mut not_back) =
        (0, 0, 0, 0, 0);
    for (i, o) in r.outcomes.iter().enumerate() {
        let published = r.sent.per_channel[i % r.sub.channels];
        expected += published;
        received += o.ledger.received;
        lost += o.ledger.lost(published);
        duplicated += o.ledger.duplicated;
        out_of_order += o.ledger.out_of_order;
        drops += o.drops;
        recovered += o.recovered;
        replayed += o.replayed;
        reconnect_failures += o.reconnect_failures;
        not_back += u64::from(!o.back);
        for (why, n) in &o.refused {
            *refused.entry(why.clone()).or_default() += n;
        }
        for us in &o.live_us {
            let _ = live.record(*us);
        }
        for us in &o.replay_us {
            let _ = replay.record(*us);
        }
        for e in &o.errors {
            eprintln!("[{}] client {i}: {e}", r.label);
        }
    }
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let refused_total: u64 = refused.values().sum();
    let secs = r.publish.duration as f64;
    eprintln!(
        "[{}] {} conns ({} failed) | {} resets, {} recovered, {} refused {:?}, {} replayed | \
         lost {} duplicated {} out of order {} of {} expected | live p50 {:.1} p99 {:.1} max {:.1} ms | \
         replayed p50 {:.1} max {:.1} ms | history max {:?} end {:?} bytes",
        r.label,
        r.connected,
        r.failed,
        drops,
        recovered,
        refused_total,
        refused,
        replayed,
        lost,
        duplicated,
        out_of_order,
        expected,
        q(&live, 0.5),
        q(&live, 0.99),
        live.max() as f64 / 1000.0,
        q(&replay, 0.5),
        replay.max() as f64 / 1000.0,
        r.history.0,
        r.history.1,
    );
    // Two objects: one json! of them all is past the macro's recursion limit.
    let mut line = serde_json::json!({
            "label": r.label,
            "bench": "recover",
            "protocol": r.sub.protocol.name(),
            "mode": r.publish.mode.name(),
            "connections": r.connected,
            "failed": r.failed,
            "connect_per_s": r.connected as f64 / r.connect_secs.max(1e-3),
            "channels": r.sub.channels,
            "rate": r.publish.rate,
            "duration_s": r.publish.duration,
            "published": r.sent.per_channel.iter().sum::<u64>(),
            "publish_failed": r.sent.failed,
            "forced_reconnects": r.forced_reconnects,
            "reconnect_delay_ms": r.reconnect_delay_ms,
            "drop": format!("{:?}", r.how).to_lowercase(),
            "resets": drops,
            "recovered": recovered,
            "refused": refused_total,
            "refused_reasons": refused,
            "reconnect_failures": reconnect_failures,
            "not_back": not_back,
            "expected": expected,
            "received": received,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "replayed": replayed,
    });
    let figures = serde_json::json!({
            "deliveries_per_s": received as f64 / secs,
            "p50_ms": q(&live, 0.5), "p90_ms": q(&live, 0.9), "p99_ms": q(&live, 0.99),
            "p999_ms": q(&live, 0.999), "max_ms": live.max() as f64 / 1000.0,
            "replay_p50_ms": q(&replay, 0.5), "replay_p99_ms": q(&replay, 0.99),
            "replay_max_ms": replay.max() as f64 / 1000.0,
            "history_bytes_max": r.history.0,
            "history_bytes_end": r.history.1,
            "server": r.server,
            "server_cpu_ms": r.server_cpu_ms,
            "server_rss_kib_start": r.rss.0,
            "server_rss_kib_end": r.rss.1,
    });
    if let (Some(l), serde_json::Value::Object(f)) = (line.as_object_mut(), figures) {
        l.extend(f);
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbroken_run_loses_and_duplicates_nothing() {
        let mut l = Ledger::default();
        for s in 0..200 {
            assert!(l.record(s));
        }
        assert_eq!((l.lost(200), l.duplicated, l.out_of_order), (0, 0, 0));
        assert_eq!(l.received, 200);
    }

    #[test]
    fn a_gap_that_never_fills_is_lost() {
        let mut l = Ledger::default();
        for s in (0..130).filter(|s| !(60..=70).contains(s)) {
            l.record(s);
        }
        assert_eq!(l.lost(130), 11);
        // What was published after the last received number is lost too.
        assert_eq!(l.lost(135), 16);
        assert_eq!(Ledger::default().lost(3), 3, "nothing received");
    }

    #[test]
    fn a_gap_that_fills_late_is_not_lost_but_out_of_order() {
        let mut l = Ledger::default();
        for s in [0, 1, 4, 2, 3, 5] {
            l.record(s);
        }
        assert_eq!((l.lost(6), l.duplicated, l.out_of_order), (0, 0, 2));
    }

    #[test]
    fn a_number_seen_twice_is_a_duplicate() {
        let mut l = Ledger::default();
        for s in [0, 1, 2, 1, 2, 3, 64, 64] {
            l.record(s);
        }
        assert_eq!(l.duplicated, 3);
        assert_eq!(l.received, 5);
        assert_eq!(l.lost(65), 60, "4..=63 never came");
    }

    #[test]
    fn deliveries_before_the_connect_reply_are_the_replay() {
        let mut o = Outcome::default();
        o.deliver(
            br#"42["bench","bench.0",{"w":0,"seq":3,"ts":1},"a-3"]"#,
            true,
        );
        o.deliver(
            br#"42["bench","bench.0",{"w":0,"seq":4,"ts":1},"a-4"]"#,
            false,
        );
        o.deliver(
            br#"42["bench","bench.0",{"w":0,"seq":4,"ts":1},"a-4"]"#,
            false,
        );
        assert_eq!(
            (o.replayed, o.ledger.received, o.ledger.duplicated),
            (1, 2, 1)
        );
    }

    #[test]
    fn the_offset_is_the_last_string_argument() {
        assert_eq!(
            last_string_arg(br#"42["bench","bench.1",{"seq":1,"s":"x"},"1a2b-17"]"#),
            Some("1a2b-17")
        );
        assert_eq!(
            last_string_arg(br#"42["herald:offset","9f-0"]"#),
            Some("9f-0")
        );
        assert_eq!(last_string_arg(br#"42["bench","bench.1",{"s":"x"}]"#), None);
        assert_eq!(
            connect_ids(br#"40{"sid":"abc","pid":"def"}"#),
            Some(("abc".into(), Some("def".into())))
        );
    }

    #[test]
    fn socketio_client_keeps_every_offset_and_answers_pings() {
        let mut s = Sio {
            channel: "bench.0".into(),
            sid: None,
            pid: None,
            offset: None,
        };
        let mut o = Outcome::default();
        assert_eq!(s.handle(b"2", &mut o), Ok(Some("3".into())));
        s.handle(br#"42["herald:offset","a-0"]"#, &mut o).unwrap();
        assert_eq!(s.offset.as_deref(), Some("a-0"));
        s.handle(br#"42["bench","bench.0",{"seq":0,"ts":1},"b-9"]"#, &mut o)
            .unwrap();
        assert_eq!(s.offset.as_deref(), Some("b-9"));
        assert_eq!(o.ledger.received, 1);
    }

    /// The snippet's counting across two drops: the count restarts at
    /// `herald:resumed`, and `resumed` says so in the next request.
    #[test]
    fn pusher_client_counts_as_the_snippet_does() {
        let mut p = Pusher::new("bench.0".into(), "k".into());
        let mut o = Outcome::default();
        let ev = |seq: u64| {
            format!(
                r#"{{"event":"bench","channel":"bench.0","data":"{{\"w\":0,\"seq\":{seq},\"ts\":1}}"}}"#
            )
        };
        let ok = br#"{"event":"pusher_internal:subscription_succeeded","channel":"bench.0","data":"{}"}"#;
        assert_eq!(
            p.connected("1.1".into()),
            None,
            "first connection: nothing to resume"
        );
        p.handle(ok, &mut o).unwrap();
        for s in 0..3 {
            p.handle(ev(s).as_bytes(), &mut o).unwrap();
        }
        // Dropped; the new connection asks for what follows the 3 it counted.
        let ask: serde_json::Value =
            serde_json::from_str(&p.connected("2.2".into()).unwrap()).unwrap();
        assert_eq!(ask["data"]["socket_id"], "1.1");
        assert_eq!(ask["data"]["channels"]["bench.0"]["received"], 3);
        assert_eq!(ask["data"]["channels"]["bench.0"]["resumed"], false);
        p.handle(ok, &mut o).unwrap();
        p.handle(ev(3).as_bytes(), &mut o).unwrap();
        assert_eq!(
            (o.replayed, p.received),
            (1, 4),
            "counted on through the replay"
        );
        p.handle(
            br#"{"event":"herald:resumed","data":"{\"channel\":\"bench.0\",\"replayed\":1}"}"#,
            &mut o,
        )
        .unwrap();
        p.handle(ev(4).as_bytes(), &mut o).unwrap();
        assert_eq!((o.recovered, o.replayed, p.received), (1, 1, 1));
        let ask: serde_json::Value =
            serde_json::from_str(&p.connected("3.3".into()).unwrap()).unwrap();
        assert_eq!(ask["data"]["socket_id"], "2.2");
        assert_eq!(ask["data"]["channels"]["bench.0"]["received"], 1);
        assert_eq!(ask["data"]["channels"]["bench.0"]["resumed"], true);
        p.handle(br#"{"event":"herald:resume_failed","data":"{\"channel\":\"bench.0\",\"reason\":\"too_old\"}"}"#, &mut o).unwrap();
        p.handle(ok, &mut o).unwrap();
        assert_eq!(o.refused.get("too_old"), Some(&1));
        assert_eq!((p.received, p.resumed, p.resuming), (0, false, false));
        assert_eq!(
            p.handle(br#"{"event":"pusher:ping","data":{}}"#, &mut o),
            Ok(Some(r#"{"event":"pusher:pong","data":{}}"#.into()))
        );
    }
}
