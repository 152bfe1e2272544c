//! Session management (PKCS#11 3.0 section 5.6).

use cryptoki_sys::{
    CKF_FIND_OBJECTS, CKF_RW_SESSION, CKF_SERIAL_SESSION, CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    CKR_TOKEN_NOT_RECOGNIZED, CKS_RO_PUBLIC_SESSION, CKS_RO_USER_FUNCTIONS, CKS_RW_PUBLIC_SESSION,
    CKS_RW_SO_FUNCTIONS, CKS_RW_USER_FUNCTIONS,
};
use hsmlink_protocol::{ResponseBody, SessionHandle, SessionInfo, SlotId};

use crate::dispatch::{ClientContext, ServerState, bind, with_token};
use crate::driver::{OpKind, UserKind};
use crate::error::{CkResult, Ckr};

/// `C_OpenSession` (5.6.1). Serial sessions only; the token must be
/// initialised; no read-only session while the SO is logged in.
pub fn open(
    state: &ServerState,
    ctx: &ClientContext,
    slot: SlotId,
    flags: u64,
) -> CkResult<ResponseBody> {
    let s = with_token(state.registry.tenant(ctx.tenant()), slot)?;
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(Ckr(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    if !state.driver(s)?.token_state().initialized {
        return Err(Ckr(CKR_TOKEN_NOT_RECOGNIZED));
    }
    let rw = flags & CKF_RW_SESSION != 0;
    let handle = state.sessions.open(&ctx.app_key(), slot, rw)?;
    Ok(ResponseBody::Session(handle))
}

/// `C_CloseSession` (5.6.2).
pub fn close(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<ResponseBody> {
    let closed = state.sessions.close(&ctx.app_key(), session)?;
    state.sessions_closed(&[closed]);
    Ok(ResponseBody::Empty)
}

/// `C_CloseAllSessions` (5.6.3).
pub fn close_all(state: &ServerState, ctx: &ClientContext, slot: SlotId) -> CkResult<ResponseBody> {
    with_token(state.registry.tenant(ctx.tenant()), slot)?;
    let closed = state.sessions.close_all(&ctx.app_key(), slot);
    state.sessions_closed(&closed);
    Ok(ResponseBody::Empty)
}

/// `C_Finalize` (5.4.1) as the server sees it: the application's process
/// is done. The sessions close unless another process of the application
/// instance (forked from it, or its parent) is still connected.
pub fn finalize(state: &ServerState, ctx: &ClientContext) -> ResponseBody {
    match state.sessions.finalize(&ctx.app_key(), ctx.pid) {
        Some(closed) => state.sessions_closed(&closed),
        None => tracing::debug!(
            tenant = %ctx.tenant(),
            pid = ctx.pid,
            "C_Finalize: another process of the application is connected; its sessions stay"
        ),
    }
    ResponseBody::Empty
}

/// `C_GetSessionInfo` (5.6.4).
pub fn info(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    let view = bound.view;
    let session_state = match (view.rw, view.login) {
        (false, None | Some(UserKind::So)) => CKS_RO_PUBLIC_SESSION,
        (false, Some(UserKind::User)) => CKS_RO_USER_FUNCTIONS,
        (true, None) => CKS_RW_PUBLIC_SESSION,
        (true, Some(UserKind::User)) => CKS_RW_USER_FUNCTIONS,
        (true, Some(UserKind::So)) => CKS_RW_SO_FUNCTIONS,
    };
    let mut flags = CKF_SERIAL_SESSION;
    if view.rw {
        flags |= CKF_RW_SESSION;
    }
    Ok(ResponseBody::SessionInfo(SessionInfo {
        slot_id: view.slot,
        state: session_state,
        flags,
        device_error: 0,
    }))
}

/// `C_SessionCancel` (3.0, 5.6.5): ends the session's active operations
/// named by `flags` (`CKF_ENCRYPT`, `CKF_DECRYPT`, `CKF_DIGEST`, `CKF_SIGN`,
/// `CKF_SIGN_RECOVER`, `CKF_VERIFY`, `CKF_VERIFY_RECOVER`, `CKF_FIND_OBJECTS`).
pub fn cancel(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    flags: u64,
) -> CkResult<ResponseBody> {
    let kinds: Vec<OpKind> = OpKind::ALL
        .into_iter()
        .filter(|k| flags & k.mechanism_flag() != 0)
        .collect();
    state.sessions.cancel(
        &ctx.app_key(),
        session,
        &kinds,
        flags & CKF_FIND_OBJECTS != 0,
    )?;
    Ok(ResponseBody::Empty)
}
