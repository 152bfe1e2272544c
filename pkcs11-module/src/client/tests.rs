//! The slot and token queries against the fake server: shapes, codes
//! passed through, and "no server" as `CKR_TOKEN_NOT_PRESENT` where it fits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use cryptoki_sys::{
    CK_RV, CKR_DEVICE_ERROR, CKR_MECHANISM_INVALID, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT,
};
use hsmlink_protocol::{MechanismType, Request, Response, ResponseBody, SlotId, TokenInfo};

use super::slots;
use crate::config::Config;
use crate::state::Library;
use crate::test_support::{Behaviour, FakeServer, Pki, closed_port};
use crate::transport::Transport;

fn library(pki: &Pki, server: String) -> Library {
    let config = Config::load(&pki.config(&[server], "")).unwrap();
    let transport = Transport::new(&config, hsmlink_protocol::AppInstance([1; 16]), 1).unwrap();
    Library::for_tests(transport)
}

fn rv<T: std::fmt::Debug>(result: Result<T, crate::error::Error>) -> CK_RV {
    result.unwrap_err().rv()
}

#[test]
fn slot_and_token_queries() {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let library = library(&pki, server.address());

    assert_eq!(
        slots::slot_list(&library, false).unwrap(),
        vec![SlotId(0), SlotId(1)]
    );
    assert_eq!(slots::slot_list(&library, true).unwrap(), vec![SlotId(0)]);
    assert_eq!(
        slots::slot_info(&library, SlotId(1)).unwrap().description,
        "hsmlink slot 1"
    );
    assert_eq!(
        rv(slots::slot_info(&library, SlotId(9))),
        CKR_SLOT_ID_INVALID
    );
    let token = slots::token_info(&library, SlotId(0)).unwrap();
    assert_eq!(token.label, "demo");
    assert_eq!(token.max_session_count, TokenInfo::UNAVAILABLE);
    assert_eq!(slots::mechanism_list(&library, SlotId(0)).unwrap().len(), 3);
    let info = slots::mechanism_info(&library, SlotId(0), MechanismType(1)).unwrap();
    assert_eq!((info.min_key_size, info.max_key_size), (2048, 4096));
    assert_eq!(
        rv(slots::mechanism_info(&library, SlotId(0), MechanismType(2))),
        CKR_MECHANISM_INVALID
    );
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_body_of_the_wrong_shape_is_a_device_error() {
    fn wrong(_: &Request) -> Response {
        Response::ok(ResponseBody::Empty)
    }
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            handler: wrong,
            ..Behaviour::default()
        },
    );
    let library = library(&pki, server.address());
    assert_eq!(rv(slots::slot_list(&library, false)), CKR_DEVICE_ERROR);
    assert_eq!(rv(slots::token_info(&library, SlotId(0))), CKR_DEVICE_ERROR);
}

#[test]
fn no_server_means_no_token_for_token_queries() {
    let pki = Pki::new();
    let library = library(&pki, closed_port());
    assert_eq!(rv(slots::slot_list(&library, false)), CKR_DEVICE_ERROR);
    assert_eq!(rv(slots::slot_info(&library, SlotId(0))), CKR_DEVICE_ERROR);
    assert_eq!(
        rv(slots::token_info(&library, SlotId(0))),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(
        rv(slots::mechanism_list(&library, SlotId(0))),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(
        rv(slots::mechanism_info(&library, SlotId(0), MechanismType(1))),
        CKR_TOKEN_NOT_PRESENT
    );
}
