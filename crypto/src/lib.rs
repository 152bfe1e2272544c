//! hsmlink-crypto: the cryptographic engines of hsmlink's software HSM.
//!
//! Pure functions and small state machines over bytes, free of PKCS#11
//! sessions, handles and attributes. The server's `soft` driver maps
//! mechanisms and their parameters onto these calls and each
//! [`CryptoError`] onto its `CKR_*` code. One primitive is written here,
//! for speed: SM4 by T-tables ([`sm4_fast`], checked against the `sm4`
//! crate); every other comes from a RustCrypto (or dalek) crate; this crate
//! chooses, checks parameters, buffers for multi-part operations and
//! encodes.
#![forbid(unsafe_code)]

pub mod cipher;
pub mod digest;
pub mod ec;
pub mod error;
pub mod keyblock;
pub mod keywrap;
pub mod mac;
pub mod prepared;
pub mod rng;
pub mod rsa;
pub mod selftest;
pub mod sm2;
pub mod sm2_exchange;
pub mod sm4_fast;
pub mod stack;
pub mod tdes;
pub mod tr34;

pub use error::{CryptoError, Result};
