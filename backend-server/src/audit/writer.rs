//! The only writer of the audit tables, and its group commit.
//!
//! A call that must be recorded before its reply queues its record and
//! takes the writer's lock; whoever holds the lock commits everything
//! queued — its own record and those that queued meanwhile — in one SQLite
//! transaction (`synchronous=FULL`: one fsync per group), in queue order,
//! and tells each record's caller the outcome. A caller that finds its
//! record committed when it gets the lock goes on at once. So one call
//! alone commits on its own thread, with no hand-over to another thread
//! and back (two thread wake-ups, the largest cost of a call on an idle
//! machine), and concurrent calls still share one fsync.
//!
//! A housekeeping thread commits records queued without waiting
//! (`record_queued`), signs chain heads (every `sign_every_records`
//! records of a chain at commit, every `sign_interval_s` for chains that
//! grew, and at shutdown), prunes records past the retention, and writes
//! the metering counters.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
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

/// Where the outcome of a waited-for record is left.
type Outcome = Arc<OnceLock<Result<(), String>>>;

const STOPPED: &str = "the audit writer is stopped";

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Queue {
    records: VecDeque<(Box<Record>, Option<Outcome>)>,
    closed: bool,
    /// A caller is committing for everyone ([`Committer::record`]).
    leading: bool,
}

/// The housekeeper's alarm: a queued record, or the end.
#[derive(Default)]
struct Alarm {
    rung: bool,
    stop: bool,
}

/// The writer, its queue and the housekeeper's alarm.
pub(super) struct Committer {
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    alarm: Mutex<Alarm>,
    bell: Condvar,
    /// Rung by a leading caller when its commits are done.
    committed: Condvar,
    queue_capacity: usize,
    fsync: bool,
}

impl Committer {
    pub(super) fn flushes_to_disk(&self) -> bool {
        self.fsync
    }

    pub(super) fn new(writer: Writer) -> Self {
        let queue_capacity = writer.settings.queue_capacity.max(1);
        let fsync = writer.settings.fsync;
        Self {
            fsync,
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(writer),
            alarm: Mutex::new(Alarm::default()),
            bell: Condvar::new(),
            committed: Condvar::new(),
            queue_capacity,
        }
    }

    fn enqueue(&self, record: Record, outcome: Option<Outcome>) -> Result<usize, String> {
        let mut queue = locked(&self.queue);
        if queue.closed {
            return Err(STOPPED.to_owned());
        }
        queue.records.push_back((Box::new(record), outcome));
        Ok(queue.records.len())
    }

    /// Records `record` and returns once it is committed (by this thread or
    /// by the one that held the lock when it queued).
    ///
    /// One caller at a time leads: it commits everything queued, then wakes
    /// the others at once. (Followers that each took the writer's lock in
    /// turn, only to find their record committed, passed it along one
    /// thread wake-up at a time: a convoy that held up the next commit.)
    pub(super) fn record(&self, record: Record) -> Result<(), String> {
        let outcome = Outcome::default();
        self.enqueue(record, Some(outcome.clone()))?;
        let mut queue = locked(&self.queue);
        loop {
            if let Some(result) = outcome.get() {
                return result.clone();
            }
            if queue.leading {
                // The leader rings when done; the timeout is a safety net.
                queue = self
                    .committed
                    .wait_timeout(queue, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            queue.leading = true;
            drop(queue);
            self.commit_queued(&mut locked(&self.writer));
            queue = locked(&self.queue);
            queue.leading = false;
            self.committed.notify_all();
        }
    }

    /// Queues `record`; the housekeeper commits it soon, before any record
    /// queued after it. Beyond `queue_capacity` queued records the caller
    /// commits them itself.
    pub(super) fn record_queued(&self, record: Record) -> Result<(), String> {
        if self.enqueue(record, None)? >= self.queue_capacity {
            self.commit_queued(&mut locked(&self.writer));
        } else {
            locked(&self.alarm).rung = true;
            self.bell.notify_one();
        }
        Ok(())
    }

    /// Commits everything queued, in groups of at most [`MAX_GROUP`].
    fn commit_queued(&self, writer: &mut Writer) {
        loop {
            let mut group: Vec<_> = {
                let mut queue = locked(&self.queue);
                let n = queue.records.len().min(MAX_GROUP);
                queue.records.drain(..n).collect()
            };
            if group.is_empty() {
                return;
            }
            let result = writer.commit(&mut group);
            if let Err(e) = &result {
                error!(records = group.len(), "audit: commit failed: {e}");
            }
            for (_, outcome) in group {
                if let Some(outcome) = outcome {
                    let _ = outcome.set(result.clone());
                }
            }
        }
    }

    /// Commits what is queued, signs every chain head that moved and
    /// writes the metering counters.
    pub(super) fn sync(&self) -> Result<(), String> {
        let mut writer = locked(&self.writer);
        self.commit_queued(&mut writer);
        let result = writer.sign_grown();
        writer.flush_metering();
        result
    }

    /// The housekeeping thread's loop, until [`Self::stop`].
    pub(super) fn housekeep(&self) {
        let now = Instant::now();
        let (sign_interval, flush_interval) = {
            let writer = locked(&self.writer);
            (
                writer.settings.sign_interval,
                writer.settings.metering_flush,
            )
        };
        let mut next_sign = now + sign_interval;
        let mut next_flush = now + flush_interval;
        let mut next_prune = now;
        loop {
            let now = Instant::now();
            {
                let mut writer = locked(&self.writer);
                self.commit_queued(&mut writer);
                if now >= next_prune {
                    next_prune = now + PRUNE_EVERY;
                    if let Err(e) = writer.prune() {
                        error!("audit: pruning failed: {e}");
                    }
                }
                if now >= next_sign {
                    next_sign = now + sign_interval;
                    if let Err(e) = writer.sign_grown() {
                        error!("audit: signing the chain heads failed: {e}");
                    }
                }
                if now >= next_flush {
                    next_flush = now + flush_interval;
                    writer.flush_metering();
                }
            }
            let wake = next_sign.min(next_flush).min(next_prune);
            let mut alarm = locked(&self.alarm);
            while !alarm.rung && !alarm.stop {
                let left = wake.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                alarm = self
                    .bell
                    .wait_timeout(alarm, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            alarm.rung = false;
            if alarm.stop {
                drop(alarm);
                let mut writer = locked(&self.writer);
                locked(&self.queue).closed = true;
                self.commit_queued(&mut writer);
                writer.finish();
                return;
            }
        }
    }

    /// Ends [`Self::housekeep`] after a last commit, head signature and
    /// metering write; records queued later are refused.
    pub(super) fn stop(&self) {
        locked(&self.alarm).stop = true;
        self.bell.notify_one();
    }
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

    /// Whatever is left at the end: drained by the caller already; sign
    /// and flush once more.
    pub(super) fn finish(&mut self) {
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
    fn commit(&mut self, group: &mut [(Box<Record>, Option<Outcome>)]) -> Result<(), String> {
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
