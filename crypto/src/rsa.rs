//! RSA (PKCS #1 v2.2, RFC 8017).
//!
//! Serves `CKM_RSA_PKCS_KEY_PAIR_GEN` ([`generate`], 2048..=4096 bits),
//! `CKM_RSA_PKCS` (sign/verify over caller-supplied data such as a
//! DigestInfo, sign-recover/verify-recover, encrypt/decrypt),
//! `CKM_SHA*_RSA_PKCS` (given the digest: [`RsaPrivate::sign_pkcs1v15_digest`]),
//! `CKM_RSA_PKCS_PSS` and `CKM_SHA*_RSA_PKCS_PSS` (given the digest),
//! `CKM_RSA_PKCS_OAEP` and `CKM_RSA_X_509` (PKCS#11 Current Mechanisms v3.0
//! sections 2.1.6-2.1.15). Integers cross the API as big-endian bytes
//! (`CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`, ...); signatures and ciphertexts
//! are exactly k = modulus-length bytes.
//!
//! Limits of the `rsa` crate, surfaced as errors: PSS uses MGF1 with the
//! message hash only (a different `mgf` is `MechanismParamInvalid`);
//! PKCS#1 v1.5 decryption uses implicit rejection (RFC 8017 with the
//! Marvin-attack countermeasure): a malformed ciphertext decrypts to
//! deterministic pseudo-random bytes instead of failing.

use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::digest::DigestAlg;
use crate::error::{CryptoError, Result};

/// Calls `$go!(DigestType)` for a SHA digest; SM3 gives
/// `Err(rsa::Error::InvalidPaddingScheme)` (callers check SM3 earlier).
macro_rules! on_digest {
    ($alg:expr, $go:ident) => {
        match $alg {
            DigestAlg::Sha1 => $go!(sha1::Sha1),
            DigestAlg::Sha224 => $go!(sha2::Sha224),
            DigestAlg::Sha256 => $go!(sha2::Sha256),
            DigestAlg::Sha384 => $go!(sha2::Sha384),
            DigestAlg::Sha512 => $go!(sha2::Sha512),
            DigestAlg::Sm3 => Err(rsa::Error::InvalidPaddingScheme),
        }
    };
}

/// Calls `$go!(Hash, MgfHash)` over every pair of SHA digests.
macro_rules! on_digest_pair {
    ($h:expr, $m:expr, $go:ident) => {{
        macro_rules! inner {
            ($d:ty) => {
                match $m {
                    DigestAlg::Sha1 => $go!($d, sha1::Sha1),
                    DigestAlg::Sha224 => $go!($d, sha2::Sha224),
                    DigestAlg::Sha256 => $go!($d, sha2::Sha256),
                    DigestAlg::Sha384 => $go!($d, sha2::Sha384),
                    DigestAlg::Sha512 => $go!($d, sha2::Sha512),
                    DigestAlg::Sm3 => Err(rsa::Error::InvalidPaddingScheme),
                }
            };
        }
        on_digest!($h, inner)
    }};
}

/// Smallest modulus [`generate`] makes.
pub const MIN_BITS: usize = 2048;
/// Largest modulus [`generate`] makes.
pub const MAX_BITS: usize = 4096;

/// All components of a private key as big-endian bytes without leading
/// zeros (`CKA_MODULUS` .. `CKA_COEFFICIENT`).
pub struct RsaComponents {
    /// n.
    pub modulus: Vec<u8>,
    /// e.
    pub public_exponent: Vec<u8>,
    /// d.
    pub private_exponent: Zeroizing<Vec<u8>>,
    /// p.
    pub prime_1: Zeroizing<Vec<u8>>,
    /// q.
    pub prime_2: Zeroizing<Vec<u8>>,
    /// d mod (p-1).
    pub exponent_1: Zeroizing<Vec<u8>>,
    /// d mod (q-1).
    pub exponent_2: Zeroizing<Vec<u8>>,
    /// q^-1 mod p.
    pub coefficient: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for RsaComponents {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaComponents")
            .field("bits", &(self.modulus.len() * 8))
            .finish_non_exhaustive()
    }
}

/// An RSA private key.
#[derive(Clone)]
pub struct RsaPrivate(rsa::PrivateKey);

/// An RSA public key.
#[derive(Clone)]
pub struct RsaPublic(rsa::PublicKey);

impl core::fmt::Debug for RsaPrivate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaPrivate")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaPublic")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

fn uint(bytes: &[u8]) -> Result<BoxedUint> {
    let bits = u32::try_from(bytes.len().max(1).div_ceil(8) * 64)
        .map_err(|_| CryptoError::KeySizeRange)?;
    BoxedUint::from_be_slice(bytes, bits).map_err(|_| CryptoError::KeyTypeInconsistent)
}

fn trimmed(v: &BoxedUint) -> Vec<u8> {
    let b = v.to_be_bytes();
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    b[start..].to_vec()
}

fn map_err(e: rsa::Error) -> CryptoError {
    match e {
        rsa::Error::MessageTooLong | rsa::Error::InputNotHashed => CryptoError::DataLenRange,
        rsa::Error::Decryption => CryptoError::EncryptedDataInvalid,
        rsa::Error::Verification => CryptoError::SignatureInvalid,
        rsa::Error::ModulusTooSmall | rsa::Error::ModulusTooLarge => CryptoError::KeySizeRange,
        _ => CryptoError::General,
    }
}

/// Generate a key (`CKM_RSA_PKCS_KEY_PAIR_GEN`): `bits` in
/// [`MIN_BITS`]..=[`MAX_BITS`] (else `KeySizeRange`), public exponent
/// `CKA_PUBLIC_EXPONENT` or 65537. An even exponent, or one outside
/// 3..2^33, is `MechanismParamInvalid` (the driver may report it as
/// `CKR_TEMPLATE_INCONSISTENT`, the exponent coming from the template).
pub fn generate(
    bits: usize,
    public_exponent: Option<&[u8]>,
) -> Result<(RsaPrivate, RsaComponents)> {
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(CryptoError::KeySizeRange);
    }
    let e = match public_exponent {
        None => BoxedUint::from(65537u64),
        Some(bytes) => {
            let odd = bytes.last().is_some_and(|b| b & 1 == 1);
            let e = uint(bytes)?;
            if !odd || e < BoxedUint::from(3u64) {
                return Err(CryptoError::MechanismParamInvalid);
            }
            e
        }
    };
    let key =
        rsa::PrivateKey::new_with_exp(&mut getrandom::SysRng, bits, e).map_err(|e| match e {
            rsa::Error::PublicExponentTooSmall | rsa::Error::PublicExponentTooLarge => {
                CryptoError::MechanismParamInvalid
            }
            other => map_err(other),
        })?;
    let key = RsaPrivate(key);
    let comps = key.components()?;
    Ok((key, comps))
}

impl RsaPrivate {
    /// Import from n, e, d and, if known, p and q (`C_CreateObject`,
    /// `C_UnwrapKey`). Without the primes they are recovered from (n, e, d)
    /// (SP 800-56B appendix C.2). An inconsistent key is
    /// `KeyTypeInconsistent`; a modulus outside 1024..=8192 bits
    /// `KeySizeRange`.
    pub fn from_components(
        n: &[u8],
        e: &[u8],
        d: &[u8],
        primes: Option<(&[u8], &[u8])>,
    ) -> Result<Self> {
        let primes = match primes {
            Some((p, q)) => vec![uint(p)?, uint(q)?],
            None => Vec::new(),
        };
        rsa::PrivateKey::from_components(uint(n)?, uint(e)?, uint(d)?, primes)
            .map(Self)
            .map_err(|e| match map_err(e) {
                CryptoError::KeySizeRange => CryptoError::KeySizeRange,
                _ => CryptoError::KeyTypeInconsistent,
            })
    }

    /// Modulus length in bits (`CKA_MODULUS_BITS`).
    pub fn bits(&self) -> usize {
        self.0.n().as_ref().bit_width() as usize
    }

    /// k, the modulus length in bytes (signature and ciphertext length).
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// The public half.
    pub fn public(&self) -> RsaPublic {
        RsaPublic(self.0.to_public_key())
    }

    /// Every component as big-endian bytes.
    pub fn components(&self) -> Result<RsaComponents> {
        let k = &self.0;
        let primes = k.primes();
        let (p, q) = match primes {
            [p, q] => (p.as_ref(), q.as_ref()),
            _ => return Err(CryptoError::General),
        };
        let z = |v: &BoxedUint| Zeroizing::new(trimmed(v));
        Ok(RsaComponents {
            modulus: trimmed(k.n().as_ref()),
            public_exponent: trimmed(k.e()),
            private_exponent: z(k.d()),
            prime_1: z(p),
            prime_2: z(q),
            exponent_1: z(k.dp().ok_or(CryptoError::General)?),
            exponent_2: z(k.dq().ok_or(CryptoError::General)?),
            coefficient: z(&k.crt_coefficient().ok_or(CryptoError::General)?),
        })
    }

    /// `CKM_RSA_PKCS` sign and `C_SignRecover`: EMSA-PKCS1-v1_5 block type 1
    /// over `data` as given (typically a DigestInfo), at most k-11 bytes
    /// (else `DataLenRange`). RFC 8017 section 8.2.1 with the DigestInfo
    /// supplied by the caller.
    pub fn sign_pkcs1v15_raw(&self, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() + 11 > self.size() {
            return Err(CryptoError::DataLenRange);
        }
        self.0
            .sign(Pkcs1v15Sign::new_unprefixed(), data)
            .map_err(map_err)
    }

    /// `CKM_SHA*_RSA_PKCS` given the message digest: builds the DigestInfo
    /// of `alg` (RFC 8017 section 9.2) and signs. `DataLenRange` if the
    /// digest has the wrong length; SM3 is `MechanismParamInvalid`.
    pub fn sign_pkcs1v15_digest(&self, alg: DigestAlg, digest: &[u8]) -> Result<Vec<u8>> {
        check_digest(alg, digest)?;
        self.0.sign(pkcs1v15_scheme(alg)?, digest).map_err(map_err)
    }

    /// `CKM_RSA_PKCS_PSS` / `CKM_SHA*_RSA_PKCS_PSS` given the digest
    /// (RFC 8017 section 8.1.1; `CK_RSA_PKCS_PSS_PARAMS`). `mgf` must equal
    /// `hash`, else `MechanismParamInvalid`; `salt_len` at most
    /// k - hLen - 2.
    pub fn sign_pss(
        &self,
        hash: DigestAlg,
        mgf: DigestAlg,
        salt_len: usize,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        check_pss(self.size(), hash, mgf, salt_len)?;
        check_digest(hash, digest)?;
        macro_rules! go {
            ($d:ty) => {
                self.0.sign_with_rng(
                    &mut getrandom::SysRng,
                    Pss::<$d>::new_with_salt(salt_len),
                    digest,
                )
            };
        }
        on_digest!(hash, go).map_err(map_err)
    }

    /// `CKM_RSA_PKCS` decryption (RFC 8017 section 7.2.2, implicit
    /// rejection: see the module documentation). `EncryptedDataLenRange` if
    /// not k bytes.
    pub fn decrypt_pkcs1v15(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if ciphertext.len() != self.size() {
            return Err(CryptoError::EncryptedDataLenRange);
        }
        self.0
            .decrypt(Pkcs1v15Encrypt, ciphertext)
            .map(Zeroizing::new)
            .map_err(map_err)
    }

    /// `CKM_RSA_PKCS_OAEP` decryption (RFC 8017 section 7.1.2;
    /// `CK_RSA_PKCS_OAEP_PARAMS` with `CKZ_DATA_SPECIFIED` label).
    /// `EncryptedDataInvalid` on any decoding failure.
    pub fn decrypt_oaep(
        &self,
        hash: DigestAlg,
        mgf: DigestAlg,
        label: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if hash == DigestAlg::Sm3 || mgf == DigestAlg::Sm3 {
            return Err(CryptoError::MechanismParamInvalid);
        }
        if ciphertext.len() != self.size() {
            return Err(CryptoError::EncryptedDataLenRange);
        }
        // The `rsa` crate's OAEP decoder skips the first octet Y of
        // EM = 00 || maskedSeed || maskedDB without checking it, while
        // RFC 8017 section 7.1.2 step 3g requires Y = 0 (Wycheproof's
        // "First byte is 1" vectors decrypted). Compute EM once more
        // (RSADP, blinded) to check Y, in constant time, and fold the
        // result into the one error so no failure is distinguishable.
        let y_is_zero = match self.x509_private(ciphertext) {
            Ok(em) => em.first().map_or(Choice::from(0), |y| y.ct_eq(&0)),
            Err(_) => Choice::from(0),
        };
        macro_rules! go2 {
            ($d:ty, $m:ty) => {
                self.0.decrypt(oaep::<$d, $m>(label), ciphertext)
            };
        }
        match on_digest_pair!(hash, mgf, go2) {
            Ok(m) if bool::from(y_is_zero) => Ok(Zeroizing::new(m)),
            Ok(m) => {
                drop(Zeroizing::new(m));
                Err(CryptoError::EncryptedDataInvalid)
            }
            Err(_) => Err(CryptoError::EncryptedDataInvalid),
        }
    }

    /// `CKM_RSA_X_509` decrypt / sign: raw m^d mod n (RSADP/RSASP1, RFC 8017
    /// sections 5.1.2, 5.2.1) with blinding and a fault check. Input at most
    /// k bytes (else `DataLenRange`) and less than n (else `DataInvalid`);
    /// output k bytes.
    pub fn x509_private(&self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let c = to_representative(self.0.n().as_ref(), input)?;
        let m = rsa::hazmat::rsa_decrypt_and_check(&self.0, Some(&mut getrandom::SysRng), &c)
            .map_err(|_| CryptoError::General)?;
        Ok(Zeroizing::new(left_pad(&m, self.size())))
    }
}

impl RsaPublic {
    /// Import from n and e (`C_CreateObject`).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self> {
        rsa::PublicKey::new(uint(n)?, uint(e)?)
            .map(Self)
            .map_err(|e| match map_err(e) {
                CryptoError::KeySizeRange => CryptoError::KeySizeRange,
                _ => CryptoError::KeyTypeInconsistent,
            })
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.0.n().as_ref().bit_width() as usize
    }

    /// k, the modulus length in bytes.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    fn check_sig_len(&self, sig: &[u8]) -> Result<()> {
        if sig.len() == self.size() {
            Ok(())
        } else {
            Err(CryptoError::SignatureLenRange)
        }
    }

    /// `CKM_RSA_PKCS` verification of a signature over `data` as given.
    pub fn verify_pkcs1v15_raw(&self, data: &[u8], sig: &[u8]) -> Result<()> {
        self.check_sig_len(sig)?;
        if data.len() + 11 > self.size() {
            return Err(CryptoError::DataLenRange);
        }
        self.0
            .verify(Pkcs1v15Sign::new_unprefixed(), data, sig)
            .map_err(|_| CryptoError::SignatureInvalid)
    }

    /// `CKM_SHA*_RSA_PKCS` verification given the digest (RFC 8017 section 8.2.2).
    pub fn verify_pkcs1v15_digest(&self, alg: DigestAlg, digest: &[u8], sig: &[u8]) -> Result<()> {
        self.check_sig_len(sig)?;
        check_digest(alg, digest)?;
        self.0
            .verify(pkcs1v15_scheme(alg)?, digest, sig)
            .map_err(|_| CryptoError::SignatureInvalid)
    }

    /// `CKM_RSA_PKCS` `C_VerifyRecover`: RSAVP1 then strip the block type 1
    /// padding (RFC 8017 section 9.2 / PKCS #1 v1.5 section 8.1), returning
    /// the signed data. `SignatureInvalid` if the block is malformed.
    pub fn verify_recover_pkcs1v15(&self, sig: &[u8]) -> Result<Vec<u8>> {
        self.check_sig_len(sig)?;
        let em = self
            .x509_public(sig)
            .map_err(|_| CryptoError::SignatureInvalid)?;
        // EM = 00 || 01 || PS (>= 8 bytes of FF) || 00 || T
        let body = em
            .strip_prefix(&[0x00, 0x01])
            .ok_or(CryptoError::SignatureInvalid)?;
        let sep = body
            .iter()
            .position(|&b| b != 0xff)
            .ok_or(CryptoError::SignatureInvalid)?;
        if sep < 8 || body[sep] != 0x00 {
            return Err(CryptoError::SignatureInvalid);
        }
        Ok(body[sep + 1..].to_vec())
    }

    /// PSS verification given the digest (RFC 8017 section 8.1.2), with
    /// the salt length required to equal `salt_len`.
    pub fn verify_pss(
        &self,
        hash: DigestAlg,
        mgf: DigestAlg,
        salt_len: usize,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<()> {
        // Parameters first: an unsupported CK_RSA_PKCS_PSS_PARAMS is
        // `MechanismParamInvalid` whatever the data (it used to surface as
        // `SignatureLenRange` for a short signature).
        check_pss(self.size(), hash, mgf, salt_len)?;
        self.check_sig_len(sig)?;
        check_digest(hash, digest)?;
        macro_rules! go {
            ($d:ty) => {
                self.0
                    .verify(Pss::<$d>::new_with_salt(salt_len), digest, sig)
            };
        }
        on_digest!(hash, go).map_err(|_| CryptoError::SignatureInvalid)
    }

    /// `CKM_RSA_PKCS` encryption (RFC 8017 section 7.2.1): at most k-11 bytes.
    pub fn encrypt_pkcs1v15(&self, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() + 11 > self.size() {
            return Err(CryptoError::DataLenRange);
        }
        self.0
            .encrypt(&mut getrandom::SysRng, Pkcs1v15Encrypt, data)
            .map_err(map_err)
    }

    /// `CKM_RSA_PKCS_OAEP` encryption (RFC 8017 section 7.1.1): at most
    /// k - 2 hLen - 2 bytes.
    pub fn encrypt_oaep(
        &self,
        hash: DigestAlg,
        mgf: DigestAlg,
        label: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>> {
        if hash == DigestAlg::Sm3 || mgf == DigestAlg::Sm3 {
            return Err(CryptoError::MechanismParamInvalid);
        }
        if data.len() + 2 * hash.output_len() + 2 > self.size() {
            return Err(CryptoError::DataLenRange);
        }
        macro_rules! go2 {
            ($d:ty, $m:ty) => {
                self.0
                    .encrypt(&mut getrandom::SysRng, oaep::<$d, $m>(label), data)
            };
        }
        on_digest_pair!(hash, mgf, go2).map_err(map_err)
    }

    /// `CKM_RSA_X_509` encrypt / verify-recover: raw m^e mod n (RSAEP,
    /// RSAVP1). Input at most k bytes and less than n; output k bytes.
    pub fn x509_public(&self, input: &[u8]) -> Result<Vec<u8>> {
        let m = to_representative(self.0.n().as_ref(), input)?;
        let c = rsa::hazmat::rsa_encrypt(&self.0, &m).map_err(|_| CryptoError::General)?;
        Ok(left_pad(&c, self.size()))
    }
}

fn to_representative(n: &BoxedUint, input: &[u8]) -> Result<BoxedUint> {
    if input.len() > n.bit_width().div_ceil(8) as usize {
        return Err(CryptoError::DataLenRange);
    }
    let m = BoxedUint::from_be_slice(input, n.bits_precision())
        .map_err(|_| CryptoError::DataLenRange)?;
    if m >= *n {
        return Err(CryptoError::DataInvalid);
    }
    Ok(m)
}

fn left_pad(v: &BoxedUint, k: usize) -> Vec<u8> {
    let b = Zeroizing::new(v.to_be_bytes());
    let mut out = vec![0u8; k];
    let take = b.len().min(k);
    out[k - take..].copy_from_slice(&b[b.len() - take..]);
    out
}

fn check_digest(alg: DigestAlg, digest: &[u8]) -> Result<()> {
    if alg == DigestAlg::Sm3 {
        return Err(CryptoError::MechanismParamInvalid);
    }
    if digest.len() != alg.output_len() {
        return Err(CryptoError::DataLenRange);
    }
    Ok(())
}

fn check_pss(k: usize, hash: DigestAlg, mgf: DigestAlg, salt_len: usize) -> Result<()> {
    // Saturating: `salt_len` comes from the client's `ulSLen` and must not
    // wrap past the bound.
    if mgf != hash || salt_len.saturating_add(hash.output_len() + 2) > k {
        return Err(CryptoError::MechanismParamInvalid);
    }
    Ok(())
}

fn pkcs1v15_scheme(alg: DigestAlg) -> Result<Pkcs1v15Sign> {
    Ok(match alg {
        DigestAlg::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        DigestAlg::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        DigestAlg::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        DigestAlg::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        DigestAlg::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        DigestAlg::Sm3 => return Err(CryptoError::MechanismParamInvalid),
    })
}

fn oaep<D, M>(label: &[u8]) -> Oaep<D, M>
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
    M: sha2::Digest + sha2::digest::FixedOutputReset,
{
    if label.is_empty() {
        Oaep::<D, M>::new_with_mgf_hash()
    } else {
        Oaep::<D, M>::new_with_mgf_hash_and_label(label.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest;
    use hex_literal::hex;

    // A 2048-bit key made with `openssl genpkey -algorithm RSA
    // -pkeyopt rsa_keygen_bits:2048`, components from `openssl pkey -text`.
    const N: [u8; 256] = hex!(
        "ac7428427cc363fa745bcf35129f04fe2521d171a173422025453fbc28ca8139083263474a33f1111a84675fd8915a41"
        "665ecc4935872b7258d27278a7b9a7e16cd3e00f79c6e5126945f5ec161e081f69b129f2ec4fac1cde51c997c004a9e0"
        "c9c6da21714a986868ad94ab33d049ccdee0bbdde3c83bc21a30a0be851cfc2381f8037ab4f06170b5823b29fd3769d7"
        "480e6161da1faec9f8a6fd1afc3703438b24261c6279e3b208cbea403825e4440025095f457400d30e8916c815dca23d"
        "dd688b308e2b83c125592fa4af4769ceb53f2394aa57dca716470ef453ed9a976e609cf97dd98d98ebb691e07be6d093"
        "3f3172f6be2a6e3a037087e8f6b9f621"
    );
    const E: [u8; 3] = hex!("010001");
    const D: [u8; 256] = hex!(
        "0e8db7f71275dfda5b570327d8b43454e957cf07dea6ee31edcb480b6e4ad6b8742d626cfa0163aafc98a76bb28863bc"
        "48b21fdddec7533e9169e330b500e93ed0331a41dc1651af29d4b6620fe4c56d373b750d93ed4e5a5a55bf24501764a9"
        "bc858c538daecca9650a1f158aa81d8e4d51dc70e79ff691152a3cea8f2bc8c867a17180f878c7ad637778531d27e833"
        "9977731990cbb55d4175d622ae50da6be55c04b4a0d1cb9e136fbcbdc96dc2385bf14b9cd2afbe0ccfad7108fa39ca79"
        "2f897a34b862b2ec46c62d6355aa65519dd86df867adc874e7029bd921aff24f0cd1f21df9fdcb4bd1646e558c759e79"
        "344daad4e1a917c8f7509af3aac9e505"
    );
    const P: [u8; 128] = hex!(
        "ec78f31de3d945c6a24b46e48e694c2ec10f69be128249f8eaa10ef37e2eee8b2144679f6eb15edce433392a2e1cd9c7"
        "f3b137ba29a6eff9dbcce553e43acc81496799671d38583642a798b5db24bccf88731614eda9d6ea0691667626d5faa7"
        "6ec4f722886a9dcafafd0c7786a68f48d06f38fd815f09aea72c84d2c55064f5"
    );
    const Q: [u8; 128] = hex!(
        "bab1d882967ad070d2c752055f7bb879b062b351e7490d5623174593d1234076184c36c1d94c9cc4cd1f90181a47a304"
        "4f1f07e039d98187e58d4e77c1e828857c259d8c2d33963c03f6e281c657ca5a80a7a236d12a1c574a430046a754ee7f"
        "69686f3c9084109adda7960d0dc67175d04771dfc1cce941d15e1df188cf70fd"
    );
    const QINV: [u8; 128] = hex!(
        "5137b57281d4ef9ae5e6275711e4a3de0ab3e27ef6f48c7ed4e40e5aea1abc8b94bc90a84fa0ffc202ceac756541cacb"
        "9211724c9a8e7de663968134fa574f51745ffa5944c7cbcf7be733f4bd8613f3a8d77f90271f74854951a73c13665fb4"
        "f0b780250a7401f62ec0ebcbc8abf8f12958bc6d218a74f9738ba659a78f2545"
    );
    // `openssl dgst -sha256 -sign k.pem` over "abc" (PKCS#1 v1.5, deterministic).
    const SIG_ABC: [u8; 256] = hex!(
        "4381e90d37cb941f3fce9fc05731be9ab1e6ad0f372db15ef073c08e02b2b2efde1663ae6c6db303a17cb24567abefeb"
        "0a3385ec391db3c19aae0bb33e707058d7ad1a34186fe9cbbea12ba46fc31e7faff19d116d26adb71232e253e95fbb2e"
        "5c88e14f2bd7496d2528d8d04c912642d4fae28144f086450ada564d501bc34b29d0a174c3dc5f6c3c92d991b6dda79f"
        "7666cdc290d31fc1d2ea110e8787096fa46ca380b94c05d35d7e66c4c953560f1ddd9eacfb1bdb91003defcd6b57cae7"
        "d6eb4cd33e2210561d5bdeb4d13f14c984b94d08088854cd87d74eaac04e82e39a435b16a16a181b1fb50ac1d5f2b9a6"
        "8900cdbb8c4961f0aa29a7d2c915e8f1"
    );
    /// DER DigestInfo prefix for SHA-256 (RFC 8017 section 9.2 note 1).
    const SHA256_PREFIX: [u8; 19] = hex!("3031300d060960864801650304020105000420");

    fn key() -> RsaPrivate {
        RsaPrivate::from_components(&N, &E, &D, Some((&P, &Q))).unwrap()
    }

    #[test]
    fn pkcs1v15_matches_openssl() {
        let k = key();
        assert_eq!(k.size(), 256);
        assert_eq!(k.bits(), 2048);
        let h = digest(DigestAlg::Sha256, b"abc");
        assert_eq!(
            k.sign_pkcs1v15_digest(DigestAlg::Sha256, &h).unwrap(),
            SIG_ABC
        );
        // CKM_RSA_PKCS over a caller-built DigestInfo gives the same bytes.
        let mut di = SHA256_PREFIX.to_vec();
        di.extend_from_slice(&h);
        assert_eq!(k.sign_pkcs1v15_raw(&di).unwrap(), SIG_ABC);
        let public = RsaPublic::from_components(&N, &E).unwrap();
        public
            .verify_pkcs1v15_digest(DigestAlg::Sha256, &h, &SIG_ABC)
            .unwrap();
        public.verify_pkcs1v15_raw(&di, &SIG_ABC).unwrap();
        assert_eq!(public.verify_recover_pkcs1v15(&SIG_ABC).unwrap(), di);
        let mut bad = SIG_ABC;
        bad[100] ^= 1;
        assert_eq!(
            public.verify_pkcs1v15_digest(DigestAlg::Sha256, &h, &bad),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            public.verify_recover_pkcs1v15(&bad),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            public.verify_pkcs1v15_raw(&di, &SIG_ABC[1..]),
            Err(CryptoError::SignatureLenRange)
        );
        assert_eq!(
            k.sign_pkcs1v15_raw(&[0; 246]),
            Err(CryptoError::DataLenRange)
        );
        assert_eq!(
            k.sign_pkcs1v15_digest(DigestAlg::Sha256, &h[1..]),
            Err(CryptoError::DataLenRange)
        );
        // Import without primes recovers them; CRT parts match OpenSSL's.
        let k2 = RsaPrivate::from_components(&N, &E, &D, None).unwrap();
        let c = k2.components().unwrap();
        assert_eq!(&c.coefficient[..], QINV);
        assert_eq!(c.modulus, N);
        assert_eq!(c.public_exponent, E);
        assert!(!format!("{c:?}{k2:?}").contains("ac74"));
    }

    // `openssl dgst -sha256 -sign k.pem -sigopt rsa_padding_mode:pss
    // -sigopt rsa_pss_saltlen:32` over "abc".
    #[test]
    fn pss_openssl_and_round_trip() {
        let sig = hex!(
            "a1325215d9a13d79d8465bff58b495d1ef96e9ecf679ab9905f45d5f7eff0eef5eed5a0b7591a5fa30a18cf0127dc591"
            "1cf444066c1dad7c54819964195412340b923c4958a9b211c7a7f498fe4b92360f9304b30c2e17d4cd4b7c4b4acb44d4"
            "e11c47a6f8244a02b49f36f9fe4bdc56278b9b6844734b9b15f7aaf24392d41ac4205f6741c36fe4ee6e9aaa7dad270f"
            "be91a1903f06ce7f81213c78b1f5fa3c7304b05daa2831de1f12b29fafedcdcb077e3b7736e30e5eebd9cbe194a47a9e"
            "50bee86699274780cb7f6fbed376d39e9be0641b29d611976f6be751c79127055e1324717cc6d3a77311a86e94766a98"
            "4e7d2399286e7c596b3790a9be71321e"
        );
        let public = key().public();
        let h = digest(DigestAlg::Sha256, b"abc");
        public
            .verify_pss(DigestAlg::Sha256, DigestAlg::Sha256, 32, &h, &sig)
            .unwrap();
        assert_eq!(
            public.verify_pss(DigestAlg::Sha256, DigestAlg::Sha256, 20, &h, &sig),
            Err(CryptoError::SignatureInvalid)
        );
        for (alg, salt) in [
            (DigestAlg::Sha1, 20),
            (DigestAlg::Sha384, 0),
            (DigestAlg::Sha512, 64),
        ] {
            let h = digest(alg, b"xyz");
            let s = key().sign_pss(alg, alg, salt, &h).unwrap();
            public.verify_pss(alg, alg, salt, &h, &s).unwrap();
        }
        assert_eq!(
            key().sign_pss(DigestAlg::Sha256, DigestAlg::Sha1, 32, &h),
            Err(CryptoError::MechanismParamInvalid)
        );
    }

    // `openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt
    // rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha1 -pkeyopt
    // rsa_oaep_label:6c6162656c` of "oaep secret".
    #[test]
    fn oaep_openssl_and_round_trip() {
        let ct = hex!(
            "86c5f308bbeaa151af06dd4590ed15fe8c1eaa745099212b261b7df37c24d3a2d7f3d8a2d16db33637824d916e819319"
            "b10503b53bc20809d00cb027006b0da923ec95a357cd7eaef1a7e314df71bd238e9567591ed1580a0085846ea45e9a17"
            "853a41310717b0a5d7b3b83608c163b8de1a627c91d29610e7a185933ca8c91b008810dd5f2698617a106f1fce40546d"
            "720e2fb5ba1ab74c4b78d2b1c7b3e9820bc9048e5cae2ae4165c726155115fc6ca1a2c27deeff4ad3435bcc15adc2529"
            "5df205ca3adcfa64697dae3e78616abc19371457d2e1cdb2449b3ed921117f8b6727e22fe20dd3c7c199eba3501489b3"
            "06b0978597a870cfc73b07a5f44bad2c"
        );
        let k = key();
        let pt = k
            .decrypt_oaep(DigestAlg::Sha256, DigestAlg::Sha1, b"label", &ct)
            .unwrap();
        assert_eq!(&pt[..], b"oaep secret");
        assert_eq!(
            k.decrypt_oaep(DigestAlg::Sha256, DigestAlg::Sha1, b"other", &ct)
                .err(),
            Some(CryptoError::EncryptedDataInvalid)
        );
        let public = k.public();
        for (h, m) in [
            (DigestAlg::Sha1, DigestAlg::Sha1),
            (DigestAlg::Sha512, DigestAlg::Sha256),
        ] {
            let c = public.encrypt_oaep(h, m, b"", b"hi").unwrap();
            assert_eq!(&k.decrypt_oaep(h, m, b"", &c).unwrap()[..], b"hi");
        }
        assert_eq!(
            public
                .encrypt_oaep(DigestAlg::Sha256, DigestAlg::Sha256, b"", &[0; 191])
                .err(),
            Some(CryptoError::DataLenRange)
        );
    }

    // RFC 8017 section 7.1.2 step 3g: EM's first octet Y must be 0. The
    // same EM with Y = 1 (re-encrypted raw; still below n, whose top byte
    // is 0xac) must not decrypt (Wycheproof OAEP tcId 23, "First byte is 1").
    #[test]
    fn oaep_rejects_nonzero_first_octet() {
        let k = key();
        let public = k.public();
        let (h, m) = (DigestAlg::Sha256, DigestAlg::Sha256);
        let c = public.encrypt_oaep(h, m, b"", b"hi").unwrap();
        let mut em = k.x509_private(&c).unwrap();
        assert_eq!(em[0], 0);
        em[0] = 1;
        let bad = public.x509_public(&em).unwrap();
        assert_eq!(
            k.decrypt_oaep(h, m, b"", &bad).err(),
            Some(CryptoError::EncryptedDataInvalid)
        );
        assert_eq!(&k.decrypt_oaep(h, m, b"", &c).unwrap()[..], b"hi");
        assert_eq!(
            k.decrypt_oaep(DigestAlg::Sm3, m, b"", &c).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
    }

    #[test]
    fn pkcs1v15_encrypt_and_x509() {
        let k = key();
        let public = k.public();
        let c = public.encrypt_pkcs1v15(b"secret").unwrap();
        assert_eq!(&k.decrypt_pkcs1v15(&c).unwrap()[..], b"secret");
        assert_eq!(
            public.encrypt_pkcs1v15(&[0; 246]).err(),
            Some(CryptoError::DataLenRange)
        );
        assert_eq!(
            k.decrypt_pkcs1v15(&c[1..]).err(),
            Some(CryptoError::EncryptedDataLenRange)
        );
        // Raw RSA: private then public is the identity; input >= n refused.
        let m = b"raw input";
        let s = k.x509_private(m).unwrap();
        assert_eq!(s.len(), 256);
        let back = public.x509_public(&s).unwrap();
        assert_eq!(&back[256 - m.len()..], m);
        assert!(back[..256 - m.len()].iter().all(|&b| b == 0));
        assert_eq!(public.x509_public(&N).err(), Some(CryptoError::DataInvalid));
        assert_eq!(
            public.x509_public(&[1; 257]).err(),
            Some(CryptoError::DataLenRange)
        );
        // Raw RSA of the padded block equals the PKCS#1 v1.5 signature.
        let em = public.x509_public(&SIG_ABC).unwrap();
        assert_eq!(&k.x509_private(&em).unwrap()[..], SIG_ABC);
    }

    #[test]
    fn generate_2048() {
        let (k, c) = generate(2048, None).unwrap();
        assert_eq!(k.bits(), 2048);
        assert_eq!(c.public_exponent, E);
        let again = RsaPrivate::from_components(
            &c.modulus,
            &c.public_exponent,
            &c.private_exponent,
            Some((&c.prime_1, &c.prime_2)),
        )
        .unwrap();
        let h = digest(DigestAlg::Sha384, b"m");
        let s = again.sign_pkcs1v15_digest(DigestAlg::Sha384, &h).unwrap();
        k.public()
            .verify_pkcs1v15_digest(DigestAlg::Sha384, &h, &s)
            .unwrap();
        assert_eq!(generate(1024, None).err(), Some(CryptoError::KeySizeRange));
        assert_eq!(
            generate(2048, Some(&[0x01, 0x00])).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
    }

    #[test]
    #[ignore = "4096-bit key generation is slow in debug builds"]
    fn generate_4096() {
        let (k, _) = generate(4096, Some(&[0x01, 0x00, 0x01])).unwrap();
        assert_eq!(k.bits(), 4096);
    }
}
