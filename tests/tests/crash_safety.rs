//! Crash safety (issue 9): the server is killed (SIGKILL, no shutdown)
//! in the middle of a burst of key generations by several threads. After a
//! restart every key whose `C_GenerateKey` returned `CKR_OK` is there, once,
//! the store passes SQLite's integrity check and the audit chain verifies.
//! On the soft HSM, and on the `pkcs11` driver with a replica (SoftHSMv2).

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;

const TEST: &str = "keys_reported_made_survive_a_sigkill_of_the_server";
const USER_PIN: &str = "user-pin-5678";
const THREADS: usize = 4;

fn made_file() -> PathBuf {
    PathBuf::from(std::env::var_os("CRASH_MADE").unwrap())
}

/// Generates keys on `THREADS` threads until the server goes; each key
/// whose call returned `CKR_OK` is written (and flushed) to the file
/// before the next call.
fn burst() {
    let pkcs11 = load_module();
    // Kept open: the application stays logged in for its other sessions.
    let _login = user_session(&pkcs11, "crash", USER_PIN);
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let made = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(made_file())
            .unwrap(),
    );
    let errors: Vec<RvError> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pkcs11 = &pkcs11;
                let made = &made;
                scope.spawn(move || {
                    // Logged in already (login is per application).
                    let session = pkcs11.open_rw_session(slot).unwrap();
                    for i in 0..100_000 {
                        let label = format!("t{t}-k{i}");
                        let result = session.generate_key(
                            &Mechanism::AesKeyGen,
                            &[
                                Attribute::Token(true),
                                Attribute::ValueLen(32.into()),
                                Attribute::Encrypt(true),
                                Attribute::Label(label.clone().into()),
                            ],
                        );
                        match result {
                            Ok(_) => {
                                let mut file = made.lock().unwrap();
                                writeln!(file, "{label}").unwrap();
                                file.flush().unwrap();
                            }
                            Err(Error::Pkcs11(rv, _)) => return rv,
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                    panic!("the server was not killed");
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // What an application sees when its server dies mid-call.
    for rv in errors {
        assert!(
            matches!(rv, RvError::DeviceError | RvError::DeviceRemoved),
            "{rv:?}"
        );
    }
}

/// After the restart: every key reported made is there, exactly once.
fn check() {
    let pkcs11 = load_module();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let made = std::fs::read_to_string(made_file()).unwrap();
    let labels: Vec<&str> = made.lines().collect();
    assert!(
        labels.len() >= 40,
        "only {} keys before the kill",
        labels.len()
    );
    let all = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        .unwrap();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for key in all {
        if let Some(Attribute::Label(l)) = session
            .get_attributes(key, &[cryptoki::object::AttributeType::Label])
            .unwrap()
            .first()
        {
            *count
                .entry(String::from_utf8(l.clone()).unwrap())
                .or_default() += 1;
        }
    }
    for label in &labels {
        assert_eq!(count.get(*label), Some(&1), "key {label} reported made");
    }
    // Keys whose reply never came may exist (made, then the server died
    // before answering); none twice.
    assert!(count.values().all(|n| *n == 1), "{count:?}");
    // And the token still works.
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::Token(true), Attribute::ValueLen(16.into())],
        )
        .unwrap();
}

#[test]
fn keys_reported_made_survive_a_sigkill_of_the_server() {
    crash(TEST, OnDriver::Soft);
}

#[test]
fn keys_reported_made_survive_a_sigkill_of_the_server_on_replicas() {
    crash(
        "keys_reported_made_survive_a_sigkill_of_the_server_on_replicas",
        OnDriver::Replicated,
    );
}

fn crash(test: &str, driver: OnDriver) {
    if in_child() {
        match std::env::var("CRASH_PHASE").as_deref() {
            Ok("burst") => burst(),
            Ok("check") => check(),
            other => panic!("phase {other:?}"),
        }
        return;
    }
    let Some(mut suite) = SuiteDeployment::start(driver) else {
        return;
    };
    let made = suite.deployment.path("made.txt");
    let suite_env = suite.env();
    let env = |phase: &str| {
        let mut env = suite_env.clone();
        env.push(("CRASH_MADE", made.clone().into_os_string()));
        env.push(("CRASH_PHASE", OsString::from(phase)));
        env
    };
    let child = child_command(test, &env("burst"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some keys made, then SIGKILL in the middle of the burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&made)
        .unwrap_or_default()
        .lines()
        .count()
        < 60
    {
        assert!(
            Instant::now() < deadline,
            "no burst:\n{}",
            suite.deployment.server_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = suite.deployment.server_pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_child_passed(test, &out);
    let _ = suite.deployment.stop_server();

    // The store: SQLite's own check; the audit chain.
    assert_eq!(suite.deployment.sqlite("PRAGMA integrity_check"), "ok");
    let (ok, stdout, stderr) = suite.deployment.server_command(&["audit", "verify"]);
    assert!(ok, "audit verify after the kill: {stdout}{stderr}");

    suite.run_server();
    run_in_child(test, &env("check"));
}

/// A server restart under a running application: its sessions are gone
/// (`CKR_SESSION_HANDLE_INVALID`), and new ones work after a login; the
/// token objects are still there.
#[test]
fn a_running_application_opens_new_sessions_after_a_server_restart() {
    let name = "a_running_application_opens_new_sessions_after_a_server_restart";
    if in_child() {
        let pkcs11 = load_module();
        let session = user_session(&pkcs11, "restart", USER_PIN);
        let key = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label("kept".into()),
                ],
            )
            .unwrap();
        let ready = made_file();
        std::fs::write(&ready, "ready").unwrap();
        let restarted = ready.with_extension("restarted");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !restarted.exists() {
            assert!(Instant::now() < deadline, "the server was not restarted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            rv(session.get_session_info()),
            RvError::SessionHandleInvalid
        );
        let slot = pkcs11.get_all_slots().unwrap()[0];
        let fresh = pkcs11.open_rw_session(slot).unwrap();
        fresh.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
        let found = fresh
            .find_objects(&[Attribute::Label("kept".into())])
            .unwrap();
        // Token object handles are stable across the restart.
        assert_eq!(found, vec![key]);
        return;
    }
    let mut deployment = Deployment::start();
    let ready = deployment.path("ready");
    let mut env = deployment.module_env();
    env.push(("CRASH_MADE", ready.clone().into_os_string()));
    let child = child_command(name, &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the child did not get ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(deployment.stop_server().unwrap().success());
    deployment.run_server();
    std::fs::write(ready.with_extension("restarted"), "").unwrap();
    assert_child_passed(name, &child.wait_with_output().unwrap());
}
