//! `C_GenerateKey` (AES, generic secrets and HMAC keys, SM4, TDES) and
//! `C_GenerateKeyPair` (RSA, EC P-256/384/521, Ed25519, SM2), PKCS#11 3.0
//! section 5.18. New keys are `CKA_LOCAL`, carry their
//! `CKA_KEY_GEN_MECHANISM`, and are `CKA_ALWAYS_SENSITIVE` /
//! `CKA_NEVER_EXTRACTABLE` as their template makes them; key material goes
//! to the sealed part of the store like every secret attribute.

use cryptoki_sys::*;
use hsmlink_crypto::selftest::{KeyPair, SelfTestFailed, pairwise};
use hsmlink_crypto::{CryptoError, ec, rng, rsa, sm2, tdes};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::{Attribute, AttributeValue, Mechanism, ObjectHandle};
use zeroize::Zeroizing;

use super::asymmetric::der_octet_string;
use super::{Family, capabilities, ck, no_params, route};
use crate::attributes::{Origin, bytes, template_map, token_made_key, ulong};
use crate::driver::ObjectContext;
use crate::error::{CkResult, Ckr};
use crate::soft::partition::{SoftPartition, actor, new_object_id};

/// `CKA_EC_PARAMS` of SM2 keys: the OID 1.2.156.10197.1.301 (GM/T 0006).
pub const SM2_OID_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];

/// Key types `CKM_GENERIC_SECRET_KEY_GEN` makes.
const GENERIC_TYPES: &[u64] = &[
    CKK_GENERIC_SECRET,
    CKK_SHA_1_HMAC,
    CKK_SHA224_HMAC,
    CKK_SHA256_HMAC,
    CKK_SHA384_HMAC,
    CKK_SHA512_HMAC,
];

fn family_for(mechanism: &Mechanism, flag: CK_FLAGS) -> CkResult<Family> {
    let family = route(mechanism.mechanism.0).ok_or(Ckr(CKR_MECHANISM_INVALID))?;
    if capabilities(family) & flag == 0 {
        return Err(Ckr(CKR_MECHANISM_INVALID));
    }
    no_params(mechanism)?;
    Ok(family)
}

fn bytes_value(v: &[u8]) -> AttributeValue {
    AttributeValue::Bytes(v.to_vec())
}

pub fn generate_key(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    mechanism: &Mechanism,
    template: &[Attribute],
) -> CkResult<()> {
    let family = family_for(mechanism, CKF_GENERATE)?;
    let given = template_map(template)?;
    let value_len = ulong(given.get(&cka::CKA_VALUE_LEN));
    let bad = Ckr(CKR_ATTRIBUTE_VALUE_INVALID);
    let (key_type, len) = match family {
        Family::AesKeyGen => match value_len {
            None => return Err(Ckr(CKR_TEMPLATE_INCOMPLETE)),
            Some(n @ (16 | 24 | 32)) => (CKK_AES, n),
            Some(_) => return Err(bad),
        },
        Family::Sm4KeyGen => match value_len {
            None | Some(16) => (hsmlink_protocol::vendor::CKK_HSMLINK_SM4, 16),
            Some(_) => return Err(bad),
        },
        // The length is the key type's; CKA_VALUE_LEN, if given, must agree.
        Family::Des2KeyGen => match value_len {
            None | Some(16) => (CKK_DES2, 16),
            Some(_) => return Err(bad),
        },
        Family::Des3KeyGen => match value_len {
            None | Some(24) => (CKK_DES3, 24),
            Some(_) => return Err(bad),
        },
        _ => {
            let key_type = ulong(given.get(&cka::CKA_KEY_TYPE)).unwrap_or(CKK_GENERIC_SECRET);
            if !GENERIC_TYPES.contains(&key_type) {
                return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
            }
            match value_len {
                None => return Err(Ckr(CKR_TEMPLATE_INCOMPLETE)),
                Some(n @ 1..=512) => (key_type, n),
                Some(_) => return Err(bad),
            }
        }
    };
    let len = usize::try_from(len).map_err(|_| bad)?;
    let value = match family {
        // Odd parity, as PKCS#11 asks of DES keys.
        Family::Des2KeyGen | Family::Des3KeyGen => tdes::generate_key(len).map_err(ck)?,
        _ => Zeroizing::new(rng::random_vec(len).map_err(ck)?),
    };
    let id = new_object_id()?;
    let attrs = token_made_key(
        template,
        &[cka::CKA_VALUE_LEN],
        (CKO_SECRET_KEY, key_type),
        vec![(cka::CKA_VALUE, bytes_value(&value))],
        actor(ctx),
        &id,
        Origin::Generated(mechanism.mechanism.0),
    )?;
    partition.store_new(ctx, vec![(handle, id, attrs)])
}

/// What a key-pair generation computed.
struct Pair {
    key_type: u64,
    public: Vec<(u64, AttributeValue)>,
    private: Vec<(u64, AttributeValue)>,
    /// Attributes of the public template that were parameters.
    consumed: &'static [u64],
}

fn ec_params(given: Option<&[u8]>, default: &[u8]) -> Vec<u8> {
    given.unwrap_or(default).to_vec()
}

/// Why no pair came out of [`make_pair`].
enum PairError {
    Ck(Ckr),
    /// The pairwise consistency test failed: the partition must fail.
    Inconsistent(SelfTestFailed),
}

impl From<Ckr> for PairError {
    fn from(e: Ckr) -> Self {
        Self::Ck(e)
    }
}

/// A new key pair of `family`, which passed the pairwise consistency test.
fn make_pair(family: Family, public_template: &[Attribute]) -> Result<Pair, PairError> {
    let given = template_map(public_template)?;
    let params = bytes(given.get(&cka::CKA_EC_PARAMS));
    Ok(match family {
        Family::RsaPairGen => {
            let bits =
                ulong(given.get(&cka::CKA_MODULUS_BITS)).ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?;
            let e = bytes(given.get(&cka::CKA_PUBLIC_EXPONENT));
            let bits = usize::try_from(bits).map_err(|_| Ckr(CKR_KEY_SIZE_RANGE))?;
            let (key, c) = rsa::generate(bits, e).map_err(|e| match e {
                CryptoError::MechanismParamInvalid => Ckr(CKR_ATTRIBUTE_VALUE_INVALID),
                other => ck(other),
            })?;
            pairwise(KeyPair::Rsa(&key)).map_err(PairError::Inconsistent)?;
            Pair {
                key_type: CKK_RSA,
                public: vec![
                    (cka::CKA_MODULUS, bytes_value(&c.modulus)),
                    (cka::CKA_PUBLIC_EXPONENT, bytes_value(&c.public_exponent)),
                ],
                private: vec![
                    (cka::CKA_MODULUS, bytes_value(&c.modulus)),
                    (cka::CKA_PUBLIC_EXPONENT, bytes_value(&c.public_exponent)),
                    (cka::CKA_PRIVATE_EXPONENT, bytes_value(&c.private_exponent)),
                    (cka::CKA_PRIME_1, bytes_value(&c.prime_1)),
                    (cka::CKA_PRIME_2, bytes_value(&c.prime_2)),
                    (cka::CKA_EXPONENT_1, bytes_value(&c.exponent_1)),
                    (cka::CKA_EXPONENT_2, bytes_value(&c.exponent_2)),
                    (cka::CKA_COEFFICIENT, bytes_value(&c.coefficient)),
                ],
                consumed: &[cka::CKA_MODULUS_BITS, cka::CKA_PUBLIC_EXPONENT],
            }
        }
        Family::EcPairGen => {
            let params = params.ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?.to_vec();
            let curve = ec::Curve::from_ec_params(&params).ok_or(Ckr(CKR_CURVE_NOT_SUPPORTED))?;
            let kp = ec::generate(curve).map_err(ck)?;
            pairwise(KeyPair::Ec {
                curve,
                d: &kp.private,
                point: &kp.public,
            })
            .map_err(PairError::Inconsistent)?;
            ec_pair(CKK_EC, params, &kp.public, &kp.private)
        }
        Family::EdPairGen => {
            let params = ec_params(params, ec::ED25519_NAME_PARAMS);
            if !ec::is_ed25519_params(&params) {
                return Err(Ckr(CKR_CURVE_NOT_SUPPORTED).into());
            }
            let kp = ec::ed25519_generate().map_err(ck)?;
            pairwise(KeyPair::Ed25519 {
                seed: &kp.private,
                public: &kp.public,
            })
            .map_err(PairError::Inconsistent)?;
            ec_pair(CKK_EC_EDWARDS, params, &kp.public, &kp.private)
        }
        Family::Sm2PairGen => {
            let params = ec_params(params, SM2_OID_PARAMS);
            if params != SM2_OID_PARAMS {
                return Err(Ckr(CKR_CURVE_NOT_SUPPORTED).into());
            }
            let kp = sm2::generate().map_err(ck)?;
            pairwise(KeyPair::Sm2 {
                d: &kp.private[..],
                point: &kp.public,
            })
            .map_err(PairError::Inconsistent)?;
            ec_pair(
                hsmlink_protocol::vendor::CKK_HSMLINK_SM2,
                params,
                &kp.public,
                &kp.private[..],
            )
        }
        _ => return Err(Ckr(CKR_MECHANISM_INVALID).into()),
    })
}

fn ec_pair(key_type: u64, params: Vec<u8>, point: &[u8], private: &[u8]) -> Pair {
    Pair {
        key_type,
        public: vec![
            (cka::CKA_EC_PARAMS, bytes_value(&params)),
            (cka::CKA_EC_POINT, bytes_value(&der_octet_string(point))),
        ],
        private: vec![
            (cka::CKA_EC_PARAMS, bytes_value(&params)),
            (cka::CKA_VALUE, bytes_value(private)),
        ],
        consumed: &[],
    }
}

pub fn generate_key_pair(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    (public_handle, private_handle): (ObjectHandle, ObjectHandle),
    mechanism: &Mechanism,
    public_template: &[Attribute],
    private_template: &[Attribute],
) -> CkResult<()> {
    let family = family_for(mechanism, CKF_GENERATE_KEY_PAIR)?;
    // Check the private template's shape before the (slow) generation.
    template_map(private_template)?;
    let pair = make_pair(family, public_template).map_err(|e| match e {
        PairError::Ck(e) => e,
        PairError::Inconsistent(failure) => partition.self_test_failed(failure),
    })?;
    let origin = Origin::Generated(mechanism.mechanism.0);
    let (public_id, private_id) = (new_object_id()?, new_object_id()?);
    let public = token_made_key(
        public_template,
        pair.consumed,
        (CKO_PUBLIC_KEY, pair.key_type),
        pair.public,
        actor(ctx),
        &public_id,
        origin,
    )?;
    let private = token_made_key(
        private_template,
        &[],
        (CKO_PRIVATE_KEY, pair.key_type),
        pair.private,
        actor(ctx),
        &private_id,
        origin,
    )?;
    partition.store_new(
        ctx,
        vec![
            (public_handle, public_id, public),
            (private_handle, private_id, private),
        ],
    )
}
