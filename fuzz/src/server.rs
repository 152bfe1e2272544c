//! The fuzzed server: a real `ServerState` over a temporary SQLite store,
//! built with the public API the way `backend-server/src/testing.rs` does
//! (no TLS), and one authenticated tenant whose requests go through
//! `hsmlink_server::handle`, the function the transport calls per frame.
//!
//! Per input the world is a fresh *application instance* of tenant `fuzz`
//! (what one `C_Initialize` is): a connection opens, session 1 on slot 0
//! (soft, default algorithms) and session 2 on slot 3 (soft, GM/T) open
//! and log in as the user, the fuzzer's requests run, then the connection
//! closes and the application is reaped (its sessions, session objects and
//! operations go). Session handles are per application, so they are the
//! same in every input (1 and 2), and the base keys are token objects with
//! fixed handles: seeds name them and mutations keep them.
//!
//! What persists between inputs is the tenant's tokens: objects the fuzzer
//! makes on the token, a PIN it changes, a token it re-initialises. State
//! stays bounded and usable because the whole world is rebuilt every
//! [`REBUILD_EVERY`] inputs, and at once when the user can no longer log in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmlink_protocol::vendor::{CKK_HSMLINK_SM4, CKM_HSMLINK_SM4_KEY_GEN};
use hsmlink_protocol::*;
use hsmlink_server::config::Config;
use hsmlink_server::dispatch::{ClientContext, ServerState, handle};
use hsmlink_server::identity::{Fingerprint, PeerIdentity};
use hsmlink_server::names::TenantName;
use hsmlink_server::registry::Registry;
use hsmlink_server::soft::keys::RootKey;
use hsmlink_server::soft::partition::SecurityPolicy;
use hsmlink_server::soft::pins::PinHashParams;
use hsmlink_server::store::{SqliteStore, Store};

use crate::seeds::Handles;

/// Two soft slots for the fuzzed tenant, and a neighbour tenant in the
/// registry (requests always carry the fuzzed tenant's context).
const CONFIG: &str = r#"
[tls]
cert = "/x/server.pem"
key = "/x/server-key.pem"
tenant_ca = "/x/ca.pem"
[store]
path = "/x/hsmlink.db"

[[tenants]]
name = "fuzz"
[[tenants.slots]]
id = 0
partition = "fuzz-p0"
driver = "soft"
serial = "f0f0f0f0f0f0f0f0"
[[tenants.slots]]
id = 3
partition = "fuzz-p3"
driver = "soft"
serial = "f3f3f3f3f3f3f3f3"
algorithms = "gmt"

[[tenants]]
name = "neighbour"
[[tenants.slots]]
id = 0
partition = "neighbour-p0"
driver = "soft"
serial = "0e0e0e0e0e0e0e0e"
"#;

pub const SO_PIN: &[u8] = b"fuzz-so-pin";
pub const USER_PIN: &[u8] = b"fuzz-user-pin";

/// Inputs between two rebuilds: bounds the store (token objects the fuzzer
/// creates) and the drift of the tokens' state.
pub const REBUILD_EVERY: u64 = 5000;
/// Requests per input.
pub const MAX_REQUESTS: usize = 16;
/// The fixed session handles of every input.
pub const SESSION: SessionHandle = SessionHandle(1);
pub const GMT_SESSION: SessionHandle = SessionHandle(2);

pub struct World {
    /// Holds the store; dropped (deleted) with the world.
    _dir: tempfile::TempDir,
    state: ServerState,
    /// The base keys on slot 0, as the seeds name them.
    pub handles: Handles,
    /// Inputs run since the build; also makes each input's app instance.
    runs: u64,
}

fn ctx(app: u64) -> ClientContext {
    let mut instance = [0u8; 16];
    instance[..8].copy_from_slice(&app.to_le_bytes());
    ClientContext {
        connection: app,
        peer: "127.0.0.1:40000".parse().expect("address"),
        identity: PeerIdentity {
            tenant: TenantName::parse("fuzz").expect("tenant name"),
            subject: "CN=fuzz".to_owned(),
            fingerprint: Fingerprint([0; 32]),
        },
        app_instance: AppInstance(instance),
        pid: 4242,
        client: "hsmlink-fuzz".to_owned(),
    }
}

fn attr(attr: CK_ATTRIBUTE_TYPE, value: AttributeValue) -> Attribute {
    Attribute::new(attr, value)
}

fn yes(a: CK_ATTRIBUTE_TYPE) -> Attribute {
    attr(a, AttributeValue::Bool(true))
}

fn mech(mechanism: CK_MECHANISM_TYPE) -> Mechanism {
    Mechanism {
        mechanism: MechanismType(mechanism),
        params: MechanismParams::None,
    }
}

/// `handle`, and the check every answer must pass: it encodes (so the
/// transport can send it) and decodes back to itself (so the module can
/// read it).
pub fn ask(state: &ServerState, ctx: &ClientContext, request: Request) -> Response {
    let name = trace().then(|| format!("{request:?}"));
    let response = handle(state, ctx, request);
    if let Some(name) = name {
        eprintln!(
            "{name:.120} -> {:#x} {}",
            response.rv.0,
            response.body.variant_name()
        );
    }
    let bytes = codec::encode(&response).unwrap_or_else(|e| {
        panic!(
            "answer {} does not encode: {e}",
            response.body.variant_name()
        )
    });
    let again: Response = codec::decode(&bytes).expect("an encoded answer must decode");
    assert_eq!(again, response, "answer does not round-trip");
    response
}

/// `HSMLINK_FUZZ_TRACE=1`: print every request and its answer (to see what
/// an input does: `./dispatch corpus/dispatch/seq_find`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("HSMLINK_FUZZ_TRACE").is_some())
}

fn must(state: &ServerState, ctx: &ClientContext, what: &str, request: Request) -> Response {
    let response = ask(state, ctx, request);
    assert!(
        response.rv.is_ok(),
        "world setup: {what}: {:#x}",
        response.rv.0
    );
    response
}

fn object(response: Response) -> ObjectHandle {
    match response.body {
        ResponseBody::Object(h) => h,
        other => panic!("world setup: {other:?}"),
    }
}

fn pin(p: &[u8]) -> Secret {
    Secret::from_slice(p)
}

/// Initialises the token of `slot` with the SO PIN and sets the user PIN.
fn ready_token(state: &ServerState, c: &ClientContext, slot: u64) {
    let mut label = b"fuzz".to_vec();
    label.resize(32, b' ');
    let init = Request::InitToken {
        slot: SlotId(slot),
        so_pin: pin(SO_PIN),
        label,
    };
    must(state, c, "InitToken", init);
    let open = Request::OpenSession {
        slot: SlotId(slot),
        flags: CKF_SERIAL_SESSION | CKF_RW_SESSION,
    };
    let ResponseBody::Session(s) = must(state, c, "OpenSession", open).body else {
        panic!("world setup: no session");
    };
    let login = Request::Login {
        session: s,
        user_type: UserType(CKU_SO),
        pin: pin(SO_PIN),
    };
    must(state, c, "Login SO", login);
    let init_pin = Request::InitPin {
        session: s,
        pin: pin(USER_PIN),
    };
    must(state, c, "InitPin", init_pin);
    must(
        state,
        c,
        "CloseSession",
        Request::CloseSession { session: s },
    );
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = Config::parse(CONFIG, Path::new("/x/server.toml")).expect("config");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("hsmlink.db")).expect("store"));
        // Cheap PIN hashing; no lockout and no forced PIN change, so that a
        // mutated Login cannot lock the user out for the rest of the run.
        let policy = SecurityPolicy {
            max_pin_failures: u32::MAX,
            require_user_pin_change: false,
            pin_hash: PinHashParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        };
        let root = RootKey::generate().expect("root key");
        // app_grace 0: an application is reaped as soon as its connection
        // is gone (see `run`).
        let state = ServerState::with_store(
            Registry::from_config(&config.tenants),
            store,
            Some(root),
            policy,
            Duration::ZERO,
        )
        .expect("server state");
        let setup = ctx(u64::MAX);
        ready_token(&state, &setup, 0);
        ready_token(&state, &setup, 3);
        let mut world = Self {
            _dir: dir,
            state,
            handles: Handles::default(),
            runs: 0,
        };
        // A fresh application, so that its sessions get the handles of
        // every input's (1 and 2).
        let keys = ctx(u64::MAX - 1);
        world.handles = world.make_keys(&keys);
        world.end(&keys);
        world
    }

    /// The base keys: token objects on slot 0 (and an SM4 key on slot 3),
    /// so they outlive every input's application.
    fn make_keys(&self, c: &ClientContext) -> Handles {
        let s = &self.state;
        self.begin(c).expect("world setup: login");
        let token = yes(CKA_TOKEN);
        let aes = object(must(
            s,
            c,
            "GenerateKey AES",
            Request::GenerateKey {
                session: SESSION,
                mechanism: mech(CKM_AES_KEY_GEN),
                template: vec![
                    token.clone(),
                    attr(CKA_VALUE_LEN, AttributeValue::Ulong(32)),
                    attr(CKA_LABEL, AttributeValue::Bytes(b"aes".to_vec())),
                    yes(CKA_ENCRYPT),
                    yes(CKA_DECRYPT),
                    yes(CKA_DERIVE),
                ],
            },
        ));
        // Key transport is a role of its own (secure templates).
        let wrap = object(must(
            s,
            c,
            "GenerateKey AES wrap",
            Request::GenerateKey {
                session: SESSION,
                mechanism: mech(CKM_AES_KEY_GEN),
                template: vec![
                    token.clone(),
                    attr(CKA_VALUE_LEN, AttributeValue::Ulong(32)),
                    yes(CKA_WRAP),
                    yes(CKA_UNWRAP),
                ],
            },
        ));
        let hmac = object(must(
            s,
            c,
            "GenerateKey HMAC",
            Request::GenerateKey {
                session: SESSION,
                mechanism: mech(CKM_GENERIC_SECRET_KEY_GEN),
                template: vec![
                    token.clone(),
                    attr(CKA_VALUE_LEN, AttributeValue::Ulong(32)),
                    yes(CKA_SIGN),
                    yes(CKA_VERIFY),
                    yes(CKA_EXTRACTABLE),
                ],
            },
        ));
        // P-256 (its OID, DER).
        let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let pair = must(
            s,
            c,
            "GenerateKeyPair EC",
            Request::GenerateKeyPair {
                session: SESSION,
                mechanism: mech(CKM_EC_KEY_PAIR_GEN),
                public_template: vec![
                    token.clone(),
                    attr(CKA_EC_PARAMS, AttributeValue::Bytes(p256)),
                    yes(CKA_VERIFY),
                ],
                private_template: vec![token.clone(), yes(CKA_SIGN), yes(CKA_DERIVE)],
            },
        );
        let ResponseBody::KeyPair { public, private } = pair.body else {
            panic!("world setup: no key pair");
        };
        must(
            s,
            c,
            "GenerateKey SM4",
            Request::GenerateKey {
                session: GMT_SESSION,
                mechanism: mech(CKM_HSMLINK_SM4_KEY_GEN),
                template: vec![
                    token,
                    attr(CKA_KEY_TYPE, AttributeValue::Ulong(CKK_HSMLINK_SM4)),
                    yes(CKA_ENCRYPT),
                    yes(CKA_DECRYPT),
                ],
            },
        );
        Handles {
            session: SESSION,
            aes,
            wrap,
            hmac,
            ec_public: public,
            ec_private: private,
        }
    }

    /// An application's start: its connection, sessions 1 (slot 0) and 2
    /// (slot 3), both logged in as the user.
    fn begin(&self, c: &ClientContext) -> Result<(), Rv> {
        let s = &self.state;
        s.sessions.connection_opened(&c.app_key(), c.pid);
        for (slot, expected) in [(0, SESSION), (3, GMT_SESSION)] {
            let open = Request::OpenSession {
                slot: SlotId(slot),
                flags: CKF_SERIAL_SESSION | CKF_RW_SESSION,
            };
            let response = ask(s, c, open);
            if response.body != ResponseBody::Session(expected) {
                return Err(response.rv);
            }
            let login = Request::Login {
                session: expected,
                user_type: UserType(CKU_USER),
                pin: pin(USER_PIN),
            };
            let rv = ask(s, c, login).rv;
            if !rv.is_ok() {
                return Err(rv);
            }
        }
        Ok(())
    }

    /// An application's end: its connection closes and, the grace being 0,
    /// it is reaped at once (sessions, session objects and operations go).
    fn end(&self, c: &ClientContext) {
        let s = &self.state;
        s.sessions
            .connection_closed(&c.app_key(), c.pid, Instant::now());
        s.reap_idle_apps(Instant::now());
    }

    /// One input: requests as `[u16 LE length][codec bytes]` records, each
    /// decoded as the transport decodes a frame body (`codec::decode`);
    /// records that do not decode are skipped, as the transport answers
    /// them with an error and goes on.
    pub fn run(&mut self, data: &[u8]) {
        self.runs += 1;
        let c = ctx(self.runs);
        if self.begin(&c).is_err() {
            // The fuzzer changed the PIN or re-initialised a token: start
            // over (rare; see the module comment).
            self.end(&c);
            *self = Self::new();
            return;
        }
        for body in records(data).take(MAX_REQUESTS) {
            if let Ok(request) = codec::decode::<Request>(body) {
                ask(&self.state, &c, request);
            }
        }
        self.end(&c);
        if self.runs >= REBUILD_EVERY {
            *self = Self::new();
        }
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits an input into `[u16 LE length][bytes]` records (a short last
/// record takes what is left).
pub fn records(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let [l0, l1, rest @ ..] = data else {
            return None;
        };
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
        let (record, tail) = rest.split_at(len);
        data = tail;
        Some(record)
    })
}

/// One record of an input, for the seeds.
pub fn record(request: &Request) -> Vec<u8> {
    let body = codec::encode(request).expect("encode");
    let len = u16::try_from(body.len()).expect("a seed request fits a record");
    let mut out = len.to_le_bytes().to_vec();
    out.extend(body);
    out
}
