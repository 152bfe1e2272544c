//! Object handles, allocated per tenant.
//!
//! Each tenant has its own counter, so a handle value says nothing about any
//! other tenant. Token-object handles are stored with their objects and stay
//! the same across restarts; to never hand a value out twice, the counter
//! reserves blocks of handles in the store (one write per block) and starts
//! after the last reservation when the server restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hsmlink_protocol::ObjectHandle;
use tracing::warn;

use crate::error::{CkResult, Ckr};
use crate::names::TenantName;
use crate::store::Store;

/// Handles reserved per store write.
const BLOCK: u64 = 1024;

#[derive(Debug)]
pub struct HandleAllocator {
    store: Arc<dyn Store>,
    tenants: Mutex<HashMap<TenantName, Counter>>,
    /// Per tenant, the highest handle its partitions held at startup.
    floors: HashMap<TenantName, u64>,
}

#[derive(Debug)]
struct Counter {
    next: u64,
    /// Every handle below this one may have been handed out.
    reserved: u64,
}

impl HandleAllocator {
    pub fn new(store: Arc<dyn Store>, floors: HashMap<TenantName, u64>) -> Self {
        Self {
            store,
            tenants: Mutex::new(HashMap::new()),
            floors,
        }
    }

    /// A handle the tenant has never seen.
    pub fn allocate(&self, tenant: &TenantName) -> CkResult<ObjectHandle> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = match tenants.get_mut(tenant) {
            Some(counter) => counter,
            None => {
                let stored = self
                    .store
                    .handle_reservation(tenant.as_str())
                    .map_err(|e| {
                        warn!(%tenant, "cannot read the handle reservation: {e}");
                        Ckr::DEVICE
                    })?;
                let floor = self.floors.get(tenant).copied().unwrap_or(0);
                let next = stored.max(floor.saturating_add(1)).max(1);
                tenants.entry(tenant.clone()).or_insert(Counter {
                    next,
                    reserved: next,
                })
            }
        };
        if counter.next >= counter.reserved {
            let up_to = counter.next.checked_add(BLOCK).ok_or(Ckr::DEVICE)?;
            self.store
                .set_handle_reservation(tenant.as_str(), up_to)
                .map_err(|e| {
                    warn!(%tenant, "cannot reserve object handles: {e}");
                    Ckr::DEVICE
                })?;
            counter.reserved = up_to;
        }
        let handle = counter.next;
        counter.next += 1;
        Ok(ObjectHandle(handle))
    }
}
