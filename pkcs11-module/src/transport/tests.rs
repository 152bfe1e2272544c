//! The transport against the in-process fake server: reuse, the one retry
//! on a closed idle connection, refusals, timeouts, failover.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cryptoki_sys::{CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT};
use hsmlink_protocol::{AppInstance, Request, ResponseBody, SlotId};

use super::Transport;
use crate::config::Config;
use crate::error::Error;
use crate::test_support::{Behaviour, FakeServer, HelloMode, Pki, closed_port};

const INSTANCE: AppInstance = AppInstance([7; 16]);

fn transport(path: &std::path::Path) -> Transport {
    let config = Config::load(path).unwrap();
    Transport::new(&config, INSTANCE, std::process::id()).unwrap()
}

fn slot_list(transport: &Transport) -> Result<Vec<SlotId>, Error> {
    let response = transport.call(&Request::GetSlotList {
        token_present: false,
    })?;
    assert!(response.rv.is_ok());
    match response.body {
        ResponseBody::SlotList(slots) => Ok(slots),
        other => panic!("unexpected {other:?}"),
    }
}

fn assert_unreachable(result: Result<Vec<SlotId>, Error>) {
    let e = result.unwrap_err();
    assert_eq!(e.rv(), CKR_DEVICE_ERROR);
    assert_eq!(
        e.unreachable_as(CKR_TOKEN_NOT_PRESENT).rv(),
        CKR_TOKEN_NOT_PRESENT
    );
}

#[test]
fn calls_reuse_one_connection() {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let transport = transport(&pki.config(&[server.address()], ""));

    assert_eq!(slot_list(&transport).unwrap(), vec![SlotId(0), SlotId(1)]);
    assert_eq!(slot_list(&transport).unwrap(), vec![SlotId(0), SlotId(1)]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests().len(), 2);

    let hellos = server.hellos.lock().clone();
    assert_eq!(hellos.len(), 1);
    assert!(
        hellos[0].client.starts_with("hsmlink-pkcs11 "),
        "{}",
        hellos[0].client
    );
    assert_eq!(hellos[0].app_instance, INSTANCE);
    assert_eq!(hellos[0].pid, std::process::id());
}

#[test]
fn an_idle_connection_closed_by_the_server_is_replaced_once() {
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            close_after: Some(1),
            ..Behaviour::default()
        },
    );
    let transport = transport(&pki.config(&[server.address()], ""));
    for _ in 0..3 {
        assert_eq!(slot_list(&transport).unwrap().len(), 2);
        // Let the server's close arrive before the next call.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    // Each request reached the server exactly once.
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_mismatched_reply_is_a_device_error_and_not_retried() {
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            wrong_id: true,
            ..Behaviour::default()
        },
    );
    let transport = transport(&pki.config(&[server.address()], ""));
    let e = slot_list(&transport).unwrap_err();
    assert_eq!(e.rv(), CKR_DEVICE_ERROR);
    assert_eq!(
        e.unreachable_as(CKR_TOKEN_NOT_PRESENT).rv(),
        CKR_DEVICE_ERROR
    );
    assert_eq!(server.requests().len(), 1);
    // The broken connection was dropped: the next call opens another.
    let _ = slot_list(&transport);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_rejected_hello_means_unreachable() {
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            hello: HelloMode::Reject("unknown tenant"),
            ..Behaviour::default()
        },
    );
    let transport = transport(&pki.config(&[server.address()], ""));
    assert_unreachable(slot_list(&transport));
    assert!(server.requests().is_empty());
}

#[test]
fn a_certificate_of_another_ca_fails_without_hanging() {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let (cert, key) = pki.foreign_client();
    let path = pki.config_with_identity(&[server.address()], &cert, &key, "");
    let transport = transport(&path);
    let started = Instant::now();
    // TLS 1.3: our handshake completes, the server's alert arrives on the
    // first read (the hello reply).
    assert_unreachable(slot_list(&transport));
    // Well before the 2 s connect timeout: the refusal, not a timeout.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1900), "{elapsed:?}");
    assert!(server.hellos.lock().is_empty());
}

#[test]
fn a_silent_server_costs_at_most_the_connect_timeout() {
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            hello: HelloMode::Silent,
            ..Behaviour::default()
        },
    );
    let path = pki.config(&[server.address()], "");
    let mut config = Config::load(&path).unwrap();
    config.connect_timeout = Duration::from_millis(300);
    let transport = Transport::new(&config, INSTANCE, 1).unwrap();
    let started = Instant::now();
    assert_unreachable(slot_list(&transport));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn a_slow_reply_times_out_and_is_not_sent_again() {
    fn slow(request: &Request) -> hsmlink_protocol::Response {
        std::thread::sleep(Duration::from_secs(5));
        crate::test_support::demo_handler(request)
    }
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            handler: slow,
            ..Behaviour::default()
        },
    );
    let mut config = Config::load(&pki.config(&[server.address()], "")).unwrap();
    config.io_timeout = Duration::from_millis(300);
    let transport = Transport::new(&config, INSTANCE, 1).unwrap();
    let started = Instant::now();
    let e = slot_list(&transport).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.rv(), CKR_DEVICE_ERROR);
    assert_eq!(
        e.unreachable_as(CKR_TOKEN_NOT_PRESENT).rv(),
        CKR_DEVICE_ERROR
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Not sent again (a retry would have happened before the call returned).
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn nothing_listening_is_unreachable_at_once() {
    let pki = Pki::new();
    let transport = transport(&pki.config(&[closed_port()], ""));
    let started = Instant::now();
    assert_unreachable(slot_list(&transport));
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[test]
fn servers_are_tried_in_order() {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let transport = transport(&pki.config(&[closed_port(), server.address()], ""));
    assert_eq!(slot_list(&transport).unwrap().len(), 2);
}

#[test]
fn finalize_uses_an_idle_connection_only() {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let transport = transport(&pki.config(&[server.address()], ""));
    // No idle connection: nothing is opened just to say goodbye.
    transport.finalize();
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    slot_list(&transport).unwrap();
    transport.finalize();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1], Request::Finalize);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}
