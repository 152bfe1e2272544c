//! The one error type of the module: a `CK_RV`, chosen where the failure
//! happens, so that `?` carries it up to the C boundary unchanged.

use std::fmt;

use cryptoki_sys::*;
use hsmlink_protocol::{CodecError, FrameError};

/// A failed call: the `CK_RV` to return, and whether it failed because no
/// hsmlink-server could be reached at all (some calls report that case with
/// a code of their own, see [`Error::unreachable_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    rv: CK_RV,
    unreachable: bool,
}

impl Error {
    /// A failure with `rv`. `CKR_OK` is not a failure: asking for it is a
    /// bug, reported as `CKR_GENERAL_ERROR` rather than as success.
    pub const fn new(rv: CK_RV) -> Self {
        let rv = if rv == CKR_OK { CKR_GENERAL_ERROR } else { rv };
        Self {
            rv,
            unreachable: false,
        }
    }

    /// The server broke the protocol, a connection failed, or a value from
    /// the network does not fit: `CKR_DEVICE_ERROR`.
    pub const fn device() -> Self {
        Self::new(CKR_DEVICE_ERROR)
    }

    /// No configured hsmlink-server could be reached (connect, handshake or
    /// hello failed): `CKR_DEVICE_ERROR` unless the call maps it.
    pub const fn unreachable() -> Self {
        Self {
            rv: CKR_DEVICE_ERROR,
            unreachable: true,
        }
    }

    /// A `CK_RV` that came over the wire as a `u64`. One that does not fit
    /// this platform's `CK_ULONG`, or that claims success where a failure is
    /// expected, is a device error.
    pub fn from_wire(rv: u64) -> Self {
        match CK_RV::try_from(rv) {
            Ok(rv) if rv != CKR_OK => Self::new(rv),
            _ => Self::device(),
        }
    }

    pub const fn rv(self) -> CK_RV {
        self.rv
    }

    /// Reports "no server at all" as `rv` instead: for slot-level token
    /// queries, `CKR_TOKEN_NOT_PRESENT` tells the application more than
    /// `CKR_DEVICE_ERROR`.
    pub const fn unreachable_as(self, rv: CK_RV) -> Self {
        if self.unreachable {
            Self::new(rv)
        } else {
            self
        }
    }
}

impl From<CK_RV> for Error {
    fn from(rv: CK_RV) -> Self {
        Self::new(rv)
    }
}

impl From<FrameError> for Error {
    fn from(_: FrameError) -> Self {
        Self::device()
    }
}

impl From<CodecError> for Error {
    fn from(_: CodecError) -> Self {
        Self::device()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RvName(self.rv).fmt(f)
    }
}

impl std::error::Error for Error {}

/// Displays a `CK_RV` by its name (`CKR_SLOT_ID_INVALID`), or in hex if it
/// has none (vendor-defined codes).
#[derive(Clone, Copy, Debug)]
pub struct RvName(pub CK_RV);

impl fmt::Display for RvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rv_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "CKR_{:#x}", self.0),
        }
    }
}

macro_rules! rv_names {
    ($($name:ident),* $(,)?) => {
        /// The standard name of a `CK_RV`, if it has one.
        pub fn rv_name(rv: CK_RV) -> Option<&'static str> {
            $(if rv == $name { return Some(stringify!($name)); })*
            None
        }
    };
}

rv_names!(
    CKR_OK,
    CKR_CANCEL,
    CKR_HOST_MEMORY,
    CKR_SLOT_ID_INVALID,
    CKR_GENERAL_ERROR,
    CKR_FUNCTION_FAILED,
    CKR_ARGUMENTS_BAD,
    CKR_NO_EVENT,
    CKR_NEED_TO_CREATE_THREADS,
    CKR_CANT_LOCK,
    CKR_ATTRIBUTE_READ_ONLY,
    CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_ACTION_PROHIBITED,
    CKR_DATA_INVALID,
    CKR_DATA_LEN_RANGE,
    CKR_DEVICE_ERROR,
    CKR_DEVICE_MEMORY,
    CKR_DEVICE_REMOVED,
    CKR_ENCRYPTED_DATA_INVALID,
    CKR_ENCRYPTED_DATA_LEN_RANGE,
    CKR_AEAD_DECRYPT_FAILED,
    CKR_FUNCTION_CANCELED,
    CKR_FUNCTION_NOT_PARALLEL,
    CKR_FUNCTION_NOT_SUPPORTED,
    CKR_KEY_HANDLE_INVALID,
    CKR_KEY_SIZE_RANGE,
    CKR_KEY_TYPE_INCONSISTENT,
    CKR_KEY_NOT_NEEDED,
    CKR_KEY_CHANGED,
    CKR_KEY_NEEDED,
    CKR_KEY_INDIGESTIBLE,
    CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_KEY_NOT_WRAPPABLE,
    CKR_KEY_UNEXTRACTABLE,
    CKR_MECHANISM_INVALID,
    CKR_MECHANISM_PARAM_INVALID,
    CKR_OBJECT_HANDLE_INVALID,
    CKR_OPERATION_ACTIVE,
    CKR_OPERATION_NOT_INITIALIZED,
    CKR_PIN_INCORRECT,
    CKR_PIN_INVALID,
    CKR_PIN_LEN_RANGE,
    CKR_PIN_EXPIRED,
    CKR_PIN_LOCKED,
    CKR_SESSION_CLOSED,
    CKR_SESSION_COUNT,
    CKR_SESSION_HANDLE_INVALID,
    CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    CKR_SESSION_READ_ONLY,
    CKR_SESSION_EXISTS,
    CKR_SESSION_READ_ONLY_EXISTS,
    CKR_SESSION_READ_WRITE_SO_EXISTS,
    CKR_SIGNATURE_INVALID,
    CKR_SIGNATURE_LEN_RANGE,
    CKR_TEMPLATE_INCOMPLETE,
    CKR_TEMPLATE_INCONSISTENT,
    CKR_TOKEN_NOT_PRESENT,
    CKR_TOKEN_NOT_RECOGNIZED,
    CKR_TOKEN_WRITE_PROTECTED,
    CKR_UNWRAPPING_KEY_HANDLE_INVALID,
    CKR_UNWRAPPING_KEY_SIZE_RANGE,
    CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_NOT_LOGGED_IN,
    CKR_USER_PIN_NOT_INITIALIZED,
    CKR_USER_TYPE_INVALID,
    CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    CKR_USER_TOO_MANY_TYPES,
    CKR_WRAPPED_KEY_INVALID,
    CKR_WRAPPED_KEY_LEN_RANGE,
    CKR_WRAPPING_KEY_HANDLE_INVALID,
    CKR_WRAPPING_KEY_SIZE_RANGE,
    CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
    CKR_RANDOM_SEED_NOT_SUPPORTED,
    CKR_RANDOM_NO_RNG,
    CKR_DOMAIN_PARAMS_INVALID,
    CKR_CURVE_NOT_SUPPORTED,
    CKR_BUFFER_TOO_SMALL,
    CKR_SAVED_STATE_INVALID,
    CKR_INFORMATION_SENSITIVE,
    CKR_STATE_UNSAVEABLE,
    CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_CRYPTOKI_ALREADY_INITIALIZED,
    CKR_MUTEX_BAD,
    CKR_MUTEX_NOT_LOCKED,
    CKR_NEW_PIN_MODE,
    CKR_NEXT_OTP,
    CKR_EXCEEDED_MAX_ITERATIONS,
    CKR_FIPS_SELF_TEST_FAILED,
    CKR_LIBRARY_LOAD_FAILED,
    CKR_PIN_TOO_WEAK,
    CKR_PUBLIC_KEY_INVALID,
    CKR_FUNCTION_REJECTED,
    CKR_TOKEN_RESOURCE_EXCEEDED,
    CKR_OPERATION_CANCEL_FAILED,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_is_never_an_error() {
        assert_eq!(Error::new(CKR_OK).rv(), CKR_GENERAL_ERROR);
        assert_eq!(Error::from_wire(0).rv(), CKR_DEVICE_ERROR);
    }

    #[test]
    fn unreachable_maps_only_when_unreachable() {
        let e = Error::unreachable();
        assert_eq!(e.rv(), CKR_DEVICE_ERROR);
        assert_eq!(
            e.unreachable_as(CKR_TOKEN_NOT_PRESENT).rv(),
            CKR_TOKEN_NOT_PRESENT
        );
        let e = Error::from_wire(0x3); // CKR_SLOT_ID_INVALID
        assert_eq!(
            e.unreachable_as(CKR_TOKEN_NOT_PRESENT).rv(),
            CKR_SLOT_ID_INVALID
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            Error::new(CKR_SLOT_ID_INVALID).to_string(),
            "CKR_SLOT_ID_INVALID"
        );
        assert_eq!(RvName(0x8000_1234).to_string(), "CKR_0x80001234");
    }
}
