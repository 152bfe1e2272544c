//! The module's decoder of server replies (`codec::decode::<Response>`, what
//! `transport::connection` runs on every response frame): a broken or
//! hostile server must not crash the application. Whatever decodes
//! round-trips.
#![no_main]
use hsmlink_protocol::{Response, codec};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(response) = codec::decode::<Response>(data) {
        hsmlink_fuzz::round_trip(&response);
    }
});
