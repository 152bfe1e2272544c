//! What a pkcs11 slot lists: the device's mechanisms (`C_GetMechanismList`,
//! `C_GetMechanismInfo`) that hsmlink can also carry — those whose
//! parameters the protocol types and this driver marshals ([`CARRIED`]).
//! Nothing else is listed, and the calls layer answers
//! `CKR_MECHANISM_INVALID` for what is not listed.
//!
//! Hash-then-sign mechanisms are hashed by the module (only the digest
//! travels): the driver signs the digest with the device's raw mechanism
//! ([`hash_then_sign`]), so they are listed exactly where the device has
//! that raw mechanism, with its functions (sign, verify), whether or not
//! the device lists the composite one (SoftHSMv2 has `CKM_ECDSA` but no
//! `CKM_ECDSA_SHA256`).
//!
//! hsmlink's SM2/SM3/SM4 numbers (`protocol/src/vendor.rs`) are vendor
//! numbers; a device that has these algorithms has its own. [`VendorNumbers`]
//! maps one to the other per device; SoftHSMv2 has none, so the map is
//! empty and the slot lists no SM mechanism.

use cryptoki_sys::*;
use hsmlink_crypto::digest::DigestAlg;

use crate::soft::mechanisms::MechanismEntry;

/// The standard mechanisms hsmlink carries to a device, their parameters
/// marshalled by [`super::params`]. The order is the slot's list order.
pub const CARRIED: &[CK_MECHANISM_TYPE] = &[
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_ECDH1_DERIVE,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EDDSA,
    CKM_AES_KEY_GEN,
    CKM_AES_ECB,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_CTR,
    CKM_AES_GCM,
    CKM_AES_CCM,
    CKM_AES_CMAC,
    CKM_AES_CMAC_GENERAL,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_KWP,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_DES2_KEY_GEN,
    CKM_DES3_KEY_GEN,
    CKM_DES3_ECB,
    CKM_DES3_CBC,
    CKM_DES3_CBC_PAD,
    CKM_DES3_MAC,
    CKM_DES3_MAC_GENERAL,
    CKM_DES3_CMAC,
    CKM_DES3_CMAC_GENERAL,
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
    CKM_SHA_1_HMAC_GENERAL,
    CKM_SHA224_HMAC_GENERAL,
    CKM_SHA256_HMAC_GENERAL,
    CKM_SHA384_HMAC_GENERAL,
    CKM_SHA512_HMAC_GENERAL,
];

/// The `CK_MECHANISM_INFO` flags hsmlink passes on: the functions, and the
/// EC capability flags. (`CKF_HW` too: the device says whether it is.)
const PASSED_FLAGS: CK_FLAGS = CKF_HW
    | CKF_ENCRYPT
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
    | CKF_DERIVE
    | CKF_EC_F_P
    | CKF_EC_F_2M
    | CKF_EC_ECPARAMETERS
    | CKF_EC_NAMEDCURVE
    | CKF_EC_UNCOMPRESS
    | CKF_EC_COMPRESS;

/// The flags that describe rather than name a function.
const CAPABILITIES: CK_FLAGS = CKF_HW
    | CKF_EC_F_P
    | CKF_EC_F_2M
    | CKF_EC_ECPARAMETERS
    | CKF_EC_NAMEDCURVE
    | CKF_EC_UNCOMPRESS
    | CKF_EC_COMPRESS;

/// How a hash-then-sign mechanism's digest is signed on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashThenSign {
    pub hash: DigestAlg,
    /// The raw mechanism signing the digest.
    pub raw: CK_MECHANISM_TYPE,
    /// RSA PKCS #1 v1.5: the digest goes in a DER DigestInfo.
    pub digest_info: bool,
}

/// The raw form of a hash-then-sign mechanism the module hashes itself
/// (`pkcs11-module/src/client/local.rs`): `CKM_SHA256_RSA_PKCS` is
/// `CKM_RSA_PKCS` over DigestInfo‖hash, `CKM_SHA256_RSA_PKCS_PSS` is
/// `CKM_RSA_PKCS_PSS` with the same parameters, `CKM_ECDSA_SHA256` is
/// `CKM_ECDSA` over the hash.
pub fn hash_then_sign(mechanism: CK_MECHANISM_TYPE) -> Option<HashThenSign> {
    use DigestAlg::*;
    let (hash, raw, digest_info) = match mechanism {
        CKM_SHA1_RSA_PKCS => (Sha1, CKM_RSA_PKCS, true),
        CKM_SHA224_RSA_PKCS => (Sha224, CKM_RSA_PKCS, true),
        CKM_SHA256_RSA_PKCS => (Sha256, CKM_RSA_PKCS, true),
        CKM_SHA384_RSA_PKCS => (Sha384, CKM_RSA_PKCS, true),
        CKM_SHA512_RSA_PKCS => (Sha512, CKM_RSA_PKCS, true),
        CKM_SHA1_RSA_PKCS_PSS => (Sha1, CKM_RSA_PKCS_PSS, false),
        CKM_SHA224_RSA_PKCS_PSS => (Sha224, CKM_RSA_PKCS_PSS, false),
        CKM_SHA256_RSA_PKCS_PSS => (Sha256, CKM_RSA_PKCS_PSS, false),
        CKM_SHA384_RSA_PKCS_PSS => (Sha384, CKM_RSA_PKCS_PSS, false),
        CKM_SHA512_RSA_PKCS_PSS => (Sha512, CKM_RSA_PKCS_PSS, false),
        CKM_ECDSA_SHA1 => (Sha1, CKM_ECDSA, false),
        CKM_ECDSA_SHA224 => (Sha224, CKM_ECDSA, false),
        CKM_ECDSA_SHA256 => (Sha256, CKM_ECDSA, false),
        CKM_ECDSA_SHA384 => (Sha384, CKM_ECDSA, false),
        CKM_ECDSA_SHA512 => (Sha512, CKM_ECDSA, false),
        _ => return None,
    };
    Some(HashThenSign {
        hash,
        raw,
        digest_info,
    })
}

/// The DER DigestInfo prefix of a hash (RFC 8017 section 9.2, note 1).
pub fn digest_info_prefix(hash: DigestAlg) -> &'static [u8] {
    match hash {
        DigestAlg::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        DigestAlg::Sha224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        DigestAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        DigestAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        DigestAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
        // SM2-with-SM3 is never mapped here (no standard raw form).
        DigestAlg::Sm3 => &[],
    }
}

/// hsmlink's vendor numbers (SM2, SM3, SM4) to a device's own, for the
/// mechanisms and key types a device has under other numbers. Empty for
/// every device today: SoftHSMv2 has no GM/T algorithms. A device profile
/// fills `mechanisms` (and `key_types`, applied to templates) when one is
/// supported; nothing else changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct VendorNumbers {
    /// (hsmlink's, the device's)
    pub mechanisms: &'static [(CK_MECHANISM_TYPE, CK_MECHANISM_TYPE)],
    pub key_types: &'static [(CK_KEY_TYPE, CK_KEY_TYPE)],
}

impl VendorNumbers {
    /// No vendor mechanism on the device.
    pub const NONE: Self = Self {
        mechanisms: &[],
        key_types: &[],
    };

    /// The device's number of hsmlink mechanism `m` (standard numbers are
    /// the same on every device).
    pub fn to_device(&self, m: CK_MECHANISM_TYPE) -> CK_MECHANISM_TYPE {
        self.mechanisms
            .iter()
            .find(|(ours, _)| *ours == m)
            .map_or(m, |(_, theirs)| *theirs)
    }
}

/// A replicated partition's list: what every replica serves, with the key
/// sizes and flags all of them take (a call may go to any of them).
pub fn common<'a>(mut tables: impl Iterator<Item = &'a [MechanismEntry]>) -> Vec<MechanismEntry> {
    let Some(first) = tables.next() else {
        return Vec::new();
    };
    let mut list = first.to_vec();
    for table in tables {
        list.retain_mut(|entry| {
            let Some(other) = table.iter().find(|o| o.mechanism == entry.mechanism) else {
                return false;
            };
            entry.min_key_size = entry.min_key_size.max(other.min_key_size);
            entry.max_key_size = entry.max_key_size.min(other.max_key_size);
            entry.flags &= other.flags;
            entry.flags & !CAPABILITIES != 0
        });
    }
    list
}

/// The slot's table: every carried mechanism the device lists, with the
/// device's key sizes and the flags hsmlink passes on; hash-then-sign
/// mechanisms wherever the raw one they are signed with is.
pub fn slot_table(
    device: &[(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)],
    vendor: &VendorNumbers,
) -> Vec<MechanismEntry> {
    let info = |m: CK_MECHANISM_TYPE| {
        let theirs = vendor.to_device(m);
        device.iter().find(|(d, _)| *d == theirs).map(|(_, i)| *i)
    };
    let mut table = Vec::new();
    let vendor_mechanisms = vendor.mechanisms.iter().map(|(ours, _)| *ours);
    for m in CARRIED.iter().copied().chain(vendor_mechanisms) {
        let i = match hash_then_sign(m) {
            // Signed with the raw mechanism: served wherever the device has
            // that one, listed or not under the composite number.
            Some(hts) => match info(hts.raw) {
                Some(raw) => CK_MECHANISM_INFO {
                    flags: raw.flags & (CKF_SIGN | CKF_VERIFY | CAPABILITIES),
                    ..info(m).unwrap_or(raw)
                },
                None => continue,
            },
            None => match info(m) {
                Some(i) => i,
                None => continue,
            },
        };
        let flags = i.flags & PASSED_FLAGS;
        if flags & !CAPABILITIES == 0 {
            continue;
        }
        table.push(MechanismEntry {
            mechanism: m,
            min_key_size: i.ulMinKeySize,
            max_key_size: i.ulMaxKeySize,
            flags,
        });
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(flags: CK_FLAGS) -> CK_MECHANISM_INFO {
        CK_MECHANISM_INFO {
            ulMinKeySize: 1,
            ulMaxKeySize: 2,
            flags,
        }
    }

    #[test]
    fn only_what_both_serve_is_listed() {
        let device = [
            (CKM_AES_GCM, info(CKF_ENCRYPT | CKF_DECRYPT | CKF_HW)),
            (CKM_MD5, info(CKF_DIGEST)),
            (CKM_SHA256_RSA_PKCS, info(CKF_SIGN | CKF_VERIFY)),
            (CKM_ECDSA, info(CKF_VERIFY | CKF_EC_F_P)),
            (0x8000_1234, info(CKF_SIGN)),
        ];
        let table = slot_table(&device, &VendorNumbers::NONE);
        let listed: Vec<u64> = table.iter().map(|e| e.mechanism).collect();
        // MD5 and the vendor's own are not carried; SHA256_RSA_PKCS has no
        // raw RSA_PKCS on this device; every ECDSA_SHA* comes with ECDSA.
        assert_eq!(
            listed,
            vec![
                CKM_ECDSA,
                CKM_ECDSA_SHA1,
                CKM_ECDSA_SHA224,
                CKM_ECDSA_SHA256,
                CKM_ECDSA_SHA384,
                CKM_ECDSA_SHA512,
                CKM_AES_GCM
            ]
        );
        // ECDSA_SHA256 signs through ECDSA, which only verifies here.
        assert_eq!(table[3].flags, CKF_VERIFY | CKF_EC_F_P);
        let gcm = table[6];
        assert_eq!(gcm.flags, CKF_ENCRYPT | CKF_DECRYPT | CKF_HW);
        assert_eq!((gcm.min_key_size, gcm.max_key_size), (1, 2));
    }

    #[test]
    fn vendor_numbers_map_to_the_device() {
        const SM4_ECB: u64 = hsmlink_protocol::vendor::CKM_HSMLINK_SM4_ECB;
        static MAP: &[(u64, u64)] = &[(SM4_ECB, 0x8000_0107)];
        let vendor = VendorNumbers {
            mechanisms: MAP,
            key_types: &[],
        };
        assert_eq!(vendor.to_device(SM4_ECB), 0x8000_0107);
        assert_eq!(vendor.to_device(CKM_AES_ECB), CKM_AES_ECB);
        let device = [(0x8000_0107, info(CKF_ENCRYPT | CKF_DECRYPT))];
        let table = slot_table(&device, &vendor);
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].mechanism, SM4_ECB);
        assert!(slot_table(&device, &VendorNumbers::NONE).is_empty());
    }

    #[test]
    fn digest_info_prefixes_announce_the_hash_length() {
        for hash in [
            DigestAlg::Sha1,
            DigestAlg::Sha224,
            DigestAlg::Sha256,
            DigestAlg::Sha384,
            DigestAlg::Sha512,
        ] {
            let prefix = digest_info_prefix(hash);
            assert_eq!(usize::from(prefix[prefix.len() - 1]), hash.output_len());
            assert_eq!(usize::from(prefix[1]), prefix.len() - 2 + hash.output_len());
        }
        assert!(hash_then_sign(CKM_SHA256).is_none());
        assert_eq!(
            hash_then_sign(CKM_ECDSA_SHA384).map(|h| h.raw),
            Some(CKM_ECDSA)
        );
    }

    #[test]
    fn replicas_list_what_all_of_them_serve() {
        let entry = |mechanism, min, max, flags| MechanismEntry {
            mechanism,
            min_key_size: min,
            max_key_size: max,
            flags,
        };
        let a = [
            entry(CKM_AES_CBC, 16, 32, CKF_ENCRYPT | CKF_DECRYPT),
            entry(CKM_ECDSA, 256, 521, CKF_SIGN | CKF_VERIFY),
        ];
        let b = [entry(CKM_AES_CBC, 24, 64, CKF_ENCRYPT)];
        let both = common([&a[..], &b[..]].into_iter());
        assert_eq!(both, vec![entry(CKM_AES_CBC, 24, 32, CKF_ENCRYPT)]);
        assert_eq!(common([&a[..]].into_iter()), a.to_vec());
    }
}
