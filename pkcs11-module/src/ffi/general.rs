//! General-purpose functions (section 5.4) other than the three exported
//! ones (see `interface`), and parallel function management (5.20).

use cryptoki_sys::{
    CK_C_INITIALIZE_ARGS, CK_INFO, CK_RV, CK_SESSION_HANDLE, CK_VERSION, CK_VOID_PTR,
    CKF_OS_LOCKING_OK, CKR_ARGUMENTS_BAD, CKR_FUNCTION_NOT_PARALLEL,
};

use super::convert;
use super::guard;
use super::out::OutRef;
use crate::client::general::{self, InitArgs};
use crate::error::Error;
use crate::state;

pub const CRYPTOKI_3_0: CK_VERSION = CK_VERSION { major: 3, minor: 0 };
pub const CRYPTOKI_2_40: CK_VERSION = CK_VERSION {
    major: 2,
    minor: 40,
};

/// `C_Initialize` (5.4.1): reads the configuration and the certificates;
/// connects nothing yet.
///
/// `pInitArgs` is NULL or a `CK_C_INITIALIZE_ARGS`: `pReserved` must be
/// NULL, the mutex callbacks all NULL or all set, and if set
/// `CKF_OS_LOCKING_OK` too (we only lock with the OS's primitives).
pub(super) unsafe extern "C" fn C_Initialize(pInitArgs: CK_VOID_PTR) -> CK_RV {
    guard("C_Initialize", || {
        let args = if pInitArgs.is_null() {
            None
        } else {
            // SAFETY: section 5.4.1 makes a non-NULL pInitArgs point to a
            // CK_C_INITIALIZE_ARGS; the copy does not need alignment.
            let raw = unsafe { pInitArgs.cast::<CK_C_INITIALIZE_ARGS>().read_unaligned() };
            Some(InitArgs {
                mutex_callbacks: [
                    raw.CreateMutex.is_some(),
                    raw.DestroyMutex.is_some(),
                    raw.LockMutex.is_some(),
                    raw.UnlockMutex.is_some(),
                ],
                os_locking_ok: raw.flags & CKF_OS_LOCKING_OK != 0,
                reserved: !raw.pReserved.is_null(),
            })
        };
        general::initialize(args)
    })
}

/// `C_Finalize` (5.4.2): tells the server (on an idle connection, if any)
/// and drops every connection. `pReserved` must be NULL.
pub(super) extern "C" fn C_Finalize(pReserved: CK_VOID_PTR) -> CK_RV {
    guard("C_Finalize", || {
        if !pReserved.is_null() {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        general::finalize()
    })
}

/// `C_GetInfo` (5.4.3) of the 3.0 interface: `cryptokiVersion` 3.0.
pub(super) unsafe extern "C" fn C_GetInfo(pInfo: *mut CK_INFO) -> CK_RV {
    guard("C_GetInfo", || {
        state::library()?;
        // SAFETY: section 5.4.3: pInfo is NULL or points to a CK_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        out.write(convert::library_info(CRYPTOKI_3_0));
        Ok(())
    })
}

/// `C_GetInfo` (5.4.3) of the 2.40 interface (`C_GetFunctionList`):
/// `cryptokiVersion` 2.40.
pub(super) unsafe extern "C" fn C_GetInfo_v2_40(pInfo: *mut CK_INFO) -> CK_RV {
    guard("C_GetInfo", || {
        state::library()?;
        // SAFETY: section 5.4.3: pInfo is NULL or points to a CK_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        out.write(convert::library_info(CRYPTOKI_2_40));
        Ok(())
    })
}

/// `C_GetFunctionStatus` (5.20.1), a legacy function: `CKR_FUNCTION_NOT_PARALLEL`.
pub(super) extern "C" fn C_GetFunctionStatus(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_GetFunctionStatus", not_parallel)
}

/// `C_CancelFunction` (5.20.2), a legacy function: `CKR_FUNCTION_NOT_PARALLEL`.
pub(super) extern "C" fn C_CancelFunction(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CancelFunction", not_parallel)
}

fn not_parallel() -> Result<(), Error> {
    state::library()?;
    Err(Error::new(CKR_FUNCTION_NOT_PARALLEL))
}
