//! TLS and tokens, loaded once at start-up from the files the
//! configuration names, so a bad certificate or token file stops swarmd
//! with a clear message instead of failing the first call. Both the gRPC
//! port and the dashboard use what this loads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::{TokenError, Tokens};

/// Where the security material is (all optional; config section `[security]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Admin tokens, one per line.
    pub admin_token_file: Option<PathBuf>,
    /// Read-only tokens, one per line.
    pub read_token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
}

impl SecurityConfig {
    /// Whether anything is configured.
    pub fn any(&self) -> bool {
        *self != SecurityConfig::default()
    }

    /// Checks that the TLS files come as a pair.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err("security.tls_cert needs security.tls_key (--tls-key)".into()),
            (None, Some(_)) => Err("security.tls_key needs security.tls_cert (--tls-cert)".into()),
            _ => Ok(()),
        }
    }
}

/// Why the security material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A token file.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A certificate or key file.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The loaded material.
#[derive(Clone, Default)]
pub struct Security {
    /// Bearer tokens (authentication is off when none are configured).
    pub tokens: Arc<Tokens>,
    /// TLS, when configured.
    pub tls: Option<Tls>,
}

/// A certificate chain and its key, as PEM (for tonic) and as a rustls
/// server configuration (for the dashboard).
#[derive(Clone)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// For the dashboard, HTTP/1.1.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl Security {
    /// Loads what `cfg` names.
    pub fn load(cfg: &SecurityConfig) -> Result<Security, SecurityError> {
        let tokens = Tokens::load(cfg.admin_token_file.as_deref(), cfg.read_token_file.as_deref())?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(load_tls(c, k)?),
            _ => None,
        };
        Ok(Security { tokens: Arc::new(tokens), tls })
    }
}

fn load_tls(cert: &Path, key: &Path) -> Result<Tls, SecurityError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| SecurityError::Tls(format!("cannot read {}: {e}", p.display())));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| SecurityError::Tls(format!("{} is not a PEM certificate chain: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(SecurityError::Tls(format!("{} holds no certificate", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| SecurityError::Tls(format!("{} is not a PEM private key: {e}", key.display())))?;
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| SecurityError::Tls(format!("{} does not go with {}: {e}", key.display(), cert.display())))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { cert_pem, key_pem, server_config: Arc::new(server_config) })
}

/// A TCP listener that completes a TLS handshake before handing a
/// connection to axum. A handshake that fails or takes longer than 10 s is
/// dropped (and logged) without stopping the listener.
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    /// Wraps `tcp` with `tls`.
    pub fn new(tcp: tokio::net::TcpListener, tls: &Tls) -> Self {
        TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(tls.server_config.clone()) }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(std::time::Duration::from_secs(10), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "dashboard TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "dashboard TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
