//! A `C_*Init` carried with the operation's first call.
//!
//! The module answers `C_SignInit` (and the other single-part inits) at
//! once and sends the init only with the call that needs the server:
//! [`crate::Request::Begin`] holds the init's mechanism and key and one
//! [`OpCall`]. The server runs the init, then the call, exactly as if they
//! had come in two frames; the application's Init + length query + call
//! cost one round trip.
//!
//! `OpCall` is its own enum, not a boxed `Request`, so a `Begin` cannot
//! nest (a decoder must never recurse on what a peer sends).

use serde::{Deserialize, Serialize};

use crate::mechanism::Mechanism;
use crate::request::Request;
use crate::response::OutputSpec;
use crate::secret::Secret;
use crate::types::{ObjectHandle, SessionHandle};

/// The single-part calls that can carry their operation's init. Variants
/// are appended, never reordered.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpCall {
    Encrypt {
        data: Secret,
        out: OutputSpec,
    },
    Decrypt {
        data: Secret,
        out: OutputSpec,
    },
    Digest {
        data: Secret,
        out: OutputSpec,
    },
    Sign {
        data: Secret,
        out: OutputSpec,
    },
    /// `Request::SignDigest`: hash-then-sign hashed in the module.
    SignDigest {
        digest: Secret,
        out: OutputSpec,
    },
    Verify {
        data: Secret,
        signature: Vec<u8>,
    },
    /// `Request::VerifyDigest`.
    VerifyDigest {
        digest: Secret,
        signature: Vec<u8>,
    },
}

impl OpCall {
    /// The init this call continues, for `session` with `mechanism` and
    /// `key`; `None` when the key does not fit the call (digesting takes
    /// none, everything else one).
    pub fn init(
        &self,
        session: SessionHandle,
        mechanism: Mechanism,
        key: Option<ObjectHandle>,
    ) -> Option<Request> {
        Some(match (self, key) {
            (Self::Digest { .. }, None) => Request::DigestInit { session, mechanism },
            (Self::Digest { .. }, Some(_)) | (_, None) => return None,
            (Self::Encrypt { .. }, Some(key)) => Request::EncryptInit {
                session,
                mechanism,
                key,
            },
            (Self::Decrypt { .. }, Some(key)) => Request::DecryptInit {
                session,
                mechanism,
                key,
            },
            (Self::Sign { .. } | Self::SignDigest { .. }, Some(key)) => Request::SignInit {
                session,
                mechanism,
                key,
            },
            (Self::Verify { .. } | Self::VerifyDigest { .. }, Some(key)) => Request::VerifyInit {
                session,
                mechanism,
                key,
            },
        })
    }

    /// The call as the request it stands for.
    pub fn into_request(self, session: SessionHandle) -> Request {
        match self {
            Self::Encrypt { data, out } => Request::Encrypt { session, data, out },
            Self::Decrypt { data, out } => Request::Decrypt { session, data, out },
            Self::Digest { data, out } => Request::Digest { session, data, out },
            Self::Sign { data, out } => Request::Sign { session, data, out },
            Self::SignDigest { digest, out } => Request::SignDigest {
                session,
                digest,
                out,
            },
            Self::Verify { data, signature } => Request::Verify {
                session,
                data,
                signature,
            },
            Self::VerifyDigest { digest, signature } => Request::VerifyDigest {
                session,
                digest,
                signature,
            },
        }
    }

    /// The PKCS#11 function of the call, for logs.
    pub fn function_name(&self) -> &'static str {
        match self {
            Self::Encrypt { .. } => "C_Encrypt",
            Self::Decrypt { .. } => "C_Decrypt",
            Self::Digest { .. } => "C_Digest",
            Self::Sign { .. } | Self::SignDigest { .. } => "C_Sign",
            Self::Verify { .. } | Self::VerifyDigest { .. } => "C_Verify",
        }
    }
}
