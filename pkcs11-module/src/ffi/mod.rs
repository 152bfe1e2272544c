//! The C ABI: every `C_*` entry point of PKCS#11 2.40 and 3.0.
//!
//! Only `C_GetFunctionList`, `C_GetInterfaceList` and `C_GetInterface` are
//! exported by name; everything else is reached through the static function
//! lists of `interface`. Each entry point is one call of `guard`, which
//! catches panics (a panic must never unwind into C), and inside it the
//! raw pointers are turned into checked Rust values (`out::OutBuf`,
//! `out::OutRef`, `out::OutArray`, `attributes::Template`, the PINs and
//! labels of `input`, handle newtypes) before the safe `client` layer is
//! called. Nothing outside this module sees a raw pointer. `attributes` is
//! the one place that knows the C representation of attribute values, both
//! ways; `mechanism` the one place that knows the C structures of mechanism
//! parameters; `out::OutBuf::deliver` the one place that applies section
//! 5.2 to the server's output answers.
//!
//! Section numbers in the doc comments refer to the PKCS#11 3.0 base
//! specification.

// This module is the C boundary: it must read and write the caller's memory
// through raw pointers and export `#[unsafe(no_mangle)]` symbols. It is the
// only place of the crate allowed to use `unsafe`; every block says why it is
// sound in a `// SAFETY:` comment.
#![allow(unsafe_code)]
// The entry points keep the names of the standard (`C_GetSlotList`).
#![allow(non_snake_case)]

mod attributes;
mod convert;
mod crypto;
/// The parsers of C structures, for the fuzz targets only.
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod general;
mod input;
mod interface;
mod mechanism;
mod message;
mod object;
mod out;
mod session;
mod slots;

#[cfg(test)]
mod tests;

use std::panic::{self, AssertUnwindSafe};

use cryptoki_sys::{CK_RV, CK_ULONG, CKR_GENERAL_ERROR, CKR_OK};

pub use self::interface::{C_GetFunctionList, C_GetInterface, C_GetInterfaceList};
use crate::error::{Error, RvName};
use crate::log;

/// Runs the body of entry point `function`: a panic becomes
/// `CKR_GENERAL_ERROR` (and one log line), an error its `CK_RV`, and the
/// result is logged at debug level.
fn guard(function: &'static str, body: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    // AssertUnwindSafe: after a panic nothing captured by `body` is used
    // again (the captures are raw pointers and plain values of this one
    // call), and the global state sits behind parking_lot locks, which hold
    // whole values and are released on unwind.
    let rv = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.rv(),
        Err(_) => {
            log::error!("{function}: internal error (panic caught), returning CKR_GENERAL_ERROR");
            CKR_GENERAL_ERROR
        }
    };
    log::debug!("{function} -> {}", RvName(rv));
    rv
}

/// A `CK_ULONG` from the application as a wire `u64` (always lossless).
#[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
fn wire(value: CK_ULONG) -> u64 {
    u64::from(value)
}

/// Entry points that later issues implement: one guarded call each,
/// `CKR_CRYPTOKI_NOT_INITIALIZED` before `C_Initialize`,
/// `CKR_FUNCTION_NOT_SUPPORTED` after. The arguments are not looked at.
macro_rules! not_supported {
    ($( $(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?); )*) => {$(
        $(#[$attr])*
        pub(super) extern "C" fn $name($($arg: $ty),*) -> CK_RV {
            crate::ffi::guard(stringify!($name), crate::client::not_supported)
        }
    )*};
}

use not_supported;
