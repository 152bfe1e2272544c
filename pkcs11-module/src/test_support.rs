//! Test helpers: a throwaway PKI, `client.toml` files, and a small
//! in-process stand-in for hsmlink-server that speaks the real protocol over
//! real mutual TLS (rustls server side), with knobs for misbehaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hsmlink_protocol::frame::{read_message, write_frame};
use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
use hsmlink_protocol::{FrameKind, Hello, HelloReply, PROTOCOL_VERSION, Request, Response};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Serialises the tests that touch the library's global state.
pub static GLOBAL_STATE: Mutex<()> = Mutex::new(());

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = new_ca("hsmlink test CA");
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        let (server_cert_pem, server_key_pem) =
            leaf(&issuer, vec!["localhost".into(), "127.0.0.1".into()]);
        let (client_pem, client_key_pem) = leaf(&issuer, vec!["client.test".into()]);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", &ca_pem),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key_pem),
            dir,
            ca_der,
            server_cert_pem,
            server_key_pem,
        }
    }

    /// A client certificate and key issued by another CA.
    pub fn foreign_client(&self) -> (PathBuf, PathBuf) {
        let (_, issuer) = new_ca("some other CA");
        let (cert, key) = leaf(&issuer, vec!["intruder.test".into()]);
        let cert_path = self.dir.path().join("foreign.pem");
        let key_path = self.dir.path().join("foreign-key.pem");
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    /// Writes a `client.toml` for `servers`, with short timeouts and `extra`
    /// lines, and returns its path.
    pub fn config(&self, servers: &[String], extra: &str) -> PathBuf {
        self.config_with_identity(servers, &self.client_cert, &self.client_key, extra)
    }

    pub fn config_with_identity(
        &self,
        servers: &[String],
        cert: &std::path::Path,
        key: &std::path::Path,
        extra: &str,
    ) -> PathBuf {
        let servers = servers
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "servers = [{servers}]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
             connect_timeout_ms = 2000\nio_timeout_ms = 2000\n{extra}\n",
            self.ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        );
        let path = self.dir.path().join("client.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: Vec<String>) -> (String, String) {
    let params = CertificateParams::new(names).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A `HOST:PORT` where nothing listens (a port just released).
pub fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

/// How the fake server behaves.
#[derive(Clone)]
pub struct Behaviour {
    pub hello: HelloMode,
    /// Close each connection (TLS close_notify) after this many responses.
    pub close_after: Option<usize>,
    /// Answer with a request id other than the request's.
    pub wrong_id: bool,
    pub handler: fn(&Request) -> Response,
}

#[derive(Clone)]
pub enum HelloMode {
    Accept,
    Reject(&'static str),
    /// Accept the TCP connection and never say a word.
    Silent,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            hello: HelloMode::Accept,
            close_after: None,
            wrong_id: false,
            handler: demo_handler,
        }
    }
}

/// Answers like a fresh demo deployment: slots 0 and 1, a token in slot 0.
pub fn demo_handler(request: &Request) -> Response {
    use hsmlink_protocol::*;
    match request {
        Request::GetSlotList { token_present } => {
            Response::ok(ResponseBody::SlotList(if *token_present {
                vec![SlotId(0)]
            } else {
                vec![SlotId(0), SlotId(1)]
            }))
        }
        Request::GetSlotInfo { slot } if slot.0 < 2 => {
            Response::ok(ResponseBody::SlotInfo(SlotInfo {
                description: format!("hsmlink slot {}", slot.0),
                manufacturer_id: "hsmlink".into(),
                flags: u64::from(slot.0 == 0),
                hardware_version: Version { major: 1, minor: 2 },
                firmware_version: Version { major: 3, minor: 4 },
            }))
        }
        Request::GetTokenInfo { slot } if slot.0 == 0 => {
            Response::ok(ResponseBody::TokenInfo(TokenInfo {
                label: "demo".into(),
                manufacturer_id: "hsmlink".into(),
                model: "soft".into(),
                serial_number: "0001".into(),
                flags: 0x400,
                max_session_count: TokenInfo::UNAVAILABLE,
                session_count: 0,
                max_pin_len: 64,
                min_pin_len: 4,
                utc_time: "2025010112000000".into(),
                ..TokenInfo::default()
            }))
        }
        Request::GetMechanismList { slot } if slot.0 == 0 => {
            Response::ok(ResponseBody::MechanismList(
                DEMO_MECHANISMS.iter().map(|&m| MechanismType(m)).collect(),
            ))
        }
        Request::GetMechanismInfo { slot, mechanism } if slot.0 == 0 => {
            if mechanism.0 == 0x1 {
                Response::ok(ResponseBody::MechanismInfo(MechanismInfo {
                    min_key_size: 2048,
                    max_key_size: 4096,
                    flags: 0x800,
                }))
            } else {
                Response::error(0x70) // CKR_MECHANISM_INVALID
            }
        }
        Request::GetSlotInfo { .. }
        | Request::GetTokenInfo { .. }
        | Request::GetMechanismList { .. }
        | Request::GetMechanismInfo { .. } => Response::error(0x3), // CKR_SLOT_ID_INVALID
        Request::Finalize => Response::ok(ResponseBody::Empty),
        Request::Begin {
            session,
            mechanism,
            key,
            call,
        } => demo_begin(*session, mechanism, *key, call),
        _ => demo_crypto(request).unwrap_or_else(|| demo_sessions_and_objects(request)),
    }
}

/// `Begin` as hsmlink-server answers it: the init, then the call.
fn demo_begin(
    session: hsmlink_protocol::SessionHandle,
    mechanism: &hsmlink_protocol::Mechanism,
    key: Option<hsmlink_protocol::ObjectHandle>,
    call: &hsmlink_protocol::OpCall,
) -> Response {
    use hsmlink_protocol::*;
    let Some(init) = call.init(session, mechanism.clone(), key) else {
        return Response::error(0x7); // CKR_ARGUMENTS_BAD
    };
    let initialized = demo_handler(&init);
    if !initialized.rv.is_ok() {
        return Response::error(initialized.rv.0);
    }
    let response = demo_handler(&call.clone().into_request(session));
    let output = match response.body {
        ResponseBody::Output(output) => Some(output),
        _ => None,
    };
    Response {
        rv: response.rv,
        body: ResponseBody::Begun(output),
    }
}

/// The demo token's mechanism list: `CKM_RSA_PKCS`, `CKM_ECDSA`,
/// `CKM_SHA256` first, then those the module's tests initialise (the
/// module refuses others at init with `CKR_MECHANISM_INVALID`).
pub const DEMO_MECHANISMS: &[u64] = &[
    0x1,    // CKM_RSA_PKCS
    0x1041, // CKM_ECDSA
    0x250,  // CKM_SHA256
    0x3,    // CKM_RSA_X_509
    0x6,    // CKM_SHA1_RSA_PKCS
    0x40,   // CKM_SHA256_RSA_PKCS
    0x43,   // CKM_SHA256_RSA_PKCS_PSS
    0x44,   // CKM_SHA384_RSA_PKCS_PSS
    0x1043, // CKM_ECDSA_SHA224
    0x1044, // CKM_ECDSA_SHA256
    0x1046, // CKM_ECDSA_SHA512
    0x251,  // CKM_SHA256_HMAC
    0x1081, // CKM_AES_ECB
    0x1082, // CKM_AES_CBC
    0x1085, // CKM_AES_CBC_PAD
    0x1087, // CKM_AES_GCM
    hsmlink_protocol::vendor::CKM_HSMLINK_SM2_SM3,
    hsmlink_protocol::vendor::CKM_HSMLINK_SM3,
];

/// The Z value the demo server hands out for SM2-with-SM3.
pub const DEMO_Z: [u8; 32] = [0x5A; 32];
/// Objects made by the demo server's key management calls.
pub const DEMO_KEY: u64 = 0x30;
pub const DEMO_PUBLIC_KEY: u64 = 0x31;
pub const DEMO_PRIVATE_KEY: u64 = 0x32;
/// The input that makes every demo data call fail with `CKR_DATA_LEN_RANGE`.
pub const DEMO_FAIL: &[u8] = b"fail";
/// What every demo `C_*Final` with output produces.
pub const DEMO_FINAL: &[u8] = b"final";
/// What the demo `C_WrapKey` produces.
pub const DEMO_WRAPPED: &[u8] = b"wrapped key";

/// The demo answer to an output request: `bytes`, under the size-query
/// convention of the wire.
pub fn demo_output(bytes: &[u8], out: hsmlink_protocol::OutputSpec) -> Response {
    use hsmlink_protocol::*;
    let len = bytes.len() as u64;
    match out {
        OutputSpec::LengthQuery => Response::ok(ResponseBody::Output(Output::Length(len))),
        OutputSpec::Capacity(capacity) if capacity < len => Response {
            rv: Rv(0x150), // CKR_BUFFER_TOO_SMALL
            body: ResponseBody::Output(Output::Length(len)),
        },
        OutputSpec::Capacity(_) => Response::ok(ResponseBody::Output(Output::Data(
            Secret::from_slice(bytes),
        ))),
    }
}

/// Cryptography without state, so that tests see what reached the server:
/// every init succeeds (SM2-with-SM3 answers [`DEMO_Z`]); data calls echo
/// their input (`SignDigest` the digest, `VerifyRecover` the signature),
/// finals produce [`DEMO_FINAL`]; a verification succeeds when the
/// signature equals the data (the digest; [`DEMO_FINAL`] for
/// `VerifyFinal`); [`DEMO_FAIL`] as data is `CKR_DATA_LEN_RANGE`.
/// `None` for the requests that are not cryptographic.
fn demo_crypto(request: &Request) -> Option<Response> {
    use hsmlink_protocol::vendor::CKM_HSMLINK_SM2_SM3;
    use hsmlink_protocol::*;
    const SESSION_HANDLE_INVALID: u64 = 0xB3;
    const DATA_LEN_RANGE: u64 = 0x21;
    const SIGNATURE_INVALID: u64 = 0xC0;
    let verified = |ok: bool| {
        if ok {
            Response::ok(ResponseBody::Empty)
        } else {
            Response::error(SIGNATURE_INVALID)
        }
    };
    let (session, response) = match request {
        Request::SignInit {
            session, mechanism, ..
        }
        | Request::VerifyInit {
            session, mechanism, ..
        } if mechanism.mechanism.0 == CKM_HSMLINK_SM2_SM3 => (
            session,
            Response::ok(ResponseBody::HashPrefix(DEMO_Z.to_vec())),
        ),
        Request::EncryptInit { session, .. }
        | Request::DecryptInit { session, .. }
        | Request::DigestInit { session, .. }
        | Request::SignInit { session, .. }
        | Request::VerifyInit { session, .. }
        | Request::SignRecoverInit { session, .. }
        | Request::VerifyRecoverInit { session, .. }
        | Request::DigestKey { session, .. }
        | Request::SeedRandom { session, .. } => (session, Response::ok(ResponseBody::Empty)),
        Request::DigestUpdate { session, data }
        | Request::SignUpdate { session, data }
        | Request::VerifyUpdate { session, data } => (
            session,
            if data.as_bytes() == DEMO_FAIL {
                Response::error(DATA_LEN_RANGE)
            } else {
                Response::ok(ResponseBody::Empty)
            },
        ),
        Request::Encrypt { session, data, out }
        | Request::EncryptUpdate { session, data, out }
        | Request::Decrypt { session, data, out }
        | Request::DecryptUpdate { session, data, out }
        | Request::Digest { session, data, out }
        | Request::Sign { session, data, out }
        | Request::SignRecover { session, data, out }
        | Request::DigestEncryptUpdate { session, data, out }
        | Request::DecryptDigestUpdate { session, data, out }
        | Request::SignEncryptUpdate { session, data, out }
        | Request::DecryptVerifyUpdate { session, data, out }
        | Request::SignDigest {
            session,
            digest: data,
            out,
        } => (
            session,
            if data.as_bytes() == DEMO_FAIL {
                Response::error(DATA_LEN_RANGE)
            } else {
                demo_output(data.as_bytes(), *out)
            },
        ),
        Request::EncryptFinal { session, out }
        | Request::DecryptFinal { session, out }
        | Request::DigestFinal { session, out }
        | Request::SignFinal { session, out } => (session, demo_output(DEMO_FINAL, *out)),
        Request::VerifyRecover {
            session,
            signature,
            out,
        } => (session, demo_output(signature, *out)),
        Request::Verify {
            session,
            data,
            signature,
        }
        | Request::VerifyDigest {
            session,
            digest: data,
            signature,
        } => (session, verified(data.as_bytes() == signature.as_slice())),
        Request::VerifyFinal { session, signature } => {
            (session, verified(signature.as_slice() == DEMO_FINAL))
        }
        Request::GenerateKey { session, .. } => (
            session,
            Response::ok(ResponseBody::Object(ObjectHandle(DEMO_KEY))),
        ),
        Request::GenerateKeyPair { session, .. } => (
            session,
            Response::ok(ResponseBody::KeyPair {
                public: ObjectHandle(DEMO_PUBLIC_KEY),
                private: ObjectHandle(DEMO_PRIVATE_KEY),
            }),
        ),
        Request::UnwrapKey { session, .. } | Request::DeriveKey { session, .. } => (
            session,
            Response::ok(ResponseBody::Object(ObjectHandle(DEMO_KEY + 3))),
        ),
        Request::WrapKey { session, out, .. } => (session, demo_output(DEMO_WRAPPED, *out)),
        Request::GenerateRandom { session, len } => (
            session,
            Response::ok(ResponseBody::Random(Secret::new(vec![
                0xA5;
                usize::try_from(*len)
                    .unwrap()
            ]))),
        ),
        _ => return None,
    };
    Some(if session.0 == DEMO_SESSION {
        response
    } else {
        Response::error(SESSION_HANDLE_INVALID)
    })
}

/// The session handle the demo server hands out (its only one).
pub const DEMO_SESSION: u64 = 0x10;
/// The demo user PIN.
pub const DEMO_PIN: &[u8] = b"1234";
/// The objects the demo server finds, in order.
pub const DEMO_OBJECTS: [u64; 3] = [0x20, 0x21, 0x22];

/// Sessions and objects, without state: one session on slot 0
/// ([`DEMO_SESSION`]), a login with [`DEMO_PIN`], three objects to find,
/// and attributes of a secret key (`CKA_VALUE` sensitive).
fn demo_sessions_and_objects(request: &Request) -> Response {
    use hsmlink_protocol::attribute_kind::*;
    use hsmlink_protocol::*;
    const SESSION_HANDLE_INVALID: u64 = 0xB3;
    let session = match request {
        Request::OpenSession { slot, .. } => {
            return if slot.0 == 0 {
                Response::ok(ResponseBody::Session(SessionHandle(DEMO_SESSION)))
            } else {
                Response::error(0x3) // CKR_SLOT_ID_INVALID
            };
        }
        Request::InitToken { slot, .. } => {
            return if slot.0 == 0 {
                Response::ok(ResponseBody::Empty)
            } else {
                Response::error(0x3)
            };
        }
        Request::CloseAllSessions { .. } => return Response::ok(ResponseBody::Empty),
        Request::CloseSession { session }
        | Request::GetSessionInfo { session }
        | Request::SessionCancel { session, .. }
        | Request::Login { session, .. }
        | Request::LoginUser { session, .. }
        | Request::Logout { session }
        | Request::InitPin { session, .. }
        | Request::SetPin { session, .. }
        | Request::CreateObject { session, .. }
        | Request::CopyObject { session, .. }
        | Request::DestroyObject { session, .. }
        | Request::GetObjectSize { session, .. }
        | Request::GetAttributeValue { session, .. }
        | Request::SetAttributeValue { session, .. }
        | Request::FindObjectsInit { session, .. }
        | Request::FindObjects { session, .. }
        | Request::FindObjectsFinal { session } => *session,
        _ => return Response::error(0x54), // CKR_FUNCTION_NOT_SUPPORTED
    };
    if session.0 != DEMO_SESSION {
        return Response::error(SESSION_HANDLE_INVALID);
    }
    match request {
        Request::GetSessionInfo { .. } => Response::ok(ResponseBody::SessionInfo(SessionInfo {
            slot_id: SlotId(0),
            state: 2, // CKS_RW_PUBLIC_SESSION
            flags: 6, // CKF_RW_SESSION | CKF_SERIAL_SESSION
            device_error: 0,
        })),
        Request::Login { pin, .. } | Request::LoginUser { pin, .. } => {
            if pin.as_bytes() == DEMO_PIN {
                Response::ok(ResponseBody::Empty)
            } else {
                Response::error(0xA0) // CKR_PIN_INCORRECT
            }
        }
        Request::CreateObject { .. } => Response::ok(ResponseBody::Object(ObjectHandle(0x20))),
        Request::CopyObject { object, .. } => {
            Response::ok(ResponseBody::Object(ObjectHandle(object.0 + 0x100)))
        }
        Request::GetObjectSize { object, .. } => {
            Response::ok(ResponseBody::ObjectSize(if object.0 == 0x20 {
                123
            } else {
                u64::MAX
            }))
        }
        Request::FindObjects { max_count, .. } => Response::ok(ResponseBody::Objects(
            DEMO_OBJECTS
                .iter()
                .take(usize::try_from(*max_count).unwrap_or(usize::MAX))
                .map(|&handle| ObjectHandle(handle))
                .collect(),
        )),
        Request::GetAttributeValue { object, .. } if object.0 != 0x20 => {
            Response::error(0x82) // CKR_OBJECT_HANDLE_INVALID
        }
        Request::GetAttributeValue { types, .. } => {
            Response::ok(ResponseBody::Attributes(
                types
                    .iter()
                    .map(|attr_type| match attr_type.0 {
                        CKA_CLASS => AttributeResult::Value(AttributeValue::Ulong(4)),
                        CKA_TOKEN => AttributeResult::Value(AttributeValue::Bool(true)),
                        CKA_LABEL => {
                            AttributeResult::Value(AttributeValue::Bytes(b"demo key".to_vec()))
                        }
                        CKA_VALUE => AttributeResult::Sensitive,
                        CKA_WRAP_TEMPLATE => AttributeResult::Value(AttributeValue::Template(
                            vec![Attribute::new(CKA_ENCRYPT, AttributeValue::Bool(true))],
                        )),
                        CKA_ALLOWED_MECHANISMS => AttributeResult::Value(
                            AttributeValue::Mechanisms(vec![MechanismType(0x1081)]),
                        ),
                        _ => AttributeResult::Invalid,
                    })
                    .collect(),
            ))
        }
        _ => Response::ok(ResponseBody::Empty),
    }
}

/// A running fake server and what it has seen.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub hellos: Arc<Mutex<Vec<Hello>>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    pub fn start(pki: &Pki, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            hellos: Arc::default(),
            requests: Arc::default(),
        };
        let config = pki.server_config();
        let (connections, hellos, requests) = (
            server.connections.clone(),
            server.hellos.clone(),
            server.requests.clone(),
        );
        // The threads end with the test process.
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let (config, behaviour) = (config.clone(), behaviour.clone());
                let (hellos, requests) = (hellos.clone(), requests.clone());
                std::thread::spawn(move || serve(sock, config, behaviour, hellos, requests));
            }
        });
        server
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().clone()
    }
}

fn serve(
    sock: TcpStream,
    config: Arc<ServerConfig>,
    behaviour: Behaviour,
    hellos: Arc<Mutex<Vec<Hello>>>,
    requests: Arc<Mutex<Vec<Request>>>,
) {
    if let HelloMode::Silent = behaviour.hello {
        std::thread::sleep(Duration::from_secs(20));
        drop(sock);
        return;
    }
    let conn = ServerConnection::new(config).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    // Completes the handshake; fails (and the connection ends) when the
    // client certificate is not acceptable.
    let Ok((_, hello)) = read_message::<_, Hello>(&mut tls, FrameKind::Hello, HELLO_FRAME_VERSION)
    else {
        return;
    };
    hellos.lock().push(hello);
    let reply = match behaviour.hello {
        HelloMode::Reject(reason) => HelloReply::Rejected {
            reason: reason.into(),
        },
        _ => HelloReply::Accepted {
            version: PROTOCOL_VERSION,
            server: "fake-server 0".into(),
            tenant: "demo".into(),
        },
    };
    let rejected = matches!(reply, HelloReply::Rejected { .. });
    if write_frame(
        &mut tls,
        FrameKind::HelloReply,
        HELLO_FRAME_VERSION,
        0,
        &reply,
    )
    .is_err()
        || rejected
    {
        close(&mut tls);
        return;
    }
    let mut served = 0;
    while let Ok((header, request)) =
        read_message::<_, Request>(&mut tls, FrameKind::Request, PROTOCOL_VERSION)
    {
        requests.lock().push(request.clone());
        let response = (behaviour.handler)(&request);
        let id = if behaviour.wrong_id {
            header.request_id.wrapping_add(1000)
        } else {
            header.request_id
        };
        if write_frame(
            &mut tls,
            FrameKind::Response,
            PROTOCOL_VERSION,
            id,
            &response,
        )
        .is_err()
        {
            return;
        }
        served += 1;
        if behaviour.close_after == Some(served) {
            close(&mut tls);
            return;
        }
    }
}

fn close(tls: &mut StreamOwned<ServerConnection, TcpStream>) {
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(std::net::Shutdown::Both);
}
