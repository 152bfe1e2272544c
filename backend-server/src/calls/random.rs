//! Random number generation (PKCS#11 3.0 section 5.19).

use cryptoki_sys::{CKR_ARGUMENTS_BAD, CKR_RANDOM_SEED_NOT_SUPPORTED};
use hsmlink_protocol::{MAX_FRAME_BODY, ResponseBody, Secret, SessionHandle};

use crate::calls::operation::crypto_session;
use crate::dispatch::{ClientContext, ServerState};
use crate::error::{CkResult, Ckr};

/// The most bytes one `C_GenerateRandom` request may ask for: the frame
/// limit less room for the response's envelope. The module loops for more.
pub const MAX_RANDOM: u64 = MAX_FRAME_BODY as u64 - 1024;

/// `C_SeedRandom` (5.19.1): the soft driver draws from the operating
/// system's generator, which takes no seed from a caller, so the answer is
/// `CKR_RANDOM_SEED_NOT_SUPPORTED`, the code the standard gives for a token
/// whose generator does not accept seeding (the seed is not used).
pub fn seed(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
) -> CkResult<ResponseBody> {
    crypto_session(state, ctx, session)?;
    Err(Ckr(CKR_RANDOM_SEED_NOT_SUPPORTED))
}

/// `C_GenerateRandom` (5.19.2): `len` bytes, 0 allowed, at most
/// [`MAX_RANDOM`] (`CKR_ARGUMENTS_BAD` above).
pub fn generate(
    state: &ServerState,
    ctx: &ClientContext,
    session: SessionHandle,
    len: u64,
) -> CkResult<ResponseBody> {
    let bound = crypto_session(state, ctx, session)?;
    if len > MAX_RANDOM {
        return Err(Ckr(CKR_ARGUMENTS_BAD));
    }
    let bytes = bound.driver.random(len as usize)?;
    Ok(ResponseBody::Random(Secret::from_slice(&bytes)))
}
