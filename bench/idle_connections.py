#!/usr/bin/env python3
"""Resident memory that idle PostgreSQL-protocol connections add to `qubedb serve`.

Starts `qubedb serve --memory` on a free loopback port, opens one
connection and reads the server's VmRSS, then opens N more (each runs
`SELECT 1` once and stays idle), waits a second and reads VmRSS again.
Prints both and the difference; stops the server.

Usage: python3 bench/idle_connections.py [--binary PATH] [--connections N]
  --binary       the qubedb binary (default target/release/qubedb; build it
                 first with `cargo build --release`)
  --connections  idle connections to open (default 1000)
Needs psycopg 3 (Debian: python3-psycopg).
"""
import argparse
import resource
import socket
import subprocess
import time

import psycopg


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/qubedb")
    ap.add_argument("--connections", type=int, default=1000)
    a = ap.parse_args()
    want = a.connections + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    port = free_port()
    srv = subprocess.Popen([
        a.binary, "serve", "--memory", "--pg-addr", f"127.0.0.1:{port}",
        "--http-addr", "127.0.0.1:0", "--max-connections", str(a.connections + 10),
        "--log-level", "warn",
    ])
    dsn = f"host=127.0.0.1 port={port} user=qubedb dbname=qubedb"
    conns = []
    try:
        for _ in range(100):
            try:
                first = psycopg.connect(dsn)
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        first.execute("SELECT 1")
        time.sleep(0.5)
        base = rss_kib(srv.pid)
        for _ in range(a.connections):
            c = psycopg.connect(dsn)
            c.execute("SELECT 1")
            conns.append(c)
        time.sleep(1)
        after = rss_kib(srv.pid)
        added = after - base
        print(f"VmRSS with 1 connection: {base} KiB")
        print(f"VmRSS with {a.connections} more idle: {after} KiB")
        print(f"added: {added / 1024:.1f} MiB, {added / a.connections:.1f} KiB per connection")
    finally:
        for c in conns:
            c.close()
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
