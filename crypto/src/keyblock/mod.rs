//! ANSI X9.143 / ISO 20038 key blocks (the "TR-31" format), version `D`:
//! an AES key block protection key (KBPK) from which a key block encryption
//! key (KBEK) and a key block authentication key (KBAK) are derived with
//! AES-CMAC (NIST SP 800-108 counter mode).
//!
//! A key block is printable ASCII: a 16-character header, optional blocks,
//! then the hex of the encrypted key data and of the 16-byte MAC.
//!
//! - key data = key length in bits (2 bytes, big endian) ‖ key ‖ padding
//!   (random) up to a multiple of 16 bytes;
//! - MAC = AES-CMAC(KBAK, header ‖ optional blocks ‖ key data), where the
//!   header is the ASCII as transmitted;
//! - encrypted key data = AES-CBC(KBEK, IV = MAC, key data).
//!
//! Only version `D` is served. Version `A` (TDES key variant) is refused
//! (PCI PIN forbids it for import); `B` and `C` (TDES) are not implemented
//! yet and give [`KeyBlockError::UnsupportedVersion`] too.

mod header;

pub use header::{Header, OptionalBlock};

use zeroize::Zeroizing;

use crate::cipher::{self, BlockAlg, Mode};
use crate::mac::{self, MacAlg};

/// Length of the version `D` MAC in bytes.
pub const MAC_LEN_D: usize = 16;
/// Block length of the version `D` cipher.
const BLOCK: usize = 16;

/// Why a key block is refused. No variant carries key material.
///
/// The server maps them to `CKR_*` codes: `BadLength` →
/// `CKR_WRAPPED_KEY_LEN_RANGE`, `KbpkSize` → `CKR_UNWRAPPING_KEY_SIZE_RANGE`
/// (or `CKR_WRAPPING_KEY_SIZE_RANGE`), every other →
/// `CKR_WRAPPED_KEY_INVALID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyBlockError {
    /// The version ID is unknown, refused (`A`) or not implemented.
    #[error("key block version unsupported")]
    UnsupportedVersion,
    /// The length field disagrees with the block's length, or the block is
    /// too short or too long, or the encrypted part is not whole blocks.
    #[error("key block length invalid")]
    BadLength,
    /// A header field is malformed: non-numeric length or count of optional
    /// blocks, an optional block overrunning the header, non-printable or
    /// non-hex characters, a header not a multiple of the cipher block.
    #[error("key block header inconsistent")]
    InconsistentHeader,
    /// The MAC does not verify (wrong KBPK or altered block).
    #[error("key block MAC invalid")]
    MacInvalid,
    /// The decrypted key length field is impossible (wrong KBPK is caught
    /// by the MAC first, so this is a malformed block).
    #[error("key block key length invalid")]
    KeyLength,
    /// The KBPK is not a 16, 24 or 32-byte AES key.
    #[error("key block protection key size invalid")]
    KbpkSize,
    /// A cryptographic engine failed.
    #[error("key block cryptographic failure")]
    Crypto,
}

/// Result of this module.
pub type Result<T> = core::result::Result<T, KeyBlockError>;

/// The KBEK and KBAK of a version `D` block, derived from the KBPK with
/// AES-CMAC in counter mode: each block of output is
/// `CMAC(KBPK, counter ‖ usage ‖ 0x00 ‖ algorithm ‖ length in bits)`,
/// usage 0x0000 for the encryption key and 0x0001 for the MAC key,
/// algorithm 0x0002/0x0003/0x0004 for AES-128/192/256 (by KBPK length).
type KeyPair = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

fn derive_d(kbpk: &[u8]) -> Result<KeyPair> {
    let (alg, bits): (u16, u16) = match kbpk.len() {
        16 => (2, 128),
        24 => (3, 192),
        32 => (4, 256),
        _ => return Err(KeyBlockError::KbpkSize),
    };
    let derive = |usage: u16| -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        let mut counter = 1u8;
        while out.len() < kbpk.len() {
            let mut input = [0u8; 8];
            input[0] = counter;
            input[1..3].copy_from_slice(&usage.to_be_bytes());
            input[3] = 0;
            input[4..6].copy_from_slice(&alg.to_be_bytes());
            input[6..8].copy_from_slice(&bits.to_be_bytes());
            let block = Zeroizing::new(
                mac::sign(MacAlg::CmacAes, kbpk, None, &input)
                    .map_err(|_| KeyBlockError::Crypto)?,
            );
            out.extend_from_slice(&block);
            counter = counter.wrapping_add(1);
        }
        out.truncate(kbpk.len());
        Ok(out)
    };
    Ok((derive(0x0000)?, derive(0x0001)?))
}

fn hex_decode(s: &[u8]) -> Result<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if !s.len().is_multiple_of(2) {
        return Err(KeyBlockError::BadLength);
    }
    s.chunks_exact(2)
        .map(|p| match (nibble(p[0]), nibble(p[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(KeyBlockError::InconsistentHeader),
        })
        .collect()
}

fn hex_encode(out: &mut Vec<u8>, data: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in data {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Parses and verifies a key block under `kbpk`; returns its header and the
/// clear key (in a wiped buffer).
pub fn unwrap(kbpk: &[u8], block: &[u8]) -> Result<(Header, Zeroizing<Vec<u8>>)> {
    let header = Header::parse(block)?;
    if header.version != b'D' {
        return Err(KeyBlockError::UnsupportedVersion);
    }
    let header_len = header.encoded_len();
    if !header_len.is_multiple_of(BLOCK) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    let (header_ascii, rest) = block.split_at(header_len);
    // hex(key data) ‖ hex(MAC); key data at least one block.
    if rest.len() < 2 * (BLOCK + MAC_LEN_D)
        || !(rest.len() - 2 * MAC_LEN_D).is_multiple_of(2 * BLOCK)
    {
        return Err(KeyBlockError::BadLength);
    }
    let (enc_hex, mac_hex) = rest.split_at(rest.len() - 2 * MAC_LEN_D);
    let encrypted = hex_decode(enc_hex)?;
    let tag = hex_decode(mac_hex)?;
    let iv: [u8; BLOCK] = tag
        .as_slice()
        .try_into()
        .map_err(|_| KeyBlockError::BadLength)?;
    let (kbek, kbak) = derive_d(kbpk)?;
    let clear = Zeroizing::new(
        cipher::decrypt(BlockAlg::Aes, &kbek, &Mode::Cbc { iv }, &encrypted)
            .map_err(|_| KeyBlockError::Crypto)?,
    );
    let mut macced = Zeroizing::new(Vec::with_capacity(header_len + clear.len()));
    macced.extend_from_slice(header_ascii);
    macced.extend_from_slice(&clear);
    mac::verify(MacAlg::CmacAes, &kbak, None, &macced, &tag)
        .map_err(|_| KeyBlockError::MacInvalid)?;
    let bits = usize::from(u16::from_be_bytes([clear[0], clear[1]]));
    if bits == 0 || bits % 8 != 0 || bits / 8 > clear.len() - 2 {
        return Err(KeyBlockError::KeyLength);
    }
    let key = Zeroizing::new(clear[2..2 + bits / 8].to_vec());
    Ok((header, key))
}

/// Wraps `key` in a version `D` key block under `kbpk`, with `header`
/// (its version must be `D`; the length field is computed). The padding is
/// random, from the system generator.
pub fn wrap(kbpk: &[u8], header: &Header, key: &[u8]) -> Result<Vec<u8>> {
    let pad_len = (BLOCK - (2 + key.len()) % BLOCK) % BLOCK;
    let mut padding = Zeroizing::new(vec![0u8; pad_len]);
    crate::rng::fill(&mut padding).map_err(|_| KeyBlockError::Crypto)?;
    wrap_with_padding(kbpk, header, key, &padding)
}

/// [`wrap`] with the caller's padding (known-answer tests): `padding` must
/// bring `2 + key.len()` to a multiple of 16.
pub fn wrap_with_padding(
    kbpk: &[u8],
    header: &Header,
    key: &[u8],
    padding: &[u8],
) -> Result<Vec<u8>> {
    if header.version != b'D' {
        return Err(KeyBlockError::UnsupportedVersion);
    }
    let key_bits = u16::try_from(key.len() * 8).map_err(|_| KeyBlockError::KeyLength)?;
    if key.is_empty() || !(2 + key.len() + padding.len()).is_multiple_of(BLOCK) {
        return Err(KeyBlockError::KeyLength);
    }
    let header_len = header.encoded_len();
    if !header_len.is_multiple_of(BLOCK) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    let data_len = 2 + key.len() + padding.len();
    let total = header_len + 2 * data_len + 2 * MAC_LEN_D;
    let header_ascii = header.encode(total)?;
    let mut clear = Zeroizing::new(Vec::with_capacity(data_len));
    clear.extend_from_slice(&key_bits.to_be_bytes());
    clear.extend_from_slice(key);
    clear.extend_from_slice(padding);
    let (kbek, kbak) = derive_d(kbpk)?;
    let mut macced = Zeroizing::new(Vec::with_capacity(header_len + data_len));
    macced.extend_from_slice(&header_ascii);
    macced.extend_from_slice(&clear);
    let tag =
        mac::sign(MacAlg::CmacAes, &kbak, None, &macced).map_err(|_| KeyBlockError::Crypto)?;
    let iv: [u8; BLOCK] = tag
        .as_slice()
        .try_into()
        .map_err(|_| KeyBlockError::Crypto)?;
    let encrypted = cipher::encrypt(BlockAlg::Aes, &kbek, &Mode::Cbc { iv }, &clear)
        .map_err(|_| KeyBlockError::Crypto)?;
    let mut out = header_ascii;
    hex_encode(&mut out, &encrypted);
    hex_encode(&mut out, &tag);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

#[cfg(test)]
mod tests;
