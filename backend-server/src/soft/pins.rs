//! PINs, kept only as argon2id hashes with a per-PIN random salt.
//!
//! A record is text: `argon2id$m=M,t=T,p=P$SALT$HASH` (hex), so a PIN set
//! under older parameters still verifies after they change.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::{CkResult, Ckr};
use crate::soft::keys::fill_random;

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// argon2id cost parameters (`[security]` in `server.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinHashParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl PinHashParams {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    pub const DEFAULT: Self = Self {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };

    /// Checks that argon2 accepts the parameters.
    pub fn check(self) -> Result<(), String> {
        Params::new(self.m_kib, self.t, self.p, Some(HASH_LEN))
            .map(|_| ())
            .map_err(|e| format!("invalid argon2 parameters: {e}"))
    }
}

fn hash(params: PinHashParams, pin: &[u8], salt: &[u8]) -> CkResult<Zeroizing<[u8; HASH_LEN]>> {
    let params =
        Params::new(params.m_kib, params.t, params.p, Some(HASH_LEN)).map_err(|_| Ckr::GENERAL)?;
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pin, salt, &mut out[..])
        .map_err(|_| Ckr::GENERAL)?;
    Ok(out)
}

/// A new record for `pin`.
pub fn make_record(params: PinHashParams, pin: &[u8]) -> CkResult<String> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    let digest = hash(params, pin, &salt)?;
    Ok(format!(
        "argon2id$m={},t={},p={}${}${}",
        params.m_kib,
        params.t,
        params.p,
        to_hex(&salt),
        to_hex(&digest[..])
    ))
}

/// Whether `pin` is the one of `record`. A record we cannot read is a
/// device error, never a match.
pub fn verify(record: &str, pin: &[u8]) -> CkResult<bool> {
    let mut parts = record.split('$');
    let (Some("argon2id"), Some(params), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Ckr::DEVICE);
    };
    let params = parse_params(params).ok_or(Ckr::DEVICE)?;
    let salt = from_hex(salt).ok_or(Ckr::DEVICE)?;
    let expected = from_hex(expected).ok_or(Ckr::DEVICE)?;
    if expected.len() != HASH_LEN {
        return Err(Ckr::DEVICE);
    }
    let digest = hash(params, pin, &salt)?;
    // Constant time: fold the differences of every byte.
    let diff = digest
        .iter()
        .zip(&expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(diff == 0)
}

fn parse_params(text: &str) -> Option<PinHashParams> {
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for part in text.split(',') {
        let (key, value) = part.split_once('=')?;
        let value: u32 = value.parse().ok()?;
        match key {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return None,
        }
    }
    Some(PinHashParams {
        m_kib: m?,
        t: t?,
        p: p?,
    })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters for tests.
    pub const FAST: PinHashParams = PinHashParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn records_verify_and_differ() {
        let a = make_record(FAST, b"1234").unwrap();
        let b = make_record(FAST, b"1234").unwrap();
        assert_ne!(a, b, "salts differ");
        assert!(!a.contains("1234$"), "{a}");
        assert!(verify(&a, b"1234").unwrap());
        assert!(!verify(&a, b"1235").unwrap());
        assert!(verify("garbage", b"1234").is_err());
        assert!(PinHashParams::DEFAULT.check().is_ok());
        assert!(
            PinHashParams {
                m_kib: 1,
                t: 0,
                p: 0
            }
            .check()
            .is_err()
        );
    }
}
