//! The rustls client configuration: ring provider, TLS 1.3 and 1.2 (the
//! server decides), the tenant CA as the only trust anchor, this tenant's
//! certificate and key (PEM files, or a PKCS#12 file: [`super::pkcs12`]),
//! ALPN `hsmlink/1`.
//!
//! Built once at `C_Initialize`, so that a missing or unreadable certificate
//! is reported there, as a configuration error, and not at the first call.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::pkcs12;
use crate::config::{Config, ConfigError, Identity, ServerAddr};

/// The application protocol we speak inside TLS.
pub const ALPN: &[u8] = b"hsmlink/1";

pub fn client_config(config: &Config) -> Result<Arc<ClientConfig>, ConfigError> {
    let error = |key: &str, problem: String| ConfigError::new(&config.path, key, problem);

    let mut roots = RootCertStore::empty();
    for ca in read_certs(&config.ca).map_err(|p| error("ca", p))? {
        roots.add(ca).map_err(|e| {
            error(
                "ca",
                format!("{}: unusable CA certificate: {e}", config.ca.display()),
            )
        })?;
    }
    let (chain, key, key_name) = match &config.identity {
        Identity::Pem { cert, key } => {
            let chain = read_certs(cert).map_err(|p| error("cert", p))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                error(
                    "key",
                    format!("{}: no usable private key: {e}", key.display()),
                )
            })?;
            (chain, key_der, "key")
        }
        Identity::Pkcs12 { file, passphrase } => {
            let (chain, key) = pkcs12::read(file, passphrase).map_err(|p| error("pkcs12", p))?;
            (chain, key, "pkcs12")
        }
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| error("ca", format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            error(
                key_name,
                format!("the key cannot be used with its certificate: {e}"),
            )
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(tls))
}

/// The name to verify in the certificate of `server`: `server_name` from the
/// configuration, else the host part of the address (a DNS name or an IP
/// address; the server certificate carries IP SANs for loopback).
pub fn server_name(
    config: &Config,
    server: &ServerAddr,
) -> Result<ServerName<'static>, ConfigError> {
    let (key, name) = match &config.server_name {
        Some(name) => ("server_name", name.as_str()),
        None => ("servers", server.host.as_str()),
    };
    ServerName::try_from(name.to_owned()).map_err(|_| {
        ConfigError::new(
            &config.path,
            key,
            format!("{name:?} is neither a DNS name nor an IP address"),
        )
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}
