//! The PKCS#11 functions of the token issue, by chapter of the standard:
//! session management ([`session`], 5.6), PINs and login ([`login`], 5.5
//! and 5.6), object management ([`objects`], 5.7) and searching ([`find`],
//! 5.7). Each is a function of the server state, the client context and
//! the request's fields, returning the reply body or a `CKR_*`.

pub mod find;
pub mod login;
pub mod objects;
pub mod session;

#[cfg(test)]
mod tests;
