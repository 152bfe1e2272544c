//! Inputs read from the caller's memory: PINs, user names, token labels.
//!
//! PINs are copied straight into a [`Secret`] (wiped on drop) and never
//! logged. Nothing here needs alignment: everything is bytes.

use cryptoki_sys::{CK_ULONG, CK_UTF8CHAR, CKR_ARGUMENTS_BAD, CKR_PIN_LEN_RANGE};
use hsmlink_protocol::{MAX_FRAME_BODY, Secret};

use crate::error::Error;

/// Longer inputs could never fit one frame; refused before being copied.
// Lossless: usize is at least 32 bits wide on every target we build for.
const MAX_INPUT: usize = MAX_FRAME_BODY as usize;

/// A PIN `(pPin, ulPinLen)`.
///
/// A NULL `pPin` with a nonzero length is `CKR_ARGUMENTS_BAD`. A NULL `pPin`
/// with length 0 asks for the token's protected authentication path
/// (sections 5.5.7 to 5.5.9, 5.6.8): our tokens have none
/// (`CKF_PROTECTED_AUTHENTICATION_PATH` is never set), so that is
/// `CKR_ARGUMENTS_BAD` as well. A non-NULL, empty PIN goes to the server,
/// which judges its length. A PIN longer than a frame is
/// `CKR_PIN_LEN_RANGE` without being copied.
///
/// # Safety
/// `ptr` is NULL or valid for reading `len` bytes, which nothing writes
/// during the call.
pub unsafe fn pin(ptr: *const CK_UTF8CHAR, len: CK_ULONG) -> Result<Secret, Error> {
    if ptr.is_null() {
        return Err(Error::new(CKR_ARGUMENTS_BAD));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_INPUT)
        .ok_or(Error::new(CKR_PIN_LEN_RANGE))?;
    // SAFETY: `ptr` is not NULL and valid for reading `len` bytes (this
    // function's contract), `len` is far below `isize::MAX`, bytes need no
    // alignment, and the slice is dropped before we return.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    Ok(Secret::from_slice(bytes))
}

/// A byte string `(ptr, len)` that may be absent: NULL with length 0 is
/// empty, NULL with a nonzero length (or one longer than a frame)
/// `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// As for [`pin`].
pub unsafe fn bytes(ptr: *const CK_UTF8CHAR, len: CK_ULONG) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_INPUT)
        .ok_or(Error::new(CKR_ARGUMENTS_BAD))?;
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Error::new(CKR_ARGUMENTS_BAD));
    }
    // SAFETY: as in `pin`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    Ok(bytes.to_vec())
}

/// A data input `(ptr, len)` borrowed from the caller for the duration of
/// the call: NULL with length 0 is empty, NULL with a nonzero length
/// `CKR_ARGUMENTS_BAD`. Not copied (and not limited) here: local hashing
/// takes any length, and requests are checked against the frame limit where
/// they are built.
///
/// # Safety
/// `ptr` is NULL or valid for reading `len` bytes, which nothing writes
/// while the returned slice lives; `'a` does not outlive the call.
pub unsafe fn data<'a>(ptr: *const u8, len: CK_ULONG) -> Result<&'a [u8], Error> {
    let len = usize::try_from(len).map_err(|_| Error::new(CKR_ARGUMENTS_BAD))?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return Err(Error::new(CKR_ARGUMENTS_BAD));
    }
    // SAFETY: non-NULL and valid for reading `len <= isize::MAX` bytes that
    // nothing writes meanwhile (this function's contract); bytes need no
    // alignment.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A token label: 32 bytes, blank padded, not NUL-terminated (section
/// 5.5.7). NULL is `CKR_ARGUMENTS_BAD`.
///
/// Some callers (PyKCS11 among them) pass a shorter NUL-terminated string
/// instead. A NUL byte cannot be part of a blank-padded label, so reading
/// stops at the first one and pads the rest with blanks: nothing past a
/// caller's terminator is ever read.
///
/// # Safety
/// `ptr` is NULL, or valid for reading 32 bytes, or valid for reading up to
/// and including a NUL byte within its first 32 bytes.
pub unsafe fn label(ptr: *const CK_UTF8CHAR) -> Result<[u8; 32], Error> {
    if ptr.is_null() {
        return Err(Error::new(CKR_ARGUMENTS_BAD));
    }
    let mut label = [b' '; 32];
    for (i, slot) in label.iter_mut().enumerate() {
        // SAFETY: byte `i` lies within the first 32 bytes and no NUL came
        // before it, so it is readable under this function's contract.
        let byte = unsafe { ptr.add(i).read() };
        if byte == 0 {
            break;
        }
        *slot = byte;
    }
    Ok(label)
}
