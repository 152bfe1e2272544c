//! Object management functions (section 5.7). Templates are converted by
//! `attributes` (the one place that knows the C representation of values).

use cryptoki_sys::{CK_ATTRIBUTE, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG};
use hsmlink_protocol::{ObjectHandle, SessionHandle};

use super::attributes::Template;
use super::out::{OutArray, OutRef};
use super::{convert, guard, wire};
use crate::client::objects;
use crate::state;

/// `C_CreateObject` (5.7.1). A NULL `phObject` is `CKR_ARGUMENTS_BAD`
/// (checked before anything is created), the template rules are those of
/// `attributes`.
pub(super) unsafe extern "C" fn C_CreateObject(
    hSession: CK_SESSION_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
    phObject: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_CreateObject", || {
        let library = state::library()?;
        // SAFETY: section 5.7.1: phObject points to the CK_OBJECT_HANDLE that
        // receives the new object's handle.
        let out = unsafe { OutRef::from_raw(phObject) }?;
        // SAFETY: section 5.7.1: pTemplate holds ulCount attributes, each
        // pValue pointing to ulValueLen bytes of its value.
        let template =
            unsafe { Template::from_raw(pTemplate, ulCount) }?.to_wire_for(&library.profile)?;
        let object = objects::create_object(&library, SessionHandle(wire(hSession)), template)?;
        out.write(convert::ulong(object.0)?);
        Ok(())
    })
}

/// `C_CopyObject` (5.7.2), as `C_CreateObject`.
pub(super) unsafe extern "C" fn C_CopyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
    phNewObject: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_CopyObject", || {
        let library = state::library()?;
        // SAFETY: section 5.7.2: phNewObject points to the CK_OBJECT_HANDLE
        // that receives the copy's handle.
        let out = unsafe { OutRef::from_raw(phNewObject) }?;
        // SAFETY: section 5.7.2: pTemplate holds ulCount attributes, each
        // pValue pointing to ulValueLen bytes of its value.
        let template =
            unsafe { Template::from_raw(pTemplate, ulCount) }?.to_wire_for(&library.profile)?;
        let object = objects::copy_object(
            &library,
            SessionHandle(wire(hSession)),
            ObjectHandle(wire(hObject)),
            template,
        )?;
        out.write(convert::ulong(object.0)?);
        Ok(())
    })
}

/// `C_DestroyObject` (5.7.3).
pub(super) extern "C" fn C_DestroyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_DestroyObject", || {
        let library = state::library()?;
        objects::destroy_object(
            &library,
            SessionHandle(wire(hSession)),
            ObjectHandle(wire(hObject)),
        )
    })
}

/// `C_GetObjectSize` (5.7.4): NULL `pulSize` is `CKR_ARGUMENTS_BAD`; the
/// server's "unknown" arrives as `CK_UNAVAILABLE_INFORMATION`.
pub(super) unsafe extern "C" fn C_GetObjectSize(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pulSize: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetObjectSize", || {
        let library = state::library()?;
        // SAFETY: section 5.7.4: pulSize points to a CK_ULONG.
        let out = unsafe { OutRef::from_raw(pulSize) }?;
        let size = objects::object_size(
            &library,
            SessionHandle(wire(hSession)),
            ObjectHandle(wire(hObject)),
        )?;
        // `count` maps the wire's all-ones to CK_UNAVAILABLE_INFORMATION.
        out.write(convert::count(size)?);
        Ok(())
    })
}

/// `C_GetAttributeValue` (5.7.5): the types go to the server, its answer is
/// written into the template entry by entry (`Template::write_results`:
/// lengths, values, `CK_UNAVAILABLE_INFORMATION`, and the final
/// `CKR_ATTRIBUTE_SENSITIVE` / `CKR_ATTRIBUTE_TYPE_INVALID` /
/// `CKR_BUFFER_TOO_SMALL`). A failure of the call as a whole
/// (`CKR_OBJECT_HANDLE_INVALID`, ...) leaves the template untouched.
pub(super) unsafe extern "C" fn C_GetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_GetAttributeValue", || {
        let library = state::library()?;
        // SAFETY: section 5.7.5: pTemplate holds ulCount attributes to fill
        // in, each pValue NULL or pointing to ulValueLen writable bytes (for
        // attribute arrays, to an array of CK_ATTRIBUTE of that size).
        let template = unsafe { Template::from_raw(pTemplate, ulCount) }?;
        let types = template.types();
        let results = objects::attribute_values(
            &library,
            SessionHandle(wire(hSession)),
            ObjectHandle(wire(hObject)),
            types.clone(),
            template.has_length_query(),
        )?;
        template.write_results(&library.profile.results_out(&types, results))
    })
}

/// `C_SetAttributeValue` (5.7.6).
pub(super) unsafe extern "C" fn C_SetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_SetAttributeValue", || {
        let library = state::library()?;
        // SAFETY: section 5.7.6: pTemplate holds ulCount attributes, each
        // pValue pointing to ulValueLen bytes of its value.
        let template =
            unsafe { Template::from_raw(pTemplate, ulCount) }?.to_wire_for(&library.profile)?;
        objects::set_attribute_values(
            &library,
            SessionHandle(wire(hSession)),
            ObjectHandle(wire(hObject)),
            template,
        )
    })
}

/// `C_FindObjectsInit` (5.7.7): an empty template (`ulCount` 0, `pTemplate`
/// possibly NULL) matches every object the session may see.
pub(super) unsafe extern "C" fn C_FindObjectsInit(
    hSession: CK_SESSION_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_FindObjectsInit", || {
        let library = state::library()?;
        // SAFETY: section 5.7.7: pTemplate holds ulCount attributes, each
        // pValue pointing to ulValueLen bytes of its value.
        let template =
            unsafe { Template::from_raw(pTemplate, ulCount) }?.to_wire_for(&library.profile)?;
        objects::find_objects_init(&library, SessionHandle(wire(hSession)), template)
    })
}

/// `C_FindObjects` (5.7.8): NULL `phObject` or `pulObjectCount` is
/// `CKR_ARGUMENTS_BAD`; `ulMaxObjectCount` 0 is allowed and finds nothing.
pub(super) unsafe extern "C" fn C_FindObjects(
    hSession: CK_SESSION_HANDLE,
    phObject: *mut CK_OBJECT_HANDLE,
    ulMaxObjectCount: CK_ULONG,
    pulObjectCount: *mut CK_ULONG,
) -> CK_RV {
    guard("C_FindObjects", || {
        let library = state::library()?;
        // SAFETY: section 5.7.8: phObject points to room for ulMaxObjectCount
        // handles.
        let out = unsafe { OutArray::from_raw(phObject, ulMaxObjectCount) }?;
        // SAFETY: section 5.7.8: pulObjectCount points to a CK_ULONG.
        let count = unsafe { OutRef::from_raw(pulObjectCount) }?;
        let objects = objects::find_objects(
            &library,
            SessionHandle(wire(hSession)),
            wire(ulMaxObjectCount),
        )?;
        let handles = convert::ulongs(objects.iter().map(|object| object.0))?;
        let found = CK_ULONG::try_from(handles.len()).map_err(|_| crate::error::Error::device())?;
        out.write(&handles)?;
        count.write(found);
        Ok(())
    })
}

/// `C_FindObjectsFinal` (5.7.9).
pub(super) extern "C" fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_FindObjectsFinal", || {
        let library = state::library()?;
        objects::find_objects_final(&library, SessionHandle(wire(hSession)))
    })
}
