//! The server in-process, over real TLS on 127.0.0.1: an `init` deployment in
//! a temporary directory, clients made with tokio-rustls.
// Test helpers outside #[test] functions: clippy's allow-unwrap-in-tests
// does not reach them, and a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hsmlink_protocol::frame::{self, HEADER_LEN};
use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
use hsmlink_protocol::{
    AppInstance, FrameHeader, FrameKind, Hello, HelloReply, PROTOCOL_VERSION, Request, Response,
    ResponseBody, SlotId, codec,
};
use hsmlink_server::config::{Config, ListenAddr};
use hsmlink_server::init::{self, CertifiedKey, InitOptions};
use hsmlink_server::names::TenantName;
use hsmlink_server::{Server, ServerError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(10);

struct Deployment {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server_config: PathBuf,
}

impl Deployment {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let report = init::init(&InitOptions::new(
            tmp.path().to_owned(),
            ListenAddr::parse("127.0.0.1:7700").unwrap(),
            TenantName::parse("demo").unwrap(),
        ))
        .unwrap();
        Self {
            _tmp: tmp,
            dir: report.dir,
            server_config: report.server_config,
        }
    }

    fn config(&self) -> Config {
        Config::load(&self.server_config).unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }

    fn demo(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.read("demo.pem"),
            key_pem: self.read("demo-key.pem").into(),
        }
    }

    /// A certificate from the deployment's own CA.
    fn issue(
        &self,
        tenant: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertifiedKey {
        init::issue_tenant_certificate(
            &self.read("ca.pem"),
            &self.read("ca-key.pem"),
            tenant,
            not_before,
            not_after,
        )
        .unwrap()
    }
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

async fn start(config: &Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::with_listener(config, listener).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

fn client_config(
    ca: &Path,
    identity: Option<&CertifiedKey>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => {
            let chain = vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"hsmlink/1".to_vec()];
    Arc::new(config)
}

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

fn hello() -> Hello {
    Hello::new(
        "loopback-test 0".to_owned(),
        AppInstance([9; 16]),
        std::process::id(),
    )
}

async fn send<T: serde::Serialize>(
    stream: &mut TlsStream<TcpStream>,
    kind: FrameKind,
    version: u16,
    id: u64,
    body: &T,
) -> io::Result<()> {
    let bytes = frame::encode_frame(kind, version, id, body).unwrap();
    stream.write_all(&bytes).await?;
    stream.flush().await
}

async fn receive(stream: &mut TlsStream<TcpStream>) -> io::Result<(FrameHeader, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let header = FrameHeader::parse(&header).unwrap();
    let mut body = vec![0u8; header.body_len as usize];
    stream.read_exact(&mut body).await?;
    Ok((header, body))
}

async fn say_hello(stream: &mut TlsStream<TcpStream>, hello: &Hello) -> HelloReply {
    send(stream, FrameKind::Hello, HELLO_FRAME_VERSION, 0, hello)
        .await
        .unwrap();
    let (header, body) = tokio::time::timeout(WAIT, receive(stream))
        .await
        .unwrap()
        .unwrap();
    header
        .expect(FrameKind::HelloReply, HELLO_FRAME_VERSION)
        .unwrap();
    assert_eq!(header.request_id, 0);
    codec::decode(&body).unwrap()
}

async fn call(stream: &mut TlsStream<TcpStream>, id: u64, request: &Request) -> Response {
    send(stream, FrameKind::Request, PROTOCOL_VERSION, id, request)
        .await
        .unwrap();
    let (header, body) = tokio::time::timeout(WAIT, receive(stream))
        .await
        .unwrap()
        .unwrap();
    header
        .expect(FrameKind::Response, PROTOCOL_VERSION)
        .unwrap();
    assert_eq!(header.request_id, id);
    codec::decode(&body).unwrap()
}

/// The connection ends (EOF or error) without a single frame from the server.
async fn assert_closed_without_reply(stream: &mut TlsStream<TcpStream>) {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("the server sent data"),
        Err(_) => panic!("the server kept the connection open"),
    }
}

/// The handshake, the hello or the first read fails; no frame ever arrives.
async fn assert_refused(addr: SocketAddr, config: Arc<rustls::ClientConfig>) {
    let Ok(mut stream) = connect(addr, config).await else {
        return;
    };
    // TLS 1.3: the client may finish its side of the handshake before the
    // server has judged its certificate; the refusal comes as an alert.
    let bytes = frame::encode_frame(FrameKind::Hello, HELLO_FRAME_VERSION, 0, &hello()).unwrap();
    if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    assert_closed_without_reply(&mut stream).await;
}

fn tls13() -> &'static [&'static rustls::SupportedProtocolVersion] {
    const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    TLS13
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tenant_gets_its_slot() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"hsmlink/1"[..]));

    let reply = say_hello(&mut stream, &hello()).await;
    assert_eq!(
        reply,
        HelloReply::Accepted {
            version: PROTOCOL_VERSION,
            server: format!("hsmlink-server {}", env!("CARGO_PKG_VERSION")),
            tenant: "demo".to_owned(),
        }
    );
    let response = call(
        &mut stream,
        1,
        &Request::GetSlotList {
            token_present: true,
        },
    )
    .await;
    assert_eq!(
        response,
        Response::ok(ResponseBody::SlotList(vec![SlotId(0)]))
    );
    let response = call(&mut stream, 2, &Request::GetTokenInfo { slot: SlotId(0) }).await;
    assert!(
        matches!(response.body, ResponseBody::TokenInfo(_)),
        "{response:?}"
    );
    let response = call(&mut stream, 3, &Request::GetSlotInfo { slot: SlotId(1) }).await;
    assert_eq!(response, Response::error(cryptoki_sys::CKR_SLOT_ID_INVALID));

    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_on_one_connection() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    say_hello(&mut stream, &hello()).await;

    // 200 requests written before any reply is read: more than the
    // connection's in-flight limit, so back-pressure is exercised too.
    let mut bytes = Vec::new();
    for id in 100..300u64 {
        let request = if id.is_multiple_of(2) {
            Request::GetSlotList {
                token_present: false,
            }
        } else {
            Request::GetMechanismList { slot: SlotId(0) }
        };
        bytes.extend(
            frame::encode_frame(FrameKind::Request, PROTOCOL_VERSION, id, &request).unwrap(),
        );
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = tokio::spawn(async move {
        writer.write_all(&bytes).await.unwrap();
        writer.flush().await.unwrap();
        writer
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 100..300 {
        let mut header = [0u8; HEADER_LEN];
        tokio::time::timeout(WAIT, reader.read_exact(&mut header))
            .await
            .unwrap()
            .unwrap();
        let header = FrameHeader::parse(&header).unwrap();
        let mut body = vec![0u8; header.body_len as usize];
        reader.read_exact(&mut body).await.unwrap();
        let response: Response = codec::decode(&body).unwrap();
        let expected_list = header.request_id.is_multiple_of(2);
        assert_eq!(
            matches!(response.body, ResponseBody::SlotList(_)),
            expected_list,
            "{response:?}"
        );
        assert!(seen.insert(header.request_id));
    }
    assert_eq!(seen.len(), 200);
    assert_eq!(seen.first(), Some(&100));
    assert_eq!(seen.last(), Some(&299));
    drop(write.await.unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_foreign_ca_and_expired_are_refused() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    assert_refused(server.addr, client_config(&ca, None, tls13())).await;

    let foreign_ca = init::generate_ca("someone else's CA", now - day, now + day).unwrap();
    let foreign = init::issue_tenant_certificate(
        &foreign_ca.cert_pem,
        &foreign_ca.key_pem,
        "demo",
        now - day,
        now + day,
    )
    .unwrap();
    assert_refused(server.addr, client_config(&ca, Some(&foreign), tls13())).await;

    let expired = deployment.issue("demo", now - 10 * day, now - day);
    assert_refused(server.addr, client_config(&ca, Some(&expired), tls13())).await;

    let not_yet = deployment.issue("demo", now + day, now + 10 * day);
    assert_refused(server.addr, client_config(&ca, Some(&not_yet), tls13())).await;

    // The server is unharmed.
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    assert!(matches!(
        say_hello(&mut stream, &hello()).await,
        HelloReply::Accepted { .. }
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_certificates_without_a_known_tenant_are_rejected_in_the_hello() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    let ghost = deployment.issue("ghost", now - day, now + day);
    let mut stream = connect(server.addr, client_config(&ca, Some(&ghost), tls13()))
        .await
        .unwrap();
    let reply = say_hello(&mut stream, &hello()).await;
    assert_eq!(
        reply,
        HelloReply::Rejected {
            reason: "unknown tenant \"ghost\"".to_owned()
        }
    );
    assert_closed_without_reply(&mut stream).await;

    let nameless = init::issue_client_certificate(
        &deployment.read("ca.pem"),
        &deployment.read("ca-key.pem"),
        "nameless",
        &[],
        now - day,
        now + day,
    )
    .unwrap();
    let mut stream = connect(server.addr, client_config(&ca, Some(&nameless), tls13()))
        .await
        .unwrap();
    let HelloReply::Rejected { reason } = say_hello(&mut stream, &hello()).await else {
        panic!("accepted a certificate without a tenant");
    };
    assert!(reason.contains("names no tenant"), "{reason}");
    assert_closed_without_reply(&mut stream).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_version_is_rejected() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    let mut future = hello();
    future.min_version = PROTOCOL_VERSION + 1;
    future.max_version = PROTOCOL_VERSION + 3;
    let HelloReply::Rejected { reason } = say_hello(&mut stream, &future).await else {
        panic!("accepted a version the server does not speak");
    };
    assert!(reason.contains("no common protocol version"), "{reason}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_frame_closes_only_its_connection() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let config = client_config(&ca, Some(&deployment.demo()), tls13());

    let mut bystander = connect(server.addr, config.clone()).await.unwrap();
    say_hello(&mut bystander, &hello()).await;

    type Breaker = fn(&mut Vec<u8>);
    let breakers: [(&str, Breaker); 5] = [
        ("wrong kind", |f| {
            f[6..8].copy_from_slice(&(FrameKind::Hello as u16).to_be_bytes())
        }),
        ("wrong version", |f| {
            f[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes())
        }),
        ("unknown kind", |f| {
            f[6..8].copy_from_slice(&77u16.to_be_bytes())
        }),
        ("oversize", |f| {
            f[0..4].copy_from_slice(&u32::MAX.to_be_bytes())
        }),
        ("garbage body", |f| {
            let len = f.len() - HEADER_LEN;
            f[HEADER_LEN..].copy_from_slice(&vec![0xff; len]);
        }),
    ];
    for (what, breaker) in breakers {
        let mut stream = connect(server.addr, config.clone()).await.unwrap();
        say_hello(&mut stream, &hello()).await;
        let mut bytes = frame::encode_frame(
            FrameKind::Request,
            PROTOCOL_VERSION,
            5,
            &Request::GetSlotList {
                token_present: false,
            },
        )
        .unwrap();
        breaker(&mut bytes);
        stream.write_all(&bytes).await.unwrap();
        stream.flush().await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{what}: {read:?}");
    }

    let response = call(
        &mut bystander,
        1,
        &Request::GetSlotList {
            token_present: false,
        },
    )
    .await;
    assert_eq!(
        response,
        Response::ok(ResponseBody::SlotList(vec![SlotId(0)]))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_follow_the_configuration() {
    let deployment = Deployment::new();
    let ca = deployment.dir.join("ca.pem");
    let tls12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

    // Default: TLS 1.3 only.
    let server = start(&deployment.config()).await;
    assert_refused(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls12),
    )
    .await;
    server.stop().await;

    // tls_min_version = "1.2" lets TLS 1.2 clients in.
    let text = std::fs::read_to_string(&deployment.server_config)
        .unwrap()
        .replace("tls_min_version = \"1.3\"", "tls_min_version = \"1.2\"");
    let config = Config::parse(&text, &deployment.server_config).unwrap();
    let server = start(&config).await;
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls12),
    )
    .await
    .unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(matches!(
        say_hello(&mut stream, &hello()).await,
        HelloReply::Accepted { .. }
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns() {
    let deployment = Deployment::new();
    let server = start(&deployment.config()).await;
    let ca = deployment.dir.join("ca.pem");
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    say_hello(&mut stream, &hello()).await;
    let addr = server.addr;
    server.stop().await;
    assert_closed_without_reply(&mut stream).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_dropped_after_the_handshake_timeout() {
    let deployment = Deployment::new();
    let ca = deployment.dir.join("ca.pem");
    let text = std::fs::read_to_string(&deployment.server_config)
        .unwrap()
        .replace("handshake_timeout_ms = 10000", "handshake_timeout_ms = 300");
    let config = Config::parse(&text, &deployment.server_config).unwrap();
    let server = start(&config).await;

    // No TLS at all.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // TLS, but no hello.
    let mut stream = connect(
        server.addr,
        client_config(&ca, Some(&deployment.demo()), tls13()),
    )
    .await
    .unwrap();
    assert_closed_without_reply(&mut stream).await;
    server.stop().await;
}
