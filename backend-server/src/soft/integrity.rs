//! The software integrity test at start (FIPS 140-3 section 7.10.2.2): an
//! HMAC-SHA-256 of the server executable, compared with the value written
//! next to it when it was built or packaged (`hsmlink-server integrity
//! --write`; `test.sh`, `quickstart.sh` and the .deb do it).
//!
//! A mismatch — or, with `[soft] integrity = "required"`, a missing file —
//! puts every soft-HSM partition of the process in the error state
//! (`CKR_DEVICE_ERROR` on every cryptographic call) until a restart with a
//! good executable. The HMAC key is public, as in FIPS modules: the test
//! detects corruption of the executable, not an attacker able to rewrite
//! both files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hsmlink_crypto::digest::DigestAlg;
use hsmlink_crypto::mac::{self, MacAlg};
use hsmlink_crypto::selftest::{self, SelfTest};
use subtle::ConstantTimeEq;
use tracing::{error, info, warn};

use crate::config::{IntegrityPolicy, SoftSection};

/// The public HMAC key of the integrity value.
const KEY: &[u8] = b"hsmlink-server software integrity v1";

/// Why the test failed, once it did.
static FAILED: OnceLock<String> = OnceLock::new();

/// Whether the integrity test failed in this process.
pub fn failed() -> bool {
    FAILED.get().is_some()
}

/// The integrity file of executable `exe` by default: `exe` + `.hmac`.
pub fn default_file(exe: &Path) -> PathBuf {
    let mut name = exe.as_os_str().to_owned();
    name.push(".hmac");
    PathBuf::from(name)
}

/// HMAC-SHA-256 of the file at `path`.
fn mac_of(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    mac::sign(MacAlg::Hmac(DigestAlg::Sha256), KEY, None, &bytes)
        .map_err(|e| format!("HMAC of {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the integrity value of `exe` to `file` (default: next to it).
pub fn write(exe: &Path, file: Option<&Path>) -> Result<PathBuf, String> {
    let file = file.map_or_else(|| default_file(exe), Path::to_path_buf);
    let value = mac_of(exe)?;
    std::fs::write(&file, format!("{}\n", hex(&value)))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file)
}

/// Runs the test for the running executable, under `section`'s policy.
/// A failure is recorded ([`failed`]) and logged; the server runs on in
/// the error state. Call once at start, after the break switch.
pub fn check_at_start(section: &SoftSection) {
    let outcome = std::env::current_exe()
        .map_err(|e| format!("cannot locate the executable: {e}"))
        .and_then(|exe| check(&exe, section));
    match outcome {
        Ok(Some(file)) => info!(file = %file.display(), "software integrity test passed"),
        Ok(None) => warn!(
            "software integrity test skipped: no integrity file (write one with \
             `hsmlink-server integrity --write`; [soft] integrity = \"required\" makes it mandatory)"
        ),
        Err(why) => {
            error!(
                "software integrity test failed: {why}; every soft-HSM partition is in the \
                 error state (CKR_DEVICE_ERROR) until a restart with a good executable"
            );
            let _ = FAILED.set(why);
        }
    }
}

/// `Ok(Some(file))` passed, `Ok(None)` skipped (no file, not required).
fn check(exe: &Path, section: &SoftSection) -> Result<Option<PathBuf>, String> {
    let file = section
        .integrity_file
        .clone()
        .unwrap_or_else(|| default_file(exe));
    let recorded = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match section.integrity {
                IntegrityPolicy::WhenPresent => Ok(None),
                IntegrityPolicy::Required => Err(format!("{} is missing", file.display())),
            };
        }
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let mut want = hex(&mac_of(exe)?).into_bytes();
    if selftest::is_broken(SelfTest::Integrity) {
        // Break switch (tests only): the comparison itself must fail.
        if let Some(first) = want.first_mut() {
            *first ^= 1;
        }
    }
    if bool::from(recorded.trim().as_bytes().ct_eq(&want)) {
        Ok(Some(file))
    } else {
        Err(format!(
            "{} does not match {}",
            exe.display(),
            file.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_values_check_and_any_change_fails() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("program");
        std::fs::write(&exe, b"the executable").unwrap();
        let file = write(&exe, None).unwrap();
        assert_eq!(file, dir.path().join("program.hmac"));
        let section = SoftSection::default();
        assert_eq!(check(&exe, &section).unwrap(), Some(file.clone()));
        std::fs::write(&exe, b"the executablE").unwrap();
        assert!(check(&exe, &section).is_err());
        std::fs::remove_file(&file).unwrap();
        assert_eq!(check(&exe, &section).unwrap(), None);
        let required = SoftSection {
            integrity: IntegrityPolicy::Required,
            ..SoftSection::default()
        };
        assert!(check(&exe, &required).is_err());
    }
}
