//! Object handles for programs that keep them (nginx, Apache, daemons that
//! load a key once): a token object's handle names that object for its whole
//! life — in every session, after `C_Finalize`/`C_Initialize`, and after the
//! server restarts under a running application — while a session object's
//! handle dies with its session. (The fork cases are in
//! `conformance/pykcs11-fork.py`; isolation between tenants in `token.rs`.)

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Deployment, in_child, load_module, pin, rv, user_session};
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

const USER_PIN: &str = "handles-pin";
const TEST: &str = "token_key_handles_outlive_a_server_restart_and_reinitialisation";

/// Waits for `path` to exist (the other process's signal).
fn await_file(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_dir() -> PathBuf {
    std::env::var_os("HSMLINK_TEST_SIGNALS")
        .expect("signal directory")
        .into()
}

/// A new session, logged in (login state is the application's: when it
/// already holds it, C_Login says so).
fn logged_in_session(pkcs11: &Pkcs11) -> Session {
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&pin(USER_PIN))) {
        Ok(()) => {}
        Err(e) => assert_eq!(rv::<()>(Err(e)), RvError::UserAlreadyLoggedIn),
    }
    session
}

fn sign_and_verify(session: &Session, private: ObjectHandle, public: ObjectHandle) {
    let signature = session
        .sign(&Mechanism::EcdsaSha256, private, b"the same key")
        .expect("sign with the kept handle");
    session
        .verify(&Mechanism::EcdsaSha256, public, b"the same key", &signature)
        .expect("verify with the kept handle");
}

fn find_one(session: &Session, label: &[u8], class: ObjectClass) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Label(label.to_vec()), Attribute::Class(class)])
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0]
}

/// The application: one process, one module, across everything below.
fn application() {
    let signals = signal_dir();
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "handles", USER_PIN);
    let p256 = common::P256_PARAMS.to_vec();
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(p256),
                Attribute::Verify(true),
                Attribute::Token(true),
                Attribute::Label(b"kept".to_vec()),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Label(b"kept".to_vec()),
            ],
        )
        .unwrap();
    let ephemeral = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(false),
            Attribute::Label(b"ephemeral".to_vec()),
        ])
        .unwrap();

    // Every session of the application sees the same handles.
    let other = logged_in_session(&pkcs11);
    assert_eq!(find_one(&other, b"kept", ObjectClass::PRIVATE_KEY), private);
    assert_eq!(find_one(&other, b"kept", ObjectClass::PUBLIC_KEY), public);
    sign_and_verify(&other, private, public);
    // A session object's handle dies with its session.
    assert_eq!(
        other
            .find_objects(&[Attribute::Label(b"ephemeral".to_vec())])
            .unwrap(),
        vec![ephemeral]
    );
    drop(session);
    assert_eq!(
        rv(other.get_attributes(ephemeral, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );
    sign_and_verify(&other, private, public);

    // The server restarts under the running application.
    std::fs::write(signals.join("ready"), b"").unwrap();
    await_file(&signals.join("restarted"), Duration::from_secs(60));
    // Sessions and login state lived in the old server process.
    assert_eq!(
        rv(other.sign(&Mechanism::EcdsaSha256, private, b"x")),
        RvError::SessionHandleInvalid
    );
    drop(other);
    let after = logged_in_session(&pkcs11);
    sign_and_verify(&after, private, public);
    assert_eq!(find_one(&after, b"kept", ObjectClass::PRIVATE_KEY), private);
    drop(after);

    // C_Finalize and C_Initialize: a new application instance, same handles.
    pkcs11.finalize().expect("C_Finalize");
    let pkcs11 = load_module();
    let again = logged_in_session(&pkcs11);
    sign_and_verify(&again, private, public);
    assert_eq!(find_one(&again, b"kept", ObjectClass::PUBLIC_KEY), public);
}

#[test]
fn token_key_handles_outlive_a_server_restart_and_reinitialisation() {
    if in_child() {
        application();
        return;
    }
    let mut deployment = Deployment::start();
    let signals = deployment.path("signals");
    std::fs::create_dir_all(&signals).unwrap();
    let mut env = deployment.module_env();
    env.push(("HSMLINK_TEST_SIGNALS", signals.clone().into_os_string()));
    let mut app = common::child_command(TEST, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = signals.join("ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() && Instant::now() < deadline {
        if app.try_wait().unwrap().is_some() {
            break; // failed early: its output says why
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if ready.exists() {
        assert!(deployment.stop_server().unwrap().success());
        deployment.run_server();
        std::fs::write(signals.join("restarted"), b"").unwrap();
    }
    let out = app.wait_with_output().unwrap();
    common::assert_child_passed(TEST, &out);
}
