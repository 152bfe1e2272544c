//! The audit record, its canonical encoding (version 1), the hash chain and
//! the signed chain heads.
//!
//! Canonical encoding, version 1: the record as one JSON object, UTF-8, no
//! whitespace, keys in byte order (the fields below are declared in that
//! order and serialized in declaration order), absent optional fields and
//! empty lists left out, integers in decimal, strings escaped as
//! `serde_json` does (only `"`, `\` and control characters). The record's
//! hash is SHA-256 of those bytes; `prev` is the previous record's hash in
//! lower-case hex, and the first record of a chain has the chain's genesis
//! hash as `prev` ([`genesis`]).
//!
//! A chain head is signed (Ed25519) over [`head_message`].

use serde::{Deserialize, Serialize};

/// The version of the canonical encoding this server writes (`v`).
pub const FORMAT_VERSION: u32 = 1;

/// The chain of records not about one tenant (admin actions on the
/// provider itself). Tenant names cannot start with `@`.
pub const PROVIDER_CHAIN: &str = "@provider";

/// One audit record. Field order is the canonical key order: keep it sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The application instance (16 bytes, hex) that made the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `sha256:` + SHA-256 of the client certificate's DER, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The chain the record belongs to: the tenant's name, or `@provider`.
    pub chain: String,
    /// Free text that holds no secret: the user type of a login, why a
    /// login expired, an admin action's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Time the server spent on the call, microseconds.
    pub duration_us: u64,
    /// The key the call used (its tenant handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism_name: Option<String>,
    /// Objects the call made, destroyed, changed or wrapped (handles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<u64>,
    /// The PKCS#11 function (`C_Sign`), or an event: `login.expired`,
    /// `audit.pruned`, `admin.<action>`.
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Hash of the previous record of the chain (hex), or the genesis hash.
    pub prev: String,
    /// `audit.pruned`: the hash of the last record deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_hash: Option<String>,
    /// `audit.pruned`: every record up to this sequence number was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<u64>,
    /// The `CK_RV` of the reply (or 0/`CKR_OK` for events).
    pub rv: u64,
    pub rv_name: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The tenant's slot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// The peer address of the connection that carried the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The client certificate's subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When the call arrived, UTC, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Canonical encoding version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// How the call arrived if not over the module's wire: `http-api` (the
    /// JSON crypto API of the admin listener). Absent otherwise, so records
    /// of the wire encode as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Record {
    /// The canonical encoding (see the module documentation).
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored encoding; `None` unless it is a version-1 record
    /// whose canonical encoding is exactly `body`.
    pub fn parse_canonical(body: &[u8]) -> Option<Self> {
        let record: Self = serde_json::from_slice(body).ok()?;
        (record.v == FORMAT_VERSION && record.canonical() == body).then_some(record)
    }
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `prev` of a chain's first record: SHA-256 of
/// `hsmlink-audit-v1 genesis\n{server_id}\n{chain}`, where `server_id` is the
/// random id the server drew when it first opened its audit log.
pub fn genesis(server_id: &str, chain: &str) -> [u8; 32] {
    sha256(format!("hsmlink-audit-v1 genesis\n{server_id}\n{chain}").as_bytes())
}

/// What a head signature signs:
/// `hsmlink-audit-v1 head\n{server_id}\n{chain}\n{seq}\n{hash hex}\n{ts_ms}`.
pub fn head_message(server_id: &str, chain: &str, seq: u64, hash: &[u8], ts_ms: i64) -> Vec<u8> {
    format!(
        "hsmlink-audit-v1 head\n{server_id}\n{chain}\n{seq}\n{}\n{ts_ms}",
        hex(hash)
    )
    .into_bytes()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// `ts_ms` as RFC 3339 UTC with milliseconds (`2025-01-31T12:00:00.123Z`).
pub fn rfc3339(ts_ms: i64) -> String {
    let nanos = i128::from(ts_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ts_ms.to_string(),
    }
}

/// Parses a time for `--since`/`--until`: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]Z`
/// (UTC), or milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad =
        || format!("{text:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix milliseconds");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let (date, clock) = match text.split_once('T') {
        Some((d, c)) => (d, Some(c.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let mut d = date.split('-').map(str::parse::<i32>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(day)), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(day).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, day).map_err(|_| bad())?;
    let (mut h, mut min, mut s) = (0u8, 0u8, 0u8);
    if let Some(clock) = clock {
        let parts: Vec<&str> = clock.split(':').collect();
        let num = |i: usize| -> Result<u8, String> {
            parts.get(i).map_or(Ok(0), |p| p.parse().map_err(|_| bad()))
        };
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        (h, min, s) = (num(0)?, num(1)?, num(2)?);
    }
    let t = time::Time::from_hms(h, min, s).map_err(|_| bad())?;
    let at = time::PrimitiveDateTime::new(date, t).assume_utc();
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Record {
        Record {
            app: Some("00".repeat(16)),
            cert: Some("sha256:ab".to_owned()),
            chain: "demo".to_owned(),
            detail: Some("user \"x\"".to_owned()),
            duration_us: 12,
            key: Some(7),
            mechanism: Some(0x1041),
            mechanism_name: Some("CKM_ECDSA".to_owned()),
            objects: vec![1, 2],
            op: "C_Sign".to_owned(),
            partition: Some("demo-p0".to_owned()),
            prev: "00".to_owned(),
            pruned_hash: Some("11".to_owned()),
            pruned_through: Some(3),
            rv: 0,
            rv_name: "CKR_OK".to_owned(),
            seq: 4,
            slot: Some(0),
            source: Some("127.0.0.1:1".to_owned()),
            subject: Some("CN=demo".to_owned()),
            tenant: Some("demo".to_owned()),
            ts_ms: 1,
            v: FORMAT_VERSION,
            via: Some("http-api".to_owned()),
        }
    }

    #[test]
    fn canonical_keys_are_sorted_and_round_trip() {
        let r = full();
        let body = r.canonical();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        // serde_json's Map without preserve_order is sorted: compare with
        // the order in the encoding itself.
        let text = String::from_utf8(body.clone()).unwrap();
        let mut positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        let sorted = {
            let mut p = positions.clone();
            p.sort_unstable();
            p
        };
        assert_eq!(positions, sorted, "{text}");
        positions.dedup();
        assert_eq!(positions.len(), 24);
        assert_eq!(Record::parse_canonical(&body), Some(r));
        // Not canonical: whitespace, or a key out of order.
        let spaced = text.replacen(",", ", ", 1);
        assert_eq!(Record::parse_canonical(spaced.as_bytes()), None);
    }

    #[test]
    fn optional_fields_are_left_out() {
        let r = Record {
            chain: "demo".to_owned(),
            op: "C_Login".to_owned(),
            prev: "ab".to_owned(),
            rv_name: "CKR_OK".to_owned(),
            seq: 1,
            v: 1,
            ..Record::default()
        };
        assert_eq!(
            String::from_utf8(r.canonical()).unwrap(),
            r#"{"chain":"demo","duration_us":0,"op":"C_Login","prev":"ab","rv":0,"rv_name":"CKR_OK","seq":1,"ts_ms":0,"v":1}"#
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:01Z").unwrap(), 60_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time("1234").unwrap(), 1234);
        assert!(parse_time("yesterday").is_err());
        assert_eq!(unhex(&hex(&[1, 0xab])), Some(vec![1, 0xab]));
    }
}
