//! The TLS front: a rustls server configuration that requires a client
//! certificate chaining to the tenant CA.
//!
//! rustls with its ring provider; TLS 1.3 only unless the configuration lowers
//! the minimum to 1.2. Expired, not-yet-valid and foreign-CA certificates fail
//! the handshake inside rustls/webpki, before any byte of the protocol is read.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsMinVersion, TlsSection};

/// The ALPN protocol id of hsmlink. A client that offers ALPN must offer this
/// one; a client that offers none is served too.
pub const ALPN: &[u8] = b"hsmlink/1";

/// Loading the TLS material failed; the message names the configuration key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {path}: {message}")]
pub struct TlsError {
    pub key: &'static str,
    pub path: String,
    pub message: String,
}

impl TlsError {
    fn new(key: &'static str, path: &Path, message: impl ToString) -> Self {
        Self {
            key,
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// The crypto provider of every TLS object of the server.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server's rustls configuration from the `[tls]` section.
pub fn server_config(
    tls: &TlsSection,
    min_version: TlsMinVersion,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certificates("tls.cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| TlsError::new("tls.key", &tls.key, format!("no usable private key: {e}")))?;
    let mut roots = RootCertStore::empty();
    for ca in load_certificates("tls.tenant_ca", &tls.tenant_ca)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::new("tls.tenant_ca", &tls.tenant_ca, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::new("tls.tenant_ca", &tls.tenant_ca, e))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::new("server.tls_min_version", &tls.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError::new(
                "tls.key",
                &tls.key,
                format!("does not fit the certificate in tls.cert: {e}"),
            )
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; at least one.
fn load_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(key, path, format!("bad PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(TlsError::new(key, path, "no CERTIFICATE block"));
    }
    Ok(certificates)
}
