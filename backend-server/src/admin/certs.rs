//! Tenant certificates issued through the admin API: from a CSR (the
//! tenant keeps its key; preferred) or with a key made here (handed over
//! once in the reply, never stored). Both are recorded in the store with
//! their serial and fingerprint, so that they can be listed and revoked.

use hyper::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::AdminContext;
use super::api::Reply;
use crate::identity::Fingerprint;
use crate::init;
use crate::names::TenantName;
use crate::registry::unix_now;
use crate::store::CertificateRow;

const DEFAULT_DAYS: u32 = 365;
const MAX_DAYS: u32 = 3650;

/// Issues a certificate for `tenant`; returns its row and, if the key was
/// made here, the key (PKCS#8 PEM).
pub fn issue(
    ctx: &AdminContext,
    tenant: &TenantName,
    csr: Option<&str>,
    days: Option<u32>,
) -> Result<(CertificateRow, Option<Zeroizing<String>>), Reply> {
    let registry = &ctx.state.registry;
    if registry.any_tenant(tenant).is_none() {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            format!("no tenant {tenant}"),
        ));
    }
    let days = days.unwrap_or(DEFAULT_DAYS);
    if days == 0 || days > MAX_DAYS {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("days: 1 to {MAX_DAYS}"),
        ));
    }
    let key_path = ctx.tenant_ca_key.as_ref().ok_or_else(|| {
        Reply::error(
            StatusCode::NOT_IMPLEMENTED,
            "this server cannot issue certificates: [admin] tenant_ca_key is not set",
        )
    })?;
    let ca_key = Zeroizing::new(std::fs::read_to_string(key_path).map_err(|e| {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("admin.tenant_ca_key: {}: {}", key_path.display(), e.kind()),
        )
    })?);
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(days));
    let (pem, key) = match csr {
        Some(csr) => {
            let pem = init::issue_tenant_certificate_for_csr(
                &ctx.tenant_ca_pem,
                &ca_key,
                tenant.as_str(),
                csr,
                not_before,
                not_after,
            )
            .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("csr: {e}")))?;
            (pem, None)
        }
        None => {
            let issued = init::issue_tenant_certificate(
                &ctx.tenant_ca_pem,
                &ca_key,
                tenant.as_str(),
                not_before,
                not_after,
            )
            .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
            (issued.cert_pem, Some(issued.key_pem))
        }
    };
    let row = describe(&pem, Some(tenant.as_str())).ok_or_else(|| {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "issued certificate unreadable",
        )
    })?;
    registry.record_certificate(&row)?;
    Ok((row, key))
}

/// The store's row for a PEM certificate.
pub fn describe(pem: &str, tenant: Option<&str>) -> Option<CertificateRow> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(CertificateRow {
        serial,
        fingerprint: Fingerprint::of(der.as_ref()).to_string(),
        tenant: tenant.map(str::to_owned),
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        issued_at: unix_now(),
        revoked_at: None,
        pem: pem.to_owned(),
    })
}
