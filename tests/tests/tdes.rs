//! Triple DES through the real .so and a real server (soft HSM): DES2 and
//! DES3 key generation (odd parity), ECB, CBC and CBC-PAD single- and
//! multi-part, checked against the `openssl` command for keys with known
//! values; wrapping under TDES; the precise error codes; and the MACs
//! (`CKM_DES3_CMAC`, `CKM_DES3_MAC` and their `_GENERAL` forms, which the
//! cryptoki crate cannot name) through ctypes, as a C application calls
//! them (`conformance/ctypes-tdes.py`), against published known answers.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Deployment, hex, in_child, load_module, run_in_child, rv, unhex};
use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

const PIN: &str = "user-pin-tdes";

/// NIST SP 800-67 Rev. 1 appendix B: Key1 ‖ Key2 ‖ Key3.
const DES3_KEY: &str = "0123456789abcdef23456789abcdef01456789abcdef0123";
/// A double-length key (K1 ‖ K2; the cipher uses K1 ‖ K2 ‖ K1).
const DES2_KEY: &str = "4cf15134a2850dd58a3d10ba80570d38";
const IV: [u8; 8] = [0xf6, 0x9f, 0x24, 0x45, 0xdf, 0x4f, 0x9b, 0x17];

/// A secret key with a known value, usable for everything.
fn known_key(session: &Session, key_type: KeyType, value: &[u8]) -> ObjectHandle {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Extractable(true),
            Attribute::Sensitive(false),
            Attribute::Value(value.to_vec()),
        ])
        .unwrap()
}

/// `openssl enc` with the TDES cipher of the key's length and mode.
fn openssl_enc(key: &[u8], mode: &str, iv: Option<&[u8; 8]>, pad: bool, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let cipher = match (key.len(), mode) {
        (16, "ecb") => "-des-ede",
        (16, _) => "-des-ede-cbc",
        (_, "ecb") => "-des-ede3",
        _ => "-des-ede3-cbc",
    };
    let mut command = std::process::Command::new("openssl");
    command.args(["enc", cipher, "-K", &hex(key)]);
    if let Some(iv) = iv {
        command.args(["-iv", &hex(iv)]);
    }
    if !pad {
        command.arg("-nopad");
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl enc {cipher}");
    out.stdout
}

/// Encryption fed in pieces of `step` bytes.
fn encrypt_parts(
    session: &Session,
    mechanism: &Mechanism,
    key: ObjectHandle,
    data: &[u8],
    step: usize,
) -> Vec<u8> {
    session.encrypt_init(mechanism, key).unwrap();
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        out.extend(session.encrypt_update(chunk).unwrap());
    }
    out.extend(session.encrypt_final().unwrap());
    out
}

fn decrypt_parts(
    session: &Session,
    mechanism: &Mechanism,
    key: ObjectHandle,
    data: &[u8],
    step: usize,
) -> Vec<u8> {
    session.decrypt_init(mechanism, key).unwrap();
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        out.extend(session.decrypt_update(chunk).unwrap());
    }
    out.extend(session.decrypt_final().unwrap());
    out
}

fn generated_values_have_odd_parity(session: &Session) {
    for (mechanism, len) in [(Mechanism::Des2KeyGen, 16), (Mechanism::Des3KeyGen, 24)] {
        let mut values = Vec::new();
        for _ in 0..4 {
            let key = session
                .generate_key(
                    &mechanism,
                    &[
                        Attribute::Token(false),
                        Attribute::Sensitive(false),
                        Attribute::Extractable(true),
                    ],
                )
                .unwrap();
            let attrs = session
                .get_attributes(
                    key,
                    &[
                        AttributeType::Value,
                        AttributeType::KeyType,
                        AttributeType::Local,
                    ],
                )
                .unwrap();
            let Some(Attribute::Value(value)) = attrs.first() else {
                panic!("no value: {attrs:?}")
            };
            assert_eq!(value.len(), len);
            // 4 keys of 16 or 24 random bytes: all odd only if set so.
            assert!(
                value.iter().all(|b| b.count_ones() % 2 == 1),
                "parity of {}",
                hex(value)
            );
            let want = if len == 16 {
                KeyType::DES2
            } else {
                KeyType::DES3
            };
            assert!(attrs.contains(&Attribute::KeyType(want)), "{attrs:?}");
            assert!(attrs.contains(&Attribute::Local(true)));
            values.push(value.clone());
        }
        values.sort();
        values.dedup();
        assert_eq!(values.len(), 4, "fresh keys differ");
    }
    // CKA_VALUE_LEN, if given, must be the key type's length.
    assert_eq!(
        rv(session.generate_key(
            &Mechanism::Des3KeyGen,
            &[Attribute::Token(false), Attribute::ValueLen(16.into())]
        )),
        RvError::AttributeValueInvalid
    );
    assert_eq!(
        rv(session.generate_key(
            &Mechanism::Des2KeyGen,
            &[Attribute::Token(false), Attribute::KeyType(KeyType::AES)]
        )),
        RvError::TemplateInconsistent
    );
}

fn modes_agree_with_openssl(session: &Session) {
    let message: Vec<u8> = (0u8..61).map(|i| i.wrapping_mul(29)).collect();
    for (key_type, value) in [
        (KeyType::DES3, unhex(DES3_KEY)),
        (KeyType::DES2, unhex(DES2_KEY)),
    ] {
        let key = known_key(session, key_type, &value);
        // ECB and CBC take whole blocks; CBC-PAD any length.
        let whole = &message[..56];
        for mechanism in [
            Mechanism::Des3Ecb,
            Mechanism::Des3Cbc(IV),
            Mechanism::Des3CbcPad(IV),
        ] {
            // The same mode in OpenSSL's terms.
            let (mode, iv, pad, data) = match mechanism {
                Mechanism::Des3Ecb => ("ecb", None, false, whole),
                Mechanism::Des3Cbc(_) => ("cbc", Some(&IV), false, whole),
                _ => ("cbc", Some(&IV), true, &message[..]),
            };
            let want = openssl_enc(&value, mode, iv, pad, data);
            let got = session.encrypt(&mechanism, key, data).unwrap();
            assert_eq!(hex(&got), hex(&want), "{mechanism:?} {key_type}");
            for step in [1, 7, 8, 13] {
                assert_eq!(
                    encrypt_parts(session, &mechanism, key, data, step),
                    want,
                    "{mechanism:?} in pieces of {step}"
                );
                assert_eq!(
                    decrypt_parts(session, &mechanism, key, &want, step),
                    data,
                    "{mechanism:?} in pieces of {step}"
                );
            }
            assert_eq!(session.decrypt(&mechanism, key, &want).unwrap(), data);
        }
    }
    // The published SP 800-67 example, single-part ECB ("qufck" sic).
    let key = known_key(session, KeyType::DES3, &unhex(DES3_KEY));
    assert_eq!(
        hex(&session
            .encrypt(&Mechanism::Des3Ecb, key, b"The qufck brown fox jump")
            .unwrap()),
        "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900"
    );
}

fn generated_keys_round_trip(session: &Session) {
    let data = [0x5a; 40];
    for mechanism in [Mechanism::Des2KeyGen, Mechanism::Des3KeyGen] {
        let key = session
            .generate_key(
                &mechanism,
                &[
                    Attribute::Token(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        for mode in [
            Mechanism::Des3Ecb,
            Mechanism::Des3Cbc(IV),
            Mechanism::Des3CbcPad(IV),
        ] {
            let ct = session.encrypt(&mode, key, &data).unwrap();
            assert_ne!(&ct[..8], &data[..8]);
            assert_eq!(encrypt_parts(session, &mode, key, &data, 3), ct);
            assert_eq!(session.decrypt(&mode, key, &ct).unwrap(), data);
        }
    }
}

fn precise_errors(session: &Session) {
    // Key values of the wrong length.
    for (key_type, len) in [
        (KeyType::DES3, 16),
        (KeyType::DES3, 8),
        (KeyType::DES2, 24),
        (KeyType::DES2, 15),
    ] {
        let result = session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(false),
            Attribute::Value(vec![0x01; len]),
        ]);
        assert_eq!(
            rv(result),
            RvError::AttributeValueInvalid,
            "{key_type} {len}"
        );
    }
    let key = known_key(session, KeyType::DES3, &unhex(DES3_KEY));
    // Partial blocks.
    for mechanism in [Mechanism::Des3Ecb, Mechanism::Des3Cbc(IV)] {
        assert_eq!(
            rv(session.encrypt(&mechanism, key, &[1; 12])),
            RvError::DataLenRange
        );
        assert_eq!(
            rv(session.decrypt(&mechanism, key, &[1; 12])),
            RvError::EncryptedDataLenRange
        );
        session.encrypt_init(&mechanism, key).unwrap();
        assert_eq!(session.encrypt_update(&[1; 5]).unwrap(), Vec::<u8>::new());
        assert_eq!(rv(session.encrypt_final()), RvError::DataLenRange);
    }
    assert_eq!(
        rv(session.decrypt(&Mechanism::Des3CbcPad(IV), key, &[1; 12])),
        RvError::EncryptedDataLenRange
    );
    // Bad padding: a block whose plaintext ends in 0x00.
    let no_padding = session
        .encrypt(&Mechanism::Des3Cbc(IV), key, &[0; 8])
        .unwrap();
    assert_eq!(
        rv(session.decrypt(&Mechanism::Des3CbcPad(IV), key, &no_padding)),
        RvError::EncryptedDataInvalid
    );
    // An AES key with a TDES mechanism, a TDES key with an AES one.
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::Token(false), Attribute::ValueLen(16.into())],
        )
        .unwrap();
    assert_eq!(
        rv(session.encrypt(&Mechanism::Des3Ecb, aes, &[0; 8])),
        RvError::KeyTypeInconsistent
    );
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, key, &[0; 16])),
        RvError::KeyTypeInconsistent
    );
}

fn wrapping(session: &Session) {
    let des3 = unhex(DES3_KEY);
    let kek = known_key(session, KeyType::DES3, &des3);
    let aes_value: Vec<u8> = (0u8..32).collect();
    let aes = known_key(session, KeyType::AES, &aes_value);
    // CBC-PAD: the AES key's value, padded (PKCS#7), as OpenSSL has it.
    let wrapped = session
        .wrap_key(&Mechanism::Des3CbcPad(IV), kek, aes)
        .unwrap();
    assert_eq!(
        wrapped,
        openssl_enc(&des3, "cbc", Some(&IV), true, &aes_value)
    );
    // ECB: the value as whole blocks.
    let wrapped_ecb = session.wrap_key(&Mechanism::Des3Ecb, kek, aes).unwrap();
    assert_eq!(
        wrapped_ecb,
        openssl_enc(&des3, "ecb", None, false, &aes_value)
    );
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Encrypt(true),
    ];
    for (mechanism, blob) in [
        (Mechanism::Des3CbcPad(IV), &wrapped),
        (Mechanism::Des3Ecb, &wrapped_ecb),
    ] {
        let back = session
            .unwrap_key(&mechanism, kek, blob, &template)
            .unwrap();
        // Same key: same AES-ECB output as the original.
        assert_eq!(
            session.encrypt(&Mechanism::AesEcb, back, &[9; 16]).unwrap(),
            session.encrypt(&Mechanism::AesEcb, aes, &[9; 16]).unwrap()
        );
    }
    // A DES2 key wrapped under the DES3 key and back.
    let des2 = known_key(session, KeyType::DES2, &unhex(DES2_KEY));
    let blob = session
        .wrap_key(&Mechanism::Des3Cbc(IV), kek, des2)
        .unwrap();
    assert_eq!(blob.len(), 16);
    let back = session
        .unwrap_key(
            &Mechanism::Des3Cbc(IV),
            kek,
            &blob,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES2),
                Attribute::Token(false),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap();
    assert_eq!(
        session.encrypt(&Mechanism::Des3Ecb, back, &[3; 8]).unwrap(),
        session.encrypt(&Mechanism::Des3Ecb, des2, &[3; 8]).unwrap()
    );
    // Unwrapped as a DES3 key it has the wrong length.
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::Des3Cbc(IV),
            kek,
            &blob,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES3),
                Attribute::Token(false),
            ],
        )),
        RvError::AttributeValueInvalid
    );
    // A ciphertext that is not whole blocks; bad padding.
    assert_eq!(
        rv(session.unwrap_key(&Mechanism::Des3CbcPad(IV), kek, &wrapped[..20], &template)),
        RvError::WrappedKeyLenRange
    );
    assert_eq!(
        rv(session.unwrap_key(&Mechanism::Des3CbcPad(IV), kek, &wrapped[..32], &template)),
        RvError::WrappedKeyInvalid
    );
    // Without padding, a key that is not whole blocks cannot be wrapped.
    let odd = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Extractable(true),
            Attribute::Value(vec![7; 20]),
        ])
        .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::Des3Ecb, kek, odd)),
        RvError::KeySizeRange
    );
    assert_eq!(
        session
            .wrap_key(&Mechanism::Des3CbcPad(IV), kek, odd)
            .unwrap()
            .len(),
        24
    );
}

fn mechanism_info(pkcs11: &cryptoki::context::Pkcs11) {
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    // (cryptoki's list drops the numbers it has no name for, DES2_KEY_GEN
    // among them; C_GetMechanismInfo takes any.)
    let listed = pkcs11.get_mechanism_list(slot).unwrap();
    for m in [MechanismType::DES3_KEY_GEN, MechanismType::DES3_ECB] {
        assert!(listed.contains(&m), "{m} is not listed");
    }
    for m in [
        MechanismType::DES2_KEY_GEN,
        MechanismType::DES3_CBC,
        MechanismType::DES3_CBC_PAD,
    ] {
        pkcs11.get_mechanism_info(slot, m).unwrap();
    }
    let des2 = pkcs11
        .get_mechanism_info(slot, MechanismType::DES2_KEY_GEN)
        .unwrap();
    assert_eq!((des2.min_key_size(), des2.max_key_size()), (16, 16));
    let cbc = pkcs11
        .get_mechanism_info(slot, MechanismType::DES3_CBC_PAD)
        .unwrap();
    assert_eq!((cbc.min_key_size(), cbc.max_key_size()), (16, 24));
    assert!(cbc.encrypt() && cbc.decrypt() && cbc.wrap() && cbc.unwrap());
    assert!(!cbc.sign());
    let generate = pkcs11
        .get_mechanism_info(slot, MechanismType::DES3_KEY_GEN)
        .unwrap();
    assert_eq!((generate.min_key_size(), generate.max_key_size()), (24, 24));
    assert!(generate.generate());
}

#[test]
fn tdes_keys_modes_wrapping_and_errors() {
    if in_child() {
        let pkcs11 = load_module();
        let session = common::user_session(&pkcs11, "tdes", PIN);
        mechanism_info(&pkcs11);
        generated_values_have_odd_parity(&session);
        modes_agree_with_openssl(&session);
        generated_keys_round_trip(&session);
        precise_errors(&session);
        wrapping(&session);
        return;
    }
    // Wrapping under a DES3 key the test made from a value: the mechanism's
    // behaviour, which a strict partition refuses before it runs (a known
    // wrapping key, and DES3 is weaker than the AES keys it wraps).
    let deployment = Deployment::start_relaxed();
    run_in_child(
        "tdes_keys_modes_wrapping_and_errors",
        &deployment.module_env(),
    );
}

/// The MACs and the IV-length checks through ctypes (the cryptoki crate
/// has no `CKM_DES3_CMAC`/`CKM_DES3_MAC` and types IVs as `[u8; 8]`).
#[test]
fn tdes_macs_and_iv_lengths_through_ctypes() {
    let deployment = Deployment::start();
    let script = common::workspace_root().join("conformance/ctypes-tdes.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(common::module_path())
        .envs(deployment.module_env())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok - all"), "{stdout}");
}
