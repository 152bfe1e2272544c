//! The audit log end to end: calls through the real .so and a real server,
//! then `hsmlink-server audit export` and `audit verify` on its store.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::ffi::OsString;

use common::{Deployment, in_child, load_module, pin, run_in_child};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::session::UserType;

const SO_PIN: &str = "so-pin-1234";
const FIRST_PIN: &str = "first-pin-1111";
const USER_PIN: &str = "user-pin-5678";
/// A wrong PIN, easy to look for in the log and the store.
const WRONG_PIN: &str = "wrong-pin-9z9z9z";

/// In the child: token, PINs, a failed then a good login, an EC key pair
/// and one ECDSA signature; the private key's handle goes to the file
/// named by `AUDIT_TEST_OUT`.
fn sign_once() {
    let pkcs11 = load_module();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    pkcs11.init_token(slot, &pin(SO_PIN), "audited").unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    session.init_pin(&pin(FIRST_PIN)).unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&pin(FIRST_PIN)))
        .unwrap();
    session.set_pin(&pin(FIRST_PIN), &pin(USER_PIN)).unwrap();
    session.logout().unwrap();
    match session.login(UserType::User, Some(&pin(WRONG_PIN))) {
        Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {}
        other => panic!("wrong PIN: {other:?}"),
    }
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let private = common::p256_token_signing_key(&session);
    let signature = session.sign(&Mechanism::Ecdsa, private, &[7; 32]).unwrap();
    assert_eq!(signature.len(), 64);
    let out = std::env::var_os("AUDIT_TEST_OUT").unwrap();
    std::fs::write(out, private.handle().to_string()).unwrap();
}

/// Starts a deployment, runs [`sign_once`] in a child named `test`, stops
/// the server (which signs the chain heads); returns the key handle.
fn deployment_after_one_signature(test: &str) -> (Deployment, u64) {
    let mut deployment = Deployment::start();
    let out = deployment.path("handle.txt");
    let mut env = deployment.module_env();
    env.push(("AUDIT_TEST_OUT", OsString::from(&out)));
    run_in_child(test, &env);
    let status = deployment.stop_server().expect("server was running");
    assert!(status.success(), "{}", deployment.server_log());
    let handle = std::fs::read_to_string(out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (deployment, handle)
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &line[start..];
    let end = match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"')? + 2,
        None => rest.find([',', '}'])?,
    };
    Some(rest[..end].trim_matches('"'))
}

#[test]
fn a_signature_is_audited_with_who_what_where_and_the_result() {
    if in_child() {
        sign_once();
        return;
    }
    let (deployment, key) =
        deployment_after_one_signature("a_signature_is_audited_with_who_what_where_and_the_result");
    let lines = deployment.audit_export(&["--tenant", "demo"]);
    let sign: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "op") == Some("C_Sign"))
        .collect();
    assert_eq!(
        sign.len(),
        1,
        "one record per signature:\n{}",
        lines.join("\n")
    );
    let r = sign[0];
    assert_eq!(field(r, "tenant"), Some("demo"), "{r}");
    assert_eq!(field(r, "key"), Some(key.to_string().as_str()), "{r}");
    assert_eq!(field(r, "mechanism"), Some("4161"), "CKM_ECDSA: {r}");
    assert_eq!(field(r, "mechanism_name"), Some("CKM_ECDSA"), "{r}");
    assert_eq!(field(r, "rv_name"), Some("CKR_OK"), "{r}");
    assert_eq!(field(r, "partition"), Some("demo-p0"), "{r}");
    assert!(
        field(r, "source").is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{r}"
    );
    assert!(
        field(r, "cert").is_some_and(|c| c.starts_with("sha256:") && c.len() == 71),
        "{r}"
    );
    let micros: u64 = field(r, "duration_us").unwrap().parse().unwrap();
    assert!(micros > 0 && micros < 10_000_000, "{r}");
    assert!(field(r, "time").is_some_and(|t| t.ends_with('Z')), "{r}");
    // --key selects the key's records: its generation, the signature (a
    // successful C_SignInit is part of the C_Sign record).
    let by_key = deployment.audit_export(&["--key", &key.to_string()]);
    let ops: Vec<&str> = by_key.iter().filter_map(|l| field(l, "op")).collect();
    assert_eq!(ops, ["C_GenerateKeyPair", "C_Sign"], "{by_key:?}");

    // The failed login: recorded, with its result, never with the PIN.
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| {
            field(l, "op") == Some("C_Login") && field(l, "rv_name") == Some("CKR_PIN_INCORRECT")
        })
        .collect();
    assert_eq!(failed.len(), 1, "{}", lines.join("\n"));
    assert_eq!(field(failed[0], "detail"), Some("CKU_USER"));
    for secret in [WRONG_PIN, USER_PIN, FIRST_PIN, SO_PIN] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "{secret} in the export"
        );
        for file in ["hsmlink.db", "hsmlink.db-wal"] {
            let bytes = std::fs::read(deployment.path(file)).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {file}"
            );
        }
    }
    for op in ["C_InitToken", "C_InitPIN", "C_SetPIN", "C_Logout"] {
        assert!(lines.iter().any(|l| field(l, "op") == Some(op)), "{op}");
    }

    let (ok, stdout, stderr) = deployment.server_command(&["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("chain demo: OK"), "{stdout}");

    // Metering: the signature, counted for demo.
    let (ok, stdout, stderr) =
        deployment.server_command(&["metering", "--tenant", "demo", "--json"]);
    assert!(ok, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| field(l, "operation") == Some("C_Sign"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(field(row, "count"), Some("1"), "{row}");
    assert_eq!(field(row, "bytes_in"), Some("32"), "{row}");
    assert_eq!(field(row, "bytes_out"), Some("64"), "{row}");
}

#[test]
fn a_changed_or_deleted_record_is_found_by_verify() {
    if in_child() {
        sign_once();
        return;
    }
    let (deployment, _) =
        deployment_after_one_signature("a_changed_or_deleted_record_is_found_by_verify");
    let sign_seq =
        deployment.sqlite("SELECT seq FROM audit_records WHERE chain = 'demo' AND op = 'C_Sign'");
    // Change the result of the signature's record.
    deployment.sqlite(&format!(
        "UPDATE audit_records SET body = replace(body, '\"rv_name\":\"CKR_OK\"', '\"rv_name\":\"CKR_GENERAL_ERROR\"') \
         WHERE chain = 'demo' AND seq = {sign_seq}"
    ));
    let (ok, stdout, stderr) = deployment.server_command(&["audit", "verify", "--tenant", "demo"]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(&format!("chain demo: record {sign_seq}: changed")),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("record {sign_seq}")), "{stderr}");

    // Deleting a record (here the one before it) is found too.
    let (deployment, _) =
        deployment_after_one_signature("a_changed_or_deleted_record_is_found_by_verify");
    deployment.sqlite("DELETE FROM audit_records WHERE chain = 'demo' AND seq = 3");
    let (ok, stdout, _) = deployment.server_command(&["audit", "verify"]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("chain demo: record 3: record 3 is missing (deleted)"),
        "{stdout}"
    );
}
