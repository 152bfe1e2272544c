//! The ASN.1 of TR-34 that the CMS and X.509 crates do not define: the
//! TR-34 key block, RSAES-OAEP parameters (in both the RFC 8017 and the
//! TR-34 sample encodings), the PKCS#1 RSA public key; and the object
//! identifiers.

use cms::cert::IssuerAndSerialNumber;
use der::asn1::{Any, OctetString, UintRef};
use der::{Decode, Tag, Tagged};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use zeroize::Zeroizing;

use super::{Result, Tr34Error, malformed};
use crate::digest::DigestAlg;

/// Object identifiers (RFC 5652, RFC 8017, NIST CSOR, TR-34 2019).
pub mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    pub const SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    /// `id-aa-KP-keyTransRandomNonce`, the two-pass nonce (TR-34 2019).
    pub const RANDOM_NONCE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.25.3");
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const RSAES_OAEP: Oid = Oid::new_unwrap("1.2.840.113549.1.1.7");
    pub const MGF1: Oid = Oid::new_unwrap("1.2.840.113549.1.1.8");
    pub const P_SPECIFIED: Oid = Oid::new_unwrap("1.2.840.113549.1.1.9");
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub const SHA224: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.4");
    pub const DES_EDE3_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.7");
    pub const AES128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
    pub const AES192_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.22");
    pub const AES256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// (RFC 8017 appendix A.1.1).
#[derive(der::Sequence)]
pub struct RsaPublicKey<'a> {
    pub modulus: UintRef<'a>,
    pub public_exponent: UintRef<'a>,
}

/// The TR-34 key block (TR-34 2019 section 5.4.9):
///
/// ```text
/// KeyBlock ::= SEQUENCE {
///   version         INTEGER,
///   idKDH           IssuerAndSerialNumber,
///   clearKey        OCTET STRING,
///   attributeHeader Attribute  -- id-data, SET OF OCTET STRING (the header)
/// }
/// ```
///
/// Senders also put the header as a bare OCTET STRING; both are read.
#[derive(der::Sequence)]
struct RawKeyBlock {
    version: u8,
    id_kdh: IssuerAndSerialNumber,
    clear_key: OctetString,
    header: Any,
}

/// A parsed key block; the key in a wiped buffer.
pub struct KeyBlock {
    pub kdh: IssuerAndSerialNumber,
    pub key: Zeroizing<Vec<u8>>,
    pub header: Vec<u8>,
}

impl KeyBlock {
    pub fn parse(der: &[u8]) -> Result<Self> {
        let raw = RawKeyBlock::from_der(der).map_err(malformed)?;
        let key = Zeroizing::new(raw.clear_key.as_bytes().to_vec());
        // The decoded OCTET STRING is dropped here; its copy above is the
        // only one kept.
        drop(Zeroizing::new(raw.clear_key.into_bytes()));
        if raw.version != 1 {
            return Err(Tr34Error::Malformed);
        }
        let header = match raw.header.tag() {
            Tag::OctetString => raw.header.value().to_vec(),
            Tag::Sequence => {
                let attr: Attribute = raw.header.decode_as().map_err(malformed)?;
                if attr.oid != oid::DATA {
                    return Err(Tr34Error::Malformed);
                }
                let mut header = Vec::new();
                for value in attr.values.iter() {
                    let part: OctetString = value.decode_as().map_err(malformed)?;
                    header.extend_from_slice(part.as_bytes());
                }
                header
            }
            _ => return Err(Tr34Error::Malformed),
        };
        Ok(Self {
            kdh: raw.id_kdh,
            key,
            header,
        })
    }
}

/// RSAES-OAEP parameters (RFC 8017 appendix A.2.1): hash, MGF1's hash, the
/// label. Absent parameters mean SHA-1, MGF1 with SHA-1, empty label.
pub struct OaepParams {
    pub hash: DigestAlg,
    pub mgf: DigestAlg,
    pub label: Vec<u8>,
}

fn hash_of(alg: &AlgorithmIdentifierOwned) -> Result<DigestAlg> {
    match alg.oid {
        oid::SHA1 => Ok(DigestAlg::Sha1),
        oid::SHA224 => Ok(DigestAlg::Sha224),
        oid::SHA256 => Ok(DigestAlg::Sha256),
        oid::SHA384 => Ok(DigestAlg::Sha384),
        oid::SHA512 => Ok(DigestAlg::Sha512),
        _ => Err(Tr34Error::Unsupported),
    }
}

impl OaepParams {
    /// RFC 8017 tags its three fields `[0]`, `[1]`, `[2]` (explicit, each
    /// optional); the TR-34 2019 samples put the three algorithm
    /// identifiers untagged, in order. Both are read.
    pub fn parse(params: Option<&Any>) -> Result<Self> {
        let mut out = Self {
            hash: DigestAlg::Sha1,
            mgf: DigestAlg::Sha1,
            label: Vec::new(),
        };
        let Some(params) = params else {
            return Ok(out);
        };
        if params.tag() == Tag::Null {
            return Ok(out);
        }
        let fields: Vec<Any> = params.decode_as().map_err(malformed)?;
        for (position, field) in fields.iter().enumerate() {
            let (slot, alg) = match field.tag() {
                Tag::ContextSpecific { number, .. } => (
                    usize::from(number.value() as u8),
                    AlgorithmIdentifierOwned::from_der(field.value()).map_err(malformed)?,
                ),
                Tag::Sequence => (position, field.decode_as().map_err(malformed)?),
                _ => return Err(Tr34Error::Malformed),
            };
            match slot {
                0 => out.hash = hash_of(&alg)?,
                1 => {
                    if alg.oid != oid::MGF1 {
                        return Err(Tr34Error::Unsupported);
                    }
                    let inner: AlgorithmIdentifierOwned = alg
                        .parameters
                        .as_ref()
                        .ok_or(Tr34Error::Malformed)?
                        .decode_as()
                        .map_err(malformed)?;
                    out.mgf = hash_of(&inner)?;
                }
                2 => {
                    if alg.oid != oid::P_SPECIFIED {
                        return Err(Tr34Error::Unsupported);
                    }
                    if let Some(label) = &alg.parameters {
                        let label: OctetString = label.decode_as().map_err(malformed)?;
                        out.label = label.as_bytes().to_vec();
                    }
                }
                _ => return Err(Tr34Error::Malformed),
            }
        }
        Ok(out)
    }
}
