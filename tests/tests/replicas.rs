//! The HSM pool with replicas (issue 6): three SoftHSMv2 "HSMs", each its
//! own token store behind its own copy of the fault-injecting shim
//! (`tests/fault-shim`), and two tenants whose partitions have two
//! replicas each, sharing the middle HSM:
//!
//! ```text
//! hsm1: token t-a ─┐ tenant demo: device a1 (hsm1/t-a), replica a2 (hsm2/t-a)
//! hsm2: token t-a ─┘
//!       token t-b ─┐ tenant beta: device b2 (hsm2/t-b), replica b3 (hsm3/t-b)
//! hsm3: token t-b ─┘
//! ```
//!
//! Keys made through the module exist on both replicas (read with
//! `pkcs11-tool` through SoftHSMv2 itself, not through hsmlink); signing
//! goes on, without one error, while an HSM fails; keys made and destroyed
//! while it was out are made and destroyed on it when it is back, and it
//! then serves them alone.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

const USER_PIN: &str = "user-pin-5678";
const MESSAGE: &[u8] = b"signed by whichever replica is up";

fn slot(pkcs11: &Pkcs11) -> Slot {
    pkcs11.get_all_slots().unwrap()[0]
}

fn login(pkcs11: &Pkcs11) -> Session {
    let session = pkcs11.open_rw_session(slot(pkcs11)).unwrap();
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    session
}

fn find(session: &Session, label: &str, class: ObjectClass) -> Option<ObjectHandle> {
    session
        .find_objects(&[Attribute::Label(label.into()), Attribute::Class(class)])
        .unwrap()
        .first()
        .copied()
}

fn unique_id(session: &Session, object: ObjectHandle) -> String {
    match session
        .get_attributes(object, &[AttributeType::UniqueId])
        .unwrap()
        .first()
    {
        Some(Attribute::UniqueId(id)) => String::from_utf8(id.clone()).unwrap(),
        other => panic!("no CKA_UNIQUE_ID: {other:?}"),
    }
}

/// A token P-256 key pair labelled `label`: (public, private).
fn ec_pair(session: &Session, label: &str) -> (ObjectHandle, ObjectHandle) {
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Label(label.into()),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.into()),
            ],
        )
        .unwrap()
}

fn sign_and_verify(session: &Session, private: ObjectHandle, public: ObjectHandle) {
    let signature = session
        .sign(&Mechanism::EcdsaSha256, private, MESSAGE)
        .unwrap();
    session
        .verify(&Mechanism::EcdsaSha256, public, MESSAGE, &signature)
        .unwrap();
}

/// The children: one phase each, told by `HSMLINK_TEST_PHASE`.
fn child() {
    let root = PathBuf::from(std::env::var_os("HSMLINK_TEST_HSMS").unwrap());
    let phase = std::env::var("HSMLINK_TEST_PHASE").unwrap();
    let pkcs11 = load_module();
    let mut state = load_state();
    match phase.as_str() {
        // Tenant demo makes its keys: on both of its replicas.
        "demo-keys" => {
            let session = user_session(&pkcs11, "replicated", USER_PIN);
            let (public, private) = ec_pair(&session, "signer");
            sign_and_verify(&session, private, public);
            let aes = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::ValueLen(32.into()),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Label("aes".into()),
                    ],
                )
                .unwrap();
            // The device's copy is extractable (for the replicas); the
            // tenant's key is not, and hsmlink holds to that.
            let attrs = session
                .get_attributes(
                    aes,
                    &[
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Local,
                        AttributeType::AlwaysSensitive,
                    ],
                )
                .unwrap();
            assert_eq!(
                attrs,
                vec![
                    Attribute::Extractable(false),
                    Attribute::NeverExtractable(true),
                    Attribute::Local(true),
                    Attribute::AlwaysSensitive(true),
                ]
            );
            let wrapping = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ValueLen(32.into()),
                        Attribute::Wrap(true),
                        Attribute::Unwrap(true),
                    ],
                )
                .unwrap();
            assert_eq!(
                rv(session.wrap_key(&Mechanism::AesKeyWrap, wrapping, aes)),
                RvError::KeyUnextractable
            );
            assert_eq!(
                rv(session.update_attributes(aes, &[Attribute::Extractable(true)])),
                RvError::AttributeReadOnly
            );
            let doomed = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::ValueLen(16.into()),
                        Attribute::Encrypt(true),
                        Attribute::Label("doomed".into()),
                    ],
                )
                .unwrap();
            state.insert("signer".into(), unique_id(&session, private));
            state.insert("signer-pub".into(), unique_id(&session, public));
            state.insert("aes".into(), unique_id(&session, aes));
            state.insert("doomed".into(), unique_id(&session, doomed));
        }
        // hsm1 fails in the middle of a run of signatures: not one fails.
        // While it is out a key is made and another destroyed.
        "demo-failover" => {
            let session = login(&pkcs11);
            let private = find(&session, "signer", ObjectClass::PRIVATE_KEY).unwrap();
            let public = find(&session, "signer", ObjectClass::PUBLIC_KEY).unwrap();
            for i in 0..60 {
                if i == 20 {
                    Hsm::at(&root, "hsm1").fail();
                }
                sign_and_verify(&session, private, public);
            }
            let (public2, private2) = ec_pair(&session, "made-while-out");
            sign_and_verify(&session, private2, public2);
            state.insert("made-while-out".into(), unique_id(&session, private2));
            let doomed = find(&session, "doomed", ObjectClass::SECRET_KEY).unwrap();
            session.destroy_object(doomed).unwrap();
            // Key uses keep working on the remaining replica.
            let aes = find(&session, "aes", ObjectClass::SECRET_KEY).unwrap();
            let iv = [7u8; 16];
            let ciphertext = session
                .encrypt(&Mechanism::AesCbcPad(iv), aes, b"while hsm1 is out")
                .unwrap();
            state.insert("ciphertext".into(), hex(&ciphertext));
        }
        // hsm1 is back and caught up; now hsm2 fails: hsm1 alone serves the
        // key made while it was out, and the others.
        "demo-on-hsm1-alone" => {
            let session = login(&pkcs11);
            Hsm::at(&root, "hsm2").fail();
            let private = find(&session, "made-while-out", ObjectClass::PRIVATE_KEY).unwrap();
            let public = find(&session, "made-while-out", ObjectClass::PUBLIC_KEY).unwrap();
            sign_and_verify(&session, private, public);
            let aes = find(&session, "aes", ObjectClass::SECRET_KEY).unwrap();
            let plaintext = session
                .decrypt(
                    &Mechanism::AesCbcPad([7u8; 16]),
                    aes,
                    &unhex(&state["ciphertext"]),
                )
                .unwrap();
            assert_eq!(plaintext, b"while hsm1 is out");
            assert!(find(&session, "doomed", ObjectClass::SECRET_KEY).is_none());
        }
        // Tenant beta, on hsm2 (failed now) and hsm3.
        "beta" => {
            let session = user_session(&pkcs11, "beta", USER_PIN);
            let (public, private) = ec_pair(&session, "beta-signer");
            sign_and_verify(&session, private, public);
            state.insert("beta-signer".into(), unique_id(&session, private));
        }
        // hsm2 hangs (each call waits 1.5 s, over the devices' 1 s
        // time-out): the first signature waits for it, the next ones go to
        // hsm3 without waiting.
        "beta-hang" => {
            let session = login(&pkcs11);
            let private = find(&session, "beta-signer", ObjectClass::PRIVATE_KEY).unwrap();
            let public = find(&session, "beta-signer", ObjectClass::PUBLIC_KEY).unwrap();
            std::fs::write(root.join("hsm2").join("control"), "hang 1500\n").unwrap();
            let mut slow = 0;
            for _ in 0..10 {
                let started = Instant::now();
                sign_and_verify(&session, private, public);
                if started.elapsed() >= Duration::from_millis(1400) {
                    slow += 1;
                }
            }
            assert!(slow <= 1, "{slow} signatures waited for the hanging HSM");
        }
        // The partition the server placed: slot 1.
        "beta-placed" => {
            let session = user_session_on(&pkcs11, 1, "placed", USER_PIN);
            let (public, private) = ec_pair(&session, "placed-signer");
            sign_and_verify(&session, private, public);
            state.insert("placed-signer".into(), unique_id(&session, private));
        }
        other => panic!("unknown phase {other}"),
    }
    save_state(&state);
}

#[test]
fn replicas_copy_keys_fail_over_and_catch_up() {
    if in_child() {
        child();
        return;
    }
    if !softhsm_available() || Command::new("pkcs11-tool").arg("--help").output().is_err() {
        eprintln!("SKIPPED: needs SoftHSMv2 ({SOFTHSM_MODULE}) and pkcs11-tool (opensc)");
        return;
    }
    let hsms = tempfile::tempdir().unwrap();
    let root = hsms.path();
    let hsm1 = Hsm::new(root, "hsm1", &["t-a", "t-c"]);
    let hsm2 = Hsm::new(root, "hsm2", &["t-a", "t-b"]);
    let hsm3 = Hsm::new(root, "hsm3", &["t-b", "t-c"]);

    let mut deployment = Deployment::init();
    let beta_config = deployment.add_tenant("beta");
    // A call that meets a hanging HSM waits for it: more than the 3 s the
    // test harness gives a client.
    let text = std::fs::read_to_string(&beta_config).unwrap();
    std::fs::write(
        &beta_config,
        text.replace("io_timeout_ms = 3000", "io_timeout_ms = 20000"),
    )
    .unwrap();
    let path = deployment.path("server.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut slots = [
        "driver = \"pkcs11\"\ndevice = \"a1\"\nreplicas = [\"a2\"]",
        "driver = \"pkcs11\"\ndevice = \"b2\"\nreplicas = [\"b3\"]",
    ]
    .into_iter();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("driver = \"soft\"") {
            out.push_str(slots.next().expect("two soft slots"));
        } else if line.trim_start().starts_with("algorithms =") {
            continue;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let pin_file = root.join("device.pin");
    std::fs::write(&pin_file, format!("{DEVICE_PIN}\n")).unwrap();
    for (name, hsm, token) in [
        ("a1", &hsm1, "t-a"),
        ("a2", &hsm2, "t-a"),
        ("b2", &hsm2, "t-b"),
        ("b3", &hsm3, "t-b"),
        // Free: for partitions the server places itself.
        ("c1", &hsm1, "t-c"),
        ("c3", &hsm3, "t-c"),
    ] {
        out.push_str(&format!(
            "\n[[devices]]\nname = \"{name}\"\nmodule = {:?}\ntoken_label = \"{token}\"\npin_file = {:?}\nmax_sessions = 4\nsession_wait_ms = 2000\ncall_timeout_ms = 1000\n",
            hsm.shim().display().to_string(),
            pin_file.display().to_string()
        ));
    }
    std::fs::write(&path, out).unwrap();
    deployment.run_server();

    let state = deployment.path("test-state");
    let env = |phase: &str, config: Option<&Path>| {
        let mut env = deployment.module_env();
        if let Some(config) = config {
            env.retain(|(k, _)| *k != "HSMLINK_CONF");
            env.push(("HSMLINK_CONF", config.as_os_str().to_owned()));
        }
        env.push(("HSMLINK_TEST_HSMS", root.as_os_str().to_owned()));
        env.push(("HSMLINK_TEST_PHASE", OsString::from(phase)));
        env.push(("HSMLINK_TEST_STATE", state.as_os_str().to_owned()));
        env
    };
    let test = "replicas_copy_keys_fail_over_and_catch_up";
    let state_of = || -> BTreeMap<String, String> {
        std::fs::read_to_string(&state)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };

    // Keys made through hsmlink are on both of the tenant's HSMs, and on
    // no token of the other tenant.
    run_in_child(test, &env("demo-keys", None));
    let keys = state_of();
    for key in ["signer", "signer-pub", "aes", "doomed"] {
        assert!(hsm1.holds("t-a", &keys[key]), "{key} is not on hsm1");
        assert!(
            hsm2.holds("t-a", &keys[key]),
            "{key} is not on hsm2:\n{}",
            deployment.server_log()
        );
        assert!(!hsm2.holds("t-b", &keys[key]), "{key} is on beta's token");
        assert!(!hsm3.holds("t-b", &keys[key]), "{key} is on hsm3");
    }

    // Per-device metrics: calls counted on both of demo's devices.
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let (ok, metrics, err) = deployment.admin(&["metrics"]);
    assert!(ok, "{err}");
    assert!(metric(&metrics, "hsmlink_device_calls_total{device=\"a1\"}") > 0);
    assert!(metric(&metrics, "hsmlink_device_calls_total{device=\"a2\"}") > 0);
    assert_eq!(metric(&metrics, "hsmlink_device_up{device=\"a1\"}"), 1);
    assert_eq!(
        metric(&metrics, "hsmlink_device_queue_depth{device=\"a1\"}"),
        0
    );
    let count = metric(&metrics, "hsmlink_device_call_seconds_count{device=\"a1\"}");
    assert_eq!(
        count,
        metric(&metrics, "hsmlink_device_calls_total{device=\"a1\"}")
    );
    let a1_errors = metric(&metrics, "hsmlink_device_errors_total{device=\"a1\"}");

    // hsm1 fails under signing; what changes meanwhile reaches hsm2 only.
    run_in_child(test, &env("demo-failover", None));
    let (ok, metrics, err) = deployment.admin(&["metrics"]);
    assert!(ok, "{err}");
    assert_eq!(metric(&metrics, "hsmlink_device_up{device=\"a1\"}"), 0);
    assert!(metric(&metrics, "hsmlink_device_errors_total{device=\"a1\"}") > a1_errors);
    let keys = state_of();
    assert!(hsm2.holds("t-a", &keys["made-while-out"]));
    assert!(!hsm2.holds("t-a", &keys["doomed"]));
    let log = deployment.server_log();
    assert!(
        log.contains("device failed (CKR_DEVICE_ERROR): taken out of service"),
        "{log}"
    );

    // Back: the watcher checks it (1 s, then 2 s, ...) and brings it up to
    // date before it serves.
    hsm1.recover();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !deployment.server_log().contains("device back in service") {
        assert!(
            Instant::now() < deadline,
            "hsm1 did not come back:\n{}",
            deployment.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        hsm1.holds("t-a", &keys["made-while-out"]),
        "not copied to hsm1"
    );
    assert!(!hsm1.holds("t-a", &keys["doomed"]), "not destroyed on hsm1");
    assert!(hsm1.holds("t-a", &keys["signer"]));

    // hsm1 alone serves what it caught up with.
    run_in_child(test, &env("demo-on-hsm1-alone", None));

    // Tenant beta while hsm2 (its device) is out: made on hsm3 only, and
    // copied to hsm2 when it is back.
    run_in_child(test, &env("beta", Some(&beta_config)));
    let keys = state_of();
    assert!(hsm3.holds("t-b", &keys["beta-signer"]));
    hsm2.recover();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !hsm2.holds("t-b", &keys["beta-signer"]) {
        assert!(
            Instant::now() < deadline,
            "beta's key did not reach hsm2:\n{}",
            deployment.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!hsm1.holds("t-a", &keys["beta-signer"]));

    // A hanging HSM is taken out after its first slow call.
    run_in_child(test, &env("beta-hang", Some(&beta_config)));
    assert!(
        deployment
            .server_log()
            .contains("device call slower than call_timeout_ms")
    );
    hsm2.recover();
    // The server places a partition with two replicas: the free devices on
    // the two HSMs holding the fewest partitions (hsm1 and hsm3 hold one
    // each, hsm2 two), never two tokens of one HSM.
    let (ok, out, err) = deployment.admin(&[
        "partitions",
        "allocate",
        "beta",
        "--driver",
        "pkcs11",
        "--replica-count",
        "2",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("c1,c3"), "{out}");
    let (ok, out, err) = deployment.admin(&[
        "partitions",
        "allocate",
        "beta",
        "--driver",
        "pkcs11",
        "--replica-count",
        "2",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("2 devices on different HSMs are needed, 0 HSMs have a free device"),
        "{err}"
    );
    run_in_child(test, &env("beta-placed", Some(&beta_config)));
    let keys = state_of();
    assert!(hsm1.holds("t-c", &keys["placed-signer"]));
    assert!(hsm3.holds("t-c", &keys["placed-signer"]));

    // No secret of a key in the log.
    let log = deployment.server_log();
    assert!(!log.contains(DEVICE_PIN) && !log.contains(USER_PIN));
}
