//! One WebSocket connection's task: read client frames, write queued frames, tick.
//!
//! A single task per connection, no writer task and no channel: the task waits on the
//! socket, on the connection's [`Outbox`], on its heartbeat deadline and on shutdown.
//! Everything queued is written with one vectored write. Between messages the read
//! buffer is released, so an idle connection holds only the task and its outbox.
//!
//! A client that stops reading cannot pin its connection: while a write is blocked the
//! task also waits on the outbox closing (a push past the hard limit closes it at once,
//! the soft limit's window is timed even if nothing more is pushed) and on shutdown
//! (the write then has the grace period to finish), and the socket fails a write that
//! makes no progress for the write timeout (`crate::http_server::Socket`). Any way it
//! ends, the handler's `on_close` runs as for a client that left. A client that
//! upgrades and then sends nothing is bounded by its protocol's heartbeat
//! ([`Handler::next_tick`]): socket.io closes it after one ping interval and ping
//! timeout (v4, or the connect timeout if sooner), Pusher after the activity timeout
//! and the pong wait.
//!
//! A handler that must hear from elsewhere (the cluster's Redis) before it can answer a
//! message returns [`Flow::Await`]: the task then awaits [`Handler::awaiting`]'s future
//! alone, reading nothing more and writing nothing from the outbox, so the answer still
//! precedes every frame queued meanwhile; the messages read with it follow in order.

use super::frame::{self, Decoder, Message};
use super::WsStream;
use crate::outbox::{Closed, Outbox};
use crate::shutdown::Shutdown;
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

/// The edges write their refusals and probe answers with it too.
use crate::net_write::write_all;

/// What the connection should do after a handler call.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Wait for what [`Handler::awaiting`] gives before reading on: see there.
    Await,
    /// Send a close frame with this code and reason, then end the connection.
    Close(u16, Cow<'static, str>),
}

/// What a handler waits for from elsewhere (the backplane) before it reads on.
pub type Waiting<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The protocol spoken over the WebSocket (socket.io, Pusher).
pub trait Handler: Send {
    /// What an awaited answer brings back to the handler.
    type Awaited: Send;
    /// A message from the client. Direct replies are pushed to `out` as encoded frames.
    /// WebSocket pings have already been answered when they reach here.
    fn on_message(&mut self, msg: Message, out: &mut Vec<Bytes>) -> Flow;
    /// When `on_tick` should run next (heartbeats); None for never.
    fn next_tick(&self) -> Option<Instant>;
    fn on_tick(&mut self, out: &mut Vec<Bytes>) -> Flow;
    /// The connection is over, whatever the reason: release subscriptions here.
    fn on_close(&mut self, why: &str);
    /// After `on_message` returned [`Flow::Await`]: what to wait for. Meanwhile the
    /// connection reads nothing more from its client (messages already read wait their
    /// turn), writes nothing from its outbox (frames queue there, within its limits) and
    /// ticks no heartbeat; shutdown and the outbox closing end the wait. The future must
    /// end by a deadline of its own.
    fn awaiting(&mut self) -> Option<Waiting<Self::Awaited>> {
        None
    }
    /// What [`Handler::awaiting`]'s future gave, in the order of the client's messages:
    /// replies go to `out`, before any queued frame.
    fn on_awaited(&mut self, _got: Self::Awaited, _out: &mut Vec<Bytes>) -> Flow {
        Flow::Continue
    }
    /// The last frames sent when the server shuts down.
    fn shutdown_frames(&self) -> Vec<Bytes> {
        vec![frame::close(1001, "server shutting down")]
    }
}

/// How long a closing connection may take to write its last frames (a close frame,
/// the goodbye at shutdown, or the rest of a write that shutdown interrupted).
const FINAL_WRITE: Duration = Duration::from_secs(2);

/// Run a connection until the client leaves, the protocol closes it, its outbox
/// overflows or the server shuts down. It runs in the task that
/// [`Upgrade::reply`](crate::ws::Upgrade::reply) started, which shutdown waits for.
pub async fn drive<H: Handler>(
    mut io: WsStream,
    outbox: Arc<Outbox>,
    mut handler: H,
    max_message: usize,
    shutdown: Shutdown,
) {
    let why = run(&mut io, &outbox, &mut handler, max_message, &shutdown).await;
    tracing::debug!("websocket closed: {why}");
    outbox.close(Closed::Server("connection closed"));
    handler.on_close(&why);
    let _ = tokio::time::timeout(FINAL_WRITE, io.shutdown()).await;
}

/// Why a write did not finish.
enum Interrupted {
    /// Shutdown began and the write was finished; the goodbye frames have until this
    /// deadline.
    Shutdown(Instant),
    /// The connection is over.
    Gone(Cow<'static, str>),
}

async fn run<H: Handler>(
    io: &mut WsStream,
    outbox: &Outbox,
    handler: &mut H,
    max_message: usize,
    shutdown: &Shutdown,
) -> Cow<'static, str> {
    let mut rbuf = BytesMut::new();
    let mut decoder = Decoder::default();
    let mut out: Vec<Bytes> = Vec::new();
    // The shutdown wait and the heartbeat timer live across iterations: made anew on
    // every wake-up they cost a lock on the token's waiter list and a timer-wheel
    // insertion and removal per delivery. The timer is re-armed only when the
    // handler's deadline moves.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    // When the oldest publication frame waiting in `out` was queued.
    let mut oldest: Option<std::time::Instant> = None;
    loop {
        let tick = handler.next_tick();
        if tick != armed {
            if let Some(at) = tick {
                timer.as_mut().reset(at);
            }
            armed = tick;
        }
        // Biased, queued frames first: a wake-up that brings frames (nearly all of
        // them) polls nothing else, so the shared shutdown token's lock and the
        // socket's readiness are touched only when no frames are waiting.
        let flow = tokio::select! {
            biased;
            drained = outbox.drain(&mut out) => match drained {
                Ok(queued) => {
                    oldest = oldest.or(queued);
                    Flow::Continue
                }
                Err(closed) => {
                    if closed.is_overflow() {
                        let mut last = vec![frame::close(1008, "slow consumer")];
                        let _ = tokio::time::timeout(FINAL_WRITE, write_all(io, &mut last)).await;
                    }
                    return dropped(closed);
                }
            },
            _ = &mut cancelled => return goodbye(io, handler.shutdown_frames(), shutdown.deadline(), shutdown).await,
            read = io.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => return "client went away".into(),
                Ok(_) => {
                    let flow = on_bytes(&mut rbuf, &mut decoder, handler, &mut out, max_message);
                    if rbuf.is_empty() {
                        rbuf = BytesMut::new();
                    }
                    flow
                }
            },
            _ = &mut timer, if armed.is_some() => handler.on_tick(&mut out),
        };
        let mut flow = flow;
        while flow == Flow::Await {
            let Some(waiting) = handler.awaiting() else {
                break;
            };
            let got = tokio::select! {
                biased;
                got = waiting => got,
                closed = outbox.closing() => return dropped(closed),
                _ = &mut cancelled => return goodbye(io, handler.shutdown_frames(), shutdown.deadline(), shutdown).await,
            };
            flow = handler.on_awaited(got, &mut out);
            if flow == Flow::Continue {
                // The messages read with the one that waited.
                flow = on_bytes(&mut rbuf, &mut decoder, handler, &mut out, max_message);
            }
        }
        if let Flow::Close(code, reason) = flow {
            // The handler may have closed the outbox already: this write races nothing.
            out.push(frame::close(code, &reason));
            let _ = tokio::time::timeout(FINAL_WRITE, write_all(io, &mut out)).await;
            return reason;
        }
        if out.is_empty() {
            continue;
        }
        match write(io, &mut out, outbox, cancelled.as_mut(), shutdown).await {
            Ok(()) => crate::metrics::DELIVERY_SECONDS.observe_since(oldest.take()),
            Err(Interrupted::Shutdown(by)) => {
                return goodbye(io, handler.shutdown_frames(), by, shutdown).await
            }
            Err(Interrupted::Gone(why)) => return why,
        }
    }
}

/// Write `frames`, racing what ends a connection while its client does not read: the
/// outbox closing (over its hard limit from a push, over its soft limit when the window
/// ends, or closed by the server) drops the connection at once, mid-frame if need be;
/// shutdown leaves the write the grace period (`--shutdown-grace-seconds`) to finish. A write that stops making
/// progress fails on its own after the listener's write timeout.
async fn write(
    io: &mut WsStream,
    frames: &mut Vec<Bytes>,
    outbox: &Outbox,
    cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
    shutdown: &Shutdown,
) -> Result<(), Interrupted> {
    let write = write_all(io, frames);
    tokio::pin!(write);
    // Biased, the write first: one that completes at once (nearly all) polls nothing
    // else, so no timer or waiter is touched on the delivery path.
    tokio::select! {
        biased;
        written = &mut write => written.map_err(|e| Interrupted::Gone(write_failed(e))),
        closed = outbox.closing() => Err(Interrupted::Gone(dropped(closed))),
        _ = cancelled => {
            let by = shutdown.deadline();
            match tokio::time::timeout_at(by, &mut write).await {
                Ok(Ok(())) => Err(Interrupted::Shutdown(by)),
                Ok(Err(_)) => Err(Interrupted::Gone("write failed".into())),
                // A frame was cut: nothing more may follow it.
                Err(_) => {
                    shutdown.cut_one();
                    Err(Interrupted::Gone("server shutdown; client too slow".into()))
                }
            }
        }
    }
}

/// Send the protocol's goodbye at shutdown, giving up at `by`.
async fn goodbye(
    io: &mut WsStream,
    mut last: Vec<Bytes>,
    by: Instant,
    shutdown: &Shutdown,
) -> Cow<'static, str> {
    if tokio::time::timeout_at(by, write_all(io, &mut last))
        .await
        .is_err()
    {
        shutdown.cut_one();
    }
    "server shutdown".into()
}

/// The outbox closed: count and log a slow reader.
fn dropped(closed: Closed) -> Cow<'static, str> {
    if closed.is_overflow() {
        crate::metrics::SLOW_CONSUMERS_DROPPED.inc();
        tracing::warn!("websocket subscriber dropped: {closed}");
    }
    closed.to_string().into()
}

/// A failed write: one that timed out was a client that stopped reading.
fn write_failed(e: std::io::Error) -> Cow<'static, str> {
    if e.kind() == std::io::ErrorKind::TimedOut {
        crate::metrics::SLOW_CONSUMERS_DROPPED.inc();
        tracing::warn!("websocket subscriber dropped: {e}");
        return "write timed out".into();
    }
    "write failed".into()
}

fn on_bytes<H: Handler>(
    rbuf: &mut BytesMut,
    decoder: &mut Decoder,
    handler: &mut H,
    out: &mut Vec<Bytes>,
    max_message: usize,
) -> Flow {
    loop {
        match decoder.decode(rbuf, max_message) {
            Ok(None) => return Flow::Continue,
            Ok(Some(Message::Close(_))) => return Flow::Close(1000, "".into()),
            Ok(Some(msg)) => {
                if let Message::Ping(p) = &msg {
                    out.push(frame::pong(p));
                }
                match handler.on_message(msg, out) {
                    Flow::Continue => {}
                    // The rest of `rbuf` is decoded once the wait is over.
                    other => return other,
                }
            }
            Err(e) => return Flow::Close(e.code, e.reason.into()),
        }
    }
}
