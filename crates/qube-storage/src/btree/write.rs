//! One write batch applied to the tree, copy-on-write.
//!
//! A [`Txn`] starts from the head version's root. Before it changes a page
//! that a committed version can see, it copies the page to a newly
//! allocated id ("shadowing") and rewrites the parent's pointer, which
//! shadows the parent, up to the root:
//!
//! ```text
//!   version n:      R ── A ── L1          version n+1:  R' ── A' ── L1'
//!                         └── L2                               └── L2 (shared)
//! ```
//!
//! Pages the batch allocated are private: changed in place, never seen by
//! a reader until commit publishes the new root. Replaced pages (R, A, L1)
//! become garbage of version n. If the private pages outgrow their share of
//! the buffer pool they are written to their (fresh) places in the data file
//! and dropped from memory ("spilled"), then read back if touched again.
//!
//! Operations recurse from the root; each returns what happened to the node
//! so the parent can react: a new id, a split (separator and right sibling),
//! or underflow (the parent merges the node with a sibling, or moves cells
//! between them). Recursion depth is the tree depth, bounded by
//! [`MAX_DEPTH`]: a deeper tree can only come from corrupt pages.
//!
//! Batches come sorted (the MVCC layer hands over its write set in key
//! order), so consecutive inserts mostly land in the same leaf. After an
//! insert that left its leaf private to the batch and unsplit, the batch
//! remembers that leaf with the key range its parents give it (the
//! separators met on the way down: `low ≤ key < high`). The next insert
//! whose key lies in that range, is new, and fits goes straight into the
//! leaf: its ancestors already point at it, and nothing about them changes.
//! Deletes use the same leaf (the garbage collector deletes a key's old
//! versions, which lie side by side): a delete whose key lies in the range
//! and whose leaf stays at least a quarter full removes the cell in place,
//! and a delete that descends and leaves its leaf that full remembers it.
//! Anything else (a replaced key, a split, a merge, a spill) takes the
//! descent from the root, which forgets or renews the remembered leaf.
//!
//! A key past the remembered leaf's last key (every key of a load past the
//! end of a table or index) is appended after one compare, with no search.
//! The keys of the batch that follow it and keep going past it are then
//! written straight into the leaf (`append_following`), each checked with
//! one pass over it and the key before it (order and common prefix) and
//! one compare with the leaf's upper bound: no cell is built, and the leaf
//! is neither looked up nor read again. The first key that needs anything
//! else (a replaced key, a delete, an overflow value, a full leaf, a key
//! that shortens the leaf's common prefix) goes the usual way, and the
//! run starts again after it. (A million-row load's commit spent ~650
//! instructions per key in the usual append; ~240 this way.)
//!
//! A leaf that a sequential load (each key past the last one, which the
//! previous insert put at the leaf's end) has filled to `APPEND_FILL` (90%
//! of its bytes), or that overflows with a key past its last one, is not
//! rebuilt: the new key starts a new right sibling and the leaf stays as it
//! is, and the sibling becomes the remembered leaf, from the new separator
//! to the old leaf's upper bound. The 10% left free is room for the new
//! versions of the leaf's rows: an UPDATE adds a version next to the old
//! one, and a table loaded in key order (COPY, CREATE INDEX, ADD PRIMARY
//! KEY's rewrite) with full leaves split one of them at nearly every first
//! update (PostgreSQL's B-tree leaves its rightmost pages 90% full for the
//! same reason).
//! A leaf that overflows with a key right after the previous insert's
//! position, before other keys (a sequential load into the gap between
//! two tables' keys), is cut just after the new key, so that the load
//! goes on at the left page's end and from then on appends.

use std::collections::HashSet;
use std::sync::Arc;

use qube_common::{Error, Result};

use super::alloc::{Allocator, Released};
use super::file::PageFile;
use super::page::*;
use super::pool::BufferPool;

/// No valid tree is this deep (fan-out is at least 3).
pub const MAX_DEPTH: usize = 40;
/// Below this many used bytes a non-root node is underfull.
const UNDERFULL: usize = NODE_USABLE / 4;
/// A sequential load fills a leaf up to this many used bytes, then starts
/// the next one (module docs): PostgreSQL's B-tree leaf fill factor, 90%.
const APPEND_FILL: usize = NODE_USABLE * 9 / 10;

pub(super) enum Change {
    /// Nothing changed (delete of a missing key).
    None,
    /// The node now lives at this id (maybe the same).
    Done(PageId),
    /// The node split: left id, separator, right id.
    Split(PageId, Vec<u8>, PageId),
    /// The node lives at this id and is underfull (maybe empty).
    Underfull(PageId),
}

/// Reusable buffers, kept by the writer between batches.
#[derive(Default)]
pub(super) struct Buffers {
    cell: Vec<u8>,
    scratch: Vec<u8>,
    cells: Vec<u8>,
    spans: Vec<(usize, usize)>,
    /// The remembered leaf: here so that its bounds' buffers outlive a
    /// batch (`Txn::new` forgets the leaf).
    hint: LeafHint,
}

/// The leaf of the last insert and its key range (see the module doc).
#[derive(Default)]
struct LeafHint {
    leaf: Option<PageId>,
    bounds: KeyBounds,
}

/// Whether `key` lies in `low ≤ key < high` (None: unbounded), the key
/// range a leaf's ancestors give it (`LeafHint`, and the reader's
/// `LeafMemo`).
pub(super) fn in_bounds(low: Option<&[u8]>, high: Option<&[u8]>, key: &[u8]) -> bool {
    low.is_none_or(|l| l <= key) && high.is_none_or(|h| key < h)
}

/// The key range `low ≤ key < high` the separators met on a descent give
/// a leaf. Clearing it keeps the bounds' buffers, so a descent copies the
/// separators without allocating (a commit descends a dozen times, and a
/// hinted reader at every miss).
#[derive(Default)]
pub(super) struct KeyBounds {
    low: Vec<u8>,
    high: Vec<u8>,
    has_low: bool,
    has_high: bool,
}

impl KeyBounds {
    /// Unbounded on both sides.
    pub fn clear(&mut self) {
        self.has_low = false;
        self.has_high = false;
    }

    pub fn low(&self) -> Option<&[u8]> {
        self.has_low.then_some(&self.low[..])
    }

    pub fn high(&self) -> Option<&[u8]> {
        self.has_high.then_some(&self.high[..])
    }

    pub fn set_low(&mut self, key: &[u8]) {
        self.low.clear();
        self.low.extend_from_slice(key);
        self.has_low = true;
    }

    pub fn covers(&self, key: &[u8]) -> bool {
        in_bounds(self.low(), self.high(), key)
    }

    /// Narrows the range to child `idx` of an internal node (see `Node::child`).
    pub fn narrow(&mut self, node: &Node, idx: usize) -> Result<()> {
        if idx > 0 {
            self.set_low(node.key(idx - 1)?);
        }
        if idx < node.len() {
            self.high.clear();
            self.high.extend_from_slice(node.key(idx)?);
            self.has_high = true;
        }
        Ok(())
    }
}

pub(super) struct Txn<'a> {
    pub pool: &'a BufferPool,
    pub file: &'a PageFile,
    pub alloc: &'a mut Allocator,
    pub bufs: &'a mut Buffers,
    pub private: IdMap<Arc<Page>>,
    pub spilled: IdSet,
    pub garbage: Vec<Released>,
    pub private_limit: usize,
    pub root: PageId,
    pub keys: u64,
    pub lsn: u64,
    /// The leaf and slot of the last insert (see `split_leaf`).
    last_insert: Option<(PageId, usize)>,
}

impl<'a> Txn<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: &'a BufferPool,
        file: &'a PageFile,
        alloc: &'a mut Allocator,
        bufs: &'a mut Buffers,
        private_limit: usize,
        root: PageId,
        keys: u64,
        lsn: u64,
    ) -> Txn<'a> {
        bufs.hint.leaf = None;
        Txn {
            pool,
            file,
            alloc,
            bufs,
            // A commit's batch copies a dozen pages or so.
            private: IdMap::with_capacity_and_hasher(16, Default::default()),
            spilled: IdSet::default(),
            garbage: Vec::new(),
            private_limit,
            root,
            keys,
            lsn,
            last_insert: None,
        }
    }

    /// Gives back every page the batch allocated (on error: nothing it did
    /// becomes visible).
    pub fn abandon(self) {
        let ids: Vec<PageId> = self.private.keys().chain(self.spilled.iter()).copied().collect();
        for id in ids {
            self.alloc.free_private(id);
        }
    }

    // ----- page access -------------------------------------------------

    fn read(&mut self, id: PageId) -> Result<Arc<Page>> {
        if let Some(p) = self.private.get(&id) {
            return Ok(p.clone());
        }
        if self.spilled.remove(&id) {
            let p = self.file.read(id)?;
            self.private.insert(id, p.clone());
            return Ok(p);
        }
        self.pool.get(id)
    }

    fn is_owned(&self, id: PageId) -> bool {
        self.private.contains_key(&id) || self.spilled.contains(&id)
    }

    /// A writable copy of page `id`: the page itself if this batch owns it,
    /// else a shadow copy at a new id. Returns the id to use from now on.
    fn make_mut(&mut self, id: PageId) -> Result<PageId> {
        if self.is_owned(id) {
            if !self.private.contains_key(&id) {
                self.read(id)?;
            }
            return Ok(id);
        }
        // Node layout was validated when the page was read from disk.
        let shared = self.pool.get(id)?;
        let new_id = self.alloc.allocate();
        // `make_mut` of a shared `Arc` copies the page straight into the
        // new allocation (`Arc::new(*shared)` went through the stack).
        let mut copy = shared;
        set_page_id(Arc::make_mut(&mut copy), new_id);
        self.private.insert(new_id, copy);
        self.garbage.push(self.alloc.garbage_tag(id));
        Ok(new_id)
    }

    /// Mutable access to a private page (call `make_mut` or `new_page` first).
    fn page_mut(&mut self, id: PageId) -> Result<&mut Page> {
        let arc = self
            .private
            .get_mut(&id)
            .ok_or_else(|| Error::Internal(format!("page {id} is not private to the batch")))?;
        Ok(Arc::make_mut(arc))
    }

    fn new_page(&mut self, ty: PageType) -> PageId {
        let id = self.alloc.allocate();
        let mut p = Arc::new([0u8; PAGE_SIZE]);
        if let Some(pm) = Arc::get_mut(&mut p) {
            init_zeroed_page(pm, id, ty);
        }
        self.private.insert(id, p);
        id
    }

    fn free(&mut self, id: PageId) {
        if self.private.remove(&id).is_some() || self.spilled.remove(&id) {
            self.alloc.free_private(id);
        } else {
            self.garbage.push(self.alloc.garbage_tag(id));
        }
    }

    /// Writes private pages to disk when they exceed their memory share.
    pub fn maybe_spill(&mut self) -> Result<()> {
        if self.private.len() <= self.private_limit {
            return Ok(());
        }
        self.bufs.hint.leaf = None;
        for (id, mut page) in self.private.drain() {
            set_lsn(Arc::make_mut(&mut page), self.lsn);
            self.file.write_page(id, &page)?;
            self.spilled.insert(id);
        }
        Ok(())
    }

    // ----- overflow values ----------------------------------------------

    fn write_overflow(&mut self, value: &[u8]) -> Result<PageId> {
        let chunks: Vec<&[u8]> = value.chunks(OVERFLOW_DATA).collect();
        let ids: Vec<PageId> = chunks.iter().map(|_| self.alloc.allocate()).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let id = ids[i];
            let mut p = Arc::new([0u8; PAGE_SIZE]);
            if let Some(pm) = Arc::get_mut(&mut p) {
                init_zeroed_page(pm, id, PageType::Overflow);
                put_u64(pm, 32, ids.get(i + 1).copied().unwrap_or(0));
                put_u32(pm, 40, chunk.len() as u32);
                pm[48..48 + chunk.len()].copy_from_slice(chunk);
            }
            self.private.insert(id, p);
            self.maybe_spill()?;
        }
        Ok(ids[0])
    }

    fn free_overflow(&mut self, first: PageId, len: u64) -> Result<()> {
        let mut id = first;
        let max_pages = len.div_ceil(OVERFLOW_DATA as u64).max(1);
        let mut seen = HashSet::new();
        for _ in 0..max_pages {
            if id == 0 {
                break;
            }
            if !seen.insert(id) {
                return Err(Error::corrupt_page(super::DATA_FILE, id, "overflow chain loops"));
            }
            let p = self.read(id)?;
            if page_type(&p) != Some(PageType::Overflow) {
                return Err(Error::corrupt_page(super::DATA_FILE, id, "expected an overflow page"));
            }
            let next = get_u64(&p[..], 32);
            drop(p);
            self.free(id);
            id = next;
        }
        Ok(())
    }

    // ----- public operations -------------------------------------------

    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.maybe_spill()?;
        let mut cell = std::mem::take(&mut self.bufs.cell);
        if LEAF_CELL_HEADER + key.len() + value.len() <= MAX_INLINE_CELL {
            leaf_cell(&mut cell, key, value);
        } else {
            let first = self.write_overflow(value)?;
            leaf_overflow_cell(&mut cell, key, first, value.len() as u64);
        }
        let res = self.insert_cell(key, &cell);
        self.bufs.cell = cell;
        res
    }

    fn insert_cell(&mut self, key: &[u8], cell: &[u8]) -> Result<()> {
        if self.insert_at_hint(key, cell)? {
            return Ok(());
        }
        self.bufs.hint.leaf = None;
        self.bufs.hint.bounds.clear();
        if self.root == 0 {
            let id = self.new_page(PageType::Leaf);
            let p = self.page_mut(id)?;
            NodeMut { p }.push(cell);
            self.root = id;
            self.keys += 1;
            return Ok(());
        }
        match self.insert_rec(self.root, key, cell, 0)? {
            Change::Done(id) | Change::Underfull(id) => self.root = id,
            Change::Split(left, sep, right) => self.grow_root(left, &sep, right)?,
            Change::None => {}
        }
        Ok(())
    }

    /// Inserts into the remembered leaf if the key belongs there, is new
    /// and fits (see the module doc); false if the caller must descend.
    fn insert_at_hint(&mut self, key: &[u8], cell: &[u8]) -> Result<bool> {
        let Some(id) = self.bufs.hint.leaf else { return Ok(false) };
        if !self.bufs.hint.bounds.covers(key) {
            return Ok(false);
        }
        let Some(arc) = self.private.get_mut(&id) else { return Ok(false) };
        let node = Node::new(arc, id)?;
        // A batch comes sorted: its keys mostly land after the last key of
        // the leaf the previous one went to (a load past the end of a
        // table or index), which one compare shows, without the search.
        let n = node.len();
        let last = if n > 0 { Some(node.key(n - 1)?) } else { None };
        // Past the last key: whether the key keeps the node's common
        // prefix is seen from that key too (every key has the prefix).
        let (pos, shares_prefix) = match last {
            Some(last) if last < key => {
                (n, last.get(..node.prefix_len()).is_some_and(|p| key.starts_with(p)))
            }
            _ => match node.search(key)? {
                Ok(_) => return Ok(false),
                Err(pos) => (pos, false),
            },
        };
        if appends_past_fill(&node, pos, cell.len(), self.last_insert, id) {
            return Ok(false);
        }
        let mut m = NodeMut { p: Arc::make_mut(arc) };
        if !m.fits(cell.len()) {
            return Ok(false);
        }
        if shares_prefix {
            m.insert_sharing_prefix(pos, cell, &mut self.bufs.scratch);
        } else {
            m.insert(pos, cell, &mut self.bufs.scratch);
        }
        self.keys += 1;
        self.last_insert = Some((id, pos));
        Ok(true)
    }

    /// After `insert(prev, ..)` put `prev` at the end of the remembered
    /// leaf, appends the batch's next sets to that leaf, each written
    /// straight into the page (`NodeMut::append_leaf`), while each sorts
    /// after the one before (one pass over the two keys tells that and
    /// whether it keeps the leaf's common prefix), lies below the leaf's
    /// upper bound, is stored inline, and keeps the leaf within
    /// `APPEND_FILL`: what `insert_at_hint` would do for it, without
    /// building the cell, looking the leaf up or reading its last key
    /// again (a load past the end of a table or index). The first set
    /// that does not qualify is left in `ops` for `insert`.
    pub fn append_following<'b>(
        &mut self,
        prev: &'b [u8],
        ops: &mut crate::batch::Ops<'b>,
    ) -> Result<()> {
        let Some(id) = self.bufs.hint.leaf else { return Ok(()) };
        let Some(arc) = self.private.get_mut(&id) else { return Ok(()) };
        let node = Node::new(arc, id)?;
        let n = node.len();
        if !node.is_leaf() || n == 0 || self.last_insert != Some((id, n - 1)) {
            return Ok(());
        }
        if node.key(n - 1)? != prev {
            return Ok(());
        }
        let plen = node.prefix_len();
        let high = self.bufs.hint.bounds.high();
        let mut m = NodeMut { p: Arc::make_mut(arc) };
        let (mut prev, mut added) = (prev, 0);
        loop {
            let mut next = ops.clone();
            let Some(crate::Op::Set(key, value)) = next.next() else { break };
            if LEAF_CELL_HEADER + key.len() + value.len() > MAX_INLINE_CELL {
                break;
            }
            let (after, common) = follows(prev, key);
            if !after || common < plen || high.is_some_and(|h| cmp_bytes(key, h).is_ge()) {
                break;
            }
            if !m.append_leaf(key, value, APPEND_FILL) {
                break;
            }
            *ops = next;
            prev = key;
            added += 1;
        }
        self.keys += added as u64;
        self.last_insert = Some((id, n - 1 + added));
        Ok(())
    }

    /// Deletes from the remembered leaf if the key belongs there, its value
    /// is inline and the leaf stays at least `UNDERFULL` (so that nothing
    /// above it changes); false if the caller must descend. A key in the
    /// leaf's range that the leaf lacks is in no leaf: nothing to delete.
    /// (GC deletes the old versions of a key, which lie side by side.)
    fn delete_at_hint(&mut self, key: &[u8]) -> Result<bool> {
        let Some(id) = self.bufs.hint.leaf else { return Ok(false) };
        if !self.bufs.hint.bounds.covers(key) {
            return Ok(false);
        }
        let Some(arc) = self.private.get_mut(&id) else { return Ok(false) };
        let node = Node::new(arc, id)?;
        let pos = match node.search(key)? {
            Ok(pos) => pos,
            Err(_) => return Ok(true),
        };
        if matches!(node.leaf_cell(pos)?.value, LeafValue::Overflow { .. }) {
            return Ok(false);
        }
        let len = node.cell_bytes(pos)?.len();
        if node.used().saturating_sub(SLOT_SIZE + len) < UNDERFULL {
            return Ok(false);
        }
        NodeMut { p: Arc::make_mut(arc) }.remove(pos, len);
        self.keys = self.keys.saturating_sub(1);
        Ok(true)
    }

    /// The root split: a new root holds the two halves.
    fn grow_root(&mut self, left: PageId, sep: &[u8], right: PageId) -> Result<()> {
        let id = self.new_page(PageType::Internal);
        let mut c = std::mem::take(&mut self.bufs.scratch);
        internal_cell(&mut c, sep, right);
        let p = self.page_mut(id)?;
        let mut n = NodeMut { p };
        n.set_leftmost(left);
        n.push(&c);
        self.bufs.scratch = c;
        self.root = id;
        Ok(())
    }

    fn insert_rec(&mut self, id: PageId, key: &[u8], cell: &[u8], depth: usize) -> Result<Change> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt_page(super::DATA_FILE, id, "tree deeper than possible"));
        }
        let page = self.read(id)?;
        let node = Node::new(&page, id)?;
        match page_type(&page) {
            Some(PageType::Leaf) => {
                let (pos, old) = match node.search(key)? {
                    Ok(i) => {
                        let c = node.leaf_cell(i)?;
                        let ov = match c.value {
                            LeafValue::Overflow { first, len } => Some((first, len)),
                            LeafValue::Inline(_) => None,
                        };
                        (i, Some((node.cell_bytes(i)?.len(), ov)))
                    }
                    Err(i) => (i, None),
                };
                let full = old.is_none()
                    && appends_past_fill(&node, pos, cell.len(), self.last_insert, id);
                drop(page);
                if let Some((_, Some((first, len)))) = old {
                    self.free_overflow(first, len)?;
                }
                let nid = self.make_mut(id)?;
                if old.is_none() {
                    self.keys += 1;
                }
                let bufs = &mut *self.bufs;
                let p = Arc::make_mut(
                    self.private
                        .get_mut(&nid)
                        .ok_or_else(|| Error::Internal("lost page".into()))?,
                );
                let mut m = NodeMut { p };
                if let Some((len, _)) = old {
                    m.remove(pos, len);
                }
                if !full && m.fits(cell.len()) {
                    m.insert(pos, cell, &mut bufs.scratch);
                    self.bufs.hint.leaf = Some(nid);
                    self.last_insert = Some((nid, pos));
                    return Ok(Change::Done(nid));
                }
                self.split_leaf(nid, pos, cell)
            }
            Some(PageType::Internal) => {
                let idx = node.child_index(key)?;
                let child = node.child(idx)?;
                self.bufs.hint.bounds.narrow(&node, idx)?;
                drop(page);
                match self.insert_rec(child, key, cell, depth + 1)? {
                    Change::None => Ok(Change::None),
                    Change::Done(c) | Change::Underfull(c) => self.relink(id, idx, child, c),
                    Change::Split(l, sep, r) => self.absorb_split(id, idx, l, &sep, r),
                }
            }
            _ => Err(Error::corrupt_page(super::DATA_FILE, id, "expected a tree node")),
        }
    }

    /// Child `idx` of internal node `id` now lives at `c`: point the node
    /// at it (shadowing the node unless it is already this batch's).
    fn relink(&mut self, id: PageId, idx: usize, child: PageId, c: PageId) -> Result<Change> {
        if c == child && self.is_owned(id) {
            return Ok(Change::Done(id));
        }
        let nid = self.make_mut(id)?;
        NodeMut { p: self.page_mut(nid)? }.set_child(idx, c);
        Ok(Change::Done(nid))
    }

    /// Child `idx` of internal node `id` split into `left`, `sep`, `right`.
    fn absorb_split(
        &mut self,
        id: PageId,
        idx: usize,
        left: PageId,
        sep: &[u8],
        right: PageId,
    ) -> Result<Change> {
        let nid = self.make_mut(id)?;
        let mut c = std::mem::take(&mut self.bufs.cell);
        internal_cell(&mut c, sep, right);
        let res = self.insert_into_internal(nid, idx, left, &c);
        self.bufs.cell = c;
        res
    }

    /// In internal node `nid` (private), points child `idx` at `left` and
    /// inserts `cell` (separator, right) after it, splitting if needed.
    fn insert_into_internal(
        &mut self,
        nid: PageId,
        idx: usize,
        left: PageId,
        cell: &[u8],
    ) -> Result<Change> {
        let bufs = &mut *self.bufs;
        let p = Arc::make_mut(
            self.private.get_mut(&nid).ok_or_else(|| Error::Internal("lost page".into()))?,
        );
        let mut m = NodeMut { p };
        m.set_child(idx, left);
        if m.fits(cell.len()) {
            m.insert(idx, cell, &mut bufs.scratch);
            return Ok(Change::Done(nid));
        }
        self.split_internal(nid, idx, cell)
    }

    /// Copies the cells of private page `id` into `bufs.cells`, with `extra`
    /// inserted at position `at` (if given).
    fn gather(&mut self, id: PageId, extra: Option<(usize, &[u8])>, append: bool) -> Result<()> {
        let page = self.read(id)?;
        let node = Node::new(&page, id)?;
        let b = &mut *self.bufs;
        if !append {
            b.cells.clear();
            b.spans.clear();
        }
        for i in 0..=node.len() {
            if let Some((at, c)) = extra
                && at == i
            {
                b.spans.push((b.cells.len(), c.len()));
                b.cells.extend_from_slice(c);
            }
            if i < node.len() {
                let c = node.cell_bytes(i)?;
                b.spans.push((b.cells.len(), c.len()));
                b.cells.extend_from_slice(c);
            }
        }
        Ok(())
    }

    /// Chooses where to cut `bufs.spans` so both halves fit a page; `skip_middle`
    /// for internal nodes (the cell at the cut moves up to the parent).
    fn cut_point(&self, hint: Option<usize>, skip_middle: bool) -> Result<usize> {
        let spans = &self.bufs.spans;
        let n = spans.len();
        let sizes: Vec<usize> = spans.iter().map(|s| s.1 + SLOT_SIZE).collect();
        let total: usize = sizes.iter().sum();
        let fits = |cut: usize| -> bool {
            let left: usize = sizes[..cut].iter().sum();
            let right: usize = sizes[cut + usize::from(skip_middle)..].iter().sum();
            cut >= 1
                && cut + usize::from(skip_middle) < n
                && left <= NODE_USABLE
                && right <= NODE_USABLE
        };
        if let Some(h) = hint
            && fits(h)
        {
            return Ok(h);
        }
        let mut acc = 0;
        let mut best = None;
        let mut best_diff = usize::MAX;
        for cut in 1..n {
            acc += sizes[cut - 1];
            if !fits(cut) {
                continue;
            }
            let diff = acc.abs_diff(total - acc);
            if diff < best_diff {
                best_diff = diff;
                best = Some(cut);
            }
        }
        best.ok_or_else(|| Error::Internal("no valid split point for a node".into()))
    }

    fn cell_at(&self, i: usize) -> &[u8] {
        let (o, l) = self.bufs.spans[i];
        &self.bufs.cells[o..o + l]
    }

    /// Rewrites private node `id` with cells `from..to` of `bufs`.
    fn fill(&mut self, id: PageId, from: usize, to: usize, leftmost: Option<PageId>) -> Result<()> {
        let arc = self.private.get_mut(&id).ok_or_else(|| Error::Internal("lost page".into()))?;
        let p = Arc::make_mut(arc);
        // The cells are sorted: the keys' common prefix is the first's and
        // the last's (see `page.rs`), set before the pushes so none of them
        // has to shorten it.
        let key = if page_type(p) == Some(PageType::Leaf) { leaf_key } else { internal_key };
        let plen = match (
            self.bufs.spans.get(from),
            to.checked_sub(1).and_then(|l| self.bufs.spans.get(l)),
        ) {
            (Some(&(fo, fl)), Some(&(lo, ll))) if from < to => {
                common_len(key(&self.bufs.cells[fo..fo + fl]), key(&self.bufs.cells[lo..lo + ll]))
            }
            // No cells: an empty node's prefix is set by its first insert.
            _ => usize::MAX,
        };
        let mut m = NodeMut { p };
        m.clear();
        m.set_prefix_len(plen);
        if let Some(l) = leftmost {
            m.set_leftmost(l);
        }
        for i in from..to {
            let (o, l) = self.bufs.spans[i];
            m.push(&self.bufs.cells[o..o + l]);
        }
        Ok(())
    }

    /// Splits leaf `nid` for `cell` at `pos`: it overflows, or a
    /// sequential load filled it to `APPEND_FILL` (`pos` is then its end).
    fn split_leaf(&mut self, nid: PageId, pos: usize, cell: &[u8]) -> Result<Change> {
        let len = Node::new(&*self.read(nid)?, nid)?.len();
        if pos == len && len > 0 {
            // Past the last key (a sequential load): the full leaf stays as
            // it is and the cell starts a new right sibling — the split the
            // general path below makes for an append, without rebuilding
            // the left page. The next key of the load likely follows it
            // there: remember the new leaf, whose range starts at the
            // separator (the high bound is the old leaf's).
            let right = self.new_page(PageType::Leaf);
            NodeMut { p: self.page_mut(right)? }.push(cell);
            let sep = leaf_key(cell).to_vec();
            self.bufs.hint.leaf = Some(right);
            self.last_insert = Some((right, 0));
            self.bufs.hint.bounds.set_low(&sep);
            return Ok(Change::Split(nid, sep, right));
        }
        let sequential = pos > 0 && self.last_insert == Some((nid, pos - 1));
        self.last_insert = None;
        self.gather(nid, Some((pos, cell)), false)?;
        let n = self.bufs.spans.len();
        // Appending at the end (sequential loads) keeps the left page full.
        // So does a run of ascending keys arriving in the middle (the gap
        // between the last keys of one table and the first of the next, the
        // previous insert just before this one): the left page keeps them
        // and the new one, the right one the keys after the gap, and the
        // run's next key lands at the end of the left page, where it takes
        // the append path above.
        let hint = if pos == n - 1 {
            Some(n - 1)
        } else if sequential {
            Some(pos + 1)
        } else if pos == 0 {
            Some(1)
        } else {
            None
        };
        let cut = self.cut_point(hint, false)?;
        let right = self.new_page(PageType::Leaf);
        self.fill(nid, 0, cut, None)?;
        self.fill(right, cut, n, None)?;
        let sep = leaf_key(self.cell_at(cut)).to_vec();
        Ok(Change::Split(nid, sep, right))
    }

    fn split_internal(&mut self, nid: PageId, idx: usize, cell: &[u8]) -> Result<Change> {
        let leftmost = Node::new(&*self.read(nid)?, nid)?.leftmost();
        self.gather(nid, Some((idx, cell)), false)?;
        let n = self.bufs.spans.len();
        let cut = self.cut_point(None, true)?;
        let up = self.cell_at(cut).to_vec();
        let right = self.new_page(PageType::Internal);
        self.fill(nid, 0, cut, Some(leftmost))?;
        self.fill(right, cut + 1, n, Some(get_u64(&up, 2)))?;
        Ok(Change::Split(nid, internal_key(&up).to_vec(), right))
    }

    // ----- delete --------------------------------------------------------

    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.maybe_spill()?;
        if self.delete_at_hint(key)? {
            return Ok(());
        }
        // The descent narrows the remembered range afresh, and remembers
        // the leaf only if nothing above it changes (no merge, no move
        // between siblings, which change leaves' ranges).
        self.bufs.hint.leaf = None;
        self.bufs.hint.bounds.clear();
        if self.root == 0 {
            return Ok(());
        }
        match self.delete_rec(self.root, key, 0)? {
            Change::None => {}
            Change::Done(id) => self.root = id,
            Change::Underfull(id) => {
                self.root = id;
                self.shrink_root()?;
            }
            // Moving cells between siblings can lengthen a separator and
            // split the parent, up to the root.
            Change::Split(left, sep, right) => self.grow_root(left, &sep, right)?,
        }
        Ok(())
    }

    /// Compaction: moves tree pages at ids ≥ `limit` to the lowest free
    /// ids (shadowing their parents), at most `budget` of them; returns how
    /// many moved. The content is unchanged; the pages left behind are
    /// garbage as after any batch, so the checkpoint that follows can cut
    /// the file's free tail. Internal nodes are all read; a leaf is read
    /// only if it moves. Overflow pages are not moved.
    pub fn relocate(&mut self, limit: PageId, mut budget: usize) -> Result<usize> {
        if self.root == 0 {
            return Ok(0);
        }
        // Height: internal levels above the leaves (all leaves are at one depth).
        let mut height = 0;
        let mut id = self.root;
        loop {
            let page = self.read(id)?;
            let node = Node::new(&page, id)?;
            if node.is_leaf() {
                break;
            }
            height += 1;
            if height > MAX_DEPTH {
                return Err(Error::corrupt_page(super::DATA_FILE, id, "tree deeper than possible"));
            }
            id = node.leftmost();
        }
        let start = budget;
        self.root = self.relocate_rec(self.root, height, limit, &mut budget)?;
        Ok(start - budget)
    }

    fn relocate_rec(
        &mut self,
        id: PageId,
        height: usize,
        limit: PageId,
        budget: &mut usize,
    ) -> Result<PageId> {
        self.maybe_spill()?;
        let mut cur = id;
        if height > 0 {
            let page = self.read(id)?;
            let node = Node::new(&page, id)?;
            if node.is_leaf() {
                return Err(Error::corrupt_page(super::DATA_FILE, id, "leaves at unequal depths"));
            }
            let children =
                (0..=node.len()).map(|i| node.child(i)).collect::<Result<Vec<PageId>>>()?;
            drop(page);
            for (i, child) in children.into_iter().enumerate() {
                if *budget == 0 {
                    break;
                }
                let moved = self.relocate_rec(child, height - 1, limit, budget)?;
                if moved != child {
                    cur = self.make_mut(cur)?;
                    NodeMut { p: self.page_mut(cur)? }.set_child(i, moved);
                }
            }
        }
        if cur >= limit
            && *budget > 0
            && !self.is_owned(cur)
            && self.alloc.free.first().is_some_and(|f| f < cur)
        {
            cur = self.make_mut(cur)?;
            *budget -= 1;
        }
        Ok(cur)
    }

    /// An empty leaf root leaves an empty tree; an internal root with one
    /// child is replaced by that child.
    fn shrink_root(&mut self) -> Result<()> {
        for _ in 0..MAX_DEPTH {
            let page = self.read(self.root)?;
            let node = Node::new(&page, self.root)?;
            if !node.is_empty() {
                return Ok(());
            }
            let next = if node.is_leaf() { 0 } else { node.leftmost() };
            drop(page);
            let old = self.root;
            self.free(old);
            self.root = next;
            if next == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    fn delete_rec(&mut self, id: PageId, key: &[u8], depth: usize) -> Result<Change> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt_page(super::DATA_FILE, id, "tree deeper than possible"));
        }
        let page = self.read(id)?;
        let node = Node::new(&page, id)?;
        match page_type(&page) {
            Some(PageType::Leaf) => {
                let Ok(pos) = node.search(key)? else {
                    return Ok(Change::None);
                };
                let c = node.leaf_cell(pos)?;
                let ov = match c.value {
                    LeafValue::Overflow { first, len } => Some((first, len)),
                    LeafValue::Inline(_) => None,
                };
                let len = node.cell_bytes(pos)?.len();
                drop(page);
                if let Some((first, l)) = ov {
                    self.free_overflow(first, l)?;
                }
                let nid = self.make_mut(id)?;
                self.keys = self.keys.saturating_sub(1);
                let p = self.page_mut(nid)?;
                NodeMut { p: &mut *p }.remove(pos, len);
                let used = Node::new(p, nid)?.used();
                if used < UNDERFULL {
                    return Ok(Change::Underfull(nid));
                }
                // Its ancestors only relink: its range stays (`delete_at_hint`).
                self.bufs.hint.leaf = Some(nid);
                Ok(Change::Done(nid))
            }
            Some(PageType::Internal) => {
                let idx = node.child_index(key)?;
                let child = node.child(idx)?;
                self.bufs.hint.bounds.narrow(&node, idx)?;
                drop(page);
                match self.delete_rec(child, key, depth + 1)? {
                    Change::None => Ok(Change::None),
                    Change::Split(l, sep, r) => self.absorb_split(id, idx, l, &sep, r),
                    Change::Done(c) => self.relink(id, idx, child, c),
                    Change::Underfull(c) => {
                        let nid = self.make_mut(id)?;
                        NodeMut { p: self.page_mut(nid)? }.set_child(idx, c);
                        if let Some(split) = self.rebalance(nid, idx)? {
                            return Ok(split);
                        }
                        let p = self.read(nid)?;
                        let n = Node::new(&p, nid)?;
                        Ok(if n.is_empty() || n.used() < UNDERFULL {
                            Change::Underfull(nid)
                        } else {
                            Change::Done(nid)
                        })
                    }
                }
            }
            _ => Err(Error::corrupt_page(super::DATA_FILE, id, "expected a tree node")),
        }
    }

    /// Child `idx` of private internal node `pid` is underfull: merge it
    /// with a sibling if both fit one page, else move cells between them.
    /// Moving cells changes the separator in `pid`; if the new one does not
    /// fit, `pid` splits and the split is returned for its parent.
    fn rebalance(&mut self, pid: PageId, idx: usize) -> Result<Option<Change>> {
        let parent = self.read(pid)?;
        let pn = Node::new(&parent, pid)?;
        if pn.is_empty() {
            return Ok(None);
        }
        let li = if idx > 0 { idx - 1 } else { 0 };
        let (lid, rid) = (pn.child(li)?, pn.child(li + 1)?);
        let sep = pn.key(li)?.to_vec();
        let sep_cell_len = pn.cell_bytes(li)?.len();
        drop(parent);

        let lpage = self.read(lid)?;
        let leaf = Node::new(&lpage, lid)?.is_leaf();
        let l_leftmost = Node::new(&lpage, lid)?.leftmost();
        drop(lpage);
        let rpage = self.read(rid)?;
        let r_leftmost = Node::new(&rpage, rid)?.leftmost();
        if Node::new(&rpage, rid)?.is_leaf() != leaf {
            return Err(Error::corrupt_page(super::DATA_FILE, rid, "siblings at different levels"));
        }
        drop(rpage);

        self.gather(lid, None, false)?;
        if !leaf {
            let mut c = std::mem::take(&mut self.bufs.cell);
            internal_cell(&mut c, &sep, r_leftmost);
            let b = &mut *self.bufs;
            b.spans.push((b.cells.len(), c.len()));
            b.cells.extend_from_slice(&c);
            self.bufs.cell = c;
        }
        self.gather(rid, None, true)?;
        let n = self.bufs.spans.len();
        let total: usize = self.bufs.spans.iter().map(|s| s.1 + SLOT_SIZE).sum();
        let leftmost = if leaf { None } else { Some(l_leftmost) };

        if total <= NODE_USABLE {
            // Merge into the left node; the right one and its separator go.
            let nl = self.make_mut(lid)?;
            self.fill(nl, 0, n, leftmost)?;
            self.free(rid);
            let p = self.page_mut(pid)?;
            let mut m = NodeMut { p };
            m.remove(li, sep_cell_len);
            m.set_child(li, nl);
            return Ok(None);
        }

        // Redistribute.
        let cut = self.cut_point(None, !leaf)?;
        let (new_sep, right_leftmost) = if leaf {
            (leaf_key(self.cell_at(cut)).to_vec(), None)
        } else {
            let up = self.cell_at(cut);
            (internal_key(up).to_vec(), Some(get_u64(up, 2)))
        };
        let nl = self.make_mut(lid)?;
        let nr = self.make_mut(rid)?;
        self.fill(nl, 0, cut, leftmost)?;
        let right_from = if leaf { cut } else { cut + 1 };
        self.fill(nr, right_from, n, right_leftmost)?;
        NodeMut { p: self.page_mut(pid)? }.remove(li, sep_cell_len);
        let mut c = std::mem::take(&mut self.bufs.cell);
        internal_cell(&mut c, &new_sep, nr);
        let res = self.insert_into_internal(pid, li, nl, &c);
        self.bufs.cell = c;
        match res? {
            Change::Split(l, sep, r) => Ok(Some(Change::Split(l, sep, r))),
            _ => Ok(None),
        }
    }
}

fn leaf_key(cell: &[u8]) -> &[u8] {
    let klen = get_u16(cell, 0) as usize;
    &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen]
}

fn internal_key(cell: &[u8]) -> &[u8] {
    let klen = get_u16(cell, 0) as usize;
    &cell[INTERNAL_CELL_HEADER..INTERNAL_CELL_HEADER + klen]
}

/// Whether inserting a cell of `cell_len` at `pos` of leaf `node` (page
/// `id`) continues a sequential load into it — `pos` is its end and the
/// previous insert put the key before it there — past `APPEND_FILL`: the
/// key then starts a new right sibling (module docs).
fn appends_past_fill(
    node: &Node,
    pos: usize,
    cell_len: usize,
    last_insert: Option<(PageId, usize)>,
    id: PageId,
) -> bool {
    pos > 0
        && pos == node.len()
        && last_insert == Some((id, pos - 1))
        && node.used() + SLOT_SIZE + cell_len > APPEND_FILL
}
