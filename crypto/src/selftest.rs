//! Self-tests after FIPS 140-3 (section 7.10, IG 10.3.A): a known-answer
//! test (CAST) of each algorithm before its first use, and a pairwise
//! consistency test of every key pair generated.
//!
//! The vectors are published ones (FIPS 197 C.1, SP 800-67 Rev. 1 B,
//! FIPS 180 "abc", RFC 4231, RFC 4493, SP 800-38B D.4, RFC 6979 A.2.5, RFC 8032 7.1, GB/T 32907 and GB/T 32905
//! examples) or, where none fits this code's interfaces, were made once
//! with an independent implementation and written down: the RSA-2048
//! PKCS#1 v1.5 signature and the P-256 ECDH secret by Python's
//! `cryptography` (OpenSSL), the SM2 signature by `openssl pkeyutl`.
//! Signature algorithms with a random nonce (ECDSA, SM2) are tested by
//! verifying the known signature and by a sign-then-verify.
//!
//! Results are per process, like the code they test: each test runs at
//! most once ([`ensure`]). Tests can be broken on purpose ([`break_tests`],
//! for the tests of the error path only): a broken test compares against a
//! corrupted expected value, so the real comparison is what fails.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use crate::cipher::{self, BlockAlg, Mode};
use crate::digest::{self, DigestAlg};
use crate::ec::{self, Curve, EcdhKdf};
use crate::mac::{self, MacAlg};
use crate::prepared::{EcdsaSigner, RsaSigner};
use crate::rsa::{RsaPrivate, RsaPublic};
use crate::{rng, sm2, tdes};
use zeroize::Zeroizing;

/// One self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelfTest {
    Aes,
    Sm4,
    Tdes,
    Sha,
    Sm3,
    Hmac,
    Cmac,
    Rsa,
    Ecdsa,
    Ecdh,
    EdDsa,
    Sm2,
    Rng,
    /// The pairwise consistency test of key-pair generation.
    Pairwise,
    /// The software integrity test of the server executable at start: run
    /// by the server (`hsmlink_server::soft::integrity`); listed here so
    /// its break switch is named like the others'.
    Integrity,
}

impl SelfTest {
    /// Every test, in the order of the enum.
    pub const ALL: [Self; 15] = [
        Self::Aes,
        Self::Sm4,
        Self::Tdes,
        Self::Sha,
        Self::Sm3,
        Self::Hmac,
        Self::Cmac,
        Self::Rsa,
        Self::Ecdsa,
        Self::Ecdh,
        Self::EdDsa,
        Self::Sm2,
        Self::Rng,
        Self::Pairwise,
        Self::Integrity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Aes => "aes",
            Self::Sm4 => "sm4",
            Self::Tdes => "tdes",
            Self::Sha => "sha",
            Self::Sm3 => "sm3",
            Self::Hmac => "hmac",
            Self::Cmac => "cmac",
            Self::Rsa => "rsa",
            Self::Ecdsa => "ecdsa",
            Self::Ecdh => "ecdh",
            Self::EdDsa => "eddsa",
            Self::Sm2 => "sm2",
            Self::Rng => "rng",
            Self::Pairwise => "pairwise",
            Self::Integrity => "integrity",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A self-test failed: the caller must stop serving cryptography.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("self-test {} failed", .0.name())]
pub struct SelfTestFailed(pub SelfTest);

static BROKEN: OnceLock<BTreeSet<SelfTest>> = OnceLock::new();
static RESULTS: [OnceLock<bool>; SelfTest::ALL.len()] =
    [const { OnceLock::new() }; SelfTest::ALL.len()];

/// Breaks `tests` for this process (tests of the error path only). Takes
/// effect only before any test ran or was broken; returns whether it did.
pub fn break_tests(tests: impl IntoIterator<Item = SelfTest>) -> bool {
    BROKEN.set(tests.into_iter().collect()).is_ok()
}

/// Whether `test` was broken on purpose ([`break_tests`]): for the tests
/// run outside this crate (the server's integrity test).
pub fn is_broken(test: SelfTest) -> bool {
    broken(test)
}

fn broken(test: SelfTest) -> bool {
    BROKEN.get_or_init(BTreeSet::new).contains(&test)
}

/// Runs the known-answer test of `test` unless it already ran in this
/// process; its result stands for the life of the process.
pub fn ensure(test: SelfTest) -> Result<(), SelfTestFailed> {
    let passed = *RESULTS[test.index()].get_or_init(|| run(test, broken(test)));
    if passed {
        Ok(())
    } else {
        Err(SelfTestFailed(test))
    }
}

/// Runs every known-answer test now (power-up), and says which failed.
pub fn run_all() -> Vec<SelfTestFailed> {
    SelfTest::ALL
        .into_iter()
        .filter(|&t| t != SelfTest::Pairwise && t != SelfTest::Integrity)
        .filter_map(|t| ensure(t).err())
        .collect()
}

/// A key pair just generated, for [`pairwise`].
pub enum KeyPair<'a> {
    Rsa(&'a RsaPrivate),
    Ec {
        curve: Curve,
        d: &'a [u8],
        point: &'a [u8],
    },
    Ed25519 {
        seed: &'a [u8],
        public: &'a [u8],
    },
    Sm2 {
        d: &'a [u8],
        point: &'a [u8],
    },
}

impl std::fmt::Debug for KeyPair<'_> {
    // The kind only: never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa(_) => "KeyPair::Rsa",
            Self::Ec { .. } => "KeyPair::Ec",
            Self::Ed25519 { .. } => "KeyPair::Ed25519",
            Self::Sm2 { .. } => "KeyPair::Sm2",
        })
    }
}

/// The pairwise consistency test (FIPS 140-3 IG 10.3.A): the new private
/// key signs, the new public key verifies. A failure means the pair must
/// not be kept.
pub fn pairwise(pair: KeyPair<'_>) -> Result<(), SelfTestFailed> {
    let fail = SelfTestFailed(SelfTest::Pairwise);
    let message = b"hsmlink pairwise consistency test";
    let corrupt = broken(SelfTest::Pairwise);
    let digest = digest::digest(DigestAlg::Sha256, message);
    let mut signature = match &pair {
        KeyPair::Rsa(key) => key.sign_pkcs1v15_digest(DigestAlg::Sha256, &digest),
        KeyPair::Ec { curve, d, .. } => ec::ecdsa_sign(*curve, d, &digest),
        KeyPair::Ed25519 { seed, .. } => ec::ed25519_sign(seed, message).map(|s| s.to_vec()),
        KeyPair::Sm2 { d, .. } => sm2::sign(d, sm2::DEFAULT_USER_ID, message).map(|s| s.to_vec()),
    }
    .map_err(|_| fail)?;
    if corrupt && let Some(byte) = signature.last_mut() {
        *byte ^= 1;
    }
    match pair {
        KeyPair::Rsa(key) => {
            key.public()
                .verify_pkcs1v15_digest(DigestAlg::Sha256, &digest, &signature)
        }
        KeyPair::Ec { curve, point, .. } => ec::ecdsa_verify(curve, point, &digest, &signature),
        KeyPair::Ed25519 { public, .. } => ec::ed25519_verify(public, message, &signature),
        KeyPair::Sm2 { point, .. } => sm2::verify(point, sm2::DEFAULT_USER_ID, message, &signature),
    }
    .map_err(|_| fail)
}

/// One known-answer test; `corrupt` flips a bit of the expected value.
fn run(test: SelfTest, corrupt: bool) -> bool {
    let expect = |hex: &str| {
        let mut bytes = unhex(hex);
        if corrupt && let Some(byte) = bytes.first_mut() {
            *byte ^= 0x80;
        }
        bytes
    };
    let same = |got: crate::Result<Vec<u8>>, want: &str| got.is_ok_and(|got| got == expect(want));
    let verifies = |ok: crate::Result<()>| ok.is_ok() && !corrupt;
    match test {
        SelfTest::Aes => same(
            cipher::encrypt(
                BlockAlg::Aes,
                &unhex("000102030405060708090a0b0c0d0e0f"),
                &Mode::Ecb,
                &unhex("00112233445566778899aabbccddeeff"),
            ),
            "69c4e0d86a7b0430d8cdb78070b4c55a",
        ),
        SelfTest::Sm4 => same(
            cipher::encrypt(
                BlockAlg::Sm4,
                &unhex("0123456789abcdeffedcba9876543210"),
                &Mode::Ecb,
                &unhex("0123456789abcdeffedcba9876543210"),
            ),
            "681edf34d206965e86b3e94f536e4246",
        ),
        SelfTest::Tdes => {
            // SP 800-67 Rev. 1 appendix B (its plaintext reads "qufck"), and
            // TDEA CMAC from SP 800-38B D.4, example 10.
            same(
                tdes::encrypt(
                    &unhex("0123456789abcdef23456789abcdef01456789abcdef0123"),
                    &tdes::Mode::Ecb,
                    b"The qufck brown fox jump",
                ),
                "a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900",
            ) && same(
                mac::sign(
                    MacAlg::Tdes(tdes::MacKind::Cmac),
                    &unhex("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"),
                    None,
                    &unhex("6bc1bee22e409f96"),
                ),
                "8e8f293136283797",
            )
        }
        SelfTest::Sha => {
            same(
                Ok(digest::digest(DigestAlg::Sha1, b"abc")),
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ) && same(
                Ok(digest::digest(DigestAlg::Sha256, b"abc")),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ) && same(
                Ok(digest::digest(DigestAlg::Sha512, b"abc")),
                concat!(
                    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a",
                    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
                ),
            )
        }
        SelfTest::Sm3 => same(
            Ok(digest::digest(DigestAlg::Sm3, b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
        ),
        SelfTest::Hmac => same(
            mac::sign(
                MacAlg::Hmac(DigestAlg::Sha256),
                &[0x0b; 20],
                None,
                b"Hi There",
            ),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        SelfTest::Cmac => same(
            mac::sign(
                MacAlg::CmacAes,
                &unhex("2b7e151628aed2a6abf7158809cf4f3c"),
                None,
                &unhex("6bc1bee22e409f96e93d7e117393172a"),
            ),
            "070a16b46b4d4144f79bdd9dd04a287c",
        ),
        SelfTest::Rsa => {
            let Ok(key) = RsaPrivate::from_components(
                &unhex(RSA_N),
                &unhex("010001"),
                &unhex(RSA_D),
                Some((&unhex(RSA_P), &unhex(RSA_Q))),
            ) else {
                return false;
            };
            let digest = digest::digest(DigestAlg::Sha256, KAT_MESSAGE);
            let signed = key.sign_pkcs1v15_digest(DigestAlg::Sha256, &digest);
            // Both engines: the RustCrypto reference and AWS-LC (prepared).
            let prepared = RsaSigner::new(key).sign_pkcs1v15_digest(DigestAlg::Sha256, &digest);
            let public = RsaPublic::from_components(&unhex(RSA_N), &unhex("010001"));
            same(signed, RSA_SIG)
                && same(prepared, RSA_SIG)
                && public.is_ok_and(|p| {
                    verifies(p.verify_pkcs1v15_digest(DigestAlg::Sha256, &digest, &unhex(RSA_SIG)))
                })
        }
        SelfTest::Ecdsa => {
            // RFC 6979 A.2.5, P-256, SHA-256, message "sample".
            let d = unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
            let point = unhex(P256_A_POINT);
            let digest = digest::digest(DigestAlg::Sha256, b"sample");
            let known = unhex(concat!(
                "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
                "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
            ));
            verifies(ec::ecdsa_verify(Curve::P256, &point, &digest, &known))
                && ec::ecdsa_sign(Curve::P256, &d, &digest)
                    .is_ok_and(|sig| ec::ecdsa_verify(Curve::P256, &point, &digest, &sig).is_ok())
                && EcdsaSigner::new(Curve::P256, Zeroizing::new(d.clone()))
                    .and_then(|k| k.sign(&digest))
                    .is_ok_and(|sig| ec::ecdsa_verify(Curve::P256, &point, &digest, &sig).is_ok())
                && ec::public_from_private(Curve::P256, &d).is_ok_and(|p| p == point)
        }
        SelfTest::Ecdh => same(
            ec::ecdh_derive(
                Curve::P256,
                &unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"),
                &unhex(concat!(
                    "046bf85d5fe84598b10ca6199ec09ccd7d35dcd7195fdd1dc7737a0c67006ef251",
                    "b952f25eec1deed1fca191838990466357d314adfb7e9760b8d9afc8f39a95ad"
                )),
                EcdhKdf::Null,
                &[],
                None,
            )
            .map(|z| z.to_vec()),
            "61cfa82b22b5045b4205f201bb758dabde3b354007c335fbd6f544a8eb3afaff",
        ),
        SelfTest::EdDsa => same(
            // RFC 8032 section 7.1, test 1 (empty message).
            ec::ed25519_sign(
                &unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
                b"",
            )
            .map(|s| s.to_vec()),
            concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555",
                "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ),
        ),
        SelfTest::Sm2 => {
            let d = unhex("c604c0fd017a5e7d9915a0101230c062e04a5e8886a10cb02b5932ee9c2758ff");
            let point = unhex(SM2_POINT);
            let known = unhex(concat!(
                "3779ba412103f3d8ae8ce36a9a8068a3a74a9abab5289bc1957163606884d5e1",
                "453dd51e6415cd92054f75efea301b34b1bac927cf2d729181251c5ec2018736"
            ));
            verifies(sm2::verify(
                &point,
                sm2::DEFAULT_USER_ID,
                KAT_MESSAGE,
                &known,
            )) && sm2::sign(&d, sm2::DEFAULT_USER_ID, KAT_MESSAGE).is_ok_and(|sig| {
                sm2::verify(&point, sm2::DEFAULT_USER_ID, KAT_MESSAGE, &sig).is_ok()
            })
        }
        SelfTest::Rng => {
            // Continuous test (SP 800-90B 4.4 in spirit): two draws differ.
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            rng::fill(&mut a).is_ok() && rng::fill(&mut b).is_ok() && a != b && !corrupt
        }
        // Not known-answer tests: the pairwise test runs per key pair, the
        // integrity test in the server.
        SelfTest::Pairwise | SelfTest::Integrity => true,
    }
}

/// The message of the RSA and SM2 known answers.
const KAT_MESSAGE: &[u8] = b"hsmlink self-test";

const P256_A_POINT: &str = concat!(
    "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6",
    "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
);

const SM2_POINT: &str = concat!(
    "043b0b5380e4a54917a73920c72e8a772494ff3a92e7114b4379a9138b681ac055",
    "b6f6eee9bee598fd83a1db2711432389784b2c2b4420550c447dad6baee971c3"
);
const RSA_N: &str = concat!(
    "be576fcf0a2e9061976df4093120d7d39971c48bfb9b6d5e04a78025ff2ff343",
    "d382fcf854e2458d61d3f08842c55c7a0cdf23ca5ccfab45428fddc9bc175322",
    "85873adf42b2c12ed37f725bec3bfebfa59bac73fe9a5f1813bc3d4a9f3511cc",
    "4a6df4dfff4d3d6090b872ebf4e608c66c10ae14aad19fd689fcea4dfb1afcdf",
    "6a213ef90cb3c7e126a9353b4aad59d1d7fc13fe802705db3a16262e6b66101f",
    "25494ea210121beb7e9b4ab9e2415f5aa5deab869115c809f9daee5ef4dc2a26",
    "be7727211a66c76d40ffbae9daaf90e99f56a61d586cf0744ec43eda80a8019f",
    "e5661fb8a57d14ccd12051c02de0ef852a65bcb4d5ba738f065ad677a9bb9ac1",
);
const RSA_D: &str = concat!(
    "091504ce53cda12682f24f11618bd00de0eb0ddb8c63cac365c49f47a630ec72",
    "2ea562a5851959d9133dfe0d66658d3cd14b3ebadbbf034cab4e7ae0f2c3087c",
    "b91dd8d2de821c827be57f78558c8ef7d28806771a182abeec46d05989eb5f40",
    "1df20d5be32395463bb4380991b67ddc87e600d9c16fd353b4e3019965c8a5ca",
    "fc8546ba7c1f72ae170e5c170ac2ddde446244358ebd9c7fe0157f4872f33495",
    "fe1727fa629b6903a9d5b3c7dbdae965dbc30fec9b200a886e3b35d314c44a1a",
    "2f1044645e64ec4bcfde6f6f4679391c3b929b4d9bd4a0d435cd8ae4027d5e7d",
    "b2d35e878ce5228093e3eaf7d7c194abcbadaee90e577a6b0290d4df32bad4f5",
);
const RSA_P: &str = concat!(
    "dec39959fb644e44b32d15c5201f572eb3f3f3a1159b9d1a4b052a8f9604db5f",
    "609d73f7c3ea5fdf588b7b9978bcae49e4e2d3f4b79fff67c1de37bdb3a2b2ac",
    "e17699e8992f385dec7d60818fbec98683dd9ddbb3c04bf87c090659d79cb2c2",
    "e6c71b270001c515be454699adeebf4b5dbd35d6c808dd1bdf1d485f76a31ad5",
);
const RSA_Q: &str = concat!(
    "dabd787381c5918342170a8f51630a73876d6127c3ab2580966e1f5dad460298",
    "de23c64a7e8be68e8f1b2891000875ec3fce7e6ccb633dedbd07045d538830e7",
    "45096212c684fea8467baefdc25ca2f26e8f122f78c9ec7325f601347cce4ae8",
    "6011cfd56e2a9b789404e8a9e8d7a643ef8fdf098ed7264492bc63e236f45e3d",
);
const RSA_SIG: &str = concat!(
    "84f044c92c8b4969c282c9398b968e4edecb83e146660edafb0a5742d66283bf",
    "6f3488ccf93c6064459e6cf488c2f90ebcf8e4267a97d2af1476f137a78f0221",
    "2de02c672ae20fffadbb4b7d3573860e8f18c94f62dcb167cedd7a9048ae654d",
    "d2e6a83601d7018e6d05351431f3625ed713345783d6290eb2c041131e15ce00",
    "3902c3553501fa6d0afae84bd3af294cfb6c7f10edb40fe193112b8b34471334",
    "e8db9f24ee3a91cccae5362905c0c68ce16f18fbaf54a991bba2fbf85c54afe6",
    "8922f894779c50f1801ea4cac8ed40732adc259d2a6d9c9f2c93d0ac9a49c0d2",
    "c041e1fe8e3fa2ff08d581b758cf217698cdf37e544f3e0a9f06ae6e22b57c5e",
);

/// Hex of a constant above; a non-hex character (never in these
/// constants) makes the test fail rather than panic.
fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0xff,
        })
        .collect();
    if !digits.len().is_multiple_of(2) || digits.contains(&0xff) {
        return Vec::new();
    }
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_answer_passes() {
        for test in SelfTest::ALL {
            assert!(run(test, false), "{}", test.name());
        }
    }

    #[test]
    fn every_known_answer_fails_when_broken() {
        // Not known answers: the pairwise test (per key pair) and the
        // integrity test (run by the server; its break switch is tested in
        // tests/tests/self_tests.rs).
        for test in SelfTest::ALL {
            if test != SelfTest::Pairwise && test != SelfTest::Integrity {
                assert!(!run(test, true), "{} passed while broken", test.name());
            }
        }
    }

    #[test]
    fn pairwise_accepts_fresh_pairs() {
        let pair = ec::generate(Curve::P256).unwrap();
        assert_eq!(
            pairwise(KeyPair::Ec {
                curve: Curve::P256,
                d: &pair.private,
                point: &pair.public
            }),
            Ok(())
        );
        let pair = sm2::generate().unwrap();
        assert_eq!(
            pairwise(KeyPair::Sm2 {
                d: &pair.private[..],
                point: &pair.public
            }),
            Ok(())
        );
    }

    #[test]
    fn pairwise_refuses_a_mismatched_pair() {
        let a = ec::generate(Curve::P256).unwrap();
        let b = ec::generate(Curve::P256).unwrap();
        assert_eq!(
            pairwise(KeyPair::Ec {
                curve: Curve::P256,
                d: &a.private,
                point: &b.public
            }),
            Err(SelfTestFailed(SelfTest::Pairwise))
        );
    }

    #[test]
    fn names_round_trip() {
        for test in SelfTest::ALL {
            assert_eq!(SelfTest::parse(test.name()), Some(test));
        }
        assert_eq!(SelfTest::parse("md5"), None);
    }
}
