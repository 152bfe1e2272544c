//! Secure templates, first rule: a key's usage never widens after it is
//! made.
//!
//! The usage attributes (`CKA_ENCRYPT`, `CKA_DECRYPT`, `CKA_WRAP`,
//! `CKA_UNWRAP`, `CKA_SIGN`, `CKA_VERIFY`, `CKA_SIGN_RECOVER`,
//! `CKA_VERIFY_RECOVER`, `CKA_DERIVE`) are sticky: `C_SetAttributeValue` and
//! `C_CopyObject` may turn them off, never on (`CKR_ATTRIBUTE_READ_ONLY`,
//! which PKCS#11 3.0 section 4.1.2 lets a token answer). This closes the
//! published attacks that give one key two conflicting roles after the fact
//! — add `CKA_DECRYPT` to a wrapping key, then decrypt what it wrapped; add
//! `CKA_WRAP` to a copy of a decryption key — whatever the key's history.
//!
//! Checked here, above the drivers, against the attributes the driver
//! reports, so it holds for the soft HSM and for a vendor module alike
//! (whose own policy is not relied on).

use cryptoki_sys::CKR_ATTRIBUTE_READ_ONLY;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{Attribute, AttributeResult, AttributeType, AttributeValue, ObjectHandle};

use crate::dispatch::Bound;
use crate::error::{CkResult, Ckr};

/// The sticky usage attributes.
pub const USAGE: [u64; 9] = [
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_SIGN,
    cka::CKA_VERIFY,
    cka::CKA_SIGN_RECOVER,
    cka::CKA_VERIFY_RECOVER,
    cka::CKA_DERIVE,
];

/// Refuses a `C_SetAttributeValue` or `C_CopyObject` template that turns a
/// usage attribute of `object` on. Attributes the object does not have, and
/// values that are not booleans, are left to the driver's own checks.
pub(crate) fn check_no_widening(
    bound: &Bound<'_>,
    object: ObjectHandle,
    template: &[Attribute],
) -> CkResult<()> {
    let asked_on: Vec<AttributeType> = template
        .iter()
        .filter(|a| USAGE.contains(&a.attr_type.0) && a.value == AttributeValue::Bool(true))
        .map(|a| a.attr_type)
        .collect();
    if asked_on.is_empty() {
        return Ok(());
    }
    let current = bound
        .driver
        .get_attributes(&bound.object_context(), object, &asked_on)?;
    let widens = current
        .iter()
        .any(|now| *now == AttributeResult::Value(AttributeValue::Bool(false)));
    if widens {
        return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
    }
    Ok(())
}
