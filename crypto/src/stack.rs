//! Stack scrubbing: key schedules, key bytes passed by value and
//! intermediate values of the engines live briefly in stack frames that are
//! popped but not cleared. [`scrub`] overwrites the stack below its caller,
//! so a thread that ran a key operation keeps no copy once it returns to its
//! loop (`tests/tests/zeroisation.rs` searches the server's memory).

/// Bytes of stack wiped: deeper than the engines' call chains (a key's
/// bytes were seen about 18 KiB below the request dispatcher's frame).
const SCRUB_BYTES: usize = 48 * 1024;

/// Overwrites [`SCRUB_BYTES`] of stack below the caller's frame with zeros.
/// Call it from a shallow frame after the work whose traces it clears.
///
/// The zeros are the array's initialisation: one `memset` (about 0.3 µs);
/// handing the array to `black_box` makes the compiler keep it, as the
/// zeros are then observed. (`Zeroize` on a byte array writes one volatile
/// byte at a time: 20 times slower, and it was the server's costliest
/// function per request.) `tests/tests/zeroisation.rs` checks the effect.
#[inline(never)]
pub fn scrub() {
    let area = [0u64; SCRUB_BYTES / 8];
    core::hint::black_box(&area);
}
