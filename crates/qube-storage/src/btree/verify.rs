//! `verify`: a full structural check of what is on disk.
//!
//! Reads every page of the checkpointed tree straight from the file (so the
//! checksums checked are the on-disk ones) and checks: each node's keys are
//! strictly increasing and inside the range its parent gives it; every leaf
//! is at the same depth; no non-root node is empty; overflow chains have the
//! length their cell claims; no page is reachable twice; the key count
//! matches the meta page; and every page of the file is exactly one of
//! tree, overflow, free-list page, or free.

use std::collections::HashSet;

use qube_common::{Error, Result};

use super::alloc::Allocator;
use super::file::PageFile;
use super::page::*;
use super::write::MAX_DEPTH;

/// What `verify` found (it returns an error at the first problem).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub pages: u64,
    pub leaf_pages: u64,
    pub internal_pages: u64,
    pub overflow_pages: u64,
    pub free_pages: u64,
    pub freelist_pages: u64,
    pub depth: u64,
    pub keys: u64,
    /// Non-root nodes below a quarter full (allowed, but should be rare).
    pub underfull_nodes: u64,
    /// Average fill of tree nodes, in percent.
    pub fill_percent: u64,
}

struct Walk<'a> {
    file: &'a PageFile,
    seen: HashSet<PageId>,
    report: VerifyReport,
    leaf_depth: Option<u64>,
    used_bytes: u64,
}

pub fn verify(file: &PageFile, meta: &Meta, alloc: &Allocator) -> Result<VerifyReport> {
    let mut w = Walk {
        file,
        seen: HashSet::new(),
        report: VerifyReport { pages: meta.page_count, ..VerifyReport::default() },
        leaf_depth: None,
        used_bytes: 0,
    };
    if meta.root != 0 {
        w.node(meta.root, None, None, 1, true)?;
    }
    w.report.depth = w.leaf_depth.unwrap_or(0);
    let nodes = w.report.leaf_pages + w.report.internal_pages;
    if nodes > 0 {
        w.report.fill_percent = w.used_bytes * 100 / (nodes * NODE_USABLE as u64);
    }
    if w.report.keys != meta.keys {
        return Err(bad(
            file,
            meta.root,
            format!("tree holds {} keys, meta says {}", w.report.keys, meta.keys),
        ));
    }
    for &id in &alloc.freelist_pages {
        let p = file.read(id)?;
        if page_type(&p) != Some(PageType::FreeList) {
            return Err(bad(file, id, "expected a free-list page".into()));
        }
        w.claim(id)?;
        w.report.freelist_pages += 1;
    }
    // The persisted free list is what `load_freelist` reads back; the
    // allocator's copy of it after a checkpoint is free ∪ deferred ∪ limbo.
    let mut free = alloc.free_after_restart();
    for id in &alloc.freelist_pages {
        free.remove(id);
    }
    for &id in &free {
        if id >= meta.page_count {
            continue;
        }
        w.claim(id)?;
        w.report.free_pages += 1;
    }
    for id in 2..meta.page_count {
        if !w.seen.contains(&id) {
            return Err(bad(file, id, "page is neither in the tree nor free (leaked)".into()));
        }
    }
    Ok(w.report)
}

fn bad(file: &PageFile, id: PageId, detail: String) -> Error {
    Error::corrupt_page(file.path(), id, detail)
}

impl Walk<'_> {
    fn claim(&mut self, id: PageId) -> Result<()> {
        if id < 2 {
            return Err(bad(self.file, id, "a meta page is referenced as a data page".into()));
        }
        if !self.seen.insert(id) {
            return Err(bad(self.file, id, "page is reachable twice".into()));
        }
        Ok(())
    }

    fn node(
        &mut self,
        id: PageId,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: u64,
        root: bool,
    ) -> Result<()> {
        if depth as usize > MAX_DEPTH {
            return Err(bad(self.file, id, "tree deeper than possible".into()));
        }
        self.claim(id)?;
        let page = self.file.read(id)?;
        let node = Node::new(&page, id)?;
        let n = node.len();
        if !root && n == 0 {
            return Err(bad(self.file, id, "empty non-root node".into()));
        }
        let used = node.used() as u64;
        self.used_bytes += used;
        if !root && (used as usize) < NODE_USABLE / 4 {
            self.report.underfull_nodes += 1;
        }
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let k = node.key(i)?;
            if prev.is_some_and(|p| p >= k) {
                return Err(bad(self.file, id, format!("keys out of order at slot {i}")));
            }
            if lo.is_some_and(|l| k < l) || hi.is_some_and(|h| k >= h) {
                return Err(bad(
                    self.file,
                    id,
                    format!("key at slot {i} outside its parent's range"),
                ));
            }
            prev = Some(k);
        }
        // The common prefix and the slot hints (checked as the page was
        // read too, but reported here with the file's name).
        node.validate_hints().map_err(|e| super::locate(e, self.file.path()))?;
        match page_type(&page) {
            Some(PageType::Leaf) => {
                self.report.leaf_pages += 1;
                self.report.keys += n as u64;
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(d) if d != depth => {
                        return Err(bad(
                            self.file,
                            id,
                            format!("leaf at depth {depth}, others at {d}"),
                        ));
                    }
                    _ => {}
                }
                for i in 0..n {
                    if let LeafValue::Overflow { first, len } = node.leaf_cell(i)?.value {
                        self.overflow(first, len)?;
                    }
                }
            }
            Some(PageType::Internal) => {
                self.report.internal_pages += 1;
                if n == 0 && !root {
                    return Err(bad(self.file, id, "internal node with one child".into()));
                }
                for c in 0..=n {
                    let clo = if c == 0 { lo } else { Some(node.key(c - 1)?) };
                    let chi = if c == n { hi } else { Some(node.key(c)?) };
                    self.node(node.child(c)?, clo, chi, depth + 1, false)?;
                }
            }
            _ => return Err(bad(self.file, id, "expected a tree node".into())),
        }
        Ok(())
    }

    fn overflow(&mut self, first: PageId, len: u64) -> Result<()> {
        let mut id = first;
        let mut left = len;
        while left > 0 {
            if id == 0 {
                return Err(bad(self.file, first, "overflow chain ends early".into()));
            }
            self.claim(id)?;
            let p = self.file.read(id)?;
            if page_type(&p) != Some(PageType::Overflow) {
                return Err(bad(self.file, id, "expected an overflow page".into()));
            }
            let n = get_u32(&p[..], 40) as u64;
            if n != left.min(OVERFLOW_DATA as u64) {
                return Err(bad(self.file, id, "overflow page length mismatch".into()));
            }
            left -= n;
            self.report.overflow_pages += 1;
            id = get_u64(&p[..], 32);
        }
        if id != 0 {
            return Err(bad(self.file, id, "overflow chain longer than its value".into()));
        }
        Ok(())
    }
}
