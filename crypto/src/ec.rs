//! Elliptic curves: ECDSA and ECDH on NIST P-256, P-384, P-521 (FIPS 186-5,
//! SEC 1, NIST SP 800-56A) and Ed25519 (RFC 8032).
//!
//! Serves `CKM_EC_KEY_PAIR_GEN` ([`generate`]), `CKM_ECDSA` ([`ecdsa_sign`],
//! [`ecdsa_verify`], the input being the already computed hash; the
//! `CKM_ECDSA_SHA*` forms hash in the client and then call these),
//! `CKM_ECDH1_DERIVE` ([`ecdh_derive`], PKCS#11 Current Mechanisms v3.0
//! section 2.3.10 with `CKD_NULL` and `CKD_SHA*_KDF`),
//! `CKM_EC_EDWARDS_KEY_PAIR_GEN` and `CKM_EDDSA` (pure Ed25519;
//! [`ed25519_generate`], [`ed25519_sign`], [`ed25519_verify`]).
//!
//! Keys cross this API as bytes: private scalars big-endian, field-width
//! (`CKA_VALUE`); public keys as uncompressed SEC1 points 04 || x || y (the
//! content of `CKA_EC_POINT`); curves as the DER of `CKA_EC_PARAMS`.
//! ECDSA signatures are r || s, each field-width (PKCS#11 section 2.3.1).

use ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use ed25519_dalek::{Signer as _, Verifier as _};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use zeroize::Zeroizing;

use crate::digest::{DigestAlg, Hasher};
use crate::error::{CryptoError, Result};

/// A Weierstrass curve supported for ECDSA/ECDH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1, prime256v1), OID 1.2.840.10045.3.1.7.
    P256,
    /// NIST P-384 (secp384r1), OID 1.3.132.0.34.
    P384,
    /// NIST P-521 (secp521r1), OID 1.3.132.0.35.
    P521,
}

const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// `CKA_EC_PARAMS` for Ed25519 as the OID 1.3.101.112 (RFC 8410).
pub const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` for Ed25519 as PrintableString "edwards25519" (PKCS#11
/// v3.0 Current Mechanisms section 2.3.6).
pub const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// DER PrintableString of a curve name (the `curveName` choice of
/// `CKA_EC_PARAMS`).
fn printable(name: &str) -> Vec<u8> {
    let mut v = vec![0x13, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v
}

impl Curve {
    /// Field (and scalar) width in bytes: 32, 48, 66.
    pub const fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// Length of the uncompressed public point.
    pub const fn point_len(self) -> usize {
        1 + 2 * self.field_len()
    }

    /// Length of an ECDSA signature r || s.
    pub const fn signature_len(self) -> usize {
        2 * self.field_len()
    }

    /// The DER `namedCurve` OID for `CKA_EC_PARAMS` (what key generation
    /// writes back).
    pub const fn ec_params(self) -> &'static [u8] {
        match self {
            Self::P256 => P256_OID,
            Self::P384 => P384_OID,
            Self::P521 => P521_OID,
        }
    }

    /// The curve named by `CKA_EC_PARAMS`: a DER OID, or a DER
    /// PrintableString curve name ("prime256v1"/"secp256r1", "secp384r1",
    /// "secp521r1"). Anything else is `None` (the caller answers
    /// `CKR_CURVE_NOT_SUPPORTED` or `CKR_DOMAIN_PARAMS_INVALID`).
    pub fn from_ec_params(der: &[u8]) -> Option<Self> {
        let is = |name: &str| der == printable(name).as_slice();
        if der == P256_OID || is("prime256v1") || is("secp256r1") {
            Some(Self::P256)
        } else if der == P384_OID || is("secp384r1") {
            Some(Self::P384)
        } else if der == P521_OID || is("secp521r1") {
            Some(Self::P521)
        } else {
            None
        }
    }
}

/// True if `CKA_EC_PARAMS` names Ed25519 (OID or printable name).
pub fn is_ed25519_params(der: &[u8]) -> bool {
    der == ED25519_OID_PARAMS || der == ED25519_NAME_PARAMS
}

/// An EC key pair as bytes.
pub struct EcKeyPair {
    /// Private scalar, big-endian, field-width.
    pub private: Zeroizing<Vec<u8>>,
    /// Uncompressed public point (Ed25519: the 32-byte encoded point).
    pub public: Vec<u8>,
}

impl core::fmt::Debug for EcKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcKeyPair").finish_non_exhaustive()
    }
}

/// Binds `$m` to the curve's crate (p256, p384, p521).
macro_rules! on_curve {
    ($curve:expr, $m:ident => $body:expr) => {
        match $curve {
            Curve::P256 => {
                use p256 as $m;
                $body
            }
            Curve::P384 => {
                use p384 as $m;
                $body
            }
            Curve::P521 => {
                use p521 as $m;
                $body
            }
        }
    };
}

/// Generate a key pair from the OS RNG (`CKM_EC_KEY_PAIR_GEN`).
pub fn generate(curve: Curve) -> Result<EcKeyPair> {
    on_curve!(curve, m => {
        let sk = m::SecretKey::try_generate().map_err(|_| CryptoError::General)?;
        Ok(EcKeyPair {
            private: Zeroizing::new(sk.to_bytes().to_vec()),
            public: sk.public_key().to_sec1_point(false).as_bytes().to_vec(),
        })
    })
}

/// The uncompressed public point of private scalar `d` (field-width,
/// big-endian; `KeyTypeInconsistent` if out of range).
pub fn public_from_private(curve: Curve, d: &[u8]) -> Result<Vec<u8>> {
    on_curve!(curve, m => {
        let sk = m::SecretKey::from_slice(d).map_err(|_| CryptoError::KeyTypeInconsistent)?;
        Ok(sk.public_key().to_sec1_point(false).as_bytes().to_vec())
    })
}

/// `CKM_ECDSA` signature over `digest` (FIPS 186-5 section 6.4.1: the
/// leftmost bits of the hash up to the order's bit length are used; a
/// shorter hash is taken as is). Output r || s, field-width each. The
/// nonce is RFC 6979 derived with OS randomness mixed in (hedged).
pub fn ecdsa_sign(curve: Curve, d: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    if digest.is_empty() {
        return Err(CryptoError::DataLenRange);
    }
    on_curve!(curve, m => {
        let key = m::ecdsa::SigningKey::from_slice(d).map_err(|_| CryptoError::KeyTypeInconsistent)?;
        let sig: m::ecdsa::Signature = key
            .sign_prehash_with_rng(&mut getrandom::SysRng, digest)
            .map_err(|_| CryptoError::General)?;
        Ok(sig.to_bytes().to_vec())
    })
}

/// `KeyTypeInconsistent` unless `point` is an uncompressed point of the
/// curve.
pub fn check_point(curve: Curve, point: &[u8]) -> Result<()> {
    on_curve!(curve, m => {
        m::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(|_| ())
            .map_err(|_| CryptoError::KeyTypeInconsistent)
    })
}

/// `CKM_ECDSA` verification (FIPS 186-5 section 6.4.2): `SignatureLenRange`
/// if `sig` is not 2 x field width, `SignatureInvalid` if it fails.
pub fn ecdsa_verify(curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    if sig.len() != curve.signature_len() {
        return Err(CryptoError::SignatureLenRange);
    }
    if digest.is_empty() {
        return Err(CryptoError::DataLenRange);
    }
    on_curve!(curve, m => {
        let key = m::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| CryptoError::KeyTypeInconsistent)?;
        let sig = m::ecdsa::Signature::from_slice(sig).map_err(|_| CryptoError::SignatureInvalid)?;
        key.verify_prehash(digest, &sig).map_err(|_| CryptoError::SignatureInvalid)
    })
}

/// The KDF of `CK_ECDH1_DERIVE_PARAMS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcdhKdf {
    /// `CKD_NULL`: the shared secret x-coordinate itself.
    Null,
    /// `CKD_SHA*_KDF`: ANSI X9.63 KDF (SEC 1 v2 section 3.6.1) with this hash.
    X963(DigestAlg),
}

/// `CKM_ECDH1_DERIVE`: Z = x-coordinate of d * peer (SP 800-56A section
/// 5.7.1.2, field-width), then the KDF. `key_len` is the derived key's
/// length (`CKA_VALUE_LEN`); `None` for `CKD_NULL` means all of Z. Longer
/// than Z with `CKD_NULL`, or than 4096 bytes with a KDF, is `KeySizeRange`.
/// `shared_data` must be empty with `CKD_NULL` (PKCS#11 rule), else
/// `MechanismParamInvalid`. A bad peer point is `MechanismParamInvalid`
/// (it is part of the mechanism parameter).
pub fn ecdh_derive(
    curve: Curve,
    d: &[u8],
    peer_point: &[u8],
    kdf: EcdhKdf,
    shared_data: &[u8],
    key_len: Option<usize>,
) -> Result<Zeroizing<Vec<u8>>> {
    let z: Zeroizing<Vec<u8>> = on_curve!(curve, m => {
        let sk = m::SecretKey::from_slice(d).map_err(|_| CryptoError::KeyTypeInconsistent)?;
        let peer = m::PublicKey::from_sec1_bytes(peer_point)
            .map_err(|_| CryptoError::MechanismParamInvalid)?;
        let shared = m::ecdh::diffie_hellman(sk.to_nonzero_scalar(), peer.as_affine());
        Zeroizing::new(shared.raw_secret_bytes().to_vec())
    });
    match kdf {
        EcdhKdf::Null => {
            if !shared_data.is_empty() {
                return Err(CryptoError::MechanismParamInvalid);
            }
            match key_len {
                None => Ok(z),
                Some(n) if n <= z.len() => Ok(Zeroizing::new(z[z.len() - n..].to_vec())),
                Some(_) => Err(CryptoError::KeySizeRange),
            }
        }
        EcdhKdf::X963(alg) => {
            let len = key_len.unwrap_or(z.len());
            // `key_len` is the client's CKA_VALUE_LEN: unbounded, a huge one
            // made the KDF allocate it (an allocation failure aborts the
            // server rather than unwinding).
            if len > MAX_KDF_LEN {
                return Err(CryptoError::KeySizeRange);
            }
            x963_kdf(alg, &z, shared_data, len)
        }
    }
}

/// Longest key the X9.63 KDF of [`ecdh_derive`] makes, in bytes (longer is
/// `KeySizeRange`).
const MAX_KDF_LEN: usize = 4096;

/// ANSI X9.63 KDF (SEC 1 v2 section 3.6.1): K = H(Z || 1 || S) || H(Z || 2 || S) ..., the counter a 32-bit big-endian integer.
fn x963_kdf(
    alg: DigestAlg,
    z: &[u8],
    shared_info: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let blocks = len.div_ceil(alg.output_len());
    let mut out = Zeroizing::new(Vec::with_capacity(blocks * alg.output_len()));
    for counter in 1..=blocks {
        let counter = u32::try_from(counter).map_err(|_| CryptoError::KeySizeRange)?;
        let mut h = Hasher::new(alg);
        h.update(z);
        h.update(&counter.to_be_bytes());
        h.update(shared_info);
        out.extend_from_slice(&Zeroizing::new(h.finalize()));
    }
    out.truncate(len);
    Ok(out)
}

/// Ed25519 key pair (`CKM_EC_EDWARDS_KEY_PAIR_GEN`): the 32-byte seed
/// (`CKA_VALUE`) and the 32-byte encoded public point (the content of
/// `CKA_EC_POINT`).
pub fn ed25519_generate() -> Result<EcKeyPair> {
    // RFC 8032 section 5.1.5: the private key is 32 random bytes.
    let mut seed = Zeroizing::new([0u8; 32]);
    crate::rng::fill(&mut seed[..])?;
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok(EcKeyPair {
        private: Zeroizing::new(sk.to_bytes().to_vec()),
        public: sk.verifying_key().to_bytes().to_vec(),
    })
}

/// The public key of an Ed25519 seed.
pub fn ed25519_public(seed: &[u8]) -> Result<[u8; 32]> {
    Ok(ed25519_key(seed)?.verifying_key().to_bytes())
}

fn ed25519_key(seed: &[u8]) -> Result<ed25519_dalek::SigningKey> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        seed.try_into()
            .map_err(|_| CryptoError::KeyTypeInconsistent)?,
    );
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// `CKM_EDDSA` with no parameter: pure Ed25519 (RFC 8032 section 5.1.6).
pub fn ed25519_sign(seed: &[u8], msg: &[u8]) -> Result<[u8; 64]> {
    Ok(ed25519_key(seed)?.sign(msg).to_bytes())
}

/// `CKM_EDDSA` verification (RFC 8032 section 5.1.7).
pub fn ed25519_verify(public: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    let public: &[u8; 32] = public
        .try_into()
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let sig: &[u8; 64] = sig.try_into().map_err(|_| CryptoError::SignatureLenRange)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(public)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    key.verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| CryptoError::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest;
    use hex_literal::hex;

    // RFC 6979 appendix A.2.5 (P-256) key.
    const D256: [u8; 32] = hex!("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
    const Q256: [u8; 65] = hex!(
        "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
        "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
    );

    #[test]
    fn ec_params_round_trip() {
        for c in [Curve::P256, Curve::P384, Curve::P521] {
            assert_eq!(Curve::from_ec_params(c.ec_params()), Some(c));
        }
        assert_eq!(
            Curve::from_ec_params(b"\x13\x0aprime256v1"),
            Some(Curve::P256)
        );
        assert_eq!(Curve::from_ec_params(ED25519_OID_PARAMS), None);
        assert!(is_ed25519_params(ED25519_OID_PARAMS));
        assert!(is_ed25519_params(ED25519_NAME_PARAMS));
        assert_eq!(ED25519_NAME_PARAMS, printable("edwards25519"));
    }

    // RFC 6979 A.2.5, message "sample" with SHA-1 (shorter than the order),
    // SHA-256 and SHA-512 (longer: leftmost 256 bits, FIPS 186-5 6.4.1).
    #[test]
    fn rfc6979_p256_verify() {
        assert_eq!(public_from_private(Curve::P256, &D256).unwrap(), Q256);
        let cases = [
            (
                DigestAlg::Sha1,
                hex!(
                    "61340c88c3aaebeb4f6d667f672ca9759a6ccaa9fa8811313039ee4a35471d32"
                    "6d7f147dac089441bb2e2fe8f7a3fa264b9c475098fdcf6e00d7c996e1b8b7eb"
                ),
            ),
            (
                DigestAlg::Sha256,
                hex!(
                    "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
                    "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
                ),
            ),
            (
                DigestAlg::Sha512,
                hex!(
                    "8496a60b5e9b47c825488827e0495b0e3fa109ec4568fd3f8d1097678eb97f00"
                    "2362ab1adbe2b8adf9cb9edab740ea6049c028114f2460f96554f61fae3302fe"
                ),
            ),
        ];
        for (alg, sig) in cases {
            let h = digest(alg, b"sample");
            ecdsa_verify(Curve::P256, &Q256, &h, &sig).unwrap();
            let mut bad = sig;
            bad[10] ^= 1;
            assert_eq!(
                ecdsa_verify(Curve::P256, &Q256, &h, &bad),
                Err(CryptoError::SignatureInvalid)
            );
            // Our own signature over the same digest verifies too.
            let mine = ecdsa_sign(Curve::P256, &D256, &h).unwrap();
            ecdsa_verify(Curve::P256, &Q256, &h, &mine).unwrap();
        }
        assert_eq!(
            ecdsa_verify(Curve::P256, &Q256, &[1; 32], &[0; 63]),
            Err(CryptoError::SignatureLenRange)
        );
    }

    #[test]
    fn ecdsa_round_trip_all_curves() {
        for c in [Curve::P256, Curve::P384, Curve::P521] {
            let kp = generate(c).unwrap();
            assert_eq!(kp.private.len(), c.field_len());
            assert_eq!(kp.public.len(), c.point_len());
            assert_eq!(public_from_private(c, &kp.private).unwrap(), kp.public);
            for alg in [DigestAlg::Sha1, DigestAlg::Sha256, DigestAlg::Sha512] {
                let h = digest(alg, b"msg");
                let sig = ecdsa_sign(c, &kp.private, &h).unwrap();
                assert_eq!(sig.len(), c.signature_len());
                ecdsa_verify(c, &kp.public, &h, &sig).unwrap();
            }
        }
    }

    // NIST CAVS ECC CDH primitive test vector (P-256, COUNT = 0), then the
    // X9.63 KDF compared with OpenSSL 3's `openssl kdf ... X963KDF`.
    #[test]
    fn ecdh_cavs_and_x963() {
        let peer = hex!(
            "04700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287"
            "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac"
        );
        let d = hex!("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
        let z = hex!("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b");
        let got = ecdh_derive(Curve::P256, &d, &peer, EcdhKdf::Null, &[], None).unwrap();
        assert_eq!(&got[..], z);
        let k = ecdh_derive(
            Curve::P256,
            &d,
            &peer,
            EcdhKdf::X963(DigestAlg::Sha256),
            &hex!("a1b2c3"),
            Some(40),
        )
        .unwrap();
        assert_eq!(
            &k[..],
            hex!(
                "b1bdbade9a9d19d7c3f04930c7ddd50175e7e64d0e4abf27e7609a3a9254633667f7dbb93dca905b"
            )
        );
        let k = ecdh_derive(
            Curve::P256,
            &d,
            &peer,
            EcdhKdf::X963(DigestAlg::Sha1),
            &[],
            Some(20),
        )
        .unwrap();
        assert_eq!(&k[..], hex!("c93cfd15ba4148858a531b99624f93c611bf674f"));
        let kdf = EcdhKdf::X963(DigestAlg::Sha256);
        let max = ecdh_derive(Curve::P256, &d, &peer, kdf, &[], Some(MAX_KDF_LEN)).unwrap();
        assert_eq!(max.len(), MAX_KDF_LEN);
        for huge in [MAX_KDF_LEN + 1, usize::MAX / 2, usize::MAX] {
            assert_eq!(
                ecdh_derive(Curve::P256, &d, &peer, kdf, &[], Some(huge)).err(),
                Some(CryptoError::KeySizeRange)
            );
        }
        assert_eq!(
            ecdh_derive(Curve::P256, &d, &peer, EcdhKdf::Null, b"x", None).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
        assert_eq!(
            ecdh_derive(Curve::P256, &d, &peer[..64], EcdhKdf::Null, &[], None).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
    }

    #[test]
    fn ecdh_agreement_p384_p521() {
        for c in [Curve::P384, Curve::P521] {
            let a = generate(c).unwrap();
            let b = generate(c).unwrap();
            let kdf = EcdhKdf::X963(DigestAlg::Sha384);
            let x = ecdh_derive(c, &a.private, &b.public, kdf, b"info", Some(32)).unwrap();
            let y = ecdh_derive(c, &b.private, &a.public, kdf, b"info", Some(32)).unwrap();
            assert_eq!(x, y);
        }
    }

    // RFC 8032 section 7.1, TEST 1.
    #[test]
    fn rfc8032_test1() {
        let seed = hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig = hex!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(ed25519_public(&seed).unwrap(), public);
        assert_eq!(ed25519_sign(&seed, b"").unwrap(), sig);
        ed25519_verify(&public, b"", &sig).unwrap();
        assert_eq!(
            ed25519_verify(&public, b"x", &sig),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            ed25519_verify(&public, b"", &sig[..63]),
            Err(CryptoError::SignatureLenRange)
        );
        let kp = ed25519_generate().unwrap();
        let s = ed25519_sign(&kp.private, b"m").unwrap();
        ed25519_verify(&kp.public, b"m", &s).unwrap();
    }
}
