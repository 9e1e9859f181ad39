//! The buffer pool: a bounded cache of pages, in shards so that readers on
//! many threads do not meet on one lock.
//!
//! ```text
//! page id ─▶ shard id % S: Mutex { dir, ring: [id] in clock order, hand }
//!            dir[(id / S) / 64] ─▶ chunk of 64 entries, [(id / S) % 64]:
//!            Entry { page: Option<Arc<Page>>, ring position, dirty, referenced }
//! ```
//!
//! Page ids are small dense integers (the file's page numbers), so a shard
//! finds a page by index rather than by hashing: the directory (8 bytes
//! per 64 × S pages of the file) and the chunks (16-byte entries, 1 KiB a
//! chunk) are small enough to stay in the CPU's caches for the hot part of
//! the file, where a hash map's slots would be one more cache miss on each
//! visit of a cold page (measured in bench/README, session 16). A chunk
//! exists only while it holds a page, so the pool's own memory stays
//! bounded by its capacity (at most 1 KiB more per cached page, when every
//! cached page sits alone in its chunk) plus the directory (16 MB for a
//! 1 TiB file).
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
use super::page::{PAGE_SIZE, Page, PageId};

/// One page id's place in its shard.
#[derive(Default)]
struct Entry {
    /// The cached page, if any.
    page: Option<Arc<Page>>,
    /// Position in the shard's clock ring (meaningful while `page` is set).
    ring_at: u32,
    dirty: bool,
    referenced: bool,
}

/// Entries per chunk of a shard's directory.
const CHUNK: usize = 64;

struct Chunk {
    entries: [Entry; CHUNK],
    /// How many entries hold a page: the chunk is freed at zero.
    live: usize,
}

/// The pages `id ≡ i (mod stride)` of shard `i`.
struct Shard {
    /// The number of shards: a page's index in the shard is `id / stride`.
    stride: u64,
    dir: Vec<Option<Box<Chunk>>>,
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
    fn new(stride: u64) -> Shard {
        Shard {
            stride,
            dir: Vec::new(),
            ring: Vec::new(),
            hand: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            spare: Vec::new(),
        }
    }

    fn at(&self, id: PageId) -> usize {
        (id / self.stride) as usize
    }

    /// The entry of a cached page.
    fn cached(&mut self, id: PageId) -> Option<&mut Entry> {
        let at = self.at(id);
        let chunk = self.dir.get_mut(at / CHUNK)?.as_mut()?;
        let e = &mut chunk.entries[at % CHUNK];
        e.page.is_some().then_some(e)
    }

    fn put(&mut self, id: PageId, page: Arc<Page>, dirty: bool) {
        let at = self.at(id);
        if at / CHUNK >= self.dir.len() {
            self.dir.resize_with(at / CHUNK + 1, || None);
        }
        let chunk = self.dir[at / CHUNK].get_or_insert_with(|| {
            Box::new(Chunk { entries: std::array::from_fn(|_| Entry::default()), live: 0 })
        });
        chunk.live += 1;
        let ring_at = self.ring.len() as u32;
        chunk.entries[at % CHUNK] = Entry { page: Some(page), ring_at, dirty, referenced: false };
        self.ring.push(id);
    }

    /// Takes a page out of the shard (and its id out of the ring).
    fn remove(&mut self, id: PageId) -> Option<Arc<Page>> {
        let at = self.at(id);
        let slot = self.dir.get_mut(at / CHUNK)?;
        let chunk = slot.as_mut()?;
        let e = &mut chunk.entries[at % CHUNK];
        let page = e.page.take()?;
        let ring_at = e.ring_at as usize;
        chunk.live -= 1;
        if chunk.live == 0 {
            *slot = None;
        }
        self.ring.swap_remove(ring_at);
        if let Some(&moved) = self.ring.get(ring_at)
            && let Some(e) = self.cached(moved)
        {
            e.ring_at = ring_at as u32;
        }
        Some(page)
    }

    fn len(&self) -> usize {
        self.ring.len()
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
        let shards = (0..nshards).map(|_| Mutex::new(Shard::new(nshards as u64))).collect();
        BufferPool { file, shards, per_shard: capacity / nshards }
    }

    /// The shard of a page (`Shard::at` gives its index within it).
    fn shard(&self, id: PageId) -> &Mutex<Shard> {
        &self.shards[(id % self.shards.len() as u64) as usize]
    }

    /// Returns the page, reading and checking it on a miss.
    pub fn get(&self, id: PageId) -> Result<Arc<Page>> {
        let shard = self.shard(id);
        {
            let mut s = shard.lock();
            if let Some(Entry { page: Some(page), referenced, .. }) = s.cached(id) {
                *referenced = true;
                let page = page.clone();
                s.hits += 1;
                return Ok(page);
            }
        }
        // Read outside the lock; another reader may race us to the same
        // page, in which case the first copy inserted wins.
        let spare = shard.lock().spare.pop();
        let mut page = spare.unwrap_or_else(|| Arc::new([0u8; PAGE_SIZE]));
        match Arc::get_mut(&mut page) {
            Some(buf) => self.file.read_into(id, buf)?,
            None => page = self.file.read(id)?,
        }
        let mut s = shard.lock();
        s.misses += 1;
        if let Some(Entry { page: Some(p), .. }) = s.cached(id) {
            return Ok(p.clone());
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
            if let Some(Entry { page: Some(page), referenced, .. }) = s.cached(id) {
                *referenced = true;
                let r = f(page);
                s.hits += 1;
                return Ok(r);
            }
        }
        let page = self.get(id)?;
        Ok(f(&page))
    }

    /// Adds a page a commit produced; it is written at the next checkpoint
    /// or when evicted, whichever comes first.
    pub fn insert_dirty(&self, id: PageId, page: Arc<Page>) -> Result<()> {
        let mut s = self.shard(id).lock();
        if let Some(e) = s.cached(id) {
            e.page = Some(page);
            e.dirty = true;
            return Ok(());
        }
        self.insert_locked(&mut s, id, page, true)
    }

    fn insert_locked(&self, s: &mut Shard, id: PageId, page: Arc<Page>, dirty: bool) -> Result<()> {
        if s.len() >= self.per_shard {
            self.evict_one(s)?;
        }
        s.put(id, page, dirty);
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
            let Some(Entry { page: Some(page), referenced, dirty, .. }) = s.cached(id) else {
                return Err(qube_common::Error::Internal("buffer pool ring out of sync".into()));
            };
            if *referenced {
                *referenced = false;
                s.hand += 1;
                continue;
            }
            if Arc::strong_count(page) > 1 {
                s.hand += 1;
                continue;
            }
            if *dirty {
                self.file.write_page(id, page)?;
            }
            if let Some(victim) = s.remove(id)
                && s.spare.len() < SPARES
                && Arc::strong_count(&victim) == 1
            {
                s.spare.push(victim);
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
            let mut s = shard.lock();
            for i in 0..s.ring.len() {
                let id = s.ring[i];
                if let Some(Entry { page: Some(page), dirty: true, .. }) = s.cached(id) {
                    out.push((id, page.clone()));
                }
            }
        }
        out
    }

    /// Marks a page clean after a checkpoint wrote it, unless it changed since.
    pub fn mark_clean(&self, id: PageId, page: &Arc<Page>) {
        let mut s = self.shard(id).lock();
        if let Some(e) = s.cached(id)
            && e.page.as_ref().is_some_and(|p| Arc::ptr_eq(p, page))
        {
            e.dirty = false;
        }
    }

    pub fn stats(&self) -> PoolStats {
        let mut st = PoolStats::default();
        for shard in self.shards.iter() {
            let s = shard.lock();
            st.hits += s.hits;
            st.misses += s.misses;
            st.evictions += s.evictions;
            st.pages += s.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::page::{PageType, init_page};

    fn page(id: PageId, fill: u8) -> Arc<Page> {
        let mut p = [0u8; PAGE_SIZE];
        init_page(&mut p, id, PageType::Leaf);
        p[100] = fill;
        Arc::new(p)
    }

    /// Dirty pages inserted, evicted (written), read back, discarded and
    /// marked clean, over ids spread across shards and chunks: every read
    /// returns the page's latest bytes, the pool stays within its capacity,
    /// and chunks are freed when their last page leaves.
    #[test]
    fn pages_round_trip_through_eviction_and_discard() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(PageFile::open(&dir.path().join("data"), true).unwrap());
        file.set_len_pages(5000).unwrap();
        let pool = BufferPool::new(file, 256);
        let cap = pool.capacity_bytes() as usize / PAGE_SIZE;
        let mut latest = std::collections::HashMap::new();
        let mut seed = 7u64;
        for round in 0..20_000u32 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Mostly a few hot ids, sometimes far ones (new chunks).
            let id = 2 + if seed >> 60 < 12 { (seed >> 33) % 300 } else { (seed >> 33) % 4990 };
            match (seed >> 20) % 5 {
                0 | 1 => {
                    let fill = (round % 251) as u8;
                    pool.insert_dirty(id, page(id, fill)).unwrap();
                    latest.insert(id, fill);
                }
                2 => {
                    if latest.contains_key(&id) {
                        pool.discard(id);
                        latest.remove(&id);
                    }
                }
                3 => {
                    for (id, p) in pool.dirty_pages() {
                        if (seed >> 40).is_multiple_of(2) {
                            pool.file.write_page(id, &p).unwrap();
                            pool.mark_clean(id, &p);
                        }
                    }
                }
                _ => {
                    if let Some(&fill) = latest.get(&id) {
                        assert_eq!(pool.get(id).unwrap()[100], fill, "page {id}");
                        let seen = pool.with_page(id, |p| p[100]).unwrap();
                        assert_eq!(seen, fill);
                    }
                }
            }
            assert!(pool.stats().pages as usize <= cap, "pool grew past its capacity");
        }
        assert!(pool.stats().evictions > 1000, "the test should evict");
        for (&id, &fill) in &latest {
            assert_eq!(pool.get(id).unwrap()[100], fill, "page {id}");
        }
        // Everything discarded: every chunk is gone.
        for &id in latest.keys() {
            pool.discard(id);
        }
        for shard in pool.shards.iter() {
            let s = shard.lock();
            assert!(s.ring.is_empty());
            assert!(s.dir.iter().all(Option::is_none), "a chunk outlived its pages");
        }
    }
}
