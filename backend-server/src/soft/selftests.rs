//! The soft HSM's self-tests (FIPS 140-3 section 7.10) and its error state.
//!
//! Before a mechanism's first use in this process, the known-answer tests
//! of the algorithms it rests on run ([`hsmlink_crypto::selftest`]); every
//! key pair generated passes a pairwise consistency test before it is
//! stored. A failure puts the partition that met it in the error state:
//! from then on every cryptographic call on it — new operations, the
//! operations already under way, key generation, wrapping, derivation,
//! random — answers `CKR_DEVICE_ERROR` and no data leaves, until the server
//! restarts (FIPS 140-3's "power cycle"). A known-answer failure stands for
//! the process, so every partition that then uses the algorithm fails too.
//!
//! `HSMLINK_BREAK_SELF_TESTS` (test-only, comma-separated test names such
//! as `aes,pairwise`) breaks tests at start to prove this path; the server
//! logs a warning when it is set.

use std::sync::{Arc, OnceLock};

use cryptoki_sys::CKR_DEVICE_ERROR;
use hsmlink_crypto::selftest::{self, SelfTest, SelfTestFailed};
use tracing::{error, warn};
use zeroize::Zeroizing;

use super::operations::Family;
use crate::driver::{Operation, OutLen, Step};
use crate::error::{CkResult, Ckr};

/// The environment variable of the break switch.
pub const BREAK_SWITCH: &str = "HSMLINK_BREAK_SELF_TESTS";

/// Reads the break switch; call once at start, before any cryptography.
/// Unknown names are an error (a typo must not pass for a broken test).
pub fn apply_break_switch() -> Result<(), String> {
    let Ok(names) = std::env::var(BREAK_SWITCH) else {
        return Ok(());
    };
    let tests = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            SelfTest::parse(n).ok_or_else(|| format!("{BREAK_SWITCH}: unknown self-test {n:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    warn!(
        tests = %names,
        "{BREAK_SWITCH} is set: these self-tests are broken on purpose (tests only)"
    );
    selftest::break_tests(tests);
    Ok(())
}

/// The known-answer tests a mechanism family rests on.
pub fn tests_for(family: Family) -> &'static [SelfTest] {
    use SelfTest as T;
    use hsmlink_crypto::cipher::BlockAlg;
    use hsmlink_crypto::digest::DigestAlg;
    match family {
        Family::Digest(DigestAlg::Sm3) => &[T::Sm3],
        Family::Digest(_) => &[T::Sha],
        Family::Hmac(DigestAlg::Sm3, _) => &[T::Hmac, T::Sm3],
        Family::Hmac(..) => &[T::Hmac, T::Sha],
        Family::Cmac(BlockAlg::Aes, _) => &[T::Cmac, T::Aes],
        Family::Cmac(BlockAlg::Sm4, _) => &[T::Cmac, T::Sm4],
        Family::Cipher(BlockAlg::Aes, _)
        | Family::KeyWrap(_)
        | Family::AesEcbEncryptData
        | Family::AesCbcEncryptData => &[T::Aes],
        Family::Cipher(BlockAlg::Sm4, _) => &[T::Sm4],
        Family::TdesCipher(_) | Family::TdesMac(..) => &[T::Tdes],
        Family::RsaPkcs | Family::RsaX509 | Family::RsaOaep | Family::RsaPss => &[T::Rsa],
        Family::RsaPkcsHash(_) | Family::RsaPssHash(_) => &[T::Rsa, T::Sha],
        Family::Ecdsa(None) => &[T::Ecdsa],
        Family::Ecdsa(Some(_)) => &[T::Ecdsa, T::Sha],
        Family::EdDsa => &[T::EdDsa],
        Family::Sm2Raw | Family::Sm2Sm3 | Family::Sm2Encrypt | Family::Sm2KeyExchange => {
            &[T::Sm2, T::Sm3]
        }
        Family::EcdhDerive => &[T::Ecdh],
        Family::KeyBlock => &[T::Aes, T::Cmac, T::Tdes],
        Family::Tr34 => &[T::Rsa, T::Sha, T::Aes, T::Tdes],
        Family::AesKeyGen
        | Family::GenericKeyGen
        | Family::Sm4KeyGen
        | Family::Des2KeyGen
        | Family::Des3KeyGen => &[T::Rng],
        Family::RsaPairGen => &[T::Rsa, T::Rng],
        Family::EcPairGen => &[T::Ecdsa, T::Rng],
        Family::EdPairGen => &[T::EdDsa, T::Rng],
        Family::Sm2PairGen => &[T::Sm2, T::Rng],
    }
}

/// A partition's error state: the first self-test it saw fail.
#[derive(Debug, Default)]
pub struct Health {
    failed: Arc<OnceLock<SelfTestFailed>>,
}

impl Health {
    /// `CKR_DEVICE_ERROR` once a self-test failed here.
    pub fn check(&self) -> CkResult<()> {
        check(&self.failed)
    }

    /// Runs (at most once per process) each of `tests`; the first failure
    /// puts the partition in the error state.
    pub fn ensure(&self, partition: &str, tests: &[SelfTest]) -> CkResult<()> {
        self.check()?;
        for &test in tests {
            selftest::ensure(test).map_err(|f| self.failed(partition, f))?;
        }
        Ok(())
    }

    /// Records `failure` (the partition enters the error state) and gives
    /// the code to answer.
    pub fn failed(&self, partition: &str, failure: SelfTestFailed) -> Ckr {
        if self.failed.set(failure).is_ok() {
            error!(
                partition,
                "{failure}: the partition is in the error state; every cryptographic call \
                 answers CKR_DEVICE_ERROR until the server restarts"
            );
        }
        Ckr(CKR_DEVICE_ERROR)
    }

    /// `operation`, stopped at its next step once the partition fails.
    pub fn guard(&self, operation: Box<dyn Operation>) -> Box<dyn Operation> {
        Box::new(Guarded {
            inner: operation,
            failed: Arc::clone(&self.failed),
        })
    }
}

fn check(failed: &OnceLock<SelfTestFailed>) -> CkResult<()> {
    // A failed integrity test at start holds every partition of the process.
    if failed.get().is_some() || super::integrity::failed() {
        return Err(Ckr(CKR_DEVICE_ERROR));
    }
    Ok(())
}

/// An operation of a partition that may enter the error state while it runs.
/// It forwards every method of [`Operation`] by hand: a method added to the
/// trait later, even one with a default, must be forwarded here too.
#[derive(Debug)]
struct Guarded {
    inner: Box<dyn Operation>,
    failed: Arc<OnceLock<SelfTestFailed>>,
}

impl Operation for Guarded {
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen> {
        check(&self.failed)?;
        self.inner.output_len(step, input_len)
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        check(&self.failed)?;
        self.inner.update(input)
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        check(&self.failed)?;
        self.inner.finish()
    }

    fn single(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        check(&self.failed)?;
        self.inner.single(input)
    }

    fn sign_digest(&mut self, digest: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        check(&self.failed)?;
        self.inner.sign_digest(digest)
    }

    fn verify_final(&mut self, signature: &[u8]) -> CkResult<()> {
        check(&self.failed)?;
        self.inner.verify_final(signature)
    }

    fn verify(&mut self, data: &[u8], signature: &[u8]) -> CkResult<()> {
        check(&self.failed)?;
        self.inner.verify(data, signature)
    }

    fn verify_digest(&mut self, digest: &[u8], signature: &[u8]) -> CkResult<()> {
        check(&self.failed)?;
        self.inner.verify_digest(digest, signature)
    }
}
