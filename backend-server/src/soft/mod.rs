//! The built-in software HSM (driver `soft`).
//!
//! In this issue it contributes what a fresh partition looks like: its
//! mechanism table and its token model. Objects, keys and the partition's
//! master key arrive with the token issue.

pub mod mechanisms;

/// `CK_TOKEN_INFO.model` of a soft-driver token.
pub const MODEL: &str = "soft";
