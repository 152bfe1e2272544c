//! Sessions and login state, generic above every driver (PKCS#11 3.0
//! section 5.6).
//!
//! Sessions belong to an application instance of a tenant (the pair from the
//! connection's certificate and hello), not to a connection: any pooled
//! connection of the application can carry any of its sessions. Session
//! handles count per application. Login state is per application and token:
//! logging in on one session logs in all of the application's sessions on
//! that token.
//!
//! The transport counts each application's connections; when the count has
//! stayed at zero for the grace period the application is gone, and its
//! sessions close ([`Sessions::reap`]).
//!
//! After `fork()` two processes may share one application instance: a child
//! that goes on with its parent's module state connects with the same
//! instance and its own process id. Connections are therefore counted per
//! process, and `C_Finalize` from one process closes the sessions only when
//! no other process of the application is connected; otherwise that process
//! just leaves ([`Sessions::finalize`]). A parent that exits while its child
//! lives is simply one process fewer.
//!
//! Login state has two limits ([`LoginLimits`], `[security]
//! login_idle_timeout_s` and `login_max_lifetime_s`): it ends after the idle
//! limit without a call on any of the application's sessions of that token,
//! and after the absolute limit since the login whatever the activity. The
//! limits are checked whenever a call resolves a session ([`Sessions::view`])
//! and periodically ([`Sessions::expire_logins`]); an expired login is as if
//! the application had logged out, except that its active operations (but
//! digests) answer `CKR_USER_NOT_LOGGED_IN` once and end. Each expiry is
//! queued as an [`Expiry`] for the audit log ([`Sessions::take_expired`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cryptoki_sys::{
    CKR_OPERATION_ACTIVE, CKR_OPERATION_NOT_INITIALIZED, CKR_SESSION_HANDLE_INVALID,
    CKR_SESSION_READ_WRITE_SO_EXISTS,
};
use hsmlink_protocol::{AppInstance, ObjectHandle, SessionHandle, SlotId};

use zeroize::Zeroizing;

use crate::driver::{OpKind, Operation, OwnerId, Step, UserKind};
use crate::error::{CkResult, Ckr};
use crate::names::TenantName;
use cryptoki_sys::CKR_USER_NOT_LOGGED_IN;

/// An application instance of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppKey {
    pub tenant: TenantName,
    pub app: AppInstance,
}

/// What a call needs to know of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub id: OwnerId,
    pub app: OwnerId,
    pub slot: SlotId,
    pub rw: bool,
    /// Who is logged in for the application on the session's token.
    pub login: Option<UserKind>,
}

/// How long login state lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Ends after this long without a call on the token.
    pub idle: Duration,
    /// Ends this long after the login, whatever the activity.
    pub lifetime: Duration,
}

impl LoginLimits {
    /// 2 hours idle, 8 hours in total.
    pub const DEFAULT: Self = Self {
        idle: Duration::from_secs(7200),
        lifetime: Duration::from_secs(28_800),
    };
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why login state ended on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    Idle,
    Absolute,
}

impl ExpiryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Absolute => "absolute",
        }
    }
}

/// A login that expired, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub key: AppKey,
    pub slot: SlotId,
    pub who: UserKind,
    pub reason: ExpiryReason,
    /// The limit that was reached.
    pub limit: Duration,
    /// How long the login lasted.
    pub age: Duration,
}

/// What the audit log needs of a session before a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    pub mechanism: u64,
    pub key: Option<ObjectHandle>,
}

/// A session that closed, for its driver to drop its session objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub tenant: TenantName,
    pub slot: SlotId,
    pub session: OwnerId,
}

#[derive(Debug, Default)]
pub struct Sessions {
    apps: Mutex<HashMap<AppKey, App>>,
    next_owner: AtomicU64,
    limits: LoginLimits,
    /// Logins that expired, not yet taken by the audit log.
    expired: Mutex<Vec<Expiry>>,
}

/// Login state of an application on a token.
#[derive(Clone, Copy, Debug)]
struct Login {
    who: UserKind,
    since: Instant,
    last_use: Instant,
}

#[derive(Debug)]
struct App {
    id: OwnerId,
    sessions: BTreeMap<u64, Session>,
    next_handle: u64,
    logins: HashMap<SlotId, Login>,
    /// Open connections per process id (from the hello).
    connections: HashMap<u32, usize>,
    /// When the last connection went away.
    idle_since: Option<Instant>,
}

#[derive(Debug)]
struct Session {
    id: OwnerId,
    slot: SlotId,
    rw: bool,
    find: Option<FindState>,
    /// The active cryptographic operations, one per kind. Each sits behind
    /// its own lock so that the work runs without holding the sessions'.
    ops: BTreeMap<OpKind, SharedOp>,
    /// Mechanism and key of each operation started (for the audit log).
    op_info: BTreeMap<OpKind, OpInfo>,
    /// Operations ended by a login expiry: their next call answers
    /// `CKR_USER_NOT_LOGGED_IN`.
    expired_ops: Vec<OpKind>,
}

/// An active operation, shared between the session and the call using it.
pub type SharedOp = Arc<Mutex<ActiveOp>>;

/// An active cryptographic operation of a session and its lifecycle state.
#[derive(Debug)]
pub struct ActiveOp {
    pub operation: Box<dyn Operation>,
    /// `CKA_ALWAYS_AUTHENTICATE` key, no `C_Login(CKU_CONTEXT_SPECIFIC)` yet:
    /// every call answers `CKR_USER_NOT_LOGGED_IN` and keeps the operation.
    pub needs_context_login: bool,
    /// An output already computed that did not fit the caller's buffer
    /// (`CKR_BUFFER_TOO_SMALL` for an output whose length was only bounded):
    /// the next call of the same step returns it instead of working again.
    pub pending: Option<(Step, Zeroizing<Vec<u8>>)>,
    /// Mechanism and key, for the audit log.
    pub info: Option<OpInfo>,
}

impl ActiveOp {
    pub fn new(operation: Box<dyn Operation>, needs_context_login: bool) -> Self {
        Self {
            operation,
            needs_context_login,
            pending: None,
            info: None,
        }
    }

    /// The operation's mechanism and key, for the audit log.
    pub fn with_info(mut self, info: OpInfo) -> Self {
        self.info = Some(info);
        self
    }
}

/// Locks an operation (a panic elsewhere does not make it unusable).
pub fn lock_op(op: &SharedOp) -> MutexGuard<'_, ActiveOp> {
    op.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An active `C_FindObjects` operation: the matches, taken at
/// `C_FindObjectsInit`, and how many were returned.
#[derive(Debug)]
struct FindState {
    handles: Vec<ObjectHandle>,
    next: usize,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// No sessions yet, login state lasting `limits`.
    pub fn with_limits(limits: LoginLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// The logins that expired since the last call (for the audit log).
    pub fn take_expired(&self) -> Vec<Expiry> {
        let mut expired = self.expired.lock().unwrap_or_else(PoisonError::into_inner);
        if expired.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *expired)
        }
    }

    /// Ends every login past a limit at `now` (a periodic sweep, so that
    /// the audit log records expiries of applications that went quiet).
    pub fn expire_logins(&self, now: Instant) {
        let mut apps = self.lock();
        let mut expired = Vec::new();
        for (key, app) in apps.iter_mut() {
            let slots: Vec<SlotId> = app.logins.keys().copied().collect();
            for slot in slots {
                if let Some(e) = self.check_login(key, app, slot, now, false) {
                    expired.push(e);
                }
            }
        }
        drop(apps);
        self.push_expired(expired);
    }

    fn push_expired(&self, mut list: Vec<Expiry>) {
        if !list.is_empty() {
            self.expired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(&mut list);
        }
    }

    /// Ends the application's login on `slot` if a limit is reached at
    /// `now`; otherwise, if `touch`, counts `now` as activity.
    fn check_login(
        &self,
        key: &AppKey,
        app: &mut App,
        slot: SlotId,
        now: Instant,
        touch: bool,
    ) -> Option<Expiry> {
        let login = app.logins.get_mut(&slot)?;
        let age = now.saturating_duration_since(login.since);
        let idle = now.saturating_duration_since(login.last_use);
        let (reason, limit) = if age >= self.limits.lifetime {
            (ExpiryReason::Absolute, self.limits.lifetime)
        } else if idle >= self.limits.idle {
            (ExpiryReason::Idle, self.limits.idle)
        } else {
            if touch {
                login.last_use = now;
            }
            return None;
        };
        let who = login.who;
        app.logins.remove(&slot);
        for session in app.sessions.values_mut().filter(|s| s.slot == slot) {
            let kinds: Vec<OpKind> = session
                .ops
                .keys()
                .copied()
                .filter(|k| *k != OpKind::Digest)
                .collect();
            for kind in kinds {
                session.ops.remove(&kind);
                session.expired_ops.push(kind);
            }
        }
        Some(Expiry {
            key: key.clone(),
            slot,
            who,
            reason,
            limit,
            age,
        })
    }

    /// The session's slot and, if an operation of `kind` is active, its
    /// mechanism and key; changes nothing (for the audit log).
    pub fn peek(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        kind: Option<OpKind>,
    ) -> Option<(SlotId, Option<OpInfo>)> {
        let apps = self.lock();
        let session = apps.get(key)?.sessions.get(&handle.0)?;
        let info = kind
            .filter(|k| session.ops.contains_key(k))
            .and_then(|k| session.op_info.get(&k).copied());
        Some((session.slot, info))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AppKey, App>> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn owner(&self) -> OwnerId {
        OwnerId(self.next_owner.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn app<'a>(&self, apps: &'a mut HashMap<AppKey, App>, key: &AppKey) -> &'a mut App {
        apps.entry(key.clone()).or_insert_with(|| App {
            id: self.owner(),
            sessions: BTreeMap::new(),
            next_handle: 1,
            logins: HashMap::new(),
            connections: HashMap::new(),
            idle_since: None,
        })
    }

    /// `C_OpenSession` (5.6.1) once the slot and token are checked.
    pub fn open(&self, key: &AppKey, slot: SlotId, rw: bool) -> CkResult<SessionHandle> {
        let id = self.owner();
        let mut apps = self.lock();
        let app = self.app(&mut apps, key);
        if !rw && app.logins.get(&slot).map(|l| l.who) == Some(UserKind::So) {
            return Err(Ckr(CKR_SESSION_READ_WRITE_SO_EXISTS));
        }
        let handle = app.next_handle;
        app.next_handle += 1;
        app.sessions.insert(
            handle,
            Session {
                id,
                slot,
                rw,
                find: None,
                ops: BTreeMap::new(),
                op_info: BTreeMap::new(),
                expired_ops: Vec::new(),
            },
        );
        Ok(SessionHandle(handle))
    }

    /// The session for a call: the call counts as activity on the token's
    /// login state, which may have expired (see the module documentation).
    pub fn view(&self, key: &AppKey, handle: SessionHandle) -> CkResult<SessionView> {
        let mut apps = self.lock();
        let app = apps.get_mut(key).ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
        let slot = app
            .sessions
            .get(&handle.0)
            .ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?
            .slot;
        let expired = self.check_login(key, app, slot, Instant::now(), true);
        let session = app
            .sessions
            .get(&handle.0)
            .ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
        let view = SessionView {
            id: session.id,
            app: app.id,
            slot: session.slot,
            rw: session.rw,
            login: app.logins.get(&session.slot).map(|l| l.who),
        };
        drop(apps);
        self.push_expired(expired.into_iter().collect());
        Ok(view)
    }

    /// `C_CloseSession` (5.6.2). Closing the application's last session on
    /// a token logs it out of the token.
    pub fn close(&self, key: &AppKey, handle: SessionHandle) -> CkResult<Closed> {
        let mut apps = self.lock();
        let app = apps.get_mut(key).ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
        let session = app
            .sessions
            .remove(&handle.0)
            .ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
        if !app.sessions.values().any(|s| s.slot == session.slot) {
            app.logins.remove(&session.slot);
        }
        Ok(Closed {
            tenant: key.tenant.clone(),
            slot: session.slot,
            session: session.id,
        })
    }

    /// `C_CloseAllSessions` (5.6.3): the application's sessions on `slot`.
    pub fn close_all(&self, key: &AppKey, slot: SlotId) -> Vec<Closed> {
        let mut apps = self.lock();
        let Some(app) = apps.get_mut(key) else {
            return Vec::new();
        };
        app.logins.remove(&slot);
        let mut closed = Vec::new();
        app.sessions.retain(|_, s| {
            if s.slot == slot {
                closed.push(Closed {
                    tenant: key.tenant.clone(),
                    slot,
                    session: s.id,
                });
                false
            } else {
                true
            }
        });
        closed
    }

    /// `C_Finalize` from process `pid`: every session of the application
    /// closes and its login state ends — unless another process of the
    /// application (a forked parent or child) is still connected, in which
    /// case `pid` just leaves and nothing closes (`None`). Connections stay
    /// counted.
    pub fn finalize(&self, key: &AppKey, pid: u32) -> Option<Vec<Closed>> {
        let mut apps = self.lock();
        let Some(app) = apps.get_mut(key) else {
            return Some(Vec::new());
        };
        if app
            .connections
            .iter()
            .any(|(&other, &n)| other != pid && n > 0)
        {
            return None;
        }
        app.logins.clear();
        let closed = std::mem::take(&mut app.sessions)
            .into_values()
            .map(|s| Closed {
                tenant: key.tenant.clone(),
                slot: s.slot,
                session: s.id,
            })
            .collect();
        Some(closed)
    }

    pub fn set_login(&self, key: &AppKey, slot: SlotId, who: Option<UserKind>) {
        let mut apps = self.lock();
        let app = self.app(&mut apps, key);
        match who {
            Some(who) => {
                let now = Instant::now();
                app.logins.insert(
                    slot,
                    Login {
                        who,
                        since: now,
                        last_use: now,
                    },
                );
                for session in app.sessions.values_mut().filter(|s| s.slot == slot) {
                    session.expired_ops.clear();
                }
            }
            None => {
                app.logins.remove(&slot);
            }
        };
    }

    /// The application's (sessions, read/write sessions) on `slot`.
    pub fn counts(&self, key: &AppKey, slot: SlotId) -> (u64, u64) {
        let apps = self.lock();
        let Some(app) = apps.get(key) else {
            return (0, 0);
        };
        app.sessions
            .values()
            .filter(|s| s.slot == slot)
            .fold((0, 0), |(all, rw), s| (all + 1, rw + u64::from(s.rw)))
    }

    /// Whether any application of `tenant` has a session on `slot`.
    pub fn any_on_slot(&self, tenant: &TenantName, slot: SlotId) -> bool {
        self.lock()
            .iter()
            .filter(|(k, _)| &k.tenant == tenant)
            .any(|(_, app)| app.sessions.values().any(|s| s.slot == slot))
    }

    /// The partition behind `slot` is gone (terminated): every session of
    /// every application of `tenant` on it closes and its login ends, so
    /// that nothing carries over to a partition later shown in that slot.
    pub fn close_slot(&self, tenant: &TenantName, slot: SlotId) -> Vec<Closed> {
        let mut closed = Vec::new();
        for (key, app) in self.lock().iter_mut().filter(|(k, _)| &k.tenant == tenant) {
            app.logins.remove(&slot);
            app.sessions.retain(|_, s| {
                if s.slot == slot {
                    closed.push(Closed {
                        tenant: key.tenant.clone(),
                        slot,
                        session: s.id,
                    });
                    false
                } else {
                    true
                }
            });
        }
        closed
    }

    /// Every application of `tenant` is logged out of `slot`.
    pub fn logout_everywhere(&self, tenant: &TenantName, slot: SlotId) {
        for (_, app) in self.lock().iter_mut().filter(|(k, _)| &k.tenant == tenant) {
            app.logins.remove(&slot);
        }
    }

    /// Whether the application has a read-only session on `slot`.
    pub fn has_read_only(&self, key: &AppKey, slot: SlotId) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|app| app.sessions.values().any(|s| s.slot == slot && !s.rw))
    }

    /// Starts a find operation with its matches.
    pub fn find_init(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        handles: Vec<ObjectHandle>,
    ) -> CkResult<()> {
        self.with_session(key, handle, |s| {
            if s.find.is_some() {
                return Err(Ckr(CKR_OPERATION_ACTIVE));
            }
            s.find = Some(FindState { handles, next: 0 });
            Ok(())
        })
    }

    /// Is a find operation active on the session?
    pub fn find_active(&self, key: &AppKey, handle: SessionHandle) -> CkResult<bool> {
        self.with_session(key, handle, |s| Ok(s.find.is_some()))
    }

    /// The next `max` matches.
    pub fn find_next(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        max: u64,
    ) -> CkResult<Vec<ObjectHandle>> {
        self.with_session(key, handle, |s| {
            let find = s.find.as_mut().ok_or(Ckr(CKR_OPERATION_NOT_INITIALIZED))?;
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            let end = find.next.saturating_add(max).min(find.handles.len());
            let out = find.handles[find.next..end].to_vec();
            find.next = end;
            Ok(out)
        })
    }

    pub fn find_final(&self, key: &AppKey, handle: SessionHandle) -> CkResult<()> {
        self.with_session(key, handle, |s| {
            s.find
                .take()
                .map(|_| ())
                .ok_or(Ckr(CKR_OPERATION_NOT_INITIALIZED))
        })
    }

    /// `C_SessionCancel`: ends the session's active operations of the
    /// kinds in `kinds`, and the find operation if `find`.
    pub fn cancel(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        kinds: &[OpKind],
        find: bool,
    ) -> CkResult<()> {
        self.with_session(key, handle, |s| {
            if find {
                s.find = None;
            }
            for kind in kinds {
                s.ops.remove(kind);
                s.expired_ops.retain(|k| k != kind);
            }
            Ok(())
        })
    }

    /// Whether an operation of `kind` is active on the session.
    pub fn op_active(&self, key: &AppKey, handle: SessionHandle, kind: OpKind) -> CkResult<bool> {
        self.with_session(key, handle, |s| Ok(s.ops.contains_key(&kind)))
    }

    /// Makes `op` the session's operation of `kind` (`CKR_OPERATION_ACTIVE`
    /// if there is one).
    pub fn op_start(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        kind: OpKind,
        op: ActiveOp,
    ) -> CkResult<()> {
        self.with_session(key, handle, |s| {
            if s.ops.contains_key(&kind) {
                return Err(Ckr(CKR_OPERATION_ACTIVE));
            }
            s.expired_ops.retain(|k| *k != kind);
            match op.info {
                Some(info) => s.op_info.insert(kind, info),
                None => s.op_info.remove(&kind),
            };
            s.ops.insert(kind, Arc::new(Mutex::new(op)));
            Ok(())
        })
    }

    /// The session's operation of `kind` (`CKR_OPERATION_NOT_INITIALIZED`
    /// if none; `CKR_USER_NOT_LOGGED_IN`, once, for one a login expiry ended).
    pub fn op_get(&self, key: &AppKey, handle: SessionHandle, kind: OpKind) -> CkResult<SharedOp> {
        self.with_session(key, handle, |s| {
            if let Some(i) = s.expired_ops.iter().position(|k| *k == kind) {
                s.expired_ops.swap_remove(i);
                return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
            }
            s.ops
                .get(&kind)
                .cloned()
                .ok_or(Ckr(CKR_OPERATION_NOT_INITIALIZED))
        })
    }

    /// Ends the operation `op` of `kind`, if it is still the active one.
    pub fn op_end(&self, key: &AppKey, handle: SessionHandle, kind: OpKind, op: &SharedOp) {
        let _ = self.with_session(key, handle, |s| {
            if s.ops
                .get(&kind)
                .is_some_and(|active| Arc::ptr_eq(active, op))
            {
                s.ops.remove(&kind);
            }
            Ok(())
        });
    }

    /// The session's operations waiting for a context-specific login.
    pub fn ops_waiting_for_login(
        &self,
        key: &AppKey,
        handle: SessionHandle,
    ) -> CkResult<Vec<SharedOp>> {
        // Take the operations under the sessions' lock, look into them
        // outside it: one may be busy with a long computation.
        let ops: Vec<SharedOp> =
            self.with_session(key, handle, |s| Ok(s.ops.values().cloned().collect()))?;
        Ok(ops
            .into_iter()
            .filter(|op| lock_op(op).needs_context_login)
            .collect())
    }

    fn with_session<T>(
        &self,
        key: &AppKey,
        handle: SessionHandle,
        f: impl FnOnce(&mut Session) -> CkResult<T>,
    ) -> CkResult<T> {
        let mut apps = self.lock();
        let session = apps
            .get_mut(key)
            .and_then(|app| app.sessions.get_mut(&handle.0))
            .ok_or(Ckr(CKR_SESSION_HANDLE_INVALID))?;
        f(session)
    }

    /// A connection of the application, from process `pid`, is up.
    pub fn connection_opened(&self, key: &AppKey, pid: u32) {
        let mut apps = self.lock();
        let app = self.app(&mut apps, key);
        *app.connections.entry(pid).or_insert(0) += 1;
        app.idle_since = None;
    }

    /// A connection of the application, from process `pid`, is gone.
    pub fn connection_closed(&self, key: &AppKey, pid: u32, now: Instant) {
        let mut apps = self.lock();
        if let Some(app) = apps.get_mut(key) {
            if let Some(n) = app.connections.get_mut(&pid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    app.connections.remove(&pid);
                }
            }
            if app.connections.is_empty() {
                app.idle_since = Some(now);
            }
        }
    }

    /// Forgets the applications without a connection for `grace` or more:
    /// their sessions close and their login state ends.
    pub fn reap(&self, now: Instant, grace: Duration) -> Vec<Closed> {
        let mut apps = self.lock();
        let mut closed = Vec::new();
        apps.retain(|key, app| {
            let gone = app.connections.is_empty()
                && app
                    .idle_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace);
            if gone {
                closed.extend(app.sessions.values().map(|s| Closed {
                    tenant: key.tenant.clone(),
                    slot: s.slot,
                    session: s.id,
                }));
            }
            !gone
        });
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: u8) -> AppKey {
        AppKey {
            tenant: TenantName::parse("demo").unwrap(),
            app: AppInstance([app; 16]),
        }
    }

    #[test]
    fn handles_are_per_application() {
        let s = Sessions::new();
        let a = s.open(&key(1), SlotId(0), true).unwrap();
        let b = s.open(&key(2), SlotId(0), true).unwrap();
        assert_eq!(a, b);
        assert!(s.view(&key(1), a).is_ok());
        s.close(&key(1), a).unwrap();
        assert!(s.view(&key(1), a).is_err());
        assert!(s.view(&key(2), b).is_ok());
    }

    #[test]
    fn closing_a_slot_closes_every_application_s_sessions_there_only() {
        let s = Sessions::new();
        let other = AppKey {
            tenant: TenantName::parse("other").unwrap(),
            app: AppInstance([9; 16]),
        };
        let a0 = s.open(&key(1), SlotId(0), true).unwrap();
        let a1 = s.open(&key(1), SlotId(1), true).unwrap();
        let b0 = s.open(&key(2), SlotId(0), false).unwrap();
        let o0 = s.open(&other, SlotId(0), true).unwrap();
        s.set_login(&key(1), SlotId(0), Some(UserKind::User));
        let closed = s.close_slot(&key(1).tenant, SlotId(0));
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|c| c.slot == SlotId(0)));
        assert!(s.view(&key(1), a0).is_err());
        assert!(s.view(&key(2), b0).is_err());
        assert_eq!(s.view(&key(1), a1).unwrap().login, None);
        assert!(s.view(&other, o0).is_ok(), "another tenant's slot 0");
    }

    #[test]
    fn idle_applications_are_reaped_after_the_grace_period() {
        let s = Sessions::new();
        let k = key(1);
        s.connection_opened(&k, 1);
        let h = s.open(&k, SlotId(0), true).unwrap();
        s.set_login(&k, SlotId(0), Some(UserKind::User));
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        assert!(s.reap(t0 + grace * 2, grace).is_empty(), "connected");
        s.connection_closed(&k, 1, t0);
        assert!(s.reap(t0 + grace / 2, grace).is_empty(), "within grace");
        // Back within the grace period: nothing is lost.
        s.connection_opened(&k, 1);
        assert!(s.reap(t0 + grace * 2, grace).is_empty());
        s.connection_closed(&k, 1, t0);
        let closed = s.reap(t0 + grace, grace);
        assert_eq!(closed.len(), 1);
        assert!(s.view(&k, h).is_err());
        assert_eq!(s.counts(&k, SlotId(0)), (0, 0));
    }

    #[test]
    fn a_forked_process_shares_the_sessions_until_the_last_one_finalizes() {
        let (parent, child) = (100, 101);
        let s = Sessions::new();
        let k = key(1);
        s.connection_opened(&k, parent);
        let h = s.open(&k, SlotId(0), true).unwrap();
        s.set_login(&k, SlotId(0), Some(UserKind::User));
        s.connection_opened(&k, child);
        // The child finalizes while the parent is connected: nothing closes.
        assert_eq!(s.finalize(&k, child), None);
        assert_eq!(s.view(&k, h).unwrap().login, Some(UserKind::User));
        // The parent exits without C_Finalize; the child goes on alone.
        s.connection_closed(&k, parent, Instant::now());
        let grace = Duration::from_secs(60);
        assert!(s.reap(Instant::now() + grace * 2, grace).is_empty());
        assert_eq!(s.view(&k, h).unwrap().login, Some(UserKind::User));
        // The last process to finalize closes everything.
        let closed = s.finalize(&k, child).expect("no other process");
        assert_eq!(closed.len(), 1);
        assert!(s.view(&k, h).is_err());
    }
}
