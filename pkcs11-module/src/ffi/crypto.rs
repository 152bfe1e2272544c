//! Cryptographic functions (sections 5.8 encryption, 5.10 decryption, 5.12
//! message digesting, 5.13 signing and MACing, 5.15 verifying, 5.17
//! dual-function, 5.18 key management, 5.19 random numbers). Not served yet.

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_MECHANISM, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG,
};

use super::not_supported;

not_supported! {
    /// `C_EncryptInit` (5.8.1).
    fn C_EncryptInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_Encrypt` (5.8.2).
    fn C_Encrypt(
        _hSession: CK_SESSION_HANDLE,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pEncryptedData: *mut CK_BYTE,
        _pulEncryptedDataLen: *mut CK_ULONG,
    );
    /// `C_EncryptUpdate` (5.8.3).
    fn C_EncryptUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pPart: *mut CK_BYTE,
        _ulPartLen: CK_ULONG,
        _pEncryptedPart: *mut CK_BYTE,
        _pulEncryptedPartLen: *mut CK_ULONG,
    );
    /// `C_EncryptFinal` (5.8.4).
    fn C_EncryptFinal(
        _hSession: CK_SESSION_HANDLE,
        _pLastEncryptedPart: *mut CK_BYTE,
        _pulLastEncryptedPartLen: *mut CK_ULONG,
    );

    /// `C_DecryptInit` (5.10.1).
    fn C_DecryptInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_Decrypt` (5.10.2).
    fn C_Decrypt(
        _hSession: CK_SESSION_HANDLE,
        _pEncryptedData: *mut CK_BYTE,
        _ulEncryptedDataLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _pulDataLen: *mut CK_ULONG,
    );
    /// `C_DecryptUpdate` (5.10.3).
    fn C_DecryptUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pEncryptedPart: *mut CK_BYTE,
        _ulEncryptedPartLen: CK_ULONG,
        _pPart: *mut CK_BYTE,
        _pulPartLen: *mut CK_ULONG,
    );
    /// `C_DecryptFinal` (5.10.4).
    fn C_DecryptFinal(
        _hSession: CK_SESSION_HANDLE,
        _pLastPart: *mut CK_BYTE,
        _pulLastPartLen: *mut CK_ULONG,
    );

    /// `C_DigestInit` (5.12.1).
    fn C_DigestInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM);
    /// `C_Digest` (5.12.2).
    fn C_Digest(
        _hSession: CK_SESSION_HANDLE,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pDigest: *mut CK_BYTE,
        _pulDigestLen: *mut CK_ULONG,
    );
    /// `C_DigestUpdate` (5.12.3).
    fn C_DigestUpdate(_hSession: CK_SESSION_HANDLE, _pPart: *mut CK_BYTE, _ulPartLen: CK_ULONG);
    /// `C_DigestKey` (5.12.4).
    fn C_DigestKey(_hSession: CK_SESSION_HANDLE, _hKey: CK_OBJECT_HANDLE);
    /// `C_DigestFinal` (5.12.5).
    fn C_DigestFinal(
        _hSession: CK_SESSION_HANDLE,
        _pDigest: *mut CK_BYTE,
        _pulDigestLen: *mut CK_ULONG,
    );

    /// `C_SignInit` (5.13.1).
    fn C_SignInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_Sign` (5.13.2).
    fn C_Sign(
        _hSession: CK_SESSION_HANDLE,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _pulSignatureLen: *mut CK_ULONG,
    );
    /// `C_SignUpdate` (5.13.3).
    fn C_SignUpdate(_hSession: CK_SESSION_HANDLE, _pPart: *mut CK_BYTE, _ulPartLen: CK_ULONG);
    /// `C_SignFinal` (5.13.4).
    fn C_SignFinal(
        _hSession: CK_SESSION_HANDLE,
        _pSignature: *mut CK_BYTE,
        _pulSignatureLen: *mut CK_ULONG,
    );
    /// `C_SignRecoverInit` (5.13.5).
    fn C_SignRecoverInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_SignRecover` (5.13.6).
    fn C_SignRecover(
        _hSession: CK_SESSION_HANDLE,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _pulSignatureLen: *mut CK_ULONG,
    );

    /// `C_VerifyInit` (5.15.1).
    fn C_VerifyInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_Verify` (5.15.2).
    fn C_Verify(
        _hSession: CK_SESSION_HANDLE,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _ulSignatureLen: CK_ULONG,
    );
    /// `C_VerifyUpdate` (5.15.3).
    fn C_VerifyUpdate(_hSession: CK_SESSION_HANDLE, _pPart: *mut CK_BYTE, _ulPartLen: CK_ULONG);
    /// `C_VerifyFinal` (5.15.4).
    fn C_VerifyFinal(_hSession: CK_SESSION_HANDLE, _pSignature: *mut CK_BYTE, _ulSignatureLen: CK_ULONG);
    /// `C_VerifyRecoverInit` (5.15.5).
    fn C_VerifyRecoverInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_VerifyRecover` (5.15.6).
    fn C_VerifyRecover(
        _hSession: CK_SESSION_HANDLE,
        _pSignature: *mut CK_BYTE,
        _ulSignatureLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _pulDataLen: *mut CK_ULONG,
    );

    /// `C_DigestEncryptUpdate` (5.17.1).
    fn C_DigestEncryptUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pPart: *mut CK_BYTE,
        _ulPartLen: CK_ULONG,
        _pEncryptedPart: *mut CK_BYTE,
        _pulEncryptedPartLen: *mut CK_ULONG,
    );
    /// `C_DecryptDigestUpdate` (5.17.2).
    fn C_DecryptDigestUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pEncryptedPart: *mut CK_BYTE,
        _ulEncryptedPartLen: CK_ULONG,
        _pPart: *mut CK_BYTE,
        _pulPartLen: *mut CK_ULONG,
    );
    /// `C_SignEncryptUpdate` (5.17.3).
    fn C_SignEncryptUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pPart: *mut CK_BYTE,
        _ulPartLen: CK_ULONG,
        _pEncryptedPart: *mut CK_BYTE,
        _pulEncryptedPartLen: *mut CK_ULONG,
    );
    /// `C_DecryptVerifyUpdate` (5.17.4).
    fn C_DecryptVerifyUpdate(
        _hSession: CK_SESSION_HANDLE,
        _pEncryptedPart: *mut CK_BYTE,
        _ulEncryptedPartLen: CK_ULONG,
        _pPart: *mut CK_BYTE,
        _pulPartLen: *mut CK_ULONG,
    );

    /// `C_GenerateKey` (5.18.1).
    fn C_GenerateKey(
        _hSession: CK_SESSION_HANDLE,
        _pMechanism: *mut CK_MECHANISM,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulCount: CK_ULONG,
        _phKey: *mut CK_OBJECT_HANDLE,
    );
    /// `C_GenerateKeyPair` (5.18.2).
    fn C_GenerateKeyPair(
        _hSession: CK_SESSION_HANDLE,
        _pMechanism: *mut CK_MECHANISM,
        _pPublicKeyTemplate: *mut CK_ATTRIBUTE,
        _ulPublicKeyAttributeCount: CK_ULONG,
        _pPrivateKeyTemplate: *mut CK_ATTRIBUTE,
        _ulPrivateKeyAttributeCount: CK_ULONG,
        _phPublicKey: *mut CK_OBJECT_HANDLE,
        _phPrivateKey: *mut CK_OBJECT_HANDLE,
    );
    /// `C_WrapKey` (5.18.3).
    fn C_WrapKey(
        _hSession: CK_SESSION_HANDLE,
        _pMechanism: *mut CK_MECHANISM,
        _hWrappingKey: CK_OBJECT_HANDLE,
        _hKey: CK_OBJECT_HANDLE,
        _pWrappedKey: *mut CK_BYTE,
        _pulWrappedKeyLen: *mut CK_ULONG,
    );
    /// `C_UnwrapKey` (5.18.4).
    fn C_UnwrapKey(
        _hSession: CK_SESSION_HANDLE,
        _pMechanism: *mut CK_MECHANISM,
        _hUnwrappingKey: CK_OBJECT_HANDLE,
        _pWrappedKey: *mut CK_BYTE,
        _ulWrappedKeyLen: CK_ULONG,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulAttributeCount: CK_ULONG,
        _phKey: *mut CK_OBJECT_HANDLE,
    );
    /// `C_DeriveKey` (5.18.5).
    fn C_DeriveKey(
        _hSession: CK_SESSION_HANDLE,
        _pMechanism: *mut CK_MECHANISM,
        _hBaseKey: CK_OBJECT_HANDLE,
        _pTemplate: *mut CK_ATTRIBUTE,
        _ulAttributeCount: CK_ULONG,
        _phKey: *mut CK_OBJECT_HANDLE,
    );

    /// `C_SeedRandom` (5.19.1).
    fn C_SeedRandom(_hSession: CK_SESSION_HANDLE, _pSeed: *mut CK_BYTE, _ulSeedLen: CK_ULONG);
    /// `C_GenerateRandom` (5.19.2).
    fn C_GenerateRandom(_hSession: CK_SESSION_HANDLE, _RandomData: *mut CK_BYTE, _ulRandomLen: CK_ULONG);
}
