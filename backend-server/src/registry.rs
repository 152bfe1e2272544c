//! Tenants, their slots, and the partition behind each slot.
//!
//! Built from the configuration today; from the store once tenants can be
//! created at run time. Slot ids are the tenant's own: two tenants may both
//! have a slot 0, each mapped onto a different partition.

use std::collections::BTreeMap;

use hsmlink_protocol::SlotId;

use crate::config::{AlgorithmsConfig, DeviceName, DriverKind, TenantConfig};
use crate::names::{PartitionName, TenantName, TokenSerial};
use crate::soft::mechanisms::MechanismEntry;
use crate::{pkcs11, soft};

#[derive(Debug, Default)]
pub struct Registry {
    tenants: BTreeMap<TenantName, Tenant>,
}

#[derive(Debug)]
pub struct Tenant {
    pub name: TenantName,
    slots: BTreeMap<SlotId, Slot>,
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
    /// What the slot lists: the soft driver's table, or for a device what
    /// it and hsmlink both serve, known once the device is open (empty
    /// until then).
    mechanisms: &'static [MechanismEntry],
}

impl Registry {
    /// The configuration has been checked (unique names and ids), so later
    /// duplicates cannot occur; if they did, the last one would win.
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
                            mechanisms: match s.driver {
                                DriverKind::Soft => soft::mechanisms::SOFT_MECHANISMS,
                                DriverKind::Pkcs11 => &[],
                            },
                        };
                        (slot.id, slot)
                    })
                    .collect();
                let tenant = Tenant {
                    name: t.name.clone(),
                    slots,
                };
                (tenant.name.clone(), tenant)
            })
            .collect();
        Self { tenants }
    }

    pub fn tenant(&self, name: &TenantName) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// Sets the mechanism table of the slot showing `partition` (a device's
    /// table, known once the device is open).
    pub fn set_mechanisms(
        &mut self,
        partition: &PartitionName,
        mechanisms: &'static [MechanismEntry],
    ) {
        for tenant in self.tenants.values_mut() {
            for slot in tenant.slots.values_mut() {
                if &slot.partition == partition {
                    slot.mechanisms = mechanisms;
                }
            }
        }
    }
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
    /// Every configured partition is reachable for now; suspended partitions
    /// and unreachable devices will report no token.
    pub fn token_present(&self) -> bool {
        true
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
