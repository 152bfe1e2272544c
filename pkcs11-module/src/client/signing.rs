//! Signing and MACing (5.13) and verifying (5.15), with the hash of
//! hash-then-sign mechanisms computed in the module (see [`super::local`]).
//!
//! `C_SignInit`/`C_VerifyInit` are deferred ([`super::deferred`]): they go
//! to the server with the call that finishes a single-part operation (or
//! a hash computed here), one frame for Init, length query and call.
//!
//! For the hash-then-sign mechanisms:
//! - the init goes with the original mechanism; a local hash starts at
//!   once, but for SM2-with-SM3, whose hash starts with the server's Z:
//!   its single-part `C_Sign` sends the message with the init, its
//!   `C_SignUpdate` sends the init alone and hashes from the `HashPrefix`
//!   of the reply on;
//! - `C_SignUpdate`/`C_VerifyUpdate` hash locally and send nothing;
//! - `C_Sign`/`C_SignFinal` send `SignDigest`, `C_Verify`/`C_VerifyFinal`
//!   `VerifyDigest`. A length query or `CKR_BUFFER_TOO_SMALL` keeps the
//!   local hash as it was (the caller calls again with the same data); any
//!   other outcome ends the operation here as on the server;
//! - `C_Sign`/`C_Verify` after an update is `CKR_OPERATION_ACTIVE`, and the
//!   operation goes on (the server, which never saw the updates, cannot
//!   tell; this answer keeps both sides in step).
//!
//! Everything else is forwarded as it is.

use cryptoki_sys::{
    CKR_DATA_LEN_RANGE, CKR_GENERAL_ERROR, CKR_OPERATION_ACTIVE, CKR_SIGNATURE_LEN_RANGE,
};
use hsmlink_protocol::{
    Mechanism, ObjectHandle, OpCall, Output, OutputSpec, Request, Secret, SessionHandle,
};

use super::deferred::{self, UNLIMITED};
use super::local::{Kind, LocalOp, Step};
use super::{check_len, empty, output, secret};
use crate::error::Error;
use crate::state::Library;

/// `C_SignInit` (5.13.1): deferred.
pub fn sign_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    deferred::init(library, session, Kind::Sign, mechanism, key)
}

/// `C_VerifyInit` (5.15.1): deferred.
pub fn verify_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    deferred::init(library, session, Kind::Verify, mechanism, key)
}

/// Hashes `data` into the local hash, if there is one: `false` if there
/// is none. A kept output goes (the input changed). The hash runs outside
/// the lock.
pub(super) fn hash_part(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    data: &[u8],
) -> bool {
    let Some(mut op) = library.local.take(session, kind) else {
        return false;
    };
    let hashed = match op.hash.as_mut() {
        Some(hash) => {
            hash.hasher.update(data);
            hash.updated = true;
            op.kept = None;
            true
        }
        None => false,
    };
    library.local.put_back(session, kind, op);
    hashed
}

/// `C_SignUpdate`/`C_VerifyUpdate` (and the dual functions) hash locally
/// when they can; otherwise the server needs the operation: a deferred
/// init goes now (after which SM2-with-SM3 hashes locally too).
fn update_locally(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    data: &[u8],
) -> Result<bool, Error> {
    if hash_part(library, session, kind, data) {
        return Ok(true);
    }
    deferred::flush(library, session, kind)?;
    Ok(hash_part(library, session, kind, data))
}

/// `C_Sign`/`C_Verify` after an update: `CKR_OPERATION_ACTIVE`, and the
/// operation goes on (the server, which never saw the updates, cannot
/// tell; this answer keeps both sides in step).
fn refuse_single_after_update(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
) -> Result<(), Error> {
    let updated = library.local.with(session, kind, |op| {
        op.hash.as_ref().is_some_and(|hash| hash.updated)
    });
    if updated == Some(true) {
        return Err(Error::new(CKR_OPERATION_ACTIVE));
    }
    Ok(())
}

/// The digest of the local hash so far followed by `data`, the hash
/// unchanged; `None` without a local hash.
fn digest_of(op: &LocalOp, data: &[u8]) -> Option<Secret> {
    let mut hasher = op.hash.as_ref()?.hasher.clone();
    hasher.update(data);
    Some(hasher.digest())
}

/// The digest of the session's local hash followed by `data`; `None`
/// without one.
fn digest_with(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    data: &[u8],
) -> Option<Secret> {
    library
        .local
        .with(session, kind, |op| digest_of(op, data))
        .flatten()
}

/// A final call of a deferred operation without a local hash (`C_SignInit`
/// then `C_SignFinal` of a MAC, say) is the server's: the init goes first.
fn flush_unless_hashing(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
) -> Result<(), Error> {
    if library.local.hashing(session, kind) {
        return Ok(());
    }
    deferred::flush(library, session, kind)
}

/// A final call after [`flush_unless_hashing`]: only a local hash may
/// still have a deferred init.
fn final_digest(op: &LocalOp) -> Result<Secret, Error> {
    digest_of(op, &[]).ok_or(Error::new(CKR_GENERAL_ERROR))
}

/// `SignDigest`; the local operation survives a length answer only.
fn sign_digest(
    library: &Library,
    session: SessionHandle,
    digest: Secret,
    out: OutputSpec,
) -> Result<Output, Error> {
    let result = output(
        library,
        &Request::SignDigest {
            session,
            digest,
            out,
        },
        out,
    );
    if !matches!(result, Ok(Output::Length(_))) {
        library.local.end(session, Kind::Sign);
    }
    result
}

/// `VerifyDigest`; whatever the outcome, the operation is over.
fn verify_digest(
    library: &Library,
    session: SessionHandle,
    digest: Secret,
    signature: Vec<u8>,
) -> Result<(), Error> {
    let request = Request::VerifyDigest {
        session,
        digest,
        signature,
    };
    let result = empty(library, "C_Verify", &request);
    library.local.end(session, Kind::Verify);
    result
}

/// `C_Sign` (5.13.2).
pub fn sign(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    refuse_single_after_update(library, session, Kind::Sign)?;
    let step = Step::Single;
    let deferred = deferred::output(library, session, Kind::Sign, step, data, out, |op| {
        Ok(match digest_of(op, data) {
            Some(digest) => OpCall::SignDigest {
                digest,
                out: UNLIMITED,
            },
            None => OpCall::Sign {
                data: secret(data, CKR_DATA_LEN_RANGE)?,
                out: UNLIMITED,
            },
        })
    });
    if let Some(result) = deferred {
        return result;
    }
    if let Some(digest) = digest_with(library, session, Kind::Sign, data) {
        return sign_digest(library, session, digest, out);
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    output(library, &Request::Sign { session, data, out }, out)
}

/// `C_SignUpdate` (5.13.3): no frame for a hash-then-sign mechanism.
pub fn sign_update(library: &Library, session: SessionHandle, data: &[u8]) -> Result<(), Error> {
    if update_locally(library, session, Kind::Sign, data)? {
        return Ok(());
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    empty(
        library,
        "C_SignUpdate",
        &Request::SignUpdate { session, data },
    )
}

/// `C_SignFinal` (5.13.4).
pub fn sign_final(
    library: &Library,
    session: SessionHandle,
    out: OutputSpec,
) -> Result<Output, Error> {
    flush_unless_hashing(library, session, Kind::Sign)?;
    let deferred = deferred::output(library, session, Kind::Sign, Step::Final, &[], out, |op| {
        Ok(OpCall::SignDigest {
            digest: final_digest(op)?,
            out: UNLIMITED,
        })
    });
    if let Some(result) = deferred {
        return result;
    }
    if let Some(digest) = digest_with(library, session, Kind::Sign, &[]) {
        return sign_digest(library, session, digest, out);
    }
    output(library, &Request::SignFinal { session, out }, out)
}

/// `C_SignRecoverInit` (5.13.5).
pub fn sign_recover_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    let request = Request::SignRecoverInit {
        session,
        mechanism,
        key,
    };
    empty(library, "C_SignRecoverInit", &request)
}

/// `C_SignRecover` (5.13.6).
pub fn sign_recover(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    output(library, &Request::SignRecover { session, data, out }, out)
}

/// `C_Verify` (5.15.2).
pub fn verify(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let signature = signature_bytes(signature)?;
    refuse_single_after_update(library, session, Kind::Verify)?;
    let deferred = deferred::verify(library, session, |op| {
        Ok(match digest_of(op, data) {
            Some(digest) => OpCall::VerifyDigest {
                digest,
                signature: signature.clone(),
            },
            None => OpCall::Verify {
                data: secret(data, CKR_DATA_LEN_RANGE)?,
                signature: signature.clone(),
            },
        })
    });
    if let Some(result) = deferred {
        return result;
    }
    if let Some(digest) = digest_with(library, session, Kind::Verify, data) {
        return verify_digest(library, session, digest, signature);
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    let request = Request::Verify {
        session,
        data,
        signature,
    };
    empty(library, "C_Verify", &request)
}

/// `C_VerifyUpdate` (5.15.3): no frame for a hash-then-sign mechanism.
pub fn verify_update(library: &Library, session: SessionHandle, data: &[u8]) -> Result<(), Error> {
    if update_locally(library, session, Kind::Verify, data)? {
        return Ok(());
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    empty(
        library,
        "C_VerifyUpdate",
        &Request::VerifyUpdate { session, data },
    )
}

/// `C_VerifyFinal` (5.15.4).
pub fn verify_final(
    library: &Library,
    session: SessionHandle,
    signature: &[u8],
) -> Result<(), Error> {
    let signature = signature_bytes(signature)?;
    flush_unless_hashing(library, session, Kind::Verify)?;
    let deferred = deferred::verify(library, session, |op| {
        Ok(OpCall::VerifyDigest {
            digest: final_digest(op)?,
            signature: signature.clone(),
        })
    });
    if let Some(result) = deferred {
        return result;
    }
    if let Some(digest) = digest_with(library, session, Kind::Verify, &[]) {
        return verify_digest(library, session, digest, signature);
    }
    empty(
        library,
        "C_VerifyFinal",
        &Request::VerifyFinal { session, signature },
    )
}

/// `C_VerifyRecoverInit` (5.15.5).
pub fn verify_recover_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    let request = Request::VerifyRecoverInit {
        session,
        mechanism,
        key,
    };
    empty(library, "C_VerifyRecoverInit", &request)
}

/// `C_VerifyRecover` (5.15.6).
pub fn verify_recover(
    library: &Library,
    session: SessionHandle,
    signature: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let signature = signature_bytes(signature)?;
    output(
        library,
        &Request::VerifyRecover {
            session,
            signature,
            out,
        },
        out,
    )
}

/// A signature to send: longer than a frame is `CKR_SIGNATURE_LEN_RANGE`.
fn signature_bytes(signature: &[u8]) -> Result<Vec<u8>, Error> {
    check_len(signature, CKR_SIGNATURE_LEN_RANGE)?;
    Ok(signature.to_vec())
}
