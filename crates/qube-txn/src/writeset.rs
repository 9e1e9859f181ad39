//! A transaction's write set: the keys it wrote, each with its new value
//! or a deletion, buffered in memory until commit.
//!
//! # Layout
//!
//! ```text
//! arena:   [ key 0 | value 0 | key 1 | value 1 | value 0' | key 2 | ... ]
//! entries: Entry { key_at, key_len, val_at, val_len (TOMBSTONE: deleted) }  (24 bytes)
//!          entry ids are positions in `entries`, in creation order
//! runs:    up to MAX_RUNS lists of entry ids, each in ascending key order
//! loose:   HashTable<entry id> by key hash   — every entry not in a run
//!          (small sets; from INDEX_FROM entries on, `all` holds every entry
//!          but the runs' tails: a run's entries past its first RUN_HASHED,
//!          and `pending` ones, until the next lookup)
//!          loose_sorted (ids by key) + loose_new (ids added since, unsorted)
//! ```
//!
//! Keys and values are appended to one arena: a write allocates nothing of
//! its own (the `BTreeMap<Vec<u8>, Option<Vec<u8>>>` this replaces made two
//! allocations and an ordered insert with whole-key compares per write).
//! The arena is a list of 1 MiB chunks, each allocated once at its full
//! size, never one growing buffer: a bulk load's arena reaches hundreds of
//! megabytes, and growing one buffer copied all of it at every doubling
//! (with an allocator that reallocates by copying, into freshly faulted
//! memory each time). A position in the arena is the chunk's index in the
//! high 32 bits and the offset in the low ones; a key or value never spans
//! two chunks (one longer than a chunk gets a chunk of its own).
//!
//! Most bulk writes arrive in key order within their table or index: rows
//! by a serial or identity key, COPY of sorted data. A new key joins the run
//! whose last key shares the longest prefix with it (its own table's or
//! index's run, since keys of one table or index share their first bytes),
//! at the end, if it sorts after that last key: one or two key compares,
//! and the run stays sorted with no work. A key that fits no run starts a
//! new one while there are fewer than `MAX_RUNS`; otherwise it is *loose*:
//! indexed by its hash (the same `locks::key_hash` the lock table uses, so
//! it is computed once per key) and sorted only when an ordered view is
//! needed. An INSERT into a table keyed by a serial with a secondary index
//! on a random column puts its rows in one run and most index entries loose.
//!
//! Lookups (own writes are read first): in a small write set, for each
//! run one compare with its last key and one with its first rejects a key
//! outside it, else a binary search; then one hash probe if anything is
//! loose. From `INDEX_FROM` entries on, every entry is also in the hash
//! index `all` — loose ones and the first `RUN_HASHED` of each run — and a
//! lookup is one probe there: the random entries of a secondary index
//! start short runs that span most of the key space, and every lookup
//! binary-searched each of them (some 20 key compares per write in a bulk
//! INSERT). Such runs stay short, so the hash index holds them whole. The
//! rest of a long run (its *tail*: rows by a serial key) is not hashed: a
//! lookup first checks each tail (one compare with its last key rejects
//! every key past the end of the load, two any key outside it), so a bulk
//! load's rows cost no hash-table slot, probe or rehash, only their index
//! entries do. An INSERT looks its key up (the unique check) just before
//! it writes it: the key found absent is remembered until it is written
//! (writes of other keys in between — the new row's index entries — leave
//! it absent) or a savepoint's rollback, and its write skips the lookup.
//!
//! Index entries of new rows (`put_fresh`, from `Transaction::set_fresh`)
//! cost neither a probe nor a slot as a rule: a key such a write makes is
//! written at most once unless `put` writes it since, so a key without the
//! prefix every `put` key shares (`put_prefix`: the rows' table) is new,
//! and is appended without a lookup. If it goes loose it is not hashed
//! either, but noted `pending`: the next lookup (`get`, `contains`, a
//! `put` that looks) hashes the pending entries first. A bulk INSERT looks
//! up no index entry, so its entries never enter the hash index: the probe
//! and the slot write of a table of tens of megabytes missed the cache for
//! every entry (perf: `WriteSet::put` the largest item of the load).
//!
//! Ordered views (a scan merged with own writes, the commit's batch) first
//! sort `loose_new` — by the 8 bytes that follow the loose keys' common
//! prefix, then by whole keys on ties, so most compares stay in one small
//! array — and merge it into `loose_sorted`; then they merge the runs and
//! `loose_sorted`, each cut to the range by binary search. A later scan
//! sorts only what was written since.
//!
//! Savepoints: `put` returns an `Undo` that the transaction keeps while a
//! savepoint exists. Undo runs newest first, so an entry it removes is
//! always the newest entry (and the last of its run, or a loose one):
//! removal pops it and truncates the arena. A removed loose entry that was
//! already sorted leaves its id in `loose_sorted`; such ids are dropped in
//! one pass before the next write or ordered view (a search per undo would
//! make rolling back many loose writes quadratic). An overwrite made under a
//! savepoint appends the new value and its undo points back at the old one;
//! without a savepoint, a value no longer than the old one is written in
//! place. Values overwritten with longer ones stay in the arena until the
//! transaction ends.

use std::cmp::Ordering;
use std::ops::Bound;

use hashbrown::HashTable;
use qube_common::{Error, Result};

use crate::locks::key_hash;

/// `Entry::val_len` of a deletion.
const TOMBSTONE: u32 = u32::MAX;

/// Runs kept sorted as they grow; keys fitting none are loose.
const MAX_RUNS: usize = 4;

/// From this many entries on, the hash index `all` holds every entry but
/// the tails of long runs, and a lookup is one probe there (see `find`).
const INDEX_FROM: usize = 64;

/// The first entries of a run that go in the hash index `all`; the rest
/// of a run (its *tail*) is found by the run alone (see `find`).
const RUN_HASHED: usize = 32;

/// How many entries of a sequence `Merge` reads ahead (`WriteSet::warm`).
const WARM: usize = 32;

/// 24 bytes: a bulk load makes millions. The key's hash is not kept (the
/// hash index's slots hold 32 bits of it); the rare paths that need it
/// again (an undo, the small set's loose table) hash the key anew.
#[derive(Clone, Copy)]
struct Entry {
    key_at: usize,
    val_at: usize,
    key_len: u32,
    val_len: u32,
}

/// The key of entry `id` in `arena` (see `WriteSet::key`).
#[inline]
fn key_in<'a>(arena: &'a Arena, entries: &[Entry], id: u32) -> &'a [u8] {
    let e = &entries[id as usize];
    arena.get(e.key_at, e.key_len as usize)
}

/// Bytes per arena chunk.
const CHUNK: usize = 1 << 20;

/// The write set's bytes: chunks that never grow past the capacity they
/// were allocated with (see the module docs). Positions are
/// `chunk << 32 | offset`.
#[derive(Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
}

impl Arena {
    /// Appends `b`; its position.
    #[inline]
    fn push(&mut self, b: &[u8]) -> usize {
        let n = self.chunks.len();
        if let Some(last) = self.chunks.last_mut()
            && b.len() <= last.capacity() - last.len()
        {
            let at = ((n - 1) << 32) | last.len();
            last.extend_from_slice(b);
            return at;
        }
        let mut chunk = Vec::with_capacity(b.len().max(CHUNK));
        chunk.extend_from_slice(b);
        self.chunks.push(chunk);
        (self.chunks.len() - 1) << 32
    }

    #[inline]
    fn get(&self, at: usize, len: usize) -> &[u8] {
        let off = at & 0xFFFF_FFFF;
        &self.chunks[at >> 32][off..off + len]
    }

    fn get_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        let off = at & 0xFFFF_FFFF;
        &mut self.chunks[at >> 32][off..off + len]
    }

    /// Drops everything from position `at` on (a position `push` gave).
    fn truncate(&mut self, at: usize) {
        let chunk = at >> 32;
        self.chunks.truncate(chunk + 1);
        if let Some(c) = self.chunks.get_mut(chunk) {
            c.truncate(at & 0xFFFF_FFFF);
        }
    }

    /// Bytes held (the test of in-place overwrites).
    #[cfg(test)]
    fn used(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

/// An entry of the hash index `WriteSet::all`: its id and 32 bits of its
/// key's hash, from which the table's hash is made (`Slot::table_hash`),
/// so that growing the table rehashes without reading `entries` (a random
/// access per entry) and a probe rejects most other keys without either.
#[derive(Clone, Copy)]
struct Slot {
    id: u32,
    hash: u32,
}

impl Slot {
    fn new(id: u32, key_hash: u64) -> Slot {
        Slot { id, hash: key_hash as u32 }
    }

    /// The hash the table files a slot under: a function of the 32 bits
    /// kept, spread to the high bits the table takes its tags from.
    fn table_hash(hash: u32) -> u64 {
        let h = u64::from(hash);
        h | h << 32
    }
}

/// How to reverse one `WriteSet::put`.
#[derive(Clone, Copy, Debug)]
pub enum Undo {
    /// The key was new: remove its entry (the newest).
    Created,
    /// The key had an entry: restore its earlier value.
    Replaced { id: u32, val_at: usize, val_len: u32 },
}

/// The write set (see the module doc).
#[derive(Default)]
pub struct WriteSet {
    arena: Arena,
    entries: Vec<Entry>,
    runs: Vec<Vec<u32>>,
    /// `head` of each run's last key, by run: `place` compares a new key
    /// with these, not with the keys in the arena.
    run_heads: Vec<(u128, usize)>,
    loose: HashTable<u32>,
    /// Every entry by key hash, once there are `INDEX_FROM` entries
    /// (`indexed`); `loose` is then left empty.
    all: HashTable<Slot>,
    indexed: bool,
    loose_sorted: Vec<u32>,
    loose_new: Vec<u32>,
    /// Scratch for sorting `loose_new`: (8 key bytes after the common prefix, id).
    sort_buf: Vec<(u64, u32)>,
    /// A key looked up and found absent, not put since (`absent_valid`):
    /// the unique check's lookup before an INSERT's
    /// write of the same key, which then skips its own lookup.
    absent: Vec<u8>,
    absent_valid: bool,
    /// `loose_sorted` or `loose_new` may hold ids of entries `undo`
    /// removed (always the newest, so ids ≥ `entries.len()`): purged before
    /// an id is given out again or an ordered view is made.
    loose_stale: bool,
    /// Loose entries `put_fresh` wrote that are not in `all` yet, in id
    /// order: hashed (`settle`) before the next lookup, so a bulk load
    /// whose index entries nobody looks up never hashes them.
    pending: Vec<u32>,
    /// The prefix every key written by `put` (not `put_fresh`) shares;
    /// None before the first. Never shortened back: a key without it was
    /// never written by `put`.
    put_prefix: Option<Vec<u8>>,
}

/// The first 16 bytes of `key` (zero-padded) as a big-endian number, and
/// its length: the common prefix of two keys up to 16 bytes is the number
/// of leading zero bytes of the numbers' difference (xor), cut to the
/// shorter length.
fn head(key: &[u8]) -> (u128, usize) {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    (u128::from_be_bytes(b), key.len())
}

/// From this many entries on, `sort_by_word` sorts by radix.
const RADIX_FROM: usize = 256;

/// Sorts `v` by its words, and entries with equal words by `tie` on their
/// ids. Short slices by comparison; longer ones by a least-significant-
/// digit radix sort on the words' bytes, one stable counting pass for each
/// byte that is not the same in every word (the loose keys of a bulk load
/// are an index's entries for random values: after their common prefix,
/// the few bytes of the value vary, and three passes of a few instructions
/// an entry replace some 20 compares), then `tie` within each run of equal
/// words.
fn sort_by_word(v: &mut Vec<(u64, u32)>, tie: impl Fn(u32, u32) -> Ordering) {
    if v.len() < RADIX_FROM {
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| tie(a.1, b.1)));
        return;
    }
    let first = v[0].0;
    let varying = v.iter().fold(0u64, |d, &(w, _)| d | (w ^ first));
    if varying != 0 {
        // One histogram per byte, counted in one read of `v`.
        let mut counts = vec![[0usize; 256]; 8];
        for &(w, _) in v.iter() {
            for (b, c) in counts.iter_mut().enumerate() {
                c[(w >> (8 * b)) as usize & 0xFF] += 1;
            }
        }
        let mut tmp: Vec<(u64, u32)> = vec![(0, 0); v.len()];
        for (b, c) in counts.iter_mut().enumerate() {
            if (varying >> (8 * b)) & 0xFF == 0 {
                continue;
            }
            // Counts into the start of each digit's bucket.
            let mut at = 0;
            for n in c.iter_mut() {
                (*n, at) = (at, at + *n);
            }
            for &(w, id) in v.iter() {
                let d = (w >> (8 * b)) as usize & 0xFF;
                tmp[c[d]] = (w, id);
                c[d] += 1;
            }
            std::mem::swap(v, &mut tmp);
        }
    }
    // Runs of equal words, by `tie`.
    let mut i = 0;
    while i < v.len() {
        let w = v[i].0;
        let j = i + v[i..].iter().take_while(|e| e.0 == w).count();
        if j - i > 1 {
            v[i..j].sort_unstable_by(|a, b| tie(a.1, b.1));
        }
        i = j;
    }
}

/// Length of the common prefix of two keys, compared 8 bytes at a time.
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        x.copy_from_slice(&a[i..i + 8]);
        y.copy_from_slice(&b[i..i + 8]);
        // The lowest set bit of the difference (little-endian: the first
        // byte in memory) is in the first unequal byte.
        let d = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl WriteSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&self, id: u32) -> &[u8] {
        key_in(&self.arena, &self.entries, id)
    }

    /// Reads the first byte of each entry's key, so that the cache lines
    /// an ordered view is about to read (the entry, its key and the value
    /// that follows it in the arena) are on their way: the loose entries
    /// of a bulk load come in key order from all over the arena, and taken
    /// one by one between the merge's other work, each waited for its
    /// misses alone (`Merge::take` and the commit's copy of the key were
    /// a tenth of a million-row load's time). In this short loop the
    /// loads do not depend on each other and overlap.
    #[inline(never)]
    fn warm(&self, ids: &[u32]) {
        let mut x = 0u8;
        for &id in ids {
            let e = &self.entries[id as usize];
            x ^= self.arena.get(e.key_at, e.key_len as usize).first().copied().unwrap_or(0);
        }
        std::hint::black_box(x);
    }

    fn value(&self, id: u32) -> Option<&[u8]> {
        let e = &self.entries[id as usize];
        (e.val_len != TOMBSTONE).then(|| self.arena.get(e.val_at, e.val_len as usize))
    }

    /// `key`'s entry in a run (or a run's tail): ids in ascending key
    /// order, so a key past its end (the next row of a load) costs one
    /// compare and a key before its start two.
    fn find_in_run(&self, run: &[u32], key: &[u8]) -> Option<u32> {
        let (&first, &last) = (run.first()?, run.last()?);
        match key.cmp(self.key(last)) {
            Ordering::Greater => return None,
            Ordering::Equal => return Some(last),
            Ordering::Less => {}
        }
        if key < self.key(first) {
            return None;
        }
        run.binary_search_by(|&id| self.key(id).cmp(key)).ok().map(|i| run[i])
    }

    /// The entry of `key`, whose `key_hash` `hash()` gives (computed only
    /// if a hash probe is needed).
    fn find(&self, key: &[u8], hash: impl FnOnce() -> u64) -> Option<u32> {
        debug_assert!(self.pending.is_empty(), "a lookup before `settle`");
        if self.indexed {
            // The long runs' tails, which `all` does not hold; their
            // entries are rows in key order, and a key past a tail's end
            // (the next row of a load) costs one compare.
            for run in &self.runs {
                if let Some(tail) = run.get(RUN_HASHED..)
                    && let Some(id) = self.find_in_run(tail, key)
                {
                    return Some(id);
                }
            }
            // One probe, where the runs would cost a binary search each
            // for a key inside their range: the random entries of a
            // secondary index start short runs that span most of the key
            // space, and every later lookup searched them all.
            let h = Slot::new(0, hash()).hash;
            return self
                .all
                .find(Slot::table_hash(h), |s| s.hash == h && self.key(s.id) == key)
                .map(|s| s.id);
        }
        for run in &self.runs {
            if let Some(id) = self.find_in_run(run, key) {
                return Some(id);
            }
        }
        if self.loose.is_empty() {
            return None;
        }
        let h = hash();
        self.loose.find(h, |&id| self.key(id) == key).copied()
    }

    /// This transaction's write of `key`: `None` if it wrote none,
    /// `Some(None)` if it deleted the key.
    pub fn get(&mut self, key: &[u8], hash: impl FnOnce() -> u64) -> Option<Option<&[u8]>> {
        if self.entries.is_empty() {
            return None;
        }
        self.settle();
        self.find(key, hash).map(|id| self.value(id))
    }

    /// Puts the entries `put_fresh` left out of the hash index `all` in
    /// it (see `pending`).
    fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.all.reserve(pending.len(), |s| Slot::table_hash(s.hash));
        for &id in &pending {
            let slot = Slot::new(id, key_hash(self.key(id)));
            self.all.insert_unique(Slot::table_hash(slot.hash), slot, |s| Slot::table_hash(s.hash));
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Remembers that `key` was just looked up and is absent, so that a
    /// `put` of it need not look again (until an `undo`, or another
    /// `note_absent`).
    pub fn note_absent(&mut self, key: &[u8]) {
        self.absent.clear();
        self.absent.extend_from_slice(key);
        self.absent_valid = true;
    }

    /// True if this transaction wrote (or deleted) `key`.
    pub fn contains(&mut self, key: &[u8], hash: impl FnOnce() -> u64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        self.settle();
        self.find(key, hash).is_some()
    }

    /// As `put`, for a key the caller knows this write set holds only if
    /// `put` wrote it: `put_fresh` writes each key at most once, unless
    /// `put` wrote it since (see `Transaction::set_fresh`: a key that ends
    /// with a rowid new to the table). A key without the prefix every
    /// `put` key shares (`put_prefix`) is then new, and is written with no
    /// lookup; if it goes loose, it stays out of the hash index until the
    /// next lookup (`pending`). A bulk INSERT's random index entries so
    /// cost no hash probe and no slot: the probe of a table of tens of
    /// megabytes missed the cache for every entry.
    pub fn put_fresh(
        &mut self,
        key: &[u8],
        hash: u64,
        value: Option<&[u8]>,
        keep_old: bool,
    ) -> Result<Undo> {
        let new = self.indexed && self.put_prefix.as_ref().is_none_or(|p| !key.starts_with(p));
        if !new {
            return self.put_looked_up(key, hash, value, keep_old);
        }
        self.absent_valid = self.absent_valid && self.absent != key;
        let id = self.append(key, value)?;
        if self.place(id, hash) {
            // A run's tail, which `all` does not hold.
        } else if self.loose_new.last() == Some(&id) {
            self.pending.push(id);
        } else {
            let slot = Slot::new(id, hash);
            self.all.insert_unique(Slot::table_hash(slot.hash), slot, |s| Slot::table_hash(s.hash));
        }
        Ok(Undo::Created)
    }

    /// Appends a new entry (its key and value to the arena); its id.
    #[inline]
    fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<u32> {
        let val_len = match value {
            Some(v) => u32::try_from(v.len())
                .ok()
                .filter(|&n| n != TOMBSTONE)
                .ok_or_else(|| Error::InvalidInput(format!("value of {} bytes", v.len())))?,
            None => TOMBSTONE,
        };
        self.purge_loose();
        let id = u32::try_from(self.entries.len())
            .ok()
            .filter(|&n| n < u32::MAX)
            .ok_or_else(|| Error::InvalidInput("too many writes in one transaction".into()))?;
        let key_at = self.arena.push(key);
        // A deletion's `val_at` is never read.
        let val_at = value.map_or(key_at, |v| self.arena.push(v));
        self.entries.push(Entry { key_at, val_at, key_len: key.len() as u32, val_len });
        Ok(id)
    }

    /// Sets (`Some`) or deletes (`None`) `key`. `keep_old`: a savepoint
    /// may roll this back, so an earlier value is not overwritten in place.
    pub fn put(
        &mut self,
        key: &[u8],
        hash: u64,
        value: Option<&[u8]>,
        keep_old: bool,
    ) -> Result<Undo> {
        match &mut self.put_prefix {
            None => self.put_prefix = Some(key.to_vec()),
            Some(p) if !key.starts_with(p) => p.truncate(common_prefix(p, key)),
            Some(_) => {}
        }
        self.put_looked_up(key, hash, value, keep_old)
    }

    /// `put` after its note of the key in `put_prefix`: what `put_fresh`
    /// does for a key it must look up.
    #[inline]
    fn put_looked_up(
        &mut self,
        key: &[u8],
        hash: u64,
        value: Option<&[u8]>,
        keep_old: bool,
    ) -> Result<Undo> {
        let val_len = match value {
            Some(v) => u32::try_from(v.len())
                .ok()
                .filter(|&n| n != TOMBSTONE)
                .ok_or_else(|| Error::InvalidInput(format!("value of {} bytes", v.len())))?,
            None => TOMBSTONE,
        };
        // A write of another key leaves the noted one absent.
        let known_absent = self.absent_valid && self.absent == key;
        if known_absent {
            self.absent_valid = false;
        }
        let found = if known_absent {
            None
        } else {
            self.settle();
            self.find(key, || hash)
        };
        if let Some(id) = found {
            let e = self.entries[id as usize];
            let undo = Undo::Replaced { id, val_at: e.val_at, val_len: e.val_len };
            let val_at = match value {
                Some(v) if !keep_old && e.val_len != TOMBSTONE && val_len <= e.val_len => {
                    self.arena.get_mut(e.val_at, v.len()).copy_from_slice(v);
                    e.val_at
                }
                Some(v) => self.arena.push(v),
                None => e.val_at,
            };
            let e = &mut self.entries[id as usize];
            (e.val_at, e.val_len) = (val_at, val_len);
            return Ok(undo);
        }
        let id = self.append(key, value)?;
        let in_tail = self.place(id, hash);
        if self.indexed {
            if in_tail {
                return Ok(Undo::Created);
            }
            let slot = Slot::new(id, hash);
            self.all.insert_unique(Slot::table_hash(slot.hash), slot, |s| Slot::table_hash(s.hash));
        } else if self.entries.len() >= INDEX_FROM {
            self.build_index();
        }
        Ok(Undo::Created)
    }

    /// Puts every entry but the runs' tails in `all` (see `INDEX_FROM`);
    /// `loose` is no longer needed.
    fn build_index(&mut self) {
        self.all.reserve(self.entries.len() * 2, |s| Slot::table_hash(s.hash));
        let mut tail = vec![false; self.entries.len()];
        for run in &self.runs {
            for &id in run.get(RUN_HASHED..).unwrap_or(&[]) {
                tail[id as usize] = true;
            }
        }
        for (id, in_tail) in tail.into_iter().enumerate() {
            if in_tail {
                continue;
            }
            let slot = Slot::new(id as u32, key_hash(self.key(id as u32)));
            self.all.insert_unique(Slot::table_hash(slot.hash), slot, |s| Slot::table_hash(s.hash));
        }
        self.loose = HashTable::new();
        self.indexed = true;
    }

    /// Puts a new entry at the end of a run, or in a new run, or loose.
    /// True if it went to a run's tail (past its first `RUN_HASHED`).
    ///
    /// The run is the one whose last key shares the longest prefix with
    /// the new key, counted up to 16 bytes (`head`; the first of several
    /// sharing 16): a table's or an index's keys share their first 9 to
    /// 14 bytes, and comparing two words a run costs a few instructions
    /// where reading each run's last key from the arena cost a hundred.
    #[inline]
    fn place(&mut self, id: u32, hash: u64) -> bool {
        let key = self.key(id);
        let (h, len) = head(key);
        let mut best: Option<(usize, usize)> = None;
        let most = len.min(16);
        for (r, &(last_h, last_len)) in self.run_heads.iter().enumerate() {
            let cp = ((h ^ last_h).leading_zeros() as usize / 8).min(len).min(last_len);
            if best.is_none_or(|(_, b)| cp > b) {
                best = Some((r, cp));
                if cp == most {
                    // No later run can share more (a tie keeps the first):
                    // a row of a load next to the one before it.
                    break;
                }
            }
        }
        if let Some((r, _)) = best
            && let Some(&last) = self.runs[r].last()
            && key > self.key(last)
        {
            self.runs[r].push(id);
            self.run_heads[r] = (h, len);
            return self.runs[r].len() > RUN_HASHED;
        }
        if self.runs.len() < MAX_RUNS {
            self.runs.push(vec![id]);
            self.run_heads.push((h, len));
            return false;
        }
        if !self.indexed {
            let (arena, entries) = (&self.arena, &self.entries);
            self.loose.insert_unique(hash, id, |&i| key_hash(key_in(arena, entries, i)));
        }
        self.loose_new.push(id);
        false
    }

    /// Reverses one `put` (the newest not yet reversed).
    pub fn undo(&mut self, u: Undo) {
        self.absent_valid = false;
        match u {
            Undo::Replaced { id, val_at, val_len } => {
                if let Some(e) = self.entries.get_mut(id as usize) {
                    (e.val_at, e.val_len) = (val_at, val_len);
                }
            }
            Undo::Created => {
                let Some(id) = self.entries.len().checked_sub(1) else { return };
                let id = id as u32;
                let run = self.runs.iter().position(|run| run.last() == Some(&id));
                // A run's tail is not in `all`.
                if self.pending.last() == Some(&id) {
                    self.pending.pop();
                } else if self.indexed && run.is_none_or(|r| self.runs[r].len() <= RUN_HASHED) {
                    let h = Slot::new(id, key_hash(self.key(id))).hash;
                    if let Ok(e) = self.all.find_entry(Slot::table_hash(h), |s| s.id == id) {
                        e.remove();
                    }
                }
                if let Some(r) = run {
                    self.runs[r].pop();
                    if let Some(&last) = self.runs[r].last() {
                        self.run_heads[r] = head(self.key(last));
                    } else {
                        self.runs.remove(r);
                        self.run_heads.remove(r);
                    }
                } else {
                    let h = key_hash(self.key(id));
                    if let Ok(e) = self.loose.find_entry(h, |&i| i == id) {
                        e.remove();
                    }
                    if self.loose_new.last() == Some(&id) {
                        self.loose_new.pop();
                    } else {
                        // Somewhere in the sorted part: removing it there
                        // costs a search per undo; drop all at once later.
                        self.loose_stale = true;
                    }
                }
                let e = self.entries.pop();
                if let Some(e) = e {
                    self.arena.truncate(e.key_at);
                }
            }
        }
    }

    /// Sorts the loose entries written since the last ordered view into
    /// `loose_sorted`.
    /// Drops ids of removed entries from the loose lists.
    fn purge_loose(&mut self) {
        if self.loose_stale {
            let live = self.entries.len() as u32;
            self.loose_new.retain(|&i| i < live);
            self.loose_sorted.retain(|&i| i < live);
            self.loose_stale = false;
        }
    }

    fn sort_loose(&mut self) {
        self.purge_loose();
        if self.loose_new.is_empty() {
            return;
        }
        let mut new = std::mem::take(&mut self.loose_new);
        let first = self.key(new[0]);
        let cp = new.iter().fold(first.len(), |cp, &id| cp.min(common_prefix(first, self.key(id))));
        let mut buf = std::mem::take(&mut self.sort_buf);
        buf.clear();
        buf.extend(new.iter().map(|&id| {
            let k = self.key(id);
            let mut b = [0u8; 8];
            let tail = &k[cp.min(k.len())..];
            let n = tail.len().min(8);
            b[..n].copy_from_slice(&tail[..n]);
            (u64::from_be_bytes(b), id)
        }));
        // Equal words (keys equal for 8 bytes, or shorter and zero-padded)
        // are ordered by their whole keys.
        let (arena, entries) = (&self.arena, &self.entries);
        sort_by_word(&mut buf, |a, b| key_in(arena, entries, a).cmp(key_in(arena, entries, b)));
        new.clear();
        new.extend(buf.iter().map(|&(_, id)| id));
        self.sort_buf = buf;
        if self.loose_sorted.is_empty() {
            self.loose_sorted = new;
            return;
        }
        {
            let old = std::mem::take(&mut self.loose_sorted);
            let mut merged = Vec::with_capacity(old.len() + new.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < new.len() {
                if self.key(old[i]) < self.key(new[j]) {
                    merged.push(old[i]);
                    i += 1;
                } else {
                    merged.push(new[j]);
                    j += 1;
                }
            }
            merged.extend_from_slice(&old[i..]);
            merged.extend_from_slice(&new[j..]);
            self.loose_sorted = merged;
            new.clear();
        }
        self.loose_new = new;
    }

    /// The entries with keys in a range, in key order (descending if
    /// `reverse`), as (key, value or `None` for a deletion).
    pub fn range<'a>(
        &'a mut self,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        reverse: bool,
    ) -> Merge<'a> {
        self.sort_loose();
        let ws: &'a WriteSet = self;
        let cut = |ids: &'a [u32]| -> &'a [u32] {
            let start = match lo {
                Bound::Unbounded => 0,
                Bound::Included(k) => ids.partition_point(|&id| ws.key(id) < k.as_slice()),
                Bound::Excluded(k) => ids.partition_point(|&id| ws.key(id) <= k.as_slice()),
            };
            let end = match hi {
                Bound::Unbounded => ids.len(),
                Bound::Included(k) => ids.partition_point(|&id| ws.key(id) <= k.as_slice()),
                Bound::Excluded(k) => ids.partition_point(|&id| ws.key(id) < k.as_slice()),
            };
            ids.get(start..end.max(start)).unwrap_or(&[])
        };
        let mut m = Merge {
            ws,
            seqs: [&[]; MAX_RUNS + 1],
            n: 0,
            reverse,
            lead: None,
            rival: None,
            free: 0,
        };
        for s in ws.runs.iter().map(|r| cut(r)).chain([cut(&ws.loose_sorted)]) {
            if !s.is_empty() && m.n < m.seqs.len() {
                m.seqs[m.n] = s;
                m.n += 1;
            }
        }
        m
    }

    /// Every entry in key order.
    pub fn sorted(&mut self) -> Merge<'_> {
        self.range(&Bound::Unbounded, &Bound::Unbounded, false)
    }

    /// Every key written, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.entries.len() as u32).map(|id| self.key(id))
    }

    /// Every key deleted, in no particular order.
    pub fn deleted(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.entries.len() as u32).filter(|&id| self.value(id).is_none()).map(|id| self.key(id))
    }
}

/// Sorted sequences of entries merged into one ordered stream.
pub struct Merge<'a> {
    ws: &'a WriteSet,
    /// `seqs[..n]`: each non-empty, ascending; consumed from the front
    /// (forward) or the back (reverse).
    seqs: [&'a [u32]; MAX_RUNS + 1],
    n: usize,
    reverse: bool,
    /// The sequence that gave the last entry, and the best head among the
    /// others then: while the lead's next key still comes before that
    /// rival, it is taken with one compare (runs of one table or index
    /// rarely interleave with another's).
    lead: Option<usize>,
    rival: Option<u32>,
    /// How many of the lead's next entries are known to come before the
    /// rival: taken with no compare at all (a run of one table's rows
    /// before the next table's or an index's entries: one binary search
    /// per switch of sequence, not one key compare per entry).
    free: usize,
}

impl<'a> Merge<'a> {
    fn head(&self, i: usize) -> Option<u32> {
        let s = self.seqs[i];
        if self.reverse { s.last().copied() } else { s.first().copied() }
    }

    /// True if key `a` comes before key `b` in the merge's direction.
    fn before(&self, a: u32, b: u32) -> bool {
        let o = self.ws.key(a).cmp(self.ws.key(b));
        if self.reverse { o == Ordering::Greater } else { o == Ordering::Less }
    }

    /// Takes the head of sequence `i`; drops the sequence when emptied.
    fn take(&mut self, i: usize) -> (&'a [u8], Option<&'a [u8]>) {
        let s = self.seqs[i];
        let id = if self.reverse { s[s.len() - 1] } else { s[0] };
        self.seqs[i] = if self.reverse { &s[..s.len() - 1] } else { &s[1..] };
        let rest = self.seqs[i];
        if rest.len().is_multiple_of(WARM) && !rest.is_empty() {
            // The next entries of this sequence, read ahead (see `warm`).
            // (`rest` holds a whole multiple of WARM entries.)
            let ahead = if self.reverse { &rest[rest.len() - WARM..] } else { &rest[..WARM] };
            self.ws.warm(ahead);
        }
        if self.seqs[i].is_empty() {
            self.n -= 1;
            self.seqs.swap(i, self.n);
            self.lead = None;
            self.free = 0;
        }
        (self.ws.key(id), self.ws.value(id))
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(i) = self.lead
            && i < self.n
            && self.free > 0
        {
            self.free -= 1;
            return Some(self.take(i));
        }
        // The best head, and the best of the rest.
        let (mut best, mut rival): (Option<(usize, u32)>, Option<u32>) = (None, None);
        for i in 0..self.n {
            let Some(id) = self.head(i) else { continue };
            match best {
                Some((_, b)) if !self.before(id, b) => {
                    if rival.is_none_or(|r| self.before(id, r)) {
                        rival = Some(id);
                    }
                }
                _ => {
                    rival = best.map(|(_, b)| b);
                    best = Some((i, id));
                }
            }
        }
        let (i, _) = best?;
        self.lead = Some(i);
        self.rival = rival;
        // The lead's entries before the rival (all of them without one):
        // the head is one, and the sequence is sorted.
        let s = self.seqs[i];
        self.free = match rival {
            None => s.len(),
            Some(r) if self.reverse => s.len() - s.partition_point(|&id| !self.before(id, r)),
            Some(r) => s.partition_point(|&id| self.before(id, r)),
        };
        // Taking the head now.
        self.free = self.free.saturating_sub(1);
        Some(self.take(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn put(ws: &mut WriteSet, k: &[u8], v: Option<&[u8]>, keep: bool) -> Undo {
        ws.put(k, key_hash(k), v, keep).unwrap()
    }

    impl WriteSet {
        fn has_loose(&self) -> bool {
            !self.loose_new.is_empty() || !self.loose_sorted.is_empty()
        }
    }

    fn all(ws: &mut WriteSet) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        ws.sorted().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect()
    }

    proptest! {
        #[test]
        fn common_prefix_is_the_first_difference(
            a in prop::collection::vec(0u8..3, 0..30),
            b in prop::collection::vec(0u8..3, 0..30),
        ) {
            let want = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            prop_assert_eq!(common_prefix(&a, &b), want);
            prop_assert_eq!(common_prefix(&a, &a), a.len());
        }

        /// `place`'s prefix from two `head`s is the common prefix up to
        /// 16 bytes, zeros past a key's end (padding) not counted.
        #[test]
        fn heads_give_the_common_prefix_up_to_16_bytes(
            a in prop::collection::vec(0u8..3, 0..24),
            b in prop::collection::vec(0u8..3, 0..24),
        ) {
            let ((ha, la), (hb, lb)) = (head(&a), head(&b));
            let cp = ((ha ^ hb).leading_zeros() as usize / 8).min(la).min(lb);
            prop_assert_eq!(cp, common_prefix(&a, &b).min(16));
        }
    }

    #[test]
    fn ascending_keys_stay_in_one_run_and_read_back() {
        let mut ws = WriteSet::default();
        for i in 0u32..10_000 {
            let k = [b"t1".as_slice(), &i.to_be_bytes()].concat();
            assert!(ws.get(&k, || key_hash(&k)).is_none());
            put(&mut ws, &k, Some(&i.to_le_bytes()), false);
        }
        assert_eq!(ws.runs.len(), 1);
        assert!(!ws.has_loose());
        for i in (0u32..10_000).step_by(7) {
            let k = [b"t1".as_slice(), &i.to_be_bytes()].concat();
            assert_eq!(ws.get(&k, || key_hash(&k)), Some(Some(&i.to_le_bytes()[..])));
        }
        let got = all(&mut ws);
        assert_eq!(got.len(), 10_000);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn interleaved_row_and_random_index_keys_sort_at_the_end() {
        // Rows by serial key, index entries by a permutation of values.
        let mut ws = WriteSet::default();
        let mut model = BTreeMap::new();
        for i in 0u32..5_000 {
            let row = [b"r".as_slice(), &i.to_be_bytes()].concat();
            let ix =
                [b"x".as_slice(), &(i.wrapping_mul(7919) % 5_000).to_be_bytes(), &i.to_be_bytes()]
                    .concat();
            for k in [row, ix] {
                put(&mut ws, &k, Some(b"v"), false);
                model.insert(k, Some(b"v".to_vec()));
            }
        }
        assert!(ws.has_loose(), "random index keys went loose");
        assert_eq!(all(&mut ws), model.into_iter().collect::<Vec<_>>());
    }

    proptest! {
        /// The radix sort gives what a comparison sort by (word, tie) gives,
        /// with many equal words and bytes that vary anywhere in the word.
        #[test]
        fn sort_by_word_matches_a_comparison_sort(
            words in prop::collection::vec((0u64..6, 0u64..4, any::<u64>(), 0u8..3), 0..1500),
            shift in 0u32..57,
        ) {
            let mut v: Vec<(u64, u32)> = words
                .iter()
                .enumerate()
                .map(|(i, &(a, b, r, kind))| {
                    let w = match kind {
                        0 => a << shift,
                        1 => (a << shift) | (b << 60),
                        _ => r,
                    };
                    (w, i as u32)
                })
                .collect();
            // Ties by a scrambled order of the ids, not their order in `v`.
            let tie = |a: u32, b: u32| a.wrapping_mul(2_654_435_761).cmp(&b.wrapping_mul(2_654_435_761));
            let mut want = v.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| tie(a.1, b.1)));
            sort_by_word(&mut v, tie);
            prop_assert_eq!(v, want);
        }
    }

    #[test]
    fn loose_keys_equal_for_their_first_bytes_sort_by_whole_keys() {
        // More loose keys than `RADIX_FROM`, sharing a prefix, many of
        // them equal for the 8 bytes the radix sort looks at: keys that
        // differ only after them, shorter keys (zero-padded words) and
        // keys with zero bytes there, and duplicates written twice.
        let mut ws = WriteSet::default();
        let mut model = BTreeMap::new();
        let mut keys = Vec::new();
        for i in 0u32..3_000 {
            let v = i.wrapping_mul(7919) % 97;
            let mut k = b"ix".to_vec();
            k.extend_from_slice(&v.to_be_bytes());
            match i % 4 {
                0 => {}
                1 => k.extend_from_slice(&[0, 0, 0, 0]),
                2 => k.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, (i % 7) as u8]),
                _ => k.extend_from_slice(&i.to_be_bytes()),
            }
            keys.push(k);
        }
        for (i, k) in keys.iter().enumerate() {
            put(&mut ws, k, Some(&(i as u32).to_le_bytes()), false);
            model.insert(k.clone(), Some((i as u32).to_le_bytes().to_vec()));
        }
        assert!(ws.has_loose());
        assert_eq!(all(&mut ws), model.clone().into_iter().collect::<Vec<_>>());
        // More loose writes after that view: sorted and merged in.
        for i in 0u32..1_000 {
            let k = [b"ix".as_slice(), &(i % 50).to_be_bytes(), &[0xFF, (i % 3) as u8]].concat();
            put(&mut ws, &k, None, false);
            model.insert(k, None);
        }
        assert_eq!(all(&mut ws), model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_bulk_load_rolled_back_to_a_savepoint_sorts_what_is_left() {
        // Rows in one run, random index entries loose; a savepoint in the
        // middle of the load and a rollback to it, then more rows.
        let mut ws = WriteSet::default();
        let mut model = BTreeMap::new();
        let mut undo = Vec::new();
        let mut saved = None;
        let row = |i: u32| [b"r".as_slice(), &i.to_be_bytes()].concat();
        let ix = |i: u32| {
            [b"x".as_slice(), &(i.wrapping_mul(7919) % 10_000).to_be_bytes(), &i.to_be_bytes()]
                .concat()
        };
        for i in 0u32..4_000 {
            if i == 2_500 {
                saved = Some(model.clone());
            }
            for k in [row(i), ix(i)] {
                let u = put(&mut ws, &k, Some(b"v"), i >= 2_500);
                if i >= 2_500 {
                    undo.push(u);
                }
                model.insert(k, Some(b"v".to_vec()));
            }
            if i == 3_000 {
                // A scan in the middle sorts the loose entries so far.
                assert_eq!(all(&mut ws), model.clone().into_iter().collect::<Vec<_>>());
            }
        }
        while let Some(u) = undo.pop() {
            ws.undo(u);
        }
        let mut model = saved.unwrap();
        assert_eq!(all(&mut ws), model.clone().into_iter().collect::<Vec<_>>());
        for i in 6_000u32..7_000 {
            for k in [row(i), ix(i)] {
                put(&mut ws, &k, Some(b"w"), false);
                model.insert(k, Some(b"w".to_vec()));
            }
        }
        assert_eq!(all(&mut ws), model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn arena_chunks_never_move_and_truncate_back() {
        let mut a = Arena::default();
        let mut model: Vec<(usize, Vec<u8>)> = Vec::new();
        // Pieces of up to 3 KiB, over several chunks, then one longer than
        // a chunk (a chunk of its own) and small ones after it.
        for i in 0..2_000usize {
            let piece = vec![(i % 251) as u8; (i * 37) % 3_000];
            model.push((a.push(&piece), piece));
        }
        let big = vec![7u8; CHUNK + 5];
        model.push((a.push(&big), big));
        model.push((a.push(b"after"), b"after".to_vec()));
        assert!(a.chunks.len() > 3);
        let firsts: Vec<*const u8> = a.chunks.iter().map(|c| c.as_ptr()).collect();
        for (at, piece) in &model {
            assert_eq!(a.get(*at, piece.len()), &piece[..]);
        }
        // Undo back to an entry in the middle: later pieces are gone, the
        // ones before are intact, and pushing again reuses the room.
        let (cut, _) = model[1_000];
        a.truncate(cut);
        model.truncate(1_000);
        for (at, piece) in &model {
            assert_eq!(a.get(*at, piece.len()), &piece[..]);
        }
        let again = a.push(b"again");
        assert_eq!(again, cut);
        assert_eq!(a.get(again, 5), b"again");
        // No chunk was reallocated by the pushes.
        for (c, p) in a.chunks.iter().zip(&firsts) {
            assert_eq!(c.as_ptr(), *p);
        }
    }

    #[test]
    fn overwrites_in_place_and_under_savepoints() {
        let mut ws = WriteSet::default();
        put(&mut ws, b"a", Some(b"long value"), false);
        let before = ws.arena.used();
        put(&mut ws, b"a", Some(b"short"), false);
        assert_eq!(ws.arena.used(), before, "no savepoint: written in place");
        assert_eq!(ws.get(b"a", || key_hash(b"a")), Some(Some(&b"short"[..])));
        let u1 = put(&mut ws, b"a", Some(b"x"), true);
        let u2 = put(&mut ws, b"a", None, true);
        assert_eq!(ws.get(b"a", || key_hash(b"a")), Some(None));
        ws.undo(u2);
        assert_eq!(ws.get(b"a", || key_hash(b"a")), Some(Some(&b"x"[..])));
        ws.undo(u1);
        assert_eq!(ws.get(b"a", || key_hash(b"a")), Some(Some(&b"short"[..])));
    }

    #[test]
    fn the_hash_index_finds_run_and_loose_entries_and_follows_undo() {
        // Rows in a run, scrambled index entries loose; past INDEX_FROM
        // every lookup is a probe of `all`, which undo must keep exact.
        let mut ws = WriteSet::default();
        let row = |i: u32| [b"r".as_slice(), &i.to_be_bytes()].concat();
        let ix = |i: u32| [b"x".as_slice(), &(i.wrapping_mul(7919) % 3001).to_be_bytes()].concat();
        for i in 0..2000 {
            put(&mut ws, &row(i), Some(b"row"), false);
            put(&mut ws, &ix(i), Some(b"ix"), false);
        }
        assert!(ws.indexed);
        // The rows' run (rows 1.., after row 0 and the first entry made
        // one) is hashed only in its first RUN_HASHED entries.
        assert_eq!(ws.all.len(), 4000 - (1999 - RUN_HASHED));
        let mut undo = Vec::new();
        for i in 2000..2500 {
            undo.push(put(&mut ws, &row(i), Some(b"row"), true));
            undo.push(put(&mut ws, &ix(i), Some(b"ix"), true));
            // An overwrite under the savepoint.
            undo.push(put(&mut ws, &row(i - 1000), Some(b"new"), true));
        }
        while let Some(u) = undo.pop() {
            ws.undo(u);
        }
        assert_eq!(ws.len(), 4000);
        for i in 0..2000 {
            assert_eq!(ws.get(&row(i), || key_hash(&row(i))), Some(Some(&b"row"[..])), "{i}");
            assert_eq!(ws.get(&ix(i), || key_hash(&ix(i))), Some(Some(&b"ix"[..])), "{i}");
        }
        for i in 2000..2500 {
            assert_eq!(ws.get(&row(i), || key_hash(&row(i))), None);
            assert!(!ws.contains(&ix(i), || key_hash(&ix(i))));
        }
        // Writing again after the undo: new ids, found by the index.
        for i in 2000..2100 {
            put(&mut ws, &row(i), Some(b"again"), false);
        }
        assert_eq!(ws.get(&row(2050), || key_hash(&row(2050))), Some(Some(&b"again"[..])));
        let got = all(&mut ws);
        assert_eq!(got.len(), 4100);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn run_tails_across_the_index_build_and_the_hashed_boundary() {
        // A run longer than RUN_HASHED before the index is built: its tail
        // stays out of `all` and is still found; then undo across the
        // boundary between hashed entries and the tail, and write again.
        let mut ws = WriteSet::default();
        let row = |i: u32| [b"r".as_slice(), &i.to_be_bytes()].concat();
        for i in 0..INDEX_FROM as u32 - 1 {
            put(&mut ws, &row(i), Some(b"a"), false);
        }
        assert!(!ws.indexed);
        put(&mut ws, b"a", Some(b"z"), false);
        assert!(ws.indexed);
        assert_eq!(ws.all.len(), RUN_HASHED + 1, "the run's head and the other key");
        for i in 0..INDEX_FROM as u32 - 1 {
            assert_eq!(ws.get(&row(i), || key_hash(&row(i))), Some(Some(&b"a"[..])), "{i}");
        }
        assert_eq!(ws.get(b"a", || key_hash(b"a")), Some(Some(&b"z"[..])));
        assert!(ws.get(&row(500), || key_hash(&row(500))).is_none());
        // A second table's run, rolled back from its tail to nothing.
        let other = |i: u32| [b"b".as_slice(), &i.to_be_bytes()].concat();
        let mut undo = Vec::new();
        for i in 0..RUN_HASHED as u32 + 5 {
            undo.push(put(&mut ws, &other(i), Some(b"b"), true));
        }
        let hashed = ws.all.len();
        assert_eq!(hashed, 2 * RUN_HASHED + 1);
        while let Some(u) = undo.pop() {
            ws.undo(u);
            assert!(ws.all.len() <= hashed);
        }
        assert_eq!(ws.all.len(), RUN_HASHED + 1);
        for i in 0..RUN_HASHED as u32 + 5 {
            assert!(ws.get(&other(i), || key_hash(&other(i))).is_none(), "{i}");
        }
        // Overwrites of tail and head entries, and the table written again.
        put(&mut ws, &row(3), Some(b"head"), false);
        put(&mut ws, &row(60), Some(b"tail"), false);
        for i in 0..RUN_HASHED as u32 + 5 {
            put(&mut ws, &other(i), Some(b"c"), false);
        }
        assert_eq!(ws.get(&row(3), || key_hash(&row(3))), Some(Some(&b"head"[..])));
        assert_eq!(ws.get(&row(60), || key_hash(&row(60))), Some(Some(&b"tail"[..])));
        for i in 0..RUN_HASHED as u32 + 5 {
            assert_eq!(ws.get(&other(i), || key_hash(&other(i))), Some(Some(&b"c"[..])));
        }
        let got = all(&mut ws);
        assert_eq!(got.len(), INDEX_FROM + RUN_HASHED + 5);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_key_noted_absent_stays_so_across_writes_of_other_keys() {
        let mut ws = WriteSet::default();
        for i in 0u32..200 {
            put(&mut ws, &[b"r".as_slice(), &i.to_be_bytes()].concat(), Some(b"r"), false);
        }
        // The unique check of a row, its index entry, then the row.
        assert!(ws.get(b"new", || key_hash(b"new")).is_none());
        ws.note_absent(b"new");
        put(&mut ws, b"entry", Some(b"e"), false);
        put(&mut ws, b"entry", Some(b"f"), false);
        put(&mut ws, b"new", Some(b"1"), false);
        // Written: a second write must find it, not add a twin.
        put(&mut ws, b"new", Some(b"2"), false);
        assert_eq!(ws.len(), 202);
        assert_eq!(ws.get(b"new", || key_hash(b"new")), Some(Some(&b"2"[..])));
        assert_eq!(ws.get(b"entry", || key_hash(b"entry")), Some(Some(&b"f"[..])));
        // An undo forgets the note.
        ws.note_absent(b"other");
        let u = put(&mut ws, b"x", Some(b"x"), true);
        ws.undo(u);
        assert!(!ws.absent_valid);
        assert_eq!(all(&mut ws).len(), 202);
    }

    type Model = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

    #[test]
    fn rolling_back_sorted_loose_writes_then_writing_again() {
        // Scrambled keys go loose; a scan sorts them; undoing them leaves
        // stale ids that must not survive into the ids given out next.
        let mut ws = WriteSet::default();
        let scrambled =
            |i: u32| [b"x".as_slice(), &(i.wrapping_mul(7919) % 4001).to_be_bytes()].concat();
        for i in 0..100 {
            put(&mut ws, &scrambled(i), Some(b"kept"), false);
        }
        let mut undo = Vec::new();
        for i in 100..3000 {
            undo.push(put(&mut ws, &scrambled(i), Some(b"undone"), true));
        }
        assert!(ws.has_loose());
        assert_eq!(ws.sorted().count(), 3000);
        while let Some(u) = undo.pop() {
            ws.undo(u);
        }
        assert_eq!(ws.len(), 100);
        for i in 3000..3050 {
            put(&mut ws, &scrambled(i), Some(b"new"), false);
        }
        let got = all(&mut ws);
        assert_eq!(got.len(), 150);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(got.iter().filter(|(_, v)| v.as_deref() == Some(b"undone")).count(), 0);
        for i in (0..100).chain(3000..3050) {
            assert!(ws.get(&scrambled(i), || key_hash(&scrambled(i))).is_some(), "{i}");
        }
        assert!(ws.get(&scrambled(500), || key_hash(&scrambled(500))).is_none());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>, Option<Vec<u8>>),
        Savepoint,
        RollbackTo,
        Release,
        Scan(Vec<u8>, Vec<u8>, bool, bool),
        /// A unique check: a lookup, and `note_absent` if absent.
        Check(Vec<u8>),
        /// `put_fresh`, as a caller keeps its contract: a key it wrote
        /// before and `put` has not written since goes through `put`.
        PutFresh(Vec<u8>, Vec<u8>),
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            // Ascending-ish serial keys of two "tables", and short random ones.
            (0u8..2, 0u16..300)
                .prop_map(|(t, n)| [[b'a' + t].as_slice(), &n.to_be_bytes()].concat()),
            prop::collection::vec(0u8..4, 0..4),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..6))).prop_map(|(k, v)| Op::Put(k, v)),
            1 => Just(Op::Savepoint),
            1 => Just(Op::RollbackTo),
            1 => Just(Op::Release),
            2 => (key(), key(), any::<bool>(), any::<bool>()).prop_map(|(a, b, r, i)| Op::Scan(a, b, r, i)),
            3 => key().prop_map(Op::Check),
            // Index entries of random values (some equal to `put` keys of
            // the second form).
            6 => (prop_oneof![
                (0u16..2000).prop_map(|n| [b"x".as_slice(), &n.to_be_bytes()].concat()),
                prop::collection::vec(0u8..4, 0..4),
            ], prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Op::PutFresh(k, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The write set against a `BTreeMap` with savepoints as snapshots.
        #[test]
        fn matches_a_btreemap(ops in prop::collection::vec(op(), 1..400)) {
            against_a_btreemap(ops)?;
        }

        /// The same where every key `put` writes starts with "a" (rows of
        /// one table), so that `put_fresh` of the "x" keys (index entries)
        /// skips its lookup and leaves loose entries pending; its other
        /// keys are `put` keys without their prefix, or with it.
        #[test]
        fn fresh_index_entries_match_a_btreemap(ops in prop::collection::vec(op(), 1..600)) {
            let a = |k: Vec<u8>| [b"a".as_slice(), &k].concat();
            let ops = ops
                .into_iter()
                .map(|op| match op {
                    Op::Put(k, v) => Op::Put(a(k), v),
                    Op::Check(k) if k.len() % 2 == 0 => Op::Check(a(k)),
                    Op::PutFresh(k, v) if k.len() == 1 => Op::PutFresh(a(k), v),
                    other => other,
                })
                .collect();
            against_a_btreemap(ops)?;
        }
    }

    fn against_a_btreemap(ops: Vec<Op>) -> Result<(), TestCaseError> {
        {
            let mut ws = WriteSet::default();
            let mut model: Model = BTreeMap::new();
            // Savepoints: (undo length, model then, `fresh` then).
            let mut saves: Vec<(usize, Model, BTreeSet<Vec<u8>>)> = Vec::new();
            let mut undo: Vec<Undo> = Vec::new();
            // Keys `put_fresh` wrote that `put` has not written since.
            let mut fresh: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut step = 0usize;
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let u = ws.put(&k, key_hash(&k), v.as_deref(), !saves.is_empty()).unwrap();
                        if !saves.is_empty() {
                            undo.push(u);
                        }
                        fresh.remove(&k);
                        model.insert(k, v);
                    }
                    Op::PutFresh(k, v) => {
                        let keep = !saves.is_empty();
                        let u = if fresh.contains(&k) {
                            ws.put(&k, key_hash(&k), Some(&v), keep).unwrap()
                        } else {
                            ws.put_fresh(&k, key_hash(&k), Some(&v), keep).unwrap()
                        };
                        if keep {
                            undo.push(u);
                        }
                        fresh.insert(k.clone());
                        model.insert(k, Some(v));
                    }
                    Op::Check(k) => {
                        let got = ws.get(&k, || key_hash(&k)).map(|v| v.map(<[u8]>::to_vec));
                        prop_assert_eq!(&got, &model.get(&k).cloned());
                        if got.is_none() {
                            ws.note_absent(&k);
                        }
                    }
                    Op::Savepoint => saves.push((undo.len(), model.clone(), fresh.clone())),
                    Op::RollbackTo => {
                        if let Some((mark, m, f)) = saves.last() {
                            while undo.len() > *mark {
                                ws.undo(undo.pop().unwrap());
                            }
                            model = m.clone();
                            fresh = f.clone();
                        }
                    }
                    Op::Release => {
                        saves.pop();
                        if saves.is_empty() {
                            undo.clear();
                        }
                    }
                    Op::Scan(a, b, reverse, incl) => {
                        let hi = if incl { Bound::Included(b) } else { Bound::Excluded(b) };
                        let lo = Bound::Included(a);
                        let empty = match (&lo, &hi) {
                            (Bound::Included(a), Bound::Included(b)) => a > b,
                            (Bound::Included(a), Bound::Excluded(b)) => a >= b,
                            _ => false,
                        };
                        let mut want: Vec<_> = if empty {
                            Vec::new()
                        } else {
                            model
                                .range((lo.clone(), hi.clone()))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        };
                        if reverse {
                            want.reverse();
                        }
                        let got: Vec<_> = ws
                            .range(&lo, &hi, reverse)
                            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(ws.len(), model.len());
                // Every key looked up now and then only: a lookup settles
                // what `put_fresh` left pending, which should pile up.
                step += 1;
                if step.is_multiple_of(24) {
                    for (k, v) in &model {
                        prop_assert_eq!(ws.get(k, || key_hash(k)), Some(v.as_deref()));
                    }
                }
            }
            prop_assert_eq!(all(&mut ws), model.into_iter().collect::<Vec<_>>());
        }
        Ok(())
    }
}
