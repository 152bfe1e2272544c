//! hsmlink-server: tenants' PKCS#11 slots on partitions of HSMs, served over
//! mutual TLS to `libhsmlink_pkcs11.so`.
//!
//! Layers, outside in:
//! - [`server`] accepts TCP connections and shuts down gracefully;
//! - [`transport`] runs one connection: TLS ([`tls`]), the tenant from the
//!   client certificate ([`identity`]), the hello, then request frames;
//! - [`dispatch::handle`] answers one request, a pure function of the server
//!   state, the client context and the request;
//! - [`calls`] serves the token functions by chapter of the standard, over
//!   the generic [`sessions`] (sessions and login state) and [`handles`]
//!   (per-tenant object handles), with the attribute policy of
//!   [`attributes`];
//! - a partition lives behind a [`driver::PartitionDriver`]: [`soft`], the
//!   built-in software HSM, keeps its state in a [`store`] (SQLite);
//! - [`registry`] maps tenants to slots and partitions; [`token`] and
//!   [`soft`] describe slots, tokens and mechanisms.
//!
//! [`config`] reads `server.toml`; [`init`] writes a deployment directory.
//!
//! `CK_ULONG` constants of `cryptoki_sys` are used as the wire's `u64`
//! directly: the server builds only where `CK_ULONG` is 64 bits (LP64 Unix),
//! and the compiler checks it wherever a constant meets a wire field.
//!
//! No `unsafe` here: the workspace denies it; only the vendor PKCS#11
//! driver ([`pkcs11`]) is allowed some, for its calls into vendor modules.

pub mod admin;
pub mod attributes;
pub mod audit;
pub mod calls;
pub mod config;
pub mod dispatch;
pub mod driver;
pub mod error;
pub mod handles;
pub mod identity;
pub mod init;
pub mod key_state;
pub mod logging;
pub mod metering;
pub mod metering_series;
pub mod names;
pub mod partition_state;
pub mod pkcs11;
pub mod ratelimit;
pub mod registry;
pub mod scheduling;
pub mod secure_templates;
pub mod server;
pub mod sessions;
pub mod soft;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod token;
pub mod transport;
pub mod wrap_ledger;

pub use config::Config;
pub use dispatch::{ClientContext, ServerState, StateError, handle};
pub use server::{Server, ServerError, shutdown_signal};
