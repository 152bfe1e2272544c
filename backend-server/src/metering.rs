//! Metering for billing: per tenant, per hour (UTC), per operation (PKCS#11
//! function) and mechanism, the number of calls and the bytes in (data the
//! call carried) and out (data it returned).
//!
//! Calls add to counters in memory ([`Metering::add`]); the audit writer
//! thread adds them to the store (`metering` table) every
//! `[metering] flush_interval_s` (default 60) and at shutdown. A crash of
//! the server loses at most the counts of the last flush interval; an
//! orderly stop (SIGTERM) loses nothing. Counted: every cryptographic call
//! but length queries (a NULL output buffer), including updates, digests
//! and random numbers; not counted: session, object and token calls.
//!
//! [`Metering::report`] (for the admin API) and [`read`] (for the CLI, from
//! the store alone) give the rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

use crate::audit::names::mechanism_name;
use crate::audit::record::rfc3339;

/// One counter's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeterKey {
    pub tenant: String,
    /// Start of the hour, milliseconds since the Unix epoch (UTC).
    pub hour_ms: i64,
    pub operation: String,
    pub mechanism: Option<u64>,
}

/// Counts of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub count: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.count = self.count.saturating_add(other.count);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }
}

/// One row of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeterRow {
    pub tenant: String,
    /// Start of the hour, RFC 3339 UTC.
    pub hour: String,
    pub hour_ms: i64,
    pub operation: String,
    pub mechanism: Option<u64>,
    pub mechanism_name: Option<String>,
    pub count: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

const HOUR_MS: i64 = 3_600_000;

/// The hour that holds `ts_ms`.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The in-memory counters, shared by every request and the audit housekeeping thread.
#[derive(Debug, Default)]
pub struct Metering {
    pending: Mutex<HashMap<MeterKey, Counts>>,
    /// The store, for reports (`None`: in-memory counters only).
    store: Option<PathBuf>,
    /// Per-minute, per-partition calls, errors and latency (the console's
    /// charts), flushed with these counters.
    series: crate::metering_series::Series,
}

impl Metering {
    pub fn new(store: Option<PathBuf>) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            store,
            series: crate::metering_series::Series::default(),
        }
    }

    /// The per-minute series (see [`crate::metering_series`]).
    pub fn series(&self) -> &crate::metering_series::Series {
        &self.series
    }

    /// Counts one call.
    pub fn add(
        &self,
        tenant: &str,
        ts_ms: i64,
        operation: &str,
        mechanism: Option<u64>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let key = MeterKey {
            tenant: tenant.to_owned(),
            hour_ms: hour_of(ts_ms),
            operation: operation.to_owned(),
            mechanism,
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .add(Counts {
                count: 1,
                bytes_in,
                bytes_out,
            });
    }

    /// Takes the counters not yet in the store.
    pub fn take(&self) -> HashMap<MeterKey, Counts> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back counters whose write failed.
    pub fn restore(&self, rows: HashMap<MeterKey, Counts>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, c) in rows {
            pending.entry(k).or_default().add(c);
        }
    }

    /// The metering of `tenant` (every tenant if `None`) for the hours that
    /// start in `[from_ms, to_ms)`: the store's rows plus the counters not
    /// yet flushed. Rows by tenant, hour, operation, mechanism.
    ///
    /// For the admin API: `GET /v1/metering?tenant=T&from=..&to=..` can
    /// serve this as JSON (each [`MeterRow`] serializes with serde).
    pub fn report(
        &self,
        tenant: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MeterRow>, String> {
        let mut totals: HashMap<MeterKey, Counts> = HashMap::new();
        if let Some(path) = &self.store {
            for (k, c) in read_counts(path, tenant, from_ms, to_ms)? {
                totals.entry(k).or_default().add(c);
            }
        }
        for (k, c) in self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if tenant.is_none_or(|t| t == k.tenant) && k.hour_ms >= from_ms && k.hour_ms < to_ms {
                totals.entry(k.clone()).or_default().add(*c);
            }
        }
        Ok(rows(totals))
    }
}

fn rows(totals: HashMap<MeterKey, Counts>) -> Vec<MeterRow> {
    let mut rows: Vec<MeterRow> = totals
        .into_iter()
        .map(|(k, c)| MeterRow {
            hour: rfc3339(k.hour_ms),
            hour_ms: k.hour_ms,
            mechanism_name: k.mechanism.map(mechanism_name),
            tenant: k.tenant,
            operation: k.operation,
            mechanism: k.mechanism,
            count: c.count,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.tenant, a.hour_ms, &a.operation, a.mechanism).cmp(&(
            &b.tenant,
            b.hour_ms,
            &b.operation,
            b.mechanism,
        ))
    });
    rows
}

/// The store's metering rows (see [`Metering::report`]), read-only.
pub fn read(
    path: &Path,
    tenant: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<MeterRow>, String> {
    Ok(rows(
        read_counts(path, tenant, from_ms, to_ms)?
            .into_iter()
            .collect(),
    ))
}

fn mechanism_column(m: Option<u64>) -> i64 {
    m.and_then(|m| i64::try_from(m).ok()).unwrap_or(-1)
}

fn read_counts(
    path: &Path,
    tenant: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(MeterKey, Counts)>, String> {
    let sql_err = |e: rusqlite::Error| format!("metering: {}: {e}", path.display());
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err)?;
    let mut stmt = conn
        .prepare(
            "SELECT tenant, hour_ms, operation, mechanism, count, bytes_in, bytes_out \
             FROM metering WHERE (?1 IS NULL OR tenant = ?1) AND hour_ms >= ?2 AND hour_ms < ?3",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![tenant, from_ms, to_ms], |row| {
            let mechanism: i64 = row.get(3)?;
            Ok((
                MeterKey {
                    tenant: row.get(0)?,
                    hour_ms: row.get(1)?,
                    operation: row.get(2)?,
                    mechanism: u64::try_from(mechanism).ok(),
                },
                Counts {
                    count: row.get::<_, i64>(4)?.max(0) as u64,
                    bytes_in: row.get::<_, i64>(5)?.max(0) as u64,
                    bytes_out: row.get::<_, i64>(6)?.max(0) as u64,
                },
            ))
        })
        .map_err(sql_err)?;
    rows.collect::<Result<_, _>>().map_err(sql_err)
}

/// Adds `rows` to the store's counters, in the caller's transaction.
pub(crate) fn write(
    tx: &rusqlite::Transaction<'_>,
    rows: &HashMap<MeterKey, Counts>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO metering (tenant, hour_ms, operation, mechanism, count, bytes_in, bytes_out) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (tenant, hour_ms, operation, mechanism) DO UPDATE SET \
         count = count + excluded.count, bytes_in = bytes_in + excluded.bytes_in, \
         bytes_out = bytes_out + excluded.bytes_out",
    )?;
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (k, c) in rows {
        stmt.execute(params![
            k.tenant,
            k.hour_ms,
            k.operation,
            mechanism_column(k.mechanism),
            clamp(c.count),
            clamp(c.bytes_in),
            clamp(c.bytes_out)
        ])?;
    }
    Ok(())
}

/// `hsmlink-server metering`: the store's metering rows.
#[derive(Debug, clap::Args)]
pub struct MeteringArgs {
    /// Path of server.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Hours from this time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms).
    #[arg(long)]
    pub since: Option<String>,
    /// Hours before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hsmlink-server metering`: prints the rows. Counts of the last
/// flush interval of a running server are not in the store yet.
pub fn run(args: &MeteringArgs) -> Result<(), String> {
    let config = crate::config::Config::load(&args.config).map_err(|e| e.to_string())?;
    let from = match &args.since {
        Some(t) => crate::audit::record::parse_time(t)?,
        None => i64::MIN,
    };
    let to = match &args.until {
        Some(t) => crate::audit::record::parse_time(t)?,
        None => i64::MAX,
    };
    let rows = read(&config.store.path, args.tenant.as_deref(), from, to)?;
    let mut out = String::new();
    if args.json {
        for row in &rows {
            out.push_str(&serde_json::to_string(row).map_err(|e| e.to_string())?);
            out.push('\n');
        }
    } else {
        out.push_str(&format!(
            "{:<16} {:<24} {:<22} {:<28} {:>10} {:>14} {:>14}\n",
            "TENANT", "HOUR (UTC)", "OPERATION", "MECHANISM", "CALLS", "BYTES IN", "BYTES OUT"
        ));
        for r in &rows {
            out.push_str(&format!(
                "{:<16} {:<24} {:<22} {:<28} {:>10} {:>14} {:>14}\n",
                r.tenant,
                r.hour,
                r.operation,
                r.mechanism_name.as_deref().unwrap_or("-"),
                r.count,
                r.bytes_in,
                r.bytes_out
            ));
        }
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_per_hour_and_flush_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsmlink.db");
        let _store = crate::store::SqliteStore::open(&path).unwrap();
        let m = Metering::new(Some(path.clone()));
        let t0 = 1_700_000_000_000;
        m.add("demo", t0, "C_Sign", Some(0x1041), 32, 64);
        m.add("demo", t0 + 1, "C_Sign", Some(0x1041), 32, 64);
        m.add("demo", t0 + HOUR_MS, "C_Sign", Some(0x1041), 32, 64);
        m.add("acme", t0, "C_GenerateRandom", None, 0, 16);
        let rows = m.report(Some("demo"), 0, i64::MAX).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].count, rows[0].bytes_in, rows[0].bytes_out),
            (2, 64, 128)
        );
        // Flush, then count more: the report adds both.
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        write(&tx, &m.take()).unwrap();
        tx.commit().unwrap();
        m.add("demo", t0, "C_Sign", Some(0x1041), 32, 64);
        let tx = conn.transaction().unwrap();
        write(&tx, &m.take()).unwrap();
        tx.commit().unwrap();
        let rows = read(&path, None, 0, i64::MAX).unwrap();
        assert_eq!(rows.len(), 3);
        let sign = rows.iter().find(|r| r.tenant == "demo").unwrap();
        assert_eq!(sign.count, 3);
        assert_eq!(sign.mechanism_name.as_deref(), Some("CKM_ECDSA"));
        let random = rows.iter().find(|r| r.tenant == "acme").unwrap();
        assert_eq!(random.mechanism, None);
        assert_eq!(
            read(&path, Some("demo"), hour_of(t0) + 1, i64::MAX)
                .unwrap()
                .len(),
            1
        );
    }
}
