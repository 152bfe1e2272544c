//! Randomness from the operating system.
//!
//! Serves `C_GenerateRandom` (PKCS#11 v3.0 section 5.15) and every key,
//! IV or nonce the soft driver generates. `C_SeedRandom` is answered by the
//! caller (the OS RNG takes no seed); this module has nothing to do with it.

use crate::error::{CryptoError, Result};

/// Fill `buf` with bytes from the OS CSPRNG (`getrandom(2)` on Linux).
pub fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| CryptoError::General)
}

/// A fresh vector of `len` random bytes.
pub fn random_vec(len: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    fill(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let a = random_vec(32).unwrap();
        let b = random_vec(32).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, vec![0u8; 32]);
        fill(&mut []).unwrap();
    }
}
