//! Signing and MACing (5.13) and verifying (5.15), with the hash of
//! hash-then-sign mechanisms computed in the module (see [`super::local`]).
//!
//! For those mechanisms:
//! - `C_SignInit`/`C_VerifyInit` go to the server with the original
//!   mechanism; on success a local hash starts, seeded with the server's
//!   `HashPrefix` (SM2's Z) if it sent one;
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

use cryptoki_sys::{CKR_DATA_LEN_RANGE, CKR_OPERATION_ACTIVE, CKR_SIGNATURE_LEN_RANGE};
use hsmlink_protocol::{
    Mechanism, ObjectHandle, Output, OutputSpec, Request, ResponseBody, Secret, SessionHandle,
};

use super::local::{HashAlg, Hasher, Kind};
use super::{call, check_len, empty, output, secret, unexpected};
use crate::error::Error;
use crate::log;
use crate::state::Library;

/// An SM2 Z value is an SM3 digest; a longer "prefix" is a broken peer.
const MAX_PREFIX: usize = 64;

/// `C_SignInit` (5.13.1).
pub fn sign_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    let hash = HashAlg::of(mechanism.mechanism);
    let request = Request::SignInit {
        session,
        mechanism,
        key,
    };
    init(library, session, Kind::Sign, hash, "C_SignInit", &request)
}

/// `C_VerifyInit` (5.15.1).
pub fn verify_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    let hash = HashAlg::of(mechanism.mechanism);
    let request = Request::VerifyInit {
        session,
        mechanism,
        key,
    };
    init(
        library,
        session,
        Kind::Verify,
        hash,
        "C_VerifyInit",
        &request,
    )
}

/// Sends an init; on success, starts the local hash of a hash-then-sign
/// mechanism (or makes sure no stale one is left).
fn init(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    hash: Option<HashAlg>,
    function: &str,
    request: &Request,
) -> Result<(), Error> {
    let body = call(library, request)?;
    let hasher = match (hash, body) {
        (None, ResponseBody::Empty) => None,
        (Some(alg), ResponseBody::Empty) if alg != HashAlg::Sm3 => Some(Hasher::new(alg)),
        (Some(HashAlg::Sm3), ResponseBody::HashPrefix(prefix)) if prefix.len() <= MAX_PREFIX => {
            let mut hasher = Hasher::new(HashAlg::Sm3);
            hasher.update(&prefix);
            Some(hasher)
        }
        (_, other) => {
            // The server's operation is active; ours cannot be. Say so in
            // the log: the application only sees CKR_DEVICE_ERROR.
            log::error!("{function}: cannot hash locally with this answer");
            return Err(unexpected(function, &other));
        }
    };
    match hasher {
        Some(hasher) => library.local.start(session, kind, hasher),
        None => library.local.end(session, kind),
    }
    Ok(())
}

/// Hashes `data` into the local operation, if there is one: `false` if
/// there is none. The hash runs outside the lock.
pub(super) fn hash_part(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    data: &[u8],
) -> bool {
    let Some(mut op) = library.local.take(session, kind) else {
        return false;
    };
    op.hasher.update(data);
    op.updated = true;
    library.local.put_back(session, kind, op);
    true
}

/// The digest of the local operation's data so far followed by `data`
/// (`C_Sign`, `C_Verify`), the local state unchanged; `None` without a
/// local operation.
fn digest_with(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    data: &[u8],
) -> Option<Result<Secret, Error>> {
    let (updated, mut hasher) = library
        .local
        .with(session, kind, |op| (op.updated, op.hasher.clone()))?;
    if updated {
        return Some(Err(Error::new(CKR_OPERATION_ACTIVE)));
    }
    hasher.update(data);
    Some(Ok(hasher.digest()))
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
    if let Some(digest) = digest_with(library, session, Kind::Sign, data) {
        return sign_digest(library, session, digest?, out);
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    output(library, &Request::Sign { session, data, out }, out)
}

/// `C_SignUpdate` (5.13.3): no frame for a hash-then-sign mechanism.
pub fn sign_update(library: &Library, session: SessionHandle, data: &[u8]) -> Result<(), Error> {
    if hash_part(library, session, Kind::Sign, data) {
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
    if let Some(digest) = library
        .local
        .with(session, Kind::Sign, |op| op.hasher.digest())
    {
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
    if let Some(digest) = digest_with(library, session, Kind::Verify, data) {
        return verify_digest(library, session, digest?, signature);
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
    if hash_part(library, session, Kind::Verify, data) {
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
    if let Some(digest) = library
        .local
        .with(session, Kind::Verify, |op| op.hasher.digest())
    {
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
