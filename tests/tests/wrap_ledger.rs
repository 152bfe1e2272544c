//! Wrapping binds the key's attributes (the wrap ledger, README "Secure
//! templates"), through the real module on both drivers (the soft HSM, and
//! the `pkcs11` driver over SoftHSMv2, which would itself unwrap any blob
//! with any roles):
//!
//! - the key-separation attack: a key that only signs and verifies (a CMAC
//!   key), wrapped with AES key wrap, unwrapped as an encryption,
//!   decryption or derivation key: refused, nothing made; a TDES key that
//!   only encrypts, wrapped with CBC-PAD, unwrapped to decrypt (soft HSM);
//! - the honest round trip, with the same or fewer roles, and an unwrap
//!   that names no role (it gets the recorded ones); the unwrapped key
//!   works as the original did;
//! - one blob unwrapped twice with conflicting attributes: each copy within
//!   the record;
//! - a foreign blob (AES key wrap by `openssl` under a value the caller
//!   knows): refused under a key the user made from that value and under a
//!   never-known local key (`CKR_WRAPPED_KEY_INVALID`), accepted under the
//!   same value imported by the SO as `CKA_TRUSTED` (soft HSM; SoftHSMv2
//!   lets only its own SO set `CKA_TRUSTED`);
//! - a server restart keeps the ledger.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{
    Deployment, SoftHsmDevice, in_child, load_module, run_in_child, rv, softhsm_available,
    user_session,
};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

const SUITE: &str = "wrapping_binds_the_keys_attributes_on_either_driver";
const RESTART: &str = "a_restart_keeps_the_ledger_on_either_driver";
const DRIVER: &str = "HSMLINK_LEDGER_DRIVER";
const PHASE: &str = "HSMLINK_LEDGER_PHASE";
const BLOB_FILE: &str = "HSMLINK_LEDGER_BLOB";
const USER_PIN: &str = "ledger-pin";
const KNOWN: [u8; 32] = [0x4b; 32];
const FOREIGN_KEY: [u8; 16] = *b"foreign key 0123";
const PLAIN: [u8; 16] = [0x11; 16];

fn kek(session: &Session, token: bool) -> ObjectHandle {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(token),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Label(b"kek".to_vec()),
            ],
        )
        .unwrap()
}

/// An extractable AES-128 key with exactly `roles`.
fn data_key(session: &Session, token: bool, roles: &[Attribute]) -> ObjectHandle {
    let mut template = vec![
        Attribute::Token(token),
        Attribute::ValueLen(16.into()),
        Attribute::Label(b"data".to_vec()),
    ];
    template.extend_from_slice(roles);
    for off in [
        Attribute::Extractable(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
    ] {
        if !roles
            .iter()
            .any(|r| r.attribute_type() == off.attribute_type())
        {
            template.push(off);
        }
    }
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .unwrap()
}

fn unwrap_template(roles: &[Attribute]) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
    ];
    template.extend_from_slice(roles);
    template
}

fn flag(session: &Session, key: ObjectHandle, which: AttributeType) -> bool {
    match session.get_attributes(key, &[which]).unwrap().as_slice() {
        [
            Attribute::Encrypt(v)
            | Attribute::Decrypt(v)
            | Attribute::Sign(v)
            | Attribute::Verify(v)
            | Attribute::Derive(v)
            | Attribute::Wrap(v)
            | Attribute::Unwrap(v)
            | Attribute::Extractable(v),
        ] => *v,
        other => panic!("unexpected {other:?}"),
    }
}

fn object_count(session: &Session) -> usize {
    session.find_objects(&[]).unwrap().len()
}

/// The key-separation attack and the honest round trips.
fn separation(session: &Session, driver: &str) {
    let kek = kek(session, false);
    // A CMAC key: signs and verifies, nothing else.
    let mac_key = data_key(
        session,
        false,
        &[Attribute::Sign(true), Attribute::Verify(true)],
    );
    let blob = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, mac_key)
        .unwrap();
    let unwrap = |roles: &[Attribute]| {
        session.unwrap_key(&Mechanism::AesKeyWrap, kek, &blob, &unwrap_template(roles))
    };

    // The attack: the same bytes as an encryption, decryption or
    // derivation key, or as a generic secret.
    let before = object_count(session);
    for widened in [
        vec![Attribute::Encrypt(true)],
        vec![Attribute::Decrypt(true)],
        vec![Attribute::Derive(true)],
        vec![Attribute::Sign(true), Attribute::Encrypt(true)],
    ] {
        assert_eq!(
            rv(unwrap(&widened)),
            RvError::TemplateInconsistent,
            "unwrapped as {widened:?}"
        );
    }
    let as_generic = session.unwrap_key(
        &Mechanism::AesKeyWrap,
        kek,
        &blob,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
        ],
    );
    assert_eq!(rv(as_generic), RvError::TemplateInconsistent);
    assert_eq!(object_count(session), before, "a refused unwrap made a key");

    // CBC-PAD (the soft HSM wraps with it under TDES; SoftHSMv2 through
    // hsmlink does not): a DES2 key that only encrypts, under a generated
    // DES3 KEK.
    if driver == "soft" {
        let cbc_pad = Mechanism::Des3CbcPad([5; 8]);
        let des3_kek = session
            .generate_key(
                &Mechanism::Des3KeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                ],
            )
            .unwrap();
        let des2 = session
            .generate_key(
                &Mechanism::Des2KeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                ],
            )
            .unwrap();
        let blob = session.wrap_key(&cbc_pad, des3_kek, des2).unwrap();
        let unwrap = |roles: &[Attribute]| {
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(false),
            ];
            template.extend_from_slice(roles);
            session.unwrap_key(&cbc_pad, des3_kek, &blob, &template)
        };
        assert_eq!(
            rv(unwrap(&[Attribute::Decrypt(true)])),
            RvError::TemplateInconsistent
        );
        let back = unwrap(&[Attribute::Encrypt(true)]).unwrap();
        assert_eq!(
            session.encrypt(&Mechanism::Des3Ecb, back, &[3; 8]).unwrap(),
            session.encrypt(&Mechanism::Des3Ecb, des2, &[3; 8]).unwrap()
        );
    }

    // Honest: the same roles, fewer roles, or none named (the record's).
    let same = unwrap(&[Attribute::Sign(true), Attribute::Verify(true)]).unwrap();
    let mac = session.sign(&Mechanism::AesCMac, mac_key, &PLAIN).unwrap();
    assert_eq!(
        session.sign(&Mechanism::AesCMac, same, &PLAIN).unwrap(),
        mac
    );
    let verify_only = unwrap(&[Attribute::Verify(true), Attribute::Sign(false)]).unwrap();
    session
        .verify(&Mechanism::AesCMac, verify_only, &PLAIN, &mac)
        .unwrap();
    assert_eq!(
        rv(session.sign(&Mechanism::AesCMac, verify_only, &PLAIN)),
        RvError::KeyFunctionNotPermitted
    );
    let unnamed = unwrap(&[]).unwrap();
    for (which, want) in [
        (AttributeType::Sign, true),
        (AttributeType::Verify, true),
        (AttributeType::Encrypt, false),
        (AttributeType::Decrypt, false),
        (AttributeType::Derive, false),
        (AttributeType::Wrap, false),
        (AttributeType::Unwrap, false),
    ] {
        assert_eq!(flag(session, unnamed, which), want, "unnamed: {which:?}");
    }
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, unnamed, &PLAIN)),
        RvError::KeyFunctionNotPermitted
    );

    // A data key round trip: it encrypts as the original did.
    let enc_key = data_key(
        session,
        false,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    );
    let enc_blob = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, enc_key)
        .unwrap();
    let back = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &enc_blob,
            &unwrap_template(&[Attribute::Encrypt(true)]),
        )
        .unwrap();
    assert_eq!(
        session.encrypt(&Mechanism::AesEcb, back, &PLAIN).unwrap(),
        session
            .encrypt(&Mechanism::AesEcb, enc_key, &PLAIN)
            .unwrap()
    );
    // Not extractable once, never extractable again.
    let kept = data_key(
        session,
        false,
        &[Attribute::Encrypt(true), Attribute::Extractable(true)],
    );
    let kept_blob = session.wrap_key(&Mechanism::AesKeyWrap, kek, kept).unwrap();
    let narrowed = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &kept_blob,
            &unwrap_template(&[Attribute::Encrypt(true), Attribute::Extractable(false)]),
        )
        .unwrap();
    assert!(!flag(session, narrowed, AttributeType::Extractable));

    // Double unwrap with conflicting attributes: each copy within the
    // record (encrypt and decrypt apart), neither beyond it.
    let encrypting = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &enc_blob,
            &unwrap_template(&[Attribute::Encrypt(true), Attribute::Decrypt(false)]),
        )
        .unwrap();
    let decrypting = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &enc_blob,
            &unwrap_template(&[Attribute::Decrypt(true), Attribute::Encrypt(false)]),
        )
        .unwrap();
    let ciphertext = session
        .encrypt(&Mechanism::AesEcb, encrypting, &PLAIN)
        .unwrap();
    assert_eq!(
        session
            .decrypt(&Mechanism::AesEcb, decrypting, &ciphertext)
            .unwrap(),
        PLAIN
    );
    for widened in [Attribute::Sign(true), Attribute::Derive(true)] {
        assert_eq!(
            rv(session.unwrap_key(
                &Mechanism::AesKeyWrap,
                kek,
                &enc_blob,
                &unwrap_template(&[Attribute::Decrypt(true), widened.clone()]),
            )),
            RvError::TemplateInconsistent,
            "second unwrap as {widened:?}"
        );
    }
    // A key that derived may come back deriving, not encrypting.
    let deriving = data_key(session, false, &[Attribute::Derive(true)]);
    let derive_blob = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, deriving)
        .unwrap();
    let base = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &derive_blob,
            &unwrap_template(&[Attribute::Derive(true)]),
        )
        .unwrap();
    session
        .derive_key(
            &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0; 16], &[0x3c; 16])),
            base,
            &unwrap_template(&[Attribute::ValueLen(16.into())]),
        )
        .unwrap();
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &derive_blob,
            &unwrap_template(&[Attribute::Encrypt(true)]),
        )),
        RvError::TemplateInconsistent
    );
}

/// `openssl enc -id-aes256-wrap` of `key` under `kek` (RFC 3394): a blob
/// made outside the token.
fn openssl_wrap(kek: &[u8], key: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["enc", "-id-aes256-wrap", "-K", &common::hex(kek)])
        .args(["-iv", "A6A6A6A6A6A6A6A6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child.stdin.take().unwrap().write_all(key).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl enc -id-aes256-wrap");
    out.stdout
}

/// A blob the partition never made.
fn foreign(session: &Session, driver: &str) {
    let blob = openssl_wrap(&KNOWN, &FOREIGN_KEY);
    assert_eq!(blob.len(), 24);
    let template = unwrap_template(&[Attribute::Encrypt(true)]);
    // Under a key the user made from the value (the value is known: any
    // blob, any roles), and under a never-known local key.
    let known = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(KNOWN.to_vec()),
            Attribute::Unwrap(true),
        ])
        .unwrap();
    let local = kek(session, false);
    let before = object_count(session);
    for unwrapping in [known, local] {
        assert_eq!(
            rv(session.unwrap_key(&Mechanism::AesKeyWrap, unwrapping, &blob, &template)),
            RvError::WrappedKeyInvalid,
            "{driver}: a foreign blob unwrapped"
        );
    }
    assert_eq!(object_count(session), before, "a refused unwrap made a key");
    if driver != "soft" {
        return;
    }
    // The SO vouches for the same value (a key exchanged with another HSM).
    session.logout().unwrap();
    session
        .login(UserType::So, Some(&common::pin(common::SO_PIN)))
        .unwrap();
    let trusted = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Value(KNOWN.to_vec()),
            Attribute::Trusted(true),
            Attribute::Unwrap(true),
        ])
        .unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&common::pin(USER_PIN)))
        .unwrap();
    let imported = session
        .unwrap_key(&Mechanism::AesKeyWrap, trusted, &blob, &template)
        .unwrap();
    assert_eq!(
        session
            .encrypt(&Mechanism::AesEcb, imported, &[0; 16])
            .unwrap(),
        common::openssl_aes_ecb_zero(&FOREIGN_KEY)
    );
}

fn suite() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "ledger", USER_PIN);
    let driver = std::env::var(DRIVER).unwrap_or_else(|_| "soft".to_owned());
    separation(&session, &driver);
    foreign(&session, &driver);
}

#[test]
fn wrapping_binds_the_keys_attributes_on_either_driver() {
    if in_child() {
        suite();
        return;
    }
    on_both_drivers(SUITE, false);
}

/// Phase "before": a token KEK wraps a token CMAC key, the blob goes to a
/// file; phase "after" (the server restarted): the record still binds it.
fn restart_phase() {
    let pkcs11 = load_module();
    let blob_file = std::env::var_os(BLOB_FILE).unwrap();
    if std::env::var(PHASE).is_ok_and(|p| p == "before") {
        let session = user_session(&pkcs11, "restart", USER_PIN);
        let kek = kek(&session, true);
        let mac_key = data_key(
            &session,
            true,
            &[Attribute::Sign(true), Attribute::Verify(true)],
        );
        let blob = session
            .wrap_key(&Mechanism::AesKeyWrap, kek, mac_key)
            .unwrap();
        std::fs::write(blob_file, blob).unwrap();
        return;
    }
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&common::pin(USER_PIN)))
        .unwrap();
    let find = |label: &[u8]| {
        session
            .find_objects(&[Attribute::Label(label.to_vec())])
            .unwrap()[0]
    };
    let (kek, mac_key) = (find(b"kek"), find(b"data"));
    let blob = std::fs::read(blob_file).unwrap();
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &unwrap_template(&[Attribute::Encrypt(true)]),
        )),
        RvError::TemplateInconsistent,
        "the record is gone after a restart"
    );
    let back = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &unwrap_template(&[Attribute::Sign(true)]),
        )
        .unwrap();
    assert_eq!(
        session.sign(&Mechanism::AesCMac, back, &PLAIN).unwrap(),
        session.sign(&Mechanism::AesCMac, mac_key, &PLAIN).unwrap()
    );
}

#[test]
fn a_restart_keeps_the_ledger_on_either_driver() {
    if in_child() {
        restart_phase();
        return;
    }
    on_both_drivers(RESTART, true);
}

/// Runs `test` in a child against the soft HSM, then (with SoftHSMv2)
/// against the pkcs11 driver; with `restart`, a second child after the
/// server restarted.
fn on_both_drivers(test: &str, restart: bool) {
    let run = |deployment: &mut Deployment,
               mut env: Vec<(&'static str, std::ffi::OsString)>,
               server_env: &[(&'static str, std::ffi::OsString)]| {
        let blob: PathBuf = deployment.path("ledger-blob");
        env.push((BLOB_FILE, blob.into_os_string()));
        let mut first = env.clone();
        first.push((PHASE, "before".into()));
        run_in_child(test, &first);
        if !restart {
            // The refused foreign blob, said clearly in the server's log.
            let log = deployment.server_log();
            assert!(
                log.contains("not in the partition's wrap ledger"),
                "no log line for the refused foreign blob:\n{log}"
            );
        }
        if restart {
            assert!(deployment.stop_server().unwrap().success());
            deployment.run_server_with_env(server_env);
            env.push((PHASE, "after".into()));
            run_in_child(test, &env);
        }
    };
    let mut deployment = Deployment::start();
    let env = deployment.module_env();
    run(&mut deployment, env, &[]);
    drop(deployment);

    if !softhsm_available() {
        eprintln!("SKIPPED (pkcs11 driver): SoftHSMv2 is not installed (Debian package softhsm2)");
        return;
    }
    let device = SoftHsmDevice::new("ledger");
    let mut deployment = Deployment::init();
    deployment.use_pkcs11_device("ledger", &device);
    deployment.run_server_with_env(&device.env());
    let mut env = deployment.module_env();
    env.extend(device.env());
    env.push((DRIVER, "pkcs11".into()));
    run(&mut deployment, env, &device.env());
}
