//! Encryption (5.8), decryption (5.10), message digesting (5.12) and the
//! dual-function calls (5.17): forwarded to the server, outputs by the
//! size-query convention of [`super::output`]. The inits are deferred
//! ([`super::deferred`]): `C_EncryptInit` + length query + `C_Encrypt` is
//! one frame; calls that cannot carry an init (updates, finals,
//! `C_DigestKey`, the dual functions) send it alone first.
//!
//! The dual functions `C_SignEncryptUpdate` and `C_DecryptVerifyUpdate`
//! meet the local hash of hash-then-sign mechanisms: when the session's
//! signature (verification) is hashed in the module, the server's operation
//! expects a digest, so the call goes out as `EncryptUpdate`
//! (`DecryptUpdate`) and the plaintext is hashed here.

use cryptoki_sys::{CKR_DATA_LEN_RANGE, CKR_ENCRYPTED_DATA_LEN_RANGE};
use hsmlink_protocol::{
    Mechanism, ObjectHandle, OpCall, Output, OutputSpec, Request, SessionHandle,
};

use super::deferred::{self, UNLIMITED, flush};
use super::local::{Kind, Step};
use super::{empty, output, secret};
use crate::error::Error;
use crate::state::Library;

/// `C_EncryptInit` (5.8.1): deferred.
pub fn encrypt_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    deferred::init(library, session, Kind::Encrypt, mechanism, key)
}

/// `C_Encrypt` (5.8.2).
pub fn encrypt(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let deferred = deferred::output(
        library,
        session,
        Kind::Encrypt,
        Step::Single,
        data,
        out,
        |_| {
            Ok(OpCall::Encrypt {
                data: secret(data, CKR_DATA_LEN_RANGE)?,
                out: UNLIMITED,
            })
        },
    );
    if let Some(result) = deferred {
        return result;
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    output(library, &Request::Encrypt { session, data, out }, out)
}

/// `C_EncryptUpdate` (5.8.3).
pub fn encrypt_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Encrypt)?;
    output(library, &Request::EncryptUpdate { session, data, out }, out)
}

/// `C_EncryptFinal` (5.8.4).
pub fn encrypt_final(
    library: &Library,
    session: SessionHandle,
    out: OutputSpec,
) -> Result<Output, Error> {
    flush(library, session, Kind::Encrypt)?;
    output(library, &Request::EncryptFinal { session, out }, out)
}

/// `C_DecryptInit` (5.10.1): deferred.
pub fn decrypt_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    deferred::init(library, session, Kind::Decrypt, mechanism, key)
}

/// `C_Decrypt` (5.10.2).
pub fn decrypt(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let deferred = deferred::output(
        library,
        session,
        Kind::Decrypt,
        Step::Single,
        data,
        out,
        |_| {
            Ok(OpCall::Decrypt {
                data: secret(data, CKR_ENCRYPTED_DATA_LEN_RANGE)?,
                out: UNLIMITED,
            })
        },
    );
    if let Some(result) = deferred {
        return result;
    }
    let data = secret(data, CKR_ENCRYPTED_DATA_LEN_RANGE)?;
    output(library, &Request::Decrypt { session, data, out }, out)
}

/// `C_DecryptUpdate` (5.10.3).
pub fn decrypt_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let data = secret(data, CKR_ENCRYPTED_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Decrypt)?;
    output(library, &Request::DecryptUpdate { session, data, out }, out)
}

/// `C_DecryptFinal` (5.10.4).
pub fn decrypt_final(
    library: &Library,
    session: SessionHandle,
    out: OutputSpec,
) -> Result<Output, Error> {
    flush(library, session, Kind::Decrypt)?;
    output(library, &Request::DecryptFinal { session, out }, out)
}

/// `C_DigestInit` (5.12.1): deferred.
pub fn digest_init(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
) -> Result<(), Error> {
    // No key: the handle is never sent.
    deferred::init(library, session, Kind::Digest, mechanism, ObjectHandle(0))
}

/// `C_Digest` (5.12.2).
pub fn digest(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let deferred = deferred::output(
        library,
        session,
        Kind::Digest,
        Step::Single,
        data,
        out,
        |_| {
            Ok(OpCall::Digest {
                data: secret(data, CKR_DATA_LEN_RANGE)?,
                out: UNLIMITED,
            })
        },
    );
    if let Some(result) = deferred {
        return result;
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    output(library, &Request::Digest { session, data, out }, out)
}

/// `C_DigestUpdate` (5.12.3).
pub fn digest_update(library: &Library, session: SessionHandle, data: &[u8]) -> Result<(), Error> {
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Digest)?;
    empty(
        library,
        "C_DigestUpdate",
        &Request::DigestUpdate { session, data },
    )
}

/// `C_DigestKey` (5.12.4): the key's value never leaves the server.
pub fn digest_key(
    library: &Library,
    session: SessionHandle,
    key: ObjectHandle,
) -> Result<(), Error> {
    flush(library, session, Kind::Digest)?;
    empty(library, "C_DigestKey", &Request::DigestKey { session, key })
}

/// `C_DigestFinal` (5.12.5).
pub fn digest_final(
    library: &Library,
    session: SessionHandle,
    out: OutputSpec,
) -> Result<Output, Error> {
    flush(library, session, Kind::Digest)?;
    output(library, &Request::DigestFinal { session, out }, out)
}

/// `C_DigestEncryptUpdate` (5.17.1).
pub fn digest_encrypt_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Digest)?;
    flush(library, session, Kind::Encrypt)?;
    output(
        library,
        &Request::DigestEncryptUpdate { session, data, out },
        out,
    )
}

/// `C_DecryptDigestUpdate` (5.17.2).
pub fn decrypt_digest_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    let data = secret(data, CKR_ENCRYPTED_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Decrypt)?;
    flush(library, session, Kind::Digest)?;
    output(
        library,
        &Request::DecryptDigestUpdate { session, data, out },
        out,
    )
}

/// `C_SignEncryptUpdate` (5.17.3). With a signature hashed in the module:
/// `EncryptUpdate`, and the part hashed here once the server has encrypted
/// it (a length query or a too-small buffer hashes nothing: the caller will
/// pass the same part again).
pub fn sign_encrypt_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    if !library.local.hashing(session, Kind::Sign) {
        flush(library, session, Kind::Sign)?;
    }
    if library.local.hashing(session, Kind::Sign) {
        let output = encrypt_update(library, session, data, out)?;
        if let Output::Data(_) = output {
            super::signing::hash_part(library, session, Kind::Sign, data);
        }
        return Ok(output);
    }
    let data = secret(data, CKR_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Encrypt)?;
    output(
        library,
        &Request::SignEncryptUpdate { session, data, out },
        out,
    )
}

/// `C_DecryptVerifyUpdate` (5.17.4). With a verification hashed in the
/// module: `DecryptUpdate`, and the plaintext hashed here.
pub fn decrypt_verify_update(
    library: &Library,
    session: SessionHandle,
    data: &[u8],
    out: OutputSpec,
) -> Result<Output, Error> {
    if !library.local.hashing(session, Kind::Verify) {
        flush(library, session, Kind::Verify)?;
    }
    if library.local.hashing(session, Kind::Verify) {
        let output = decrypt_update(library, session, data, out)?;
        if let Output::Data(plain) = &output {
            super::signing::hash_part(library, session, Kind::Verify, plain.as_bytes());
        }
        return Ok(output);
    }
    let data = secret(data, CKR_ENCRYPTED_DATA_LEN_RANGE)?;
    flush(library, session, Kind::Decrypt)?;
    output(
        library,
        &Request::DecryptVerifyUpdate { session, data, out },
        out,
    )
}
