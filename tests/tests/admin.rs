//! The provider's administration plane (issue 7), end to end: the admin
//! API through `hsmlink-server admin`, the tenant through the real .so.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::ffi::OsString;
use std::process::Command;

use common::{Deployment, in_child, load_module, run_in_child};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rustls_pki_types::pem::PemObject;

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "user-pin-5678";

fn pin(text: &str) -> AuthPin {
    AuthPin::new(text.into())
}

fn rv(result: Result<impl std::fmt::Debug, Error>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// The provider's side, run by the child (which has the paths in its
/// environment): `hsmlink-server admin ARGS...`.
fn admin_from_child(args: &[&str]) -> String {
    let var = |name: &str| std::env::var(name).expect(name);
    let out = Command::new(common::server_bin())
        .args([
            "admin",
            "--url",
            &var("ADMIN_URL"),
            "--ca",
            &var("ADMIN_CA"),
        ])
        .args(["--cert", &var("ADMIN_CERT"), "--key", &var("ADMIN_KEY")])
        .args(args)
        .output()
        .expect("run hsmlink-server admin");
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn child_env(deployment: &Deployment) -> Vec<(&'static str, OsString)> {
    let mut env = deployment.module_env();
    env.push(("ADMIN_URL", deployment.admin_url().into()));
    env.push(("ADMIN_CA", deployment.path("ca.pem").into()));
    env.push(("ADMIN_CERT", deployment.path("admin.pem").into()));
    env.push(("ADMIN_KEY", deployment.path("admin-key.pem").into()));
    env.push(("DEMO_CERT", deployment.path("demo.pem").into()));
    env
}

fn ready_user_session(pkcs11: &Pkcs11) -> cryptoki::session::Session {
    let slot = pkcs11.get_all_slots().expect("C_GetSlotList")[0];
    pkcs11
        .init_token(slot, &pin(SO_PIN), "tenant token")
        .expect("C_InitToken");
    let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
    session
        .login(UserType::So, Some(&pin(SO_PIN)))
        .expect("SO login");
    session.init_pin(&pin("first-pin")).expect("C_InitPIN");
    session.logout().expect("C_Logout");
    session
        .login(UserType::User, Some(&pin("first-pin")))
        .expect("user login");
    session
        .set_pin(&pin("first-pin"), &pin(USER_PIN))
        .expect("C_SetPIN");
    session
}

/// conformance/provider-tenant.sh: both sides, pkcs11-tool through the
/// module, suspend/resume/terminate, an older backup restored elsewhere,
/// the audit log verified.
#[test]
fn provider_and_tenant_end_to_end() {
    let root = common::workspace_root();
    let dir = common::profile_dir();
    let out = Command::new("bash")
        .arg(root.join("conformance").join("provider-tenant.sh"))
        .env("HSMLINK_SERVER", dir.join("hsmlink-server"))
        .env("HSMLINK_MODULE", dir.join("libhsmlink_pkcs11.so"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance/provider-tenant.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

/// A suspended partition: its slot shows no token, calls on sessions opened
/// before answer CKR_DEVICE_REMOVED, keys survive; after a resume the
/// application is logged out and logs in again.
#[test]
fn suspend_and_resume_through_the_module() {
    if in_child() {
        let pkcs11 = load_module();
        let session = ready_user_session(&pkcs11);
        let slot = pkcs11.get_all_slots().unwrap()[0];
        let (_, private) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(true),
                    Attribute::EcParams(vec![
                        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                    ]),
                ],
                &[Attribute::Token(true), Attribute::Sign(true)],
            )
            .expect("C_GenerateKeyPair");
        session
            .sign(&Mechanism::Ecdsa, private, &[7u8; 32])
            .expect("C_Sign");

        let out = admin_from_child(&["partitions", "suspend", "demo-p0"]);
        assert!(out.contains("suspended"), "{out}");
        assert_eq!(
            rv(session.sign(&Mechanism::Ecdsa, private, &[7u8; 32])),
            RvError::DeviceRemoved
        );
        assert_eq!(rv(pkcs11.get_token_info(slot)), RvError::TokenNotPresent);
        assert_eq!(rv(pkcs11.open_ro_session(slot)), RvError::TokenNotPresent);
        assert!(pkcs11.get_slots_with_token().unwrap().is_empty());
        assert_eq!(pkcs11.get_all_slots().unwrap(), vec![slot]);

        let out = admin_from_child(&["partitions", "resume", "demo-p0"]);
        assert!(out.contains("active"), "{out}");
        // Logged out by the suspension; the key is still there.
        assert_eq!(
            rv(session.sign(&Mechanism::Ecdsa, private, &[7u8; 32])),
            RvError::UserNotLoggedIn
        );
        session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
        session
            .sign(&Mechanism::Ecdsa, private, &[7u8; 32])
            .expect("C_Sign after the resume");
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "suspend_and_resume_through_the_module",
        &child_env(&deployment),
    );
}

/// Revoking a tenant certificate cuts its open connection at once and
/// refuses new handshakes with it; the admin certificate is refused by the
/// data port.
#[test]
fn revocation_cuts_connections_and_refuses_new_ones() {
    if in_child() {
        let pkcs11 = load_module();
        let slot = pkcs11.get_all_slots().unwrap()[0];
        pkcs11
            .get_token_info(slot)
            .expect("served before the revocation");
        // The demo certificate was written by init, never issued through
        // the API: it is revoked by its fingerprint.
        let pem = std::fs::read(std::env::var("DEMO_CERT").unwrap()).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let fingerprint = hsmlink_server::identity::Fingerprint::of(der.as_ref()).to_string();
        let out = admin_from_child(&["--json", "certs", "revoke", &fingerprint]);
        assert!(out.contains("\"connections_cut\": 1"), "{out}");
        assert!(out.contains("\"status\": \"revoked\""), "{out}");
        // The connection is gone and a new handshake fails.
        assert!(pkcs11.get_token_info(slot).is_err());
        assert!(pkcs11.get_token_info(slot).is_err());
        return;
    }
    let deployment = Deployment::start();
    run_in_child(
        "revocation_cuts_connections_and_refuses_new_ones",
        &child_env(&deployment),
    );
    let log = deployment.server_log();
    assert!(log.contains("certificate revoked"), "{log}");
    assert!(
        log.contains("TLS handshake failed") && log.contains("Revoked"),
        "a new handshake with the revoked certificate must fail:\n{log}"
    );
    // Listed as revoked.
    let (ok, out, err) = deployment.admin(&["certs", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked"), "{out}");
}

/// Tenants and partitions made through the API are served at once, and
/// survive a restart; server.toml's tenant is still there.
#[test]
fn runtime_tenants_are_served_without_restart_and_persist() {
    let mut deployment = Deployment::start();
    let (ok, _, err) = deployment.admin(&["tenants", "create", "acme"]);
    assert!(ok, "{err}");
    let (ok, out, err) = deployment.admin(&["partitions", "allocate", "acme", "--slot", "4"]);
    assert!(ok, "{err}");
    assert!(out.contains("acme-p4"), "{out}");
    let key = deployment.path("acme-key.pem");
    let cert = deployment.path("acme.pem");
    let (ok, _, err) = deployment.admin(&[
        "certs",
        "issue",
        "acme",
        "--out",
        cert.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let conf = deployment.client_config_with("acme.toml", &cert, &key);
    let list = |conf: &std::path::Path| {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(common::module_path())
            .arg("-L")
            .env("HSMLINK_CONF", conf)
            .output()
            .expect("pkcs11-tool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let slots = list(&conf);
    assert!(
        slots.contains("(0x4)") && slots.contains("acme-p4"),
        "{slots}"
    );
    assert!(!slots.contains("demo-p0"), "{slots}");
    deployment.stop_server();
    deployment.run_server();
    let slots = list(&conf);
    assert!(slots.contains("acme-p4"), "after a restart: {slots}");
    let slots = list(&deployment.client_config());
    assert!(
        slots.contains("demo-p0") && !slots.contains("acme"),
        "{slots}"
    );
    // A disabled tenant is refused.
    let (ok, _, err) = deployment.admin(&["tenants", "disable", "acme"]);
    assert!(ok, "{err}");
    let slots = list(&conf);
    assert!(!slots.contains("acme-p4"), "{slots}");
    // A tenant certificate may fetch its report, nothing else.
    let report = Command::new(common::server_bin())
        .args(["report", "--url", &deployment.admin_url(), "--ca"])
        .arg(deployment.path("ca.pem"))
        .arg("--cert")
        .arg(deployment.path("demo.pem"))
        .arg("--key")
        .arg(deployment.path("demo-key.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success() && text.contains("tenant:    demo"),
        "{text}"
    );
    assert!(text.contains("hmac-sha256:"), "{text}");
}
