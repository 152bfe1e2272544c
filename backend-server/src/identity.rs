//! Who is on the other end: the tenant named by the client certificate.
//!
//! rustls has already checked the chain to the tenant CA and the validity
//! dates; this module only reads the name. The tenant is the NAME of the one
//! SAN URI `hsmlink:tenant:NAME`; no URI of that form, or more than one, or an
//! invalid NAME, and the connection is refused. Nothing a client sends later
//! can change it.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::names::{InvalidName, TENANT_URI_PREFIX, TenantName};

/// The verified client certificate, reduced to what dispatch and audit need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub tenant: TenantName,
    /// The certificate's subject DN, for logs and audit.
    pub subject: String,
    pub fingerprint: Fingerprint,
}

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a certificate names no tenant. The text goes back to the client in
/// `HelloReply::Rejected` and into the server log.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate cannot be parsed")]
    Unparsable,
    #[error("client certificate names no tenant (no SAN URI {TENANT_URI_PREFIX}NAME)")]
    NoTenant,
    #[error(
        "client certificate names {0} tenants; exactly one SAN URI {TENANT_URI_PREFIX}NAME is allowed"
    )]
    SeveralTenants(usize),
    #[error("client certificate: {0}")]
    InvalidName(InvalidName),
}

/// Reads the tenant from the end-entity certificate (DER).
pub fn identify(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unparsable)?;
    if !rest.is_empty() {
        return Err(IdentityError::Unparsable);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparsable)?;
    let names: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(TENANT_URI_PREFIX),
            _ => None,
        })
        .collect();
    let name = match names.as_slice() {
        [] => return Err(IdentityError::NoTenant),
        [one] => *one,
        several => return Err(IdentityError::SeveralTenants(several.len())),
    };
    Ok(PeerIdentity {
        tenant: TenantName::parse(name).map_err(IdentityError::InvalidName)?,
        subject: cert.subject().to_string(),
        fingerprint: Fingerprint::of(der),
    })
}

/// The identity of a rustls server connection's verified peer.
pub fn identify_connection(conn: &rustls::ServerConnection) -> Result<PeerIdentity, IdentityError> {
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(IdentityError::NoCertificate)?;
    identify(leaf.as_ref())
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::init;

    fn client_cert(uris: &[&str]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let ca =
            init::generate_ca("test CA", now - Duration::days(1), now + Duration::days(1)).unwrap();
        let uris: Vec<String> = uris.iter().map(|u| u.to_string()).collect();
        let cert = init::issue_client_certificate(
            &ca.cert_pem,
            &ca.key_pem,
            "someone",
            &uris,
            now - Duration::days(1),
            now + Duration::days(1),
        )
        .unwrap();
        CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn one_tenant_uri_names_the_tenant() {
        let der = client_cert(&["hsmlink:tenant:demo"]);
        let id = identify(&der).unwrap();
        assert_eq!(id.tenant.as_str(), "demo");
        assert!(id.subject.contains("CN=someone"), "{}", id.subject);
        assert_eq!(id.fingerprint, Fingerprint::of(&der));
        assert_eq!(id.fingerprint.to_string().len(), 64);
    }

    #[test]
    fn other_uris_are_ignored() {
        let der = client_cert(&["spiffe://example/app", "hsmlink:tenant:acme-2"]);
        assert_eq!(identify(&der).unwrap().tenant.as_str(), "acme-2");
    }

    #[test]
    fn no_tenant_uri_is_refused() {
        assert_eq!(identify(&client_cert(&[])), Err(IdentityError::NoTenant));
        let der = client_cert(&["https://example/hsmlink:tenant:demo"]);
        assert_eq!(identify(&der), Err(IdentityError::NoTenant));
    }

    #[test]
    fn two_tenant_uris_are_refused() {
        let der = client_cert(&["hsmlink:tenant:a", "hsmlink:tenant:b"]);
        assert_eq!(identify(&der), Err(IdentityError::SeveralTenants(2)));
    }

    #[test]
    fn invalid_tenant_names_are_refused() {
        for uri in [
            "hsmlink:tenant:",
            "hsmlink:tenant:Demo",
            "hsmlink:tenant:a/b",
        ] {
            let err = identify(&client_cert(&[uri])).unwrap_err();
            assert!(matches!(err, IdentityError::InvalidName(_)), "{uri}: {err}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            identify(b"not a certificate"),
            Err(IdentityError::Unparsable)
        );
        let mut der = client_cert(&["hsmlink:tenant:demo"]);
        der.push(0);
        assert_eq!(identify(&der), Err(IdentityError::Unparsable));
    }
}
