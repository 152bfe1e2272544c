//! Session management functions (section 5.6). Sessions and login state
//! live on the server; the module keeps no session table of its own.

use cryptoki_sys::{
    CK_BYTE, CK_FLAGS, CK_NOTIFY, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SESSION_INFO,
    CK_SLOT_ID, CK_ULONG, CK_USER_TYPE, CK_UTF8CHAR, CK_VOID_PTR,
};
use hsmlink_protocol::{SessionHandle, SlotId, UserType};

use super::out::OutRef;
use super::{convert, guard, input, not_supported, wire};
use crate::client::sessions;
use crate::log;
use crate::state;

/// `C_OpenSession` (5.6.1): a NULL `phSession` is `CKR_ARGUMENTS_BAD`, a
/// missing `CKF_SERIAL_SESSION` `CKR_SESSION_PARALLEL_NOT_SUPPORTED` (both
/// answered locally); the rest is the server's (`CKR_SLOT_ID_INVALID`,
/// `CKR_SESSION_READ_WRITE_SO_EXISTS`, ...). No server reachable:
/// `CKR_TOKEN_NOT_PRESENT`. `pApplication` and `Notify` are accepted and
/// never used: we make no callbacks.
pub(super) unsafe extern "C" fn C_OpenSession(
    slotID: CK_SLOT_ID,
    flags: CK_FLAGS,
    _pApplication: CK_VOID_PTR,
    _Notify: CK_NOTIFY,
    phSession: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    guard("C_OpenSession", || {
        let library = state::library()?;
        // SAFETY: section 5.6.1: phSession points to the CK_SESSION_HANDLE
        // that receives the new session's handle.
        let out = unsafe { OutRef::from_raw(phSession) }?;
        let session = sessions::open_session(&library, SlotId(wire(slotID)), wire(flags))?;
        match convert::ulong(session.0) {
            Ok(handle) => {
                out.write(handle);
                Ok(())
            }
            Err(e) => {
                // A handle this platform cannot hold: do not leave the
                // session open on the server behind the application's back.
                if let Err(close) = sessions::close_session(&library, session) {
                    log::debug!("C_OpenSession: closing the unusable session failed: {close}");
                }
                Err(e)
            }
        }
    })
}

/// `C_CloseSession` (5.6.2).
pub(super) extern "C" fn C_CloseSession(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CloseSession", || {
        let library = state::library()?;
        sessions::close_session(&library, SessionHandle(wire(hSession)))
    })
}

/// `C_CloseAllSessions` (5.6.3): this application's sessions on the slot.
pub(super) extern "C" fn C_CloseAllSessions(slotID: CK_SLOT_ID) -> CK_RV {
    guard("C_CloseAllSessions", || {
        let library = state::library()?;
        sessions::close_all_sessions(&library, SlotId(wire(slotID)))
    })
}

/// `C_GetSessionInfo` (5.6.4). NULL `pInfo`: `CKR_ARGUMENTS_BAD`.
pub(super) unsafe extern "C" fn C_GetSessionInfo(
    hSession: CK_SESSION_HANDLE,
    pInfo: *mut CK_SESSION_INFO,
) -> CK_RV {
    guard("C_GetSessionInfo", || {
        let library = state::library()?;
        // SAFETY: section 5.6.4: pInfo is NULL or points to a CK_SESSION_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        let info = sessions::session_info(&library, SessionHandle(wire(hSession)))?;
        out.write(convert::session_info(&info)?);
        Ok(())
    })
}

/// `C_SessionCancel` (5.6.5, new in 3.0): `flags` names the operations to
/// cancel; the server judges them.
pub(super) extern "C" fn C_SessionCancel(hSession: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV {
    guard("C_SessionCancel", || {
        let library = state::library()?;
        sessions::session_cancel(&library, SessionHandle(wire(hSession)), wire(flags))
    })
}

/// `C_Login` (5.6.8). The PIN rules of `input::pin` apply (a NULL `pPin`
/// is `CKR_ARGUMENTS_BAD`: there is no protected authentication path); the
/// user type is the server's to judge (`CKR_USER_TYPE_INVALID`).
pub(super) unsafe extern "C" fn C_Login(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    pPin: *mut CK_UTF8CHAR,
    ulPinLen: CK_ULONG,
) -> CK_RV {
    guard("C_Login", || {
        let library = state::library()?;
        // SAFETY: section 5.6.8: pPin is NULL or points to ulPinLen bytes.
        let pin = unsafe { input::pin(pPin, ulPinLen) }?;
        sessions::login(
            &library,
            SessionHandle(wire(hSession)),
            UserType(wire(userType)),
            pin,
        )
    })
}

/// `C_LoginUser` (5.6.9, new in 3.0): as `C_Login`; the user name (NULL
/// with length 0 is an empty one) is sent and ignored by the server, which
/// has no named users.
pub(super) unsafe extern "C" fn C_LoginUser(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    pPin: *mut CK_UTF8CHAR,
    ulPinLen: CK_ULONG,
    pUsername: *mut CK_UTF8CHAR,
    ulUsernameLen: CK_ULONG,
) -> CK_RV {
    guard("C_LoginUser", || {
        let library = state::library()?;
        // SAFETY: section 5.6.9: pPin is NULL or points to ulPinLen bytes.
        let pin = unsafe { input::pin(pPin, ulPinLen) }?;
        // SAFETY: section 5.6.9: pUsername is NULL or points to
        // ulUsernameLen bytes.
        let username = unsafe { input::bytes(pUsername, ulUsernameLen) }?;
        sessions::login_user(
            &library,
            SessionHandle(wire(hSession)),
            UserType(wire(userType)),
            pin,
            username,
        )
    })
}

/// `C_Logout` (5.6.10).
pub(super) extern "C" fn C_Logout(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_Logout", || {
        let library = state::library()?;
        sessions::logout(&library, SessionHandle(wire(hSession)))
    })
}

not_supported! {
    /// `C_GetOperationState` (5.6.6): not supported, as the standard allows
    /// (operation state lives on the server and is not exported).
    fn C_GetOperationState(
        _hSession: CK_SESSION_HANDLE,
        _pOperationState: *mut CK_BYTE,
        _pulOperationStateLen: *mut CK_ULONG,
    );
    /// `C_SetOperationState` (5.6.7): not supported, as `C_GetOperationState`.
    fn C_SetOperationState(
        _hSession: CK_SESSION_HANDLE,
        _pOperationState: *mut CK_BYTE,
        _ulOperationStateLen: CK_ULONG,
        _hEncryptionKey: CK_OBJECT_HANDLE,
        _hAuthenticationKey: CK_OBJECT_HANDLE,
    );
}
