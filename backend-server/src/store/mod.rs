//! Where partitions and token objects are kept: a trait, one implementation
//! per backend (kryoptic's `storage/mod.rs` is the model). SQLite today
//! ([`sqlite`]); PostgreSQL when several servers share one pool.
//!
//! The store sees only what the drivers give it: wrapped master keys, PIN
//! hashes, clear public attributes and sealed blobs (soft driver); PIN
//! hashes and the map of tenant handles to device object ids (pkcs11
//! driver). Every method returns once its change is durable.

pub mod sqlite;

use std::fmt::Debug;
use std::path::Path;

pub use sqlite::{SqliteStore, keyring_path};

/// A store operation failed; the change was not made. The message comes
/// from the database and never holds a value we wrote.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// One partition: its token state, and for the soft driver its keys. A
/// pkcs11 partition has `algorithms = "pkcs11"` and no master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub name: String,
    /// "international" (AES-256-GCM) or "gmt" (SM4-GCM): fixed at allocation.
    pub algorithms: String,
    /// The partition master key, AES-256-GCM under the instance root key.
    pub wrapped_master_key: Vec<u8>,
    pub label: String,
    pub initialized: bool,
    /// PIN records (argon2id parameters, salt and hash), `None` if unset.
    pub so_pin: Option<String>,
    pub user_pin: Option<String>,
    pub so_failures: u32,
    pub user_failures: u32,
    pub user_pin_to_be_changed: bool,
}

/// One token object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRecord {
    pub partition: String,
    pub object_id: String,
    /// The tenant's handle of the object, stable across restarts.
    pub handle: u64,
    /// Clear attributes: codec encoding of `Vec<Attribute>`.
    pub public_attrs: Vec<u8>,
    /// The other attributes, sealed under the partition master key.
    pub sealed: Vec<u8>,
}

/// One token object of a pkcs11 partition: the tenant's handle and the
/// hsmlink id the object carries on the device (in its `CKA_ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceObjectRecord {
    pub partition: String,
    /// The tenant's handle of the object, stable across restarts.
    pub handle: u64,
    /// 16 random bytes.
    pub uid: Vec<u8>,
    /// `CKA_HSMLINK_KEY_STATE` of a key (vendor modules do not know it):
    /// `None` is active.
    pub key_state: Option<u64>,
    /// A destroyed key whose device object is gone: its remaining
    /// attributes (codec encoding of `Vec<Attribute>`, no key material).
    pub tombstone: Option<Vec<u8>>,
}

/// What a strict partition's wrap ledger holds of one blob that left it
/// by `C_WrapKey` with a standard mechanism ([`crate::wrap_ledger`]): the
/// wrapped key's class, key type, usage and readability, so that an
/// unwrap of the same bytes cannot widen them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapRecord {
    pub partition: String,
    /// SHA-256 of the wrapped bytes.
    pub digest: Vec<u8>,
    pub class: u64,
    pub key_type: u64,
    /// The usage attributes that were true, one bit each
    /// ([`crate::wrap_ledger`] says which).
    pub usage: u64,
    pub sensitive: bool,
    pub extractable: bool,
    /// Unix seconds of the (latest) wrap.
    pub wrapped_at: i64,
}

/// A tenant of the registry (the provider's view: server.toml's tenants
/// are seeded here at start, the admin API adds more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRow {
    pub name: String,
    pub disabled: bool,
    /// "config" (seeded from server.toml) or "admin" (made through the API).
    pub source: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A tenant's slot and the partition behind it. Rows of terminated
/// partitions stay, so a partition name is never used twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRow {
    pub partition: String,
    pub tenant: String,
    pub slot_id: u64,
    /// "soft" or "pkcs11".
    pub driver: String,
    pub serial: String,
    /// Soft driver: "international" or "gmt"; "pkcs11" otherwise.
    pub algorithms: String,
    pub device: Option<String>,
    /// "active", "suspended" or "terminated".
    pub state: String,
    /// "config" or "admin".
    pub source: String,
    pub created_at: i64,
    pub changed_at: i64,
}

/// A client certificate the provider issued, or one it revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRow {
    /// Hex of the certificate's serial number; for a certificate revoked by
    /// fingerprint only (never issued through the API), `fp:` and its
    /// fingerprint.
    pub serial: String,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
    pub tenant: Option<String>,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    /// The certificate (PEM); empty for a certificate known by fingerprint only.
    pub pem: String,
}

pub trait Store: Send + Sync + Debug {
    fn partition(&self, name: &str) -> Result<Option<PartitionRecord>, StoreError>;
    fn insert_partition(&self, record: &PartitionRecord) -> Result<(), StoreError>;
    /// Writes every field of the record but its name and algorithms.
    fn update_partition(&self, record: &PartitionRecord) -> Result<(), StoreError>;
    /// `C_InitToken`: the partition's new state and no objects (nor device
    /// object ids, nor wrap-ledger records: no key of the partition is
    /// left to unwrap them), at once.
    fn reinitialize_partition(&self, record: &PartitionRecord) -> Result<(), StoreError>;
    fn objects(&self, partition: &str) -> Result<Vec<ObjectRecord>, StoreError>;
    /// Inserts or replaces the object (partition, object id).
    fn put_object(&self, record: &ObjectRecord) -> Result<(), StoreError>;
    fn delete_object(&self, partition: &str, object_id: &str) -> Result<(), StoreError>;
    /// The device objects of a pkcs11 partition, by ascending handle.
    fn device_objects(&self, partition: &str) -> Result<Vec<DeviceObjectRecord>, StoreError>;
    /// Records a new device object (its handle and uid are new).
    fn put_device_object(&self, record: &DeviceObjectRecord) -> Result<(), StoreError>;
    fn delete_device_object(&self, partition: &str, handle: u64) -> Result<(), StoreError>;
    /// A device object's key state, and its tombstone once destroyed.
    fn set_device_key_state(
        &self,
        partition: &str,
        handle: u64,
        key_state: u64,
        tombstone: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// The wrap ledger's record of a blob (by its SHA-256), if any.
    fn wrap_record(&self, partition: &str, digest: &[u8])
    -> Result<Option<WrapRecord>, StoreError>;
    /// Records a wrapped blob. The same bytes wrapped again (a
    /// deterministic mechanism, two copies of one value) keep what both
    /// records allow: the usage and extractability of both, sensitive if
    /// either was; if class or key type differ, no usage at all.
    fn put_wrap_record(&self, record: &WrapRecord) -> Result<(), StoreError>;
    /// The tenant's handles below this value may have been handed out.
    fn handle_reservation(&self, tenant: &str) -> Result<u64, StoreError>;
    fn set_handle_reservation(&self, tenant: &str, up_to: u64) -> Result<(), StoreError>;

    // ---- The registry: tenants, slots, certificates (admin plane) ----

    fn tenants(&self) -> Result<Vec<TenantRow>, StoreError>;
    /// Inserts the tenant; an existing one keeps its row.
    fn insert_tenant(&self, row: &TenantRow) -> Result<bool, StoreError>;
    fn set_tenant_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError>;
    /// Every slot, terminated ones included.
    fn slots(&self) -> Result<Vec<SlotRow>, StoreError>;
    /// A new slot; fails if the partition name was ever used, or the
    /// tenant's slot id or the serial is taken by a partition not terminated.
    fn insert_slot(&self, row: &SlotRow) -> Result<(), StoreError>;
    /// Writes every field of a slot row but its partition name.
    fn update_slot(&self, row: &SlotRow) -> Result<(), StoreError>;
    /// Forgets a slot seeded from server.toml that the file no longer has
    /// (its partition's data stay, as before the registry was kept here).
    fn delete_config_slot(&self, partition: &str) -> Result<(), StoreError>;
    fn certificates(&self) -> Result<Vec<CertificateRow>, StoreError>;
    fn insert_certificate(&self, row: &CertificateRow) -> Result<(), StoreError>;
    /// Marks the certificate revoked (by serial or fingerprint); returns
    /// its row, `None` if neither is known.
    fn revoke_certificate(&self, id: &str, at: i64) -> Result<Option<CertificateRow>, StoreError>;

    // ---- The partition key ring (kept out of backups) ----

    /// A key-encryption key of the partition (by its id), wrapped under
    /// the root key.
    fn partition_kek(&self, partition: &str, kek_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Adds a wrapped key-encryption key to the partition's entries.
    fn put_partition_kek(
        &self,
        partition: &str,
        kek_id: &[u8],
        wrapped: &[u8],
    ) -> Result<(), StoreError>;
    /// Destroys every key-encryption key of the partition but `keep`.
    fn retain_partition_kek(&self, partition: &str, keep: &[u8]) -> Result<(), StoreError>;
    /// Termination: destroys the partition's key-encryption key first
    /// (the cryptographic erase: every copy of its master key, backups
    /// included, is undecryptable from then on), then its master key, PIN
    /// records, objects and wrap-ledger records, and marks its slot
    /// terminated. The audit log is
    /// not touched.
    fn erase_partition(&self, partition: &str, at: i64) -> Result<(), StoreError>;

    // ---- Backups ----

    /// A consistent copy of the store (the key ring excluded) into `path`,
    /// which must not exist.
    fn backup_into(&self, path: &Path) -> Result<(), StoreError>;
}
