//! The server's core: one request in, one response out.
//!
//! [`handle`] is a pure function of the server state, the client's context
//! (tenant, application instance, connection) and the request. It knows no
//! sockets, so it is tested in-process and can be fuzzed directly. It never
//! panics on client input: every failure is a `CKR_*` code.
//!
//! Every lookup goes through the connection's tenant, taken from its verified
//! certificate; a request has no way to name another tenant's slot.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::{
    CK_RV, CKR_ARGUMENTS_BAD, CKR_DEVICE_REMOVED, CKR_FUNCTION_NOT_SUPPORTED,
    CKR_MECHANISM_INVALID, CKR_PIN_EXPIRED, CKR_SESSION_HANDLE_INVALID, CKR_SLOT_ID_INVALID,
    CKR_TOKEN_NOT_PRESENT,
};
use hsmlink_protocol::{
    AppInstance, Mechanism, MechanismInfo, MechanismType, ObjectHandle, OpCall, Request, Response,
    ResponseBody, SessionHandle, SlotId,
};
use time::OffsetDateTime;
use tracing::debug;

use crate::audit::{Audit, AuditError};
use crate::calls::{find, login, objects, session};
use crate::config::{Config, DeviceConfig, DriverKind, SecureTemplates};
use crate::driver::{ObjectContext, PartitionDriver, UserKind};
use crate::error::{CkResult, Ckr};
use crate::handles::HandleAllocator;
use crate::identity::PeerIdentity;
use crate::metering::Metering;
use crate::names::{PartitionName, TenantName};
use crate::pkcs11::device::DeviceError;
use crate::registry::{Registry, Slot, Tenant};
use crate::sessions::{AppKey, Closed, SessionView, Sessions};
use crate::soft::keys::{KeyError, RootKey};
use crate::soft::mechanisms;
use crate::soft::partition::SecurityPolicy;
use crate::store::{SqliteStore, Store, StoreError};
use crate::token::{self, SessionCounts};

/// Everything requests are answered from. Shared by all connections.
#[derive(Debug)]
pub struct ServerState {
    pub registry: Registry,
    pub sessions: Sessions,
    pub(crate) handles: HandleAllocator,
    app_grace: Duration,
    /// The audit log (`None` in in-process tests that do not start one).
    audit: Option<Arc<Audit>>,
    metering: Arc<Metering>,
}

/// The server state could not be built: the store or a key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Audit(#[from] AuditError),
}

impl ServerState {
    /// Opens the store of `config`, gets the soft driver's root key and
    /// loads every configured partition (allocating new ones).
    pub fn open(config: &Config) -> Result<Self, StateError> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store.path)?);
        let registry = Registry::from_config(&config.tenants);
        let needs_soft = registry
            .tenants()
            .iter()
            .flat_map(|t| t.slots())
            .any(|s| s.driver == DriverKind::Soft);
        // Partitions allocated through the admin API may need it too: a
        // deployment without soft slots in server.toml and no root key
        // simply cannot allocate soft partitions.
        let root = match RootKey::load(config.soft.root_key_source().as_ref()) {
            Ok(root) => Some(root),
            Err(e) if needs_soft => return Err(e.into()),
            Err(_) => None,
        };
        let mut state = Self::with_devices(
            registry,
            store,
            root,
            &config.devices,
            config.security.policy(),
            config.server.app_grace(),
        )?;
        for warning in config.security.login_limit_warnings() {
            tracing::warn!("{warning}");
        }
        state.sessions = Sessions::with_limits(config.security.login_limits());
        let metering = Arc::new(Metering::new(Some(config.store.path.clone())));
        state.audit = Some(Arc::new(Audit::start(
            config.audit_settings(),
            metering.clone(),
        )?));
        state.metering = metering;
        Ok(state)
    }

    /// The state over an open store (tests use their own root key).
    pub fn with_store(
        registry: Registry,
        store: Arc<dyn Store>,
        root: Option<RootKey>,
        policy: SecurityPolicy,
        app_grace: Duration,
    ) -> Result<Self, StateError> {
        Self::with_devices(registry, store, root, &[], policy, app_grace)
    }

    /// The state over an open store, with the vendor devices that pkcs11
    /// slots name (opened here: module loaded, token found, logged in).
    /// The registry merges server.toml's tenants into the store and serves
    /// every tenant and partition the store holds ([`Registry::attach`]).
    pub fn with_devices(
        registry: Registry,
        store: Arc<dyn Store>,
        root: Option<RootKey>,
        devices: &[DeviceConfig],
        policy: SecurityPolicy,
        app_grace: Duration,
    ) -> Result<Self, StateError> {
        let floors = registry.attach(store.clone(), root, devices, policy)?;
        Ok(Self {
            registry,
            sessions: Sessions::new(),
            handles: HandleAllocator::new(store, floors),
            app_grace,
            audit: None,
            metering: Arc::new(Metering::default()),
        })
    }

    /// The audit log, if this state writes one.
    pub fn audit(&self) -> Option<&Arc<Audit>> {
        self.audit.as_ref()
    }

    /// Starts writing the audit log (tests; [`Self::open`] does it itself).
    pub fn set_audit(&mut self, audit: Arc<Audit>) {
        self.metering = audit.metering().clone();
        self.audit = Some(audit);
    }

    /// The metering counters (for the admin API: [`Metering::report`]).
    pub fn metering(&self) -> &Arc<Metering> {
        &self.metering
    }

    pub fn app_grace(&self) -> Duration {
        self.app_grace
    }

    /// True if every partition behind `tenant`'s slots runs in this
    /// process (no call can wait on a device).
    pub(crate) fn in_process(&self, tenant: &TenantName) -> bool {
        self.registry.any_tenant(tenant).is_some_and(|t| {
            t.slots().all(|s| {
                self.registry
                    .driver(&s.partition)
                    .is_some_and(|d| !d.may_block())
            })
        })
    }

    pub(crate) fn driver<S: Borrow<Slot>>(&self, slot: S) -> CkResult<Arc<dyn PartitionDriver>> {
        self.registry
            .driver(&slot.borrow().partition)
            .ok_or(Ckr::GENERAL)
    }

    /// Tells the drivers that sessions closed (their session objects go).
    pub(crate) fn sessions_closed(&self, closed: &[Closed]) {
        for c in closed {
            let driver = self.registry.any_tenant(&c.tenant).and_then(|t| {
                t.slot(c.slot)
                    .and_then(|s| self.registry.driver(&s.partition))
            });
            if let Some(driver) = driver {
                driver.session_closed(c.session);
            }
        }
    }

    /// Closes the sessions of applications gone for the grace period.
    /// Returns how many sessions closed.
    pub fn reap_idle_apps(&self, now: Instant) -> usize {
        // Logins past their limits end now (and are audited) even if their
        // application went quiet.
        self.sessions.expire_logins(now);
        for expiry in self.sessions.take_expired() {
            if let Err(e) = crate::audit::hook::record_expiry(self, None, &expiry) {
                tracing::error!(tenant = %expiry.key.tenant, "{e}");
            }
        }
        let closed = self.sessions.reap(now, self.app_grace);
        if !closed.is_empty() {
            debug!(
                sessions = closed.len(),
                "closing the sessions of applications gone"
            );
        }
        self.sessions_closed(&closed);
        closed.len()
    }
}

/// Who sent a request: fixed for the life of a connection, after the hello.
#[derive(Clone, Debug)]
pub struct ClientContext {
    /// Server-wide connection number, for logs.
    pub connection: u64,
    pub peer: SocketAddr,
    /// The tenant and the certificate that named it.
    pub identity: PeerIdentity,
    /// From the hello: sessions and login state belong to this instance.
    pub app_instance: AppInstance,
    /// From the hello, for the audit trail only.
    pub pid: u32,
    /// Client software, from the hello.
    pub client: String,
}

impl ClientContext {
    pub fn tenant(&self) -> &TenantName {
        &self.identity.tenant
    }

    /// The application instance whose sessions this connection carries.
    pub fn app_key(&self) -> AppKey {
        AppKey {
            tenant: self.identity.tenant.clone(),
            app: self.app_instance,
        }
    }
}

/// Answers one request for `ctx`'s tenant. May block (store, PIN hashing):
/// the transport runs it on a blocking thread.
pub fn handle(state: &ServerState, ctx: &ClientContext, request: Request) -> Response {
    if let Request::Begin {
        session,
        mechanism,
        key,
        call,
    } = request
    {
        return begin(state, ctx, session, mechanism, key, call);
    }
    let plan = crate::audit::hook::plan(state, ctx, &request);
    let response = handle_call(state, ctx, request);
    crate::audit::hook::finish(state, ctx, plan, response)
}

/// `Request::Begin`: the init the module deferred, then its call, each
/// through [`handle`] as if they had come in two frames, so the audit log
/// and metering see exactly what they would have seen (a failed init
/// recorded as `C_*Init`, the call with its operation's mechanism and key).
/// Neither inner request is a `Begin`: this recurses once at most.
fn begin(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: Mechanism,
    key: Option<ObjectHandle>,
    call: OpCall,
) -> Response {
    let Some(init) = call.init(session, mechanism, key) else {
        return error(CKR_ARGUMENTS_BAD);
    };
    let initialized = handle(state, ctx, init);
    if !initialized.rv.is_ok() {
        return error(initialized.rv.0);
    }
    // An SM2 Z (HashPrefix) is not needed: the call carries the whole
    // message or the module's digest.
    let response = handle(state, ctx, call.into_request(session));
    let output = match response.body {
        ResponseBody::Output(output) => Some(output),
        _ => None,
    };
    Response {
        rv: response.rv,
        body: ResponseBody::Begun(output),
    }
}

/// [`handle`] without the audit log and metering.
fn handle_call(state: &ServerState, ctx: &ClientContext, request: Request) -> Response {
    // A tenant missing from the registry (removed while connected) is served
    // as a tenant without slots: nothing about anyone else leaks.
    let tenant = state.registry.tenant(ctx.tenant());
    if crate::calls::crypto::serves(&request) {
        return crate::calls::crypto::handle(state, ctx, request);
    }
    let result = match request {
        Request::GetSlotList { token_present } => Ok(slot_list(tenant, token_present)),
        Request::GetSlotInfo { slot } => {
            with_slot(tenant, slot).map(|s| ResponseBody::SlotInfo(token::slot_info(&s)))
        }
        Request::GetTokenInfo { slot } => token_info(state, ctx, slot),
        Request::GetMechanismList { slot } => with_token(tenant, slot).map(|s| {
            ResponseBody::MechanismList(
                s.mechanisms()
                    .iter()
                    .map(|m| MechanismType(m.mechanism))
                    .collect(),
            )
        }),
        Request::GetMechanismInfo { slot, mechanism } => with_token(tenant, slot).and_then(|s| {
            match mechanisms::find(s.mechanisms(), mechanism.0) {
                Some(m) => Ok(ResponseBody::MechanismInfo(MechanismInfo {
                    min_key_size: m.min_key_size,
                    max_key_size: m.max_key_size,
                    flags: m.flags,
                })),
                None => Err(Ckr(CKR_MECHANISM_INVALID)),
            }
        }),
        Request::InitToken {
            slot,
            so_pin,
            label,
        } => login::init_token(state, ctx, slot, &so_pin, &label),
        Request::InitPin { session, pin } => login::init_pin(state, ctx, session, &pin),
        Request::SetPin {
            session,
            old_pin,
            new_pin,
        } => login::set_pin(state, ctx, session, &old_pin, &new_pin),
        Request::OpenSession { slot, flags } => session::open(state, ctx, slot, flags),
        Request::CloseSession { session } => session::close(state, ctx, session),
        Request::CloseAllSessions { slot } => session::close_all(state, ctx, slot),
        Request::GetSessionInfo { session } => session::info(state, ctx, session),
        Request::SessionCancel { session, flags } => session::cancel(state, ctx, session, flags),
        Request::Login {
            session,
            user_type,
            pin,
        }
        | Request::LoginUser {
            session,
            user_type,
            pin,
            ..
        } => login::login(state, ctx, session, user_type, &pin),
        Request::Logout { session } => login::logout(state, ctx, session),
        Request::Finalize => Ok(session::finalize(state, ctx)),
        Request::CreateObject { session, template } => {
            objects::create(state, ctx, session, &template)
        }
        Request::CopyObject {
            session,
            object,
            template,
        } => objects::copy(state, ctx, session, object, &template),
        Request::DestroyObject { session, object } => objects::destroy(state, ctx, session, object),
        Request::GetObjectSize { session, object } => objects::size(state, ctx, session, object),
        Request::GetAttributeValue {
            session,
            object,
            types,
        } => objects::get(state, ctx, session, object, &types),
        Request::SetAttributeValue {
            session,
            object,
            template,
        } => objects::set(state, ctx, session, object, &template),
        Request::FindObjectsInit { session, template } => {
            find::init(state, ctx, session, &template)
        }
        Request::FindObjects { session, max_count } => find::next(state, ctx, session, max_count),
        Request::FindObjectsFinal { session } => find::finish(state, ctx, session),
        // C_GetOperationState / C_SetOperationState: allowed not to be
        // supported; the mechanisms issue serves the rest.
        _ => Err(Ckr(CKR_FUNCTION_NOT_SUPPORTED)),
    };
    match result {
        Ok(body) => Response::ok(body),
        Err(Ckr(rv)) => error(rv),
    }
}

/// `C_GetTokenInfo` (5.4.4): the partition's state, this application's sessions.
fn token_info(state: &ServerState, ctx: &ClientContext, slot: SlotId) -> CkResult<ResponseBody> {
    let tenant = state.registry.tenant(ctx.tenant());
    let s = with_token(tenant, slot)?;
    let driver = state.driver(&s)?;
    let (all, rw) = state.sessions.counts(&ctx.app_key(), slot);
    Ok(ResponseBody::TokenInfo(token::token_info(
        &s,
        &driver.token_state(),
        SessionCounts { all, rw },
        OffsetDateTime::now_utc(),
    )))
}

/// `C_GetSlotList` (5.4.2): the tenant's slot ids, ascending.
fn slot_list(tenant: Option<Arc<Tenant>>, token_present: bool) -> ResponseBody {
    let slots = tenant
        .iter()
        .flat_map(|t| t.slots())
        .filter(|s| !token_present || s.token_present())
        .map(|s| s.id)
        .collect();
    ResponseBody::SlotList(slots)
}

fn with_slot<T: Borrow<Tenant>>(tenant: Option<T>, id: SlotId) -> CkResult<Slot> {
    tenant
        .and_then(|t| t.borrow().slot(id).cloned())
        .ok_or(Ckr(CKR_SLOT_ID_INVALID))
}

/// Like [`with_slot`], for calls that need the token in the slot: a
/// suspended (or unavailable) partition answers `CKR_TOKEN_NOT_PRESENT`.
pub(crate) fn with_token<T: Borrow<Tenant>>(tenant: Option<T>, id: SlotId) -> CkResult<Slot> {
    let slot = with_slot(tenant, id)?;
    if slot.token_present() {
        Ok(slot)
    } else {
        Err(Ckr(CKR_TOKEN_NOT_PRESENT))
    }
}

/// A session of the caller's application, with its slot and driver.
#[derive(Debug)]
pub(crate) struct Bound<'a> {
    pub key: AppKey,
    pub view: SessionView,
    pub driver: Arc<dyn PartitionDriver>,
    /// The server state the session belongs to.
    pub state: PhantomData<&'a ServerState>,
    /// The slot's mechanism table.
    pub mechanisms: &'static [mechanisms::MechanismEntry],
    /// The partition's secure-template rules.
    pub secure_templates: SecureTemplates,
    /// The partition (the wrap ledger's records are its own).
    pub partition: PartitionName,
}

impl Bound<'_> {
    /// Logged in as the user with a PIN that must be changed first.
    pub fn pin_expired(&self) -> bool {
        self.view.login == Some(UserKind::User) && self.driver.token_state().user_pin.to_be_changed
    }

    /// `CKR_PIN_EXPIRED` for calls not allowed before the PIN is changed.
    pub fn require_fresh_pin(&self) -> CkResult<()> {
        if self.pin_expired() {
            Err(Ckr(CKR_PIN_EXPIRED))
        } else {
            Ok(())
        }
    }

    pub fn object_context(&self) -> ObjectContext {
        ObjectContext {
            app: self.view.app,
            session: self.view.id,
            rw: self.view.rw,
            login: self.view.login,
            pin_expired: self.pin_expired(),
        }
    }
}

/// Resolves a session handle of the caller's application.
pub(crate) fn bind<'a>(
    state: &'a ServerState,
    ctx: &ClientContext,
    handle: SessionHandle,
) -> CkResult<Bound<'a>> {
    let key = ctx.app_key();
    let view = state.sessions.view(&key, handle)?;
    let slot = state
        .registry
        .tenant(ctx.tenant())
        .and_then(|t| t.slot(view.slot).cloned())
        .ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
    // A suspended partition: the session's token is gone for now (the
    // application may still close the session; after a resume it carries
    // on, logged out).
    if !slot.token_present() {
        return Err(Ckr(CKR_DEVICE_REMOVED));
    }
    let driver = state.driver(&slot)?;
    Ok(Bound {
        key,
        view,
        driver,
        state: PhantomData,
        mechanisms: slot.mechanisms(),
        secure_templates: slot.secure_templates,
        partition: slot.partition.clone(),
    })
}

fn error(rv: CK_RV) -> Response {
    Response::error(rv)
}

#[cfg(test)]
mod tests {
    use cryptoki_sys::{
        CKF_TOKEN_INITIALIZED, CKF_TOKEN_PRESENT, CKM_AES_GCM, CKM_MD5, CKM_SHA256,
    };
    use hsmlink_protocol::{Rv, Secret, SessionHandle, TokenInfo};

    use super::*;
    use crate::testing::{Fixture, ctx};

    fn ask(tenant: &str, request: Request) -> Response {
        Fixture::new().ask(&ctx(tenant, 7), request)
    }

    fn rv(value: CK_RV) -> Rv {
        Rv(value)
    }

    #[test]
    fn slot_list_is_the_tenants_own() {
        for token_present in [false, true] {
            let r = ask("demo", Request::GetSlotList { token_present });
            assert_eq!(
                r,
                Response::ok(ResponseBody::SlotList(vec![SlotId(0), SlotId(3)]))
            );
            let r = ask("acme", Request::GetSlotList { token_present });
            assert_eq!(
                r,
                Response::ok(ResponseBody::SlotList(vec![SlotId(0), SlotId(7)]))
            );
        }
    }

    #[test]
    fn a_tenant_cannot_see_another_tenants_slots() {
        for request in [
            Request::GetSlotInfo { slot: SlotId(7) },
            Request::GetTokenInfo { slot: SlotId(7) },
            Request::GetMechanismList { slot: SlotId(7) },
            Request::GetMechanismInfo {
                slot: SlotId(7),
                mechanism: MechanismType(CKM_SHA256),
            },
        ] {
            assert_eq!(ask("demo", request.clone()), error(CKR_SLOT_ID_INVALID));
            assert_eq!(ask("acme", request).rv, Rv::OK);
        }
        assert_eq!(
            ask("acme", Request::GetSlotInfo { slot: SlotId(3) }),
            error(CKR_SLOT_ID_INVALID)
        );
    }

    #[test]
    fn an_unknown_tenant_sees_nothing() {
        let r = ask(
            "ghost",
            Request::GetSlotList {
                token_present: false,
            },
        );
        assert_eq!(r, Response::ok(ResponseBody::SlotList(vec![])));
        assert_eq!(
            ask("ghost", Request::GetTokenInfo { slot: SlotId(0) }),
            error(CKR_SLOT_ID_INVALID)
        );
    }

    #[test]
    fn invalid_slot() {
        for slot in [1, 2, 4, u64::MAX] {
            let r = ask("demo", Request::GetSlotInfo { slot: SlotId(slot) });
            assert_eq!(r.rv, rv(CKR_SLOT_ID_INVALID), "{slot}");
            assert_eq!(r.body, ResponseBody::Empty);
        }
    }

    #[test]
    fn slot_info() {
        let r = ask("demo", Request::GetSlotInfo { slot: SlotId(3) });
        let ResponseBody::SlotInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(info.description, "hsmlink slot 3 (demo-p3)");
        assert_eq!(info.manufacturer_id, "hsmlink");
        assert_eq!(info.flags, CKF_TOKEN_PRESENT);
        assert_eq!(
            (info.hardware_version.major, info.hardware_version.minor),
            (1, 0)
        );
    }

    #[test]
    fn a_fresh_token_is_not_initialised() {
        let r = ask("demo", Request::GetTokenInfo { slot: SlotId(0) });
        let ResponseBody::TokenInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(info.label, "");
        assert_eq!(info.model, "soft");
        assert_eq!(info.serial_number, "9f3c2a7e51d04b86");
        assert_eq!(info.flags & CKF_TOKEN_INITIALIZED, 0);
        assert_eq!((info.min_pin_len, info.max_pin_len), (4, 128));
        assert_eq!(info.total_private_memory, TokenInfo::UNAVAILABLE);
        assert_eq!(info.utc_time.len(), 16);
    }

    #[test]
    fn mechanisms() {
        let r = ask("demo", Request::GetMechanismList { slot: SlotId(0) });
        let ResponseBody::MechanismList(list) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(list.len(), mechanisms::SOFT_MECHANISMS.len());
        assert!(list.contains(&MechanismType(CKM_AES_GCM)));

        let r = ask(
            "demo",
            Request::GetMechanismInfo {
                slot: SlotId(0),
                mechanism: MechanismType(CKM_AES_GCM),
            },
        );
        let ResponseBody::MechanismInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!((info.min_key_size, info.max_key_size), (16, 32));
    }

    #[test]
    fn invalid_mechanism() {
        for mechanism in [CKM_MD5, 0xdead_beef, u64::MAX] {
            let r = ask(
                "demo",
                Request::GetMechanismInfo {
                    slot: SlotId(0),
                    mechanism: MechanismType(mechanism),
                },
            );
            assert_eq!(r, error(CKR_MECHANISM_INVALID), "{mechanism:#x}");
        }
    }

    #[test]
    fn not_yet_served_requests() {
        for request in [
            Request::GetOperationState {
                session: SessionHandle(1),
                out: hsmlink_protocol::OutputSpec::LengthQuery,
            },
            Request::SetOperationState {
                session: SessionHandle(1),
                state: Secret::from_slice(b"x"),
                encryption_key: hsmlink_protocol::ObjectHandle(0),
                authentication_key: hsmlink_protocol::ObjectHandle(0),
            },
        ] {
            assert_eq!(ask("demo", request), error(CKR_FUNCTION_NOT_SUPPORTED));
        }
    }

    #[test]
    fn finalize_is_ok() {
        assert_eq!(
            ask("demo", Request::Finalize),
            Response::ok(ResponseBody::Empty)
        );
    }
}
