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
    pub free: BTreeSet<PageId>,
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
        let mut set = self.free.clone();
        set.extend(self.deferred.iter().copied());
        set.extend(self.limbo.iter().copied());
        set.extend(self.freelist_pages.iter().copied());
        set
    }
}
