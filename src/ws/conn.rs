//! One WebSocket connection's task: read client frames, write queued frames, tick.
//!
//! A single task per connection, no writer task and no channel: the task waits on the
//! socket, on the connection's [`Outbox`], on its heartbeat deadline and on shutdown.
//! Everything queued is written with one vectored write. Between messages the read
//! buffer is released, so an idle connection holds only the task and its outbox.

use super::frame::{self, Decoder, Message};
use super::WsStream;
use crate::outbox::{Closed, Outbox};
use bytes::{Buf, Bytes, BytesMut};
use std::borrow::Cow;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the connection should do after a handler call.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send a close frame with this code and reason, then end the connection.
    Close(u16, Cow<'static, str>),
}

/// The protocol spoken over the WebSocket (socket.io, Pusher).
pub trait Handler: Send {
    /// A message from the client. Direct replies are pushed to `out` as encoded frames.
    /// WebSocket pings have already been answered when they reach here.
    fn on_message(&mut self, msg: Message, out: &mut Vec<Bytes>) -> Flow;
    /// When `on_tick` should run next (heartbeats); None for never.
    fn next_tick(&self) -> Option<Instant>;
    fn on_tick(&mut self, out: &mut Vec<Bytes>) -> Flow;
    /// The connection is over, whatever the reason: release subscriptions here.
    fn on_close(&mut self, why: &str);
    /// The last frames sent when the server shuts down.
    fn shutdown_frames(&self) -> Vec<Bytes> {
        vec![frame::close(1001, "server shutting down")]
    }
}

/// Connections inside [`drive`]: shutdown waits for them to send their goodbye.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many WebSocket connections are running now.
pub fn running() -> usize {
    RUNNING.load(Ordering::Acquire)
}

/// Run a connection until the client leaves, the protocol closes it, its outbox
/// overflows or the server shuts down.
pub async fn drive<H: Handler>(
    mut io: WsStream,
    outbox: Arc<Outbox>,
    mut handler: H,
    max_message: usize,
    shutdown: CancellationToken,
) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let why = run(&mut io, &outbox, &mut handler, max_message, &shutdown).await;
    tracing::debug!("websocket closed: {why}");
    outbox.close(Closed::Server("connection closed"));
    handler.on_close(&why);
    let _ = io.shutdown().await;
    RUNNING.fetch_sub(1, Ordering::AcqRel);
}

async fn run<H: Handler>(
    io: &mut WsStream,
    outbox: &Outbox,
    handler: &mut H,
    max_message: usize,
    shutdown: &CancellationToken,
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
                Ok(()) => Flow::Continue,
                Err(closed) => {
                    if closed.is_overflow() {
                        crate::metrics::SLOW_CONSUMERS_DROPPED.inc();
                        tracing::warn!("websocket subscriber dropped: {closed}");
                        let mut last = vec![frame::close(1008, "slow consumer")];
                        let _ = write_all(io, &mut last).await;
                    }
                    return closed.to_string().into();
                }
            },
            _ = &mut cancelled => {
                let mut last = handler.shutdown_frames();
                let _ = write_all(io, &mut last).await;
                return "server shutdown".into();
            }
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
        if let Flow::Close(code, reason) = flow {
            out.push(frame::close(code, &reason));
            let _ = write_all(io, &mut out).await;
            return reason;
        }
        if !out.is_empty() && write_all(io, &mut out).await.is_err() {
            return "write failed".into();
        }
    }
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
                if let Flow::Close(code, reason) = handler.on_message(msg, out) {
                    return Flow::Close(code, reason);
                }
            }
            Err(e) => return Flow::Close(e.code, e.reason.into()),
        }
    }
}

/// Frames handed to one `writev` (Linux takes up to 1024; 64 keeps the stack small).
const MAX_SLICES: usize = 64;

/// Write every frame, as few syscalls as the kernel allows; empties `frames`.
/// Shared with the RESP session, which writes its outbox the same way.
pub async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut start = 0;
    while start < frames.len() {
        // The slices are built on the stack inside the poll, so neither a heap
        // allocation per write nor a 1 KiB array in every connection's future.
        let pending = &frames[start..];
        let mut n = poll_fn(|cx| {
            if let [only] = pending {
                // One frame (the usual case at modest rates): a plain write, which the
                // kernel takes more cheaply than a one-element writev.
                return Pin::new(&mut *io).poll_write(cx, only);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let k = pending.len().min(MAX_SLICES);
            for (slot, b) in slices.iter_mut().zip(pending) {
                *slot = IoSlice::new(b);
            }
            Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let first = &mut frames[start];
            if n >= first.len() {
                n -= first.len();
                start += 1;
            } else {
                first.advance(n);
                n = 0;
            }
        }
    }
    frames.clear();
    if frames.capacity() > 64 {
        *frames = Vec::new();
    }
    io.flush().await
}
