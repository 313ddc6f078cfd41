//! The Redis protocol ingress: what Laravel's `redis` broadcaster, phpredis, predis and
//! redis-cli connect to, and a Redis-compatible pub/sub endpoint for any Redis client.
//!
//! - [`frame`]: reply values and their RESP2/RESP3 encoding.
//! - [`codec`]: requests off the wire (multibulk and inline), with Redis's limits and errors.
//! - [`session`]: one task per connection; executes requests in order.
//! - [`commands`]: the command table and one file per command group.
//! - [`client`]: a connection as the broker and `CLIENT LIST` see it.
//! - [`monitor`]: MONITOR, every command shown as `redis-cli monitor` shows it.
//!
//! [`serve`] accepts connections until shutdown and refuses those past `maxclients`
//! with Redis's error; open connections finish the replies in flight, and shutdown
//! waits for them (`state.connections`).

pub mod client;
pub mod codec;
pub mod commands;
pub mod frame;
pub mod monitor;
pub mod session;

use crate::metrics;
use crate::state::State;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The RESP server: what every RESP connection shares.
pub struct Server {
    pub state: State,
    pub clients: client::Registry,
    pub monitors: monitor::Monitors,
    /// SHA1s (lowercase hex) loaded with `SCRIPT LOAD`; Redis's script cache is global.
    pub scripts: Mutex<HashSet<String>>,
    pub limits: codec::Limits,
    /// The address actually bound (the configured port may be 0).
    pub addr: SocketAddr,
}

impl Server {
    pub fn new(state: State, addr: SocketAddr) -> Self {
        Server {
            addr,
            limits: codec::Limits::from_config(&state.config()),
            state,
            clients: client::Registry::default(),
            monitors: monitor::Monitors::default(),
            scripts: Mutex::new(HashSet::new()),
        }
    }
}

/// Serve RESP on `listener` until `state.shutdown` is cancelled. Each connection's task
/// is tracked in `state.connections`: it writes what it owes and closes on its own.
pub async fn serve(listener: TcpListener, state: State, tls: Option<tokio_rustls::TlsAcceptor>) {
    let addr = listener.local_addr().unwrap_or(state.config().redis_bind);
    let server = Arc::new(Server::new(state.clone(), addr));
    let health = {
        let (server, max) = (Arc::downgrade(&server), state.config().maxclients);
        crate::health::Listener::new("--maxclients", move || {
            (server.upgrade().map_or(0, |s| s.clients.count()), max)
        })
    };
    state.health.register("resp", health.clone());
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    health.accepted();
                    metrics::RESP_CONNECTIONS_TOTAL.inc();
                    let _ = stream.set_nodelay(true);
                    state.connections.spawn(session::run(stream, addr, server.clone(), tls.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    health.accept_failed(&e);
                    tracing::warn!("RESP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Redis accepts the connection, writes this and closes it.
async fn refuse<S: tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    metrics::RESP_REJECTED.inc();
    tracing::warn!("RESP connection refused: maxclients reached");
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}
