//! Attribute templates to and from their C form, done once here.
//!
//! To the module: [`CTemplate`] owns a `CK_ATTRIBUTE` array and a buffer per
//! value (wiped when dropped: values may be key material), so every
//! `pValue` stays valid for as long as the template lives. Values take the
//! C representation of their type ([`kind_of`]): `CK_BBOOL` one byte,
//! `CK_ULONG` native-endian, arrays of `CK_MECHANISM_TYPE`, nested
//! `CK_ATTRIBUTE` arrays for `CKA_*_TEMPLATE`.
//!
//! From the module: [`read_attributes`] asks the lengths first (`pValue`
//! NULL), tells a sensitive attribute from a missing one by asking it alone
//! when the module answered `CK_UNAVAILABLE_INFORMATION`, then fetches the
//! values into buffers of those lengths.

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;
use hsmlink_protocol::attribute_kind::{AttributeKind, kind_of};
use hsmlink_protocol::{Attribute, AttributeResult, AttributeValue, MechanismType};
use zeroize::Zeroizing;

use super::module::Module;
use crate::error::{CkResult, Ckr};

const ULONG_LEN: usize = std::mem::size_of::<CK_ULONG>();

/// A `CK_ATTRIBUTE` array with owned values.
pub struct CTemplate {
    attrs: Vec<CK_ATTRIBUTE>,
    /// The value buffers `attrs` point into (heap buffers: moving the
    /// template does not move them).
    _values: Vec<Zeroizing<Vec<u8>>>,
    /// Nested templates (`CKA_WRAP_TEMPLATE`, ...).
    _nested: Vec<CTemplate>,
}

impl std::fmt::Debug for CTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<u64> = self.attrs.iter().map(|a| a.type_).collect();
        f.debug_struct("CTemplate").field("types", &types).finish()
    }
}

impl CTemplate {
    pub fn new(template: &[Attribute]) -> CkResult<Self> {
        let mut attrs = Vec::with_capacity(template.len());
        let mut values = Vec::with_capacity(template.len());
        let mut nested = Vec::new();
        for attribute in template {
            let t = attribute.attr_type.0;
            let mut buffer: Zeroizing<Vec<u8>> = Zeroizing::new(match &attribute.value {
                AttributeValue::Bool(b) => vec![if *b { CK_TRUE } else { CK_FALSE }],
                AttributeValue::Ulong(v) => v.to_ne_bytes().to_vec(),
                AttributeValue::Bytes(b) => b.clone(),
                AttributeValue::Mechanisms(list) => {
                    list.iter().flat_map(|m| m.0.to_ne_bytes()).collect()
                }
                AttributeValue::Template(inner) => {
                    let mut inner = CTemplate::new(inner)?;
                    let len = inner.attrs.len() * std::mem::size_of::<CK_ATTRIBUTE>();
                    let p: *mut c_void = inner.as_mut_ptr().cast();
                    attrs.push(CK_ATTRIBUTE {
                        type_: t,
                        pValue: p,
                        ulValueLen: CK_ULONG::try_from(len)
                            .map_err(|_| Ckr(CKR_ATTRIBUTE_VALUE_INVALID))?,
                    });
                    nested.push(inner);
                    continue;
                }
            });
            let len =
                CK_ULONG::try_from(buffer.len()).map_err(|_| Ckr(CKR_ATTRIBUTE_VALUE_INVALID))?;
            let p: *mut c_void = if buffer.is_empty() {
                ptr::null_mut()
            } else {
                buffer.as_mut_ptr().cast()
            };
            attrs.push(CK_ATTRIBUTE {
                type_: t,
                pValue: p,
                ulValueLen: len,
            });
            values.push(buffer);
        }
        Ok(Self {
            attrs,
            _values: values,
            _nested: nested,
        })
    }

    /// NULL for an empty template (the standard's `pTemplate`/`ulCount` 0).
    pub fn as_mut_ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }

    pub fn count(&self) -> CK_ULONG {
        CK_ULONG::try_from(self.attrs.len()).unwrap_or(0)
    }
}

/// The C bytes of a value, as its type's kind reads them.
pub fn decode(attr: u64, bytes: &[u8]) -> AttributeValue {
    match kind_of(attr) {
        AttributeKind::Bool if bytes.len() == 1 => AttributeValue::Bool(bytes[0] != CK_FALSE),
        AttributeKind::Ulong if bytes.len() == ULONG_LEN => {
            let mut b = [0u8; ULONG_LEN];
            b.copy_from_slice(bytes);
            AttributeValue::Ulong(CK_ULONG::from_ne_bytes(b))
        }
        AttributeKind::Mechanisms if bytes.len().is_multiple_of(ULONG_LEN) => {
            AttributeValue::Mechanisms(
                bytes
                    .chunks_exact(ULONG_LEN)
                    .map(|c| {
                        let mut b = [0u8; ULONG_LEN];
                        b.copy_from_slice(c);
                        MechanismType(CK_ULONG::from_ne_bytes(b))
                    })
                    .collect(),
            )
        }
        // Byte strings, dates, and values of an unexpected size (shown as
        // the module gave them).
        _ => AttributeValue::Bytes(bytes.to_vec()),
    }
}

/// `C_GetAttributeValue` of `types`, one result per type. Attribute-array
/// attributes (`CKA_WRAP_TEMPLATE`, ...) are not read back in this phase:
/// they answer `Invalid`.
pub fn read_attributes(
    module: &Module,
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    types: &[u64],
) -> CkResult<Vec<AttributeResult>> {
    let mut results: Vec<Option<AttributeResult>> = vec![None; types.len()];
    // Lengths first.
    let mut query: Vec<CK_ATTRIBUTE> = Vec::new();
    let mut asked: Vec<usize> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if kind_of(*t) == AttributeKind::Template {
            results[i] = Some(AttributeResult::Invalid);
        } else {
            query.push(CK_ATTRIBUTE {
                type_: *t,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            });
            asked.push(i);
        }
    }
    if query.is_empty() {
        return Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(AttributeResult::Invalid))
            .collect());
    }
    match module.get_attribute_value(session, object, &mut query) {
        CKR_OK | CKR_ATTRIBUTE_SENSITIVE | CKR_ATTRIBUTE_TYPE_INVALID => {}
        rv => return Err(Ckr(rv)),
    }
    let mut fetch: Vec<(usize, u64, Zeroizing<Vec<u8>>)> = Vec::new();
    for (q, &i) in query.iter().zip(&asked) {
        if q.ulValueLen == CK_UNAVAILABLE_INFORMATION {
            results[i] = Some(unavailable(module, session, object, q.type_)?);
        } else {
            let len = usize::try_from(q.ulValueLen).map_err(|_| Ckr(CKR_DEVICE_MEMORY))?;
            fetch.push((i, q.type_, Zeroizing::new(vec![0u8; len])));
        }
    }
    if !fetch.is_empty() {
        let mut attrs: Vec<CK_ATTRIBUTE> = fetch
            .iter_mut()
            .map(|(_, t, buffer)| CK_ATTRIBUTE {
                type_: *t,
                pValue: if buffer.is_empty() {
                    ptr::null_mut()
                } else {
                    buffer.as_mut_ptr().cast()
                },
                ulValueLen: CK_ULONG::try_from(buffer.len()).unwrap_or(0),
            })
            .collect();
        // NULL pValue for an empty value would be a length query again;
        // the length (0) is what we want either way.
        match module.get_attribute_value(session, object, &mut attrs) {
            CKR_OK => {}
            rv => return Err(Ckr(rv)),
        }
        for ((i, t, buffer), a) in fetch.iter().zip(&attrs) {
            let len = usize::try_from(a.ulValueLen)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            results[*i] = Some(AttributeResult::Value(decode(*t, &buffer[..len])));
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(AttributeResult::Invalid))
        .collect())
}

/// An attribute the module said it cannot give: asked alone, the module's
/// code tells sensitive from absent.
fn unavailable(
    module: &Module,
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attr: u64,
) -> CkResult<AttributeResult> {
    let mut one = [CK_ATTRIBUTE {
        type_: attr,
        pValue: ptr::null_mut(),
        ulValueLen: 0,
    }];
    match module.get_attribute_value(session, object, &mut one) {
        CKR_ATTRIBUTE_SENSITIVE => Ok(AttributeResult::Sensitive),
        CKR_ATTRIBUTE_TYPE_INVALID => Ok(AttributeResult::Invalid),
        // Answered alone, it has a value after all: report it absent
        // rather than guess.
        CKR_OK => Ok(AttributeResult::Invalid),
        rv => Err(Ckr(rv)),
    }
}

/// One attribute's value, if the object has it and may show it.
pub fn read_one(
    module: &Module,
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attr: u64,
) -> CkResult<Option<AttributeValue>> {
    Ok(
        match read_attributes(module, session, object, &[attr])?
            .into_iter()
            .next()
        {
            Some(AttributeResult::Value(v)) => Some(v),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use hsmlink_protocol::attribute_kind as cka;

    use super::*;

    #[test]
    fn values_take_their_c_form() {
        let template = vec![
            Attribute::new(cka::CKA_TOKEN, AttributeValue::Bool(true)),
            Attribute::new(cka::CKA_CLASS, AttributeValue::Ulong(CKO_SECRET_KEY)),
            Attribute::new(cka::CKA_LABEL, AttributeValue::Bytes(b"k1".to_vec())),
            Attribute::new(cka::CKA_ID, AttributeValue::Bytes(Vec::new())),
            Attribute::new(
                cka::CKA_ALLOWED_MECHANISMS,
                AttributeValue::Mechanisms(vec![MechanismType(CKM_AES_GCM)]),
            ),
            Attribute::new(
                cka::CKA_WRAP_TEMPLATE,
                AttributeValue::Template(vec![Attribute::new(
                    cka::CKA_EXTRACTABLE,
                    AttributeValue::Bool(false),
                )]),
            ),
        ];
        let mut c = CTemplate::new(&template).unwrap();
        assert_eq!(c.count(), 6);
        let p = c.as_mut_ptr();
        assert!(!p.is_null());
        let attrs = &c.attrs;
        assert_eq!(attrs[0].ulValueLen, 1);
        assert_eq!(attrs[1].ulValueLen as usize, ULONG_LEN);
        assert_eq!(attrs[2].ulValueLen, 2);
        assert!(attrs[3].pValue.is_null() && attrs[3].ulValueLen == 0);
        assert_eq!(attrs[4].ulValueLen as usize, ULONG_LEN);
        assert_eq!(
            attrs[5].ulValueLen as usize,
            std::mem::size_of::<CK_ATTRIBUTE>()
        );
        // Decoding reads them back.
        assert_eq!(decode(cka::CKA_TOKEN, &[1]), AttributeValue::Bool(true));
        assert_eq!(
            decode(cka::CKA_CLASS, &CKO_SECRET_KEY.to_ne_bytes()),
            AttributeValue::Ulong(CKO_SECRET_KEY)
        );
        assert_eq!(
            decode(cka::CKA_ALLOWED_MECHANISMS, &CKM_AES_GCM.to_ne_bytes()),
            AttributeValue::Mechanisms(vec![MechanismType(CKM_AES_GCM)])
        );
        // An odd size is shown as bytes, never misread.
        assert_eq!(
            decode(cka::CKA_CLASS, &[1, 2]),
            AttributeValue::Bytes(vec![1, 2])
        );
        let mut empty = CTemplate::new(&[]).unwrap();
        assert!(empty.as_mut_ptr().is_null());
        assert_eq!(empty.count(), 0);
    }
}
