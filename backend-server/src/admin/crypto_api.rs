//! The JSON crypto API for tenant certificates: `POST /v1/crypto/...` on the
//! admin listener (sign, verify, encrypt, decrypt, digest, HMAC, random,
//! key listing, login/logout).
//!
//! Every request becomes the same `hsmlink_protocol::Request`s the module
//! would send (`C_OpenSession`, `C_Login`, `C_FindObjects*`, `C_SignInit`,
//! `C_Sign`, ...) run through the same dispatcher
//! ([`crate::calls::login::handle_throttled`], which also applies the
//! per-source PIN throttle), so the token model, audit records, metering,
//! limits and `CKR_*` codes are those of the PKCS#11 path by construction.
//! The calls run as an application instance of their own: one per request
//! when the request carries the user PIN, one per token after
//! `POST /v1/crypto/login`. Audit records of these calls carry
//! `"via": "http-api"` and the HTTP client's address as `source`.
//!
//! Tokens are 32 random bytes (hex); the server keeps only their SHA-256,
//! bound to the tenant and the certificate that logged in. A token ends at
//! logout, at its expiry (`ttl_s`, default 300 s, at most 3600 s), or when
//! the server's login limits end the login (then calls answer
//! `CKR_USER_NOT_LOGGED_IN`). PINs and tokens are never logged and are
//! wiped from memory after use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cryptoki_sys::*;
use hsmlink_protocol::{
    AppInstance, Attribute, AttributeResult, AttributeValue, Mechanism, MechanismParams,
    MechanismType, ObjectHandle, Output, OutputSpec, Request, Response, ResponseBody, Secret,
    SessionHandle, SlotId, UserType,
};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::AdminContext;
use super::api::Reply;
use crate::audit::names::{mechanism_name, rv_name};
use crate::dispatch::{ClientContext, ServerState};
use crate::identity::{Fingerprint, PeerIdentity};
use crate::names::TenantName;
use crate::ratelimit::LoginThrottle;
use crate::sessions::AppKey;

/// The connection number of every [`ClientContext`] of this API. Wire
/// connections are numbered from 1 upwards and never reach it, so the audit
/// hook can tell these calls apart (a client cannot claim it).
pub const HTTP_API_CONNECTION: u64 = u64::MAX;

/// `via` of the audit records of this API's calls.
pub const VIA: &str = "http-api";

/// The API's routes (all `POST`, JSON in and out), documented in
/// `docs/openapi.json` beside the admin routes.
pub const CRYPTO_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/crypto/login"),
    ("POST", "/v1/crypto/logout"),
    ("POST", "/v1/crypto/keys"),
    ("POST", "/v1/crypto/sign"),
    ("POST", "/v1/crypto/verify"),
    ("POST", "/v1/crypto/encrypt"),
    ("POST", "/v1/crypto/decrypt"),
    ("POST", "/v1/crypto/digest"),
    ("POST", "/v1/crypto/hmac"),
    ("POST", "/v1/crypto/random"),
];

const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Largest `random` length.
const MAX_RANDOM: u64 = 65536;
/// Live tokens per certificate at most: each holds a logged-in session.
const MAX_TOKENS_PER_CERT: usize = 64;

/// The live login tokens, by SHA-256 of the token.
#[derive(Debug, Default)]
pub struct Tokens {
    map: Mutex<HashMap<[u8; 32], TokenEntry>>,
}

#[derive(Clone, Debug)]
struct TokenEntry {
    tenant: TenantName,
    cert: Fingerprint,
    app: AppInstance,
    slot: SlotId,
    expires: Instant,
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], TokenEntry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the expired tokens; their applications are finalized (at
    /// every API request, and every 30 s by the admin listener).
    pub fn sweep(&self, state: &ServerState, now: Instant) {
        let expired: Vec<TokenEntry> = {
            let mut map = self.lock();
            let gone: Vec<[u8; 32]> = map
                .iter()
                .filter(|(_, e)| e.expires <= now)
                .map(|(k, _)| *k)
                .collect();
            gone.iter().filter_map(|k| map.remove(k)).collect()
        };
        for e in expired {
            end_app(state, &e.tenant, e.app);
        }
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    crate::audit::record::sha256(token.as_bytes())
}

/// An error of this API: HTTP status, the `CKR_*` code, a message that
/// holds no secret.
#[derive(Debug)]
struct ApiError {
    rv: u64,
    message: String,
}

impl ApiError {
    fn new(rv: u64, message: impl Into<String>) -> Self {
        Self {
            rv,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(CKR_ARGUMENTS_BAD, message)
    }

    fn from_rv(rv: u64, during: &str) -> Self {
        Self::new(rv, format!("{during}: {}", rv_name(rv)))
    }
}

/// The HTTP status of a `CK_RV`.
pub fn status_of(rv: u64) -> StatusCode {
    match rv {
        CKR_PIN_INCORRECT
        | CKR_PIN_INVALID
        | CKR_PIN_LEN_RANGE
        | CKR_USER_NOT_LOGGED_IN
        | CKR_USER_PIN_NOT_INITIALIZED => StatusCode::UNAUTHORIZED,
        CKR_PIN_LOCKED | CKR_PIN_EXPIRED | CKR_KEY_FUNCTION_NOT_PERMITTED => StatusCode::FORBIDDEN,
        CKR_FUNCTION_REJECTED | CKR_SESSION_COUNT => StatusCode::TOO_MANY_REQUESTS,
        CKR_KEY_HANDLE_INVALID | CKR_SLOT_ID_INVALID | CKR_OBJECT_HANDLE_INVALID => {
            StatusCode::NOT_FOUND
        }
        CKR_TOKEN_NOT_PRESENT | CKR_DEVICE_REMOVED | CKR_TOKEN_NOT_RECOGNIZED => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        CKR_DEVICE_ERROR | CKR_GENERAL_ERROR | CKR_DEVICE_MEMORY | CKR_HOST_MEMORY
        | CKR_FUNCTION_FAILED => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::json(
            status_of(e.rv),
            &json!({ "error": rv_name(e.rv), "rv": e.rv, "message": e.message }),
        )
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The request body: every route takes a subset of these.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The tenant's slot id; may be left out if the tenant has one slot.
    slot: Option<u64>,
    /// The user PIN (instead of a token).
    pin: Option<String>,
    /// `login`: the token's lifetime in seconds.
    ttl_s: Option<u64>,
    /// The key's `CKA_ID`, hex.
    key_id: Option<String>,
    /// The key's `CKA_LABEL`.
    key_label: Option<String>,
    /// `CKM_*` name (or number).
    mechanism: Option<Value>,
    /// Base64.
    data: Option<String>,
    signature: Option<String>,
    iv: Option<String>,
    aad: Option<String>,
    tag_bits: Option<u64>,
    /// `random`: how many bytes.
    length: Option<u64>,
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(pin) = &mut self.pin {
            pin.zeroize();
        }
    }
}

impl Body {
    fn bytes(field: &Option<String>, name: &str) -> ApiResult<Option<Zeroizing<Vec<u8>>>> {
        field
            .as_deref()
            .map(|text| {
                B64.decode(text.trim())
                    .map(Zeroizing::new)
                    .map_err(|_| ApiError::bad(format!("{name}: not base64")))
            })
            .transpose()
    }

    fn required(field: &Option<String>, name: &str) -> ApiResult<Zeroizing<Vec<u8>>> {
        Self::bytes(field, name)?
            .ok_or_else(|| ApiError::bad(format!("{name} (base64) is required")))
    }

    fn mechanism(&self, default: Option<u64>) -> ApiResult<u64> {
        match &self.mechanism {
            None => default.ok_or_else(|| ApiError::bad("mechanism (a CKM_* name) is required")),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| ApiError::new(CKR_MECHANISM_INVALID, "mechanism: not a CKM number")),
            Some(Value::String(name)) => parse_mechanism(name),
            Some(_) => Err(ApiError::bad("mechanism: a CKM_* name or number")),
        }
    }
}

/// A `CKM_*` name of a mechanism the soft HSM serves, or a number
/// (decimal or `0x` hex).
fn parse_mechanism(name: &str) -> ApiResult<u64> {
    let name = name.trim();
    if let Some(hex) = name.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16)
            .map_err(|_| ApiError::new(CKR_MECHANISM_INVALID, "mechanism: bad hex number"));
    }
    if let Ok(n) = name.parse::<u64>() {
        return Ok(n);
    }
    let wanted = if name.starts_with("CKM_") {
        name.to_owned()
    } else {
        format!("CKM_{name}")
    };
    crate::soft::mechanisms::SOFT_MECHANISMS
        .iter()
        .map(|m| m.mechanism)
        .find(|m| mechanism_name(*m) == wanted)
        .ok_or_else(|| ApiError::new(CKR_MECHANISM_INVALID, format!("unknown mechanism {name}")))
}

/// The parameter a mechanism needs, from the request's `iv`, `aad` and
/// `tag_bits`; RSA-PSS and OAEP get the parameters that go with their hash.
fn mechanism_params(mechanism: u64, body: &Body) -> ApiResult<MechanismParams> {
    let iv = || -> ApiResult<Vec<u8>> { Body::required(&body.iv, "iv").map(|v| v.to_vec()) };
    let pss = |hash: u64, mgf: u64, salt: u64| MechanismParams::RsaPss {
        hash_alg: MechanismType(hash),
        mgf,
        salt_len: salt,
    };
    Ok(match mechanism {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_DES3_CBC | CKM_DES3_CBC_PAD => {
            MechanismParams::Iv(iv()?)
        }
        m if mechanism_name(m).starts_with("CKM_SM4_CBC") => MechanismParams::Iv(iv()?),
        CKM_AES_GCM => {
            let iv = iv()?;
            let aad = Body::bytes(&body.aad, "aad")?
                .map(|a| a.to_vec())
                .unwrap_or_default();
            MechanismParams::AesGcm {
                iv_bits: (iv.len() as u64).saturating_mul(8),
                iv,
                aad,
                tag_bits: body.tag_bits.unwrap_or(128),
            }
        }
        CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS => pss(CKM_SHA256, CKG_MGF1_SHA256, 32),
        CKM_SHA1_RSA_PKCS_PSS => pss(CKM_SHA_1, CKG_MGF1_SHA1, 20),
        CKM_SHA224_RSA_PKCS_PSS => pss(CKM_SHA224, CKG_MGF1_SHA224, 28),
        CKM_SHA384_RSA_PKCS_PSS => pss(CKM_SHA384, CKG_MGF1_SHA384, 48),
        CKM_SHA512_RSA_PKCS_PSS => pss(CKM_SHA512, CKG_MGF1_SHA512, 64),
        CKM_RSA_PKCS_OAEP => MechanismParams::RsaOaep {
            hash_alg: MechanismType(CKM_SHA256),
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            source_data: Vec::new(),
        },
        _ => MechanismParams::None,
    })
}

/// Calls of one request, as one application instance of the tenant.
struct Caller<'a> {
    state: &'a ServerState,
    throttle: &'a Arc<LoginThrottle>,
    ctx: ClientContext,
}

impl Caller<'_> {
    fn call(&self, request: Request) -> Response {
        crate::calls::login::handle_throttled(self.state, self.throttle, &self.ctx, request)
    }

    /// A call that answers `Empty` on success.
    fn unit(&self, request: Request) -> ApiResult<()> {
        let name = request.function_name();
        let r = self.call(request);
        if r.rv.0 == CKR_OK {
            Ok(())
        } else {
            Err(ApiError::from_rv(r.rv.0, name))
        }
    }

    fn open_session(&self, slot: SlotId) -> ApiResult<SessionHandle> {
        let r = self.call(Request::OpenSession {
            slot,
            flags: CKF_SERIAL_SESSION,
        });
        match (r.rv.0, r.body) {
            (CKR_OK, ResponseBody::Session(s)) => Ok(s),
            (CKR_OK, _) => Err(ApiError::new(
                CKR_GENERAL_ERROR,
                "C_OpenSession: no session",
            )),
            (rv, _) => Err(ApiError::from_rv(rv, "C_OpenSession")),
        }
    }

    /// A call with output, retried once with the length a too-small
    /// capacity got back.
    fn output(
        &self,
        capacity: u64,
        make: impl Fn(OutputSpec) -> Request,
    ) -> ApiResult<Zeroizing<Vec<u8>>> {
        let mut spec = OutputSpec::Capacity(capacity);
        for _ in 0..2 {
            let request = make(spec);
            let name = request.function_name();
            let r = self.call(request);
            match (r.rv.0, r.body) {
                (CKR_OK, ResponseBody::Output(Output::Data(d)) | ResponseBody::Random(d)) => {
                    return Ok(Zeroizing::new(d.as_bytes().to_vec()));
                }
                (CKR_BUFFER_TOO_SMALL, ResponseBody::Output(Output::Length(n))) => {
                    spec = OutputSpec::Capacity(n);
                }
                (CKR_OK, _) => {
                    return Err(ApiError::new(
                        CKR_GENERAL_ERROR,
                        format!("{name}: no output"),
                    ));
                }
                (rv, _) => return Err(ApiError::from_rv(rv, name)),
            }
        }
        Err(ApiError::new(
            CKR_GENERAL_ERROR,
            "output length kept changing",
        ))
    }

    fn attributes(
        &self,
        session: SessionHandle,
        object: ObjectHandle,
        types: &[u64],
    ) -> ApiResult<Vec<Option<AttributeValue>>> {
        let r = self.call(Request::GetAttributeValue {
            session,
            object,
            types: types
                .iter()
                .map(|t| hsmlink_protocol::AttributeType(*t))
                .collect(),
        });
        match r.body {
            // Some attributes may be sensitive or absent: the others are there.
            ResponseBody::Attributes(list) => Ok(list
                .into_iter()
                .map(|a| match a {
                    AttributeResult::Value(v) => Some(v),
                    _ => None,
                })
                .collect()),
            _ => Err(ApiError::from_rv(r.rv.0, "C_GetAttributeValue")),
        }
    }

    fn find(
        &self,
        session: SessionHandle,
        template: Vec<Attribute>,
        max: u64,
    ) -> ApiResult<Vec<ObjectHandle>> {
        self.unit(Request::FindObjectsInit { session, template })?;
        let r = self.call(Request::FindObjects {
            session,
            max_count: max,
        });
        let _ = self.call(Request::FindObjectsFinal { session });
        match (r.rv.0, r.body) {
            (CKR_OK, ResponseBody::Objects(list)) => Ok(list),
            (rv, _) => Err(ApiError::from_rv(rv, "C_FindObjects")),
        }
    }

    /// The key the request names (`key_id` and/or `key_label`), of the
    /// first of `classes` that has one: a key pair shares its `CKA_ID`.
    fn key(&self, session: SessionHandle, body: &Body, classes: &[u64]) -> ApiResult<ObjectHandle> {
        let mut template = Vec::new();
        if let Some(id) = &body.key_id {
            let id = crate::audit::record::unhex(id.trim())
                .ok_or_else(|| ApiError::bad("key_id: hex digits"))?;
            template.push(Attribute::new(CKA_ID, AttributeValue::Bytes(id)));
        }
        if let Some(label) = &body.key_label {
            template.push(Attribute::new(
                CKA_LABEL,
                AttributeValue::Bytes(label.as_bytes().to_vec()),
            ));
        }
        if template.is_empty() {
            return Err(ApiError::bad(
                "name the key: key_id (its CKA_ID, hex) or key_label (its CKA_LABEL)",
            ));
        }
        let found = self.find(session, template, 64)?;
        let mut by_class: Vec<(u64, ObjectHandle)> = Vec::new();
        for handle in found {
            if let Some(Some(AttributeValue::Ulong(class))) = self
                .attributes(session, handle, &[CKA_CLASS])?
                .into_iter()
                .next()
            {
                by_class.push((class, handle));
            }
        }
        for class in classes {
            let matching: Vec<ObjectHandle> = by_class
                .iter()
                .filter(|(c, _)| c == class)
                .map(|(_, h)| *h)
                .collect();
            match matching.as_slice() {
                [] => continue,
                [one] => return Ok(*one),
                many => {
                    return Err(ApiError::bad(format!(
                        "{} keys match: name it by both key_id and key_label",
                        many.len()
                    )));
                }
            }
        }
        Err(ApiError::new(
            CKR_KEY_HANDLE_INVALID,
            "no such key on this token (key_id/key_label) usable for this call",
        ))
    }
}

/// Ends an application instance of this API: its sessions close, its login
/// state ends, and the session layer forgets it after the grace period.
fn end_app(state: &ServerState, tenant: &TenantName, app: AppInstance) {
    let key = AppKey {
        tenant: tenant.clone(),
        app,
    };
    if let Some(closed) = state.sessions.finalize(&key, 0) {
        state.sessions_closed(&closed);
    }
    state.sessions.connection_closed(&key, 0, Instant::now());
}

fn new_app(state: &ServerState, tenant: &TenantName) -> ApiResult<AppInstance> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| ApiError::new(CKR_DEVICE_ERROR, "no randomness"))?;
    let app = AppInstance(id);
    // Counted like a connection, so that the session layer forgets the
    // instance once it ends (end_app) and never while it is in use.
    state.sessions.connection_opened(
        &AppKey {
            tenant: tenant.clone(),
            app,
        },
        0,
    );
    Ok(app)
}

/// What ends when a request is done (also on a panic).
enum End {
    /// Nothing (yet): a token's instance before its session is open.
    Nothing,
    /// A per-request instance: all of it.
    App,
    /// A token's instance: only this request's session.
    Session(SessionHandle),
}

struct Ending<'a> {
    caller: &'a Caller<'a>,
    tenant: TenantName,
    end: End,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        match self.end {
            End::Nothing => {}
            End::App => end_app(
                self.caller.state,
                &self.tenant,
                self.caller.ctx.app_instance,
            ),
            End::Session(session) => {
                let _ = self.caller.call(Request::CloseSession { session });
            }
        }
    }
}

/// Answers one crypto API request. Blocking (dispatcher, PIN hashing): the
/// caller runs it on a blocking thread.
pub fn handle(
    ctx: &AdminContext,
    identity: &PeerIdentity,
    peer: SocketAddr,
    path: &str,
    bearer: Option<Zeroizing<String>>,
    mut raw: Vec<u8>,
) -> Reply {
    let parsed = if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(Body::default())
    } else {
        serde_json::from_slice::<Body>(&raw)
            .map_err(|e| ApiError::bad(format!("request body: {}", redact_serde(&e))))
    };
    // The body may hold the PIN.
    raw.zeroize();
    let result = parsed.and_then(|body| {
        serve(
            ctx,
            identity,
            peer,
            path,
            bearer.as_deref().map(String::as_str),
            &body,
        )
    });
    match result {
        Ok(value) => Reply::ok(value),
        Err(e) => e.into(),
    }
}

/// serde's message without the offending input (which may be a PIN).
fn redact_serde(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn serve(
    admin: &AdminContext,
    identity: &PeerIdentity,
    peer: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &Body,
) -> ApiResult<Value> {
    let state: &ServerState = &admin.state;
    let tenant = identity.tenant.clone();
    let tokens = &admin.tokens;
    tokens.sweep(state, Instant::now());
    let context = |app: AppInstance| ClientContext {
        connection: HTTP_API_CONNECTION,
        peer,
        identity: identity.clone(),
        app_instance: app,
        pid: 0,
        client: format!("hsmlink {VIA}"),
    };
    let route = path.trim_end_matches('/');
    if route == "/v1/crypto/logout" {
        let token = bearer.ok_or_else(|| {
            ApiError::new(
                CKR_USER_NOT_LOGGED_IN,
                "logout needs the token (Authorization: Bearer)",
            )
        })?;
        let entry = tokens.lock().remove(&token_hash(token));
        return match entry {
            Some(e) if e.tenant == tenant && e.cert == identity.fingerprint => {
                end_app(state, &e.tenant, e.app);
                Ok(json!({ "logged_out": true }))
            }
            Some(e) => {
                // Another certificate's token: put it back, say nothing of it.
                tokens.lock().insert(token_hash(token), e);
                Err(ApiError::new(CKR_USER_NOT_LOGGED_IN, "no such token"))
            }
            None => Err(ApiError::new(
                CKR_USER_NOT_LOGGED_IN,
                "no such token (expired?)",
            )),
        };
    }

    // Which application instance and session this request uses.
    let token_entry = match bearer {
        Some(token) => {
            let entry = tokens.lock().get(&token_hash(token)).cloned();
            match entry {
                Some(e) if e.tenant == tenant && e.cert == identity.fingerprint => Some(e),
                _ => {
                    return Err(ApiError::new(
                        CKR_USER_NOT_LOGGED_IN,
                        "no such token (expired or logged out): log in again",
                    ));
                }
            }
        }
        None => None,
    };
    if route == "/v1/crypto/login" {
        if token_entry.is_some() {
            return Err(ApiError::bad("login takes the PIN, not a token"));
        }
        let live = tokens
            .lock()
            .values()
            .filter(|e| e.cert == identity.fingerprint)
            .count();
        if live >= MAX_TOKENS_PER_CERT {
            return Err(ApiError::new(
                CKR_SESSION_COUNT,
                format!("{live} tokens of this certificate are live: log out of one first"),
            ));
        }
    }
    let app = match &token_entry {
        Some(e) => e.app,
        None => new_app(state, &tenant)?,
    };
    let caller = Caller {
        state,
        throttle: &admin.throttle,
        ctx: context(app),
    };
    // A per-request instance ends with the request; a login's is kept (below).
    let mut ending = Ending {
        caller: &caller,
        tenant: tenant.clone(),
        end: if token_entry.is_some() {
            End::Nothing
        } else {
            End::App
        },
    };
    let slot = match (&token_entry, body.slot) {
        (Some(e), Some(s)) if s != e.slot.0 => {
            return Err(ApiError::new(
                CKR_SLOT_ID_INVALID,
                "the token is for another slot",
            ));
        }
        (Some(e), _) => e.slot,
        (None, Some(s)) => SlotId(s),
        (None, None) => only_slot(&caller)?,
    };
    let session = caller.open_session(slot)?;
    if token_entry.is_some() {
        ending.end = End::Session(session);
    }
    let needs_login = !matches!(route, "/v1/crypto/digest" | "/v1/crypto/random");
    match (&body.pin, &token_entry) {
        (Some(pin), None) => caller.unit(Request::Login {
            session,
            user_type: UserType(CKU_USER),
            pin: Secret::from_slice(pin.as_bytes()),
        })?,
        (Some(_), Some(_)) => return Err(ApiError::bad("give the PIN or a token, not both")),
        (None, None) if needs_login || route == "/v1/crypto/login" => {
            return Err(ApiError::new(
                CKR_USER_NOT_LOGGED_IN,
                "log in: \"pin\" in the body, or Authorization: Bearer TOKEN from /v1/crypto/login",
            ));
        }
        _ => {}
    }

    match route {
        "/v1/crypto/login" => {
            let ttl = body
                .ttl_s
                .map_or(DEFAULT_TTL, Duration::from_secs)
                .clamp(Duration::from_secs(1), MAX_TTL);
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw)
                .map_err(|_| ApiError::new(CKR_DEVICE_ERROR, "no randomness"))?;
            let token = Zeroizing::new(crate::audit::record::hex(&raw));
            raw.zeroize();
            tokens.lock().insert(
                token_hash(&token),
                TokenEntry {
                    tenant: tenant.clone(),
                    cert: identity.fingerprint,
                    app,
                    slot,
                    expires: Instant::now() + ttl,
                },
            );
            // The instance and its logged-in session live on with the token.
            ending.end = End::Nothing;
            Ok(json!({
                "token": token.as_str(),
                "token_type": "Bearer",
                "expires_in_s": ttl.as_secs(),
                "slot": slot.0,
            }))
        }
        "/v1/crypto/keys" => list_keys(&caller, session, slot),
        "/v1/crypto/sign" => {
            let mechanism = body.mechanism(None)?;
            let key = caller.key(session, body, &[CKO_PRIVATE_KEY, CKO_SECRET_KEY])?;
            let data = Body::required(&body.data, "data")?;
            let signature = sign(&caller, session, mechanism, key, body, &data)?;
            let mut out = json!({
                "mechanism": mechanism_name(mechanism),
                "signature": B64.encode(&*signature),
            });
            if mechanism_name(mechanism).starts_with("CKM_ECDSA") {
                out["signature_der"] = json!(B64.encode(ecdsa_der(&signature)));
            }
            Ok(out)
        }
        "/v1/crypto/hmac" => {
            let mechanism = body.mechanism(Some(CKM_SHA256_HMAC))?;
            let key = caller.key(session, body, &[CKO_SECRET_KEY])?;
            let data = Body::required(&body.data, "data")?;
            let mac = sign(&caller, session, mechanism, key, body, &data)?;
            Ok(json!({ "mechanism": mechanism_name(mechanism), "mac": B64.encode(&*mac) }))
        }
        "/v1/crypto/verify" => {
            let mechanism = body.mechanism(None)?;
            let key = caller.key(session, body, &[CKO_PUBLIC_KEY, CKO_SECRET_KEY])?;
            let data = Body::required(&body.data, "data")?;
            let signature = Body::required(&body.signature, "signature")?;
            caller.unit(Request::VerifyInit {
                session,
                mechanism: Mechanism::new(mechanism, mechanism_params(mechanism, body)?),
                key,
            })?;
            let r = caller.call(Request::Verify {
                session,
                data: Secret::from_slice(&data),
                signature: signature.to_vec(),
            });
            match r.rv.0 {
                CKR_OK => Ok(json!({ "valid": true })),
                rv @ (CKR_SIGNATURE_INVALID | CKR_SIGNATURE_LEN_RANGE) => {
                    Ok(json!({ "valid": false, "rv": rv_name(rv) }))
                }
                rv => Err(ApiError::from_rv(rv, "C_Verify")),
            }
        }
        "/v1/crypto/encrypt" | "/v1/crypto/decrypt" => {
            let encrypt = route.ends_with("encrypt");
            let mechanism = body.mechanism(None)?;
            let classes: &[u64] = if encrypt {
                &[CKO_PUBLIC_KEY, CKO_SECRET_KEY]
            } else {
                &[CKO_PRIVATE_KEY, CKO_SECRET_KEY]
            };
            let key = caller.key(session, body, classes)?;
            let data = Body::required(&body.data, "data")?;
            let mech = Mechanism::new(mechanism, mechanism_params(mechanism, body)?);
            let capacity = data.len() as u64 + 1024;
            let out = if encrypt {
                caller.unit(Request::EncryptInit {
                    session,
                    mechanism: mech,
                    key,
                })?;
                caller.output(capacity, |out| Request::Encrypt {
                    session,
                    data: Secret::from_slice(&data),
                    out,
                })?
            } else {
                caller.unit(Request::DecryptInit {
                    session,
                    mechanism: mech,
                    key,
                })?;
                caller.output(capacity, |out| Request::Decrypt {
                    session,
                    data: Secret::from_slice(&data),
                    out,
                })?
            };
            let field = if encrypt { "ciphertext" } else { "plaintext" };
            Ok(json!({ "mechanism": mechanism_name(mechanism), field: B64.encode(&*out) }))
        }
        "/v1/crypto/digest" => {
            let mechanism = body.mechanism(Some(CKM_SHA256))?;
            let data = Body::required(&body.data, "data")?;
            caller.unit(Request::DigestInit {
                session,
                mechanism: Mechanism::new(mechanism, MechanismParams::None),
            })?;
            let digest = caller.output(128, |out| Request::Digest {
                session,
                data: Secret::from_slice(&data),
                out,
            })?;
            Ok(json!({ "mechanism": mechanism_name(mechanism), "digest": B64.encode(&*digest) }))
        }
        "/v1/crypto/random" => {
            let len = body
                .length
                .ok_or_else(|| ApiError::bad("length is required"))?;
            if len == 0 || len > MAX_RANDOM {
                return Err(ApiError::new(
                    CKR_ARGUMENTS_BAD,
                    format!("length: 1 to {MAX_RANDOM} bytes"),
                ));
            }
            let r = caller.call(Request::GenerateRandom { session, len });
            match (r.rv.0, r.body) {
                (CKR_OK, ResponseBody::Random(d)) => {
                    Ok(json!({ "random": B64.encode(d.as_bytes()) }))
                }
                (rv, _) => Err(ApiError::from_rv(rv, "C_GenerateRandom")),
            }
        }
        _ => Err(ApiError::new(
            CKR_FUNCTION_NOT_SUPPORTED,
            format!("no route POST {route}"),
        )),
    }
}

/// The tenant's slot when it has exactly one.
fn only_slot(caller: &Caller<'_>) -> ApiResult<SlotId> {
    let r = caller.call(Request::GetSlotList {
        token_present: false,
    });
    match (r.rv.0, r.body) {
        (CKR_OK, ResponseBody::SlotList(list)) => match list.as_slice() {
            [one] => Ok(*one),
            [] => Err(ApiError::new(
                CKR_SLOT_ID_INVALID,
                "this tenant has no slot",
            )),
            many => Err(ApiError::new(
                CKR_SLOT_ID_INVALID,
                format!(
                    "this tenant has {} slots: name one with \"slot\"",
                    many.len()
                ),
            )),
        },
        (rv, _) => Err(ApiError::from_rv(rv, "C_GetSlotList")),
    }
}

fn sign(
    caller: &Caller<'_>,
    session: SessionHandle,
    mechanism: u64,
    key: ObjectHandle,
    body: &Body,
    data: &[u8],
) -> ApiResult<Zeroizing<Vec<u8>>> {
    caller.unit(Request::SignInit {
        session,
        mechanism: Mechanism::new(mechanism, mechanism_params(mechanism, body)?),
        key,
    })?;
    caller.output(1024, |out| Request::Sign {
        session,
        data: Secret::from_slice(data),
        out,
    })
}

fn list_keys(caller: &Caller<'_>, session: SessionHandle, slot: SlotId) -> ApiResult<Value> {
    let handles = caller.find(session, Vec::new(), 4096)?;
    let types = [
        CKA_CLASS,
        CKA_KEY_TYPE,
        CKA_ID,
        CKA_LABEL,
        CKA_EC_PARAMS,
        CKA_EC_POINT,
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
    ];
    let mut keys = Vec::new();
    for handle in handles {
        let values = caller.attributes(session, handle, &types)?;
        let get = |i: usize| values.get(i).and_then(Option::as_ref);
        let ulong = |i: usize| match get(i) {
            Some(AttributeValue::Ulong(v)) => Some(*v),
            _ => None,
        };
        let bytes = |i: usize| match get(i) {
            Some(AttributeValue::Bytes(b)) => Some(b.as_slice()),
            _ => None,
        };
        let class = ulong(0);
        let mut key = json!({
            "handle": handle.0,
            "class": class.map(class_name),
            "key_type": ulong(1).map(key_type_name),
            "id": bytes(2).map(crate::audit::record::hex),
            "label": bytes(3).map(|b| String::from_utf8_lossy(b).into_owned()),
        });
        if class == Some(CKO_PUBLIC_KEY) {
            let spki = match (bytes(4), bytes(5), bytes(6), bytes(7)) {
                (Some(params), Some(point), _, _) => Some(ec_spki(params, point)),
                (_, _, Some(n), Some(e)) => Some(rsa_spki(n, e)),
                _ => None,
            };
            if let Some(spki) = spki {
                key["public_key_pem"] = json!(pem("PUBLIC KEY", &spki));
            }
        }
        keys.push(key);
    }
    Ok(json!({ "slot": slot.0, "keys": keys }))
}

fn class_name(class: u64) -> String {
    match class {
        CKO_DATA => "CKO_DATA".to_owned(),
        CKO_CERTIFICATE => "CKO_CERTIFICATE".to_owned(),
        CKO_PUBLIC_KEY => "CKO_PUBLIC_KEY".to_owned(),
        CKO_PRIVATE_KEY => "CKO_PRIVATE_KEY".to_owned(),
        CKO_SECRET_KEY => "CKO_SECRET_KEY".to_owned(),
        other => format!("{other:#x}"),
    }
}

fn key_type_name(kind: u64) -> String {
    match kind {
        CKK_RSA => "CKK_RSA".to_owned(),
        CKK_EC => "CKK_EC".to_owned(),
        CKK_AES => "CKK_AES".to_owned(),
        CKK_DES2 => "CKK_DES2".to_owned(),
        CKK_DES3 => "CKK_DES3".to_owned(),
        CKK_GENERIC_SECRET => "CKK_GENERIC_SECRET".to_owned(),
        CKK_EC_EDWARDS => "CKK_EC_EDWARDS".to_owned(),
        other => format!("{other:#x}"),
    }
}

// ---- DER, for public keys (SubjectPublicKeyInfo) and ECDSA signatures ----

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian bytes.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// PKCS#11's ECDSA signature (r || s) as DER `ECDSA-Sig-Value`.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    der(0x30, &[der_uint(r), der_uint(s)].concat())
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (some tokens give
/// the bare point): the point.
fn ec_point(value: &[u8]) -> &[u8] {
    if let [0x04, rest @ ..] = value {
        let (len, header) = match rest {
            [l, ..] if *l < 0x80 => (usize::from(*l), 1),
            [0x81, l, ..] => (usize::from(*l), 2),
            [0x82, a, b, ..] => ((usize::from(*a) << 8) | usize::from(*b), 3),
            _ => return value,
        };
        if rest.len() == header + len {
            return &rest[header..];
        }
    }
    value
}

fn ec_spki(params: &[u8], point: &[u8]) -> Vec<u8> {
    // id-ecPublicKey, then the curve as the token holds it.
    let oid = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    let algorithm = der(0x30, &[&oid[..], params].concat());
    let bits = der(0x03, &[&[0u8][..], ec_point(point)].concat());
    der(0x30, &[algorithm, bits].concat())
}

fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    // rsaEncryption, NULL parameters.
    let algorithm = der(
        0x30,
        &[
            0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
        ],
    );
    let key = der(0x30, &[der_uint(modulus), der_uint(exponent)].concat());
    let bits = der(0x03, &[&[0u8][..], &key].concat());
    der(0x30, &[algorithm, bits].concat())
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[33] = 0x01; // s has leading zeros to drop
        let der = ecdsa_der(&raw);
        assert_eq!(&der[..6], &[0x30, 0x44, 0x02, 0x21, 0x00, 0x80]);
        assert_eq!(&der[37..40], &[0x02, 0x1F, 0x01]);
    }

    #[test]
    fn ec_points_are_unwrapped() {
        let point = [4u8; 65];
        let wrapped = der(0x04, &point);
        assert_eq!(ec_point(&wrapped), &point);
        assert_eq!(ec_point(&point), &point);
    }

    #[test]
    fn mechanisms_by_name() {
        assert_eq!(
            parse_mechanism("CKM_ECDSA_SHA256").unwrap(),
            CKM_ECDSA_SHA256
        );
        assert_eq!(parse_mechanism("ECDSA").unwrap(), CKM_ECDSA);
        assert_eq!(parse_mechanism("0x1041").unwrap(), CKM_ECDSA);
        assert_eq!(parse_mechanism("DES3_CBC_PAD").unwrap(), CKM_DES3_CBC_PAD);
        assert_eq!(
            parse_mechanism("CKM_NOPE").unwrap_err().rv,
            CKR_MECHANISM_INVALID
        );
    }

    #[test]
    fn tdes_cbc_takes_the_iv() {
        let body: Body = serde_json::from_str(r#"{"iv": "AAECAwQFBgc="}"#).unwrap();
        for m in [CKM_DES3_CBC, CKM_DES3_CBC_PAD] {
            assert_eq!(
                mechanism_params(m, &body).unwrap(),
                MechanismParams::Iv((0u8..8).collect())
            );
        }
        assert_eq!(key_type_name(CKK_DES3), "CKK_DES3");
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of(CKR_KEY_HANDLE_INVALID), StatusCode::NOT_FOUND);
        assert_eq!(status_of(CKR_PIN_INCORRECT), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_of(CKR_TOKEN_NOT_PRESENT),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(CKR_DATA_LEN_RANGE), StatusCode::BAD_REQUEST);
    }
}
