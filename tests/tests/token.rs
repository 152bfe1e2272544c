//! The token through the real .so and a real server: sessions, login and
//! PINs, objects and attributes, persistence, and tenant isolation.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

// The suite, once per driver: the soft HSM, the pkcs11 driver on
// SoftHSMv2, and the pkcs11 driver with a replica.
common::per_driver!(
    token_initialisation_pins_and_login_rules,
    sessions_open_close_and_report_their_state,
    objects_attributes_and_template_rules,
    private_objects_are_invisible_until_login,
);

use std::ffi::OsString;

use common::{Deployment, in_child, load_module, run_in_child};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, CertificateType, KeyType, ObjectClass,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "user-pin-5678";
const NEW_USER_PIN: &str = "user-pin-changed";

fn pin(text: &str) -> AuthPin {
    AuthPin::new(text.into())
}

fn rv(result: Result<impl std::fmt::Debug, Error>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

fn slot(pkcs11: &Pkcs11) -> Slot {
    pkcs11.get_all_slots().expect("C_GetSlotList")[0]
}

/// Token initialised by its SO, user PIN set and changed by the user:
/// a session logged in as the user, ready for objects.
fn ready_user_session(pkcs11: &Pkcs11) -> Session {
    let slot = slot(pkcs11);
    pkcs11
        .init_token(slot, &pin(SO_PIN), "tenant token")
        .expect("C_InitToken");
    let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
    session
        .login(UserType::So, Some(&pin(SO_PIN)))
        .expect("SO login");
    session.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    session.logout().expect("C_Logout");
    session
        .login(UserType::User, Some(&pin(USER_PIN)))
        .expect("user login");
    session
        .set_pin(&pin(USER_PIN), &pin(NEW_USER_PIN))
        .expect("C_SetPIN");
    session
}

fn token_initialisation_pins_and_login_rules() {
    let pkcs11 = load_module();
    let slot = slot(&pkcs11);
    // A token never initialised has no sessions (SoftHSMv2 answers the same).
    assert_eq!(
        rv(pkcs11.open_rw_session(slot)),
        RvError::TokenNotRecognized
    );

    pkcs11
        .init_token(slot, &pin(SO_PIN), "tenant token")
        .expect("C_InitToken");
    // Before C_InitPIN there is no user PIN to log in with.
    let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
    assert_eq!(
        rv(session.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::UserPinNotInitialized
    );
    // C_InitToken again, with a session open on the token.
    assert_eq!(
        rv(pkcs11.init_token(slot, &pin(SO_PIN), "tenant token")),
        RvError::SessionExists
    );
    session.close().expect("C_CloseSession");
    let info = pkcs11.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(info.token_initialized());
    assert!(!info.user_pin_initialized());
    assert_eq!(info.label(), "tenant token");
    // Initialising again takes the SO PIN of the token.
    assert_eq!(
        rv(pkcs11.init_token(slot, &pin("not-the-so-pin"), "x")),
        RvError::PinIncorrect
    );

    let ro = pkcs11.open_ro_session(slot).expect("RO session");
    assert_eq!(
        ro.get_session_info().unwrap().session_state(),
        SessionState::RoPublic
    );
    // The SO cannot log in while a read-only session exists.
    assert_eq!(
        rv(ro.login(UserType::So, Some(&pin(SO_PIN)))),
        RvError::SessionReadOnlyExists
    );
    ro.close().unwrap();

    let rw = pkcs11.open_rw_session(slot).expect("RW session");
    assert_eq!(
        rw.get_session_info().unwrap().session_state(),
        SessionState::RwPublic
    );
    assert_eq!(
        rv(rw.login(UserType::So, Some(&pin("wrong-pin")))),
        RvError::PinIncorrect
    );
    assert!(pkcs11.get_token_info(slot).unwrap().so_pin_count_low());
    rw.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("SO login");
    assert_eq!(
        rw.get_session_info().unwrap().session_state(),
        SessionState::RwSecurityOfficer
    );
    // Read-only sessions cannot be opened while the SO is logged in.
    assert_eq!(
        rv(pkcs11.open_ro_session(slot)),
        RvError::SessionReadWriteSoExists
    );
    assert_eq!(
        rv(rw.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::UserAnotherAlreadyLoggedIn
    );
    // PIN length limits (4 to 128 bytes, as the token info says).
    assert_eq!(rv(rw.init_pin(&pin("12"))), RvError::PinLenRange);
    rw.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    rw.logout().expect("C_Logout");
    assert_eq!(rv(rw.logout()), RvError::UserNotLoggedIn);

    let info = pkcs11.get_token_info(slot).unwrap();
    assert!(info.user_pin_initialized());
    assert!(
        info.user_pin_to_be_changed(),
        "a PIN the SO set must be changed by its owner"
    );

    // Logging in on one session logs in all of this application's sessions.
    let other = pkcs11.open_rw_session(slot).unwrap();
    rw.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("user login");
    assert_eq!(
        other.get_session_info().unwrap().session_state(),
        SessionState::RwUser
    );
    assert_eq!(
        rv(other.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
    // Until the user changes the PIN the SO gave, keys are out of reach.
    let blocked = rw.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(false),
        Attribute::Value(b"x".to_vec()),
    ]);
    assert_eq!(rv(blocked), RvError::PinExpired);
    assert_eq!(
        rv(rw.set_pin(&pin("not-the-pin"), &pin(NEW_USER_PIN))),
        RvError::PinIncorrect
    );
    rw.set_pin(&pin(USER_PIN), &pin(NEW_USER_PIN))
        .expect("C_SetPIN");
    assert!(
        !pkcs11
            .get_token_info(slot)
            .unwrap()
            .user_pin_to_be_changed()
    );
    rw.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(false),
        Attribute::Value(b"x".to_vec()),
    ])
    .expect("objects after the PIN change");
    rw.logout().unwrap();

    // The SO changes its own PIN.
    rw.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    rw.set_pin(&pin(SO_PIN), &pin("so-pin-new"))
        .expect("SO C_SetPIN");
    rw.logout().unwrap();
    rw.login(UserType::So, Some(&pin("so-pin-new")))
        .expect("new SO PIN");
    rw.logout().unwrap();

    // Wrong user PINs lock the PIN after the limit (10 by default).
    for attempt in 1..=10 {
        let answer = rv(rw.login(UserType::User, Some(&pin("wrong-pin"))));
        if attempt < 10 {
            assert_eq!(answer, RvError::PinIncorrect, "attempt {attempt}");
        } else {
            assert!(
                matches!(answer, RvError::PinIncorrect | RvError::PinLocked),
                "attempt {attempt}: {answer:?}"
            );
        }
        if attempt == 9 {
            assert!(pkcs11.get_token_info(slot).unwrap().user_pin_final_try());
        }
    }
    assert!(pkcs11.get_token_info(slot).unwrap().user_pin_locked());
    assert_eq!(
        rv(rw.login(UserType::User, Some(&pin(NEW_USER_PIN)))),
        RvError::PinLocked,
        "even the right PIN is refused once locked"
    );
}

fn sessions_open_close_and_report_their_state() {
    let pkcs11 = load_module();
    let slot = slot(&pkcs11);
    pkcs11
        .init_token(slot, &pin(SO_PIN), "sessions")
        .expect("C_InitToken");
    let ro = pkcs11.open_ro_session(slot).expect("RO");
    let rw = pkcs11.open_rw_session(slot).expect("RW");
    let info = rw.get_session_info().expect("C_GetSessionInfo");
    assert!(info.read_write());
    assert_eq!(info.slot_id(), slot);
    assert!(!ro.get_session_info().unwrap().read_write());
    let token = pkcs11.get_token_info(slot).unwrap();
    assert_eq!(token.session_count(), Some(2));
    assert_eq!(token.rw_session_count(), Some(1));
    ro.close().expect("C_CloseSession");
    assert_eq!(
        pkcs11.get_token_info(slot).unwrap().session_count(),
        Some(1)
    );
    rw.close().expect("C_CloseSession");
    assert_eq!(
        pkcs11.get_token_info(slot).unwrap().session_count(),
        Some(0)
    );
}

fn aes_key_template(value: &[u8], label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(vec![0x01, 0x02]),
        Attribute::Value(value.to_vec()),
    ]
}

fn objects_attributes_and_template_rules() {
    let pkcs11 = load_module();
    let session = ready_user_session(&pkcs11);

    // A data object.
    let data = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(b"greeting".to_vec()),
            Attribute::Application(b"tests".to_vec()),
            Attribute::Value(b"hello, token".to_vec()),
        ])
        .expect("create data object");
    let attrs = session
        .get_attributes(data, &[AttributeType::Value, AttributeType::Label])
        .expect("C_GetAttributeValue");
    assert!(attrs.contains(&Attribute::Value(b"hello, token".to_vec())));
    assert!(attrs.contains(&Attribute::Label(b"greeting".to_vec())));

    // A certificate.
    let der = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    let cert = session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Subject(vec![0x30, 0x00]),
            Attribute::Value(der.clone()),
            Attribute::Label(b"cert".to_vec()),
        ])
        .expect("create certificate");
    let got = session
        .get_attributes(cert, &[AttributeType::Value])
        .unwrap();
    assert_eq!(got, vec![Attribute::Value(der)]);

    // An AES key of known value: sensitive, so its value never leaves.
    let key = session
        .create_object(&aes_key_template(&[0x42; 32], "aes"))
        .expect("create AES key");
    let info = session
        .get_attribute_info(
            key,
            &[
                AttributeType::Value,
                AttributeType::ValueLen,
                AttributeType::Local,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::UniqueId,
                AttributeType::Modulus,
            ],
        )
        .expect("attribute info");
    assert!(matches!(info[0], AttributeInfo::Sensitive), "{:?}", info[0]);
    assert!(matches!(info[1], AttributeInfo::Available(_)));
    assert!(
        matches!(info[6], AttributeInfo::TypeInvalid),
        "an AES key has no modulus: {:?}",
        info[6]
    );
    let derived = session
        .get_attributes(
            key,
            &[
                AttributeType::ValueLen,
                AttributeType::Local,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::UniqueId,
            ],
        )
        .unwrap();
    assert!(derived.contains(&Attribute::ValueLen(32.into())));
    assert!(
        derived.contains(&Attribute::Local(false)),
        "imported, not generated"
    );
    assert!(
        derived.contains(&Attribute::AlwaysSensitive(false)),
        "its value was seen outside"
    );
    assert!(derived.contains(&Attribute::NeverExtractable(false)));
    assert!(
        derived
            .iter()
            .any(|a| matches!(a, Attribute::UniqueId(id) if !id.is_empty()))
    );

    // One-way attributes and read-only ones.
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::Local(true)])),
        RvError::AttributeReadOnly
    );
    session
        .update_attributes(key, &[Attribute::Label(b"renamed".to_vec())])
        .expect("labels change");
    assert_eq!(
        session
            .get_attributes(key, &[AttributeType::Label])
            .unwrap(),
        vec![Attribute::Label(b"renamed".to_vec())]
    );

    // Template checks.
    assert_eq!(
        rv(session.create_object(&[Attribute::Token(false), Attribute::Value(vec![1])])),
        RvError::TemplateIncomplete,
        "no CKA_CLASS"
    );
    assert_eq!(
        rv(session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Value(vec![0; 16]),
        ])),
        RvError::TemplateIncomplete,
        "a secret key without CKA_KEY_TYPE"
    );
    assert_eq!(
        rv(session.create_object(&aes_key_template(&[7; 7], "short"))),
        RvError::AttributeValueInvalid,
        "a 7-byte AES key"
    );
    let mut local = aes_key_template(&[1; 16], "local");
    local.push(Attribute::Local(true));
    assert_eq!(
        rv(session.create_object(&local)),
        RvError::AttributeReadOnly
    );
    let mut inconsistent = aes_key_template(&[1; 16], "x");
    inconsistent.push(Attribute::Class(ObjectClass::DATA));
    assert_eq!(
        rv(session.create_object(&inconsistent)),
        RvError::TemplateInconsistent,
        "CKA_CLASS twice with two values"
    );

    // Copy, find, size, destroy.
    let copy = session
        .copy_object(data, &[Attribute::Label(b"copy".to_vec())])
        .expect("C_CopyObject");
    let found = session
        .find_objects(&[Attribute::Label(b"copy".to_vec())])
        .expect("C_FindObjects*");
    assert_eq!(found, vec![copy]);
    let all_data = session
        .find_objects(&[Attribute::Class(ObjectClass::DATA)])
        .unwrap();
    assert!(all_data.contains(&data) && all_data.contains(&copy));
    session.destroy_object(copy).expect("C_DestroyObject");
    assert_eq!(
        rv(session.get_attributes(copy, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );

    // CKA_MODIFIABLE / CKA_COPYABLE / CKA_DESTROYABLE are honoured.
    let frozen = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(false),
            Attribute::Modifiable(false),
            Attribute::Copyable(false),
            Attribute::Destroyable(false),
            Attribute::Value(b"frozen".to_vec()),
        ])
        .unwrap();
    assert_eq!(
        rv(session.update_attributes(frozen, &[Attribute::Label(b"x".to_vec())])),
        RvError::ActionProhibited
    );
    assert_eq!(
        rv(session.copy_object(frozen, &[])),
        RvError::ActionProhibited
    );
    assert_eq!(
        rv(session.destroy_object(frozen)),
        RvError::ActionProhibited
    );
}

fn private_objects_are_invisible_until_login() {
    let pkcs11 = load_module();
    let session = ready_user_session(&pkcs11);
    let secret = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(b"private".to_vec()),
            Attribute::Value(b"top secret".to_vec()),
        ])
        .unwrap();
    session.logout().unwrap();
    let found = session
        .find_objects(&[Attribute::Label(b"private".to_vec())])
        .unwrap();
    assert!(found.is_empty(), "a private object is listed before login");
    assert_eq!(
        rv(session.get_attributes(secret, &[AttributeType::Value])),
        RvError::ObjectHandleInvalid
    );
    session
        .login(UserType::User, Some(&pin(NEW_USER_PIN)))
        .unwrap();
    assert_eq!(
        session
            .find_objects(&[Attribute::Label(b"private".to_vec())])
            .unwrap(),
        vec![secret]
    );
}

/// Where a child writes what its parent must carry to the next child.
fn handoff(deployment: &Deployment) -> Vec<(&'static str, OsString)> {
    let mut env = deployment.module_env();
    env.push((
        "HSMLINK_TEST_HANDOFF",
        deployment.path("handoff.txt").into_os_string(),
    ));
    env
}

fn handoff_path() -> std::path::PathBuf {
    std::env::var_os("HSMLINK_TEST_HANDOFF")
        .expect("handoff path")
        .into()
}

#[test]
fn token_objects_survive_a_restart_and_session_objects_do_not() {
    if in_child() {
        let pkcs11 = load_module();
        let path = handoff_path();
        if !path.exists() {
            let session = ready_user_session(&pkcs11);
            let token_object = session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Label(b"durable".to_vec()),
                    Attribute::Value(b"still here".to_vec()),
                ])
                .unwrap();
            let key = session
                .create_object(&aes_key_template(&[9; 16], "durable key"))
                .unwrap();
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(false),
                    Attribute::Label(b"ephemeral".to_vec()),
                ])
                .unwrap();
            std::fs::write(&path, format!("{} {}", token_object.handle(), key.handle())).unwrap();
            return;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let handles: Vec<u64> = text
            .split_whitespace()
            .map(|h| h.parse().unwrap())
            .collect();
        let slot = slot(&pkcs11);
        assert!(pkcs11.get_token_info(slot).unwrap().token_initialized());
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&pin(NEW_USER_PIN)))
            .expect("the changed PIN survives");
        let durable = session
            .find_objects(&[Attribute::Label(b"durable".to_vec())])
            .unwrap();
        assert_eq!(durable.len(), 1);
        assert_eq!(
            durable[0].handle(),
            handles[0],
            "token object handles are stable"
        );
        assert_eq!(
            session
                .get_attributes(durable[0], &[AttributeType::Value])
                .unwrap(),
            vec![Attribute::Value(b"still here".to_vec())]
        );
        let key = session
            .find_objects(&[Attribute::Label(b"durable key".to_vec())])
            .unwrap();
        assert_eq!(key.len(), 1);
        assert_eq!(key[0].handle(), handles[1]);
        assert!(
            session
                .find_objects(&[Attribute::Label(b"ephemeral".to_vec())])
                .unwrap()
                .is_empty(),
            "session objects die with their session"
        );
        return;
    }
    let mut deployment = Deployment::start();
    let name = "token_objects_survive_a_restart_and_session_objects_do_not";
    run_in_child(name, &handoff(&deployment));
    assert!(deployment.stop_server().unwrap().success());
    deployment.run_server();
    run_in_child(name, &handoff(&deployment));
}

#[test]
fn the_database_holds_no_secret_in_clear() {
    const KEY: [u8; 32] = *b"K3y-v4lu3-th4t-must-n0t-l34k!!!!";
    const PRIVATE_VALUE: &[u8] = b"private-data-value-never-in-clear";
    if in_child() {
        let pkcs11 = load_module();
        let session = ready_user_session(&pkcs11);
        session
            .create_object(&aes_key_template(&KEY, "needle key"))
            .unwrap();
        session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Value(PRIVATE_VALUE.to_vec()),
            ])
            .unwrap();
        return;
    }
    let mut deployment = Deployment::start();
    run_in_child(
        "the_database_holds_no_secret_in_clear",
        &deployment.module_env(),
    );
    // Scan the database while the server still holds it open (WAL not yet
    // checkpointed), and again after a clean shutdown.
    let dir = deployment.dir.path().to_path_buf();
    let scan = |when: &str| {
        let mut scanned = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("hsmlink.db") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += bytes.len();
            for needle in [
                &KEY[..],
                PRIVATE_VALUE,
                SO_PIN.as_bytes(),
                USER_PIN.as_bytes(),
                NEW_USER_PIN.as_bytes(),
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?} in clear ({when})",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
        assert!(scanned > 0, "no database file found ({when})");
    };
    scan("server running");
    assert!(deployment.stop_server().unwrap().success());
    scan("after shutdown");
}

#[test]
fn tenants_cannot_reach_each_others_objects() {
    if in_child() {
        let pkcs11 = load_module();
        let path = handoff_path();
        if !path.exists() {
            // Tenant demo: objects of every visibility.
            let session = ready_user_session(&pkcs11);
            let public = session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Label(b"demo public".to_vec()),
                    Attribute::Value(b"demo".to_vec()),
                ])
                .unwrap();
            let key = session
                .create_object(&aes_key_template(&[5; 16], "demo key"))
                .unwrap();
            let session_object = session
                .create_object(&[Attribute::Class(ObjectClass::DATA), Attribute::Token(false)])
                .unwrap();
            std::fs::write(
                &path,
                format!(
                    "{} {} {} {}",
                    public.handle(),
                    key.handle(),
                    session_object.handle(),
                    session.handle()
                ),
            )
            .unwrap();
            // Keep the session (and its session object) alive while the
            // other tenant tries: the parent kills us when done.
            std::thread::sleep(std::time::Duration::from_secs(
                std::env::var("HSMLINK_TEST_HOLD")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            ));
            return;
        }
        // Tenant acme, with demo's handle values in hand.
        let text = std::fs::read_to_string(&path).unwrap();
        let handles: Vec<u64> = text
            .split_whitespace()
            .map(|h| h.parse().unwrap())
            .collect();
        let session = ready_user_session(&pkcs11);
        let slots = pkcs11.get_all_slots().unwrap();
        assert_eq!(slots.len(), 1, "acme sees its own slot only");
        for slot_id in 1..32u64 {
            let other = Slot::try_from(slot_id).unwrap();
            assert_eq!(
                rv(pkcs11.get_token_info(other)),
                RvError::SlotIdInvalid,
                "slot {slot_id}"
            );
        }
        assert!(
            session
                .find_objects(&[])
                .unwrap()
                .iter()
                .all(|h| !handles[..3].contains(&h.handle())),
            "demo's objects show up in acme's search"
        );
        return;
    }
    let deployment = Deployment::init();
    let acme_config = deployment.add_tenant("acme");
    let mut deployment = deployment;
    deployment.run_server();
    let name = "tenants_cannot_reach_each_others_objects";
    let env = handoff(&deployment);
    run_in_child(name, &env);
    let mut acme_env = vec![("HSMLINK_CONF", acme_config.into_os_string())];
    acme_env.push((
        "HSMLINK_TEST_HANDOFF",
        deployment.path("handoff.txt").into_os_string(),
    ));
    run_in_child(name, &acme_env);
    // Then every object call with demo's raw handle values, as a C
    // application passes them (the cryptoki crate lets no caller make one up).
    let handoff = std::fs::read_to_string(deployment.path("handoff.txt")).unwrap();
    let demo_objects: Vec<&str> = handoff.split_whitespace().take(3).collect();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(common::workspace_root().join("conformance/ctypes-foreign-handles.py"))
        .arg(common::module_path())
        .arg(NEW_USER_PIN)
        .args(&demo_objects)
        .env("HSMLINK_CONF", deployment.path("acme.toml"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "acme reached demo's objects:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And demo's objects are untouched.
    std::fs::remove_file(deployment.path("handoff.txt")).ok();
}

/// An application that dies without `C_Finalize` keeps its sessions for the
/// grace period only: a session it left open blocks `C_InitToken` (which
/// needs a token without sessions) until then, and not after.
#[test]
fn sessions_of_a_vanished_application_close_after_the_grace_period() {
    let name = "sessions_of_a_vanished_application_close_after_the_grace_period";
    if in_child() {
        let pkcs11 = load_module();
        let slot = slot(&pkcs11);
        if std::env::var_os("HSMLINK_TEST_ROLE").as_deref() == Some("vanish".as_ref()) {
            pkcs11
                .init_token(slot, &pin(SO_PIN), "grace")
                .expect("C_InitToken");
            let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
            std::mem::forget(session);
            std::mem::forget(pkcs11);
            // Die without C_CloseSession or C_Finalize: the connections just close.
            let marker = handoff_path();
            std::fs::write(&marker, "opened").unwrap();
            std::process::exit(0);
        }
        // Another application of the same tenant, right away and after the grace.
        assert_eq!(
            rv(pkcs11.init_token(slot, &pin(SO_PIN), "grace")),
            RvError::SessionExists,
            "the vanished application's session is still there within the grace period"
        );
        std::thread::sleep(std::time::Duration::from_millis(8000));
        pkcs11
            .init_token(slot, &pin(SO_PIN), "grace")
            .expect("after the grace period the session is gone");
        return;
    }
    let mut deployment = Deployment::init();
    let config = std::fs::read_to_string(deployment.path("server.toml")).unwrap();
    let config = config.replace("app_grace_ms = 60000", "app_grace_ms = 5000");
    assert!(config.contains("app_grace_ms = 5000"));
    std::fs::write(deployment.path("server.toml"), config).unwrap();
    deployment.run_server();

    let mut env = handoff(&deployment);
    env.push(("HSMLINK_TEST_ROLE", "vanish".into()));
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HSMLINK_TEST_CHILD", name)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        deployment.path("handoff.txt").exists(),
        "the first application did not run"
    );
    run_in_child(name, &deployment.module_env());
}
