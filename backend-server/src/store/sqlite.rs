//! The SQLite store: one file, WAL, `synchronous=FULL` (a commit is on disk
//! before the reply that reports it), foreign keys on, `secure_delete` on
//! (freed pages are zeroed). Migrations are a numbered list run at open,
//! tracked with `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use super::{DeviceObjectRecord, ObjectRecord, PartitionRecord, Store, StoreError};

/// Schema versions, in order; entry N brings the schema to version N+1.
const MIGRATIONS: &[&str] = &[
    // 1: partitions of the soft driver, their token objects, handle reservations.
    "CREATE TABLE partitions (
        name TEXT PRIMARY KEY NOT NULL,
        algorithms TEXT NOT NULL,
        wrapped_master_key BLOB NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        initialized INTEGER NOT NULL DEFAULT 0,
        so_pin TEXT,
        user_pin TEXT,
        so_failures INTEGER NOT NULL DEFAULT 0,
        user_failures INTEGER NOT NULL DEFAULT 0,
        user_pin_to_be_changed INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE objects (
        partition TEXT NOT NULL REFERENCES partitions(name) ON DELETE CASCADE,
        object_id TEXT NOT NULL,
        handle INTEGER NOT NULL,
        public_attrs BLOB NOT NULL,
        sealed BLOB NOT NULL,
        PRIMARY KEY (partition, object_id),
        UNIQUE (partition, handle)
    ) STRICT;
    CREATE TABLE tenant_handles (
        tenant TEXT PRIMARY KEY NOT NULL,
        reserved_up_to INTEGER NOT NULL
    ) STRICT;",
    // 2: token objects of pkcs11 partitions: the tenant's handle and the
    // hsmlink id the object carries on the device.
    "CREATE TABLE device_objects (
        partition TEXT NOT NULL REFERENCES partitions(name) ON DELETE CASCADE,
        handle INTEGER NOT NULL,
        uid BLOB NOT NULL,
        PRIMARY KEY (partition, handle),
        UNIQUE (partition, uid)
    ) STRICT;",
    // 3: the audit log (hash-chained records per chain, signed chain heads,
    // the log's identity) and metering. Never touched by partition
    // termination: records name partitions, they do not reference them.
    // (IF NOT EXISTS: the number may move when migrations land in parallel.)
    "CREATE TABLE IF NOT EXISTS audit_meta (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS audit_records (
        chain TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        op TEXT NOT NULL,
        key_handle INTEGER,
        body TEXT NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (chain, seq)
    ) STRICT;
    CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts_ms);
    CREATE TABLE IF NOT EXISTS audit_heads (
        chain TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        ts_ms INTEGER NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (chain, seq)
    ) STRICT;
    CREATE TABLE IF NOT EXISTS metering (
        tenant TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        operation TEXT NOT NULL,
        mechanism INTEGER NOT NULL,
        count INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        PRIMARY KEY (tenant, hour_ms, operation, mechanism)
    ) STRICT;",
];

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn =
            Connection::open(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError(format!(
                "{}: schema version {version} is newer than this server's ({known})",
                path.display()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction
        // (rusqlite rolls back on drop): the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const PARTITION_COLUMNS: &str = "name, algorithms, wrapped_master_key, label, initialized, so_pin, \
     user_pin, so_failures, user_failures, user_pin_to_be_changed";

fn update_partition(conn: &Connection, r: &PartitionRecord) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE partitions SET wrapped_master_key = ?2, label = ?3, initialized = ?4, \
             so_pin = ?5, user_pin = ?6, so_failures = ?7, user_failures = ?8, \
             user_pin_to_be_changed = ?9 WHERE name = ?1",
            params![
                r.name,
                r.wrapped_master_key,
                r.label,
                r.initialized,
                r.so_pin,
                r.user_pin,
                r.so_failures,
                r.user_failures,
                r.user_pin_to_be_changed
            ],
        )
        .map_err(err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError(format!(
            "partition {} is not in the store",
            r.name
        )))
    }
}

impl Store for SqliteStore {
    fn partition(&self, name: &str) -> Result<Option<PartitionRecord>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {PARTITION_COLUMNS} FROM partitions WHERE name = ?1"),
                params![name],
                |row| {
                    Ok(PartitionRecord {
                        name: row.get(0)?,
                        algorithms: row.get(1)?,
                        wrapped_master_key: row.get(2)?,
                        label: row.get(3)?,
                        initialized: row.get(4)?,
                        so_pin: row.get(5)?,
                        user_pin: row.get(6)?,
                        so_failures: row.get(7)?,
                        user_failures: row.get(8)?,
                        user_pin_to_be_changed: row.get(9)?,
                    })
                },
            )
            .optional()
            .map_err(err)
    }

    fn insert_partition(&self, r: &PartitionRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO partitions ({PARTITION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    r.name,
                    r.algorithms,
                    r.wrapped_master_key,
                    r.label,
                    r.initialized,
                    r.so_pin,
                    r.user_pin,
                    r.so_failures,
                    r.user_failures,
                    r.user_pin_to_be_changed
                ],
            )
            .map_err(err)?;
        Ok(())
    }

    fn update_partition(&self, r: &PartitionRecord) -> Result<(), StoreError> {
        update_partition(&self.conn(), r)
    }

    fn reinitialize_partition(&self, r: &PartitionRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM objects WHERE partition = ?1", params![r.name])
            .map_err(err)?;
        tx.execute(
            "DELETE FROM device_objects WHERE partition = ?1",
            params![r.name],
        )
        .map_err(err)?;
        update_partition(&tx, r)?;
        tx.commit().map_err(err)
    }

    fn objects(&self, partition: &str) -> Result<Vec<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT object_id, handle, public_attrs, sealed FROM objects \
                 WHERE partition = ?1 ORDER BY handle",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![partition], |row| {
                Ok(ObjectRecord {
                    partition: partition.to_owned(),
                    object_id: row.get(0)?,
                    handle: row.get::<_, i64>(1)? as u64,
                    public_attrs: row.get(2)?,
                    sealed: row.get(3)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn put_object(&self, r: &ObjectRecord) -> Result<(), StoreError> {
        let handle = i64::try_from(r.handle)
            .map_err(|_| StoreError(format!("object handle {} out of range", r.handle)))?;
        self.conn()
            .execute(
                "INSERT INTO objects (partition, object_id, handle, public_attrs, sealed) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (partition, object_id) DO UPDATE SET \
                 handle = excluded.handle, public_attrs = excluded.public_attrs, \
                 sealed = excluded.sealed",
                params![r.partition, r.object_id, handle, r.public_attrs, r.sealed],
            )
            .map_err(err)?;
        Ok(())
    }

    fn delete_object(&self, partition: &str, object_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM objects WHERE partition = ?1 AND object_id = ?2",
                params![partition, object_id],
            )
            .map_err(err)?;
        Ok(())
    }

    fn device_objects(&self, partition: &str) -> Result<Vec<DeviceObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT handle, uid FROM device_objects WHERE partition = ?1 ORDER BY handle")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![partition], |row| {
                Ok(DeviceObjectRecord {
                    partition: partition.to_owned(),
                    handle: row.get::<_, i64>(0)? as u64,
                    uid: row.get(1)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn put_device_object(&self, r: &DeviceObjectRecord) -> Result<(), StoreError> {
        let handle = i64::try_from(r.handle)
            .map_err(|_| StoreError(format!("object handle {} out of range", r.handle)))?;
        self.conn()
            .execute(
                "INSERT INTO device_objects (partition, handle, uid) VALUES (?1, ?2, ?3)",
                params![r.partition, handle, r.uid],
            )
            .map_err(err)?;
        Ok(())
    }

    fn delete_device_object(&self, partition: &str, handle: u64) -> Result<(), StoreError> {
        let handle = i64::try_from(handle)
            .map_err(|_| StoreError(format!("object handle {handle} out of range")))?;
        self.conn()
            .execute(
                "DELETE FROM device_objects WHERE partition = ?1 AND handle = ?2",
                params![partition, handle],
            )
            .map_err(err)?;
        Ok(())
    }

    fn handle_reservation(&self, tenant: &str) -> Result<u64, StoreError> {
        let value: Option<i64> = self
            .conn()
            .query_row(
                "SELECT reserved_up_to FROM tenant_handles WHERE tenant = ?1",
                params![tenant],
                |row| row.get(0),
            )
            .optional()
            .map_err(err)?;
        Ok(value.map_or(0, |v| v.max(0) as u64))
    }

    fn set_handle_reservation(&self, tenant: &str, up_to: u64) -> Result<(), StoreError> {
        let up_to = i64::try_from(up_to)
            .map_err(|_| StoreError("handle space of the tenant exhausted".to_owned()))?;
        self.conn()
            .execute(
                "INSERT INTO tenant_handles (tenant, reserved_up_to) VALUES (?1, ?2) \
                 ON CONFLICT (tenant) DO UPDATE SET reserved_up_to = excluded.reserved_up_to",
                params![tenant, up_to],
            )
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> PartitionRecord {
        PartitionRecord {
            name: name.to_owned(),
            algorithms: "international".to_owned(),
            wrapped_master_key: vec![1, 2, 3],
            label: String::new(),
            initialized: false,
            so_pin: None,
            user_pin: None,
            so_failures: 0,
            user_failures: 0,
            user_pin_to_be_changed: false,
        }
    }

    #[test]
    fn round_trips_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsmlink.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.insert_partition(&record("p0")).unwrap();
            let mut r = record("p0");
            r.label = "mine".to_owned();
            r.so_failures = 3;
            store.update_partition(&r).unwrap();
            let obj = ObjectRecord {
                partition: "p0".to_owned(),
                object_id: "a".to_owned(),
                handle: 7,
                public_attrs: vec![9],
                sealed: vec![8],
            };
            store.put_object(&obj).unwrap();
            store.set_handle_reservation("demo", 1024).unwrap();
            // Objects need their partition.
            let orphan = ObjectRecord {
                partition: "nope".to_owned(),
                ..obj.clone()
            };
            assert!(store.put_object(&orphan).is_err());
        }
        let store = SqliteStore::open(&path).unwrap();
        let r = store.partition("p0").unwrap().unwrap();
        assert_eq!((r.label.as_str(), r.so_failures), ("mine", 3));
        assert_eq!(store.objects("p0").unwrap().len(), 1);
        assert_eq!(store.handle_reservation("demo").unwrap(), 1024);
        assert_eq!(store.handle_reservation("other").unwrap(), 0);
        store.reinitialize_partition(&r).unwrap();
        assert!(store.objects("p0").unwrap().is_empty());
        assert!(store.partition("p1").unwrap().is_none());
    }

    #[test]
    fn device_objects_round_trip_and_go_with_init_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hsmlink.db")).unwrap();
        let mut r = record("d0");
        r.algorithms = "pkcs11".to_owned();
        store.insert_partition(&r).unwrap();
        let obj = |handle, uid: u8| DeviceObjectRecord {
            partition: "d0".to_owned(),
            handle,
            uid: vec![uid; 16],
        };
        store.put_device_object(&obj(9, 1)).unwrap();
        store.put_device_object(&obj(3, 2)).unwrap();
        // Handles and uids are unique per partition; the partition must exist.
        assert!(store.put_device_object(&obj(9, 3)).is_err());
        assert!(store.put_device_object(&obj(4, 1)).is_err());
        assert!(
            store
                .put_device_object(&DeviceObjectRecord {
                    partition: "nope".to_owned(),
                    ..obj(5, 5)
                })
                .is_err()
        );
        assert_eq!(
            store.device_objects("d0").unwrap(),
            vec![obj(3, 2), obj(9, 1)]
        );
        store.delete_device_object("d0", 3).unwrap();
        assert_eq!(store.device_objects("d0").unwrap(), vec![obj(9, 1)]);
        store.reinitialize_partition(&r).unwrap();
        assert!(store.device_objects("d0").unwrap().is_empty());
    }
}
