//! The dashboard's page, script and style, compiled into the binary: an edge box may
//! have no internet, so nothing is fetched from a CDN and no file is read at run time.
//! The chart is drawn on a plain canvas by the script; no library.

/// `/dashboard`.
pub const PAGE: &str = include_str!("assets/index.html");
/// The 401 answer: a form asking for the token.
pub const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// `/dashboard/{name}`: the file and its content type.
pub fn named(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "dashboard.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "dashboard.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}
