//! Crash: `qubedb serve` is killed with SIGKILL at random moments while a
//! client commits numbered transactions; after each restart on the same
//! data directory every acknowledged transaction must be there, and
//! nothing that was never sent.
//!
//! Rounds alternate between two workloads:
//! - autocommit: `INSERT INTO a VALUES (n)`, one transaction per n;
//! - explicit: `BEGIN; INSERT INTO ea VALUES (n); INSERT INTO eb VALUES
//!   (n); COMMIT` as separate messages, so that a kill between the two
//!   inserts is possible: `ea` and `eb` must always hold the same numbers.
//!
//! n counts up across rounds. The one n in flight when the server died
//! may or may not be present; every acknowledged n must be; no other n
//! may be.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_postgres::{Client, NoTls};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qubedb"))
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--pg-addr", &format!("127.0.0.1:{port}"), "--http-addr", "127.0.0.1:0"])
        .args(["--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qubedb serve")
}

/// Connects once the server accepts (it recovers the WAL first).
async fn connect(port: u16, child: &mut Child) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=qubedb dbname=qubedb"),
            NoTls,
        )
        .await;
        match r {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("qubedb serve exited with {status} before accepting: {e}");
                }
                assert!(Instant::now() < deadline, "qubedb serve did not accept in time: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn numbers(c: &Client, table: &str) -> BTreeSet<i32> {
    c.query(&format!("SELECT n FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What one round's client did.
#[derive(Default)]
struct Work {
    acked: Vec<i32>,
    in_flight: Option<i32>,
}

/// Commits numbers from `first` until the server goes away.
async fn commit_until_killed(c: Client, first: i32, explicit: bool) -> Work {
    let mut w = Work::default();
    let insert_a = c.prepare("INSERT INTO a VALUES ($1)").await;
    let insert_ea = c.prepare("INSERT INTO ea VALUES ($1)").await;
    let insert_eb = c.prepare("INSERT INTO eb VALUES ($1)").await;
    let (Ok(insert_a), Ok(insert_ea), Ok(insert_eb)) = (insert_a, insert_ea, insert_eb) else {
        return w;
    };
    for n in first.. {
        w.in_flight = Some(n);
        let r = if explicit {
            async {
                c.batch_execute("BEGIN").await?;
                c.execute(&insert_ea, &[&n]).await?;
                c.execute(&insert_eb, &[&n]).await?;
                c.batch_execute("COMMIT").await
            }
            .await
        } else {
            c.execute(&insert_a, &[&n]).await.map(|_| ())
        };
        if r.is_err() {
            return w;
        }
        w.acked.push(n);
        w.in_flight = None;
    }
    w
}

/// Every acknowledged n is present; nothing else but the one in flight.
fn check(table: &str, present: &BTreeSet<i32>, acked: &BTreeSet<i32>, in_flight: &[i32]) {
    let lost: Vec<&i32> = acked.difference(present).collect();
    assert!(lost.is_empty(), "{table}: acknowledged but lost after the crash: {lost:?}");
    let extra: Vec<&i32> =
        present.iter().filter(|n| !acked.contains(n) && !in_flight.contains(n)).collect();
    assert!(extra.is_empty(), "{table}: present but never committed: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_commit() {
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::rng();
    let started = Instant::now();
    let (mut acked_a, mut acked_e) = (BTreeSet::new(), BTreeSet::new());
    let (mut flight_a, mut flight_e) = (Vec::new(), Vec::new());
    let mut next = 1;
    for round in 0..=ROUNDS {
        let port = free_port();
        let mut child = start(dir.path(), port);
        let c = connect(port, &mut child).await;
        if round == 0 {
            c.batch_execute(
                "CREATE TABLE a (n int PRIMARY KEY); CREATE TABLE ea (n int PRIMARY KEY); \
                 CREATE TABLE eb (n int PRIMARY KEY)",
            )
            .await
            .expect("schema");
        }
        // After the restart: what the previous rounds acknowledged is there.
        let (a, ea, eb) =
            (numbers(&c, "a").await, numbers(&c, "ea").await, numbers(&c, "eb").await);
        check("a", &a, &acked_a, &flight_a);
        check("ea", &ea, &acked_e, &flight_e);
        assert_eq!(ea, eb, "a transaction's two inserts were split by the crash");
        if round == ROUNDS {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        let explicit = round % 2 == 1;
        let client = tokio::spawn(commit_until_killed(c, next, explicit));
        let delay = rng.random_range(50..600);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let w = client.await.expect("client task");
        eprintln!(
            "round {round}: {} {} transactions acknowledged, killed after {delay} ms",
            w.acked.len(),
            if explicit { "explicit" } else { "autocommit" }
        );
        let (acked, flight) =
            if explicit { (&mut acked_e, &mut flight_e) } else { (&mut acked_a, &mut flight_a) };
        acked.extend(w.acked.iter().copied());
        flight.extend(w.in_flight);
        next = w.in_flight.map_or_else(|| w.acked.last().map_or(next, |n| n + 1), |n| n + 1);
    }
    assert!(
        acked_a.len() + acked_e.len() > ROUNDS,
        "too few commits to mean anything: {} + {}",
        acked_a.len(),
        acked_e.len()
    );
    eprintln!(
        "{ROUNDS} crashes, {} + {} acknowledged transactions all present, in {:.1?}",
        acked_a.len(),
        acked_e.len(),
        started.elapsed()
    );
}
