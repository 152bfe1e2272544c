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
//! ```
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
    CK_OBJECT_HANDLE, CKO_DATA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY,
    CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_VALUE_INVALID,
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
pub const UID_LEN: usize = 16;
pub type Uid = [u8; UID_LEN];

pub fn new_uid() -> CkResult<Uid> {
    let mut uid = [0u8; UID_LEN];
    fill_random(&mut uid)?;
    Ok(uid)
}

/// The `CKA_ID` an object carries on the device.
pub fn device_id(uid: &Uid, tenant_id: &[u8]) -> Vec<u8> {
    [ID_PREFIX, uid, tenant_id].concat()
}

/// The attribute that carries the uid of an object of `class`.
pub fn tag_attribute(class: u64) -> u64 {
    if class == CKO_DATA {
        cka::CKA_APPLICATION
    } else {
        cka::CKA_ID
    }
}

/// The device value of tag attribute `attr`.
pub fn tag(attr: u64, uid: &Uid, tenant: &[u8]) -> Vec<u8> {
    if attr == cka::CKA_APPLICATION {
        // A string attribute: the uid in hex.
        [ID_PREFIX, &unique_id(uid), tenant].concat()
    } else {
        device_id(uid, tenant)
    }
}

/// The uid and the tenant's value of a device tag, if hsmlink made it.
pub fn parse_tag(attr: u64, value: &[u8]) -> Option<(Uid, &[u8])> {
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
    Some((uid, tenant))
}

/// The uid and the tenant's `CKA_ID` of a device `CKA_ID`, if hsmlink made it.
pub fn parse_device_id(id: &[u8]) -> Option<(Uid, &[u8])> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (uid, tenant_id) = rest.split_first_chunk::<UID_LEN>()?;
    Some((*uid, tenant_id))
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
    /// The pool's anchor generation when the object was made.
    pub generation: u64,
}

/// One object of the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub uid: Uid,
    /// The device object; meaningless for a tombstone.
    pub device: CK_OBJECT_HANDLE,
    pub class: u64,
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

/// The partition's objects, by tenant handle and by device handle.
#[derive(Debug, Default)]
pub struct ObjectMap {
    by_handle: BTreeMap<u64, Entry>,
    by_device: HashMap<CK_OBJECT_HANDLE, u64>,
}

impl ObjectMap {
    pub fn insert(&mut self, handle: u64, entry: Entry) {
        // A tombstone has no device object (its old handle may be reused).
        if !entry.tombstone {
            self.by_device.insert(entry.device, handle);
        }
        self.by_handle.insert(handle, entry);
    }

    pub fn remove(&mut self, handle: u64) -> Option<Entry> {
        let entry = self.by_handle.remove(&handle)?;
        if !entry.tombstone {
            self.by_device.remove(&entry.device);
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

    /// The tenant handle of a device object, if it is one of ours.
    pub fn by_device(&self, device: CK_OBJECT_HANDLE) -> Option<u64> {
        self.by_device.get(&device).copied()
    }

    pub fn clear(&mut self) {
        self.by_handle.clear();
        self.by_device.clear();
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
}

/// The defaults of a new object whose template does not say.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    pub class: u64,
    /// The tenant's `CKA_ID` if the template gives none.
    pub tenant_id: &'a [u8],
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
    let mut out: Vec<Attribute> = key_states::without_state(template)
        .filter(|a| a.attr_type.0 != tag_attr)
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
        default(cka::CKA_EXTRACTABLE, AttributeValue::Bool(false));
    }
    out.push(Attribute::new(
        tag_attr,
        AttributeValue::Bytes(tag(tag_attr, &uid, &tenant_tag)),
    ));
    Ok(NewObject {
        template: out,
        uid,
        class,
        token,
        private,
        state,
    })
}

/// A template for an existing object of `class` (`C_SetAttributeValue`),
/// with the tenant's value of the tag attribute turned into the device's.
pub fn with_device_tag(template: &[Attribute], uid: &Uid, class: u64) -> CkResult<Vec<Attribute>> {
    let tag_attr = tag_attribute(class);
    template
        .iter()
        .map(|a| match (a.attr_type.0, &a.value) {
            (cka::CKA_UNIQUE_ID, _) => Err(Ckr(CKR_ATTRIBUTE_READ_ONLY)),
            (t, AttributeValue::Bytes(b)) if t == tag_attr => {
                Ok(Attribute::new(t, AttributeValue::Bytes(tag(t, uid, b))))
            }
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
        let id = device_id(&uid, b"mine");
        assert!(id.starts_with(b"hl1:"));
        assert_eq!(parse_device_id(&id), Some((uid, &b"mine"[..])));
        assert_eq!(
            parse_device_id(&device_id(&uid, b"")),
            Some((uid, &b""[..]))
        );
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
        let new = new_object(
            &template,
            Defaults {
                class: CKO_DATA,
                tenant_id: b"",
            },
        )
        .unwrap();
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
            vec![AttributeValue::Bytes(device_id(&new.uid, b"k1"))]
        );

        let data = new_object(
            &[Attribute::new(
                cka::CKA_CLASS,
                AttributeValue::Ulong(CKO_DATA),
            )],
            Defaults {
                class: CKO_DATA,
                tenant_id: b"inherited",
            },
        )
        .unwrap();
        assert!(!data.private);
        // Data objects have no CKA_ID: their tag is CKA_APPLICATION.
        let application = tag(cka::CKA_APPLICATION, &data.uid, b"inherited");
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
        let defaults = Defaults {
            class: CKO_DATA,
            tenant_id: b"",
        };
        assert_eq!(
            new_object(&unique, defaults).unwrap_err(),
            Ckr(CKR_ATTRIBUTE_READ_ONLY)
        );
        assert_eq!(
            with_device_tag(&unique, &[0; UID_LEN], CKO_DATA).unwrap_err(),
            Ckr(CKR_ATTRIBUTE_READ_ONLY)
        );
    }
}
