//! Page formats of the data file. Every integer is little-endian.
//!
//! Every page but the two meta pages starts with the same 32-byte header:
//!
//! ```text
//! offset size field
//!  0      4   magic  b"QBPG"
//!  4      2   format version (PAGE_FORMAT_VERSION)
//!  6      1   page type: 1 leaf, 2 internal, 3 overflow, 4 free-list
//!  7      1   reserved (0)
//!  8      8   page id (its own number: catches misdirected writes)
//! 16      8   LSN of the commit that wrote it
//! 24      4   CRC32C of the whole page, computed with these 4 bytes zeroed
//! 28      4   reserved (0)
//! ```
//!
//! Node pages (leaf and internal) are slotted:
//!
//! ```text
//! 32  2  slot count n
//! 34  2  cell start: offset of the lowest cell byte (cells fill [start, 8192))
//! 36  2  fragmented bytes (dead cells inside the cell area)
//! 38  2  common prefix length p (see below)
//! 40  8  leftmost child (internal pages; 0 in leaves)
//! 48  6n slot array, in key order: cell offset u16 | hint: the 4 key bytes
//!        after the common prefix, key[p..p+4] (zero-padded)
//! ...    free space
//! start  cells, packed from the end of the page downwards
//!
//! leaf cell:     key_len u16 | value_len u16 | key | value
//!                (value_len bit 15: the value is on overflow pages; the
//!                 value field, 12 bytes, is then the first overflow page
//!                 id u64 and the whole value's length u32. An inline
//!                 value is at most MAX_INLINE_CELL bytes, far below 2^15)
//! internal cell: key_len u16 | child u64 | key
//!                (child holds the keys >= key and < the next cell's key)
//! ```
//!
//! ## Common prefix and slot hints
//!
//! Every key of a node is at least `p` bytes long and starts with the same
//! `p` bytes (those of key 0). The MVCC layer gives every version of a row
//! the same long start (tag, escaped table id, escaped high rowid bytes,
//! see `qube_txn::keys`), so hints taken at offset 0 would be equal in
//! almost every slot. A search therefore compares the search key's first
//! `p` bytes with key 0's once (less: position 0; greater: position n), and
//! then binary-searches on the hints at offset `p`; only a probe whose hint
//! equals the search key's reads its cell, and compares from `p` on.
//! Zero-padding keeps the hints' order the keys' order, so unequal hints
//! decide.
//!
//! `p` need not be the longest common prefix, only a common one. Since keys
//! are sorted, the longest is the common prefix of the first and last keys.
//! The writer keeps the invariant as follows:
//!
//! * a rebuilt node (split, merge, redistribution: `write::fill`) gets the
//!   longest, set before its cells are appended;
//! * an insert whose key does not start with key 0's first `p` bytes (only
//!   possible at either end) shortens `p` to their common length and
//!   rewrites every hint (rare: a node's key range only widens that way);
//! * a delete keeps `p` (still common to the keys that are left);
//! * an empty node's `p` means nothing: readers ignore it, and the first
//!   insert sets it to that key's length (fresh pages and emptied nodes
//!   hold `u16::MAX`).
//!
//! A node read from disk is checked (`validate_layout`): `p` no longer than
//! key 0, every key starting with key 0's first `p` bytes, every hint equal
//! to its key's; a page that fails is a corruption error, never misread.
//!
//! Overflow pages: `32 next u64 | 40 length u32 | 44 reserved | 48 data`.
//! Free-list pages: `32 next u64 | 40 count u32 | 44 reserved | 48 ids u64 ×count`.
//!
//! Accessors never trust the bytes: offsets and lengths read from a page are
//! checked against the page bounds, and a bad one is a corruption error.

use qube_common::{Error, Result};

pub const PAGE_SIZE: usize = 8192;
pub const PAGE_MAGIC: [u8; 4] = *b"QBPG";
/// Version 4: the layout above. Version 3 (never released) had a 7-byte
/// leaf cell header (key_len u16, flags u8, value_len u32); version 2
/// took the slot hints at offset 0 and kept bytes 38..40 reserved; version
/// 1 had 2-byte slots without hints. All are refused, not read (as is a
/// file whose meta page says file format 1, 2 or 3).
pub const PAGE_FORMAT_VERSION: u16 = 4;
pub const NODE_HEADER_LEN: usize = 48;
/// Where a node keeps the length of its keys' common prefix (u16).
const PREFIX_LEN_AT: usize = 38;
/// The common prefix length of a node that holds no keys yet.
const NO_KEYS: u16 = u16::MAX;
/// A slot: cell offset (u16) and the key's hint, 4 bytes after the node's
/// common prefix, zero-padded.
pub const SLOT_SIZE: usize = 6;
/// Bytes available to slots and cells in a node page.
pub const NODE_USABLE: usize = PAGE_SIZE - NODE_HEADER_LEN;
pub const LEAF_CELL_HEADER: usize = 4;
/// A leaf cell's value_len bit that says the value is on overflow pages.
const OVERFLOW_BIT: u16 = 0x8000;
/// The value field of an overflow cell: first page id u64, length u32.
const OVERFLOW_FIELD: usize = 12;
pub const INTERNAL_CELL_HEADER: usize = 10;
/// A leaf cell is stored inline when it is at most this large; otherwise its
/// value moves to overflow pages. Three such cells (plus slots) fit a page,
/// so a split always leaves both halves valid.
pub const MAX_INLINE_CELL: usize = 2600;
pub const OVERFLOW_DATA: usize = PAGE_SIZE - 48;
pub const FREELIST_IDS: usize = (PAGE_SIZE - 48) / 8;

pub type PageId = u64;
pub type Page = [u8; PAGE_SIZE];

/// Hashes page ids, small dense integers: one multiply spreads them well
/// enough, and SipHash would cost more than the rest of recording a page a
/// batch copied (`IdMap`).
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

/// A map keyed by page id (`IdHasher`).
pub type IdMap<V> = std::collections::HashMap<PageId, V, std::hash::BuildHasherDefault<IdHasher>>;
/// A set of page ids (`IdHasher`).
pub type IdSet = std::collections::HashSet<PageId, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    Leaf = 1,
    Internal = 2,
    Overflow = 3,
    FreeList = 4,
}

impl PageType {
    fn from_u8(b: u8) -> Option<PageType> {
        match b {
            1 => Some(PageType::Leaf),
            2 => Some(PageType::Internal),
            3 => Some(PageType::Overflow),
            4 => Some(PageType::FreeList),
            _ => None,
        }
    }
}

// Always inlined: a page is a fixed-size array, so once inlined the
// bounds checks of constant offsets go, and each seek reads a dozen
// header fields (`get_u32` of a leaf cell's value length was a call).
#[inline(always)]
pub fn get_u16(p: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([p[at], p[at + 1]])
}
#[inline(always)]
pub fn get_u32(p: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}
#[inline(always)]
pub fn get_u64(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_le_bytes(b)
}
#[inline]
pub fn put_u16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u32(p: &mut [u8], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u64(p: &mut [u8], at: usize, v: u64) {
    p[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Writes a fresh header for a page of `ty` and clears the rest.
pub fn init_page(p: &mut Page, id: PageId, ty: PageType) {
    p.fill(0);
    init_zeroed_page(p, id, ty);
}

/// `init_page` of a page that is all zeroes already (a new allocation):
/// the header only, not a second pass over 8 KiB.
pub fn init_zeroed_page(p: &mut Page, id: PageId, ty: PageType) {
    p[0..4].copy_from_slice(&PAGE_MAGIC);
    put_u16(p, 4, PAGE_FORMAT_VERSION);
    p[6] = ty as u8;
    put_u64(p, 8, id);
    if matches!(ty, PageType::Leaf | PageType::Internal) {
        put_u16(p, 34, PAGE_SIZE as u16);
        put_u16(p, PREFIX_LEN_AT, NO_KEYS);
    }
}

pub fn page_type(p: &Page) -> Option<PageType> {
    PageType::from_u8(p[6])
}

pub fn page_id(p: &Page) -> PageId {
    get_u64(p, 8)
}

pub fn set_page_id(p: &mut Page, id: PageId) {
    put_u64(p, 8, id);
}

pub fn set_lsn(p: &mut Page, lsn: u64) {
    put_u64(p, 16, lsn);
}

fn checksum(p: &Page) -> u32 {
    let c = crc32c::crc32c(&p[..24]);
    let c = crc32c::crc32c_append(c, &[0u8; 4]);
    crc32c::crc32c_append(c, &p[28..])
}

/// Stores the checksum; call just before the page goes to disk.
pub fn seal(p: &mut Page) {
    let c = checksum(p);
    put_u32(p, 24, c);
}

/// Checks a page read from disk: magic, version, checksum, its own id, type.
/// `file` names the file for the error message.
pub fn check_page(p: &Page, id: PageId, file: &std::path::Path) -> Result<()> {
    if p[0..4] != PAGE_MAGIC {
        if p.iter().all(|&b| b == 0) {
            return Err(Error::corrupt_page(file, id, "page is all zeroes (never written)"));
        }
        return Err(Error::corrupt_page(file, id, "bad page magic"));
    }
    let version = get_u16(p, 4);
    if version != PAGE_FORMAT_VERSION {
        return Err(Error::corrupt_page(
            file,
            id,
            format!(
                "unknown page format version {version} (this build reads {PAGE_FORMAT_VERSION})"
            ),
        ));
    }
    let stored = get_u32(p, 24);
    if stored != checksum(p) {
        return Err(Error::corrupt_page(file, id, "checksum mismatch"));
    }
    if page_id(p) != id {
        return Err(Error::corrupt_page(
            file,
            id,
            format!("page claims to be page {} (misdirected write)", page_id(p)),
        ));
    }
    if page_type(p).is_none() {
        return Err(Error::corrupt_page(file, id, format!("unknown page type {}", p[6])));
    }
    // A node's cells must tile its cell area: checked once here, as the page
    // enters memory, so the writer can copy and edit it without checking
    // again (pages built in memory are valid by construction).
    if matches!(page_type(p), Some(PageType::Leaf | PageType::Internal)) {
        Node::new(p, id)?.validate_layout()?;
    }
    Ok(())
}

/// The common prefix length a node page's header records (`Node::prefix_len`),
/// read without checking the rest of the header.
#[inline(always)]
pub fn page_prefix_len(p: &Page) -> usize {
    get_u16(p, PREFIX_LEN_AT) as usize
}

/// Read-only view of a node page with bounds-checked accessors.
///
/// Construct with [`Node::new`], which validates the header; cell accessors
/// validate each cell they touch, so a damaged page yields an error.
pub struct Node<'a> {
    pub p: &'a Page,
    pub id: PageId,
    n: usize,
    leaf: bool,
}

/// A decoded leaf cell.
pub struct LeafCell<'a> {
    pub key: &'a [u8],
    pub value: LeafValue<'a>,
}

pub enum LeafValue<'a> {
    Inline(&'a [u8]),
    Overflow { first: PageId, len: u64 },
}

impl<'a> Node<'a> {
    #[inline(always)]
    pub fn new(p: &'a Page, id: PageId) -> Result<Node<'a>> {
        let n = get_u16(p, 32) as usize;
        let start = get_u16(p, 34) as usize;
        let start = if start == 0 { PAGE_SIZE } else { start };
        if NODE_HEADER_LEN + SLOT_SIZE * n > start || start > PAGE_SIZE {
            return Err(corrupt(id, "node slot array overlaps its cells"));
        }
        if get_u16(p, 36) as usize > PAGE_SIZE - start {
            return Err(corrupt(id, "fragmented byte count larger than the cell area"));
        }
        Ok(Node { p, id, n, leaf: p[6] == PageType::Leaf as u8 })
    }

    /// A node of `n` cells that `Node::new` has checked on this very page
    /// (pages behind an `Arc` never change): its header is not checked
    /// again. Every accessor still checks the bytes it reads.
    #[inline(always)]
    pub fn checked(p: &'a Page, id: PageId, n: usize) -> Node<'a> {
        Node { p, id, n, leaf: p[6] == PageType::Leaf as u8 }
    }

    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn leftmost(&self) -> PageId {
        get_u64(self.p, 40)
    }

    #[inline(always)]
    fn cell_offset(&self, i: usize) -> Result<usize> {
        if i >= self.n {
            return Err(corrupt(self.id, "slot index out of range"));
        }
        let off = get_u16(self.p, NODE_HEADER_LEN + SLOT_SIZE * i) as usize;
        if off < NODE_HEADER_LEN + SLOT_SIZE * self.n || off >= PAGE_SIZE {
            return Err(corrupt(self.id, "cell offset out of bounds"));
        }
        Ok(off)
    }

    /// The raw bytes of cell `i` (header included).
    #[inline(always)]
    pub fn cell_bytes(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        let len = if self.is_leaf() {
            if off + LEAF_CELL_HEADER > PAGE_SIZE {
                return Err(corrupt(self.id, "leaf cell header out of bounds"));
            }
            let klen = get_u16(self.p, off) as usize;
            let vlen = (get_u16(self.p, off + 2) & !OVERFLOW_BIT) as usize;
            LEAF_CELL_HEADER + klen + vlen
        } else {
            if off + INTERNAL_CELL_HEADER > PAGE_SIZE {
                return Err(corrupt(self.id, "internal cell header out of bounds"));
            }
            INTERNAL_CELL_HEADER + get_u16(self.p, off) as usize
        };
        self.p.get(off..off + len).ok_or_else(|| corrupt(self.id, "cell extends past the page"))
    }

    /// The key of cell `i`: the hot path of every search, so it checks
    /// only the bytes it reads.
    #[inline(always)]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        let h = if self.leaf { LEAF_CELL_HEADER } else { INTERNAL_CELL_HEADER };
        let klen = match self.p.get(off..off + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
            None => return Err(corrupt(self.id, "cell header out of bounds")),
        };
        self.p
            .get(off + h..off + h + klen)
            .ok_or_else(|| corrupt(self.id, "key extends past the page"))
    }

    /// `key(i)` of a leaf, None where that is an error: the same checks,
    /// without building the error (a cursor's look ahead, which may be
    /// told nothing).
    #[inline(always)]
    pub fn leaf_key_hint(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.n {
            return None;
        }
        let at = NODE_HEADER_LEN + SLOT_SIZE * i;
        let off = u16::from_le_bytes([*self.p.get(at)?, *self.p.get(at + 1)?]) as usize;
        if off < NODE_HEADER_LEN + SLOT_SIZE * self.n {
            return None;
        }
        let klen = u16::from_le_bytes([*self.p.get(off)?, *self.p.get(off + 1)?]) as usize;
        self.p.get(off + LEAF_CELL_HEADER..off + LEAF_CELL_HEADER + klen)
    }

    #[inline(always)]
    pub fn leaf_cell(&self, i: usize) -> Result<LeafCell<'a>> {
        let c = self.cell_bytes(i)?;
        let klen = get_u16(c, 0) as usize;
        let key = &c[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen];
        let rest = &c[LEAF_CELL_HEADER + klen..];
        let value = if get_u16(c, 2) & OVERFLOW_BIT != 0 {
            if rest.len() != OVERFLOW_FIELD {
                return Err(corrupt(self.id, "overflow cell with a bad value field"));
            }
            LeafValue::Overflow { first: get_u64(rest, 0), len: get_u32(rest, 8) as u64 }
        } else {
            LeafValue::Inline(rest)
        };
        Ok(LeafCell { key, value })
    }

    /// Length of the prefix every key of the node shares (meaningless in
    /// an empty node). Not checked here: `search` and `validate_layout` do.
    pub fn prefix_len(&self) -> usize {
        get_u16(self.p, PREFIX_LEN_AT) as usize
    }

    /// The hint stored in slot `i`: `key_hint(key, prefix_len())`.
    pub fn slot_hint(&self, i: usize) -> [u8; 4] {
        let at = NODE_HEADER_LEN + SLOT_SIZE * i;
        [self.p[at + 2], self.p[at + 3], self.p[at + 4], self.p[at + 5]]
    }

    /// Child `i` of an internal node: 0 is the leftmost, i ≥ 1 is cell i-1's.
    #[inline(always)]
    pub fn child(&self, i: usize) -> Result<PageId> {
        if i == 0 {
            return Ok(self.leftmost());
        }
        // Only the pointer is read (every descent reads one per level):
        // `cell_offset` checks the slot, `get` the pointer's bytes.
        let off = self.cell_offset(i - 1)?;
        match self.p.get(off + 2..off + INTERNAL_CELL_HEADER) {
            Some(b) => Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            None => Err(corrupt(self.id, "internal cell header out of bounds")),
        }
    }

    /// Binary search: Ok(i) if key i equals `key`, Err(i) for the insertion point.
    ///
    /// The search key is compared with the node's common prefix once; the
    /// probes then compare hints, and read a cell (from the prefix on)
    /// only when its hint equals the search key's (see the module docs).
    pub fn search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        self.search_known(key, false)
    }

    /// `search`, told whether `key` is known to start with the node's
    /// common prefix (`prefix_known`): true only when the node's bounding
    /// separators in its ancestors (`low ≤ every key < high`, and
    /// `low ≤ key < high`) agree on their first `prefix_len()` bytes, so
    /// that every string between them does too. The comparison with the
    /// common prefix, which reads cell 0 (a cache line of its own), is then
    /// left out.
    pub fn search_known(
        &self,
        key: &[u8],
        prefix_known: bool,
    ) -> Result<std::result::Result<usize, usize>> {
        let n = self.n;
        if n == 0 {
            return Ok(Err(0));
        }
        let h = if self.leaf { LEAF_CELL_HEADER } else { INTERNAL_CELL_HEADER };
        let cells_from = NODE_HEADER_LEN + SLOT_SIZE * n;
        // A binary search's probes depend on each other, so their cache
        // misses would come one after another. Loading one byte of every
        // cache line of a small slot array first lets the CPU fetch those
        // lines in parallel.
        if cells_from <= NODE_HEADER_LEN + 8 * 64 {
            let mut touch = 0u8;
            for at in (NODE_HEADER_LEN..cells_from).step_by(64) {
                touch ^= self.p[at];
            }
            std::hint::black_box(touch);
        }
        let plen = self.prefix_len();
        if plen > 0 && (!prefix_known || key.len() < plen) {
            let Some(common) = self.key(0)?.get(..plen) else {
                return Err(corrupt(self.id, "common prefix longer than the first key"));
            };
            let m = plen.min(key.len());
            match cmp_bytes(&key[..m], &common[..m]) {
                std::cmp::Ordering::Less => return Ok(Err(0)),
                std::cmp::Ordering::Greater => return Ok(Err(n)),
                // A proper prefix of the common prefix sorts before every key.
                std::cmp::Ordering::Equal if key.len() < plen => return Ok(Err(0)),
                std::cmp::Ordering::Equal => {}
            }
        }
        let rest = &key[plen..];
        // Hints compare as big-endian integers: the same order as the bytes.
        let want = u32::from_be_bytes(key_prefix(rest));
        // Where equal hints leave the comparison: they cover 4 bytes only
        // if neither side was padded.
        let skip = if rest.len() >= 4 { 4 } else { 0 };
        // The slot array as 6-byte slots: one bounds check here rather than
        // one per byte per probe (`Node::new` checked it ends before `start`).
        let Some(slots) = self.p.get(NODE_HEADER_LEN..cells_from) else {
            return Err(corrupt(self.id, "slot array out of bounds"));
        };
        let slots = slots.as_chunks::<SLOT_SIZE>().0;
        let (mut lo, mut hi) = (0usize, slots.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let slot = &slots[mid];
            // The hints decide unless they are equal (padding keeps their
            // order the keys' order); only then is the cell read.
            let have = u32::from_be_bytes([slot[2], slot[3], slot[4], slot[5]]);
            if have < want {
                lo = mid + 1;
                continue;
            }
            if have > want {
                hi = mid;
                continue;
            }
            let off = u16::from_le_bytes([slot[0], slot[1]]) as usize;
            let probe = if off >= cells_from && off + 2 <= PAGE_SIZE {
                let klen = u16::from_le_bytes([self.p[off], self.p[off + 1]]) as usize;
                self.p.get(off + h + plen..off + h + klen)
            } else {
                None
            };
            let Some(probe) = probe else {
                return Err(corrupt(self.id, "cell out of bounds"));
            };
            let ord = if skip == 4 && probe.len() >= 4 {
                cmp_bytes(&probe[4..], &rest[4..])
            } else {
                cmp_bytes(probe, rest)
            };
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Index of the child of an internal node that covers `key`.
    pub fn child_index(&self, key: &[u8]) -> Result<usize> {
        self.child_index_known(key, false)
    }

    /// `child_index` through `search_known`.
    pub fn child_index_known(&self, key: &[u8], prefix_known: bool) -> Result<usize> {
        Ok(match self.search_known(key, prefix_known)? {
            Ok(i) => i + 1,
            Err(i) => i,
        })
    }

    /// Checks that the cells account exactly for the cell area: every cell
    /// inside it, no two slots sharing bytes (their lengths would then add
    /// up to more). The writer calls this before it changes a page read
    /// from disk, so that in-place edits can trust the header.
    pub fn validate_layout(&self) -> Result<()> {
        let start = get_u16(self.p, 34) as usize;
        let frag = get_u16(self.p, 36) as usize;
        let mut total = 0usize;
        for i in 0..self.n {
            let off = self.cell_offset(i)?;
            if off < start {
                return Err(corrupt(self.id, "cell below the cell area"));
            }
            total += self.cell_bytes(i)?.len();
        }
        if total + frag != PAGE_SIZE - start {
            return Err(corrupt(self.id, "cell sizes do not add up to the cell area"));
        }
        self.validate_hints()
    }

    /// Checks the common prefix and the slot hints (module docs): a wrong
    /// one would make `search` miss keys silently.
    pub fn validate_hints(&self) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let plen = self.prefix_len();
        let Some(common) = self.key(0)?.get(..plen) else {
            return Err(corrupt(self.id, "common prefix longer than the first key"));
        };
        for i in 0..self.n {
            let k = self.key(i)?;
            if !k.starts_with(common) {
                return Err(corrupt(self.id, "key does not start with the node's common prefix"));
            }
            if self.slot_hint(i) != key_hint(k, plen) {
                return Err(corrupt(self.id, "slot holds the wrong key hint"));
            }
        }
        Ok(())
    }

    /// Bytes used by slots and live cells.
    pub fn used(&self) -> usize {
        let n = self.len();
        let start = get_u16(self.p, 34) as usize;
        let start = if start == 0 { PAGE_SIZE } else { start };
        let frag = get_u16(self.p, 36) as usize;
        SLOT_SIZE * n + (PAGE_SIZE - start).saturating_sub(frag)
    }
}

/// (Cold and never inlined: the node accessors below are inlined into every
/// descent, and their error paths should not be.)
#[cold]
#[inline(never)]
fn corrupt(id: PageId, detail: &str) -> Error {
    // The file name is added by the caller that knows it; pages are only
    // ever read from the data file, so name it here.
    Error::corrupt_page(super::DATA_FILE, id, detail)
}

/// Mutating operations on a node page the writer owns. These assume the
/// page passed [`Node::new`] (the writer only mutates pages it read through
/// checked paths or built itself).
pub struct NodeMut<'a> {
    pub p: &'a mut Page,
}

impl NodeMut<'_> {
    fn len(&self) -> usize {
        get_u16(self.p, 32) as usize
    }

    fn start(&self) -> usize {
        let s = get_u16(self.p, 34) as usize;
        if s == 0 { PAGE_SIZE } else { s }
    }

    /// Contiguous free bytes between the slot array and the cells.
    fn gap(&self) -> usize {
        self.start() - (NODE_HEADER_LEN + SLOT_SIZE * self.len())
    }

    /// Bytes a new cell of `cell_len` would need (cell plus its slot).
    pub fn fits(&self, cell_len: usize) -> bool {
        let frag = get_u16(self.p, 36) as usize;
        self.gap() + frag >= cell_len + SLOT_SIZE
    }

    pub fn set_leftmost(&mut self, id: PageId) {
        put_u64(self.p, 40, id);
    }

    fn is_leaf(&self) -> bool {
        self.p[6] == PageType::Leaf as u8
    }

    fn prefix_len(&self) -> usize {
        get_u16(self.p, PREFIX_LEN_AT) as usize
    }

    /// A read-only view of the page (trusted, see the type's docs).
    fn view(&self) -> Node<'_> {
        Node { p: self.p, id: page_id(self.p), n: self.len(), leaf: self.is_leaf() }
    }

    /// Sets the common prefix length to `plen` and rewrites every slot's
    /// hint. The caller guarantees every key is at least `plen` long and
    /// starts with the same `plen` bytes (or the node is empty).
    pub fn set_prefix_len(&mut self, plen: usize) {
        put_u16(self.p, PREFIX_LEN_AT, plen.min(NO_KEYS as usize) as u16);
        for i in 0..self.len() {
            let hint = self.view().key(i).map(|k| key_hint(k, plen)).unwrap_or_default();
            let at = NODE_HEADER_LEN + SLOT_SIZE * i;
            self.p[at + 2..at + SLOT_SIZE].copy_from_slice(&hint);
        }
    }

    /// Keeps the common prefix common to `key`, which is about to be
    /// added: the first key sets it, a key that does not share it all
    /// shortens it (and so rewrites the hints).
    fn admit(&mut self, key: &[u8]) {
        let plen = self.prefix_len();
        if self.len() == 0 {
            put_u16(self.p, PREFIX_LEN_AT, plen.min(key.len()) as u16);
            return;
        }
        let view = self.view();
        let first = view.key(0).unwrap_or_default();
        let common = first.get(..plen).unwrap_or(first);
        if key.starts_with(common) {
            return;
        }
        let shorter = common_len(key, common);
        self.set_prefix_len(shorter);
    }

    /// Inserts a cell at slot `i`. The caller checked `fits`.
    pub fn insert(&mut self, i: usize, cell: &[u8], scratch: &mut Vec<u8>) {
        self.admit(cell_key(cell, self.is_leaf()));
        self.insert_admitted(i, cell, scratch);
    }

    /// As `insert`, for a cell whose key the caller found to start with
    /// the node's common prefix (in a node with keys): the prefix and the
    /// hints stay as they are. A load appending past a leaf's last key
    /// checks that against the last key it compared with anyway.
    pub fn insert_sharing_prefix(&mut self, i: usize, cell: &[u8], scratch: &mut Vec<u8>) {
        debug_assert!(
            self.len() > 0 && {
                let plen = self.prefix_len();
                let first = self.view().key(0).unwrap_or_default();
                cell_key(cell, self.is_leaf()).get(..plen) == first.get(..plen)
            }
        );
        self.insert_admitted(i, cell, scratch);
    }

    fn insert_admitted(&mut self, i: usize, cell: &[u8], scratch: &mut Vec<u8>) {
        if self.gap() < cell.len() + SLOT_SIZE {
            self.compact(scratch);
        }
        let n = self.len();
        let start = self.start() - cell.len();
        self.p[start..start + cell.len()].copy_from_slice(cell);
        let slots = NODE_HEADER_LEN + SLOT_SIZE * i;
        self.p.copy_within(slots..NODE_HEADER_LEN + SLOT_SIZE * n, slots + SLOT_SIZE);
        self.write_slot(i, start, cell);
        put_u16(self.p, 32, (n + 1) as u16);
        put_u16(self.p, 34, start as u16);
    }

    /// Appends an inline leaf cell for `key` and `value` after the last
    /// slot, written straight into the page (no cell built first), if it
    /// fits in the free gap and leaves the node's used bytes (slots and
    /// live cells) at most `fill`; false, and nothing written, otherwise.
    /// The caller guarantees that the node is a leaf with keys, that `key`
    /// sorts after its last key and starts with its common prefix, and
    /// that the cell is at most `MAX_INLINE_CELL` bytes.
    #[inline]
    pub fn append_leaf(&mut self, key: &[u8], value: &[u8], fill: usize) -> bool {
        let cell_len = LEAF_CELL_HEADER + key.len() + value.len();
        if self.gap() < cell_len + SLOT_SIZE || self.view().used() + SLOT_SIZE + cell_len > fill {
            return false;
        }
        let (n, start) = (self.len(), self.start());
        let at = start - cell_len;
        let (head, rest) = self.p[at..start].split_at_mut(LEAF_CELL_HEADER);
        head[..2].copy_from_slice(&(key.len() as u16).to_le_bytes());
        head[2..].copy_from_slice(&(value.len() as u16).to_le_bytes());
        let (k, v) = rest.split_at_mut(key.len());
        k.copy_from_slice(key);
        v.copy_from_slice(value);
        self.write_slot_of(n, at, key);
        put_u16(self.p, 32, (n + 1) as u16);
        put_u16(self.p, 34, at as u16);
        true
    }

    /// Removes slot `i`; its cell bytes become fragmentation.
    pub fn remove(&mut self, i: usize, cell_len: usize) {
        let n = self.len();
        let slots = NODE_HEADER_LEN + SLOT_SIZE * i;
        self.p.copy_within(slots + SLOT_SIZE..NODE_HEADER_LEN + SLOT_SIZE * n, slots);
        put_u16(self.p, 32, (n - 1) as u16);
        let frag = get_u16(self.p, 36) as usize + cell_len;
        put_u16(self.p, 36, frag as u16);
        if n == 1 {
            put_u16(self.p, 34, PAGE_SIZE as u16);
            put_u16(self.p, 36, 0);
            put_u16(self.p, PREFIX_LEN_AT, NO_KEYS);
        }
    }

    /// Rewrites the cells contiguously at the end of the page.
    pub fn compact(&mut self, scratch: &mut Vec<u8>) {
        let n = self.len();
        scratch.clear();
        scratch.extend_from_slice(&self.p[..]);
        let view = Node { p: as_page(scratch), id: 0, n, leaf: self.p[6] == PageType::Leaf as u8 };
        let mut start = PAGE_SIZE;
        for i in 0..n {
            // The page is owned and was checked when read: cells are valid.
            let Ok(cell) = view.cell_bytes(i) else { continue };
            start -= cell.len();
            self.p[start..start + cell.len()].copy_from_slice(cell);
            put_u16(self.p, NODE_HEADER_LEN + SLOT_SIZE * i, start as u16);
        }
        put_u16(self.p, 34, start as u16);
        put_u16(self.p, 36, 0);
    }

    /// Writes slot `i`: the cell's offset and its key's hint.
    fn write_slot(&mut self, i: usize, offset: usize, cell: &[u8]) {
        self.write_slot_of(i, offset, cell_key(cell, self.is_leaf()));
    }

    /// `write_slot` for a cell whose key is `key`.
    fn write_slot_of(&mut self, i: usize, offset: usize, key: &[u8]) {
        let at = NODE_HEADER_LEN + SLOT_SIZE * i;
        put_u16(self.p, at, offset as u16);
        let hint = key_hint(key, self.prefix_len());
        self.p[at + 2..at + SLOT_SIZE].copy_from_slice(&hint);
    }

    /// Replaces the child pointer `i` (0 = leftmost) of an internal node.
    pub fn set_child(&mut self, i: usize, id: PageId) {
        if i == 0 {
            self.set_leftmost(id);
        } else {
            let off = get_u16(self.p, NODE_HEADER_LEN + SLOT_SIZE * (i - 1)) as usize;
            put_u64(self.p, off + 2, id);
        }
    }

    /// Empties the node, keeping its header (type, id, leftmost).
    pub fn clear(&mut self) {
        put_u16(self.p, 32, 0);
        put_u16(self.p, 34, PAGE_SIZE as u16);
        put_u16(self.p, 36, 0);
        put_u16(self.p, PREFIX_LEN_AT, NO_KEYS);
    }

    /// Appends a cell after the last slot (used when rebuilding a node:
    /// set the common prefix first with `set_prefix_len`, so that no push
    /// has to shorten it).
    pub fn push(&mut self, cell: &[u8]) {
        self.admit(cell_key(cell, self.is_leaf()));
        let n = self.len();
        let start = self.start() - cell.len();
        self.p[start..start + cell.len()].copy_from_slice(cell);
        self.write_slot(n, start, cell);
        put_u16(self.p, 32, (n + 1) as u16);
        put_u16(self.p, 34, start as u16);
    }
}

fn as_page(v: &[u8]) -> &Page {
    // `scratch` always holds exactly one page here.
    v.try_into().unwrap_or(&[0u8; PAGE_SIZE])
}

/// The first 4 bytes of a key, zero-padded.
#[inline]
fn key_prefix(key: &[u8]) -> [u8; 4] {
    let mut p = [0u8; 4];
    let n = key.len().min(4);
    p[..n].copy_from_slice(&key[..n]);
    p
}

/// The hint of `key` in a node whose common prefix is `plen` bytes long:
/// the 4 bytes after the prefix, zero-padded.
#[inline]
pub fn key_hint(key: &[u8], plen: usize) -> [u8; 4] {
    key_prefix(key.get(plen..).unwrap_or_default())
}

/// Length of the longest common prefix of `a` and `b`.
pub fn common_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The order of `a` and `b` and the length of their common prefix, in one
/// pass eight bytes at a time, inline: for short keys a `memcmp` call and
/// its length tie-break cost more than the compare (line 2 of `bench sql`
/// made seven per row; a sequential load's neighbouring keys share most of
/// their bytes).
#[inline]
fn order_and_common(a: &[u8], b: &[u8]) -> (std::cmp::Ordering, usize) {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(x), Some(y)) = (a[i..n].first_chunk::<8>(), b[i..n].first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return (x.cmp(&y), i + (x ^ y).leading_zeros() as usize / 8);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return (a[i].cmp(&b[i]), i);
        }
        i += 1;
    }
    (a.len().cmp(&b.len()), n)
}

/// `a.cmp(b)`: inline for the short keys of seeks (a table's row key is
/// some 16 bytes, see `order_and_common`), `memcmp` past 32 bytes.
#[inline]
pub fn cmp_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len().min(b.len()) > 32 {
        return a.cmp(b);
    }
    order_and_common(a, b).0
}

/// Whether `b` sorts after `a`, and the length of their common prefix.
#[inline]
pub fn follows(a: &[u8], b: &[u8]) -> (bool, usize) {
    let (o, common) = order_and_common(a, b);
    (o.is_lt(), common)
}

/// The key of a cell built by `leaf_cell`, `leaf_overflow_cell` or
/// `internal_cell` (empty if the cell is too short to hold it).
fn cell_key(cell: &[u8], leaf: bool) -> &[u8] {
    let h = if leaf { LEAF_CELL_HEADER } else { INTERNAL_CELL_HEADER };
    let klen = cell.get(..2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    cell.get(h..h + klen).unwrap_or_default()
}

/// Builds a leaf cell into `out`.
pub fn leaf_cell(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    debug_assert!(value.len() < OVERFLOW_BIT as usize, "inline values are short");
    out.clear();
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Builds a leaf cell whose value lives on overflow pages.
pub fn leaf_overflow_cell(out: &mut Vec<u8>, key: &[u8], first: PageId, len: u64) {
    out.clear();
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(OVERFLOW_BIT | OVERFLOW_FIELD as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// Builds an internal cell.
pub fn internal_cell(out: &mut Vec<u8>, key: &[u8], child: PageId) {
    out.clear();
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&child.to_le_bytes());
    out.extend_from_slice(key);
}

/// The data file's meta page (pages 0 and 1 hold two copies; the valid one
/// with the higher sequence number is current):
///
/// ```text
///  0  8  magic b"QUBEDB\x00\x01"
///  8  4  format version (FILE_FORMAT_VERSION)
/// 12  4  page size (8192)
/// 16  8  checkpoint sequence number
/// 24  8  root page (0: empty tree)
/// 32  8  first free-list page (0: none)
/// 40  8  page count (the file's length in pages)
/// 48  8  checkpoint LSN: the tree holds every WAL record up to it
/// 56  8  key count
/// 64  8  free page count
/// 72  4  CRC32C of bytes 0..72
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub seq: u64,
    pub root: PageId,
    pub freelist: PageId,
    pub page_count: u64,
    pub checkpoint_lsn: u64,
    pub keys: u64,
    pub free_pages: u64,
}

pub const META_MAGIC: [u8; 8] = *b"QUBEDB\x00\x01";
/// Version 4: the layouts in this file, with node slot hints taken after
/// the node's common prefix and 4-byte leaf cell headers. Versions 1
/// (2-byte slots), 2 (hints at offset 0) and 3 (7-byte leaf cell headers)
/// were development formats and are refused with a clear error.
pub const FILE_FORMAT_VERSION: u32 = 4;

/// What reading one meta slot found.
pub enum MetaRead {
    Valid(Meta),
    /// Magic matches but the checksum or a field does not.
    Damaged(String),
    /// Not a QubeDB meta page at all.
    Foreign,
    /// Written by a newer QubeDB.
    Newer(u32),
    /// Written in an older format this build cannot read.
    Older(u32),
}

impl Meta {
    pub fn encode(&self, p: &mut Page) {
        p.fill(0);
        p[0..8].copy_from_slice(&META_MAGIC);
        put_u32(p, 8, FILE_FORMAT_VERSION);
        put_u32(p, 12, PAGE_SIZE as u32);
        put_u64(p, 16, self.seq);
        put_u64(p, 24, self.root);
        put_u64(p, 32, self.freelist);
        put_u64(p, 40, self.page_count);
        put_u64(p, 48, self.checkpoint_lsn);
        put_u64(p, 56, self.keys);
        put_u64(p, 64, self.free_pages);
        let c = crc32c::crc32c(&p[..72]);
        put_u32(p, 72, c);
    }

    pub fn decode(p: &Page) -> MetaRead {
        if p[0..8] != META_MAGIC {
            return MetaRead::Foreign;
        }
        let version = get_u32(p, 8);
        if crc32c::crc32c(&p[..72]) != get_u32(p, 72) {
            return MetaRead::Damaged("meta checksum mismatch".into());
        }
        if version > FILE_FORMAT_VERSION {
            return MetaRead::Newer(version);
        }
        if version == 0 {
            return MetaRead::Damaged("meta format version 0".into());
        }
        if version < FILE_FORMAT_VERSION {
            return MetaRead::Older(version);
        }
        if get_u32(p, 12) as usize != PAGE_SIZE {
            return MetaRead::Damaged(format!("page size {} is not {PAGE_SIZE}", get_u32(p, 12)));
        }
        let m = Meta {
            seq: get_u64(p, 16),
            root: get_u64(p, 24),
            freelist: get_u64(p, 32),
            page_count: get_u64(p, 40),
            checkpoint_lsn: get_u64(p, 48),
            keys: get_u64(p, 56),
            free_pages: get_u64(p, 64),
        };
        if m.page_count < 2 || m.root >= m.page_count || m.freelist >= m.page_count {
            return MetaRead::Damaged("meta page numbers out of range".into());
        }
        MetaRead::Valid(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(id: PageId) -> Box<Page> {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        init_page(&mut p, id, PageType::Leaf);
        p
    }

    proptest::proptest! {
        /// `follows` and `cmp_bytes` answer as the slice order and
        /// `common_len` do, for keys that share long prefixes and end at
        /// every length (past 32 bytes too, where `cmp_bytes` hands over).
        #[test]
        fn follows_is_the_order_and_the_common_prefix(
            a in proptest::collection::vec(0u8..3, 0..40),
            b in proptest::collection::vec(0u8..3, 0..40),
        ) {
            proptest::prop_assert_eq!(follows(&a, &b), (b > a, common_len(&a, &b)));
            proptest::prop_assert_eq!(follows(&a, &a), (false, a.len()));
            proptest::prop_assert_eq!(cmp_bytes(&a, &b), a.cmp(&b));
            proptest::prop_assert_eq!(cmp_bytes(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    /// A cell appended with `append_leaf` reads back as one `push` wrote
    /// (slot, hint, header); a cell that does not fit or passes the fill
    /// limit is refused and leaves the page as it was.
    #[test]
    fn append_leaf_writes_what_push_does_and_refuses_what_does_not_fit() {
        let (mut a, mut b) = (leaf(7), leaf(7));
        let mut cell = Vec::new();
        leaf_cell(&mut cell, b"key-000", b"v");
        // Every key starts with "key-": the common prefix (a caller's
        // promise to `append_leaf`).
        for p in [&mut a, &mut b] {
            let mut m = NodeMut { p };
            m.push(&cell);
            m.set_prefix_len(4);
        }
        let mut i = 1u32;
        loop {
            let key = format!("key-{i:03}");
            let value = vec![i as u8; (i % 50) as usize];
            leaf_cell(&mut cell, key.as_bytes(), &value);
            if !(NodeMut { p: &mut a }).fits(cell.len()) {
                break;
            }
            let before = *b;
            if !(NodeMut { p: &mut b }).append_leaf(key.as_bytes(), &value, NODE_USABLE) {
                assert!(before == *b, "a refused append changed the page");
                break;
            }
            NodeMut { p: &mut a }.push(&cell);
            assert!(a == b, "append_leaf of key {i} differs from push");
            i += 1;
        }
        assert!(i > 100, "the page took only {i} cells");
        // A fill limit below the page's use refuses, and writes nothing.
        let before = *b;
        let used = Node::new(&b, 7).unwrap().used();
        assert!(!NodeMut { p: &mut b }.append_leaf(b"key-999", b"", used));
        assert!(before == *b);
        Node::new(&b, 7).unwrap().validate_layout().unwrap();
    }

    #[test]
    fn insert_remove_compact() {
        let mut p = leaf(5);
        let mut cell = Vec::new();
        let mut scratch = Vec::new();
        for (i, k) in [b"b", b"d", b"a", b"c"].iter().enumerate() {
            leaf_cell(&mut cell, *k, &[i as u8; 10]);
            let pos = Node::new(&p, 5).unwrap().search(*k).unwrap().unwrap_err();
            let mut m = NodeMut { p: &mut p };
            assert!(m.fits(cell.len()));
            m.insert(pos, &cell, &mut scratch);
        }
        let n = Node::new(&p, 5).unwrap();
        let keys: Vec<_> = (0..n.len()).map(|i| n.key(i).unwrap().to_vec()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        let len = n.cell_bytes(1).unwrap().len();
        NodeMut { p: &mut p }.remove(1, len);
        NodeMut { p: &mut p }.compact(&mut scratch);
        let n = Node::new(&p, 5).unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(n.key(1).unwrap(), b"c");
        match n.leaf_cell(1).unwrap().value {
            LeafValue::Inline(v) => assert_eq!(v, &[3u8; 10]),
            LeafValue::Overflow { .. } => panic!("inline expected"),
        }
        assert_eq!(n.used(), 3 * SLOT_SIZE + 3 * (LEAF_CELL_HEADER + 1 + 10));
    }

    #[test]
    fn overflow_cells_carry_their_first_page_and_length() {
        let mut p = leaf(6);
        let (mut cell, mut scratch) = (Vec::new(), Vec::new());
        leaf_overflow_cell(&mut cell, b"big", 77, 1 << 20);
        assert_eq!(cell.len(), LEAF_CELL_HEADER + 3 + OVERFLOW_FIELD);
        NodeMut { p: &mut p }.insert(0, &cell, &mut scratch);
        leaf_cell(&mut cell, b"small", &[9; 2000]);
        NodeMut { p: &mut p }.insert(1, &cell, &mut scratch);
        let n = Node::new(&p, 6).unwrap();
        let c = n.leaf_cell(0).unwrap();
        assert_eq!(c.key, b"big");
        assert!(matches!(c.value, LeafValue::Overflow { first: 77, len: 1048576 }));
        assert!(matches!(n.leaf_cell(1).unwrap().value, LeafValue::Inline(v) if v == [9; 2000]));
        // An overflow flag on a value field of another length is corrupt.
        let off = get_u16(&p[..], NODE_HEADER_LEN) as usize;
        put_u16(&mut p[..], off + 2, OVERFLOW_BIT | 8);
        assert!(Node::new(&p, 6).unwrap().leaf_cell(0).is_err());
    }

    #[test]
    fn checksum_detects_flips() {
        let mut p = leaf(9);
        seal(&mut p);
        let path = std::path::Path::new("x");
        check_page(&p, 9, path).unwrap();
        assert!(check_page(&p, 8, path).is_err());
        for at in [0, 7, 30, 100, PAGE_SIZE - 1] {
            let mut q = p.clone();
            q[at] ^= 0x10;
            assert!(check_page(&q, 9, path).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn meta_roundtrip() {
        let m = Meta {
            seq: 3,
            root: 7,
            freelist: 0,
            page_count: 9,
            checkpoint_lsn: 11,
            keys: 4,
            free_pages: 1,
        };
        let mut p = [0u8; PAGE_SIZE];
        m.encode(&mut p);
        assert!(matches!(Meta::decode(&p), MetaRead::Valid(x) if x == m));
        p[20] ^= 1;
        assert!(matches!(Meta::decode(&p), MetaRead::Damaged(_)));
        assert!(matches!(Meta::decode(&[0u8; PAGE_SIZE]), MetaRead::Foreign));
    }

    /// Keys shaped like MVCC version keys: a long shared start, then a
    /// few varying bytes (zeros included), some keys prefixes of others.
    fn versionish(tail: &[u8]) -> Vec<u8> {
        let mut k = vec![0x02, 0x10];
        k.extend_from_slice(&[0x00, 0xFF].repeat(7));
        k.extend_from_slice(&[0x05, 0x80, 0x00, 0xFF, 0x00, 0xFF]);
        k.extend_from_slice(tail);
        k
    }

    /// Inserts `key` where `search` says; true if it was new.
    fn put(p: &mut Page, key: &[u8]) -> bool {
        let mut cell = Vec::new();
        leaf_cell(&mut cell, key, b"v");
        let id = page_id(p);
        match Node::new(p, id).unwrap().search(key).unwrap() {
            Ok(_) => false,
            Err(pos) => {
                NodeMut { p }.insert(pos, &cell, &mut Vec::new());
                true
            }
        }
    }

    /// Every key and every probe between and around them is found where a
    /// sorted list says, and the node passes its checks.
    fn check_against(p: &Page, model: &std::collections::BTreeSet<Vec<u8>>, probes: &[Vec<u8>]) {
        let n = Node::new(p, page_id(p)).unwrap();
        n.validate_layout().unwrap();
        let keys: Vec<&Vec<u8>> = model.iter().collect();
        assert_eq!(n.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(n.key(i).unwrap(), &k[..]);
            assert_eq!(n.search(k).unwrap(), Ok(i));
        }
        // A search told the key has the common prefix (`search_known`)
        // agrees wherever that holds, and for keys shorter than the prefix
        // (which it then compares after all).
        let plen = n.prefix_len();
        let common = keys.first().map(|k| k[..plen.min(k.len())].to_vec()).unwrap_or_default();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(n.search_known(k, true).unwrap(), Ok(i));
        }
        for q in probes {
            let want = keys.binary_search(&q);
            assert_eq!(n.search(q).unwrap(), want, "probe {q:02x?}");
            assert_eq!(n.search_known(q, false).unwrap(), want, "probe {q:02x?}");
            if q.starts_with(&common) || q.len() < plen {
                assert_eq!(n.search_known(q, true).unwrap(), want, "known, probe {q:02x?}");
                let child = n.child_index_known(q, true).unwrap();
                assert_eq!(child, n.child_index(q).unwrap(), "child, probe {q:02x?}");
            }
        }
    }

    fn probes() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x01],
            vec![0x02],
            vec![0x02, 0x10, 0x00],
            vec![0x02, 0x11],
            vec![0x03],
            versionish(&[]),
            versionish(&[0x00]),
            versionish(&[0xFF; 12]),
        ];
        for a in [0u8, 1, 0x7F, 0xFF] {
            for b in [0u8, 2, 0xFF] {
                v.push(versionish(&[a, b]));
                v.push(versionish(&[a, b, 0, 0, 9]));
            }
        }
        v
    }

    #[test]
    fn long_common_prefix_hints_and_search() {
        let mut p = leaf(3);
        let mut model = std::collections::BTreeSet::new();
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..300 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 7) as usize;
            let tail: Vec<u8> =
                (0..len).map(|j| [0u8, 1, 0xFF, 0x42][(rng >> (8 + 2 * j)) as usize % 4]).collect();
            let k = versionish(&tail);
            let cell_len = LEAF_CELL_HEADER + k.len() + 1;
            if !(NodeMut { p: &mut p }).fits(cell_len) {
                break;
            }
            assert_eq!(put(&mut p, &k), model.insert(k));
        }
        assert!(model.len() > 50);
        let n = Node::new(&p, 3).unwrap();
        // Every key starts with the shared part: the hints come after it.
        assert!(n.prefix_len() >= versionish(&[]).len(), "prefix {}", n.prefix_len());
        check_against(&p, &model, &probes());
    }

    #[test]
    fn insert_that_shortens_the_common_prefix_rewrites_the_hints() {
        let mut p = leaf(4);
        let mut model = std::collections::BTreeSet::new();
        // The first key alone: the prefix is all of it.
        let first = versionish(&[7, 7, 7]);
        put(&mut p, &first);
        model.insert(first.clone());
        assert_eq!(Node::new(&p, 4).unwrap().prefix_len(), first.len());
        for t in 0..40u8 {
            let k = versionish(&[7, 7, 7, t]);
            put(&mut p, &k);
            model.insert(k);
        }
        assert_eq!(Node::new(&p, 4).unwrap().prefix_len(), first.len());
        check_against(&p, &model, &probes());
        // Below every key, sharing only 3 bytes: the prefix shrinks at the front.
        let low = vec![0x02, 0x10, 0x00, 0x00];
        put(&mut p, &low);
        model.insert(low);
        assert_eq!(Node::new(&p, 4).unwrap().prefix_len(), 3);
        check_against(&p, &model, &probes());
        // Above every key, sharing nothing: at the end.
        let high = vec![0x03];
        put(&mut p, &high);
        model.insert(high);
        assert_eq!(Node::new(&p, 4).unwrap().prefix_len(), 0);
        check_against(&p, &model, &probes());
        // Deleting keeps a prefix that is still common; emptying resets it.
        while !Node::new(&p, 4).unwrap().is_empty() {
            let n = Node::new(&p, 4).unwrap();
            let k = n.key(0).unwrap().to_vec();
            let len = n.cell_bytes(0).unwrap().len();
            NodeMut { p: &mut p }.remove(0, len);
            model.remove(&k);
            check_against(&p, &model, &probes());
        }
        put(&mut p, b"solo");
        assert_eq!(Node::new(&p, 4).unwrap().prefix_len(), 4);
    }

    #[test]
    fn rebuilt_node_gets_the_longest_prefix() {
        let mut p = leaf(6);
        let keys: Vec<Vec<u8>> = (0..20u8).map(|i| versionish(&[1, i])).collect();
        let mut m = NodeMut { p: &mut p };
        m.clear();
        m.set_prefix_len(common_len(&keys[0], &keys[19]));
        let mut cell = Vec::new();
        for k in &keys {
            leaf_cell(&mut cell, k, b"x");
            m.push(&cell);
        }
        let n = Node::new(&p, 6).unwrap();
        assert_eq!(n.prefix_len(), versionish(&[1]).len());
        let model = keys.into_iter().collect();
        check_against(&p, &model, &probes());
    }

    #[test]
    fn damaged_common_prefix_or_hint_is_a_corruption_error() {
        let mut p = leaf(7);
        for t in 0..10u8 {
            put(&mut p, &versionish(&[t, 1]));
        }
        let plen = Node::new(&p, 7).unwrap().prefix_len();
        let path = std::path::Path::new("x");
        seal(&mut p);
        check_page(&p, 7, path).unwrap();
        // Longer than the keys: every search and the page check fail.
        let mut q = p.clone();
        put_u16(&mut q[..], PREFIX_LEN_AT, 9000);
        seal(&mut q);
        let err = check_page(&q, 7, path).unwrap_err();
        assert!(err.is_corruption() && err.to_string().contains("common prefix"), "{err}");
        assert!(
            Node::new(&q, 7).unwrap().search(&versionish(&[3, 1])).unwrap_err().is_corruption()
        );
        // Shorter than it was: still a common prefix, but the hints were
        // taken elsewhere, so searches could miss keys.
        let mut q = p.clone();
        put_u16(&mut q[..], PREFIX_LEN_AT, plen as u16 - 1);
        seal(&mut q);
        let err = check_page(&q, 7, path).unwrap_err();
        assert!(err.to_string().contains("hint"), "{err}");
        // One hint byte changed.
        let mut q = p.clone();
        q[NODE_HEADER_LEN + SLOT_SIZE * 4 + 3] ^= 0x20;
        seal(&mut q);
        assert!(check_page(&q, 7, path).unwrap_err().to_string().contains("hint"));
        // A key that does not share the prefix (its first byte changed).
        let mut q = p.clone();
        let off = get_u16(&q[..], NODE_HEADER_LEN + SLOT_SIZE * 2) as usize;
        q[off + LEAF_CELL_HEADER] = 0x09;
        seal(&mut q);
        assert!(check_page(&q, 7, path).unwrap_err().to_string().contains("common prefix"));
    }

    #[test]
    fn damaged_slot_offsets_are_errors() {
        let mut p = leaf(1);
        let mut cell = Vec::new();
        leaf_cell(&mut cell, b"k", b"v");
        NodeMut { p: &mut p }.insert(0, &cell, &mut Vec::new());
        put_u16(&mut p[..], NODE_HEADER_LEN, 8190);
        let n = Node::new(&p, 1).unwrap();
        assert!(n.key(0).is_err());
        put_u16(&mut p[..], 32, 5000);
        assert!(Node::new(&p, 1).is_err());
    }
}
