//! PINs and login: `C_InitToken` (5.5), `C_InitPIN`, `C_SetPIN`,
//! `C_Login`, `C_LoginUser`, `C_Logout` (5.6).
//!
//! The driver keeps the PINs (and counts failures); who is logged in is
//! generic, per application and token ([`crate::sessions`]). No PIN ever
//! reaches a log line: logs name the function, the tenant and the result.

use cryptoki_sys::{
    CKR_OPERATION_NOT_INITIALIZED, CKR_SESSION_EXISTS, CKR_SESSION_READ_ONLY,
    CKR_SESSION_READ_ONLY_EXISTS, CKR_USER_ALREADY_LOGGED_IN, CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    CKR_USER_NOT_LOGGED_IN, CKR_USER_TYPE_INVALID, CKU_CONTEXT_SPECIFIC, CKU_SO, CKU_USER,
};
use hsmlink_protocol::{ResponseBody, Secret, SessionHandle, SlotId, UserType};
use tracing::info;

use crate::dispatch::{Bound, ClientContext, ServerState, bind, with_token};
use crate::driver::UserKind;
use crate::error::{CkResult, Ckr};
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
