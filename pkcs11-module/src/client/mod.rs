//! The safe side of the module, one file per chapter of the standard.
//!
//! Functions here take owned, checked Rust values (never a raw pointer) and
//! return `Result<T, Error>`; the `ffi` layer converts both ways. Answers
//! from the server are shape-checked: a response body other than the one a
//! request calls for is a broken peer, reported as `CKR_DEVICE_ERROR`.

pub mod general;
pub mod objects;
pub mod sessions;
pub mod slots;

#[cfg(test)]
mod tests;

use cryptoki_sys::{CKR_FUNCTION_NOT_SUPPORTED, CKR_TOKEN_NOT_PRESENT};
use hsmlink_protocol::{Request, ResponseBody};

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
    let response = library.transport.call(request)?;
    if response.rv.is_ok() {
        Ok(response.body)
    } else {
        Err(Error::from_wire(response.rv.0))
    }
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
