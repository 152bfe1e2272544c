//! Mechanisms, owned, so that each thread rebuilds one per iteration with
//! its parameters borrowed from a local buffer.

use std::ffi::c_ulong;

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};

/// `CK_AES_CTR_PARAMS`, which the vendor SM4-CTR mechanism takes too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CtrParams {
    counter_bits: c_ulong,
    cb: [u8; 16],
}

/// Where a built mechanism's parameters live.
#[derive(Debug, Default)]
pub struct MechBuf {
    iv: [u8; 16],
    ctr: CtrParams,
}

#[derive(Clone, Copy, Debug)]
pub enum Mech {
    Vendor(u64),
    /// A vendor mechanism whose parameter is a 16-byte IV.
    VendorIv(u64, [u8; 16]),
    /// A vendor mechanism taking `CK_AES_CTR_PARAMS` (128-bit counter).
    VendorCtr(u64, [u8; 16]),
    Ecdsa,
    Sha256RsaPkcs,
    Sha256,
    Sha256Hmac,
    AesCbc([u8; 16]),
    AesGcm([u8; 12]),
    AesKeyGen,
    GenericSecretKeyGen,
    EccKeyPairGen,
    RsaKeyPairGen,
}

impl Mech {
    /// The cryptoki mechanism; its parameters point into `buf`.
    pub fn build<'a>(&self, buf: &'a mut MechBuf) -> Result<Mechanism<'a>, CkError> {
        Ok(match *self {
            Mech::Vendor(t) => Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                MechanismType::new_vendor_defined(t)?,
                None,
            )),
            Mech::VendorIv(t, value) => {
                buf.iv = value;
                let iv: &'a [u8; 16] = &buf.iv;
                Mechanism::VendorDefined(VendorDefinedMechanism::new(
                    MechanismType::new_vendor_defined(t)?,
                    Some(iv),
                ))
            }
            Mech::VendorCtr(t, block) => {
                buf.ctr = CtrParams {
                    counter_bits: 128,
                    cb: block,
                };
                let params: &'a CtrParams = &buf.ctr;
                Mechanism::VendorDefined(VendorDefinedMechanism::new(
                    MechanismType::new_vendor_defined(t)?,
                    Some(params),
                ))
            }
            Mech::Ecdsa => Mechanism::Ecdsa,
            Mech::Sha256RsaPkcs => Mechanism::Sha256RsaPkcs,
            Mech::Sha256 => Mechanism::Sha256,
            Mech::Sha256Hmac => Mechanism::Sha256Hmac,
            Mech::AesCbc(value) => Mechanism::AesCbc(value),
            Mech::AesGcm(value) => {
                buf.iv[..12].copy_from_slice(&value);
                Mechanism::AesGcm(GcmParams::new(&mut buf.iv[..12], &[], 128.into())?)
            }
            Mech::AesKeyGen => Mechanism::AesKeyGen,
            Mech::GenericSecretKeyGen => Mechanism::GenericSecretKeyGen,
            Mech::EccKeyPairGen => Mechanism::EccKeyPairGen,
            Mech::RsaKeyPairGen => Mechanism::RsaPkcsKeyPairGen,
        })
    }
}
