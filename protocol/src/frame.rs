//! Framing: every message travels as one frame.
//!
//! ```text
//! 0        4          6        8                16
//! | body len | version | kind   | request id     | body (codec bytes) ...
//!   u32 BE     u16 BE    u16 BE   u64 BE
//! ```
//!
//! The body length is checked against [`MAX_FRAME_BODY`] before anything is
//! allocated. The request id is chosen by the client and echoed by the server,
//! so many requests can be in flight on one connection.

use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MAX_FRAME_BODY;
use crate::codec::{self, CodecError};

pub const HEADER_LEN: usize = 16;

/// What a frame's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameKind {
    /// Client -> server, first frame of a connection: [`crate::Hello`].
    Hello = 1,
    /// Server -> client: [`crate::HelloReply`].
    HelloReply = 2,
    /// Client -> server: [`crate::Request`].
    Request = 3,
    /// Server -> client: [`crate::Response`], same request id as its request.
    Response = 4,
}

impl FrameKind {
    fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Self::Hello),
            2 => Some(Self::HelloReply),
            3 => Some(Self::Request),
            4 => Some(Self::Response),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame body of {0} bytes exceeds the {MAX_FRAME_BODY}-byte limit")]
    TooLarge(u32),
    #[error("unknown frame kind {0}")]
    UnknownKind(u16),
    #[error("unexpected frame kind {0:?}")]
    UnexpectedKind(FrameKind),
    #[error("protocol version {got} where {expected} was negotiated")]
    WrongVersion { got: u16, expected: u16 },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub version: u16,
    pub kind: FrameKind,
    pub request_id: u64,
}

impl FrameHeader {
    /// Parses a header, refusing oversize bodies and unknown kinds.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let [l0, l1, l2, l3, v0, v1, k0, k1, r @ ..] = *bytes;
        let body_len = u32::from_be_bytes([l0, l1, l2, l3]);
        if body_len > MAX_FRAME_BODY {
            return Err(FrameError::TooLarge(body_len));
        }
        let kind_raw = u16::from_be_bytes([k0, k1]);
        let kind = FrameKind::from_u16(kind_raw).ok_or(FrameError::UnknownKind(kind_raw))?;
        Ok(Self {
            body_len,
            version: u16::from_be_bytes([v0, v1]),
            kind,
            request_id: u64::from_be_bytes(r),
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.body_len.to_be_bytes());
        out[4..6].copy_from_slice(&self.version.to_be_bytes());
        out[6..8].copy_from_slice(&(self.kind as u16).to_be_bytes());
        out[8..16].copy_from_slice(&self.request_id.to_be_bytes());
        out
    }

    /// Fails unless this frame is of `kind` and speaks `version`.
    pub fn expect(&self, kind: FrameKind, version: u16) -> Result<(), FrameError> {
        if self.kind != kind {
            return Err(FrameError::UnexpectedKind(self.kind));
        }
        if self.version != version {
            return Err(FrameError::WrongVersion {
                got: self.version,
                expected: version,
            });
        }
        Ok(())
    }
}

/// Encodes header and body into one buffer, ready for a single write.
pub fn encode_frame<T: Serialize>(
    kind: FrameKind,
    version: u16,
    request_id: u64,
    body: &T,
) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode(body)?;
    let body_len = u32::try_from(body.len()).map_err(|_| CodecError::TooLarge(body.len()))?;
    let header = FrameHeader {
        body_len,
        version,
        kind,
        request_id,
    };
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one frame (blocking I/O).
pub fn write_frame<W: Write, T: Serialize>(
    writer: &mut W,
    kind: FrameKind,
    version: u16,
    request_id: u64,
    body: &T,
) -> Result<(), FrameError> {
    let frame = encode_frame(kind, version, request_id, body)?;
    writer.write_all(&frame)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame's header and raw body (blocking I/O).
///
/// A clean end of stream before the first header byte is [`FrameError::Closed`].
pub fn read_frame<R: Read>(reader: &mut R) -> Result<(FrameHeader, Vec<u8>), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_closed(reader, &mut header)?;
    let header = FrameHeader::parse(&header)?;
    // Grow with the bytes that really arrive: a header claiming 16 MiB costs
    // nothing until the peer sends them.
    let claimed = header.body_len as usize;
    let mut body = Vec::with_capacity(claimed.min(64 * 1024));
    reader
        .take(u64::from(header.body_len))
        .read_to_end(&mut body)?;
    if body.len() != claimed {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok((header, body))
}

/// Reads one frame and decodes its body as `T`, checking kind and version.
pub fn read_message<R: Read, T: DeserializeOwned>(
    reader: &mut R,
    kind: FrameKind,
    version: u16,
) -> Result<(FrameHeader, T), FrameError> {
    let (header, body) = read_frame(reader)?;
    header.expect(kind, version)?;
    Ok((header, codec::decode(&body)?))
}

fn read_exact_or_closed<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
