//! Every parameter structure: good, wrong length, NULL with a length, and
//! pointed-to buffers that are NULL or too long; unknown mechanisms.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr::{null, null_mut};

use cryptoki_sys::*;
use hsmlink_protocol::vendor::{
    CKM_HSMLINK_SM2, CKM_HSMLINK_SM2_SM3, CKM_HSMLINK_SM4_CBC, CKM_HSMLINK_SM4_CTR,
    CKM_HSMLINK_SM4_GCM,
};
use hsmlink_protocol::{MechanismParams, MechanismType};

use super::{CK_HSMLINK_SM2_PARAMS, SM2_DEFAULT_USER_ID, from_raw};
use crate::ffi::wire;

fn ul(value: usize) -> CK_ULONG {
    CK_ULONG::try_from(value).unwrap()
}

/// Parses `(mechanism, pParameter, ulParameterLen)`.
fn parse_raw(mechanism: u64, ptr: *mut c_void, len: usize) -> Result<MechanismParams, CK_RV> {
    let raw = CK_MECHANISM {
        mechanism: CK_MECHANISM_TYPE::try_from(mechanism).unwrap(),
        pParameter: ptr,
        ulParameterLen: ul(len),
    };
    // SAFETY: `raw` and what it points to live through the call.
    let parsed = unsafe { from_raw(&raw, &crate::profile::HSMLINK) }.map_err(|e| e.rv())?;
    assert_eq!(parsed.mechanism, MechanismType(mechanism));
    Ok(parsed.params)
}

/// Parses `param` as the parameter of `mechanism`, and checks that one
/// byte more or less, and NULL with the right length, are refused.
fn parse<T>(mechanism: CK_MECHANISM_TYPE, param: &mut T) -> Result<MechanismParams, CK_RV> {
    let ptr = (param as *mut T).cast::<c_void>();
    let size = size_of::<T>();
    let m = wire(mechanism);
    assert_eq!(
        parse_raw(m, ptr, size - 1),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "short"
    );
    assert_eq!(
        parse_raw(m, null_mut(), size),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "NULL with length"
    );
    // One more byte: read from a bigger buffer holding the same value.
    let mut bigger = vec![0u8; size + 1];
    // SAFETY: `param` is `size` readable bytes, `bigger` has room for them.
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), bigger.as_mut_ptr(), size) };
    assert_eq!(
        parse_raw(m, bigger.as_mut_ptr().cast(), size + 1),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "long"
    );
    parse_raw(m, ptr, size)
}

/// An unaligned copy of `param` (at an odd address), parsed.
fn parse_unaligned<T: Copy>(mechanism: CK_MECHANISM_TYPE, param: &T) -> MechanismParams {
    let size = size_of::<T>();
    let mut buf = vec![0u8; size + 1];
    // SAFETY: `buf` has room for a `T` at offset 1; unaligned write.
    unsafe { buf.as_mut_ptr().add(1).cast::<T>().write_unaligned(*param) };
    // SAFETY: the pointer is into `buf`, `size` bytes long.
    let ptr = unsafe { buf.as_mut_ptr().add(1) };
    parse_raw(wire(mechanism), ptr.cast(), size).unwrap()
}

#[test]
fn null_mechanism_is_arguments_bad() {
    // SAFETY: NULL is the case under test.
    let rv = unsafe { from_raw(null(), &crate::profile::HSMLINK) }.map_err(|e| e.rv());
    assert_eq!(rv.err(), Some(CKR_ARGUMENTS_BAD));
}

#[test]
fn mechanisms_without_parameter() {
    for m in [
        CKM_RSA_PKCS,
        CKM_SHA256_RSA_PKCS,
        CKM_ECDSA_SHA384,
        CKM_AES_ECB,
        CKM_AES_KEY_GEN,
        CKM_SHA256,
        CKM_SHA512_HMAC,
        CKM_EC_KEY_PAIR_GEN,
    ] {
        assert_eq!(parse_raw(wire(m), null_mut(), 0), Ok(MechanismParams::None));
        // A pointer with length 0 is not looked at.
        let mut byte = 7u8;
        let ptr = (&raw mut byte).cast();
        assert_eq!(parse_raw(wire(m), ptr, 0), Ok(MechanismParams::None));
        assert_eq!(parse_raw(wire(m), ptr, 1), Err(CKR_MECHANISM_PARAM_INVALID));
    }
    assert_eq!(
        parse_raw(CKM_HSMLINK_SM2, null_mut(), 0),
        Ok(MechanismParams::None)
    );
}

#[test]
fn unknown_mechanisms() {
    let unknown = 0x8000_7777;
    assert_eq!(parse_raw(unknown, null_mut(), 0), Ok(MechanismParams::None));
    let mut byte = 7u8;
    assert_eq!(
        parse_raw(unknown, (&raw mut byte).cast(), 1),
        Err(CKR_MECHANISM_INVALID)
    );
    // CKM_DES_CBC (single DES): a standard mechanism we do not serve.
    let mut iv = [0u8; 8];
    assert_eq!(
        parse_raw(wire(CKM_DES_CBC), iv.as_mut_ptr().cast(), 8),
        Err(CKR_MECHANISM_INVALID)
    );
}

#[test]
fn tdes_ivs_and_mac_lengths() {
    for m in [wire(CKM_DES3_CBC), wire(CKM_DES3_CBC_PAD)] {
        let mut iv: [u8; 8] = std::array::from_fn(|i| i as u8 + 1);
        let ptr = iv.as_mut_ptr().cast();
        assert_eq!(parse_raw(m, ptr, 8), Ok(MechanismParams::Iv(iv.to_vec())));
        for bad in [0, 7, 9, 16] {
            assert_eq!(parse_raw(m, ptr, bad), Err(CKR_MECHANISM_PARAM_INVALID));
        }
    }
    for m in [wire(CKM_DES3_MAC_GENERAL), wire(CKM_DES3_CMAC_GENERAL)] {
        let mut len: CK_MAC_GENERAL_PARAMS = 5;
        let ptr = (&raw mut len).cast();
        assert_eq!(
            parse_raw(m, ptr, size_of::<CK_MAC_GENERAL_PARAMS>()),
            Ok(MechanismParams::MacGeneral(5))
        );
    }
    let mut byte = 7u8;
    for m in [CKM_DES3_ECB, CKM_DES3_MAC, CKM_DES3_CMAC, CKM_DES3_KEY_GEN] {
        assert_eq!(parse_raw(wire(m), null_mut(), 0), Ok(MechanismParams::None));
        assert_eq!(
            parse_raw(wire(m), (&raw mut byte).cast(), 1),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
}

#[test]
fn ivs() {
    for m in [
        wire(CKM_AES_CBC),
        wire(CKM_AES_CBC_PAD),
        CKM_HSMLINK_SM4_CBC,
    ] {
        let mut iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let ptr = iv.as_mut_ptr().cast();
        assert_eq!(parse_raw(m, ptr, 16), Ok(MechanismParams::Iv(iv.to_vec())));
        for bad in [0, 8, 15, 17] {
            assert_eq!(parse_raw(m, ptr, bad), Err(CKR_MECHANISM_PARAM_INVALID));
        }
        assert_eq!(
            parse_raw(m, null_mut(), 16),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
    // Key wrap: optional IV of 8 (RFC 3394) or 4 (RFC 5649) bytes.
    let mut iv = [0xA6u8; 8];
    let ptr = iv.as_mut_ptr().cast();
    let wrap = wire(CKM_AES_KEY_WRAP);
    let kwp = wire(CKM_AES_KEY_WRAP_KWP);
    assert_eq!(parse_raw(wrap, null_mut(), 0), Ok(MechanismParams::None));
    assert_eq!(
        parse_raw(wrap, ptr, 8),
        Ok(MechanismParams::Iv(vec![0xA6; 8]))
    );
    assert_eq!(parse_raw(wrap, ptr, 4), Err(CKR_MECHANISM_PARAM_INVALID));
    assert_eq!(parse_raw(kwp, null_mut(), 0), Ok(MechanismParams::None));
    assert_eq!(
        parse_raw(kwp, ptr, 4),
        Ok(MechanismParams::Iv(vec![0xA6; 4]))
    );
    assert_eq!(parse_raw(kwp, ptr, 8), Err(CKR_MECHANISM_PARAM_INVALID));
    assert_eq!(
        parse_raw(kwp, null_mut(), 4),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn aes_ctr() {
    for m in [
        CKM_AES_CTR,
        CK_MECHANISM_TYPE::try_from(CKM_HSMLINK_SM4_CTR).unwrap(),
    ] {
        let mut p = CK_AES_CTR_PARAMS {
            ulCounterBits: 32,
            cb: [9; 16],
        };
        let expected = MechanismParams::AesCtr {
            counter_bits: 32,
            counter_block: [9; 16],
        };
        assert_eq!(parse(m, &mut p), Ok(expected.clone()));
        assert_eq!(parse_unaligned(m, &p), expected);
    }
}

#[test]
fn gcm() {
    let mut iv = [1u8; 12];
    let mut aad = *b"header";
    for m in [
        CKM_AES_GCM,
        CK_MECHANISM_TYPE::try_from(CKM_HSMLINK_SM4_GCM).unwrap(),
    ] {
        let mut p = CK_GCM_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: 6,
            ulTagBits: 128,
        };
        let expected = MechanismParams::AesGcm {
            iv: vec![1; 12],
            iv_bits: 96,
            aad: b"header".to_vec(),
            tag_bits: 128,
        };
        assert_eq!(parse(m, &mut p), Ok(expected.clone()));
        assert_eq!(parse_unaligned(m, &p), expected);
        // No AAD.
        let mut no_aad = CK_GCM_PARAMS {
            pAAD: null_mut(),
            ulAADLen: 0,
            ..p
        };
        assert!(matches!(
            parse(m, &mut no_aad),
            Ok(MechanismParams::AesGcm { aad, .. }) if aad.is_empty()
        ));
        // NULL buffers with lengths, and an absurd IV.
        let mut bad = CK_GCM_PARAMS {
            pAAD: null_mut(),
            ..p
        };
        assert_eq!(parse(m, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
        let mut bad = CK_GCM_PARAMS {
            pIv: null_mut(),
            ..p
        };
        assert_eq!(parse(m, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
        let mut big = vec![0u8; 2048];
        let mut bad = CK_GCM_PARAMS {
            pIv: big.as_mut_ptr(),
            ulIvLen: 2048,
            ..p
        };
        assert_eq!(parse(m, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
    }
}

#[test]
fn ccm() {
    let mut nonce = [2u8; 13];
    let mut aad = [3u8; 5];
    let mut p = CK_CCM_PARAMS {
        ulDataLen: 100,
        pNonce: nonce.as_mut_ptr(),
        ulNonceLen: 13,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 5,
        ulMACLen: 16,
    };
    assert_eq!(
        parse(CKM_AES_CCM, &mut p),
        Ok(MechanismParams::AesCcm {
            data_len: 100,
            nonce: vec![2; 13],
            aad: vec![3; 5],
            mac_len: 16,
        })
    );
    let mut bad = CK_CCM_PARAMS {
        pNonce: null_mut(),
        ..p
    };
    assert_eq!(
        parse(CKM_AES_CCM, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn rsa_oaep_and_pss() {
    let mut label = *b"label";
    let mut p = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr().cast(),
        ulSourceDataLen: 5,
    };
    let expected = MechanismParams::RsaOaep {
        hash_alg: MechanismType(wire(CKM_SHA256)),
        mgf: wire(CKG_MGF1_SHA256),
        source: wire(CKZ_DATA_SPECIFIED),
        source_data: b"label".to_vec(),
    };
    assert_eq!(parse(CKM_RSA_PKCS_OAEP, &mut p), Ok(expected.clone()));
    assert_eq!(parse_unaligned(CKM_RSA_PKCS_OAEP, &p), expected);
    let mut no_label = CK_RSA_PKCS_OAEP_PARAMS {
        pSourceData: null_mut(),
        ulSourceDataLen: 0,
        ..p
    };
    assert!(matches!(
        parse(CKM_RSA_PKCS_OAEP, &mut no_label),
        Ok(MechanismParams::RsaOaep { source_data, .. }) if source_data.is_empty()
    ));
    let mut bad = CK_RSA_PKCS_OAEP_PARAMS {
        pSourceData: null_mut(),
        ..p
    };
    assert_eq!(
        parse(CKM_RSA_PKCS_OAEP, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    // OAEP without its parameter.
    assert_eq!(
        parse_raw(wire(CKM_RSA_PKCS_OAEP), null_mut(), 0),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );

    for m in [
        CKM_RSA_PKCS_PSS,
        CKM_SHA256_RSA_PKCS_PSS,
        CKM_SHA512_RSA_PKCS_PSS,
    ] {
        let mut p = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        let expected = MechanismParams::RsaPss {
            hash_alg: MechanismType(wire(CKM_SHA256)),
            mgf: wire(CKG_MGF1_SHA256),
            salt_len: 32,
        };
        assert_eq!(parse(m, &mut p), Ok(expected.clone()));
        assert_eq!(parse_unaligned(m, &p), expected);
    }
}

#[test]
fn ecdh1_derive() {
    let mut shared = *b"shared";
    let mut public = [4u8; 65];
    let mut p = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_SHA256_KDF,
        ulSharedDataLen: 6,
        pSharedData: shared.as_mut_ptr(),
        ulPublicDataLen: 65,
        pPublicData: public.as_mut_ptr(),
    };
    let expected = MechanismParams::Ecdh1Derive {
        kdf: wire(CKD_SHA256_KDF),
        shared_data: b"shared".to_vec(),
        public_data: vec![4; 65],
    };
    assert_eq!(parse(CKM_ECDH1_DERIVE, &mut p), Ok(expected.clone()));
    assert_eq!(parse_unaligned(CKM_ECDH1_DERIVE, &p), expected);
    let mut null_kdf = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: null_mut(),
        ..p
    };
    assert!(matches!(
        parse(CKM_ECDH1_DERIVE, &mut null_kdf),
        Ok(MechanismParams::Ecdh1Derive { shared_data, .. }) if shared_data.is_empty()
    ));
    let mut bad = CK_ECDH1_DERIVE_PARAMS {
        pPublicData: null_mut(),
        ..p
    };
    assert_eq!(
        parse(CKM_ECDH1_DERIVE, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let mut big = vec![4u8; 10_000];
    let mut bad = CK_ECDH1_DERIVE_PARAMS {
        pPublicData: big.as_mut_ptr(),
        ulPublicDataLen: 10_000,
        ..p
    };
    assert_eq!(
        parse(CKM_ECDH1_DERIVE, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn eddsa() {
    assert_eq!(
        parse_raw(wire(CKM_EDDSA), null_mut(), 0),
        Ok(MechanismParams::None)
    );
    let mut context = *b"ctx";
    let mut p = CK_EDDSA_PARAMS {
        phFlag: CK_TRUE,
        ulContextDataLen: 3,
        pContextData: context.as_mut_ptr(),
    };
    let expected = MechanismParams::Eddsa {
        pre_hash: true,
        context: Some(b"ctx".to_vec()),
    };
    assert_eq!(parse(CKM_EDDSA, &mut p), Ok(expected.clone()));
    assert_eq!(parse_unaligned(CKM_EDDSA, &p), expected);
    let mut no_context = CK_EDDSA_PARAMS {
        phFlag: CK_FALSE,
        ulContextDataLen: 0,
        pContextData: null_mut(),
    };
    assert_eq!(
        parse(CKM_EDDSA, &mut no_context),
        Ok(MechanismParams::Eddsa {
            pre_hash: false,
            context: None
        })
    );
    let mut long = [0u8; 256];
    let mut bad = CK_EDDSA_PARAMS {
        ulContextDataLen: 256,
        pContextData: long.as_mut_ptr(),
        ..p
    };
    assert_eq!(parse(CKM_EDDSA, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
    let mut bad = CK_EDDSA_PARAMS {
        pContextData: null_mut(),
        ..p
    };
    assert_eq!(parse(CKM_EDDSA, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
}

#[test]
fn mac_general() {
    for m in [CKM_AES_CMAC_GENERAL, CKM_SHA256_HMAC_GENERAL] {
        let mut len: CK_MAC_GENERAL_PARAMS = 12;
        assert_eq!(parse(m, &mut len), Ok(MechanismParams::MacGeneral(12)));
        assert_eq!(parse_unaligned(m, &len), MechanismParams::MacGeneral(12));
    }
}

#[test]
fn key_derivation_data() {
    let mut data = [5u8; 32];
    let mut p = CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_mut_ptr(),
        ulLen: 32,
    };
    let expected = MechanismParams::KeyDerivationString(vec![5; 32]);
    assert_eq!(
        parse(CKM_AES_ECB_ENCRYPT_DATA, &mut p),
        Ok(expected.clone())
    );
    assert_eq!(parse_unaligned(CKM_AES_ECB_ENCRYPT_DATA, &p), expected);
    let mut bad = CK_KEY_DERIVATION_STRING_DATA {
        pData: null_mut(),
        ulLen: 32,
    };
    assert_eq!(
        parse(CKM_AES_ECB_ENCRYPT_DATA, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );

    let mut p = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
        iv: [6; 16],
        pData: data.as_mut_ptr(),
        length: 32,
    };
    let expected = MechanismParams::AesCbcEncryptData {
        iv: [6; 16],
        data: vec![5; 32],
    };
    assert_eq!(
        parse(CKM_AES_CBC_ENCRYPT_DATA, &mut p),
        Ok(expected.clone())
    );
    assert_eq!(parse_unaligned(CKM_AES_CBC_ENCRYPT_DATA, &p), expected);
    let mut bad = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
        pData: null_mut(),
        ..p
    };
    assert_eq!(
        parse(CKM_AES_CBC_ENCRYPT_DATA, &mut bad),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn sm2_user_id() {
    let m = CK_MECHANISM_TYPE::try_from(CKM_HSMLINK_SM2_SM3).unwrap();
    assert_eq!(
        parse_raw(CKM_HSMLINK_SM2_SM3, null_mut(), 0),
        Ok(MechanismParams::Sm2 {
            user_id: SM2_DEFAULT_USER_ID.to_vec()
        })
    );
    let mut id = *b"alice@example.com";
    let mut p = CK_HSMLINK_SM2_PARAMS {
        pUserID: id.as_mut_ptr(),
        ulUserIDLen: ul(id.len()),
    };
    let expected = MechanismParams::Sm2 {
        user_id: b"alice@example.com".to_vec(),
    };
    assert_eq!(parse(m, &mut p), Ok(expected.clone()));
    assert_eq!(parse_unaligned(m, &p), expected);
    let mut bad = CK_HSMLINK_SM2_PARAMS {
        pUserID: null_mut(),
        ulUserIDLen: 4,
    };
    assert_eq!(parse(m, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
    let mut long = vec![b'x'; 8192];
    let mut bad = CK_HSMLINK_SM2_PARAMS {
        pUserID: long.as_mut_ptr(),
        ulUserIDLen: 8192,
    };
    assert_eq!(parse(m, &mut bad), Err(CKR_MECHANISM_PARAM_INVALID));
}
