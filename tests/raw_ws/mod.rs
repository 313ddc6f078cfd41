//! A WebSocket client over raw tokio TCP, for tests about clients that stop reading.
//!
//! It reads only when asked, and its receive buffer is made small, so the server's
//! writes to a client that stops reading block after little data. Frames are built and
//! parsed here by hand (RFC 6455), client frames masked as the RFC requires.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits for what it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct RawWs {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

/// A connection with a small receive buffer (the kernel keeps a little more).
pub async fn tcp(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.expect("connect")
}

impl RawWs {
    /// Connect with a small receive buffer and upgrade `path` (with its query).
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::upgrade(tcp(addr).await, addr, path).await
    }

    /// Connect with the system's receive buffer (a client that keeps up).
    pub async fn connect_normal(addr: SocketAddr, path: &str) -> RawWs {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Self::upgrade(tcp, addr, path).await
    }

    async fn upgrade(mut tcp: TcpStream, addr: SocketAddr, path: &str) -> RawWs {
        tcp.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        let head = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = ws.buf.drain(..end + 4).collect();
                    return String::from_utf8(head).unwrap();
                }
                assert!(ws.fill().await, "closed during the handshake");
            }
        })
        .await
        .expect("the 101 in time");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        ws
    }

    /// Read more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Send one masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.expect("send");
    }

    /// The next whole frame as (opcode, payload); None once the server has closed.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, len, start)) = header(&self.buf) {
                if self.buf.len() >= start + len {
                    let frame: Vec<u8> = self.buf.drain(..start + len).collect();
                    return Some((opcode, frame[start..].to_vec()));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next text message (other frames skipped); fails the test after [`WAIT`].
    pub async fn next_text(&mut self) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.next_frame().await {
                    Some((1, text)) => return String::from_utf8(text).unwrap(),
                    Some((8, close)) => panic!("closed by the server: {close:?}"),
                    Some(_) => {}
                    None => panic!("connection ended"),
                }
            }
        })
        .await
        .expect("a text message in time")
    }

    /// The server closes the connection (what it still had to say is read and
    /// dropped) within `within`; the close frame's code if one came.
    pub async fn expect_closed(&mut self, within: Duration) -> Option<u16> {
        tokio::time::timeout(within, async {
            let mut code = None;
            while let Some((opcode, payload)) = self.next_frame().await {
                if opcode == 8 && payload.len() >= 2 {
                    code = Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
            code
        })
        .await
        .expect("the server closed the connection in time")
    }
}

/// A server frame's opcode, payload length and payload offset, once the header is in.
fn header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    match buf[1] & 0x7f {
        126 if buf.len() >= 4 => Some((opcode, u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)),
        127 if buf.len() >= 10 => {
            let n = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            Some((opcode, n as usize, 10))
        }
        126 | 127 => None,
        n => Some((opcode, n as usize, 2)),
    }
}
