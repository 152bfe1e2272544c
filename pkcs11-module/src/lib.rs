//! `libhsmlink_pkcs11.so`: a PKCS#11 2.40 / 3.0 module that forwards every
//! call over mutually authenticated TLS to `hsmlink-server`.
//!
//! Layers, top down:
//! - [`ffi`]: the C ABI. The only module with `unsafe`; it owns every raw
//!   pointer, catches every panic and turns results into `CK_RV`s.
//! - `client`: the safe side, one file per chapter of the standard. It
//!   speaks the typed values of `hsmlink-protocol`.
//! - `state`: the global library state created by `C_Initialize`; after
//!   `fork()` the child carries on with it or starts afresh.
//! - `process`: the process id that fork detection compares.
//! - `transport`: a blocking rustls client and a small connection pool (no
//!   runtime, no background thread).
//! - `config`, `log`, `error`: `client.toml`, our own tiny logger (we live
//!   in other people's processes), and the one error type carrying a `CK_RV`.

/// Every heap block the module frees is wiped: templates, PINs and frames
/// copied from the application do not linger after the call that used them
/// (tests/tests/zeroisation.rs searches the process).
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

mod client;
mod config;
mod error;
pub mod ffi;
mod log;
mod process;
mod profile;
mod state;
mod transport;

#[cfg(test)]
mod test_support;
