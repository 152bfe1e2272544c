//! The web console: server-rendered HTML pages under `/console` on the
//! admin listener, for the same two kinds of client certificate.
//!
//! - A provider-admin certificate sees everything: tenants and partitions
//!   with their state, devices and their health, charts, the audit log with
//!   its chains' verification status, certificates; and may suspend,
//!   resume or terminate a partition and revoke a certificate.
//! - A tenant certificate sees its own tenant only (the same pages, scoped;
//!   another tenant's pages answer 404), and no action.
//!
//! No script: pages are plain HTML and the charts are SVG drawn here from
//! the per-minute metering series ([`crate::metering_series`]), so nothing
//! needs a JavaScript toolchain or a vendored library, and the pages work
//! under a Content-Security-Policy that allows no script at all.
//!
//! Actions go through a confirmation page whose form POSTs to
//! `/console/action` with a CSRF token (HMAC-SHA256, under a key drawn at
//! start, of the certificate's fingerprint, the action and its target) and
//! only from the same origin (`Origin`, else `Referer`, must be this
//! listener). The action itself is the admin API's handler, so it is
//! audited exactly as `POST /v1/partitions/{p}/suspend` is.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::Value;

use super::api::{Reply, percent_decode, rfc3339};
use super::{AdminContext, Role};
use crate::audit::record::now_ms;
use crate::metering_series::{self, MINUTE_MS, Point};
use crate::store::{CertificateRow, SlotRow, TenantRow};

const STYLE: &str = include_str!("../../console/style.css");

/// What the console needs of an HTTP request.
#[derive(Debug)]
pub struct ConsoleRequest {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub referer: Option<String>,
    pub body: Bytes,
}

/// A page or a redirect.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
}

impl Page {
    fn html(status: StatusCode, body: String) -> Self {
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            location: None,
        }
    }

    fn redirect(to: String) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            location: Some(to),
        }
    }
}

/// `Content-Security-Policy` of every console answer: no script, nothing
/// from elsewhere, no framing, forms to this origin only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Who looks: the provider, or one tenant.
#[derive(Clone, Debug)]
enum Viewer {
    Provider {
        subject: String,
        fingerprint: String,
    },
    Tenant {
        name: String,
        fingerprint: String,
    },
}

impl Viewer {
    fn sees_tenant(&self, tenant: &str) -> bool {
        match self {
            Self::Provider { .. } => true,
            Self::Tenant { name, .. } => name == tenant,
        }
    }

    fn fingerprint(&self) -> &str {
        match self {
            Self::Provider { fingerprint, .. } | Self::Tenant { fingerprint, .. } => fingerprint,
        }
    }
}

/// Answers one console request (blocking: store reads).
pub fn handle(
    ctx: &Arc<AdminContext>,
    role: &Role,
    peer: SocketAddr,
    req: &ConsoleRequest,
) -> Page {
    let viewer = match role {
        Role::Admin {
            subject,
            fingerprint,
        } => Viewer::Provider {
            subject: subject.clone(),
            fingerprint: fingerprint.to_string(),
        },
        Role::Tenant(identity) => Viewer::Tenant {
            name: identity.tenant.as_str().to_owned(),
            fingerprint: identity.fingerprint.to_string(),
        },
        Role::Nobody => {
            return Page::html(
                StatusCode::FORBIDDEN,
                layout(
                    None,
                    "Forbidden",
                    "<p class=\"error\">This certificate names no tenant.</p>",
                ),
            );
        }
    };
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let result = match (req.method.as_str(), segments.as_slice()) {
        ("GET", []) => overview(ctx, &viewer, req),
        ("GET", ["style.css"]) => {
            return Page {
                status: StatusCode::OK,
                content_type: "text/css; charset=utf-8",
                body: STYLE.to_owned(),
                location: None,
            };
        }
        ("GET", ["tenants", tenant]) => tenant_page(ctx, &viewer, req, tenant),
        ("GET", ["partitions", partition]) => partition_page(ctx, &viewer, req, partition),
        ("GET", ["audit"]) => audit_page(ctx, &viewer, req),
        ("GET", ["certificates"]) => certificates_page(ctx, &viewer, req),
        ("GET", ["confirm"]) => confirm_page(ctx, &viewer, req),
        ("POST", ["action"]) => return action(ctx, role, &viewer, peer, req),
        _ => Err((StatusCode::NOT_FOUND, "No such page.".to_owned())),
    };
    match result {
        Ok(page) => page,
        Err((status, message)) => Page::html(
            status,
            layout(
                Some(&viewer),
                status.canonical_reason().unwrap_or("Error"),
                &format!("<p class=\"error\">{}</p>", esc(&message)),
            ),
        ),
    }
}

type PageResult = Result<Page, (StatusCode, String)>;

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn not_found(what: &str) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("No {what} of yours by that name."),
    )
}

/// HTML-escapes text.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"state state-{0}\" data-state=\"{0}\">{0}</span>",
        esc(state)
    )
}

fn layout(viewer: Option<&Viewer>, title: &str, content: &str) -> String {
    let who = match viewer {
        Some(Viewer::Provider { subject, .. }) => format!("provider admin: {}", esc(subject)),
        Some(Viewer::Tenant { name, .. }) => format!("tenant: {}", esc(name)),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} — hsmlink console</title>\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>\
         <header><a href=\"/console\">hsmlink console</a><a href=\"/console/audit\">Audit</a>\
         <a href=\"/console/certificates\">Certificates</a><span class=\"who\" id=\"who\">{who}</span></header>\
         <main><h1>{title}</h1>{content}</main></body></html>\n",
        title = esc(title),
    )
}

fn notice(req: &ConsoleRequest) -> String {
    match (
        query_value(&req.query, "done"),
        query_value(&req.query, "failed"),
    ) {
        (_, Some(message)) => format!("<p class=\"error\" id=\"flash\">{}</p>", esc(&message)),
        (Some(message), _) => format!("<p class=\"notice\" id=\"flash\">{}</p>", esc(&message)),
        _ => String::new(),
    }
}

struct Rows {
    tenants: Vec<TenantRow>,
    slots: Vec<SlotRow>,
}

fn rows(ctx: &AdminContext, viewer: &Viewer) -> Result<Rows, (StatusCode, String)> {
    let store = ctx.state.registry.store().map_err(internal)?;
    let tenants = store.tenants().map_err(internal)?;
    let slots = store.slots().map_err(internal)?;
    Ok(Rows {
        tenants: tenants
            .into_iter()
            .filter(|t| viewer.sees_tenant(&t.name))
            .collect(),
        slots: slots
            .into_iter()
            .filter(|s| viewer.sees_tenant(&s.tenant))
            .collect(),
    })
}

/// The partition's state as served now (the registry's, which knows
/// `unavailable`), else the store's.
fn live_state(ctx: &AdminContext, s: &SlotRow) -> String {
    super::api::partition_value(ctx, s)["state"]
        .as_str()
        .unwrap_or(&s.state)
        .to_owned()
}

fn actions(viewer: &Viewer, partition: &str, state: &str) -> String {
    if !matches!(viewer, Viewer::Provider { .. }) || state == "terminated" {
        return String::new();
    }
    let link = |action: &str, class: &str| {
        format!(
            "<a class=\"button {class}\" id=\"{action}-{p}\" href=\"/console/confirm?action={action}&amp;target={q}\">{label}</a> ",
            p = esc(partition),
            q = enc(partition),
            label = match action {
                "suspend" => "Suspend",
                "resume" => "Resume",
                _ => "Terminate",
            }
        )
    };
    let mut out = String::new();
    if state == "suspended" {
        out.push_str(&link("resume", ""));
    } else {
        out.push_str(&link("suspend", ""));
    }
    out.push_str(&link("terminate", "danger"));
    out
}

fn partitions_table(ctx: &AdminContext, viewer: &Viewer, slots: &[&SlotRow]) -> String {
    let mut out = String::from(
        "<table id=\"partitions\"><tr><th>Partition</th><th>Tenant</th><th>Slot</th>\
         <th>Driver</th><th>Device</th><th>State</th><th>Token</th><th>Actions</th></tr>",
    );
    for s in slots {
        let value = super::api::partition_value(ctx, s);
        let state = value["state"].as_str().unwrap_or(&s.state).to_owned();
        let token = match value["token_initialized"].as_bool() {
            Some(true) => "initialised",
            Some(false) => "not initialised",
            None => "-",
        };
        let _ = write!(
            out,
            "<tr data-partition=\"{p}\"><td><a href=\"/console/partitions/{q}\">{p}</a></td>\
             <td><a href=\"/console/tenants/{tq}\">{t}</a></td><td>{slot}</td><td>{driver}</td>\
             <td>{device}</td><td>{badge}</td><td>{token}</td><td>{actions}</td></tr>",
            p = esc(&s.partition),
            q = enc(&s.partition),
            t = esc(&s.tenant),
            tq = enc(&s.tenant),
            slot = s.slot_id,
            driver = esc(&s.driver),
            device = esc(s.device.as_deref().unwrap_or("soft (built-in)")),
            badge = state_badge(&state),
            actions = actions(viewer, &s.partition, &state),
        );
    }
    out.push_str("</table>");
    out
}

fn window_minutes(req: &ConsoleRequest) -> i64 {
    query_value(&req.query, "minutes")
        .and_then(|m| m.parse::<i64>().ok())
        .unwrap_or(60)
        .clamp(5, 24 * 60)
}

/// Three charts (operations/s, mean latency, errors/min) of the minutes
/// up to now, for a tenant and partition (or all).
fn charts(
    ctx: &AdminContext,
    tenant: Option<&str>,
    partition: Option<&str>,
    minutes: i64,
    id_suffix: &str,
) -> Result<String, (StatusCode, String)> {
    let now = now_ms();
    let to = metering_series::minute_of(now) + MINUTE_MS;
    let filter = metering_series::Filter {
        tenant,
        partition,
        from_ms: to - minutes * MINUTE_MS,
        to_ms: to,
    };
    let points = metering_series::query(
        Some(&ctx.store_path),
        ctx.state.metering().series(),
        &filter,
    )
    .map_err(internal)?;
    let total: u64 = points.iter().map(|p| p.calls).sum();
    let errors: u64 = points.iter().map(|p| p.errors).sum();
    let windows: Vec<String> = [(15, "15 min"), (60, "1 h"), (360, "6 h"), (1440, "24 h")]
        .iter()
        .map(|(m, label)| {
            if *m == minutes {
                format!("<strong>{label}</strong>")
            } else {
                format!("<a href=\"?minutes={m}\">{label}</a>")
            }
        })
        .collect();
    let mut out = format!(
        "<p class=\"muted\">Last {minutes} minutes: {total} calls, {errors} failed. \
         Per minute, from the metering series (every call the audit hook sees, failures \
         included). Window: {}</p><div class=\"charts\">",
        windows.join(" · ")
    );
    let id = |name: &str| format!("chart-{name}{id_suffix}");
    out.push_str(&svg_chart(&id("ops"), "operations / s", &points, |p| {
        p.ops_per_s
    }));
    out.push_str(&svg_chart(
        &id("latency"),
        "mean latency, ms",
        &points,
        |p| p.mean_latency_ms,
    ));
    out.push_str(&svg_chart(&id("errors"), "errors / min", &points, |p| {
        p.errors as f64
    }));
    out.push_str("</div>");
    Ok(out)
}

/// A line chart as SVG: one point per minute, y from 0 to the largest value.
fn svg_chart(id: &str, title: &str, points: &[Point], value: impl Fn(&Point) -> f64) -> String {
    const W: f64 = 360.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 44.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 22.0;
    let values: Vec<f64> = points.iter().map(&value).collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let n = values.len().max(2) as f64 - 1.0;
    let coords: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                LEFT + plot_w * i as f64 / n,
                TOP + plot_h * (1.0 - v / top)
            )
        })
        .collect();
    let label = |ms: i64| rfc3339(ms / 1000).get(11..16).unwrap_or("").to_owned();
    let (first, last) = (
        points
            .first()
            .map(|p| label(p.minute_ms))
            .unwrap_or_default(),
        points
            .last()
            .map(|p| label(p.minute_ms))
            .unwrap_or_default(),
    );
    format!(
        "<svg class=\"chart\" id=\"{id}\" role=\"img\" aria-label=\"{title}\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\" data-points=\"{count}\" data-max=\"{max:.3}\">\
         <text x=\"{LEFT}\" y=\"13\" font-weight=\"600\">{title}</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{yb}\" stroke=\"#889\"/>\
         <line x1=\"{LEFT}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#889\"/>\
         <text x=\"2\" y=\"{ty}\">{top:.2}</text><text x=\"2\" y=\"{yb}\">0</text>\
         <text x=\"{LEFT}\" y=\"{tx}\">{first}</text><text x=\"{xl}\" y=\"{tx}\">{last} UTC</text>\
         <polyline fill=\"none\" stroke=\"#1c7ed6\" stroke-width=\"2\" points=\"{coords}\"/></svg>",
        title = esc(title),
        count = values.len(),
        yb = TOP + plot_h,
        xr = LEFT + plot_w,
        ty = TOP + 4.0,
        tx = H - 6.0,
        xl = W - 80.0,
        coords = coords.join(" "),
    )
}

fn devices_table(ctx: &AdminContext, slots: &[SlotRow]) -> String {
    let health = |device: Option<&str>| {
        // Healthy: every live partition on the device has its driver open.
        let live: Vec<&SlotRow> = slots
            .iter()
            .filter(|s| s.device.as_deref() == device && s.state != "terminated")
            .collect();
        let open = live
            .iter()
            .filter(|s| {
                crate::names::PartitionName::parse(&s.partition)
                    .ok()
                    .and_then(|p| ctx.state.registry.driver(&p))
                    .is_some()
            })
            .count();
        let state = if open == live.len() {
            "healthy"
        } else {
            "failed"
        };
        (live.len(), open, state)
    };
    let mut out = String::from(
        "<table id=\"devices\"><tr><th>Device</th><th>Kind</th><th>Module</th>\
         <th>Live partitions</th><th>Open</th><th>Health</th></tr>",
    );
    let (n, open, state) = health(None);
    let _ = write!(
        out,
        "<tr><td>soft</td><td>built-in software HSM</td><td>-</td><td>{n}</td><td>{open}</td><td>{}</td></tr>",
        state_badge(state)
    );
    for (name, module) in &ctx.settings.device_modules {
        let (n, open, state) = health(Some(name));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>PKCS#11 device</td><td><code>{}</code></td><td>{n}</td><td>{open}</td><td>{}</td></tr>",
            esc(name),
            esc(module),
            state_badge(state)
        );
    }
    out.push_str("</table>");
    out
}

fn overview(ctx: &AdminContext, viewer: &Viewer, req: &ConsoleRequest) -> PageResult {
    if let Viewer::Tenant { name, .. } = viewer {
        return tenant_page(ctx, viewer, req, name);
    }
    let rows = rows(ctx, viewer)?;
    let registry = &ctx.state.registry;
    let mut content = notice(req);
    let _ = write!(
        content,
        "<p>Server {} — {} tenants, {} partitions, {} open connections.</p>",
        esc(crate::transport::SERVER_SOFTWARE),
        rows.tenants.len(),
        rows.slots
            .iter()
            .filter(|s| s.state != "terminated")
            .count(),
        registry.live().open_connections()
    );
    content.push_str("<h2>Operations, all tenants</h2>");
    content.push_str(&charts(ctx, None, None, window_minutes(req), "")?);
    content.push_str(
        "<h2>Tenants</h2><table id=\"tenants\"><tr><th>Tenant</th><th>State</th>\
         <th>Partitions</th><th>Source</th><th>Created</th></tr>",
    );
    for t in &rows.tenants {
        let count = rows.slots.iter().filter(|s| s.tenant == t.name).count();
        let _ = write!(
            content,
            "<tr data-tenant=\"{n}\"><td><a href=\"/console/tenants/{q}\">{n}</a></td><td>{}</td>\
             <td>{count}</td><td>{}</td><td>{}</td></tr>",
            state_badge(if t.disabled { "disabled" } else { "active" }),
            esc(&t.source),
            esc(&rfc3339(t.created_at)),
            n = esc(&t.name),
            q = enc(&t.name),
        );
    }
    content.push_str("</table><h2>Partitions</h2>");
    let slots: Vec<&SlotRow> = rows.slots.iter().collect();
    content.push_str(&partitions_table(ctx, viewer, &slots));
    content.push_str("<h2>Devices</h2>");
    content.push_str(&devices_table(ctx, &rows.slots));
    Ok(Page::html(
        StatusCode::OK,
        layout(Some(viewer), "Overview", &content),
    ))
}

fn tenant_page(
    ctx: &AdminContext,
    viewer: &Viewer,
    req: &ConsoleRequest,
    tenant: &str,
) -> PageResult {
    let tenant = percent_decode(tenant);
    let rows = rows(ctx, viewer)?;
    let row = rows
        .tenants
        .iter()
        .find(|t| t.name == tenant)
        .ok_or_else(|| not_found("tenant"))?;
    let mut content = notice(req);
    let _ = write!(
        content,
        "<p>Tenant <strong id=\"tenant-name\">{}</strong> {}</p>",
        esc(&row.name),
        state_badge(if row.disabled { "disabled" } else { "active" })
    );
    content.push_str("<h2>Operations</h2>");
    content.push_str(&charts(
        ctx,
        Some(&row.name),
        None,
        window_minutes(req),
        "",
    )?);
    content.push_str("<h2>Partitions</h2>");
    let slots: Vec<&SlotRow> = rows.slots.iter().filter(|s| s.tenant == row.name).collect();
    content.push_str(&partitions_table(ctx, viewer, &slots));
    for s in slots.iter().filter(|s| s.state != "terminated") {
        let _ = write!(content, "<h2>Partition {}</h2>", esc(&s.partition));
        content.push_str(&charts(
            ctx,
            Some(&row.name),
            Some(&s.partition),
            window_minutes(req),
            &format!("-{}", s.partition),
        )?);
    }
    let _ = write!(
        content,
        "<p><a href=\"/console/audit?tenant={}\">Audit log of this tenant</a></p>",
        enc(&row.name)
    );
    Ok(Page::html(
        StatusCode::OK,
        layout(Some(viewer), &format!("Tenant {}", row.name), &content),
    ))
}

fn partition_page(
    ctx: &AdminContext,
    viewer: &Viewer,
    req: &ConsoleRequest,
    partition: &str,
) -> PageResult {
    let partition = percent_decode(partition);
    let rows = rows(ctx, viewer)?;
    let s = rows
        .slots
        .iter()
        .find(|s| s.partition == partition)
        .ok_or_else(|| not_found("partition"))?;
    let value = super::api::partition_value(ctx, s);
    let state = live_state(ctx, s);
    let mut content = notice(req);
    let _ = write!(
        content,
        "<table id=\"partition\"><tr><th>Partition</th><td>{p}</td></tr>\
         <tr><th>Tenant</th><td><a href=\"/console/tenants/{tq}\">{t}</a></td></tr>\
         <tr><th>Slot</th><td>{slot}</td></tr><tr><th>State</th><td id=\"partition-state\">{badge}</td></tr>\
         <tr><th>Driver</th><td>{driver} ({algorithms})</td></tr><tr><th>Device</th><td>{device}</td></tr>\
         <tr><th>Token serial</th><td>{serial}</td></tr><tr><th>Token</th><td>{token}</td></tr>\
         <tr><th>Created</th><td>{created}</td></tr><tr><th>Changed</th><td>{changed}</td></tr></table>\
         <p>{actions}</p>",
        p = esc(&s.partition),
        t = esc(&s.tenant),
        tq = enc(&s.tenant),
        slot = s.slot_id,
        badge = state_badge(&state),
        driver = esc(&s.driver),
        algorithms = esc(&s.algorithms),
        device = esc(s.device.as_deref().unwrap_or("soft (built-in)")),
        serial = esc(&s.serial),
        token = match value["token_initialized"].as_bool() {
            Some(true) => "initialised",
            Some(false) => "not initialised",
            None => "-",
        },
        created = esc(&rfc3339(s.created_at)),
        changed = esc(&rfc3339(s.changed_at)),
        actions = actions(viewer, &s.partition, &state),
    );
    content.push_str("<h2>Operations</h2>");
    content.push_str(&charts(
        ctx,
        Some(&s.tenant),
        Some(&s.partition),
        window_minutes(req),
        "",
    )?);
    Ok(Page::html(
        StatusCode::OK,
        layout(
            Some(viewer),
            &format!("Partition {}", s.partition),
            &content,
        ),
    ))
}

fn audit_page(ctx: &AdminContext, viewer: &Viewer, req: &ConsoleRequest) -> PageResult {
    let asked = query_value(&req.query, "tenant").filter(|t| !t.is_empty());
    let chain = match viewer {
        Viewer::Tenant { name, .. } => Some(name.clone()),
        Viewer::Provider { .. } => asked,
    };
    let op = query_value(&req.query, "op").filter(|o| !o.is_empty());
    let rv = query_value(&req.query, "rv").filter(|o| !o.is_empty());
    let hours = query_value(&req.query, "hours")
        .and_then(|h| h.parse::<i64>().ok())
        .unwrap_or(24)
        .clamp(1, 24 * 366);
    if let Some(audit) = ctx.state.audit() {
        // Commit what is queued, so the page shows it.
        let _ = audit.sync();
    }
    let report = crate::audit::reader::verify(
        &ctx.store_path,
        ctx.state.audit().map(|a| a.public_key()),
        chain.as_deref(),
    )
    .map_err(internal)?;
    let mut content = String::new();
    let _ = write!(
        content,
        "<form method=\"get\" action=\"/console/audit\">{tenant_field}\
         Operation <input name=\"op\" value=\"{op}\" placeholder=\"C_Sign\"> \
         Result <input name=\"rv\" value=\"{rv}\" placeholder=\"CKR_OK\"> \
         Last <input name=\"hours\" value=\"{hours}\" size=\"4\"> hours <button type=\"submit\">Search</button></form>",
        tenant_field = match viewer {
            Viewer::Provider { .. } => format!(
                "Tenant <input name=\"tenant\" value=\"{}\" placeholder=\"all\"> ",
                esc(chain.as_deref().unwrap_or(""))
            ),
            Viewer::Tenant { .. } => String::new(),
        },
        op = esc(op.as_deref().unwrap_or("")),
        rv = esc(rv.as_deref().unwrap_or("")),
    );
    content.push_str(
        "<h2>Chain verification</h2><table id=\"verification\"><tr><th>Chain</th><th>Status</th>\
         <th>Records</th><th>Signed through</th><th>Problems</th></tr>",
    );
    let visible = |c: &str| match viewer {
        Viewer::Provider { .. } => true,
        Viewer::Tenant { name, .. } => c == name,
    };
    for c in report.chains.iter().filter(|c| visible(&c.chain)) {
        let problems: Vec<String> = c.problems.iter().map(|p| esc(&p.to_string())).collect();
        let _ = write!(
            content,
            "<tr data-chain=\"{}\"><td>{}</td><td>{}</td><td>{} ({}..{})</td><td>{}</td><td>{}</td></tr>",
            esc(&c.chain),
            esc(&c.chain),
            state_badge(if c.problems.is_empty() {
                "ok"
            } else {
                "failed"
            }),
            c.records,
            c.first_seq,
            c.last_seq,
            c.signed_through,
            problems.join("<br>")
        );
    }
    content.push_str("</table>");
    let filter = crate::audit::reader::Filter {
        chain: chain.clone(),
        since_ms: Some(now_ms() - hours * 3_600_000),
        until_ms: None,
        key: None,
    };
    let records =
        crate::audit::reader::query(&ctx.store_path, &filter, 100_000).map_err(internal)?;
    let shown: Vec<&crate::audit::reader::Exported> = records
        .iter()
        .rev()
        .filter(|e| visible(&e.record.chain))
        .filter(|e| op.as_deref().is_none_or(|o| e.record.op == o))
        .filter(|e| rv.as_deref().is_none_or(|r| e.record.rv_name == r))
        .take(200)
        .collect();
    let _ = write!(
        content,
        "<h2>Records</h2><p class=\"muted\">{} shown (newest first, at most 200).</p>\
         <table id=\"records\"><tr><th>Time (UTC)</th><th>Chain</th><th>#</th><th>Operation</th>\
         <th>Partition</th><th>Mechanism</th><th>Key</th><th>Result</th><th>Source</th><th>Via</th><th>Detail</th></tr>",
        shown.len()
    );
    for e in shown {
        let r = &e.record;
        let _ = write!(
            content,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"rv\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(r.ts_ms / 1000)),
            esc(&r.chain),
            r.seq,
            esc(&r.op),
            esc(r.partition.as_deref().unwrap_or("")),
            esc(r.mechanism_name.as_deref().unwrap_or("")),
            r.key.map(|k| k.to_string()).unwrap_or_default(),
            esc(&r.rv_name),
            esc(r.source.as_deref().unwrap_or("")),
            esc(r.via.as_deref().unwrap_or("pkcs11")),
            esc(r.detail.as_deref().unwrap_or("")),
        );
    }
    content.push_str("</table>");
    Ok(Page::html(
        StatusCode::OK,
        layout(Some(viewer), "Audit log", &content),
    ))
}

fn certificates_page(ctx: &AdminContext, viewer: &Viewer, req: &ConsoleRequest) -> PageResult {
    let store = ctx.state.registry.store().map_err(internal)?;
    let certificates: Vec<CertificateRow> = store
        .certificates()
        .map_err(internal)?
        .into_iter()
        .filter(|c| match viewer {
            Viewer::Provider { .. } => true,
            Viewer::Tenant { name, .. } => c.tenant.as_deref() == Some(name.as_str()),
        })
        .collect();
    let mut content = notice(req);
    content.push_str(
        "<table id=\"certificates\"><tr><th>Serial</th><th>Tenant</th><th>Subject</th>\
         <th>Valid</th><th>Status</th><th>SHA-256</th><th></th></tr>",
    );
    for c in &certificates {
        let status = if c.revoked_at.is_some() {
            "revoked"
        } else {
            "valid"
        };
        let revoke = if matches!(viewer, Viewer::Provider { .. }) && c.revoked_at.is_none() {
            format!(
                "<a class=\"button danger\" href=\"/console/confirm?action=revoke&amp;target={}\">Revoke</a>",
                enc(&c.serial)
            )
        } else {
            String::new()
        };
        let _ = write!(
            content,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td>\
             <td><code>{}</code></td><td>{}</td></tr>",
            esc(&c.serial),
            esc(c.tenant.as_deref().unwrap_or("")),
            esc(&c.subject),
            esc(&rfc3339(c.not_before)),
            esc(&rfc3339(c.not_after)),
            state_badge(status),
            esc(&c.fingerprint),
            revoke,
        );
    }
    content.push_str("</table>");
    Ok(Page::html(
        StatusCode::OK,
        layout(Some(viewer), "Certificates", &content),
    ))
}

/// The CSRF token of an action: HMAC-SHA256 under the console key of the
/// viewer's certificate fingerprint, the action and its target.
fn csrf_token(ctx: &AdminContext, viewer: &Viewer, action: &str, target: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &*ctx.console_key);
    let tag = ring::hmac::sign(
        &key,
        format!("{}\n{action}\n{target}", viewer.fingerprint()).as_bytes(),
    );
    crate::audit::record::hex(tag.as_ref())
}

fn csrf_ok(ctx: &AdminContext, viewer: &Viewer, action: &str, target: &str, token: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &*ctx.console_key);
    crate::audit::record::unhex(token).is_some_and(|tag| {
        ring::hmac::verify(
            &key,
            format!("{}\n{action}\n{target}", viewer.fingerprint()).as_bytes(),
            &tag,
        )
        .is_ok()
    })
}

const ACTIONS: &[&str] = &["suspend", "resume", "terminate", "revoke"];

fn confirm_page(ctx: &AdminContext, viewer: &Viewer, req: &ConsoleRequest) -> PageResult {
    if !matches!(viewer, Viewer::Provider { .. }) {
        return Err((
            StatusCode::FORBIDDEN,
            "Only a provider-admin certificate may act.".to_owned(),
        ));
    }
    let action = query_value(&req.query, "action").unwrap_or_default();
    let target = query_value(&req.query, "target").unwrap_or_default();
    if !ACTIONS.contains(&action.as_str()) || target.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "Unknown action.".to_owned()));
    }
    let what = match action.as_str() {
        "suspend" => format!(
            "Suspend partition <strong>{}</strong>? Its tenant's applications are logged out of it; \
             slot and token calls answer CKR_TOKEN_NOT_PRESENT and calls on open sessions \
             CKR_DEVICE_REMOVED until it is resumed. Its keys are kept.",
            esc(&target)
        ),
        "resume" => format!(
            "Resume partition <strong>{}</strong>? Its sessions carry on, logged out.",
            esc(&target)
        ),
        "terminate" => format!(
            "Terminate partition <strong>{0}</strong>? Every key of it is erased for good, its \
             backups included. This cannot be undone. Type the partition's name to confirm: \
             <input name=\"confirm\" id=\"confirm-name\" required>",
            esc(&target)
        ),
        _ => format!(
            "Revoke certificate <strong>{}</strong>? Its connections are cut at once and new \
             handshakes fail.",
            esc(&target)
        ),
    };
    let back = match action.as_str() {
        "revoke" => "/console/certificates".to_owned(),
        _ => format!("/console/partitions/{}", enc(&target)),
    };
    let content = format!(
        "<form class=\"confirm\" method=\"post\" action=\"/console/action\">\
         <p>{what}</p>\
         <input type=\"hidden\" name=\"action\" value=\"{a}\">\
         <input type=\"hidden\" name=\"target\" value=\"{t}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><button type=\"submit\" class=\"danger\" id=\"confirm\">Yes, {a}</button> \
         <a href=\"{back}\">Cancel</a></p><p class=\"muted\">The action is recorded in the audit log \
         with your certificate.</p></form>",
        a = esc(&action),
        t = esc(&target),
        csrf = csrf_token(ctx, viewer, &action, &target),
    );
    Ok(Page::html(
        StatusCode::OK,
        layout(Some(viewer), "Confirm", &content),
    ))
}

/// Whether a POST comes from this listener's own pages.
fn same_origin(req: &ConsoleRequest) -> bool {
    let Some(host) = &req.host else {
        return false;
    };
    let own = format!("https://{host}");
    match (&req.origin, &req.referer) {
        (Some(origin), _) => *origin == own,
        (None, Some(referer)) => referer.starts_with(&format!("{own}/")),
        (None, None) => false,
    }
}

fn action(
    ctx: &Arc<AdminContext>,
    role: &Role,
    viewer: &Viewer,
    peer: SocketAddr,
    req: &ConsoleRequest,
) -> Page {
    let fail = |status: StatusCode, message: &str| {
        Page::html(
            status,
            layout(
                Some(viewer),
                "Refused",
                &format!("<p class=\"error\">{}</p>", esc(message)),
            ),
        )
    };
    if !matches!(viewer, Viewer::Provider { .. }) {
        return fail(
            StatusCode::FORBIDDEN,
            "Only a provider-admin certificate may act.",
        );
    }
    if !same_origin(req) {
        return fail(StatusCode::FORBIDDEN, "Cross-origin request refused.");
    }
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let field = |name: &str| query_value(&form, name).unwrap_or_default();
    let (action, target, csrf) = (field("action"), field("target"), field("csrf"));
    if !ACTIONS.contains(&action.as_str()) || !csrf_ok(ctx, viewer, &action, &target, &csrf) {
        return fail(
            StatusCode::FORBIDDEN,
            "The confirmation is not valid: start again from the console page.",
        );
    }
    let (pattern, body) = match action.as_str() {
        "suspend" => ("/v1/partitions/{partition}/suspend", Bytes::new()),
        "resume" => ("/v1/partitions/{partition}/resume", Bytes::new()),
        "terminate" => (
            "/v1/partitions/{partition}/terminate",
            Bytes::from(serde_json::json!({ "confirm": field("confirm") }).to_string()),
        ),
        _ => ("/v1/certificates/{id}/revoke", Bytes::new()),
    };
    let reply: Reply = super::api::run_admin_call(
        ctx.clone(),
        role.clone(),
        peer,
        "POST",
        pattern,
        vec![target.clone()],
        body,
    );
    let back = match action.as_str() {
        "revoke" => "/console/certificates".to_owned(),
        _ => format!("/console/partitions/{}", enc(&target)),
    };
    let message = if reply.status.is_success() {
        format!("done={}", enc(&format!("{action}: {target}: done")))
    } else {
        let error = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| reply.status.to_string());
        format!("failed={}", enc(&format!("{action}: {target}: {error}")))
    };
    Page::redirect(format!("{back}?{message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(enc("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(percent_decode(&enc("a b/ü&=")), "a b/ü&=");
    }

    #[test]
    fn charts_draw_every_minute() {
        let points: Vec<Point> = (0..5)
            .map(|i| Point {
                minute_ms: i * MINUTE_MS,
                calls: i as u64,
                errors: 0,
                ops_per_s: i as f64,
                mean_latency_ms: 1.0,
                max_latency_ms: 1.0,
            })
            .collect();
        let svg = svg_chart("c", "ops <s>", &points, |p| p.ops_per_s);
        assert!(svg.contains("data-points=\"5\""));
        assert!(svg.contains("ops &lt;s&gt;"));
        assert_eq!(svg.matches(',').count(), 5);
    }

    #[test]
    fn same_origin_needs_the_listeners_origin() {
        let mut req = ConsoleRequest {
            method: hyper::Method::POST,
            path: "/console/action".to_owned(),
            query: String::new(),
            host: Some("127.0.0.1:7701".to_owned()),
            origin: Some("https://127.0.0.1:7701".to_owned()),
            referer: None,
            body: Bytes::new(),
        };
        assert!(same_origin(&req));
        req.origin = Some("https://evil.example".to_owned());
        assert!(!same_origin(&req));
        req.origin = None;
        assert!(!same_origin(&req));
        req.referer = Some("https://127.0.0.1:7701/console/confirm".to_owned());
        assert!(same_origin(&req));
    }
}
