//! `CK_ATTRIBUTE` arrays, both ways, in one place.
//!
//! In: an application's template becomes `Vec<Attribute>`, each value taken
//! from its C representation by the kind `attribute_kind::kind_of` gives its
//! type: `CK_BBOOL` (exactly 1 byte; 0 is false, anything else true, as in
//! C), `CK_ULONG` (exactly `sizeof(CK_ULONG)` bytes, native endian), byte
//! strings, `CK_DATE` (0 or 8 bytes, sent as bytes), attribute arrays
//! (`CKF_ARRAY_ATTRIBUTE` types: an array of `CK_ATTRIBUTE`, converted
//! recursively, at most [`MAX_NESTING`] levels deep) and `CK_MECHANISM_TYPE`
//! arrays (a whole number of them). A value of the wrong length is
//! `CKR_ATTRIBUTE_VALUE_INVALID`, a NULL `pValue` with a nonzero
//! `ulValueLen` `CKR_ARGUMENTS_BAD` (the caller broke the calling
//! convention rather than giving a wrong value; every function taking a
//! template may return it), a NULL `pTemplate` with a nonzero `ulCount`
//! `CKR_ARGUMENTS_BAD` too.
//!
//! Out: `C_GetAttributeValue`'s answer is written into the caller's template
//! by the five cases of section 5.7.5, see [`Template::write_results`].
//!
//! Nothing here needs the caller's memory to be aligned: entries and
//! `CK_ULONG`s are read and written unaligned, values copied as bytes.

use std::marker::PhantomData;
use std::mem::size_of;

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_FALSE, CK_MECHANISM_TYPE, CK_TRUE, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION, CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, CKR_BUFFER_TOO_SMALL,
    CKR_GENERAL_ERROR,
};
use hsmlink_protocol::attribute_kind::{AttributeKind, kind_of};
use hsmlink_protocol::{
    Attribute, AttributeResult, AttributeType, AttributeValue, MAX_FRAME_BODY, MechanismType,
    Secret,
};

use super::{convert, wire};
use crate::error::Error;
use crate::log;
use crate::profile::SmProfile;

/// How deep attribute arrays may nest: a template may hold attribute arrays
/// (`CKA_WRAP_TEMPLATE`, ...), whose entries may be attribute arrays again
/// (a `CKA_DERIVE_TEMPLATE` naming the derived key's `CKA_WRAP_TEMPLATE`),
/// and no deeper. Deeper input is `CKR_ATTRIBUTE_VALUE_INVALID`; a deeper
/// answer from the server is a device error.
pub const MAX_NESTING: usize = 2;

/// At most this many value bytes (nested arrays included) in one template:
/// more could never fit one frame, so it is refused before being copied.
// Lossless: usize is at least 32 bits wide on every target we build for.
const MAX_TEMPLATE_BYTES: usize = MAX_FRAME_BODY as usize;

const ENTRY_SIZE: usize = size_of::<CK_ATTRIBUTE>();
const ULONG_SIZE: usize = size_of::<CK_ULONG>();
const MECHANISM_SIZE: usize = size_of::<CK_MECHANISM_TYPE>();

/// The caller's `CK_ATTRIBUTE` array (`pTemplate`, `ulCount`), or a nested
/// one (the value of an attribute-array attribute).
pub struct Template<'a> {
    ptr: *mut CK_ATTRIBUTE,
    len: usize,
    _caller: PhantomData<&'a mut [CK_ATTRIBUTE]>,
}

impl Template<'_> {
    /// Takes the caller's `(pTemplate, ulCount)`; a NULL `pTemplate` with a
    /// nonzero `ulCount` is `CKR_ARGUMENTS_BAD`.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for reading `count` `CK_ATTRIBUTE`s (and for
    /// writing them, if [`Template::write_results`] is called), not
    /// necessarily aligned. In each entry, `pValue` is NULL or valid for
    /// reading (writing, for `write_results`) `ulValueLen` bytes; for an
    /// attribute-array type it points to `ulValueLen / sizeof(CK_ATTRIBUTE)`
    /// entries that follow the same rules, recursively. Nothing else accesses
    /// this memory while the `Template` lives.
    pub unsafe fn from_raw(ptr: *mut CK_ATTRIBUTE, count: CK_ULONG) -> Result<Self, Error> {
        let len = usize::try_from(count).map_err(|_| Error::new(CKR_ARGUMENTS_BAD))?;
        if ptr.is_null() && len > 0 {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        Ok(Self {
            ptr,
            len,
            _caller: PhantomData,
        })
    }

    /// The requested types (`C_GetAttributeValue`), in order.
    pub fn types(&self) -> Vec<AttributeType> {
        (0..self.len)
            .filter_map(|index| self.entry(index))
            .map(|entry| AttributeType(wire(entry.type_)))
            .collect()
    }

    /// True if some entry has no buffer (`pValue` NULL): the caller asks
    /// for lengths.
    pub fn has_length_query(&self) -> bool {
        (0..self.len)
            .filter_map(|index| self.entry(index))
            .any(|entry| entry.pValue.is_null())
    }

    /// An input template as wire attributes (`C_CreateObject`, `C_CopyObject`,
    /// `C_SetAttributeValue`, `C_FindObjectsInit`).
    pub fn to_wire(&self) -> Result<Vec<Attribute>, Error> {
        let mut budget = MAX_TEMPLATE_BYTES;
        self.read(0, &mut budget)
    }

    /// [`Template::to_wire`], the application's SM numbers made hsmlink's.
    pub fn to_wire_for(&self, profile: &SmProfile) -> Result<Vec<Attribute>, Error> {
        Ok(profile.template_in(self.to_wire()?))
    }

    /// Writes the server's answer to `C_GetAttributeValue` into the template
    /// by the five cases of section 5.7.5, processing every entry even after
    /// one failed:
    /// 1. `Sensitive`: `ulValueLen` = `CK_UNAVAILABLE_INFORMATION`,
    ///    `CKR_ATTRIBUTE_SENSITIVE`;
    /// 2. `Invalid`: `CK_UNAVAILABLE_INFORMATION`, `CKR_ATTRIBUTE_TYPE_INVALID`;
    /// 3. a value and a NULL `pValue`: `ulValueLen` = the value's length;
    /// 4. a value that fits: copied, `ulValueLen` = its length;
    /// 5. a value that does not fit: `CK_UNAVAILABLE_INFORMATION`,
    ///    `CKR_BUFFER_TOO_SMALL`.
    ///
    /// Attribute arrays: with a NULL `pValue` the length is `n *
    /// sizeof(CK_ATTRIBUTE)`; otherwise the caller's nested array must hold
    /// `n` entries (case 5 if not), whose `type` we set and whose values we
    /// fill by cases 3 to 5, recursively.
    ///
    /// The call's result is `CKR_ATTRIBUTE_SENSITIVE` if case 1 happened,
    /// else `CKR_ATTRIBUTE_TYPE_INVALID` if case 2 did, else
    /// `CKR_BUFFER_TOO_SMALL` if case 5 did (the standard lets us return any
    /// of them; this is its order, and the two permanent facts come before
    /// the one a retry with bigger buffers can cure), else `CKR_OK`.
    ///
    /// An answer with another number of entries, or a value not of its
    /// type's kind, is a device error and nothing is written.
    pub fn write_results(self, results: &[AttributeResult]) -> Result<(), Error> {
        if results.len() != self.len {
            log::error!(
                "protocol error: {} attribute result(s) for {} requested",
                results.len(),
                self.len
            );
            return Err(Error::device());
        }
        // Everything is converted before anything is written.
        let prepared = results
            .iter()
            .zip(self.types())
            .map(|(result, attr_type)| Prepared::from_wire(attr_type.0, result))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut outcome = Outcome::default();
        for (index, result) in prepared.iter().enumerate() {
            match result {
                Prepared::Sensitive => {
                    self.set_len(index, CK_UNAVAILABLE_INFORMATION);
                    outcome.sensitive = true;
                }
                Prepared::Invalid => {
                    self.set_len(index, CK_UNAVAILABLE_INFORMATION);
                    outcome.type_invalid = true;
                }
                Prepared::Value(value) => self.fill(index, None, value, &mut outcome)?,
            }
        }
        outcome.into_result()
    }

    /// Entry `index`, or `None` past the end.
    fn entry(&self, index: usize) -> Option<CK_ATTRIBUTE> {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, and `ptr` is valid for reading `len`
        // entries (from_raw's contract), so `ptr.add(index)` stays inside the
        // caller's array; the read does not need alignment.
        Some(unsafe { self.ptr.add(index).read_unaligned() })
    }

    /// Overwrites entry `index` (nothing past the end).
    fn set_entry(&self, index: usize, entry: CK_ATTRIBUTE) {
        if index >= self.len {
            return;
        }
        // SAFETY: `index < len`, and `ptr` is valid for writing `len` entries
        // when results are written (from_raw's contract); the write does not
        // need alignment.
        unsafe { self.ptr.add(index).write_unaligned(entry) }
    }

    fn set_len(&self, index: usize, len: CK_ULONG) {
        if let Some(mut entry) = self.entry(index) {
            entry.ulValueLen = len;
            self.set_entry(index, entry);
        }
    }

    /// The attribute array in `entry` (one of ours) with room for `count`
    /// entries, `count * sizeof(CK_ATTRIBUTE)` being at most its
    /// `ulValueLen` (checked: `CKR_GENERAL_ERROR` otherwise, a bug of ours).
    fn nested(&self, entry: &CK_ATTRIBUTE, count: usize) -> Result<Template<'_>, Error> {
        let fits = count
            .checked_mul(ENTRY_SIZE)
            .zip(usize::try_from(entry.ulValueLen).ok())
            .is_some_and(|(needed, capacity)| needed <= capacity);
        let count = CK_ULONG::try_from(count).map_err(|_| Error::new(CKR_GENERAL_ERROR))?;
        if !fits {
            return Err(Error::new(CKR_GENERAL_ERROR));
        }
        // SAFETY: `entry` is an entry of this template of an attribute-array
        // type (the callers check the kind), so its `pValue` is NULL or valid
        // for `ulValueLen / sizeof(CK_ATTRIBUTE) >= count` entries following
        // the rules of from_raw, for as long as this template lives (our own
        // contract).
        unsafe { Template::from_raw(entry.pValue.cast(), count) }
    }

    fn read(&self, depth: usize, budget: &mut usize) -> Result<Vec<Attribute>, Error> {
        (0..self.len)
            .filter_map(|index| self.entry(index))
            .map(|entry| self.read_entry(&entry, depth, budget))
            .collect()
    }

    /// One input entry (one of ours) at nesting level `depth`.
    fn read_entry(
        &self,
        entry: &CK_ATTRIBUTE,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Attribute, Error> {
        let attr_type = wire(entry.type_);
        if entry.pValue.is_null() && entry.ulValueLen != 0 {
            return Err(Error::new(CKR_ARGUMENTS_BAD));
        }
        let len = usize::try_from(entry.ulValueLen)
            .ok()
            .filter(|&len| len <= *budget)
            .ok_or_else(|| too_large(attr_type))?;
        *budget -= len;
        let value = match kind_of(attr_type) {
            AttributeKind::Template => {
                if depth >= MAX_NESTING || len % ENTRY_SIZE != 0 {
                    return Err(Error::new(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                let nested = self.nested(entry, len / ENTRY_SIZE)?;
                AttributeValue::Template(nested.read(depth + 1, budget)?)
            }
            kind => {
                let bytes: &[u8] = if len == 0 {
                    &[]
                } else {
                    // SAFETY: `pValue` is not NULL (checked above, as `len`
                    // is not 0) and valid for reading `ulValueLen` bytes
                    // (from_raw's contract), `len` is at most 16 MiB (the
                    // budget) so well below `isize::MAX`, bytes need no
                    // alignment, and nothing writes that memory meanwhile.
                    unsafe { std::slice::from_raw_parts(entry.pValue.cast::<u8>(), len) }
                };
                value_from_c(kind, bytes)?
            }
        };
        Ok(Attribute::new(attr_type, value))
    }

    /// Cases 3 to 5 of section 5.7.5 for entry `index` (one of ours) and a
    /// value of the server; `nested_type` is the type to set in the entry
    /// when it belongs to an attribute array (whose input types are ignored).
    fn fill(
        &self,
        index: usize,
        nested_type: Option<CK_ATTRIBUTE_TYPE>,
        value: &CValue,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let Some(mut entry) = self.entry(index) else {
            return Ok(());
        };
        if let Some(attr_type) = nested_type {
            entry.type_ = attr_type;
        }
        let needed = value.len();
        let needed_len = CK_ULONG::try_from(needed).map_err(|_| Error::device())?;
        let fits = usize::try_from(entry.ulValueLen).is_ok_and(|capacity| capacity >= needed);
        if entry.pValue.is_null() {
            entry.ulValueLen = needed_len;
        } else if !fits {
            entry.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            outcome.too_small = true;
        } else {
            match value {
                CValue::Bytes(bytes) => {
                    // SAFETY: `pValue` is not NULL and valid for writing
                    // `ulValueLen >= bytes.len()` bytes (from_raw's
                    // contract); bytes need no alignment; `bytes` is our own
                    // memory, so the two cannot overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_bytes().as_ptr(),
                            entry.pValue.cast::<u8>(),
                            bytes.len(),
                        );
                    }
                }
                CValue::Array(members) => {
                    // CValue::Array only for attribute-array types (see
                    // CValue::from_wire), as `nested` requires: the caller's
                    // own type for a top-level entry, the type we are
                    // setting for a member of an array (section 5.7.5: the
                    // types of members are set on output, and the caller
                    // must supply buffers fit for them).
                    let nested = self.nested(&entry, members.len())?;
                    for (member, (attr_type, value)) in members.iter().enumerate() {
                        nested.fill(member, Some(*attr_type), value, outcome)?;
                    }
                }
            }
            entry.ulValueLen = needed_len;
        }
        self.set_entry(index, entry);
        Ok(())
    }
}

/// A value from its C representation (every kind but attribute arrays,
/// which [`Template`] reads since they hold pointers).
pub fn value_from_c(kind: AttributeKind, bytes: &[u8]) -> Result<AttributeValue, Error> {
    let invalid = || Error::new(CKR_ATTRIBUTE_VALUE_INVALID);
    Ok(match kind {
        AttributeKind::Bool => match bytes {
            [value] => AttributeValue::Bool(*value != CK_FALSE),
            _ => return Err(invalid()),
        },
        AttributeKind::Ulong => {
            let bytes = <[u8; ULONG_SIZE]>::try_from(bytes).map_err(|_| invalid())?;
            AttributeValue::Ulong(wire(CK_ULONG::from_ne_bytes(bytes)))
        }
        AttributeKind::Bytes => AttributeValue::Bytes(bytes.to_vec()),
        AttributeKind::Date if bytes.is_empty() || bytes.len() == 8 => {
            AttributeValue::Bytes(bytes.to_vec())
        }
        AttributeKind::Date => return Err(invalid()),
        AttributeKind::Mechanisms => {
            let chunks = bytes.chunks_exact(MECHANISM_SIZE);
            if !chunks.remainder().is_empty() {
                return Err(invalid());
            }
            AttributeValue::Mechanisms(
                chunks
                    .map(|chunk| {
                        <[u8; MECHANISM_SIZE]>::try_from(chunk)
                            .map(|m| MechanismType(wire(CK_MECHANISM_TYPE::from_ne_bytes(m))))
                            .map_err(|_| invalid())
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        // Read by Template::read_entry; never here.
        AttributeKind::Template => return Err(Error::new(CKR_GENERAL_ERROR)),
    })
}

fn too_large(attr_type: u64) -> Error {
    log::debug!("attribute {attr_type:#x}: the template is larger than a frame");
    Error::new(CKR_ATTRIBUTE_VALUE_INVALID)
}

/// One entry of the server's answer, ready for the caller's template.
#[derive(Debug)]
enum Prepared {
    Value(CValue),
    Sensitive,
    Invalid,
}

impl Prepared {
    fn from_wire(attr_type: u64, result: &AttributeResult) -> Result<Self, Error> {
        Ok(match result {
            AttributeResult::Value(value) => Self::Value(CValue::from_wire(attr_type, value, 0)?),
            AttributeResult::Sensitive => Self::Sensitive,
            AttributeResult::Invalid => Self::Invalid,
        })
    }
}

/// A value in its C representation.
#[derive(Debug)]
pub enum CValue {
    /// `CK_BBOOL`, `CK_ULONG`, a byte string or a `CK_MECHANISM_TYPE` array,
    /// as the bytes to copy (wiped on drop: it may be key material).
    Bytes(Secret),
    /// An attribute array: each member's type and value.
    Array(Vec<(CK_ATTRIBUTE_TYPE, CValue)>),
}

impl CValue {
    /// The C representation of the server's `value` for `attr_type`, at
    /// nesting level `depth`. The value must be of the kind of its type
    /// (a date as bytes): anything else is a broken peer.
    pub fn from_wire(attr_type: u64, value: &AttributeValue, depth: usize) -> Result<Self, Error> {
        let kind = kind_of(attr_type);
        Ok(match (kind, value) {
            (AttributeKind::Bool, AttributeValue::Bool(value)) => {
                Self::Bytes(Secret::new(vec![if *value { CK_TRUE } else { CK_FALSE }]))
            }
            (AttributeKind::Ulong, AttributeValue::Ulong(value)) => {
                Self::Bytes(Secret::from_slice(&convert::ulong(*value)?.to_ne_bytes()))
            }
            (AttributeKind::Bytes | AttributeKind::Date, AttributeValue::Bytes(bytes)) => {
                Self::Bytes(Secret::from_slice(bytes))
            }
            (AttributeKind::Mechanisms, AttributeValue::Mechanisms(mechanisms)) => {
                let mut bytes = Vec::with_capacity(mechanisms.len().saturating_mul(MECHANISM_SIZE));
                for mechanism in mechanisms {
                    bytes.extend_from_slice(&convert::ulong(mechanism.0)?.to_ne_bytes());
                }
                Self::Bytes(Secret::new(bytes))
            }
            (AttributeKind::Template, AttributeValue::Template(members)) if depth < MAX_NESTING => {
                Self::Array(
                    members
                        .iter()
                        .map(|member| {
                            let member_type = member.attr_type.0;
                            Ok((
                                convert::ulong(member_type)?,
                                Self::from_wire(member_type, &member.value, depth + 1)?,
                            ))
                        })
                        .collect::<Result<_, Error>>()?,
                )
            }
            _ => {
                log::error!(
                    "protocol error: hsmlink-server sent a value of another kind than \
                     {kind:?} for attribute {attr_type:#x} (or nested too deep)"
                );
                return Err(Error::device());
            }
        })
    }

    /// The length `ulValueLen` reports for this value.
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::Array(members) => members.len().saturating_mul(ENTRY_SIZE),
        }
    }
}

/// Which failure cases of section 5.7.5 happened.
#[derive(Debug, Default)]
struct Outcome {
    sensitive: bool,
    type_invalid: bool,
    too_small: bool,
}

impl Outcome {
    fn into_result(self) -> Result<(), Error> {
        let rv = if self.sensitive {
            CKR_ATTRIBUTE_SENSITIVE
        } else if self.type_invalid {
            CKR_ATTRIBUTE_TYPE_INVALID
        } else if self.too_small {
            CKR_BUFFER_TOO_SMALL
        } else {
            return Ok(());
        };
        Err(Error::new(rv))
    }
}

#[cfg(test)]
mod tests;
