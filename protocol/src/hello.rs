//! The first exchange on every connection.
//!
//! The client sends [`Hello`] with the range of versions it speaks and the
//! identity of its application instance; the server answers with the version
//! both will use (or a refusal) and its own version. Only then do requests flow.

use serde::{Deserialize, Serialize};

use crate::types::AppInstance;
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Frames carrying a hello travel with this version number in their header,
/// whatever versions the peers speak, so any future peer can read them.
pub const HELLO_FRAME_VERSION: u16 = 0;

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub min_version: u16,
    pub max_version: u16,
    /// Client software and version, for the server's logs ("hsmlink-pkcs11 0.1.0").
    pub client: String,
    /// Which loaded instance of the module this connection belongs to: sessions
    /// and login state are per application, and one application may hold many
    /// connections.
    pub app_instance: AppInstance,
    /// Process id of the application, for the audit trail only.
    pub pid: u32,
}

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Accepted {
        version: u16,
        /// Server software and version ("hsmlink-server 0.1.0").
        server: String,
        /// The tenant the client certificate names, as the server resolved it.
        tenant: String,
    },
    Rejected {
        reason: String,
    },
}

impl Hello {
    pub fn new(client: String, app_instance: AppInstance, pid: u32) -> Self {
        Self {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client,
            app_instance,
            pid,
        }
    }
}

/// The highest version both ranges contain, if any.
pub fn negotiate(client_min: u16, client_max: u16) -> Option<u16> {
    let high = client_max.min(PROTOCOL_VERSION);
    let low = client_min.max(MIN_PROTOCOL_VERSION);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(1, u16::MAX), Some(PROTOCOL_VERSION));
        assert_eq!(negotiate(0, 1), Some(1));
        assert_eq!(negotiate(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 5), None);
        assert_eq!(negotiate(3, 2), None);
    }
}
