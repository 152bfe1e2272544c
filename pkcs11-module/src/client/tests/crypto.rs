//! The cryptographic calls against the fake server: the size-query
//! convention on real and broken replies, the local hash of hash-then-sign
//! mechanisms (and the frames it saves), local state cleared with the
//! session, random numbers in bounded requests.

use cryptoki_sys::*;
use hsmlink_protocol::vendor::CKM_HSMLINK_SM2_SM3;
use hsmlink_protocol::{
    Mechanism, MechanismParams, ObjectHandle, OpCall, Output, OutputSpec, Request, Response,
    ResponseBody, Rv, Secret, SessionHandle, SlotId,
};
use sha2::Digest;

use super::{library, rv};
use crate::client::local::Kind;
use crate::client::{crypto, keys, sessions, signing};
use crate::state::Library;
use crate::test_support::{
    Behaviour, DEMO_FAIL, DEMO_FINAL, DEMO_SESSION, DEMO_Z, FakeServer, Pki, demo_handler,
};

const S: SessionHandle = SessionHandle(DEMO_SESSION);
const KEY: ObjectHandle = ObjectHandle(0x20);

#[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
fn mech(mechanism: CK_MECHANISM_TYPE) -> Mechanism {
    Mechanism::new(u64::from(mechanism), MechanismParams::None)
}

fn start(handler: fn(&Request) -> Response) -> (Pki, FakeServer, Library) {
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            handler,
            ..Behaviour::default()
        },
    );
    let library = library(&pki, server.address());
    (pki, server, library)
}

fn data(output: Output) -> Vec<u8> {
    match output {
        Output::Data(bytes) => bytes.as_bytes().to_vec(),
        Output::Length(n) => panic!("a length ({n}) where data was expected"),
    }
}

#[test]
fn outputs_follow_the_size_query_convention() {
    let (_pki, server, library) = start(demo_handler);
    crypto::encrypt_init(&library, S, mech(CKM_AES_ECB), KEY).unwrap();
    let plain = [7u8; 32];
    // Length query, too small, then the data: one frame with the init, the
    // output kept here for the calls after the length query.
    assert_eq!(
        crypto::encrypt(&library, S, &plain, OutputSpec::LengthQuery).unwrap(),
        Output::Length(32)
    );
    assert_eq!(
        crypto::encrypt(&library, S, &plain, OutputSpec::Capacity(31)).unwrap(),
        Output::Length(32)
    );
    assert_eq!(
        data(crypto::encrypt(&library, S, &plain, OutputSpec::Capacity(32)).unwrap()),
        plain
    );
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        &sent[0],
        Request::Begin {
            key: Some(KEY),
            call: OpCall::Encrypt {
                out: OutputSpec::Capacity(u64::MAX),
                ..
            },
            ..
        }
    ));
    // Without an init here, the server's size-query convention.
    assert_eq!(
        crypto::encrypt(&library, S, &plain, OutputSpec::LengthQuery).unwrap(),
        Output::Length(32)
    );
    assert_eq!(
        crypto::encrypt(&library, S, &plain, OutputSpec::Capacity(31)).unwrap(),
        Output::Length(32)
    );
    // Any other error is the error.
    assert_eq!(
        rv(crypto::encrypt(
            &library,
            S,
            DEMO_FAIL,
            OutputSpec::Capacity(99)
        )),
        CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        rv(crypto::encrypt(
            &library,
            SessionHandle(9),
            &plain,
            OutputSpec::LengthQuery
        )),
        CKR_SESSION_HANDLE_INVALID
    );
    // Each output call of the chapter.
    let cap = OutputSpec::Capacity(64);
    assert_eq!(
        data(crypto::encrypt_final(&library, S, cap).unwrap()),
        DEMO_FINAL
    );
    assert_eq!(data(crypto::decrypt(&library, S, b"c", cap).unwrap()), b"c");
    assert_eq!(
        data(crypto::decrypt_update(&library, S, b"d", cap).unwrap()),
        b"d"
    );
    assert_eq!(
        data(crypto::decrypt_final(&library, S, cap).unwrap()),
        DEMO_FINAL
    );
    assert_eq!(data(crypto::digest(&library, S, b"e", cap).unwrap()), b"e");
    assert_eq!(
        data(crypto::digest_final(&library, S, cap).unwrap()),
        DEMO_FINAL
    );
    crypto::digest_update(&library, S, b"f").unwrap();
    crypto::digest_key(&library, S, KEY).unwrap();
    for f in [
        crypto::digest_encrypt_update,
        crypto::decrypt_digest_update,
        crypto::sign_encrypt_update,
        crypto::decrypt_verify_update,
    ] {
        assert_eq!(data(f(&library, S, b"g", cap).unwrap()), b"g");
    }
}

#[test]
fn broken_output_replies_are_device_errors() {
    /// The data names the broken reply to give.
    fn broken(request: &Request) -> Response {
        let Request::Encrypt { data, .. } = request else {
            return demo_handler(request);
        };
        let too_small = Rv(u64::from(CKR_BUFFER_TOO_SMALL as u32));
        match data.as_bytes() {
            b"ok length" => Response::ok(ResponseBody::Output(Output::Length(5))),
            b"small length" => Response {
                rv: too_small,
                body: ResponseBody::Output(Output::Length(5)),
            },
            b"small empty" => Response {
                rv: too_small,
                body: ResponseBody::Empty,
            },
            b"data" => Response::ok(ResponseBody::Output(Output::Data(Secret::new(vec![1; 5])))),
            _ => Response::ok(ResponseBody::Empty),
        }
    }
    let (_pki, _server, library) = start(broken);
    let query = OutputSpec::LengthQuery;
    let cap = OutputSpec::Capacity(10);
    let small = OutputSpec::Capacity(4);
    // A length for a buffer that was big enough.
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"ok length", cap)),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"small length", cap)),
        CKR_DEVICE_ERROR
    );
    // "Too small" to a length query, or without a length.
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"small length", query)),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"small empty", small)),
        CKR_DEVICE_ERROR
    );
    // Data for a length query, or more than room.
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"data", query)),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"data", small)),
        CKR_DEVICE_ERROR
    );
    // No output at all.
    assert_eq!(
        rv(crypto::encrypt(&library, S, b"none", cap)),
        CKR_DEVICE_ERROR
    );
    // And the good shapes.
    assert_eq!(
        crypto::encrypt(&library, S, b"ok length", query).unwrap(),
        Output::Length(5)
    );
    assert_eq!(
        crypto::encrypt(&library, S, b"small length", small).unwrap(),
        Output::Length(5)
    );
    assert_eq!(
        data(crypto::encrypt(&library, S, b"data", cap).unwrap()),
        [1; 5]
    );
}

#[test]
fn sign_update_of_a_hash_then_sign_mechanism_sends_nothing() {
    let (_pki, server, library) = start(demo_handler);
    signing::sign_init(&library, S, mech(CKM_SHA256_RSA_PKCS), KEY).unwrap();
    let frames = library.transport.frames_sent();
    let requests = server.requests().len();
    let parts: [&[u8]; 3] = [b"hello, ", b"", b"world"];
    for part in parts {
        signing::sign_update(&library, S, part).unwrap();
    }
    assert_eq!(
        library.transport.frames_sent(),
        frames,
        "no frame for updates"
    );
    assert_eq!(server.requests().len(), requests);

    // Length query and too small keep the hash; then the signature.
    let expected = sha2::Sha256::digest(b"hello, world").to_vec();
    assert_eq!(
        signing::sign_final(&library, S, OutputSpec::LengthQuery).unwrap(),
        Output::Length(32)
    );
    assert_eq!(
        signing::sign_final(&library, S, OutputSpec::Capacity(8)).unwrap(),
        Output::Length(32)
    );
    assert!(library.local.active(S, Kind::Sign));
    let signature = data(signing::sign_final(&library, S, OutputSpec::Capacity(256)).unwrap());
    assert_eq!(signature, expected, "the server got sha256 of the updates");
    assert_eq!(library.transport.frames_sent(), frames + 1);
    let sent = server.requests();
    assert!(
        sent.iter()
            .all(|r| !matches!(r, Request::SignUpdate { .. }))
    );
    assert!(matches!(
        sent.last(),
        Some(Request::Begin { call: OpCall::SignDigest { digest, .. }, .. })
            if digest.as_bytes() == expected
    ));
    // The operation is over here too: C_SignFinal now goes to the server.
    assert!(!library.local.active(S, Kind::Sign));
    assert_eq!(
        data(signing::sign_final(&library, S, OutputSpec::Capacity(256)).unwrap()),
        DEMO_FINAL
    );
    assert!(matches!(
        server.requests().last(),
        Some(Request::SignFinal { .. })
    ));
}

#[test]
fn single_part_hash_then_sign() {
    let (_pki, server, library) = start(demo_handler);
    for (mechanism, digest) in [
        (CKM_SHA1_RSA_PKCS, sha1::Sha1::digest(b"abc").to_vec()),
        (CKM_ECDSA_SHA224, sha2::Sha224::digest(b"abc").to_vec()),
        (
            CKM_SHA384_RSA_PKCS_PSS,
            sha2::Sha384::digest(b"abc").to_vec(),
        ),
        (CKM_ECDSA_SHA512, sha2::Sha512::digest(b"abc").to_vec()),
    ] {
        signing::sign_init(&library, S, mech(mechanism), KEY).unwrap();
        // The length query does not consume the data.
        assert_eq!(
            signing::sign(&library, S, b"abc", OutputSpec::LengthQuery).unwrap(),
            Output::Length(digest.len() as u64)
        );
        let signature =
            data(signing::sign(&library, S, b"abc", OutputSpec::Capacity(512)).unwrap());
        assert_eq!(signature, digest);
        assert!(!library.local.active(S, Kind::Sign));
    }
    // The original mechanism reached the server with the init.
    assert!(server.requests().iter().any(|r| matches!(
        r,
        Request::Begin { mechanism, call: OpCall::SignDigest { .. }, .. }
            if mechanism.mechanism.0 == u64::from(CKM_ECDSA_SHA224 as u32)
    )));
    // C_Sign after C_SignUpdate: refused, the operation goes on.
    signing::sign_init(&library, S, mech(CKM_SHA256_RSA_PKCS), KEY).unwrap();
    signing::sign_update(&library, S, b"part").unwrap();
    assert_eq!(
        rv(signing::sign(
            &library,
            S,
            b"more",
            OutputSpec::Capacity(64)
        )),
        CKR_OPERATION_ACTIVE
    );
    assert_eq!(
        data(signing::sign_final(&library, S, OutputSpec::Capacity(64)).unwrap()),
        sha2::Sha256::digest(b"part").to_vec()
    );
}

#[test]
fn any_other_error_ends_the_local_operation() {
    fn refuse_digests(request: &Request) -> Response {
        match request {
            Request::SignDigest { .. }
            | Request::Begin {
                call: OpCall::SignDigest { .. },
                ..
            } => Response::error(u64::from(CKR_KEY_FUNCTION_NOT_PERMITTED as u32)),
            _ => demo_handler(request),
        }
    }
    let (_pki, server, library) = start(refuse_digests);
    signing::sign_init(&library, S, mech(CKM_ECDSA_SHA256), KEY).unwrap();
    signing::sign_update(&library, S, b"x").unwrap();
    assert_eq!(
        rv(signing::sign_final(&library, S, OutputSpec::Capacity(64))),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    assert!(!library.local.active(S, Kind::Sign));
    // An update now goes to the server (which knows no operation).
    let before = server.requests().len();
    signing::sign_update(&library, S, b"y").unwrap();
    assert_eq!(server.requests().len(), before + 1);
}

#[test]
fn sm2_hashes_the_servers_prefix_first() {
    let (_pki, _server, library) = start(demo_handler);
    let sm2 = Mechanism::new(
        CKM_HSMLINK_SM2_SM3,
        MechanismParams::Sm2 {
            user_id: b"1234567812345678".to_vec(),
        },
    );
    signing::sign_init(&library, S, sm2.clone(), KEY).unwrap();
    signing::sign_update(&library, S, b"message ").unwrap();
    signing::sign_update(&library, S, b"digest").unwrap();
    let mut expected = sm3::Sm3::new();
    expected.update(DEMO_Z);
    expected.update(b"message digest");
    let expected = expected.finalize().to_vec();
    assert_eq!(
        data(signing::sign_final(&library, S, OutputSpec::Capacity(64)).unwrap()),
        expected
    );
    // Verification: the same digest verifies, another does not.
    signing::verify_init(&library, S, sm2.clone(), KEY).unwrap();
    signing::verify_update(&library, S, b"message digest").unwrap();
    signing::verify_final(&library, S, &expected).unwrap();
    assert!(!library.local.active(S, Kind::Verify));
    signing::verify_init(&library, S, sm2, KEY).unwrap();
    assert_eq!(
        rv(signing::verify(&library, S, b"other message", &expected)),
        CKR_SIGNATURE_INVALID
    );
    assert!(!library.local.active(S, Kind::Verify));
}

#[test]
fn verify_of_a_hash_then_sign_mechanism() {
    let (_pki, server, library) = start(demo_handler);
    let digest = sha2::Sha256::digest(b"signed data").to_vec();
    signing::verify_init(&library, S, mech(CKM_ECDSA_SHA256), KEY).unwrap();
    let requests = server.requests().len();
    signing::verify_update(&library, S, b"signed ").unwrap();
    signing::verify_update(&library, S, b"data").unwrap();
    assert_eq!(server.requests().len(), requests);
    signing::verify_final(&library, S, &digest).unwrap();
    assert!(matches!(
        server.requests().last(),
        Some(Request::Begin { call: OpCall::VerifyDigest { digest: d, signature }, .. })
            if d.as_bytes() == digest && *signature == digest
    ));
    signing::verify_init(&library, S, mech(CKM_ECDSA_SHA256), KEY).unwrap();
    signing::verify(&library, S, b"signed data", &digest).unwrap();
    signing::verify_init(&library, S, mech(CKM_ECDSA_SHA256), KEY).unwrap();
    assert_eq!(
        rv(signing::verify_final(&library, S, b"bad")),
        CKR_SIGNATURE_INVALID
    );
    assert!(!library.local.active(S, Kind::Verify));
}

#[test]
fn other_mechanisms_are_forwarded() {
    let (_pki, server, library) = start(demo_handler);
    signing::sign_init(&library, S, mech(CKM_SHA256_HMAC), KEY).unwrap();
    assert!(!library.local.hashing(S, Kind::Sign));
    signing::sign_update(&library, S, b"part").unwrap();
    assert!(matches!(
        server.requests().last(),
        Some(Request::SignUpdate { .. })
    ));
    assert_eq!(
        data(signing::sign(&library, S, b"x", OutputSpec::Capacity(8)).unwrap()),
        b"x"
    );
    signing::verify_init(&library, S, mech(CKM_RSA_PKCS), KEY).unwrap();
    signing::verify_update(&library, S, b"part").unwrap();
    assert!(matches!(
        server.requests().last(),
        Some(Request::VerifyUpdate { .. })
    ));
    signing::verify(&library, S, b"same", b"same").unwrap();
    signing::verify_final(&library, S, DEMO_FINAL).unwrap();
    signing::sign_recover_init(&library, S, mech(CKM_RSA_X_509), KEY).unwrap();
    assert_eq!(
        data(signing::sign_recover(&library, S, b"r", OutputSpec::Capacity(8)).unwrap()),
        b"r"
    );
    signing::verify_recover_init(&library, S, mech(CKM_RSA_X_509), KEY).unwrap();
    assert_eq!(
        signing::verify_recover(&library, S, b"sig", OutputSpec::LengthQuery).unwrap(),
        Output::Length(3)
    );
}

#[test]
fn dual_functions_feed_the_local_hash() {
    let (_pki, server, library) = start(demo_handler);
    signing::sign_init(&library, S, mech(CKM_SHA256_RSA_PKCS), KEY).unwrap();
    crypto::encrypt_init(&library, S, mech(CKM_AES_ECB), KEY).unwrap();
    // A length query hashes nothing; the real call does.
    assert_eq!(
        crypto::sign_encrypt_update(&library, S, b"abc", OutputSpec::LengthQuery).unwrap(),
        Output::Length(3)
    );
    assert_eq!(
        data(crypto::sign_encrypt_update(&library, S, b"abc", OutputSpec::Capacity(3)).unwrap()),
        b"abc"
    );
    assert!(matches!(
        server.requests().last(),
        Some(Request::EncryptUpdate { .. })
    ));
    assert_eq!(
        data(signing::sign_final(&library, S, OutputSpec::Capacity(64)).unwrap()),
        sha2::Sha256::digest(b"abc").to_vec()
    );
    // Verification hashes the plaintext the server returns.
    signing::verify_init(&library, S, mech(CKM_SHA256_RSA_PKCS), KEY).unwrap();
    crypto::decrypt_init(&library, S, mech(CKM_AES_ECB), KEY).unwrap();
    assert_eq!(
        data(crypto::decrypt_verify_update(&library, S, b"xyz", OutputSpec::Capacity(3)).unwrap()),
        b"xyz"
    );
    assert!(matches!(
        server.requests().last(),
        Some(Request::DecryptUpdate { .. })
    ));
    signing::verify_final(&library, S, &sha2::Sha256::digest(b"xyz")).unwrap();
}

#[test]
fn closing_the_session_clears_local_state() {
    let (_pki, _server, library) = start(demo_handler);
    let session = sessions::open_session(&library, SlotId(0), 4).unwrap();
    assert_eq!(session, S);
    let ecdsa = || mech(CKM_ECDSA_SHA256);

    signing::sign_init(&library, S, ecdsa(), KEY).unwrap();
    signing::verify_init(&library, S, ecdsa(), KEY).unwrap();
    sessions::close_session(&library, S).unwrap();
    assert!(!library.local.active(S, Kind::Sign));
    assert!(!library.local.active(S, Kind::Verify));

    // C_CloseAllSessions: only the sessions of that slot.
    sessions::open_session(&library, SlotId(0), 4).unwrap();
    signing::sign_init(&library, S, ecdsa(), KEY).unwrap();
    sessions::close_all_sessions(&library, SlotId(1)).unwrap();
    assert!(library.local.active(S, Kind::Sign));
    sessions::close_all_sessions(&library, SlotId(0)).unwrap();
    assert!(!library.local.active(S, Kind::Sign));

    // C_SessionCancel: the kinds named by the flags.
    sessions::open_session(&library, SlotId(0), 4).unwrap();
    signing::sign_init(&library, S, ecdsa(), KEY).unwrap();
    signing::verify_init(&library, S, ecdsa(), KEY).unwrap();
    sessions::session_cancel(&library, S, u64::from(CKF_VERIFY as u32)).unwrap();
    assert!(library.local.active(S, Kind::Sign));
    assert!(!library.local.active(S, Kind::Verify));
    sessions::session_cancel(&library, S, u64::from(CKF_SIGN as u32)).unwrap();
    assert!(!library.local.active(S, Kind::Sign));

    // C_Finalize's part.
    signing::sign_init(&library, S, ecdsa(), KEY).unwrap();
    library.local.clear();
    assert!(!library.local.active(S, Kind::Sign));
}

#[test]
fn random_numbers_in_bounded_requests() {
    let (_pki, server, library) = start(demo_handler);
    let len = 2 * keys::RANDOM_CHUNK + 1000;
    let mut got = Vec::new();
    keys::generate_random(&library, S, len, |bytes| {
        got.extend_from_slice(bytes);
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), len);
    assert!(got.iter().all(|&b| b == 0xA5));
    let lens: Vec<u64> = server
        .requests()
        .iter()
        .filter_map(|r| match r {
            Request::GenerateRandom { len, .. } => Some(*len),
            _ => None,
        })
        .collect();
    let chunk = keys::RANDOM_CHUNK as u64;
    assert_eq!(lens, [chunk, chunk, 1000]);
    // Zero bytes: one request, so the session is checked.
    keys::generate_random(&library, S, 0, |bytes| {
        assert!(bytes.is_empty());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        rv(keys::generate_random(
            &library,
            SessionHandle(9),
            0,
            |_| Ok(())
        )),
        CKR_SESSION_HANDLE_INVALID
    );
    keys::seed_random(&library, S, b"seed").unwrap();
}

#[test]
fn key_management() {
    let (_pki, _server, library) = start(demo_handler);
    assert_eq!(
        keys::generate_key(&library, S, mech(CKM_AES_KEY_GEN), vec![]).unwrap(),
        ObjectHandle(0x30)
    );
    assert_eq!(
        keys::generate_key_pair(&library, S, mech(CKM_EC_KEY_PAIR_GEN), vec![], vec![]).unwrap(),
        (ObjectHandle(0x31), ObjectHandle(0x32))
    );
    assert_eq!(
        keys::wrap_key(
            &library,
            S,
            mech(CKM_AES_KEY_WRAP),
            KEY,
            KEY,
            OutputSpec::LengthQuery
        )
        .unwrap(),
        Output::Length(11)
    );
    assert_eq!(
        keys::unwrap_key(&library, S, mech(CKM_AES_KEY_WRAP), KEY, b"w", vec![]).unwrap(),
        ObjectHandle(0x33)
    );
    assert_eq!(
        keys::derive_key(&library, S, mech(CKM_ECDH1_DERIVE), KEY, vec![]).unwrap(),
        ObjectHandle(0x33)
    );
}
