//! A partition's replicas: the same token objects on the tokens of several
//! devices (`device` and `replicas` of a `pkcs11` slot), kept equal by
//! hsmlink, with failover between them.
//!
//! - **Names.** Every object carries its uid (see [`super::objects`]); each
//!   [`Replica`] maps uids to its own device handles.
//! - **Reads and key uses** ([`Pkcs11Partition::read`]) go to the healthy
//!   replica with the fewest calls in flight; a replica that fails one
//!   (`CKR_DEVICE_ERROR`, `CKR_DEVICE_REMOVED`, ...) is taken out and the
//!   call goes to the next: reads, single-part operations and `*Init` are
//!   idempotent. A multi-part operation lives in one device session: if
//!   its replica fails, it fails (`CKR_DEVICE_ERROR`).
//! - **New objects** are made once, on the first healthy replica (never
//!   retried elsewhere: a key generation is not idempotent), recorded, then
//!   copied to every other healthy replica before the reply
//!   ([`Pkcs11Partition::replicate`]). **Changes** to an object (attributes,
//!   destruction) go to every healthy replica holding it; the first one
//!   decides the answer.
//! - **Copies of keys** never leave the devices in clear: a secret or
//!   private key travels wrapped (`CKM_AES_KEY_WRAP_PAD`) under the
//!   partition's *transport key* for that pair of replicas, an AES-256 key
//!   generated inside the source device and carried to the destination
//!   wrapped (RSA-OAEP, SHA-256) under an RSA-3072 key pair generated there
//!   for the purpose and destroyed afterwards; the transport key is then
//!   made non-extractable on both. It is a session object of the two
//!   devices' anchor sessions, so it never outlives them and is made anew
//!   after a device failure. Public objects are read and created.
//! - **Health.** A replica taken out is checked by a watcher thread with
//!   back-off (1 s, doubling, at most 30 s). When the check passes, the
//!   replica is brought up to date before it serves again: objects it
//!   misses or whose changes it missed are copied again from a healthy
//!   replica, objects destroyed meanwhile are destroyed on it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{Attribute, AttributeResult, AttributeValue, Mechanism, MechanismParams};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::device::Device;
use super::module::{Module, check, rv_name};
use super::objects::{Entry, Uid};
use super::params::CMechanism;
use super::session_pool::DeviceSession;
use super::template::{CTemplate, read_attributes};
use super::{Pkcs11Partition, read_identity};
use crate::error::{CkResult, Ckr};

/// The first wait before a replica taken out is checked again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two checks.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the watcher looks for replicas due for a check.
const WATCH_TICK: Duration = Duration::from_millis(200);

/// Codes that say the device, not the call, failed: the replica is taken
/// out.
pub fn is_device_failure(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_DEVICE_ERROR
            | CKR_DEVICE_REMOVED
            | CKR_TOKEN_NOT_PRESENT
            | CKR_TOKEN_NOT_RECOGNIZED
            | CKR_CRYPTOKI_NOT_INITIALIZED
            | CKR_SESSION_HANDLE_INVALID
            | CKR_SESSION_CLOSED
    )
}

/// One device holding a copy of the partition.
#[derive(Debug)]
pub struct Replica {
    /// Its place in the slot's list (0: the configured `device`).
    pub index: usize,
    pub device: Arc<Device>,
    objects: Mutex<DeviceObjects>,
    health: Mutex<Health>,
    /// Calls in flight, for least-outstanding routing.
    in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct DeviceObjects {
    by_uid: HashMap<Uid, CK_OBJECT_HANDLE>,
    by_device: HashMap<CK_OBJECT_HANDLE, Uid>,
    /// Objects whose changes this replica missed while it was out: copied
    /// again before it serves.
    stale: HashSet<Uid>,
}

#[derive(Clone, Copy, Debug)]
enum Health {
    Up,
    Down {
        next_check: Instant,
        backoff: Duration,
    },
}

impl Replica {
    pub fn new(index: usize, device: Arc<Device>) -> Self {
        Self {
            index,
            device,
            objects: Mutex::new(DeviceObjects::default()),
            health: Mutex::new(Health::Up),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.device.name
    }

    fn objects(&self) -> MutexGuard<'_, DeviceObjects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device handle of object `uid` on this replica.
    pub fn handle(&self, uid: &Uid) -> Option<CK_OBJECT_HANDLE> {
        self.objects().by_uid.get(uid).copied()
    }

    /// The uid of device object `object`, if it is one of the partition's.
    pub fn uid_of(&self, object: CK_OBJECT_HANDLE) -> Option<Uid> {
        self.objects().by_device.get(&object).copied()
    }

    pub fn set(&self, uid: Uid, object: CK_OBJECT_HANDLE) {
        let mut objects = self.objects();
        if let Some(old) = objects.by_uid.insert(uid, object) {
            objects.by_device.remove(&old);
        }
        objects.by_device.insert(object, uid);
    }

    pub fn forget(&self, uid: &Uid) -> Option<CK_OBJECT_HANDLE> {
        let mut objects = self.objects();
        let old = objects.by_uid.remove(uid)?;
        objects.by_device.remove(&old);
        Some(old)
    }

    /// The replica missed a change of `uid`.
    pub fn mark_stale(&self, uid: Uid) {
        self.objects().stale.insert(uid);
    }

    /// Whether the replica missed changes it has not caught up with.
    pub fn has_stale(&self) -> bool {
        !self.objects().stale.is_empty()
    }

    /// Forgets every object (the partition was wiped).
    pub fn clear_objects(&self) {
        let mut objects = self.objects();
        objects.by_uid.clear();
        objects.by_device.clear();
    }

    pub fn is_up(&self) -> bool {
        matches!(*self.health(), Health::Up)
    }

    /// Takes the replica out after a device failure (`rv`).
    pub fn take_out(&self, rv: CK_RV) {
        let mut health = self.health();
        if let Health::Up = *health {
            warn!(
                device = %self.device.name,
                "device failed ({}): taken out of service, checked again in {} s",
                rv_name(rv),
                FIRST_BACKOFF.as_secs()
            );
            *health = Health::Down {
                next_check: Instant::now() + FIRST_BACKOFF,
                backoff: FIRST_BACKOFF,
            };
        }
    }

    fn due_for_check(&self, now: Instant) -> bool {
        matches!(*self.health(), Health::Down { next_check, .. } if next_check <= now)
    }

    fn check_failed(&self, now: Instant) {
        let mut health = self.health();
        if let Health::Down { backoff, .. } = *health {
            let backoff = (backoff * 2).min(MAX_BACKOFF);
            *health = Health::Down {
                next_check: now + backoff,
                backoff,
            };
        }
    }

    fn put_back(&self) {
        *self.health() = Health::Up;
    }

    /// Checks a device session out, taking the replica out if the device
    /// fails.
    fn session(&self) -> CkResult<DeviceSession> {
        self.device.pool.checkout().inspect_err(|Ckr(rv)| {
            if is_device_failure(*rv) {
                self.take_out(*rv);
            }
        })
    }

    /// Runs `f` in a session of this replica, taking it out on a device
    /// failure or a call slower than the device's `call_timeout_ms`.
    pub fn run<T>(&self, f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>) -> CkResult<T> {
        let started = Instant::now();
        let result = self.session()?.run(f);
        self.timed(started);
        self.note(result)
    }

    /// [`Self::run`] for a call that may rightly take long (a key pair
    /// generated on an HSM can take seconds): not held to the time-out.
    pub fn run_untimed<T>(
        &self,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<T> {
        let result = self.session()?.run(f);
        self.note(result)
    }

    /// Takes the replica out if a call that began at `started` took longer
    /// than the device's time-out: a hanging device is not sent more.
    pub fn timed(&self, started: Instant) {
        let took = started.elapsed();
        if took > self.device.call_timeout && self.is_up() {
            warn!(
                device = %self.device.name,
                took_ms = took.as_millis(),
                "device call slower than call_timeout_ms"
            );
            self.take_out(CKR_DEVICE_ERROR);
        }
    }

    /// Runs `f` with a device session of this replica, taking it out on a
    /// device failure.
    pub fn session_run<T>(&self, f: impl FnOnce(&mut DeviceSession) -> CkResult<T>) -> CkResult<T> {
        let mut session = self.session()?;
        let result = f(&mut session);
        self.note(result)
    }

    /// Runs `f` in the anchor session, taking the replica out on a device
    /// failure.
    pub fn with_anchor<T>(
        &self,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<(T, u64)> {
        let result = self.device.pool.with_anchor(f);
        self.note(result)
    }

    /// Passes `result` on, taking the replica out if it says the device
    /// failed.
    pub fn note<T>(&self, result: CkResult<T>) -> CkResult<T> {
        if let Err(Ckr(rv)) = &result
            && is_device_failure(*rv)
        {
            self.take_out(*rv);
        }
        result
    }

    pub fn anchor_generation(&self) -> u64 {
        self.device.pool.anchor_generation()
    }
}

/// `replica` missed a change of `uid`. If it came back meanwhile (its
/// catch-up ended before the mark), it goes out again to catch up once
/// more, rather than serve the old object.
fn missed(replica: &Replica, uid: Uid) {
    replica.mark_stale(uid);
    if replica.is_up() {
        replica.take_out(CKR_DEVICE_ERROR);
    }
}

/// A transport key between two replicas: session objects of their anchors.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// The device took RSA-OAEP with SHA-1 only.
    oaep_sha1: bool,
    from_key: CK_OBJECT_HANDLE,
    to_key: CK_OBJECT_HANDLE,
    from_generation: u64,
    to_generation: u64,
}

/// The transport keys of a partition, by (from, to) replica.
pub type Links = Mutex<HashMap<(usize, usize), Link>>;

/// What a copy carries besides the key material: the attributes a creation
/// template may give. (Read-only ones — `CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE`,
/// `CKA_NEVER_EXTRACTABLE`, `CKA_KEY_GEN_MECHANISM` — the device sets;
/// hsmlink answers them from the tag's flags.)
const KEY_ATTRIBUTES: &[u64] = &[
    cka::CKA_CLASS,
    cka::CKA_KEY_TYPE,
    cka::CKA_TOKEN,
    cka::CKA_PRIVATE,
    cka::CKA_LABEL,
    cka::CKA_ID,
    cka::CKA_SUBJECT,
    cka::CKA_SENSITIVE,
    cka::CKA_EXTRACTABLE,
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_SIGN,
    cka::CKA_SIGN_RECOVER,
    cka::CKA_VERIFY,
    cka::CKA_VERIFY_RECOVER,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_DERIVE,
    cka::CKA_START_DATE,
    cka::CKA_END_DATE,
    cka::CKA_ALLOWED_MECHANISMS,
    cka::CKA_ALWAYS_AUTHENTICATE,
    cka::CKA_WRAP_WITH_TRUSTED,
    cka::CKA_MODIFIABLE,
    cka::CKA_COPYABLE,
    cka::CKA_DESTROYABLE,
];

/// ... and of public objects (public keys, certificates, data objects),
/// whose values are read and created as they are.
const PUBLIC_ATTRIBUTES: &[u64] = &[
    cka::CKA_MODULUS,
    cka::CKA_PUBLIC_EXPONENT,
    cka::CKA_EC_PARAMS,
    cka::CKA_EC_POINT,
    cka::CKA_VALUE,
    cka::CKA_APPLICATION,
    cka::CKA_OBJECT_ID,
    cka::CKA_CERTIFICATE_TYPE,
    cka::CKA_CERTIFICATE_CATEGORY,
    cka::CKA_ISSUER,
    cka::CKA_SERIAL_NUMBER,
    cka::CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
];

fn boolean(t: u64, v: bool) -> Attribute {
    Attribute::new(t, AttributeValue::Bool(v))
}

fn ulong(t: u64, v: u64) -> Attribute {
    Attribute::new(t, AttributeValue::Ulong(v))
}

/// The values of `types` that `object` shows, less those that are the
/// standard's defaults (devices refuse some of them in a template, e.g.
/// SoftHSMv2 a `CKA_COPYABLE` of true).
fn present(
    m: &Module,
    s: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    types: &[u64],
) -> CkResult<Vec<Attribute>> {
    Ok(types
        .iter()
        .zip(read_attributes(m, s, object, types)?)
        .filter_map(|(t, v)| match v {
            AttributeResult::Value(v) if !is_default(*t, &v) => Some(Attribute::new(*t, v)),
            _ => None,
        })
        .collect())
}

/// Whether `value` of `attr` is what an object gets without asking.
fn is_default(attr: u64, value: &AttributeValue) -> bool {
    match (attr, value) {
        (
            cka::CKA_MODIFIABLE | cka::CKA_COPYABLE | cka::CKA_DESTROYABLE,
            AttributeValue::Bool(b),
        ) => *b,
        (cka::CKA_START_DATE | cka::CKA_END_DATE | cka::CKA_SUBJECT, AttributeValue::Bytes(b)) => {
            b.is_empty()
        }
        (cka::CKA_ALLOWED_MECHANISMS, AttributeValue::Mechanisms(list)) => list.is_empty(),
        _ => false,
    }
}

impl Pkcs11Partition {
    /// The replicas that may serve `entry` (any object if `None`) now,
    /// fewest calls in flight first. A session object lives on one
    /// replica only.
    fn serving(&self, entry: Option<&Entry>) -> Vec<&Arc<Replica>> {
        if let Some(owner) = entry.and_then(|e| e.owner) {
            return self
                .replicas
                .get(owner.replica)
                .filter(|r| r.is_up())
                .into_iter()
                .collect();
        }
        let mut up: Vec<&Arc<Replica>> = self
            .replicas
            .iter()
            .filter(|r| r.is_up())
            .filter(|r| entry.is_none_or(|e| r.handle(&e.uid).is_some()))
            .collect();
        up.sort_by_key(|r| (r.in_flight.load(Ordering::Relaxed), r.index));
        up
    }

    /// The replica new objects are made on: the first healthy one.
    pub(crate) fn primary(&self) -> CkResult<&Arc<Replica>> {
        self.replicas
            .iter()
            .find(|r| r.is_up())
            .ok_or(Ckr(CKR_DEVICE_ERROR))
    }

    /// An idempotent call (a read, a key use, an operation's `*Init`) on
    /// the object `entry` (none: any replica): on the least busy healthy
    /// replica holding it, and on the next one if that replica's device
    /// fails. `f` gets the replica, a device session and the object's
    /// device handle there (0 without an object).
    pub(crate) fn read<T>(
        &self,
        entry: Option<&Entry>,
        mut f: impl FnMut(&Arc<Replica>, DeviceSession, CK_OBJECT_HANDLE) -> CkResult<T>,
    ) -> CkResult<T> {
        let mut last = Ckr(CKR_DEVICE_ERROR);
        for replica in self.serving(entry) {
            let object = match entry {
                Some(e) => match replica.handle(&e.uid) {
                    Some(h) => h,
                    None => continue,
                },
                None => 0,
            };
            let session = match replica.session() {
                Ok(s) => s,
                Err(Ckr(rv)) if is_device_failure(rv) => {
                    last = Ckr(rv);
                    continue;
                }
                Err(e) => return Err(e),
            };
            replica.in_flight.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = f(replica, session, object);
            replica.in_flight.fetch_sub(1, Ordering::Relaxed);
            replica.timed(started);
            match result {
                Err(Ckr(rv)) if is_device_failure(rv) => {
                    replica.take_out(rv);
                    last = Ckr(rv);
                }
                other => return other,
            }
        }
        // Every replica failed or none is up: the device's trouble, in the
        // code a client knows for it.
        Err(Ckr(match last.0 {
            rv if is_device_failure(rv) => CKR_DEVICE_ERROR,
            rv => rv,
        }))
    }

    /// A change to object `entry` on every healthy replica holding it. The
    /// first answers for all: its error is the call's, and nothing else is
    /// touched. A replica that fails afterwards, or is out, missed the
    /// change and gets the object again when it comes back.
    pub(crate) fn write(
        &self,
        entry: &Entry,
        mut f: impl FnMut(&Module, CK_SESSION_HANDLE, CK_OBJECT_HANDLE) -> CkResult<()>,
    ) -> CkResult<()> {
        let mut done = false;
        for replica in &self.replicas {
            if entry.owner.is_some_and(|o| o.replica != replica.index) {
                continue;
            }
            if !replica.is_up() {
                missed(replica, entry.uid);
                continue;
            }
            let Some(object) = replica.handle(&entry.uid) else {
                continue;
            };
            match replica.run(|m, s| f(m, s, object)) {
                Ok(()) => done = true,
                Err(Ckr(rv)) if is_device_failure(rv) => missed(replica, entry.uid),
                Err(e) if !done => return Err(e),
                Err(Ckr(rv)) => {
                    // Replicas answered differently: the first stands, this
                    // one gets the object again.
                    warn!(
                        partition = %self.name,
                        device = %replica.name(),
                        "a change done on another replica failed here ({}): copied again",
                        rv_name(rv)
                    );
                    replica.take_out(CKR_DEVICE_ERROR);
                    missed(replica, entry.uid);
                }
            }
        }
        if done {
            Ok(())
        } else {
            Err(Ckr(CKR_DEVICE_ERROR))
        }
    }

    /// Copies token object `uid` from `from` to every other healthy
    /// replica. A replica that fails the copy is taken out and gets it when
    /// it comes back.
    pub(crate) fn replicate(&self, from: &Arc<Replica>, uid: &Uid) {
        for to in &self.replicas {
            if to.index == from.index {
                continue;
            }
            if !to.is_up() {
                missed(to, *uid);
                continue;
            }
            if let Err(Ckr(rv)) = self.copy_to(from, to, uid) {
                warn!(
                    partition = %self.name,
                    from = %from.name(),
                    to = %to.name(),
                    "cannot copy an object to a replica ({}): it gets it when it is back",
                    rv_name(rv)
                );
                to.take_out(if is_device_failure(rv) {
                    rv
                } else {
                    CKR_DEVICE_ERROR
                });
                missed(to, *uid);
            }
        }
    }

    /// Makes token object `uid` of `from` on `to` (after destroying a
    /// stale copy there).
    fn copy_to(&self, from: &Arc<Replica>, to: &Arc<Replica>, uid: &Uid) -> CkResult<()> {
        let _one_at_a_time = self.copying.lock().unwrap_or_else(PoisonError::into_inner);
        let source = from.handle(uid).ok_or(Ckr(CKR_OBJECT_HANDLE_INVALID))?;
        if let Some(old) = to.forget(uid) {
            to.run(|m, s| m.destroy_object(s, old))?;
        }
        let class = from.run(|m, s| {
            present(m, s, source, &[cka::CKA_CLASS])
                .map(|a| crate::attributes::ulong(a.first().map(|a| &a.value)).unwrap_or(CKO_DATA))
        })?;
        let made = if matches!(class, CKO_SECRET_KEY | CKO_PRIVATE_KEY) {
            let link = self.link(from, to)?;
            let mut template = from.run(|m, s| present(m, s, source, KEY_ATTRIBUTES))?;
            template.retain(|a| a.attr_type.0 != cka::CKA_TOKEN);
            template.push(boolean(cka::CKA_TOKEN, true));
            let mut wrap = CMechanism::with_params(CKM_AES_KEY_WRAP_PAD, &MechanismParams::None)?;
            let blob = from.run(|m, s| {
                let (rv, len) = m.wrap_key(s, &mut wrap, link.from_key, source, None);
                check(rv)?;
                let mut out = Zeroizing::new(vec![0u8; len]);
                let (rv, len) = m.wrap_key(s, &mut wrap, link.from_key, source, Some(&mut out));
                check(rv)?;
                let n = len.min(out.len());
                out.truncate(n);
                Ok(out)
            })?;
            let mut c = CTemplate::new(&template)?;
            to.run(|m, s| m.unwrap_key(s, &mut wrap, link.to_key, &blob, &mut c))?
        } else {
            let all: Vec<u64> = KEY_ATTRIBUTES
                .iter()
                .chain(PUBLIC_ATTRIBUTES)
                .copied()
                .collect();
            let mut template = from.run(|m, s| present(m, s, source, &all))?;
            template.retain(|a| a.attr_type.0 != cka::CKA_TOKEN);
            template.push(boolean(cka::CKA_TOKEN, true));
            let mut c = CTemplate::new(&template)?;
            to.run(|m, s| m.create_object(s, &mut c))?
        };
        to.set(*uid, made);
        Ok(())
    }

    /// The transport key from `from` to `to`, made if there is none or
    /// either anchor changed since.
    fn link(&self, from: &Arc<Replica>, to: &Arc<Replica>) -> CkResult<Link> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(&(from.index, to.index))
            && link.from_generation == from.anchor_generation()
            && link.to_generation == to.anchor_generation()
        {
            return Ok(*link);
        }
        let link = make_link(from, to)?;
        info!(
            partition = %self.name,
            from = %from.name(),
            to = %to.name(),
            oaep_hash = if link.oaep_sha1 { "SHA-1" } else { "SHA-256" },
            "transport key made"
        );
        links.insert((from.index, to.index), link);
        Ok(link)
    }

    /// Brings replica `replica` up to date (its objects as the partition
    /// knows them) and puts it back: the watcher's check.
    fn bring_back(&self, replica: &Arc<Replica>) -> CkResult<usize> {
        replica.device.pool.drain_idle();
        // What the device holds now, asked within its time-out.
        let started = Instant::now();
        let found = {
            let mut session = replica.device.pool.checkout()?;
            let all = session.run(|m, s| m.find(s, &mut CTemplate::new(&[])?))?;
            let mut found: HashMap<Uid, CK_OBJECT_HANDLE> = HashMap::new();
            for object in all {
                if let Some(identity) = session.run(|m, s| read_identity(m, s, object))?
                    && identity.token
                {
                    found.insert(identity.uid, object);
                }
            }
            found
        };
        if started.elapsed() > replica.device.call_timeout {
            return Err(Ckr(CKR_DEVICE_ERROR));
        }
        {
            let mut objects = replica.objects();
            objects.by_uid.clear();
            objects.by_device.clear();
        }
        let mut changed = 0usize;
        let stale: HashSet<Uid> = replica.objects().stale.clone();
        let wanted = self.token_uids();
        // Destroyed (or never recorded) while it was out.
        for (uid, object) in &found {
            if !wanted.contains(uid) {
                replica.run(|m, s| m.destroy_object(s, *object))?;
                changed += 1;
            }
        }
        for uid in &wanted {
            match found.get(uid) {
                Some(object) if !stale.contains(uid) => replica.set(*uid, *object),
                Some(object) => {
                    // Changed while it was out: copied again.
                    replica.set(*uid, *object);
                    self.copy_from_any(replica, uid)?;
                    changed += 1;
                }
                None => {
                    self.copy_from_any(replica, uid)?;
                    changed += 1;
                }
            }
        }
        // Changes made while this ran, then back in service.
        loop {
            let again: Vec<Uid> = {
                let mut objects = replica.objects();
                for uid in &stale {
                    objects.stale.remove(uid);
                }
                let again: Vec<Uid> = objects.stale.drain().collect();
                if again.is_empty() {
                    replica.put_back();
                    return Ok(changed);
                }
                again
            };
            let wanted = self.token_uids();
            for uid in again {
                if wanted.contains(&uid) {
                    self.copy_from_any(replica, &uid)?;
                } else if let Some(object) = replica.forget(&uid) {
                    replica.run(|m, s| m.destroy_object(s, object))?;
                }
                changed += 1;
            }
        }
    }

    /// The uids of the partition's token objects (tombstones apart).
    fn token_uids(&self) -> HashSet<Uid> {
        self.lock()
            .objects
            .entries()
            .filter(|(_, e)| e.owner.is_none() && !e.tombstone)
            .map(|(_, e)| e.uid)
            .collect()
    }

    /// Copies `uid` to `to` from a healthy replica holding it.
    fn copy_from_any(&self, to: &Arc<Replica>, uid: &Uid) -> CkResult<()> {
        let from = self
            .replicas
            .iter()
            .find(|r| r.index != to.index && r.is_up() && r.handle(uid).is_some())
            .ok_or(Ckr(CKR_DEVICE_ERROR))?;
        self.copy_to(from, to, uid)
    }

    /// The watcher: checks replicas taken out, with back-off, and brings
    /// them back. Ends when the partition goes.
    pub fn watch(self: &Arc<Self>) {
        let partition: Weak<Self> = Arc::downgrade(self);
        let name = format!("hsmlink-replicas-{}", self.name);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            loop {
                std::thread::sleep(WATCH_TICK);
                let Some(partition) = partition.upgrade() else {
                    return;
                };
                let now = Instant::now();
                for replica in &partition.replicas {
                    if !replica.due_for_check(now) {
                        continue;
                    }
                    match partition.bring_back(replica) {
                        Ok(changed) => info!(
                            partition = %partition.name,
                            device = %replica.name(),
                            changed,
                            "device back in service, brought up to date"
                        ),
                        Err(Ckr(rv)) => {
                            replica.check_failed(now);
                            warn!(
                                partition = %partition.name,
                                device = %replica.name(),
                                "device still failing ({})",
                                rv_name(rv)
                            );
                        }
                    }
                }
            }
        });
        if let Err(e) = spawned {
            warn!(partition = %self.name, "cannot start the replica watcher: {e}");
        }
    }
}

/// Makes a transport key inside `from` and carries it into `to` (see the
/// module's comment). Everything made is a session object of the anchors.
fn make_link(from: &Arc<Replica>, to: &Arc<Replica>) -> CkResult<Link> {
    // A key pair inside the destination, for this one transfer.
    let mut rsa_gen = CMechanism::with_params(CKM_RSA_PKCS_KEY_PAIR_GEN, &MechanismParams::None)?;
    let mut public = CTemplate::new(&[
        boolean(cka::CKA_TOKEN, false),
        boolean(cka::CKA_WRAP, true),
        boolean(cka::CKA_ENCRYPT, false),
        boolean(cka::CKA_VERIFY, false),
        ulong(cka::CKA_MODULUS_BITS, 3072),
        Attribute::new(
            cka::CKA_PUBLIC_EXPONENT,
            AttributeValue::Bytes(vec![0x01, 0x00, 0x01]),
        ),
    ])?;
    let mut private = CTemplate::new(&[
        boolean(cka::CKA_TOKEN, false),
        boolean(cka::CKA_PRIVATE, true),
        boolean(cka::CKA_SENSITIVE, true),
        boolean(cka::CKA_EXTRACTABLE, false),
        boolean(cka::CKA_UNWRAP, true),
        boolean(cka::CKA_DECRYPT, false),
        boolean(cka::CKA_SIGN, false),
    ])?;
    let ((to_public, to_private), _) =
        to.with_anchor(|m, s| m.generate_key_pair(s, &mut rsa_gen, &mut public, &mut private))?;
    let carried = carry(from, to, to_public, to_private);
    let _ = to.run(|m, s| m.destroy_object(s, to_public));
    let _ = to.run(|m, s| m.destroy_object(s, to_private));
    let link = carried?;
    probe(from, to, &link)?;
    Ok(link)
}

/// Checks a new transport key: a throw-away key wrapped under it on `from`
/// unwraps under it on `to` (AES key wrap checks its integrity).
fn probe(from: &Arc<Replica>, to: &Arc<Replica>, link: &Link) -> CkResult<()> {
    let mut aes_gen = CMechanism::with_params(CKM_AES_KEY_GEN, &MechanismParams::None)?;
    let template = [
        ulong(cka::CKA_CLASS, CKO_SECRET_KEY),
        ulong(cka::CKA_KEY_TYPE, CKK_AES),
        boolean(cka::CKA_TOKEN, false),
        boolean(cka::CKA_EXTRACTABLE, true),
        boolean(cka::CKA_ENCRYPT, false),
        boolean(cka::CKA_DECRYPT, false),
    ];
    let mut generate = template.to_vec();
    generate.push(ulong(cka::CKA_VALUE_LEN, 16));
    let mut c_generate = CTemplate::new(&generate)?;
    let mut c_unwrap = CTemplate::new(&template)?;
    let mut wrap = CMechanism::with_params(CKM_AES_KEY_WRAP_PAD, &MechanismParams::None)?;
    let blob = from.run(|m, s| {
        let key = m.generate_key(s, &mut aes_gen, &mut c_generate)?;
        let mut out = vec![0u8; 64];
        let (rv, len) = m.wrap_key(s, &mut wrap, link.from_key, key, Some(&mut out));
        let _ = m.destroy_object(s, key);
        check(rv)?;
        out.truncate(len.min(out.len()));
        Ok(out)
    })?;
    to.run(|m, s| {
        let key = m.unwrap_key(s, &mut wrap, link.to_key, &blob, &mut c_unwrap)?;
        let _ = m.destroy_object(s, key);
        Ok(())
    })
}

fn carry(
    from: &Arc<Replica>,
    to: &Arc<Replica>,
    to_public: CK_OBJECT_HANDLE,
    to_private: CK_OBJECT_HANDLE,
) -> CkResult<Link> {
    let rsa = to.run(|m, s| {
        present(
            m,
            s,
            to_public,
            &[cka::CKA_MODULUS, cka::CKA_PUBLIC_EXPONENT],
        )
    })?;
    if rsa.len() != 2 {
        return Err(Ckr(CKR_DEVICE_ERROR));
    }
    let mut public_template = vec![
        ulong(cka::CKA_CLASS, CKO_PUBLIC_KEY),
        ulong(cka::CKA_KEY_TYPE, CKK_RSA),
        boolean(cka::CKA_TOKEN, false),
        boolean(cka::CKA_WRAP, true),
        boolean(cka::CKA_ENCRYPT, false),
        boolean(cka::CKA_VERIFY, false),
    ];
    public_template.extend(rsa);
    let mut c_public = CTemplate::new(&public_template)?;
    let mut aes_gen = CMechanism::with_params(CKM_AES_KEY_GEN, &MechanismParams::None)?;
    let transport_template = |extractable: bool| {
        vec![
            ulong(cka::CKA_CLASS, CKO_SECRET_KEY),
            ulong(cka::CKA_KEY_TYPE, CKK_AES),
            boolean(cka::CKA_TOKEN, false),
            boolean(cka::CKA_PRIVATE, true),
            boolean(cka::CKA_SENSITIVE, true),
            boolean(cka::CKA_EXTRACTABLE, extractable),
            boolean(cka::CKA_WRAP, true),
            boolean(cka::CKA_UNWRAP, true),
            boolean(cka::CKA_ENCRYPT, false),
            boolean(cka::CKA_DECRYPT, false),
        ]
    };
    let mut generate = transport_template(true);
    generate.push(ulong(cka::CKA_VALUE_LEN, 32));
    let mut c_generate = CTemplate::new(&generate)?;
    let ((from_public, from_key), from_generation) = from.with_anchor(|m, s| {
        let public = m.create_object(s, &mut c_public)?;
        match m.generate_key(s, &mut aes_gen, &mut c_generate) {
            Ok(key) => Ok((public, key)),
            Err(e) => {
                let _ = m.destroy_object(s, public);
                Err(e)
            }
        }
    })?;
    // OAEP with SHA-256; SHA-1 where the device takes no other (SoftHSMv2
    // checks for it; OAEP's security does not rest on collisions).
    let mut wrapped = Err(Ckr(CKR_MECHANISM_PARAM_INVALID));
    let mut used = None;
    for (hash, mgf) in [(CKM_SHA256, CKG_MGF1_SHA256), (CKM_SHA_1, CKG_MGF1_SHA1)] {
        let oaep = Mechanism::new(
            CKM_RSA_PKCS_OAEP,
            MechanismParams::RsaOaep {
                hash_alg: hsmlink_protocol::MechanismType(hash),
                mgf,
                source: CKZ_DATA_SPECIFIED,
                source_data: Vec::new(),
            },
        );
        let mut c_oaep = CMechanism::new(CKM_RSA_PKCS_OAEP, &oaep)?;
        wrapped = from.run(|m, s| {
            let (rv, len) = m.wrap_key(s, &mut c_oaep, from_public, from_key, None);
            check(rv)?;
            let mut out = vec![0u8; len];
            let (rv, len) = m.wrap_key(s, &mut c_oaep, from_public, from_key, Some(&mut out));
            check(rv)?;
            out.truncate(len.min(out.len()));
            Ok(out)
        });
        match wrapped {
            Err(Ckr(CKR_ARGUMENTS_BAD | CKR_MECHANISM_PARAM_INVALID)) => continue,
            _ => {
                used = Some(oaep);
                break;
            }
        }
    }
    let _ = from.run(|m, s| m.destroy_object(s, from_public));
    let wrapped = match wrapped {
        Ok(w) => w,
        Err(e) => {
            let _ = from.run(|m, s| m.destroy_object(s, from_key));
            return Err(e);
        }
    };
    let Some(oaep) = used else {
        let _ = from.run(|m, s| m.destroy_object(s, from_key));
        return Err(Ckr(CKR_MECHANISM_PARAM_INVALID));
    };
    let mut c_oaep = CMechanism::new(CKM_RSA_PKCS_OAEP, &oaep)?;
    let mut c_unwrapped = CTemplate::new(&transport_template(false))?;
    let unwrapped =
        to.with_anchor(|m, s| m.unwrap_key(s, &mut c_oaep, to_private, &wrapped, &mut c_unwrapped));
    // From now on the key leaves neither device.
    let mut not_extractable = CTemplate::new(&[boolean(cka::CKA_EXTRACTABLE, false)])?;
    let sealed = from.run(|m, s| m.set_attribute_value(s, from_key, &mut not_extractable));
    match (unwrapped, sealed) {
        (Ok((to_key, to_generation)), Ok(())) => Ok(Link {
            oaep_sha1: matches!(
                oaep.params,
                MechanismParams::RsaOaep { hash_alg, .. } if hash_alg.0 == CKM_SHA_1
            ),
            from_key,
            to_key,
            from_generation,
            to_generation,
        }),
        (unwrapped, sealed) => {
            let _ = from.run(|m, s| m.destroy_object(s, from_key));
            let error = match (&unwrapped, sealed) {
                (Err(e), _) => *e,
                (Ok(_), Err(e)) => e,
                (Ok(_), Ok(())) => Ckr(CKR_DEVICE_ERROR),
            };
            if let Ok((to_key, _)) = unwrapped {
                let _ = to.run(|m, s| m.destroy_object(s, to_key));
            }
            Err(error)
        }
    }
}
