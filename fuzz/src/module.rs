//! The builder of the `module_parse` target: C structures as an application
//! lays them out, in memory this module owns (see the target's comment for
//! the model of the calling convention).

use cryptoki_sys::*;
use hsmlink_protocol::vendor::*;

pub const ENTRY_SIZE: usize = std::mem::size_of::<CK_ATTRIBUTE>();

/// Reads the builder's program; past its end every read is 0.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data {
            [first, rest @ ..] => {
                self.data = rest;
                *first
            }
            [] => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A `CK_ULONG`: mostly small, sometimes any, sometimes an edge.
    pub fn ulong(&mut self) -> CK_ULONG {
        let tag = self.u8();
        match tag >> 6 {
            0 => CK_ULONG::from(tag & 0x3f),
            1 => CK_ULONG::from(self.u16()),
            2 => CK_ULONG::from_le_bytes(std::array::from_fn(|_| self.u8())),
            _ => [
                0,
                CK_UNAVAILABLE_INFORMATION,
                1 << 31,
                1 << 32,
                CK_ULONG::MAX / ENTRY_SIZE as CK_ULONG + 1,
                16 * 1024 * 1024,
                16 * 1024 * 1024 + 1,
                CK_ULONG::MAX - 1,
            ][usize::from(tag & 7)],
        }
    }
}

/// Every buffer the structures of one input live in, freed together after
/// the call.
pub struct Memory {
    /// The input bytes values point into (read only).
    input: Vec<u8>,
    owned: Vec<Vec<u8>>,
}

impl Memory {
    pub fn new(input: &[u8]) -> Self {
        Self {
            input: input.to_vec(),
            owned: Vec::new(),
        }
    }

    /// `len` input bytes at a chosen offset (fewer if the input is
    /// shorter: the pointer is valid for exactly the length returned).
    pub fn input_slice(&mut self, r: &mut Reader, len: usize) -> (usize, CK_ULONG) {
        let len = len.min(self.input.len());
        let offset = usize::from(r.u16()) % (self.input.len() - len + 1);
        (
            self.input[offset..].as_ptr().expose_provenance(),
            len as CK_ULONG,
        )
    }

    /// `bytes` at `misalign` bytes past an allocation's start: its address.
    /// (Moving the `Vec` into `owned` does not move its heap buffer.)
    pub fn owned(&mut self, bytes: Vec<u8>, misalign: usize) -> (usize, usize) {
        let len = bytes.len();
        let mut buffer = vec![0u8; misalign % 8];
        buffer.extend(bytes);
        let ptr = buffer[misalign % 8..].as_mut_ptr().expose_provenance();
        self.owned.push(buffer);
        (ptr, len)
    }

    /// A zeroed, writable buffer of `len` bytes.
    pub fn zeroed(&mut self, len: usize, misalign: usize) -> (usize, CK_ULONG) {
        let (ptr, len) = self.owned(vec![0; len], misalign);
        (ptr, len as CK_ULONG)
    }

    /// Consecutive `CK_ULONG`s (pointers among them), native endian.
    pub fn alloc_words(&mut self, words: &[CK_ULONG], misalign: usize) -> usize {
        let bytes = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        self.owned(bytes, misalign).0
    }

    /// A `CK_ATTRIBUTE` array of `(type, pValue, ulValueLen)` entries.
    pub fn alloc_entries(
        &mut self,
        entries: &[(CK_ULONG, usize, CK_ULONG)],
        misalign: usize,
    ) -> usize {
        let words: Vec<CK_ULONG> = entries
            .iter()
            .flat_map(|&(t, ptr, len)| [t, ptr as CK_ULONG, len])
            .collect();
        self.alloc_words(&words, misalign)
    }
}

/// Attribute types of every kind (bool, ulong, bytes, date, mechanism
/// array, attribute array), the first pick of [`attribute_type`].
pub const ATTRIBUTE_TYPES: &[CK_ULONG] = &[
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_KEY_TYPE,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_ALLOWED_MECHANISMS,
    CKA_WRAP_TEMPLATE,
    CKA_UNWRAP_TEMPLATE,
    CKA_DERIVE_TEMPLATE,
    CKA_EC_PARAMS,
    CKA_MODULUS_BITS,
    CKA_ENCRYPT,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_KEY_GEN_MECHANISM,
    CKA_VENDOR_DEFINED,
];

pub fn attribute_type(r: &mut Reader) -> CK_ULONG {
    let pick = usize::from(r.u8());
    match ATTRIBUTE_TYPES.get(pick) {
        Some(&t) => t,
        None => r.ulong(),
    }
}

/// Mechanisms with each parameter structure (and the SM numbers of the
/// other profiles), the first pick of the mechanism number.
pub const MECHANISMS: &[CK_ULONG] = &[
    CKM_AES_CBC_PAD,
    CKM_DES3_CBC,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_KWP,
    CKM_AES_CTR,
    CKM_AES_GCM,
    CKM_AES_CCM,
    CKM_RSA_PKCS_OAEP,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_ECDH1_DERIVE,
    CKM_EDDSA,
    CKM_SHA256_HMAC_GENERAL,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_AES_ECB,
    CKM_SHA256,
    CKM_HSMLINK_SM2_SM3,
    CKM_HSMLINK_SM2_KEY_EXCHANGE,
    CKM_HSMLINK_TR34,
    CKM_HSMLINK_SM4_GCM,
    CKM_HSMLINK_SM4_CBC,
    // The SM numbers of the sansec, tass and luna profiles.
    0x8000_8100,
    0x8000_0109,
    0x8000_0B22,
    0x8000_0B12,
    CKM_VENDOR_DEFINED,
];

/// A field of a parameter structure: at its offset, a `CK_ULONG`, 16 bytes,
/// or a pointer whose length is the `CK_ULONG` at `len_at`.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    Word,
    Bytes16,
    Buf { len_at: usize },
}

/// How a mechanism's parameter is laid out.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// A byte string (an IV, a nonce), or no parameter at all.
    Bytes,
    /// A C structure of this size and fields.
    Struct(usize, &'static [(usize, Field)]),
}

use Field::{Buf, Bytes16, Word};

/// The layout `pkcs11-module/src/ffi/mechanism.rs` reads for hsmlink's
/// mechanism number `mechanism` (the structures of cryptoki-sys and
/// include/hsmlink.h, LP64).
pub fn shape(mechanism: u64) -> Shape {
    let s = |size, fields| Shape::Struct(size, fields);
    match mechanism {
        CKM_AES_CTR | CKM_HSMLINK_SM4_CTR => s(24, &[(0, Word), (8, Bytes16)]),
        // CK_GCM_PARAMS: pIv, ulIvLen, ulIvBits, pAAD, ulAADLen, ulTagBits.
        CKM_AES_GCM | CKM_HSMLINK_SM4_GCM => s(
            48,
            &[
                (0, Buf { len_at: 8 }),
                (16, Word),
                (24, Buf { len_at: 32 }),
                (40, Word),
            ],
        ),
        // CK_CCM_PARAMS: ulDataLen, pNonce, ulNonceLen, pAAD, ulAADLen, ulMACLen.
        CKM_AES_CCM => s(
            48,
            &[
                (0, Word),
                (8, Buf { len_at: 16 }),
                (24, Buf { len_at: 32 }),
                (40, Word),
            ],
        ),
        // CK_RSA_PKCS_OAEP_PARAMS: hashAlg, mgf, source, pSourceData, ulSourceDataLen.
        CKM_RSA_PKCS_OAEP => s(
            40,
            &[(0, Word), (8, Word), (16, Word), (24, Buf { len_at: 32 })],
        ),
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS => s(24, &[(0, Word), (8, Word), (16, Word)]),
        // CK_ECDH1_DERIVE_PARAMS: kdf, ulSharedDataLen, pSharedData,
        // ulPublicDataLen, pPublicData.
        CKM_ECDH1_DERIVE => s(
            40,
            &[(0, Word), (16, Buf { len_at: 8 }), (32, Buf { len_at: 24 })],
        ),
        // CK_EDDSA_PARAMS: phFlag (a byte, then padding), ulContextDataLen, pContextData.
        CKM_EDDSA => s(24, &[(0, Word), (16, Buf { len_at: 8 })]),
        CKM_AES_CMAC_GENERAL
        | CKM_AES_MAC_GENERAL
        | CKM_DES3_MAC_GENERAL
        | CKM_DES3_CMAC_GENERAL
        | CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL => s(8, &[(0, Word)]),
        // CK_KEY_DERIVATION_STRING_DATA: pData, ulLen.
        CKM_AES_ECB_ENCRYPT_DATA => s(16, &[(0, Buf { len_at: 8 })]),
        // CK_AES_CBC_ENCRYPT_DATA_PARAMS: iv[16], pData, length.
        CKM_AES_CBC_ENCRYPT_DATA => s(32, &[(0, Bytes16), (16, Buf { len_at: 24 })]),
        // CK_HSMLINK_SM2_PARAMS: pUserID, ulUserIDLen.
        CKM_HSMLINK_SM2_SM3 => s(16, &[(0, Buf { len_at: 8 })]),
        // CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS: isInitiator (a byte, then
        // padding), hEphemeralKey, then four (pointer, length) pairs.
        CKM_HSMLINK_SM2_KEY_EXCHANGE => s(
            80,
            &[
                (0, Word),
                (8, Word),
                (16, Buf { len_at: 24 }),
                (32, Buf { len_at: 40 }),
                (48, Buf { len_at: 56 }),
                (64, Buf { len_at: 72 }),
            ],
        ),
        _ => Shape::Bytes,
    }
}
