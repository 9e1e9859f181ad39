//! `Wal::open`'s recovery scan: find the last good record, cut everything
//! after it, and leave the directory in a state where appends can continue.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use qube_common::{Error, Result};

use crate::format::{self, FORMAT_VERSION, HEADER_LEN, HeaderCheck, MAX_LSN, Next, SegmentReader};
use crate::{Lsn, RecoveryReport, TornTail};

/// A segment file found in the directory.
#[derive(Debug, Clone)]
struct Found {
    first_lsn: Lsn,
    path: PathBuf,
}

/// A segment that survived recovery.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub first_lsn: Lsn,
    pub path: PathBuf,
    /// File length after any truncation.
    pub bytes: u64,
}

pub(crate) struct Recovered {
    /// Live segments, oldest first; never empty (an empty WAL gets a fresh segment).
    pub segments: Vec<Kept>,
    /// LSN the next append gets.
    pub next_lsn: Lsn,
    pub report: RecoveryReport,
    /// fsyncs issued during recovery (for the fsync counter).
    pub fsyncs: u64,
}

/// Where the scan of one segment stopped.
enum Stop {
    /// Delete the whole segment (torn header, or it does not continue the
    /// LSN sequence).
    Whole(String),
    /// Truncate the segment at this offset.
    At(u64, String),
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> Error {
    let ctx = format!("{what} {}", path.display());
    move |e| Error::io(ctx.clone(), e)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsyncing WAL directory", dir))
}

fn list_segments(dir: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("listing WAL directory", dir))? {
        let entry = entry.map_err(io_err("listing WAL directory", dir))?;
        let name = entry.file_name();
        let Some(first_lsn) = name.to_str().and_then(format::parse_segment_file_name) else {
            continue;
        };
        found.push(Found { first_lsn, path: entry.path() });
    }
    found.sort_by_key(|f| f.first_lsn);
    Ok(found)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting WAL segment {}", path.display()), e)),
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Refuses the directory if any segment was written by a newer format
/// version. Runs before recovery changes anything on disk.
fn refuse_newer(found: &[Found]) -> Result<()> {
    for f in found {
        let mut r = SegmentReader::open(&f.path).map_err(io_err("opening WAL segment", &f.path))?;
        if let HeaderCheck::Newer(v) =
            r.read_header().map_err(io_err("reading WAL segment", &f.path))?
        {
            return Err(Error::Refused(format!(
                "WAL segment {} has format version {v}, but this build of QubeDB only \
                 understands version {FORMAT_VERSION}; open it with a newer QubeDB",
                f.path.display()
            )));
        }
    }
    Ok(())
}

/// Scans one segment that should start with `expected`. Returns the LSN
/// after its last good record and, if the scan stopped before the end of the
/// file, where and why.
fn scan_segment(seg: &Found, expected: Lsn, buf: &mut Vec<u8>) -> Result<(Lsn, Option<Stop>)> {
    let read_err = io_err("reading WAL segment", &seg.path);
    let mut r = SegmentReader::open(&seg.path).map_err(io_err("opening WAL segment", &seg.path))?;
    match r.read_header().map_err(io_err("reading WAL segment", &seg.path))? {
        HeaderCheck::Valid(first) if first == seg.first_lsn => {}
        HeaderCheck::Valid(first) => {
            return Err(Error::corrupt_at(
                &seg.path,
                0,
                format!(
                    "header says the first LSN is {first}, the file name says {}",
                    seg.first_lsn
                ),
            ));
        }
        HeaderCheck::Torn(why) => return Ok((expected, Some(Stop::Whole(why)))),
        HeaderCheck::Corrupt(why) => return Err(Error::corrupt_at(&seg.path, 0, why)),
        HeaderCheck::Newer(v) => {
            return Err(Error::Refused(format!(
                "WAL segment {} has format version {v} (newer than {FORMAT_VERSION})",
                seg.path.display()
            )));
        }
    }
    let mut next = expected;
    loop {
        let frame = match r.next_frame() {
            Ok(Next::End) => return Ok((next, None)),
            Ok(Next::Bad { offset, why }) => return stop_or_end(seg, next, offset, why),
            Ok(Next::Frame(f)) => f,
            Err(e) => return Err(read_err(e)),
        };
        if frame.lsn != next {
            let why = format!("record has LSN {}, expected {next}", frame.lsn);
            return stop_or_end(seg, next, frame.offset, why);
        }
        match r.read_payload(&frame, buf) {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("record {} fails its checksum", frame.lsn);
                return stop_or_end(seg, next, frame.offset, why);
            }
            Err(e) => return Err(read_err(e)),
        }
        // `next` < MAX_LSN + file length, far from overflowing.
        next += 1;
    }
}

/// The scan of `seg` stopped at `offset`. Zeros from there to the end are
/// space written ahead of the log (see `SegFile` in lib.rs), not damage: the
/// segment simply ends there, and the zeros are cut. Anything else is a
/// torn or corrupt tail.
fn stop_or_end(seg: &Found, next: Lsn, offset: u64, why: String) -> Result<(Lsn, Option<Stop>)> {
    if zeros_from(&seg.path, offset).map_err(io_err("reading WAL segment", &seg.path))? {
        let f = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .map_err(io_err("opening WAL segment", &seg.path))?;
        f.set_len(offset)
            .and_then(|()| f.sync_all())
            .map_err(io_err("trimming WAL segment", &seg.path))?;
        return Ok((next, None));
    }
    Ok((next, Some(Stop::At(offset, why))))
}

/// True if the file holds only zero bytes from `offset` to its end.
fn zeros_from(path: &Path, offset: u64) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = [0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Best effort: how many intact records a segment we are about to delete
/// holds (only for the recovery report).
fn count_intact(path: &Path, buf: &mut Vec<u8>) -> u64 {
    let Ok(mut r) = SegmentReader::open(path) else { return 0 };
    let Ok(HeaderCheck::Valid(mut next)) = r.read_header() else { return 0 };
    let mut n = 0;
    while let Ok(Next::Frame(f)) = r.next_frame() {
        if f.lsn != next || !matches!(r.read_payload(&f, buf), Ok(true)) {
            break;
        }
        n += 1;
        next += 1;
    }
    n
}

/// Creates a fresh segment starting at `first_lsn`, header written and synced.
pub(crate) fn create_segment(dir: &Path, first_lsn: Lsn) -> Result<(PathBuf, File)> {
    let path = dir.join(format::segment_file_name(first_lsn));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("creating WAL segment", &path))?;
    file.write_all(&format::encode_header(first_lsn))
        .and_then(|()| file.sync_data())
        .map_err(io_err("writing WAL segment header", &path))?;
    Ok((path, file))
}

pub(crate) fn recover(dir: &Path, next_lsn_at_least: Lsn) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let mut fsyncs = 0;
    let mut dir_changed = false;
    let found = list_segments(dir)?;
    refuse_newer(&found)?;

    // Segments whose successor starts at or before `next_lsn_at_least` only
    // hold records the checkpoint covers: exactly what `recycle` would have
    // deleted. Deleting them first also cleans up after a recycle that was
    // interrupted half-way, which could otherwise look like a gap in the log.
    let covered = found.windows(2).take_while(|w| w[1].first_lsn <= next_lsn_at_least).count();
    for f in &found[..covered] {
        remove(&f.path)?;
        report.segments_recycled += 1;
        dir_changed = true;
    }
    let live = &found[covered..];

    if let Some(first) = live.first()
        && first.first_lsn > next_lsn_at_least
    {
        return Err(Error::corrupt_at(
            &first.path,
            0,
            format!(
                "WAL records {next_lsn_at_least}..{} are missing: the oldest segment starts at \
                 LSN {}, but the checkpoint only covers records before {next_lsn_at_least}",
                first.first_lsn - 1,
                first.first_lsn
            ),
        ));
    }

    // Read forward until the first record that is not exactly the expected next one.
    let mut buf = Vec::new();
    let mut kept = Vec::new();
    let mut expected = live.first().map_or(next_lsn_at_least, |f| f.first_lsn);
    let mut cut: Option<(usize, Stop)> = None;
    for (i, seg) in live.iter().enumerate() {
        report.segments_scanned += 1;
        if seg.first_lsn != expected {
            // The previous segment ended early (its tail never reached the
            // disk) while this one did: nothing from here on was acknowledged.
            let why =
                format!("segment starts at LSN {}, but LSN {expected} is next", seg.first_lsn);
            cut = Some((i, Stop::Whole(why)));
            break;
        }
        let (next, stop) = scan_segment(seg, expected, &mut buf)?;
        report.records_recovered += next - expected;
        expected = next;
        match stop {
            None => {
                kept.push(Kept { first_lsn: seg.first_lsn, path: seg.path.clone(), bytes: 0 });
            }
            Some(stop) => {
                cut = Some((i, stop));
                break;
            }
        }
    }

    if let Some((i, stop)) = cut {
        let later_from = match &stop {
            Stop::Whole(why) => {
                let path = &live[i].path;
                report.torn = Some(TornTail { file: path.clone(), offset: 0, reason: why.clone() });
                i
            }
            Stop::At(offset, why) => {
                let seg = &live[i];
                report.torn =
                    Some(TornTail { file: seg.path.clone(), offset: *offset, reason: why.clone() });
                report.bytes_dropped += file_len(&seg.path).saturating_sub(*offset);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(io_err("opening WAL segment", &seg.path))?;
                f.set_len(*offset)
                    .and_then(|()| f.sync_all())
                    .map_err(io_err("truncating WAL segment", &seg.path))?;
                fsyncs += 1;
                kept.push(Kept { first_lsn: seg.first_lsn, path: seg.path.clone(), bytes: 0 });
                i + 1
            }
        };
        for seg in &live[later_from..] {
            report.bytes_dropped += file_len(&seg.path);
            report.intact_records_dropped += count_intact(&seg.path, &mut buf);
            report.segments_dropped += 1;
            remove(&seg.path)?;
            dir_changed = true;
        }
    }

    // Every kept record is older than `next_lsn_at_least`: the checkpoint
    // covers them all. Continuing in the last segment would leave a gap in
    // the LSN sequence inside a file, so start afresh instead.
    if expected < next_lsn_at_least && !kept.is_empty() {
        for k in kept.drain(..) {
            remove(&k.path)?;
            report.segments_recycled += 1;
        }
        report.records_recovered = 0;
        dir_changed = true;
    }

    if kept.is_empty() {
        if next_lsn_at_least >= MAX_LSN {
            return Err(Error::InvalidInput(format!(
                "next LSN {next_lsn_at_least} is implausible"
            )));
        }
        let (path, _file) = create_segment(dir, next_lsn_at_least)?;
        fsyncs += 1;
        kept.push(Kept { first_lsn: next_lsn_at_least, path, bytes: HEADER_LEN });
        expected = next_lsn_at_least;
        dir_changed = true;
    } else {
        if report.records_recovered > 0 {
            report.first_lsn = expected - report.records_recovered;
            report.last_lsn = expected - 1;
        }
        // Recovered records may have been written to the OS by a process that
        // crashed before fsyncing them. Make them durable now: later commits
        // only fsync the segment they are in, and a lost tail in an older
        // segment would cut off those later, acknowledged commits.
        for k in &mut kept {
            let f = OpenOptions::new()
                .write(true)
                .open(&k.path)
                .map_err(io_err("opening WAL segment", &k.path))?;
            f.sync_data().map_err(io_err("fsyncing WAL segment", &k.path))?;
            fsyncs += 1;
            k.bytes = f.metadata().map_err(io_err("reading WAL segment", &k.path))?.len();
        }
    }
    if dir_changed {
        fsync_dir(dir)?;
        fsyncs += 1;
    }
    Ok(Recovered { segments: kept, next_lsn: expected, report, fsyncs })
}
