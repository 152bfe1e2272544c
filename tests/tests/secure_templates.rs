//! Secure templates, first rule, through the real module on both drivers:
//! a key's usage attributes may be turned off but never on again, by
//! `C_SetAttributeValue` or `C_CopyObject` — so a wrapping key never
//! learns to decrypt, and no copy of a key gets a role its original lacks.
//! The `pkcs11` driver runs over SoftHSMv2, which would itself allow the
//! change: hsmlink refuses it above the driver.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{
    Deployment, SoftHsmDevice, in_child, load_module, run_in_child, rv, softhsm_available,
    user_session,
};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

const TEST: &str = "usage_attributes_never_widen_on_either_driver";

fn usage(session: &Session, key: ObjectHandle, which: AttributeType) -> bool {
    match session.get_attributes(key, &[which]).unwrap().as_slice() {
        [
            Attribute::Encrypt(v)
            | Attribute::Decrypt(v)
            | Attribute::Wrap(v)
            | Attribute::Unwrap(v)
            | Attribute::Sign(v)
            | Attribute::Derive(v),
        ] => *v,
        other => panic!("unexpected {other:?}"),
    }
}

fn scenario() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "templates", "templates-pin");
    // A key-encryption key: wrap and unwrap only.
    let kek = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
                Attribute::Sensitive(true),
            ],
        )
        .unwrap();
    // The wrap/decrypt attack's first step: teach the KEK to decrypt.
    for widen in [
        Attribute::Decrypt(true),
        Attribute::Encrypt(true),
        Attribute::Sign(true),
        Attribute::Derive(true),
    ] {
        assert_eq!(
            rv(session.update_attributes(kek, std::slice::from_ref(&widen))),
            RvError::AttributeReadOnly,
            "{widen:?}"
        );
        assert_eq!(
            rv(session.copy_object(kek, std::slice::from_ref(&widen))),
            RvError::AttributeReadOnly,
            "copy with {widen:?}"
        );
    }
    assert!(!usage(&session, kek, AttributeType::Decrypt));
    // Setting what is already on is no change; turning off is allowed,
    // and is for good.
    session
        .update_attributes(kek, &[Attribute::Wrap(true)])
        .unwrap();
    session
        .update_attributes(kek, &[Attribute::Unwrap(false)])
        .unwrap();
    assert!(!usage(&session, kek, AttributeType::Unwrap));
    assert_eq!(
        rv(session.update_attributes(kek, &[Attribute::Unwrap(true)])),
        RvError::AttributeReadOnly
    );
    // A copy may narrow.
    let narrowed = session
        .copy_object(kek, &[Attribute::Wrap(false), Attribute::Token(false)])
        .unwrap();
    assert!(!usage(&session, narrowed, AttributeType::Wrap));
    // A key that only encrypts gets no decrypt through a copy either.
    let data_key = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(16.into()),
                Attribute::Token(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(false),
            ],
        )
        .unwrap();
    assert_eq!(
        rv(session.copy_object(data_key, &[Attribute::Decrypt(true)])),
        RvError::AttributeReadOnly
    );
    // Nothing else changed: labels still change freely.
    session
        .update_attributes(data_key, &[Attribute::Label(b"renamed".to_vec())])
        .unwrap();
}

#[test]
fn usage_attributes_never_widen_on_either_driver() {
    if in_child() {
        scenario();
        return;
    }
    let deployment = Deployment::start();
    run_in_child(TEST, &deployment.module_env());
    drop(deployment);

    if !softhsm_available() {
        eprintln!("SKIPPED (pkcs11 driver): SoftHSMv2 is not installed (Debian package softhsm2)");
        return;
    }
    let device = SoftHsmDevice::new("templates");
    let mut deployment = Deployment::init();
    deployment.use_pkcs11_device("templates", &device);
    deployment.run_server_with_env(&device.env());
    let mut env = deployment.module_env();
    env.extend(device.env());
    run_in_child(TEST, &env);
}
