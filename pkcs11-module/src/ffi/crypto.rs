//! Cryptographic functions (sections 5.8 encryption, 5.10 decryption, 5.12
//! message digesting, 5.13 signing and MACing, 5.15 verifying, 5.17
//! dual-function, 5.18 key management, 5.19 random numbers).
//!
//! The calls come in a few shapes, each written once by a macro below:
//! - `*Init(hSession, pMechanism, hKey)`: the mechanism through
//!   `mechanism::from_raw` (NULL: `CKR_ARGUMENTS_BAD`);
//! - data in, variable-length output out (`C_Encrypt`, `C_SignRecover`, the
//!   dual functions, ...): the input borrowed for the call (NULL with a
//!   nonzero length: `CKR_ARGUMENTS_BAD`), the output through `OutBuf`
//!   (NULL length pointer: `CKR_ARGUMENTS_BAD`; NULL buffer: a length query
//!   sent as such, the operation going on); one request per call, so no
//!   operation ever runs twice;
//! - output only (`C_*Final`), data only (`C_*Update` without output).
//!
//! Every argument check is made before anything is sent, so a bad argument
//! leaves the operation as it was.

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_MECHANISM, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG,
};
use hsmlink_protocol::{ObjectHandle, SessionHandle};

use super::attributes::Template;
use super::out::{OutBuf, OutBytes, OutRef};
use super::{convert, guard, input, mechanism, wire};
use crate::client::{crypto, keys, signing};
use crate::state;

fn session(handle: CK_SESSION_HANDLE) -> SessionHandle {
    SessionHandle(wire(handle))
}

fn object(handle: CK_OBJECT_HANDLE) -> ObjectHandle {
    ObjectHandle(wire(handle))
}

/// `C_xxxInit(hSession, pMechanism, hKey)`.
macro_rules! init {
    ($(#[$attr:meta])* fn $name:ident => $client:path;) => {
        $(#[$attr])*
        pub(super) unsafe extern "C" fn $name(
            hSession: CK_SESSION_HANDLE,
            pMechanism: *mut CK_MECHANISM,
            hKey: CK_OBJECT_HANDLE,
        ) -> CK_RV {
            guard(stringify!($name), || {
                let library = state::library()?;
                // SAFETY: the function's section of the standard: pMechanism
                // is NULL or points to a CK_MECHANISM whose parameter is
                // valid as its type says.
                let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
                $client(&library, session(hSession), mechanism, object(hKey))
            })
        }
    };
}

/// `C_xxx(hSession, pIn, ulInLen, pOut, pulOutLen)`.
macro_rules! data_to_output {
    ($(#[$attr:meta])* fn $name:ident => $client:path;) => {
        $(#[$attr])*
        pub(super) unsafe extern "C" fn $name(
            hSession: CK_SESSION_HANDLE,
            pIn: *mut CK_BYTE,
            ulInLen: CK_ULONG,
            pOut: *mut CK_BYTE,
            pulOutLen: *mut CK_ULONG,
        ) -> CK_RV {
            guard(stringify!($name), || {
                let library = state::library()?;
                // SAFETY: the function's section of the standard: the input
                // is NULL or ulInLen readable bytes, not written meanwhile.
                let data = unsafe { input::data(pIn, ulInLen) }?;
                // SAFETY: the function's section of the standard: pulOutLen
                // points to a CK_ULONG, pOut is NULL or holds *pulOutLen
                // bytes (section 5.2).
                let out = unsafe { OutBuf::from_raw(pOut, pulOutLen) }?;
                let output = $client(&library, session(hSession), data, out.spec())?;
                out.deliver(output)
            })
        }
    };
}

/// `C_xxxFinal(hSession, pOut, pulOutLen)`.
macro_rules! output_only {
    ($(#[$attr:meta])* fn $name:ident => $client:path;) => {
        $(#[$attr])*
        pub(super) unsafe extern "C" fn $name(
            hSession: CK_SESSION_HANDLE,
            pOut: *mut CK_BYTE,
            pulOutLen: *mut CK_ULONG,
        ) -> CK_RV {
            guard(stringify!($name), || {
                let library = state::library()?;
                // SAFETY: the function's section of the standard: pulOutLen
                // points to a CK_ULONG, pOut is NULL or holds *pulOutLen
                // bytes (section 5.2).
                let out = unsafe { OutBuf::from_raw(pOut, pulOutLen) }?;
                let output = $client(&library, session(hSession), out.spec())?;
                out.deliver(output)
            })
        }
    };
}

/// `C_xxx(hSession, pIn, ulInLen)`.
macro_rules! data_only {
    ($(#[$attr:meta])* fn $name:ident => $client:path;) => {
        $(#[$attr])*
        pub(super) unsafe extern "C" fn $name(
            hSession: CK_SESSION_HANDLE,
            pIn: *mut CK_BYTE,
            ulInLen: CK_ULONG,
        ) -> CK_RV {
            guard(stringify!($name), || {
                let library = state::library()?;
                // SAFETY: the function's section of the standard: the input
                // is NULL or ulInLen readable bytes, not written meanwhile.
                let data = unsafe { input::data(pIn, ulInLen) }?;
                $client(&library, session(hSession), data)
            })
        }
    };
}

/// `C_xxx(hSession, pIn, ulInLen, pSignature, ulSignatureLen)`.
macro_rules! data_and_signature {
    ($(#[$attr:meta])* fn $name:ident => $client:path;) => {
        $(#[$attr])*
        pub(super) unsafe extern "C" fn $name(
            hSession: CK_SESSION_HANDLE,
            pIn: *mut CK_BYTE,
            ulInLen: CK_ULONG,
            pSignature: *mut CK_BYTE,
            ulSignatureLen: CK_ULONG,
        ) -> CK_RV {
            guard(stringify!($name), || {
                let library = state::library()?;
                // SAFETY: the function's section of the standard: the input
                // is NULL or ulInLen readable bytes, not written meanwhile.
                let data = unsafe { input::data(pIn, ulInLen) }?;
                // SAFETY: as for the input: pSignature holds ulSignatureLen bytes.
                let signature = unsafe { input::data(pSignature, ulSignatureLen) }?;
                $client(&library, session(hSession), data, signature)
            })
        }
    };
}

init! {
    /// `C_EncryptInit` (5.8.1).
    fn C_EncryptInit => crypto::encrypt_init;
}
data_to_output! {
    /// `C_Encrypt` (5.8.2).
    fn C_Encrypt => crypto::encrypt;
}
data_to_output! {
    /// `C_EncryptUpdate` (5.8.3).
    fn C_EncryptUpdate => crypto::encrypt_update;
}
output_only! {
    /// `C_EncryptFinal` (5.8.4).
    fn C_EncryptFinal => crypto::encrypt_final;
}

init! {
    /// `C_DecryptInit` (5.10.1).
    fn C_DecryptInit => crypto::decrypt_init;
}
data_to_output! {
    /// `C_Decrypt` (5.10.2).
    fn C_Decrypt => crypto::decrypt;
}
data_to_output! {
    /// `C_DecryptUpdate` (5.10.3).
    fn C_DecryptUpdate => crypto::decrypt_update;
}
output_only! {
    /// `C_DecryptFinal` (5.10.4).
    fn C_DecryptFinal => crypto::decrypt_final;
}

/// `C_DigestInit` (5.12.1).
pub(super) unsafe extern "C" fn C_DigestInit(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
) -> CK_RV {
    guard("C_DigestInit", || {
        let library = state::library()?;
        // SAFETY: section 5.12.1: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        crypto::digest_init(&library, session(hSession), mechanism)
    })
}
data_to_output! {
    /// `C_Digest` (5.12.2): hashed by the server (`C_DigestKey` needs it).
    fn C_Digest => crypto::digest;
}
data_only! {
    /// `C_DigestUpdate` (5.12.3).
    fn C_DigestUpdate => crypto::digest_update;
}
/// `C_DigestKey` (5.12.4).
pub(super) extern "C" fn C_DigestKey(hSession: CK_SESSION_HANDLE, hKey: CK_OBJECT_HANDLE) -> CK_RV {
    guard("C_DigestKey", || {
        let library = state::library()?;
        crypto::digest_key(&library, session(hSession), object(hKey))
    })
}
output_only! {
    /// `C_DigestFinal` (5.12.5).
    fn C_DigestFinal => crypto::digest_final;
}

init! {
    /// `C_SignInit` (5.13.1). Hash-then-sign mechanisms start a local hash.
    fn C_SignInit => signing::sign_init;
}
data_to_output! {
    /// `C_Sign` (5.13.2). Hash-then-sign: only the digest is sent.
    fn C_Sign => signing::sign;
}
data_only! {
    /// `C_SignUpdate` (5.13.3). Hash-then-sign: hashed here, nothing sent.
    fn C_SignUpdate => signing::sign_update;
}
output_only! {
    /// `C_SignFinal` (5.13.4). Hash-then-sign: only the digest is sent.
    fn C_SignFinal => signing::sign_final;
}
init! {
    /// `C_SignRecoverInit` (5.13.5).
    fn C_SignRecoverInit => signing::sign_recover_init;
}
data_to_output! {
    /// `C_SignRecover` (5.13.6).
    fn C_SignRecover => signing::sign_recover;
}

init! {
    /// `C_VerifyInit` (5.15.1). Hash-then-sign mechanisms start a local hash.
    fn C_VerifyInit => signing::verify_init;
}
data_and_signature! {
    /// `C_Verify` (5.15.2). Hash-then-sign: only the digest is sent.
    fn C_Verify => signing::verify;
}
data_only! {
    /// `C_VerifyUpdate` (5.15.3). Hash-then-sign: hashed here, nothing sent.
    fn C_VerifyUpdate => signing::verify_update;
}
/// `C_VerifyFinal` (5.15.4). Hash-then-sign: only the digest is sent.
pub(super) unsafe extern "C" fn C_VerifyFinal(
    hSession: CK_SESSION_HANDLE,
    pSignature: *mut CK_BYTE,
    ulSignatureLen: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyFinal", || {
        let library = state::library()?;
        // SAFETY: section 5.15.4: pSignature holds ulSignatureLen bytes.
        let signature = unsafe { input::data(pSignature, ulSignatureLen) }?;
        signing::verify_final(&library, session(hSession), signature)
    })
}
init! {
    /// `C_VerifyRecoverInit` (5.15.5).
    fn C_VerifyRecoverInit => signing::verify_recover_init;
}
data_to_output! {
    /// `C_VerifyRecover` (5.15.6): the signature in, the data out.
    fn C_VerifyRecover => signing::verify_recover;
}

data_to_output! {
    /// `C_DigestEncryptUpdate` (5.17.1).
    fn C_DigestEncryptUpdate => crypto::digest_encrypt_update;
}
data_to_output! {
    /// `C_DecryptDigestUpdate` (5.17.2).
    fn C_DecryptDigestUpdate => crypto::decrypt_digest_update;
}
data_to_output! {
    /// `C_SignEncryptUpdate` (5.17.3).
    fn C_SignEncryptUpdate => crypto::sign_encrypt_update;
}
data_to_output! {
    /// `C_DecryptVerifyUpdate` (5.17.4).
    fn C_DecryptVerifyUpdate => crypto::decrypt_verify_update;
}

/// `C_GenerateKey` (5.18.1). A NULL `phKey` is `CKR_ARGUMENTS_BAD`, checked
/// before anything is generated.
pub(super) unsafe extern "C" fn C_GenerateKey(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
    phKey: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_GenerateKey", || {
        let library = state::library()?;
        // SAFETY: section 5.18.1: phKey points to the CK_OBJECT_HANDLE that
        // receives the new key's handle.
        let out = unsafe { OutRef::from_raw(phKey) }?;
        // SAFETY: section 5.18.1: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        // SAFETY: section 5.18.1: pTemplate holds ulCount attributes, each
        // pValue pointing to ulValueLen bytes of its value.
        let template =
            unsafe { Template::from_raw(pTemplate, ulCount) }?.to_wire_for(&library.profile)?;
        let key = keys::generate_key(&library, session(hSession), mechanism, template)?;
        out.write(convert::ulong(key.0)?);
        Ok(())
    })
}

/// `C_GenerateKeyPair` (5.18.2). NULL `phPublicKey` or `phPrivateKey`:
/// `CKR_ARGUMENTS_BAD`, before anything is generated.
pub(super) unsafe extern "C" fn C_GenerateKeyPair(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    pPublicKeyTemplate: *mut CK_ATTRIBUTE,
    ulPublicKeyAttributeCount: CK_ULONG,
    pPrivateKeyTemplate: *mut CK_ATTRIBUTE,
    ulPrivateKeyAttributeCount: CK_ULONG,
    phPublicKey: *mut CK_OBJECT_HANDLE,
    phPrivateKey: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_GenerateKeyPair", || {
        let library = state::library()?;
        // SAFETY: section 5.18.2: phPublicKey and phPrivateKey point to the
        // CK_OBJECT_HANDLEs that receive the new keys' handles.
        let (out_public, out_private) = unsafe {
            (
                OutRef::from_raw(phPublicKey)?,
                OutRef::from_raw(phPrivateKey)?,
            )
        };
        // SAFETY: section 5.18.2: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        // SAFETY: section 5.18.2: each template holds its count of
        // attributes, each pValue pointing to ulValueLen bytes.
        let public_template =
            unsafe { Template::from_raw(pPublicKeyTemplate, ulPublicKeyAttributeCount) }?
                .to_wire_for(&library.profile)?;
        // SAFETY: as above.
        let private_template =
            unsafe { Template::from_raw(pPrivateKeyTemplate, ulPrivateKeyAttributeCount) }?
                .to_wire_for(&library.profile)?;
        let (public, private) = keys::generate_key_pair(
            &library,
            session(hSession),
            mechanism,
            public_template,
            private_template,
        )?;
        let (public, private) = (convert::ulong(public.0)?, convert::ulong(private.0)?);
        out_public.write(public);
        out_private.write(private);
        Ok(())
    })
}

/// `C_WrapKey` (5.18.3): output by section 5.2 (NULL `pWrappedKey`: a
/// length query).
pub(super) unsafe extern "C" fn C_WrapKey(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hWrappingKey: CK_OBJECT_HANDLE,
    hKey: CK_OBJECT_HANDLE,
    pWrappedKey: *mut CK_BYTE,
    pulWrappedKeyLen: *mut CK_ULONG,
) -> CK_RV {
    guard("C_WrapKey", || {
        let library = state::library()?;
        // SAFETY: section 5.18.3: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        // SAFETY: section 5.18.3: pulWrappedKeyLen points to a CK_ULONG,
        // pWrappedKey is NULL or holds *pulWrappedKeyLen bytes.
        let out = unsafe { OutBuf::from_raw(pWrappedKey, pulWrappedKeyLen) }?;
        let output = keys::wrap_key(
            &library,
            session(hSession),
            mechanism,
            object(hWrappingKey),
            object(hKey),
            out.spec(),
        )?;
        out.deliver(output)
    })
}

/// `C_UnwrapKey` (5.18.4). A NULL `phKey` is `CKR_ARGUMENTS_BAD`.
pub(super) unsafe extern "C" fn C_UnwrapKey(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hUnwrappingKey: CK_OBJECT_HANDLE,
    pWrappedKey: *mut CK_BYTE,
    ulWrappedKeyLen: CK_ULONG,
    pTemplate: *mut CK_ATTRIBUTE,
    ulAttributeCount: CK_ULONG,
    phKey: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_UnwrapKey", || {
        let library = state::library()?;
        // SAFETY: section 5.18.4: phKey points to the CK_OBJECT_HANDLE that
        // receives the new key's handle.
        let out = unsafe { OutRef::from_raw(phKey) }?;
        // SAFETY: section 5.18.4: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        // SAFETY: section 5.18.4: pWrappedKey holds ulWrappedKeyLen bytes.
        let wrapped = unsafe { input::data(pWrappedKey, ulWrappedKeyLen) }?;
        // SAFETY: section 5.18.4: pTemplate holds ulAttributeCount
        // attributes, each pValue pointing to ulValueLen bytes.
        let template = unsafe { Template::from_raw(pTemplate, ulAttributeCount) }?
            .to_wire_for(&library.profile)?;
        let key = keys::unwrap_key(
            &library,
            session(hSession),
            mechanism,
            object(hUnwrappingKey),
            wrapped,
            template,
        )?;
        out.write(convert::ulong(key.0)?);
        Ok(())
    })
}

/// `C_DeriveKey` (5.18.5). A NULL `phKey` is `CKR_ARGUMENTS_BAD` (no
/// mechanism we serve derives without a key handle to return).
pub(super) unsafe extern "C" fn C_DeriveKey(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hBaseKey: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulAttributeCount: CK_ULONG,
    phKey: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_DeriveKey", || {
        let library = state::library()?;
        // SAFETY: section 5.18.5: phKey points to the CK_OBJECT_HANDLE that
        // receives the new key's handle.
        let out = unsafe { OutRef::from_raw(phKey) }?;
        // SAFETY: section 5.18.5: pMechanism is NULL or points to a
        // CK_MECHANISM whose parameter is valid as its type says.
        let mechanism = unsafe { mechanism::from_raw(pMechanism, &library.profile) }?;
        // SAFETY: section 5.18.5: pTemplate holds ulAttributeCount
        // attributes, each pValue pointing to ulValueLen bytes.
        let template = unsafe { Template::from_raw(pTemplate, ulAttributeCount) }?
            .to_wire_for(&library.profile)?;
        let key = keys::derive_key(
            &library,
            session(hSession),
            mechanism,
            object(hBaseKey),
            template,
        )?;
        out.write(convert::ulong(key.0)?);
        Ok(())
    })
}

data_only! {
    /// `C_SeedRandom` (5.19.1).
    fn C_SeedRandom => keys::seed_random;
}

/// `C_GenerateRandom` (5.19.2): `ulRandomLen` bytes (0 is allowed), fetched
/// in bounded requests and written in order. NULL `pRandomData` with a
/// nonzero length is `CKR_ARGUMENTS_BAD`.
pub(super) unsafe extern "C" fn C_GenerateRandom(
    hSession: CK_SESSION_HANDLE,
    RandomData: *mut CK_BYTE,
    ulRandomLen: CK_ULONG,
) -> CK_RV {
    guard("C_GenerateRandom", || {
        let library = state::library()?;
        // SAFETY: section 5.19.2: RandomData is valid for writing
        // ulRandomLen bytes.
        let mut out = unsafe { OutBytes::from_raw(RandomData, ulRandomLen) }?;
        let len = out.len();
        keys::generate_random(&library, session(hSession), len, |bytes| out.append(bytes))
    })
}
