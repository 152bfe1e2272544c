//! Stack scrubbing: key schedules, key bytes passed by value and
//! intermediate values of the engines live briefly in stack frames that are
//! popped but not cleared. [`scrub`] overwrites the stack below its caller,
//! so a thread that ran a key operation keeps no copy once it returns to its
//! loop (`tests/tests/zeroisation.rs` searches the server's memory).

use zeroize::Zeroize;

/// Bytes of stack wiped: deeper than the engines' call chains (a key's
/// bytes were seen about 18 KiB below the request dispatcher's frame).
const SCRUB_BYTES: usize = 48 * 1024;

/// Overwrites [`SCRUB_BYTES`] of stack below the caller's frame with zeros.
/// Call it from a shallow frame after the work whose traces it clears; the
/// cost is one volatile memset of the area (a few microseconds).
#[inline(never)]
pub fn scrub() {
    let mut area = [0u8; SCRUB_BYTES];
    area.zeroize();
    core::hint::black_box(&area);
}
