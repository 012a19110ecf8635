//! The `model.bin` container: a fixed header, a postcard-serialized [`Program`] and a blake3
//! checksum. Layout (integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"QAIRTBIN"` |
//! | 8 | 4 | format version (u32), currently [`FORMAT_VERSION`] |
//! | 12 | 4 | header length in bytes (u32), 24 for version 1 |
//! | 16 | 8 | body length in bytes (u64) |
//! | 24 | body length | postcard encoding of [`Program`] |
//! | end - 32 | 32 | blake3 hash of every byte before it |
//!
//! Serialization is deterministic (postcard has no maps with unordered keys here, and floats
//! are stored bit for bit), so the same program always gives the same bytes. Loading checks,
//! in order: length, magic, version, header length, body length, checksum, decoding and the
//! program's invariants; each failure is its own [`ModelBinError`].

use super::program::{InvalidProgram, Program};

pub const MAGIC: [u8; 8] = *b"QAIRTBIN";
/// Bumped whenever the serialized shape of [`Program`] (or of the IR types it embeds) changes.
/// 3: quantized tensors may carry per-block encodings (`QuantParams::block`). Older files are
/// refused (their bytes would decode wrongly, not fail): rebuilding from the project makes a
/// current one.
pub const FORMAT_VERSION: u32 = 3;
const HEADER_LEN: usize = 24;
const CHECKSUM_LEN: usize = 32;

/// Why bytes are not a loadable `model.bin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelBinError {
    #[error("model.bin is truncated: {got} bytes, but the header alone takes {HEADER_LEN}")]
    TooShort { got: usize },
    #[error("not a qairt model.bin (the file starts with {found:02x?}, expected \"QAIRTBIN\")")]
    BadMagic { found: Vec<u8> },
    #[error(
        "model.bin format version {found} is not supported (this qairt reads version {supported}); rebuild it with this qairt"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("model.bin header is {found} bytes long, expected {expected} for version {FORMAT_VERSION}")]
    BadHeaderLength { found: u32, expected: u32 },
    #[error("model.bin is truncated: the header announces {expected} bytes, the file has {got}")]
    Truncated { expected: u64, got: u64 },
    #[error("model.bin has {extra} unexpected bytes after its checksum")]
    TrailingBytes { extra: u64 },
    #[error("model.bin is corrupt: checksum mismatch (stored {stored}, computed {computed})")]
    ChecksumMismatch { stored: String, computed: String },
    #[error("model.bin body does not decode: {0}")]
    Decode(String),
    #[error("model.bin holds an inconsistent program: {0}")]
    Invalid(#[from] InvalidProgram),
}

impl Program {
    /// The `model.bin` bytes of this program (deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with known lengths into a Vec cannot fail.
        let body = postcard::to_allocvec(self).expect("postcard serializes a Program");
        frame(&body)
    }

    /// Loads and checks `model.bin` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ModelBinError> {
        let Some(header) = bytes.get(..HEADER_LEN) else {
            // A prefix of a real file is reported as truncated, anything else as foreign.
            if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
                return Err(ModelBinError::BadMagic { found: bytes[..bytes.len().min(8)].to_vec() });
            }
            return Err(ModelBinError::TooShort { got: bytes.len() });
        };
        let (magic, rest) = header.split_at(8);
        if magic != MAGIC {
            return Err(ModelBinError::BadMagic { found: magic.to_vec() });
        }
        let u32_at = |at: usize| u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
        let version = u32_at(0);
        if version != FORMAT_VERSION {
            return Err(ModelBinError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let header_len = u32_at(4);
        if header_len as usize != HEADER_LEN {
            return Err(ModelBinError::BadHeaderLength { found: header_len, expected: HEADER_LEN as u32 });
        }
        let mut body_len = [0u8; 8];
        body_len.copy_from_slice(&rest[8..16]);
        let body_len = u64::from_le_bytes(body_len);
        let expected = body_len.saturating_add((HEADER_LEN + CHECKSUM_LEN) as u64);
        let got = bytes.len() as u64;
        if got < expected {
            return Err(ModelBinError::Truncated { expected, got });
        }
        if got > expected {
            return Err(ModelBinError::TrailingBytes { extra: got - expected });
        }
        // `expected == got` fits in usize from here on.
        let (content, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let computed = blake3::hash(content);
        if computed.as_bytes() != stored {
            return Err(ModelBinError::ChecksumMismatch {
                stored: hex(stored),
                computed: computed.to_hex().to_string(),
            });
        }
        let body = &content[HEADER_LEN..];
        let (program, left) =
            postcard::take_from_bytes::<Program>(body).map_err(|e| ModelBinError::Decode(e.to_string()))?;
        if !left.is_empty() {
            return Err(ModelBinError::Decode(format!("{} bytes left after the program", left.len())));
        }
        program.validate()?;
        Ok(program)
    }
}

/// `body` inside the current header and checksum: the container [`Program::to_bytes`] writes.
/// Public so that the fuzzer can hand [`Program::from_bytes`] bodies that pass the checksum.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
