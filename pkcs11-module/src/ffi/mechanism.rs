//! `CK_MECHANISM` to [`Mechanism`]: the one place that knows the C layout of
//! every mechanism parameter we forward.
//!
//! The mechanism type picks the parameter structure; `ulParameterLen` must be
//! exactly that structure's size (`CKR_MECHANISM_PARAM_INVALID` otherwise).
//! Structures are read unaligned, and every buffer they point to (IV, AAD,
//! nonce, OAEP label, ECDH shared and public data, EdDSA context, SM2 user
//! id, key-derivation data) is copied, within a length limit, into the owned
//! [`MechanismParams`]; a NULL pointer with a nonzero length is
//! `CKR_MECHANISM_PARAM_INVALID`.
//!
//! Mechanisms without a parameter take `ulParameterLen` 0 (the pointer is
//! then not looked at: some applications pass a dangling one). A mechanism
//! this module does not know is forwarded with no parameter when it has
//! none, and refused with `CKR_MECHANISM_INVALID` when it has one: we cannot
//! forward what we cannot read.

use std::mem::size_of;

use cryptoki_sys::*;
use hsmlink_protocol::vendor::{
    CKM_HSMLINK_SM2, CKM_HSMLINK_SM2_ENCRYPT, CKM_HSMLINK_SM2_KEY_EXCHANGE,
    CKM_HSMLINK_SM2_KEY_PAIR_GEN, CKM_HSMLINK_SM2_SM3, CKM_HSMLINK_SM3, CKM_HSMLINK_SM3_HMAC,
    CKM_HSMLINK_SM4_CBC, CKM_HSMLINK_SM4_CBC_PAD, CKM_HSMLINK_SM4_CMAC, CKM_HSMLINK_SM4_CTR,
    CKM_HSMLINK_SM4_ECB, CKM_HSMLINK_SM4_GCM, CKM_HSMLINK_SM4_KEY_GEN, CKM_HSMLINK_TR31,
    CKM_HSMLINK_TR34,
};
use hsmlink_protocol::{MAX_FRAME_BODY, Mechanism, MechanismParams, MechanismType, ObjectHandle};

use super::wire;
use crate::error::Error;
use crate::profile::SmProfile;

/// `CK_HSMLINK_SM2_PARAMS` of `include/hsmlink.h`: the SM2 signer's id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CK_HSMLINK_SM2_PARAMS {
    pub pUserID: *mut CK_BYTE,
    pub ulUserIDLen: CK_ULONG,
}

/// `CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS` of `include/hsmlink.h`: the
/// parameter of `CKM_HSMLINK_SM2_KEY_EXCHANGE` (`C_DeriveKey` with the
/// caller's static SM2 private key as the base key).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS {
    pub isInitiator: CK_BBOOL,
    pub hEphemeralKey: CK_OBJECT_HANDLE,
    pub pPeerPublicKey: *mut CK_BYTE,
    pub ulPeerPublicKeyLen: CK_ULONG,
    pub pPeerEphemeralKey: *mut CK_BYTE,
    pub ulPeerEphemeralKeyLen: CK_ULONG,
    pub pUserID: *mut CK_BYTE,
    pub ulUserIDLen: CK_ULONG,
    pub pPeerUserID: *mut CK_BYTE,
    pub ulPeerUserIDLen: CK_ULONG,
}

/// GM/T 0009's default distinguishing identifier, sent when the caller
/// gives no `CK_HSMLINK_SM2_PARAMS`.
pub const SM2_DEFAULT_USER_ID: &[u8] = b"1234567812345678";

/// Lengths of the buffers a parameter points to. Data-like buffers (AAD, an
/// OAEP label, ECDH shared data, key-derivation data) may be as long as a
/// frame; IVs and ids are small by nature.
// Lossless: usize is at least 32 bits wide on every target we build for.
const MAX_DATA: usize = MAX_FRAME_BODY as usize;
/// GCM allows long IVs; nobody uses more than a block or two.
const MAX_IV: usize = 1024;
/// An EC point, bare or DER-wrapped (P-521 uncompressed is 133 bytes).
const MAX_PUBLIC_DATA: usize = 8192;
/// RFC 8032: a context is at most 255 bytes.
const MAX_EDDSA_CONTEXT: usize = 255;
/// GM/T 0003.2: ENTL is a 16-bit count of bits.
const MAX_SM2_USER_ID: usize = 8191;
/// Longest TR-34 two-pass nonce accepted (TR-34 uses 16 bytes or more).
const MAX_TR34_NONCE: usize = 64;

/// The structure a mechanism's `pParameter` points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No parameter.
    None,
    /// A 16-byte IV.
    Iv16,
    /// An 8-byte IV (TDES).
    Iv8,
    /// `CKM_AES_KEY_WRAP`: no parameter, or an 8-byte IV.
    WrapIv,
    /// `CKM_AES_KEY_WRAP_KWP`: no parameter, or a 4-byte IV.
    WrapKwpIv,
    AesCtr,
    Gcm,
    Ccm,
    Oaep,
    Pss,
    Ecdh1,
    /// `CK_EDDSA_PARAMS`, or no parameter (pure EdDSA).
    Eddsa,
    MacGeneral,
    KeyDerivationString,
    AesCbcEncryptData,
    /// `CK_HSMLINK_SM2_PARAMS`, or no parameter (the default id).
    Sm2,
    Sm2KeyExchange,
    /// `CKM_HSMLINK_TR34`: the two-pass nonce as a byte string, or no
    /// parameter (one pass).
    Tr34Nonce,
    /// Not a mechanism we know: forwarded only without a parameter.
    Unknown,
}

fn kind(mechanism: u64) -> Kind {
    // CK_MECHANISM_TYPE constants as wire values (lossless on every target).
    macro_rules! m {
        ($($name:ident),*) => { [$(wire($name)),*] };
    }
    let none = m!(
        CKM_AES_KEY_GEN,
        CKM_AES_ECB,
        CKM_AES_CMAC,
        CKM_AES_MAC,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        CKM_RSA_PKCS,
        CKM_RSA_X_509,
        CKM_SHA1_RSA_PKCS,
        CKM_SHA224_RSA_PKCS,
        CKM_SHA256_RSA_PKCS,
        CKM_SHA384_RSA_PKCS,
        CKM_SHA512_RSA_PKCS,
        CKM_EC_KEY_PAIR_GEN,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        CKM_ECDSA,
        CKM_ECDSA_SHA1,
        CKM_ECDSA_SHA224,
        CKM_ECDSA_SHA256,
        CKM_ECDSA_SHA384,
        CKM_ECDSA_SHA512,
        CKM_GENERIC_SECRET_KEY_GEN,
        CKM_SHA_1,
        CKM_SHA224,
        CKM_SHA256,
        CKM_SHA384,
        CKM_SHA512,
        CKM_SHA_1_HMAC,
        CKM_SHA224_HMAC,
        CKM_SHA256_HMAC,
        CKM_SHA384_HMAC,
        CKM_SHA512_HMAC,
        CKM_DES2_KEY_GEN,
        CKM_DES3_KEY_GEN,
        CKM_DES3_ECB,
        CKM_DES3_MAC,
        CKM_DES3_CMAC
    );
    let vendor_none = [
        CKM_HSMLINK_SM2_KEY_PAIR_GEN,
        CKM_HSMLINK_SM2,
        CKM_HSMLINK_SM2_ENCRYPT,
        CKM_HSMLINK_SM3,
        CKM_HSMLINK_SM3_HMAC,
        CKM_HSMLINK_SM4_KEY_GEN,
        CKM_HSMLINK_SM4_ECB,
        CKM_HSMLINK_SM4_CMAC,
        CKM_HSMLINK_TR31,
    ];
    if none.contains(&mechanism) || vendor_none.contains(&mechanism) {
        return Kind::None;
    }
    let iv16 = m!(CKM_AES_CBC, CKM_AES_CBC_PAD);
    if iv16.contains(&mechanism)
        || [CKM_HSMLINK_SM4_CBC, CKM_HSMLINK_SM4_CBC_PAD].contains(&mechanism)
    {
        return Kind::Iv16;
    }
    if m!(CKM_DES3_CBC, CKM_DES3_CBC_PAD).contains(&mechanism) {
        return Kind::Iv8;
    }
    let pss = m!(
        CKM_RSA_PKCS_PSS,
        CKM_SHA1_RSA_PKCS_PSS,
        CKM_SHA224_RSA_PKCS_PSS,
        CKM_SHA256_RSA_PKCS_PSS,
        CKM_SHA384_RSA_PKCS_PSS,
        CKM_SHA512_RSA_PKCS_PSS
    );
    if pss.contains(&mechanism) {
        return Kind::Pss;
    }
    let mac_general = m!(
        CKM_AES_CMAC_GENERAL,
        CKM_AES_MAC_GENERAL,
        CKM_DES3_MAC_GENERAL,
        CKM_DES3_CMAC_GENERAL,
        CKM_SHA_1_HMAC_GENERAL,
        CKM_SHA224_HMAC_GENERAL,
        CKM_SHA256_HMAC_GENERAL,
        CKM_SHA384_HMAC_GENERAL,
        CKM_SHA512_HMAC_GENERAL
    );
    if mac_general.contains(&mechanism) {
        return Kind::MacGeneral;
    }
    match mechanism {
        m if m == wire(CKM_AES_KEY_WRAP) => Kind::WrapIv,
        m if m == wire(CKM_AES_KEY_WRAP_KWP) => Kind::WrapKwpIv,
        m if m == wire(CKM_AES_CTR) || m == CKM_HSMLINK_SM4_CTR => Kind::AesCtr,
        m if m == wire(CKM_AES_GCM) || m == CKM_HSMLINK_SM4_GCM => Kind::Gcm,
        m if m == wire(CKM_AES_CCM) => Kind::Ccm,
        m if m == wire(CKM_RSA_PKCS_OAEP) => Kind::Oaep,
        m if m == wire(CKM_ECDH1_DERIVE) => Kind::Ecdh1,
        m if m == wire(CKM_EDDSA) => Kind::Eddsa,
        m if m == wire(CKM_AES_ECB_ENCRYPT_DATA) => Kind::KeyDerivationString,
        m if m == wire(CKM_AES_CBC_ENCRYPT_DATA) => Kind::AesCbcEncryptData,
        CKM_HSMLINK_SM2_SM3 => Kind::Sm2,
        CKM_HSMLINK_SM2_KEY_EXCHANGE => Kind::Sm2KeyExchange,
        CKM_HSMLINK_TR34 => Kind::Tr34Nonce,
        _ => Kind::Unknown,
    }
}

/// Reads the caller's `CK_MECHANISM`. NULL is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// `ptr` is NULL or points to a `CK_MECHANISM` (not necessarily aligned)
/// whose `pParameter` is valid for reading `ulParameterLen` bytes, and whose
/// parameter structure's own pointers are NULL or valid for reading the
/// lengths given next to them. Nothing writes this memory during the call.
///
/// A number of the application's SM `profile` becomes hsmlink's first: the
/// parameter is read as that of hsmlink's mechanism.
pub unsafe fn from_raw(ptr: *const CK_MECHANISM, profile: &SmProfile) -> Result<Mechanism, Error> {
    if ptr.is_null() {
        return Err(Error::new(CKR_ARGUMENTS_BAD));
    }
    // SAFETY: non-NULL, points to a CK_MECHANISM (this function's contract);
    // the copy does not need alignment.
    let raw = unsafe { ptr.read_unaligned() };
    let mechanism = profile.mechanism_in(wire(raw.mechanism));
    let param = Param {
        ptr: raw.pParameter.cast::<u8>().cast_const(),
        len: usize::try_from(raw.ulParameterLen).map_err(|_| param_invalid())?,
    };
    // SAFETY: `param` is the caller's (pParameter, ulParameterLen), valid as
    // this function's contract says.
    let params = unsafe { parse(kind(mechanism), param) }?;
    Ok(Mechanism {
        mechanism: MechanismType(mechanism),
        params,
    })
}

/// `pParameter` and `ulParameterLen`.
#[derive(Clone, Copy)]
struct Param {
    ptr: *const u8,
    len: usize,
}

impl Param {
    fn absent(self) -> bool {
        self.len == 0
    }

    /// The parameter as a `T`: exactly `size_of::<T>()` bytes, non-NULL.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for reading `len` bytes, and `T` is a C
    /// structure of plain integers and pointers (any bit pattern is valid).
    unsafe fn read<T>(self) -> Result<T, Error> {
        if self.len != size_of::<T>() || self.ptr.is_null() {
            return Err(param_invalid());
        }
        // SAFETY: `ptr` is valid for `len == size_of::<T>()` bytes and any
        // bits are a valid `T` (this function's contract); unaligned read.
        Ok(unsafe { self.ptr.cast::<T>().read_unaligned() })
    }

    /// The parameter as a byte string of exactly one of `lens` bytes.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for reading `len` bytes.
    unsafe fn bytes(self, lens: &[usize]) -> Result<Vec<u8>, Error> {
        if !lens.contains(&self.len) {
            return Err(param_invalid());
        }
        // SAFETY: as this function's contract says.
        unsafe { buffer(self.ptr, self.len, usize::MAX) }
    }
}

fn param_invalid() -> Error {
    Error::new(CKR_MECHANISM_PARAM_INVALID)
}

/// A buffer a parameter structure points to: NULL with length 0 is empty,
/// NULL with a nonzero length or a length above `max` is
/// `CKR_MECHANISM_PARAM_INVALID`.
///
/// # Safety
/// `ptr` is NULL or valid for reading `len` bytes.
unsafe fn buffer(ptr: *const u8, len: usize, max: usize) -> Result<Vec<u8>, Error> {
    if len > max || len > MAX_DATA {
        return Err(param_invalid());
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(param_invalid());
    }
    // SAFETY: non-NULL and valid for `len` bytes (this function's contract),
    // `len` is far below isize::MAX, bytes need no alignment, and the slice
    // is dropped at once.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

/// A `CK_ULONG` length from a parameter structure as a `usize`.
fn len(value: CK_ULONG) -> Result<usize, Error> {
    usize::try_from(value).map_err(|_| param_invalid())
}

/// # Safety
/// `param` is the caller's `(pParameter, ulParameterLen)`, under the
/// contract of [`from_raw`].
unsafe fn parse(kind: Kind, param: Param) -> Result<MechanismParams, Error> {
    // Every `unsafe` below relies on from_raw's contract: `param` and the
    // pointers of the structure read from it are valid for the lengths given
    // next to them, and the structures are plain integers and pointers.
    Ok(match kind {
        Kind::None if param.absent() => MechanismParams::None,
        Kind::None => return Err(param_invalid()),
        Kind::Unknown if param.absent() => MechanismParams::None,
        Kind::Unknown => return Err(Error::new(CKR_MECHANISM_INVALID)),
        Kind::Iv16 => {
            // SAFETY: see above.
            let iv = unsafe { param.bytes(&[16]) }?;
            MechanismParams::Iv(iv)
        }
        Kind::Iv8 => {
            // SAFETY: see above.
            let iv = unsafe { param.bytes(&[8]) }?;
            MechanismParams::Iv(iv)
        }
        Kind::WrapIv | Kind::WrapKwpIv if param.absent() => MechanismParams::None,
        Kind::WrapIv => {
            // SAFETY: see above.
            let iv = unsafe { param.bytes(&[8]) }?;
            MechanismParams::Iv(iv)
        }
        Kind::WrapKwpIv => {
            // SAFETY: see above.
            let iv = unsafe { param.bytes(&[4]) }?;
            MechanismParams::Iv(iv)
        }
        Kind::AesCtr => {
            // SAFETY: see above.
            let p: CK_AES_CTR_PARAMS = unsafe { param.read() }?;
            MechanismParams::AesCtr {
                counter_bits: wire(p.ulCounterBits),
                counter_block: p.cb,
            }
        }
        Kind::Gcm => {
            // SAFETY: see above.
            let p: CK_GCM_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above.
            let iv = unsafe { buffer(p.pIv, len(p.ulIvLen)?, MAX_IV) }?;
            // SAFETY: see above.
            let aad = unsafe { buffer(p.pAAD, len(p.ulAADLen)?, MAX_DATA) }?;
            MechanismParams::AesGcm {
                iv,
                iv_bits: wire(p.ulIvBits),
                aad,
                tag_bits: wire(p.ulTagBits),
            }
        }
        Kind::Ccm => {
            // SAFETY: see above.
            let p: CK_CCM_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above.
            let nonce = unsafe { buffer(p.pNonce, len(p.ulNonceLen)?, MAX_IV) }?;
            // SAFETY: see above.
            let aad = unsafe { buffer(p.pAAD, len(p.ulAADLen)?, MAX_DATA) }?;
            MechanismParams::AesCcm {
                data_len: wire(p.ulDataLen),
                nonce,
                aad,
                mac_len: wire(p.ulMACLen),
            }
        }
        Kind::Oaep => {
            // SAFETY: see above.
            let p: CK_RSA_PKCS_OAEP_PARAMS = unsafe { param.read() }?;
            let label = p.pSourceData.cast::<u8>().cast_const();
            // SAFETY: see above.
            let source_data = unsafe { buffer(label, len(p.ulSourceDataLen)?, MAX_DATA) }?;
            MechanismParams::RsaOaep {
                hash_alg: MechanismType(wire(p.hashAlg)),
                mgf: wire(p.mgf),
                source: wire(p.source),
                source_data,
            }
        }
        Kind::Pss => {
            // SAFETY: see above.
            let p: CK_RSA_PKCS_PSS_PARAMS = unsafe { param.read() }?;
            MechanismParams::RsaPss {
                hash_alg: MechanismType(wire(p.hashAlg)),
                mgf: wire(p.mgf),
                salt_len: wire(p.sLen),
            }
        }
        Kind::Ecdh1 => {
            // SAFETY: see above.
            let p: CK_ECDH1_DERIVE_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above.
            let shared_data = unsafe { buffer(p.pSharedData, len(p.ulSharedDataLen)?, MAX_DATA) }?;
            // SAFETY: see above.
            let public_data =
                unsafe { buffer(p.pPublicData, len(p.ulPublicDataLen)?, MAX_PUBLIC_DATA) }?;
            MechanismParams::Ecdh1Derive {
                kdf: wire(p.kdf),
                shared_data,
                public_data,
            }
        }
        Kind::Eddsa if param.absent() => MechanismParams::None,
        Kind::Eddsa => {
            // SAFETY: see above.
            let p: CK_EDDSA_PARAMS = unsafe { param.read() }?;
            let context_len = len(p.ulContextDataLen)?;
            let context = if p.pContextData.is_null() && context_len == 0 {
                None
            } else {
                // SAFETY: see above.
                Some(unsafe { buffer(p.pContextData, context_len, MAX_EDDSA_CONTEXT) }?)
            };
            MechanismParams::Eddsa {
                pre_hash: p.phFlag != CK_FALSE,
                context,
            }
        }
        Kind::MacGeneral => {
            // SAFETY: see above.
            let p: CK_MAC_GENERAL_PARAMS = unsafe { param.read() }?;
            MechanismParams::MacGeneral(wire(p))
        }
        Kind::KeyDerivationString => {
            // SAFETY: see above.
            let p: CK_KEY_DERIVATION_STRING_DATA = unsafe { param.read() }?;
            // SAFETY: see above.
            let data = unsafe { buffer(p.pData, len(p.ulLen)?, MAX_DATA) }?;
            MechanismParams::KeyDerivationString(data)
        }
        Kind::AesCbcEncryptData => {
            // SAFETY: see above.
            let p: CK_AES_CBC_ENCRYPT_DATA_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above.
            let data = unsafe { buffer(p.pData, len(p.length)?, MAX_DATA) }?;
            MechanismParams::AesCbcEncryptData { iv: p.iv, data }
        }
        Kind::Sm2 if param.absent() => MechanismParams::Sm2 {
            user_id: SM2_DEFAULT_USER_ID.to_vec(),
        },
        Kind::Sm2 => {
            // SAFETY: see above.
            let p: CK_HSMLINK_SM2_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above.
            let user_id = unsafe { buffer(p.pUserID, len(p.ulUserIDLen)?, MAX_SM2_USER_ID) }?;
            MechanismParams::Sm2 { user_id }
        }
        Kind::Tr34Nonce if param.absent() => MechanismParams::None,
        Kind::Tr34Nonce => {
            // SAFETY: see above.
            let nonce = unsafe { buffer(param.ptr, param.len, MAX_TR34_NONCE) }?;
            MechanismParams::Iv(nonce)
        }
        Kind::Sm2KeyExchange => {
            // SAFETY: see above.
            let p: CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS = unsafe { param.read() }?;
            // SAFETY: see above (the two point buffers).
            let read = |ptr, n| unsafe { buffer(ptr, n, MAX_PUBLIC_DATA) };
            let id = |ptr: *mut CK_BYTE, n| {
                if ptr.is_null() && n == 0 {
                    Ok(SM2_DEFAULT_USER_ID.to_vec())
                } else {
                    // SAFETY: see above.
                    unsafe { buffer(ptr, n, MAX_SM2_USER_ID) }
                }
            };
            MechanismParams::Sm2KeyExchange {
                initiator: p.isInitiator != CK_FALSE,
                ephemeral_key: ObjectHandle(wire(p.hEphemeralKey)),
                peer_public: read(p.pPeerPublicKey, len(p.ulPeerPublicKeyLen)?)?,
                peer_ephemeral: read(p.pPeerEphemeralKey, len(p.ulPeerEphemeralKeyLen)?)?,
                user_id: id(p.pUserID, len(p.ulUserIDLen)?)?,
                peer_user_id: id(p.pPeerUserID, len(p.ulPeerUserIDLen)?)?,
            }
        }
    })
}

#[cfg(test)]
mod tests;
