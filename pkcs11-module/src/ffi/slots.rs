//! Slot and token management functions (section 5.5).

use cryptoki_sys::{
    CK_BBOOL, CK_FALSE, CK_FLAGS, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_RV, CK_SESSION_HANDLE,
    CK_SLOT_ID, CK_SLOT_INFO, CK_TOKEN_INFO, CK_ULONG, CK_UTF8CHAR, CK_VOID_PTR,
};
use hsmlink_protocol::{MechanismType, SessionHandle, SlotId};

use super::out::{OutBuf, OutRef};
use super::{convert, guard, input, not_supported, wire};
use crate::client::slots;
use crate::state;

/// `C_GetSlotList` (5.5.1): the tenant's slots, all or those with a token.
/// A NULL `pSlotList` asks for the count; a short buffer gets
/// `CKR_BUFFER_TOO_SMALL` and the count (section 5.2).
pub(super) unsafe extern "C" fn C_GetSlotList(
    tokenPresent: CK_BBOOL,
    pSlotList: *mut CK_SLOT_ID,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetSlotList", || {
        let library = state::library()?;
        // SAFETY: section 5.5.1: pulCount points to a CK_ULONG and pSlotList
        // is NULL or holds *pulCount CK_SLOT_IDs.
        let out = unsafe { OutBuf::from_raw(pSlotList, pulCount) }?;
        let slots = slots::slot_list(&library, tokenPresent != CK_FALSE)?;
        out.write(&convert::ulongs(slots.iter().map(|slot| slot.0))?)
    })
}

/// `C_GetSlotInfo` (5.5.2).
pub(super) unsafe extern "C" fn C_GetSlotInfo(
    slotID: CK_SLOT_ID,
    pInfo: *mut CK_SLOT_INFO,
) -> CK_RV {
    guard("C_GetSlotInfo", || {
        let library = state::library()?;
        // SAFETY: section 5.5.2: pInfo is NULL or points to a CK_SLOT_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        let info = slots::slot_info(&library, SlotId(wire(slotID)))?;
        out.write(convert::slot_info(&info)?);
        Ok(())
    })
}

/// `C_GetTokenInfo` (5.5.3). No server reachable: `CKR_TOKEN_NOT_PRESENT`.
pub(super) unsafe extern "C" fn C_GetTokenInfo(
    slotID: CK_SLOT_ID,
    pInfo: *mut CK_TOKEN_INFO,
) -> CK_RV {
    guard("C_GetTokenInfo", || {
        let library = state::library()?;
        // SAFETY: section 5.5.3: pInfo is NULL or points to a CK_TOKEN_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        let info = slots::token_info(&library, SlotId(wire(slotID)))?;
        out.write(convert::token_info(&info)?);
        Ok(())
    })
}

/// `C_GetMechanismList` (5.5.5), with the output rule of section 5.2. No
/// server reachable: `CKR_TOKEN_NOT_PRESENT`.
pub(super) unsafe extern "C" fn C_GetMechanismList(
    slotID: CK_SLOT_ID,
    pMechanismList: *mut CK_MECHANISM_TYPE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetMechanismList", || {
        let library = state::library()?;
        // SAFETY: section 5.5.5: pulCount points to a CK_ULONG and
        // pMechanismList is NULL or holds *pulCount CK_MECHANISM_TYPEs.
        let out = unsafe { OutBuf::from_raw(pMechanismList, pulCount) }?;
        let mechanisms = slots::mechanism_list(&library, SlotId(wire(slotID)))?;
        out.write(&convert::ulongs(
            mechanisms
                .iter()
                .map(|m| library.profile.mechanism_out(m.0)),
        )?)
    })
}

/// `C_GetMechanismInfo` (5.5.6). No server reachable: `CKR_TOKEN_NOT_PRESENT`.
pub(super) unsafe extern "C" fn C_GetMechanismInfo(
    slotID: CK_SLOT_ID,
    type_: CK_MECHANISM_TYPE,
    pInfo: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    guard("C_GetMechanismInfo", || {
        let library = state::library()?;
        // SAFETY: section 5.5.6: pInfo is NULL or points to a CK_MECHANISM_INFO.
        let out = unsafe { OutRef::from_raw(pInfo) }?;
        let info = slots::mechanism_info(
            &library,
            SlotId(wire(slotID)),
            MechanismType(library.profile.mechanism_in(wire(type_))),
        )?;
        out.write(convert::mechanism_info(&info)?);
        Ok(())
    })
}

not_supported! {
    /// `C_WaitForSlotEvent` (5.5.4): slots do not change under an
    /// application; not supported.
    fn C_WaitForSlotEvent(_flags: CK_FLAGS, _pSlot: *mut CK_SLOT_ID, _pReserved: CK_VOID_PTR);
}

/// `C_InitToken` (5.5.7): the SO PIN by the rules of `input::pin` (a NULL
/// `pPin` is `CKR_ARGUMENTS_BAD`: there is no protected authentication
/// path), `pLabel` 32 blank-padded bytes (NULL: `CKR_ARGUMENTS_BAD`), sent
/// as given. No server reachable: `CKR_TOKEN_NOT_PRESENT`.
pub(super) unsafe extern "C" fn C_InitToken(
    slotID: CK_SLOT_ID,
    pPin: *mut CK_UTF8CHAR,
    ulPinLen: CK_ULONG,
    pLabel: *mut CK_UTF8CHAR,
) -> CK_RV {
    guard("C_InitToken", || {
        let library = state::library()?;
        // SAFETY: section 5.5.7: pPin is NULL or points to ulPinLen bytes.
        let so_pin = unsafe { input::pin(pPin, ulPinLen) }?;
        // SAFETY: section 5.5.7: pLabel points to 32 bytes.
        let label = unsafe { input::label(pLabel) }?;
        slots::init_token(&library, SlotId(wire(slotID)), so_pin, label)
    })
}

/// `C_InitPIN` (5.5.8): the PIN by the rules of `input::pin`.
pub(super) unsafe extern "C" fn C_InitPIN(
    hSession: CK_SESSION_HANDLE,
    pPin: *mut CK_UTF8CHAR,
    ulPinLen: CK_ULONG,
) -> CK_RV {
    guard("C_InitPIN", || {
        let library = state::library()?;
        // SAFETY: section 5.5.8: pPin is NULL or points to ulPinLen bytes.
        let pin = unsafe { input::pin(pPin, ulPinLen) }?;
        slots::init_pin(&library, SessionHandle(wire(hSession)), pin)
    })
}

/// `C_SetPIN` (5.5.9): both PINs by the rules of `input::pin`.
pub(super) unsafe extern "C" fn C_SetPIN(
    hSession: CK_SESSION_HANDLE,
    pOldPin: *mut CK_UTF8CHAR,
    ulOldLen: CK_ULONG,
    pNewPin: *mut CK_UTF8CHAR,
    ulNewLen: CK_ULONG,
) -> CK_RV {
    guard("C_SetPIN", || {
        let library = state::library()?;
        // SAFETY: section 5.5.9: pOldPin is NULL or points to ulOldLen bytes.
        let old_pin = unsafe { input::pin(pOldPin, ulOldLen) }?;
        // SAFETY: section 5.5.9: pNewPin is NULL or points to ulNewLen bytes.
        let new_pin = unsafe { input::pin(pNewPin, ulNewLen) }?;
        slots::set_pin(&library, SessionHandle(wire(hSession)), old_pin, new_pin)
    })
}
