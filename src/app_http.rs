//! The HTTP client herald calls the Laravel app with: the channel auth endpoint and the
//! Pusher webhooks.
//!
//! Both trust the public CAs and, with `--auth-ca-file`, the app's own private CA. Neither
//! follows redirects: a 3xx is the app's answer, not a 2xx. Followed, a POST turns into a
//! GET of the new location, so an auth endpoint that redirects a stranger to a login page
//! would have granted the channel on that page's 200, and a webhook would have been
//! counted as delivered without reaching the app. (laravel-echo-server did not follow a
//! POST's redirect either.)

use std::path::Path;
use std::time::Duration;

/// A client with `timeout` per request that also trusts the PEM CA in `ca_file`.
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read auth CA file {}: {e}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("auth CA file {}: {e}", path.display()))?;
        builder = builder.add_root_certificate(ca);
    }
    builder
        .build()
        .map_err(|e| format!("HTTP client to the app: {e}"))
}
