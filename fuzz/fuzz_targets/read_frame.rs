//! The frame reader on a byte stream, as both ends run it: successive frames
//! (header, length-checked body), each body decoded as its kind says
//! (`Hello`, `HelloReply`, `Request`, `Response`). Never panics; a frame
//! that decodes is written again with `encode_frame` and reads back equal.
#![no_main]
use hsmlink_protocol::frame::{self, FrameKind};
use hsmlink_protocol::{Hello, HelloReply, Request, Response, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Frames per input: enough to see a stream, bounded per iteration.
const MAX_FRAMES: usize = 8;

fn check<T>(header: &frame::FrameHeader, body: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = codec::decode::<T>(body) else {
        return;
    };
    hsmlink_fuzz::round_trip(&value);
    let bytes = frame::encode_frame(header.kind, header.version, header.request_id, &value)
        .expect("a decoded body must frame again");
    let (again, _) = frame::read_message::<_, T>(&mut &bytes[..], header.kind, header.version)
        .expect("our own frame must read back");
    assert_eq!(again.kind, header.kind);
    assert_eq!(again.request_id, header.request_id);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    for _ in 0..MAX_FRAMES {
        let Ok((header, body)) = frame::read_frame(&mut stream) else {
            break;
        };
        assert_eq!(body.len(), header.body_len as usize);
        match header.kind {
            FrameKind::Hello => check::<Hello>(&header, &body),
            FrameKind::HelloReply => check::<HelloReply>(&header, &body),
            FrameKind::Request => check::<Request>(&header, &body),
            FrameKind::Response => check::<Response>(&header, &body),
        }
    }
    // The typed reader the transport uses, with its kind and version checks.
    let _ = frame::read_message::<_, Request>(
        &mut &data[..],
        FrameKind::Request,
        hsmlink_protocol::PROTOCOL_VERSION,
    );
});
