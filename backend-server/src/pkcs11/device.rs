//! One device: a token of a vendor module (`[[devices]]` in server.toml),
//! its session pool and what it can do.
//!
//! A partition lives on one device or, with replicas, on several (see
//! [`super::replicas`]).

use std::sync::Arc;

use cryptoki_sys::{CK_SLOT_ID, CKF_TOKEN_INITIALIZED};
use tracing::info;
use zeroize::Zeroizing;

use super::mechanisms::{VendorNumbers, slot_table};
use super::module::{Module, rv_name};
use super::session_pool::SessionPool;
use crate::config::{DeviceConfig, PinSource, TokenSelector};
use crate::soft::mechanisms::MechanismEntry;

/// A device could not be opened. The message names the device and what is
/// wrong, never the PIN.
#[derive(Debug, thiserror::Error)]
#[error("device {device}: {message}")]
pub struct DeviceError {
    pub device: String,
    pub message: String,
}

#[derive(Debug)]
pub struct Device {
    pub name: String,
    pub slot: CK_SLOT_ID,
    pub pool: Arc<SessionPool>,
    /// What the device serves that hsmlink carries: the slot's list.
    pub mechanisms: Vec<MechanismEntry>,
    pub vendor: VendorNumbers,
    /// A call slower than this takes the device out of service.
    pub call_timeout: std::time::Duration,
}

/// The device's user PIN from its source; a trailing newline of a file is
/// not part of it.
fn read_pin(config: &DeviceConfig) -> Result<Zeroizing<Vec<u8>>, String> {
    match config.pin_source() {
        PinSource::Env(name) => match std::env::var_os(&name) {
            Some(value) => Ok(Zeroizing::new(value.into_encoded_bytes())),
            None => Err(format!(
                "the environment variable {name} (pin_env) holding the device PIN is not set"
            )),
        },
        PinSource::File(path) => {
            let mut bytes = Zeroizing::new(
                std::fs::read(&path)
                    .map_err(|e| format!("cannot read pin_file {}: {e}", path.display()))?,
            );
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            Ok(bytes)
        }
    }
}

impl Device {
    /// Loads the module (once per path), finds the token, logs in once and
    /// reads the mechanisms.
    pub fn open(config: &DeviceConfig) -> Result<Arc<Self>, DeviceError> {
        let name = config.name.as_str().to_owned();
        let fail = |message: String| DeviceError {
            device: name.clone(),
            message,
        };
        let pin = read_pin(config).map_err(&fail)?;
        let module = Module::load(&config.module).map_err(&fail)?;
        let slots = module
            .slots_with_token()
            .map_err(|e| fail(format!("C_GetSlotList failed ({})", rv_name(e.0))))?;
        let wanted = config.token();
        let mut slot = None;
        for s in slots {
            let Ok(token) = module.token_id(s) else {
                continue;
            };
            let matches = match &wanted {
                TokenSelector::Label(label) => &token.label == label,
                TokenSelector::Serial(serial) => &token.serial == serial,
            };
            if matches && token.flags & CKF_TOKEN_INITIALIZED != 0 {
                slot = Some(s);
                break;
            }
        }
        let Some(slot) = slot else {
            return Err(fail(format!(
                "no initialised token with {} in {}",
                match &wanted {
                    TokenSelector::Label(l) => format!("label {l:?}"),
                    TokenSelector::Serial(s) => format!("serial {s:?}"),
                },
                config.module.display()
            )));
        };
        let vendor = VendorNumbers::NONE;
        let mechanisms = module
            .mechanisms(slot)
            .map_err(|e| fail(format!("C_GetMechanismList failed ({})", rv_name(e.0))))?;
        let mechanisms = slot_table(&mechanisms, &vendor);
        let max = usize::try_from(config.max_sessions.get()).unwrap_or(1);
        let pool = SessionPool::new(&name, module, slot, pin, max, config.session_wait());
        pool.start().map_err(|e| {
            fail(format!(
                "cannot open a logged-in session ({}): check the device PIN source",
                rv_name(e.0)
            ))
        })?;
        info!(
            device = %name,
            module = %config.module.display(),
            slot,
            mechanisms = mechanisms.len(),
            "device open"
        );
        Ok(Arc::new(Self {
            name,
            slot,
            pool,
            mechanisms,
            vendor,
            call_timeout: std::time::Duration::from_millis(config.call_timeout_ms.max(1)),
        }))
    }
}
