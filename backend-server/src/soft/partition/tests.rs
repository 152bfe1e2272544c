//! The soft driver and the store together: what reaches the disk.

use std::path::Path;
use std::sync::Arc;

use cryptoki_sys::{CKK_AES, CKO_DATA, CKO_SECRET_KEY};
use hsmlink_protocol::attribute_kind::*;
use hsmlink_protocol::{AttributeType, AttributeValue, ObjectHandle, Secret};

use super::*;
use crate::store::SqliteStore;
use crate::testing::{POLICY, a};

const KEY_VALUE: [u8; 32] = *b"K3y-m4t3r14l-0f-3xactly-32-bytes";
const PRIVATE_VALUE: &[u8] = b"the private data object's value, in clear nowhere";
const SO_PIN: &[u8] = b"so-pin-never-on-disk";
const USER_PIN: &[u8] = b"user-pin-never-on-disk";

fn user() -> ObjectContext {
    ObjectContext {
        app: OwnerId(1),
        session: OwnerId(2),
        rw: true,
        login: Some(UserKind::User),
        pin_expired: false,
    }
}

fn open(db: &Path, root: &RootKey, name: &str) -> SoftPartition {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    SoftPartition::open(name, Algorithms::International, root.clone(), store, POLICY).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Imports a key and a private data object, then scans hsmlink.db and its
/// WAL: neither the key, the private value nor a PIN is there in clear.
#[test]
fn the_database_holds_no_secret_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsmlink.db");
    let root = RootKey::generate().unwrap();
    let p = open(&db, &root, "demo-p0");
    p.init_token(&Secret::from_slice(SO_PIN), "label").unwrap();
    p.init_pin(&Secret::from_slice(USER_PIN)).unwrap();
    p.set_pin(
        UserKind::User,
        &Secret::from_slice(USER_PIN),
        &Secret::from_slice(USER_PIN),
    )
    .unwrap();
    let key = [
        a(CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
        a(CKA_KEY_TYPE, AttributeValue::Ulong(CKK_AES)),
        a(CKA_TOKEN, AttributeValue::Bool(true)),
        // Not private and not sensitive: still sealed, being key material.
        a(CKA_PRIVATE, AttributeValue::Bool(false)),
        a(CKA_SENSITIVE, AttributeValue::Bool(false)),
        a(CKA_EXTRACTABLE, AttributeValue::Bool(true)),
        a(CKA_LABEL, AttributeValue::Bytes(b"public-label".to_vec())),
        a(CKA_VALUE, AttributeValue::Bytes(KEY_VALUE.to_vec())),
    ];
    p.create_object(&user(), ObjectHandle(1), &key).unwrap();
    let data = [
        a(CKA_CLASS, AttributeValue::Ulong(CKO_DATA)),
        a(CKA_TOKEN, AttributeValue::Bool(true)),
        a(CKA_PRIVATE, AttributeValue::Bool(true)),
        a(CKA_LABEL, AttributeValue::Bytes(b"private-label".to_vec())),
        a(CKA_VALUE, AttributeValue::Bytes(PRIVATE_VALUE.to_vec())),
    ];
    p.create_object(&user(), ObjectHandle(2), &data).unwrap();

    let mut scanned = 0;
    for name in ["hsmlink.db", "hsmlink.db-wal"] {
        let Ok(bytes) = std::fs::read(dir.path().join(name)) else {
            continue;
        };
        scanned += bytes.len();
        // The scan works: a public label is there.
        for secret in [
            &KEY_VALUE[..],
            PRIVATE_VALUE,
            b"private-label",
            SO_PIN,
            USER_PIN,
        ] {
            assert!(
                !contains(&bytes, secret),
                "{name} holds {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
    let all: Vec<u8> = ["hsmlink.db", "hsmlink.db-wal"]
        .iter()
        .filter_map(|n| std::fs::read(dir.path().join(n)).ok())
        .flatten()
        .collect();
    assert!(
        contains(&all, b"public-label"),
        "the scan sees clear attributes"
    );
    assert!(scanned > 0);

    // And it all comes back.
    drop(p);
    let p = open(&db, &root, "demo-p0");
    let r = p
        .get_attributes(&user(), ObjectHandle(1), &[AttributeType(CKA_VALUE)])
        .unwrap();
    assert_eq!(
        r[0],
        AttributeResult::Value(AttributeValue::Bytes(KEY_VALUE.to_vec()))
    );
    p.verify_pin(UserKind::User, &Secret::from_slice(USER_PIN))
        .unwrap();
}

/// A sealed record copied to another partition, or to another object id of
/// the same partition, does not decrypt.
#[test]
fn a_copied_record_does_not_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsmlink.db");
    let root = RootKey::generate().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let p0 = SoftPartition::open(
        "p0",
        Algorithms::International,
        root.clone(),
        store.clone(),
        POLICY,
    )
    .unwrap();
    let p1 = SoftPartition::open(
        "p1",
        Algorithms::International,
        root.clone(),
        store.clone(),
        POLICY,
    )
    .unwrap();
    p0.init_token(&Secret::from_slice(SO_PIN), "").unwrap();
    let data = [
        a(CKA_CLASS, AttributeValue::Ulong(CKO_DATA)),
        a(CKA_TOKEN, AttributeValue::Bool(true)),
        a(CKA_PRIVATE, AttributeValue::Bool(true)),
        a(CKA_VALUE, AttributeValue::Bytes(PRIVATE_VALUE.to_vec())),
    ];
    p0.create_object(&user(), ObjectHandle(5), &data).unwrap();
    drop((p0, p1));
    let original = store.objects("p0").unwrap().remove(0);

    // Into another partition (same root key, its own master key).
    let moved = ObjectRecord {
        partition: "p1".to_owned(),
        ..original.clone()
    };
    store.put_object(&moved).unwrap();
    let err = SoftPartition::open(
        "p1",
        Algorithms::International,
        root.clone(),
        store.clone(),
        POLICY,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    store.delete_object("p1", &moved.object_id).unwrap();

    // Under another object id of the same partition.
    store.delete_object("p0", &original.object_id).unwrap();
    let renamed = ObjectRecord {
        object_id: "00000000000000000000000000000000".to_owned(),
        ..original.clone()
    };
    store.put_object(&renamed).unwrap();
    assert!(
        SoftPartition::open(
            "p0",
            Algorithms::International,
            root.clone(),
            store.clone(),
            POLICY
        )
        .is_err()
    );

    // Back in place it opens.
    store.delete_object("p0", &renamed.object_id).unwrap();
    store.put_object(&original).unwrap();
    let p0 = SoftPartition::open(
        "p0",
        Algorithms::International,
        root.clone(),
        store.clone(),
        POLICY,
    )
    .unwrap();
    assert_eq!(
        p0.find_objects(&user(), &[]).unwrap(),
        vec![ObjectHandle(5)]
    );

    // The partition's algorithms are fixed at allocation.
    assert!(SoftPartition::open("p0", Algorithms::Gmt, root, store, POLICY).is_err());
}
