//! Scans decode each version key from the one before
//! (`keys::decode_version_after`, `ScanKey::user_key_after`): keys shaped
//! like SQL index entries (an index prefix, big-endian integers full of
//! zero bytes, values at the type's extremes, 0xFF bytes) must come back
//! exactly as written, in both directions, over deleted and updated keys,
//! versions newer than the snapshot, the transaction's own uncommitted
//! writes, empty ranges and sub-ranges, on the memory and B+Tree engines.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};

std::thread_local! {
    /// The first byte of `entry`'s keys: 0x03 (escaped in version keys),
    /// or 0x11 (a prefix-free keyspace's, stored as it is: `entry`'s keys
    /// are all of one length, so none is a prefix of another).
    static TAG: std::cell::Cell<u8> = const { std::cell::Cell::new(0x03) };
}

/// An index entry's key: prefix, one integer column (order-preservingly
/// flipped), the rowid.
fn entry(val: i64, rowid: u64) -> Vec<u8> {
    let mut k = vec![TAG.get(), 0, 0, 0, 0, 0, 0, 0, 9, 1];
    k.extend_from_slice(&((val as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&rowid.to_be_bytes());
    k
}

fn vals() -> Vec<i64> {
    let mut v: Vec<i64> = (-40..40).collect();
    v.extend([i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 255, 256, 65535, 65536, -256]);
    // Pairs around a value only a later commit writes (`check`): the
    // key between them differs from the upper one in a higher byte.
    v.extend([510, 512, 1022, 1024, 0x1_0000 - 2, 0x1_0000]);
    v.extend((0..40).map(|i| i * 0x0101_0101));
    v
}

/// What a scan sees: (key, value) in order, read three ways that must
/// agree: `scan`, and `scan_each_lazy` decoding each key with
/// `user_key_after` (from the key before) and with `user_key_into`.
fn scans(t: &mut Transaction, range: &KeyRange, dir: Direction) -> Vec<(Vec<u8>, Vec<u8>)> {
    let plain = t.scan(range.clone(), dir).unwrap();
    let (mut after, mut into) = (Vec::new(), Vec::new());
    let (mut from, mut key) = (Vec::new(), Vec::new());
    t.scan_each_lazy(range, dir, |k, v| {
        k.user_key_after(&mut from, &mut key)?;
        after.push((key.clone(), v.to_vec()));
        let mut whole = vec![7, 7, 7];
        k.user_key_into(&mut whole)?;
        into.push((whole, v.to_vec()));
        Ok(true)
    })
    .unwrap();
    assert_eq!(after, plain, "user_key_after {dir:?} {range:?}");
    assert_eq!(into, plain, "user_key_into {dir:?} {range:?}");
    plain
}

fn model_scan(
    m: &BTreeMap<Vec<u8>, Vec<u8>>,
    range: &KeyRange,
    dir: Direction,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    // (Filtered, not `BTreeMap::range`, which panics on an inverted range.)
    let inside = |k: &Vec<u8>| {
        let after = match &range.start {
            Bound::Included(s) => k >= s,
            Bound::Excluded(s) => k > s,
            Bound::Unbounded => true,
        };
        let before = match &range.end {
            Bound::Included(e) => k <= e,
            Bound::Excluded(e) => k < e,
            Bound::Unbounded => true,
        };
        after && before
    };
    let mut v: Vec<_> =
        m.iter().filter(|(k, _)| inside(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if dir == Direction::Reverse {
        v.reverse();
    }
    v
}

fn ranges() -> Vec<KeyRange> {
    let mut out = vec![KeyRange::all(), KeyRange::prefix(&entry(0, 0)[..10])];
    for (a, b) in [(-3, 3), (i64::MIN, -39), (39, i64::MAX), (5, 5), (7, 6)] {
        out.push(KeyRange {
            start: Bound::Included(entry(a, 0)),
            end: Bound::Included(entry(b, u64::MAX)),
        });
        out.push(KeyRange {
            start: Bound::Excluded(entry(a, 1)),
            end: Bound::Excluded(entry(b, 2)),
        });
    }
    out
}

fn check(engine: Arc<dyn Engine>) {
    let mvcc =
        Mvcc::open(engine, MvccOptions { gc_interval: None, ..MvccOptions::default() }).unwrap();
    let mut model = BTreeMap::new();
    // Committed in three transactions: inserts, then updates and deletes.
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for (i, &v) in vals().iter().enumerate() {
        let rowid = (i as u64 * 7919) % 1000 + if i % 5 == 0 { 1 << 40 } else { 0 };
        let k = entry(v, rowid);
        t.set(&k, &rowid.to_be_bytes()).unwrap();
        model.insert(k, rowid.to_be_bytes().to_vec());
    }
    t.commit().unwrap();
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for (i, k) in keys.iter().enumerate() {
        match i % 4 {
            0 => {
                t.delete(k).unwrap();
                model.remove(k);
            }
            1 => {
                t.set(k, b"updated").unwrap();
                model.insert(k.clone(), b"updated".to_vec());
            }
            _ => {}
        }
    }
    t.commit().unwrap();
    // A reader whose snapshot is this state.
    let mut reader = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for dir in [Direction::Forward, Direction::Reverse] {
        assert!(!scans(&mut reader, &KeyRange::all(), dir).is_empty());
    }
    // Versions newer than the reader's snapshot: deletes, updates, inserts.
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for (i, k) in keys.iter().enumerate() {
        match i % 3 {
            0 => t.delete(k).unwrap(),
            1 => t.set(k, b"later").unwrap(),
            _ => {}
        }
    }
    t.set(&entry(0, 5), b"later insert").unwrap();
    // Keys the reader never sees between neighbours it does, which share
    // more bytes with the key after them than with the key before: a
    // scan must decode the key after from the last key it decoded.
    for v in [511, 1023, 0xFFFF] {
        t.set(&entry(v, 3), b"later insert").unwrap();
    }
    t.commit().unwrap();
    // The reader's own uncommitted writes: an insert between neighbours,
    // an overwrite, a delete, keys at the extremes.
    reader.set(&entry(1, 3), b"mine").unwrap();
    model.insert(entry(1, 3), b"mine".to_vec());
    reader.set(&entry(i64::MAX, u64::MAX), b"max").unwrap();
    model.insert(entry(i64::MAX, u64::MAX), b"max".to_vec());
    // (Keys the later commit left alone: a write of another would be a
    // serialization failure.)
    let (k1, k2) = (keys[2].clone(), keys[5].clone());
    reader.set(&k1, b"mine too").unwrap();
    model.insert(k1, b"mine too".to_vec());
    reader.delete(&k2).unwrap();
    model.remove(&k2);
    for range in ranges() {
        for dir in [Direction::Forward, Direction::Reverse] {
            assert_eq!(scans(&mut reader, &range, dir), model_scan(&model, &range, dir));
        }
    }
    // Without own writes (a fresh reader sees the later commit).
    reader.rollback();
    let mut fresh = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    let all = scans(&mut fresh, &KeyRange::all(), Direction::Forward);
    let mut back = scans(&mut fresh, &KeyRange::all(), Direction::Reverse);
    back.reverse();
    assert_eq!(all, back);
    assert!(all.iter().any(|(k, v)| *k == entry(0, 5) && v == b"later insert"));
}

#[test]
fn index_like_keys_scan_back_as_written_in_memory() {
    check(Arc::new(MemoryEngine::new()));
}

#[test]
fn index_like_keys_scan_back_as_written_on_the_btree() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { durability: Durability::Never, ..Options::default() };
    check(Arc::new(BTreeEngine::open(dir.path(), opts).unwrap()));
}

/// The same in a prefix-free keyspace (`keys::PREFIX_FREE`), whose keys
/// the version keys hold unescaped.
#[test]
fn prefix_free_keys_scan_back_as_written_in_memory() {
    TAG.set(0x11);
    check(Arc::new(MemoryEngine::new()));
}

#[test]
fn prefix_free_keys_scan_back_as_written_on_the_btree() {
    TAG.set(0x11);
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { durability: Durability::Never, ..Options::default() };
    check(Arc::new(BTreeEngine::open(dir.path(), opts).unwrap()));
}

/// Transactions of one thread hand their read buffers on through the
/// thread's spare slot (boxed, `SpareBufs`): transactions alive at once
/// each have their own, and one that takes over the buffers a scan left
/// holding its last keys (a reverse scan stopped early) reads as a fresh
/// one would, in either direction.
#[test]
fn read_buffers_pass_between_transactions_of_a_thread() {
    let mvcc = Mvcc::open(
        Arc::new(MemoryEngine::new()),
        MvccOptions { gc_interval: None, ..MvccOptions::default() },
    )
    .unwrap();
    let mut model = BTreeMap::new();
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for (i, &v) in vals().iter().enumerate() {
        let k = entry(v, i as u64);
        t.set(&k, &(i as u64).to_be_bytes()).unwrap();
        model.insert(k, (i as u64).to_be_bytes().to_vec());
    }
    t.commit().unwrap();
    let all = KeyRange::all();
    let want = |dir| model_scan(&model, &all, dir);
    let ro = Mode::ReadOnly(Isolation::RepeatableRead);
    let stop_early = |t: &mut Transaction| {
        let mut n = 0;
        t.scan_each(all.clone(), Direction::Reverse, |_, _| {
            n += 1;
            Ok(n < 3)
        })
        .unwrap();
    };
    let (mut a, mut b) = (mvcc.begin(ro).unwrap(), mvcc.begin(ro).unwrap());
    stop_early(&mut a);
    assert_eq!(scans(&mut b, &all, Direction::Reverse), want(Direction::Reverse));
    drop(a);
    // `c` has `a`'s buffers, `b` its own still.
    let mut c = mvcc.begin(ro).unwrap();
    for dir in [Direction::Reverse, Direction::Forward] {
        assert_eq!(scans(&mut c, &all, dir), want(dir));
        assert_eq!(scans(&mut b, &all, dir), want(dir));
    }
    stop_early(&mut c);
    c.commit().unwrap();
    b.rollback();
    for _ in 0..3 {
        let mut d = mvcc.begin(ro).unwrap();
        assert_eq!(d.get(&entry(5, 45)).unwrap(), model.get(&entry(5, 45)).cloned());
        for dir in [Direction::Reverse, Direction::Forward] {
            assert_eq!(scans(&mut d, &all, dir), want(dir));
        }
        stop_early(&mut d);
    }
}

/// A reverse scan meets each key's versions oldest first, and passes on
/// the newest visible one where the cursor can see the next entry
/// (`Cursor::peek_key`, within a B+Tree leaf), else from a copy when the
/// key changes. With values long enough that a leaf holds a few dozen
/// versions, every way a leaf boundary can fall among a key's versions
/// (none visible, some, the newest invisible, a tombstone last) occurs;
/// every snapshot, read backwards in full, by sub-ranges and stopped
/// after n pairs, must equal the model's.
#[test]
fn reverse_scans_see_the_newest_visible_version_wherever_leaves_split_a_key() {
    for tag in [0x11, 0x03] {
        TAG.set(tag);
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { durability: Durability::Never, ..Options::default() };
        let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts).unwrap());
        let mvcc = Mvcc::open(engine, MvccOptions { gc_interval: None, ..MvccOptions::default() })
            .unwrap();
        let rw = Mode::ReadWrite(Isolation::RepeatableRead);
        let value = |key: usize, round: usize| {
            let mut v = format!("{key}/{round}/").into_bytes();
            v.resize(180 + (key * 31 + round * 17) % 90, b'v');
            v
        };
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        // (snapshot, the model as of it), oldest first.
        let mut readers = Vec::new();
        for round in 0..6 {
            let mut t = mvcc.begin(rw).unwrap();
            for key in 0..240usize {
                // Each key written in some rounds: a varying number of
                // versions, some ending in a tombstone.
                let k = entry(key as i64 - 120, key as u64);
                match (key * 7 + round * 3) % 5 {
                    0 | 1 => {
                        let v = value(key, round);
                        t.set(&k, &v).unwrap();
                        model.insert(k, v);
                    }
                    2 if round % 2 == 1 && model.contains_key(&k) => {
                        t.delete(&k).unwrap();
                        model.remove(&k);
                    }
                    _ => {}
                }
            }
            t.commit().unwrap();
            readers.push((mvcc.begin(rw).unwrap(), model.clone()));
        }
        let keys: Vec<Vec<u8>> = (0..240).map(|key| entry(key - 120, key as u64)).collect();
        let mut ranges = vec![KeyRange::all()];
        for (a, b) in [(0, 239), (17, 18), (40, 131), (200, 239), (101, 101)] {
            let (a, b) = (keys[a].clone(), keys[b].clone());
            ranges.push(KeyRange {
                start: Bound::Included(a.clone()),
                end: Bound::Included(b.clone()),
            });
            ranges.push(KeyRange { start: Bound::Excluded(a), end: Bound::Excluded(b) });
        }
        for (i, (t, model)) in readers.iter_mut().enumerate() {
            for range in &ranges {
                for dir in [Direction::Reverse, Direction::Forward] {
                    let want = model_scan(model, range, dir);
                    assert_eq!(scans(t, range, dir), want, "tag {tag:#x}, snapshot {i}, {dir:?}");
                    for n in [1, 2, 5, 33] {
                        let mut got = Vec::new();
                        t.scan_each(range.clone(), dir, |k, v| {
                            got.push((k.to_vec(), v.to_vec()));
                            Ok(got.len() < n)
                        })
                        .unwrap();
                        assert_eq!(got, want[..n.min(want.len())], "stopped after {n}");
                    }
                }
            }
        }
    }
}
