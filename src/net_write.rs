//! Writing a connection's queued frames: one vectored write for all of them.
//!
//! Every connection (RESP, socket.io and Pusher WebSockets) drains everything its
//! outbox holds into a list of shared, already-encoded frames and hands the list to
//! [`write_all`], which gives the kernel as many as one `writev` takes, so a burst of
//! deliveries costs one syscall rather than one per frame, the frames are never
//! copied into one buffer, and nothing here allocates. herald's lead over its peers in
//! CPU per delivery rests on this: keep it so.

use bytes::{Buf, Bytes};
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames handed to one `writev` (Linux takes up to 1024; 64 keeps the stack small).
const MAX_SLICES: usize = 64;

/// Write every frame, as few syscalls as the kernel allows; empties `frames`.
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
