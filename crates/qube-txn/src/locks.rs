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
//! The table is one ordered map from key to owner, since SERIALIZABLE
//! scans ask which transactions hold locks in a key range (`owners_in`).
//! (A hash map with an ordered copy built only for such scans was tried
//! for bulk loads and measured slower: SipHash and the rehashing of a
//! million keys cost more than the ordered inserts, see bench/README.md.)

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use qube_common::{Error, Result};

/// Identifies a transaction while it runs (not a commit timestamp).
pub type TxnId = u64;

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

#[derive(Default)]
struct State {
    owners: BTreeMap<Vec<u8>, TxnId>,
    /// Waiting transaction → the owner it waits for.
    waits_for: HashMap<TxnId, TxnId>,
}

#[derive(Default)]
pub struct LockTable {
    state: Mutex<State>,
    freed: Condvar,
}

impl LockTable {
    /// Takes the lock of `key` for `txn`, waiting while another transaction
    /// holds it (at most `timeout`, if given). Returns true if newly taken,
    /// false if `txn` already held it. `on_block(true)` is called before the
    /// caller blocks and `on_block(false)` after it wakes (MVCC tells the
    /// engine's group commit not to wait for a blocked writer). A timeout is
    /// SQLSTATE 55P03 (lock_not_available), as PostgreSQL's `lock_timeout`.
    pub fn lock(
        &self,
        txn: TxnId,
        key: &[u8],
        timeout: Option<Duration>,
        mut on_block: impl FnMut(bool),
    ) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock();
        loop {
            let owner = match st.owners.get(key) {
                None => {
                    st.owners.insert(key.to_vec(), txn);
                    return Ok(true);
                }
                Some(&o) if o == txn => return Ok(false),
                Some(&o) => o,
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
            if timed_out && st.owners.get(key).is_some_and(|&o| o != txn) {
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

    /// The transaction holding `key`'s lock, if any.
    pub fn owner(&self, key: &[u8]) -> Option<TxnId> {
        self.state.lock().owners.get(key).copied()
    }

    /// The transactions holding locks on keys in a range (other than `txn`).
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
            .owners
            .range::<Vec<u8>, _>((lo.clone(), hi.clone()))
            .map(|(_, o)| *o)
            .filter(|o| *o != txn)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Releases the locks of `txn` — `keys` are all the locks it holds —
    /// and wakes the waiters.
    pub fn release(&self, txn: TxnId, keys: &KeyList) {
        if keys.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        if keys.len() >= st.owners.len() / 4 {
            // Most of the table (a bulk load): one pass over it costs less
            // than a lookup per key.
            st.owners.retain(|_, o| *o != txn);
        } else {
            for k in keys.iter() {
                if st.owners.get(k) == Some(&txn) {
                    st.owners.remove(k);
                }
            }
        }
        drop(st);
        self.freed.notify_all();
    }

    /// Number of locks held (for status and tests).
    pub fn held(&self) -> usize {
        self.state.lock().owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn keys(ks: &[&[u8]]) -> KeyList {
        let mut l = KeyList::default();
        for k in ks {
            l.push(k);
        }
        l
    }

    #[test]
    fn owners_in_ranges_follow_locks_and_releases() {
        let t = LockTable::default();
        let range = |a: &[u8], b: &[u8]| (Bound::Included(a.to_vec()), Bound::Excluded(b.to_vec()));
        t.lock(1, b"a1", None, |_| {}).unwrap();
        t.lock(2, b"b1", None, |_| {}).unwrap();
        let (lo, hi) = range(b"a", b"c");
        assert_eq!(t.owners_in(9, &lo, &hi), [1, 2]);
        assert_eq!(t.owners_in(1, &lo, &hi), [2]);
        // Locks taken and released after a range question.
        t.lock(3, b"b2", None, |_| {}).unwrap();
        let (lo, hi) = range(b"b", b"c");
        assert_eq!(t.owners_in(9, &lo, &hi), [2, 3]);
        t.release(2, &keys(&[b"b1"]));
        assert_eq!(t.owners_in(9, &lo, &hi), [3]);
        assert_eq!(t.owner(b"b1"), None);
        // Emptied, then filled again.
        t.release(1, &keys(&[b"a1"]));
        t.release(3, &keys(&[b"b2"]));
        assert_eq!(t.held(), 0);
        t.lock(4, b"b3", None, |_| {}).unwrap();
        assert_eq!(t.owners_in(9, &lo, &hi), [4]);
        assert_eq!(t.owners_in(9, &Bound::Unbounded, &Bound::Excluded(b"b".to_vec())), []);
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
    fn second_writer_waits_until_release() {
        let t = Arc::new(LockTable::default());
        assert!(t.lock(1, b"k", None, |_| {}).unwrap());
        assert!(!t.lock(1, b"k", None, |_| {}).unwrap());
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || t2.lock(2, b"k", None, |_| {}).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.owner(b"k"), Some(1));
        t.release(1, &keys(&[b"k"]));
        assert!(waiter.join().unwrap());
        assert_eq!(t.owner(b"k"), Some(2));
    }

    #[test]
    fn a_blocked_waiter_is_announced_and_a_timeout_is_55p03() {
        let t = LockTable::default();
        t.lock(1, b"k", None, |_| {}).unwrap();
        let mut calls = Vec::new();
        let err = t.lock(2, b"k", Some(Duration::from_millis(20)), |b| calls.push(b)).unwrap_err();
        assert_eq!(err.sqlstate(), "55P03", "{err}");
        assert!(!err.is_retryable());
        assert_eq!(calls, [true, false], "blocked, then woke");
        // Not blocked: no calls.
        let mut calls = Vec::new();
        assert!(t.lock(2, b"free", None, |b| calls.push(b)).unwrap());
        assert!(calls.is_empty());
    }

    #[test]
    fn deadlock_is_detected_for_the_second_waiter() {
        let t = Arc::new(LockTable::default());
        t.lock(1, b"a", None, |_| {}).unwrap();
        t.lock(2, b"b", None, |_| {}).unwrap();
        let t1 = t.clone();
        let first = std::thread::spawn(move || t1.lock(1, b"b", None, |_| {}));
        std::thread::sleep(Duration::from_millis(50));
        let err = t.lock(2, b"a", None, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Deadlock(_)), "{err}");
        t.release(2, &keys(&[b"b"]));
        assert!(first.join().unwrap().unwrap());
    }
}
