//! The safe side of the module, one file per chapter of the standard.
//!
//! Functions here take owned, checked Rust values (never a raw pointer) and
//! return `Result<T, Error>`; the `ffi` layer converts both ways. Answers
//! from the server are shape-checked: a response body other than the one a
//! request calls for is a broken peer, reported as `CKR_DEVICE_ERROR`.

pub mod attribute_cache;
pub mod crypto;
mod deferred;
pub mod general;
pub mod keys;
pub mod local;
pub mod objects;
pub mod sessions;
pub mod signing;
pub mod slots;

#[cfg(test)]
mod tests;

use cryptoki_sys::{
    CK_RV, CKR_BUFFER_TOO_SMALL, CKR_FUNCTION_NOT_SUPPORTED, CKR_TOKEN_NOT_PRESENT,
};
use hsmlink_protocol::{MAX_FRAME_BODY, Output, OutputSpec, Request, ResponseBody, Secret};

use crate::error::Error;
use crate::log;
use crate::state::{self, Library};

/// Every entry point not implemented yet: `CKR_CRYPTOKI_NOT_INITIALIZED`
/// before `C_Initialize`, `CKR_FUNCTION_NOT_SUPPORTED` after.
pub fn not_supported() -> Result<(), Error> {
    state::library()?;
    Err(Error::new(CKR_FUNCTION_NOT_SUPPORTED))
}

/// Sends `request`; a failure `CK_RV` from the server becomes the error,
/// success yields the response body for the caller to shape-check.
fn call(library: &Library, request: &Request) -> Result<ResponseBody, Error> {
    library.attributes.before(request);
    let response = library.transport.call(request)?;
    if response.rv.is_ok() {
        Ok(response.body)
    } else {
        Err(Error::from_wire(response.rv.0))
    }
}

/// Sends `request`, which produces output and was made with `spec`, and
/// returns what the caller's buffer gets, by the wire's size-query
/// convention:
/// - `CKR_OK` + `Output::Length` answers a length query (`LengthQuery`):
///   the operation stays active;
/// - `CKR_BUFFER_TOO_SMALL` + `Output::Length` (more than the capacity)
///   says the buffer is too small: the operation stays active, and the
///   length reaches the caller (which is why this cannot go through
///   [`call`], for which every failure is an error);
/// - `CKR_OK` + `Output::Data` (at most the capacity) is the output;
/// - any other `CK_RV` is the error, and the operation has ended.
///
/// Anything else (a length for a buffer that was big enough, data for a
/// length query, more data than room) is a broken peer.
fn output(library: &Library, request: &Request, spec: OutputSpec) -> Result<Output, Error> {
    let function = request.function_name();
    library.attributes.before(request);
    let response = library.transport.call(request)?;
    let too_small = response.rv.0 == wire_rv(CKR_BUFFER_TOO_SMALL);
    if !response.rv.is_ok() && !too_small {
        return Err(Error::from_wire(response.rv.0));
    }
    let output = match response.body {
        ResponseBody::Output(output) => output,
        other => return Err(unexpected(function, &other)),
    };
    let fits = match (&output, spec, too_small) {
        (Output::Length(_), OutputSpec::LengthQuery, false) => true,
        (Output::Length(needed), OutputSpec::Capacity(capacity), true) => *needed > capacity,
        (Output::Data(data), OutputSpec::Capacity(capacity), false) => {
            u64::try_from(data.len()).is_ok_and(|len| len <= capacity)
        }
        _ => false,
    };
    if !fits {
        log::error!(
            "protocol error: hsmlink-server answered {function} ({}) with rv {:#x} and {}",
            match spec {
                OutputSpec::LengthQuery => "length query",
                OutputSpec::Capacity(_) => "buffer given",
            },
            response.rv.0,
            match output {
                Output::Length(_) => "a length",
                Output::Data(_) => "data",
            }
        );
        return Err(Error::device());
    }
    Ok(output)
}

#[allow(clippy::useless_conversion)] // CK_RV is u32 on some targets
fn wire_rv(rv: CK_RV) -> u64 {
    u64::from(rv)
}

/// Longest input a request can carry: the frame limit.
// Lossless: usize is at least 32 bits wide on every target we build for.
const MAX_INPUT: usize = MAX_FRAME_BODY as usize;

/// An input longer than a frame could carry is `too_long` (the
/// `CKR_*_LEN_RANGE` of the call), refused before it is copied.
fn check_len(data: &[u8], too_long: CK_RV) -> Result<(), Error> {
    if data.len() > MAX_INPUT {
        return Err(Error::new(too_long));
    }
    Ok(())
}

/// An input as it goes on the wire (wiped after sending), under
/// [`check_len`].
fn secret(data: &[u8], too_long: CK_RV) -> Result<Secret, Error> {
    check_len(data, too_long)?;
    Ok(Secret::from_slice(data))
}

/// The server answered `function` with a body of the wrong shape.
fn unexpected(function: &str, body: &ResponseBody) -> Error {
    log::error!(
        "protocol error: hsmlink-server answered {function} with {}",
        body.variant_name()
    );
    Error::device()
}

/// Sends `request`, whose success carries no outputs: anything but
/// `ResponseBody::Empty` is a broken peer.
fn empty(library: &Library, function: &str, request: &Request) -> Result<(), Error> {
    match call(library, request)? {
        ResponseBody::Empty => Ok(()),
        other => Err(unexpected(function, &other)),
    }
}

/// For calls addressed to a slot's token: "no server reachable at all" is
/// `CKR_TOKEN_NOT_PRESENT` (the slot exists for the application, its token
/// is out of reach) rather than `CKR_DEVICE_ERROR`.
fn token_absent(e: Error) -> Error {
    e.unreachable_as(CKR_TOKEN_NOT_PRESENT)
}
