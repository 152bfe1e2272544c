//! Where a request runs: on the connection's async task, or on the blocking
//! pool.
//!
//! Handing a request to the blocking pool and its answer back costs two
//! thread wake-ups; on an idle machine each is tens of microseconds, more
//! than an ECDSA signature. So requests that cannot block for long run on
//! the async task: calls that read memory only, digests and cipher steps
//! over small inputs, and the calls that complete a key's use when their
//! audit record does not wait for a disk flush. What may block goes to the
//! pool: PIN checks (slow by design), key generation, everything that
//! writes the store, large inputs, and audited calls while the audit log
//! flushes to disk before each reply (`[audit] durability = "fsync"`).
//! A tenant with a slot on a vendor module (`pkcs11` driver, whose calls
//! wait on a device) has every call on the pool.

use hsmlink_protocol::{OpCall, OutputSpec, Request};

/// The largest input (or random output) of a request that runs inline: a
/// few microseconds of AES or SHA-256; beyond, the work is worth the hop.
pub const INLINE_DATA: usize = 16 * 1024;

/// True if `request` runs on the async task. `audit_flushes`: a call
/// recorded in the audit log waits for a disk flush before its reply.
pub fn runs_inline(request: &Request, audit_flushes: bool) -> bool {
    use Request as R;
    let small = |n: usize| n <= INLINE_DATA;
    // A call that completes an operation is recorded before its reply,
    // unless it only asks for the output length.
    let completes = |n: usize, out: &OutputSpec| {
        small(n) && (!audit_flushes || matches!(out, OutputSpec::LengthQuery))
    };
    match request {
        R::GetSlotList { .. }
        | R::GetSlotInfo { .. }
        | R::GetTokenInfo { .. }
        | R::GetMechanismList { .. }
        | R::GetMechanismInfo { .. }
        | R::GetSessionInfo { .. }
        | R::GetAttributeValue { .. }
        | R::GetObjectSize { .. }
        | R::FindObjectsInit { .. }
        | R::FindObjects { .. }
        | R::FindObjectsFinal { .. } => true,
        R::GenerateRandom { len, .. } => usize::try_from(*len).is_ok_and(small),
        // Recorded only when they fail, without waiting.
        R::EncryptInit { .. }
        | R::DecryptInit { .. }
        | R::DigestInit { .. }
        | R::SignInit { .. }
        | R::VerifyInit { .. }
        | R::SignRecoverInit { .. }
        | R::VerifyRecoverInit { .. } => true,
        // Metered, not recorded.
        R::EncryptUpdate { data, .. }
        | R::DecryptUpdate { data, .. }
        | R::DigestUpdate { data, .. }
        | R::SignUpdate { data, .. }
        | R::VerifyUpdate { data, .. } => small(data.len()),
        R::Digest { data, .. } => small(data.len()),
        R::DigestFinal { .. } => true,
        R::Encrypt { data, out, .. }
        | R::Decrypt { data, out, .. }
        | R::Sign { data, out, .. }
        | R::SignRecover { data, out, .. } => completes(data.len(), out),
        R::VerifyRecover { signature, out, .. } => completes(signature.len(), out),
        R::SignDigest { digest, out, .. } => completes(digest.len(), out),
        R::EncryptFinal { out, .. } | R::DecryptFinal { out, .. } | R::SignFinal { out, .. } => {
            completes(0, out)
        }
        R::Verify { data, .. } => completes(data.len(), &OutputSpec::Capacity(0)),
        R::VerifyDigest { digest, .. } => completes(digest.len(), &OutputSpec::Capacity(0)),
        R::VerifyFinal { .. } => completes(0, &OutputSpec::Capacity(0)),
        R::Begin { call, .. } => match call {
            OpCall::Digest { data, .. } => small(data.len()),
            OpCall::Encrypt { data, out }
            | OpCall::Decrypt { data, out }
            | OpCall::Sign { data, out } => completes(data.len(), out),
            OpCall::SignDigest { digest, out } => completes(digest.len(), out),
            OpCall::Verify { data, .. } => completes(data.len(), &OutputSpec::Capacity(0)),
            OpCall::VerifyDigest { digest, .. } => {
                completes(digest.len(), &OutputSpec::Capacity(0))
            }
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use hsmlink_protocol::{Mechanism, MechanismParams, ObjectHandle, Secret, SessionHandle};

    use super::*;

    const S: SessionHandle = SessionHandle(1);

    fn sign(len: usize, out: OutputSpec) -> Request {
        Request::Begin {
            session: S,
            mechanism: Mechanism::new(cryptoki_sys::CKM_ECDSA, MechanismParams::None),
            key: Some(ObjectHandle(2)),
            call: OpCall::Sign {
                data: Secret::from_slice(&vec![0; len]),
                out,
            },
        }
    }

    #[test]
    fn audited_calls_go_to_the_pool_only_while_the_audit_flushes() {
        let call = sign(32, OutputSpec::Capacity(64));
        assert!(runs_inline(&call, false));
        assert!(!runs_inline(&call, true));
        // A length query is not recorded.
        assert!(runs_inline(&sign(32, OutputSpec::LengthQuery), true));
    }

    #[test]
    fn large_inputs_and_blocking_calls_go_to_the_pool() {
        assert!(!runs_inline(
            &sign(INLINE_DATA + 1, OutputSpec::Capacity(64)),
            false
        ));
        let random = |len| Request::GenerateRandom { session: S, len };
        assert!(runs_inline(&random(32), true));
        assert!(!runs_inline(&random(1 << 20), true));
        let login = Request::Login {
            session: S,
            user_type: hsmlink_protocol::UserType(cryptoki_sys::CKU_USER),
            pin: Secret::from_slice(b"1234"),
        };
        assert!(!runs_inline(&login, false));
        assert!(!runs_inline(
            &Request::DestroyObject {
                session: S,
                object: ObjectHandle(2)
            },
            false
        ));
    }
}
