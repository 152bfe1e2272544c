//! The one error type of the crate.
//!
//! Each variant is named after the `CKR_*` code it becomes in the server's
//! driver (PKCS#11 v3.0, section 5.1). No variant carries key material,
//! plaintext or any other secret: messages are fixed strings.

/// A failed cryptographic operation, named after the `CKR_*` value it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// `CKR_DATA_LEN_RANGE`: plaintext/input length is wrong for the mechanism.
    #[error("input data length out of range")]
    DataLenRange,
    /// `CKR_DATA_INVALID`: input value is invalid (e.g. RSA input >= n).
    #[error("input data invalid")]
    DataInvalid,
    /// `CKR_ENCRYPTED_DATA_INVALID`: bad padding or authentication tag mismatch.
    #[error("encrypted data invalid")]
    EncryptedDataInvalid,
    /// `CKR_ENCRYPTED_DATA_LEN_RANGE`: ciphertext length is wrong for the mechanism.
    #[error("encrypted data length out of range")]
    EncryptedDataLenRange,
    /// `CKR_SIGNATURE_INVALID`: the signature or MAC does not verify.
    #[error("signature invalid")]
    SignatureInvalid,
    /// `CKR_SIGNATURE_LEN_RANGE`: the signature or MAC has the wrong length.
    #[error("signature length out of range")]
    SignatureLenRange,
    /// `CKR_KEY_SIZE_RANGE`: key length not supported by the mechanism.
    #[error("key size out of range")]
    KeySizeRange,
    /// `CKR_MECHANISM_PARAM_INVALID`: IV, nonce, tag length, counter bits, ...
    #[error("mechanism parameter invalid")]
    MechanismParamInvalid,
    /// `CKR_KEY_TYPE_INCONSISTENT`: the key does not suit the mechanism or curve.
    #[error("key type inconsistent with mechanism")]
    KeyTypeInconsistent,
    /// `CKR_GENERAL_ERROR` (or `CKR_FUNCTION_FAILED`): RNG failure, internal error.
    #[error("general cryptographic failure")]
    General,
}

/// Result alias of the crate.
pub type Result<T> = core::result::Result<T, CryptoError>;
