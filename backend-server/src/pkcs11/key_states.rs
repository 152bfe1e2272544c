//! Key states (NIST SP 800-57, [`crate::key_state`]'s rules, the same as
//! the soft HSM's) for keys on a vendor device, which does not know
//! `CKA_HSMLINK_KEY_STATE`: hsmlink keeps the state itself, bound to the
//! device object's uid (a column of its `device_objects` row; in memory
//! for session objects), answers it on reads, never sends it to the
//! device, and checks it before a key's use reaches the device.
//!
//! A vendor module cannot wipe a key's value and keep its other
//! attributes, so "destroyed" destroys the device object and leaves a
//! *tombstone*: the key's other attributes (no key material), kept by
//! hsmlink, so that the tenant's handle still answers its class, key type,
//! label, id, usage and state. The tombstone is written before the device
//! object goes; if the device then refuses, the key is destroyed for every
//! use all the same, and the device object is destroyed at the next start.

use std::collections::HashMap;

use cryptoki_sys::{
    CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKR_ACTION_PROHIBITED,
    CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_KEY_NOT_WRAPPABLE,
};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::CKA_HSMLINK_KEY_STATE;
use hsmlink_protocol::{Attribute, AttributeResult, AttributeValue, ObjectHandle, codec};
use tracing::{error, warn};

use super::objects::{self, Entry};
use super::template::read_attributes;
use super::{Pkcs11Partition, module};
use crate::attributes::{Actor, boolean, bytes, ulong};
use crate::error::{CkResult, Ckr};
use crate::key_state::{self, State};

fn is_key(class: u64) -> bool {
    matches!(class, CKO_SECRET_KEY | CKO_PRIVATE_KEY | CKO_PUBLIC_KEY)
}

fn state_value(value: &AttributeValue) -> CkResult<State> {
    State::from_value(ulong(Some(value)).ok_or(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))?)
}

/// A template without `CKA_HSMLINK_KEY_STATE` (the device's part).
pub fn without_state(template: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    template
        .iter()
        .filter(|a| a.attr_type.0 != CKA_HSMLINK_KEY_STATE)
}

/// Whether a template names `CKA_HSMLINK_KEY_STATE`.
pub fn asks_state(template: &[Attribute]) -> bool {
    asked(template).is_some()
}

fn asked(template: &[Attribute]) -> Option<&AttributeValue> {
    template
        .iter()
        .rev()
        .find(|a| a.attr_type.0 == CKA_HSMLINK_KEY_STATE)
        .map(|a| &a.value)
}

/// The state a new object of `class` is made in: active, or what its
/// template asks ([`key_state::check_initial`]); only keys have one.
pub fn initial(template: &[Attribute], class: u64) -> CkResult<State> {
    match asked(template) {
        None => Ok(State::Active),
        Some(_) if !is_key(class) => Err(Ckr(CKR_ATTRIBUTE_TYPE_INVALID)),
        Some(value) => {
            let state = state_value(value)?;
            key_state::check_initial(state.value())?;
            Ok(state)
        }
    }
}

/// The move a `C_SetAttributeValue` or `C_CopyObject` template asks of
/// `entry`'s state, checked ([`key_state::check_transition`]): `None` when
/// it asks none, or the state it has.
pub fn moved(template: &[Attribute], entry: &Entry, actor: Actor) -> CkResult<Option<State>> {
    let Some(value) = asked(template) else {
        return Ok(None);
    };
    if !entry.is_key() {
        return Err(Ckr(CKR_ATTRIBUTE_TYPE_INVALID));
    }
    let to = state_value(value)?;
    if to == entry.state {
        return Ok(None);
    }
    key_state::check_transition(entry.state, to, actor)?;
    Ok(Some(to))
}

/// `CKR_KEY_FUNCTION_NOT_PERMITTED` unless the key's state allows `usage`
/// (a `CKA_*` usage attribute; 0 for `C_DigestKey`).
pub fn permits(entry: &Entry, usage: u64) -> CkResult<()> {
    if entry.tombstone || !key_state::permits_usage(entry.state, usage) {
        return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
    }
    Ok(())
}

/// `CKR_KEY_NOT_WRAPPABLE` unless the key may leave wrapped (active).
pub fn permits_export(entry: &Entry) -> CkResult<()> {
    if entry.tombstone || !key_state::permits_export(entry.state) {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    Ok(())
}

/// `CKA_HSMLINK_KEY_STATE` as a read answers it.
pub fn answer(entry: &Entry) -> AttributeResult {
    if entry.is_key() {
        AttributeResult::Value(AttributeValue::Ulong(entry.state.value()))
    } else {
        AttributeResult::Invalid
    }
}

/// What a tombstone keeps: a key's attributes but its material.
const KEPT: &[u64] = &[
    cka::CKA_CLASS,
    cka::CKA_KEY_TYPE,
    cka::CKA_TOKEN,
    cka::CKA_PRIVATE,
    cka::CKA_MODIFIABLE,
    cka::CKA_COPYABLE,
    cka::CKA_DESTROYABLE,
    cka::CKA_LABEL,
    cka::CKA_ID,
    cka::CKA_START_DATE,
    cka::CKA_END_DATE,
    cka::CKA_SUBJECT,
    cka::CKA_LOCAL,
    cka::CKA_KEY_GEN_MECHANISM,
    cka::CKA_ALLOWED_MECHANISMS,
    cka::CKA_SENSITIVE,
    cka::CKA_EXTRACTABLE,
    cka::CKA_ALWAYS_SENSITIVE,
    cka::CKA_NEVER_EXTRACTABLE,
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_SIGN,
    cka::CKA_VERIFY,
    cka::CKA_SIGN_RECOVER,
    cka::CKA_VERIFY_RECOVER,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_DERIVE,
    cka::CKA_TRUSTED,
    cka::CKA_WRAP_WITH_TRUSTED,
    cka::CKA_ALWAYS_AUTHENTICATE,
    cka::CKA_VALUE_LEN,
    cka::CKA_MODULUS,
    cka::CKA_MODULUS_BITS,
    cka::CKA_PUBLIC_EXPONENT,
    cka::CKA_EC_PARAMS,
    cka::CKA_EC_POINT,
];

/// What a tombstone's owner may still change (the soft HSM lets a
/// destroyed key's metadata change, for the record).
const TOMBSTONE_MUTABLE: &[u64] = &[
    cka::CKA_LABEL,
    cka::CKA_ID,
    cka::CKA_START_DATE,
    cka::CKA_END_DATE,
    cka::CKA_SUBJECT,
];

/// The tombstones of a partition, by tenant handle.
pub type Tombstones = HashMap<u64, Vec<Attribute>>;

/// A tombstone's answer to a read of `attr`.
pub fn tombstone_answer(entry: &Entry, kept: &[Attribute], attr: u64) -> AttributeResult {
    match attr {
        CKA_HSMLINK_KEY_STATE => answer(entry),
        cka::CKA_UNIQUE_ID => {
            AttributeResult::Value(AttributeValue::Bytes(objects::unique_id(&entry.uid)))
        }
        _ => kept
            .iter()
            .find(|a| a.attr_type.0 == attr)
            .map_or(AttributeResult::Invalid, |a| {
                AttributeResult::Value(a.value.clone())
            }),
    }
}

/// Whether a tombstone matches a find template (the tenant's values).
pub fn tombstone_matches(entry: &Entry, kept: &[Attribute], template: &[Attribute]) -> bool {
    template.iter().all(|want| {
        tombstone_answer(entry, kept, want.attr_type.0)
            == AttributeResult::Value(want.value.clone())
    })
}

/// Applies a `C_SetAttributeValue` template to a tombstone: its state
/// stays (a change `CKR_ATTRIBUTE_READ_ONLY`, as on the soft HSM), its
/// metadata may change unless it is not `CKA_MODIFIABLE`
/// (`CKR_ACTION_PROHIBITED`), the rest is `CKR_ATTRIBUTE_READ_ONLY`.
pub fn tombstone_set(
    entry: &Entry,
    kept: &[Attribute],
    template: &[Attribute],
) -> CkResult<Vec<Attribute>> {
    let mut next = kept.to_vec();
    let modifiable = kept
        .iter()
        .find(|a| a.attr_type.0 == cka::CKA_MODIFIABLE)
        .and_then(|a| boolean(Some(&a.value)))
        != Some(false);
    for change in template {
        let attr = change.attr_type.0;
        if tombstone_answer(entry, &next, attr) == AttributeResult::Value(change.value.clone()) {
            continue;
        }
        if attr == CKA_HSMLINK_KEY_STATE {
            state_value(&change.value)?;
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        if !TOMBSTONE_MUTABLE.contains(&attr) {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        if !modifiable {
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        if bytes(Some(&change.value)).is_none() {
            return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
        }
        next.retain(|a| a.attr_type.0 != attr);
        next.push(change.clone());
    }
    Ok(next)
}

pub fn encode(kept: &[Attribute]) -> CkResult<Vec<u8>> {
    codec::encode(&kept.to_vec()).map_err(|_| Ckr::GENERAL)
}

pub fn decode(stored: &[u8]) -> Option<Vec<Attribute>> {
    codec::decode(stored).ok()
}

impl Pkcs11Partition {
    /// Moves the key `handle` (`entry`) to `to`: recorded (token objects:
    /// in the store, first), then in force. Destroyed: see [`Self::bury`].
    pub(crate) fn move_state(&self, handle: ObjectHandle, entry: Entry, to: State) -> CkResult<()> {
        if to == State::Destroyed {
            return self.bury(handle, entry);
        }
        if entry.owner.is_none() {
            self.store
                .set_device_key_state(&self.name, handle.0, to.value(), None)
                .map_err(|e| {
                    warn!(partition = %self.name, "cannot record a key state: {e}");
                    Ckr::DEVICE
                })?;
        }
        let mut state = self.lock();
        if let Some(e) = state.objects.get_mut(handle.0) {
            e.state = to;
        }
        Ok(())
    }

    /// Destroys the key's material: its remaining attributes become a
    /// tombstone (recorded first), then the device object goes.
    fn bury(&self, handle: ObjectHandle, entry: Entry) -> CkResult<()> {
        let values = self.read_object(&entry, |m, s, o| read_attributes(m, s, o, KEPT))?;
        let tag = objects::tag_attribute(entry.class);
        let kept: Vec<Attribute> = KEPT
            .iter()
            .zip(values)
            .filter_map(|(attr, v)| match &v {
                // A replicated key's own answers, not its device copy's.
                _ if entry.held.answer(*attr).is_some() => Some(Attribute::new(
                    *attr,
                    AttributeValue::Bool(entry.held.answer(*attr).unwrap_or_default()),
                )),
                AttributeResult::Value(AttributeValue::Bytes(b)) if *attr == tag => {
                    let tenant = objects::parse_tag(tag, b).map_or(b.clone(), |(_, t)| t.to_vec());
                    Some(Attribute::new(*attr, AttributeValue::Bytes(tenant)))
                }
                AttributeResult::Value(v) => Some(Attribute::new(*attr, v.clone())),
                _ => None,
            })
            .collect();
        if entry.owner.is_none() {
            self.store
                .set_device_key_state(
                    &self.name,
                    handle.0,
                    State::Destroyed.value(),
                    Some(&encode(&kept)?),
                )
                .map_err(|e| {
                    warn!(partition = %self.name, "cannot record a destroyed key: {e}");
                    Ckr::DEVICE
                })?;
        }
        {
            let mut state = self.lock();
            let buried = Entry {
                state: State::Destroyed,
                tombstone: true,
                ..entry
            };
            state.objects.replace(handle.0, buried);
            state.tombstones.insert(handle.0, kept);
        }
        // Not the buried entry: its device object is what goes.
        self.destroy_on_device(&entry);
        Ok(())
    }

    /// At start: a tombstone whose device object is still there (the
    /// device refused to destroy it) loses it now.
    pub(crate) fn finish_burial(
        &self,
        replica: &super::replicas::Replica,
        device: cryptoki_sys::CK_OBJECT_HANDLE,
    ) {
        if let Err(Ckr(rv)) = replica.run(|m, s| m.destroy_object(s, device)) {
            error!(
                partition = %self.name,
                device = %replica.name(),
                "a destroyed key's device object cannot be destroyed: {}",
                module::rv_name(rv)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use hsmlink_protocol::vendor::{CKS_HSMLINK_DESTROYED, CKS_HSMLINK_PRE_ACTIVATION};

    use super::*;

    fn key(state: State) -> Entry {
        Entry {
            uid: [1; objects::UID_LEN],
            class: CKO_SECRET_KEY,
            held: objects::Held::default(),
            private: true,
            owner: None,
            state,
            tombstone: false,
        }
    }

    fn state_attr(v: u64) -> Attribute {
        Attribute::new(CKA_HSMLINK_KEY_STATE, AttributeValue::Ulong(v))
    }

    #[test]
    fn states_are_made_moved_and_enforced_by_key_states_rules() {
        assert_eq!(initial(&[], CKO_SECRET_KEY), Ok(State::Active));
        let pending = [state_attr(CKS_HSMLINK_PRE_ACTIVATION)];
        assert_eq!(initial(&pending, CKO_PUBLIC_KEY), Ok(State::PreActivation));
        assert_eq!(
            initial(&[state_attr(CKS_HSMLINK_DESTROYED)], CKO_SECRET_KEY),
            Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))
        );
        assert_eq!(
            initial(&pending, cryptoki_sys::CKO_DATA),
            Err(Ckr(CKR_ATTRIBUTE_TYPE_INVALID))
        );
        assert_eq!(without_state(&pending).count(), 0);
        let destroyed = [state_attr(CKS_HSMLINK_DESTROYED)];
        assert_eq!(
            moved(&destroyed, &key(State::Active), Actor::User),
            Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID))
        );
        assert_eq!(
            moved(&destroyed, &key(State::Compromised), Actor::User),
            Ok(Some(State::Destroyed))
        );
        assert_eq!(
            moved(&destroyed, &key(State::Compromised), Actor::So),
            Err(Ckr(CKR_ATTRIBUTE_READ_ONLY))
        );
        assert_eq!(
            moved(&destroyed, &key(State::Destroyed), Actor::User),
            Ok(None)
        );
        assert_eq!(
            permits(&key(State::Deactivated), cka::CKA_ENCRYPT),
            Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED))
        );
        assert_eq!(permits(&key(State::Deactivated), cka::CKA_DECRYPT), Ok(()));
        assert_eq!(
            permits_export(&key(State::Deactivated)),
            Err(Ckr(CKR_KEY_NOT_WRAPPABLE))
        );
    }

    #[test]
    fn a_tombstone_answers_what_it_keeps_and_its_metadata_only_changes() {
        let mut dead = key(State::Destroyed);
        dead.tombstone = true;
        let kept = vec![
            Attribute::new(cka::CKA_KEY_TYPE, AttributeValue::Ulong(0x1f)),
            Attribute::new(cka::CKA_LABEL, AttributeValue::Bytes(b"old".to_vec())),
        ];
        assert_eq!(
            tombstone_answer(&dead, &kept, cka::CKA_VALUE),
            AttributeResult::Invalid
        );
        assert_eq!(
            tombstone_answer(&dead, &kept, CKA_HSMLINK_KEY_STATE),
            AttributeResult::Value(AttributeValue::Ulong(CKS_HSMLINK_DESTROYED))
        );
        assert_eq!(permits(&dead, 0), Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED)));
        let label = Attribute::new(cka::CKA_LABEL, AttributeValue::Bytes(b"new".to_vec()));
        let next = tombstone_set(&dead, &kept, std::slice::from_ref(&label)).unwrap();
        assert!(tombstone_matches(&dead, &next, &[label]));
        assert_eq!(
            tombstone_set(&dead, &kept, &[state_attr(1)]),
            Err(Ckr(CKR_ATTRIBUTE_READ_ONLY))
        );
        let value = Attribute::new(cka::CKA_VALUE, AttributeValue::Bytes(vec![0; 16]));
        assert_eq!(
            tombstone_set(&dead, &kept, &[value]),
            Err(Ckr(CKR_ATTRIBUTE_READ_ONLY))
        );
        assert_eq!(decode(&encode(&kept).unwrap()), Some(kept));
    }
}
