//! The Pusher edge: protocol v7 over WebSocket at `/app/{key}`, Pusher's HTTP API at
//! `/apps/{id}/...`, and the redis-driver path (RESP publications to the default app).
//!
//! Each app is one broker subscriber in its own namespace (the default app in the
//! default one, shared with RESP and socket.io): it subscribes to a channel's stream
//! for each connection that joins the channel, and holds its cache channels' patterns
//! for good (see [`start`]). A publication's frame is encoded once per app.
//!
//! - [`apps`]: the configured apps, their quotas, signed-in users and watchlists.
//! - [`channels`]: each app's subscribers, presence members, cached last events and
//!   subscription counts.
//! - [`protocol`]: client messages in, server frames out (encoded once).
//! - [`signature`]: HMAC-SHA256 channel, user and request signatures.
//! - [`websocket`]: one connection's session.
//! - [`http_api`]: events, batches, channel and user queries, terminations.
//! - [`webhooks`]: signed POSTs to the app about channels, members and client events.
//! - [`resume`]: recovery after an unclean disconnect (`herald:resume`), without a byte
//!   added to any frame.

pub mod apps;
mod census;
pub mod channels;
mod handover;
pub mod http_api;
pub mod protocol;
pub mod resume;
pub mod signature;
pub mod webhooks;
pub mod websocket;

use crate::broker::{Origin, Publication, StreamSubscriber, SubscriberId};
use crate::laravel::{self, Envelope};
use crate::state::State;
use apps::Apps;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use warp::filters::BoxedFilter;
use warp::path::{FullPath, Tail};
use warp::reply::{Reply, Response};
use warp::Filter;

/// Publications of the app's namespace, whatever their ingress: the frame encoded once
/// per publication, the envelope's `socket` left out. A server event is Pusher's
/// `{"event","channel","data":"<JSON text>"}` and a cache channel keeps it; a client
/// event is relayed with its data as sent, and never kept.
impl StreamSubscriber for apps::App {
    fn id(&self) -> SubscriberId {
        self.subscriber_id
    }

    fn deliver(&self, p: &Publication) -> usize {
        let n = laravel::broadcast(p, |name, env| {
            let except = env.socket.as_deref();
            let frame = frame(p.origin, name, env);
            match p.origin {
                Origin::Server => self.channels.publish(name, &frame, except, p.offset),
                Origin::Client => self.channels.relay(name, &frame, except, p.offset),
            }
        });
        self.counts.deliveries.add(n as u64);
        crate::metrics::PROTOCOL_DELIVERIES[1].add(n as u64);
        n
    }
}

/// Each cache channel of `app` keeps its last event, also one published while no client
/// was subscribed: the app holds their patterns in its namespace for as long as it exists.
pub fn hold_cache_channels(state: &State, app: &Arc<apps::App>) {
    for prefix in channels::CACHE_PREFIXES {
        let pattern = format!("{prefix}*");
        let me: Arc<dyn StreamSubscriber> = app.clone();
        (state.broker).stream_psubscribe(&app.namespace, pattern.as_bytes(), me);
    }
}

/// SIGHUP: serve the apps of `config` from now on ([`Apps::reload`]).
pub fn reload(
    state: &State,
    apps: &Apps,
    config: &crate::config::Config,
) -> Result<apps::Reloaded, String> {
    let (served, withheld) = config.pusher_apps();
    for why in &withheld {
        tracing::warn!("{why}");
    }
    apps.reload(&served, &config.allowed_origins, |app| {
        hold_cache_channels(state, app)
    })
}

/// The frame a publication on channel `name` is sent as, live or replayed.
fn frame(origin: Origin, name: &str, env: &Envelope) -> Bytes {
    match origin {
        Origin::Server => protocol::event(&env.event, Some(name), env.pusher_data()),
        Origin::Client => {
            let user_id = env.user_id.as_deref();
            protocol::client_event(&env.event, name, env.client_data(), user_id)
        }
    }
}

/// A query string that may be absent.
fn raw_query() -> BoxedFilter<(String,)> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .boxed()
}

/// The apps herald serves ([`Config::pusher_apps`](crate::config::Config::pusher_apps)'s),
/// or None with `--pusher false`. A cache channel must keep its last event even when
/// it was published while no client was subscribed, so each app holds the patterns of
/// its cache channels in its namespace for as long as it exists.
pub fn start(state: &State) -> Option<Arc<Apps>> {
    let c = state.config();
    if !c.pusher {
        tracing::info!("Pusher edge off (--pusher false)");
        return None;
    }
    let (served, withheld) = c.pusher_apps();
    for why in &withheld {
        tracing::warn!("{why}");
    }
    let apps = Arc::new(Apps::new(
        &served,
        &c.allowed_origins,
        c.auth_ca_file.as_deref(),
        state.presence.clone(),
    ));
    let resuming = apps.all().iter().filter(|a| a.kept_marks.is_some()).count();
    if resuming > 0 {
        tracing::info!(
            apps = resuming,
            window_seconds = c.recovery_limits.window.as_secs(),
            "Pusher recovery on (herald:resume, examples/pusher-recovery)"
        );
    }
    if let Some(cluster) = state.broker.cluster() {
        // The HTTP API's channel and user queries ask every node; this one answers here.
        cluster.answer_with(apps.clone());
        if let Some(kept) = apps.kept_marks() {
            let (broker, window) = (state.broker.clone(), kept.window());
            let shutdown = state.shutdown.clone();
            tokio::spawn(handover::write_open(broker, kept, window, shutdown));
        }
    }
    for app in apps.all().iter() {
        hold_cache_channels(state, app);
    }
    match apps.default_app() {
        Some(default) => {
            let dev_secret = default.config().secret == crate::config::DEV_APP[2];
            tracing::info!(
                apps = served.len(),
                app_id = %default.config().id,
                app_key = %default.config().key,
                app_secret = if dev_secret { crate::config::DEV_APP[2] } else { "(set)" },
                "Pusher edge on /app/{{key}} and /apps/{{id}}; default app"
            );
        }
        None => tracing::info!(
            "Pusher edge on, but no app is served: connections get 4001 and the HTTP API 404. \
             Set --app-id, --app-key and --app-secret (HERALD_APP_ID, HERALD_APP_KEY, \
             HERALD_APP_SECRET) or add [[apps]] to the --config file; for local development, \
             --http-bind 127.0.0.1:6001 serves the built-in herald-key app"
        ),
    }
    Some(apps)
}

/// The Pusher edge's routes for `apps`, or none (404) without the edge.
pub fn routes(state: State, apps: Option<Arc<Apps>>) -> BoxedFilter<(Response,)> {
    let Some(apps) = apps else {
        return warp::any()
            .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
            .boxed();
    };

    let connect = {
        let (state, apps) = (state.clone(), apps.clone());
        warp::path!("app" / String)
            .and(raw_query())
            .and(warp::header::optional::<String>("origin"))
            .and(crate::ws::upgrade(&state.connections))
            .map(
                move |key: String,
                      query: String,
                      origin: Option<String>,
                      up: crate::ws::Upgrade| {
                    let verdict = websocket::check_protocol(&query).and_then(|()| {
                        let app = apps
                            .by_key(&key)
                            .ok_or((4001, "App key not in this cluster"))?;
                        if !app.config().enabled {
                            return Err((4003, "Application is disabled"));
                        }
                        if !app.origin_allowed(origin.as_deref()) {
                            return Err((4009, "Origin not allowed"));
                        }
                        Ok(app.clone())
                    });
                    let state = state.clone();
                    up.reply(move |io| async move {
                        match verdict {
                            Ok(app) => websocket::run(io, state, app).await,
                            Err(refusal) => websocket::refuse(io, refusal).await,
                        }
                    })
                    .into_response()
                },
            )
    };
    // Any other WebSocket path is Pusher's 4005, except socket.io's, which is not ours to answer.
    let unknown_path = warp::path::full()
        .and_then(|p: FullPath| async move {
            if p.as_str().starts_with("/socket.io") {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            }
        })
        .untuple_one()
        .and(crate::ws::upgrade(&state.connections))
        .map(|up: crate::ws::Upgrade| {
            up.reply(|io| websocket::refuse(io, (4005, "Path not found")))
                .into_response()
        });
    let limit = http_api::body_limit(&apps);
    let body_timeout = state.config().http_body_timeout;
    let api = warp::path("apps")
        .and(warp::path::param::<String>())
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::path::full())
        .and(raw_query())
        .and(warp::body::stream())
        .and_then(
            move |id: String, tail: Tail, method: Method, path: FullPath, query: String, body| {
                let (apps, state) = (apps.clone(), state.clone());
                async move {
                    let body = match read_body(body, limit, body_timeout).await {
                        Ok(b) => b,
                        Err(status) => {
                            let msg = match status {
                                StatusCode::PAYLOAD_TOO_LARGE => "Request Entity Too Large",
                                StatusCode::REQUEST_TIMEOUT => "Request Timeout",
                                _ => "Cannot read the request body",
                            };
                            return Ok::<_, warp::Rejection>(
                                warp::reply::with_status(msg, status).into_response(),
                            );
                        }
                    };
                    let rest: Vec<&str> =
                        tail.as_str().split('/').filter(|s| !s.is_empty()).collect();
                    let req = http_api::Request {
                        method: &method,
                        path: path.as_str(),
                        query: &query,
                        body: &body,
                    };
                    Ok(http_api::handle(&apps, &*state.broker, &id, &rest, req).await)
                }
            },
        );
    connect.or(api).unify().or(unknown_path).unify().boxed()
}

/// Read a request body, refusing (413) past `limit` bytes without buffering the rest,
/// and (408) when it has not all arrived within `deadline`.
async fn read_body<S, B>(body: S, limit: usize, deadline: Duration) -> Result<Bytes, StatusCode>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let read = async {
        futures_util::pin_mut!(body);
        let mut out = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if out.len() + chunk.remaining() > limit {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(out.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or_else(|_| {
            crate::metrics::HTTP_TIMEOUTS.inc();
            Err(StatusCode::REQUEST_TIMEOUT)
        })
}
