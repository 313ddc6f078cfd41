//! TLS on herald's own listeners: browsers reach the HTTP port with `wss://` and
//! `https://`, phpredis and predis the RESP port with `tls://`, without a proxy in front.
//!
//! A listener's certificate chain and key are PEM files (`--tls-cert`/`--tls-key`,
//! `--redis-tls-cert`/`--redis-tls-key`), loaded at start: a file that cannot be read or
//! parsed, or a key that does not match the certificate, stops herald with the reason.
//! [`Certificates::reload`] reads them again (SIGHUP): handshakes from then on use the new
//! pair, connections already established keep theirs; a pair that does not load leaves
//! the old one in place and says why. rustls with the ring provider, as everywhere in
//! herald; TLS 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// A listener's certificate and key: where they are read from, and the pair in use.
#[derive(Debug)]
pub struct Certificates {
    what: &'static str,
    cert: PathBuf,
    key: PathBuf,
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Load the pair for the listener `what` (for messages).
    pub fn load(what: &'static str, cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let pair = read_pair(cert, key).map_err(|e| format!("{what} TLS: {e}"))?;
        Ok(Arc::new(Certificates {
            what,
            cert: cert.into(),
            key: key.into(),
            current: parking_lot::RwLock::new(Arc::new(pair)),
        }))
    }

    /// Read the files again; on success new handshakes use them.
    pub fn reload(&self) -> Result<(), String> {
        let pair =
            read_pair(&self.cert, &self.key).map_err(|e| format!("{} TLS: {e}", self.what))?;
        *self.current.write() = Arc::new(pair);
        Ok(())
    }

    /// The acceptor of a listener serving these certificates (`alpn`: the protocols it
    /// offers, e.g. `http/1.1`).
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> TlsAcceptor {
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }
}

impl std::fmt::Display for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} TLS certificate {}", self.what, self.cert.display())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// The certificate chain and key in two PEM files, checked to belong together.
fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("no private key read from {}: {e}", key.display()))?;
    let signing = any_supported_type(&der)
        .map_err(|e| format!("unusable private key in {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        format!(
            "the key in {} is not the certificate's in {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(pair)
}

/// A handshake that failed on the listener `what`: counted, logged at debug (a browser
/// that does not trust the certificate, a port scan, a plain-text client).
pub fn handshake_failed(what: &str, e: &std::io::Error) {
    crate::metrics::TLS_HANDSHAKE_FAILURES.inc();
    tracing::debug!("{what} TLS handshake failed: {e}");
}
