//! One `Config` for the whole server, from CLI flags, `HERALD_*` environment variables
//! and an optional TOML file (`--config`), in that order of precedence, then defaults.
//!
//! Every field of [`Cli`] is optional so we can tell "not given" from "given the
//! default", which is what lets the TOML file fill the gaps. The defaults are chosen so
//! that `herald` with no arguments is a working development server.

use crate::outbox::OutboxLimits;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A real-time broadcast server for Laravel: Redis-compatible pub/sub plus Socket.IO and
/// Pusher WebSockets, in one binary.
#[derive(Parser, Debug, Default)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    /// TOML file with any of the settings below (snake_case keys) and `[[apps]]` tables.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address for the Redis protocol (RESP) listener [default: 127.0.0.1:6379].
    #[arg(long, env = "HERALD_REDIS_BIND")]
    pub redis_bind: Option<SocketAddr>,

    /// Address for HTTP and WebSocket (socket.io, Pusher, health) [default: 0.0.0.0:6001].
    #[arg(long, env = "HERALD_HTTP_BIND")]
    pub http_bind: Option<SocketAddr>,

    /// Log output: `pretty` for people, `json` for collectors [default: pretty].
    #[arg(long, env = "HERALD_LOG_FORMAT", value_parser = ["pretty", "json"])]
    pub log_format: Option<String>,

    /// Log filter in RUST_LOG syntax, e.g. `info,herald::resp=debug` [default: info].
    #[arg(long, env = "HERALD_LOG")]
    pub log: Option<String>,

    /// Password every RESP client must AUTH with (user `default`).
    #[arg(long, env = "HERALD_REQUIREPASS")]
    pub requirepass: Option<String>,

    /// Extra RESP user as `name:password`; repeatable (env: comma-separated).
    #[arg(long = "user", env = "HERALD_USERS", value_delimiter = ',')]
    pub users: Vec<String>,

    /// `no` allows RESP on a non-loopback address without a password, and serves the
    /// built-in Pusher app (its well-known secret) on a non-loopback HTTP address
    /// [default: yes].
    #[arg(long, env = "HERALD_PROTECTED_MODE", value_parser = ["yes", "no"])]
    pub protected_mode: Option<String>,

    /// Largest bulk string a RESP client may send, in bytes [default: 536870912].
    #[arg(long, env = "HERALD_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<usize>,

    /// Most elements in one RESP multibulk request [default: 1048576].
    #[arg(long, env = "HERALD_MAX_MULTIBULK_LEN")]
    pub max_multibulk_len: Option<usize>,

    /// Longest inline (telnet-style) RESP request, in bytes [default: 65536].
    #[arg(long, env = "HERALD_MAX_INLINE_LEN")]
    pub max_inline_len: Option<usize>,

    /// Most simultaneous RESP clients [default: 10000].
    #[arg(long, env = "HERALD_MAXCLIENTS")]
    pub maxclients: Option<usize>,

    /// Close a RESP client idle for more than this many seconds (Redis's `timeout`);
    /// subscribers and MONITOR are never timed out; 0: never [default: 0].
    #[arg(long, env = "HERALD_TIMEOUT")]
    pub timeout: Option<u64>,

    /// Subscriber output buffer hard limit in bytes; 0 disables [default: 33554432].
    #[arg(long, env = "HERALD_OUTBOX_HARD_LIMIT")]
    pub outbox_hard_limit: Option<usize>,

    /// Subscriber output buffer soft limit in bytes; 0 disables [default: 8388608].
    #[arg(long, env = "HERALD_OUTBOX_SOFT_LIMIT")]
    pub outbox_soft_limit: Option<usize>,

    /// Seconds a subscriber may stay above the soft limit [default: 60].
    #[arg(long, env = "HERALD_OUTBOX_SOFT_SECONDS")]
    pub outbox_soft_seconds: Option<u64>,

    /// Milliseconds an HTTP or WebSocket write may make no progress before the client
    /// is dropped (also the socket's TCP_USER_TIMEOUT); 0: never [default: 30000].
    #[arg(long, env = "HERALD_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,

    /// Most HTTP/WebSocket connections at once; more are answered 503 and closed; 0: no
    /// cap [default: the open-file limit, less min(maxclients, a quarter of it) for RESP
    /// and a sixteenth (at least 64) spare].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most HTTP/WebSocket connections at once from one IPv4 address or IPv6 /64; 0: no
    /// cap (behind a reverse proxy every client has the proxy's address) [default: 0].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// Milliseconds an HTTP connection may take to send a complete request head, from
    /// when it opens or its previous response ends (so also the keep-alive idle
    /// timeout) [default: 30000].
    #[arg(long, env = "HERALD_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,

    /// Milliseconds a socket.io polling POST or Pusher HTTP API request may take to send
    /// its body; then 408 [default: 30000].
    #[arg(long, env = "HERALD_HTTP_BODY_TIMEOUT_MS")]
    pub http_body_timeout_ms: Option<u64>,

    /// Redis key prefix stripped from channel names; repeatable
    /// [default: laravel_database_ and laravel-database-].
    #[arg(
        long = "redis-prefix",
        env = "HERALD_REDIS_PREFIXES",
        value_delimiter = ','
    )]
    pub redis_prefixes: Vec<String>,

    /// Accept Engine.IO v3 (socket.io-client 2.x, laravel-echo-server clients) [default: true].
    #[arg(long, env = "HERALD_SOCKETIO_EIO3")]
    pub socketio_eio3: Option<bool>,

    /// Also emit public publications to every socket as `<channel>:<event>` (the classic
    /// tutorial's client) [default: false].
    #[arg(long, env = "HERALD_SOCKETIO_BROADCAST_PUBLIC")]
    pub socketio_broadcast_public: Option<bool>,

    /// Origins allowed to connect from a browser, comma-separated; `*` allows any [default: *].
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Laravel's channel auth endpoint, e.g. http://localhost:8000/broadcasting/auth.
    #[arg(long, env = "HERALD_AUTH_ENDPOINT")]
    pub auth_endpoint: Option<String>,

    /// Milliseconds to wait for the auth endpoint [default: 5000].
    #[arg(long, env = "HERALD_AUTH_TIMEOUT_MS")]
    pub auth_timeout_ms: Option<u64>,

    /// PEM file of a CA to trust for an HTTPS auth endpoint or webhook URL with a private
    /// certificate (public CAs are always trusted).
    #[arg(long, env = "HERALD_AUTH_CA_FILE")]
    pub auth_ca_file: Option<PathBuf>,

    /// A header the auth endpoint also receives from socket.io clients, besides
    /// Authorization, Cookie, X-CSRF-TOKEN, X-XSRF-TOKEN and X-Requested-With; repeatable
    /// (env: comma-separated). Headers that describe the request or its path (Host,
    /// Content-*, X-Forwarded-*, Forwarded, X-Real-IP, …) cannot be forwarded.
    #[arg(
        long = "auth-forward-header",
        env = "HERALD_AUTH_FORWARD_HEADERS",
        value_delimiter = ','
    )]
    pub auth_forward_headers: Vec<String>,

    /// Most entries in a socket.io client's `auth.headers` (at CONNECT or in one
    /// subscription); past it the client's private subscriptions are refused with 431
    /// [default: 50].
    #[arg(long, env = "HERALD_AUTH_HEADERS_MAX_COUNT")]
    pub auth_headers_max_count: Option<usize>,

    /// Longest header value forwarded to the auth endpoint, in bytes; a longer one
    /// refuses the subscription with 431 [default: 8192].
    #[arg(long, env = "HERALD_AUTH_HEADER_MAX_BYTES")]
    pub auth_header_max_bytes: Option<usize>,

    /// Most bytes of header values forwarded in one auth request; past it: 431
    /// [default: 32768].
    #[arg(long, env = "HERALD_AUTH_HEADERS_MAX_BYTES")]
    pub auth_headers_max_bytes: Option<usize>,

    /// Auth requests in flight to the app at once, from all connections; a subscription
    /// waits up to the auth timeout for its turn, then is refused with 503; 0: no limit
    /// [default: 32].
    #[arg(long, env = "HERALD_AUTH_MAX_IN_FLIGHT")]
    pub auth_max_in_flight: Option<usize>,

    /// Auth requests one socket.io connection may make at once (its token bucket's
    /// size); past it subscriptions are refused with 429 until tokens come back; 0: no
    /// limit [default: 20].
    #[arg(long, env = "HERALD_AUTH_BURST")]
    pub auth_burst: Option<u32>,

    /// Auth requests per second a connection gets back after a burst [default: 5].
    #[arg(long, env = "HERALD_AUTH_RATE")]
    pub auth_rate: Option<u32>,

    /// Milliseconds the app's refusal (4xx) of a channel is reused for the same
    /// connection's next attempts at that channel, without asking the app; 0: not kept
    /// [default: 5000].
    #[arg(long, env = "HERALD_AUTH_REFUSAL_CACHE_MS")]
    pub auth_refusal_cache_ms: Option<u64>,

    /// socket.io v4 sessions open without having sent their CONNECT yet; past it new
    /// handshakes are refused as socket.io's allowRequest refuses them (403, 400 on a
    /// WebSocket); 0: no limit [default: 5000].
    #[arg(long, env = "HERALD_SOCKETIO_MAX_UNCONNECTED")]
    pub socketio_max_unconnected: Option<usize>,

    /// Milliseconds a socket.io v4 session may stay without sending its CONNECT before
    /// it is closed (socket.io's connectTimeout, 45 s there; clients send it at once)
    /// [default: 20000].
    #[arg(long, env = "HERALD_SOCKETIO_CONNECT_TIMEOUT_MS")]
    pub socketio_connect_timeout_ms: Option<u64>,

    /// Engine.IO ping interval in milliseconds [default: 25000].
    #[arg(long, env = "HERALD_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,

    /// Engine.IO ping timeout in milliseconds [default: 20000].
    #[arg(long, env = "HERALD_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,

    /// Largest Engine.IO message or polling body, in bytes [default: 1000000].
    #[arg(long, env = "HERALD_MAX_HTTP_BUFFER_SIZE")]
    pub max_http_buffer_size: Option<usize>,

    /// Client events (whispers) one connection may send per second, on both edges; 0
    /// turns client events off [default: 10].
    #[arg(long, env = "HERALD_CLIENT_EVENT_RATE")]
    pub client_event_rate: Option<u32>,

    /// Largest client event (whisper) `data` relayed, in bytes of JSON; past it the
    /// event is refused (socket.io `client_event_error`, Pusher 4301). Also the
    /// `max_message_size` of Pusher apps that set none [default: 10240].
    #[arg(long, env = "HERALD_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,

    /// Serve the socket.io edge (`/socket.io/`); `false`: not mounted (404) [default: true].
    #[arg(long, env = "HERALD_SOCKETIO")]
    pub socketio: Option<bool>,

    /// Serve the Pusher edge (`/app/{key}`, `/apps/{id}/...`, RESP publications to the
    /// default app); `false`: not mounted (404) [default: true].
    #[arg(long, env = "HERALD_PUSHER")]
    pub pusher: Option<bool>,

    /// Channels one WebSocket connection (socket.io or Pusher) may be subscribed to, or
    /// waiting to be authorized for; 0: no limit [default: 1000].
    #[arg(long, env = "HERALD_MAX_CHANNELS_PER_CONNECTION")]
    pub max_channels_per_connection: Option<usize>,

    /// Pusher app id of the default app. None of --app-id, --app-key, --app-secret given:
    /// the built-in development app (herald / herald-key / herald-secret), served on
    /// loopback HTTP addresses only [default: herald].
    #[arg(long, env = "HERALD_APP_ID")]
    pub app_id: Option<String>,

    /// Pusher app key of the default app [default: herald-key].
    #[arg(long, env = "HERALD_APP_KEY")]
    pub app_key: Option<String>,

    /// Pusher app secret of the default app; the well-known default is refused on a
    /// non-loopback HTTP address [default: herald-secret].
    #[arg(long, env = "HERALD_APP_SECRET")]
    pub app_secret: Option<String>,

    /// Seconds of silence before the server pings a Pusher client [default: 120].
    #[arg(long, env = "HERALD_ACTIVITY_TIMEOUT")]
    pub activity_timeout: Option<u64>,

    /// URL the default app's Pusher webhooks are posted to (every event type); more
    /// URLs and per-app webhooks in the TOML file.
    #[arg(long, env = "HERALD_APP_WEBHOOK")]
    pub app_webhook: Option<String>,

    /// Send the default app's subscribers `pusher:subscription_count` events (Pusher's
    /// opt-in subscription count) [default: false].
    #[arg(long, env = "HERALD_APP_SUBSCRIPTION_COUNT")]
    pub app_subscription_count: Option<bool>,

    /// Seconds a Pusher cache channel keeps its last event for new subscribers (Pusher
    /// keeps it 30 minutes); 0 keeps nothing [default: 1800].
    #[arg(long, env = "HERALD_CACHE_TTL_SECONDS")]
    pub cache_ttl_seconds: Option<u64>,

    /// Webhook events waiting for one URL (at least 2): member_added and member_removed
    /// may fill all of it, other events half; past that they are dropped, counted and
    /// logged [default: 10000].
    #[arg(long, env = "HERALD_WEBHOOK_QUEUE")]
    pub webhook_queue: Option<usize>,

    /// Milliseconds a channel_occupied or channel_vacated webhook is held back: a channel
    /// occupied and vacated (or vacated and occupied again) within it sends neither, as
    /// Pusher debounces; 0 sends them at once [default: 3000].
    #[arg(long, env = "HERALD_WEBHOOK_OCCUPANCY_DELAY_MS")]
    pub webhook_occupancy_delay_ms: Option<u64>,
}

/// What the TOML file may hold: the same keys as the CLI, plus apps.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    redis_bind: Option<SocketAddr>,
    http_bind: Option<SocketAddr>,
    log_format: Option<String>,
    log: Option<String>,
    requirepass: Option<String>,
    users: Option<Vec<String>>,
    protected_mode: Option<String>,
    proto_max_bulk_len: Option<usize>,
    max_multibulk_len: Option<usize>,
    max_inline_len: Option<usize>,
    maxclients: Option<usize>,
    timeout: Option<u64>,
    outbox_hard_limit: Option<usize>,
    outbox_soft_limit: Option<usize>,
    outbox_soft_seconds: Option<u64>,
    write_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    http_header_timeout_ms: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    redis_prefixes: Option<Vec<String>>,
    socketio_eio3: Option<bool>,
    socketio_broadcast_public: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    auth_endpoint: Option<String>,
    auth_timeout_ms: Option<u64>,
    auth_ca_file: Option<PathBuf>,
    auth_forward_headers: Option<Vec<String>>,
    auth_headers_max_count: Option<usize>,
    auth_header_max_bytes: Option<usize>,
    auth_headers_max_bytes: Option<usize>,
    auth_max_in_flight: Option<usize>,
    auth_burst: Option<u32>,
    auth_rate: Option<u32>,
    auth_refusal_cache_ms: Option<u64>,
    socketio_max_unconnected: Option<usize>,
    socketio_connect_timeout_ms: Option<u64>,
    ping_interval_ms: Option<u64>,
    ping_timeout_ms: Option<u64>,
    max_http_buffer_size: Option<usize>,
    client_event_rate: Option<u32>,
    max_message_size: Option<usize>,
    socketio: Option<bool>,
    pusher: Option<bool>,
    max_channels_per_connection: Option<usize>,
    app_id: Option<String>,
    app_key: Option<String>,
    app_secret: Option<String>,
    activity_timeout: Option<u64>,
    app_webhook: Option<String>,
    app_subscription_count: Option<bool>,
    cache_ttl_seconds: Option<u64>,
    webhook_queue: Option<usize>,
    webhook_occupancy_delay_ms: Option<u64>,
    #[serde(default)]
    apps: Vec<AppConfig>,
}

/// One Pusher application (Soketi/Reverb call them apps).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Browser origins allowed to connect; empty or `*` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "yes")]
    pub client_events: bool,
    /// 0: unlimited.
    #[serde(default)]
    pub max_connections: usize,
    #[serde(default = "default_presence_members")]
    pub max_presence_members: usize,
    #[serde(default = "default_presence_member_size")]
    pub max_presence_member_size: usize,
    /// Largest client message, client event `data` and HTTP API `data`, in bytes;
    /// unset: the server-wide `max_message_size`.
    #[serde(default)]
    pub max_message_size: Option<usize>,
    /// Where Pusher webhooks go.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Tell subscribers of non-presence channels how many connections share the channel
    /// (`pusher_internal:subscription_count`), as Pusher does when the app enables it.
    #[serde(default)]
    pub subscription_count: bool,
    /// How long a cache channel keeps its last event: server-wide (`--cache-ttl-seconds`).
    #[serde(skip, default = "default_cache_ttl")]
    pub cache_ttl: Duration,
}

/// One webhook URL of an app (Soketi's shape): `event_types` empty means all of them.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Server-wide (`--webhook-queue`, `--webhook-occupancy-delay-ms`).
    #[serde(skip)]
    pub limits: WebhookLimits,
}

/// How much one webhook URL's events may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookLimits {
    /// Events waiting; member_added and member_removed may fill all of it, others half.
    pub queue: usize,
    /// How long occupancy events are held to coalesce; zero sends them at once.
    pub occupancy_delay: Duration,
}

impl Default for WebhookLimits {
    fn default() -> Self {
        WebhookLimits {
            queue: 10_000,
            occupancy_delay: Duration::from_secs(3),
        }
    }
}

impl WebhookConfig {
    /// The event names this URL receives.
    pub fn wanted(&self) -> Vec<&'static str> {
        crate::pusher::webhooks::EVENT_TYPES
            .into_iter()
            .filter(|t| self.event_types.is_empty() || self.event_types.iter().any(|e| e == t))
            .collect()
    }

    fn check(&self, app: &str) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "app {app}: webhook url must be http:// or https://, got {:?}",
                self.url
            ));
        }
        let known = crate::pusher::webhooks::EVENT_TYPES;
        match self
            .event_types
            .iter()
            .find(|e| !known.contains(&e.as_str()))
        {
            Some(e) => Err(format!(
                "app {app}: unknown webhook event type {e:?} (known: {})",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_presence_members() -> usize {
    100
}
fn default_presence_member_size() -> usize {
    2 * 1024
}
/// Pusher's message size limit (10 KB).
const DEFAULT_MESSAGE_SIZE: usize = 10 * 1024;

/// The built-in development app's credentials, printed in the README and at start: on
/// a non-loopback HTTP address they open nothing (see [`Config::pusher_apps`]).
pub const DEV_APP: [&str; 3] = ["herald", "herald-key", "herald-secret"];
/// How long a Pusher cache channel keeps its last event: 30 minutes, as Pusher does.
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);
fn default_cache_ttl() -> Duration {
    CACHE_TTL
}

impl AppConfig {
    /// An app with the per-app defaults.
    pub fn new(id: &str, key: &str, secret: &str) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            enabled: true,
            allowed_origins: Vec::new(),
            client_events: true,
            max_connections: 0,
            max_presence_members: default_presence_members(),
            max_presence_member_size: default_presence_member_size(),
            max_message_size: None,
            webhooks: Vec::new(),
            subscription_count: false,
            cache_ttl: default_cache_ttl(),
        }
    }

    /// Largest client message, client event `data` and HTTP API `data`, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.unwrap_or(DEFAULT_MESSAGE_SIZE)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A RESP user and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// The resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub redis_bind: SocketAddr,
    pub http_bind: SocketAddr,
    pub log_format: LogFormat,
    pub log: String,
    /// Users allowed to AUTH; empty means no authentication is required.
    pub users: Vec<User>,
    pub protected_mode: bool,
    pub proto_max_bulk_len: usize,
    pub max_multibulk_len: usize,
    pub max_inline_len: usize,
    pub maxclients: usize,
    /// RESP idle timeout; zero: never.
    pub timeout: Duration,
    pub outbox: OutboxLimits,
    /// Zero: writes may wait forever.
    pub write_timeout: Duration,
    /// None: computed from the open-file limit at start; Some(0): no cap.
    pub max_connections: Option<usize>,
    /// 0: no cap.
    pub max_connections_per_ip: usize,
    pub http_header_timeout: Duration,
    pub http_body_timeout: Duration,
    pub redis_prefixes: Vec<String>,
    pub socketio_eio3: bool,
    pub socketio_broadcast_public: bool,
    pub allowed_origins: Vec<String>,
    pub auth_endpoint: Option<String>,
    pub auth_timeout: Duration,
    pub auth_ca_file: Option<PathBuf>,
    /// Lowercase names forwarded to the auth endpoint besides the built-in allowlist.
    pub auth_forward_headers: Vec<String>,
    pub auth_headers_max_count: usize,
    pub auth_header_max_bytes: usize,
    pub auth_headers_max_bytes: usize,
    /// 0: no limit.
    pub auth_max_in_flight: usize,
    /// 0: no limit.
    pub auth_burst: u32,
    pub auth_rate: u32,
    /// Zero: refusals are not kept.
    pub auth_refusal_cache: Duration,
    /// 0: no limit.
    pub socketio_max_unconnected: usize,
    pub socketio_connect_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_http_buffer_size: usize,
    /// 0: client events off.
    pub client_event_rate: u32,
    /// Largest client event `data` on socket.io; Pusher apps' default `max_message_size`.
    pub max_message_size: usize,
    pub socketio: bool,
    pub pusher: bool,
    /// 0: no limit.
    pub max_channels_per_connection: usize,
    pub activity_timeout: Duration,
    /// Every app's cache channels (also in each `AppConfig`).
    pub cache_ttl: Duration,
    /// Every webhook URL's (also in each `WebhookConfig`).
    pub webhook_limits: WebhookLimits,
    /// The configured Pusher apps; [`Config::pusher_apps`] says which are served. The
    /// first served app is the default one: RESP publications go to its clients.
    pub apps: Vec<AppConfig>,
    /// `apps[0]` is the built-in development app ([`DEV_APP`]): none of --app-id,
    /// --app-key, --app-secret was given.
    pub builtin_app: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(Cli::default(), FileConfig::default()).expect("defaults are valid")
    }
}

/// An HTTP deadline in milliseconds [default: 30000]; zero would refuse every request.
fn positive_ms(name: &str, ms: Option<u64>) -> Result<Duration, String> {
    match ms.unwrap_or(30_000) {
        0 => Err(format!("{name} must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

impl Config {
    /// Parse the process's arguments, environment and config file.
    pub fn load() -> Result<Config, String> {
        let cli = Cli::parse();
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    fn resolve(cli: Cli, file: FileConfig) -> Result<Config, String> {
        fn list(cli: Vec<String>, file: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
            if !cli.is_empty() {
                cli
            } else {
                file.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
            }
        }
        let log_format = match cli.log_format.or(file.log_format).as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(format!("unknown log format {other:?}")),
        };
        let mut users = Vec::new();
        if let Some(pass) = cli.requirepass.or(file.requirepass) {
            users.push(User {
                name: "default".into(),
                password: pass,
            });
        }
        for spec in list(cli.users, file.users, &[]) {
            let (name, password) = spec
                .split_once(':')
                .ok_or_else(|| format!("--user wants name:password, got {spec:?}"))?;
            users.push(User {
                name: name.into(),
                password: password.into(),
            });
        }
        let protected_mode = match cli.protected_mode.or(file.protected_mode).as_deref() {
            None | Some("yes") => true,
            Some("no") => false,
            Some(other) => return Err(format!("protected-mode is yes or no, got {other:?}")),
        };
        let [app_id, app_key, app_secret] = [
            cli.app_id.or(file.app_id),
            cli.app_key.or(file.app_key),
            cli.app_secret.or(file.app_secret),
        ];
        let builtin_app = app_id.is_none() && app_key.is_none() && app_secret.is_none();
        let [dev_id, dev_key, dev_secret] = DEV_APP.map(String::from);
        let mut apps = vec![AppConfig::new(
            &app_id.unwrap_or(dev_id),
            &app_key.unwrap_or(dev_key),
            &app_secret.unwrap_or(dev_secret),
        )];
        apps[0].subscription_count = cli
            .app_subscription_count
            .or(file.app_subscription_count)
            .unwrap_or(false);
        if let Some(url) = cli.app_webhook.or(file.app_webhook) {
            apps[0].webhooks.push(WebhookConfig {
                url,
                event_types: Vec::new(),
                limits: WebhookLimits::default(),
            });
        }
        for app in file.apps {
            if apps.iter().any(|a| a.id == app.id || a.key == app.key) {
                return Err(format!("app {} is defined twice", app.id));
            }
            apps.push(app);
        }
        let max_message_size = cli
            .max_message_size
            .or(file.max_message_size)
            .unwrap_or(DEFAULT_MESSAGE_SIZE);
        for app in &mut apps {
            for hook in &app.webhooks {
                hook.check(&app.id)?;
            }
            app.max_message_size.get_or_insert(max_message_size);
        }
        let cache_ttl = cli
            .cache_ttl_seconds
            .or(file.cache_ttl_seconds)
            .map_or_else(default_cache_ttl, Duration::from_secs);
        let webhook_limits = WebhookLimits {
            queue: match cli.webhook_queue.or(file.webhook_queue) {
                Some(n) if n < 2 => return Err(format!("webhook-queue is at least 2, got {n}")),
                n => n.unwrap_or(WebhookLimits::default().queue),
            },
            occupancy_delay: cli
                .webhook_occupancy_delay_ms
                .or(file.webhook_occupancy_delay_ms)
                .map_or(
                    WebhookLimits::default().occupancy_delay,
                    Duration::from_millis,
                ),
        };
        for app in &mut apps {
            app.cache_ttl = cache_ttl;
            for hook in &mut app.webhooks {
                hook.limits = webhook_limits;
            }
        }
        Ok(Config {
            redis_bind: cli
                .redis_bind
                .or(file.redis_bind)
                .unwrap_or_else(|| "127.0.0.1:6379".parse().unwrap()),
            http_bind: cli
                .http_bind
                .or(file.http_bind)
                .unwrap_or_else(|| "0.0.0.0:6001".parse().unwrap()),
            log_format,
            log: cli.log.or(file.log).unwrap_or_else(|| "info".into()),
            users,
            protected_mode,
            proto_max_bulk_len: cli
                .proto_max_bulk_len
                .or(file.proto_max_bulk_len)
                .unwrap_or(512 * 1024 * 1024),
            max_multibulk_len: cli
                .max_multibulk_len
                .or(file.max_multibulk_len)
                .unwrap_or(1024 * 1024),
            max_inline_len: cli
                .max_inline_len
                .or(file.max_inline_len)
                .unwrap_or(64 * 1024),
            maxclients: cli.maxclients.or(file.maxclients).unwrap_or(10_000),
            timeout: Duration::from_secs(cli.timeout.or(file.timeout).unwrap_or(0)),
            outbox: OutboxLimits {
                hard_bytes: cli
                    .outbox_hard_limit
                    .or(file.outbox_hard_limit)
                    .unwrap_or(32 * 1024 * 1024),
                soft_bytes: cli
                    .outbox_soft_limit
                    .or(file.outbox_soft_limit)
                    .unwrap_or(8 * 1024 * 1024),
                soft_window: Duration::from_secs(
                    cli.outbox_soft_seconds
                        .or(file.outbox_soft_seconds)
                        .unwrap_or(60),
                ),
            },
            write_timeout: Duration::from_millis(
                cli.write_timeout_ms
                    .or(file.write_timeout_ms)
                    .unwrap_or(30_000),
            ),
            max_connections: cli.max_connections.or(file.max_connections),
            max_connections_per_ip: cli
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(0),
            http_header_timeout: positive_ms(
                "http-header-timeout-ms",
                cli.http_header_timeout_ms.or(file.http_header_timeout_ms),
            )?,
            http_body_timeout: positive_ms(
                "http-body-timeout-ms",
                cli.http_body_timeout_ms.or(file.http_body_timeout_ms),
            )?,
            redis_prefixes: list(
                cli.redis_prefixes,
                file.redis_prefixes,
                &["laravel_database_", "laravel-database-"],
            ),
            socketio_eio3: cli.socketio_eio3.or(file.socketio_eio3).unwrap_or(true),
            socketio_broadcast_public: cli
                .socketio_broadcast_public
                .or(file.socketio_broadcast_public)
                .unwrap_or(false),
            allowed_origins: list(cli.allowed_origins, file.allowed_origins, &["*"]),
            auth_endpoint: cli.auth_endpoint.or(file.auth_endpoint),
            auth_timeout: Duration::from_millis(
                cli.auth_timeout_ms.or(file.auth_timeout_ms).unwrap_or(5000),
            ),
            auth_ca_file: match cli.auth_ca_file.or(file.auth_ca_file) {
                Some(path) if !path.is_file() => {
                    return Err(format!("auth CA file {} does not exist", path.display()))
                }
                other => other,
            },
            auth_forward_headers: list(cli.auth_forward_headers, file.auth_forward_headers, &[])
                .iter()
                .map(|name| crate::auth_shield::forwardable(name))
                .collect::<Result<_, _>>()?,
            auth_headers_max_count: cli
                .auth_headers_max_count
                .or(file.auth_headers_max_count)
                .unwrap_or(50),
            auth_header_max_bytes: cli
                .auth_header_max_bytes
                .or(file.auth_header_max_bytes)
                .unwrap_or(8 * 1024),
            auth_headers_max_bytes: cli
                .auth_headers_max_bytes
                .or(file.auth_headers_max_bytes)
                .unwrap_or(32 * 1024),
            auth_max_in_flight: cli
                .auth_max_in_flight
                .or(file.auth_max_in_flight)
                .unwrap_or(32),
            auth_burst: cli.auth_burst.or(file.auth_burst).unwrap_or(20),
            auth_rate: cli.auth_rate.or(file.auth_rate).unwrap_or(5),
            auth_refusal_cache: Duration::from_millis(
                cli.auth_refusal_cache_ms
                    .or(file.auth_refusal_cache_ms)
                    .unwrap_or(5000),
            ),
            socketio_max_unconnected: cli
                .socketio_max_unconnected
                .or(file.socketio_max_unconnected)
                .unwrap_or(5000),
            socketio_connect_timeout: Duration::from_millis(
                cli.socketio_connect_timeout_ms
                    .or(file.socketio_connect_timeout_ms)
                    .unwrap_or(20_000),
            ),
            ping_interval: Duration::from_millis(
                cli.ping_interval_ms
                    .or(file.ping_interval_ms)
                    .unwrap_or(25_000),
            ),
            ping_timeout: Duration::from_millis(
                cli.ping_timeout_ms
                    .or(file.ping_timeout_ms)
                    .unwrap_or(20_000),
            ),
            max_http_buffer_size: cli
                .max_http_buffer_size
                .or(file.max_http_buffer_size)
                .unwrap_or(1_000_000),
            client_event_rate: cli
                .client_event_rate
                .or(file.client_event_rate)
                .unwrap_or(10),
            max_message_size,
            socketio: cli.socketio.or(file.socketio).unwrap_or(true),
            pusher: cli.pusher.or(file.pusher).unwrap_or(true),
            max_channels_per_connection: cli
                .max_channels_per_connection
                .or(file.max_channels_per_connection)
                .unwrap_or(1000),
            activity_timeout: Duration::from_secs(
                cli.activity_timeout
                    .or(file.activity_timeout)
                    .unwrap_or(120),
            ),
            cache_ttl,
            webhook_limits,
            apps,
            builtin_app,
        })
    }

    /// Whether browsers on other machines can reach the HTTP port and protected mode
    /// guards it: a non-loopback `http_bind` without `--protected-mode no`.
    pub fn http_exposed(&self) -> bool {
        self.protected_mode && !self.http_bind.ip().is_loopback()
    }

    /// The Pusher apps to serve, and why each configured app left out is left out.
    ///
    /// One rule, so that no well-known secret opens anything: on an exposed HTTP address
    /// ([`http_exposed`](Self::http_exposed)) the built-in development app is not served,
    /// nor any configured app whose secret is still the built-in one. With no app left
    /// the Pusher edge refuses every connection (4001), the HTTP API answers 404 and RESP
    /// publications reach no Pusher client. On loopback, or with `--protected-mode no`,
    /// every configured app is served, the built-in one first when no credentials were given.
    pub fn pusher_apps(&self) -> (Vec<AppConfig>, Vec<String>) {
        if !self.http_exposed() {
            return (self.apps.clone(), Vec::new());
        }
        let mut withheld = Vec::new();
        let served = self
            .apps
            .iter()
            .enumerate()
            .filter(|(i, app)| {
                if *i == 0 && self.builtin_app {
                    return false;
                }
                let known = app.secret == DEV_APP[2];
                if known {
                    withheld.push(format!(
                        "Pusher app {:?} refused: its secret is the well-known {:?} and HTTP \
                         listens on {}; give it a secret of your own",
                        app.id, DEV_APP[2], self.http_bind
                    ));
                }
                !known
            })
            .map(|(_, app)| app.clone())
            .collect();
        (served, withheld)
    }

    /// Whether RESP clients must authenticate.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuse configurations that would expose an open pub/sub port, as Redis's
    /// protected mode does.
    pub fn check_protected_mode(&self) -> Result<(), String> {
        if self.protected_mode && !self.redis_bind.ip().is_loopback() && !self.auth_required() {
            return Err(format!(
                "refusing to serve RESP on {} without a password: anyone who can reach it \
                 could publish to your users. Set --requirepass (or --user), bind to a \
                 loopback address, or pass --protected-mode no if the network is trusted.",
                self.redis_bind
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], toml_text: &str) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::resolve(cli, toml::from_str(toml_text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn zero_configuration_defaults() {
        let c = parse(&[], "").unwrap();
        assert_eq!(c.redis_bind, "127.0.0.1:6379".parse().unwrap());
        assert_eq!(c.http_bind, "0.0.0.0:6001".parse().unwrap());
        assert_eq!(c.redis_prefixes, ["laravel_database_", "laravel-database-"]);
        assert!(!c.auth_required());
        assert_eq!(c.apps.len(), 1);
        c.check_protected_mode().unwrap();
    }

    #[test]
    fn cli_beats_file_beats_default() {
        let c = parse(
            &["--redis-bind", "127.0.0.1:7000"],
            "redis_bind = \"127.0.0.1:7001\"\nhttp_bind = \"127.0.0.1:7002\"\n",
        )
        .unwrap();
        assert_eq!(c.redis_bind.port(), 7000);
        assert_eq!(c.http_bind.port(), 7002);
    }

    #[test]
    fn users_and_password() {
        let c = parse(&["--requirepass", "pw", "--user", "app:s3cret"], "").unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[0].name, "default");
        assert_eq!(c.users[1].password, "s3cret");
        assert!(parse(&["--user", "nocolon"], "").is_err());
    }

    #[test]
    fn protected_mode_refuses_open_public_bind() {
        let c = parse(&["--redis-bind", "0.0.0.0:6379"], "").unwrap();
        assert!(c
            .check_protected_mode()
            .unwrap_err()
            .contains("--requirepass"));
        let c = parse(
            &["--redis-bind", "0.0.0.0:6379", "--protected-mode", "no"],
            "",
        )
        .unwrap();
        c.check_protected_mode().unwrap();
        let c = parse(&["--redis-bind", "0.0.0.0:6379", "--requirepass", "x"], "").unwrap();
        c.check_protected_mode().unwrap();
    }

    #[test]
    fn auth_ca_file_from_flag_or_file() {
        let pem = std::env::temp_dir().join(format!("herald-ca-{}.pem", std::process::id()));
        std::fs::write(&pem, "not checked here").unwrap();
        let c = parse(&["--auth-ca-file", pem.to_str().unwrap()], "").unwrap();
        assert_eq!(c.auth_ca_file.as_deref(), Some(pem.as_path()));
        let c = parse(
            &[],
            &format!("auth_ca_file = {:?}\n", pem.to_str().unwrap()),
        )
        .unwrap();
        assert_eq!(c.auth_ca_file.as_deref(), Some(pem.as_path()));
        std::fs::remove_file(&pem).unwrap();
        assert_eq!(parse(&[], "").unwrap().auth_ca_file, None);
        assert!(parse(&["--auth-ca-file", "/nonexistent/ca.pem"], "")
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn auth_shield_settings() {
        let c = parse(&[], "").unwrap();
        assert_eq!(
            (
                c.auth_headers_max_count,
                c.auth_header_max_bytes,
                c.auth_headers_max_bytes
            ),
            (50, 8192, 32768)
        );
        assert_eq!(
            (c.auth_max_in_flight, c.auth_burst, c.auth_rate),
            (32, 20, 5)
        );
        assert_eq!(c.auth_refusal_cache, Duration::from_secs(5));
        assert_eq!(c.socketio_max_unconnected, 5000);
        assert_eq!(c.socketio_connect_timeout, Duration::from_secs(20));
        let c = parse(
            &["--auth-forward-header", "X-Tenant", "--auth-burst", "0"],
            "auth_forward_headers = [\"X-Ignored\"]\nauth_rate = 1\n",
        )
        .unwrap();
        assert_eq!(c.auth_forward_headers, ["x-tenant"]);
        assert_eq!((c.auth_burst, c.auth_rate), (0, 1));
        assert!(parse(&["--auth-forward-header", "X-Forwarded-For"], "")
            .unwrap_err()
            .contains("cannot be forwarded"));
    }

    #[test]
    fn connection_limits_and_deadlines() {
        let c = parse(&[], "").unwrap();
        assert_eq!(c.write_timeout, Duration::from_secs(30));
        assert_eq!(c.http_header_timeout, Duration::from_secs(30));
        assert_eq!(c.http_body_timeout, Duration::from_secs(30));
        assert_eq!((c.max_connections, c.max_connections_per_ip), (None, 0));
        assert_eq!(c.timeout, Duration::ZERO);
        let c = parse(
            &[
                "--max-connections",
                "0",
                "--write-timeout-ms",
                "0",
                "--timeout",
                "300",
            ],
            "max_connections_per_ip = 20\nhttp_body_timeout_ms = 5000\n",
        )
        .unwrap();
        assert_eq!((c.max_connections, c.max_connections_per_ip), (Some(0), 20));
        assert_eq!(c.write_timeout, Duration::ZERO);
        assert_eq!(c.http_body_timeout, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert!(parse(&["--http-header-timeout-ms", "0"], "")
            .unwrap_err()
            .contains("at least 1"));
    }

    #[test]
    fn apps_from_file() {
        let c = parse(
            &[],
            "[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\nclient_events = false\n",
        )
        .unwrap();
        assert_eq!(c.apps.len(), 2);
        assert!(!c.apps[1].client_events);
        assert_eq!(c.apps[1].max_presence_members, 100);
    }

    #[test]
    fn webhooks_from_flag_and_file_checked() {
        let c = parse(
            &["--app-webhook", "http://app.test/hooks"],
            "[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\n\
             webhooks = [{ url = \"https://b.test/h\", event_types = [\"member_added\"] }]\n",
        )
        .unwrap();
        assert_eq!(c.apps[0].webhooks[0].url, "http://app.test/hooks");
        assert_eq!(c.apps[0].webhooks[0].wanted().len(), 7);
        assert_eq!(c.apps[1].webhooks[0].wanted(), ["member_added"]);
        assert!(parse(&["--app-webhook", "ftp://x"], "")
            .unwrap_err()
            .contains("http:// or https://"));
        let typo = "[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s\"\n\
                    webhooks = [{ url = \"http://b.test\", event_types = [\"member_joined\"] }]\n";
        assert!(parse(&[], typo)
            .unwrap_err()
            .contains("unknown webhook event type \"member_joined\""));
    }

    fn served(c: &Config) -> Vec<String> {
        c.pusher_apps().0.into_iter().map(|a| a.id).collect()
    }

    #[test]
    fn no_well_known_secret_on_a_public_http_address() {
        // Loopback: zero-config serves the built-in app, as it always did.
        let c = parse(&["--http-bind", "127.0.0.1:6001"], "").unwrap();
        assert_eq!(served(&c), ["herald"]);
        assert!(c.pusher_apps().1.is_empty());
        // Public, nothing configured: no Pusher app at all, and nothing to warn about.
        let c = parse(&[], "").unwrap();
        assert!(c.http_exposed());
        assert_eq!(c.pusher_apps(), (vec![], vec![]));
        // Public, [[apps]] only: those are served, the first one is the default.
        let two = "[[apps]]\nid = \"shop\"\nkey = \"k\"\nsecret = \"s\"\n\
                   [[apps]]\nid = \"dev\"\nkey = \"k2\"\nsecret = \"herald-secret\"\n";
        let c = parse(&[], two).unwrap();
        assert_eq!(
            served(&c),
            ["shop"],
            "an app with the well-known secret is refused"
        );
        assert!(c.pusher_apps().1[0].contains("\"dev\" refused"));
        // Public, credentials given: served, unless the secret is still the built-in one.
        let c = parse(
            &["--app-id", "a", "--app-key", "k", "--app-secret", "s"],
            "",
        )
        .unwrap();
        assert_eq!(served(&c), ["a"]);
        let c = parse(&["--app-id", "a", "--app-key", "k"], "").unwrap();
        assert_eq!(served(&c), Vec::<String>::new());
        assert_eq!(c.pusher_apps().1.len(), 1);
        // --protected-mode no: the old behaviour.
        let c = parse(&["--protected-mode", "no"], two).unwrap();
        assert_eq!(served(&c), ["herald", "shop", "dev"]);
        // [::] is public too, [::1] is not.
        assert!(parse(&["--http-bind", "[::]:6001"], "")
            .unwrap()
            .http_exposed());
        assert!(!parse(&["--http-bind", "[::1]:6001"], "")
            .unwrap()
            .http_exposed());
    }

    #[test]
    fn edges_and_message_size() {
        let c = parse(&[], "").unwrap();
        assert!(c.socketio && c.pusher);
        assert_eq!(c.max_message_size, 10240);
        assert_eq!(c.apps[0].max_message_size(), 10240);
        let c = parse(
            &["--socketio", "false", "--max-message-size", "500"],
            "pusher = false\n[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s\"\n\
             [[apps]]\nid = \"3\"\nkey = \"k3\"\nsecret = \"s\"\nmax_message_size = 99\n",
        )
        .unwrap();
        assert!(!c.socketio && !c.pusher);
        assert_eq!(c.max_message_size, 500);
        let sizes: Vec<usize> = c.apps.iter().map(|a| a.max_message_size()).collect();
        assert_eq!(sizes, [500, 500, 99], "apps without their own inherit it");
    }

    #[test]
    fn cache_and_webhook_bounds_reach_every_app() {
        let apps = "[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\n\
                    webhooks = [{ url = \"https://b.test/h\" }]\n";
        let c = parse(&["--app-webhook", "http://a.test/h"], apps).unwrap();
        assert_eq!(c.apps[1].cache_ttl, Duration::from_secs(1800));
        assert_eq!(c.apps[1].webhooks[0].limits.queue, 10_000);
        assert_eq!(
            c.apps[0].webhooks[0].limits.occupancy_delay,
            Duration::from_secs(3)
        );
        let c = parse(
            &[
                "--cache-ttl-seconds",
                "2",
                "--app-webhook",
                "http://a.test/h",
            ],
            &format!("webhook_queue = 4\nwebhook_occupancy_delay_ms = 0\n{apps}"),
        )
        .unwrap();
        assert_eq!(c.apps[1].cache_ttl, Duration::from_secs(2));
        for hook in [&c.apps[0].webhooks[0], &c.apps[1].webhooks[0]] {
            assert_eq!(hook.limits.queue, 4);
            assert_eq!(hook.limits.occupancy_delay, Duration::ZERO);
        }
        assert!(parse(&["--webhook-queue", "1"], "")
            .unwrap_err()
            .contains("at least 2"));
    }
}
