//! Starting and stopping herald: bind the listeners, share the state, shut down cleanly.
//!
//! `start` is what `main` runs and what the Rust integration tests run in-process. On
//! shutdown one [`Shutdown`] signal reaches every listener and connection: listeners
//! stop accepting, RESP connections finish the replies in flight, WebSocket
//! connections send their protocol's goodbye, and `Running::stopped` resolves when the
//! listeners and then every connection's task (`State::connections`) are done (bounded
//! by the grace period, `--shutdown-grace-seconds`), and the webhooks that their leaving made have been posted
//! (bounded too). Nothing is polled: each wait is woken by what it waits for.
//!
//! Beside the listeners runs the broker's sweep ([`Broker::sweep`]): every few seconds it
//! frees expired history and the streams that lingered for it, until shutdown.

use crate::broker::Broker;
use crate::config::Config;
use crate::pusher::apps::Apps;
use crate::pusher::webhooks;
use crate::shutdown::Shutdown;
use crate::socketio;
use crate::state::{Shared, State};
use crate::tls::Certificates;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the connections ended at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Each finished on its own within the grace period (its goodbye written).
    Drained,
    /// Some had not finished their last writes when the grace period ended, and were
    /// closed (by their own deadline or by the server's wait).
    Cut,
}

/// A started server.
pub struct Running {
    pub redis_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub state: State,
    pub edges: Edges,
    /// The listeners' certificates (HTTP's, RESP's), for [`Running::reload`].
    certificates: Vec<Arc<Certificates>>,
    tasks: JoinSet<()>,
}

/// The WebSocket edges, each None when switched off (a dashboard reads them here).
#[derive(Clone)]
pub struct Edges {
    pub socketio: Option<Arc<socketio::Edge>>,
    /// The Pusher apps (each app is its own broker subscriber).
    pub pusher: Option<Arc<Apps>>,
}

impl Edges {
    /// Build the edges on `state`'s broker.
    fn start(state: &State) -> Edges {
        Edges {
            socketio: socketio::Edge::start(state),
            pusher: crate::pusher::start(state),
        }
    }
}

/// How long, once connections are closed, the webhooks their leaving made may take.
const WEBHOOK_GRACE: Duration = Duration::from_secs(5);

/// Bind both listeners and serve. Ports of 0 pick free ones; the bound addresses are
/// logged and returned.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let (http_tls, redis_tls) = listener_certificates(&config)?;
    let shared_ports = config.cluster.is_some();
    let redis = listen(config.redis_bind, shared_ports)?;
    let http = listen(config.http_bind, shared_ports)?;
    let (redis_addr, http_addr) = (redis.local_addr()?, http.local_addr()?);
    let state = Shared::new(config);
    let edges = Edges::start(&state);
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::resp::serve(
        redis,
        state.clone(),
        redis_tls.as_ref().map(|c| c.acceptor(&[])),
    ));
    let routes = crate::http::routes(state.clone(), edges.socketio.clone(), edges.pusher.clone());
    tasks.spawn(crate::http_server::serve(
        http,
        state.clone(),
        routes,
        http_tls.as_ref().map(|c| c.acceptor(&[b"http/1.1"])),
    ));
    tasks.spawn(sweep(
        state.broker.clone(),
        sweep_every(state.config().history.ttl),
        state.shutdown.clone(),
    ));
    let tls = |c: &Option<_>| if c.is_some() { "TLS" } else { "plain" };
    tracing::info!(%redis_addr, transport = tls(&redis_tls), "RESP (Redis protocol) listening");
    tracing::info!(%http_addr, transport = tls(&http_tls), "HTTP and WebSocket listening");
    Ok(Running {
        redis_addr,
        http_addr,
        state,
        edges,
        certificates: http_tls.into_iter().chain(redis_tls).collect(),
        tasks,
    })
}

/// `--check-config`: whether herald would start with `config` as far as can be known
/// without binding its ports (settings, apps, TLS pairs), and a summary of it.
pub fn check(config: &Config) -> Result<String, String> {
    config.check_protected_mode()?;
    let (http, resp) = listener_certificates(config).map_err(|e| e.to_string())?;
    let tls = |c: Option<_>| if c.is_some() { "TLS" } else { "plain" };
    let (http, resp) = (tls(http), tls(resp));
    let apps: Vec<&str> = config.apps.iter().map(|a| a.id.as_str()).collect();
    let cluster = config.cluster.as_deref().map_or(
        "none (one node)".to_string(),
        crate::config::without_credentials,
    );
    Ok(format!(
        "configuration OK\nRESP {} ({resp})\nHTTP {} ({http})\nsocket.io edge: {}\n\
         Pusher apps: {}\ncluster: {cluster}",
        config.redis_bind,
        config.http_bind,
        if config.socketio { "on" } else { "off" },
        if config.pusher {
            apps.join(", ")
        } else {
            "off".into()
        },
    ))
}

/// The HTTP and the RESP listener's certificates, each None when it is plain.
type ListenerCertificates = (Option<Arc<Certificates>>, Option<Arc<Certificates>>);

fn listener_certificates(config: &Config) -> std::io::Result<ListenerCertificates> {
    let http = certificates("HTTP", "--tls-cert", &config.tls_cert, &config.tls_key)?;
    let resp = certificates(
        "RESP",
        "--redis-tls-cert",
        &config.redis_tls_cert,
        &config.redis_tls_key,
    )?;
    Ok((http, resp))
}

/// A listener's certificates, from its pair of files (both or neither).
fn certificates(
    what: &'static str,
    flag: &str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> std::io::Result<Option<Arc<Certificates>>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Certificates::load(what, cert, key)
            .map(Some)
            .map_err(std::io::Error::other),
        _ => Err(std::io::Error::other(format!(
            "{flag} and its key go together: give both or neither"
        ))),
    }
}

/// A listener on `addr`. `shared`: with SO_REUSEPORT, so the other herald processes of a
/// cluster on this machine may listen on the same port (the kernel spreads connections
/// over them); a single node does not share, so a second one on its port fails to start.
fn listen(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// How often the sweep runs: a quarter of the history TTL, between 250 ms and 5 s. A
/// stream nobody listens to then goes at most that long after its TTL.
fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// Sweep `broker` every `every` until `shutdown`.
async fn sweep(broker: Arc<dyn Broker>, every: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => broker.sweep(Instant::now()),
        }
    }
}

impl Running {
    /// SIGHUP: read the listeners' certificates again, serve the Pusher apps of `config`
    /// (the configuration read again: flags, environment, file), and put in force the
    /// settings that apply from the next connection, message or AUTH on (origins,
    /// per-connection limits, heartbeats, RESP users: [`Config::reloaded`]); the log names
    /// those that wait for a restart. A pair that does not load, or a configuration that
    /// does not, leaves what is in use, and the log says why. Nobody is disconnected.
    pub fn reload(&self, config: Result<Config, String>) {
        self.reload_certificates();
        let applied = config.and_then(|fresh| {
            let reload = self.state.config().reloaded(fresh)?;
            let apps = match &self.edges.pusher {
                Some(apps) => crate::pusher::reload(&self.state, apps, &reload.config)?,
                None => Default::default(),
            };
            if reload.applied.contains(&"log") {
                if let Err(e) = crate::logging::set_filter(&reload.config.log) {
                    tracing::error!("the log filter could not be changed: {e}");
                }
            }
            self.state.set_config(reload.config);
            Ok((apps, reload.applied, reload.at_restart))
        });
        match applied {
            Ok((r, applied, at_restart)) => {
                crate::metrics::CONFIG_RELOADS.inc();
                tracing::info!(
                    added = ?r.added, removed = ?r.removed, updated = ?r.updated,
                    settings = ?applied,
                    "configuration reloaded: Pusher apps, and the settings that apply from \
                     the next connection or message on"
                );
                if !at_restart.is_empty() {
                    tracing::warn!(
                        settings = ?at_restart,
                        "changed in the configuration, but take effect only after a restart"
                    );
                }
            }
            Err(e) => {
                crate::metrics::CONFIG_RELOAD_FAILURES.inc();
                tracing::error!("configuration not reloaded: {e}; the running one is kept");
            }
        }
    }

    fn reload_certificates(&self) {
        for c in &self.certificates {
            match c.reload() {
                Ok(()) => {
                    crate::metrics::TLS_RELOADS.inc();
                    tracing::info!("{c} reloaded");
                }
                Err(e) => {
                    crate::metrics::TLS_RELOAD_FAILURES.inc();
                    tracing::error!("{e}; the certificate in use is kept");
                }
            }
        }
    }

    /// Begin shutting down; `stopped` waits for the end.
    pub fn shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// Wait until the listeners and the connections have finished (at most the grace
    /// period after shutdown), then for the webhooks their leaving made (at most the
    /// webhook grace period). Says whether the connections finished on their own.
    pub async fn stopped(mut self) -> Stopped {
        self.state.shutdown.cancelled().await;
        let connections = &self.state.connections;
        let all = async {
            while self.tasks.join_next().await.is_some() {}
            // No listener accepts any more, so no connection task starts but from one
            // still running (an upgrade from its HTTP connection).
            connections.close();
            connections.wait().await;
        };
        let grace = self.state.shutdown.grace();
        let stopped = match tokio::time::timeout(grace, all).await {
            Ok(()) if !self.state.shutdown.any_cut() => Stopped::Drained,
            Ok(()) => Stopped::Cut,
            Err(_) => {
                tracing::warn!("connections still open after {grace:?}; closing them");
                Stopped::Cut
            }
        };
        // Leaving made presence changes: in a cluster they are decided in Redis, and the
        // app's webhooks come from the verdicts; both within the webhooks' grace.
        let webhooks_done = async {
            self.state.presence.settled().await;
            webhooks::delivered().await
        };
        if tokio::time::timeout(WEBHOOK_GRACE, webhooks_done)
            .await
            .is_err()
        {
            tracing::warn!(
                events = webhooks::pending(),
                "webhook events not delivered before exit"
            );
        }
        stopped
    }
}
