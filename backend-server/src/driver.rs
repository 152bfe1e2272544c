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

use hsmlink_protocol::{Attribute, AttributeResult, AttributeType, ObjectHandle, Secret};

use crate::error::CkResult;

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
pub trait PartitionDriver: Send + Sync + Debug {
    fn token_state(&self) -> TokenState;

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
