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

    /// `no` allows RESP on a non-loopback address without a password [default: yes].
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

    /// Subscriber output buffer hard limit in bytes; 0 disables [default: 33554432].
    #[arg(long, env = "HERALD_OUTBOX_HARD_LIMIT")]
    pub outbox_hard_limit: Option<usize>,

    /// Subscriber output buffer soft limit in bytes; 0 disables [default: 8388608].
    #[arg(long, env = "HERALD_OUTBOX_SOFT_LIMIT")]
    pub outbox_soft_limit: Option<usize>,

    /// Seconds a subscriber may stay above the soft limit [default: 60].
    #[arg(long, env = "HERALD_OUTBOX_SOFT_SECONDS")]
    pub outbox_soft_seconds: Option<u64>,

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

    /// Engine.IO ping interval in milliseconds [default: 25000].
    #[arg(long, env = "HERALD_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,

    /// Engine.IO ping timeout in milliseconds [default: 20000].
    #[arg(long, env = "HERALD_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,

    /// Largest Engine.IO message or polling body, in bytes [default: 1000000].
    #[arg(long, env = "HERALD_MAX_HTTP_BUFFER_SIZE")]
    pub max_http_buffer_size: Option<usize>,

    /// Client events (whispers) one connection may send per second [default: 10].
    #[arg(long, env = "HERALD_CLIENT_EVENT_RATE")]
    pub client_event_rate: Option<u32>,

    /// Channels one WebSocket connection (socket.io or Pusher) may be subscribed to, or
    /// waiting to be authorized for; 0: no limit [default: 1000].
    #[arg(long, env = "HERALD_MAX_CHANNELS_PER_CONNECTION")]
    pub max_channels_per_connection: Option<usize>,

    /// Pusher app id of the default app [default: herald].
    #[arg(long, env = "HERALD_APP_ID")]
    pub app_id: Option<String>,

    /// Pusher app key of the default app [default: herald-key].
    #[arg(long, env = "HERALD_APP_KEY")]
    pub app_key: Option<String>,

    /// Pusher app secret of the default app [default: herald-secret].
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
    outbox_hard_limit: Option<usize>,
    outbox_soft_limit: Option<usize>,
    outbox_soft_seconds: Option<u64>,
    redis_prefixes: Option<Vec<String>>,
    socketio_eio3: Option<bool>,
    socketio_broadcast_public: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    auth_endpoint: Option<String>,
    auth_timeout_ms: Option<u64>,
    auth_ca_file: Option<PathBuf>,
    ping_interval_ms: Option<u64>,
    ping_timeout_ms: Option<u64>,
    max_http_buffer_size: Option<usize>,
    client_event_rate: Option<u32>,
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
    /// Largest client message and HTTP API `data`, in bytes.
    #[serde(default = "default_message_size")]
    pub max_message_size: usize,
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
fn default_message_size() -> usize {
    10 * 1024
}
fn default_cache_ttl() -> Duration {
    crate::pusher::channels::CACHE_TTL
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
            max_message_size: default_message_size(),
            webhooks: Vec::new(),
            subscription_count: false,
            cache_ttl: default_cache_ttl(),
        }
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
    pub outbox: OutboxLimits,
    pub redis_prefixes: Vec<String>,
    pub socketio_eio3: bool,
    pub socketio_broadcast_public: bool,
    pub allowed_origins: Vec<String>,
    pub auth_endpoint: Option<String>,
    pub auth_timeout: Duration,
    pub auth_ca_file: Option<PathBuf>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_http_buffer_size: usize,
    pub client_event_rate: u32,
    /// 0: no limit.
    pub max_channels_per_connection: usize,
    pub activity_timeout: Duration,
    /// Every app's cache channels (also in each `AppConfig`).
    pub cache_ttl: Duration,
    /// Every webhook URL's (also in each `WebhookConfig`).
    pub webhook_limits: WebhookLimits,
    /// The first app is the default one: RESP publications go to its clients.
    pub apps: Vec<AppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(Cli::default(), FileConfig::default()).expect("defaults are valid")
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
        let mut apps = vec![AppConfig::new(
            &cli.app_id
                .or(file.app_id)
                .unwrap_or_else(|| "herald".into()),
            &cli.app_key
                .or(file.app_key)
                .unwrap_or_else(|| "herald-key".into()),
            &cli.app_secret
                .or(file.app_secret)
                .unwrap_or_else(|| "herald-secret".into()),
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
        for app in &apps {
            for hook in &app.webhooks {
                hook.check(&app.id)?;
            }
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
        })
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
