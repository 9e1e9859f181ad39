#!/usr/bin/env bash
# COPY of many rows into a table with a primary key: PostgreSQL against
# QubeDB on this machine, in one run.
#
# Starts a throwaway PostgreSQL and a throwaway `qubedb serve` side by side
# (bench/servers.sh: fsync on for both), writes a text-format COPY file of
# --rows rows (id bigint in order, an integer, a short text, a double), then
# --runs times, alternating between the servers: CREATE TABLE (id bigint
# PRIMARY KEY, a integer, b text, d double precision) and a timed
# `psql -c "COPY … FROM STDIN" < file` into it (each run a new table). Prints
# seconds, rows/s and the ratio QubeDB/PostgreSQL of each run. While the
# QubeDB runs go, `qube_pid` in the log is the server to attach `perf` to.
#
# Usage: bench/copy.sh [--rows N] [--runs N] [--pg-port P] [--qube-port P]
#   --rows N   rows per COPY (default 1,000,000)
#   --runs N   COPYs on each server, alternating (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

rows=1000000
runs=3
pg_port=54393
qube_port=54394
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift ;;
        --runs) runs="$2"; shift ;;
        --pg-port) pg_port="$2"; shift ;;
        --qube-port) qube_port="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[copy.sh] $*" >&2; }

# shellcheck source=servers.sh
. bench/servers.sh
servers_start
copy_bench "$rows" "$runs"
