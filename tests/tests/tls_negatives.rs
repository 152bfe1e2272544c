//! Mutual TLS: a client without a certificate, with a certificate of another
//! CA, or with an expired one never gets a PKCS#11 answer; the module reports
//! an error code promptly and never hangs.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Deployment, in_child, load_module, run_in_child, valid, within, write_certified_key};
use cryptoki::error::{Error, RvError};
use hsmlink_protocol::frame::{self, FrameKind};
use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
use hsmlink_protocol::{AppInstance, Hello};
use hsmlink_server::init;
use rcgen::date_time_ymd;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The module's view of a refused handshake: an error code, quickly.
fn assert_module_is_refused() {
    let pkcs11 = load_module();
    let answer = within(Duration::from_secs(20), move || pkcs11.get_all_slots());
    assert!(
        matches!(
            answer,
            Err(Error::Pkcs11(
                RvError::DeviceError | RvError::DeviceRemoved,
                _
            ))
        ),
        "expected CKR_DEVICE_ERROR, got {answer:?}"
    );
}

/// A CA nobody told the server about, and a "demo" certificate it signed.
fn foreign_demo_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (not_before, not_after) = valid();
    let ca = init::generate_ca("hsmlink provider CA", not_before, not_after).expect("foreign CA");
    let issued =
        init::issue_tenant_certificate(&ca.cert_pem, &ca.key_pem, "demo", not_before, not_after)
            .expect("issue");
    write_certified_key(dir, "foreign-demo", &issued)
}

/// A "demo" certificate from the deployment's own CA, expired since 2021.
fn expired_demo_certificate(deployment: &Deployment) -> (PathBuf, PathBuf) {
    let expired = (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1));
    deployment.issue_tenant_certificate("expired-demo", "demo", expired)
}

/// A well-signed certificate for a tenant the server does not know.
fn unknown_tenant_certificate(deployment: &Deployment) -> (PathBuf, PathBuf) {
    deployment.issue_tenant_certificate("mallory", "mallory", valid())
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    if in_child() {
        assert_module_is_refused();
        return;
    }
    let deployment = Deployment::start();
    let (cert, key) = foreign_demo_certificate(deployment.dir.path());
    let config = deployment.client_config_with("foreign.toml", &cert, &key);
    run_in_child(
        "a_certificate_from_another_ca_is_refused",
        &[("HSMLINK_CONF", config.into_os_string())],
    );
    // And the server said why, without crashing.
    assert!(raw_client_gets_no_answer(&deployment, Some((&cert, &key))));
}

#[test]
fn an_expired_certificate_is_refused() {
    if in_child() {
        assert_module_is_refused();
        return;
    }
    let deployment = Deployment::start();
    let (cert, key) = expired_demo_certificate(&deployment);
    let config = deployment.client_config_with("expired.toml", &cert, &key);
    run_in_child(
        "an_expired_certificate_is_refused",
        &[("HSMLINK_CONF", config.into_os_string())],
    );
    assert!(raw_client_gets_no_answer(&deployment, Some((&cert, &key))));
}

#[test]
fn a_client_without_a_certificate_gets_no_answer() {
    let deployment = Deployment::start();
    assert!(raw_client_gets_no_answer(&deployment, None));
}

#[test]
fn a_tenant_the_server_does_not_know_is_rejected() {
    if in_child() {
        assert_module_is_refused();
        return;
    }
    let deployment = Deployment::start();
    let (cert, key) = unknown_tenant_certificate(&deployment);
    let config = deployment.client_config_with("mallory.toml", &cert, &key);
    run_in_child(
        "a_tenant_the_server_does_not_know_is_rejected",
        &[("HSMLINK_CONF", config.into_os_string())],
    );
}

#[test]
fn a_stopped_server_gives_an_error_not_a_hang() {
    if in_child() {
        assert_module_is_refused();
        return;
    }
    let mut deployment = Deployment::start();
    let status = deployment.stop_server().expect("server was running");
    assert!(status.success(), "SIGTERM is a graceful shutdown: {status}");
    run_in_child(
        "a_stopped_server_gives_an_error_not_a_hang",
        &deployment.module_env(),
    );
}

#[test]
fn the_valid_certificate_gets_a_hello() {
    // The control for the negatives above: the same raw client with the
    // deployment's own demo certificate is answered.
    let deployment = Deployment::start();
    let cert = deployment.path("demo.pem");
    let key = deployment.path("demo-key.pem");
    assert!(!raw_client_gets_no_answer(&deployment, Some((&cert, &key))));
}

/// Connects with a plain rustls client (optionally with a certificate), sends
/// a Hello and reports whether the server never answered it.
fn raw_client_gets_no_answer(deployment: &Deployment, identity: Option<(&Path, &Path)>) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(deployment.path("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .collect::<Result<_, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client connection");
    let mut tcp = TcpStream::connect(deployment.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);

    let hello = Hello::new(
        "raw-test-client".into(),
        AppInstance([7; 16]),
        std::process::id(),
    );
    let sent = frame::write_frame(
        &mut stream,
        FrameKind::Hello,
        HELLO_FRAME_VERSION,
        0,
        &hello,
    );
    if sent.is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let answered = match stream.read(&mut byte) {
        Ok(0) | Err(_) => false,
        Ok(_) => true,
    };
    let _ = stream.flush();
    !answered
}

/// The client key in a PKCS#12 file with a passphrase: OpenSSL 3's default
/// (PBES2, AES-256-CBC, PBKDF2) and the older PBE-SHA1-3DES export both
/// work; a wrong passphrase fails `C_Initialize` with one clear log line.
#[test]
fn a_client_key_in_pkcs12_with_a_passphrase_works() {
    let name = "a_client_key_in_pkcs12_with_a_passphrase_works";
    if in_child() {
        let pkcs11 = cryptoki::context::Pkcs11::new(common::module_path()).unwrap();
        let initialised = pkcs11.initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ));
        if std::env::var("P12_EXPECT").as_deref() == Ok("refused") {
            assert!(
                matches!(initialised, Err(Error::Pkcs11(RvError::GeneralError, _))),
                "{initialised:?}"
            );
            return;
        }
        initialised.unwrap();
        // A call that needs the TLS connection: the server answered.
        assert_eq!(pkcs11.get_all_slots().unwrap().len(), 1);
        return;
    }
    let deployment = Deployment::start();
    let dir = deployment.dir.path();
    let passphrase = "correct horse battery staple";
    std::fs::write(dir.join("p12.pass"), format!("{passphrase}\n")).unwrap();
    for (file, extra) in [
        ("demo-aes.p12", &[][..]),
        (
            "demo-3des.p12",
            &[
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ][..],
        ),
    ] {
        let out = std::process::Command::new("openssl")
            .args(["pkcs12", "-export", "-name", "demo"])
            .arg("-inkey")
            .arg(deployment.path("demo-key.pem"))
            .arg("-in")
            .arg(deployment.path("demo.pem"))
            .arg("-out")
            .arg(dir.join(file))
            .args(["-passout", &format!("pass:{passphrase}")])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // client.toml: the PKCS#12 file instead of cert and key; the
        // passphrase from a file, then from the environment.
        let original = std::fs::read_to_string(deployment.client_config()).unwrap();
        let base: String = original
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !(l.starts_with("cert ")
                    || l.starts_with("cert=")
                    || l.starts_with("key ")
                    || l.starts_with("key="))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let by_file = dir.join(format!("{file}.toml"));
        std::fs::write(
            &by_file,
            format!("{base}pkcs12 = {file:?}\npkcs12_passphrase_file = \"p12.pass\"\n"),
        )
        .unwrap();
        run_in_child(name, &[("HSMLINK_CONF", by_file.clone().into_os_string())]);
        let by_env = dir.join(format!("{file}-env.toml"));
        std::fs::write(
            &by_env,
            format!("{base}pkcs12 = {file:?}\npkcs12_passphrase_env = \"DEMO_P12_PASS\"\n"),
        )
        .unwrap();
        run_in_child(
            name,
            &[
                ("HSMLINK_CONF", by_env.clone().into_os_string()),
                ("DEMO_P12_PASS", passphrase.into()),
            ],
        );
        // A wrong passphrase: C_Initialize fails and says why, without it.
        let stderr = run_in_child(
            name,
            &[
                ("HSMLINK_CONF", by_env.into_os_string()),
                ("DEMO_P12_PASS", "wrong passphrase".into()),
                ("P12_EXPECT", "refused".into()),
            ],
        );
        assert!(
            stderr.contains("cannot open the PKCS#12 file")
                && stderr.contains("wrong passphrase or not a PKCS#12 file"),
            "{stderr}"
        );
        assert!(!stderr.contains(passphrase));
    }
}
