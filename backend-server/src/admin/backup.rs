//! `hsmlink-server backup` and `restore`: the store, copied consistently
//! and encrypted under a key derived from the instance root key.
//!
//! - The copy is SQLite's `VACUUM INTO`: one consistent snapshot, taken
//!   while the server runs.
//! - The file is `"HSMLBK01" || nonce (12) || AES-256-GCM(store)`, AAD the
//!   magic, under `HKDF-SHA256(root key, "hsmlink/backup-encryption/v1")`
//!   ([`crate::soft::keys::RootKey::backup_key`]): a key used for nothing
//!   else. Inside, the soft driver's objects are still sealed under their
//!   partition master keys, and those are wrapped under the partitions'
//!   key-encryption keys.
//! - The key ring (`hsmlink.keyring`, the key-encryption keys) is never in
//!   a backup. A restore uses the key ring of the instance it restores into:
//!   a partition terminated since the backup was taken has no entry there
//!   any more, so its master key, and every object of it, stay undecryptable
//!   — on this instance or any other. Keep the key ring (like the root
//!   key) on durable storage of its own; a backup without it is useless.
//!
//! The store is held in memory while it is encrypted (fine for the sizes a
//! soft HSM holds; a streaming format would lift this).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::soft::keys::{RootKey, fill_random};
use crate::soft::partition::{KeyState, key_state};
use crate::store::{SqliteStore, Store, keyring_path};

const MAGIC: &[u8; 8] = b"HSMLBK01";
const NONCE_LEN: usize = 12;
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// What a backup or restore did.
#[derive(Debug)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// Restore: partitions of the backup whose keys this key ring cannot
    /// open (terminated since, or another instance's).
    pub erased: Vec<String>,
    pub partitions: usize,
}

fn root_key(config: &Config) -> Result<RootKey, String> {
    RootKey::load(config.soft.root_key_source().as_ref()).map_err(|e| e.to_string())
}

/// Writes an encrypted backup of the store of `config` to `out` (which must
/// not exist).
pub fn backup(config: &Config, out: &Path) -> Result<BackupReport, String> {
    if out.symlink_metadata().is_ok() {
        return Err(format!(
            "{}: exists already; nothing was written",
            out.display()
        ));
    }
    let root = root_key(config)?;
    let store = SqliteStore::open(&config.store.path).map_err(|e| e.to_string())?;
    // A private directory beside the output for the clear copy.
    let dir = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("backup"),
        std::process::id()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let copy = dir.join("store.db");
    let plain = (|| {
        store.backup_into(&copy).map_err(|e| e.to_string())?;
        std::fs::read(&copy)
            .map(Zeroizing::new)
            .map_err(|e| format!("{}: {e}", copy.display()))
    })();
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_dir(&dir);
    let plain = plain?;
    let sealed = seal(&root, &plain)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    file.write_all(&sealed)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let partitions = store.slots().map(|s| s.len()).unwrap_or(0);
    Ok(BackupReport {
        file: out.to_owned(),
        bytes: sealed.len() as u64,
        erased: Vec::new(),
        partitions,
    })
}

/// Restores a backup into the store of `config`, which must not exist yet
/// (a fresh directory, or the old store moved away; the server stopped).
pub fn restore(config: &Config, input: &Path) -> Result<BackupReport, String> {
    let target = &config.store.path;
    if target.symlink_metadata().is_ok() {
        return Err(format!(
            "{}: a store exists there; restore into a fresh store (stop the server and move it away first)",
            target.display()
        ));
    }
    let root = root_key(config)?;
    let sealed = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let plain = open(&root, &sealed).map_err(|e| format!("{}: {e}", input.display()))?;
    if !plain.starts_with(SQLITE_HEADER) {
        return Err(format!(
            "{}: not a backup of an hsmlink store",
            input.display()
        ));
    }
    let partial = target.with_extension("restoring");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        file.write_all(&plain)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", partial.display()))?;
    }
    std::fs::rename(&partial, target).map_err(|e| format!("{}: {e}", target.display()))?;
    // Brings the schema up to date, and says what the key ring cannot open.
    let store = SqliteStore::open(target).map_err(|e| e.to_string())?;
    let slots = store.slots().map_err(|e| e.to_string())?;
    let mut erased = Vec::new();
    for slot in &slots {
        if slot.driver == "soft"
            && slot.state != "terminated"
            && key_state(&store, &slot.partition).map_err(|e| e.to_string())? == KeyState::Erased
        {
            erased.push(slot.partition.clone());
        }
    }
    Ok(BackupReport {
        file: target.to_owned(),
        bytes: plain.len() as u64,
        erased,
        partitions: slots.len(),
    })
}

/// Where the key ring of `config`'s store is (for messages).
pub fn keyring_of(config: &Config) -> PathBuf {
    keyring_path(&config.store.path)
}

fn seal(root: &RootKey, plain: &[u8]) -> Result<Vec<u8>, String> {
    let key = root.backup_key();
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| "bad key length".to_owned())?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce).map_err(|_| "the random generator failed".to_owned())?;
    let body = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plain,
                aad: MAGIC,
            },
        )
        .map_err(|_| "encryption failed".to_owned())?;
    Ok([&MAGIC[..], &nonce, &body].concat())
}

fn open(root: &RootKey, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let Some(rest) = sealed.strip_prefix(&MAGIC[..]) else {
        return Err("not an hsmlink backup".to_owned());
    };
    if rest.len() < NONCE_LEN + 16 {
        return Err("truncated backup".to_owned());
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    let key = root.backup_key();
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| "bad key length".to_owned())?;
    cipher
        .decrypt(
            &n.into(),
            Payload {
                msg: body,
                aad: MAGIC,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| "does not decrypt: another instance's root key, or a damaged file".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_backups_open_only_with_their_root_key() {
        let root = RootKey::generate().unwrap();
        let sealed = seal(&root, b"SQLite format 3\0 and more").unwrap();
        assert_eq!(
            &open(&root, &sealed).unwrap()[..],
            b"SQLite format 3\0 and more"
        );
        assert!(open(&RootKey::generate().unwrap(), &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&root, &bad).is_err());
        assert!(open(&root, b"HSMLBK01").is_err());
        assert!(open(&root, b"garbage").is_err());
    }
}
