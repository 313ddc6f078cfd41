//! Pusher's HTTP API on the HTTP port: trigger events, query channels and users,
//! terminate a user's connections. Requests are signed as Pusher signs them. Queries
//! and terminations speak for every node of a cluster ([`super::census`]).
//!
//! Verification: `auth_key` is the app's key, `auth_timestamp` within 600 s of now,
//! `auth_version` 1.0, `body_md5` the MD5 of a non-empty body, and `auth_signature`
//! the HMAC-SHA256 of `METHOD\npath\nsorted query` (every parameter but the signature,
//! decoded, `k=v` joined with `&`). Failures answer as Pusher does: 401 for a bad
//! signature, key or timestamp, 403 for a disabled app, 404 for an unknown app, 400
//! for a bad request and 413 for a payload over the app's limit.
//!
//! herald adds one read: `GET /apps/{id}/channels/{channel}/events?after=<offset>&limit=<n>`
//! answers the channel's publications after `after` (herald's offset, `<epoch hex>-<seq>`)
//! from its history, oldest first, at most `limit` (default and ceiling
//! `--pusher-history-limit`): `{"events":[{"offset","event","channel","data","socket_id"?}],
//! "more":bool,"position":"<offset>"|null}` (`data` as Pusher sends it, a string; `more`:
//! ask again after the last offset; `position`: the channel's latest offset, null when
//! herald keeps no stream of it; in a cluster both come from the whole cluster's history,
//! [`crate::broker::missed`]). Without `after` it answers no events and the position,
//! where an audit can start. When the history no longer holds everything after `after`
//! (another epoch, expired, evicted, or no history of that channel) it answers 410 Gone
//! with the reason, never part of it.

use super::apps::{App, Apps};
use super::census::{self, Census, Question};
use super::signature;
use crate::broker::{Broker, Namespace, Offset, Origin, Publication};
use crate::edge_policy::valid_channel_name;
use crate::laravel::{ChannelKind, Envelope};
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use warp::reply::{Reply, Response};

/// How far `auth_timestamp` may be from the server's clock.
const TIMESTAMP_WINDOW: u64 = 600;
/// Most channels one event may go to, and most events in one batch.
const MAX_CHANNELS: usize = 100;
const MAX_BATCH: usize = 10;
/// Longest event name.
const MAX_EVENT_NAME: usize = 200;

/// A failed request: status and message.
type Failure = (StatusCode, String);

fn fail(status: StatusCode, message: impl Into<String>) -> Failure {
    (status, message.into())
}

fn reply_error((status, message): Failure) -> Response {
    warp::reply::with_status(message, status).into_response()
}

/// The request the route hands over: method, path, raw query, body.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a Bytes,
}

/// Largest body read at all; the app's `max_message_size` bounds `data` inside it.
pub fn body_limit(apps: &Apps) -> usize {
    // A batch of ten full events plus their JSON framing.
    let biggest = apps_max_message(apps);
    biggest.saturating_mul(MAX_BATCH + 1).max(64 * 1024)
}

fn apps_max_message(apps: &Apps) -> usize {
    apps.all()
        .iter()
        .map(|a| a.config().max_message_size())
        .max()
        .unwrap_or(0)
}

/// Serve one API request for app `app_id`; `rest` is the path after `/apps/{id}`.
/// Events are published on `broker`; queries about clients are asked of every node
/// ([`census`]), and a reply some node did not answer for in time says how many in
/// `X-Herald-Nodes-Missing`.
pub async fn handle(
    apps: &Apps,
    broker: &dyn Broker,
    app_id: &str,
    rest: &[&str],
    req: Request<'_>,
) -> Response {
    let Some(app) = apps.by_id(app_id) else {
        return reply_error(fail(
            StatusCode::NOT_FOUND,
            format!("Unknown app id {app_id}"),
        ));
    };
    let result = match authenticate(&app, &req) {
        Ok(params) => route(&app, broker, rest, &req, &params).await,
        Err(f) => Err(f),
    };
    match result {
        Ok((v, 0)) => warp::reply::json(&v).into_response(),
        Ok((v, missing)) => {
            warp::reply::with_header(warp::reply::json(&v), "X-Herald-Nodes-Missing", missing)
                .into_response()
        }
        Err(f) => reply_error(f),
    }
}

/// What a route answers: the JSON, and how many nodes did not answer for it in time.
type Answer = (Value, usize);

/// Ask every node `question` ([`census::ask`]): 503 when the cluster cannot be asked.
async fn ask(
    app: &App,
    broker: &dyn Broker,
    question: Question,
) -> Result<(Census, usize), Failure> {
    census::ask(broker, app, question)
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e))
}

/// The decoded query parameters, in order of appearance.
type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn authenticate(app: &App, req: &Request<'_>) -> Result<Params, Failure> {
    let params: Params = form_urlencoded::parse(req.query.as_bytes())
        .into_owned()
        .collect();
    let unauthorized = |m: String| fail(StatusCode::UNAUTHORIZED, m);
    match param(&params, "auth_key") {
        None => return Err(unauthorized("Missing auth_key".into())),
        Some(k) if k != app.config().key => {
            return Err(unauthorized(format!("Unknown auth_key {k}")))
        }
        _ => {}
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match param(&params, "auth_timestamp").map(str::parse::<u64>) {
        Some(Ok(ts)) if ts.abs_diff(now) <= TIMESTAMP_WINDOW => {}
        Some(Ok(ts)) => {
            return Err(unauthorized(format!(
                "Timestamp expired: Given timestamp ({ts}) not within {TIMESTAMP_WINDOW}s of server time ({now})"
            )))
        }
        _ => return Err(unauthorized("Missing or invalid auth_timestamp".into())),
    }
    if let Some(v) = param(&params, "auth_version") {
        if v != "1.0" {
            return Err(unauthorized(format!("Unsupported auth_version {v}")));
        }
    }
    if !req.body.is_empty() {
        let md5 = hex::encode(Md5::digest(req.body));
        if param(&params, "body_md5") != Some(md5.as_str()) {
            return Err(unauthorized(
                "The body_md5 does not match the MD5 of the body".into(),
            ));
        }
    }
    let Some(given) = param(&params, "auth_signature") else {
        return Err(unauthorized("Missing auth_signature".into()));
    };
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    signed.sort();
    let query = signed
        .iter()
        .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{}\n{}\n{query}", req.method, req.path);
    if !signature::verify_hex(&app.config().secret, to_sign.as_bytes(), given) {
        return Err(unauthorized(format!(
            "Invalid signature: Expected HMAC SHA256 hex digest of {to_sign:?}"
        )));
    }
    if !app.config().enabled {
        return Err(fail(StatusCode::FORBIDDEN, "Application is disabled"));
    }
    Ok(params)
}

/// A percent-encoded path segment (a channel name or user id), decoded.
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(
    app: &App,
    broker: &dyn Broker,
    rest: &[&str],
    req: &Request<'_>,
    params: &Params,
) -> Result<Answer, Failure> {
    let info = || param(params, "info").unwrap_or("");
    let named = |names: Vec<String>| Question::Named {
        app: app.config().id.clone(),
        names,
    };
    match (req.method, rest) {
        (&Method::POST, ["events"]) => {
            let ev: EventBody = parse_body(req.body)?;
            let channels = ev.channels(MAX_CHANNELS)?;
            let info = ev.info.as_deref().unwrap_or("");
            check_info(&channels, info)?;
            trigger(app, broker, &ev, &channels)?;
            let mut out = Map::new();
            let mut missing = 0;
            if !info.is_empty() {
                let (census, m) = ask(app, broker, named(channels.clone())).await?;
                missing = m;
                out.insert("channels".into(), channels_info(&census, &channels, info));
            }
            Ok((Value::Object(out), missing))
        }
        (&Method::POST, ["batch_events"]) => {
            let batch: BatchBody = parse_body(req.body)?;
            if batch.batch.len() > MAX_BATCH {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("Batch too large: at most {MAX_BATCH} events"),
                ));
            }
            let mut all = Vec::with_capacity(batch.batch.len());
            for ev in &batch.batch {
                let channels = ev.channels(1)?;
                ev.check(app)?;
                check_info(&channels, ev.info.as_deref().unwrap_or(""))?;
                all.push(channels);
            }
            for (ev, channels) in batch.batch.iter().zip(&all) {
                trigger(app, broker, ev, channels)?;
            }
            if batch.batch.iter().all(|e| e.info.is_none()) {
                return Ok((json!({}), 0));
            }
            let asked: Vec<String> = batch
                .batch
                .iter()
                .zip(&all)
                .filter(|(ev, _)| ev.info.as_deref().is_some_and(|i| !i.is_empty()))
                .map(|(_, channels)| channels[0].clone())
                .collect();
            let (census, missing) = ask(app, broker, named(asked)).await?;
            let infos: Vec<Value> = batch
                .batch
                .iter()
                .zip(&all)
                .map(|(ev, channels)| match ev.info.as_deref().unwrap_or("") {
                    "" => json!({}),
                    i => channels_info(&census, channels, i)
                        .get(&channels[0])
                        .cloned()
                        .unwrap_or(json!({})),
                })
                .collect();
            Ok((json!({ "batch": infos }), missing))
        }
        (&Method::GET, ["channels"]) => {
            let prefix = param(params, "filter_by_prefix").unwrap_or("");
            let wants_users = info().split(',').any(|i| i == "user_count");
            if wants_users && !prefix.starts_with("presence-") {
                return Err(fail(StatusCode::BAD_REQUEST, "user_count may only be requested for presence channels (filter_by_prefix=presence-)"));
            }
            let question = Question::Channels {
                app: app.config().id.clone(),
                prefix: prefix.to_string(),
            };
            let (census, missing) = ask(app, broker, question).await?;
            let mut channels = Map::new();
            for (name, counted) in census.channels.iter().filter(|(_, c)| c.subscriptions > 0) {
                let mut o = Map::new();
                for i in info().split(',') {
                    match i {
                        "user_count" => o.insert("user_count".into(), counted.users.len().into()),
                        "subscription_count" => {
                            o.insert("subscription_count".into(), counted.subscriptions.into())
                        }
                        _ => None,
                    };
                }
                channels.insert(name.clone(), Value::Object(o));
            }
            Ok((json!({ "channels": channels }), missing))
        }
        (&Method::GET, ["channels", name]) => {
            let name = decode(name);
            let names = std::slice::from_ref(&name);
            check_info(names, info())?;
            let (census, missing) = ask(app, broker, named(names.to_vec())).await?;
            let v = channels_info(&census, names, info());
            let mut o = match v.get(&name) {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            let occupied = census
                .channels
                .get(&name)
                .is_some_and(|c| c.subscriptions > 0);
            o.insert("occupied".into(), occupied.into());
            Ok((Value::Object(o), missing))
        }
        (&Method::GET, ["channels", name, "users"]) => {
            let name = decode(name);
            if ChannelKind::of(&name) != ChannelKind::Presence {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "Users may only be listed for presence channels",
                ));
            }
            let (census, missing) = ask(app, broker, named(vec![name.clone()])).await?;
            let users: Vec<Value> = census
                .channels
                .get(&name)
                .into_iter()
                .flat_map(|c| &c.users)
                .map(|id| json!({ "id": id }))
                .collect();
            Ok((json!({ "users": users }), missing))
        }
        (&Method::GET, ["channels", name, "events"]) => {
            Ok((history(app, broker, &decode(name), params).await?, 0))
        }
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            let question = Question::Terminate {
                app: app.config().id.clone(),
                user: decode(user),
            };
            let (_, missing) = ask(app, broker, question).await?;
            Ok((json!({}), missing))
        }
        _ => Err(fail(StatusCode::NOT_FOUND, "Not found")),
    }
}

/// The channel's publications after `after`, at most `limit`: see the module doc.
async fn history(
    app: &App,
    broker: &dyn Broker,
    name: &str,
    params: &Params,
) -> Result<Value, Failure> {
    let bad = |m: String| fail(StatusCode::BAD_REQUEST, m);
    if !valid_channel_name(name) {
        return Err(bad(format!("Invalid channel name {name:?}")));
    }
    let after: Option<Offset> = match param(params, "after") {
        None => None,
        Some(a) => Some(
            a.parse()
                .map_err(|_| bad(format!("Invalid after {a:?}: expected <epoch hex>-<seq>")))?,
        ),
    };
    let most = app.config().recovery_limits.history_read;
    let limit = match param(params, "limit").map(str::parse::<usize>) {
        None => most,
        Some(Ok(n)) if (1..=most).contains(&n) => n,
        Some(_) => return Err(bad(format!("Invalid limit: from 1 to {most}"))),
    };
    let position = crate::broker::position(broker, &app.namespace, name.as_bytes()).await;
    let position = position.map(|p| p.to_string());
    let Some(after) = after else {
        return Ok(json!({ "events": [], "more": false, "position": position }));
    };
    let missed = crate::broker::missed(broker, &app.namespace, name.as_bytes(), after).await;
    let Ok(missed) = missed else {
        return Err(fail(
            StatusCode::GONE,
            format!("History of {name} does not reach back to {after}: it expired, was evicted, or is of another epoch"),
        ));
    };
    let more = missed.len() > limit;
    let events: Vec<Value> = missed
        .iter()
        .take(limit)
        .filter_map(|p| {
            let env = Envelope::decode(&p.payload)?;
            let data = match p.origin {
                Origin::Server => env.pusher_data().to_owned(),
                Origin::Client => env
                    .client_data()
                    .map_or_else(|| "null".into(), |d| d.get().into()),
            };
            let mut o = json!({
                "offset": p.offset?.to_string(),
                "event": env.event,
                "channel": name,
                "data": data,
            });
            if let Some(socket) = env.socket {
                o["socket_id"] = socket.into();
            }
            Some(o)
        })
        .collect();
    Ok(json!({ "events": events, "more": more, "position": position }))
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}")))
}

#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Value,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

impl EventBody {
    /// The target channels, checked: at least one, at most `max`, each a valid name.
    fn channels(&self, max: usize) -> Result<Vec<String>, Failure> {
        let list: Vec<String> = match (&self.channels, &self.channel) {
            (Some(cs), _) => cs.clone(),
            (None, Some(c)) => vec![c.clone()],
            (None, None) => {
                return Err(fail(StatusCode::BAD_REQUEST, "Missing channel or channels"))
            }
        };
        if list.is_empty() {
            return Err(fail(StatusCode::BAD_REQUEST, "Missing channel or channels"));
        }
        if list.len() > max {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("Too many channels: at most {max}"),
            ));
        }
        if let Some(bad) = list.iter().find(|c| !valid_channel_name(c)) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("Invalid channel name {bad:?}"),
            ));
        }
        Ok(list)
    }

    /// The data as the JSON text the event carries (strings as they are, anything else encoded).
    fn data_text(&self) -> String {
        match &self.data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    fn check(&self, app: &App) -> Result<(), Failure> {
        if self.name.is_empty() || self.name.len() > MAX_EVENT_NAME {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("Event name must be 1 to {MAX_EVENT_NAME} characters"),
            ));
        }
        if self.data_text().len() > app.config().max_message_size() {
            return Err(fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Event data too large: at most {} bytes",
                    app.config().max_message_size()
                ),
            ));
        }
        if let Some(s) = &self.socket_id {
            let ok = s.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            });
            if !ok {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid socket_id {s:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// Publish one event on each of `channels` of the app's namespace: one envelope shared
/// by all of them. The default app's events reach socket.io clients of the channel
/// too, and RESP subscribers of its name.
fn trigger(
    app: &App,
    broker: &dyn Broker,
    ev: &EventBody,
    channels: &[String],
) -> Result<(), Failure> {
    ev.check(app)?;
    let payload = Envelope::from_pusher_api(&ev.name, &ev.data_text(), ev.socket_id.as_deref());
    for channel in channels {
        let name = Bytes::copy_from_slice(channel.as_bytes());
        let mut p = Publication::new(app.namespace.clone(), name, payload.clone());
        if app.namespace == Namespace::Default {
            p = p.seen_by_resp();
        }
        broker.publish(p);
    }
    app.counts.api_events.add(channels.len() as u64);
    Ok(())
}

/// Refuse what `info` may not ask of `channels`: an unknown attribute, or `user_count`
/// of a channel that is not a presence channel.
fn check_info(channels: &[String], info: &str) -> Result<(), Failure> {
    for attr in info.split(',').filter(|a| !a.is_empty()) {
        match attr {
            "user_count" => {
                if channels
                    .iter()
                    .any(|n| ChannelKind::of(n) != ChannelKind::Presence)
                {
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        "user_count is only available for presence channels",
                    ));
                }
            }
            "subscription_count" => {}
            other => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("Unknown info attribute {other:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// `{"channel": {"user_count":..,"subscription_count":..}}` for the attributes asked in
/// `info` (checked by [`check_info`]), from the census.
fn channels_info(census: &Census, channels: &[String], info: &str) -> Value {
    let mut out = Map::new();
    for name in channels {
        let counted = census.channels.get(name).cloned().unwrap_or_default();
        let mut o = Map::new();
        for attr in info.split(',') {
            match attr {
                "user_count" => o.insert("user_count".into(), counted.users.len().into()),
                "subscription_count" => {
                    o.insert("subscription_count".into(), counted.subscriptions.into())
                }
                _ => None,
            };
        }
        out.insert(name.clone(), Value::Object(o));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_path_segments() {
        assert_eq!(decode("presence-a%2Cb"), "presence-a,b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
