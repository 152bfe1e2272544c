//! From the wire's typed values to the C structures of the standard.
//!
//! Every `CK_ULONG` taken from the network goes through [`ulong`]: a value
//! that does not fit this platform's `CK_ULONG` is a device error, never a
//! silent truncation.

use cryptoki_sys::{
    CK_INFO, CK_MECHANISM_INFO, CK_SESSION_INFO, CK_SLOT_INFO, CK_TOKEN_INFO, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION, CK_VERSION,
};
use hsmlink_protocol::{MechanismInfo, SessionInfo, SlotInfo, TokenInfo, Version};

use crate::error::Error;
use crate::log;

pub const MANUFACTURER: &str = "hsmlink";
pub const DESCRIPTION: &str = "hsmlink PKCS#11 client";

/// This library's version, from the crate version.
pub const LIBRARY_VERSION: CK_VERSION = CK_VERSION {
    major: decimal_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: decimal_u8(env!("CARGO_PKG_VERSION_MINOR")),
};

/// A blank-padded, not NUL-terminated fixed-width text field of the C
/// structures: `text` cut at the last UTF-8 character boundary that fits.
pub fn pad<const N: usize>(text: &str) -> [u8; N] {
    let mut field = [b' '; N];
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].copy_from_slice(&text.as_bytes()[..end]);
    field
}

/// A `u64` from the server as a `CK_ULONG`.
pub fn ulong(value: u64) -> Result<CK_ULONG, Error> {
    CK_ULONG::try_from(value).map_err(|_| {
        log::error!("protocol error: the server sent {value}, which does not fit a CK_ULONG");
        Error::device()
    })
}

/// A token count, where the wire's [`TokenInfo::UNAVAILABLE`] is
/// `CK_UNAVAILABLE_INFORMATION` (and `CK_EFFECTIVELY_INFINITE`, 0, is 0).
pub fn count(value: u64) -> Result<CK_ULONG, Error> {
    if value == TokenInfo::UNAVAILABLE {
        Ok(CK_UNAVAILABLE_INFORMATION)
    } else {
        ulong(value)
    }
}

/// A list of ids (slots, mechanisms) from the server.
pub fn ulongs(values: impl IntoIterator<Item = u64>) -> Result<Vec<CK_ULONG>, Error> {
    values.into_iter().map(ulong).collect()
}

pub fn version(version: Version) -> CK_VERSION {
    CK_VERSION {
        major: version.major,
        minor: version.minor,
    }
}

/// `CK_INFO` for the interface of version `cryptoki`.
pub fn library_info(cryptoki: CK_VERSION) -> CK_INFO {
    CK_INFO {
        cryptokiVersion: cryptoki,
        manufacturerID: pad(MANUFACTURER),
        flags: 0,
        libraryDescription: pad(DESCRIPTION),
        libraryVersion: LIBRARY_VERSION,
    }
}

pub fn slot_info(info: &SlotInfo) -> Result<CK_SLOT_INFO, Error> {
    Ok(CK_SLOT_INFO {
        slotDescription: pad(&info.description),
        manufacturerID: pad(&info.manufacturer_id),
        flags: ulong(info.flags)?,
        hardwareVersion: version(info.hardware_version),
        firmwareVersion: version(info.firmware_version),
    })
}

pub fn token_info(info: &TokenInfo) -> Result<CK_TOKEN_INFO, Error> {
    Ok(CK_TOKEN_INFO {
        label: pad(&info.label),
        manufacturerID: pad(&info.manufacturer_id),
        model: pad(&info.model),
        serialNumber: pad(&info.serial_number),
        flags: ulong(info.flags)?,
        ulMaxSessionCount: count(info.max_session_count)?,
        ulSessionCount: count(info.session_count)?,
        ulMaxRwSessionCount: count(info.max_rw_session_count)?,
        ulRwSessionCount: count(info.rw_session_count)?,
        ulMaxPinLen: ulong(info.max_pin_len)?,
        ulMinPinLen: ulong(info.min_pin_len)?,
        ulTotalPublicMemory: count(info.total_public_memory)?,
        ulFreePublicMemory: count(info.free_public_memory)?,
        ulTotalPrivateMemory: count(info.total_private_memory)?,
        ulFreePrivateMemory: count(info.free_private_memory)?,
        hardwareVersion: version(info.hardware_version),
        firmwareVersion: version(info.firmware_version),
        // "YYYYMMDDhhmmss00" for tokens with a clock, blanks otherwise.
        utcTime: pad(&info.utc_time),
    })
}

pub fn mechanism_info(info: &MechanismInfo) -> Result<CK_MECHANISM_INFO, Error> {
    Ok(CK_MECHANISM_INFO {
        ulMinKeySize: ulong(info.min_key_size)?,
        ulMaxKeySize: ulong(info.max_key_size)?,
        flags: ulong(info.flags)?,
    })
}

pub fn session_info(info: &SessionInfo) -> Result<CK_SESSION_INFO, Error> {
    Ok(CK_SESSION_INFO {
        slotID: ulong(info.slot_id.0)?,
        state: ulong(info.state)?,
        flags: ulong(info.flags)?,
        ulDeviceError: ulong(info.device_error)?,
    })
}

/// Parses the decimal digits of a Cargo version component at compile time
/// (saturating at 255; non-digits are skipped).
const fn decimal_u8(text: &str) -> u8 {
    let bytes = text.as_bytes();
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i].wrapping_sub(b'0');
        if digit < 10 {
            value = value * 10 + digit as u32;
            if value > u8::MAX as u32 {
                return u8::MAX;
            }
        }
        i += 1;
    }
    value as u8
}

#[cfg(test)]
mod tests {
    use cryptoki_sys::CK_EFFECTIVELY_INFINITE;

    use super::*;

    #[test]
    fn pad_fills_with_blanks() {
        assert_eq!(&pad::<8>("abc"), b"abc     ");
        assert_eq!(&pad::<3>("abc"), b"abc");
        assert_eq!(&pad::<4>(""), b"    ");
    }

    #[test]
    fn pad_truncates_at_a_character_boundary() {
        assert_eq!(&pad::<4>("abcdef"), b"abcd");
        // "é" is two bytes: it does not fit at offset 3 of a 4-byte field.
        assert_eq!(&pad::<4>("abcé"), b"abc ");
        assert_eq!(&pad::<5>("abcé"), "abcé".as_bytes());
        // "€" is three bytes.
        assert_eq!(&pad::<2>("€"), b"  ");
        assert!(std::str::from_utf8(&pad::<7>("ab€€")).is_ok());
    }

    #[test]
    fn counts_map_the_special_values() {
        assert_eq!(
            count(TokenInfo::UNAVAILABLE),
            Ok(CK_UNAVAILABLE_INFORMATION)
        );
        assert_eq!(count(0), Ok(CK_EFFECTIVELY_INFINITE));
        assert_eq!(count(7), Ok(7));
    }

    #[test]
    fn library_version_is_the_crate_version() {
        assert_eq!(decimal_u8("0"), 0);
        assert_eq!(decimal_u8("17"), 17);
        assert_eq!(decimal_u8("300"), 255);
        let expected = format!("{}.{}", LIBRARY_VERSION.major, LIBRARY_VERSION.minor);
        let crate_version = env!("CARGO_PKG_VERSION");
        assert!(
            crate_version.starts_with(&expected),
            "{crate_version} vs {expected}"
        );
    }

    #[test]
    fn token_info_conversion() {
        let info = TokenInfo {
            label: "demo".into(),
            max_session_count: TokenInfo::UNAVAILABLE,
            session_count: 3,
            max_pin_len: 64,
            min_pin_len: 4,
            utc_time: "2025010112000000".into(),
            ..TokenInfo::default()
        };
        let ck = token_info(&info).map_err(|e| e.rv());
        let Ok(ck) = ck else { panic!("{ck:?}") };
        assert_eq!(&ck.label[..5], b"demo ");
        assert_eq!(ck.ulMaxSessionCount, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(ck.ulSessionCount, 3);
        assert_eq!(&ck.utcTime, b"2025010112000000");
        assert_eq!(&ck.serialNumber, b"                ");
    }
}
