//! Session management functions (section 5.6). Not served yet.

use cryptoki_sys::{
    CK_BYTE, CK_FLAGS, CK_NOTIFY, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SESSION_INFO,
    CK_SLOT_ID, CK_ULONG, CK_USER_TYPE, CK_UTF8CHAR, CK_VOID_PTR,
};

use super::not_supported;

not_supported! {
    /// `C_OpenSession` (5.6.1).
    fn C_OpenSession(
        _slotID: CK_SLOT_ID,
        _flags: CK_FLAGS,
        _pApplication: CK_VOID_PTR,
        _Notify: CK_NOTIFY,
        _phSession: *mut CK_SESSION_HANDLE,
    );
    /// `C_CloseSession` (5.6.2).
    fn C_CloseSession(_hSession: CK_SESSION_HANDLE);
    /// `C_CloseAllSessions` (5.6.3).
    fn C_CloseAllSessions(_slotID: CK_SLOT_ID);
    /// `C_GetSessionInfo` (5.6.4).
    fn C_GetSessionInfo(_hSession: CK_SESSION_HANDLE, _pInfo: *mut CK_SESSION_INFO);
    /// `C_SessionCancel` (5.6.5, new in 3.0).
    fn C_SessionCancel(_hSession: CK_SESSION_HANDLE, _flags: CK_FLAGS);
    /// `C_GetOperationState` (5.6.6).
    fn C_GetOperationState(
        _hSession: CK_SESSION_HANDLE,
        _pOperationState: *mut CK_BYTE,
        _pulOperationStateLen: *mut CK_ULONG,
    );
    /// `C_SetOperationState` (5.6.7).
    fn C_SetOperationState(
        _hSession: CK_SESSION_HANDLE,
        _pOperationState: *mut CK_BYTE,
        _ulOperationStateLen: CK_ULONG,
        _hEncryptionKey: CK_OBJECT_HANDLE,
        _hAuthenticationKey: CK_OBJECT_HANDLE,
    );
    /// `C_Login` (5.6.8).
    fn C_Login(
        _hSession: CK_SESSION_HANDLE,
        _userType: CK_USER_TYPE,
        _pPin: *mut CK_UTF8CHAR,
        _ulPinLen: CK_ULONG,
    );
    /// `C_LoginUser` (5.6.9, new in 3.0).
    fn C_LoginUser(
        _hSession: CK_SESSION_HANDLE,
        _userType: CK_USER_TYPE,
        _pPin: *mut CK_UTF8CHAR,
        _ulPinLen: CK_ULONG,
        _pUsername: *mut CK_UTF8CHAR,
        _ulUsernameLen: CK_ULONG,
    );
    /// `C_Logout` (5.6.10).
    fn C_Logout(_hSession: CK_SESSION_HANDLE);
}
