//! Zeroisation, shown on the live processes: after `C_DestroyObject`,
//! `C_CloseSession` and `C_Finalize`, the key material and the PINs that
//! went through the real .so and the real server are found nowhere in
//! either process's memory (every readable mapping of `/proc/PID/mem`:
//! heap, stacks, TLS buffers, the store's pages).
//!
//! The secrets are random, made by this test's parent and handed to the
//! child (the application) in a file it reads and deletes, so no copy sits
//! in a binary, an argument or the environment. The child's own heap is
//! wiped on free like the module's and the server's (zeroizing allocator),
//! so a copy found is one the module or the server kept.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Deployment, child_command, in_child, load_module};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

/// The application's heap is wiped on free too, so that what is searched
/// for in it is what the module keeps, not the test's own garbage.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

const DIR_ENV: &str = "HSMLINK_TEST_ZEROISATION_DIR";
const KEY_LEN: usize = 32;
const PIN_LEN: usize = 24;

/// The secrets file: key ‖ SO PIN ‖ the user PIN the SO sets ‖ the one the
/// user changes it to (PINs printable).
fn secrets_len() -> usize {
    KEY_LEN + 3 * PIN_LEN
}

/// The key and the three PINs.
fn split(secrets: &[u8]) -> [(&'static str, &[u8]); 4] {
    let (key, pins) = secrets.split_at(KEY_LEN);
    let (so, rest) = pins.split_at(PIN_LEN);
    let (first, user) = rest.split_at(PIN_LEN);
    [
        ("key", key),
        ("SO PIN", so),
        ("first user PIN", first),
        ("user PIN", user),
    ]
}

fn random_secrets() -> Vec<u8> {
    let mut bytes = vec![0u8; secrets_len()];
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    urandom.read_exact(&mut bytes).unwrap();
    // PINs as printable characters 'A'..'Z' and 'a'..'z'.
    for b in &mut bytes[KEY_LEN..] {
        let n = *b % 52;
        *b = if n < 26 { b'A' + n } else { b'a' + n - 26 };
    }
    bytes
}

fn pin_of(bytes: &[u8]) -> AuthPin {
    AuthPin::new(String::from_utf8(bytes.to_vec()).unwrap().into())
}

/// How often `needle` occurs in the readable memory of process `pid`.
fn occurrences(pid: u32, needle: &[u8]) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = fields.nth(3).unwrap_or("");
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut region = vec![0u8; usize::try_from(end - start).unwrap()];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        let here = region
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count();
        if here > 0 {
            // Where, for whoever has to find the copy (mapping and offset).
            let at = region.windows(needle.len()).position(|w| w == needle);
            eprintln!("process {pid}: found in {line} at offset {at:#x?}");
        }
        found += here;
    }
    found
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_key_or_pin_survives_destroy_close_and_finalize() {
    if in_child() {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
        let secrets = Zeroizing::new(std::fs::read(dir.join("secrets")).unwrap());
        std::fs::remove_file(dir.join("secrets")).unwrap();
        let [(_, key), (_, so_pin), (_, first_pin), (_, user_pin)] = split(&secrets);
        {
            let pkcs11 = load_module();
            let slot = pkcs11.get_all_slots().unwrap()[0];
            pkcs11.init_token(slot, &pin_of(so_pin), "zeroise").unwrap();
            let session = pkcs11.open_rw_session(slot).unwrap();
            session.login(UserType::So, Some(&pin_of(so_pin))).unwrap();
            session.init_pin(&pin_of(first_pin)).unwrap();
            session.logout().unwrap();
            // A PIN the SO set must be changed before use.
            session
                .login(UserType::User, Some(&pin_of(first_pin)))
                .unwrap();
            session
                .set_pin(&pin_of(first_pin), &pin_of(user_pin))
                .unwrap();
            session.logout().unwrap();
            session
                .login(UserType::User, Some(&pin_of(user_pin)))
                .unwrap();
            let handle = session
                .create_object(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(true),
                    Attribute::Sensitive(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Value(key.to_vec()),
                ])
                .unwrap();
            // Use it, single and multi-part, so the server makes its key
            // schedules.
            let ct = session
                .encrypt(&Mechanism::AesEcb, handle, &[0x42; 64])
                .unwrap();
            assert_eq!(
                session.decrypt(&Mechanism::AesEcb, handle, &ct).unwrap(),
                [0x42; 64]
            );
            session.destroy_object(handle).unwrap();
            session.logout().unwrap();
            session.close().unwrap();
            pkcs11.finalize().unwrap();
        }
        drop(secrets);
        // Tell the parent, and stay alive while it searches.
        std::fs::write(dir.join("finalized"), b"").unwrap();
        wait_for(&dir.join("searched"), "the parent's search");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secrets = random_secrets();
    std::fs::write(dir.path().join("secrets"), &secrets).unwrap();
    let deployment = Deployment::start();
    let mut env = deployment.module_env();
    env.push((DIR_ENV, dir.path().as_os_str().to_owned()));
    let mut child = child_command("no_key_or_pin_survives_destroy_close_and_finalize", &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let finalized = dir.path().join("finalized");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !finalized.exists() {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            common::assert_child_passed("no_key_or_pin_survives_destroy_close_and_finalize", &out);
            panic!("the application ended before finalizing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server sees the connections close; give it a moment to drop them.
    std::thread::sleep(Duration::from_millis(500));
    let server = deployment.server_pid().unwrap();
    let mut report = Vec::new();
    for (who, pid) in [("application", child.id()), ("server", server)] {
        for (what, needle) in split(&secrets) {
            let n = occurrences(pid, needle);
            report.push(format!("{what} in the {who}: {n}"));
        }
    }
    std::fs::write(dir.path().join("searched"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    common::assert_child_passed("no_key_or_pin_survives_destroy_close_and_finalize", &out);
    // The search itself finds what is there: the secrets in this process.
    assert!(
        occurrences(std::process::id(), split(&secrets)[0].1) >= 1,
        "the search does not see this process's own copy"
    );
    assert!(
        report.iter().all(|line| line.ends_with(": 0")),
        "secrets left in memory:\n{}",
        report.join("\n")
    );
}
