//! A buffer pool far smaller than the data: 1 MiB of pool, 200 MiB of data.

use qube_storage::{Direction, Durability, Engine, KeyRange, WriteBatch};

use crate::common;

#[test]
fn one_mib_pool_two_hundred_mib_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = common::opts(1 << 20);
    o.durability = Durability::Never;
    o.checkpoint_wal_bytes = 32 << 20;
    let e = qube_storage::BTreeEngine::open(dir.path(), o).unwrap();
    let capacity = e.status().unwrap().cache_capacity;
    assert!(capacity <= 1 << 20);
    let value = |i: u64| {
        let mut v = vec![(i % 251) as u8; 1000];
        v[..8].copy_from_slice(&i.to_le_bytes());
        v
    };
    let n = 200_000u64;
    let mut max_cache = 0;
    for c in 0..n / 1000 {
        let mut b = WriteBatch::new();
        // Keys spread over the key space so every batch touches many leaves.
        for i in 0..1000 {
            let k = (i * (n / 1000) + c).to_be_bytes();
            b.set(&k, &value(i * (n / 1000) + c));
        }
        e.write(b).unwrap();
        max_cache = max_cache.max(e.status().unwrap().cache_bytes);
        if c % 50 == 49 {
            e.checkpoint().unwrap();
        }
    }
    e.checkpoint().unwrap();
    let st = e.status().unwrap();
    assert!(st.disk_bytes > 200 << 20, "only {} bytes on disk", st.disk_bytes);
    assert!(max_cache <= capacity, "cache grew to {max_cache} bytes, budget {capacity}");
    for i in (0..n).step_by(997) {
        assert_eq!(e.get(&i.to_be_bytes()).unwrap(), Some(value(i)));
    }
    let mut cur = e.scan(KeyRange::all(), Direction::Forward).unwrap();
    let mut count = 0u64;
    while cur.advance().unwrap() {
        assert_eq!(cur.key(), &count.to_be_bytes());
        count += 1;
    }
    drop(cur);
    assert_eq!(count, n);
    let st = e.status().unwrap();
    assert!(st.cache_bytes <= capacity);
    assert!(st.cache_evictions > 10_000, "{st:?}");
    e.verify().unwrap();
}
