//! One round trip per operation, through the real .so and a real server:
//! the module's trace log names every frame it sends, and each single-part
//! operation as `cryptoki` issues it (`C_*Init`, a length query with a NULL
//! buffer, the call) sends exactly one. The outputs are the real ones.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Deployment, in_child, load_module, pin, run_in_child, rv, vendor};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

const PIN: &str = "user-pin-5678";
const SM2_KEY_PAIR_GEN: u64 = 0xC853_0100;
const SM2_SM3: u64 = 0xC853_0102;
const SM3: u64 = 0xC853_0110;

/// Marks the start of an operation whose frames the parent counts (up to
/// the next [`done`]).
fn mark(name: &str) {
    eprintln!("--- op {name}");
}

fn done() {
    eprintln!("--- done");
}

fn pair(
    session: &Session,
    mechanism: &Mechanism,
    public: &[Attribute],
) -> (ObjectHandle, ObjectHandle) {
    let mut public = public.to_vec();
    public.extend([Attribute::Verify(true), Attribute::Token(false)]);
    session
        .generate_key_pair(
            mechanism,
            &public,
            &[Attribute::Sign(true), Attribute::Token(false)],
        )
        .unwrap()
}

fn sign_and_verify(
    session: &Session,
    name: &str,
    mechanism: &Mechanism,
    keys: (ObjectHandle, ObjectHandle),
    len: usize,
) {
    let (public, private) = keys;
    mark(&format!("{name} sign"));
    let signature = session.sign(mechanism, private, b"one round trip").unwrap();
    done();
    assert_eq!(signature.len(), len, "{name}");
    mark(&format!("{name} verify"));
    session
        .verify(mechanism, public, b"one round trip", &signature)
        .unwrap();
    done();
}

fn child() {
    let pkcs11 = load_module();
    let session = common::user_session(&pkcs11, "round-trips", PIN);
    // As applications start: the module learns the token's mechanisms
    // (else the first init in the slot fetches them, once).
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    assert!(!pkcs11.get_mechanism_list(slot).unwrap().is_empty());

    let p256 = common::P256_PARAMS.to_vec();
    let ec = pair(
        &session,
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(p256)],
    );
    sign_and_verify(&session, "ECDSA P-256", &Mechanism::EcdsaSha256, ec, 64);
    let rsa = pair(
        &session,
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ],
    );
    sign_and_verify(
        &session,
        "RSA-2048 PKCS",
        &Mechanism::Sha256RsaPkcs,
        rsa,
        256,
    );
    let pss = PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    };
    sign_and_verify(
        &session,
        "RSA-2048 PSS",
        &Mechanism::Sha256RsaPkcsPss(pss),
        rsa,
        256,
    );
    let sm2 = pair(&session, &vendor(SM2_KEY_PAIR_GEN), &[]);
    sign_and_verify(&session, "SM2", &vendor(SM2_SM3), sm2, 64);

    let key = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![0x42; 16]),
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ])
        .unwrap();
    let plain = b"twenty-one bytes long";
    let mut iv = [7u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"header", 128.into()).unwrap());
    mark("AES-GCM encrypt");
    let cipher = session.encrypt(&gcm, key, plain).unwrap();
    done();
    assert_eq!(cipher.len(), plain.len() + 16);
    mark("AES-GCM decrypt");
    assert_eq!(session.decrypt(&gcm, key, &cipher).unwrap(), plain);
    done();
    let cbc_pad = Mechanism::AesCbcPad([3; 16]);
    mark("AES-CBC-PAD encrypt");
    let cipher = session.encrypt(&cbc_pad, key, plain).unwrap();
    done();
    assert_eq!(cipher.len(), 32);
    mark("AES-CBC-PAD decrypt");
    assert_eq!(session.decrypt(&cbc_pad, key, &cipher).unwrap(), plain);
    done();

    mark("SHA-256 digest");
    assert_eq!(session.digest(&Mechanism::Sha256, plain).unwrap().len(), 32);
    done();
    mark("SM3 digest");
    assert_eq!(session.digest(&vendor(SM3), plain).unwrap().len(), 32);
    done();
    mark("random");
    assert_eq!(session.generate_random_vec(32).unwrap().len(), 32);
    done();
    // cryptoki asks the lengths (NULL buffers; a buffer for fixed-size
    // attributes), then the values it lacks: the module keeps the first
    // answer for the second call.
    let (public, _) = ec;
    mark("attribute read");
    let read = session
        .get_attributes(
            public,
            &[
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::EcPoint,
            ],
        )
        .unwrap();
    done();
    assert!(matches!(
        &read[..],
        [Attribute::Label(_), Attribute::KeyType(KeyType::EC), Attribute::EcPoint(p)] if p.len() > 64
    ));
    eprintln!("--- end");
    // A write in between is seen by the next read.
    session
        .update_attributes(public, &[Attribute::Label(b"renamed".to_vec())])
        .unwrap();
    assert_eq!(
        session
            .get_attributes(public, &[AttributeType::Label])
            .unwrap(),
        vec![Attribute::Label(b"renamed".to_vec())]
    );

    // The rules of the standard with deferred inits.
    let (_, private) = ec;
    session.sign_init(&Mechanism::EcdsaSha256, private).unwrap();
    assert_eq!(
        rv(session.sign_init(&Mechanism::EcdsaSha256, private)),
        RvError::OperationActive
    );
    session.sign_update(b"multi-part").unwrap();
    assert_eq!(session.sign_final().unwrap().len(), 64);
    assert_eq!(rv(session.sign_final()), RvError::OperationNotInitialized);
    // A key destroyed after the init: the init's code, from the call.
    let p256 = common::P256_PARAMS.to_vec();
    let (_, gone) = pair(
        &session,
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(p256)],
    );
    session.sign_init(&Mechanism::Ecdsa, gone).unwrap();
    session.destroy_object(gone).unwrap();
    assert_eq!(rv(session.sign_final()), RvError::KeyHandleInvalid);
    assert_eq!(
        rv(session.sign(&Mechanism::Ecdsa, gone, &[0; 32])),
        RvError::KeyHandleInvalid
    );
    // A key that needs a context-specific login: the login sends the
    // deferred init first, so that it has an operation to authorise.
    let p256 = common::P256_PARAMS.to_vec();
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(p256),
                Attribute::Verify(true),
                Attribute::Token(false),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(false),
                Attribute::AlwaysAuthenticate(true),
            ],
        )
        .unwrap();
    let ecdsa = Mechanism::EcdsaSha256;
    session.sign_init(&ecdsa, private).unwrap();
    session
        .login(UserType::ContextSpecific, Some(&pin(PIN)))
        .unwrap();
    session.sign_update(b"authorised").unwrap();
    let signature = session.sign_final().unwrap();
    session
        .verify(&ecdsa, public, b"authorised", &signature)
        .unwrap();
    // Without the login, the call that carries the init says so, and the
    // operation waits for the login.
    session.sign_init(&ecdsa, private).unwrap();
    assert_eq!(rv(session.sign_final()), RvError::UserNotLoggedIn);
    session
        .login(UserType::ContextSpecific, Some(&pin(PIN)))
        .unwrap();
    assert_eq!(session.sign_final().unwrap().len(), 64);

    // Multi-part through the server still works.
    session.encrypt_init(&cbc_pad, key).unwrap();
    let mut cipher = session.encrypt_update(&[0x55; 20]).unwrap();
    cipher.extend(session.encrypt_final().unwrap());
    assert_eq!(cipher.len(), 32);
}

#[test]
fn one_frame_per_single_part_operation() {
    if in_child() {
        child();
        return;
    }
    let deployment = Deployment::start();
    let mut env = deployment.module_env();
    env.push(("HSMLINK_LOG", "trace".into()));
    let stderr = run_in_child("one_frame_per_single_part_operation", &env);
    let window = stderr
        .split("--- end")
        .next()
        .expect("the end marker in the child's output");
    let mut ops = window.split("--- op ").skip(1).peekable();
    assert!(ops.peek().is_some(), "no operation markers:\n{stderr}");
    let mut counted = 0;
    for op in ops {
        let op = op.split("--- done").next().unwrap_or(op);
        let (name, log) = op.split_once('\n').unwrap_or((op, ""));
        let frames: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("request frame sent"))
            .collect();
        assert_eq!(frames.len(), 1, "{name}: {frames:#?}");
        counted += 1;
    }
    assert_eq!(counted, 16);
}
