//! SM2 key exchange (GM/T 0003.3-2012, GB/T 32918.3-2016 section 6.1),
//! without the optional confirmation hashes S1/S2/SA/SB.
//!
//! Each party has a static key pair (d, P) and an ephemeral one (r, R). With
//! w = 127 (half the order's bit length, rounded up, minus one) and
//! x̄ = 2^w + (x mod 2^w) of a point's x coordinate:
//! t = (d + x̄_own · r) mod n, U = [h · t](P_peer + [x̄_peer] R_peer) (h = 1
//! on the SM2 curve), and the shared key K = KDF(x_U || y_U || Z_A || Z_B,
//! klen), Z_A being the initiator's user hash and Z_B the responder's.
//! The point arithmetic is the `sm2` crate's; the KDF is GM/T 0003's over
//! SM3 (counter from 1, big-endian).

use sm2::elliptic_curve::PrimeField;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::{AffinePoint, PublicKey, Scalar};
use sm3::Digest;
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};
use crate::sm2::{POINT_LEN, z_value};

/// The longest key the exchange derives here (a KDF output the caller asks
/// for; bounded so that a request cannot make the server allocate at will).
pub const MAX_KEY_LEN: usize = 4096;

/// What one party knows of the other: its id, static and ephemeral public
/// points (65-byte uncompressed SEC1).
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub user_id: &'a [u8],
    pub public: &'a [u8],
    pub ephemeral: &'a [u8],
}

/// One party's own keys: static private d and ephemeral private r (32
/// big-endian bytes each), and its user id.
#[derive(Clone, Copy)]
pub struct Own<'a> {
    pub user_id: &'a [u8],
    pub private: &'a [u8],
    pub ephemeral_private: &'a [u8],
}

impl core::fmt::Debug for Own<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Own").finish_non_exhaustive()
    }
}

/// The shared key of `klen` bytes, as the initiator (`initiator`) or the
/// responder computes it. A peer point not on the curve is
/// `MechanismParamInvalid`; a wrong-sized key `KeyTypeInconsistent`.
pub fn key_exchange(
    initiator: bool,
    own: Own<'_>,
    peer: Peer<'_>,
    klen: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    if klen == 0 || klen > MAX_KEY_LEN {
        return Err(CryptoError::KeySizeRange);
    }
    let d = secret_scalar(own.private)?;
    let r = secret_scalar(own.ephemeral_private)?;
    let own_public = encode(&(AffinePoint::GENERATOR * *d).to_affine())?;
    let own_ephemeral = encode(&(AffinePoint::GENERATOR * *r).to_affine())?;
    let peer_public = peer_point(peer.public)?;
    let peer_ephemeral = peer_point(peer.ephemeral)?;

    let t = Zeroizing::new(*d + x_bar(&own_ephemeral)? * *r);
    let sum = peer_public.to_projective()
        + peer_ephemeral.to_projective() * x_bar(&encode(peer_ephemeral.as_affine())?)?;
    // The point at infinity has no encoding: `encode` refuses it (step A7).
    let u = Zeroizing::new(encode(&(sum * *t).to_affine())?);

    let own_z = z_value(own.user_id, &own_public)?;
    let peer_z = z_value(peer.user_id, peer.public)?;
    let (z_a, z_b) = if initiator {
        (own_z, peer_z)
    } else {
        (peer_z, own_z)
    };
    let mut input = Zeroizing::new(Vec::with_capacity(2 * 32 + 64));
    input.extend_from_slice(&u[1..]);
    input.extend_from_slice(&z_a);
    input.extend_from_slice(&z_b);
    Ok(kdf(&input, klen))
}

fn secret_scalar(bytes: &[u8]) -> Result<Zeroizing<Scalar>> {
    let key = sm2::SecretKey::from_slice(bytes).map_err(|_| CryptoError::KeyTypeInconsistent)?;
    Ok(Zeroizing::new(*key.to_nonzero_scalar()))
}

fn peer_point(bytes: &[u8]) -> Result<PublicKey> {
    PublicKey::from_sec1_bytes(bytes).map_err(|_| CryptoError::MechanismParamInvalid)
}

fn encode(point: &AffinePoint) -> Result<[u8; POINT_LEN]> {
    let public = PublicKey::from_affine(*point).map_err(|_| CryptoError::General)?;
    public
        .to_sec1_point(false)
        .as_bytes()
        .try_into()
        .map_err(|_| CryptoError::General)
}

/// x̄ = 2^127 + (x mod 2^127) of an uncompressed point 04 || x || y.
fn x_bar(point: &[u8; POINT_LEN]) -> Result<Scalar> {
    let mut repr = [0u8; 32];
    // The low 16 bytes of x are bytes 17..33 of the encoding.
    repr[16..].copy_from_slice(&point[17..33]);
    repr[16] = (repr[16] & 0x7f) | 0x80;
    Option::from(Scalar::from_repr(repr.into())).ok_or(CryptoError::General)
}

/// GM/T 0003 KDF: SM3(Z || ct) for ct = 1, 2, ..., truncated to `klen`.
fn kdf(z: &[u8], klen: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(klen + 32));
    let mut counter: u32 = 1;
    while out.len() < klen {
        let mut h = sm3::Sm3::new();
        h.update(z);
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(klen);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm2::public_from_private;
    use hex_literal::hex;

    const DA: [u8; 32] = hex!("81eb26e941bb5af16df116495f90695272ae2cd63d6c4ae1678418be48230029");
    const DB: [u8; 32] = hex!("785129917d45a9ea5437a59356b82338eaadda6ceb199088f14ae10defa229b5");
    const RA: [u8; 32] = hex!("d4de15474db74d06491c440d305e012400990f3e390c7e87153c12db2ea60bb3");
    const RB: [u8; 32] = hex!("7e07124814b309489125eaed101113164ebf0f3458c5bd88335c1f9d596243d6");
    const ID_A: &[u8] = b"ALICE123@YAHOO.COM";
    const ID_B: &[u8] = b"BILL456@YAHOO.COM";

    fn run(klen: usize) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
        let (pa, pb) = (
            public_from_private(&DA).unwrap(),
            public_from_private(&DB).unwrap(),
        );
        let (ra, rb) = (
            public_from_private(&RA).unwrap(),
            public_from_private(&RB).unwrap(),
        );
        let alice = Own {
            user_id: ID_A,
            private: &DA,
            ephemeral_private: &RA,
        };
        let bill = Own {
            user_id: ID_B,
            private: &DB,
            ephemeral_private: &RB,
        };
        let to_bill = Peer {
            user_id: ID_B,
            public: &pb,
            ephemeral: &rb,
        };
        let to_alice = Peer {
            user_id: ID_A,
            public: &pa,
            ephemeral: &ra,
        };
        (
            key_exchange(true, alice, to_bill, klen).unwrap(),
            key_exchange(false, bill, to_alice, klen).unwrap(),
        )
    }

    // The same keys through gmalg 1.1.2 (PyPI, an independent pure-Python
    // GM/T implementation): SM2(sk, uid, pk, rnd_fn=r).begin_key_exchange()
    // and end_key_exchange(klen, ...) on both sides.
    #[test]
    fn both_parties_agree_with_an_independent_implementation() {
        let (alice, bill) = run(16);
        assert_eq!(alice, bill);
        assert_eq!(alice.as_slice(), hex!("3c1362830b075a6f891dbf651997bf50"));
        let (long, _) = run(48);
        assert_eq!(
            long.as_slice(),
            hex!(
                "3c1362830b075a6f891dbf651997bf50cf094c078aebfce7afe3ebda4232239a"
                "6279b49d8f8f39ee7cb87af68967e863"
            )
        );
    }

    #[test]
    fn bad_inputs_are_refused() {
        let pb = public_from_private(&DB).unwrap();
        let rb = public_from_private(&RB).unwrap();
        let alice = Own {
            user_id: ID_A,
            private: &DA,
            ephemeral_private: &RA,
        };
        let mut off_curve = rb;
        off_curve[64] ^= 1;
        let peer = Peer {
            user_id: ID_B,
            public: &pb,
            ephemeral: &off_curve,
        };
        assert_eq!(
            key_exchange(true, alice, peer, 16).unwrap_err(),
            CryptoError::MechanismParamInvalid
        );
        let peer = Peer {
            user_id: ID_B,
            public: &pb,
            ephemeral: &rb,
        };
        assert_eq!(
            key_exchange(true, alice, peer, 0).unwrap_err(),
            CryptoError::KeySizeRange
        );
        assert_eq!(
            key_exchange(true, alice, peer, MAX_KEY_LEN + 1).unwrap_err(),
            CryptoError::KeySizeRange
        );
        let zero = Own {
            user_id: ID_A,
            private: &[0u8; 32],
            ephemeral_private: &RA,
        };
        assert_eq!(
            key_exchange(true, zero, peer, 16).unwrap_err(),
            CryptoError::KeyTypeInconsistent
        );
        // The roles matter: both as initiator do not agree.
        let (alice_key, _) = run(16);
        let bill = Own {
            user_id: ID_B,
            private: &DB,
            ephemeral_private: &RB,
        };
        let pa = public_from_private(&DA).unwrap();
        let ra = public_from_private(&RA).unwrap();
        let wrong = key_exchange(
            true,
            bill,
            Peer {
                user_id: ID_A,
                public: &pa,
                ephemeral: &ra,
            },
            16,
        )
        .unwrap();
        assert_ne!(wrong, alice_key);
    }
}
