//! The admin API's routes: one table ([`ROUTES`], which the OpenAPI
//! document `docs/openapi.json` must match — a test checks both ways) and
//! one handler per route. JSON in and out; errors are
//! `{"error": "..."}` with a 4xx/5xx status. Handlers that touch the store
//! run on blocking threads. `/console` ([`super::console`]) and
//! `/v1/crypto/` ([`super::crypto_api`], its own table in the same OpenAPI
//! document) are routed first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{error, info};

use super::{AdminContext, Role};
use crate::audit::AdminAction;
use crate::config::{AlgorithmsConfig, DriverKind};
use crate::names::{PartitionName, TenantName};
use crate::registry::{Allocation, PartitionState, RegistryError};
use crate::store::{CertificateRow, SlotRow};

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// Every route: method and path pattern (`{name}` is one segment).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/metrics"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/{tenant}"),
    ("POST", "/v1/tenants/{tenant}/disable"),
    ("POST", "/v1/tenants/{tenant}/enable"),
    ("GET", "/v1/certificates"),
    ("POST", "/v1/tenants/{tenant}/certificates"),
    ("POST", "/v1/certificates/{id}/revoke"),
    ("GET", "/v1/partitions"),
    ("POST", "/v1/tenants/{tenant}/partitions"),
    ("GET", "/v1/partitions/{partition}"),
    ("POST", "/v1/partitions/{partition}/suspend"),
    ("POST", "/v1/partitions/{partition}/resume"),
    ("POST", "/v1/partitions/{partition}/terminate"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/export"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/metering"),
    ("GET", "/v1/tenant/report"),
];

/// The one route a tenant certificate may call.
pub const TENANT_ROUTE: &str = "/v1/tenant/report";

/// An answer: status and JSON (or text) body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(status: StatusCode, value: &Value) -> Self {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
        text.push('\n');
        Self {
            status,
            body: Bytes::from(text),
            content_type: "application/json",
        }
    }

    pub fn ok(value: Value) -> Self {
        Self::json(StatusCode::OK, &value)
    }

    pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self::json(status, &json!({ "error": message.to_string() }))
    }

    fn text(content_type: &'static str, text: String) -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from(text),
            content_type,
        }
    }
}

impl From<RegistryError> for Reply {
    fn from(e: RegistryError) -> Self {
        let status = match e {
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Conflict(_) => StatusCode::CONFLICT,
            RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
            RegistryError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            RegistryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::error(status, e)
    }
}

/// Matches `path` against the route table: the route's index and the
/// values of its `{...}` segments.
pub fn route(method: &Method, path: &str) -> Result<(usize, Vec<String>), StatusCode> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_known = false;
    for (i, (m, pattern)) in ROUTES.iter().enumerate() {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut captured = Vec::new();
        let matches = parts.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') {
                captured.push((*s).to_owned());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if matches {
            if method.as_str() == *m {
                return Ok((i, captured));
            }
            path_known = true;
        }
    }
    Err(if path_known {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Answers one HTTP request.
pub async fn handle(
    ctx: Arc<AdminContext>,
    role: Role,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    // A tenant certificate revoked while its keep-alive connection stays
    // open: refused from the next request on (console, crypto API, report).
    let role = match role {
        Role::Tenant(identity) if ctx.state.registry.live().is_revoked(&identity.fingerprint) => {
            Role::Nobody
        }
        role => role,
    };
    if path == "/console" || path.starts_with("/console/") {
        return console_request(ctx, role, peer, request, started).await;
    }
    if path.starts_with("/v1/crypto/") {
        return crypto_request(ctx, role, peer, request, started).await;
    }
    let reply = match route(&method, &path) {
        Err(status) => Reply::error(status, format!("no route {method} {path}")),
        Ok((index, params)) => {
            let (_, pattern) = ROUTES[index];
            match (&role, pattern) {
                (Role::Admin { .. }, p) if p != TENANT_ROUTE => {
                    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                        Ok(body) => body.to_bytes(),
                        Err(_) => {
                            return respond(Reply::error(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "request body unreadable or larger than 1 MiB",
                            ));
                        }
                    };
                    let call = Call {
                        ctx: ctx.clone(),
                        role: role.clone(),
                        peer,
                        params,
                        query,
                        body,
                        started,
                    };
                    let pattern = pattern.to_owned();
                    let method = method.clone();
                    tokio::task::spawn_blocking(move || admin_call(&call, &method, &pattern))
                        .await
                        .unwrap_or_else(|_| {
                            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "handler failed")
                        })
                }
                (Role::Tenant(identity), TENANT_ROUTE) => {
                    let ctx = ctx.clone();
                    let tenant = identity.tenant.clone();
                    tokio::task::spawn_blocking(move || super::report::tenant_report(&ctx, &tenant))
                        .await
                        .unwrap_or_else(|_| {
                            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "handler failed")
                        })
                }
                (Role::Admin { .. }, _) => Reply::error(
                    StatusCode::FORBIDDEN,
                    "the tenant report is for tenant certificates",
                ),
                _ => Reply::error(
                    StatusCode::FORBIDDEN,
                    "a tenant certificate may fetch its report (GET /v1/tenant/report), use the crypto API \
                     (POST /v1/crypto/...) and the console (/console), nothing else",
                ),
            }
        }
    };
    ctx.state
        .registry
        .live()
        .metrics
        .admin_request(reply.status.as_u16());
    info!(
        %peer,
        method = %method,
        path,
        status = reply.status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "admin request"
    );
    respond(reply)
}

/// The body, at most [`MAX_BODY`] bytes.
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(_) => Err(Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body unreadable or larger than 1 MiB",
        )),
    }
}

fn header(request: &Request<Incoming>, name: hyper::header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn log_request(
    ctx: &AdminContext,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    status: StatusCode,
    started: Instant,
) {
    ctx.state
        .registry
        .live()
        .metrics
        .admin_request(status.as_u16());
    info!(
        %peer,
        method = %method,
        path,
        status = status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "admin request"
    );
}

/// `/console...`: the web console ([`super::console`]).
async fn console_request(
    ctx: Arc<AdminContext>,
    role: Role,
    peer: SocketAddr,
    request: Request<Incoming>,
    started: Instant,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let host = header(&request, hyper::header::HOST);
    let origin = header(&request, hyper::header::ORIGIN);
    let referer = header(&request, hyper::header::REFERER);
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(reply) => return respond(reply),
    };
    let console = super::console::ConsoleRequest {
        method: method.clone(),
        path: path.clone(),
        query,
        host,
        origin,
        referer,
        body,
    };
    let for_page = ctx.clone();
    let page = tokio::task::spawn_blocking(move || {
        super::console::handle(&for_page, &role, peer, &console)
    })
    .await
    .unwrap_or_else(|_| super::console::Page {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        content_type: "text/plain; charset=utf-8",
        body: "handler failed\n".to_owned(),
        location: None,
    });
    log_request(&ctx, peer, &method, &path, page.status, started);
    let mut response = Response::new(Full::new(Bytes::from(page.body)));
    *response.status_mut() = page.status;
    let headers = response.headers_mut();
    let mut set = |name: hyper::header::HeaderName, value: &str| {
        if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(hyper::header::CONTENT_TYPE, page.content_type);
    set(hyper::header::CONTENT_SECURITY_POLICY, super::console::CSP);
    set(hyper::header::X_FRAME_OPTIONS, "DENY");
    set(hyper::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(hyper::header::CACHE_CONTROL, "no-store");
    set(hyper::header::REFERRER_POLICY, "same-origin");
    if let Some(location) = &page.location {
        set(hyper::header::LOCATION, location);
    }
    response
}

/// `/v1/crypto/...`: the JSON crypto API ([`super::crypto_api`]), for
/// tenant certificates only: the provider uses no key.
async fn crypto_request(
    ctx: Arc<AdminContext>,
    role: Role,
    peer: SocketAddr,
    request: Request<Incoming>,
    started: Instant,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let known = super::crypto_api::CRYPTO_ROUTES
        .iter()
        .any(|(_, p)| *p == path.trim_end_matches('/'));
    let bearer = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()));
    let reply = match (&role, known, method == Method::POST) {
        (_, false, _) => Reply::error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
        (_, true, false) => {
            Reply::error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes POST"))
        }
        (Role::Tenant(identity), true, true) => match read_body(request).await {
            Err(reply) => reply,
            Ok(body) => {
                let identity = identity.clone();
                let for_call = ctx.clone();
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    // Vec::from(Bytes) takes the buffer without a copy when
                    // it is the only reference: the PIN is then wiped once.
                    super::crypto_api::handle(
                        &for_call,
                        &identity,
                        peer,
                        &path,
                        bearer,
                        Vec::from(body),
                    )
                })
                .await
                .unwrap_or_else(|_| {
                    Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "handler failed")
                })
            }
        },
        _ => Reply::error(
            StatusCode::FORBIDDEN,
            "the crypto API is for tenant certificates: the provider uses no key",
        ),
    };
    log_request(&ctx, peer, &method, &path, reply.status, started);
    respond(reply)
}

/// Runs one admin route's handler for the console's actions, on the
/// calling (blocking) thread: audited as the API call is.
pub(super) fn run_admin_call(
    ctx: Arc<AdminContext>,
    role: Role,
    peer: SocketAddr,
    method: &str,
    pattern: &str,
    params: Vec<String>,
    body: Bytes,
) -> Reply {
    let call = Call {
        ctx,
        role,
        peer,
        params,
        query: String::new(),
        body,
        started: Instant::now(),
    };
    match Method::from_bytes(method.as_bytes()) {
        Ok(method) => admin_call(&call, &method, pattern),
        Err(_) => Reply::error(StatusCode::METHOD_NOT_ALLOWED, "bad method"),
    }
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    response
}

/// One admin call, read.
struct Call {
    ctx: Arc<AdminContext>,
    role: Role,
    peer: SocketAddr,
    params: Vec<String>,
    query: String,
    body: Bytes,
    started: Instant,
}

impl Call {
    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    fn tenant(&self, i: usize) -> Result<TenantName, Reply> {
        TenantName::parse(self.param(i)).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e))
    }

    fn partition(&self, i: usize) -> Result<PartitionName, Reply> {
        PartitionName::parse(self.param(i)).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e))
    }

    fn query(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    fn json<T: for<'de> Deserialize<'de> + Default>(&self) -> Result<T, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("request body: {e}")))
    }

    /// Records the admin action in the audit log (success or failure).
    fn audit(
        &self,
        action: &str,
        tenant: Option<&str>,
        partition: Option<&str>,
        detail: Option<String>,
        reply: &Reply,
    ) {
        let Some(audit) = self.ctx.state.audit() else {
            return;
        };
        let (fingerprint, subject) = match &self.role {
            Role::Admin {
                subject,
                fingerprint,
            } => (Some(fingerprint.to_string()), Some(subject.clone())),
            _ => (None, None),
        };
        let error = (!reply.status.is_success()).then(|| {
            serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| reply.status.to_string())
        });
        let record = AdminAction {
            action,
            tenant,
            partition,
            admin_fingerprint: fingerprint,
            admin_subject: subject,
            source: Some(self.peer),
            detail,
            error,
            duration: self.started.elapsed(),
        };
        if let Err(e) = audit.record_admin(&record) {
            error!(action, "the admin action could not be audited: {e}");
        }
    }
}

fn admin_call(call: &Call, method: &Method, pattern: &str) -> Reply {
    let result = match (method.as_str(), pattern) {
        ("GET", "/v1/health") => Ok(health(call)),
        ("GET", "/metrics") => Ok(Reply::text(
            "text/plain; version=0.0.4",
            super::metrics::render(&call.ctx.state),
        )),
        ("GET", "/v1/tenants") => list_tenants(call),
        ("POST", "/v1/tenants") => create_tenant(call),
        ("GET", "/v1/tenants/{tenant}") => show_tenant(call),
        ("POST", "/v1/tenants/{tenant}/disable") => set_disabled(call, true),
        ("POST", "/v1/tenants/{tenant}/enable") => set_disabled(call, false),
        ("GET", "/v1/certificates") => list_certificates(call),
        ("POST", "/v1/tenants/{tenant}/certificates") => issue_certificate(call),
        ("POST", "/v1/certificates/{id}/revoke") => revoke(call),
        ("GET", "/v1/partitions") => list_partitions(call),
        ("POST", "/v1/tenants/{tenant}/partitions") => allocate(call),
        ("GET", "/v1/partitions/{partition}") => show_partition(call),
        ("POST", "/v1/partitions/{partition}/suspend") => lifecycle(call, "suspend"),
        ("POST", "/v1/partitions/{partition}/resume") => lifecycle(call, "resume"),
        ("POST", "/v1/partitions/{partition}/terminate") => lifecycle(call, "terminate"),
        ("GET", "/v1/audit") => audit_query(call),
        ("GET", "/v1/audit/export") => audit_export(call),
        ("GET", "/v1/audit/verify") => audit_verify(call),
        ("GET", "/v1/metering") => metering(call),
        _ => Err(Reply::error(StatusCode::NOT_FOUND, "no such route")),
    };
    result.unwrap_or_else(|reply| reply)
}

type Handled = Result<Reply, Reply>;

fn health(call: &Call) -> Reply {
    let registry = &call.ctx.state.registry;
    let tenants = registry.tenants();
    Reply::ok(json!({
        "status": "ok",
        "server": crate::transport::SERVER_SOFTWARE,
        "tenants": tenants.len(),
        "slots": tenants.iter().map(|t| t.slots().count()).sum::<usize>(),
        "open_connections": registry.live().open_connections(),
        "audit": call.ctx.state.audit().is_some(),
    }))
}

fn store_rows(call: &Call) -> Result<(Vec<crate::store::TenantRow>, Vec<SlotRow>), Reply> {
    let store = call.ctx.state.registry.store()?;
    let tenants = store.tenants().map_err(RegistryError::from)?;
    let slots = store.slots().map_err(RegistryError::from)?;
    Ok((tenants, slots))
}

fn tenant_json(call: &Call, row: &crate::store::TenantRow, slots: &[SlotRow]) -> Value {
    let served = TenantName::parse(&row.name)
        .ok()
        .and_then(|n| call.ctx.state.registry.any_tenant(&n))
        .is_some();
    let partitions: Vec<&str> = slots
        .iter()
        .filter(|s| s.tenant == row.name)
        .map(|s| s.partition.as_str())
        .collect();
    json!({
        "name": row.name,
        "disabled": row.disabled,
        "source": row.source,
        "served": served,
        "created_at": rfc3339(row.created_at),
        "partitions": partitions,
    })
}

fn list_tenants(call: &Call) -> Handled {
    let (tenants, slots) = store_rows(call)?;
    let list: Vec<Value> = tenants
        .iter()
        .map(|t| tenant_json(call, t, &slots))
        .collect();
    Ok(Reply::ok(json!({ "tenants": list })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

fn create_tenant(call: &Call) -> Handled {
    let body: CreateTenant = call.json()?;
    let name = TenantName::parse(&body.name).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e));
    let reply = match name {
        Err(reply) => reply,
        Ok(name) => match call.ctx.state.registry.create_tenant(&name) {
            Ok(row) => Reply::json(StatusCode::CREATED, &tenant_json(call, &row, &[])),
            Err(e) => e.into(),
        },
    };
    call.audit(
        "tenant.create",
        Some(body.name.as_str()).filter(|n| TenantName::parse(n).is_ok()),
        None,
        None,
        &reply,
    );
    Ok(reply)
}

fn show_tenant(call: &Call) -> Handled {
    let name = call.tenant(0)?;
    let (tenants, slots) = store_rows(call)?;
    let row = tenants
        .iter()
        .find(|t| t.name == name.as_str())
        .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, format!("no tenant {name}")))?;
    let mut value = tenant_json(call, row, &slots);
    let partitions: Vec<Value> = slots
        .iter()
        .filter(|s| s.tenant == name.as_str())
        .map(|s| partition_json(call, s))
        .collect();
    value["partitions"] = Value::Array(partitions);
    let store = call.ctx.state.registry.store()?;
    let certificates: Vec<Value> = store
        .certificates()
        .map_err(RegistryError::from)?
        .iter()
        .filter(|c| c.tenant.as_deref() == Some(name.as_str()))
        .map(certificate_json)
        .collect();
    value["certificates"] = Value::Array(certificates);
    Ok(Reply::ok(value))
}

fn set_disabled(call: &Call, disabled: bool) -> Handled {
    let name = call.tenant(0)?;
    let reply = match call.ctx.state.registry.set_tenant_disabled(&name, disabled) {
        Ok(()) => Reply::ok(json!({ "name": name.as_str(), "disabled": disabled })),
        Err(e) => e.into(),
    };
    let action = if disabled {
        "tenant.disable"
    } else {
        "tenant.enable"
    };
    call.audit(action, Some(name.as_str()), None, None, &reply);
    Ok(reply)
}

fn certificate_json(c: &CertificateRow) -> Value {
    json!({
        "serial": c.serial,
        "fingerprint": c.fingerprint,
        "tenant": c.tenant,
        "subject": c.subject,
        "not_before": rfc3339(c.not_before),
        "not_after": rfc3339(c.not_after),
        "issued_at": rfc3339(c.issued_at),
        "revoked_at": c.revoked_at.map(rfc3339),
        "status": if c.revoked_at.is_some() { "revoked" } else { "valid" },
    })
}

fn list_certificates(call: &Call) -> Handled {
    let tenant = call.query("tenant");
    let store = call.ctx.state.registry.store()?;
    let list: Vec<Value> = store
        .certificates()
        .map_err(RegistryError::from)?
        .iter()
        .filter(|c| tenant.is_none() || c.tenant == tenant)
        .map(certificate_json)
        .collect();
    Ok(Reply::ok(json!({ "certificates": list })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueCertificate {
    /// A PKCS#10 request (PEM): only its public key is used.
    csr: Option<String>,
    /// Validity in days (default 365, at most 3650).
    days: Option<u32>,
}

fn issue_certificate(call: &Call) -> Handled {
    let tenant = call.tenant(0)?;
    let body: IssueCertificate = call.json()?;
    let reply = match super::certs::issue(&call.ctx, &tenant, body.csr.as_deref(), body.days) {
        Ok((row, key)) => {
            let mut value = certificate_json(&row);
            value["certificate_pem"] = Value::String(row.pem.clone());
            if let Some(key) = key {
                // Generated here: handed over once, never kept.
                value["private_key_pem"] = Value::String(key.to_string());
            }
            Reply::json(StatusCode::CREATED, &value)
        }
        Err(reply) => reply,
    };
    let detail = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| {
            v["serial"]
                .as_str()
                .map(|s| format!("serial {s}, csr: {}", body.csr.is_some()))
        });
    call.audit(
        "certificate.issue",
        Some(tenant.as_str()),
        None,
        detail,
        &reply,
    );
    Ok(reply)
}

fn revoke(call: &Call) -> Handled {
    let id = call.param(0).to_owned();
    let result = call.ctx.state.registry.revoke(&id);
    let (reply, tenant) = match result {
        Ok((row, cut)) => {
            let mut value = certificate_json(&row);
            value["connections_cut"] = json!(cut);
            (Reply::ok(value), row.tenant.clone())
        }
        Err(e) => (e.into(), None),
    };
    call.audit(
        "certificate.revoke",
        tenant.as_deref(),
        None,
        Some(format!("certificate {id}")),
        &reply,
    );
    Ok(reply)
}

fn partition_json(call: &Call, s: &SlotRow) -> Value {
    partition_value(&call.ctx, s)
}

/// A partition as the API shows it, with the state the registry serves.
pub(super) fn partition_value(ctx: &AdminContext, s: &SlotRow) -> Value {
    let mut value = json!({
        "name": s.partition,
        "tenant": s.tenant,
        "slot": s.slot_id,
        "driver": s.driver,
        "serial": s.serial,
        "algorithms": s.algorithms,
        "device": s.device,
        "state": s.state,
        "source": s.source,
        "created_at": rfc3339(s.created_at),
        "changed_at": rfc3339(s.changed_at),
    });
    // A slot the registry could not open (keys erased) says so.
    if s.state != PartitionState::Terminated.as_str()
        && let Ok(name) = PartitionName::parse(&s.partition)
    {
        let registry = &ctx.state.registry;
        let live = TenantName::parse(&s.tenant)
            .ok()
            .and_then(|t| registry.any_tenant(&t))
            .and_then(|t| t.slot(hsmlink_protocol::SlotId(s.slot_id)).map(|x| x.state));
        if let Some(state) = live {
            value["state"] = json!(state.as_str());
        }
        if let Some(driver) = registry.driver(&name) {
            value["token_initialized"] = json!(driver.token_state().initialized);
        }
    }
    value
}

fn list_partitions(call: &Call) -> Handled {
    let tenant = call.query("tenant");
    let (_, slots) = store_rows(call)?;
    let list: Vec<Value> = slots
        .iter()
        .filter(|s| tenant.as_deref().is_none_or(|t| t == s.tenant))
        .map(|s| partition_json(call, s))
        .collect();
    Ok(Reply::ok(json!({ "partitions": list })))
}

fn show_partition(call: &Call) -> Handled {
    let name = call.partition(0)?;
    let (_, slots) = store_rows(call)?;
    let row = slots
        .iter()
        .find(|s| s.partition == name.as_str())
        .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, format!("no partition {name}")))?;
    Ok(Reply::ok(partition_json(call, row)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allocate {
    /// "soft" (default) or "pkcs11".
    driver: Option<DriverKind>,
    slot: Option<u64>,
    algorithms: Option<AlgorithmsConfig>,
    device: Option<String>,
    /// pkcs11 driver: how many devices hold the partition.
    replica_count: Option<u32>,
    name: Option<String>,
}

fn allocate(call: &Call) -> Handled {
    let tenant = call.tenant(0)?;
    let body: Allocate = call.json()?;
    let parsed = (|| {
        let device = body
            .device
            .as_deref()
            .map(PartitionName::parse)
            .transpose()
            .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e))?;
        let partition = body
            .name
            .as_deref()
            .map(PartitionName::parse)
            .transpose()
            .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e))?;
        Ok::<_, Reply>(Allocation {
            driver: body.driver.unwrap_or(DriverKind::Soft),
            slot: body.slot,
            algorithms: body.algorithms.unwrap_or_default(),
            device,
            replica_count: body.replica_count,
            partition,
        })
    })();
    let (reply, partition) = match parsed {
        Err(reply) => (reply, None),
        Ok(request) => match call.ctx.state.registry.allocate(&tenant, &request) {
            Ok(row) => (
                Reply::json(StatusCode::CREATED, &partition_json(call, &row)),
                Some(row.partition),
            ),
            Err(e) => (e.into(), None),
        },
    };
    call.audit(
        "partition.allocate",
        Some(tenant.as_str()),
        partition.as_deref(),
        Some(format!(
            "driver {}",
            crate::registry::driver_str(body.driver.unwrap_or(DriverKind::Soft))
        )),
        &reply,
    );
    Ok(reply)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Terminate {
    /// Must repeat the partition's name: termination cannot be undone.
    confirm: Option<String>,
}

fn lifecycle(call: &Call, verb: &str) -> Handled {
    let name = call.partition(0)?;
    let registry = &call.ctx.state.registry;
    let tenant_of = |name: &PartitionName| {
        store_rows(call).ok().and_then(|(_, slots)| {
            slots
                .into_iter()
                .find(|s| s.partition == name.as_str())
                .map(|s| s.tenant)
        })
    };
    let tenant = tenant_of(&name);
    let result = match verb {
        "suspend" => registry.set_suspended(&name, true),
        "resume" => registry.set_suspended(&name, false),
        _ => {
            let body: Terminate = call.json()?;
            if body.confirm.as_deref() != Some(name.as_str()) {
                Err(RegistryError::Invalid(format!(
                    "termination erases every key of the partition for good: \
                     repeat its name in {{\"confirm\": \"{name}\"}}"
                )))
            } else {
                registry.terminate(&name)
            }
        }
    };
    let reply = match result {
        Ok((tenant, slot)) => {
            // Suspension ends the login state of every application of the
            // tenant on that slot (its sessions answer CKR_DEVICE_REMOVED
            // until resumed); termination closes the sessions too, so that
            // none carries over to a partition later shown in that slot (the
            // objects they held went with the partition).
            match verb {
                "resume" => {}
                "suspend" => call.ctx.state.sessions.logout_everywhere(&tenant, slot),
                _ => {
                    let closed = call.ctx.state.sessions.close_slot(&tenant, slot);
                    info!(
                        partition = name.as_str(),
                        sessions = closed.len(),
                        "terminated: the slot's sessions are closed"
                    );
                }
            }
            let state = match verb {
                "suspend" => PartitionState::Suspended,
                "resume" => PartitionState::Active,
                _ => PartitionState::Terminated,
            };
            Reply::ok(json!({
                "name": name.as_str(),
                "tenant": tenant.as_str(),
                "slot": slot.0,
                "state": state.as_str(),
            }))
        }
        Err(e) => e.into(),
    };
    call.audit(
        &format!("partition.{verb}"),
        tenant.as_deref(),
        Some(name.as_str()),
        None,
        &reply,
    );
    Ok(reply)
}

fn audit_filter(call: &Call) -> Result<crate::audit::reader::Filter, Reply> {
    let number = |name: &str| -> Result<Option<i64>, Reply> {
        call.query(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Reply::error(
                        StatusCode::BAD_REQUEST,
                        format!("{name}: a number (unix ms)"),
                    )
                })
            })
            .transpose()
    };
    Ok(crate::audit::reader::Filter {
        chain: call.query("tenant"),
        since_ms: number("since")?,
        until_ms: number("until")?,
        key: number("key")?.map(|k| k.max(0) as u64),
    })
}

fn audit_query(call: &Call) -> Handled {
    let filter = audit_filter(call)?;
    let limit = call
        .query("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(100_000);
    let records = crate::audit::reader::query(&call.ctx.store_path, &filter, limit)
        .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let lines: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::from_str(&r.json_line()).ok())
        .collect();
    Ok(Reply::ok(json!({ "records": lines })))
}

fn audit_export(call: &Call) -> Handled {
    let filter = audit_filter(call)?;
    let mut out = Vec::new();
    let result = crate::audit::reader::export(&call.ctx.store_path, &filter, &mut out);
    let reply = match result {
        Ok(_) => Reply::text(
            "application/jsonl",
            String::from_utf8_lossy(&out).into_owned(),
        ),
        Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    call.audit(
        "audit.export",
        filter.chain.as_deref().filter(|c| !c.starts_with('@')),
        None,
        None,
        &reply,
    );
    Ok(reply)
}

fn audit_verify(call: &Call) -> Handled {
    let key = call.ctx.state.audit().map(|a| a.public_key());
    let chain = call.query("tenant");
    // Commit what is queued first, so the report covers it.
    if let Some(audit) = call.ctx.state.audit() {
        let _ = audit.sync();
    }
    let report = crate::audit::reader::verify(&call.ctx.store_path, key, chain.as_deref())
        .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut value = serde_json::to_value(&report).unwrap_or_default();
    value["ok"] = json!(report.ok());
    Ok(Reply::ok(value))
}

fn metering(call: &Call) -> Handled {
    let number = |name: &str, default: i64| {
        call.query(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let rows = call
        .ctx
        .state
        .metering()
        .report(
            call.query("tenant").as_deref(),
            number("from", 0),
            number("to", i64::MAX),
        )
        .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Reply::ok(json!({ "metering": rows })))
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `%XX` and `+` in a query value.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push(((hex(hi).unwrap_or(0) << 4) | hex(lo).unwrap_or(0)) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_parameters() {
        let (i, p) = route(&Method::POST, "/v1/partitions/acme-p0/suspend").unwrap();
        assert_eq!(ROUTES[i].1, "/v1/partitions/{partition}/suspend");
        assert_eq!(p, ["acme-p0"]);
        assert_eq!(
            route(&Method::DELETE, "/v1/tenants").unwrap_err(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&Method::GET, "/v1/nothing").unwrap_err(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/v1/tenants//x").unwrap_err(),
            StatusCode::NOT_FOUND
        );
    }

    /// docs/openapi.json describes exactly the routes of [`ROUTES`].
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (route, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), route.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .chain(super::super::crypto_api::CRYPTO_ROUTES)
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        served.sort();
        for route in &served {
            assert!(
                documented.contains(route),
                "{route:?} is not in docs/openapi.json"
            );
        }
        for route in &documented {
            assert!(
                served.contains(route),
                "{route:?} is documented but not served"
            );
        }
        // Nothing of the provider's logs in, or uses or exports a key: only
        // the crypto API does, and it refuses provider certificates.
        for (_, p) in ROUTES {
            for word in ["login", "pin", "key", "sign", "crypt", "wrap"] {
                assert!(!p.contains(word), "{p}");
            }
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%2Db+c"), "a-b c");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
