//! The attribute policy, as data (PKCS#11 3.0 section 4, tables of common
//! object, storage, data, certificate and key attributes).
//!
//! Each object class (and key or certificate type) has a profile: the list of
//! attributes it may hold, each with flags saying whether it is required at
//! creation, derived by the token, modifiable, a secret, one-way, and what its
//! default is. Template checks, `C_SetAttributeValue`, `C_CopyObject`,
//! `C_GetAttributeValue` and the store's split into clear and sealed
//! attributes all read this table instead of scattering `if`s (the model is
//! kryoptic's `object/factory.rs`).

use std::collections::BTreeMap;

use cryptoki_sys::{
    CK_UNAVAILABLE_INFORMATION, CKC_X_509, CKK_AES, CKK_DES2, CKK_DES3, CKK_EC, CKK_EC_EDWARDS,
    CKK_GENERIC_SECRET, CKK_RSA, CKK_SHA_1_HMAC, CKK_SHA224_HMAC, CKK_SHA256_HMAC, CKK_SHA384_HMAC,
    CKK_SHA512_HMAC, CKO_CERTIFICATE, CKO_DATA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY,
    CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT,
};
use hsmlink_protocol::attribute_kind::{self as cka, AttributeKind, kind_of};
use hsmlink_protocol::vendor::{
    CKA_HSMLINK_KEY_STATE, CKA_HSMLINK_KEY_VERSION, CKA_HSMLINK_KEYBLOCK_HEADER, CKK_HSMLINK_SM2,
    CKK_HSMLINK_SM4, CKS_HSMLINK_ACTIVE,
};
use hsmlink_protocol::{Attribute, AttributeValue};

use crate::error::{CkResult, Ckr};
use crate::key_state::{self, State};

/// Must be in the creation template (`CKR_TEMPLATE_INCOMPLETE` otherwise).
pub const REQUIRED: u16 = 1 << 0;
/// Set by the token only, never by a template (`CKR_ATTRIBUTE_READ_ONLY`).
pub const DERIVED: u16 = 1 << 1;
/// `C_SetAttributeValue` may change it (if the object is `CKA_MODIFIABLE`).
pub const MODIFIABLE: u16 = 1 << 2;
/// Key material: `Sensitive` when the key is sensitive or unextractable;
/// always sealed in the store.
pub const SECRET: u16 = 1 << 3;
/// May change only from false to true (`CKA_SENSITIVE`, `CKA_WRAP_WITH_TRUSTED`).
pub const TO_TRUE_ONLY: u16 = 1 << 4;
/// May change only from true to false (`CKA_EXTRACTABLE`, `CKA_COPYABLE`).
pub const TO_FALSE_ONLY: u16 = 1 << 5;
/// Only the SO may set it to true (`CKA_TRUSTED`).
pub const SO_SETS_TRUE: u16 = 1 << 6;
/// Stays in clear in the store even for a private object: needed to index it.
pub const INDEX: u16 = 1 << 7;
/// May be changed by `C_CopyObject` although not by `C_SetAttributeValue`.
pub const COPY_CHANGES: u16 = 1 << 8;
/// A key state (`CKA_HSMLINK_KEY_STATE`): its moves follow
/// [`key_state::check_transition`]; the move to destroyed wipes every
/// `SECRET` attribute.
pub const LIFE_STATE: u16 = 1 << 9;

/// The value an attribute takes when the template does not give one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// Absent unless given.
    None,
    Bool(bool),
    Ulong(u64),
    /// An empty byte string.
    Empty,
}

#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub attr: u64,
    pub flags: u16,
    pub default: DefaultValue,
}

const fn r(attr: u64, flags: u16, default: DefaultValue) -> Rule {
    Rule {
        attr,
        flags,
        default,
    }
}

use DefaultValue::{Bool, Empty, None as Absent, Ulong};

/// Every object: the common and storage attributes. `CKA_PRIVATE` is in
/// each class's list, since its default depends on the class.
const STORAGE: &[Rule] = &[
    r(cka::CKA_CLASS, REQUIRED | INDEX, Absent),
    r(cka::CKA_TOKEN, INDEX | COPY_CHANGES, Bool(false)),
    r(
        cka::CKA_MODIFIABLE,
        COPY_CHANGES | TO_FALSE_ONLY,
        Bool(true),
    ),
    r(cka::CKA_COPYABLE, MODIFIABLE | TO_FALSE_ONLY, Bool(true)),
    r(cka::CKA_DESTROYABLE, MODIFIABLE, Bool(true)),
    r(cka::CKA_LABEL, MODIFIABLE, Empty),
    r(cka::CKA_UNIQUE_ID, DERIVED, Absent),
];

const PUBLIC_BY_DEFAULT: &[Rule] = &[r(
    cka::CKA_PRIVATE,
    INDEX | COPY_CHANGES | TO_TRUE_ONLY,
    Bool(false),
)];
const PRIVATE_BY_DEFAULT: &[Rule] = &[r(
    cka::CKA_PRIVATE,
    INDEX | COPY_CHANGES | TO_TRUE_ONLY,
    Bool(true),
)];

const DATA: &[Rule] = &[
    r(cka::CKA_APPLICATION, MODIFIABLE, Empty),
    r(cka::CKA_OBJECT_ID, MODIFIABLE, Empty),
    r(cka::CKA_VALUE, MODIFIABLE, Empty),
];

const CERTIFICATE: &[Rule] = &[
    r(cka::CKA_CERTIFICATE_TYPE, REQUIRED | INDEX, Absent),
    r(cka::CKA_TRUSTED, MODIFIABLE | SO_SETS_TRUE, Bool(false)),
    r(cka::CKA_CERTIFICATE_CATEGORY, MODIFIABLE, Ulong(0)),
    r(cka::CKA_CHECK_VALUE, 0, Absent),
    r(cka::CKA_START_DATE, MODIFIABLE, Empty),
    r(cka::CKA_END_DATE, MODIFIABLE, Empty),
    r(cka::CKA_PUBLIC_KEY_INFO, 0, Empty),
];

const X509: &[Rule] = &[
    r(cka::CKA_SUBJECT, REQUIRED, Absent),
    r(cka::CKA_ID, MODIFIABLE, Empty),
    r(cka::CKA_ISSUER, MODIFIABLE, Empty),
    r(cka::CKA_SERIAL_NUMBER, MODIFIABLE, Empty),
    r(cka::CKA_VALUE, REQUIRED, Absent),
    r(cka::CKA_URL, 0, Empty),
    r(cka::CKA_JAVA_MIDP_SECURITY_DOMAIN, 0, Ulong(0)),
    r(cka::CKA_NAME_HASH_ALGORITHM, 0, Absent),
];

const KEY: &[Rule] = &[
    r(cka::CKA_KEY_TYPE, REQUIRED | INDEX, Absent),
    r(cka::CKA_ID, MODIFIABLE, Empty),
    r(cka::CKA_START_DATE, MODIFIABLE, Empty),
    r(cka::CKA_END_DATE, MODIFIABLE, Empty),
    r(cka::CKA_DERIVE, MODIFIABLE, Bool(false)),
    r(cka::CKA_LOCAL, DERIVED, Bool(false)),
    r(
        cka::CKA_KEY_GEN_MECHANISM,
        DERIVED,
        Ulong(CK_UNAVAILABLE_INFORMATION),
    ),
    // Enforced by the soft driver's key checks (soft/operations).
    r(cka::CKA_ALLOWED_MECHANISMS, 0, Absent),
    // NIST SP 800-57 key state (key_state.rs), enforced on every use.
    r(
        CKA_HSMLINK_KEY_STATE,
        MODIFIABLE | LIFE_STATE,
        Ulong(CKS_HSMLINK_ACTIVE),
    ),
];

const PUBLIC_KEY: &[Rule] = &[
    r(cka::CKA_SUBJECT, MODIFIABLE, Empty),
    r(cka::CKA_ENCRYPT, MODIFIABLE, Bool(true)),
    r(cka::CKA_VERIFY, MODIFIABLE, Bool(true)),
    r(cka::CKA_VERIFY_RECOVER, MODIFIABLE, Bool(true)),
    r(cka::CKA_WRAP, MODIFIABLE, Bool(true)),
    r(cka::CKA_TRUSTED, MODIFIABLE | SO_SETS_TRUE, Bool(false)),
    r(cka::CKA_WRAP_TEMPLATE, 0, Absent),
    r(cka::CKA_PUBLIC_KEY_INFO, 0, Empty),
];

const PRIVATE_KEY: &[Rule] = &[
    r(cka::CKA_SUBJECT, MODIFIABLE, Empty),
    r(cka::CKA_SENSITIVE, MODIFIABLE | TO_TRUE_ONLY, Bool(true)),
    r(cka::CKA_DECRYPT, MODIFIABLE, Bool(true)),
    r(cka::CKA_SIGN, MODIFIABLE, Bool(true)),
    r(cka::CKA_SIGN_RECOVER, MODIFIABLE, Bool(true)),
    r(cka::CKA_UNWRAP, MODIFIABLE, Bool(true)),
    r(
        cka::CKA_EXTRACTABLE,
        MODIFIABLE | TO_FALSE_ONLY,
        Bool(false),
    ),
    r(cka::CKA_ALWAYS_SENSITIVE, DERIVED, Bool(false)),
    r(cka::CKA_NEVER_EXTRACTABLE, DERIVED, Bool(false)),
    r(
        cka::CKA_WRAP_WITH_TRUSTED,
        MODIFIABLE | TO_TRUE_ONLY,
        Bool(false),
    ),
    r(cka::CKA_UNWRAP_TEMPLATE, 0, Absent),
    r(cka::CKA_ALWAYS_AUTHENTICATE, 0, Bool(false)),
    r(cka::CKA_PUBLIC_KEY_INFO, 0, Empty),
];

const SECRET_KEY: &[Rule] = &[
    r(cka::CKA_SENSITIVE, MODIFIABLE | TO_TRUE_ONLY, Bool(true)),
    r(cka::CKA_ENCRYPT, MODIFIABLE, Bool(true)),
    r(cka::CKA_DECRYPT, MODIFIABLE, Bool(true)),
    r(cka::CKA_SIGN, MODIFIABLE, Bool(true)),
    r(cka::CKA_VERIFY, MODIFIABLE, Bool(true)),
    r(cka::CKA_WRAP, MODIFIABLE, Bool(true)),
    r(cka::CKA_UNWRAP, MODIFIABLE, Bool(true)),
    r(
        cka::CKA_EXTRACTABLE,
        MODIFIABLE | TO_FALSE_ONLY,
        Bool(false),
    ),
    r(cka::CKA_ALWAYS_SENSITIVE, DERIVED, Bool(false)),
    r(cka::CKA_NEVER_EXTRACTABLE, DERIVED, Bool(false)),
    r(cka::CKA_CHECK_VALUE, 0, Absent),
    r(
        cka::CKA_WRAP_WITH_TRUSTED,
        MODIFIABLE | TO_TRUE_ONLY,
        Bool(false),
    ),
    r(cka::CKA_TRUSTED, MODIFIABLE | SO_SETS_TRUE, Bool(false)),
    r(cka::CKA_WRAP_TEMPLATE, 0, Absent),
    r(cka::CKA_UNWRAP_TEMPLATE, 0, Absent),
    // Set by the token on keys imported from an X9.143 key block
    // (soft/operations/keymgmt.rs), enforced on every use.
    r(CKA_HSMLINK_KEYBLOCK_HEADER, DERIVED, Absent),
    r(CKA_HSMLINK_KEY_VERSION, DERIVED, Absent),
];

const RSA_PUBLIC: &[Rule] = &[
    r(cka::CKA_MODULUS, REQUIRED, Absent),
    r(cka::CKA_MODULUS_BITS, DERIVED, Absent),
    r(cka::CKA_PUBLIC_EXPONENT, REQUIRED, Absent),
];

const RSA_PRIVATE: &[Rule] = &[
    r(cka::CKA_MODULUS, REQUIRED, Absent),
    r(cka::CKA_PUBLIC_EXPONENT, 0, Absent),
    r(cka::CKA_PRIVATE_EXPONENT, REQUIRED | SECRET, Absent),
    r(cka::CKA_PRIME_1, SECRET, Absent),
    r(cka::CKA_PRIME_2, SECRET, Absent),
    r(cka::CKA_EXPONENT_1, SECRET, Absent),
    r(cka::CKA_EXPONENT_2, SECRET, Absent),
    r(cka::CKA_COEFFICIENT, SECRET, Absent),
];

/// EC, EdDSA and SM2 public keys: curve and point.
const EC_PUBLIC: &[Rule] = &[
    r(cka::CKA_EC_PARAMS, REQUIRED, Absent),
    r(cka::CKA_EC_POINT, REQUIRED, Absent),
];

const EC_PRIVATE: &[Rule] = &[
    r(cka::CKA_EC_PARAMS, REQUIRED, Absent),
    r(cka::CKA_VALUE, REQUIRED | SECRET, Absent),
];

const SECRET_VALUE: &[Rule] = &[
    r(cka::CKA_VALUE, REQUIRED | SECRET, Absent),
    r(cka::CKA_VALUE_LEN, DERIVED, Absent),
];

/// The object classes the token holds.
const CLASSES: &[u64] = &[
    CKO_DATA,
    CKO_CERTIFICATE,
    CKO_PUBLIC_KEY,
    CKO_PRIVATE_KEY,
    CKO_SECRET_KEY,
];

/// Asymmetric key types, and the symmetric ones with their allowed lengths
/// in bytes (inclusive range).
const ASYMMETRIC: &[u64] = &[CKK_RSA, CKK_EC, CKK_EC_EDWARDS, CKK_HSMLINK_SM2];
const SYMMETRIC: &[(u64, usize, usize)] = &[
    (CKK_AES, 16, 32),
    (CKK_HSMLINK_SM4, 16, 16),
    // Parity bits are not checked (see README, TDES).
    (CKK_DES2, 16, 16),
    (CKK_DES3, 24, 24),
    (CKK_GENERIC_SECRET, 1, 512),
    (CKK_SHA_1_HMAC, 1, 512),
    (CKK_SHA224_HMAC, 1, 512),
    (CKK_SHA256_HMAC, 1, 512),
    (CKK_SHA384_HMAC, 1, 512),
    (CKK_SHA512_HMAC, 1, 512),
];

/// The profile of one kind of object: every attribute it may hold.
#[derive(Clone, Debug)]
pub struct Profile {
    pub class: u64,
    rules: Vec<Rule>,
}

impl Profile {
    /// The profile for a class and its key or certificate type. Unknown
    /// classes and types are `CKR_ATTRIBUTE_VALUE_INVALID`; a key type that
    /// does not fit the class is `CKR_TEMPLATE_INCONSISTENT`.
    pub fn for_object(class: u64, subtype: Option<u64>) -> CkResult<Self> {
        if !CLASSES.contains(&class) {
            return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
        }
        let mut parts: Vec<&[Rule]> = vec![STORAGE];
        match class {
            CKO_DATA => parts.extend([PUBLIC_BY_DEFAULT, DATA]),
            CKO_CERTIFICATE => {
                let cert_type = subtype.ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?;
                if cert_type != CKC_X_509 {
                    return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                parts.extend([PUBLIC_BY_DEFAULT, CERTIFICATE, X509]);
            }
            _ => {
                let key_type = subtype.ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?;
                let symmetric = SYMMETRIC.iter().any(|(k, _, _)| *k == key_type);
                if !symmetric && !ASYMMETRIC.contains(&key_type) {
                    return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                if symmetric != (class == CKO_SECRET_KEY) {
                    return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
                }
                parts.push(KEY);
                match (class, key_type) {
                    (CKO_SECRET_KEY, _) => {
                        parts.extend([PRIVATE_BY_DEFAULT, SECRET_KEY, SECRET_VALUE])
                    }
                    (CKO_PUBLIC_KEY, CKK_RSA) => {
                        parts.extend([PUBLIC_BY_DEFAULT, PUBLIC_KEY, RSA_PUBLIC])
                    }
                    (CKO_PUBLIC_KEY, _) => parts.extend([PUBLIC_BY_DEFAULT, PUBLIC_KEY, EC_PUBLIC]),
                    (_, CKK_RSA) => parts.extend([PRIVATE_BY_DEFAULT, PRIVATE_KEY, RSA_PRIVATE]),
                    _ => parts.extend([PRIVATE_BY_DEFAULT, PRIVATE_KEY, EC_PRIVATE]),
                }
            }
        }
        // Later parts refine earlier ones (CKA_ID, CKA_SUBJECT, ...): keep one
        // rule per attribute, the most specific.
        let mut rules: Vec<Rule> = Vec::new();
        for rule in parts.into_iter().flatten() {
            match rules.iter_mut().find(|r| r.attr == rule.attr) {
                Some(existing) => *existing = *rule,
                None => rules.push(*rule),
            }
        }
        Ok(Self { class, rules })
    }

    /// The profile of an existing object's attributes.
    pub fn of(attrs: &BTreeMap<u64, AttributeValue>) -> CkResult<Self> {
        let class = ulong(attrs.get(&cka::CKA_CLASS)).ok_or(Ckr::GENERAL)?;
        let subtype = ulong(attrs.get(&cka::CKA_KEY_TYPE))
            .or_else(|| ulong(attrs.get(&cka::CKA_CERTIFICATE_TYPE)));
        Self::for_object(class, subtype)
    }

    pub fn rule(&self, attr: u64) -> Option<&Rule> {
        self.rules.iter().find(|r| r.attr == attr)
    }

    pub fn flags(&self, attr: u64) -> u16 {
        self.rule(attr).map_or(0, |r| r.flags)
    }

    pub fn is_key(&self) -> bool {
        matches!(
            self.class,
            CKO_PRIVATE_KEY | CKO_SECRET_KEY | CKO_PUBLIC_KEY
        )
    }
}

/// Checks a template's shape: each value of the kind its type has
/// (`CKR_ATTRIBUTE_VALUE_INVALID`), no type twice with two values
/// (`CKR_TEMPLATE_INCONSISTENT`). Returns it as a map.
pub fn template_map(template: &[Attribute]) -> CkResult<BTreeMap<u64, AttributeValue>> {
    let mut map = BTreeMap::new();
    for attribute in template {
        check_kind(attribute)?;
        let attr = attribute.attr_type.0;
        if let Some(previous) = map.insert(attr, attribute.value.clone())
            && previous != attribute.value
        {
            return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
        }
    }
    Ok(map)
}

fn check_kind(attribute: &Attribute) -> CkResult<()> {
    let ok = match (kind_of(attribute.attr_type.0), &attribute.value) {
        (AttributeKind::Bool, AttributeValue::Bool(_))
        | (AttributeKind::Ulong, AttributeValue::Ulong(_))
        | (AttributeKind::Bytes, AttributeValue::Bytes(_))
        | (AttributeKind::Mechanisms, AttributeValue::Mechanisms(_)) => true,
        (AttributeKind::Date, AttributeValue::Bytes(b)) => {
            b.is_empty() || (b.len() == 8 && b.iter().all(u8::is_ascii_digit))
        }
        (AttributeKind::Template, AttributeValue::Template(inner)) => {
            inner.iter().all(|a| check_kind(a).is_ok())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))
    }
}

/// Who is asking: the SO may set `CKA_TRUSTED`; the user moves key states
/// (the SO marks keys compromised only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    So,
    User,
    /// A session without a login.
    Other,
}

/// A new object's attributes from a `C_CreateObject` template: every
/// attribute of its profile, template values checked, defaults filled in,
/// derived attributes computed. `unique_id` becomes `CKA_UNIQUE_ID`.
pub fn new_object(
    template: &[Attribute],
    actor: Actor,
    unique_id: &str,
) -> CkResult<BTreeMap<u64, AttributeValue>> {
    let given = template_map(template)?;
    let class = match given.get(&cka::CKA_CLASS) {
        Some(AttributeValue::Ulong(class)) => *class,
        Some(_) => return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
        None => return Err(Ckr(CKR_TEMPLATE_INCOMPLETE)),
    };
    let subtype = match class {
        CKO_CERTIFICATE => ulong(given.get(&cka::CKA_CERTIFICATE_TYPE)),
        CKO_PUBLIC_KEY | CKO_PRIVATE_KEY | CKO_SECRET_KEY => ulong(given.get(&cka::CKA_KEY_TYPE)),
        _ => None,
    };
    let profile = Profile::for_object(class, subtype)?;
    for attr in given.keys() {
        let rule = profile.rule(*attr).ok_or(Ckr(CKR_ATTRIBUTE_TYPE_INVALID))?;
        if rule.flags & DERIVED != 0 {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
    }
    let mut attrs = BTreeMap::new();
    for rule in &profile.rules {
        let value = match given.get(&rule.attr) {
            Some(value) => value.clone(),
            None if rule.flags & REQUIRED != 0 => return Err(Ckr(CKR_TEMPLATE_INCOMPLETE)),
            None => match rule.default {
                Absent => continue,
                Bool(b) => AttributeValue::Bool(b),
                Ulong(u) => AttributeValue::Ulong(u),
                Empty => AttributeValue::Bytes(Vec::new()),
            },
        };
        attrs.insert(rule.attr, value);
    }
    if actor != Actor::So && attrs.get(&cka::CKA_TRUSTED) == Some(&AttributeValue::Bool(true)) {
        return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
    }
    if let Some(state) = ulong(attrs.get(&CKA_HSMLINK_KEY_STATE)) {
        key_state::check_initial(state)?;
    }
    check_values(&profile, &attrs)?;
    derive(&profile, &mut attrs, unique_id);
    Ok(attrs)
}

/// Values that have the right kind but are wrong for the key type.
fn check_values(profile: &Profile, attrs: &BTreeMap<u64, AttributeValue>) -> CkResult<()> {
    if key_life(attrs) == State::Destroyed {
        // Its material is gone; nothing left to check.
        return Ok(());
    }
    if profile.class == CKO_SECRET_KEY {
        let key_type = ulong(attrs.get(&cka::CKA_KEY_TYPE)).ok_or(Ckr::GENERAL)?;
        let len = bytes(attrs.get(&cka::CKA_VALUE)).map_or(0, <[u8]>::len);
        let (_, min, max) = SYMMETRIC
            .iter()
            .find(|(k, _, _)| *k == key_type)
            .ok_or(Ckr::GENERAL)?;
        let aes_sizes_ok = key_type != CKK_AES || matches!(len, 16 | 24 | 32);
        if len < *min || len > *max || !aes_sizes_ok {
            return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
        }
    }
    for attr in [
        cka::CKA_MODULUS,
        cka::CKA_PUBLIC_EXPONENT,
        cka::CKA_PRIVATE_EXPONENT,
        cka::CKA_EC_PARAMS,
        cka::CKA_EC_POINT,
        cka::CKA_SUBJECT,
    ] {
        if profile.flags(attr) & REQUIRED != 0
            && bytes(attrs.get(&attr)).is_some_and(<[u8]>::is_empty)
        {
            return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
        }
    }
    Ok(())
}

/// The attributes the token computes.
fn derive(profile: &Profile, attrs: &mut BTreeMap<u64, AttributeValue>, unique_id: &str) {
    attrs.insert(
        cka::CKA_UNIQUE_ID,
        AttributeValue::Bytes(unique_id.as_bytes().to_vec()),
    );
    if profile.rule(cka::CKA_VALUE_LEN).is_some() {
        let len = bytes(attrs.get(&cka::CKA_VALUE)).map_or(0, <[u8]>::len);
        attrs.insert(cka::CKA_VALUE_LEN, AttributeValue::Ulong(len as u64));
    }
    if profile.rule(cka::CKA_MODULUS_BITS).is_some()
        && let Some(modulus) = bytes(attrs.get(&cka::CKA_MODULUS))
    {
        let leading = modulus.iter().take_while(|b| **b == 0).count();
        let bits = modulus[leading..].first().map_or(0, |b| {
            (modulus.len() - leading) * 8 - b.leading_zeros() as usize
        });
        attrs.insert(cka::CKA_MODULUS_BITS, AttributeValue::Ulong(bits as u64));
    }
    // An imported key was never "always sensitive" nor "never extractable"
    // (section 4.9): the defaults of false stand.
}

/// Where a key made by the token comes from, for the attributes only the
/// token sets (section 4.9: `CKA_LOCAL`, `CKA_KEY_GEN_MECHANISM`,
/// `CKA_ALWAYS_SENSITIVE`, `CKA_NEVER_EXTRACTABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `C_GenerateKey`/`C_GenerateKeyPair` with this mechanism.
    Generated(u64),
    /// `C_UnwrapKey`: the value has been outside the token.
    Unwrapped,
    /// `C_DeriveKey` from a base key with these `CKA_ALWAYS_SENSITIVE` and
    /// `CKA_NEVER_EXTRACTABLE`.
    Derived {
        always_sensitive: bool,
        never_extractable: bool,
    },
}

/// The attributes of a key the token makes: the caller's `template`, whose
/// class and key type may be left out (they are `class` and `key_type`;
/// other values are `CKR_TEMPLATE_INCONSISTENT`), less the attributes in
/// `consumed` (parameters of the generation, such as `CKA_VALUE_LEN`), plus
/// the `computed` values (key material, public values), which the template
/// may not contradict; then the profile's checks and defaults, and the
/// attributes of `origin`.
pub fn token_made_key(
    template: &[Attribute],
    consumed: &[u64],
    (class, key_type): (u64, u64),
    computed: Vec<(u64, AttributeValue)>,
    actor: Actor,
    unique_id: &str,
    origin: Origin,
) -> CkResult<BTreeMap<u64, AttributeValue>> {
    let mut given = template_map(template)?;
    for attr in consumed {
        given.remove(attr);
    }
    for (attr, wanted) in [(cka::CKA_CLASS, class), (cka::CKA_KEY_TYPE, key_type)] {
        match given.get(&attr) {
            None => {
                given.insert(attr, AttributeValue::Ulong(wanted));
            }
            Some(AttributeValue::Ulong(v)) if *v == wanted => {}
            Some(_) => return Err(Ckr(CKR_TEMPLATE_INCONSISTENT)),
        }
    }
    for (attr, value) in computed {
        if given.get(&attr).is_some_and(|v| *v != value) {
            return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
        }
        given.insert(attr, value);
    }
    let full: Vec<Attribute> = given
        .iter()
        .map(|(t, v)| Attribute::new(*t, v.clone()))
        .collect();
    let mut attrs = new_object(&full, actor, unique_id)?;
    let profile = Profile::of(&attrs)?;
    let sensitive = boolean(attrs.get(&cka::CKA_SENSITIVE)) == Some(true);
    let extractable = boolean(attrs.get(&cka::CKA_EXTRACTABLE)) == Some(true);
    let (local, mechanism, always_sensitive, never_extractable) = match origin {
        Origin::Generated(m) => (true, Some(m), sensitive, !extractable),
        Origin::Unwrapped => (false, None, false, false),
        Origin::Derived {
            always_sensitive,
            never_extractable,
        } => (
            false,
            None,
            always_sensitive && sensitive,
            never_extractable && !extractable,
        ),
    };
    attrs.insert(cka::CKA_LOCAL, AttributeValue::Bool(local));
    if let Some(m) = mechanism {
        attrs.insert(cka::CKA_KEY_GEN_MECHANISM, AttributeValue::Ulong(m));
    }
    if profile.rule(cka::CKA_ALWAYS_SENSITIVE).is_some() {
        attrs.insert(
            cka::CKA_ALWAYS_SENSITIVE,
            AttributeValue::Bool(always_sensitive),
        );
        attrs.insert(
            cka::CKA_NEVER_EXTRACTABLE,
            AttributeValue::Bool(never_extractable),
        );
    }
    Ok(attrs)
}

/// Applies a `C_SetAttributeValue` (or, with `copying`, a `C_CopyObject`)
/// template to `attrs`, all or nothing.
pub fn modify(
    attrs: &mut BTreeMap<u64, AttributeValue>,
    template: &[Attribute],
    actor: Actor,
    copying: bool,
) -> CkResult<()> {
    let profile = Profile::of(attrs)?;
    let changes = template_map(template)?;
    let mut next = attrs.clone();
    for (attr, value) in changes {
        let rule = profile.rule(attr).ok_or(Ckr(CKR_ATTRIBUTE_TYPE_INVALID))?;
        let current = next.get(&attr);
        if current == Some(&value) {
            continue;
        }
        let allowed = rule.flags & MODIFIABLE != 0 || (copying && rule.flags & COPY_CHANGES != 0);
        if !allowed || rule.flags & DERIVED != 0 {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        let (old, new) = (boolean(current), boolean(Some(&value)));
        if rule.flags & TO_TRUE_ONLY != 0 && !(old == Some(false) && new == Some(true)) {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        if rule.flags & TO_FALSE_ONLY != 0 && !(old == Some(true) && new == Some(false)) {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        if rule.flags & SO_SETS_TRUE != 0 && new == Some(true) && actor != Actor::So {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        if rule.flags & LIFE_STATE != 0 {
            let to =
                State::from_value(ulong(Some(&value)).ok_or(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))?)?;
            key_state::check_transition(State::of(ulong(current)), to, actor)?;
        }
        next.insert(attr, value);
    }
    // A destroyed key keeps its object, not its material (on every path
    // that reaches the state; the removed values are wiped on free).
    if key_life(&next) == State::Destroyed {
        next.retain(|attr, _| profile.flags(*attr) & SECRET == 0);
    }
    // Class-level checks still hold (nothing above changes lengths of key
    // values, but keep the invariant in one place).
    check_values(&profile, &next)?;
    *attrs = next;
    Ok(())
}

/// The key state of an object's attributes (active for a key stored before
/// key states, and for objects that are not keys).
pub fn key_life(attrs: &BTreeMap<u64, AttributeValue>) -> State {
    State::of(ulong(attrs.get(&CKA_HSMLINK_KEY_STATE)))
}

/// What `C_GetAttributeValue` may reveal of `attr`.
pub fn is_hidden(profile: &Profile, attrs: &BTreeMap<u64, AttributeValue>, attr: u64) -> bool {
    profile.flags(attr) & SECRET != 0
        && (boolean(attrs.get(&cka::CKA_SENSITIVE)) == Some(true)
            || boolean(attrs.get(&cka::CKA_EXTRACTABLE)) == Some(false))
}

/// Whether the store keeps `attr` in clear: index attributes always; for a
/// public object everything but key material.
pub fn stored_in_clear(profile: &Profile, private: bool, attr: u64) -> bool {
    let flags = profile.flags(attr);
    if flags & SECRET != 0 {
        return false;
    }
    !private || flags & INDEX != 0
}

pub fn ulong(value: Option<&AttributeValue>) -> Option<u64> {
    match value {
        Some(AttributeValue::Ulong(v)) => Some(*v),
        _ => None,
    }
}

pub fn boolean(value: Option<&AttributeValue>) -> Option<bool> {
    match value {
        Some(AttributeValue::Bool(v)) => Some(*v),
        _ => None,
    }
}

pub fn bytes(value: Option<&AttributeValue>) -> Option<&[u8]> {
    match value {
        Some(AttributeValue::Bytes(v)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(attr: u64, value: AttributeValue) -> Attribute {
        Attribute::new(attr, value)
    }

    #[test]
    fn every_profile_builds_and_has_no_duplicates() {
        for class in CLASSES {
            let subtypes: Vec<Option<u64>> = match *class {
                CKO_DATA => vec![None],
                CKO_CERTIFICATE => vec![Some(CKC_X_509)],
                CKO_SECRET_KEY => SYMMETRIC.iter().map(|(k, _, _)| Some(*k)).collect(),
                _ => ASYMMETRIC.iter().map(|k| Some(*k)).collect(),
            };
            for subtype in subtypes {
                let p = Profile::for_object(*class, subtype).unwrap();
                let mut seen = std::collections::HashSet::new();
                for rule in &p.rules {
                    assert!(seen.insert(rule.attr), "{class:#x} {:#x}", rule.attr);
                }
            }
        }
    }

    #[test]
    fn aes_key_lengths() {
        for (len, ok) in [
            (15, false),
            (16, true),
            (24, true),
            (20, false),
            (32, true),
            (33, false),
        ] {
            let t = [
                a(cka::CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
                a(cka::CKA_KEY_TYPE, AttributeValue::Ulong(CKK_AES)),
                a(cka::CKA_VALUE, AttributeValue::Bytes(vec![1; len])),
            ];
            let r = new_object(&t, Actor::Other, "id");
            assert_eq!(r.is_ok(), ok, "{len}");
            if let Ok(attrs) = r {
                assert_eq!(ulong(attrs.get(&cka::CKA_VALUE_LEN)), Some(len as u64));
            }
        }
    }

    #[test]
    fn tdes_key_lengths() {
        for (key_type, len, ok) in [
            (CKK_DES2, 16, true),
            (CKK_DES2, 8, false),
            (CKK_DES2, 24, false),
            (CKK_DES3, 24, true),
            (CKK_DES3, 16, false),
            (CKK_DES3, 32, false),
        ] {
            let t = [
                a(cka::CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
                a(cka::CKA_KEY_TYPE, AttributeValue::Ulong(key_type)),
                a(cka::CKA_VALUE, AttributeValue::Bytes(vec![1; len])),
            ];
            match new_object(&t, Actor::Other, "id") {
                Ok(_) => assert!(ok, "{key_type:#x} {len}"),
                Err(e) => {
                    assert!(!ok, "{key_type:#x} {len}");
                    assert_eq!(e, Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
                }
            }
        }
    }

    #[test]
    fn a_destroyed_key_keeps_its_object_not_its_material() {
        use hsmlink_protocol::vendor::{CKS_HSMLINK_DEACTIVATED, CKS_HSMLINK_DESTROYED};
        let t = [
            a(cka::CKA_CLASS, AttributeValue::Ulong(CKO_PRIVATE_KEY)),
            a(cka::CKA_KEY_TYPE, AttributeValue::Ulong(CKK_RSA)),
            a(cka::CKA_MODULUS, AttributeValue::Bytes(vec![0xc5; 32])),
            a(
                cka::CKA_PUBLIC_EXPONENT,
                AttributeValue::Bytes(vec![1, 0, 1]),
            ),
            a(
                cka::CKA_PRIVATE_EXPONENT,
                AttributeValue::Bytes(vec![7; 32]),
            ),
            a(cka::CKA_PRIME_1, AttributeValue::Bytes(vec![3; 16])),
            a(cka::CKA_PRIME_2, AttributeValue::Bytes(vec![5; 16])),
        ];
        let mut attrs = new_object(&t, Actor::User, "id").unwrap();
        assert_eq!(key_life(&attrs), State::Active);
        let state = |v: u64| [a(CKA_HSMLINK_KEY_STATE, AttributeValue::Ulong(v))];
        // Active -> destroyed skips a state; nothing changes.
        let before = attrs.clone();
        assert_eq!(
            modify(
                &mut attrs,
                &state(CKS_HSMLINK_DESTROYED),
                Actor::User,
                false
            ),
            Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))
        );
        assert_eq!(attrs, before);
        modify(
            &mut attrs,
            &state(CKS_HSMLINK_DEACTIVATED),
            Actor::User,
            false,
        )
        .unwrap();
        // The SO may not destroy.
        assert_eq!(
            modify(&mut attrs, &state(CKS_HSMLINK_DESTROYED), Actor::So, false),
            Err(Ckr(CKR_ATTRIBUTE_READ_ONLY))
        );
        assert!(attrs.contains_key(&cka::CKA_PRIVATE_EXPONENT));
        modify(
            &mut attrs,
            &state(CKS_HSMLINK_DESTROYED),
            Actor::User,
            false,
        )
        .unwrap();
        let profile = Profile::of(&attrs).unwrap();
        assert!(
            attrs.keys().all(|t| profile.flags(*t) & SECRET == 0),
            "{attrs:?}"
        );
        for gone in [
            cka::CKA_PRIVATE_EXPONENT,
            cka::CKA_PRIME_1,
            cka::CKA_PRIME_2,
        ] {
            assert!(!attrs.contains_key(&gone));
        }
        assert!(attrs.contains_key(&cka::CKA_MODULUS));
        // Its other attributes may still change; a copy stays destroyed.
        modify(
            &mut attrs,
            &[a(cka::CKA_LABEL, AttributeValue::Bytes(b"old".to_vec()))],
            Actor::User,
            false,
        )
        .unwrap();
        assert_eq!(
            modify(&mut attrs, &state(CKS_HSMLINK_ACTIVE), Actor::User, true),
            Err(Ckr(CKR_ATTRIBUTE_READ_ONLY))
        );
        assert_eq!(key_life(&attrs), State::Destroyed);
    }

    #[test]
    fn modulus_bits() {
        let t = [
            a(cka::CKA_CLASS, AttributeValue::Ulong(CKO_PUBLIC_KEY)),
            a(cka::CKA_KEY_TYPE, AttributeValue::Ulong(CKK_RSA)),
            a(cka::CKA_MODULUS, AttributeValue::Bytes(vec![0, 0x40, 0, 0])),
            a(
                cka::CKA_PUBLIC_EXPONENT,
                AttributeValue::Bytes(vec![1, 0, 1]),
            ),
        ];
        let attrs = new_object(&t, Actor::Other, "id").unwrap();
        assert_eq!(ulong(attrs.get(&cka::CKA_MODULUS_BITS)), Some(23));
    }
}
