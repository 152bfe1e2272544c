//! Slot and token management (PKCS#11 3.0 section 5.5): the queries served
//! by the server today.
//!
//! When no server can be reached at all, the token-level queries
//! (`C_GetTokenInfo`, `C_GetMechanismList`, `C_GetMechanismInfo`) report
//! `CKR_TOKEN_NOT_PRESENT`: the slot exists for the application, its token is
//! out of reach. Slot-level queries report `CKR_DEVICE_ERROR`.

use cryptoki_sys::CKR_TOKEN_NOT_PRESENT;
use hsmlink_protocol::{
    MechanismInfo, MechanismType, Request, ResponseBody, SlotId, SlotInfo, TokenInfo,
};

use super::{call, unexpected};
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
        ResponseBody::MechanismList(mechanisms) => Ok(mechanisms),
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

fn token_absent(e: Error) -> Error {
    e.unreachable_as(CKR_TOKEN_NOT_PRESENT)
}
