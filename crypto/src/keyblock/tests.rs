use hex_literal::hex;

use super::*;

/// TR-31:2018 A.7.4 (also ANSI X9.143:2021 and reproduced by open-source
/// TR-31 test suites): AES-256 KBPK, PIN encryption key, 14 bytes padding.
const A74_KBPK: [u8; 32] = hex!("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6");
const A74_BLOCK: &[u8] = b"D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34";
const A74_KEY: [u8; 16] = hex!("3F419E1CB7079442AA37474C2EFBF8B8");
const A74_PADDING: [u8; 14] = hex!("1C2965473CE206BB855B01533782");

#[test]
fn tr31_2018_a74_unwraps() {
    let (header, key) = unwrap(&A74_KBPK, A74_BLOCK).unwrap();
    assert_eq!(key.as_slice(), A74_KEY);
    assert_eq!(header, Header::new(b'D', *b"P0", b'A', b'E', *b"00", b'E'));
}

#[test]
fn tr31_2018_a74_wraps_exactly() {
    let header = Header::new(b'D', *b"P0", b'A', b'E', *b"00", b'E');
    let block = wrap_with_padding(&A74_KBPK, &header, &A74_KEY, &A74_PADDING).unwrap();
    assert_eq!(block, A74_BLOCK);
}

/// ANSI X9.143:2021 section 8.1: the same key with its length masked
/// (padding to 48 bytes of key data).
#[test]
fn x9_143_2021_8_1_masked_length_unwraps() {
    let block = b"D0144P0AE00E00002C77FA3F4A553BED6E88AE5C172A4166E3D4ACA8E2AC71C158A476FAC12C13C3829DE55D3AB54C48F4C4FEF7AC75E90FC47F1B77E7B19A73ED46E64410082557";
    let (_, key) = unwrap(&A74_KBPK, block).unwrap();
    assert_eq!(key.as_slice(), A74_KEY);
}

/// ISO 20038:2017 B.3 (the wrapped key as its MAC input data shows).
#[test]
fn iso_20038_2017_b3_unwraps() {
    let kbpk = *b"256-bit AES wrapping (ISO 20038)";
    let block = b"D0112M3TV16N000018462FA5903B8D2B82FEE26B29713C0BE7ED81601087F12252093D06FC0A012C1CF769AD0E3E9E4877166AB013FC22B4";
    let (header, key) = unwrap(&kbpk, block).unwrap();
    assert_eq!(key.as_slice(), hex!("76736170706464203245455220 6B6479"));
    assert_eq!(&header.key_usage, b"M3");
    assert_eq!(header.mode_of_use, b'V');
    assert_eq!(&header.key_version, b"16");
}

/// Blocks made by a Thales payShield 10k (published in open-source TR-31
/// test suites): an AES-256 data key and a TDES BDK under an AES-256 KBPK.
#[test]
fn payshield_blocks_unwrap() {
    let kbpk = [0x41u8; 32];
    let (h, key) = unwrap(&kbpk, b"D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814").unwrap();
    assert_eq!(
        key.as_slice(),
        hex!("BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC")
    );
    assert_eq!((&h.key_usage, h.algorithm), (b"D0", b'A'));
    let (_, key) = unwrap(&kbpk, b"D0112B0TN00N000037DB9B046B7B0048785690759580ABC3B9842AB4BB7717B49E92528E575785D8123559376A2553B27BE94F054F4E971C").unwrap();
    assert_eq!(key.as_slice(), hex!("1FA1F7CEC798D91545DA8AE0C7796BD9"));
}

#[test]
fn round_trips_with_every_kbpk_size_and_optional_blocks() {
    for kbpk_len in [16, 24, 32] {
        let kbpk: Vec<u8> = (0..kbpk_len as u8).collect();
        for key_len in [16, 24, 32] {
            let key: Vec<u8> = (0..key_len as u8).map(|b| b ^ 0xA5).collect();
            let mut header = Header::new(b'D', *b"K0", b'A', b'B', *b"12", b'E');
            // KS (8 chars with ID and length) and a padding block to 16.
            header.optional_blocks = vec![
                OptionalBlock {
                    id: *b"KS",
                    data: b"ABCD".to_vec(),
                },
                OptionalBlock {
                    id: *b"PB",
                    data: b"0000".to_vec(),
                },
            ];
            let block = wrap(&kbpk, &header, &key).unwrap();
            let (h, k) = unwrap(&kbpk, &block).unwrap();
            assert_eq!(h, header);
            assert_eq!(k.as_slice(), key);
        }
    }
}

#[test]
fn long_optional_block_round_trips() {
    let mut header = Header::new(b'D', *b"D0", b'A', b'B', *b"00", b'N');
    // 2 + 2 + 2 + 4 + 296 = 306 > 255: extended length; 16 + 306 = 322,
    // padded to 336 with a 14-character PB block.
    header.optional_blocks = vec![
        OptionalBlock {
            id: *b"CT",
            data: vec![b'x'; 296],
        },
        OptionalBlock {
            id: *b"PB",
            data: vec![b'0'; 10],
        },
    ];
    let block = wrap(&A74_KBPK, &header, &A74_KEY).unwrap();
    assert_eq!(&block[16..26], b"CT00020132");
    let (h, _) = unwrap(&A74_KBPK, &block).unwrap();
    assert_eq!(h, header);
}

#[test]
fn wrong_mac_or_kbpk_is_mac_invalid() {
    let mut block = A74_BLOCK.to_vec();
    let last = block.len() - 1;
    block[last] = if block[last] == b'4' { b'5' } else { b'4' };
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::MacInvalid
    );
    let mut kbpk = A74_KBPK;
    kbpk[0] ^= 1;
    assert_eq!(
        unwrap(&kbpk, A74_BLOCK).unwrap_err(),
        KeyBlockError::MacInvalid
    );
    // An altered header field is caught by the MAC too.
    let mut block = A74_BLOCK.to_vec();
    block[8] = b'D';
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::MacInvalid
    );
}

#[test]
fn version_a_and_unknown_versions_are_refused() {
    for v in [b'A', b'E', b'Z', b'0'] {
        let mut block = A74_BLOCK.to_vec();
        block[0] = v;
        assert_eq!(
            unwrap(&A74_KBPK, &block).unwrap_err(),
            KeyBlockError::UnsupportedVersion,
            "{}",
            v as char
        );
    }
    let header = Header::new(b'A', *b"P0", b'T', b'E', *b"00", b'E');
    assert_eq!(
        wrap(&A74_KBPK, &header, &A74_KEY).unwrap_err(),
        KeyBlockError::UnsupportedVersion
    );
    // TR-31:2018 A.7.2.1, a valid version A block under its own KBPK.
    assert_eq!(
        unwrap(
            &hex!("89E88CF7931444F334BD7547FC3F380C"),
            b"A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701"
        )
        .unwrap_err(),
        KeyBlockError::UnsupportedVersion
    );
}

#[test]
fn the_version_must_fit_the_kbpk() {
    // A TDES version under an AES-256 KBPK. (A 16 or 24-byte key may be
    // TDES or AES: the server tells them apart by key type.)
    for v in [b'B', b'C'] {
        let mut block = A74_BLOCK.to_vec();
        block[0] = v;
        assert_eq!(
            unwrap(&A74_KBPK, &block).unwrap_err(),
            KeyBlockError::KbpkSize
        );
    }
}

/// TR-31:2018 A.7.2.2: version B, TDES 2-key KBPK, a PIN encryption key.
#[test]
fn tr31_2018_a722_version_b_unwraps() {
    let (header, key) = unwrap(
        &hex!("DD7515F2BFC17F85CE48F3CA25CB21F6"),
        b"B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
    )
    .unwrap();
    assert_eq!(key.as_slice(), hex!("3F419E1CB7079442AA37474C2EFBF8B8"));
    assert_eq!(header, Header::new(b'B', *b"P0", b'T', b'E', *b"00", b'E'));
}

/// TR-31:2018 A.7.3.1 (version C) and A.7.3.2 (version B): a TDES BDK with
/// key version 12 and a KS optional block (the initial key serial number).
#[test]
fn tr31_2018_a73_bdk_blocks_unwrap() {
    let (header, key) = unwrap(
        &hex!("B8ED59E0A279A295E9F5ED7944FD06B9"),
        b"C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C",
    )
    .unwrap();
    assert_eq!(key.as_slice(), hex!("EDB380DD340BC2620247D445F5B8D678"));
    assert_eq!(
        (header.version, &header.key_usage, header.mode_of_use),
        (b'C', b"B0", b'X')
    );
    assert_eq!(&header.key_version, b"12");
    assert_eq!(
        header.optional_blocks,
        vec![OptionalBlock {
            id: *b"KS",
            data: b"00604B120F9292800000".to_vec()
        }]
    );
    let (header, key) = unwrap(
        &hex!("1D22BF32387C600AD97F9B97A51311AC"),
        b"B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627",
    )
    .unwrap();
    assert_eq!(key.as_slice(), hex!("E8BC63E5479455E26577F715D587FE68"));
    assert_eq!(header.version, b'B');
}

/// One key in versions B and C made by a Thales payShield 10k (published
/// with open-source TR-31 test suites), under a TDES 2-key KBPK.
#[test]
fn payshield_tdes_blocks_unwrap() {
    let kbpk = hex!("EFE0853B256B583D868F251CE99EA1D9");
    let want = hex!("5DB50B454F8389ADCE573BE50861F2BF");
    for block in [
        &b"B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228"[..],
        b"C0072K0TN00N0000C9B875FF7A5316BF221C09ED52080DE0B45632A4EA9CE87699CB565E",
    ] {
        let (header, key) = unwrap(&kbpk, block).unwrap();
        assert_eq!(key.as_slice(), want);
        assert_eq!((&header.key_usage, header.algorithm), (b"K0", b'T'));
    }
    // The version A block of the same key stays refused.
    assert_eq!(
        unwrap(
            &kbpk,
            b"A0072K0TN00N0000F40D5672C6D0EC86F860BA88D44D00F0CA9A8CE8CD2F640287A9A9EB"
        )
        .unwrap_err(),
        KeyBlockError::UnsupportedVersion
    );
}

#[test]
fn tdes_versions_round_trip_and_detect_tampering() {
    for version in [b'B', b'C'] {
        for kbpk_len in [16, 24] {
            let kbpk: Vec<u8> = (0..kbpk_len as u8).map(|b| b.wrapping_mul(37)).collect();
            for key_len in [16, 24] {
                if key_len > kbpk_len {
                    continue;
                }
                let key: Vec<u8> = (0..key_len as u8).map(|b| b ^ 0x3C).collect();
                let mut header = Header::new(version, *b"D0", b'T', b'B', *b"00", b'E');
                header.optional_blocks = vec![OptionalBlock {
                    id: *b"KS",
                    data: b"0123".to_vec(),
                }];
                let block = wrap(&kbpk, &header, &key).unwrap();
                let (h, k) = unwrap(&kbpk, &block).unwrap();
                assert_eq!((h, k.as_slice()), (header.clone(), key.as_slice()));
                // Any altered character of header, data or MAC is caught.
                for at in [8, 30, block.len() - 1] {
                    let mut bad = block.clone();
                    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
                    assert_eq!(
                        unwrap(&kbpk, &bad).unwrap_err(),
                        KeyBlockError::MacInvalid,
                        "{} at {at}",
                        version as char
                    );
                }
            }
        }
    }
}

/// The header of a TDES block must be whole 8-byte blocks.
#[test]
fn tdes_header_must_be_whole_blocks() {
    let mut header = Header::new(b'B', *b"D0", b'T', b'B', *b"00", b'E');
    header.optional_blocks = vec![OptionalBlock {
        id: *b"KS",
        data: b"01".to_vec(),
    }];
    assert_eq!(
        wrap(&[0x22; 16], &header, &[0x33; 16]).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
}

#[test]
fn bad_lengths() {
    // Length field says 112, block is shorter or longer.
    assert_eq!(
        unwrap(&A74_KBPK, &A74_BLOCK[..110]).unwrap_err(),
        KeyBlockError::BadLength
    );
    let mut longer = A74_BLOCK.to_vec();
    longer.extend_from_slice(b"00");
    assert_eq!(
        unwrap(&A74_KBPK, &longer).unwrap_err(),
        KeyBlockError::BadLength
    );
    assert_eq!(
        unwrap(&A74_KBPK, b"D0010").unwrap_err(),
        KeyBlockError::BadLength
    );
    // Consistent length field but encrypted data not whole blocks.
    let mut short = A74_BLOCK[..110].to_vec();
    short[1..5].copy_from_slice(b"0110");
    assert_eq!(
        unwrap(&A74_KBPK, &short).unwrap_err(),
        KeyBlockError::BadLength
    );
    // No key data at all.
    let mut bare = A74_BLOCK[..16].to_vec();
    bare.extend_from_slice(&A74_BLOCK[80..]);
    bare[1..5].copy_from_slice(b"0048");
    assert_eq!(
        unwrap(&A74_KBPK, &bare).unwrap_err(),
        KeyBlockError::BadLength
    );
}

#[test]
fn inconsistent_headers() {
    // Non-decimal length.
    let mut block = A74_BLOCK.to_vec();
    block[1..5].copy_from_slice(b"011A");
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // One optional block announced, its length overruns the block.
    let mut block = A74_BLOCK.to_vec();
    block[12..14].copy_from_slice(b"01");
    block[16..20].copy_from_slice(b"KSFF");
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // Non-hex length of an optional block.
    block[16..20].copy_from_slice(b"KSZZ");
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // An optional block length shorter than its own ID and length.
    block[16..20].copy_from_slice(b"KS02");
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // Extended length form for a short optional block.
    let mut ext = A74_BLOCK[..16].to_vec();
    ext[12..14].copy_from_slice(b"01");
    ext.extend_from_slice(b"KS00011000000000");
    ext.extend_from_slice(&A74_BLOCK[16..]);
    let len = format!("{:04}", ext.len());
    ext[1..5].copy_from_slice(len.as_bytes());
    assert_eq!(
        unwrap(&A74_KBPK, &ext).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // Header (with optional blocks) not a multiple of 16.
    block[16..20].copy_from_slice(b"KS08");
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // Non-hex key data.
    let mut block = A74_BLOCK.to_vec();
    block[20] = b'G';
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
    // Non-printable character.
    let mut block = A74_BLOCK.to_vec();
    block[10] = 0;
    assert_eq!(
        unwrap(&A74_KBPK, &block).unwrap_err(),
        KeyBlockError::InconsistentHeader
    );
}

#[test]
fn kbpk_must_have_a_cipher_length() {
    assert_eq!(
        unwrap(&A74_KBPK[..20], A74_BLOCK).unwrap_err(),
        KeyBlockError::KbpkSize
    );
}
