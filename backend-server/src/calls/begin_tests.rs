//! `Request::Begin` (an init the module deferred, carried with its call)
//! through the dispatcher, in-process with the soft HSM: each family gives
//! what the init and the call would have given in two frames; a failed
//! init runs nothing; the audit log holds one record per key use, with its
//! mechanism and key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::sync::Arc;

use cryptoki_sys::*;
use hsmlink_crypto::digest::{self, DigestAlg};
use hsmlink_protocol::vendor::*;
use hsmlink_protocol::{
    AttributeValue, Mechanism, MechanismParams, MechanismType, ObjectHandle, OpCall, Output,
    OutputSpec, Request, Response, ResponseBody, Rv, Secret, SessionHandle,
};

use crate::audit::reader::{self, Filter};
use crate::audit::{Audit, AuditSettings, Record};
use crate::dispatch::ClientContext;
use crate::metering::Metering;
use crate::testing::*;

use AttributeValue::{Bool, Bytes, Ulong};

const ALL: OutputSpec = OutputSpec::Capacity(u64::MAX);
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

struct T {
    f: Fixture,
    c: ClientContext,
    h: SessionHandle,
}

fn setup() -> T {
    let mut f = Fixture::new();
    let settings = AuditSettings {
        db_path: f.db(),
        key_file: f.dir.path().join("audit.key"),
        ..AuditSettings::new(&f.db())
    };
    let metering = Arc::new(Metering::new(Some(f.db())));
    f.state
        .set_audit(Arc::new(Audit::start(settings, metering).unwrap()));
    let c = ctx("demo", 1);
    ready_token(&f.state, &c, 0);
    let h = user_session(&f.state, &c, 0);
    T { f, c, h }
}

fn m(mechanism: u64, params: MechanismParams) -> Mechanism {
    Mechanism::new(mechanism, params)
}

fn sec(b: &[u8]) -> Secret {
    Secret::from_slice(b)
}

/// The output of a `Begin` whose init and call succeeded.
fn output(r: Response) -> Vec<u8> {
    match r {
        Response {
            rv: Rv::OK,
            body: ResponseBody::Begun(Some(Output::Data(d))),
        } => d.as_bytes().to_vec(),
        other => panic!("{other:?}"),
    }
}

impl T {
    fn begin(&self, mechanism: Mechanism, key: Option<ObjectHandle>, call: OpCall) -> Response {
        self.f.ask(
            &self.c,
            Request::Begin {
                session: self.h,
                mechanism,
                key,
                call,
            },
        )
    }

    fn sign(&self, mech: &Mechanism, key: ObjectHandle, d: &[u8]) -> Vec<u8> {
        let call = OpCall::Sign {
            data: sec(d),
            out: ALL,
        };
        output(self.begin(mech.clone(), Some(key), call))
    }

    fn verify(&self, mech: &Mechanism, key: ObjectHandle, d: &[u8], sig: &[u8]) -> Response {
        let call = OpCall::Verify {
            data: sec(d),
            signature: sig.to_vec(),
        };
        self.begin(mech.clone(), Some(key), call)
    }

    fn crypt(&self, mech: &Mechanism, key: ObjectHandle, encrypt: bool, d: &[u8]) -> Vec<u8> {
        let data = sec(d);
        let call = if encrypt {
            OpCall::Encrypt { data, out: ALL }
        } else {
            OpCall::Decrypt { data, out: ALL }
        };
        output(self.begin(mech.clone(), Some(key), call))
    }

    fn pair(
        &self,
        mech: u64,
        public: Vec<hsmlink_protocol::Attribute>,
    ) -> (ObjectHandle, ObjectHandle) {
        let r = self.f.ask(
            &self.c,
            Request::GenerateKeyPair {
                session: self.h,
                mechanism: m(mech, MechanismParams::None),
                public_template: public,
                private_template: vec![a(CKA_SIGN, Bool(true)), a(CKA_DECRYPT, Bool(true))],
            },
        );
        match r.body {
            ResponseBody::KeyPair { public, private } => (public, private),
            _ => panic!("{r:?}"),
        }
    }

    fn records(&self) -> Vec<Record> {
        self.f.state.audit().unwrap().sync().unwrap();
        reader::query(&self.f.db(), &Filter::default(), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.record)
            .collect()
    }
}

#[test]
fn signatures_through_begin() {
    let t = setup();
    let msg = b"one round trip";
    let d256 = digest::digest(DigestAlg::Sha256, msg);

    // ECDSA P-256: the message, and the module's digest.
    let (public, private) = t.pair(
        CKM_EC_KEY_PAIR_GEN,
        vec![a(CKA_EC_PARAMS, Bytes(P256_OID.to_vec()))],
    );
    let ecdsa = m(CKM_ECDSA_SHA256, MechanismParams::None);
    let sig = t.sign(&ecdsa, private, msg);
    assert_eq!(sig.len(), 64);
    assert_eq!(
        t.verify(&ecdsa, public, msg, &sig),
        Response::ok(ResponseBody::Begun(None))
    );
    let call = OpCall::SignDigest {
        digest: sec(&d256),
        out: ALL,
    };
    let sig = output(t.begin(ecdsa.clone(), Some(private), call));
    let call = OpCall::VerifyDigest {
        digest: sec(&d256),
        signature: sig.clone(),
    };
    assert_eq!(
        t.begin(ecdsa.clone(), Some(public), call),
        Response::ok(ResponseBody::Begun(None))
    );
    let mut bad = sig;
    bad[0] ^= 1;
    assert_eq!(
        t.verify(&ecdsa, public, msg, &bad),
        Response {
            rv: Rv(CKR_SIGNATURE_INVALID),
            body: ResponseBody::Begun(None)
        }
    );
    // The verification is over, the failed one too.
    let again = Request::Verify {
        session: t.h,
        data: sec(msg),
        signature: bad,
    };
    assert_eq!(
        t.f.ask(&t.c, again),
        Response::error(CKR_OPERATION_NOT_INITIALIZED)
    );

    // RSA-2048, PKCS #1 v1.5 and PSS.
    let (public, private) = t.pair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        vec![
            a(CKA_MODULUS_BITS, Ulong(2048)),
            a(CKA_PUBLIC_EXPONENT, Bytes(vec![1, 0, 1])),
        ],
    );
    let pss = MechanismParams::RsaPss {
        hash_alg: MechanismType(CKM_SHA256),
        mgf: CKG_MGF1_SHA256,
        salt_len: 32,
    };
    for mech in [
        m(CKM_SHA256_RSA_PKCS, MechanismParams::None),
        m(CKM_SHA256_RSA_PKCS_PSS, pss),
    ] {
        let sig = t.sign(&mech, private, msg);
        assert_eq!(sig.len(), 256);
        assert_eq!(
            t.verify(&mech, public, msg, &sig),
            Response::ok(ResponseBody::Begun(None))
        );
    }

    // SM2 with SM3: the whole message (the module has no Z yet).
    let (public, private) = t.pair(CKM_HSMLINK_SM2_KEY_PAIR_GEN, vec![]);
    let sm2 = m(CKM_HSMLINK_SM2_SM3, MechanismParams::None);
    let sig = t.sign(&sm2, private, msg);
    assert_eq!(sig.len(), 64);
    assert_eq!(
        t.verify(&sm2, public, msg, &sig),
        Response::ok(ResponseBody::Begun(None))
    );
}

#[test]
fn ciphers_and_digests_through_begin() {
    let t = setup();
    let key = create(
        &t.f.state,
        &t.c,
        t.h,
        vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            a(CKA_VALUE, Bytes(b"0123456789abcdef".to_vec())),
            a(CKA_ENCRYPT, Bool(true)),
            a(CKA_DECRYPT, Bool(true)),
        ],
    )
    .unwrap();
    let plain = b"twenty-one bytes long";
    let gcm = m(
        CKM_AES_GCM,
        MechanismParams::AesGcm {
            iv: vec![7; 12],
            iv_bits: 96,
            aad: b"header".to_vec(),
            tag_bits: 128,
        },
    );
    let cbc_pad = m(CKM_AES_CBC_PAD, MechanismParams::Iv(vec![3; 16]));
    for (mech, len) in [(gcm, plain.len() + 16), (cbc_pad, 32)] {
        let cipher = t.crypt(&mech, key, true, plain);
        assert_eq!(cipher.len(), len);
        assert_eq!(t.crypt(&mech, key, false, &cipher), plain);
    }
    for (mech, alg) in [
        (CKM_SHA256, DigestAlg::Sha256),
        (CKM_HSMLINK_SM3, DigestAlg::Sm3),
    ] {
        let call = OpCall::Digest {
            data: sec(plain),
            out: ALL,
        };
        let got = output(t.begin(m(mech, MechanismParams::None), None, call));
        assert_eq!(got, digest::digest(alg, plain));
    }
}

#[test]
fn a_failed_init_runs_nothing() {
    let t = setup();
    let ecdsa = m(CKM_ECDSA, MechanismParams::None);
    let call = || OpCall::Sign {
        data: sec(b"x"),
        out: ALL,
    };
    // The init's error, with an empty body: the module knows no operation
    // started.
    assert_eq!(
        t.begin(ecdsa.clone(), Some(ObjectHandle(0xdead)), call()),
        Response::error(CKR_KEY_HANDLE_INVALID)
    );
    let sign = Request::Sign {
        session: t.h,
        data: sec(b"x"),
        out: ALL,
    };
    assert_eq!(
        t.f.ask(&t.c, sign.clone()),
        Response::error(CKR_OPERATION_NOT_INITIALIZED)
    );
    // A key where none belongs, or none where one does.
    let digest = OpCall::Digest {
        data: sec(b"x"),
        out: ALL,
    };
    let sha = m(CKM_SHA256, MechanismParams::None);
    assert_eq!(
        t.begin(sha, Some(ObjectHandle(1)), digest),
        Response::error(CKR_ARGUMENTS_BAD)
    );
    assert_eq!(
        t.begin(ecdsa.clone(), None, call()),
        Response::error(CKR_ARGUMENTS_BAD)
    );
    // An operation already active: CKR_OPERATION_ACTIVE, and it goes on.
    let (_, private) = t.pair(
        CKM_EC_KEY_PAIR_GEN,
        vec![a(CKA_EC_PARAMS, Bytes(P256_OID.to_vec()))],
    );
    let init = Request::SignInit {
        session: t.h,
        mechanism: ecdsa.clone(),
        key: private,
    };
    assert_eq!(t.f.ask(&t.c, init), ok());
    assert_eq!(
        t.begin(ecdsa, Some(private), call()),
        Response::error(CKR_OPERATION_ACTIVE)
    );
    let digest = digest::digest(DigestAlg::Sha256, b"x");
    let sign = Request::Sign {
        session: t.h,
        data: sec(&digest),
        out: ALL,
    };
    assert_eq!(t.f.ask(&t.c, sign).rv, Rv::OK);
}

#[test]
fn one_audit_record_per_key_use() {
    let t = setup();
    let (_, private) = t.pair(
        CKM_EC_KEY_PAIR_GEN,
        vec![a(CKA_EC_PARAMS, Bytes(P256_OID.to_vec()))],
    );
    let before = t.records().len();
    let ecdsa = m(CKM_ECDSA_SHA256, MechanismParams::None);
    t.sign(&ecdsa, private, b"audited once");
    let call = OpCall::Sign {
        data: sec(b"refused"),
        out: ALL,
    };
    t.begin(ecdsa, Some(ObjectHandle(0xdead)), call);
    let records = t.records();
    let new: Vec<_> = records[before..]
        .iter()
        .map(|r| (r.op.as_str(), r.mechanism, r.key, r.rv))
        .collect();
    assert_eq!(
        new,
        [
            ("C_Sign", Some(CKM_ECDSA_SHA256), Some(private.0), CKR_OK),
            (
                "C_SignInit",
                Some(CKM_ECDSA_SHA256),
                Some(0xdead),
                CKR_KEY_HANDLE_INVALID
            ),
        ]
    );
}
