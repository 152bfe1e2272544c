//! The id of the process the module runs in, as fork detection sees it.
//!
//! Everything that belongs to one process — the pooled TLS connections
//! above all — is tagged with this id; a different id means the code now
//! runs in a child created by `fork()` and the tagged thing is the parent's.
//! Tests cannot fork their harness, so under `cfg(test)` a per-thread counter
//! can shift the id as a fork would ([`simulate_fork`]).

#[cfg(not(test))]
pub fn id() -> u32 {
    std::process::id()
}

// Per thread, so that a test simulating a fork does not disturb the tests
// running beside it.
#[cfg(test)]
thread_local! {
    static FORKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
pub fn id() -> u32 {
    std::process::id().wrapping_add(FORKS.with(std::cell::Cell::get))
}

/// Tests: from now on the calling thread sees itself in a forked child.
#[cfg(test)]
pub fn simulate_fork() {
    FORKS.with(|forks| forks.set(forks.get() + 1));
}
