//! The identity of device objects, and the map from tenants' handles to
//! device handles.
//!
//! Tenants see hsmlink's handles only: allocated by the caller, stable
//! across restarts. Device handles are never shown, and are not stable
//! across restarts on every vendor (SoftHSMv2 numbers objects per process),
//! so every object hsmlink makes on a device carries an hsmlink id, the
//! *uid* (16 random bytes), as a prefix of its *tag* attribute: `CKA_ID`
//! for keys and certificates, `CKA_APPLICATION` for data objects (which
//! have no `CKA_ID`):
//!
//! ```text
//! CKA_ID on the device          = "hl1:" ‖ uid ‖ the tenant's own CKA_ID
//! CKA_APPLICATION on the device = "hl1:" ‖ hex(uid) ‖ the tenant's own
//! CKA_ID, replicated partition  = "hl2:" ‖ uid ‖ flags ‖ the tenant's own
//! ```
//!
//! A key of a replicated partition is extractable *on the device* (its
//! copies travel between replicas wrapped under the partition's transport
//! key, see [`super::replicas`]); what the tenant asked and what only the
//! original can tell (`CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE`) travel in the
//! `hl2` flags ([`Held`]), which hsmlink answers and enforces.
//!
//! The driver adds the prefix on writes, strips it on reads, and turns the
//! tag attribute in a find template into a filter on what follows the
//! prefix.
//! The store keeps (partition, tenant handle) ↔ uid for token objects; the
//! uid → device handle map is rebuilt by enumerating the token at start.
//! Objects on the token without the prefix were not made through hsmlink
//! and are invisible to tenants. The uid also answers `CKA_UNIQUE_ID`
//! (hex), the same on every device holding the object.

use std::collections::{BTreeMap, HashMap};

use cryptoki_sys::{
    CKO_DATA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKR_ATTRIBUTE_READ_ONLY,
    CKR_ATTRIBUTE_VALUE_INVALID,
};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{Attribute, AttributeValue};

use super::key_states;
use crate::attributes::{boolean, ulong};
use crate::driver::OwnerId;
use crate::error::{CkResult, Ckr};
use crate::key_state::State;
use crate::soft::keys::fill_random;

/// The version tag of hsmlink's `CKA_ID` prefix.
pub const ID_PREFIX: &[u8] = b"hl1:";
/// The prefix of a replicated partition's `CKA_ID`: a flags byte follows
/// the uid.
pub const ID_PREFIX_FLAGS: &[u8] = b"hl2:";

/// What hsmlink keeps of a replicated partition's key in its tag (the
/// device's own values say otherwise: every copy is extractable on the
/// device, and the copies are neither local nor always sensitive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held(pub u8);

impl Held {
    /// The object was made on a replicated partition: the flags below
    /// answer for the device.
    pub const REPLICATED: u8 = 1;
    /// The tenant's `CKA_EXTRACTABLE` is false.
    pub const NOT_EXTRACTABLE: u8 = 2;
    /// The tenant's `CKA_NEVER_EXTRACTABLE` is true.
    pub const NEVER_EXTRACTABLE: u8 = 4;
    /// Generated on the device (`CKA_LOCAL`).
    pub const LOCAL: u8 = 8;
    /// `CKA_ALWAYS_SENSITIVE`.
    pub const ALWAYS_SENSITIVE: u8 = 16;

    pub fn replicated(self) -> bool {
        self.0 & Self::REPLICATED != 0
    }

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// The tenant may not get the key out of the device (only hsmlink's
    /// replica copies may).
    pub fn hides_extractable(self) -> bool {
        self.replicated() && self.has(Self::NOT_EXTRACTABLE)
    }

    /// hsmlink's answer for `attr`, where the flags answer it.
    pub fn answer(self, attr: u64) -> Option<bool> {
        if !self.replicated() {
            return None;
        }
        match attr {
            cka::CKA_EXTRACTABLE => Some(!self.has(Self::NOT_EXTRACTABLE)),
            cka::CKA_NEVER_EXTRACTABLE => Some(self.has(Self::NEVER_EXTRACTABLE)),
            cka::CKA_LOCAL => Some(self.has(Self::LOCAL)),
            cka::CKA_ALWAYS_SENSITIVE => Some(self.has(Self::ALWAYS_SENSITIVE)),
            _ => None,
        }
    }
}

/// Attributes a replicated partition answers from [`Held`].
pub const HELD_ATTRIBUTES: &[u64] = &[
    cka::CKA_EXTRACTABLE,
    cka::CKA_NEVER_EXTRACTABLE,
    cka::CKA_LOCAL,
    cka::CKA_ALWAYS_SENSITIVE,
];
pub const UID_LEN: usize = 16;
pub type Uid = [u8; UID_LEN];

pub fn new_uid() -> CkResult<Uid> {
    let mut uid = [0u8; UID_LEN];
    fill_random(&mut uid)?;
    Ok(uid)
}

/// The `CKA_ID` an object carries on the device.
pub fn device_id(uid: &Uid, held: Held, tenant_id: &[u8]) -> Vec<u8> {
    if held.replicated() {
        [ID_PREFIX_FLAGS, uid, &[held.0], tenant_id].concat()
    } else {
        [ID_PREFIX, uid, tenant_id].concat()
    }
}

/// The attribute that carries the uid of an object of `class`.
pub fn tag_attribute(class: u64) -> u64 {
    if class == CKO_DATA {
        cka::CKA_APPLICATION
    } else {
        cka::CKA_ID
    }
}

/// The device value of tag attribute `attr` (data objects hold no key:
/// no flags).
pub fn tag(attr: u64, uid: &Uid, held: Held, tenant: &[u8]) -> Vec<u8> {
    if attr == cka::CKA_APPLICATION {
        // A string attribute: the uid in hex.
        [ID_PREFIX, &unique_id(uid), tenant].concat()
    } else {
        device_id(uid, held, tenant)
    }
}

/// The uid and the tenant's value of a device tag, if hsmlink made it.
pub fn parse_tag(attr: u64, value: &[u8]) -> Option<(Uid, &[u8])> {
    parse_tag_held(attr, value).map(|(uid, _, tenant)| (uid, tenant))
}

/// [`parse_tag`] with the flags of a replicated partition's key.
pub fn parse_tag_held(attr: u64, value: &[u8]) -> Option<(Uid, Held, &[u8])> {
    if attr != cka::CKA_APPLICATION {
        return parse_device_id(value);
    }
    let rest = value.strip_prefix(ID_PREFIX)?;
    let (hex, tenant) = rest.split_at_checked(2 * UID_LEN)?;
    let mut uid = [0u8; UID_LEN];
    for (i, b) in uid.iter_mut().enumerate() {
        let pair = std::str::from_utf8(hex.get(2 * i..2 * i + 2)?).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some((uid, Held::default(), tenant))
}

/// The uid, flags and the tenant's `CKA_ID` of a device `CKA_ID`, if
/// hsmlink made it.
pub fn parse_device_id(id: &[u8]) -> Option<(Uid, Held, &[u8])> {
    if let Some(rest) = id.strip_prefix(ID_PREFIX_FLAGS) {
        let (uid, rest) = rest.split_first_chunk::<UID_LEN>()?;
        let (flags, tenant_id) = rest.split_first()?;
        let held = Held(*flags);
        return held.replicated().then_some((*uid, held, tenant_id));
    }
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (uid, tenant_id) = rest.split_first_chunk::<UID_LEN>()?;
    Some((*uid, Held::default(), tenant_id))
}

/// `CKA_UNIQUE_ID` of an object: its uid in hex.
pub fn unique_id(uid: &Uid) -> Vec<u8> {
    uid.iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect()
}

/// A session object's creator, and the anchor it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub app: OwnerId,
    pub session: OwnerId,
    /// The replica whose anchor session holds the object.
    pub replica: usize,
    /// That anchor's generation when the object was made.
    pub generation: u64,
}

/// One object of the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Names the object on every replica (each replica maps it to its own
    /// device handle).
    pub uid: Uid,
    pub class: u64,
    /// What hsmlink answers for a replicated partition's key.
    pub held: Held,
    pub private: bool,
    /// Session objects only.
    pub owner: Option<Owner>,
    /// A key's state (kept by hsmlink: see [`super::key_states`]).
    pub state: State,
    /// A destroyed key whose device object is gone: hsmlink answers its
    /// remaining attributes.
    pub tombstone: bool,
}

impl Entry {
    pub fn is_key(&self) -> bool {
        matches!(
            self.class,
            CKO_SECRET_KEY | CKO_PRIVATE_KEY | CKO_PUBLIC_KEY
        )
    }
}

/// The partition's objects, by tenant handle and by uid.
#[derive(Debug, Default)]
pub struct ObjectMap {
    by_handle: BTreeMap<u64, Entry>,
    by_uid: HashMap<Uid, u64>,
}

impl ObjectMap {
    pub fn insert(&mut self, handle: u64, entry: Entry) {
        self.by_uid.insert(entry.uid, handle);
        self.by_handle.insert(handle, entry);
    }

    pub fn remove(&mut self, handle: u64) -> Option<Entry> {
        let entry = self.by_handle.remove(&handle)?;
        if self.by_uid.get(&entry.uid) == Some(&handle) {
            self.by_uid.remove(&entry.uid);
        }
        Some(entry)
    }

    /// Replaces the entry of `handle` (its state, or a tombstone now).
    pub fn replace(&mut self, handle: u64, entry: Entry) {
        self.remove(handle);
        self.insert(handle, entry);
    }

    /// The handles of the tombstones.
    pub fn tombstones(&self) -> Vec<u64> {
        self.by_handle
            .iter()
            .filter(|(_, e)| e.tombstone)
            .map(|(h, _)| *h)
            .collect()
    }

    pub fn get(&self, handle: u64) -> Option<&Entry> {
        self.by_handle.get(&handle)
    }

    pub fn get_mut(&mut self, handle: u64) -> Option<&mut Entry> {
        self.by_handle.get_mut(&handle)
    }

    pub fn contains(&self, handle: u64) -> bool {
        self.by_handle.contains_key(&handle)
    }

    /// The tenant handle of the object `uid` names, if it is one of ours.
    pub fn by_uid(&self, uid: &Uid) -> Option<u64> {
        self.by_uid.get(uid).copied()
    }

    /// Every entry, by handle.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_handle.iter().map(|(h, e)| (*h, e))
    }

    pub fn clear(&mut self) {
        self.by_handle.clear();
        self.by_uid.clear();
    }

    pub fn max_handle(&self) -> u64 {
        self.by_handle.keys().next_back().copied().unwrap_or(0)
    }

    /// The session objects `session` created.
    pub fn of_session(&self, session: OwnerId) -> Vec<u64> {
        self.by_handle
            .iter()
            .filter(|(_, e)| matches!(e.owner, Some(o) if o.session == session))
            .map(|(h, _)| *h)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_handle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_handle.is_empty()
    }
}

/// What a new object's template says of it, once made explicit.
#[derive(Debug)]
pub struct NewObject {
    /// The template for the device: explicit `CKA_TOKEN` and `CKA_PRIVATE`,
    /// hsmlink's defaults for keys, and the device `CKA_ID`.
    pub template: Vec<Attribute>,
    pub uid: Uid,
    pub class: u64,
    pub token: bool,
    pub private: bool,
    /// The key state the template asks (kept by hsmlink, not sent).
    pub state: State,
    /// What hsmlink answers for a replicated partition's key.
    pub held: Held,
}

/// The defaults of a new object whose template does not say.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    pub class: u64,
    /// The tenant's `CKA_ID` if the template gives none.
    pub tenant_id: &'a [u8],
    /// The partition has replicas: keys are extractable on the device, the
    /// tenant's answers go in [`Held`].
    pub replicated: bool,
    /// The device generates the object (`CKA_LOCAL`).
    pub local: bool,
}

impl Defaults<'_> {
    /// An object of `class` with no other default.
    pub fn of(class: u64, replicated: bool, local: bool) -> Self {
        Defaults {
            class,
            tenant_id: b"",
            replicated,
            local,
        }
    }
}

/// A creation template (`C_CreateObject`, `C_GenerateKey`, ...) as the
/// device gets it. hsmlink's rules are made explicit rather than left to
/// the vendor's defaults: `CKA_TOKEN` false, `CKA_PRIVATE` true for private
/// and secret keys and false otherwise, private and secret keys sensitive
/// and not extractable. `CKA_UNIQUE_ID` is hsmlink's (read-only).
pub fn new_object(template: &[Attribute], defaults: Defaults<'_>) -> CkResult<NewObject> {
    let uid = new_uid()?;
    let find = |t: u64| {
        template
            .iter()
            .find(|a| a.attr_type.0 == t)
            .map(|a| &a.value)
    };
    if find(cka::CKA_UNIQUE_ID).is_some() {
        return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
    }
    let class = ulong(find(cka::CKA_CLASS)).unwrap_or(defaults.class);
    let secret_class = matches!(class, CKO_SECRET_KEY | CKO_PRIVATE_KEY);
    let token = boolean(find(cka::CKA_TOKEN)).unwrap_or(false);
    let private = boolean(find(cka::CKA_PRIVATE)).unwrap_or(secret_class);
    let tag_attr = tag_attribute(class);
    let tenant_tag = match find(tag_attr) {
        Some(AttributeValue::Bytes(b)) => b.clone(),
        Some(_) => return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
        None => defaults.tenant_id.to_vec(),
    };
    let state = key_states::initial(template, class)?;
    let held = if defaults.replicated && secret_class {
        held_of_new_key(template, defaults.local)
    } else {
        Held::default()
    };
    let mut out: Vec<Attribute> = key_states::without_state(template)
        .filter(|a| a.attr_type.0 != tag_attr)
        .filter(|a| !held.replicated() || a.attr_type.0 != cka::CKA_EXTRACTABLE)
        .cloned()
        .collect();
    let mut default = |t: u64, v: AttributeValue| {
        if find(t).is_none() {
            out.push(Attribute::new(t, v));
        }
    };
    default(cka::CKA_TOKEN, AttributeValue::Bool(false));
    default(cka::CKA_PRIVATE, AttributeValue::Bool(secret_class));
    if secret_class {
        default(cka::CKA_SENSITIVE, AttributeValue::Bool(true));
        if held.replicated() {
            // Copies travel between replicas wrapped under the transport
            // key; the tenant's answer is in the flags.
            out.push(Attribute::new(
                cka::CKA_EXTRACTABLE,
                AttributeValue::Bool(true),
            ));
        } else {
            default(cka::CKA_EXTRACTABLE, AttributeValue::Bool(false));
        }
    }
    out.push(Attribute::new(
        tag_attr,
        AttributeValue::Bytes(tag(tag_attr, &uid, held, &tenant_tag)),
    ));
    Ok(NewObject {
        template: out,
        uid,
        class,
        token,
        private,
        state,
        held,
    })
}

/// A replicated key's flags after `template` (`C_SetAttributeValue`,
/// `C_CopyObject`): `CKA_EXTRACTABLE` may go from true to false only; the
/// other flags are read-only. Other objects' flags stay as they are.
pub fn held_after(held: Held, template: &[Attribute]) -> CkResult<Held> {
    if !held.replicated() {
        return Ok(held);
    }
    let mut next = held;
    for a in template {
        let t = a.attr_type.0;
        if !HELD_ATTRIBUTES.contains(&t) {
            continue;
        }
        let Some(v) = boolean(Some(&a.value)) else {
            return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID));
        };
        match t {
            cka::CKA_EXTRACTABLE if !v => next = Held(next.0 | Held::NOT_EXTRACTABLE),
            cka::CKA_EXTRACTABLE if held.has(Held::NOT_EXTRACTABLE) => {
                return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
            }
            cka::CKA_EXTRACTABLE => {}
            _ => return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)),
        }
    }
    Ok(next)
}

/// The flags of a new key of a replicated partition.
fn held_of_new_key(template: &[Attribute], local: bool) -> Held {
    let find = |t: u64| {
        template
            .iter()
            .rev()
            .find(|a| a.attr_type.0 == t)
            .and_then(|a| boolean(Some(&a.value)))
    };
    let extractable = find(cka::CKA_EXTRACTABLE).unwrap_or(false);
    let sensitive = find(cka::CKA_SENSITIVE).unwrap_or(true);
    let mut bits = Held::REPLICATED;
    if !extractable {
        bits |= Held::NOT_EXTRACTABLE;
        if local {
            // Unwrapped or derived keys were outside before.
            bits |= Held::NEVER_EXTRACTABLE;
        }
    }
    if local {
        bits |= Held::LOCAL;
        if sensitive {
            bits |= Held::ALWAYS_SENSITIVE;
        }
    }
    Held(bits)
}

/// A template for an existing object of `class` (`C_SetAttributeValue`),
/// with the tenant's value of the tag attribute turned into the device's.
pub fn with_device_tag(
    template: &[Attribute],
    uid: &Uid,
    held: Held,
    class: u64,
) -> CkResult<Vec<Attribute>> {
    let tag_attr = tag_attribute(class);
    template
        .iter()
        .map(|a| match (a.attr_type.0, &a.value) {
            (cka::CKA_UNIQUE_ID, _) => Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)),
            (t, AttributeValue::Bytes(b)) if t == tag_attr => Ok(Attribute::new(
                t,
                AttributeValue::Bytes(tag(t, uid, held, b)),
            )),
            (t, _) if t == tag_attr => Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
            _ => Ok(a.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cryptoki_sys::CKK_AES;

    use super::*;

    #[test]
    fn ids_round_trip() {
        let uid = [7u8; UID_LEN];
        let none = Held::default();
        let id = device_id(&uid, none, b"mine");
        assert!(id.starts_with(b"hl1:"));
        assert_eq!(parse_device_id(&id), Some((uid, none, &b"mine"[..])));
        assert_eq!(
            parse_device_id(&device_id(&uid, none, b"")),
            Some((uid, none, &b""[..]))
        );
        // A replicated partition's key carries its flags.
        let held = Held(Held::REPLICATED | Held::NOT_EXTRACTABLE);
        let id = device_id(&uid, held, b"mine");
        assert!(id.starts_with(b"hl2:"));
        assert_eq!(parse_device_id(&id), Some((uid, held, &b"mine"[..])));
        assert_eq!(parse_tag(cka::CKA_ID, &id), Some((uid, &b"mine"[..])));
        // Flags without the replicated bit are not hsmlink's.
        let forged = [&b"hl2:"[..], &uid, &[2u8], b"x"].concat();
        assert_eq!(parse_device_id(&forged), None);
        assert_eq!(parse_device_id(b"hl1:short"), None);
        assert_eq!(parse_device_id(b"someone else's id"), None);
        assert_eq!(
            unique_id(&uid),
            b"07070707070707070707070707070707".to_vec()
        );
    }

    #[test]
    fn new_objects_get_hsmlinks_defaults_and_an_id() {
        let template = vec![
            Attribute::new(cka::CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
            Attribute::new(cka::CKA_KEY_TYPE, AttributeValue::Ulong(CKK_AES)),
            Attribute::new(cka::CKA_ID, AttributeValue::Bytes(b"k1".to_vec())),
            Attribute::new(cka::CKA_EXTRACTABLE, AttributeValue::Bool(true)),
        ];
        let new = new_object(&template, Defaults::of(CKO_DATA, false, false)).unwrap();
        assert_eq!(
            (new.class, new.token, new.private),
            (CKO_SECRET_KEY, false, true)
        );
        let get = |t: u64| {
            new.template
                .iter()
                .filter(|a| a.attr_type.0 == t)
                .map(|a| a.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get(cka::CKA_TOKEN), vec![AttributeValue::Bool(false)]);
        assert_eq!(get(cka::CKA_PRIVATE), vec![AttributeValue::Bool(true)]);
        assert_eq!(get(cka::CKA_SENSITIVE), vec![AttributeValue::Bool(true)]);
        // The template's own choice stands.
        assert_eq!(get(cka::CKA_EXTRACTABLE), vec![AttributeValue::Bool(true)]);
        assert_eq!(
            get(cka::CKA_ID),
            vec![AttributeValue::Bytes(device_id(
                &new.uid,
                Held::default(),
                b"k1"
            ))]
        );
        assert_eq!(new.held, Held::default());

        // On a replicated partition the device's copy is extractable; the
        // tenant's answers are in the flags of the tag.
        let mut asked = template.clone();
        asked[3] = Attribute::new(cka::CKA_EXTRACTABLE, AttributeValue::Bool(false));
        let new = new_object(&asked, Defaults::of(CKO_DATA, true, true)).unwrap();
        let get = |t: u64| {
            new.template
                .iter()
                .filter(|a| a.attr_type.0 == t)
                .map(|a| a.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get(cka::CKA_EXTRACTABLE), vec![AttributeValue::Bool(true)]);
        assert!(new.held.hides_extractable());
        assert_eq!(new.held.answer(cka::CKA_EXTRACTABLE), Some(false));
        assert_eq!(new.held.answer(cka::CKA_NEVER_EXTRACTABLE), Some(true));
        assert_eq!(new.held.answer(cka::CKA_LOCAL), Some(true));
        assert_eq!(new.held.answer(cka::CKA_ALWAYS_SENSITIVE), Some(true));
        assert_eq!(
            get(cka::CKA_ID),
            vec![AttributeValue::Bytes(device_id(&new.uid, new.held, b"k1"))]
        );
        // Unwrapped: neither local nor never extractable.
        let unwrapped = new_object(&asked, Defaults::of(CKO_SECRET_KEY, true, false)).unwrap();
        assert_eq!(
            unwrapped.held.answer(cka::CKA_NEVER_EXTRACTABLE),
            Some(false)
        );
        assert_eq!(unwrapped.held.answer(cka::CKA_LOCAL), Some(false));
        assert_eq!(unwrapped.held.answer(cka::CKA_EXTRACTABLE), Some(false));

        let data = new_object(
            &[Attribute::new(
                cka::CKA_CLASS,
                AttributeValue::Ulong(CKO_DATA),
            )],
            Defaults {
                class: CKO_DATA,
                tenant_id: b"inherited",
                replicated: true,
                local: false,
            },
        )
        .unwrap();
        assert!(!data.private);
        // Data objects have no CKA_ID: their tag is CKA_APPLICATION.
        assert_eq!(data.held, Held::default());
        let application = tag(cka::CKA_APPLICATION, &data.uid, data.held, b"inherited");
        assert!(data.template.contains(&Attribute::new(
            cka::CKA_APPLICATION,
            AttributeValue::Bytes(application.clone())
        )));
        assert!(std::str::from_utf8(&application).is_ok());
        assert_eq!(
            parse_tag(cka::CKA_APPLICATION, &application),
            Some((data.uid, &b"inherited"[..]))
        );
        assert_eq!(parse_tag(cka::CKA_APPLICATION, b"hl1:zz"), None);

        let unique = [Attribute::new(
            cka::CKA_UNIQUE_ID,
            AttributeValue::Bytes(b"x".to_vec()),
        )];
        let defaults = Defaults::of(CKO_DATA, false, false);
        assert_eq!(
            new_object(&unique, defaults).unwrap_err(),
            Ckr(CKR_ATTRIBUTE_READ_ONLY)
        );
        assert_eq!(
            with_device_tag(&unique, &[0; UID_LEN], Held::default(), CKO_DATA).unwrap_err(),
            Ckr(CKR_ATTRIBUTE_READ_ONLY)
        );
    }
}
