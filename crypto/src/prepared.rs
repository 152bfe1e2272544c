//! Signing keys prepared once and kept for repeated use.
//!
//! A soft-HSM key signs many times; parsing it, validating it and building
//! an engine's key schedule each time costs more than the signature (an
//! RSA-2048 key's consistency checks alone take longer than a signature).
//! The types here are built once per key object and kept with it.
//!
//! They sign with AWS-LC (`aws-lc-rs`, rustls's default crypto provider,
//! FIPS-validated upstream): its P-256, P-384, P-521 and RSA are several
//! times faster than the RustCrypto engines of [`crate::ec`] and
//! [`crate::rsa`] (P-256 sign ~16 µs against ~140 µs on this project's
//! machine). ECDSA public keys are prepared for verification the same way. AWS-LC takes a digest only for the hash its algorithm names,
//! so the prehashed cases it covers are: ECDSA with the curve's own hash
//! length (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512), RSA PKCS #1 v1.5
//! with SHA-256/384/512 (given as a digest or as its DigestInfo) and PSS
//! with SHA-256/384/512, MGF1 with the same hash and a salt as long as
//! the hash. Every other case — and a key AWS-LC refuses — goes to the
//! RustCrypto engine, which stays the reference of the known-answer tests.
//! PKCS #1 v1.5 signatures are deterministic, so both engines give the same
//! bytes (tested).

use std::ops::Deref;

use aws_lc_rs::digest::{self as lc_digest, Digest};
use aws_lc_rs::rsa::{KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, ParsedPublicKey, RsaEncoding, RsaKeyPair};
use zeroize::Zeroizing;

use crate::digest::DigestAlg;
use crate::ec::{self, Curve};
use crate::error::{CryptoError, Result};
use crate::rsa::RsaPrivate;

/// An ECDSA private key ready to sign (`CKM_ECDSA` and its hash-then-sign
/// forms, which reach the key as a digest).
pub struct EcdsaSigner {
    curve: Curve,
    d: Zeroizing<Vec<u8>>,
    lc: Option<EcdsaKeyPair>,
}

impl core::fmt::Debug for EcdsaSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcdsaSigner")
            .field("curve", &self.curve)
            .field("aws_lc", &self.lc.is_some())
            .finish_non_exhaustive()
    }
}

impl EcdsaSigner {
    /// `d`: the private scalar, big-endian, field-width.
    /// `KeyTypeInconsistent` if it is not a scalar of the curve.
    pub fn new(curve: Curve, d: Zeroizing<Vec<u8>>) -> Result<Self> {
        let public = ec::public_from_private(curve, &d)?;
        let lc = EcdsaKeyPair::from_private_key_and_public_key(lc_ecdsa(curve), &d, &public).ok();
        Ok(Self { curve, d, lc })
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// [`ec::ecdsa_sign`]: r || s over `digest`.
    pub fn sign(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let native = native_hash(self.curve);
        if let Some(pair) = &self.lc
            && digest.len() == native.output_len
        {
            let digest = import(digest, native)?;
            let sig = pair
                .sign_digest(&digest)
                .map_err(|_| CryptoError::General)?;
            return Ok(sig.as_ref().to_vec());
        }
        ec::ecdsa_sign(self.curve, &self.d, digest)
    }
}

/// An ECDSA public key ready to verify.
pub struct EcdsaVerifier {
    curve: Curve,
    point: Vec<u8>,
    lc: Option<ParsedPublicKey>,
}

impl core::fmt::Debug for EcdsaVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcdsaVerifier")
            .field("curve", &self.curve)
            .field("aws_lc", &self.lc.is_some())
            .finish_non_exhaustive()
    }
}

impl EcdsaVerifier {
    /// `point`: the uncompressed public point; `KeyTypeInconsistent` if it
    /// is not a point of the curve.
    pub fn new(curve: Curve, point: Vec<u8>) -> Result<Self> {
        ec::check_point(curve, &point)?;
        let lc = ParsedPublicKey::new(lc_ecdsa_verify(curve), &point).ok();
        Ok(Self { curve, point, lc })
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// [`ec::ecdsa_verify`], with the same answers.
    pub fn verify(&self, digest: &[u8], sig: &[u8]) -> Result<()> {
        let native = native_hash(self.curve);
        if let Some(key) = &self.lc
            && digest.len() == native.output_len
            && sig.len() == self.curve.signature_len()
        {
            let digest = import(digest, native)?;
            return key
                .verify_digest_sig(&digest, sig)
                .map_err(|_| CryptoError::SignatureInvalid);
        }
        ec::ecdsa_verify(self.curve, &self.point, digest, sig)
    }
}

fn lc_ecdsa_verify(curve: Curve) -> &'static lc::EcdsaVerificationAlgorithm {
    match curve {
        Curve::P256 => &lc::ECDSA_P256_SHA256_FIXED,
        Curve::P384 => &lc::ECDSA_P384_SHA384_FIXED,
        Curve::P521 => &lc::ECDSA_P521_SHA512_FIXED,
    }
}

fn lc_ecdsa(curve: Curve) -> &'static lc::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &lc::ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &lc::ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &lc::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}

fn native_hash(curve: Curve) -> &'static lc_digest::Algorithm {
    match curve {
        Curve::P256 => &lc_digest::SHA256,
        Curve::P384 => &lc_digest::SHA384,
        Curve::P521 => &lc_digest::SHA512,
    }
}

fn import(digest: &[u8], alg: &'static lc_digest::Algorithm) -> Result<Digest> {
    Digest::import_less_safe(digest, alg).map_err(|_| CryptoError::DataLenRange)
}

/// An RSA private key ready to sign; every other use goes to the
/// [`RsaPrivate`] it dereferences to.
pub struct RsaSigner {
    key: RsaPrivate,
    lc: Option<RsaKeyPair>,
}

impl core::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("bits", &self.key.bits())
            .field("aws_lc", &self.lc.is_some())
            .finish_non_exhaustive()
    }
}

impl Deref for RsaSigner {
    type Target = RsaPrivate;

    fn deref(&self) -> &RsaPrivate {
        &self.key
    }
}

impl RsaSigner {
    /// Loads `key` into AWS-LC as well (it checks the CRT components; a key
    /// it refuses signs with the RustCrypto engine only).
    pub fn new(key: RsaPrivate) -> Self {
        let lc = key.components().ok().and_then(|c| {
            RsaKeyPair::from_components(&KeyPairComponents {
                public_key: PublicKeyComponents {
                    n: c.modulus.as_slice(),
                    e: c.public_exponent.as_slice(),
                },
                d: c.private_exponent.as_slice(),
                p: c.prime_1.as_slice(),
                q: c.prime_2.as_slice(),
                dP: c.exponent_1.as_slice(),
                dQ: c.exponent_2.as_slice(),
                qInv: c.coefficient.as_slice(),
            })
            .ok()
        });
        Self { key, lc }
    }

    /// [`RsaPrivate::sign_pkcs1v15_raw`]: `data` is usually a DigestInfo.
    pub fn sign_pkcs1v15_raw(&self, data: &[u8]) -> Result<Vec<u8>> {
        if let Some((alg, digest)) = split_digest_info(data)
            && let Some(sig) = self.lc_sign(pkcs1v15_encoding(alg), alg, digest)
        {
            return sig;
        }
        self.key.sign_pkcs1v15_raw(data)
    }

    /// [`RsaPrivate::sign_pkcs1v15_digest`].
    pub fn sign_pkcs1v15_digest(&self, alg: DigestAlg, digest: &[u8]) -> Result<Vec<u8>> {
        if digest.len() == alg.output_len()
            && let Some(sig) = self.lc_sign(pkcs1v15_encoding(alg), alg, digest)
        {
            return sig;
        }
        self.key.sign_pkcs1v15_digest(alg, digest)
    }

    /// [`RsaPrivate::sign_pss`].
    pub fn sign_pss(
        &self,
        hash: DigestAlg,
        mgf: DigestAlg,
        salt_len: usize,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        if mgf == hash
            && salt_len == hash.output_len()
            && digest.len() == hash.output_len()
            && let Some(sig) = self.lc_sign(pss_encoding(hash), hash, digest)
        {
            return sig;
        }
        self.key.sign_pss(hash, mgf, salt_len, digest)
    }

    /// Signs with AWS-LC, or `None` when it does not cover the case.
    fn lc_sign(
        &self,
        encoding: Option<&'static dyn RsaEncoding>,
        alg: DigestAlg,
        digest: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        let (pair, encoding, lc_alg) = (self.lc.as_ref()?, encoding?, lc_hash(alg)?);
        let digest = Digest::import_less_safe(digest, lc_alg).ok()?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        // PSS salts come from AWS-LC's own RNG (seeded from the OS).
        Some(
            pair.sign_digest(encoding, &digest, &mut sig)
                .map(|()| sig)
                .map_err(|_| CryptoError::General),
        )
    }
}

fn lc_hash(alg: DigestAlg) -> Option<&'static lc_digest::Algorithm> {
    match alg {
        DigestAlg::Sha256 => Some(&lc_digest::SHA256),
        DigestAlg::Sha384 => Some(&lc_digest::SHA384),
        DigestAlg::Sha512 => Some(&lc_digest::SHA512),
        _ => None,
    }
}

fn pkcs1v15_encoding(alg: DigestAlg) -> Option<&'static dyn RsaEncoding> {
    match alg {
        DigestAlg::Sha256 => Some(&lc::RSA_PKCS1_SHA256),
        DigestAlg::Sha384 => Some(&lc::RSA_PKCS1_SHA384),
        DigestAlg::Sha512 => Some(&lc::RSA_PKCS1_SHA512),
        _ => None,
    }
}

fn pss_encoding(alg: DigestAlg) -> Option<&'static dyn RsaEncoding> {
    match alg {
        DigestAlg::Sha256 => Some(&lc::RSA_PSS_SHA256),
        DigestAlg::Sha384 => Some(&lc::RSA_PSS_SHA384),
        DigestAlg::Sha512 => Some(&lc::RSA_PSS_SHA512),
        _ => None,
    }
}

/// The DigestInfo prefixes of RFC 8017 section 9.2, note 1.
const DIGEST_INFO: [(DigestAlg, &[u8]); 3] = [
    (
        DigestAlg::Sha256,
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    ),
    (
        DigestAlg::Sha384,
        &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
    ),
    (
        DigestAlg::Sha512,
        &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    ),
];

/// A SHA-2 DigestInfo split into its hash and digest; anything else (an
/// other hash, the TLS 1.0 MD5 ‖ SHA-1 concatenation, raw data) is `None`.
fn split_digest_info(data: &[u8]) -> Option<(DigestAlg, &[u8])> {
    DIGEST_INFO.iter().find_map(|(alg, prefix)| {
        let digest = data.strip_prefix(*prefix)?;
        (digest.len() == alg.output_len()).then_some((*alg, digest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest as sha;
    use crate::rsa;

    #[test]
    fn ecdsa_signatures_verify_with_the_reference_engine() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let pair = ec::generate(curve).unwrap();
            let signer = EcdsaSigner::new(curve, pair.private.clone()).unwrap();
            assert!(signer.lc.is_some(), "{curve:?} not loaded into AWS-LC");
            // The curve's own hash (AWS-LC), and the other lengths
            // (RustCrypto), including a truncated one.
            for alg in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
                let digest = sha(alg, b"prepared");
                let sig = signer.sign(&digest).unwrap();
                assert_eq!(sig.len(), curve.signature_len());
                ec::ecdsa_verify(curve, &pair.public, &digest, &sig).unwrap();
                let mut other = digest.clone();
                other[0] ^= 1;
                assert!(ec::ecdsa_verify(curve, &pair.public, &other, &sig).is_err());
            }
        }
    }

    #[test]
    fn ecdsa_verification_answers_as_the_reference() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let pair = ec::generate(curve).unwrap();
            let verifier = EcdsaVerifier::new(curve, pair.public.clone()).unwrap();
            assert!(verifier.lc.is_some(), "{curve:?} not loaded into AWS-LC");
            for alg in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
                let digest = sha(alg, b"verified");
                let sig = ec::ecdsa_sign(curve, &pair.private, &digest).unwrap();
                verifier.verify(&digest, &sig).unwrap();
                let mut bad = sig.clone();
                bad[5] ^= 1;
                assert_eq!(
                    verifier.verify(&digest, &bad).unwrap_err(),
                    CryptoError::SignatureInvalid
                );
                assert_eq!(
                    verifier.verify(&digest, &sig[1..]).unwrap_err(),
                    CryptoError::SignatureLenRange
                );
                // r = 0 and s = 0 are refused by both engines.
                let zero = vec![0u8; curve.signature_len()];
                assert_eq!(
                    verifier.verify(&digest, &zero).unwrap_err(),
                    ec::ecdsa_verify(curve, &pair.public, &digest, &zero).unwrap_err()
                );
            }
        }
        let mut off_curve = ec::generate(Curve::P256).unwrap().public;
        off_curve[40] ^= 1;
        assert_eq!(
            EcdsaVerifier::new(Curve::P256, off_curve).unwrap_err(),
            CryptoError::KeyTypeInconsistent
        );
    }

    #[test]
    fn ecdsa_refuses_what_the_reference_refuses() {
        let zero = Zeroizing::new(vec![0u8; 32]);
        assert_eq!(
            EcdsaSigner::new(Curve::P256, zero).unwrap_err(),
            CryptoError::KeyTypeInconsistent
        );
        let pair = ec::generate(Curve::P256).unwrap();
        let signer = EcdsaSigner::new(Curve::P256, pair.private).unwrap();
        assert_eq!(signer.sign(&[]).unwrap_err(), CryptoError::DataLenRange);
    }

    #[test]
    fn rsa_signatures_equal_the_reference_engine() {
        let (key, c) = rsa::generate(2048, None).unwrap();
        let reference = rsa::RsaPrivate::from_components(
            &c.modulus,
            &c.public_exponent,
            &c.private_exponent,
            None,
        )
        .unwrap();
        let public = key.public();
        let signer = RsaSigner::new(key);
        assert!(signer.lc.is_some(), "RSA key not loaded into AWS-LC");
        for alg in [
            DigestAlg::Sha1,
            DigestAlg::Sha224,
            DigestAlg::Sha256,
            DigestAlg::Sha384,
            DigestAlg::Sha512,
        ] {
            let digest = sha(alg, b"prepared rsa");
            // PKCS #1 v1.5 is deterministic: the same bytes either way.
            let sig = signer.sign_pkcs1v15_digest(alg, &digest).unwrap();
            assert_eq!(
                sig,
                reference.sign_pkcs1v15_digest(alg, &digest).unwrap(),
                "{alg:?}"
            );
            public.verify_pkcs1v15_digest(alg, &digest, &sig).unwrap();
            // PSS is randomised: verified by the reference.
            let len = alg.output_len();
            let pss = signer.sign_pss(alg, alg, len, &digest).unwrap();
            public.verify_pss(alg, alg, len, &digest, &pss).unwrap();
            let short_salt = signer.sign_pss(alg, alg, 0, &digest).unwrap();
            public
                .verify_pss(alg, alg, 0, &digest, &short_salt)
                .unwrap();
        }
        // DigestInfo given whole (CKM_RSA_PKCS), and raw data that is none.
        for (alg, prefix) in DIGEST_INFO {
            let info = [prefix, &sha(alg, b"info")[..]].concat();
            assert_eq!(split_digest_info(&info).unwrap().0, alg);
            assert_eq!(
                signer.sign_pkcs1v15_raw(&info).unwrap(),
                reference.sign_pkcs1v15_raw(&info).unwrap()
            );
        }
        let tls10 = [0x5a; 36];
        assert!(split_digest_info(&tls10).is_none());
        assert_eq!(
            signer.sign_pkcs1v15_raw(&tls10).unwrap(),
            reference.sign_pkcs1v15_raw(&tls10).unwrap()
        );
        // A DigestInfo whose digest is one byte short is raw data.
        let short = [DIGEST_INFO[0].1, &[7u8; 31][..]].concat();
        assert!(split_digest_info(&short).is_none());
        assert_eq!(
            signer
                .sign_pkcs1v15_digest(DigestAlg::Sha256, &[1; 31])
                .unwrap_err(),
            CryptoError::DataLenRange
        );
    }
}
