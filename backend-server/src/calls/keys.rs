//! Key management (PKCS#11 3.0 section 5.18): `C_GenerateKey`,
//! `C_GenerateKeyPair`, `C_WrapKey`, `C_UnwrapKey`, `C_DeriveKey`. The
//! driver checks keys, templates and parameters and stores the new objects;
//! handles come from the tenant's counter.

use std::sync::Arc;

use cryptoki_sys::{
    CKF_DERIVE, CKF_GENERATE, CKF_GENERATE_KEY_PAIR, CKF_UNWRAP, CKF_WRAP, CKO_SECRET_KEY,
    CKR_BUFFER_TOO_SMALL,
};
use hsmlink_protocol::{
    Attribute, Mechanism, ObjectHandle, Output, OutputSpec, Response, ResponseBody, Rv, Secret,
    SessionHandle,
};

use crate::calls::operation::{check_mechanism, crypto_session};
use crate::dispatch::{ClientContext, ServerState};
use crate::error::{CkResult, Ckr};
use crate::secure_templates;
use crate::store::Store;
use crate::wrap_ledger;

/// The store the wrap ledger lives in.
fn store(state: &ServerState) -> CkResult<Arc<dyn Store>> {
    state.registry.store().map_err(|e| {
        tracing::error!("wrap ledger: no store: {e}");
        Ckr::DEVICE
    })
}

/// `C_GenerateKey` (5.18.1).
pub fn generate(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: &Mechanism,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    check_mechanism(&bound, mechanism, CKF_GENERATE)?;
    let template = secure_templates::new_key(&bound, CKO_SECRET_KEY, template)?;
    let handle = state.handles.allocate(ctx.tenant())?;
    bound
        .driver
        .generate_key(&bound.object_context(), handle, mechanism, &template)?;
    secure_templates::check_made(&bound, &[handle])?;
    Ok(ResponseBody::Object(handle))
}

/// `C_GenerateKeyPair` (5.18.2).
pub fn generate_pair(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: &Mechanism,
    public_template: &[Attribute],
    private_template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    check_mechanism(&bound, mechanism, CKF_GENERATE_KEY_PAIR)?;
    let (public_template, private_template) =
        secure_templates::new_pair(&bound, public_template, private_template)?;
    let public = state.handles.allocate(ctx.tenant())?;
    let private = state.handles.allocate(ctx.tenant())?;
    bound.driver.generate_key_pair(
        &bound.object_context(),
        (public, private),
        mechanism,
        &public_template,
        &private_template,
    )?;
    secure_templates::check_made(&bound, &[public, private])?;
    Ok(ResponseBody::KeyPair { public, private })
}

/// `C_WrapKey` (5.18.3). Stateless: a length query or a too-small buffer
/// wraps (to learn the length) and forgets the result.
pub fn wrap(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: &Mechanism,
    wrapping_key: ObjectHandle,
    key: ObjectHandle,
    out: OutputSpec,
) -> CkResult<Response> {
    let bound = crypto_session(state, ctx, session)?;
    check_mechanism(&bound, mechanism, CKF_WRAP)?;
    secure_templates::check_wrap(&bound, mechanism, wrapping_key, key)?;
    let wrapped = bound
        .driver
        .wrap_key(&bound.object_context(), mechanism, wrapping_key, key)?;
    let len = wrapped.len() as u64;
    Ok(match out {
        OutputSpec::LengthQuery => Response::ok(ResponseBody::Output(Output::Length(len))),
        OutputSpec::Capacity(n) if n < len => Response {
            rv: Rv(CKR_BUFFER_TOO_SMALL),
            body: ResponseBody::Output(Output::Length(len)),
        },
        OutputSpec::Capacity(_) => {
            // Only bytes that leave are recorded (a length query's are
            // forgotten), and none leave unrecorded.
            wrap_ledger::record_wrap(&bound, store(state)?.as_ref(), mechanism, key, &wrapped)?;
            Response::ok(ResponseBody::Output(Output::Data(Secret::from_slice(
                &wrapped,
            ))))
        }
    })
}

/// `C_UnwrapKey` (5.18.4).
pub fn unwrap(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: &Mechanism,
    unwrapping_key: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    check_mechanism(&bound, mechanism, CKF_UNWRAP)?;
    let template = secure_templates::unwrapped_key(&bound, mechanism, template)?;
    let (template, binding) = wrap_ledger::bind_unwrap(
        &bound,
        store(state)?.as_ref(),
        mechanism,
        unwrapping_key,
        wrapped,
        &template,
    )?;
    let handle = state.handles.allocate(ctx.tenant())?;
    bound.driver.unwrap_key(
        &bound.object_context(),
        handle,
        mechanism,
        unwrapping_key,
        wrapped,
        &template,
    )?;
    secure_templates::check_made(&bound, &[handle])?;
    wrap_ledger::check_unwrapped(&bound, &binding, handle)?;
    Ok(ResponseBody::Object(handle))
}

/// `C_DeriveKey` (5.18.5).
pub fn derive(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    mechanism: &Mechanism,
    base_key: ObjectHandle,
    template: &[Attribute],
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    check_mechanism(&bound, mechanism, CKF_DERIVE)?;
    let template = secure_templates::new_key(&bound, CKO_SECRET_KEY, template)?;
    let handle = state.handles.allocate(ctx.tenant())?;
    bound.driver.derive_key(
        &bound.object_context(),
        handle,
        mechanism,
        base_key,
        &template,
    )?;
    secure_templates::check_derived(&bound, base_key, handle)?;
    Ok(ResponseBody::Object(handle))
}
