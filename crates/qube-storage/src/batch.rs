//! Write batches and their encoding as WAL record payloads.
//!
//! ```text
//! payload := count:u32le op*
//! op      := 0x01 key_len:u32le key val_len:u32le value     (set)
//!          | 0x02 key_len:u32le key                         (delete)
//! ```
//! A batch *is* its payload: `set` and `delete` append the op's encoding to
//! one buffer (no allocation per op), `ops` reads them back in place, and
//! the log gets the buffer as it is (`payload`), so a commit of a million
//! keys copies each key and value once into the batch and not again. The
//! WAL frames and checksums the payload; decoding still checks every
//! length so that a bug or a damaged record is an error, never a panic.

use qube_common::{Error, Result};

use crate::{MAX_BATCH_BYTES, MAX_KEY_LEN, MAX_VALUE_LEN};

/// One operation of a batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Set(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

impl<'a> Op<'a> {
    pub fn key(&self) -> &'a [u8] {
        match self {
            Op::Set(k, _) | Op::Delete(k) => k,
        }
    }
}

/// An ordered list of sets and deletes applied atomically. Later operations
/// on the same key win.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    /// The payload: the count (patched by `payload`), then the ops.
    buf: Vec<u8>,
    count: u32,
    /// The longest key and value (checked by `validate`).
    max_key: usize,
    max_value: usize,
}

/// Equal when the ops are (whether or not `payload` has written the count).
impl PartialEq for WriteBatch {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.buf.get(4..) == other.buf.get(4..)
    }
}

impl Eq for WriteBatch {}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch { buf: vec![0; 4], count: 0, max_key: 0, max_value: 0 }
    }
}

/// Lengths are u32 in the payload; anything longer is over every limit,
/// and is stored as u32::MAX so that `validate` (which the engines call
/// before anything is applied or logged) refuses the batch.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `bytes` bytes of ops.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut b = Self::default();
        b.buf.reserve(bytes);
        b
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.buf.reserve(9 + key.len() + value.len());
        self.buf.push(1);
        self.buf.extend_from_slice(&len32(key.len()).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&len32(value.len()).to_le_bytes());
        self.buf.extend_from_slice(value);
        self.count = self.count.saturating_add(1);
        self.max_key = self.max_key.max(key.len());
        self.max_value = self.max_value.max(value.len());
        self
    }

    /// `set(key, [tag] ++ value)`, without building that value first: a
    /// caller that tags its values (MVCC: a tombstone or a value) copies
    /// each byte once.
    pub fn set_tagged(&mut self, key: &[u8], tag: u8, value: &[u8]) -> &mut Self {
        let vlen = value.len() + 1;
        self.buf.reserve(9 + key.len() + vlen);
        self.buf.push(1);
        self.buf.extend_from_slice(&len32(key.len()).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&len32(vlen).to_le_bytes());
        self.buf.push(tag);
        self.buf.extend_from_slice(value);
        self.count = self.count.saturating_add(1);
        self.max_key = self.max_key.max(key.len());
        self.max_value = self.max_value.max(vlen);
        self
    }

    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.buf.reserve(5 + key.len());
        self.buf.push(2);
        self.buf.extend_from_slice(&len32(key.len()).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.count = self.count.saturating_add(1);
        self.max_key = self.max_key.max(key.len());
        self
    }

    /// The ops in order, read in place.
    pub fn ops(&self) -> Ops<'_> {
        Ops { rest: self.buf.get(4..).unwrap_or(&[]) }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Checks every key and value against the limits.
    pub fn validate(&self) -> Result<()> {
        if self.buf.len() > MAX_BATCH_BYTES || self.count == u32::MAX {
            return Err(Error::InvalidInput(format!(
                "write batch of {} bytes exceeds the limit of {MAX_BATCH_BYTES} bytes",
                self.buf.len()
            )));
        }
        if self.max_key > MAX_KEY_LEN {
            return Err(Error::InvalidInput(format!(
                "key of {} bytes exceeds the limit of {MAX_KEY_LEN} bytes",
                self.max_key
            )));
        }
        if self.max_value > MAX_VALUE_LEN {
            return Err(Error::InvalidInput(format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_LEN} bytes",
                self.max_value
            )));
        }
        Ok(())
    }

    /// The WAL payload (the count written into its first four bytes).
    pub fn payload(&mut self) -> &[u8] {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        &self.buf
    }

    /// Encodes the batch as a WAL payload into `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.buf);
        out[..4].copy_from_slice(&self.count.to_le_bytes());
    }

    /// Decodes a WAL payload. Errors describe what is wrong; the caller adds
    /// the location.
    pub fn decode(payload: &[u8]) -> Result<WriteBatch, String> {
        let mut buf = payload;
        fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if buf.len() < n {
                return Err(format!("batch record truncated: need {n} bytes, have {}", buf.len()));
            }
            let (a, b) = buf.split_at(n);
            *buf = b;
            Ok(a)
        }
        fn u32_of(buf: &mut &[u8]) -> Result<usize, String> {
            let b = take(buf, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        let count = u32_of(&mut buf)?;
        let (mut max_key, mut max_value) = (0, 0);
        for _ in 0..count {
            let tag = take(&mut buf, 1)?[0];
            let klen = u32_of(&mut buf)?;
            if klen > MAX_KEY_LEN {
                return Err(format!("key length {klen} over the limit"));
            }
            take(&mut buf, klen)?;
            max_key = max_key.max(klen);
            match tag {
                1 => {
                    let vlen = u32_of(&mut buf)?;
                    if vlen > MAX_VALUE_LEN {
                        return Err(format!("value length {vlen} over the limit"));
                    }
                    take(&mut buf, vlen)?;
                    max_value = max_value.max(vlen);
                }
                2 => {}
                t => return Err(format!("unknown batch operation tag {t}")),
            }
        }
        if !buf.is_empty() {
            return Err(format!("{} trailing bytes after batch", buf.len()));
        }
        Ok(WriteBatch { buf: payload.to_vec(), count: count as u32, max_key, max_value })
    }
}

/// The ops of a batch (`WriteBatch::ops`). The buffer was written by
/// `set`/`delete` or checked by `decode`, so every length fits; a short
/// buffer would end the iteration rather than panic.
#[derive(Clone)]
pub struct Ops<'a> {
    rest: &'a [u8],
}

impl<'a> Ops<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            self.rest = &[];
            return None;
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Some(a)
    }

    fn len(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Op<'a>;

    fn next(&mut self) -> Option<Op<'a>> {
        let tag = *self.take(1)?.first()?;
        let klen = self.len()?;
        let key = self.take(klen)?;
        match tag {
            1 => {
                let vlen = self.len()?;
                Some(Op::Set(key, self.take(vlen)?))
            }
            _ => Some(Op::Delete(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let mut b = WriteBatch::new();
        b.set(b"", b"empty key").set(b"k", b"").delete(b"gone");
        assert_eq!(
            b.ops().collect::<Vec<_>>(),
            [Op::Set(b"", b"empty key"), Op::Set(b"k", b""), Op::Delete(b"gone")]
        );
        let mut buf = Vec::new();
        b.encode_into(&mut buf);
        assert_eq!(buf, b.payload());
        assert_eq!(&buf[..4], &3u32.to_le_bytes());
        let back = WriteBatch::decode(&buf).unwrap();
        assert_eq!(back.ops().collect::<Vec<_>>(), b.ops().collect::<Vec<_>>());
        assert_eq!(back.len(), 3);
        for cut in 0..buf.len() {
            assert!(WriteBatch::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[4] = 9;
        assert!(WriteBatch::decode(&bad).is_err());
    }

    #[test]
    fn set_tagged_is_set_of_the_tagged_value() {
        let mut a = WriteBatch::new();
        a.set_tagged(b"key", 1, b"value").set_tagged(b"", 0, b"").delete(b"x");
        let mut b = WriteBatch::new();
        b.set(b"key", b"\x01value").set(b"", b"\x00").delete(b"x");
        assert_eq!(a, b);
        assert_eq!(a.payload(), b.payload());
        let mut big = WriteBatch::new();
        big.set_tagged(b"k", 1, &vec![0; MAX_VALUE_LEN]);
        assert!(matches!(big.validate(), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn limits() {
        let mut b = WriteBatch::new();
        b.set(&vec![0; MAX_KEY_LEN + 1], b"v");
        assert!(matches!(b.validate(), Err(Error::InvalidInput(_))));
        let mut b = WriteBatch::new();
        b.set(&vec![0; MAX_KEY_LEN], b"v");
        assert!(b.validate().is_ok());
    }
}
