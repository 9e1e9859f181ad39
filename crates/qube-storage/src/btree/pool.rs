//! The buffer pool: a bounded cache of pages, in shards so that readers on
//! many threads do not meet on one lock.
//!
//! ```text
//! page id ──hash──▶ shard i: Mutex { map: id → Slot, ring: [id] in clock order, hand }
//!                   Slot { page: Arc<Page>, dirty, referenced, ring position }
//! ```
//!
//! Pages in the pool are immutable: the B+Tree is copy-on-write, so a page
//! that a committed version can see never changes. A reader therefore takes
//! an `Arc` of the page (its "pin"), drops the shard lock, and reads freely;
//! eviction skips pinned pages. Eviction is a clock (second chance) per
//! shard. A dirty victim is written before it leaves the pool — safe at any
//! moment, because dirty pages are always pages that the last checkpoint
//! does not reference (see `btree` module docs). That write happens under
//! the shard's lock, so no reader can miss the page and read the stale disk
//! copy meanwhile; it is one 8 KiB `pwrite` into the OS cache.

use std::sync::Arc;

use parking_lot::Mutex;
use qube_common::Result;

use super::file::PageFile;
use super::page::{IdMap, PAGE_SIZE, Page, PageId};

struct Slot {
    page: Arc<Page>,
    dirty: bool,
    referenced: bool,
    /// Position in the shard's clock ring.
    ring_at: usize,
}

/// The slots live in the map itself (a hit is one probe, no second
/// indirection); the ring lists the ids in clock order.
#[derive(Default)]
struct Shard {
    map: IdMap<Slot>,
    ring: Vec<PageId>,
    hand: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    /// Buffers of evicted pages nobody else holds, reused for the next
    /// misses instead of allocating.
    spare: Vec<Arc<Page>>,
}

/// Spare buffers kept per shard.
const SPARES: usize = 4;

impl Shard {
    fn remove(&mut self, id: PageId) -> Option<Slot> {
        let slot = self.map.remove(&id)?;
        self.ring.swap_remove(slot.ring_at);
        if let Some(&moved) = self.ring.get(slot.ring_at)
            && let Some(m) = self.map.get_mut(&moved)
        {
            m.ring_at = slot.ring_at;
        }
        Some(slot)
    }
}

pub struct BufferPool {
    file: Arc<PageFile>,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PoolStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub pages: u64,
}

impl BufferPool {
    /// A pool of `capacity_pages` pages (at least 16).
    pub fn new(file: Arc<PageFile>, capacity_pages: usize) -> BufferPool {
        let capacity = capacity_pages.max(16);
        let nshards = (capacity / 64).clamp(1, 64);
        let shards = (0..nshards).map(|_| Mutex::new(Shard::default())).collect();
        BufferPool { file, shards, per_shard: capacity / nshards }
    }

    fn shard(&self, id: PageId) -> &Mutex<Shard> {
        // Fibonacci hashing spreads consecutive page ids over the shards.
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// Returns the page, reading and checking it on a miss.
    pub fn get(&self, id: PageId) -> Result<Arc<Page>> {
        {
            let mut s = self.shard(id).lock();
            if let Some(slot) = s.map.get_mut(&id) {
                slot.referenced = true;
                let page = slot.page.clone();
                s.hits += 1;
                return Ok(page);
            }
        }
        // Read outside the lock; another reader may race us to the same
        // page, in which case the first copy inserted wins.
        let spare = self.shard(id).lock().spare.pop();
        let mut page = spare.unwrap_or_else(|| Arc::new([0u8; PAGE_SIZE]));
        match Arc::get_mut(&mut page) {
            Some(buf) => self.file.read_into(id, buf)?,
            None => page = self.file.read(id)?,
        }
        let mut s = self.shard(id).lock();
        s.misses += 1;
        if let Some(slot) = s.map.get(&id) {
            return Ok(slot.page.clone());
        }
        self.insert_locked(&mut s, id, page.clone(), false)?;
        Ok(page)
    }

    /// Runs `f` on the page while holding its shard's lock, without pinning
    /// it: for short in-page work on the lookup path (no `Arc` count
    /// traffic on a cold cache line). `f` must not call into the pool.
    pub fn with_page<R>(&self, id: PageId, f: impl FnOnce(&Page) -> R) -> Result<R> {
        {
            let mut guard = self.shard(id).lock();
            let s = &mut *guard;
            if let Some(slot) = s.map.get_mut(&id) {
                slot.referenced = true;
                s.hits += 1;
                return Ok(f(&slot.page));
            }
        }
        let page = self.get(id)?;
        Ok(f(&page))
    }

    /// Adds a page a commit produced; it is written at the next checkpoint
    /// or when evicted, whichever comes first.
    pub fn insert_dirty(&self, id: PageId, page: Arc<Page>) -> Result<()> {
        let mut s = self.shard(id).lock();
        if let Some(slot) = s.map.get_mut(&id) {
            slot.page = page;
            slot.dirty = true;
            return Ok(());
        }
        self.insert_locked(&mut s, id, page, true)
    }

    fn insert_locked(&self, s: &mut Shard, id: PageId, page: Arc<Page>, dirty: bool) -> Result<()> {
        if s.map.len() >= self.per_shard {
            self.evict_one(s)?;
        }
        s.map.insert(id, Slot { page, dirty, referenced: false, ring_at: s.ring.len() });
        s.ring.push(id);
        Ok(())
    }

    /// Clock sweep: clears reference bits until it finds an unreferenced,
    /// unpinned page. If every page is pinned it gives up and lets the shard
    /// grow past its share for now.
    fn evict_one(&self, s: &mut Shard) -> Result<()> {
        let n = s.ring.len();
        for _ in 0..2 * n + 1 {
            if s.hand >= s.ring.len() {
                s.hand = 0;
            }
            let id = s.ring[s.hand];
            let Some(slot) = s.map.get_mut(&id) else {
                return Err(qube_common::Error::Internal("buffer pool ring out of sync".into()));
            };
            if slot.referenced {
                slot.referenced = false;
                s.hand += 1;
                continue;
            }
            if Arc::strong_count(&slot.page) > 1 {
                s.hand += 1;
                continue;
            }
            if slot.dirty {
                self.file.write_page(id, &slot.page)?;
            }
            if let Some(victim) = s.remove(id)
                && s.spare.len() < SPARES
                && Arc::strong_count(&victim.page) == 1
            {
                s.spare.push(victim.page);
            }
            s.evictions += 1;
            return Ok(());
        }
        Ok(())
    }

    /// Drops a page without writing it (it was freed).
    pub fn discard(&self, id: PageId) {
        self.shard(id).lock().remove(id);
    }

    /// Every dirty page, for a checkpoint.
    pub fn dirty_pages(&self) -> Vec<(PageId, Arc<Page>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.lock();
            out.extend(s.map.iter().filter(|(_, x)| x.dirty).map(|(id, x)| (*id, x.page.clone())));
        }
        out
    }

    /// Marks a page clean after a checkpoint wrote it, unless it changed since.
    pub fn mark_clean(&self, id: PageId, page: &Arc<Page>) {
        let mut s = self.shard(id).lock();
        if let Some(slot) = s.map.get_mut(&id)
            && Arc::ptr_eq(&slot.page, page)
        {
            slot.dirty = false;
        }
    }

    pub fn stats(&self) -> PoolStats {
        let mut st = PoolStats::default();
        for shard in self.shards.iter() {
            let s = shard.lock();
            st.hits += s.hits;
            st.misses += s.misses;
            st.evictions += s.evictions;
            st.pages += s.map.len() as u64;
        }
        st
    }

    pub fn file_path(&self) -> &std::path::Path {
        self.file.path()
    }

    pub fn capacity_bytes(&self) -> u64 {
        (self.per_shard * self.shards.len() * PAGE_SIZE) as u64
    }
}
