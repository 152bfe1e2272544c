//! Object management functions (section 5.7). Not served yet.

use cryptoki_sys::{CK_ATTRIBUTE, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG};

use super::not_supported;

not_supported! {
    /// `C_CreateObject` (5.7.1).
    fn C_CreateObject(
        _hSession: CK_SESSION_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
        _phObject: *mut CK_OBJECT_HANDLE,
    );
    /// `C_CopyObject` (5.7.2).
    fn C_CopyObject(
        _hSession: CK_SESSION_HANDLE,
        _hObject: CK_OBJECT_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
        _phNewObject: *mut CK_OBJECT_HANDLE,
    );
    /// `C_DestroyObject` (5.7.3).
    fn C_DestroyObject(_hSession: CK_SESSION_HANDLE, _hObject: CK_OBJECT_HANDLE);
    /// `C_GetObjectSize` (5.7.4).
    fn C_GetObjectSize(
        _hSession: CK_SESSION_HANDLE,
        _hObject: CK_OBJECT_HANDLE,
        _pulSize: *mut CK_ULONG,
    );
    /// `C_GetAttributeValue` (5.7.5).
    fn C_GetAttributeValue(
        _hSession: CK_SESSION_HANDLE,
        _hObject: CK_OBJECT_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
    );
    /// `C_SetAttributeValue` (5.7.6).
    fn C_SetAttributeValue(
        _hSession: CK_SESSION_HANDLE,
        _hObject: CK_OBJECT_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
    );
    /// `C_FindObjectsInit` (5.7.7).
    fn C_FindObjectsInit(
        _hSession: CK_SESSION_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
    );
    /// `C_FindObjects` (5.7.8).
    fn C_FindObjects(
        _hSession: CK_SESSION_HANDLE,
        _phObject: *mut CK_OBJECT_HANDLE,
        _ulMaxObjectCount: CK_ULONG,
        _pulObjectCount: *mut CK_ULONG,
    );
    /// `C_FindObjectsFinal` (5.7.9).
    fn C_FindObjectsFinal(_hSession: CK_SESSION_HANDLE);
}
