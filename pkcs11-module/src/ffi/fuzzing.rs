//! Entry points for the fuzz targets (`fuzz/fuzz_targets/module_parse.rs`),
//! compiled only with the `fuzzing` feature, never into the shipped module:
//! the C-structure parsers of this module behind the signatures the entry
//! points use, with a `CK_RV` for an error.

use cryptoki_sys::{CK_ATTRIBUTE, CK_MECHANISM, CK_RV, CK_ULONG};
use hsmlink_protocol::{Attribute, AttributeResult, Mechanism};

use super::{attributes::Template, mechanism};
use crate::profile::{ALL, SmProfile};

/// The SM profile number `index` picks (any index is valid).
fn profile(index: usize) -> SmProfile {
    ALL[index % ALL.len()]
}

/// The mechanism number `mechanism_in` reads the parameter of, for the
/// application's `mechanism` under profile `profile_index`.
pub fn mechanism_in_profile(profile_index: usize, mechanism: u64) -> u64 {
    profile(profile_index).mechanism_in(mechanism)
}

/// An input template (`C_CreateObject`, `C_FindObjectsInit`, ...) as wire
/// attributes, in hsmlink's numbers.
///
/// # Safety
/// As [`Template::from_raw`]: `ptr` is NULL or valid for reading `count`
/// entries whose values are valid for their lengths, recursively.
pub unsafe fn template_in(
    ptr: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    profile_index: usize,
) -> Result<Vec<Attribute>, CK_RV> {
    // SAFETY: this function's contract is from_raw's.
    let template = unsafe { Template::from_raw(ptr, count) }.map_err(|e| e.rv())?;
    template
        .to_wire_for(&profile(profile_index))
        .map_err(|e| e.rv())
}

/// `C_GetAttributeValue`'s answer written into the caller's template.
///
/// # Safety
/// As [`Template::from_raw`], with the memory writable.
pub unsafe fn template_out(
    ptr: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    results: &[AttributeResult],
) -> Result<(), CK_RV> {
    // SAFETY: this function's contract is from_raw's.
    let template = unsafe { Template::from_raw(ptr, count) }.map_err(|e| e.rv())?;
    template.write_results(results).map_err(|e| e.rv())
}

/// A `CK_MECHANISM` and its parameter.
///
/// # Safety
/// As [`mechanism::from_raw`].
pub unsafe fn mechanism_in(
    ptr: *const CK_MECHANISM,
    profile_index: usize,
) -> Result<Mechanism, CK_RV> {
    // SAFETY: this function's contract is from_raw's.
    unsafe { mechanism::from_raw(ptr, &profile(profile_index)) }.map_err(|e| e.rv())
}
