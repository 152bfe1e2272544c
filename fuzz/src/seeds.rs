//! Meaningful requests and responses for the checked-in corpus, made with
//! the protocol's own encoder (`gen_corpus` writes them to `corpus/`).

use cryptoki_sys::*;
use hsmlink_protocol::vendor::CKM_HSMLINK_SM4_GCM;
use hsmlink_protocol::*;

fn a(attr: CK_ATTRIBUTE_TYPE, value: AttributeValue) -> Attribute {
    Attribute::new(attr, value)
}

fn mech(mechanism: CK_MECHANISM_TYPE, params: MechanismParams) -> Mechanism {
    Mechanism {
        mechanism: MechanismType(mechanism),
        params,
    }
}

fn data(bytes: &[u8]) -> Secret {
    Secret::from_slice(bytes)
}

/// Handles a request names: the session and the keys of the fuzzed world
/// (`server::World`), so seeds reach past the handle checks.
#[derive(Clone, Copy, Debug)]
pub struct Handles {
    pub session: SessionHandle,
    pub aes: ObjectHandle,
    /// An AES key that wraps and unwraps only.
    pub wrap: ObjectHandle,
    pub hmac: ObjectHandle,
    pub ec_public: ObjectHandle,
    pub ec_private: ObjectHandle,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            session: SessionHandle(1),
            aes: ObjectHandle(1),
            wrap: ObjectHandle(2),
            hmac: ObjectHandle(3),
            ec_public: ObjectHandle(4),
            ec_private: ObjectHandle(5),
        }
    }
}

/// An AES key template with a nested wrap template (two levels).
pub fn aes_template() -> Vec<Attribute> {
    vec![
        a(CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
        a(CKA_KEY_TYPE, AttributeValue::Ulong(CKK_AES)),
        a(CKA_VALUE_LEN, AttributeValue::Ulong(32)),
        a(CKA_TOKEN, AttributeValue::Bool(false)),
        a(CKA_ENCRYPT, AttributeValue::Bool(true)),
        a(CKA_DECRYPT, AttributeValue::Bool(true)),
        a(CKA_LABEL, AttributeValue::Bytes(b"fuzz".to_vec())),
        a(
            CKA_ALLOWED_MECHANISMS,
            AttributeValue::Mechanisms(vec![MechanismType(CKM_AES_GCM)]),
        ),
    ]
}

/// Named requests: (file name, request).
pub fn requests(h: Handles) -> Vec<(&'static str, Request)> {
    let s = h.session;
    let out = response::OutputSpec::Capacity(4096);
    let gcm = mech(
        CKM_AES_GCM,
        MechanismParams::AesGcm {
            iv: vec![7; 12],
            iv_bits: 96,
            aad: b"aad".to_vec(),
            tag_bits: 128,
        },
    );
    vec![
        (
            "get_slot_list",
            Request::GetSlotList {
                token_present: true,
            },
        ),
        ("get_token_info", Request::GetTokenInfo { slot: SlotId(0) }),
        (
            "get_mechanism_info",
            Request::GetMechanismInfo {
                slot: SlotId(0),
                mechanism: MechanismType(CKM_AES_GCM),
            },
        ),
        (
            "open_session",
            Request::OpenSession {
                slot: SlotId(0),
                flags: CKF_SERIAL_SESSION | CKF_RW_SESSION,
            },
        ),
        ("get_session_info", Request::GetSessionInfo { session: s }),
        (
            "create_object",
            Request::CreateObject {
                session: s,
                template: vec![
                    a(CKA_CLASS, AttributeValue::Ulong(CKO_DATA)),
                    a(CKA_TOKEN, AttributeValue::Bool(false)),
                    a(CKA_VALUE, AttributeValue::Bytes(b"hello".to_vec())),
                ],
            },
        ),
        (
            "generate_key",
            Request::GenerateKey {
                session: s,
                mechanism: mech(CKM_AES_KEY_GEN, MechanismParams::None),
                template: {
                    let mut t = aes_template();
                    t.push(a(
                        CKA_WRAP_TEMPLATE,
                        AttributeValue::Template(vec![a(
                            CKA_EXTRACTABLE,
                            AttributeValue::Bool(false),
                        )]),
                    ));
                    t
                },
            },
        ),
        (
            "get_attribute_value",
            Request::GetAttributeValue {
                session: s,
                object: h.aes,
                types: vec![
                    AttributeType(CKA_CLASS),
                    AttributeType(CKA_VALUE),
                    AttributeType(CKA_LABEL),
                    AttributeType(CKA_ALLOWED_MECHANISMS),
                ],
            },
        ),
        (
            "find_objects_init",
            Request::FindObjectsInit {
                session: s,
                template: vec![a(CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY))],
            },
        ),
        (
            "find_objects",
            Request::FindObjects {
                session: s,
                max_count: 10,
            },
        ),
        (
            "encrypt_init_gcm",
            Request::EncryptInit {
                session: s,
                mechanism: gcm.clone(),
                key: h.aes,
            },
        ),
        (
            "encrypt",
            Request::Encrypt {
                session: s,
                data: data(b"plaintext"),
                out,
            },
        ),
        (
            "begin_encrypt_cbc",
            Request::Begin {
                session: s,
                mechanism: mech(CKM_AES_CBC_PAD, MechanismParams::Iv(vec![1; 16])),
                key: Some(h.aes),
                call: OpCall::Encrypt {
                    data: data(b"some data"),
                    out,
                },
            },
        ),
        (
            "begin_decrypt_gcm",
            Request::Begin {
                session: s,
                mechanism: gcm,
                key: Some(h.aes),
                call: OpCall::Decrypt {
                    data: data(&[0x55; 40]),
                    out,
                },
            },
        ),
        (
            "begin_sign_hmac",
            Request::Begin {
                session: s,
                mechanism: mech(CKM_SHA256_HMAC_GENERAL, MechanismParams::MacGeneral(16)),
                key: Some(h.hmac),
                call: OpCall::Sign {
                    data: data(b"message"),
                    out,
                },
            },
        ),
        (
            "begin_sign_ecdsa",
            Request::Begin {
                session: s,
                mechanism: mech(CKM_ECDSA_SHA256, MechanismParams::None),
                key: Some(h.ec_private),
                call: OpCall::Sign {
                    data: data(b"message"),
                    out,
                },
            },
        ),
        (
            "begin_verify_ecdsa",
            Request::Begin {
                session: s,
                mechanism: mech(CKM_ECDSA, MechanismParams::None),
                key: Some(h.ec_public),
                call: OpCall::VerifyDigest {
                    digest: data(&[3; 32]),
                    signature: vec![1; 64],
                },
            },
        ),
        (
            "digest",
            Request::Begin {
                session: s,
                mechanism: mech(CKM_SHA256, MechanismParams::None),
                key: None,
                call: OpCall::Digest {
                    data: data(b"abc"),
                    out,
                },
            },
        ),
        (
            "sign_update",
            Request::SignInit {
                session: s,
                mechanism: mech(CKM_SHA256_HMAC, MechanismParams::None),
                key: h.hmac,
            },
        ),
        (
            "wrap_key",
            Request::WrapKey {
                session: s,
                mechanism: mech(CKM_AES_KEY_WRAP_KWP, MechanismParams::None),
                wrapping_key: h.wrap,
                key: h.hmac,
                out,
            },
        ),
        (
            "unwrap_key",
            Request::UnwrapKey {
                session: s,
                mechanism: mech(CKM_AES_KEY_WRAP, MechanismParams::None),
                unwrapping_key: h.wrap,
                wrapped_key: vec![0xA6; 40],
                template: aes_template(),
            },
        ),
        (
            "derive_ecdh",
            Request::DeriveKey {
                session: s,
                mechanism: mech(
                    CKM_ECDH1_DERIVE,
                    MechanismParams::Ecdh1Derive {
                        kdf: CKD_NULL,
                        shared_data: vec![],
                        public_data: {
                            let mut p = vec![4u8];
                            p.extend_from_slice(&[9; 64]);
                            p
                        },
                    },
                ),
                base_key: h.ec_private,
                template: aes_template(),
            },
        ),
        (
            "derive_aes_cbc_encrypt_data",
            Request::DeriveKey {
                session: s,
                mechanism: mech(
                    CKM_AES_CBC_ENCRYPT_DATA,
                    MechanismParams::AesCbcEncryptData {
                        iv: [0; 16],
                        data: vec![5; 32],
                    },
                ),
                base_key: h.aes,
                template: aes_template(),
            },
        ),
        (
            "generate_key_pair_ec",
            Request::GenerateKeyPair {
                session: s,
                mechanism: mech(CKM_EC_KEY_PAIR_GEN, MechanismParams::None),
                // P-256's OID, DER.
                public_template: vec![a(
                    CKA_EC_PARAMS,
                    AttributeValue::Bytes(vec![
                        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                    ]),
                )],
                private_template: vec![a(CKA_SIGN, AttributeValue::Bool(true))],
            },
        ),
        (
            "set_attribute_value",
            Request::SetAttributeValue {
                session: s,
                object: h.aes,
                template: vec![a(CKA_LABEL, AttributeValue::Bytes(b"renamed".to_vec()))],
            },
        ),
        (
            "generate_random",
            Request::GenerateRandom {
                session: s,
                len: 32,
            },
        ),
        (
            "encrypt_init_sm4_gcm",
            Request::EncryptInit {
                session: s,
                mechanism: mech(
                    CKM_HSMLINK_SM4_GCM,
                    MechanismParams::AesGcm {
                        iv: vec![1; 12],
                        iv_bits: 96,
                        aad: vec![],
                        tag_bits: 96,
                    },
                ),
                key: h.aes,
            },
        ),
        ("logout", Request::Logout { session: s }),
    ]
}

/// Named responses: (file name, response), every body shape once or so.
pub fn responses() -> Vec<(&'static str, Response)> {
    use hsmlink_protocol::response::{Output, ResponseBody as B};
    vec![
        ("empty_error", Response::error(CKR_PIN_INCORRECT)),
        (
            "slot_list",
            Response::ok(B::SlotList(vec![SlotId(0), SlotId(3)])),
        ),
        ("session", Response::ok(B::Session(SessionHandle(2)))),
        (
            "key_pair",
            Response::ok(B::KeyPair {
                public: ObjectHandle(5),
                private: ObjectHandle(6),
            }),
        ),
        (
            "objects",
            Response::ok(B::Objects(vec![ObjectHandle(1), ObjectHandle(2)])),
        ),
        (
            "attributes",
            Response::ok(B::Attributes(vec![
                AttributeResult::Value(AttributeValue::Ulong(CKO_SECRET_KEY)),
                AttributeResult::Sensitive,
                AttributeResult::Invalid,
                AttributeResult::Value(AttributeValue::Template(aes_template())),
                AttributeResult::Value(AttributeValue::Bytes(b"label".to_vec())),
            ])),
        ),
        (
            "output_data",
            Response::ok(B::Output(Output::Data(data(&[9; 48])))),
        ),
        (
            "output_length",
            Response {
                rv: Rv(CKR_BUFFER_TOO_SMALL),
                body: B::Output(Output::Length(256)),
            },
        ),
        ("random", Response::ok(B::Random(data(&[1; 32])))),
        ("hash_prefix", Response::ok(B::HashPrefix(vec![2; 32]))),
        ("begun", Response::ok(B::Begun(Some(Output::Length(64))))),
    ]
}
