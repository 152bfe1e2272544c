//! The global library state: `None` until `C_Initialize`, `None` again after
//! `C_Finalize`.
//!
//! Fork safety: the state remembers the process id of `C_Initialize`. In a
//! child created by `fork()` the ids differ and the library behaves as not
//! initialised (`CKR_CRYPTOKI_NOT_INITIALIZED`) until the child calls
//! `C_Initialize` itself. The parent's state (its TLS connections included)
//! is then leaked with `mem::forget`: never used, never closed, so nothing
//! is ever written on the parent's connections from the child.
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

use crate::client::local::LocalOps;
use crate::config::{self, Config};
use crate::error::Error;
use crate::log;
use crate::profile::SmProfile;
use crate::transport::Transport;

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// Everything `C_Initialize` sets up.
pub struct Library {
    /// Process id at `C_Initialize`.
    pid: u32,
    pub transport: Transport,
    /// Operations done in the module (hash-then-sign), by session.
    pub local: LocalOps,
    /// The SM numbers the application uses besides hsmlink's.
    pub profile: SmProfile,
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
        let pid = std::process::id();
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
        })
    }
}

#[cfg(test)]
impl Library {
    /// A library around `transport`, outside the global state.
    pub fn for_tests(transport: Transport) -> Self {
        Self {
            pid: std::process::id(),
            transport,
            local: LocalOps::default(),
            profile: SmProfile::default(),
        }
    }
}

fn config_error(e: config::ConfigError) -> Error {
    log::error!("{e}");
    Error::new(CKR_GENERAL_ERROR)
}

/// The initialised library of this process, or `CKR_CRYPTOKI_NOT_INITIALIZED`
/// (also in a forked child that has not called `C_Initialize` yet).
pub fn library() -> Result<Arc<Library>, Error> {
    match &*LIBRARY.read() {
        Some(library) if library.pid == std::process::id() => Ok(Arc::clone(library)),
        _ => Err(Error::new(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
}

/// `C_Initialize`'s part: loads a new library unless this process has one.
pub fn initialize() -> Result<(), Error> {
    let mut slot = LIBRARY.write();
    if let Some(library) = slot.take() {
        if library.pid == std::process::id() {
            *slot = Some(library);
            return Err(Error::new(CKR_CRYPTOKI_ALREADY_INITIALIZED));
        }
        forget_inherited(library);
    }
    *slot = Some(Arc::new(Library::load()?));
    Ok(())
}

/// `C_Finalize`'s part: takes the library out of the global state. The
/// caller says goodbye to the server and drops it.
pub fn finalize() -> Result<Arc<Library>, Error> {
    let mut slot = LIBRARY.write();
    match slot.take() {
        Some(library) if library.pid == std::process::id() => Ok(library),
        Some(inherited) => {
            forget_inherited(inherited);
            Err(Error::new(CKR_CRYPTOKI_NOT_INITIALIZED))
        }
        None => Err(Error::new(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
}

/// The state of the parent process, seen in a forked child: leak it rather
/// than run any destructor that might touch the parent's connections.
fn forget_inherited(library: Arc<Library>) {
    log::debug!(
        "process {} was forked from {}: discarding the parent's connections",
        std::process::id(),
        library.pid
    );
    std::mem::forget(library);
}

/// Tests: pretend the library was initialised by another process, as a
/// forked child sees it.
#[cfg(test)]
pub fn simulate_fork() {
    let mut slot = LIBRARY.write();
    if let Some(library) = slot.take() {
        // Safe stand-in for the child's view: same state, other pid.
        let Ok(mut library) = Arc::try_unwrap(library) else {
            panic!("simulate_fork: the library is in use");
        };
        library.pid = library.pid.wrapping_add(1);
        *slot = Some(Arc::new(library));
    }
}
