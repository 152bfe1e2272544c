//! The README's first command, as a newcomer runs it (on the build at hand).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn quickstart_starts_a_deployment_and_pkcs11_tool_uses_it() {
    let deploy = tempfile::tempdir().expect("temp dir");
    let deploy_dir = deploy.path().join("deploy");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let out = Command::new("bash")
        .arg(common::workspace_root().join("quickstart.sh"))
        .env("HSMLINK_SKIP_BUILD", "1")
        .env("HSMLINK_BIN_DIR", common::profile_dir())
        .env("HSMLINK_DEPLOY_DIR", &deploy_dir)
        .env("HSMLINK_LISTEN", &listen)
        .output()
        .expect("run quickstart.sh");
    // The server keeps running after the script, as it should: stop it.
    if let Ok(pid) = std::fs::read_to_string(deploy_dir.join("server.pid")) {
        let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart.sh failed:\n{stdout}\n{stderr}"
    );
    for wanted in ["hsmlink slot 0", "Manufacturer", "hsmlink", "AES-GCM"] {
        assert!(stdout.contains(wanted), "no {wanted:?} in:\n{stdout}");
    }
    for key in ["ca-key.pem", "server-key.pem", "demo-key.pem"] {
        assert!(deploy_dir.join(key).exists(), "{key} not written");
    }
}
