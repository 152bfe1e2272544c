//! Reading the audit log: [`verify`] recomputes every chain and checks the
//! head signatures; [`export`] and [`query`] give records as JSON. Both
//! open the store read-only and work while the server runs.
//!
//! An exported line is the record's canonical object with two keys added:
//! `hash` (SHA-256 of the canonical encoding, hex) and `time` (`ts_ms` as
//! RFC 3339). Removing those two keys and re-encoding canonically gives the
//! bytes that hash to `hash`, so an export can be checked without the store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use super::key;
use super::record::{Record, genesis, head_message, hex, rfc3339, sha256, unhex};

/// Which records to export.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The tenant's chain (or `@provider`); every chain if `None`.
    pub chain: Option<String>,
    /// `ts_ms` at or after this.
    pub since_ms: Option<i64>,
    /// `ts_ms` before this.
    pub until_ms: Option<i64>,
    /// Records that used this key handle (or made, destroyed, wrapped it).
    pub key: Option<u64>,
}

fn open(path: &Path) -> Result<Connection, String> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn sql(e: rusqlite::Error) -> String {
    format!("audit store: {e}")
}

/// One exported record: the record and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exported {
    pub record: Record,
    pub hash: String,
}

impl Exported {
    /// The JSON line of an export (see the module documentation).
    pub fn json_line(&self) -> String {
        let mut value = serde_json::to_value(&self.record).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("hash".to_owned(), self.hash.clone().into());
            map.insert("time".to_owned(), rfc3339(self.record.ts_ms).into());
        }
        value.to_string()
    }
}

/// Calls `each` for every record matching `filter`, by chain and sequence.
fn scan(
    path: &Path,
    filter: &Filter,
    mut each: impl FnMut(Exported) -> Result<bool, String>,
) -> Result<(), String> {
    let conn = open(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT body, hash FROM audit_records \
             WHERE (?1 IS NULL OR chain = ?1) AND (?2 IS NULL OR ts_ms >= ?2) \
             AND (?3 IS NULL OR ts_ms < ?3) ORDER BY chain, seq",
        )
        .map_err(sql)?;
    let mut rows = stmt
        .query(params![filter.chain, filter.since_ms, filter.until_ms])
        .map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        let body: String = row.get(0).map_err(sql)?;
        let hash: Vec<u8> = row.get(1).map_err(sql)?;
        let Some(record) = Record::parse_canonical(body.as_bytes()) else {
            return Err(format!(
                "a stored record is not a canonical record: run `hsmlink-server audit verify` \
                 ({})",
                body.chars().take(60).collect::<String>()
            ));
        };
        if let Some(k) = filter.key
            && record.key != Some(k)
            && !record.objects.contains(&k)
        {
            continue;
        }
        if !each(Exported {
            record,
            hash: hex(&hash),
        })? {
            break;
        }
    }
    Ok(())
}

/// Writes the matching records as JSON lines; returns how many.
pub fn export(path: &Path, filter: &Filter, out: &mut dyn Write) -> Result<u64, String> {
    let mut n = 0;
    scan(path, filter, |e| {
        writeln!(out, "{}", e.json_line()).map_err(|e| format!("export: {e}"))?;
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// The matching records, at most `limit` (for the admin API's queries).
pub fn query(path: &Path, filter: &Filter, limit: usize) -> Result<Vec<Exported>, String> {
    let mut out = Vec::new();
    scan(path, filter, |e| {
        out.push(e);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// What [`verify`] found in one chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Signed heads checked.
    pub heads: u64,
    /// The last record a valid signature covers (0: none).
    pub signed_through: u64,
    pub problems: Vec<Problem>,
}

/// A broken link, a changed or missing record, a bad signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub chain: String,
    /// The record at fault, where one is.
    pub seq: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "chain {}: record {seq}: {}", self.chain, self.message),
            None => write!(f, "chain {}: {}", self.chain, self.message),
        }
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub server_id: Option<String>,
    /// The key the signatures were checked with.
    pub public_key: Option<String>,
    pub chains: Vec<ChainReport>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.problems.is_empty())
    }

    /// Every problem, chain by chain, in record order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.chains.iter().flat_map(|c| c.problems.iter())
    }
}

/// One stored row.
struct Row {
    seq: u64,
    ts_ms: i64,
    op: String,
    key: Option<u64>,
    body: String,
    hash: Vec<u8>,
}

/// Recomputes every chain (or `chain` alone) of the store at `path` and
/// checks its signed heads with `public_key` (the audit key file's; with
/// `None`, the key recorded in the store, which proves less).
pub fn verify(
    path: &Path,
    public_key: Option<[u8; 32]>,
    chain: Option<&str>,
) -> Result<VerifyReport, String> {
    let conn = open(path)?;
    let meta = |name: &str| -> Result<Option<String>, String> {
        conn.query_row(
            "SELECT value FROM audit_meta WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)
    };
    let server_id = meta("server_id")?;
    let stored_key = meta("public_key")?;
    let mut report = VerifyReport {
        server_id: server_id.clone(),
        ..VerifyReport::default()
    };
    let key: Option<Vec<u8>> = match (public_key, &stored_key) {
        (Some(k), _) => Some(k.to_vec()),
        (None, Some(stored)) => unhex(stored),
        (None, None) => None,
    };
    report.public_key = key.as_deref().map(hex);
    let mut chains: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT chain FROM audit_records UNION SELECT DISTINCT chain FROM audit_heads",
            )
            .map_err(sql)?;
        let names = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
        names.collect::<Result<_, _>>().map_err(sql)?
    };
    chains.sort();
    if let Some(only) = chain {
        chains.retain(|c| c == only);
    }
    for name in chains {
        let mut c = ChainReport {
            chain: name.clone(),
            ..ChainReport::default()
        };
        let problem = |c: &mut ChainReport, seq: Option<u64>, message: String| {
            c.problems.push(Problem {
                chain: name.clone(),
                seq,
                message,
            });
        };
        if let (Some(stored), Some(k)) = (&stored_key, &public_key)
            && *stored != hex(k)
        {
            problem(
                &mut c,
                None,
                format!(
                    "the store names audit key {stored}, not the key file's {}",
                    hex(k)
                ),
            );
        }
        let Some(server_id) = &server_id else {
            problem(
                &mut c,
                None,
                "the store has no audit identity (server_id)".to_owned(),
            );
            report.chains.push(c);
            continue;
        };
        let mut stmt = conn
            .prepare(
                "SELECT seq, ts_ms, op, key_handle, body, hash FROM audit_records \
                 WHERE chain = ?1 ORDER BY seq",
            )
            .map_err(sql)?;
        let mut rows = stmt.query(params![name]).map_err(sql)?;
        // The hash each record's successor must link to, by sequence.
        let mut hashes: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
        let mut prev: Option<(u64, [u8; 32])> = None;
        let mut first: Option<(u64, String)> = None;
        let mut prunes: Vec<(u64, String)> = Vec::new();
        while let Some(r) = rows.next().map_err(sql)? {
            let row = Row {
                seq: r.get::<_, i64>(0).map_err(sql)?.max(0) as u64,
                ts_ms: r.get(1).map_err(sql)?,
                op: r.get(2).map_err(sql)?,
                key: r
                    .get::<_, Option<i64>>(3)
                    .map_err(sql)?
                    .map(|k| k.max(0) as u64),
                body: r.get(4).map_err(sql)?,
                hash: r.get(5).map_err(sql)?,
            };
            c.records += 1;
            if c.first_seq == 0 {
                c.first_seq = row.seq;
            }
            c.last_seq = row.seq;
            let computed = sha256(row.body.as_bytes());
            let record = Record::parse_canonical(row.body.as_bytes());
            match &record {
                None => problem(
                    &mut c,
                    Some(row.seq),
                    "changed: not a canonical version-1 record".to_owned(),
                ),
                Some(rec) => {
                    if computed[..] != row.hash[..] {
                        problem(
                            &mut c,
                            Some(row.seq),
                            "changed: its content does not hash to its stored hash".to_owned(),
                        );
                    } else if rec.seq != row.seq
                        || rec.chain != name
                        || rec.ts_ms != row.ts_ms
                        || rec.op != row.op
                        || rec.key != row.key
                    {
                        problem(
                            &mut c,
                            Some(row.seq),
                            "changed: its indexed columns (seq, chain, time, op, key) differ \
                             from its hashed content"
                                .to_owned(),
                        );
                    }
                }
            }
            let rec_prev = record.as_ref().map(|r| r.prev.clone()).unwrap_or_default();
            match prev {
                None => {
                    if row.seq == 1 {
                        if rec_prev != hex(&genesis(server_id, &name)) {
                            problem(
                                &mut c,
                                Some(1),
                                "changed: the first record does not start from the genesis hash"
                                    .to_owned(),
                            );
                        }
                    } else {
                        first = Some((row.seq, rec_prev.clone()));
                    }
                }
                Some((p_seq, p_hash)) => {
                    if row.seq != p_seq + 1 {
                        let missing = if row.seq == p_seq + 2 {
                            format!("record {} is missing (deleted)", p_seq + 1)
                        } else {
                            format!(
                                "records {} to {} are missing (deleted)",
                                p_seq + 1,
                                row.seq - 1
                            )
                        };
                        problem(&mut c, Some(p_seq + 1), missing);
                    } else if rec_prev != hex(&p_hash) {
                        problem(
                            &mut c,
                            Some(p_seq),
                            format!(
                                "changed: record {} holds another hash for it (or record {} was changed)",
                                row.seq, row.seq
                            ),
                        );
                    }
                }
            }
            if let Some(rec) = &record
                && rec.op == "audit.pruned"
                && let (Some(through), Some(hash)) = (rec.pruned_through, &rec.pruned_hash)
            {
                prunes.push((through, hash.clone()));
            }
            prev = Some((row.seq, computed));
            hashes.insert(row.seq, computed);
        }
        drop(rows);
        if let Some((seq, first_prev)) = first {
            let covered = prunes
                .iter()
                .any(|(through, hash)| *through + 1 == seq && *hash == first_prev);
            if !covered {
                problem(
                    &mut c,
                    Some(1),
                    format!(
                        "records 1 to {} are missing and no audit.pruned record accounts for them",
                        seq - 1
                    ),
                );
            }
        }
        // Signed heads.
        let mut stmt = conn
            .prepare(
                "SELECT seq, hash, ts_ms, signature FROM audit_heads WHERE chain = ?1 ORDER BY seq",
            )
            .map_err(sql)?;
        let heads = stmt
            .query_map(params![name], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        let (first_seq, last_seq) = (c.first_seq, c.last_seq);
        for (seq, hash, ts_ms, signature) in heads {
            c.heads += 1;
            let message = head_message(server_id, &name, seq, &hash, ts_ms);
            let signed = key
                .as_deref()
                .is_some_and(|k| key::verify(k, &message, &signature));
            if !signed {
                problem(
                    &mut c,
                    Some(seq),
                    "the signature of the chain head at this record does not verify".to_owned(),
                );
                continue;
            }
            match hashes.get(&seq) {
                Some(h) if h[..] == hash[..] => c.signed_through = c.signed_through.max(seq),
                Some(_) => problem(
                    &mut c,
                    Some(seq),
                    "changed: it is not the record the signed chain head names".to_owned(),
                ),
                None if seq < first_seq => {} // pruned
                None if seq > last_seq => problem(
                    &mut c,
                    Some(last_seq + 1),
                    format!(
                        "records {} to {seq} are missing (deleted): a signed chain head names record {seq}",
                        last_seq + 1
                    ),
                ),
                None => {} // a gap, reported above
            }
        }
        c.problems.sort_by_key(|p| p.seq.unwrap_or(0));
        report.chains.push(c);
    }
    Ok(report)
}
