//! Message authentication codes: HMAC (RFC 2104, FIPS 198-1) over every
//! digest of [`crate::digest`], CMAC (NIST SP 800-38B, RFC 4493) over
//! AES, SM4 and TDES, and the TDES CBC-MAC of ISO/IEC 9797-1 MAC
//! algorithm 1 ([`crate::tdes`]).
//!
//! Serves `CKM_SHA_1_HMAC`, `CKM_SHA224_HMAC` .. `CKM_SHA512_HMAC` and their
//! `*_HMAC_GENERAL` forms, `CKM_AES_CMAC`, `CKM_AES_CMAC_GENERAL`, vendor
//! `CKM_SM3_HMAC(_GENERAL)` and `CKM_SM4_MAC`/`CKM_SM4_CMAC`,
//! `CKM_DES3_CMAC(_GENERAL)` and `CKM_DES3_MAC(_GENERAL)`, through
//! `C_Sign*`/`C_Verify*` (PKCS#11 v3.0 sections 5.13, 5.14; mechanisms in
//! PKCS#11 Current Mechanisms v3.0 sections 2.8.1 (AES CMAC) and 2.20 (HMAC)).
//! The `_GENERAL` forms take the output length as their parameter
//! (`CK_MAC_GENERAL_PARAMS`): the MAC is truncated to its leftmost bytes.
//! The plain forms give the whole MAC, except `CKM_DES3_MAC`, which gives
//! half a block (4 bytes, PKCS#11 Current Mechanisms v3.0 section 2.32.8).

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::digest::DigestAlg;
use crate::error::{CryptoError, Result};
use crate::tdes::{self, TdesMac};

/// A MAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlg {
    /// HMAC over the given digest.
    Hmac(DigestAlg),
    /// CMAC over AES-128/192/256 (key length selects the variant).
    CmacAes,
    /// CMAC over SM4 (16-byte key).
    CmacSm4,
    /// CMAC or ISO 9797-1 CBC-MAC over TDES (16 or 24-byte key).
    Tdes(tdes::MacKind),
}

impl MacAlg {
    /// Length of the untruncated MAC in bytes.
    pub const fn full_len(self) -> usize {
        match self {
            Self::Hmac(d) => d.output_len(),
            Self::CmacAes | Self::CmacSm4 => 16,
            Self::Tdes(_) => tdes::BLOCK_LEN,
        }
    }

    /// Length of the MAC of the plain (not `_GENERAL`) mechanism: the full
    /// length, but half a block for the TDES CBC-MAC (`CKM_DES3_MAC`).
    pub const fn default_len(self) -> usize {
        match self {
            Self::Tdes(tdes::MacKind::CbcMac) => tdes::BLOCK_LEN / 2,
            _ => self.full_len(),
        }
    }
}

/// A MAC computation in progress (`C_SignInit`/`C_VerifyInit` .. `*Final`).
///
/// The key schedule lives inside the RustCrypto state, which zeroizes itself
/// on drop (`zeroize` features of `hmac`/`cmac`).
#[derive(Clone)]
pub struct MacCtx {
    state: State,
    out_len: usize,
}

#[derive(Clone)]
enum State {
    HmacSha1(hmac::Hmac<sha1::Sha1>),
    HmacSha224(hmac::Hmac<sha2::Sha224>),
    HmacSha256(hmac::Hmac<sha2::Sha256>),
    HmacSha384(hmac::Hmac<sha2::Sha384>),
    HmacSha512(hmac::Hmac<sha2::Sha512>),
    HmacSm3(hmac::Hmac<sm3::Sm3>),
    CmacAes128(cmac::Cmac<aes::Aes128>),
    CmacAes192(cmac::Cmac<aes::Aes192>),
    CmacAes256(cmac::Cmac<aes::Aes256>),
    CmacSm4(cmac::Cmac<crate::sm4_fast::Sm4>),
    Tdes(TdesMac),
}

/// `$body` over every RustCrypto `Mac` state, `$tdes` over the TDES one.
macro_rules! each_state {
    ($s:expr, $m:ident => $body:expr, $t:ident => $tdes:expr) => {
        match $s {
            State::HmacSha1($m) => $body,
            State::HmacSha224($m) => $body,
            State::HmacSha256($m) => $body,
            State::HmacSha384($m) => $body,
            State::HmacSha512($m) => $body,
            State::HmacSm3($m) => $body,
            State::CmacAes128($m) => $body,
            State::CmacAes192($m) => $body,
            State::CmacAes256($m) => $body,
            State::CmacSm4($m) => $body,
            State::Tdes($t) => $tdes,
        }
    };
}

impl MacCtx {
    /// Start a MAC with `key`. `out_len` is `None` for the plain mechanism
    /// ([`MacAlg::default_len`]) or `Some(n)` for `*_GENERAL` (1 ..= full
    /// length, else `MechanismParamInvalid`). HMAC takes any key length
    /// (RFC 2104 section 2); CMAC-AES takes 16/24/32 bytes, CMAC-SM4 16,
    /// TDES 16 or 24, else `KeySizeRange`.
    pub fn new(alg: MacAlg, key: &[u8], out_len: Option<usize>) -> Result<Self> {
        let full = alg.full_len();
        let out_len = match out_len {
            None => alg.default_len(),
            Some(n) if (1..=full).contains(&n) => n,
            Some(_) => return Err(CryptoError::MechanismParamInvalid),
        };
        let ks = |_| CryptoError::KeySizeRange;
        let state = match alg {
            MacAlg::Hmac(d) => match d {
                DigestAlg::Sha1 => State::HmacSha1(KeyInit::new_from_slice(key).map_err(ks)?),
                DigestAlg::Sha224 => State::HmacSha224(KeyInit::new_from_slice(key).map_err(ks)?),
                DigestAlg::Sha256 => State::HmacSha256(KeyInit::new_from_slice(key).map_err(ks)?),
                DigestAlg::Sha384 => State::HmacSha384(KeyInit::new_from_slice(key).map_err(ks)?),
                DigestAlg::Sha512 => State::HmacSha512(KeyInit::new_from_slice(key).map_err(ks)?),
                DigestAlg::Sm3 => State::HmacSm3(KeyInit::new_from_slice(key).map_err(ks)?),
            },
            MacAlg::CmacAes => match key.len() {
                16 => State::CmacAes128(KeyInit::new_from_slice(key).map_err(ks)?),
                24 => State::CmacAes192(KeyInit::new_from_slice(key).map_err(ks)?),
                32 => State::CmacAes256(KeyInit::new_from_slice(key).map_err(ks)?),
                _ => return Err(CryptoError::KeySizeRange),
            },
            MacAlg::CmacSm4 => State::CmacSm4(KeyInit::new_from_slice(key).map_err(ks)?),
            MacAlg::Tdes(kind) => State::Tdes(TdesMac::new(kind, key)?),
        };
        Ok(Self { state, out_len })
    }

    /// Length of the MAC this context produces (for size queries).
    pub fn mac_len(&self) -> usize {
        self.out_len
    }

    /// Absorb data (`C_SignUpdate`/`C_VerifyUpdate`).
    pub fn update(&mut self, data: &[u8]) {
        each_state!(&mut self.state, m => m.update(data), t => t.update(data))
    }

    /// The (possibly truncated) MAC (`C_SignFinal`).
    pub fn finalize(self) -> Vec<u8> {
        let mut full = each_state!(
            self.state,
            m => m.finalize().into_bytes().to_vec(),
            t => t.finalize()
        );
        full.truncate(self.out_len);
        full
    }

    /// Check `mac` in constant time (`C_VerifyFinal`): `SignatureLenRange`
    /// if its length differs from [`Self::mac_len`], `SignatureInvalid` if
    /// it does not match.
    pub fn verify(self, mac: &[u8]) -> Result<()> {
        if mac.len() != self.out_len {
            return Err(CryptoError::SignatureLenRange);
        }
        let want = self.finalize();
        if bool::from(want.ct_eq(mac)) {
            Ok(())
        } else {
            Err(CryptoError::SignatureInvalid)
        }
    }
}

impl core::fmt::Debug for MacCtx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MacCtx")
            .field("out_len", &self.out_len)
            .finish_non_exhaustive()
    }
}

/// One-shot MAC (`C_Sign`), see [`MacCtx::new`] for the arguments.
pub fn sign(alg: MacAlg, key: &[u8], out_len: Option<usize>, data: &[u8]) -> Result<Vec<u8>> {
    let mut ctx = MacCtx::new(alg, key, out_len)?;
    ctx.update(data);
    Ok(ctx.finalize())
}

/// One-shot constant-time verification (`C_Verify`).
pub fn verify(
    alg: MacAlg,
    key: &[u8],
    out_len: Option<usize>,
    data: &[u8],
    mac: &[u8],
) -> Result<()> {
    let mut ctx = MacCtx::new(alg, key, out_len)?;
    ctx.update(data);
    ctx.verify(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    const JEFE_DATA: &[u8] = b"what do ya want for nothing?";

    // RFC 4231 test case 2 (and RFC 2202 test case 2 for SHA-1).
    #[test]
    fn rfc4231_case2() {
        let cases: [(DigestAlg, &[u8]); 5] = [
            (
                DigestAlg::Sha1,
                &hex!("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            ),
            (
                DigestAlg::Sha224,
                &hex!("a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"),
            ),
            (
                DigestAlg::Sha256,
                &hex!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            ),
            (
                DigestAlg::Sha384,
                &hex!(
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                    "8e2240ca5e69e2c78b3239ecfab21649"
                ),
            ),
            (
                DigestAlg::Sha512,
                &hex!(
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
                ),
            ),
        ];
        for (d, want) in cases {
            let alg = MacAlg::Hmac(d);
            assert_eq!(sign(alg, b"Jefe", None, JEFE_DATA).unwrap(), want, "{d:?}");
            verify(alg, b"Jefe", None, JEFE_DATA, want).unwrap();
        }
    }

    // RFC 4231 test case 5: truncation to 128 bits (the *_HMAC_GENERAL case).
    #[test]
    fn rfc4231_case5_truncated() {
        let key = [0x0c; 20];
        let data = b"Test With Truncation";
        let alg = MacAlg::Hmac(DigestAlg::Sha256);
        let want = hex!("a3b6167473100ee06e0c796c2955552b");
        assert_eq!(sign(alg, &key, Some(16), data).unwrap(), want);
        verify(alg, &key, Some(16), data, &want).unwrap();
        let mut bad = want;
        bad[15] ^= 1;
        assert_eq!(
            verify(alg, &key, Some(16), data, &bad),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            verify(alg, &key, Some(16), data, &want[..15]),
            Err(CryptoError::SignatureLenRange)
        );
        assert_eq!(
            MacCtx::new(alg, &key, Some(33)).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
        assert_eq!(
            MacCtx::new(alg, &key, Some(0)).err(),
            Some(CryptoError::MechanismParamInvalid)
        );
    }

    // HMAC-SM3 has no RFC vector; expected value from OpenSSL 3:
    // `printf 'what do ya want for nothing?' | openssl dgst -sm3 -hmac Jefe`.
    #[test]
    fn hmac_sm3_openssl() {
        let want = hex!("2e87f1d16862e6d964b50a5200bf2b10b764faa9680a296a2405f24bec39f882");
        let alg = MacAlg::Hmac(DigestAlg::Sm3);
        let mut ctx = MacCtx::new(alg, b"Jefe", None).unwrap();
        for c in JEFE_DATA.chunks(5) {
            ctx.update(c);
        }
        assert_eq!(ctx.finalize(), want);
    }

    // RFC 4493 section 4 (= SP 800-38B appendix D.1, AES-128) and D.3 (AES-256).
    #[test]
    fn rfc4493_cmac_aes() {
        let key = hex!("2b7e151628aed2a6abf7158809cf4f3c");
        let m64 = hex!(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
            "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
        );
        let cases: [(&[u8], [u8; 16]); 4] = [
            (&[], hex!("bb1d6929e95937287fa37d129b756746")),
            (&m64[..16], hex!("070a16b46b4d4144f79bdd9dd04a287c")),
            (&m64[..40], hex!("dfa66747de9ae63030ca32611497c827")),
            (&m64, hex!("51f0bebf7e3b9d92fc49741779363cfe")),
        ];
        for (m, want) in cases {
            assert_eq!(sign(MacAlg::CmacAes, &key, None, m).unwrap(), want);
        }
        let key256 = hex!("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        assert_eq!(
            sign(MacAlg::CmacAes, &key256, None, &[]).unwrap(),
            hex!("028962f61b7bf89efc6b551f4667d983")
        );
        assert_eq!(
            sign(MacAlg::CmacAes, &key256, None, &m64[..16]).unwrap(),
            hex!("28a7023f452e8f82bd4bf28d8c37c35c")
        );
        // CMAC_GENERAL: leftmost bytes.
        assert_eq!(
            sign(MacAlg::CmacAes, &key, Some(4), &[]).unwrap(),
            hex!("bb1d6929")
        );
        assert_eq!(
            MacCtx::new(MacAlg::CmacAes, &key[..15], None).err(),
            Some(CryptoError::KeySizeRange)
        );
    }

    // The TDES MACs through MacCtx: lengths of the plain and `_GENERAL`
    // forms (SP 800-38B D.4 example 10 for the CMAC value).
    #[test]
    fn tdes_mac_lengths() {
        let key = hex!("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5");
        let m = hex!("6bc1bee22e409f96");
        let cmac = MacAlg::Tdes(tdes::MacKind::Cmac);
        let cbc = MacAlg::Tdes(tdes::MacKind::CbcMac);
        assert_eq!(
            sign(cmac, &key, None, &m).unwrap(),
            hex!("8e8f293136283797")
        );
        assert_eq!(sign(cmac, &key, Some(5), &m).unwrap(), hex!("8e8f293136"));
        let full = sign(cbc, &key, Some(8), &m).unwrap();
        assert_eq!(full.len(), 8);
        assert_eq!(sign(cbc, &key, None, &m).unwrap(), full[..4]);
        verify(cbc, &key, None, &m, &full[..4]).unwrap();
        assert_eq!(
            verify(cbc, &key, None, &m, &full),
            Err(CryptoError::SignatureLenRange)
        );
        for bad in [0, 9] {
            assert_eq!(
                MacCtx::new(cbc, &key, Some(bad)).err(),
                Some(CryptoError::MechanismParamInvalid)
            );
        }
        assert_eq!(
            MacCtx::new(cmac, &key[..20], None).err(),
            Some(CryptoError::KeySizeRange)
        );
    }

    // CMAC-SM4: no standard vector; expected values from OpenSSL 3:
    // `openssl mac -cipher SM4-CBC -macopt hexkey:0123..3210 -in FILE CMAC`.
    #[test]
    fn cmac_sm4_openssl() {
        let key = hex!("0123456789abcdeffedcba9876543210");
        assert_eq!(
            sign(MacAlg::CmacSm4, &key, None, JEFE_DATA).unwrap(),
            hex!("95bc3b3f7d0a595f1d439132593d2a67")
        );
        assert_eq!(
            sign(MacAlg::CmacSm4, &key, None, &[]).unwrap(),
            hex!("29e154322e5c7bd8ee6a25ba549b24bc")
        );
        assert_eq!(
            MacCtx::new(MacAlg::CmacSm4, &key[..8], None).err(),
            Some(CryptoError::KeySizeRange)
        );
    }
}
