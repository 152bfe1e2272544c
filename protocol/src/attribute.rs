//! Attributes as typed values.
//!
//! The module knows each attribute type's C representation and converts
//! `CK_ATTRIBUTE` arrays into these values (and back), so the server never
//! sees native-endian `CK_ULONG`s or pointers. Values are wiped on drop: a
//! template may carry `CKA_VALUE` of a secret key.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::types::{AttributeType, MechanismType};

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub attr_type: AttributeType,
    pub value: AttributeValue,
}

impl Attribute {
    pub fn new(attr_type: u64, value: AttributeValue) -> Self {
        Self {
            attr_type: AttributeType(attr_type),
            value,
        }
    }
}

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// `CK_BBOOL`.
    Bool(bool),
    /// `CK_ULONG` and the types defined as one (`CK_OBJECT_CLASS`, `CK_KEY_TYPE`, ...).
    Ulong(u64),
    /// Byte arrays, strings, big integers, DER, `CK_DATE` (8 ASCII digits or empty).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Attribute arrays: `CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`, `CKA_DERIVE_TEMPLATE`.
    /// Two levels at most: a template may hold templates (a
    /// `CKA_DERIVE_TEMPLATE` naming the derived key's `CKA_WRAP_TEMPLATE`),
    /// whose members are plain values. Deeper nesting does not decode:
    /// unbounded nesting would let a peer exhaust the decoder's stack.
    Template(
        #[cfg_attr(test, proptest(strategy = "crate::testing::leaf_template()"))]
        #[serde(deserialize_with = "flat::deserialize_template")]
        Vec<Attribute>,
    ),
    /// `CKA_ALLOWED_MECHANISMS`.
    Mechanisms(Vec<MechanismType>),
}

impl Drop for AttributeValue {
    fn drop(&mut self) {
        if let AttributeValue::Bytes(bytes) = self {
            bytes.zeroize();
        }
    }
}

impl std::fmt::Debug for AttributeValue {
    // Byte values may be key material: show their length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(v) => write!(f, "Bool({v})"),
            Self::Ulong(v) => write!(f, "Ulong({v:#x})"),
            Self::Bytes(v) => write!(f, "Bytes(<{} bytes>)", v.len()),
            Self::Template(v) => f.debug_tuple("Template").field(v).finish(),
            Self::Mechanisms(v) => f.debug_tuple("Mechanisms").field(v).finish(),
        }
    }
}

/// One entry of a `C_GetAttributeValue` answer. The module turns values into
/// C representations and decides `CKR_BUFFER_TOO_SMALL` itself, since only it
/// knows the sizes of the C types and the caller's buffers.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeResult {
    Value(AttributeValue),
    /// `CKR_ATTRIBUTE_SENSITIVE`: the object exists, its value may not leave.
    Sensitive,
    /// `CKR_ATTRIBUTE_TYPE_INVALID`: the object has no such attribute.
    Invalid,
}

/// Decoding of template members: the same wire shape as [`AttributeValue`],
/// with nesting cut off after two levels by the types themselves, so the
/// decoder's depth is bounded whatever the input.
mod flat {
    use serde::{Deserialize, Deserializer};

    use super::{Attribute, AttributeValue};
    use crate::types::{AttributeType, MechanismType};

    /// A member of a top-level template: may itself be a template.
    #[derive(Deserialize)]
    struct Member {
        attr_type: AttributeType,
        value: MemberValue<Vec<Leaf>>,
    }

    /// A member of a nested template: plain values only.
    #[derive(Deserialize)]
    struct Leaf {
        attr_type: AttributeType,
        value: MemberValue<Refused>,
    }

    /// Variant order must match [`AttributeValue`]'s.
    #[derive(Deserialize)]
    enum MemberValue<T> {
        Bool(bool),
        Ulong(u64),
        Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
        Template(T),
        Mechanisms(Vec<MechanismType>),
    }

    /// Uninhabited: a third level of templates is a decoding error.
    #[derive(Deserialize)]
    enum Refused {}

    impl<T> MemberValue<T> {
        fn into_value(self, template: impl FnOnce(T) -> Vec<Attribute>) -> AttributeValue {
            match self {
                Self::Bool(v) => AttributeValue::Bool(v),
                Self::Ulong(v) => AttributeValue::Ulong(v),
                Self::Bytes(v) => AttributeValue::Bytes(v),
                Self::Template(t) => AttributeValue::Template(template(t)),
                Self::Mechanisms(v) => AttributeValue::Mechanisms(v),
            }
        }
    }

    fn leaves(members: Vec<Leaf>) -> Vec<Attribute> {
        members
            .into_iter()
            .map(|leaf| Attribute {
                attr_type: leaf.attr_type,
                value: leaf.value.into_value(|never| match never {}),
            })
            .collect()
    }

    pub(super) fn deserialize_template<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Attribute>, D::Error> {
        let members = Vec::<Member>::deserialize(deserializer)?;
        Ok(members
            .into_iter()
            .map(|member| Attribute {
                attr_type: member.attr_type,
                value: member.value.into_value(leaves),
            })
            .collect())
    }
}
