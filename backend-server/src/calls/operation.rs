//! The lifecycle of cryptographic operations (PKCS#11 3.0 sections 5.2 and
//! 5.8 to 5.16), once for every kind: one active operation per kind and
//! session; a length query answers the length and keeps the operation;
//! `CKR_BUFFER_TOO_SMALL` answers the length and keeps it; success of a
//! single-part call or of a final ends it, and so does any other error.
//! The work is done once per call: lengths come from the engine, and an
//! output computed for a buffer that turns out too small is kept for the
//! next call.

use cryptoki_sys::{
    CKR_BUFFER_TOO_SMALL, CKR_MECHANISM_INVALID, CKR_OPERATION_ACTIVE, CKR_USER_NOT_LOGGED_IN,
};
use hsmlink_protocol::{
    Mechanism, ObjectHandle, Output, OutputSpec, Response, ResponseBody, Rv, Secret, SessionHandle,
};
use zeroize::Zeroizing;

use crate::dispatch::{Bound, ClientContext, ServerState, bind};
use crate::driver::{OpKind, OutLen, Step};
use crate::error::{CkResult, Ckr};
use crate::sessions::{ActiveOp, OpInfo, lock_op};
use crate::soft::mechanisms;

/// The input of an output-producing call.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Single(&'a [u8]),
    Update(&'a [u8]),
    Final,
    SignDigest(&'a [u8]),
}

impl Input<'_> {
    fn step(self) -> Step {
        match self {
            Self::Single(_) => Step::Single,
            Self::Update(_) => Step::Update,
            Self::Final => Step::Final,
            Self::SignDigest(_) => Step::SignDigest,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Single(d) | Self::Update(d) | Self::SignDigest(d) => d.len(),
            Self::Final => 0,
        }
    }
}

/// A bound session whose caller may use cryptography (`CKR_PIN_EXPIRED`
/// before a to-be-changed PIN is changed).
pub(crate) fn crypto_session<'a>(
    state: &'a ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<Bound<'a>> {
    let bound = bind(state, ctx, session)?;
    bound.require_fresh_pin()?;
    Ok(bound)
}

/// `CKR_MECHANISM_INVALID` unless the slot's table lists `mechanism` with `flag`.
pub(crate) fn check_mechanism(bound: &Bound<'_>, mechanism: &Mechanism, flag: u64) -> CkResult<()> {
    match mechanisms::find(bound.mechanisms, mechanism.mechanism.0) {
        Some(entry) if entry.flags & flag != 0 => Ok(()),
        _ => Err(Ckr(CKR_MECHANISM_INVALID)),
    }
}

/// `C_*Init`: checks, starts the engine, records the operation.
pub fn init(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    kind: OpKind,
    mechanism: &Mechanism,
    key: Option<ObjectHandle>,
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    if state.sessions.op_active(&bound.key, session, kind)? {
        return Err(Ckr(CKR_OPERATION_ACTIVE));
    }
    check_mechanism(&bound, mechanism, kind.mechanism_flag())?;
    let begun = bound
        .driver
        .begin_operation(&bound.object_context(), kind, mechanism, key)?;
    state.sessions.op_start(
        &bound.key,
        session,
        kind,
        ActiveOp::new(begun.operation, begun.needs_context_login).with_info(OpInfo {
            mechanism: mechanism.mechanism.0,
            key,
        }),
    )?;
    Ok(match begun.hash_prefix {
        Some(prefix) => ResponseBody::HashPrefix(prefix),
        None => ResponseBody::Empty,
    })
}

/// What a step did to the operation.
enum Next {
    Keep(Response),
    End(Response),
}

fn too_small(len: usize) -> Response {
    Response {
        rv: Rv(CKR_BUFFER_TOO_SMALL),
        body: ResponseBody::Output(Output::Length(len as u64)),
    }
}

fn data(bytes: &[u8]) -> Response {
    Response::ok(ResponseBody::Output(Output::Data(Secret::from_slice(
        bytes,
    ))))
}

/// Runs `body` on the session's operation of `kind`, ending it unless
/// `body` says to keep it. Errors end it too, but for a missing
/// context-specific login.
fn with_op(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    kind: OpKind,
    body: impl FnOnce(&Bound<'_>, &mut ActiveOp) -> CkResult<Next>,
) -> Response {
    let run = || -> CkResult<Response> {
        let bound = crypto_session(state, ctx, session)?;
        let shared = state.sessions.op_get(&bound.key, session, kind)?;
        let mut op = lock_op(&shared);
        if op.needs_context_login {
            return Err(Ckr(CKR_USER_NOT_LOGGED_IN));
        }
        let result = body(&bound, &mut op);
        drop(op);
        match result {
            Ok(Next::Keep(response)) => Ok(response),
            Ok(Next::End(response)) => {
                state.sessions.op_end(&bound.key, session, kind, &shared);
                Ok(response)
            }
            Err(e) => {
                state.sessions.op_end(&bound.key, session, kind, &shared);
                Err(e)
            }
        }
    };
    run().unwrap_or_else(|Ckr(rv)| Response::error(rv))
}

/// A call with an output (`C_Encrypt`, `C_EncryptUpdate`, `C_SignFinal`,
/// `SignDigest`, `C_Digest`, `C_SignRecover`, `C_VerifyRecover`, ...).
pub fn output(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    kind: OpKind,
    input: Input<'_>,
    out: OutputSpec,
) -> Response {
    with_op(state, ctx, session, kind, |_, op| {
        let step = input.step();
        let keeps = step == Step::Update;
        let capacity = match out {
            OutputSpec::Capacity(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            OutputSpec::LengthQuery => None,
        };
        if let Some((pending_step, bytes)) = &op.pending
            && *pending_step == step
        {
            let len = bytes.len();
            return Ok(match capacity {
                Some(cap) if cap >= len => {
                    let response = data(bytes);
                    op.pending = None;
                    if keeps {
                        Next::Keep(response)
                    } else {
                        Next::End(response)
                    }
                }
                Some(_) => Next::Keep(too_small(len)),
                None => Next::Keep(Response::ok(ResponseBody::Output(Output::Length(
                    len as u64,
                )))),
            });
        }
        let hint = op.operation.output_len(step, input.len())?;
        let Some(cap) = capacity else {
            return Ok(Next::Keep(Response::ok(ResponseBody::Output(
                Output::Length(hint.bound() as u64),
            ))));
        };
        if let OutLen::Exact(n) = hint
            && cap < n
        {
            return Ok(Next::Keep(too_small(n)));
        }
        let result: Zeroizing<Vec<u8>> = match input {
            Input::Single(d) => op.operation.single(d)?,
            Input::Update(d) => op.operation.update(d)?,
            Input::Final => op.operation.finish()?,
            Input::SignDigest(d) => op.operation.sign_digest(d)?,
        };
        if result.len() > cap {
            let len = result.len();
            op.pending = Some((step, result));
            return Ok(Next::Keep(too_small(len)));
        }
        let response = data(&result);
        Ok(if keeps {
            Next::Keep(response)
        } else {
            Next::End(response)
        })
    })
}

/// A call that feeds data and outputs nothing (`C_DigestUpdate`,
/// `C_SignUpdate`, `C_VerifyUpdate`).
pub fn feed(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    kind: OpKind,
    input: &[u8],
) -> Response {
    with_op(state, ctx, session, kind, |_, op| {
        op.operation.update(input)?;
        Ok(Next::Keep(Response::ok(ResponseBody::Empty)))
    })
}

/// `C_DigestKey` (5.12.4).
pub fn digest_key(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    key: ObjectHandle,
) -> Response {
    with_op(state, ctx, session, OpKind::Digest, |bound, op| {
        bound
            .driver
            .digest_key(&bound.object_context(), op.operation.as_mut(), key)?;
        Ok(Next::Keep(Response::ok(ResponseBody::Empty)))
    })
}

/// What a verification checks.
#[derive(Clone, Copy, Debug)]
pub enum Check<'a> {
    /// `C_Verify`: data and signature.
    Single(&'a [u8]),
    /// `C_VerifyFinal`.
    Final,
    /// `VerifyDigest`: the module's hash.
    Digest(&'a [u8]),
}

/// `C_Verify`, `C_VerifyFinal`, `VerifyDigest`: always end the operation.
pub fn verify(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    check: Check<'_>,
    signature: &[u8],
) -> Response {
    with_op(state, ctx, session, OpKind::Verify, |_, op| {
        match check {
            Check::Single(d) => op.operation.verify(d, signature)?,
            Check::Final => op.operation.verify_final(signature)?,
            Check::Digest(d) => op.operation.verify_digest(d, signature)?,
        }
        Ok(Next::End(Response::ok(ResponseBody::Empty)))
    })
}
