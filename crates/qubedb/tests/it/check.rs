//! `qubedb check` on a good, a corrupt and a foreign directory.

use crate::qubedb;
use qube_storage::{BTreeEngine, Engine, Options, WriteBatch};

#[test]
fn check_reports_ok_then_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let e = BTreeEngine::open(dir.path(), Options::default()).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..5000u32 {
        b.set(&i.to_be_bytes(), &[7u8; 100]);
    }
    e.write(b).unwrap();
    e.close().unwrap();
    let d = dir.path().to_str().unwrap();

    let (code, out, err) = qubedb(&["check", "--data", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK") && out.contains("keys            5000"), "{out}");

    // Flip a byte in the middle of the last page: a tree page.
    let path = dir.path().join("data.qdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 4000;
    bytes[at] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let (code, out, err) = qubedb(&["check", "--data", d]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("CORRUPT") && err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("data.qdb, page"), "the error names file and page: {err}");
}

#[test]
fn check_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = qubedb(&["check", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not a QubeDB data directory"), "{err}");
}
