//! Known answers from ASC X9 TR 34-2019 annex B (with its corrigendum):
//! the sample CA, KDH 1 and KRD 1 credentials (B.2.1), the clear key blocks
//! of B.2.2.2 (key `0123456789ABCDEFFEDCBA9876543210`, header
//! `A0256K0TB00E0000`) and the one-pass key token B.8 of the corrigendum.
//!
//! B.8's signature, certificate chain and signed attributes verify, but its
//! content-encryption key does not decrypt under the published KRD 1 key
//! with any OAEP hash (checked with OpenSSL too; the defect is known to the
//! open-source TR-34 implementations). So B.8 is a known answer for every
//! check up to the receiver step, which must then refuse it; the whole
//! path is shown end to end with tokens made by an independent KDH
//! implementation (`tests/tests/tr34.rs`). The samples were signed in 2020
//! with certificates valid 2010–2020, so "now" is the token's signing time
//! plus a minute.

use std::time::{Duration, SystemTime};

use der::asn1::UintRef;
use hex_literal::hex;

use super::*;

const CA_KDH: &[u8] = include_bytes!("samples/ca_kdh.der");
const CA_KRD: &[u8] = include_bytes!("samples/ca_krd.der");
const KDH_1: &[u8] = include_bytes!("samples/kdh_1.der");
const KRD_1_KEY: &[u8] = include_bytes!("samples/krd_1_key.der");
const B8_TOKEN: &[u8] = include_bytes!("samples/b8_one_pass_token.der");
/// 2020-02-10T19:13:53Z, the B.8 token's signing time.
const B8_SIGNED: u64 = 1_581_362_033;

/// `RSAPrivateKey` (RFC 8017 A.1.2), to load the sample KRD key.
#[derive(der::Sequence)]
struct RsaPrivateKey<'a> {
    version: u8,
    n: UintRef<'a>,
    e: UintRef<'a>,
    d: UintRef<'a>,
    p: UintRef<'a>,
    q: UintRef<'a>,
    dp: UintRef<'a>,
    dq: UintRef<'a>,
    qinv: UintRef<'a>,
}

fn krd_1() -> RsaPrivate {
    let k = RsaPrivateKey::from_der(KRD_1_KEY).unwrap();
    RsaPrivate::from_components(
        k.n.as_bytes(),
        k.e.as_bytes(),
        k.d.as_bytes(),
        Some((k.p.as_bytes(), k.q.as_bytes())),
    )
    .unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const DAY: Duration = Duration::from_secs(86_400);

fn anchors() -> Vec<Vec<u8>> {
    vec![CA_KDH.to_vec()]
}

fn import_b8(
    token: &[u8],
    anchors: &[Vec<u8>],
    held: &[Vec<u8>],
    now: SystemTime,
) -> Result<Imported> {
    import(
        token,
        &krd_1(),
        Trust {
            anchors,
            certificates: held,
        },
        Freshness::SignedWithin(DAY),
        now,
    )
}

#[test]
fn tr34_2019_b8_passes_every_check_up_to_the_receiver_key() {
    // Every check before decryption holds (a failure there would be
    // UntrustedHost, Revoked, BadSignature, Stale or Malformed) ...
    assert_eq!(
        import_b8(B8_TOKEN, &anchors(), &[KDH_1.to_vec()], at(B8_SIGNED + 60)).unwrap_err(),
        Tr34Error::NotForReceiver
    );
}

/// B.2.2.2.1: the clear TDES key block, B.2.2.2.4: the AES one.
#[test]
fn tr34_2019_b2222_clear_key_blocks_parse() {
    let tdes = hex!(
        "308182020101304a3041310b300906035504061302555331153013060355040a"
        "130c545233342053616d706c6573311b30190603550403131254523334205361"
        "6d706c65204341204b44480205340000000604100123456789abcdeffedcba98"
        "76543210301f06092a864886f70d0107013112041041303235364b3054423030"
        "4530303030"
    );
    let block = asn1::KeyBlock::parse(&tdes).unwrap();
    assert_eq!(
        block.key.as_slice(),
        hex!("0123456789ABCDEFFEDCBA9876543210")
    );
    assert_eq!(block.header, b"A0256K0TB00E0000");
    assert_eq!(
        block.kdh.serial_number.as_bytes(),
        hex!("3400000006"),
        "KDH 1 of CA KDH"
    );
    let mut aes = tdes;
    let at_header = aes.len() - 16;
    aes[at_header..].copy_from_slice(b"D0256K0AB00E0000");
    let block = asn1::KeyBlock::parse(&aes).unwrap();
    assert_eq!(block.header, b"D0256K0AB00E0000");
    // A version other than 1, and a truncated block.
    let mut v2 = tdes;
    v2[5] = 2;
    assert_eq!(asn1::KeyBlock::parse(&v2).err(), Some(Tr34Error::Malformed));
    assert_eq!(
        asn1::KeyBlock::parse(&tdes[..tdes.len() - 1]).err(),
        Some(Tr34Error::Malformed)
    );
}

#[test]
fn the_host_must_be_known_and_trusted() {
    let now = at(B8_SIGNED + 60);
    // The token does not carry the KDH certificate: without it, nothing.
    assert_eq!(
        import_b8(B8_TOKEN, &anchors(), &[], now).unwrap_err(),
        Tr34Error::UntrustedHost
    );
    // The KDH certificate alone, with no anchor, or under the wrong CA.
    assert_eq!(
        import_b8(B8_TOKEN, &[], &[KDH_1.to_vec()], now).unwrap_err(),
        Tr34Error::UntrustedHost
    );
    assert_eq!(
        import_b8(B8_TOKEN, &[CA_KRD.to_vec()], &[KDH_1.to_vec()], now).unwrap_err(),
        Tr34Error::UntrustedHost
    );
    // The KDH certificate trusted by itself is enough (the import then
    // stops at the sample's receiver defect, past every trust check).
    assert_eq!(
        import_b8(B8_TOKEN, &[KDH_1.to_vec()], &[], now).unwrap_err(),
        Tr34Error::NotForReceiver
    );
    // After the KDH certificate expired (2020-10-29).
    assert_eq!(
        import_b8(B8_TOKEN, &anchors(), &[KDH_1.to_vec()], at(1_609_459_200)).unwrap_err(),
        Tr34Error::UntrustedHost
    );
    // A CA certificate whose signature on the KDH certificate fails: the
    // KDH certificate with one byte of its signature changed.
    let mut forged = KDH_1.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        import_b8(B8_TOKEN, &anchors(), &[forged], now).unwrap_err(),
        Tr34Error::UntrustedHost
    );
}

#[test]
fn one_pass_tokens_must_be_recent() {
    assert_eq!(
        import_b8(
            B8_TOKEN,
            &anchors(),
            &[KDH_1.to_vec()],
            at(B8_SIGNED + 2 * 86_400)
        )
        .unwrap_err(),
        Tr34Error::Stale
    );
    // Signed in the future (beyond the clock skew allowed).
    assert_eq!(
        import_b8(
            B8_TOKEN,
            &anchors(),
            &[KDH_1.to_vec()],
            at(B8_SIGNED - 3600)
        )
        .unwrap_err(),
        Tr34Error::Stale
    );
    // A one-pass token has no nonce: expecting one (two pass) refuses it.
    let err = import(
        B8_TOKEN,
        &krd_1(),
        Trust {
            anchors: &anchors(),
            certificates: &[KDH_1.to_vec()],
        },
        Freshness::Nonce(&hex!("167EB0E72781E4940112233445566778")),
        at(B8_SIGNED + 60),
    )
    .unwrap_err();
    assert_eq!(err, Tr34Error::Stale);
}

/// Position of `needle` in the token (to alter one field of it).
fn find(needle: &[u8]) -> usize {
    B8_TOKEN
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn altered_tokens_are_refused() {
    let now = at(B8_SIGNED + 60);
    let held = [KDH_1.to_vec()];
    // The encrypted content (inside the signed content): digest mismatch.
    let mut t = B8_TOKEN.to_vec();
    let at_content = find(&hex!("5332A1F84521DE2D"));
    t[at_content] ^= 1;
    assert_eq!(
        import_b8(&t, &anchors(), &held, now).unwrap_err(),
        Tr34Error::BadSignature
    );
    // The signed header attribute (A0256K0TB00E0000 → A0256K0TD00E0000):
    // the signature no longer holds.
    let mut t = B8_TOKEN.to_vec();
    let header_at = find(b"A0256K0TB00E0000");
    t[header_at + 8] = b'D';
    assert_eq!(
        import_b8(&t, &anchors(), &held, now).unwrap_err(),
        Tr34Error::BadSignature
    );
    // The last byte of the signature.
    let mut t = B8_TOKEN.to_vec();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    assert_eq!(
        import_b8(&t, &anchors(), &held, now).unwrap_err(),
        Tr34Error::BadSignature
    );
    // Truncated anywhere: malformed, nothing decrypted.
    for cut in [0, 1, 100, B8_TOKEN.len() / 2, B8_TOKEN.len() - 1] {
        assert_eq!(
            import_b8(&B8_TOKEN[..cut], &anchors(), &held, now).unwrap_err(),
            Tr34Error::Malformed,
            "cut at {cut}"
        );
    }
}

#[test]
fn a_token_for_another_receiver_does_not_decrypt() {
    // A fresh 2048-bit key is not KRD 1's.
    let (other, _) = crate::rsa::generate(2048, None).unwrap();
    let err = import(
        B8_TOKEN,
        &other,
        Trust {
            anchors: &anchors(),
            certificates: &[KDH_1.to_vec()],
        },
        Freshness::SignedWithin(DAY),
        at(B8_SIGNED + 60),
    )
    .unwrap_err();
    assert_eq!(err, Tr34Error::NotForReceiver);
}

#[test]
fn oaep_parameters_in_both_encodings() {
    // The sample's untagged form: SHA-256, MGF1-SHA-256, empty label.
    let untagged = Any::from_der(&hex!(
        "3038300d06096086480165030402010500301806092a864886f70d010108300b0609608648016503040201300d06092a864886f70d0101090400"
    ))
    .unwrap();
    let p = asn1::OaepParams::parse(Some(&untagged)).unwrap();
    assert_eq!(
        (p.hash, p.mgf, p.label.len()),
        (DigestAlg::Sha256, DigestAlg::Sha256, 0)
    );
    // RFC 8017: [0] SHA-256, [1] MGF1-SHA-256 (label absent).
    let tagged = Any::from_der(&hex!(
        "302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500"
    ))
    .unwrap();
    let p = asn1::OaepParams::parse(Some(&tagged)).unwrap();
    assert_eq!((p.hash, p.mgf), (DigestAlg::Sha256, DigestAlg::Sha256));
    // No parameters: the RFC 8017 defaults.
    let p = asn1::OaepParams::parse(None).unwrap();
    assert_eq!((p.hash, p.mgf), (DigestAlg::Sha1, DigestAlg::Sha1));
}

use der::asn1::Any;

/// B.8 with its CRL replaced (CRLs lie outside the signature): `revoked`
/// is a CRL of the sample CA KDH, signed with the sample CA KDH key of
/// B.2.1.2 by OpenSSL, listing KDH 1.
fn b8_with_crl(crl: &[u8]) -> Vec<u8> {
    let info = ContentInfo::from_der(B8_TOKEN).unwrap();
    let mut signed: SignedData = info.content.decode_as().unwrap();
    let crl = x509_cert::crl::CertificateList::from_der(crl).unwrap();
    signed.crls = Some(cms::revocation::RevocationInfoChoices(
        der::asn1::SetOfVec::try_from(vec![RevocationInfoChoice::Crl(crl)]).unwrap(),
    ));
    ContentInfo {
        content_type: info.content_type,
        content: Any::encode_from(&signed).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn a_revoked_host_is_refused() {
    let revoked = include_bytes!("samples/crl_kdh_1_revoked.der");
    let token = b8_with_crl(revoked);
    let now = at(B8_SIGNED + 60);
    assert_eq!(
        import_b8(&token, &anchors(), &[KDH_1.to_vec()], now).unwrap_err(),
        Tr34Error::Revoked
    );
    // The same CRL with its signature broken is not believed either way.
    let mut forged = revoked.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        import_b8(&b8_with_crl(&forged), &anchors(), &[KDH_1.to_vec()], now).unwrap_err(),
        Tr34Error::BadSignature
    );
    // Re-encoding the untouched token's CRL changes nothing.
    let info = ContentInfo::from_der(B8_TOKEN).unwrap();
    let signed: SignedData = info.content.decode_as().unwrap();
    let RevocationInfoChoice::Crl(original) = signed.crls.unwrap().0.into_vec().remove(0) else {
        panic!("B.8 carries a CRL");
    };
    assert_eq!(
        import_b8(
            &b8_with_crl(&original.to_der().unwrap()),
            &anchors(),
            &[KDH_1.to_vec()],
            now
        )
        .unwrap_err(),
        Tr34Error::NotForReceiver
    );
}
