//! AES key wrap: RFC 3394 (NIST SP 800-38F KW) and with padding RFC 5649
//! (SP 800-38F KWP).
//!
//! Serves `CKM_AES_KEY_WRAP` and `CKM_AES_KEY_WRAP_KWP` (PKCS#11 Current
//! Mechanisms v3.0 section 2.14) through `C_WrapKey`/`C_UnwrapKey` and
//! `C_Encrypt`/`C_Decrypt`. Only the default integrity check values are
//! supported (RFC 3394 section 2.2.3.1 A6A6A6A6A6A6A6A6, RFC 5649 section 3
//! A65959A6): the `aes-kw` crate takes no other; a mechanism parameter
//! naming a different IV is refused by [`check_iv`].

use aes_kw::KeyInit;
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};

/// RFC 3394 default IV.
pub const KW_DEFAULT_IV: [u8; 8] = [0xa6; 8];
/// RFC 5649 alternative IV prefix (the 32-bit constant before the length).
pub const KWP_DEFAULT_IV: [u8; 4] = [0xa6, 0x59, 0x59, 0xa6];

/// Which key-wrap algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapAlg {
    /// RFC 3394: input a multiple of 8 bytes, at least 16.
    Kw,
    /// RFC 5649: any non-empty input.
    Kwp,
}

/// Accept a mechanism-parameter IV only if absent or the default
/// (`MechanismParamInvalid` otherwise).
pub fn check_iv(alg: WrapAlg, iv: Option<&[u8]>) -> Result<()> {
    match (alg, iv) {
        (_, None) => Ok(()),
        (WrapAlg::Kw, Some(iv)) if iv == KW_DEFAULT_IV => Ok(()),
        (WrapAlg::Kwp, Some(iv)) if iv == KWP_DEFAULT_IV => Ok(()),
        _ => Err(CryptoError::MechanismParamInvalid),
    }
}

/// Length of the wrapped output for `input_len` bytes (exact).
pub fn wrapped_len(alg: WrapAlg, input_len: usize) -> usize {
    match alg {
        WrapAlg::Kw => input_len + 8,
        WrapAlg::Kwp => input_len.div_ceil(8) * 8 + 8,
    }
}

macro_rules! with_kek {
    ($kek:expr, $ty128:ty, $ty192:ty, $ty256:ty, $k:ident => $body:expr) => {
        match $kek.len() {
            16 => {
                let $k = <$ty128>::new_from_slice($kek).map_err(|_| CryptoError::KeySizeRange)?;
                $body
            }
            24 => {
                let $k = <$ty192>::new_from_slice($kek).map_err(|_| CryptoError::KeySizeRange)?;
                $body
            }
            32 => {
                let $k = <$ty256>::new_from_slice($kek).map_err(|_| CryptoError::KeySizeRange)?;
                $body
            }
            _ => Err(CryptoError::KeySizeRange),
        }
    };
}

/// Wrap `key` under `kek` (16/24/32 bytes, else `KeySizeRange`). KW input
/// not a multiple of 8 or shorter than 16 bytes, or empty KWP input, is
/// `DataLenRange` (RFC 3394 section 2, RFC 5649 section 4.1).
pub fn wrap(alg: WrapAlg, kek: &[u8], key: &[u8]) -> Result<Vec<u8>> {
    let bad_len = match alg {
        WrapAlg::Kw => key.len() < 16 || !key.len().is_multiple_of(8),
        WrapAlg::Kwp => key.is_empty(),
    };
    if bad_len {
        return Err(CryptoError::DataLenRange);
    }
    let mut out = vec![0u8; wrapped_len(alg, key.len())];
    let n = match alg {
        WrapAlg::Kw => with_kek!(kek, aes_kw::KwAes128, aes_kw::KwAes192, aes_kw::KwAes256, k => {
            k.wrap_key(key, &mut out).map(<[u8]>::len).map_err(|_| CryptoError::DataLenRange)
        })?,
        WrapAlg::Kwp => {
            with_kek!(kek, aes_kw::KwpAes128, aes_kw::KwpAes192, aes_kw::KwpAes256, k => {
                k.wrap_key(key, &mut out).map(<[u8]>::len).map_err(|_| CryptoError::DataLenRange)
            })?
        }
    };
    out.truncate(n);
    Ok(out)
}

/// Unwrap `wrapped` under `kek`: `EncryptedDataLenRange` for an impossible
/// length, `EncryptedDataInvalid` if the integrity check fails.
pub fn unwrap(alg: WrapAlg, kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad_len = match alg {
        WrapAlg::Kw => wrapped.len() < 24 || !wrapped.len().is_multiple_of(8),
        WrapAlg::Kwp => wrapped.len() < 16 || !wrapped.len().is_multiple_of(8),
    };
    if bad_len {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = match alg {
        WrapAlg::Kw => with_kek!(kek, aes_kw::KwAes128, aes_kw::KwAes192, aes_kw::KwAes256, k => {
            k.unwrap_key(wrapped, &mut out).map(<[u8]>::len).map_err(unwrap_error)
        })?,
        WrapAlg::Kwp => {
            with_kek!(kek, aes_kw::KwpAes128, aes_kw::KwpAes192, aes_kw::KwpAes256, k => {
                k.unwrap_key(wrapped, &mut out).map(<[u8]>::len).map_err(unwrap_error)
            })?
        }
    };
    out.truncate(n);
    Ok(out)
}

fn unwrap_error(e: aes_kw::Error) -> CryptoError {
    match e {
        aes_kw::Error::IntegrityCheckFailed => CryptoError::EncryptedDataInvalid,
        _ => CryptoError::EncryptedDataLenRange,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // RFC 3394 sections 4.1 and 4.6.
    #[test]
    fn rfc3394() {
        let kek = hex!("000102030405060708090a0b0c0d0e0f");
        let key = hex!("00112233445566778899aabbccddeeff");
        let want = hex!("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
        assert_eq!(wrap(WrapAlg::Kw, &kek, &key).unwrap(), want);
        assert_eq!(&unwrap(WrapAlg::Kw, &kek, &want).unwrap()[..], key);

        let kek: Vec<u8> = (0u8..32).collect();
        let key = hex!("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f");
        let want = hex!(
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43b"
            "fb988b9b7a02dd21"
        );
        assert_eq!(wrap(WrapAlg::Kw, &kek, &key).unwrap(), want);
        assert_eq!(&unwrap(WrapAlg::Kw, &kek, &want).unwrap()[..], key);
        let mut bad = want;
        bad[5] ^= 1;
        assert_eq!(
            unwrap(WrapAlg::Kw, &kek, &bad).err(),
            Some(CryptoError::EncryptedDataInvalid)
        );
        assert_eq!(
            unwrap(WrapAlg::Kw, &kek, &want[..39]).err(),
            Some(CryptoError::EncryptedDataLenRange)
        );
        assert_eq!(
            wrap(WrapAlg::Kw, &kek, &key[..12]).err(),
            Some(CryptoError::DataLenRange)
        );
        assert_eq!(
            wrap(WrapAlg::Kw, &kek[..20], &key).err(),
            Some(CryptoError::KeySizeRange)
        );
    }

    // RFC 5649 section 6.
    #[test]
    fn rfc5649() {
        let kek = hex!("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        let cases: [(&[u8], &[u8]); 2] = [
            (
                &hex!("c37b7e6492584340bed12207808941155068f738"),
                &hex!("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"),
            ),
            (
                &hex!("466f7250617369"),
                &hex!("afbeb0f07dfbf5419200f2ccb50bb24f"),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(wrap(WrapAlg::Kwp, &kek, key).unwrap(), want);
            assert_eq!(wrapped_len(WrapAlg::Kwp, key.len()), want.len());
            assert_eq!(&unwrap(WrapAlg::Kwp, &kek, want).unwrap()[..], key);
        }
        assert_eq!(
            wrap(WrapAlg::Kwp, &kek, &[]).err(),
            Some(CryptoError::DataLenRange)
        );
        check_iv(WrapAlg::Kwp, Some(&KWP_DEFAULT_IV)).unwrap();
        assert_eq!(
            check_iv(WrapAlg::Kw, Some(&[0; 8])),
            Err(CryptoError::MechanismParamInvalid)
        );
    }
}
