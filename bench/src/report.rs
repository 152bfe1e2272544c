//! Results: one record per (module, operation, thread count), printed as
//! text or as one JSON line, and the comparison table over several runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::runner::{Measurement, percentile};

/// Latency statistics in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    #[serde(default)]
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// One measurement, as `run --json` prints it (one line each).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Name of the measured peer (`--peer`, default the module's file name).
    pub peer: String,
    pub module: String,
    /// The module's library description and version (C_GetInfo).
    pub library: String,
    pub op: String,
    /// "ok", "unsupported" (a mechanism is not listed) or "failed" (set-up failed).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub threads: usize,
    /// Sessions the threads shared (each thread uses its own in turn).
    #[serde(default)]
    pub sessions: usize,
    /// Measured window (seconds) of the median run, warm-up excluded.
    pub duration_s: f64,
    pub warmup_s: f64,
    pub bytes_per_op: usize,
    /// Bytes per update call of a multi-part bulk operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<usize>,
    pub bulk: bool,
    /// PKCS#11 calls per operation (cryptoki asks every output length first).
    pub calls_per_op: usize,
    pub ops: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Operations per second of the median run (by ops/s).
    pub ops_per_s: f64,
    /// Operations per second of every run, in order; the record's other
    /// numbers are the median run's.
    #[serde(default)]
    pub runs_ops_per_s: Vec<f64>,
    /// Requests the module sent per operation, counted by `--count-cmd`
    /// around a probe of single-threaded operations (None: not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips_per_op: Option<f64>,
    /// How `round_trips_per_op` was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips_source: Option<String>,
    /// Resident memory (VmRSS) the module added to this process: loading,
    /// C_Initialize, login and opening every session, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rss_kib: Option<i64>,
    /// The server's (`--server-pid`) VmRSS growth per session opened, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_per_session_b: Option<f64>,
    /// Input bytes per second, in 10^6 bytes (bulk operations; 0 otherwise).
    pub mb_per_s: f64,
    /// Input bits per second, in 10^6 bits (bulk operations; 0 otherwise).
    pub mbit_per_s: f64,
    pub latency_us: Latency,
}

/// What every record of one run shares.
#[derive(Clone, Debug)]
pub struct Context {
    pub peer: String,
    pub module: String,
    pub library: String,
    pub warmup_s: f64,
    pub client_rss_kib: Option<i64>,
    pub server_rss_per_session_b: Option<f64>,
}

/// The facts of one operation, for a record.
#[derive(Clone, Copy, Debug)]
pub struct OpFacts<'a> {
    pub op: &'a str,
    pub bulk: bool,
    pub bytes_per_op: usize,
    pub chunk: Option<usize>,
    pub calls_per_op: usize,
    pub round_trips_per_op: Option<f64>,
    pub round_trips_source: Option<&'a str>,
}

impl Record {
    fn empty(context: &Context, facts: OpFacts<'_>, threads: usize, status: &str) -> Record {
        Record {
            peer: context.peer.clone(),
            module: context.module.clone(),
            library: context.library.clone(),
            op: facts.op.to_string(),
            status: status.to_string(),
            detail: None,
            threads,
            sessions: threads,
            duration_s: 0.0,
            warmup_s: context.warmup_s,
            bytes_per_op: facts.bytes_per_op,
            chunk: facts.chunk,
            bulk: facts.bulk,
            calls_per_op: facts.calls_per_op,
            ops: 0,
            errors: 0,
            first_error: None,
            ops_per_s: 0.0,
            runs_ops_per_s: Vec::new(),
            round_trips_per_op: facts.round_trips_per_op,
            round_trips_source: facts.round_trips_source.map(str::to_string),
            client_rss_kib: context.client_rss_kib,
            server_rss_per_session_b: context.server_rss_per_session_b,
            mb_per_s: 0.0,
            mbit_per_s: 0.0,
            latency_us: Latency::default(),
        }
    }

    /// An operation that did not run: "unsupported" or "failed".
    pub fn not_run(
        context: &Context,
        facts: OpFacts<'_>,
        threads: usize,
        status: &str,
        detail: String,
    ) -> Record {
        let mut record = Record::empty(context, facts, threads, status);
        record.detail = Some(detail);
        record
    }

    /// The median of `runs` (by ops/s; the lower middle one of an even
    /// count), with every run's ops/s.
    pub fn measured(
        context: &Context,
        facts: OpFacts<'_>,
        threads: usize,
        sessions: usize,
        runs: &[Measurement],
    ) -> Record {
        let rate = |m: &Measurement| {
            let secs = m.window.as_secs_f64();
            if secs > 0.0 { m.ops as f64 / secs } else { 0.0 }
        };
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by(|&a, &b| rate(&runs[a]).total_cmp(&rate(&runs[b])));
        let mut record = Record::empty(context, facts, threads, "ok");
        record.sessions = sessions;
        record.runs_ops_per_s = runs.iter().map(rate).collect();
        let Some(m) = order
            .get(runs.len().saturating_sub(1) / 2)
            .map(|&i| &runs[i])
        else {
            return record;
        };
        let secs = m.window.as_secs_f64();
        record.duration_s = secs;
        record.ops = m.ops;
        record.errors = runs.iter().map(|r| r.errors).sum();
        record.first_error = runs.iter().find_map(|r| r.first_error.clone());
        if m.ops == 0 && record.first_error.is_none() {
            // Every operation started in the warm-up and ended after the
            // deadline: say so rather than report a silent zero.
            record.first_error = Some(
                "no operation started and ended in the measured window: lengthen --duration".into(),
            );
        }
        record.ops_per_s = rate(m);
        if facts.bulk && secs > 0.0 {
            let bytes = m.ops as f64 * facts.bytes_per_op as f64;
            record.mb_per_s = bytes / secs / 1e6;
            record.mbit_per_s = bytes * 8.0 / secs / 1e6;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        let n = m.latencies_ns.len();
        record.latency_us = Latency {
            p50: us(percentile(&m.latencies_ns, 0.50)),
            p90: us(percentile(&m.latencies_ns, 0.90)),
            p99: us(percentile(&m.latencies_ns, 0.99)),
            max: us(m.latencies_ns.last().copied().unwrap_or(0)),
            mean: if n == 0 {
                0.0
            } else {
                m.latencies_ns.iter().map(|&ns| ns as f64).sum::<f64>() / n as f64 / 1e3
            },
        };
        record
    }

    /// The human-readable line(s).
    pub fn text(&self) -> String {
        let mut head = format!("{:<18} {:>3} thr", self.op, self.threads);
        if self.sessions > self.threads {
            let _ = write!(head, " {:>4} ses", self.sessions);
        }
        match self.status.as_str() {
            "ok" => {
                let mut line = format!("{head}  {:>10.1} ops/s", self.ops_per_s);
                if self.bulk {
                    let _ = write!(
                        line,
                        "  {:>8.1} MB/s {:>8.1} Mbit/s",
                        self.mb_per_s, self.mbit_per_s
                    );
                }
                let _ = write!(
                    line,
                    "  p50 {} p90 {} p99 {} max {}  ops {} errors {}  [{} B/op, {} calls/op",
                    ms(self.latency_us.p50),
                    ms(self.latency_us.p90),
                    ms(self.latency_us.p99),
                    ms(self.latency_us.max),
                    self.ops,
                    self.errors,
                    self.bytes_per_op,
                    self.calls_per_op,
                );
                if let Some(chunk) = self.chunk {
                    let _ = write!(line, ", {chunk} B/update");
                }
                if let Some(rt) = self.round_trips_per_op {
                    let _ = write!(line, ", {rt:.2} round trips/op");
                }
                if self.runs_ops_per_s.len() > 1 {
                    let runs: Vec<String> = self
                        .runs_ops_per_s
                        .iter()
                        .map(|r| format!("{r:.0}"))
                        .collect();
                    let _ = write!(line, ", runs {}", runs.join("/"));
                }
                line.push(']');
                if let Some(e) = &self.first_error {
                    let _ = write!(line, "\n{:>24} first error: {e}", "");
                }
                line
            }
            status => format!("{head}  {status}: {}", self.detail.as_deref().unwrap_or("")),
        }
    }
}

/// Microseconds as a short human string.
fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}

/// The cell of one record in the comparison table.
fn cell(record: &Record) -> String {
    match record.status.as_str() {
        "ok" => {
            let mut text = if record.bulk {
                format!("{:.0} ({:.0} Mbit/s)", record.ops_per_s, record.mbit_per_s)
            } else {
                format!("{:.0}", record.ops_per_s)
            };
            let _ = write!(text, ", p99 {}", ms(record.latency_us.p99));
            if let Some(rt) = record.round_trips_per_op {
                let _ = write!(text, ", {rt:.1} RT");
            }
            if record.errors > 0 {
                let _ = write!(text, " [{} errors]", record.errors);
            }
            text
        }
        other => other.to_string(),
    }
}

/// A Markdown table: one row per (operation, threads, sessions, bytes per
/// op), one column of ops/s (p99, round trips) per peer, and the ratio `baseline / peer` of ops/s for
/// every other peer. Peers and rows keep their order of first appearance.
pub fn table(records: &[Record], baseline: Option<&str>) -> String {
    let mut peers: Vec<&str> = Vec::new();
    let mut rows: Vec<(String, usize, usize, usize, Option<usize>)> = Vec::new();
    let mut cells: BTreeMap<(usize, usize), &Record> = BTreeMap::new();
    for record in records {
        let peer = match peers.iter().position(|p| *p == record.peer) {
            Some(i) => i,
            None => {
                peers.push(&record.peer);
                peers.len() - 1
            }
        };
        let key = (
            record.op.clone(),
            record.threads,
            record.sessions.max(record.threads),
            record.bytes_per_op,
            record.chunk,
        );
        let row = match rows.iter().position(|r| *r == key) {
            Some(i) => i,
            None => {
                rows.push(key);
                rows.len() - 1
            }
        };
        cells.insert((row, peer), record);
    }
    let base = baseline
        .and_then(|b| peers.iter().position(|p| *p == b))
        .unwrap_or(0);
    let mut out = String::new();
    let mut header = String::from("| op | threads | size |");
    let mut rule = String::from("| --- | ---: | ---: |");
    for peer in &peers {
        let _ = write!(header, " {peer} ops/s |");
        rule.push_str(" ---: |");
    }
    for (i, peer) in peers.iter().enumerate() {
        if i != base {
            let _ = write!(header, " {} / {peer} |", peers.get(base).unwrap_or(&""));
            rule.push_str(" ---: |");
        }
    }
    out.push_str(&header);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for (r, (op, threads, sessions, bytes, chunk)) in rows.iter().enumerate() {
        let threads = if sessions > threads {
            format!("{threads} ({sessions} sessions)")
        } else {
            threads.to_string()
        };
        let size = match chunk {
            Some(chunk) => format!("{} / {}", human_bytes(*bytes), human_bytes(*chunk)),
            None => human_bytes(*bytes),
        };
        let _ = write!(out, "| {op} | {threads} | {size} |");
        for p in 0..peers.len() {
            let text = cells.get(&(r, p)).map(|c| cell(c)).unwrap_or_default();
            let _ = write!(out, " {text} |");
        }
        for p in 0..peers.len() {
            if p == base {
                continue;
            }
            let ratio = match (cells.get(&(r, base)), cells.get(&(r, p))) {
                (Some(b), Some(o)) if b.status == "ok" && o.status == "ok" && o.ops_per_s > 0.0 => {
                    format!("{:.2}", b.ops_per_s / o.ops_per_s)
                }
                _ => "-".to_string(),
            };
            let _ = write!(out, " {ratio} |");
        }
        out.push('\n');
    }
    out
}

pub fn human_bytes(bytes: usize) -> String {
    if bytes == 0 {
        "-".into()
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(peer: &str, op: &str, ops_per_s: f64, status: &str) -> Record {
        let context = Context {
            peer: peer.into(),
            module: "m.so".into(),
            library: "lib".into(),
            warmup_s: 0.5,
            client_rss_kib: None,
            server_rss_per_session_b: None,
        };
        let facts = OpFacts {
            op,
            bulk: false,
            bytes_per_op: 32,
            chunk: None,
            calls_per_op: 3,
            round_trips_per_op: None,
            round_trips_source: None,
        };
        let mut r = Record::not_run(&context, facts, 1, status, String::new());
        r.ops_per_s = ops_per_s;
        r
    }

    #[test]
    fn table_has_ratios_against_the_baseline() {
        let records = [
            record("hsmlink", "sign-ecdsa-p256", 1000.0, "ok"),
            record("softhsm", "sign-ecdsa-p256", 4000.0, "ok"),
            record("hsmlink", "sign-sm2", 900.0, "ok"),
            record("softhsm", "sign-sm2", 0.0, "unsupported"),
        ];
        let text = table(&records, Some("hsmlink"));
        assert!(
            text.contains("| sign-ecdsa-p256 | 1 | 32 B | 1000, p99 0us | 4000, p99 0us | 0.25 |"),
            "{text}"
        );
        assert!(
            text.contains("| sign-sm2 | 1 | 32 B | 900, p99 0us | unsupported | - |"),
            "{text}"
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = record("p", "sha256", 5.0, "ok");
        let line = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back.peer, "p");
        assert_eq!(back.ops_per_s, 5.0);
    }
}
