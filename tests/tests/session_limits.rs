//! Login state limits end to end (`[security] login_idle_timeout_s`,
//! `login_max_lifetime_s`), with short limits: idle expiry, absolute expiry
//! despite activity, a fresh login afterwards, and the audit record of why.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Deployment, in_child, load_module, pin, run_in_child, rv};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState, UserType};

const SO_PIN: &str = "so-pin-1234";
const FIRST_PIN: &str = "first-pin-1111";
const USER_PIN: &str = "user-pin-5678";

/// Token ready, the user logged in; a private EC key for signatures.
fn logged_in(pkcs11: &Pkcs11) -> (Session, ObjectHandle) {
    let slot = pkcs11.get_all_slots().unwrap()[0];
    pkcs11.init_token(slot, &pin(SO_PIN), "limits").unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    session.init_pin(&pin(FIRST_PIN)).unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&pin(FIRST_PIN)))
        .unwrap();
    session.set_pin(&pin(FIRST_PIN), &pin(USER_PIN)).unwrap();
    let private = common::p256_token_signing_key(&session);
    (session, private)
}

fn sign(session: &Session, key: ObjectHandle) -> Result<Vec<u8>, Error> {
    session.sign(&Mechanism::Ecdsa, key, &[7; 32])
}

/// A deployment with these limits (seconds), started.
fn deployment(idle: u64, lifetime: u64) -> Deployment {
    let mut d = Deployment::init();
    d.set_server_keys(
        "security",
        &[
            ("login_idle_timeout_s", &idle.to_string()),
            ("login_max_lifetime_s", &lifetime.to_string()),
        ],
    );
    d.run_server();
    d
}

/// The `login.expired` records of the deployment's audit log (server stopped).
fn expiries(d: &mut Deployment) -> Vec<String> {
    let status = d.stop_server().expect("server was running");
    assert!(status.success(), "{}", d.server_log());
    d.audit_export(&["--tenant", "demo"])
        .into_iter()
        .filter(|l| l.contains("\"op\":\"login.expired\""))
        .collect()
}

#[test]
fn an_idle_login_expires_and_a_fresh_login_works() {
    if in_child() {
        let pkcs11 = load_module();
        let (session, key) = logged_in(&pkcs11);
        sign(&session, key).unwrap();
        // An operation under way when the login expires ends with it.
        session.sign_init(&Mechanism::EcdsaSha256, key).unwrap();
        std::thread::sleep(Duration::from_millis(1600));
        session.sign_update(b"data").unwrap(); // hashed in the module
        assert_eq!(rv(session.sign_final()), RvError::UserNotLoggedIn);
        // Key use and private objects need a login again.
        assert_eq!(rv(sign(&session, key)), RvError::UserNotLoggedIn);
        assert_eq!(
            session.get_session_info().unwrap().session_state(),
            SessionState::RwPublic
        );
        session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
        assert_eq!(sign(&session, key).unwrap().len(), 64);
        return;
    }
    let mut d = deployment(1, 60);
    run_in_child(
        "an_idle_login_expires_and_a_fresh_login_works",
        &d.module_env(),
    );
    let records = expiries(&mut d);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].contains("CKU_USER login ended: idle limit of 1 s"),
        "{}",
        records[0]
    );
}

#[test]
fn a_busy_login_expires_at_its_lifetime_and_a_fresh_login_works() {
    if in_child() {
        let pkcs11 = load_module();
        let (session, key) = logged_in(&pkcs11);
        let start = Instant::now();
        // A call every 200 ms: never idle for 2 s, yet over after 3 s.
        let failure = loop {
            if let Err(e) = sign(&session, key) {
                break e;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never expired");
            std::thread::sleep(Duration::from_millis(200));
        };
        let elapsed = start.elapsed();
        assert!(
            matches!(failure, Error::Pkcs11(RvError::UserNotLoggedIn, _)),
            "{failure:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(2500),
            "expired after {elapsed:?}"
        );
        session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
        assert_eq!(sign(&session, key).unwrap().len(), 64);
        return;
    }
    let mut d = deployment(2, 3);
    run_in_child(
        "a_busy_login_expires_at_its_lifetime_and_a_fresh_login_works",
        &d.module_env(),
    );
    let records = expiries(&mut d);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].contains("CKU_USER login ended: absolute limit of 3 s"),
        "{}",
        records[0]
    );
}

#[test]
fn limits_above_the_defaults_are_accepted_with_a_warning() {
    let mut d = deployment(7201, 28_800);
    let status = d.stop_server().expect("server was running");
    assert!(status.success(), "{}", d.server_log());
    let log = d.server_log();
    assert!(
        log.contains("security.login_idle_timeout_s = 7201 is above the default 7200"),
        "{log}"
    );
    assert!(!log.contains("login_max_lifetime_s"), "{log}");
}
