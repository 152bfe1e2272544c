//! Tenants, their slots, and the partition behind each slot.
//!
//! The registry lives in the store: at start, server.toml's tenants and
//! slots are seeded into it (the file stays the truth for what it names:
//! a slot it drops or changes is dropped or changed here too), and the admin
//! API adds tenants and partitions at run time, which the data plane serves
//! at once, without a restart. Slot ids are the tenant's own: two tenants
//! may both have a slot 0, each mapped onto a different partition.
//!
//! A partition is active, suspended (slot shown without a token, keys
//! kept), terminated (keys erased, slot gone, name never used again) or
//! unavailable (its keys cannot be opened: the key ring has no
//! key-encryption key for it, as after a termination restored from an
//! older backup).
//!
//! The registry also holds what the data plane and the admin plane share
//! while running: the revoked certificates, the open connections (so that
//! a revocation cuts them) and the counters `/metrics` exports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use hsmlink_protocol::SlotId;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{
    AlgorithmsConfig, DeviceConfig, DeviceName, DriverKind, SecureTemplates, TenantConfig,
};
use crate::dispatch::StateError;
use crate::driver::PartitionDriver;
use crate::identity::Fingerprint;
use crate::names::{PartitionName, TenantName, TokenSerial};
use crate::pkcs11::Pkcs11Partition;
use crate::pkcs11::device::{Device, DeviceError};
use crate::pkcs11::placement;
use crate::soft::keys::{KeyError, RootKey};
use crate::soft::mechanisms::MechanismEntry;
use crate::soft::partition::{KeyState, SecurityPolicy, SoftPartition, key_state};
use crate::store::{CertificateRow, SlotRow, Store, StoreError, TenantRow};
use crate::{pkcs11, soft};

/// Where a row came from.
pub const SOURCE_CONFIG: &str = "config";
pub const SOURCE_ADMIN: &str = "admin";

#[derive(Debug, Default)]
pub struct Registry {
    tenants: RwLock<BTreeMap<TenantName, Arc<Tenant>>>,
    partitions: RwLock<BTreeMap<PartitionName, Partition>>,
    backing: OnceLock<Backing>,
    /// Admin changes, one at a time.
    admin: Mutex<()>,
    live: Arc<Live>,
}

/// What runtime allocation needs.
#[derive(Debug)]
struct Backing {
    store: Arc<dyn Store>,
    root: Option<RootKey>,
    devices: Vec<DeviceConfig>,
    policy: SecurityPolicy,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: TenantName,
    pub disabled: bool,
    slots: BTreeMap<SlotId, Slot>,
}

/// Where a partition stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionState {
    Active,
    Suspended,
    Terminated,
    /// Its keys cannot be opened (no key-encryption key in the key ring).
    Unavailable,
}

impl PartitionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
            Self::Unavailable => "unavailable",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "terminated" => Self::Terminated,
            _ => Self::Unavailable,
        }
    }
}

/// A tenant's slot: the partition it shows, on which driver.
#[derive(Clone, Debug)]
pub struct Slot {
    pub id: SlotId,
    pub partition: PartitionName,
    pub driver: DriverKind,
    pub serial: TokenSerial,
    pub algorithms: AlgorithmsConfig,
    /// pkcs11 driver: the device holding the partition.
    pub device: Option<DeviceName>,
    /// pkcs11 driver: the devices holding copies.
    pub replicas: Vec<DeviceName>,
    pub state: PartitionState,
    /// The secure-template rules (server.toml's `secure_templates`; a
    /// partition server.toml does not name gets the default, strict).
    pub secure_templates: SecureTemplates,
    /// What the slot lists: the soft driver's table, or for a device what
    /// it and hsmlink both serve, known once the device is open (empty
    /// until then).
    mechanisms: &'static [MechanismEntry],
}

/// An open partition, behind its driver.
#[derive(Clone, Debug)]
pub struct Partition {
    pub driver: Arc<dyn PartitionDriver>,
    pub kind: PartitionKind,
    /// A device's table (what it and hsmlink both serve).
    mechanisms: Option<&'static [MechanismEntry]>,
}

#[derive(Clone, Debug)]
pub enum PartitionKind {
    Soft(Arc<SoftPartition>),
    Pkcs11 {
        device: DeviceName,
        partition: Arc<Pkcs11Partition>,
    },
}

/// An admin change that could not be made: HTTP status and a message
/// (never a secret).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// What the admin API asks for when it allocates a partition.
#[derive(Clone, Debug)]
pub struct Allocation {
    pub driver: DriverKind,
    /// The tenant's slot id (default: one more than its highest).
    pub slot: Option<u64>,
    pub algorithms: AlgorithmsConfig,
    pub device: Option<DeviceName>,
    /// pkcs11 driver: how many devices hold the partition (the server
    /// chooses the ones `device` does not name; see `pkcs11::placement`).
    pub replica_count: Option<u32>,
    /// Default: `<tenant>-p<slot>`, or with a suffix if that was ever used.
    pub partition: Option<PartitionName>,
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Registry {
    /// The seed of server.toml. [`Registry::attach`] merges it with the
    /// store; until then no partition is open.
    pub fn from_config(tenants: &[TenantConfig]) -> Self {
        let tenants = tenants
            .iter()
            .map(|t| {
                let slots = t
                    .slots
                    .iter()
                    .map(|s| {
                        let slot = Slot {
                            id: SlotId(s.id),
                            partition: s.partition.clone(),
                            driver: s.driver,
                            serial: s.serial.clone(),
                            algorithms: s.algorithms,
                            device: s.device.clone(),
                            replicas: s.replicas.clone(),
                            state: PartitionState::Active,
                            secure_templates: s.secure_templates,
                            mechanisms: mechanisms_of(s.driver),
                        };
                        (slot.id, slot)
                    })
                    .collect();
                let tenant = Tenant {
                    name: t.name.clone(),
                    disabled: false,
                    slots,
                };
                (tenant.name.clone(), Arc::new(tenant))
            })
            .collect();
        Self {
            tenants: RwLock::new(tenants),
            ..Self::default()
        }
    }

    /// Merges the seed into the store, loads every tenant and slot of the
    /// store and opens their partitions. Returns, per tenant, the highest
    /// object handle its partitions hold.
    pub fn attach(
        &self,
        store: Arc<dyn Store>,
        root: Option<RootKey>,
        devices: &[DeviceConfig],
        policy: SecurityPolicy,
    ) -> Result<HashMap<TenantName, u64>, StateError> {
        let seed: Vec<Arc<Tenant>> = self.read_tenants().values().cloned().collect();
        seed_store(store.as_ref(), &seed)?;
        let backing = Backing {
            store: store.clone(),
            root,
            devices: devices.to_vec(),
            policy,
        };
        let seeded: HashSet<&TenantName> = seed.iter().map(|t| &t.name).collect();
        // Not kept in the store: server.toml says it, for its partitions.
        let templates: HashMap<&PartitionName, SecureTemplates> = seed
            .iter()
            .flat_map(|t| t.slots())
            .map(|s| (&s.partition, s.secure_templates))
            .collect();
        let mut tenants: BTreeMap<TenantName, Tenant> = BTreeMap::new();
        for row in store.tenants()? {
            let Ok(name) = TenantName::parse(&row.name) else {
                warn!(
                    tenant = row.name,
                    "a tenant of the store has an invalid name: skipped"
                );
                continue;
            };
            // A tenant server.toml seeded once and no longer names.
            if row.source == SOURCE_CONFIG && !seeded.contains(&name) {
                continue;
            }
            tenants.insert(
                name.clone(),
                Tenant {
                    name,
                    disabled: row.disabled,
                    slots: BTreeMap::new(),
                },
            );
        }
        let mut partitions = BTreeMap::new();
        let mut floors: HashMap<TenantName, u64> = HashMap::new();
        for row in store.slots()? {
            let Some(mut slot) = slot_of_row(&row) else {
                warn!(
                    partition = row.partition,
                    "a slot of the store cannot be read: skipped"
                );
                continue;
            };
            let Ok(tenant_name) = TenantName::parse(&row.tenant) else {
                continue;
            };
            let Some(tenant) = tenants.get_mut(&tenant_name) else {
                continue;
            };
            if slot.state == PartitionState::Terminated {
                continue;
            }
            if let Some(rules) = templates.get(&slot.partition) {
                slot.secure_templates = *rules;
            }
            match open_partition(&backing, &slot)? {
                Some(partition) => {
                    if let Some(table) = partition.mechanisms {
                        slot.mechanisms = table;
                    }
                    let floor = floors.entry(tenant_name.clone()).or_default();
                    *floor = (*floor).max(partition.driver.max_handle());
                    partitions.insert(slot.partition.clone(), partition);
                }
                None => slot.state = PartitionState::Unavailable,
            }
            tenant.slots.insert(slot.id, slot);
        }
        let revoked = store
            .certificates()?
            .into_iter()
            .filter(|c| c.revoked_at.is_some())
            .filter_map(|c| parse_fingerprint(&c.fingerprint))
            .collect();
        *self
            .live
            .revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner) = revoked;
        *self.write_tenants() = tenants
            .into_iter()
            .map(|(name, tenant)| (name, Arc::new(tenant)))
            .collect();
        *self.write_partitions() = partitions;
        // Attached once; a second attach (never done) keeps the first backing.
        let _ = self.backing.set(backing);
        Ok(floors)
    }

    fn read_tenants(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TenantName, Arc<Tenant>>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_tenants(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<TenantName, Arc<Tenant>>> {
        self.tenants.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_partitions(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<PartitionName, Partition>> {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant as the data plane serves it: `None` if unknown or disabled.
    pub fn tenant(&self, name: &TenantName) -> Option<Arc<Tenant>> {
        self.read_tenants()
            .get(name)
            .filter(|t| !t.disabled)
            .cloned()
    }

    /// The tenant, disabled or not.
    pub fn any_tenant(&self, name: &TenantName) -> Option<Arc<Tenant>> {
        self.read_tenants().get(name).cloned()
    }

    /// Every tenant, disabled ones included.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.read_tenants().values().cloned().collect()
    }

    /// The open partition `name`.
    pub fn partition(&self, name: &PartitionName) -> Option<Partition> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The devices of the open `pkcs11` partitions, each with whether it is
    /// in service (for `GET /metrics`).
    pub fn devices(&self) -> Vec<(Arc<crate::pkcs11::device::Device>, bool)> {
        let partitions = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut devices = Vec::new();
        for partition in partitions.values() {
            if let PartitionKind::Pkcs11 { partition, .. } = &partition.kind {
                for replica in partition.replicas() {
                    devices.push((replica.device.clone(), replica.is_up()));
                }
            }
        }
        devices.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        devices
    }

    /// The driver of an open partition.
    pub fn driver(&self, name: &PartitionName) -> Option<Arc<dyn PartitionDriver>> {
        self.partition(name).map(|p| p.driver)
    }

    /// What the data plane and the admin plane share while running.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    fn backing(&self) -> Result<&Backing, RegistryError> {
        self.backing
            .get()
            .ok_or_else(|| RegistryError::Internal("the registry has no store".to_owned()))
    }

    /// The store the registry lives in.
    pub fn store(&self) -> Result<Arc<dyn Store>, RegistryError> {
        Ok(self.backing()?.store.clone())
    }

    fn admin_lock(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces a tenant's entry (copy on write: readers keep the old one).
    fn update_tenant(&self, name: &TenantName, f: impl FnOnce(&mut Tenant)) {
        let mut tenants = self.write_tenants();
        if let Some(tenant) = tenants.get(name) {
            let mut next = Tenant::clone(tenant);
            f(&mut next);
            tenants.insert(name.clone(), Arc::new(next));
        }
    }

    // ---- Admin changes ----

    /// A new tenant, without slots.
    pub fn create_tenant(&self, name: &TenantName) -> Result<TenantRow, RegistryError> {
        let _admin = self.admin_lock();
        let store = &self.backing()?.store;
        let row = TenantRow {
            name: name.to_string(),
            disabled: false,
            source: SOURCE_ADMIN.to_owned(),
            created_at: unix_now(),
        };
        if self.any_tenant(name).is_some() || !store.insert_tenant(&row)? {
            return Err(RegistryError::Conflict(format!(
                "tenant {name} exists already"
            )));
        }
        self.write_tenants().insert(
            name.clone(),
            Arc::new(Tenant {
                name: name.clone(),
                disabled: false,
                slots: BTreeMap::new(),
            }),
        );
        info!(tenant = %name, "tenant created");
        Ok(row)
    }

    /// Disables (or enables again) a tenant: a disabled tenant's
    /// connections are cut and new ones refused; its partitions are kept.
    pub fn set_tenant_disabled(
        &self,
        name: &TenantName,
        disabled: bool,
    ) -> Result<(), RegistryError> {
        let _admin = self.admin_lock();
        if self.any_tenant(name).is_none() {
            return Err(RegistryError::NotFound(format!("no tenant {name}")));
        }
        self.backing()?
            .store
            .set_tenant_disabled(name.as_str(), disabled)?;
        self.update_tenant(name, |t| t.disabled = disabled);
        if disabled {
            let cut = self.live.cut(|c| &c.tenant == name);
            info!(tenant = %name, connections_cut = cut, "tenant disabled");
        } else {
            info!(tenant = %name, "tenant enabled");
        }
        Ok(())
    }

    /// Allocates a clean partition for `tenant`: a fresh master key and
    /// key-encryption key, no objects, a token nobody has initialised.
    pub fn allocate(
        &self,
        tenant: &TenantName,
        request: &Allocation,
    ) -> Result<SlotRow, RegistryError> {
        let _admin = self.admin_lock();
        let backing = self.backing()?;
        let store = &backing.store;
        let current = self
            .any_tenant(tenant)
            .ok_or_else(|| RegistryError::NotFound(format!("no tenant {tenant}")))?;
        let rows = store.slots()?;
        let slot_id = match request.slot {
            Some(id) => id,
            None => rows
                .iter()
                .filter(|r| r.tenant == tenant.as_str())
                .map(|r| r.slot_id.saturating_add(1))
                .chain(current.slots.keys().map(|s| s.0.saturating_add(1)))
                .max()
                .unwrap_or(0),
        };
        if current.slots.contains_key(&SlotId(slot_id)) {
            return Err(RegistryError::Conflict(format!(
                "tenant {tenant} has a slot {slot_id} already"
            )));
        }
        let used: HashSet<&str> = rows.iter().map(|r| r.partition.as_str()).collect();
        let partition = match &request.partition {
            Some(name) => name.clone(),
            None => default_partition_name(tenant, slot_id, &used)?,
        };
        if used.contains(partition.as_str()) || self.partition(&partition).is_some() {
            return Err(RegistryError::Conflict(format!(
                "partition name {partition} was used before (names are never reused)"
            )));
        }
        let (algorithms, device) = match request.driver {
            DriverKind::Soft => {
                if request.device.is_some() || request.replica_count.is_some() {
                    return Err(RegistryError::Invalid(
                        "device and replica_count: only for the pkcs11 driver".to_owned(),
                    ));
                }
                if backing.root.is_none() {
                    return Err(RegistryError::Unsupported(
                        "the soft driver has no root key on this server ([soft] in server.toml)"
                            .to_owned(),
                    ));
                }
                (request.algorithms.soft().as_str().to_owned(), None)
            }
            DriverKind::Pkcs11 => {
                let taken = |name: &str| {
                    rows.iter().any(|r| {
                        r.state != PartitionState::Terminated.as_str()
                            && r.device
                                .as_deref()
                                .is_some_and(|d| d.split(',').any(|d| d == name))
                    })
                };
                let names: Vec<String> =
                    backing.devices.iter().map(|d| d.name.to_string()).collect();
                let hsms: Vec<String> = backing
                    .devices
                    .iter()
                    .map(|d| d.module.display().to_string())
                    .collect();
                let candidates: Vec<placement::Candidate<'_>> = names
                    .iter()
                    .zip(&hsms)
                    .map(|(name, hsm)| placement::Candidate {
                        name,
                        hsm,
                        taken: taken(name),
                    })
                    .collect();
                let count =
                    usize::try_from(request.replica_count.unwrap_or(1)).unwrap_or(usize::MAX);
                if request.device.is_none() && request.replica_count.is_none() {
                    return Err(RegistryError::Invalid(
                        "the pkcs11 driver needs device (a [[devices]] name) or replica_count (the server chooses)"
                            .to_owned(),
                    ));
                }
                if let Some(device) = &request.device
                    && !backing.devices.iter().any(|d| d.name == *device)
                {
                    return Err(RegistryError::NotFound(format!(
                        "no device {device} in server.toml ([[devices]])"
                    )));
                }
                let chosen = placement::choose(
                    &candidates,
                    count,
                    request.device.as_ref().map(|d| d.as_str()),
                )
                .map_err(|e| RegistryError::Conflict(e.to_string()))?;
                (pkcs11::ALGORITHMS.to_owned(), Some(chosen.join(",")))
            }
        };
        let serial = new_serial(&rows)?;
        let now = unix_now();
        let row = SlotRow {
            partition: partition.to_string(),
            tenant: tenant.to_string(),
            slot_id,
            driver: driver_str(request.driver).to_owned(),
            serial: serial.to_string(),
            algorithms,
            device,
            state: PartitionState::Active.as_str().to_owned(),
            source: SOURCE_ADMIN.to_owned(),
            created_at: now,
            changed_at: now,
        };
        let mut slot = slot_of_row(&row)
            .ok_or_else(|| RegistryError::Internal("a new slot does not read back".to_owned()))?;
        if store.partition(partition.as_str())?.is_some() {
            // Data of a partition the registry never knew (an older
            // server.toml): never handed to anyone else.
            return Err(RegistryError::Conflict(format!(
                "the store holds data of a partition named {partition}: choose another name"
            )));
        }
        store
            .insert_slot(&row)
            .map_err(|e| RegistryError::Conflict(format!("cannot allocate the partition: {e}")))?;
        let partition_handle = match open_partition(backing, &slot) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => {
                // Leave no half-allocated slot behind.
                let mut failed = row.clone();
                failed.state = PartitionState::Terminated.as_str().to_owned();
                let _ = store.update_slot(&failed);
                return Err(RegistryError::Internal(format!(
                    "partition {partition} could not be opened; see the server log"
                )));
            }
        };
        if let Some(table) = partition_handle.mechanisms {
            slot.mechanisms = table;
        }
        self.write_partitions()
            .insert(partition.clone(), partition_handle);
        self.update_tenant(tenant, |t| {
            t.slots.insert(slot.id, slot);
        });
        info!(%tenant, %partition, slot = slot_id, driver = row.driver, "partition allocated");
        Ok(row)
    }

    /// The slot row of partition `name` and its tenant.
    fn slot_row(&self, name: &PartitionName) -> Result<SlotRow, RegistryError> {
        self.backing()?
            .store
            .slots()?
            .into_iter()
            .find(|r| r.partition == name.as_str())
            .ok_or_else(|| RegistryError::NotFound(format!("no partition {name}")))
    }

    /// Suspends (`true`) or resumes (`false`) a partition. Returns its
    /// tenant and slot (the caller logs the tenant's applications out).
    pub fn set_suspended(
        &self,
        name: &PartitionName,
        suspended: bool,
    ) -> Result<(TenantName, SlotId), RegistryError> {
        let _admin = self.admin_lock();
        let mut row = self.slot_row(name)?;
        let state = PartitionState::parse(&row.state);
        let (from, to) = if suspended {
            (PartitionState::Active, PartitionState::Suspended)
        } else {
            (PartitionState::Suspended, PartitionState::Active)
        };
        if state == to {
            return slot_key(&row);
        }
        if state != from {
            return Err(RegistryError::Conflict(format!(
                "partition {name} is {}: it cannot be {}",
                state.as_str(),
                if suspended { "suspended" } else { "resumed" }
            )));
        }
        row.state = to.as_str().to_owned();
        row.changed_at = unix_now();
        self.backing()?.store.update_slot(&row)?;
        let (tenant, slot) = slot_key(&row)?;
        self.update_tenant(&tenant, |t| {
            if let Some(s) = t.slots.get_mut(&slot) {
                s.state = to;
            }
        });
        info!(%tenant, partition = %name, state = to.as_str(), "partition state changed");
        Ok((tenant, slot))
    }

    /// Terminates a partition: cryptographic erase (its key-encryption key
    /// first, then its master key, PIN records and objects), irreversible.
    /// Its audit records are kept; its name is never used again.
    pub fn terminate(&self, name: &PartitionName) -> Result<(TenantName, SlotId), RegistryError> {
        let _admin = self.admin_lock();
        let row = self.slot_row(name)?;
        let state = PartitionState::parse(&row.state);
        if state == PartitionState::Terminated {
            return Err(RegistryError::Conflict(format!(
                "partition {name} is terminated already"
            )));
        }
        if row.driver == driver_str(DriverKind::Pkcs11) {
            return Err(RegistryError::Unsupported(format!(
                "partition {name} is on a vendor device: terminating it needs the pkcs11 driver \
                 to destroy the device's objects, which it cannot do yet; suspend it instead"
            )));
        }
        let (tenant, slot) = slot_key(&row)?;
        // The data plane stops seeing it first.
        self.update_tenant(&tenant, |t| {
            t.slots.remove(&slot);
        });
        let open = self.write_partitions().remove(name);
        self.backing()?
            .store
            .erase_partition(name.as_str(), unix_now())?;
        if let Some(Partition {
            kind: PartitionKind::Soft(soft),
            ..
        }) = open
        {
            soft.erase();
        }
        info!(%tenant, partition = %name, "partition terminated: keys erased");
        Ok((tenant, slot))
    }

    // ---- Certificates ----

    /// Records a certificate the provider issued.
    pub fn record_certificate(&self, row: &CertificateRow) -> Result<(), RegistryError> {
        self.backing()?.store.insert_certificate(row)?;
        Ok(())
    }

    /// Revokes a certificate by serial (hex) or SHA-256 fingerprint (hex):
    /// new handshakes with it fail and its open connections are cut.
    /// Returns the certificate's row and how many connections were cut.
    pub fn revoke(&self, id: &str) -> Result<(CertificateRow, usize), RegistryError> {
        let _admin = self.admin_lock();
        let store = &self.backing()?.store;
        let id = id.to_ascii_lowercase();
        let now = unix_now();
        let row = match store.revoke_certificate(&id, now)? {
            Some(row) => row,
            None => {
                // A certificate never issued through the API (init's): it
                // can be revoked by its fingerprint.
                let Some(_) = parse_fingerprint(&id) else {
                    return Err(RegistryError::NotFound(format!(
                        "no certificate with serial or fingerprint {id}"
                    )));
                };
                let row = CertificateRow {
                    serial: format!("fp:{id}"),
                    fingerprint: id.clone(),
                    tenant: None,
                    subject: String::new(),
                    not_before: 0,
                    not_after: 0,
                    issued_at: now,
                    revoked_at: Some(now),
                    pem: String::new(),
                };
                store.insert_certificate(&row)?;
                row
            }
        };
        let fingerprint = parse_fingerprint(&row.fingerprint).ok_or_else(|| {
            RegistryError::Internal("a stored fingerprint does not parse".to_owned())
        })?;
        self.live
            .revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fingerprint);
        let cut = self.live.cut(|c| c.fingerprint == fingerprint);
        info!(
            serial = row.serial,
            fingerprint = row.fingerprint,
            connections_cut = cut,
            "certificate revoked"
        );
        Ok((row, cut))
    }
}

/// server.toml's tenants and slots into the store.
fn seed_store(store: &dyn Store, seed: &[Arc<Tenant>]) -> Result<(), StateError> {
    let now = unix_now();
    let existing: HashMap<String, SlotRow> = store
        .slots()?
        .into_iter()
        .map(|r| (r.partition.clone(), r))
        .collect();
    let mut named = HashSet::new();
    for tenant in seed {
        store.insert_tenant(&TenantRow {
            name: tenant.name.to_string(),
            disabled: false,
            source: SOURCE_CONFIG.to_owned(),
            created_at: now,
        })?;
        for slot in tenant.slots.values() {
            named.insert(slot.partition.as_str().to_owned());
            let mut row = SlotRow {
                partition: slot.partition.to_string(),
                tenant: tenant.name.to_string(),
                slot_id: slot.id.0,
                driver: driver_str(slot.driver).to_owned(),
                serial: slot.serial.to_string(),
                algorithms: match slot.driver {
                    DriverKind::Soft => slot.algorithms.soft().as_str().to_owned(),
                    DriverKind::Pkcs11 => pkcs11::ALGORITHMS.to_owned(),
                },
                device: device_column(slot),
                state: PartitionState::Active.as_str().to_owned(),
                source: SOURCE_CONFIG.to_owned(),
                created_at: now,
                changed_at: now,
            };
            match existing.get(slot.partition.as_str()) {
                None => store.insert_slot(&row).map_err(|e| {
                    StoreError(format!(
                        "server.toml: partition {} (tenant {}, slot {}) conflicts with the registry: {e}",
                        slot.partition, tenant.name, slot.id.0
                    ))
                })?,
                Some(old) if old.state == PartitionState::Terminated.as_str() => {
                    warn!(
                        partition = %slot.partition,
                        "server.toml names a partition that was terminated: it is not served \
                         (partition names are never reused)"
                    );
                }
                Some(old) if old.tenant != row.tenant => {
                    return Err(StoreError(format!(
                        "server.toml: partition {} belongs to tenant {} in the registry, not {}",
                        slot.partition, old.tenant, tenant.name
                    ))
                    .into());
                }
                Some(old) => {
                    // server.toml is the truth for what it names; the state
                    // (suspended) and the dates are the registry's.
                    row.state = old.state.clone();
                    row.created_at = old.created_at;
                    row.changed_at = old.changed_at;
                    if &row != old {
                        store.update_slot(&row)?;
                    }
                }
            }
        }
    }
    for (partition, row) in existing {
        if row.source == SOURCE_CONFIG && !named.contains(&partition) {
            store.delete_config_slot(&partition)?;
        }
    }
    Ok(())
}

/// Opens a slot's partition; `None` if its keys are erased (no
/// key-encryption key in the key ring).
fn open_partition(backing: &Backing, slot: &Slot) -> Result<Option<Partition>, StateError> {
    match slot.driver {
        DriverKind::Soft => {
            let root = backing
                .root
                .clone()
                .ok_or_else(|| KeyError("the soft driver needs a root key".to_owned()))?;
            if key_state(backing.store.as_ref(), slot.partition.as_str())? == KeyState::Erased {
                error!(
                    partition = %slot.partition,
                    "the key ring has no key-encryption key for this partition (terminated, or \
                     a store of another instance): its keys cannot be decrypted; not served"
                );
                return Ok(None);
            }
            let soft = Arc::new(SoftPartition::open(
                slot.partition.as_str(),
                slot.algorithms.soft(),
                root,
                backing.store.clone(),
                backing.policy,
            )?);
            Ok(Some(Partition {
                driver: soft.clone(),
                kind: PartitionKind::Soft(soft),
                mechanisms: None,
            }))
        }
        DriverKind::Pkcs11 => {
            let name = slot.device.clone().ok_or_else(|| DeviceError {
                device: String::new(),
                message: format!("partition {} names no device", slot.partition),
            })?;
            let mut devices = Vec::new();
            for name in std::iter::once(&name).chain(&slot.replicas) {
                let config = backing
                    .devices
                    .iter()
                    .find(|d| d.name == *name)
                    .ok_or_else(|| DeviceError {
                        device: name.to_string(),
                        message: format!(
                            "partition {} names a device that is not configured",
                            slot.partition
                        ),
                    })?;
                devices.push(Device::open(config)?);
            }
            let partition = Arc::new(Pkcs11Partition::open(
                slot.partition.as_str(),
                devices,
                backing.store.clone(),
                backing.policy,
            )?);
            partition.watch();
            // The slot's list, fixed for the life of the partition: one
            // small table per opened device, leaked once.
            let table: &'static [MechanismEntry] =
                Box::leak(partition.mechanisms().to_vec().into_boxed_slice());
            Ok(Some(Partition {
                driver: partition.clone(),
                kind: PartitionKind::Pkcs11 {
                    device: name,
                    partition,
                },
                mechanisms: Some(table),
            }))
        }
    }
}

fn mechanisms_of(driver: DriverKind) -> &'static [MechanismEntry] {
    match driver {
        DriverKind::Soft => soft::mechanisms::SOFT_MECHANISMS,
        DriverKind::Pkcs11 => &[],
    }
}

/// The store's `device` column of a slot: its device, then its replicas,
/// comma-separated (device names never hold a comma).
fn device_column(slot: &Slot) -> Option<String> {
    let device = slot.device.as_ref()?;
    Some(
        std::iter::once(device)
            .chain(&slot.replicas)
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub fn driver_str(driver: DriverKind) -> &'static str {
    match driver {
        DriverKind::Soft => "soft",
        DriverKind::Pkcs11 => "pkcs11",
    }
}

fn slot_of_row(row: &SlotRow) -> Option<Slot> {
    let driver = match row.driver.as_str() {
        "soft" => DriverKind::Soft,
        "pkcs11" => DriverKind::Pkcs11,
        _ => return None,
    };
    let algorithms = match row.algorithms.as_str() {
        "gmt" => AlgorithmsConfig::Gmt,
        _ => AlgorithmsConfig::International,
    };
    Some(Slot {
        id: SlotId(row.slot_id),
        partition: PartitionName::parse(&row.partition).ok()?,
        driver,
        serial: TokenSerial::parse(&row.serial).ok()?,
        algorithms,
        device: match row.device.as_deref().and_then(|d| d.split(',').next()) {
            Some(d) => Some(DeviceName::parse(d).ok()?),
            None => None,
        },
        replicas: row
            .device
            .as_deref()
            .map(|d| d.split(',').skip(1).map(DeviceName::parse).collect())
            .transpose()
            .ok()?
            .unwrap_or_default(),
        state: PartitionState::parse(&row.state),
        secure_templates: SecureTemplates::default(),
        mechanisms: mechanisms_of(driver),
    })
}

fn slot_key(row: &SlotRow) -> Result<(TenantName, SlotId), RegistryError> {
    let tenant = TenantName::parse(&row.tenant)
        .map_err(|e| RegistryError::Internal(format!("registry: {e}")))?;
    Ok((tenant, SlotId(row.slot_id)))
}

fn default_partition_name(
    tenant: &TenantName,
    slot: u64,
    used: &HashSet<&str>,
) -> Result<PartitionName, RegistryError> {
    let base = format!("{tenant}-p{slot}");
    for n in 0..1000u32 {
        let candidate = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if let Ok(name) = PartitionName::parse(&candidate)
            && !used.contains(name.as_str())
        {
            return Ok(name);
        }
    }
    Err(RegistryError::Invalid(
        "cannot make a partition name: give one".to_owned(),
    ))
}

/// 16 random hex digits not used by a live slot.
fn new_serial(rows: &[SlotRow]) -> Result<TokenSerial, RegistryError> {
    for _ in 0..16 {
        let mut bytes = [0u8; 8];
        soft::keys::fill_random(&mut bytes)
            .map_err(|_| RegistryError::Internal("the random generator failed".to_owned()))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !rows.iter().any(|r| r.serial == text) {
            return TokenSerial::parse(&text).map_err(|e| RegistryError::Internal(e.to_string()));
        }
    }
    Err(RegistryError::Internal(
        "cannot draw a token serial".to_owned(),
    ))
}

/// A SHA-256 fingerprint from 64 hex digits.
pub fn parse_fingerprint(text: &str) -> Option<Fingerprint> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        bytes[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(Fingerprint(bytes))
}

impl Tenant {
    /// In ascending slot id order.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    pub fn slot(&self, id: SlotId) -> Option<&Slot> {
        self.slots.get(&id)
    }
}

impl Slot {
    /// Only an active partition shows a token; a suspended or unavailable
    /// one leaves the slot empty.
    pub fn token_present(&self) -> bool {
        self.state == PartitionState::Active
    }

    /// The mechanisms the slot's driver serves.
    pub fn mechanisms(&self) -> &'static [MechanismEntry] {
        self.mechanisms
    }

    /// `CK_TOKEN_INFO.model`.
    pub fn model(&self) -> &'static str {
        match self.driver {
            DriverKind::Soft => soft::MODEL,
            DriverKind::Pkcs11 => pkcs11::MODEL,
        }
    }
}

// ---- Shared while running: revocations, connections, counters ----

/// What the data plane and the admin plane share while running.
#[derive(Debug, Default)]
pub struct Live {
    revoked: RwLock<HashSet<Fingerprint>>,
    connections: Mutex<HashMap<u64, Connection>>,
    pub metrics: Metrics,
}

/// One open tenant connection, as the registry tracks it.
#[derive(Debug)]
pub struct Connection {
    pub tenant: TenantName,
    pub fingerprint: Fingerprint,
    cut: watch::Sender<bool>,
}

/// Removes the connection from [`Live`] when dropped.
#[derive(Debug)]
pub struct Tracked {
    live: Arc<Live>,
    id: u64,
    /// Becomes true when the connection must close.
    pub cut: watch::Receiver<bool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.lock_connections().remove(&self.id);
    }
}

impl Live {
    fn lock_connections(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_revoked(&self, fingerprint: &Fingerprint) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(fingerprint)
    }

    /// Tracks an accepted connection until the guard drops.
    pub fn track(
        self: &Arc<Self>,
        id: u64,
        tenant: TenantName,
        fingerprint: Fingerprint,
    ) -> Tracked {
        let (cut, receiver) = watch::channel(false);
        self.lock_connections().insert(
            id,
            Connection {
                tenant,
                fingerprint,
                cut,
            },
        );
        Tracked {
            live: self.clone(),
            id,
            cut: receiver,
        }
    }

    /// Cuts every connection matching `which`; returns how many.
    pub fn cut(&self, which: impl Fn(&Connection) -> bool) -> usize {
        let connections = self.lock_connections();
        let mut n = 0;
        for connection in connections.values().filter(|c| which(c)) {
            let _ = connection.cut.send(true);
            n += 1;
        }
        self.metrics
            .connections_cut
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    pub fn open_connections(&self) -> usize {
        self.lock_connections().len()
    }
}

/// Counters of the data plane, exported by the admin plane's `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    /// Failed handshakes, refused hellos, revoked certificates.
    pub connections_refused: AtomicU64,
    /// Cut by a revocation or a disabled tenant.
    pub connections_cut: AtomicU64,
    pub requests_ok: AtomicU64,
    /// Failed requests by `CK_RV`.
    requests_failed: Mutex<BTreeMap<u64, u64>>,
    /// Admin API requests by HTTP status.
    admin_requests: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    pub fn request(&self, rv: u64) {
        if rv == 0 {
            self.requests_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            *self
                .requests_failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(rv)
                .or_default() += 1;
        }
    }

    pub fn admin_request(&self, status: u16) {
        *self
            .admin_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(status)
            .or_default() += 1;
    }

    /// Admin API requests by HTTP status, ascending.
    pub fn admin_requests(&self) -> Vec<(u16, u64)> {
        self.admin_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect()
    }

    /// Failed requests by `CK_RV`, ascending.
    pub fn requests_failed(&self) -> Vec<(u64, u64)> {
        self.requests_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(rv, n)| (*rv, *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::dispatch::ServerState;
    use crate::soft::keys::RootKey;
    use crate::store::SqliteStore;
    use crate::testing::POLICY;

    fn state(dir: &std::path::Path, root: &RootKey) -> ServerState {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("hsmlink.db")).unwrap());
        ServerState::with_store(
            Registry::from_config(&[]),
            store,
            Some(root.clone()),
            POLICY,
            Duration::from_secs(1),
        )
        .unwrap()
    }

    fn soft(slot: u64) -> Allocation {
        Allocation {
            driver: DriverKind::Soft,
            slot: Some(slot),
            algorithms: AlgorithmsConfig::International,
            device: None,
            replica_count: None,
            partition: None,
        }
    }

    /// Termination destroys the partition's key-encryption key: a copy of
    /// the store taken before (a backup) cannot open the partition with
    /// the key ring as it is after, while the other partitions open.
    #[test]
    fn termination_defeats_older_backups() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::generate().unwrap();
        let acme = TenantName::parse("acme").unwrap();
        let backup = dir.path().join("backup.db");
        {
            let s = state(dir.path(), &root);
            s.registry.create_tenant(&acme).unwrap();
            let p0 = s.registry.allocate(&acme, &soft(0)).unwrap();
            let p1 = s.registry.allocate(&acme, &soft(1)).unwrap();
            assert_eq!(
                (p0.partition.as_str(), p1.partition.as_str()),
                ("acme-p0", "acme-p1")
            );
            // A slot id in use, a name ever used: refused.
            assert!(matches!(
                s.registry.allocate(&acme, &soft(0)),
                Err(RegistryError::Conflict(_))
            ));
            s.registry.store().unwrap().backup_into(&backup).unwrap();
            let name = PartitionName::parse("acme-p0").unwrap();
            s.registry.set_suspended(&name, true).unwrap();
            let tenant = s.registry.tenant(&acme).unwrap();
            assert!(!tenant.slot(SlotId(0)).unwrap().token_present());
            s.registry.set_suspended(&name, false).unwrap();
            s.registry.terminate(&name).unwrap();
            assert!(s.registry.tenant(&acme).unwrap().slot(SlotId(0)).is_none());
            assert!(s.registry.driver(&name).is_none());
            let reuse = Allocation {
                partition: Some(name.clone()),
                ..soft(5)
            };
            assert!(matches!(
                s.registry.allocate(&acme, &reuse),
                Err(RegistryError::Conflict(_))
            ));
            let store = s.registry.store().unwrap();
            assert!(store.partition("acme-p0").unwrap().is_none());
            assert!(matches!(
                key_state(store.as_ref(), "acme-p1").unwrap(),
                KeyState::Sealed(_)
            ));
        }
        // "Elsewhere": the older copy, the current key ring, the same root key.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::copy(&backup, elsewhere.path().join("hsmlink.db")).unwrap();
        std::fs::copy(
            crate::store::keyring_path(&dir.path().join("hsmlink.db")),
            crate::store::keyring_path(&elsewhere.path().join("hsmlink.db")),
        )
        .unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&elsewhere.path().join("hsmlink.db")).unwrap());
        assert_eq!(
            key_state(store.as_ref(), "acme-p0").unwrap(),
            KeyState::Erased
        );
        let opened = SoftPartition::open(
            "acme-p0",
            crate::soft::keys::Algorithms::International,
            root.clone(),
            store.clone(),
            POLICY,
        );
        assert!(opened.is_err());
        drop(store);
        let s = state(elsewhere.path(), &root);
        let tenant = s.registry.tenant(&acme).unwrap();
        assert_eq!(
            tenant.slot(SlotId(0)).unwrap().state,
            PartitionState::Unavailable
        );
        assert_eq!(
            tenant.slot(SlotId(1)).unwrap().state,
            PartitionState::Active
        );
    }

    #[test]
    fn disabled_tenants_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::generate().unwrap();
        let s = state(dir.path(), &root);
        let acme = TenantName::parse("acme").unwrap();
        s.registry.create_tenant(&acme).unwrap();
        assert!(matches!(
            s.registry.create_tenant(&acme),
            Err(RegistryError::Conflict(_))
        ));
        s.registry.set_tenant_disabled(&acme, true).unwrap();
        assert!(s.registry.tenant(&acme).is_none());
        assert!(s.registry.any_tenant(&acme).is_some());
        drop(s);
        let s = state(dir.path(), &root);
        assert!(s.registry.tenant(&acme).is_none());
        s.registry.set_tenant_disabled(&acme, false).unwrap();
        assert!(s.registry.tenant(&acme).is_some());
    }
}
