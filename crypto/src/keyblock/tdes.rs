//! The TDES primitives of key block versions `B` and `C` (and of TR-34
//! content encryption), on [`crate::tdes`] and [`crate::mac`]: CBC over
//! whole blocks, CMAC (NIST SP 800-38B, 8 bytes) and the CBC-MAC of
//! ISO 9797-1 algorithm 1 (zero IV; the data is already whole blocks), with
//! the key block's own errors.

use zeroize::Zeroizing;

use super::{KeyBlockError, Result};
use crate::error::CryptoError;
use crate::mac::{self, MacAlg};
use crate::tdes::{self, MacKind, Mode};

/// TDES block length in bytes.
pub const BLOCK: usize = tdes::BLOCK_LEN;

fn key_error(e: CryptoError) -> KeyBlockError {
    match e {
        CryptoError::KeySizeRange => KeyBlockError::KbpkSize,
        CryptoError::DataLenRange | CryptoError::EncryptedDataLenRange => KeyBlockError::BadLength,
        _ => KeyBlockError::Crypto,
    }
}

/// TDES-CBC encryption of whole blocks.
pub fn cbc_encrypt(key: &[u8], iv: &[u8; BLOCK], data: &[u8]) -> Result<Vec<u8>> {
    tdes::encrypt(key, &Mode::Cbc { iv: *iv }, data).map_err(key_error)
}

/// TDES-CBC decryption of whole blocks, into a wiped buffer.
pub fn cbc_decrypt(key: &[u8], iv: &[u8; BLOCK], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    tdes::decrypt(key, &Mode::Cbc { iv: *iv }, data)
        .map(Zeroizing::new)
        .map_err(key_error)
}

fn full_mac(kind: MacKind, key: &[u8], data: &[u8]) -> Result<[u8; BLOCK]> {
    let tag = mac::sign(MacAlg::Tdes(kind), key, Some(BLOCK), data).map_err(key_error)?;
    tag.as_slice().try_into().map_err(|_| KeyBlockError::Crypto)
}

/// TDES-CMAC, the full 8 bytes.
pub fn cmac(key: &[u8], data: &[u8]) -> Result<[u8; BLOCK]> {
    full_mac(MacKind::Cmac, key, data)
}

/// ISO 9797-1 MAC algorithm 1 over whole blocks: the last block of the
/// TDES-CBC encryption with a zero IV.
pub fn cbc_mac(key: &[u8], data: &[u8]) -> Result<[u8; BLOCK]> {
    if !data.len().is_multiple_of(BLOCK) || data.is_empty() {
        return Err(KeyBlockError::BadLength);
    }
    full_mac(MacKind::CbcMac, key, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbc_round_trips_and_refuses_partial_blocks() {
        let key = [0x11u8; 24];
        let iv = [7u8; BLOCK];
        let data = [0x5Au8; 24];
        let enc = cbc_encrypt(&key, &iv, &data).unwrap();
        assert_ne!(enc.as_slice(), data);
        assert_eq!(cbc_decrypt(&key, &iv, &enc).unwrap().as_slice(), data);
        assert_eq!(
            cbc_encrypt(&key, &iv, &data[..7]).unwrap_err(),
            KeyBlockError::BadLength
        );
        assert_eq!(
            cbc_encrypt(&key[..8], &iv, &data).unwrap_err(),
            KeyBlockError::KbpkSize
        );
    }

    /// The CBC-MAC is the last block of the CBC encryption under a zero IV.
    #[test]
    fn cbc_mac_is_the_last_cbc_block() {
        let key: Vec<u8> = (0u8..16).collect();
        let data = [0xA5u8; 32];
        let enc = cbc_encrypt(&key, &[0; BLOCK], &data).unwrap();
        assert_eq!(cbc_mac(&key, &data).unwrap().as_slice(), &enc[24..]);
        assert_eq!(
            cbc_mac(&key, &data[..5]).unwrap_err(),
            KeyBlockError::BadLength
        );
    }
}
