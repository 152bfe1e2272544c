//! `C_WrapKey`, `C_UnwrapKey` and `C_DeriveKey` (PKCS#11 3.0 sections
//! 5.18.3 to 5.18.5): secret keys wrapped with AES key wrap (RFC 3394,
//! RFC 5649) or RSA (PKCS#1 v1.5, OAEP); keys derived with ECDH
//! (`CKD_NULL`, `CKD_SHA*_KDF`) or by AES encryption of data
//! (`CKM_AES_ECB_ENCRYPT_DATA`, `CKM_AES_CBC_ENCRYPT_DATA`); and ANSI
//! X9.143 / ISO 20038 ("TR-31") key blocks, versions `D` (AES KBPK), `B`
//! and `C` (TDES KBPK) (`CKM_HSMLINK_TR31`), and TR-34 key tokens
//! (`CKM_HSMLINK_TR34`), whose header becomes the key's attributes and
//! stays on it ([`keyblock_permits`]).

use cryptoki_sys::*;
use hsmlink_crypto::cipher::{self, BlockAlg, Mode};
use hsmlink_crypto::digest::DigestAlg;
use hsmlink_crypto::ec::{self, EcdhKdf};
use hsmlink_crypto::keyblock::{self, Header, KeyBlockError};
use hsmlink_crypto::sm2_exchange;
use hsmlink_crypto::tr34::{self, Freshness, Tr34Error, Trust};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::{
    CKA_HSMLINK_KEY_VERSION, CKA_HSMLINK_KEYBLOCK_HEADER, CKK_HSMLINK_SM4, CKM_HSMLINK_TR31,
};
use hsmlink_protocol::{Attribute, AttributeValue, Mechanism, MechanismParams, ObjectHandle};
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

use super::asymmetric::{curve_of, decode_point, scalar};
use super::{Family, Key, capabilities, check_key_type, ck, key_of, no_params, route};
use crate::attributes::{Origin, boolean, template_map, token_made_key, ulong};
use crate::driver::{ObjectContext, OpKind};
use crate::error::{CkResult, Ckr};
use crate::soft::partition::{SoftPartition, actor, new_object_id};

/// An SM4 key's length in bytes.
const SM4_KEY_LEN: usize = 16;

fn family_for(mechanism: &Mechanism, flag: CK_FLAGS) -> CkResult<Family> {
    let family = route(mechanism.mechanism.0).ok_or(Ckr(CKR_MECHANISM_INVALID))?;
    if capabilities(family) & flag == 0 {
        return Err(Ckr(CKR_MECHANISM_INVALID));
    }
    Ok(family)
}

/// Replaces one code by another (a key-handle error of the wrapping key
/// is a wrapping-key error).
fn rename(from: CK_RV, to: CK_RV) -> impl Fn(Ckr) -> Ckr {
    move |e| if e.0 == from { Ckr(to) } else { e }
}

pub fn wrap_key(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    mechanism: &Mechanism,
    wrapping_handle: ObjectHandle,
    handle: ObjectHandle,
) -> CkResult<Zeroizing<Vec<u8>>> {
    let family = family_for(mechanism, CKF_WRAP)?;
    let wrapping = key_of(partition, ctx, wrapping_handle).map_err(rename(
        CKR_KEY_HANDLE_INVALID,
        CKR_WRAPPING_KEY_HANDLE_INVALID,
    ))?;
    check_key_type(OpKind::Encrypt, family, &wrapping)
        .map_err(|_| Ckr(CKR_WRAPPING_KEY_TYPE_INCONSISTENT))?;
    wrapping.permits(cka::CKA_WRAP, mechanism.mechanism.0)?;
    let key = key_of(partition, ctx, handle)?;
    if key.class() != CKO_SECRET_KEY {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    // Only an active key leaves the token, in any form (SP 800-57 5.3:
    // a retired or compromised key is not distributed).
    if !crate::key_state::permits_export(key.state()) {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    if !key.flag(cka::CKA_EXTRACTABLE) {
        return Err(Ckr(CKR_KEY_UNEXTRACTABLE));
    }
    if key.flag(cka::CKA_WRAP_WITH_TRUSTED) && !wrapping.flag(cka::CKA_TRUSTED) {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    if family == Family::KeyBlock {
        return wrap_keyblock(mechanism, &wrapping, &key);
    }
    // Exportability `E`: only in a form meeting X9.24, i.e. a key block.
    if key
        .opt_bytes(CKA_HSMLINK_KEYBLOCK_HEADER)
        .is_some_and(|h| h.get(EXPORTABILITY) != Some(&b'S'))
    {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    let (mut op, _) = super::asymmetric::begin(OpKind::Encrypt, family, mechanism, &wrapping)?;
    op.single(&key.value()?)
        .map_err(rename(CKR_DATA_LEN_RANGE, CKR_KEY_SIZE_RANGE))
}

/// The class and key type of a new secret key: from the template, with
/// defaults; only secret keys are made here.
fn secret_key_kind(
    template: &[Attribute],
    default_type: Option<u64>,
) -> CkResult<(u64, u64, Option<usize>)> {
    let given = template_map(template)?;
    let class = ulong(given.get(&cka::CKA_CLASS)).unwrap_or(CKO_SECRET_KEY);
    if class != CKO_SECRET_KEY {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    let key_type = ulong(given.get(&cka::CKA_KEY_TYPE))
        .or(default_type)
        .ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?;
    let value_len = ulong(given.get(&cka::CKA_VALUE_LEN))
        .map(|n| usize::try_from(n).map_err(|_| Ckr(CKR_ATTRIBUTE_VALUE_INVALID)))
        .transpose()?;
    Ok((class, key_type, value_len))
}

fn store_secret(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    template: &[Attribute],
    kind: (u64, u64),
    value: &[u8],
    origin: Origin,
) -> CkResult<()> {
    let id = new_object_id()?;
    let attrs = token_made_key(
        template,
        &[cka::CKA_VALUE_LEN],
        kind,
        vec![(cka::CKA_VALUE, AttributeValue::Bytes(value.to_vec()))],
        actor(ctx),
        &id,
        origin,
    )?;
    partition.store_new(ctx, vec![(handle, id, attrs)])
}

/// `C_UnwrapKey` of a key block (TR-31) or a key token (TR-34).
type KeyBlockImport = fn(
    &SoftPartition,
    &ObjectContext,
    ObjectHandle,
    &Mechanism,
    &Key,
    &[u8],
    &[Attribute],
) -> CkResult<()>;

pub fn unwrap_key(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    mechanism: &Mechanism,
    unwrapping_handle: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> CkResult<()> {
    let family = family_for(mechanism, CKF_UNWRAP)?;
    let unwrapping = key_of(partition, ctx, unwrapping_handle).map_err(rename(
        CKR_KEY_HANDLE_INVALID,
        CKR_UNWRAPPING_KEY_HANDLE_INVALID,
    ))?;
    check_key_type(OpKind::Decrypt, family, &unwrapping)
        .map_err(|_| Ckr(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT))?;
    unwrapping.permits(cka::CKA_UNWRAP, mechanism.mechanism.0)?;
    // The forms whose header gives the key its attributes.
    let keyblock_import = match family {
        Family::Tr34 => Some(unwrap_tr34 as KeyBlockImport),
        Family::KeyBlock => Some(unwrap_keyblock as KeyBlockImport),
        _ => None,
    };
    if let Some(import) = keyblock_import {
        return import(
            partition,
            ctx,
            handle,
            mechanism,
            &unwrapping,
            wrapped,
            template,
        );
    }
    let (class, key_type, value_len) = secret_key_kind(template, None)?;
    let (mut op, _) = super::asymmetric::begin(OpKind::Decrypt, family, mechanism, &unwrapping)?;
    let value = op.single(wrapped).map_err(|e| {
        Ckr(match e.0 {
            CKR_ENCRYPTED_DATA_INVALID => CKR_WRAPPED_KEY_INVALID,
            CKR_ENCRYPTED_DATA_LEN_RANGE => CKR_WRAPPED_KEY_LEN_RANGE,
            other => other,
        })
    })?;
    if value_len.is_some_and(|n| n != value.len()) {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    store_secret(
        partition,
        ctx,
        handle,
        template,
        (class, key_type),
        &value,
        Origin::Unwrapped,
    )
}

// ---- X9.143 / TR-31 key blocks ----

/// Offsets in the key block header.
const USAGE: core::ops::Range<usize> = 5..7;
const ALGORITHM: usize = 7;
const MODE_OF_USE: usize = 8;
const EXPORTABILITY: usize = 11;

/// The usage attributes of every kind the mapping knows (the ones a
/// template may not turn on beyond what the header allows).
const USAGE_ATTRS: [u64; 7] = [
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_SIGN,
    cka::CKA_VERIFY,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_DERIVE,
];

/// The usage attributes a key block's key usage, algorithm and mode of use
/// allow, or `None` when hsmlink does not accept the combination. Accepted
/// for algorithms `A` (AES) and `T` (TDES):
///
/// | usage | meaning | mode of use → attributes |
/// | --- | --- | --- |
/// | `K0`, `K1` | key encryption / key block protection key | `B`,`N` → WRAP+UNWRAP; `E` → WRAP; `D` → UNWRAP |
/// | `D0` | symmetric data encryption | `B`,`N` → ENCRYPT+DECRYPT; `E` → ENCRYPT; `D` → DECRYPT |
/// | `M6` | ISO 9797-5 CMAC | `C`,`N` → SIGN+VERIFY; `G` → SIGN; `V` → VERIFY |
/// | `B0` | base derivation key | `X`,`N` → DERIVE |
pub fn header_usages(usage: &[u8], algorithm: u8, mode: u8) -> Option<&'static [u64]> {
    use cka::*;
    if algorithm != b'A' && algorithm != b'T' {
        return None;
    }
    Some(match (usage, mode) {
        (b"K0" | b"K1", b'B' | b'N') => &[CKA_WRAP, CKA_UNWRAP],
        (b"K0" | b"K1", b'E') => &[CKA_WRAP],
        (b"K0" | b"K1", b'D') => &[CKA_UNWRAP],
        (b"D0", b'B' | b'N') => &[CKA_ENCRYPT, CKA_DECRYPT],
        (b"D0", b'E') => &[CKA_ENCRYPT],
        (b"D0", b'D') => &[CKA_DECRYPT],
        (b"M6", b'C' | b'N') => &[CKA_SIGN, CKA_VERIFY],
        (b"M6", b'G') => &[CKA_SIGN],
        (b"M6", b'V') => &[CKA_VERIFY],
        (b"B0", b'X' | b'N') => &[CKA_DERIVE],
        _ => return None,
    })
}

/// Whether the key block `header` stored on a key allows `usage` (a
/// `CKA_*` usage attribute) with `mechanism`, for [`super::Key::permits`].
/// A `K1` key (a key block protection key) wraps and unwraps key blocks
/// only.
pub fn keyblock_permits(header: &[u8], usage: u64, mechanism: u64) -> bool {
    match (
        header.get(USAGE),
        header.get(ALGORITHM),
        header.get(MODE_OF_USE),
    ) {
        (Some(u), Some(&a), Some(&m)) => {
            header_usages(u, a, m).is_some_and(|l| l.contains(&usage))
                && (u != b"K1" || mechanism == CKM_HSMLINK_TR31)
        }
        _ => false,
    }
}

/// The `CK_RV` of a refused key block on import.
fn unwrap_error(e: KeyBlockError) -> Ckr {
    Ckr(match e {
        KeyBlockError::BadLength => CKR_WRAPPED_KEY_LEN_RANGE,
        KeyBlockError::KbpkSize => CKR_UNWRAPPING_KEY_SIZE_RANGE,
        KeyBlockError::Crypto => CKR_FUNCTION_FAILED,
        KeyBlockError::UnsupportedVersion
        | KeyBlockError::InconsistentHeader
        | KeyBlockError::MacInvalid
        | KeyBlockError::KeyLength => CKR_WRAPPED_KEY_INVALID,
    })
}

/// The key type of a key received in a key block: AES (`A`, 16/24/32
/// bytes) or TDES (`T`, 16 bytes double-length `CKK_DES2`, 24 bytes
/// `CKK_DES3`); anything else is `CKR_WRAPPED_KEY_INVALID`.
fn keyblock_key_type(algorithm: u8, len: usize) -> CkResult<u64> {
    match (algorithm, len) {
        (b'A', 16 | 24 | 32) => Ok(CKK_AES),
        (b'T', 16) => Ok(CKK_DES2),
        (b'T', 24) => Ok(CKK_DES3),
        _ => Err(Ckr(CKR_WRAPPED_KEY_INVALID)),
    }
}

/// Whether the block's version fits the KBPK's type: `D` under AES, `B`
/// and `C` under TDES (`A` and unknown versions are left to the engine,
/// which refuses them with the block's own error).
fn version_fits_kbpk(version: u8, kbpk: &Key) -> CkResult<()> {
    let aes = kbpk.key_type() == CKK_AES;
    match version {
        b'D' if !aes => Err(Ckr(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)),
        b'B' | b'C' if aes => Err(Ckr(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)),
        _ => Ok(()),
    }
}

/// `C_UnwrapKey` with `CKM_HSMLINK_TR31`: the key block is verified under
/// the KBPK (its version must fit the KBPK's type), its header mapped to
/// attributes and kept on the key ([`store_keyblock_key`]). Nothing is
/// stored unless every check passes.
fn unwrap_keyblock(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    mechanism: &Mechanism,
    kbpk: &Key,
    wrapped: &[u8],
    template: &[Attribute],
) -> CkResult<()> {
    no_params(mechanism)?;
    version_fits_kbpk(
        *wrapped.first().ok_or(Ckr(CKR_WRAPPED_KEY_LEN_RANGE))?,
        kbpk,
    )?;
    let (header, value) = keyblock::unwrap(&kbpk.value()?, wrapped).map_err(unwrap_error)?;
    let header_ascii = wrapped
        .get(..header.encoded_len())
        .ok_or(Ckr(CKR_WRAPPED_KEY_INVALID))?;
    let received = Received {
        header: &header,
        header_ascii,
        value: &value,
        trusted: never_known(kbpk),
    };
    store_keyblock_key(partition, ctx, handle, &received, template)
}

/// No caller can know the key's value: generated on the token and never
/// readable, or vouched for by the SO (`CKA_TRUSTED`) — the secure
/// templates' test for a wrapping key (`crate::secure_templates`).
fn never_known(key: &Key) -> bool {
    key.flag(cka::CKA_TRUSTED)
        || (key.flag(cka::CKA_LOCAL)
            && (key.flag(cka::CKA_ALWAYS_SENSITIVE) || key.flag(cka::CKA_NEVER_EXTRACTABLE)))
}

/// A key received in a key block or a TR-34 token.
struct Received<'a> {
    header: &'a Header,
    header_ascii: &'a [u8],
    value: &'a [u8],
    /// It came by a path no caller can read: under a KBPK that is itself
    /// never known, or in a TR-34 token from a KDH the SO trusts to a
    /// never-known receiving key. Such a key gets `CKA_TRUSTED`, so a
    /// key-encryption key loaded remotely may wrap on a strict partition.
    trusted: bool,
}

/// Stores a key received with its key block header (TR-31 or TR-34): the
/// header's usage and exportability become the attributes (a template
/// asking for more than the header allows is `CKR_TEMPLATE_INCONSISTENT`;
/// it may narrow them), the header and key version stay on the key.
fn store_keyblock_key(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    received: &Received<'_>,
    template: &[Attribute],
) -> CkResult<()> {
    let (header, value) = (received.header, received.value);
    let usages = header_usages(&header.key_usage, header.algorithm, header.mode_of_use)
        .ok_or(Ckr(CKR_WRAPPED_KEY_INVALID))?;
    let key_type = keyblock_key_type(header.algorithm, value.len())?;
    let mut given = template_map(template)?;
    if ulong(given.get(&cka::CKA_KEY_TYPE)).is_some_and(|t| t != key_type) {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    for attr in USAGE_ATTRS {
        let allowed = usages.contains(&attr);
        match boolean(given.get(&attr)) {
            Some(true) if !allowed => return Err(Ckr(CKR_TEMPLATE_INCONSISTENT)),
            Some(_) => {}
            None => {
                given.insert(attr, AttributeValue::Bool(allowed));
            }
        }
    }
    match (
        header.exportability,
        boolean(given.get(&cka::CKA_EXTRACTABLE)),
    ) {
        (b'E' | b'S', None) => {
            given.insert(cka::CKA_EXTRACTABLE, AttributeValue::Bool(true));
        }
        (b'E' | b'S', Some(_)) | (b'N', Some(false)) => {}
        (b'N', None) => {
            given.insert(cka::CKA_EXTRACTABLE, AttributeValue::Bool(false));
        }
        (b'N', Some(true)) => return Err(Ckr(CKR_TEMPLATE_INCONSISTENT)),
        _ => return Err(Ckr(CKR_WRAPPED_KEY_INVALID)),
    }
    let value_len = ulong(given.get(&cka::CKA_VALUE_LEN));
    if value_len.is_some_and(|n| usize::try_from(n).ok() != Some(value.len())) {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    let full: Vec<Attribute> = given
        .into_iter()
        .map(|(t, v)| Attribute::new(t, v))
        .collect();
    let id = new_object_id()?;
    let mut attrs = token_made_key(
        &full,
        &[cka::CKA_VALUE_LEN],
        (CKO_SECRET_KEY, key_type),
        vec![(cka::CKA_VALUE, AttributeValue::Bytes(value.to_vec()))],
        actor(ctx),
        &id,
        Origin::Unwrapped,
    )?;
    attrs.insert(
        CKA_HSMLINK_KEYBLOCK_HEADER,
        AttributeValue::Bytes(received.header_ascii.to_vec()),
    );
    if received.trusted {
        attrs.insert(cka::CKA_TRUSTED, AttributeValue::Bool(true));
    }
    attrs.insert(
        CKA_HSMLINK_KEY_VERSION,
        AttributeValue::Bytes(header.key_version.to_vec()),
    );
    partition.store_new(ctx, vec![(handle, id, attrs)])
}

/// How long ago a one-pass TR-34 token may have been signed.
const TR34_ONE_PASS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The `CK_RV` of a refused TR-34 token. Every refusal of the token itself
/// is `CKR_WRAPPED_KEY_INVALID` (the reason goes to the server log).
fn tr34_error(e: Tr34Error) -> Ckr {
    Ckr(match e {
        Tr34Error::ReceiverKeySize => CKR_UNWRAPPING_KEY_SIZE_RANGE,
        Tr34Error::Malformed
        | Tr34Error::Unsupported
        | Tr34Error::UntrustedHost
        | Tr34Error::Revoked
        | Tr34Error::BadSignature
        | Tr34Error::Stale
        | Tr34Error::NotForReceiver
        | Tr34Error::Inconsistent => CKR_WRAPPED_KEY_INVALID,
    })
}

/// `C_UnwrapKey` with `CKM_HSMLINK_TR34`: a TR-34 key token under the
/// partition's RSA key-receiving key, the key distribution host checked
/// against the certificates on the token (`CKA_TRUSTED` ones are the
/// anchors). The key keeps the token's key block header like a TR-31 key.
fn unwrap_tr34(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    mechanism: &Mechanism,
    receiver: &Key,
    token: &[u8],
    template: &[Attribute],
) -> CkResult<()> {
    let freshness = match &mechanism.params {
        MechanismParams::None => Freshness::SignedWithin(TR34_ONE_PASS_MAX_AGE),
        MechanismParams::Iv(nonce) if !nonce.is_empty() => Freshness::Nonce(nonce),
        _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    };
    let receiver_never_known = never_known(receiver);
    let receiver = super::asymmetric::rsa_private(receiver)?;
    let (anchors, certificates) = partition.x509_certificates(ctx);
    let trust = Trust {
        anchors: &anchors,
        certificates: &certificates,
    };
    let imported =
        tr34::import(token, &receiver, trust, freshness, SystemTime::now()).map_err(|e| {
            tracing::info!(reason = %e, "TR-34 key token refused");
            tr34_error(e)
        })?;
    tracing::info!(host = %imported.host, "TR-34 key token accepted");
    let received = Received {
        header: &imported.header,
        header_ascii: &imported.header_ascii,
        value: &imported.key,
        trusted: receiver_never_known,
    };
    store_keyblock_key(partition, ctx, handle, &received, template)
}

/// A secret key's security strength in bits (NIST SP 800-57 part 1 table
/// 2): AES by length, TDES 112 (three-key) or 80 (two-key).
fn strength_bits(key: &Key, len: usize) -> usize {
    match key.key_type() {
        CKK_DES3 => 112,
        CKK_DES2 => 80,
        _ => len * 8,
    }
}

/// The header of a key exported in a key block: the one it was imported
/// with (as version `version`), or one made from its usage attributes (the
/// first of: wrap/unwrap → `K0`, encrypt/decrypt → `D0`, sign/verify →
/// `M6`, derive → `B0`), exportable `E`, key version `00`.
fn export_header(key: &Key, version: u8) -> CkResult<Header> {
    if let Some(stored) = key.opt_bytes(CKA_HSMLINK_KEYBLOCK_HEADER) {
        let mut header = Header::parse_alone(stored).map_err(|_| Ckr(CKR_KEY_NOT_WRAPPABLE))?;
        header.version = version;
        return Ok(header);
    }
    let pair = |a: u64, b: u64, both: u8, first: u8, second: u8| match (key.flag(a), key.flag(b)) {
        (true, true) => Some(both),
        (true, false) => Some(first),
        (false, true) => Some(second),
        (false, false) => None,
    };
    let (usage, mode) = if let Some(m) = pair(cka::CKA_WRAP, cka::CKA_UNWRAP, b'B', b'E', b'D') {
        (*b"K0", m)
    } else if let Some(m) = pair(cka::CKA_ENCRYPT, cka::CKA_DECRYPT, b'B', b'E', b'D') {
        (*b"D0", m)
    } else if let Some(m) = pair(cka::CKA_SIGN, cka::CKA_VERIFY, b'C', b'G', b'V') {
        (*b"M6", m)
    } else if key.flag(cka::CKA_DERIVE) {
        (*b"B0", b'X')
    } else {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    };
    let algorithm = if key.key_type() == CKK_AES {
        b'A'
    } else {
        b'T'
    };
    Ok(Header::new(version, usage, algorithm, mode, *b"00", b'E'))
}

/// `C_WrapKey` with `CKM_HSMLINK_TR31`: an extractable AES or TDES key
/// (checked by the caller) under a KBPK at least as strong as the key —
/// version `D` under an AES KBPK, `B` under a TDES one.
fn wrap_keyblock(mechanism: &Mechanism, kbpk: &Key, key: &Key) -> CkResult<Zeroizing<Vec<u8>>> {
    no_params(mechanism)?;
    key.require(CKO_SECRET_KEY, &[CKK_AES, CKK_DES2, CKK_DES3])
        .map_err(|_| Ckr(CKR_KEY_NOT_WRAPPABLE))?;
    let kbpk_value = kbpk.value()?;
    let value = key.value()?;
    if strength_bits(kbpk, kbpk_value.len()) < strength_bits(key, value.len()) {
        return Err(Ckr(CKR_WRAPPING_KEY_SIZE_RANGE));
    }
    let version = if kbpk.key_type() == CKK_AES {
        b'D'
    } else {
        b'B'
    };
    let header = export_header(key, version)?;
    if header.exportability == b'N' {
        return Err(Ckr(CKR_KEY_UNEXTRACTABLE));
    }
    keyblock::wrap(&kbpk_value, &header, &value)
        .map(Zeroizing::new)
        .map_err(|e| {
            Ckr(match e {
                KeyBlockError::KbpkSize => CKR_WRAPPING_KEY_SIZE_RANGE,
                KeyBlockError::Crypto => CKR_FUNCTION_FAILED,
                _ => CKR_KEY_NOT_WRAPPABLE,
            })
        })
}

fn kdf(kdf: u64) -> CkResult<EcdhKdf> {
    Ok(match kdf {
        CKD_NULL => EcdhKdf::Null,
        CKD_SHA1_KDF => EcdhKdf::X963(DigestAlg::Sha1),
        CKD_SHA224_KDF => EcdhKdf::X963(DigestAlg::Sha224),
        CKD_SHA256_KDF => EcdhKdf::X963(DigestAlg::Sha256),
        CKD_SHA384_KDF => EcdhKdf::X963(DigestAlg::Sha384),
        CKD_SHA512_KDF => EcdhKdf::X963(DigestAlg::Sha512),
        _ => return Err(Ckr(CKR_MECHANISM_PARAM_INVALID)),
    })
}

pub fn derive_key(
    partition: &SoftPartition,
    ctx: &ObjectContext,
    handle: ObjectHandle,
    mechanism: &Mechanism,
    base_handle: ObjectHandle,
    template: &[Attribute],
) -> CkResult<()> {
    let family = family_for(mechanism, CKF_DERIVE)?;
    let base = key_of(partition, ctx, base_handle)?;
    check_key_type(OpKind::Sign, family, &base)?;
    base.permits(cka::CKA_DERIVE, mechanism.mechanism.0)?;
    let (class, key_type, value_len) = secret_key_kind(template, Some(CKK_GENERIC_SECRET))?;
    let invalid = Ckr(CKR_MECHANISM_PARAM_INVALID);
    let mut value: Zeroizing<Vec<u8>> = match (family, &mechanism.params) {
        (
            Family::EcdhDerive,
            MechanismParams::Ecdh1Derive {
                kdf: k,
                shared_data,
                public_data,
            },
        ) => {
            let curve = curve_of(&base)?;
            let d = scalar(base.bytes(cka::CKA_VALUE)?, curve.field_len())?;
            let peer = decode_point(public_data, curve.point_len()).ok_or(invalid)?;
            ec::ecdh_derive(curve, &d, &peer, kdf(*k)?, shared_data, value_len).map_err(ck)?
        }
        (
            Family::Sm2KeyExchange,
            MechanismParams::Sm2KeyExchange {
                initiator,
                ephemeral_key,
                peer_public,
                peer_ephemeral,
                user_id,
                peer_user_id,
            },
        ) => {
            // The ephemeral key is used as the static one is: it must be an
            // SM2 private key the caller sees and may derive with.
            let ephemeral = key_of(partition, ctx, *ephemeral_key)?;
            check_key_type(OpKind::Sign, family, &ephemeral)?;
            ephemeral.permits(cka::CKA_DERIVE, mechanism.mechanism.0)?;
            // SM4 keys have one length; any other type says CKA_VALUE_LEN.
            let klen = value_len
                .or((key_type == CKK_HSMLINK_SM4).then_some(SM4_KEY_LEN))
                .ok_or(Ckr(CKR_TEMPLATE_INCOMPLETE))?;
            let own = sm2_exchange::Own {
                user_id,
                private: base.bytes(cka::CKA_VALUE)?,
                ephemeral_private: ephemeral.bytes(cka::CKA_VALUE)?,
            };
            let peer = sm2_exchange::Peer {
                user_id: peer_user_id,
                public: peer_public,
                ephemeral: peer_ephemeral,
            };
            sm2_exchange::key_exchange(*initiator, own, peer, klen).map_err(ck)?
        }
        (Family::AesEcbEncryptData, MechanismParams::KeyDerivationString(data)) => Zeroizing::new(
            cipher::encrypt(BlockAlg::Aes, &base.value()?, &Mode::Ecb, data).map_err(ck)?,
        ),
        (Family::AesCbcEncryptData, MechanismParams::AesCbcEncryptData { iv, data }) => {
            Zeroizing::new(
                cipher::encrypt(BlockAlg::Aes, &base.value()?, &Mode::Cbc { iv: *iv }, data)
                    .map_err(ck)?,
            )
        }
        _ => return Err(invalid),
    };
    if let Some(n) = value_len {
        if n > value.len() {
            return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
        }
        value.truncate(n);
    }
    store_secret(
        partition,
        ctx,
        handle,
        template,
        (class, key_type),
        &value,
        Origin::Derived {
            always_sensitive: base.flag(cka::CKA_ALWAYS_SENSITIVE),
            never_extractable: base.flag(cka::CKA_NEVER_EXTRACTABLE),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_block_headers_map_to_usages() {
        let mac = b"D0144M6AG00E0000";
        assert!(keyblock_permits(mac, cka::CKA_SIGN, CKM_AES_CMAC));
        for refused in [cka::CKA_VERIFY, cka::CKA_ENCRYPT, cka::CKA_WRAP] {
            assert!(!keyblock_permits(mac, refused, CKM_AES_CMAC));
        }
        let kek = b"D0144K0AB00E0000";
        assert!(keyblock_permits(kek, cka::CKA_WRAP, CKM_AES_KEY_WRAP));
        assert!(keyblock_permits(kek, cka::CKA_UNWRAP, CKM_HSMLINK_TR31));
        assert!(!keyblock_permits(kek, cka::CKA_DECRYPT, CKM_AES_ECB));
        // K1 protects key blocks and nothing else.
        let kbpk = b"D0144K1AD00N0000";
        assert!(keyblock_permits(kbpk, cka::CKA_UNWRAP, CKM_HSMLINK_TR31));
        assert!(!keyblock_permits(kbpk, cka::CKA_UNWRAP, CKM_AES_KEY_WRAP));
        assert!(!keyblock_permits(kbpk, cka::CKA_WRAP, CKM_HSMLINK_TR31));
        // Not accepted: PIN keys, single DES, modes that contradict the usage;
        // a damaged stored header permits nothing.
        assert_eq!(header_usages(b"P0", b'A', b'E'), None);
        assert_eq!(header_usages(b"D0", b'D', b'B'), None);
        assert_eq!(
            header_usages(b"D0", b'T', b'B'),
            Some(&[cka::CKA_ENCRYPT, cka::CKA_DECRYPT][..])
        );
        assert_eq!(header_usages(b"M6", b'A', b'E'), None);
        assert!(!keyblock_permits(b"D01", cka::CKA_ENCRYPT, CKM_AES_ECB));
    }

    #[test]
    fn refusals_have_their_codes() {
        assert_eq!(
            unwrap_error(KeyBlockError::BadLength).0,
            CKR_WRAPPED_KEY_LEN_RANGE
        );
        for e in [
            KeyBlockError::MacInvalid,
            KeyBlockError::UnsupportedVersion,
            KeyBlockError::InconsistentHeader,
            KeyBlockError::KeyLength,
        ] {
            assert_eq!(unwrap_error(e).0, CKR_WRAPPED_KEY_INVALID);
        }
    }
}
