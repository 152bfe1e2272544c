//! The built-in software HSM (driver `soft`): its mechanism table, its key
//! hierarchy ([`keys`]), PIN hashes ([`pins`]) and partitions
//! ([`partition`], a [`crate::driver::PartitionDriver`]).

pub mod integrity;
pub mod keys;
pub mod mechanisms;
pub mod operations;
pub mod partition;
pub mod pins;
pub mod selftests;

/// `CK_TOKEN_INFO.model` of a soft-driver token.
pub const MODEL: &str = "soft";
