//! Profiling aid: loads N random keys, then times random point reads and a
//! scan. `cargo run --release -p qube-storage --example readloop -- 200000`
use std::time::Instant;

use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, Options, WriteBatch};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&mix(2 * i).to_be_bytes());
    k[8..].copy_from_slice(&mix(2 * i + 1).to_be_bytes());
    k
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let pool_mb: usize =
        std::env::var("READLOOP_POOL_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let opts =
        Options { durability: Durability::Never, pool_bytes: pool_mb << 20, ..Options::default() };
    let e = BTreeEngine::open(dir.path(), opts).unwrap();
    for c in 0..n / 1000 {
        let mut b = WriteBatch::new();
        for i in c * 1000..c * 1000 + 1000 {
            b.set(&key(i), &[7u8; 100]);
        }
        e.write(b).unwrap();
    }
    e.checkpoint().unwrap();
    eprintln!("{:?}", e.verify().unwrap());
    let mut v = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let mut found = 0;
        for j in 0..n {
            let i = (j * 7919 + round) % n;
            found += e.get_into(&key(i), &mut v).unwrap() as u64;
        }
        let s = t.elapsed().as_secs_f64();
        eprintln!("reads: {found} in {s:.3} s = {:.0}/s", n as f64 / s);
    }
    let t = Instant::now();
    let mut c = e.scan(KeyRange::all(), Direction::Forward).unwrap();
    let mut k = 0;
    while c.advance().unwrap() {
        k += 1;
    }
    eprintln!("scan: {k} in {:.3} s", t.elapsed().as_secs_f64());
}
