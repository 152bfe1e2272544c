//! TR-34 (ASC X9 TR 34-2019) key transport, the receiving side: a key
//! distribution host (KDH) sends a key token to a key receiving device
//! (KRD, here a partition) — a CMS `SignedData` (RFC 5652) signed by the
//! KDH whose content is an `EnvelopedData` encrypted to the KRD's RSA key
//! with RSAES-OAEP. Inside is the TR-34 key block: the KDH's identifier, the
//! clear key and a key block header (the X9.143 header that says what the
//! key may do).
//!
//! [`import`] checks, in this order, before anything is decrypted:
//! 1. the structure (DER; `SignedData` of `EnvelopedData`, one signer);
//! 2. the KDH's certificate (carried in the token or held by the receiver)
//!    is a trust anchor itself or is signed by one, and is within its
//!    validity; a CRL carried in the token from the KDH's CA, once its
//!    signature holds, must not list it;
//! 3. the signed attributes: content type `envelopedData`, the message
//!    digest of the content, and freshness — the KRD's random nonce (two
//!    pass) or a signing time within a window (one pass);
//! 4. the signature (RSA PKCS#1 v1.5 over SHA-256/384/512) under the KDH
//!    certificate's key.
//!
//! Then the content-encryption key is recovered with RSAES-OAEP under the
//! KRD's key (SHA-1/224/256/384/512, MGF1; the parameters in the RFC 8017
//! form or in the untagged form the TR-34 samples use), the content
//! decrypted (TDES-CBC or AES-CBC, PKCS#7 padding) and the key block parsed;
//! its KDH identifier must be the signer's and its header the signed one.

mod asn1;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientInfo};
use cms::revocation::RevocationInfoChoice;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use subtle::ConstantTimeEq;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::cipher::{self, BlockAlg, Mode};
use crate::digest::{self, DigestAlg};
use crate::keyblock::{self, Header};
use crate::rsa::{RsaPrivate, RsaPublic};

use asn1::oid;

/// Smallest KRD and KDH RSA modulus TR-34 2019 allows.
pub const MIN_RSA_BITS: usize = 2048;
/// How far in the future a one-pass token's signing time may be (clocks
/// differ).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Why a key token is refused. No variant carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Tr34Error {
    /// Not DER, or not the TR-34 structure (content types, one signer,
    /// required attributes, the key block's fields).
    #[error("key token malformed")]
    Malformed,
    /// A digest, signature, key transport or content encryption algorithm
    /// hsmlink does not accept (e.g. PKCS#1 v1.5 key transport, SHA-1
    /// signatures, a subject key identifier as signer id).
    #[error("key token algorithm unsupported")]
    Unsupported,
    /// The KDH certificate is missing, not signed by a trust anchor, or
    /// outside its validity period.
    #[error("key distribution host not trusted")]
    UntrustedHost,
    /// The KDH certificate is on its CA's CRL carried in the token.
    #[error("key distribution host certificate revoked")]
    Revoked,
    /// The signature, the message digest or a CRL signature does not
    /// verify.
    #[error("key token signature invalid")]
    BadSignature,
    /// Two pass: the nonce is not the KRD's; one pass: no signing time, or
    /// one outside the accepted window.
    #[error("key token not fresh")]
    Stale,
    /// The content-encryption key does not decrypt under the KRD's key
    /// (a token for another receiver), or the content does not decrypt.
    #[error("key token not for this receiver")]
    NotForReceiver,
    /// The key block names another KDH than the signer, or its header
    /// differs from the signed one, or the key's length does not fit the
    /// header's algorithm.
    #[error("key block inconsistent with its token")]
    Inconsistent,
    /// The KRD's RSA key is below 2048 bits.
    #[error("key receiving key too small")]
    ReceiverKeySize,
}

/// Result of this module.
pub type Result<T> = core::result::Result<T, Tr34Error>;

/// The certificates the receiver relies on, DER-encoded.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// Trust anchors: CA certificates (or KDH certificates trusted as
    /// such) — on a token, certificates with `CKA_TRUSTED`.
    pub anchors: &'a [Vec<u8>],
    /// Other certificates the receiver holds (the KDH's, received in its
    /// credential token); never trusted by themselves.
    pub certificates: &'a [Vec<u8>],
}

/// What makes a token fresh.
#[derive(Debug, Clone, Copy)]
pub enum Freshness<'a> {
    /// Two-pass: the random number the KRD sent (RTKRD) must be the
    /// token's `id-aa-KP-keyTransRandomNonce` attribute.
    Nonce(&'a [u8]),
    /// One-pass: the token's signing time must lie within `max_age` before
    /// `now` (and not more than five minutes after it).
    SignedWithin(Duration),
}

/// A key received from a key token.
pub struct Imported {
    /// The key block header (X9.143 syntax, ASCII), as signed.
    pub header_ascii: Vec<u8>,
    /// The parsed header.
    pub header: Header,
    /// The clear key.
    pub key: Zeroizing<Vec<u8>>,
    /// The KDH certificate's subject, for the audit trail.
    pub host: String,
}

impl core::fmt::Debug for Imported {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Imported")
            .field("header", &String::from_utf8_lossy(&self.header_ascii))
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn malformed<E>(_: E) -> Tr34Error {
    Tr34Error::Malformed
}

/// Imports the key token `token` (DER `ContentInfo`) received by the KRD
/// whose RSA key is `receiver`, at time `now`. See the module documentation
/// for what is checked.
pub fn import(
    token: &[u8],
    receiver: &RsaPrivate,
    trust: Trust<'_>,
    freshness: Freshness<'_>,
    now: SystemTime,
) -> Result<Imported> {
    if receiver.bits() < MIN_RSA_BITS {
        return Err(Tr34Error::ReceiverKeySize);
    }
    let content_info = ContentInfo::from_der(token).map_err(malformed)?;
    if content_info.content_type != oid::SIGNED_DATA {
        return Err(Tr34Error::Malformed);
    }
    let signed: SignedData = content_info.content.decode_as().map_err(malformed)?;
    let encapsulated = &signed.encap_content_info;
    if encapsulated.econtent_type != oid::ENVELOPED_DATA {
        return Err(Tr34Error::Malformed);
    }
    let econtent: der::asn1::OctetString = encapsulated
        .econtent
        .as_ref()
        .ok_or(Tr34Error::Malformed)?
        .decode_as()
        .map_err(malformed)?;
    let signer = match signed.signer_infos.0.as_slice() {
        [one] => one,
        _ => return Err(Tr34Error::Malformed),
    };
    let host = host_certificate(&signed, signer, trust, now)?;
    let host_key = rsa_public(&host)?;
    check_crls(&signed, &host, trust, now)?;
    let attrs = SignedAttrs::of(signer)?;
    attrs.check_content(signer, econtent.as_bytes())?;
    attrs.check_fresh(freshness, now)?;
    verify_signature(signer, &host_key)?;

    let enveloped = EnvelopedData::from_der(econtent.as_bytes()).map_err(malformed)?;
    let content = decrypt_content(&enveloped, receiver)?;
    let block = asn1::KeyBlock::parse(&content)?;
    let SignerIdentifier::IssuerAndSerialNumber(signer_id) = &signer.sid else {
        return Err(Tr34Error::Unsupported);
    };
    if &block.kdh != signer_id {
        return Err(Tr34Error::Inconsistent);
    }
    if attrs
        .header
        .as_ref()
        .is_some_and(|signed_header| signed_header != &block.header)
    {
        return Err(Tr34Error::Inconsistent);
    }
    let header = Header::parse_alone(&block.header).map_err(|_| Tr34Error::Malformed)?;
    let key_fits = match header.algorithm {
        b'T' => matches!(block.key.len(), 16 | 24),
        b'A' => matches!(block.key.len(), 16 | 24 | 32),
        _ => false,
    };
    if !key_fits {
        return Err(Tr34Error::Inconsistent);
    }
    Ok(Imported {
        header_ascii: block.header,
        header,
        key: block.key,
        host: host.tbs_certificate().subject().to_string(),
    })
}

/// The KDH certificate named by the signer, checked against the anchors.
fn host_certificate(
    signed: &SignedData,
    signer: &SignerInfo,
    trust: Trust<'_>,
    now: SystemTime,
) -> Result<Certificate> {
    let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid else {
        return Err(Tr34Error::Unsupported);
    };
    let parse = |der: &Vec<u8>| Certificate::from_der(der).ok();
    let anchors: Vec<Certificate> = trust.anchors.iter().filter_map(parse).collect();
    let carried = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            CertificateChoices::Other(_) => None,
        });
    let held = trust.certificates.iter().filter_map(parse);
    let named = |c: &Certificate| {
        c.tbs_certificate().issuer() == &id.issuer
            && c.tbs_certificate().serial_number() == &id.serial_number
    };
    // A KDH certificate that is itself an anchor needs no issuer.
    if let Some(anchor) = anchors.iter().find(|c| named(c)) {
        within_validity(anchor, now)?;
        return Ok(anchor.clone());
    }
    let host = carried
        .chain(held)
        .find(|c| named(c))
        .ok_or(Tr34Error::UntrustedHost)?;
    within_validity(&host, now)?;
    let issuer = issuing_anchor(&anchors, &host, now)?;
    verify_certificate(&host, &rsa_public(issuer)?)?;
    Ok(host)
}

/// The anchor whose subject is `cert`'s issuer, within its validity.
fn issuing_anchor<'a>(
    anchors: &'a [Certificate],
    cert: &Certificate,
    now: SystemTime,
) -> Result<&'a Certificate> {
    let anchor = anchors
        .iter()
        .find(|a| a.tbs_certificate().subject() == cert.tbs_certificate().issuer())
        .ok_or(Tr34Error::UntrustedHost)?;
    within_validity(anchor, now)?;
    Ok(anchor)
}

fn within_validity(cert: &Certificate, now: SystemTime) -> Result<()> {
    let validity = cert.tbs_certificate().validity();
    if validity.not_before.to_system_time() <= now && now <= validity.not_after.to_system_time() {
        Ok(())
    } else {
        Err(Tr34Error::UntrustedHost)
    }
}

/// The RSA public key of a certificate, at least [`MIN_RSA_BITS`].
fn rsa_public(cert: &Certificate) -> Result<RsaPublic> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != oid::RSA_ENCRYPTION {
        return Err(Tr34Error::Unsupported);
    }
    let key =
        asn1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes()).map_err(malformed)?;
    let public = RsaPublic::from_components(key.modulus.as_bytes(), key.public_exponent.as_bytes())
        .map_err(|_| Tr34Error::Malformed)?;
    if public.bits() < MIN_RSA_BITS {
        return Err(Tr34Error::UntrustedHost);
    }
    Ok(public)
}

/// The digest of an RSA PKCS#1 v1.5 signature algorithm identifier.
fn rsa_signature_digest(alg: &ObjectIdentifier) -> Result<DigestAlg> {
    match *alg {
        oid::SHA256_WITH_RSA => Ok(DigestAlg::Sha256),
        oid::SHA384_WITH_RSA => Ok(DigestAlg::Sha384),
        oid::SHA512_WITH_RSA => Ok(DigestAlg::Sha512),
        _ => Err(Tr34Error::Unsupported),
    }
}

fn verify_certificate(cert: &Certificate, issuer_key: &RsaPublic) -> Result<()> {
    let alg = rsa_signature_digest(&cert.signature_algorithm().oid)?;
    let tbs = cert.tbs_certificate().to_der().map_err(malformed)?;
    let signature = cert.signature().as_bytes().ok_or(Tr34Error::Malformed)?;
    issuer_key
        .verify_pkcs1v15_digest(alg, &digest::digest(alg, &tbs), signature)
        .map_err(|_| Tr34Error::UntrustedHost)
}

/// A CRL carried in the token from the KDH certificate's issuer must be
/// signed by that anchor and must not list the certificate. (A KDH
/// certificate trusted by itself has no anchor to check its issuer's CRL
/// with: it is revoked by removing it from the anchors.)
fn check_crls(
    signed: &SignedData,
    host: &Certificate,
    trust: Trust<'_>,
    now: SystemTime,
) -> Result<()> {
    let tbs = host.tbs_certificate();
    for choice in signed.crls.iter().flat_map(|c| c.0.iter()) {
        let RevocationInfoChoice::Crl(crl) = choice else {
            continue;
        };
        if &crl.tbs_cert_list.issuer != tbs.issuer() {
            continue;
        }
        let anchors: Vec<Certificate> = trust
            .anchors
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .collect();
        let Ok(ca) = issuing_anchor(&anchors, host, now) else {
            continue;
        };
        let alg = rsa_signature_digest(&crl.signature_algorithm.oid)?;
        let list = crl.tbs_cert_list.to_der().map_err(malformed)?;
        let signature = crl.signature.as_bytes().ok_or(Tr34Error::Malformed)?;
        rsa_public(ca)?
            .verify_pkcs1v15_digest(alg, &digest::digest(alg, &list), signature)
            .map_err(|_| Tr34Error::BadSignature)?;
        let revoked = crl
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| &r.serial_number == tbs.serial_number());
        if revoked {
            return Err(Tr34Error::Revoked);
        }
    }
    Ok(())
}

/// The signed attributes TR-34 uses.
struct SignedAttrs {
    content_type: Option<ObjectIdentifier>,
    message_digest: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    signing_time: Option<SystemTime>,
    header: Option<Vec<u8>>,
}

impl SignedAttrs {
    fn of(signer: &SignerInfo) -> Result<Self> {
        let attrs = signer.signed_attrs.as_ref().ok_or(Tr34Error::Malformed)?;
        let mut out = Self {
            content_type: None,
            message_digest: None,
            nonce: None,
            signing_time: None,
            header: None,
        };
        for attr in attrs.iter() {
            let [value] = attr.values.as_slice() else {
                return Err(Tr34Error::Malformed);
            };
            match attr.oid {
                oid::CONTENT_TYPE => {
                    out.content_type = Some(value.decode_as().map_err(malformed)?);
                }
                oid::MESSAGE_DIGEST => {
                    let d: der::asn1::OctetString = value.decode_as().map_err(malformed)?;
                    out.message_digest = Some(d.as_bytes().to_vec());
                }
                oid::RANDOM_NONCE => {
                    let n: der::asn1::OctetString = value.decode_as().map_err(malformed)?;
                    out.nonce = Some(n.as_bytes().to_vec());
                }
                oid::SIGNING_TIME => {
                    let t: x509_cert::time::Time = value.decode_as().map_err(malformed)?;
                    out.signing_time = Some(t.to_system_time());
                }
                oid::DATA => {
                    let h: der::asn1::OctetString = value.decode_as().map_err(malformed)?;
                    out.header = Some(h.as_bytes().to_vec());
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Content type `envelopedData` and the digest of `content`.
    fn check_content(&self, signer: &SignerInfo, content: &[u8]) -> Result<()> {
        if self.content_type != Some(oid::ENVELOPED_DATA) {
            return Err(Tr34Error::Malformed);
        }
        let alg = digest_of(&signer.digest_alg.oid)?;
        let want = self.message_digest.as_ref().ok_or(Tr34Error::Malformed)?;
        if bool::from(digest::digest(alg, content).ct_eq(want)) {
            Ok(())
        } else {
            Err(Tr34Error::BadSignature)
        }
    }

    fn check_fresh(&self, freshness: Freshness<'_>, now: SystemTime) -> Result<()> {
        match freshness {
            Freshness::Nonce(expected) => match &self.nonce {
                Some(n) if !expected.is_empty() && bool::from(n.ct_eq(expected)) => Ok(()),
                _ => Err(Tr34Error::Stale),
            },
            Freshness::SignedWithin(max_age) => {
                let t = self.signing_time.ok_or(Tr34Error::Stale)?;
                let oldest = now.checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
                if t >= oldest && t <= now + CLOCK_SKEW {
                    Ok(())
                } else {
                    Err(Tr34Error::Stale)
                }
            }
        }
    }
}

fn digest_of(alg: &ObjectIdentifier) -> Result<DigestAlg> {
    match *alg {
        oid::SHA256 => Ok(DigestAlg::Sha256),
        oid::SHA384 => Ok(DigestAlg::Sha384),
        oid::SHA512 => Ok(DigestAlg::Sha512),
        _ => Err(Tr34Error::Unsupported),
    }
}

/// The signature over the DER of the signed attributes (a `SET OF`), RSA
/// PKCS#1 v1.5 with the signer's digest.
fn verify_signature(signer: &SignerInfo, key: &RsaPublic) -> Result<()> {
    let alg = digest_of(&signer.digest_alg.oid)?;
    let sig_alg = signer.signature_algorithm.oid;
    if sig_alg != oid::RSA_ENCRYPTION && rsa_signature_digest(&sig_alg)? != alg {
        return Err(Tr34Error::Unsupported);
    }
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or(Tr34Error::Malformed)?
        .to_der()
        .map_err(malformed)?;
    key.verify_pkcs1v15_digest(
        alg,
        &digest::digest(alg, &attrs),
        signer.signature.as_bytes(),
    )
    .map_err(|_| Tr34Error::BadSignature)
}

/// The content of the `EnvelopedData`: the content-encryption key under
/// the receiver's key with RSAES-OAEP, then the content.
fn decrypt_content(enveloped: &EnvelopedData, receiver: &RsaPrivate) -> Result<Zeroizing<Vec<u8>>> {
    let mut cek = None;
    for info in enveloped.recip_infos.0.iter() {
        let RecipientInfo::Ktri(ktri) = info else {
            continue;
        };
        if ktri.key_enc_alg.oid != oid::RSAES_OAEP {
            return Err(Tr34Error::Unsupported);
        }
        let params = asn1::OaepParams::parse(ktri.key_enc_alg.parameters.as_ref())?;
        if let Ok(k) = receiver.decrypt_oaep(
            params.hash,
            params.mgf,
            &params.label,
            ktri.enc_key.as_bytes(),
        ) {
            cek = Some(k);
            break;
        }
    }
    let cek = cek.ok_or(Tr34Error::NotForReceiver)?;
    let info = &enveloped.encrypted_content;
    if info.content_type != oid::DATA {
        return Err(Tr34Error::Malformed);
    }
    let data = info
        .encrypted_content
        .as_ref()
        .ok_or(Tr34Error::Malformed)?
        .as_bytes();
    let iv: der::asn1::OctetString = info
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or(Tr34Error::Malformed)?
        .decode_as()
        .map_err(malformed)?;
    match info.content_enc_alg.oid {
        oid::DES_EDE3_CBC => {
            let iv: [u8; keyblock::tdes::BLOCK] = iv.as_bytes().try_into().map_err(malformed)?;
            if cek.len() != 24 {
                return Err(Tr34Error::NotForReceiver);
            }
            let padded = keyblock::tdes::cbc_decrypt(&cek, &iv, data)
                .map_err(|_| Tr34Error::NotForReceiver)?;
            strip_pkcs7(padded, keyblock::tdes::BLOCK)
        }
        oid::AES128_CBC | oid::AES192_CBC | oid::AES256_CBC => {
            let want = match info.content_enc_alg.oid {
                oid::AES128_CBC => 16,
                oid::AES192_CBC => 24,
                _ => 32,
            };
            if cek.len() != want {
                return Err(Tr34Error::NotForReceiver);
            }
            let iv = cipher::block_param(iv.as_bytes()).map_err(malformed)?;
            cipher::decrypt(BlockAlg::Aes, &cek, &Mode::CbcPad { iv }, data)
                .map(Zeroizing::new)
                .map_err(|_| Tr34Error::NotForReceiver)
        }
        _ => Err(Tr34Error::Unsupported),
    }
}

/// Removes PKCS#7 padding (RFC 5652 section 6.3). The signature was checked
/// before anything was decrypted, so no padding oracle is offered.
fn strip_pkcs7(mut data: Zeroizing<Vec<u8>>, block: usize) -> Result<Zeroizing<Vec<u8>>> {
    let n = usize::from(*data.last().ok_or(Tr34Error::NotForReceiver)?);
    if n == 0
        || n > block
        || n > data.len()
        || !data[data.len() - n..].iter().all(|&b| usize::from(b) == n)
    {
        return Err(Tr34Error::NotForReceiver);
    }
    let keep = data.len() - n;
    data.truncate(keep);
    Ok(data)
}
