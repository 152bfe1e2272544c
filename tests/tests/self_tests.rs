//! The soft HSM's self-tests, through the real module: each self-test's
//! break switch (`HSMLINK_BREAK_SELF_TESTS`, test-only) drives the
//! partition into the error state, where every cryptographic call answers
//! `CKR_DEVICE_ERROR` — operations already under way included — while
//! sessions and object search still work; a failed pairwise test creates
//! no key; without the switch everything passes.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::ffi::OsString;

use common::{Deployment, in_child, load_module, rv, user_session, vendor};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

const TEST: &str = "each_self_test_break_switch_puts_the_partition_in_the_error_state";
const NAMES: [&str; 14] = [
    "aes", "sm4", "tdes", "sha", "sm3", "hmac", "cmac", "rsa", "ecdsa", "ecdh", "eddsa", "sm2",
    "rng", "pairwise",
];
// "integrity" has a test of its own (below): it needs an integrity file.

fn secret_key(session: &Session, mechanism: &Mechanism, len: Option<u64>) -> ObjectHandle {
    let mut template = vec![
        Attribute::Token(false),
        Attribute::Encrypt(true),
        Attribute::Sign(true),
    ];
    if let Some(len) = len {
        template.push(Attribute::ValueLen(len.into()));
    }
    session.generate_key(mechanism, &template).unwrap()
}

fn ec_pair(session: &Session) -> Result<(ObjectHandle, ObjectHandle), cryptoki::error::Error> {
    session.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::EcParams(common::P256_PARAMS.to_vec()),
            Attribute::Token(false),
        ],
        &[
            Attribute::Sign(true),
            Attribute::Derive(true),
            Attribute::Token(false),
        ],
    )
}

fn key_count(session: &Session) -> usize {
    session.find_objects(&[]).unwrap().len()
}

/// The outcome of a call: `Ok` or its `CK_RV`.
fn code<T>(result: Result<T, cryptoki::error::Error>) -> Result<(), RvError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(rv::<()>(Err(e))),
    }
}

/// The call that meets the self-test `name` (and, when that test is
/// broken, fails).
fn meet(session: &Session, name: &str) -> Result<(), RvError> {
    let aes_gen = Mechanism::AesKeyGen;
    match name {
        "aes" => {
            let key = secret_key(session, &aes_gen, Some(16));
            code(session.encrypt(&Mechanism::AesEcb, key, &[0; 16]))
        }
        "sm4" => {
            let key = secret_key(session, &vendor(0xC853_0120), None);
            code(session.encrypt(&vendor(0xC853_0121), key, &[0; 16]))
        }
        "tdes" => {
            let key = secret_key(session, &Mechanism::Des3KeyGen, None);
            code(session.encrypt(&Mechanism::Des3Ecb, key, &[0; 8]))
        }
        "sha" => code(session.digest(&Mechanism::Sha256, b"abc")),
        "sm3" => code(session.digest(&vendor(0xC853_0110), b"abc")),
        "hmac" => {
            let key = secret_key(session, &Mechanism::GenericSecretKeyGen, Some(32));
            code(session.sign(&Mechanism::Sha256Hmac, key, b"abc"))
        }
        "cmac" => {
            let key = secret_key(session, &aes_gen, Some(16));
            code(session.sign(&Mechanism::AesCMac, key, b"abc"))
        }
        "rsa" | "ecdsa" | "eddsa" | "sm2" | "pairwise" => {
            let before = key_count(session);
            let result = code(match name {
                "rsa" => session.generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[Attribute::ModulusBits(2048.into()), Attribute::Token(false)],
                    &[Attribute::Sign(true), Attribute::Token(false)],
                ),
                "eddsa" => session.generate_key_pair(
                    &Mechanism::EccEdwardsKeyPairGen,
                    &[
                        // "edwards25519" as a printable string.
                        Attribute::EcParams(b"\x13\x0cedwards25519".to_vec()),
                        Attribute::Token(false),
                    ],
                    &[Attribute::Sign(true), Attribute::Token(false)],
                ),
                "sm2" => session.generate_key_pair(
                    &vendor(0xC853_0100),
                    &[Attribute::Token(false)],
                    &[Attribute::Sign(true), Attribute::Token(false)],
                ),
                _ => ec_pair(session),
            });
            if result.is_err() {
                assert_eq!(key_count(session), before, "{name}: a key was created");
            }
            result
        }
        "ecdh" => {
            let (public, private) = ec_pair(session).unwrap();
            let point = session
                .get_attributes(public, &[AttributeType::EcPoint])
                .unwrap();
            let [Attribute::EcPoint(point)] = point.as_slice() else {
                panic!("no point");
            };
            // The DER OCTET STRING's content: 04 || x || y.
            let raw = point[2..].to_vec();
            let params = Ecdh1DeriveParams::new(EcKdf::null(), &raw);
            code(session.derive_key(
                &Mechanism::Ecdh1Derive(params),
                private,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                ],
            ))
        }
        "rng" => code(session.generate_random_vec(16)),
        other => panic!("no scenario for {other}"),
    }
}

fn child() {
    let name = std::env::var("HSMLINK_TEST_BROKEN").unwrap();
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "self tests", "self-test-pin");
    // An operation under way before the failure.
    let other = pkcs11
        .open_rw_session(pkcs11.get_slots_with_token().unwrap()[0])
        .unwrap();
    let started = name != "sha";
    if started {
        other.digest_init(&Mechanism::Sha256).unwrap();
        other.digest_update(b"under way").unwrap();
    }

    if name == "none" {
        // Without a broken test every scenario succeeds.
        for scenario in NAMES {
            assert_eq!(meet(&session, scenario), Ok(()), "{scenario}");
        }
        assert_eq!(other.digest_final().unwrap().len(), 32);
        return;
    }

    assert_eq!(meet(&session, &name), Err(RvError::DeviceError), "{name}");
    // The partition is in the error state: other algorithms too, and the
    // operation begun before.
    assert_eq!(rv(session.generate_random_vec(16)), RvError::DeviceError);
    assert_eq!(
        rv(session.digest(&Mechanism::Sha256, b"x")),
        RvError::DeviceError
    );
    if started {
        assert_eq!(rv(other.digest_final()), RvError::DeviceError);
    }
    // Not cryptography: still served.
    session.get_session_info().unwrap();
    session.find_objects(&[]).unwrap();
}

#[test]
fn each_self_test_break_switch_puts_the_partition_in_the_error_state() {
    if in_child() {
        child();
        return;
    }
    let mut deployment = Deployment::start();
    for name in NAMES.iter().copied().chain(["none"]) {
        assert!(deployment.stop_server().unwrap().success());
        let switch = if name == "none" { "" } else { name };
        deployment.run_server_with_env(&[("HSMLINK_BREAK_SELF_TESTS", OsString::from(switch))]);
        let mut env = deployment.module_env();
        env.push(("HSMLINK_TEST_BROKEN", OsString::from(name)));
        common::run_in_child(TEST, &env);
        if name != "none" {
            let log = deployment.server_log();
            assert!(
                log.contains(&format!("self-test {name} failed")),
                "{name}: the server log does not say so"
            );
        }
    }
}

const INTEGRITY: &str = "the_integrity_test_at_start_checks_the_executable";

/// The partition works (`true`) or is in the error state.
fn integrity_child() {
    let want_ok = std::env::var("HSMLINK_TEST_INTEGRITY_OK").unwrap() == "1";
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "integrity", "integrity-pin");
    let random = session.generate_random_vec(16);
    let digest = session.digest(&Mechanism::Sha256, b"x");
    if want_ok {
        assert_eq!(random.unwrap().len(), 16);
        assert_eq!(digest.unwrap().len(), 32);
    } else {
        assert_eq!(rv(random), RvError::DeviceError);
        assert_eq!(rv(digest), RvError::DeviceError);
        // Not cryptography: still served.
        session.find_objects(&[]).unwrap();
    }
}

/// The software integrity test at start (FIPS 140-3 7.10.2.2): the
/// executable's HMAC against the integrity file `hsmlink-server integrity
/// --write` made. A good file passes; a wrong one, a missing one when
/// required, or the break switch put the partition in the error state.
#[test]
fn the_integrity_test_at_start_checks_the_executable() {
    if in_child() {
        integrity_child();
        return;
    }
    let mut deployment = Deployment::init();
    let file = deployment.path("hsmlink-server.hmac");
    let out = std::process::Command::new(common::server_bin())
        .args(["integrity", "--write", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read_to_string(&file).unwrap();
    assert_eq!(good.trim().len(), 64, "an HMAC-SHA-256 in hex: {good}");
    let config = deployment.path("server.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[soft]"));
    std::fs::write(
        &config,
        text.replacen(
            "[soft]",
            &format!(
                "[soft]\nintegrity = \"required\"\nintegrity_file = \"{}\"",
                file.display()
            ),
            1,
        ),
    )
    .unwrap();

    let mut bad = good.clone().into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    /// One start of the server: the integrity file's content (none: no
    /// file), the break switch, whether cryptography works, what is logged.
    struct Start {
        what: &'static str,
        content: Option<Vec<u8>>,
        switch: &'static str,
        ok: bool,
        logged: &'static str,
    }
    let start = |what, content, switch, ok, logged| Start {
        what,
        content,
        switch,
        ok,
        logged,
    };
    let cases = [
        start(
            "good file",
            Some(good.clone().into_bytes()),
            "",
            true,
            "software integrity test passed",
        ),
        start(
            "wrong value",
            Some(bad),
            "",
            false,
            "software integrity test failed",
        ),
        start("missing, required", None, "", false, "is missing"),
        start(
            "break switch",
            Some(good.into_bytes()),
            "integrity",
            false,
            "does not match",
        ),
    ];
    for Start {
        what,
        content,
        switch,
        ok,
        logged,
    } in cases
    {
        match content {
            Some(c) => std::fs::write(&file, c).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        deployment.stop_server();
        deployment.run_server_with_env(&[("HSMLINK_BREAK_SELF_TESTS", OsString::from(switch))]);
        let mut env = deployment.module_env();
        env.push((
            "HSMLINK_TEST_INTEGRITY_OK",
            OsString::from(if ok { "1" } else { "0" }),
        ));
        common::run_in_child(INTEGRITY, &env);
        assert!(
            deployment.server_log().contains(logged),
            "{what}: the server log does not say {logged:?}"
        );
    }
}
