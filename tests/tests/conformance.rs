//! Third-party PKCS#11 clients, scripted in `conformance/`, against the real
//! module and a real server (each script starts its own deployment).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

fn run_script(name: &str) {
    let root = common::workspace_root();
    let dir = common::profile_dir();
    let out = Command::new("bash")
        .arg(root.join("conformance").join(name))
        .env("HSMLINK_SERVER", dir.join("hsmlink-server"))
        .env("HSMLINK_MODULE", dir.join("libhsmlink_pkcs11.so"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance/{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

#[test]
fn pkcs11_tool() {
    run_script("pkcs11-tool.sh");
}

#[test]
fn pkcs11_tool_token_walkthrough() {
    run_script("pkcs11-tool-token.sh");
}

#[test]
fn python_pykcs11_and_ctypes() {
    run_script("python.sh");
}

#[test]
fn openssl_interop() {
    run_script("openssl-interop.sh");
}

#[test]
fn pkcs11_tool_builtin_tests() {
    run_script("pkcs11-tool-builtin.sh");
}

#[test]
fn gnutls_p11tool_certtool() {
    run_script("gnutls.sh");
}

#[test]
fn openssl_pkcs11_engine() {
    run_script("openssl-engine.sh");
}

#[test]
fn nginx_https_with_token_keys() {
    run_script("nginx.sh");
}

#[test]
fn java_sunpkcs11() {
    run_script("java.sh");
}

#[test]
fn python_pkcs11_from_pypi() {
    run_script("python-pkcs11.sh");
}

#[test]
fn p11_kit_module_and_proxy() {
    run_script("p11-kit.sh");
}

#[test]
fn module_across_fork() {
    run_script("fork.sh");
}

#[test]
fn pkcs11_tool_tenant_admin_walkthrough() {
    run_script("pkcs11-tool-admin.sh");
}
