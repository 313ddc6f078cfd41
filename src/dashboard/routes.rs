//! The dashboard's HTTP routes: `/dashboard` (the page), `/dashboard/{asset}` (its
//! script and style) and `/dashboard/ws` (its WebSocket), all behind the token.
//!
//! Without `--dashboard-token` every `/dashboard` path is a plain 404, so nothing says
//! a dashboard exists. With it, a request without the token is answered 401 with a
//! form asking for it, never the page; the WebSocket is refused (401) before any
//! upgrade, and from a browser page of another origin than herald's own (or one of
//! `--allowed-origins`) with 403. The page's answers forbid framing, other scripts and
//! other connections (Content-Security-Policy), caching and referrers.

use super::{assets, socket, Dashboard};
use crate::pusher::apps::Apps;
use crate::socketio;
use crate::state::State;
use http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

/// The page's Content-Security-Policy: its own script, style and WebSocket only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The dashboard's routes (a 404 for every `/dashboard` path when it is off).
pub fn routes(
    state: &State,
    socketio: Option<Arc<socketio::Edge>>,
    pusher: Option<Arc<Apps>>,
) -> BoxedFilter<(Response,)> {
    let Some(d) = Dashboard::start(state, socketio, pusher) else {
        return warp::path("dashboard")
            .map(|| StatusCode::NOT_FOUND.into_response())
            .boxed();
    };
    let with = {
        let d = d.clone();
        warp::any().map(move || d.clone())
    };
    let query = warp::query::<HashMap<String, String>>()
        .or(warp::any().map(HashMap::new))
        .unify();
    let page = warp::path("dashboard")
        .and(warp::path::end())
        .and(warp::get())
        .and(with.clone())
        .and(query)
        .and(warp::header::headers_cloned())
        .map(
            |d: Arc<Dashboard>, q: HashMap<String, String>, h: HeaderMap| {
                if !admitted(&d, q.get("token").map(String::as_str), &h) {
                    return refused();
                }
                let secure = d.state.config().tls_cert.is_some();
                let mut res = asset(assets::PAGE, "text/html; charset=utf-8");
                let cookie = d.token.set_cookie(secure);
                res.headers_mut().insert(
                    "set-cookie",
                    cookie.parse().expect("a cookie is a header value"),
                );
                res
            },
        );
    let files = warp::path!("dashboard" / String)
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and_then(|name: String, d: Arc<Dashboard>, h: HeaderMap| async move {
            let Some((body, kind)) = assets::named(&name) else {
                return Err(warp::reject::not_found());
            };
            // The style is no secret (the token form uses it); the script waits for the token.
            match name == "dashboard.css" || admitted(&d, None, &h) {
                true => Ok(asset(body, kind)),
                false => Ok(refused()),
            }
        });
    let ws = warp::path!("dashboard" / "ws")
        .and(with)
        .and(warp::header::headers_cloned())
        .and(crate::ws::upgrade(&state.connections))
        .map(|d: Arc<Dashboard>, h: HeaderMap, up: crate::ws::Upgrade| {
            if !admitted(&d, None, &h) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            if !same_origin(&h, &d.state.config().allowed_origins) {
                return StatusCode::FORBIDDEN.into_response();
            }
            if d.viewer_count() >= super::MAX_VIEWERS {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            up.reply(move |io| socket::run(io, d)).into_response()
        });
    // The WebSocket first: a plain GET of /dashboard/ws is not an asset either.
    let ws_refused =
        warp::path!("dashboard" / "ws").map(|| StatusCode::BAD_REQUEST.into_response());
    ws.or(ws_refused)
        .unify()
        .or(page)
        .unify()
        .or(files)
        .unify()
        .boxed()
}

/// Whether the request carries the token: in the query (the first visit), as
/// `Authorization: Bearer`, or as the cookie a first visit set.
fn admitted(d: &Dashboard, query_token: Option<&str>, h: &HeaderMap) -> bool {
    let header = |name| h.get(name).and_then(|v| v.to_str().ok());
    let cookies: Vec<&str> = (h.get_all("cookie").iter())
        .filter_map(|v| v.to_str().ok())
        .collect();
    let cookie = cookies.join("; ");
    d.token
        .admits(query_token, header("authorization"), Some(cookie.as_str()))
}

/// A WebSocket from a browser must come from herald's own page (its `Origin` is the
/// `Host` asked for) or from an origin `--allowed-origins` lists; no `Origin`: not a
/// browser (a script with the token).
fn same_origin(h: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = h.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h.get("host").and_then(|v| v.to_str().ok());
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    // Listed origins only: a `*` that lets any page reach the edges does not reach here.
    let listed: Vec<String> = allowed.iter().filter(|a| *a != "*").cloned().collect();
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
        || (!listed.is_empty() && crate::edge_policy::origin_allowed(&listed, Some(origin)))
}

/// An embedded file, never cached, never framed.
fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert("content-type", kind.parse().expect("a content type"));
    for (name, value) in [
        ("cache-control", "no-store"),
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(name, value.parse().expect("a header value"));
    }
    res
}

/// 401 with a form that asks for the token (the page itself is not sent).
fn refused() -> Response {
    let mut res = asset(assets::LOGIN, "text/html; charset=utf-8");
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().insert(
        "www-authenticate",
        "Bearer realm=\"herald dashboard\""
            .parse()
            .expect("a header value"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_browser_websocket_must_come_from_the_page_it_was_served() {
        let own = headers(&[
            ("host", "herald.test:6001"),
            ("origin", "https://herald.test:6001"),
        ]);
        assert!(same_origin(&own, &[]));
        let other = headers(&[
            ("host", "herald.test:6001"),
            ("origin", "https://evil.test"),
        ]);
        assert!(!same_origin(&other, &[]));
        assert!(same_origin(&other, &["https://evil.test".into()]));
        assert!(
            same_origin(&headers(&[("host", "herald.test")]), &[]),
            "not a browser"
        );
    }
}
