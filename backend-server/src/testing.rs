//! Test support: a server state over a fresh store in a temporary
//! directory, client contexts, and short-hands for requests.
// Responses as errors keep the helpers short; size does not matter in tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cryptoki_sys::{CK_RV, CKF_RW_SESSION, CKF_SERIAL_SESSION, CKU_SO, CKU_USER};
use hsmlink_protocol::{
    AppInstance, Attribute, AttributeResult, AttributeType, AttributeValue, ObjectHandle, Request,
    Response, ResponseBody, Rv, Secret, SessionHandle, SlotId, TokenInfo, UserType,
};

use crate::config::Config;
use crate::dispatch::{ClientContext, ServerState, handle};
use crate::identity::{Fingerprint, PeerIdentity};
use crate::names::TenantName;
use crate::registry::Registry;
use crate::soft::keys::RootKey;
use crate::soft::partition::SecurityPolicy;
use crate::soft::pins::PinHashParams;
use crate::store::{SqliteStore, Store};

pub const CONFIG: &str = r#"
[tls]
cert = "/x/server.pem"
key = "/x/server-key.pem"
tenant_ca = "/x/ca.pem"
[store]
path = "/x/hsmlink.db"

[[tenants]]
name = "demo"
[[tenants.slots]]
id = 0
partition = "demo-p0"
driver = "soft"
serial = "9f3c2a7e51d04b86"
[[tenants.slots]]
id = 3
partition = "demo-p3"
driver = "soft"
serial = "0000000000000003"
algorithms = "gmt"

[[tenants]]
name = "acme"
[[tenants.slots]]
id = 7
partition = "acme-secret"
driver = "soft"
serial = "aaaaaaaaaaaaaaaa"
[[tenants.slots]]
id = 0
partition = "acme-p0"
driver = "soft"
serial = "aaaaaaaaaaaaaaa0"
secure_templates = "relaxed"
"#;

/// Cheap PIN hashing, three tries.
pub const POLICY: SecurityPolicy = SecurityPolicy {
    max_pin_failures: 3,
    require_user_pin_change: true,
    pin_hash: PinHashParams {
        m_kib: 64,
        t: 1,
        p: 1,
    },
};

pub const SO_PIN: &[u8] = b"so-secret-pin";
pub const USER_PIN: &[u8] = b"user-pin-1";

#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: RootKey,
    pub config: Config,
    pub policy: SecurityPolicy,
    pub state: ServerState,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_policy(POLICY)
    }

    pub fn with_policy(policy: SecurityPolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(CONFIG, Path::new("/x/server.toml")).unwrap();
        let root = RootKey::generate().unwrap();
        let state = open_state(&db_path(dir.path()), &config, &root, policy);
        Self {
            dir,
            root,
            config,
            policy,
            state,
        }
    }

    pub fn db(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// A new server over the same store (a restart). Drop the old state
    /// first if it matters that nothing else holds the file.
    pub fn reopen(&self) -> ServerState {
        open_state(&self.db(), &self.config, &self.root, self.policy)
    }

    pub fn ask(&self, ctx: &ClientContext, request: Request) -> Response {
        handle(&self.state, ctx, request)
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("hsmlink.db")
}

pub fn open_state(
    db: &Path,
    config: &Config,
    root: &RootKey,
    policy: SecurityPolicy,
) -> ServerState {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    ServerState::with_store(
        Registry::from_config(&config.tenants),
        store,
        Some(root.clone()),
        policy,
        Duration::from_secs(60),
    )
    .unwrap()
}

pub fn ctx(tenant: &str, app: u8) -> ClientContext {
    ClientContext {
        connection: 1,
        peer: "127.0.0.1:40000".parse().unwrap(),
        identity: PeerIdentity {
            tenant: TenantName::parse(tenant).unwrap(),
            subject: format!("CN={tenant}"),
            fingerprint: Fingerprint([0; 32]),
        },
        app_instance: AppInstance([app; 16]),
        pid: 42,
        client: "test".to_owned(),
    }
}

pub fn ok() -> Response {
    Response::ok(ResponseBody::Empty)
}

pub fn err(rv: CK_RV) -> Response {
    Response {
        rv: Rv(rv),
        body: ResponseBody::Empty,
    }
}

pub fn pin(p: &[u8]) -> Secret {
    Secret::from_slice(p)
}

pub fn label(text: &str) -> Vec<u8> {
    let mut l = text.as_bytes().to_vec();
    l.resize(32, b' ');
    l
}

pub fn init_token(s: &ServerState, c: &ClientContext, slot: u64) -> Response {
    handle(
        s,
        c,
        Request::InitToken {
            slot: SlotId(slot),
            so_pin: pin(SO_PIN),
            label: label("my token"),
        },
    )
}

pub fn open(
    s: &ServerState,
    c: &ClientContext,
    slot: u64,
    rw: bool,
) -> Result<SessionHandle, Response> {
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    match handle(
        s,
        c,
        Request::OpenSession {
            slot: SlotId(slot),
            flags,
        },
    ) {
        Response {
            body: ResponseBody::Session(h),
            ..
        } => Ok(h),
        other => Err(other),
    }
}

pub fn login(
    s: &ServerState,
    c: &ClientContext,
    session: SessionHandle,
    user: u64,
    p: &[u8],
) -> Response {
    handle(
        s,
        c,
        Request::Login {
            session,
            user_type: UserType(user),
            pin: pin(p),
        },
    )
}

pub fn logout(s: &ServerState, c: &ClientContext, session: SessionHandle) -> Response {
    handle(s, c, Request::Logout { session })
}

pub fn token_info(s: &ServerState, c: &ClientContext, slot: u64) -> TokenInfo {
    match handle(s, c, Request::GetTokenInfo { slot: SlotId(slot) }).body {
        ResponseBody::TokenInfo(info) => info,
        other => panic!("{other:?}"),
    }
}

/// Initialised token, user PIN set by the SO and changed by the user (so
/// not expired), no session left open. Returns nothing: open your own.
pub fn ready_token(s: &ServerState, c: &ClientContext, slot: u64) {
    assert_eq!(init_token(s, c, slot), ok());
    let h = open(s, c, slot, true).unwrap();
    assert_eq!(login(s, c, h, CKU_SO, SO_PIN), ok());
    assert_eq!(
        handle(
            s,
            c,
            Request::InitPin {
                session: h,
                pin: pin(b"temporary")
            }
        ),
        ok()
    );
    assert_eq!(logout(s, c, h), ok());
    let set = Request::SetPin {
        session: h,
        old_pin: pin(b"temporary"),
        new_pin: pin(USER_PIN),
    };
    assert_eq!(handle(s, c, set), ok());
    assert_eq!(handle(s, c, Request::CloseSession { session: h }), ok());
}

pub fn user_session(s: &ServerState, c: &ClientContext, slot: u64) -> SessionHandle {
    let h = open(s, c, slot, true).unwrap();
    assert_eq!(login(s, c, h, CKU_USER, USER_PIN), ok());
    h
}

pub fn a(attr: u64, value: AttributeValue) -> Attribute {
    Attribute::new(attr, value)
}

pub fn create(
    s: &ServerState,
    c: &ClientContext,
    session: SessionHandle,
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Response> {
    match handle(s, c, Request::CreateObject { session, template }) {
        Response {
            body: ResponseBody::Object(h),
            ..
        } => Ok(h),
        other => Err(other),
    }
}

pub fn get(
    s: &ServerState,
    c: &ClientContext,
    session: SessionHandle,
    object: ObjectHandle,
    types: &[u64],
) -> Result<Vec<AttributeResult>, Response> {
    let types = types.iter().map(|t| AttributeType(*t)).collect();
    match handle(
        s,
        c,
        Request::GetAttributeValue {
            session,
            object,
            types,
        },
    ) {
        Response {
            body: ResponseBody::Attributes(r),
            ..
        } => Ok(r),
        other => Err(other),
    }
}

pub fn find(
    s: &ServerState,
    c: &ClientContext,
    session: SessionHandle,
    template: Vec<Attribute>,
) -> Vec<ObjectHandle> {
    assert_eq!(
        handle(s, c, Request::FindObjectsInit { session, template }),
        ok()
    );
    let r = handle(
        s,
        c,
        Request::FindObjects {
            session,
            max_count: 1000,
        },
    );
    assert_eq!(handle(s, c, Request::FindObjectsFinal { session }), ok());
    match r.body {
        ResponseBody::Objects(o) => o,
        other => panic!("{other:?}"),
    }
}
