//! Row locks: one writer per key at a time, as in PostgreSQL.
//!
//! A transaction takes the lock of every key it writes and keeps it until
//! it commits or rolls back. A second writer waits. When the lock is freed
//! the waiter goes on; at REPEATABLE READ and SERIALIZABLE it then finds
//! the newer committed version and fails with a serialization error (the
//! "first committer wins" rule), at READ COMMITTED it writes over it.
//!
//! Deadlocks are found when a transaction is about to wait: it follows the
//! chain "waits for" from the lock's owner; if the chain comes back to
//! itself, it is the victim and gets `Error::Deadlock` (40P01) at once.
//! Readers never take these locks.
//!
//! # The table
//!
//! ```text
//! State
//!   table:   HashTable<Slot>            every lock: Slot { hash, owner, at, len }
//!   arena:   Vec<u8>                    the locked keys' bytes, back to back
//!            [ key a | key b | (freed) | key d | ... ]
//!              ^at,len of a slot
//!   ordered: BTreeMap<Vec<u8>, TxnId>   the locks of SERIALIZABLE owners only
//!   runs:    Vec<Run>                   bulk writers' ascending keys
//!            Run { owner, keys: KeyList }  [ k1 < k2 < k3 < ... ]
//!   waits_for: HashMap<TxnId, TxnId>    who waits for whom (deadlocks)
//! ```
//!
//! A lock is found by the key's hash (`key_hash`, a multiply-rotate hash
//! of a few cycles, computed once per key by the caller and shared with the
//! write set) and one compare of the key's bytes in the arena: no
//! allocation per key and no ordered insert with whole-key compares (a
//! bulk load of a million rows took a million `Vec` keys in a `BTreeMap`,
//! the single biggest cost of COPY). Released keys leave holes in the
//! arena; it is emptied when the table is, and compacted when the holes
//! outweigh the live keys. After a bulk load both give their memory back
//! (`State::reclaim`), and a release's one pass over the table is chosen by
//! its capacity, since a pass visits every bucket.
//!
//! SERIALIZABLE scans ask which transactions hold locks in a key range
//! (`owners_in`), which a hash table cannot answer. Only SERIALIZABLE
//! writers matter there (SSI tracks no other transaction, `ssi.rs`), so
//! only their locks are also kept in the ordered map. (An earlier attempt
//! replaced the ordered map by a SipHash `HashMap<Vec<u8>, _>` for
//! everyone and measured slower: SipHash and a `Vec` per key, see
//! bench/README.md.)
//!
//! # Runs
//!
//! A bulk load (COPY, a large INSERT) locks its keys mostly in ascending
//! order: rows by a serial or a sorted key, their index entries in the
//! index's order. Put in the hash table, a million such keys cost a
//! random probe and a slot write each in a table of tens of megabytes:
//! cache misses that were the largest single cost of COPY into a table
//! with a primary key. So once a transaction holds `RUN_AFTER` locks in
//! the table, a key it locks that sorts after the last key of one of its
//! runs is appended to that run instead (the run whose last key shares the
//! longest prefix with it, as in the write set; a key that fits none
//! starts a new run while the owner has fewer than `MAX_RUNS`, else goes
//! to the table). A run is a `KeyList`: bytes back to back, sorted, memory
//! touched in order.
//!
//! Finding a key's owner looks in the table (by hash), then in every run
//! whose first and last keys enclose the key (a binary search). Runs are
//! few (at most `MAX_RUNS` per bulk writer), and a small transaction never
//! makes one, so point writers pay one or two compares per run. Semantics
//! are unchanged: a key is held by at most one transaction, whether in the
//! table or a run; a second writer of it waits, deadlocks are found the
//! same way, and a release drops the owner's runs with its slots.
//! SERIALIZABLE owners' keys always go to the table (and the ordered map).
//!
//! A transaction remembers what it holds in `Held`: the hashes of its keys
//! in the table (a release finds each slot by hash and owner), how many are
//! in runs, and, at SERIALIZABLE, the keys themselves for the ordered map.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use parking_lot::{Condvar, Mutex};
use qube_common::{Error, Result};

/// Identifies a transaction while it runs (not a commit timestamp).
pub type TxnId = u64;

/// The hash of a key for the lock table and the write set: 8 bytes at a
/// time, each folded in by a 64×64→128-bit multiply whose halves are
/// XORed (as foldhash and wyhash do), so every input bit reaches every
/// output bit. (A plain multiply only carries bits upward: with it, keys
/// that differ in their high-order bytes — big-endian rowids — collided by
/// the thousand.) Not collision-resistant against chosen keys; a collision
/// only costs a key compare.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x243f_6a88_85a3_08d3;
    const SEED: u64 = 0x1319_8a2e_0370_7344;
    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = SEED ^ key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = fold(h ^ u64::from_le_bytes(b), K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = fold(h ^ u64::from_le_bytes(b), K);
    }
    fold(h, SEED)
}

/// The keys a transaction has locked, in one buffer (a bulk load locks a
/// million keys: no allocation per key).
#[derive(Default)]
pub struct KeyList {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`.
    ends: Vec<usize>,
}

impl KeyList {
    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    /// The key pushed last.
    pub fn last(&self) -> Option<&[u8]> {
        let end = *self.ends.last()?;
        let start = self.ends.len().checked_sub(2).map_or(0, |i| self.ends[i]);
        self.bytes.get(start..end)
    }

    /// The key pushed first.
    pub fn first(&self) -> Option<&[u8]> {
        self.bytes.get(..*self.ends.first()?)
    }

    /// Key `i`.
    fn get(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { *self.ends.get(i - 1)? };
        self.bytes.get(start..*self.ends.get(i)?)
    }

    /// Whether `key` is in the list, whose keys must be pushed in ascending order.
    fn binary_search(&self, key: &[u8]) -> bool {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).map(|k| k.cmp(key)) {
                Some(std::cmp::Ordering::Less) => lo = mid + 1,
                Some(std::cmp::Ordering::Greater) => hi = mid,
                Some(std::cmp::Ordering::Equal) => return true,
                None => return false,
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.bytes[a..b])
    }
}

/// The locks one transaction holds, for `LockTable::release`.
#[derive(Default)]
pub struct Held {
    /// `key_hash` of every key locked.
    hashes: Vec<u64>,
    /// The keys locked in the ordered map (SERIALIZABLE owners).
    ordered: KeyList,
    /// Keys locked in runs (see the module doc).
    in_runs: usize,
    /// Runs the owner has in the table's `runs`.
    runs: usize,
}

impl Held {
    pub fn len(&self) -> usize {
        self.hashes.len() + self.in_runs
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty() && self.in_runs == 0
    }
}

/// Ascending keys one transaction locked (see the module doc).
struct Run {
    owner: TxnId,
    keys: KeyList,
}

impl Run {
    fn contains(&self, key: &[u8]) -> bool {
        let (Some(first), Some(last)) = (self.keys.first(), self.keys.last()) else {
            return false;
        };
        if key < first || key > last {
            return false;
        }
        self.keys.binary_search(key)
    }
}

/// Length of the common prefix of two keys.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Locks a transaction holds in the table before its ascending keys start
/// going to runs.
const RUN_AFTER: usize = 64;
/// Runs one transaction may have.
const MAX_RUNS: usize = 4;

/// One lock: the key's hash, its owner, and where its bytes are in the arena.
struct Slot {
    hash: u64,
    owner: TxnId,
    at: usize,
    len: usize,
}

/// Arena bytes of released keys are reclaimed once there are more of them
/// than this and than live key bytes.
const COMPACT_MIN_GARBAGE: usize = 1 << 20;

/// Past these sizes an emptied arena or a mostly empty table gives its
/// memory back (`State::reclaim`).
const SHRINK_ABOVE_BYTES: usize = 1 << 20;
const SHRINK_ABOVE_SLOTS: usize = 4096;

#[derive(Default)]
struct State {
    table: HashTable<Slot>,
    arena: Vec<u8>,
    /// Bytes of `arena` no slot points at any more.
    garbage: usize,
    ordered: BTreeMap<Vec<u8>, TxnId>,
    runs: Vec<Run>,
    /// Waiting transaction → the owner it waits for.
    waits_for: HashMap<TxnId, TxnId>,
}

impl State {
    fn owner(&self, key: &[u8], hash: u64) -> Option<TxnId> {
        let arena = &self.arena;
        self.table
            .find(hash, |s| s.hash == hash && arena.get(s.at..s.at + s.len) == Some(key))
            .map(|s| s.owner)
            .or_else(|| self.runs.iter().find(|r| r.contains(key)).map(|r| r.owner))
    }

    /// Appends `key`, which no one holds, to one of `txn`'s runs if it
    /// sorts after that run's last key, or starts a run for it; false if
    /// it belongs in the table (see the module doc).
    fn push_to_run(&mut self, txn: TxnId, key: &[u8], held: &mut Held) -> bool {
        if held.hashes.len() < RUN_AFTER {
            return false;
        }
        // As the write set places its keys (`writeset.rs`): the run whose
        // last key shares the longest prefix with the key (its own table's
        // or index's), if the key sorts after it.
        let mut best: Option<(usize, usize)> = None;
        if held.runs == 1 {
            // One run (a table with no other index): no prefixes to compare.
            best = self.runs.iter().position(|r| r.owner == txn).map(|i| (i, 0));
        } else if held.runs > 1 {
            for (i, r) in self.runs.iter().enumerate() {
                if r.owner != txn {
                    continue;
                }
                let cp = r.keys.last().map_or(0, |l| common_prefix(l, key));
                if best.is_none_or(|(_, b)| cp > b) {
                    best = Some((i, cp));
                }
            }
        }
        let best = best.map(|(i, _)| i).filter(|&i| self.runs[i].keys.last() < Some(key));
        let i = match best {
            Some(i) => i,
            None if held.runs < MAX_RUNS => {
                self.runs.push(Run { owner: txn, keys: KeyList::default() });
                held.runs += 1;
                self.runs.len() - 1
            }
            None => return false,
        };
        self.runs[i].keys.push(key);
        held.in_runs += 1;
        true
    }

    fn insert(&mut self, txn: TxnId, key: &[u8], hash: u64) {
        let at = self.arena.len();
        self.arena.extend_from_slice(key);
        self.table.insert_unique(hash, Slot { hash, owner: txn, at, len: key.len() }, |s| s.hash);
    }

    /// Empties the arena with the table, or moves the live keys together
    /// when released ones dominate; gives memory back after a bulk load.
    fn reclaim(&mut self) {
        if self.table.is_empty() {
            self.arena.clear();
            self.garbage = 0;
            // A bulk load's million keys leave no lasting allocation.
            if self.arena.capacity() > SHRINK_ABOVE_BYTES {
                self.arena.shrink_to(SHRINK_ABOVE_BYTES / 16);
            }
        } else if self.garbage > COMPACT_MIN_GARBAGE && self.garbage * 2 > self.arena.len() {
            let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
            for s in self.table.iter_mut() {
                let at = arena.len();
                arena.extend_from_slice(&self.arena[s.at..s.at + s.len]);
                s.at = at;
            }
            self.arena = arena;
            self.garbage = 0;
        }
        // The table shrinks once mostly empty, so that neither memory nor
        // a release's pass over its buckets stays at a bulk load's size.
        if self.table.capacity() > SHRINK_ABOVE_SLOTS
            && self.table.len() * 8 < self.table.capacity()
        {
            self.table.shrink_to(self.table.len() * 2, |s| s.hash);
        }
    }
}

#[derive(Default)]
pub struct LockTable {
    state: Mutex<State>,
    freed: Condvar,
}

impl LockTable {
    /// Takes the lock of `key` (whose `key_hash` is `hash`) for `txn`,
    /// waiting while another transaction holds it (at most `timeout`, if
    /// given). Returns true if newly taken (and recorded in `held`), false
    /// if `txn` already held it. `ordered`: the owner is SERIALIZABLE, and
    /// the lock must show in `owners_in`. `on_block(true)` is called before
    /// the caller blocks and `on_block(false)` after it wakes (MVCC tells
    /// the engine's group commit not to wait for a blocked writer). A
    /// timeout is SQLSTATE 55P03 (lock_not_available), as PostgreSQL's
    /// `lock_timeout`.
    #[allow(clippy::too_many_arguments)]
    pub fn lock(
        &self,
        txn: TxnId,
        key: &[u8],
        hash: u64,
        ordered: bool,
        held: &mut Held,
        timeout: Option<Duration>,
        mut on_block: impl FnMut(bool),
    ) -> Result<bool> {
        let mut deadline = None;
        let mut st = self.state.lock();
        loop {
            let owner = match st.owner(key, hash) {
                None => {
                    if ordered {
                        st.ordered.insert(key.to_vec(), txn);
                        held.ordered.push(key);
                    } else if st.push_to_run(txn, key, held) {
                        return Ok(true);
                    }
                    st.insert(txn, key, hash);
                    held.hashes.push(hash);
                    return Ok(true);
                }
                Some(o) if o == txn => return Ok(false),
                Some(o) => o,
            };
            // Would waiting close a cycle?
            let mut cur = owner;
            for _ in 0..=st.waits_for.len() {
                match st.waits_for.get(&cur) {
                    Some(&next) if next == txn => {
                        return Err(Error::Deadlock(format!(
                            "transaction {txn} waits for {owner}, which waits (transitively) for {txn}"
                        )));
                    }
                    Some(&next) => cur = next,
                    None => break,
                }
            }
            if deadline.is_none() {
                deadline = timeout.map(|t| Instant::now() + t);
            }
            st.waits_for.insert(txn, owner);
            on_block(true);
            let timed_out = qube_common::wait::wait(|| match deadline {
                Some(d) => self.freed.wait_until(&mut st, d).timed_out(),
                None => {
                    self.freed.wait(&mut st);
                    false
                }
            });
            on_block(false);
            st.waits_for.remove(&txn);
            if timed_out && st.owner(key, hash).is_some_and(|o| o != txn) {
                return Err(Error::user(
                    "55P03",
                    format!(
                        "canceling statement due to lock timeout: transaction {owner} still \
                         holds the row"
                    ),
                ));
            }
        }
    }

    /// Takes the lock of `key` for `txn` if no one holds it, without
    /// waiting: true if newly taken (always in the table, never in a run,
    /// so that `unlock` can give it back), false if anyone holds it,
    /// `txn` included. Not for SERIALIZABLE owners (no ordered map entry).
    pub fn try_lock(&self, txn: TxnId, key: &[u8], hash: u64, held: &mut Held) -> bool {
        let mut st = self.state.lock();
        if st.owner(key, hash).is_some() {
            return false;
        }
        st.insert(txn, key, hash);
        held.hashes.push(hash);
        true
    }

    /// Gives back the lock of `key` that `txn` took with `try_lock` (in
    /// the table), and wakes the waiters.
    pub fn unlock(&self, txn: TxnId, key: &[u8], hash: u64, held: &mut Held) {
        let Some(i) = held.hashes.iter().rposition(|&h| h == hash) else { return };
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let arena = &st.arena;
        if let Ok(e) = st.table.find_entry(hash, |s| {
            s.hash == hash && s.owner == txn && arena.get(s.at..s.at + s.len) == Some(key)
        }) {
            st.garbage += e.remove().0.len;
            held.hashes.remove(i);
        }
        st.reclaim();
        drop(guard);
        self.freed.notify_all();
    }

    /// The transaction holding `key`'s lock, if any.
    pub fn owner(&self, key: &[u8]) -> Option<TxnId> {
        self.state.lock().owner(key, key_hash(key))
    }

    /// The SERIALIZABLE transactions holding locks on keys in a range
    /// (other than `txn`); locks of other owners are not listed.
    pub fn owners_in(&self, txn: TxnId, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<TxnId> {
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (lo, hi)
            && (a > b
                || (a == b
                    && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))))
        {
            return Vec::new();
        }
        let st = self.state.lock();
        let mut out: Vec<TxnId> = st
            .ordered
            .range::<Vec<u8>, _>((lo.clone(), hi.clone()))
            .map(|(_, o)| *o)
            .filter(|o| *o != txn)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Releases the locks of `txn` — `held` lists all the locks it holds —
    /// and wakes the waiters. `held` is emptied.
    pub fn release(&self, txn: TxnId, held: &mut Held) {
        if held.is_empty() {
            return;
        }
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if held.runs > 0 {
            st.runs.retain(|r| r.owner != txn);
        }
        if held.hashes.len() >= st.table.capacity() / 4 {
            // Most of the table (a bulk load): one pass over its buckets
            // costs less than a lookup per key. (The pass visits every
            // bucket, so it is judged by the capacity, not by the locks
            // held: a table grown by an earlier bulk load and mostly empty
            // now would make a pass per small commit cost thousands of
            // bucket visits.)
            let garbage = &mut st.garbage;
            st.table.retain(|s| {
                if s.owner == txn {
                    *garbage += s.len;
                }
                s.owner != txn
            });
        } else {
            for &h in &held.hashes {
                // Two keys of one owner with the same hash are both listed:
                // each removal takes one of them.
                if let Ok(e) = st.table.find_entry(h, |s| s.hash == h && s.owner == txn) {
                    st.garbage += e.remove().0.len;
                }
            }
        }
        for k in held.ordered.iter() {
            if st.ordered.get(k) == Some(&txn) {
                st.ordered.remove(k);
            }
        }
        st.reclaim();
        drop(guard);
        *held = Held::default();
        self.freed.notify_all();
    }

    /// Number of locks held (for status and tests).
    pub fn held(&self) -> usize {
        let st = self.state.lock();
        st.table.len() + st.runs.iter().map(|r| r.keys.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Takes `key` for `txn` with no timeout, recording it in `held`.
    fn take(t: &LockTable, txn: TxnId, key: &[u8], ser: bool, held: &mut Held) -> Result<bool> {
        t.lock(txn, key, key_hash(key), ser, held, None, |_| {})
    }

    #[test]
    fn a_bulk_loads_locks_leave_no_lasting_size() {
        let t = LockTable::default();
        let (mut bulk, mut small, mut other) = Default::default();
        take(&t, 2, b"small-1", false, &mut small).unwrap();
        // In no order (ascending keys would go to runs, not the table).
        for i in 0..100_000u32 {
            take(&t, 1, &i.wrapping_mul(2_654_435_761).to_be_bytes(), false, &mut bulk).unwrap();
        }
        assert!(t.state.lock().table.capacity() > SHRINK_ABOVE_SLOTS);
        take(&t, 2, b"small-2", false, &mut small).unwrap();
        t.release(1, &mut bulk);
        {
            let st = t.state.lock();
            assert_eq!(st.table.len(), 2);
            assert!(st.table.capacity() <= SHRINK_ABOVE_SLOTS, "{}", st.table.capacity());
        }
        // The small owner's locks survived the shrink and are still found.
        assert_eq!(t.owner(b"small-1"), Some(2));
        assert_eq!(t.owner(b"small-2"), Some(2));
        assert!(!take(&t, 2, b"small-1", false, &mut small).unwrap());
        take(&t, 3, &7u32.to_be_bytes(), false, &mut other).unwrap();
        t.release(2, &mut small);
        t.release(3, &mut other);
        let st = t.state.lock();
        assert_eq!(st.table.len(), 0);
        assert!(st.arena.capacity() <= SHRINK_ABOVE_BYTES);
    }

    #[test]
    fn owners_in_ranges_follow_serializable_locks_and_releases() {
        let t = LockTable::default();
        let (mut h1, mut h2, mut h3, mut h4, mut h5) = Default::default();
        let range = |a: &[u8], b: &[u8]| (Bound::Included(a.to_vec()), Bound::Excluded(b.to_vec()));
        take(&t, 1, b"a1", true, &mut h1).unwrap();
        take(&t, 2, b"b1", true, &mut h2).unwrap();
        // Not SERIALIZABLE: held, but not listed in ranges.
        take(&t, 5, b"b5", false, &mut h5).unwrap();
        assert_eq!(t.owner(b"b5"), Some(5));
        let (lo, hi) = range(b"a", b"c");
        assert_eq!(t.owners_in(9, &lo, &hi), [1, 2]);
        assert_eq!(t.owners_in(1, &lo, &hi), [2]);
        // Locks taken and released after a range question.
        take(&t, 3, b"b2", true, &mut h3).unwrap();
        let (lo, hi) = range(b"b", b"c");
        assert_eq!(t.owners_in(9, &lo, &hi), [2, 3]);
        t.release(2, &mut h2);
        assert_eq!(t.owners_in(9, &lo, &hi), [3]);
        assert_eq!(t.owner(b"b1"), None);
        // Emptied, then filled again.
        t.release(1, &mut h1);
        t.release(3, &mut h3);
        t.release(5, &mut h5);
        assert_eq!(t.held(), 0);
        take(&t, 4, b"b3", true, &mut h4).unwrap();
        assert_eq!(t.owners_in(9, &lo, &hi), [4]);
        assert_eq!(t.owners_in(9, &Bound::Unbounded, &Bound::Excluded(b"b".to_vec())), []);
    }

    #[test]
    fn try_lock_takes_only_free_keys_and_unlock_gives_them_back() {
        let t = LockTable::default();
        let (mut a, mut b) = (Held::default(), Held::default());
        take(&t, 1, b"x", false, &mut a).unwrap();
        // Held by another, or by itself: not taken.
        assert!(!t.try_lock(2, b"x", key_hash(b"x"), &mut b));
        assert!(!t.try_lock(1, b"x", key_hash(b"x"), &mut a));
        assert!(t.try_lock(2, b"y", key_hash(b"y"), &mut b));
        assert_eq!(t.owner(b"y"), Some(2));
        // Only a key the owner holds is given back.
        t.unlock(1, b"x", key_hash(b"x"), &mut b);
        assert_eq!(t.owner(b"x"), Some(1));
        t.unlock(2, b"x", key_hash(b"x"), &mut b);
        assert_eq!(t.owner(b"x"), Some(1));
        t.unlock(2, b"y", key_hash(b"y"), &mut b);
        assert_eq!(t.owner(b"y"), None);
        assert!(b.is_empty());
        // A waiter for a key taken by try_lock goes on once it is given back.
        let t = Arc::new(t);
        assert!(t.try_lock(2, b"z", key_hash(b"z"), &mut b));
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || {
            let mut c = Held::default();
            take(&t2, 3, b"z", false, &mut c).unwrap();
            c.len()
        });
        std::thread::sleep(Duration::from_millis(20));
        t.unlock(2, b"z", key_hash(b"z"), &mut b);
        assert_eq!(waiter.join().unwrap(), 1);
        assert_eq!(t.owner(b"z"), Some(3));
        // With many locks held (past the point where keys go to runs), a
        // try_lock still goes to the table and can be given back.
        let mut d = Held::default();
        for i in 0..200u32 {
            take(&t, 4, &i.to_be_bytes(), false, &mut d).unwrap();
        }
        assert!(t.try_lock(4, &1000u32.to_be_bytes(), key_hash(&1000u32.to_be_bytes()), &mut d));
        t.unlock(4, &1000u32.to_be_bytes(), key_hash(&1000u32.to_be_bytes()), &mut d);
        assert_eq!(t.owner(&1000u32.to_be_bytes()), None);
        assert_eq!(d.len(), 200);
        t.release(4, &mut d);
        assert_eq!(t.owner(&5u32.to_be_bytes()), None);
    }

    #[test]
    fn key_lists_keep_their_keys_apart() {
        let mut l = KeyList::default();
        assert!(l.is_empty() && l.last().is_none());
        l.push(b"ab");
        l.push(b"");
        l.push(b"c");
        assert_eq!(l.len(), 3);
        assert_eq!(l.last(), Some(&b"c"[..]));
        assert_eq!(l.iter().collect::<Vec<_>>(), [&b"ab"[..], b"", b"c"]);
    }

    #[test]
    fn many_locks_released_in_part_and_whole_keep_the_rest() {
        // Two owners interleaved; one releases (a lookup per key, then the
        // arena compacts), the other keeps every lock and its key bytes.
        let t = LockTable::default();
        let (mut a, mut b) = (Held::default(), Held::default());
        let key = |i: u32| format!("key-{i:08}-{}", "x".repeat(40)).into_bytes();
        for i in 0..60_000u32 {
            let (txn, held) = if i % 3 == 0 { (1, &mut a) } else { (2, &mut b) };
            assert!(take(&t, txn, &key(i), false, held).unwrap());
        }
        assert_eq!(t.held(), 60_000);
        assert!(!take(&t, 2, &key(1), false, &mut b).unwrap(), "already held");
        t.release(1, &mut a);
        assert_eq!(t.held(), 40_000);
        for i in 0..60_000u32 {
            assert_eq!(t.owner(&key(i)), (i % 3 != 0).then_some(2), "key {i}");
        }
        // A third owner takes a released key.
        let mut c = Held::default();
        assert!(take(&t, 3, &key(0), false, &mut c).unwrap());
        t.release(2, &mut b);
        t.release(3, &mut c);
        assert_eq!(t.held(), 0);
        assert_eq!(t.owner(&key(1)), None);
    }

    #[test]
    fn keys_in_runs_are_held_like_keys_in_the_table() {
        // Owner 1 locks two interleaved ascending sequences (a table's rows
        // and an index's entries), a few keys out of order, and more
        // sequences than it may have runs; owner 2 locks keys in the gaps.
        let t = LockTable::default();
        let (mut a, mut b) = (Held::default(), Held::default());
        let row = |i: u32| [&[0x10u8][..], &i.to_be_bytes()].concat();
        let ent = |i: u32| [&[0x11u8][..], &(i * 2).to_be_bytes()].concat();
        let mut mine = Vec::new();
        for i in 0..3_000u32 {
            for k in [row(i * 2), ent(i)] {
                assert!(take(&t, 1, &k, false, &mut a).unwrap());
                mine.push(k);
            }
            if i % 500 == 7 {
                // Descending: not after any run's last key.
                let k = [&[0x12u8][..], &(10_000 - i).to_be_bytes()].concat();
                assert!(take(&t, 1, &k, false, &mut a).unwrap());
                mine.push(k);
            }
        }
        for s in 0x13..0x19u8 {
            // More ascending sequences than runs: the rest go to the table.
            for i in 0..10u32 {
                let k = [&[s][..], &i.to_be_bytes()].concat();
                assert!(take(&t, 1, &k, false, &mut a).unwrap());
                mine.push(k);
            }
        }
        assert!(a.runs > 0 && a.runs <= MAX_RUNS, "{} runs", a.runs);
        assert!(a.in_runs > 3_000, "{} keys in runs", a.in_runs);
        assert_eq!(a.len(), mine.len());
        assert_eq!(t.held(), mine.len());
        // Every key is found, owned by 1, and not taken again.
        for k in &mine {
            assert_eq!(t.owner(k), Some(1), "{k:?}");
            assert!(!take(&t, 1, k, false, &mut a).unwrap(), "{k:?} already held");
        }
        assert_eq!(t.held(), mine.len());
        // Keys in the runs' ranges that 1 does not hold are free for 2.
        for i in (1..6_000u32).step_by(2) {
            assert_eq!(t.owner(&row(i)), None);
            assert!(take(&t, 2, &row(i), false, &mut b).unwrap());
        }
        assert_eq!(t.owner(&row(1)), Some(2));
        t.release(1, &mut a);
        assert!(a.is_empty());
        assert_eq!(t.held(), 3_000);
        for k in &mine {
            assert_eq!(t.owner(k), None, "{k:?} released");
        }
        // 2 now takes one of 1's former keys; its own runs went with it.
        assert!(take(&t, 2, &row(0), false, &mut b).unwrap());
        t.release(2, &mut b);
        assert_eq!(t.held(), 0);
        assert_eq!(t.owner(&row(1)), None);
    }

    #[test]
    fn serializable_keys_never_go_to_runs() {
        let t = LockTable::default();
        let mut h = Held::default();
        for i in 0..500u32 {
            take(&t, 1, &i.to_be_bytes(), true, &mut h).unwrap();
        }
        assert_eq!((h.runs, h.in_runs), (0, 0));
        let (lo, hi) = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(t.owners_in(9, &lo, &hi), [1]);
        assert_eq!(t.owner(&499u32.to_be_bytes()), Some(1));
        t.release(1, &mut h);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn a_waiter_on_a_run_key_goes_on_at_release() {
        let t = Arc::new(LockTable::default());
        let mut h1 = Held::default();
        for i in 0..1_000u32 {
            take(&t, 1, &i.to_be_bytes(), false, &mut h1).unwrap();
        }
        assert!(h1.in_runs > 900);
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || {
            let mut h2 = Held::default();
            take(&t2, 2, &700u32.to_be_bytes(), false, &mut h2).unwrap()
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.owner(&700u32.to_be_bytes()), Some(1));
        t.release(1, &mut h1);
        assert!(waiter.join().unwrap());
        assert_eq!(t.owner(&700u32.to_be_bytes()), Some(2));
    }

    #[test]
    fn deadlock_over_run_keys_is_detected() {
        let t = Arc::new(LockTable::default());
        let (mut h1, mut h2) = (Held::default(), Held::default());
        let k = |t: u8, i: u32| [&[t][..], &i.to_be_bytes()].concat();
        for i in 0..500u32 {
            take(&t, 1, &k(1, i), false, &mut h1).unwrap();
            take(&t, 2, &k(2, i), false, &mut h2).unwrap();
        }
        assert!(h1.in_runs > 0 && h2.in_runs > 0);
        let t1 = t.clone();
        let first = std::thread::spawn(move || take(&t1, 1, &k(2, 300), false, &mut h1));
        std::thread::sleep(Duration::from_millis(50));
        let err = take(&t, 2, &k(1, 400), false, &mut h2).unwrap_err();
        assert!(matches!(err, Error::Deadlock(_)), "{err}");
        t.release(2, &mut h2);
        assert!(first.join().unwrap().unwrap());
    }

    #[test]
    fn second_writer_waits_until_release() {
        let t = Arc::new(LockTable::default());
        let mut h1 = Held::default();
        assert!(take(&t, 1, b"k", false, &mut h1).unwrap());
        assert!(!take(&t, 1, b"k", false, &mut h1).unwrap());
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || {
            let mut h2 = Held::default();
            take(&t2, 2, b"k", false, &mut h2).unwrap()
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.owner(b"k"), Some(1));
        t.release(1, &mut h1);
        assert!(waiter.join().unwrap());
        assert_eq!(t.owner(b"k"), Some(2));
    }

    #[test]
    fn a_blocked_waiter_is_announced_and_a_timeout_is_55p03() {
        let t = LockTable::default();
        let (mut h1, mut h2) = (Held::default(), Held::default());
        take(&t, 1, b"k", false, &mut h1).unwrap();
        let mut calls = Vec::new();
        let err = t
            .lock(2, b"k", key_hash(b"k"), false, &mut h2, Some(Duration::from_millis(20)), |b| {
                calls.push(b)
            })
            .unwrap_err();
        assert_eq!(err.sqlstate(), "55P03", "{err}");
        assert!(!err.is_retryable());
        assert_eq!(calls, [true, false], "blocked, then woke");
        assert!(h2.is_empty(), "a lock not taken is not recorded");
        // Not blocked: no calls.
        let mut calls = Vec::new();
        assert!(
            t.lock(2, b"free", key_hash(b"free"), false, &mut h2, None, |b| calls.push(b)).unwrap()
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn deadlock_is_detected_for_the_second_waiter() {
        let t = Arc::new(LockTable::default());
        let (mut h1, mut h2) = (Held::default(), Held::default());
        take(&t, 1, b"a", false, &mut h1).unwrap();
        take(&t, 2, b"b", false, &mut h2).unwrap();
        let t1 = t.clone();
        let first = std::thread::spawn(move || take(&t1, 1, b"b", false, &mut h1));
        std::thread::sleep(Duration::from_millis(50));
        let err = take(&t, 2, b"a", false, &mut h2).unwrap_err();
        assert!(matches!(err, Error::Deadlock(_)), "{err}");
        t.release(2, &mut h2);
        assert!(first.join().unwrap().unwrap());
    }

    #[test]
    fn hashes_of_serial_row_keys_spread_over_every_bit() {
        // Row keys: tag, table id, big-endian rowid.
        let n = 200_000u64;
        let mut full = std::collections::HashSet::new();
        let (mut low, mut top) = (std::collections::HashSet::new(), [0u32; 128]);
        for r in 1..=n {
            let mut k = [0u8; 17];
            k[0] = 0x10;
            k[1..9].copy_from_slice(&20u64.to_be_bytes());
            k[9..].copy_from_slice(&r.to_be_bytes());
            let h = key_hash(&k);
            full.insert(h);
            low.insert(h & ((1 << 20) - 1));
            top[(h >> 57) as usize] += 1;
        }
        assert_eq!(full.len() as u64, n, "no full collisions");
        // 200,000 keys in 2^20 low-bit buckets: about 8.7% share one.
        assert!(low.len() as u64 > n * 85 / 100, "{} distinct low 20 bits", low.len());
        let expect = n / 128;
        assert!(top.iter().all(|&c| u64::from(c) > expect / 2 && u64::from(c) < expect * 2));
    }

    #[test]
    fn hashes_differ_for_keys_differing_anywhere() {
        let base = b"\x10\x00\x00\x00\x00\x00\x00\x00\x07rowid-key".to_vec();
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(key_hash(&base)));
        for i in 0..base.len() {
            let mut k = base.clone();
            k[i] ^= 1;
            assert!(seen.insert(key_hash(&k)), "byte {i}");
        }
        assert!(seen.insert(key_hash(&base[..base.len() - 1])));
        assert!(seen.insert(key_hash(b"")));
    }
}
