//! How each attribute type's value is represented in C, so that both ends
//! agree on it: the module converts `CK_ATTRIBUTE`s by this table, the server
//! checks that templates carry values of the right kind.
//!
//! Numbers are those of the PKCS#11 3.0 headers (checked against
//! `cryptoki-sys` in this crate's tests). Attribute types not listed here
//! (vendor-defined ones among them) travel as byte strings.

/// The C representation of an attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeKind {
    /// `CK_BBOOL`: one byte.
    Bool,
    /// `CK_ULONG` and its aliases (`CK_OBJECT_CLASS`, `CK_KEY_TYPE`, ...).
    Ulong,
    /// A byte array, RFC 2279 string, big integer or DER encoding.
    Bytes,
    /// `CK_DATE`: eight ASCII digits, or empty.
    Date,
    /// An array of `CK_ATTRIBUTE` (`CKF_ARRAY_ATTRIBUTE` types).
    Template,
    /// An array of `CK_MECHANISM_TYPE`.
    Mechanisms,
}

/// `CKF_ARRAY_ATTRIBUTE`: set in the type of every attribute-array attribute.
pub const CKF_ARRAY_ATTRIBUTE: u64 = 0x4000_0000;

/// The kind of attribute `attr_type`.
pub fn kind_of(attr_type: u64) -> AttributeKind {
    match attr_type {
        CKA_ALLOWED_MECHANISMS => AttributeKind::Mechanisms,
        t if t & CKF_ARRAY_ATTRIBUTE != 0 && t < 0x8000_0000 => AttributeKind::Template,
        CKA_START_DATE | CKA_END_DATE => AttributeKind::Date,
        t if BOOLS.contains(&t) => AttributeKind::Bool,
        t if ULONGS.contains(&t) => AttributeKind::Ulong,
        _ => AttributeKind::Bytes,
    }
}

pub const CKA_CLASS: u64 = 0x0000;
pub const CKA_TOKEN: u64 = 0x0001;
pub const CKA_PRIVATE: u64 = 0x0002;
pub const CKA_LABEL: u64 = 0x0003;
pub const CKA_UNIQUE_ID: u64 = 0x0004;
pub const CKA_APPLICATION: u64 = 0x0010;
pub const CKA_VALUE: u64 = 0x0011;
pub const CKA_OBJECT_ID: u64 = 0x0012;
pub const CKA_CERTIFICATE_TYPE: u64 = 0x0080;
pub const CKA_ISSUER: u64 = 0x0081;
pub const CKA_SERIAL_NUMBER: u64 = 0x0082;
pub const CKA_TRUSTED: u64 = 0x0086;
pub const CKA_CERTIFICATE_CATEGORY: u64 = 0x0087;
pub const CKA_JAVA_MIDP_SECURITY_DOMAIN: u64 = 0x0088;
pub const CKA_URL: u64 = 0x0089;
pub const CKA_NAME_HASH_ALGORITHM: u64 = 0x008C;
pub const CKA_CHECK_VALUE: u64 = 0x0090;
pub const CKA_KEY_TYPE: u64 = 0x0100;
pub const CKA_SUBJECT: u64 = 0x0101;
pub const CKA_ID: u64 = 0x0102;
pub const CKA_SENSITIVE: u64 = 0x0103;
pub const CKA_ENCRYPT: u64 = 0x0104;
pub const CKA_DECRYPT: u64 = 0x0105;
pub const CKA_WRAP: u64 = 0x0106;
pub const CKA_UNWRAP: u64 = 0x0107;
pub const CKA_SIGN: u64 = 0x0108;
pub const CKA_SIGN_RECOVER: u64 = 0x0109;
pub const CKA_VERIFY: u64 = 0x010A;
pub const CKA_VERIFY_RECOVER: u64 = 0x010B;
pub const CKA_DERIVE: u64 = 0x010C;
pub const CKA_START_DATE: u64 = 0x0110;
pub const CKA_END_DATE: u64 = 0x0111;
pub const CKA_MODULUS: u64 = 0x0120;
pub const CKA_MODULUS_BITS: u64 = 0x0121;
pub const CKA_PUBLIC_EXPONENT: u64 = 0x0122;
pub const CKA_PRIVATE_EXPONENT: u64 = 0x0123;
pub const CKA_PRIME_1: u64 = 0x0124;
pub const CKA_PRIME_2: u64 = 0x0125;
pub const CKA_EXPONENT_1: u64 = 0x0126;
pub const CKA_EXPONENT_2: u64 = 0x0127;
pub const CKA_COEFFICIENT: u64 = 0x0128;
pub const CKA_PUBLIC_KEY_INFO: u64 = 0x0129;
pub const CKA_PRIME: u64 = 0x0130;
pub const CKA_SUBPRIME: u64 = 0x0131;
pub const CKA_BASE: u64 = 0x0132;
pub const CKA_PRIME_BITS: u64 = 0x0133;
pub const CKA_SUBPRIME_BITS: u64 = 0x0134;
pub const CKA_VALUE_BITS: u64 = 0x0160;
pub const CKA_VALUE_LEN: u64 = 0x0161;
pub const CKA_EXTRACTABLE: u64 = 0x0162;
pub const CKA_LOCAL: u64 = 0x0163;
pub const CKA_NEVER_EXTRACTABLE: u64 = 0x0164;
pub const CKA_ALWAYS_SENSITIVE: u64 = 0x0165;
pub const CKA_KEY_GEN_MECHANISM: u64 = 0x0166;
pub const CKA_MODIFIABLE: u64 = 0x0170;
pub const CKA_COPYABLE: u64 = 0x0171;
pub const CKA_DESTROYABLE: u64 = 0x0172;
pub const CKA_EC_PARAMS: u64 = 0x0180;
pub const CKA_EC_POINT: u64 = 0x0181;
pub const CKA_ALWAYS_AUTHENTICATE: u64 = 0x0202;
pub const CKA_WRAP_WITH_TRUSTED: u64 = 0x0210;
pub const CKA_WRAP_TEMPLATE: u64 = CKF_ARRAY_ATTRIBUTE | 0x0211;
pub const CKA_UNWRAP_TEMPLATE: u64 = CKF_ARRAY_ATTRIBUTE | 0x0212;
pub const CKA_DERIVE_TEMPLATE: u64 = CKF_ARRAY_ATTRIBUTE | 0x0213;
pub const CKA_HW_FEATURE_TYPE: u64 = 0x0300;
pub const CKA_RESET_ON_INIT: u64 = 0x0301;
pub const CKA_HAS_RESET: u64 = 0x0302;
pub const CKA_MECHANISM_TYPE: u64 = 0x0500;
pub const CKA_ALLOWED_MECHANISMS: u64 = CKF_ARRAY_ATTRIBUTE | 0x0600;
pub const CKA_PROFILE_ID: u64 = 0x0601;

const BOOLS: &[u64] = &[
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_TRUSTED,
    CKA_SENSITIVE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_DERIVE,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_RESET_ON_INIT,
    CKA_HAS_RESET,
];

const ULONGS: &[u64] = &[
    CKA_CLASS,
    CKA_CERTIFICATE_TYPE,
    CKA_CERTIFICATE_CATEGORY,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_NAME_HASH_ALGORITHM,
    CKA_KEY_TYPE,
    CKA_MODULUS_BITS,
    CKA_PRIME_BITS,
    CKA_SUBPRIME_BITS,
    CKA_VALUE_BITS,
    CKA_VALUE_LEN,
    CKA_KEY_GEN_MECHANISM,
    CKA_HW_FEATURE_TYPE,
    CKA_MECHANISM_TYPE,
    CKA_PROFILE_ID,
    crate::vendor::CKA_HSMLINK_KEY_STATE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number above is the one of the OASIS headers.
    #[test]
    fn numbers_match_the_pkcs11_headers() {
        use cryptoki_sys as sys;
        let pairs: &[(u64, sys::CK_ATTRIBUTE_TYPE)] = &[
            (CKA_CLASS, sys::CKA_CLASS),
            (CKA_TOKEN, sys::CKA_TOKEN),
            (CKA_PRIVATE, sys::CKA_PRIVATE),
            (CKA_LABEL, sys::CKA_LABEL),
            (CKA_UNIQUE_ID, sys::CKA_UNIQUE_ID),
            (CKA_APPLICATION, sys::CKA_APPLICATION),
            (CKA_VALUE, sys::CKA_VALUE),
            (CKA_OBJECT_ID, sys::CKA_OBJECT_ID),
            (CKA_CERTIFICATE_TYPE, sys::CKA_CERTIFICATE_TYPE),
            (CKA_ISSUER, sys::CKA_ISSUER),
            (CKA_SERIAL_NUMBER, sys::CKA_SERIAL_NUMBER),
            (CKA_TRUSTED, sys::CKA_TRUSTED),
            (CKA_CERTIFICATE_CATEGORY, sys::CKA_CERTIFICATE_CATEGORY),
            (
                CKA_JAVA_MIDP_SECURITY_DOMAIN,
                sys::CKA_JAVA_MIDP_SECURITY_DOMAIN,
            ),
            (CKA_URL, sys::CKA_URL),
            (CKA_NAME_HASH_ALGORITHM, sys::CKA_NAME_HASH_ALGORITHM),
            (CKA_CHECK_VALUE, sys::CKA_CHECK_VALUE),
            (CKA_KEY_TYPE, sys::CKA_KEY_TYPE),
            (CKA_SUBJECT, sys::CKA_SUBJECT),
            (CKA_ID, sys::CKA_ID),
            (CKA_SENSITIVE, sys::CKA_SENSITIVE),
            (CKA_ENCRYPT, sys::CKA_ENCRYPT),
            (CKA_DECRYPT, sys::CKA_DECRYPT),
            (CKA_WRAP, sys::CKA_WRAP),
            (CKA_UNWRAP, sys::CKA_UNWRAP),
            (CKA_SIGN, sys::CKA_SIGN),
            (CKA_SIGN_RECOVER, sys::CKA_SIGN_RECOVER),
            (CKA_VERIFY, sys::CKA_VERIFY),
            (CKA_VERIFY_RECOVER, sys::CKA_VERIFY_RECOVER),
            (CKA_DERIVE, sys::CKA_DERIVE),
            (CKA_START_DATE, sys::CKA_START_DATE),
            (CKA_END_DATE, sys::CKA_END_DATE),
            (CKA_MODULUS, sys::CKA_MODULUS),
            (CKA_MODULUS_BITS, sys::CKA_MODULUS_BITS),
            (CKA_PUBLIC_EXPONENT, sys::CKA_PUBLIC_EXPONENT),
            (CKA_PRIVATE_EXPONENT, sys::CKA_PRIVATE_EXPONENT),
            (CKA_PRIME_1, sys::CKA_PRIME_1),
            (CKA_PRIME_2, sys::CKA_PRIME_2),
            (CKA_EXPONENT_1, sys::CKA_EXPONENT_1),
            (CKA_EXPONENT_2, sys::CKA_EXPONENT_2),
            (CKA_COEFFICIENT, sys::CKA_COEFFICIENT),
            (CKA_PUBLIC_KEY_INFO, sys::CKA_PUBLIC_KEY_INFO),
            (CKA_PRIME, sys::CKA_PRIME),
            (CKA_SUBPRIME, sys::CKA_SUBPRIME),
            (CKA_BASE, sys::CKA_BASE),
            (CKA_PRIME_BITS, sys::CKA_PRIME_BITS),
            (CKA_SUBPRIME_BITS, sys::CKA_SUBPRIME_BITS),
            (CKA_VALUE_BITS, sys::CKA_VALUE_BITS),
            (CKA_VALUE_LEN, sys::CKA_VALUE_LEN),
            (CKA_EXTRACTABLE, sys::CKA_EXTRACTABLE),
            (CKA_LOCAL, sys::CKA_LOCAL),
            (CKA_NEVER_EXTRACTABLE, sys::CKA_NEVER_EXTRACTABLE),
            (CKA_ALWAYS_SENSITIVE, sys::CKA_ALWAYS_SENSITIVE),
            (CKA_KEY_GEN_MECHANISM, sys::CKA_KEY_GEN_MECHANISM),
            (CKA_MODIFIABLE, sys::CKA_MODIFIABLE),
            (CKA_COPYABLE, sys::CKA_COPYABLE),
            (CKA_DESTROYABLE, sys::CKA_DESTROYABLE),
            (CKA_EC_PARAMS, sys::CKA_EC_PARAMS),
            (CKA_EC_POINT, sys::CKA_EC_POINT),
            (CKA_ALWAYS_AUTHENTICATE, sys::CKA_ALWAYS_AUTHENTICATE),
            (CKA_WRAP_WITH_TRUSTED, sys::CKA_WRAP_WITH_TRUSTED),
            (CKA_WRAP_TEMPLATE, sys::CKA_WRAP_TEMPLATE),
            (CKA_UNWRAP_TEMPLATE, sys::CKA_UNWRAP_TEMPLATE),
            (CKA_DERIVE_TEMPLATE, sys::CKA_DERIVE_TEMPLATE),
            (CKA_HW_FEATURE_TYPE, sys::CKA_HW_FEATURE_TYPE),
            (CKA_RESET_ON_INIT, sys::CKA_RESET_ON_INIT),
            (CKA_HAS_RESET, sys::CKA_HAS_RESET),
            (CKA_MECHANISM_TYPE, sys::CKA_MECHANISM_TYPE),
            (CKA_ALLOWED_MECHANISMS, sys::CKA_ALLOWED_MECHANISMS),
            (CKA_PROFILE_ID, sys::CKA_PROFILE_ID),
        ];
        for (ours, theirs) in pairs {
            #[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
            let theirs = u64::from(*theirs);
            assert_eq!(*ours, theirs, "attribute {ours:#x}");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(CKA_TOKEN), AttributeKind::Bool);
        assert_eq!(kind_of(CKA_CLASS), AttributeKind::Ulong);
        assert_eq!(kind_of(CKA_VALUE), AttributeKind::Bytes);
        assert_eq!(kind_of(CKA_END_DATE), AttributeKind::Date);
        assert_eq!(kind_of(CKA_WRAP_TEMPLATE), AttributeKind::Template);
        assert_eq!(kind_of(CKA_ALLOWED_MECHANISMS), AttributeKind::Mechanisms);
        // Vendor-defined attributes are byte strings.
        assert_eq!(kind_of(0x8000_0001), AttributeKind::Bytes);
        assert_eq!(kind_of(0xC000_0001), AttributeKind::Bytes);
    }
}
