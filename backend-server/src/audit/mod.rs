//! The tamper-evident audit log.
//!
//! One [`Record`] per call that uses or changes keys or login state (see
//! [`hook`] for the list), per login expiry and per admin action
//! ([`Audit::record_admin`]). Records hold no secret: no PIN, no key value,
//! no data; key handles, mechanisms, the certificate's fingerprint, the
//! source address, the result.
//!
//! Records form one hash chain per tenant (and `@provider` for admin
//! actions on no tenant): each carries the SHA-256 of the previous record's
//! canonical encoding ([`record`]). The writer ([`writer`]) signs the
//! chain heads with the server's Ed25519 audit key ([`key`]) every
//! `sign_every_records` records, every `sign_interval_s` and at shutdown.
//! [`reader`] verifies and exports; [`cli`] is `hsmlink-server audit`.
//!
//! Durability: a call's reply is sent only once its record is committed
//! (`synchronous=FULL`), with group commit across concurrent calls. The one
//! exception is `C_*Init`, whose record is queued without waiting: the
//! operation gives nothing back before its single-part or final call, whose
//! record is committed after the Init's. If a record cannot be written the
//! call answers `CKR_DEVICE_ERROR` (fail closed).

pub mod cli;
pub mod hook;
pub mod key;
pub mod names;
pub mod reader;
pub mod record;
#[cfg(test)]
mod tests;
mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use record::{PROVIDER_CHAIN, Record};

use crate::metering::Metering;
use key::AuditKey;
use writer::{Committer, Writer};

/// What the writer needs (from `[audit]` and `[metering]`).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The store's SQLite file.
    pub db_path: PathBuf,
    /// The Ed25519 seed file (made at first start if missing).
    pub key_file: PathBuf,
    /// Records older than this many days are deleted; `None` or 0: kept.
    pub retention_days: Option<u32>,
    pub sign_every_records: u64,
    pub sign_interval: Duration,
    /// Records queued without waiting, at most; beyond, the caller commits them.
    pub queue_capacity: usize,
    pub metering_flush: Duration,
    /// `true` (default): a commit is on disk (fsync, `synchronous=FULL`)
    /// before the replies it covers; `false`: in the operating system
    /// (`synchronous=NORMAL`): a crash of the server loses nothing, a power
    /// loss or kernel crash may lose the last commits.
    pub fsync: bool,
}

impl AuditSettings {
    /// Defaults for a store at `db_path` (key file `audit.key` beside it).
    pub fn new(db_path: &Path) -> Self {
        Self {
            db_path: db_path.to_owned(),
            key_file: default_key_file(db_path),
            retention_days: None,
            sign_every_records: 1000,
            sign_interval: Duration::from_secs(60),
            queue_capacity: 4096,
            metering_flush: Duration::from_secs(60),
            fsync: true,
        }
    }
}

/// `audit.key` in the store's directory.
pub fn default_key_file(db_path: &Path) -> PathBuf {
    db_path.parent().unwrap_or(Path::new(".")).join("audit.key")
}

/// The audit log could not record: the call fails closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit: {0}")]
pub struct AuditError(pub String);

/// An action of the admin plane, for [`Audit::record_admin`].
#[derive(Clone, Debug, Default)]
pub struct AdminAction<'a> {
    /// What was done: `tenant.create`, `partition.terminate`, ... (the
    /// record's `op` is `admin.` + this).
    pub action: &'a str,
    /// The tenant acted on; its chain holds the record (`@provider` if none).
    pub tenant: Option<&'a str>,
    pub partition: Option<&'a str>,
    /// The admin's client certificate: SHA-256 fingerprint (hex) and subject.
    pub admin_fingerprint: Option<String>,
    pub admin_subject: Option<String>,
    /// The admin connection's peer address.
    pub source: Option<SocketAddr>,
    /// Arguments worth keeping (never a secret: no key, no PIN, no password).
    pub detail: Option<String>,
    /// `None` for success, or the error shown to the admin.
    pub error: Option<String>,
    pub duration: Duration,
}

/// The audit log of a running server: its writer and housekeeping thread.
pub struct Audit {
    committer: Arc<Committer>,
    thread: Mutex<Option<JoinHandle<()>>>,
    public_key: [u8; 32],
    metering: Arc<Metering>,
}

impl Audit {
    /// Loads (or makes) the audit key, opens the audit tables and starts the
    /// housekeeping thread. The store's migrations must have run.
    pub fn start(settings: AuditSettings, metering: Arc<Metering>) -> Result<Self, AuditError> {
        let key = AuditKey::load_or_create(&settings.key_file).map_err(AuditError)?;
        let public_key = key.public();
        let writer = Writer::open(settings, key, metering.clone()).map_err(AuditError)?;
        let committer = Arc::new(Committer::new(writer));
        let housekeeper = committer.clone();
        let thread = std::thread::Builder::new()
            .name("hsmlink-audit".to_owned())
            .spawn(move || housekeeper.housekeep())
            .map_err(|e| AuditError(format!("cannot start the audit thread: {e}")))?;
        Ok(Self {
            committer,
            thread: Mutex::new(Some(thread)),
            public_key,
            metering,
        })
    }

    /// True if a commit is flushed to disk before the calls it covers
    /// return (`durability = "fsync"`).
    pub fn flushes_to_disk(&self) -> bool {
        self.committer.flushes_to_disk()
    }

    /// The Ed25519 public key that signs the chain heads.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    pub fn metering(&self) -> &Arc<Metering> {
        &self.metering
    }

    /// Records `record` and returns once it is committed.
    pub fn record(&self, record: Record) -> Result<(), AuditError> {
        self.committer.record(record).map_err(AuditError)
    }

    /// Queues `record` without waiting; it is committed with the next
    /// group, before any record queued after it.
    pub fn record_queued(&self, record: Record) -> Result<(), AuditError> {
        self.committer.record_queued(record).map_err(AuditError)
    }

    /// Records an admin action and returns once it is committed. For the
    /// admin API: call it for every request that changes something (and
    /// for audit exports), success or failure, before replying.
    pub fn record_admin(&self, action: &AdminAction<'_>) -> Result<(), AuditError> {
        let (rv, rv_name) = match &action.error {
            None => (0, "OK".to_owned()),
            Some(e) => (1, format!("ERROR: {e}")),
        };
        self.record(Record {
            chain: action.tenant.unwrap_or(PROVIDER_CHAIN).to_owned(),
            ts_ms: record::now_ms(),
            tenant: action.tenant.map(str::to_owned),
            partition: action.partition.map(str::to_owned),
            op: format!("admin.{}", action.action),
            cert: action
                .admin_fingerprint
                .as_ref()
                .map(|f| format!("sha256:{f}")),
            subject: action.admin_subject.clone(),
            source: action.source.map(|s| s.to_string()),
            detail: action.detail.clone(),
            rv,
            rv_name,
            duration_us: u64::try_from(action.duration.as_micros()).unwrap_or(u64::MAX),
            ..Record::default()
        })
    }

    /// Commits everything queued, signs every chain head that moved and
    /// writes the metering counters; returns once done.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.committer.sync().map_err(AuditError)
    }

    /// Stops the writer after committing what is queued, signing the heads
    /// and writing the metering counters. Idempotent.
    pub fn close(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            self.committer.stop();
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("public_key", &record::hex(&self.public_key))
            .finish_non_exhaustive()
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.close();
    }
}
