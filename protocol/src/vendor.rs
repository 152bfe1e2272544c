//! hsmlink's vendor-defined PKCS#11 numbers, mirrored in `include/hsmlink.h`.
//!
//! PKCS#11 has no standard numbers for the Chinese GM/T algorithms (SM2, SM3,
//! SM4) and vendors disagree, so hsmlink defines its own in the vendor range
//! (`CKK_VENDOR_DEFINED`, `CKM_VENDOR_DEFINED`, `CKA_VENDOR_DEFINED`, all
//! 0x8000_0000) under the prefix 0x4853 ("HS"). Changing a number here breaks
//! every deployed application: append only. A test checks that the C header
//! says the same.

/// Common prefix of every hsmlink vendor number: `0x8000_0000 | 0x4853_0000`.
pub const HSMLINK_VENDOR_BASE: u64 = 0x8000_0000 | 0x4853_0000;

// ---- Key types ----
pub const CKK_HSMLINK_SM2: u64 = HSMLINK_VENDOR_BASE | 0x0001;
pub const CKK_HSMLINK_SM4: u64 = HSMLINK_VENDOR_BASE | 0x0002;

// ---- Mechanisms ----
pub const CKM_HSMLINK_SM2_KEY_PAIR_GEN: u64 = HSMLINK_VENDOR_BASE | 0x0100;
/// SM2 signature over a caller-supplied 32-byte digest (e || Z already applied).
pub const CKM_HSMLINK_SM2: u64 = HSMLINK_VENDOR_BASE | 0x0101;
/// SM2 signature with SM3 and the Z value (GM/T 0009), user id in the parameter.
pub const CKM_HSMLINK_SM2_SM3: u64 = HSMLINK_VENDOR_BASE | 0x0102;
/// SM2 public-key encryption (GM/T 0003.4, C1C3C2).
pub const CKM_HSMLINK_SM2_ENCRYPT: u64 = HSMLINK_VENDOR_BASE | 0x0103;
/// SM2 key exchange (GM/T 0003.3), through `C_DeriveKey`.
pub const CKM_HSMLINK_SM2_KEY_EXCHANGE: u64 = HSMLINK_VENDOR_BASE | 0x0104;
pub const CKM_HSMLINK_SM3: u64 = HSMLINK_VENDOR_BASE | 0x0110;
pub const CKM_HSMLINK_SM3_HMAC: u64 = HSMLINK_VENDOR_BASE | 0x0111;
pub const CKM_HSMLINK_SM4_KEY_GEN: u64 = HSMLINK_VENDOR_BASE | 0x0120;
pub const CKM_HSMLINK_SM4_ECB: u64 = HSMLINK_VENDOR_BASE | 0x0121;
pub const CKM_HSMLINK_SM4_CBC: u64 = HSMLINK_VENDOR_BASE | 0x0122;
pub const CKM_HSMLINK_SM4_CBC_PAD: u64 = HSMLINK_VENDOR_BASE | 0x0123;
pub const CKM_HSMLINK_SM4_CTR: u64 = HSMLINK_VENDOR_BASE | 0x0124;
pub const CKM_HSMLINK_SM4_GCM: u64 = HSMLINK_VENDOR_BASE | 0x0125;
pub const CKM_HSMLINK_SM4_CMAC: u64 = HSMLINK_VENDOR_BASE | 0x0126;
/// ANSI X9.143 / ISO 20038 ("TR-31") key block, versions `D` (AES KBPK),
/// `B` and `C` (TDES KBPK), for `C_WrapKey` / `C_UnwrapKey`; no parameter.
pub const CKM_HSMLINK_TR31: u64 = HSMLINK_VENDOR_BASE | 0x0200;
/// TR-34 (2019) key token import with `C_UnwrapKey`: the unwrapping key is
/// the partition's RSA key-receiving key; the parameter is the two-pass
/// random nonce, or absent for a one-pass token.
pub const CKM_HSMLINK_TR34: u64 = HSMLINK_VENDOR_BASE | 0x0201;

// ---- Attributes ----
/// The header (with optional blocks) of the key block a key was imported
/// from, as received (ASCII); read-only, enforced for the key's life.
pub const CKA_HSMLINK_KEYBLOCK_HEADER: u64 = HSMLINK_VENDOR_BASE | 0x0300;
/// The key block's key version number (two ASCII characters); read-only.
pub const CKA_HSMLINK_KEY_VERSION: u64 = HSMLINK_VENDOR_BASE | 0x0301;
/// The key's state after NIST SP 800-57 part 1 section 5.3 (`CK_ULONG`, one
/// of the `CKS_HSMLINK_*` values below); on every key, on both drivers
/// (the `pkcs11` driver keeps it for the device), moved forward only by
/// `C_SetAttributeValue`, enforced on every use.
pub const CKA_HSMLINK_KEY_STATE: u64 = HSMLINK_VENDOR_BASE | 0x0302;

// ---- Values of CKA_HSMLINK_KEY_STATE ----
// Plain small numbers (values of one attribute, not vendor-range numbers).
/// Made but not yet to be used: no use at all.
pub const CKS_HSMLINK_PRE_ACTIVATION: u64 = 0;
/// In use: every use its usage attributes allow (the default).
pub const CKS_HSMLINK_ACTIVE: u64 = 1;
/// Retired: only processes what it protected before (verify,
/// verify-recover, decrypt, unwrap); never wrapped out.
pub const CKS_HSMLINK_DEACTIVATED: u64 = 2;
/// Known or suspected to be in the wrong hands: as deactivated.
pub const CKS_HSMLINK_COMPROMISED: u64 = 3;
/// The key material is wiped; the object stays for the audit trail: no use.
pub const CKS_HSMLINK_DESTROYED: u64 = 4;

/// Every vendor constant with its C name, for the header check and for logs.
pub const ALL: &[(&str, u64)] = &[
    ("CKK_HSMLINK_SM2", CKK_HSMLINK_SM2),
    ("CKK_HSMLINK_SM4", CKK_HSMLINK_SM4),
    ("CKM_HSMLINK_SM2_KEY_PAIR_GEN", CKM_HSMLINK_SM2_KEY_PAIR_GEN),
    ("CKM_HSMLINK_SM2", CKM_HSMLINK_SM2),
    ("CKM_HSMLINK_SM2_SM3", CKM_HSMLINK_SM2_SM3),
    ("CKM_HSMLINK_SM2_ENCRYPT", CKM_HSMLINK_SM2_ENCRYPT),
    ("CKM_HSMLINK_SM2_KEY_EXCHANGE", CKM_HSMLINK_SM2_KEY_EXCHANGE),
    ("CKM_HSMLINK_SM3", CKM_HSMLINK_SM3),
    ("CKM_HSMLINK_SM3_HMAC", CKM_HSMLINK_SM3_HMAC),
    ("CKM_HSMLINK_SM4_KEY_GEN", CKM_HSMLINK_SM4_KEY_GEN),
    ("CKM_HSMLINK_SM4_ECB", CKM_HSMLINK_SM4_ECB),
    ("CKM_HSMLINK_SM4_CBC", CKM_HSMLINK_SM4_CBC),
    ("CKM_HSMLINK_SM4_CBC_PAD", CKM_HSMLINK_SM4_CBC_PAD),
    ("CKM_HSMLINK_SM4_CTR", CKM_HSMLINK_SM4_CTR),
    ("CKM_HSMLINK_SM4_GCM", CKM_HSMLINK_SM4_GCM),
    ("CKM_HSMLINK_SM4_CMAC", CKM_HSMLINK_SM4_CMAC),
    ("CKM_HSMLINK_TR31", CKM_HSMLINK_TR31),
    ("CKM_HSMLINK_TR34", CKM_HSMLINK_TR34),
    ("CKA_HSMLINK_KEYBLOCK_HEADER", CKA_HSMLINK_KEYBLOCK_HEADER),
    ("CKA_HSMLINK_KEY_VERSION", CKA_HSMLINK_KEY_VERSION),
    ("CKA_HSMLINK_KEY_STATE", CKA_HSMLINK_KEY_STATE),
];

/// The values of `CKA_HSMLINK_KEY_STATE` with their C names, for the header
/// check and for the audit log.
pub const KEY_STATES: &[(&str, u64)] = &[
    ("CKS_HSMLINK_PRE_ACTIVATION", CKS_HSMLINK_PRE_ACTIVATION),
    ("CKS_HSMLINK_ACTIVE", CKS_HSMLINK_ACTIVE),
    ("CKS_HSMLINK_DEACTIVATED", CKS_HSMLINK_DEACTIVATED),
    ("CKS_HSMLINK_COMPROMISED", CKS_HSMLINK_COMPROMISED),
    ("CKS_HSMLINK_DESTROYED", CKS_HSMLINK_DESTROYED),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// include/hsmlink.h must define every constant with the same value.
    #[test]
    fn c_header_matches() {
        let header = include_str!("../../include/hsmlink.h");
        for (name, value) in ALL {
            let wanted = format!("#define {name} 0x{value:08X}UL");
            assert!(
                header
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == wanted),
                "include/hsmlink.h lacks `{wanted}`"
            );
        }
    }

    /// The key-state values too, in decimal (`#define CKS_... 0UL`).
    #[test]
    fn c_header_has_the_key_states() {
        let header = include_str!("../../include/hsmlink.h");
        for (name, value) in KEY_STATES {
            let wanted = format!("#define {name} {value}UL");
            assert!(
                header
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == wanted),
                "include/hsmlink.h lacks `{wanted}`"
            );
        }
        let values: Vec<u64> = KEY_STATES.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn numbers_are_unique_and_vendor_defined() {
        for (i, (name, value)) in ALL.iter().enumerate() {
            assert!(*value >= 0x8000_0000, "{name}");
            for (other, v) in &ALL[i + 1..] {
                assert!(value != v || name[..3] != other[..3], "{name} == {other}");
            }
        }
    }
}
