//! Attribute conversion both ways, and the rules of section 5.7.5, on
//! templates built here: no server needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::mem::size_of_val;
use std::ptr::null_mut;

use cryptoki_sys::*;
use hsmlink_protocol::{Attribute, AttributeResult, AttributeValue, MAX_FRAME_BODY, MechanismType};

use super::{ENTRY_SIZE, MECHANISM_SIZE, Template, ULONG_SIZE};
use crate::error::Error;

const UNAVAILABLE: CK_ULONG = CK_UNAVAILABLE_INFORMATION;

fn ul(value: usize) -> CK_ULONG {
    CK_ULONG::try_from(value).unwrap()
}

#[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
fn w(value: CK_ULONG) -> u64 {
    u64::from(value)
}

/// An entry whose value is `value`.
fn entry(attr_type: CK_ATTRIBUTE_TYPE, value: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: attr_type,
        pValue: value.as_mut_ptr().cast(),
        ulValueLen: ul(value.len()),
    }
}

/// An entry whose value is the attribute array `members`.
fn array(attr_type: CK_ATTRIBUTE_TYPE, members: &mut [CK_ATTRIBUTE]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: attr_type,
        pValue: members.as_mut_ptr().cast(),
        ulValueLen: ul(size_of_val(members)),
    }
}

/// An entry with a NULL `pValue` and length `len`.
fn null(attr_type: CK_ATTRIBUTE_TYPE, len: CK_ULONG) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: attr_type,
        pValue: null_mut(),
        ulValueLen: len,
    }
}

fn to_wire(template: &mut [CK_ATTRIBUTE]) -> Result<Vec<Attribute>, CK_RV> {
    // SAFETY: the entries built by these tests point to live buffers of
    // their lengths (or are NULL).
    unsafe { Template::from_raw(template.as_mut_ptr(), ul(template.len())) }
        .and_then(|template| template.to_wire())
        .map_err(Error::rv)
}

fn one(attr_type: CK_ATTRIBUTE_TYPE, value: &mut [u8]) -> Result<AttributeValue, CK_RV> {
    to_wire(&mut [entry(attr_type, value)]).map(|mut attributes| attributes.remove(0).value)
}

fn write(template: &mut [CK_ATTRIBUTE], results: &[AttributeResult]) -> CK_RV {
    // SAFETY: as in `to_wire`, and the buffers are writable.
    let template = unsafe { Template::from_raw(template.as_mut_ptr(), ul(template.len())) };
    match template.and_then(|template| template.write_results(results)) {
        Ok(()) => CKR_OK,
        Err(e) => e.rv(),
    }
}

fn value(value: AttributeValue) -> AttributeResult {
    AttributeResult::Value(value)
}

fn attribute(attr_type: CK_ATTRIBUTE_TYPE, value: AttributeValue) -> Attribute {
    Attribute::new(w(attr_type), value)
}

fn mechanisms(list: &[CK_MECHANISM_TYPE]) -> Vec<u8> {
    list.iter().flat_map(|m| m.to_ne_bytes()).collect()
}

// ---- In: C templates to wire attributes ----

#[test]
fn every_kind_from_c() {
    let mut yes = [CK_TRUE];
    let mut no = [CK_FALSE];
    let mut two = [2u8];
    let mut class = CKO_SECRET_KEY.to_ne_bytes();
    let mut label = *b"my key";
    let mut start = *b"20250101";
    let mut mechs = mechanisms(&[CKM_AES_CBC, CKM_AES_GCM]);
    let mut vendor = [1u8, 2, 3];
    let mut template = [
        entry(CKA_TOKEN, &mut yes),
        entry(CKA_PRIVATE, &mut no),
        entry(CKA_SENSITIVE, &mut two),
        entry(CKA_CLASS, &mut class),
        entry(CKA_LABEL, &mut label),
        entry(CKA_START_DATE, &mut start),
        null(CKA_END_DATE, 0),
        entry(CKA_ALLOWED_MECHANISMS, &mut mechs),
        null(CKA_ID, 0),
        entry(CKA_VENDOR_DEFINED | 1, &mut vendor),
    ];
    assert_eq!(
        to_wire(&mut template),
        Ok(vec![
            attribute(CKA_TOKEN, AttributeValue::Bool(true)),
            attribute(CKA_PRIVATE, AttributeValue::Bool(false)),
            // Any nonzero CK_BBOOL is true, as in C.
            attribute(CKA_SENSITIVE, AttributeValue::Bool(true)),
            attribute(CKA_CLASS, AttributeValue::Ulong(w(CKO_SECRET_KEY))),
            attribute(CKA_LABEL, AttributeValue::Bytes(b"my key".to_vec())),
            attribute(CKA_START_DATE, AttributeValue::Bytes(b"20250101".to_vec())),
            attribute(CKA_END_DATE, AttributeValue::Bytes(vec![])),
            attribute(
                CKA_ALLOWED_MECHANISMS,
                AttributeValue::Mechanisms(vec![
                    MechanismType(w(CKM_AES_CBC)),
                    MechanismType(w(CKM_AES_GCM)),
                ])
            ),
            attribute(CKA_ID, AttributeValue::Bytes(vec![])),
            attribute(CKA_VENDOR_DEFINED | 1, AttributeValue::Bytes(vec![1, 2, 3])),
        ])
    );
    // An empty list of mechanisms.
    assert_eq!(
        one(CKA_ALLOWED_MECHANISMS, &mut []),
        Ok(AttributeValue::Mechanisms(vec![]))
    );
}

#[test]
fn wrong_lengths_are_invalid_values() {
    let invalid = Err(CKR_ATTRIBUTE_VALUE_INVALID);
    assert_eq!(one(CKA_TOKEN, &mut []), invalid);
    assert_eq!(one(CKA_TOKEN, &mut [1, 0]), invalid);
    assert_eq!(one(CKA_CLASS, &mut []), invalid);
    assert_eq!(one(CKA_CLASS, &mut [0; ULONG_SIZE - 1]), invalid);
    assert_eq!(one(CKA_CLASS, &mut [0; ULONG_SIZE + 1]), invalid);
    assert_eq!(one(CKA_START_DATE, &mut b"202501".to_owned()), invalid);
    assert_eq!(one(CKA_END_DATE, &mut b"202501011".to_owned()), invalid);
    assert_eq!(
        one(CKA_ALLOWED_MECHANISMS, &mut [0; MECHANISM_SIZE + 1]),
        invalid
    );
    assert_eq!(
        one(CKA_ALLOWED_MECHANISMS, &mut [0; MECHANISM_SIZE - 1]),
        invalid
    );
    // A NULL value of length 0 is no CK_BBOOL either.
    assert_eq!(
        to_wire(&mut [null(CKA_TOKEN, 0)]),
        Err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
}

#[test]
fn null_pointers() {
    // pValue NULL with a length: the caller broke the convention.
    assert_eq!(to_wire(&mut [null(CKA_LABEL, 3)]), Err(CKR_ARGUMENTS_BAD));
    assert_eq!(to_wire(&mut [null(CKA_TOKEN, 1)]), Err(CKR_ARGUMENTS_BAD));
    // pTemplate NULL: fine for an empty template, not otherwise.
    // SAFETY: NULL is the case under test; nothing is read.
    let empty = unsafe { Template::from_raw(null_mut(), 0) }.unwrap();
    assert_eq!(empty.to_wire(), Ok(vec![]));
    assert!(empty.types().is_empty());
    assert_eq!(empty.write_results(&[]), Ok(()));
    // SAFETY: as above.
    let rv = unsafe { Template::from_raw(null_mut(), 2) }
        .err()
        .map(Error::rv);
    assert_eq!(rv, Some(CKR_ARGUMENTS_BAD));
}

#[test]
fn nested_templates() {
    let mut yes = [CK_TRUE];
    let mut len = CK_ULONG::to_ne_bytes(16);
    let mut inner = [entry(CKA_ENCRYPT, &mut yes), entry(CKA_VALUE_LEN, &mut len)];
    let mut template = [
        array(CKA_WRAP_TEMPLATE, &mut inner),
        null(CKA_UNWRAP_TEMPLATE, 0),
    ];
    assert_eq!(
        to_wire(&mut template),
        Ok(vec![
            attribute(
                CKA_WRAP_TEMPLATE,
                AttributeValue::Template(vec![
                    attribute(CKA_ENCRYPT, AttributeValue::Bool(true)),
                    attribute(CKA_VALUE_LEN, AttributeValue::Ulong(16)),
                ])
            ),
            attribute(CKA_UNWRAP_TEMPLATE, AttributeValue::Template(vec![])),
        ])
    );

    // The nested values follow the same rules.
    let mut wrong = [0u8; 2];
    let mut inner = [entry(CKA_ENCRYPT, &mut wrong)];
    assert_eq!(
        to_wire(&mut [array(CKA_WRAP_TEMPLATE, &mut inner)]),
        Err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    let mut inner = [null(CKA_LABEL, 5)];
    assert_eq!(
        to_wire(&mut [array(CKA_WRAP_TEMPLATE, &mut inner)]),
        Err(CKR_ARGUMENTS_BAD)
    );
    assert_eq!(
        to_wire(&mut [null(CKA_WRAP_TEMPLATE, ul(ENTRY_SIZE))]),
        Err(CKR_ARGUMENTS_BAD)
    );

    // Not a whole number of CK_ATTRIBUTEs.
    let mut inner = [entry(CKA_ENCRYPT, &mut yes), entry(CKA_ENCRYPT, &mut yes)];
    let mut odd = array(CKA_WRAP_TEMPLATE, &mut inner);
    odd.ulValueLen = ul(ENTRY_SIZE + 1);
    assert_eq!(to_wire(&mut [odd]), Err(CKR_ATTRIBUTE_VALUE_INVALID));
}

#[test]
fn nesting_is_limited() {
    let mut yes = [CK_TRUE];
    // Two levels of attribute arrays: accepted.
    let mut level2 = [entry(CKA_ENCRYPT, &mut yes)];
    let mut level1 = [array(CKA_WRAP_TEMPLATE, &mut level2)];
    let mut template = [array(CKA_DERIVE_TEMPLATE, &mut level1)];
    let attributes = to_wire(&mut template).unwrap();
    assert_eq!(
        attributes,
        vec![attribute(
            CKA_DERIVE_TEMPLATE,
            AttributeValue::Template(vec![attribute(
                CKA_WRAP_TEMPLATE,
                AttributeValue::Template(vec![attribute(CKA_ENCRYPT, AttributeValue::Bool(true))])
            )])
        )]
    );
    // Three: refused.
    let mut level3 = [entry(CKA_ENCRYPT, &mut yes)];
    let mut level2 = [array(CKA_UNWRAP_TEMPLATE, &mut level3)];
    let mut level1 = [array(CKA_WRAP_TEMPLATE, &mut level2)];
    let mut template = [array(CKA_DERIVE_TEMPLATE, &mut level1)];
    assert_eq!(to_wire(&mut template), Err(CKR_ATTRIBUTE_VALUE_INVALID));
}

#[test]
fn unaligned_templates_and_values() {
    // Two CK_ATTRIBUTEs at an odd address, a CK_ULONG value at another.
    let mut values = vec![0u8; 1 + ULONG_SIZE + 1];
    values[1..=ULONG_SIZE].copy_from_slice(&CKK_AES.to_ne_bytes());
    values[ULONG_SIZE + 1] = CK_TRUE;
    let key_type = values.as_mut_ptr().wrapping_add(1);
    let token = values.as_mut_ptr().wrapping_add(1 + ULONG_SIZE);
    let mut raw = vec![0u8; 1 + 2 * ENTRY_SIZE];
    let base = raw.as_mut_ptr().wrapping_add(1).cast::<CK_ATTRIBUTE>();
    // SAFETY: `raw` holds two entries after its first byte; unaligned writes.
    unsafe {
        base.write_unaligned(CK_ATTRIBUTE {
            type_: CKA_KEY_TYPE,
            pValue: key_type.cast(),
            ulValueLen: ul(ULONG_SIZE),
        });
        base.add(1).write_unaligned(CK_ATTRIBUTE {
            type_: CKA_TOKEN,
            pValue: token.cast(),
            ulValueLen: 1,
        });
    }
    // SAFETY: two valid (unaligned) entries with valid values.
    let template = unsafe { Template::from_raw(base, 2) }.unwrap();
    assert_eq!(
        template.to_wire(),
        Ok(vec![
            attribute(CKA_KEY_TYPE, AttributeValue::Ulong(w(CKK_AES))),
            attribute(CKA_TOKEN, AttributeValue::Bool(true)),
        ])
    );

    // And written back unaligned.
    values.fill(0);
    let results = [
        value(AttributeValue::Ulong(w(CKK_SHA256_HMAC))),
        value(AttributeValue::Bool(true)),
    ];
    assert_eq!(template.write_results(&results), Ok(()));
    assert_eq!(&values[1..=ULONG_SIZE], &CKK_SHA256_HMAC.to_ne_bytes()[..]);
    assert_eq!(values[ULONG_SIZE + 1], CK_TRUE);
}

#[test]
fn a_template_larger_than_a_frame_is_refused_before_copying() {
    let frame = usize::try_from(MAX_FRAME_BODY).unwrap();
    let mut huge = vec![0u8; frame + 1];
    assert_eq!(one(CKA_VALUE, &mut huge), Err(CKR_ATTRIBUTE_VALUE_INVALID));
    // The budget is for the whole template.
    let (first, second) = huge.split_at_mut(frame / 2 + 1);
    assert_eq!(
        to_wire(&mut [entry(CKA_VALUE, first), entry(CKA_LABEL, second)]),
        Err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    assert!(one(CKA_VALUE, &mut huge[..frame]).is_ok());
}

// ---- Out: C_GetAttributeValue, section 5.7.5 ----

#[test]
fn every_kind_to_c() {
    let mut token = [0xAAu8; 4];
    let mut class = vec![0xAAu8; ULONG_SIZE];
    let mut label = [0xAAu8; 16];
    let mut mechs = vec![0xAAu8; 2 * MECHANISM_SIZE];
    let mut date = [0xAAu8; 8];
    let mut template = [
        entry(CKA_TOKEN, &mut token),
        entry(CKA_CLASS, &mut class),
        entry(CKA_LABEL, &mut label),
        entry(CKA_ALLOWED_MECHANISMS, &mut mechs),
        entry(CKA_START_DATE, &mut date),
        null(CKA_END_DATE, 0),
    ];
    let results = [
        value(AttributeValue::Bool(true)),
        value(AttributeValue::Ulong(w(CKO_SECRET_KEY))),
        value(AttributeValue::Bytes(b"demo".to_vec())),
        value(AttributeValue::Mechanisms(vec![MechanismType(w(
            CKM_AES_GCM,
        ))])),
        value(AttributeValue::Bytes(b"20250101".to_vec())),
        value(AttributeValue::Bytes(vec![])),
    ];
    assert_eq!(write(&mut template, &results), CKR_OK);
    let lengths = template.map(|entry| entry.ulValueLen);
    assert_eq!(lengths, [1, ul(ULONG_SIZE), 4, ul(MECHANISM_SIZE), 8, 0]);
    assert_eq!(token, [CK_TRUE, 0xAA, 0xAA, 0xAA]);
    assert_eq!(class, CKO_SECRET_KEY.to_ne_bytes());
    assert_eq!(&label[..5], b"demo\xAA");
    assert_eq!(&mechs[..MECHANISM_SIZE], &CKM_AES_GCM.to_ne_bytes()[..]);
    assert_eq!(&mechs[MECHANISM_SIZE..], &vec![0xAA; MECHANISM_SIZE][..]);
    assert_eq!(&date, b"20250101");
}

#[test]
fn null_values_ask_for_lengths() {
    let mut template = [
        null(CKA_TOKEN, 0),
        null(CKA_CLASS, 77),
        null(CKA_LABEL, 0),
        null(CKA_ALLOWED_MECHANISMS, 0),
        null(CKA_WRAP_TEMPLATE, 0),
    ];
    let results = [
        value(AttributeValue::Bool(false)),
        value(AttributeValue::Ulong(1)),
        value(AttributeValue::Bytes(vec![7; 300])),
        value(AttributeValue::Mechanisms(vec![
            MechanismType(1),
            MechanismType(2),
        ])),
        value(AttributeValue::Template(vec![
            Attribute::new(w(CKA_ENCRYPT), AttributeValue::Bool(true)),
            Attribute::new(w(CKA_DECRYPT), AttributeValue::Bool(false)),
            Attribute::new(w(CKA_LABEL), AttributeValue::Bytes(vec![])),
        ])),
    ];
    assert_eq!(write(&mut template, &results), CKR_OK);
    assert_eq!(
        template.map(|entry| entry.ulValueLen),
        [
            1,
            ul(ULONG_SIZE),
            300,
            ul(2 * MECHANISM_SIZE),
            ul(3 * ENTRY_SIZE)
        ]
    );
}

#[test]
fn every_entry_is_processed_and_the_worst_case_is_returned() {
    let mut short = [0xAAu8; 2];
    let mut token = [0xAAu8; 1];
    let mut template = [
        null(CKA_VALUE, 0),
        null(0x1234, 5),
        entry(CKA_LABEL, &mut short),
        entry(CKA_TOKEN, &mut token),
        null(CKA_ID, 0),
    ];
    let results = [
        AttributeResult::Sensitive,
        AttributeResult::Invalid,
        value(AttributeValue::Bytes(b"demo".to_vec())),
        value(AttributeValue::Bool(true)),
        value(AttributeValue::Bytes(b"id".to_vec())),
    ];
    assert_eq!(write(&mut template, &results), CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(
        template.map(|entry| entry.ulValueLen),
        [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, 1, 2]
    );
    assert_eq!(short, [0xAA; 2], "nothing copied into a short buffer");
    assert_eq!(token, [CK_TRUE]);

    // Without the sensitive one: TYPE_INVALID before BUFFER_TOO_SMALL.
    let mut template = [entry(CKA_LABEL, &mut short), null(0x1234, 0)];
    let results = [
        value(AttributeValue::Bytes(b"demo".to_vec())),
        AttributeResult::Invalid,
    ];
    assert_eq!(write(&mut template, &results), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_eq!(template.map(|entry| entry.ulValueLen), [UNAVAILABLE; 2]);

    // Only a short buffer.
    let mut template = [entry(CKA_LABEL, &mut short), entry(CKA_TOKEN, &mut token)];
    let results = [
        value(AttributeValue::Bytes(b"demo".to_vec())),
        value(AttributeValue::Bool(false)),
    ];
    assert_eq!(write(&mut template, &results), CKR_BUFFER_TOO_SMALL);
    assert_eq!(template.map(|entry| entry.ulValueLen), [UNAVAILABLE, 1]);
    assert_eq!(token, [CK_FALSE]);

    // Sensitive wins even over a NULL pValue.
    let mut template = [null(CKA_VALUE, 0)];
    assert_eq!(
        write(&mut template, &[AttributeResult::Sensitive]),
        CKR_ATTRIBUTE_SENSITIVE
    );
    assert_eq!(template[0].ulValueLen, UNAVAILABLE);
}

#[test]
fn attribute_arrays_to_c() {
    let members = || {
        value(AttributeValue::Template(vec![
            Attribute::new(w(CKA_ENCRYPT), AttributeValue::Bool(true)),
            Attribute::new(w(CKA_VALUE_LEN), AttributeValue::Ulong(16)),
        ]))
    };

    // The caller's nested array: types ignored on input, set on output.
    let mut encrypt = [0xAAu8; 1];
    let mut value_len = vec![0xAAu8; ULONG_SIZE];
    let mut spare = [0xAAu8; 3];
    let mut nested = [
        entry(0xFFFF, &mut encrypt),
        entry(0, &mut value_len),
        entry(0xEEEE, &mut spare),
    ];
    let mut template = [array(CKA_UNWRAP_TEMPLATE, &mut nested)];
    assert_eq!(write(&mut template, &[members()]), CKR_OK);
    assert_eq!(template[0].ulValueLen, ul(2 * ENTRY_SIZE));
    assert_eq!(
        nested.map(|entry| (entry.type_, entry.ulValueLen)),
        [
            (CKA_ENCRYPT, 1),
            (CKA_VALUE_LEN, ul(ULONG_SIZE)),
            (0xEEEE, 3)
        ]
    );
    assert_eq!(encrypt, [CK_TRUE]);
    assert_eq!(value_len, CK_ULONG::to_ne_bytes(16));
    assert_eq!(spare, [0xAA; 3]);

    // NULL members ask for their lengths.
    let mut nested = [null(0, 0), null(0, 0)];
    let mut template = [array(CKA_UNWRAP_TEMPLATE, &mut nested)];
    assert_eq!(write(&mut template, &[members()]), CKR_OK);
    assert_eq!(
        nested.map(|entry| (entry.type_, entry.ulValueLen)),
        [(CKA_ENCRYPT, 1), (CKA_VALUE_LEN, ul(ULONG_SIZE))]
    );

    // A member too small: its length unavailable, the call BUFFER_TOO_SMALL,
    // the others filled.
    let mut encrypt = [0xAAu8; 1];
    let mut value_len = [0xAAu8; 2];
    let mut nested = [entry(0, &mut encrypt), entry(0, &mut value_len)];
    let mut template = [array(CKA_UNWRAP_TEMPLATE, &mut nested)];
    assert_eq!(write(&mut template, &[members()]), CKR_BUFFER_TOO_SMALL);
    assert_eq!(template[0].ulValueLen, ul(2 * ENTRY_SIZE));
    assert_eq!(nested.map(|entry| entry.ulValueLen), [1, UNAVAILABLE]);
    assert_eq!((encrypt, value_len), ([CK_TRUE], [0xAA; 2]));

    // Room for one member of two: the array itself is too small.
    let mut encrypt = [0xAAu8; 1];
    let mut nested = [entry(0x77, &mut encrypt)];
    let mut template = [array(CKA_UNWRAP_TEMPLATE, &mut nested)];
    assert_eq!(write(&mut template, &[members()]), CKR_BUFFER_TOO_SMALL);
    assert_eq!(template[0].ulValueLen, UNAVAILABLE);
    assert_eq!((nested[0].type_, nested[0].ulValueLen), (0x77, 1));
    assert_eq!(encrypt, [0xAA]);
}

#[test]
fn a_broken_answer_writes_nothing() {
    let mut label = [0xAAu8; 8];
    let fresh = |label: &mut [u8]| [entry(CKA_LABEL, label), null(CKA_CLASS, 5)];

    // Count mismatch.
    let mut template = fresh(&mut label);
    assert_eq!(
        write(
            &mut template,
            &[value(AttributeValue::Bytes(b"x".to_vec()))]
        ),
        CKR_DEVICE_ERROR
    );
    assert_eq!(template.map(|entry| entry.ulValueLen), [8, 5]);

    // A value of the wrong kind for its type, after a good one.
    for wrong in [
        AttributeValue::Bool(true),
        AttributeValue::Bytes(vec![0; ULONG_SIZE]),
        AttributeValue::Template(vec![]),
        AttributeValue::Mechanisms(vec![]),
    ] {
        let mut template = fresh(&mut label);
        let results = [value(AttributeValue::Bytes(b"x".to_vec())), value(wrong)];
        assert_eq!(write(&mut template, &results), CKR_DEVICE_ERROR);
        assert_eq!(template.map(|entry| entry.ulValueLen), [8, 5]);
        assert_eq!(label, [0xAA; 8]);
    }

    // Only attribute-array types take attribute arrays (the caller's buffer
    // is interpreted as CK_ATTRIBUTEs only then).
    let mut template = [entry(CKA_LABEL, &mut label)];
    let results = [value(AttributeValue::Template(vec![]))];
    assert_eq!(write(&mut template, &results), CKR_DEVICE_ERROR);

    // Nested deeper than we accept.
    let deep = AttributeValue::Template(vec![Attribute::new(
        w(CKA_WRAP_TEMPLATE),
        AttributeValue::Template(vec![Attribute::new(
            w(CKA_UNWRAP_TEMPLATE),
            AttributeValue::Template(vec![]),
        )]),
    )]);
    let mut template = [null(CKA_DERIVE_TEMPLATE, 0)];
    assert_eq!(write(&mut template, &[value(deep)]), CKR_DEVICE_ERROR);
    assert_eq!(template[0].ulValueLen, 0);
}

#[test]
fn round_trip_through_the_wire() {
    let mut yes = [CK_TRUE];
    let mut class = CKO_PRIVATE_KEY.to_ne_bytes();
    let mut id = *b"\x01\x02\x03";
    let mut mechs = mechanisms(&[CKM_ECDSA, CKM_ECDSA_SHA256]);
    let mut date = *b"20301231";
    let mut inner_yes = [CK_TRUE];
    let mut inner = [entry(CKA_EXTRACTABLE, &mut inner_yes)];
    let mut template = [
        entry(CKA_SIGN, &mut yes),
        entry(CKA_CLASS, &mut class),
        entry(CKA_ID, &mut id),
        entry(CKA_ALLOWED_MECHANISMS, &mut mechs),
        entry(CKA_END_DATE, &mut date),
        array(CKA_UNWRAP_TEMPLATE, &mut inner),
    ];
    let attributes = to_wire(&mut template).unwrap();
    let results: Vec<_> = attributes
        .iter()
        .map(|attribute| value(attribute.value.clone()))
        .collect();

    let mut yes2 = [0u8];
    let mut class2 = vec![0u8; ULONG_SIZE];
    let mut id2 = [0u8; 3];
    let mut mechs2 = vec![0u8; 2 * MECHANISM_SIZE];
    let mut date2 = [0u8; 8];
    let mut inner_yes2 = [0u8];
    let mut inner2 = [entry(0, &mut inner_yes2)];
    let mut again = [
        entry(CKA_SIGN, &mut yes2),
        entry(CKA_CLASS, &mut class2),
        entry(CKA_ID, &mut id2),
        entry(CKA_ALLOWED_MECHANISMS, &mut mechs2),
        entry(CKA_END_DATE, &mut date2),
        array(CKA_UNWRAP_TEMPLATE, &mut inner2),
    ];
    assert_eq!(write(&mut again, &results), CKR_OK);
    assert_eq!(
        again.map(|entry| entry.ulValueLen),
        template.map(|entry| entry.ulValueLen)
    );
    assert_eq!(yes2, yes);
    assert_eq!(class2, class);
    assert_eq!(id2, id);
    assert_eq!(mechs2, mechs);
    assert_eq!(date2, date);
    assert_eq!(inner_yes2, inner_yes);
    assert_eq!(inner2[0].type_, CKA_EXTRACTABLE);
}
