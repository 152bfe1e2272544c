//! One request variant per PKCS#11 function that crosses the network.
//!
//! Functions answered inside the module (`C_Initialize`, `C_GetInfo`,
//! `C_GetFunctionList`, `C_GetInterface*`, ...) have no variant. Sessions are
//! named by the handle the application holds; the server scopes it to the
//! tenant and application instance of the connection, so a request can never
//! name another tenant's anything.
//!
//! Outputs are described by an [`OutputSpec`] (the caller's capacity, or a
//! length query), never by the caller's buffer contents. Variants are appended,
//! never reordered: the variant index is part of the wire format.

use serde::{Deserialize, Serialize};

use crate::attribute::Attribute;
use crate::begin::OpCall;
use crate::mechanism::Mechanism;
use crate::response::OutputSpec;
use crate::secret::Secret;
use crate::types::{AttributeType, MechanismType, ObjectHandle, SessionHandle, SlotId, UserType};

#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    // ---- Slot and token management (PKCS#11 3.0 section 5.5) ----
    GetSlotList {
        token_present: bool,
    },
    GetSlotInfo {
        slot: SlotId,
    },
    GetTokenInfo {
        slot: SlotId,
    },
    GetMechanismList {
        slot: SlotId,
    },
    GetMechanismInfo {
        slot: SlotId,
        mechanism: MechanismType,
    },
    InitToken {
        slot: SlotId,
        so_pin: Secret,
        /// 32 bytes, blank padded, as the application gave it.
        label: Vec<u8>,
    },
    InitPin {
        session: SessionHandle,
        pin: Secret,
    },
    SetPin {
        session: SessionHandle,
        old_pin: Secret,
        new_pin: Secret,
    },

    // ---- Session management (5.6) ----
    OpenSession {
        slot: SlotId,
        flags: u64,
    },
    CloseSession {
        session: SessionHandle,
    },
    CloseAllSessions {
        slot: SlotId,
    },
    GetSessionInfo {
        session: SessionHandle,
    },
    SessionCancel {
        session: SessionHandle,
        flags: u64,
    },
    GetOperationState {
        session: SessionHandle,
        out: OutputSpec,
    },
    SetOperationState {
        session: SessionHandle,
        state: Secret,
        encryption_key: ObjectHandle,
        authentication_key: ObjectHandle,
    },
    Login {
        session: SessionHandle,
        user_type: UserType,
        pin: Secret,
    },
    LoginUser {
        session: SessionHandle,
        user_type: UserType,
        pin: Secret,
        username: Vec<u8>,
    },
    Logout {
        session: SessionHandle,
    },
    /// `C_Finalize`: the application instance is done; close its sessions.
    Finalize,

    // ---- Object management (5.7) ----
    CreateObject {
        session: SessionHandle,
        template: Vec<Attribute>,
    },
    CopyObject {
        session: SessionHandle,
        object: ObjectHandle,
        template: Vec<Attribute>,
    },
    DestroyObject {
        session: SessionHandle,
        object: ObjectHandle,
    },
    GetObjectSize {
        session: SessionHandle,
        object: ObjectHandle,
    },
    GetAttributeValue {
        session: SessionHandle,
        object: ObjectHandle,
        types: Vec<AttributeType>,
    },
    SetAttributeValue {
        session: SessionHandle,
        object: ObjectHandle,
        template: Vec<Attribute>,
    },
    FindObjectsInit {
        session: SessionHandle,
        template: Vec<Attribute>,
    },
    FindObjects {
        session: SessionHandle,
        max_count: u64,
    },
    FindObjectsFinal {
        session: SessionHandle,
    },

    // ---- Encryption (5.8) ----
    EncryptInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    Encrypt {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    EncryptUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    EncryptFinal {
        session: SessionHandle,
        out: OutputSpec,
    },

    // ---- Decryption (5.10) ----
    DecryptInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    Decrypt {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    DecryptUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    DecryptFinal {
        session: SessionHandle,
        out: OutputSpec,
    },

    // ---- Message digesting (5.12) ----
    DigestInit {
        session: SessionHandle,
        mechanism: Mechanism,
    },
    Digest {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    DigestUpdate {
        session: SessionHandle,
        data: Secret,
    },
    DigestKey {
        session: SessionHandle,
        key: ObjectHandle,
    },
    DigestFinal {
        session: SessionHandle,
        out: OutputSpec,
    },

    // ---- Signing and MACing (5.13) ----
    SignInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    Sign {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    SignUpdate {
        session: SessionHandle,
        data: Secret,
    },
    SignFinal {
        session: SessionHandle,
        out: OutputSpec,
    },
    SignRecoverInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    SignRecover {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },

    // ---- Verifying signatures and MACs (5.15) ----
    VerifyInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    Verify {
        session: SessionHandle,
        data: Secret,
        signature: Vec<u8>,
    },
    VerifyUpdate {
        session: SessionHandle,
        data: Secret,
    },
    VerifyFinal {
        session: SessionHandle,
        signature: Vec<u8>,
    },
    VerifyRecoverInit {
        session: SessionHandle,
        mechanism: Mechanism,
        key: ObjectHandle,
    },
    VerifyRecover {
        session: SessionHandle,
        signature: Vec<u8>,
        out: OutputSpec,
    },

    // ---- Dual-function cryptographic functions (5.17) ----
    DigestEncryptUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    DecryptDigestUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    SignEncryptUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },
    DecryptVerifyUpdate {
        session: SessionHandle,
        data: Secret,
        out: OutputSpec,
    },

    // ---- Key management (5.18) ----
    GenerateKey {
        session: SessionHandle,
        mechanism: Mechanism,
        template: Vec<Attribute>,
    },
    GenerateKeyPair {
        session: SessionHandle,
        mechanism: Mechanism,
        public_template: Vec<Attribute>,
        private_template: Vec<Attribute>,
    },
    WrapKey {
        session: SessionHandle,
        mechanism: Mechanism,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
        out: OutputSpec,
    },
    UnwrapKey {
        session: SessionHandle,
        mechanism: Mechanism,
        unwrapping_key: ObjectHandle,
        wrapped_key: Vec<u8>,
        template: Vec<Attribute>,
    },
    DeriveKey {
        session: SessionHandle,
        mechanism: Mechanism,
        base_key: ObjectHandle,
        template: Vec<Attribute>,
    },

    // ---- Random number generation (5.19) ----
    SeedRandom {
        session: SessionHandle,
        seed: Secret,
    },
    GenerateRandom {
        session: SessionHandle,
        len: u64,
    },

    // ---- Appended: hash-then-sign with the hash computed in the module ----
    /// `C_Sign`/`C_SignFinal` of a hash-then-sign mechanism (`CKM_SHA256_RSA_PKCS`,
    /// `CKM_ECDSA_SHA256`, SM2 with SM3, ...) after `SignInit` with that very
    /// mechanism: the module hashed the message itself and sends the digest.
    /// The server signs as the mechanism says, from the digest on.
    SignDigest {
        session: SessionHandle,
        digest: Secret,
        out: OutputSpec,
    },
    /// `C_Verify`/`C_VerifyFinal` of a hash-then-sign mechanism, with the
    /// digest the module computed.
    VerifyDigest {
        session: SessionHandle,
        digest: Secret,
        signature: Vec<u8>,
    },

    // ---- Appended: one round trip per operation ----
    /// A `C_*Init` the module deferred, with the single-part call that
    /// needs it (see [`crate::begin`]). The server runs
    /// `call.init(session, mechanism, key)`, then the call, and answers:
    /// the init's `CK_RV` with an empty body if the init failed (nothing
    /// else ran), else the call's `CK_RV` with `ResponseBody::Begun`.
    Begin {
        session: SessionHandle,
        mechanism: Mechanism,
        /// The operation's key; `None` for digesting.
        key: Option<ObjectHandle>,
        call: OpCall,
    },
}

impl Request {
    /// Whether the server may run this request twice with no harm: it
    /// changes nothing, or it starts and ends its own operation (a
    /// single-part call carrying its init). A client may send such a request
    /// again when its connection broke before the answer; any other request
    /// (a key made, an object destroyed, a login, a step of an operation in
    /// progress, a find in progress) may have run already and must not be
    /// sent twice.
    pub fn may_run_twice(&self) -> bool {
        match self {
            Self::GetSlotList { .. }
            | Self::GetSlotInfo { .. }
            | Self::GetTokenInfo { .. }
            | Self::GetMechanismList { .. }
            | Self::GetMechanismInfo { .. }
            | Self::GetSessionInfo { .. }
            | Self::GetObjectSize { .. }
            | Self::GetAttributeValue { .. }
            | Self::GenerateRandom { .. }
            | Self::Finalize => true,
            // Init, the single-part call and its end, in one request.
            Self::Begin { .. } => true,
            _ => false,
        }
    }

    /// The PKCS#11 function this request stands for, for logs and audit.
    pub fn function_name(&self) -> &'static str {
        match self {
            Self::GetSlotList { .. } => "C_GetSlotList",
            Self::GetSlotInfo { .. } => "C_GetSlotInfo",
            Self::GetTokenInfo { .. } => "C_GetTokenInfo",
            Self::GetMechanismList { .. } => "C_GetMechanismList",
            Self::GetMechanismInfo { .. } => "C_GetMechanismInfo",
            Self::InitToken { .. } => "C_InitToken",
            Self::InitPin { .. } => "C_InitPIN",
            Self::SetPin { .. } => "C_SetPIN",
            Self::OpenSession { .. } => "C_OpenSession",
            Self::CloseSession { .. } => "C_CloseSession",
            Self::CloseAllSessions { .. } => "C_CloseAllSessions",
            Self::GetSessionInfo { .. } => "C_GetSessionInfo",
            Self::SessionCancel { .. } => "C_SessionCancel",
            Self::GetOperationState { .. } => "C_GetOperationState",
            Self::SetOperationState { .. } => "C_SetOperationState",
            Self::Login { .. } => "C_Login",
            Self::LoginUser { .. } => "C_LoginUser",
            Self::Logout { .. } => "C_Logout",
            Self::Finalize => "C_Finalize",
            Self::CreateObject { .. } => "C_CreateObject",
            Self::CopyObject { .. } => "C_CopyObject",
            Self::DestroyObject { .. } => "C_DestroyObject",
            Self::GetObjectSize { .. } => "C_GetObjectSize",
            Self::GetAttributeValue { .. } => "C_GetAttributeValue",
            Self::SetAttributeValue { .. } => "C_SetAttributeValue",
            Self::FindObjectsInit { .. } => "C_FindObjectsInit",
            Self::FindObjects { .. } => "C_FindObjects",
            Self::FindObjectsFinal { .. } => "C_FindObjectsFinal",
            Self::EncryptInit { .. } => "C_EncryptInit",
            Self::Encrypt { .. } => "C_Encrypt",
            Self::EncryptUpdate { .. } => "C_EncryptUpdate",
            Self::EncryptFinal { .. } => "C_EncryptFinal",
            Self::DecryptInit { .. } => "C_DecryptInit",
            Self::Decrypt { .. } => "C_Decrypt",
            Self::DecryptUpdate { .. } => "C_DecryptUpdate",
            Self::DecryptFinal { .. } => "C_DecryptFinal",
            Self::DigestInit { .. } => "C_DigestInit",
            Self::Digest { .. } => "C_Digest",
            Self::DigestUpdate { .. } => "C_DigestUpdate",
            Self::DigestKey { .. } => "C_DigestKey",
            Self::DigestFinal { .. } => "C_DigestFinal",
            Self::SignInit { .. } => "C_SignInit",
            Self::Sign { .. } => "C_Sign",
            Self::SignUpdate { .. } => "C_SignUpdate",
            Self::SignFinal { .. } => "C_SignFinal",
            Self::SignRecoverInit { .. } => "C_SignRecoverInit",
            Self::SignRecover { .. } => "C_SignRecover",
            Self::VerifyInit { .. } => "C_VerifyInit",
            Self::Verify { .. } => "C_Verify",
            Self::VerifyUpdate { .. } => "C_VerifyUpdate",
            Self::VerifyFinal { .. } => "C_VerifyFinal",
            Self::VerifyRecoverInit { .. } => "C_VerifyRecoverInit",
            Self::VerifyRecover { .. } => "C_VerifyRecover",
            Self::DigestEncryptUpdate { .. } => "C_DigestEncryptUpdate",
            Self::DecryptDigestUpdate { .. } => "C_DecryptDigestUpdate",
            Self::SignEncryptUpdate { .. } => "C_SignEncryptUpdate",
            Self::DecryptVerifyUpdate { .. } => "C_DecryptVerifyUpdate",
            Self::GenerateKey { .. } => "C_GenerateKey",
            Self::GenerateKeyPair { .. } => "C_GenerateKeyPair",
            Self::WrapKey { .. } => "C_WrapKey",
            Self::UnwrapKey { .. } => "C_UnwrapKey",
            Self::DeriveKey { .. } => "C_DeriveKey",
            Self::SeedRandom { .. } => "C_SeedRandom",
            Self::GenerateRandom { .. } => "C_GenerateRandom",
            Self::SignDigest { .. } => "C_Sign",
            Self::VerifyDigest { .. } => "C_Verify",
            Self::Begin { call, .. } => call.function_name(),
        }
    }
}
