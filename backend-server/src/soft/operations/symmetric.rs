//! Digests (`CKM_SHA*`, SM3), MACs (HMAC, CMAC, the TDES CBC-MAC) and
//! block-cipher modes (AES and SM4: ECB, CBC, CBC-PAD, CTR, GCM, AES-CCM;
//! TDES: ECB, CBC, CBC-PAD) as [`Operation`]s.

use cryptoki_sys::{
    CKR_FUNCTION_FAILED, CKR_MECHANISM_PARAM_INVALID, CKR_OPERATION_NOT_INITIALIZED,
};
use hsmlink_crypto::cipher::{self, CipherCtx, Direction, Mode};
use hsmlink_crypto::digest::{DigestAlg, Hasher};
use hsmlink_crypto::mac::{MacAlg, MacCtx};
use hsmlink_crypto::tdes::{self, TdesCtx};
use hsmlink_protocol::{Mechanism, MechanismParams};
use zeroize::Zeroizing;

use super::{Family, Key, ModeKind, ck, no_params};
use crate::driver::{OpKind, Operation, OutLen, Step};
use crate::error::{CkResult, Ckr};

/// The engine is gone: the operation finished (the session layer ends it
/// then, so this is never seen by a client).
fn finished() -> Ckr {
    Ckr(CKR_OPERATION_NOT_INITIALIZED)
}

/// `C_Digest*`.
#[derive(Debug)]
pub struct DigestOp {
    alg: DigestAlg,
    hasher: Option<Hasher>,
}

impl DigestOp {
    pub fn new(alg: DigestAlg) -> Self {
        Self {
            alg,
            hasher: Some(Hasher::new(alg)),
        }
    }
}

impl Operation for DigestOp {
    fn output_len(&self, _step: Step, _input_len: usize) -> CkResult<OutLen> {
        Ok(OutLen::Exact(self.alg.output_len()))
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        self.hasher.as_mut().ok_or_else(finished)?.update(input);
        Ok(Zeroizing::new(Vec::new()))
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(
            self.hasher.take().ok_or_else(finished)?.finalize(),
        ))
    }
}

/// `C_Sign*`/`C_Verify*` with HMAC or CMAC.
#[derive(Debug)]
pub struct MacOp {
    len: usize,
    ctx: Option<MacCtx>,
}

impl Operation for MacOp {
    fn output_len(&self, _step: Step, _input_len: usize) -> CkResult<OutLen> {
        Ok(OutLen::Exact(self.len))
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        self.ctx.as_mut().ok_or_else(finished)?.update(input);
        Ok(Zeroizing::new(Vec::new()))
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(
            self.ctx.take().ok_or_else(finished)?.finalize(),
        ))
    }

    fn verify_final(&mut self, signature: &[u8]) -> CkResult<()> {
        self.ctx
            .take()
            .ok_or_else(finished)?
            .verify(signature)
            .map_err(ck)
    }
}

/// `C_Encrypt*`/`C_Decrypt*` with a block cipher mode.
#[derive(Debug)]
pub struct CipherOp {
    mode: Mode,
    dir: Direction,
    ctx: Option<CipherCtx>,
}

impl Operation for CipherOp {
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen> {
        let ctx = self.ctx.as_ref().ok_or_else(finished)?;
        let pad_decrypt =
            matches!(self.mode, Mode::CbcPad { .. }) && self.dir == Direction::Decrypt;
        Ok(match step {
            Step::Update => OutLen::Exact(ctx.update_len(input_len)),
            Step::Final if pad_decrypt => OutLen::AtMost(ctx.final_len()),
            Step::Final => OutLen::Exact(ctx.final_len()),
            Step::Single | Step::SignDigest => {
                let n = cipher::output_len(&self.mode, self.dir, input_len);
                if pad_decrypt {
                    OutLen::AtMost(n)
                } else {
                    OutLen::Exact(n)
                }
            }
        })
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let ctx = self.ctx.as_mut().ok_or_else(finished)?;
        ctx.update(input).map(Zeroizing::new).map_err(ck)
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        let ctx = self.ctx.take().ok_or_else(finished)?;
        ctx.finalize().map(Zeroizing::new).map_err(ck)
    }
}

/// `C_Encrypt*`/`C_Decrypt*` (and single-part wrapping) with a TDES mode.
#[derive(Debug)]
pub struct TdesOp {
    mode: tdes::Mode,
    dir: Direction,
    ctx: Option<TdesCtx>,
}

impl Operation for TdesOp {
    fn output_len(&self, step: Step, input_len: usize) -> CkResult<OutLen> {
        let ctx = self.ctx.as_ref().ok_or_else(finished)?;
        let pad_decrypt =
            matches!(self.mode, tdes::Mode::CbcPad { .. }) && self.dir == Direction::Decrypt;
        Ok(match step {
            Step::Update => OutLen::Exact(ctx.update_len(input_len)),
            Step::Final if pad_decrypt => OutLen::AtMost(ctx.final_len()),
            Step::Final => OutLen::Exact(ctx.final_len()),
            Step::Single | Step::SignDigest => {
                let n = tdes::output_len(&self.mode, self.dir, input_len);
                if pad_decrypt {
                    OutLen::AtMost(n)
                } else {
                    OutLen::Exact(n)
                }
            }
        })
    }

    fn update(&mut self, input: &[u8]) -> CkResult<Zeroizing<Vec<u8>>> {
        let ctx = self.ctx.as_mut().ok_or_else(finished)?;
        ctx.update(input).map(Zeroizing::new).map_err(ck)
    }

    fn finish(&mut self) -> CkResult<Zeroizing<Vec<u8>>> {
        let ctx = self.ctx.take().ok_or_else(finished)?;
        ctx.finalize().map(Zeroizing::new).map_err(ck)
    }
}

/// The mode and IV of a TDES mechanism (an 8-byte IV for CBC and CBC-PAD).
pub fn tdes_mode(kind: ModeKind, mechanism: &Mechanism) -> CkResult<tdes::Mode> {
    Ok(match (kind, &mechanism.params) {
        (ModeKind::Ecb, MechanismParams::None) => tdes::Mode::Ecb,
        (ModeKind::Cbc, MechanismParams::Iv(iv)) => tdes::Mode::Cbc {
            iv: tdes::block_param(iv).map_err(ck)?,
        },
        (ModeKind::CbcPad, MechanismParams::Iv(iv)) => tdes::Mode::CbcPad {
            iv: tdes::block_param(iv).map_err(ck)?,
        },
        _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    })
}

/// The mode and parameters of a block-cipher mechanism.
pub fn mode(kind: ModeKind, mechanism: &Mechanism) -> CkResult<Mode> {
    let invalid = Ckr(CKR_MECHANISM_PARAM_INVALID);
    Ok(match (kind, &mechanism.params) {
        (ModeKind::Ecb, MechanismParams::None) => Mode::Ecb,
        (ModeKind::Cbc, MechanismParams::Iv(iv)) => Mode::Cbc {
            iv: cipher::block_param(iv).map_err(ck)?,
        },
        (ModeKind::CbcPad, MechanismParams::Iv(iv)) => Mode::CbcPad {
            iv: cipher::block_param(iv).map_err(ck)?,
        },
        (
            ModeKind::Ctr,
            MechanismParams::AesCtr {
                counter_bits,
                counter_block,
            },
        ) => Mode::Ctr {
            counter_block: *counter_block,
            counter_bits: u32::try_from(*counter_bits).map_err(|_| invalid)?,
        },
        (
            ModeKind::Gcm,
            MechanismParams::AesGcm {
                iv,
                iv_bits,
                aad,
                tag_bits,
            },
        ) => {
            // ulIvBits, when given, must agree with ulIvLen.
            if *iv_bits != 0 && *iv_bits != (iv.len() as u64) * 8 {
                return Err(invalid);
            }
            Mode::Gcm {
                iv: iv.clone(),
                aad: aad.clone(),
                tag_bits: u32::try_from(*tag_bits).map_err(|_| invalid)?,
            }
        }
        (
            ModeKind::Ccm,
            MechanismParams::AesCcm {
                data_len,
                nonce,
                aad,
                mac_len,
            },
        ) => Mode::Ccm {
            nonce: nonce.clone(),
            aad: aad.clone(),
            mac_len: usize::try_from(*mac_len).map_err(|_| invalid)?,
            data_len: Some(usize::try_from(*data_len).map_err(|_| invalid)?),
        },
        _ => return Err(invalid),
    })
}

/// The output length a `*_GENERAL` MAC mechanism asks for.
fn general_len(mechanism: &Mechanism) -> CkResult<usize> {
    match mechanism.params {
        MechanismParams::MacGeneral(n) | MechanismParams::Ulong(n) => {
            usize::try_from(n).map_err(|_| Ckr(CKR_MECHANISM_PARAM_INVALID))
        }
        _ => Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    }
}

/// Starts a MAC or cipher operation (the key's type has been checked).
pub fn begin(
    kind: OpKind,
    family: Family,
    mechanism: &Mechanism,
    key: &Key,
) -> CkResult<Box<dyn Operation>> {
    let value = key.value()?;
    let dir = match kind {
        OpKind::Encrypt => Direction::Encrypt,
        _ => Direction::Decrypt,
    };
    match family {
        Family::Hmac(_, general) | Family::Cmac(_, general) | Family::TdesMac(_, general) => {
            let alg = match family {
                Family::Hmac(d, _) => MacAlg::Hmac(d),
                Family::Cmac(hsmlink_crypto::cipher::BlockAlg::Aes, _) => MacAlg::CmacAes,
                Family::TdesMac(mac_kind, _) => MacAlg::Tdes(mac_kind),
                _ => MacAlg::CmacSm4,
            };
            let out_len = if general {
                Some(general_len(mechanism)?)
            } else {
                no_params(mechanism)?;
                None
            };
            let ctx = MacCtx::new(alg, &value, out_len).map_err(ck)?;
            Ok(Box::new(MacOp {
                len: ctx.mac_len(),
                ctx: Some(ctx),
            }))
        }
        Family::Cipher(alg, kind_of_mode) => {
            let mode = mode(kind_of_mode, mechanism)?;
            let ctx = CipherCtx::new(alg, &value, &mode, dir).map_err(ck)?;
            Ok(Box::new(CipherOp {
                mode,
                dir,
                ctx: Some(ctx),
            }))
        }
        Family::TdesCipher(kind_of_mode) => {
            let mode = tdes_mode(kind_of_mode, mechanism)?;
            let ctx = TdesCtx::new(&value, &mode, dir).map_err(ck)?;
            Ok(Box::new(TdesOp {
                mode,
                dir,
                ctx: Some(ctx),
            }))
        }
        _ => Err(Ckr(CKR_FUNCTION_FAILED)),
    }
}
