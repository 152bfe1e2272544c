//! Frames per operation, counted at the module's transport, with the
//! operations issued as applications issue them: `C_*Init`, a length query
//! (NULL output buffer), the call with a buffer. Each single-part sign,
//! verify, encrypt, decrypt, digest and random is one frame.
//!
//! The application has called `C_GetMechanismList` (as applications
//! start); without it, the first init in a slot fetches the list once.
//!
//! The fake server echoes data (its lengths are not the real ones); the
//! module does not need them: it keeps the output of the length query.
//! The soft HSM's answers to `Begin` for these mechanisms are tested in
//! the server (`calls/begin_tests.rs`).

use std::ptr::null_mut;

use cryptoki_sys::*;
use hsmlink_protocol::vendor::{CKM_HSMLINK_SM2_SM3, CKM_HSMLINK_SM3};
use hsmlink_protocol::{OpCall, Request};

use super::{Library, functions, functions_3_0, with_listed_session, with_session};
use crate::test_support::FakeServer;

const KEY: CK_OBJECT_HANDLE = 0x20;

fn frames() -> u64 {
    crate::state::library().unwrap().transport.frames_sent()
}

/// A mechanism with its parameter, kept alive by the owner.
struct Mech {
    mechanism: CK_MECHANISM_TYPE,
    param: Vec<u8>,
    gcm: Option<CK_GCM_PARAMS>,
    pss: Option<CK_RSA_PKCS_PSS_PARAMS>,
}

impl Mech {
    fn plain(mechanism: CK_MECHANISM_TYPE) -> Self {
        Self {
            mechanism,
            param: vec![],
            gcm: None,
            pss: None,
        }
    }

    fn raw(&mut self) -> CK_MECHANISM {
        let (ptr, len): (*mut std::ffi::c_void, usize) = if let Some(gcm) = &mut self.gcm {
            (
                (gcm as *mut CK_GCM_PARAMS).cast(),
                size_of::<CK_GCM_PARAMS>(),
            )
        } else if let Some(pss) = &mut self.pss {
            (
                (pss as *mut CK_RSA_PKCS_PSS_PARAMS).cast(),
                size_of::<CK_RSA_PKCS_PSS_PARAMS>(),
            )
        } else if self.param.is_empty() {
            (null_mut(), 0)
        } else {
            (self.param.as_mut_ptr().cast(), self.param.len())
        };
        CK_MECHANISM {
            mechanism: self.mechanism,
            pParameter: ptr,
            ulParameterLen: CK_ULONG::try_from(len).unwrap(),
        }
    }
}

fn ulong(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap()
}

type Init = unsafe extern "C" fn(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) -> CK_RV;
type Call = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_BYTE,
    CK_ULONG,
    *mut CK_BYTE,
    *mut CK_ULONG,
) -> CK_RV;

/// Init, length query, call: the frames sent, and the output.
fn init_query_call(
    session: CK_SESSION_HANDLE,
    init: Init,
    call: Call,
    mech: &mut Mech,
    input: &[u8],
) -> (u64, Vec<u8>) {
    let before = frames();
    let mut input = input.to_vec();
    let mut raw = mech.raw();
    let mut len: CK_ULONG = 0;
    // SAFETY: valid pointers and lengths throughout.
    unsafe {
        assert_eq!(init(session, &mut raw, KEY), CKR_OK);
        let rv = call(
            session,
            input.as_mut_ptr(),
            ulong(input.len()),
            null_mut(),
            &mut len,
        );
        assert_eq!(rv, CKR_OK);
        let mut out = vec![0u8; usize::try_from(len).unwrap()];
        let rv = call(
            session,
            input.as_mut_ptr(),
            ulong(input.len()),
            out.as_mut_ptr(),
            &mut len,
        );
        assert_eq!(rv, CKR_OK);
        out.truncate(usize::try_from(len).unwrap());
        (frames() - before, out)
    }
}

fn last_is_begin(server: &FakeServer, mechanism: CK_MECHANISM_TYPE) -> OpCall {
    match server.requests().last() {
        Some(Request::Begin {
            mechanism: m, call, ..
        }) if m.mechanism.0 == u64::from(mechanism as u32) => call.clone(),
        other => panic!("{mechanism:#x}: {other:?}"),
    }
}

#[test]
fn one_frame_per_single_part_operation() {
    let library = Library::lock();
    let (server, session) = with_listed_session(&library);
    let f = functions();
    let pss = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 32,
    };
    let signatures = [
        (Mech::plain(CKM_ECDSA), "ECDSA P-256"),
        (Mech::plain(CKM_ECDSA_SHA256), "ECDSA-SHA256"),
        (Mech::plain(CKM_SHA256_RSA_PKCS), "RSA-2048 PKCS#1"),
        (
            Mech {
                pss: Some(pss),
                ..Mech::plain(CKM_SHA256_RSA_PKCS_PSS)
            },
            "RSA-2048 PSS",
        ),
        (Mech::plain(CKM_HSMLINK_SM2_SM3 as CK_ULONG), "SM2"),
    ];
    for (mut mech, name) in signatures {
        let sign = f.C_Sign.unwrap();
        let (sent, signature) =
            init_query_call(session, f.C_SignInit.unwrap(), sign, &mut mech, b"msg");
        assert_eq!(sent, 1, "{name}: C_SignInit + length query + C_Sign");
        assert!(matches!(
            last_is_begin(&server, mech.mechanism),
            OpCall::Sign { .. } | OpCall::SignDigest { .. }
        ));
        // Verification: C_VerifyInit + C_Verify.
        let before = frames();
        let mut raw = mech.raw();
        let mut data = *b"msg";
        let mut signature = signature;
        // SAFETY: valid pointers and lengths.
        unsafe {
            assert_eq!(f.C_VerifyInit.unwrap()(session, &mut raw, KEY), CKR_OK);
            let rv = f.C_Verify.unwrap()(
                session,
                data.as_mut_ptr(),
                3,
                signature.as_mut_ptr(),
                ulong(signature.len()),
            );
            assert_eq!(rv, CKR_OK, "{name}");
        }
        assert_eq!(frames() - before, 1, "{name}: C_VerifyInit + C_Verify");
    }

    let mut iv = [7u8; 12];
    let mut aad = *b"header";
    let gcm = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 6,
        ulTagBits: 128,
    };
    let ciphers = [
        (
            Mech {
                gcm: Some(gcm),
                ..Mech::plain(CKM_AES_GCM)
            },
            "AES-GCM",
        ),
        (
            Mech {
                param: vec![3; 16],
                ..Mech::plain(CKM_AES_CBC_PAD)
            },
            "AES-CBC-PAD",
        ),
    ];
    for (mut mech, name) in ciphers {
        let (sent, cipher) = init_query_call(
            session,
            f.C_EncryptInit.unwrap(),
            f.C_Encrypt.unwrap(),
            &mut mech,
            b"plaintext",
        );
        assert_eq!(sent, 1, "{name}: C_EncryptInit + length query + C_Encrypt");
        assert!(matches!(
            last_is_begin(&server, mech.mechanism),
            OpCall::Encrypt { .. }
        ));
        let (sent, _) = init_query_call(
            session,
            f.C_DecryptInit.unwrap(),
            f.C_Decrypt.unwrap(),
            &mut mech,
            &cipher,
        );
        assert_eq!(sent, 1, "{name}: C_DecryptInit + length query + C_Decrypt");
    }

    for (mechanism, name) in [
        (CKM_SHA256, "SHA-256"),
        (CKM_HSMLINK_SM3 as CK_ULONG, "SM3"),
    ] {
        let before = frames();
        let mut raw = Mech::plain(mechanism).raw();
        let mut data = *b"digest me";
        let mut len: CK_ULONG = 0;
        let mut out = [0u8; 64];
        // SAFETY: valid pointers and lengths.
        unsafe {
            assert_eq!(f.C_DigestInit.unwrap()(session, &mut raw), CKR_OK);
            let digest = f.C_Digest.unwrap();
            assert_eq!(
                digest(session, data.as_mut_ptr(), 9, null_mut(), &mut len),
                CKR_OK
            );
            assert_eq!(
                digest(session, data.as_mut_ptr(), 9, out.as_mut_ptr(), &mut len),
                CKR_OK
            );
        }
        assert_eq!(
            frames() - before,
            1,
            "{name}: C_DigestInit + query + C_Digest"
        );
        assert!(matches!(
            last_is_begin(&server, mechanism),
            OpCall::Digest { .. }
        ));
    }

    let before = frames();
    let mut random = [0u8; 32];
    // SAFETY: valid pointers and lengths.
    let rv = unsafe { f.C_GenerateRandom.unwrap()(session, random.as_mut_ptr(), 32) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(frames() - before, 1, "C_GenerateRandom");
}

#[test]
fn a_too_small_buffer_costs_no_frame_and_no_second_operation() {
    let library = Library::lock();
    let (server, session) = with_listed_session(&library);
    let f = functions();
    let mut raw = Mech::plain(CKM_ECDSA).raw();
    let mut data = [9u8; 32];
    let mut small = [0u8; 4];
    let mut len: CK_ULONG = 4;
    let before = frames();
    // SAFETY: valid pointers and lengths.
    unsafe {
        assert_eq!(f.C_SignInit.unwrap()(session, &mut raw, KEY), CKR_OK);
        let sign = f.C_Sign.unwrap();
        let rv = sign(session, data.as_mut_ptr(), 32, small.as_mut_ptr(), &mut len);
        assert_eq!((rv, len), (CKR_BUFFER_TOO_SMALL, 32));
        let mut out = [0u8; 32];
        assert_eq!(
            sign(session, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut len),
            CKR_OK
        );
        assert_eq!(out, data, "the demo server echoes");
    }
    assert_eq!(frames() - before, 1);
    let signs = server
        .requests()
        .iter()
        .filter(|r| matches!(r, Request::Begin { .. } | Request::Sign { .. }))
        .count();
    assert_eq!(signs, 1, "the signature was computed once");
}

#[test]
fn deferred_inits_keep_the_rules_of_the_standard() {
    let library = Library::lock();
    let (server, session) = with_listed_session(&library);
    let f = functions();
    let mut raw = Mech::plain(CKM_SHA256_HMAC).raw();
    let mut data = *b"abc";
    let mut out = [0u8; 64];
    let mut len: CK_ULONG = 64;
    // SAFETY: valid pointers and lengths throughout.
    unsafe {
        // A second init of a deferred operation: CKR_OPERATION_ACTIVE, no frame.
        assert_eq!(f.C_SignInit.unwrap()(session, &mut raw, KEY), CKR_OK);
        assert_eq!(
            f.C_SignInit.unwrap()(session, &mut raw, KEY),
            CKR_OPERATION_ACTIVE
        );
        assert!(server.requests().is_empty());
        // Multi-part: the init goes alone before the first update.
        assert_eq!(
            f.C_SignUpdate.unwrap()(session, data.as_mut_ptr(), 3),
            CKR_OK
        );
        assert_eq!(
            f.C_SignFinal.unwrap()(session, out.as_mut_ptr(), &mut len),
            CKR_OK
        );
        let sent = server.requests();
        assert!(matches!(sent[0], Request::SignInit { .. }), "{sent:?}");
        assert!(matches!(sent[1], Request::SignUpdate { .. }));
        assert!(matches!(sent[2], Request::SignFinal { .. }));
        // C_Sign without an init: the server's verdict (a plain C_Sign).
        len = 64;
        f.C_Sign.unwrap()(session, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut len);
        assert!(matches!(
            server.requests().last(),
            Some(Request::Sign { .. })
        ));
        // Cancelling drops a deferred init.
        assert_eq!(f.C_EncryptInit.unwrap()(session, &mut raw, KEY), CKR_OK);
        let cancel = functions_3_0().C_SessionCancel.unwrap();
        assert_eq!(cancel(session, CKF_ENCRYPT), CKR_OK);
        assert_eq!(f.C_EncryptInit.unwrap()(session, &mut raw, KEY), CKR_OK);
    }
}

#[test]
fn mechanisms_the_token_does_not_list_are_refused_at_init() {
    let library = Library::lock();
    let (server, session) = with_session(&library);
    let f = functions();
    let mut md5 = Mech::plain(CKM_MD5).raw();
    let mut sha = Mech::plain(CKM_SHA256).raw();
    // SAFETY: valid pointers.
    unsafe {
        // The first init in the slot fetches the token's list, once.
        assert_eq!(
            f.C_DigestInit.unwrap()(session, &mut md5),
            CKR_MECHANISM_INVALID
        );
        assert!(matches!(
            server.requests()[..],
            [Request::GetMechanismList { .. }]
        ));
        assert_eq!(f.C_DigestInit.unwrap()(session, &mut sha), CKR_OK);
        assert_eq!(server.requests().len(), 1, "the list is known now");
        // A mechanism missing from the list asks again (the list may have
        // grown), and is refused.
        let mut hmac_md5 = Mech::plain(CKM_MD5_HMAC).raw();
        assert_eq!(
            f.C_SignInit.unwrap()(session, &mut hmac_md5, KEY),
            CKR_MECHANISM_INVALID
        );
        assert_eq!(server.requests().len(), 2);
    }
}
