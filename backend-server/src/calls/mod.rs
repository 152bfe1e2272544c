//! The PKCS#11 functions of the token issue, by chapter of the standard:
//! session management ([`session`], 5.6), PINs and login ([`login`], 5.5
//! and 5.6), object management ([`objects`], 5.7) and searching ([`find`],
//! 5.7); and the cryptographic functions ([`crypto`], 5.8 to 5.19) over
//! the operation lifecycle ([`operation`]), [`keys`] and [`random`]. Each is a function of the server state, the client context and
//! the request's fields, returning the reply body or a `CKR_*`.

pub mod crypto;
pub mod find;
pub mod keys;
pub mod login;
pub mod objects;
pub mod operation;
pub mod random;
pub mod session;

#[cfg(test)]
mod begin_tests;
#[cfg(test)]
mod crypto_tests;
#[cfg(test)]
mod tests;
