//! The publisher: Laravel-shaped payloads at a fixed rate over RESP.
//!
//! Payload: `{"event":"bench","data":{"w":W,"seq":N,"ts":MICROS,"pad":"..."},"socket":null}`,
//! `w` = 1 during warm-up (not counted by subscribers). Channels are used round-robin.
//! `--mode publish` sends `PUBLISH`, `--mode eval` Laravel's broadcast script.

use crate::stats::now_us;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Publish,
    Eval,
}

const LARAVEL_SCRIPT: &str = "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";

pub struct Plan {
    pub redis: std::net::SocketAddr,
    pub password: Option<String>,
    pub mode: Mode,
    pub prefix: String,
    pub channels: usize,
    pub rate: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub payload_size: usize,
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        bulk(out, a);
    }
}

/// Publish for warm-up + duration; returns how many measured publications were sent
/// per channel index.
pub async fn run(plan: &Plan) -> Result<Vec<u64>, String> {
    let io = TcpStream::connect(plan.redis)
        .await
        .map_err(|e| format!("redis connect: {e}"))?;
    io.set_nodelay(true).ok();
    let (mut rd, mut wr) = io.into_split();
    // Replies are read and discarded concurrently so the server never blocks on us.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let mut out = Vec::new();
    if let Some(pw) = &plan.password {
        command(&mut out, &[b"AUTH", pw.as_bytes()]);
    }
    let pad = "x".repeat(plan.payload_size.saturating_sub(80));
    let mut sent = vec![0u64; plan.channels];
    let interval = Duration::from_nanos(1_000_000_000 / plan.rate.max(1));
    let start = Instant::now();
    let total = plan.warmup + plan.duration;
    let mut seq = 0u64;
    let mut next = start;
    let mut shown = start;
    while start.elapsed() < total {
        let warm = start.elapsed() < plan.warmup;
        // A progress line while running, once a second.
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprintln!(
                "publishing: {seq} sent, {:.0} s of {:.0} ({})",
                start.elapsed().as_secs_f64(),
                total.as_secs_f64(),
                if warm { "warm-up" } else { "measured" }
            );
        }
        let idx = (seq as usize) % plan.channels;
        let channel = format!("{}bench.{idx}", plan.prefix);
        let payload = format!(
            r#"{{"event":"bench","data":{{"w":{},"seq":{},"ts":{},"pad":"{pad}"}},"socket":null}}"#,
            warm as u8,
            seq / plan.channels as u64,
            now_us()
        );
        match plan.mode {
            Mode::Publish => command(
                &mut out,
                &[b"PUBLISH", channel.as_bytes(), payload.as_bytes()],
            ),
            Mode::Eval => command(
                &mut out,
                &[
                    b"EVAL",
                    LARAVEL_SCRIPT.as_bytes(),
                    b"0",
                    payload.as_bytes(),
                    channel.as_bytes(),
                ],
            ),
        }
        wr.write_all(&out)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        out.clear();
        if !warm {
            sent[idx] += 1;
        }
        seq += 1;
        next += interval;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    drop(wr);
    drain.abort();
    Ok(sent)
}
