//! The web console in a real headless browser (Debian's `chromium`, driven
//! by playwright-core from npm with client certificates): the provider signs
//! in, sees a tenant's partition and its chart, suspends it through the
//! confirmation page; the tenant's PKCS#11 calls then fail with the
//! documented codes (`CKR_DEVICE_REMOVED` on an open session,
//! `CKR_TOKEN_NOT_PRESENT` for a new one), the audit page shows the refused
//! call and a verified chain, and the tenant's own certificate sees its
//! tenant only. Screenshots: `target/console-screenshots/`.
//!
//! Skips (with a message) only when `/usr/bin/chromium` is missing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;

const USER_PIN: &str = "user-pin-1234";
const PLAYWRIGHT: &str = "playwright-core@1.65.1";

fn chromium() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    path.exists().then_some(path)
}

/// playwright-core under target/console-browser (installed from npm once).
fn playwright_dir() -> PathBuf {
    let dir = workspace_root().join("target/console-browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                "--prefix",
            ])
            .arg(&dir)
            .arg(PLAYWRIGHT)
            .output()
            .expect("run npm (Debian package npm)");
        assert!(
            out.status.success(),
            "npm install {PLAYWRIGHT} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The tenant's application: a key and a few signatures, then (once the
/// parent says the partition is suspended) the calls that must fail.
fn tenant_application() {
    let ready = PathBuf::from(std::env::var_os("CONSOLE_READY").unwrap());
    let suspended = PathBuf::from(std::env::var_os("CONSOLE_SUSPENDED").unwrap());
    let pkcs11 = load_module();
    let session = user_session(&pkcs11, "acme", USER_PIN);
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let private = common::p256_token_signing_key(&session);
    for _ in 0..20 {
        session.sign(&Mechanism::Ecdsa, private, &[7; 32]).unwrap();
    }
    std::fs::write(&ready, "ready").unwrap();
    assert!(
        wait_for(&suspended, Duration::from_secs(120)),
        "never suspended"
    );
    // The documented codes of a suspended partition.
    assert_eq!(
        rv(session.sign(&Mechanism::Ecdsa, private, &[7; 32])),
        RvError::DeviceRemoved
    );
    assert_eq!(rv(pkcs11.open_ro_session(slot)), RvError::TokenNotPresent);
    assert_eq!(rv(pkcs11.get_token_info(slot)), RvError::TokenNotPresent);
    assert!(pkcs11.get_slots_with_token().unwrap().is_empty());
}

fn node(phase: &str, env: &[(&str, std::ffi::OsString)]) {
    let script = workspace_root().join("tests/browser/console.mjs");
    let mut command = Command::new("node");
    command.arg(&script).arg(phase).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run node (Debian package nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "console {phase} failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("{stdout}");
}

#[test]
fn console_in_a_headless_browser() {
    if in_child() {
        tenant_application();
        return;
    }
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED console_in_a_headless_browser: /usr/bin/chromium is missing \
             (apt-get install chromium; or set CHROMIUM)"
        );
        return;
    };
    let playwright = playwright_dir();
    let shots = workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let mut d = Deployment::init();
    let acme = d.add_tenant("acme");
    let _globex = d.add_tenant("globex");
    d.run_server();

    // The tenant's application runs beside the browser.
    let ready = d.path("app-ready");
    let suspended = d.path("app-suspended");
    let exe = std::env::current_exe().unwrap();
    let app = Command::new(exe)
        .args([
            "console_in_a_headless_browser",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HSMLINK_TEST_CHILD", "console")
        .env("HSMLINK_CONF", &acme)
        .env("CONSOLE_READY", &ready)
        .env("CONSOLE_SUSPENDED", &suspended)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(&ready, Duration::from_secs(60)),
        "the tenant's application did not start"
    );

    let env: Vec<(&str, std::ffi::OsString)> = vec![
        ("CONSOLE_URL", format!("https://{}", d.admin_addr).into()),
        ("PLAYWRIGHT_DIR", playwright.join("node_modules").into()),
        ("CHROMIUM", chromium.into()),
        ("SHOTS", shots.clone().into()),
        ("TENANT", "acme".into()),
        ("OTHER_TENANT", "globex".into()),
        ("PARTITION", "acme-p0".into()),
        ("ADMIN_CERT", d.path("admin.pem").into()),
        ("ADMIN_KEY", d.path("admin-key.pem").into()),
        ("TENANT_CERT", d.path("acme.pem").into()),
        ("TENANT_KEY", d.path("acme-key.pem").into()),
    ];
    node("provider", &env);

    std::fs::write(&suspended, "suspended").unwrap();
    let out = app.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the tenant's application after the suspension:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    node("after", &env);
    for name in [
        "01-overview",
        "03-partition",
        "05-suspended",
        "06-audit",
        "09-tenant-view",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
    println!("screenshots in {}", shots.display());
}
