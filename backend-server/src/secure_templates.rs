//! Secure templates: hsmlink's key-management rules, enforced above the
//! drivers on the attributes a driver reports, so they hold for the soft
//! HSM and for a vendor module alike (whose own policy is not relied on).
//! The rules are published in README ("Secure templates").
//!
//! Always, whatever the partition's `secure_templates`:
//!
//! - **Sticky usage.** The usage attributes (`CKA_ENCRYPT`, `CKA_DECRYPT`,
//!   `CKA_WRAP`, `CKA_UNWRAP`, `CKA_SIGN`, `CKA_VERIFY`, `CKA_SIGN_RECOVER`,
//!   `CKA_VERIFY_RECOVER`, `CKA_DERIVE`) may be turned off by
//!   `C_SetAttributeValue` and `C_CopyObject`, never on
//!   (`CKR_ATTRIBUTE_READ_ONLY`, which PKCS#11 3.0 section 4.1.2 lets a
//!   token answer): no key learns a role after the fact.
//!
//! In a `strict` partition (the default), after the secure templates of
//! Bortolozzo, Centenaro, Focardi and Steel ("Attacking and fixing PKCS#11
//! security tokens", CCS 2010) and Fröschle and Steel, and the one-purpose
//! rule of NIST SP 800-57 part 1 section 5.2:
//!
//! - **Key transport is a role of its own.** A key that may wrap or unwrap
//!   (`CKA_WRAP` or `CKA_UNWRAP`) holds no other usage attribute; a key
//!   pair counts as one key (a public key that wraps, a private key that
//!   decrypts or signs: the wrap/decrypt attack, raw RSA signing being
//!   decryption). `CKR_TEMPLATE_INCONSISTENT` on `C_GenerateKey`,
//!   `C_GenerateKeyPair`, `C_CreateObject`, `C_UnwrapKey`, `C_DeriveKey`
//!   and `C_CopyObject`. Defaults: `CKA_WRAP`/`CKA_UNWRAP` are false unless
//!   the template asks for them; a template that asks for one gets every
//!   other usage attribute false unless it asks (then it conflicts). The
//!   forwarded template says so explicitly, so a device's own defaults
//!   cannot add a role; the new key is read back and destroyed if it holds
//!   conflicting roles all the same. A key made readable (not sensitive,
//!   extractable) guards no secret and is exempt, but may not be made
//!   unreadable while its roles conflict.
//! - **Wrapping keys.** `C_WrapKey` refuses a wrapping key whose value a
//!   caller may know: only keys generated on the token (`CKA_LOCAL`) and
//!   never readable (`CKA_ALWAYS_SENSITIVE` or `CKA_NEVER_EXTRACTABLE`), or
//!   vouched for by the SO (`CKA_TRUSTED`), wrap
//!   (`CKR_KEY_FUNCTION_NOT_PERMITTED`); then one weaker than the key it
//!   wraps (`CKR_WRAPPING_KEY_SIZE_RANGE`, security strengths of SP 800-57
//!   part 1 table 2).
//! - **Transport keys leave only with their role bound.** A key with
//!   `CKA_WRAP` or `CKA_UNWRAP` is wrapped only into a key block
//!   (`CKM_HSMLINK_TR31`, whose header carries its usage), so no second
//!   copy of a key-encryption key can be unwrapped as a decryption key
//!   (`CKR_KEY_NOT_WRAPPABLE`).
//! - **Wrapping binds the key's attributes.** A blob wrapped with a
//!   standard mechanism unwraps with no more than the wrapped key had, and
//!   a blob the partition never made only under a `CKA_TRUSTED` key
//!   ([`crate::wrap_ledger`]).
//! - **Derivation keeps strength.** A secret key made by `C_DeriveKey` is at
//!   least as strong as its base key, up to 128 bits
//!   (`CKR_TEMPLATE_INCONSISTENT`).

use std::borrow::Cow;

use cryptoki_sys::{
    CKK_AES, CKK_DES, CKK_DES2, CKK_DES3, CKK_EC, CKK_EC_EDWARDS, CKK_RSA, CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY, CKO_SECRET_KEY, CKR_ATTRIBUTE_READ_ONLY, CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_KEY_NOT_WRAPPABLE, CKR_TEMPLATE_INCONSISTENT, CKR_WRAPPING_KEY_SIZE_RANGE,
};
use hsmlink_protocol::attribute_kind as cka;
use hsmlink_protocol::vendor::{
    CKK_HSMLINK_SM2, CKK_HSMLINK_SM4, CKM_HSMLINK_TR31, CKM_HSMLINK_TR34,
};
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, AttributeValue, Mechanism, ObjectHandle,
};

use crate::config::SecureTemplates;
use crate::dispatch::Bound;
use crate::error::{CkResult, Ckr};

/// The sticky usage attributes.
pub const USAGE: [u64; 9] = [
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_SIGN,
    cka::CKA_VERIFY,
    cka::CKA_SIGN_RECOVER,
    cka::CKA_VERIFY_RECOVER,
    cka::CKA_DERIVE,
];

/// The usage attributes of each key class (PKCS#11 3.0 sections 4.8 to 4.10).
const SECRET_USAGE: &[u64] = &[
    cka::CKA_ENCRYPT,
    cka::CKA_DECRYPT,
    cka::CKA_SIGN,
    cka::CKA_VERIFY,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_DERIVE,
];
const PUBLIC_USAGE: &[u64] = &[
    cka::CKA_ENCRYPT,
    cka::CKA_VERIFY,
    cka::CKA_VERIFY_RECOVER,
    cka::CKA_WRAP,
    cka::CKA_DERIVE,
];
const PRIVATE_USAGE: &[u64] = &[
    cka::CKA_DECRYPT,
    cka::CKA_SIGN,
    cka::CKA_SIGN_RECOVER,
    cka::CKA_UNWRAP,
    cka::CKA_DERIVE,
];

/// The usage attributes a key of `class` has (none for other objects).
pub fn usage_of(class: u64) -> &'static [u64] {
    match class {
        CKO_SECRET_KEY => SECRET_USAGE,
        CKO_PUBLIC_KEY => PUBLIC_USAGE,
        CKO_PRIVATE_KEY => PRIVATE_USAGE,
        _ => &[],
    }
}

/// The key-transport role.
pub fn is_transport(attr: u64) -> bool {
    attr == cka::CKA_WRAP || attr == cka::CKA_UNWRAP
}

/// Whether usage attributes that are on, of one key or of the two halves
/// of a pair, give it conflicting roles: key transport with anything else.
pub fn conflicting(on: &[u64]) -> bool {
    on.iter().any(|a| is_transport(*a)) && on.iter().any(|a| !is_transport(*a))
}

fn strict(bound: &Bound<'_>) -> bool {
    bound.secure_templates == SecureTemplates::Strict
}

// ---- Sticky usage ----

/// Refuses a `C_SetAttributeValue` or `C_CopyObject` template that turns a
/// usage attribute of `object` on. Attributes the object does not have, and
/// values that are not booleans, are left to the driver's own checks.
pub(crate) fn check_no_widening(
    bound: &Bound<'_>,
    object: ObjectHandle,
    template: &[Attribute],
) -> CkResult<()> {
    let asked_on: Vec<AttributeType> = template
        .iter()
        .filter(|a| USAGE.contains(&a.attr_type.0) && a.value == AttributeValue::Bool(true))
        .map(|a| a.attr_type)
        .collect();
    if asked_on.is_empty() {
        return Ok(());
    }
    let current = bound
        .driver
        .get_attributes(&bound.object_context(), object, &asked_on)?;
    let widens = current
        .iter()
        .any(|now| *now == AttributeResult::Value(AttributeValue::Bool(false)));
    if widens {
        return Err(Ckr(CKR_ATTRIBUTE_READ_ONLY));
    }
    Ok(())
}

// ---- Roles of a new key ----

/// The boolean a template gives `attr`, if it gives a boolean.
fn given(template: &[Attribute], attr: u64) -> Option<bool> {
    template
        .iter()
        .find(|a| a.attr_type.0 == attr)
        .and_then(|a| match a.value {
            AttributeValue::Bool(b) => Some(b),
            _ => None,
        })
}

/// The class a template names, or `default`.
fn class_in(template: &[Attribute], default: u64) -> u64 {
    template
        .iter()
        .find(|a| a.attr_type.0 == cka::CKA_CLASS)
        .and_then(|a| match a.value {
            AttributeValue::Ulong(c) => Some(c),
            _ => None,
        })
        .unwrap_or(default)
}

/// The templates of a key (one part) or a key pair (two), each with its
/// class, as the caller gave them.
struct Parts<'t> {
    parts: Vec<(u64, &'t [Attribute])>,
}

impl<'t> Parts<'t> {
    /// Whether the key asks for the transport role in any part.
    fn transport(&self) -> bool {
        self.parts.iter().any(|(class, t)| {
            usage_of(*class)
                .iter()
                .any(|a| is_transport(*a) && given(t, *a) == Some(true))
        })
    }

    /// A single key made readable: `CKA_SENSITIVE` false and
    /// `CKA_EXTRACTABLE` true in its template (hsmlink's defaults are the
    /// opposite). Its value is no secret, so its roles guard nothing; it
    /// never wraps (not always sensitive), and it may not become
    /// unreadable while its roles conflict ([`check_set`]).
    fn readable(&self) -> bool {
        match self.parts.as_slice() {
            [(_, t)] => {
                given(t, cka::CKA_SENSITIVE) == Some(false)
                    && given(t, cka::CKA_EXTRACTABLE) == Some(true)
            }
            _ => false,
        }
    }

    /// Refuses templates that ask for conflicting roles, and completes
    /// them: the transport attributes false unless asked for, and, for a
    /// transport key, every other usage attribute false unless asked for.
    /// With `fill` false the templates are only checked (the wrapped form
    /// decides the rest: key blocks).
    fn complete(&self, fill: bool) -> CkResult<Vec<Cow<'t, [Attribute]>>> {
        let transport = self.transport();
        let asked_on: Vec<u64> = self
            .parts
            .iter()
            .flat_map(|(class, t)| {
                usage_of(*class)
                    .iter()
                    .copied()
                    .filter(|a| given(t, *a) == Some(true))
            })
            .collect();
        if conflicting(&asked_on) && !self.readable() {
            return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
        }
        Ok(self
            .parts
            .iter()
            .map(|(class, t)| {
                let missing: Vec<Attribute> = usage_of(*class)
                    .iter()
                    .filter(|a| fill && given(t, **a).is_none())
                    .filter(|a| transport || is_transport(**a))
                    .map(|a| Attribute::new(*a, AttributeValue::Bool(false)))
                    .collect();
                if missing.is_empty() {
                    Cow::Borrowed(*t)
                } else {
                    let mut full = t.to_vec();
                    full.extend(missing);
                    Cow::Owned(full)
                }
            })
            .collect())
    }
}

/// The template to forward for a new key of `default_class` (the class
/// the template names wins): checked and completed in a strict partition,
/// as given otherwise. Objects other than keys pass unchanged.
pub(crate) fn new_key<'t>(
    bound: &Bound<'_>,
    default_class: u64,
    template: &'t [Attribute],
) -> CkResult<Cow<'t, [Attribute]>> {
    if !strict(bound) {
        return Ok(Cow::Borrowed(template));
    }
    let parts = Parts {
        parts: vec![(class_in(template, default_class), template)],
    };
    let mut out = parts.complete(true)?;
    Ok(out.pop().unwrap_or(Cow::Borrowed(template)))
}

/// The unwrapping mechanisms whose wrapped form carries the key's usage (a
/// key-block header): `CKM_HSMLINK_TR31`, and the TR-34 key token
/// (`CKM_HSMLINK_TR34`, whose key block carries a TR-31 header).
const USAGE_BOUND: [u64; 2] = [CKM_HSMLINK_TR31, CKM_HSMLINK_TR34];

/// [`new_key`] for `C_UnwrapKey`: a key block's header gives the usage, so
/// its template is only checked, never completed. An unwrapped key is
/// always sensitive: the wrapped form says nothing of whether the key was,
/// so a template asking `CKA_SENSITIVE` false would read a sensitive key
/// out through a wrap and an unwrap (`CKR_TEMPLATE_INCONSISTENT`); the
/// forwarded template says `CKA_SENSITIVE` true.
pub(crate) fn unwrapped_key<'t>(
    bound: &Bound<'_>,
    mechanism: &Mechanism,
    template: &'t [Attribute],
) -> CkResult<Cow<'t, [Attribute]>> {
    if !strict(bound) {
        return Ok(Cow::Borrowed(template));
    }
    if given(template, cka::CKA_SENSITIVE) == Some(false) {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    let parts = Parts {
        parts: vec![(class_in(template, CKO_SECRET_KEY), template)],
    };
    let fill = !USAGE_BOUND.contains(&mechanism.mechanism.0);
    let out = parts
        .complete(fill)?
        .pop()
        .unwrap_or(Cow::Borrowed(template));
    if given(&out, cka::CKA_SENSITIVE).is_some() {
        return Ok(out);
    }
    let mut sensitive = out.into_owned();
    sensitive.push(Attribute::new(
        cka::CKA_SENSITIVE,
        AttributeValue::Bool(true),
    ));
    Ok(Cow::Owned(sensitive))
}

/// A template as given, or completed.
type Template<'t> = Cow<'t, [Attribute]>;

/// [`new_key`] for `C_GenerateKeyPair`: the pair is one key.
pub(crate) fn new_pair<'t>(
    bound: &Bound<'_>,
    public: &'t [Attribute],
    private: &'t [Attribute],
) -> CkResult<(Template<'t>, Template<'t>)> {
    if !strict(bound) {
        return Ok((Cow::Borrowed(public), Cow::Borrowed(private)));
    }
    let parts = Parts {
        parts: vec![(CKO_PUBLIC_KEY, public), (CKO_PRIVATE_KEY, private)],
    };
    let mut out = parts.complete(true)?.into_iter();
    match (out.next(), out.next()) {
        (Some(public), Some(private)) => Ok((public, private)),
        _ => Err(Ckr::GENERAL),
    }
}

/// After a key (or pair) is made: reads its usage back and, in a strict
/// partition, destroys it if it holds conflicting roles all the same (a
/// device's defaults, a key made while the partition was relaxed and
/// copied now). `CKR_TEMPLATE_INCONSISTENT` then.
pub(crate) fn check_made(bound: &Bound<'_>, made: &[ObjectHandle]) -> CkResult<()> {
    if !strict(bound) {
        return Ok(());
    }
    let outcome = made_usage(bound, made).and_then(|(on, readable)| {
        if conflicting(&on) && !(readable && made.len() == 1) {
            Err(Ckr(CKR_TEMPLATE_INCONSISTENT))
        } else {
            Ok(())
        }
    });
    if outcome.is_err() {
        discard(bound, made);
    }
    outcome
}

/// The usage attributes that are on, over every object of `made`, and
/// whether every one of them is readable (not sensitive, extractable).
fn made_usage(bound: &Bound<'_>, made: &[ObjectHandle]) -> CkResult<(Vec<u64>, bool)> {
    let ctx = bound.object_context();
    let mut on = Vec::new();
    let mut readable = true;
    for handle in made {
        let class = bound
            .driver
            .get_attributes(&ctx, *handle, &[AttributeType(cka::CKA_CLASS)])?;
        let class = match class.first() {
            Some(AttributeResult::Value(AttributeValue::Ulong(c))) => *c,
            _ => continue,
        };
        let usage = usage_of(class);
        if usage.is_empty() {
            continue;
        }
        let types: Vec<AttributeType> = usage
            .iter()
            .chain(&[cka::CKA_SENSITIVE, cka::CKA_EXTRACTABLE])
            .map(|a| AttributeType(*a))
            .collect();
        let values = bound.driver.get_attributes(&ctx, *handle, &types)?;
        let yes = AttributeResult::Value(AttributeValue::Bool(true));
        let no = AttributeResult::Value(AttributeValue::Bool(false));
        on.extend(
            usage
                .iter()
                .zip(&values)
                .filter(|(_, v)| **v == yes)
                .map(|(a, _)| *a),
        );
        let tail = &values[values.len().saturating_sub(2)..];
        readable &= tail.first() == Some(&no) && tail.get(1) == Some(&yes);
    }
    Ok((on, readable))
}

/// `C_SetAttributeValue` in a strict partition: a readable key whose roles
/// conflict may not be made unreadable (`CKA_SENSITIVE` true,
/// `CKA_EXTRACTABLE` false): `CKR_TEMPLATE_INCONSISTENT`.
pub(crate) fn check_set(
    bound: &Bound<'_>,
    object: ObjectHandle,
    template: &[Attribute],
) -> CkResult<()> {
    if !strict(bound) {
        return Ok(());
    }
    let hides = given(template, cka::CKA_SENSITIVE) == Some(true)
        || given(template, cka::CKA_EXTRACTABLE) == Some(false);
    if !hides {
        return Ok(());
    }
    let (mut on, _) = made_usage(bound, &[object])?;
    // Roles the same template turns off no longer count.
    on.retain(|a| given(template, *a) != Some(false));
    if conflicting(&on) {
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    Ok(())
}

/// Destroys keys just made that may not stay.
pub(crate) fn discard(bound: &Bound<'_>, made: &[ObjectHandle]) {
    let ctx = bound.object_context();
    for handle in made {
        if let Err(e) = bound.driver.destroy_object(&ctx, *handle) {
            tracing::warn!(
                rv = e.0,
                "a key refused by the secure-template rules could not be destroyed"
            );
        }
    }
}

/// After `C_DeriveKey`: the rules of [`check_made`], and a derived secret
/// key at least as strong as its base key, up to 128 bits.
pub(crate) fn check_derived(
    bound: &Bound<'_>,
    base_key: ObjectHandle,
    made: ObjectHandle,
) -> CkResult<()> {
    check_made(bound, &[made])?;
    if !strict(bound) {
        return Ok(());
    }
    let ctx = bound.object_context();
    let base = KeyFacts::read(bound, base_key);
    let derived = KeyFacts::read(bound, made);
    let weaker = match (base, derived) {
        (Ok(base), Ok(derived)) if derived.class == Some(CKO_SECRET_KEY) => {
            let floor = base.strength().unwrap_or(0).min(128);
            derived.strength().unwrap_or(0) < floor
        }
        _ => false,
    };
    if weaker {
        if let Err(e) = bound.driver.destroy_object(&ctx, made) {
            tracing::warn!(rv = e.0, "a weakened derived key could not be destroyed");
        }
        return Err(Ckr(CKR_TEMPLATE_INCONSISTENT));
    }
    Ok(())
}

// ---- Wrapping ----

/// What the wrapping rules need to know of a key, read through the driver.
#[derive(Debug, Default)]
struct KeyFacts {
    class: Option<u64>,
    key_type: Option<u64>,
    extractable: Option<bool>,
    wrap: Option<bool>,
    unwrap: Option<bool>,
    local: Option<bool>,
    always_sensitive: Option<bool>,
    never_extractable: Option<bool>,
    trusted: Option<bool>,
    value_len: Option<u64>,
    modulus_bits: Option<u64>,
    modulus: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
}

const FACTS: [u64; 13] = [
    cka::CKA_CLASS,
    cka::CKA_KEY_TYPE,
    cka::CKA_EXTRACTABLE,
    cka::CKA_WRAP,
    cka::CKA_UNWRAP,
    cka::CKA_LOCAL,
    cka::CKA_ALWAYS_SENSITIVE,
    cka::CKA_NEVER_EXTRACTABLE,
    cka::CKA_TRUSTED,
    cka::CKA_VALUE_LEN,
    cka::CKA_MODULUS_BITS,
    cka::CKA_MODULUS,
    cka::CKA_EC_PARAMS,
];

impl KeyFacts {
    fn read(bound: &Bound<'_>, key: ObjectHandle) -> CkResult<Self> {
        let types: Vec<AttributeType> = FACTS.iter().map(|a| AttributeType(*a)).collect();
        let values = bound
            .driver
            .get_attributes(&bound.object_context(), key, &types)?;
        let mut facts = Self::default();
        for (attr, value) in FACTS.iter().zip(values) {
            let AttributeResult::Value(value) = value else {
                continue;
            };
            match (*attr, &value) {
                (cka::CKA_CLASS, AttributeValue::Ulong(v)) => facts.class = Some(*v),
                (cka::CKA_KEY_TYPE, AttributeValue::Ulong(v)) => facts.key_type = Some(*v),
                (cka::CKA_EXTRACTABLE, AttributeValue::Bool(v)) => facts.extractable = Some(*v),
                (cka::CKA_WRAP, AttributeValue::Bool(v)) => facts.wrap = Some(*v),
                (cka::CKA_UNWRAP, AttributeValue::Bool(v)) => facts.unwrap = Some(*v),
                (cka::CKA_LOCAL, AttributeValue::Bool(v)) => facts.local = Some(*v),
                (cka::CKA_ALWAYS_SENSITIVE, AttributeValue::Bool(v)) => {
                    facts.always_sensitive = Some(*v)
                }
                (cka::CKA_NEVER_EXTRACTABLE, AttributeValue::Bool(v)) => {
                    facts.never_extractable = Some(*v)
                }
                (cka::CKA_TRUSTED, AttributeValue::Bool(v)) => facts.trusted = Some(*v),
                (cka::CKA_VALUE_LEN, AttributeValue::Ulong(v)) => facts.value_len = Some(*v),
                (cka::CKA_MODULUS_BITS, AttributeValue::Ulong(v)) => facts.modulus_bits = Some(*v),
                (cka::CKA_MODULUS, AttributeValue::Bytes(v)) => facts.modulus = Some(v.clone()),
                (cka::CKA_EC_PARAMS, AttributeValue::Bytes(v)) => facts.ec_params = Some(v.clone()),
                _ => {}
            }
        }
        Ok(facts)
    }

    /// No caller can know the value: generated on the token and never
    /// readable (always sensitive, or never extractable), or vouched for by
    /// the SO.
    fn never_known(&self) -> bool {
        let secret = self.always_sensitive == Some(true) || self.never_extractable == Some(true);
        self.trusted == Some(true) || (self.local == Some(true) && secret)
    }

    /// Security strength in bits (NIST SP 800-57 part 1 rev. 5, table 2;
    /// a curve gives half its order's size), `None` if unknown.
    fn strength(&self) -> Option<u32> {
        let key_type = self.key_type?;
        match key_type {
            CKK_RSA => {
                let bits = self.modulus_bits.or_else(|| {
                    self.modulus.as_deref().map(|m| {
                        let leading = m.iter().take_while(|b| **b == 0).count();
                        let rest = &m[leading..];
                        rest.first().map_or(0, |b| {
                            (rest.len() as u64) * 8 - u64::from(b.leading_zeros())
                        })
                    })
                })?;
                Some(rsa_strength(bits))
            }
            CKK_EC | CKK_EC_EDWARDS => curve_strength(self.ec_params.as_deref()?),
            CKK_HSMLINK_SM2 | CKK_HSMLINK_SM4 => Some(128),
            CKK_DES => Some(56),
            CKK_DES2 => Some(80),
            CKK_DES3 => Some(112),
            CKK_AES => Some(u32::try_from(self.value_len? * 8).ok()?),
            // Generic secrets and HMAC keys: their length, 256 bits at most
            // (no wrapping key is stronger).
            _ if self.class == Some(CKO_SECRET_KEY) => {
                Some(u32::try_from(self.value_len?.saturating_mul(8).min(256)).ok()?)
            }
            _ => None,
        }
    }
}

/// RSA's comparable strength by modulus size (SP 800-57 part 1 table 2).
pub fn rsa_strength(bits: u64) -> u32 {
    match bits {
        15360.. => 256,
        7680.. => 192,
        3072.. => 128,
        2048.. => 112,
        1024.. => 80,
        _ => 0,
    }
}

/// The strength of the named curves hsmlink knows, from `CKA_EC_PARAMS`.
pub fn curve_strength(params: &[u8]) -> Option<u32> {
    const CURVES: &[(&[u8], u32)] = &[
        // P-256, secp256k1, P-384, P-521
        (
            &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            128,
        ),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], 128),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], 192),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], 256),
        // Ed25519 (OID and the printable name), Ed448
        (&[0x06, 0x03, 0x2b, 0x65, 0x70], 128),
        (
            &[
                0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
            ],
            128,
        ),
        (&[0x06, 0x03, 0x2b, 0x65, 0x71], 224),
        // SM2
        (
            &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d],
            128,
        ),
    ];
    CURVES
        .iter()
        .find(|(der, _)| *der == params)
        .map(|(_, strength)| *strength)
}

/// `C_WrapKey` in a strict partition: the wrapping key generated on the
/// token or trusted, of one role (key transport), at least as strong as
/// the key, and a transport key
/// wrapped only into a key block. Keys the driver would refuse anyway (no
/// such handle, not extractable, a wrapping key without `CKA_WRAP`) are
/// left to it, so the standard's codes come first.
pub(crate) fn check_wrap(
    bound: &Bound<'_>,
    mechanism: &Mechanism,
    wrapping_key: ObjectHandle,
    key: ObjectHandle,
) -> CkResult<()> {
    if !strict(bound) {
        return Ok(());
    }
    let (Ok(wrapping), Ok(wrapped)) = (
        KeyFacts::read(bound, wrapping_key),
        KeyFacts::read(bound, key),
    ) else {
        return Ok(());
    };
    if wrapping.wrap != Some(true) || wrapped.extractable != Some(true) {
        return Ok(());
    }
    if !wrapping.never_known() {
        return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
    }
    // A wrapping key with conflicting roles (made while the partition was
    // relaxed) does not wrap in a strict one.
    if made_usage(bound, &[wrapping_key]).is_ok_and(|(on, _)| conflicting(&on)) {
        return Err(Ckr(CKR_KEY_FUNCTION_NOT_PERMITTED));
    }
    let needed = wrapped.strength().unwrap_or(256);
    if wrapping.strength().unwrap_or(0) < needed {
        return Err(Ckr(CKR_WRAPPING_KEY_SIZE_RANGE));
    }
    let transport = wrapped.wrap == Some(true) || wrapped.unwrap == Some(true);
    if transport && mechanism.mechanism.0 != CKM_HSMLINK_TR31 {
        return Err(Ckr(CKR_KEY_NOT_WRAPPABLE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_conflicts_with_every_other_role() {
        use cka::*;
        assert!(!conflicting(&[]));
        assert!(!conflicting(&[CKA_WRAP, CKA_UNWRAP]));
        assert!(!conflicting(&[
            CKA_ENCRYPT,
            CKA_DECRYPT,
            CKA_SIGN,
            CKA_VERIFY,
            CKA_DERIVE
        ]));
        for other in [
            CKA_ENCRYPT,
            CKA_DECRYPT,
            CKA_SIGN,
            CKA_VERIFY,
            CKA_SIGN_RECOVER,
            CKA_VERIFY_RECOVER,
            CKA_DERIVE,
        ] {
            assert!(conflicting(&[CKA_WRAP, other]));
            assert!(conflicting(&[other, CKA_UNWRAP]));
        }
    }

    #[test]
    fn strengths() {
        assert_eq!(rsa_strength(2048), 112);
        assert_eq!(rsa_strength(3072), 128);
        assert_eq!(rsa_strength(4096), 128);
        assert_eq!(rsa_strength(1023), 0);
        let aes = |len| KeyFacts {
            class: Some(CKO_SECRET_KEY),
            key_type: Some(CKK_AES),
            value_len: Some(len),
            ..KeyFacts::default()
        };
        assert_eq!(aes(16).strength(), Some(128));
        assert_eq!(aes(32).strength(), Some(256));
        let hmac = KeyFacts {
            class: Some(CKO_SECRET_KEY),
            key_type: Some(cryptoki_sys::CKK_GENERIC_SECRET),
            value_len: Some(64),
            ..KeyFacts::default()
        };
        assert_eq!(hmac.strength(), Some(256));
        let rsa_private = KeyFacts {
            class: Some(CKO_PRIVATE_KEY),
            key_type: Some(CKK_RSA),
            modulus: Some([&[0x00, 0xc1][..], &[0u8; 255][..]].concat()),
            ..KeyFacts::default()
        };
        assert_eq!(rsa_private.strength(), Some(112));
        assert_eq!(
            curve_strength(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
            Some(192)
        );
        assert_eq!(curve_strength(&[0x06, 0x01, 0x00]), None);
    }
}
