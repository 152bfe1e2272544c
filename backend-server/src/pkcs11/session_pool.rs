//! A bounded pool of read/write sessions on one device's token, logged in
//! as `CKU_USER` with the device PIN.
//!
//! Login on a PKCS#11 token is per application: once one session of the
//! server has logged in, every session of the server on that token is in
//! the user state, for as long as one of them stays open. The pool keeps
//! one session open for the life of the device, the *anchor*, which also
//! holds every session object the tenants create (a session object lives
//! as long as the device session that created it, so it is created in the
//! one session that is never closed but on failure).
//!
//! A client call checks a session out for the length of one call, or an
//! operation keeps it for the length of a multi-part operation
//! ([`DeviceSession`] returns it on drop). With every session checked out,
//! a call waits up to `session_wait_ms`, then fails with `CKR_DEVICE_MEMORY`
//! (the code every function may return when the token lacks the resources
//! for it; `CKR_SESSION_COUNT` belongs to `C_OpenSession`, which tenants'
//! sessions never reach on the device). A session whose call returned
//! `CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`, `CKR_DEVICE_ERROR`,
//! `CKR_DEVICE_REMOVED` or `CKR_TOKEN_NOT_PRESENT` is closed, never
//! returned to the pool; so is one whose operation may still be active.
//!
//! A device PIN the device refuses (`CKR_PIN_INCORRECT`, `CKR_PIN_LOCKED`)
//! is never tried again by this process: a wrong PIN in the configuration
//! must not lock the device's user out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use tracing::warn;
use zeroize::Zeroizing;

use super::device_metrics::DeviceMetrics;
use super::module::{Module, rv_name};
use crate::error::{CkResult, Ckr};

/// Whether a device session that returned `rv` must be closed.
pub fn kills_session(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_SESSION_HANDLE_INVALID
            | CKR_SESSION_CLOSED
            | CKR_DEVICE_ERROR
            | CKR_DEVICE_REMOVED
            | CKR_TOKEN_NOT_PRESENT
            | CKR_CRYPTOKI_NOT_INITIALIZED
    )
}

pub struct SessionPool {
    /// The device's name, for logs.
    device: String,
    module: Arc<Module>,
    slot: CK_SLOT_ID,
    pin: Zeroizing<Vec<u8>>,
    max: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
    anchor: Mutex<Option<CK_SESSION_HANDLE>>,
    /// Counts anchors: session objects made under an earlier anchor are gone.
    anchor_generation: AtomicU64,
    /// The device refused the PIN: no more logins.
    pin_refused: AtomicBool,
    /// Held by a login (see `open_logged_in_raw`).
    login: Mutex<()>,
    /// Calls, errors, latency, queue depth (`GET /metrics`).
    pub metrics: DeviceMetrics,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("device", &self.device)
            .field("slot", &self.slot)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<CK_SESSION_HANDLE>,
    /// Sessions open, idle or checked out (the anchor apart).
    open: usize,
}

impl SessionPool {
    pub fn new(
        device: &str,
        module: Arc<Module>,
        slot: CK_SLOT_ID,
        pin: Zeroizing<Vec<u8>>,
        max: usize,
        wait: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            device: device.to_owned(),
            module,
            slot,
            pin,
            max: max.max(1),
            wait,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
            anchor: Mutex::new(None),
            anchor_generation: AtomicU64::new(0),
            pin_refused: AtomicBool::new(false),
            login: Mutex::new(()),
            metrics: DeviceMetrics::default(),
        })
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session and makes sure the application is logged in. A
    /// refused login is `CKR_DEVICE_ERROR` (`CKR_DEVICE_MEMORY` if the
    /// device is out of sessions): the device PIN's troubles are the
    /// provider's, never a tenant's `CKR_PIN_*`.
    fn open_logged_in(&self) -> CkResult<CK_SESSION_HANDLE> {
        self.open_logged_in_raw().map_err(|Ckr(rv)| {
            Ckr(match rv {
                CKR_DEVICE_MEMORY | CKR_SESSION_COUNT => CKR_DEVICE_MEMORY,
                rv if kills_session(rv) => rv,
                _ => CKR_DEVICE_ERROR,
            })
        })
    }

    /// As [`Self::open_logged_in`], with the device's own code.
    fn open_logged_in_raw(&self) -> CkResult<CK_SESSION_HANDLE> {
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(Ckr(CKR_PIN_INCORRECT));
        }
        let session = self.module.open_session(self.slot)?;
        // Login is per application: once logged in, every new session is
        // in the user state. A C_Login then is not only useless: some
        // modules (SoftHSMv2) log the token out and in again inside it,
        // failing the other sessions' calls that need the token's key in
        // that instant. One login at a time, and only when needed.
        let _one_login = self.login.lock().unwrap_or_else(PoisonError::into_inner);
        if self.module.session_state(session) == Ok(CKS_RW_USER_FUNCTIONS) {
            return Ok(session);
        }
        match self.module.login(session, CKU_USER, &self.pin) {
            Ok(()) | Err(Ckr(CKR_USER_ALREADY_LOGGED_IN)) => Ok(session),
            Err(Ckr(rv)) => {
                let _ = self.module.close_session(session);
                if matches!(rv, CKR_PIN_INCORRECT | CKR_PIN_LOCKED | CKR_PIN_EXPIRED) {
                    self.pin_refused.store(true, Ordering::Relaxed);
                }
                warn!(
                    device = %self.device,
                    "the device refused the login: {}",
                    rv_name(rv)
                );
                Err(Ckr(rv))
            }
        }
    }

    /// Checks a session out, waiting up to the configured time for one.
    pub fn checkout(self: &Arc<Self>) -> CkResult<DeviceSession> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.state();
        let mut queued = false;
        let result = loop {
            if let Some(handle) = state.idle.pop() {
                break Ok(DeviceSession::new(self, handle));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                let opened = self.open_logged_in();
                if opened.is_err() {
                    self.state().open -= 1;
                    self.freed.notify_one();
                }
                state = self.state();
                break opened.map(|handle| DeviceSession::new(self, handle));
            }
            let now = Instant::now();
            if now >= deadline {
                warn!(device = %self.device, "no device session free within the wait");
                self.metrics.waited_out();
                break Err(Ckr(CKR_DEVICE_MEMORY));
            }
            if !queued {
                queued = true;
                self.metrics.waiting(true);
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(state);
        if queued {
            self.metrics.waiting(false);
        }
        result
    }

    /// Closes the idle sessions (a device that failed may have lost them;
    /// fresh ones are opened as needed).
    pub fn drain_idle(&self) {
        let idle = std::mem::take(&mut self.state().idle);
        let closed = idle.len();
        for handle in idle {
            let _ = self.module.close_session(handle);
        }
        self.state().open -= closed;
        self.freed.notify_all();
    }

    fn give_back(&self, handle: CK_SESSION_HANDLE, discard: bool) {
        if discard {
            let _ = self.module.close_session(handle);
            self.state().open -= 1;
        } else {
            self.state().idle.push(handle);
        }
        self.freed.notify_one();
    }

    /// The anchor's generation: a session object made under an older one
    /// is gone from the device.
    pub fn anchor_generation(&self) -> u64 {
        self.anchor_generation.load(Ordering::Relaxed)
    }

    /// Runs `f` in the anchor session (opened, and logged in, if needed),
    /// one caller at a time. Returns the generation the work was done in.
    pub fn with_anchor<T>(
        &self,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<(T, u64)> {
        let mut anchor = self.anchor.lock().unwrap_or_else(PoisonError::into_inner);
        let handle = match *anchor {
            Some(handle) => handle,
            None => {
                let handle = self.open_logged_in()?;
                self.anchor_generation.fetch_add(1, Ordering::Relaxed);
                *anchor = Some(handle);
                handle
            }
        };
        let generation = self.anchor_generation();
        match f(&self.module, handle) {
            Ok(v) => Ok((v, generation)),
            Err(Ckr(rv)) => {
                if kills_session(rv) {
                    warn!(
                        device = %self.device,
                        "the anchor session failed ({}): its session objects are gone",
                        rv_name(rv)
                    );
                    let _ = self.module.close_session(handle);
                    *anchor = None;
                }
                Err(Ckr(rv))
            }
        }
    }

    /// `C_Login(CKU_CONTEXT_SPECIFIC)` with the device PIN, for an operation
    /// just started with a `CKA_ALWAYS_AUTHENTICATE` key.
    pub fn context_login(&self, session: CK_SESSION_HANDLE) -> CkResult<()> {
        self.module.login(session, CKU_CONTEXT_SPECIFIC, &self.pin)
    }

    /// Opens the anchor: checks that the device takes the PIN, with the
    /// device's own code if not.
    pub fn start(&self) -> CkResult<()> {
        let mut anchor = self.anchor.lock().unwrap_or_else(PoisonError::into_inner);
        if anchor.is_none() {
            *anchor = Some(self.open_logged_in_raw()?);
            self.anchor_generation.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        let state = std::mem::take(&mut *self.state());
        for handle in state.idle {
            let _ = self.module.close_session(handle);
        }
        if let Some(handle) = self
            .anchor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = self.module.close_session(handle);
        }
    }
}

/// A device session checked out of the pool; back in it when dropped,
/// unless it must be closed.
#[derive(Debug)]
pub struct DeviceSession {
    pool: Arc<SessionPool>,
    handle: CK_SESSION_HANDLE,
    discard: bool,
}

impl DeviceSession {
    fn new(pool: &Arc<SessionPool>, handle: CK_SESSION_HANDLE) -> Self {
        Self {
            pool: pool.clone(),
            handle,
            discard: false,
        }
    }

    pub fn handle(&self) -> CK_SESSION_HANDLE {
        self.handle
    }

    pub fn module(&self) -> &Module {
        &self.pool.module
    }

    /// The session must be closed rather than reused.
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Passes `result` on, marking the session for closing if the error
    /// says the session or the device failed.
    pub fn check<T>(&mut self, result: CkResult<T>) -> CkResult<T> {
        if let Err(Ckr(rv)) = &result
            && kills_session(*rv)
        {
            self.discard = true;
        }
        result
    }

    /// Runs one call in the session.
    pub fn run<T>(
        &mut self,
        f: impl FnOnce(&Module, CK_SESSION_HANDLE) -> CkResult<T>,
    ) -> CkResult<T> {
        let call = self.pool.metrics.call();
        let result = f(&self.pool.module, self.handle);
        call.end(result.is_ok());
        self.check(result)
    }

    /// The pool the session came from (its device's metrics).
    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }
}

impl Drop for DeviceSession {
    fn drop(&mut self) {
        self.pool.give_back(self.handle, self.discard);
    }
}
