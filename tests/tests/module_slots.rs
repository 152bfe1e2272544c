//! The real .so against a real server: library, slot, token and mechanism
//! information come from the server for the tenant's slots.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Deployment, in_child, load_module, run_in_child};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

#[test]
fn library_info_names_hsmlink() {
    if in_child() {
        let pkcs11 = load_module();
        let info = pkcs11.get_library_info().expect("C_GetInfo");
        assert_eq!(info.manufacturer_id(), "hsmlink");
        assert!(info.library_description().contains("hsmlink"));
        let version = info.library_version();
        let expected = env!("CARGO_PKG_VERSION");
        assert_eq!(
            format!("{}.{}", version.major(), version.minor()),
            expected
                .rsplit_once('.')
                .map(|(mm, _)| mm)
                .unwrap_or(expected)
        );
        // Reached through C_GetInterface: the 3.0 interface.
        let cryptoki = info.cryptoki_version();
        assert_eq!((cryptoki.major(), cryptoki.minor()), (3, 0));
        return;
    }
    let deployment = Deployment::start();
    run_in_child("library_info_names_hsmlink", &deployment.module_env());
}

#[test]
fn the_demo_tenant_has_one_slot_with_a_fresh_token() {
    if in_child() {
        let pkcs11 = load_module();
        let all = pkcs11.get_all_slots().expect("C_GetSlotList(FALSE)");
        let present = pkcs11.get_slots_with_token().expect("C_GetSlotList(TRUE)");
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(present, all);
        let initialized = pkcs11
            .get_slots_with_initialized_token()
            .expect("C_GetSlotList + C_GetTokenInfo");
        assert!(
            initialized.is_empty(),
            "a fresh partition is not initialised"
        );

        let slot = all[0];
        let slot_info = pkcs11.get_slot_info(slot).expect("C_GetSlotInfo");
        assert!(slot_info.token_present());
        assert_eq!(slot_info.manufacturer_id(), "hsmlink");
        assert!(
            slot_info.slot_description().starts_with("hsmlink slot"),
            "{}",
            slot_info.slot_description()
        );

        let token = pkcs11.get_token_info(slot).expect("C_GetTokenInfo");
        assert_eq!(token.manufacturer_id(), "hsmlink");
        assert!(!token.token_initialized());
        assert!(token.login_required());
        assert!(token.rng());
        assert_eq!(token.serial_number().len(), 16, "{}", token.serial_number());
        assert!(token.min_pin_length() >= 4);
        assert!(token.max_pin_length() >= token.min_pin_length());
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "the_demo_tenant_has_one_slot_with_a_fresh_token",
        &deployment.module_env(),
    );
}

#[test]
fn mechanisms_are_the_servers() {
    if in_child() {
        let pkcs11 = load_module();
        let slot = pkcs11.get_all_slots().expect("slots")[0];
        let mechanisms = pkcs11.get_mechanism_list(slot).expect("C_GetMechanismList");
        for wanted in [
            MechanismType::AES_KEY_GEN,
            MechanismType::AES_GCM,
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::RSA_PKCS_OAEP,
            MechanismType::ECDSA_SHA256,
            MechanismType::SHA256,
        ] {
            assert!(
                mechanisms.contains(&wanted),
                "{wanted} missing from {mechanisms:?}"
            );
        }
        // hsmlink's vendor-defined SM2 signature mechanism (include/hsmlink.h).
        // (The cryptoki crate drops vendor types from lists; ask for its info.)
        let sm2_sm3 =
            MechanismType::new_vendor_defined(0x8000_0000 | 0x4853_0102).expect("vendor mechanism");
        let sm2 = pkcs11
            .get_mechanism_info(slot, sm2_sm3)
            .expect("SM2-with-SM3 is a mechanism of the slot");
        assert!(sm2.sign() && sm2.verify());
        assert_eq!((sm2.min_key_size(), sm2.max_key_size()), (256, 256));

        let aes = pkcs11
            .get_mechanism_info(slot, MechanismType::AES_KEY_GEN)
            .expect("C_GetMechanismInfo");
        assert_eq!((aes.min_key_size(), aes.max_key_size()), (16, 32));
        assert!(aes.generate());
        let rsa = pkcs11
            .get_mechanism_info(slot, MechanismType::RSA_PKCS_KEY_PAIR_GEN)
            .expect("C_GetMechanismInfo");
        assert_eq!((rsa.min_key_size(), rsa.max_key_size()), (2048, 4096));
        assert!(rsa.generate_key_pair());

        // A mechanism the slot does not have (single DES).
        let missing = pkcs11.get_mechanism_info(slot, MechanismType::DES_CBC);
        assert!(
            matches!(missing, Err(Error::Pkcs11(RvError::MechanismInvalid, _))),
            "{missing:?}"
        );
        // A slot the tenant does not have.
        let bogus = Slot::try_from(4242u64).expect("slot id");
        let answer = pkcs11.get_token_info(bogus);
        assert!(
            matches!(answer, Err(Error::Pkcs11(RvError::SlotIdInvalid, _))),
            "{answer:?}"
        );
        return;
    }
    let deployment = Deployment::start();
    run_in_child("mechanisms_are_the_servers", &deployment.module_env());
}

#[test]
fn functions_of_later_issues_answer_function_not_supported() {
    if in_child() {
        let pkcs11 = load_module();
        let slot = pkcs11.get_all_slots().expect("slots")[0];
        pkcs11
            .init_token(
                slot,
                &cryptoki::types::AuthPin::new("so-pin-1234".into()),
                "t",
            )
            .expect("C_InitToken");
        let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
        let key = session
            .generate_key(
                &cryptoki::mechanism::Mechanism::AesKeyGen,
                &[
                    cryptoki::object::Attribute::ValueLen(16.into()),
                    cryptoki::object::Attribute::Token(false),
                    cryptoki::object::Attribute::Private(false),
                ],
            )
            .expect("C_GenerateKey");
        // The message-based functions of 3.0 come with a later issue.
        let mut iv = [0u8; 12];
        let mut tag = [0u8; 16];
        let params = cryptoki::mechanism::aead::GcmMessageParams::new(
            &mut iv,
            0.into(),
            cryptoki::mechanism::aead::GeneratorFunction::NoGenerate,
            &mut tag,
        )
        .expect("params");
        let answer = session
            .message_encrypt_init(&cryptoki::mechanism::Mechanism::AesGcmMessage(params), key);
        assert!(
            matches!(answer, Err(Error::Pkcs11(RvError::FunctionNotSupported, _))),
            "{answer:?}"
        );
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "functions_of_later_issues_answer_function_not_supported",
        &deployment.module_env(),
    );
}
