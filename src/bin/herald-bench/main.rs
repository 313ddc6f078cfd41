//! herald-bench: the load generator for herald and its peers.
//!
//! `run` coordinates one measurement: it spawns subscriber processes (one process may
//! hold at most 20,000 sockets here, so N connections are split over several, each
//! spreading its sockets over source addresses 127.0.0.2, 127.0.0.3, …), waits until
//! every connection is subscribed, publishes at a fixed rate (over RESP or Pusher's
//! HTTP API) with a warm-up that is not counted, collects each process's result and prints a human summary and
//! one JSON line. `subscribe` is the subscriber role on its own (what `run` spawns);
//! `publish` is the publisher role on its own. `recover` counts the events lost or
//! duplicated when clients' connections are reset and they recover ([`recovery`]).

mod client;
mod net;
mod polling;
mod publisher;
mod recovery;
mod stats;

use base64::Engine;
use clap::{Parser, Subcommand};
use client::{Protocol, Target};
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use publisher::{Mode, Plan, Sent};
use stats::{proc_usage, SubReport, Tally};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load generator for herald and its peers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct SubArgs {
    /// WebSocket server address (host:port).
    #[arg(long, default_value = "127.0.0.1:6001")]
    server: SocketAddr,
    #[arg(long, value_enum, default_value = "sio4")]
    protocol: Protocol,
    /// Subscriber connections (in total, for `run`).
    #[arg(long, short = 'n', default_value_t = 1000)]
    connections: usize,
    /// Channels `bench.0` … `bench.C-1`; connection i joins channel i mod C.
    #[arg(long, short = 'c', default_value_t = 10)]
    channels: usize,
    /// Measure latency on one connection in this many.
    #[arg(long, default_value_t = 20)]
    sample_every: usize,
    /// Number of source addresses, from 127.0.0.2 upwards.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// First connection index (set by `run` for each process).
    #[arg(long, default_value_t = 0, hide = true)]
    first: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Connect with TLS (`wss://`), trusting the CA certificates in this PEM file
    /// (WebSocket protocols only: not sio4-polling).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
}

/// The Pusher app: its key for subscribers, all three for the HTTP API
/// (the defaults are herald's default app's).
#[derive(clap::Args, Clone)]
struct AppArgs {
    /// Pusher app id (the HTTP API's `/apps/{id}/events`).
    #[arg(long, default_value = "herald")]
    app_id: String,
    /// Pusher app key (subscribers' `/app/{key}`, the HTTP API's `auth_key`).
    #[arg(long, default_value = "herald-key")]
    app_key: String,
    /// Pusher app secret (signs HTTP API requests).
    #[arg(long, default_value = "herald-secret")]
    app_secret: String,
}

#[derive(clap::Args, Clone)]
struct PubArgs {
    /// RESP address to publish to.
    #[arg(long, default_value = "127.0.0.1:6379")]
    redis: SocketAddr,
    #[arg(long)]
    password: Option<String>,
    /// Pusher HTTP API address (herald's HTTP port) for `--mode http-api`;
    /// `run` defaults to --server.
    #[arg(long)]
    api: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "publish")]
    mode: Mode,
    /// Key prefix in front of the channel name, as Laravel's redis connection adds
    /// (RESP modes only: the HTTP API names channels as clients subscribe to them).
    #[arg(long, default_value = "laravel_database_")]
    prefix: String,
    /// Publications per second (all channels together); 0: publish nothing (idle test).
    #[arg(long, short = 'r', default_value_t = 50)]
    rate: u64,
    /// Seconds measured.
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Bytes of payload per publication.
    #[arg(long, default_value_t = 200)]
    payload_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Fanout {
    Channel,
    All,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    sub: SubArgs,
    #[command(flatten)]
    publish: PubArgs,
    #[command(flatten)]
    app: AppArgs,
    /// Subscriber processes (each holds at most ~19,000 sockets).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// PIDs of the server process(es), for CPU and RSS.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Label for the report (e.g. herald-sio4, floor).
    #[arg(long, default_value = "server")]
    label: String,
    /// Who receives a publication: the subscribers of its channel, or every
    /// connection (the tutorial bridge broadcasts to all).
    #[arg(long, value_enum, default_value = "channel")]
    fanout: Fanout,
}

#[derive(Subcommand)]
enum Cmd {
    /// One full measurement: subscriber processes + publisher + report.
    Run(RunArgs),
    /// Subscriber role: connect, print READY, count until stdin closes, print a JSON result.
    Subscribe {
        #[command(flatten)]
        sub: SubArgs,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Publisher role only.
    Publish {
        #[command(flatten)]
        publish: PubArgs,
        #[command(flatten)]
        app: AppArgs,
        #[arg(long, default_value_t = 10)]
        channels: usize,
    },
    /// Recovery under forced reconnects: N clients, M connection resets under a steady
    /// rate (1,000/s by default), events lost and duplicated counted per client.
    #[command(mut_arg("rate", |a| a.default_value("1000")))]
    Recover(recovery::RecoverArgs),
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match cli.cmd {
        Cmd::Subscribe { sub, app } => rt.block_on(subscribe(sub, app.app_key)),
        Cmd::Publish {
            publish,
            app,
            channels,
        } => {
            let plan = plan(&publish, &app, publish.api, channels);
            match rt.block_on(publisher::run(&plan)) {
                Ok(sent) => {
                    for e in &sent.errors {
                        eprintln!("herald-bench: {e}");
                    }
                    println!(
                        "{{\"published\":{},\"failed\":{}}}",
                        sent.per_channel.iter().sum::<u64>(),
                        sent.failed
                    );
                }
                Err(e) => {
                    eprintln!("herald-bench: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Run(run) => rt.block_on(coordinate(run)),
        Cmd::Recover(args) => rt.block_on(recovery::run(args)),
    }
}

fn plan(p: &PubArgs, app: &AppArgs, api: Option<SocketAddr>, channels: usize) -> Plan {
    Plan {
        redis: p.redis,
        password: p.password.clone(),
        api,
        app: publisher::App {
            id: app.app_id.clone(),
            key: app.app_key.clone(),
            secret: app.app_secret.clone(),
        },
        mode: p.mode,
        prefix: p.prefix.clone(),
        channels,
        rate: p.rate,
        warmup: Duration::from_secs(p.warmup),
        duration: Duration::from_secs(p.duration),
        payload_size: p.payload_size,
    }
}

async fn subscribe(a: SubArgs, app_key: String) {
    let tls = match a.tls_ca.as_deref().map(net::tls_connector).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("herald-bench: --tls-ca: {e}");
            std::process::exit(2);
        }
    };
    if tls.is_some() && a.protocol == Protocol::Sio4Polling {
        eprintln!("herald-bench: --tls-ca is for WebSocket protocols, not sio4-polling");
        std::process::exit(2);
    }
    let tally = Arc::new(Tally::new());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let gate = Arc::new(tokio::sync::Semaphore::new(a.connect_concurrency));
    for i in a.first..a.first + a.connections {
        let t = Target {
            server: a.server,
            protocol: a.protocol,
            app_key: app_key.clone(),
            channel: format!("bench.{}", i % a.channels),
            source: IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + (i % a.sources.max(1) as usize) as u8,
            )),
            sampled: i % a.sample_every.max(1) == 0,
            tls: tls.clone(),
        };
        let (tally, tx, gate) = (tally.clone(), tx.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let (rtx, mut rrx) = tokio::sync::mpsc::channel(1);
            let conn = tokio::spawn(client::run(t, tally, rtx));
            let ok = rrx.recv().await.unwrap_or(false);
            drop(permit);
            let _ = tx.send(ok).await;
            let _ = conn.await;
        });
    }
    drop(tx);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut shown = Instant::now();
    while ok + failed < a.connections as u64 {
        match rx.recv().await {
            Some(true) => ok += 1,
            Some(false) => failed += 1,
            None => break,
        }
        // A progress line while connecting, once a second.
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprintln!(
                "[subscribers {}..{}] connecting: {ok} connected, {failed} failed of {}",
                a.first,
                a.first + a.connections,
                a.connections
            );
        }
    }
    let cpu_ready = proc_usage(std::process::id()).map_or(0, |u| u.0);
    println!("READY {ok} {failed}");
    std::io::stdout().flush().ok();
    // Count until the coordinator closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await
    .ok();
    let mut latency = Vec::new();
    V2Serializer::new()
        .serialize(&tally.histogram(), &mut latency)
        .unwrap();
    let report = SubReport {
        connected: ok,
        failed,
        received: tally.received.get(),
        warm: tally.warm.get(),
        gaps: tally.gaps.get(),
        closed: tally.closed.get(),
        errors: tally.errors.lock().clone(),
        latency: base64::engine::general_purpose::STANDARD.encode(latency),
        cpu_ms: proc_usage(std::process::id()).map_or(0, |u| u.0.saturating_sub(cpu_ready)),
    };
    println!("{}", serde_json::to_string(&report).unwrap());
}

async fn coordinate(run: RunArgs) {
    let RunArgs {
        sub,
        publish,
        app,
        procs,
        server_pids: pids,
        label,
        fanout,
    } = run;
    let usage = |pids: &[u32]| -> (u64, u64) {
        pids.iter()
            .filter_map(|p| proc_usage(*p))
            .fold((0, 0), |a, u| (a.0 + u.0, a.1 + u.1))
    };
    let (_, rss_before) = usage(&pids);
    let exe = std::env::current_exe().unwrap();
    let per = sub.connections.div_ceil(procs.max(1));
    let mut children = Vec::new();
    let t0 = Instant::now();
    for p in 0..procs.max(1) {
        let first = p * per;
        let n = per.min(sub.connections.saturating_sub(first));
        let mut child = Command::new(&exe)
            .args(["subscribe", "--server", &sub.server.to_string()])
            .args(["--protocol", &sub.protocol.name()])
            .args(["--app-key", &app.app_key])
            .args([
                "--connections",
                &n.to_string(),
                "--first",
                &first.to_string(),
            ])
            .args(["--channels", &sub.channels.to_string()])
            .args(["--sample-every", &sub.sample_every.to_string()])
            .args(["--sources", &sub.sources.to_string()])
            .args([
                "--connect-concurrency",
                &sub.connect_concurrency.to_string(),
            ])
            .args(
                sub.tls_ca
                    .iter()
                    .flat_map(|ca| [OsStr::new("--tls-ca"), ca.as_os_str()]),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn subscriber process");
        let out = BufReader::new(child.stdout.take().unwrap());
        children.push((child, out));
    }
    let (mut connected, mut failed) = (0u64, 0u64);
    for (_, out) in children.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line).ok();
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|s| s.parse().ok())
            .collect();
        connected += f.first().copied().unwrap_or(0);
        failed += f.get(1).copied().unwrap_or(sub.connections as u64);
        eprintln!("[{label}] subscribers ready: {connected} connected, {failed} failed");
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss_idle) = usage(&pids);
    let (cpu_before, _) = usage(&pids);
    let plan = plan(
        &publish,
        &app,
        publish.api.or(Some(sub.server)),
        sub.channels,
    );
    let nothing = || Sent {
        per_channel: vec![0; sub.channels],
        failed: 0,
        errors: Vec::new(),
    };
    let sent = if publish.rate > 0 {
        match publisher::run(&plan).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("herald-bench: {e}");
                Sent {
                    errors: vec![e],
                    ..nothing()
                }
            }
        }
    } else {
        nothing()
    };
    for e in &sent.errors {
        eprintln!("[{label}] publish error: {e}");
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_after, _) = usage(&pids);
    let mut reports = Vec::new();
    for (mut child, mut out) in children {
        drop(child.stdin.take());
        let mut line = String::new();
        out.read_line(&mut line).ok();
        child.wait().ok();
        if let Ok(r) = serde_json::from_str::<SubReport>(&line) {
            reports.push(r);
        }
    }
    summarize(Summary {
        label,
        fanout,
        sub: &sub,
        publish: &publish,
        sent: &sent,
        reports: &reports,
        connected,
        failed,
        connect_secs,
        rss: (rss_before, rss_idle),
        server_cpu_ms: cpu_after.saturating_sub(cpu_before),
    });
}

struct Summary<'a> {
    label: String,
    fanout: Fanout,
    sub: &'a SubArgs,
    publish: &'a PubArgs,
    sent: &'a Sent,
    reports: &'a [SubReport],
    connected: u64,
    failed: u64,
    connect_secs: f64,
    rss: (u64, u64),
    server_cpu_ms: u64,
}

fn summarize(s: Summary<'_>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let mut received = 0;
    let mut warm = 0;
    let mut gaps = 0;
    let mut bench_cpu_ms = 0;
    for r in s.reports {
        received += r.received;
        warm += r.warm;
        gaps += r.gaps;
        bench_cpu_ms += r.cpu_ms;
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&r.latency) {
            if let Ok(h) = Deserializer::new().deserialize::<u64, _>(&mut &bytes[..]) {
                hist.add(h).ok();
            }
        }
        for e in &r.errors {
            eprintln!("[{}] error: {e}", s.label);
        }
    }
    // Expected deliveries: each subscriber gets every publication on its channel
    // (or every publication, when the server broadcasts to all).
    let n = s.sub.connections as u64;
    let c = s.sub.channels as u64;
    let expected: u64 = match s.fanout {
        Fanout::All => s.sent.per_channel.iter().sum::<u64>() * n,
        Fanout::Channel => s
            .sent
            .per_channel
            .iter()
            .enumerate()
            .map(|(i, k)| k * (n / c + u64::from((i as u64) < n % c)))
            .sum(),
    };
    // CPU is measured over warm-up and measured deliveries alike.
    let worked = received + warm;
    let secs = s.publish.duration as f64;
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    let per_conn_kib = if s.connected > 0 {
        s.rss.1.saturating_sub(s.rss.0) as f64 / s.connected as f64
    } else {
        0.0
    };
    let cpu_us_per_delivery = if worked > 0 {
        s.server_cpu_ms as f64 * 1000.0 / worked as f64
    } else {
        0.0
    };
    eprintln!(
        "[{}] {} conns ({} failed, {:.0}/s) | {:.0} deliveries/s of {:.0} expected | lost {} (gaps {}) | \
         p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} ms | server {:.2} µs CPU/delivery, \
         {:.2} KiB RSS/conn | bench {:.2} µs CPU/delivery",
        s.label,
        s.connected,
        s.failed,
        s.connected as f64 / s.connect_secs.max(1e-3),
        received as f64 / secs,
        expected as f64 / secs,
        expected.saturating_sub(received),
        gaps,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        hist.max() as f64 / 1000.0,
        cpu_us_per_delivery,
        per_conn_kib,
        if worked > 0 { bench_cpu_ms as f64 * 1000.0 / worked as f64 } else { 0.0 },
    );
    println!(
        "{}",
        serde_json::json!({
            "label": s.label,
            "protocol": s.sub.protocol.name(),
            "mode": s.publish.mode.name(),
            "published": s.sent.per_channel.iter().sum::<u64>(),
            "publish_failed": s.sent.failed,
            "connections": s.connected,
            "failed": s.failed,
            "connect_per_s": s.connected as f64 / s.connect_secs.max(1e-3),
            "rate": s.publish.rate,
            "duration_s": s.publish.duration,
            "expected": expected,
            "received": received,
            "lost": expected.saturating_sub(received),
            "gaps": gaps,
            "deliveries_per_s": received as f64 / secs,
            "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
            "max_ms": hist.max() as f64 / 1000.0,
            "server_cpu_us_per_delivery": cpu_us_per_delivery,
            "server_rss_kib_before": s.rss.0,
            "server_rss_kib_idle": s.rss.1,
            "server_rss_kib_per_conn": per_conn_kib,
            "bench_cpu_us_per_delivery": if worked > 0 { bench_cpu_ms as f64 * 1000.0 / worked as f64 } else { 0.0 },
            "server_cpu_ms": s.server_cpu_ms,
            "bench_cpu_ms": bench_cpu_ms,
            "fanout": format!("{:?}", s.fanout).to_lowercase(),
        })
    );
}
