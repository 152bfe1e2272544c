//! The JSON crypto API (`POST /v1/crypto/...` on the admin listener) end to
//! end: a key made through the module signs over HTTPS (curl, the tenant's
//! certificate), and the signature verifies with `openssl`; login tokens;
//! the same CKR codes and audit records as the PKCS#11 path; a tenant cannot
//! name another tenant's key, and the provider's certificate uses no key.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use cryptoki::object::{Attribute, KeyType, ObjectClass};

const USER_PIN: &str = "user-pin-1234";

/// In the child: the tenant named by `CRYPTO_API_TENANT` initialises its
/// token and makes an EC P-256 key pair (CKA_ID 0xA1, label `api-key`) and
/// an HMAC key (CKA_ID 0xB1, label `mac-key`).
fn make_keys() {
    use cryptoki::mechanism::Mechanism;
    let tenant = std::env::var("CRYPTO_API_TENANT").unwrap();
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, &tenant, USER_PIN);
    let p256 = common::P256_PARAMS.to_vec();
    let label = format!("{tenant}-api-key");
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(p256),
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Id(vec![0xA1]),
                Attribute::Label(label.clone().into_bytes()),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Id(vec![0xA1]),
                Attribute::Label(label.into_bytes()),
            ],
        )
        .expect("C_GenerateKeyPair");
    session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Id(vec![0xB1]),
                Attribute::Label(b"mac-key".to_vec()),
            ],
        )
        .expect("C_GenerateKey");
}

/// `POST url path` with `file`'s certificate: (HTTP status, body).
fn post(d: &Deployment, file: &str, path: &str, body: &str, bearer: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(d.path("ca.pem"))
        .arg("--cert")
        .arg(d.path(&format!("{file}.pem")))
        .arg("--key")
        .arg(d.path(&format!("{file}-key.pem")))
        .args(["-H", "Content-Type: application/json", "-X", "POST"])
        .args(["--data-binary", body, "-w", "\n%{http_code}"]);
    if let Some(token) = bearer {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command
        .arg(format!("https://{}{path}", d.admin_addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
    (status.trim().parse().expect("HTTP status"), body.to_owned())
}

/// The string value of `"key": "..."` in pretty-printed JSON (the tests
/// crate has no JSON parser; the server's JSON escapes only `"`, `\` and
/// control characters).
fn field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn openssl_verifies(dir: &Path, public_pem: &str, message: &[u8], der_signature: &[u8]) -> bool {
    std::fs::write(dir.join("pub.pem"), public_pem).unwrap();
    std::fs::write(dir.join("msg.bin"), message).unwrap();
    std::fs::write(dir.join("sig.der"), der_signature).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(dir.join("pub.pem"))
        .arg("-signature")
        .arg(dir.join("sig.der"))
        .arg(dir.join("msg.bin"))
        .output()
        .expect("run openssl");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[test]
fn json_api_signs_with_a_module_key_and_openssl_verifies() {
    if in_child() {
        make_keys();
        return;
    }
    let mut d = Deployment::init();
    let acme = d.add_tenant("acme");
    let globex = d.add_tenant("globex");
    d.run_server();
    for (tenant, config) in [("acme", &acme), ("globex", &globex)] {
        run_in_child(
            "json_api_signs_with_a_module_key_and_openssl_verifies",
            &[
                ("HSMLINK_CONF", config.clone().into_os_string()),
                ("CRYPTO_API_TENANT", tenant.into()),
            ],
        );
    }
    let pin = format!("\"pin\": \"{USER_PIN}\"");

    // The key list gives the public key as PEM.
    let (status, keys) = post(&d, "acme", "/v1/crypto/keys", &format!("{{{pin}}}"), None);
    assert_eq!(status, 200, "{keys}");
    assert!(keys.contains("\"acme-api-key\""), "{keys}");
    assert!(!keys.contains("globex"), "{keys}");
    let public_pem = field(&keys, "public_key_pem").expect("a public key");

    // Sign with the PIN in the request; openssl verifies the DER signature.
    let message = b"signed over the JSON API";
    let body = format!(
        "{{{pin}, \"key_label\": \"acme-api-key\", \"mechanism\": \"CKM_ECDSA_SHA256\", \"data\": \"{}\"}}",
        b64(message)
    );
    let (status, signed) = post(&d, "acme", "/v1/crypto/sign", &body, None);
    assert_eq!(status, 200, "{signed}");
    let der = unb64(&field(&signed, "signature_der").expect("signature_der"));
    assert!(
        openssl_verifies(d.dir.path(), &public_pem, message, &der),
        "openssl does not verify the signature"
    );
    assert!(!openssl_verifies(
        d.dir.path(),
        &public_pem,
        b"another message",
        &der
    ));

    // A token: log in once, sign and verify by CKA_ID, log out.
    let (status, login) = post(
        &d,
        "acme",
        "/v1/crypto/login",
        &format!("{{{pin}, \"ttl_s\": 60}}"),
        None,
    );
    assert_eq!(status, 200, "{login}");
    let token = field(&login, "token").expect("token");
    let body = format!(
        "{{\"key_id\": \"a1\", \"mechanism\": \"CKM_ECDSA_SHA256\", \"data\": \"{}\"}}",
        b64(message)
    );
    let (status, signed) = post(&d, "acme", "/v1/crypto/sign", &body, Some(&token));
    assert_eq!(status, 200, "{signed}");
    let signature = field(&signed, "signature").unwrap();
    let body = format!(
        "{{\"key_id\": \"A1\", \"mechanism\": \"CKM_ECDSA_SHA256\", \"data\": \"{}\", \"signature\": \"{signature}\"}}",
        b64(message)
    );
    let (status, verified) = post(&d, "acme", "/v1/crypto/verify", &body, Some(&token));
    assert_eq!(
        (status, verified.contains("\"valid\": true")),
        (200, true),
        "{verified}"
    );
    // HMAC, digest, random.
    let body = format!(
        "{{\"key_label\": \"mac-key\", \"data\": \"{}\"}}",
        b64(message)
    );
    let (status, mac) = post(&d, "acme", "/v1/crypto/hmac", &body, Some(&token));
    assert_eq!(status, 200, "{mac}");
    assert_eq!(unb64(&field(&mac, "mac").unwrap()).len(), 32);
    let (status, digest) = post(
        &d,
        "acme",
        "/v1/crypto/digest",
        &format!("{{\"data\": \"{}\"}}", b64(b"abc")),
        None,
    );
    assert_eq!(status, 200, "{digest}");
    assert_eq!(
        hex(&unb64(&field(&digest, "digest").unwrap())),
        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    );
    let (status, random) = post(
        &d,
        "acme",
        "/v1/crypto/random",
        "{\"length\": 48}",
        Some(&token),
    );
    assert_eq!(status, 200, "{random}");
    assert_eq!(unb64(&field(&random, "random").unwrap()).len(), 48);
    // Another certificate cannot use this token, not even the same tenant's other one.
    let (status, refused) = post(
        &d,
        "globex",
        "/v1/crypto/random",
        "{\"length\": 8}",
        Some(&token),
    );
    assert_eq!(status, 401, "{refused}");
    assert_eq!(
        field(&refused, "error").as_deref(),
        Some("CKR_USER_NOT_LOGGED_IN")
    );
    let (status, _) = post(&d, "acme", "/v1/crypto/logout", "{}", Some(&token));
    assert_eq!(status, 200);
    let (status, after) = post(
        &d,
        "acme",
        "/v1/crypto/random",
        "{\"length\": 8}",
        Some(&token),
    );
    assert_eq!(
        (status, field(&after, "error").as_deref()),
        (401, Some("CKR_USER_NOT_LOGGED_IN")),
        "{after}"
    );

    // A tenant cannot name another tenant's key: it is not found on its token.
    for key in [
        "\"key_label\": \"globex-api-key\"",
        "\"key_id\": \"a1\", \"key_label\": \"globex-api-key\"",
    ] {
        let body = format!(
            "{{{pin}, {key}, \"mechanism\": \"CKM_ECDSA_SHA256\", \"data\": \"{}\"}}",
            b64(message)
        );
        let (status, refused) = post(&d, "acme", "/v1/crypto/sign", &body, None);
        assert_eq!(status, 404, "{refused}");
        assert_eq!(
            field(&refused, "error").as_deref(),
            Some("CKR_KEY_HANDLE_INVALID")
        );
    }
    // Nor another tenant's slot.
    let (status, refused) = post(
        &d,
        "acme",
        "/v1/crypto/keys",
        &format!("{{{pin}, \"slot\": 5}}"),
        None,
    );
    assert_eq!(
        (status, field(&refused, "error").as_deref()),
        (404, Some("CKR_SLOT_ID_INVALID")),
        "{refused}"
    );
    // The same CKR codes as the module's: a wrong PIN.
    let (status, refused) = post(
        &d,
        "acme",
        "/v1/crypto/keys",
        "{\"pin\": \"wrong-pin-0000\"}",
        None,
    );
    assert_eq!(
        (status, field(&refused, "error").as_deref()),
        (401, Some("CKR_PIN_INCORRECT")),
        "{refused}"
    );
    // No login at all.
    let (status, refused) = post(&d, "acme", "/v1/crypto/keys", "{}", None);
    assert_eq!(
        (status, field(&refused, "error").as_deref()),
        (401, Some("CKR_USER_NOT_LOGGED_IN")),
        "{refused}"
    );
    // Bad input is CKR_ARGUMENTS_BAD, and never echoes the body (a PIN).
    let (status, refused) = post(
        &d,
        "acme",
        "/v1/crypto/sign",
        "{\"pin\": \"secret-pin-xyz\", \"nonsense\": 1}",
        None,
    );
    assert_eq!(
        (status, field(&refused, "error").as_deref()),
        (400, Some("CKR_ARGUMENTS_BAD")),
        "{refused}"
    );
    assert!(!refused.contains("secret-pin-xyz"), "{refused}");
    // The provider's certificate uses no key.
    let (status, refused) = post(&d, "admin", "/v1/crypto/keys", &format!("{{{pin}}}"), None);
    assert_eq!(status, 403, "{refused}");

    // Audited as the module's calls are, with the source and the channel.
    let records = d.audit_export(&["--tenant", "acme"]);
    let sign = records
        .iter()
        .find(|r| r.contains("\"op\":\"C_Sign\"") && r.contains("\"via\":\"http-api\""))
        .unwrap_or_else(|| panic!("no C_Sign record via the HTTP API:\n{}", records.join("\n")));
    assert!(sign.contains("\"source\":\"127.0.0.1:"), "{sign}");
    assert!(
        sign.contains("\"mechanism_name\":\"CKM_ECDSA_SHA256\""),
        "{sign}"
    );
    assert!(records.iter().any(|r| r.contains("\"op\":\"C_Login\"")
        && r.contains("CKR_PIN_INCORRECT")
        && r.contains("http-api")));
    assert!(
        d.server_log().find(USER_PIN).is_none(),
        "a PIN in the server log"
    );
}
