//! Triple DES (TDEA, NIST SP 800-67 Rev. 2, ANSI X9.52) with double-length
//! (16-byte, keying option 2: K3 = K1) and triple-length (24-byte, keying
//! option 1) keys, in ECB, CBC and CBC with PKCS#7 padding; and the two
//! TDES MACs of PKCS#11: CMAC (NIST SP 800-38B, 8-byte MAC) and the CBC-MAC
//! of ISO/IEC 9797-1 MAC algorithm 1 with padding method 1 (zero bits).
//!
//! Serves `CKM_DES3_ECB`, `CKM_DES3_CBC`, `CKM_DES3_CBC_PAD` (PKCS#11
//! Current Mechanisms v3.0 section 2.32) through [`TdesCtx`], and, through
//! [`crate::mac::MacCtx`] with [`TdesMac`], `CKM_DES3_CMAC(_GENERAL)` and
//! `CKM_DES3_MAC(_GENERAL)`. The block is 8 bytes, so this is a context of
//! its own rather than a mode of [`crate::cipher::CipherCtx`] (whose
//! blocks are 16 bytes); it buffers by the same rules:
//! - ECB, CBC: `update` outputs every whole block, keeping a partial block;
//!   `finalize` fails with `DataLenRange` (encrypt) or
//!   `EncryptedDataLenRange` (decrypt) if a partial block is left.
//! - CBC-PAD: encrypt outputs whole blocks, `finalize` pads (PKCS#7,
//!   RFC 5652 section 6.3) and outputs the last block; decrypt holds back the
//!   last whole block until `finalize`, which strips the padding
//!   (`EncryptedDataInvalid` if malformed).
//!
//! The parity bits (the low bit of each key byte, FIPS 46-3) are ignored by
//! the cipher; [`generate_key`] sets them to odd parity as PKCS#11 asks of
//! DES keys.

use cbc::cipher::array::Array;
use cbc::cipher::block_padding::{Padding, Pkcs7};
use cbc::cipher::consts::U8;
use cbc::cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, BlockSizeUser,
    InnerIvInit, KeyInit,
};
use des::{TdesEde2, TdesEde3};
use hmac::Mac;
use zeroize::Zeroizing;

use crate::cipher::Direction;
use crate::error::{CryptoError, Result};

/// The TDEA block length in bytes.
pub const BLOCK_LEN: usize = 8;
/// A double-length key (`CKK_DES2`): K1 ‖ K2, used as K1 ‖ K2 ‖ K1.
pub const DES2_KEY_LEN: usize = 16;
/// A triple-length key (`CKK_DES3`): K1 ‖ K2 ‖ K3.
pub const DES3_KEY_LEN: usize = 24;

/// A mode of operation with its parameter (the mechanism parameter).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `CKM_DES3_ECB`, no parameter.
    Ecb,
    /// `CKM_DES3_CBC`, 8-byte IV.
    Cbc {
        /// The IV.
        iv: [u8; BLOCK_LEN],
    },
    /// `CKM_DES3_CBC_PAD`, 8-byte IV, PKCS#7 padding.
    CbcPad {
        /// The IV.
        iv: [u8; BLOCK_LEN],
    },
}

impl core::fmt::Debug for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Ecb => "Ecb",
            Self::Cbc { .. } => "Cbc",
            Self::CbcPad { .. } => "CbcPad",
        })
    }
}

/// An 8-byte IV from a mechanism parameter; `MechanismParamInvalid` for
/// any other length.
pub fn block_param(bytes: &[u8]) -> Result<[u8; BLOCK_LEN]> {
    bytes
        .try_into()
        .map_err(|_| CryptoError::MechanismParamInvalid)
}

/// Whether `len` is a TDES key length (16 or 24 bytes).
pub const fn is_key_len(len: usize) -> bool {
    matches!(len, DES2_KEY_LEN | DES3_KEY_LEN)
}

/// Sets the low bit of every byte so that each byte has an odd number of
/// one bits (FIPS 46-3 section 2: the parity bits of a DES key).
pub fn set_odd_parity(key: &mut [u8]) {
    for byte in key {
        let high = *byte & 0xfe;
        *byte = high | u8::from(high.count_ones() % 2 == 0);
    }
}

/// Whether every byte of `key` has odd parity.
pub fn has_odd_parity(key: &[u8]) -> bool {
    key.iter().all(|b| b.count_ones() % 2 == 1)
}

/// A fresh random key of `len` bytes (16 or 24, else `KeySizeRange`) with
/// odd parity (`CKM_DES2_KEY_GEN`, `CKM_DES3_KEY_GEN`).
pub fn generate_key(len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if !is_key_len(len) {
        return Err(CryptoError::KeySizeRange);
    }
    let mut key = Zeroizing::new(crate::rng::random_vec(len)?);
    set_odd_parity(&mut key);
    Ok(key)
}

/// Total output length of a single-part `C_Encrypt`/`C_Decrypt` over
/// `input_len` bytes, for the size query: exact, except for CBC-PAD
/// decryption where it is the upper bound `input_len`.
pub fn output_len(mode: &Mode, dir: Direction, input_len: usize) -> usize {
    match (mode, dir) {
        (Mode::CbcPad { .. }, Direction::Encrypt) => {
            (input_len / BLOCK_LEN + 1).saturating_mul(BLOCK_LEN)
        }
        _ => input_len,
    }
}

/// Single-part encryption (`C_Encrypt`).
pub fn encrypt(key: &[u8], mode: &Mode, data: &[u8]) -> Result<Vec<u8>> {
    one_shot(key, mode, Direction::Encrypt, data)
}

/// Single-part decryption (`C_Decrypt`).
pub fn decrypt(key: &[u8], mode: &Mode, data: &[u8]) -> Result<Vec<u8>> {
    one_shot(key, mode, Direction::Decrypt, data)
}

fn one_shot(key: &[u8], mode: &Mode, dir: Direction, data: &[u8]) -> Result<Vec<u8>> {
    let mut ctx = TdesCtx::new(key, mode, dir)?;
    let mut out = ctx.update(data)?;
    out.extend_from_slice(&ctx.finalize()?);
    Ok(out)
}

/// Multi-part TDES encryption or decryption (`C_EncryptInit` ..
/// `C_EncryptFinal`, `C_DecryptInit` .. `C_DecryptFinal`).
pub struct TdesCtx {
    dir: Direction,
    pad: bool,
    engine: Box<dyn Engine>,
    /// Input not yet processed (partial block, or the held-back block).
    buf: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for TdesCtx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TdesCtx")
            .field("dir", &self.dir)
            .field("pad", &self.pad)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl TdesCtx {
    /// Start an operation. `KeySizeRange` unless the key is 16 or 24 bytes.
    pub fn new(key: &[u8], mode: &Mode, dir: Direction) -> Result<Self> {
        let engine = match key.len() {
            DES2_KEY_LEN => block_engine::<TdesEde2>(key, mode, dir)?,
            DES3_KEY_LEN => block_engine::<TdesEde3>(key, mode, dir)?,
            _ => return Err(CryptoError::KeySizeRange),
        };
        Ok(Self {
            dir,
            pad: matches!(mode, Mode::CbcPad { .. }),
            engine,
            buf: Zeroizing::new(Vec::new()),
        })
    }

    /// Exact number of bytes the next [`Self::update`] with `input_len`
    /// bytes outputs (for the `C_EncryptUpdate` size query).
    pub fn update_len(&self, input_len: usize) -> usize {
        self.process_len(self.buf.len().saturating_add(input_len))
    }

    /// Number of bytes [`Self::finalize`] outputs: 0 without padding; with
    /// it, 8 when encrypting and the upper bound 8 when decrypting (the
    /// real length is 0..=7).
    pub fn final_len(&self) -> usize {
        if self.pad { BLOCK_LEN } else { 0 }
    }

    fn process_len(&self, n: usize) -> usize {
        if self.pad && self.dir == Direction::Decrypt && n.is_multiple_of(BLOCK_LEN) {
            // Hold back the last block: it carries the padding.
            n.saturating_sub(BLOCK_LEN)
        } else {
            n - n % BLOCK_LEN
        }
    }

    /// Process `data`, returning the output it releases. An error ends the
    /// operation.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let take = self.process_len(self.buf.len());
        let mut out: Vec<u8> = self.buf.drain(..take).collect();
        self.engine.apply(&mut out)?;
        Ok(out)
    }

    /// Finish the operation (`C_EncryptFinal`/`C_DecryptFinal`).
    pub fn finalize(mut self) -> Result<Vec<u8>> {
        if !self.pad {
            return if self.buf.is_empty() {
                Ok(Vec::new())
            } else {
                Err(match self.dir {
                    Direction::Encrypt => CryptoError::DataLenRange,
                    Direction::Decrypt => CryptoError::EncryptedDataLenRange,
                })
            };
        }
        let mut block = Zeroizing::new([0u8; BLOCK_LEN]);
        match self.dir {
            Direction::Encrypt => {
                let pos = self.buf.len();
                // Invariant: update() leaves fewer than BLOCK_LEN bytes when
                // encrypting; checked anyway, since raw_pad needs it.
                if pos >= BLOCK_LEN {
                    return Err(CryptoError::General);
                }
                block[..pos].copy_from_slice(&self.buf);
                Pkcs7::raw_pad(&mut block[..], pos);
                self.engine.apply(&mut block[..])?;
                Ok(block.to_vec())
            }
            Direction::Decrypt => {
                if self.buf.len() != BLOCK_LEN {
                    return Err(CryptoError::EncryptedDataLenRange);
                }
                block.copy_from_slice(&self.buf);
                self.engine.apply(&mut block[..])?;
                let plain =
                    Pkcs7::raw_unpad(&block[..]).map_err(|_| CryptoError::EncryptedDataInvalid)?;
                Ok(plain.to_vec())
            }
        }
    }
}

/// Whole blocks processed in place.
trait Engine: Send {
    fn apply(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// Bounds both TDES ciphers satisfy.
trait Tdes:
    BlockCipherEncrypt
    + BlockCipherDecrypt
    + BlockSizeUser<BlockSize = U8>
    + KeyInit
    + Clone
    + Send
    + 'static
{
}
impl<T> Tdes for T where
    T: BlockCipherEncrypt
        + BlockCipherDecrypt
        + BlockSizeUser<BlockSize = U8>
        + KeyInit
        + Clone
        + Send
        + 'static
{
}

fn as_blocks(buf: &mut [u8]) -> Result<&mut [Array<u8, U8>]> {
    let (blocks, rest) = Array::<u8, U8>::slice_as_chunks_mut(buf);
    if rest.is_empty() {
        Ok(blocks)
    } else {
        // Callers pass whole blocks only; defend anyway.
        Err(CryptoError::General)
    }
}

struct EcbEnc<C>(C);
struct EcbDec<C>(C);
struct CbcEnc<C: Tdes>(cbc::Encryptor<C>);
struct CbcDec<C: Tdes>(cbc::Decryptor<C>);

impl<C: Tdes> Engine for EcbEnc<C> {
    fn apply(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.encrypt_blocks(as_blocks(buf)?);
        Ok(())
    }
}
impl<C: Tdes> Engine for EcbDec<C> {
    fn apply(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.decrypt_blocks(as_blocks(buf)?);
        Ok(())
    }
}
impl<C: Tdes> Engine for CbcEnc<C> {
    fn apply(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.encrypt_blocks(as_blocks(buf)?);
        Ok(())
    }
}
impl<C: Tdes> Engine for CbcDec<C> {
    fn apply(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.decrypt_blocks(as_blocks(buf)?);
        Ok(())
    }
}

fn block_engine<C: Tdes>(key: &[u8], mode: &Mode, dir: Direction) -> Result<Box<dyn Engine>> {
    let cipher = C::new_from_slice(key).map_err(|_| CryptoError::KeySizeRange)?;
    Ok(match (mode, dir) {
        (Mode::Ecb, Direction::Encrypt) => Box::new(EcbEnc(cipher)),
        (Mode::Ecb, Direction::Decrypt) => Box::new(EcbDec(cipher)),
        (Mode::Cbc { iv } | Mode::CbcPad { iv }, Direction::Encrypt) => Box::new(CbcEnc(
            cbc::Encryptor::inner_iv_init(cipher, &Array::from(*iv)),
        )),
        (Mode::Cbc { iv } | Mode::CbcPad { iv }, Direction::Decrypt) => Box::new(CbcDec(
            cbc::Decryptor::inner_iv_init(cipher, &Array::from(*iv)),
        )),
    })
}

/// Which TDES MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacKind {
    /// CMAC (NIST SP 800-38B) over TDEA: `CKM_DES3_CMAC(_GENERAL)`.
    Cmac,
    /// ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, zero IV, every block
    /// under the full TDEA key) with padding method 1 (zero bits; the empty
    /// message is one zero block): `CKM_DES3_MAC(_GENERAL)`.
    CbcMac,
}

/// A TDES MAC in progress, for [`crate::mac::MacCtx`]. Key schedules and
/// chaining values are wiped on drop.
#[derive(Clone)]
pub struct TdesMac(MacState);

#[derive(Clone)]
enum MacState {
    Cmac2(cmac::Cmac<TdesEde2>),
    Cmac3(cmac::Cmac<TdesEde3>),
    CbcMac2(CbcMac<TdesEde2>),
    CbcMac3(CbcMac<TdesEde3>),
}

impl core::fmt::Debug for TdesMac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The kind only: never key material or chaining values.
        f.write_str(match self.0 {
            MacState::Cmac2(_) | MacState::Cmac3(_) => "TdesMac::Cmac",
            MacState::CbcMac2(_) | MacState::CbcMac3(_) => "TdesMac::CbcMac",
        })
    }
}

impl TdesMac {
    /// Start a MAC. `KeySizeRange` unless the key is 16 or 24 bytes.
    pub fn new(kind: MacKind, key: &[u8]) -> Result<Self> {
        let ks = |_| CryptoError::KeySizeRange;
        Ok(Self(match (kind, key.len()) {
            (MacKind::Cmac, DES2_KEY_LEN) => {
                MacState::Cmac2(KeyInit::new_from_slice(key).map_err(ks)?)
            }
            (MacKind::Cmac, DES3_KEY_LEN) => {
                MacState::Cmac3(KeyInit::new_from_slice(key).map_err(ks)?)
            }
            (MacKind::CbcMac, DES2_KEY_LEN) => MacState::CbcMac2(CbcMac::new(key)?),
            (MacKind::CbcMac, DES3_KEY_LEN) => MacState::CbcMac3(CbcMac::new(key)?),
            _ => return Err(CryptoError::KeySizeRange),
        }))
    }

    /// Absorb data.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            MacState::Cmac2(m) => m.update(data),
            MacState::Cmac3(m) => m.update(data),
            MacState::CbcMac2(m) => m.update(data),
            MacState::CbcMac3(m) => m.update(data),
        }
    }

    /// The full 8-byte MAC (the caller truncates).
    pub fn finalize(self) -> Vec<u8> {
        match self.0 {
            MacState::Cmac2(m) => m.finalize().into_bytes().to_vec(),
            MacState::Cmac3(m) => m.finalize().into_bytes().to_vec(),
            MacState::CbcMac2(m) => m.finalize(),
            MacState::CbcMac3(m) => m.finalize(),
        }
    }
}

/// CBC-MAC state: the chaining value and a partial block.
#[derive(Clone)]
struct CbcMac<C: Tdes> {
    cipher: C,
    chain: Zeroizing<[u8; BLOCK_LEN]>,
    partial: Zeroizing<Vec<u8>>,
    /// Whether any block went through the cipher yet.
    started: bool,
}

impl<C: Tdes> CbcMac<C> {
    fn new(key: &[u8]) -> Result<Self> {
        Ok(Self {
            cipher: C::new_from_slice(key).map_err(|_| CryptoError::KeySizeRange)?,
            chain: Zeroizing::new([0u8; BLOCK_LEN]),
            partial: Zeroizing::new(Vec::with_capacity(BLOCK_LEN)),
            started: false,
        })
    }

    fn absorb(&mut self, block: &[u8]) {
        for (c, b) in self.chain.iter_mut().zip(block) {
            *c ^= b;
        }
        let mut arr = Array::<u8, U8>::from(*self.chain);
        self.cipher.encrypt_block(&mut arr);
        self.chain.copy_from_slice(&arr);
        zeroize::Zeroize::zeroize(&mut arr);
        self.started = true;
    }

    fn update(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let need = BLOCK_LEN - self.partial.len();
            let (head, rest) = data.split_at(need.min(data.len()));
            self.partial.extend_from_slice(head);
            data = rest;
            if self.partial.len() < BLOCK_LEN {
                return;
            }
            let block = Zeroizing::new(core::mem::take(&mut *self.partial));
            self.absorb(&block);
        }
        let (blocks, rest) = data.as_chunks::<BLOCK_LEN>();
        for block in blocks {
            self.absorb(block);
        }
        self.partial.extend_from_slice(rest);
    }

    fn finalize(mut self) -> Vec<u8> {
        if !self.partial.is_empty() || !self.started {
            // Padding method 1: zero bits up to a (positive) whole block.
            let mut block = Zeroizing::new([0u8; BLOCK_LEN]);
            for (b, p) in block.iter_mut().zip(self.partial.iter()) {
                *b = *p;
            }
            self.absorb(&block[..]);
        }
        self.chain.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// SP 800-67 Rev. 1 appendix B / the NIST TDES examples: Key1, Key2, Key3.
    const K3: [u8; 24] = hex!("0123456789abcdef 23456789abcdef01 456789abcdef0123");
    /// The NIST TDES CBC example's IV and plaintext (the SP 800-38A plaintext).
    const CBC_IV: [u8; 8] = hex!("f69f2445df4f9b17");
    const P32: [u8; 32] = hex!(
        "6bc1bee22e409f96e93d7e117393172a"
        "ae2d8a571e03ac9c9eb76fac45af8e51"
    );
    const CBC_CT: [u8; 32] = hex!(
        "2079c3d53aa763e193b79e2569ab5262"
        "516570481f25b50f73c0bda85c8e0da7"
    );

    fn multi(key: &[u8], mode: &Mode, dir: Direction, data: &[u8], step: usize) -> Result<Vec<u8>> {
        let mut ctx = TdesCtx::new(key, mode, dir)?;
        let mut out = Vec::new();
        for c in data.chunks(step) {
            let want = ctx.update_len(c.len());
            let o = ctx.update(c)?;
            assert_eq!(o.len(), want);
            out.extend(o);
        }
        let bound = ctx.final_len();
        let f = ctx.finalize()?;
        assert!(f.len() <= bound);
        out.extend(f);
        Ok(out)
    }

    // NIST SP 800-67 Rev. 1 appendix B (TDEA ECB, keying option 1). The
    // standard's plaintext reads "The qufck brown fox jump" (sic); the
    // ciphertext below is of that text.
    #[test]
    fn sp800_67_ecb_example() {
        let pt = b"The qufck brown fox jump";
        let ct = hex!("a826fd8ce53b855f cce21c8112256fe6 68d5c05dd9b6b900");
        assert_eq!(encrypt(&K3, &Mode::Ecb, pt).unwrap(), ct);
        assert_eq!(decrypt(&K3, &Mode::Ecb, &ct).unwrap(), pt);
        for step in [1, 5, 8, 13] {
            assert_eq!(
                multi(&K3, &Mode::Ecb, Direction::Encrypt, pt, step).unwrap(),
                ct
            );
            assert_eq!(
                multi(&K3, &Mode::Ecb, Direction::Decrypt, &ct, step).unwrap(),
                pt
            );
        }
    }

    // NIST CSRC "Examples with intermediate values", TDES CBC (TCBC),
    // keying option 1.
    #[test]
    fn nist_tcbc_example() {
        let mode = Mode::Cbc { iv: CBC_IV };
        assert_eq!(encrypt(&K3, &mode, &P32).unwrap(), CBC_CT);
        assert_eq!(decrypt(&K3, &mode, &CBC_CT).unwrap(), P32);
        for step in [1, 3, 8, 9, 31] {
            assert_eq!(
                multi(&K3, &mode, Direction::Encrypt, &P32, step).unwrap(),
                CBC_CT
            );
            assert_eq!(
                multi(&K3, &mode, Direction::Decrypt, &CBC_CT, step).unwrap(),
                P32
            );
        }
    }

    // A double-length key is K1 ‖ K2 ‖ K1 (keying option 2).
    #[test]
    fn double_length_is_k1_k2_k1() {
        let k2: Vec<u8> = K3[..16].to_vec();
        let k121 = [&K3[..16], &K3[..8]].concat();
        let mode = Mode::Cbc { iv: CBC_IV };
        let two = encrypt(&k2, &mode, &P32).unwrap();
        assert_eq!(two, encrypt(&k121, &mode, &P32).unwrap());
        assert_ne!(two, CBC_CT);
        assert_eq!(decrypt(&k2, &mode, &two).unwrap(), P32);
    }

    #[test]
    fn cbc_pad_holds_back_and_strips() {
        let mode = Mode::CbcPad { iv: CBC_IV };
        for len in [0usize, 1, 7, 8, 9, 16, 31] {
            let data = &P32[..len];
            let ct = encrypt(&K3, &mode, data).unwrap();
            assert_eq!(ct.len(), output_len(&mode, Direction::Encrypt, len));
            assert_eq!(ct.len(), (len / 8 + 1) * 8);
            // The padded CBC-PAD ciphertext is CBC over data ‖ PKCS#7 pad.
            let pad = 8 - len % 8;
            let mut padded = data.to_vec();
            padded.extend(std::iter::repeat_n(pad as u8, pad));
            assert_eq!(
                encrypt(&K3, &Mode::Cbc { iv: CBC_IV }, &padded).unwrap(),
                ct
            );
            for step in [1, 7, 8] {
                assert_eq!(
                    multi(&K3, &mode, Direction::Decrypt, &ct, step).unwrap(),
                    data
                );
            }
        }
        // A whole block in: decrypt releases nothing until the final call.
        let ct = encrypt(&K3, &mode, &P32[..8]).unwrap();
        let mut ctx = TdesCtx::new(&K3, &mode, Direction::Decrypt).unwrap();
        assert_eq!(ctx.update_len(8), 0);
        assert!(ctx.update(&ct[..8]).unwrap().is_empty());
        assert_eq!(ctx.update(&ct[8..]).unwrap(), P32[..8]);
        assert!(ctx.finalize().unwrap().is_empty());
        // Bad padding.
        let mut bad = ct.clone();
        bad[15] ^= 0x55;
        assert_eq!(
            decrypt(&K3, &mode, &bad),
            Err(CryptoError::EncryptedDataInvalid)
        );
        assert_eq!(
            decrypt(&K3, &mode, &ct[..12]),
            Err(CryptoError::EncryptedDataLenRange)
        );
        assert_eq!(
            decrypt(&K3, &mode, &[]),
            Err(CryptoError::EncryptedDataLenRange)
        );
    }

    #[test]
    fn partial_blocks_and_bad_keys() {
        let cbc = Mode::Cbc { iv: CBC_IV };
        for mode in [Mode::Ecb, cbc] {
            assert_eq!(
                encrypt(&K3, &mode, &P32[..12]),
                Err(CryptoError::DataLenRange)
            );
            assert_eq!(
                decrypt(&K3, &mode, &P32[..12]),
                Err(CryptoError::EncryptedDataLenRange)
            );
        }
        for len in [0, 8, 15, 17, 23, 25, 32] {
            assert_eq!(
                TdesCtx::new(&vec![1u8; len], &Mode::Ecb, Direction::Encrypt).err(),
                Some(CryptoError::KeySizeRange),
                "{len}"
            );
            assert_eq!(
                TdesMac::new(MacKind::Cmac, &vec![1u8; len]).err(),
                Some(CryptoError::KeySizeRange)
            );
        }
        assert_eq!(
            block_param(&[0; 16]),
            Err(CryptoError::MechanismParamInvalid)
        );
        assert_eq!(
            block_param(&[0; 7]),
            Err(CryptoError::MechanismParamInvalid)
        );
        assert_eq!(block_param(&CBC_IV), Ok(CBC_IV));
    }

    #[test]
    fn parity() {
        let mut k = [0u8, 1, 2, 3, 0xfe, 0xff, 0x80, 0x7f];
        set_odd_parity(&mut k);
        assert_eq!(k, [0x01, 0x01, 0x02, 0x02, 0xfe, 0xfe, 0x80, 0x7f]);
        assert!(has_odd_parity(&k));
        assert!(has_odd_parity(&K3));
        assert!(!has_odd_parity(&[0x01, 0x03]));
        for len in [16, 24] {
            let a = generate_key(len).unwrap();
            let b = generate_key(len).unwrap();
            assert_eq!(a.len(), len);
            assert!(has_odd_parity(&a));
            assert_ne!(a, b);
        }
        assert_eq!(generate_key(8).err(), Some(CryptoError::KeySizeRange));
        // Parity bits do not change the cipher.
        let mut flipped = K3;
        for b in &mut flipped {
            *b ^= 1;
        }
        assert_eq!(
            encrypt(&flipped, &Mode::Ecb, &P32).unwrap(),
            encrypt(&K3, &Mode::Ecb, &P32).unwrap()
        );
    }

    fn mac(kind: MacKind, key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = TdesMac::new(kind, key).unwrap();
        m.update(data);
        m.finalize()
    }

    // NIST SP 800-38B appendix D.4 (three-key TDEA, examples 9-12) and
    // D.5 (two-key TDEA, examples 13-16).
    #[test]
    fn sp800_38b_tdea_cmac() {
        let m = P32;
        let three = hex!("8aa83bf8cbda1062 0bc1bf19fbb6cd58 bc313d4a371ca8b5");
        let two = hex!("4cf15134a2850dd5 8a3d10ba80570d38");
        let cases: [(&[u8], usize, [u8; 8]); 8] = [
            (&three, 0, hex!("b7a688e122ffaf95")),
            (&three, 8, hex!("8e8f293136283797")),
            (&three, 20, hex!("743ddbe0ce2dc2ed")),
            (&three, 32, hex!("33e6b1092400eae5")),
            (&two, 0, hex!("bd2ebf9a3ba00361")),
            (&two, 8, hex!("4ff2ab813c53ce83")),
            (&two, 20, hex!("62dd1b471902bd4e")),
            (&two, 32, hex!("31b1e431dabc4eb8")),
        ];
        for (key, len, want) in cases {
            assert_eq!(mac(MacKind::Cmac, key, &m[..len]), want, "{len}");
            // Fed in pieces.
            let mut ctx = TdesMac::new(MacKind::Cmac, key).unwrap();
            for c in m[..len].chunks(3) {
                ctx.update(c);
            }
            assert_eq!(ctx.finalize(), want);
        }
    }

    // ISO 9797-1 MAC algorithm 1 from a published vector: CBC-MAC with a
    // zero IV over (P1 ^ IV) ‖ P2 ‖ P3 ‖ P4 is the last block of the NIST
    // TCBC example's CBC encryption of P1..P4 under that IV.
    #[test]
    fn cbc_mac_from_the_tcbc_example() {
        let mut m = P32;
        for (b, iv) in m[..8].iter_mut().zip(CBC_IV) {
            *b ^= iv;
        }
        assert_eq!(mac(MacKind::CbcMac, &K3, &m), CBC_CT[24..]);
        for step in [1, 5, 8, 11] {
            let mut ctx = TdesMac::new(MacKind::CbcMac, &K3).unwrap();
            for c in m.chunks(step) {
                ctx.update(c);
            }
            assert_eq!(ctx.finalize(), CBC_CT[24..], "{step}");
        }
    }

    // Padding method 1: zero bytes to a whole block; the empty message is
    // one zero block (the SP 800-67 key's ECB encryption of zeros).
    #[test]
    fn cbc_mac_zero_padding() {
        assert_eq!(
            mac(MacKind::CbcMac, &K3, &[]),
            encrypt(&K3, &Mode::Ecb, &[0; 8]).unwrap()
        );
        assert_eq!(
            mac(MacKind::CbcMac, &K3, &P32[..13]),
            mac(MacKind::CbcMac, &K3, &[&P32[..13], &[0u8; 3][..]].concat())
        );
        assert_ne!(
            mac(MacKind::CbcMac, &K3, &P32[..13]),
            mac(MacKind::CbcMac, &K3, &P32[..14])
        );
    }
}
