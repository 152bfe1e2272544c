//! The soft driver's mechanisms, as data (`C_GetMechanismList`,
//! `C_GetMechanismInfo`, PKCS#11 3.0 sections 5.4.5 and 5.4.6).
//!
//! One row per mechanism: type, minimum and maximum key size, flags. Key
//! sizes are in the unit the standard gives each family: bits for RSA, EC,
//! EdDSA, SM2 and generic secret key generation; bytes for AES, SM4, TDES
//! and HMAC keys; 0 where no key is involved (digests). The order of the table is the
//! order of `C_GetMechanismList`.
//!
//! The table lists only what the driver does: a test checks every row
//! against the driver's router ([`crate::soft::operations::route`] and
//! `capabilities`). Not served (so not listed): wrapping with the AES and
//! SM4 ECB/CBC modes (the TDES modes do wrap).

use cryptoki_sys::*;
use hsmlink_protocol::vendor::*;

/// One row of a driver's mechanism table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MechanismEntry {
    pub mechanism: u64,
    pub min_key_size: u64,
    pub max_key_size: u64,
    pub flags: u64,
}

const fn row(mechanism: CK_MECHANISM_TYPE, min: u64, max: u64, flags: CK_FLAGS) -> MechanismEntry {
    MechanismEntry {
        mechanism,
        min_key_size: min,
        max_key_size: max,
        flags,
    }
}

// Flag groups, named for what a family of mechanisms does.
const CRYPT: CK_FLAGS = CKF_ENCRYPT | CKF_DECRYPT;
const CRYPT_WRAP: CK_FLAGS = CRYPT | CKF_WRAP | CKF_UNWRAP;
const SIGN: CK_FLAGS = CKF_SIGN | CKF_VERIFY;
/// Prime-field named curves, uncompressed points (P-256, P-384, P-521).
const EC_CAPS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// RSA modulus, bits.
const RSA_MIN: u64 = 2048;
const RSA_MAX: u64 = 4096;
/// EC field size, bits (P-256 to P-521).
const EC_MIN: u64 = 256;
const EC_MAX: u64 = 521;
/// Ed25519, bits.
const ED_BITS: u64 = 255;
/// AES key, bytes.
const AES_MIN: u64 = 16;
const AES_MAX: u64 = 32;
/// HMAC and generic secret keys, bytes; generic secret generation in bits.
const SECRET_MIN: u64 = 1;
const SECRET_MAX: u64 = 512;
/// SM2 curve, bits; SM4 key, bytes.
const SM2_BITS: u64 = 256;
const SM4_BYTES: u64 = 16;
/// TDES keys, bytes: double length (`CKK_DES2`) to triple length (`CKK_DES3`).
const DES2_BYTES: u64 = 16;
const DES3_BYTES: u64 = 24;

/// Everything the soft driver does.
pub static SOFT_MECHANISMS: &[MechanismEntry] = &[
    // ---- RSA ----
    row(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        RSA_MIN,
        RSA_MAX,
        CKF_GENERATE_KEY_PAIR,
    ),
    row(
        CKM_RSA_PKCS,
        RSA_MIN,
        RSA_MAX,
        CRYPT_WRAP | SIGN | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER,
    ),
    row(CKM_RSA_X_509, RSA_MIN, RSA_MAX, CRYPT | SIGN),
    row(CKM_RSA_PKCS_OAEP, RSA_MIN, RSA_MAX, CRYPT_WRAP),
    row(CKM_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA1_RSA_PKCS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA224_RSA_PKCS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA256_RSA_PKCS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA384_RSA_PKCS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA512_RSA_PKCS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA1_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA224_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA256_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA384_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    row(CKM_SHA512_RSA_PKCS_PSS, RSA_MIN, RSA_MAX, SIGN),
    // ---- EC (P-256, P-384, P-521) ----
    row(
        CKM_EC_KEY_PAIR_GEN,
        EC_MIN,
        EC_MAX,
        CKF_GENERATE_KEY_PAIR | EC_CAPS,
    ),
    row(CKM_ECDSA, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDSA_SHA1, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDSA_SHA224, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDSA_SHA256, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDSA_SHA384, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDSA_SHA512, EC_MIN, EC_MAX, SIGN | EC_CAPS),
    row(CKM_ECDH1_DERIVE, EC_MIN, EC_MAX, CKF_DERIVE | EC_CAPS),
    // ---- EdDSA (Ed25519) ----
    row(
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        ED_BITS,
        ED_BITS,
        CKF_GENERATE_KEY_PAIR,
    ),
    row(CKM_EDDSA, ED_BITS, ED_BITS, SIGN),
    // ---- AES ----
    row(CKM_AES_KEY_GEN, AES_MIN, AES_MAX, CKF_GENERATE),
    row(CKM_AES_ECB, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_CBC, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_CBC_PAD, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_CTR, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_GCM, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_CCM, AES_MIN, AES_MAX, CRYPT),
    row(CKM_AES_CMAC, AES_MIN, AES_MAX, SIGN),
    row(CKM_AES_CMAC_GENERAL, AES_MIN, AES_MAX, SIGN),
    row(CKM_AES_KEY_WRAP, AES_MIN, AES_MAX, CRYPT_WRAP),
    row(CKM_AES_KEY_WRAP_KWP, AES_MIN, AES_MAX, CRYPT_WRAP),
    row(CKM_AES_ECB_ENCRYPT_DATA, AES_MIN, AES_MAX, CKF_DERIVE),
    row(CKM_AES_CBC_ENCRYPT_DATA, AES_MIN, AES_MAX, CKF_DERIVE),
    row(CKM_HSMLINK_TR31, AES_MIN, AES_MAX, CKF_WRAP | CKF_UNWRAP),
    // The RSA key-receiving key's modulus bits.
    row(CKM_HSMLINK_TR34, RSA_MIN, RSA_MAX, CKF_UNWRAP),
    // ---- TDES (double- and triple-length keys) ----
    row(CKM_DES2_KEY_GEN, DES2_BYTES, DES2_BYTES, CKF_GENERATE),
    row(CKM_DES3_KEY_GEN, DES3_BYTES, DES3_BYTES, CKF_GENERATE),
    row(CKM_DES3_ECB, DES2_BYTES, DES3_BYTES, CRYPT_WRAP),
    row(CKM_DES3_CBC, DES2_BYTES, DES3_BYTES, CRYPT_WRAP),
    row(CKM_DES3_CBC_PAD, DES2_BYTES, DES3_BYTES, CRYPT_WRAP),
    row(CKM_DES3_MAC, DES2_BYTES, DES3_BYTES, SIGN),
    row(CKM_DES3_MAC_GENERAL, DES2_BYTES, DES3_BYTES, SIGN),
    row(CKM_DES3_CMAC, DES2_BYTES, DES3_BYTES, SIGN),
    row(CKM_DES3_CMAC_GENERAL, DES2_BYTES, DES3_BYTES, SIGN),
    // ---- Generic secrets, digests, HMAC ----
    row(
        CKM_GENERIC_SECRET_KEY_GEN,
        SECRET_MIN * 8,
        SECRET_MAX * 8,
        CKF_GENERATE,
    ),
    row(CKM_SHA_1, 0, 0, CKF_DIGEST),
    row(CKM_SHA224, 0, 0, CKF_DIGEST),
    row(CKM_SHA256, 0, 0, CKF_DIGEST),
    row(CKM_SHA384, 0, 0, CKF_DIGEST),
    row(CKM_SHA512, 0, 0, CKF_DIGEST),
    row(CKM_SHA_1_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA224_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA256_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA384_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA512_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA_1_HMAC_GENERAL, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA224_HMAC_GENERAL, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA256_HMAC_GENERAL, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA384_HMAC_GENERAL, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_SHA512_HMAC_GENERAL, SECRET_MIN, SECRET_MAX, SIGN),
    // ---- GM/T: SM2, SM3, SM4 (hsmlink vendor numbers) ----
    row(
        CKM_HSMLINK_SM2_KEY_PAIR_GEN,
        SM2_BITS,
        SM2_BITS,
        CKF_GENERATE_KEY_PAIR,
    ),
    row(CKM_HSMLINK_SM2, SM2_BITS, SM2_BITS, SIGN),
    row(CKM_HSMLINK_SM2_SM3, SM2_BITS, SM2_BITS, SIGN),
    row(CKM_HSMLINK_SM2_ENCRYPT, SM2_BITS, SM2_BITS, CRYPT),
    row(CKM_HSMLINK_SM2_KEY_EXCHANGE, SM2_BITS, SM2_BITS, CKF_DERIVE),
    row(CKM_HSMLINK_SM3, 0, 0, CKF_DIGEST),
    row(CKM_HSMLINK_SM3_HMAC, SECRET_MIN, SECRET_MAX, SIGN),
    row(CKM_HSMLINK_SM4_KEY_GEN, SM4_BYTES, SM4_BYTES, CKF_GENERATE),
    row(CKM_HSMLINK_SM4_ECB, SM4_BYTES, SM4_BYTES, CRYPT),
    row(CKM_HSMLINK_SM4_CBC, SM4_BYTES, SM4_BYTES, CRYPT),
    row(CKM_HSMLINK_SM4_CBC_PAD, SM4_BYTES, SM4_BYTES, CRYPT),
    row(CKM_HSMLINK_SM4_CTR, SM4_BYTES, SM4_BYTES, CRYPT),
    row(CKM_HSMLINK_SM4_GCM, SM4_BYTES, SM4_BYTES, CRYPT),
    row(CKM_HSMLINK_SM4_CMAC, SM4_BYTES, SM4_BYTES, SIGN),
];

/// The row for `mechanism` in `table`, if the driver has it.
pub fn find(table: &[MechanismEntry], mechanism: u64) -> Option<&MechanismEntry> {
    table.iter().find(|entry| entry.mechanism == mechanism)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_mechanism_appears_once() {
        let mut seen = HashSet::new();
        for entry in SOFT_MECHANISMS {
            assert!(seen.insert(entry.mechanism), "{:#x} twice", entry.mechanism);
        }
    }

    #[test]
    fn sizes_and_flags_are_sane() {
        for entry in SOFT_MECHANISMS {
            assert!(entry.min_key_size <= entry.max_key_size, "{entry:?}");
            assert_ne!(entry.flags, 0, "{entry:?}");
            assert_eq!(entry.flags & CKF_HW, 0, "software, not hardware: {entry:?}");
        }
    }

    /// The table never claims what the driver lacks: every row is routed
    /// to an engine that serves each function the row lists.
    #[test]
    fn every_listed_mechanism_is_served() {
        use crate::soft::operations::{capabilities, route};
        const FUNCTIONS: CK_FLAGS = CKF_ENCRYPT
            | CKF_DECRYPT
            | CKF_DIGEST
            | CKF_SIGN
            | CKF_SIGN_RECOVER
            | CKF_VERIFY
            | CKF_VERIFY_RECOVER
            | CKF_GENERATE
            | CKF_GENERATE_KEY_PAIR
            | CKF_WRAP
            | CKF_UNWRAP
            | CKF_DERIVE;
        for entry in SOFT_MECHANISMS {
            let family = route(entry.mechanism)
                .unwrap_or_else(|| panic!("{:#x} is listed but not routed", entry.mechanism));
            let listed = entry.flags & FUNCTIONS;
            assert_eq!(
                listed & !capabilities(family),
                0,
                "{:#x} lists functions the driver lacks",
                entry.mechanism
            );
        }
    }

    #[test]
    fn the_brief_numbers() {
        let kwp = find(SOFT_MECHANISMS, 0x210B).unwrap();
        assert_eq!((kwp.min_key_size, kwp.max_key_size), (16, 32));
        let ec = find(SOFT_MECHANISMS, CKM_EC_KEY_PAIR_GEN).unwrap();
        assert_eq!((ec.min_key_size, ec.max_key_size), (256, 521));
        assert_eq!(ec.flags & EC_CAPS, EC_CAPS);
        let sm4 = find(SOFT_MECHANISMS, CKM_HSMLINK_SM4_CBC).unwrap();
        assert_eq!((sm4.min_key_size, sm4.max_key_size), (16, 16));
        assert!(find(SOFT_MECHANISMS, CKM_MD5).is_none());
        let des3 = find(SOFT_MECHANISMS, CKM_DES3_CBC_PAD).unwrap();
        assert_eq!((des3.min_key_size, des3.max_key_size), (16, 24));
        assert_eq!(
            des3.flags,
            CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP
        );
        let gen2 = find(SOFT_MECHANISMS, CKM_DES2_KEY_GEN).unwrap();
        assert_eq!((gen2.min_key_size, gen2.max_key_size), (16, 16));
        let mac = find(SOFT_MECHANISMS, CKM_DES3_MAC_GENERAL).unwrap();
        assert_eq!(mac.flags, CKF_SIGN | CKF_VERIFY);
        assert!(
            find(SOFT_MECHANISMS, CKM_DES_ECB).is_none(),
            "no single DES"
        );
        // Every vendor mechanism is served.
        for (name, value) in hsmlink_protocol::vendor::ALL {
            if name.starts_with("CKM_") {
                assert!(find(SOFT_MECHANISMS, *value).is_some(), "{name}");
            }
        }
    }
}
