//! Identifiers and the info structures of PKCS#11, in wire form.
//!
//! Every `CK_ULONG` travels as a `u64` (never cut to 32 bits), wrapped in a
//! newtype so that a slot id cannot be passed where a session handle is meant.
//! Text fields travel as plain strings; the module pads them to the fixed,
//! blank-padded widths of the C structures.

use serde::{Deserialize, Serialize};

macro_rules! ulong_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

ulong_newtype!(
    /// A `CK_RV`.
    Rv
);
ulong_newtype!(
    /// A slot id as the tenant sees it (scoped to the tenant).
    SlotId
);
ulong_newtype!(
    /// A session handle as the application sees it (scoped to the application instance).
    SessionHandle
);
ulong_newtype!(
    /// An object handle (scoped to the tenant; stable for token objects).
    ObjectHandle
);
ulong_newtype!(
    /// A `CK_MECHANISM_TYPE`.
    MechanismType
);
ulong_newtype!(
    /// A `CK_ATTRIBUTE_TYPE`.
    AttributeType
);
ulong_newtype!(
    /// A `CK_USER_TYPE` (`CKU_SO`, `CKU_USER`, `CKU_CONTEXT_SPECIFIC`).
    UserType
);

impl Rv {
    pub const OK: Rv = Rv(0);

    pub fn is_ok(self) -> bool {
        self == Self::OK
    }
}

/// One loaded instance of the module in one process: a random id drawn at
/// `C_Initialize`. Sessions and login state belong to it.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppInstance(pub [u8; 16]);

/// A `CK_VERSION`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

/// `CK_SLOT_INFO`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub description: String,
    pub manufacturer_id: String,
    pub flags: u64,
    pub hardware_version: Version,
    pub firmware_version: Version,
}

/// `CK_TOKEN_INFO`. Counts use `u64`; the module maps the standard's
/// "unavailable" and "effectively infinite" values (`CK_UNAVAILABLE_INFORMATION`,
/// `CK_EFFECTIVELY_INFINITE`), which travel as [`TokenInfo::UNAVAILABLE`] and 0.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer_id: String,
    pub model: String,
    pub serial_number: String,
    pub flags: u64,
    pub max_session_count: u64,
    pub session_count: u64,
    pub max_rw_session_count: u64,
    pub rw_session_count: u64,
    pub max_pin_len: u64,
    pub min_pin_len: u64,
    pub total_public_memory: u64,
    pub free_public_memory: u64,
    pub total_private_memory: u64,
    pub free_private_memory: u64,
    pub hardware_version: Version,
    pub firmware_version: Version,
    /// `YYYYMMDDhhmmss00` for tokens with a clock, empty otherwise.
    pub utc_time: String,
}

impl TokenInfo {
    /// `CK_UNAVAILABLE_INFORMATION` on the wire (all ones, whatever the C width).
    pub const UNAVAILABLE: u64 = u64::MAX;
}

/// `CK_MECHANISM_INFO`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanismInfo {
    pub min_key_size: u64,
    pub max_key_size: u64,
    pub flags: u64,
}

/// `CK_SESSION_INFO`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub slot_id: SlotId,
    pub state: u64,
    pub flags: u64,
    pub device_error: u64,
}
