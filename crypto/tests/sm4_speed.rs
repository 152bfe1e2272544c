//! SM4 throughput through hsmlink-crypto's public API, next to the `sm4`
//! crate driven directly by the `cbc`/`ctr` modes: a measurement, not a
//! test (no timed assertion). Run it on a quiet machine:
//! `cargo test --release -p hsmlink-crypto --test sm4_speed -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::time::Instant;

use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use hsmlink_crypto::cipher::{BlockAlg, Mode, decrypt, encrypt};

const KEY: [u8; 16] = *b"0123456789abcdef";
const IV: [u8; 16] = [0x5a; 16];
const LEN: usize = 16 << 20;
const ROUNDS: usize = 3;

/// Best of `ROUNDS` runs of `f` over `LEN` bytes, in Mbit/s (10^6 bits).
fn mbit_per_s(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    LEN as f64 * 8.0 / best / 1e6
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn sm4_throughput() {
    let data = vec![0xa5u8; LEN];
    let cbc = Mode::Cbc { iv: IV };
    let ctr = Mode::Ctr {
        counter_block: IV,
        counter_bits: 128,
    };
    let ct = encrypt(BlockAlg::Sm4, &KEY, &cbc, &data).unwrap();
    let rows: [(&str, f64); 8] = [
        (
            "hsmlink-crypto ECB encrypt",
            mbit_per_s(|| drop(encrypt(BlockAlg::Sm4, &KEY, &Mode::Ecb, &data).unwrap())),
        ),
        (
            "hsmlink-crypto CBC encrypt",
            mbit_per_s(|| drop(encrypt(BlockAlg::Sm4, &KEY, &cbc, &data).unwrap())),
        ),
        (
            "hsmlink-crypto CBC decrypt",
            mbit_per_s(|| drop(decrypt(BlockAlg::Sm4, &KEY, &cbc, &ct).unwrap())),
        ),
        (
            "hsmlink-crypto CTR",
            mbit_per_s(|| drop(encrypt(BlockAlg::Sm4, &KEY, &ctr, &data).unwrap())),
        ),
        (
            "sm4 crate ECB encrypt",
            mbit_per_s(|| {
                let mut buf = data.clone();
                let (blocks, _) = cbc::cipher::array::Array::slice_as_chunks_mut(&mut buf);
                sm4::cipher::BlockCipherEncrypt::encrypt_blocks(
                    &sm4::Sm4::new(&KEY.into()),
                    blocks,
                );
            }),
        ),
        (
            "sm4 crate CBC encrypt",
            mbit_per_s(|| {
                let mut buf = data.clone();
                let (blocks, _) = cbc::cipher::array::Array::slice_as_chunks_mut(&mut buf);
                cbc::Encryptor::<sm4::Sm4>::new(&KEY.into(), &IV.into()).encrypt_blocks(blocks);
            }),
        ),
        (
            "sm4 crate CBC decrypt",
            mbit_per_s(|| {
                let mut buf = ct.clone();
                let (blocks, _) = cbc::cipher::array::Array::slice_as_chunks_mut(&mut buf);
                cbc::Decryptor::<sm4::Sm4>::new(&KEY.into(), &IV.into()).decrypt_blocks(blocks);
            }),
        ),
        (
            "sm4 crate CTR",
            mbit_per_s(|| {
                let mut buf = data.clone();
                ctr::Ctr128BE::<sm4::Sm4>::new(&KEY.into(), &IV.into()).apply_keystream(&mut buf);
            }),
        ),
    ];
    for (name, speed) in rows {
        println!("{name:<28} {speed:>8.0} Mbit/s");
    }
}
