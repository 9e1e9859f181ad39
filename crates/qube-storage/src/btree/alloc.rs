//! Page allocation and the rules for reusing freed pages.
//!
//! A page may be handed out again only when nothing can still read it:
//!
//! ```text
//! freed page was …                        reusable when …
//! allocated by this same batch            at once
//! in a committed version, not in the      no reader holds that version or an
//!   last checkpoint                         older one (its GarbageBag dropped)
//! in the last checkpoint                  both of the above, and the next
//!                                           checkpoint is durable
//! ```
//!
//! Pages freed from committed versions wait in *limbo* until their
//! [`GarbageBag`](super::GarbageBag) drops and posts them to `released`.
//! A checkpoint persists `free ∪ deferred ∪ limbo` as the free list: after a
//! restart no reader exists, so all of them are free.
//!
//! The free set is a bitmap over page ids ([`FreeSet`]): a commit shadows
//! about ten pages and frees as many, so `allocate` and `free_private` run
//! tens of times per commit. A `BTreeSet` spent ~12,000 instructions per
//! pgbench TPC-B transaction on them (its node search, and the node
//! allocations as the set grew and shrank); the bitmap sets and clears a
//! bit, and finds the lowest free page from a word index below which no
//! bit is set. Its memory is one bit per page of the file (16 KiB per GiB).

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;

use super::page::{IdSet, PageId};

/// A page a bag hands back: its id and, if it belonged to a checkpoint, that
/// checkpoint's sequence number.
pub type Released = (PageId, Option<u64>);

pub struct Allocator {
    /// Pages in the file, meta pages included.
    pub page_count: u64,
    /// Free now.
    pub free: FreeSet,
    /// Allocated since the last checkpoint: not part of the durable tree.
    pub since_checkpoint: IdSet,
    /// Released, but the durable checkpoint still uses them.
    pub deferred: Vec<PageId>,
    /// Freed by a commit; some reader may still see them.
    pub limbo: IdSet,
    /// The pages holding the durable free list (reusable after the next checkpoint).
    pub freelist_pages: Vec<PageId>,
    /// Sequence number of the durable checkpoint.
    pub checkpoint_seq: u64,
    /// Filled by garbage bags as readers let go of old versions.
    pub released: Arc<Mutex<Vec<Released>>>,
}

impl Allocator {
    pub fn allocate(&mut self) -> PageId {
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                self.page_count += 1;
                self.page_count - 1
            }
        };
        self.since_checkpoint.insert(id);
        id
    }

    /// Frees a page nobody but the current batch has seen.
    pub fn free_private(&mut self, id: PageId) {
        self.since_checkpoint.remove(&id);
        self.free.insert(id);
    }

    /// Tag for a page freed from a committed version.
    pub fn garbage_tag(&self, id: PageId) -> Released {
        if self.since_checkpoint.contains(&id) {
            (id, None)
        } else {
            (id, Some(self.checkpoint_seq))
        }
    }

    /// Moves pages that readers let go of to `free` or `deferred`; returns
    /// them so the caller can drop their cached copies.
    pub fn drain_released(&mut self, out: &mut Vec<PageId>) {
        let drained = std::mem::take(&mut *self.released.lock());
        for (id, tag) in drained {
            self.limbo.remove(&id);
            out.push(id);
            match tag {
                Some(seq) if seq == self.checkpoint_seq => self.deferred.push(id),
                _ => self.free_private(id),
            }
        }
    }

    /// Pages that are free in the state a checkpoint is about to persist.
    pub fn free_after_restart(&self) -> BTreeSet<PageId> {
        let mut set: BTreeSet<PageId> = self.free.iter().collect();
        set.extend(self.deferred.iter().copied());
        set.extend(self.limbo.iter().copied());
        set.extend(self.freelist_pages.iter().copied());
        set
    }
}

/// A set of page ids as a bitmap (bit `id % 64` of word `id / 64`), lowest
/// first (see the module doc).
#[derive(Default)]
pub struct FreeSet {
    words: Vec<u64>,
    len: usize,
    /// No word below this index has a bit set.
    low: usize,
}

impl FreeSet {
    fn split(id: PageId) -> (usize, u64) {
        ((id / 64) as usize, 1u64 << (id % 64))
    }

    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: PageId) -> bool {
        let (w, bit) = Self::split(id);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & bit != 0 {
            return false;
        }
        self.words[w] |= bit;
        self.len += 1;
        self.low = self.low.min(w);
        true
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: PageId) -> bool {
        let (w, bit) = Self::split(id);
        match self.words.get_mut(w) {
            Some(word) if *word & bit != 0 => {
                *word &= !bit;
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, id: PageId) -> bool {
        let (w, bit) = Self::split(id);
        self.words.get(w).is_some_and(|word| word & bit != 0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The lowest id in the set. Moves `low` past the empty words it
    /// meets, so that repeated calls (compaction asks at every node it
    /// visits) do not scan them again.
    pub fn first(&mut self) -> Option<PageId> {
        if self.len == 0 {
            self.low = self.words.len();
            return None;
        }
        while self.words[self.low] == 0 {
            self.low += 1;
        }
        Some(self.low as u64 * 64 + u64::from(self.words[self.low].trailing_zeros()))
    }

    pub fn pop_first(&mut self) -> Option<PageId> {
        let id = self.first()?;
        self.remove(id);
        Some(id)
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = PageId> + '_ {
        let start = self.low.min(self.words.len());
        self.words[start..].iter().enumerate().flat_map(move |(i, &word)| {
            let base = (start + i) as u64 * 64;
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    base + u64::from(bit)
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bitmap against a `BTreeSet` under a mixed sequence of inserts,
    /// removes and pops, across word boundaries.
    #[test]
    fn free_set_behaves_as_an_ordered_set() {
        let mut bits = FreeSet::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = x % 700;
            match step % 5 {
                0 | 1 => assert_eq!(bits.insert(id), model.insert(id)),
                2 => assert_eq!(bits.remove(id), model.remove(&id)),
                3 => assert_eq!(bits.pop_first(), model.pop_first()),
                _ => assert_eq!(bits.contains(id), model.contains(&id)),
            }
            assert_eq!(bits.len(), model.len());
            assert_eq!(bits.first(), model.first().copied());
        }
        assert!(bits.iter().eq(model.iter().copied()));
        while let Some(id) = model.pop_first() {
            assert_eq!(bits.pop_first(), Some(id));
        }
        assert_eq!(bits.pop_first(), None);
        assert_eq!(bits.first(), None);
        assert!(bits.insert(3));
        assert_eq!(bits.pop_first(), Some(3));
    }
}
