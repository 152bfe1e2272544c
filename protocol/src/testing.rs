//! Property tests over every message: encode/decode round trips, and decoding
//! arbitrary bytes never panics.

use proptest::prelude::*;

use crate::attribute::{Attribute, AttributeValue};
use crate::codec;
use crate::frame::{self, FrameHeader, FrameKind, HEADER_LEN};
use crate::{Hello, HelloReply, Request, Response};

/// Templates nested inside `CKA_WRAP_TEMPLATE` hold plain attributes only, so
/// the recursive value gets a non-recursive strategy.
pub(crate) fn leaf_template() -> impl Strategy<Value = Vec<Attribute>> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<u64>().prop_map(AttributeValue::Ulong),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(AttributeValue::Bytes),
    ];
    proptest::collection::vec(
        (any::<u64>(), leaf).prop_map(|(t, v)| Attribute::new(t, v)),
        0..4,
    )
}

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = codec::encode(value).expect("encodes");
    codec::decode(&bytes).expect("decodes what it encoded")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(request in any::<Request>()) {
        prop_assert_eq!(round_trip(&request), request);
    }

    #[test]
    fn responses_round_trip(response in any::<Response>()) {
        prop_assert_eq!(round_trip(&response), response);
    }

    #[test]
    fn hellos_round_trip(hello in any::<Hello>(), reply in any::<HelloReply>()) {
        prop_assert_eq!(round_trip(&hello), hello);
        prop_assert_eq!(round_trip(&reply), reply);
    }

    #[test]
    fn frames_round_trip(request in any::<Request>(), id in any::<u64>(), version in any::<u16>()) {
        let bytes = frame::encode_frame(FrameKind::Request, version, id, &request).expect("encodes");
        let (header, decoded) = frame::read_message::<_, Request>(&mut bytes.as_slice(), FrameKind::Request, version)
            .expect("reads");
        prop_assert_eq!(header.request_id, id);
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<Request>(&bytes);
        let _ = codec::decode::<Response>(&bytes);
        let _ = codec::decode::<Hello>(&bytes);
        let _ = codec::decode::<HelloReply>(&bytes);
        let _ = frame::read_frame(&mut bytes.as_slice());
    }

    #[test]
    fn trailing_bytes_are_rejected(request in any::<Request>(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = codec::encode(&request).expect("encodes");
        bytes.extend_from_slice(&extra);
        prop_assert!(codec::decode::<Request>(&bytes).is_err());
    }

    #[test]
    fn truncated_messages_are_rejected(request in any::<Request>(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::encode(&request).expect("encodes");
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode::<Request>(&bytes[..cut]).is_err());
    }
}

#[test]
fn oversize_frames_are_refused_before_allocation() {
    let header = FrameHeader {
        body_len: crate::MAX_FRAME_BODY,
        version: 1,
        kind: FrameKind::Request,
        request_id: 7,
    };
    let mut bytes = header.encode();
    // One past the limit.
    bytes[0..4].copy_from_slice(&(crate::MAX_FRAME_BODY + 1).to_be_bytes());
    assert!(matches!(
        FrameHeader::parse(&bytes),
        Err(frame::FrameError::TooLarge(_))
    ));
}

#[test]
fn a_huge_length_prefix_inside_a_body_does_not_allocate() {
    // Variant 0 (GetSlotList) is a bool; variant InitToken holds a Secret whose
    // varint length claims 2^62 bytes: decoding must fail fast, not allocate.
    let mut bytes = vec![5u8]; // InitToken
    bytes.push(0); // slot 0
    bytes.push(255); // varint marker for u64
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(codec::decode::<Request>(&bytes).is_err());
}

#[test]
fn templates_nest_two_levels_and_no_deeper() {
    let template = |members| Attribute::new(0x4000_0211, AttributeValue::Template(members));
    let create = |attribute| Request::CreateObject {
        session: crate::SessionHandle(1),
        template: vec![attribute],
    };
    let leaf = Attribute::new(0x104, AttributeValue::Bool(true));
    let two_levels = create(template(vec![template(vec![leaf.clone()])]));
    assert_eq!(round_trip(&two_levels), two_levels);
    let three_levels = create(template(vec![template(vec![template(vec![leaf])])]));
    let bytes = codec::encode(&three_levels).expect("encodes");
    assert!(codec::decode::<Request>(&bytes).is_err());

    // A frame of 200,000 nested templates: an error, not a stack overflow.
    let mut bytes = vec![19u8, 1, 1]; // CreateObject, session 1, one attribute
    for _ in 0..200_000 {
        // type CKA_WRAP_TEMPLATE (varint u32 marker), Template variant, one member
        bytes.extend_from_slice(&[0xfc, 0x11, 0x02, 0x00, 0x40, 3, 1]);
    }
    assert!(codec::decode::<Request>(&bytes).is_err());
}

#[test]
fn unknown_frame_kinds_are_refused() {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[7] = 9;
    assert!(matches!(
        FrameHeader::parse(&bytes),
        Err(frame::FrameError::UnknownKind(9))
    ));
}

/// Pins the encoding: if this changes, deployed modules and servers stop
/// understanding each other. Append variants; never reorder them.
#[test]
fn golden_bytes() {
    use crate::mechanism::{Mechanism, MechanismParams};
    use crate::response::{Output, OutputSpec, ResponseBody};
    use crate::secret::Secret;
    use crate::types::{ObjectHandle, SessionHandle, SlotId};

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            codec::encode(&Request::GetSlotList {
                token_present: true,
            })
            .unwrap(),
            "0001",
        ),
        (
            codec::encode(&Request::GetTokenInfo { slot: SlotId(3) }).unwrap(),
            "0203",
        ),
        (
            codec::encode(&Request::EncryptInit {
                session: SessionHandle(1),
                mechanism: Mechanism::new(
                    0x1087, // CKM_AES_GCM
                    MechanismParams::AesGcm {
                        iv: vec![0xAA; 2],
                        iv_bits: 16,
                        aad: vec![0xBB],
                        tag_bits: 128,
                    },
                ),
                key: ObjectHandle(300),
            })
            .unwrap(),
            "1c01fb871003 02aaaa 10 01bb 80 fb2c01",
        ),
        (
            codec::encode(&Response {
                rv: crate::Rv(0x150), // CKR_BUFFER_TOO_SMALL
                body: ResponseBody::Output(Output::Length(256)),
            })
            .unwrap(),
            "fb5001 0d 00 fb0001",
        ),
        (
            codec::encode(&Request::Login {
                session: SessionHandle(2),
                user_type: crate::UserType(1),
                pin: Secret::from_slice(b"1234"),
            })
            .unwrap(),
            "0f 02 01 04 31323334",
        ),
        (
            codec::encode(&Request::Sign {
                session: SessionHandle(2),
                data: Secret::from_slice(&[1, 2]),
                out: OutputSpec::Capacity(64),
            })
            .unwrap(),
            "2a 02 02 0102 01 40",
        ),
        (
            codec::encode(&Request::Begin {
                session: SessionHandle(2),
                mechanism: Mechanism::new(0x1041, MechanismParams::None), // CKM_ECDSA
                key: Some(ObjectHandle(5)),
                call: crate::OpCall::Sign {
                    data: Secret::from_slice(&[1, 2]),
                    out: OutputSpec::Capacity(64),
                },
            })
            .unwrap(),
            "42 02 fb4110 00 01 05 03 02 0102 01 40",
        ),
        (
            codec::encode(&Response::ok(ResponseBody::Begun(Some(Output::Data(
                Secret::from_slice(&[9]),
            )))))
            .unwrap(),
            "00 10 01 01 01 09",
        ),
    ];
    for (bytes, expected) in cases {
        let expected: String = expected.split_whitespace().collect();
        assert_eq!(hex(&bytes), expected);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
