//! The interface a partition lives behind, shaped like PKCS#11's token and
//! object calls, so that the built-in software HSM ([`crate::soft`]) and the
//! later vendor-PKCS#11 driver serve the same requests.
//!
//! Sessions, login state and handles of the tenant are generic and live
//! above the driver ([`crate::sessions`], [`crate::login`],
//! [`crate::handles`]); a driver is told who asks through an
//! [`ObjectContext`] and keeps only what belongs to the partition: its PINs,
//! label, flags and objects. Every change a driver reports is durable
//! before it returns.

use std::fmt::Debug;

use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, Mechanism, ObjectHandle, Secret,
};
use zeroize::Zeroizing;

use crate::error::{CkResult, Ckr};

/// `CKU_SO` or `CKU_USER`: whose PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserKind {
    So,
    User,
}

/// The partition's token state, for `C_GetTokenInfo` and the login rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenState {
    /// Blank-trimmed `CK_TOKEN_INFO.label`; empty before `C_InitToken`.
    pub label: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub so_pin: PinState,
    pub user_pin: PinState,
}

/// What the token says about one PIN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinState {
    /// Wrong tries since the last right one.
    pub failures: u32,
    /// The most wrong tries before the PIN locks.
    pub max_failures: u32,
    /// Set by someone other than its owner: must be changed before use.
    pub to_be_changed: bool,
}

impl PinState {
    pub fn locked(&self) -> bool {
        self.failures >= self.max_failures
    }
}

/// An opaque, server-wide id of an application instance or session, used to
/// tag session objects (never shown to a client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub u64);

/// Who performs an object call, as the driver needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectContext {
    /// The application instance: session objects are visible to its
    /// sessions only.
    pub app: OwnerId,
    /// The session: session objects it creates die with it.
    pub session: OwnerId,
    /// Whether the session is read/write (token objects may change).
    pub rw: bool,
    /// Who is logged in for this application on the token.
    pub login: Option<UserKind>,
    /// The user is logged in with a PIN that must be changed first: only
    /// public objects may be found and read, nothing may change.
    pub pin_expired: bool,
}

impl ObjectContext {
    /// Private objects are visible to the logged-in user only.
    pub fn sees_private(&self) -> bool {
        self.login == Some(UserKind::User) && !self.pin_expired
    }
}

/// One partition, behind a driver. All methods are blocking (the store, the
/// HSM, argon2): call them from blocking threads.
pub trait PartitionDriver: CryptoDriver + Send + Sync + Debug {
    fn token_state(&self) -> TokenState;

    /// True if a call may wait on something outside this process (a
    /// vendor module's device): such calls never run on an async task
    /// ([`crate::scheduling`]).
    fn may_block(&self) -> bool {
        true
    }

    /// `C_InitToken`: sets (or checks, if initialised) the SO PIN and the
    /// label, destroys every object and the user PIN.
    fn init_token(&self, so_pin: &Secret, label: &str) -> CkResult<()>;

    /// `C_InitPIN`: sets the user PIN (the caller has checked that the SO is
    /// logged in).
    fn init_pin(&self, pin: &Secret) -> CkResult<()>;

    /// `C_SetPIN` by the owner of the PIN.
    fn set_pin(&self, who: UserKind, old_pin: &Secret, new_pin: &Secret) -> CkResult<()>;

    /// Checks a PIN for `C_Login`, counting failures.
    fn verify_pin(&self, who: UserKind, pin: &Secret) -> CkResult<()>;

    /// `C_CreateObject`, the new object getting `handle`.
    fn create_object(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()>;

    /// `C_CopyObject` of `source` into a new object `handle`.
    fn copy_object(
        &self,
        ctx: &ObjectContext,
        source: ObjectHandle,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()>;

    fn destroy_object(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<()>;

    fn object_size(&self, ctx: &ObjectContext, handle: ObjectHandle) -> CkResult<u64>;

    fn get_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        types: &[AttributeType],
    ) -> CkResult<Vec<AttributeResult>>;

    fn set_attributes(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()>;

    /// The handles of the visible objects matching `template`, ascending.
    fn find_objects(
        &self,
        ctx: &ObjectContext,
        template: &[Attribute],
    ) -> CkResult<Vec<ObjectHandle>>;

    /// The session `session` has closed: its session objects go.
    fn session_closed(&self, session: OwnerId);

    /// The highest object handle the partition holds (so that the tenant's
    /// handle allocator never hands it out again).
    fn max_handle(&self) -> u64;
}

// ---- Cryptographic operations (PKCS#11 3.0 sections 5.8 to 5.19) ----

/// The kinds of operation a session may have active, one of each at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Encrypt,
    Decrypt,
    Digest,
    Sign,
    Verify,
    SignRecover,
    VerifyRecover,
}

impl OpKind {
    /// The usage attribute a key needs for this kind of operation (0 for
    /// digesting, which takes no key).
    pub fn usage_attribute(self) -> u64 {
        use hsmlink_protocol::attribute_kind as cka;
        match self {
            Self::Encrypt => cka::CKA_ENCRYPT,
            Self::Decrypt => cka::CKA_DECRYPT,
            Self::Sign => cka::CKA_SIGN,
            Self::Verify => cka::CKA_VERIFY,
            Self::SignRecover => cka::CKA_SIGN_RECOVER,
            Self::VerifyRecover => cka::CKA_VERIFY_RECOVER,
            Self::Digest => 0,
        }
    }

    pub const ALL: [OpKind; 7] = [
        Self::Encrypt,
        Self::Decrypt,
        Self::Digest,
        Self::Sign,
        Self::Verify,
        Self::SignRecover,
        Self::VerifyRecover,
    ];

    /// The `CKF_*` flag of `CK_MECHANISM_INFO` this kind needs.
    pub fn mechanism_flag(self) -> u64 {
        use cryptoki_sys::*;
        match self {
            Self::Encrypt => CKF_ENCRYPT,
            Self::Decrypt => CKF_DECRYPT,
            Self::Digest => CKF_DIGEST,
            Self::Sign => CKF_SIGN,
            Self::Verify => CKF_VERIFY,
            Self::SignRecover => CKF_SIGN_RECOVER,
            Self::VerifyRecover => CKF_VERIFY_RECOVER,
        }
    }
}

/// A step of an operation, for its output length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `C_Encrypt`, `C_Sign`, `C_Digest`, `C_SignRecover`, `C_VerifyRecover`, ...
    Single,
    /// `C_EncryptUpdate`, `C_DecryptUpdate`.
    Update,
    /// `C_EncryptFinal`, `C_SignFinal`, ...
    Final,
    /// `SignDigest`: the hash came from the module.
    SignDigest,
}

/// How long an output will be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutLen {
    Exact(usize),
    /// At most this (CBC-PAD or RSA decryption, verify-recover): the real
    /// length is known only after the work is done.
    AtMost(usize),
}

impl OutLen {
    pub fn bound(self) -> usize {
        match self {
            Self::Exact(n) | Self::AtMost(n) => n,
        }
    }
}

/// One active cryptographic operation of a session. The session layer
/// ([`crate::sessions`]) keeps it and applies the lifecycle rules (length
/// queries, `CKR_BUFFER_TOO_SMALL`, errors ending it); an implementation
/// only computes. Outputs are secrets until they leave.
pub trait Operation: Send + Debug {
    /// The output length of `step` over `input_len` bytes of input, without
    /// doing the work.
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen>;

    /// Feeds data; returns what it releases (ciphers) or nothing.
    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>>;

    /// Ends the operation, returning the last output (ciphertext tail,
    /// plaintext, signature, MAC, digest).
    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>>;

    /// Single-part call: `update` then `finish`.
    fn single(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let mut out = self.update(input)?;
        out.extend_from_slice(&self.finish()?);
        Ok(out)
    }

    /// `SignDigest`: sign a hash computed by the module (hash-then-sign
    /// mechanisms only).
    fn sign_digest(&mut self, _digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        Err(Ckr(cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED))
    }

    /// `C_VerifyFinal`: checks the signature over everything fed.
    fn verify_final(&mut self, _signature: &[u8]) -> CkResult<()> {
        Err(Ckr(cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED))
    }

    /// `C_Verify`: `update` then `verify_final`.
    fn verify(&mut self, data: &[u8], signature: &[u8]) -> CkResult<()> {
        self.update(data)?;
        self.verify_final(signature)
    }

    /// `VerifyDigest`: checks the signature over a hash computed by the module.
    fn verify_digest(&mut self, _digest: &[u8], _signature: &[u8]) -> CkResult<()> {
        Err(Ckr(cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED))
    }
}

/// What an `*Init` started.
#[derive(Debug)]
pub struct Begun {
    pub operation: Box<dyn Operation>,
    /// SM2 with SM3: Z, which the module hashes before the message.
    pub hash_prefix: Option<Vec<u8>>,
    /// The key has `CKA_ALWAYS_AUTHENTICATE`: the operation waits for
    /// `C_Login(CKU_CONTEXT_SPECIFIC)`.
    pub needs_context_login: bool,
}

/// The cryptographic half of a partition's driver: key checks, engines,
/// key generation, wrapping and derivation. New objects get handles from
/// the caller, as with `create_object`.
pub trait CryptoDriver {
    /// `C_EncryptInit`, `C_SignInit`, ...: checks the key (visible, type,
    /// usage flags, `CKA_ALLOWED_MECHANISMS`, size) and the parameters, and
    /// starts an engine. `key` is `None` for digests.
    fn begin_operation(
        &self,
        ctx: &ObjectContext,
        kind: OpKind,
        mechanism: &Mechanism,
        key: Option<ObjectHandle>,
    ) -> CkResult<Begun>;

    /// `C_DigestKey`: feeds a secret key's value to a digest operation.
    fn digest_key(
        &self,
        ctx: &ObjectContext,
        operation: &mut dyn Operation,
        key: ObjectHandle,
    ) -> CkResult<()>;

    /// `C_GenerateKey`.
    fn generate_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        template: &[Attribute],
    ) -> CkResult<()>;

    /// `C_GenerateKeyPair`.
    fn generate_key_pair(
        &self,
        ctx: &ObjectContext,
        handles: (ObjectHandle, ObjectHandle),
        mechanism: &Mechanism,
        public_template: &[Attribute],
        private_template: &[Attribute],
    ) -> CkResult<()>;

    /// `C_WrapKey`: the wrapped bytes.
    fn wrap_key(
        &self,
        ctx: &ObjectContext,
        mechanism: &Mechanism,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
    ) -> CkResult<Zeroizing<Vec<u8>>>;

    /// `C_UnwrapKey` into a new object `handle`.
    fn unwrap_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        unwrapping_key: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> CkResult<()>;

    /// `C_DeriveKey` into a new object `handle`.
    fn derive_key(
        &self,
        ctx: &ObjectContext,
        handle: ObjectHandle,
        mechanism: &Mechanism,
        base_key: ObjectHandle,
        template: &[Attribute],
    ) -> CkResult<()>;

    /// `C_GenerateRandom`.
    fn random(&self, len: usize) -> CkResult<Zeroizing<Vec<u8>>>;
}
