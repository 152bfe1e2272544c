//! One partition of the software HSM: its token state (label, PIN hashes,
//! failure counters, flags), its master key and its objects.
//!
//! All of a partition is loaded at startup; objects are kept decrypted in
//! memory (values are wiped when dropped) and every change is written to the
//! store, and committed, before the call returns. Token objects keep in
//! clear only what indexes them (all of a public object but key material);
//! the rest is sealed under the master key, bound to partition and object id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cryptoki_sys::{
    CKC_X_509, CKO_CERTIFICATE, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY,
    CKR_ACTION_PROHIBITED, CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID, CKR_PIN_EXPIRED,
    CKR_SESSION_READ_ONLY, CKR_USER_NOT_LOGGED_IN,
};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::{CKA_HSMLINK_KEY_STATE, CKS_HSMLINK_ACTIVE};
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, AttributeValue, ObjectHandle, Secret, codec,
};
use tracing::warn;
use zeroize::Zeroizing;

use crate::attributes::{self, Actor, Profile, boolean};
use crate::driver::{ObjectContext, OwnerId, PartitionDriver, TokenState, UserKind};
use crate::error::{CkResult, Ckr};
use crate::partition_state::{self, PinRules};
use crate::soft::keys::{
    Algorithms, KeyError, MasterKey, PartitionKek, RootKey, fill_random, wrapped_under_kek,
};
use crate::soft::operations::{Key, Prepared, route};
use crate::soft::pins::PinHashParams;
use crate::soft::selftests::{Health, tests_for};
use crate::store::{ObjectRecord, PartitionRecord, Store};
use hsmlink_crypto::selftest::{SelfTest, SelfTestFailed};

/// The `[security]` rules a partition applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityPolicy {
    pub max_pin_failures: u32,
    pub require_user_pin_change: bool,
    pub pin_hash: PinHashParams,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        Self {
            max_pin_failures: 10,
            require_user_pin_change: true,
            pin_hash: PinHashParams::DEFAULT,
        }
    }
}

#[derive(Debug)]
pub struct SoftPartition {
    name: String,
    store: Arc<dyn Store>,
    root: RootKey,
    policy: SecurityPolicy,
    /// The self-tests' error state (`super::selftests`).
    health: Health,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    record: PartitionRecord,
    master: MasterKey,
    /// By handle.
    objects: BTreeMap<u64, SoftObject>,
}

#[derive(Debug)]
struct SoftObject {
    /// Also its `CKA_UNIQUE_ID`, and part of the sealing AAD.
    id: String,
    /// Shared with the cryptographic calls that read the key ([`Key`]),
    /// never changed: a change makes a new object.
    attrs: Arc<BTreeMap<u64, AttributeValue>>,
    /// Session objects: the application and session that created them.
    owner: Option<(OwnerId, OwnerId)>,
    /// Engines built from `attrs` by the cryptographic calls.
    prepared: Arc<Prepared>,
}

impl SoftObject {
    fn new(
        id: String,
        attrs: BTreeMap<u64, AttributeValue>,
        owner: Option<(OwnerId, OwnerId)>,
    ) -> Self {
        Self {
            id,
            attrs: Arc::new(attrs),
            owner,
            prepared: Arc::default(),
        }
    }

    fn private(&self) -> bool {
        boolean(self.attrs.get(&cka::CKA_PRIVATE)) == Some(true)
    }

    fn flag(&self, attr: u64) -> bool {
        boolean(self.attrs.get(&attr)) == Some(true)
    }
}

impl SoftPartition {
    /// Runs the self-tests a mechanism rests on (once per process) and
    /// answers `CKR_DEVICE_ERROR` if this partition is in the error state.
    pub(crate) fn self_tests(&self, mechanism: u64) -> CkResult<()> {
        let tests = route(mechanism).map_or(&[][..], tests_for);
        self.health.ensure(&self.name, tests)
    }

    /// Runs `tests` (once per process), as [`Self::self_tests`].
    pub(crate) fn self_tests_of(&self, tests: &[SelfTest]) -> CkResult<()> {
        self.health.ensure(&self.name, tests)
    }

    /// The partition's self-test error state.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Records a failed self-test: the partition enters the error state.
    pub(crate) fn self_test_failed(&self, failure: SelfTestFailed) -> Ckr {
        self.health.failed(&self.name, failure)
    }

    /// Opens the partition `name`, allocating it (with a fresh master key
    /// and key-encryption key) the first time the server sees it, and loads
    /// its token objects. A partition of an earlier version, its master
    /// key wrapped under the root key directly, is rewrapped under a new
    /// key-encryption key here.
    pub fn open(
        name: &str,
        algorithms: Algorithms,
        root: RootKey,
        store: Arc<dyn Store>,
        policy: SecurityPolicy,
    ) -> Result<Self, KeyError> {
        let store_err = |e: crate::store::StoreError| KeyError(format!("partition {name}: {e}"));
        let (record, master) = match store.partition(name).map_err(store_err)? {
            Some(mut record) => {
                let stored = Algorithms::parse(&record.algorithms).ok_or_else(|| {
                    KeyError(format!(
                        "partition {name}: unknown algorithms {:?} in the store",
                        record.algorithms
                    ))
                })?;
                if stored != algorithms {
                    return Err(KeyError(format!(
                        "partition {name} was allocated with algorithms = {:?}; it cannot change to {:?}",
                        stored.as_str(),
                        algorithms.as_str()
                    )));
                }
                let master = match key_state(store.as_ref(), name)? {
                    KeyState::Erased => {
                        return Err(KeyError(format!(
                            "partition {name}: its key-encryption key is not in the key ring \
                             (the partition was terminated, or the store comes from another \
                             instance): its keys cannot be decrypted"
                        )));
                    }
                    KeyState::Sealed(kek_id) => {
                        let wrapped_kek = store
                            .partition_kek(name, &kek_id)
                            .map_err(store_err)?
                            .ok_or_else(|| {
                                KeyError(format!("partition {name}: no key-encryption key"))
                            })?;
                        let kek = root.unwrap_kek(name, &kek_id, &wrapped_kek)?;
                        let master =
                            kek.unwrap_master_key(name, stored, &record.wrapped_master_key)?;
                        // Entries left by an interrupted C_InitToken.
                        store
                            .retain_partition_kek(name, &kek_id)
                            .map_err(store_err)?;
                        master
                    }
                    KeyState::Legacy | KeyState::New => {
                        let master =
                            root.unwrap_master_key(name, stored, &record.wrapped_master_key)?;
                        let kek = new_kek(name, &root, store.as_ref())?;
                        record.wrapped_master_key =
                            kek.wrap_master_key(name, &master).map_err(|_| {
                                KeyError(format!("partition {name}: cannot wrap the master key"))
                            })?;
                        store.update_partition(&record).map_err(store_err)?;
                        store
                            .retain_partition_kek(name, kek.id())
                            .map_err(store_err)?;
                        master
                    }
                };
                (record, master)
            }
            None => {
                let master = MasterKey::generate(algorithms)
                    .map_err(|_| KeyError("the system random generator failed".into()))?;
                let kek = new_kek(name, &root, store.as_ref())?;
                let wrapped = kek.wrap_master_key(name, &master).map_err(|_| {
                    KeyError(format!("partition {name}: cannot wrap the master key"))
                })?;
                let record = partition_state::fresh_record(name, algorithms.as_str(), wrapped);
                store.insert_partition(&record).map_err(store_err)?;
                (record, master)
            }
        };
        let mut objects = BTreeMap::new();
        for stored in store.objects(name).map_err(store_err)? {
            let attrs = decode_object(&master, &stored).map_err(|_| {
                KeyError(format!(
                    "partition {name}: object {} does not decrypt (damaged or moved record)",
                    stored.object_id
                ))
            })?;
            objects.insert(
                stored.handle,
                SoftObject::new(stored.object_id, attrs, None),
            );
        }
        Ok(Self {
            name: name.to_owned(),
            store,
            root,
            policy,
            health: Health::default(),
            inner: Mutex::new(Inner {
                record,
                master,
                objects,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The master-key fingerprint of the compliance report
    /// ([`MasterKey::fingerprint`]).
    pub fn master_key_fingerprint(&self) -> String {
        self.lock().master.fingerprint(&self.name)
    }

    /// The sealing algorithms of the partition.
    pub fn algorithms(&self) -> Algorithms {
        self.lock().master.algorithms()
    }

    /// Termination, in memory (the store is erased by the caller): every
    /// object goes (values wiped as they drop) and the master key is
    /// replaced by a random one nobody has, so a call still under way
    /// finds nothing and can seal nothing that would open again.
    pub fn erase(&self) {
        let mut inner = self.lock();
        inner.objects.clear();
        if let Ok(master) = MasterKey::generate(inner.master.algorithms()) {
            inner.master = master;
        }
    }

    fn save_object(&self, inner: &Inner, handle: u64, object: &SoftObject) -> CkResult<()> {
        if object.owner.is_some() {
            return Ok(());
        }
        let record = encode_object(&self.name, &inner.master, handle, object)?;
        self.store.put_object(&record).map_err(|e| {
            warn!(partition = %self.name, "cannot save an object: {e}");
            Ckr::DEVICE
        })
    }

    /// The PIN rules over this partition's record.
    fn pin_rules(&self) -> PinRules<'_> {
        PinRules {
            partition: &self.name,
            store: self.store.as_ref(),
            policy: self.policy,
        }
    }

    /// The object `handle` as `ctx` may see it.
    fn visible<'a>(
        inner: &'a Inner,
        ctx: &ObjectContext,
        handle: ObjectHandle,
    ) -> CkResult<&'a SoftObject> {
        let object = inner
            .objects
            .get(&handle.0)
            .ok_or(Ckr(CKR_OBJECT_HANDLE_INVALID))?;
        if let Some((app, _)) = object.owner
            && app != ctx.app
        {
            return Err(Ckr(CKR_OBJECT_HANDLE_INVALID));
        }
        if object.private() && !ctx.sees_private() {
            if ctx.login == Some(UserKind::User) && ctx.pin_expired {
                return Err(Ckr(CKR_PIN_EXPIRED));
            }
            return Err(Ckr(CKR_OBJECT_HANDLE_INVALID));
        }
        Ok(object)
    }

    /// May `ctx` make an object with these attributes (token objects need a
    /// read/write session, private ones a logged-in user)?
    fn may_hold(ctx: &ObjectContext, attrs: &BTreeMap<u64, AttributeValue>) -> CkResult<()> {
        if boolean(attrs.get(&cka::CKA_TOKEN)) == Some(true) && !ctx.rw {
            return Err(Ckr(CKR_SESSION_READ_ONLY));
        }
        if boolean(attrs.get(&cka::CKA_PRIVATE)) == Some(true) && ctx.login != Some(UserKind::User)
        {
            return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
        }
        Ok(())
    }

    fn insert(
        &self,
        inner: &mut Inner,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        id: String,
        attrs: BTreeMap<u64, AttributeValue>,
    ) -> CkResult<()> {
        if inner.objects.contains_key(&handle.0) {
            return Err(Ckr::GENERAL);
        }
        let token = boolean(attrs.get(&cka::CKA_TOKEN)) == Some(true);
        let object = SoftObject::new(id, attrs, (!token).then_some((ctx.app, ctx.session)));
        self.save_object(inner, handle.0, &object)?;
        inner.objects.insert(handle.0, object);
        Ok(())
    }

    /// A copy of the attributes of the key `handle`, for a cryptographic
    /// call: `CKR_KEY_HANDLE_INVALID` if there is no such key for `ctx`,
    /// `CKR_USER_NOT_LOGGED_IN` for a private key without the user logged in.
    pub(crate) fn crypto_key(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<Key> {
        let inner = self.lock();
        let object = inner
            .objects
            .get(&handle.0)
            .ok_or(Ckr(CKR_KEY_HANDLE_INVALID))?;
        if let Some((app, _)) = object.owner
            && app != ctx.app
        {
            return Err(Ckr(CKR_KEY_HANDLE_INVALID));
        }
        if object.private() && !ctx.sees_private() {
            if ctx.login == Some(UserKind::User) && ctx.pin_expired {
                return Err(Ckr(CKR_PIN_EXPIRED));
            }
            return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
        }
        let class = attributes::ulong(object.attrs.get(&cka::CKA_CLASS));
        if !matches!(
            class,
            Some(CKO_SECRET_KEY | CKO_PRIVATE_KEY | CKO_PUBLIC_KEY)
        ) {
            return Err(Ckr(CKR_KEY_HANDLE_INVALID));
        }
        Ok(Key {
            attrs: object.attrs.clone(),
            prepared: object.prepared.clone(),
        })
    }

    /// The X.509 certificates `ctx` sees, DER: those with `CKA_TRUSTED`
    /// (trust anchors, set by the SO) and the others.
    pub(crate) fn x509_certificates(&self, ctx: &ObjectContext) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let inner = self.lock();
        let (mut trusted, mut others) = (Vec::new(), Vec::new());
        for handle in inner.objects.keys() {
            let Ok(object) = Self::visible(&inner, ctx, ObjectHandle(*handle)) else {
                continue;
            };
            let attrs = &object.attrs;
            if attributes::ulong(attrs.get(&cka::CKA_CLASS)) != Some(CKO_CERTIFICATE)
                || attributes::ulong(attrs.get(&cka::CKA_CERTIFICATE_TYPE)) != Some(CKC_X_509)
            {
                continue;
            }
            let Some(der) = attributes::bytes(attrs.get(&cka::CKA_VALUE)) else {
                continue;
            };
            if attributes::boolean(attrs.get(&cka::CKA_TRUSTED)) == Some(true) {
                trusted.push(der.to_vec());
            } else {
                others.push(der.to_vec());
            }
        }
        (trusted, others)
    }

    /// Stores new objects made by the token (generated, unwrapped,
    /// derived), all or none.
    pub(crate) fn store_new(
        &self,
        ctx: &ObjectContext,
        objects: Vec<(ObjectHandle, String, BTreeMap<u64, AttributeValue>)>,
    ) -> CkResult<()> {
        for (_, _, attrs) in &objects {
            Self::may_hold(ctx, attrs)?;
        }
        let mut inner = self.lock();
        let mut done: Vec<ObjectHandle> = Vec::new();
        for (handle, id, attrs) in objects {
            if let Err(e) = self.insert(&mut inner, ctx, handle, id, attrs) {
                for h in done {
                    if let Some(o) = inner.objects.remove(&h.0)
                        && o.owner.is_none()
                    {
                        let _ = self.store.delete_object(&self.name, &o.id);
                    }
                }
                return Err(e);
            }
            done.push(handle);
        }
        Ok(())
    }

    /// Writes of a token object need a read/write session.
    fn check_writable(ctx: &ObjectContext, object: &SoftObject) -> CkResult<()> {
        if object.owner.is_none() && !ctx.rw {
            return Err(Ckr(CKR_SESSION_READ_ONLY));
        }
        Ok(())
    }
}

/// Where a stored partition's master key stands with the key ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Not in the store yet.
    New,
    /// Wrapped under the root key directly (an earlier version's store).
    Legacy,
    /// Wrapped under the key-encryption key of this id, which the key ring has.
    Sealed([u8; crate::soft::keys::KEK_ID_LEN]),
    /// Wrapped under a key-encryption key the key ring does not have: the
    /// partition was terminated (or the store is another instance's).
    Erased,
}

/// Where partition `name`'s master key stands (no key is unwrapped).
pub fn key_state(store: &dyn Store, name: &str) -> Result<KeyState, KeyError> {
    let store_err = |e: crate::store::StoreError| KeyError(format!("partition {name}: {e}"));
    let Some(record) = store.partition(name).map_err(store_err)? else {
        return Ok(KeyState::New);
    };
    Ok(match wrapped_under_kek(&record.wrapped_master_key) {
        None => KeyState::Legacy,
        Some(id) => match store.partition_kek(name, &id).map_err(store_err)? {
            Some(_) => KeyState::Sealed(id),
            None => KeyState::Erased,
        },
    })
}

/// A new key-encryption key for `name`, in the key ring.
fn new_kek(name: &str, root: &RootKey, store: &dyn Store) -> Result<PartitionKek, KeyError> {
    let kek = PartitionKek::generate()
        .map_err(|_| KeyError("the system random generator failed".into()))?;
    let wrapped = root.wrap_kek(name, &kek).map_err(|_| {
        KeyError(format!(
            "partition {name}: cannot wrap the key-encryption key"
        ))
    })?;
    store
        .put_partition_kek(name, kek.id(), &wrapped)
        .map_err(|e| KeyError(format!("partition {name}: {e}")))?;
    Ok(kek)
}

pub(crate) fn actor(ctx: &ObjectContext) -> Actor {
    match ctx.login {
        Some(UserKind::So) => Actor::So,
        Some(UserKind::User) => Actor::User,
        None => Actor::Other,
    }
}

pub(crate) fn new_object_id() -> CkResult<String> {
    let mut id = [0u8; 16];
    fill_random(&mut id)?;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Splits an object into clear and sealed attributes.
fn encode_object(
    partition: &str,
    master: &MasterKey,
    handle: u64,
    object: &SoftObject,
) -> CkResult<ObjectRecord> {
    let profile = Profile::of(&object.attrs)?;
    let private = object.private();
    let mut clear = Vec::new();
    let mut secret = Vec::new();
    for (attr, value) in object.attrs.iter() {
        let attribute = Attribute::new(*attr, value.clone());
        if attributes::stored_in_clear(&profile, private, *attr) {
            clear.push(attribute);
        } else {
            secret.push(attribute);
        }
    }
    let public_attrs = codec::encode(&clear).map_err(|_| Ckr::GENERAL)?;
    let plain = Zeroizing::new(codec::encode(&secret).map_err(|_| Ckr::GENERAL)?);
    let sealed = master.seal(partition, &object.id, &plain)?;
    Ok(ObjectRecord {
        partition: partition.to_owned(),
        object_id: object.id.clone(),
        handle,
        public_attrs,
        sealed,
    })
}

fn decode_object(
    master: &MasterKey,
    record: &ObjectRecord,
) -> CkResult<BTreeMap<u64, AttributeValue>> {
    let clear: Vec<Attribute> = codec::decode(&record.public_attrs).map_err(|_| Ckr::DEVICE)?;
    let plain = master.open(&record.partition, &record.object_id, &record.sealed)?;
    let secret: Vec<Attribute> = codec::decode(&plain).map_err(|_| Ckr::DEVICE)?;
    Ok(clear
        .into_iter()
        .chain(secret)
        .map(|a| (a.attr_type.0, a.value.clone()))
        .collect())
}

impl PartitionDriver for SoftPartition {
    /// Everything is in memory but the store's commits, which are
    /// scheduled apart ([`crate::scheduling`]).
    fn may_block(&self) -> bool {
        false
    }

    fn token_state(&self) -> TokenState {
        partition_state::token_state(&self.lock().record, &self.policy)
    }

    fn init_token(&self, so_pin: &Secret, label: &str) -> CkResult<()> {
        let mut inner = self.lock();
        let so_record = self
            .pin_rules()
            .init_token_so_pin(&mut inner.record, so_pin)?;
        // A new master key under a new key-encryption key; the old KEK is
        // destroyed once the new state is committed, so whatever was sealed
        // before is gone for good, copies and backups of the store included.
        let master = MasterKey::generate(inner.master.algorithms())?;
        let kek = new_kek(&self.name, &self.root, self.store.as_ref()).map_err(|e| {
            warn!(partition = %self.name, "cannot initialise the token: {e}");
            Ckr::DEVICE
        })?;
        let mut next = partition_state::initialized(&inner.record, so_record, label);
        next.wrapped_master_key = kek.wrap_master_key(&self.name, &master)?;
        self.store.reinitialize_partition(&next).map_err(|e| {
            warn!(partition = %self.name, "cannot initialise the token: {e}");
            Ckr::DEVICE
        })?;
        if let Err(e) = self.store.retain_partition_kek(&self.name, kek.id()) {
            // Retried at the next start (open keeps only the KEK in use).
            warn!(partition = %self.name, "cannot destroy the former key-encryption key: {e}");
        }
        inner.record = next;
        inner.master = master;
        inner.objects.clear();
        Ok(())
    }

    fn init_pin(&self, pin: &Secret) -> CkResult<()> {
        let mut inner = self.lock();
        self.pin_rules().init_pin(&mut inner.record, pin)
    }

    fn set_pin(&self, who: UserKind, old_pin: &Secret, new_pin: &Secret) -> CkResult<()> {
        let mut inner = self.lock();
        self.pin_rules()
            .set_pin(&mut inner.record, who, old_pin, new_pin)
    }

    fn verify_pin(&self, who: UserKind, pin: &Secret) -> CkResult<()> {
        let mut inner = self.lock();
        self.pin_rules().check_pin(&mut inner.record, who, pin)
    }

    fn create_object(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let id = new_object_id()?;
        let attrs = attributes::new_object(template, actor(ctx), &id)?;
        Self::may_hold(ctx, &attrs)?;
        let mut inner = self.lock();
        self.insert(&mut inner, ctx, handle, id, attrs)
    }

    fn copy_object(
        &self,
        ctx: &ObjectContext,
        source: ObjectHandle,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let mut inner = self.lock();
        let object = Self::visible(&inner, ctx, source)?;
        if !object.flag(cka::CKA_COPYABLE) {
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        let mut attrs = BTreeMap::clone(&object.attrs);
        attributes::modify(&mut attrs, template, actor(ctx), true)?;
        Self::may_hold(ctx, &attrs)?;
        let id = new_object_id()?;
        attrs.insert(
            cka::CKA_UNIQUE_ID,
            AttributeValue::Bytes(id.as_bytes().to_vec()),
        );
        self.insert(&mut inner, ctx, handle, id, attrs)
    }

    fn destroy_object(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<()> {
        let mut inner = self.lock();
        let object = Self::visible(&inner, ctx, handle)?;
        Self::check_writable(ctx, object)?;
        if !object.flag(cka::CKA_DESTROYABLE) {
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        if object.owner.is_none() {
            self.store
                .delete_object(&self.name, &object.id)
                .map_err(|e| {
                    warn!(partition = %self.name, "cannot delete an object: {e}");
                    Ckr::DEVICE
                })?;
        }
        inner.objects.remove(&handle.0);
        Ok(())
    }

    fn object_size(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<u64> {
        let inner = self.lock();
        let object = Self::visible(&inner, ctx, handle)?;
        let all: Vec<Attribute> = object
            .attrs
            .iter()
            .map(|(t, v)| Attribute::new(*t, v.clone()))
            .collect();
        let encoded = Zeroizing::new(codec::encode(&all).map_err(|_| Ckr::GENERAL)?);
        Ok(encoded.len() as u64)
    }

    fn get_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        types: &[AttributeType],
    ) -> CkResult<Vec<AttributeResult>> {
        let inner = self.lock();
        let object = Self::visible(&inner, ctx, handle)?;
        let profile = Profile::of(&object.attrs)?;
        Ok(types
            .iter()
            .map(|t| match object.attrs.get(&t.0) {
                // A key stored before key states were kept is active.
                None if t.0 == CKA_HSMLINK_KEY_STATE && profile.is_key() => {
                    AttributeResult::Value(AttributeValue::Ulong(CKS_HSMLINK_ACTIVE))
                }
                None => AttributeResult::Invalid,
                Some(_) if attributes::is_hidden(&profile, &object.attrs, t.0) => {
                    AttributeResult::Sensitive
                }
                Some(value) => AttributeResult::Value(value.clone()),
            })
            .collect())
    }

    fn set_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let mut inner = self.lock();
        let object = Self::visible(&inner, ctx, handle)?;
        Self::check_writable(ctx, object)?;
        // A key's state moves forward even when its other attributes are
        // fixed: deactivating or reporting a key compromised only narrows it.
        let only_state = !template.is_empty()
            && template
                .iter()
                .all(|a| a.attr_type.0 == CKA_HSMLINK_KEY_STATE);
        if !object.flag(cka::CKA_MODIFIABLE) && !only_state {
            return Err(Ckr(CKR_ACTION_PROHIBITED));
        }
        let mut attrs = BTreeMap::clone(&object.attrs);
        attributes::modify(&mut attrs, template, actor(ctx), false)?;
        let updated = SoftObject::new(object.id.clone(), attrs, object.owner);
        self.save_object(&inner, handle.0, &updated)?;
        inner.objects.insert(handle.0, updated);
        Ok(())
    }

    fn find_objects(
        &self,
        ctx: &ObjectContext,
        template: &[Attribute],
    ) -> CkResult<Vec<ObjectHandle>> {
        let wanted = attributes::template_map(template)?;
        let inner = self.lock();
        let mut found = Vec::new();
        for (handle, object) in &inner.objects {
            if Self::visible(&inner, ctx, ObjectHandle(*handle)).is_err() {
                continue;
            }
            let Ok(profile) = Profile::of(&object.attrs) else {
                continue;
            };
            let matches = wanted.iter().all(|(attr, value)| {
                object.attrs.get(attr) == Some(value)
                    && !attributes::is_hidden(&profile, &object.attrs, *attr)
            });
            if matches {
                found.push(ObjectHandle(*handle));
            }
        }
        Ok(found)
    }

    fn session_closed(&self, session: OwnerId) {
        self.lock()
            .objects
            .retain(|_, o| !matches!(o.owner, Some((_, s)) if s == session));
    }

    fn max_handle(&self) -> u64 {
        self.lock().objects.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
