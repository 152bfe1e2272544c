//! Shared helpers of the fuzz targets.
#![forbid(unsafe_code)]

pub mod module;
pub mod seeds;
pub mod server;

use hsmlink_protocol::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Round-trip property of the codec: whatever `decode` accepted must encode
/// again, decode to the same value, and re-encode to the same bytes (the
/// canonical form is a fixed point, even if the input was not canonical).
pub fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = codec::encode(value).expect("a decoded value must encode again");
    let again: T = codec::decode(&bytes).expect("our own encoding must decode");
    assert_eq!(&again, value, "decode(encode(v)) != v");
    let bytes_again = codec::encode(&again).expect("encode");
    assert_eq!(bytes, bytes_again, "the canonical encoding is not stable");
}
