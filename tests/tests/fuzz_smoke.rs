//! The fuzz targets of `fuzz/` build and survive a short run over their
//! checked-in corpus (`fuzz/smoke.sh`: cargo-fuzz installed if missing,
//! about 20 s per target, an instrumented build in `fuzz/target/`). The
//! long runs are done by hand (README, "Fuzzing").

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

/// smoke.sh's exit status when cargo-fuzz is missing and cannot be installed.
const SKIPPED: i32 = 77;

#[test]
fn fuzz_targets_survive_a_short_run_over_their_corpus() {
    let root = common::workspace_root();
    let out = Command::new("bash")
        .arg(root.join("fuzz").join("smoke.sh"))
        // The workspace build's profile settings and target are not the
        // fuzz build's: let smoke.sh pick its own.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(SKIPPED) {
        eprintln!("SKIPPED: cargo-fuzz is missing and cannot be installed:\n{stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "fuzz/smoke.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("smoke: all 5 targets ok"), "{stdout}");
    println!("{stdout}");
}
