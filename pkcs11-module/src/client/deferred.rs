//! One round trip per operation: `C_*Init`, the NULL-buffer length query
//! and the call with a buffer, as applications issue them, cost one frame.
//!
//! - `C_SignInit`, `C_VerifyInit`, `C_EncryptInit`, `C_DecryptInit` and
//!   `C_DigestInit` are answered here and the init is *deferred*: it goes
//!   to the server with the operation's first single-part call (or final
//!   call of a hash computed here) in one `Request::Begin`, or alone right
//!   before a call that cannot carry it (`C_*Update`, `C_DigestKey`, a
//!   remote `C_*Final`, a context-specific `C_Login`).
//! - A length query of a deferred operation runs the call on the server
//!   with unlimited room, and the output is *kept* here (wiped when
//!   dropped) for the next call of the same step with the same input
//!   (compared by SHA-256); a buffer that turns out too small keeps it the
//!   same way. The output is computed once: exact lengths for every
//!   mechanism, padding and OAEP included, with no table of output lengths
//!   in the module and no key metadata cached here.
//!
//! The trade-off: the errors of an init (`CKR_KEY_HANDLE_INVALID`,
//! `CKR_MECHANISM_INVALID`, `CKR_KEY_TYPE_INCONSISTENT`,
//! `CKR_KEY_FUNCTION_NOT_PERMITTED`, a session handle the server does not
//! know, ...) are reported by the call that carries it, not by `C_*Init`.
//! The module could only check them at init against key attributes it
//! had cached, and those change under it (`C_SetAttributeValue`,
//! `C_DestroyObject` in another process), so the server stays the only
//! judge. What the module knows for sure it still answers at init:
//! `CKR_OPERATION_ACTIVE` for a second init of a deferred operation, a bad
//! mechanism parameter (checked by `ffi`). And a length query of a
//! deferred operation performs the key operation (audited then, once);
//! the call that takes the output sends nothing.

use cryptoki_sys::{CKR_MECHANISM_INVALID, CKR_OPERATION_ACTIVE, CKR_USER_NOT_LOGGED_IN};
use hsmlink_protocol::{
    Mechanism, MechanismType, ObjectHandle, OpCall, Output, OutputSpec, Request, Response,
    ResponseBody, SessionHandle,
};

use super::local::{DeferredInit, HashAlg, Hasher, Kept, Kind, LocalHash, LocalOp, Step};
use super::{call, unexpected, wire_rv};
use crate::error::Error;
use crate::log;
use crate::state::Library;

/// An SM2 Z value is an SM3 digest; a longer "prefix" is a broken peer.
const MAX_PREFIX: usize = 64;

/// The room a deferred call asks for: all of the output, whatever its
/// length, so that it is computed once and kept here if the caller's
/// buffer turns out too small.
pub(super) const UNLIMITED: OutputSpec = OutputSpec::Capacity(u64::MAX);

/// `C_*Init` of `kind`: recorded here, nothing sent. `CKR_OPERATION_ACTIVE`
/// if the module holds an operation of that kind already;
/// `CKR_MECHANISM_INVALID` for a mechanism the session's token does not
/// list ([`check_offered`]). The hash of a hash-then-sign mechanism starts
/// now, but for SM2-with-SM3, whose hash starts with the server's Z.
pub(super) fn init(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    mechanism: Mechanism,
    key: ObjectHandle,
) -> Result<(), Error> {
    if library.local.active(session, kind) {
        return Err(Error::new(CKR_OPERATION_ACTIVE));
    }
    check_offered(library, session, mechanism.mechanism)?;
    let hash = match kind {
        Kind::Sign | Kind::Verify => HashAlg::of(mechanism.mechanism),
        Kind::Encrypt | Kind::Decrypt | Kind::Digest => None,
    };
    let op = LocalOp {
        init: Some(DeferredInit { mechanism, key }),
        hash: hash
            .filter(|alg| *alg != HashAlg::Sm3)
            .map(|alg| LocalHash::new(Hasher::new(alg))),
        kept: None,
    };
    if library.local.start(session, kind, op) {
        Ok(())
    } else {
        Err(Error::new(CKR_OPERATION_ACTIVE))
    }
}

/// `CKR_MECHANISM_INVALID` at init for a mechanism the session's token
/// does not list: applications probe with `C_DigestInit` and the like
/// (pkcs11-tool's `--test` does) and expect the answer there. The slot's
/// list comes from `C_GetMechanismList`, the application's or one the
/// module sends the first time it needs it, and again whenever a mechanism
/// is missing from it (so a list that grew is seen); a list that shrank
/// only moves the error to the call, where the server gives it. Unknown
/// slot (a session this library did not open) or no answer: the call
/// will tell.
fn check_offered(
    library: &Library,
    session: SessionHandle,
    mechanism: MechanismType,
) -> Result<(), Error> {
    let Some(slot) = library.local.slot_of(session) else {
        return Ok(());
    };
    if library.local.offers(slot, mechanism) == Some(true) {
        return Ok(());
    }
    match super::slots::mechanism_list(library, slot) {
        Ok(list) if !list.contains(&mechanism) => Err(Error::new(CKR_MECHANISM_INVALID)),
        _ => Ok(()),
    }
}

/// The init request of a deferred operation.
fn init_request(session: SessionHandle, kind: Kind, init: DeferredInit) -> Request {
    let DeferredInit { mechanism, key } = init;
    match kind {
        Kind::Sign => Request::SignInit {
            session,
            mechanism,
            key,
        },
        Kind::Verify => Request::VerifyInit {
            session,
            mechanism,
            key,
        },
        Kind::Encrypt => Request::EncryptInit {
            session,
            mechanism,
            key,
        },
        Kind::Decrypt => Request::DecryptInit {
            session,
            mechanism,
            key,
        },
        Kind::Digest => Request::DigestInit { session, mechanism },
    }
}

/// Sends the deferred init of `kind` alone, if there is one, before a
/// call that cannot carry it; a kept output goes (the caller moves on).
/// On success the server holds the operation, and the module keeps only
/// the hash of a hash-then-sign mechanism (SM2-with-SM3's starts here,
/// with the Z of the reply). A failure ends the operation; its error is
/// the caller's.
pub(super) fn flush(library: &Library, session: SessionHandle, kind: Kind) -> Result<(), Error> {
    let Some(mut op) = library.local.take(session, kind) else {
        return Ok(());
    };
    op.kept = None;
    let Some(init) = op.init.take() else {
        library.local.put_back(session, kind, op);
        return Ok(());
    };
    let sm3 = matches!(kind, Kind::Sign | Kind::Verify)
        && HashAlg::of(init.mechanism.mechanism) == Some(HashAlg::Sm3);
    let request = init_request(session, kind, init);
    let function = request.function_name();
    match (sm3, call(library, &request)?) {
        (false, ResponseBody::Empty) => {}
        (true, ResponseBody::HashPrefix(prefix)) if prefix.len() <= MAX_PREFIX => {
            let mut hasher = Hasher::new(HashAlg::Sm3);
            hasher.update(&prefix);
            op.hash = Some(LocalHash::new(hasher));
        }
        (_, other) => {
            // The server's operation is active; ours cannot be. Say so in
            // the log: the application only sees CKR_DEVICE_ERROR.
            log::error!("{function}: cannot go on with this answer");
            return Err(unexpected(function, &other));
        }
    }
    library.local.put_back(session, kind, op);
    Ok(())
}

/// What a deferred call did on the server.
enum Begun {
    /// The init and the call ran; the call's output, if any.
    Done(Option<Output>),
    /// The init ran, the call failed and the operation goes on on the
    /// server (`CKR_USER_NOT_LOGGED_IN`: a key that needs a
    /// context-specific login).
    Waiting(Error),
}

/// Sends `call` with the deferred `init` of the operation `op` of `kind`
/// (taken out of [`crate::client::local::LocalOps`]) and puts `op` back
/// as the answer leaves it: gone when the operation is over, without its
/// init when the server holds it. `Ok` carries the output of a call that
/// succeeded; the operation is then over on the server, and `op` is the
/// caller's to keep or drop.
fn begin(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    init: &DeferredInit,
    call: OpCall,
) -> Result<Begun, Error> {
    let function = call.function_name();
    let request = Request::Begin {
        session,
        mechanism: init.mechanism.clone(),
        key: (kind != Kind::Digest).then_some(init.key),
        call,
    };
    let Response { rv, body } = library.transport.call(&request)?;
    match body {
        ResponseBody::Begun(output) if rv.is_ok() => Ok(Begun::Done(output)),
        ResponseBody::Begun(_) if rv.0 == wire_rv(CKR_USER_NOT_LOGGED_IN) => {
            Ok(Begun::Waiting(Error::from_wire(rv.0)))
        }
        ResponseBody::Begun(_) | ResponseBody::Empty if !rv.is_ok() => Err(Error::from_wire(rv.0)),
        other => Err(unexpected(function, &other)),
    }
}

/// An output call (`C_Sign`, `C_Encrypt`, `C_Decrypt`, `C_Digest`, the
/// final call of a hash computed here) of an operation the module holds a
/// part of: answered from a kept output, or sent with the deferred init.
/// `make` builds the call (with [`UNLIMITED`] room) from the operation.
/// `None`: the server holds the operation; the caller sends its call as
/// it always did.
pub(super) fn output(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    step: Step,
    input: &[u8],
    out: OutputSpec,
    make: impl FnOnce(&LocalOp) -> Result<OpCall, Error>,
) -> Option<Result<Output, Error>> {
    let mut op = library.local.take(session, kind)?;
    if let Some(kept) = op.kept.take_if(|kept| kept.matches(step, input)) {
        return Some(Ok(deliver(library, session, kind, op, kept, out)));
    }
    op.kept = None;
    let Some(init) = op.init.clone() else {
        library.local.put_back(session, kind, op);
        return None;
    };
    let call = match make(&op) {
        Ok(call) => call,
        Err(e) => {
            library.local.put_back(session, kind, op);
            return Some(Err(e));
        }
    };
    Some(match begin(library, session, kind, &init, call) {
        Ok(Begun::Done(Some(Output::Data(output)))) => {
            let kept = Kept {
                step,
                input: Kept::fingerprint(input),
                output,
            };
            Ok(deliver(library, session, kind, op, kept, out))
        }
        Ok(Begun::Done(other)) => {
            log::error!(
                "protocol error: hsmlink-server answered a deferred call with {}",
                match other {
                    Some(_) => "a length",
                    None => "no output",
                }
            );
            Err(Error::device())
        }
        Ok(Begun::Waiting(e)) => {
            op.init = None;
            library.local.put_back(session, kind, op);
            Err(e)
        }
        Err(e) => Err(e),
    })
}

/// Gives `kept` to a caller with room `out`: the bytes (the operation is
/// over), or their length, keeping them (and the operation, `op`) for the
/// next call.
fn deliver(
    library: &Library,
    session: SessionHandle,
    kind: Kind,
    mut op: LocalOp,
    mut kept: Kept,
    out: OutputSpec,
) -> Output {
    let len = kept.output.len() as u64;
    match out {
        OutputSpec::Capacity(capacity) if capacity >= len => {
            drop(op);
            Output::Data(std::mem::take(&mut kept.output))
        }
        OutputSpec::Capacity(_) | OutputSpec::LengthQuery => {
            op.kept = Some(kept);
            library.local.put_back(session, kind, op);
            Output::Length(len)
        }
    }
}

/// A verification (`C_Verify`, the final call of a hash computed here) of
/// an operation whose init is deferred: sent with it. `None` as for
/// [`output`].
pub(super) fn verify(
    library: &Library,
    session: SessionHandle,
    make: impl FnOnce(&LocalOp) -> Result<OpCall, Error>,
) -> Option<Result<(), Error>> {
    let mut op = library.local.take(session, Kind::Verify)?;
    let Some(init) = op.init.clone() else {
        library.local.put_back(session, Kind::Verify, op);
        return None;
    };
    let call = match make(&op) {
        Ok(call) => call,
        Err(e) => {
            library.local.put_back(session, Kind::Verify, op);
            return Some(Err(e));
        }
    };
    Some(match begin(library, session, Kind::Verify, &init, call) {
        Ok(Begun::Done(None)) => Ok(()),
        Ok(Begun::Done(Some(_))) => {
            log::error!("protocol error: hsmlink-server answered a verification with output");
            Err(Error::device())
        }
        Ok(Begun::Waiting(e)) => {
            op.init = None;
            library.local.put_back(session, Kind::Verify, op);
            Err(e)
        }
        Err(e) => Err(e),
    })
}
