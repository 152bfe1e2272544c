//! The cryptographic entry points through the function lists, against the
//! fake server: argument checks made before anything is sent, section 5.2
//! outputs, hash-then-sign without frames for updates, every call reachable.

use std::ptr::null_mut;

use cryptoki_sys::*;
use hsmlink_protocol::{MechanismParams, OpCall, OutputSpec, Request};
use sha2::Digest;

use super::{Library, functions, functions_3_0, w, with_listed_session, with_session};
use crate::test_support::{
    DEMO_FINAL, DEMO_KEY, DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY, DEMO_SESSION, DEMO_WRAPPED,
};

fn mechanism(mechanism: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

fn len(bytes: &[u8]) -> CK_ULONG {
    CK_ULONG::try_from(bytes.len()).unwrap()
}

#[test]
fn encrypt_outputs_by_section_5_2() {
    let library = Library::lock();
    let (server, session) = with_listed_session(&library);
    let f = functions();
    let mut iv = [3u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    let mut plain = *b"sixteen byte msg and more";
    let plain_len = len(&plain);
    // SAFETY: valid pointers and lengths throughout.
    unsafe {
        assert_eq!(f.C_EncryptInit.unwrap()(session, &mut cbc, 0x20), CKR_OK);
        assert!(server.requests().is_empty(), "the init is deferred");
        // Size query.
        let mut out_len: CK_ULONG = 0;
        let rv = f.C_Encrypt.unwrap()(
            session,
            plain.as_mut_ptr(),
            plain_len,
            null_mut(),
            &mut out_len,
        );
        assert_eq!((rv, out_len), (CKR_OK, plain_len));
        // Too small: the length is written, the buffer untouched.
        let mut out = [0xEEu8; 64];
        let mut short: CK_ULONG = 4;
        let rv = f.C_Encrypt.unwrap()(
            session,
            plain.as_mut_ptr(),
            plain_len,
            out.as_mut_ptr(),
            &mut short,
        );
        assert_eq!((rv, short), (CKR_BUFFER_TOO_SMALL, plain_len));
        assert!(out.iter().all(|&b| b == 0xEE));
        // Enough room.
        let mut room: CK_ULONG = 64;
        let rv = f.C_Encrypt.unwrap()(
            session,
            plain.as_mut_ptr(),
            plain_len,
            out.as_mut_ptr(),
            &mut room,
        );
        assert_eq!((rv, room), (CKR_OK, plain_len));
        assert_eq!(&out[..plain.len()], &plain);
        // One frame for init, size query, too small and the data: the init
        // went with the size query, whose output was kept in the module.
        let sent = server.requests();
        assert_eq!(sent.len(), 1, "one frame per operation");
        assert!(matches!(
            &sent[0],
            Request::Begin {
                mechanism,
                key: Some(_),
                call: OpCall::Encrypt {
                    out: OutputSpec::Capacity(u64::MAX),
                    ..
                },
                ..
            } if mechanism.params == MechanismParams::Iv(vec![3; 16])
        ));

        // Argument errors are answered before anything is sent.
        let rv = f.C_Encrypt.unwrap()(
            session,
            plain.as_mut_ptr(),
            plain_len,
            out.as_mut_ptr(),
            null_mut(),
        );
        assert_eq!(rv, CKR_ARGUMENTS_BAD);
        let rv = f.C_Encrypt.unwrap()(session, null_mut(), 5, out.as_mut_ptr(), &mut room);
        assert_eq!(rv, CKR_ARGUMENTS_BAD);
        assert_eq!(
            f.C_EncryptInit.unwrap()(session, null_mut(), 0x20),
            CKR_ARGUMENTS_BAD
        );
        let mut bad = CK_MECHANISM {
            ulParameterLen: 15,
            ..cbc
        };
        assert_eq!(
            f.C_EncryptInit.unwrap()(session, &mut bad, 0x20),
            CKR_MECHANISM_PARAM_INVALID
        );
        let mut unknown = CK_MECHANISM {
            mechanism: CKM_DES_CBC, // single DES: not served
            ..cbc
        };
        assert_eq!(
            f.C_EncryptInit.unwrap()(session, &mut unknown, 0x20),
            CKR_MECHANISM_INVALID
        );
        assert_eq!(server.requests().len(), 1);

        // A server error passes through.
        let mut fail = *b"fail";
        let rv = f.C_Encrypt.unwrap()(session, fail.as_mut_ptr(), 4, out.as_mut_ptr(), &mut room);
        assert_eq!(rv, CKR_DATA_LEN_RANGE);
    }
}

#[test]
fn sign_update_of_sha256_rsa_pkcs_sends_no_frame() {
    let library = Library::lock();
    let (server, session) = with_session(&library);
    let f = functions();
    let mut m = mechanism(CKM_SHA256_RSA_PKCS);
    let mut part1 = *b"first part, ";
    let mut part2 = *b"second part";
    // SAFETY: valid pointers and lengths throughout.
    unsafe {
        assert_eq!(f.C_SignInit.unwrap()(session, &mut m, 0x20), CKR_OK);
        let before = server.requests().len();
        assert_eq!(
            f.C_SignUpdate.unwrap()(session, part1.as_mut_ptr(), len(&part1)),
            CKR_OK
        );
        assert_eq!(
            f.C_SignUpdate.unwrap()(session, part2.as_mut_ptr(), len(&part2)),
            CKR_OK
        );
        assert_eq!(f.C_SignUpdate.unwrap()(session, null_mut(), 0), CKR_OK);
        assert_eq!(server.requests().len(), before, "updates sent no frame");

        let mut sig_len: CK_ULONG = 0;
        assert_eq!(
            f.C_SignFinal.unwrap()(session, null_mut(), &mut sig_len),
            CKR_OK
        );
        assert_eq!(sig_len, 32);
        let mut sig = [0u8; 32];
        assert_eq!(
            f.C_SignFinal.unwrap()(session, sig.as_mut_ptr(), &mut sig_len),
            CKR_OK
        );
        assert_eq!(
            sig.to_vec(),
            sha2::Sha256::digest(b"first part, second part").to_vec()
        );
        assert_eq!(
            server.requests().len(),
            before + 1,
            "init and digest in one"
        );

        // Verification of the same: VerifyUpdate sends nothing either.
        assert_eq!(f.C_VerifyInit.unwrap()(session, &mut m, 0x20), CKR_OK);
        let before = server.requests().len();
        assert_eq!(
            f.C_VerifyUpdate.unwrap()(session, part1.as_mut_ptr(), len(&part1)),
            CKR_OK
        );
        assert_eq!(
            f.C_VerifyUpdate.unwrap()(session, part2.as_mut_ptr(), len(&part2)),
            CKR_OK
        );
        assert_eq!(server.requests().len(), before);
        assert_eq!(
            f.C_VerifyFinal.unwrap()(session, sig.as_mut_ptr(), 32),
            CKR_OK
        );
        assert_eq!(server.requests().len(), before + 1);
    }
}

#[test]
fn every_crypto_entry_point_answers() {
    let library = Library::lock();
    let (server, session) = with_session(&library);
    let f = functions();
    let key: CK_OBJECT_HANDLE = 0x20;
    let mut ecb = mechanism(CKM_AES_ECB);
    let mut hmac = mechanism(CKM_SHA256_HMAC);
    let mut data = *b"data";
    let mut out = [0u8; 64];
    let mut out_len: CK_ULONG;
    macro_rules! output_call {
        ($f:ident) => {{
            out_len = 64;
            let rv = f.$f.unwrap()(
                session,
                data.as_mut_ptr(),
                4,
                out.as_mut_ptr(),
                &mut out_len,
            );
            assert_eq!((rv, out_len), (CKR_OK, 4), stringify!($f));
            assert_eq!(&out[..4], b"data", stringify!($f));
        }};
    }
    macro_rules! final_call {
        ($f:ident) => {{
            out_len = 64;
            let rv = f.$f.unwrap()(session, out.as_mut_ptr(), &mut out_len);
            assert_eq!(rv, CKR_OK, stringify!($f));
            assert_eq!(&out[..usize::try_from(out_len).unwrap()], DEMO_FINAL);
        }};
    }
    // SAFETY: valid pointers and lengths throughout.
    unsafe {
        assert_eq!(f.C_EncryptInit.unwrap()(session, &mut ecb, key), CKR_OK);
        output_call!(C_Encrypt);
        output_call!(C_EncryptUpdate);
        final_call!(C_EncryptFinal);
        assert_eq!(f.C_DecryptInit.unwrap()(session, &mut ecb, key), CKR_OK);
        output_call!(C_Decrypt);
        output_call!(C_DecryptUpdate);
        final_call!(C_DecryptFinal);

        let mut sha = mechanism(CKM_SHA256);
        assert_eq!(f.C_DigestInit.unwrap()(session, &mut sha), CKR_OK);
        assert_eq!(
            f.C_DigestInit.unwrap()(session, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        output_call!(C_Digest);
        assert_eq!(
            f.C_DigestUpdate.unwrap()(session, data.as_mut_ptr(), 4),
            CKR_OK
        );
        assert_eq!(f.C_DigestKey.unwrap()(session, key), CKR_OK);
        final_call!(C_DigestFinal);

        assert_eq!(f.C_SignInit.unwrap()(session, &mut hmac, key), CKR_OK);
        output_call!(C_Sign);
        assert_eq!(
            f.C_SignUpdate.unwrap()(session, data.as_mut_ptr(), 4),
            CKR_OK
        );
        final_call!(C_SignFinal);
        let mut x509 = mechanism(CKM_RSA_X_509);
        assert_eq!(
            f.C_SignRecoverInit.unwrap()(session, &mut x509, key),
            CKR_OK
        );
        output_call!(C_SignRecover);

        assert_eq!(f.C_VerifyInit.unwrap()(session, &mut hmac, key), CKR_OK);
        let mut same = data;
        assert_eq!(
            f.C_Verify.unwrap()(session, data.as_mut_ptr(), 4, same.as_mut_ptr(), 4),
            CKR_OK
        );
        let mut other = *b"nope";
        assert_eq!(
            f.C_Verify.unwrap()(session, data.as_mut_ptr(), 4, other.as_mut_ptr(), 4),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            f.C_VerifyUpdate.unwrap()(session, data.as_mut_ptr(), 4),
            CKR_OK
        );
        let mut fin = *b"final";
        assert_eq!(
            f.C_VerifyFinal.unwrap()(session, fin.as_mut_ptr(), 5),
            CKR_OK
        );
        assert_eq!(
            f.C_VerifyRecoverInit.unwrap()(session, &mut x509, key),
            CKR_OK
        );
        output_call!(C_VerifyRecover);

        output_call!(C_DigestEncryptUpdate);
        output_call!(C_DecryptDigestUpdate);
        output_call!(C_SignEncryptUpdate);
        output_call!(C_DecryptVerifyUpdate);

        // Key management.
        let mut aes_gen = mechanism(CKM_AES_KEY_GEN);
        let mut handle: CK_OBJECT_HANDLE = 0;
        assert_eq!(
            f.C_GenerateKey.unwrap()(session, &mut aes_gen, null_mut(), 0, &mut handle),
            CKR_OK
        );
        assert_eq!(w(handle), DEMO_KEY);
        assert_eq!(
            f.C_GenerateKey.unwrap()(session, &mut aes_gen, null_mut(), 0, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut ec_gen = mechanism(CKM_EC_KEY_PAIR_GEN);
        let (mut public, mut private): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        assert_eq!(
            f.C_GenerateKeyPair.unwrap()(
                session,
                &mut ec_gen,
                null_mut(),
                0,
                null_mut(),
                0,
                &mut public,
                &mut private
            ),
            CKR_OK
        );
        assert_eq!((w(public), w(private)), (DEMO_PUBLIC_KEY, DEMO_PRIVATE_KEY));
        assert_eq!(
            f.C_GenerateKeyPair.unwrap()(
                session,
                &mut ec_gen,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                &mut private
            ),
            CKR_ARGUMENTS_BAD
        );
        let mut wrap = mechanism(CKM_AES_KEY_WRAP);
        out_len = 0;
        assert_eq!(
            f.C_WrapKey.unwrap()(session, &mut wrap, key, key, null_mut(), &mut out_len),
            CKR_OK
        );
        assert_eq!(out_len, len(DEMO_WRAPPED));
        assert_eq!(
            f.C_WrapKey.unwrap()(session, &mut wrap, key, key, out.as_mut_ptr(), &mut out_len),
            CKR_OK
        );
        assert_eq!(&out[..DEMO_WRAPPED.len()], DEMO_WRAPPED);
        assert_eq!(
            f.C_UnwrapKey.unwrap()(
                session,
                &mut wrap,
                key,
                out.as_mut_ptr(),
                out_len,
                null_mut(),
                0,
                &mut handle
            ),
            CKR_OK
        );
        assert_eq!(w(handle), DEMO_KEY + 3);
        let mut public_point = [4u8; 65];
        let mut ecdh_params = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: null_mut(),
            ulPublicDataLen: 65,
            pPublicData: public_point.as_mut_ptr(),
        };
        let mut ecdh = CK_MECHANISM {
            mechanism: CKM_ECDH1_DERIVE,
            pParameter: (&raw mut ecdh_params).cast(),
            ulParameterLen: CK_ULONG::try_from(size_of::<CK_ECDH1_DERIVE_PARAMS>()).unwrap(),
        };
        assert_eq!(
            f.C_DeriveKey.unwrap()(session, &mut ecdh, key, null_mut(), 0, &mut handle),
            CKR_OK
        );
        assert!(matches!(
            server.requests().last(),
            Some(Request::DeriveKey { mechanism, .. })
                if matches!(&mechanism.params, MechanismParams::Ecdh1Derive { public_data, .. } if public_data == &[4u8; 65])
        ));

        // Random numbers.
        let mut seed = *b"seed";
        assert_eq!(
            f.C_SeedRandom.unwrap()(session, seed.as_mut_ptr(), 4),
            CKR_OK
        );
        let mut random = [0u8; 100];
        assert_eq!(
            f.C_GenerateRandom.unwrap()(session, random.as_mut_ptr(), 100),
            CKR_OK
        );
        assert!(random.iter().all(|&b| b == 0xA5));
        assert_eq!(f.C_GenerateRandom.unwrap()(session, null_mut(), 0), CKR_OK);
        assert_eq!(
            f.C_GenerateRandom.unwrap()(session, null_mut(), 1),
            CKR_ARGUMENTS_BAD
        );

        // Another session: the server's verdict passes through, from the
        // call that carries the deferred init.
        let other_session = session + 1;
        assert_eq!(
            f.C_EncryptInit.unwrap()(other_session, &mut ecb, key),
            CKR_OK
        );
        let mut room: CK_ULONG = 64;
        let mut out = [0u8; 64];
        assert_eq!(
            f.C_Encrypt.unwrap()(
                other_session,
                data.as_mut_ptr(),
                4,
                out.as_mut_ptr(),
                &mut room
            ),
            CKR_SESSION_HANDLE_INVALID
        );

        // The message-based functions of 3.0 are not served yet.
        let f3 = functions_3_0();
        assert_eq!(
            f3.C_MessageEncryptInit.unwrap()(session, &mut ecb, key),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(
            f3.C_MessageSignFinal.unwrap()(session),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        // Hash-then-sign through the 3.0 list, and a session closed under it.
        let mut ecdsa = mechanism(CKM_ECDSA_SHA256);
        assert_eq!(f3.C_SignInit.unwrap()(session, &mut ecdsa, key), CKR_OK);
        assert_eq!(f3.C_CloseSession.unwrap()(session), CKR_OK);
        let before = server.requests().len();
        // No local operation left: the update goes to the server.
        assert_eq!(
            f3.C_SignUpdate.unwrap()(session, data.as_mut_ptr(), 4),
            CKR_OK
        );
        assert_eq!(server.requests().len(), before + 1);
    }
    assert_eq!(w(session), DEMO_SESSION);
}
