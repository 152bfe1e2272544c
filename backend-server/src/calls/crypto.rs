//! The cryptographic functions (PKCS#11 3.0 sections 5.8 to 5.19), routed
//! to the operation lifecycle ([`super::operation`]), key management
//! ([`super::keys`]) and random numbers ([`super::random`]).

use cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED;
use hsmlink_protocol::{Request, Response, ResponseBody};

use super::operation::{self, Check, Input};
use super::{keys, random};
use crate::dispatch::{ClientContext, ServerState};
use crate::driver::OpKind;
use crate::error::{CkResult, Ckr};

fn reply(result: CkResult<ResponseBody>) -> Response {
    match result {
        Ok(body) => Response::ok(body),
        Err(Ckr(rv)) => Response::error(rv),
    }
}

/// Whether [`handle`] serves `request`.
pub fn serves(request: &Request) -> bool {
    matches!(
        request,
        Request::EncryptInit { .. }
            | Request::Encrypt { .. }
            | Request::EncryptUpdate { .. }
            | Request::EncryptFinal { .. }
            | Request::DecryptInit { .. }
            | Request::Decrypt { .. }
            | Request::DecryptUpdate { .. }
            | Request::DecryptFinal { .. }
            | Request::DigestInit { .. }
            | Request::Digest { .. }
            | Request::DigestUpdate { .. }
            | Request::DigestKey { .. }
            | Request::DigestFinal { .. }
            | Request::SignInit { .. }
            | Request::Sign { .. }
            | Request::SignUpdate { .. }
            | Request::SignFinal { .. }
            | Request::SignDigest { .. }
            | Request::SignRecoverInit { .. }
            | Request::SignRecover { .. }
            | Request::VerifyInit { .. }
            | Request::Verify { .. }
            | Request::VerifyUpdate { .. }
            | Request::VerifyFinal { .. }
            | Request::VerifyDigest { .. }
            | Request::VerifyRecoverInit { .. }
            | Request::VerifyRecover { .. }
            | Request::DigestEncryptUpdate { .. }
            | Request::DecryptDigestUpdate { .. }
            | Request::SignEncryptUpdate { .. }
            | Request::DecryptVerifyUpdate { .. }
            | Request::GenerateKey { .. }
            | Request::GenerateKeyPair { .. }
            | Request::WrapKey { .. }
            | Request::UnwrapKey { .. }
            | Request::DeriveKey { .. }
            | Request::SeedRandom { .. }
            | Request::GenerateRandom { .. }
    )
}

/// Answers a cryptographic request (one [`serves`]).
pub fn handle(state: &ServerState, ctx: &ClientContext, request: Request) -> Response {
    use OpKind::*;
    use operation::{feed, init, output};
    let (s, c) = (state, ctx);
    match request {
        // ---- Encryption (5.8), decryption (5.9) ----
        Request::EncryptInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, Encrypt, &mechanism, Some(key))),
        Request::Encrypt { session, data, out } => {
            output(s, c, session, Encrypt, Input::Single(data.as_bytes()), out)
        }
        Request::EncryptUpdate { session, data, out } => {
            output(s, c, session, Encrypt, Input::Update(data.as_bytes()), out)
        }
        Request::EncryptFinal { session, out } => output(s, c, session, Encrypt, Input::Final, out),
        Request::DecryptInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, Decrypt, &mechanism, Some(key))),
        Request::Decrypt { session, data, out } => {
            output(s, c, session, Decrypt, Input::Single(data.as_bytes()), out)
        }
        Request::DecryptUpdate { session, data, out } => {
            output(s, c, session, Decrypt, Input::Update(data.as_bytes()), out)
        }
        Request::DecryptFinal { session, out } => output(s, c, session, Decrypt, Input::Final, out),
        // ---- Message digesting (5.12) ----
        Request::DigestInit { session, mechanism } => {
            reply(init(s, c, session, Digest, &mechanism, None))
        }
        Request::Digest { session, data, out } => {
            output(s, c, session, Digest, Input::Single(data.as_bytes()), out)
        }
        Request::DigestUpdate { session, data } => feed(s, c, session, Digest, data.as_bytes()),
        Request::DigestKey { session, key } => operation::digest_key(s, c, session, key),
        Request::DigestFinal { session, out } => output(s, c, session, Digest, Input::Final, out),
        // ---- Signing and MACing (5.13) ----
        Request::SignInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, Sign, &mechanism, Some(key))),
        Request::Sign { session, data, out } => {
            output(s, c, session, Sign, Input::Single(data.as_bytes()), out)
        }
        Request::SignUpdate { session, data } => feed(s, c, session, Sign, data.as_bytes()),
        Request::SignFinal { session, out } => output(s, c, session, Sign, Input::Final, out),
        Request::SignDigest {
            session,
            digest,
            out,
        } => output(
            s,
            c,
            session,
            Sign,
            Input::SignDigest(digest.as_bytes()),
            out,
        ),
        Request::SignRecoverInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, SignRecover, &mechanism, Some(key))),
        Request::SignRecover { session, data, out } => output(
            s,
            c,
            session,
            SignRecover,
            Input::Single(data.as_bytes()),
            out,
        ),
        // ---- Verifying signatures and MACs (5.15) ----
        Request::VerifyInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, Verify, &mechanism, Some(key))),
        Request::Verify {
            session,
            data,
            signature,
        } => operation::verify(s, c, session, Check::Single(data.as_bytes()), &signature),
        Request::VerifyUpdate { session, data } => feed(s, c, session, Verify, data.as_bytes()),
        Request::VerifyFinal { session, signature } => {
            operation::verify(s, c, session, Check::Final, &signature)
        }
        Request::VerifyDigest {
            session,
            digest,
            signature,
        } => operation::verify(s, c, session, Check::Digest(digest.as_bytes()), &signature),
        Request::VerifyRecoverInit {
            session,
            mechanism,
            key,
        } => reply(init(s, c, session, VerifyRecover, &mechanism, Some(key))),
        Request::VerifyRecover {
            session,
            signature,
            out,
        } => output(s, c, session, VerifyRecover, Input::Single(&signature), out),
        // ---- Dual-function calls (5.17): the token does not set
        // CKF_DUAL_CRYPTO_OPERATIONS. ----
        Request::DigestEncryptUpdate { .. }
        | Request::DecryptDigestUpdate { .. }
        | Request::SignEncryptUpdate { .. }
        | Request::DecryptVerifyUpdate { .. } => Response::error(CKR_FUNCTION_NOT_SUPPORTED),
        // ---- Key management (5.18) ----
        Request::GenerateKey {
            session,
            mechanism,
            template,
        } => reply(keys::generate(s, c, session, &mechanism, &template)),
        Request::GenerateKeyPair {
            session,
            mechanism,
            public_template,
            private_template,
        } => reply(keys::generate_pair(
            s,
            c,
            session,
            &mechanism,
            &public_template,
            &private_template,
        )),
        Request::WrapKey {
            session,
            mechanism,
            wrapping_key,
            key,
            out,
        } => keys::wrap(s, c, session, &mechanism, wrapping_key, key, out)
            .unwrap_or_else(|Ckr(rv)| Response::error(rv)),
        Request::UnwrapKey {
            session,
            mechanism,
            unwrapping_key,
            wrapped_key,
            template,
        } => reply(keys::unwrap(
            s,
            c,
            session,
            &mechanism,
            unwrapping_key,
            &wrapped_key,
            &template,
        )),
        Request::DeriveKey {
            session,
            mechanism,
            base_key,
            template,
        } => reply(keys::derive(s, c, session, &mechanism, base_key, &template)),
        // ---- Random numbers (5.19) ----
        Request::SeedRandom { session, .. } => reply(random::seed(s, c, session)),
        Request::GenerateRandom { session, len } => reply(random::generate(s, c, session, len)),
        _ => Response::error(CKR_FUNCTION_NOT_SUPPORTED),
    }
}
