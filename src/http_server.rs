//! The HTTP/WebSocket listener: accept, admit, serve with deadlines.
//!
//! Port 6001 faces browsers, so every way a stranger could hold a connection open
//! without doing anything has a bound here:
//!
//! - **Connection caps.** At most `max_connections` HTTP and WebSocket connections at
//!   once (by default the open-file limit less room for RESP's `maxclients` and a
//!   spare), and optionally `max_connections_per_ip` from one address (one IPv6 /64).
//!   Past a cap a connection gets a `503` with `Connection: close` at once, before its
//!   request is read, and is counted; RESP, on its own listener, keeps its room.
//! - **Header timeout.** hyper's own, driven by a timer warp's `serve` never set: a
//!   request head must be complete within `http_header_timeout` of the connection
//!   waiting for it, whether it has just opened or has been kept alive after a
//!   response (so it is also the keep-alive idle timeout).
//! - **Write timeout.** [`Socket`] fails a write that has made no progress for
//!   `write_timeout`: an HTTP response or a WebSocket frame to a client that stopped
//!   reading. `TCP_USER_TIMEOUT` is set to the same value where the OS has it, so a
//!   peer that vanished is given up by the kernel too, even when herald's writes fit
//!   in the socket buffer (otherwise Linux retransmits for about 15 minutes).
//! - **TLS handshake** (`--tls-cert`): bounded by the header timeout too, counted when
//!   it fails; then the same connection is served as a plain one would be.
//!
//! Request bodies have their own deadline where they are read (socket.io polling,
//! the Pusher HTTP API); WebSocket connections are bounded by their protocol's
//! heartbeat from the moment they are upgraded. The request's peer address is put in
//! its extensions as [`PeerAddr`] (warp's `addr::remote` is filled only by warp's own
//! server).

use crate::metrics;
use crate::state::State;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

/// The client's address, in every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A filter extracting the client's address (None outside this server, as in tests
/// that call the routes directly).
pub fn peer_addr(
) -> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<PeerAddr>().map(|p: Option<PeerAddr>| p.map(|p| p.0))
}

/// The limits this listener enforces, resolved at start.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most connections at once; 0 for no cap.
    pub max_connections: usize,
    /// Most connections at once from one IPv4 address or IPv6 /64; 0 for no cap.
    pub max_per_ip: usize,
    pub header_timeout: Duration,
    /// Zero: writes may wait forever.
    pub write_timeout: Duration,
}

impl Limits {
    /// The configured limits. The soft open-file limit is raised to the hard one first
    /// (as Go's runtime and Redis do: every connection is a file descriptor), and an
    /// unset connection cap is computed from it.
    pub fn from_state(state: &State) -> Limits {
        let c = state.config();
        let fds = raise_open_file_limit();
        let room = default_max_connections(fds, c.maxclients);
        let max_connections = match c.max_connections {
            None => {
                tracing::info!(
                    open_file_limit = fds,
                    maxclients = c.maxclients,
                    "HTTP/WebSocket connections capped at {room} (--max-connections)"
                );
                room
            }
            Some(n) => {
                if n == 0 || n > room {
                    tracing::warn!(
                        open_file_limit = fds,
                        maxclients = c.maxclients,
                        "--max-connections {n} leaves RESP and outgoing requests short of \
                         file descriptors; at most {room} would"
                    );
                }
                n
            }
        };
        Limits {
            max_connections,
            max_per_ip: c.max_connections_per_ip,
            header_timeout: c.http_header_timeout,
            write_timeout: c.write_timeout,
        }
    }
}

/// The default cap: the open-file limit less room for every RESP client `maxclients`
/// allows (at most a quarter of the limit) and a spare sixteenth (at least 64) for the
/// listeners, logs, and the auth and webhook requests herald makes.
pub fn default_max_connections(open_files: u64, maxclients: usize) -> usize {
    let limit = usize::try_from(open_files).unwrap_or(usize::MAX);
    let spare = (limit / 16).max(64);
    let resp = maxclients.min(limit / 4);
    limit.saturating_sub(spare + resp).max(1)
}

/// The highest soft limit asked for; beyond it Linux's `nr_open` usually refuses.
const MAX_OPEN_FILES: u64 = 1 << 20;

/// Raise the soft open-file limit to the hard one; returns the limit in force.
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills in the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let want = lim.rlim_max.min(MAX_OPEN_FILES);
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return want;
        }
    }
    lim.rlim_cur.min(MAX_OPEN_FILES)
}

/// Serve `routes` on `listener` until shutdown. Each connection's task is tracked in
/// `state.connections`: at shutdown it lets its open request finish (the server's
/// grace period bounds the wait).
pub async fn serve(
    listener: TcpListener,
    state: State,
    routes: BoxedFilter<(Response,)>,
    tls: Option<TlsAcceptor>,
) {
    let limits = Limits::from_state(&state);
    let admission = Arc::new(Admission::new(limits));
    let health = {
        let admission = admission.clone();
        crate::health::Listener::new("--max-connections", move || {
            (
                admission.open.load(Ordering::Acquire),
                limits.max_connections,
            )
        })
    };
    state.health.register("http", health.clone());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
    let service = TowerToHyperService::new(warp::service(routes));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    health.accepted();
                    pair
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    health.accept_failed(&e);
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admission.admit(peer.ip()) else {
            refuse(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        set_user_timeout(&tcp, limits.write_timeout);
        let socket = Socket::new(tcp, slot);
        let (http, service, stop) = (http.clone(), service.clone(), state.shutdown.clone());
        let tls = tls.clone();
        state.connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(PeerAddr(peer));
                hyper::service::Service::call(&service, req)
            });
            match tls {
                None => serve_connection(&http, socket, service, &stop).await,
                Some(tls) => {
                    // The handshake is bounded like a request head: a client that opens
                    // a connection and says nothing holds it for no longer.
                    let shake = tokio::time::timeout(limits.header_timeout, tls.accept(socket));
                    match shake.await {
                        Ok(Ok(stream)) => serve_connection(&http, stream, service, &stop).await,
                        Ok(Err(e)) => crate::tls::handshake_failed("HTTP", &e),
                        Err(_) => {
                            metrics::HTTP_TIMEOUTS.inc();
                            crate::tls::handshake_failed("HTTP", &io::ErrorKind::TimedOut.into())
                        }
                    }
                }
            }
        });
    }
}

/// Serve one connection's requests (and its upgrade to a WebSocket) until it ends, or
/// until shutdown lets its open request finish.
async fn serve_connection<IO, S>(
    http: &http1::Builder,
    io: IO,
    service: S,
    stop: &crate::shutdown::Shutdown,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = done {
        connection_error(&e);
    }
}

/// A connection that ended in an error: counted, not logged (a browser tab closed
/// mid-request, a TCP probe), except that a timeout is counted as one too.
fn connection_error(e: &hyper::Error) {
    let timed_out = e.is_timeout()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut);
    if timed_out {
        metrics::HTTP_TIMEOUTS.inc();
    }
    metrics::HTTP_CONNECTION_ERRORS.inc();
    tracing::debug!("HTTP connection error: {e}");
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn set_user_timeout(tcp: &TcpStream, timeout: Duration) {
    if !timeout.is_zero() {
        let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout));
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn set_user_timeout(_tcp: &TcpStream, _timeout: Duration) {}

/// What a connection past a cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
connection: close\r\n\
content-type: text/plain\r\n\
retry-after: 1\r\n\
content-length: 36\r\n\
\r\n\
herald: too many connections, retry\n";

/// Refused connections waiting for their client to close (bounded: at the cap, file
/// descriptors are what is short).
static LINGERING: AtomicUsize = AtomicUsize::new(0);
const MAX_LINGERING: usize = 32;
/// How long a refused connection waits for its client to read the 503 and close.
const LINGER: Duration = Duration::from_millis(500);

/// Answer 503 without reading the request, and close. Closing a socket with unread
/// bytes resets it, which can destroy the answer before the client reads it, so the
/// connection lingers briefly reading what the client sends (a few at a time; the
/// rest are closed at once).
fn refuse(tcp: TcpStream) {
    metrics::HTTP_REFUSED.inc();
    warn_refused();
    let mut sink = [0u8; 4096];
    while matches!(tcp.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = tcp.try_write(REFUSAL);
    let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Write);
    if LINGERING.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    tokio::spawn(async move {
        let mut tcp = tcp;
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 4096];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Log refusals at most every ten seconds: at the cap there may be thousands.
fn warn_refused() {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let mut last = LAST.lock();
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    drop(last);
    tracing::warn!(
        refused = metrics::HTTP_REFUSED.get(),
        "HTTP connection refused: connection cap reached (--max-connections, \
         --max-connections-per-ip)"
    );
}

/// Open connections, in all and per address.
struct Admission {
    limits: Limits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    fn new(limits: Limits) -> Self {
        Admission {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a new connection from `ip`, or None past a cap.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let max = self.limits.max_connections;
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if max > 0 && open >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let key = (self.limits.max_per_ip > 0).then(|| ip_key(ip));
        if let Some(key) = key {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(key).or_insert(0);
            if *n >= self.limits.max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            *n += 1;
        }
        metrics::HTTP_CONNECTIONS.inc();
        Some(Slot {
            admission: self.clone(),
            key,
        })
    }
}

/// IPv4 addresses count one by one, IPv6 ones by /64 (what one host is usually given).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// One admitted connection; dropping it (when the socket closes, upgraded or not)
/// frees its place.
struct Slot {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(key) = self.key {
            let mut per_ip = a.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&key);
                }
            }
        }
        a.open.fetch_sub(1, Ordering::AcqRel);
        metrics::HTTP_CONNECTIONS.dec();
    }
}

/// An accepted connection: the TCP stream, its place under the caps (which also
/// holds the write timeout), and the write deadline. The deadline is armed only when a
/// write cannot proceed and disarmed by any progress, so a connection whose writes go
/// through never touches a timer; its timer is allocated the first time a write has to
/// wait. Every upgraded WebSocket keeps one for its life, so it is kept small.
pub struct Socket {
    tcp: TcpStream,
    slot: Slot,
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl Socket {
    fn new(tcp: TcpStream, slot: Slot) -> Self {
        Socket {
            tcp,
            slot,
            stall: None,
            stalled: false,
        }
    }

    /// Run a write; a write that could not proceed starts (or keeps) the stall clock,
    /// and fails once it has run for `write_timeout`.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let polled = write(Pin::new(&mut self.tcp), cx);
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        let write_timeout = self.slot.admission.limits.write_timeout;
        if write_timeout.is_zero() {
            return Poll::Pending;
        }
        if !self.stalled {
            self.stalled = true;
            let at = Instant::now() + write_timeout;
            match &mut self.stall {
                Some(t) => t.as_mut().reset(at),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match self.stall.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("write timed out: the client read nothing for {write_timeout:?}"),
            ))),
            _ => Poll::Pending,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |tcp, cx| tcp.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |tcp, cx| tcp.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_resp() {
        // A typical systemd soft limit: RESP gets a quarter, 64 spare.
        assert_eq!(default_max_connections(1024, 10_000), 1024 - 256 - 64);
        // Raised limits: all of maxclients fits, a sixteenth spare.
        assert_eq!(
            default_max_connections(1 << 20, 10_000),
            (1 << 20) - 10_000 - (1 << 16)
        );
        assert_eq!(default_max_connections(16, 10_000), 1);
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
