#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hsmlink_protocol::codec::decode::<hsmlink_protocol::Request>(data);
});
