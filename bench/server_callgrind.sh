#!/usr/bin/env bash
# Instructions of the server per pgbench transaction, measured with
# callgrind (this VM has no hardware counters). Runs `qubedb serve` under
# callgrind on a fresh copy of DATA (a data directory initialised with
# `pgbench -i`, server stopped), warms it (a full scan of pgbench_accounts
# and 30,000 select-only transactions), then runs N transactions of SCRIPT
# in MODE with one client and writes the profile to OUT. Run it at two N
# and divide the difference of the totals by the difference of the N:
#
#   for n in 300 900; do bench/server_callgrind.sh DATA $n prepared tpcb-like /tmp/tp$n.out; done
#
# Usage: bench/server_callgrind.sh DATA N MODE SCRIPT OUT
# Environment: QUBEDB_BIN (default target/release/qubedb), PORT (55502).
set -euo pipefail
data=$1; n=$2; mode=$3; script=$4; out=$5
bin=${QUBEDB_BIN:-target/release/qubedb}; port=${PORT:-55502}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
work=$(mktemp -d); pid=
trap 'kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -a "$data" "$work/d"
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve --data "$work/d" \
    --pg-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 --log-level warn >"$work/vg.log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
"$pg_bin/psql" -qX -h 127.0.0.1 -p "$port" -U qubedb qubedb \
    -c "SELECT sum(abalance) FROM pgbench_accounts" >/dev/null
"$pg_bin/pgbench" -n -b select-only -M prepared -c 1 -t 30000 -h 127.0.0.1 -p "$port" \
    -U qubedb qubedb >/dev/null 2>&1
"$pg_bin/pgbench" -n -b "$script" -M "$mode" -c 1 -t "$n" -h 127.0.0.1 -p "$port" \
    -U qubedb qubedb >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
kill -INT "$pid"; wait "$pid" || true
grep -h "Collected" "$work/vg.log"
