//! The `pkcs11` driver end to end: a tenant slot on a SoftHSMv2 token (the
//! "vendor HSM"), served through the real .so and a real server: token
//! initialisation and PINs (hsmlink's), AES/RSA/EC keys made on the device,
//! encryption, signatures (hash-then-sign multi-part included), find and
//! attributes, private objects, session objects, a restart keeping
//! handles, and the keys checked on SoftHSMv2 directly, not through
//! hsmlink.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;

use common::{
    Deployment, SOFTHSM_MODULE, SoftHsmDevice, in_child, load_module, load_state, pin,
    run_in_child, rv, save_state, softhsm_available, unhex,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "user-pin-5678";
const MESSAGE: &[u8] = b"a message signed on the device, in three parts";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find_one(session: &Session, template: &[Attribute]) -> ObjectHandle {
    let found = session.find_objects(template).unwrap();
    assert_eq!(found.len(), 1, "{template:?}");
    found[0]
}

fn label(session: &Session, object: ObjectHandle) -> String {
    match session
        .get_attributes(object, &[AttributeType::Label])
        .unwrap()
        .as_slice()
    {
        [Attribute::Label(l)] => String::from_utf8(l.clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn pss() -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    }
}

/// The deployment of these tests: the tenant's slot 0 on a fresh SoftHSMv2
/// token, the server started with `SOFTHSM2_CONF` pointing at it. `None`
/// (after saying why) without SoftHSMv2.
fn deployment() -> Option<(Deployment, SoftHsmDevice)> {
    if !softhsm_available() {
        eprintln!("SKIPPED: {SOFTHSM_MODULE} is not installed (Debian package softhsm2)");
        return None;
    }
    let device = SoftHsmDevice::new("dev0");
    let mut deployment = Deployment::init();
    deployment.use_pkcs11_device("dev0", &device);
    // The [[devices]] table is the file's last: a short wait for a device
    // session, for the pool test.
    let config = deployment.path("server.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("session_wait_ms = 300\n");
    std::fs::write(&config, text).unwrap();
    deployment.run_server_with_env(&device.env());
    Some((deployment, device))
}

fn child_env(deployment: &Deployment, device: &SoftHsmDevice) -> Vec<(&'static str, OsString)> {
    let mut env = deployment.module_env();
    env.extend(device.env());
    env.push((
        "HSMLINK_TEST_STATE",
        deployment.path("test-state").into_os_string(),
    ));
    env.push(("HSMLINK_TEST_DEVICE_PIN", device.pin.clone().into()));
    env
}

/// Token initialised by its SO, the user PIN set and changed: a user session.
fn ready_user_session(pkcs11: &Pkcs11) -> Session {
    let slot = pkcs11.get_all_slots().unwrap()[0];
    pkcs11
        .init_token(slot, &pin(SO_PIN), "tenant on a device")
        .unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    session.init_pin(&pin("first-pin")).unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&pin("first-pin")))
        .unwrap();
    session.set_pin(&pin("first-pin"), &pin(USER_PIN)).unwrap();
    session
}

/// TDES through the driver: a key of known value (NIST SP 800-67 Rev. 1
/// appendix B, whose plaintext reads "qufck") and keys generated on the
/// device, ECB, CBC and CBC-PAD single- and multi-part, the partial-block
/// code. Session objects: the counts of the later runs stay.
fn tdes_on_the_device(session: &Session) {
    let known = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::DES3),
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Value(unhex("0123456789abcdef23456789abcdef01456789abcdef0123")),
        ])
        .unwrap();
    let ct = session
        .encrypt(&Mechanism::Des3Ecb, known, b"The qufck brown fox jump")
        .unwrap();
    assert_eq!(hex(&ct), "a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900");
    for generate in [Mechanism::Des2KeyGen, Mechanism::Des3KeyGen] {
        let key = session
            .generate_key(
                &generate,
                &[
                    Attribute::Token(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        for mechanism in [
            Mechanism::Des3Ecb,
            Mechanism::Des3Cbc([4u8; 8]),
            Mechanism::Des3CbcPad([5u8; 8]),
        ] {
            let plain = [9u8; 24];
            let single = session.encrypt(&mechanism, key, &plain).unwrap();
            session.encrypt_init(&mechanism, key).unwrap();
            let mut multi = session.encrypt_update(&plain[..5]).unwrap();
            multi.extend(session.encrypt_update(&plain[5..]).unwrap());
            multi.extend(session.encrypt_final().unwrap());
            assert_eq!(multi, single, "{mechanism:?}");
            assert_eq!(session.decrypt(&mechanism, key, &single).unwrap(), plain);
        }
        assert_eq!(
            rv(session.encrypt(&Mechanism::Des3Cbc([4u8; 8]), key, &[1u8; 12])),
            RvError::DataLenRange
        );
    }
}

/// First run: everything through hsmlink; handles and a signature saved.
fn through_hsmlink() {
    let pkcs11 = load_module();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let info = pkcs11.get_token_info(slot).unwrap();
    assert_eq!(info.model(), "pkcs11");
    assert!(!info.token_initialized(), "a fresh partition is clean");

    // The slot lists what the device has and hsmlink carries, nothing else.
    let listed = pkcs11.get_mechanism_list(slot).unwrap();
    for m in [
        MechanismType::AES_GCM,
        MechanismType::AES_CBC_PAD,
        MechanismType::RSA_PKCS,
        MechanismType::RSA_PKCS_PSS,
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::ECDSA,
        MechanismType::SHA256,
    ] {
        assert!(listed.contains(&m), "{m} is not listed: {listed:?}");
    }
    // TDES is carried (cryptoki's list drops the numbers it has no name
    // for, DES3_CBC among them). SoftHSMv2 has single DES, hsmlink does not
    // carry it; it has no SM algorithms.
    for m in [MechanismType::DES3_KEY_GEN, MechanismType::DES3_ECB] {
        assert!(listed.contains(&m), "{m} is not listed: {listed:?}");
    }
    for m in [MechanismType::DES_KEY_GEN, MechanismType::DES_CBC] {
        assert!(!listed.contains(&m), "{m} is listed");
        assert_eq!(
            rv(pkcs11.get_mechanism_info(slot, m)),
            RvError::MechanismInvalid
        );
    }
    assert!(!listed.iter().any(|m| (u64::from(*m) >> 16) == 0xC853));

    let session = ready_user_session(&pkcs11);
    let mut state = BTreeMap::new();

    // ---- AES: generated on the device, GCM and multi-part CBC-PAD ----
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"aes1".to_vec()),
                Attribute::Id(b"a1".to_vec()),
            ],
        )
        .unwrap();
    let attrs = session
        .get_attributes(
            aes,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Private,
                AttributeType::Id,
            ],
        )
        .unwrap();
    // hsmlink's defaults, and the tenant's own CKA_ID.
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Private(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Id(b"a1".to_vec())), "{attrs:?}");
    let info = session
        .get_attribute_info(aes, &[AttributeType::Value, AttributeType::Modulus])
        .unwrap();
    assert!(matches!(info[0], AttributeInfo::Sensitive), "{info:?}");
    assert!(matches!(info[1], AttributeInfo::TypeInvalid), "{info:?}");
    let mut iv = [7u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"header", 128.into()).unwrap());
    let ciphertext = session.encrypt(&gcm, aes, b"attack at dawn").unwrap();
    assert_eq!(ciphertext.len(), 14 + 16);
    assert_eq!(
        session.decrypt(&gcm, aes, &ciphertext).unwrap(),
        b"attack at dawn"
    );
    let cbc = Mechanism::AesCbcPad([3u8; 16]);
    session.encrypt_init(&cbc, aes).unwrap();
    let mut multi = session.encrypt_update(&[1u8; 20]).unwrap();
    multi.extend(session.encrypt_update(&[2u8; 20]).unwrap());
    multi.extend(session.encrypt_final().unwrap());
    let mut plain = [1u8; 20].to_vec();
    plain.extend([2u8; 20]);
    assert_eq!(session.encrypt(&cbc, aes, &plain).unwrap(), multi);
    assert_eq!(session.decrypt(&cbc, aes, &multi).unwrap(), plain);
    state.insert("aes".to_owned(), aes.handle().to_string());
    state.insert("aes_ct".to_owned(), hex(&multi));

    // ---- TDES on the device (session objects): SP 800-67's answer ----
    tdes_on_the_device(&session);

    // ---- RSA: PKCS #1 v1.5 and PSS, hash-then-sign multi-part ----
    let (rsa_public, rsa_private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Label(b"rsa1".to_vec()),
                Attribute::Id(b"r1".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Label(b"rsa1".to_vec()),
                Attribute::Id(b"r1".to_vec()),
            ],
        )
        .unwrap();
    let single = session
        .sign(&Mechanism::Sha256RsaPkcs, rsa_private, MESSAGE)
        .unwrap();
    assert_eq!(single.len(), 256);
    session
        .sign_init(&Mechanism::Sha256RsaPkcs, rsa_private)
        .unwrap();
    for part in MESSAGE.chunks(16) {
        session.sign_update(part).unwrap();
    }
    let multi = session.sign_final().unwrap();
    assert_eq!(multi, single, "PKCS #1 v1.5 is deterministic");
    session
        .verify(&Mechanism::Sha256RsaPkcs, rsa_public, MESSAGE, &multi)
        .unwrap();
    assert_eq!(
        rv(session.verify(&Mechanism::Sha256RsaPkcs, rsa_public, b"other", &multi)),
        RvError::SignatureInvalid
    );
    let pss_signature = session
        .sign(&Mechanism::Sha256RsaPkcsPss(pss()), rsa_private, MESSAGE)
        .unwrap();
    session
        .verify(
            &Mechanism::Sha256RsaPkcsPss(pss()),
            rsa_public,
            MESSAGE,
            &pss_signature,
        )
        .unwrap();
    state.insert("rsa_public".to_owned(), rsa_public.handle().to_string());
    state.insert("rsa_private".to_owned(), rsa_private.handle().to_string());
    state.insert("rsa_signature".to_owned(), hex(&multi));

    // ---- EC P-256: ECDSA over a hash, and raw ----
    let p256 = common::P256_PARAMS.to_vec();
    let (ec_public, ec_private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(p256),
                Attribute::Verify(true),
                Attribute::Label(b"ec1".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Label(b"ec1".to_vec()),
            ],
        )
        .unwrap();
    let ecdsa = session
        .sign(&Mechanism::EcdsaSha256, ec_private, MESSAGE)
        .unwrap();
    assert_eq!(ecdsa.len(), 64);
    session
        .verify(&Mechanism::EcdsaSha256, ec_public, MESSAGE, &ecdsa)
        .unwrap();
    let raw = session
        .sign(&Mechanism::Ecdsa, ec_private, &[5u8; 32])
        .unwrap();
    session
        .verify(&Mechanism::Ecdsa, ec_public, &[5u8; 32], &raw)
        .unwrap();
    state.insert("ec_private".to_owned(), ec_private.handle().to_string());

    // ---- Digest, random ----
    let digest = session.digest(&Mechanism::Sha256, b"abc").unwrap();
    assert_eq!(
        hex(&digest),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(session.generate_random_vec(48).unwrap().len(), 48);

    // ---- Find and attributes: the tenant's CKA_ID, never the device's ----
    let by_id = session
        .find_objects(&[Attribute::Id(b"r1".to_vec())])
        .unwrap();
    assert_eq!(by_id.len(), 2);
    assert!(by_id.contains(&rsa_public) && by_id.contains(&rsa_private));
    let private_rsa = find_one(
        &session,
        &[
            Attribute::Id(b"r1".to_vec()),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
        ],
    );
    assert_eq!(private_rsa, rsa_private);
    assert_eq!(
        find_one(&session, &[Attribute::Label(b"aes1".to_vec())]),
        aes
    );
    assert!(
        session
            .find_objects(&[Attribute::Id(b"nope".to_vec())])
            .unwrap()
            .is_empty()
    );
    // A sensitive value is no find criterion.
    assert!(
        session
            .find_objects(&[Attribute::Value(vec![0u8; 32])])
            .unwrap()
            .is_empty()
    );

    // ---- Private objects are the logged-in user's ----
    let secret_data = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(b"secret note".to_vec()),
            Attribute::Value(b"only for the user".to_vec()),
        ])
        .unwrap();
    let public_data = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Label(b"public note".to_vec()),
            Attribute::Value(b"for anyone".to_vec()),
        ])
        .unwrap();
    state.insert("public_data".to_owned(), public_data.handle().to_string());
    state.insert("secret_data".to_owned(), secret_data.handle().to_string());
    session.logout().unwrap();
    let visible = session.find_objects(&[]).unwrap();
    assert!(visible.contains(&public_data) && visible.contains(&rsa_public));
    assert!(!visible.contains(&secret_data) && !visible.contains(&aes));
    assert_eq!(
        rv(session.get_attributes(secret_data, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );
    assert_eq!(label(&session, public_data), "public note");
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    assert_eq!(label(&session, secret_data), "secret note");

    // ---- Session objects: the application's, gone with their session ----
    let other = pkcs11.open_rw_session(slot).unwrap();
    let ephemeral = other
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(16.into()),
                Attribute::Encrypt(true),
                Attribute::Label(b"ephemeral".to_vec()),
            ],
        )
        .unwrap();
    let note = other
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(false),
            Attribute::Label(b"session note".to_vec()),
        ])
        .unwrap();
    // Visible from the application's other session, usable there.
    assert_eq!(label(&session, note), "session note");
    let mut iv = [1u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    session.encrypt(&gcm, ephemeral, b"x").unwrap();
    // A read-only session writes no token object.
    let read_only = pkcs11.open_ro_session(slot).unwrap();
    assert_eq!(
        rv(read_only
            .create_object(&[Attribute::Class(ObjectClass::DATA), Attribute::Token(true),])),
        RvError::SessionReadOnly
    );
    drop(read_only);
    drop(other); // C_CloseSession
    for gone in [note, ephemeral] {
        assert_eq!(
            rv(session.get_attributes(gone, &[AttributeType::Label])),
            RvError::ObjectHandleInvalid
        );
    }

    // ---- Destroy ----
    let scratch = session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Label(b"scratch".to_vec()),
        ])
        .unwrap();
    session.destroy_object(scratch).unwrap();
    assert_eq!(
        rv(session.get_attributes(scratch, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );
    save_state(&state);
}

/// On SoftHSMv2 directly: the keys are there, under hsmlink's ids; the
/// multi-part signature made through hsmlink verifies with the device's own
/// `CKM_SHA256_RSA_PKCS`; session objects and destroyed ones are not.
fn on_the_device() {
    let state = load_state();
    let softhsm = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    softhsm
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = softhsm
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| softhsm.get_token_info(*s).unwrap().label() == "dev0")
        .expect("the device token");
    let session = softhsm.open_ro_session(slot).unwrap();
    let device_pin = std::env::var("HSMLINK_TEST_DEVICE_PIN").unwrap();
    session
        .login(UserType::User, Some(&pin(&device_pin)))
        .unwrap();
    let mut by_label: BTreeMap<String, Vec<(ObjectHandle, Vec<u8>)>> = BTreeMap::new();
    for object in session.find_objects(&[]).unwrap() {
        let attrs = session
            .get_attributes(
                object,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Application,
                ],
            )
            .unwrap();
        let (mut l, mut id, mut application, mut data) = (String::new(), vec![], vec![], false);
        for a in attrs {
            match a {
                Attribute::Class(c) => data = c == ObjectClass::DATA,
                Attribute::Label(v) => l = String::from_utf8(v).unwrap(),
                Attribute::Id(v) => id = v,
                Attribute::Application(v) => application = v,
                _ => {}
            }
        }
        // hsmlink's uid: in CKA_ID, or CKA_APPLICATION for data objects.
        let tag = if data { application } else { id };
        assert!(tag.starts_with(b"hl1:"), "{l}: {tag:?}");
        by_label.entry(l).or_default().push((object, tag));
    }
    let labels: Vec<&str> = by_label.keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        ["aes1", "ec1", "public note", "rsa1", "secret note"],
        "token objects only: no session object, nothing destroyed"
    );
    assert_eq!(by_label["rsa1"].len(), 2);
    assert_eq!(by_label["ec1"].len(), 2);
    // "hl1:" ‖ 16-byte uid ‖ the tenant's CKA_ID.
    for (_, id) in &by_label["rsa1"] {
        assert_eq!(id.len(), 4 + 16 + 2);
        assert!(id.ends_with(b"r1"));
    }
    let aes = by_label["aes1"][0].0;
    let attrs = session
        .get_attributes(
            aes,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Local,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(
        attrs.contains(&Attribute::Local(true)),
        "generated on the device"
    );
    let public = by_label["rsa1"]
        .iter()
        .map(|(o, _)| *o)
        .find(|o| {
            session
                .get_attributes(*o, &[AttributeType::Class])
                .unwrap()
                .contains(&Attribute::Class(ObjectClass::PUBLIC_KEY))
        })
        .unwrap();
    session
        .verify(
            &Mechanism::Sha256RsaPkcs,
            public,
            MESSAGE,
            &unhex(&state["rsa_signature"]),
        )
        .expect("the device verifies hsmlink's hash-then-sign signature");
}

/// After a restart: the same handles name the same objects.
fn after_restart() {
    let state = load_state();
    // ObjectHandle has no public constructor: match the saved numbers
    // against what the token lists.
    let handle = |name: &str| -> u64 { state[name].parse().unwrap() };
    let pkcs11 = load_module();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let all = session.find_objects(&[]).unwrap();
    let object = |name: &str| {
        let wanted = handle(name);
        *all.iter()
            .find(|o| o.handle() == wanted)
            .unwrap_or_else(|| panic!("{name} ({wanted}) is gone after the restart"))
    };
    assert_eq!(all.len(), 7, "aes, 2 rsa, 2 ec, 2 data objects");
    assert_eq!(label(&session, object("aes")), "aes1");
    assert_eq!(label(&session, object("rsa_private")), "rsa1");
    assert_eq!(label(&session, object("public_data")), "public note");
    assert_eq!(label(&session, object("secret_data")), "secret note");
    assert_eq!(
        session
            .decrypt(
                &Mechanism::AesCbcPad([3u8; 16]),
                object("aes"),
                &unhex(&state["aes_ct"])
            )
            .unwrap()
            .len(),
        40
    );
    let signature = session
        .sign(&Mechanism::Sha256RsaPkcs, object("rsa_private"), MESSAGE)
        .unwrap();
    assert_eq!(hex(&signature), state["rsa_signature"]);
    session
        .verify(
            &Mechanism::Sha256RsaPkcs,
            object("rsa_public"),
            MESSAGE,
            &signature,
        )
        .unwrap();
    // C_InitToken wipes the partition's objects on the device.
    drop(session);
    pkcs11.init_token(slot, &pin(SO_PIN), "wiped").unwrap();
    let session = pkcs11.open_ro_session(slot).unwrap();
    assert!(session.find_objects(&[]).unwrap().is_empty());
}

/// Nothing of hsmlink's is left on the device after `C_InitToken`.
fn wiped_on_the_device() {
    let softhsm = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    softhsm
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = softhsm.get_slots_with_token().unwrap()[0];
    let session = softhsm.open_ro_session(slot).unwrap();
    let device_pin = std::env::var("HSMLINK_TEST_DEVICE_PIN").unwrap();
    session
        .login(UserType::User, Some(&pin(&device_pin)))
        .unwrap();
    assert!(session.find_objects(&[]).unwrap().is_empty());
}

#[test]
fn pkcs11_driver_end_to_end() {
    if in_child() {
        match std::env::var("HSMLINK_TEST_PHASE").unwrap().as_str() {
            "through" => through_hsmlink(),
            "device" => on_the_device(),
            "restart" => after_restart(),
            "wiped" => wiped_on_the_device(),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let Some((mut deployment, device)) = deployment() else {
        return;
    };
    let env = child_env(&deployment, &device);
    let with_phase = |phase: &str| {
        let mut env = env.clone();
        env.push(("HSMLINK_TEST_PHASE", phase.into()));
        env
    };
    run_in_child("pkcs11_driver_end_to_end", &with_phase("through"));
    run_in_child("pkcs11_driver_end_to_end", &with_phase("device"));
    assert!(deployment.stop_server().is_some_and(|s| s.success()));
    deployment.run_server_with_env(&device.env());
    run_in_child("pkcs11_driver_end_to_end", &with_phase("restart"));
    run_in_child("pkcs11_driver_end_to_end", &with_phase("wiped"));
    let log = deployment.server_log();
    for secret in [device.pin.as_str(), USER_PIN, SO_PIN] {
        assert!(!log.contains(secret), "a PIN in the server log");
    }
}

/// Key management and object calls on the device: wrap and unwrap (AES key
/// wrap), ECDH derivation, RSA-OAEP, `C_DigestKey`, copies, attribute
/// changes, and `CKA_ALLOWED_MECHANISMS`.
#[test]
fn pkcs11_driver_key_management_and_objects() {
    if in_child() {
        let pkcs11 = load_module();
        let session = ready_user_session(&pkcs11);
        let aes = |extra: &[Attribute]| {
            let mut template = vec![
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ];
            template.extend_from_slice(extra);
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .unwrap()
        };
        // ---- Wrap and unwrap ----
        // A key-encryption key wraps and unwraps only (secure templates:
        // key transport is a role of its own).
        let kek = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                ],
            )
            .unwrap();
        let target = aes(&[Attribute::Extractable(true)]);
        let wrapped = session
            .wrap_key(&Mechanism::AesKeyWrap, kek, target)
            .unwrap();
        assert_eq!(wrapped.len(), 40);
        let unwrapped = session
            .unwrap_key(
                &Mechanism::AesKeyWrap,
                kek,
                &wrapped,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Label(b"unwrapped".to_vec()),
                ],
            )
            .unwrap();
        let cbc = Mechanism::AesCbcPad([9u8; 16]);
        let ciphertext = session.encrypt(&cbc, target, b"same key").unwrap();
        assert_eq!(
            session.decrypt(&cbc, unwrapped, &ciphertext).unwrap(),
            b"same key"
        );
        assert_eq!(label(&session, unwrapped), "unwrapped");

        // ---- ECDH: both sides derive the same secret ----
        let p256 = common::P256_PARAMS.to_vec();
        let pair = || {
            session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[Attribute::Token(false), Attribute::EcParams(p256.clone())],
                    &[Attribute::Token(false), Attribute::Derive(true)],
                )
                .unwrap()
        };
        let point = |public| match session
            .get_attributes(public, &[AttributeType::EcPoint])
            .unwrap()
            .as_slice()
        {
            [Attribute::EcPoint(p)] => p.clone(),
            other => panic!("{other:?}"),
        };
        let ((a_public, a_private), (b_public, b_private)) = (pair(), pair());
        let secret_template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let derive = |private, public| {
            let their_point = point(public);
            let params = Ecdh1DeriveParams::new(EcKdf::null(), &their_point);
            let key = session
                .derive_key(&Mechanism::Ecdh1Derive(params), private, &secret_template)
                .unwrap();
            match session
                .get_attributes(key, &[AttributeType::Value])
                .unwrap()
                .as_slice()
            {
                [Attribute::Value(v)] => v.clone(),
                other => panic!("{other:?}"),
            }
        };
        let ab = derive(a_private, b_public);
        assert_eq!(ab.len(), 32);
        assert_eq!(ab, derive(b_private, a_public));

        // ---- RSA-OAEP ----
        let (rsa_public, rsa_private) = session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::ModulusBits(2048.into()),
                    Attribute::Encrypt(true),
                ],
                &[
                    Attribute::Token(false),
                    Attribute::Decrypt(true),
                    Attribute::Sign(false),
                ],
            )
            .unwrap();
        let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA1,
            PkcsMgfType::MGF1_SHA1,
            PkcsOaepSource::empty(),
        ));
        let ciphertext = session.encrypt(&oaep, rsa_public, b"oaep secret").unwrap();
        assert_eq!(ciphertext.len(), 256);
        assert_eq!(
            session.decrypt(&oaep, rsa_private, &ciphertext).unwrap(),
            b"oaep secret"
        );

        // ---- C_DigestKey ----
        let value = b"a secret value of 32 bytes......".to_vec();
        let generic = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Value(value.clone()),
            ])
            .unwrap();
        session.digest_init(&Mechanism::Sha256).unwrap();
        session.digest_update(b"prefix").unwrap();
        session.digest_key(generic).unwrap();
        let keyed = session.digest_final().unwrap();
        let mut whole = b"prefix".to_vec();
        whole.extend(&value);
        assert_eq!(keyed, session.digest(&Mechanism::Sha256, &whole).unwrap());

        // ---- Copies and attribute changes ----
        let data = session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Label(b"original".to_vec()),
                Attribute::Application(b"app".to_vec()),
                Attribute::Value(b"v".to_vec()),
            ])
            .unwrap();
        let copy = session
            .copy_object(data, &[Attribute::Label(b"copy".to_vec())])
            .unwrap();
        assert_ne!(copy, data);
        assert_eq!(label(&session, copy), "copy");
        // The tenant's CKA_APPLICATION, on both, and a find on it.
        let by_app = session
            .find_objects(&[Attribute::Application(b"app".to_vec())])
            .unwrap();
        assert_eq!(by_app.len(), 2, "{by_app:?}");
        session
            .update_attributes(data, &[Attribute::Label(b"renamed".to_vec())])
            .unwrap();
        assert_eq!(label(&session, data), "renamed");
        session
            .update_attributes(target, &[Attribute::Id(b"new-id".to_vec())])
            .unwrap();
        assert_eq!(
            find_one(&session, &[Attribute::Id(b"new-id".to_vec())]),
            target
        );
        assert!(matches!(
            session
                .get_attributes(target, &[AttributeType::Id])
                .unwrap()
                .as_slice(),
            [Attribute::Id(id)] if id == b"new-id"
        ));
        // hsmlink's CKA_UNIQUE_ID: read-only, the same for the life of the
        // object, different for its copy.
        let unique = |o| match session
            .get_attributes(o, &[AttributeType::UniqueId])
            .unwrap()
            .as_slice()
        {
            [Attribute::UniqueId(u)] => u.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(unique(data).len(), 32);
        assert_ne!(unique(data), unique(copy));

        // ---- CKA_ALLOWED_MECHANISMS ----
        let restricted = aes(&[Attribute::AllowedMechanisms(vec![
            MechanismType::AES_CBC_PAD,
        ])]);
        session.encrypt(&cbc, restricted, b"ok").unwrap();
        let mut iv = [0u8; 12];
        let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
        assert_eq!(
            rv(session.encrypt(&gcm, restricted, b"no")),
            RvError::KeyFunctionNotPermitted
        );
        // A key used for what it may not do: the device says so.
        assert_eq!(
            rv(session.sign(&Mechanism::Sha256RsaPkcs, rsa_private, b"x")),
            RvError::KeyFunctionNotPermitted
        );

        // ---- The device session pool (max_sessions = 4) ----
        // Four multi-part operations hold the four device sessions; a fifth
        // call waits session_wait_ms, then gets CKR_DEVICE_MEMORY; it works
        // once an operation ends.
        let slot = pkcs11.get_all_slots().unwrap()[0];
        let sessions: Vec<Session> = (0..5)
            .map(|_| pkcs11.open_rw_session(slot).unwrap())
            .collect();
        // (The module defers C_EncryptInit: the init reaches the device
        // with the first update.)
        for s in &sessions[..4] {
            s.encrypt_init(&cbc, target).unwrap();
            s.encrypt_update(b"some data").unwrap();
        }
        sessions[4].encrypt_init(&cbc, target).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            rv(sessions[4].encrypt_update(b"some data")),
            RvError::DeviceMemory
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        sessions[0].encrypt_final().unwrap();
        sessions[4].encrypt_init(&cbc, target).unwrap();
        sessions[4].encrypt_update(b"some data").unwrap();
        // Operations given up (sessions closed mid-operation) free their
        // device sessions too.
        drop(sessions);
        assert_eq!(session.encrypt(&cbc, target, b"x").unwrap().len(), 16);
        return;
    }
    let Some((deployment, device)) = deployment() else {
        return;
    };
    run_in_child(
        "pkcs11_driver_key_management_and_objects",
        &child_env(&deployment, &device),
    );
}

/// A device PIN the device refuses stops the server with a line naming the
/// device, never the PIN.
#[test]
fn a_wrong_device_pin_stops_the_server_clearly() {
    if in_child() {
        return;
    }
    if !softhsm_available() {
        eprintln!("SKIPPED: {SOFTHSM_MODULE} is not installed (Debian package softhsm2)");
        return;
    }
    let mut device = SoftHsmDevice::new("dev0");
    let deployment = Deployment::init();
    device.pin = "not-the-device-pin".to_owned();
    deployment.use_pkcs11_device("dev0", &device);
    let (config, conf) = (deployment.path("server.toml"), device.conf());
    let out = common::within(std::time::Duration::from_secs(60), move || {
        std::process::Command::new(common::server_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("SOFTHSM2_CONF", conf)
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("device dev0"), "{stderr}");
    assert!(stderr.contains("CKR_PIN_INCORRECT"), "{stderr}");
    assert!(!stderr.contains("not-the-device-pin"), "{stderr}");
}
