//! The memory engine: a `BTreeMap` behind a lock. It is the oracle the
//! B+Tree engine is tested against, so it is written to be obviously right,
//! not fast: a scan holds a snapshot (an `Arc` of the map), and a write while
//! a scan is open copies the map.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use qube_common::Result;

use crate::{Cursor, Direction, Engine, KeyRange, Op, Status, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory [`Engine`]. Nothing survives the process.
#[derive(Default)]
pub struct MemoryEngine {
    map: RwLock<Arc<Map>>,
    /// Batches applied (`Engine::applied_batches`).
    applied: AtomicU64,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        batch.validate()?;
        let mut guard = self.map.write();
        let map = Arc::make_mut(&mut guard);
        for op in batch.ops() {
            match op {
                Op::Set(k, v) => {
                    map.insert(k.to_vec(), v.to_vec());
                }
                Op::Delete(k) => {
                    map.remove(k);
                }
            }
        }
        // Under the lock: a reader that saw the old count before seeking
        // may have seen the new map, never the reverse.
        self.applied.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn applied_batches(&self) -> Option<u64> {
        Some(self.applied.load(Ordering::Acquire))
    }

    fn scan(&self, range: KeyRange, direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        let snapshot = self.map.read().clone();
        Ok(Box::new(MemoryCursor { snapshot, range, direction, current: None, done: false }))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn status(&self) -> Result<Status> {
        Ok(Status { keys: self.map.read().len() as u64, ..Status::default() })
    }
}

struct MemoryCursor {
    snapshot: Arc<Map>,
    range: KeyRange,
    direction: Direction,
    current: Option<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Cursor for MemoryCursor {
    fn advance(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let next = {
            let (lo, hi): (Bound<&[u8]>, Bound<&[u8]>) = match (&self.current, self.direction) {
                (None, _) => (as_ref(&self.range.start), as_ref(&self.range.end)),
                (Some((k, _)), Direction::Forward) => {
                    (Bound::Excluded(k.as_slice()), as_ref(&self.range.end))
                }
                (Some((k, _)), Direction::Reverse) => {
                    (as_ref(&self.range.start), Bound::Excluded(k.as_slice()))
                }
            };
            if empty_range(lo, hi) {
                None
            } else {
                let mut it = self.snapshot.range::<[u8], _>((lo, hi));
                match self.direction {
                    Direction::Forward => it.next(),
                    Direction::Reverse => it.next_back(),
                }
                .map(|(k, v)| (k.clone(), v.clone()))
            }
        };
        match next {
            Some(pair) => {
                self.current = Some(pair);
                Ok(true)
            }
            None => {
                self.done = true;
                Ok(false)
            }
        }
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map(|(k, _)| k.as_slice()).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map(|(_, v)| v.as_slice()).unwrap_or_default()
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// `BTreeMap::range` panics on inverted or empty-exclusive ranges; detect them first.
fn empty_range(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_both_ways_and_inverted_ranges() {
        let e = MemoryEngine::new();
        for k in [b"a", b"b", b"c"] {
            e.set(k, k).unwrap();
        }
        let fwd = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
        assert_eq!(fwd.len(), 3);
        let rev = e.scan(KeyRange::all(), Direction::Reverse).unwrap().collect_pairs().unwrap();
        assert_eq!(rev[0].0, b"c");
        let inverted = KeyRange::between(b"c", b"a");
        assert!(e.scan(inverted, Direction::Forward).unwrap().collect_pairs().unwrap().is_empty());
        let same = KeyRange::between(b"b", b"b");
        assert!(e.scan(same, Direction::Reverse).unwrap().collect_pairs().unwrap().is_empty());
    }
}
