//! The hsmlink wire protocol.
//!
//! Everything that crosses the network between `libhsmlink_pkcs11.so` and
//! `hsmlink-server` is defined here as typed Rust values: one [`Request`]
//! variant per PKCS#11 function that the server serves, a [`Response`] that
//! carries the `CK_RV` and the outputs, typed mechanism parameters and
//! attributes. No raw pointer and no opaque parameter blob ever crosses the
//! wire, so every parameter the server supports really reaches it.
//!
//! Layers, bottom up:
//! - [`codec`]: the only place that knows the serialisation format (bincode 2),
//!   always decoding with an explicit size limit and rejecting trailing bytes;
//! - [`frame`]: length prefix, protocol version, frame kind, request id;
//! - [`hello`]: the first exchange on a connection, negotiating the version;
//! - [`request`], [`response`] and their building blocks ([`types`],
//!   [`mechanism`], [`attribute`], [`secret`]).
//!
//! This crate knows no sockets and no runtime; both ends bring their own.
#![forbid(unsafe_code)]

pub mod attribute;
pub mod attribute_kind;
pub mod begin;
pub mod codec;
pub mod frame;
pub mod hello;
pub mod mechanism;
pub mod request;
pub mod response;
pub mod secret;
pub mod types;
pub mod vendor;

#[cfg(test)]
mod testing;

pub use attribute::{Attribute, AttributeResult, AttributeValue};
pub use begin::OpCall;
pub use codec::CodecError;
pub use frame::{FrameError, FrameHeader, FrameKind};
pub use hello::{Hello, HelloReply};
pub use mechanism::{Mechanism, MechanismParams};
pub use request::Request;
pub use response::{Output, OutputSpec, Response, ResponseBody};
pub use secret::Secret;
pub use types::*;

/// The protocol version this build speaks best.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// Largest frame body either side accepts, checked before any allocation.
///
/// 16 MiB leaves room for bulk encryption in one call; bigger inputs go
/// through the multi-part functions.
pub const MAX_FRAME_BODY: u32 = 16 * 1024 * 1024;
