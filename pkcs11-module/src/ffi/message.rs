//! Message-based functions, new in PKCS#11 3.0 (sections 5.9 encryption,
//! 5.11 decryption, 5.14 signing and MACing, 5.16 verification). Not served
//! yet.

use cryptoki_sys::{
    CK_BYTE, CK_FLAGS, CK_MECHANISM, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG,
    CK_VOID_PTR,
};

use super::not_supported;

not_supported! {
    /// `C_MessageEncryptInit` (5.9.1).
    fn C_MessageEncryptInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_EncryptMessage` (5.9.2).
    fn C_EncryptMessage(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pAssociatedData: *mut CK_BYTE,
        _ulAssociatedDataLen: CK_ULONG,
        _pPlaintext: *mut CK_BYTE,
        _ulPlaintextLen: CK_ULONG,
        _pCiphertext: *mut CK_BYTE,
        _pulCiphertextLen: *mut CK_ULONG,
    );
    /// `C_EncryptMessageBegin` (5.9.3).
    fn C_EncryptMessageBegin(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pAssociatedData: *mut CK_BYTE,
        _ulAssociatedDataLen: CK_ULONG,
    );
    /// `C_EncryptMessageNext` (5.9.4).
    fn C_EncryptMessageNext(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pPlaintextPart: *mut CK_BYTE,
        _ulPlaintextPartLen: CK_ULONG,
        _pCiphertextPart: *mut CK_BYTE,
        _pulCiphertextPartLen: *mut CK_ULONG,
        _flags: CK_FLAGS,
    );
    /// `C_MessageEncryptFinal` (5.9.5).
    fn C_MessageEncryptFinal(_hSession: CK_SESSION_HANDLE);

    /// `C_MessageDecryptInit` (5.11.1).
    fn C_MessageDecryptInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_DecryptMessage` (5.11.2).
    fn C_DecryptMessage(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pAssociatedData: *mut CK_BYTE,
        _ulAssociatedDataLen: CK_ULONG,
        _pCiphertext: *mut CK_BYTE,
        _ulCiphertextLen: CK_ULONG,
        _pPlaintext: *mut CK_BYTE,
        _pulPlaintextLen: *mut CK_ULONG,
    );
    /// `C_DecryptMessageBegin` (5.11.3).
    fn C_DecryptMessageBegin(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pAssociatedData: *mut CK_BYTE,
        _ulAssociatedDataLen: CK_ULONG,
    );
    /// `C_DecryptMessageNext` (5.11.4).
    fn C_DecryptMessageNext(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pCiphertextPart: *mut CK_BYTE,
        _ulCiphertextPartLen: CK_ULONG,
        _pPlaintextPart: *mut CK_BYTE,
        _pulPlaintextPartLen: *mut CK_ULONG,
        _flags: CK_FLAGS,
    );
    /// `C_MessageDecryptFinal` (5.11.5).
    fn C_MessageDecryptFinal(_hSession: CK_SESSION_HANDLE);

    /// `C_MessageSignInit` (5.14.1).
    fn C_MessageSignInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_SignMessage` (5.14.2).
    fn C_SignMessage(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _pulSignatureLen: *mut CK_ULONG,
    );
    /// `C_SignMessageBegin` (5.14.3).
    fn C_SignMessageBegin(_hSession: CK_SESSION_HANDLE, _pParameter: CK_VOID_PTR, _ulParameterLen: CK_ULONG);
    /// `C_SignMessageNext` (5.14.4).
    fn C_SignMessageNext(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _pulSignatureLen: *mut CK_ULONG,
    );
    /// `C_MessageSignFinal` (5.14.5).
    fn C_MessageSignFinal(_hSession: CK_SESSION_HANDLE);

    /// `C_MessageVerifyInit` (5.16.1).
    fn C_MessageVerifyInit(_hSession: CK_SESSION_HANDLE, _pMechanism: *mut CK_MECHANISM, _hKey: CK_OBJECT_HANDLE);
    /// `C_VerifyMessage` (5.16.2).
    fn C_VerifyMessage(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _ulSignatureLen: CK_ULONG,
    );
    /// `C_VerifyMessageBegin` (5.16.3).
    fn C_VerifyMessageBegin(_hSession: CK_SESSION_HANDLE, _pParameter: CK_VOID_PTR, _ulParameterLen: CK_ULONG);
    /// `C_VerifyMessageNext` (5.16.4).
    fn C_VerifyMessageNext(
        _hSession: CK_SESSION_HANDLE,
        _pParameter: CK_VOID_PTR,
        _ulParameterLen: CK_ULONG,
        _pData: *mut CK_BYTE,
        _ulDataLen: CK_ULONG,
        _pSignature: *mut CK_BYTE,
        _ulSignatureLen: CK_ULONG,
    );
    /// `C_MessageVerifyFinal` (5.16.5).
    fn C_MessageVerifyFinal(_hSession: CK_SESSION_HANDLE);
}
