//! One `Config` for the whole server, from CLI flags, `HERALD_*` environment variables
//! and an optional TOML file (`--config`), in that order of precedence, then defaults.
//!
//! Each setting is declared once, as a field of [`Settings`]: its doc comment is the
//! `--help` text, `#[arg(long, env = "HERALD_…")]` makes it a flag and an environment
//! variable, the field's name is its TOML key, and `default_value…` is its default,
//! shown by `--help`. The same struct is both clap's parser and serde's deserializer, so
//! the three doors cannot drift apart. The layers are stacked by [`Config::load`]: the
//! defaults, the file over them, then what the flags and environment give over that.
//! `Config::resolve` then turns the settings into the typed [`Config`] herald reads
//! (durations, users, apps), and refuses what cannot work.
//!
//! The defaults are chosen so that `herald` with no arguments is a working development
//! server.
//!
//! # Adding a setting
//!
//! 1. A field of [`Settings`], next to the related ones:
//!
//!    ```text
//!    /// Publications kept per channel for recovery; 0 keeps none.
//!    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = 100)]
//!    pub history_size: usize,
//!    ```
//!
//!    That is the flag `--history-size`, `HERALD_HISTORY_SIZE` and the TOML key
//!    `history_size`, with its default in `--help`. A setting with no default is an
//!    `Option`; a list is a `Vec` with `value_delimiter = ','`; a `bool` needs
//!    `action = ArgAction::Set` to take `true`/`false`; durations are whole `_ms` or
//!    `_seconds` in their name.
//! 2. Its field of [`Config`], in the type herald uses (a `Duration`, say), and the line
//!    in `Config::resolve` that fills it, with any check that refuses a bad value.
//! 3. A row in the table of the `every_setting_has_all_three_doors` test (it fails until
//!    there is one), and the key in `examples/herald.toml`.

use crate::broker::history::HistoryLimits;
use crate::outbox::OutboxLimits;
use crate::token_bucket::Rate;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use http::HeaderName;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting herald has, declared once: the command line and environment (clap) and
/// the TOML file (serde) are both read into this struct. The file may also hold `[[apps]]`.
#[derive(Parser, Deserialize, Debug)]
#[command(name = "herald", version, about, long_about = None)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of the settings below (snake_case keys) and `[[apps]]` tables.
    #[arg(long, env = "HERALD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Check the configuration (settings, file, apps, TLS certificates and keys), say
    /// what it is, and exit: 0 when herald would start with it, 2 when not.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,

    /// Address for the Redis protocol (RESP) listener.
    #[arg(long, env = "HERALD_REDIS_BIND", default_value = "127.0.0.1:6379")]
    pub redis_bind: SocketAddr,

    /// Address for HTTP and WebSocket (socket.io, Pusher, health).
    #[arg(long, env = "HERALD_HTTP_BIND", default_value = "0.0.0.0:6001")]
    pub http_bind: SocketAddr,

    /// PEM file of the certificate chain the HTTP port serves with TLS (`wss://`,
    /// `https://`); with `--tls-key`. Unset: plain HTTP. Read again on SIGHUP.
    #[arg(long, env = "HERALD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of `--tls-cert`.
    #[arg(long, env = "HERALD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM file of the certificate chain the RESP port serves with TLS (phpredis and
    /// predis connect with `tls://`); with `--redis-tls-key`. Unset: plain RESP. Read
    /// again on SIGHUP.
    #[arg(long, env = "HERALD_REDIS_TLS_CERT")]
    pub redis_tls_cert: Option<PathBuf>,

    /// PEM file of the private key of `--redis-tls-cert`.
    #[arg(long, env = "HERALD_REDIS_TLS_KEY")]
    pub redis_tls_key: Option<PathBuf>,

    /// Seconds connections get, once shutdown begins (SIGTERM, Ctrl-C), to take what
    /// they are owed and their goodbye; then the rest are closed. Keep it under your
    /// orchestrator's kill timeout (Kubernetes' terminationGracePeriodSeconds: 30).
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_SECONDS", default_value_t = 3)]
    pub shutdown_grace_seconds: u64,

    /// Join the herald nodes that share this Redis (or Valkey) as one server:
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS (checked against
    /// the system's certificate store, or the PEM file `SSL_CERT_FILE` names; a URL ending
    /// in `#insecure` skips the check, for tests only). Every publication, whichever node it
    /// enters, is published there once and delivered by every node to its own clients.
    /// Its listeners then take SO_REUSEPORT, so several processes of one machine can
    /// share its HTTP and RESP ports. Unset: one node, no Redis needed.
    #[arg(long, env = "HERALD_CLUSTER")]
    pub cluster: Option<String>,

    /// With `--cluster`: seconds after which a node that stopped refreshing its presence
    /// in Redis (killed, cut off) is taken out by the others, its presence members
    /// leaving (announced, and told to the app, once).
    #[arg(long, env = "HERALD_CLUSTER_NODE_TTL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_node_ttl: u64,

    /// Log output: `pretty` for people, `json` for collectors.
    #[arg(
        long,
        env = "HERALD_LOG_FORMAT",
        default_value = "pretty",
        value_parser = ["pretty", "json"]
    )]
    pub log_format: String,

    /// Log filter in RUST_LOG syntax, e.g. `info,herald::resp=debug` (RUST_LOG, when set,
    /// overrides it at start; a reload that changes it puts it in force).
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    pub log: String,

    /// Password every RESP client must AUTH with (user `default`).
    #[arg(long, env = "HERALD_REQUIREPASS")]
    pub requirepass: Option<String>,

    /// Extra RESP user as `name:password`; repeatable (env: comma-separated).
    #[arg(long = "user", env = "HERALD_USERS", value_delimiter = ',')]
    pub users: Vec<String>,

    /// `no` allows RESP on a non-loopback address without a password, and serves the
    /// built-in Pusher app (its well-known secret) on a non-loopback HTTP address.
    #[arg(long, env = "HERALD_PROTECTED_MODE", default_value = "yes", value_parser = ["yes", "no"])]
    pub protected_mode: String,

    /// Largest bulk string a RESP client may send, in bytes.
    #[arg(long, env = "HERALD_PROTO_MAX_BULK_LEN", default_value_t = 512 * 1024 * 1024)]
    pub proto_max_bulk_len: usize,

    /// Most elements in one RESP multibulk request.
    #[arg(long, env = "HERALD_MAX_MULTIBULK_LEN", default_value_t = 1024 * 1024)]
    pub max_multibulk_len: usize,

    /// Longest inline (telnet-style) RESP request, in bytes.
    #[arg(long, env = "HERALD_MAX_INLINE_LEN", default_value_t = 64 * 1024)]
    pub max_inline_len: usize,

    /// Most simultaneous RESP clients.
    #[arg(long, env = "HERALD_MAXCLIENTS", default_value_t = 10_000)]
    pub maxclients: usize,

    /// Close a RESP client idle for more than this many seconds (Redis's `timeout`);
    /// subscribers and MONITOR are never timed out; 0: never.
    #[arg(long, env = "HERALD_TIMEOUT", default_value_t = 0)]
    pub timeout: u64,

    /// Subscriber output buffer hard limit in bytes; 0 disables.
    #[arg(
        long,
        env = "HERALD_OUTBOX_HARD_LIMIT",
        default_value_t = OutboxLimits::default().hard_bytes
    )]
    pub outbox_hard_limit: usize,

    /// Subscriber output buffer soft limit in bytes; 0 disables.
    #[arg(
        long,
        env = "HERALD_OUTBOX_SOFT_LIMIT",
        default_value_t = OutboxLimits::default().soft_bytes
    )]
    pub outbox_soft_limit: usize,

    /// Seconds a subscriber may stay above the soft limit.
    #[arg(
        long,
        env = "HERALD_OUTBOX_SOFT_SECONDS",
        default_value_t = OutboxLimits::default().soft_window.as_secs()
    )]
    pub outbox_soft_seconds: u64,

    /// Milliseconds an HTTP or WebSocket write may make no progress before the client
    /// is dropped (also the socket's TCP_USER_TIMEOUT); 0: never.
    #[arg(long, env = "HERALD_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,

    /// Most HTTP/WebSocket connections at once; more are answered 503 and closed; 0: no
    /// cap [default: the open-file limit, less min(maxclients, a quarter of it) for RESP
    /// and a sixteenth (at least 64) spare].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most HTTP/WebSocket connections at once from one IPv4 address or IPv6 /64; 0: no
    /// cap (behind a reverse proxy every client has the proxy's address).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Milliseconds an HTTP connection may take to send a complete request head, from
    /// when it opens or its previous response ends (so also the keep-alive idle
    /// timeout).
    #[arg(long, env = "HERALD_HTTP_HEADER_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_header_timeout_ms: u64,

    /// Milliseconds a socket.io polling POST or Pusher HTTP API request may take to send
    /// its body; then 408.
    #[arg(long, env = "HERALD_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,

    /// Redis key prefix stripped from channel names; repeatable.
    #[arg(
        long = "redis-prefix",
        env = "HERALD_REDIS_PREFIXES",
        value_delimiter = ',',
        default_values = ["laravel_database_", "laravel-database-"]
    )]
    pub redis_prefixes: Vec<String>,

    /// Accept Engine.IO v3 (socket.io-client 2.x, laravel-echo-server clients).
    #[arg(long, env = "HERALD_SOCKETIO_EIO3", default_value_t = true, action = ArgAction::Set)]
    pub socketio_eio3: bool,

    /// Also emit public publications to every socket as `<channel>:<event>` (the classic
    /// tutorial's client).
    #[arg(
        long,
        env = "HERALD_SOCKETIO_BROADCAST_PUBLIC",
        default_value_t = false,
        action = ArgAction::Set
    )]
    pub socketio_broadcast_public: bool,

    /// Origins allowed to connect from a browser, comma-separated; `*` allows any.
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',', default_values = ["*"])]
    pub allowed_origins: Vec<String>,

    /// Laravel's channel auth endpoint, e.g. http://localhost:8000/broadcasting/auth.
    #[arg(long, env = "HERALD_AUTH_ENDPOINT")]
    pub auth_endpoint: Option<String>,

    /// Milliseconds to wait for the auth endpoint.
    #[arg(long, env = "HERALD_AUTH_TIMEOUT_MS", default_value_t = 5000)]
    pub auth_timeout_ms: u64,

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
    /// subscription); past it the client's private subscriptions are refused with 431.
    #[arg(long, env = "HERALD_AUTH_HEADERS_MAX_COUNT", default_value_t = 50)]
    pub auth_headers_max_count: usize,

    /// Longest header value forwarded to the auth endpoint, in bytes; a longer one
    /// refuses the subscription with 431.
    #[arg(long, env = "HERALD_AUTH_HEADER_MAX_BYTES", default_value_t = 8 * 1024)]
    pub auth_header_max_bytes: usize,

    /// Most bytes of header values forwarded in one auth request; past it: 431.
    #[arg(long, env = "HERALD_AUTH_HEADERS_MAX_BYTES", default_value_t = 32 * 1024)]
    pub auth_headers_max_bytes: usize,

    /// Auth requests in flight to the app at once, from all connections; a subscription
    /// waits up to the auth timeout for its turn, then is refused with 503; 0: no limit.
    #[arg(long, env = "HERALD_AUTH_MAX_IN_FLIGHT", default_value_t = 32)]
    pub auth_max_in_flight: usize,

    /// Auth requests one socket.io connection may make at once (its token bucket's
    /// size); past it subscriptions are refused with 429 until tokens come back; 0: no
    /// limit.
    #[arg(long, env = "HERALD_AUTH_BURST", default_value_t = 20)]
    pub auth_burst: u32,

    /// Auth requests per second a connection gets back after a burst.
    #[arg(long, env = "HERALD_AUTH_RATE", default_value_t = 5)]
    pub auth_rate: u32,

    /// Milliseconds the app's refusal (4xx) of a channel is reused for the same
    /// connection's next attempts at that channel, without asking the app; 0: not kept.
    #[arg(long, env = "HERALD_AUTH_REFUSAL_CACHE_MS", default_value_t = 5000)]
    pub auth_refusal_cache_ms: u64,

    /// socket.io v4 sessions open without having sent their CONNECT yet; past it new
    /// handshakes are refused as socket.io's allowRequest refuses them (403, 400 on a
    /// WebSocket); 0: no limit.
    #[arg(long, env = "HERALD_SOCKETIO_MAX_UNCONNECTED", default_value_t = 5000)]
    pub socketio_max_unconnected: usize,

    /// Milliseconds a socket.io v4 session may stay without sending its CONNECT before
    /// it is closed (socket.io's connectTimeout, 45 s there; clients send it at once).
    #[arg(
        long,
        env = "HERALD_SOCKETIO_CONNECT_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub socketio_connect_timeout_ms: u64,

    /// Engine.IO ping interval in milliseconds.
    #[arg(long, env = "HERALD_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// Engine.IO ping timeout in milliseconds.
    #[arg(long, env = "HERALD_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,

    /// Largest Engine.IO message or polling body, in bytes.
    #[arg(long, env = "HERALD_MAX_HTTP_BUFFER_SIZE", default_value_t = 1_000_000)]
    pub max_http_buffer_size: usize,

    /// Client events (whispers) one connection may send per second, on both edges; 0
    /// turns client events off.
    #[arg(long, env = "HERALD_CLIENT_EVENT_RATE", default_value_t = 10)]
    pub client_event_rate: u32,

    /// Largest client event (whisper) `data` relayed, in bytes of JSON; past it the
    /// event is refused (socket.io `client_event_error`, Pusher 4301). Also the
    /// `max_message_size` of Pusher apps that set none.
    #[arg(long, env = "HERALD_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Serve the socket.io edge (`/socket.io/`); `false`: not mounted (404).
    #[arg(long, env = "HERALD_SOCKETIO", default_value_t = true, action = ArgAction::Set)]
    pub socketio: bool,

    /// Serve the Pusher edge (`/app/{key}`, `/apps/{id}/...`, RESP publications to the
    /// default app); `false`: not mounted (404).
    #[arg(long, env = "HERALD_PUSHER", default_value_t = true, action = ArgAction::Set)]
    pub pusher: bool,

    /// Channels one WebSocket connection (socket.io or Pusher) may be subscribed to, or
    /// waiting to be authorized for; 0: no limit.
    #[arg(
        long,
        env = "HERALD_MAX_CHANNELS_PER_CONNECTION",
        default_value_t = 1000
    )]
    pub max_channels_per_connection: usize,

    /// Subscriptions one WebSocket connection (socket.io or Pusher) may make at once (its
    /// token bucket's size; by default as many as it may hold, so a page subscribing to
    /// all its channels at once is never refused); past it they are refused with 429 until
    /// tokens come back (each one in a cluster costs Redis work); 0: no limit.
    #[arg(long, env = "HERALD_SUBSCRIBE_BURST", default_value_t = 1000)]
    pub subscribe_burst: u32,

    /// Subscriptions per second a connection gets back after a burst.
    #[arg(long, env = "HERALD_SUBSCRIBE_RATE", default_value_t = 20)]
    pub subscribe_rate: u32,

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

    /// Seconds of silence before the server pings a Pusher client.
    #[arg(long, env = "HERALD_ACTIVITY_TIMEOUT", default_value_t = 120)]
    pub activity_timeout: u64,

    /// URL the default app's Pusher webhooks are posted to (every event type); more
    /// URLs and per-app webhooks in the TOML file.
    #[arg(long, env = "HERALD_APP_WEBHOOK")]
    pub app_webhook: Option<String>,

    /// Send the default app's subscribers `pusher:subscription_count` events (Pusher's
    /// opt-in subscription count).
    #[arg(
        long,
        env = "HERALD_APP_SUBSCRIPTION_COUNT",
        default_value_t = false,
        action = ArgAction::Set
    )]
    pub app_subscription_count: bool,

    /// Seconds a Pusher cache channel keeps its last event for new subscribers (Pusher
    /// keeps it 30 minutes); 0 keeps nothing.
    #[arg(long, env = "HERALD_CACHE_TTL_SECONDS", default_value_t = CACHE_TTL.as_secs())]
    pub cache_ttl_seconds: u64,

    /// Webhook events waiting for one URL (at least 2): member_added and member_removed
    /// may fill all of it, other events half; past that they are dropped, counted and
    /// logged.
    #[arg(long, env = "HERALD_WEBHOOK_QUEUE", default_value_t = WebhookLimits::default().queue)]
    pub webhook_queue: usize,

    /// Milliseconds a channel_occupied or channel_vacated webhook is held back: a channel
    /// occupied and vacated (or vacated and occupied again) within it sends neither, as
    /// Pusher debounces; 0 sends them at once.
    #[arg(
        long,
        env = "HERALD_WEBHOOK_OCCUPANCY_DELAY_MS",
        default_value_t = WebhookLimits::default().occupancy_delay.as_millis() as u64
    )]
    pub webhook_occupancy_delay_ms: u64,

    /// Publications each channel keeps for clients that reconnect; 0 keeps none
    /// (publications are still numbered).
    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = HistoryLimits::default().size)]
    pub history_size: usize,

    /// Seconds a publication is kept; also how long a channel's stream outlives its last
    /// subscriber, so that what is published while its only client reconnects is kept.
    #[arg(
        long,
        env = "HERALD_HISTORY_TTL_SECONDS",
        default_value_t = HistoryLimits::default().ttl.as_secs()
    )]
    pub history_ttl_seconds: u64,

    /// Bytes all channels' history may hold (payloads and bookkeeping); when full, a
    /// channel's new publication pushes out its own oldest (counted, logged).
    #[arg(
        long,
        env = "HERALD_HISTORY_MAX_BYTES",
        default_value_t = HistoryLimits::default().memory
    )]
    pub history_max_bytes: usize,

    /// Channels that may hold history at once; past it, a channel holding none keeps
    /// nothing until others' history expires (counted, logged).
    #[arg(
        long,
        env = "HERALD_HISTORY_MAX_CHANNELS",
        default_value_t = HistoryLimits::default().channels
    )]
    pub history_max_channels: usize,

    /// Seconds a connection that dropped uncleanly (transport error or close, ping
    /// timeout, server shutdown) can be recovered within: socket.io-client >= 4.6's
    /// connection state recovery (rooms and presence kept, missed events replayed;
    /// socket.io's 2 minutes) and the Pusher resume of apps with `recovery = true` (the
    /// default app has it); 0 turns recovery off (no `pid`, no offsets on events).
    #[arg(long, env = "HERALD_RECOVERY_WINDOW", default_value_t = 120)]
    pub recovery_window: u64,

    /// Detached sessions kept at once for recovery; past it, a session that drops is
    /// ended at once (its presence left), counted and logged.
    #[arg(long, env = "HERALD_RECOVERY_MAX_SESSIONS", default_value_t = 100_000)]
    pub recovery_max_sessions: usize,

    /// Offsets each socket.io connection remembers having written (16 bytes each,
    /// allocated as used): a client whose last received event is older than that many
    /// frames back is not recovered (a new session, counted as too old).
    #[arg(long, env = "HERALD_RECOVERY_TRAIL", default_value_t = 256)]
    pub recovery_trail: usize,

    /// Closed Pusher connections kept for resuming, all apps together; past it the
    /// oldest is forgotten (counted on herald_pusher_resume_evicted_total, logged) and
    /// its client is told `window_over` if it comes back.
    #[arg(long, env = "HERALD_PUSHER_RESUME_SESSIONS", default_value_t = 100_000)]
    pub pusher_resume_sessions: usize,

    /// Most publications one Pusher HTTP API history read answers
    /// (`GET /apps/{id}/channels/{channel}/events?after=…&limit=…`): the default and
    /// the ceiling of its `limit`.
    #[arg(long, env = "HERALD_PUSHER_HISTORY_LIMIT", default_value_t = 100)]
    pub pusher_history_limit: usize,

    /// Turns on the live dashboard at `/dashboard` (off without it: 404) and is what it
    /// asks for: open `/dashboard?token=…` once (an HttpOnly cookie keeps it) or send
    /// `Authorization: Bearer …`. At least 16 characters; never defaulted.
    #[arg(long, env = "HERALD_DASHBOARD_TOKEN")]
    pub dashboard_token: Option<String>,

    /// More Pusher apps: the file's `[[apps]]` tables (no flag).
    #[arg(skip)]
    pub apps: Vec<AppConfig>,
}

/// What the TOML file may hold: the settings by their snake_case names, and `[[apps]]`.
pub type FileConfig = Settings;

impl Default for Settings {
    /// Every setting at its default: the parser's own, with no flag and no environment.
    fn default() -> Self {
        let nothing = Settings::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["herald"])
            .and_then(|given| Settings::from_arg_matches(&given));
        nothing.expect("every setting has a default or is optional")
    }
}

impl Settings {
    /// What `args` (the program's name first) and the environment give, and nothing else:
    /// the defaults are taken out of the parser, so an unset flag cannot hide the file.
    fn given<I, T>(args: I) -> Result<ArgMatches, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Settings::command()
            .mut_args(|arg| arg.default_value(None))
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())
    }

    /// These settings (the file's, or the defaults) with what was `given` over them.
    fn overridden_by(mut self, given: &ArgMatches) -> Result<Settings, String> {
        self.update_from_arg_matches(given)
            .map_err(|e| e.to_string())?;
        Ok(self)
    }
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
    /// Pusher clients running herald's recovery snippet may resume after an unclean
    /// disconnect (`herald:resume`); on for the default app.
    #[serde(default)]
    pub recovery: bool,
    /// Server-wide (`--recovery-window`, `--pusher-resume-sessions`,
    /// `--pusher-history-limit`).
    #[serde(skip)]
    pub recovery_limits: RecoveryLimits,
}

/// How much Pusher recovery keeps and answers, server-wide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoveryLimits {
    /// How long a closed connection can be resumed; zero: never.
    pub window: Duration,
    /// Closed connections kept, all apps together.
    pub sessions: usize,
    /// Most publications one HTTP API history read answers.
    pub history_read: usize,
}

impl Default for RecoveryLimits {
    fn default() -> Self {
        RecoveryLimits {
            window: Duration::from_secs(120),
            sessions: 100_000,
            history_read: 100,
        }
    }
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

/// The webhook event names Pusher defines, as `event_types` names them.
pub const EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

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
        EVENT_TYPES
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
        match self
            .event_types
            .iter()
            .find(|e| !EVENT_TYPES.contains(&e.as_str()))
        {
            Some(e) => Err(format!(
                "app {app}: unknown webhook event type {e:?} (known: {})",
                EVENT_TYPES.join(", ")
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
            recovery: false,
            recovery_limits: RecoveryLimits::default(),
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

/// What a reload puts in force ([`Config::reloaded`]).
#[derive(Debug)]
pub struct Reload {
    pub config: Config,
    /// The settings whose new value applies from now on.
    pub applied: Vec<&'static str>,
    /// The settings whose new value waits for a restart.
    pub at_restart: Vec<&'static str>,
}

/// The resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub redis_bind: SocketAddr,
    pub http_bind: SocketAddr,
    /// The HTTP port's certificate and key files (both or neither, checked at start).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The RESP port's.
    pub redis_tls_cert: Option<PathBuf>,
    pub redis_tls_key: Option<PathBuf>,
    pub shutdown_grace: Duration,
    /// The backplane's Redis URL, checked; None: a single node.
    pub cluster: Option<String>,
    /// How long a silent node's presence outlives it.
    pub cluster_node_ttl: Duration,
    /// `--check-config`: check, report, exit.
    pub check_only: bool,
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
    /// How fast one WebSocket connection may subscribe (burst 0: no limit).
    pub subscribe_rate: Rate,
    pub activity_timeout: Duration,
    /// Every app's cache channels (also in each `AppConfig`).
    pub cache_ttl: Duration,
    /// Every webhook URL's (also in each `WebhookConfig`).
    pub webhook_limits: WebhookLimits,
    /// What each channel keeps for recovery, and all of them together.
    pub history: HistoryLimits,
    /// Recovery's window (both protocols) and the Pusher resume's bounds (also in each
    /// `AppConfig`).
    pub recovery_limits: RecoveryLimits,
    /// socket.io recovery's bounds.
    pub recovery_max_sessions: usize,
    pub recovery_trail: usize,
    /// The configured Pusher apps; [`Config::pusher_apps`] says which are served. The
    /// first served app is the default one: RESP publications go to its clients.
    pub apps: Vec<AppConfig>,
    /// `apps[0]` is the built-in development app ([`DEV_APP`]): none of --app-id,
    /// --app-key, --app-secret was given.
    pub builtin_app: bool,
    /// The dashboard's token (at least [`DASHBOARD_TOKEN_MIN`] characters); None: no
    /// dashboard.
    pub dashboard_token: Option<String>,
}

/// The shortest `--dashboard-token` accepted: a guessable token would open the server's
/// inner view (and a test publisher) to anyone who can reach the HTTP port.
pub const DASHBOARD_TOKEN_MIN: usize = 16;

impl Default for Config {
    fn default() -> Self {
        Config::resolve(Settings::default()).expect("defaults are valid")
    }
}

/// An HTTP deadline in milliseconds; zero would refuse every request.
fn positive_ms(name: &str, ms: u64) -> Result<Duration, String> {
    match ms {
        0 => Err(format!("{name} must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A `--cluster` URL, as the Redis client reads it: `redis://` or `rediss://` (TLS).
fn cluster_url(url: String) -> Result<String, String> {
    let scheme = url.starts_with("redis://") || url.starts_with("rediss://");
    match redis::Client::open(url.as_str()) {
        Ok(_) if scheme => Ok(url),
        _ => Err(format!(
            "cluster {url:?} is not redis[s]://[user:password@]host:port[/db]"
        )),
    }
}

/// A `--cluster` URL without its user and password, for logs and `/healthz`.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url.to_string(),
    }
}

/// Headers that say where a request comes from or how it is framed: herald (or its HTTP
/// client) sets them, a client's are never forwarded, not even when configured.
const NEVER_FORWARDED: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
];

/// An `--auth-forward-header` name, checked and lowercased.
/// `log` if it is a filter in RUST_LOG syntax, else why not.
fn log_filter(log: String) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(&log) {
        Ok(_) => Ok(log),
        Err(e) => Err(format!("log: {e}: {log:?}")),
    }
}

pub fn forwardable(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    if HeaderName::from_bytes(lower.as_bytes()).is_err() {
        Err(format!(
            "--auth-forward-header: {name:?} is not a header name"
        ))
    } else if NEVER_FORWARDED.contains(&lower.as_str()) {
        Err(format!(
            "--auth-forward-header: {name} describes the request herald makes; \
             a client's cannot be forwarded"
        ))
    } else {
        Ok(lower)
    }
}

impl Config {
    /// Parse the process's arguments, environment and config file: the defaults, the
    /// file over them, the environment and flags over that.
    pub fn load() -> Result<Config, String> {
        // `--help` (which shows the defaults), `--version` and a malformed flag end the
        // process here; the parse that follows cannot fail where this one passed.
        Settings::command().get_matches();
        Config::from_args(std::env::args_os())
    }

    /// What `args` (the program's name first), the environment and the file `--config`
    /// names make, as [`Config::load`] reads them (an integration test's flags).
    pub fn from_args<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let given = Settings::given(args)?;
        let file = match given.get_one::<PathBuf>("config") {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        Config::resolve(file.overridden_by(&given)?)
    }

    /// The settings as herald uses them, or why they cannot work.
    fn resolve(s: Settings) -> Result<Config, String> {
        let log_format = match s.log_format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => return Err(format!("unknown log format {other:?}")),
        };
        let mut users = Vec::new();
        if let Some(pass) = s.requirepass {
            users.push(User {
                name: "default".into(),
                password: pass,
            });
        }
        for spec in s.users {
            let (name, password) = spec
                .split_once(':')
                .ok_or_else(|| format!("--user wants name:password, got {spec:?}"))?;
            users.push(User {
                name: name.into(),
                password: password.into(),
            });
        }
        let protected_mode = match s.protected_mode.as_str() {
            "yes" => true,
            "no" => false,
            other => return Err(format!("protected-mode is yes or no, got {other:?}")),
        };
        let builtin_app = s.app_id.is_none() && s.app_key.is_none() && s.app_secret.is_none();
        let [dev_id, dev_key, dev_secret] = DEV_APP.map(String::from);
        let mut apps = vec![AppConfig::new(
            &s.app_id.unwrap_or(dev_id),
            &s.app_key.unwrap_or(dev_key),
            &s.app_secret.unwrap_or(dev_secret),
        )];
        apps[0].subscription_count = s.app_subscription_count;
        apps[0].recovery = true;
        if let Some(url) = s.app_webhook {
            apps[0].webhooks.push(WebhookConfig {
                url,
                event_types: Vec::new(),
                limits: WebhookLimits::default(),
            });
        }
        for app in s.apps {
            if apps.iter().any(|a| a.id == app.id || a.key == app.key) {
                return Err(format!("app {} is defined twice", app.id));
            }
            apps.push(app);
        }
        for app in &mut apps {
            for hook in &app.webhooks {
                hook.check(&app.id)?;
            }
            app.max_message_size.get_or_insert(s.max_message_size);
        }
        let cache_ttl = Duration::from_secs(s.cache_ttl_seconds);
        if s.webhook_queue < 2 {
            return Err(format!(
                "webhook-queue is at least 2, got {}",
                s.webhook_queue
            ));
        }
        let webhook_limits = WebhookLimits {
            queue: s.webhook_queue,
            occupancy_delay: Duration::from_millis(s.webhook_occupancy_delay_ms),
        };
        let cluster = match s.cluster {
            Some(url) => Some(cluster_url(url)?),
            None => None,
        };
        let recovery_limits = RecoveryLimits {
            window: Duration::from_secs(s.recovery_window),
            sessions: s.pusher_resume_sessions,
            history_read: s.pusher_history_limit,
        };
        for app in &mut apps {
            app.cache_ttl = cache_ttl;
            app.recovery_limits = recovery_limits;
            for hook in &mut app.webhooks {
                hook.limits = webhook_limits;
            }
        }
        Ok(Config {
            redis_bind: s.redis_bind,
            http_bind: s.http_bind,
            tls_cert: s.tls_cert,
            tls_key: s.tls_key,
            redis_tls_cert: s.redis_tls_cert,
            redis_tls_key: s.redis_tls_key,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds),
            cluster,
            cluster_node_ttl: Duration::from_secs(s.cluster_node_ttl),
            check_only: s.check_config,
            log_format,
            log: log_filter(s.log)?,
            users,
            protected_mode,
            proto_max_bulk_len: s.proto_max_bulk_len,
            max_multibulk_len: s.max_multibulk_len,
            max_inline_len: s.max_inline_len,
            maxclients: s.maxclients,
            timeout: Duration::from_secs(s.timeout),
            outbox: OutboxLimits {
                hard_bytes: s.outbox_hard_limit,
                soft_bytes: s.outbox_soft_limit,
                soft_window: Duration::from_secs(s.outbox_soft_seconds),
            },
            write_timeout: Duration::from_millis(s.write_timeout_ms),
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            http_header_timeout: positive_ms("http-header-timeout-ms", s.http_header_timeout_ms)?,
            http_body_timeout: positive_ms("http-body-timeout-ms", s.http_body_timeout_ms)?,
            redis_prefixes: s.redis_prefixes,
            socketio_eio3: s.socketio_eio3,
            socketio_broadcast_public: s.socketio_broadcast_public,
            allowed_origins: s.allowed_origins,
            auth_endpoint: s.auth_endpoint,
            auth_timeout: Duration::from_millis(s.auth_timeout_ms),
            auth_ca_file: match s.auth_ca_file {
                Some(path) if !path.is_file() => {
                    return Err(format!("auth CA file {} does not exist", path.display()))
                }
                other => other,
            },
            auth_forward_headers: s
                .auth_forward_headers
                .iter()
                .map(|name| forwardable(name))
                .collect::<Result<_, _>>()?,
            auth_headers_max_count: s.auth_headers_max_count,
            auth_header_max_bytes: s.auth_header_max_bytes,
            auth_headers_max_bytes: s.auth_headers_max_bytes,
            auth_max_in_flight: s.auth_max_in_flight,
            auth_burst: s.auth_burst,
            auth_rate: s.auth_rate,
            auth_refusal_cache: Duration::from_millis(s.auth_refusal_cache_ms),
            socketio_max_unconnected: s.socketio_max_unconnected,
            socketio_connect_timeout: Duration::from_millis(s.socketio_connect_timeout_ms),
            ping_interval: Duration::from_millis(s.ping_interval_ms),
            ping_timeout: Duration::from_millis(s.ping_timeout_ms),
            max_http_buffer_size: s.max_http_buffer_size,
            client_event_rate: s.client_event_rate,
            max_message_size: s.max_message_size,
            socketio: s.socketio,
            pusher: s.pusher,
            max_channels_per_connection: s.max_channels_per_connection,
            subscribe_rate: Rate {
                burst: s.subscribe_burst,
                per_second: s.subscribe_rate,
            },
            activity_timeout: Duration::from_secs(s.activity_timeout),
            cache_ttl,
            webhook_limits,
            history: HistoryLimits {
                size: s.history_size,
                ttl: Duration::from_secs(s.history_ttl_seconds),
                memory: s.history_max_bytes,
                channels: s.history_max_channels,
            },
            recovery_limits,
            recovery_max_sessions: s.recovery_max_sessions,
            recovery_trail: s.recovery_trail,
            apps,
            builtin_app,
            dashboard_token: match s.dashboard_token {
                Some(t) if t.chars().count() < DASHBOARD_TOKEN_MIN => {
                    return Err(format!(
                        "dashboard-token is at least {DASHBOARD_TOKEN_MIN} characters"
                    ))
                }
                other => other,
            },
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

    /// What SIGHUP puts in force, from `fresh` (the configuration read again): the
    /// settings herald reads where it uses them (for the next connection, message or
    /// AUTH), over this configuration; the others keep their running value, and are
    /// named, to be said in the log, if `fresh` changed them. Refused if `fresh` would
    /// open RESP to the network without a password (`check_protected_mode`).
    ///
    /// Every field of [`Config`] is named below, in one of the two lists: a new field
    /// does not compile until it is placed.
    pub fn reloaded(&self, fresh: Config) -> Result<Reload, String> {
        let (running, mut config) = (self, self.clone());
        let (mut applied, mut at_restart) = (Vec::new(), Vec::new());
        macro_rules! classify {
            (reloads: [$($r:ident),* $(,)?], at_restart: [$($s:ident),* $(,)?]) => {
                let Config { $($r,)* $($s,)* check_only: _ } = fresh;
                $(if config.$r != $r {
                    config.$r = $r;
                    applied.push(stringify!($r));
                })*
                $(if running.$s != $s {
                    at_restart.push(stringify!($s));
                })*
            };
        }
        classify!(
            reloads: [
                users,
                timeout,
                outbox,
                allowed_origins,
                socketio_eio3,
                socketio_max_unconnected,
                socketio_connect_timeout,
                ping_interval,
                ping_timeout,
                max_http_buffer_size,
                client_event_rate,
                max_message_size,
                max_channels_per_connection,
                subscribe_rate,
                activity_timeout,
                log,
                // The Pusher apps (their key, secret, origins and limits: see
                // `pusher::apps::Apps::reload`, which says what it cannot change), and the
                // server-wide defaults they take.
                apps,
                builtin_app,
                cache_ttl,
                webhook_limits,
            ],
            at_restart: [
                dashboard_token,
                redis_bind,
                http_bind,
                tls_cert,
                tls_key,
                redis_tls_cert,
                redis_tls_key,
                shutdown_grace,
                cluster,
                cluster_node_ttl,
                log_format,
                protected_mode,
                proto_max_bulk_len,
                max_multibulk_len,
                max_inline_len,
                maxclients,
                write_timeout,
                max_connections,
                max_connections_per_ip,
                http_header_timeout,
                http_body_timeout,
                redis_prefixes,
                socketio_broadcast_public,
                auth_endpoint,
                auth_timeout,
                auth_ca_file,
                auth_forward_headers,
                auth_headers_max_count,
                auth_header_max_bytes,
                auth_headers_max_bytes,
                auth_max_in_flight,
                auth_burst,
                auth_rate,
                auth_refusal_cache,
                socketio,
                pusher,
                history,
                recovery_limits,
                recovery_max_sessions,
                recovery_trail,
            ]
        );
        config.check_protected_mode()?;
        Ok(Reload {
            config,
            applied,
            at_restart,
        })
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

    #[test]
    fn a_log_filter_is_checked_before_it_is_taken() {
        let good = "info,herald::resp=debug";
        assert_eq!(log_filter(good.into()).as_deref(), Ok(good));
        assert!(log_filter("info,herald=loud".into()).is_err());
    }

    #[test]
    fn a_reload_applies_what_is_read_at_use_and_names_what_waits_for_a_restart() {
        let running = parse(&["--redis-bind", "0.0.0.0:6379", "--requirepass", "a"], "").unwrap();
        let fresh = parse(
            &["--redis-bind", "0.0.0.0:7000", "--requirepass", "b"],
            "allowed_origins = [\"https://shop.test\"]\nmax_channels_per_connection = 3\n",
        )
        .unwrap();
        let r = running.reloaded(fresh).unwrap();
        assert_eq!(
            r.applied,
            ["users", "allowed_origins", "max_channels_per_connection"]
        );
        assert_eq!(r.at_restart, ["redis_bind"]);
        assert_eq!(
            r.config.redis_bind, running.redis_bind,
            "kept until a restart"
        );
        assert_eq!(r.config.users[0].password, "b");
        assert_eq!(r.config.max_channels_per_connection, 3);
        let open = parse(&["--redis-bind", "0.0.0.0:6379"], "").unwrap();
        let refused = running.reloaded(open).unwrap_err();
        assert!(refused.contains("without a password"), "{refused}");
    }

    /// Held to read the environment; the test that sets `HERALD_*` variables writes.
    static ENV: parking_lot::RwLock<()> = parking_lot::const_rwlock(());

    /// What [`Config::load`] makes of these flags and this file.
    fn parse(args: &[&str], toml_text: &str) -> Result<Config, String> {
        let _env = ENV.read();
        layered(args, toml_text)
    }

    fn layered(args: &[&str], toml_text: &str) -> Result<Config, String> {
        let given = Settings::given(std::iter::once("herald").chain(args.iter().copied()))?;
        let file: Settings = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Config::resolve(file.overridden_by(&given)?)
    }

    /// A setting declared once has its three doors: for every argument of the parser
    /// there is a row here, and its sample value, given as a flag, as `HERALD_<KEY>` or
    /// as `<key>` in the file, reaches the `Config`.
    #[test]
    fn every_setting_has_all_three_doors() {
        type Took = fn(&Config) -> bool;
        fn ms(n: u64) -> Duration {
            Duration::from_millis(n)
        }
        fn secs(n: u64) -> Duration {
            Duration::from_secs(n)
        }
        fn users(c: &Config) -> Vec<String> {
            c.users
                .iter()
                .map(|u| format!("{}:{}", u.name, u.password))
                .collect()
        }
        const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        #[rustfmt::skip]
        let samples: &[(&str, &str, Took)] = &[
            ("redis_bind", "127.0.0.1:7001", |c| c.redis_bind.port() == 7001),
            ("http_bind", "127.0.0.1:7002", |c| c.http_bind.port() == 7002),
            ("tls_cert", CA, |c| c.tls_cert.as_deref() == Some(CA.as_ref())),
            ("tls_key", CA, |c| c.tls_key.as_deref() == Some(CA.as_ref())),
            ("redis_tls_cert", CA, |c| c.redis_tls_cert.as_deref() == Some(CA.as_ref())),
            ("redis_tls_key", CA, |c| c.redis_tls_key.as_deref() == Some(CA.as_ref())),
            ("shutdown_grace_seconds", "7", |c| c.shutdown_grace == secs(7)),
            ("cluster", "redis://127.0.0.1:7003/2", |c| c.cluster.as_deref() == Some("redis://127.0.0.1:7003/2")),
            ("cluster_node_ttl", "7", |c| c.cluster_node_ttl == secs(7)),
            ("log_format", "json", |c| c.log_format == LogFormat::Json),
            ("log", "debug", |c| c.log == "debug"),
            ("requirepass", "pw", |c| users(c) == ["default:pw"]),
            ("users", "app:pw", |c| users(c) == ["app:pw"]),
            ("protected_mode", "no", |c| !c.protected_mode),
            ("proto_max_bulk_len", "7", |c| c.proto_max_bulk_len == 7),
            ("max_multibulk_len", "7", |c| c.max_multibulk_len == 7),
            ("max_inline_len", "7", |c| c.max_inline_len == 7),
            ("maxclients", "7", |c| c.maxclients == 7),
            ("timeout", "7", |c| c.timeout == secs(7)),
            ("outbox_hard_limit", "7", |c| c.outbox.hard_bytes == 7),
            ("outbox_soft_limit", "7", |c| c.outbox.soft_bytes == 7),
            ("outbox_soft_seconds", "7", |c| c.outbox.soft_window == secs(7)),
            ("write_timeout_ms", "7", |c| c.write_timeout == ms(7)),
            ("max_connections", "7", |c| c.max_connections == Some(7)),
            ("max_connections_per_ip", "7", |c| c.max_connections_per_ip == 7),
            ("http_header_timeout_ms", "7", |c| c.http_header_timeout == ms(7)),
            ("http_body_timeout_ms", "7", |c| c.http_body_timeout == ms(7)),
            ("redis_prefixes", "shop_", |c| c.redis_prefixes == ["shop_"]),
            ("socketio_eio3", "false", |c| !c.socketio_eio3),
            ("socketio_broadcast_public", "true", |c| c.socketio_broadcast_public),
            ("allowed_origins", "https://a.test", |c| c.allowed_origins == ["https://a.test"]),
            ("auth_endpoint", "http://a.test/auth", |c| c.auth_endpoint.is_some()),
            ("auth_timeout_ms", "7", |c| c.auth_timeout == ms(7)),
            ("auth_ca_file", CA, |c| c.auth_ca_file.as_deref() == Some(CA.as_ref())),
            ("auth_forward_headers", "X-Tenant", |c| c.auth_forward_headers == ["x-tenant"]),
            ("auth_headers_max_count", "7", |c| c.auth_headers_max_count == 7),
            ("auth_header_max_bytes", "7", |c| c.auth_header_max_bytes == 7),
            ("auth_headers_max_bytes", "7", |c| c.auth_headers_max_bytes == 7),
            ("auth_max_in_flight", "7", |c| c.auth_max_in_flight == 7),
            ("auth_burst", "7", |c| c.auth_burst == 7),
            ("auth_rate", "7", |c| c.auth_rate == 7),
            ("auth_refusal_cache_ms", "7", |c| c.auth_refusal_cache == ms(7)),
            ("socketio_max_unconnected", "7", |c| c.socketio_max_unconnected == 7),
            ("socketio_connect_timeout_ms", "7", |c| c.socketio_connect_timeout == ms(7)),
            ("ping_interval_ms", "7", |c| c.ping_interval == ms(7)),
            ("ping_timeout_ms", "7", |c| c.ping_timeout == ms(7)),
            ("max_http_buffer_size", "7", |c| c.max_http_buffer_size == 7),
            ("client_event_rate", "7", |c| c.client_event_rate == 7),
            ("max_message_size", "7", |c| [c.max_message_size, c.apps[0].max_message_size()] == [7; 2]),
            ("socketio", "false", |c| !c.socketio),
            ("pusher", "false", |c| !c.pusher),
            ("max_channels_per_connection", "7", |c| c.max_channels_per_connection == 7),
            ("subscribe_burst", "7", |c| c.subscribe_rate.burst == 7),
            ("subscribe_rate", "7", |c| c.subscribe_rate.per_second == 7),
            ("app_id", "shop", |c| c.apps[0].id == "shop" && !c.builtin_app),
            ("app_key", "shop-key", |c| c.apps[0].key == "shop-key" && !c.builtin_app),
            ("app_secret", "s3cret", |c| c.apps[0].secret == "s3cret" && !c.builtin_app),
            ("activity_timeout", "7", |c| c.activity_timeout == secs(7)),
            ("app_webhook", "http://a.test/hook", |c| c.apps[0].webhooks.len() == 1),
            ("app_subscription_count", "true", |c| c.apps[0].subscription_count),
            ("cache_ttl_seconds", "7", |c| [c.cache_ttl, c.apps[0].cache_ttl] == [secs(7); 2]),
            ("webhook_queue", "7", |c| c.webhook_limits.queue == 7),
            ("webhook_occupancy_delay_ms", "7", |c| c.webhook_limits.occupancy_delay == ms(7)),
            ("history_size", "7", |c| c.history.size == 7),
            ("history_ttl_seconds", "7", |c| c.history.ttl == secs(7)),
            ("history_max_bytes", "7", |c| c.history.memory == 7),
            ("history_max_channels", "7", |c| c.history.channels == 7),
            ("recovery_window", "7", |c| [c.recovery_limits.window, c.apps[0].recovery_limits.window] == [secs(7); 2]),
            ("recovery_max_sessions", "7", |c| c.recovery_max_sessions == 7),
            ("recovery_trail", "7", |c| c.recovery_trail == 7),
            ("pusher_resume_sessions", "7", |c| c.recovery_limits.sessions == 7),
            ("pusher_history_limit", "7", |c| c.recovery_limits.history_read == 7),
            ("dashboard_token", "0123456789abcdef", |c| c.dashboard_token.as_deref() == Some("0123456789abcdef")),
        ];
        let command = Settings::command();
        let settings: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|arg| {
                !["config", "check_config", "help", "version"].contains(&arg.get_id().as_str())
            })
            .collect();
        let ids: Vec<&str> = settings.iter().map(|arg| arg.get_id().as_str()).collect();
        let rows: Vec<&str> = samples.iter().map(|row| row.0).collect();
        assert_eq!(ids, rows, "one row per setting, in the order of Settings");

        let _env = ENV.write();
        for (arg, &(key, value, took)) in settings.iter().zip(samples) {
            assert!(
                !took(&Config::default()),
                "{key}: the sample is its default"
            );
            let list = matches!(arg.get_action(), ArgAction::Append);

            let flag = arg.get_long().expect("every setting is a long flag");
            let kebab = key.replace('_', "-");
            assert!(
                flag == kebab || (list && kebab.starts_with(flag)),
                "{key}: the flag is --{flag}"
            );
            let by_flag = layered(&[&format!("--{flag}"), value], "");
            assert!(took(&by_flag.unwrap()), "{key} by --{flag} {value}");

            let var = format!("HERALD_{}", key.to_uppercase());
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&var)), "{key}");
            std::env::set_var(&var, value);
            let by_env = layered(&[], "");
            std::env::remove_var(&var);
            assert!(took(&by_env.unwrap()), "{key} by {var}={value}");

            let bare = value.parse::<u64>().is_ok() || value.parse::<bool>().is_ok();
            let literal = match bare {
                true => value.to_string(),
                false => toml::Value::from(value).to_string(),
            };
            let line = if list {
                format!("{key} = [{literal}]")
            } else {
                format!("{key} = {literal}")
            };
            assert!(
                took(&layered(&[], &line).unwrap()),
                "{key} by `{line}` in the file"
            );
        }
    }

    #[test]
    fn a_cluster_url_is_redis_or_rediss() {
        for good in [
            "redis://127.0.0.1:6379",
            "rediss://:pw@cache.example:6380/2",
        ] {
            assert_eq!(
                parse(&["--cluster", good], "").unwrap().cluster.as_deref(),
                Some(good)
            );
        }
        for bad in ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://"] {
            let e = parse(&["--cluster", bad], "").unwrap_err();
            assert!(e.contains("is not redis[s]://"), "{bad}: {e}");
        }
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
    fn env_beats_file_and_flag_beats_env() {
        let _env = ENV.write();
        std::env::set_var("HERALD_MAXCLIENTS", "2");
        std::env::set_var("HERALD_REDIS_PREFIXES", "env_,env2_");
        let file = "maxclients = 1\nredis_prefixes = [\"file_\"]\n";
        let by_env = layered(&[], file);
        let by_flag = layered(&["--maxclients", "3", "--redis-prefix", "flag_"], file);
        std::env::remove_var("HERALD_MAXCLIENTS");
        std::env::remove_var("HERALD_REDIS_PREFIXES");
        let (by_env, by_flag) = (by_env.unwrap(), by_flag.unwrap());
        assert_eq!(by_env.maxclients, 2);
        assert_eq!(by_env.redis_prefixes, ["env_", "env2_"]);
        assert_eq!(by_flag.maxclients, 3);
        assert_eq!(by_flag.redis_prefixes, ["flag_"]);
        let c = layered(&[], file).unwrap();
        assert_eq!(
            (c.maxclients, c.redis_prefixes),
            (1, vec!["file_".to_string()])
        );
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
