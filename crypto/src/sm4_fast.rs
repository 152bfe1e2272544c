//! SM4 (GB/T 32907-2016) with 32-bit T-tables, several blocks interleaved.
//!
//! Why here and not a crate: the `sm4` crate (RustCrypto, scalar: a byte
//! S-box, then the linear transform L with four rotations, one block at a
//! time) sits near the 650 Mbit/s SM4 floor of our GM/T targets, and no
//! well-kept SIMD or AES-NI SM4 crate was found (gmcrypto-core is
//! bitsliced and constant-time but far slower; libsm and smcrypto are
//! scalar like `sm4`). This is the classic software speed-up, in safe Rust:
//! - four 1 KiB tables `T_k[a] = L(S(a) << (24 - 8k))` fold the S-box and
//!   L into four loads and three XORs per round;
//! - [`Sm4`] announces 8 parallel blocks to the `cipher` traits, so CTR,
//!   ECB and CBC decryption (whose blocks are independent) run eight
//!   independent round chains side by side, which a superscalar CPU
//!   overlaps. CBC encryption is serial by nature: it gets the tables only.
//!
//! Side channels: table look-ups indexed by secret data are not
//! cache-timing constant-time. Neither is the `sm4` crate's byte S-box
//! (also a secret-indexed look-up, in a smaller table). The tables here
//! are 4 KiB, which fits in L1 and is loaded whole by any bulk operation,
//! but a co-resident attacker measuring cache lines is not ruled out.
//!
//! The `sm4` crate stays the reference: known-answer and property tests
//! (crypto/tests/sm4_fast.rs) compare the two on random keys and data.

use aes::cipher::consts::{U8, U16};
use aes::cipher::{
    AlgorithmName, Block, BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt,
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut, Key,
    KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The S-box of GB/T 32907-2016, section 6.2.
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

/// System parameter FK (section 7.3).
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// Fixed parameters CK (section 7.3): byte j of CK_i is (4i + j) * 7 mod 256.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            ck[i] = (ck[i] << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        i += 1;
    }
    ck
};

/// The linear transform L of the encryption rounds (section 6.2).
const fn l(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// `T[k][a] = L(S(a) << (24 - 8k))`: byte k (0 = most significant) of the
/// round function's input through S and L.
static T: [[u32; 256]; 4] = {
    let mut t = [[0u32; 256]; 4];
    let mut a = 0;
    while a < 256 {
        let s = SBOX[a] as u32;
        let mut k = 0;
        while k < 4 {
            t[k][a] = l(s << (24 - 8 * k));
            k += 1;
        }
        a += 1;
    }
    t
};

/// The round function T = L(tau(x)) by table. Indexing with `u8` keeps the
/// bounds checks out of the loop.
#[inline(always)]
fn round_t(x: u32) -> u32 {
    let [b0, b1, b2, b3] = x.to_be_bytes();
    T[0][b0 as usize] ^ T[1][b1 as usize] ^ T[2][b2 as usize] ^ T[3][b3 as usize]
}

/// T' of the key schedule: tau, then L'(b) = b ^ (b <<< 13) ^ (b <<< 23).
fn key_t(x: u32) -> u32 {
    let b = u32::from_be_bytes(x.to_be_bytes().map(|byte| SBOX[byte as usize]));
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// 32 rounds over `N` blocks at once (state words X0..X3 per block), with
/// the round keys in the order given; then the reverse transform R.
#[inline(always)]
fn crypt<const N: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]; N]) {
    let mut x = [[0u32; 4]; N];
    for (state, block) in x.iter_mut().zip(blocks.iter()) {
        for (word, bytes) in state.iter_mut().zip(block.chunks_exact(4)) {
            let mut be = [0u8; 4];
            be.copy_from_slice(bytes);
            *word = u32::from_be_bytes(be);
        }
    }
    for quad in rk.chunks_exact(4) {
        // Four rounds with the state words renamed instead of shifted.
        for state in x.iter_mut() {
            state[0] ^= round_t(state[1] ^ state[2] ^ state[3] ^ quad[0]);
        }
        for state in x.iter_mut() {
            state[1] ^= round_t(state[2] ^ state[3] ^ state[0] ^ quad[1]);
        }
        for state in x.iter_mut() {
            state[2] ^= round_t(state[3] ^ state[0] ^ state[1] ^ quad[2]);
        }
        for state in x.iter_mut() {
            state[3] ^= round_t(state[0] ^ state[1] ^ state[2] ^ quad[3]);
        }
    }
    for (state, block) in x.iter().zip(blocks.iter_mut()) {
        for (bytes, word) in block.chunks_exact_mut(4).zip(state.iter().rev()) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
    }
}

/// SM4 with the encryption round keys and, reversed, the decryption ones.
#[derive(Clone)]
pub struct Sm4 {
    enc: [u32; 32],
    dec: [u32; 32],
}

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        let mut k = [0u32; 4];
        for ((word, bytes), fk) in k.iter_mut().zip(key.chunks_exact(4)).zip(FK) {
            let mut be = [0u8; 4];
            be.copy_from_slice(bytes);
            *word = u32::from_be_bytes(be) ^ fk;
        }
        let mut enc = [0u32; 32];
        for (i, rk) in enc.iter_mut().enumerate() {
            *rk = k[0] ^ key_t(k[1] ^ k[2] ^ k[3] ^ CK[i]);
            k = [k[1], k[2], k[3], *rk];
        }
        k.zeroize();
        let mut dec = enc;
        dec.reverse();
        Sm4 { enc, dec }
    }
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

/// Eight blocks in flight: enough independent work to hide the latency of
/// the table loads; more gains little and spills registers.
impl ParBlocksSizeUser for Sm4 {
    type ParBlocksSize = U8;
}

/// One block through `crypt`.
#[inline(always)]
fn one(rk: &[u32; 32], mut block: InOut<'_, '_, Block<Sm4>>) {
    let mut buf = [[0u8; 16]; 1];
    buf[0].copy_from_slice(block.get_in());
    crypt(rk, &mut buf);
    block.get_out().copy_from_slice(&buf[0]);
}

/// Eight blocks through `crypt`, interleaved.
#[inline(always)]
fn eight(rk: &[u32; 32], mut blocks: InOut<'_, '_, ParBlocks<Sm4>>) {
    let mut buf = [[0u8; 16]; 8];
    for (dst, src) in buf.iter_mut().zip(blocks.get_in().iter()) {
        dst.copy_from_slice(src);
    }
    crypt(rk, &mut buf);
    for (dst, src) in blocks.get_out().iter_mut().zip(buf.iter()) {
        dst.copy_from_slice(src);
    }
}

impl BlockCipherEncrypt for Sm4 {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(&Enc(self))
    }
}

impl BlockCipherDecrypt for Sm4 {
    #[inline]
    fn decrypt_with_backend(&self, f: impl BlockCipherDecClosure<BlockSize = Self::BlockSize>) {
        f.call(&Dec(self))
    }
}

/// The encryption backend (the `cipher` traits' view of [`Sm4`]).
struct Enc<'a>(&'a Sm4);
/// The decryption backend.
struct Dec<'a>(&'a Sm4);

impl BlockSizeUser for Enc<'_> {
    type BlockSize = U16;
}
impl ParBlocksSizeUser for Enc<'_> {
    type ParBlocksSize = U8;
}
impl BlockCipherEncBackend for Enc<'_> {
    #[inline]
    fn encrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
        one(&self.0.enc, block);
    }
    #[inline]
    fn encrypt_par_blocks(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        eight(&self.0.enc, blocks);
    }
}

impl BlockSizeUser for Dec<'_> {
    type BlockSize = U16;
}
impl ParBlocksSizeUser for Dec<'_> {
    type ParBlocksSize = U8;
}
impl BlockCipherDecBackend for Dec<'_> {
    #[inline]
    fn decrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
        one(&self.0.dec, block);
    }
    #[inline]
    fn decrypt_par_blocks(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        eight(&self.0.dec, blocks);
    }
}

impl core::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sm4 { .. }")
    }
}

impl AlgorithmName for Sm4 {
    fn write_alg_name(f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sm4")
    }
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
    }
}

impl ZeroizeOnDrop for Sm4 {}
