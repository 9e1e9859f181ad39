//! Torn and corrupt files: opening recovers to the last good record or
//! reports corruption; it never panics and never returns wrong data.

use std::collections::BTreeMap;
use std::path::Path;

use qube_storage::{BTreeEngine, Direction, Engine, Error, KeyRange, WriteBatch};

use crate::common::{self, Rng};

fn batch(i: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..20u32 {
        b.set(format!("k{:05}", i * 20 + j).as_bytes(), format!("v{i}-{j}").repeat(5).as_bytes());
    }
    b
}

fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Everything in the engine, or the error reading it produced.
fn read_all(e: &BTreeEngine) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    Ok(e.scan(KeyRange::all(), Direction::Forward)?.collect_pairs()?.into_iter().collect())
}

#[test]
fn wal_cut_inside_a_record_recovers_the_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    for i in 0..30 {
        e.write(batch(i)).unwrap();
    }
    drop(e);
    let wal = wal_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    for cut in [len - 1, len - 7, len - 100, len - 400] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let w = wal_files(copy.path()).pop().unwrap();
        std::fs::OpenOptions::new().write(true).open(&w).unwrap().set_len(cut).unwrap();
        let e = common::open(copy.path(), 1 << 20);
        let all = read_all(&e).unwrap();
        // Whole batches only: every batch is all there or not at all.
        let n = all.len();
        assert_eq!(n % 20, 0, "cut {cut}: a batch is half applied ({n} keys)");
        assert!(n >= 20 * 25, "cut {cut}: lost more than the torn tail ({n} keys)");
        assert!(n < 20 * 30, "cut {cut}: the torn record was applied");
        e.set(b"after", b"recovery").unwrap();
        drop(e);
        let e = common::open(copy.path(), 1 << 20);
        assert_eq!(e.get(b"after").unwrap(), Some(b"recovery".to_vec()));
        assert_eq!(read_all(&e).unwrap().len(), n + 1);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Builds a data directory with a checkpointed tree and some WAL after it.
fn build(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let e = common::open(dir, 1 << 20);
    for i in 0..60 {
        e.write(batch(i)).unwrap();
    }
    e.set(b"overflow", &vec![9u8; 30_000]).unwrap();
    e.checkpoint().unwrap();
    for i in 60..80 {
        e.write(batch(i)).unwrap();
    }
    let all = read_all(&e).unwrap();
    drop(e);
    all
}

/// Flips random bytes, opens, reads everything: the result must be an error
/// that says corruption (or refused/invalid for header damage), or data
/// that matches what was written for every key it returns.
fn flip_and_check(file_of: impl Fn(&Path) -> std::path::PathBuf, seeds: u64, flips: usize) {
    let base = tempfile::tempdir().unwrap();
    let expected = build(base.path());
    let mut outcomes = [0u32; 3];
    for seed in 1..=seeds {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(base.path(), copy.path());
        let path = file_of(copy.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for _ in 0..flips {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (rng.next() % 8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let outcome = match BTreeEngine::open(copy.path(), common::opts(1 << 20)) {
            Err(e) => {
                assert!(e.is_corruption() || matches!(e, Error::Refused(_)), "seed {seed}: {e}");
                0
            }
            Ok(e) => match read_all(&e).and_then(|all| e.verify().map(|_| all)) {
                Err(err) => {
                    assert!(err.is_corruption(), "seed {seed}: {err}");
                    1
                }
                Ok(all) => {
                    for (k, v) in &all {
                        assert_eq!(expected.get(k), Some(v), "seed {seed}: wrong data returned");
                    }
                    2
                }
            },
        };
        outcomes[outcome] += 1;
    }
    eprintln!("outcomes (refused at open, corruption reported, read ok): {outcomes:?}");
}

#[test]
fn flipped_bytes_in_data_file_are_reported_never_misread() {
    flip_and_check(|d| d.join("data.qdb"), 40, 3);
}

#[test]
fn flipped_bytes_in_wal_are_reported_or_cut() {
    flip_and_check(|d| wal_files(d).pop().unwrap(), 40, 2);
}
