//! Searching (PKCS#11 3.0 sections 5.7.7 to 5.7.9). The matches are taken
//! at `C_FindObjectsInit` and handed out by `C_FindObjects`; objects made or
//! destroyed meanwhile do not change the running search.

use cryptoki_sys::CKR_OPERATION_ACTIVE;
use hsmlink_protocol::{Attribute, ResponseBody, SessionHandle};

use crate::dispatch::{ClientContext, ServerState, bind};
use crate::error::{CkResult, Ckr};

/// `C_FindObjectsInit`. Allowed before an expired PIN is changed; only
/// public objects are found then.
pub fn init(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    if state.sessions.find_active(&bound.key, session)? {
        return Err(Ckr(CKR_OPERATION_ACTIVE));
    }
    let handles = bound
        .driver
        .find_objects(&bound.object_context(), template)?;
    state.sessions.find_init(&bound.key, session, handles)?;
    Ok(ResponseBody::Empty)
}

/// `C_FindObjects`: at most `max_count` more handles.
pub fn next(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    max_count: u64,
) -> CkResult<ResponseBody> {
    let handles = state
        .sessions
        .find_next(&ctx.app_key(), session, max_count)?;
    Ok(ResponseBody::Objects(handles))
}

/// `C_FindObjectsFinal`.
pub fn finish(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<ResponseBody> {
    state.sessions.find_final(&ctx.app_key(), session)?;
    Ok(ResponseBody::Empty)
}
