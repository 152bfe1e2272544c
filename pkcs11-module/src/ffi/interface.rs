//! The three exported entry points and the static function lists behind
//! them (sections 5.4.4 to 5.4.6).
//!
//! `C_GetFunctionList` hands out the 2.40 list; `C_GetInterfaceList` and
//! `C_GetInterface` the interfaces "PKCS 11" 3.0 (the default) and
//! "PKCS 11" 2.40. The lists are immutable statics in read-only memory; the
//! standard forbids applications to write to them.

use std::ffi::CStr;

use cryptoki_sys::{
    CK_FLAGS, CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0, CK_INTERFACE, CK_RV, CK_ULONG, CK_UTF8CHAR,
    CK_VERSION, CKR_FUNCTION_FAILED,
};

use super::general::{CRYPTOKI_2_40, CRYPTOKI_3_0};
use super::out::{OutBuf, OutRef};
use super::{crypto, general, guard, message, object, session, slots};
use crate::error::Error;

/// The name of the standard interfaces, NUL-terminated.
const INTERFACE_NAME: &CStr = c"PKCS 11";

/// `CK_INTERFACE` holds raw pointers and is therefore not `Sync`; ours point
/// to immutable statics only.
#[repr(transparent)]
struct Interface(CK_INTERFACE);

// SAFETY: the pointers inside point to immutable `'static` data (the name
// and the function lists), which is never written through them, so sharing
// an `Interface` between threads shares only read-only memory.
unsafe impl Sync for Interface {}

/// The versions of the function lists of [`INTERFACES`], in the same order.
const INTERFACE_VERSIONS: [CK_VERSION; 2] = [CRYPTOKI_3_0, CRYPTOKI_2_40];

/// Interfaces in order of preference: 3.0 first (the default), then 2.40.
static INTERFACES: [Interface; 2] = [
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast::<CK_UTF8CHAR>().cast_mut(),
        pFunctionList: (&raw const FUNCTION_LIST_3_0).cast_mut().cast(),
        flags: 0,
    }),
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast::<CK_UTF8CHAR>().cast_mut(),
        pFunctionList: (&raw const FUNCTION_LIST_2_40).cast_mut().cast(),
        flags: 0,
    }),
];

/// `C_GetFunctionList` (5.4.4): the PKCS#11 2.40 function list.
///
/// # Safety
/// `ppFunctionList` is NULL (`CKR_ARGUMENTS_BAD`) or valid for writing one
/// pointer. The list returned must not be written to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard("C_GetFunctionList", || {
        // SAFETY: section 5.4.4: ppFunctionList is NULL or points to a
        // CK_FUNCTION_LIST_PTR to fill in (this function's contract).
        let out = unsafe { OutRef::from_raw(ppFunctionList) }?;
        out.write((&raw const FUNCTION_LIST_2_40).cast_mut());
        Ok(())
    })
}

/// `C_GetInterfaceList` (5.4.5): "PKCS 11" 3.0, then "PKCS 11" 2.40, with
/// the output rule of section 5.2 (NULL list: count only).
///
/// # Safety
/// `pulCount` is NULL (`CKR_ARGUMENTS_BAD`) or valid for reading and
/// writing one `CK_ULONG`; `pInterfacesList` is NULL or valid for writing
/// `*pulCount` `CK_INTERFACE`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(
    pInterfacesList: *mut CK_INTERFACE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetInterfaceList", || {
        // SAFETY: this function's contract, which is section 5.4.5's.
        let out = unsafe { OutBuf::from_raw(pInterfacesList, pulCount) }?;
        out.write(&INTERFACES.each_ref().map(|interface| interface.0))
    })
}

/// `C_GetInterface` (5.4.6): the first interface matching the name (NULL:
/// any, i.e. the default "PKCS 11" 3.0), the version (NULL: any) and all
/// the flags asked for. No match is `CKR_FUNCTION_FAILED`; a NULL
/// `ppInterface` is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// `pInterfaceName` is NULL or a NUL-terminated string; `pVersion` is NULL
/// or points to a `CK_VERSION`; `ppInterface` is NULL or valid for writing
/// one pointer. The interface returned must not be written to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    pInterfaceName: *mut CK_UTF8CHAR,
    pVersion: *mut CK_VERSION,
    ppInterface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    guard("C_GetInterface", || {
        // SAFETY: this function's contract: NULL or valid for one write.
        let out = unsafe { OutRef::from_raw(ppInterface) }?;
        let name = if pInterfaceName.is_null() {
            None
        } else {
            // SAFETY: a non-NULL pInterfaceName is a NUL-terminated string
            // (section 5.4.6) that outlives this call.
            Some(unsafe { CStr::from_ptr(pInterfaceName.cast()) })
        };
        let version = if pVersion.is_null() {
            None
        } else {
            // SAFETY: a non-NULL pVersion points to a CK_VERSION; the copy
            // does not need alignment.
            Some(unsafe { pVersion.read_unaligned() })
        };
        let index = select(name, version, flags).ok_or(Error::new(CKR_FUNCTION_FAILED))?;
        out.write(
            (&raw const INTERFACES[index])
                .cast::<CK_INTERFACE>()
                .cast_mut(),
        );
        Ok(())
    })
}

/// The index in [`INTERFACES`] of the first interface that matches.
fn select(name: Option<&CStr>, version: Option<CK_VERSION>, flags: CK_FLAGS) -> Option<usize> {
    INTERFACES.iter().zip(INTERFACE_VERSIONS).position(
        |(Interface(interface), interface_version)| {
            name.is_none_or(|name| name == INTERFACE_NAME)
                && version.is_none_or(|v| {
                    (v.major, v.minor) == (interface_version.major, interface_version.minor)
                })
                && interface.flags & flags == flags
        },
    )
}

/// The 68 entries that the 2.40 and 3.0 lists share, written once; the
/// lists differ in their version, their `C_GetInfo` (which reports that
/// version) and the 3.0 additions appended after the shared entries.
macro_rules! function_list {
    ($list:ident, $version:expr, $get_info:path $(, $name:ident: $value:expr)* $(,)?) => {
        $list {
            version: $version,
            C_Initialize: Some(general::C_Initialize),
            C_Finalize: Some(general::C_Finalize),
            C_GetInfo: Some($get_info),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(slots::C_GetSlotList),
            C_GetSlotInfo: Some(slots::C_GetSlotInfo),
            C_GetTokenInfo: Some(slots::C_GetTokenInfo),
            C_GetMechanismList: Some(slots::C_GetMechanismList),
            C_GetMechanismInfo: Some(slots::C_GetMechanismInfo),
            C_InitToken: Some(slots::C_InitToken),
            C_InitPIN: Some(slots::C_InitPIN),
            C_SetPIN: Some(slots::C_SetPIN),
            C_OpenSession: Some(session::C_OpenSession),
            C_CloseSession: Some(session::C_CloseSession),
            C_CloseAllSessions: Some(session::C_CloseAllSessions),
            C_GetSessionInfo: Some(session::C_GetSessionInfo),
            C_GetOperationState: Some(session::C_GetOperationState),
            C_SetOperationState: Some(session::C_SetOperationState),
            C_Login: Some(session::C_Login),
            C_Logout: Some(session::C_Logout),
            C_CreateObject: Some(object::C_CreateObject),
            C_CopyObject: Some(object::C_CopyObject),
            C_DestroyObject: Some(object::C_DestroyObject),
            C_GetObjectSize: Some(object::C_GetObjectSize),
            C_GetAttributeValue: Some(object::C_GetAttributeValue),
            C_SetAttributeValue: Some(object::C_SetAttributeValue),
            C_FindObjectsInit: Some(object::C_FindObjectsInit),
            C_FindObjects: Some(object::C_FindObjects),
            C_FindObjectsFinal: Some(object::C_FindObjectsFinal),
            C_EncryptInit: Some(crypto::C_EncryptInit),
            C_Encrypt: Some(crypto::C_Encrypt),
            C_EncryptUpdate: Some(crypto::C_EncryptUpdate),
            C_EncryptFinal: Some(crypto::C_EncryptFinal),
            C_DecryptInit: Some(crypto::C_DecryptInit),
            C_Decrypt: Some(crypto::C_Decrypt),
            C_DecryptUpdate: Some(crypto::C_DecryptUpdate),
            C_DecryptFinal: Some(crypto::C_DecryptFinal),
            C_DigestInit: Some(crypto::C_DigestInit),
            C_Digest: Some(crypto::C_Digest),
            C_DigestUpdate: Some(crypto::C_DigestUpdate),
            C_DigestKey: Some(crypto::C_DigestKey),
            C_DigestFinal: Some(crypto::C_DigestFinal),
            C_SignInit: Some(crypto::C_SignInit),
            C_Sign: Some(crypto::C_Sign),
            C_SignUpdate: Some(crypto::C_SignUpdate),
            C_SignFinal: Some(crypto::C_SignFinal),
            C_SignRecoverInit: Some(crypto::C_SignRecoverInit),
            C_SignRecover: Some(crypto::C_SignRecover),
            C_VerifyInit: Some(crypto::C_VerifyInit),
            C_Verify: Some(crypto::C_Verify),
            C_VerifyUpdate: Some(crypto::C_VerifyUpdate),
            C_VerifyFinal: Some(crypto::C_VerifyFinal),
            C_VerifyRecoverInit: Some(crypto::C_VerifyRecoverInit),
            C_VerifyRecover: Some(crypto::C_VerifyRecover),
            C_DigestEncryptUpdate: Some(crypto::C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(crypto::C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(crypto::C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(crypto::C_DecryptVerifyUpdate),
            C_GenerateKey: Some(crypto::C_GenerateKey),
            C_GenerateKeyPair: Some(crypto::C_GenerateKeyPair),
            C_WrapKey: Some(crypto::C_WrapKey),
            C_UnwrapKey: Some(crypto::C_UnwrapKey),
            C_DeriveKey: Some(crypto::C_DeriveKey),
            C_SeedRandom: Some(crypto::C_SeedRandom),
            C_GenerateRandom: Some(crypto::C_GenerateRandom),
            C_GetFunctionStatus: Some(general::C_GetFunctionStatus),
            C_CancelFunction: Some(general::C_CancelFunction),
            C_WaitForSlotEvent: Some(slots::C_WaitForSlotEvent),
            $($name: $value,)*
        }
    };
}

/// The PKCS#11 2.40 function list (`C_GetFunctionList`, interface 2.40).
pub static FUNCTION_LIST_2_40: CK_FUNCTION_LIST =
    function_list!(CK_FUNCTION_LIST, CRYPTOKI_2_40, general::C_GetInfo_v2_40);

/// The PKCS#11 3.0 function list (interface "PKCS 11" 3.0, the default).
pub static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = function_list!(
    CK_FUNCTION_LIST_3_0,
    CRYPTOKI_3_0,
    general::C_GetInfo,
    C_GetInterfaceList: Some(C_GetInterfaceList),
    C_GetInterface: Some(C_GetInterface),
    C_LoginUser: Some(session::C_LoginUser),
    C_SessionCancel: Some(session::C_SessionCancel),
    C_MessageEncryptInit: Some(message::C_MessageEncryptInit),
    C_EncryptMessage: Some(message::C_EncryptMessage),
    C_EncryptMessageBegin: Some(message::C_EncryptMessageBegin),
    C_EncryptMessageNext: Some(message::C_EncryptMessageNext),
    C_MessageEncryptFinal: Some(message::C_MessageEncryptFinal),
    C_MessageDecryptInit: Some(message::C_MessageDecryptInit),
    C_DecryptMessage: Some(message::C_DecryptMessage),
    C_DecryptMessageBegin: Some(message::C_DecryptMessageBegin),
    C_DecryptMessageNext: Some(message::C_DecryptMessageNext),
    C_MessageDecryptFinal: Some(message::C_MessageDecryptFinal),
    C_MessageSignInit: Some(message::C_MessageSignInit),
    C_SignMessage: Some(message::C_SignMessage),
    C_SignMessageBegin: Some(message::C_SignMessageBegin),
    C_SignMessageNext: Some(message::C_SignMessageNext),
    C_MessageSignFinal: Some(message::C_MessageSignFinal),
    C_MessageVerifyInit: Some(message::C_MessageVerifyInit),
    C_VerifyMessage: Some(message::C_VerifyMessage),
    C_VerifyMessageBegin: Some(message::C_VerifyMessageBegin),
    C_VerifyMessageNext: Some(message::C_VerifyMessageNext),
    C_MessageVerifyFinal: Some(message::C_MessageVerifyFinal),
);
