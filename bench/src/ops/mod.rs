//! The operations the tool measures: what each needs from the module
//! (mechanisms), its keys and inputs made up front, and one iteration,
//! issued as applications issue it through cryptoki (init, length query,
//! call).

mod catalog;
mod mech;

use cryptoki::context::Pkcs11;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

pub use catalog::{OpName, Sizes};
use mech::{Mech, MechBuf};

/// hsmlink's vendor numbers (`include/hsmlink.h`).
pub mod vendor {
    pub const CKM_SM2_KEY_PAIR_GEN: u64 = 0xC853_0100;
    pub const CKM_SM2: u64 = 0xC853_0101;
    pub const CKM_SM2_SM3: u64 = 0xC853_0102;
    pub const CKM_SM3: u64 = 0xC853_0110;
    pub const CKM_SM4_KEY_GEN: u64 = 0xC853_0120;
    pub const CKM_SM4_ECB: u64 = 0xC853_0121;
    pub const CKM_SM4_CBC: u64 = 0xC853_0122;
    pub const CKM_SM4_CTR: u64 = 0xC853_0124;
}

/// DER of the P-256 curve OID (CKA_EC_PARAMS).
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Label of the key `find-objects` looks for.
const FIND_LABEL: &str = "hsmlink-bench find-objects target";

/// What preparing an operation works with.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub pkcs11: &'a Pkcs11,
    pub slot: Slot,
    /// The logged-in session that makes the keys and keeps them alive.
    pub session: &'a Session,
    /// Whether the token supports a mechanism (by number).
    pub supported: &'a dyn Fn(u64) -> bool,
}

/// What one iteration does.
#[derive(Debug)]
enum Work {
    Sign {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
    },
    Verify {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
        signature: Vec<u8>,
    },
    Digest {
        mech: Mech,
        data: Vec<u8>,
    },
    Encrypt {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
    },
    /// `data` is ciphertext made up front.
    Decrypt {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
    },
    Mac {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
    },
    Random {
        len: usize,
    },
    GetAttribute {
        key: ObjectHandle,
    },
    Find {
        template: Vec<Attribute>,
    },
    OpenClose {
        pkcs11: Pkcs11,
        slot: Slot,
    },
    KeyGen {
        mech: Mech,
        template: Vec<Attribute>,
    },
    KeyPairGen {
        mech: Mech,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    },
}

/// An operation ready to run: keys made, inputs chosen.
#[derive(Debug)]
pub struct Prepared {
    work: Work,
    bytes: usize,
    chunk: usize,
    single_part: bool,
    /// Keys made for the operation, destroyed by [`Prepared::cleanup`].
    keys: Vec<ObjectHandle>,
}

/// Why an operation cannot run on this module.
#[derive(Debug)]
pub enum NotRun {
    /// The module does not list a mechanism the operation needs.
    Unsupported(String),
    /// Setting up failed (key generation, the signature to verify, ...).
    Failed(String),
}

/// The short form of a cryptoki error: function and `CKR_` name.
pub fn ck_error(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => format!("{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

fn failed(what: &str) -> impl Fn(CkError) -> NotRun + '_ {
    move |e| NotRun::Failed(format!("{what}: {}", ck_error(&e)))
}

/// Data of `len` bytes that is not all zeros.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Key-pair generation mechanism and public/private templates of a
/// signing operation's key pair.
fn key_pair_spec(op: OpName) -> (Mech, Vec<Attribute>, Vec<Attribute>) {
    let (mech, mut public) = match op {
        OpName::SignSm2 | OpName::VerifySm2 | OpName::SignSm2Raw => {
            (Mech::Vendor(vendor::CKM_SM2_KEY_PAIR_GEN), vec![])
        }
        OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 | OpName::KeygenEcP256 => (
            Mech::EccKeyPairGen,
            vec![Attribute::EcParams(P256_OID.to_vec())],
        ),
        _ => (
            Mech::RsaKeyPairGen,
            vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
        ),
    };
    public.extend([Attribute::Token(false), Attribute::Verify(true)]);
    let private = vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    (mech, public, private)
}

/// Key generation mechanism and template of a secret key for `op`.
fn secret_key_spec(op: OpName) -> (Mech, Vec<Attribute>) {
    let (mech, len, sign) = match op {
        OpName::Sm4Cbc
        | OpName::Sm4CbcDecrypt
        | OpName::Sm4Ctr
        | OpName::Sm4Ecb
        | OpName::KeygenSm4 => (Mech::Vendor(vendor::CKM_SM4_KEY_GEN), 16u64, false),
        OpName::HmacSha256 => (Mech::GenericSecretKeyGen, 32, true),
        _ => (Mech::AesKeyGen, 32, false),
    };
    let mut template = vec![
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::ValueLen(len.into()),
    ];
    if sign {
        template.extend([Attribute::Sign(true), Attribute::Verify(true)]);
    } else {
        template.extend([Attribute::Encrypt(true), Attribute::Decrypt(true)]);
    }
    if matches!(op, OpName::GetAttribute | OpName::FindObjects) {
        template.push(Attribute::Label(FIND_LABEL.as_bytes().to_vec()));
    }
    (mech, template)
}

/// Makes the keys and inputs of `op`, if the module supports the
/// mechanisms it needs.
pub fn prepare(op: OpName, env: Env<'_>, sizes: Sizes) -> Result<Prepared, NotRun> {
    let missing: Vec<String> = op
        .required()
        .into_iter()
        .filter(|m| !(env.supported)(*m))
        .map(|m| format!("{m:#x}"))
        .collect();
    if !missing.is_empty() {
        return Err(NotRun::Unsupported(format!(
            "mechanism not listed and refused by C_GetMechanismInfo: {}",
            missing.join(", ")
        )));
    }
    let (size, chunk) = op.sizes(sizes);
    if op.whole_blocks() && (!size.is_multiple_of(16) || size == 0) {
        return Err(NotRun::Failed(format!(
            "{}: --size {size} is not a positive multiple of the block size 16",
            op.name()
        )));
    }
    let session = env.session;
    let data = pattern(size);
    let mut keys = Vec::new();
    let mut buf = MechBuf::default();
    let work = match op {
        OpName::SignSm2
        | OpName::SignSm2Raw
        | OpName::SignEcdsaP256
        | OpName::SignRsa2048
        | OpName::VerifySm2
        | OpName::VerifyEcdsaP256
        | OpName::VerifyRsa2048 => {
            let (gen_mech, public, private) = key_pair_spec(op);
            let (public, private) = session
                .generate_key_pair(
                    &gen_mech.build(&mut buf).map_err(failed("mechanism"))?,
                    &public,
                    &private,
                )
                .map_err(failed("key pair generation"))?;
            keys.extend([public, private]);
            let mech = match op {
                OpName::SignSm2 | OpName::VerifySm2 => Mech::Vendor(vendor::CKM_SM2_SM3),
                OpName::SignSm2Raw => Mech::Vendor(vendor::CKM_SM2),
                OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => Mech::Ecdsa,
                _ => Mech::Sha256RsaPkcs,
            };
            if matches!(
                op,
                OpName::VerifySm2 | OpName::VerifyEcdsaP256 | OpName::VerifyRsa2048
            ) {
                let mechanism = mech.build(&mut buf).map_err(failed("mechanism"))?;
                let signature = session
                    .sign(&mechanism, private, &data)
                    .map_err(failed("signature to verify"))?;
                Work::Verify {
                    mech,
                    key: public,
                    data,
                    signature,
                }
            } else {
                Work::Sign {
                    mech,
                    key: private,
                    data,
                }
            }
        }
        OpName::Sm3 => Work::Digest {
            mech: Mech::Vendor(vendor::CKM_SM3),
            data,
        },
        OpName::Sha256 => Work::Digest {
            mech: Mech::Sha256,
            data,
        },
        OpName::Sm4Cbc
        | OpName::Sm4CbcDecrypt
        | OpName::Sm4Ctr
        | OpName::Sm4Ecb
        | OpName::AesCbc
        | OpName::AesCbcDecrypt
        | OpName::AesGcm => {
            let (gen_mech, template) = secret_key_spec(op);
            let key = session
                .generate_key(
                    &gen_mech.build(&mut buf).map_err(failed("mechanism"))?,
                    &template,
                )
                .map_err(failed("key generation"))?;
            keys.push(key);
            let mech = match op {
                OpName::Sm4Cbc | OpName::Sm4CbcDecrypt => {
                    Mech::VendorIv(vendor::CKM_SM4_CBC, [0x5a; 16])
                }
                OpName::Sm4Ctr => Mech::VendorCtr(vendor::CKM_SM4_CTR, [0x5a; 16]),
                OpName::Sm4Ecb => Mech::Vendor(vendor::CKM_SM4_ECB),
                OpName::AesCbc | OpName::AesCbcDecrypt => Mech::AesCbc([0x5a; 16]),
                _ => Mech::AesGcm([0x5a; 12]),
            };
            if matches!(op, OpName::Sm4CbcDecrypt | OpName::AesCbcDecrypt) {
                let ciphertext = session
                    .encrypt(
                        &mech.build(&mut buf).map_err(failed("mechanism"))?,
                        key,
                        &data,
                    )
                    .map_err(failed("ciphertext to decrypt"))?;
                Work::Decrypt {
                    mech,
                    key,
                    data: ciphertext,
                }
            } else {
                Work::Encrypt { mech, key, data }
            }
        }
        OpName::HmacSha256 | OpName::GetAttribute | OpName::FindObjects => {
            let (gen_mech, template) = secret_key_spec(op);
            let key = session
                .generate_key(
                    &gen_mech.build(&mut buf).map_err(failed("mechanism"))?,
                    &template,
                )
                .map_err(failed("key generation"))?;
            keys.push(key);
            match op {
                OpName::HmacSha256 => Work::Mac {
                    mech: Mech::Sha256Hmac,
                    key,
                    data,
                },
                OpName::GetAttribute => Work::GetAttribute { key },
                _ => Work::Find {
                    template: vec![Attribute::Label(FIND_LABEL.as_bytes().to_vec())],
                },
            }
        }
        OpName::Random => Work::Random { len: size },
        OpName::OpenCloseSession => Work::OpenClose {
            pkcs11: env.pkcs11.clone(),
            slot: env.slot,
        },
        OpName::KeygenAes | OpName::KeygenSm4 => {
            let (mech, template) = secret_key_spec(op);
            Work::KeyGen { mech, template }
        }
        OpName::KeygenEcP256 => {
            let (mech, public, private) = key_pair_spec(op);
            Work::KeyPairGen {
                mech,
                public,
                private,
            }
        }
        OpName::All => return Err(NotRun::Failed("`all` is not an operation".into())),
    };
    let prepared = Prepared {
        work,
        bytes: size,
        chunk,
        single_part: sizes.single_part,
        keys,
    };
    // One iteration now: a module that cannot do it fails here, once,
    // with its error, rather than in every thread.
    let mut scratch = Vec::new();
    if let Err(e) = prepared.run(session, &mut scratch) {
        let what = format!("first {}", op.name());
        prepared.cleanup(session);
        return Err(failed(&what)(e));
    }
    Ok(prepared)
}

impl Prepared {
    /// Bytes of input one iteration processes.
    pub fn bytes_per_op(&self) -> usize {
        self.bytes
    }

    /// Bytes per update call, for a multi-part bulk operation.
    pub fn chunk(&self) -> Option<usize> {
        match self.work {
            Work::Digest { .. }
            | Work::Encrypt { .. }
            | Work::Decrypt { .. }
            | Work::Mac { .. }
                if !self.single_part =>
            {
                Some(self.chunk)
            }
            _ => None,
        }
    }

    /// PKCS#11 calls one iteration makes through cryptoki's safe API, which
    /// asks every output length first (a NULL buffer, then the call again).
    pub fn calls_per_op(&self) -> usize {
        let parts = self.bytes.div_ceil(self.chunk.max(1)).max(1);
        match &self.work {
            Work::Sign { .. } => 3,
            Work::Verify { .. } => 2,
            Work::Random { .. } => 1,
            Work::Digest { .. } | Work::Mac { .. } if self.single_part => 3,
            Work::Digest { .. } | Work::Mac { .. } => 1 + parts + 2,
            Work::Encrypt { .. } | Work::Decrypt { .. } if self.single_part => 3,
            Work::Encrypt { .. } | Work::Decrypt { .. } => 1 + 2 * parts + 2,
            Work::GetAttribute { .. } => 2,
            Work::Find { .. } | Work::KeyPairGen { .. } => 3,
            Work::OpenClose { .. } | Work::KeyGen { .. } => 2,
        }
    }

    /// One iteration on `session`; `scratch` is a reusable output buffer.
    pub fn run(&self, session: &Session, scratch: &mut Vec<u8>) -> Result<(), CkError> {
        let mut buf = MechBuf::default();
        match &self.work {
            Work::Sign { mech, key, data } => {
                let signature = session.sign(&mech.build(&mut buf)?, *key, data)?;
                std::hint::black_box(signature);
            }
            Work::Verify {
                mech,
                key,
                data,
                signature,
            } => session.verify(&mech.build(&mut buf)?, *key, data, signature)?,
            Work::Digest { mech, data } => {
                let mechanism = mech.build(&mut buf)?;
                let digest = if self.single_part {
                    session.digest(&mechanism, data)?
                } else {
                    session.digest_init(&mechanism)?;
                    for part in data.chunks(self.chunk) {
                        session.digest_update(part)?;
                    }
                    session.digest_final()?
                };
                std::hint::black_box(digest);
            }
            Work::Encrypt { mech, key, data } => {
                self.encrypt(session, &mech.build(&mut buf)?, *key, data, scratch)?
            }
            Work::Decrypt { mech, key, data } => {
                self.decrypt(session, &mech.build(&mut buf)?, *key, data, scratch)?
            }
            Work::Mac { mech, key, data } => {
                let mechanism = mech.build(&mut buf)?;
                let mac = if self.single_part {
                    session.sign(&mechanism, *key, data)?
                } else {
                    session.sign_init(&mechanism, *key)?;
                    for part in data.chunks(self.chunk) {
                        session.sign_update(part)?;
                    }
                    session.sign_final()?
                };
                std::hint::black_box(mac);
            }
            Work::Random { len } => {
                scratch.resize(*len, 0);
                session.generate_random_slice(scratch)?;
            }
            Work::GetAttribute { key } => {
                let attributes = session.get_attributes(
                    *key,
                    &[
                        AttributeType::Label,
                        AttributeType::KeyType,
                        AttributeType::ValueLen,
                    ],
                )?;
                std::hint::black_box(attributes);
            }
            Work::Find { template } => {
                let found = session.find_objects(template)?;
                std::hint::black_box(found);
            }
            Work::OpenClose { pkcs11, slot } => {
                // Dropping the session closes it (C_CloseSession).
                drop(pkcs11.open_ro_session(*slot)?);
            }
            Work::KeyGen { mech, template } => {
                let key = session.generate_key(&mech.build(&mut buf)?, template)?;
                session.destroy_object(key)?;
            }
            Work::KeyPairGen {
                mech,
                public,
                private,
            } => {
                let (public, private) =
                    session.generate_key_pair(&mech.build(&mut buf)?, public, private)?;
                session.destroy_object(public)?;
                session.destroy_object(private)?;
            }
        }
        Ok(())
    }

    fn encrypt(
        &self,
        session: &Session,
        mechanism: &Mechanism<'_>,
        key: ObjectHandle,
        data: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), CkError> {
        scratch.clear();
        if self.single_part {
            scratch.extend(session.encrypt(mechanism, key, data)?);
        } else {
            session.encrypt_init(mechanism, key)?;
            for part in data.chunks(self.chunk) {
                scratch.extend(session.encrypt_update(part)?);
            }
            scratch.extend(session.encrypt_final()?);
        }
        std::hint::black_box(&scratch);
        Ok(())
    }

    fn decrypt(
        &self,
        session: &Session,
        mechanism: &Mechanism<'_>,
        key: ObjectHandle,
        data: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), CkError> {
        scratch.clear();
        if self.single_part {
            scratch.extend(session.decrypt(mechanism, key, data)?);
        } else {
            session.decrypt_init(mechanism, key)?;
            for part in data.chunks(self.chunk) {
                scratch.extend(session.decrypt_update(part)?);
            }
            scratch.extend(session.decrypt_final()?);
        }
        std::hint::black_box(&scratch);
        Ok(())
    }

    /// Destroys the operation's keys (session objects; best effort).
    pub fn cleanup(&self, session: &Session) {
        for key in &self.keys {
            let _ = session.destroy_object(*key);
        }
    }
}
