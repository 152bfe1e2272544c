//! The key block header: 16 ASCII characters and the optional blocks.

use super::{KeyBlockError, Result};

/// Length of the fixed part of the header.
pub const FIXED_LEN: usize = 16;
/// Largest key block whose length fits the 4-digit length field.
const MAX_LEN: usize = 9999;

/// One optional block, kept as it came (ID and data, printable ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalBlock {
    /// Two-character block ID (`KS`, `KC`, `PB`, ...).
    pub id: [u8; 2],
    /// The block's data, without ID and length.
    pub data: Vec<u8>,
}

impl OptionalBlock {
    fn encoded_len(&self) -> usize {
        let short = 4 + self.data.len();
        if short <= 0xFF {
            short
        } else {
            // "00", length of the length in bytes "02", four hex digits.
            2 + 2 + 2 + 4 + self.data.len()
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.id);
        let n = self.encoded_len();
        if n <= 0xFF {
            out.extend_from_slice(format!("{n:02X}").as_bytes());
        } else if n <= 0xFFFF {
            out.extend_from_slice(format!("0002{n:04X}").as_bytes());
        } else {
            return Err(KeyBlockError::InconsistentHeader);
        }
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

/// The header of a key block (X9.143 section 6.2), fields as ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Version ID: `A`, `B`, `C`, `D`, ...
    pub version: u8,
    /// Key usage, e.g. `K0`, `D0`, `M3`, `P0`.
    pub key_usage: [u8; 2],
    /// Algorithm: `A` AES, `T` TDES, `D` DES, `H` HMAC, ...
    pub algorithm: u8,
    /// Mode of use: `B`, `C`, `D`, `E`, `G`, `N`, `S`, `T`, `V`, `X`, `Y`.
    pub mode_of_use: u8,
    /// Key version number (two characters, `00` when unused).
    pub key_version: [u8; 2],
    /// Exportability: `E`, `N` or `S`.
    pub exportability: u8,
    /// Reserved field (`00`).
    pub reserved: [u8; 2],
    /// Optional blocks, in order, kept as they came.
    pub optional_blocks: Vec<OptionalBlock>,
}

fn decimal(field: &[u8]) -> Result<usize> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    Ok(field
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

fn hex_number(field: &[u8]) -> Result<usize> {
    if field.is_empty() || field.len() > 8 || !field.iter().all(u8::is_ascii_hexdigit) {
        return Err(KeyBlockError::InconsistentHeader);
    }
    let s = core::str::from_utf8(field).map_err(|_| KeyBlockError::InconsistentHeader)?;
    usize::from_str_radix(s, 16).map_err(|_| KeyBlockError::InconsistentHeader)
}

fn printable(c: u8) -> bool {
    (0x20..=0x7E).contains(&c)
}

impl Header {
    /// A header with no optional blocks and reserved `00`.
    pub fn new(
        version: u8,
        key_usage: [u8; 2],
        algorithm: u8,
        mode_of_use: u8,
        key_version: [u8; 2],
        exportability: u8,
    ) -> Self {
        Self {
            version,
            key_usage,
            algorithm,
            mode_of_use,
            key_version,
            exportability,
            reserved: *b"00",
            optional_blocks: Vec::new(),
        }
    }

    /// Parses the header of a whole key block `block` (the length field is
    /// checked against `block.len()`).
    ///
    /// Optional block lengths must be in their shortest form (the extended
    /// form only above 255), so that the header re-encodes to what came.
    pub fn parse(block: &[u8]) -> Result<Self> {
        let (parsed, header_len) = Self::parse_inner(block, true)?;
        if parsed.encoded_len() != header_len {
            return Err(KeyBlockError::InconsistentHeader);
        }
        Ok(parsed)
    }

    /// Parses a header kept apart from its block (with its optional blocks
    /// and nothing after them), such as the one stored on an imported key.
    pub fn parse_alone(header: &[u8]) -> Result<Self> {
        let (parsed, header_len) = Self::parse_inner(header, false)?;
        if header_len != header.len() || parsed.encoded_len() != header_len {
            return Err(KeyBlockError::InconsistentHeader);
        }
        Ok(parsed)
    }

    fn parse_inner(block: &[u8], whole_block: bool) -> Result<(Self, usize)> {
        if block.len() < FIXED_LEN {
            return Err(KeyBlockError::BadLength);
        }
        if !block.iter().all(|&c| printable(c)) {
            return Err(KeyBlockError::InconsistentHeader);
        }
        let version = block[0];
        if !version.is_ascii_alphanumeric() {
            return Err(KeyBlockError::UnsupportedVersion);
        }
        let length = decimal(&block[1..5])?;
        if whole_block && length != block.len() {
            return Err(KeyBlockError::BadLength);
        }
        let count = decimal(&block[12..14])?;
        let mut optional_blocks = Vec::with_capacity(count);
        let mut at = FIXED_LEN;
        for _ in 0..count {
            let id_end = at + 2;
            let id: [u8; 2] = block
                .get(at..id_end)
                .and_then(|s| s.try_into().ok())
                .ok_or(KeyBlockError::InconsistentHeader)?;
            if !id.iter().all(u8::is_ascii_alphanumeric) {
                return Err(KeyBlockError::InconsistentHeader);
            }
            let short = hex_number(
                block
                    .get(id_end..id_end + 2)
                    .ok_or(KeyBlockError::InconsistentHeader)?,
            )?;
            let (len, data_at) = if short != 0 {
                (short, id_end + 2)
            } else {
                // Extended length: "00", length of the length in bytes
                // (2 hex digits), the length (twice as many hex digits).
                let ll = 2 * hex_number(
                    block
                        .get(id_end + 2..id_end + 4)
                        .ok_or(KeyBlockError::InconsistentHeader)?,
                )?;
                let long = hex_number(
                    block
                        .get(id_end + 4..id_end + 4 + ll)
                        .ok_or(KeyBlockError::InconsistentHeader)?,
                )?;
                (long, id_end + 4 + ll)
            };
            let end = at
                .checked_add(len)
                .filter(|&e| e >= data_at && e <= block.len())
                .ok_or(KeyBlockError::InconsistentHeader)?;
            optional_blocks.push(OptionalBlock {
                id,
                data: block[data_at..end].to_vec(),
            });
            at = end;
        }
        let parsed = Self {
            version,
            key_usage: [block[5], block[6]],
            algorithm: block[7],
            mode_of_use: block[8],
            key_version: [block[9], block[10]],
            exportability: block[11],
            reserved: [block[14], block[15]],
            optional_blocks,
        };
        Ok((parsed, at))
    }

    /// Length of the header with its optional blocks, in characters.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + self
                .optional_blocks
                .iter()
                .map(OptionalBlock::encoded_len)
                .sum::<usize>()
    }

    /// The header as ASCII, for a key block of `total` characters.
    pub fn encode(&self, total: usize) -> Result<Vec<u8>> {
        if total > MAX_LEN {
            return Err(KeyBlockError::BadLength);
        }
        if self.optional_blocks.len() > 99 {
            return Err(KeyBlockError::InconsistentHeader);
        }
        let fields = [
            &[self.version][..],
            &self.key_usage,
            &[self.algorithm, self.mode_of_use],
            &self.key_version,
            &[self.exportability],
            &self.reserved,
        ];
        if !fields.iter().flat_map(|f| f.iter()).all(|&c| printable(c))
            || !self
                .optional_blocks
                .iter()
                .all(|b| b.id.iter().chain(&b.data).all(|&c| printable(c)))
        {
            return Err(KeyBlockError::InconsistentHeader);
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.version);
        out.extend_from_slice(format!("{total:04}").as_bytes());
        out.extend_from_slice(&self.key_usage);
        out.push(self.algorithm);
        out.push(self.mode_of_use);
        out.extend_from_slice(&self.key_version);
        out.push(self.exportability);
        out.extend_from_slice(format!("{:02}", self.optional_blocks.len()).as_bytes());
        out.extend_from_slice(&self.reserved);
        for b in &self.optional_blocks {
            b.encode(&mut out)?;
        }
        Ok(out)
    }
}
