//! The serialisation format, in one place.
//!
//! bincode 2 (serde mode, varint integers) is the format today. Nothing else in
//! the workspace names bincode: swapping it (postcard, wincode) is a change to
//! this file and the golden-bytes test alone.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MAX_FRAME_BODY;

/// Encoding or decoding failed. Both ends map this to a protocol error
/// (`CKR_DEVICE_ERROR` in the module); it never panics.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("message of {0} bytes exceeds the {MAX_FRAME_BODY}-byte limit")]
    TooLarge(usize),
}

const LIMIT: usize = MAX_FRAME_BODY as usize;

fn configuration() -> Configuration<LittleEndian, Varint, Limit<LIMIT>> {
    config::standard().with_limit::<LIMIT>()
}

/// Serialises `value`. Fails on a message larger than [`MAX_FRAME_BODY`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, configuration())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Deserialises exactly one `T` from `bytes`.
///
/// Allocation is bounded by [`MAX_FRAME_BODY`] whatever length prefixes the
/// input claims, and bytes left over after the value are an error: a frame
/// holds one message, nothing more.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let (value, read) = bincode::serde::decode_from_slice(bytes, configuration())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - read));
    }
    Ok(value)
}
