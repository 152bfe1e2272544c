//! The operations the tool measures: what each needs from the module
//! (mechanisms), its keys and inputs made up front, and one iteration.

use clap::ValueEnum;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;

/// hsmlink's vendor numbers (`include/hsmlink.h`).
pub mod vendor {
    pub const CKM_SM2_KEY_PAIR_GEN: u64 = 0xC853_0100;
    pub const CKM_SM2: u64 = 0xC853_0101;
    pub const CKM_SM2_SM3: u64 = 0xC853_0102;
    pub const CKM_SM3: u64 = 0xC853_0110;
    pub const CKM_SM4_KEY_GEN: u64 = 0xC853_0120;
    pub const CKM_SM4_CBC: u64 = 0xC853_0122;
}

/// DER of the P-256 curve OID (CKA_EC_PARAMS).
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// An operation by name, as `--op` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OpName {
    /// Every operation below, in this order.
    #[value(name = "all")]
    All,
    #[value(name = "sign-sm2")]
    SignSm2,
    #[value(name = "verify-sm2")]
    VerifySm2,
    #[value(name = "sign-sm2-raw")]
    SignSm2Raw,
    #[value(name = "sm3")]
    Sm3,
    #[value(name = "sm4-cbc")]
    Sm4Cbc,
    #[value(name = "sign-ecdsa-p256")]
    SignEcdsaP256,
    #[value(name = "verify-ecdsa-p256")]
    VerifyEcdsaP256,
    #[value(name = "sign-rsa2048")]
    SignRsa2048,
    #[value(name = "verify-rsa2048")]
    VerifyRsa2048,
    #[value(name = "aes-gcm")]
    AesGcm,
    #[value(name = "aes-cbc")]
    AesCbc,
    #[value(name = "sha256")]
    Sha256,
    #[value(name = "random")]
    Random,
    #[value(name = "hmac-sha256")]
    HmacSha256,
}

impl OpName {
    /// Every real operation, in the order `all` runs them.
    pub const EVERY: [OpName; 14] = [
        OpName::SignSm2,
        OpName::VerifySm2,
        OpName::SignSm2Raw,
        OpName::Sm3,
        OpName::Sm4Cbc,
        OpName::SignEcdsaP256,
        OpName::VerifyEcdsaP256,
        OpName::SignRsa2048,
        OpName::VerifyRsa2048,
        OpName::AesGcm,
        OpName::AesCbc,
        OpName::Sha256,
        OpName::Random,
        OpName::HmacSha256,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpName::All => "all",
            OpName::SignSm2 => "sign-sm2",
            OpName::VerifySm2 => "verify-sm2",
            OpName::SignSm2Raw => "sign-sm2-raw",
            OpName::Sm3 => "sm3",
            OpName::Sm4Cbc => "sm4-cbc",
            OpName::SignEcdsaP256 => "sign-ecdsa-p256",
            OpName::VerifyEcdsaP256 => "verify-ecdsa-p256",
            OpName::SignRsa2048 => "sign-rsa2048",
            OpName::VerifyRsa2048 => "verify-rsa2048",
            OpName::AesGcm => "aes-gcm",
            OpName::AesCbc => "aes-cbc",
            OpName::Sha256 => "sha256",
            OpName::Random => "random",
            OpName::HmacSha256 => "hmac-sha256",
        }
    }

    /// One line on what one iteration of the operation is.
    pub fn describe(self) -> &'static str {
        match self {
            OpName::All => "every operation below",
            OpName::SignSm2 => {
                "C_SignInit+C_Sign, CKM_HSMLINK_SM2_SM3 (SM3 over Z||M, default user id) of a --size message (32 B)"
            }
            OpName::VerifySm2 => {
                "C_VerifyInit+C_Verify, CKM_HSMLINK_SM2_SM3 of a --size message (32 B), signature made up front"
            }
            OpName::SignSm2Raw => {
                "C_SignInit+C_Sign, CKM_HSMLINK_SM2 (raw SM2) over a 32-byte prepared digest"
            }
            OpName::Sm3 => {
                "CKM_HSMLINK_SM3 digest of --size bytes (1 MiB) in --chunk parts (64 KiB): C_DigestInit, C_DigestUpdate per chunk, C_DigestFinal"
            }
            OpName::Sm4Cbc => {
                "CKM_HSMLINK_SM4_CBC encryption of --size bytes (1 MiB) in --chunk parts (64 KiB): C_EncryptInit, C_EncryptUpdate per chunk, C_EncryptFinal"
            }
            OpName::SignEcdsaP256 => "C_SignInit+C_Sign, CKM_ECDSA (P-256) over a 32-byte hash",
            OpName::VerifyEcdsaP256 => {
                "C_VerifyInit+C_Verify, CKM_ECDSA (P-256) over a 32-byte hash, signature made up front"
            }
            OpName::SignRsa2048 => {
                "C_SignInit+C_Sign, CKM_SHA256_RSA_PKCS (RSA 2048, e=65537) of a --size message (32 B)"
            }
            OpName::VerifyRsa2048 => {
                "C_VerifyInit+C_Verify, CKM_SHA256_RSA_PKCS (RSA 2048) of a --size message (32 B)"
            }
            OpName::AesGcm => {
                "CKM_AES_GCM (AES-256, 12-byte IV, 128-bit tag) encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::AesCbc => {
                "CKM_AES_CBC (AES-256) encryption of --size bytes (1 MiB) in --chunk parts (64 KiB)"
            }
            OpName::Sha256 => "CKM_SHA256 digest of --size bytes (1 MiB) in --chunk parts (64 KiB)",
            OpName::Random => "C_GenerateRandom of --size bytes (32)",
            OpName::HmacSha256 => {
                "CKM_SHA256_HMAC (32-byte generic secret) of --size bytes (1 KiB) in --chunk parts"
            }
        }
    }

    /// The mechanisms the module must list for the operation to run:
    /// key generation and the operation itself.
    fn required(self) -> Vec<u64> {
        use vendor::*;
        let m = |t: MechanismType| *t;
        match self {
            OpName::All => vec![],
            OpName::SignSm2 | OpName::VerifySm2 => vec![CKM_SM2_KEY_PAIR_GEN, CKM_SM2_SM3],
            OpName::SignSm2Raw => vec![CKM_SM2_KEY_PAIR_GEN, CKM_SM2],
            OpName::Sm3 => vec![CKM_SM3],
            OpName::Sm4Cbc => vec![CKM_SM4_KEY_GEN, CKM_SM4_CBC],
            OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => {
                vec![m(MechanismType::ECC_KEY_PAIR_GEN), m(MechanismType::ECDSA)]
            }
            OpName::SignRsa2048 | OpName::VerifyRsa2048 => vec![
                m(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
                m(MechanismType::SHA256_RSA_PKCS),
            ],
            OpName::AesGcm => vec![m(MechanismType::AES_KEY_GEN), m(MechanismType::AES_GCM)],
            OpName::AesCbc => vec![m(MechanismType::AES_KEY_GEN), m(MechanismType::AES_CBC)],
            OpName::Sha256 => vec![m(MechanismType::SHA256)],
            OpName::Random => vec![],
            OpName::HmacSha256 => vec![
                m(MechanismType::GENERIC_SECRET_KEY_GEN),
                m(MechanismType::SHA256_HMAC),
            ],
        }
    }

    /// Bulk operations report MB/s and Mbit/s.
    pub fn bulk(self) -> bool {
        matches!(
            self,
            OpName::Sm3
                | OpName::Sm4Cbc
                | OpName::AesGcm
                | OpName::AesCbc
                | OpName::Sha256
                | OpName::HmacSha256
        )
    }

    /// Bytes per operation and bytes per update call.
    pub fn sizes(self, sizes: Sizes) -> (usize, usize) {
        let size = match self {
            // Raw signature mechanisms sign a digest: 32 bytes.
            OpName::SignSm2Raw | OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => 32,
            _ => sizes.size.unwrap_or_else(|| self.default_size()),
        };
        let chunk = if matches!(self, OpName::Sm4Cbc | OpName::AesCbc) {
            // Whole blocks per update, so every update returns its share.
            (sizes.chunk / 16).max(1) * 16
        } else {
            sizes.chunk.max(1)
        };
        (size, chunk)
    }

    fn default_size(self) -> usize {
        match self {
            OpName::Sm3 | OpName::Sm4Cbc | OpName::AesGcm | OpName::AesCbc | OpName::Sha256 => {
                1 << 20
            }
            OpName::HmacSha256 => 1024,
            _ => 32,
        }
    }
}

/// Input sizes chosen on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Bytes per operation (`--size`); the operation's default if `None`.
    pub size: Option<usize>,
    /// Bytes per update call of a bulk operation (`--chunk`).
    pub chunk: usize,
    /// One single-part call per bulk operation instead of updates.
    pub single_part: bool,
}

/// A mechanism, owned, so that it can be rebuilt (with its parameters
/// borrowed from a local IV) in every thread.
#[derive(Clone, Copy, Debug)]
enum Mech {
    Vendor(u64),
    VendorIv(u64, [u8; 16]),
    Ecdsa,
    Sha256RsaPkcs,
    Sha256,
    Sha256Hmac,
    AesCbc([u8; 16]),
    AesGcm([u8; 12]),
}

impl Mech {
    /// The cryptoki mechanism; `iv` is scratch space its parameters point to.
    fn build<'a>(&self, iv: &'a mut [u8; 16]) -> Result<Mechanism<'a>, CkError> {
        Ok(match *self {
            Mech::Vendor(t) => Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                MechanismType::new_vendor_defined(t)?,
                None,
            )),
            Mech::VendorIv(t, value) => {
                *iv = value;
                let iv: &'a [u8; 16] = iv;
                Mechanism::VendorDefined(VendorDefinedMechanism::new(
                    MechanismType::new_vendor_defined(t)?,
                    Some(iv),
                ))
            }
            Mech::Ecdsa => Mechanism::Ecdsa,
            Mech::Sha256RsaPkcs => Mechanism::Sha256RsaPkcs,
            Mech::Sha256 => Mechanism::Sha256,
            Mech::Sha256Hmac => Mechanism::Sha256Hmac,
            Mech::AesCbc(value) => Mechanism::AesCbc(value),
            Mech::AesGcm(value) => {
                iv[..12].copy_from_slice(&value);
                Mechanism::AesGcm(GcmParams::new(&mut iv[..12], &[], 128.into())?)
            }
        })
    }
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
    Mac {
        mech: Mech,
        key: ObjectHandle,
        data: Vec<u8>,
    },
    Random {
        len: usize,
    },
}

/// An operation ready to run: keys made, inputs chosen.
#[derive(Debug)]
pub struct Prepared {
    work: Work,
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

fn vendor_mech(t: u64) -> Result<Mechanism<'static>, NotRun> {
    Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
        MechanismType::new_vendor_defined(t).map_err(failed("vendor mechanism"))?,
        None,
    )))
}

fn key_pair(
    session: &Session,
    op: OpName,
) -> Result<(ObjectHandle, ObjectHandle, Mechanism<'static>), NotRun> {
    let (gen_mech, mut public, sign) = match op {
        OpName::SignSm2 | OpName::VerifySm2 => (
            vendor_mech(vendor::CKM_SM2_KEY_PAIR_GEN)?,
            vec![],
            vendor_mech(vendor::CKM_SM2_SM3)?,
        ),
        OpName::SignSm2Raw => (
            vendor_mech(vendor::CKM_SM2_KEY_PAIR_GEN)?,
            vec![],
            vendor_mech(vendor::CKM_SM2)?,
        ),
        OpName::SignEcdsaP256 | OpName::VerifyEcdsaP256 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(P256_OID.to_vec())],
            Mechanism::Ecdsa,
        ),
        _ => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
            Mechanism::Sha256RsaPkcs,
        ),
    };
    public.extend([Attribute::Token(false), Attribute::Verify(true)]);
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    let (public, private) = session
        .generate_key_pair(&gen_mech, &public, &private)
        .map_err(failed("key pair generation"))?;
    Ok((public, private, sign))
}

fn secret_key(session: &Session, op: OpName) -> Result<ObjectHandle, NotRun> {
    let (mech, len, usage) = match op {
        OpName::Sm4Cbc => (vendor_mech(vendor::CKM_SM4_KEY_GEN)?, 16u64, "encrypt"),
        OpName::HmacSha256 => (Mechanism::GenericSecretKeyGen, 32, "sign"),
        _ => (Mechanism::AesKeyGen, 32, "encrypt"),
    };
    let mut template = vec![
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::ValueLen(len.into()),
    ];
    if usage == "sign" {
        template.extend([Attribute::Sign(true), Attribute::Verify(true)]);
    } else {
        template.extend([Attribute::Encrypt(true), Attribute::Decrypt(true)]);
    }
    session
        .generate_key(&mech, &template)
        .map_err(failed("key generation"))
}

/// Makes the keys and inputs of `op` with `session` (logged in), if the
/// module supports the mechanisms it needs (`supported`).
pub fn prepare(
    op: OpName,
    session: &Session,
    supported: &dyn Fn(u64) -> bool,
    sizes: Sizes,
) -> Result<Prepared, NotRun> {
    let missing: Vec<String> = op
        .required()
        .into_iter()
        .filter(|m| !supported(*m))
        .map(|m| format!("{m:#x}"))
        .collect();
    if !missing.is_empty() {
        return Err(NotRun::Unsupported(format!(
            "mechanism not listed and refused by C_GetMechanismInfo: {}",
            missing.join(", ")
        )));
    }
    let (size, chunk) = op.sizes(sizes);
    if matches!(op, OpName::Sm4Cbc | OpName::AesCbc) && (!size.is_multiple_of(16) || size == 0) {
        return Err(NotRun::Failed(format!(
            "{}: --size {size} is not a positive multiple of the block size 16",
            op.name()
        )));
    }
    let data = pattern(size);
    let mut keys = Vec::new();
    let work = match op {
        OpName::SignSm2
        | OpName::SignSm2Raw
        | OpName::SignEcdsaP256
        | OpName::SignRsa2048
        | OpName::VerifySm2
        | OpName::VerifyEcdsaP256
        | OpName::VerifyRsa2048 => {
            let (public, private, _) = key_pair(session, op)?;
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
                let mut iv = [0u8; 16];
                let mechanism = mech.build(&mut iv).map_err(failed("mechanism"))?;
                let signature = session
                    .sign(&mechanism, private, &data)
                    .map_err(failed("signature to verify"))?;
                session
                    .verify(&mechanism, public, &data, &signature)
                    .map_err(failed("first verification"))?;
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
        OpName::Sm4Cbc | OpName::AesCbc | OpName::AesGcm => {
            let key = secret_key(session, op)?;
            keys.push(key);
            let mech = match op {
                OpName::Sm4Cbc => Mech::VendorIv(vendor::CKM_SM4_CBC, [0x5a; 16]),
                OpName::AesCbc => Mech::AesCbc([0x5a; 16]),
                _ => Mech::AesGcm([0x5a; 12]),
            };
            Work::Encrypt { mech, key, data }
        }
        OpName::HmacSha256 => {
            let key = secret_key(session, op)?;
            keys.push(key);
            Work::Mac {
                mech: Mech::Sha256Hmac,
                key,
                data,
            }
        }
        OpName::Random => Work::Random { len: size },
        OpName::All => return Err(NotRun::Failed("`all` is not an operation".into())),
    };
    let prepared = Prepared {
        work,
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
        match &self.work {
            Work::Sign { data, .. }
            | Work::Verify { data, .. }
            | Work::Digest { data, .. }
            | Work::Encrypt { data, .. }
            | Work::Mac { data, .. } => data.len(),
            Work::Random { len } => *len,
        }
    }

    /// Bytes per update call, for a multi-part bulk operation.
    pub fn chunk(&self) -> Option<usize> {
        match self.work {
            Work::Digest { .. } | Work::Encrypt { .. } | Work::Mac { .. } if !self.single_part => {
                Some(self.chunk)
            }
            _ => None,
        }
    }

    /// PKCS#11 calls one iteration makes through cryptoki's safe API, which
    /// asks every output length first (a NULL buffer, then the call again).
    pub fn calls_per_op(&self) -> usize {
        let parts = self.bytes_per_op().div_ceil(self.chunk.max(1)).max(1);
        match &self.work {
            Work::Sign { .. } => 3,
            Work::Verify { .. } => 2,
            Work::Random { .. } => 1,
            Work::Digest { .. } | Work::Mac { .. } if self.single_part => 3,
            Work::Digest { .. } | Work::Mac { .. } => 1 + parts + 2,
            Work::Encrypt { .. } if self.single_part => 3,
            Work::Encrypt { .. } => 1 + 2 * parts + 2,
        }
    }

    /// One iteration on `session`; `scratch` is a reusable output buffer.
    pub fn run(&self, session: &Session, scratch: &mut Vec<u8>) -> Result<(), CkError> {
        let mut iv = [0u8; 16];
        match &self.work {
            Work::Sign { mech, key, data } => {
                let signature = session.sign(&mech.build(&mut iv)?, *key, data)?;
                std::hint::black_box(signature);
            }
            Work::Verify {
                mech,
                key,
                data,
                signature,
            } => session.verify(&mech.build(&mut iv)?, *key, data, signature)?,
            Work::Digest { mech, data } => {
                let mechanism = mech.build(&mut iv)?;
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
                let mechanism = mech.build(&mut iv)?;
                scratch.clear();
                if self.single_part {
                    scratch.extend(session.encrypt(&mechanism, *key, data)?);
                } else {
                    session.encrypt_init(&mechanism, *key)?;
                    for part in data.chunks(self.chunk) {
                        scratch.extend(session.encrypt_update(part)?);
                    }
                    scratch.extend(session.encrypt_final()?);
                }
                std::hint::black_box(&scratch);
            }
            Work::Mac { mech, key, data } => {
                let mechanism = mech.build(&mut iv)?;
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
        }
        Ok(())
    }

    /// Destroys the operation's keys (session objects; best effort).
    pub fn cleanup(&self, session: &Session) {
        for key in &self.keys {
            let _ = session.destroy_object(*key);
        }
    }
}
