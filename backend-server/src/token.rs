//! What `C_GetSlotInfo` and `C_GetTokenInfo` report (PKCS#11 3.0 sections
//! 5.4.3 and 5.4.4), in wire form; the module pads the text fields.

use cryptoki_sys::{
    CK_EFFECTIVELY_INFINITE, CK_FLAGS, CKF_CLOCK_ON_TOKEN, CKF_LOGIN_REQUIRED, CKF_RNG,
    CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED, CKF_SO_PIN_TO_BE_CHANGED,
    CKF_TOKEN_INITIALIZED, CKF_TOKEN_PRESENT, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY,
    CKF_USER_PIN_INITIALIZED, CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED,
};
use hsmlink_protocol::{SlotInfo, TokenInfo, Version};
use time::OffsetDateTime;

use crate::driver::{PinState, TokenState};
use crate::registry::Slot;

pub const MANUFACTURER: &str = "hsmlink";
pub const MIN_PIN_LEN: u64 = 4;
pub const MAX_PIN_LEN: u64 = 128;

const HARDWARE_VERSION: Version = Version { major: 1, minor: 0 };

/// The crate's version, major.minor.
pub const FIRMWARE_VERSION: Version = Version {
    major: parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
};

/// A decimal number of the build's version; too large or not a number fails
/// the build (const evaluation), never a running server.
const fn parse_u8(text: &str) -> u8 {
    let bytes = text.as_bytes();
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version is not a number");
        value = value * 10 + (bytes[i] - b'0') as u32;
        assert!(value <= u8::MAX as u32, "version does not fit a CK_VERSION");
        i += 1;
    }
    value as u8
}

pub fn slot_info(slot: &Slot) -> SlotInfo {
    let flags = if slot.token_present() {
        CKF_TOKEN_PRESENT
    } else {
        0
    };
    SlotInfo {
        description: format!("hsmlink slot {} ({})", slot.id.0, slot.partition),
        manufacturer_id: MANUFACTURER.to_owned(),
        flags,
        hardware_version: HARDWARE_VERSION,
        firmware_version: FIRMWARE_VERSION,
    }
}

/// The application's open sessions on a token: all, and read/write ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    pub all: u64,
    pub rw: u64,
}

/// The token as its partition's state and the application's sessions make it.
pub fn token_info(
    slot: &Slot,
    state: &TokenState,
    sessions: SessionCounts,
    now: OffsetDateTime,
) -> TokenInfo {
    let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_CLOCK_ON_TOKEN;
    if state.initialized {
        flags |= CKF_TOKEN_INITIALIZED;
    }
    if state.user_pin_initialized {
        flags |= CKF_USER_PIN_INITIALIZED;
        flags |= pin_flags(
            &state.user_pin,
            [
                CKF_USER_PIN_COUNT_LOW,
                CKF_USER_PIN_FINAL_TRY,
                CKF_USER_PIN_LOCKED,
                CKF_USER_PIN_TO_BE_CHANGED,
            ],
        );
    }
    if state.initialized {
        flags |= pin_flags(
            &state.so_pin,
            [
                CKF_SO_PIN_COUNT_LOW,
                CKF_SO_PIN_FINAL_TRY,
                CKF_SO_PIN_LOCKED,
                CKF_SO_PIN_TO_BE_CHANGED,
            ],
        );
    }
    TokenInfo {
        label: state.label.clone(),
        manufacturer_id: MANUFACTURER.to_owned(),
        model: slot.model().to_owned(),
        serial_number: slot.serial.as_str().to_owned(),
        flags,
        max_session_count: CK_EFFECTIVELY_INFINITE,
        session_count: sessions.all,
        max_rw_session_count: CK_EFFECTIVELY_INFINITE,
        rw_session_count: sessions.rw,
        max_pin_len: MAX_PIN_LEN,
        min_pin_len: MIN_PIN_LEN,
        total_public_memory: TokenInfo::UNAVAILABLE,
        free_public_memory: TokenInfo::UNAVAILABLE,
        total_private_memory: TokenInfo::UNAVAILABLE,
        free_private_memory: TokenInfo::UNAVAILABLE,
        hardware_version: HARDWARE_VERSION,
        firmware_version: FIRMWARE_VERSION,
        utc_time: utc_time(now),
    }
}

/// `[count low, final try, locked, to be changed]` flags of one PIN. A
/// locked PIN is only locked; a PIN with one try left is also "count low".
fn pin_flags(pin: &PinState, [low, final_try, locked, change]: [CK_FLAGS; 4]) -> CK_FLAGS {
    let mut flags = if pin.to_be_changed { change } else { 0 };
    if pin.locked() {
        return flags | locked;
    }
    if pin.failures >= 1 {
        flags |= low;
    }
    if pin.failures.saturating_add(1) == pin.max_failures {
        flags |= final_try;
    }
    flags
}

/// `CK_TOKEN_INFO.utcTime`: `YYYYMMDDhhmmss00`.
pub fn utc_time(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_format() {
        let t = time::Date::from_calendar_date(2024, time::Month::March, 5)
            .unwrap()
            .with_hms(7, 8, 9)
            .unwrap()
            .assume_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(utc_time(t), "2024030505080900");
        assert_eq!(utc_time(OffsetDateTime::now_utc()).len(), 16);
    }

    #[test]
    fn firmware_is_the_crate_version() {
        let major: u8 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
        assert_eq!(FIRMWARE_VERSION.major, major);
        assert_eq!(parse_u8("255"), 255);
    }
}
