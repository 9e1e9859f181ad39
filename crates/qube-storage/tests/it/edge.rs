//! Edge cases and bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use qube_storage::{
    BTreeEngine, Direction, Durability, Engine, Error, KeyRange, MAX_KEY_LEN, MAX_VALUE_LEN,
    WriteBatch,
};

use crate::common;

#[test]
fn large_values_roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    e.set(b"big", &big).unwrap();
    e.set(b"edge", &vec![7u8; 2600]).unwrap();
    e.set(b"small", b"x").unwrap();
    assert_eq!(e.get(b"big").unwrap().as_deref(), Some(&big[..]));
    assert!(e.status().unwrap().wal_bytes > 16 << 20);
    e.checkpoint().unwrap();
    // The checkpoint covers the whole log: it takes (almost) no space now.
    assert!(e.status().unwrap().wal_bytes < 64, "{:?}", e.status().unwrap());
    e.close().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    assert_eq!(e.get(b"big").unwrap().as_deref(), Some(&big[..]));
    let pairs = e.scan(KeyRange::all(), Direction::Reverse).unwrap().collect_pairs().unwrap();
    assert_eq!(pairs.len(), 3);
    assert_eq!(pairs[2].1, big);
    // Replacing and deleting the big value gives its pages back.
    let before = e.verify().unwrap();
    e.set(b"big", b"now small").unwrap();
    e.checkpoint().unwrap();
    let after = e.verify().unwrap();
    assert!(after.overflow_pages < before.overflow_pages);
    // The big value's pages came back: free, or cut off the file's tail.
    assert!(
        after.free_pages + after.freelist_pages >= before.overflow_pages - 1
            || after.pages + before.overflow_pages - 1 <= before.pages,
        "{before:?} {after:?}"
    );
}

#[test]
fn limits_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let long_key = vec![1u8; MAX_KEY_LEN + 1];
    let err = e.set(&long_key, b"v").unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("key of 2049 bytes"), "{err}");
    let err = e.set(b"k", &vec![0u8; MAX_VALUE_LEN + 1]).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    // A rejected batch changes nothing, even its valid parts.
    let mut b = WriteBatch::new();
    b.set(b"ok", b"1").set(&long_key, b"2");
    assert!(e.write(b).is_err());
    assert_eq!(e.get(b"ok").unwrap(), None);
    // The longest key works.
    let max_key = vec![2u8; MAX_KEY_LEN];
    e.set(&max_key, &vec![3u8; 5000]).unwrap();
    assert_eq!(e.get(&max_key).unwrap(), Some(vec![3u8; 5000]));
}

#[test]
fn empty_key_and_empty_value() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    e.set(b"", b"empty key").unwrap();
    e.set(b"a", b"").unwrap();
    assert_eq!(e.get(b"").unwrap(), Some(b"empty key".to_vec()));
    assert_eq!(e.get(b"a").unwrap(), Some(Vec::new()));
    let first = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert_eq!(first[0].0, b"");
    e.delete(b"").unwrap();
    assert_eq!(e.get(b"").unwrap(), None);
}

#[test]
fn ten_thousand_keys_with_long_shared_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 4 << 20);
    let prefix = vec![b'x'; 1500];
    let key = |i: u32| {
        let mut k = prefix.clone();
        k.extend_from_slice(&i.to_be_bytes());
        k
    };
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(500) {
        let mut b = WriteBatch::new();
        for &i in chunk.iter().rev() {
            b.set(&key(i), &i.to_le_bytes());
        }
        e.write(b).unwrap();
    }
    assert_eq!(e.get(&key(1234)).unwrap(), Some(1234u32.to_le_bytes().to_vec()));
    let mut c = e.scan_prefix(&prefix, Direction::Forward).unwrap();
    let mut n = 0u32;
    while c.advance().unwrap() {
        assert_eq!(c.key(), &key(n)[..]);
        n += 1;
    }
    assert_eq!(n, 10_000);
    drop(c);
    let r = e.verify().unwrap();
    assert_eq!(r.keys, 10_000);
    assert!(r.depth <= 12, "depth {} is not bounded", r.depth);
}

#[test]
fn delete_everything_and_reinsert_does_not_grow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 2 << 20);
    let fill = |e: &BTreeEngine, salt: u8| {
        for c in 0..20u32 {
            let mut b = WriteBatch::new();
            for i in 0..1000u32 {
                b.set(&(c * 1000 + i).to_be_bytes(), &[salt; 200]);
            }
            e.write(b).unwrap();
        }
        e.checkpoint().unwrap();
    };
    let clear = |e: &BTreeEngine| {
        for c in 0..20u32 {
            let mut b = WriteBatch::new();
            for i in 0..1000u32 {
                b.delete(&(c * 1000 + i).to_be_bytes());
            }
            e.write(b).unwrap();
        }
        e.checkpoint().unwrap();
        // A second checkpoint frees what the first one still needed.
        e.set(b"tick", b"").unwrap();
        e.delete(b"tick").unwrap();
        e.checkpoint().unwrap();
    };
    fill(&e, 1);
    let full_pages = e.status().unwrap().pages;
    clear(&e);
    let empty = e.status().unwrap();
    assert_eq!(empty.keys, 0);
    assert!(
        empty.pages < full_pages / 4,
        "deleting everything gave no space back: {} of {full_pages} pages",
        empty.pages
    );
    e.verify().unwrap();
    for round in 0..3 {
        fill(&e, round);
        let pages = e.status().unwrap().pages;
        assert!(pages <= full_pages * 5 / 4, "round {round}: {pages} pages vs {full_pages}");
        clear(&e);
    }
    e.verify().unwrap();
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let err = BTreeEngine::open(dir.path(), common::opts(1 << 20)).err().expect("refused");
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(e);
    common::open(dir.path(), 1 << 20);
}

#[test]
fn foreign_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let err = BTreeEngine::open(dir.path(), common::opts(1 << 20)).err().expect("refused");
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("not a QubeDB data directory"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.qdb"), vec![0x55u8; 16384]).unwrap();
    let err = BTreeEngine::open(dir.path(), common::opts(1 << 20)).err().expect("refused");
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("not a QubeDB data file"), "{err}");
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::open(dir.path(), 1 << 20).close().unwrap();
    // Rewrite both meta pages with format version 99 and a valid checksum.
    let path = dir.path().join("data.qdb");
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in 0..2 {
        let p = &mut bytes[slot * 8192..slot * 8192 + 8192];
        p[8..12].copy_from_slice(&99u32.to_le_bytes());
        let c = crc32c::crc32c(&p[..72]);
        p[72..76].copy_from_slice(&c.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let err = BTreeEngine::open(dir.path(), common::opts(1 << 20)).err().expect("refused");
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("newer QubeDB"), "{err}");
}

#[test]
fn cursor_sees_a_snapshot_while_writers_change_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let mut b = WriteBatch::new();
    for i in 0..5000u32 {
        b.set(&i.to_be_bytes(), &[1u8; 50]);
    }
    e.write(b).unwrap();
    let mut c = e.scan(KeyRange::all(), Direction::Forward).unwrap();
    assert!(c.advance().unwrap());
    // Rewrite and delete everything while the cursor is open.
    for chunk in 0..5u32 {
        let mut b = WriteBatch::new();
        for i in chunk * 1000..chunk * 1000 + 1000 {
            if i % 2 == 0 {
                b.delete(&i.to_be_bytes());
            } else {
                b.set(&i.to_be_bytes(), &[2u8; 80]);
            }
        }
        e.write(b).unwrap();
    }
    e.checkpoint().unwrap();
    let mut n = 1;
    while c.advance().unwrap() {
        assert_eq!(c.value(), &[1u8; 50]);
        n += 1;
    }
    assert_eq!(n, 5000);
    drop(c);
    assert_eq!(e.status().unwrap().keys, 2500);
}

#[test]
fn readers_run_concurrently_with_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(common::open(dir.path(), 512 << 10));
    let stop = Arc::new(AtomicBool::new(false));
    // Invariant kept by every batch: keys a/i and b/i hold the same value.
    let writer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            for round in 0..60u32 {
                let mut b = WriteBatch::new();
                for i in 0..200u32 {
                    let v = (round * 7 + i).to_le_bytes();
                    b.set(format!("a/{i:04}").as_bytes(), &v);
                    b.set(format!("b/{i:04}").as_bytes(), &v);
                }
                e.write(b).unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut scans = 0;
                while !stop.load(Ordering::SeqCst) || scans == 0 {
                    let pairs = e
                        .scan(KeyRange::all(), Direction::Forward)
                        .unwrap()
                        .collect_pairs()
                        .unwrap();
                    let (a, b) = pairs.split_at(pairs.len() / 2);
                    assert_eq!(a.len(), b.len());
                    for (x, y) in a.iter().zip(b) {
                        assert_eq!(x.1, y.1, "a torn batch was visible");
                    }
                    scans += 1;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    e.verify().unwrap();
}

#[test]
fn failed_fsync_poisons_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    e.set(b"a", b"1").unwrap();
    e.fail_next_data_sync();
    let err = e.checkpoint().unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    let err = e.set(b"b", b"2").unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    // Reads still work; reopening recovers everything acknowledged.
    assert_eq!(e.get(b"a").unwrap(), Some(b"1".to_vec()));
    drop(e);
    let e = common::open(dir.path(), 1 << 20);
    assert_eq!(e.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(e.get(b"b").unwrap(), None);
    e.set(b"b", b"2").unwrap();
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn checkpoints_run_automatically_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(1 << 20);
    o.checkpoint_interval = Some(std::time::Duration::from_millis(100));
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    e.set(b"k", b"v").unwrap();
    let lsn = e.status().unwrap().last_lsn;
    assert!(wait_for(|| e.status().unwrap().checkpoint_lsn >= lsn), "no checkpoint by time");
    // Nothing new written: no further checkpoints.
    let n = e.status().unwrap().checkpoints;
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(e.status().unwrap().checkpoints, n);
}

#[test]
fn checkpoints_run_automatically_by_wal_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(1 << 20);
    o.checkpoint_wal_bytes = 1 << 20;
    o.durability = Durability::Never;
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    for i in 0..300u32 {
        e.set(&i.to_be_bytes(), &[1u8; 8000]).unwrap();
    }
    assert!(wait_for(|| e.status().unwrap().checkpoints >= 1), "no checkpoint by WAL size");
    assert!(wait_for(|| e.status().unwrap().wal_bytes < 1 << 20));
    drop(e);
    let e = common::open(dir.path(), 1 << 20);
    assert_eq!(e.status().unwrap().keys, 300);
}

#[test]
fn periodic_and_never_durability_work_and_flush_makes_durable() {
    for durability in
        [Durability::Periodic(std::time::Duration::from_millis(20)), Durability::Never]
    {
        let dir = tempfile::tempdir().unwrap();
        let mut o = common::opts(1 << 20);
        o.durability = durability;
        let e = BTreeEngine::open(dir.path(), o).unwrap();
        for i in 0..100u32 {
            e.set(&i.to_be_bytes(), b"x").unwrap();
        }
        e.flush().unwrap();
        drop(e); // no checkpoint on close: reopening replays the WAL
        let e = common::open(dir.path(), 1 << 20);
        assert_eq!(e.status().unwrap().keys, 100, "{durability:?}");
    }
}

/// `applied_batches` grows with every batch a seek of the newest version
/// can see (so a caller may trust what it remembered while the count stays),
/// and not with a refused batch, a read or a checkpoint.
#[test]
fn applied_batches_counts_every_applied_batch() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let engines: [&dyn Engine; 2] = [&e, &qube_storage::MemoryEngine::default()];
    for e in engines {
        let n0 = e.applied_batches().unwrap();
        e.set(b"a", b"1").unwrap();
        let n1 = e.applied_batches().unwrap();
        assert!(n1 > n0);
        let mut b = WriteBatch::new();
        b.set(b"b", b"2").delete(b"a");
        let lsn = e.write_nowait(b).unwrap();
        // Counted before it is durable: the newest version already has it.
        let n2 = e.applied_batches().unwrap();
        assert!(n2 > n1);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        assert!(e.seek_latest(&KeyRange::prefix(b"b"), &mut k, &mut v).unwrap());
        e.wait_durable(lsn).unwrap();
        assert_eq!(e.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        e.checkpoint().unwrap();
        let mut too_big = WriteBatch::new();
        too_big.set(&vec![1u8; MAX_KEY_LEN + 1], b"x");
        assert!(e.write(too_big).is_err());
        assert_eq!(e.applied_batches().unwrap(), n2, "reads, checkpoints and refusals");
    }
}

/// A sorted batch appends each key past the remembered leaf's last one
/// without searching the leaf; a key equal to the last (replaced), before
/// it, or beyond the leaf's range takes the ordinary way. Batches that mix
/// all of them leave the tree the model says, valid.
#[test]
fn sorted_batches_append_replace_and_insert_between() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let mut model = std::collections::BTreeMap::new();
    let key = |t: u8, i: u32| [&[t][..], &i.to_be_bytes()].concat();
    let mut put = |b: &mut WriteBatch, k: Vec<u8>, v: Vec<u8>| {
        b.set(&k, &v);
        model.insert(k, v);
    };
    // A load past the end: appends, and leaves split as they fill.
    let mut b = WriteBatch::new();
    for i in 0..3000 {
        put(&mut b, key(1, i * 2), vec![1; 40]);
    }
    e.write(b).unwrap();
    // Sorted again: keys before the table, every tenth key replaced with
    // the odd keys between them inserted, and more past the end.
    let mut b = WriteBatch::new();
    for i in 0..50 {
        put(&mut b, key(0, i), vec![0; 30]);
    }
    for i in 0..6000 {
        if i % 2 == 1 || i % 20 == 0 {
            put(&mut b, key(1, i), vec![2; 20 + (i % 7) as usize]);
        }
    }
    for i in 6000..6500 {
        put(&mut b, key(1, i), vec![3; 50]);
    }
    put(&mut b, key(2, 0), vec![4; 10]);
    e.write(b).unwrap();
    let got = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert_eq!(got.len(), model.len());
    assert!(got.into_iter().eq(model.into_iter()), "the tree differs from the model");
    e.verify().unwrap();
}

/// Runs of sets past a leaf's last key are written straight into the leaf
/// (`Txn::append_following`); a run must stop where the ordinary way
/// would do something else: a key not after the one before, a key that
/// drops the leaf's common prefix, a key at or past the leaf's upper bound
/// (the next leaf's first key), a value that goes to overflow pages, a
/// delete, a leaf filled to its load limit. Batches built to hit each of
/// these, over a tree with gaps between its leaves, leave the tree the
/// model says and valid, also after the log is replayed on reopening.
#[test]
fn append_runs_stop_where_the_ordinary_insert_must_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut rng = common::Rng(0x5eed_a99e_4d00_0001);
    let key = |t: u8, i: u32, tail: &[u8]| [&[t][..], &i.to_be_bytes(), tail].concat();
    {
        let e = common::open(dir.path(), 1 << 20);
        // Islands of keys with gaps between them, so that later runs meet
        // upper bounds: table 1 at multiples of 100, table 3 at every key.
        let mut b = WriteBatch::new();
        for i in 0..400 {
            let (k, v) = (key(1, i * 100, b""), vec![1; 30]);
            b.set(&k, &v);
            model.insert(k, v);
        }
        for i in 0..2000 {
            let (k, v) = (key(3, i, b""), vec![3; 25]);
            b.set(&k, &v);
            model.insert(k, v);
        }
        e.write(b).unwrap();
        for round in 0..6u32 {
            let mut b = WriteBatch::new();
            let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            // Ascending runs into the gaps of table 1: each run starts after
            // an island key and runs past the next one (its leaf's bound).
            for island in (round * 7..400).step_by(37) {
                let from = island * 100 + 1 + round;
                for j in 0..(20 + rng.next() % 400) as u32 {
                    let len = match rng.next() % 50 {
                        0 => 2700 + (rng.next() % 3000) as usize, // overflow
                        1 => 2590 + (rng.next() % 20) as usize,   // at the edge
                        _ => (rng.next() % 120) as usize,
                    };
                    ops.push((key(1, from + j * 3, b""), Some(vec![(round + 10) as u8; len])));
                }
            }
            // Keys of several lengths in table 2 (new): some end where a
            // longer one continues, so the common prefix of a leaf shrinks.
            for i in 0..(300 + round * 500) {
                let tail: Vec<u8> = match rng.next() % 4 {
                    0 => vec![],
                    1 => vec![0],
                    2 => vec![0xff; (rng.next() % 30) as usize],
                    _ => vec![(rng.next() % 256) as u8; 3],
                };
                ops.push((key(2, i / 3, &tail), Some(vec![2; (rng.next() % 300) as usize])));
            }
            // Deletes and replacements in the middle of runs.
            for i in (round..2000).step_by(11) {
                let v = (i % 3 != 0).then(|| vec![4; (i % 40) as usize]);
                ops.push((key(3, i, b""), v));
            }
            // Past the end of everything: a plain load that fills leaves.
            for i in 0..(500 + round * 1000) {
                ops.push((key(9, round * 100_000 + i, b""), Some(vec![9; 10 + (i % 90) as usize])));
            }
            ops.sort_by(|a, b| a.0.cmp(&b.0));
            ops.dedup_by(|a, b| a.0 == b.0);
            // Every tenth batch position out of order: a key before the
            // previous one must leave the run.
            if round % 2 == 1 {
                let n = ops.len();
                for i in (5..n).step_by(10) {
                    ops.swap(i, i - 3);
                }
            }
            for (k, v) in ops {
                match v {
                    Some(v) => {
                        b.set(&k, &v);
                        model.insert(k, v);
                    }
                    None => {
                        b.delete(&k);
                        model.remove(&k);
                    }
                }
            }
            e.write(b).unwrap();
            let got = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
            assert_eq!(got.len(), model.len(), "round {round}");
            assert!(got.iter().map(|(k, v)| (k, v)).eq(model.iter()), "round {round}");
            e.verify().unwrap();
        }
        // Closed without a checkpoint: reopening replays every batch.
    }
    let e = common::open(dir.path(), 1 << 20);
    let got = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert!(got.iter().map(|(k, v)| (k, v)).eq(model.iter()), "after replay");
    e.verify().unwrap();
}

/// Over many leaves, ranges whose bounds fall on, next to and between the
/// keys at leaf edges return exactly their keys in both directions (a
/// cursor compares keys with the bound only in a leaf whose last entry in
/// its direction lies past it), and `peek_key`, where it answers, names
/// the key the next `advance` moves to.
#[test]
fn range_bounds_at_every_key_and_peeked_keys_agree_with_the_scan() {
    use std::ops::Bound;
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    // Keys 0, 3, 6, …: bounds at k-1 and k+1 fall between two keys.
    let key = |i: u32| format!("k{:06}", i * 3).into_bytes();
    let mut batch = WriteBatch::new();
    for i in 0..1500 {
        batch.set(&key(i), &[b'v'; 40]);
    }
    e.write(batch).unwrap();
    let all: Vec<Vec<u8>> = (0..1500).map(key).collect();
    let bound = |i: i64, kind: u8| {
        let k = format!("k{:06}", i.max(0)).into_bytes();
        match kind {
            0 => Bound::Included(k),
            1 => Bound::Excluded(k),
            _ => Bound::Unbounded,
        }
    };
    let inside = |k: &Vec<u8>, r: &KeyRange| {
        (match &r.start {
            Bound::Included(s) => k >= s,
            Bound::Excluded(s) => k > s,
            Bound::Unbounded => true,
        }) && (match &r.end {
            Bound::Included(s) => k <= s,
            Bound::Excluded(s) => k < s,
            Bound::Unbounded => true,
        })
    };
    let mut peeked = 0;
    for lo in (0..4500i64).step_by(97).chain([0, 1, 2, 4497, 4498]) {
        for span in [0i64, 1, 2, 3, 100, 700, 5000] {
            for (sk, ek) in [(0, 0), (1, 1), (0, 1), (1, 0), (2, 0), (0, 2)] {
                let r = KeyRange { start: bound(lo, sk), end: bound(lo + span, ek) };
                let want: Vec<&Vec<u8>> = all.iter().filter(|k| inside(k, &r)).collect();
                for d in [Direction::Forward, Direction::Reverse] {
                    let mut c = e.scan(r.clone(), d).unwrap();
                    let mut got = Vec::new();
                    let mut expect_next: Option<Vec<u8>> = None;
                    while c.advance().unwrap() {
                        if let Some(p) = expect_next.take() {
                            assert_eq!(p, c.key(), "peeked key");
                        }
                        got.push(c.key().to_vec());
                        if let Some(p) = c.peek_key() {
                            peeked += 1;
                            if inside(&p.to_vec(), &r) {
                                expect_next = Some(p.to_vec());
                            }
                        }
                    }
                    assert!(expect_next.is_none(), "a peeked key in range was not returned");
                    if d == Direction::Reverse {
                        got.reverse();
                    }
                    assert_eq!(got.iter().collect::<Vec<_>>(), want, "{r:?} {d:?}");
                }
            }
        }
    }
    assert!(peeked > 1000, "{peeked}");
}
