//! The module's part of an operation (see [`super::deferred`]): an init
//! not sent yet, the hash of a hash-then-sign mechanism, an output kept
//! for the call that will take it.
//!
//! For `CKM_SHA*_RSA_PKCS(_PSS)`, `CKM_ECDSA_SHA*` and SM2-with-SM3 the
//! server checks the operation at its init (with the original mechanism:
//! the key, its usage flags and `CKA_ALLOWED_MECHANISMS`), the module
//! hashes the message itself, and only the digest travels. A local
//! operation is keyed by session handle and kind; it is dropped (its hash
//! state and kept output wiped: both zeroize on drop) when the operation
//! ends, on `C_CloseSession`, `C_CloseAllSessions` for its slot,
//! `C_SessionCancel` of its kind, and `C_Finalize`.

use std::collections::{HashMap, HashSet};

use cryptoki_sys::{
    CKM_ECDSA_SHA1, CKM_ECDSA_SHA224, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384, CKM_ECDSA_SHA512,
    CKM_SHA1_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS, CKM_SHA224_RSA_PKCS, CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS, CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS, CKM_SHA512_RSA_PKCS_PSS,
};
use hsmlink_protocol::vendor::CKM_HSMLINK_SM2_SM3;
use hsmlink_protocol::{Mechanism, MechanismType, ObjectHandle, Secret, SessionHandle, SlotId};
use parking_lot::Mutex;
use sha2::Digest;
use zeroize::ZeroizeOnDrop;

/// The hash a hash-then-sign mechanism starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sm3,
}

impl HashAlg {
    /// The hash of `mechanism` if it is one of the hash-then-sign
    /// mechanisms hashed in the module.
    pub fn of(mechanism: MechanismType) -> Option<Self> {
        #[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
        let is = |m: cryptoki_sys::CK_MECHANISM_TYPE| mechanism.0 == u64::from(m);
        if is(CKM_SHA1_RSA_PKCS) || is(CKM_SHA1_RSA_PKCS_PSS) || is(CKM_ECDSA_SHA1) {
            Some(Self::Sha1)
        } else if is(CKM_SHA224_RSA_PKCS) || is(CKM_SHA224_RSA_PKCS_PSS) || is(CKM_ECDSA_SHA224) {
            Some(Self::Sha224)
        } else if is(CKM_SHA256_RSA_PKCS) || is(CKM_SHA256_RSA_PKCS_PSS) || is(CKM_ECDSA_SHA256) {
            Some(Self::Sha256)
        } else if is(CKM_SHA384_RSA_PKCS) || is(CKM_SHA384_RSA_PKCS_PSS) || is(CKM_ECDSA_SHA384) {
            Some(Self::Sha384)
        } else if is(CKM_SHA512_RSA_PKCS) || is(CKM_SHA512_RSA_PKCS_PSS) || is(CKM_ECDSA_SHA512) {
            Some(Self::Sha512)
        } else if mechanism.0 == CKM_HSMLINK_SM2_SM3 {
            Some(Self::Sm3)
        } else {
            None
        }
    }
}

/// A running hash. Every variant wipes its state when dropped (the
/// `zeroize` feature of the RustCrypto hashes).
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sm3(sm3::Sm3),
}

impl Hasher {
    pub fn new(alg: HashAlg) -> Self {
        match alg {
            HashAlg::Sha1 => Self::Sha1(sha1::Sha1::new()),
            HashAlg::Sha224 => Self::Sha224(sha2::Sha224::new()),
            HashAlg::Sha256 => Self::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Self::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Self::Sha512(sha2::Sha512::new()),
            HashAlg::Sm3 => Self::Sm3(sm3::Sm3::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
            Self::Sm3(h) => h.update(data),
        }
    }

    /// The digest so far, leaving `self` as it was.
    pub fn digest(&self) -> Secret {
        fn finish<D: Digest + Clone>(h: &D) -> Secret {
            Secret::from_slice(&h.clone().finalize())
        }
        match self {
            Self::Sha1(h) => finish(h),
            Self::Sha224(h) => finish(h),
            Self::Sha256(h) => finish(h),
            Self::Sha384(h) => finish(h),
            Self::Sha512(h) => finish(h),
            Self::Sm3(h) => finish(h),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(<redacted>)")
    }
}

/// The hash of a hash-then-sign (or verify) operation, computed here.
#[derive(Debug)]
pub struct LocalHash {
    pub hasher: Hasher,
    /// `C_SignUpdate`/`C_VerifyUpdate` was called: the operation is
    /// multi-part and `C_Sign`/`C_Verify` may no longer finish it.
    pub updated: bool,
}

impl LocalHash {
    pub fn new(hasher: Hasher) -> Self {
        Self {
            hasher,
            updated: false,
        }
    }
}

/// A `C_*Init` accepted here and not sent yet.
#[derive(Clone, Debug)]
pub struct DeferredInit {
    pub mechanism: Mechanism,
    /// Not sent for digesting.
    pub key: ObjectHandle,
}

/// Which call produced a kept output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Single,
    Final,
}

/// An output the server computed for a length query or a buffer too
/// small, kept for the call that takes it: that call must be the same
/// step with the same input (compared by SHA-256, so the input itself is
/// not kept). Both are wiped when dropped.
#[derive(ZeroizeOnDrop)]
pub struct Kept {
    #[zeroize(skip)]
    pub step: Step,
    pub input: [u8; 32],
    pub output: Secret,
}

impl Kept {
    pub fn fingerprint(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    pub fn matches(&self, step: Step, data: &[u8]) -> bool {
        self.step == step && self.input == Self::fingerprint(data)
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("step", &self.step)
            .field("len", &self.output.len())
            .finish_non_exhaustive()
    }
}

/// The module's part of one operation. It exists while any part is set.
#[derive(Debug, Default)]
pub struct LocalOp {
    /// The init, while the server has not started the operation: it goes
    /// with the first call that needs the server.
    pub init: Option<DeferredInit>,
    /// The hash of a hash-then-sign mechanism (for SM2-with-SM3 only once
    /// the server sent Z, that is after the init went alone).
    pub hash: Option<LocalHash>,
    pub kept: Option<Kept>,
}

impl LocalOp {
    fn is_empty(&self) -> bool {
        self.init.is_none() && self.hash.is_none() && self.kept.is_none()
    }
}

/// Which operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Digest,
}

#[derive(Debug, Default)]
struct SessionState {
    /// The slot, when the session was opened through this library.
    slot: Option<SlotId>,
    sign: Option<LocalOp>,
    verify: Option<LocalOp>,
    encrypt: Option<LocalOp>,
    decrypt: Option<LocalOp>,
    digest: Option<LocalOp>,
}

impl SessionState {
    fn op(&mut self, kind: Kind) -> &mut Option<LocalOp> {
        match kind {
            Kind::Sign => &mut self.sign,
            Kind::Verify => &mut self.verify,
            Kind::Encrypt => &mut self.encrypt,
            Kind::Decrypt => &mut self.decrypt,
            Kind::Digest => &mut self.digest,
        }
    }

    fn is_empty(&self) -> bool {
        self.slot.is_none()
            && self.sign.is_none()
            && self.verify.is_none()
            && self.encrypt.is_none()
            && self.decrypt.is_none()
            && self.digest.is_none()
    }
}

/// The local operations of every session of the library, and the
/// mechanism lists of the slots (see [`super::deferred`]). The locks are
/// only held to look at or change a map, never across network I/O.
#[derive(Debug, Default)]
pub struct LocalOps {
    sessions: Mutex<HashMap<SessionHandle, SessionState>>,
    mechanisms: Mutex<HashMap<SlotId, HashSet<MechanismType>>>,
}

impl LocalOps {
    /// `C_OpenSession` succeeded: remember the session's slot, for
    /// `C_CloseAllSessions`.
    pub fn opened(&self, session: SessionHandle, slot: SlotId) {
        self.sessions.lock().entry(session).or_default().slot = Some(slot);
    }

    /// The session is gone (`C_CloseSession`): drop all its state.
    pub fn closed(&self, session: SessionHandle) {
        let removed = self.sessions.lock().remove(&session);
        drop(removed);
    }

    /// `C_CloseAllSessions(slot)`: drop the state of the sessions on `slot`.
    pub fn closed_all(&self, slot: SlotId) {
        self.sessions
            .lock()
            .retain(|_, state| state.slot != Some(slot));
    }

    /// `C_Finalize`: everything.
    pub fn clear(&self) {
        let all = std::mem::take(&mut *self.sessions.lock());
        drop(all);
        self.mechanisms.lock().clear();
    }

    /// The slot of a session opened through this library.
    pub fn slot_of(&self, session: SessionHandle) -> Option<SlotId> {
        self.sessions
            .lock()
            .get(&session)
            .and_then(|state| state.slot)
    }

    /// Whether the slot's token lists `mechanism`, as far as the module
    /// knows: `None` before it has seen the slot's list.
    pub fn offers(&self, slot: SlotId, mechanism: MechanismType) -> Option<bool> {
        let lists = self.mechanisms.lock();
        lists.get(&slot).map(|list| list.contains(&mechanism))
    }

    /// The slot's mechanism list, as the server just gave it.
    pub fn set_mechanisms(&self, slot: SlotId, list: &[MechanismType]) {
        let list = list.iter().copied().collect();
        self.mechanisms.lock().insert(slot, list);
    }

    /// Starts an operation, unless one is there: `false` then.
    pub fn start(&self, session: SessionHandle, kind: Kind, op: LocalOp) -> bool {
        let mut sessions = self.sessions.lock();
        let slot = sessions.entry(session).or_default().op(kind);
        if slot.is_some() {
            return false;
        }
        *slot = Some(op);
        true
    }

    /// Ends a local operation, if there is one.
    pub fn end(&self, session: SessionHandle, kind: Kind) {
        let mut sessions = self.sessions.lock();
        let mut ended = None;
        if let Some(state) = sessions.get_mut(&session) {
            ended = state.op(kind).take();
            if state.is_empty() {
                sessions.remove(&session);
            }
        }
        drop(sessions);
        drop(ended);
    }

    /// Is there a local operation?
    pub fn active(&self, session: SessionHandle, kind: Kind) -> bool {
        self.with(session, kind, |_| ()).is_some()
    }

    /// Is the operation's hash computed here?
    pub fn hashing(&self, session: SessionHandle, kind: Kind) -> bool {
        self.with(session, kind, |op| op.hash.is_some()) == Some(true)
    }

    /// Takes the local operation out of the map, to work on it outside the
    /// lock; [`LocalOps::put_back`] returns it.
    pub fn take(&self, session: SessionHandle, kind: Kind) -> Option<LocalOp> {
        self.sessions
            .lock()
            .get_mut(&session)
            .and_then(|state| state.op(kind).take())
    }

    /// Returns an operation taken with [`LocalOps::take`] (an empty one
    /// ends it), unless the session was closed (or the operation started
    /// again) meanwhile: then it is dropped.
    pub fn put_back(&self, session: SessionHandle, kind: Kind, op: LocalOp) {
        let mut sessions = self.sessions.lock();
        if !op.is_empty()
            && let Some(slot) = sessions.get_mut(&session).map(|state| state.op(kind))
            && slot.is_none()
        {
            *slot = Some(op);
            return;
        }
        drop(sessions);
        drop(op);
    }

    /// Runs `f` on the local operation, `None` if there is none.
    pub fn with<R>(
        &self,
        session: SessionHandle,
        kind: Kind,
        f: impl FnOnce(&mut LocalOp) -> R,
    ) -> Option<R> {
        let mut sessions = self.sessions.lock();
        sessions
            .get_mut(&session)
            .and_then(|state| state.op(kind).as_mut())
            .map(f)
    }
}
