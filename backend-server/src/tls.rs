//! The TLS front: a rustls server configuration that requires a client
//! certificate chaining to the tenant CA.
//!
//! rustls with its ring provider; TLS 1.3 only unless the configuration lowers
//! the minimum to 1.2. Expired, not-yet-valid and foreign-CA certificates fail
//! the handshake inside rustls/webpki, before any byte of the protocol is read.
//! So do certificates the provider revoked ([`tenant_server_config`]: the
//! registry's revocation list, checked at every handshake).
//!
//! The admin listener ([`admin_server_config`]) accepts certificates of the
//! provider-admin CA, and tenant certificates (for the tenant's compliance
//! report only; [`is_admin_certificate`] tells them apart).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::{AdminSection, TlsMinVersion, TlsSection};
use crate::identity::Fingerprint;
use crate::registry::Live;

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
    let verifier = ca_verifier("tls.tenant_ca", &tls.tenant_ca)?;
    build(tls, min_version, verifier, vec![ALPN.to_vec()])
}

/// [`server_config`], whose verifier also refuses revoked certificates.
pub fn tenant_server_config(
    tls: &TlsSection,
    min_version: TlsMinVersion,
    live: Arc<Live>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = Arc::new(Revoking {
        inner: ca_verifier("tls.tenant_ca", &tls.tenant_ca)?,
        live,
    });
    let config = build(tls, min_version, verifier, vec![ALPN.to_vec()])?;
    Ok(without_resumption(config))
}

/// No TLS session resumption: a resumed session skips the client
/// certificate's verification, so a revoked certificate could ride on it.
/// Every connection makes a full handshake (the module pools connections).
fn without_resumption(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// The verifiers of the admin listener: the provider-admin CA's, and the
/// tenant CA's (with revocations) for the tenant report.
#[derive(Debug, Clone)]
pub struct AdminVerifiers {
    pub admin: Arc<dyn ClientCertVerifier>,
    pub tenant: Arc<dyn ClientCertVerifier>,
}

/// The admin listener's rustls configuration: the server certificate of
/// `[tls]`, client certificates of `[admin] admin_ca` or of the tenant CA.
pub fn admin_server_config(
    tls: &TlsSection,
    admin: &AdminSection,
    live: Arc<Live>,
) -> Result<(Arc<rustls::ServerConfig>, AdminVerifiers), TlsError> {
    let admin_ca = load_certificates("admin.admin_ca", &admin.admin_ca)?;
    let tenant_ca = load_certificates("tls.tenant_ca", &tls.tenant_ca)?;
    if admin_ca.iter().any(|a| tenant_ca.contains(a)) {
        return Err(TlsError::new(
            "admin.admin_ca",
            &admin.admin_ca,
            "the provider-admin CA must not be the tenant CA",
        ));
    }
    let verifiers = AdminVerifiers {
        admin: ca_verifier("admin.admin_ca", &admin.admin_ca)?,
        tenant: Arc::new(Revoking {
            inner: ca_verifier("tls.tenant_ca", &tls.tenant_ca)?,
            live,
        }),
    };
    let either = Arc::new(Either(verifiers.clone()));
    let config = build(
        tls,
        TlsMinVersion::Tls13,
        either,
        vec![b"http/1.1".to_vec()],
    )?;
    Ok((without_resumption(config), verifiers))
}

/// Whether the verified peer chain is a provider admin's (else a tenant's).
pub fn is_admin_certificate(verifiers: &AdminVerifiers, chain: &[CertificateDer<'_>]) -> bool {
    match chain.split_first() {
        Some((leaf, intermediates)) => verifiers
            .admin
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok(),
        None => false,
    }
}

/// A verifier of client certificates chaining to the CA(s) in `path`.
fn ca_verifier(key: &'static str, path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in load_certificates(key, path)? {
        roots.add(ca).map_err(|e| TlsError::new(key, path, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::new(key, path, e))
}

fn build(
    tls: &TlsSection,
    min_version: TlsMinVersion,
    verifier: Arc<dyn ClientCertVerifier>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certificates("tls.cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| TlsError::new("tls.key", &tls.key, format!("no usable private key: {e}")))?;
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
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A verifier that also refuses the registry's revoked certificates.
#[derive(Debug)]
struct Revoking {
    inner: Arc<dyn ClientCertVerifier>,
    live: Arc<Live>,
}

impl ClientCertVerifier for Revoking {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.live.is_revoked(&Fingerprint::of(end_entity.as_ref())) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts a certificate either verifier accepts (the admin listener).
#[derive(Debug)]
struct Either(AdminVerifiers);

impl ClientCertVerifier for Either {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.admin.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .0
            .admin
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => Ok(verified),
            Err(_) => self
                .0
                .tenant
                .verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.admin.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.admin.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.admin.supported_verify_schemes()
    }
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
