//! The answer to a [`crate::Request`]: a `CK_RV` and the outputs.
//!
//! The body's shape depends on the request; the module checks that the shape
//! is the one it expects and treats anything else as a device error.

use serde::{Deserialize, Serialize};

use crate::attribute::AttributeResult;
use crate::secret::Secret;
use crate::types::{
    MechanismInfo, MechanismType, ObjectHandle, Rv, SessionHandle, SessionInfo, SlotId, SlotInfo,
    TokenInfo,
};

/// How much output the caller can take: the PKCS#11 size-query convention
/// (NULL output pointer) or the capacity of its buffer.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputSpec {
    /// The caller passed a NULL buffer: it wants the length only, and the
    /// operation must go on as if nothing happened.
    LengthQuery,
    /// The caller's buffer holds this many bytes.
    Capacity(u64),
}

/// Output bytes, or only their length (after a length query, or with
/// `CKR_BUFFER_TOO_SMALL`, both of which keep the operation alive).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Length(u64),
    Data(Secret),
}

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub rv: Rv,
    pub body: ResponseBody,
}

impl Response {
    pub fn ok(body: ResponseBody) -> Self {
        Self { rv: Rv::OK, body }
    }

    /// A failure with no outputs.
    pub fn error(rv: u64) -> Self {
        Self {
            rv: Rv(rv),
            body: ResponseBody::Empty,
        }
    }
}

/// Variants are appended, never reordered.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// No outputs (errors, and calls that return only a `CK_RV`).
    Empty,
    SlotList(Vec<SlotId>),
    SlotInfo(SlotInfo),
    TokenInfo(TokenInfo),
    MechanismList(Vec<MechanismType>),
    MechanismInfo(MechanismInfo),
    Session(SessionHandle),
    SessionInfo(SessionInfo),
    Object(ObjectHandle),
    KeyPair {
        public: ObjectHandle,
        private: ObjectHandle,
    },
    Objects(Vec<ObjectHandle>),
    ObjectSize(u64),
    Attributes(Vec<AttributeResult>),
    Output(Output),
    Random(Secret),
    /// Answer to `SignInit`/`VerifyInit` of a hash-then-sign mechanism whose
    /// hash input starts with a value only the server can compute from the
    /// key: SM2's Z (GM/T 0009, from the user id and the public key). The
    /// module hashes `prefix || message`.
    HashPrefix(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to `Request::Begin` whose init succeeded: the operation was
    /// started, then the call ran; the response's `CK_RV` is the call's,
    /// and this its output (`None` for a verification or an error).
    Begun(Option<Output>),
}

impl ResponseBody {
    /// The variant's name, for error messages that must not print data.
    pub fn variant_name(&self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::SlotList(_) => "SlotList",
            Self::SlotInfo(_) => "SlotInfo",
            Self::TokenInfo(_) => "TokenInfo",
            Self::MechanismList(_) => "MechanismList",
            Self::MechanismInfo(_) => "MechanismInfo",
            Self::Session(_) => "Session",
            Self::SessionInfo(_) => "SessionInfo",
            Self::Object(_) => "Object",
            Self::KeyPair { .. } => "KeyPair",
            Self::Objects(_) => "Objects",
            Self::ObjectSize(_) => "ObjectSize",
            Self::Attributes(_) => "Attributes",
            Self::Output(_) => "Output",
            Self::Random(_) => "Random",
            Self::HashPrefix(_) => "HashPrefix",
            Self::Begun(_) => "Begun",
        }
    }
}
