//! Slot and token management (PKCS#11 3.0 section 5.5): the slot and token
//! queries, token initialisation and the PIN functions.
//!
//! When no server can be reached at all, the calls addressed to a slot's
//! token (`C_GetTokenInfo`, `C_GetMechanismList`, `C_GetMechanismInfo`,
//! `C_InitToken`) report `CKR_TOKEN_NOT_PRESENT`: the slot exists for the
//! application, its token is out of reach. Slot-level queries, and the PIN
//! functions (which name a session), report `CKR_DEVICE_ERROR`.
//!
//! PINs arrive here as [`Secret`]s (wiped on drop) and are never logged.

use hsmlink_protocol::{
    MechanismInfo, MechanismType, Request, ResponseBody, Secret, SessionHandle, SlotId, SlotInfo,
    TokenInfo,
};

use super::{call, empty, token_absent, unexpected};
use crate::error::Error;
use crate::state::Library;

/// `C_GetSlotList` (5.5.1).
pub fn slot_list(library: &Library, token_present: bool) -> Result<Vec<SlotId>, Error> {
    match call(library, &Request::GetSlotList { token_present })? {
        ResponseBody::SlotList(slots) => Ok(slots),
        other => Err(unexpected("C_GetSlotList", &other)),
    }
}

/// `C_GetSlotInfo` (5.5.2).
pub fn slot_info(library: &Library, slot: SlotId) -> Result<SlotInfo, Error> {
    match call(library, &Request::GetSlotInfo { slot })? {
        ResponseBody::SlotInfo(info) => Ok(info),
        other => Err(unexpected("C_GetSlotInfo", &other)),
    }
}

/// `C_GetTokenInfo` (5.5.3).
pub fn token_info(library: &Library, slot: SlotId) -> Result<TokenInfo, Error> {
    let body = call(library, &Request::GetTokenInfo { slot }).map_err(token_absent)?;
    match body {
        ResponseBody::TokenInfo(info) => Ok(info),
        other => Err(unexpected("C_GetTokenInfo", &other)),
    }
}

/// `C_GetMechanismList` (5.5.5).
pub fn mechanism_list(library: &Library, slot: SlotId) -> Result<Vec<MechanismType>, Error> {
    let body = call(library, &Request::GetMechanismList { slot }).map_err(token_absent)?;
    match body {
        ResponseBody::MechanismList(mechanisms) => {
            // Deferred inits check their mechanism against it.
            library.local.set_mechanisms(slot, &mechanisms);
            Ok(mechanisms)
        }
        other => Err(unexpected("C_GetMechanismList", &other)),
    }
}

/// `C_GetMechanismInfo` (5.5.6).
pub fn mechanism_info(
    library: &Library,
    slot: SlotId,
    mechanism: MechanismType,
) -> Result<MechanismInfo, Error> {
    let body =
        call(library, &Request::GetMechanismInfo { slot, mechanism }).map_err(token_absent)?;
    match body {
        ResponseBody::MechanismInfo(info) => Ok(info),
        other => Err(unexpected("C_GetMechanismInfo", &other)),
    }
}

/// `C_InitToken` (5.5.7): `label` is the application's 32 blank-padded bytes.
pub fn init_token(
    library: &Library,
    slot: SlotId,
    so_pin: Secret,
    label: [u8; 32],
) -> Result<(), Error> {
    let request = Request::InitToken {
        slot,
        so_pin,
        label: label.to_vec(),
    };
    match call(library, &request).map_err(token_absent)? {
        ResponseBody::Empty => Ok(()),
        other => Err(unexpected("C_InitToken", &other)),
    }
}

/// `C_InitPIN` (5.5.8): the SO sets the user PIN.
pub fn init_pin(library: &Library, session: SessionHandle, pin: Secret) -> Result<(), Error> {
    empty(library, "C_InitPIN", &Request::InitPin { session, pin })
}

/// `C_SetPIN` (5.5.9): the PIN of the user logged in on `session` (the
/// user's when none is).
pub fn set_pin(
    library: &Library,
    session: SessionHandle,
    old_pin: Secret,
    new_pin: Secret,
) -> Result<(), Error> {
    empty(
        library,
        "C_SetPIN",
        &Request::SetPin {
            session,
            old_pin,
            new_pin,
        },
    )
}
