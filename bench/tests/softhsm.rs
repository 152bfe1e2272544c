//! `hsmlink-bench` against SoftHSMv2 loaded directly: a smoke run of a few
//! seconds that checks the tool works and its output parses (JSON lines,
//! the comparison text, the SVG). No timing is asserted, ever.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The first CPU this process may run on ("0" where not found): a CI
/// container's cpuset may leave CPU 0 out.
fn first_allowed_cpu() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|list| {
                    list.trim()
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
        })
        .filter(|cpu| !cpu.is_empty())
        .unwrap_or_else(|| "0".into())
}

/// A SoftHSMv2 token "bench-test" in a temporary directory, or None (and
/// a SKIPPED line) where SoftHSMv2 is not installed.
fn softhsm_token() -> Option<(tempfile::TempDir, PathBuf)> {
    if !Path::new(SOFTHSM).exists() {
        eprintln!("SKIPPED: {SOFTHSM} is absent (apt-get install softhsm2)");
        return None;
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
            return None;
        }
    };
    assert!(
        init.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    Some((dir, conf))
}

fn bench(conf: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hsmlink-bench"))
        .env("SOFTHSM2_CONF", conf)
        .args(args)
        .output()
        .expect("run hsmlink-bench");
    assert!(
        out.status.success(),
        "hsmlink-bench {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const SHORT: [&str; 8] = [
    "--token-label",
    "bench-test",
    "--user-pin",
    "user-1234",
    "--duration",
    "0.1",
    "--warmup",
    "0.02",
];

#[test]
fn operations_on_softhsm_are_counted_in_json() {
    let Some((dir, conf)) = softhsm_token() else {
        return;
    };
    // A "server counter" that never moves: 0 round trips, and the source said.
    let counter = dir.path().join("counter.txt");
    std::fs::write(&counter, "hsmlink_requests_total{result=\"CKR_OK\"} 7\n").unwrap();
    let count_cmd = format!("cat {}", counter.display());
    let mut args = vec!["run", "--module", SOFTHSM];
    args.extend(SHORT);
    args.extend([
        "--op",
        "sign-ecdsa-p256,sm3,get-attribute,find-objects,open-close-session,keygen-aes",
        "--threads",
        "2",
        "--sessions",
        "4",
        "--runs",
        "3",
        "--count-ops",
        "2",
        "--count-cmd",
        &count_cmd,
        "--json",
    ]);
    let out = bench(&conf, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), 6, "{stdout}");

    let ecdsa = &records[0];
    assert_eq!(ecdsa["op"], "sign-ecdsa-p256", "{stdout}");
    assert_eq!(ecdsa["status"], "ok", "{stdout}");
    assert_eq!(ecdsa["threads"], 2, "{stdout}");
    assert_eq!(ecdsa["sessions"], 4, "{stdout}");
    assert!(ecdsa["ops"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(ecdsa["errors"], 0, "{stdout}");
    assert_eq!(ecdsa["runs_ops_per_s"].as_array().unwrap().len(), 3);
    for p in ["p50", "p90", "p99", "max"] {
        assert!(
            ecdsa["latency_us"][p].as_f64().unwrap() > 0.0,
            "{p}: {stdout}"
        );
    }
    assert_eq!(ecdsa["round_trips_per_op"], 0.0, "{stdout}");
    assert!(
        ecdsa["round_trips_source"]
            .as_str()
            .unwrap()
            .contains("hsmlink_requests_total"),
        "{stdout}"
    );
    assert!(ecdsa["client_rss_kib"].as_i64().is_some(), "{stdout}");

    // SoftHSMv2 has no SM3: reported as unsupported, not as a failure.
    assert_eq!(records[1]["op"], "sm3", "{stdout}");
    assert_eq!(records[1]["status"], "unsupported", "{stdout}");
    for (record, op) in records[2..].iter().zip([
        "get-attribute",
        "find-objects",
        "open-close-session",
        "keygen-aes",
    ]) {
        assert_eq!(record["op"], op, "{stdout}");
        assert_eq!(record["status"], "ok", "{stdout}");
        assert_eq!(record["errors"], 0, "{stdout}");
    }

    // The same lines make a table and a plot.
    let results = dir.path().join("results.jsonl");
    std::fs::write(&results, stdout.as_bytes()).unwrap();
    let table = bench(&conf, &["table", results.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("| keygen-aes | 2 (4 sessions) |"), "{table}");
    let svg = dir.path().join("plot.svg");
    bench(
        &conf,
        &[
            "plot",
            results.to_str().unwrap(),
            "--out",
            svg.to_str().unwrap(),
        ],
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn compare_runs_two_modules_and_prints_ratios() {
    let Some((dir, conf)) = softhsm_token() else {
        return;
    };
    // A copy of the library is a second module to the dynamic loader, with
    // state of its own: SoftHSMv2 against itself.
    let copy = dir.path().join("copy.so");
    std::fs::copy(SOFTHSM, &copy).unwrap();
    let a = format!("direct={SOFTHSM}");
    let b = format!("copy={}", copy.display());
    let svg = dir.path().join("compare.svg");
    let cpu = first_allowed_cpu();
    let mut args = vec!["run", "--compare", &a, &b];
    args.extend(SHORT);
    args.extend([
        "--op",
        "sign-ecdsa-p256",
        "--threads",
        "1,2",
        "--runs",
        "1",
        "--pin",
        &cpu,
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let out = bench(&conf, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("direct / copy: ops/s").count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("| op | threads | size | direct ops/s | copy ops/s | direct / copy |"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    // Two series (one per module), each in the throughput and p99 panels.
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
}
