//! Reads: point lookups and cursors over a version of the tree.
//!
//! A reader holds an `Arc<Version>`, which keeps every page of that version
//! from being reused (see `GarbageBag`), so it needs no lock while it walks
//! the tree, and a cursor sees one consistent snapshot however long it lives
//! and whatever writers do meanwhile. A cursor keeps the path from the root
//! (pages pinned by `Arc`) and moves leaf to leaf through it; there are no
//! sibling links, because copy-on-write would have to rewrite them.
//!
//! A seeker (`BTreeSeeker`, `Engine::seeker`) answers many point seeks
//! over one version the same way: it keeps the path of its last seek and
//! climbs only as far as the first node whose key range holds the next
//! start, so ascending seeks (MVCC's batched row fetch) share most of
//! their descents.

use std::borrow::Cow;
use std::ops::Bound;
use std::sync::{Arc, Weak};

use qube_common::{Error, Result};
use smallvec::SmallVec;

use super::page::*;
use super::pool::BufferPool;
use super::write::{KeyBounds, MAX_DEPTH};
use super::{DATA_FILE, Version};
use crate::{Cursor, Direction, KeyRange};

/// Reads an overflow chain into `out` (cleared first).
pub(super) fn read_overflow(
    pool: &BufferPool,
    first: PageId,
    len: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    if len > crate::MAX_VALUE_LEN as u64 {
        return Err(Error::corrupt_page(DATA_FILE, first, "overflow value longer than the limit"));
    }
    out.reserve(len as usize);
    let mut id = first;
    while (out.len() as u64) < len {
        if id == 0 {
            return Err(Error::corrupt_page(DATA_FILE, first, "overflow chain ends early"));
        }
        let p = pool.get(id)?;
        if page_type(&p) != Some(PageType::Overflow) {
            return Err(Error::corrupt_page(DATA_FILE, id, "expected an overflow page"));
        }
        let n = get_u32(&p[..], 40) as usize;
        let want = (len as usize - out.len()).min(OVERFLOW_DATA);
        if n != want {
            return Err(Error::corrupt_page(DATA_FILE, id, "overflow page length mismatch"));
        }
        out.extend_from_slice(&p[48..48 + n]);
        id = get_u64(&p[..], 32);
    }
    if id != 0 {
        return Err(Error::corrupt_page(DATA_FILE, first, "overflow chain longer than its value"));
    }
    Ok(())
}

/// What one level of a lookup found.
enum Step {
    Child(PageId),
    Missing,
    Found,
    Overflow(PageId, u64),
}

/// One level of a lookup inside one page; copies an inline value to `out`.
fn step(page: &Page, id: PageId, key: &[u8], out: &mut Vec<u8>) -> Result<Step> {
    let node = Node::new(page, id)?;
    match page_type(page) {
        Some(PageType::Internal) => Ok(Step::Child(node.child(node.child_index(key)?)?)),
        Some(PageType::Leaf) => {
            let Ok(i) = node.search(key)? else { return Ok(Step::Missing) };
            match node.leaf_cell(i)?.value {
                LeafValue::Inline(v) => {
                    out.clear();
                    out.extend_from_slice(v);
                    Ok(Step::Found)
                }
                LeafValue::Overflow { first, len } => Ok(Step::Overflow(first, len)),
            }
        }
        _ => Err(Error::corrupt_page(DATA_FILE, id, "expected a tree node")),
    }
}

/// Looks up `key` in `version`; on a hit the value is copied into `out`
/// (cleared first), so a caller's loop reuses one buffer. The root comes
/// pinned with the version; lower levels are read in place under their
/// pool shard's lock (`BufferPool::with_page`), without pinning.
pub(super) fn get_into(
    pool: &BufferPool,
    version: &Version,
    key: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool> {
    let mut id = version.root;
    if id == 0 {
        return Ok(false);
    }
    let mut next = match &version.root_page {
        Some(p) => step(p, id, key, out)?,
        None => pool.with_page(id, |p| step(p, id, key, out))??,
    };
    for _ in 0..MAX_DEPTH {
        match next {
            Step::Child(child) => {
                id = child;
                next = pool.with_page(id, |p| step(p, id, key, out))??;
            }
            Step::Missing => return Ok(false),
            Step::Found => return Ok(true),
            Step::Overflow(first, len) => {
                read_overflow(pool, first, len, out)?;
                return Ok(true);
            }
        }
    }
    Err(Error::corrupt_page(DATA_FILE, id, "tree deeper than possible"))
}

/// What one level of a seek found.
enum SeekStep {
    Child(PageId),
    /// The first pair in range, inline value copied.
    Found,
    /// Found, with the value on overflow pages.
    FoundOverflow(PageId, u64),
    /// Nothing in range.
    Empty,
    /// The position is past this leaf's end: the cursor must go on.
    LeafEnd,
}

fn seek_step(
    page: &Page,
    id: PageId,
    range: &KeyRange,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<SeekStep> {
    let node = Node::new(page, id)?;
    let start = bound_key_ref(&range.start);
    match page_type(page) {
        Some(PageType::Internal) => {
            let idx = match start {
                Some(k) => node.child_index(k)?,
                None => 0,
            };
            Ok(SeekStep::Child(node.child(idx)?))
        }
        Some(PageType::Leaf) => {
            let pos = match (&range.start, start) {
                (_, None) => 0,
                (std::ops::Bound::Excluded(_), Some(k)) => match node.search(k)? {
                    Ok(i) => i + 1,
                    Err(i) => i,
                },
                (_, Some(k)) => match node.search(k)? {
                    Ok(i) | Err(i) => i,
                },
            };
            if pos >= node.len() {
                return Ok(SeekStep::LeafEnd);
            }
            take_cell(&node, pos, range, key, value)
        }
        _ => Err(Error::corrupt_page(DATA_FILE, id, "expected a tree node")),
    }
}

/// The pair at `pos` of leaf `node` (which exists), if it lies before
/// `range`'s end: its key and inline value copied (`Found`), or its key and
/// where its value's overflow pages are (`FoundOverflow`); else `Empty`.
fn take_cell(
    node: &Node<'_>,
    pos: usize,
    range: &KeyRange,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<SeekStep> {
    let cell = node.leaf_cell(pos)?;
    if !range.before_end(cell.key) {
        return Ok(SeekStep::Empty);
    }
    key.clear();
    key.extend_from_slice(cell.key);
    match cell.value {
        LeafValue::Inline(v) => {
            value.clear();
            value.extend_from_slice(v);
            Ok(SeekStep::Found)
        }
        LeafValue::Overflow { first, len } => Ok(SeekStep::FoundOverflow(first, len)),
    }
}

fn bound_key_ref(b: &std::ops::Bound<Vec<u8>>) -> Option<&[u8]> {
    match b {
        std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => Some(k),
        std::ops::Bound::Unbounded => None,
    }
}

/// `Engine::seek` without a cursor: one descent, in place under the pool
/// shard locks like `get_into`. Returns `None` when the first pair lies in
/// a later leaf, for the caller to use a cursor.
pub(super) fn seek(
    pool: &BufferPool,
    version: &Version,
    range: &KeyRange,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<Option<bool>> {
    let mut id = version.root;
    if id == 0 {
        return Ok(Some(false));
    }
    let mut next = match &version.root_page {
        Some(p) => seek_step(p, id, range, key, value)?,
        None => pool.with_page(id, |p| seek_step(p, id, range, key, value))??,
    };
    for _ in 0..MAX_DEPTH {
        match next {
            SeekStep::Child(child) => {
                id = child;
                next = pool.with_page(id, |p| seek_step(p, id, range, key, value))??;
            }
            SeekStep::Found => return Ok(Some(true)),
            SeekStep::FoundOverflow(first, len) => {
                read_overflow(pool, first, len, value)?;
                return Ok(Some(true));
            }
            SeekStep::Empty => return Ok(Some(false)),
            SeekStep::LeafEnd => return Ok(None),
        }
    }
    Err(Error::corrupt_page(DATA_FILE, id, "tree deeper than possible"))
}

/// The leaf a hinted seek ended in (`Engine::seek_latest_hinted`): the
/// version it was found in, held weakly (the memo keeps no page from
/// being reused, only the version's allocation, so a version at the same
/// address is that version), the page, and the key range its ancestors'
/// separators give it, `low ≤ key < high` (None: unbounded), as the
/// writer's insert hint has (`write.rs`).
pub(crate) struct LeafMemo {
    version: Weak<Version>,
    id: PageId,
    page: Arc<Page>,
    bounds: KeyBounds,
}

/// `seek` that starts at the leaf `memo` remembers when the range's start
/// lies in it and `version` is the one it was found in, and otherwise
/// descends and remembers the leaf it reaches. A bulk load's unique checks
/// come in key order: they mostly land in the leaf of the previous one (a
/// new table's keys all in the gap after the last leaf's keys), where one
/// binary search answers instead of a descent through the pool. Returns
/// `None` when the first pair lies in a later leaf, for the caller to use
/// a cursor.
pub(super) fn seek_hinted(
    pool: &BufferPool,
    version: &Arc<Version>,
    range: &KeyRange,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
    memo: &mut Option<LeafMemo>,
) -> Result<Option<bool>> {
    let Bound::Included(start) = &range.start else {
        return seek(pool, version, range, key, value);
    };
    if let Some(m) = memo
        && Weak::as_ptr(&m.version) == Arc::as_ptr(version)
        && m.bounds.covers(start)
    {
        return leaf_seek(pool, &m.page, m.id, m.bounds.high(), start, range, key, value);
    }
    // The descent reuses the old memo's bound buffers.
    let mut bounds = memo.take().map(|m| m.bounds).unwrap_or_default();
    bounds.clear();
    let mut id = version.root;
    if id == 0 {
        return Ok(Some(false));
    }
    let mut page = match &version.root_page {
        Some(p) => p.clone(),
        None => pool.get(id)?,
    };
    for _ in 0..MAX_DEPTH {
        match page_type(&page) {
            Some(PageType::Internal) => {
                let node = Node::new(&page, id)?;
                let idx = node.child_index(start)?;
                bounds.narrow(&node, idx)?;
                id = node.child(idx)?;
                page = pool.get(id)?;
            }
            Some(PageType::Leaf) => {
                let found = leaf_seek(pool, &page, id, bounds.high(), start, range, key, value);
                *memo = Some(LeafMemo { version: Arc::downgrade(version), id, page, bounds });
                return found;
            }
            _ => return Err(Error::corrupt_page(DATA_FILE, id, "expected a tree node")),
        }
    }
    Err(Error::corrupt_page(DATA_FILE, id, "tree deeper than possible"))
}

/// The first pair of `range` (which starts at `start`, inclusive) as leaf
/// `page`, whose keys below `high` are all the tree's from `start` on,
/// tells it; `None` if it may lie in a later leaf.
#[allow(clippy::too_many_arguments)]
fn leaf_seek(
    pool: &BufferPool,
    page: &Page,
    id: PageId,
    high: Option<&[u8]>,
    start: &[u8],
    range: &KeyRange,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<Option<bool>> {
    if page_type(page) != Some(PageType::Leaf) {
        return Err(Error::corrupt_page(DATA_FILE, id, "expected a leaf"));
    }
    let node = Node::new(page, id)?;
    let (Ok(pos) | Err(pos)) = node.search(start)?;
    if pos < node.len() {
        return match take_cell(&node, pos, range, key, value)? {
            SeekStep::Found => Ok(Some(true)),
            SeekStep::FoundOverflow(first, len) => {
                read_overflow(pool, first, len, value)?;
                Ok(Some(true))
            }
            // `Empty` (`take_cell` gives nothing else).
            _ => Ok(Some(false)),
        };
    }
    // Past the leaf's last key: the tree's next key is at least `high`.
    match high {
        None => Ok(Some(false)),
        Some(h) if !range.before_end(h) => Ok(Some(false)),
        Some(_) => Ok(None),
    }
}

/// A cursor over one version. See the module docs.
pub struct BTreeCursor<'a> {
    pool: &'a BufferPool,
    version: Arc<Version>,
    /// Owned, or the caller's (`Engine::scan_ref`).
    range: Cow<'a, KeyRange>,
    direction: Direction,
    /// Internal nodes from the root down, with the child index taken.
    /// (Inline up to four levels: a tree of a few million keys needs no
    /// allocation per cursor.)
    stack: SmallVec<[(Arc<Page>, PageId, usize); 4]>,
    /// The leaf, and its number of cells as `Node::new` checked them when
    /// the cursor entered it (the page is immutable behind its `Arc`, so
    /// each step need not check its header again).
    leaf: Option<(Arc<Page>, PageId, usize)>,
    pos: isize,
    /// Whether every entry of the leaf from `pos` on, in the cursor's
    /// direction, is within the range: its last one is (`leaf_in_range`),
    /// so the steps through it compare no key with the bound.
    in_range: bool,
    started: bool,
    done: bool,
    key: (usize, usize),
    value: (usize, usize),
    overflow: Option<Vec<u8>>,
    buf: Vec<u8>,
}

impl<'a> BTreeCursor<'a> {
    pub(super) fn new(
        pool: &'a BufferPool,
        version: Arc<Version>,
        range: Cow<'a, KeyRange>,
        direction: Direction,
    ) -> Self {
        BTreeCursor {
            pool,
            version,
            range,
            direction,
            stack: SmallVec::new(),
            leaf: None,
            pos: 0,
            in_range: false,
            started: false,
            done: false,
            key: (0, 0),
            value: (0, 0),
            overflow: None,
            buf: Vec::new(),
        }
    }

    /// Descends from `id` to a leaf: by `key` if given (`inclusive`: the
    /// position may be the key itself, `seek_inclusive`), else to the
    /// leftmost (forward) or rightmost (reverse) leaf.
    fn descend(&mut self, mut id: PageId, key: Option<&[u8]>, inclusive: bool) -> Result<()> {
        for _ in 0..MAX_DEPTH {
            if self.stack.len() > MAX_DEPTH {
                break;
            }
            // The root comes pinned with the version.
            let page = match &self.version.root_page {
                Some(p) if id == self.version.root => p.clone(),
                _ => self.pool.get(id)?,
            };
            let node = Node::new(&page, id)?;
            match page_type(&page) {
                Some(PageType::Internal) => {
                    let idx = match (key, self.direction) {
                        (Some(k), _) => node.child_index(k)?,
                        (None, Direction::Forward) => 0,
                        (None, Direction::Reverse) => node.len(),
                    };
                    let child = node.child(idx)?;
                    self.stack.push((page.clone(), id, idx));
                    id = child;
                }
                Some(PageType::Leaf) => {
                    let len = node.len() as isize;
                    self.pos = match (key, self.direction) {
                        (None, Direction::Forward) => 0,
                        (None, Direction::Reverse) => len - 1,
                        (Some(k), dir) => {
                            let found = node.search(k)?;
                            match (found, dir, inclusive) {
                                (Ok(i), Direction::Forward, true) => i as isize,
                                (Ok(i), Direction::Forward, false) => i as isize + 1,
                                (Err(i), Direction::Forward, _) => i as isize,
                                (Ok(i), Direction::Reverse, true) => i as isize,
                                (Ok(i), Direction::Reverse, false) => i as isize - 1,
                                (Err(i), Direction::Reverse, _) => i as isize - 1,
                            }
                        }
                    };
                    self.leaf = Some((page.clone(), id, node.len()));
                    return Ok(());
                }
                _ => return Err(Error::corrupt_page(DATA_FILE, id, "expected a tree node")),
            }
        }
        Err(Error::corrupt_page(DATA_FILE, id, "tree deeper than possible"))
    }

    fn seek_inclusive(&self) -> bool {
        use std::ops::Bound::*;
        match self.direction {
            Direction::Forward => matches!(self.range.start, Included(_) | Unbounded),
            Direction::Reverse => matches!(self.range.end, Included(_) | Unbounded),
        }
    }

    /// Moves to the neighbouring leaf; false when there is none.
    fn next_leaf(&mut self) -> Result<bool> {
        while let Some((page, id, idx)) = self.stack.pop() {
            let node = Node::new(&page, id)?;
            let next = match self.direction {
                Direction::Forward if idx < node.len() => idx + 1,
                Direction::Reverse if idx > 0 => idx - 1,
                _ => continue,
            };
            let child = node.child(next)?;
            self.stack.push((page.clone(), id, next));
            self.descend(child, None, false)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn step(&mut self) -> Result<bool> {
        if !self.started {
            self.started = true;
            let root = self.version.root;
            if root == 0 {
                return Ok(false);
            }
            // The range is set aside while the descent reads its bound in
            // place (it was cloned: an allocation per scan).
            let inclusive = self.seek_inclusive();
            let range = std::mem::replace(&mut self.range, Cow::Owned(KeyRange::all()));
            let key = match self.direction {
                Direction::Forward => bound_key_ref(&range.start),
                Direction::Reverse => bound_key_ref(&range.end),
            };
            let res = self.descend(root, key, inclusive);
            self.range = range;
            res?;
            self.in_range = self.leaf_in_range()?;
        } else {
            self.pos += match self.direction {
                Direction::Forward => 1,
                Direction::Reverse => -1,
            };
        }
        loop {
            let Some((_, _, len)) = self.leaf else { return Ok(false) };
            let len = len as isize;
            if self.pos >= 0 && self.pos < len {
                return Ok(true);
            }
            if !self.next_leaf()? {
                return Ok(false);
            }
            self.in_range = self.leaf_in_range()?;
        }
    }

    /// Whether the leaf's last entry in the cursor's direction (and so
    /// every one before it) is within the range.
    fn leaf_in_range(&self) -> Result<bool> {
        let Some((page, id, n)) = &self.leaf else { return Ok(false) };
        let Some(last) = n.checked_sub(1) else { return Ok(false) };
        let node = Node::checked(page, *id, *n);
        Ok(match self.direction {
            Direction::Forward => self.range.before_end(node.key(last)?),
            Direction::Reverse => self.range.after_start(node.key(0)?),
        })
    }

    fn load_current(&mut self) -> Result<()> {
        let Some((page, id, n)) = &self.leaf else {
            return Err(Error::Internal("cursor has no leaf".into()));
        };
        let node = Node::checked(page, *id, *n);
        let i = self.pos as usize;
        let cell = node.leaf_cell(i)?;
        let base = page.as_ptr() as usize;
        let kstart = cell.key.as_ptr() as usize - base;
        self.key = (kstart, kstart + cell.key.len());
        match cell.value {
            LeafValue::Inline(v) => {
                let vstart = v.as_ptr() as usize - base;
                self.value = (vstart, vstart + v.len());
                if let Some(b) = self.overflow.take() {
                    self.buf = b;
                }
            }
            LeafValue::Overflow { first, len } => {
                let mut b = self.overflow.take().unwrap_or_else(|| std::mem::take(&mut self.buf));
                read_overflow(self.pool, first, len, &mut b)?;
                self.overflow = Some(b);
            }
        }
        Ok(())
    }
}

impl Cursor for BTreeCursor<'_> {
    fn advance(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let res = self.step().and_then(|more| {
            if !more {
                return Ok(false);
            }
            self.load_current()?;
            if self.in_range {
                return Ok(true);
            }
            let key = self.key();
            Ok(match self.direction {
                Direction::Forward => self.range.before_end(key),
                Direction::Reverse => self.range.after_start(key),
            })
        });
        match res {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.done = true;
                self.leaf = None;
                self.stack.clear();
                Ok(false)
            }
            Err(e) => {
                self.done = true;
                Err(super::locate(e, self.pool.file_path()))
            }
        }
    }

    fn key(&self) -> &[u8] {
        match &self.leaf {
            Some((p, ..)) => &p[self.key.0..self.key.1],
            None => &[],
        }
    }

    fn peek_key(&self) -> Option<&[u8]> {
        let (page, id, n) = self.leaf.as_ref()?;
        let next = match self.direction {
            Direction::Forward => self.pos.checked_add(1)?,
            Direction::Reverse => self.pos.checked_sub(1)?,
        };
        let next = usize::try_from(next).ok().filter(|&i| i < *n)?;
        Node::checked(page, *id, *n).leaf_key_hint(next)
    }

    fn value(&self) -> &[u8] {
        if let Some(b) = &self.overflow {
            return b;
        }
        match &self.leaf {
            Some((p, ..)) => &p[self.value.0..self.value.1],
            None => &[],
        }
    }
}

/// One node of a `BTreeSeeker`'s path: the page, and the separators
/// bounding the node's keys, `low ≤ key < high`, each as (level of the
/// path, byte range) of an ancestor's key, read where it is (None:
/// unbounded on that side).
struct Level {
    page: Arc<Page>,
    id: PageId,
    low: Option<Sep>,
    high: Option<Sep>,
    /// Whether `low` and `high` agree on the node's common prefix, so that
    /// every key a seek brings here has it (`Node::search_known`).
    prefix_known: bool,
}

/// Where a separator key lies: the level of the path whose page holds it,
/// and its bytes' range in that page.
#[derive(Clone, Copy)]
struct Sep {
    level: usize,
    at: (usize, usize),
}

/// `Engine::seeker` of the B+Tree: point seeks over one version that keep
/// the path from the root to the last seek's leaf (pages pinned by `Arc`,
/// like a cursor's). A seek climbs only as far as the first node whose key
/// range holds its start and descends from there: seeks in ascending order
/// (a batch of rowids, sorted) share the root and most internal nodes, and
/// the leaf too when they land in it, instead of a descent through the
/// pool each.
pub struct BTreeSeeker<'a> {
    pool: &'a BufferPool,
    version: Arc<Version>,
    path: Vec<Level>,
    /// The found value when it is not in the leaf (overflow pages, or the
    /// cursor fallback).
    buf: Vec<u8>,
}

/// What a `BTreeSeeker` step found.
enum Found {
    None,
    Inline(usize, usize),
    Buffered,
}

/// The byte range of `part` within `page` (`part` is a slice of it).
#[inline(always)]
fn offsets(page: &Page, part: &[u8]) -> (usize, usize) {
    let at = part.as_ptr() as usize - page.as_ptr() as usize;
    (at, at + part.len())
}

impl<'a> BTreeSeeker<'a> {
    pub(super) fn new(pool: &'a BufferPool, version: Arc<Version>) -> Self {
        BTreeSeeker { pool, version, path: Vec::new(), buf: Vec::new() }
    }

    fn separator(&self, sep: Sep) -> &[u8] {
        match self.path.get(sep.level) {
            Some(l) => l.page.get(sep.at.0..sep.at.1).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Whether the node at the top of the path may hold `key`.
    fn covers(&self, key: &[u8]) -> bool {
        let Some(top) = self.path.last() else { return false };
        // High first: ascending seeks leave a node past its end.
        if let Some(h) = top.high
            && cmp_bytes(key, self.separator(h)).is_ge()
        {
            return false;
        }
        if let Some(l) = top.low
            && cmp_bytes(key, self.separator(l)).is_lt()
        {
            return false;
        }
        true
    }

    fn find(&mut self, start: &[u8], plen: usize) -> Result<Found> {
        let Some(prefix) = start.get(..plen) else {
            return Err(Error::Internal("seek prefix longer than its start".into()));
        };
        // A separator's level lies above the node it bounds, so popping
        // never leaves one pointing at a page that is gone.
        while !self.path.is_empty() && !self.covers(start) {
            self.path.pop();
        }
        if self.path.is_empty() {
            let id = self.version.root;
            if id == 0 {
                return Ok(Found::None);
            }
            let page = match &self.version.root_page {
                Some(p) => p.clone(),
                None => self.pool.get(id)?,
            };
            self.path.push(Level { page, id, low: None, high: None, prefix_known: false });
        }
        for _ in 0..=MAX_DEPTH {
            let depth = self.path.len() - 1;
            let top = &self.path[depth];
            let (page, id) = (&top.page, top.id);
            let node = Node::new(page, id)?;
            match page_type(page) {
                Some(PageType::Internal) => {
                    if depth >= MAX_DEPTH {
                        break;
                    }
                    let idx = node.child_index_known(start, top.prefix_known)?;
                    let child = node.child(idx)?;
                    // The child's bounding separators, written out rather
                    // than through a closure (an out-of-line call each,
                    // ~60 instructions, twice a seek).
                    let low = match idx {
                        0 => top.low,
                        i => Some(Sep { level: depth, at: offsets(page, node.key(i - 1)?) }),
                    };
                    let high = match idx < node.len() {
                        true => Some(Sep { level: depth, at: offsets(page, node.key(idx)?) }),
                        false => top.high,
                    };
                    let page = self.pool.get(child)?;
                    let prefix_known = match (low, high) {
                        (Some(l), Some(h)) => {
                            let plen = page_prefix_len(&page);
                            match (self.separator(l).get(..plen), self.separator(h).get(..plen)) {
                                (Some(l), Some(h)) => plen > 0 && l == h,
                                _ => false,
                            }
                        }
                        _ => false,
                    };
                    self.path.push(Level { page, id: child, low, high, prefix_known });
                }
                Some(PageType::Leaf) => {
                    let (Ok(pos) | Err(pos)) = node.search_known(start, top.prefix_known)?;
                    if pos < node.len() {
                        let cell = node.leaf_cell(pos)?;
                        if !cell.key.starts_with(prefix) {
                            return Ok(Found::None);
                        }
                        return match cell.value {
                            LeafValue::Inline(v) => {
                                let (a, b) = offsets(page, v);
                                Ok(Found::Inline(a, b))
                            }
                            LeafValue::Overflow { first, len } => {
                                read_overflow(self.pool, first, len, &mut self.buf)?;
                                Ok(Found::Buffered)
                            }
                        };
                    }
                    // Past the leaf's last key: the tree's next key is at
                    // least the leaf's upper bound, which a key with the
                    // prefix can reach only if the bound has it too.
                    let Some(h) = top.high else { return Ok(Found::None) };
                    if !self.separator(h).starts_with(prefix) {
                        return Ok(Found::None);
                    }
                    let range =
                        KeyRange { start: Bound::Included(start.to_vec()), end: Bound::Unbounded };
                    let v = self.version.clone();
                    let mut c =
                        BTreeCursor::new(self.pool, v, Cow::Owned(range), Direction::Forward);
                    if c.advance()? && c.key().starts_with(prefix) {
                        self.buf.clear();
                        self.buf.extend_from_slice(c.value());
                        return Ok(Found::Buffered);
                    }
                    return Ok(Found::None);
                }
                _ => return Err(Error::corrupt_page(DATA_FILE, id, "expected a tree node")),
            }
        }
        let id = self.path.last().map_or(0, |l| l.id);
        Err(Error::corrupt_page(DATA_FILE, id, "tree deeper than possible"))
    }
}

impl crate::Seeker for BTreeSeeker<'_> {
    fn seek(&mut self, start: &[u8], plen: usize) -> Result<Option<&[u8]>> {
        match self.find(start, plen) {
            Ok(Found::None) => Ok(None),
            Ok(Found::Inline(a, b)) => {
                let page = self.path.last().map(|l| &l.page[..]).unwrap_or(&[]);
                Ok(page.get(a..b))
            }
            Ok(Found::Buffered) => Ok(Some(&self.buf)),
            Err(e) => {
                // Forget the path: the next seek starts from the root.
                self.path.clear();
                Err(super::locate(e, self.pool.file_path()))
            }
        }
    }
}
