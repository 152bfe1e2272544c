//! The TDES primitives of key block versions `B` and `C`: CBC without
//! padding, CMAC (NIST SP 800-38B with a 64-bit block) and the CBC-MAC of
//! ISO 9797-1 algorithm 1 (zero IV, data already whole blocks).
//!
//! Double-length (16-byte, EDE2) and triple-length (24-byte, EDE3) keys.

use aes::cipher::{
    BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, block_padding::NoPadding,
};
use cmac::Mac;
use zeroize::Zeroizing;

use super::{KeyBlockError, Result};

/// TDES block length in bytes.
pub const BLOCK: usize = 8;

/// Runs `$body` with `$C` bound to the TDES variant of `$key`'s length.
macro_rules! with_tdes {
    ($key:expr, $C:ident => $body:expr) => {
        match $key.len() {
            16 => {
                type $C = des::TdesEde2;
                $body
            }
            24 => {
                type $C = des::TdesEde3;
                $body
            }
            _ => Err(KeyBlockError::KbpkSize),
        }
    };
}

fn whole_blocks(data: &[u8]) -> Result<()> {
    if data.len().is_multiple_of(BLOCK) {
        Ok(())
    } else {
        Err(KeyBlockError::BadLength)
    }
}

/// TDES-CBC encryption of whole blocks.
pub fn cbc_encrypt(key: &[u8], iv: &[u8; BLOCK], data: &[u8]) -> Result<Vec<u8>> {
    whole_blocks(data)?;
    with_tdes!(key, C => {
        let enc = cbc::Encryptor::<C>::new_from_slices(key, iv)
            .map_err(|_| KeyBlockError::KbpkSize)?;
        let mut buf = data.to_vec();
        enc.encrypt_padded::<NoPadding>(&mut buf, data.len())
            .map_err(|_| KeyBlockError::BadLength)?;
        Ok(buf)
    })
}

/// TDES-CBC decryption of whole blocks, into a wiped buffer.
pub fn cbc_decrypt(key: &[u8], iv: &[u8; BLOCK], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    whole_blocks(data)?;
    with_tdes!(key, C => {
        let dec = cbc::Decryptor::<C>::new_from_slices(key, iv)
            .map_err(|_| KeyBlockError::KbpkSize)?;
        let mut buf = Zeroizing::new(data.to_vec());
        dec.decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| KeyBlockError::BadLength)?;
        Ok(buf)
    })
}

/// TDES-CMAC, the full 8 bytes.
pub fn cmac(key: &[u8], data: &[u8]) -> Result<[u8; BLOCK]> {
    with_tdes!(key, C => {
        let mut mac = <cmac::Cmac<C> as KeyInit>::new_from_slice(key)
            .map_err(|_| KeyBlockError::KbpkSize)?;
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; BLOCK];
        out.copy_from_slice(&tag);
        Ok(out)
    })
}

/// ISO 9797-1 MAC algorithm 1 over whole blocks: the last block of the
/// TDES-CBC encryption with a zero IV.
pub fn cbc_mac(key: &[u8], data: &[u8]) -> Result<[u8; BLOCK]> {
    let encrypted = cbc_encrypt(key, &[0; BLOCK], data)?;
    let last = encrypted
        .len()
        .checked_sub(BLOCK)
        .ok_or(KeyBlockError::BadLength)?;
    let mut out = [0u8; BLOCK];
    out.copy_from_slice(&encrypted[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    /// NIST SP 800-38B appendix D.4 (three-key TDEA CMAC), examples 1 (empty)
    /// and 2 (one 64-bit block).
    #[test]
    fn sp800_38b_d4_cmac() {
        let key = hex!("8aa83bf8cbda1062 0bc1bf19fbb6cd58 bc313d4a371ca8b5");
        assert_eq!(cmac(&key, &[]).unwrap(), hex!("b7a688e122ffaf95"));
        assert_eq!(
            cmac(&key, &hex!("6bc1bee22e409f96")).unwrap(),
            hex!("8e8f293136283797")
        );
    }

    /// NIST SP 800-38B appendix D.3 (two-key TDEA CMAC), example 2 (one
    /// 64-bit block).
    #[test]
    fn sp800_38b_d3_cmac() {
        let key = hex!("4cf15134a2850dd5 8a3d10ba80570d38");
        assert_eq!(
            cmac(&key, &hex!("6bc1bee22e409f96")).unwrap(),
            hex!("4ff2ab813c53ce83")
        );
    }

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
}
