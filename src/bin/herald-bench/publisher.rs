//! The publisher: Laravel-shaped payloads at a fixed rate, over RESP or over Pusher's
//! HTTP API.
//!
//! Every publication's data is `{"w":W,"seq":N,"ts":MICROS,"pad":"..."}`, `w` = 1
//! during warm-up (not counted by subscribers); channels `bench.0` … are used
//! round-robin. What goes on the wire is what Laravel's broadcasters send:
//! - `--mode publish` / `--mode eval` (the redis broadcaster): the envelope
//!   `{"event":"bench","data":DATA,"socket":null}` on `{prefix}bench.N` (the redis
//!   connection's key prefix, which herald strips), by `PUBLISH` or Laravel's script.
//! - `--mode http-api` (the pusher broadcaster): `POST /apps/{id}/events` with
//!   `{"name":"bench","channels":["bench.N"],"data":"DATA"}`, signed with the app's
//!   key and secret; channels named as Pusher clients subscribe to them, no prefix.
//!   Requests are pipelined on one keep-alive connection (publication order kept, no
//!   round trip per publication held against the rate); a task reads every answer,
//!   and a publication not answered 200 is not counted as sent.

use crate::net;
use crate::stats::now_us;
use bytes::BytesMut;
use clap::ValueEnum;
use herald::pusher::signature::hmac_hex;
use md5::{Digest, Md5};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// RESP `PUBLISH` of Laravel's envelope (the redis broadcaster without a script)
    Publish,
    /// RESP `EVAL` of Laravel's broadcast script (what the redis broadcaster sends)
    Eval,
    /// Pusher's HTTP API, signed (what Laravel's pusher broadcaster sends)
    HttpApi,
}

impl Mode {
    /// The name `--mode` takes.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

const LARAVEL_SCRIPT: &str = "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";

/// The Pusher app the HTTP API publishes as.
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

pub struct Plan {
    pub redis: SocketAddr,
    pub password: Option<String>,
    /// The HTTP API's address (herald's HTTP port), for `Mode::HttpApi`.
    pub api: Option<SocketAddr>,
    pub app: App,
    pub mode: Mode,
    pub prefix: String,
    pub channels: usize,
    pub rate: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub payload_size: usize,
}

/// What was published: measured publications per channel index (failed ones not
/// counted), and the publications (warm-up included) the server refused.
pub struct Sent {
    pub per_channel: Vec<u64>,
    pub failed: u64,
    /// The first few refusals, for the report.
    pub errors: Vec<String>,
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

/// Publish for warm-up + duration.
pub async fn run(plan: &Plan) -> Result<Sent, String> {
    let mut sink = Sink::open(plan).await?;
    let pad = "x".repeat(plan.payload_size.saturating_sub(80));
    let mut sent = Sent {
        per_channel: vec![0u64; plan.channels],
        failed: 0,
        errors: Vec::new(),
    };
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
        let data = format!(
            r#"{{"w":{},"seq":{},"ts":{},"pad":"{pad}"}}"#,
            warm as u8,
            seq / plan.channels as u64,
            now_us()
        );
        sink.publish(plan, idx, warm, &data).await?;
        if !warm {
            sent.per_channel[idx] += 1;
        }
        seq += 1;
        next += interval;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    sink.finish(&mut sent).await?;
    Ok(sent)
}

/// Where publications go: a RESP connection whose replies are discarded, or an HTTP
/// API connection whose answers are checked.
enum Sink {
    Resp {
        wr: OwnedWriteHalf,
        drain: JoinHandle<()>,
        out: Vec<u8>,
    },
    Api {
        wr: OwnedWriteHalf,
        host: SocketAddr,
        /// (channel index, warm-up) of each request sent, in order, for the reader.
        asked: mpsc::UnboundedSender<(usize, bool)>,
        answers: JoinHandle<Sent>,
    },
}

impl Sink {
    async fn open(plan: &Plan) -> Result<Sink, String> {
        let to = match (plan.mode, plan.api) {
            (Mode::HttpApi, Some(api)) => api,
            (Mode::HttpApi, None) => return Err("--mode http-api needs --api host:port".into()),
            _ => plan.redis,
        };
        let io = TcpStream::connect(to)
            .await
            .map_err(|e| format!("{} connect {to}: {e}", plan.mode.name()))?;
        io.set_nodelay(true).ok();
        let (mut rd, wr) = io.into_split();
        if plan.mode == Mode::HttpApi {
            let (asked, queue) = mpsc::unbounded_channel();
            let answers = tokio::spawn(check_answers(rd, queue, plan.channels));
            return Ok(Sink::Api {
                wr,
                host: to,
                asked,
                answers,
            });
        }
        // Replies are read and discarded concurrently so the server never blocks on us.
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let mut out = Vec::new();
        if let Some(pw) = &plan.password {
            command(&mut out, &[b"AUTH", pw.as_bytes()]);
        }
        Ok(Sink::Resp { wr, drain, out })
    }

    async fn publish(
        &mut self,
        plan: &Plan,
        idx: usize,
        warm: bool,
        data: &str,
    ) -> Result<(), String> {
        match self {
            Sink::Resp { wr, out, .. } => {
                let channel = format!("{}bench.{idx}", plan.prefix);
                let payload = format!(r#"{{"event":"bench","data":{data},"socket":null}}"#);
                let (channel, payload) = (channel.as_bytes(), payload.as_bytes());
                match plan.mode {
                    Mode::Eval => command(
                        out,
                        &[b"EVAL", LARAVEL_SCRIPT.as_bytes(), b"0", payload, channel],
                    ),
                    _ => command(out, &[b"PUBLISH", channel, payload]),
                }
                wr.write_all(out)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                out.clear();
            }
            Sink::Api {
                wr, asked, host, ..
            } => {
                let body = serde_json::json!({
                    "name": "bench",
                    "channels": [format!("bench.{idx}")],
                    "data": data,
                })
                .to_string();
                let target = signed_target(&plan.app, body.as_bytes());
                let req = net::request(
                    "POST",
                    &target,
                    *host,
                    "Content-Type: application/json\r\n",
                    body.as_bytes(),
                );
                // Queued before the write, so the reader never meets an answer it cannot place.
                let _ = asked.send((idx, warm));
                wr.write_all(&req)
                    .await
                    .map_err(|e| format!("http-api: {e}"))?;
            }
        }
        Ok(())
    }

    /// Done publishing: for the HTTP API, wait for every answer and take the refused
    /// publications off the count.
    async fn finish(self, sent: &mut Sent) -> Result<(), String> {
        match self {
            Sink::Resp { wr, drain, .. } => {
                drop(wr);
                drain.abort();
            }
            Sink::Api {
                wr, asked, answers, ..
            } => {
                drop(asked);
                let refused = tokio::time::timeout(Duration::from_secs(30), answers)
                    .await
                    .map_err(|_| "http-api: answers still missing 30 s after the last request")?
                    .map_err(|e| e.to_string())?;
                drop(wr);
                for (s, r) in sent.per_channel.iter_mut().zip(&refused.per_channel) {
                    *s -= r;
                }
                sent.failed = refused.failed;
                sent.errors = refused.errors;
            }
        }
        Ok(())
    }
}

/// The request target of `POST /apps/{id}/events` with Pusher's signature: the
/// parameters (already in name order) signed as `POST\npath\nquery` with the secret.
fn signed_target(app: &App, body: &[u8]) -> String {
    let path = format!("/apps/{}/events", app.id);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let md5 = hex::encode(Md5::digest(body));
    let params =
        |key: &str| format!("auth_key={key}&auth_timestamp={now}&auth_version=1.0&body_md5={md5}");
    let signature = hmac_hex(
        &app.secret,
        format!("POST\n{path}\n{}", params(&app.key)).as_bytes(),
    );
    let key: String = form_urlencoded::byte_serialize(app.key.as_bytes()).collect();
    format!("{path}?{}&auth_signature={signature}", params(&key))
}

/// Read one answer per request sent; returns what was refused (measured refusals per
/// channel, all refusals, the first few reasons).
async fn check_answers(
    mut rd: OwnedReadHalf,
    mut asked: mpsc::UnboundedReceiver<(usize, bool)>,
    channels: usize,
) -> Sent {
    let mut refused = Sent {
        per_channel: vec![0; channels],
        failed: 0,
        errors: Vec::new(),
    };
    let mut buf = BytesMut::new();
    let mut gone: Option<String> = None;
    while let Some((idx, warm)) = asked.recv().await {
        let why = match &gone {
            Some(e) => Some(e.clone()),
            None => match net::response(&mut rd, &mut buf).await {
                Ok(r) if r.status == 200 => None,
                Ok(r) => Some(r.excerpt()),
                Err(e) => {
                    gone = Some(e.clone());
                    Some(e)
                }
            },
        };
        if let Some(why) = why {
            refused.failed += 1;
            if !warm {
                refused.per_channel[idx] += 1;
            }
            if refused.errors.len() < 5 {
                refused.errors.push(format!("http-api: {why}"));
            }
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_pushers() {
        let app = App {
            id: "herald".into(),
            key: "herald key".into(),
            secret: "herald-secret".into(),
        };
        let target = signed_target(&app, b"{}");
        let (path, query) = target.split_once('?').unwrap();
        assert_eq!(path, "/apps/herald/events");
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "auth_key",
                "auth_timestamp",
                "auth_version",
                "body_md5",
                "auth_signature"
            ]
        );
        assert_eq!(params[0].1, "herald key", "the key is sent encoded");
        assert_eq!(
            params[3].1, "99914b932bd37a50b983c5e7c90ae93b",
            "MD5 of {{}}"
        );
        let signed = format!(
            "POST\n/apps/herald/events\nauth_key=herald key&auth_timestamp={}&auth_version=1.0&body_md5={}",
            params[1].1, params[3].1
        );
        assert_eq!(params[4].1, hmac_hex("herald-secret", signed.as_bytes()));
    }
}
