//! Object management (PKCS#11 3.0 section 5.7): create, copy, destroy,
//! size, get and set attributes. The attribute rules are in
//! [`crate::attributes`]; visibility and storage are the driver's. New
//! objects get a handle from the tenant's own counter.

use cryptoki_sys::CKO_DATA;
use hsmlink_protocol::{Attribute, AttributeType, ObjectHandle, ResponseBody, SessionHandle};

use crate::dispatch::{ClientContext, ServerState, bind};
use crate::error::CkResult;
use crate::secure_templates;

/// `C_CreateObject` (5.7.1).
pub fn create(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    let template = secure_templates::new_key(&bound, CKO_DATA, template)?;
    let handle = state.handles.allocate(ctx.tenant())?;
    bound
        .driver
        .create_object(&bound.object_context(), handle, &template)?;
    secure_templates::check_made(&bound, &[handle])?;
    Ok(ResponseBody::Object(handle))
}

/// `C_CopyObject` (5.7.2).
pub fn copy(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    secure_templates::check_no_widening(&bound, object, template)?;
    let handle = state.handles.allocate(ctx.tenant())?;
    bound
        .driver
        .copy_object(&bound.object_context(), object, handle, template)?;
    secure_templates::check_made(&bound, &[handle])?;
    Ok(ResponseBody::Object(handle))
}

/// `C_DestroyObject` (5.7.3).
pub fn destroy(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    bound
        .driver
        .destroy_object(&bound.object_context(), object)?;
    Ok(ResponseBody::Empty)
}

/// `C_GetObjectSize` (5.7.4): the size of the object's attributes as
/// stored, in bytes.
pub fn size(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    let size = bound.driver.object_size(&bound.object_context(), object)?;
    Ok(ResponseBody::ObjectSize(size))
}

/// `C_GetAttributeValue` (5.7.5): one result per requested type; the module
/// computes the final `CK_RV` from them. Allowed before an expired PIN is
/// changed, for public objects.
pub fn get(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
    types: &[AttributeType],
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    let results = bound
        .driver
        .get_attributes(&bound.object_context(), object, types)?;
    Ok(ResponseBody::Attributes(results))
}

/// `C_SetAttributeValue` (5.7.6).
pub fn set(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    secure_templates::check_no_widening(&bound, object, template)?;
    secure_templates::check_set(&bound, object, template)?;
    bound
        .driver
        .set_attributes(&bound.object_context(), object, template)?;
    Ok(ResponseBody::Empty)
}
