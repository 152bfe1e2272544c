//! The operations by name: what one iteration is, the mechanisms it needs,
//! its default sizes.

use clap::ValueEnum;
use cryptoki::mechanism::MechanismType;

use super::vendor;

/// An operation by name, as `--op` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OpName {
    /// Every operation below, in this order.
    #[value(name = "all")]
    All,
    #[value(name = "sign-sm2")]
    SignSm2,
    #[value(name = "verify-sm2")]
    VerifySm2,
    #[value(name = "sign-sm2-raw")]
    SignSm2Raw,
    #[value(name = "sm3")]
    Sm3,
    #[value(name = "sm4-cbc")]
    Sm4Cbc,
    #[value(name = "sm4-cbc-decrypt")]
    Sm4CbcDecrypt,
    #[value(name = "sm4-ctr")]
    Sm4Ctr,
    #[value(name = "sm4-ecb")]
    Sm4Ecb,
    #[value(name = "sign-ecdsa-p256")]
    SignEcdsaP256,
    #[value(name = "verify-ecdsa-p256")]
    VerifyEcdsaP256,
    #[value(name = "sign-rsa2048")]
    SignRsa2048,
    #[value(name = "verify-rsa2048")]
    VerifyRsa2048,
    #[value(name = "aes-gcm")]
    AesGcm,
    #[value(name = "aes-cbc")]
    AesCbc,
    #[value(name = "aes-cbc-decrypt")]
    AesCbcDecrypt,
    #[value(name = "sha256")]
    Sha256,
    #[value(name = "random")]
    Random,
    #[value(name = "hmac-sha256")]
    HmacSha256,
    #[value(name = "get-attribute")]
    GetAttribute,
    #[value(name = "find-objects")]
    FindObjects,
    #[value(name = "open-close-session")]
    OpenCloseSession,
    #[value(name = "keygen-aes")]
    KeygenAes,
    #[value(name = "keygen-sm4")]
    KeygenSm4,
    #[value(name = "keygen-ec-p256")]
    KeygenEcP256,
}

impl OpName {
    /// Every real operation, in the order `all` runs them.
    pub const EVERY: [OpName; 24] = [
        OpName::SignSm2,
        OpName::VerifySm2,
        OpName::SignSm2Raw,
        OpName::Sm3,
        OpName::Sm4Cbc,
        OpName::Sm4CbcDecrypt,
        OpName::Sm4Ctr,
        OpName::Sm4Ecb,
        OpName::SignEcdsaP256,
        OpName::VerifyEcdsaP256,
        OpName::SignRsa2048,
        OpName::VerifyRsa2048,
        OpName::AesGcm,
        OpName::AesCbc,
        OpName::AesCbcDecrypt,
        OpName::Sha256,
        OpName::Random,
        OpName::HmacSha256,
        OpName::GetAttribute,
        OpName::FindObjects,
        OpName::OpenCloseSession,
        OpName::KeygenAes,
        OpName::KeygenSm4,
        OpName::KeygenEcP256,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpName::All => "all",
            OpName::SignSm2 => "sign-sm2",
            OpName::VerifySm2 => "verify-sm2",
            OpName::SignSm2Raw => "sign-sm2-raw",
            OpName::Sm3 => "sm3",
            OpName::Sm4Cbc => "sm4-cbc",
            OpName::Sm4CbcDecrypt => "sm4-cbc-decrypt",
            OpName::Sm4Ctr => "sm4-ctr",
            OpName::Sm4Ecb => "sm4-ecb",
            OpName::SignEcdsaP256 => "sign-ecdsa-p256",
            OpName::VerifyEcdsaP256 => "verify-ecdsa-p256",
            OpName::SignRsa2048 => "sign-rsa2048",
            OpName::VerifyRsa2048 => "verify-rsa2048",
            OpName::AesGcm => "aes-gcm",
            OpName::AesCbc => "aes-cbc",
            OpName::AesCbcDecrypt => "aes-cbc-decrypt",
            OpName::Sha256 => "sha256",
            OpName::Random => "random",
            OpName::HmacSha256 => "hmac-sha256",
            OpName::GetAttribute => "get-attribute",
            OpName::FindObjects => "find-objects",
            OpName::OpenCloseSession => "open-close-session",
            OpName::KeygenAes => "keygen-aes",
            OpName::KeygenSm4 => "keygen-sm4",
            OpName::KeygenEcP256 => "keygen-ec-p256",
        }
    }

    /// One line on what one iteration of the operation is.
    pub fn describe(self) -> &'static str {
        match self {
            OpName::All => "every operation below",
            OpName::SignSm2 => {
                "C_SignInit+C_Sign, CKM_HSMLINK_SM2_SM3 (SM3 over Z||M, default user id) of a --size message (32 B)"
            }
            OpName::VerifySm2 => {
                "C_VerifyInit+C_Verify, CKM_HSMLINK_SM2_SM3 of a --size message (32 B), signature made up front"
            }
            OpName::SignSm2Raw => {
                "C_SignInit+C_Sign, CKM_HSMLINK_SM2 (raw SM2) over a 32-byte prepared digest"
            }
            OpName::Sm3 => {
                "CKM_HSMLINK_SM3 digest of --size bytes (1 MiB) in --chunk parts (64 KiB): C_DigestInit, C_DigestUpdate per chunk, C_DigestFinal"
            }
            OpName::Sm4Cbc => {
                "CKM_HSMLINK_SM4_CBC encryption of --size bytes (1 MiB) in --chunk parts (64 KiB): C_EncryptInit, C_EncryptUpdate per chunk, C_EncryptFinal"
            }
            OpName::Sm4CbcDecrypt => {
                "CKM_HSMLINK_SM4_CBC decryption of --size bytes (1 MiB) in --chunk parts (64 KiB): C_DecryptInit, C_DecryptUpdate per chunk, C_DecryptFinal"
            }
            OpName::Sm4Ctr => {
                "CKM_HSMLINK_SM4_CTR (CK_AES_CTR_PARAMS, 128-bit counter) encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::Sm4Ecb => {
                "CKM_HSMLINK_SM4_ECB encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::SignEcdsaP256 => "C_SignInit+C_Sign, CKM_ECDSA (P-256) over a 32-byte hash",
            OpName::VerifyEcdsaP256 => {
                "C_VerifyInit+C_Verify, CKM_ECDSA (P-256) over a 32-byte hash, signature made up front"
            }
            OpName::SignRsa2048 => {
                "C_SignInit+C_Sign, CKM_SHA256_RSA_PKCS (RSA 2048, e=65537) of a --size message (32 B)"
            }
            OpName::VerifyRsa2048 => {
                "C_VerifyInit+C_Verify, CKM_SHA256_RSA_PKCS (RSA 2048) of a --size message (32 B)"
            }
            OpName::AesGcm => {
                "CKM_AES_GCM (AES-256, 12-byte IV, 128-bit tag) encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::AesCbc => {
                "CKM_AES_CBC (AES-256) encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::AesCbcDecrypt => {
                "CKM_AES_CBC (AES-256) decryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::Sha256 => "CKM_SHA256 digest of --size bytes (1 MiB) in --chunk parts (64 KiB)",
            OpName::Random => "C_GenerateRandom of --size bytes (32)",
            OpName::HmacSha256 => {
                "CKM_SHA256_HMAC (32-byte generic secret) of --size bytes (1 KiB) in --chunk parts"
            }
            OpName::GetAttribute => {
                "C_GetAttributeValue of CKA_LABEL, CKA_KEY_TYPE, CKA_VALUE_LEN of an AES key (cryptoki asks CKA_LABEL's length first)"
            }
            OpName::FindObjects => {
                "C_FindObjectsInit (CKA_LABEL of one AES key among the session's), C_FindObjects, C_FindObjectsFinal"
            }
            OpName::OpenCloseSession => "C_OpenSession (read-only) + C_CloseSession",
            OpName::KeygenAes => {
                "C_GenerateKey CKM_AES_KEY_GEN (AES-256 session key) + C_DestroyObject"
            }
            OpName::KeygenSm4 => {
                "C_GenerateKey CKM_HSMLINK_SM4_KEY_GEN (session key) + C_DestroyObject"
            }
            OpName::KeygenEcP256 => {
                "C_GenerateKeyPair CKM_EC_KEY_PAIR_GEN (P-256 session keys) + C_DestroyObject of both"
            }
        }
    }

    /// The mechanisms the module must list for the operation to run:
    /// key generation and the operation itself.
    pub(super) fn required(self) -> Vec<u64> {
        use vendor::*;
        let m = |t: MechanismType| *t;
        match self {
            OpName::All | OpName::Random | OpName::OpenCloseSession => vec![],
            OpName::SignSm2 | OpName::VerifySm2 => vec![CKM_SM2_KEY_PAIR_GEN, CKM_SM2_SM3],
            OpName::SignSm2Raw => vec![CKM_SM2_KEY_PAIR_GEN, CKM_SM2],
            OpName::Sm3 => vec![CKM_SM3],
            OpName::Sm4Cbc | OpName::Sm4CbcDecrypt => vec![CKM_SM4_KEY_GEN, CKM_SM4_CBC],
            OpName::Sm4Ctr => vec![CKM_SM4_KEY_GEN, CKM_SM4_CTR],
            OpName::Sm4Ecb => vec![CKM_SM4_KEY_GEN, CKM_SM4_ECB],
            OpName::KeygenSm4 => vec![CKM_SM4_KEY_GEN],
            OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => {
                vec![m(MechanismType::ECC_KEY_PAIR_GEN), m(MechanismType::ECDSA)]
            }
            OpName::KeygenEcP256 => vec![m(MechanismType::ECC_KEY_PAIR_GEN)],
            OpName::SignRsa2048 | OpName::VerifyRsa2048 => vec![
                m(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
                m(MechanismType::SHA256_RSA_PKCS),
            ],
            OpName::AesGcm => vec![m(MechanismType::AES_KEY_GEN), m(MechanismType::AES_GCM)],
            OpName::AesCbc | OpName::AesCbcDecrypt => {
                vec![m(MechanismType::AES_KEY_GEN), m(MechanismType::AES_CBC)]
            }
            OpName::GetAttribute | OpName::FindObjects | OpName::KeygenAes => {
                vec![m(MechanismType::AES_KEY_GEN)]
            }
            OpName::Sha256 => vec![m(MechanismType::SHA256)],
            OpName::HmacSha256 => vec![
                m(MechanismType::GENERIC_SECRET_KEY_GEN),
                m(MechanismType::SHA256_HMAC),
            ],
        }
    }

    /// Bulk operations report MB/s and Mbit/s.
    pub fn bulk(self) -> bool {
        matches!(
            self,
            OpName::Sm3
                | OpName::Sm4Cbc
                | OpName::Sm4CbcDecrypt
                | OpName::Sm4Ctr
                | OpName::Sm4Ecb
                | OpName::AesGcm
                | OpName::AesCbc
                | OpName::AesCbcDecrypt
                | OpName::Sha256
                | OpName::HmacSha256
        )
    }

    /// Block modes without padding: sizes and updates in whole blocks.
    pub(super) fn whole_blocks(self) -> bool {
        matches!(
            self,
            OpName::Sm4Cbc
                | OpName::Sm4CbcDecrypt
                | OpName::Sm4Ecb
                | OpName::AesCbc
                | OpName::AesCbcDecrypt
        )
    }

    /// Whether `--size` means anything to the operation.
    pub fn sized(self) -> bool {
        !matches!(
            self,
            OpName::SignSm2Raw
                | OpName::SignEcdsaP256
                | OpName::VerifyEcdsaP256
                | OpName::GetAttribute
                | OpName::FindObjects
                | OpName::OpenCloseSession
                | OpName::KeygenAes
                | OpName::KeygenSm4
                | OpName::KeygenEcP256
        )
    }

    /// Bytes per operation and bytes per update call.
    pub fn sizes(self, sizes: Sizes) -> (usize, usize) {
        let size = match self {
            // Raw signature mechanisms sign a digest: 32 bytes.
            OpName::SignSm2Raw | OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => 32,
            op if !op.sized() => 0,
            _ => sizes.size.unwrap_or_else(|| self.default_size()),
        };
        let chunk = if self.whole_blocks() {
            // Whole blocks per update, so every update returns its share.
            (sizes.chunk / 16).max(1) * 16
        } else {
            sizes.chunk.max(1)
        };
        (size, chunk)
    }

    fn default_size(self) -> usize {
        match self {
            OpName::HmacSha256 => 1024,
            op if op.bulk() => 1 << 20,
            _ => 32,
        }
    }
}

/// Input sizes chosen on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Bytes per operation (`--size`); the operation's default if `None`.
    pub size: Option<usize>,
    /// Bytes per update call of a bulk operation (`--chunk`).
    pub chunk: usize,
    /// One single-part call per bulk operation instead of updates.
    pub single_part: bool,
}
