//! The audit and metering hooks around [`crate::dispatch::handle`]:
//! [`plan`] before the call (what it is, its session's slot, the mechanism
//! and key of the operation it continues), [`finish`] after it (the
//! record, the metering counters, the logins that expired meanwhile).
//!
//! Audited: the single-part and final calls of encryption, decryption,
//! signing, MACing, verification and recovery (but length queries, which
//! use no key), each naming the key and mechanism of its operation; a
//! `C_*Init` that fails (a successful one is part of the record of the call
//! that completes its operation: nothing comes out of a key before it);
//! `C_DigestKey`;
//! `C_GenerateKey(Pair)`, `C_WrapKey`, `C_UnwrapKey`, `C_DeriveKey`;
//! `C_CreateObject`, `C_CopyObject`, `C_DestroyObject`,
//! `C_SetAttributeValue`; `C_Login`/`C_LoginUser` (success and failure),
//! `C_Logout`, `C_InitToken`, `C_InitPIN`, `C_SetPIN`; and login expiry.
//! `C_*Update` calls are metered, not audited: their operation's Init and
//! final call are.

use std::time::Instant;

use cryptoki_sys::{CKR_DEVICE_ERROR, CKU_CONTEXT_SPECIFIC, CKU_SO, CKU_USER};
use hsmlink_protocol::{OutputSpec, Request, Response, ResponseBody, SessionHandle, SlotId};
use tracing::error;

use super::names::{mechanism_name, rv_name};
use super::record::{Record, hex, now_ms};
use crate::dispatch::{ClientContext, ServerState};
use crate::driver::{OpKind, UserKind};
use crate::sessions::Expiry;

/// Whether and how a call is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Metered only.
    Meter,
    /// Recorded if it fails; the reply does not wait (a `C_*Init`).
    InitQueue,
    /// Recorded; the reply waits for the commit.
    Wait,
}

/// What [`plan`] learnt before the call.
#[derive(Debug)]
pub struct Plan {
    started: Instant,
    ts_ms: i64,
    op: &'static str,
    mode: Mode,
    slot: Option<SlotId>,
    mechanism: Option<u64>,
    key: Option<u64>,
    objects: Vec<u64>,
    detail: Option<String>,
    bytes_in: u64,
}

/// What a request is, for audit and metering; `None` for calls neither
/// audited nor metered.
fn classify(request: &Request) -> Option<(Mode, Option<SessionHandle>, Option<OpKind>, u64)> {
    use Mode::*;
    use OpKind as K;
    use Request as R;
    let len = |n: usize| n as u64;
    // Single-part and final calls: recorded unless a length query.
    let out_call = |out: &OutputSpec| match out {
        OutputSpec::LengthQuery => None,
        OutputSpec::Capacity(_) => Some(Wait),
    };
    let c = match request {
        R::EncryptInit { session, .. }
        | R::DecryptInit { session, .. }
        | R::SignInit { session, .. }
        | R::VerifyInit { session, .. }
        | R::SignRecoverInit { session, .. }
        | R::VerifyRecoverInit { session, .. } => (InitQueue, Some(*session), None, 0),
        R::Encrypt { session, data, out } => (
            out_call(out)?,
            Some(*session),
            Some(K::Encrypt),
            len(data.len()),
        ),
        R::Decrypt { session, data, out } => (
            out_call(out)?,
            Some(*session),
            Some(K::Decrypt),
            len(data.len()),
        ),
        R::Sign { session, data, out } => (
            out_call(out)?,
            Some(*session),
            Some(K::Sign),
            len(data.len()),
        ),
        R::SignDigest {
            session,
            digest,
            out,
        } => (
            out_call(out)?,
            Some(*session),
            Some(K::Sign),
            len(digest.len()),
        ),
        R::SignRecover { session, data, out } => (
            out_call(out)?,
            Some(*session),
            Some(K::SignRecover),
            len(data.len()),
        ),
        R::VerifyRecover {
            session,
            signature,
            out,
        } => (
            out_call(out)?,
            Some(*session),
            Some(K::VerifyRecover),
            len(signature.len()),
        ),
        R::EncryptFinal { session, out } => (out_call(out)?, Some(*session), Some(K::Encrypt), 0),
        R::DecryptFinal { session, out } => (out_call(out)?, Some(*session), Some(K::Decrypt), 0),
        R::SignFinal { session, out } => (out_call(out)?, Some(*session), Some(K::Sign), 0),
        R::Verify {
            session,
            data,
            signature,
        } => (
            Wait,
            Some(*session),
            Some(K::Verify),
            len(data.len() + signature.len()),
        ),
        R::VerifyDigest {
            session,
            digest,
            signature,
        } => (
            Wait,
            Some(*session),
            Some(K::Verify),
            len(digest.len() + signature.len()),
        ),
        R::VerifyFinal { session, signature } => {
            (Wait, Some(*session), Some(K::Verify), len(signature.len()))
        }
        R::EncryptUpdate { session, data, out } => {
            if *out == OutputSpec::LengthQuery {
                return None;
            }
            (Meter, Some(*session), Some(K::Encrypt), len(data.len()))
        }
        R::DecryptUpdate { session, data, out } => {
            if *out == OutputSpec::LengthQuery {
                return None;
            }
            (Meter, Some(*session), Some(K::Decrypt), len(data.len()))
        }
        R::SignUpdate { session, data } => (Meter, Some(*session), Some(K::Sign), len(data.len())),
        R::VerifyUpdate { session, data } => {
            (Meter, Some(*session), Some(K::Verify), len(data.len()))
        }
        R::DigestInit { session, .. } => (Meter, Some(*session), None, 0),
        R::DigestUpdate { session, data } => {
            (Meter, Some(*session), Some(K::Digest), len(data.len()))
        }
        R::Digest { session, data, out } => {
            out_call(out)?;
            (Meter, Some(*session), Some(K::Digest), len(data.len()))
        }
        R::DigestFinal { session, out } => {
            out_call(out)?;
            (Meter, Some(*session), Some(K::Digest), 0)
        }
        R::DigestKey { session, .. } => (Wait, Some(*session), Some(K::Digest), 0),
        R::GenerateKey { session, .. } | R::GenerateKeyPair { session, .. } => {
            (Wait, Some(*session), None, 0)
        }
        R::WrapKey { session, .. } => (Wait, Some(*session), None, 0),
        R::UnwrapKey {
            session,
            wrapped_key,
            ..
        } => (Wait, Some(*session), None, len(wrapped_key.len())),
        R::DeriveKey { session, .. } => (Wait, Some(*session), None, 0),
        R::GenerateRandom { session, .. } | R::SeedRandom { session, .. } => {
            (Meter, Some(*session), None, 0)
        }
        R::CreateObject { session, .. }
        | R::CopyObject { session, .. }
        | R::DestroyObject { session, .. }
        | R::SetAttributeValue { session, .. }
        | R::Login { session, .. }
        | R::LoginUser { session, .. }
        | R::Logout { session }
        | R::InitPin { session, .. }
        | R::SetPin { session, .. } => (Wait, Some(*session), None, 0),
        R::InitToken { .. } => (Wait, None, None, 0),
        _ => return None,
    };
    Some(c)
}

fn user_type_name(user_type: u64) -> String {
    match user_type {
        CKU_SO => "CKU_SO".to_owned(),
        CKU_USER => "CKU_USER".to_owned(),
        CKU_CONTEXT_SPECIFIC => "CKU_CONTEXT_SPECIFIC".to_owned(),
        other => format!("CKU {other:#x}"),
    }
}

/// The key state a template asks for (`CKA_HSMLINK_KEY_STATE=CKS_HSMLINK_
/// DEACTIVATED`), for the record's `detail`: not a secret, and what an
/// auditor of key states looks for. Other template values stay out.
fn key_state_detail(template: &[hsmlink_protocol::Attribute]) -> Option<String> {
    use hsmlink_protocol::AttributeValue;
    use hsmlink_protocol::vendor::CKA_HSMLINK_KEY_STATE;
    let attribute = template
        .iter()
        .find(|a| a.attr_type.0 == CKA_HSMLINK_KEY_STATE)?;
    let value = match &attribute.value {
        AttributeValue::Ulong(v) => crate::key_state::name(*v),
        _ => "?".to_owned(),
    };
    Some(format!("CKA_HSMLINK_KEY_STATE={value}"))
}

/// Before the call: `None` if it is neither audited nor metered.
pub fn plan(state: &ServerState, ctx: &ClientContext, request: &Request) -> Option<Plan> {
    use Request as R;
    let (mode, session, kind, bytes_in) = classify(request)?;
    let started = Instant::now();
    let peeked = session.and_then(|s| state.sessions.peek(&ctx.app_key(), s, kind));
    let (mut slot, info) = match peeked {
        Some((slot, info)) => (Some(slot), info),
        None => (None, None),
    };
    let mut mechanism = info.map(|i| i.mechanism);
    let mut key = info.and_then(|i| i.key).map(|k| k.0);
    let mut objects = Vec::new();
    let mut detail = None;
    match request {
        R::EncryptInit {
            mechanism: m,
            key: k,
            ..
        }
        | R::DecryptInit {
            mechanism: m,
            key: k,
            ..
        }
        | R::SignInit {
            mechanism: m,
            key: k,
            ..
        }
        | R::VerifyInit {
            mechanism: m,
            key: k,
            ..
        }
        | R::SignRecoverInit {
            mechanism: m,
            key: k,
            ..
        }
        | R::VerifyRecoverInit {
            mechanism: m,
            key: k,
            ..
        } => {
            mechanism = Some(m.mechanism.0);
            key = Some(k.0);
        }
        R::DigestInit { mechanism: m, .. } => mechanism = Some(m.mechanism.0),
        R::DigestKey { key: k, .. } => key = Some(k.0),
        R::GenerateKey { mechanism: m, .. } | R::GenerateKeyPair { mechanism: m, .. } => {
            mechanism = Some(m.mechanism.0);
        }
        R::WrapKey {
            mechanism: m,
            wrapping_key,
            key: k,
            ..
        } => {
            mechanism = Some(m.mechanism.0);
            key = Some(wrapping_key.0);
            objects.push(k.0);
        }
        R::UnwrapKey {
            mechanism: m,
            unwrapping_key,
            ..
        } => {
            mechanism = Some(m.mechanism.0);
            key = Some(unwrapping_key.0);
        }
        R::DeriveKey {
            mechanism: m,
            base_key,
            ..
        } => {
            mechanism = Some(m.mechanism.0);
            key = Some(base_key.0);
        }
        R::CopyObject {
            object, template, ..
        }
        | R::SetAttributeValue {
            object, template, ..
        } => {
            objects.push(object.0);
            detail = key_state_detail(template);
        }
        R::DestroyObject { object, .. } => objects.push(object.0),
        R::Login { user_type, .. } | R::LoginUser { user_type, .. } => {
            detail = Some(user_type_name(user_type.0));
        }
        R::InitToken { slot: s, .. } => slot = Some(*s),
        _ => {}
    }
    Some(Plan {
        started,
        ts_ms: now_ms(),
        op: request.function_name(),
        mode,
        slot,
        mechanism,
        key,
        objects,
        detail,
        bytes_in,
    })
}

fn partition_of(
    state: &ServerState,
    tenant: &crate::names::TenantName,
    slot: SlotId,
) -> Option<String> {
    state
        .registry
        .any_tenant(tenant)
        .and_then(|t| t.slot(slot).map(|s| s.partition.as_str().to_owned()))
}

/// The record of a call, with the connection's who and where.
fn base_record(ctx: &ClientContext) -> Record {
    Record {
        chain: ctx.tenant().as_str().to_owned(),
        tenant: Some(ctx.tenant().as_str().to_owned()),
        cert: Some(format!("sha256:{}", ctx.identity.fingerprint)),
        subject: Some(ctx.identity.subject.clone()),
        source: Some(ctx.peer.to_string()),
        app: Some(hex(&ctx.app_instance.0)),
        via: (ctx.connection == crate::admin::crypto_api::HTTP_API_CONNECTION)
            .then(|| crate::admin::crypto_api::VIA.to_owned()),
        ..Record::default()
    }
}

/// After the call: meters it, records it (waiting for the commit where
/// required) and records the logins that expired. Returns the reply to
/// send: `CKR_DEVICE_ERROR` instead if its record could not be written.
pub fn finish(
    state: &ServerState,
    ctx: &ClientContext,
    plan: Option<Plan>,
    response: Response,
) -> Response {
    let mut failed = false;
    for expiry in state.sessions.take_expired() {
        if let Err(e) = record_expiry(state, Some(ctx), &expiry) {
            error!(tenant = %ctx.tenant(), "{e}");
            failed = true;
        }
    }
    let Some(plan) = plan else {
        return fail_closed(response, failed);
    };
    let duration_us = u64::try_from(plan.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // The console's charts: every planned call, failures too, per partition.
    let partition = plan.slot.and_then(|s| partition_of(state, ctx.tenant(), s));
    state.metering().series().add(
        ctx.tenant().as_str(),
        partition.as_deref(),
        plan.ts_ms,
        duration_us,
        response.rv.0 != 0,
    );
    let bytes_out = match &response.body {
        ResponseBody::Output(hsmlink_protocol::Output::Data(d)) | ResponseBody::Random(d) => {
            d.len() as u64
        }
        _ => 0,
    };
    if response.rv.0 == 0 {
        state.metering().add(
            ctx.tenant().as_str(),
            plan.ts_ms,
            plan.op,
            plan.mechanism,
            plan.bytes_in,
            bytes_out,
        );
    }
    let Some(audit) = state.audit() else {
        return fail_closed(response, failed);
    };
    if plan.mode == Mode::Meter || (plan.mode == Mode::InitQueue && response.rv.0 == 0) {
        return fail_closed(response, failed);
    }
    let mut objects = plan.objects;
    match &response.body {
        ResponseBody::Object(h) => objects.push(h.0),
        ResponseBody::KeyPair { public, private } => objects.extend([public.0, private.0]),
        _ => {}
    }
    let record = Record {
        ts_ms: plan.ts_ms,
        op: plan.op.to_owned(),
        slot: plan.slot.map(|s| s.0),
        partition,
        mechanism: plan.mechanism,
        mechanism_name: plan.mechanism.map(mechanism_name),
        key: plan.key,
        objects,
        detail: plan.detail,
        duration_us,
        rv: response.rv.0,
        rv_name: rv_name(response.rv.0),
        ..base_record(ctx)
    };
    let written = match plan.mode {
        Mode::InitQueue => audit.record_queued(record),
        _ => audit.record(record),
    };
    if let Err(e) = written {
        error!(tenant = %ctx.tenant(), function = plan.op, "{e}; answering CKR_DEVICE_ERROR");
        failed = true;
    }
    fail_closed(response, failed)
}

fn fail_closed(response: Response, failed: bool) -> Response {
    if failed {
        Response::error(CKR_DEVICE_ERROR)
    } else {
        response
    }
}

/// Records a login expiry (queued: the reply that reports it waits for a
/// later record, or for nothing if the call is not audited).
pub fn record_expiry(
    state: &ServerState,
    ctx: Option<&ClientContext>,
    expiry: &Expiry,
) -> Result<(), super::AuditError> {
    let Some(audit) = state.audit() else {
        return Ok(());
    };
    let who = match expiry.who {
        UserKind::So => "CKU_SO",
        UserKind::User => "CKU_USER",
    };
    let base = match ctx {
        Some(ctx) if ctx.app_key() == expiry.key => base_record(ctx),
        _ => Record {
            chain: expiry.key.tenant.as_str().to_owned(),
            tenant: Some(expiry.key.tenant.as_str().to_owned()),
            app: Some(hex(&expiry.key.app.0)),
            ..Record::default()
        },
    };
    audit.record_queued(Record {
        ts_ms: now_ms(),
        op: "login.expired".to_owned(),
        slot: Some(expiry.slot.0),
        partition: partition_of(state, &expiry.key.tenant, expiry.slot),
        detail: Some(format!(
            "{who} login ended: {} limit of {} s reached after {} s",
            expiry.reason.as_str(),
            expiry.limit.as_secs(),
            expiry.age.as_secs()
        )),
        rv: 0,
        rv_name: "CKR_OK".to_owned(),
        ..base
    })
}
