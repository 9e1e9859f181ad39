//! Review tests: stress and adversarial cases for the B+Tree engine.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use qube_storage::{BTreeEngine, Direction, Engine, KeyRange, MemoryEngine, WriteBatch};

use crate::common::{self, Rng};

// ---------------------------------------------------------------- helpers

trait Below {
    fn below(&mut self, n: u64) -> u64;
}
impl Below for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn all(e: &dyn Engine, dir: Direction) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.scan(KeyRange::all(), dir).unwrap().collect_pairs().unwrap()
}

fn value(len: usize, salt: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(salt) as u8).collect()
}

/// A key of `len` bytes (at least 1) whose order is set by `id`.
fn big_key(id: u16, len: usize) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.resize(len.max(2), (id % 251) as u8);
    k
}

// ------------------------------------------- big keys, tiny pool, model

#[derive(Debug, Clone)]
enum Step {
    Set(u16, usize, usize),
    Delete(u16),
    Batch(Vec<(u16, usize, Option<usize>)>),
    Checkpoint,
    Reopen,
}

fn key_len() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 1000usize..=2048, 1 => 2usize..40, 1 => 200usize..1000]
}

fn val_len() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..600, 3 => 500usize..2600, 1 => 2590usize..2620, 1 => 2600usize..9000]
}

fn step() -> impl Strategy<Value = Step> {
    // Keys come from a small id space so sets overwrite and deletes hit.
    prop_oneof![
        30 => (0u16..120, key_len(), val_len()).prop_map(|(i, k, v)| Step::Set(i, k, v)),
        20 => (0u16..120).prop_map(Step::Delete),
        10 => prop::collection::vec(
            (0u16..120, key_len(), prop::option::weighted(0.5, val_len())),
            1..40
        )
        .prop_map(Step::Batch),
        2 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

/// Key length per id is fixed for the whole run (first use wins) so the
/// memory model and the engine see the same keys.
fn run_big(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = 128 << 10; // 16 pages: the minimum
    let mut db = Some(common::open(dir.path(), pool));
    let model = MemoryEngine::new();
    let mut lens: BTreeMap<u16, usize> = BTreeMap::new();
    let mut key_of = |id: u16, len: usize| big_key(id, *lens.entry(id).or_insert(len));
    for (n, s) in steps.into_iter().enumerate() {
        let e = db.as_ref().unwrap();
        let mut b = WriteBatch::new();
        match s {
            Step::Set(i, kl, vl) => {
                b.set(&key_of(i, kl), &value(vl, n as u64));
            }
            Step::Delete(i) => {
                b.delete(&key_of(i, 1000));
            }
            Step::Batch(ops) => {
                for (j, (i, kl, v)) in ops.into_iter().enumerate() {
                    let k = key_of(i, kl);
                    match v {
                        Some(vl) => b.set(&k, &value(vl, (n * 64 + j) as u64)),
                        None => b.delete(&k),
                    };
                }
            }
            Step::Checkpoint => {
                e.checkpoint().unwrap();
                continue;
            }
            Step::Reopen => {
                db.take().unwrap().close().unwrap();
                db = Some(common::open(dir.path(), pool));
                continue;
            }
        }
        e.write(b.clone()).unwrap_or_else(|err| panic!("step {n}: {err}"));
        model.write(b).unwrap();
        assert_eq!(all(e, Direction::Forward), all(&model, Direction::Forward), "step {n}");
    }
    let e = db.take().unwrap();
    assert_eq!(all(&e, Direction::Reverse), all(&model, Direction::Reverse));
    let r = e.verify().unwrap_or_else(|err| panic!("verify: {err}"));
    assert_eq!(r.keys, all(&model, Direction::Forward).len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_b1c5),
        max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn big_keys_tiny_pool_match_model(steps in prop::collection::vec(step(), 1..80)) {
        run_big(steps);
    }
}

// ------------------------------------------------- crafted page corruption

const PS: usize = 8192;

fn get_u16(p: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([p[at], p[at + 1]])
}
fn get_u32(p: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
}
fn get_u64(p: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(p[at..at + 8].try_into().unwrap())
}
fn put_u16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(p: &mut [u8], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(p: &mut [u8], at: usize, v: u64) {
    p[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes a data page's checksum (as `page::seal` does).
fn reseal(p: &mut [u8]) {
    p[24..28].fill(0);
    let c = crc32c::crc32c(p);
    put_u32(p, 24, c);
}

/// Recomputes a meta page's checksum.
fn reseal_meta(p: &mut [u8]) {
    let c = crc32c::crc32c(&p[..72]);
    put_u32(p, 72, c);
}

struct DataFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl DataFile {
    fn load(dir: &Path) -> DataFile {
        let path = dir.join("data.qdb");
        let bytes = std::fs::read(&path).unwrap();
        DataFile { path, bytes }
    }
    fn save(&self) {
        std::fs::write(&self.path, &self.bytes).unwrap();
    }
    fn pages(&self) -> u64 {
        (self.bytes.len() / PS) as u64
    }
    fn page(&self, id: u64) -> &[u8] {
        &self.bytes[id as usize * PS..(id as usize + 1) * PS]
    }
    /// Edits a data page and reseals it.
    fn edit(&mut self, id: u64, f: impl FnOnce(&mut [u8])) {
        let p = &mut self.bytes[id as usize * PS..(id as usize + 1) * PS];
        f(p);
        reseal(p);
    }
    /// Slot (0 or 1) of the current meta page.
    fn meta_slot(&self) -> usize {
        let seq = |s: u64| get_u64(self.page(s), 16);
        if seq(1) > seq(0) { 1 } else { 0 }
    }
    fn meta(&self) -> &[u8] {
        self.page(self.meta_slot() as u64)
    }
    fn edit_meta(&mut self, f: impl FnOnce(&mut [u8])) {
        let s = self.meta_slot();
        let p = &mut self.bytes[s * PS..(s + 1) * PS];
        f(p);
        reseal_meta(p);
    }
    fn root(&self) -> u64 {
        get_u64(self.meta(), 24)
    }
    fn freelist(&self) -> u64 {
        get_u64(self.meta(), 32)
    }
    fn page_type(&self, id: u64) -> u8 {
        self.page(id)[6]
    }
    fn pages_of_type(&self, ty: u8) -> Vec<u64> {
        (2..self.pages())
            .filter(|&i| &self.page(i)[..4] == b"QBPG" && self.page_type(i) == ty)
            .collect()
    }
}

const LEAF: u8 = 1;
const INTERNAL: u8 = 2;
const OVERFLOW: u8 = 3;
const FREELIST: u8 = 4;

/// Runs `f`, turning a panic into `Err(message)`.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// A leaf's fragmented-bytes counter (header offset 36) is only ever used
/// by the writer's `NodeMut::fits`, which trusts it. A page with a valid
/// checksum but a too-large count makes `fits` say yes, `insert` compacts,
/// and `start - cell.len()` underflows: a panic from disk bytes.
#[test]
fn leaf_fragment_count_from_disk_never_panics_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    // Three cells of the largest inline size: one full leaf (the root).
    for k in [b"a", b"b", b"c"] {
        e.set(k, &[7u8; 2600 - 7 - 1]).unwrap();
    }
    e.checkpoint().unwrap();
    drop(e);
    let mut f = DataFile::load(dir.path());
    let root = f.root();
    assert_eq!(f.page_type(root), LEAF);
    f.edit(root, |p| put_u16(p, 36, 8000));
    f.save();

    // Pages are checked as they are read from disk: the damaged root may
    // already fail the open, with a corruption error.
    let e = match BTreeEngine::open(dir.path(), common::opts(1 << 20)) {
        Ok(e) => e,
        Err(err) => {
            assert!(err.is_corruption(), "{err}");
            return;
        }
    };
    // Reading the damaged leaf may already report it; that is fine too.
    match e.get(b"a") {
        Ok(v) => assert_eq!(v, Some(vec![7u8; 2592])),
        Err(err) => assert!(err.is_corruption(), "{err}"),
    }
    let res = no_panic(|| e.set(b"d", &[8u8; 2592]));
    match res {
        Err(msg) => panic!("a damaged page panicked the writer: {msg}"),
        Ok(Err(err)) => assert!(err.is_corruption(), "{err}"),
        Ok(Ok(())) => {
            // If it went through, the data must still be right.
            for k in [b"a", b"b", b"c"] {
                assert_eq!(e.get(k).unwrap(), Some(vec![7u8; 2592]));
            }
            assert_eq!(e.get(b"d").unwrap(), Some(vec![8u8; 2592]));
        }
    }
}

/// Meta page with a valid checksum but an absurd page count:
/// `page_count * PAGE_SIZE` overflows in `read_meta`.
#[test]
fn absurd_page_count_in_meta_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    e.set(b"k", b"v").unwrap();
    e.checkpoint().unwrap();
    drop(e);
    let mut f = DataFile::load(dir.path());
    f.edit_meta(|p| put_u64(p, 40, 1 << 62));
    f.save();
    let res = no_panic(|| BTreeEngine::open(dir.path(), common::opts(1 << 20)).map(|_| ()));
    match res {
        Err(msg) => panic!("opening panicked: {msg}"),
        Ok(Ok(())) => panic!("a meta page claiming 2^62 pages was accepted"),
        Ok(Err(err)) => assert!(err.is_corruption(), "{err}"),
    }
}

/// An overflow chain whose next pointer loops back to itself: the reader
/// stops after `len` bytes and returns the first chunk twice as the value.
/// `verify` detects it ("chain longer than its value"), the read path not.
#[test]
fn overflow_chain_cycle_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let big: Vec<u8> = (0..2 * 8144u32).map(|i| (i / 8144) as u8 + 1).collect();
    e.set(b"big", &big).unwrap();
    e.checkpoint().unwrap();
    drop(e);
    let mut f = DataFile::load(dir.path());
    let ov = f.pages_of_type(OVERFLOW);
    assert_eq!(ov.len(), 2);
    let first = *ov.iter().find(|&&id| get_u64(f.page(id), 32) != 0).unwrap();
    f.edit(first, |p| put_u64(p, 32, first));
    f.save();

    let e = common::open(dir.path(), 1 << 20);
    match no_panic(|| e.get(b"big")) {
        Err(msg) => panic!("panicked: {msg}"),
        Ok(Err(err)) => assert!(err.is_corruption(), "{err}"),
        Ok(Ok(v)) => assert!(v.as_deref() == Some(&big[..]), "damaged chain read as a wrong value"),
    }
}

/// The free list (checksums valid) lists the live root page. Nothing
/// checks free ids against the tree at open, so the allocator hands the
/// root out again: the engine silently destroys its own tree.
#[test]
fn free_list_listing_the_root_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let model = MemoryEngine::new();
    // Enough churn that the checkpoint has a free list.
    for round in 0..4u8 {
        let mut b = WriteBatch::new();
        for i in 0..300u32 {
            b.set(&i.to_be_bytes(), &[round; 100]);
        }
        e.write(b.clone()).unwrap();
        model.write(b).unwrap();
        e.checkpoint().unwrap();
    }
    drop(e);
    let mut f = DataFile::load(dir.path());
    let root = f.root();
    let list = f.freelist();
    assert_ne!(list, 0, "expected a free list");
    assert!(get_u32(f.page(list), 40) >= 1);
    // Replace the first listed free page by the root.
    let listed: Vec<u64> = (0..get_u32(f.page(list), 40) as usize)
        .map(|j| get_u64(f.page(list), 48 + 8 * j))
        .collect();
    assert!(!listed.contains(&root));
    f.edit(list, |p| put_u64(p, 48, root));
    f.save();

    let e = match BTreeEngine::open(dir.path(), common::opts(1 << 20)) {
        Err(err) => {
            assert!(err.is_corruption(), "{err}");
            return;
        }
        Ok(e) => e,
    };
    // Not detected at open: then at least the data must survive writes.
    let res = no_panic(|| -> Result<(), String> {
        for round in 0..6u8 {
            let mut b = WriteBatch::new();
            for i in (0..300u32).step_by(7) {
                b.set(&i.to_be_bytes(), &[100 + round; 120]);
            }
            e.write(b.clone()).map_err(|x| x.to_string())?;
            model.write(b).unwrap();
            e.checkpoint().map_err(|x| x.to_string())?;
        }
        let got = e.scan(KeyRange::all(), Direction::Forward).map_err(|x| x.to_string())?;
        let mut got = got;
        let got = got.collect_pairs().map_err(|x| x.to_string())?;
        if got != all(&model, Direction::Forward) {
            return Err("data differs from the model".into());
        }
        e.verify().map_err(|x| x.to_string())?;
        Ok(())
    });
    match res {
        Err(msg) => panic!("panicked: {msg}"),
        Ok(Err(msg)) => panic!("root listed as free was not detected at open; later: {msg}"),
        Ok(Ok(())) => {}
    }
}

// ------------------------------------------------------- cursor bounds

fn bound(kind: u8, k: &[u8]) -> Bound<Vec<u8>> {
    match kind {
        0 => Bound::Unbounded,
        1 => Bound::Included(k.to_vec()),
        _ => Bound::Excluded(k.to_vec()),
    }
}

/// Range scans in both directions with Included/Excluded bounds equal to
/// existing keys (first, last, leaf boundaries), between keys, and outside
/// the key space, on a tree with many leaves and three levels.
#[test]
fn cursor_bounds_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 256 << 10);
    let model = MemoryEngine::new();
    // Even ids only; key lengths vary so leaves hold 3..100 keys.
    let key =
        |i: u16| big_key(i, if i.is_multiple_of(5) { 1500 } else { 2 + (i % 7) as usize * 30 });
    let mut b = WriteBatch::new();
    for i in (0..1200u16).step_by(2) {
        b.set(&key(i), &value((i % 13) as usize * 40, i as u64));
    }
    b.set(b"", b"empty key");
    e.write(b.clone()).unwrap();
    model.write(b).unwrap();
    e.checkpoint().unwrap();
    let r = e.verify().unwrap();
    assert!(r.depth >= 3, "{r:?}");

    let mut cands: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 3]];
    for i in 0..1202u16 {
        cands.push(key(i));
        if i % 97 == 0 {
            let mut k = key(i);
            k.push(0);
            cands.push(k);
            cands.push(key(i)[..2].to_vec());
        }
    }
    let check = |start: Bound<Vec<u8>>, end: Bound<Vec<u8>>| {
        for d in [Direction::Forward, Direction::Reverse] {
            let r = KeyRange { start: start.clone(), end: end.clone() };
            let got = e.scan(r.clone(), d).unwrap().collect_pairs().unwrap();
            let want = model.scan(r.clone(), d).unwrap().collect_pairs().unwrap();
            assert!(got == want, "{d:?} {r:?}: got {} pairs, want {}", got.len(), want.len());
        }
    };
    // One bound only, for every candidate.
    for c in &cands {
        for kind in 1..3 {
            check(bound(kind, c), Bound::Unbounded);
            check(Bound::Unbounded, bound(kind, c));
        }
    }
    // Both bounds, pseudo-random pairs (including empty and inverted ranges).
    let mut rng = Rng(77);
    for _ in 0..600 {
        let a = &cands[rng.below(cands.len() as u64) as usize];
        let z = &cands[rng.below(cands.len() as u64) as usize];
        check(bound(rng.below(3) as u8, a), bound(rng.below(3) as u8, z));
    }
    // Start == end with every bound kind.
    for c in cands.iter().step_by(11) {
        for (s, t) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            check(bound(s, c), bound(t, c));
        }
    }
    // Cursors keep working after the end: advance stays false.
    let mut c = e.scan(KeyRange::all(), Direction::Reverse).unwrap();
    let n = c.collect_pairs().unwrap().len();
    assert_eq!(n, 601);
    assert!(!c.advance().unwrap());
}

// -------------------------------------- readers across commits/checkpoints

/// Cursors and their versions stay valid over many commits, checkpoints
/// and evictions with a tiny pool: no page they need is reused.
#[test]
fn old_cursors_survive_many_commits_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 128 << 10);
    let n = 3000u32;
    let val = |generation: u32, i: u32| {
        let mut v = vec![generation as u8; 60 + (i % 5) as usize * 400];
        v[..4].copy_from_slice(&i.to_le_bytes());
        v
    };
    let mut b = WriteBatch::new();
    for i in 0..n {
        b.set(&i.to_be_bytes(), &val(0, i));
    }
    e.write(b).unwrap();
    e.checkpoint().unwrap();
    // Cursors at different positions and directions, plus one not started.
    let mut fwd = e.scan(KeyRange::all(), Direction::Forward).unwrap();
    let mut rev = e.scan(KeyRange::all(), Direction::Reverse).unwrap();
    let mut mid = e
        .scan(KeyRange::between(&500u32.to_be_bytes(), &2500u32.to_be_bytes()), Direction::Forward)
        .unwrap();
    let mut lazy = e.scan(KeyRange::all(), Direction::Reverse).unwrap();
    for _ in 0..10 {
        assert!(fwd.advance().unwrap());
        assert!(rev.advance().unwrap());
    }
    assert!(mid.advance().unwrap());
    let mut rng = Rng(5);
    for generation in 1..=30u32 {
        let mut b = WriteBatch::new();
        for _ in 0..300 {
            let i = rng.below(n as u64 + 500) as u32;
            if rng.below(3) == 0 {
                b.delete(&i.to_be_bytes());
            } else {
                b.set(&i.to_be_bytes(), &val(generation, i));
            }
        }
        e.write(b).unwrap();
        if generation % 3 == 0 {
            e.checkpoint().unwrap();
        }
    }
    // verify (a checkpoint and a full walk) while old versions are held.
    e.verify().unwrap();
    let check = |c: &mut Box<dyn qube_storage::Cursor + '_>, expect: Vec<u32>| {
        let mut got = Vec::new();
        while c.advance().unwrap() {
            let i = u32::from_be_bytes(c.key().try_into().unwrap());
            assert!(c.value() == val(0, i).as_slice(), "key {i}: value from a later version");
            got.push(i);
        }
        assert_eq!(got, expect);
    };
    check(&mut fwd, (10..n).collect());
    check(&mut rev, (0..n - 10).rev().collect());
    check(&mut mid, (501..2500).collect());
    check(&mut lazy, (0..n).rev().collect());
    drop((fwd, rev, mid, lazy));
    e.checkpoint().unwrap();
    e.verify().unwrap();
}

// ------------------------------------------------------ crash images

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

/// Opens a crash image and checks it holds exactly `want`, and verifies.
fn check_image(img: &Path, want: &[(Vec<u8>, Vec<u8>)], what: &str) {
    let e = BTreeEngine::open(img, common::opts(1 << 20))
        .unwrap_or_else(|err| panic!("{what}: open: {err}"));
    let got = e
        .scan(KeyRange::all(), Direction::Forward)
        .and_then(|mut c| c.collect_pairs())
        .unwrap_or_else(|err| panic!("{what}: scan: {err}"));
    assert!(got == want, "{what}: {} pairs, want {}", got.len(), want.len());
    e.verify().unwrap_or_else(|err| panic!("{what}: verify: {err}"));
}

/// Simulates a crash at two points of every checkpoint, with a tiny pool
/// (evictions and spills write pages between checkpoints) and readers
/// holding old versions across checkpoints:
///
/// * just before each new meta page is written (a checkpoint that compacts
///   writes two): every page it wrote is on disk, the meta pages are the
///   old ones; the image is copied by the engine's test hook right there;
/// * just after the checkpoint.
///
/// Also a crash image after every single batch.
#[test]
fn crash_images_around_checkpoints_recover() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 128 << 10);
    let hook_images = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (from, to, images) =
            (dir.path().to_path_buf(), scratch.path().to_path_buf(), hook_images.clone());
        e.before_meta_write(move || {
            let mut images = images.lock().unwrap();
            let p = to.join(format!("meta{}", images.len()));
            copy_dir(&from, &p);
            images.push(p);
        });
    }
    let model = MemoryEngine::new();
    let mut rng = Rng(99);
    let mut held = Vec::new();
    let mut img_n = 0;
    let mut image = |f: &dyn Fn(&Path)| {
        img_n += 1;
        let p = scratch.path().join(format!("img{img_n}"));
        f(&p);
        p
    };
    let mut compacted = false;
    for cycle in 0..8u64 {
        for _ in 0..4 {
            let mut b = WriteBatch::new();
            for _ in 0..40 {
                let k = (rng.below(400) as u32).to_be_bytes();
                match rng.below(10) {
                    0..=2 => b.delete(&k),
                    3 => b.set(&k, &value(3000 + rng.below(12000) as usize, cycle)),
                    _ => b.set(&k, &value(rng.below(700) as usize, cycle)),
                };
            }
            e.write(b.clone()).unwrap();
            model.write(b).unwrap();
            let want = all(&model, Direction::Forward);
            let img = image(&|p| copy_dir(dir.path(), p));
            check_image(&img, &want, &format!("cycle {cycle}: after a batch"));
            if rng.below(3) == 0 {
                held.push(e.scan(KeyRange::all(), Direction::Forward).unwrap());
            }
        }
        let want = all(&model, Direction::Forward);
        let relocated = e.status().unwrap().pages_relocated;
        e.checkpoint().unwrap();
        compacted |= e.status().unwrap().pages_relocated > relocated;
        let metas = std::mem::take(&mut *hook_images.lock().unwrap());
        assert!(!metas.is_empty(), "cycle {cycle}: the checkpoint wrote no meta page");
        for (i, img) in metas.iter().enumerate() {
            check_image(img, &want, &format!("cycle {cycle}: crash before meta write {i}"));
        }
        let img = image(&|p| copy_dir(dir.path(), p));
        check_image(&img, &want, &format!("cycle {cycle}: crash after the checkpoint"));
        if held.len() > 3 {
            held.remove(0);
        }
        if cycle == 5 {
            // Let go of every old version: the next checkpoints compact.
            held.clear();
            let mut b = WriteBatch::new();
            for k in 0..400u32 {
                if k % 4 != 0 {
                    b.delete(&k.to_be_bytes());
                }
            }
            e.write(b.clone()).unwrap();
            model.write(b).unwrap();
        }
    }
    assert!(compacted, "no checkpoint compacted: the test lost its point");
    for mut c in held {
        c.collect_pairs().unwrap();
    }
}

// ------------------------------------------------------------ concurrency

/// One writer, readers (scans, held cursors, point reads), a thread taking
/// explicit checkpoints and the background checkpoint thread, tiny pool.
/// Invariant of every batch: a/i and b/i hold the same value, and "gen"
/// holds the generation written by the last batch.
#[test]
fn readers_writer_and_checkpoints_concurrently() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(128 << 10);
    o.checkpoint_interval = Some(Duration::from_millis(1));
    o.checkpoint_wal_bytes = 64 << 10;
    o.durability = qube_storage::Durability::Never;
    let e = Arc::new(BTreeEngine::open(dir.path(), o.clone()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const N: u32 = 150;
    const ROUNDS: u32 = 150;
    let writer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(3);
            for round in 1..=ROUNDS {
                let mut b = WriteBatch::new();
                for _ in 0..40 {
                    let i = rng.below(N as u64) as u32;
                    if rng.below(4) == 0 {
                        b.delete(format!("a/{i:04}").as_bytes());
                        b.delete(format!("b/{i:04}").as_bytes());
                    } else {
                        let mut v = value(rng.below(3000) as usize + 4, round as u64);
                        v[..4].copy_from_slice(&round.to_le_bytes());
                        b.set(format!("a/{i:04}").as_bytes(), &v);
                        b.set(format!("b/{i:04}").as_bytes(), &v);
                    }
                }
                b.set(b"gen", &round.to_le_bytes());
                e.write(b).unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let check_pairs = |pairs: Vec<(Vec<u8>, Vec<u8>)>| {
        let gen_v = pairs.iter().find(|p| p.0 == b"gen").map(|p| p.1.clone());
        let gen_n = gen_v.map_or(0, |v| u32::from_le_bytes(v[..4].try_into().unwrap()));
        let a: Vec<_> = pairs.iter().filter(|p| p.0.starts_with(b"a/")).collect();
        let b: Vec<_> = pairs.iter().filter(|p| p.0.starts_with(b"b/")).collect();
        assert_eq!(a.len(), b.len(), "torn batch");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0[2..], y.0[2..], "torn batch");
            assert!(x.1 == y.1, "torn batch");
            let r = u32::from_le_bytes(x.1[..4].try_into().unwrap());
            assert!(r <= gen_n, "value from a later batch than gen");
        }
    };
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) || n == 0 {
                    n += 1;
                    let d =
                        if n.is_multiple_of(2) { Direction::Forward } else { Direction::Reverse };
                    let mut pairs = e.scan(KeyRange::all(), d).unwrap().collect_pairs().unwrap();
                    pairs.sort();
                    check_pairs(pairs);
                    if n % 5 == t {
                        held.push(e.scan(KeyRange::all(), Direction::Forward).unwrap());
                    }
                    if held.len() > 4 {
                        let mut c = held.remove(0);
                        let mut pairs = c.collect_pairs().unwrap();
                        pairs.sort();
                        check_pairs(pairs);
                    }
                    let i = n % N as u64;
                    let _ = e.get(format!("a/{i:04}").as_bytes()).unwrap();
                }
                for mut c in held {
                    let mut pairs = c.collect_pairs().unwrap();
                    pairs.sort();
                    check_pairs(pairs);
                }
            })
        })
        .collect();
    let checkpointer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                e.checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    writer.join().unwrap();
    checkpointer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let want = all(&*e, Direction::Forward);
    check_pairs(want.clone());
    e.verify().unwrap();
    let e = Arc::try_unwrap(e).ok().unwrap();
    e.close().unwrap();
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    assert!(all(&e, Direction::Forward) == want);
    e.verify().unwrap();
}

/// Builds a checkpointed tree of two levels or more and returns its dir.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn two_level_tree() -> (tempfile::TempDir, Pairs) {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    let mut b = WriteBatch::new();
    for i in 0..400u32 {
        b.set(&i.to_be_bytes(), &[i as u8; 100]);
    }
    e.write(b).unwrap();
    e.checkpoint().unwrap();
    let want = all(&e, Direction::Forward);
    drop(e);
    (dir, want)
}

/// Every way of touching the tree: each must give an error (or correct
/// data), never a panic or a hang.
fn touch_all(dir: &Path) -> Vec<String> {
    let mut outcomes = Vec::new();
    let res = no_panic(|| {
        let e = match BTreeEngine::open(dir, common::opts(1 << 20)) {
            Ok(e) => e,
            Err(err) => return vec![format!("open: {err}")],
        };
        let mut out = Vec::new();
        out.push(format!("get: {:?}", e.get(&200u32.to_be_bytes()).map(|v| v.map(|v| v.len()))));
        for d in [Direction::Forward, Direction::Reverse] {
            out.push(format!(
                "scan {d:?}: {:?}",
                e.scan(KeyRange::all(), d).and_then(|mut c| c.collect_pairs()).map(|p| p.len())
            ));
        }
        out.push(format!("set: {:?}", e.set(&200u32.to_be_bytes(), b"x")));
        out.push(format!("delete: {:?}", e.delete(&3u32.to_be_bytes())));
        out.push(format!("verify: {:?}", e.verify().map(|_| ())));
        out
    });
    match res {
        Ok(v) => outcomes.extend(v),
        Err(msg) => panic!("panicked: {msg}"),
    }
    outcomes
}

/// A child pointer (checksum valid) holding an absurd page id:
/// `PageFile::read_raw` computes `id * PAGE_SIZE` unchecked.
#[test]
fn absurd_child_page_id_is_an_error_not_a_panic() {
    let (dir, _) = two_level_tree();
    let mut f = DataFile::load(dir.path());
    let root = f.root();
    assert_eq!(f.page_type(root), INTERNAL);
    f.edit(root, |p| put_u64(p, 40, 1 << 60));
    f.save();
    let out = touch_all(dir.path());
    assert!(out.iter().any(|o| o.contains("Corruption")), "{out:?}");
}

/// An internal node whose child pointer is its own page (a cycle):
/// every path must stop with an error, not loop.
#[test]
fn internal_child_cycle_is_an_error_not_a_hang() {
    let (dir, _) = two_level_tree();
    let mut f = DataFile::load(dir.path());
    let root = f.root();
    f.edit(root, |p| put_u64(p, 40, root));
    f.save();
    let out = touch_all(dir.path());
    assert!(out.iter().filter(|o| o.contains("Corruption")).count() >= 3, "{out:?}");
}

/// Slot offsets of an internal node pointing into the header, the slot
/// array and past the page; a slot count overlapping the cells.
#[test]
fn bad_slot_offsets_are_errors() {
    let (dir, _) = two_level_tree();
    let base = DataFile::load(dir.path());
    let root = base.root();
    for off in [0u16, 48, 50, 8191, 8190, 9000, u16::MAX] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let mut f = DataFile::load(copy.path());
        f.edit(root, |p| put_u16(p, 48, off));
        f.save();
        let out = touch_all(copy.path());
        assert!(
            out.iter().any(|o| o.to_lowercase().contains("corruption")),
            "offset {off}: {out:?}"
        );
    }
    // Slot count that makes the slot array overlap the cells.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let mut f = DataFile::load(copy.path());
    f.edit(root, |p| put_u16(p, 32, 4000));
    f.save();
    let out = touch_all(copy.path());
    assert!(out.iter().any(|o| o.to_lowercase().contains("corruption")), "{out:?}");
}

#[test]
fn free_list_cycle_is_an_error() {
    // A tree with a free list.
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    for round in 0..4u8 {
        let mut b = WriteBatch::new();
        for i in 0..300u32 {
            b.set(&i.to_be_bytes(), &[round; 100]);
        }
        e.write(b).unwrap();
        e.checkpoint().unwrap();
    }
    drop(e);
    let mut f = DataFile::load(dir.path());
    let list = f.freelist();
    assert_ne!(list, 0);
    assert_eq!(f.page_type(list), FREELIST);
    // Self loop with count 0 and the meta's free count 0: only the cycle is wrong.
    f.edit(list, |p| {
        put_u64(p, 32, list);
        put_u32(p, 40, 0);
    });
    f.edit_meta(|p| put_u64(p, 64, 0));
    f.save();
    let err = no_panic(|| BTreeEngine::open(dir.path(), common::opts(1 << 20)).err())
        .unwrap_or_else(|m| panic!("panicked: {m}"))
        .expect("a cyclic free list was accepted");
    assert!(err.is_corruption(), "{err}");
}

/// A data file in the page layout that format version 1 documents (and
/// that the engine wrote until slot prefixes were added): 2-byte slots.
/// The page layout changed without a version bump, so this file still
/// claims version 1; it must be read correctly or refused, never misread.
#[test]
fn version_1_file_with_two_byte_slots_is_read_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 3 * PS];
    let meta = |p: &mut [u8], seq: u64, root: u64, pages: u64, keys: u64| {
        p[..8].copy_from_slice(b"QUBEDB\x00\x01");
        put_u32(p, 8, 1);
        put_u32(p, 12, PS as u32);
        put_u64(p, 16, seq);
        put_u64(p, 24, root);
        put_u64(p, 40, pages);
        put_u64(p, 56, keys);
        reseal_meta(p);
    };
    meta(&mut bytes[PS..2 * PS], 1, 0, 2, 0);
    meta(&mut bytes[..PS], 2, 2, 3, 1);
    {
        let p = &mut bytes[2 * PS..];
        p[..4].copy_from_slice(b"QBPG");
        put_u16(p, 4, 1);
        p[6] = LEAF;
        put_u64(p, 8, 2);
        // One cell: key "apple", value "red".
        let mut cell = Vec::new();
        cell.extend_from_slice(&5u16.to_le_bytes());
        cell.push(0);
        cell.extend_from_slice(&3u32.to_le_bytes());
        cell.extend_from_slice(b"apple");
        cell.extend_from_slice(b"red");
        let start = PS - cell.len();
        p[start..].copy_from_slice(&cell);
        put_u16(p, 32, 1);
        put_u16(p, 34, start as u16);
        put_u16(p, 48, start as u16); // the 2-byte slot array of format 1
        reseal(p);
    }
    std::fs::write(dir.path().join("data.qdb"), &bytes).unwrap();
    let e = match BTreeEngine::open(dir.path(), common::opts(1 << 20)) {
        Err(err) => {
            assert!(err.is_corruption() || matches!(err, qube_storage::Error::Refused(_)), "{err}");
            return;
        }
        Ok(e) => e,
    };
    let scanned = e.scan(KeyRange::all(), Direction::Forward).and_then(|mut c| c.collect_pairs());
    let got = e.get(b"apple");
    match (&scanned, &got) {
        (Ok(s), Ok(g)) => {
            assert_eq!(s, &vec![(b"apple".to_vec(), b"red".to_vec())]);
            assert_eq!(g.as_deref(), Some(&b"red"[..]), "scan sees the key, get does not");
        }
        _ => assert!(
            scanned.is_err() && got.is_err(),
            "half the reads fail: scan {scanned:?}, get {got:?}"
        ),
    }
}

fn dump_tree(f: &DataFile, id: u64, depth: usize) {
    let p = f.page(id);
    let n = get_u16(p, 32) as usize;
    let start = get_u16(p, 34) as usize;
    let frag = get_u16(p, 36) as usize;
    let used = 6 * n + (8192 - start) - frag;
    let leaf = p[6] == LEAF;
    let mut keys = Vec::new();
    for i in 0..n {
        let off = get_u16(p, 48 + 6 * i) as usize;
        let kl = get_u16(p, off) as usize;
        let h = if leaf { 7 } else { 10 };
        let k = &p[off + h..off + h + kl];
        keys.push(format!("{:02x}{:02x}/{}", k[0], k.get(1).copied().unwrap_or(0), kl));
    }
    eprintln!(
        "{}{} {} n={n} used={used} keys={keys:?}",
        "  ".repeat(depth),
        if leaf { "L" } else { "I" },
        id
    );
    if !leaf {
        dump_tree(f, get_u64(p, 40), depth + 1);
        for i in 0..n {
            let off = get_u16(p, 48 + 6 * i) as usize;
            dump_tree(f, get_u64(p, off + 2), depth + 1);
        }
    }
}

/// Random big/medium/tiny keys inserted, then deleted one by one, verifying
/// as it goes. Seed 1455 reaches this state: internal node P lost its last
/// separator (its two leaves merged); its parent G (used 7284 bytes:
/// separators of 2048, 2048, 2048 and 1076 bytes) rebalances P with its
/// left sibling Q (used 7215). Merging does not fit (7215 + 1092 > 8144), so
/// `rebalance` redistributes; the balanced cut promotes a 2048-byte key, which
/// does not fit in G in place of the 1076-byte one, and `rebalance` returns
/// without doing anything: P stays an internal node with no key and one
/// child, which `verify` (rightly, by the module's invariants) calls
/// corruption; leaves under P can no longer be merged either.
#[test]
fn delete_never_leaves_an_empty_internal_node() {
    let seed = 1455u64;
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(1 << 20);
    o.durability = qube_storage::Durability::Never;
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    let model = MemoryEngine::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let nkeys = 60 + rng.below(200) as u16;
    let mut ids: Vec<u16> = (0..nkeys).collect();
    let lens: Vec<usize> = (0..nkeys)
        .map(|_| match rng.below(10) {
            0..=3 => 2048,
            4..=6 => 900 + rng.below(200) as usize,
            _ => 2 + rng.below(8) as usize,
        })
        .collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let vlen = rng.below(1500) as usize;
    for &i in &ids {
        let (k, v) = (big_key(i, lens[i as usize]), value(vlen, i as u64));
        e.set(&k, &v).unwrap();
        model.set(&k, &v).unwrap();
    }
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (n, &i) in ids.iter().enumerate() {
        let k = big_key(i, lens[i as usize]);
        e.delete(&k).unwrap();
        model.delete(&k).unwrap();
        if n % 3 == 0 {
            assert!(all(&e, Direction::Forward) == all(&model, Direction::Forward), "after {n}");
            if let Err(err) = e.verify() {
                let f = DataFile::load(dir.path());
                dump_tree(&f, f.root(), 0);
                panic!("after {} deletes: {err}", n + 1);
            }
        }
    }
    assert_eq!(e.status().unwrap().keys, 0);
}

/// Several writers (group commit, durability Always), readers checking each
/// writer's invariant, and explicit checkpoints; then reopen.
#[test]
fn concurrent_writers_group_commit_and_checkpoints() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let o = common::opts(256 << 10);
    let e = Arc::new(BTreeEngine::open(dir.path(), o.clone()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u8)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for round in 1..=40u32 {
                    // Writer t keeps x/t/i equal to y/t/i for all i.
                    let mut b = WriteBatch::new();
                    for i in 0..30u32 {
                        let i = (i * 7 + round) % 60;
                        let mut v = value(20 + (i as usize * 97) % 2500, round as u64);
                        v[..4].copy_from_slice(&round.to_le_bytes());
                        b.set(format!("x/{t}/{i:03}").as_bytes(), &v);
                        b.set(format!("y/{t}/{i:03}").as_bytes(), &v);
                    }
                    e.write(b).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let pairs = all(&*e, Direction::Reverse);
                let xs: Vec<_> = pairs.iter().filter(|p| p.0[0] == b'x').collect();
                let ys: Vec<_> = pairs.iter().filter(|p| p.0[0] == b'y').collect();
                assert_eq!(xs.len(), ys.len());
                for (x, y) in xs.iter().zip(&ys) {
                    assert_eq!(x.0[1..], y.0[1..]);
                    assert!(x.1 == y.1, "torn batch");
                }
            }
        })
    };
    let checkpointer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                e.checkpoint().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    checkpointer.join().unwrap();
    let want = all(&*e, Direction::Forward);
    assert_eq!(want.len(), 3 * 2 * 60);
    assert_eq!(e.status().unwrap().last_lsn, 120);
    e.verify().unwrap();
    drop(e);
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    assert!(all(&e, Direction::Forward) == want);
    e.verify().unwrap();
}

/// A reader that holds one version across many commits: dropping it
/// releases a long chain of garbage bags, which must not recurse (the test
/// thread has a 2 MiB stack) and must free every page exactly once.
#[test]
fn old_version_held_across_many_commits_then_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(1 << 20);
    o.durability = qube_storage::Durability::Never;
    let e = BTreeEngine::open(dir.path(), o).unwrap();
    for i in 0..200u32 {
        e.set(&i.to_be_bytes(), &[1; 30]).unwrap();
    }
    let mut c = e.scan(KeyRange::all(), Direction::Forward).unwrap();
    assert!(c.advance().unwrap());
    for n in 0..40_000u32 {
        let i = n % 200;
        e.set(&i.to_be_bytes(), &n.to_le_bytes()).unwrap();
        if n % 10_000 == 9_999 {
            e.checkpoint().unwrap();
        }
    }
    assert_eq!(c.collect_pairs().unwrap().len(), 199);
    drop(c);
    e.set(b"after", b"drop").unwrap(); // drains the released pages
    e.checkpoint().unwrap();
    let r = e.verify().unwrap();
    // Every page the old version held came back: compaction moved the
    // live tree down and the file's free tail was cut.
    assert!(r.pages <= 16, "{r:?}");
    // More commits reuse freed pages: the file stays small.
    for n in 0..2_000u32 {
        e.set(&(n % 200).to_be_bytes(), &[2; 40]).unwrap();
    }
    e.checkpoint().unwrap();
    let r2 = e.verify().unwrap();
    assert!(r2.pages <= 32, "{r:?} then {r2:?}");
}

// ------------------------------------------- common prefixes and hints

/// A key shaped like an MVCC version key: 30 shared bytes (zeros and 0xFF
/// among them, as escaping makes), then `i` big-endian, then a suffix.
fn shared_prefix_key(i: u32, suffix: &[u8]) -> Vec<u8> {
    let mut k = vec![0x02, 0x10];
    k.extend_from_slice(&[0x00, 0xFF].repeat(14));
    k.extend_from_slice(&i.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// Nodes whose keys share long prefixes, through splits, merges, inserts
/// that shorten a node's prefix (keys below and above the shared part),
/// deletes, a checkpoint, and a restart that replays the WAL after it
/// (what recovery after a crash does): every read agrees with a model
/// and the tree verifies (which checks every node's prefix and hints).
#[test]
fn long_shared_prefixes_survive_splits_merges_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let model = MemoryEngine::new();
    let mut rng = Rng(7);
    let check = |e: &BTreeEngine, model: &MemoryEngine, what: &str| {
        for d in [Direction::Forward, Direction::Reverse] {
            assert!(all(e, d) == all(model, d), "{what}: {d:?} scan differs");
        }
        for i in (0..4000u32).step_by(37) {
            let k = shared_prefix_key(i, b"");
            assert_eq!(e.get(&k).unwrap(), model.get(&k).unwrap(), "{what}: get {i}");
        }
    };
    {
        let e = common::open(dir.path(), 256 << 10);
        for round in 0..6u32 {
            let mut b = WriteBatch::new();
            for _ in 0..700 {
                let i = rng.below(4000) as u32;
                let suffix: &[u8] = match rng.below(4) {
                    0 => b"",
                    1 => &[0x00],
                    2 => &[0x00, 0x00, 0x01],
                    _ => b"tail",
                };
                let k = shared_prefix_key(i, suffix);
                if rng.below(5) == 0 {
                    b.delete(&k);
                } else {
                    b.set(&k, &value(20 + rng.below(200) as usize, i as u64));
                }
            }
            // Keys that share only part of the prefix, below and above it:
            // inserted into the tree's first and last leaves, they shorten
            // those leaves' prefixes.
            let mut low = shared_prefix_key(round, b"");
            low[3 + 2 * round as usize] = 0x00;
            b.set(&low, b"low");
            let mut high = shared_prefix_key(round, b"");
            high[4 + 2 * round as usize] = 0xFF;
            b.set(&high, b"high");
            model.write(b.clone()).unwrap();
            e.write(b).unwrap();
            if round == 2 {
                e.checkpoint().unwrap();
                e.verify().unwrap();
            }
        }
        check(&e, &model, "before restart");
        // Deleting most keys merges leaves.
        let mut b = WriteBatch::new();
        for i in 0..4000u32 {
            if i % 10 != 0 {
                for suffix in [&b""[..], &[0x00], &[0x00, 0x00, 0x01], b"tail"] {
                    b.delete(&shared_prefix_key(i, suffix));
                    model.delete(&shared_prefix_key(i, suffix)).unwrap();
                }
            }
        }
        e.write(b).unwrap();
        check(&e, &model, "after deletes");
        // Dropped without a checkpoint: the reopen replays the WAL.
    }
    let e = common::open(dir.path(), 256 << 10);
    check(&e, &model, "after recovery");
    e.verify().unwrap();
}

/// A load in key order appends past the remembered leaf's last key with
/// no search: a key that keeps the leaf's common prefix leaves the prefix
/// and hints alone, one that shares less of it (its counter's high bytes
/// changed, or it lost the shared bytes) shortens them. The tree verifies
/// (every node's prefix and hints) and reads back, also after a restart.
#[test]
fn appends_past_the_last_key_keep_or_shorten_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let model = MemoryEngine::new();
    let check = |e: &BTreeEngine, model: &MemoryEngine, what: &str| {
        for d in [Direction::Forward, Direction::Reverse] {
            assert!(all(e, d) == all(model, d), "{what}: {d:?} scan differs");
        }
    };
    {
        let e = common::open(dir.path(), 256 << 10);
        let mut n = 0u32;
        for round in 0..5u32 {
            let mut b = WriteBatch::new();
            let mut keys = Vec::new();
            for i in 0..2500u32 {
                // Steps that carry into the counter's higher bytes now and
                // then, so that appended keys share less of the prefix.
                n += if i % 211 == 0 { 70_001 } else { 1 + i % 5 };
                let suffix: &[u8] = if i % 3 == 0 { b"" } else { &[0x00, 0x01] };
                keys.push(shared_prefix_key(n, suffix));
            }
            // Past every counter key, sharing fewer of the escaped bytes.
            let mut far = shared_prefix_key(0, b"");
            far[2 + 2 * round as usize] = 0x01;
            keys.push(far);
            keys.sort();
            for (j, k) in keys.iter().enumerate() {
                b.set(k, &value(10 + j % 50, j as u64));
            }
            model.write(b.clone()).unwrap();
            e.write(b).unwrap();
            e.verify().unwrap();
            check(&e, &model, &format!("round {round}"));
        }
    }
    let e = common::open(dir.path(), 256 << 10);
    check(&e, &model, "after recovery");
    e.verify().unwrap();
}

/// A node's common-prefix length (header offset 38) damaged with a valid
/// checksum: longer than its keys, and shorter than the one its hints
/// were taken at. Either is a corruption error wherever it is met, never
/// a wrong answer or a panic.
#[test]
fn damaged_common_prefix_length_is_a_corruption_error() {
    let (dir, _) = two_level_tree();
    let base = DataFile::load(dir.path());
    let root = base.root();
    assert_eq!(base.page_type(root), INTERNAL);
    let leaf = base.pages_of_type(LEAF)[0];
    let plen = get_u16(base.page(leaf), 38);
    assert!(plen >= 2, "the keys share their first two bytes, prefix {plen}");
    for (page, v) in [(root, 9000u16), (root, u16::MAX), (leaf, 9000), (leaf, plen - 1)] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let mut f = DataFile::load(copy.path());
        f.edit(page, |p| put_u16(p, 38, v));
        f.save();
        let out = touch_all(copy.path());
        let named = |o: &String| {
            let o = o.to_lowercase();
            o.contains("corruption") && (o.contains("common prefix") || o.contains("hint"))
        };
        assert!(out.iter().any(named), "page {page} prefix {v}: {out:?}");
    }
}

/// A data file of format 2 (slot hints at offset 0, no common prefix
/// length): refused at open with a message naming the format, never read
/// with the wrong hints.
#[test]
fn format_2_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::open(dir.path(), 1 << 20);
    e.set(b"k", b"v").unwrap();
    e.checkpoint().unwrap();
    drop(e);
    let mut f = DataFile::load(dir.path());
    for slot in 0..2u64 {
        let p = &mut f.bytes[slot as usize * PS..(slot as usize + 1) * PS];
        put_u32(p, 8, 2);
        reseal_meta(p);
    }
    f.save();
    match BTreeEngine::open(dir.path(), common::opts(1 << 20)) {
        Err(qube_storage::Error::Refused(msg)) => {
            assert!(msg.contains("format 2") && msg.contains("upgrade"), "{msg}");
        }
        Err(err) => panic!("expected Refused, got {err}"),
        Ok(_) => panic!("a format-2 file was opened"),
    }
}
