//! The SQLite store: one file, WAL, `synchronous=FULL` (a commit is on disk
//! before the reply that reports it), foreign keys on, `secure_delete` on
//! (freed pages are zeroed). Migrations are a numbered list run at open,
//! tracked with `PRAGMA user_version`.
//!
//! The partition key ring is a second SQLite file beside the store
//! (`hsmlink.db` → `hsmlink.keyring`, see [`keyring_path`]): one wrapped
//! key-encryption key per partition. It is never part of a backup, so that
//! destroying an entry (termination) makes every backup's copy of that
//! partition's master key undecryptable.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CertificateRow, DeviceObjectRecord, ObjectRecord, PartitionRecord, SlotRow, Store, StoreError,
    TenantRow, WrapRecord,
};

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
    // 3: the registry the admin plane keeps (tenants, their slots and
    // partitions, certificates). server.toml's tenants are seeded here.
    "CREATE TABLE registry_tenants (
        name TEXT PRIMARY KEY NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE registry_slots (
        partition TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES registry_tenants(name),
        slot_id INTEGER NOT NULL,
        driver TEXT NOT NULL,
        serial TEXT NOT NULL,
        algorithms TEXT NOT NULL,
        device TEXT,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        changed_at INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX registry_slots_live_id ON registry_slots (tenant, slot_id)
        WHERE state != 'terminated';
    CREATE UNIQUE INDEX registry_slots_live_serial ON registry_slots (serial)
        WHERE state != 'terminated';
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        tenant TEXT,
        subject TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        issued_at INTEGER NOT NULL,
        revoked_at INTEGER,
        pem TEXT NOT NULL
    ) STRICT;",
    // 4: the audit log (hash-chained records per chain, signed chain heads,
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
    // 5: metering per minute and partition (calls, errors, latency) for the
    // web console's charts (crate::metering_series).
    "CREATE TABLE IF NOT EXISTS metering_minutes (
        tenant TEXT NOT NULL,
        partition TEXT NOT NULL,
        minute_ms INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        latency_us_sum INTEGER NOT NULL,
        latency_us_max INTEGER NOT NULL,
        PRIMARY KEY (tenant, partition, minute_ms)
    ) STRICT;
    CREATE INDEX IF NOT EXISTS metering_minutes_minute ON metering_minutes (minute_ms);",
    // 6: the wrap ledger of strict partitions (crate::wrap_ledger): what
    // each blob wrapped with a standard mechanism held, by SHA-256.
    "CREATE TABLE IF NOT EXISTS wrap_ledger (
        partition TEXT NOT NULL REFERENCES partitions(name) ON DELETE CASCADE,
        digest BLOB NOT NULL,
        class INTEGER NOT NULL,
        key_type INTEGER NOT NULL,
        usage INTEGER NOT NULL,
        sensitive INTEGER NOT NULL,
        extractable INTEGER NOT NULL,
        wrapped_at INTEGER NOT NULL,
        PRIMARY KEY (partition, digest)
    ) STRICT;",
    // 7: key states of pkcs11 partitions' keys (vendor modules do not know
    // CKA_HSMLINK_KEY_STATE), and the tombstone of a destroyed key.
    "ALTER TABLE device_objects ADD COLUMN key_state INTEGER;
    ALTER TABLE device_objects ADD COLUMN tombstone BLOB;",
];

/// The key ring's schema (its own file, its own version).
const KEYRING_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS partition_keks (
        partition TEXT NOT NULL,
        kek_id BLOB NOT NULL,
        wrapped_kek BLOB NOT NULL,
        PRIMARY KEY (partition, kek_id)
    ) STRICT;";

/// Where the key ring of the store at `store` lives: beside it, the same
/// name with the extension `keyring`.
pub fn keyring_path(store: &Path) -> PathBuf {
    store.with_extension("keyring")
}

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    keyring: Mutex<Connection>,
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
        let keyring = open_keyring(&keyring_path(path))?;
        Ok(Self {
            conn: Mutex::new(conn),
            keyring: Mutex::new(keyring),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction
        // (rusqlite rolls back on drop): the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keyring(&self) -> MutexGuard<'_, Connection> {
        self.keyring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The key ring: a rollback journal rather than WAL (a deleted entry must
/// not linger in a WAL file), `secure_delete` on, mode 0600.
fn open_keyring(path: &Path) -> Result<Connection, StoreError> {
    let named = |e: rusqlite::Error| StoreError(format!("{}: {e}", path.display()));
    let conn = Connection::open(path).map_err(named)?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(named)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(named)?;
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(named)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(named)?;
    conn.execute_batch(KEYRING_SCHEMA).map_err(named)?;
    Ok(conn)
}

const SLOT_COLUMNS: &str = "partition, tenant, slot_id, driver, serial, algorithms, device, state, \
     source, created_at, changed_at";

fn slot_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SlotRow> {
    Ok(SlotRow {
        partition: row.get(0)?,
        tenant: row.get(1)?,
        slot_id: row.get::<_, i64>(2)? as u64,
        driver: row.get(3)?,
        serial: row.get(4)?,
        algorithms: row.get(5)?,
        device: row.get(6)?,
        state: row.get(7)?,
        source: row.get(8)?,
        created_at: row.get(9)?,
        changed_at: row.get(10)?,
    })
}

const CERTIFICATE_COLUMNS: &str =
    "serial, fingerprint, tenant, subject, not_before, not_after, issued_at, revoked_at, pem";

fn certificate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRow> {
    Ok(CertificateRow {
        serial: row.get(0)?,
        fingerprint: row.get(1)?,
        tenant: row.get(2)?,
        subject: row.get(3)?,
        not_before: row.get(4)?,
        not_after: row.get(5)?,
        issued_at: row.get(6)?,
        revoked_at: row.get(7)?,
        pem: row.get(8)?,
    })
}

/// A slot row's values in `SLOT_COLUMNS` order (`?1` to `?11`), the slot
/// id already converted.
fn slot_values<'a>(r: &'a SlotRow, slot: &'a i64) -> [&'a dyn rusqlite::ToSql; 11] {
    [
        &r.partition,
        &r.tenant,
        slot,
        &r.driver,
        &r.serial,
        &r.algorithms,
        &r.device,
        &r.state,
        &r.source,
        &r.created_at,
        &r.changed_at,
    ]
}

fn slot_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError(format!("slot id {id} out of range")))
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
        tx.execute(
            "DELETE FROM wrap_ledger WHERE partition = ?1",
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
            .prepare(
                "SELECT handle, uid, key_state, tombstone FROM device_objects \
                 WHERE partition = ?1 ORDER BY handle",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![partition], |row| {
                Ok(DeviceObjectRecord {
                    partition: partition.to_owned(),
                    handle: row.get::<_, i64>(0)? as u64,
                    uid: row.get(1)?,
                    key_state: row.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    tombstone: row.get(3)?,
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
                "INSERT INTO device_objects (partition, handle, uid, key_state, tombstone) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    r.partition,
                    handle,
                    r.uid,
                    r.key_state.map(|v| v as i64),
                    r.tombstone
                ],
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

    fn set_device_key_state(
        &self,
        partition: &str,
        handle: u64,
        key_state: u64,
        tombstone: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let handle = i64::try_from(handle)
            .map_err(|_| StoreError(format!("object handle {handle} out of range")))?;
        let changed = self
            .conn()
            .execute(
                "UPDATE device_objects SET key_state = ?3, tombstone = ?4 \
                 WHERE partition = ?1 AND handle = ?2",
                params![partition, handle, key_state as i64, tombstone],
            )
            .map_err(err)?;
        if changed == 0 {
            return Err(StoreError(format!("no device object {handle}")));
        }
        Ok(())
    }

    fn wrap_record(
        &self,
        partition: &str,
        digest: &[u8],
    ) -> Result<Option<WrapRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT class, key_type, usage, sensitive, extractable, wrapped_at \
                 FROM wrap_ledger WHERE partition = ?1 AND digest = ?2",
                params![partition, digest],
                |row| {
                    Ok(WrapRecord {
                        partition: partition.to_owned(),
                        digest: digest.to_vec(),
                        class: row.get::<_, i64>(0)? as u64,
                        key_type: row.get::<_, i64>(1)? as u64,
                        usage: row.get::<_, i64>(2)? as u64,
                        sensitive: row.get(3)?,
                        extractable: row.get(4)?,
                        wrapped_at: row.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(err)
    }

    fn put_wrap_record(&self, r: &WrapRecord) -> Result<(), StoreError> {
        // CK_ULONG values beyond i64 (vendor key types) keep their bits.
        let (class, key_type, usage) = (r.class as i64, r.key_type as i64, r.usage as i64);
        self.conn()
            .execute(
                "INSERT INTO wrap_ledger \
                 (partition, digest, class, key_type, usage, sensitive, extractable, wrapped_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (partition, digest) DO UPDATE SET \
                 usage = CASE WHEN class = excluded.class AND key_type = excluded.key_type \
                     THEN usage & excluded.usage ELSE 0 END, \
                 class = excluded.class, key_type = excluded.key_type, \
                 sensitive = sensitive | excluded.sensitive, \
                 extractable = extractable & excluded.extractable, \
                 wrapped_at = excluded.wrapped_at",
                params![
                    r.partition,
                    r.digest,
                    class,
                    key_type,
                    usage,
                    r.sensitive,
                    r.extractable,
                    r.wrapped_at
                ],
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

    fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, disabled, source, created_at FROM registry_tenants ORDER BY name",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(TenantRow {
                    name: row.get(0)?,
                    disabled: row.get(1)?,
                    source: row.get(2)?,
                    created_at: row.get(3)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn insert_tenant(&self, r: &TenantRow) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO registry_tenants (name, disabled, source, created_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                params![r.name, r.disabled, r.source, r.created_at],
            )
            .map_err(err)?;
        Ok(n == 1)
    }

    fn set_tenant_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE registry_tenants SET disabled = ?2 WHERE name = ?1",
                params![name, disabled],
            )
            .map_err(err)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError(format!("tenant {name} is not in the store")))
        }
    }

    fn slots(&self) -> Result<Vec<SlotRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {SLOT_COLUMNS} FROM registry_slots ORDER BY tenant, slot_id, created_at"
            ))
            .map_err(err)?;
        let rows = stmt.query_map([], slot_row).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn insert_slot(&self, r: &SlotRow) -> Result<(), StoreError> {
        let slot = slot_id(r.slot_id)?;
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO registry_slots ({SLOT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                &slot_values(r, &slot)[..],
            )
            .map_err(err)?;
        Ok(())
    }

    fn update_slot(&self, r: &SlotRow) -> Result<(), StoreError> {
        let slot = slot_id(r.slot_id)?;
        let n = self
            .conn()
            .execute(
                "UPDATE registry_slots SET tenant = ?2, slot_id = ?3, driver = ?4, serial = ?5, \
                 algorithms = ?6, device = ?7, state = ?8, source = ?9, created_at = ?10, \
                 changed_at = ?11 WHERE partition = ?1",
                &slot_values(r, &slot)[..],
            )
            .map_err(err)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError(format!(
                "partition {} is not in the registry",
                r.partition
            )))
        }
    }

    fn delete_config_slot(&self, partition: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM registry_slots WHERE partition = ?1 AND source = 'config' \
                 AND state != 'terminated'",
                params![partition],
            )
            .map_err(err)?;
        Ok(())
    }

    fn certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates ORDER BY issued_at, serial"
            ))
            .map_err(err)?;
        let rows = stmt.query_map([], certificate_row).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn insert_certificate(&self, r: &CertificateRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO certificates ({CERTIFICATE_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    r.serial,
                    r.fingerprint,
                    r.tenant,
                    r.subject,
                    r.not_before,
                    r.not_after,
                    r.issued_at,
                    r.revoked_at,
                    r.pem
                ],
            )
            .map_err(err)?;
        Ok(())
    }

    fn revoke_certificate(&self, id: &str, at: i64) -> Result<Option<CertificateRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err)?;
        tx.execute(
            "UPDATE certificates SET revoked_at = ?2 \
             WHERE (serial = ?1 OR fingerprint = ?1) AND revoked_at IS NULL",
            params![id, at],
        )
        .map_err(err)?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE serial = ?1 OR fingerprint = ?1"
                ),
                params![id],
                certificate_row,
            )
            .optional()
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(row)
    }

    fn partition_kek(&self, partition: &str, kek_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.keyring()
            .query_row(
                "SELECT wrapped_kek FROM partition_keks WHERE partition = ?1 AND kek_id = ?2",
                params![partition, kek_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(err)
    }

    fn put_partition_kek(
        &self,
        partition: &str,
        kek_id: &[u8],
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        self.keyring()
            .execute(
                "INSERT INTO partition_keks (partition, kek_id, wrapped_kek) VALUES (?1, ?2, ?3)",
                params![partition, kek_id, wrapped],
            )
            .map_err(err)?;
        Ok(())
    }

    fn retain_partition_kek(&self, partition: &str, keep: &[u8]) -> Result<(), StoreError> {
        self.keyring()
            .execute(
                "DELETE FROM partition_keks WHERE partition = ?1 AND kek_id != ?2",
                params![partition, keep],
            )
            .map_err(err)?;
        Ok(())
    }

    fn erase_partition(&self, partition: &str, at: i64) -> Result<(), StoreError> {
        // 1. The key-encryption key: after this commit no copy of the
        //    partition's master key (this store's, a backup's) opens.
        {
            let keyring = self.keyring();
            keyring
                .execute(
                    "DELETE FROM partition_keks WHERE partition = ?1",
                    params![partition],
                )
                .map_err(err)?;
            // secure_delete zeroed the cell; VACUUM rewrites the file
            // without the freed page.
            keyring.execute_batch("VACUUM").map_err(err)?;
        }
        // 2. The wrapped master key (overwritten, then deleted), the PIN
        //    records and every object; the slot stays, terminated.
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err)?;
        tx.execute(
            "UPDATE partitions SET wrapped_master_key = zeroblob(length(wrapped_master_key)), \
             so_pin = NULL, user_pin = NULL WHERE name = ?1",
            params![partition],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM objects WHERE partition = ?1",
            params![partition],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM device_objects WHERE partition = ?1",
            params![partition],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM wrap_ledger WHERE partition = ?1",
            params![partition],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM partitions WHERE name = ?1", params![partition])
            .map_err(err)?;
        tx.execute(
            "UPDATE registry_slots SET state = 'terminated', changed_at = ?2 WHERE partition = ?1",
            params![partition, at],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        // The old pages may still sit in the WAL: copy them back (now
        // zeroed by secure_delete) and empty it.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)?;
        Ok(())
    }

    fn backup_into(&self, path: &Path) -> Result<(), StoreError> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError(format!("{}: not a UTF-8 path", path.display())))?;
        // VACUUM INTO reads one snapshot of the database (WAL included) and
        // writes a compact copy; the key ring is another file, not copied.
        self.conn()
            .execute("VACUUM INTO ?1", params![target])
            .map_err(err)?;
        Ok(())
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
    fn wrap_records_merge_to_what_both_allow_and_go_with_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsmlink.db");
        let store = SqliteStore::open(&path).unwrap();
        let r = record("w0");
        store.insert_partition(&r).unwrap();
        let wrap = |digest: u8, key_type, usage, extractable| WrapRecord {
            partition: "w0".to_owned(),
            digest: vec![digest; 32],
            class: 4,
            key_type,
            usage,
            sensitive: false,
            extractable,
            wrapped_at: 7,
        };
        store.put_wrap_record(&wrap(1, 0x1f, 0b0011, true)).unwrap();
        assert_eq!(
            store.wrap_record("w0", &[1; 32]).unwrap(),
            Some(wrap(1, 0x1f, 0b0011, true))
        );
        assert_eq!(store.wrap_record("w0", &[2; 32]).unwrap(), None);
        assert_eq!(store.wrap_record("other", &[1; 32]).unwrap(), None);
        // The same bytes again: what both allow.
        let mut narrower = wrap(1, 0x1f, 0b0110, false);
        narrower.sensitive = true;
        store.put_wrap_record(&narrower).unwrap();
        let mut both = wrap(1, 0x1f, 0b0010, false);
        both.sensitive = true;
        assert_eq!(store.wrap_record("w0", &[1; 32]).unwrap(), Some(both));
        // Another key type for the same bytes: no usage left.
        store
            .put_wrap_record(&wrap(1, 0x10, 0b0010, false))
            .unwrap();
        assert_eq!(store.wrap_record("w0", &[1; 32]).unwrap().unwrap().usage, 0);
        // Records need their partition, survive a reopen, and go with
        // C_InitToken and with the partition.
        assert!(
            store
                .put_wrap_record(&WrapRecord {
                    partition: "nope".to_owned(),
                    ..wrap(3, 0x1f, 1, true)
                })
                .is_err()
        );
        store.put_wrap_record(&wrap(3, 0x1f, 1, true)).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.wrap_record("w0", &[3; 32]).unwrap().is_some());
        store.reinitialize_partition(&r).unwrap();
        assert_eq!(store.wrap_record("w0", &[3; 32]).unwrap(), None);
        store.put_wrap_record(&wrap(4, 0x1f, 1, true)).unwrap();
        store.erase_partition("w0", 9).unwrap();
        assert_eq!(store.wrap_record("w0", &[4; 32]).unwrap(), None);
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
            key_state: None,
            tombstone: None,
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
        // Key states and tombstones live on the row.
        store.set_device_key_state("d0", 9, 2, None).unwrap();
        store
            .set_device_key_state("d0", 9, 4, Some(&[1, 2]))
            .unwrap();
        assert!(store.set_device_key_state("d0", 3, 2, None).is_err());
        let row = &store.device_objects("d0").unwrap()[0];
        assert_eq!(
            (row.key_state, row.tombstone.as_deref()),
            (Some(4), Some(&[1u8, 2][..]))
        );
        store.reinitialize_partition(&r).unwrap();
        assert!(store.device_objects("d0").unwrap().is_empty());
    }
}
