//! The audit log in-process: records of real calls through the dispatcher,
//! tampering found by `verify`, pruning, login expiry.

use std::sync::Arc;
use std::time::Duration;

use cryptoki_sys::{
    CKA_CLASS, CKA_EC_PARAMS, CKA_KEY_TYPE, CKA_PRIVATE, CKA_SIGN, CKA_TOKEN, CKK_EC,
    CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKR_PIN_INCORRECT,
    CKR_USER_NOT_LOGGED_IN, CKU_USER,
};
use hsmlink_protocol::{
    AttributeValue, Mechanism, MechanismParams, ObjectHandle, OutputSpec, Request, ResponseBody,
    Secret, SessionHandle, UserType,
};
use rusqlite::{Connection, params};

use super::reader::{self, Filter};
use super::{Audit, AuditSettings, Record};
use crate::metering::Metering;
use crate::sessions::{LoginLimits, Sessions};
use crate::testing::{Fixture, a, ctx, pin, ready_token, user_session};

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn settings(f: &Fixture) -> AuditSettings {
    let mut s = AuditSettings::new(&f.db());
    s.sign_every_records = 5;
    s
}

fn audited(settings: AuditSettings) -> Fixture {
    let mut f = Fixture::new();
    let metering = Arc::new(Metering::new(Some(f.db())));
    let s = AuditSettings {
        db_path: f.db(),
        key_file: f.dir.path().join("audit.key"),
        ..settings
    };
    f.state
        .set_audit(Arc::new(Audit::start(s, metering).unwrap()));
    f
}

fn records(f: &Fixture) -> Vec<Record> {
    f.state.audit().unwrap().sync().unwrap();
    reader::query(&f.db(), &Filter::default(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.record)
        .collect()
}

fn verify(f: &Fixture) -> reader::VerifyReport {
    let public = f.state.audit().unwrap().public_key();
    reader::verify(&f.db(), Some(public), None).unwrap()
}

fn ec_pair(
    f: &Fixture,
    c: &crate::ClientContext,
    s: SessionHandle,
) -> (ObjectHandle, ObjectHandle) {
    let r = f.ask(
        c,
        Request::GenerateKeyPair {
            session: s,
            mechanism: Mechanism::new(CKM_EC_KEY_PAIR_GEN, MechanismParams::None),
            public_template: vec![
                a(CKA_CLASS, AttributeValue::Ulong(CKO_PUBLIC_KEY)),
                a(CKA_KEY_TYPE, AttributeValue::Ulong(CKK_EC)),
                a(CKA_EC_PARAMS, AttributeValue::Bytes(P256.to_vec())),
                a(CKA_TOKEN, AttributeValue::Bool(true)),
            ],
            private_template: vec![
                a(CKA_CLASS, AttributeValue::Ulong(CKO_PRIVATE_KEY)),
                a(CKA_KEY_TYPE, AttributeValue::Ulong(CKK_EC)),
                a(CKA_SIGN, AttributeValue::Bool(true)),
                a(CKA_PRIVATE, AttributeValue::Bool(true)),
                a(CKA_TOKEN, AttributeValue::Bool(true)),
            ],
        },
    );
    match r.body {
        ResponseBody::KeyPair { public, private } => (public, private),
        other => panic!("{:?} {other:?}", r.rv),
    }
}

fn sign(f: &Fixture, c: &crate::ClientContext, s: SessionHandle, key: ObjectHandle) -> u64 {
    let init = f.ask(
        c,
        Request::SignInit {
            session: s,
            mechanism: Mechanism::new(CKM_ECDSA, MechanismParams::None),
            key,
        },
    );
    if init.rv.0 != 0 {
        return init.rv.0;
    }
    // A length query (not audited), then the signature.
    let _ = f.ask(
        c,
        Request::Sign {
            session: s,
            data: Secret::from_slice(&[7; 32]),
            out: OutputSpec::LengthQuery,
        },
    );
    f.ask(
        c,
        Request::Sign {
            session: s,
            data: Secret::from_slice(&[7; 32]),
            out: OutputSpec::Capacity(64),
        },
    )
    .rv
    .0
}

#[test]
fn a_signature_is_recorded_without_secrets_and_the_chain_verifies() {
    let f = audited(AuditSettings::new(std::path::Path::new("x")));
    let c = ctx("demo", 1);
    ready_token(&f.state, &c, 0);
    let s = user_session(&f.state, &c, 0);
    let (_, private) = ec_pair(&f, &c, s);
    assert_eq!(sign(&f, &c, s, private), 0);
    // A wrong PIN on another application.
    let c2 = ctx("demo", 2);
    let s2 = crate::testing::open(&f.state, &c2, 0, true).unwrap();
    let r = f.ask(
        &c2,
        Request::Login {
            session: s2,
            user_type: UserType(CKU_USER),
            pin: pin(b"wrong-pin-123"),
        },
    );
    assert_eq!(r.rv.0, CKR_PIN_INCORRECT);

    let all = records(&f);
    let signs: Vec<&Record> = all.iter().filter(|r| r.op == "C_Sign").collect();
    assert_eq!(signs.len(), 1, "the length query is not recorded: {all:#?}");
    let r = signs[0];
    assert_eq!(r.tenant.as_deref(), Some("demo"));
    assert_eq!(r.key, Some(private.0));
    assert_eq!(r.mechanism, Some(CKM_ECDSA));
    assert_eq!(r.mechanism_name.as_deref(), Some("CKM_ECDSA"));
    assert_eq!(r.rv_name, "CKR_OK");
    assert_eq!(r.source.as_deref(), Some("127.0.0.1:40000"));
    assert_eq!(r.partition.as_deref(), Some("demo-p0"));
    assert_eq!(r.slot, Some(0));
    assert!(r.cert.as_deref().is_some_and(|c| c.starts_with("sha256:")));
    // A successful C_SignInit is part of the C_Sign record; a refused one
    // has its own.
    assert!(!all.iter().any(|r| r.op == "C_SignInit"));
    let r = f.ask(
        &c2,
        Request::SignInit {
            session: s2,
            mechanism: Mechanism::new(CKM_ECDSA, MechanismParams::None),
            key: private,
        },
    );
    assert_eq!(r.rv.0, CKR_USER_NOT_LOGGED_IN);
    let all = records(&f);
    let init = all.iter().find(|r| r.op == "C_SignInit").unwrap();
    assert_eq!(
        (init.key, init.rv),
        (Some(private.0), CKR_USER_NOT_LOGGED_IN)
    );
    assert!(
        all.iter()
            .any(|r| r.op == "C_GenerateKeyPair" && r.objects.len() == 2)
    );
    let failed = all
        .iter()
        .find(|r| r.op == "C_Login" && r.rv == CKR_PIN_INCORRECT)
        .expect("the failed login is recorded");
    assert_eq!(failed.detail.as_deref(), Some("CKU_USER"));
    assert_eq!(failed.rv_name, "CKR_PIN_INCORRECT");
    // No PIN anywhere in the log.
    let db = std::fs::read(f.db()).unwrap();
    let wal = std::fs::read(f.db().with_extension("db-wal")).unwrap_or_default();
    for secret in [
        &b"wrong-pin-123"[..],
        b"temporary",
        crate::testing::USER_PIN,
        crate::testing::SO_PIN,
    ] {
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
    }
    let report = verify(&f);
    assert!(report.ok(), "{report:#?}");
    assert!(report.chains[0].heads >= 1);
    // Metering counted the signature.
    let rows = f
        .state
        .metering()
        .report(Some("demo"), 0, i64::MAX)
        .unwrap();
    let row = rows.iter().find(|r| r.operation == "C_Sign").unwrap();
    assert_eq!((row.count, row.bytes_in, row.bytes_out), (1, 32, 64));
}

fn filled() -> Fixture {
    let f = audited(AuditSettings::new(std::path::Path::new("x")));
    let c = ctx("demo", 1);
    ready_token(&f.state, &c, 0);
    let s = user_session(&f.state, &c, 0);
    let (_, private) = ec_pair(&f, &c, s);
    for _ in 0..4 {
        assert_eq!(sign(&f, &c, s, private), 0);
    }
    assert!(records(&f).len() >= 10);
    assert!(verify(&f).ok());
    f
}

fn problem_seqs(f: &Fixture) -> Vec<Option<u64>> {
    verify(f).problems().map(|p| p.seq).collect()
}

#[test]
fn a_changed_record_is_found_by_its_number() {
    let f = filled();
    let conn = Connection::open(f.db()).unwrap();
    // Change the result of record 7 in its body.
    let body: String = conn
        .query_row(
            "SELECT body FROM audit_records WHERE chain = 'demo' AND seq = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let changed = body.replace("\"duration_us\":", "\"duration_us\":1");
    assert_ne!(body, changed);
    conn.execute(
        "UPDATE audit_records SET body = ?1 WHERE chain = 'demo' AND seq = 7",
        params![changed],
    )
    .unwrap();
    assert_eq!(problem_seqs(&f).first(), Some(&Some(7)));
    // Rehashing it too does not help: record 8 links to the old hash.
    let hash = super::record::sha256(changed.as_bytes()).to_vec();
    conn.execute(
        "UPDATE audit_records SET hash = ?1 WHERE chain = 'demo' AND seq = 7",
        params![hash],
    )
    .unwrap();
    let report = verify(&f);
    assert!(!report.ok());
    assert_eq!(
        report.problems().next().unwrap().seq,
        Some(7),
        "{report:#?}"
    );
}

#[test]
fn a_changed_index_column_is_found() {
    let f = filled();
    let conn = Connection::open(f.db()).unwrap();
    conn.execute(
        "UPDATE audit_records SET key_handle = 999 WHERE chain = 'demo' AND seq = 6",
        [],
    )
    .unwrap();
    assert_eq!(problem_seqs(&f), vec![Some(6)]);
}

#[test]
fn a_deleted_record_is_found_by_its_number() {
    let f = filled();
    let conn = Connection::open(f.db()).unwrap();
    conn.execute(
        "DELETE FROM audit_records WHERE chain = 'demo' AND seq = 4",
        [],
    )
    .unwrap();
    assert_eq!(problem_seqs(&f).first(), Some(&Some(4)));
    // The first records, and the last ones.
    let f = filled();
    let conn = Connection::open(f.db()).unwrap();
    conn.execute(
        "DELETE FROM audit_records WHERE chain = 'demo' AND seq <= 2",
        [],
    )
    .unwrap();
    assert_eq!(problem_seqs(&f).first(), Some(&Some(1)));
    let f = filled();
    let last: i64 = Connection::open(f.db())
        .unwrap()
        .query_row("SELECT MAX(seq) FROM audit_records", [], |r| r.get(0))
        .unwrap();
    Connection::open(f.db())
        .unwrap()
        .execute("DELETE FROM audit_records WHERE seq = ?1", params![last])
        .unwrap();
    assert_eq!(problem_seqs(&f), vec![Some(last as u64)]);
}

#[test]
fn a_forged_head_signature_is_found() {
    let f = filled();
    let conn = Connection::open(f.db()).unwrap();
    conn.execute(
        "UPDATE audit_heads SET signature = zeroblob(64) WHERE seq = (SELECT MIN(seq) FROM audit_heads)",
        [],
    )
    .unwrap();
    assert!(!verify(&f).ok());
}

#[test]
fn pruning_leaves_a_chain_that_verifies() {
    let f = filled();
    let before = records(&f);
    let audit = f.state.audit().unwrap();
    audit.close();
    // Prune everything written so far, through a writer of our own.
    let key = super::key::AuditKey::load(&f.dir.path().join("audit.key")).unwrap();
    let mut s = settings(&f);
    s.key_file = f.dir.path().join("audit.key");
    let mut writer = super::writer::Writer::open(s, key, Arc::new(Metering::default())).unwrap();
    writer.prune_before(i64::MAX).unwrap();
    let after: Vec<Record> = reader::query(&f.db(), &Filter::default(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.record)
        .collect();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].op, "audit.pruned");
    assert_eq!(after[0].pruned_through, before.last().map(|r| r.seq));
    let report = verify(&f);
    assert!(report.ok(), "{report:#?}");
    // Deleting the pruned record makes the chain fail.
    Connection::open(f.db())
        .unwrap()
        .execute("DELETE FROM audit_records", [])
        .unwrap();
    assert!(!verify(&f).ok());
}

#[test]
fn export_filters_by_key_and_time() {
    let f = filled();
    let all = records(&f);
    let key = all.iter().find(|r| r.op == "C_Sign").unwrap().key.unwrap();
    let mut out = Vec::new();
    let filter = Filter {
        key: Some(key),
        ..Filter::default()
    };
    let n = reader::export(&f.db(), &filter, &mut out).unwrap();
    assert_eq!(n, 5, "4 signatures and the key pair generation");
    let text = String::from_utf8(out).unwrap();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let map = v.as_object_mut().unwrap();
        let hash = map.remove("hash").unwrap();
        map.remove("time").unwrap();
        let record: Record = serde_json::from_value(v).unwrap();
        assert_eq!(
            super::record::hex(&super::record::sha256(&record.canonical())),
            hash.as_str().unwrap()
        );
    }
    let filter = Filter {
        since_ms: Some(i64::MAX - 1),
        ..Filter::default()
    };
    assert_eq!(
        reader::export(&f.db(), &filter, &mut Vec::new()).unwrap(),
        0
    );
}

#[test]
fn records_survive_a_restart_and_the_chain_continues() {
    let f = filled();
    let n = records(&f).len();
    f.state.audit().unwrap().close();
    let metering = Arc::new(Metering::new(Some(f.db())));
    let mut s = settings(&f);
    s.key_file = f.dir.path().join("audit.key");
    let audit = Audit::start(s, metering).unwrap();
    audit
        .record(Record {
            chain: "demo".to_owned(),
            op: "test".to_owned(),
            ..Record::default()
        })
        .unwrap();
    audit.close();
    let all = reader::query(&f.db(), &Filter::default(), usize::MAX).unwrap();
    assert_eq!(all.len(), n + 1);
    assert_eq!(all.last().unwrap().record.seq, n as u64 + 1);
    assert!(verify(&f).ok());
    // Another key is refused: the log names its key.
    let mut s = settings(&f);
    s.key_file = f.dir.path().join("other.key");
    let err = Audit::start(s, Arc::new(Metering::default())).unwrap_err();
    assert!(
        err.to_string().contains("not the key of this audit log"),
        "{err}"
    );
}

#[test]
fn an_admin_action_goes_to_the_tenants_chain() {
    let f = audited(AuditSettings::new(std::path::Path::new("x")));
    let audit = f.state.audit().unwrap();
    audit
        .record_admin(&super::AdminAction {
            action: "partition.suspend",
            tenant: Some("demo"),
            partition: Some("demo-p0"),
            admin_subject: Some("CN=ops".to_owned()),
            source: Some("10.0.0.1:5000".parse().unwrap()),
            ..super::AdminAction::default()
        })
        .unwrap();
    audit
        .record_admin(&super::AdminAction {
            action: "tenant.create",
            error: Some("exists".to_owned()),
            ..super::AdminAction::default()
        })
        .unwrap();
    let all = records(&f);
    assert_eq!(all[0].chain, "@provider");
    assert_eq!(all[0].rv_name, "ERROR: exists");
    assert_eq!(all[1].chain, "demo");
    assert_eq!(all[1].op, "admin.partition.suspend");
    assert!(verify(&f).ok());
}

#[test]
fn an_expired_login_is_recorded_and_ends_operations() {
    let mut f = audited(AuditSettings::new(std::path::Path::new("x")));
    f.state.sessions = Sessions::with_limits(LoginLimits {
        idle: Duration::from_millis(300),
        lifetime: Duration::from_secs(60),
    });
    let c = ctx("demo", 1);
    ready_token(&f.state, &c, 0);
    let s = user_session(&f.state, &c, 0);
    let (_, private) = ec_pair(&f, &c, s);
    let r = f.ask(
        &c,
        Request::SignInit {
            session: s,
            mechanism: Mechanism::new(CKM_ECDSA, MechanismParams::None),
            key: private,
        },
    );
    assert_eq!(r.rv.0, 0);
    std::thread::sleep(Duration::from_millis(400));
    let r = f.ask(
        &c,
        Request::Sign {
            session: s,
            data: Secret::from_slice(&[7; 32]),
            out: OutputSpec::Capacity(64),
        },
    );
    assert_eq!(r.rv.0, CKR_USER_NOT_LOGGED_IN);
    assert_eq!(sign(&f, &c, s, private), CKR_USER_NOT_LOGGED_IN);
    let all = records(&f);
    let expired = all.iter().find(|r| r.op == "login.expired").unwrap();
    assert!(
        expired.detail.as_deref().unwrap().contains("idle"),
        "{expired:?}"
    );
    assert_eq!(expired.source.as_deref(), Some("127.0.0.1:40000"));
    // A new login works again.
    let r = crate::testing::login(&f.state, &c, s, CKU_USER, crate::testing::USER_PIN);
    assert_eq!(r.rv.0, 0);
    assert_eq!(sign(&f, &c, s, private), 0);
}

/// Calls on many threads commit each other's records (group commit on the
/// caller's thread); queued records keep their place; every record is in
/// its chain once and the chains verify. After `close`, records are
/// refused, not lost silently.
#[test]
fn concurrent_callers_share_commits_and_lose_nothing() {
    let f = audited(settings(&Fixture::new()));
    let audit = f.state.audit().unwrap().clone();
    const THREADS: usize = 8;
    const EACH: usize = 150;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let audit = audit.clone();
            scope.spawn(move || {
                for i in 0..EACH {
                    let record = Record {
                        chain: format!("chain-{}", t % 3),
                        op: format!("t{t}.{i}"),
                        ..Record::default()
                    };
                    if i % 10 == 0 {
                        audit.record_queued(record).unwrap();
                    } else {
                        audit.record(record).unwrap();
                    }
                }
            });
        }
    });
    let all = records(&f);
    assert_eq!(all.len(), THREADS * EACH);
    // Each thread's records are in its chain in the order it made them,
    // the queued ones included.
    for t in 0..THREADS {
        let chain = format!("chain-{}", t % 3);
        let seqs: Vec<(u64, usize)> = all
            .iter()
            .filter(|r| r.chain == chain && r.op.starts_with(&format!("t{t}.")))
            .map(|r| (r.seq, r.op[format!("t{t}.").len()..].parse().unwrap()))
            .collect();
        assert_eq!(seqs.len(), EACH);
        assert!(seqs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    }
    let report = verify(&f);
    assert!(report.ok(), "{report:#?}");

    audit.close();
    let refused = audit.record(Record {
        chain: "chain-0".to_owned(),
        op: "late".to_owned(),
        ..Record::default()
    });
    assert!(refused.unwrap_err().to_string().contains("stopped"));
    assert!(audit.record_queued(Record::default()).is_err());
}
