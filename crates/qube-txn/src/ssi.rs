//! Serializable snapshot isolation (SSI), after Cahill, Röhm and Fekete
//! (SIGMOD 2008) and PostgreSQL's implementation (Ports and Grittner, VLDB
//! 2012).
//!
//! Snapshot isolation allows exactly the anomalies whose dependency graph
//! has two consecutive read-write anti-dependencies between concurrent
//! transactions:
//!
//! ```text
//!   T_in ──rw──▶ T_pivot ──rw──▶ T_out        (T_out commits first)
//! ```
//!
//! `A ──rw──▶ B` means A read a version of some key and B, concurrently,
//! wrote a newer one. This module records such edges among SERIALIZABLE
//! transactions and rolls one back (`Error::Serialization`, 40001) when a
//! structure completes:
//!
//! * a transaction with an incoming edge cannot commit once one of its
//!   outgoing edges leads to a transaction that already committed (it is a
//!   pivot whose T_out committed first);
//! * a transaction that gains an edge to a committed pivot whose own T_out
//!   committed before the pivot is rolled back (it is T_in of a completed
//!   structure, the only member left that can be).
//!
//! Edges are found three ways: a reader meets a version newer than its
//! snapshot (`on_newer` with the writer's commit timestamp), a reader meets
//! a key locked by an uncommitted writer (`on_locked_by`), and a writer
//! meets SIREAD marks (`mark_read`, `on_scan`) left by readers of the key or
//! of a scanned range containing it (`on_write`, and again at `commit`). SIREAD marks and the records of
//! committed transactions are kept until no transaction that overlapped
//! them is still running.
//!
//! All state sits behind one mutex: only SERIALIZABLE transactions pay for it.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use parking_lot::Mutex;
use qube_common::{Error, Result};

use crate::keys::Ts;
use crate::locks::TxnId;

#[derive(Default)]
struct Entry {
    read_ts: Ts,
    commit_ts: Option<Ts>,
    in_from: HashSet<TxnId>,
    out_to: HashSet<TxnId>,
    keys: Vec<Vec<u8>>,
    /// Set when another transaction's action completed a dangerous
    /// structure with this one as the only member that can still roll back.
    doomed: Option<String>,
}

/// A range a transaction scanned: (start, end, reader).
type ScannedRange = (Bound<Vec<u8>>, Bound<Vec<u8>>, TxnId);

#[derive(Default)]
struct State {
    txns: HashMap<TxnId, Entry>,
    by_commit: HashMap<Ts, TxnId>,
    sireads: HashMap<Vec<u8>, Vec<TxnId>>,
    ranges: Vec<ScannedRange>,
}

#[derive(Default)]
pub struct Ssi {
    state: Mutex<State>,
}

fn in_range(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let after = match lo {
        Bound::Included(s) => key >= s.as_slice(),
        Bound::Excluded(s) => key > s.as_slice(),
        Bound::Unbounded => true,
    };
    let before = match hi {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    };
    after && before
}

impl State {
    /// Records `reader ──rw──▶ writer` and dooms whoever must go.
    fn edge(&mut self, reader: TxnId, writer: TxnId) {
        if reader == writer {
            return;
        }
        let (Some(r), Some(w)) = (self.txns.get(&reader), self.txns.get(&writer)) else { return };
        // Not concurrent: the writer committed before the reader's snapshot.
        if w.commit_ts.is_some_and(|c| c <= r.read_ts) {
            return;
        }
        // The reader committed before the writer started: not concurrent.
        if r.commit_ts.is_some_and(|c| c <= w.read_ts) {
            return;
        }
        let writer_committed = w.commit_ts;
        let writer_out_first = w.out_to.iter().any(|o| match self.txns.get(o) {
            Some(e) => e.commit_ts.is_some_and(|oc| writer_committed.is_some_and(|wc| oc < wc)),
            // Pruned: committed before every running snapshot; count it as
            // first (the safe answer).
            None => writer_committed.is_some(),
        });
        if let Some(r) = self.txns.get_mut(&reader) {
            r.out_to.insert(writer);
            // The writer is a committed pivot whose T_out committed first:
            // the reader is T_in of a complete dangerous structure.
            if writer_committed.is_some() && writer_out_first && r.commit_ts.is_none() {
                r.doomed.get_or_insert_with(|| {
                    format!("read/write dependencies among transactions (pivot {writer} committed)")
                });
            }
        }
        if let Some(w) = self.txns.get_mut(&writer) {
            w.in_from.insert(reader);
        }
    }

    fn check(&self, txn: TxnId) -> Result<()> {
        let Some(e) = self.txns.get(&txn) else { return Ok(()) };
        if let Some(why) = &e.doomed {
            return Err(Error::Serialization(why.clone()));
        }
        Ok(())
    }
}

impl Ssi {
    pub fn begin(&self, txn: TxnId, read_ts: Ts) {
        self.state.lock().txns.insert(txn, Entry { read_ts, ..Entry::default() });
    }

    /// `txn` met versions newer than its snapshot, committed at `newer`.
    pub fn on_newer(&self, txn: TxnId, newer: &[Ts]) -> Result<()> {
        let mut st = self.state.lock();
        for ts in newer {
            if let Some(&w) = st.by_commit.get(ts) {
                st.edge(txn, w);
            }
        }
        st.check(txn)
    }

    /// `txn` scanned a range: a later write into it by a concurrent
    /// transaction is an rw-edge (this is what catches phantoms).
    pub fn on_scan(&self, txn: TxnId, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) {
        self.state.lock().ranges.push((lo, hi, txn));
    }

    /// `txn` is about to write `key`.
    pub fn on_write(&self, txn: TxnId, key: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        let mut readers: Vec<TxnId> = st.sireads.get(key).cloned().unwrap_or_default();
        readers.extend(st.ranges.iter().filter(|(lo, hi, _)| in_range(key, lo, hi)).map(|r| r.2));
        for r in readers {
            st.edge(r, txn);
        }
        st.check(txn)
    }

    /// Commit-time check; on success records the commit timestamp. The
    /// written keys are checked once more against SIREAD marks, for readers
    /// that came after the write.
    pub fn commit<'k>(
        &self,
        txn: TxnId,
        commit_ts: Ts,
        written: impl Iterator<Item = &'k [u8]>,
    ) -> Result<()> {
        let mut st = self.state.lock();
        let mut wrote = false;
        for key in written {
            wrote = true;
            let mut readers: Vec<TxnId> = st.sireads.get(key).cloned().unwrap_or_default();
            readers
                .extend(st.ranges.iter().filter(|(lo, hi, _)| in_range(key, lo, hi)).map(|r| r.2));
            for r in readers {
                st.edge(r, txn);
            }
        }
        st.check(txn)?;
        if let Some(e) = st.txns.get(&txn)
            && !e.in_from.is_empty()
        {
            // An edge to a transaction no longer tracked points to one that
            // committed and was pruned (aborted ones are unlinked).
            let committed_out =
                e.out_to.iter().find(|o| st.txns.get(o).is_none_or(|x| x.commit_ts.is_some()));
            if let Some(o) = committed_out {
                return Err(Error::Serialization(format!(
                    "read/write dependencies among transactions: {txn} is a pivot between \
                     concurrent transactions and {o} committed first"
                )));
            }
        }
        if let Some(e) = st.txns.get_mut(&txn) {
            e.commit_ts = Some(commit_ts);
        }
        // A transaction that wrote nothing "commits" at its snapshot and
        // must not take the place of that timestamp's real writer.
        if wrote {
            st.by_commit.insert(commit_ts, txn);
        }
        Ok(())
    }

    /// Forgets a transaction that rolled back.
    pub fn abort(&self, txn: TxnId) {
        let mut st = self.state.lock();
        if let Some(e) = st.txns.remove(&txn) {
            forget_reads(&mut st, txn, &e.keys);
            for other in e.in_from.iter().chain(e.out_to.iter()) {
                if let Some(o) = st.txns.get_mut(other) {
                    o.in_from.remove(&txn);
                    o.out_to.remove(&txn);
                }
            }
        }
    }

    /// Records that `txn` read `key` (a SIREAD mark), before it looks.
    pub fn mark_read(&self, txn: TxnId, key: &[u8]) {
        let mut st = self.state.lock();
        let readers = st.sireads.entry(key.to_vec()).or_default();
        if !readers.contains(&txn) {
            readers.push(txn);
            if let Some(e) = st.txns.get_mut(&txn) {
                e.keys.push(key.to_vec());
            }
        }
    }

    /// Adds `txn ──rw──▶ w` for uncommitted writers `w` of what it reads.
    pub fn on_locked_by(&self, txn: TxnId, writers: &[TxnId]) -> Result<()> {
        let mut st = self.state.lock();
        for &w in writers {
            st.edge(txn, w);
        }
        st.check(txn)
    }

    /// Drops committed transactions that no running one overlaps: their
    /// commit is older than every running transaction's snapshot.
    pub fn prune(&self, oldest_active_read_ts: Ts) {
        let mut st = self.state.lock();
        let old: Vec<TxnId> = st
            .txns
            .iter()
            .filter(|(_, e)| e.commit_ts.is_some_and(|c| c <= oldest_active_read_ts))
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(e) = st.txns.remove(&id) {
                if let Some(c) = e.commit_ts {
                    st.by_commit.remove(&c);
                }
                forget_reads(&mut st, id, &e.keys);
            }
        }
    }

    /// Transactions tracked (for status and tests).
    pub fn tracked(&self) -> usize {
        self.state.lock().txns.len()
    }
}

fn forget_reads(st: &mut State, txn: TxnId, keys: &[Vec<u8>]) {
    for k in keys {
        if let Some(v) = st.sireads.get_mut(k) {
            v.retain(|t| *t != txn);
            if v.is_empty() {
                st.sireads.remove(k);
            }
        }
    }
    st.ranges.retain(|r| r.2 != txn);
}
