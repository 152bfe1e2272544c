//! The server's core: one request in, one response out.
//!
//! [`handle`] is a pure function of the server state, the client's context
//! (tenant, application instance, connection) and the request. It knows no
//! sockets, so it is tested in-process and can be fuzzed directly. It never
//! panics on client input: every failure is a `CKR_*` code.
//!
//! Every lookup goes through the connection's tenant, taken from its verified
//! certificate; a request has no way to name another tenant's slot.

use std::net::SocketAddr;

use cryptoki_sys::{
    CK_RV, CKR_FUNCTION_NOT_SUPPORTED, CKR_MECHANISM_INVALID, CKR_SLOT_ID_INVALID,
    CKR_TOKEN_NOT_PRESENT,
};
use hsmlink_protocol::{
    AppInstance, MechanismInfo, MechanismType, Request, Response, ResponseBody, SlotId,
};
use time::OffsetDateTime;

use crate::config::Config;
use crate::identity::PeerIdentity;
use crate::names::TenantName;
use crate::registry::{Registry, Slot, Tenant};
use crate::soft::mechanisms;
use crate::token;

/// Everything requests are answered from. Shared by all connections.
#[derive(Debug)]
pub struct ServerState {
    pub registry: Registry,
}

impl ServerState {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(Registry::from_config(&config.tenants))
    }
}

/// Who sent a request: fixed for the life of a connection, after the hello.
#[derive(Clone, Debug)]
pub struct ClientContext {
    /// Server-wide connection number, for logs.
    pub connection: u64,
    pub peer: SocketAddr,
    /// The tenant and the certificate that named it.
    pub identity: PeerIdentity,
    /// From the hello: sessions and login state belong to this instance.
    pub app_instance: AppInstance,
    /// From the hello, for the audit trail only.
    pub pid: u32,
    /// Client software, from the hello.
    pub client: String,
}

impl ClientContext {
    pub fn tenant(&self) -> &TenantName {
        &self.identity.tenant
    }
}

/// Answers one request for `ctx`'s tenant.
pub fn handle(state: &ServerState, ctx: &ClientContext, request: Request) -> Response {
    // A tenant missing from the registry (removed while connected) is served
    // as a tenant without slots: nothing about anyone else leaks.
    let tenant = state.registry.tenant(ctx.tenant());
    match request {
        Request::GetSlotList { token_present } => slot_list(tenant, token_present),
        Request::GetSlotInfo { slot } => with_slot(tenant, slot, |s| {
            ok(ResponseBody::SlotInfo(token::slot_info(s)))
        }),
        Request::GetTokenInfo { slot } => with_token(tenant, slot, |s| {
            ok(ResponseBody::TokenInfo(token::token_info(
                s,
                OffsetDateTime::now_utc(),
            )))
        }),
        Request::GetMechanismList { slot } => with_token(tenant, slot, |s| {
            let list = s
                .mechanisms()
                .iter()
                .map(|m| MechanismType(m.mechanism))
                .collect();
            ok(ResponseBody::MechanismList(list))
        }),
        Request::GetMechanismInfo { slot, mechanism } => with_token(tenant, slot, |s| {
            match mechanisms::find(s.mechanisms(), mechanism.0) {
                Some(m) => ok(ResponseBody::MechanismInfo(MechanismInfo {
                    min_key_size: m.min_key_size,
                    max_key_size: m.max_key_size,
                    flags: m.flags,
                })),
                None => error(CKR_MECHANISM_INVALID),
            }
        }),
        // Sessions arrive with the token issue; nothing to close yet.
        Request::Finalize => ok(ResponseBody::Empty),
        _ => error(CKR_FUNCTION_NOT_SUPPORTED),
    }
}

/// `C_GetSlotList` (5.4.2): the tenant's slot ids, ascending.
fn slot_list(tenant: Option<&Tenant>, token_present: bool) -> Response {
    let slots = tenant
        .into_iter()
        .flat_map(Tenant::slots)
        .filter(|s| !token_present || s.token_present())
        .map(|s| s.id)
        .collect();
    ok(ResponseBody::SlotList(slots))
}

fn with_slot(tenant: Option<&Tenant>, id: SlotId, f: impl FnOnce(&Slot) -> Response) -> Response {
    match tenant.and_then(|t| t.slot(id)) {
        Some(slot) => f(slot),
        None => error(CKR_SLOT_ID_INVALID),
    }
}

/// Like [`with_slot`], for calls that need the token in the slot.
fn with_token(tenant: Option<&Tenant>, id: SlotId, f: impl FnOnce(&Slot) -> Response) -> Response {
    with_slot(tenant, id, |slot| {
        if slot.token_present() {
            f(slot)
        } else {
            error(CKR_TOKEN_NOT_PRESENT)
        }
    })
}

fn ok(body: ResponseBody) -> Response {
    Response::ok(body)
}

fn error(rv: CK_RV) -> Response {
    Response::error(rv)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cryptoki_sys::{
        CKF_TOKEN_INITIALIZED, CKF_TOKEN_PRESENT, CKM_AES_GCM, CKM_MD5, CKM_SHA256,
    };
    use hsmlink_protocol::{Rv, Secret, SessionHandle, TokenInfo, UserType};

    use super::*;
    use crate::identity::Fingerprint;

    const CONFIG: &str = r#"
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

[[tenants]]
name = "acme"
[[tenants.slots]]
id = 7
partition = "acme-secret"
driver = "soft"
serial = "aaaaaaaaaaaaaaaa"
"#;

    fn state() -> ServerState {
        let config = Config::parse(CONFIG, Path::new("/x/server.toml")).unwrap();
        ServerState::from_config(&config)
    }

    fn ctx(tenant: &str) -> ClientContext {
        ClientContext {
            connection: 1,
            peer: "127.0.0.1:40000".parse().unwrap(),
            identity: PeerIdentity {
                tenant: TenantName::parse(tenant).unwrap(),
                subject: format!("CN={tenant}"),
                fingerprint: Fingerprint([0; 32]),
            },
            app_instance: AppInstance([7; 16]),
            pid: 42,
            client: "test".to_owned(),
        }
    }

    fn ask(tenant: &str, request: Request) -> Response {
        handle(&state(), &ctx(tenant), request)
    }

    fn rv(value: CK_RV) -> Rv {
        Rv(value)
    }

    #[test]
    fn slot_list_is_the_tenants_own() {
        for token_present in [false, true] {
            let r = ask("demo", Request::GetSlotList { token_present });
            assert_eq!(
                r,
                Response::ok(ResponseBody::SlotList(vec![SlotId(0), SlotId(3)]))
            );
            let r = ask("acme", Request::GetSlotList { token_present });
            assert_eq!(r, Response::ok(ResponseBody::SlotList(vec![SlotId(7)])));
        }
    }

    #[test]
    fn a_tenant_cannot_see_another_tenants_slots() {
        for request in [
            Request::GetSlotInfo { slot: SlotId(7) },
            Request::GetTokenInfo { slot: SlotId(7) },
            Request::GetMechanismList { slot: SlotId(7) },
            Request::GetMechanismInfo {
                slot: SlotId(7),
                mechanism: MechanismType(CKM_SHA256),
            },
        ] {
            assert_eq!(ask("demo", request.clone()), error(CKR_SLOT_ID_INVALID));
            assert_eq!(ask("acme", request).rv, Rv::OK);
        }
        assert_eq!(
            ask("acme", Request::GetSlotInfo { slot: SlotId(0) }),
            error(CKR_SLOT_ID_INVALID)
        );
    }

    #[test]
    fn an_unknown_tenant_sees_nothing() {
        let r = ask(
            "ghost",
            Request::GetSlotList {
                token_present: false,
            },
        );
        assert_eq!(r, Response::ok(ResponseBody::SlotList(vec![])));
        assert_eq!(
            ask("ghost", Request::GetTokenInfo { slot: SlotId(0) }),
            error(CKR_SLOT_ID_INVALID)
        );
    }

    #[test]
    fn invalid_slot() {
        for slot in [1, 2, 4, u64::MAX] {
            let r = ask("demo", Request::GetSlotInfo { slot: SlotId(slot) });
            assert_eq!(r.rv, rv(CKR_SLOT_ID_INVALID), "{slot}");
            assert_eq!(r.body, ResponseBody::Empty);
        }
    }

    #[test]
    fn slot_info() {
        let r = ask("demo", Request::GetSlotInfo { slot: SlotId(3) });
        let ResponseBody::SlotInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(info.description, "hsmlink slot 3 (demo-p3)");
        assert_eq!(info.manufacturer_id, "hsmlink");
        assert_eq!(info.flags, CKF_TOKEN_PRESENT);
        assert_eq!(
            (info.hardware_version.major, info.hardware_version.minor),
            (1, 0)
        );
    }

    #[test]
    fn a_fresh_token_is_not_initialised() {
        let r = ask("demo", Request::GetTokenInfo { slot: SlotId(0) });
        let ResponseBody::TokenInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(info.label, "");
        assert_eq!(info.model, "soft");
        assert_eq!(info.serial_number, "9f3c2a7e51d04b86");
        assert_eq!(info.flags & CKF_TOKEN_INITIALIZED, 0);
        assert_eq!((info.min_pin_len, info.max_pin_len), (4, 128));
        assert_eq!(info.total_private_memory, TokenInfo::UNAVAILABLE);
        assert_eq!(info.utc_time.len(), 16);
    }

    #[test]
    fn mechanisms() {
        let r = ask("demo", Request::GetMechanismList { slot: SlotId(0) });
        let ResponseBody::MechanismList(list) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!(list.len(), mechanisms::SOFT_MECHANISMS.len());
        assert!(list.contains(&MechanismType(CKM_AES_GCM)));

        let r = ask(
            "demo",
            Request::GetMechanismInfo {
                slot: SlotId(0),
                mechanism: MechanismType(CKM_AES_GCM),
            },
        );
        let ResponseBody::MechanismInfo(info) = r.body else {
            panic!("{r:?}")
        };
        assert_eq!((info.min_key_size, info.max_key_size), (16, 32));
    }

    #[test]
    fn invalid_mechanism() {
        for mechanism in [CKM_MD5, 0xdead_beef, u64::MAX] {
            let r = ask(
                "demo",
                Request::GetMechanismInfo {
                    slot: SlotId(0),
                    mechanism: MechanismType(mechanism),
                },
            );
            assert_eq!(r, error(CKR_MECHANISM_INVALID), "{mechanism:#x}");
        }
    }

    #[test]
    fn not_yet_served_requests() {
        for request in [
            Request::OpenSession {
                slot: SlotId(0),
                flags: 6,
            },
            Request::Login {
                session: SessionHandle(1),
                user_type: UserType(1),
                pin: Secret::from_slice(b"1234"),
            },
            Request::InitToken {
                slot: SlotId(0),
                so_pin: Secret::from_slice(b"1234"),
                label: vec![b' '; 32],
            },
            Request::GenerateRandom {
                session: SessionHandle(1),
                len: 16,
            },
        ] {
            assert_eq!(ask("demo", request), error(CKR_FUNCTION_NOT_SUPPORTED));
        }
    }

    #[test]
    fn finalize_is_ok() {
        assert_eq!(
            ask("demo", Request::Finalize),
            Response::ok(ResponseBody::Empty)
        );
    }
}
