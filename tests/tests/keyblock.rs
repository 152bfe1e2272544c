//! X9.143 / ISO 20038 ("TR-31") key blocks, versions `D`, `B` and `C`, through the real
//! .so and a real server (`CKM_HSMLINK_TR31` with `C_UnwrapKey` and
//! `C_WrapKey`), against an independent implementation: `psec` from PyPI,
//! installed in a virtual environment the test makes (the test fails, saying
//! so, when PyPI cannot be reached), and OpenSSL for the imported keys'
//! values.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Deployment, hex, in_child, load_module, run_in_child, rv, unhex};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

const PIN: &str = "user-pin-5678";
const CKM_HSMLINK_TR31: u64 = 0xC853_0200;
const CKA_HSMLINK_KEYBLOCK_HEADER: u64 = 0xC853_0300;
const CKA_HSMLINK_KEY_VERSION: u64 = 0xC853_0301;
/// Where the child finds the parent's virtual environment.
const PYTHON_ENV: &str = "HSMLINK_TEST_PSEC_PYTHON";

fn user_session(pkcs11: &Pkcs11) -> Session {
    common::user_session(pkcs11, "keyblock", PIN)
}

fn tr31() -> Mechanism<'static> {
    Mechanism::VendorDefined(
        cryptoki::mechanism::vendor_defined::VendorDefinedMechanism::new::<()>(
            MechanismType::new_vendor_defined(CKM_HSMLINK_TR31).unwrap(),
            None,
        ),
    )
}

/// Runs `make` logged in as the tenant's SO (a KBPK whose value the test
/// knows is one the SO vouches for, `CKA_TRUSTED`: on a strict partition
/// only such a key, or one generated on the token, may wrap).
fn as_so<T>(session: &Session, make: impl FnOnce() -> T) -> T {
    use cryptoki::session::UserType;
    session.logout().unwrap();
    session
        .login(UserType::So, Some(&common::pin(common::SO_PIN)))
        .unwrap();
    let made = make();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&common::pin(PIN)))
        .unwrap();
    made
}

/// A session AES key with `value`: a KBPK (wrap and unwrap, made and
/// trusted by the SO) or a key to export (extractable, not sensitive).
fn aes_key(session: &Session, value: &[u8], kbpk: bool) -> ObjectHandle {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Value(value.to_vec()),
    ];
    if kbpk {
        template.extend([
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Private(false),
            Attribute::Trusted(true),
        ]);
        return as_so(session, || session.create_object(&template).unwrap());
    } else {
        template.extend([
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Extractable(true),
            Attribute::Sensitive(false),
        ]);
    }
    session.create_object(&template).unwrap()
}

fn import(session: &Session, kbpk: ObjectHandle, block: &str) -> Result<ObjectHandle, Error> {
    session.unwrap_key(&tr31(), kbpk, block.as_bytes(), &[Attribute::Token(false)])
}

fn object_count(session: &Session) -> usize {
    session.find_objects(&[]).unwrap().len()
}

// ---- the independent implementations ----

fn python(script: &str, args: &[&str]) -> String {
    let python = std::env::var_os(PYTHON_ENV).expect("psec python from the parent");
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run psec");
    assert!(
        out.status.success(),
        "psec failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// psec's key block of `key` under `kbpk` with `header`.
fn psec_wrap(kbpk: &[u8], header: &str, key: &[u8]) -> String {
    python(
        "import sys, psec.tr31 as t\n\
         print(t.wrap(bytes.fromhex(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])))",
        &[&hex(kbpk), header, &hex(key)],
    )
}

/// psec's reading of `block` under `kbpk`: (version, usage, algorithm,
/// mode of use, key version, exportability) and the key.
fn psec_unwrap(kbpk: &[u8], block: &[u8]) -> (String, Vec<u8>) {
    let out = python(
        "import sys, psec.tr31 as t\n\
         h, k = t.unwrap(bytes.fromhex(sys.argv[1]), sys.argv[2])\n\
         print(h.version_id + h.key_usage + h.algorithm + h.mode_of_use + h.version_num + h.exportability, k.hex())",
        &[&hex(kbpk), std::str::from_utf8(block).unwrap()],
    );
    let (fields, key) = out.split_once(' ').unwrap();
    (fields.to_owned(), unhex(key))
}

fn deployment_env(
    deployment: &Deployment,
    python: &Path,
) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = deployment.module_env();
    env.push((PYTHON_ENV, python.as_os_str().to_owned()));
    env
}

/// A block made by a Thales payShield 10k, published with open-source TR-31
/// test suites: AES-256 data key `D0`, mode `N`, non-exportable, under the
/// AES-256 KBPK of 32 `0x41` bytes.
const PAYSHIELD_KBPK: [u8; 32] = [0x41; 32];
const PAYSHIELD_D0: &str = "D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814";
const PAYSHIELD_D0_KEY: &str = "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC";

#[test]
fn published_and_psec_blocks_import_and_exports_unwrap_in_psec() {
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);

        // Known answer: the payShield block imports, and the key encrypts
        // as OpenSSL does with the published key.
        let kbpk = aes_key(&session, &PAYSHIELD_KBPK, true);
        let key = import(&session, kbpk, PAYSHIELD_D0).unwrap();
        let zero = session
            .encrypt(&Mechanism::AesEcb, key, &[0u8; 16])
            .unwrap();
        assert_eq!(zero, common::openssl_aes_ecb_zero(&unhex(PAYSHIELD_D0_KEY)));
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Sign,
                    AttributeType::Wrap,
                    AttributeType::Extractable,
                    AttributeType::KeyType,
                    AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER),
                    AttributeType::VendorDefined(CKA_HSMLINK_KEY_VERSION),
                ],
            )
            .unwrap();
        for want in [
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Wrap(false),
            Attribute::Extractable(false),
            Attribute::KeyType(KeyType::AES),
            Attribute::VendorDefined((
                AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER),
                b"D0144D0AN00N0000".to_vec(),
            )),
            Attribute::VendorDefined((
                AttributeType::VendorDefined(CKA_HSMLINK_KEY_VERSION),
                b"00".to_vec(),
            )),
        ] {
            assert!(attrs.contains(&want), "{want:?} not in {attrs:?}");
        }
        // Non-exportable: never wrapped out.
        assert_eq!(
            rv(session.wrap_key(&tr31(), kbpk, key)),
            RvError::KeyUnextractable
        );

        // psec → hsmlink: a data key (exportable) and a MAC-only key.
        let kbpk_value: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37) ^ 0x5C).collect();
        let kbpk = aes_key(&session, &kbpk_value, true);
        let data_key: Vec<u8> = (0u8..32).map(|b| b ^ 0xA7).collect();
        let block = psec_wrap(&kbpk_value, "D0000D0AB12E0000", &data_key);
        let key = import(&session, kbpk, &block).unwrap();
        let zero = session
            .encrypt(&Mechanism::AesEcb, key, &[0u8; 16])
            .unwrap();
        assert_eq!(zero, common::openssl_aes_ecb_zero(&data_key));
        // ...and back: hsmlink's export unwraps in psec, same header, same key.
        let exported = session.wrap_key(&tr31(), kbpk, key).unwrap();
        assert_eq!(
            psec_unwrap(&kbpk_value, &exported),
            ("DD0AB12E".to_owned(), data_key.clone())
        );

        let mac_key: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(11)).collect();
        let block = psec_wrap(&kbpk_value, "D0000M6AC00E0000", &mac_key);
        // A template that contradicts the header creates nothing.
        let before = object_count(&session);
        assert_eq!(
            rv(session.unwrap_key(
                &tr31(),
                kbpk,
                block.as_bytes(),
                &[Attribute::Token(false), Attribute::Encrypt(true)]
            )),
            RvError::TemplateInconsistent
        );
        assert_eq!(object_count(&session), before);
        let mac = import(&session, kbpk, &block).unwrap();
        // MAC only: signs, never encrypts, even after asking to.
        let tag = session.sign(&Mechanism::AesCMac, mac, b"message").unwrap();
        assert_eq!(tag.len(), 16);
        assert_eq!(
            rv(session.encrypt(&Mechanism::AesEcb, mac, &[0u8; 16])),
            RvError::KeyFunctionNotPermitted
        );
        // Its usage cannot be widened either (secure templates).
        assert_eq!(
            rv(session.update_attributes(mac, &[Attribute::Encrypt(true)])),
            RvError::AttributeReadOnly
        );
        assert_eq!(
            rv(session.encrypt(&Mechanism::AesEcb, mac, &[0u8; 16])),
            RvError::KeyFunctionNotPermitted
        );
        // The header is read-only.
        assert_eq!(
            rv(session.update_attributes(
                mac,
                &[Attribute::VendorDefined((
                    AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER),
                    b"D0000D0AB00E0000".to_vec()
                ))]
            )),
            RvError::AttributeReadOnly
        );
        // Exportability E: only in a key block, not with AES key wrap.
        assert_eq!(
            rv(session.wrap_key(&Mechanism::AesKeyWrap, kbpk, mac)),
            RvError::KeyNotWrappable
        );
        assert_eq!(
            psec_unwrap(&kbpk_value, &session.wrap_key(&tr31(), kbpk, mac).unwrap()),
            ("DM6AC00E".to_owned(), mac_key)
        );

        // Optional blocks (one with the extended length form) are kept and
        // returned: psec adds its padding block, hsmlink keeps it as is.
        let header = format!("D0000K0AB07E0200KS0800ABCT00020132{}", "x".repeat(296));
        let kek: Vec<u8> = (0u8..32).map(|b| b ^ 0x3C).collect();
        let block = psec_wrap(&kbpk_value, &header, &kek);
        let key = import(&session, kbpk, &block).unwrap();
        // 16 + KS (8) + CT (306) + psec's PB (6) = 336, a multiple of 16.
        let header_len = 336;
        let stored = session
            .get_attributes(
                key,
                &[AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER)],
            )
            .unwrap();
        assert_eq!(
            stored,
            [Attribute::VendorDefined((
                AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER),
                block.as_bytes()[..header_len].to_vec()
            ))]
        );
        let exported = session.wrap_key(&tr31(), kbpk, key).unwrap();
        assert_eq!(&exported[5..header_len], &block.as_bytes()[5..header_len]);
        assert_eq!(
            psec_unwrap(&kbpk_value, &exported),
            ("DK0AB07E".to_owned(), kek)
        );

        // hsmlink → psec: a key made on the token, header from its usage.
        let value: Vec<u8> = (0u8..24).collect();
        let own = aes_key(&session, &value, false);
        let exported = session.wrap_key(&tr31(), kbpk, own).unwrap();
        assert_eq!(
            psec_unwrap(&kbpk_value, &exported),
            ("DD0AB00E".to_owned(), value)
        );
        // A KBPK weaker than the key: refused.
        let small = aes_key(&session, &[9u8; 16], true);
        assert_eq!(
            rv(session.wrap_key(&tr31(), small, own)),
            RvError::WrappingKeySizeRange
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let python = common::python_venv(dir.path(), "psec-venv", &["psec"], "the TR-31 cross-check");
    let deployment = Deployment::start();
    run_in_child(
        "published_and_psec_blocks_import_and_exports_unwrap_in_psec",
        &deployment_env(&deployment, &python),
    );
}

#[test]
fn bad_blocks_give_precise_codes_and_create_nothing() {
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        let kbpk = aes_key(&session, &PAYSHIELD_KBPK, true);
        let before = object_count(&session);
        let mut wrong_mac = PAYSHIELD_D0.to_owned();
        wrong_mac.replace_range(143.., "5");
        let mut version_a = PAYSHIELD_D0.to_owned();
        version_a.replace_range(0..1, "A");
        let mut version_x = PAYSHIELD_D0.to_owned();
        version_x.replace_range(0..1, "X");
        let mut overrun = PAYSHIELD_D0.to_owned();
        overrun.replace_range(12..14, "01");
        overrun.replace_range(16..20, "KSFF");
        let mut non_decimal = PAYSHIELD_D0.to_owned();
        non_decimal.replace_range(1..5, "01A4");
        let other_kbpk = aes_key(&session, &[0x42; 32], true);
        let cases: [(&str, ObjectHandle, RvError); 7] = [
            (&wrong_mac, kbpk, RvError::WrappedKeyInvalid),
            (PAYSHIELD_D0, other_kbpk, RvError::WrappedKeyInvalid),
            (&version_a, kbpk, RvError::WrappedKeyInvalid),
            (&version_x, kbpk, RvError::WrappedKeyInvalid),
            (&PAYSHIELD_D0[..140], kbpk, RvError::WrappedKeyLenRange),
            (&overrun, kbpk, RvError::WrappedKeyInvalid),
            (&non_decimal, kbpk, RvError::WrappedKeyInvalid),
        ];
        let before = before + 1;
        for (block, key, want) in cases {
            assert_eq!(rv(import(&session, key, block)), want, "{block}");
            assert_eq!(object_count(&session), before, "{block}");
        }
        // The KBPK must be allowed to unwrap.
        let no_unwrap = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Value(PAYSHIELD_KBPK.to_vec()),
                Attribute::Unwrap(false),
            ])
            .unwrap();
        assert_eq!(
            rv(import(&session, no_unwrap, PAYSHIELD_D0)),
            RvError::KeyFunctionNotPermitted
        );
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "bad_blocks_give_precise_codes_and_create_nothing",
        &deployment.module_env(),
    );
}

/// A session TDES KBPK (`CKK_DES2` for 16 bytes, `CKK_DES3` for 24), made
/// and trusted by the SO.
fn tdes_kbpk(session: &Session, value: &[u8]) -> ObjectHandle {
    let key_type = if value.len() == 16 {
        KeyType::DES2
    } else {
        KeyType::DES3
    };
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Value(value.to_vec()),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Private(false),
        Attribute::Trusted(true),
    ];
    as_so(session, || session.create_object(&template).unwrap())
}

/// One TDES key in versions A, B and C made by a Thales payShield 10k
/// (published with open-source TR-31 test suites), under a TDES KBPK.
const PAYSHIELD_TDES_KBPK: &str = "EFE0853B256B583D868F251CE99EA1D9";
const PAYSHIELD_TDES_KEY: &str = "5DB50B454F8389ADCE573BE50861F2BF";
const PAYSHIELD_TDES_A: &str =
    "A0072K0TN00N0000F40D5672C6D0EC86F860BA88D44D00F0CA9A8CE8CD2F640287A9A9EB";
const PAYSHIELD_TDES_B: &str =
    "B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228";
const PAYSHIELD_TDES_C: &str =
    "C0072K0TN00N0000C9B875FF7A5316BF221C09ED52080DE0B45632A4EA9CE87699CB565E";

#[test]
fn tdes_versions_b_and_c_import_and_b_round_trips_with_psec() {
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        // Published blocks: B and C give the published key. It is
        // non-exportable (`N`), so its value shows in what it wraps.
        let kbpk = tdes_kbpk(&session, &unhex(PAYSHIELD_TDES_KBPK));
        let before = object_count(&session);
        assert_eq!(
            rv(import(&session, kbpk, PAYSHIELD_TDES_A)),
            RvError::WrappedKeyInvalid,
            "version A is refused"
        );
        assert_eq!(object_count(&session), before);
        for block in [PAYSHIELD_TDES_B, PAYSHIELD_TDES_C] {
            let key = import(&session, kbpk, block).unwrap();
            let attrs = session
                .get_attributes(
                    key,
                    &[
                        AttributeType::KeyType,
                        AttributeType::Wrap,
                        AttributeType::Encrypt,
                        AttributeType::Extractable,
                        AttributeType::Trusted,
                    ],
                )
                .unwrap();
            for want in [
                Attribute::KeyType(KeyType::DES2),
                Attribute::Wrap(true),
                Attribute::Encrypt(false),
                Attribute::Extractable(false),
            ] {
                assert!(attrs.contains(&want), "{block}: {want:?} not in {attrs:?}");
            }
            // A K0 key wraps (it came under a trusted KBPK, so it is
            // trusted too): what it wraps with DES3-ECB is what OpenSSL
            // makes of the published key. (A 64-bit secret: no stronger
            // than the two-key TDES key wrapping it.)
            assert!(attrs.contains(&Attribute::Trusted(true)), "{attrs:?}");
            let data = session
                .create_object(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(false),
                    Attribute::Value(vec![0x11; 8]),
                    Attribute::Extractable(true),
                    Attribute::Sensitive(false),
                ])
                .unwrap();
            let wrapped = session.wrap_key(&Mechanism::Des3Ecb, key, data).unwrap();
            assert_eq!(
                wrapped,
                openssl_des_ede_ecb(&unhex(PAYSHIELD_TDES_KEY), &[0x11; 8]),
                "{block}"
            );
        }
        // A D block under a TDES KBPK, a B block under an AES KBPK.
        let aes = aes_key(&session, &PAYSHIELD_KBPK, true);
        assert_eq!(
            rv(import(&session, kbpk, PAYSHIELD_D0)),
            RvError::UnwrappingKeyTypeInconsistent
        );
        assert_eq!(
            rv(import(&session, aes, PAYSHIELD_TDES_B)),
            RvError::UnwrappingKeyTypeInconsistent
        );

        // psec → hsmlink in B and C under a three-key KBPK; hsmlink → psec
        // in B.
        let kbpk_value: Vec<u8> = (0u8..24).map(|b| b.wrapping_mul(41) ^ 0x99).collect();
        let kbpk = tdes_kbpk(&session, &kbpk_value);
        let kek: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(7) ^ 0x1F).collect();
        for version in ["B", "C"] {
            let block = psec_wrap(&kbpk_value, &format!("{version}0000K0TB00E0000"), &kek);
            let key = import(&session, kbpk, &block).unwrap();
            let exported = session.wrap_key(&tr31(), kbpk, key).unwrap();
            assert_eq!(&exported[..1], b"B", "TDES KBPK exports version B");
            assert_eq!(
                psec_unwrap(&kbpk_value, &exported),
                ("BK0TB00E".to_owned(), kek.clone())
            );
        }
        // Under a KBPK the user made from a value, an imported KEK is as
        // known as that KBPK: not trusted, it unwraps but never wraps.
        let user_kbpk = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES3),
                Attribute::Token(false),
                Attribute::Value(kbpk_value.clone()),
                Attribute::Unwrap(true),
            ])
            .unwrap();
        let block = psec_wrap(&kbpk_value, "B0000K0TB00E0000", &kek);
        let known = import(&session, user_kbpk, &block).unwrap();
        assert_eq!(
            session
                .get_attributes(known, &[AttributeType::Trusted])
                .unwrap(),
            [Attribute::Trusted(false)]
        );
        let secret = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Value(vec![0x22; 8]),
                Attribute::Extractable(true),
                Attribute::Sensitive(false),
            ])
            .unwrap();
        assert_eq!(
            rv(session.wrap_key(&Mechanism::Des3Ecb, known, secret)),
            RvError::KeyFunctionNotPermitted
        );
        // A three-key TDES key (112 bits) may not leave under a two-key
        // KBPK (80 bits); it may under AES-128.
        let des3: Vec<u8> = (0u8..24).map(|b| b ^ 0x4B).collect();
        let block = psec_wrap(&kbpk_value, "B0000D0TB00E0000", &des3);
        let data_key = import(&session, kbpk, &block).unwrap();
        let two_key = tdes_kbpk(&session, &unhex(PAYSHIELD_TDES_KBPK));
        assert_eq!(
            rv(session.wrap_key(&tr31(), two_key, data_key)),
            RvError::WrappingKeySizeRange
        );
        let aes128_value = [0x24u8; 16];
        let aes128 = aes_key(&session, &aes128_value, true);
        let exported = session.wrap_key(&tr31(), aes128, data_key).unwrap();
        assert_eq!(
            psec_unwrap(&aes128_value, &exported),
            ("DD0TB00E".to_owned(), des3)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let python = common::python_venv(dir.path(), "psec-venv", &["psec"], "the TR-31 cross-check");
    let deployment = Deployment::start();
    run_in_child(
        "tdes_versions_b_and_c_import_and_b_round_trips_with_psec",
        &deployment_env(&deployment, &python),
    );
}

/// OpenSSL's two-key TDES-ECB encryption of `data` under `key`.
fn openssl_des_ede_ecb(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["enc", "-des-ede-ecb", "-nopad", "-K", &hex(key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl -des-ede-ecb");
    out.stdout
}
