//! The `pkcs11` driver: a partition is a token of a vendor PKCS#11 module
//! (a network HSM's library in production, SoftHSMv2 in tests).
//!
//! A partition lives on one device or, with replicas, on several
//! ([`replicas`]: the same objects on each, failover between them).
//! - [`module`]: the module, loaded and `C_Initialize`d once per path with
//!   `CKF_OS_LOCKING_OK`, and the safe layer over its raw calls;
//!   [`template`] and [`params`] marshal attributes and mechanism
//!   parameters to and from their C form.
//! - [`device`]: a token of a module (`[[devices]]`), found by label or
//!   serial, with its [`session_pool`]: a bounded pool of read/write device
//!   sessions logged in once as `CKU_USER` with the device PIN.
//! - [`objects`]: hsmlink's handles ↔ device objects, through an hsmlink
//!   id carried in each object's `CKA_ID` (`CKA_APPLICATION` for data
//!   objects); device handles never reach a tenant.
//! - [`operations`]: the [`CryptoDriver`](crate::driver::CryptoDriver)
//!   half, each operation holding its device session.
//! - [`key_states`]: `CKA_HSMLINK_KEY_STATE`, which vendor modules do not
//!   know, kept by hsmlink and enforced before a key's use reaches the
//!   device; a destroyed key's device object goes, a tombstone stays.
//! - [`placement`]: the devices a partition allocated with a replica count
//!   goes to.
//! - [`replicas`]: routing calls to a partition's devices, copies between
//!   them under a transport key, health checks and catching up.
//! - [`mechanisms`]: what a slot lists — the device's mechanisms that
//!   hsmlink carries — and the hook that maps hsmlink's SM numbers to a
//!   device's own.
//!
//! The tenant's token state is hsmlink's, kept as the soft driver keeps it
//! ([`crate::partition_state`]): the label, flags, and the tenant's SO and
//! user PINs as argon2id hashes in the store. The device sees only the
//! device PIN, from the server's configuration (phase 1; a later phase
//! wraps a per-partition device PIN under a key derived from the tenant's
//! PIN). The rules above the driver stay: private objects are visible to
//! the logged-in user only, session objects to their application only and
//! they die with their session, read-only sessions do not write token
//! objects. The device enforces its own attribute policy (sensitive,
//! extractable, usage flags); hsmlink adds its defaults to new objects and
//! enforces `CKA_ALLOWED_MECHANISMS` itself as well.

// The one place of the server that calls C: the vendor module's entry
// points, through the function list it hands out.
#![allow(
    unsafe_code,
    reason = "calls into vendor PKCS#11 modules; every unsafe block says why it is sound"
)]

pub mod device;
pub mod device_metrics;
pub mod key_states;
pub mod mechanisms;
pub mod module;
pub mod objects;
pub mod operations;
pub mod params;
pub mod placement;
pub mod replicas;
pub mod session_pool;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use cryptoki_sys::*;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, AttributeValue, ObjectHandle, Secret,
};
use tracing::{info, warn};

use self::device::{Device, DeviceError};
use self::key_states::Tombstones;
use self::module::Module;
use self::objects::{Defaults, Entry, Held, ObjectMap, Owner, Uid};
use self::operations::OpCore;
use self::replicas::{Links, Replica};
use self::template::{CTemplate, read_attributes};
use crate::attributes::{boolean, bytes};
use crate::driver::{ObjectContext, OwnerId, PartitionDriver, TokenState, UserKind};
use crate::error::{CkResult, Ckr};
use crate::key_state::State as KeyState;
use crate::partition_state::{self, PinRules};
use crate::soft::partition::SecurityPolicy;
use crate::soft::partition::actor;
use crate::store::{DeviceObjectRecord, PartitionRecord, Store};
use hsmlink_protocol::vendor::CKA_HSMLINK_KEY_STATE;

/// `CK_TOKEN_INFO.model` of a pkcs11-driver token.
pub const MODEL: &str = "pkcs11";

/// `algorithms` of a pkcs11 partition's record in the store.
pub const ALGORITHMS: &str = "pkcs11";

/// Attributes holding key material: a find template naming one never
/// matches an object that hides it (no oracle on secret values, whatever
/// the device's find does).
const SECRET_ATTRIBUTES: &[u64] = &[
    cka::CKA_VALUE,
    cka::CKA_PRIVATE_EXPONENT,
    cka::CKA_PRIME_1,
    cka::CKA_PRIME_2,
    cka::CKA_EXPONENT_1,
    cka::CKA_EXPONENT_2,
    cka::CKA_COEFFICIENT,
];

/// One partition on its devices.
#[derive(Debug)]
pub struct Pkcs11Partition {
    name: String,
    /// The devices holding the partition, the configured `device` first.
    replicas: Vec<Arc<Replica>>,
    /// Transport keys between replicas.
    links: Links,
    /// Held by a copy between replicas (see `replicas::Pkcs11Partition::copy_to`).
    copying: Mutex<()>,
    /// What the slot lists: what every replica can do.
    mechanisms: Vec<crate::soft::mechanisms::MechanismEntry>,
    store: Arc<dyn Store>,
    policy: SecurityPolicy,
    state: Mutex<State>,
    /// Active digest operations by client session, for `C_DigestKey` (the
    /// generic layer hands the driver the operation as a trait object).
    digests: Mutex<HashMap<OwnerId, Weak<Mutex<OpCore>>>>,
    /// Held by a key-state move and by a copy, from reading the state to
    /// recording it: moves are forward only, and no copy is more usable
    /// than its original, also under concurrent calls.
    moving: Mutex<()>,
}

#[derive(Debug)]
struct State {
    record: PartitionRecord,
    objects: ObjectMap,
    /// The remaining attributes of destroyed keys, by handle.
    tombstones: Tombstones,
}

/// What a key lookup gives an operation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyRef {
    pub entry: Entry,
}

impl Pkcs11Partition {
    /// Opens partition `name` on `devices` (its replicas, the configured
    /// `device` first): its token state from the store (a fresh one the
    /// first time), and its objects, found on each device by the uids the
    /// store holds. A replica missing some of them gets them from another
    /// before it serves.
    pub fn open(
        name: &str,
        devices: Vec<Arc<Device>>,
        store: Arc<dyn Store>,
        policy: SecurityPolicy,
    ) -> Result<Self, DeviceError> {
        let first = devices.first().map(|d| d.name.clone()).unwrap_or_default();
        let fail = |device: &str, message: String| DeviceError {
            device: device.to_owned(),
            message: format!("partition {name}: {message}"),
        };
        if devices.is_empty() {
            return Err(fail(&first, "no device".to_owned()));
        }
        let record = match store
            .partition(name)
            .map_err(|e| fail(&first, e.to_string()))?
        {
            Some(record) if record.algorithms == ALGORITHMS => record,
            Some(record) => {
                return Err(fail(
                    &first,
                    format!(
                        "the partition was allocated on another driver (algorithms {:?}); it cannot move to a device",
                        record.algorithms
                    ),
                ));
            }
            None => {
                let record = partition_state::fresh_record(name, ALGORITHMS, Vec::new());
                store
                    .insert_partition(&record)
                    .map_err(|e| fail(&first, e.to_string()))?;
                record
            }
        };
        let replicas: Vec<Arc<Replica>> = devices
            .into_iter()
            .enumerate()
            .map(|(i, d)| Arc::new(Replica::new(i, d)))
            .collect();
        // Each device's objects made by hsmlink, by uid.
        let mut on_devices: Vec<HashMap<Uid, Identity>> = Vec::new();
        for replica in &replicas {
            on_devices
                .push(token_objects(replica).map_err(|message| fail(replica.name(), message))?);
        }
        let mut map = ObjectMap::default();
        let mut tombstones = Tombstones::new();
        let mut unburied: Vec<(usize, CK_OBJECT_HANDLE)> = Vec::new();
        let rows = store
            .device_objects(name)
            .map_err(|e| fail(&first, e.to_string()))?;
        let mut missing = 0usize;
        for row in &rows {
            let Ok(uid) = Uid::try_from(row.uid.as_slice()) else {
                missing += 1;
                continue;
            };
            let key_state = KeyState::of(row.key_state);
            let found: Vec<(usize, Identity)> = on_devices
                .iter_mut()
                .enumerate()
                .filter_map(|(i, objects)| objects.remove(&uid).map(|o| (i, o)))
                .collect();
            if let Some(kept) = row.tombstone.as_deref().and_then(key_states::decode) {
                let value = |attr| {
                    kept.iter()
                        .find(|a| a.attr_type.0 == attr)
                        .map(|a| &a.value)
                };
                unburied.extend(found.iter().map(|(i, o)| (*i, o.object)));
                map.insert(
                    row.handle,
                    Entry {
                        uid,
                        class: crate::attributes::ulong(value(cka::CKA_CLASS))
                            .unwrap_or(CKO_SECRET_KEY),
                        held: Held::default(),
                        private: boolean(value(cka::CKA_PRIVATE)).unwrap_or(true),
                        owner: None,
                        state: KeyState::Destroyed,
                        tombstone: true,
                    },
                );
                tombstones.insert(row.handle, kept);
                continue;
            }
            let Some((_, identity)) = found.first() else {
                missing += 1;
                continue;
            };
            map.insert(
                row.handle,
                Entry {
                    uid,
                    class: identity.class,
                    held: identity.held,
                    private: identity.private,
                    owner: None,
                    state: key_state,
                    tombstone: false,
                },
            );
            for (i, o) in &found {
                replicas[*i].set(uid, o.object);
            }
            for replica in &replicas {
                if !found.iter().any(|(i, _)| *i == replica.index) {
                    replica.mark_stale(uid);
                }
            }
        }
        if missing > 0 {
            warn!(
                partition = name,
                missing,
                "token objects of the store are on none of the devices: they are not served"
            );
        }
        for (replica, orphans) in replicas.iter().zip(&on_devices) {
            if !orphans.is_empty() {
                warn!(
                    partition = name,
                    device = %replica.name(),
                    orphans = orphans.len(),
                    "objects made by hsmlink on the device are unknown to the store: they are not served"
                );
            }
        }
        info!(
            partition = name,
            devices = replicas.len(),
            objects = map.len(),
            "partition open"
        );
        let mechanisms =
            mechanisms::common(replicas.iter().map(|r| r.device.mechanisms.as_slice()));
        let partition = Self {
            name: name.to_owned(),
            replicas,
            links: Links::default(),
            copying: Mutex::new(()),
            mechanisms,
            store,
            policy,
            state: Mutex::new(State {
                record,
                objects: map,
                tombstones,
            }),
            digests: Mutex::new(HashMap::new()),
            moving: Mutex::new(()),
        };
        for (replica, object) in unburied {
            partition.finish_burial(&partition.replicas[replica], object);
        }
        // A replica that misses objects catches up before it serves.
        for replica in &partition.replicas {
            if replica.has_stale() {
                replica.take_out(CKR_DEVICE_ERROR);
            }
        }
        Ok(partition)
    }

    /// Whether the partition keeps copies on several devices (its keys are
    /// then extractable on the devices, for the copies only).
    pub(crate) fn replicated(&self) -> bool {
        self.replicas.len() > 1
    }

    /// The replicas, the configured `device` first.
    pub fn replicas(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// What the slot lists.
    pub fn mechanisms(&self) -> &[crate::soft::mechanisms::MechanismEntry] {
        &self.mechanisms
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pin_rules(&self) -> PinRules<'_> {
        PinRules {
            partition: &self.name,
            store: self.store.as_ref(),
            policy: self.policy,
        }
    }

    /// The device whose mechanism numbers a call uses (every replica's
    /// are the same today: hsmlink's numbers map to none of them).
    pub(crate) fn device(&self) -> &Arc<Device> {
        &self.replicas[0].device
    }

    /// The object `handle` as `ctx` may see it: `missing` if it is not
    /// there for `ctx`, `hidden` if it is private and the user is not
    /// logged in (`CKR_PIN_EXPIRED` before a to-be-changed PIN is changed).
    fn visible(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        missing: CK_RV,
        hidden: CK_RV,
    ) -> CkResult<Entry> {
        let state = self.lock();
        let entry = *state.objects.get(handle.0).ok_or(Ckr(missing))?;
        drop(state);
        if let Some(owner) = entry.owner
            && (owner.app != ctx.app || !self.lives(&owner))
        {
            return Err(Ckr(missing));
        }
        if entry.private && !ctx.sees_private() {
            if ctx.login == Some(UserKind::User) && ctx.pin_expired {
                return Err(Ckr(CKR_PIN_EXPIRED));
            }
            return Err(Ckr(hidden));
        }
        Ok(entry)
    }

    fn object(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<Entry> {
        self.visible(
            ctx,
            handle,
            CKR_OBJECT_HANDLE_INVALID,
            CKR_OBJECT_HANDLE_INVALID,
        )
    }

    /// A key for a cryptographic call.
    pub(crate) fn key(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<KeyRef> {
        let entry = self.visible(ctx, handle, CKR_KEY_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN)?;
        if !entry.is_key() {
            return Err(Ckr(CKR_KEY_HANDLE_INVALID));
        }
        Ok(KeyRef { entry })
    }

    /// May `ctx` make an object so (token objects need a read/write
    /// session, private ones a logged-in user)?
    pub(crate) fn may_hold(ctx: &ObjectContext, token: bool, private: bool) -> CkResult<()> {
        if token && !ctx.rw {
            return Err(Ckr(CKR_SESSION_READ_ONLY));
        }
        if private && ctx.login != Some(UserKind::User) {
            return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
        }
        Ok(())
    }

    /// Whether the anchor holding a session object is the one it was made
    /// in (a failed anchor took its session objects with it).
    fn lives(&self, owner: &Owner) -> bool {
        self.replicas
            .get(owner.replica)
            .is_some_and(|r| r.anchor_generation() == owner.generation)
    }

    /// Runs a call that makes objects, once, on the first healthy replica:
    /// session objects in its anchor (they live as long as the session
    /// that made them), token objects in any pooled session (copied to
    /// the other replicas once recorded).
    pub(crate) fn make<T>(
        &self,
        session_object: bool,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<(T, Made)> {
        self.make_on(self.primary()?, session_object, f)
    }

    /// [`Self::make`] on `replica`.
    pub(crate) fn make_on<T>(
        &self,
        replica: &Arc<Replica>,
        session_object: bool,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<(T, Made)> {
        let (value, generation) = if session_object {
            let (v, generation) = replica.with_anchor(f)?;
            (v, Some(generation))
        } else {
            // Key generation may rightly take long: not a hanging device.
            (replica.run_untimed(f)?, None)
        };
        Ok((
            value,
            Made {
                replica: replica.index,
                generation,
            },
        ))
    }

    /// Runs one call that concerns no object, on any healthy replica.
    pub(crate) fn run<T>(
        &self,
        mut f: impl FnMut(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<T> {
        self.read(None, |_, mut session, _| session.run(&mut f))
    }

    /// Reads object `entry` on any healthy replica holding it.
    pub(crate) fn read_object<T>(
        &self,
        entry: &Entry,
        mut f: impl FnMut(&Module, CK_SESSION_HANDLE, CK_OBJECT_HANDLE) -> CkResult<T>,
    ) -> CkResult<T> {
        self.read(Some(entry), |_, mut session, object| {
            session.run(|m, s| f(m, s, object))
        })
    }

    /// Records a new device object as `handle`: in the store first for a
    /// token object (if that fails the device object goes again).
    pub(crate) fn record_new(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        new: NewDeviceObject,
    ) -> CkResult<()> {
        let entry = Entry {
            uid: new.uid,
            class: new.class,
            held: new.held,
            private: new.private,
            owner: new.made.generation.map(|generation| Owner {
                app: ctx.app,
                session: ctx.session,
                replica: new.made.replica,
                generation,
            }),
            state: new.state,
            tombstone: false,
        };
        let Some(replica) = self.replicas.get(new.made.replica) else {
            return Err(Ckr::GENERAL);
        };
        replica.set(new.uid, new.device);
        let mut state = self.lock();
        let stored = if state.objects.contains(handle.0) {
            Err(Ckr::GENERAL)
        } else if entry.owner.is_none() {
            self.store
                .put_device_object(&DeviceObjectRecord {
                    partition: self.name.clone(),
                    handle: handle.0,
                    uid: new.uid.to_vec(),
                    key_state: (new.state != KeyState::Active).then(|| new.state.value()),
                    tombstone: None,
                })
                .map_err(|e| {
                    warn!(partition = %self.name, "cannot record a device object: {e}");
                    Ckr::DEVICE
                })
        } else {
            Ok(())
        };
        match stored {
            Ok(()) => {
                state.objects.insert(handle.0, entry);
                drop(state);
                if entry.owner.is_none() {
                    self.replicate(replica, &entry.uid);
                }
                Ok(())
            }
            Err(e) => {
                drop(state);
                self.destroy_on_device(&entry);
                Err(e)
            }
        }
    }

    /// Best effort: a device object we could not record, or a session
    /// object whose session closed.
    fn destroy_on_device(&self, entry: &Entry) {
        if entry.tombstone {
            return;
        }
        if let Some(owner) = entry.owner
            && !self.lives(&owner)
        {
            return;
        }
        for replica in &self.replicas {
            let Some(object) = replica.forget(&entry.uid) else {
                continue;
            };
            let result = match entry.owner {
                Some(_) => replica
                    .with_anchor(|m, s| m.destroy_object(s, object))
                    .map(|_| ()),
                None => replica.run(|m, s| m.destroy_object(s, object)),
            };
            if let Err(Ckr(rv)) = result {
                warn!(
                    partition = %self.name,
                    device = %replica.name(),
                    "cannot destroy a device object: {}",
                    module::rv_name(rv)
                );
                if entry.owner.is_none() {
                    // Destroyed when the replica catches up.
                    replica.mark_stale(entry.uid);
                }
            }
        }
    }

    /// The tenant's value of a device object's tag attribute.
    pub(crate) fn tenant_tag(&self, entry: &Entry) -> CkResult<Vec<u8>> {
        let attr = objects::tag_attribute(entry.class);
        let value = self.read_object(entry, |m, s, o| template::read_one(m, s, o, attr))?;
        Ok(bytes(value.as_ref())
            .and_then(|v| objects::parse_tag(attr, v))
            .map(|(_, tenant)| tenant.to_vec())
            .unwrap_or_default())
    }

    /// `C_CopyObject` of a data object, whose tag (`CKA_APPLICATION`)
    /// cannot change after creation: a new object made of the source's
    /// attributes (a data object holds no key material), the template's,
    /// and the copy's own tag.
    fn copy_data_object(
        &self,
        entry: &Entry,
        template: &[Attribute],
        token: bool,
        uid: &Uid,
        tenant_tag: &[u8],
    ) -> CkResult<(CK_OBJECT_HANDLE, Made)> {
        const COPIED: &[u64] = &[
            cka::CKA_CLASS,
            cka::CKA_TOKEN,
            cka::CKA_PRIVATE,
            cka::CKA_MODIFIABLE,
            cka::CKA_COPYABLE,
            cka::CKA_DESTROYABLE,
            cka::CKA_LABEL,
            cka::CKA_OBJECT_ID,
            cka::CKA_VALUE,
        ];
        let values = self.read_object(entry, |m, s, o| read_attributes(m, s, o, COPIED))?;
        let mut attrs: BTreeMap<u64, AttributeValue> = COPIED
            .iter()
            .zip(values)
            .filter_map(|(t, v)| match v {
                AttributeResult::Value(v) => Some((*t, v)),
                _ => None,
            })
            .collect();
        if boolean(attrs.get(&cka::CKA_COPYABLE)) == Some(false) {
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        for a in template {
            attrs.insert(a.attr_type.0, a.value.clone());
        }
        attrs.insert(cka::CKA_TOKEN, AttributeValue::Bool(token));
        attrs.insert(
            cka::CKA_APPLICATION,
            AttributeValue::Bytes(objects::tag(
                cka::CKA_APPLICATION,
                uid,
                Held::default(),
                tenant_tag,
            )),
        );
        let full: Vec<Attribute> = attrs
            .into_iter()
            .map(|(t, v)| Attribute::new(t, v))
            .collect();
        let mut c = CTemplate::new(&full)?;
        self.make(!token, |m, s| m.create_object(s, &mut c))
    }

    /// `C_SetAttributeValue` of a destroyed key's tombstone
    /// ([`key_states::tombstone_set`]), recorded for a token object.
    fn set_tombstone(
        &self,
        handle: ObjectHandle,
        entry: &Entry,
        template: &[Attribute],
    ) -> CkResult<()> {
        let mut state = self.lock();
        let kept = state
            .tombstones
            .get(&handle.0)
            .map_or(&[][..], Vec::as_slice);
        let next = key_states::tombstone_set(entry, kept, template)?;
        if entry.owner.is_none() {
            self.store
                .set_device_key_state(
                    &self.name,
                    handle.0,
                    KeyState::Destroyed.value(),
                    Some(&key_states::encode(&next)?),
                )
                .map_err(|e| {
                    warn!(partition = %self.name, "cannot record a destroyed key: {e}");
                    Ckr::DEVICE
                })?;
        }
        state.tombstones.insert(handle.0, next);
        Ok(())
    }

    /// Destroys every object hsmlink made on the devices (`C_InitToken`).
    /// A replica that is out gets the empty partition when it catches up.
    fn wipe_devices(&self) -> CkResult<()> {
        let mut wiped = false;
        for replica in &self.replicas {
            if !replica.is_up() {
                continue;
            }
            let result = replica.run(|m, s| {
                for object in m.find(s, &mut CTemplate::new(&[])?)? {
                    if read_identity(m, s, object)?.is_some() {
                        m.destroy_object(s, object)?;
                    }
                }
                Ok(())
            });
            match result {
                Ok(()) => wiped = true,
                Err(Ckr(rv)) if replicas::is_device_failure(rv) => {}
                Err(e) => return Err(e),
            }
            replica.clear_objects();
        }
        if wiped {
            Ok(())
        } else {
            Err(Ckr(CKR_DEVICE_ERROR))
        }
    }
}

/// A find template split into what the device matches and what hsmlink
/// matches itself.
#[derive(Debug)]
struct FindFilter {
    device_template: Vec<Attribute>,
    want_tags: Vec<(u64, Vec<u8>)>,
    want_unique: Option<Vec<u8>>,
    want_state: Option<AttributeValue>,
    want_held: Vec<(u64, AttributeValue)>,
    secret_asked: Vec<u64>,
}

impl Pkcs11Partition {
    /// The objects `ctx` sees on `replica` that match `filter`.
    fn find_on(
        &self,
        ctx: &ObjectContext,
        replica: &Replica,
        session: &mut session_pool::DeviceSession,
        filter: &FindFilter,
    ) -> CkResult<Vec<ObjectHandle>> {
        let found = session.run(|m, s| m.find(s, &mut CTemplate::new(&filter.device_template)?))?;
        let candidates: BTreeMap<u64, Entry> = {
            let state = self.lock();
            found
                .iter()
                .filter_map(|d| replica.uid_of(*d))
                .filter_map(|uid| state.objects.by_uid(&uid))
                .filter_map(|h| state.objects.get(h).map(|e| (h, *e)))
                .collect()
        };
        let mut out = Vec::new();
        for (handle, entry) in candidates {
            if self.object(ctx, ObjectHandle(handle)).is_err() {
                continue;
            }
            let Some(object) = replica.handle(&entry.uid) else {
                continue;
            };
            if let Some(want) = &filter.want_state
                && key_states::answer(&entry) != AttributeResult::Value(want.clone())
            {
                continue;
            }
            if let Some(want) = &filter.want_unique
                && objects::unique_id(&entry.uid) != *want
            {
                continue;
            }
            if filter
                .want_held
                .iter()
                .any(|(t, v)| entry.held.answer(*t).map(AttributeValue::Bool).as_ref() != Some(v))
            {
                continue;
            }
            let mut tags_match = true;
            for (attr, want) in &filter.want_tags {
                let value = session.run(|m, s| template::read_one(m, s, object, *attr))?;
                let value = bytes(value.as_ref());
                let tenant = if *attr == objects::tag_attribute(entry.class) {
                    value
                        .and_then(|v| objects::parse_tag(*attr, v))
                        .map(|(_, t)| t)
                } else {
                    value
                };
                if tenant != Some(want.as_slice()) {
                    tags_match = false;
                    break;
                }
            }
            if !tags_match {
                continue;
            }
            if !filter.secret_asked.is_empty() {
                let values =
                    session.run(|m, s| read_attributes(m, s, object, &filter.secret_asked))?;
                if values
                    .iter()
                    .any(|v| !matches!(v, AttributeResult::Value(_)))
                {
                    continue;
                }
            }
            out.push(ObjectHandle(handle));
        }
        Ok(out)
    }
}

/// hsmlink's template rules for `C_CreateObject` (the soft HSM's: one
/// answer for a wrong template on every driver), where hsmlink models the
/// object's class and key type; others are the device's to judge.
fn check_template(ctx: &ObjectContext, template: &[Attribute]) -> CkResult<()> {
    let find = |t: u64| {
        template
            .iter()
            .rev()
            .find(|a| a.attr_type.0 == t)
            .map(|a| &a.value)
    };
    let class = crate::attributes::ulong(find(cka::CKA_CLASS));
    let subtype = match class {
        Some(CKO_CERTIFICATE) => crate::attributes::ulong(find(cka::CKA_CERTIFICATE_TYPE)),
        Some(CKO_PUBLIC_KEY | CKO_PRIVATE_KEY | CKO_SECRET_KEY) => {
            crate::attributes::ulong(find(cka::CKA_KEY_TYPE))
        }
        _ => None,
    };
    let modelled =
        class.is_none_or(|class| crate::attributes::Profile::for_object(class, subtype).is_ok());
    if modelled {
        crate::attributes::new_object(template, actor(ctx), "")?;
    }
    Ok(())
}

/// Where a new object was made: the replica, and the anchor generation of
/// a session object (`None` for a token object).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Made {
    pub replica: usize,
    pub generation: Option<u64>,
}

/// A device object just made, for [`Pkcs11Partition::record_new`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewDeviceObject {
    pub uid: Uid,
    /// The object on the replica it was made on.
    pub device: CK_OBJECT_HANDLE,
    pub made: Made,
    pub class: u64,
    pub held: Held,
    pub private: bool,
    pub state: KeyState,
}

/// What enumeration learns of a device object hsmlink made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity {
    pub object: CK_OBJECT_HANDLE,
    pub uid: Uid,
    pub class: u64,
    pub held: Held,
    pub private: bool,
    pub token: bool,
}

/// The token objects hsmlink made on `replica`'s device, by uid.
fn token_objects(replica: &Replica) -> Result<HashMap<Uid, Identity>, String> {
    let mut session = replica
        .device
        .pool
        .checkout()
        .map_err(|e| format!("no device session ({})", module::rv_name(e.0)))?;
    let found = session
        .run(|m, s| m.find(s, &mut CTemplate::new(&[])?))
        .map_err(|e| format!("C_FindObjects failed ({})", module::rv_name(e.0)))?;
    let mut objects = HashMap::new();
    for object in found {
        if let Ok(Some(identity)) = session.run(|m, s| read_identity(m, s, object))
            && identity.token
        {
            objects.insert(identity.uid, identity);
        }
    }
    Ok(objects)
}

/// The identity of device object `object`, if hsmlink made it (its tag
/// attribute carries a uid).
pub(crate) fn read_identity(
    module: &Module,
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
) -> CkResult<Option<Identity>> {
    let values = read_attributes(
        module,
        session,
        object,
        &[
            cka::CKA_CLASS,
            cka::CKA_ID,
            cka::CKA_APPLICATION,
            cka::CKA_PRIVATE,
            cka::CKA_TOKEN,
        ],
    )?;
    let value = |i: usize| match values.get(i) {
        Some(AttributeResult::Value(v)) => Some(v),
        _ => None,
    };
    let Some(class) = crate::attributes::ulong(value(0)) else {
        return Ok(None);
    };
    let attr = objects::tag_attribute(class);
    let tag = if attr == cka::CKA_ID {
        value(1)
    } else {
        value(2)
    };
    let Some((uid, held, _)) = bytes(tag).and_then(|t| objects::parse_tag_held(attr, t)) else {
        return Ok(None);
    };
    Ok(Some(Identity {
        object,
        uid,
        class,
        held,
        private: boolean(value(3)).unwrap_or(true),
        token: boolean(value(4)) == Some(true),
    }))
}

impl PartitionDriver for Pkcs11Partition {
    fn token_state(&self) -> TokenState {
        partition_state::token_state(&self.lock().record, &self.policy)
    }

    fn init_token(&self, so_pin: &Secret, label: &str) -> CkResult<()> {
        let mut state = self.lock();
        let so_record = self
            .pin_rules()
            .init_token_so_pin(&mut state.record, so_pin)?;
        self.wipe_devices().map_err(|Ckr(rv)| {
            warn!(
                partition = %self.name,
                "cannot destroy the partition's objects on the device: {}",
                module::rv_name(rv)
            );
            Ckr::DEVICE
        })?;
        let next = partition_state::initialized(&state.record, so_record, label);
        self.store.reinitialize_partition(&next).map_err(|e| {
            warn!(partition = %self.name, "cannot initialise the token: {e}");
            Ckr::DEVICE
        })?;
        state.record = next;
        state.objects.clear();
        state.tombstones.clear();
        Ok(())
    }

    fn init_pin(&self, pin: &Secret) -> CkResult<()> {
        let mut state = self.lock();
        self.pin_rules().init_pin(&mut state.record, pin)
    }

    fn set_pin(&self, who: UserKind, old_pin: &Secret, new_pin: &Secret) -> CkResult<()> {
        let mut state = self.lock();
        self.pin_rules()
            .set_pin(&mut state.record, who, old_pin, new_pin)
    }

    fn verify_pin(&self, who: UserKind, pin: &Secret) -> CkResult<()> {
        let mut state = self.lock();
        self.pin_rules().check_pin(&mut state.record, who, pin)
    }

    fn create_object(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        check_template(ctx, template)?;
        let new = objects::new_object(template, Defaults::of(u64::MAX, self.replicated(), false))?;
        Self::may_hold(ctx, new.token, new.private)?;
        let mut c = CTemplate::new(&new.template)?;
        let (device, made) = self.make(!new.token, |m, s| m.create_object(s, &mut c))?;
        self.record_new(
            ctx,
            handle,
            NewDeviceObject {
                uid: new.uid,
                device,
                made,
                class: new.class,
                held: new.held,
                private: new.private,
                state: new.state,
            },
        )
    }

    fn copy_object(
        &self,
        ctx: &ObjectContext,
        source: ObjectHandle,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let _moving = self.moving.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = self.object(ctx, source)?;
        if entry.tombstone {
            // No device object to copy (a difference from the soft HSM,
            // which copies a destroyed key's remains).
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        // A copy keeps its original's state, or moves it forward.
        let moved = key_states::moved(template, &entry, actor(ctx))?;
        let copy_state = moved.unwrap_or(entry.state);
        let template: Vec<Attribute> = key_states::without_state(template).cloned().collect();
        let template = template.as_slice();
        let find = |t: u64| {
            template
                .iter()
                .find(|a| a.attr_type.0 == t)
                .map(|a| &a.value)
        };
        if find(cka::CKA_UNIQUE_ID).is_some() {
            return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
        }
        let token = boolean(find(cka::CKA_TOKEN)).unwrap_or(entry.owner.is_none());
        let private = boolean(find(cka::CKA_PRIVATE)).unwrap_or(entry.private);
        Self::may_hold(ctx, token, private)?;
        // A replicated key's extractability is hsmlink's: it only goes
        // from true to false, in the copy's flags.
        let held = objects::held_after(entry.held, template)?;
        let template: Vec<Attribute> = template
            .iter()
            .filter(|a| !(held.replicated() && objects::HELD_ATTRIBUTES.contains(&a.attr_type.0)))
            .cloned()
            .collect();
        let template = template.as_slice();
        let tag_attr = objects::tag_attribute(entry.class);
        let tenant_tag = match find(tag_attr) {
            Some(AttributeValue::Bytes(b)) => b.clone(),
            Some(_) => return Err(Ckr(CKR_ATTRIBUTE_VALUE_INVALID)),
            None => self.tenant_tag(&entry)?,
        };
        let uid = objects::new_uid()?;
        let (device, made) = if entry.class == CKO_DATA {
            self.copy_data_object(&entry, template, token, &uid, &tenant_tag)?
        } else {
            // Devices refuse to change CKA_ID within C_CopyObject
            // (SoftHSMv2 does): copy, then tag the copy with its own uid; a
            // copy that cannot be tagged (an object not CKA_MODIFIABLE)
            // goes again and the copy fails.
            let device_template: Vec<Attribute> = template
                .iter()
                .filter(|a| a.attr_type.0 != tag_attr)
                .cloned()
                .collect();
            let mut c = CTemplate::new(&device_template)?;
            let mut c_tag = CTemplate::new(&[Attribute::new(
                tag_attr,
                AttributeValue::Bytes(objects::tag(tag_attr, &uid, held, &tenant_tag)),
            )])?;
            // Made where the original is (a session object's replica).
            let source = match entry.owner {
                Some(owner) => self.replicas.get(owner.replica),
                None => self
                    .primary()
                    .ok()
                    .filter(|r| r.handle(&entry.uid).is_some()),
            }
            .filter(|r| r.is_up())
            .ok_or(Ckr(CKR_DEVICE_ERROR))?;
            let original = source.handle(&entry.uid).ok_or(Ckr(CKR_DEVICE_ERROR))?;
            let copy = |m: &Module, s| {
                let copy = m.copy_object(s, original, &mut c)?;
                if let Err(e) = m.set_attribute_value(s, copy, &mut c_tag) {
                    let _ = m.destroy_object(s, copy);
                    return Err(e);
                }
                Ok(copy)
            };
            if token {
                (
                    source.run(copy)?,
                    Made {
                        replica: source.index,
                        generation: None,
                    },
                )
            } else {
                let (object, generation) = source.with_anchor(copy)?;
                (
                    object,
                    Made {
                        replica: source.index,
                        generation: Some(generation),
                    },
                )
            }
        };
        let kept_state = match copy_state {
            KeyState::Destroyed => KeyState::Compromised,
            other => other,
        };
        self.record_new(
            ctx,
            handle,
            NewDeviceObject {
                uid,
                device,
                made,
                class: entry.class,
                held,
                private,
                state: kept_state,
            },
        )?;
        if copy_state == KeyState::Destroyed {
            let made = self.object(ctx, handle)?;
            self.move_state(handle, made, KeyState::Destroyed)?;
        }
        Ok(())
    }

    fn destroy_object(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<()> {
        let entry = self.object(ctx, handle)?;
        if entry.owner.is_none() && !ctx.rw {
            return Err(Ckr(CKR_SESSION_READ_ONLY));
        }
        if !entry.tombstone {
            self.write(&entry, |m, s, object| m.destroy_object(s, object))?;
            for replica in &self.replicas {
                replica.forget(&entry.uid);
            }
        }
        let mut state = self.lock();
        state.objects.remove(handle.0);
        state.tombstones.remove(&handle.0);
        if entry.owner.is_none() {
            self.store
                .delete_device_object(&self.name, handle.0)
                .map_err(|e| {
                    // The object is gone from the device; the stale row is
                    // skipped (with a warning) at the next start.
                    warn!(partition = %self.name, "cannot delete a device object's record: {e}");
                    Ckr::DEVICE
                })?;
        }
        Ok(())
    }

    fn object_size(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<u64> {
        let entry = self.object(ctx, handle)?;
        if entry.tombstone {
            let state = self.lock();
            let kept = state
                .tombstones
                .get(&handle.0)
                .map_or(&[][..], Vec::as_slice);
            return Ok(key_states::encode(kept)?.len() as u64);
        }
        self.read_object(&entry, |m, s, object| m.object_size(s, object))
    }

    fn get_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        types: &[AttributeType],
    ) -> CkResult<Vec<AttributeResult>> {
        let entry = self.object(ctx, handle)?;
        if entry.tombstone {
            let state = self.lock();
            let kept = state
                .tombstones
                .get(&handle.0)
                .map_or(&[][..], Vec::as_slice);
            return Ok(types
                .iter()
                .map(|t| key_states::tombstone_answer(&entry, kept, t.0))
                .collect());
        }
        let answered_here = |t: u64| {
            t == cka::CKA_UNIQUE_ID || t == CKA_HSMLINK_KEY_STATE || entry.held.answer(t).is_some()
        };
        let asked: Vec<u64> = types
            .iter()
            .map(|t| t.0)
            .filter(|t| !answered_here(*t))
            .collect();
        let mut values = self
            .read_object(&entry, |m, s, object| read_attributes(m, s, object, &asked))?
            .into_iter();
        Ok(types
            .iter()
            .map(|t| match t.0 {
                cka::CKA_UNIQUE_ID => {
                    AttributeResult::Value(AttributeValue::Bytes(objects::unique_id(&entry.uid)))
                }
                CKA_HSMLINK_KEY_STATE => key_states::answer(&entry),
                t if entry.held.answer(t).is_some() => AttributeResult::Value(
                    AttributeValue::Bool(entry.held.answer(t).unwrap_or_default()),
                ),
                t if t == objects::tag_attribute(entry.class) => match values.next() {
                    Some(AttributeResult::Value(AttributeValue::Bytes(ref v))) => {
                        match objects::parse_tag(t, v) {
                            Some((_, tenant)) => {
                                AttributeResult::Value(AttributeValue::Bytes(tenant.to_vec()))
                            }
                            None => AttributeResult::Value(AttributeValue::Bytes(v.clone())),
                        }
                    }
                    other => other.unwrap_or(AttributeResult::Invalid),
                },
                _ => values.next().unwrap_or(AttributeResult::Invalid),
            })
            .collect())
    }

    fn set_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let _moving = key_states::asks_state(template)
            .then(|| self.moving.lock().unwrap_or_else(PoisonError::into_inner));
        let entry = self.object(ctx, handle)?;
        if entry.owner.is_none() && !ctx.rw {
            return Err(Ckr(CKR_SESSION_READ_ONLY));
        }
        if entry.tombstone {
            return self.set_tombstone(handle, &entry, template);
        }
        // The state is hsmlink's (checked first: all or nothing); the rest
        // is the device's. A state alone moves even an unmodifiable key.
        let moved = key_states::moved(template, &entry, actor(ctx))?;
        // A replicated key's extractability is hsmlink's (in its tag).
        let held = objects::held_after(entry.held, template)?;
        let mut device_template: Vec<Attribute> = key_states::without_state(template)
            .filter(|a| !(held.replicated() && objects::HELD_ATTRIBUTES.contains(&a.attr_type.0)))
            .cloned()
            .collect();
        if held != entry.held {
            let tag_attr = objects::tag_attribute(entry.class);
            if !device_template.iter().any(|a| a.attr_type.0 == tag_attr) {
                device_template.push(Attribute::new(
                    tag_attr,
                    AttributeValue::Bytes(self.tenant_tag(&entry)?),
                ));
            }
        }
        if !device_template.is_empty() {
            let device_template =
                objects::with_device_tag(&device_template, &entry.uid, held, entry.class)?;
            let mut c = CTemplate::new(&device_template)?;
            self.write(&entry, |m, s, object| {
                m.set_attribute_value(s, object, &mut c)
            })?;
        }
        if held != entry.held
            && let Some(e) = self.lock().objects.get_mut(handle.0)
        {
            e.held = held;
        }
        if let Some(to) = moved {
            self.move_state(handle, entry, to)?;
        }
        let private = template
            .iter()
            .rev()
            .find(|a| a.attr_type.0 == cka::CKA_PRIVATE)
            .and_then(|a| boolean(Some(&a.value)));
        if let Some(private) = private
            && let Some(e) = self.lock().objects.get_mut(handle.0)
        {
            e.private = private;
        }
        Ok(())
    }

    fn find_objects(
        &self,
        ctx: &ObjectContext,
        template: &[Attribute],
    ) -> CkResult<Vec<ObjectHandle>> {
        // Tag attributes (CKA_ID, CKA_APPLICATION) are compared here, on
        // what follows hsmlink's prefix.
        let mut want_tags: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut want_unique: Option<Vec<u8>> = None;
        let mut want_state: Option<AttributeValue> = None;
        let mut device_template = Vec::new();
        for a in template {
            match (a.attr_type.0, &a.value) {
                (CKA_HSMLINK_KEY_STATE, v) => want_state = Some(v.clone()),
                (t @ (cka::CKA_ID | cka::CKA_APPLICATION), AttributeValue::Bytes(b)) => {
                    want_tags.push((t, b.clone()));
                }
                (cka::CKA_UNIQUE_ID, AttributeValue::Bytes(b)) => want_unique = Some(b.clone()),
                // A value of the wrong kind matches nothing.
                (cka::CKA_ID | cka::CKA_APPLICATION | cka::CKA_UNIQUE_ID, _) => {
                    return Ok(Vec::new());
                }
                _ => device_template.push(a.clone()),
            }
        }
        // A replicated partition answers some attributes itself.
        let mut want_held: Vec<(u64, AttributeValue)> = Vec::new();
        if self.replicated() {
            device_template.retain(|a| {
                let held = objects::HELD_ATTRIBUTES.contains(&a.attr_type.0);
                if held {
                    want_held.push((a.attr_type.0, a.value.clone()));
                }
                !held
            });
        }
        let secret_asked: Vec<u64> = device_template
            .iter()
            .map(|a| a.attr_type.0)
            .filter(|t| SECRET_ATTRIBUTES.contains(t))
            .collect();
        let filter = FindFilter {
            device_template,
            want_tags,
            want_unique,
            want_state,
            want_held,
            secret_asked,
        };
        let mut out = self.read(None, |replica, mut session, _| {
            self.find_on(ctx, replica, &mut session, &filter)
        })?;
        // Session objects live on the replica that made them: those of the
        // caller's application on other replicas are matched there.
        for replica in &self.replicas {
            let has_session_objects = self.lock().objects.entries().any(|(_, e)| {
                e.owner
                    .is_some_and(|o| o.replica == replica.index && o.app == ctx.app)
            });
            if !has_session_objects || !replica.is_up() {
                continue;
            }
            let more = replica.session_run(|session| self.find_on(ctx, replica, session, &filter));
            if let Ok(more) = more {
                out.extend(more);
            }
        }
        // Tombstones are not on the device: matched here, on what they keep.
        let state = self.lock();
        for handle in state.objects.tombstones() {
            let (Some(entry), Some(kept)) =
                (state.objects.get(handle), state.tombstones.get(&handle))
            else {
                continue;
            };
            let visible = match entry.owner {
                Some(owner) => owner.app == ctx.app,
                None => true,
            } && (!entry.private || ctx.sees_private());
            if visible && key_states::tombstone_matches(entry, kept, template) {
                out.push(ObjectHandle(handle));
            }
        }
        out.sort_unstable_by_key(|h| h.0);
        out.dedup();
        Ok(out)
    }

    fn session_closed(&self, session: OwnerId) {
        let gone: Vec<Entry> = {
            let mut state = self.lock();
            state
                .objects
                .of_session(session)
                .into_iter()
                .filter_map(|h| {
                    state.tombstones.remove(&h);
                    state.objects.remove(h)
                })
                .collect()
        };
        for entry in &gone {
            self.destroy_on_device(entry);
        }
        self.digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
    }

    fn max_handle(&self) -> u64 {
        self.lock().objects.max_handle()
    }
}
