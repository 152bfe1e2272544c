//! PINs and login: `C_InitToken` (5.5), `C_InitPIN`, `C_SetPIN`,
//! `C_Login`, `C_LoginUser`, `C_Logout` (5.6).
//!
//! The driver keeps the PINs (and counts failures); who is logged in is
//! generic, per application and token ([`crate::sessions`]). No PIN ever
//! reaches a log line: logs name the function, the tenant and the result.

use std::sync::Arc;
use std::time::Instant;

use cryptoki_sys::{
    CKR_FUNCTION_REJECTED, CKR_OPERATION_NOT_INITIALIZED, CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE,
    CKR_SESSION_EXISTS, CKR_SESSION_READ_ONLY, CKR_SESSION_READ_ONLY_EXISTS,
    CKR_USER_ALREADY_LOGGED_IN, CKR_USER_ANOTHER_ALREADY_LOGGED_IN, CKR_USER_NOT_LOGGED_IN,
    CKR_USER_TYPE_INVALID, CKU_CONTEXT_SPECIFIC, CKU_SO, CKU_USER,
};
use hsmlink_protocol::{Request, Response, ResponseBody, Secret, SessionHandle, SlotId, UserType};
use tracing::{debug, error, info, warn};

use crate::audit::record::Record;
use crate::dispatch::{self, Bound, ClientContext, ServerState, bind, with_token};
use crate::driver::UserKind;
use crate::error::{CkResult, Ckr};
use crate::ratelimit::{Blocked, LoginThrottle};
use crate::sessions::lock_op;

/// `C_InitToken` (5.5.8): no session of any application may be open on
/// the token; every object goes, every application is logged out.
pub fn init_token(
    state: &ServerState,
    ctx: &ClientContext,
    slot: SlotId,
    so_pin: &Secret,
    label: &[u8],
) -> CkResult<ResponseBody> {
    let s = with_token(state.registry.tenant(ctx.tenant()), slot)?;
    if state.sessions.any_on_slot(ctx.tenant(), slot) {
        return Err(Ckr(CKR_SESSION_EXISTS));
    }
    let label = String::from_utf8_lossy(label);
    state.driver(s)?.init_token(so_pin, &label)?;
    state.sessions.logout_everywhere(ctx.tenant(), slot);
    info!(tenant = %ctx.tenant(), slot = slot.0, "token initialised");
    Ok(ResponseBody::Empty)
}

/// `C_InitPIN` (5.5.9): the SO sets the user PIN, in a read/write session.
pub fn init_pin(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    pin: &Secret,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    if bound.view.login != Some(UserKind::So) {
        return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
    }
    if !bound.view.rw {
        return Err(Ckr(CKR_SESSION_READ_ONLY));
    }
    bound.driver.init_pin(pin)?;
    Ok(ResponseBody::Empty)
}

/// `C_SetPIN` (5.5.10): the PIN of whoever is logged in, the user's if
/// nobody is; read/write sessions only.
pub fn set_pin(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    old_pin: &Secret,
    new_pin: &Secret,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    if !bound.view.rw {
        return Err(Ckr(CKR_SESSION_READ_ONLY));
    }
    let who = bound.view.login.unwrap_or(UserKind::User);
    bound.driver.set_pin(who, old_pin, new_pin)?;
    Ok(ResponseBody::Empty)
}

/// `C_Login` (5.6.8) and `C_LoginUser` (5.6.9; the user name is ignored:
/// there are no named users).
pub fn login(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    user_type: UserType,
    pin: &Secret,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    let who = match user_type.0 {
        CKU_SO => UserKind::So,
        CKU_USER => UserKind::User,
        CKU_CONTEXT_SPECIFIC => return context_login(state, &bound, session, pin),
        _ => return Err(Ckr(CKR_USER_TYPE_INVALID)),
    };
    match bound.view.login {
        Some(current) if current == who => return Err(Ckr(CKR_USER_ALREADY_LOGGED_IN)),
        Some(_) => return Err(Ckr(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)),
        None => {}
    }
    if who == UserKind::So && state.sessions.has_read_only(&bound.key, bound.view.slot) {
        return Err(Ckr(CKR_SESSION_READ_ONLY_EXISTS));
    }
    bound.driver.verify_pin(who, pin)?;
    state
        .sessions
        .set_login(&bound.key, bound.view.slot, Some(who));
    Ok(ResponseBody::Empty)
}

/// `C_Login(CKU_CONTEXT_SPECIFIC)` (5.6.8): the user PIN again, for the
/// operations of the session started with a `CKA_ALWAYS_AUTHENTICATE` key.
fn context_login(
    state: &ServerState,
    bound: &Bound<'_>,
    session: SessionHandle,
    pin: &Secret,
) -> CkResult<ResponseBody> {
    let waiting = state.sessions.ops_waiting_for_login(&bound.key, session)?;
    if waiting.is_empty() {
        return Err(Ckr(CKR_OPERATION_NOT_INITIALIZED));
    }
    if bound.view.login != Some(UserKind::User) {
        return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
    }
    bound.driver.verify_pin(UserKind::User, pin)?;
    for op in &waiting {
        lock_op(op).needs_context_login = false;
    }
    Ok(ResponseBody::Empty)
}

/// `C_Logout` (5.6.10).
pub fn logout(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    if bound.view.login.is_none() {
        return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
    }
    state.sessions.set_login(&bound.key, bound.view.slot, None);
    Ok(ResponseBody::Empty)
}

/// The calls that check a PIN, and so can be used to guess one.
pub fn checks_pin(request: &Request) -> bool {
    matches!(
        request,
        Request::Login { .. }
            | Request::LoginUser { .. }
            | Request::SetPin { .. }
            | Request::InitToken { .. }
    )
}

/// [`dispatch::handle`] with the per-source limit on wrong PINs
/// ([`LoginThrottle`]): a PIN-checking call from a source in its cool-down
/// is refused with `CKR_FUNCTION_REJECTED` without its PIN being looked at
/// (so it neither counts towards nor triggers the token's lockout), and is
/// audited like any other call (with that code and the source address).
/// A wrong PIN counts towards the source's limit; the call that reaches it
/// also leaves a `login.source_limited` audit record and one warning.
pub fn handle_throttled(
    state: &ServerState,
    throttle: &Arc<LoginThrottle>,
    ctx: &ClientContext,
    request: Request,
) -> Response {
    if !checks_pin(&request) {
        return dispatch::handle(state, ctx, request);
    }
    // An IPv4 client of a dual-stack listener is the same source either way.
    let source = ctx.peer.ip().to_canonical();
    if let Some(left) = throttle.blocked(source, Instant::now()) {
        debug!(
            conn = ctx.connection,
            tenant = %ctx.tenant(),
            %source,
            function = request.function_name(),
            cooldown_left_s = left.as_secs(),
            "PIN-checking call refused: source in its cool-down"
        );
        let plan = crate::audit::hook::plan(state, ctx, &request);
        return crate::audit::hook::finish(
            state,
            ctx,
            plan,
            Response::error(CKR_FUNCTION_REJECTED),
        );
    }
    let function = request.function_name();
    let response = dispatch::handle(state, ctx, request);
    if matches!(response.rv.0, CKR_PIN_INCORRECT | CKR_PIN_LEN_RANGE)
        && let Some(blocked) = throttle.failed(source, Instant::now())
    {
        warn!(
            conn = ctx.connection,
            tenant = %ctx.tenant(),
            %source,
            failures = blocked.failures,
            window_s = throttle.settings().window.as_secs(),
            cooldown_s = blocked.cooldown.as_secs(),
            "too many wrong PINs from this source: its PIN-checking calls are refused for the cool-down"
        );
        record_source_limited(state, ctx, function, blocked);
    }
    response
}

/// The `login.source_limited` audit record (queued: it is committed with
/// the record of the call that triggered it, or the next one).
fn record_source_limited(
    state: &ServerState,
    ctx: &ClientContext,
    function: &str,
    blocked: Blocked,
) {
    let Some(audit) = state.audit() else {
        return;
    };
    let ts_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let record = Record {
        chain: ctx.tenant().as_str().to_owned(),
        tenant: Some(ctx.tenant().as_str().to_owned()),
        cert: Some(format!("sha256:{}", ctx.identity.fingerprint)),
        subject: Some(ctx.identity.subject.clone()),
        source: Some(ctx.peer.to_string()),
        app: Some(
            ctx.app_instance
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
        ts_ms,
        op: "login.source_limited".to_owned(),
        detail: Some(format!(
            "{} wrong PINs from {} (last in {function}): PIN-checking calls refused for {} s",
            blocked.failures,
            ctx.peer.ip().to_canonical(),
            blocked.cooldown.as_secs()
        )),
        rv: CKR_FUNCTION_REJECTED,
        rv_name: "CKR_FUNCTION_REJECTED".to_owned(),
        ..Record::default()
    };
    if let Err(e) = audit.record_queued(record) {
        error!(tenant = %ctx.tenant(), "cannot record login.source_limited: {e}");
    }
}
