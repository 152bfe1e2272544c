//! Message digests: SHA-1, SHA-224/256/384/512 (FIPS 180-4) and SM3
//! (GM/T 0004-2012, GB/T 32905-2016).
//!
//! Serves `CKM_SHA_1`, `CKM_SHA224`, `CKM_SHA256`, `CKM_SHA384`,
//! `CKM_SHA512` and hsmlink's vendor `CKM_SM3` through `C_Digest`,
//! `C_DigestUpdate`, `C_DigestKey` and `C_DigestFinal` (PKCS#11 v3.0
//! section 5.12), and the hash step of every hash-then-sign mechanism.

use sha2::Digest as _;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-1 (FIPS 180-4 section 6.1), `CKM_SHA_1`.
    Sha1,
    /// SHA-224 (FIPS 180-4 section 6.3), `CKM_SHA224`.
    Sha224,
    /// SHA-256 (FIPS 180-4 section 6.2), `CKM_SHA256`.
    Sha256,
    /// SHA-384 (FIPS 180-4 section 6.5), `CKM_SHA384`.
    Sha384,
    /// SHA-512 (FIPS 180-4 section 6.4), `CKM_SHA512`.
    Sha512,
    /// SM3 (GM/T 0004-2012), vendor `CKM_SM3`.
    Sm3,
}

impl DigestAlg {
    /// Length of the digest in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 | Self::Sm3 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Input block length in bytes (the HMAC block size `B` of RFC 2104).
    pub const fn block_len(self) -> usize {
        match self {
            Self::Sha1 | Self::Sha224 | Self::Sha256 | Self::Sm3 => 64,
            Self::Sha384 | Self::Sha512 => 128,
        }
    }
}

/// One-shot digest of `data`.
pub fn digest(alg: DigestAlg, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finalize()
}

/// An incremental digest (`C_DigestInit` .. `C_DigestFinal`). Cloning copies
/// the running state, which is what a size query or `C_GetOperationState`
/// needs.
#[derive(Clone)]
pub struct Hasher {
    state: State,
}

#[derive(Clone)]
enum State {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sm3(sm3::Sm3),
}

impl Hasher {
    /// A fresh state for `alg`.
    pub fn new(alg: DigestAlg) -> Self {
        let state = match alg {
            DigestAlg::Sha1 => State::Sha1(sha1::Sha1::new()),
            DigestAlg::Sha224 => State::Sha224(sha2::Sha224::new()),
            DigestAlg::Sha256 => State::Sha256(sha2::Sha256::new()),
            DigestAlg::Sha384 => State::Sha384(sha2::Sha384::new()),
            DigestAlg::Sha512 => State::Sha512(sha2::Sha512::new()),
            DigestAlg::Sm3 => State::Sm3(sm3::Sm3::new()),
        };
        Self { state }
    }

    /// The algorithm of this state.
    pub fn alg(&self) -> DigestAlg {
        match self.state {
            State::Sha1(_) => DigestAlg::Sha1,
            State::Sha224(_) => DigestAlg::Sha224,
            State::Sha256(_) => DigestAlg::Sha256,
            State::Sha384(_) => DigestAlg::Sha384,
            State::Sha512(_) => DigestAlg::Sha512,
            State::Sm3(_) => DigestAlg::Sm3,
        }
    }

    /// Absorb `data` (`C_DigestUpdate`, `C_DigestKey`).
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha1(h) => h.update(data),
            State::Sha224(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
            State::Sm3(h) => h.update(data),
        }
    }

    /// The digest (`C_DigestFinal`); consumes the state.
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha224(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha384(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
            State::Sm3(h) => h.finalize().to_vec(),
        }
    }
}

impl core::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The running state depends on the (possibly secret) input: not shown.
        f.debug_struct("Hasher")
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // FIPS 180-4 examples (NIST CSRC "Examples with Intermediate Values"), message "abc".
    #[test]
    fn fips180_abc() {
        let cases: [(DigestAlg, &[u8]); 5] = [
            (
                DigestAlg::Sha1,
                &hex!("a9993e364706816aba3e25717850c26c9cd0d89d"),
            ),
            (
                DigestAlg::Sha224,
                &hex!("23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            ),
            (
                DigestAlg::Sha256,
                &hex!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ),
            (
                DigestAlg::Sha384,
                &hex!(
                    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                    "8086072ba1e7cc2358baeca134c825a7"
                ),
            ),
            (
                DigestAlg::Sha512,
                &hex!(
                    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
                ),
            ),
        ];
        for (alg, want) in cases {
            assert_eq!(digest(alg, b"abc"), want, "{alg:?}");
            assert_eq!(want.len(), alg.output_len());
        }
    }

    // FIPS 180-4 two-block example for SHA-256 (448-bit message).
    #[test]
    fn fips180_sha256_two_block_incremental() {
        let msg = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let mut h = Hasher::new(DigestAlg::Sha256);
        for chunk in msg.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(
            h.finalize(),
            hex!("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        );
    }

    // GM/T 0004-2012 Appendix A, examples 1 and 2.
    #[test]
    fn gmt0004_sm3_examples() {
        assert_eq!(
            digest(DigestAlg::Sm3, b"abc"),
            hex!("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
        );
        let msg = b"abcd".repeat(16);
        assert_eq!(
            digest(DigestAlg::Sm3, &msg),
            hex!("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
        );
    }

    #[test]
    fn clone_forks_state() {
        let mut a = Hasher::new(DigestAlg::Sm3);
        a.update(b"ab");
        let mut b = a.clone();
        a.update(b"c");
        b.update(b"c");
        assert_eq!(a.finalize(), b.finalize());
        assert!(!format!("{:?}", Hasher::new(DigestAlg::Sha1)).is_empty());
    }
}
