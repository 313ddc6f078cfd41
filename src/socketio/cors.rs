//! Cross-origin rules for browsers: which pages may connect, and the CORS headers.
//!
//! Long-polling from another origin needs CORS with credentials (Echo sends the
//! Laravel session cookie), so the exact origin is echoed, never `*`, with
//! `Access-Control-Allow-Credentials: true`. An origin not in `--allowed-origins` is
//! refused outright on both transports (a WebSocket has no CORS, so refusing is the
//! only protection there).

use http::StatusCode;
use warp::reply::{Reply, Response};

/// Whether `origin` may connect: `*` in the list allows any.
pub fn allowed(list: &[String], origin: &str) -> bool {
    list.iter().any(|o| o == "*" || o == origin)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_or_any() {
        let list = vec!["http://app.test".to_string()];
        assert!(allowed(&list, "http://app.test"));
        assert!(!allowed(&list, "http://evil.test"));
        assert!(allowed(&["*".to_string()], "http://evil.test"));
    }
}
