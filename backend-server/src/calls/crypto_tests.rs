//! The cryptographic functions through the dispatcher, in-process: a round
//! trip per family, the operation lifecycle case by case, key checks,
//! generated keys' attributes, hash-then-sign with the module's digest.

use cryptoki_sys::*;
use hsmlink_crypto::cipher::{self, BlockAlg, Mode};
use hsmlink_crypto::digest::{self, DigestAlg};
use hsmlink_crypto::{ec, sm2};
use hsmlink_protocol::vendor::*;
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeValue, Mechanism, MechanismParams, MechanismType,
    ObjectHandle, Output, OutputSpec, Request, Response, ResponseBody, Rv, Secret, SessionHandle,
};

use crate::dispatch::ClientContext;
use crate::testing::*;

use AttributeValue::{Bool, Bytes, Ulong};
use OutputSpec::{Capacity, LengthQuery};

struct T {
    f: Fixture,
    c: ClientContext,
    h: SessionHandle,
}

fn setup() -> T {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    ready_token(&f.state, &c, 0);
    let h = user_session(&f.state, &c, 0);
    T { f, c, h }
}

/// A token on a partition with `secure_templates = "relaxed"`: the soft
/// HSM's own wrapping rules, with wrapping keys made from known values
/// (which a strict partition refuses; see `secure_templates.rs`).
fn setup_relaxed() -> T {
    let f = Fixture::new();
    let c = ctx("acme", 1);
    ready_token(&f.state, &c, 0);
    let h = user_session(&f.state, &c, 0);
    T { f, c, h }
}

fn m(mechanism: u64) -> Mechanism {
    Mechanism::new(mechanism, MechanismParams::None)
}

fn mp(mechanism: u64, params: MechanismParams) -> Mechanism {
    Mechanism::new(mechanism, params)
}

fn sec(b: &[u8]) -> Secret {
    Secret::from_slice(b)
}

fn length(n: u64) -> Response {
    Response::ok(ResponseBody::Output(Output::Length(n)))
}

fn too_small(n: u64) -> Response {
    Response {
        rv: Rv(CKR_BUFFER_TOO_SMALL),
        body: ResponseBody::Output(Output::Length(n)),
    }
}

fn data(r: Response) -> Vec<u8> {
    match r {
        Response {
            rv: Rv(CKR_OK),
            body: ResponseBody::Output(Output::Data(d)),
        } => d.as_bytes().to_vec(),
        other => panic!("{other:?}"),
    }
}

fn object(r: Response) -> ObjectHandle {
    match r.body {
        ResponseBody::Object(o) if r.rv.0 == CKR_OK => o,
        _ => panic!("{r:?}"),
    }
}

fn pair(r: Response) -> (ObjectHandle, ObjectHandle) {
    match r.body {
        ResponseBody::KeyPair { public, private } if r.rv.0 == CKR_OK => (public, private),
        _ => panic!("{r:?}"),
    }
}

const BIG: OutputSpec = Capacity(100_000);

impl T {
    fn ask(&self, r: Request) -> Response {
        self.f.ask(&self.c, r)
    }

    fn secret_key(&self, key_type: u64, value: &[u8], extra: Vec<Attribute>) -> ObjectHandle {
        let mut t = vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(key_type)),
            a(CKA_VALUE, Bytes(value.to_vec())),
        ];
        t.extend(extra);
        create(&self.f.state, &self.c, self.h, t).unwrap()
    }

    fn attr(&self, o: ObjectHandle, t: u64) -> AttributeResult {
        get(&self.f.state, &self.c, self.h, o, &[t])
            .unwrap()
            .remove(0)
    }

    fn value(&self, o: ObjectHandle, t: u64) -> AttributeValue {
        match self.attr(o, t) {
            AttributeResult::Value(v) => v,
            other => panic!("{t:#x}: {other:?}"),
        }
    }

    fn encrypt_init(&self, mech: Mechanism, key: ObjectHandle) -> Response {
        self.ask(Request::EncryptInit {
            session: self.h,
            mechanism: mech,
            key,
        })
    }

    fn encrypt(&self, d: &[u8], out: OutputSpec) -> Response {
        self.ask(Request::Encrypt {
            session: self.h,
            data: sec(d),
            out,
        })
    }

    fn decrypt_init(&self, mech: Mechanism, key: ObjectHandle) -> Response {
        self.ask(Request::DecryptInit {
            session: self.h,
            mechanism: mech,
            key,
        })
    }

    fn decrypt(&self, d: &[u8], out: OutputSpec) -> Response {
        self.ask(Request::Decrypt {
            session: self.h,
            data: sec(d),
            out,
        })
    }

    fn sign_init(&self, mech: Mechanism, key: ObjectHandle) -> Response {
        self.ask(Request::SignInit {
            session: self.h,
            mechanism: mech,
            key,
        })
    }

    fn sign(&self, d: &[u8], out: OutputSpec) -> Response {
        self.ask(Request::Sign {
            session: self.h,
            data: sec(d),
            out,
        })
    }

    fn verify_init(&self, mech: Mechanism, key: ObjectHandle) -> Response {
        self.ask(Request::VerifyInit {
            session: self.h,
            mechanism: mech,
            key,
        })
    }

    fn verify(&self, d: &[u8], sig: &[u8]) -> Response {
        self.ask(Request::Verify {
            session: self.h,
            data: sec(d),
            signature: sig.to_vec(),
        })
    }

    fn one_sign(&self, mech: Mechanism, key: ObjectHandle, d: &[u8]) -> Vec<u8> {
        assert_eq!(self.sign_init(mech, key), ok());
        data(self.sign(d, BIG))
    }

    fn one_verify(&self, mech: Mechanism, key: ObjectHandle, d: &[u8], sig: &[u8]) -> Response {
        assert_eq!(self.verify_init(mech, key), ok());
        self.verify(d, sig)
    }

    fn generate(&self, mech: u64, template: Vec<Attribute>) -> Response {
        self.ask(Request::GenerateKey {
            session: self.h,
            mechanism: m(mech),
            template,
        })
    }

    fn generate_pair(
        &self,
        mech: u64,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    ) -> Response {
        self.ask(Request::GenerateKeyPair {
            session: self.h,
            mechanism: m(mech),
            public_template: public,
            private_template: private,
        })
    }

    fn ec_pair(&self, params: &[u8], private: Vec<Attribute>) -> (ObjectHandle, ObjectHandle) {
        pair(self.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![a(CKA_EC_PARAMS, Bytes(params.to_vec()))],
            private,
        ))
    }

    fn point(&self, public: ObjectHandle, len: usize) -> Vec<u8> {
        let Bytes(der) = &self.value(public, CKA_EC_POINT) else {
            panic!()
        };
        crate::soft::operations::asymmetric::decode_point(der, len).unwrap()
    }
}

const KEY16: [u8; 16] = *b"0123456789abcdef";
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

// ---- digests and the lifecycle ----

#[test]
fn digest_single_and_multi_part_with_the_lifecycle() {
    let t = setup();
    let h = t.h;
    let init = || {
        t.ask(Request::DigestInit {
            session: h,
            mechanism: m(CKM_SHA256),
        })
    };
    let digest = |out| {
        t.ask(Request::Digest {
            session: h,
            data: sec(b"abc"),
            out,
        })
    };
    let want = digest::digest(DigestAlg::Sha256, b"abc");
    // Not initialised.
    assert_eq!(digest(BIG), err(CKR_OPERATION_NOT_INITIALIZED));
    assert_eq!(init(), ok());
    assert_eq!(init(), err(CKR_OPERATION_ACTIVE));
    // A length query keeps the operation, and so does a too-small buffer.
    assert_eq!(digest(LengthQuery), length(32));
    assert_eq!(digest(Capacity(31)), too_small(32));
    assert_eq!(data(digest(Capacity(32))), want);
    // Success of a single-part call ends it.
    assert_eq!(digest(BIG), err(CKR_OPERATION_NOT_INITIALIZED));

    assert_eq!(init(), ok());
    for part in [&b"a"[..], b"bc"] {
        let r = t.ask(Request::DigestUpdate {
            session: h,
            data: sec(part),
        });
        assert_eq!(r, ok());
    }
    let fin = |out| t.ask(Request::DigestFinal { session: h, out });
    assert_eq!(fin(LengthQuery), length(32));
    assert_eq!(fin(Capacity(1)), too_small(32));
    assert_eq!(data(fin(Capacity(32))), want);
    assert_eq!(fin(BIG), err(CKR_OPERATION_NOT_INITIALIZED));

    // SM3 (GM/T 0004 example).
    let r = t.ask(Request::DigestInit {
        session: h,
        mechanism: m(CKM_HSMLINK_SM3),
    });
    assert_eq!(r, ok());
    assert_eq!(data(digest(BIG)), digest::digest(DigestAlg::Sm3, b"abc"));
    // A parameter where none belongs.
    let r = t.ask(Request::DigestInit {
        session: h,
        mechanism: mp(CKM_SHA256, MechanismParams::Ulong(1)),
    });
    assert_eq!(r, err(CKR_MECHANISM_PARAM_INVALID));
    let r = t.ask(Request::DigestInit {
        session: h,
        mechanism: m(CKM_MD5),
    });
    assert_eq!(r, err(CKR_MECHANISM_INVALID));
}

#[test]
fn digest_key_takes_secret_keys_only() {
    let t = setup();
    let h = t.h;
    let key = t.secret_key(CKK_AES, &KEY16, vec![]);
    let init = || {
        t.ask(Request::DigestInit {
            session: h,
            mechanism: m(CKM_SHA_1),
        })
    };
    assert_eq!(init(), ok());
    assert_eq!(t.ask(Request::DigestKey { session: h, key }), ok());
    let out = data(t.ask(Request::DigestFinal {
        session: h,
        out: BIG,
    }));
    assert_eq!(out, digest::digest(DigestAlg::Sha1, &KEY16));
    // A public key is indigestible, and the error ends the operation.
    let (public, _) = t.ec_pair(P256_OID, vec![]);
    assert_eq!(init(), ok());
    assert_eq!(
        t.ask(Request::DigestKey {
            session: h,
            key: public
        }),
        err(CKR_KEY_INDIGESTIBLE)
    );
    assert_eq!(
        t.ask(Request::DigestFinal {
            session: h,
            out: BIG
        }),
        err(CKR_OPERATION_NOT_INITIALIZED)
    );
}

// ---- random ----

#[test]
fn random_numbers() {
    let t = setup();
    let rand = |len| t.ask(Request::GenerateRandom { session: t.h, len });
    let bytes = |r: Response| match r.body {
        ResponseBody::Random(s) => s.as_bytes().to_vec(),
        _ => panic!("{r:?}"),
    };
    assert!(bytes(rand(0)).is_empty());
    let (x, y) = (bytes(rand(32)), bytes(rand(32)));
    assert_eq!((x.len(), y.len()), (32, 32));
    assert_ne!(x, y);
    assert_eq!(bytes(rand(100_000)).len(), 100_000);
    assert_eq!(
        rand(crate::calls::random::MAX_RANDOM + 1),
        err(CKR_ARGUMENTS_BAD)
    );
    assert_eq!(
        t.ask(Request::SeedRandom {
            session: t.h,
            seed: sec(b"seed")
        }),
        err(CKR_RANDOM_SEED_NOT_SUPPORTED)
    );
    assert_eq!(
        t.ask(Request::GenerateRandom {
            session: SessionHandle(99),
            len: 1
        }),
        err(CKR_SESSION_HANDLE_INVALID)
    );
}

#[test]
fn crypto_waits_for_an_expired_pin_to_be_changed() {
    let f = Fixture::new();
    let c = ctx("demo", 1);
    let s = &f.state;
    assert_eq!(init_token(s, &c, 0), ok());
    let h = open(s, &c, 0, true).unwrap();
    assert_eq!(login(s, &c, h, CKU_SO, SO_PIN), ok());
    let r = f.ask(
        &c,
        Request::InitPin {
            session: h,
            pin: pin(USER_PIN),
        },
    );
    assert_eq!(r, ok());
    assert_eq!(logout(s, &c, h), ok());
    assert_eq!(login(s, &c, h, CKU_USER, USER_PIN), ok());
    for r in [
        Request::GenerateRandom { session: h, len: 1 },
        Request::DigestInit {
            session: h,
            mechanism: m(CKM_SHA256),
        },
    ] {
        assert_eq!(f.ask(&c, r), err(CKR_PIN_EXPIRED));
    }
}

// ---- key generation ----

#[test]
fn generated_secret_keys_and_their_attributes() {
    let t = setup();
    let key = object(t.generate(
        CKM_AES_KEY_GEN,
        vec![a(CKA_VALUE_LEN, Ulong(32)), a(CKA_TOKEN, Bool(true))],
    ));
    assert_eq!(t.value(key, CKA_CLASS), Ulong(CKO_SECRET_KEY));
    assert_eq!(t.value(key, CKA_KEY_TYPE), Ulong(CKK_AES));
    assert_eq!(t.value(key, CKA_VALUE_LEN), Ulong(32));
    assert_eq!(t.value(key, CKA_LOCAL), Bool(true));
    assert_eq!(t.value(key, CKA_KEY_GEN_MECHANISM), Ulong(CKM_AES_KEY_GEN));
    assert_eq!(t.value(key, CKA_ALWAYS_SENSITIVE), Bool(true));
    assert_eq!(t.value(key, CKA_NEVER_EXTRACTABLE), Bool(true));
    assert_eq!(t.attr(key, CKA_VALUE), AttributeResult::Sensitive);

    // Extractable and not sensitive: readable, and neither "always" flag.
    let open_key = object(t.generate(
        CKM_AES_KEY_GEN,
        vec![
            a(CKA_VALUE_LEN, Ulong(16)),
            a(CKA_SENSITIVE, Bool(false)),
            a(CKA_EXTRACTABLE, Bool(true)),
        ],
    ));
    let Bytes(v) = &t.value(open_key, CKA_VALUE) else {
        panic!()
    };
    assert_eq!(v.len(), 16);
    assert_eq!(t.value(open_key, CKA_ALWAYS_SENSITIVE), Bool(false));
    assert_eq!(t.value(open_key, CKA_NEVER_EXTRACTABLE), Bool(false));

    assert_eq!(
        t.generate(CKM_AES_KEY_GEN, vec![]),
        err(CKR_TEMPLATE_INCOMPLETE)
    );
    assert_eq!(
        t.generate(CKM_AES_KEY_GEN, vec![a(CKA_VALUE_LEN, Ulong(20))]),
        err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    assert_eq!(
        t.generate(
            CKM_AES_KEY_GEN,
            vec![a(CKA_VALUE_LEN, Ulong(16)), a(CKA_LOCAL, Bool(true))]
        ),
        err(CKR_ATTRIBUTE_READ_ONLY)
    );
    assert_eq!(
        t.generate(
            CKM_AES_KEY_GEN,
            vec![
                a(CKA_VALUE_LEN, Ulong(16)),
                a(CKA_KEY_TYPE, Ulong(CKK_GENERIC_SECRET))
            ]
        ),
        err(CKR_TEMPLATE_INCONSISTENT)
    );
    let sm4 = object(t.generate(CKM_HSMLINK_SM4_KEY_GEN, vec![]));
    assert_eq!(t.value(sm4, CKA_KEY_TYPE), Ulong(CKK_HSMLINK_SM4));
    assert_eq!(t.value(sm4, CKA_VALUE_LEN), Ulong(16));
    let hmac = object(t.generate(
        CKM_GENERIC_SECRET_KEY_GEN,
        vec![
            a(CKA_KEY_TYPE, Ulong(CKK_SHA256_HMAC)),
            a(CKA_VALUE_LEN, Ulong(48)),
        ],
    ));
    assert_eq!(t.value(hmac, CKA_KEY_TYPE), Ulong(CKK_SHA256_HMAC));
    assert_eq!(t.value(hmac, CKA_VALUE_LEN), Ulong(48));
    // The generated key works.
    assert_eq!(t.one_sign(m(CKM_SHA256_HMAC), hmac, b"data").len(), 32);
    // A token key survives a restart, sealed like any secret.
    drop(t.f.reopen());
}

// ---- symmetric ciphers ----

#[test]
fn aes_and_sm4_modes_match_the_engine() {
    let t = setup();
    let aes = t.secret_key(CKK_AES, &KEY16, vec![]);
    let sm4 = t.secret_key(CKK_HSMLINK_SM4, &KEY16, vec![]);
    let iv = [7u8; 16];
    let msg = b"forty bytes of plaintext, more or less!!";
    let cases: Vec<(u64, ObjectHandle, BlockAlg, MechanismParams, Mode)> = vec![
        (
            CKM_AES_CBC_PAD,
            aes,
            BlockAlg::Aes,
            MechanismParams::Iv(iv.to_vec()),
            Mode::CbcPad { iv },
        ),
        (
            CKM_AES_CTR,
            aes,
            BlockAlg::Aes,
            MechanismParams::AesCtr {
                counter_bits: 32,
                counter_block: iv,
            },
            Mode::Ctr {
                counter_block: iv,
                counter_bits: 32,
            },
        ),
        (
            CKM_AES_GCM,
            aes,
            BlockAlg::Aes,
            MechanismParams::AesGcm {
                iv: iv[..12].to_vec(),
                iv_bits: 96,
                aad: b"aad".to_vec(),
                tag_bits: 128,
            },
            Mode::Gcm {
                iv: iv[..12].to_vec(),
                aad: b"aad".to_vec(),
                tag_bits: 128,
            },
        ),
        (
            CKM_AES_CCM,
            aes,
            BlockAlg::Aes,
            MechanismParams::AesCcm {
                data_len: msg.len() as u64,
                nonce: iv[..12].to_vec(),
                aad: vec![],
                mac_len: 16,
            },
            Mode::Ccm {
                nonce: iv[..12].to_vec(),
                aad: vec![],
                mac_len: 16,
                data_len: Some(msg.len()),
            },
        ),
        (
            CKM_HSMLINK_SM4_CBC_PAD,
            sm4,
            BlockAlg::Sm4,
            MechanismParams::Iv(iv.to_vec()),
            Mode::CbcPad { iv },
        ),
        (
            CKM_HSMLINK_SM4_GCM,
            sm4,
            BlockAlg::Sm4,
            MechanismParams::AesGcm {
                iv: iv[..12].to_vec(),
                iv_bits: 0,
                aad: vec![],
                tag_bits: 96,
            },
            Mode::Gcm {
                iv: iv[..12].to_vec(),
                aad: vec![],
                tag_bits: 96,
            },
        ),
    ];
    for (mech, key, alg, params, mode) in cases {
        let want = cipher::encrypt(alg, &KEY16, &mode, msg).unwrap();
        assert_eq!(t.encrypt_init(mp(mech, params.clone()), key), ok());
        assert_eq!(t.encrypt(msg, LengthQuery), length(want.len() as u64));
        assert_eq!(
            t.encrypt(msg, Capacity(want.len() as u64 - 1)),
            too_small(want.len() as u64)
        );
        assert_eq!(data(t.encrypt(msg, BIG)), want, "{mech:#x}");
        // Multi-part gives the same.
        assert_eq!(t.encrypt_init(mp(mech, params.clone()), key), ok());
        let mut got = Vec::new();
        for part in msg.chunks(7) {
            got.extend(data(t.ask(Request::EncryptUpdate {
                session: t.h,
                data: sec(part),
                out: BIG,
            })));
        }
        got.extend(data(t.ask(Request::EncryptFinal {
            session: t.h,
            out: BIG,
        })));
        assert_eq!(got, want, "{mech:#x} multi-part");
        assert_eq!(t.decrypt_init(mp(mech, params.clone()), key), ok());
        assert_eq!(data(t.decrypt(&want, BIG)), msg, "{mech:#x}");
    }

    // CBC-PAD decryption: the size query is an upper bound; a buffer of
    // the exact length works; a too-small one learns the exact length and
    // the next call returns the result computed once.
    let params = MechanismParams::Iv(iv.to_vec());
    let short = b"twenty bytes exactly";
    let ct = cipher::encrypt(BlockAlg::Aes, &KEY16, &Mode::CbcPad { iv }, short).unwrap();
    assert_eq!(
        t.decrypt_init(mp(CKM_AES_CBC_PAD, params.clone()), aes),
        ok()
    );
    assert_eq!(t.decrypt(&ct, LengthQuery), length(32));
    assert_eq!(t.decrypt(&ct, Capacity(10)), too_small(20));
    assert_eq!(data(t.decrypt(&ct, Capacity(20))), short);
    assert_eq!(t.decrypt(&ct, BIG), err(CKR_OPERATION_NOT_INITIALIZED));

    // GCM: a changed tag is rejected, which ends the operation.
    let gcm = MechanismParams::AesGcm {
        iv: iv[..12].to_vec(),
        iv_bits: 96,
        aad: vec![],
        tag_bits: 128,
    };
    assert_eq!(t.encrypt_init(mp(CKM_AES_GCM, gcm.clone()), aes), ok());
    let mut sealed = data(t.encrypt(msg, BIG));
    sealed[0] ^= 1;
    assert_eq!(t.decrypt_init(mp(CKM_AES_GCM, gcm.clone()), aes), ok());
    assert_eq!(t.decrypt(&sealed, BIG), err(CKR_ENCRYPTED_DATA_INVALID));
    assert_eq!(t.decrypt(&sealed, BIG), err(CKR_OPERATION_NOT_INITIALIZED));
}

#[test]
fn other_errors_end_the_operation() {
    let t = setup();
    let aes = t.secret_key(CKK_AES, &KEY16, vec![]);
    assert_eq!(t.encrypt_init(m(CKM_AES_ECB), aes), ok());
    assert_eq!(t.encrypt(&[0; 15], BIG), err(CKR_DATA_LEN_RANGE));
    assert_eq!(t.encrypt(&[0; 16], BIG), err(CKR_OPERATION_NOT_INITIALIZED));
    // Update keeps the operation; a bad final ends it.
    assert_eq!(t.encrypt_init(m(CKM_AES_ECB), aes), ok());
    let r = t.ask(Request::EncryptUpdate {
        session: t.h,
        data: sec(&[0; 20]),
        out: LengthQuery,
    });
    assert_eq!(r, length(16));
    let r = t.ask(Request::EncryptUpdate {
        session: t.h,
        data: sec(&[0; 20]),
        out: Capacity(15),
    });
    assert_eq!(r, too_small(16));
    let r = t.ask(Request::EncryptUpdate {
        session: t.h,
        data: sec(&[0; 20]),
        out: BIG,
    });
    assert_eq!(data(r).len(), 16);
    let fin = || {
        t.ask(Request::EncryptFinal {
            session: t.h,
            out: BIG,
        })
    };
    assert_eq!(fin(), err(CKR_DATA_LEN_RANGE));
    assert_eq!(fin(), err(CKR_OPERATION_NOT_INITIALIZED));
    // C_SessionCancel ends operations by kind.
    assert_eq!(t.encrypt_init(m(CKM_AES_ECB), aes), ok());
    assert_eq!(t.decrypt_init(m(CKM_AES_ECB), aes), ok());
    let r = t.ask(Request::SessionCancel {
        session: t.h,
        flags: CKF_ENCRYPT,
    });
    assert_eq!(r, ok());
    assert_eq!(t.encrypt(&[0; 16], BIG), err(CKR_OPERATION_NOT_INITIALIZED));
    assert_eq!(
        t.decrypt_init(m(CKM_AES_ECB), aes),
        err(CKR_OPERATION_ACTIVE)
    );
    assert_eq!(data(t.decrypt(&[0; 16], BIG)).len(), 16);
    // Dual-function calls are not offered.
    let r = t.ask(Request::DigestEncryptUpdate {
        session: t.h,
        data: sec(b"x"),
        out: BIG,
    });
    assert_eq!(r, err(CKR_FUNCTION_NOT_SUPPORTED));
}

#[test]
fn key_checks_at_init() {
    let t = setup();
    let aes = t.secret_key(CKK_AES, &KEY16, vec![]);
    let generic = t.secret_key(CKK_GENERIC_SECRET, &KEY16, vec![]);
    let no_encrypt = t.secret_key(CKK_AES, &KEY16, vec![a(CKA_ENCRYPT, Bool(false))]);
    let gcm_only = t.secret_key(
        CKK_AES,
        &KEY16,
        vec![a(
            CKA_ALLOWED_MECHANISMS,
            AttributeValue::Mechanisms(vec![MechanismType(CKM_AES_ECB)]),
        )],
    );
    let cbc = |iv: &[u8]| mp(CKM_AES_CBC, MechanismParams::Iv(iv.to_vec()));
    assert_eq!(
        t.encrypt_init(m(CKM_AES_ECB), ObjectHandle(9999)),
        err(CKR_KEY_HANDLE_INVALID)
    );
    assert_eq!(
        t.encrypt_init(m(CKM_AES_ECB), generic),
        err(CKR_KEY_TYPE_INCONSISTENT)
    );
    assert_eq!(
        t.encrypt_init(m(CKM_AES_ECB), no_encrypt),
        err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        t.encrypt_init(cbc(&[0; 16]), gcm_only),
        err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(t.encrypt_init(m(CKM_AES_ECB), gcm_only), ok());
    assert_eq!(data(t.encrypt(&[1; 16], BIG)).len(), 16);
    assert_eq!(
        t.encrypt_init(cbc(&[0; 15]), aes),
        err(CKR_MECHANISM_PARAM_INVALID)
    );
    assert_eq!(
        t.encrypt_init(m(CKM_AES_CBC), aes),
        err(CKR_MECHANISM_PARAM_INVALID)
    );
    assert_eq!(
        t.encrypt_init(m(CKM_DES_ECB), aes),
        err(CKR_MECHANISM_INVALID)
    );
    // TDES is served, but not with an AES key.
    assert_eq!(
        t.encrypt_init(m(CKM_DES3_ECB), aes),
        err(CKR_KEY_TYPE_INCONSISTENT)
    );
    // A digest mechanism cannot encrypt.
    assert_eq!(
        t.encrypt_init(m(CKM_SHA256), aes),
        err(CKR_MECHANISM_INVALID)
    );
    // A data object is not a key.
    let data_object = create(
        &t.f.state,
        &t.c,
        t.h,
        vec![a(CKA_CLASS, Ulong(CKO_DATA)), a(CKA_VALUE, Bytes(vec![1]))],
    )
    .unwrap();
    assert_eq!(
        t.encrypt_init(m(CKM_AES_ECB), data_object),
        err(CKR_KEY_HANDLE_INVALID)
    );
    // A private key needs the user logged in.
    let (_, private) = t.ec_pair(P256_OID, vec![]);
    assert_eq!(logout(&t.f.state, &t.c, t.h), ok());
    assert_eq!(
        t.sign_init(m(CKM_ECDSA), private),
        err(CKR_USER_NOT_LOGGED_IN)
    );
}

// ---- MACs ----

#[test]
fn hmac_and_cmac() {
    let t = setup();
    let key = t.secret_key(CKK_GENERIC_SECRET, b"Jefe", vec![]);
    let msg = b"what do ya want for nothing?";
    let want = hsmlink_crypto::mac::sign(
        hsmlink_crypto::mac::MacAlg::Hmac(DigestAlg::Sha256),
        b"Jefe",
        None,
        msg,
    )
    .unwrap();
    assert_eq!(t.sign_init(m(CKM_SHA256_HMAC), key), ok());
    assert_eq!(t.sign(msg, LengthQuery), length(32));
    assert_eq!(t.sign(msg, Capacity(8)), too_small(32));
    assert_eq!(data(t.sign(msg, BIG)), want);
    assert_eq!(t.one_verify(m(CKM_SHA256_HMAC), key, msg, &want), ok());
    let mut bad = want.clone();
    bad[0] ^= 1;
    assert_eq!(
        t.one_verify(m(CKM_SHA256_HMAC), key, msg, &bad),
        err(CKR_SIGNATURE_INVALID)
    );
    assert_eq!(
        t.one_verify(m(CKM_SHA256_HMAC), key, msg, &want[..31]),
        err(CKR_SIGNATURE_LEN_RANGE)
    );
    // Multi-part verify.
    assert_eq!(t.verify_init(m(CKM_SHA256_HMAC), key), ok());
    for part in msg.chunks(5) {
        let r = t.ask(Request::VerifyUpdate {
            session: t.h,
            data: sec(part),
        });
        assert_eq!(r, ok());
    }
    let r = t.ask(Request::VerifyFinal {
        session: t.h,
        signature: want.clone(),
    });
    assert_eq!(r, ok());
    // _GENERAL: the length is the parameter.
    let general = mp(CKM_SHA256_HMAC_GENERAL, MechanismParams::MacGeneral(16));
    assert_eq!(t.one_sign(general.clone(), key, msg), want[..16]);
    let too_long = mp(CKM_SHA256_HMAC_GENERAL, MechanismParams::MacGeneral(33));
    assert_eq!(t.sign_init(too_long, key), err(CKR_MECHANISM_PARAM_INVALID));
    // HMAC-SM3, CMAC.
    assert_eq!(t.one_sign(m(CKM_HSMLINK_SM3_HMAC), key, msg).len(), 32);
    let aes = t.secret_key(CKK_AES, &KEY16, vec![]);
    let cmac = t.one_sign(m(CKM_AES_CMAC), aes, msg);
    assert_eq!(
        cmac,
        hsmlink_crypto::mac::sign(hsmlink_crypto::mac::MacAlg::CmacAes, &KEY16, None, msg).unwrap()
    );
    assert_eq!(
        t.sign_init(m(CKM_AES_CMAC), key),
        err(CKR_KEY_TYPE_INCONSISTENT)
    );
    let sm4 = t.secret_key(CKK_HSMLINK_SM4, &KEY16, vec![]);
    assert_eq!(t.one_sign(m(CKM_HSMLINK_SM4_CMAC), sm4, msg).len(), 16);
    // SignDigest is for hash-then-sign mechanisms only.
    assert_eq!(t.sign_init(m(CKM_SHA256_HMAC), key), ok());
    let r = t.ask(Request::SignDigest {
        session: t.h,
        digest: sec(&[0; 32]),
        out: BIG,
    });
    assert_eq!(r, err(CKR_FUNCTION_NOT_SUPPORTED));
}

// ---- RSA ----

#[test]
fn rsa_sign_verify_encrypt_recover_and_wrap() {
    let t = setup_relaxed();
    let (public, private) = pair(t.generate_pair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        vec![
            a(CKA_MODULUS_BITS, Ulong(2048)),
            a(CKA_PUBLIC_EXPONENT, Bytes(vec![1, 0, 1])),
        ],
        vec![a(CKA_TOKEN, Bool(true))],
    ));
    assert_eq!(t.value(public, CKA_MODULUS_BITS), Ulong(2048));
    assert_eq!(t.value(public, CKA_PUBLIC_EXPONENT), Bytes(vec![1, 0, 1]));
    assert_eq!(t.value(public, CKA_LOCAL), Bool(true));
    assert_eq!(
        t.value(private, CKA_KEY_GEN_MECHANISM),
        Ulong(CKM_RSA_PKCS_KEY_PAIR_GEN)
    );
    assert_eq!(t.value(private, CKA_ALWAYS_SENSITIVE), Bool(true));
    assert_eq!(t.value(private, CKA_NEVER_EXTRACTABLE), Bool(true));
    assert_eq!(
        t.attr(private, CKA_PRIVATE_EXPONENT),
        AttributeResult::Sensitive
    );
    let Bytes(modulus) = &t.value(private, CKA_MODULUS) else {
        panic!()
    };
    assert_eq!(modulus.len(), 256);

    let msg = b"message to sign";
    // Hash-then-sign: the module's digest signs like the message itself
    // (PKCS#1 v1.5 is deterministic).
    let by_message = t.one_sign(m(CKM_SHA256_RSA_PKCS), private, msg);
    assert_eq!(t.sign_init(m(CKM_SHA256_RSA_PKCS), private), ok());
    let digest = digest::digest(DigestAlg::Sha256, msg);
    let sign_digest = |d: &[u8], out| {
        t.ask(Request::SignDigest {
            session: t.h,
            digest: sec(d),
            out,
        })
    };
    assert_eq!(sign_digest(&digest, LengthQuery), length(256));
    assert_eq!(sign_digest(&digest, Capacity(100)), too_small(256));
    assert_eq!(data(sign_digest(&digest, Capacity(256))), by_message);
    // A digest of the wrong length ends the operation.
    assert_eq!(t.sign_init(m(CKM_SHA256_RSA_PKCS), private), ok());
    assert_eq!(sign_digest(&digest[..20], BIG), err(CKR_DATA_LEN_RANGE));
    assert_eq!(
        sign_digest(&digest, BIG),
        err(CKR_OPERATION_NOT_INITIALIZED)
    );
    // Verification by message, by digest, multi-part.
    assert_eq!(
        t.one_verify(m(CKM_SHA256_RSA_PKCS), public, msg, &by_message),
        ok()
    );
    assert_eq!(t.verify_init(m(CKM_SHA256_RSA_PKCS), public), ok());
    let r = t.ask(Request::VerifyDigest {
        session: t.h,
        digest: sec(&digest),
        signature: by_message.clone(),
    });
    assert_eq!(r, ok());
    assert_eq!(
        t.one_verify(m(CKM_SHA256_RSA_PKCS), public, b"other", &by_message),
        err(CKR_SIGNATURE_INVALID)
    );
    assert_eq!(
        t.one_verify(m(CKM_SHA256_RSA_PKCS), public, msg, &by_message[1..]),
        err(CKR_SIGNATURE_LEN_RANGE)
    );
    // Keys of the wrong class.
    assert_eq!(
        t.sign_init(m(CKM_SHA256_RSA_PKCS), public),
        err(CKR_KEY_TYPE_INCONSISTENT)
    );
    // PSS.
    let pss = |mech| {
        mp(
            mech,
            MechanismParams::RsaPss {
                hash_alg: MechanismType(CKM_SHA256),
                mgf: CKG_MGF1_SHA256,
                salt_len: 32,
            },
        )
    };
    let sig = t.one_sign(pss(CKM_SHA256_RSA_PKCS_PSS), private, msg);
    assert_eq!(
        t.one_verify(pss(CKM_SHA256_RSA_PKCS_PSS), public, msg, &sig),
        ok()
    );
    assert_eq!(
        t.one_verify(pss(CKM_RSA_PKCS_PSS), public, &digest, &sig),
        ok()
    );
    assert_eq!(
        t.sign_init(pss(CKM_SHA384_RSA_PKCS_PSS), private),
        err(CKR_MECHANISM_PARAM_INVALID)
    );
    // Sign-recover / verify-recover with CKM_RSA_PKCS.
    let r = t.ask(Request::SignRecoverInit {
        session: t.h,
        mechanism: m(CKM_RSA_PKCS),
        key: private,
    });
    assert_eq!(r, ok());
    let sig = data(t.ask(Request::SignRecover {
        session: t.h,
        data: sec(b"recover me"),
        out: BIG,
    }));
    let r = t.ask(Request::VerifyRecoverInit {
        session: t.h,
        mechanism: m(CKM_RSA_PKCS),
        key: public,
    });
    assert_eq!(r, ok());
    let recover = |out| {
        t.ask(Request::VerifyRecover {
            session: t.h,
            signature: sig.clone(),
            out,
        })
    };
    assert_eq!(recover(LengthQuery), length(256));
    assert_eq!(recover(Capacity(3)), too_small(10));
    assert_eq!(data(recover(Capacity(10))), b"recover me");
    // OAEP encryption.
    let oaep = mp(
        CKM_RSA_PKCS_OAEP,
        MechanismParams::RsaOaep {
            hash_alg: MechanismType(CKM_SHA256),
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            source_data: b"label".to_vec(),
        },
    );
    assert_eq!(t.encrypt_init(oaep.clone(), public), ok());
    let ct = data(t.encrypt(b"secret", BIG));
    assert_eq!(ct.len(), 256);
    assert_eq!(t.decrypt_init(oaep.clone(), private), ok());
    assert_eq!(t.decrypt(&ct, LengthQuery), length(256));
    assert_eq!(data(t.decrypt(&ct, Capacity(6))), b"secret");
    // PKCS#1 v1.5 encryption.
    assert_eq!(t.encrypt_init(m(CKM_RSA_PKCS), public), ok());
    let ct = data(t.encrypt(b"v15", BIG));
    assert_eq!(t.decrypt_init(m(CKM_RSA_PKCS), private), ok());
    assert_eq!(data(t.decrypt(&ct, BIG)), b"v15");
    // OAEP wrap and unwrap of an AES key.
    let aes = t.secret_key(CKK_AES, &KEY16, vec![a(CKA_EXTRACTABLE, Bool(true))]);
    let wrapped = data(t.ask(Request::WrapKey {
        session: t.h,
        mechanism: oaep.clone(),
        wrapping_key: public,
        key: aes,
        out: BIG,
    }));
    let unwrapped = object(t.ask(Request::UnwrapKey {
        session: t.h,
        mechanism: oaep,
        unwrapping_key: private,
        wrapped_key: wrapped,
        template: vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
        ],
    }));
    assert_eq!(t.value(unwrapped, CKA_VALUE_LEN), Ulong(16));
    assert_eq!(t.value(unwrapped, CKA_LOCAL), Bool(false));
    // Sizes outside the table.
    assert_eq!(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![a(CKA_MODULUS_BITS, Ulong(1024))],
            vec![]
        ),
        err(CKR_KEY_SIZE_RANGE)
    );
}

// ---- EC, EdDSA ----

#[test]
fn ecdsa_and_ecdh() {
    let t = setup();
    for (params, field) in [
        (P256_OID.to_vec(), 32usize),
        (b"\x13\x09secp384r1".to_vec(), 48),
        (vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], 66),
    ] {
        let (public, private) = t.ec_pair(&params, vec![]);
        let point = t.point(public, 1 + 2 * field);
        let Bytes(der) = &t.value(public, CKA_EC_POINT) else {
            panic!()
        };
        assert_eq!(der[0], 0x04, "DER OCTET STRING");
        let curve = ec::Curve::from_ec_params(&params).unwrap();
        let msg = b"ecdsa message";
        let sig = t.one_sign(m(CKM_ECDSA_SHA256), private, msg);
        assert_eq!(sig.len(), 2 * field);
        let d = digest::digest(DigestAlg::Sha256, msg);
        ec::ecdsa_verify(curve, &point, &d, &sig).unwrap();
        assert_eq!(t.one_verify(m(CKM_ECDSA_SHA256), public, msg, &sig), ok());
        assert_eq!(t.one_verify(m(CKM_ECDSA), public, &d, &sig), ok());
        // The module's digest.
        assert_eq!(t.sign_init(m(CKM_ECDSA_SHA256), private), ok());
        let sig2 = data(t.ask(Request::SignDigest {
            session: t.h,
            digest: sec(&d),
            out: BIG,
        }));
        ec::ecdsa_verify(curve, &point, &d, &sig2).unwrap();
    }

    // ECDH: both parties agree, with CKD_NULL and with a SHA-256 KDF.
    let (pa, ka) = t.ec_pair(P256_OID, vec![a(CKA_DERIVE, Bool(true))]);
    let (pb, kb) = t.ec_pair(P256_OID, vec![a(CKA_DERIVE, Bool(true))]);
    let (point_a, point_b) = (t.point(pa, 65), t.point(pb, 65));
    for (kdf, len) in [(CKD_NULL, 32u64), (CKD_SHA256_KDF, 24)] {
        let derive = |base, peer: &[u8]| {
            object(t.ask(Request::DeriveKey {
                session: t.h,
                mechanism: mp(
                    CKM_ECDH1_DERIVE,
                    MechanismParams::Ecdh1Derive {
                        kdf,
                        shared_data: vec![],
                        public_data: peer.to_vec(),
                    },
                ),
                base_key: base,
                template: vec![
                    a(CKA_VALUE_LEN, Ulong(len)),
                    a(CKA_SENSITIVE, Bool(false)),
                    a(CKA_EXTRACTABLE, Bool(true)),
                ],
            }))
        };
        let (x, y) = (derive(ka, &point_b), derive(kb, &point_a));
        let vx = t.value(x, CKA_VALUE);
        assert_eq!(vx, t.value(y, CKA_VALUE));
        let Bytes(v) = &vx else { panic!() };
        assert_eq!(v.len() as u64, len);
        assert_eq!(t.value(x, CKA_LOCAL), Bool(false));
        assert_eq!(t.value(x, CKA_KEY_TYPE), Ulong(CKK_GENERIC_SECRET));
    }
    // A key without CKA_DERIVE may not derive.
    let (_, no_derive) = t.ec_pair(P256_OID, vec![]);
    let r = t.ask(Request::DeriveKey {
        session: t.h,
        mechanism: mp(
            CKM_ECDH1_DERIVE,
            MechanismParams::Ecdh1Derive {
                kdf: CKD_NULL,
                shared_data: vec![],
                public_data: point_a.clone(),
            },
        ),
        base_key: no_derive,
        template: vec![],
    });
    assert_eq!(r, err(CKR_KEY_FUNCTION_NOT_PERMITTED));
    // An unknown curve.
    assert_eq!(
        t.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![a(CKA_EC_PARAMS, Bytes(vec![0x06, 0x01, 0x00]))],
            vec![]
        ),
        err(CKR_CURVE_NOT_SUPPORTED)
    );
}

#[test]
fn ed25519() {
    let t = setup();
    let (public, private) = pair(t.generate_pair(
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        vec![a(CKA_EC_PARAMS, Bytes(ec::ED25519_OID_PARAMS.to_vec()))],
        vec![],
    ));
    assert_eq!(t.value(public, CKA_KEY_TYPE), Ulong(CKK_EC_EDWARDS));
    let point = t.point(public, 32);
    let sig = t.one_sign(m(CKM_EDDSA), private, b"ed message");
    ec::ed25519_verify(&point, b"ed message", &sig).unwrap();
    assert_eq!(
        t.one_verify(m(CKM_EDDSA), public, b"ed message", &sig),
        ok()
    );
    assert_eq!(
        t.one_verify(m(CKM_EDDSA), public, b"other", &sig),
        err(CKR_SIGNATURE_INVALID)
    );
}

// ---- SM2 ----

#[test]
fn sm2_with_sm3_returns_z_and_signs_z_then_message() {
    let t = setup();
    let (public, private) = pair(t.generate_pair(CKM_HSMLINK_SM2_KEY_PAIR_GEN, vec![], vec![]));
    assert_eq!(t.value(public, CKA_KEY_TYPE), Ulong(CKK_HSMLINK_SM2));
    let point = t.point(public, 65);
    let msg = b"message digest";
    for user_id in [None, Some(b"ALICE123@YAHOO.COM".to_vec())] {
        let params = match &user_id {
            None => MechanismParams::None,
            Some(id) => MechanismParams::Sm2 {
                user_id: id.clone(),
            },
        };
        let id = user_id.clone().unwrap_or(sm2::DEFAULT_USER_ID.to_vec());
        let z = sm2::z_value(&id, &point).unwrap();
        let mech = mp(CKM_HSMLINK_SM2_SM3, params);
        assert_eq!(
            t.sign_init(mech.clone(), private),
            Response::ok(ResponseBody::HashPrefix(z.to_vec()))
        );
        // The module hashes Z || M and sends e.
        let e = sm2::message_digest(&id, &point, msg).unwrap();
        let sig = data(t.ask(Request::SignDigest {
            session: t.h,
            digest: sec(&e),
            out: BIG,
        }));
        sm2::verify(&point, &id, msg, &sig).unwrap();
        // The message path gives a signature over the same Z || M.
        assert_eq!(
            t.sign_init(mech.clone(), private),
            Response::ok(ResponseBody::HashPrefix(z.to_vec()))
        );
        let sig = data(t.sign(msg, BIG));
        sm2::verify(&point, &id, msg, &sig).unwrap();
        // Verification answers Z too, and checks the module's e.
        assert_eq!(
            t.verify_init(mech.clone(), public),
            Response::ok(ResponseBody::HashPrefix(z.to_vec()))
        );
        let r = t.ask(Request::VerifyDigest {
            session: t.h,
            digest: sec(&e),
            signature: sig.clone(),
        });
        assert_eq!(r, ok());
    }
    // Raw SM2 over a prepared 32-byte e.
    let e = [9u8; 32];
    let sig = t.one_sign(m(CKM_HSMLINK_SM2), private, &e);
    sm2::verify_digest(&point, &e, &sig).unwrap();
    assert_eq!(t.sign_init(m(CKM_HSMLINK_SM2), private), ok());
    assert_eq!(t.sign(&e[..31], BIG), err(CKR_DATA_LEN_RANGE));
    // Encryption, C1C3C2.
    assert_eq!(t.encrypt_init(m(CKM_HSMLINK_SM2_ENCRYPT), public), ok());
    assert_eq!(t.encrypt(b"plain", LengthQuery), length(5 + 97));
    let ct = data(t.encrypt(b"plain", BIG));
    assert_eq!(t.decrypt_init(m(CKM_HSMLINK_SM2_ENCRYPT), private), ok());
    assert_eq!(data(t.decrypt(&ct, Capacity(5))), b"plain");
}

// ---- CKA_ALWAYS_AUTHENTICATE ----

#[test]
fn always_authenticate_needs_a_context_specific_login() {
    let t = setup();
    let (_, private) = t.ec_pair(P256_OID, vec![a(CKA_ALWAYS_AUTHENTICATE, Bool(true))]);
    let d = [1u8; 32];
    assert_eq!(t.sign_init(m(CKM_ECDSA), private), ok());
    assert_eq!(t.sign(&d, BIG), err(CKR_USER_NOT_LOGGED_IN));
    // Still waiting: the operation was not ended.
    assert_eq!(t.sign(&d, BIG), err(CKR_USER_NOT_LOGGED_IN));
    assert_eq!(
        login(&t.f.state, &t.c, t.h, CKU_CONTEXT_SPECIFIC, b"wrong-pin"),
        err(CKR_PIN_INCORRECT)
    );
    assert_eq!(
        login(&t.f.state, &t.c, t.h, CKU_CONTEXT_SPECIFIC, USER_PIN),
        ok()
    );
    assert_eq!(data(t.sign(&d, BIG)).len(), 64);
    // The next operation asks again.
    assert_eq!(t.sign_init(m(CKM_ECDSA), private), ok());
    assert_eq!(t.sign(&d, BIG), err(CKR_USER_NOT_LOGGED_IN));
}

// ---- wrap, unwrap, derive ----

#[test]
fn aes_key_wrap_round_trip_and_rules() {
    let t = setup_relaxed();
    let kek = t.secret_key(CKK_AES, &[3; 32], vec![]);
    let target = t.secret_key(CKK_AES, &KEY16, vec![a(CKA_EXTRACTABLE, Bool(true))]);
    let wrap = |mech: u64, wrapping_key, key, out| {
        t.ask(Request::WrapKey {
            session: t.h,
            mechanism: m(mech),
            wrapping_key,
            key,
            out,
        })
    };
    assert_eq!(wrap(CKM_AES_KEY_WRAP, kek, target, LengthQuery), length(24));
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, kek, target, Capacity(8)),
        too_small(24)
    );
    for mech in [CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP] {
        let wrapped = data(wrap(mech, kek, target, BIG));
        let copy = object(t.ask(Request::UnwrapKey {
            session: t.h,
            mechanism: m(mech),
            unwrapping_key: kek,
            wrapped_key: wrapped.clone(),
            template: vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            ],
        }));
        // Both keys encrypt alike.
        assert_eq!(t.encrypt_init(m(CKM_AES_ECB), copy), ok());
        assert_eq!(
            data(t.encrypt(&[5; 16], BIG)),
            cipher::encrypt(BlockAlg::Aes, &KEY16, &Mode::Ecb, &[5; 16]).unwrap()
        );
        assert_eq!(t.value(copy, CKA_ALWAYS_SENSITIVE), Bool(false));
        let mut bad = wrapped;
        bad[3] ^= 1;
        let r = t.ask(Request::UnwrapKey {
            session: t.h,
            mechanism: m(mech),
            unwrapping_key: kek,
            wrapped_key: bad,
            template: vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            ],
        });
        assert_eq!(r, err(CKR_WRAPPED_KEY_INVALID));
    }
    let stuck = t.secret_key(CKK_AES, &KEY16, vec![]);
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, kek, stuck, BIG),
        err(CKR_KEY_UNEXTRACTABLE)
    );
    let trusted_only = t.secret_key(
        CKK_AES,
        &KEY16,
        vec![
            a(CKA_EXTRACTABLE, Bool(true)),
            a(CKA_WRAP_WITH_TRUSTED, Bool(true)),
        ],
    );
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, kek, trusted_only, BIG),
        err(CKR_KEY_NOT_WRAPPABLE)
    );
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, ObjectHandle(4242), target, BIG),
        err(CKR_WRAPPING_KEY_HANDLE_INVALID)
    );
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, target, ObjectHandle(4242), BIG),
        err(CKR_KEY_HANDLE_INVALID)
    );
    let no_wrap = t.secret_key(CKK_AES, &[3; 32], vec![a(CKA_WRAP, Bool(false))]);
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, no_wrap, target, BIG),
        err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    let hmac = t.secret_key(CKK_GENERIC_SECRET, &[3; 32], vec![]);
    assert_eq!(
        wrap(CKM_AES_KEY_WRAP, hmac, target, BIG),
        err(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
    );
    assert_eq!(
        wrap(CKM_AES_ECB, kek, target, BIG),
        err(CKR_MECHANISM_INVALID)
    );
}

#[test]
fn aes_encrypt_data_derivation() {
    let t = setup();
    let base = t.secret_key(CKK_AES, &KEY16, vec![a(CKA_DERIVE, Bool(true))]);
    let input = [0x11u8; 32];
    let derived = object(t.ask(Request::DeriveKey {
        session: t.h,
        mechanism: mp(
            CKM_AES_ECB_ENCRYPT_DATA,
            MechanismParams::KeyDerivationString(input.to_vec()),
        ),
        base_key: base,
        template: vec![
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            a(CKA_VALUE_LEN, Ulong(16)),
            a(CKA_SENSITIVE, Bool(false)),
            a(CKA_EXTRACTABLE, Bool(true)),
        ],
    }));
    let want = cipher::encrypt(BlockAlg::Aes, &KEY16, &Mode::Ecb, &input).unwrap();
    assert_eq!(t.value(derived, CKA_VALUE), Bytes(want[..16].to_vec()));
    let iv = [2u8; 16];
    let derived = object(t.ask(Request::DeriveKey {
        session: t.h,
        mechanism: mp(
            CKM_AES_CBC_ENCRYPT_DATA,
            MechanismParams::AesCbcEncryptData {
                iv,
                data: input.to_vec(),
            },
        ),
        base_key: base,
        template: vec![
            a(CKA_SENSITIVE, Bool(false)),
            a(CKA_EXTRACTABLE, Bool(true)),
        ],
    }));
    let want = cipher::encrypt(BlockAlg::Aes, &KEY16, &Mode::Cbc { iv }, &input).unwrap();
    assert_eq!(t.value(derived, CKA_VALUE), Bytes(want));
}

// ---- secure templates (strict partition) ----

/// No blob leaves a strict partition unrecorded: a wrap whose wrap-ledger
/// record cannot be written fails; a length query records nothing.
#[test]
fn a_wrap_the_ledger_cannot_record_does_not_leave() {
    let t = setup();
    let kek = object(t.generate(
        CKM_AES_KEY_GEN,
        vec![
            a(CKA_VALUE_LEN, Ulong(32)),
            a(CKA_WRAP, Bool(true)),
            a(CKA_UNWRAP, Bool(true)),
        ],
    ));
    let key = object(t.generate(
        CKM_AES_KEY_GEN,
        vec![a(CKA_VALUE_LEN, Ulong(16)), a(CKA_EXTRACTABLE, Bool(true))],
    ));
    let wrap = |out| {
        t.ask(Request::WrapKey {
            session: t.h,
            mechanism: m(CKM_AES_KEY_WRAP),
            wrapping_key: kek,
            key,
            out,
        })
    };
    let rows = || {
        let db = rusqlite::Connection::open(t.f.db()).unwrap();
        db.query_row("SELECT count(*) FROM wrap_ledger", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    assert_eq!(wrap(LengthQuery), length(24));
    assert_eq!(rows(), 0, "a length query's bytes do not leave");
    data(wrap(BIG));
    assert_eq!(rows(), 1);
    // The ledger's table gone (a store that cannot write): the wrap fails.
    rusqlite::Connection::open(t.f.db())
        .unwrap()
        .execute_batch("DROP TABLE wrap_ledger")
        .unwrap();
    assert_eq!(wrap(BIG), err(CKR_DEVICE_ERROR));
}

#[test]
fn strict_partition_separates_roles_and_guards_wrapping() {
    let t = setup();
    let aes = |len: u64, extra: Vec<Attribute>| {
        let mut template = vec![a(CKA_VALUE_LEN, Ulong(len))];
        template.extend(extra);
        t.generate(CKM_AES_KEY_GEN, template)
    };
    // No role named: no transport role, the standard's data roles.
    let plain = object(aes(16, vec![]));
    assert_eq!(t.value(plain, CKA_WRAP), Bool(false));
    assert_eq!(t.value(plain, CKA_UNWRAP), Bool(false));
    assert_eq!(t.value(plain, CKA_ENCRYPT), Bool(true));
    // Transport asked: everything else false.
    let kek = object(aes(
        32,
        vec![a(CKA_WRAP, Bool(true)), a(CKA_UNWRAP, Bool(true))],
    ));
    for attr in [CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_DERIVE] {
        assert_eq!(t.value(kek, attr), Bool(false), "{attr:#x}");
    }
    // Transport with anything else: refused, on every way a key is made.
    for other in [CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_DERIVE] {
        assert_eq!(
            aes(16, vec![a(CKA_WRAP, Bool(true)), a(other, Bool(true))]),
            err(CKR_TEMPLATE_INCONSISTENT)
        );
    }
    let created = |extra: Vec<Attribute>| {
        let mut template = vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
            a(CKA_VALUE, Bytes(KEY16.to_vec())),
        ];
        template.extend(extra);
        t.ask(Request::CreateObject {
            session: t.h,
            template,
        })
    };
    assert_eq!(
        created(vec![a(CKA_UNWRAP, Bool(true)), a(CKA_ENCRYPT, Bool(true))]),
        err(CKR_TEMPLATE_INCONSISTENT)
    );
    assert_eq!(
        t.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                a(CKA_EC_PARAMS, Bytes(P256_OID.to_vec())),
                a(CKA_WRAP, Bool(true))
            ],
            vec![a(CKA_SIGN, Bool(true))],
        ),
        err(CKR_TEMPLATE_INCONSISTENT)
    );
    // Wrapping: a generated KEK wraps a data key.
    let target = object(aes(16, vec![a(CKA_EXTRACTABLE, Bool(true))]));
    let wrap = |wrapping_key, key| {
        t.ask(Request::WrapKey {
            session: t.h,
            mechanism: m(CKM_AES_KEY_WRAP),
            wrapping_key,
            key,
            out: BIG,
        })
    };
    let blob = data(wrap(kek, target));
    // ... but not a stronger key, nor under a key made from a value, and
    // a transport key not outside a key block.
    let strong = object(aes(32, vec![a(CKA_EXTRACTABLE, Bool(true))]));
    let weak_kek = object(aes(16, vec![a(CKA_WRAP, Bool(true))]));
    assert_eq!(wrap(weak_kek, strong), err(CKR_WRAPPING_KEY_SIZE_RANGE));
    let known = object(created(vec![a(CKA_WRAP, Bool(true))]));
    assert_eq!(wrap(known, target), err(CKR_KEY_FUNCTION_NOT_PERMITTED));
    let movable_kek = object(aes(
        16,
        vec![a(CKA_WRAP, Bool(true)), a(CKA_EXTRACTABLE, Bool(true))],
    ));
    assert_eq!(wrap(kek, movable_kek), err(CKR_KEY_NOT_WRAPPABLE));
    // Unwrapped: no decrypting copy of a transport key; a data copy only.
    let unwrap = |template: Vec<Attribute>| {
        let mut full = vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
        ];
        full.extend(template);
        t.ask(Request::UnwrapKey {
            session: t.h,
            mechanism: m(CKM_AES_KEY_WRAP),
            unwrapping_key: kek,
            wrapped_key: blob.clone(),
            template: full,
        })
    };
    assert_eq!(
        unwrap(vec![a(CKA_WRAP, Bool(true)), a(CKA_DECRYPT, Bool(true))]),
        err(CKR_TEMPLATE_INCONSISTENT)
    );
    // The wrap ledger: no transport copy of a data key, and no key out of
    // a blob this partition never made.
    assert_eq!(
        unwrap(vec![a(CKA_WRAP, Bool(true))]),
        err(CKR_TEMPLATE_INCONSISTENT)
    );
    object(unwrap(vec![a(CKA_ENCRYPT, Bool(true))]));
    let foreign = t.ask(Request::UnwrapKey {
        session: t.h,
        mechanism: m(CKM_AES_KEY_WRAP),
        unwrapping_key: kek,
        wrapped_key: vec![0x5a; 24],
        template: vec![
            a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, Ulong(CKK_AES)),
        ],
    });
    assert_eq!(foreign, err(CKR_WRAPPED_KEY_INVALID));
    // Derivation keeps the base key's strength (up to 128 bits).
    let base = object(aes(32, vec![a(CKA_DERIVE, Bool(true))]));
    let derive = |len: u64| {
        t.ask(Request::DeriveKey {
            session: t.h,
            mechanism: mp(
                CKM_AES_ECB_ENCRYPT_DATA,
                MechanismParams::KeyDerivationString(vec![7; 32]),
            ),
            base_key: base,
            template: vec![
                a(CKA_CLASS, Ulong(CKO_SECRET_KEY)),
                a(CKA_KEY_TYPE, Ulong(CKK_GENERIC_SECRET)),
                a(CKA_VALUE_LEN, Ulong(len)),
            ],
        })
    };
    let before = find_all(&t).len();
    assert_eq!(derive(8), err(CKR_TEMPLATE_INCONSISTENT));
    assert_eq!(find_all(&t).len(), before);
    object(derive(16));

    // A relaxed partition: the standard's rules only (and sticky usage).
    let r = setup_relaxed();
    let all_roles = r.generate(
        CKM_AES_KEY_GEN,
        vec![
            a(CKA_VALUE_LEN, Ulong(16)),
            a(CKA_WRAP, Bool(true)),
            a(CKA_DECRYPT, Bool(true)),
        ],
    );
    object(all_roles);
}

fn find_all(t: &T) -> Vec<ObjectHandle> {
    assert_eq!(
        t.ask(Request::FindObjectsInit {
            session: t.h,
            template: vec![]
        }),
        ok()
    );
    let found = match t.ask(Request::FindObjects {
        session: t.h,
        max_count: 1000,
    }) {
        Response {
            body: ResponseBody::Objects(o),
            ..
        } => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(t.ask(Request::FindObjectsFinal { session: t.h }), ok());
    found
}
