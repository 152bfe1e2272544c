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
    assert_eq!(
        slots::mechanism_list(&library, SlotId(0)).unwrap().len(),
        crate::test_support::DEMO_MECHANISMS.len()
    );
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

#[test]
fn open_session_needs_a_serial_session() {
    use cryptoki_sys::{CKF_RW_SESSION, CKF_SERIAL_SESSION, CKR_SESSION_PARALLEL_NOT_SUPPORTED};

    use super::sessions::check_open_flags;
    #[allow(clippy::useless_conversion)] // CK_FLAGS is u32 on some targets
    fn flags(f: cryptoki_sys::CK_FLAGS) -> u64 {
        u64::from(f)
    }
    assert_eq!(check_open_flags(flags(CKF_SERIAL_SESSION)), Ok(()));
    assert_eq!(
        check_open_flags(flags(CKF_SERIAL_SESSION | CKF_RW_SESSION)),
        Ok(())
    );
    // Unknown bits are the server's to judge.
    assert_eq!(check_open_flags(flags(CKF_SERIAL_SESSION | 0x100)), Ok(()));
    for bad in [0, CKF_RW_SESSION, 0x100] {
        assert_eq!(
            rv(check_open_flags(flags(bad))),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
    }
}

#[test]
fn sessions_and_objects_against_the_fake_server() {
    use cryptoki_sys::{CKR_OBJECT_HANDLE_INVALID, CKR_PIN_INCORRECT, CKR_SESSION_HANDLE_INVALID};
    use hsmlink_protocol::attribute_kind::{CKA_CLASS, CKA_VALUE};
    use hsmlink_protocol::{
        AttributeResult, AttributeType, AttributeValue, ObjectHandle, Secret, SessionHandle,
        UserType,
    };

    use super::{objects, sessions};
    use crate::test_support::{DEMO_OBJECTS, DEMO_PIN, DEMO_SESSION};

    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let library = library(&pki, server.address());
    let session = sessions::open_session(&library, SlotId(0), 4).unwrap();
    assert_eq!(session, SessionHandle(DEMO_SESSION));
    assert_eq!(
        rv(sessions::open_session(&library, SlotId(7), 4)),
        CKR_SLOT_ID_INVALID
    );
    // The local check: nothing sent.
    let sent = server.requests().len();
    assert!(sessions::open_session(&library, SlotId(0), 2).is_err());
    assert_eq!(server.requests().len(), sent);

    assert_eq!(sessions::session_info(&library, session).unwrap().state, 2);
    assert_eq!(
        rv(sessions::session_info(&library, SessionHandle(99))),
        CKR_SESSION_HANDLE_INVALID
    );
    // A failure rv with an Empty body passes through unchanged.
    assert_eq!(
        rv(sessions::login(
            &library,
            session,
            UserType(1),
            Secret::from_slice(b"0000")
        )),
        CKR_PIN_INCORRECT
    );
    sessions::login(&library, session, UserType(1), Secret::from_slice(DEMO_PIN)).unwrap();
    sessions::logout(&library, session).unwrap();
    sessions::session_cancel(&library, session, 0).unwrap();

    objects::find_objects_init(&library, session, Vec::new()).unwrap();
    assert_eq!(objects::find_objects(&library, session, 0).unwrap(), vec![]);
    assert_eq!(
        objects::find_objects(&library, session, 10).unwrap(),
        DEMO_OBJECTS.map(ObjectHandle).to_vec()
    );
    objects::find_objects_final(&library, session).unwrap();
    assert_eq!(
        objects::object_size(&library, session, ObjectHandle(0x20)).unwrap(),
        123
    );
    let results = objects::attribute_values(
        &library,
        session,
        ObjectHandle(0x20),
        vec![AttributeType(CKA_CLASS), AttributeType(CKA_VALUE)],
        false,
    )
    .unwrap();
    assert_eq!(
        results,
        vec![
            AttributeResult::Value(AttributeValue::Ulong(4)),
            AttributeResult::Sensitive
        ]
    );
    assert_eq!(
        rv(objects::attribute_values(
            &library,
            session,
            ObjectHandle(5),
            vec![],
            false,
        )),
        CKR_OBJECT_HANDLE_INVALID
    );
    sessions::close_session(&library, session).unwrap();
    sessions::close_all_sessions(&library, SlotId(0)).unwrap();
}

#[test]
fn session_and_object_answers_of_the_wrong_shape_are_device_errors() {
    use hsmlink_protocol::{
        AttributeResult, AttributeType, ObjectHandle, SessionHandle, SessionInfo,
    };

    use super::{objects, sessions};

    /// Answers every request with the wrong shape or count.
    fn broken(request: &Request) -> Response {
        match request {
            // More than asked for.
            Request::FindObjects { .. } => Response::ok(ResponseBody::Objects(vec![
                ObjectHandle(1),
                ObjectHandle(2),
            ])),
            // One result too few.
            Request::GetAttributeValue { .. } => {
                Response::ok(ResponseBody::Attributes(vec![AttributeResult::Invalid]))
            }
            _ => Response::ok(ResponseBody::SessionInfo(SessionInfo::default())),
        }
    }
    let pki = Pki::new();
    let server = FakeServer::start(
        &pki,
        Behaviour {
            handler: broken,
            ..Behaviour::default()
        },
    );
    let library = library(&pki, server.address());
    let session = SessionHandle(1);
    assert_eq!(
        rv(sessions::open_session(&library, SlotId(0), 4)),
        CKR_DEVICE_ERROR
    );
    assert_eq!(rv(sessions::logout(&library, session)), CKR_DEVICE_ERROR);
    assert_eq!(
        rv(objects::create_object(&library, session, vec![])),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        rv(objects::find_objects(&library, session, 1)),
        CKR_DEVICE_ERROR
    );
    assert!(objects::find_objects(&library, session, 2).is_ok());
    assert_eq!(
        rv(objects::attribute_values(
            &library,
            session,
            ObjectHandle(1),
            vec![AttributeType(0), AttributeType(1)],
            false,
        )),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        rv(objects::object_size(&library, session, ObjectHandle(1))),
        CKR_DEVICE_ERROR
    );
}

#[test]
fn no_server_means_no_token_for_open_session() {
    use hsmlink_protocol::SessionHandle;

    use super::sessions;
    let pki = Pki::new();
    let library = library(&pki, closed_port());
    assert_eq!(
        rv(sessions::open_session(&library, SlotId(0), 4)),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(
        rv(sessions::close_session(&library, SessionHandle(1))),
        CKR_DEVICE_ERROR
    );
}

mod crypto;
