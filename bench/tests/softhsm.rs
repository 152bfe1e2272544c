//! `hsmlink-bench run` against SoftHSMv2 loaded directly: the JSON line it
//! prints reports operations done and no errors. No timing is asserted.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a failed test

use std::path::Path;
use std::process::Command;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn ecdsa_signatures_on_softhsm_are_counted() {
    if !Path::new(SOFTHSM).exists() {
        eprintln!("SKIPPED: {SOFTHSM} is absent (apt-get install softhsm2)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "bench-test"])
        .args(["--so-pin", "so-pin-1234", "--pin", "user-1234"])
        .output();
    let init = match init {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: softhsm2-util cannot run: {e}");
            return;
        }
    };
    assert!(
        init.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_hsmlink-bench"))
        .env("SOFTHSM2_CONF", &conf)
        .args(["run", "--module", SOFTHSM, "--token-label", "bench-test"])
        .args(["--pin", "user-1234", "--op", "sign-ecdsa-p256,sm3"])
        .args([
            "--threads",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--json",
        ])
        .output()
        .expect("run hsmlink-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hsmlink-bench failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), 2, "{stdout}");

    let ecdsa = &records[0];
    assert_eq!(ecdsa["op"], "sign-ecdsa-p256", "{stdout}");
    assert_eq!(ecdsa["status"], "ok", "{stdout}");
    assert_eq!(ecdsa["threads"], 2, "{stdout}");
    assert!(ecdsa["ops"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(ecdsa["errors"], 0, "{stdout}");
    assert!(
        ecdsa["latency_us"]["p50"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );

    // SoftHSMv2 has no SM3: reported as unsupported, not as a failure.
    assert_eq!(records[1]["op"], "sm3", "{stdout}");
    assert_eq!(records[1]["status"], "unsupported", "{stdout}");
}
