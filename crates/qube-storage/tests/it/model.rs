//! Model-based tests: random operations on the B+Tree engine and the memory
//! engine, compared after every step.

use std::ops::Bound;

use proptest::prelude::*;
use qube_storage::{BTreeEngine, Direction, Engine, KeyRange, MemoryEngine, SeekHint, WriteBatch};

use crate::common;

#[derive(Debug, Clone)]
enum Step {
    Set(Vec<u8>, usize),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<usize>)>),
    Get(Vec<u8>),
    Scan(Option<Vec<u8>>, Option<Vec<u8>>, bool),
    /// `Engine::seek` with an inclusive or exclusive start.
    Seek(Vec<u8>, bool, Option<Vec<u8>>),
    Checkpoint,
    /// Close cleanly (checkpoint) and reopen.
    Reopen,
    /// Flush the WAL, then drop without a checkpoint: reopening replays the WAL.
    Crash,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Few distinct keys: many overwrites and deletes of existing keys.
        (0u8..40).prop_map(|i| vec![b'k', i]),
        // Long keys with a shared prefix force deep trees and splits.
        (0u16..400).prop_map(|i| {
            let mut k = vec![b'p'; 300];
            k.extend_from_slice(&i.to_be_bytes());
            k
        }),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..200, 2 => 200usize..3000, 1 => 3000usize..40_000]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (key(), value_len()).prop_map(|(k, v)| Step::Set(k, v)),
        10 => key().prop_map(Step::Delete),
        10 => prop::collection::vec((key(), prop::option::weighted(0.7, value_len())), 1..60)
            .prop_map(Step::Batch),
        10 => key().prop_map(Step::Get),
        8 => (prop::option::of(key()), prop::option::of(key()), any::<bool>())
            .prop_map(|(a, b, r)| Step::Scan(a, b, r)),
        6 => (key(), any::<bool>(), prop::option::of(key())).prop_map(|(a, inc, b)| Step::Seek(a, inc, b)),
        2 => Just(Step::Checkpoint),
        2 => Just(Step::Reopen),
        2 => Just(Step::Crash),
    ]
}

fn value(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ salt) as u8).collect()
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(common::open(dir.path(), 256 << 10));
    let model = MemoryEngine::new();
    // One hint for every seek of the run, across writes and reopens.
    let mut hint = SeekHint::default();
    for (n, s) in steps.into_iter().enumerate() {
        let e = db.as_ref().unwrap();
        match s {
            Step::Set(k, len) => {
                let v = value(len, n);
                e.set(&k, &v).unwrap();
                model.set(&k, &v).unwrap();
            }
            Step::Delete(k) => {
                e.delete(&k).unwrap();
                model.delete(&k).unwrap();
            }
            Step::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (i, (k, v)) in ops.into_iter().enumerate() {
                    match v {
                        Some(len) => b.set(&k, &value(len, n * 100 + i)),
                        None => b.delete(&k),
                    };
                }
                e.write(b.clone()).unwrap();
                model.write(b).unwrap();
            }
            Step::Get(k) => assert_eq!(e.get(&k).unwrap(), model.get(&k).unwrap(), "step {n}"),
            Step::Scan(a, b, rev) => {
                let range = KeyRange {
                    start: a.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included),
                    end: b.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                };
                let dir = if rev { Direction::Reverse } else { Direction::Forward };
                let got = e.scan(range.clone(), dir).unwrap().collect_pairs().unwrap();
                let want = model.scan(range, dir).unwrap().collect_pairs().unwrap();
                assert_eq!(got, want, "step {n}");
            }
            Step::Seek(a, inclusive, b) => {
                let range = KeyRange {
                    start: if inclusive {
                        std::ops::Bound::Included(a)
                    } else {
                        std::ops::Bound::Excluded(a)
                    },
                    end: b.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                };
                let (mut k1, mut v1, mut k2, mut v2) = (vec![9], vec![9], vec![9], vec![9]);
                let got = e.seek(&range, &mut k1, &mut v1).unwrap();
                let want = model.seek(&range, &mut k2, &mut v2).unwrap();
                assert_eq!(got, want, "step {n}");
                if got {
                    assert_eq!((&k1, &v1), (&k2, &v2), "step {n}");
                }
                let hinted = e.seek_latest_hinted(&range, &mut k1, &mut v1, &mut hint).unwrap();
                assert_eq!(hinted, want, "step {n}, hinted");
                if hinted {
                    assert_eq!((k1, v1), (k2, v2), "step {n}, hinted");
                }
            }
            Step::Checkpoint => e.checkpoint().unwrap(),
            Step::Reopen => {
                let e = db.take().unwrap();
                e.close().unwrap();
                db = Some(common::open(dir.path(), 256 << 10));
            }
            Step::Crash => {
                let e = db.take().unwrap();
                e.flush().unwrap();
                drop(e);
                db = Some(common::open(dir.path(), 256 << 10));
            }
        }
    }
    let e = db.take().unwrap();
    let all = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    let want = model.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert_eq!(all, want);
    assert_eq!(e.status().unwrap().keys, want.len() as u64);
    let report = e.verify().unwrap();
    assert_eq!(report.keys, want.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("QUBE_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn btree_matches_memory_engine(steps in prop::collection::vec(step(), 1..120)) {
        run(steps);
    }
}

/// A long deterministic run with many keys: exercises multi-level splits and
/// merges that short proptest cases rarely reach.
#[test]
fn many_keys_insert_delete_reinsert() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let model = MemoryEngine::new();
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..3 {
        for _ in 0..20 {
            let mut b = WriteBatch::new();
            for _ in 0..500 {
                let k = (next() % 20_000).to_be_bytes();
                if next() % 4 == 0 {
                    b.delete(&k);
                } else {
                    b.set(&k, &value((next() % 300) as usize, round));
                }
            }
            e.write(b.clone()).unwrap();
            model.write(b).unwrap();
        }
        e.checkpoint().unwrap();
        let got = e.scan(KeyRange::all(), Direction::Reverse).unwrap().collect_pairs().unwrap();
        let want =
            model.scan(KeyRange::all(), Direction::Reverse).unwrap().collect_pairs().unwrap();
        assert_eq!(got, want);
        e.verify().unwrap();
    }
}

/// Sorted batches, as the MVCC layer writes them: most inserts go straight
/// into the leaf of the previous one (`write.rs`, the remembered leaf).
/// Mixed in: keys that exist already (replaced), deletes in the middle of
/// a batch, values that go to overflow pages, a pool small enough that a
/// batch's pages spill, and several runs of keys (as a table's rows and
/// its indexes) so that a run ends where the next leaf's range begins.
#[test]
fn sorted_batches_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    let mut rng = 0x9e37_79b9_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..4u64 {
        let mut ops = std::collections::BTreeMap::new();
        for run in [b'a', b'm', b'z'] {
            for i in 0..6_000u64 {
                // Every round writes new keys and rewrites some old ones.
                let n =
                    if next() % 5 == 0 { next() % (6_000 * (round + 1)) } else { i * 4 + round };
                let mut k = vec![run, 0x10];
                k.extend_from_slice(&n.to_be_bytes());
                let op = match next() % 50 {
                    0..=2 => None,
                    3 => Some(3_000 + (next() % 6_000) as usize),
                    _ => Some((next() % 120) as usize),
                };
                ops.insert(k, op);
            }
        }
        let mut b = WriteBatch::new();
        for (i, (k, op)) in ops.iter().enumerate() {
            match op {
                Some(len) => b.set(k, &value(*len, i + round as usize)),
                None => b.delete(k),
            };
        }
        e.write(b.clone()).unwrap();
        model.write(b).unwrap();
        same_as_model(&e, &model, round);
        if round == 1 {
            e.checkpoint().unwrap();
        }
    }
}

/// Sorted batches of deletions, as the MVCC garbage collector writes them:
/// long runs of neighbouring keys (a hot row's old versions), keys that do
/// not exist between them, runs that empty whole leaves (merges), values
/// on overflow pages among them, and sets mixed in. A deletion that lands
/// in the leaf the previous one changed skips the descent; the tree must
/// match the model and verify after every batch.
#[test]
fn sorted_delete_runs_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    let key = |row: u64, version: u64| {
        let mut k = vec![b'v'];
        k.extend_from_slice(&row.to_be_bytes());
        k.extend_from_slice(&(!version).to_be_bytes());
        k
    };
    let mut b = WriteBatch::new();
    for row in 0..40u64 {
        for version in 0..(if row % 7 == 0 { 900 } else { 60 }) {
            let len = if version % 97 == 5 { 5_000 } else { 40 };
            b.set(&key(row, version), &value(len, (row + version) as usize));
        }
    }
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    for round in 0..4u64 {
        let mut b = WriteBatch::new();
        for row in 0..40u64 {
            let versions = if row % 7 == 0 { 900 } else { 60 };
            for version in 0..versions + 3 {
                // Keep the newest few; delete the rest, and some keys that
                // were never there (version ≥ versions) or went earlier.
                let keep = version + 4 * (4 - round) >= versions && version < versions;
                if !keep && (round == 3 || (version + row + round) % 3 != 0) {
                    b.delete(&key(row, version));
                } else if row % 5 == round {
                    b.set(&key(row, version), &value(30, (round * row) as usize));
                }
            }
        }
        e.write(b.clone()).unwrap();
        model.write(b).unwrap();
        same_as_model(&e, &model, round);
    }
}

/// The engine holds exactly the model's pairs, counts them, and verifies.
fn same_as_model(e: &BTreeEngine, model: &MemoryEngine, round: u64) {
    let got = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    let want = model.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert_eq!(got, want, "round {round}");
    assert_eq!(e.status().unwrap().keys, want.len() as u64);
    assert_eq!(e.verify().unwrap().keys, want.len() as u64);
}

/// `seek_latest_hinted` as MVCC's unique checks use it: one hint for a
/// long series of seeks of version-prefix ranges (`key 00 00` to
/// `key 00 01`) in ascending order, most of them for keys absent from the
/// tree (a bulk load into a new table, between and after other tables'
/// keys), some present, some with values on overflow pages, and other
/// range shapes mixed in; batches change the tree between series. Every
/// answer must be the model's.
#[test]
fn hinted_seeks_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    let vkey = |table: u8, row: u64, ts: u64| {
        let mut k = vec![0x10, table];
        k.extend_from_slice(&row.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k.extend_from_slice(&(!ts).to_be_bytes());
        k
    };
    let prefix = |table: u8, row: u64| {
        let mut k = vec![0x10, table];
        k.extend_from_slice(&row.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    };
    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
    let mut hint = SeekHint::default();
    for round in 0..6u64 {
        // Tables 1 and 3 hold rows; table 2 (between them) fills up
        // round by round, every third row (one in 40 on overflow pages).
        let mut b = WriteBatch::new();
        for row in 0..300u64 {
            let t = [1, 3][(row % 2) as usize];
            b.set(&vkey(t, row + round * 1_000, round), &value(20, row as usize));
        }
        for row in (round * 3_000..(round + 1) * 3_000).step_by(3) {
            let len = if row % 40 == 0 { 9_000 } else { 30 };
            b.set(&vkey(2, row, round), &value(len, row as usize));
        }
        if round > 0 {
            b.delete(&vkey(2, (round - 1) * 3_000 + 3, round - 1));
        }
        e.write(b.clone()).unwrap();
        model.write(b).unwrap();
        let (mut k1, mut v1, mut k2, mut v2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in 0..(round + 2) * 3_000 {
            let start = prefix(2, row);
            let mut end = start.clone();
            *end.last_mut().unwrap() = 1;
            let range = match rng.next() % 50 {
                0 => KeyRange { start: Bound::Excluded(start), end: Bound::Unbounded },
                1 => KeyRange { start: Bound::Included(start), end: Bound::Unbounded },
                2 => KeyRange { start: Bound::Included(start), end: Bound::Included(end) },
                3 => KeyRange { start: Bound::Unbounded, end: Bound::Excluded(end) },
                _ => KeyRange { start: Bound::Included(start), end: Bound::Excluded(end) },
            };
            let got = e.seek_latest_hinted(&range, &mut k1, &mut v1, &mut hint).unwrap();
            let want = model.seek(&range, &mut k2, &mut v2).unwrap();
            assert_eq!(got, want, "round {round} row {row} {range:?}");
            if got {
                assert_eq!((&k1, &v1), (&k2, &v2), "round {round} row {row}");
            }
        }
        if round == 3 {
            e.checkpoint().unwrap();
        }
    }
}

/// Batches that append past the tree's last key (a sequential load: full
/// leaves stay as they are and the key starts a new right sibling, which
/// the batch's next key finds through the remembered leaf) and ascending
/// runs into the gap before other keys (the leaf is cut after the new key),
/// mixed with keys replaced at a leaf's end with longer values, inserts
/// between existing keys, values on overflow pages and deletes: the tree
/// must match the model and verify after every batch.
#[test]
fn appends_past_the_last_key_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    let key = |t: u8, i: u64| {
        let mut k = vec![t];
        k.extend_from_slice(&i.to_be_bytes());
        k
    };
    // Keys after the gap the 'r' run fills.
    let mut b = WriteBatch::new();
    for i in 0..300u64 {
        b.set(&key(b's', i), &value(30, i as usize));
    }
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    let (mut next, mut tail) = (0u64, 0u64);
    for round in 0..5u64 {
        let mut b = WriteBatch::new();
        if round > 0 {
            // The current last key again, longer: its leaf may not fit it.
            b.set(&key(b'r', next - 1), &value(3_000, round as usize));
            b.set(&key(b't', tail - 1), &value(3_000, round as usize));
            // Between existing keys.
            for i in (round..next).step_by(97) {
                b.set(&key(b'r', i), &value(60, i as usize));
            }
            b.delete(&key(b'r', next / 2));
        }
        for _ in 0..4_000 {
            let len = match next % 211 {
                0 => 9_000,
                1 => 1_500,
                _ => 20 + (next % 50) as usize,
            };
            b.set(&key(b'r', next), &value(len, next as usize));
            next += 1;
            if next % 1_000 == 999 {
                // A replaced key right after it was appended.
                b.set(&key(b'r', next - 1), &value(2_500, 7));
            }
        }
        for _ in 0..2_000 {
            // Past every key of the tree.
            b.set(&key(b't', tail), &value(20 + (tail % 70) as usize, tail as usize));
            tail += 1;
        }
        e.write(b.clone()).unwrap();
        model.write(b).unwrap();
        same_as_model(&e, &model, round);
    }
}

/// A sequential load leaves its leaves 90% full (`APPEND_FILL`), so that
/// new versions inserted next to the loaded keys (an UPDATE of a loaded
/// table) find room: one new key per leaf splits no leaf. A load spread
/// over many batches (a remembered leaf lost between them) behaves alike.
#[test]
fn sequential_loads_leave_room_in_their_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 8 << 20);
    let model = MemoryEngine::new();
    let key = |t: u8, i: u64, v: u8| {
        let mut k = vec![t];
        k.extend_from_slice(&i.to_be_bytes());
        k.push(v);
        k
    };
    for (t, batches) in [(b'a', 1u64), (b'b', 20)] {
        let per = 20_000 / batches;
        for n in 0..batches {
            let mut b = WriteBatch::new();
            for i in n * per..(n + 1) * per {
                b.set(&key(t, i, 1), &value(90, i as usize));
            }
            e.write(b.clone()).unwrap();
            model.write(b).unwrap();
        }
    }
    let loaded = e.verify().unwrap();
    assert!(
        (80..=91).contains(&loaded.fill_percent),
        "a sequential load fills leaves to about 90%: {loaded:?}"
    );
    // One new key (a newer version) after every 60th loaded key: about one
    // per leaf.
    let mut b = WriteBatch::new();
    for t in [b'a', b'b'] {
        for i in (0..20_000u64).step_by(60) {
            b.set(&key(t, i, 0), &value(90, 7));
        }
    }
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    let updated = e.verify().unwrap();
    assert_eq!(updated.leaf_pages, loaded.leaf_pages, "{loaded:?} then {updated:?}");
    let (mut k1, mut k2) = (Vec::new(), Vec::new());
    let all = KeyRange { start: Bound::Unbounded, end: Bound::Unbounded };
    let (mut c1, mut c2) = (
        e.scan(all.clone(), Direction::Forward).unwrap(),
        model.scan(all, Direction::Forward).unwrap(),
    );
    loop {
        let (a, b) = (c1.advance().unwrap(), c2.advance().unwrap());
        assert_eq!(a, b);
        if !a {
            break;
        }
        k1.clear();
        k1.extend_from_slice(c1.key());
        k2.clear();
        k2.extend_from_slice(c2.key());
        assert_eq!((&k1, c1.value()), (&k2, c2.value()));
    }
}

/// `Engine::seeker` as MVCC's batched row fetch uses it: seeks of
/// `prefix ‖ suffix` that must find a key with the prefix, in ascending,
/// descending and random order, over a tree of several levels (long keys
/// with a shared head), with keys of several versions (suffixes), values
/// on overflow pages, deleted keys, prefixes that fall in the gaps between
/// leaves and after the last key. Every answer must be the model's
/// `seek` of the range from the start to the prefix's successor, for the
/// B+Tree's seeker and the memory engine's (the default, one seek each);
/// and a seeker keeps reading the snapshot it was opened on.
#[test]
fn seekers_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    // A head long enough that a few hundred keys make three levels.
    let prefix = |row: u64| {
        let mut k = vec![b'h'; 200];
        k.extend_from_slice(&row.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    };
    let version = |row: u64, ts: u64| {
        let mut k = prefix(row);
        k.extend_from_slice(&(!ts).to_be_bytes());
        k
    };
    let mut b = WriteBatch::new();
    for row in (0..3_000u64).filter(|r| r % 5 != 4) {
        for ts in 1..=1 + row % 3 {
            let len = if row % 97 == 0 { 9_000 } else { 10 + (row % 40) as usize };
            b.set(&version(row, ts * 10), &value(len, (row * 7 + ts) as usize));
        }
    }
    // Keys around the head that share no prefix with the seeks.
    b.set(b"a", b"before");
    b.set(&[b'h'; 201], b"in the head");
    b.set(b"z", b"after");
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    let mut b = WriteBatch::new();
    for row in (0..3_000u64).step_by(13) {
        b.delete(&version(row, 10));
    }
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    e.checkpoint().unwrap();

    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    let mut rows: Vec<u64> = (0..3_100).map(|_| rng.next() % 3_050).collect();
    let ascending = {
        let mut r = rows.clone();
        r.sort_unstable();
        r
    };
    let descending: Vec<u64> = ascending.iter().rev().copied().collect();
    rows.truncate(600);
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut check = |order: &[u64], e: &dyn Engine, what: &str| {
        let mut s = e.seeker().unwrap();
        for &row in order {
            let ts = rng.next() % 40;
            let start = version(row, ts);
            let plen = prefix(row).len();
            let end = qube_storage::prefix_successor(&start[..plen]).unwrap();
            let range =
                KeyRange { start: Bound::Included(start.clone()), end: Bound::Excluded(end) };
            let want = model.seek(&range, &mut k, &mut v).unwrap().then(|| v.clone());
            let got = s.seek(&start, plen).unwrap().map(<[u8]>::to_vec);
            assert_eq!(got, want, "{what}: row {row} ts {ts}");
        }
    };
    check(&ascending, &e, "ascending");
    check(&descending, &e, "descending");
    check(&rows, &e, "random");
    check(&rows, &model, "memory engine");

    // The seeker reads the tree as it was when opened.
    let mut s = e.seeker().unwrap();
    let start = version(5, 1_000);
    let plen = prefix(5).len();
    let before = s.seek(&start, plen).unwrap().map(<[u8]>::to_vec);
    assert!(before.is_some());
    let mut b = WriteBatch::new();
    b.set(&version(5, 999), b"newer");
    for ts in 1..4 {
        b.delete(&version(5, ts * 10));
    }
    e.write(b).unwrap();
    assert_eq!(s.seek(&version(4, 1_000), prefix(4).len()).unwrap(), None);
    assert_eq!(s.seek(&start, plen).unwrap().map(<[u8]>::to_vec), before);
    assert_eq!(e.seeker().unwrap().seek(&start, plen).unwrap(), Some(&b"newer"[..]));
    // A prefix longer than its start is an error, not a panic.
    assert!(s.seek(b"ab", 3).is_err());
}
