//! Secure templates, the whole table, through the real module on both
//! drivers (the soft HSM, and the `pkcs11` driver over SoftHSMv2, which
//! would itself allow every combination):
//!
//! - a sweep of the 128 combinations of `CKA_ENCRYPT`, `CKA_DECRYPT`,
//!   `CKA_WRAP`, `CKA_UNWRAP`, `CKA_SIGN`, `CKA_VERIFY`, `CKA_DERIVE` on
//!   `C_GenerateKey`, `C_CreateObject`, `C_UnwrapKey` and `C_DeriveKey`
//!   (each attribute given), on `C_GenerateKey` with only the attributes asked for given
//!   (the defaults), and the `C_SetAttributeValue`/`C_CopyObject`
//!   transitions of every key made; 32 combinations on a key pair. Each
//!   outcome is checked against the README's rule, computed here on its
//!   own: a key (a pair counting as one) that may wrap or unwrap holds no
//!   other usage attribute.
//! - the published attacks, each refused with the README's code, no byte
//!   of the target key ever coming out: wrap/decrypt, encrypt/unwrap, a
//!   double unwrap with conflicting attributes, wrapping under a weaker
//!   key and under a key made from a known value, a transport key wrapped
//!   out to be unwrapped as a decryption key, an entropy-reducing
//!   derivation.
//! - a `relaxed` partition accepts what a strict one refuses.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{
    Deployment, P256_PARAMS, SoftHsmDevice, in_child, load_module, run_in_child, rv,
    softhsm_available, user_session,
};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

const SWEEP: &str = "every_usage_combination_and_each_attack_on_either_driver";
const DRIVER: &str = "HSMLINK_SWEEP_DRIVER";
const USER_PIN: &str = "sweep-pin";

/// The swept attributes, in mask bit order.
const ROLES: [AttributeType; 7] = [
    AttributeType::Encrypt,
    AttributeType::Decrypt,
    AttributeType::Wrap,
    AttributeType::Unwrap,
    AttributeType::Sign,
    AttributeType::Verify,
    AttributeType::Derive,
];

fn role(which: AttributeType, on: bool) -> Attribute {
    match which {
        AttributeType::Encrypt => Attribute::Encrypt(on),
        AttributeType::Decrypt => Attribute::Decrypt(on),
        AttributeType::Wrap => Attribute::Wrap(on),
        AttributeType::Unwrap => Attribute::Unwrap(on),
        AttributeType::Sign => Attribute::Sign(on),
        AttributeType::Verify => Attribute::Verify(on),
        AttributeType::Derive => Attribute::Derive(on),
        AttributeType::SignRecover => Attribute::SignRecover(on),
        AttributeType::VerifyRecover => Attribute::VerifyRecover(on),
        other => panic!("not a usage attribute: {other:?}"),
    }
}

fn is_transport(which: AttributeType) -> bool {
    matches!(which, AttributeType::Wrap | AttributeType::Unwrap)
}

/// The README's table: a key whose usage attributes `on` include
/// `CKA_WRAP` or `CKA_UNWRAP` may hold no other.
fn allowed(on: &[AttributeType]) -> bool {
    let transport = on.iter().any(|a| is_transport(*a));
    let other = on.iter().any(|a| !is_transport(*a));
    !(transport && other)
}

fn on_in(mask: u32) -> Vec<AttributeType> {
    ROLES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, a)| *a)
        .collect()
}

/// Every swept attribute, on as the mask says.
fn all_given(mask: u32) -> Vec<Attribute> {
    ROLES
        .iter()
        .enumerate()
        .map(|(bit, a)| role(*a, mask & (1 << bit) != 0))
        .collect()
}

/// Only the attributes the mask turns on.
fn trues_given(mask: u32) -> Vec<Attribute> {
    on_in(mask).into_iter().map(|a| role(a, true)).collect()
}

fn usage(session: &Session, key: ObjectHandle, which: AttributeType) -> bool {
    match session.get_attributes(key, &[which]).unwrap().as_slice() {
        [
            Attribute::Encrypt(v)
            | Attribute::Decrypt(v)
            | Attribute::Wrap(v)
            | Attribute::Unwrap(v)
            | Attribute::Sign(v)
            | Attribute::Verify(v)
            | Attribute::SignRecover(v)
            | Attribute::VerifyRecover(v)
            | Attribute::Derive(v),
        ] => *v,
        other => panic!("unexpected {other:?}"),
    }
}

/// The outcome of making a key with usage `on`: made with exactly that
/// usage (every swept attribute given), or `CKR_TEMPLATE_INCONSISTENT`.
fn check_made(
    session: &Session,
    what: &str,
    mask: u32,
    made: cryptoki::error::Result<ObjectHandle>,
) -> Option<ObjectHandle> {
    check_made_if(session, what, mask, allowed(&on_in(mask)), made)
}

/// [`check_made`] with the expected outcome given: made if `ok`.
fn check_made_if(
    session: &Session,
    what: &str,
    mask: u32,
    ok: bool,
    made: cryptoki::error::Result<ObjectHandle>,
) -> Option<ObjectHandle> {
    let on = on_in(mask);
    if ok {
        let key = made.unwrap_or_else(|e| panic!("{what} {on:?}: refused ({e})"));
        for which in ROLES {
            assert_eq!(
                usage(session, key, which),
                on.contains(&which),
                "{what} {on:?}: {which:?}"
            );
        }
        Some(key)
    } else {
        assert_eq!(rv(made), RvError::TemplateInconsistent, "{what} {on:?}");
        None
    }
}

const TARGET: [u8; 16] = *b"target key bytes";
const KNOWN: [u8; 32] = [0x4b; 32];

fn aes_template(len: u64) -> Vec<Attribute> {
    vec![Attribute::Token(false), Attribute::ValueLen(len.into())]
}

fn created_template(value: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Value(value.to_vec()),
    ]
}

fn unwrap_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
    ]
}

fn with(mut base: Vec<Attribute>, extra: Vec<Attribute>) -> Vec<Attribute> {
    base.extend(extra);
    base
}

fn object_count(session: &Session) -> usize {
    session.find_objects(&[]).unwrap().len()
}

/// Any output of an attack that holds the target's bytes.
fn assert_no_leak(outputs: &[Vec<u8>]) {
    for out in outputs {
        assert!(
            !out.windows(TARGET.len()).any(|w| w == TARGET),
            "the target key came out"
        );
    }
}

fn sweep(session: &Session) {
    let generate = |template: &[Attribute]| session.generate_key(&Mechanism::AesKeyGen, template);
    // The unwrapping key and a wrapped data key for the unwrap sweep.
    let kek = generate(&with(
        aes_template(32),
        vec![Attribute::Wrap(true), Attribute::Unwrap(true)],
    ))
    .unwrap();
    // Every data role, so that the wrap ledger's record (no transport
    // role: a transport key is not wrapped so) allows each data role.
    let data_key = generate(&with(
        aes_template(16),
        vec![
            Attribute::Extractable(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Derive(true),
        ],
    ))
    .unwrap();
    let blob = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, data_key)
        .unwrap();

    // The base key for the derivation sweep.
    let base = generate(&with(aes_template(32), vec![Attribute::Derive(true)])).unwrap();
    let derivation_data = [0x3cu8; 16];

    let mut made = Vec::new();
    for mask in 0..128u32 {
        let on = on_in(mask);
        // C_GenerateKey, C_CreateObject, C_UnwrapKey: every attribute given.
        let generated = check_made(
            session,
            "generate",
            mask,
            generate(&with(aes_template(16), all_given(mask))),
        );
        check_made(
            session,
            "create",
            mask,
            session.create_object(&with(created_template(&KNOWN[..16]), all_given(mask))),
        );
        // The unwrap also may not widen the wrapped key's record (the
        // wrap ledger): no transport role.
        check_made_if(
            session,
            "unwrap",
            mask,
            allowed(&on) && !on.iter().any(|a| is_transport(*a)),
            session.unwrap_key(
                &Mechanism::AesKeyWrap,
                kek,
                &blob,
                &with(unwrap_template(), all_given(mask)),
            ),
        );
        check_made(
            session,
            "derive",
            mask,
            session.derive_key(
                &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0; 16], &derivation_data)),
                base,
                &with(
                    with(unwrap_template(), vec![Attribute::ValueLen(16.into())]),
                    all_given(mask),
                ),
            ),
        );
        // C_GenerateKey with only what is asked for: the same outcome; no
        // transport role unless asked; a transport key gets nothing else.
        let defaulted = generate(&with(aes_template(16), trues_given(mask)));
        if allowed(&on) {
            let key = defaulted.unwrap_or_else(|e| panic!("defaults {on:?}: {e}"));
            let transport = on.iter().any(|a| is_transport(*a));
            for which in ROLES {
                let value = usage(session, key, which);
                if on.contains(&which) {
                    assert!(value, "defaults {on:?}: {which:?} asked for");
                } else if transport || is_transport(which) {
                    assert!(!value, "defaults {on:?}: {which:?} not asked for");
                }
            }
        } else {
            assert_eq!(
                rv(defaulted),
                RvError::TemplateInconsistent,
                "defaults {on:?}"
            );
        }
        if let Some(key) = generated {
            made.push((mask, key));
        }
    }
    // Every key made: a role it lacks is never turned on, by a set or a
    // copy; a role it has may be turned off by a copy.
    for (mask, key) in made {
        let on = on_in(mask);
        for which in ROLES {
            if on.contains(&which) {
                continue;
            }
            let widen = role(which, true);
            assert_eq!(
                rv(session.update_attributes(key, std::slice::from_ref(&widen))),
                RvError::AttributeReadOnly,
                "set {on:?} + {which:?}"
            );
            assert_eq!(
                rv(session.copy_object(key, std::slice::from_ref(&widen))),
                RvError::AttributeReadOnly,
                "copy {on:?} + {which:?}"
            );
        }
        if let Some(first) = on.first() {
            let narrowed = session
                .copy_object(key, &[role(*first, false)])
                .unwrap_or_else(|e| panic!("copy {on:?} - {first:?}: {e}"));
            assert!(!usage(session, narrowed, *first));
        }
    }

    // A key pair is one key: public CKA_VERIFY/CKA_WRAP against private
    // CKA_SIGN/CKA_UNWRAP/CKA_DERIVE (P-256).
    let public_roles = [AttributeType::Verify, AttributeType::Wrap];
    let private_roles = [
        AttributeType::Sign,
        AttributeType::Unwrap,
        AttributeType::Derive,
    ];
    for mask in 0..32u32 {
        let public_on: Vec<AttributeType> = public_roles
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, a)| *a)
            .collect();
        let private_on: Vec<AttributeType> = private_roles
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << (bit + 2)) != 0)
            .map(|(_, a)| *a)
            .collect();
        let public_template: Vec<Attribute> = [
            Attribute::Token(false),
            Attribute::EcParams(P256_PARAMS.to_vec()),
        ]
        .into_iter()
        .chain(public_roles.iter().map(|a| role(*a, public_on.contains(a))))
        .collect();
        let private_template: Vec<Attribute> = [Attribute::Token(false)]
            .into_iter()
            .chain(
                private_roles
                    .iter()
                    .map(|a| role(*a, private_on.contains(a))),
            )
            .collect();
        let result = session.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &public_template,
            &private_template,
        );
        let both: Vec<AttributeType> = public_on.iter().chain(&private_on).copied().collect();
        if allowed(&both) {
            let (public, private) =
                result.unwrap_or_else(|e| panic!("pair {public_on:?} {private_on:?}: {e}"));
            for which in public_roles {
                assert_eq!(usage(session, public, which), public_on.contains(&which));
            }
            for which in private_roles {
                assert_eq!(usage(session, private, which), private_on.contains(&which));
            }
        } else {
            assert_eq!(
                rv(result),
                RvError::TemplateInconsistent,
                "pair {public_on:?} {private_on:?}"
            );
        }
    }
}

fn attacks(session: &Session, driver: &str) {
    let generate = |template: &[Attribute]| session.generate_key(&Mechanism::AesKeyGen, template);
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    // The target: a sensitive key that may leave wrapped.
    let target = session
        .create_object(&with(
            created_template(&TARGET),
            vec![
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        ))
        .unwrap();
    let kek = generate(&with(
        aes_template(32),
        vec![Attribute::Wrap(true), Attribute::Unwrap(true)],
    ))
    .unwrap();
    let blob = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, target)
        .unwrap();
    outputs.push(blob.clone());

    // Wrap/decrypt: a key that wraps and decrypts is never made ...
    for make in [
        generate(&with(
            aes_template(32),
            vec![Attribute::Wrap(true), Attribute::Decrypt(true)],
        )),
        session.create_object(&with(
            created_template(&KNOWN),
            vec![Attribute::Wrap(true), Attribute::Decrypt(true)],
        )),
    ] {
        assert_eq!(rv(make), RvError::TemplateInconsistent);
    }
    // ... the KEK cannot decrypt what it wrapped, nor learn to.
    assert_eq!(
        rv(session.decrypt(&Mechanism::AesEcb, kek, &blob[8..])),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(session.update_attributes(kek, &[Attribute::Decrypt(true)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(session.copy_object(kek, &[Attribute::Decrypt(true)])),
        RvError::AttributeReadOnly
    );

    // Encrypt/unwrap: no key encrypts and unwraps, so no known key value
    // is encrypted into something the token would unwrap.
    assert_eq!(
        rv(generate(&with(
            aes_template(32),
            vec![Attribute::Unwrap(true), Attribute::Encrypt(true)],
        ))),
        RvError::TemplateInconsistent
    );
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, kek, &KNOWN)),
        RvError::KeyFunctionNotPermitted
    );

    // Double unwrap with conflicting attributes: one unwrap asking for
    // both roles is refused; so is a copy asking for the transport role
    // alone (the wrap ledger: the target never wrapped), and a copy with
    // a role the target had is made.
    let before = object_count(session);
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &with(
                unwrap_template(),
                vec![Attribute::Wrap(true), Attribute::Decrypt(true)]
            ),
        )),
        RvError::TemplateInconsistent
    );
    assert_eq!(object_count(session), before, "a refused unwrap made a key");
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &with(unwrap_template(), vec![Attribute::Wrap(true)]),
        )),
        RvError::TemplateInconsistent
    );
    assert_eq!(object_count(session), before, "a refused unwrap made a key");
    let decrypting_copy = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &with(unwrap_template(), vec![Attribute::Decrypt(true)]),
        )
        .unwrap();
    let victim = generate(&with(
        aes_template(16),
        vec![Attribute::Extractable(true), Attribute::Encrypt(true)],
    ))
    .unwrap();
    let _ = decrypting_copy;

    // Unwrap as readable: the blob of a sensitive key unwrapped with
    // CKA_SENSITIVE false would give its value away. Refused; an unwrap
    // that says nothing makes a sensitive key.
    let before = object_count(session);
    assert_eq!(
        rv(session.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &with(
                unwrap_template(),
                vec![Attribute::Sensitive(false), Attribute::Extractable(true)]
            ),
        )),
        RvError::TemplateInconsistent
    );
    assert_eq!(object_count(session), before, "a refused unwrap made a key");
    let quiet_copy = session
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &with(unwrap_template(), vec![Attribute::Encrypt(true)]),
        )
        .unwrap();
    assert_eq!(
        session
            .get_attributes(quiet_copy, &[AttributeType::Sensitive])
            .unwrap(),
        [Attribute::Sensitive(true)],
        "{driver}: an unwrapped key is sensitive"
    );

    // A transport key leaves only in a key block: wrapped with AES key
    // wrap it could come back as a decryption key of its wrapped keys.
    let movable_kek = generate(&with(
        aes_template(16),
        vec![Attribute::Wrap(true), Attribute::Extractable(true)],
    ))
    .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, kek, movable_kek)),
        RvError::KeyNotWrappable
    );

    // Export under a weaker key.
    let weak_kek = generate(&with(aes_template(16), vec![Attribute::Wrap(true)])).unwrap();
    let strong = generate(&with(
        aes_template(32),
        vec![Attribute::Extractable(true), Attribute::Encrypt(true)],
    ))
    .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, weak_kek, strong)),
        RvError::WrappingKeySizeRange
    );

    // Export under a known key: one made from a value the caller chose.
    let known = session
        .create_object(&with(created_template(&KNOWN), vec![Attribute::Wrap(true)]))
        .unwrap();
    let result = session.wrap_key(&Mechanism::AesKeyWrap, known, target);
    if let Ok(out) = &result {
        outputs.push(out.clone());
    }
    assert_eq!(rv(result), RvError::KeyFunctionNotPermitted);

    // Entropy-reducing derivation: a 64-bit key from a 256-bit one.
    let base = generate(&with(aes_template(32), vec![Attribute::Derive(true)])).unwrap();
    let data = [0x5au8; 16];
    let derive = |len: u64| {
        session.derive_key(
            &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0; 16], &data)),
            base,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::ValueLen(len.into()),
            ],
        )
    };
    let before = object_count(session);
    assert_eq!(rv(derive(8)), RvError::TemplateInconsistent);
    assert_eq!(
        object_count(session),
        before,
        "a refused derivation made a key"
    );
    derive(16).unwrap();
    // A derived key never wraps either.
    let derived_kek = session
        .derive_key(
            &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([1; 16], &data)),
            base,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::ValueLen(16.into()),
                Attribute::Wrap(true),
            ],
        )
        .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, derived_kek, victim)),
        RvError::KeyFunctionNotPermitted
    );

    // A readable key (not sensitive, extractable: pkcs11-tool's --derive
    // makes them with all four roles) has no secret for its roles to
    // guard: made, but it never wraps, and never becomes unreadable while
    // its roles conflict.
    let readable = generate(&with(
        aes_template(32),
        vec![
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Wrap(true),
            Attribute::Decrypt(true),
        ],
    ))
    .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, readable, victim)),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(session.update_attributes(readable, &[Attribute::Sensitive(true)])),
        RvError::TemplateInconsistent
    );
    assert_eq!(
        rv(session.copy_object(readable, &[Attribute::Sensitive(true)])),
        RvError::TemplateInconsistent
    );
    // Narrowed to one role, it may be hidden (and still never wraps).
    session
        .update_attributes(
            readable,
            &[Attribute::Wrap(false), Attribute::Sensitive(true)],
        )
        .unwrap();
    // A generated KEK that was readable once never wraps either.
    let was_readable = generate(&with(
        aes_template(32),
        vec![
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Wrap(true),
        ],
    ))
    .unwrap();
    session
        .update_attributes(was_readable, &[Attribute::Sensitive(true)])
        .unwrap();
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, was_readable, victim)),
        RvError::KeyFunctionNotPermitted
    );

    // The standard's way to let a key from outside wrap: the SO vouches
    // for it (CKA_TRUSTED, which only the SO may set). The soft HSM
    // shows it; the pkcs11 driver's device session is the device user's,
    // whom SoftHSMv2 does not let set CKA_TRUSTED.
    if driver == "soft" {
        use cryptoki::session::UserType;
        session.logout().unwrap();
        session
            .login(UserType::So, Some(&common::pin(common::SO_PIN)))
            .unwrap();
        let trusted = session
            .create_object(&with(
                created_template(&KNOWN),
                vec![
                    Attribute::Private(false),
                    Attribute::Trusted(true),
                    Attribute::Wrap(true),
                ],
            ))
            .unwrap();
        session.logout().unwrap();
        session
            .login(UserType::User, Some(&common::pin(USER_PIN)))
            .unwrap();
        let out = session
            .wrap_key(&Mechanism::AesKeyWrap, trusted, victim)
            .unwrap();
        assert_eq!(out.len(), 24);
    }

    // The target itself: sensitive, never read.
    if let Ok(values) = session.get_attributes(target, &[AttributeType::Value]) {
        assert!(values.is_empty(), "{}: the target's value was read", driver);
    }
    assert_no_leak(&outputs);
}

fn scenario() {
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "sweep", USER_PIN);
    let driver = std::env::var(DRIVER).unwrap_or_else(|_| "soft".to_owned());
    let started = Instant::now();
    sweep(&session);
    eprintln!("{driver}: sweep in {:?}", started.elapsed());
    attacks(&session, &driver);
}

#[test]
fn every_usage_combination_and_each_attack_on_either_driver() {
    if in_child() {
        scenario();
        return;
    }
    let deployment = Deployment::start();
    run_in_child(SWEEP, &deployment.module_env());
    drop(deployment);

    if !softhsm_available() {
        eprintln!("SKIPPED (pkcs11 driver): SoftHSMv2 is not installed (Debian package softhsm2)");
        return;
    }
    let device = SoftHsmDevice::new("sweep");
    let mut deployment = Deployment::init();
    deployment.use_pkcs11_device("sweep", &device);
    deployment.run_server_with_env(&device.env());
    let mut env = deployment.module_env();
    env.extend(device.env());
    env.push((DRIVER, "pkcs11".into()));
    run_in_child(SWEEP, &env);
}

const RELAXED: &str = "a_relaxed_partition_accepts_conflicting_roles";

#[test]
fn a_relaxed_partition_accepts_conflicting_roles() {
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11, "relaxed", "relaxed-pin");
        // python-pkcs11's AES default: all four roles.
        let key = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &with(
                    aes_template(32),
                    vec![
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(true),
                        Attribute::Unwrap(true),
                    ],
                ),
            )
            .unwrap();
        // A key made from a value wraps, under the standard's rules.
        let known = session
            .create_object(&with(created_template(&KNOWN), vec![Attribute::Wrap(true)]))
            .unwrap();
        let target = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &with(aes_template(16), vec![Attribute::Extractable(true)]),
            )
            .unwrap();
        session
            .wrap_key(&Mechanism::AesKeyWrap, known, target)
            .unwrap();
        // Usage stays sticky.
        assert_eq!(
            rv(session.update_attributes(known, &[Attribute::Derive(true)])),
            RvError::AttributeReadOnly
        );
        // No wrap ledger: a key that only encrypted unwraps with any roles.
        let encrypting = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &with(
                    aes_template(16),
                    vec![
                        Attribute::Extractable(true),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Derive(false),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                    ],
                ),
            )
            .unwrap();
        let blob = session
            .wrap_key(&Mechanism::AesKeyWrap, key, encrypting)
            .unwrap();
        session
            .unwrap_key(
                &Mechanism::AesKeyWrap,
                key,
                &blob,
                &with(
                    unwrap_template(),
                    vec![Attribute::Decrypt(true), Attribute::Derive(true)],
                ),
            )
            .unwrap();
        return;
    }
    let mut deployment = Deployment::init();
    let path = deployment.path("server.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("driver = \"soft\""));
    std::fs::write(
        &path,
        text.replace(
            "driver = \"soft\"",
            "driver = \"soft\"\nsecure_templates = \"relaxed\"",
        ),
    )
    .unwrap();
    deployment.run_server();
    run_in_child(RELAXED, &deployment.module_env());
}

const MADE_RELAXED: &str = "a_key_made_relaxed_does_not_wrap_once_strict";
const PHASE: &str = "HSMLINK_SWEEP_PHASE";
const BLOB: &str = "HSMLINK_SWEEP_BLOB";

/// A partition turned strict after keys with conflicting roles were made on
/// it relaxed: such a key wraps no more, and a blob wrapped while it was
/// relaxed (no wrap ledger) does not unwrap under a key that is not trusted.
#[test]
fn a_key_made_relaxed_does_not_wrap_once_strict() {
    if in_child() {
        let pkcs11 = load_module();
        let both = |session: &Session| {
            let found = session
                .find_objects(&[Attribute::Label(b"both".to_vec())])
                .unwrap();
            let target = session
                .find_objects(&[Attribute::Label(b"target".to_vec())])
                .unwrap();
            (found[0], target[0])
        };
        if std::env::var(PHASE).is_ok_and(|p| p == "relaxed") {
            let session = user_session(&pkcs11, "phases", USER_PIN);
            let token = |label: &[u8], roles: Vec<Attribute>| {
                let mut template = with(aes_template(32), roles);
                template[0] = Attribute::Token(true);
                template.push(Attribute::Label(label.to_vec()));
                session
                    .generate_key(&Mechanism::AesKeyGen, &template)
                    .unwrap()
            };
            token(
                b"both",
                vec![Attribute::Wrap(true), Attribute::Decrypt(true)],
            );
            token(
                b"target",
                vec![
                    Attribute::Extractable(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                ],
            );
            let (kek, target) = both(&session);
            session
                .wrap_key(&Mechanism::AesKeyWrap, kek, target)
                .unwrap();
            // A blob made while relaxed, under a KEK of one role: no
            // ledger keeps it.
            let transport = token(
                b"transport",
                vec![Attribute::Wrap(true), Attribute::Unwrap(true)],
            );
            let blob = session
                .wrap_key(&Mechanism::AesKeyWrap, transport, target)
                .unwrap();
            std::fs::write(std::env::var_os(BLOB).unwrap(), blob).unwrap();
        } else {
            use cryptoki::session::UserType;
            let slot = pkcs11.get_all_slots().unwrap()[0];
            let session = pkcs11.open_rw_session(slot).unwrap();
            session
                .login(UserType::User, Some(&common::pin(USER_PIN)))
                .unwrap();
            let (kek, target) = both(&session);
            assert_eq!(
                rv(session.wrap_key(&Mechanism::AesKeyWrap, kek, target)),
                RvError::KeyFunctionNotPermitted
            );
            // The relaxed partition's blob is in no wrap ledger: refused
            // under its (not trusted) KEK once the partition is strict.
            let transport = session
                .find_objects(&[Attribute::Label(b"transport".to_vec())])
                .unwrap()[0];
            let blob = std::fs::read(std::env::var_os(BLOB).unwrap()).unwrap();
            assert_eq!(
                rv(session.unwrap_key(
                    &Mechanism::AesKeyWrap,
                    transport,
                    &blob,
                    &with(unwrap_template(), vec![Attribute::Encrypt(true)]),
                )),
                RvError::WrappedKeyInvalid
            );
        }
        return;
    }
    let mut deployment = Deployment::init();
    let path = deployment.path("server.toml");
    let strict = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        strict.replace(
            "driver = \"soft\"",
            "driver = \"soft\"\nsecure_templates = \"relaxed\"",
        ),
    )
    .unwrap();
    deployment.run_server();
    let blob = deployment.path("relaxed-blob");
    let mut env = deployment.module_env();
    env.push((BLOB, blob.clone().into()));
    env.push((PHASE, "relaxed".into()));
    run_in_child(MADE_RELAXED, &env);
    deployment.stop_server();
    std::fs::write(&path, strict).unwrap();
    deployment.run_server();
    let mut env = deployment.module_env();
    env.push((BLOB, blob.into()));
    run_in_child(MADE_RELAXED, &env);
}
