//! Mechanisms and their parameters as typed values.
//!
//! The module parses each `CK_MECHANISM`'s `pParameter` into one of these
//! variants according to the mechanism type, so that GCM IVs and AAD, OAEP
//! hashes and labels, PSS salt lengths, ECDH public data and the SM2 user id
//! all really reach the server. New variants are appended, never reordered:
//! the variant index is part of the wire format.

use serde::{Deserialize, Serialize};

use crate::types::{MechanismType, ObjectHandle};

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mechanism {
    pub mechanism: MechanismType,
    pub params: MechanismParams,
}

impl Mechanism {
    pub fn new(mechanism: u64, params: MechanismParams) -> Self {
        Self {
            mechanism: MechanismType(mechanism),
            params,
        }
    }
}

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MechanismParams {
    /// No parameter (`pParameter` NULL, `ulParameterLen` 0).
    None,
    /// An IV or nonce given as a plain byte string: `CKM_AES_CBC(_PAD)`,
    /// `CKM_SM4_CBC`, the optional IV of `CKM_AES_KEY_WRAP(_KWP)`, ...
    Iv(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `CK_AES_CTR_PARAMS`.
    AesCtr {
        counter_bits: u64,
        counter_block: [u8; 16],
    },
    /// `CK_GCM_PARAMS`.
    AesGcm {
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
        iv_bits: u64,
        #[serde(with = "serde_bytes")]
        aad: Vec<u8>,
        tag_bits: u64,
    },
    /// `CK_CCM_PARAMS`.
    AesCcm {
        data_len: u64,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        #[serde(with = "serde_bytes")]
        aad: Vec<u8>,
        mac_len: u64,
    },
    /// `CK_RSA_PKCS_OAEP_PARAMS`.
    RsaOaep {
        hash_alg: MechanismType,
        mgf: u64,
        source: u64,
        #[serde(with = "serde_bytes")]
        source_data: Vec<u8>,
    },
    /// `CK_RSA_PKCS_PSS_PARAMS`.
    RsaPss {
        hash_alg: MechanismType,
        mgf: u64,
        salt_len: u64,
    },
    /// `CK_ECDH1_DERIVE_PARAMS`.
    Ecdh1Derive {
        kdf: u64,
        #[serde(with = "serde_bytes")]
        shared_data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        public_data: Vec<u8>,
    },
    /// `CK_EDDSA_PARAMS`; `context` is `None` when no context was given.
    Eddsa {
        pre_hash: bool,
        #[serde(with = "serde_bytes")]
        context: Option<Vec<u8>>,
    },
    /// `CK_MAC_GENERAL_PARAMS`: the output length of a `*_MAC_GENERAL` mechanism.
    MacGeneral(u64),
    /// `CK_KEY_DERIVATION_STRING_DATA`: `CKM_AES_ECB_ENCRYPT_DATA`, ...
    KeyDerivationString(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`.
    AesCbcEncryptData {
        iv: [u8; 16],
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The SM2 signer's distinguishing identifier (GM/T 0009; the default is
    /// `1234567812345678`), for SM2-with-SM3 signatures computing Z.
    Sm2 {
        #[serde(with = "serde_bytes")]
        user_id: Vec<u8>,
    },
    /// A parameter that is one `CK_ULONG` (`CK_EXTRACT_PARAMS`, ...).
    Ulong(u64),
    /// `CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS` (GM/T 0003.3): the caller's role
    /// and ephemeral private key, the peer's static and ephemeral public
    /// points (uncompressed), and both user ids.
    Sm2KeyExchange {
        initiator: bool,
        ephemeral_key: ObjectHandle,
        #[serde(with = "serde_bytes")]
        peer_public: Vec<u8>,
        #[serde(with = "serde_bytes")]
        peer_ephemeral: Vec<u8>,
        #[serde(with = "serde_bytes")]
        user_id: Vec<u8>,
        #[serde(with = "serde_bytes")]
        peer_user_id: Vec<u8>,
    },
}
