//! The module's parsers of the application's C structures: `CK_ATTRIBUTE`
//! templates (in, and `C_GetAttributeValue`'s answer written out) and
//! `CK_MECHANISM` parameters (GCM, CCM, CTR, OAEP, PSS, ECDH, EdDSA, MAC
//! length, key-derivation data, SM2, ...), reached through the
//! `hsmlink_pkcs11::ffi::fuzzing` entry points (feature `fuzzing`).
//!
//! The structures are built from the input as an application would lay
//! them out, in fuzzer-owned buffers at fuzzer-chosen misalignments, with
//! fuzzer-chosen lengths, counts, types and NULL pointers. The C calling
//! convention says a pointer is valid for the length next to it, and the
//! model keeps to it honestly: a non-NULL pointer always points into owned
//! memory at least as long as its length (lengths may be shorter than the
//! buffer, inconsistent with the structure or the type, or zero), while
//! huge or arbitrary lengths go with NULL pointers only, and an
//! attribute-array value is always a real `CK_ATTRIBUTE` array (or NULL):
//! anything else would be a broken application no module can survive.
//!
//! Input: `[op][program length: u16 LE][program][rest]`. `op` picks the
//! parser and the SM profile; the program drives the builder below; the
//! rest is the memory values point into (`template_in`, `mechanism_in`) or
//! the server's answer as codec bytes (`template_out`). Every parser must
//! return a `CK_RV` error or a value, never panic.
#![no_main]
use cryptoki_sys::*;
use hsmlink_fuzz::module::*;
use hsmlink_pkcs11::ffi::fuzzing;
use hsmlink_protocol::attribute_kind::{AttributeKind, kind_of};
use hsmlink_protocol::{AttributeResult, codec};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [op, l0, l1, rest @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
    let (program, tail) = rest.split_at(split);
    let mut r = Reader::new(program);
    let mut mem = Memory::new(tail);
    let profile = usize::from(op >> 2);
    match op % 3 {
        0 => {
            let (ptr, count) = template(&mut r, &mut mem, 0, Access::Read);
            // SAFETY: `ptr` is NULL or a CK_ATTRIBUTE array of `count` entries
            // in `mem`, each value NULL or valid for its length, and arrays
            // real arrays, recursively (the builder's invariant); `mem` lives
            // until after the call and nothing else touches it.
            let result = unsafe {
                fuzzing::template_in(std::ptr::with_exposed_provenance_mut(ptr), count, profile)
            };
            if let Ok(attributes) = result {
                // What the module sends must encode.
                codec::encode(&attributes).expect("a parsed template must encode");
            }
        }
        1 => {
            let ptr = mechanism(&mut r, &mut mem, profile);
            // SAFETY: `ptr` is NULL or a CK_MECHANISM in `mem` whose parameter
            // is NULL or valid for ulParameterLen bytes, and laid out as the
            // mechanism's structure with its pointers NULL or valid for their
            // lengths (the builder's invariant); `mem` outlives the call.
            let result =
                unsafe { fuzzing::mechanism_in(std::ptr::with_exposed_provenance(ptr), profile) };
            if let Ok(mechanism) = result {
                codec::encode(&mechanism).expect("a parsed mechanism must encode");
            }
        }
        _ => {
            let Ok(results) = codec::decode::<Vec<AttributeResult>>(tail) else {
                return;
            };
            let (ptr, count) = template(&mut r, &mut mem, 0, Access::Write);
            // SAFETY: as for template_in, and every buffer is writable for
            // its length and zeroed, so a member the answer turns into an
            // attribute array reads as entries with NULL values.
            let _ = unsafe {
                fuzzing::template_out(std::ptr::with_exposed_provenance_mut(ptr), count, &results)
            };
        }
    }
    drop(mem);
});

/// Whether values are read (an input template) or written (an answer).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Builds a `CK_ATTRIBUTE` array at nesting level `depth`: its address
/// (NULL or in `mem`) and the count to pass.
fn template(r: &mut Reader, mem: &mut Memory, depth: usize, access: Access) -> (usize, CK_ULONG) {
    if r.u8().is_multiple_of(8) {
        // NULL with any count: CKR_ARGUMENTS_BAD unless 0.
        return (0, r.ulong());
    }
    let n = usize::from(r.u8() % 6);
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let attr_type = attribute_type(r);
        let (value, len) = value(r, mem, attr_type, depth, access);
        entries.push((attr_type, value, len));
    }
    let misalign = usize::from(r.u8() % 8);
    let ptr = mem.alloc_entries(&entries, misalign);
    // A count below the entries built is still valid; above never.
    let count = if r.u8().is_multiple_of(4) {
        usize::from(r.u8()) % (n + 1)
    } else {
        n
    };
    (ptr, count as CK_ULONG)
}

/// One entry's `(pValue, ulValueLen)`.
fn value(
    r: &mut Reader,
    mem: &mut Memory,
    attr_type: CK_ULONG,
    depth: usize,
    access: Access,
) -> (usize, CK_ULONG) {
    let array = kind_of(attr_type) == AttributeKind::Template;
    match r.u8() % 6 {
        // NULL with any length: an input error, or the length query of
        // C_GetAttributeValue.
        0 => (0, r.ulong()),
        // A real nested array (any type may get one: bytes are bytes), with
        // a length that may not be a whole number of entries; deeper than
        // the module accepts too.
        1 | 2 if depth < 3 => {
            let (ptr, count) = template(r, mem, depth + 1, access);
            if ptr == 0 {
                return (0, count);
            }
            let full = count as usize * ENTRY_SIZE;
            let cut = if r.u8().is_multiple_of(4) {
                usize::from(r.u8()) % (full + 1)
            } else {
                0
            };
            (ptr, (full - cut) as CK_ULONG)
        }
        // Bytes of a length good for the attribute's kind, or any.
        _ if !array => {
            let len = match r.u8() % 4 {
                0 => [0, 1, 2, 7, 8, 9, 16, 24][usize::from(r.u8() % 8)],
                _ => usize::from(r.u16()) % 600,
            };
            match access {
                Access::Read => mem.input_slice(r, len),
                Access::Write => mem.zeroed(len, usize::from(r.u8())),
            }
        }
        // An attribute array gets no bytes: an empty value, valid pointer.
        _ => (mem.zeroed(0, 0).0, 0),
    }
}

/// A `CK_MECHANISM` for the application's mechanism number (as profile
/// `profile` numbers it), its parameter laid out as the module will read
/// it for that number.
fn mechanism(r: &mut Reader, mem: &mut Memory, profile: usize) -> usize {
    if r.u8().is_multiple_of(16) {
        return 0;
    }
    let pick = usize::from(r.u8());
    let app_number = match MECHANISMS.get(pick) {
        Some(&m) => m,
        None => r.ulong(),
    };
    let shape = shape(fuzzing::mechanism_in_profile(profile, app_number));
    let (param, param_len) = parameter(r, mem, shape);
    mem.alloc_words(
        &[app_number, param as CK_ULONG, param_len],
        usize::from(r.u8() % 8),
    )
}

/// `(pParameter, ulParameterLen)` for `shape`.
fn parameter(r: &mut Reader, mem: &mut Memory, shape: Shape) -> (usize, CK_ULONG) {
    match r.u8() % 8 {
        0 => return (0, r.ulong()),
        1 => return (mem.zeroed(0, 0).0, 0),
        _ => {}
    }
    let Shape::Struct(size, fields) = shape else {
        // A byte string (IVs, nonces) or a parameter the mechanism does not
        // take: any length within the input.
        let len = match r.u8() % 2 {
            0 => [4, 8, 16, 12, 64, 65][usize::from(r.u8() % 6)],
            _ => usize::from(r.u16()) % 300,
        };
        return mem.input_slice(r, len);
    };
    // The structure, its pointers to input bytes or NULL.
    let mut bytes = vec![0u8; size];
    for &(offset, field) in fields {
        match field {
            Field::Word => put(&mut bytes, offset, r.ulong()),
            Field::Bytes16 => {
                for b in &mut bytes[offset..offset + 16] {
                    *b = r.u8();
                }
            }
            Field::Buf { len_at } => {
                let (ptr, len) = match r.u8() % 4 {
                    0 => (0, r.ulong()),
                    _ => {
                        let len = match r.u8() % 2 {
                            0 => [0, 1, 12, 16, 32, 65, 255, 256][usize::from(r.u8() % 8)],
                            _ => usize::from(r.u16()) % 2000,
                        };
                        mem.input_slice(r, len)
                    }
                };
                put(&mut bytes, offset, ptr as CK_ULONG);
                put(&mut bytes, len_at, len);
            }
        }
    }
    // ulParameterLen: mostly the structure's size, else a wrong one; the
    // buffer is always at least that long.
    let declared = match r.u8() % 4 {
        0 => usize::from(r.u8() % 96),
        _ => size,
    };
    bytes.resize(size.max(declared), 0);
    let (ptr, _) = mem.owned(bytes, usize::from(r.u8() % 8));
    (ptr, declared as CK_ULONG)
}

fn put(bytes: &mut [u8], offset: usize, value: CK_ULONG) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}
