//! Hostile tenants, end to end against a real server on loopback: the
//! per-tenant and server-wide connection caps, the per-source limit on
//! wrong PINs (through the real .so), broken frames after the hello and
//! stalled handshakes. Every wait is bounded.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Deployment, RawStream, closed_by_server, in_child, load_module, raw_client_config, raw_hello,
    run_in_child, set_server_keys,
};
use cryptoki::error::{Error, RvError};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use hsmlink_protocol::frame::{self, FrameKind, HEADER_LEN};
use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
use hsmlink_protocol::{
    AppInstance, Hello, HelloReply, MAX_FRAME_BODY, Request, Response, ResponseBody, Secret,
    SlotId, UserType as UserType_,
};

fn accepted_version(reply: &HelloReply) -> u16 {
    match reply {
        HelloReply::Accepted { version, .. } => *version,
        other => panic!("expected the hello to be accepted, got {other:?}"),
    }
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// One GetSlotList on an accepted raw connection.
fn slot_list(stream: &mut RawStream, version: u16, id: u64) -> Response {
    frame::write_frame(
        stream,
        FrameKind::Request,
        version,
        id,
        &Request::GetSlotList {
            token_present: false,
        },
    )
    .expect("send a request");
    let (header, response) =
        frame::read_message::<_, Response>(stream, FrameKind::Response, version)
            .expect("read the response");
    assert_eq!(header.request_id, id);
    response
}

#[test]
fn a_tenant_over_its_connection_cap_is_refused_and_others_still_connect() {
    let deployment = Deployment::init();
    deployment.add_tenant("beta");
    set_server_keys(
        &deployment,
        "server",
        &["max_connections_per_tenant = 3", "max_connections = 5"],
    );
    let mut deployment = deployment;
    deployment.run_server();
    let demo = raw_client_config(
        &deployment,
        &deployment.path("demo.pem"),
        &deployment.path("demo-key.pem"),
    );
    let beta = raw_client_config(
        &deployment,
        &deployment.path("beta.pem"),
        &deployment.path("beta-key.pem"),
    );

    let mut demo_streams = Vec::new();
    for _ in 0..3 {
        let (stream, reply) = raw_hello(&deployment, &demo).expect("demo connects");
        accepted_version(&reply);
        demo_streams.push(stream);
    }
    // The fourth: a clear refusal in the hello, then the close.
    let (mut refused, reply) = raw_hello(&deployment, &demo).expect("a hello reply");
    match &reply {
        HelloReply::Rejected { reason } => assert!(
            reason.contains("max_connections_per_tenant = 3") && reason.contains("demo"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(closed_by_server(&mut refused, Duration::from_secs(10)));
    drop(refused);

    // Another tenant is not affected; its connections work.
    let (mut beta1, reply) = raw_hello(&deployment, &beta).expect("beta connects");
    let version = accepted_version(&reply);
    assert_eq!(
        slot_list(&mut beta1, version, 1),
        Response::ok(ResponseBody::SlotList(vec![SlotId(0)]))
    );
    // The refused connection may still be counted for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_beta2, reply) = loop {
        match raw_hello(&deployment, &beta) {
            Ok(ok) => break ok,
            Err(e) => {
                assert!(Instant::now() < deadline, "beta's second connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    accepted_version(&reply);

    // Five connections: the server-wide cap closes the next one before any
    // handshake, whoever it is.
    assert!(
        raw_hello(&deployment, &beta).is_err(),
        "a connection over max_connections must be closed"
    );

    // A demo connection closed gives its place back.
    drop(demo_streams.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match raw_hello(&deployment, &demo) {
            Ok((_stream, HelloReply::Accepted { .. })) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "demo should connect again once under its cap: {:?}",
                    other.map(|(_, reply)| reply)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    let log = deployment.server_log();
    assert_eq!(
        count_lines(&log, "max_connections_per_tenant = 3"),
        1,
        "one log line for the refused tenant connection:\n{log}"
    );
    assert!(
        count_lines(&log, "connection refused before the handshake") >= 1,
        "{log}"
    );
}

const SO_PIN: &str = "so-pin-1234";
const COOLDOWN_S: u64 = 4;
const PHASE: &str = "HSMLINK_HOSTILE_PHASE";
// PKCS#11 constants for the raw client.
const CKF_RW_SESSION: u64 = 0x2;
const CKF_SERIAL_SESSION: u64 = 0x4;
const CKU_SO: u64 = 0;
const CKR_OK: u64 = 0;
const CKR_FUNCTION_REJECTED: u64 = 0x200;

fn pin(text: &str) -> AuthPin {
    AuthPin::new(text.into())
}

fn rv(result: Result<impl std::fmt::Debug, Error>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// [`raw_hello`] to another address of the server (an IPv6 client of a
/// dual-stack listener is another source than its IPv4 clients).
fn raw_hello_at(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, app: u8) -> (RawStream, u16) {
    let tls = rustls::ClientConnection::new(
        config.clone(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let hello = Hello::new("raw-test-client".into(), AppInstance([app; 16]), 1);
    frame::write_frame(
        &mut stream,
        FrameKind::Hello,
        HELLO_FRAME_VERSION,
        0,
        &hello,
    )
    .unwrap();
    let (_, reply) = frame::read_message::<_, HelloReply>(
        &mut stream,
        FrameKind::HelloReply,
        HELLO_FRAME_VERSION,
    )
    .unwrap();
    let version = accepted_version(&reply);
    (stream, version)
}

/// One request on a raw connection.
fn raw_call(stream: &mut RawStream, version: u16, id: u64, request: &Request) -> Response {
    frame::write_frame(stream, FrameKind::Request, version, id, request).unwrap();
    let (header, response) =
        frame::read_message::<_, Response>(stream, FrameKind::Response, version).unwrap();
    assert_eq!(header.request_id, id);
    response
}

/// A raw client's SO login with the right PIN from `addr`: its result code.
fn raw_so_login(deployment: &Deployment, addr: SocketAddr, app: u8) -> u64 {
    let config = raw_client_config(
        deployment,
        &deployment.path("demo.pem"),
        &deployment.path("demo-key.pem"),
    );
    let (mut stream, version) = raw_hello_at(addr, &config, app);
    let opened = raw_call(
        &mut stream,
        version,
        1,
        &Request::OpenSession {
            slot: SlotId(0),
            flags: CKF_SERIAL_SESSION | CKF_RW_SESSION,
        },
    );
    let ResponseBody::Session(session) = opened.body else {
        panic!("C_OpenSession: {opened:?}");
    };
    let login = raw_call(
        &mut stream,
        version,
        2,
        &Request::Login {
            session,
            user_type: UserType_(CKU_SO),
            pin: Secret::from_slice(SO_PIN.as_bytes()),
        },
    );
    login.rv.0
}

#[test]
fn wrong_pins_from_one_source_are_throttled_for_the_cooldown() {
    if in_child() {
        let pkcs11 = load_module();
        let slot = pkcs11.get_all_slots().expect("C_GetSlotList")[0];
        if std::env::var(PHASE).as_deref() == Ok("after") {
            // After the cool-down the right PIN works: the token is not
            // locked by the refused calls.
            let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
            session
                .login(UserType::So, Some(&pin(SO_PIN)))
                .expect("the right PIN after the cool-down");
            return;
        }
        pkcs11
            .init_token(slot, &pin(SO_PIN), "hostile")
            .expect("C_InitToken");
        let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
        for attempt in 0..3 {
            assert_eq!(
                rv(session.login(UserType::So, Some(&pin("guess")))),
                RvError::PinIncorrect,
                "attempt {attempt}"
            );
        }
        // The source is in its cool-down: even the right PIN is refused,
        // and so are more guesses than the token's lockout allows (they
        // are not checked, so they do not lock the PIN).
        assert_eq!(
            rv(session.login(UserType::So, Some(&pin(SO_PIN)))),
            RvError::FunctionRejected
        );
        for _ in 0..6 {
            assert_eq!(
                rv(session.login(UserType::So, Some(&pin("guess")))),
                RvError::FunctionRejected
            );
        }
        return;
    }
    let deployment = Deployment::init();
    set_server_keys(
        &deployment,
        "security",
        &[
            "login_failures_per_source = 3",
            "login_failure_window_s = 60",
            &format!("login_source_cooldown_s = {COOLDOWN_S}"),
        ],
    );
    // The token's own lockout would come after 5 wrong PINs in a row; the
    // listener is dual-stack so that ::1 is another source than 127.0.0.1.
    let port = deployment.addr.port();
    let text = std::fs::read_to_string(deployment.path("server.toml")).unwrap();
    let text = text
        .replace("max_pin_failures = 10", "max_pin_failures = 5")
        .replace(
            &format!("\"127.0.0.1:{port}\""),
            &format!("\"[::]:{port}\""),
        );
    std::fs::write(deployment.path("server.toml"), text).unwrap();
    let mut deployment = deployment;
    deployment.run_server();
    let name = "wrong_pins_from_one_source_are_throttled_for_the_cooldown";
    let mut env: Vec<(&str, OsString)> = deployment.module_env();
    env.push((PHASE, "guess".into()));
    run_in_child(name, &env);
    let guessed = Instant::now();

    // Meanwhile another source logs in with the right PIN; the throttled
    // one still cannot.
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(raw_so_login(&deployment, v6, 1), CKR_OK);
    assert_eq!(
        raw_so_login(&deployment, deployment.addr, 2),
        CKR_FUNCTION_REJECTED
    );
    assert!(
        guessed.elapsed() < Duration::from_secs(COOLDOWN_S),
        "the checks during the cool-down took too long"
    );

    std::thread::sleep(
        (Duration::from_secs(COOLDOWN_S) + Duration::from_millis(500))
            .saturating_sub(guessed.elapsed()),
    );
    env.pop();
    env.push((PHASE, "after".into()));
    run_in_child(name, &env);
    deployment.stop_server();

    let log = deployment.server_log();
    assert_eq!(
        count_lines(&log, "too many wrong PINs from this source"),
        1,
        "{log}"
    );
    for secret in [SO_PIN, "guess"] {
        assert!(!log.contains(secret), "{secret} in the server log");
    }
    let lines = deployment.audit_export(&["--tenant", "demo"]);
    let rejected = lines
        .iter()
        .filter(|l| l.contains("\"op\":\"C_Login\"") && l.contains("CKR_FUNCTION_REJECTED"))
        .count();
    assert_eq!(rejected, 8, "{}", lines.join("\n"));
    let limited: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("login.source_limited"))
        .collect();
    assert_eq!(limited.len(), 1, "{}", lines.join("\n"));
    assert!(limited[0].contains("from 127.0.0.1 "), "{}", limited[0]);
    for secret in [SO_PIN, "guess"] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "{secret} in the audit export"
        );
    }
}

#[test]
fn broken_frames_and_stalled_handshakes_close_only_their_connection() {
    let deployment = Deployment::init();
    let text = std::fs::read_to_string(deployment.path("server.toml")).unwrap();
    std::fs::write(
        deployment.path("server.toml"),
        text.replace(
            "handshake_timeout_ms = 10000",
            "handshake_timeout_ms = 1500",
        ),
    )
    .unwrap();
    let mut deployment = deployment;
    deployment.run_server();
    let demo = raw_client_config(
        &deployment,
        &deployment.path("demo.pem"),
        &deployment.path("demo-key.pem"),
    );
    let (mut bystander, reply) = raw_hello(&deployment, &demo).expect("bystander");
    let version = accepted_version(&reply);

    // A handshake that stalls halfway (a TLS record header, then nothing)
    // and a connection that never starts one: both cut after the
    // handshake timeout, while other clients are served meanwhile.
    let mut half = TcpStream::connect(deployment.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let mut silent = TcpStream::connect(deployment.addr).unwrap();
    let started = Instant::now();
    let (mut other, reply) = raw_hello(&deployment, &demo).expect("served during the stall");
    let other_version = accepted_version(&reply);
    for (what, stream) in [("half handshake", &mut half), ("silent", &mut silent)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        assert!(matches!(read, Ok(0) | Err(_)), "{what}: {read:?}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{what}: cut after {:?}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));

    // A slow handshake that keeps sending (a byte every 100 ms) does not
    // stretch the timeout: the deadline is fixed at the TCP accept.
    let mut drip = TcpStream::connect(deployment.addr).unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    drip.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let started = Instant::now();
    let cut = loop {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a dripping handshake was not cut"
        );
        if drip.write_all(&[0x01]).is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 64];
        match drip.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(_) | Err(_) => break started.elapsed(),
        }
    };
    assert!(cut >= Duration::from_millis(1000), "cut after {cut:?}");

    let request = frame::encode_frame(
        FrameKind::Request,
        version,
        7,
        &Request::GetSlotList {
            token_present: false,
        },
    )
    .unwrap();
    type Breaker = fn(&[u8]) -> Vec<u8>;
    let breakers: [(&str, Breaker); 4] = [
        // One byte over the limit (the header alone tells).
        ("just over the size limit", |f| {
            let mut f = f.to_vec();
            f[0..4].copy_from_slice(&(MAX_FRAME_BODY + 1).to_be_bytes());
            f
        }),
        // The header promises more than comes, then the client ends.
        ("truncated body", |f| f[..f.len() - 2].to_vec()),
        ("truncated header", |f| f[..HEADER_LEN / 2].to_vec()),
        // Not a frame at all.
        ("garbage", |_| b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, breaker) in breakers {
        let (mut stream, reply) = raw_hello(&deployment, &demo).expect(what);
        accepted_version(&reply);
        stream.write_all(&breaker(&request)).unwrap();
        stream.flush().unwrap();
        if what.starts_with("truncated") {
            // The rest never comes: the client says it is done.
            stream.conn.send_close_notify();
            stream.flush().unwrap();
        }
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(10)),
            "{what}: the server should close the connection"
        );
    }

    // Nobody else noticed.
    for (stream, version, id) in [(&mut bystander, version, 1), (&mut other, other_version, 2)] {
        assert_eq!(
            slot_list(stream, version, id),
            Response::ok(ResponseBody::SlotList(vec![SlotId(0)]))
        );
    }
    let status = deployment.stop_server().expect("running");
    assert!(status.success(), "{status}");
    let log = deployment.server_log();
    assert!(log.contains("TLS handshake timed out"), "{log}");
    assert!(
        count_lines(&log, "closing connection: unreadable frame") >= 2,
        "{log}"
    );
}

/// A frame sent on one connection, replayed byte for byte on others: it
/// names a session, and sessions belong to one tenant's one application
/// (its app instance), so on another application's or another tenant's
/// connection it reaches nothing (`CKR_SESSION_HANDLE_INVALID`) and changes
/// nothing. (TLS keeps frames from being recorded off the wire at all; this
/// is a tenant replaying what it has, or guessing handles.)
#[test]
fn a_frame_replayed_on_another_connection_reaches_nothing() {
    const CKR_SESSION_HANDLE_INVALID: u64 = 0xB3;
    let deployment = Deployment::init();
    deployment.add_tenant("acme");
    let mut deployment = deployment;
    deployment.run_server();
    let demo = raw_client_config(
        &deployment,
        &deployment.path("demo.pem"),
        &deployment.path("demo-key.pem"),
    );
    let acme = raw_client_config(
        &deployment,
        &deployment.path("acme.pem"),
        &deployment.path("acme-key.pem"),
    );
    let (mut a, version) = raw_hello_at(deployment.addr, &demo, 1);
    let mut label = b"replay".to_vec();
    label.resize(32, b' ');
    let init = raw_call(
        &mut a,
        version,
        1,
        &Request::InitToken {
            slot: SlotId(0),
            so_pin: Secret::from_slice(SO_PIN.as_bytes()),
            label,
        },
    );
    assert_eq!(init.rv.0, CKR_OK, "{init:?}");
    let opened = raw_call(
        &mut a,
        version,
        2,
        &Request::OpenSession {
            slot: SlotId(0),
            flags: CKF_SERIAL_SESSION | CKF_RW_SESSION,
        },
    );
    let ResponseBody::Session(session) = opened.body else {
        panic!("C_OpenSession: {opened:?}");
    };
    let login = raw_call(
        &mut a,
        version,
        3,
        &Request::Login {
            session,
            user_type: UserType_(CKU_SO),
            pin: Secret::from_slice(SO_PIN.as_bytes()),
        },
    );
    assert_eq!(login.rv.0, CKR_OK);

    // The recorded frames: a query of the SO's session, and its close.
    let record = |request: &Request, id: u64| {
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::Request, version, id, request).unwrap();
        bytes
    };
    let info = record(&Request::GetSessionInfo { session }, 7);
    let close = record(&Request::CloseSession { session }, 8);
    let replay = |stream: &mut RawStream, bytes: &[u8]| {
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
        let (_, response) =
            frame::read_message::<_, Response>(stream, FrameKind::Response, version).unwrap();
        response.rv.0
    };
    assert_eq!(replay(&mut a, &info), CKR_OK);

    // Another application of the same tenant, and another tenant using the
    // same app instance bytes: nothing there.
    let (mut other_app, _) = raw_hello_at(deployment.addr, &demo, 2);
    let (mut other_tenant, _) = raw_hello_at(deployment.addr, &acme, 1);
    for stream in [&mut other_app, &mut other_tenant] {
        assert_eq!(replay(stream, &info), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(replay(stream, &close), CKR_SESSION_HANDLE_INVALID);
    }
    // ... and the session is untouched, still logged in as the SO.
    let again = raw_call(&mut a, version, 9, &Request::GetSessionInfo { session });
    let ResponseBody::SessionInfo(state) = again.body else {
        panic!("C_GetSessionInfo: {again:?}");
    };
    assert_eq!(state.state, 4, "CKS_RW_SO_FUNCTIONS: {state:?}");
    // A second connection of the same application is that application
    // (the module opens one per call in flight): the frame works there.
    let (mut same_app, _) = raw_hello_at(deployment.addr, &demo, 1);
    assert_eq!(replay(&mut same_app, &info), CKR_OK);
}
