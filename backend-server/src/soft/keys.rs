//! The soft driver's key hierarchy.
//!
//! - The instance root key (32 bytes) comes from outside the database: a key
//!   file (mode 0600, written by `init`), an environment variable, or the
//!   systemd credential `hsmlink-root-key`. It only wraps master keys.
//! - Each partition has its own key-encryption key (KEK, 32 bytes) in the
//!   partition key ring, a file beside the store that backups never copy
//!   ([`crate::store::keyring_path`]), wrapped under the root key with
//!   AES-256-GCM, AAD `"hsmlink/partition-kek/v1" || partition name || kek id`.
//! - Each partition has its own master key, drawn when the server first
//!   sees the partition (and again at `C_InitToken`), stored in the store
//!   wrapped under the partition's KEK: `0x02 || kek id (8 bytes) ||` an
//!   AES-256-GCM seal with AAD `"hsmlink/partition-master-key/v2" ||
//!   partition name || kek id`. Destroying the KEK (termination) makes
//!   every copy of that wrapped master key useless, those in backups
//!   included; `C_InitToken` draws a new KEK too and destroys the old one.
//!   Stores of earlier versions had the master key wrapped under the root
//!   key directly (`"hsmlink/partition-master-key/v1"`); such a partition
//!   is rewrapped under a new KEK when the server opens it.
//! - Object secrets are sealed under the master key with AES-256-GCM (or
//!   SM4-GCM for partitions with `algorithms = "gmt"`), AAD
//!   `partition name || 0x00 || object id`, so a record copied to another
//!   partition or object does not open.
//!
//! Every key lives in a zeroizing type.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::cipher::consts::U12;
use aes_gcm::{Aes256Gcm, AesGcm};
use zeroize::Zeroizing;

use crate::error::{CkResult, Ckr};

/// SM4 in GCM mode with a 96-bit nonce.
pub type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// The systemd credential name (`LoadCredential=hsmlink-root-key:...`).
pub const SYSTEMD_CREDENTIAL: &str = "hsmlink-root-key";

const MASTER_KEY_AAD: &[u8] = b"hsmlink/partition-master-key/v1";
const MASTER_KEY_UNDER_KEK_AAD: &[u8] = b"hsmlink/partition-master-key/v2";
const KEK_AAD: &[u8] = b"hsmlink/partition-kek/v1";
const FINGERPRINT_LABEL: &[u8] = b"hsmlink/master-key-fingerprint/v1";
const BACKUP_KEY_LABEL: &[u8] = b"hsmlink/backup-encryption/v1";
const NONCE_LEN: usize = 12;
const SEAL_VERSION: u8 = 1;
/// First byte of a master key wrapped under a partition KEK.
const KEK_WRAP_VERSION: u8 = 2;
/// Length of a KEK's id.
pub const KEK_ID_LEN: usize = 8;

/// Which cipher seals a partition's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithms {
    /// AES-256-GCM, 32-byte master key.
    International,
    /// SM4-GCM (GM/T), 16-byte master key.
    Gmt,
}

impl Algorithms {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::International => "international",
            Self::Gmt => "gmt",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "international" => Some(Self::International),
            "gmt" => Some(Self::Gmt),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::International => 32,
            Self::Gmt => 16,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::International => 1,
            Self::Gmt => 2,
        }
    }
}

/// Could not get or use a key; the message never holds key bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The instance root key.
#[derive(Clone)]
pub struct RootKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// Where the root key comes from (configuration `[soft]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKeySource {
    File(PathBuf),
    Env(String),
}

impl RootKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(&mut key[..])
            .map_err(|_| KeyError("the system random generator failed".into()))?;
        Ok(Self(key))
    }

    /// The key as `init` writes it: 64 hex digits and a newline.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(65));
        for b in self.0.iter() {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        text.push('\n');
        text
    }

    /// 64 hex digits (surrounding white space ignored) or 32 raw bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() == 32 {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(bytes);
            return Ok(Self(key));
        }
        let text = trim_ascii(bytes);
        if text.len() != 64 {
            return Err(KeyError(
                "a root key is 64 hexadecimal digits (or 32 raw bytes)".into(),
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, pair) in text.chunks(2).enumerate() {
            let hi = hex_digit(pair[0]);
            let lo = hex_digit(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => key[i] = hi << 4 | lo,
                _ => return Err(KeyError("a root key is 64 hexadecimal digits".into())),
            }
        }
        Ok(Self(key))
    }

    /// The root key from the configured source, or else from the systemd
    /// credential if `$CREDENTIALS_DIRECTORY/hsmlink-root-key` exists.
    pub fn load(source: Option<&RootKeySource>) -> Result<Self, KeyError> {
        match source {
            Some(RootKeySource::File(path)) => Self::from_file(path),
            Some(RootKeySource::Env(name)) => {
                let value = Zeroizing::new(std::env::var(name).map_err(|_| {
                    KeyError(format!(
                        "soft.root_key_env: environment variable {name} is not set"
                    ))
                })?);
                Self::parse(value.as_bytes())
                    .map_err(|e| KeyError(format!("soft.root_key_env: {name}: {e}")))
            }
            None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) if Path::new(&dir).join(SYSTEMD_CREDENTIAL).is_file() => {
                    Self::from_file(&Path::new(&dir).join(SYSTEMD_CREDENTIAL))
                }
                _ => Err(KeyError(format!(
                    "no root key for the soft driver: set [soft] root_key_file or root_key_env, \
                     or pass the systemd credential {SYSTEMD_CREDENTIAL}"
                ))),
            },
        }
    }

    /// Reads a key file, refusing one that others may read.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| KeyError(format!("{}: cannot open the root key: {e}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError(format!(
                "{}: the root key file must not be readable by group or others (chmod 600)",
                path.display()
            )));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(66));
        file.by_ref()
            .take(256)
            .read_to_end(&mut bytes)
            .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        Self::parse(&bytes).map_err(|e| KeyError(format!("{}: {e}", path.display())))
    }

    /// Wraps a partition's master key.
    pub fn wrap_master_key(&self, partition: &str, master: &MasterKey) -> CkResult<Vec<u8>> {
        let aad = [MASTER_KEY_AAD, partition.as_bytes()].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.0[..]).map_err(|_| Ckr::GENERAL)?;
        seal_with(&cipher, Algorithms::International, &aad, &master.key)
    }

    /// Unwraps a partition's master key; fails on a wrong root key, a wrong
    /// partition or a tampered record.
    pub fn unwrap_master_key(
        &self,
        partition: &str,
        algorithms: Algorithms,
        wrapped: &[u8],
    ) -> Result<MasterKey, KeyError> {
        let aad = [MASTER_KEY_AAD, partition.as_bytes()].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.0[..])
            .map_err(|_| KeyError("bad root key length".into()))?;
        let key = open_with(&cipher, Algorithms::International, &aad, wrapped).map_err(|_| {
            KeyError(format!(
                "partition {partition}: the master key does not unwrap (wrong root key, or a damaged store)"
            ))
        })?;
        if key.len() != algorithms.key_len() {
            return Err(KeyError(format!(
                "partition {partition}: master key of the wrong length"
            )));
        }
        Ok(MasterKey { key, algorithms })
    }
}

impl RootKey {
    /// Wraps a partition's key-encryption key for the key ring.
    pub fn wrap_kek(&self, partition: &str, kek: &PartitionKek) -> CkResult<Vec<u8>> {
        let aad = [KEK_AAD, partition.as_bytes(), &kek.id].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.0[..]).map_err(|_| Ckr::GENERAL)?;
        seal_with(&cipher, Algorithms::International, &aad, &kek.key[..])
    }

    /// Unwraps a key-ring entry; fails on a wrong root key or partition.
    pub fn unwrap_kek(
        &self,
        partition: &str,
        kek_id: &[u8; KEK_ID_LEN],
        wrapped: &[u8],
    ) -> Result<PartitionKek, KeyError> {
        let aad = [KEK_AAD, partition.as_bytes(), kek_id].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.0[..])
            .map_err(|_| KeyError("bad root key length".into()))?;
        let key = open_with(&cipher, Algorithms::International, &aad, wrapped).map_err(|_| {
            KeyError(format!(
                "partition {partition}: the key-encryption key does not unwrap (wrong root key, or a damaged key ring)"
            ))
        })?;
        let key: [u8; 32] = key[..]
            .try_into()
            .map_err(|_| KeyError(format!("partition {partition}: bad key-encryption key")))?;
        Ok(PartitionKek {
            id: *kek_id,
            key: Zeroizing::new(key),
        })
    }

    /// The key that encrypts backups: HKDF-SHA256 of the root key with a
    /// label of its own, so it is never the key of anything else.
    pub fn backup_key(&self) -> Zeroizing<[u8; 32]> {
        struct Len32;
        impl ring::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let mut out = Zeroizing::new([0u8; 32]);
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"hsmlink");
        let prk = salt.extract(&self.0[..]);
        let info = [BACKUP_KEY_LABEL];
        // Expanding 32 bytes with SHA-256 cannot fail (the limit is 255 blocks).
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut out[..]);
        }
        out
    }
}

/// Whether a stored wrapped master key is under a partition KEK (and which),
/// or under the root key directly (stores of earlier versions).
pub fn wrapped_under_kek(wrapped: &[u8]) -> Option<[u8; KEK_ID_LEN]> {
    match wrapped {
        [KEK_WRAP_VERSION, rest @ ..] if rest.len() > KEK_ID_LEN => {
            rest[..KEK_ID_LEN].try_into().ok()
        }
        _ => None,
    }
}

/// A partition's key-encryption key: it wraps the master key and lives only
/// in the key ring.
pub struct PartitionKek {
    id: [u8; KEK_ID_LEN],
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PartitionKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionKek(<redacted>)")
    }
}

impl PartitionKek {
    pub fn generate() -> CkResult<Self> {
        let mut id = [0u8; KEK_ID_LEN];
        fill_random(&mut id)?;
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(&mut key[..])?;
        Ok(Self { id, key })
    }

    pub fn id(&self) -> &[u8; KEK_ID_LEN] {
        &self.id
    }

    /// `0x02 || kek id || seal(master key)`.
    pub fn wrap_master_key(&self, partition: &str, master: &MasterKey) -> CkResult<Vec<u8>> {
        let aad = [MASTER_KEY_UNDER_KEK_AAD, partition.as_bytes(), &self.id].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).map_err(|_| Ckr::GENERAL)?;
        let sealed = seal_with(&cipher, Algorithms::International, &aad, &master.key)?;
        let mut out = Vec::with_capacity(1 + KEK_ID_LEN + sealed.len());
        out.push(KEK_WRAP_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn unwrap_master_key(
        &self,
        partition: &str,
        algorithms: Algorithms,
        wrapped: &[u8],
    ) -> Result<MasterKey, KeyError> {
        let bad = || {
            KeyError(format!(
                "partition {partition}: the master key does not unwrap (damaged store)"
            ))
        };
        if wrapped_under_kek(wrapped) != Some(self.id) {
            return Err(bad());
        }
        let aad = [MASTER_KEY_UNDER_KEK_AAD, partition.as_bytes(), &self.id].concat();
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).map_err(|_| bad())?;
        let key = open_with(
            &cipher,
            Algorithms::International,
            &aad,
            &wrapped[1 + KEK_ID_LEN..],
        )
        .map_err(|_| bad())?;
        if key.len() != algorithms.key_len() {
            return Err(KeyError(format!(
                "partition {partition}: master key of the wrong length"
            )));
        }
        Ok(MasterKey { key, algorithms })
    }
}

/// A partition's master key.
pub struct MasterKey {
    key: Zeroizing<Vec<u8>>,
    algorithms: Algorithms,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({:?}, <redacted>)", self.algorithms)
    }
}

impl MasterKey {
    pub fn generate(algorithms: Algorithms) -> CkResult<Self> {
        let mut key = Zeroizing::new(vec![0u8; algorithms.key_len()]);
        fill_random(&mut key)?;
        Ok(Self { key, algorithms })
    }

    pub fn algorithms(&self) -> Algorithms {
        self.algorithms
    }

    /// What the tenant's compliance report shows of the key: HMAC-SHA256
    /// under the master key of a fixed label and the partition name, hex.
    /// Unique per key, and it reveals nothing of the key itself.
    pub fn fingerprint(&self, partition: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key);
        let tag = ring::hmac::sign(&key, &[FINGERPRINT_LABEL, partition.as_bytes()].concat());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Seals an object's secret attributes, bound to partition and object.
    pub fn seal(&self, partition: &str, object_id: &str, plain: &[u8]) -> CkResult<Vec<u8>> {
        let aad = object_aad(partition, object_id);
        match self.algorithms {
            Algorithms::International => {
                let cipher = Aes256Gcm::new_from_slice(&self.key).map_err(|_| Ckr::GENERAL)?;
                seal_with(&cipher, self.algorithms, &aad, plain)
            }
            Algorithms::Gmt => {
                let cipher = Sm4Gcm::new_from_slice(&self.key).map_err(|_| Ckr::GENERAL)?;
                seal_with(&cipher, self.algorithms, &aad, plain)
            }
        }
    }

    /// Opens what [`MasterKey::seal`] sealed for the same partition and object.
    pub fn open(
        &self,
        partition: &str,
        object_id: &str,
        sealed: &[u8],
    ) -> CkResult<Zeroizing<Vec<u8>>> {
        let aad = object_aad(partition, object_id);
        match self.algorithms {
            Algorithms::International => {
                let cipher = Aes256Gcm::new_from_slice(&self.key).map_err(|_| Ckr::GENERAL)?;
                open_with(&cipher, self.algorithms, &aad, sealed)
            }
            Algorithms::Gmt => {
                let cipher = Sm4Gcm::new_from_slice(&self.key).map_err(|_| Ckr::GENERAL)?;
                open_with(&cipher, self.algorithms, &aad, sealed)
            }
        }
    }
}

fn object_aad(partition: &str, object_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(partition.len() + 1 + object_id.len());
    aad.extend_from_slice(partition.as_bytes());
    aad.push(0);
    aad.extend_from_slice(object_id.as_bytes());
    aad
}

/// `version || algorithm || nonce || ciphertext+tag`.
fn seal_with<C: Aead<NonceSize = U12>>(
    cipher: &C,
    algorithms: Algorithms,
    aad: &[u8],
    plain: &[u8],
) -> CkResult<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let body = cipher
        .encrypt(&nonce.into(), Payload { msg: plain, aad })
        .map_err(|_| Ckr::GENERAL)?;
    let mut out = Vec::with_capacity(2 + NONCE_LEN + body.len());
    out.push(SEAL_VERSION);
    out.push(algorithms.tag());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

fn open_with<C: Aead<NonceSize = U12>>(
    cipher: &C,
    algorithms: Algorithms,
    aad: &[u8],
    sealed: &[u8],
) -> CkResult<Zeroizing<Vec<u8>>> {
    if sealed.len() < 2 + NONCE_LEN || sealed[0] != SEAL_VERSION || sealed[1] != algorithms.tag() {
        return Err(Ckr::DEVICE);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[2..2 + NONCE_LEN]);
    let plain = cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &sealed[2 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| Ckr::DEVICE)?;
    Ok(Zeroizing::new(plain))
}

pub fn fill_random(buf: &mut [u8]) -> CkResult<()> {
    getrandom::fill(buf).map_err(|_| Ckr::GENERAL)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_text_round_trip() {
        let key = RootKey::generate().unwrap();
        let text = key.to_hex();
        assert_eq!(text.len(), 65);
        let again = RootKey::parse(text.as_bytes()).unwrap();
        assert_eq!(*again.0, *key.0);
        assert!(RootKey::parse(b"abc").is_err());
        assert!(RootKey::parse(&[b'g'; 64]).is_err());
    }

    #[test]
    fn master_key_is_bound_to_its_partition_and_root() {
        let root = RootKey::generate().unwrap();
        for alg in [Algorithms::International, Algorithms::Gmt] {
            let master = MasterKey::generate(alg).unwrap();
            let wrapped = root.wrap_master_key("p0", &master).unwrap();
            let back = root.unwrap_master_key("p0", alg, &wrapped).unwrap();
            assert_eq!(*back.key, *master.key);
            assert!(root.unwrap_master_key("p1", alg, &wrapped).is_err());
            let other = RootKey::generate().unwrap();
            assert!(other.unwrap_master_key("p0", alg, &wrapped).is_err());
        }
    }

    #[test]
    fn master_key_under_a_kek_is_bound_to_kek_partition_and_root() {
        let root = RootKey::generate().unwrap();
        let kek = PartitionKek::generate().unwrap();
        let wrapped_kek = root.wrap_kek("p0", &kek).unwrap();
        let again = root.unwrap_kek("p0", kek.id(), &wrapped_kek).unwrap();
        assert!(root.unwrap_kek("p1", kek.id(), &wrapped_kek).is_err());
        assert!(
            RootKey::generate()
                .unwrap()
                .unwrap_kek("p0", kek.id(), &wrapped_kek)
                .is_err()
        );
        for alg in [Algorithms::International, Algorithms::Gmt] {
            let master = MasterKey::generate(alg).unwrap();
            let wrapped = kek.wrap_master_key("p0", &master).unwrap();
            assert_eq!(wrapped_under_kek(&wrapped), Some(*kek.id()));
            let back = again.unwrap_master_key("p0", alg, &wrapped).unwrap();
            assert_eq!(*back.key, *master.key);
            assert_eq!(back.fingerprint("p0"), master.fingerprint("p0"));
            assert_ne!(master.fingerprint("p0"), master.fingerprint("p1"));
            assert!(kek.unwrap_master_key("p1", alg, &wrapped).is_err());
            let other = PartitionKek::generate().unwrap();
            assert!(other.unwrap_master_key("p0", alg, &wrapped).is_err());
            // The root key alone no longer opens it.
            assert!(root.unwrap_master_key("p0", alg, &wrapped).is_err());
        }
        let legacy = root
            .wrap_master_key("p0", &MasterKey::generate(Algorithms::Gmt).unwrap())
            .unwrap();
        assert_eq!(wrapped_under_kek(&legacy), None);
        assert_ne!(*root.backup_key(), [0u8; 32]);
        assert_ne!(*root.backup_key(), *root.0);
    }

    #[test]
    fn sealed_objects_are_bound_to_partition_and_id() {
        for alg in [Algorithms::International, Algorithms::Gmt] {
            let master = MasterKey::generate(alg).unwrap();
            let sealed = master.seal("p0", "obj1", b"secret").unwrap();
            assert_eq!(&**master.open("p0", "obj1", &sealed).unwrap(), b"secret");
            assert!(master.open("p1", "obj1", &sealed).is_err());
            assert!(master.open("p0", "obj2", &sealed).is_err());
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(master.open("p0", "obj1", &bad).is_err());
            let other = MasterKey::generate(alg).unwrap();
            assert!(other.open("p0", "obj1", &sealed).is_err());
        }
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let key = RootKey::generate().unwrap();
        std::fs::write(&path, key.to_hex().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(RootKey::from_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(*RootKey::from_file(&path).unwrap().0, *key.0);
    }
}
