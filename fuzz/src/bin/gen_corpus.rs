//! Writes the checked-in seed corpus (`fuzz/corpus/<target>/`) with the
//! protocol's own encoder and, for `dispatch`, the handles of a real fuzzed
//! world. Run from `fuzz/` after `cargo fuzz build`:
//! `../target-dir/x86_64-unknown-linux-gnu/release/gen_corpus` (see README).
use std::fs;
use std::path::Path;

use cryptoki_sys::*;
use hsmlink_fuzz::seeds;
use hsmlink_fuzz::server::{GMT_SESSION, World, record};
use hsmlink_protocol::frame::{FrameKind, encode_frame};
use hsmlink_protocol::{
    AppInstance, AttributeResult, AttributeValue, Hello, HelloReply, MechanismType,
    PROTOCOL_VERSION, Request, codec,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus directory");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn protocol() {
    let requests = seeds::requests(seeds::Handles::default());
    let responses = seeds::responses();
    for (name, request) in &requests {
        write(
            "decode_request",
            name,
            &codec::encode(request).expect("encode"),
        );
    }
    for (name, response) in &responses {
        write(
            "decode_response",
            name,
            &codec::encode(response).expect("encode"),
        );
    }
    // Streams of frames: a connection's opening, and requests with answers.
    let hello = Hello::new("hsmlink-pkcs11 fuzz".into(), AppInstance([7; 16]), 42);
    let reply = HelloReply::Accepted {
        version: PROTOCOL_VERSION,
        server: "hsmlink-server".into(),
        tenant: "fuzz".into(),
    };
    let mut opening = encode_frame(FrameKind::Hello, 1, 0, &hello).expect("frame");
    opening.extend(encode_frame(FrameKind::HelloReply, 1, 0, &reply).expect("frame"));
    write("read_frame", "hello_and_reply", &opening);
    for (id, (name, request)) in requests.iter().enumerate().step_by(4) {
        let id = id as u64 + 1;
        let mut stream =
            encode_frame(FrameKind::Request, PROTOCOL_VERSION, id, request).expect("frame");
        let (_, response) = &responses[id as usize % responses.len()];
        stream.extend(
            encode_frame(FrameKind::Response, PROTOCOL_VERSION, id, response).expect("frame"),
        );
        write("read_frame", name, &stream);
    }
}

fn dispatch() {
    let world = World::new();
    let requests = seeds::requests(world.handles);
    for (name, request) in &requests {
        write("dispatch", name, &record(request));
    }
    // A few sequences: an operation's init, call(s) and end.
    let by_name = |wanted: &str| {
        requests
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, r)| r.clone())
            .expect("seed request")
    };
    let sequences: [(&str, Vec<Request>); 3] = [
        (
            "seq_encrypt_gcm",
            vec![by_name("encrypt_init_gcm"), by_name("encrypt")],
        ),
        (
            "seq_find",
            vec![by_name("find_objects_init"), by_name("find_objects")],
        ),
        (
            "seq_hmac_multipart",
            vec![
                by_name("sign_update"),
                Request::SignUpdate {
                    session: world.handles.session,
                    data: hsmlink_protocol::Secret::from_slice(b"part"),
                },
                Request::SignFinal {
                    session: world.handles.session,
                    out: hsmlink_protocol::OutputSpec::Capacity(64),
                },
            ],
        ),
    ];
    for (name, sequence) in sequences {
        let bytes: Vec<u8> = sequence.iter().flat_map(record).collect();
        write("dispatch", name, &bytes);
    }
    // The GM/T slot's session.
    let sm3 = Request::DigestInit {
        session: GMT_SESSION,
        mechanism: hsmlink_protocol::Mechanism {
            mechanism: MechanismType(hsmlink_protocol::vendor::CKM_HSMLINK_SM3),
            params: hsmlink_protocol::MechanismParams::None,
        },
    };
    write("dispatch", "gmt_digest_init", &record(&sm3));
}

/// `module_parse` inputs: `[op][program length][program][rest]`, programs
/// as `fuzz_targets/module_parse.rs` reads them.
fn module_parse() {
    let input = |op: u8, program: &[u8], rest: &[u8]| {
        let mut out = vec![op];
        out.extend((program.len() as u16).to_le_bytes());
        out.extend(program);
        out.extend(rest);
        out
    };
    // CKA_CLASS (8 bytes), CKA_TOKEN (1 byte), CKA_WRAP_TEMPLATE holding
    // CKA_TOKEN; the values in the rest.
    let template = [
        1, 3, // a template of 3
        0, 3, 0, 4, 0, 0, // CKA_CLASS: bytes, fixed length 8, at 0
        1, 3, 0, 1, 8, 0, // CKA_TOKEN: bytes, length 1, at 8
        10, 1, // CKA_WRAP_TEMPLATE: a nested array
        1, 1, 1, 3, 0, 1, 8, 0, 0, 1, // of 1: CKA_TOKEN, misalign 0, full count
        1, // no cut
        3, 1, // misalign 3, full count
    ];
    let mut values = CKO_SECRET_KEY.to_ne_bytes().to_vec();
    values.push(1);
    write("module_parse", "template_in", &input(0, &template, &values));
    // The same with the luna profile (op 12: 12 % 3 == 0, profile 3).
    write(
        "module_parse",
        "template_in_luna",
        &input(12, &template, &values),
    );
    // CKM_AES_GCM: a 12-byte IV at 0, 96 IV bits, no AAD, 128 tag bits.
    let gcm = [
        1, 5, // not NULL, MECHANISMS[5] = CKM_AES_GCM
        2, // a structure
        1, 0, 2, 0, 0, // pIv: input, fixed length 12, at 0
        0x40, 96, 0, // ulIvBits 96
        1, 0, 0, 0, 0, // pAAD: input, length 0
        0x40, 128, 0, // ulTagBits 128
        1, 0, // declared size, misalign 0
        0, // CK_MECHANISM misalign 0
    ];
    write("module_parse", "mechanism_gcm", &input(1, &gcm, &[7; 16]));
    // CKM_RSA_PKCS_OAEP: SHA-256, MGF1-SHA256, data-specified, no label.
    let oaep = [
        1, 7, 2, //
        0x40, 0x50, 0x02, // hashAlg CKM_SHA256 (0x250)
        2,    // mgf CKG_MGF1_SHA256
        1,    // source CKZ_DATA_SPECIFIED
        0, 0, // pSourceData NULL, length 0
        1, 0, 0,
    ];
    write("module_parse", "mechanism_oaep", &input(1, &oaep, &[]));
    // CKM_ECDH1_DERIVE: CKD_NULL, no shared data, a 65-byte point.
    let ecdh = [
        1, 9, 2, //
        1, // kdf CKD_NULL
        1, 0, 0, 0, 0, // no shared data
        1, 0, 5, 0, 0, // public data: 65 bytes at 0
        1, 0, 0,
    ];
    let mut point = vec![4u8];
    point.extend([9; 64]);
    write("module_parse", "mechanism_ecdh", &input(1, &ecdh, &point));
    // CKM_HSMLINK_SM2_KEY_EXCHANGE with ids, and CBC with a 16-byte IV.
    let sm2 = [
        1, 17, 2, 1, 7, //
        1, 0, 4, 0, 0, 1, 0, 4, 0, 0, // two 65-byte points
        1, 0, 3, 0, 0, 0, 0, // a 16-byte id, NULL peer id
        1, 0, 0,
    ];
    write("module_parse", "mechanism_sm2_kx", &input(1, &sm2, &point));
    write(
        "module_parse",
        "mechanism_cbc",
        &input(1, &[1, 0, 2, 0, 2, 0, 0, 0], &[1; 16]),
    );
    // C_GetAttributeValue's answer: CKA_CLASS into 8 bytes, CKA_LABEL's
    // length query, CKA_WRAP_TEMPLATE into an array of 2.
    let out_template = [
        1, 3, //
        0, 3, 0, 4, 0, // CKA_CLASS: 8 writable bytes, misalign 0
        3, 0, 0, // CKA_LABEL: NULL, length 0
        10, 1, 1, 2, 1, 3, 1, 1, 64, 0, 1, 3, 1, 1, 64, 0, 0, 1, 1, // nested 2 x 64 bytes
        0, 1,
    ];
    let answer = vec![
        AttributeResult::Value(AttributeValue::Ulong(CKO_SECRET_KEY)),
        AttributeResult::Value(AttributeValue::Bytes(b"label".to_vec())),
        AttributeResult::Value(AttributeValue::Template(
            seeds::aes_template()[..2].to_vec(),
        )),
    ];
    let answer = codec::encode(&answer).expect("encode");
    write(
        "module_parse",
        "template_out",
        &input(2, &out_template, &answer),
    );
    let sensitive = codec::encode(&vec![
        AttributeResult::Sensitive,
        AttributeResult::Invalid,
        AttributeResult::Value(AttributeValue::Bool(true)),
    ])
    .expect("encode");
    write(
        "module_parse",
        "template_out_sensitive",
        &input(2, &out_template, &sensitive),
    );
}

fn main() {
    protocol();
    module_parse();
    dispatch();
}
