//! Write batches and their encoding as WAL record payloads.
//!
//! ```text
//! payload := count:u32le op*
//! op      := 0x01 key_len:u32le key val_len:u32le value     (set)
//!          | 0x02 key_len:u32le key                         (delete)
//! ```
//! The WAL frames and checksums the payload; decoding still checks every
//! length so that a bug or a damaged record is an error, never a panic.

use qube_common::{Error, Result};

use crate::{MAX_BATCH_BYTES, MAX_KEY_LEN, MAX_VALUE_LEN};

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Set(k, _) | Op::Delete(k) => k,
        }
    }
}

/// An ordered list of sets and deletes applied atomically. Later operations
/// on the same key win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
    bytes: usize,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.bytes += 9 + key.len() + value.len();
        self.ops.push(Op::Set(key.to_vec(), value.to_vec()));
        self
    }

    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.bytes += 5 + key.len();
        self.ops.push(Op::Delete(key.to_vec()));
        self
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every key and value against the limits.
    pub fn validate(&self) -> Result<()> {
        if self.bytes + 4 > MAX_BATCH_BYTES {
            return Err(Error::InvalidInput(format!(
                "write batch of {} bytes exceeds the limit of {MAX_BATCH_BYTES} bytes",
                self.bytes
            )));
        }
        for op in &self.ops {
            if op.key().len() > MAX_KEY_LEN {
                return Err(Error::InvalidInput(format!(
                    "key of {} bytes exceeds the limit of {MAX_KEY_LEN} bytes",
                    op.key().len()
                )));
            }
            if let Op::Set(_, v) = op
                && v.len() > MAX_VALUE_LEN
            {
                return Err(Error::InvalidInput(format!(
                    "value of {} bytes exceeds the limit of {MAX_VALUE_LEN} bytes",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Encodes the batch as a WAL payload into `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.bytes + 4);
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for op in &self.ops {
            match op {
                Op::Set(k, v) => {
                    out.push(1);
                    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    out.extend_from_slice(k);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                Op::Delete(k) => {
                    out.push(2);
                    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    out.extend_from_slice(k);
                }
            }
        }
    }

    /// Decodes a WAL payload. Errors describe what is wrong; the caller adds
    /// the location.
    pub fn decode(mut buf: &[u8]) -> Result<WriteBatch, String> {
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
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            let tag = take(&mut buf, 1)?[0];
            let klen = u32_of(&mut buf)?;
            if klen > MAX_KEY_LEN {
                return Err(format!("key length {klen} over the limit"));
            }
            let key = take(&mut buf, klen)?;
            match tag {
                1 => {
                    let vlen = u32_of(&mut buf)?;
                    if vlen > MAX_VALUE_LEN {
                        return Err(format!("value length {vlen} over the limit"));
                    }
                    let v = take(&mut buf, vlen)?;
                    batch.set(key, v);
                }
                2 => {
                    batch.delete(key);
                }
                t => return Err(format!("unknown batch operation tag {t}")),
            }
        }
        if !buf.is_empty() {
            return Err(format!("{} trailing bytes after batch", buf.len()));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let mut b = WriteBatch::new();
        b.set(b"", b"empty key").set(b"k", b"").delete(b"gone");
        let mut buf = Vec::new();
        b.encode_into(&mut buf);
        assert_eq!(WriteBatch::decode(&buf).unwrap(), b);
        for cut in 0..buf.len() {
            assert!(WriteBatch::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[4] = 9;
        assert!(WriteBatch::decode(&bad).is_err());
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
