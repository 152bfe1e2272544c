//! Key management (5.18) and random numbers (5.19).

use cryptoki_sys::{CKR_DATA_LEN_RANGE, CKR_WRAPPED_KEY_LEN_RANGE};
use hsmlink_protocol::{
    Attribute, Mechanism, ObjectHandle, Output, OutputSpec, Request, ResponseBody, SessionHandle,
};

use super::{call, check_len, empty, output, secret, unexpected};
use crate::error::Error;
use crate::log;
use crate::state::Library;

/// Random bytes asked for in one request: far below the frame limit, so a
/// big `C_GenerateRandom` is a loop of bounded frames.
pub const RANDOM_CHUNK: usize = 1024 * 1024;

/// `C_GenerateKey` (5.18.1).
pub fn generate_key(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    let request = Request::GenerateKey {
        session,
        mechanism,
        template,
    };
    object(library, "C_GenerateKey", &request)
}

/// `C_GenerateKeyPair` (5.18.2): (public key, private key).
pub fn generate_key_pair(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    public_template: Vec<Attribute>,
    private_template: Vec<Attribute>,
) -> Result<(ObjectHandle, ObjectHandle), Error> {
    let request = Request::GenerateKeyPair {
        session,
        mechanism,
        public_template,
        private_template,
    };
    match call(library, &request)? {
        ResponseBody::KeyPair { public, private } => Ok((public, private)),
        other => Err(unexpected("C_GenerateKeyPair", &other)),
    }
}

/// `C_WrapKey` (5.18.3).
pub fn wrap_key(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    wrapping_key: ObjectHandle,
    key: ObjectHandle,
    out: OutputSpec,
) -> Result<Output, Error> {
    let request = Request::WrapKey {
        session,
        mechanism,
        wrapping_key,
        key,
        out,
    };
    output(library, &request, out)
}

/// `C_UnwrapKey` (5.18.4).
pub fn unwrap_key(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    unwrapping_key: ObjectHandle,
    wrapped_key: &[u8],
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    check_len(wrapped_key, CKR_WRAPPED_KEY_LEN_RANGE)?;
    let request = Request::UnwrapKey {
        session,
        mechanism,
        unwrapping_key,
        wrapped_key: wrapped_key.to_vec(),
        template,
    };
    object(library, "C_UnwrapKey", &request)
}

/// `C_DeriveKey` (5.18.5).
pub fn derive_key(
    library: &Library,
    session: SessionHandle,
    mechanism: Mechanism,
    base_key: ObjectHandle,
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    let request = Request::DeriveKey {
        session,
        mechanism,
        base_key,
        template,
    };
    object(library, "C_DeriveKey", &request)
}

fn object(library: &Library, function: &str, request: &Request) -> Result<ObjectHandle, Error> {
    match call(library, request)? {
        ResponseBody::Object(object) => Ok(object),
        other => Err(unexpected(function, &other)),
    }
}

/// `C_SeedRandom` (5.19.1).
pub fn seed_random(library: &Library, session: SessionHandle, seed: &[u8]) -> Result<(), Error> {
    let seed = secret(seed, CKR_DATA_LEN_RANGE)?;
    empty(
        library,
        "C_SeedRandom",
        &Request::SeedRandom { session, seed },
    )
}

/// `C_GenerateRandom` (5.19.2): `len` bytes, fetched in requests of at
/// most [`RANDOM_CHUNK`] bytes and handed to `sink` in order. `len` 0 still
/// asks the server once (it judges the session). An answer of another
/// length than asked for is a broken peer.
pub fn generate_random(
    library: &Library,
    session: SessionHandle,
    len: usize,
    mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut remaining = len;
    loop {
        let chunk = remaining.min(RANDOM_CHUNK);
        let request = Request::GenerateRandom {
            session,
            len: chunk as u64,
        };
        match call(library, &request)? {
            ResponseBody::Random(bytes) if bytes.len() == chunk => sink(bytes.as_bytes())?,
            ResponseBody::Random(bytes) => {
                log::error!(
                    "protocol error: hsmlink-server answered C_GenerateRandom for {chunk} \
                     byte(s) with {}",
                    bytes.len()
                );
                return Err(Error::device());
            }
            other => return Err(unexpected("C_GenerateRandom", &other)),
        }
        remaining -= chunk;
        if remaining == 0 {
            return Ok(());
        }
    }
}
