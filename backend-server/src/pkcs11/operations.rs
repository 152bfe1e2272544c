//! The cryptographic half of a pkcs11 partition.
//!
//! An operation checks a device session out of the pool at `*Init` and
//! keeps it until it ends: the device holds the operation's state. An
//! operation dropped before the device ended it (the client gave up, or
//! an error the device may not have ended it on) closes its device session
//! rather than return it to the pool with an operation still active.
//!
//! Output lengths come from the device: a length query is the device's own
//! (a NULL output buffer, which keeps the operation), given as an upper
//! bound so that the session layer does the work and keeps an output that
//! did not fit. Work is done with a buffer large enough for every
//! mechanism served; a device answering `CKR_BUFFER_TOO_SMALL` is asked
//! again with the length it gave.
//!
//! Hash-then-sign: the module hashes the message and sends the digest
//! (`SignDigest`, `VerifyDigest`, tagged with the original mechanism). The
//! device operation is the raw mechanism ([`hash_then_sign`]): the digest
//! goes to `CKM_RSA_PKCS` in a DigestInfo, to `CKM_RSA_PKCS_PSS` with the
//! same parameters, to `CKM_ECDSA` as is. A message sent in full
//! (`C_SignUpdate` from another client) is hashed here first.
//! `CKA_ALLOWED_MECHANISMS` is checked by hsmlink against the original
//! mechanism; a device that also enforces it refuses the raw mechanism for
//! a key allowed only the hash-then-sign one (a known limit of phase 1).
//!
//! Replicas: an operation starts on the least busy healthy replica holding
//! its key. If that replica's device fails during a single-part call (or a
//! length query, or a hash-then-sign signature whose message was hashed
//! here) before any data went to the device, the operation starts again on
//! another replica and the call is done there: these calls are idempotent.
//! A multi-part operation whose data already went to a failed device fails
//! (`CKR_DEVICE_ERROR`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cryptoki_sys::*;
use hsmlink_crypto::digest::Hasher;
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeValue, Mechanism, MechanismParams, ObjectHandle,
};
use zeroize::Zeroizing;

use super::key_states;
use super::mechanisms::{HashThenSign, digest_info_prefix, hash_then_sign};
use super::module::{Final, Io, Module, check};
use super::objects::Entry;
use super::objects::{self, Defaults};
use super::params::CMechanism;
use super::replicas::{Replica, is_device_failure};
use super::session_pool::DeviceSession;
use super::template::{CTemplate, read_attributes};
use super::{Made, NewDeviceObject, Pkcs11Partition};
use crate::driver::{Begun, CryptoDriver, ObjectContext, OpKind, Operation, OutLen, Step};
use crate::error::{CkResult, Ckr};
use crate::soft::operations::{check_class_and_type, route};

/// Errors on which the standard says the device ended the operation (and
/// well-behaved devices do): the session goes back to the pool.
const ENDS_OPERATION: &[CK_RV] = &[
    CKR_SIGNATURE_INVALID,
    CKR_SIGNATURE_LEN_RANGE,
    CKR_DATA_INVALID,
    CKR_DATA_LEN_RANGE,
    CKR_ENCRYPTED_DATA_INVALID,
    CKR_ENCRYPTED_DATA_LEN_RANGE,
];

/// The output buffer tried first: the input plus a margin (block ciphers
/// add at most a block, GCM a tag), and at least what an 8192-bit RSA
/// signature or decryption needs.
fn first_guess(input_len: usize) -> usize {
    input_len.saturating_add(64).max(1024)
}

/// How an operation feeds its device operation.
#[derive(Debug)]
enum Mode {
    /// The mechanism as the client gave it.
    Direct,
    /// A hash-then-sign mechanism, signed by its raw mechanism; `hasher`
    /// for a message sent in full.
    HashThenSign {
        hts: HashThenSign,
        hasher: Option<Box<Hasher>>,
    },
}

/// An operation's state: its device session, and whether the device ended it.
#[derive(Debug)]
pub struct OpCore {
    session: DeviceSession,
    /// The replica whose device holds the operation.
    replica: Arc<Replica>,
    kind: OpKind,
    mode: Mode,
    finished: bool,
    /// How to start the operation on another replica; `None` once data
    /// went to the device (or where the device must log in again).
    again: Option<Again>,
}

/// What starting the operation again takes.
#[derive(Debug)]
struct Again {
    replicas: Vec<Arc<Replica>>,
    key: Option<Entry>,
    start: Start,
}

/// How an operation starts on a device.
#[derive(Clone, Debug)]
struct Start {
    kind: OpKind,
    /// The mechanism the client asked (checked against the key's list).
    asked: u64,
    /// The device's mechanism, with its parameters.
    mechanism: Mechanism,
}

impl Start {
    /// `C_*Init` on `session` with device key `key` (0: none). Gives
    /// whether the device wants a context-specific login.
    fn on(
        &self,
        session: &mut DeviceSession,
        key: Option<(CK_OBJECT_HANDLE, u64)>,
    ) -> CkResult<bool> {
        let mut needs_context_login = false;
        let device_key = match key {
            Some((object, class)) => {
                let facts = key_facts(session, object)?;
                // A key of the wrong class or type gets hsmlink's answer,
                // the soft HSM's, whatever the device would say.
                if let (Some(family), Some(key_type)) = (route(self.asked), facts.key_type) {
                    check_class_and_type(self.kind, family, class, key_type)?;
                }
                check_allowed(&facts, self.asked)?;
                needs_context_login = class == CKO_PRIVATE_KEY
                    && matches!(
                        self.kind,
                        OpKind::Sign | OpKind::SignRecover | OpKind::Decrypt
                    )
                    && facts.always_authenticate;
                object
            }
            None => 0,
        };
        let mut c_mechanism = CMechanism::new(self.mechanism.mechanism.0, &self.mechanism)?;
        let kind = self.kind;
        session.run(|md, s| md.op_init(kind, s, &mut c_mechanism, device_key))?;
        Ok(needs_context_login)
    }
}

impl Drop for OpCore {
    fn drop(&mut self) {
        if !self.finished {
            // The device may still have the operation active: never hand
            // the session to another call.
            self.session.discard();
        }
    }
}

impl OpCore {
    /// Notes how a terminating call ended.
    fn end<T>(&mut self, result: CkResult<T>) -> CkResult<T> {
        match &result {
            Ok(_) => self.finished = true,
            Err(Ckr(rv)) if ENDS_OPERATION.contains(rv) => self.finished = true,
            Err(_) => {}
        }
        let result = self.session.check(result);
        self.replica.note(result)
    }

    /// Runs an idempotent call `f`; if the device fails it before any data
    /// went in, starts the operation on another replica and runs it there.
    fn retrying<T>(&mut self, mut f: impl FnMut(&mut Self) -> CkResult<T>) -> CkResult<T> {
        loop {
            let started = std::time::Instant::now();
            let pool = self.session.pool().clone();
            let call = pool.metrics.call();
            let result = f(self);
            call.end(result.is_ok());
            self.replica.timed(started);
            match result {
                Err(Ckr(rv)) if is_device_failure(rv) && self.again.is_some() => {
                    self.replica.take_out(rv);
                    self.finished = false;
                    self.start_elsewhere()?;
                }
                other => return other,
            }
        }
    }

    /// Moves the operation to another healthy replica holding its key.
    fn start_elsewhere(&mut self) -> CkResult<()> {
        let Some(again) = &self.again else {
            return Err(Ckr(CKR_DEVICE_ERROR));
        };
        for replica in &again.replicas {
            if replica.index == self.replica.index || !replica.is_up() {
                continue;
            }
            let key = match &again.key {
                Some(entry) => match replica.handle(&entry.uid) {
                    Some(object) => Some((object, entry.class)),
                    None => continue,
                },
                None => None,
            };
            let Ok(mut session) = replica.device.pool.checkout() else {
                continue;
            };
            match again.start.on(&mut session, key) {
                Ok(false) => {
                    // The old session may hold the operation: closed.
                    self.session.discard();
                    self.session = session;
                    self.replica = replica.clone();
                    return Ok(());
                }
                Ok(true) => session.discard(),
                Err(Ckr(rv)) if is_device_failure(rv) => replica.take_out(rv),
                Err(e) => return Err(e),
            }
        }
        self.again = None;
        Err(Ckr(CKR_DEVICE_ERROR))
    }

    fn io_of(&self, step: Step) -> CkResult<Io> {
        Ok(match (self.kind, step) {
            (OpKind::Encrypt, Step::Single) => Io::Encrypt,
            (OpKind::Encrypt, Step::Update) => Io::EncryptUpdate,
            (OpKind::Decrypt, Step::Single) => Io::Decrypt,
            (OpKind::Decrypt, Step::Update) => Io::DecryptUpdate,
            (OpKind::Sign, Step::Single | Step::SignDigest) => Io::Sign,
            (OpKind::Digest, Step::Single) => Io::Digest,
            (OpKind::SignRecover, Step::Single) => Io::SignRecover,
            (OpKind::VerifyRecover, Step::Single) => Io::VerifyRecover,
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        })
    }

    fn final_of(&self) -> CkResult<Final> {
        Ok(match self.kind {
            OpKind::Encrypt => Final::Encrypt,
            OpKind::Decrypt => Final::Decrypt,
            OpKind::Sign => Final::Sign,
            OpKind::Digest => Final::Digest,
            _ => return Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        })
    }

    /// A data-in, data-out call with an output buffer (asked again with the
    /// device's length if too small).
    fn io(&mut self, which: Io, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let handle = self.session.handle();
        let mut out = Zeroizing::new(vec![0u8; first_guess(input.len())]);
        let (mut rv, mut len) = self
            .session
            .module()
            .io(which, handle, input, Some(&mut out));
        if rv == CKR_BUFFER_TOO_SMALL {
            out = Zeroizing::new(vec![0u8; len]);
            (rv, len) = self
                .session
                .module()
                .io(which, handle, input, Some(&mut out));
        }
        check(rv)?;
        let n = len.min(out.len());
        out.truncate(n);
        Ok(out)
    }

    fn final_call(&mut self, which: Final) -> CkResult<Zeroizing<Vec<u8>>> {
        let handle = self.session.handle();
        let mut out = Zeroizing::new(vec![0u8; first_guess(0)]);
        let (mut rv, mut len) = self.session.module().final_(which, handle, Some(&mut out));
        if rv == CKR_BUFFER_TOO_SMALL {
            out = Zeroizing::new(vec![0u8; len]);
            (rv, len) = self.session.module().final_(which, handle, Some(&mut out));
        }
        check(rv)?;
        let n = len.min(out.len());
        out.truncate(n);
        Ok(out)
    }

    /// What the raw mechanism signs for `digest`.
    fn encode(hts: &HashThenSign, digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        if digest.len() != hts.hash.output_len() {
            return Err(Ckr(CKR_DATA_LEN_RANGE));
        }
        let prefix: &[u8] = if hts.digest_info {
            digest_info_prefix(hts.hash)
        } else {
            &[]
        };
        Ok(Zeroizing::new([prefix, digest].concat()))
    }

    fn hts(&self) -> CkResult<HashThenSign> {
        match &self.mode {
            Mode::HashThenSign { hts, .. } => Ok(*hts),
            Mode::Direct => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
    }

    /// The digest of the message fed so far (hash-then-sign).
    fn take_digest(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        match &mut self.mode {
            Mode::HashThenSign { hts, hasher } => {
                let h = hasher
                    .take()
                    .unwrap_or_else(|| Box::new(Hasher::new(hts.hash)));
                Ok(Zeroizing::new(h.finalize()))
            }
            Mode::Direct => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        }
    }

    /// The device's length for `step` (a NULL-buffer query: the
    /// operation stays).
    fn output_len(&mut self, step: Step, input_len: usize) -> CkResult<OutLen> {
        let handle = self.session.handle();
        let (rv, len) = match (&self.mode, step) {
            (_, Step::Final) if !matches!(self.mode, Mode::HashThenSign { .. }) => {
                let which = self.final_of()?;
                self.session.module().final_(which, handle, None)
            }
            (Mode::HashThenSign { hts, .. }, _) => {
                let dummy = Self::encode(hts, &vec![0u8; hts.hash.output_len()])?;
                self.session.module().io(Io::Sign, handle, &dummy, None)
            }
            (Mode::Direct, _) => {
                let which = self.io_of(step)?;
                // The length depends on the input's length only: ask with
                // zeros of that length (nothing is computed, the operation
                // stays).
                let dummy = vec![0u8; input_len];
                self.session.module().io(which, handle, &dummy, None)
            }
        };
        let result = self.session.check(check(rv)).map(|()| OutLen::AtMost(len));
        self.replica.note(result)
    }

    fn sign_digest(&mut self, digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let encoded = Self::encode(&self.hts()?, digest);
        let result = encoded.and_then(|e| self.io(Io::Sign, &e));
        self.end(result)
    }

    fn verify_digest(&mut self, digest: &[u8], signature: &[u8]) -> CkResult<()> {
        let encoded = Self::encode(&self.hts()?, digest);
        let handle = self.session.handle();
        let result = encoded.and_then(|e| self.session.module().verify(handle, &e, signature));
        self.end(result)
    }
}

/// An operation of a pkcs11 partition.
#[derive(Debug)]
pub struct DeviceOp {
    core: Arc<Mutex<OpCore>>,
}

impl DeviceOp {
    fn lock(&self) -> MutexGuard<'_, OpCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Operation for DeviceOp {
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen> {
        self.lock()
            .retrying(|core| core.output_len(step, input_len))
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let mut core = self.lock();
        if let Mode::HashThenSign { hts, hasher } = &mut core.mode {
            hasher
                .get_or_insert_with(|| Box::new(Hasher::new(hts.hash)))
                .update(input);
            return Ok(Zeroizing::new(Vec::new()));
        }
        // Data goes to the device: this operation stays on its replica.
        core.again = None;
        let handle = core.session.handle();
        let result = match core.kind {
            OpKind::Encrypt | OpKind::Decrypt => {
                let which = core.io_of(Step::Update)?;
                core.io(which, input)
            }
            kind @ (OpKind::Sign | OpKind::Verify | OpKind::Digest) => core
                .session
                .module()
                .update(kind, handle, input)
                .map(|()| Zeroizing::new(Vec::new())),
            OpKind::SignRecover | OpKind::VerifyRecover => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
        };
        let result = core.session.check(result);
        core.replica.note(result)
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        let mut core = self.lock();
        if matches!(core.mode, Mode::HashThenSign { .. }) {
            // Hashed here: the device has seen nothing yet.
            let digest = core.take_digest()?;
            return core.retrying(|core| core.sign_digest(&digest));
        }
        let which = core.final_of()?;
        let result = core.final_call(which);
        core.end(result)
    }

    fn single(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let mut core = self.lock();
        if let Mode::HashThenSign { hts, .. } = &core.mode {
            let mut h = Hasher::new(hts.hash);
            h.update(input);
            let digest = Zeroizing::new(h.finalize());
            return core.retrying(|core| core.sign_digest(&digest));
        }
        let which = core.io_of(Step::Single)?;
        core.retrying(|core| {
            let result = core.io(which, input);
            core.end(result)
        })
    }

    fn sign_digest(&mut self, digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        self.lock().retrying(|core| core.sign_digest(digest))
    }

    fn verify_final(&mut self, signature: &[u8]) -> CkResult<()> {
        let mut core = self.lock();
        if matches!(core.mode, Mode::HashThenSign { .. }) {
            let digest = core.take_digest()?;
            return core.retrying(|core| core.verify_digest(&digest, signature));
        }
        let handle = core.session.handle();
        let result = core.session.module().verify_final(handle, signature);
        core.end(result)
    }

    fn verify(&mut self, data: &[u8], signature: &[u8]) -> CkResult<()> {
        let mut core = self.lock();
        if let Mode::HashThenSign { hts, .. } = &core.mode {
            let mut h = Hasher::new(hts.hash);
            h.update(data);
            let digest = Zeroizing::new(h.finalize());
            return core.retrying(|core| core.verify_digest(&digest, signature));
        }
        core.retrying(|core| {
            let handle = core.session.handle();
            let result = core.session.module().verify(handle, data, signature);
            core.end(result)
        })
    }

    fn verify_digest(&mut self, digest: &[u8], signature: &[u8]) -> CkResult<()> {
        self.lock()
            .retrying(|core| core.verify_digest(digest, signature))
    }
}

/// The key attributes an operation checks.
#[derive(Debug, Default)]
struct KeyFacts {
    allowed: Option<Vec<u64>>,
    always_authenticate: bool,
    key_type: Option<u64>,
}

fn key_facts(session: &mut DeviceSession, device_key: CK_OBJECT_HANDLE) -> CkResult<KeyFacts> {
    let values = session.run(|m, s| {
        read_attributes(
            m,
            s,
            device_key,
            &[
                cka::CKA_ALLOWED_MECHANISMS,
                cka::CKA_ALWAYS_AUTHENTICATE,
                cka::CKA_KEY_TYPE,
            ],
        )
    })?;
    let mut facts = KeyFacts::default();
    if let Some(AttributeResult::Value(AttributeValue::Mechanisms(list))) = values.first() {
        facts.allowed = Some(list.iter().map(|m| m.0).collect());
    }
    if let Some(AttributeResult::Value(AttributeValue::Bool(b))) = values.get(1) {
        facts.always_authenticate = *b;
    }
    if let Some(AttributeResult::Value(AttributeValue::Ulong(t))) = values.get(2) {
        facts.key_type = Some(*t);
    }
    Ok(facts)
}

/// `CKR_KEY_FUNCTION_NOT_PERMITTED` unless the key's
/// `CKA_ALLOWED_MECHANISMS`, if it has a non-empty one, lists `mechanism`.
/// (Devices such as SoftHSMv2 give every key an empty list by default,
/// meaning no restriction.)
fn check_allowed(facts: &KeyFacts, mechanism: u64) -> CkResult<()> {
    match &facts.allowed {
        Some(list) if !list.is_empty() && !list.contains(&mechanism) => {
            Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED))
        }
        _ => Ok(()),
    }
}

impl Pkcs11Partition {
    /// `C_UnwrapKey` / `C_DeriveKey`: a new key (secret by default) from
    /// the tenant's `template`, made by `make` with the device handle of
    /// `key` (the unwrapping or base key) on the replica that makes it, and
    /// recorded under `handle`.
    fn make_secret_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        key: &Entry,
        template: &[Attribute],
        make: impl FnOnce(
            &Module,
            CK_SESSION_HANDLE,
            &mut CMechanism,
            CK_OBJECT_HANDLE,
            &mut CTemplate,
        ) -> CkResult<CK_OBJECT_HANDLE>,
    ) -> CkResult<()> {
        let new = objects::new_object(
            template,
            Defaults::of(CKO_SECRET_KEY, self.replicated(), false),
        )?;
        Self::may_hold(ctx, new.token, new.private)?;
        let mut c_mechanism = self.c_mechanism(mechanism)?;
        let mut c = CTemplate::new(&new.template)?;
        // Made where the key is: its replica if it is a session object.
        let replica = match key.owner {
            Some(owner) => self
                .replicas()
                .get(owner.replica)
                .filter(|r| r.is_up())
                .ok_or(Ckr(CKR_DEVICE_ERROR))?,
            None => self.primary()?,
        };
        let key_object = replica.handle(&key.uid).ok_or(Ckr(CKR_DEVICE_ERROR))?;
        let (device, made) = self.make_on(replica, !new.token, |m, s| {
            make(m, s, &mut c_mechanism, key_object, &mut c)
        })?;
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

    /// The device's form of `mechanism`.
    fn c_mechanism(&self, mechanism: &Mechanism) -> CkResult<CMechanism> {
        CMechanism::new(
            self.device().vendor.to_device(mechanism.mechanism.0),
            mechanism,
        )
    }

    /// Checks `key` for `mechanism`: visible, a key, its state allowing
    /// `usage`, allowed the mechanism.
    fn checked_key(
        &self,
        ctx: &ObjectContext,
        key: ObjectHandle,
        usage: u64,
        mechanism: u64,
    ) -> CkResult<Entry> {
        let entry = self.key(ctx, key)?.entry;
        key_states::permits(&entry, usage)?;
        let facts = self.read(Some(&entry), |_, mut session, object| {
            key_facts(&mut session, object)
        })?;
        check_allowed(&facts, mechanism)?;
        Ok(entry)
    }

    /// Records a new key pair, both or neither.
    fn record_pair(
        &self,
        ctx: &ObjectContext,
        handles: (ObjectHandle, ObjectHandle),
        public: NewDeviceObject,
        private: NewDeviceObject,
    ) -> CkResult<()> {
        if let Err(e) = self.record_new(ctx, handles.0, public) {
            self.forget_new(&private);
            return Err(e);
        }
        if let Err(e) = self.record_new(ctx, handles.1, private) {
            let entry = self.lock().objects.remove(handles.0.0);
            if entry.is_some_and(|e| e.owner.is_none()) {
                let _ = self.store.delete_device_object(&self.name, handles.0.0);
            }
            self.forget_new(&public);
            return Err(e);
        }
        Ok(())
    }

    /// Destroys a device object made but not recorded.
    fn forget_new(&self, new: &NewDeviceObject) {
        if let Some(replica) = self.replicas().get(new.made.replica) {
            replica.set(new.uid, new.device);
        }
        let entry = Entry {
            uid: new.uid,
            class: new.class,
            held: new.held,
            private: new.private,
            owner: new.made.generation.map(|generation| objects::Owner {
                app: crate::driver::OwnerId(0),
                session: crate::driver::OwnerId(0),
                replica: new.made.replica,
                generation,
            }),
            state: new.state,
            tombstone: false,
        };
        self.destroy_on_device(&entry);
    }
}

impl CryptoDriver for Pkcs11Partition {
    fn begin_operation(
        &self,
        ctx: &ObjectContext,
        kind: OpKind,
        mechanism: &Mechanism,
        key: Option<ObjectHandle>,
    ) -> CkResult<Begun> {
        let m = mechanism.mechanism.0;
        let hts = if matches!(kind, OpKind::Sign | OpKind::Verify) {
            hash_then_sign(m)
        } else {
            None
        };
        let device_mechanism = match hts {
            // PSS keeps its parameters; PKCS #1 v1.5 and ECDSA take none.
            Some(h) if h.raw == CKM_RSA_PKCS_PSS => Mechanism {
                mechanism: hsmlink_protocol::MechanismType(self.device().vendor.to_device(h.raw)),
                params: mechanism.params.clone(),
            },
            Some(h) => {
                if mechanism.params != MechanismParams::None {
                    return Err(Ckr(CKR_MECHANISM_PARAM_INVALID));
                }
                Mechanism::new(self.device().vendor.to_device(h.raw), MechanismParams::None)
            }
            None => Mechanism {
                mechanism: hsmlink_protocol::MechanismType(self.device().vendor.to_device(m)),
                params: mechanism.params.clone(),
            },
        };
        // The parameters are checked before any device is asked.
        CMechanism::new(device_mechanism.mechanism.0, &device_mechanism)?;
        let entry = match (kind, key) {
            (OpKind::Digest, _) => None,
            (_, None) => return Err(Ckr(CKR_KEY_HANDLE_INVALID)),
            (_, Some(handle)) => {
                let entry = self.key(ctx, handle)?.entry;
                key_states::permits(&entry, kind.usage_attribute())?;
                Some(entry)
            }
        };
        let start = Start {
            kind,
            asked: m,
            mechanism: device_mechanism,
        };
        let (replica, mut session, needs_context_login) =
            self.read(entry.as_ref(), |replica, mut session, object| {
                let key = entry.map(|e| (object, e.class));
                let needs = start.on(&mut session, key)?;
                Ok((replica.clone(), session, needs))
            })?;
        if needs_context_login {
            // The device wants its own context-specific login; the tenant's
            // is checked above the driver before the operation may run.
            let pool = replica.device.pool.clone();
            let handle = session.handle();
            if let Err(e) = session.check(pool.context_login(handle)) {
                session.discard();
                return Err(e);
            }
        }
        let again = (!needs_context_login).then(|| Again {
            replicas: self.replicas().to_vec(),
            key: entry,
            start,
        });
        let core = Arc::new(Mutex::new(OpCore {
            session,
            replica,
            kind,
            mode: match hts {
                Some(hts) => Mode::HashThenSign { hts, hasher: None },
                None => Mode::Direct,
            },
            finished: false,
            again,
        }));
        if kind == OpKind::Digest {
            self.digests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(ctx.session, Arc::downgrade(&core));
        }
        Ok(Begun {
            operation: Box::new(DeviceOp { core }),
            hash_prefix: None,
            needs_context_login,
        })
    }

    fn digest_key(
        &self,
        ctx: &ObjectContext,
        _operation: &mut dyn crate::driver::Operation,
        key: ObjectHandle,
    ) -> CkResult<()> {
        let entry = self.key(ctx, key)?.entry;
        key_states::permits(&entry, 0)?;
        let core = self
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ctx.session)
            .and_then(std::sync::Weak::upgrade)
            .ok_or(Ckr(CKR_OPERATION_NOT_INITIALIZED))?;
        let mut core = core.lock().unwrap_or_else(PoisonError::into_inner);
        // The key's material goes into the device's digest: no moving on.
        core.again = None;
        let object = core
            .replica
            .handle(&entry.uid)
            .ok_or(Ckr(CKR_KEY_HANDLE_INVALID))?;
        let result = core.session.run(|m, s| m.digest_key(s, object));
        core.replica.note(result)
    }

    fn generate_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        template: &[Attribute],
    ) -> CkResult<()> {
        let new = objects::new_object(
            template,
            Defaults::of(CKO_SECRET_KEY, self.replicated(), true),
        )?;
        Self::may_hold(ctx, new.token, new.private)?;
        let mut c_mechanism = self.c_mechanism(mechanism)?;
        let mut c = CTemplate::new(&new.template)?;
        let (device, made) = self.make(!new.token, |m, s| {
            m.generate_key(s, &mut c_mechanism, &mut c)
        })?;
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

    fn generate_key_pair(
        &self,
        ctx: &ObjectContext,
        handles: (ObjectHandle, ObjectHandle),
        mechanism: &Mechanism,
        public_template: &[Attribute],
        private_template: &[Attribute],
    ) -> CkResult<()> {
        let replicated = self.replicated();
        let public = objects::new_object(
            public_template,
            Defaults::of(CKO_PUBLIC_KEY, replicated, true),
        )?;
        let private = objects::new_object(
            private_template,
            Defaults::of(CKO_PRIVATE_KEY, replicated, true),
        )?;
        Self::may_hold(ctx, public.token, public.private)?;
        Self::may_hold(ctx, private.token, private.private)?;
        let mut c_mechanism = self.c_mechanism(mechanism)?;
        let mut c_public = CTemplate::new(&public.template)?;
        let mut c_private = CTemplate::new(&private.template)?;
        let any_session_object = !public.token || !private.token;
        let ((public_key, private_key), made) = self.make(any_session_object, |m, s| {
            m.generate_key_pair(s, &mut c_mechanism, &mut c_public, &mut c_private)
        })?;
        let made_one = |new: &objects::NewObject, device| NewDeviceObject {
            uid: new.uid,
            device,
            made: Made {
                replica: made.replica,
                generation: if new.token { None } else { made.generation },
            },
            class: new.class,
            held: new.held,
            private: new.private,
            state: new.state,
        };
        self.record_pair(
            ctx,
            handles,
            made_one(&public, public_key),
            made_one(&private, private_key),
        )
    }

    fn wrap_key(
        &self,
        ctx: &ObjectContext,
        mechanism: &Mechanism,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
    ) -> CkResult<Zeroizing<Vec<u8>>> {
        let wrapping = self.checked_key(ctx, wrapping_key, cka::CKA_WRAP, mechanism.mechanism.0)?;
        let target = self.key(ctx, key)?.entry;
        key_states::permits_export(&target)?;
        if target.held.hides_extractable() {
            // Extractable on the device for its replicas only.
            return Err(Ckr(CKR_KEY_UNEXTRACTABLE));
        }
        let mut c_mechanism = self.c_mechanism(mechanism)?;
        self.read(Some(&wrapping), |replica, mut session, wrapping| {
            let target = replica
                .handle(&target.uid)
                .ok_or(Ckr(CKR_KEY_HANDLE_INVALID))?;
            session.run(|m, s| {
                let (rv, len) = m.wrap_key(s, &mut c_mechanism, wrapping, target, None);
                check(rv)?;
                let mut out = Zeroizing::new(vec![0u8; len]);
                let (rv, len) = m.wrap_key(s, &mut c_mechanism, wrapping, target, Some(&mut out));
                check(rv)?;
                let n = len.min(out.len());
                out.truncate(n);
                Ok(out)
            })
        })
    }

    fn unwrap_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        unwrapping_key: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> CkResult<()> {
        let unwrapping =
            self.checked_key(ctx, unwrapping_key, cka::CKA_UNWRAP, mechanism.mechanism.0)?;
        self.make_secret_key(
            ctx,
            handle,
            mechanism,
            &unwrapping,
            template,
            |m, s, c_mechanism, key, c| m.unwrap_key(s, c_mechanism, key, wrapped, c),
        )
    }

    fn derive_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        base_key: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()> {
        let base = self.checked_key(ctx, base_key, cka::CKA_DERIVE, mechanism.mechanism.0)?;
        self.make_secret_key(
            ctx,
            handle,
            mechanism,
            &base,
            template,
            |m, s, c_mechanism, key, c| m.derive_key(s, c_mechanism, key, c),
        )
    }

    fn random(&self, len: usize) -> CkResult<Zeroizing<Vec<u8>>> {
        self.run(|m, s| m.random(s, len))
    }
}

#[cfg(test)]
mod tests {
    use hsmlink_crypto::digest::DigestAlg;

    use super::*;

    #[test]
    fn digests_are_encoded_for_the_raw_mechanism() {
        let rsa = hash_then_sign(CKM_SHA256_RSA_PKCS).unwrap();
        let encoded = OpCore::encode(&rsa, &[1u8; 32]).unwrap();
        assert_eq!(encoded.len(), 19 + 32);
        assert_eq!(&encoded[..19], digest_info_prefix(DigestAlg::Sha256));
        let ecdsa = hash_then_sign(CKM_ECDSA_SHA384).unwrap();
        assert_eq!(
            &*OpCore::encode(&ecdsa, &[2u8; 48]).unwrap(),
            &[2u8; 48][..]
        );
        // A digest of the wrong length never reaches the device.
        assert_eq!(
            OpCore::encode(&ecdsa, &[2u8; 32]).unwrap_err(),
            Ckr(CKR_DATA_LEN_RANGE)
        );
        assert!(first_guess(0) >= 1024 && first_guess(10_000) >= 10_064);
    }
}
