//! The server's audit signing key: Ed25519 (through `hsmlink-crypto`), a
//! 32-byte seed kept as 64 hex digits in a file of mode 0600
//! (`[audit] key_file`, default `audit.key` beside the database). The
//! server makes it at its first start if the file does not exist.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::record::{hex, unhex};

/// The audit signing key. Its seed never leaves this type (no Debug of it).
pub struct AuditKey {
    seed: Zeroizing<Vec<u8>>,
    public: [u8; 32],
    path: PathBuf,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &hex(&self.public))
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// Reads the key file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("audit key {}: {e}", path.display()))?,
        );
        let seed = Zeroizing::new(unhex(text.trim()).filter(|s| s.len() == 32).ok_or_else(
            || {
                format!(
                    "audit key {}: expected 64 hex digits (an Ed25519 seed)",
                    path.display()
                )
            },
        )?);
        let public = hsmlink_crypto::ec::ed25519_public(&seed)
            .map_err(|e| format!("audit key {}: {e}", path.display()))?;
        Ok(Self {
            seed,
            public,
            path: path.to_owned(),
        })
    }

    /// Reads the key file, or makes a new key there (mode 0600) if there is
    /// no such file.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        if path.exists() {
            return Self::load(path);
        }
        let pair = hsmlink_crypto::ec::ed25519_generate()
            .map_err(|e| format!("audit key: cannot generate: {e}"))?;
        let text = Zeroizing::new(format!("{}\n", hex(&pair.private)));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("audit key {}: cannot create: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("audit key {}: cannot write: {e}", path.display()))?;
        tracing::info!(path = %path.display(), public = %hex(&pair.public), "audit signing key created");
        Self::load(path)
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        hsmlink_crypto::ec::ed25519_sign(&self.seed, message)
            .map(|s| s.to_vec())
            .unwrap_or_default()
    }
}

/// Checks an Ed25519 signature by `public`.
pub fn verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    hsmlink_crypto::ec::ed25519_verify(public, message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_with_mode_0600_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let a = AuditKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = AuditKey::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let sig = a.sign(b"head");
        assert!(verify(&b.public(), b"head", &sig));
        assert!(!verify(&b.public(), b"tail", &sig));
        assert!(!format!("{a:?}").contains(&hex(&a.seed)));
    }
}
