//! The token state hsmlink keeps for a partition, whatever its driver: the
//! label, the flags, the SO and user PINs (argon2id records,
//! [`crate::soft::pins`]) and their failure counters, in the store's
//! partition record. The soft driver and the pkcs11 driver both keep their
//! tenant's PINs here, so the PIN rules are written once: a locked PIN is
//! not even tried, every wrong try is counted durably before the answer, a
//! user PIN set by the SO must be changed (`[security]`).

use cryptoki_sys::{
    CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE, CKR_PIN_LOCKED, CKR_TOKEN_NOT_RECOGNIZED,
    CKR_USER_PIN_NOT_INITIALIZED,
};
use hsmlink_protocol::Secret;
use tracing::warn;

use crate::driver::{PinState, TokenState, UserKind};
use crate::error::{CkResult, Ckr};
use crate::soft::partition::SecurityPolicy;
use crate::soft::pins;
use crate::store::{PartitionRecord, Store};
use crate::token::{MAX_PIN_LEN, MIN_PIN_LEN};

/// The PIN rules of one partition, over its record in the store.
#[derive(Clone, Copy, Debug)]
pub struct PinRules<'a> {
    pub partition: &'a str,
    pub store: &'a dyn Store,
    pub policy: SecurityPolicy,
}

impl PinRules<'_> {
    /// Writes `next` and makes it the current record.
    pub fn save(&self, record: &mut PartitionRecord, next: PartitionRecord) -> CkResult<()> {
        self.store.update_partition(&next).map_err(|e| {
            warn!(partition = %self.partition, "cannot save the token state: {e}");
            Ckr::DEVICE
        })?;
        *record = next;
        Ok(())
    }

    /// Checks a PIN, counting a failure; locked PINs are not even tried.
    pub fn check_pin(
        &self,
        record: &mut PartitionRecord,
        who: UserKind,
        pin: &Secret,
    ) -> CkResult<()> {
        let (stored, failures) = match who {
            UserKind::So => (record.so_pin.clone(), record.so_failures),
            UserKind::User => (record.user_pin.clone(), record.user_failures),
        };
        let Some(stored) = stored else {
            return Err(Ckr(match who {
                UserKind::So => CKR_TOKEN_NOT_RECOGNIZED,
                UserKind::User => CKR_USER_PIN_NOT_INITIALIZED,
            }));
        };
        if failures >= self.policy.max_pin_failures {
            return Err(Ckr(CKR_PIN_LOCKED));
        }
        let right = pin_length_ok(pin) && pins::verify(&stored, pin.as_bytes())?;
        let mut next = record.clone();
        let counter = match who {
            UserKind::So => &mut next.so_failures,
            UserKind::User => &mut next.user_failures,
        };
        if right {
            if *counter != 0 {
                *counter = 0;
                self.save(record, next)?;
            }
            Ok(())
        } else {
            *counter = counter.saturating_add(1);
            self.save(record, next)?;
            Err(Ckr(CKR_PIN_INCORRECT))
        }
    }

    /// The first half of `C_InitToken`: checks the SO PIN of an
    /// initialised token, or makes the record of a new one. Returns the
    /// SO PIN record the token keeps.
    pub fn init_token_so_pin(
        &self,
        record: &mut PartitionRecord,
        so_pin: &Secret,
    ) -> CkResult<Option<String>> {
        if record.initialized {
            self.check_pin(record, UserKind::So, so_pin)?;
            Ok(record.so_pin.clone())
        } else {
            if !pin_length_ok(so_pin) {
                return Err(Ckr(CKR_PIN_LEN_RANGE));
            }
            Ok(Some(pins::make_record(
                self.policy.pin_hash,
                so_pin.as_bytes(),
            )?))
        }
    }

    /// `C_InitPIN`: a new user PIN, to be changed if the policy says so.
    pub fn init_pin(&self, record: &mut PartitionRecord, pin: &Secret) -> CkResult<()> {
        if !pin_length_ok(pin) {
            return Err(Ckr(CKR_PIN_LEN_RANGE));
        }
        let stored = pins::make_record(self.policy.pin_hash, pin.as_bytes())?;
        let mut next = record.clone();
        next.user_pin = Some(stored);
        next.user_failures = 0;
        next.user_pin_to_be_changed = self.policy.require_user_pin_change;
        self.save(record, next)
    }

    /// `C_SetPIN` by the owner of the PIN.
    pub fn set_pin(
        &self,
        record: &mut PartitionRecord,
        who: UserKind,
        old_pin: &Secret,
        new_pin: &Secret,
    ) -> CkResult<()> {
        if !pin_length_ok(new_pin) {
            return Err(Ckr(CKR_PIN_LEN_RANGE));
        }
        self.check_pin(record, who, old_pin)?;
        let stored = pins::make_record(self.policy.pin_hash, new_pin.as_bytes())?;
        let mut next = record.clone();
        match who {
            UserKind::So => {
                next.so_pin = Some(stored);
                next.so_failures = 0;
            }
            UserKind::User => {
                next.user_pin = Some(stored);
                next.user_failures = 0;
                next.user_pin_to_be_changed = false;
            }
        }
        self.save(record, next)
    }
}

/// The record of a freshly initialised token: label, SO PIN, no user PIN.
pub fn initialized(
    record: &PartitionRecord,
    so_pin: Option<String>,
    label: &str,
) -> PartitionRecord {
    let mut next = record.clone();
    next.label = trim_label(label);
    next.initialized = true;
    next.so_pin = so_pin;
    next.so_failures = 0;
    next.user_pin = None;
    next.user_failures = 0;
    next.user_pin_to_be_changed = false;
    next
}

/// What `C_GetTokenInfo` says of the record.
pub fn token_state(record: &PartitionRecord, policy: &SecurityPolicy) -> TokenState {
    let max = policy.max_pin_failures;
    TokenState {
        label: record.label.clone(),
        initialized: record.initialized,
        user_pin_initialized: record.user_pin.is_some(),
        so_pin: PinState {
            failures: record.so_failures,
            max_failures: max,
            to_be_changed: false,
        },
        user_pin: PinState {
            failures: record.user_failures,
            max_failures: max,
            to_be_changed: record.user_pin.is_some() && record.user_pin_to_be_changed,
        },
    }
}

/// A fresh partition record: not initialised, no PINs.
pub fn fresh_record(name: &str, algorithms: &str, wrapped_master_key: Vec<u8>) -> PartitionRecord {
    PartitionRecord {
        name: name.to_owned(),
        algorithms: algorithms.to_owned(),
        wrapped_master_key,
        label: String::new(),
        initialized: false,
        so_pin: None,
        user_pin: None,
        so_failures: 0,
        user_failures: 0,
        user_pin_to_be_changed: false,
    }
}

pub fn pin_length_ok(pin: &Secret) -> bool {
    (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&(pin.len() as u64))
}

/// `CK_UTF8CHAR label[32]`, blank padded: trailing blanks and NULs go.
pub fn trim_label(label: &str) -> String {
    label.trim_end_matches([' ', '\0']).to_owned()
}
