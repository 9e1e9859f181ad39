//! On-disk format: segment names, the segment header, record frames, and a
//! reader that walks the frames of one segment without trusting a single
//! byte it reads (see the crate documentation for the layout tables).
//!
//! Everything read from disk is decoded through `le_u32`/`le_u64`, which
//! return `None` instead of panicking, and every length is checked against
//! the bytes actually left in the file before anything is allocated.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::Lsn;

/// First four bytes of every segment.
pub(crate) const MAGIC: [u8; 4] = *b"QWAL";
/// Format version written by this build; a higher one is refused.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the segment header: magic, version, first LSN, CRC32C.
pub(crate) const HEADER_LEN: u64 = 20;
/// Size of a record frame before its payload: length, LSN, CRC32C.
pub(crate) const FRAME_HEADER_LEN: u64 = 16;
/// LSNs at or above this are implausible (they would take centuries to
/// reach) and are treated as damage, so LSN arithmetic on values read from
/// disk can never overflow.
pub(crate) const MAX_LSN: Lsn = 1 << 62;
/// Read buffer for scanning segments.
const READ_BUFFER: usize = 256 << 10;

/// File name of the segment whose first record is `first_lsn`.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

/// Parses a segment file name (`{first_lsn:020}.wal`); anything else is not a segment.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Encodes the header of a segment whose first record will be `first_lsn`.
pub(crate) fn encode_header(first_lsn: Lsn) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment header turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    /// A good version-1 header; the segment's first LSN.
    Valid(Lsn),
    /// Short or all zeros: the file was created but its header never
    /// (fully) reached the disk. Treated like a torn record.
    Torn(String),
    /// Bytes that are not a good header.
    Corrupt(String),
    /// A good header written by a newer format version.
    Newer(u32),
}

/// Checks a segment header. `bytes` is whatever could be read from the start
/// of the file, at most `HEADER_LEN` bytes.
///
/// Order matters: magic, then CRC, then version. The 20-byte header layout is
/// frozen across format versions (later versions may only add fields after
/// it), so a header with a good CRC and a higher version is a genuine newer
/// file, while a flipped version byte is caught by the CRC as damage.
pub(crate) fn decode_header(bytes: &[u8]) -> HeaderCheck {
    if bytes.len() < HEADER_LEN as usize {
        return HeaderCheck::Torn(format!(
            "segment header is torn: {} of {HEADER_LEN} bytes present",
            bytes.len()
        ));
    }
    let Some(h) = bytes.get(..HEADER_LEN as usize) else {
        return HeaderCheck::Torn("segment header is torn".into());
    };
    if h.iter().all(|&b| b == 0) {
        return HeaderCheck::Torn("segment header is all zeros (never written)".into());
    }
    if h.get(0..4) != Some(&MAGIC[..]) {
        return HeaderCheck::Corrupt(format!(
            "bad magic {:02x?}: not a QubeDB WAL segment",
            h.get(0..4).unwrap_or_default()
        ));
    }
    let (Some(version), Some(first_lsn), Some(stored), Some(covered)) =
        (le_u32(h, 4), le_u64(h, 8), le_u32(h, 16), h.get(0..16))
    else {
        return HeaderCheck::Corrupt("segment header is unreadable".into());
    };
    let computed = crc32c::crc32c(covered);
    if stored != computed {
        return HeaderCheck::Corrupt(format!(
            "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    if version > FORMAT_VERSION {
        return HeaderCheck::Newer(version);
    }
    if version == 0 {
        return HeaderCheck::Corrupt("segment header has format version 0".into());
    }
    if first_lsn == 0 || first_lsn >= MAX_LSN {
        return HeaderCheck::Corrupt(format!(
            "segment header has implausible first LSN {first_lsn}"
        ));
    }
    HeaderCheck::Valid(first_lsn)
}

/// Appends one framed record to `out`. The caller guarantees
/// `payload.len() <= MAX_RECORD_BYTES` (which fits in a u32).
pub(crate) fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    out.extend_from_slice(&frame_header(lsn, payload));
    out.extend_from_slice(payload);
}

/// The header of the frame of `payload` (its payload follows it).
pub(crate) fn frame_header(lsn: Lsn, payload: &[u8]) -> [u8; FRAME_HEADER_LEN as usize] {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..12].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), payload);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A frame header that passed the structural checks (its payload fits in the
/// file and is not absurdly long); the payload checksum is not checked yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Offset of the frame's first byte in the segment file.
    pub offset: u64,
    pub lsn: Lsn,
    pub len: usize,
    stored_crc: u32,
    /// CRC32C of the length and LSN fields; the payload is appended to it.
    partial_crc: u32,
}

/// What `SegmentReader::next_frame` found.
#[derive(Debug)]
pub(crate) enum Next {
    /// The file ends exactly at a frame boundary.
    End,
    Frame(Frame),
    /// The frame starting at `offset` is torn or damaged.
    Bad {
        offset: u64,
        why: String,
    },
}

/// Sequential reader over one segment file. `len` is the file length when it
/// was opened; nothing past it is read, so a segment being appended to
/// concurrently can be read up to a known bound.
pub(crate) struct SegmentReader {
    reader: BufReader<File>,
    /// Offset of the next unread byte.
    pub pos: u64,
    pub len: u64,
}

impl SegmentReader {
    pub fn open(path: &Path) -> io::Result<SegmentReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SegmentReader { reader: BufReader::with_capacity(READ_BUFFER, file), pos: 0, len })
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Reads and checks the segment header (the reader must be at offset 0).
    pub fn read_header(&mut self) -> io::Result<HeaderCheck> {
        let mut h = [0u8; HEADER_LEN as usize];
        let n = self.remaining().min(HEADER_LEN) as usize;
        let got = h.get_mut(..n).unwrap_or_default();
        self.reader.read_exact(got)?;
        self.pos += n as u64;
        Ok(decode_header(got))
    }

    /// Reads the next frame header. On `Frame`, the caller must consume the
    /// payload with `read_payload` or `skip_payload` before calling again.
    pub fn next_frame(&mut self) -> io::Result<Next> {
        let offset = self.pos;
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < FRAME_HEADER_LEN {
            return Ok(Next::Bad {
                offset,
                why: format!("torn record header: only {remaining} bytes left in the file"),
            });
        }
        let mut h = [0u8; FRAME_HEADER_LEN as usize];
        self.reader.read_exact(&mut h)?;
        self.pos += FRAME_HEADER_LEN;
        let (Some(len), Some(lsn), Some(stored_crc), Some(covered)) =
            (le_u32(&h, 0), le_u64(&h, 4), le_u32(&h, 12), h.get(0..12))
        else {
            return Ok(Next::Bad { offset, why: "unreadable record header".into() });
        };
        if len as usize > crate::MAX_RECORD_BYTES {
            return Ok(Next::Bad {
                offset,
                why: format!("record length {len} exceeds the maximum {}", crate::MAX_RECORD_BYTES),
            });
        }
        let left = remaining - FRAME_HEADER_LEN;
        if u64::from(len) > left {
            return Ok(Next::Bad {
                offset,
                why: format!("torn record: length {len} but only {left} bytes left in the file"),
            });
        }
        Ok(Next::Frame(Frame {
            offset,
            lsn,
            len: len as usize,
            stored_crc,
            partial_crc: crc32c::crc32c(covered),
        }))
    }

    /// Reads the payload of `frame` into `buf` (reused: no allocation once it
    /// has grown to the largest record) and returns whether the CRC matches.
    pub fn read_payload(&mut self, frame: &Frame, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        buf.resize(frame.len, 0);
        self.reader.read_exact(buf)?;
        self.pos += frame.len as u64;
        Ok(crc32c::crc32c_append(frame.partial_crc, buf) == frame.stored_crc)
    }

    /// Skips the payload of `frame` without checking it.
    pub fn skip_payload(&mut self, frame: &Frame) -> io::Result<()> {
        // `len` is at most MAX_RECORD_BYTES, far below i64::MAX.
        self.reader.seek_relative(frame.len as i64)?;
        self.pos += frame.len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_roundtrip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_file_name("00000000000000000042.wal"), Some(42));
        assert_eq!(parse_segment_file_name("0000000000000000042.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_segment_file_name("9999999999999999999x.wal"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.wal"), None); // > u64::MAX
    }

    #[test]
    fn header_checks() {
        let h = encode_header(7);
        assert_eq!(decode_header(&h), HeaderCheck::Valid(7));
        assert!(matches!(decode_header(&h[..10]), HeaderCheck::Torn(_)));
        assert!(matches!(decode_header(&[0u8; 20]), HeaderCheck::Torn(_)));
        let mut bad = h;
        bad[0] = b'X';
        assert!(matches!(decode_header(&bad), HeaderCheck::Corrupt(_)));
        let mut flipped = h;
        flipped[4] = 2; // version 2 without fixing the CRC: damage, not a newer file
        assert!(matches!(decode_header(&flipped), HeaderCheck::Corrupt(_)));
        let mut newer = h;
        newer[4..8].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&newer[0..16]);
        newer[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&newer), HeaderCheck::Newer(2));
    }
}
