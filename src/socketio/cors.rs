//! The CORS headers for browsers on an allowed origin.
//!
//! Long-polling from another origin needs CORS with credentials (Echo sends the
//! Laravel session cookie), so the exact origin is echoed, never `*`, with
//! `Access-Control-Allow-Credentials: true`. Which origins are allowed is
//! [`crate::edge_policy::origin_allowed`], the rule both edges share; one not allowed is
//! refused outright on both transports (a WebSocket has no CORS, so refusing is the
//! only protection there).

use http::StatusCode;
use warp::reply::{Reply, Response};

/// Add the CORS headers for an allowed origin.
pub fn decorate(res: &mut Response, origin: Option<&str>) {
    let Some(origin) = origin.and_then(|o| o.parse().ok()) else {
        return;
    };
    let h = res.headers_mut();
    h.insert("access-control-allow-origin", origin);
    h.insert("access-control-allow-credentials", "true".parse().unwrap());
    h.append("vary", "Origin".parse().unwrap());
}

/// The answer to a preflight `OPTIONS`.
pub fn preflight(origin: Option<&str>, request_headers: Option<&str>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    decorate(&mut res, origin);
    let h = res.headers_mut();
    h.insert(
        "access-control-allow-methods",
        "GET,HEAD,PUT,PATCH,POST,DELETE".parse().unwrap(),
    );
    if let Some(v) = request_headers.and_then(|v| v.parse().ok()) {
        h.insert("access-control-allow-headers", v);
        h.append("vary", "Access-Control-Request-Headers".parse().unwrap());
    }
    h.insert("content-length", "0".parse().unwrap());
    res
}
