//! Sockets and a minimal HTTP/1.1 client shared by the subscriber connections and the
//! HTTP API publisher.
//!
//! Thousands of connections live in one bench process, so there is no HTTP client
//! library per connection: a request is formatted into bytes, a response is read off
//! a plain `TcpStream` (or its read half) into the connection's own buffer. Responses
//! carry `Content-Length` (herald's and the peers' do); keep-alive is HTTP/1.1's
//! default, so one connection serves one request after another, or pipelined ones.
//! Subscriber connections may be TLS (`--tls-ca`: `wss://` to a server trusting that
//! CA's certificate), to measure what TLS costs the server.

use bytes::{Buf, BytesMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// A subscriber's connection: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(t) => t,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Connect to `server` from `source`, with TLS when `tls` is given.
    pub async fn connect(
        source: IpAddr,
        server: SocketAddr,
        tls: Option<&TlsConnector>,
    ) -> Result<Stream, String> {
        let tcp = connect(source, server).await?;
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = rustls_name(server);
        let s = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(Stream::Tls(Box::new(s)))
    }
}

fn rustls_name(server: SocketAddr) -> tokio_rustls::rustls::pki_types::ServerName<'static> {
    tokio_rustls::rustls::pki_types::ServerName::IpAddress(server.ip().into())
}

/// A TLS client trusting only the CA certificates in the PEM file `ca`.
pub fn tls_connector(ca: &std::path::Path) -> Result<TlsConnector, String> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| e.to_string())?;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(t) => Pin::new(t).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(t) => Pin::new(t).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A TCP connection to `server` from the source address `source` (port chosen by the kernel).
pub async fn connect(source: IpAddr, server: SocketAddr) -> Result<TcpStream, String> {
    let sock = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let io = tokio::time::timeout(Duration::from_secs(10), sock.connect(server))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = io.set_nodelay(true);
    Ok(io)
}

/// Read whatever arrives next into `buf`; an error once the peer has closed.
pub async fn read_more<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> Result<(), String> {
    buf.reserve(4096);
    match io.read_buf(buf).await {
        Ok(0) => Err("server closed".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// One request's bytes: `headers` are extra `Name: value\r\n` lines; a body gets its
/// `Content-Length` (and the request keeps the connection alive, HTTP/1.1's default).
pub fn request(
    method: &str,
    target: &str,
    host: SocketAddr,
    headers: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}");
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One response: its status and body.
pub struct Response {
    pub status: u16,
    pub body: BytesMut,
}

impl Response {
    /// The body as text, shortened, for error messages.
    pub fn excerpt(&self) -> String {
        let b = &self.body[..self.body.len().min(120)];
        format!("{} {}", self.status, String::from_utf8_lossy(b))
    }
}

/// Read the next response off `io`; bytes after it (a pipelined response, WebSocket
/// frames after a 101) stay in `buf`.
pub async fn response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<Response, String> {
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        read_more(io, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {:.80}", head))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>());
    let length = match length {
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err("bad Content-Length".into()),
        // Informational and bodiless answers (101 Switching Protocols, 204, 304).
        None if status < 200 || status == 204 || status == 304 => 0,
        None => return Err(format!("response {status} without Content-Length")),
    };
    buf.advance(end + 4);
    while buf.len() < length {
        read_more(io, buf).await?;
    }
    Ok(Response {
        status,
        body: buf.split_to(length),
    })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipelined_responses_are_read_one_at_a_time() {
        let mut wire: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nbadHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01x";
        let mut buf = BytesMut::new();
        let r = response(&mut wire, &mut buf).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        let r = response(&mut wire, &mut buf).await.unwrap();
        assert_eq!(r.excerpt(), "401 bad");
        let r = response(&mut wire, &mut buf).await.unwrap();
        assert_eq!((r.status, r.body.len()), (101, 0));
        assert_eq!(
            &buf[..],
            b"\x81\x01x",
            "what follows the head stays buffered"
        );
        assert!(response(&mut wire, &mut buf).await.is_err(), "closed");
    }

    #[test]
    fn a_post_always_says_its_length() {
        let host: SocketAddr = "127.0.0.1:6001".parse().unwrap();
        assert_eq!(
            request("POST", "/x", host, "Content-Type: text/plain\r\n", b"40"),
            b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:6001\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n40"
        );
        assert_eq!(
            request("GET", "/y", host, "", b""),
            b"GET /y HTTP/1.1\r\nHost: 127.0.0.1:6001\r\n\r\n"
        );
    }
}
