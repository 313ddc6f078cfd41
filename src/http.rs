//! The HTTP listener's routes: health, metrics, the dashboard, and the WebSocket/HTTP edges.

use crate::health::Health;
use crate::pusher::apps::Apps;
use crate::socketio;
use crate::state::State;
use http::StatusCode;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::reply::Reply;
use warp::Filter;

/// Health, metrics, and the routes of the edges built (None: switched off).
pub fn routes(
    state: State,
    socketio: Option<Arc<socketio::Edge>>,
    pusher: Option<Arc<Apps>>,
) -> BoxedFilter<(warp::reply::Response,)> {
    let health = state.clone();
    let healthz = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || healthz(&health.health));
    let broker = state.broker.clone();
    let presence = state.presence.clone();
    let apps = pusher.clone();
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let stats = broker.stats();
            let published = stats.published.get();
            let delivered = stats.delivered.get();
            let mut rows = vec![
                ("herald_publications_total", "counter", published),
                ("herald_deliveries_total", "counter", delivered),
            ];
            rows.extend(broker.metrics());
            rows.extend(presence.metrics());
            let mut text = crate::metrics::render(&rows);
            crate::metrics::render_protocols(&mut text);
            if let Some(apps) = &apps {
                let all = apps.all();
                let per_app = |value: &dyn Fn(&crate::pusher::apps::App) -> u64| {
                    (all.iter())
                        .map(|a| (a.config().id.clone(), value(a)))
                        .collect::<Vec<(String, u64)>>()
                };
                for (name, kind, rows) in [
                    (
                        "herald_pusher_app_connections",
                        "gauge",
                        per_app(&|a| a.connection_count() as u64),
                    ),
                    (
                        "herald_pusher_app_deliveries_total",
                        "counter",
                        per_app(&|a| a.counts.deliveries.get()),
                    ),
                    (
                        "herald_pusher_app_api_events_total",
                        "counter",
                        per_app(&|a| a.counts.api_events.get()),
                    ),
                    (
                        "herald_pusher_app_client_events_total",
                        "counter",
                        per_app(&|a| a.counts.client_events.get()),
                    ),
                ] {
                    crate::metrics::render_labelled(name, kind, "app", &rows, &mut text);
                }
            }
            warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
                .into_response()
        });
    // Before the edges: the Pusher edge answers any other WebSocket path itself (4005).
    let dashboard = crate::dashboard::routes(&state, socketio.clone(), pusher.clone());
    healthz
        .or(metrics)
        .unify()
        .or(dashboard)
        .unify()
        .or(socketio::routes(socketio))
        .unify()
        .or(crate::pusher::routes(state, pusher))
        .unify()
        .boxed()
}

/// 200 `{"status":"ok"}`, or 503 `{"status":"degraded","problems":{part: problem}}`
/// naming each degraded part (see [`crate::health`]).
fn healthz(health: &Health) -> warp::reply::Response {
    let problems = health.problems();
    if problems.is_empty() {
        return warp::reply::json(&serde_json::json!({"status": "ok"})).into_response();
    }
    let problems: serde_json::Map<String, serde_json::Value> = problems
        .into_iter()
        .map(|(part, problem)| (part.to_string(), problem.into()))
        .collect();
    let body = serde_json::json!({"status": "degraded", "problems": problems});
    warp::reply::with_status(warp::reply::json(&body), StatusCode::SERVICE_UNAVAILABLE)
        .into_response()
}
