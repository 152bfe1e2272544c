//! RSA, ECDSA, EdDSA and SM2 as [`Operation`]s, and AES key wrap used
//! through `C_Encrypt`/`C_Decrypt` (single-part engines over buffered
//! input).
//!
//! Hash-then-sign mechanisms (`CKM_SHA*_RSA_PKCS(_PSS)`, `CKM_ECDSA_SHA*`,
//! SM2 with SM3) hash the message as it comes (`C_SignUpdate`), and also
//! take the hash computed by the module (`SignDigest`, `VerifyDigest`),
//! which must have the hash's length (`CKR_DATA_LEN_RANGE`). SM2 with SM3
//! starts its hash with Z, which `C_SignInit` returns to the module.

use cryptoki_sys::*;
use hsmlink_crypto::digest::{DigestAlg, Hasher};
use hsmlink_crypto::ec::{self, Curve};
use hsmlink_crypto::keywrap::{self, WrapAlg};
use hsmlink_crypto::prepared::{EcdsaSigner, EcdsaVerifier, RsaSigner};
use hsmlink_crypto::rsa::{self, RsaPrivate, RsaPublic};
use hsmlink_crypto::sm2;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{MAX_FRAME_BODY, Mechanism, MechanismParams};
use std::sync::Arc;
use zeroize::Zeroizing;

use super::{Family, Key, ck, digest_of_mechanism, digest_of_mgf, no_params};
use crate::driver::{OpKind, Operation, OutLen, Step};
use crate::error::{CkResult, Ckr};

/// The padding or encoding of an RSA mechanism.
#[derive(Clone, Debug)]
pub enum Scheme {
    Pkcs,
    X509,
    Oaep {
        hash: DigestAlg,
        mgf: DigestAlg,
        label: Vec<u8>,
    },
    Pss {
        hash: DigestAlg,
        mgf: DigestAlg,
        salt: usize,
    },
    PkcsHash(DigestAlg),
}

/// The key, ready for its engine.
#[derive(Debug)]
pub enum Engine {
    RsaPrivate(Arc<RsaSigner>, Scheme),
    RsaPublic(RsaPublic, Scheme),
    EcPrivate(Arc<EcdsaSigner>),
    EcPublic(Arc<EcdsaVerifier>),
    EdPrivate(Zeroizing<Vec<u8>>),
    EdPublic(Vec<u8>),
    Sm2Private(Zeroizing<Vec<u8>>),
    Sm2Public(Vec<u8>),
    Wrap(WrapAlg, Zeroizing<Vec<u8>>),
}

/// How the input is taken: kept whole, or hashed as it comes.
#[derive(Debug)]
enum Feed {
    Buffer(Zeroizing<Vec<u8>>),
    Hash(DigestAlg, Option<Box<Hasher>>),
}

#[derive(Debug)]
pub struct AsymOp {
    kind: OpKind,
    engine: Engine,
    feed: Feed,
}

/// The most input a buffering operation takes (more could not have come
/// in one frame anyway).
const MAX_BUFFER: usize = MAX_FRAME_BODY as usize;

fn finished() -> Ckr {
    Ckr(CKR_OPERATION_NOT_INITIALIZED)
}

impl AsymOp {
    fn modulus_len(&self) -> Option<usize> {
        match &self.engine {
            Engine::RsaPrivate(k, _) => Some(k.size()),
            Engine::RsaPublic(k, _) => Some(k.size()),
            _ => None,
        }
    }

    fn buffered(&self) -> usize {
        match &self.feed {
            Feed::Buffer(b) => b.len(),
            Feed::Hash(..) => 0,
        }
    }

    fn signature_len(&self) -> usize {
        match &self.engine {
            Engine::EcPrivate(k) => k.curve().signature_len(),
            Engine::EcPublic(k) => k.curve().signature_len(),
            Engine::EdPrivate(_) | Engine::EdPublic(_) => 64,
            Engine::Sm2Private(_) | Engine::Sm2Public(_) => sm2::SIGNATURE_LEN,
            _ => self.modulus_len().unwrap_or(0),
        }
    }

    /// Everything fed: the buffer, or the hash.
    fn message(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        match &mut self.feed {
            Feed::Buffer(b) => Ok(std::mem::take(b)),
            Feed::Hash(_, h) => Ok(Zeroizing::new(h.take().ok_or_else(finished)?.finalize())),
        }
    }

    /// The module's digest, if this is a hash-then-sign operation.
    fn check_digest<'a>(&self, digest: &'a [u8]) -> CkResult<&'a [u8]> {
        match self.feed {
            Feed::Hash(alg, _) if digest.len() == alg.output_len() => Ok(digest),
            Feed::Hash(..) => Err(Ckr(CKR_DATA_LEN_RANGE)),
            Feed::Buffer(_) => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
    }

    fn sign(&self, m: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let out = match &self.engine {
            Engine::RsaPrivate(k, scheme) => match scheme {
                Scheme::Pkcs => k.sign_pkcs1v15_raw(m),
                Scheme::X509 => k.x509_private(m).map(|v| v.to_vec()),
                Scheme::Pss { hash, mgf, salt } => k.sign_pss(*hash, *mgf, *salt, m),
                Scheme::PkcsHash(alg) => k.sign_pkcs1v15_digest(*alg, m),
                Scheme::Oaep { .. } => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
            },
            Engine::EcPrivate(k) => k.sign(m),
            Engine::EdPrivate(seed) => ec::ed25519_sign(seed, m).map(|s| s.to_vec()),
            Engine::Sm2Private(d) => sm2::sign_digest(d, m).map(|s| s.to_vec()),
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        };
        out.map(Zeroizing::new).map_err(ck)
    }

    fn verify_message(&self, m: &[u8], sig: &[u8]) -> CkResult<()> {
        match &self.engine {
            Engine::RsaPublic(k, scheme) => match scheme {
                Scheme::Pkcs => k.verify_pkcs1v15_raw(m, sig),
                Scheme::X509 => return x509_verify(k, m, sig),
                Scheme::Pss { hash, mgf, salt } => k.verify_pss(*hash, *mgf, *salt, m, sig),
                Scheme::PkcsHash(alg) => k.verify_pkcs1v15_digest(*alg, m, sig),
                Scheme::Oaep { .. } => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
            },
            Engine::EcPublic(k) => k.verify(m, sig),
            Engine::EdPublic(point) => ec::ed25519_verify(point, m, sig),
            Engine::Sm2Public(point) => sm2::verify_digest(point, m, sig),
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
        .map_err(ck)
    }

    fn encrypt(&self, m: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let out = match &self.engine {
            Engine::RsaPublic(k, scheme) => match scheme {
                Scheme::Pkcs => k.encrypt_pkcs1v15(m),
                Scheme::X509 => k.x509_public(m),
                Scheme::Oaep { hash, mgf, label } => k.encrypt_oaep(*hash, *mgf, label, m),
                _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
            },
            Engine::Sm2Public(point) => sm2::encrypt(point, m),
            Engine::Wrap(alg, kek) => keywrap::wrap(*alg, kek, m),
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        };
        out.map(Zeroizing::new).map_err(ck)
    }

    fn decrypt(&self, c: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        match &self.engine {
            Engine::RsaPrivate(k, scheme) => match scheme {
                Scheme::Pkcs => k.decrypt_pkcs1v15(c),
                Scheme::X509 => {
                    if c.len() > k.size() {
                        return Err(Ckr(CKR_ENCRYPTED_DATA_LEN_RANGE));
                    }
                    k.x509_private(c)
                }
                Scheme::Oaep { hash, mgf, label } => k.decrypt_oaep(*hash, *mgf, label, c),
                _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
            },
            Engine::Sm2Private(d) => sm2::decrypt(d, c),
            Engine::Wrap(alg, kek) => keywrap::unwrap(*alg, kek, c),
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
        .map_err(ck)
    }
}

/// `CKM_RSA_X_509` verification: s^e mod n must equal the data, left
/// padded with zeros to the modulus length.
fn x509_verify(k: &RsaPublic, m: &[u8], sig: &[u8]) -> CkResult<()> {
    let size = k.size();
    if sig.len() != size {
        return Err(Ckr(CKR_SIGNATURE_LEN_RANGE));
    }
    if m.len() > size {
        return Err(Ckr(CKR_DATA_LEN_RANGE));
    }
    let recovered = k.x509_public(sig).map_err(|_| Ckr(CKR_SIGNATURE_INVALID))?;
    let mut expected = vec![0u8; size - m.len()];
    expected.extend_from_slice(m);
    if recovered == expected {
        Ok(())
    } else {
        Err(Ckr(CKR_SIGNATURE_INVALID))
    }
}

impl Operation for AsymOp {
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen> {
        let total = match step {
            Step::Update => return Ok(OutLen::Exact(0)),
            Step::Single => self.buffered().saturating_add(input_len),
            Step::Final => self.buffered(),
            Step::SignDigest => input_len,
        };
        let k = self.modulus_len();
        Ok(match (self.kind, &self.engine) {
            (OpKind::Sign | OpKind::SignRecover, _) => OutLen::Exact(self.signature_len()),
            (OpKind::Encrypt, Engine::Sm2Public(_)) => {
                OutLen::Exact(total.saturating_add(sm2::CIPHERTEXT_OVERHEAD))
            }
            (OpKind::Encrypt, Engine::Wrap(alg, _)) => {
                OutLen::Exact(keywrap::wrapped_len(*alg, total))
            }
            (OpKind::Decrypt, Engine::Sm2Private(_)) => {
                OutLen::Exact(total.saturating_sub(sm2::CIPHERTEXT_OVERHEAD))
            }
            (OpKind::Decrypt, Engine::Wrap(..)) => OutLen::AtMost(total.saturating_sub(8)),
            (OpKind::Decrypt, Engine::RsaPrivate(_, Scheme::X509)) | (OpKind::Encrypt, _) => {
                OutLen::Exact(k.unwrap_or(0))
            }
            _ => OutLen::AtMost(k.unwrap_or(0)),
        })
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        match &mut self.feed {
            Feed::Buffer(b) => {
                if b.len().saturating_add(input.len()) > MAX_BUFFER {
                    return Err(Ckr(CKR_DATA_LEN_RANGE));
                }
                b.extend_from_slice(input);
            }
            Feed::Hash(_, h) => h.as_mut().ok_or_else(finished)?.update(input),
        }
        Ok(Zeroizing::new(Vec::new()))
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        let m = self.message()?;
        match self.kind {
            OpKind::Sign | OpKind::SignRecover => self.sign(&m),
            OpKind::Encrypt => self.encrypt(&m),
            OpKind::Decrypt => self.decrypt(&m),
            OpKind::VerifyRecover => match &self.engine {
                Engine::RsaPublic(k, Scheme::Pkcs) => k
                    .verify_recover_pkcs1v15(&m)
                    .map(Zeroizing::new)
                    .map_err(ck),
                _ => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
            },
            _ => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
    }

    fn sign_digest(&mut self, digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let digest = self.check_digest(digest)?;
        self.sign(digest)
    }

    fn verify_final(&mut self, signature: &[u8]) -> CkResult<()> {
        let m = self.message()?;
        self.verify_message(&m, signature)
    }

    fn verify_digest(&mut self, digest: &[u8], signature: &[u8]) -> CkResult<()> {
        let digest = self.check_digest(digest)?;
        self.verify_message(digest, signature)
    }
}

/// The content of a `CKA_EC_POINT` (a DER OCTET STRING, or the raw point
/// as some applications store it) or of ECDH public data, `len` bytes.
pub fn decode_point(value: &[u8], len: usize) -> Option<Vec<u8>> {
    if value.len() == len && (len == 32 || value.first() == Some(&0x04)) {
        return Some(value.to_vec());
    }
    let (&tag, rest) = value.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (n, content) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        0x82 => {
            let (hi, rest) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*hi)), rest)
        }
        _ => return None,
    };
    (n == len && content.len() == len).then(|| content.to_vec())
}

/// DER OCTET STRING of `content` (`CKA_EC_POINT`).
pub fn der_octet_string(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// `d` left-padded with zeros to `len` bytes (imported keys may have lost
/// their leading zeros).
pub fn scalar(d: &[u8], len: usize) -> CkResult<Zeroizing<Vec<u8>>> {
    if d.len() > len {
        return Err(Ckr(CKR_KEY_TYPE_INCONSISTENT));
    }
    let mut out = Zeroizing::new(vec![0u8; len - d.len()]);
    out.extend_from_slice(d);
    Ok(out)
}

/// The curve of an EC key.
pub fn curve_of(key: &Key) -> CkResult<Curve> {
    Curve::from_ec_params(key.bytes(cka::CKA_EC_PARAMS)?).ok_or(Ckr(CKR_CURVE_NOT_SUPPORTED))
}

/// An RSA private key from its attributes, within the table's sizes.
pub fn rsa_private(key: &Key) -> CkResult<RsaPrivate> {
    let p = key.opt_bytes(cka::CKA_PRIME_1);
    let q = key.opt_bytes(cka::CKA_PRIME_2);
    let k = RsaPrivate::from_components(
        key.bytes(cka::CKA_MODULUS)?,
        key.bytes(cka::CKA_PUBLIC_EXPONENT)?,
        key.bytes(cka::CKA_PRIVATE_EXPONENT)?,
        p.zip(q),
    )
    .map_err(ck)?;
    if !(rsa::MIN_BITS..=rsa::MAX_BITS).contains(&k.bits()) {
        return Err(Ckr(CKR_KEY_SIZE_RANGE));
    }
    Ok(k)
}

/// An RSA public key from its attributes, within the table's sizes.
pub fn rsa_public(key: &Key) -> CkResult<RsaPublic> {
    let k = RsaPublic::from_components(
        key.bytes(cka::CKA_MODULUS)?,
        key.bytes(cka::CKA_PUBLIC_EXPONENT)?,
    )
    .map_err(ck)?;
    if !(rsa::MIN_BITS..=rsa::MAX_BITS).contains(&k.bits()) {
        return Err(Ckr(CKR_KEY_SIZE_RANGE));
    }
    Ok(k)
}

/// The SM2 public point of a key of either class.
pub fn sm2_point(key: &Key) -> CkResult<Vec<u8>> {
    if key.class() == CKO_PRIVATE_KEY {
        let d = scalar(key.bytes(cka::CKA_VALUE)?, sm2::SCALAR_LEN)?;
        Ok(sm2::public_from_private(&d).map_err(ck)?.to_vec())
    } else {
        decode_point(key.bytes(cka::CKA_EC_POINT)?, sm2::POINT_LEN)
            .ok_or(Ckr(CKR_KEY_TYPE_INCONSISTENT))
    }
}

fn oaep_params(mechanism: &Mechanism) -> CkResult<Scheme> {
    match &mechanism.params {
        MechanismParams::RsaOaep {
            hash_alg,
            mgf,
            source,
            source_data,
        } => {
            let label_ok =
                *source == CKZ_DATA_SPECIFIED || (*source == 0 && source_data.is_empty());
            if !label_ok {
                return Err(Ckr(CKR_MECHANISM_PARAM_INVALID));
            }
            Ok(Scheme::Oaep {
                hash: digest_of_mechanism(hash_alg.0)?,
                mgf: digest_of_mgf(*mgf)?,
                label: source_data.clone(),
            })
        }
        _ => Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    }
}

fn pss_params(mechanism: &Mechanism, hash_of_mechanism: Option<DigestAlg>) -> CkResult<Scheme> {
    match &mechanism.params {
        MechanismParams::RsaPss {
            hash_alg,
            mgf,
            salt_len,
        } => {
            let hash = digest_of_mechanism(hash_alg.0)?;
            if hash_of_mechanism.is_some_and(|h| h != hash) {
                return Err(Ckr(CKR_MECHANISM_PARAM_INVALID));
            }
            Ok(Scheme::Pss {
                hash,
                mgf: digest_of_mgf(*mgf)?,
                salt: usize::try_from(*salt_len).map_err(|_| Ckr(CKR_MECHANISM_PARAM_INVALID))?,
            })
        }
        _ => Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    }
}

/// The RSA engine for `kind` (private key for sign/decrypt, public for the rest).
pub fn rsa_engine(kind: OpKind, key: &Key, scheme: Scheme) -> CkResult<Engine> {
    Ok(match kind {
        OpKind::Sign | OpKind::SignRecover | OpKind::Decrypt => Engine::RsaPrivate(
            key.prepared.rsa(|| rsa_private(key).map(RsaSigner::new))?,
            scheme,
        ),
        _ => Engine::RsaPublic(rsa_public(key)?, scheme),
    })
}

/// The RSA scheme of an RSA mechanism used for wrapping or encryption.
pub fn rsa_crypt_scheme(family: Family, mechanism: &Mechanism) -> CkResult<Scheme> {
    match family {
        Family::RsaPkcs => no_params(mechanism).map(|()| Scheme::Pkcs),
        Family::RsaX509 => no_params(mechanism).map(|()| Scheme::X509),
        Family::RsaOaep => oaep_params(mechanism),
        _ => Err(Ckr(CKR_MECHANISM_INVALID)),
    }
}

/// An operation and, for SM2 with SM3, the hash prefix Z.
pub type Started = (Box<dyn Operation>, Option<Vec<u8>>);

/// Starts an asymmetric operation, or the single-part cipher of
/// `C_WrapKey`/`C_UnwrapKey` (AES key wrap; the TDES modes, which are
/// [`super::symmetric`]'s); the key's type has been checked.
pub fn begin(kind: OpKind, family: Family, mechanism: &Mechanism, key: &Key) -> CkResult<Started> {
    let private = key.class() == CKO_PRIVATE_KEY;
    let buffer = || Feed::Buffer(Zeroizing::new(Vec::new()));
    let hash = |alg: DigestAlg| Feed::Hash(alg, Some(Box::new(Hasher::new(alg))));
    let mut prefix = None;
    let (engine, feed) = match family {
        Family::TdesCipher(_) => {
            return Ok((super::symmetric::begin(kind, family, mechanism, key)?, None));
        }
        Family::RsaPkcs | Family::RsaX509 | Family::RsaOaep => (
            rsa_engine(kind, key, rsa_crypt_scheme(family, mechanism)?)?,
            buffer(),
        ),
        Family::RsaPss => (
            rsa_engine(kind, key, pss_params(mechanism, None)?)?,
            buffer(),
        ),
        Family::RsaPkcsHash(alg) => {
            no_params(mechanism)?;
            (rsa_engine(kind, key, Scheme::PkcsHash(alg))?, hash(alg))
        }
        Family::RsaPssHash(alg) => (
            rsa_engine(kind, key, pss_params(mechanism, Some(alg))?)?,
            hash(alg),
        ),
        Family::Ecdsa(h) => {
            no_params(mechanism)?;
            let curve = curve_of(key)?;
            let engine = if private {
                Engine::EcPrivate(key.prepared.ecdsa(|| {
                    let d = scalar(key.bytes(cka::CKA_VALUE)?, curve.field_len())?;
                    EcdsaSigner::new(curve, d).map_err(ck)
                })?)
            } else {
                Engine::EcPublic(key.prepared.ecdsa_public(|| {
                    let point = decode_point(key.bytes(cka::CKA_EC_POINT)?, curve.point_len())
                        .ok_or(Ckr(CKR_KEY_TYPE_INCONSISTENT))?;
                    EcdsaVerifier::new(curve, point).map_err(ck)
                })?)
            };
            (engine, h.map_or_else(buffer, hash))
        }
        Family::EdDsa => {
            match &mechanism.params {
                MechanismParams::None
                | MechanismParams::Eddsa {
                    pre_hash: false,
                    context: None,
                } => {}
                _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
            }
            if !ec::is_ed25519_params(key.bytes(cka::CKA_EC_PARAMS)?) {
                return Err(Ckr(CKR_CURVE_NOT_SUPPORTED));
            }
            let engine = if private {
                Engine::EdPrivate(key.value()?)
            } else {
                Engine::EdPublic(
                    decode_point(key.bytes(cka::CKA_EC_POINT)?, 32)
                        .ok_or(Ckr(CKR_KEY_TYPE_INCONSISTENT))?,
                )
            };
            (engine, buffer())
        }
        Family::Sm2Raw | Family::Sm2Sm3 | Family::Sm2Encrypt => {
            let engine = if private {
                Engine::Sm2Private(scalar(key.bytes(cka::CKA_VALUE)?, sm2::SCALAR_LEN)?)
            } else {
                Engine::Sm2Public(sm2_point(key)?)
            };
            if family == Family::Sm2Sm3 {
                let user_id: &[u8] = match &mechanism.params {
                    MechanismParams::None => sm2::DEFAULT_USER_ID,
                    MechanismParams::Sm2 { user_id } => user_id,
                    _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
                };
                let z = sm2::z_value(user_id, &sm2_point(key)?).map_err(ck)?;
                let mut h = Hasher::new(DigestAlg::Sm3);
                h.update(&z);
                prefix = Some(z.to_vec());
                (engine, Feed::Hash(DigestAlg::Sm3, Some(Box::new(h))))
            } else {
                no_params(mechanism)?;
                (engine, buffer())
            }
        }
        Family::KeyWrap(alg) => {
            let iv = match &mechanism.params {
                MechanismParams::None => None,
                MechanismParams::Iv(iv) if iv.is_empty() => None,
                MechanismParams::Iv(iv) => Some(iv.as_slice()),
                _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
            };
            keywrap::check_iv(alg, iv).map_err(ck)?;
            (Engine::Wrap(alg, key.value()?), buffer())
        }
        _ => return Err(Ckr(CKR_MECHANISM_INVALID)),
    };
    Ok((Box::new(AsymOp { kind, engine, feed }), prefix))
}
