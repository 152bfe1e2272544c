//! `GET /v1/tenant/report`: a tenant's compliance report, fetched with the
//! tenant's own client certificate (`hsmlink-server report`). For each of
//! its partitions: driver, device (model, firmware, serial where known),
//! FIPS/PCI mode flags where a device reports them, replica placement, a
//! master-key fingerprint, session and PIN limits, and the audit state.
//! Nothing in it is secret, and nothing in it is another tenant's.

use serde_json::{Value, json};

use super::AdminContext;
use super::api::{Reply, rfc3339};
use crate::names::TenantName;
use crate::registry::{PartitionKind, PartitionState, unix_now};
use crate::transport::SERVER_SOFTWARE;

pub fn tenant_report(ctx: &AdminContext, tenant: &TenantName) -> Reply {
    let registry = &ctx.state.registry;
    let Some(current) = registry.tenant(tenant) else {
        return Reply::error(
            hyper::StatusCode::FORBIDDEN,
            format!("tenant {tenant} is unknown or disabled"),
        );
    };
    let settings = &ctx.settings;
    let mut partitions = Vec::new();
    for slot in current.slots() {
        let open = registry.partition(&slot.partition);
        let token = open.as_ref().map(|p| p.driver.token_state());
        let (device, master_key) = match open.as_ref().map(|p| &p.kind) {
            Some(PartitionKind::Soft(soft)) => (
                json!({
                    "kind": "hsmlink software HSM",
                    "model": crate::soft::MODEL,
                    "firmware": env!("CARGO_PKG_VERSION"),
                    "serial": slot.serial.as_str(),
                    "fips_mode": null,
                    "pci_mode": null,
                    "note": "software key store: not a validated hardware module",
                }),
                json!({
                    "unique_to_partition": true,
                    "fingerprint": format!("hmac-sha256:{}", soft.master_key_fingerprint()),
                    "fingerprint_method": "HMAC-SHA256 under the master key of \
                        \"hsmlink/master-key-fingerprint/v1\" || partition name",
                    "object_sealing": match soft.algorithms() {
                        crate::soft::keys::Algorithms::International => "AES-256-GCM",
                        crate::soft::keys::Algorithms::Gmt => "SM4-GCM",
                    },
                    "wrapping": "master key under a per-partition key-encryption key \
                        (key ring, never in backups) under the instance root key",
                    "changes_on": "C_InitToken",
                }),
            ),
            Some(PartitionKind::Pkcs11 { device, .. }) => {
                let module = settings
                    .device_modules
                    .iter()
                    .find(|(name, _)| name == device.as_str())
                    .map(|(_, m)| m.clone());
                (
                    json!({
                        "kind": "vendor PKCS#11 device",
                        "device": device.as_str(),
                        "module": module,
                        "model": null,
                        "firmware": null,
                        "serial": null,
                        "fips_mode": null,
                        "pci_mode": null,
                        "note": "model, firmware and serial are not reported by the pkcs11 driver yet",
                    }),
                    json!({
                        "unique_to_partition": true,
                        "fingerprint": null,
                        "note": "keys live on the device; hsmlink holds no master key for it",
                    }),
                )
            }
            None => (json!(null), json!(null)),
        };
        partitions.push(json!({
            "slot": slot.id.0,
            "partition": slot.partition.as_str(),
            "state": slot.state.as_str(),
            "driver": crate::registry::driver_str(slot.driver),
            "token_serial": slot.serial.as_str(),
            "token": token.map(|t| json!({
                "initialized": t.initialized,
                "user_pin_initialized": t.user_pin_initialized,
                "so_pin": "set by the tenant with C_InitToken; the provider has no way to set, read or use it",
            })),
            "device": device,
            "replica_placement": {
                "replicas": 1,
                "placement": "single: one server's store (no replicas yet)",
            },
            "master_key": master_key,
            "session_limits": {
                "login_idle_timeout_s": settings.login_idle_timeout_s,
                "login_max_lifetime_s": settings.login_max_lifetime_s,
                "max_pin_failures": settings.max_pin_failures,
                "user_pin_change_required": settings.require_user_pin_change,
            },
            "suspended": slot.state == PartitionState::Suspended,
        }));
    }
    Reply::ok(json!({
        "tenant": tenant.as_str(),
        "generated_at": rfc3339(unix_now()),
        "server": SERVER_SOFTWARE,
        "transport": {
            "tls_min_version": settings.tls_min_version,
            "client_authentication": "mutual TLS, certificate of the provider's tenant CA",
        },
        "provider_access": "the admin API can allocate, suspend, resume and terminate \
            partitions; it has no call that logs in, sets or reads PINs, or uses keys",
        "audit": audit_state(ctx, tenant),
        "partitions": Value::Array(partitions),
    }))
}

fn audit_state(ctx: &AdminContext, tenant: &TenantName) -> Value {
    match ctx.state.audit() {
        None => json!({ "enabled": false }),
        Some(audit) => json!({
            "enabled": true,
            "chain": tenant.as_str(),
            "hash_chained": true,
            "signing_key": audit
                .public_key()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "records": "every key use, login, PIN change, object creation and destruction, admin action",
        }),
    }
}
