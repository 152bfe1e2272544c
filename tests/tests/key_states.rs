//! Key states after NIST SP 800-57 (`CKA_HSMLINK_KEY_STATE`) through the
//! real module, on the soft HSM and on the `pkcs11` driver over SoftHSMv2
//! (which does not know the attribute: hsmlink keeps the state): for each
//! state, every use allowed or refused with its code; the transitions
//! allowed and refused, by the user and by the SO; a destroyed key's
//! material gone (on SoftHSMv2 the device object itself, its attributes
//! answered from hsmlink's tombstone); all of it again after a server
//! restart; and the audit log naming each state change.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;

use common::{Deployment, SO_PIN, hex, in_child, load_module, pin, run_in_child, rv, unhex};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

const TEST: &str = "key_states_hold_on_every_use_across_a_restart_and_are_audited";
const USER_PIN: &str = "states-pin-4321";

const CKA_HSMLINK_KEY_STATE: u64 = 0xC853_0302;
const CKM_HSMLINK_TR31: u64 = 0xC853_0200;
const PRE_ACTIVATION: u64 = 0;
const ACTIVE: u64 = 1;
const DEACTIVATED: u64 = 2;
const COMPROMISED: u64 = 3;
const DESTROYED: u64 = 4;
const STATES: [u64; 5] = [PRE_ACTIVATION, ACTIVE, DEACTIVATED, COMPROMISED, DESTROYED];

fn state_attr(value: u64) -> Attribute {
    Attribute::VendorDefined((
        AttributeType::VendorDefined(CKA_HSMLINK_KEY_STATE),
        value.to_ne_bytes().to_vec(),
    ))
}

fn state_of(session: &Session, key: ObjectHandle) -> u64 {
    match session
        .get_attributes(key, &[AttributeType::VendorDefined(CKA_HSMLINK_KEY_STATE)])
        .unwrap()
        .as_slice()
    {
        [Attribute::VendorDefined((_, bytes))] => {
            u64::from_ne_bytes(bytes.as_slice().try_into().unwrap())
        }
        other => panic!("no key state: {other:?}"),
    }
}

fn set_state(session: &Session, key: ObjectHandle, value: u64) -> cryptoki::error::Result<()> {
    session.update_attributes(key, &[state_attr(value)])
}

/// The keys of one state, one per role, token objects.
#[derive(Clone, Copy, Debug)]
struct Keys {
    /// AES-256: encrypt, decrypt, sign, verify (CMAC), derive.
    data: ObjectHandle,
    /// AES-256, generated and sensitive: wrap and unwrap only.
    kek: ObjectHandle,
    /// AES-128, readable (not sensitive, extractable): encrypt only.
    target: ObjectHandle,
    ec_private: ObjectHandle,
    ec_public: ObjectHandle,
}

/// What each key made while it was active (dummies for pre-activation).
#[derive(Clone, Debug)]
struct Made {
    ciphertext: Vec<u8>,
    mac: Vec<u8>,
    signature: Vec<u8>,
    blob: Vec<u8>,
    target_value: Vec<u8>,
}

const PLAIN: [u8; 16] = [0x42; 16];
const DIGEST: [u8; 32] = [0x17; 32];

fn make_keys(session: &Session, initial: Option<u64>) -> Keys {
    let with_state = |mut t: Vec<Attribute>| {
        if let Some(v) = initial {
            t.push(state_attr(v));
        }
        t
    };
    let data = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &with_state(vec![
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Derive(true),
            ]),
        )
        .unwrap();
    let kek = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &with_state(vec![
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
            ]),
        )
        .unwrap();
    let target = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &with_state(vec![
                Attribute::ValueLen(16.into()),
                Attribute::Token(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
            ]),
        )
        .unwrap();
    let (ec_public, ec_private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &with_state(vec![
                Attribute::EcParams(common::P256_PARAMS.to_vec()),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
            ]),
            &with_state(vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sign(true),
            ]),
        )
        .unwrap();
    Keys {
        data,
        kek,
        target,
        ec_private,
        ec_public,
    }
}

fn value_of(session: &Session, key: ObjectHandle) -> Option<Vec<u8>> {
    session
        .get_attributes(key, &[AttributeType::Value])
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
}

fn produce(session: &Session, keys: Keys) -> Made {
    Made {
        ciphertext: session
            .encrypt(&Mechanism::AesEcb, keys.data, &PLAIN)
            .unwrap(),
        mac: session
            .sign(&Mechanism::AesCMac, keys.data, &PLAIN)
            .unwrap(),
        signature: session
            .sign(&Mechanism::Ecdsa, keys.ec_private, &DIGEST)
            .unwrap(),
        blob: session
            .wrap_key(&Mechanism::AesKeyWrap, keys.kek, keys.target)
            .unwrap(),
        target_value: value_of(session, keys.target).unwrap(),
    }
}

fn dummies() -> Made {
    Made {
        ciphertext: vec![0; 16],
        mac: vec![0; 16],
        signature: vec![1; 64],
        blob: vec![0; 24],
        target_value: Vec::new(),
    }
}

/// Moves every key of `keys` from active to `state` along allowed paths.
fn move_to(session: &Session, keys: Keys, state: u64) {
    let path: &[u64] = match state {
        ACTIVE => &[],
        DEACTIVATED => &[DEACTIVATED],
        COMPROMISED => &[COMPROMISED],
        DESTROYED => &[DEACTIVATED, DESTROYED],
        other => panic!("no path to {other}"),
    };
    for key in [
        keys.data,
        keys.kek,
        keys.target,
        keys.ec_private,
        keys.ec_public,
    ] {
        for step in path {
            set_state(session, key, *step).unwrap();
        }
    }
}

/// Ok, or the `CK_RV` of the refusal.
type Outcome = Result<(), RvError>;

fn outcome<T: std::fmt::Debug>(result: cryptoki::error::Result<T>) -> Outcome {
    match result {
        Ok(_) => Ok(()),
        Err(_) => Err(rv(result)),
    }
}

/// Every use of the keys of one state, against the table of README "Key
/// states"; `reference` is an active set (the other side of a wrap).
fn check_uses(session: &Session, state: u64, keys: Keys, made: &Made, reference: Keys) {
    let processes = matches!(state, ACTIVE | DEACTIVATED | COMPROMISED);
    let active = state == ACTIVE;
    let expect = |allowed: bool, refusal: RvError| if allowed { Ok(()) } else { Err(refusal) };
    let no = RvError::KeyFunctionNotPermitted;
    let mut cases: Vec<(&str, Outcome, Outcome)> = vec![
        (
            "encrypt",
            outcome(session.encrypt(&Mechanism::AesEcb, keys.data, &PLAIN)),
            expect(active, no),
        ),
        (
            "decrypt",
            outcome(
                session
                    .decrypt(&Mechanism::AesEcb, keys.data, &made.ciphertext)
                    .map(|p| assert_eq!(p, PLAIN)),
            ),
            expect(processes, no),
        ),
        (
            "sign (CMAC)",
            outcome(session.sign(&Mechanism::AesCMac, keys.data, &PLAIN)),
            expect(active, no),
        ),
        (
            "verify (CMAC)",
            outcome(session.verify(&Mechanism::AesCMac, keys.data, &PLAIN, &made.mac)),
            expect(processes, no),
        ),
        (
            "sign (ECDSA)",
            outcome(session.sign(&Mechanism::Ecdsa, keys.ec_private, &DIGEST)),
            expect(active, no),
        ),
        (
            "verify (ECDSA)",
            outcome(session.verify(&Mechanism::Ecdsa, keys.ec_public, &DIGEST, &made.signature)),
            expect(processes, no),
        ),
        (
            "wrap (as the wrapping key)",
            outcome(session.wrap_key(&Mechanism::AesKeyWrap, keys.kek, reference.target)),
            expect(active, no),
        ),
        (
            "wrapped (as the key wrapped)",
            outcome(session.wrap_key(&Mechanism::AesKeyWrap, reference.kek, keys.target)),
            expect(active, RvError::KeyNotWrappable),
        ),
        (
            "key block export (as the KBPK)",
            outcome(session.wrap_key(
                &common::vendor(CKM_HSMLINK_TR31),
                keys.kek,
                reference.target,
            )),
            expect(active, no),
        ),
        (
            "key block export (as the key exported)",
            outcome(session.wrap_key(
                &common::vendor(CKM_HSMLINK_TR31),
                reference.kek,
                keys.target,
            )),
            expect(active, RvError::KeyNotWrappable),
        ),
        (
            "unwrap",
            outcome(
                session
                    .unwrap_key(
                        &Mechanism::AesKeyWrap,
                        keys.kek,
                        &made.blob,
                        &[
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(KeyType::AES),
                            Attribute::Token(false),
                            Attribute::Encrypt(true),
                        ],
                    )
                    .map(|k| {
                        // The unwrapped key is the one wrapped, and active.
                        assert_eq!(value_of(session, k), None, "sensitive by default");
                        assert_eq!(state_of(session, k), ACTIVE);
                    }),
            ),
            expect(processes, no),
        ),
        (
            "derive",
            outcome(session.derive_key(
                &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0; 16], &[5u8; 16])),
                keys.data,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(false),
                    Attribute::ValueLen(16.into()),
                ],
            )),
            expect(active, no),
        ),
    ];
    if on_device() {
        // No key blocks on the pkcs11 driver.
        cases.retain(|(what, _, _)| !what.starts_with("key block"));
    }
    for (what, got, wanted) in cases {
        assert_eq!(got, wanted, "state {state}: {what}");
    }
    for key in [
        keys.data,
        keys.kek,
        keys.target,
        keys.ec_private,
        keys.ec_public,
    ] {
        assert_eq!(state_of(session, key), state);
    }
    // The readable key's value: there until destroyed, then gone (the
    // object and its other attributes stay).
    let value = value_of(session, keys.target);
    // AttributeInfo has no PartialEq: compare its Debug form.
    let info = |key| {
        format!(
            "{:?}",
            session
                .get_attribute_info(key, &[AttributeType::Value])
                .unwrap()
        )
    };
    if state == DESTROYED {
        assert_eq!(value, None, "a destroyed key kept its CKA_VALUE");
        // CKR_ATTRIBUTE_TYPE_INVALID: no value at all, sensitive or not.
        assert_eq!(info(keys.target), "[TypeInvalid]");
        assert_eq!(info(keys.data), "[TypeInvalid]");
        assert_eq!(info(keys.ec_private), "[TypeInvalid]");
        let rest = session
            .get_attributes(
                keys.target,
                &[AttributeType::ValueLen, AttributeType::KeyType],
            )
            .unwrap();
        assert_eq!(rest.len(), 2, "{rest:?}");
        // The private key's components are gone too: still there as an
        // object, with its curve.
        let curve = session
            .get_attributes(keys.ec_private, &[AttributeType::EcParams])
            .unwrap();
        assert_eq!(curve.len(), 1);
    } else if state != PRE_ACTIVATION {
        assert_eq!(value.as_deref(), Some(made.target_value.as_slice()));
        assert_eq!(info(keys.data), "[Sensitive]");
    } else {
        assert_eq!(value.map(|v| v.len()), Some(16));
    }
}

/// The transitions, by the user and by the SO, on keys of their own.
fn check_transitions(session: &Session) {
    let aes = |extra: Vec<Attribute>| {
        let mut t = vec![
            Attribute::ValueLen(16.into()),
            Attribute::Token(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ];
        t.extend(extra);
        session.generate_key(&Mechanism::AesKeyGen, &t)
    };
    // Made in another state than pre-activation or active: refused.
    for state in [DEACTIVATED, COMPROMISED, DESTROYED, 9] {
        assert_eq!(
            rv(aes(vec![state_attr(state)])),
            RvError::AttributeValueInvalid,
            "made {state}"
        );
    }
    // Made active by default; pre-activation when asked, then activated.
    assert_eq!(state_of(session, aes(vec![]).unwrap()), ACTIVE);
    let pending = aes(vec![state_attr(PRE_ACTIVATION)]).unwrap();
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, pending, &PLAIN)),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(set_state(session, pending, DESTROYED)),
        RvError::AttributeValueInvalid
    );
    set_state(session, pending, ACTIVE).unwrap();
    session
        .encrypt(&Mechanism::AesEcb, pending, &PLAIN)
        .unwrap();

    // Backwards and skipping moves: CKR_ATTRIBUTE_VALUE_INVALID.
    let key = aes(vec![]).unwrap();
    for refused in [PRE_ACTIVATION, DESTROYED, 5] {
        assert_eq!(
            rv(set_state(session, key, refused)),
            RvError::AttributeValueInvalid,
            "active -> {refused}"
        );
    }
    set_state(session, key, ACTIVE).unwrap(); // no change
    set_state(session, key, DEACTIVATED).unwrap();
    for refused in [ACTIVE, PRE_ACTIVATION] {
        assert_eq!(
            rv(set_state(session, key, refused)),
            RvError::AttributeValueInvalid,
            "deactivated -> {refused}"
        );
    }
    // A copy keeps the state, and no copy goes back.
    let copy = session
        .copy_object(key, &[Attribute::Token(false)])
        .unwrap();
    assert_eq!(state_of(session, copy), DEACTIVATED);
    assert_eq!(
        rv(session.copy_object(key, &[state_attr(ACTIVE)])),
        RvError::AttributeValueInvalid
    );
    let marked = session
        .copy_object(key, &[Attribute::Token(false), state_attr(COMPROMISED)])
        .unwrap();
    assert_eq!(state_of(session, marked), COMPROMISED);
    set_state(session, key, COMPROMISED).unwrap();
    assert_eq!(
        rv(set_state(session, key, DEACTIVATED)),
        RvError::AttributeValueInvalid
    );
    set_state(session, key, DESTROYED).unwrap();
    for refused in [ACTIVE, COMPROMISED, DEACTIVATED] {
        assert_eq!(
            rv(set_state(session, key, refused)),
            RvError::AttributeReadOnly,
            "destroyed -> {refused}"
        );
    }
    // A destroyed key's other attributes may still change (its label, for
    // the record); the object goes with C_DestroyObject as any other.
    session
        .update_attributes(key, &[Attribute::Label(b"retired".to_vec())])
        .unwrap();

    // A key whose attributes are fixed still moves forward.
    let fixed = aes(vec![Attribute::Modifiable(false)]).unwrap();
    assert_eq!(
        rv(session.update_attributes(fixed, &[Attribute::Label(b"x".to_vec())])),
        RvError::ActionProhibited
    );
    set_state(session, fixed, DEACTIVATED).unwrap();
    assert_eq!(state_of(session, fixed), DEACTIVATED);

    // The SO marks a public key compromised, and does nothing else.
    let (public, _) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(common::P256_PARAMS.to_vec()),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
            ],
            &[Attribute::Token(true), Attribute::Sign(true)],
        )
        .unwrap();
    let other_public = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(common::P256_PARAMS.to_vec()),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
            ],
            &[Attribute::Token(true), Attribute::Sign(true)],
        )
        .unwrap()
        .0;
    session.logout().unwrap();
    // Without a login, no state moves.
    assert_eq!(
        rv(set_state(session, other_public, COMPROMISED)),
        RvError::UserNotLoggedIn
    );
    session.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    assert_eq!(
        rv(set_state(session, public, DEACTIVATED)),
        RvError::AttributeReadOnly
    );
    set_state(session, public, COMPROMISED).unwrap();
    assert_eq!(state_of(session, public), COMPROMISED);
    assert_eq!(
        rv(set_state(session, public, DESTROYED)),
        RvError::AttributeReadOnly
    );
    session.logout().unwrap();
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    assert_eq!(state_of(session, public), COMPROMISED);
    set_state(session, public, DESTROYED).unwrap();
}

fn write_out(keys: &BTreeMap<u64, (Keys, Made)>, reference: Keys) {
    let mut text = String::new();
    let line = |k: Keys, m: &Made| {
        format!(
            "{} {} {} {} {} {} {} {} {} {}\n",
            k.data.handle(),
            k.kek.handle(),
            k.target.handle(),
            k.ec_private.handle(),
            k.ec_public.handle(),
            hex(&m.ciphertext),
            hex(&m.mac),
            hex(&m.signature),
            hex(&m.blob),
            if m.target_value.is_empty() {
                "-".to_owned()
            } else {
                hex(&m.target_value)
            },
        )
    };
    text.push_str(&line(reference, &dummies()));
    for (keys, made) in keys.values() {
        text.push_str(&line(*keys, made));
    }
    std::fs::write(std::env::var_os("KEY_STATES_OUT").unwrap(), text).unwrap();
}

fn read_back(session: &Session) -> (Keys, Vec<(u64, Keys, Made)>) {
    let text = std::fs::read_to_string(std::env::var_os("KEY_STATES_OUT").unwrap()).unwrap();
    // Handles are stable across restarts: find them among the token's objects.
    let all = session.find_objects(&[]).unwrap();
    let handle = |s: &str| {
        let h: u64 = s.parse().unwrap();
        *all.iter()
            .find(|o| o.handle() == h)
            .unwrap_or_else(|| panic!("object {h} is gone"))
    };
    let mut sets = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let keys = Keys {
            data: handle(f[0]),
            kek: handle(f[1]),
            target: handle(f[2]),
            ec_private: handle(f[3]),
            ec_public: handle(f[4]),
        };
        let made = Made {
            ciphertext: unhex(f[5]),
            mac: unhex(f[6]),
            signature: unhex(f[7]),
            blob: unhex(f[8]),
            target_value: if f[9] == "-" { Vec::new() } else { unhex(f[9]) },
        };
        sets.push((keys, made));
    }
    let (reference, _) = sets.remove(0);
    (
        reference,
        STATES
            .iter()
            .zip(sets)
            .map(|(s, (k, m))| (*s, k, m))
            .collect(),
    )
}

/// First run: every state made and checked, the transitions.
fn before_restart() {
    let pkcs11 = load_module();
    let session = common::user_session(&pkcs11, "states", USER_PIN);
    let reference = make_keys(&session, None);
    let mut sets = BTreeMap::new();
    for state in STATES {
        let (keys, made) = if state == PRE_ACTIVATION {
            (make_keys(&session, Some(PRE_ACTIVATION)), dummies())
        } else {
            let keys = make_keys(&session, None);
            let made = produce(&session, keys);
            move_to(&session, keys, state);
            (keys, made)
        };
        check_uses(&session, state, keys, &made, reference);
        sets.insert(state, (keys, made));
    }
    write_out(&sets, reference);
    check_transitions(&session);
    if on_device() {
        tombstones(&session, sets[&DESTROYED].0);
    }
}

/// The pkcs11 driver's tombstones: found on what they keep, by state;
/// not copied (no device object to copy, README "Key states").
fn tombstones(session: &Session, keys: Keys) {
    let state = |v: u64| {
        Attribute::VendorDefined((
            AttributeType::VendorDefined(CKA_HSMLINK_KEY_STATE),
            v.to_ne_bytes().to_vec(),
        ))
    };
    let destroyed = session.find_objects(&[state(DESTROYED)]).unwrap();
    for key in [
        keys.data,
        keys.kek,
        keys.target,
        keys.ec_private,
        keys.ec_public,
    ] {
        assert!(destroyed.contains(&key), "{key:?} not found as destroyed");
    }
    let secret = session
        .find_objects(&[
            state(DESTROYED),
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::ValueLen(16.into()),
        ])
        .unwrap();
    assert!(secret.contains(&keys.target) && !secret.contains(&keys.data));
    assert!(
        !session
            .find_objects(&[state(ACTIVE)])
            .unwrap()
            .contains(&keys.data)
    );
    assert_eq!(
        rv(session.copy_object(keys.target, &[Attribute::Token(false)])),
        RvError::ActionProhibited
    );
    assert_eq!(
        rv(session.update_attributes(keys.target, &[Attribute::Encrypt(false)])),
        RvError::AttributeReadOnly
    );
}

/// Second run, after the server restarted over the same store.
fn after_restart() {
    let pkcs11 = load_module();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let (reference, sets) = read_back(&session);
    let mut uids = String::new();
    for (state, keys, made) in sets {
        check_uses(&session, state, keys, &made, reference);
        if matches!(state, DEACTIVATED | DESTROYED) {
            for key in [keys.data, keys.kek, keys.target, keys.ec_private] {
                let unique = match session
                    .get_attributes(key, &[AttributeType::UniqueId])
                    .unwrap()
                    .as_slice()
                {
                    [Attribute::UniqueId(u)] => u.clone(),
                    other => panic!("no CKA_UNIQUE_ID: {other:?}"),
                };
                uids.push_str(&format!("{state} {}\n", String::from_utf8(unique).unwrap()));
            }
        }
    }
    let out = std::env::var_os("KEY_STATES_OUT").unwrap();
    std::fs::write(format!("{}.uids", out.to_string_lossy()), uids).unwrap();
}

/// On SoftHSMv2 directly (pkcs11 driver): the device objects of destroyed
/// keys are gone, those of deactivated keys are there.
fn on_the_device() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let out = std::env::var_os("KEY_STATES_OUT").unwrap();
    let text = std::fs::read_to_string(format!("{}.uids", out.to_string_lossy())).unwrap();
    let softhsm = Pkcs11::new(common::SOFTHSM_MODULE).unwrap();
    softhsm
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = softhsm.get_slots_with_token().unwrap()[0];
    let session = softhsm.open_ro_session(slot).unwrap();
    let device_pin = std::env::var("KEY_STATES_DEVICE_PIN").unwrap();
    session
        .login(UserType::User, Some(&pin(&device_pin)))
        .unwrap();
    // hsmlink's CKA_ID on the device: "hl1:" ‖ uid ‖ the tenant's id.
    let on_device: Vec<String> = session
        .find_objects(&[])
        .unwrap()
        .into_iter()
        .filter_map(|o| {
            match session
                .get_attributes(o, &[AttributeType::Id])
                .ok()?
                .as_slice()
            {
                [Attribute::Id(id)] if id.len() >= 20 => Some(hex(&id[4..20]).to_lowercase()),
                _ => None,
            }
        })
        .collect();
    let mut checked = 0;
    for line in text.lines() {
        let (state, uid) = line.split_once(' ').unwrap();
        let present = on_device.iter().any(|u| u == uid);
        if state == DESTROYED.to_string() {
            assert!(
                !present,
                "the device object of destroyed key {uid} is still there"
            );
        } else {
            assert!(
                present,
                "the device object of deactivated key {uid} is gone"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
}

const DRIVER: &str = "KEY_STATES_DRIVER";

/// Whether the child runs against the pkcs11 driver.
fn on_device() -> bool {
    std::env::var(DRIVER).is_ok_and(|d| d == "pkcs11")
}

#[test]
fn key_states_hold_on_every_use_across_a_restart_and_are_audited() {
    if in_child() {
        match std::env::var("KEY_STATES_PHASE").as_deref() {
            Ok("before") => before_restart(),
            Ok("after") => after_restart(),
            Ok("device") => on_the_device(),
            other => panic!("phase {other:?}"),
        }
        return;
    }
    let mut deployment = Deployment::start();
    suite(&mut deployment, &[]);
    drop(deployment);

    if !common::softhsm_available() {
        eprintln!("SKIPPED (pkcs11 driver): SoftHSMv2 is not installed (Debian package softhsm2)");
        return;
    }
    let device = common::SoftHsmDevice::new("states");
    let mut deployment = Deployment::init();
    deployment.use_pkcs11_device("states", &device);
    deployment.run_server_with_env(&device.env());
    let mut env = device.env();
    env.push((DRIVER, OsString::from("pkcs11")));
    suite(&mut deployment, &env);
    let mut env = device.env();
    env.push(("KEY_STATES_DEVICE_PIN", OsString::from(&device.pin)));
    env.push(("KEY_STATES_OUT", deployment.path("key-states.txt").into()));
    env.push(("KEY_STATES_PHASE", OsString::from("device")));
    run_in_child(TEST, &env);
}

/// The suite in two children, the server restarted between them, then the
/// audit log; `extra` goes to the children and the server.
fn suite(deployment: &mut Deployment, extra: &[(&'static str, OsString)]) {
    let out = deployment.path("key-states.txt");
    let module_env = deployment.module_env();
    let env = |phase: &str| {
        let mut env = module_env.clone();
        env.extend(extra.iter().cloned());
        env.push(("KEY_STATES_OUT", OsString::from(&out)));
        env.push(("KEY_STATES_PHASE", OsString::from(phase)));
        env
    };
    run_in_child(TEST, &env("before"));
    assert!(deployment.stop_server().unwrap().success());
    deployment.run_server_with_env(extra);
    run_in_child(TEST, &env("after"));
    assert!(deployment.stop_server().unwrap().success());
    // The audit log: each change with the state asked for and the answer.
    let lines = deployment.audit_export(&["--tenant", "demo"]);
    let set: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"op\":\"C_SetAttributeValue\""))
        .collect();
    for (state, answer) in [
        ("CKS_HSMLINK_DEACTIVATED", "CKR_OK"),
        ("CKS_HSMLINK_COMPROMISED", "CKR_OK"),
        ("CKS_HSMLINK_DESTROYED", "CKR_OK"),
        ("CKS_HSMLINK_ACTIVE", "CKR_OK"),
        ("CKS_HSMLINK_PRE_ACTIVATION", "CKR_ATTRIBUTE_VALUE_INVALID"),
        ("CKS_HSMLINK_ACTIVE", "CKR_ATTRIBUTE_READ_ONLY"),
        ("CKS_HSMLINK_DEACTIVATED", "CKR_ATTRIBUTE_READ_ONLY"),
    ] {
        let detail = format!("\"detail\":\"CKA_HSMLINK_KEY_STATE={state}\"");
        let rv_name = format!("\"rv_name\":\"{answer}\"");
        assert!(
            set.iter().any(|l| l.contains(&detail)
                && l.contains(&rv_name)
                && l.contains("\"objects\":[")),
            "no record of {state} answered {answer}:\n{}",
            set.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // A copy that asks for a state has it on record too.
    assert!(
        lines.iter().any(|l| l.contains("\"op\":\"C_CopyObject\"")
            && l.contains("CKA_HSMLINK_KEY_STATE=CKS_HSMLINK_COMPROMISED")),
        "no copy record with its state"
    );
    // A label change carries no state detail.
    assert!(
        set.iter().any(|l| !l.contains("\"detail\"")),
        "every C_SetAttributeValue record names a state"
    );
    let (ok, _, stderr) = deployment.server_command(&["audit", "verify"]);
    assert!(ok, "audit verify: {stderr}");
}
