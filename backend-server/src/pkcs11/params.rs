//! hsmlink's typed mechanism parameters ([`MechanismParams`]) as the C
//! structures a vendor module reads: `CK_GCM_PARAMS`, `CK_CCM_PARAMS`,
//! `CK_AES_CTR_PARAMS`, `CK_RSA_PKCS_OAEP_PARAMS`, `CK_RSA_PKCS_PSS_PARAMS`,
//! `CK_ECDH1_DERIVE_PARAMS`, `CK_EDDSA_PARAMS`, `CK_KEY_DERIVATION_STRING_DATA`,
//! `CK_AES_CBC_ENCRYPT_DATA_PARAMS`, a `CK_ULONG`, or a byte string.
//!
//! [`CMechanism`] owns the structure and every buffer it points to, on the
//! heap, so the pointers stay valid while it lives (moving it moves none of
//! them). SM2's user id has no standard C form; a device with SM2 gets its
//! own mapping here when one is supported.

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;
use hsmlink_protocol::{Mechanism, MechanismParams};
use zeroize::Zeroizing;

use crate::error::{CkResult, Ckr};

/// The heap storage a `CK_MECHANISM`'s parameter points into.
#[allow(dead_code)] // held for its buffers, read by the module only
enum Storage {
    None,
    Bytes(Zeroizing<Vec<u8>>),
    Ulong(Box<CK_ULONG>),
    Ctr(Box<CK_AES_CTR_PARAMS>),
    Gcm(Box<CK_GCM_PARAMS>, Zeroizing<Vec<u8>>, Vec<u8>),
    Ccm(Box<CK_CCM_PARAMS>, Zeroizing<Vec<u8>>, Vec<u8>),
    Oaep(Box<CK_RSA_PKCS_OAEP_PARAMS>, Vec<u8>),
    Pss(Box<CK_RSA_PKCS_PSS_PARAMS>),
    Ecdh(Box<CK_ECDH1_DERIVE_PARAMS>, Vec<u8>, Vec<u8>),
    Eddsa(Box<CK_EDDSA_PARAMS>, Vec<u8>),
    KeyDerivation(Box<CK_KEY_DERIVATION_STRING_DATA>, Zeroizing<Vec<u8>>),
    CbcEncryptData(Box<CK_AES_CBC_ENCRYPT_DATA_PARAMS>, Zeroizing<Vec<u8>>),
}

/// A `CK_MECHANISM` with owned parameters.
pub struct CMechanism {
    raw: CK_MECHANISM,
    _storage: Storage,
}

impl std::fmt::Debug for CMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CMechanism")
            .field("mechanism", &format_args!("{:#x}", self.raw.mechanism))
            .field("parameter_len", &self.raw.ulParameterLen)
            .finish()
    }
}

/// A pointer to the bytes of `v`, NULL when empty.
fn bytes_ptr(v: &mut [u8]) -> *mut u8 {
    if v.is_empty() {
        ptr::null_mut()
    } else {
        v.as_mut_ptr()
    }
}

fn len(n: usize) -> CkResult<CK_ULONG> {
    CK_ULONG::try_from(n).map_err(|_| Ckr(CKR_MECHANISM_PARAM_INVALID))
}

fn size_of<T>() -> CK_ULONG {
    CK_ULONG::try_from(std::mem::size_of::<T>()).unwrap_or(0)
}

impl CMechanism {
    /// `mechanism` as the device's number `device_mechanism` with its
    /// parameters in C form.
    pub fn new(device_mechanism: CK_MECHANISM_TYPE, mechanism: &Mechanism) -> CkResult<Self> {
        Self::with_params(device_mechanism, &mechanism.params)
    }

    pub fn with_params(
        device_mechanism: CK_MECHANISM_TYPE,
        params: &MechanismParams,
    ) -> CkResult<Self> {
        let (p, l, storage): (*mut c_void, CK_ULONG, Storage) = match params {
            MechanismParams::None => (ptr::null_mut(), 0, Storage::None),
            MechanismParams::Iv(iv) => {
                let mut b = Zeroizing::new(iv.clone());
                (bytes_ptr(&mut b).cast(), len(b.len())?, Storage::Bytes(b))
            }
            MechanismParams::Ulong(v) | MechanismParams::MacGeneral(v) => {
                let mut b = Box::new(*v);
                let p: *mut CK_ULONG = &mut *b;
                (p.cast(), size_of::<CK_ULONG>(), Storage::Ulong(b))
            }
            MechanismParams::AesCtr {
                counter_bits,
                counter_block,
            } => {
                let mut b = Box::new(CK_AES_CTR_PARAMS {
                    ulCounterBits: *counter_bits,
                    cb: *counter_block,
                });
                let p: *mut CK_AES_CTR_PARAMS = &mut *b;
                (p.cast(), size_of::<CK_AES_CTR_PARAMS>(), Storage::Ctr(b))
            }
            MechanismParams::AesGcm {
                iv,
                iv_bits,
                aad,
                tag_bits,
            } => {
                let mut iv = Zeroizing::new(iv.clone());
                let mut aad = aad.clone();
                let mut b = Box::new(CK_GCM_PARAMS {
                    pIv: bytes_ptr(&mut iv),
                    ulIvLen: len(iv.len())?,
                    ulIvBits: *iv_bits,
                    pAAD: bytes_ptr(&mut aad),
                    ulAADLen: len(aad.len())?,
                    ulTagBits: *tag_bits,
                });
                let p: *mut CK_GCM_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_GCM_PARAMS>(),
                    Storage::Gcm(b, iv, aad),
                )
            }
            MechanismParams::AesCcm {
                data_len,
                nonce,
                aad,
                mac_len,
            } => {
                let mut nonce = Zeroizing::new(nonce.clone());
                let mut aad = aad.clone();
                let mut b = Box::new(CK_CCM_PARAMS {
                    ulDataLen: *data_len,
                    pNonce: bytes_ptr(&mut nonce),
                    ulNonceLen: len(nonce.len())?,
                    pAAD: bytes_ptr(&mut aad),
                    ulAADLen: len(aad.len())?,
                    ulMACLen: *mac_len,
                });
                let p: *mut CK_CCM_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_CCM_PARAMS>(),
                    Storage::Ccm(b, nonce, aad),
                )
            }
            MechanismParams::RsaOaep {
                hash_alg,
                mgf,
                source,
                source_data,
            } => {
                let mut data = source_data.clone();
                let mut b = Box::new(CK_RSA_PKCS_OAEP_PARAMS {
                    hashAlg: hash_alg.0,
                    mgf: *mgf,
                    source: *source,
                    pSourceData: bytes_ptr(&mut data).cast(),
                    ulSourceDataLen: len(data.len())?,
                });
                let p: *mut CK_RSA_PKCS_OAEP_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_RSA_PKCS_OAEP_PARAMS>(),
                    Storage::Oaep(b, data),
                )
            }
            MechanismParams::RsaPss {
                hash_alg,
                mgf,
                salt_len,
            } => {
                let mut b = Box::new(CK_RSA_PKCS_PSS_PARAMS {
                    hashAlg: hash_alg.0,
                    mgf: *mgf,
                    sLen: *salt_len,
                });
                let p: *mut CK_RSA_PKCS_PSS_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_RSA_PKCS_PSS_PARAMS>(),
                    Storage::Pss(b),
                )
            }
            MechanismParams::Ecdh1Derive {
                kdf,
                shared_data,
                public_data,
            } => {
                let mut shared = shared_data.clone();
                let mut public = public_data.clone();
                let mut b = Box::new(CK_ECDH1_DERIVE_PARAMS {
                    kdf: *kdf,
                    ulSharedDataLen: len(shared.len())?,
                    pSharedData: bytes_ptr(&mut shared),
                    ulPublicDataLen: len(public.len())?,
                    pPublicData: bytes_ptr(&mut public),
                });
                let p: *mut CK_ECDH1_DERIVE_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_ECDH1_DERIVE_PARAMS>(),
                    Storage::Ecdh(b, shared, public),
                )
            }
            // Pure Ed25519 without a context: no parameter, the form every
            // module accepts.
            MechanismParams::Eddsa {
                pre_hash: false,
                context: None,
            } => (ptr::null_mut(), 0, Storage::None),
            MechanismParams::Eddsa { pre_hash, context } => {
                let mut context = context.clone().unwrap_or_default();
                let mut b = Box::new(CK_EDDSA_PARAMS {
                    phFlag: if *pre_hash { CK_TRUE } else { CK_FALSE },
                    ulContextDataLen: len(context.len())?,
                    pContextData: bytes_ptr(&mut context),
                });
                let p: *mut CK_EDDSA_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_EDDSA_PARAMS>(),
                    Storage::Eddsa(b, context),
                )
            }
            MechanismParams::KeyDerivationString(data) => {
                let mut data = Zeroizing::new(data.clone());
                let mut b = Box::new(CK_KEY_DERIVATION_STRING_DATA {
                    pData: bytes_ptr(&mut data),
                    ulLen: len(data.len())?,
                });
                let p: *mut CK_KEY_DERIVATION_STRING_DATA = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_KEY_DERIVATION_STRING_DATA>(),
                    Storage::KeyDerivation(b, data),
                )
            }
            MechanismParams::AesCbcEncryptData { iv, data } => {
                let mut data = Zeroizing::new(data.clone());
                let mut b = Box::new(CK_AES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: *iv,
                    pData: bytes_ptr(&mut data),
                    length: len(data.len())?,
                });
                let p: *mut CK_AES_CBC_ENCRYPT_DATA_PARAMS = &mut *b;
                (
                    p.cast(),
                    size_of::<CK_AES_CBC_ENCRYPT_DATA_PARAMS>(),
                    Storage::CbcEncryptData(b, data),
                )
            }
            // No standard C form: served only on a device with its own SM2
            // numbers and parameter (none yet).
            MechanismParams::Sm2 { .. } => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
            // Parameters added to the protocol later have no C form here
            // until this driver learns them.
            #[allow(unreachable_patterns)]
            _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
        };
        Ok(Self {
            raw: CK_MECHANISM {
                mechanism: device_mechanism,
                pParameter: p,
                ulParameterLen: l,
            },
            _storage: storage,
        })
    }

    pub fn as_mut_ptr(&mut self) -> *mut CK_MECHANISM {
        &mut self.raw
    }
}

#[cfg(test)]
mod tests {
    use hsmlink_protocol::MechanismType;

    use super::*;

    #[test]
    fn parameters_point_at_owned_buffers() {
        let gcm = Mechanism::new(
            CKM_AES_GCM,
            MechanismParams::AesGcm {
                iv: vec![7; 12],
                iv_bits: 96,
                aad: b"header".to_vec(),
                tag_bits: 128,
            },
        );
        let mut c = CMechanism::new(CKM_AES_GCM, &gcm).unwrap();
        let raw = c.raw;
        assert_eq!(raw.mechanism, CKM_AES_GCM);
        assert_eq!(raw.ulParameterLen, size_of::<CK_GCM_PARAMS>());
        let Storage::Gcm(params, iv, aad) = &c._storage else {
            panic!("{c:?}")
        };
        assert_eq!(
            raw.pParameter.cast_const(),
            (&**params as *const CK_GCM_PARAMS).cast()
        );
        assert_eq!(params.pIv.cast_const(), iv.as_ptr());
        assert_eq!(params.ulIvLen, 12);
        assert_eq!(params.pAAD.cast_const(), aad.as_ptr());
        assert_eq!((params.ulAADLen, params.ulTagBits), (6, 128));
        assert!(!c.as_mut_ptr().is_null());

        let none = CMechanism::new(
            CKM_SHA256,
            &Mechanism::new(CKM_SHA256, MechanismParams::None),
        )
        .unwrap();
        assert!(none.raw.pParameter.is_null() && none.raw.ulParameterLen == 0);

        let pss = CMechanism::new(
            CKM_RSA_PKCS_PSS,
            &Mechanism::new(
                CKM_SHA256_RSA_PKCS_PSS,
                MechanismParams::RsaPss {
                    hash_alg: MechanismType(CKM_SHA256),
                    mgf: CKG_MGF1_SHA256,
                    salt_len: 32,
                },
            ),
        )
        .unwrap();
        assert_eq!(pss.raw.mechanism, CKM_RSA_PKCS_PSS);
        assert_eq!(pss.raw.ulParameterLen, size_of::<CK_RSA_PKCS_PSS_PARAMS>());

        let sm2 = Mechanism::new(0, MechanismParams::Sm2 { user_id: vec![1] });
        assert_eq!(
            CMechanism::new(0, &sm2).unwrap_err(),
            Ckr(CKR_MECHANISM_PARAM_INVALID)
        );
    }
}
