//! One RESP connection: read requests, execute them in order, write replies and
//! deliveries.
//!
//! A single task per connection. Replies and pub/sub deliveries both go through the
//! connection's [`Outbox`], so a message published by another
//! client can never overtake a reply or land in the middle of one. The task stops
//! reading after `QUIT`, a protocol error or shutdown, writes what it owes, then closes.
//! If the outbox overflows (a subscriber that does not read), the client is dropped,
//! logged and counted, as Redis does with `client-output-buffer-limit pubsub`. With
//! `timeout` set, a client idle for longer is closed, as Redis closes it, except a
//! subscriber or a monitor.

use super::client::Client;
use super::codec::RequestDecoder;
use super::commands;
use super::commands::connection::Replies;
use super::frame::{Frame, Proto};
use super::monitor;
use super::Server;
use crate::metrics;
use crate::outbox::{Closed, Outbox};
use bytes::BufMut;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use std::borrow::Cow;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio_util::codec::Decoder;
use tokio_util::sync::WaitForCancellationFuture;

/// Redis reads requests 16 KiB at a time and applies its "too big" checks after each
/// read; reading the same way gives the same verdicts on the same bytes.
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing connection may take to write what it owes.
const FINAL_WRITE: Duration = Duration::from_secs(2);

/// How a session reads its connection: at most [`READ_CHUNK`] bytes at a time into the
/// request buffer, once bytes are there. `None`: woken, but nothing to read after all.
pub trait ReadSide: Send {
    fn read_chunk(
        &mut self,
        rbuf: &mut BytesMut,
    ) -> impl std::future::Future<Output = Option<std::io::Result<usize>>> + Send;
}

/// A plain connection waits for readiness without a buffer, so an idle connection holds
/// none: the buffer exists only while bytes are being read or a request is incomplete.
/// Reading through `AsyncRead` (not `try_read`) lets tokio note a short read as "all
/// read", which spares a second read that would only say so.
impl ReadSide for OwnedReadHalf {
    async fn read_chunk(&mut self, rbuf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        if let Err(e) = self.readable().await {
            return Some(Err(e));
        }
        rbuf.reserve(READ_CHUNK);
        self.read_buf(&mut rbuf.limit(READ_CHUNK)).now_or_never()
    }
}

/// A TLS connection reads through rustls, which keeps its own buffers.
impl<S: AsyncRead + Send> ReadSide for tokio::io::ReadHalf<S> {
    async fn read_chunk(&mut self, rbuf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        rbuf.reserve(READ_CHUNK);
        Some(self.read_buf(&mut rbuf.limit(READ_CHUNK)).await)
    }
}

/// The per-connection state commands read and change.
pub struct Session {
    pub server: Arc<Server>,
    pub client: Arc<Client>,
    pub proto: Proto,
    pub authenticated: bool,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    /// Stop reading; close once the replies so far are written.
    pub closing: bool,
    /// `CLIENT REPLY`: whether replies are written (pub/sub pushes always are).
    pub replies: Replies,
    decoder: RequestDecoder,
    /// Replies encoded but not yet in the outbox.
    out: BytesMut,
    /// While a command is shown to MONITOR: the lines its script's calls add after it.
    pub script_calls: Option<Vec<Bytes>>,
}

/// Serve one accepted connection to its end.
pub async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    server: Arc<Server>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let laddr = stream.local_addr().unwrap_or(addr);
    let client = Arc::new(Client::new(
        addr,
        laddr,
        stream.as_raw_fd(),
        Outbox::new(server.state.config().outbox),
    ));
    let Some(tls) = tls else {
        if !server
            .clients
            .admit(client.clone(), server.state.config().maxclients)
        {
            super::refuse(stream).await;
            return;
        }
        let (rd, wr) = stream.into_split();
        return serve_client(server, client, rd, wr).await;
    };
    // The handshake is bounded like an HTTP request head: a client that connects and
    // says nothing holds a file descriptor for no longer.
    let deadline = server.state.config().http_header_timeout;
    let stream = match tokio::time::timeout(deadline, tls.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return crate::tls::handshake_failed("RESP", &e),
        Err(_) => {
            return crate::tls::handshake_failed("RESP", &std::io::ErrorKind::TimedOut.into())
        }
    };
    if !server
        .clients
        .admit(client.clone(), server.state.config().maxclients)
    {
        super::refuse(stream).await;
        return;
    }
    let (rd, wr) = tokio::io::split(stream);
    serve_client(server, client, rd, wr).await
}

/// Serve an admitted client on its connection's two halves, then forget it.
async fn serve_client<R: ReadSide, W: AsyncWrite + Unpin>(
    server: Arc<Server>,
    client: Arc<Client>,
    rd: R,
    wr: W,
) {
    let addr = client.addr;
    metrics::RESP_CONNECTIONS.inc();
    let authenticated = !server.state.config().auth_required();
    let mut session = Session {
        decoder: RequestDecoder::new(server.limits, authenticated),
        server: server.clone(),
        client: client.clone(),
        proto: Proto::Resp2,
        authenticated,
        channels: HashSet::new(),
        patterns: HashSet::new(),
        shard_channels: HashSet::new(),
        closing: false,
        replies: Replies::On,
        out: BytesMut::new(),
        script_calls: None,
    };
    let why = session.serve(rd, wr).await;
    tracing::debug!(id = client.id, %addr, "RESP connection closed: {why}");
    session.leave_all();
    client.outbox.close(Closed::Server("connection closed"));
    server.monitors.remove(client.id);
    server.clients.remove(client.id);
    metrics::RESP_CONNECTIONS.dec();
}

impl Session {
    async fn serve<R: ReadSide, W: AsyncWrite + Unpin>(
        &mut self,
        mut rd: R,
        mut wr: W,
    ) -> &'static str {
        let mut rbuf = BytesMut::new();
        let mut batch: Vec<Bytes> = Vec::new();
        let client = self.client.clone();
        let shutdown = self.server.state.shutdown.clone();
        // One wait for a kick and one for shutdown for the connection's life (the kick's
        // renewed when it fires), rather than new waiters registered on every turn of
        // the loop: the shutdown token's waiter list is shared by every connection.
        let kicked = client.kicked.notified();
        tokio::pin!(kicked);
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        // Redis's `timeout`: one timer for the connection's life, due when the client
        // will have been idle long enough; it is moved on, not reset per request.
        let idle = self.server.state.config().timeout;
        let idle_check = tokio::time::sleep(idle);
        tokio::pin!(idle_check);
        let why = loop {
            tokio::select! {
                _ = &mut kicked => {
                    kicked.set(client.kicked.notified());
                    if let Some(closed) = client.outbox.closed() {
                        break self.dropped(closed);
                    }
                }
                drained = client.outbox.drain(&mut batch) => match drained {
                    Err(closed) => break self.dropped(closed),
                    Ok(oldest) => {
                        // Let the publishers already woken run first: what they deliver
                        // meanwhile joins this write, as Redis writes a client once per
                        // turn of its event loop rather than once per message.
                        tokio::task::yield_now().await;
                        let oldest = match client.outbox.take_now(&mut batch) {
                            Ok(later) => oldest.or(later),
                            Err(closed) => break self.dropped(closed),
                        };
                        if let Err(why) = self.write(&mut wr, &mut batch, oldest, kicked.as_mut(), stop.as_mut()).await {
                            break why;
                        }
                    }
                },
                read = rd.read_chunk(&mut rbuf) => {
                    match read {
                        None => {}
                        Some(Ok(0)) | Some(Err(_)) => break "client went away",
                        Some(Ok(_)) => {
                            self.on_bytes(&mut rbuf);
                            if self.closing {
                                break "closed by request or protocol error";
                            }
                            // The replies to this read go out now, in one write, rather
                            // than on the loop's next turn.
                            match self.take_replies(&mut batch) {
                                Err(closed) => break self.dropped(closed),
                                Ok(_) if batch.is_empty() => {}
                                Ok(oldest) => {
                                    if let Err(why) = self.write(&mut wr, &mut batch, oldest, kicked.as_mut(), stop.as_mut()).await {
                                        break why;
                                    }
                                }
                            }
                        }
                    }
                    if rbuf.is_empty() {
                        rbuf = BytesMut::new();
                    }
                }
                _ = &mut stop => break "server shutdown",
                _ = &mut idle_check, if !idle.is_zero() => match self.idle_until(idle) {
                    Some(at) => idle_check.as_mut().reset(at.into()),
                    None => break "idle timeout",
                },
            }
        };
        // Write what is owed (replies already executed), then close.
        self.leave_all();
        let mut last = Vec::new();
        if client.outbox.take_now(&mut last).is_ok() && !last.is_empty() {
            let _ =
                tokio::time::timeout(FINAL_WRITE, crate::net_write::write_all(&mut wr, &mut last))
                    .await;
        }
        let _ = wr.shutdown().await;
        why
    }

    /// Write `batch` out. A write is never abandoned half way (that would cut a frame)
    /// unless the client is being dropped anyway.
    /// Write `batch`; `oldest`: when the oldest publication frame in it was queued, for
    /// `herald_delivery_seconds`.
    async fn write<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        batch: &mut Vec<Bytes>,
        oldest: Option<Instant>,
        mut kicked: Pin<&mut Notified<'_>>,
        mut stop: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Result<(), &'static str> {
        let client = &self.client;
        let write = crate::net_write::write_all(wr, batch);
        tokio::pin!(write);
        tokio::select! {
            w = &mut write => {
                crate::metrics::DELIVERY_SECONDS.observe_since(oldest);
                w.map_err(|_| "write failed")
            }
            _ = &mut kicked => Err(client
                .outbox
                .closed()
                .map_or("outbox closed", |c| self.dropped(c))),
            _ = &mut stop => {
                let shutdown = &self.server.state.shutdown;
                match tokio::time::timeout_at(shutdown.deadline(), &mut write).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err("write failed"),
                    Err(_) => {
                        shutdown.cut_one();
                        Err("server shutdown; client too slow to take its last replies")
                    }
                }
            }
        }
    }

    /// When this client may next be closed for idling, or None if it has been idle for
    /// longer than `idle` already. As in Redis, subscribers and monitors never time out
    /// (they are checked again an idle period later).
    fn idle_until(&self, idle: Duration) -> Option<Instant> {
        if self.subscriptions() > 0 || self.client.meta.lock().monitor {
            return Some(Instant::now() + idle);
        }
        let last = *self.client.last_active.lock();
        if last.elapsed() > idle {
            tracing::debug!(id = self.client.id, addr = %self.client.addr, "closing idle client");
            return None;
        }
        Some(last + idle)
    }

    fn dropped(&self, closed: Closed) -> &'static str {
        if closed.is_overflow() {
            metrics::SLOW_CONSUMERS_DROPPED.inc();
            tracing::warn!(
                id = self.client.id,
                addr = %self.client.addr,
                "RESP subscriber disconnected: {closed}"
            );
            "slow consumer"
        } else {
            "outbox closed"
        }
    }

    /// Execute every complete request in `rbuf`, then hand the replies to the outbox.
    fn on_bytes(&mut self, rbuf: &mut BytesMut) {
        *self.client.last_active.lock() = Instant::now();
        while !self.closing {
            self.decoder.authenticated = self.authenticated;
            match self.decoder.decode(rbuf) {
                Ok(Some(args)) => self.execute(args),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(id = self.client.id, "RESP protocol error: {e}");
                    if !self.replies.suppressed() {
                        self.out.extend_from_slice(&e.reply());
                    }
                    self.closing = true;
                }
            }
        }
        if self.closing {
            self.flush();
        }
    }

    /// Move the replies executed so far, and whatever else is queued for this
    /// connection, into `batch`, in order. With no subscription and nothing queued, no
    /// delivery can come between them, so the replies skip the outbox (its lock and the
    /// wake-up of this very task).
    /// As [`Outbox::take_now`], when the oldest publication frame taken was queued.
    fn take_replies(&mut self, batch: &mut Vec<Bytes>) -> Result<Option<Instant>, Closed> {
        if self.subscriptions() == 0 && self.client.outbox.queued_bytes() == 0 {
            if !self.out.is_empty() {
                batch.push(self.out.split().freeze());
            }
            return Ok(None);
        }
        self.flush();
        self.client.outbox.take_now(batch)
    }

    fn execute(&mut self, args: Vec<Bytes>) {
        self.execute_one(args);
        self.replies = self.replies.after_request();
    }

    fn execute_one(&mut self, args: Vec<Bytes>) {
        metrics::RESP_COMMANDS.inc();
        let watched = self
            .server
            .monitors
            .active()
            .then(|| (SystemTime::now(), args.clone()));
        let (spec, cmd) = match commands::from_args(args) {
            Ok(found) => found,
            Err(reject) => return self.reply(reject),
        };
        let name: Cow<'static, str> = match &cmd {
            commands::Command::Keyspace(name) => Cow::Owned(name.clone()),
            _ => Cow::Borrowed(spec.name),
        };
        self.client.meta.lock().last_cmd = name.clone();
        if !self.authenticated && !spec.no_auth() {
            return self.reply(Frame::Error("NOAUTH Authentication required.".into()));
        }
        if self.proto == Proto::Resp2 && self.subscriptions() > 0 && !spec.allowed_subscribed() {
            let refusal = subscribed_mode_error(&name);
            return self.reply(refusal);
        }
        let Some((at, args)) = watched.filter(|_| !spec.is_admin()) else {
            return cmd.run(self);
        };
        self.script_calls = Some(Vec::new());
        cmd.run(self);
        let db = self.client.meta.lock().db;
        let mut lines = vec![monitor::line(at, db, &self.client.addr.to_string(), &args)];
        lines.extend(self.script_calls.take().unwrap_or_default());
        self.server.monitors.feed(&lines);
    }

    /// A call a script makes, for MONITOR (shown after the script's own line).
    pub fn script_call(&mut self, args: &[Bytes]) {
        if let Some(calls) = &mut self.script_calls {
            let db = self.client.meta.lock().db;
            calls.push(monitor::line(SystemTime::now(), db, "lua", args));
        }
    }

    /// Queue a reply, unless `CLIENT REPLY` silences it: pub/sub confirmations (pushes)
    /// are written all the same, as Redis writes them.
    pub fn reply(&mut self, frame: Frame) {
        if self.replies.suppressed() && !matches!(frame, Frame::Push(_)) {
            return;
        }
        frame.encode(self.proto, &mut self.out);
    }

    /// Move the replies queued so far into the outbox. Called before anything that may
    /// deliver to this very connection, so replies and deliveries keep Redis's order.
    pub fn flush(&mut self) {
        if !self.out.is_empty() && !self.client.outbox.push(self.out.split().freeze()) {
            self.client.kicked.notify_one();
        }
    }

    /// Channels + patterns + shard channels this connection is subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    /// Mirror the subscription counts into `CLIENT LIST`.
    pub fn sync_meta(&self) {
        let mut m = self.client.meta.lock();
        m.sub = self.channels.len();
        m.psub = self.patterns.len();
        m.ssub = self.shard_channels.len();
    }

    /// Drop every subscription without replying (RESET, connection end).
    pub fn leave_all(&mut self) {
        let broker = &self.server.state.broker;
        let id = self.client.id;
        for c in self.channels.drain() {
            broker.unsubscribe(&c, id);
        }
        for p in self.patterns.drain() {
            broker.punsubscribe(&p, id);
        }
        for s in self.shard_channels.drain() {
            broker.sunsubscribe(&s, id);
        }
        self.sync_meta();
    }
}

/// Redis 7's refusal of a non-pub/sub command on a RESP2 connection in subscribed mode.
fn subscribed_mode_error(name: &str) -> Frame {
    Frame::err(format_args!(
        "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    ))
}
