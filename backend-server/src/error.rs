//! The one error type of the token layer: a `CK_RV`, chosen where the
//! failure happens, so `?` carries it to the reply unchanged.

use cryptoki_sys::{CK_RV, CKR_DEVICE_ERROR, CKR_GENERAL_ERROR};

/// A PKCS#11 failure: the `CK_RV` the client gets. Carries no text, so no
/// secret can ever reach a log line through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ckr(pub CK_RV);

impl Ckr {
    /// The store or the disk failed: the change was not made.
    pub const DEVICE: Ckr = Ckr(CKR_DEVICE_ERROR);
    /// An invariant of ours broke (never the client's fault).
    pub const GENERAL: Ckr = Ckr(CKR_GENERAL_ERROR);
}

impl From<CK_RV> for Ckr {
    fn from(rv: CK_RV) -> Self {
        Self(rv)
    }
}

pub type CkResult<T> = Result<T, Ckr>;
