//! The token functions through the dispatcher, in-process.

use cryptoki_sys::*;
use hsmlink_protocol::{
    AttributeResult, AttributeValue, ObjectHandle, Request, ResponseBody, SessionHandle, SlotId,
};

use crate::dispatch::handle;
use crate::testing::*;

use AttributeValue::{Bool, Bytes, Ulong};

fn data_object(token: bool, private: bool, value: &[u8]) -> Vec<hsmlink_protocol::Attribute> {
    vec![
        a(CKA_CLASS, Ulong(CKO_DATA)),
        a(CKA_TOKEN, Bool(token)),
        a(CKA_PRIVATE, Bool(private)),
        a(CKA_LABEL, Bytes(b"data".to_vec())),
        a(CKA_VALUE, Bytes(value.to_vec())),
    ]
}

fn aes_key(token: bool, value: &[u8]) -> Vec<hsmlink_protocol::Attribute> {
    vec![
        a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
        a(CKA_KEY_TYPE, Ulong(CKK_AES)),
        a(CKA_TOKEN, Bool(token)),
        a(CKA_SENSITIVE, Bool(true)),
        a(CKA_LABEL, Bytes(b"aes".to_vec())),
        a(CKA_VALUE, Bytes(value.to_vec())),
    ]
}

fn certificate() -> Vec<hsmlink_protocol::Attribute> {
    vec![
        a(CKA_CLASS, Ulong(CKO_CERTIFICATE)),
        a(CKA_CERTIFICATE_TYPE, Ulong(CKC_X_509)),
        a(CKA_TOKEN, Bool(true)),
        a(CKA_SUBJECT, Bytes(b"subject-der".to_vec())),
        a(CKA_VALUE, Bytes(b"certificate-der".to_vec())),
    ]
}

fn session_info(
    f: &Fixture,
    c: &crate::dispatch::ClientContext,
    h: SessionHandle,
) -> hsmlink_protocol::SessionInfo {
    match f.ask(c, Request::GetSessionInfo { session: h }).body {
        ResponseBody::SessionInfo(i) => i,
        other => panic!("{other:?}"),
    }
}

// ---- sessions ----

#[test]
fn sessions_open_close_and_report_their_state() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    // Before C_InitToken there is no token to open a session with.
    assert_eq!(
        open(s, &c, 0, true).unwrap_err(),
        err(CKR_TOKEN_NOT_RECOGNIZED)
    );
    ready_token(s, &c, 0);
    assert_eq!(
        f.ask(
            &c,
            Request::OpenSession {
                slot: SlotId(0),
                flags: CKF_RW_SESSION
            }
        ),
        err(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
    );
    assert_eq!(open(s, &c, 9, true).unwrap_err(), err(CKR_SLOT_ID_INVALID));

    let ro = open(s, &c, 0, false).unwrap();
    let rw = open(s, &c, 0, true).unwrap();
    assert_ne!(ro, rw);
    let info = session_info(&f, &c, ro);
    assert_eq!(
        (info.slot_id, info.state, info.flags),
        (SlotId(0), CKS_RO_PUBLIC_SESSION, CKF_SERIAL_SESSION)
    );
    assert_eq!(session_info(&f, &c, rw).state, CKS_RW_PUBLIC_SESSION);
    let t = token_info(s, &c, 0);
    assert_eq!((t.session_count, t.rw_session_count), (2, 1));

    // Login on one session logs in every session of the app on the token.
    assert_eq!(login(s, &c, rw, CKU_USER, USER_PIN), ok());
    assert_eq!(session_info(&f, &c, ro).state, CKS_RO_USER_FUNCTIONS);
    assert_eq!(session_info(&f, &c, rw).state, CKS_RW_USER_FUNCTIONS);
    // Another app of the same tenant is not logged in.
    let other = ctx("demo", 2);
    let h2 = open(s, &other, 0, true).unwrap();
    assert_eq!(session_info(&f, &other, h2).state, CKS_RW_PUBLIC_SESSION);
    assert_eq!(token_info(s, &other, 0).session_count, 1);
    // Its handles are its own.
    assert_eq!(
        f.ask(&other, Request::GetSessionInfo { session: rw }).rv.0,
        if h2 == rw {
            CKR_OK
        } else {
            CKR_SESSION_HANDLE_INVALID
        }
    );

    assert_eq!(f.ask(&c, Request::CloseSession { session: ro }), ok());
    assert_eq!(
        f.ask(&c, Request::CloseSession { session: ro }),
        err(CKR_SESSION_HANDLE_INVALID)
    );
    assert_eq!(
        f.ask(&c, Request::GetSessionInfo { session: ro }),
        err(CKR_SESSION_HANDLE_INVALID)
    );
    // Closing the last session logs the application out.
    assert_eq!(
        f.ask(&c, Request::CloseAllSessions { slot: SlotId(0) }),
        ok()
    );
    let again = open(s, &c, 0, true).unwrap();
    assert_eq!(session_info(&f, &c, again).state, CKS_RW_PUBLIC_SESSION);
    assert_eq!(
        f.ask(
            &c,
            Request::SessionCancel {
                session: again,
                flags: 0
            }
        ),
        ok()
    );

    // C_Finalize closes all of the application's sessions.
    assert_eq!(f.ask(&c, Request::Finalize), ok());
    assert_eq!(
        f.ask(&c, Request::GetSessionInfo { session: again }),
        err(CKR_SESSION_HANDLE_INVALID)
    );
    assert_eq!(token_info(s, &c, 0).session_count, 0);
    assert_eq!(token_info(s, &other, 0).session_count, 1);
}

#[test]
fn so_sessions_and_read_only_sessions_exclude_each_other() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let ro = open(s, &c, 0, false).unwrap();
    let rw = open(s, &c, 0, true).unwrap();
    assert_eq!(
        login(s, &c, rw, CKU_SO, SO_PIN),
        err(CKR_SESSION_READ_ONLY_EXISTS)
    );
    assert_eq!(f.ask(&c, Request::CloseSession { session: ro }), ok());
    assert_eq!(login(s, &c, rw, CKU_SO, SO_PIN), ok());
    assert_eq!(session_info(&f, &c, rw).state, CKS_RW_SO_FUNCTIONS);
    assert_eq!(
        open(s, &c, 0, false).unwrap_err(),
        err(CKR_SESSION_READ_WRITE_SO_EXISTS)
    );
    assert_eq!(
        login(s, &c, rw, CKU_SO, SO_PIN),
        err(CKR_USER_ALREADY_LOGGED_IN)
    );
    assert_eq!(
        login(s, &c, rw, CKU_USER, USER_PIN),
        err(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    );
    assert_eq!(logout(s, &c, rw), ok());
    assert_eq!(logout(s, &c, rw), err(CKR_USER_NOT_LOGGED_IN));
    assert_eq!(login(s, &c, rw, 7, USER_PIN), err(CKR_USER_TYPE_INVALID));
    assert_eq!(
        login(s, &c, rw, CKU_CONTEXT_SPECIFIC, USER_PIN),
        err(CKR_OPERATION_NOT_INITIALIZED)
    );
    assert_eq!(
        login(s, &c, SessionHandle(999), CKU_USER, USER_PIN),
        err(CKR_SESSION_HANDLE_INVALID)
    );
    // C_LoginUser: the name is ignored.
    let r = f.ask(
        &c,
        Request::LoginUser {
            session: rw,
            user_type: hsmlink_protocol::UserType(CKU_USER),
            pin: pin(USER_PIN),
            username: b"anyone".to_vec(),
        },
    );
    assert_eq!(r, ok());
}

// ---- PINs ----

#[test]
fn token_initialisation_and_pin_flags() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    let t = token_info(s, &c, 0);
    assert_eq!(
        t.flags & (CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED),
        0
    );
    let short = Request::InitToken {
        slot: SlotId(0),
        so_pin: pin(b"123"),
        label: label("x"),
    };
    assert_eq!(f.ask(&c, short), err(CKR_PIN_LEN_RANGE));
    assert_eq!(init_token(s, &c, 0), ok());
    let t = token_info(s, &c, 0);
    assert_eq!(t.label, "my token");
    assert_ne!(t.flags & CKF_TOKEN_INITIALIZED, 0);
    assert_eq!(t.flags & CKF_USER_PIN_INITIALIZED, 0);

    let h = open(s, &c, 0, true).unwrap();
    assert_eq!(
        login(s, &c, h, CKU_USER, USER_PIN),
        err(CKR_USER_PIN_NOT_INITIALIZED)
    );
    // C_InitPIN needs the SO.
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(USER_PIN)
            }
        ),
        err(CKR_USER_NOT_LOGGED_IN)
    );

    // Wrong SO PINs: count low, final try, locked (limit 3 here).
    assert_eq!(
        login(s, &c, h, CKU_SO, b"wrong-pin"),
        err(CKR_PIN_INCORRECT)
    );
    let fl = token_info(s, &c, 0).flags;
    assert_ne!(fl & CKF_SO_PIN_COUNT_LOW, 0);
    assert_eq!(fl & CKF_SO_PIN_FINAL_TRY, 0);
    assert_eq!(
        login(s, &c, h, CKU_SO, b"wrong-pin"),
        err(CKR_PIN_INCORRECT)
    );
    assert_ne!(token_info(s, &c, 0).flags & CKF_SO_PIN_FINAL_TRY, 0);
    // A right PIN resets the counter.
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    let fl = token_info(s, &c, 0).flags;
    assert_eq!(fl & (CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY), 0);

    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(b"abc")
            }
        ),
        err(CKR_PIN_LEN_RANGE)
    );
    let long = vec![b'x'; 129];
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(&long)
            }
        ),
        err(CKR_PIN_LEN_RANGE)
    );
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(USER_PIN)
            }
        ),
        ok()
    );
    let fl = token_info(s, &c, 0).flags;
    assert_ne!(fl & CKF_USER_PIN_INITIALIZED, 0);
    assert_ne!(fl & CKF_USER_PIN_TO_BE_CHANGED, 0, "set by the SO");
    assert_eq!(logout(s, &c, h), ok());

    // The user PIN locks after three wrong tries.
    for _ in 0..3 {
        assert_eq!(
            login(s, &c, h, CKU_USER, b"bad-user-pin"),
            err(CKR_PIN_INCORRECT)
        );
    }
    let fl = token_info(s, &c, 0).flags;
    assert_ne!(fl & CKF_USER_PIN_LOCKED, 0);
    assert_eq!(fl & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY), 0);
    assert_eq!(login(s, &c, h, CKU_USER, USER_PIN), err(CKR_PIN_LOCKED));
    // The SO unlocks it by setting a new one.
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(USER_PIN)
            }
        ),
        ok()
    );
    assert_eq!(logout(s, &c, h), ok());
    assert_eq!(login(s, &c, h, CKU_USER, USER_PIN), ok());

    // SO PIN lock.
    assert_eq!(logout(s, &c, h), ok());
    for _ in 0..3 {
        assert_eq!(
            login(s, &c, h, CKU_SO, b"wrong-pin"),
            err(CKR_PIN_INCORRECT)
        );
    }
    assert_ne!(token_info(s, &c, 0).flags & CKF_SO_PIN_LOCKED, 0);
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), err(CKR_PIN_LOCKED));
}

#[test]
fn a_pin_set_by_the_so_must_be_changed_before_use() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    assert_eq!(init_token(s, &c, 0), ok());
    let h = open(s, &c, 0, true).unwrap();
    // A public object made before.
    let public = create(s, &c, h, data_object(false, false, b"public")).unwrap();
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(b"given-by-so")
            }
        ),
        ok()
    );
    assert_eq!(logout(s, &c, h), ok());

    assert_eq!(login(s, &c, h, CKU_USER, b"given-by-so"), ok());
    assert_eq!(
        create(s, &c, h, data_object(false, false, b"x")).unwrap_err(),
        err(CKR_PIN_EXPIRED)
    );
    assert_eq!(
        f.ask(
            &c,
            Request::DestroyObject {
                session: h,
                object: public
            }
        ),
        err(CKR_PIN_EXPIRED)
    );
    assert_eq!(
        f.ask(
            &c,
            Request::GetObjectSize {
                session: h,
                object: public
            }
        ),
        err(CKR_PIN_EXPIRED)
    );
    // Public objects can still be found and read.
    assert_eq!(find(s, &c, h, vec![]), vec![public]);
    assert!(get(s, &c, h, public, &[CKA_VALUE]).is_ok());
    assert!(session_info(&f, &c, h).state == CKS_RW_USER_FUNCTIONS);
    // A read-only session cannot change it.
    let ro = open(s, &c, 0, false).unwrap();
    let change = |session, old: &[u8], new: &[u8]| Request::SetPin {
        session,
        old_pin: pin(old),
        new_pin: pin(new),
    };
    assert_eq!(
        f.ask(&c, change(ro, b"given-by-so", USER_PIN)),
        err(CKR_SESSION_READ_ONLY)
    );
    assert_eq!(
        f.ask(&c, change(h, b"wrong-old", USER_PIN)),
        err(CKR_PIN_INCORRECT)
    );
    assert_eq!(
        f.ask(&c, change(h, b"given-by-so", b"ab")),
        err(CKR_PIN_LEN_RANGE)
    );
    assert_eq!(f.ask(&c, change(h, b"given-by-so", USER_PIN)), ok());
    assert_eq!(token_info(s, &c, 0).flags & CKF_USER_PIN_TO_BE_CHANGED, 0);
    assert!(create(s, &c, h, data_object(false, true, b"x")).is_ok());

    // Without the rule, the PIN works at once.
    let mut policy = POLICY;
    policy.require_user_pin_change = false;
    let f = Fixture::with_policy(policy);
    let s = &f.state;
    assert_eq!(init_token(s, &c, 0), ok());
    let h = open(s, &c, 0, true).unwrap();
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    assert_eq!(
        f.ask(
            &c,
            Request::InitPin {
                session: h,
                pin: pin(USER_PIN)
            }
        ),
        ok()
    );
    assert_eq!(token_info(s, &c, 0).flags & CKF_USER_PIN_TO_BE_CHANGED, 0);
    // The SO changes its own PIN.
    assert_eq!(f.ask(&c, change(h, SO_PIN, b"new-so-pin")), ok());
    assert_eq!(logout(s, &c, h), ok());
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), err(CKR_PIN_INCORRECT));
    assert_eq!(login(s, &c, h, CKU_SO, b"new-so-pin"), ok());
}

#[test]
fn init_token_wipes_objects_and_needs_no_sessions() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);
    create(s, &c, h, data_object(true, true, b"private")).unwrap();
    create(s, &c, h, data_object(true, false, b"public")).unwrap();
    assert_eq!(find(s, &c, h, vec![]).len(), 2);
    assert_eq!(init_token(s, &c, 0), err(CKR_SESSION_EXISTS));
    // Another application's session counts too.
    assert_eq!(f.ask(&c, Request::CloseSession { session: h }), ok());
    let other = ctx("demo", 2);
    let h2 = open(s, &other, 0, false).unwrap();
    assert_eq!(init_token(s, &c, 0), err(CKR_SESSION_EXISTS));
    assert_eq!(f.ask(&other, Request::CloseSession { session: h2 }), ok());
    // A wrong SO PIN does not re-initialise.
    let wrong = Request::InitToken {
        slot: SlotId(0),
        so_pin: pin(b"not-the-so"),
        label: label("x"),
    };
    assert_eq!(f.ask(&c, wrong), err(CKR_PIN_INCORRECT));
    assert_eq!(init_token(s, &c, 0), ok());
    let t = token_info(s, &c, 0);
    assert_eq!(t.flags & CKF_USER_PIN_INITIALIZED, 0);
    let h = open(s, &c, 0, true).unwrap();
    assert!(find(s, &c, h, vec![]).is_empty());
    // And after a restart too.
    drop(f.state.sessions.finalize(&c.app_key(), c.pid));
    let restarted = f.reopen();
    let h = open(&restarted, &c, 0, true).unwrap();
    assert!(find(&restarted, &c, h, vec![]).is_empty());
}

// ---- objects ----

#[test]
fn data_objects_certificates_and_keys() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);

    let data = create(s, &c, h, data_object(true, false, b"hello")).unwrap();
    let r = get(
        s,
        &c,
        h,
        data,
        &[CKA_VALUE, CKA_CLASS, CKA_TOKEN, CKA_MODULUS, CKA_UNIQUE_ID],
    )
    .unwrap();
    assert_eq!(r[0], AttributeResult::Value(Bytes(b"hello".to_vec())));
    assert_eq!(r[1], AttributeResult::Value(Ulong(CKO_DATA)));
    assert_eq!(r[2], AttributeResult::Value(Bool(true)));
    assert_eq!(r[3], AttributeResult::Invalid);
    assert!(matches!(&r[4], AttributeResult::Value(Bytes(id)) if id.len() == 32));

    let cert = create(s, &c, h, certificate()).unwrap();
    let r = get(
        s,
        &c,
        h,
        cert,
        &[CKA_SUBJECT, CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY],
    )
    .unwrap();
    assert_eq!(r[0], AttributeResult::Value(Bytes(b"subject-der".to_vec())));
    assert_eq!(r[1], AttributeResult::Value(Bool(false)));

    let value = [0x42u8; 32];
    let key = create(s, &c, h, aes_key(true, &value)).unwrap();
    let r = get(
        s,
        &c,
        h,
        key,
        &[
            CKA_VALUE,
            CKA_VALUE_LEN,
            CKA_PRIVATE,
            CKA_LOCAL,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
            CKA_KEY_GEN_MECHANISM,
        ],
    )
    .unwrap();
    assert_eq!(r[0], AttributeResult::Sensitive);
    assert_eq!(r[1], AttributeResult::Value(Ulong(32)));
    assert_eq!(
        r[2],
        AttributeResult::Value(Bool(true)),
        "keys are private by default"
    );
    assert_eq!(r[3], AttributeResult::Value(Bool(false)));
    assert_eq!(
        r[4],
        AttributeResult::Value(Bool(false)),
        "imported: never always-sensitive"
    );
    assert_eq!(r[5], AttributeResult::Value(Bool(false)));
    assert_eq!(
        r[6],
        AttributeResult::Value(Ulong(CK_UNAVAILABLE_INFORMATION))
    );
    // A non-sensitive, extractable key shows its value.
    let mut t = aes_key(false, &value);
    t[3] = a(CKA_SENSITIVE, Bool(false));
    t.push(a(CKA_EXTRACTABLE, Bool(true)));
    let open_key = create(s, &c, h, t).unwrap();
    assert_eq!(
        get(s, &c, h, open_key, &[CKA_VALUE]).unwrap()[0],
        AttributeResult::Value(Bytes(value.to_vec()))
    );
    // Unextractable hides it even when not sensitive.
    assert_eq!(
        f.ask(
            &c,
            Request::SetAttributeValue {
                session: h,
                object: open_key,
                template: vec![a(CKA_EXTRACTABLE, Bool(false))]
            }
        ),
        ok()
    );
    assert_eq!(
        get(s, &c, h, open_key, &[CKA_VALUE]).unwrap()[0],
        AttributeResult::Sensitive
    );

    // Asymmetric keys.
    let ec_pub = create(
        s,
        &c,
        h,
        vec![
            a(CKA_CLASS, Ulong(CKO_PUBLIC_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_EC)),
            a(
                CKA_EC_PARAMS,
                Bytes(vec![6, 8, 42, 134, 72, 206, 61, 3, 1, 7]),
            ),
            a(CKA_EC_POINT, Bytes(vec![4; 65])),
        ],
    )
    .unwrap();
    assert_eq!(
        get(s, &c, h, ec_pub, &[CKA_PRIVATE]).unwrap()[0],
        AttributeResult::Value(Bool(false))
    );
    let sm2_priv = create(
        s,
        &c,
        h,
        vec![
            a(CKA_CLASS, Ulong(CKO_PRIVATE_KEY)),
            a(
                CKA_KEY_TYPE,
                Ulong(hsmlink_protocol::vendor::CKK_HSMLINK_SM2),
            ),
            a(
                CKA_EC_PARAMS,
                Bytes(vec![6, 8, 42, 129, 28, 207, 85, 1, 130, 45]),
            ),
            a(CKA_VALUE, Bytes(vec![7; 32])),
            a(
                CKA_ALLOWED_MECHANISMS,
                AttributeValue::Mechanisms(vec![hsmlink_protocol::MechanismType(
                    hsmlink_protocol::vendor::CKM_HSMLINK_SM2_SM3,
                )]),
            ),
        ],
    )
    .unwrap();
    let r = get(
        s,
        &c,
        h,
        sm2_priv,
        &[CKA_VALUE, CKA_SENSITIVE, CKA_ALLOWED_MECHANISMS],
    )
    .unwrap();
    assert_eq!(r[0], AttributeResult::Sensitive);
    assert_eq!(r[1], AttributeResult::Value(Bool(true)));
    assert!(
        matches!(r[2], AttributeResult::Value(AttributeValue::Mechanisms(ref m)) if m.len() == 1)
    );
    let size = f.ask(
        &c,
        Request::GetObjectSize {
            session: h,
            object: sm2_priv,
        },
    );
    assert!(matches!(size.body, ResponseBody::ObjectSize(n) if n > 32));
}

#[test]
fn template_errors() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);
    let cases: Vec<(Vec<hsmlink_protocol::Attribute>, CK_RV)> = vec![
        // No class; AES key without a value; certificate without a subject.
        (vec![a(CKA_TOKEN, Bool(false))], CKR_TEMPLATE_INCOMPLETE),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            ],
            CKR_TEMPLATE_INCOMPLETE,
        ),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_VALUE, Bytes(vec![1; 16])),
            ],
            CKR_TEMPLATE_INCOMPLETE,
        ),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_CERTIFICATE)),
                a(CKA_CERTIFICATE_TYPE, Ulong(CKC_X_509)),
                a(CKA_VALUE, Bytes(vec![1])),
            ],
            CKR_TEMPLATE_INCOMPLETE,
        ),
        // A secret key of an asymmetric type; the same attribute twice with two values.
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_RSA)),
                a(CKA_VALUE, Bytes(vec![1; 16])),
            ],
            CKR_TEMPLATE_INCONSISTENT,
        ),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_DATA)),
                a(CKA_LABEL, Bytes(b"a".to_vec())),
                a(CKA_LABEL, Bytes(b"b".to_vec())),
            ],
            CKR_TEMPLATE_INCONSISTENT,
        ),
        // Wrong kinds, unknown class, bad key length, bad date.
        (vec![a(CKA_CLASS, Bool(true))], CKR_ATTRIBUTE_VALUE_INVALID),
        (
            vec![a(CKA_CLASS, Ulong(CKO_DATA)), a(CKA_TOKEN, Ulong(1))],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![a(CKA_CLASS, Ulong(CKO_HW_FEATURE))],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (aes_key(false, &[1; 17]), CKR_ATTRIBUTE_VALUE_INVALID),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_CERTIFICATE)),
                a(CKA_CERTIFICATE_TYPE, Ulong(CKC_WTLS)),
                a(CKA_SUBJECT, Bytes(vec![1])),
                a(CKA_VALUE, Bytes(vec![1])),
            ],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_AES)),
                a(CKA_VALUE, Bytes(vec![1; 16])),
                a(CKA_END_DATE, Bytes(b"2024".to_vec())),
            ],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        // Derived attributes cannot be given.
        (
            {
                let mut t = aes_key(false, &[1; 16]);
                t.push(a(CKA_LOCAL, Bool(true)));
                t
            },
            CKR_ATTRIBUTE_READ_ONLY,
        ),
        (
            {
                let mut t = aes_key(false, &[1; 16]);
                t.push(a(CKA_VALUE_LEN, Ulong(16)));
                t
            },
            CKR_ATTRIBUTE_READ_ONLY,
        ),
        (
            {
                let mut t = data_object(false, false, b"x");
                t.push(a(CKA_UNIQUE_ID, Bytes(b"mine".to_vec())));
                t
            },
            CKR_ATTRIBUTE_READ_ONLY,
        ),
        // Only the SO may make a certificate trusted.
        (
            {
                let mut t = certificate();
                t.push(a(CKA_TRUSTED, Bool(true)));
                t
            },
            CKR_ATTRIBUTE_READ_ONLY,
        ),
        // Attributes the class does not have.
        (
            {
                let mut t = data_object(false, false, b"x");
                t.push(a(CKA_MODULUS, Bytes(vec![1])));
                t
            },
            CKR_ATTRIBUTE_TYPE_INVALID,
        ),
        (
            {
                let mut t = aes_key(false, &[1; 16]);
                t.push(a(CKA_EC_POINT, Bytes(vec![1])));
                t
            },
            CKR_ATTRIBUTE_TYPE_INVALID,
        ),
    ];
    for (i, (template, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            create(s, &c, h, template).unwrap_err(),
            err(expected),
            "case {i}"
        );
    }
    assert!(find(s, &c, h, vec![]).is_empty(), "nothing was made");
}

#[test]
fn attribute_rules_on_change() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);
    let set = |object, template| {
        f.ask(
            &c,
            Request::SetAttributeValue {
                session: h,
                object,
                template,
            },
        )
    };

    let mut t = aes_key(true, &[9; 16]);
    t[3] = a(CKA_SENSITIVE, Bool(false));
    t.push(a(CKA_EXTRACTABLE, Bool(true)));
    let key = create(s, &c, h, t).unwrap();
    // One-way attributes.
    assert_eq!(set(key, vec![a(CKA_SENSITIVE, Bool(true))]), ok());
    assert_eq!(
        set(key, vec![a(CKA_SENSITIVE, Bool(false))]),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    assert_eq!(set(key, vec![a(CKA_EXTRACTABLE, Bool(false))]), ok());
    assert_eq!(
        set(key, vec![a(CKA_EXTRACTABLE, Bool(true))]),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    assert_eq!(set(key, vec![a(CKA_WRAP_WITH_TRUSTED, Bool(true))]), ok());
    assert_eq!(
        set(key, vec![a(CKA_WRAP_WITH_TRUSTED, Bool(false))]),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    // Derived and fixed attributes.
    for attr in [
        a(CKA_ALWAYS_SENSITIVE, Bool(true)),
        a(CKA_NEVER_EXTRACTABLE, Bool(true)),
        a(CKA_LOCAL, Bool(true)),
        a(CKA_UNIQUE_ID, Bytes(b"x".to_vec())),
        a(CKA_VALUE, Bytes(vec![1; 16])),
        a(CKA_CLASS, Ulong(CKO_DATA)),
        a(CKA_PRIVATE, Bool(false)),
    ] {
        assert_eq!(
            set(key, vec![attr.clone()]),
            err(CKR_ATTRIBUTE_READ_ONLY),
            "{attr:?}"
        );
    }
    assert_eq!(
        set(key, vec![a(CKA_MODULUS, Bytes(vec![1]))]),
        err(CKR_ATTRIBUTE_TYPE_INVALID)
    );
    assert_eq!(
        set(key, vec![a(CKA_LABEL, Ulong(1))]),
        err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    // Only the SO sets CKA_TRUSTED.
    assert_eq!(
        set(key, vec![a(CKA_TRUSTED, Bool(true))]),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    // All or nothing.
    assert_eq!(
        set(
            key,
            vec![
                a(CKA_LABEL, Bytes(b"new".to_vec())),
                a(CKA_LOCAL, Bool(true))
            ]
        ),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    assert_eq!(
        get(s, &c, h, key, &[CKA_LABEL]).unwrap()[0],
        AttributeResult::Value(Bytes(b"aes".to_vec()))
    );
    assert_eq!(set(key, vec![a(CKA_LABEL, Bytes(b"new".to_vec()))]), ok());

    // MODIFIABLE / COPYABLE / DESTROYABLE.
    let mut t = data_object(true, false, b"fixed");
    t.extend([
        a(CKA_MODIFIABLE, Bool(false)),
        a(CKA_COPYABLE, Bool(false)),
        a(CKA_DESTROYABLE, Bool(false)),
    ]);
    let fixed = create(s, &c, h, t).unwrap();
    assert_eq!(
        set(fixed, vec![a(CKA_LABEL, Bytes(b"x".to_vec()))]),
        err(CKR_ACTION_PROHIBITED)
    );
    assert_eq!(
        f.ask(
            &c,
            Request::CopyObject {
                session: h,
                object: fixed,
                template: vec![]
            }
        ),
        err(CKR_ACTION_PROHIBITED)
    );
    assert_eq!(
        f.ask(
            &c,
            Request::DestroyObject {
                session: h,
                object: fixed
            }
        ),
        err(CKR_ACTION_PROHIBITED)
    );

    // Copy: may change token/private, not derived ones.
    let data = create(s, &c, h, data_object(false, false, b"copy me")).unwrap();
    let r = f.ask(
        &c,
        Request::CopyObject {
            session: h,
            object: data,
            template: vec![a(CKA_TOKEN, Bool(true)), a(CKA_PRIVATE, Bool(true))],
        },
    );
    let ResponseBody::Object(copy) = r.body else {
        panic!("{r:?}")
    };
    assert_ne!(copy, data);
    let r = get(
        s,
        &c,
        h,
        copy,
        &[CKA_TOKEN, CKA_PRIVATE, CKA_VALUE, CKA_UNIQUE_ID],
    )
    .unwrap();
    assert_eq!(
        r[..3],
        [
            AttributeResult::Value(Bool(true)),
            AttributeResult::Value(Bool(true)),
            AttributeResult::Value(Bytes(b"copy me".to_vec()))
        ]
    );
    assert_ne!(r[3], get(s, &c, h, data, &[CKA_UNIQUE_ID]).unwrap()[0]);
    assert_eq!(
        f.ask(
            &c,
            Request::CopyObject {
                session: h,
                object: data,
                template: vec![a(CKA_UNIQUE_ID, Bytes(b"x".to_vec()))]
            }
        ),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    // Token objects need a read/write session to change.
    let ro = open(s, &c, 0, false).unwrap();
    assert_eq!(
        f.ask(
            &c,
            Request::DestroyObject {
                session: ro,
                object: copy
            }
        ),
        err(CKR_SESSION_READ_ONLY)
    );
    assert_eq!(
        create(s, &c, ro, data_object(true, false, b"x")).unwrap_err(),
        err(CKR_SESSION_READ_ONLY)
    );
    assert!(
        create(s, &c, ro, data_object(false, false, b"x")).is_ok(),
        "session objects are fine"
    );
    assert_eq!(
        f.ask(
            &c,
            Request::DestroyObject {
                session: h,
                object: copy
            }
        ),
        ok()
    );
    assert_eq!(
        f.ask(
            &c,
            Request::DestroyObject {
                session: h,
                object: copy
            }
        ),
        err(CKR_OBJECT_HANDLE_INVALID)
    );

    // The SO may trust a certificate.
    assert_eq!(
        f.ask(&c, Request::CloseAllSessions { slot: SlotId(0) }),
        ok()
    );
    let so = open(s, &c, 0, true).unwrap();
    assert_eq!(login(s, &c, so, CKU_SO, SO_PIN), ok());
    let mut t = certificate();
    t.push(a(CKA_TRUSTED, Bool(true)));
    assert!(create(s, &c, so, t).is_ok());
}

#[test]
fn private_objects_are_invisible_until_login_and_find_works() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);
    let private = create(s, &c, h, data_object(true, true, b"private")).unwrap();
    let public = create(s, &c, h, data_object(true, false, b"public")).unwrap();
    let key = create(s, &c, h, aes_key(true, &[1; 16])).unwrap();
    let mut found = find(s, &c, h, vec![]);
    found.sort();
    assert_eq!(found.len(), 3);
    assert_eq!(find(s, &c, h, vec![a(CKA_CLASS, Ulong(CKO_DATA))]).len(), 2);
    assert_eq!(
        find(s, &c, h, vec![a(CKA_VALUE, Bytes(b"public".to_vec()))]),
        vec![public]
    );
    // Secret values cannot be searched for.
    assert!(find(s, &c, h, vec![a(CKA_VALUE, Bytes(vec![1; 16]))]).is_empty());
    // FindObjects hands out max_count at a time.
    assert_eq!(
        f.ask(
            &c,
            Request::FindObjectsInit {
                session: h,
                template: vec![]
            }
        ),
        ok()
    );
    assert_eq!(
        f.ask(
            &c,
            Request::FindObjectsInit {
                session: h,
                template: vec![]
            }
        ),
        err(CKR_OPERATION_ACTIVE)
    );
    let mut all = Vec::new();
    loop {
        let r = f.ask(
            &c,
            Request::FindObjects {
                session: h,
                max_count: 2,
            },
        );
        let ResponseBody::Objects(o) = r.body else {
            panic!("{r:?}")
        };
        assert!(o.len() <= 2);
        if o.is_empty() {
            break;
        }
        all.extend(o);
    }
    assert_eq!(all.len(), 3);
    assert_eq!(f.ask(&c, Request::FindObjectsFinal { session: h }), ok());
    assert_eq!(
        f.ask(
            &c,
            Request::FindObjects {
                session: h,
                max_count: 2
            }
        ),
        err(CKR_OPERATION_NOT_INITIALIZED)
    );

    assert_eq!(logout(s, &c, h), ok());
    assert_eq!(find(s, &c, h, vec![]), vec![public]);
    assert_eq!(
        get(s, &c, h, private, &[CKA_LABEL]).unwrap_err(),
        err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(
        get(s, &c, h, key, &[CKA_LABEL]).unwrap_err(),
        err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(
        create(s, &c, h, data_object(false, true, b"x")).unwrap_err(),
        err(CKR_USER_NOT_LOGGED_IN)
    );
    // The SO does not see private objects either.
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    assert_eq!(find(s, &c, h, vec![]), vec![public]);
}

#[test]
fn session_objects_belong_to_their_session_and_application() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = open(s, &c, 0, true).unwrap();
    let h_b = open(s, &c, 0, false).unwrap();
    let obj = create(s, &c, h, data_object(false, false, b"mine")).unwrap();
    // Visible in the application's other sessions.
    assert_eq!(find(s, &c, h_b, vec![]), vec![obj]);
    // Not in another application's.
    let other = ctx("demo", 2);
    let h2 = open(s, &other, 0, true).unwrap();
    assert!(find(s, &other, h2, vec![]).is_empty());
    assert_eq!(
        get(s, &other, h2, obj, &[CKA_VALUE]).unwrap_err(),
        err(CKR_OBJECT_HANDLE_INVALID)
    );
    // Gone with its session.
    assert_eq!(f.ask(&c, Request::CloseSession { session: h }), ok());
    assert!(find(s, &c, h_b, vec![]).is_empty());
}

#[test]
fn tenants_cannot_reach_each_others_objects() {
    let f = Fixture::new();
    let s = &f.state;
    let demo = ctx("demo", 1);
    // Same application instance id, another tenant.
    let acme = ctx("acme", 1);
    ready_token(s, &demo, 0);
    ready_token(s, &acme, 0);
    ready_token(s, &acme, 7);
    let hd = user_session(s, &demo, 0);
    let secret = create(s, &demo, hd, data_object(true, true, b"demo's secret")).unwrap();
    let public = create(s, &demo, hd, data_object(true, false, b"demo's public")).unwrap();
    let session_obj = create(s, &demo, hd, data_object(false, false, b"demo's session")).unwrap();

    let ha0 = user_session(s, &acme, 0);
    let ha7 = user_session(s, &acme, 7);
    // acme's handles count on their own: they may take the same values.
    let acme_obj = create(s, &acme, ha0, data_object(true, false, b"acme")).unwrap();
    assert_eq!(acme_obj.0, 1, "per-tenant counter");
    for h in [ha0, ha7] {
        let mine: Vec<_> = find(s, &acme, h, vec![]);
        assert!(
            !mine.contains(&secret) || mine == vec![acme_obj],
            "{mine:?}"
        );
        for object in [
            secret,
            public,
            session_obj,
            ObjectHandle(0),
            ObjectHandle(u64::MAX),
        ] {
            if object == acme_obj && h == ha0 {
                continue;
            }
            assert_eq!(
                get(s, &acme, h, object, &[CKA_VALUE]).unwrap_err(),
                err(CKR_OBJECT_HANDLE_INVALID),
                "{object:?}"
            );
            assert_eq!(
                f.ask(
                    &acme,
                    Request::SetAttributeValue {
                        session: h,
                        object,
                        template: vec![a(CKA_LABEL, Bytes(b"pwned".to_vec()))]
                    }
                ),
                err(CKR_OBJECT_HANDLE_INVALID)
            );
            assert_eq!(
                f.ask(&acme, Request::DestroyObject { session: h, object }),
                err(CKR_OBJECT_HANDLE_INVALID)
            );
            assert_eq!(
                f.ask(
                    &acme,
                    Request::CopyObject {
                        session: h,
                        object,
                        template: vec![]
                    }
                ),
                err(CKR_OBJECT_HANDLE_INVALID)
            );
        }
    }
    // Objects of one tenant with the values the other sees: acme's object 1
    // is acme's, whatever demo has at 1.
    assert_eq!(
        get(s, &acme, ha0, acme_obj, &[CKA_VALUE]).unwrap()[0],
        AttributeResult::Value(Bytes(b"acme".to_vec()))
    );
    // demo's session handles are not acme's: acme has session 1 too, on its own slot.
    assert_eq!(
        f.ask(
            &acme,
            Request::GetSessionInfo {
                session: SessionHandle(99)
            }
        ),
        err(CKR_SESSION_HANDLE_INVALID)
    );
    // Slots of the other tenant do not exist.
    assert_eq!(
        open(s, &demo, 7, true).unwrap_err(),
        err(CKR_SLOT_ID_INVALID)
    );
    assert_eq!(
        open(s, &acme, 3, true).unwrap_err(),
        err(CKR_SLOT_ID_INVALID)
    );
    // demo's objects are intact.
    assert_eq!(
        get(s, &demo, hd, secret, &[CKA_VALUE, CKA_LABEL]).unwrap()[1],
        AttributeResult::Value(Bytes(b"data".to_vec()))
    );
    assert_eq!(find(s, &demo, hd, vec![]).len(), 3);
}

#[test]
fn a_restart_brings_back_token_objects_with_their_handles() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    ready_token(s, &c, 3); // SM4-GCM partition
    let h0 = user_session(s, &c, 0);
    let h3 = user_session(s, &c, 3);
    let key = create(s, &c, h0, aes_key(true, &[5; 32])).unwrap();
    let private = create(s, &c, h3, data_object(true, true, b"gm/t private")).unwrap();
    let session_obj = create(s, &c, h0, data_object(false, false, b"session")).unwrap();
    let label_before = token_info(s, &c, 0).label;

    let s2 = f.reopen();
    let t = token_info(&s2, &c, 0);
    assert_eq!(t.label, label_before);
    assert_ne!(t.flags & CKF_USER_PIN_INITIALIZED, 0);
    let h0 = user_session(&s2, &c, 0);
    let h3 = user_session(&s2, &c, 3);
    assert_eq!(find(&s2, &c, h0, vec![]), vec![key]);
    assert_eq!(find(&s2, &c, h3, vec![]), vec![private]);
    assert_eq!(
        get(&s2, &c, h3, private, &[CKA_VALUE]).unwrap()[0],
        AttributeResult::Value(Bytes(b"gm/t private".to_vec()))
    );
    assert_eq!(
        get(&s2, &c, h0, key, &[CKA_VALUE_LEN]).unwrap()[0],
        AttributeResult::Value(Ulong(32))
    );
    assert_eq!(
        get(&s2, &c, h0, session_obj, &[CKA_VALUE]).unwrap_err(),
        err(CKR_OBJECT_HANDLE_INVALID)
    );
    // New handles never repeat old ones.
    let new = create(&s2, &c, h0, data_object(false, false, b"new")).unwrap();
    assert!(new.0 > session_obj.0 && new != key && new != private);
    // The PIN failure counters survive too.
    assert_eq!(logout(&s2, &c, h0), ok());
    assert_eq!(
        login(&s2, &c, h0, CKU_USER, b"wrong-pin!"),
        err(CKR_PIN_INCORRECT)
    );
    let s3 = f.reopen();
    assert_ne!(token_info(&s3, &c, 0).flags & CKF_USER_PIN_COUNT_LOW, 0);
    // A wrong root key cannot open the partitions.
    let wrong = crate::soft::keys::RootKey::generate().unwrap();
    let store: std::sync::Arc<dyn crate::store::Store> =
        std::sync::Arc::new(crate::store::SqliteStore::open(&f.db()).unwrap());
    let r = crate::dispatch::ServerState::with_store(
        crate::registry::Registry::from_config(&f.config.tenants),
        store,
        Some(wrong),
        POLICY,
        std::time::Duration::from_secs(1),
    );
    assert!(r.is_err());
    let _ = handle;
}

#[test]
fn usage_attributes_are_sticky() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    ready_token(s, &c, 0);
    let h = user_session(s, &c, 0);
    let mut template = aes_key(false, &[7u8; 16]);
    template.push(a(CKA_WRAP, Bool(true)));
    template.push(a(CKA_DECRYPT, Bool(false)));
    let key = create(s, &c, h, template).unwrap();
    let set = |attr, on| {
        f.ask(
            &c,
            Request::SetAttributeValue {
                session: h,
                object: key,
                template: vec![a(attr, Bool(on))],
            },
        )
    };
    assert_eq!(set(CKA_DECRYPT, true), err(CKR_ATTRIBUTE_READ_ONLY));
    assert_eq!(set(CKA_WRAP, true), ok(), "already on: no change");
    assert_eq!(set(CKA_WRAP, false), ok());
    assert_eq!(set(CKA_WRAP, true), err(CKR_ATTRIBUTE_READ_ONLY));
    assert_eq!(
        f.ask(
            &c,
            Request::CopyObject {
                session: h,
                object: key,
                template: vec![a(CKA_DECRYPT, Bool(true))],
            },
        ),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
}
