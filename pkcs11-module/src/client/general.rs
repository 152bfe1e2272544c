//! General-purpose functions (PKCS#11 3.0 section 5.4): `C_Initialize`,
//! `C_Finalize`.

use cryptoki_sys::{CKR_ARGUMENTS_BAD, CKR_CANT_LOCK};

use crate::error::Error;
use crate::state;

/// What `C_Initialize` learned from a non-NULL `CK_C_INITIALIZE_ARGS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitArgs {
    /// Which of `CreateMutex`, `DestroyMutex`, `LockMutex`, `UnlockMutex`
    /// are non-NULL.
    pub mutex_callbacks: [bool; 4],
    /// `CKF_OS_LOCKING_OK` is set.
    pub os_locking_ok: bool,
    /// `pReserved` is non-NULL.
    pub reserved: bool,
}

impl InitArgs {
    /// The rules of section 5.4.1. We always lock with the operating
    /// system's primitives (and never create threads), so application
    /// callbacks are acceptable only together with `CKF_OS_LOCKING_OK`.
    fn check(&self) -> Result<(), Error> {
        if self.reserved {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        let supplied = self.mutex_callbacks.iter().filter(|&&given| given).count();
        match supplied {
            0 => Ok(()),
            4 if self.os_locking_ok => Ok(()),
            4 => Err(Error::new(CKR_CANT_LOCK)),
            _ => Err(Error::new(CKR_ARGUMENTS_BAD)),
        }
    }
}

/// `C_Initialize` (5.4.1), `args` being `None` for a NULL `pInitArgs`.
pub fn initialize(args: Option<InitArgs>) -> Result<(), Error> {
    if let Some(args) = args {
        args.check()?;
    }
    state::initialize()
}

/// `C_Finalize` (5.4.2), after the `pReserved` check.
pub fn finalize() -> Result<(), Error> {
    let library = state::finalize()?;
    library.local.clear();
    library.transport.finalize();
    Ok(())
}

#[cfg(test)]
mod tests {
    use cryptoki_sys::CK_RV;

    use super::*;

    fn check(callbacks: [bool; 4], os_locking_ok: bool, reserved: bool) -> Result<(), CK_RV> {
        InitArgs {
            mutex_callbacks: callbacks,
            os_locking_ok,
            reserved,
        }
        .check()
        .map_err(Error::rv)
    }

    #[test]
    fn initialize_argument_rules() {
        assert_eq!(check([false; 4], false, false), Ok(()));
        assert_eq!(check([false; 4], true, false), Ok(()));
        assert_eq!(check([true; 4], true, false), Ok(()));
        assert_eq!(check([true; 4], false, false), Err(CKR_CANT_LOCK));
        assert_eq!(
            check([true, false, true, true], true, false),
            Err(CKR_ARGUMENTS_BAD)
        );
        assert_eq!(
            check([false, false, false, true], false, false),
            Err(CKR_ARGUMENTS_BAD)
        );
        assert_eq!(check([false; 4], false, true), Err(CKR_ARGUMENTS_BAD));
    }
}
