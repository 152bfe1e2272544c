//! The Debian package: built from this build, installed with `dpkg -i`, the
//! installed server started the way its systemd unit does, the installed
//! module used by pkcs11-tool, and purged (`packaging/test-deb.sh`).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn debian_package_installs_and_serves() {
    let root = common::workspace_root();
    let out = Command::new("bash")
        .arg(root.join("packaging").join("test-deb.sh"))
        .env("HSMLINK_BIN_DIR", common::profile_dir())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "packaging/test-deb.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok - control fields"), "{stdout}");
    println!("{stdout}");
}
