use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

use super::*;

type Records = Vec<(Lsn, Vec<u8>)>;

fn opts(segment_bytes: u64, sync: SyncMode) -> WalOptions {
    WalOptions { sync, segment_bytes }
}

/// Deterministic payloads of varying length (0..=60 bytes, including empty).
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 61) as usize;
    (0..len).map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8)).collect()
}

fn expected(range: std::ops::RangeInclusive<u64>) -> Records {
    range.map(|i| (i, payload(i))).collect()
}

fn collect(wal: &Wal, after: Lsn) -> Result<Records> {
    let mut out = Vec::new();
    wal.replay(after, &mut |lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

fn files_size(dir: &Path) -> u64 {
    segment_files(dir).iter().map(|p| fs::metadata(p).unwrap().len()).sum()
}

/// Writes records 1..=n with `payload(i)` and closes the WAL; returns the
/// segment files' names and contents.
fn build(dir: &Path, segment_bytes: u64, n: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let wal = Wal::open(dir, opts(segment_bytes, SyncMode::Never), 1).unwrap();
    for i in 1..=n {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
    drop(wal);
    segment_files(dir)
        .into_iter()
        .map(|p| (PathBuf::from(p.file_name().unwrap()), fs::read(&p).unwrap()))
        .collect()
}

fn restore(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

fn first_lsn_of(path: &Path) -> Lsn {
    format::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap()
}

#[test]
fn wal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
}

#[test]
fn roundtrip_across_segments_and_reopen() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(200, SyncMode::Never), 1).unwrap();
    assert!(wal.recovery_report().is_clean());
    assert_eq!(wal.last_lsn(), 0);
    for i in 1..=100 {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
    assert_eq!(wal.last_lsn(), 100);
    // Buffered records are visible to replay before anyone waited for them.
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=100));
    wal.wait_durable(100).unwrap();
    let files = segment_files(dir.path());
    assert!(files.len() >= 10, "expected many segments, got {}", files.len());
    // Closed segments end at their last record; the open one has zeros
    // written ahead of its end (PREALLOCATE).
    for f in &files[..files.len() - 1] {
        assert!(fs::metadata(f).unwrap().len() <= 200, "{} exceeds segment_bytes", f.display());
    }
    let on_disk = files_size(dir.path());
    assert!(on_disk >= wal.disk_bytes() && on_disk <= wal.disk_bytes() + PREALLOCATE);
    assert_eq!(collect(&wal, 57).unwrap(), expected(58..=100));
    assert!(collect(&wal, 100).unwrap().is_empty());
    drop(wal);

    let wal = Wal::open(dir.path(), opts(200, SyncMode::Never), 1).unwrap();
    let rep = wal.recovery_report();
    assert!(rep.is_clean(), "{rep:?}");
    assert_eq!((rep.records_recovered, rep.first_lsn, rep.last_lsn), (100, 1, 100));
    assert_eq!(wal.last_lsn(), 100);
    assert_eq!(wal.durable_lsn(), 100);
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=100));
    assert_eq!(wal.append(&payload(101)).unwrap(), 101);
    drop(wal); // Never mode: drop still hands the buffer to the OS

    let wal = Wal::open(dir.path(), opts(200, SyncMode::Never), 1).unwrap();
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=101));
}

#[test]
fn replay_stops_on_callback_error_and_checks_arguments() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
    for i in 1..=5 {
        wal.append(&payload(i)).unwrap();
    }
    let mut seen = 0;
    let err = wal
        .replay(0, &mut |lsn, _| {
            seen += 1;
            if lsn == 3 { Err(Error::Internal("stop".into())) } else { Ok(()) }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)));
    assert_eq!(seen, 3);
    assert!(matches!(wal.wait_durable(6), Err(Error::InvalidInput(_))));
    wal.wait_durable(0).unwrap();
    assert!(matches!(wal.append(&vec![0; MAX_RECORD_BYTES + 1]), Err(Error::InvalidInput(_))));
    assert_eq!(wal.last_lsn(), 5);
}

#[test]
fn large_buffers_are_written_without_waiting() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(64 << 20, SyncMode::Never), 1).unwrap();
    let block = vec![7u8; 4096];
    for _ in 0..400 {
        wal.append(&block).unwrap();
    }
    // More than WRITE_BUFFER_BYTES was appended: most of it is in the file already.
    assert!(files_size(dir.path()) > (WRITE_BUFFER_BYTES as u64), "append must flush");
    assert_eq!(wal.disk_bytes(), HEADER_LEN + 400 * (FRAME_HEADER_LEN + 4096));
}

#[test]
fn lsns_continue_after_recycle_and_reopen() {
    let dir = TempDir::new().unwrap();
    let o = || opts(64, SyncMode::Never); // about one record per segment
    let wal = Wal::open(dir.path(), o(), 1).unwrap();
    for i in 1..=20 {
        wal.append(&payload(i)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(wal.durable_lsn(), 20);
    let before = segment_files(dir.path()).len();
    assert!(before >= 10);

    wal.recycle(10).unwrap();
    let left = segment_files(dir.path());
    assert!(left.len() < before);
    assert!(first_lsn_of(&left[0]) <= 11, "records after the checkpoint must survive");
    assert_eq!(collect(&wal, 10).unwrap(), expected(11..=20));
    let on_disk = files_size(dir.path());
    assert!(on_disk >= wal.disk_bytes() && on_disk <= wal.disk_bytes() + PREALLOCATE);

    // Recycle everything: only the segment being appended to survives.
    wal.recycle(20).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(collect(&wal, 20).unwrap().is_empty());
    assert_eq!(wal.append(&payload(21)).unwrap(), 21);
    wal.recycle(u64::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1, "never the segment being appended to");
    // Fully covered, the current segment was replaced by a fresh empty one.
    assert_eq!(wal.disk_bytes(), HEADER_LEN);
    wal.sync().unwrap();
    assert!(files_size(dir.path()) <= PREALLOCATE, "the covered segment was deleted");
    assert!(collect(&wal, 0).unwrap().is_empty());
    drop(wal);

    let wal = Wal::open(dir.path(), o(), 22).unwrap();
    assert_eq!(wal.last_lsn(), 21);
    assert_eq!(wal.append(&payload(22)).unwrap(), 22);
    assert_eq!(collect(&wal, 21).unwrap(), expected(22..=22));
    drop(wal);

    // No segments at all: numbering continues at next_lsn_at_least.
    for f in segment_files(dir.path()) {
        fs::remove_file(f).unwrap();
    }
    let wal = Wal::open(dir.path(), o(), 23).unwrap();
    assert_eq!(wal.last_lsn(), 22);
    assert_eq!(wal.append(&payload(23)).unwrap(), 23);
    assert_eq!(collect(&wal, 0).unwrap(), expected(23..=23));
    drop(wal);

    // Every record is older than the checkpoint: start a fresh segment there,
    // so no segment ever has a gap inside.
    let wal = Wal::open(dir.path(), o(), 100).unwrap();
    assert_eq!(wal.last_lsn(), 99);
    assert!(wal.recovery_report().segments_recycled >= 1);
    assert_eq!(wal.append(&payload(100)).unwrap(), 100);
    drop(wal);
    let wal = Wal::open(dir.path(), o(), 100).unwrap();
    assert_eq!(collect(&wal, 0).unwrap(), expected(100..=100));
}

#[test]
fn open_removes_segments_the_checkpoint_covers() {
    let dir = TempDir::new().unwrap();
    build(dir.path(), 64, 20);
    let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 15).unwrap();
    let rep = wal.recovery_report().clone();
    assert!(rep.is_clean());
    assert!(rep.segments_recycled > 0);
    assert!(first_lsn_of(&segment_files(dir.path())[0]) <= 15);
    assert_eq!(collect(&wal, 14).unwrap(), expected(15..=20));
    assert_eq!(wal.append(b"x").unwrap(), 21);
}

#[test]
fn missing_segments_are_corruption() {
    let dir = TempDir::new().unwrap();
    build(dir.path(), 64, 20);
    for f in &segment_files(dir.path())[..3] {
        fs::remove_file(f).unwrap();
    }
    let err = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).err().unwrap();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let template = TempDir::new().unwrap();
    let n = 30;
    let files = build(template.path(), 600, n);
    assert!(files.len() >= 2);
    let (last_name, last_bytes) = files.last().unwrap().clone();
    let end = last_bytes.len() as u64;
    let start = end - FRAME_HEADER_LEN - payload(n).len() as u64;
    assert!(start > HEADER_LEN, "the last record must not be alone in its segment");

    for cut in start..end {
        let dir = TempDir::new().unwrap();
        restore(dir.path(), &files);
        let last = dir.path().join(&last_name);
        fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();

        let wal = Wal::open(dir.path(), opts(600, SyncMode::Never), 1).unwrap();
        let rep = wal.recovery_report().clone();
        if cut == start {
            assert!(rep.is_clean(), "cut at a record boundary is a clean end: {rep:?}");
        } else {
            let torn = rep.torn.as_ref().unwrap();
            assert_eq!((&torn.file, torn.offset), (&last, start), "cut {cut}");
            assert_eq!(rep.bytes_dropped, cut - start);
            assert_eq!(rep.segments_dropped, 0);
        }
        assert_eq!(rep.records_recovered, n - 1);
        assert_eq!(fs::metadata(&last).unwrap().len(), start, "torn bytes are truncated");
        assert_eq!(collect(&wal, 0).unwrap(), expected(1..=n - 1));
        assert_eq!(wal.append(b"after").unwrap(), n);
        drop(wal);

        let wal = Wal::open(dir.path(), opts(600, SyncMode::Never), 1).unwrap();
        assert!(wal.recovery_report().is_clean());
        let mut want = expected(1..=n - 1);
        want.push((n, b"after".to_vec()));
        assert_eq!(collect(&wal, 0).unwrap(), want);
    }
}

#[test]
fn torn_segment_header() {
    let template = TempDir::new().unwrap();
    let files = build(template.path(), 64, 5); // one record per segment
    let (last_name, _) = files.last().unwrap().clone();
    assert_eq!(first_lsn_of(&last_name), 5);
    for cut in 0..=HEADER_LEN {
        let dir = TempDir::new().unwrap();
        restore(dir.path(), &files);
        let last = dir.path().join(&last_name);
        fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();
        let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).unwrap();
        let rep = wal.recovery_report().clone();
        if cut < HEADER_LEN {
            assert_eq!(rep.torn.as_ref().unwrap().offset, 0);
            assert_eq!(rep.segments_dropped, 1);
        } else {
            assert!(rep.is_clean()); // an empty segment is fine
        }
        assert_eq!(collect(&wal, 0).unwrap(), expected(1..=4));
        assert_eq!(wal.append(&payload(5)).unwrap(), 5);
        drop(wal);
        let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).unwrap();
        assert_eq!(collect(&wal, 0).unwrap(), expected(1..=5));
    }

    // A header that is all zeros (the file grew but its data never reached
    // the disk) is torn, too.
    let dir = TempDir::new().unwrap();
    restore(dir.path(), &files);
    fs::write(dir.path().join(&last_name), [0u8; 40]).unwrap();
    let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).unwrap();
    assert_eq!(wal.recovery_report().bytes_dropped, 40);
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=4));
}

#[test]
fn damage_in_a_middle_segment_drops_later_segments() {
    let template = TempDir::new().unwrap();
    let files = build(template.path(), 64, 10);
    let dir = TempDir::new().unwrap();
    restore(dir.path(), &files);
    // Damage the payload CRC of the segment holding record 6 (if it has a payload).
    let victim = segment_files(dir.path()).into_iter().find(|p| first_lsn_of(p) == 6).unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    bytes[HEADER_LEN as usize + 12] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let later = segment_files(dir.path()).iter().filter(|p| first_lsn_of(p) > 6).count();
    assert!(later >= 2);
    let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).unwrap();
    let rep = wal.recovery_report().clone();
    assert_eq!(rep.torn.as_ref().unwrap().offset, HEADER_LEN);
    assert_eq!(rep.segments_dropped, later, "{rep:?}");
    assert_eq!(rep.intact_records_dropped, 4, "records 7..=10 were intact");
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=5));
    assert_eq!(wal.append(b"x").unwrap(), 6);
}

#[test]
fn lost_tail_before_a_later_segment_cuts_there() {
    // A crash can persist a new segment while the previous segment's tail
    // (ending at a record boundary) is lost: the LSNs then have a gap.
    let template = TempDir::new().unwrap();
    let files = build(template.path(), 64, 10);
    let dir = TempDir::new().unwrap();
    restore(dir.path(), &files);
    let seg6 = segment_files(dir.path()).into_iter().find(|p| first_lsn_of(p) == 6).unwrap();
    fs::OpenOptions::new().write(true).open(&seg6).unwrap().set_len(HEADER_LEN).unwrap();
    let wal = Wal::open(dir.path(), opts(64, SyncMode::Never), 1).unwrap();
    let rep = wal.recovery_report().clone();
    let torn = rep.torn.as_ref().unwrap();
    assert_eq!((first_lsn_of(&torn.file), torn.offset), (7, 0), "{rep:?}");
    assert_eq!(rep.intact_records_dropped, 4);
    assert_eq!(collect(&wal, 0).unwrap(), expected(1..=5));
    assert_eq!(wal.append(&payload(6)).unwrap(), 6);
    assert_eq!(segment_files(dir.path()).iter().map(|p| first_lsn_of(p)).max(), Some(6));
}

#[test]
fn random_byte_flips_never_panic_and_recover_a_prefix() {
    let template = TempDir::new().unwrap();
    let n = 40;
    let files = build(template.path(), 400, n);
    assert!(files.len() >= 3);
    let all = expected(1..=n);
    let mut outcomes = BTreeMap::<&str, u32>::new();
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = TempDir::new().unwrap();
        let mut damaged = files.clone();
        let victim = rng.random_range(0..damaged.len());
        let bytes = &mut damaged[victim].1;
        if seed % 25 == 0 {
            // Now and then the whole file is garbage.
            rng.fill(&mut bytes[..]);
        } else {
            for _ in 0..rng.random_range(1..=3) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
        }
        restore(dir.path(), &damaged);
        match Wal::open(dir.path(), opts(400, SyncMode::Never), 1) {
            Ok(wal) => {
                let got = collect(&wal, 0).unwrap();
                assert_eq!(got.len() as u64, wal.recovery_report().records_recovered);
                assert_eq!(got[..], all[..got.len()], "seed {seed}: not a prefix");
                // Damage in one segment never costs records of earlier segments.
                let victim_first = first_lsn_of(&damaged[victim].0);
                assert!(got.len() as u64 >= victim_first - 1, "seed {seed}");
                assert_eq!(wal.append(b"next").unwrap(), got.len() as u64 + 1);
                *outcomes.entry("recovered").or_default() += 1;
            }
            Err(e) => {
                assert!(e.is_corruption(), "seed {seed}: {e}");
                *outcomes.entry("corruption").or_default() += 1;
            }
        }
    }
    eprintln!("byte flips: {outcomes:?}");
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let template = TempDir::new().unwrap();
    let files = build(template.path(), 1 << 20, 10);
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = TempDir::new().unwrap();
        let mut damaged = files.clone();
        let garbage: Vec<u8> = (0..rng.random_range(1..200)).map(|_| rng.random()).collect();
        damaged[0].1.extend_from_slice(&garbage);
        restore(dir.path(), &damaged);
        let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
        assert_eq!(wal.recovery_report().bytes_dropped, garbage.len() as u64);
        assert_eq!(collect(&wal, 0).unwrap(), expected(1..=10));
        assert_eq!(wal.append(b"x").unwrap(), 11);
    }
}

#[test]
fn replay_reports_damage_that_appears_after_open() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
    let mut offsets = Vec::new();
    let mut off = HEADER_LEN;
    for i in 1..=10u64 {
        let p = format!("record number {i}");
        offsets.push(off);
        off += FRAME_HEADER_LEN + p.len() as u64;
        wal.append(p.as_bytes()).unwrap();
    }
    wal.sync().unwrap();
    let path = segment_files(dir.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(offsets[4] + FRAME_HEADER_LEN + 3)).unwrap();
    f.write_all(b"X").unwrap();
    drop(f);

    match wal.replay(0, &mut |_, _| Ok(())) {
        Err(Error::Corruption { location, .. }) => {
            assert_eq!(location.file, path);
            assert_eq!(location.offset, Some(offsets[4]));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Records at or before `after` are skipped unread.
    let mut n = 0;
    wal.replay(5, &mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 5);
}

#[test]
fn concurrent_committers_share_fsyncs() {
    let dir = TempDir::new().unwrap();
    // Small segments so rotation happens under concurrency as well.
    let wal = Arc::new(Wal::open(dir.path(), opts(4096, SyncMode::Always), 1).unwrap());
    // fsync is nearly free on tmpfs; simulate a disk so the test does not
    // depend on where TMPDIR is.
    wal.set_sync_delay_for_test(Duration::from_micros(500));
    let before = wal.fsync_count();
    let threads = 8;
    let per_thread = 40;
    let start = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = Arc::clone(&wal);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut mine = Vec::new();
                for j in 0..per_thread {
                    let p = format!("thread {t} commit {j}").into_bytes();
                    let lsn = wal.append(&p).unwrap();
                    wal.wait_durable(lsn).unwrap();
                    assert!(wal.durable_lsn() >= lsn);
                    mine.push((lsn, p));
                }
                mine
            })
        })
        .collect();
    let mut all: Records = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    let commits = (threads * per_thread) as u64;
    let lsns: Vec<Lsn> = all.iter().map(|r| r.0).collect();
    assert_eq!(lsns, (1..=commits).collect::<Vec<_>>(), "distinct and gapless");
    let fsyncs = wal.fsync_count() - before;
    eprintln!("{commits} commits, {fsyncs} fsyncs");
    assert!(fsyncs < commits, "group commit must share fsyncs: {fsyncs} for {commits}");
    assert_eq!(wal.durable_lsn(), commits);
    assert_eq!(collect(&wal, 0).unwrap(), all);
    assert!(segment_files(dir.path()).len() > 1);
}

#[test]
fn failed_sync_poisons() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Always), 1).unwrap();
    let l1 = wal.append(b"one").unwrap();
    wal.wait_durable(l1).unwrap();
    assert!(!wal.is_poisoned());

    wal.fail_next_sync_for_test();
    let l2 = wal.append(b"two").unwrap();
    assert!(matches!(wal.wait_durable(l2), Err(Error::Poisoned(_))));
    assert!(wal.is_poisoned());
    assert_eq!(wal.durable_lsn(), l1);
    // Never retried: everything refuses from now on.
    assert!(matches!(wal.wait_durable(l2), Err(Error::Poisoned(_))));
    assert!(matches!(wal.wait_durable(l1), Err(Error::Poisoned(_))));
    assert!(matches!(wal.append(b"three"), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    assert!(matches!(wal.recycle(l1), Err(Error::Poisoned(_))));
    let msg = wal.sync().unwrap_err().to_string();
    assert!(msg.contains("injected fsync failure"), "{msg}");
    drop(wal);

    // Reopening re-reads what really is in the files.
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Always), 1).unwrap();
    assert!(!wal.is_poisoned());
    let got = collect(&wal, 0).unwrap();
    assert_eq!(got[0], (1, b"one".to_vec()));
    let l = wal.append(b"again").unwrap();
    wal.wait_durable(l).unwrap();
}

#[test]
fn failed_sync_wakes_and_poisons_concurrent_committers() {
    let dir = TempDir::new().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), opts(1 << 20, SyncMode::Always), 1).unwrap());
    wal.fail_next_sync_for_test();
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut results = Vec::new();
                for j in 0..10 {
                    let r = wal
                        .append(format!("{t}/{j}").as_bytes())
                        .and_then(|lsn| wal.wait_durable(lsn));
                    results.push(r.is_ok());
                    if let Err(e) = r {
                        assert!(matches!(e, Error::Poisoned(_)), "{e}");
                    }
                }
                results
            })
        })
        .collect();
    for h in handles {
        let results = h.join().unwrap();
        // Once a call failed, every later one fails too.
        let first_fail = results.iter().position(|ok| !ok).unwrap();
        assert!(results[first_fail..].iter().all(|ok| !ok));
    }
    assert!(wal.is_poisoned());
}

#[test]
fn failed_write_poisons() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
    wal.fail_next_write_for_test();
    let lsn = wal.append(b"lost").unwrap();
    assert!(matches!(wal.wait_durable(lsn), Err(Error::Poisoned(_))));
    assert!(matches!(wal.append(b"more"), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    drop(wal);
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
    assert_eq!(wal.last_lsn(), 0);
}

#[test]
fn sync_forces_fsync_in_never_mode() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).unwrap();
    let lsn = wal.append(b"a").unwrap();
    wal.wait_durable(lsn).unwrap();
    assert_eq!(wal.durable_lsn(), 0, "Never: written, not fsynced");
    let before = wal.fsync_count();
    wal.sync().unwrap();
    assert!(wal.fsync_count() > before);
    assert_eq!(wal.durable_lsn(), lsn);
}

#[test]
fn periodic_mode_syncs_in_the_background() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, SyncMode::Periodic(Duration::from_millis(5))), 1)
        .unwrap();
    let lsn = wal.append(b"tick").unwrap();
    wal.wait_durable(lsn).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.durable_lsn() < lsn {
        assert!(Instant::now() < deadline, "background sync never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    let start = Instant::now();
    drop(wal); // stops and joins the background thread
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn newer_format_version_is_refused() {
    let dir = TempDir::new().unwrap();
    build(dir.path(), 1 << 20, 3);
    let path = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1) {
        Err(Error::Refused(msg)) => assert!(msg.contains("version 2"), "{msg}"),
        Err(e) => panic!("expected Refused, got {e}"),
        Ok(_) => panic!("expected Refused, got a WAL"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes, "a refused directory is not modified");

    bytes[0..4].copy_from_slice(b"NOPE");
    fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts(1 << 20, SyncMode::Never), 1).err().unwrap();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn zeros_written_ahead_are_a_clean_end() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(64 << 20, SyncMode::Always), 1).unwrap();
    for i in 1..=50 {
        let lsn = wal.append(&payload(i)).unwrap();
        wal.wait_durable(lsn).unwrap();
    }
    // While open, the segment has zeros written ahead of its end, so that
    // fsyncs do not have to record a new file size.
    let files = segment_files(dir.path());
    let len = fs::metadata(&files[0]).unwrap().len();
    assert_eq!(len % PREALLOCATE, 0);
    assert!(len > wal.disk_bytes());
    // A crash now (copy the files as they are) recovers cleanly.
    let copy = TempDir::new().unwrap();
    for f in &files {
        fs::copy(f, copy.path().join(f.file_name().unwrap())).unwrap();
    }
    let recovered = Wal::open(copy.path(), opts(64 << 20, SyncMode::Always), 1).unwrap();
    assert!(recovered.recovery_report().is_clean(), "{:?}", recovered.recovery_report());
    assert_eq!(collect(&recovered, 0).unwrap(), expected(1..=50));
    assert_eq!(recovered.append(b"next").unwrap(), 51);
    drop(recovered);
    // A clean close cuts the zeros.
    drop(wal);
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), files_size(dir.path()));
    let reopened = Wal::open(dir.path(), opts(64 << 20, SyncMode::Always), 1).unwrap();
    assert_eq!(reopened.disk_bytes(), files_size(dir.path()));
}

/// A payload of `len` bytes that names its record.
fn big_payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as u8).wrapping_mul(13).wrapping_add((j / 7) as u8)).collect()
}

#[test]
fn large_records_are_written_directly_in_lsn_order() {
    // Records past DIRECT_RECORD_BYTES skip the buffer: mixed with small
    // ones, through rotations (segments smaller than a large record),
    // replayed before and after a reopen, in every sync mode.
    for sync in [SyncMode::Never, SyncMode::Always] {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(dir.path(), opts(3 << 20, sync), 1).unwrap();
        let mut want = Records::new();
        for i in 1..=24u64 {
            let p = match i % 4 {
                0 => big_payload(i, DIRECT_RECORD_BYTES),
                1 => big_payload(i, DIRECT_RECORD_BYTES + 4321),
                2 => big_payload(i, 5 << 20),
                _ => payload(i),
            };
            assert_eq!(wal.append(&p).unwrap(), i);
            want.push((i, p));
            if i % 5 == 0 {
                wal.wait_durable(i).unwrap();
            }
        }
        // A large record is handed to the OS at once.
        assert!(files_size(dir.path()) >= wal.disk_bytes() - 100);
        assert_eq!(collect(&wal, 0).unwrap(), want);
        assert_eq!(collect(&wal, 17).unwrap(), want[17..].to_vec());
        wal.wait_durable(24).unwrap();
        assert!(segment_files(dir.path()).len() > 4);
        drop(wal);
        let wal = Wal::open(dir.path(), opts(3 << 20, sync), 1).unwrap();
        assert!(wal.recovery_report().is_clean(), "{:?}", wal.recovery_report());
        assert_eq!(collect(&wal, 0).unwrap(), want);
        assert_eq!(wal.append(b"after").unwrap(), 25);
    }
}

#[test]
fn large_and_small_records_from_concurrent_committers() {
    let dir = TempDir::new().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), opts(4 << 20, SyncMode::Always), 1).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for j in 0..12u64 {
                    let p = if (t + j) % 3 == 0 {
                        big_payload(t * 100 + j, DIRECT_RECORD_BYTES + (j as usize) * 1000)
                    } else {
                        format!("thread {t} commit {j}").into_bytes()
                    };
                    let lsn = wal.append(&p).unwrap();
                    if j % 2 == 0 {
                        wal.wait_durable(lsn).unwrap();
                    }
                    mine.push((lsn, p));
                }
                mine
            })
        })
        .collect();
    let mut all: Records = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    let lsns: Vec<Lsn> = all.iter().map(|r| r.0).collect();
    assert_eq!(lsns, (1..=48).collect::<Vec<_>>(), "distinct and gapless");
    wal.wait_durable(48).unwrap();
    assert_eq!(collect(&wal, 0).unwrap(), all);
    drop(wal);
    let wal = Wal::open(dir.path(), opts(4 << 20, SyncMode::Always), 1).unwrap();
    assert!(wal.recovery_report().is_clean());
    assert_eq!(collect(&wal, 0).unwrap(), all);
}

#[test]
fn a_failed_direct_write_poisons() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(dir.path(), opts(64 << 20, SyncMode::Never), 1).unwrap();
    assert_eq!(wal.append(b"kept").unwrap(), 1);
    wal.wait_durable(1).unwrap();
    wal.fail_next_write_for_test();
    assert!(matches!(wal.append(&big_payload(2, DIRECT_RECORD_BYTES)), Err(Error::Poisoned(_))));
    assert!(matches!(wal.append(b"more"), Err(Error::Poisoned(_))));
    drop(wal);
    let wal = Wal::open(dir.path(), opts(64 << 20, SyncMode::Never), 1).unwrap();
    assert_eq!(collect(&wal, 0).unwrap(), vec![(1, b"kept".to_vec())]);
}
