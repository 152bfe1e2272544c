//! ANSI X9.143 / ISO 20038 key blocks (the "TR-31" format).
//!
//! A key block is printable ASCII: a 16-character header, optional blocks,
//! then the hex of the encrypted key data and of the MAC. The key data is
//! key length in bits (2 bytes, big endian) ‖ key ‖ padding (random) up to
//! a whole number of cipher blocks. Three versions are served:
//!
//! | version | KBPK | KBEK, KBAK | MAC | encryption |
//! | --- | --- | --- | --- | --- |
//! | `D` | AES-128/192/256 | derived, AES-CMAC counter mode (SP 800-108) | AES-CMAC(KBAK, header ‖ key data), 16 bytes | AES-CBC(KBEK, IV = MAC) |
//! | `B` | TDES 2 or 3-key | derived, TDES-CMAC counter mode | TDES-CMAC(KBAK, header ‖ key data), 8 bytes | TDES-CBC(KBEK, IV = MAC) |
//! | `C` | TDES 2 or 3-key | KBPK ⊕ `45…` and KBPK ⊕ `4D…` (variants) | ISO 9797-1 alg. 1 CBC-MAC(KBAK, header ‖ encrypted key data), first 4 bytes | TDES-CBC(KBEK, IV = first 8 header characters) |
//!
//! Version `A` (the original variant binding, `C`'s arithmetic) is refused:
//! PCI PIN forbids it for import, and hsmlink never makes it.

mod header;
pub(crate) mod tdes;

pub use header::{Header, OptionalBlock};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::cipher::{self, BlockAlg, Mode};
use crate::mac::{self, MacAlg};

/// Length of the version `D` MAC in bytes.
pub const MAC_LEN_D: usize = 16;

/// Why a key block is refused. No variant carries key material.
///
/// The server maps them to `CKR_*` codes: `BadLength` →
/// `CKR_WRAPPED_KEY_LEN_RANGE`, `KbpkSize` → `CKR_UNWRAPPING_KEY_SIZE_RANGE`
/// (or `CKR_WRAPPING_KEY_SIZE_RANGE`), every other →
/// `CKR_WRAPPED_KEY_INVALID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyBlockError {
    /// The version ID is unknown or refused (`A`).
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
    /// The KBPK's length does not fit the version: 16, 24 or 32 bytes
    /// (AES) for `D`, 16 or 24 bytes (TDES) for `B` and `C`.
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

/// How a key block version protects its key data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// `D`: AES, derived keys, MAC then encrypt with the MAC as IV.
    AesDerivation,
    /// `B`: TDES, derived keys, MAC then encrypt with the MAC as IV.
    TdesDerivation,
    /// `C`: TDES, key variants, encrypt then MAC.
    TdesVariant,
}

impl Binding {
    fn of(version: u8) -> Result<Self> {
        match version {
            b'D' => Ok(Self::AesDerivation),
            b'B' => Ok(Self::TdesDerivation),
            b'C' => Ok(Self::TdesVariant),
            _ => Err(KeyBlockError::UnsupportedVersion),
        }
    }

    /// Cipher block length: the header and the key data are whole blocks.
    fn block(self) -> usize {
        match self {
            Self::AesDerivation => 16,
            Self::TdesDerivation | Self::TdesVariant => tdes::BLOCK,
        }
    }

    /// MAC length in bytes (twice as many hex characters in the block).
    fn mac_len(self) -> usize {
        match self {
            Self::AesDerivation => MAC_LEN_D,
            Self::TdesDerivation => tdes::BLOCK,
            Self::TdesVariant => 4,
        }
    }

    /// Whether the KBPK has a length this version's cipher takes.
    fn check_kbpk(self, kbpk: &[u8]) -> Result<()> {
        let fits = match self {
            Self::AesDerivation => matches!(kbpk.len(), 16 | 24 | 32),
            Self::TdesDerivation | Self::TdesVariant => matches!(kbpk.len(), 16 | 24),
        };
        if fits {
            Ok(())
        } else {
            Err(KeyBlockError::KbpkSize)
        }
    }

    /// The KBEK and KBAK from the KBPK.
    fn keys(self, kbpk: &[u8]) -> Result<KeyPair> {
        match self {
            Self::AesDerivation => derive_d(kbpk),
            Self::TdesDerivation => derive_b(kbpk),
            Self::TdesVariant => variants_c(kbpk),
        }
    }

    /// The MAC over `header ‖ data` (clear key data for `B`/`D`, encrypted
    /// key data for `C`).
    fn mac(self, kbak: &[u8], header: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        let mut input = Zeroizing::new(Vec::with_capacity(header.len() + data.len()));
        input.extend_from_slice(header);
        input.extend_from_slice(data);
        Ok(match self {
            Self::AesDerivation => {
                mac::sign(MacAlg::CmacAes, kbak, None, &input).map_err(|_| KeyBlockError::Crypto)?
            }
            Self::TdesDerivation => tdes::cmac(kbak, &input)?.to_vec(),
            Self::TdesVariant => tdes::cbc_mac(kbak, &input)?[..4].to_vec(),
        })
    }

    /// The IV of the key data's CBC encryption.
    fn iv(self, header: &[u8], mac: &[u8]) -> Result<Vec<u8>> {
        let iv = match self {
            Self::AesDerivation | Self::TdesDerivation => mac,
            Self::TdesVariant => header.get(..tdes::BLOCK).ok_or(KeyBlockError::BadLength)?,
        };
        Ok(iv.to_vec())
    }

    fn encrypt(self, kbek: &[u8], iv: &[u8], clear: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::AesDerivation => {
                let iv = cipher::block_param(iv).map_err(|_| KeyBlockError::Crypto)?;
                cipher::encrypt(BlockAlg::Aes, kbek, &Mode::Cbc { iv }, clear)
                    .map_err(|_| KeyBlockError::Crypto)
            }
            Self::TdesDerivation | Self::TdesVariant => {
                tdes::cbc_encrypt(kbek, &tdes_iv(iv)?, clear)
            }
        }
    }

    fn decrypt(self, kbek: &[u8], iv: &[u8], encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            Self::AesDerivation => {
                let iv = cipher::block_param(iv).map_err(|_| KeyBlockError::Crypto)?;
                cipher::decrypt(BlockAlg::Aes, kbek, &Mode::Cbc { iv }, encrypted)
                    .map(Zeroizing::new)
                    .map_err(|_| KeyBlockError::Crypto)
            }
            Self::TdesDerivation | Self::TdesVariant => {
                tdes::cbc_decrypt(kbek, &tdes_iv(iv)?, encrypted)
            }
        }
    }
}

fn tdes_iv(iv: &[u8]) -> Result<[u8; tdes::BLOCK]> {
    iv.try_into().map_err(|_| KeyBlockError::Crypto)
}

/// Version `B`: the KBEK and KBAK derived from a TDES KBPK with TDES-CMAC
/// in counter mode: each 8-byte block is `CMAC(KBPK, counter ‖ usage ‖ 0x00
/// ‖ algorithm ‖ length in bits)`, usage 0x0000 (encryption) or 0x0001
/// (MAC), algorithm 0x0000 (2-key) or 0x0001 (3-key), length 0x0080 or
/// 0x00C0.
fn derive_b(kbpk: &[u8]) -> Result<KeyPair> {
    let (alg, bits): (u16, u16) = match kbpk.len() {
        16 => (0, 128),
        24 => (1, 192),
        _ => return Err(KeyBlockError::KbpkSize),
    };
    let derive = |usage: u16| -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(24));
        let mut counter = 1u8;
        while out.len() < kbpk.len() {
            let mut input = [0u8; 8];
            input[0] = counter;
            input[1..3].copy_from_slice(&usage.to_be_bytes());
            input[4..6].copy_from_slice(&alg.to_be_bytes());
            input[6..8].copy_from_slice(&bits.to_be_bytes());
            let block = Zeroizing::new(tdes::cmac(kbpk, &input)?);
            out.extend_from_slice(block.as_slice());
            counter = counter.wrapping_add(1);
        }
        Ok(out)
    };
    Ok((derive(0x0000)?, derive(0x0001)?))
}

/// Version `C`: KBEK = KBPK ⊕ `0x45` (`E`) and KBAK = KBPK ⊕ `0x4D` (`M`)
/// in every byte.
fn variants_c(kbpk: &[u8]) -> Result<KeyPair> {
    if kbpk.len() != 16 && kbpk.len() != 24 {
        return Err(KeyBlockError::KbpkSize);
    }
    let variant = |v: u8| Zeroizing::new(kbpk.iter().map(|b| b ^ v).collect::<Vec<u8>>());
    Ok((variant(0x45), variant(0x4D)))
}

/// Parses and verifies a key block under `kbpk`; returns its header and the
/// clear key (in a wiped buffer). The version (`B`, `C` or `D`) must fit the
/// KBPK (TDES or AES); `A` and unknown versions are
/// [`KeyBlockError::UnsupportedVersion`].
pub fn unwrap(kbpk: &[u8], block: &[u8]) -> Result<(Header, Zeroizing<Vec<u8>>)> {
    let header = Header::parse(block)?;
    let binding = Binding::of(header.version)?;
    binding.check_kbpk(kbpk)?;
    let (cipher_block, mac_len) = (binding.block(), binding.mac_len());
    let header_len = header.encoded_len();
    if !header_len.is_multiple_of(cipher_block) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    let (header_ascii, rest) = block.split_at(header_len);
    // hex(key data) ‖ hex(MAC); key data at least one block.
    if rest.len() < 2 * (cipher_block + mac_len)
        || !(rest.len() - 2 * mac_len).is_multiple_of(2 * cipher_block)
    {
        return Err(KeyBlockError::BadLength);
    }
    let (enc_hex, mac_hex) = rest.split_at(rest.len() - 2 * mac_len);
    let encrypted = hex_decode(enc_hex)?;
    let tag = hex_decode(mac_hex)?;
    let (kbek, kbak) = binding.keys(kbpk)?;
    let iv = binding.iv(header_ascii, &tag)?;
    let check = |data: &[u8]| -> Result<()> {
        let want = binding.mac(&kbak, header_ascii, data)?;
        if bool::from(want.ct_eq(&tag)) {
            Ok(())
        } else {
            Err(KeyBlockError::MacInvalid)
        }
    };
    let clear = if binding == Binding::TdesVariant {
        // Encrypt-then-MAC: nothing is decrypted before the MAC holds.
        check(&encrypted)?;
        binding.decrypt(&kbek, &iv, &encrypted)?
    } else {
        let clear = binding.decrypt(&kbek, &iv, &encrypted)?;
        check(&clear)?;
        clear
    };
    let bits = usize::from(u16::from_be_bytes([clear[0], clear[1]]));
    if bits == 0 || bits % 8 != 0 || bits / 8 > clear.len() - 2 {
        return Err(KeyBlockError::KeyLength);
    }
    let key = Zeroizing::new(clear[2..2 + bits / 8].to_vec());
    Ok((header, key))
}

/// Wraps `key` in a key block under `kbpk`, with `header` (its version —
/// `B`, `C` or `D` — must fit the KBPK; the length field is computed). The
/// padding is random, from the system generator.
pub fn wrap(kbpk: &[u8], header: &Header, key: &[u8]) -> Result<Vec<u8>> {
    let cipher_block = Binding::of(header.version)?.block();
    let pad_len = (cipher_block - (2 + key.len()) % cipher_block) % cipher_block;
    let mut padding = Zeroizing::new(vec![0u8; pad_len]);
    crate::rng::fill(&mut padding).map_err(|_| KeyBlockError::Crypto)?;
    wrap_with_padding(kbpk, header, key, &padding)
}

/// [`wrap`] with the caller's padding (known-answer tests): `padding` must
/// bring `2 + key.len()` to a whole number of cipher blocks.
pub fn wrap_with_padding(
    kbpk: &[u8],
    header: &Header,
    key: &[u8],
    padding: &[u8],
) -> Result<Vec<u8>> {
    let binding = Binding::of(header.version)?;
    binding.check_kbpk(kbpk)?;
    let (cipher_block, mac_len) = (binding.block(), binding.mac_len());
    let key_bits = u16::try_from(key.len() * 8).map_err(|_| KeyBlockError::KeyLength)?;
    if key.is_empty() || !(2 + key.len() + padding.len()).is_multiple_of(cipher_block) {
        return Err(KeyBlockError::KeyLength);
    }
    let header_len = header.encoded_len();
    if !header_len.is_multiple_of(cipher_block) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    let data_len = 2 + key.len() + padding.len();
    let total = header_len + 2 * data_len + 2 * mac_len;
    let header_ascii = header.encode(total)?;
    let mut clear = Zeroizing::new(Vec::with_capacity(data_len));
    clear.extend_from_slice(&key_bits.to_be_bytes());
    clear.extend_from_slice(key);
    clear.extend_from_slice(padding);
    let (kbek, kbak) = binding.keys(kbpk)?;
    let (encrypted, tag) = if binding == Binding::TdesVariant {
        let iv = binding.iv(&header_ascii, &[])?;
        let encrypted = binding.encrypt(&kbek, &iv, &clear)?;
        let tag = binding.mac(&kbak, &header_ascii, &encrypted)?;
        (encrypted, tag)
    } else {
        let tag = binding.mac(&kbak, &header_ascii, &clear)?;
        let encrypted = binding.encrypt(&kbek, &tag, &clear)?;
        (encrypted, tag)
    };
    let mut out = header_ascii;
    hex_encode(&mut out, &encrypted);
    hex_encode(&mut out, &tag);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

#[cfg(test)]
mod tests;
