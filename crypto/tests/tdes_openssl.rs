//! `hsmlink_crypto::tdes` against the `openssl` command (OpenSSL 3's
//! default provider: `des-ede3`, `des-ede3-cbc`, `des-ede-cbc`, CMAC over
//! `DES-EDE3-CBC`): every mode, both key lengths, several data lengths,
//! multi-part feeding, and both MACs. OpenSSL is an independent
//! implementation; nothing here compares the crate with itself.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use hsmlink_crypto::cipher::Direction;
use hsmlink_crypto::mac::{self, MacAlg};
use hsmlink_crypto::tdes::{self, MacKind, Mode, TdesCtx};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `openssl ARGS` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// OpenSSL's cipher name for a key length and mode (EDE2 is `des-ede`).
fn cipher_name(key_len: usize, mode: &Mode) -> &'static str {
    match (key_len, mode) {
        (16, Mode::Ecb) => "-des-ede",
        (16, _) => "-des-ede-cbc",
        (24, Mode::Ecb) => "-des-ede3",
        (_, _) => "-des-ede3-cbc",
    }
}

fn openssl_enc(key: &[u8], mode: &Mode, dir: Direction, data: &[u8]) -> Vec<u8> {
    let key_hex = hex(key);
    let mut args = vec!["enc", cipher_name(key.len(), mode), "-K", key_hex.as_str()];
    let iv_hex;
    if let Mode::Cbc { iv } | Mode::CbcPad { iv } = mode {
        iv_hex = hex(iv);
        args.extend(["-iv", iv_hex.as_str()]);
    }
    if !matches!(mode, Mode::CbcPad { .. }) {
        args.push("-nopad");
    }
    if dir == Direction::Decrypt {
        args.push("-d");
    }
    openssl(&args, data)
}

/// Deterministic test data (no randomness: a failure reproduces).
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect()
}

fn keys() -> [Vec<u8>; 2] {
    [
        unhex("0123456789abcdeffedcba9876543210"),
        unhex("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"),
    ]
}

fn multi(key: &[u8], mode: &Mode, dir: Direction, input: &[u8], step: usize) -> Vec<u8> {
    let mut ctx = TdesCtx::new(key, mode, dir).unwrap();
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend(ctx.update(c).unwrap());
    }
    out.extend(ctx.finalize().unwrap());
    out
}

#[test]
fn every_mode_agrees_with_openssl_enc() {
    let iv = *b"\x12\x34\x56\x78\x90\xab\xcd\xef";
    for key in keys() {
        for mode in [Mode::Ecb, Mode::Cbc { iv }, Mode::CbcPad { iv }] {
            let lens: &[usize] = if matches!(mode, Mode::CbcPad { .. }) {
                &[0, 1, 7, 8, 9, 23, 64]
            } else {
                &[8, 16, 64]
            };
            for &len in lens {
                let plain = data(len, key.len() as u8);
                let want = openssl_enc(&key, &mode, Direction::Encrypt, &plain);
                let got = tdes::encrypt(&key, &mode, &plain).unwrap();
                assert_eq!(
                    hex(&got),
                    hex(&want),
                    "{mode:?} key {} len {len}",
                    key.len()
                );
                for step in [1, 5, 8, 9] {
                    assert_eq!(multi(&key, &mode, Direction::Encrypt, &plain, step), want);
                    assert_eq!(multi(&key, &mode, Direction::Decrypt, &want, step), plain);
                }
                assert_eq!(
                    openssl_enc(&key, &mode, Direction::Decrypt, &got),
                    plain,
                    "OpenSSL decrypts ours"
                );
            }
        }
    }
}

#[test]
fn cmac_agrees_with_openssl_mac() {
    for key in keys() {
        // OpenSSL's CMAC takes a 24-byte DES-EDE3 key: a double-length key
        // is K1 ‖ K2 ‖ K1.
        let key24 = if key.len() == 16 {
            [&key[..], &key[..8]].concat()
        } else {
            key.clone()
        };
        let macopt = format!("hexkey:{}", hex(&key24));
        for len in [0, 1, 8, 13, 16, 100] {
            let m = data(len, 7);
            let want = openssl(
                &["mac", "-cipher", "DES-EDE3-CBC", "-macopt", &macopt, "CMAC"],
                &m,
            );
            let want = unhex(String::from_utf8(want).unwrap().trim());
            let got = mac::sign(MacAlg::Tdes(MacKind::Cmac), &key, None, &m).unwrap();
            assert_eq!(got, want, "key {} len {len}", key.len());
        }
    }
}

/// ISO 9797-1 MAC algorithm 1, padding method 1: the last block of OpenSSL's
/// CBC encryption (zero IV, no padding) of the zero-padded message.
#[test]
fn cbc_mac_agrees_with_openssl_cbc() {
    let zero_iv = Mode::Cbc { iv: [0; 8] };
    for key in keys() {
        for len in [0usize, 1, 8, 13, 16, 100] {
            let m = data(len, 3);
            let mut padded = m.clone();
            padded.resize(len.div_ceil(8).max(1) * 8, 0);
            let ct = openssl_enc(&key, &zero_iv, Direction::Encrypt, &padded);
            let last = &ct[ct.len() - 8..];
            let alg = MacAlg::Tdes(MacKind::CbcMac);
            assert_eq!(
                mac::sign(alg, &key, Some(8), &m).unwrap(),
                last,
                "key {} len {len}",
                key.len()
            );
            assert_eq!(mac::sign(alg, &key, None, &m).unwrap(), &last[..4]);
        }
    }
}
