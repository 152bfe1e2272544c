//! The wrap ledger: wrapping binds the key's attributes (issue 14), on
//! strict partitions, above the drivers (so for the soft HSM and a vendor
//! module alike).
//!
//! Standard mechanisms (AES key wrap, RSA-OAEP, CBC-PAD, ...) make
//! standard blobs, which carry no attributes: unwrapped, a key that only
//! signed could come back as one that encrypts or derives (key
//! separation). So the partition remembers what it let out: every
//! successful `C_WrapKey` records, in the store, SHA-256 of the wrapped
//! bytes → the wrapped key's class, key type, usage attributes, and
//! whether it was sensitive and extractable. If that write fails the wrap
//! fails: no unbound blob leaves.
//!
//! `C_UnwrapKey` of a blob in the ledger may not widen it: class and key
//! type equal, each usage attribute true only if it was, extractable only
//! if it was (`CKR_TEMPLATE_INCONSISTENT`, nothing made); what the
//! template leaves out is taken from the record. A blob not in the ledger
//! was not wrapped here: a local wrapping key that no caller knows can only
//! have wrapped what is in the ledger, so it is refused
//! (`CKR_WRAPPED_KEY_INVALID`, with a server log line) unless the
//! unwrapping key is `CKA_TRUSTED` — a key the SO vouched for, exchanged
//! with another HSM, whose blobs are bound by that trust decision (and by
//! the unwrapping key's `CKA_UNWRAP_TEMPLATE` where the driver enforces
//! one). Key blocks (`CKM_HSMLINK_TR31`, `CKM_HSMLINK_TR34`) carry their
//! own binding, their header, and skip the ledger. Relaxed partitions keep
//! no ledger and check none.

use std::borrow::Cow;

use cryptoki_sys::{CKR_TEMPLATE_INCONSISTENT, CKR_WRAPPED_KEY_INVALID};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::{CKA_HSMLINK_KEY_STATE, CKM_HSMLINK_TR31, CKM_HSMLINK_TR34};
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, AttributeValue, Mechanism, ObjectHandle,
};

use crate::config::SecureTemplates;
use crate::dispatch::Bound;
use crate::error::{CkResult, Ckr};
use crate::key_state::{self, State};
use crate::registry::unix_now;
use crate::secure_templates::{USAGE, discard, usage_of};
use crate::store::{Store, WrapRecord};

/// The usage attributes as ledger bits: bit i is `USAGE[i]`.
fn bit(attr: u64) -> u64 {
    USAGE.iter().position(|a| *a == attr).map_or(0, |i| 1 << i)
}

/// Whether the mechanism's blobs go through the ledger: a strict partition,
/// and not a key block (whose header binds the usage).
fn bound_by_ledger(bound: &Bound<'_>, mechanism: &Mechanism) -> bool {
    bound.secure_templates == SecureTemplates::Strict
        && !matches!(mechanism.mechanism.0, CKM_HSMLINK_TR31 | CKM_HSMLINK_TR34)
}

/// What the ledger needs of a key, read through the driver.
#[derive(Debug, Default)]
struct Held {
    class: Option<u64>,
    key_type: Option<u64>,
    usage: u64,
    sensitive: bool,
    extractable: bool,
}

fn read_held(bound: &Bound<'_>, key: ObjectHandle) -> CkResult<Held> {
    let ctx = bound.object_context();
    let mut types = vec![
        AttributeType(cka::CKA_CLASS),
        AttributeType(cka::CKA_KEY_TYPE),
        AttributeType(cka::CKA_SENSITIVE),
        AttributeType(cka::CKA_EXTRACTABLE),
    ];
    types.extend(USAGE.iter().map(|a| AttributeType(*a)));
    let values = bound.driver.get_attributes(&ctx, key, &types)?;
    let mut held = Held::default();
    for (t, v) in types.iter().zip(values) {
        match (t.0, v) {
            (cka::CKA_CLASS, AttributeResult::Value(AttributeValue::Ulong(c))) => {
                held.class = Some(c)
            }
            (cka::CKA_KEY_TYPE, AttributeResult::Value(AttributeValue::Ulong(k))) => {
                held.key_type = Some(k)
            }
            (cka::CKA_SENSITIVE, AttributeResult::Value(AttributeValue::Bool(b))) => {
                held.sensitive = b
            }
            (cka::CKA_EXTRACTABLE, AttributeResult::Value(AttributeValue::Bool(b))) => {
                held.extractable = b
            }
            (usage, AttributeResult::Value(AttributeValue::Bool(true))) => held.usage |= bit(usage),
            _ => {}
        }
    }
    Ok(held)
}

fn store_failed(bound: &Bound<'_>, what: &str, e: impl std::fmt::Display) -> Ckr {
    tracing::error!(partition = %bound.partition, "wrap ledger: cannot {what}: {e}");
    Ckr::DEVICE
}

/// After the driver wrapped `key` and before the bytes leave: records them.
/// A failure fails the wrap (`CKR_DEVICE_ERROR`).
pub(crate) fn record_wrap(
    bound: &Bound<'_>,
    store: &dyn Store,
    mechanism: &Mechanism,
    key: ObjectHandle,
    wrapped: &[u8],
) -> CkResult<()> {
    if !bound_by_ledger(bound, mechanism) {
        return Ok(());
    }
    let held = read_held(bound, key)?;
    let (Some(class), Some(key_type)) = (held.class, held.key_type) else {
        return Err(Ckr::GENERAL);
    };
    store
        .put_wrap_record(&WrapRecord {
            partition: bound.partition.as_str().to_owned(),
            digest: crate::audit::record::sha256(wrapped).to_vec(),
            class,
            key_type,
            usage: held.usage,
            sensitive: held.sensitive,
            extractable: held.extractable,
            wrapped_at: unix_now(),
        })
        .map_err(|e| store_failed(bound, "record a wrapped key", e))
}

/// How an unwrap is bound, for [`check_unwrapped`].
#[derive(Debug)]
pub(crate) enum Binding {
    /// Not a ledger case (relaxed partition, key block).
    Free,
    /// The blob's record: the new key may not hold more.
    Recorded(WrapRecord),
    /// A blob from elsewhere under a `CKA_TRUSTED` key: the SO's decision.
    Trusted,
    /// Not in the ledger, under a key the driver should refuse anyway (no
    /// such key, one without `CKA_UNWRAP`, or in a state that does not
    /// unwrap): whatever it makes all the same goes.
    Unbound,
}

/// `C_UnwrapKey` before the driver: the ledger's verdict on the (completed)
/// template, and the template to forward (what it leaves out of the
/// record's usage and extractability taken from the record).
pub(crate) fn bind_unwrap<'t>(
    bound: &Bound<'_>,
    store: &dyn Store,
    mechanism: &Mechanism,
    unwrapping_key: ObjectHandle,
    wrapped: &[u8],
    template: &'t [Attribute],
) -> CkResult<(Cow<'t, [Attribute]>, Binding)> {
    if !bound_by_ledger(bound, mechanism) {
        return Ok((Cow::Borrowed(template), Binding::Free));
    }
    let digest = crate::audit::record::sha256(wrapped);
    let record = store
        .wrap_record(bound.partition.as_str(), &digest)
        .map_err(|e| store_failed(bound, "read", e))?;
    let Some(record) = record else {
        return unrecorded(bound, unwrapping_key).map(|b| (Cow::Borrowed(template), b));
    };
    let given = |attr: u64| {
        template
            .iter()
            .rev()
            .find(|a| a.attr_type.0 == attr)
            .map(|a| &a.value)
    };
    let ulong_is = |attr: u64, want: u64| match given(attr) {
        None => true,
        Some(v) => *v == AttributeValue::Ulong(want),
    };
    let widens = !ulong_is(cka::CKA_CLASS, record.class)
        || !ulong_is(cka::CKA_KEY_TYPE, record.key_type)
        || USAGE
            .iter()
            .any(|a| given(*a) == Some(&AttributeValue::Bool(true)) && record.usage & bit(*a) == 0)
        || (given(cka::CKA_EXTRACTABLE) == Some(&AttributeValue::Bool(true))
            && !record.extractable);
    if widens {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    let mut full = template.to_vec();
    let mut fill = |attr: u64, value: AttributeValue| {
        if given(attr).is_none() {
            full.push(Attribute::new(attr, value));
        }
    };
    fill(cka::CKA_CLASS, AttributeValue::Ulong(record.class));
    fill(cka::CKA_KEY_TYPE, AttributeValue::Ulong(record.key_type));
    for attr in usage_of(record.class) {
        fill(*attr, AttributeValue::Bool(record.usage & bit(*attr) != 0));
    }
    if !record.extractable {
        fill(cka::CKA_EXTRACTABLE, AttributeValue::Bool(false));
    }
    Ok((Cow::Owned(full), Binding::Recorded(record)))
}

/// A blob the ledger does not hold: accepted under a `CKA_TRUSTED` key,
/// refused otherwise (a key the driver would refuse is left to it).
fn unrecorded(bound: &Bound<'_>, unwrapping_key: ObjectHandle) -> CkResult<Binding> {
    let ctx = bound.object_context();
    let types = [
        AttributeType(cka::CKA_UNWRAP),
        AttributeType(cka::CKA_TRUSTED),
        AttributeType(CKA_HSMLINK_KEY_STATE),
    ];
    let yes = AttributeResult::Value(AttributeValue::Bool(true));
    let values = match bound.driver.get_attributes(&ctx, unwrapping_key, &types) {
        Ok(values) => values,
        Err(_) => return Ok(Binding::Unbound),
    };
    let state = match values.get(2) {
        Some(AttributeResult::Value(AttributeValue::Ulong(v))) => State::of(Some(*v)),
        _ => State::Active,
    };
    // The standard's codes and the key's state come first: the driver
    // refuses such a key with its own code.
    if values.first() != Some(&yes) || !key_state::permits_usage(state, cka::CKA_UNWRAP) {
        return Ok(Binding::Unbound);
    }
    if values.get(1) == Some(&yes) {
        return Ok(Binding::Trusted);
    }
    tracing::warn!(
        partition = %bound.partition,
        unwrapping_key = unwrapping_key.0,
        "C_UnwrapKey refused (CKR_WRAPPED_KEY_INVALID): the blob is not in the partition's wrap \
         ledger (not wrapped by this partition) and the unwrapping key is not CKA_TRUSTED"
    );
    Err(Ckr(CKR_WRAPPED_KEY_INVALID))
}

/// After the driver unwrapped into `made`: the key read back holds no more
/// than its record (a driver's defaults cannot widen it either); otherwise
/// it is destroyed and the unwrap refused.
pub(crate) fn check_unwrapped(
    bound: &Bound<'_>,
    binding: &Binding,
    made: ObjectHandle,
) -> CkResult<()> {
    let refused = match binding {
        Binding::Free | Binding::Trusted => return Ok(()),
        Binding::Unbound => Ckr(CKR_WRAPPED_KEY_INVALID),
        Binding::Recorded(record) => {
            let held = read_held(bound, made)?;
            let within = held.class == Some(record.class)
                && held.key_type == Some(record.key_type)
                && held.usage & !record.usage == 0
                && (record.extractable || !held.extractable);
            if within {
                return Ok(());
            }
            Ckr(CKR_TEMPLATE_INCONSISTENT)
        }
    };
    discard(bound, &[made]);
    Err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_usage_attribute_has_its_own_bit() {
        let bits: Vec<u64> = USAGE.iter().map(|a| bit(*a)).collect();
        assert!(bits.iter().all(|b| b.count_ones() == 1));
        assert_eq!(
            bits.iter().fold(0, |all, b| all | b),
            (1 << USAGE.len()) - 1
        );
        assert_eq!(bit(cka::CKA_SENSITIVE), 0);
    }
}
