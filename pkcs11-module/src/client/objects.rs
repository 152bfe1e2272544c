//! Object management (PKCS#11 3.0 section 5.7).
//!
//! Templates arrive as typed [`Attribute`]s (the `ffi` layer converted them
//! from their C representation); `C_GetAttributeValue`'s answer goes back as
//! one [`AttributeResult`] per requested type, for `ffi` to apply the rules
//! of section 5.7.5 to the caller's buffers. Values are never logged.

use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, ObjectHandle, Request, ResponseBody, SessionHandle,
};

use super::{call, empty, unexpected};
use crate::error::Error;
use crate::log;
use crate::state::Library;

/// `C_CreateObject` (5.7.1).
pub fn create_object(
    library: &Library,
    session: SessionHandle,
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    match call(library, &Request::CreateObject { session, template })? {
        ResponseBody::Object(object) => Ok(object),
        other => Err(unexpected("C_CreateObject", &other)),
    }
}

/// `C_CopyObject` (5.7.2).
pub fn copy_object(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    let request = Request::CopyObject {
        session,
        object,
        template,
    };
    match call(library, &request)? {
        ResponseBody::Object(object) => Ok(object),
        other => Err(unexpected("C_CopyObject", &other)),
    }
}

/// `C_DestroyObject` (5.7.3).
pub fn destroy_object(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
) -> Result<(), Error> {
    empty(
        library,
        "C_DestroyObject",
        &Request::DestroyObject { session, object },
    )
}

/// `C_GetObjectSize` (5.7.4), in bytes; `u64::MAX` stands for
/// `CK_UNAVAILABLE_INFORMATION`.
pub fn object_size(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
) -> Result<u64, Error> {
    match call(library, &Request::GetObjectSize { session, object })? {
        ResponseBody::ObjectSize(size) => Ok(size),
        other => Err(unexpected("C_GetObjectSize", &other)),
    }
}

/// `C_GetAttributeValue` (5.7.5): one result per entry of `types`, in the
/// same order. The server answers `CKR_OK` even when some entries are
/// sensitive or invalid; the caller turns those into the final `CK_RV`. An
/// answer with another number of entries is a broken peer.
///
/// `length_query`: the caller gave no buffer for some entry; its answer is
/// kept for the read that follows ([`super::attribute_cache`]), which is
/// then answered without a round trip.
pub fn attribute_values(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
    types: Vec<AttributeType>,
    length_query: bool,
) -> Result<Vec<AttributeResult>, Error> {
    let cache = &library.attributes;
    let results = match cache.take(session, object, &types) {
        Some(kept) => kept,
        None => ask_attribute_values(library, session, object, types.clone())?,
    };
    if length_query {
        cache.keep(session, object, types, results.clone());
    }
    Ok(results)
}

fn ask_attribute_values(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
    types: Vec<AttributeType>,
) -> Result<Vec<AttributeResult>, Error> {
    let asked = types.len();
    let request = Request::GetAttributeValue {
        session,
        object,
        types,
    };
    match call(library, &request)? {
        ResponseBody::Attributes(results) if results.len() == asked => Ok(results),
        ResponseBody::Attributes(results) => {
            log::error!(
                "protocol error: hsmlink-server answered C_GetAttributeValue for {asked} \
                 attribute(s) with {}",
                results.len()
            );
            Err(Error::device())
        }
        other => Err(unexpected("C_GetAttributeValue", &other)),
    }
}

/// `C_SetAttributeValue` (5.7.6).
pub fn set_attribute_values(
    library: &Library,
    session: SessionHandle,
    object: ObjectHandle,
    template: Vec<Attribute>,
) -> Result<(), Error> {
    empty(
        library,
        "C_SetAttributeValue",
        &Request::SetAttributeValue {
            session,
            object,
            template,
        },
    )
}

/// `C_FindObjectsInit` (5.7.7).
pub fn find_objects_init(
    library: &Library,
    session: SessionHandle,
    template: Vec<Attribute>,
) -> Result<(), Error> {
    empty(
        library,
        "C_FindObjectsInit",
        &Request::FindObjectsInit { session, template },
    )
}

/// `C_FindObjects` (5.7.8): at most `max_count` handles (0 is allowed and
/// answers none). More than asked for is a broken peer.
pub fn find_objects(
    library: &Library,
    session: SessionHandle,
    max_count: u64,
) -> Result<Vec<ObjectHandle>, Error> {
    match call(library, &Request::FindObjects { session, max_count })? {
        ResponseBody::Objects(objects)
            if u64::try_from(objects.len()).is_ok_and(|n| n <= max_count) =>
        {
            Ok(objects)
        }
        ResponseBody::Objects(objects) => {
            log::error!(
                "protocol error: hsmlink-server answered C_FindObjects for at most {max_count} \
                 object(s) with {}",
                objects.len()
            );
            Err(Error::device())
        }
        other => Err(unexpected("C_FindObjects", &other)),
    }
}

/// `C_FindObjectsFinal` (5.7.9).
///
/// If the connection breaks, the find may still be active on the server,
/// and callers often ignore this call's result (the `cryptoki` crate does):
/// their next `C_FindObjectsInit` would get `CKR_OPERATION_ACTIVE`. Ending
/// a find twice is harmless, so it is sent once more; "not initialized"
/// then means the first one ended it.
pub fn find_objects_final(library: &Library, session: SessionHandle) -> Result<(), Error> {
    let request = Request::FindObjectsFinal { session };
    match empty(library, "C_FindObjectsFinal", &request) {
        Err(e) if e.rv() == cryptoki_sys::CKR_DEVICE_ERROR => {
            match empty(library, "C_FindObjectsFinal", &request) {
                Err(again) if again.rv() == cryptoki_sys::CKR_OPERATION_NOT_INITIALIZED => Ok(()),
                other => other,
            }
        }
        other => other,
    }
}
