//! `GET /metrics`: Prometheus text format (0.0.4), written by hand.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::dispatch::ServerState;
use crate::pkcs11::module::rv_name;
use crate::registry::PartitionState;

pub fn render(state: &ServerState) -> String {
    let live = state.registry.live();
    let m = &live.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    };
    counter(
        "hsmlink_connections_accepted_total",
        "Tenant connections accepted (handshake and hello done).",
        m.connections_accepted.load(Ordering::Relaxed),
    );
    counter(
        "hsmlink_connections_refused_total",
        "Tenant connections refused (handshake failed, hello refused, revoked certificate).",
        m.connections_refused.load(Ordering::Relaxed),
    );
    counter(
        "hsmlink_connections_cut_total",
        "Tenant connections cut by a revocation or a disabled tenant.",
        m.connections_cut.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP hsmlink_connections_open Tenant connections open now."
    );
    let _ = writeln!(out, "# TYPE hsmlink_connections_open gauge");
    let _ = writeln!(out, "hsmlink_connections_open {}", live.open_connections());
    let _ = writeln!(
        out,
        "# HELP hsmlink_requests_total PKCS#11 requests answered, by result."
    );
    let _ = writeln!(out, "# TYPE hsmlink_requests_total counter");
    let _ = writeln!(
        out,
        "hsmlink_requests_total{{result=\"CKR_OK\"}} {}",
        m.requests_ok.load(Ordering::Relaxed)
    );
    for (rv, n) in m.requests_failed() {
        let _ = writeln!(
            out,
            "hsmlink_requests_total{{result=\"{}\"}} {n}",
            rv_name(rv)
        );
    }
    let devices = state.registry.devices();
    if !devices.is_empty() {
        crate::pkcs11::device_metrics::DeviceMetrics::header(&mut out);
        for (device, up) in &devices {
            device.pool.metrics.render(&device.name, *up, &mut out);
        }
    }
    let tenants = state.registry.tenants();
    let _ = writeln!(out, "# HELP hsmlink_tenants Tenants, by state.");
    let _ = writeln!(out, "# TYPE hsmlink_tenants gauge");
    let disabled = tenants.iter().filter(|t| t.disabled).count();
    let _ = writeln!(
        out,
        "hsmlink_tenants{{state=\"enabled\"}} {}",
        tenants.len() - disabled
    );
    let _ = writeln!(out, "hsmlink_tenants{{state=\"disabled\"}} {disabled}");
    let _ = writeln!(
        out,
        "# HELP hsmlink_slots Tenant slots served, by partition state."
    );
    let _ = writeln!(out, "# TYPE hsmlink_slots gauge");
    for s in [
        PartitionState::Active,
        PartitionState::Suspended,
        PartitionState::Unavailable,
    ] {
        let n = tenants
            .iter()
            .flat_map(|t| t.slots())
            .filter(|slot| slot.state == s)
            .count();
        let _ = writeln!(out, "hsmlink_slots{{state=\"{}\"}} {n}", s.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP hsmlink_admin_requests_total Admin API requests, by HTTP status."
    );
    let _ = writeln!(out, "# TYPE hsmlink_admin_requests_total counter");
    for (status, n) in m.admin_requests() {
        let _ = writeln!(
            out,
            "hsmlink_admin_requests_total{{status=\"{status}\"}} {n}"
        );
    }
    out
}
