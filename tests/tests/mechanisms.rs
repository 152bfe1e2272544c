//! Mechanisms through the real .so and a real server: key generation,
//! encryption, signatures, digests, random, and the work the module does
//! itself (hash-then-sign sends no frame per update).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

// The suite, once per driver: the soft HSM, the pkcs11 driver on
// SoftHSMv2, and the pkcs11 driver with a replica.
common::per_driver!(
    digests_and_random,
    aes_modes_and_the_operation_lifecycle,
    signatures_rsa_ecdsa_and_hmac,
);

use common::{Deployment, in_child, load_module, pin, run_in_child, rv, vendor};
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

const PIN: &str = "user-pin-5678";

/// An initialised token and a user session on it.
fn user_session(pkcs11: &Pkcs11) -> Session {
    common::user_session(pkcs11, "mechanisms", PIN)
}

fn aes_key(session: &Session, value: Option<&[u8]>) -> ObjectHandle {
    let mut template = vec![
        Attribute::Token(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Sign(true),
        Attribute::Verify(true),
    ];
    match value {
        Some(value) => {
            template.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Value(value.to_vec()),
            ]);
            session.create_object(&template).unwrap()
        }
        None => {
            template.push(Attribute::ValueLen(32.into()));
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .unwrap()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digests_and_random() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11);
    let digest = session.digest(&Mechanism::Sha256, b"abc").unwrap();
    assert_eq!(
        hex(&digest),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Multi-part equals single-part.
    session.digest_init(&Mechanism::Sha256).unwrap();
    session.digest_update(b"a").unwrap();
    session.digest_update(b"bc").unwrap();
    assert_eq!(session.digest_final().unwrap(), digest);
    // SM3 (GM/T 0004 example), hsmlink's vendor mechanism.
    let sm3 = MechanismType::new_vendor_defined(0xC853_0110).unwrap();
    let sm3 = Mechanism::VendorDefined(
        cryptoki::mechanism::vendor_defined::VendorDefinedMechanism::new::<()>(sm3, None),
    );
    if common::on_softhsm() {
        // SoftHSMv2 has no SM3: the slot says so honestly.
        assert_eq!(rv(session.digest(&sm3, b"abc")), RvError::MechanismInvalid);
    } else {
        assert_eq!(
            hex(&session.digest(&sm3, b"abc").unwrap()),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }
    let a = session.generate_random_vec(32).unwrap();
    let b = session.generate_random_vec(32).unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

fn aes_modes_and_the_operation_lifecycle() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11);
    let key = aes_key(&session, None);
    let attrs = session
        .get_attributes(key, &[AttributeType::Local, AttributeType::AlwaysSensitive])
        .unwrap();
    assert!(
        attrs.contains(&Attribute::Local(true)),
        "generated on the token"
    );
    assert!(attrs.contains(&Attribute::AlwaysSensitive(true)));

    // GCM with AAD round trip; a flipped tag bit is CKR_ENCRYPTED_DATA_INVALID.
    let mut iv = [7u8; 12];
    let aad = b"header";
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).unwrap());
    let ciphertext = session.encrypt(&gcm, key, b"attack at dawn").unwrap();
    assert_eq!(ciphertext.len(), 14 + 16);
    assert_eq!(
        session.decrypt(&gcm, key, &ciphertext).unwrap(),
        b"attack at dawn"
    );
    let mut tampered = ciphertext.clone();
    *tampered.last_mut().unwrap() ^= 1;
    // (SoftHSMv2 reports a wrong tag as CKR_GENERAL_ERROR; the pkcs11
    // driver passes a device's own code on.)
    let bad_tag = if common::on_softhsm() {
        RvError::GeneralError
    } else {
        RvError::EncryptedDataInvalid
    };
    assert_eq!(rv(session.decrypt(&gcm, key, &tampered)), bad_tag);

    // CBC without padding: the data length must be a multiple of 16.
    let cbc = Mechanism::AesCbc([1; 16]);
    assert_eq!(
        rv(session.encrypt(&cbc, key, &[0u8; 15])),
        RvError::DataLenRange
    );

    // Lifecycle: an operation already active, none active.
    session
        .encrypt_init(&Mechanism::AesCbcPad([2; 16]), key)
        .unwrap();
    assert_eq!(
        rv(session.encrypt_init(&Mechanism::AesCbcPad([2; 16]), key)),
        RvError::OperationActive
    );
    let first = session.encrypt_update(&[0x55; 20]).unwrap();
    assert_eq!(first.len(), 16, "whole blocks only");
    let last = session.encrypt_final().unwrap();
    assert_eq!(last.len(), 16, "4 bytes left and 12 of padding");
    assert_eq!(
        rv(session.encrypt_update(b"x")),
        RvError::OperationNotInitialized
    );

    // Key usage is enforced.
    let no_encrypt = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Encrypt(false),
            Attribute::Value(vec![3; 16]),
        ])
        .unwrap();
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, no_encrypt, &[0; 16])),
        RvError::KeyFunctionNotPermitted
    );
    // A mechanism for another key type.
    assert_eq!(
        rv(session.sign(&Mechanism::EcdsaSha256, key, b"x")),
        RvError::KeyTypeInconsistent
    );
}

fn ec_pair(session: &Session) -> (ObjectHandle, ObjectHandle) {
    // DER OID of prime256v1.
    let p256 = common::P256_PARAMS.to_vec();
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(p256),
                Attribute::Verify(true),
                Attribute::Token(false),
            ],
            &[Attribute::Sign(true), Attribute::Token(false)],
        )
        .unwrap()
}

fn signatures_rsa_ecdsa_and_hmac() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11);
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Token(false),
            ],
            &[Attribute::Sign(true), Attribute::Token(false)],
        )
        .unwrap();
    let signature = session
        .sign(&Mechanism::Sha256RsaPkcs, private, b"data")
        .unwrap();
    assert_eq!(signature.len(), 256);
    session
        .verify(&Mechanism::Sha256RsaPkcs, public, b"data", &signature)
        .unwrap();
    assert_eq!(
        rv(session.verify(&Mechanism::Sha256RsaPkcs, public, b"other", &signature)),
        RvError::SignatureInvalid
    );
    // Multi-part, hashed in the module, equals single-part (PKCS#1 v1.5 is deterministic).
    session
        .sign_init(&Mechanism::Sha256RsaPkcs, private)
        .unwrap();
    session.sign_update(b"da").unwrap();
    session.sign_update(b"ta").unwrap();
    assert_eq!(session.sign_final().unwrap(), signature);

    let (ec_public, ec_private) = ec_pair(&session);
    let ecdsa = session
        .sign(&Mechanism::EcdsaSha256, ec_private, b"data")
        .unwrap();
    assert_eq!(ecdsa.len(), 64, "raw r||s");
    session
        .verify(&Mechanism::EcdsaSha256, ec_public, b"data", &ecdsa)
        .unwrap();
    assert_eq!(
        rv(session.verify(&Mechanism::EcdsaSha256, ec_public, b"data", &ecdsa[..63])),
        RvError::SignatureLenRange
    );

    let key = aes_key(&session, Some(&[9; 32]));
    let generic = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Value(b"key".to_vec()),
        ])
        .unwrap();
    if common::on_softhsm() {
        // SoftHSMv2 takes HMAC-SHA256 keys of 32 bytes at least (its
        // mechanism info says so); the check below uses a 3-byte key.
        assert_eq!(
            rv(session.sign(&Mechanism::Sha256Hmac, generic, b"x")),
            RvError::KeySizeRange
        );
        let long = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Value(vec![0x0b; 32]),
            ])
            .unwrap();
        // HMAC-SHA256 with 32 bytes of 0x0b over "Hi There" (RFC 4231 case 1
        // takes 20 such bytes; this value computed with `openssl mac`).
        let mac = session
            .sign(&Mechanism::Sha256Hmac, long, b"Hi There")
            .unwrap();
        assert_eq!(
            hex(&mac),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
        session
            .verify(&Mechanism::Sha256Hmac, long, b"Hi There", &mac)
            .unwrap();
    } else {
        // RFC 4231-style check: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let mac = session
            .sign(
                &Mechanism::Sha256Hmac,
                generic,
                b"The quick brown fox jumps over the lazy dog",
            )
            .unwrap();
        assert_eq!(
            hex(&mac),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
    let cmac = session.sign(&Mechanism::AesCMac, key, b"message").unwrap();
    assert_eq!(cmac.len(), 16);
    session
        .verify(&Mechanism::AesCMac, key, b"message", &cmac)
        .unwrap();
}

/// `C_SignUpdate` of a hash-then-sign mechanism costs no round trip: the
/// module hashes locally (its trace log names every frame it sends).
#[test]
fn hash_then_sign_updates_send_no_frame() {
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        let (public, private) = ec_pair(&session);
        // As applications start (else the first init in the slot fetches
        // the token's mechanism list, once).
        let slot = pkcs11.get_slots_with_token().unwrap()[0];
        pkcs11.get_mechanism_list(slot).unwrap();
        eprintln!("--- begin");
        session.sign_init(&Mechanism::EcdsaSha256, private).unwrap();
        for _ in 0..10 {
            session.sign_update(&[0x61; 1000]).unwrap();
        }
        let signature = session.sign_final().unwrap();
        eprintln!("--- end");
        session
            .verify(&Mechanism::EcdsaSha256, public, &[0x61; 10_000], &signature)
            .unwrap();
        return;
    }
    let deployment = Deployment::start();
    let mut env = deployment.module_env();
    env.push(("HSMLINK_LOG", "trace".into()));
    let stderr = run_in_child("hash_then_sign_updates_send_no_frame", &env);
    let window = stderr
        .split("--- begin")
        .nth(1)
        .and_then(|rest| rest.split("--- end").next())
        .expect("markers in the child's output");
    let frames: Vec<&str> = window
        .lines()
        .filter(|l| l.contains("request frame sent"))
        .collect();
    assert!(
        frames.iter().all(|l| !l.contains("C_SignUpdate")),
        "C_SignUpdate sent frames:\n{window}"
    );
    // C_SignInit, ten updates and C_SignFinal twice (cryptoki asks for the
    // length first): one frame, the deferred init with the module's digest,
    // whose signature the module keeps for the second C_SignFinal.
    assert_eq!(frames.len(), 1, "frames:\n{window}");
}

/// DER length octets.
fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER from big-endian bytes.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        vec![0]
    } else {
        vec![]
    };
    content.extend(trimmed);
    der(0x02, &content)
}

/// SM2 signatures made on the token (hashed in the module, Z from the
/// server) verify with OpenSSL's independent SM2 implementation.
#[test]
fn sm2_signatures_verify_with_openssl() {
    const MESSAGE: &[u8] = b"message signed with SM2 on the token";
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        // CKM_HSMLINK_SM2_KEY_PAIR_GEN, CKK_HSMLINK_SM2 keys.
        let (public, private) = session
            .generate_key_pair(
                &vendor(0xC853_0100),
                &[Attribute::Verify(true), Attribute::Token(false)],
                &[Attribute::Sign(true), Attribute::Token(false)],
            )
            .unwrap();
        // CKM_HSMLINK_SM2_SM3 with the default user id, in two parts.
        session.sign_init(&vendor(0xC853_0102), private).unwrap();
        session.sign_update(&MESSAGE[..10]).unwrap();
        session.sign_update(&MESSAGE[10..]).unwrap();
        let signature = session.sign_final().unwrap();
        assert_eq!(signature.len(), 64, "raw r||s");
        session
            .verify(&vendor(0xC853_0102), public, MESSAGE, &signature)
            .unwrap();

        let point = match &session
            .get_attributes(public, &[AttributeType::EcPoint])
            .unwrap()[0]
        {
            Attribute::EcPoint(octet_string) => octet_string[2..].to_vec(), // DER OCTET STRING of 65 bytes
            other => panic!("{other:?}"),
        };
        assert_eq!(point.len(), 65);
        let dir = std::path::PathBuf::from(std::env::var_os("HSMLINK_TEST_OUT").unwrap());
        std::fs::write(dir.join("sm2.der"), sm2_spki(&point)).unwrap();
        let sig = der(
            0x30,
            &[der_uint(&signature[..32]), der_uint(&signature[32..])].concat(),
        );
        std::fs::write(dir.join("sig.der"), sig).unwrap();
        std::fs::write(dir.join("msg"), MESSAGE).unwrap();
        return;
    }
    let deployment = Deployment::start();
    let mut env = deployment.module_env();
    env.push((
        "HSMLINK_TEST_OUT",
        deployment.dir.path().as_os_str().to_owned(),
    ));
    run_in_child("sm2_signatures_verify_with_openssl", &env);
    let dir = deployment.dir.path();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey"])
        .arg(dir.join("sm2.der"))
        .args([
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            "distid:1234567812345678",
            "-in",
        ])
        .arg(dir.join("msg"))
        .arg("-sigfile")
        .arg(dir.join("sig.der"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl does not verify the token's SM2 signature:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DER INTEGERs of an ECDSA-Sig-Value as fixed 32-byte r || s.
fn der_signature_to_raw(der: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(bytes[0], 0x02, "INTEGER");
        let len = bytes[1] as usize;
        (&bytes[2..2 + len], &bytes[2 + len..])
    }
    assert_eq!(der[0], 0x30, "SEQUENCE");
    let body = &der[2..];
    let (r, rest) = integer(body);
    let (s, _) = integer(rest);
    let mut raw = Vec::new();
    for part in [r, s] {
        let part: Vec<u8> = part.iter().copied().skip_while(|b| *b == 0).collect();
        raw.extend(std::iter::repeat_n(0u8, 32 - part.len()));
        raw.extend(part);
    }
    raw
}

/// SM2 signatures made by OpenSSL verify on the token, against the public
/// key imported as a token object; a changed message does not.
#[test]
fn openssl_sm2_signatures_verify_on_the_token() {
    const MESSAGE: &[u8] = b"message signed with SM2 by openssl";
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        let dir = std::path::PathBuf::from(std::env::var_os("HSMLINK_TEST_OUT").unwrap());
        let spki = std::fs::read(dir.join("pub.der")).unwrap();
        let point = spki[spki.len() - 65..].to_vec();
        let signature = der_signature_to_raw(&std::fs::read(dir.join("sig.der")).unwrap());
        let mut ec_point = vec![0x04, 0x41];
        ec_point.extend(&point);
        let public = session
            .create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::new_vendor_defined(0xC853_0001).unwrap()),
                Attribute::Token(false),
                Attribute::Verify(true),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d,
                ]),
                Attribute::EcPoint(ec_point),
            ])
            .expect("import the SM2 public key");
        session
            .verify(&vendor(0xC853_0102), public, MESSAGE, &signature)
            .expect("openssl's SM2 signature verifies on the token");
        assert_eq!(
            rv(session.verify(&vendor(0xC853_0102), public, b"another message", &signature)),
            RvError::SignatureInvalid
        );
        return;
    }
    let deployment = Deployment::start();
    let dir = deployment.dir.path();
    let openssl = |args: &[&str]| common::openssl(dir, args);
    std::fs::write(dir.join("msg"), MESSAGE).unwrap();
    openssl(&["genpkey", "-algorithm", "SM2", "-out", "sm2.pem"]);
    openssl(&[
        "pkey", "-in", "sm2.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
    ]);
    openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        "sm2.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        "distid:1234567812345678",
        "-in",
        "msg",
        "-out",
        "sig.der",
    ]);
    let mut env = deployment.module_env();
    env.push(("HSMLINK_TEST_OUT", dir.as_os_str().to_owned()));
    run_in_child("openssl_sm2_signatures_verify_on_the_token", &env);
}

/// One DER TLV: (tag, content, rest).
fn tlv(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = bytes[0];
    let (len, header) = match bytes[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (bytes[2] as usize, 3),
        0x82 => (((bytes[2] as usize) << 8) | bytes[3] as usize, 4),
        other => panic!("DER length form {other:#x}"),
    };
    (tag, &bytes[header..header + len], &bytes[header + len..])
}

fn fixed32(integer: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = integer.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![0u8; 32 - trimmed.len()];
    out.extend(trimmed);
    out
}

/// OpenSSL's SM2 ciphertext (DER: x, y, C3, C2) as the raw C1 || C3 || C2.
fn sm2_der_to_raw(der: &[u8]) -> Vec<u8> {
    let (_, body, _) = tlv(der);
    let (_, x, rest) = tlv(body);
    let (_, y, rest) = tlv(rest);
    let (_, c3, rest) = tlv(rest);
    let (_, c2, _) = tlv(rest);
    [vec![0x04], fixed32(x), fixed32(y), c3.to_vec(), c2.to_vec()].concat()
}

/// The raw C1 || C3 || C2 of the token as OpenSSL's DER.
fn sm2_raw_to_der(raw: &[u8]) -> Vec<u8> {
    let (x, y) = (&raw[1..33], &raw[33..65]);
    let (c3, c2) = (&raw[65..97], &raw[97..]);
    der(
        0x30,
        &[der_uint(x), der_uint(y), der(0x04, c3), der(0x04, c2)].concat(),
    )
}

/// SubjectPublicKeyInfo { id-ecPublicKey, sm2p256v1 } of an SM2 point.
fn sm2_spki(point: &[u8]) -> Vec<u8> {
    let algorithm = [
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
        der(0x06, &[0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d]),
    ]
    .concat();
    let mut bits = vec![0u8];
    bits.extend(point);
    der(0x30, &[der(0x30, &algorithm), der(0x03, &bits)].concat())
}

/// SM2 encryption both ways: the token encrypts to an OpenSSL key and
/// OpenSSL decrypts; OpenSSL encrypts to the token's key and the token
/// decrypts.
#[test]
fn sm2_ciphertexts_round_trip_with_openssl() {
    const MESSAGE: &[u8] = b"SM2 ciphertext crossing between hsmlink and openssl";
    let name = "sm2_ciphertexts_round_trip_with_openssl";
    let encrypt = vendor(0xC853_0103);
    if in_child() {
        let pkcs11 = load_module();
        let dir = std::path::PathBuf::from(std::env::var_os("HSMLINK_TEST_OUT").unwrap());
        if !dir.join("token-pub.der").exists() {
            let session = user_session(&pkcs11);
            let (public, _private) = session
                .generate_key_pair(
                    &vendor(0xC853_0100),
                    &[
                        Attribute::Encrypt(true),
                        Attribute::Token(true),
                        Attribute::Label(b"sm2".to_vec()),
                    ],
                    &[
                        Attribute::Decrypt(true),
                        Attribute::Token(true),
                        Attribute::Label(b"sm2".to_vec()),
                    ],
                )
                .unwrap();
            let point = match &session
                .get_attributes(public, &[AttributeType::EcPoint])
                .unwrap()[0]
            {
                Attribute::EcPoint(octets) => octets[2..].to_vec(),
                other => panic!("{other:?}"),
            };
            std::fs::write(dir.join("token-pub.der"), sm2_spki(&point)).unwrap();
            // Encrypt to OpenSSL's key, imported as a session object.
            let spki = std::fs::read(dir.join("openssl-pub.der")).unwrap();
            let mut ec_point = vec![0x04, 0x41];
            ec_point.extend(&spki[spki.len() - 65..]);
            let theirs = session
                .create_object(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::new_vendor_defined(0xC853_0001).unwrap()),
                    Attribute::Token(false),
                    Attribute::Encrypt(true),
                    Attribute::EcParams(vec![
                        0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d,
                    ]),
                    Attribute::EcPoint(ec_point),
                ])
                .unwrap();
            let ciphertext = session.encrypt(&encrypt, theirs, MESSAGE).unwrap();
            assert_eq!(ciphertext.len(), 65 + 32 + MESSAGE.len(), "C1 || C3 || C2");
            std::fs::write(dir.join("token.ct"), sm2_raw_to_der(&ciphertext)).unwrap();
            return;
        }
        // Second run: decrypt what OpenSSL encrypted to the token's key.
        let slot = pkcs11.get_all_slots().unwrap()[0];
        let session = pkcs11.open_rw_session(slot).unwrap();
        session.login(UserType::User, Some(&pin(PIN))).unwrap();
        let private = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"sm2".to_vec()),
            ])
            .unwrap()[0];
        let der = std::fs::read(dir.join("openssl.ct")).unwrap();
        let plaintext = session
            .decrypt(&encrypt, private, &sm2_der_to_raw(&der))
            .unwrap();
        assert_eq!(plaintext, MESSAGE);
        return;
    }
    let deployment = Deployment::start();
    let dir = deployment.dir.path();
    let openssl = |args: &[&str]| common::openssl(dir, args);
    openssl(&["genpkey", "-algorithm", "SM2", "-out", "sm2.pem"]);
    openssl(&[
        "pkey",
        "-in",
        "sm2.pem",
        "-pubout",
        "-outform",
        "DER",
        "-out",
        "openssl-pub.der",
    ]);
    let mut env = deployment.module_env();
    env.push(("HSMLINK_TEST_OUT", dir.as_os_str().to_owned()));
    run_in_child(name, &env);
    openssl(&[
        "pkeyutl", "-decrypt", "-inkey", "sm2.pem", "-in", "token.ct", "-out", "token.pt",
    ]);
    assert_eq!(std::fs::read(dir.join("token.pt")).unwrap(), MESSAGE);
    std::fs::write(dir.join("msg"), MESSAGE).unwrap();
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-keyform",
        "DER",
        "-inkey",
        "token-pub.der",
        "-in",
        "msg",
        "-out",
        "openssl.ct",
    ]);
    run_in_child(name, &env);
}

/// `sm_profile = "sansec"`: an application written against Sansec's header
/// uses its numbers; hsmlink's own stay accepted; the server never sees a
/// vendor number (it stores and checks hsmlink's).
#[test]
fn sm_profile_lets_an_application_use_a_vendors_numbers() {
    const SANSEC_CKK_SM2: u64 = 0x8000_0004;
    const SANSEC_SM2_KEY_PAIR_GEN: u64 = 0x8000_8001;
    const SANSEC_SM3_SM2: u64 = 0x8000_8100;
    const SANSEC_SM2_SIGN: u64 = 0x8000_8104;
    const SANSEC_SM4_KEY_GEN: u64 = 0x8000_0107;
    const SANSEC_SM4_ECB: u64 = 0x8000_0108;
    const HSMLINK_SM2_SM3: u64 = 0xC853_0102;
    const HSMLINK_SM4_ECB: u64 = 0xC853_0121;
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        let slot = pkcs11.get_all_slots().unwrap()[0];
        let vendor_type = |m| MechanismType::new_vendor_defined(m).unwrap();
        pkcs11
            .get_mechanism_info(slot, vendor_type(SANSEC_SM3_SM2))
            .unwrap();

        let sm2 = KeyType::new_vendor_defined(SANSEC_CKK_SM2).unwrap();
        let (public, private) = session
            .generate_key_pair(
                &vendor(SANSEC_SM2_KEY_PAIR_GEN),
                &[
                    Attribute::KeyType(sm2),
                    Attribute::Verify(true),
                    Attribute::Token(false),
                ],
                &[
                    Attribute::Sign(true),
                    Attribute::Token(false),
                    Attribute::AllowedMechanisms(vec![vendor_type(SANSEC_SM3_SM2)]),
                ],
            )
            .unwrap();
        // (cryptoki 0.12 cannot read vendor numbers back from
        // CKA_ALLOWED_MECHANISMS; the module's unit tests cover that way.)
        let read = session
            .get_attributes(private, &[AttributeType::KeyType])
            .unwrap();
        assert_eq!(read[0], Attribute::KeyType(sm2));

        // Signed under Sansec's number, verified under hsmlink's: one mechanism.
        let signature = session
            .sign(&vendor(SANSEC_SM3_SM2), private, b"profile")
            .unwrap();
        session
            .verify(&vendor(HSMLINK_SM2_SM3), public, b"profile", &signature)
            .unwrap();
        // CKA_ALLOWED_MECHANISMS was stored as hsmlink's SM2-with-SM3 only
        // (the module defers C_SignInit: the init's error comes with C_Sign).
        assert_eq!(
            rv(session.sign(&vendor(SANSEC_SM2_SIGN), private, &[0; 32])),
            RvError::KeyFunctionNotPermitted
        );

        // SM4 under Sansec's numbers equals SM4 under hsmlink's.
        let key = session
            .generate_key(
                &vendor(SANSEC_SM4_KEY_GEN),
                &[
                    Attribute::Token(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        let block = [0x5au8; 16];
        let theirs = session
            .encrypt(&vendor(SANSEC_SM4_ECB), key, &block)
            .unwrap();
        let ours = session
            .encrypt(&vendor(HSMLINK_SM4_ECB), key, &block)
            .unwrap();
        assert_eq!(theirs, ours);
        assert_ne!(theirs, block.to_vec());
        return;
    }
    let deployment = Deployment::start();
    let config = deployment.path("client-sansec.toml");
    let text = std::fs::read_to_string(deployment.client_config()).unwrap();
    std::fs::write(&config, format!("{text}\nsm_profile = \"sansec\"\n")).unwrap();
    run_in_child(
        "sm_profile_lets_an_application_use_a_vendors_numbers",
        &[("HSMLINK_CONF", config.clone().into_os_string())],
    );

    // The mechanism list shows Sansec's numbers instead of hsmlink's
    // (pkcs11-tool prints what it does not know as mechtype-0x...).
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(common::module_path())
        .arg("--list-mechanisms")
        .env("HSMLINK_CONF", &config)
        .output()
        .expect("run pkcs11-tool");
    let listing = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(out.status.success(), "{listing}");
    assert!(listing.contains("0x80008100"), "{listing}");
    assert!(!listing.contains("0xc8530102"), "{listing}");
    assert!(
        listing.contains("0xc8530125"),
        "SM4-GCM has no Sansec number: {listing}"
    );
}

/// `CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS` of `include/hsmlink.h`.
#[repr(C)]
struct Sm2KeyExchangeParams {
    is_initiator: u8,
    ephemeral_key: std::ffi::c_ulong,
    peer_public: *const u8,
    peer_public_len: std::ffi::c_ulong,
    peer_ephemeral: *const u8,
    peer_ephemeral_len: std::ffi::c_ulong,
    user_id: *const u8,
    user_id_len: std::ffi::c_ulong,
    peer_user_id: *const u8,
    peer_user_id_len: std::ffi::c_ulong,
}

/// SM2 key exchange (GM/T 0003.3) between two parties whose keys live on the
/// token: the initiator's and the responder's derived keys are equal, and
/// differ when a party names the wrong peer id.
#[test]
fn sm2_key_exchange_agrees_on_both_sides() {
    const SM2_KEY_PAIR_GEN: u64 = 0xC853_0100;
    const SM2_KEY_EXCHANGE: u64 = 0xC853_0104;
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11);
        let pair = || {
            let (public, private) = session
                .generate_key_pair(
                    &vendor(SM2_KEY_PAIR_GEN),
                    &[Attribute::Token(false)],
                    &[Attribute::Token(false), Attribute::Derive(true)],
                )
                .unwrap();
            let point = match &session
                .get_attributes(public, &[AttributeType::EcPoint])
                .unwrap()[0]
            {
                Attribute::EcPoint(der) => der[2..].to_vec(), // DER OCTET STRING of 65 bytes
                other => panic!("{other:?}"),
            };
            (private, point)
        };
        let (alice, alice_point) = pair();
        let (alice_eph, alice_eph_point) = pair();
        let (bill, bill_point) = pair();
        let (bill_eph, bill_eph_point) = pair();
        let (alice_id, bill_id): (&[u8], &[u8]) = (b"ALICE123@YAHOO.COM", b"BILL456@YAHOO.COM");

        let derive = |initiator: bool,
                      base,
                      ephemeral: ObjectHandle,
                      peer: (&[u8], &[u8]),
                      ids: (&[u8], &[u8])| {
            let params = Sm2KeyExchangeParams {
                is_initiator: u8::from(initiator),
                ephemeral_key: ephemeral.handle(),
                peer_public: peer.0.as_ptr(),
                peer_public_len: peer.0.len() as _,
                peer_ephemeral: peer.1.as_ptr(),
                peer_ephemeral_len: peer.1.len() as _,
                user_id: ids.0.as_ptr(),
                user_id_len: ids.0.len() as _,
                peer_user_id: ids.1.as_ptr(),
                peer_user_id_len: ids.1.len() as _,
            };
            let mechanism = Mechanism::VendorDefined(
                cryptoki::mechanism::vendor_defined::VendorDefinedMechanism::new(
                    MechanismType::new_vendor_defined(SM2_KEY_EXCHANGE).unwrap(),
                    Some(&params),
                ),
            );
            let key = session.derive_key(
                &mechanism,
                base,
                &[
                    Attribute::Token(false),
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::ValueLen(32.into()),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                ],
            )?;
            match &session.get_attributes(key, &[AttributeType::Value])?[0] {
                Attribute::Value(value) => Ok(value.clone()),
                other => panic!("{other:?}"),
            }
        };
        let alice_key = derive(
            true,
            alice,
            alice_eph,
            (&bill_point, &bill_eph_point),
            (alice_id, bill_id),
        )
        .unwrap();
        let bill_key = derive(
            false,
            bill,
            bill_eph,
            (&alice_point, &alice_eph_point),
            (bill_id, alice_id),
        )
        .unwrap();
        assert_eq!(alice_key.len(), 32);
        assert_eq!(alice_key, bill_key);
        let confused = derive(
            false,
            bill,
            bill_eph,
            (&alice_point, &alice_eph_point),
            (bill_id, b"MALLORY"),
        )
        .unwrap();
        assert_ne!(confused, alice_key);

        // A peer point off the curve is a bad parameter; a public key as
        // the ephemeral key does not fit.
        let mut off_curve = bill_eph_point.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            rv(derive(
                true,
                alice,
                alice_eph,
                (&bill_point, &off_curve),
                (alice_id, bill_id)
            )),
            RvError::MechanismParamInvalid
        );
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "sm2_key_exchange_agrees_on_both_sides",
        &deployment.module_env(),
    );
}
