//! The soft driver's cryptography: the [`CryptoDriver`] half of
//! [`SoftPartition`], over the engines of `hsmlink-crypto`.
//!
//! [`route`] maps each mechanism the driver serves to its [`Family`], and
//! [`capabilities`] says which functions each family serves; the mechanism
//! table ([`crate::soft::mechanisms`]) is checked against both, so it never
//! lists what the driver lacks. The adapters live by kind of engine:
//! [`symmetric`] (digests, MACs, block ciphers, TDES), [`asymmetric`] (RSA,
//! ECDSA, EdDSA, SM2, and the single-part ciphers of `C_WrapKey`/
//! `C_UnwrapKey`: AES key wrap, TDES modes), [`keygen`] and
//! [`keymgmt`] (wrap, unwrap, derive).

pub mod asymmetric;
pub mod keygen;
pub mod keymgmt;
pub mod symmetric;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use cryptoki_sys::*;
use hsmlink_crypto::CryptoError;
use hsmlink_crypto::cipher::BlockAlg;
use hsmlink_crypto::digest::DigestAlg;
use hsmlink_crypto::keywrap::WrapAlg;
use hsmlink_crypto::prepared::{EcdsaSigner, EcdsaVerifier, RsaSigner};
use hsmlink_crypto::tdes::MacKind as TdesMacKind;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::*;
use hsmlink_protocol::{Attribute, AttributeValue, Mechanism, MechanismParams, ObjectHandle};
use zeroize::Zeroizing;

use crate::attributes::{boolean, bytes, ulong};
use crate::driver::{Begun, CryptoDriver, ObjectContext, OpKind, Operation};
use crate::error::{CkResult, Ckr};
use crate::key_state;
use crate::soft::partition::SoftPartition;

/// The `CK_RV` of an engine failure, one for one.
pub fn ck(e: CryptoError) -> Ckr {
    Ckr(match e {
        CryptoError::DataLenRange => CKR_DATA_LEN_RANGE,
        CryptoError::DataInvalid => CKR_DATA_INVALID,
        CryptoError::EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID,
        CryptoError::EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE,
        CryptoError::SignatureInvalid => CKR_SIGNATURE_INVALID,
        CryptoError::SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
        CryptoError::KeySizeRange => CKR_KEY_SIZE_RANGE,
        CryptoError::MechanismParamInvalid => CKR_MECHANISM_PARAM_INVALID,
        CryptoError::KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
        CryptoError::General => CKR_FUNCTION_FAILED,
    })
}

/// Block modes of AES and SM4 (and of TDES: ECB, CBC, CBC-PAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeKind {
    Ecb,
    Cbc,
    CbcPad,
    Ctr,
    Gcm,
    Ccm,
}

/// What a mechanism is, for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Digest(DigestAlg),
    /// HMAC; `true` for the `_GENERAL` form (output length parameter).
    Hmac(DigestAlg, bool),
    Cmac(BlockAlg, bool),
    Cipher(BlockAlg, ModeKind),
    /// `CKM_DES3_ECB`, `_CBC`, `_CBC_PAD` (DES2 and DES3 keys); they also
    /// wrap and unwrap secret keys.
    TdesCipher(ModeKind),
    /// `CKM_DES3_CMAC` and `CKM_DES3_MAC` (ISO 9797-1 CBC-MAC); `true`
    /// for the `_GENERAL` form.
    TdesMac(TdesMacKind, bool),
    KeyWrap(WrapAlg),
    RsaPkcs,
    RsaX509,
    RsaOaep,
    RsaPss,
    RsaPkcsHash(DigestAlg),
    RsaPssHash(DigestAlg),
    Ecdsa(Option<DigestAlg>),
    EdDsa,
    Sm2Raw,
    Sm2Sm3,
    Sm2Encrypt,
    /// GM/T 0003.3 key exchange, through `C_DeriveKey`.
    Sm2KeyExchange,
    EcdhDerive,
    AesEcbEncryptData,
    AesCbcEncryptData,
    /// X9.143 / TR-31 key block (versions `B`, `C`, `D`),
    /// `C_WrapKey`/`C_UnwrapKey`.
    KeyBlock,
    /// TR-34 key token import, `C_UnwrapKey` under an RSA key-receiving key.
    Tr34,
    AesKeyGen,
    GenericKeyGen,
    Sm4KeyGen,
    Des2KeyGen,
    Des3KeyGen,
    RsaPairGen,
    EcPairGen,
    EdPairGen,
    Sm2PairGen,
}

/// The family of a mechanism the soft driver serves.
pub fn route(mechanism: u64) -> Option<Family> {
    use DigestAlg::*;
    use Family::*;
    use ModeKind::*;
    Some(match mechanism {
        CKM_SHA_1 => Digest(Sha1),
        CKM_SHA224 => Digest(Sha224),
        CKM_SHA256 => Digest(Sha256),
        CKM_SHA384 => Digest(Sha384),
        CKM_SHA512 => Digest(Sha512),
        CKM_HSMLINK_SM3 => Digest(Sm3),
        CKM_SHA_1_HMAC => Hmac(Sha1, false),
        CKM_SHA224_HMAC => Hmac(Sha224, false),
        CKM_SHA256_HMAC => Hmac(Sha256, false),
        CKM_SHA384_HMAC => Hmac(Sha384, false),
        CKM_SHA512_HMAC => Hmac(Sha512, false),
        CKM_HSMLINK_SM3_HMAC => Hmac(Sm3, false),
        CKM_SHA_1_HMAC_GENERAL => Hmac(Sha1, true),
        CKM_SHA224_HMAC_GENERAL => Hmac(Sha224, true),
        CKM_SHA256_HMAC_GENERAL => Hmac(Sha256, true),
        CKM_SHA384_HMAC_GENERAL => Hmac(Sha384, true),
        CKM_SHA512_HMAC_GENERAL => Hmac(Sha512, true),
        CKM_AES_CMAC => Cmac(BlockAlg::Aes, false),
        CKM_AES_CMAC_GENERAL => Cmac(BlockAlg::Aes, true),
        CKM_HSMLINK_SM4_CMAC => Cmac(BlockAlg::Sm4, false),
        CKM_AES_ECB => Cipher(BlockAlg::Aes, Ecb),
        CKM_AES_CBC => Cipher(BlockAlg::Aes, Cbc),
        CKM_AES_CBC_PAD => Cipher(BlockAlg::Aes, CbcPad),
        CKM_AES_CTR => Cipher(BlockAlg::Aes, Ctr),
        CKM_AES_GCM => Cipher(BlockAlg::Aes, Gcm),
        CKM_AES_CCM => Cipher(BlockAlg::Aes, Ccm),
        CKM_HSMLINK_SM4_ECB => Cipher(BlockAlg::Sm4, Ecb),
        CKM_HSMLINK_SM4_CBC => Cipher(BlockAlg::Sm4, Cbc),
        CKM_HSMLINK_SM4_CBC_PAD => Cipher(BlockAlg::Sm4, CbcPad),
        CKM_HSMLINK_SM4_CTR => Cipher(BlockAlg::Sm4, Ctr),
        CKM_HSMLINK_SM4_GCM => Cipher(BlockAlg::Sm4, Gcm),
        CKM_DES3_ECB => TdesCipher(Ecb),
        CKM_DES3_CBC => TdesCipher(Cbc),
        CKM_DES3_CBC_PAD => TdesCipher(CbcPad),
        CKM_DES3_CMAC => TdesMac(TdesMacKind::Cmac, false),
        CKM_DES3_CMAC_GENERAL => TdesMac(TdesMacKind::Cmac, true),
        CKM_DES3_MAC => TdesMac(TdesMacKind::CbcMac, false),
        CKM_DES3_MAC_GENERAL => TdesMac(TdesMacKind::CbcMac, true),
        CKM_AES_KEY_WRAP => KeyWrap(WrapAlg::Kw),
        CKM_AES_KEY_WRAP_KWP => KeyWrap(WrapAlg::Kwp),
        CKM_RSA_PKCS => RsaPkcs,
        CKM_RSA_X_509 => RsaX509,
        CKM_RSA_PKCS_OAEP => RsaOaep,
        CKM_RSA_PKCS_PSS => RsaPss,
        CKM_SHA1_RSA_PKCS => RsaPkcsHash(Sha1),
        CKM_SHA224_RSA_PKCS => RsaPkcsHash(Sha224),
        CKM_SHA256_RSA_PKCS => RsaPkcsHash(Sha256),
        CKM_SHA384_RSA_PKCS => RsaPkcsHash(Sha384),
        CKM_SHA512_RSA_PKCS => RsaPkcsHash(Sha512),
        CKM_SHA1_RSA_PKCS_PSS => RsaPssHash(Sha1),
        CKM_SHA224_RSA_PKCS_PSS => RsaPssHash(Sha224),
        CKM_SHA256_RSA_PKCS_PSS => RsaPssHash(Sha256),
        CKM_SHA384_RSA_PKCS_PSS => RsaPssHash(Sha384),
        CKM_SHA512_RSA_PKCS_PSS => RsaPssHash(Sha512),
        CKM_ECDSA => Ecdsa(None),
        CKM_ECDSA_SHA1 => Ecdsa(Some(Sha1)),
        CKM_ECDSA_SHA224 => Ecdsa(Some(Sha224)),
        CKM_ECDSA_SHA256 => Ecdsa(Some(Sha256)),
        CKM_ECDSA_SHA384 => Ecdsa(Some(Sha384)),
        CKM_ECDSA_SHA512 => Ecdsa(Some(Sha512)),
        CKM_EDDSA => EdDsa,
        CKM_HSMLINK_SM2 => Sm2Raw,
        CKM_HSMLINK_SM2_SM3 => Sm2Sm3,
        CKM_HSMLINK_SM2_ENCRYPT => Sm2Encrypt,
        CKM_HSMLINK_SM2_KEY_EXCHANGE => Sm2KeyExchange,
        CKM_ECDH1_DERIVE => EcdhDerive,
        CKM_AES_ECB_ENCRYPT_DATA => AesEcbEncryptData,
        CKM_AES_CBC_ENCRYPT_DATA => AesCbcEncryptData,
        CKM_HSMLINK_TR31 => KeyBlock,
        CKM_HSMLINK_TR34 => Tr34,
        CKM_AES_KEY_GEN => AesKeyGen,
        CKM_GENERIC_SECRET_KEY_GEN => GenericKeyGen,
        CKM_HSMLINK_SM4_KEY_GEN => Sm4KeyGen,
        CKM_DES2_KEY_GEN => Des2KeyGen,
        CKM_DES3_KEY_GEN => Des3KeyGen,
        CKM_RSA_PKCS_KEY_PAIR_GEN => RsaPairGen,
        CKM_EC_KEY_PAIR_GEN => EcPairGen,
        CKM_EC_EDWARDS_KEY_PAIR_GEN => EdPairGen,
        CKM_HSMLINK_SM2_KEY_PAIR_GEN => Sm2PairGen,
        _ => return None,
    })
}

/// The functions (`CKF_*` of `CK_MECHANISM_INFO`) a family serves here.
pub fn capabilities(family: Family) -> CK_FLAGS {
    use Family::*;
    const CRYPT: CK_FLAGS = CKF_ENCRYPT | CKF_DECRYPT;
    const SIGN: CK_FLAGS = CKF_SIGN | CKF_VERIFY;
    match family {
        Digest(_) => CKF_DIGEST,
        Hmac(..) | Cmac(..) | TdesMac(..) => SIGN,
        Cipher(..) => CRYPT,
        KeyWrap(_) | TdesCipher(_) => CRYPT | CKF_WRAP | CKF_UNWRAP,
        RsaPkcs => CRYPT | SIGN | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER | CKF_WRAP | CKF_UNWRAP,
        RsaX509 => CRYPT | SIGN,
        RsaOaep => CRYPT | CKF_WRAP | CKF_UNWRAP,
        RsaPss | RsaPkcsHash(_) | RsaPssHash(_) | Ecdsa(_) | EdDsa | Sm2Raw | Sm2Sm3 => SIGN,
        Sm2Encrypt => CRYPT,
        EcdhDerive | Sm2KeyExchange | AesEcbEncryptData | AesCbcEncryptData => CKF_DERIVE,
        KeyBlock => CKF_WRAP | CKF_UNWRAP,
        Tr34 => CKF_UNWRAP,
        AesKeyGen | GenericKeyGen | Sm4KeyGen | Des2KeyGen | Des3KeyGen => CKF_GENERATE,
        RsaPairGen | EcPairGen | EdPairGen | Sm2PairGen => CKF_GENERATE_KEY_PAIR,
    }
}

/// The digest named by a `CKM_SHA*` mechanism in a parameter (OAEP, PSS).
pub fn digest_of_mechanism(m: u64) -> CkResult<DigestAlg> {
    match route(m) {
        Some(Family::Digest(d)) if d != DigestAlg::Sm3 => Ok(d),
        _ => Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    }
}

/// The digest of an MGF1 (`CKG_MGF1_SHA*`).
pub fn digest_of_mgf(mgf: u64) -> CkResult<DigestAlg> {
    Ok(match mgf {
        CKG_MGF1_SHA1 => DigestAlg::Sha1,
        CKG_MGF1_SHA224 => DigestAlg::Sha224,
        CKG_MGF1_SHA256 => DigestAlg::Sha256,
        CKG_MGF1_SHA384 => DigestAlg::Sha384,
        CKG_MGF1_SHA512 => DigestAlg::Sha512,
        _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    })
}

/// `CKR_MECHANISM_PARAM_INVALID` unless the mechanism has no parameter.
pub fn no_params(mechanism: &Mechanism) -> CkResult<()> {
    match mechanism.params {
        MechanismParams::None => Ok(()),
        _ => Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    }
}

/// A key's attributes, as a cryptographic call reads them, and the engines
/// already built from them.
#[derive(Debug)]
pub struct Key {
    pub attrs: Arc<BTreeMap<u64, AttributeValue>>,
    pub prepared: Arc<Prepared>,
}

/// Signing and verification engines built from a key object's attributes on first use and
/// kept with the object (`hsmlink_crypto::prepared`): parsing and checking
/// an RSA key costs more than a signature. An object whose attributes
/// change is a new object with an empty `Prepared`, so nothing stale is
/// kept; dropping the object drops (and wipes) the engines.
#[derive(Debug, Default)]
pub struct Prepared {
    rsa: OnceLock<Arc<RsaSigner>>,
    ecdsa: OnceLock<Arc<EcdsaSigner>>,
    ecdsa_public: OnceLock<Arc<EcdsaVerifier>>,
}

impl Prepared {
    /// The kept engine, or `build`'s, which is then kept. Two first uses at
    /// once may both build; one is kept.
    fn get_or_build<T>(
        cell: &OnceLock<Arc<T>>,
        build: impl FnOnce() -> CkResult<T>,
    ) -> CkResult<Arc<T>> {
        if let Some(kept) = cell.get() {
            return Ok(kept.clone());
        }
        let built = Arc::new(build()?);
        Ok(cell.get_or_init(|| built).clone())
    }

    pub fn rsa(&self, build: impl FnOnce() -> CkResult<RsaSigner>) -> CkResult<Arc<RsaSigner>> {
        Self::get_or_build(&self.rsa, build)
    }

    pub fn ecdsa(
        &self,
        build: impl FnOnce() -> CkResult<EcdsaSigner>,
    ) -> CkResult<Arc<EcdsaSigner>> {
        Self::get_or_build(&self.ecdsa, build)
    }

    pub fn ecdsa_public(
        &self,
        build: impl FnOnce() -> CkResult<EcdsaVerifier>,
    ) -> CkResult<Arc<EcdsaVerifier>> {
        Self::get_or_build(&self.ecdsa_public, build)
    }
}

impl Key {
    pub fn class(&self) -> u64 {
        ulong(self.attrs.get(&cka::CKA_CLASS)).unwrap_or(u64::MAX)
    }

    pub fn key_type(&self) -> u64 {
        ulong(self.attrs.get(&cka::CKA_KEY_TYPE)).unwrap_or(u64::MAX)
    }

    pub fn flag(&self, attr: u64) -> bool {
        boolean(self.attrs.get(&attr)) == Some(true)
    }

    /// A byte attribute the key must have (`CKR_KEY_TYPE_INCONSISTENT`
    /// when it lacks it: the key does not fit the mechanism).
    pub fn bytes(&self, attr: u64) -> CkResult<&[u8]> {
        bytes(self.attrs.get(&attr)).ok_or(Ckr(CKR_KEY_TYPE_INCONSISTENT))
    }

    pub fn opt_bytes(&self, attr: u64) -> Option<&[u8]> {
        bytes(self.attrs.get(&attr))
    }

    /// `CKA_VALUE`, copied into a wiped buffer.
    pub fn value(&self) -> CkResult<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.bytes(cka::CKA_VALUE)?.to_vec()))
    }

    /// The key's state (`CKA_HSMLINK_KEY_STATE`, NIST SP 800-57).
    pub fn state(&self) -> key_state::State {
        crate::attributes::key_life(&self.attrs)
    }

    /// `CKR_KEY_FUNCTION_NOT_PERMITTED` unless the key's state allows the
    /// use, the usage attribute is true and `CKA_ALLOWED_MECHANISMS`, when
    /// present, lists `mechanism`. A key imported from a key block is also
    /// held to the block's header (whatever its usage attributes were
    /// changed to since). Every use of a key by the soft HSM passes here
    /// (operations, wrap, unwrap, derive, key blocks, `C_DigestKey`).
    pub fn permits(&self, usage: u64, mechanism: u64) -> CkResult<()> {
        if !key_state::permits_usage(self.state(), usage) {
            return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        if usage == 0 {
            // A use no usage attribute names (C_DigestKey): the state only.
            return Ok(());
        }
        if !self.flag(usage) {
            return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        if let Some(header) = self.opt_bytes(CKA_HSMLINK_KEYBLOCK_HEADER)
            && !keymgmt::keyblock_permits(header, usage, mechanism)
        {
            return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        if let Some(AttributeValue::Mechanisms(list)) = self.attrs.get(&cka::CKA_ALLOWED_MECHANISMS)
            && !list.iter().any(|m| m.0 == mechanism)
        {
            return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        Ok(())
    }

    /// `CKR_KEY_TYPE_INCONSISTENT` unless the key is of `class` and one of `types`.
    pub fn require(&self, class: u64, types: &[u64]) -> CkResult<()> {
        if self.class() == class && types.contains(&self.key_type()) {
            Ok(())
        } else {
            Err(Ckr(CKR_KEY_TYPE_INCONSISTENT))
        }
    }
}

/// The key class an asymmetric operation kind uses.
pub fn asymmetric_class(kind: OpKind) -> u64 {
    match kind {
        OpKind::Decrypt | OpKind::Sign | OpKind::SignRecover => CKO_PRIVATE_KEY,
        _ => CKO_PUBLIC_KEY,
    }
}

/// The HMAC key type of a digest, besides `CKK_GENERIC_SECRET`.
fn hmac_key_type(d: DigestAlg) -> u64 {
    match d {
        DigestAlg::Sha1 => CKK_SHA_1_HMAC,
        DigestAlg::Sha224 => CKK_SHA224_HMAC,
        DigestAlg::Sha256 => CKK_SHA256_HMAC,
        DigestAlg::Sha384 => CKK_SHA384_HMAC,
        DigestAlg::Sha512 => CKK_SHA512_HMAC,
        DigestAlg::Sm3 => CKK_GENERIC_SECRET,
    }
}

/// `CKR_KEY_TYPE_INCONSISTENT` unless `key` (class and type) fits `family`
/// used for `kind` (for wrapping: `Encrypt`; unwrapping: `Decrypt`).
pub fn check_key_type(kind: OpKind, family: Family, key: &Key) -> CkResult<()> {
    check_class_and_type(kind, family, key.class(), key.key_type())
}

/// [`check_key_type`] on a key's class and type (the `pkcs11` driver
/// checks a device key so before the device sees it: one answer for a
/// wrong key on every driver).
pub fn check_class_and_type(
    kind: OpKind,
    family: Family,
    class: u64,
    key_type: u64,
) -> CkResult<()> {
    use Family::*;
    let require = |want_class: u64, types: &[u64]| {
        if class == want_class && types.contains(&key_type) {
            Ok(())
        } else {
            Err(Ckr(CKR_KEY_TYPE_INCONSISTENT))
        }
    };
    match family {
        Hmac(d, _) => require(CKO_SECRET_KEY, &[CKK_GENERIC_SECRET, hmac_key_type(d)]),
        Cmac(BlockAlg::Aes, _)
        | Cipher(BlockAlg::Aes, _)
        | KeyWrap(_)
        | AesEcbEncryptData
        | AesCbcEncryptData => require(CKO_SECRET_KEY, &[CKK_AES]),
        // The key block version must also fit the KBPK (see keymgmt).
        KeyBlock => require(CKO_SECRET_KEY, &[CKK_AES, CKK_DES2, CKK_DES3]),
        Tr34 => require(CKO_PRIVATE_KEY, &[CKK_RSA]),
        Cmac(BlockAlg::Sm4, _) | Cipher(BlockAlg::Sm4, _) => {
            require(CKO_SECRET_KEY, &[CKK_HSMLINK_SM4])
        }
        TdesCipher(_) | TdesMac(..) => require(CKO_SECRET_KEY, &[CKK_DES2, CKK_DES3]),
        RsaPkcs | RsaX509 | RsaOaep | RsaPss | RsaPkcsHash(_) | RsaPssHash(_) => {
            require(asymmetric_class(kind), &[CKK_RSA])
        }
        Ecdsa(_) => require(asymmetric_class(kind), &[CKK_EC]),
        EdDsa => require(asymmetric_class(kind), &[CKK_EC_EDWARDS]),
        Sm2Raw | Sm2Sm3 | Sm2Encrypt => require(asymmetric_class(kind), &[CKK_HSMLINK_SM2]),
        EcdhDerive => require(CKO_PRIVATE_KEY, &[CKK_EC]),
        Sm2KeyExchange => require(CKO_PRIVATE_KEY, &[CKK_HSMLINK_SM2]),
        _ => Err(Ckr(CKR_KEY_TYPE_INCONSISTENT)),
    }
}

impl CryptoDriver for SoftPartition {
    fn begin_operation(
        &self,
        ctx: &ObjectContext,
        kind: OpKind,
        mechanism: &Mechanism,
        key: Option<ObjectHandle>,
    ) -> CkResult<Begun> {
        let family = route(mechanism.mechanism.0).ok_or(Ckr(CKR_MECHANISM_INVALID))?;
        if capabilities(family) & kind.mechanism_flag() == 0 {
            return Err(Ckr(CKR_MECHANISM_INVALID));
        }
        self.self_tests(mechanism.mechanism.0)?;
        if let Family::Digest(alg) = family {
            no_params(mechanism)?;
            return Ok(Begun {
                operation: self.health().guard(Box::new(symmetric::DigestOp::new(alg))),
                hash_prefix: None,
                needs_context_login: false,
            });
        }
        let key = self.crypto_key(ctx, key.ok_or(Ckr(CKR_KEY_HANDLE_INVALID))?)?;
        check_key_type(kind, family, &key)?;
        key.permits(kind.usage_attribute(), mechanism.mechanism.0)?;
        let (operation, hash_prefix): (Box<dyn Operation>, Option<Vec<u8>>) = match family {
            Family::Hmac(..)
            | Family::Cmac(..)
            | Family::Cipher(..)
            | Family::TdesCipher(_)
            | Family::TdesMac(..) => (symmetric::begin(kind, family, mechanism, &key)?, None),
            _ => asymmetric::begin(kind, family, mechanism, &key)?,
        };
        let needs_context_login = key.class() == CKO_PRIVATE_KEY
            && matches!(kind, OpKind::Sign | OpKind::SignRecover | OpKind::Decrypt)
            && key.flag(cka::CKA_ALWAYS_AUTHENTICATE);
        Ok(Begun {
            operation: self.health().guard(operation),
            hash_prefix,
            needs_context_login,
        })
    }

    fn digest_key(
        &self,
        ctx: &ObjectContext,
        operation: &mut dyn Operation,
        handle: ObjectHandle,
    ) -> CkResult<()> {
        self.health().check()?;
        let key = self.crypto_key(ctx, handle)?;
        if key.class() != CKO_SECRET_KEY {
            return Err(Ckr(CKR_KEY_INDIGESTIBLE));
        }
        key.permits(0, 0)?;
        operation.update(&key.value()?)?;
        Ok(())
    }

    fn generate_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        template: &[Attribute],
    ) -> CkResult<()> {
        self.self_tests(mechanism.mechanism.0)?;
        keygen::generate_key(self, ctx, handle, mechanism, template)
    }

    fn generate_key_pair(
        &self,
        ctx: &ObjectContext,
        handles: (ObjectHandle, ObjectHandle),
        mechanism: &Mechanism,
        public_template: &[Attribute],
        private_template: &[Attribute],
    ) -> CkResult<()> {
        self.self_tests(mechanism.mechanism.0)?;
        keygen::generate_key_pair(
            self,
            ctx,
            handles,
            mechanism,
            public_template,
            private_template,
        )
    }

    fn wrap_key(
        &self,
        ctx: &ObjectContext,
        mechanism: &Mechanism,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
    ) -> CkResult<Zeroizing<Vec<u8>>> {
        self.self_tests(mechanism.mechanism.0)?;
        keymgmt::wrap_key(self, ctx, mechanism, wrapping_key, key)
    }

    fn unwrap_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        unwrapping_key: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> CkResult<()> {
        self.self_tests(mechanism.mechanism.0)?;
        keymgmt::unwrap_key(
            self,
            ctx,
            handle,
            mechanism,
            unwrapping_key,
            wrapped,
            template,
        )
    }

    fn derive_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        base_key: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        self.self_tests(mechanism.mechanism.0)?;
        keymgmt::derive_key(self, ctx, handle, mechanism, base_key, template)
    }

    fn random(&self, len: usize) -> CkResult<Zeroizing<Vec<u8>>> {
        self.self_tests_of(&[hsmlink_crypto::selftest::SelfTest::Rng])?;
        hsmlink_crypto::rng::random_vec(len)
            .map(Zeroizing::new)
            .map_err(ck)
    }
}

/// Crate-internal access for the adapters.
pub(crate) fn key_of(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
) -> CkResult<Key> {
    partition.crypto_key(ctx, handle)
}
