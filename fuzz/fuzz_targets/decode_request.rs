//! The server's decoder of request bodies (`codec::decode::<Request>`, what
//! the transport runs on every request frame): never panics, never
//! allocates beyond the frame limit, and whatever it accepts round-trips.
#![no_main]
use hsmlink_protocol::{Request, codec};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = codec::decode::<Request>(data) {
        hsmlink_fuzz::round_trip(&request);
    }
});
