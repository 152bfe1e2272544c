//! `hsmlink_crypto::sm4_fast` against the standard's examples and against
//! the `sm4` crate (the reference) on random keys and data, in ECB, CBC
//! (both directions) and CTR, through the same `cipher`-trait modes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use cbc::cipher::array::Array;
use cbc::cipher::consts::U16;
use cbc::cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit,
    StreamCipher,
};
use hex_literal::hex;
use hsmlink_crypto::cipher::{BlockAlg, Mode, decrypt, encrypt};
use hsmlink_crypto::sm4_fast::Sm4 as Fast;
use proptest::prelude::*;
use sm4::Sm4 as Reference;

const KEY: [u8; 16] = hex!("0123456789abcdeffedcba9876543210");

fn blocks(buf: &mut [u8]) -> &mut [Array<u8, U16>] {
    let (blocks, rest) = Array::<u8, U16>::slice_as_chunks_mut(buf);
    assert!(rest.is_empty());
    blocks
}

// GB/T 32907-2016 appendix A, example 1.
#[test]
fn standard_example_one_block() {
    let cipher = Fast::new(&KEY.into());
    let mut block = Array::from(KEY);
    cipher.encrypt_block(&mut block);
    assert_eq!(block, Array::from(hex!("681edf34d206965e86b3e94f536e4246")));
    cipher.decrypt_block(&mut block);
    assert_eq!(block, Array::from(KEY));
}

// GB/T 32907-2016 appendix A, example 2: the plaintext encrypted 1,000,000
// times with the same key. A second in release, longer in debug.
#[test]
fn standard_example_million_times() {
    let cipher = Fast::new(&KEY.into());
    let mut block = Array::from(KEY);
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(block, Array::from(hex!("595298c7c6fd271f0402f804c33d3f66")));
    for _ in 0..1_000_000 {
        cipher.decrypt_block(&mut block);
    }
    assert_eq!(block, Array::from(KEY));
}

// The public engine's SM4 paths use the fast cipher: the standard's example
// in ECB, and CBC/CTR of several lengths agree with the reference.
#[test]
fn engine_paths_match_reference() {
    assert_eq!(
        encrypt(BlockAlg::Sm4, &KEY, &Mode::Ecb, &KEY).unwrap(),
        hex!("681edf34d206965e86b3e94f536e4246")
    );
    let iv = [7u8; 16];
    for len in [16usize, 112, 128, 144, 4096 + 48] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let mut want = data.clone();
        cbc::Encryptor::<Reference>::new(&KEY.into(), &iv.into()).encrypt_blocks(blocks(&mut want));
        let got = encrypt(BlockAlg::Sm4, &KEY, &Mode::Cbc { iv }, &data).unwrap();
        assert_eq!(got, want, "CBC {len}");
        assert_eq!(
            decrypt(BlockAlg::Sm4, &KEY, &Mode::Cbc { iv }, &got).unwrap(),
            data
        );
        let mut want = data.clone();
        ctr::Ctr128BE::<Reference>::new(&KEY.into(), &iv.into()).apply_keystream(&mut want);
        let ctr = Mode::Ctr {
            counter_block: iv,
            counter_bits: 128,
        };
        assert_eq!(
            encrypt(BlockAlg::Sm4, &KEY, &ctr, &data).unwrap(),
            want,
            "CTR {len}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // Lengths up to 40 blocks: fewer than, exactly and more than the eight
    // interleaved blocks, with a tail.
    #[test]
    fn same_as_reference(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        data in (0usize..=40).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 16)),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let fast = Fast::new(&key.into());
        let reference = Reference::new(&key.into());

        // ECB, both directions.
        let mut a = data.clone();
        let mut b = data.clone();
        fast.encrypt_blocks(blocks(&mut a));
        reference.encrypt_blocks(blocks(&mut b));
        prop_assert_eq!(&a, &b);
        fast.decrypt_blocks(blocks(&mut a));
        prop_assert_eq!(&a, &data);

        // CBC encrypt (serial) and decrypt (parallel).
        let mut a = data.clone();
        let mut b = data.clone();
        cbc::Encryptor::<Fast>::new(&key.into(), &iv.into()).encrypt_blocks(blocks(&mut a));
        cbc::Encryptor::<Reference>::new(&key.into(), &iv.into()).encrypt_blocks(blocks(&mut b));
        prop_assert_eq!(&a, &b);
        cbc::Decryptor::<Fast>::new(&key.into(), &iv.into()).decrypt_blocks(blocks(&mut a));
        prop_assert_eq!(&a, &data);

        // CTR over whole blocks and a partial last one.
        let mut stream = data.clone();
        stream.extend_from_slice(&tail);
        let mut a = stream.clone();
        let mut b = stream.clone();
        ctr::Ctr128BE::<Fast>::new(&key.into(), &iv.into()).apply_keystream(&mut a);
        ctr::Ctr128BE::<Reference>::new(&key.into(), &iv.into()).apply_keystream(&mut b);
        prop_assert_eq!(a, b);
    }
}
