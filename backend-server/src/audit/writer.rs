//! The audit writer thread: the only writer of the audit tables. It takes
//! records from a bounded channel, gives each its place in its chain and
//! commits them in groups (one SQLite transaction, `synchronous=FULL`, per
//! group: everything that queued while the previous commit was on disk),
//! then wakes the calls waiting for their records. It also signs chain
//! heads (every `sign_every_records` records of a chain, every
//! `sign_interval_s` for chains that grew, and at shutdown), prunes records
//! past the retention, and writes the metering counters.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tracing::{error, info, warn};

use super::AuditSettings;
use super::key::AuditKey;
use super::names::rv_name;
use super::record::{FORMAT_VERSION, Record, genesis, head_message, hex, now_ms, sha256};
use crate::metering::Metering;

/// Largest group committed at once.
const MAX_GROUP: usize = 1024;
/// How often retention is enforced.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(super) type Done = SyncSender<Result<(), String>>;

pub(super) enum Msg {
    Record(Box<Record>, Option<Done>),
    /// Commit what is queued, sign every grown chain, write metering.
    Sync(Done),
    /// [`Msg::Sync`], then stop.
    Shutdown(Done),
}

#[derive(Clone, Copy, Debug)]
struct Chain {
    seq: u64,
    hash: [u8; 32],
    signed: u64,
}

pub(super) struct Writer {
    conn: Connection,
    key: AuditKey,
    server_id: String,
    chains: HashMap<String, Chain>,
    settings: AuditSettings,
    metering: Arc<Metering>,
}

fn sql(e: rusqlite::Error) -> String {
    format!("audit store: {e}")
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Opens the audit tables of the store at `path` for writing.
pub(super) fn open_connection(path: &Path, fsync: bool) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })
        .map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    Ok(conn)
}

/// The log's identity: its server id (drawn at first open) and the public
/// key that signs it. A key file that does not match the key the log was
/// started with is refused.
pub(super) fn identity(conn: &Connection, key: &AuditKey) -> Result<String, String> {
    let get = |name: &str| -> Result<Option<String>, String> {
        conn.query_row(
            "SELECT value FROM audit_meta WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)
    };
    let public = hex(&key.public());
    match get("public_key")? {
        Some(stored) if stored != public => {
            return Err(format!(
                "audit key {public} is not the key of this audit log ({stored}): \
                 restore the audit key file the log was started with"
            ));
        }
        Some(_) => {}
        None => {
            conn.execute(
                "INSERT INTO audit_meta (name, value) VALUES ('public_key', ?1)",
                params![public],
            )
            .map_err(sql)?;
        }
    }
    if let Some(id) = get("server_id")? {
        return Ok(id);
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| format!("audit: random: {e}"))?;
    let id = hex(&id);
    conn.execute(
        "INSERT INTO audit_meta (name, value) VALUES ('server_id', ?1)",
        params![id],
    )
    .map_err(sql)?;
    Ok(id)
}

impl Writer {
    pub(super) fn open(
        settings: AuditSettings,
        key: AuditKey,
        metering: Arc<Metering>,
    ) -> Result<Self, String> {
        let conn = open_connection(&settings.db_path, settings.fsync)?;
        let server_id = identity(&conn, &key)?;
        let mut chains = HashMap::new();
        {
            let mut stmt = conn
                .prepare(
                    "SELECT r.chain, r.seq, r.hash FROM audit_records r \
                     JOIN (SELECT chain, MAX(seq) AS seq FROM audit_records GROUP BY chain) m \
                     ON r.chain = m.chain AND r.seq = m.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (chain, seq, hash) = row.map_err(sql)?;
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| format!("audit: chain {chain}: stored hash is not 32 bytes"))?;
                chains.insert(
                    chain,
                    Chain {
                        seq: seq.max(0) as u64,
                        hash,
                        signed: 0,
                    },
                );
            }
            let mut stmt = conn
                .prepare("SELECT chain, MAX(seq) FROM audit_heads GROUP BY chain")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql)?;
            for row in rows {
                let (chain, seq) = row.map_err(sql)?;
                if let Some(c) = chains.get_mut(&chain) {
                    c.signed = seq.max(0) as u64;
                }
            }
        }
        Ok(Self {
            conn,
            key,
            server_id,
            chains,
            settings,
            metering,
        })
    }

    /// Serves the channel until [`Msg::Shutdown`] or until every sender is
    /// gone.
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let now = Instant::now();
        let mut next_sign = now + self.settings.sign_interval;
        let mut next_flush = now + self.settings.metering_flush;
        let mut next_prune = now;
        let mut group: Vec<(Box<Record>, Option<Done>)> = Vec::new();
        loop {
            let now = Instant::now();
            if now >= next_prune {
                next_prune = now + PRUNE_EVERY;
                if let Err(e) = self.prune() {
                    error!("audit: pruning failed: {e}");
                }
            }
            if now >= next_sign {
                next_sign = now + self.settings.sign_interval;
                if let Err(e) = self.sign_grown() {
                    error!("audit: signing the chain heads failed: {e}");
                }
            }
            if now >= next_flush {
                next_flush = now + self.settings.metering_flush;
                self.flush_metering();
            }
            let wake = next_sign.min(next_flush).min(next_prune);
            let first = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            };
            let mut control = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(r, done) => group.push((r, done)),
                    Msg::Sync(done) => {
                        control = Some((done, false));
                        break;
                    }
                    Msg::Shutdown(done) => {
                        control = Some((done, true));
                        break;
                    }
                }
                if group.len() >= MAX_GROUP {
                    break;
                }
                next = rx.try_recv().ok();
            }
            if !group.is_empty() {
                let result = self.commit(&mut group);
                if let Err(e) = &result {
                    error!(records = group.len(), "audit: commit failed: {e}");
                }
                for (_, done) in group.drain(..) {
                    if let Some(done) = done {
                        let _ = done.send(result.clone());
                    }
                }
            }
            if let Some((done, stop)) = control {
                let result = self.sign_grown();
                self.flush_metering();
                let _ = done.send(result);
                if stop {
                    self.finish();
                    return;
                }
            }
        }
    }

    /// Whatever is left at the end: drained by the caller already; sign
    /// and flush once more.
    fn finish(&mut self) {
        if let Err(e) = self.sign_grown() {
            error!("audit: signing the chain heads at shutdown failed: {e}");
        }
        self.flush_metering();
    }

    fn flush_metering(&mut self) {
        let rows = self.metering.take();
        let minutes = self.metering.series().take();
        if rows.is_empty() && minutes.is_empty() {
            return;
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            crate::metering::write(&tx, &rows)?;
            crate::metering_series::write(&tx, &minutes, super::record::now_ms())?;
            tx.commit()
        })();
        if let Err(e) = result {
            warn!("metering: write failed, kept for the next flush: {e}");
            self.metering.restore(rows);
            self.metering.series().restore(minutes);
        }
    }

    /// Appends one record to its chain in `tx`; updates `chains` (the
    /// caller's working copy).
    fn append(
        tx: &Transaction<'_>,
        server_id: &str,
        chains: &mut HashMap<String, Chain>,
        record: &mut Record,
    ) -> Result<(), String> {
        let chain = chains.entry(record.chain.clone()).or_insert_with(|| Chain {
            seq: 0,
            hash: genesis(server_id, &record.chain),
            signed: 0,
        });
        record.seq = chain.seq + 1;
        record.prev = hex(&chain.hash);
        record.v = FORMAT_VERSION;
        if record.rv_name.is_empty() {
            record.rv_name = rv_name(record.rv);
        }
        let body = record.canonical();
        let hash = sha256(&body);
        let body = String::from_utf8(body).map_err(|e| format!("audit: encoding: {e}"))?;
        tx.prepare_cached(
            "INSERT INTO audit_records (chain, seq, ts_ms, op, key_handle, body, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                record.chain,
                i64_of(record.seq),
                record.ts_ms,
                record.op,
                record.key.map(i64_of),
                body,
                hash.to_vec()
            ])
        })
        .map_err(sql)?;
        chain.seq = record.seq;
        chain.hash = hash;
        Ok(())
    }

    fn sign_head(
        tx: &Transaction<'_>,
        (key, server_id): (&AuditKey, &str),
        name: &str,
        chain: &mut Chain,
        ts_ms: i64,
    ) -> Result<(), String> {
        let message = head_message(server_id, name, chain.seq, &chain.hash, ts_ms);
        let signature = key.sign(&message);
        tx.prepare_cached(
            "INSERT OR REPLACE INTO audit_heads (chain, seq, hash, ts_ms, signature) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                name,
                i64_of(chain.seq),
                chain.hash.to_vec(),
                ts_ms,
                signature
            ])
        })
        .map_err(sql)?;
        chain.signed = chain.seq;
        Ok(())
    }

    /// Commits a group: all its records, and the head of every chain that
    /// grew by `sign_every_records` since its last signature.
    fn commit(&mut self, group: &mut [(Box<Record>, Option<Done>)]) -> Result<(), String> {
        let mut chains = self.chains.clone();
        let tx = self.conn.transaction().map_err(sql)?;
        for (record, _) in group.iter_mut() {
            Self::append(&tx, &self.server_id, &mut chains, record)?;
        }
        let ts = now_ms();
        let every = self.settings.sign_every_records.max(1);
        for (name, chain) in chains.iter_mut() {
            if chain.seq.saturating_sub(chain.signed) >= every {
                let mut c = *chain;
                Self::sign_head(&tx, (&self.key, &self.server_id), name, &mut c, ts)?;
                *chain = c;
            }
        }
        tx.commit().map_err(sql)?;
        self.chains = chains;
        Ok(())
    }

    /// Signs the head of every chain with records after its last signature.
    fn sign_grown(&mut self) -> Result<(), String> {
        if self.chains.values().all(|c| c.signed >= c.seq) {
            return Ok(());
        }
        let mut chains = self.chains.clone();
        let tx = self.conn.transaction().map_err(sql)?;
        let ts = now_ms();
        for (name, chain) in chains.iter_mut() {
            if chain.signed < chain.seq {
                let mut c = *chain;
                Self::sign_head(&tx, (&self.key, &self.server_id), name, &mut c, ts)?;
                *chain = c;
            }
        }
        tx.commit().map_err(sql)?;
        self.chains = chains;
        Ok(())
    }

    /// Deletes the records older than the retention, chain by chain, after
    /// appending an `audit.pruned` record that names the last deleted
    /// record and its hash, and signing the head there.
    pub(super) fn prune(&mut self) -> Result<(), String> {
        let Some(days) = self.settings.retention_days.filter(|d| *d > 0) else {
            return Ok(());
        };
        let cutoff = now_ms().saturating_sub(i64::from(days).saturating_mul(86_400_000));
        self.prune_before(cutoff)
    }

    pub(super) fn prune_before(&mut self, cutoff_ms: i64) -> Result<(), String> {
        let mut chains = self.chains.clone();
        let tx = self.conn.transaction().map_err(sql)?;
        let names: Vec<String> = chains.keys().cloned().collect();
        let mut pruned = Vec::new();
        for name in names {
            let last: Option<(i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT seq, hash FROM audit_records WHERE chain = ?1 AND seq = \
                     (SELECT MAX(seq) FROM audit_records WHERE chain = ?1 AND ts_ms < ?2)",
                    params![name, cutoff_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((through, hash)) = last else {
                continue;
            };
            let mut record = Record {
                chain: name.clone(),
                op: "audit.pruned".to_owned(),
                detail: Some(format!(
                    "records older than {} deleted",
                    super::record::rfc3339(cutoff_ms)
                )),
                pruned_through: Some(through.max(0) as u64),
                pruned_hash: Some(hex(&hash)),
                ts_ms: now_ms(),
                ..Record::default()
            };
            Self::append(&tx, &self.server_id, &mut chains, &mut record)?;
            if let Some(chain) = chains.get_mut(&name) {
                let mut c = *chain;
                Self::sign_head(
                    &tx,
                    (&self.key, &self.server_id),
                    &name,
                    &mut c,
                    record.ts_ms,
                )?;
                *chain = c;
            }
            tx.execute(
                "DELETE FROM audit_records WHERE chain = ?1 AND seq <= ?2",
                params![name, through],
            )
            .map_err(sql)?;
            tx.execute(
                "DELETE FROM audit_heads WHERE chain = ?1 AND seq <= ?2",
                params![name, through],
            )
            .map_err(sql)?;
            pruned.push((name, through));
        }
        tx.commit().map_err(sql)?;
        self.chains = chains;
        for (chain, through) in pruned {
            info!(chain, through, "audit: records past the retention deleted");
        }
        Ok(())
    }
}
