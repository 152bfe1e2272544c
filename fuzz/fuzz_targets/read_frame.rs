#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hsmlink_protocol::frame::read_message::<_, hsmlink_protocol::Request>(
        &mut &data[..],
        hsmlink_protocol::FrameKind::Request,
        hsmlink_protocol::PROTOCOL_VERSION,
    );
});
