//! Metering over time, for the web console's charts: per tenant, per
//! partition, per UTC minute, the number of calls, how many failed, and
//! their total and largest server time.
//!
//! [`crate::metering`] keeps billing totals (per hour, per operation,
//! successful calls only, no partition, no latency); charts of operations
//! per second, latency and errors need another cut, so this series is kept
//! beside it. Counted: every call the audit hook plans (cryptographic calls
//! but length queries, key management, object changes, logins), failures
//! too. Calls add to counters in memory ([`Series::add`]); the audit writer
//! thread writes them to the store (`metering_minutes`) with the metering
//! counters, every `[metering] flush_interval_s` and at shutdown, and
//! deletes minutes older than [`RETENTION_MS`]. [`query`] adds the counters
//! not yet written, so a chart is live.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

/// One minute, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// Minutes older than this are deleted at each flush (31 days).
pub const RETENTION_MS: i64 = 31 * 24 * 60 * MINUTE_MS;

/// One bucket's key. `partition` is empty for calls on no partition
/// (a login on a session whose slot is gone, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub tenant: String,
    pub partition: String,
    /// Start of the minute, ms since the Unix epoch (UTC).
    pub minute_ms: i64,
}

/// Counts of one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub calls: u64,
    pub errors: u64,
    pub latency_us_sum: u64,
    pub latency_us_max: u64,
}

impl Bucket {
    fn add(&mut self, other: Bucket) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency_us_sum = self.latency_us_sum.saturating_add(other.latency_us_sum);
        self.latency_us_max = self.latency_us_max.max(other.latency_us_max);
    }

    /// Mean server time of the minute's calls, ms.
    pub fn mean_latency_ms(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.latency_us_sum as f64 / self.calls as f64 / 1000.0
        }
    }
}

/// The counters not yet in the store.
#[derive(Debug, Default)]
pub struct Series {
    pending: Mutex<HashMap<SeriesKey, Bucket>>,
}

/// The minute that holds `ts_ms`.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

impl Series {
    /// Counts one call.
    pub fn add(
        &self,
        tenant: &str,
        partition: Option<&str>,
        ts_ms: i64,
        duration_us: u64,
        failed: bool,
    ) {
        let key = SeriesKey {
            tenant: tenant.to_owned(),
            partition: partition.unwrap_or_default().to_owned(),
            minute_ms: minute_of(ts_ms),
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .add(Bucket {
                calls: 1,
                errors: u64::from(failed),
                latency_us_sum: duration_us,
                latency_us_max: duration_us,
            });
    }

    /// Takes the counters not yet in the store.
    pub fn take(&self) -> HashMap<SeriesKey, Bucket> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back counters whose write failed.
    pub fn restore(&self, rows: HashMap<SeriesKey, Bucket>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, b) in rows {
            pending.entry(k).or_default().add(b);
        }
    }

    fn pending_matching(&self, filter: &Filter<'_>) -> Vec<(i64, Bucket)> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| filter.matches(k))
            .map(|(k, b)| (k.minute_ms, *b))
            .collect()
    }
}

/// Which minutes a chart shows.
#[derive(Clone, Copy, Debug)]
pub struct Filter<'a> {
    /// `None`: every tenant (the provider's overall chart).
    pub tenant: Option<&'a str>,
    /// `None`: every partition of the tenant(s).
    pub partition: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Filter<'_> {
    fn matches(&self, k: &SeriesKey) -> bool {
        self.tenant.is_none_or(|t| t == k.tenant)
            && self.partition.is_none_or(|p| p == k.partition)
            && k.minute_ms >= self.from_ms
            && k.minute_ms < self.to_ms
    }
}

/// One point of a chart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub minute_ms: i64,
    pub calls: u64,
    pub errors: u64,
    /// Calls per second over the minute.
    pub ops_per_s: f64,
    pub mean_latency_ms: f64,
    pub max_latency_ms: f64,
}

/// Every minute of `[from_ms, to_ms)` (empty minutes as zeros), summed
/// over the tenants and partitions `filter` names: the store's rows (if
/// `store` is given) plus `pending`.
pub fn query(
    store: Option<&Path>,
    pending: &Series,
    filter: &Filter<'_>,
) -> Result<Vec<Point>, String> {
    let mut minutes: HashMap<i64, Bucket> = HashMap::new();
    if let Some(path) = store {
        for (m, b) in read(path, filter)? {
            minutes.entry(m).or_default().add(b);
        }
    }
    for (m, b) in pending.pending_matching(filter) {
        minutes.entry(m).or_default().add(b);
    }
    let first = minute_of(filter.from_ms);
    let mut points = Vec::new();
    let mut m = first;
    while m < filter.to_ms && points.len() < 24 * 60 {
        let b = minutes.get(&m).copied().unwrap_or_default();
        points.push(Point {
            minute_ms: m,
            calls: b.calls,
            errors: b.errors,
            ops_per_s: b.calls as f64 / 60.0,
            mean_latency_ms: b.mean_latency_ms(),
            max_latency_ms: b.latency_us_max as f64 / 1000.0,
        });
        m += MINUTE_MS;
    }
    Ok(points)
}

fn read(path: &Path, filter: &Filter<'_>) -> Result<Vec<(i64, Bucket)>, String> {
    let sql_err = |e: rusqlite::Error| format!("metering series: {}: {e}", path.display());
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err)?;
    let mut stmt = conn
        .prepare(
            "SELECT minute_ms, calls, errors, latency_us_sum, latency_us_max \
             FROM metering_minutes WHERE (?1 IS NULL OR tenant = ?1) \
             AND (?2 IS NULL OR partition = ?2) AND minute_ms >= ?3 AND minute_ms < ?4",
        )
        .map_err(sql_err)?;
    let unsigned = |v: i64| v.max(0) as u64;
    let rows = stmt
        .query_map(
            params![
                filter.tenant,
                filter.partition,
                filter.from_ms,
                filter.to_ms
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    Bucket {
                        calls: unsigned(row.get(1)?),
                        errors: unsigned(row.get(2)?),
                        latency_us_sum: unsigned(row.get(3)?),
                        latency_us_max: unsigned(row.get(4)?),
                    },
                ))
            },
        )
        .map_err(sql_err)?;
    rows.collect::<Result<_, _>>().map_err(sql_err)
}

/// Adds `rows` to the store's minutes, in the caller's transaction, and
/// deletes the minutes past [`RETENTION_MS`] before `now_ms`.
pub(crate) fn write(
    tx: &rusqlite::Transaction<'_>,
    rows: &HashMap<SeriesKey, Bucket>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO metering_minutes \
         (tenant, partition, minute_ms, calls, errors, latency_us_sum, latency_us_max) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (tenant, partition, minute_ms) DO UPDATE SET \
         calls = calls + excluded.calls, errors = errors + excluded.errors, \
         latency_us_sum = latency_us_sum + excluded.latency_us_sum, \
         latency_us_max = max(latency_us_max, excluded.latency_us_max)",
    )?;
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (k, b) in rows {
        stmt.execute(params![
            k.tenant,
            k.partition,
            k.minute_ms,
            clamp(b.calls),
            clamp(b.errors),
            clamp(b.latency_us_sum),
            clamp(b.latency_us_max)
        ])?;
    }
    tx.execute(
        "DELETE FROM metering_minutes WHERE minute_ms < ?1",
        params![now_ms.saturating_sub(RETENTION_MS)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_add_up_from_memory_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsmlink.db");
        let _store = crate::store::SqliteStore::open(&path).unwrap();
        let s = Series::default();
        let t0 = 1_700_000_040_000; // a minute boundary
        s.add("demo", Some("demo-p0"), t0 + 1, 1000, false);
        s.add("demo", Some("demo-p0"), t0 + 2, 3000, true);
        s.add("demo", Some("demo-p1"), t0 + MINUTE_MS, 500, false);
        s.add("acme", Some("acme-p0"), t0, 10, false);
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        write(&tx, &s.take(), t0).unwrap();
        tx.commit().unwrap();
        s.add("demo", Some("demo-p0"), t0 + 5, 2000, false);
        let filter = Filter {
            tenant: Some("demo"),
            partition: Some("demo-p0"),
            from_ms: t0,
            to_ms: t0 + 2 * MINUTE_MS,
        };
        let points = query(Some(&path), &s, &filter).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].calls, points[0].errors), (3, 1));
        assert!((points[0].mean_latency_ms - 2.0).abs() < 1e-9);
        assert!((points[0].max_latency_ms - 3.0).abs() < 1e-9);
        assert_eq!(points[1].calls, 0);
        let all = Filter {
            tenant: Some("demo"),
            partition: None,
            ..filter
        };
        let points = query(Some(&path), &s, &all).unwrap();
        assert_eq!(points[1].calls, 1);
        // Past the retention: deleted at the next flush.
        let tx = conn.transaction().unwrap();
        write(&tx, &HashMap::new(), t0 + RETENTION_MS + 2 * MINUTE_MS).unwrap();
        tx.commit().unwrap();
        let points = query(Some(&path), &Series::default(), &all).unwrap();
        assert!(points.iter().all(|p| p.calls == 0));
    }
}
