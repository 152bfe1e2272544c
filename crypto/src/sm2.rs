//! SM2 (GM/T 0003-2012, GB/T 32918-2016): key pairs, the user-information
//! hash Z, signatures and public-key encryption.
//!
//! Serves hsmlink's vendor mechanisms (numbers in `include/hsmlink.h`):
//! `CKM_SM2_KEY_PAIR_GEN` ([`generate`]), `CKM_SM2_SM3` (sign/verify with SM3
//! over Z || M, the user ID being the mechanism parameter, default
//! [`DEFAULT_USER_ID`]; [`sign`], [`verify`]), `CKM_SM2` (raw signature over a
//! prepared 32-byte e; [`sign_digest`], [`verify_digest`]) and `CKM_SM2_ENCRYPT`
//! ([`encrypt`], [`decrypt`], ciphertext C1 || C3 || C2 as GM/T 0003.4-2012
//! section 6.1 and GB/T 32918.4-2016 lay it out: C1 the uncompressed point
//! 04 || x1 || y1, C3 the 32-byte SM3 hash, C2 as long as the message).
//!
//! Keys cross this API as bytes: the private key d as 32 big-endian bytes,
//! the public key as the 65-byte uncompressed SEC1 point (`CKA_EC_POINT`
//! content). Signatures are r || s, 32 bytes each.

use sm2::dsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use sm2::elliptic_curve::Generate;
use sm3::Digest;
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};

/// The default user ID of GM/T 0009-2012 section 10 (and GM/T 0003.2).
pub const DEFAULT_USER_ID: &[u8] = b"1234567812345678";
/// Length of a private key, a coordinate, an r or s value, and e.
pub const SCALAR_LEN: usize = 32;
/// Length of an uncompressed public point.
pub const POINT_LEN: usize = 65;
/// Length of a signature r || s.
pub const SIGNATURE_LEN: usize = 64;
/// Ciphertext overhead: C1 (65 bytes) plus C3 (32 bytes).
pub const CIPHERTEXT_OVERHEAD: usize = POINT_LEN + 32;

/// Curve parameters a, b, xG, yG of GM/T 0003.5-2012 (the Z input).
const CURVE_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const CURVE_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        // Only reached from the `const` items above, so a typo fails the
        // build, never a run.
        _ => panic!("not hex"),
    }
}

/// An SM2 key pair: private d and uncompressed public point.
pub struct Sm2KeyPair {
    /// d, 32 big-endian bytes.
    pub private: Zeroizing<[u8; SCALAR_LEN]>,
    /// 04 || x || y.
    pub public: [u8; POINT_LEN],
}

impl core::fmt::Debug for Sm2KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sm2KeyPair").finish_non_exhaustive()
    }
}

/// Generate a key pair from the OS RNG (`CKM_SM2_KEY_PAIR_GEN`).
pub fn generate() -> Result<Sm2KeyPair> {
    let sk = sm2::SecretKey::try_generate().map_err(|_| CryptoError::General)?;
    let mut private = Zeroizing::new([0u8; SCALAR_LEN]);
    private.copy_from_slice(&sk.to_bytes());
    Ok(Sm2KeyPair {
        public: encode_public(&sk.public_key())?,
        private,
    })
}

/// The public point of private key `d` (for `C_CreateObject`/unwrap checks).
pub fn public_from_private(d: &[u8]) -> Result<[u8; POINT_LEN]> {
    encode_public(&secret(d)?.public_key())
}

fn secret(d: &[u8]) -> Result<sm2::SecretKey> {
    sm2::SecretKey::from_slice(d).map_err(|_| CryptoError::KeyTypeInconsistent)
}

fn public(point: &[u8]) -> Result<sm2::PublicKey> {
    sm2::PublicKey::from_sec1_bytes(point).map_err(|_| CryptoError::KeyTypeInconsistent)
}

fn encode_public(pk: &sm2::PublicKey) -> Result<[u8; POINT_LEN]> {
    use sm2::elliptic_curve::sec1::ToSec1Point;
    let p = pk.to_sec1_point(false);
    p.as_bytes().try_into().map_err(|_| CryptoError::General)
}

/// Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A), GM/T
/// 0003.2-2012 section 5.5. `user_id` is at most 8191 bytes (ENTL is a
/// 16-bit bit count), else `MechanismParamInvalid`.
pub fn z_value(user_id: &[u8], public_point: &[u8]) -> Result<[u8; 32]> {
    let entl = u16::try_from(user_id.len())
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or(CryptoError::MechanismParamInvalid)?;
    let point = encode_public(&public(public_point)?)?;
    let mut h = sm3::Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(user_id);
    h.update(CURVE_A);
    h.update(CURVE_B);
    h.update(GX);
    h.update(GY);
    h.update(&point[1..]);
    Ok(h.finalize().into())
}

/// e = SM3(Z_A || M), GM/T 0003.2 section 6.1 steps A1-A2. The client
/// computes this for `CKM_SM2_SM3` so that only e crosses the network.
pub fn message_digest(user_id: &[u8], public_point: &[u8], msg: &[u8]) -> Result<[u8; 32]> {
    let z = z_value(user_id, public_point)?;
    let mut h = sm3::Sm3::new();
    h.update(z);
    h.update(msg);
    Ok(h.finalize().into())
}

/// `CKM_SM2_SM3` signature over `msg` with user ID `user_id` (GM/T 0003.2
/// section 6.1): r || s.
pub fn sign(d: &[u8], user_id: &[u8], msg: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
    let pk = public_from_private(d)?;
    sign_digest(d, &message_digest(user_id, &pk, msg)?)
}

/// `CKM_SM2` raw signature over a prepared 32-byte e (GM/T 0003.2 section
/// 6.1 steps A3-A7); `DataLenRange` if e is not 32 bytes. The nonce k comes
/// from the OS RNG mixed into an RFC 6979-style derivation (hedged).
pub fn sign_digest(d: &[u8], e: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
    if e.len() != SCALAR_LEN {
        return Err(CryptoError::DataLenRange);
    }
    let key =
        sm2::dsa::SigningKey::from_slice("", d).map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let sig = key
        .sign_prehash_with_rng(&mut getrandom::SysRng, e)
        .map_err(|_| CryptoError::General)?;
    Ok(sig.to_bytes().into())
}

/// Verify a `CKM_SM2_SM3` signature: `SignatureLenRange` if not 64 bytes,
/// `SignatureInvalid` if it does not verify.
pub fn verify(public_point: &[u8], user_id: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    verify_digest(
        public_point,
        &message_digest(user_id, public_point, msg)?,
        sig,
    )
}

/// Verify a `CKM_SM2` signature over a prepared e (GM/T 0003.2 section 7.1).
pub fn verify_digest(public_point: &[u8], e: &[u8], sig: &[u8]) -> Result<()> {
    if e.len() != SCALAR_LEN {
        return Err(CryptoError::DataLenRange);
    }
    if sig.len() != SIGNATURE_LEN {
        return Err(CryptoError::SignatureLenRange);
    }
    // The distinguishing ID is unused by prehash verification.
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes("", public_point)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let sig = sm2::dsa::Signature::from_slice(sig).map_err(|_| CryptoError::SignatureInvalid)?;
    key.verify_prehash(e, &sig)
        .map_err(|_| CryptoError::SignatureInvalid)
}

/// Public-key encryption (GM/T 0003.4-2012 section 6.1), output
/// C1 || C3 || C2 with C1 uncompressed: `msg.len() + 97` bytes. An empty
/// message is `DataLenRange` (GM/T requires t != 0).
pub fn encrypt(public_point: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    if msg.is_empty() {
        return Err(CryptoError::DataLenRange);
    }
    let key = sm2::pke::EncryptingKey::new_with_mode(public(public_point)?, sm2::pke::Mode::C1C3C2);
    key.encrypt(&mut getrandom::SysRng, msg)
        .map_err(|_| CryptoError::General)
}

/// Decryption of C1 || C3 || C2 (GM/T 0003.4 section 7.1):
/// `EncryptedDataLenRange` if shorter than 98 bytes, `EncryptedDataInvalid`
/// if C1 is not on the curve or C3 does not match.
pub fn decrypt(d: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if ciphertext.len() <= CIPHERTEXT_OVERHEAD {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    if ciphertext[0] != 0x04 {
        return Err(CryptoError::EncryptedDataInvalid);
    }
    let sk = secret(d)?;
    let key =
        sm2::pke::DecryptingKey::new_with_mode(sk.to_nonzero_scalar(), sm2::pke::Mode::C1C3C2);
    key.decrypt(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::EncryptedDataInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // A key made with `openssl genpkey -algorithm SM2` (OpenSSL 3).
    const D: [u8; 32] = hex!("bbaf228beaad200269c47b03777cf5be7e33e31befb8705bf033ee4bca669579");
    const PUB: [u8; 65] = hex!(
        "048bf7436c8c1caaf694cedd362a865015761fa3a0ff5ace4949471b74a64d15d5"
        "a141856a3f539b8084eb86df830622c4de59cd795c6b0ee88e5e34a45035ccec"
    );

    #[test]
    fn public_from_private_matches_openssl() {
        assert_eq!(public_from_private(&D).unwrap(), PUB);
    }

    // `openssl pkeyutl -sign -rawin -digest sm3 -inkey k.pem -in m.txt
    //  -pkeyopt distid:1234567812345678` over "message digest", and the same
    // with distid:ALICE123@YAHOO.COM; DER (r, s) copied here as r || s.
    #[test]
    fn openssl_signatures_verify() {
        let msg = b"message digest";
        let sig = hex!(
            "4e901e26a6f3860d50ee2ab7c78077607cdc51e1e5265c30efa0af21f8ffbcb9"
            "2a51f20216db3e10c8445771ca02dc85fa3c31179b9d93cfca953eeddb44c5f9"
        );
        verify(&PUB, DEFAULT_USER_ID, msg, &sig).unwrap();
        let mut bad = sig;
        bad[63] ^= 1;
        assert_eq!(
            verify(&PUB, DEFAULT_USER_ID, msg, &bad),
            Err(CryptoError::SignatureInvalid)
        );
        let alice = hex!(
            "6f31a176d6d536ebae2fa8e0bb7ef2e03d64006c5ca4277dd973b197ea5b73e5"
            "9b839cca5edf5ad4a0b94228a381333b9300d1dd5c39e038c2ed83dbc1bc713a"
        );
        verify(&PUB, b"ALICE123@YAHOO.COM", msg, &alice).unwrap();
        assert_eq!(
            verify(&PUB, DEFAULT_USER_ID, msg, &alice),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            verify(&PUB, DEFAULT_USER_ID, msg, &alice[..63]),
            Err(CryptoError::SignatureLenRange)
        );
    }

    // Our Z equals the sm2 crate's own (its Signer hashes Z || M itself).
    #[test]
    fn z_value_agrees_with_crate() {
        use sm2::dsa::signature::Signer;
        let key = sm2::dsa::SigningKey::from_slice("1234567812345678", &D).unwrap();
        let sig: sm2::dsa::Signature = key.sign(b"abc");
        verify(&PUB, DEFAULT_USER_ID, b"abc", &sig.to_bytes()).unwrap();
    }

    #[test]
    fn sign_verify_round_trip() {
        let kp = generate().unwrap();
        assert_eq!(public_from_private(&kp.private[..]).unwrap(), kp.public);
        let sig = sign(&kp.private[..], DEFAULT_USER_ID, b"hello").unwrap();
        verify(&kp.public, DEFAULT_USER_ID, b"hello", &sig).unwrap();
        assert_eq!(
            verify(&kp.public, DEFAULT_USER_ID, b"hellO", &sig),
            Err(CryptoError::SignatureInvalid)
        );
        let e = message_digest(b"id", &kp.public, b"m").unwrap();
        let sig = sign_digest(&kp.private[..], &e).unwrap();
        verify_digest(&kp.public, &e, &sig).unwrap();
        verify(&kp.public, b"id", b"m", &sig).unwrap();
        assert_eq!(
            sign_digest(&kp.private[..], &e[..31]),
            Err(CryptoError::DataLenRange)
        );
        assert_eq!(
            z_value(&vec![0; 8192], &kp.public),
            Err(CryptoError::MechanismParamInvalid)
        );
        assert!(
            !format!("{kp:?}").contains(&format!("{:02x}", kp.private[0])) || kp.private[0] == 0
        );
    }

    // `openssl pkeyutl -encrypt` of "encryption standard"; OpenSSL emits the
    // GM/T 0009 DER form SEQUENCE { x, y, C3, C2 }, flattened here to
    // 04 || x || y || C3 || C2.
    #[test]
    fn openssl_ciphertext_decrypts() {
        let ct = hex!(
            "04"
            "36c4df56baeb590cb54585e5aefa38c40d5db30451a69a4cdcfbcd9e3c11aa30"
            "562e8bacdd39188dba36597e15c6c303cd39156265a2d202c775393ec3fca0fb"
            "abe67d148bb3b7bcd28e2329a0d6bd2e6dd200b879e447c59836d4b3300403b0"
            "4d82a4231480ea1c3e654148d890983c2a3eb2"
        );
        assert_eq!(&decrypt(&D, &ct).unwrap()[..], b"encryption standard");
        let mut bad = ct;
        bad[70] ^= 1;
        assert_eq!(decrypt(&D, &bad), Err(CryptoError::EncryptedDataInvalid));
        assert_eq!(
            decrypt(&D, &ct[..97]),
            Err(CryptoError::EncryptedDataLenRange)
        );
    }

    #[test]
    fn encrypt_round_trip_layout() {
        let kp = generate().unwrap();
        let ct = encrypt(&kp.public, b"abc").unwrap();
        assert_eq!(ct.len(), 3 + CIPHERTEXT_OVERHEAD);
        assert_eq!(ct[0], 0x04);
        assert_eq!(&decrypt(&kp.private[..], &ct).unwrap()[..], b"abc");
        assert_eq!(encrypt(&kp.public, b""), Err(CryptoError::DataLenRange));
    }
}
