//! Session management (PKCS#11 3.0 section 5.6): sessions and login state
//! live on the server, keyed by tenant, application instance and handle, so
//! any pooled connection can carry any session.
//!
//! PINs arrive here as [`Secret`]s (wiped on drop) and are never logged.

use cryptoki_sys::{
    CKF_DECRYPT, CKF_DIGEST, CKF_ENCRYPT, CKF_SERIAL_SESSION, CKF_SIGN, CKF_VERIFY,
    CKR_SESSION_PARALLEL_NOT_SUPPORTED, CKU_CONTEXT_SPECIFIC,
};
use hsmlink_protocol::{
    Request, ResponseBody, Secret, SessionHandle, SessionInfo, SlotId, UserType,
};

use super::local::Kind;
use super::{call, empty, token_absent, unexpected};
use crate::error::Error;
use crate::state::Library;

/// The local part of `C_OpenSession`'s flag rules: `CKF_SERIAL_SESSION` must
/// be set (section 5.6.1; parallel sessions do not exist since 2.x). Every
/// other bit (`CKF_RW_SESSION`, unknown ones) is the server's to judge.
pub fn check_open_flags(flags: u64) -> Result<(), Error> {
    // Lossless: a CK_FLAGS is at most 64 bits wide (and u32 on some targets).
    #[allow(clippy::unnecessary_cast)]
    const SERIAL_SESSION: u64 = CKF_SERIAL_SESSION as u64;
    if flags & SERIAL_SESSION == 0 {
        return Err(Error::new(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    Ok(())
}

/// `C_OpenSession` (5.6.1). No server reachable: `CKR_TOKEN_NOT_PRESENT`,
/// as for the other token-level calls addressed by slot.
pub fn open_session(library: &Library, slot: SlotId, flags: u64) -> Result<SessionHandle, Error> {
    check_open_flags(flags)?;
    match call(library, &Request::OpenSession { slot, flags }).map_err(token_absent)? {
        ResponseBody::Session(handle) => {
            library.local.opened(handle, slot);
            Ok(handle)
        }
        other => Err(unexpected("C_OpenSession", &other)),
    }
}

/// `C_CloseSession` (5.6.2). The session's local state (hash-then-sign
/// operations) is dropped whatever the server says.
pub fn close_session(library: &Library, session: SessionHandle) -> Result<(), Error> {
    let result = empty(
        library,
        "C_CloseSession",
        &Request::CloseSession { session },
    );
    library.local.closed(session);
    result
}

/// `C_CloseAllSessions` (5.6.3): the application's sessions on `slot`, and
/// their local state, whatever the server says.
pub fn close_all_sessions(library: &Library, slot: SlotId) -> Result<(), Error> {
    let result = empty(
        library,
        "C_CloseAllSessions",
        &Request::CloseAllSessions { slot },
    );
    library.local.closed_all(slot);
    result
}

/// `C_GetSessionInfo` (5.6.4).
pub fn session_info(library: &Library, session: SessionHandle) -> Result<SessionInfo, Error> {
    match call(library, &Request::GetSessionInfo { session })? {
        ResponseBody::SessionInfo(info) => Ok(info),
        other => Err(unexpected("C_GetSessionInfo", &other)),
    }
}

/// `C_SessionCancel` (5.6.5): `flags` names the operations to cancel.
/// Once the server has cancelled them, the local parts of the operations
/// named end too (a deferred init, a local hash, a kept output).
pub fn session_cancel(library: &Library, session: SessionHandle, flags: u64) -> Result<(), Error> {
    empty(
        library,
        "C_SessionCancel",
        &Request::SessionCancel { session, flags },
    )?;
    for (flag, kind) in [
        (CKF_SIGN, Kind::Sign),
        (CKF_VERIFY, Kind::Verify),
        (CKF_ENCRYPT, Kind::Encrypt),
        (CKF_DECRYPT, Kind::Decrypt),
        (CKF_DIGEST, Kind::Digest),
    ] {
        #[allow(clippy::useless_conversion)] // CK_FLAGS is u32 on some targets
        if flags & u64::from(flag) != 0 {
            library.local.end(session, kind);
        }
    }
    Ok(())
}

/// `C_Login` (5.6.8).
pub fn login(
    library: &Library,
    session: SessionHandle,
    user_type: UserType,
    pin: Secret,
) -> Result<(), Error> {
    before_login(library, session, user_type)?;
    empty(
        library,
        "C_Login",
        &Request::Login {
            session,
            user_type,
            pin,
        },
    )
}

/// `C_LoginUser` (5.6.9): the server accepts and ignores the user name
/// (there are no named users).
pub fn login_user(
    library: &Library,
    session: SessionHandle,
    user_type: UserType,
    pin: Secret,
    username: Vec<u8>,
) -> Result<(), Error> {
    before_login(library, session, user_type)?;
    empty(
        library,
        "C_LoginUser",
        &Request::LoginUser {
            session,
            user_type,
            pin,
            username,
        },
    )
}

/// A context-specific login authenticates the operation just initialised:
/// the server must hold it, so the session's deferred inits go first (an
/// init's failure is the login's error).
fn before_login(
    library: &Library,
    session: SessionHandle,
    user_type: UserType,
) -> Result<(), Error> {
    #[allow(clippy::useless_conversion)] // CK_USER_TYPE is u32 on some targets
    if user_type.0 != u64::from(CKU_CONTEXT_SPECIFIC) {
        return Ok(());
    }
    for kind in [
        Kind::Sign,
        Kind::Verify,
        Kind::Encrypt,
        Kind::Decrypt,
        Kind::Digest,
    ] {
        super::deferred::flush(library, session, kind)?;
    }
    Ok(())
}

/// `C_Logout` (5.6.10).
pub fn logout(library: &Library, session: SessionHandle) -> Result<(), Error> {
    empty(library, "C_Logout", &Request::Logout { session })
}
