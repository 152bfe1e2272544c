//! TR-34 (ASC X9 TR 34-2019) remote key loading through the real .so and a
//! real server: `C_UnwrapKey` with `CKM_HSMLINK_TR34` under a key-receiving
//! key generated in the partition. The key distribution host is an
//! independent implementation (`tests/scripts/tr34_kdh.py`: asn1crypto and
//! pyca/cryptography from PyPI, in a virtual environment the test makes);
//! its certificates and CRL are OpenSSL's. The imported keys' values are
//! checked with OpenSSL (AES) and psec (a TDES key exported again in a
//! TR-31 block and read by psec).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Deployment, SO_PIN, hex, in_child, load_module, run_in_child, rv, unhex};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};

const PIN: &str = "user-pin-5678";
const CKM_HSMLINK_TR31: u64 = 0xC853_0200;
const CKM_HSMLINK_TR34: u64 = 0xC853_0201;
const CKA_HSMLINK_KEYBLOCK_HEADER: u64 = 0xC853_0300;
/// Where the child finds the parent's virtual environment and PKI.
const PYTHON_ENV: &str = "HSMLINK_TEST_TR34_PYTHON";
const PKI_ENV: &str = "HSMLINK_TEST_TR34_PKI";

fn tr34(nonce: Option<&[u8; 16]>) -> Mechanism<'_> {
    let ty = MechanismType::new_vendor_defined(CKM_HSMLINK_TR34).unwrap();
    Mechanism::VendorDefined(match nonce {
        Some(n) => VendorDefinedMechanism::new::<[u8; 16]>(ty, Some(n)),
        None => VendorDefinedMechanism::new::<()>(ty, None),
    })
}

fn pki() -> PathBuf {
    PathBuf::from(std::env::var_os(PKI_ENV).expect("PKI directory from the parent"))
}

// ---- the parent: PKI and virtual environment ----

/// A CA (`ca`), KDH 1 (`kdh`, serial 7) and KDH 2 (`kdh2`, serial 8,
/// revoked on the CA's CRL `crl.der`) under it, and a rogue CA with its own
/// KDH (`rogue-kdh`) under the same name as KDH 1.
fn make_pki(dir: &Path) {
    let ca = |name: &str, cn: &str| {
        common::openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-subj",
                &format!("/O=hsmlink tests/CN={cn}"),
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
        );
    };
    ca("ca", "TR-34 test CA KDH");
    ca("rogue", "TR-34 test CA KDH");
    let issue = |name: &str, issuer: &str, serial: &str| {
        common::openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/O=hsmlink tests/CN=KDH",
            ],
        );
        common::openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{issuer}.pem"),
                "-CAkey",
                &format!("{issuer}.key"),
                "-set_serial",
                serial,
                "-days",
                "30",
                "-out",
                &format!("{name}.pem"),
            ],
        );
    };
    issue("kdh", "ca", "7");
    issue("kdh2", "ca", "8");
    issue("rogue-kdh", "rogue", "7");
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 30\n",
    )
    .unwrap();
    common::openssl(
        dir,
        &[
            "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-revoke",
            "kdh2.pem",
        ],
    );
    common::openssl(
        dir,
        &[
            "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-gencrl", "-out",
            "crl.pem",
        ],
    );
    common::openssl(
        dir,
        &[
            "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
        ],
    );
    for name in ["ca", "kdh", "rogue"] {
        common::openssl(
            dir,
            &[
                "x509",
                "-in",
                &format!("{name}.pem"),
                "-outform",
                "DER",
                "-out",
                &format!("{name}.der"),
            ],
        );
    }
}

// ---- the child: the KDH's side, run from the test ----

fn python(args: &[&str]) -> String {
    let python = std::env::var_os(PYTHON_ENV).expect("python from the parent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tr34_kdh.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .current_dir(pki())
        .output()
        .expect("run the KDH");
    assert!(
        out.status.success(),
        "KDH failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The receiver's public key, as the KDH gets it from the KRD's credential.
struct Receiver {
    key: ObjectHandle,
    modulus: String,
    exponent: String,
}

/// A key token from KDH `kdh` (files `kdh.pem`/`kdh.key` in the PKI
/// directory) for `receiver`, with `extra` options of the KDH script.
fn token(kdh: &str, receiver: &Receiver, key: &[u8], header: &str, extra: &[&str]) -> Vec<u8> {
    let out = pki().join(format!("token-{}.der", std::process::id()));
    let (cert, secret) = (format!("{kdh}.pem"), format!("{kdh}.key"));
    let key_hex = hex(key);
    let mut args = vec![
        "token",
        "--kdh-cert",
        &cert,
        "--kdh-key",
        &secret,
        "--krd-modulus",
        &receiver.modulus,
        "--krd-exponent",
        &receiver.exponent,
        "--key",
        &key_hex,
        "--header",
        header,
        "--out",
    ];
    let out_str = out.to_str().unwrap().to_owned();
    args.push(&out_str);
    args.extend_from_slice(extra);
    python(&args);
    std::fs::read(&out).unwrap()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// psec's reading of a TR-31 `block` under `kbpk`: header fields and key.
fn psec_unwrap(kbpk: &[u8], block: &[u8]) -> (String, Vec<u8>) {
    let python = std::env::var_os(PYTHON_ENV).expect("python from the parent");
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import sys, psec.tr31 as t\n\
             h, k = t.unwrap(bytes.fromhex(sys.argv[1]), sys.argv[2])\n\
             print(h.version_id + h.key_usage + h.algorithm + h.mode_of_use + h.exportability, k.hex())",
        )
        .args([&hex(kbpk), std::str::from_utf8(block).unwrap()])
        .output()
        .expect("run psec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (fields, key) = out.trim().split_once(' ').unwrap();
    (fields.to_owned(), unhex(key))
}

/// A certificate object from `name.der` of the PKI directory; `trusted`
/// needs the SO.
fn store_certificate(session: &Session, name: &str, trusted: bool) -> ObjectHandle {
    let der = std::fs::read(pki().join(format!("{name}.der"))).unwrap();
    let subject = unhex(&python(&["subject", &format!("{name}.pem")]));
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(name.as_bytes().to_vec()),
            Attribute::Subject(subject),
            Attribute::Value(der),
            Attribute::Trusted(trusted),
        ])
        .unwrap()
}

fn login(session: &Session, who: UserType, pin: &str) {
    session.logout().unwrap();
    session.login(who, Some(&common::pin(pin))).unwrap();
}

/// The partition's key-receiving key: RSA-2048, unwrap only.
fn receiver(session: &Session) -> Receiver {
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Verify(false),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Unwrap(true),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
            ],
        )
        .unwrap();
    let attrs = session
        .get_attributes(
            public,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .unwrap();
    let (mut modulus, mut exponent) = (String::new(), String::new());
    for a in attrs {
        match a {
            Attribute::Modulus(m) => modulus = hex(&m),
            Attribute::PublicExponent(e) => exponent = hex(&e),
            _ => {}
        }
    }
    Receiver {
        key: private,
        modulus,
        exponent,
    }
}

fn import(
    session: &Session,
    receiver: &Receiver,
    token: &[u8],
    nonce: Option<&[u8; 16]>,
) -> Result<ObjectHandle, Error> {
    session.unwrap_key(
        &tr34(nonce),
        receiver.key,
        token,
        &[Attribute::Token(false)],
    )
}

fn object_count(session: &Session) -> usize {
    session.find_objects(&[]).unwrap().len()
}

fn header_of(session: &Session, key: ObjectHandle) -> Vec<u8> {
    match session
        .get_attributes(
            key,
            &[AttributeType::VendorDefined(CKA_HSMLINK_KEYBLOCK_HEADER)],
        )
        .unwrap()
        .remove(0)
    {
        Attribute::VendorDefined((_, v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_load_from_an_independent_kdh_and_bad_tokens_create_nothing() {
    if in_child() {
        let pkcs11 = load_module();
        let session = common::user_session(&pkcs11, "tr34", PIN);
        // The tenant's SO makes the KDH's CA a trust anchor.
        login(&session, UserType::So, SO_PIN);
        store_certificate(&session, "ca", true);
        login(&session, UserType::User, PIN);
        // The user may store certificates, never trusted ones.
        assert_eq!(
            rv(session.create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(false),
                Attribute::Subject(vec![0x30, 0]),
                Attribute::Value(std::fs::read(pki().join("rogue.der")).unwrap()),
                Attribute::Trusted(true),
            ])),
            RvError::AttributeReadOnly
        );
        let krd = receiver(&session);

        // One pass, AES-128 data key, carried with the KDH's certificate.
        let aes: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(29) ^ 0x5A).collect();
        let signed_now = format!("{}", now());
        let one_pass = token(
            "kdh",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &signed_now,
                "--with-certificate",
            ],
        );
        let key = import(&session, &krd, &one_pass, None).unwrap();
        assert_eq!(
            session
                .encrypt(&Mechanism::AesEcb, key, &[0u8; 16])
                .unwrap(),
            common::openssl_aes_ecb_zero(&aes)
        );
        assert_eq!(header_of(&session, key), b"D0000D0AB00E0000");
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::KeyType,
                    AttributeType::Wrap,
                    AttributeType::Sign,
                ],
            )
            .unwrap();
        for want in [
            Attribute::KeyType(KeyType::AES),
            Attribute::Wrap(false),
            Attribute::Sign(false),
        ] {
            assert!(attrs.contains(&want), "{want:?} not in {attrs:?}");
        }

        // Two pass: a TDES key-encryption key, TDES content encryption, the
        // KDH's certificate stored on the token (not carried). The nonce is
        // the receiver's random number.
        store_certificate(&session, "kdh", false);
        let nonce: [u8; 16] = session.generate_random_vec(16).unwrap().try_into().unwrap();
        let tdes: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(53) ^ 0xC3).collect();
        let two_pass = token(
            "kdh",
            &krd,
            &tdes,
            "A0256K0TB00E0000",
            &["--cipher", "tdes", "--nonce", &hex(&nonce)],
        );
        let before = object_count(&session);
        // Without the nonce, or with another, it is stale.
        assert_eq!(
            rv(import(&session, &krd, &two_pass, None)),
            RvError::WrappedKeyInvalid
        );
        let mut other = nonce;
        other[0] ^= 1;
        assert_eq!(
            rv(import(&session, &krd, &two_pass, Some(&other))),
            RvError::WrappedKeyInvalid
        );
        assert_eq!(object_count(&session), before);
        // The header's usage is the key's: K0 mode B wraps and unwraps,
        // and a template asking to encrypt contradicts it.
        assert_eq!(
            rv(session.unwrap_key(
                &tr34(Some(&nonce)),
                krd.key,
                &two_pass,
                &[Attribute::Token(false), Attribute::Encrypt(true)]
            )),
            RvError::TemplateInconsistent
        );
        let kek = import(&session, &krd, &two_pass, Some(&nonce)).unwrap();
        let attrs = session
            .get_attributes(
                kek,
                &[
                    AttributeType::KeyType,
                    AttributeType::Wrap,
                    AttributeType::Encrypt,
                ],
            )
            .unwrap();
        for want in [
            Attribute::KeyType(KeyType::DES2),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
        ] {
            assert!(attrs.contains(&want), "{want:?} not in {attrs:?}");
        }
        // Its value, seen by psec: exported again in a TR-31 block.
        // The KBPK's value is the test's, so the SO vouches for it.
        let kbpk_value: Vec<u8> = (0u8..32).map(|b| b ^ 0x6D).collect();
        login(&session, UserType::So, SO_PIN);
        let kbpk = session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::Value(kbpk_value.clone()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Trusted(true),
            ])
            .unwrap();
        login(&session, UserType::User, PIN);
        let tr31 = common::vendor(CKM_HSMLINK_TR31);
        let exported = session.wrap_key(&tr31, kbpk, kek).unwrap();
        assert_eq!(
            psec_unwrap(&kbpk_value, &exported),
            ("DK0TBE".to_owned(), tdes)
        );

        // Refused, each creating nothing.
        let before = object_count(&session);
        let stale = token(
            "kdh",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &format!("{}", now() - 7200.0),
            ],
        );
        let rogue = token(
            "rogue-kdh",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &signed_now,
                "--with-certificate",
            ],
        );
        let revoked = token(
            "kdh2",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &signed_now,
                "--with-certificate",
                "--crl",
                "crl.der",
            ],
        );
        let other_host_in_block = token(
            "kdh",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &signed_now,
                "--block-kdh-serial",
                "8",
            ],
        );
        let other_header_in_block = token(
            "kdh",
            &krd,
            &aes,
            "D0000D0AB00E0000",
            &[
                "--cipher",
                "aes128",
                "--signing-time",
                &signed_now,
                "--block-header",
                "D0000D0AB00N0000",
            ],
        );
        let mut altered = one_pass.clone();
        let at = altered.len() / 3;
        altered[at] ^= 0x01;
        let cases: [(&str, &[u8], RvError); 7] = [
            ("signed two hours ago", &stale, RvError::WrappedKeyInvalid),
            ("KDH under another CA", &rogue, RvError::WrappedKeyInvalid),
            ("KDH on its CA's CRL", &revoked, RvError::WrappedKeyInvalid),
            (
                "key block names another KDH",
                &other_host_in_block,
                RvError::WrappedKeyInvalid,
            ),
            (
                "key block header not the signed one",
                &other_header_in_block,
                RvError::WrappedKeyInvalid,
            ),
            ("one byte changed", &altered, RvError::WrappedKeyInvalid),
            (
                "truncated",
                &one_pass[..one_pass.len() - 10],
                RvError::WrappedKeyInvalid,
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(rv(import(&session, &krd, token, None)), want, "{what}");
            assert_eq!(object_count(&session), before, "{what}");
        }
        // Another partition key may not receive: an RSA key without
        // CKA_UNWRAP, and an AES key.
        let no_unwrap = receiver_without_unwrap(&session);
        assert_eq!(
            rv(session.unwrap_key(
                &tr34(None),
                no_unwrap,
                &one_pass,
                &[Attribute::Token(false)]
            )),
            RvError::KeyFunctionNotPermitted
        );
        assert_eq!(
            rv(session.unwrap_key(&tr34(None), kbpk, &one_pass, &[Attribute::Token(false)])),
            RvError::UnwrappingKeyTypeInconsistent
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let python = common::python_venv(
        dir.path(),
        "kdh-venv",
        &["asn1crypto", "cryptography", "psec"],
        "the TR-34 test's key distribution host",
    );
    let deployment = Deployment::start();
    let mut env = deployment.module_env();
    env.push((PYTHON_ENV, python.into_os_string()));
    env.push((PKI_ENV, dir.path().as_os_str().to_owned()));
    run_in_child(
        "keys_load_from_an_independent_kdh_and_bad_tokens_create_nothing",
        &env,
    );
}

fn receiver_without_unwrap(session: &Session) -> ObjectHandle {
    let (_, private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::Token(false), Attribute::ModulusBits(2048.into())],
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Unwrap(false),
            ],
        )
        .unwrap();
    private
}
