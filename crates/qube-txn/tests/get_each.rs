//! `Transaction::get_each`, the batched point read of a SQL index scan's
//! rows, on the B+Tree engine (whose seeker keeps its path between keys):
//! every answer must be `get`'s, for keys in ascending, descending and
//! random order with repeats, over rows with several versions, deleted
//! rows, rows committed after the snapshot (REPEATABLE READ does not see
//! them, READ COMMITTED's next statement does), the transaction's own
//! uncommitted updates, deletes and inserts, and at SERIALIZABLE (key by
//! key, recorded for SSI).

use std::sync::Arc;

use qube_storage::{BTreeEngine, Durability, Engine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};

/// The rowid part of a row key under `PREFIX`.
fn rowid(i: u64) -> [u8; 8] {
    (i ^ (1 << 63)).to_be_bytes()
}

const PREFIX: &[u8] = &[0x10, 0, 0, 0, 0, 0, 0, 0, 7];

fn key(i: u64) -> Vec<u8> {
    [PREFIX, &rowid(i)].concat()
}

/// `get_each`'s answers, by place.
fn each(t: &mut Transaction, ids: &[u64]) -> Vec<Option<Vec<u8>>> {
    let keys: Vec<[u8; 8]> = ids.iter().map(|&i| rowid(i)).collect();
    let mut got = vec![None; ids.len()];
    t.get_each(PREFIX, &keys, |i, v| {
        assert!(got[i].is_none(), "place {i} answered twice");
        got[i] = Some(v.to_vec());
        Ok(())
    })
    .unwrap();
    got
}

fn one_by_one(t: &mut Transaction, ids: &[u64]) -> Vec<Option<Vec<u8>>> {
    ids.iter().map(|&i| t.get(&key(i)).unwrap()).collect()
}

/// Key orders to try: ascending, descending, random with repeats, and the
/// ids past the table's ends.
fn orders(n: u64) -> Vec<Vec<u64>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = Vec::new();
    for _ in 0..1_500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x % (n + 20));
    }
    let mut sorted = random.clone();
    sorted.sort_unstable();
    let desc: Vec<u64> = sorted.iter().rev().copied().collect();
    vec![(0..n).collect(), sorted, desc, random, vec![], vec![n + 5, 3, 3, n + 6]]
}

fn check(t: &mut Transaction, n: u64, what: &str) {
    for ids in orders(n) {
        assert_eq!(each(t, &ids), one_by_one(t, &ids), "{what}: {} keys", ids.len());
    }
}

#[test]
fn get_each_answers_as_get_does() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { durability: Durability::Never, ..Options::default() };
    let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts).unwrap());
    let mvcc =
        Mvcc::open(engine, MvccOptions { gc_interval: None, ..MvccOptions::default() }).unwrap();
    let rw = |iso| Mode::ReadWrite(iso);
    let n = 3_000u64;
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    for i in 0..n {
        // Some values long enough for overflow pages.
        let len = if i % 211 == 0 { 10_000 } else { 20 + (i % 30) as usize };
        t.set(&key(i), &vec![i as u8; len]).unwrap();
    }
    t.commit().unwrap();
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    for i in (0..n).step_by(3) {
        t.set(&key(i), format!("v2 {i}").as_bytes()).unwrap();
    }
    for i in (0..n).step_by(7) {
        t.delete(&key(i)).unwrap();
    }
    t.commit().unwrap();

    let mut rr = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    let mut rc = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    let mut ser = mvcc.begin(Mode::ReadOnly(Isolation::Serializable)).unwrap();
    check(&mut rr, n, "committed versions");
    let before = each(&mut rr, &(0..n + 10).collect::<Vec<_>>());

    // Committed by another transaction after the snapshots: updates,
    // deletes and new rows.
    let mut w = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    for i in (1..n).step_by(5) {
        w.set(&key(i), b"later").unwrap();
    }
    for i in (2..n).step_by(11) {
        w.delete(&key(i)).unwrap();
    }
    for i in n..n + 10 {
        w.set(&key(i), b"new row").unwrap();
    }
    w.commit().unwrap();
    check(&mut rr, n, "repeatable read after a commit");
    assert_eq!(each(&mut rr, &(0..n + 10).collect::<Vec<_>>()), before);
    check(&mut rc, n, "read committed, same statement");
    rc.new_statement();
    check(&mut rc, n, "read committed, next statement");
    assert_eq!(each(&mut rc, &[1, n + 1]), [Some(b"later".to_vec()), Some(b"new row".to_vec())]);
    check(&mut ser, n, "serializable");

    // Own uncommitted writes: updates, deletes, inserts.
    let mut own = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    for i in (0..n).step_by(4) {
        own.set(&key(i), b"mine").unwrap();
    }
    for i in (1..n).step_by(9) {
        own.delete(&key(i)).unwrap();
    }
    own.set(&key(n + 12), b"my new row").unwrap();
    check(&mut own, n, "own writes");
    let got = each(&mut own, &[4, 1, n + 12]);
    assert_eq!(got, [Some(b"mine".to_vec()), None, Some(b"my new row".to_vec())]);
    own.rollback();
    rr.rollback();
    rc.rollback();
    ser.commit().unwrap();
}
