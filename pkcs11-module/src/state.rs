//! The global library state: `None` until `C_Initialize`, `None` again after
//! `C_Finalize`.
//!
//! Fork: a child created by `fork()` inherits the state and may go on with
//! it as its parent left it — same sessions, same login state, same object
//! handles — or start afresh with `C_Initialize`:
//! - Going on: the transport notices the new process id, leaves the
//!   parent's TLS connections alone (see `transport`) and opens the child's
//!   own, for the same application instance, so the server serves the
//!   parent's sessions to the child too (nginx's workers use the key their
//!   master loaded this way).
//! - `C_Initialize` in the child answers `CKR_OK` (not
//!   `CKR_CRYPTOKI_ALREADY_INITIALIZED`: the process never initialised) and
//!   loads a new library, a new application instance with no session; the
//!   inherited state is dropped without touching the parent's connections.
//! - `C_Finalize` in the child ends the child's use: the server closes the
//!   shared sessions only when no other process of the application (the
//!   parent) is still connected.
//!
//! The lock is only held to look at or swap the `Arc`, never across network
//! I/O, so a `fork()` taken while another thread waits on the server cannot
//! leave the child with a held lock.

use std::sync::Arc;

use cryptoki_sys::{
    CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_GENERAL_ERROR,
};
use hsmlink_protocol::AppInstance;
use parking_lot::RwLock;

use crate::client::attribute_cache::AttributeCache;
use crate::client::local::LocalOps;
use crate::config::{self, Config};
use crate::error::Error;
use crate::log;
use crate::process;
use crate::profile::SmProfile;
use crate::transport::Transport;

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// Everything `C_Initialize` sets up.
pub struct Library {
    /// Process id at `C_Initialize`: a forked child sees another.
    pid: u32,
    pub transport: Transport,
    /// Operations done in the module (hash-then-sign), by session.
    pub local: LocalOps,
    /// The SM numbers the application uses besides hsmlink's.
    pub profile: SmProfile,
    /// Length queries' answers for the reads that follow them.
    pub attributes: AttributeCache,
}

impl Library {
    /// Reads the configuration and the certificates, draws the application
    /// instance id. Connects nothing: connections are opened by the first
    /// call that needs one.
    fn load() -> Result<Self, Error> {
        let path = config::path();
        let config = Config::load(&path).map_err(config_error)?;
        log::configure(config.log_level, config.log_file.as_deref());

        let mut instance = [0u8; 16];
        getrandom::fill(&mut instance).map_err(|e| {
            log::error!("cannot draw a random application instance id: {e}");
            Error::new(CKR_GENERAL_ERROR)
        })?;
        let pid = process::id();
        let transport =
            Transport::new(&config, AppInstance(instance), pid).map_err(config_error)?;
        log::debug!(
            "initialised from {} ({} server(s))",
            config.path.display(),
            config.servers.len()
        );
        Ok(Self {
            pid,
            transport,
            local: LocalOps::default(),
            profile: config.sm_profile,
            attributes: AttributeCache::default(),
        })
    }
}

#[cfg(test)]
impl Library {
    /// A library around `transport`, outside the global state.
    pub fn for_tests(transport: Transport) -> Self {
        Self {
            pid: process::id(),
            transport,
            local: LocalOps::default(),
            profile: SmProfile::default(),
            attributes: AttributeCache::default(),
        }
    }
}

fn config_error(e: config::ConfigError) -> Error {
    log::error!("{e}");
    Error::new(CKR_GENERAL_ERROR)
}

/// The library of this process — in a forked child, the one inherited
/// from the parent — or `CKR_CRYPTOKI_NOT_INITIALIZED`.
pub fn library() -> Result<Arc<Library>, Error> {
    LIBRARY
        .read()
        .as_ref()
        .map(Arc::clone)
        .ok_or_else(|| Error::new(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// `C_Initialize`'s part: loads a new library unless this process
/// initialised one; an inherited one is dropped (a forked child's fresh
/// start).
pub fn initialize() -> Result<(), Error> {
    let mut slot = LIBRARY.write();
    if let Some(library) = slot.take() {
        if library.pid == process::id() {
            *slot = Some(library);
            return Err(Error::new(CKR_CRYPTOKI_ALREADY_INITIALIZED));
        }
        log::debug!(
            "process {} was forked from {}: starting afresh",
            process::id(),
            library.pid
        );
        // Dropping writes nothing on the parent's connections (see
        // `transport`); in-flight clones elsewhere keep it alive harmlessly.
        drop(library);
    }
    *slot = Some(Arc::new(Library::load()?));
    Ok(())
}

/// `C_Finalize`'s part: takes the library (its own or, in a forked child,
/// the inherited one) out of the global state. The caller says goodbye to
/// the server and drops it.
pub fn finalize() -> Result<Arc<Library>, Error> {
    LIBRARY
        .write()
        .take()
        .ok_or_else(|| Error::new(CKR_CRYPTOKI_NOT_INITIALIZED))
}
