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

pub use sqlite::SqliteStore;

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
}

pub trait Store: Send + Sync + Debug {
    fn partition(&self, name: &str) -> Result<Option<PartitionRecord>, StoreError>;
    fn insert_partition(&self, record: &PartitionRecord) -> Result<(), StoreError>;
    /// Writes every field of the record but its name and algorithms.
    fn update_partition(&self, record: &PartitionRecord) -> Result<(), StoreError>;
    /// `C_InitToken`: the partition's new state and no objects (nor device
    /// object ids), at once.
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
    /// The tenant's handles below this value may have been handed out.
    fn handle_reservation(&self, tenant: &str) -> Result<u64, StoreError>;
    fn set_handle_reservation(&self, tenant: &str, up_to: u64) -> Result<(), StoreError>;
}
